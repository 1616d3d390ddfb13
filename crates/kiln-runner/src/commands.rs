//! Workflow commands: `::name key=value,key=value::data` lines that a step
//! prints to stdout or stderr.
//!
//! Parsing follows the GitHub runner (`ActionCommand.TryParseV2` and the
//! command extensions):
//! - leading whitespace before `::` is allowed; the command name runs to the
//!   first space and is matched case-insensitively; a line whose name is not a
//!   known command is ordinary output;
//! - properties are comma-separated `key=value` pairs; keys are
//!   case-insensitive, pairs without a key or value are ignored, the last
//!   duplicate wins;
//! - data unescapes `%25 %0D %0A`, property values also `%3A %2C`
//!   (case-sensitive, as in the runner);
//! - `::stop-commands::TOKEN` turns processing off until a line `::TOKEN::`
//!   (an empty token never resumes, as on GitHub).
//!
//! Commands the runner rejects come back as [`Command::Rejected`] so the
//! executor can report them: `set-env` and `add-path` are disabled (Kiln does
//! not offer the `ACTIONS_ALLOW_UNSECURE_COMMANDS` opt-out), and a missing
//! `name=` or a bad `echo` value is an error. On GitHub an error-level
//! rejection fails the step. The legacy `##[command]` syntax is not supported.

use std::fmt;

use serde::Serialize;

/// A recognised workflow command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `::add-mask::VALUE`: register a secret (never empty or blank).
    AddMask(String),
    /// `::group::TITLE`.
    Group(String),
    /// `::endgroup::`.
    EndGroup,
    /// `::error …::`, `::warning …::`, `::notice …::`.
    Annotation(Annotation),
    /// `::debug::MESSAGE`: shown only with step debug logging.
    Debug(String),
    /// `::stop-commands::TOKEN`: following lines are plain output until
    /// `::TOKEN::`.
    StopCommands(String),
    /// The `::TOKEN::` line that ends a `stop-commands` block.
    ResumeCommands,
    /// Deprecated `::set-output name=N::V`; still honoured by GitHub.
    SetOutput { name: String, value: String },
    /// Deprecated `::save-state name=N::V`; still honoured by GitHub.
    SaveState { name: String, value: String },
    /// `::echo::on` / `::echo::off`: whether processed commands are echoed.
    Echo(bool),
    /// `::add-matcher::FILE` (problem matchers).
    AddMatcher(String),
    /// `::remove-matcher owner=O::` or `::remove-matcher::FILE`.
    RemoveMatcher {
        owner: Option<String>,
        file: Option<String>,
    },
    /// A command GitHub refuses; nothing is applied.
    Rejected(Rejection),
}

/// Why a recognised command was not applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// The command name as written in lowercase, e.g. `set-env`.
    pub command: String,
    pub message: String,
    /// [`AnnotationLevel::Error`] means the step fails, as on GitHub;
    /// [`AnnotationLevel::Warning`] is only reported.
    pub level: AnnotationLevel,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AnnotationLevel {
    Error,
    Warning,
    Notice,
}

impl AnnotationLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            AnnotationLevel::Error => "error",
            AnnotationLevel::Warning => "warning",
            AnnotationLevel::Notice => "notice",
        }
    }
}

impl fmt::Display for AnnotationLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An `error`/`warning`/`notice` annotation. Positions are normalised the way
/// the runner does: `endLine` without `line` becomes `line`, columns need a
/// line and are dropped when the annotation spans several lines, and an end
/// before its start drops that pair. Numbers that don't parse are dropped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Annotation {
    pub level: AnnotationLevel,
    pub message: String,
    pub title: Option<String>,
    pub file: Option<String>,
    pub line: Option<u32>,
    pub end_line: Option<u32>,
    pub col: Option<u32>,
    pub end_column: Option<u32>,
}

impl Annotation {
    /// An annotation without a title or position.
    pub fn new(level: AnnotationLevel, message: impl Into<String>) -> Self {
        Annotation {
            level,
            message: message.into(),
            title: None,
            file: None,
            line: None,
            end_line: None,
            col: None,
            end_column: None,
        }
    }

    fn from_properties(level: AnnotationLevel, props: &Properties, message: String) -> Self {
        let number = |key: &str| props.get(key).and_then(|v| v.trim().parse::<u32>().ok());
        let mut a = Annotation {
            level,
            message,
            title: props.get("title").map(str::to_owned),
            file: props.get("file").map(str::to_owned),
            line: number("line"),
            end_line: number("endline"),
            col: number("col"),
            end_column: number("endcolumn"),
        };
        if a.line.is_none() {
            a.line = a.end_line;
        }
        if a.col.is_none() {
            a.col = a.end_column;
        }
        let has_column = a.col.is_some();
        if a.line.is_none() || (a.end_line.is_some() && a.end_line != a.line && has_column) {
            a.col = None;
            a.end_column = None;
        }
        if let (Some(start), Some(end)) = (a.line, a.end_line)
            && end < start
        {
            a.line = None;
            a.end_line = None;
        }
        if let (Some(start), Some(end)) = (a.col, a.end_column)
            && end < start
        {
            a.col = None;
            a.end_column = None;
        }
        a
    }
}

/// Turns output lines into commands. One parser per step: it holds the
/// `stop-commands` and `echo` state.
#[derive(Debug, Clone, Default)]
pub struct CommandParser {
    /// `Some(token)` while commands are stopped.
    stop_token: Option<String>,
    echo: bool,
}

impl CommandParser {
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether processing is currently stopped by `stop-commands`.
    pub fn is_stopped(&self) -> bool {
        self.stop_token.is_some()
    }

    /// Whether `::echo::on` is in effect (GitHub's default is off; step
    /// debug logging turns it on).
    pub fn echo_enabled(&self) -> bool {
        self.echo
    }

    pub fn set_echo(&mut self, on: bool) {
        self.echo = on;
    }

    /// Parses one output line (a trailing `\n` or `\r\n` is ignored).
    /// `None` means the line is ordinary output.
    pub fn parse_line(&mut self, line: &str) -> Option<Command> {
        let line = line.strip_suffix('\n').unwrap_or(line);
        let line = line.strip_suffix('\r').unwrap_or(line);
        let raw = RawCommand::parse(line)?;

        if let Some(token) = &self.stop_token {
            if !token.is_empty() && raw.name.eq_ignore_ascii_case(token) {
                self.stop_token = None;
                return Some(Command::ResumeCommands);
            }
            return None;
        }

        let name = raw.name.to_ascii_lowercase();
        let command = match name.as_str() {
            "stop-commands" => {
                self.stop_token = Some(raw.data.clone());
                Command::StopCommands(raw.data)
            }
            "add-mask" => {
                if raw.data.trim().is_empty() {
                    reject(
                        &name,
                        AnnotationLevel::Warning,
                        "can't add a secret mask for an empty string",
                    )
                } else {
                    Command::AddMask(raw.data)
                }
            }
            "group" => Command::Group(raw.data),
            "endgroup" => Command::EndGroup,
            "debug" => Command::Debug(raw.data),
            "error" => annotation(AnnotationLevel::Error, raw),
            "warning" => annotation(AnnotationLevel::Warning, raw),
            "notice" => annotation(AnnotationLevel::Notice, raw),
            "set-output" | "save-state" => match raw.props.get("name") {
                Some(key) if !key.is_empty() => {
                    let (key, value) = (key.to_owned(), raw.data);
                    if name == "set-output" {
                        Command::SetOutput { name: key, value }
                    } else {
                        Command::SaveState { name: key, value }
                    }
                }
                _ => reject(
                    &name,
                    AnnotationLevel::Error,
                    &format!("required property `name` is missing in the `{name}` command"),
                ),
            },
            "set-env" | "add-path" => reject(
                &name,
                AnnotationLevel::Error,
                &format!(
                    "the `{name}` command is disabled; write to the `{}` file instead",
                    if name == "set-env" {
                        "GITHUB_ENV"
                    } else {
                        "GITHUB_PATH"
                    }
                ),
            ),
            "echo" => match raw.data.trim().to_ascii_lowercase().as_str() {
                "on" => {
                    self.echo = true;
                    Command::Echo(true)
                }
                "off" => {
                    self.echo = false;
                    Command::Echo(false)
                }
                _ => reject(
                    &name,
                    AnnotationLevel::Error,
                    "invalid `echo` value; possible values are `on` and `off`",
                ),
            },
            "add-matcher" => Command::AddMatcher(raw.data),
            "remove-matcher" => Command::RemoveMatcher {
                owner: raw.props.get("owner").map(str::to_owned),
                file: (!raw.data.is_empty()).then_some(raw.data),
            },
            _ => return None,
        };
        Some(command)
    }
}

fn reject(command: &str, level: AnnotationLevel, message: &str) -> Command {
    Command::Rejected(Rejection {
        command: command.to_owned(),
        message: message.to_owned(),
        level,
    })
}

fn annotation(level: AnnotationLevel, raw: RawCommand<'_>) -> Command {
    Command::Annotation(Annotation::from_properties(level, &raw.props, raw.data))
}

/// Case-insensitive properties; the last duplicate wins.
#[derive(Debug, Default)]
struct Properties(Vec<(String, String)>);

impl Properties {
    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v.as_str())
    }
}

/// A syntactically valid `::name props::data` line, before the name is
/// interpreted.
struct RawCommand<'a> {
    name: &'a str,
    props: Properties,
    data: String,
}

impl<'a> RawCommand<'a> {
    fn parse(line: &'a str) -> Option<Self> {
        let rest = line.trim_start().strip_prefix("::")?;
        let end = rest.find("::")?;
        let (info, data) = (&rest[..end], &rest[end + 2..]);
        let (name, props_text) = match info.find(' ') {
            Some(space) => (&info[..space], Some(&info[space + 1..])),
            None => (info, None),
        };
        if name.is_empty() {
            return None;
        }
        let mut props = Properties::default();
        for pair in props_text.unwrap_or("").trim().split(',') {
            if let Some((key, value)) = pair.split_once('=')
                && !key.is_empty()
                && !value.is_empty()
            {
                props.0.push((key.to_owned(), unescape(value, true)));
            }
        }
        Some(RawCommand {
            name,
            props,
            data: unescape(data, false),
        })
    }
}

/// Decodes `%25`, `%0D`, `%0A` and, in properties, `%3A` and `%2C`. Any
/// other `%` sequence is kept as written.
fn unescape(text: &str, property: bool) -> String {
    if !text.contains('%') {
        return text.to_owned();
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find('%') {
        out.push_str(&rest[..pos]);
        let code = rest.get(pos + 1..pos + 3);
        let decoded = match code {
            Some("25") => Some('%'),
            Some("0D") => Some('\r'),
            Some("0A") => Some('\n'),
            Some("3A") if property => Some(':'),
            Some("2C") if property => Some(','),
            _ => None,
        };
        match decoded {
            Some(c) => {
                out.push(c);
                rest = &rest[pos + 3..];
            }
            None => {
                out.push('%');
                rest = &rest[pos + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// Escapes command data so it survives [`CommandParser::parse_line`]
/// (the inverse of the runner's unescaping).
pub fn escape_data(text: &str) -> String {
    text.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

/// Escapes a property value (also `:` and `,`).
pub fn escape_property(text: &str) -> String {
    escape_data(text).replace(':', "%3A").replace(',', "%2C")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(line: &str) -> Option<Command> {
        CommandParser::new().parse_line(line)
    }

    fn annotation_of(line: &str) -> Annotation {
        match parse(line) {
            Some(Command::Annotation(a)) => a,
            other => panic!("expected an annotation for {line:?}, got {other:?}"),
        }
    }

    fn rejection_of(line: &str) -> Rejection {
        match parse(line) {
            Some(Command::Rejected(r)) => r,
            other => panic!("expected a rejection for {line:?}, got {other:?}"),
        }
    }

    #[test]
    fn plain_output_is_not_a_command() {
        for line in [
            "hello",
            "",
            ":: not a command",
            "::group",
            "::unknown-command::x",
            ":: group::x",
            "echo ::group::x",
            "##[group]legacy",
        ] {
            assert_eq!(parse(line), None, "{line:?}");
        }
    }

    #[test]
    fn simple_commands() {
        assert_eq!(
            parse("::add-mask::s3cret"),
            Some(Command::AddMask("s3cret".into()))
        );
        assert_eq!(
            parse("::group::Build step"),
            Some(Command::Group("Build step".into()))
        );
        assert_eq!(parse("::endgroup::"), Some(Command::EndGroup));
        assert_eq!(parse("::debug::x=1"), Some(Command::Debug("x=1".into())));
        assert_eq!(
            parse("::add-matcher::.github/m.json"),
            Some(Command::AddMatcher(".github/m.json".into()))
        );
        assert_eq!(
            parse("::remove-matcher owner=eslint::"),
            Some(Command::RemoveMatcher {
                owner: Some("eslint".into()),
                file: None
            })
        );
    }

    #[test]
    fn names_are_case_insensitive_and_leading_space_allowed() {
        assert_eq!(parse("   ::GROUP::t"), Some(Command::Group("t".into())));
        assert_eq!(
            parse("::Set-Output NAME=x::1"),
            Some(Command::SetOutput {
                name: "x".into(),
                value: "1".into()
            })
        );
    }

    #[test]
    fn trailing_newline_is_not_data() {
        assert_eq!(
            parse("::group::title\r\n"),
            Some(Command::Group("title".into()))
        );
    }

    #[test]
    fn data_may_contain_double_colons() {
        assert_eq!(parse("::debug::a::b"), Some(Command::Debug("a::b".into())));
    }

    #[test]
    fn data_unescaping() {
        assert_eq!(
            parse("::debug::100%25 line1%0Aline2%0D%3A%2C%zz%"),
            Some(Command::Debug("100% line1\nline2\r%3A%2C%zz%".into()))
        );
        // %250A is an escaped percent followed by "0A", not a newline.
        assert_eq!(parse("::debug::%250A"), Some(Command::Debug("%0A".into())));
        // A `%` before a multi-byte character is kept.
        assert_eq!(parse("::debug::%é%"), Some(Command::Debug("%é%".into())));
        // Escapes are case-sensitive, as in the runner.
        assert_eq!(parse("::debug::%0a"), Some(Command::Debug("%0a".into())));
    }

    #[test]
    fn property_unescaping_and_escape_roundtrip() {
        let a = annotation_of("::error title=a%3Ab%2Cc%25d%0Ae::m");
        assert_eq!(a.title.as_deref(), Some("a:b,c%d\ne"));

        let title = "x: y, 100%\nz";
        let msg = "50% done\r\nnext";
        let line = format!(
            "::warning title={}::{}",
            escape_property(title),
            escape_data(msg)
        );
        let a = annotation_of(&line);
        assert_eq!(a.title.as_deref(), Some(title));
        assert_eq!(a.message, msg);
    }

    #[test]
    fn annotation_with_all_properties() {
        let a = annotation_of(
            "::error file=src/app.js,line=10,col=5,endLine=10,endColumn=9,title=Bad thing::Oops",
        );
        assert_eq!(
            a,
            Annotation {
                level: AnnotationLevel::Error,
                message: "Oops".into(),
                title: Some("Bad thing".into()),
                file: Some("src/app.js".into()),
                line: Some(10),
                end_line: Some(10),
                col: Some(5),
                end_column: Some(9),
            }
        );
    }

    #[test]
    fn annotation_levels_and_no_properties() {
        assert_eq!(
            annotation_of("::warning::careful"),
            Annotation::new(AnnotationLevel::Warning, "careful")
        );
        assert_eq!(
            annotation_of("::notice::fyi"),
            Annotation::new(AnnotationLevel::Notice, "fyi")
        );
    }

    #[test]
    fn property_parsing_edge_cases() {
        // Keys are case-insensitive, empty pairs and pairs without key or
        // value are ignored, the last duplicate wins, `=` may appear in values.
        let a = annotation_of("::error  FILE=a.rs,,=x,title=,title=t=1,file=b.rs ::m");
        assert_eq!(a.file.as_deref(), Some("b.rs"));
        assert_eq!(a.title.as_deref(), Some("t=1"));
    }

    #[test]
    fn annotation_position_normalisation() {
        // endLine without line: becomes the line.
        let a = annotation_of("::error endLine=7::m");
        assert_eq!((a.line, a.end_line), (Some(7), Some(7)));
        // endColumn without col: becomes the column.
        let a = annotation_of("::error line=3,endColumn=4::m");
        assert_eq!((a.col, a.end_column), (Some(4), Some(4)));
        // Columns without a line are dropped.
        let a = annotation_of("::error col=2,endColumn=4::m");
        assert_eq!((a.line, a.col, a.end_column), (None, None, None));
        // Columns across several lines are dropped.
        let a = annotation_of("::error line=1,endLine=3,col=2,endColumn=4::m");
        assert_eq!((a.line, a.end_line), (Some(1), Some(3)));
        assert_eq!((a.col, a.end_column), (None, None));
        // End before start drops the pair.
        let a = annotation_of("::error line=5,endLine=2::m");
        assert_eq!((a.line, a.end_line), (None, None));
        let a = annotation_of("::error line=5,col=9,endColumn=2::m");
        assert_eq!((a.line, a.col, a.end_column), (Some(5), None, None));
        // Non-numbers are dropped.
        let a = annotation_of("::error line=abc,col=1::m");
        assert_eq!((a.line, a.col), (None, None));
    }

    #[test]
    fn set_output_and_save_state() {
        assert_eq!(
            parse("::set-output name=result::a%0Ab"),
            Some(Command::SetOutput {
                name: "result".into(),
                value: "a\nb".into()
            })
        );
        assert_eq!(
            parse("::save-state name=pid::42"),
            Some(Command::SaveState {
                name: "pid".into(),
                value: "42".into()
            })
        );
        let r = rejection_of("::set-output::value");
        assert_eq!(r.command, "set-output");
        assert_eq!(r.level, AnnotationLevel::Error);
        assert!(r.message.contains("`name`"), "{}", r.message);
        assert_eq!(rejection_of("::save-state name=::v").command, "save-state");
    }

    #[test]
    fn set_env_and_add_path_are_disabled() {
        let r = rejection_of("::set-env name=FOO::bar");
        assert_eq!(r.command, "set-env");
        assert_eq!(r.level, AnnotationLevel::Error);
        assert!(r.message.contains("GITHUB_ENV"), "{}", r.message);
        let r = rejection_of("::add-path::/opt/bin");
        assert_eq!(r.command, "add-path");
        assert!(r.message.contains("GITHUB_PATH"), "{}", r.message);
    }

    #[test]
    fn blank_add_mask_is_a_warning() {
        let r = rejection_of("::add-mask::   ");
        assert_eq!(r.level, AnnotationLevel::Warning);
        // Surrounding spaces of a real value are kept: they are part of it.
        assert_eq!(
            parse("::add-mask:: x "),
            Some(Command::AddMask(" x ".into()))
        );
    }

    #[test]
    fn echo_on_off() {
        let mut parser = CommandParser::new();
        assert!(!parser.echo_enabled());
        assert_eq!(parser.parse_line("::echo::ON "), Some(Command::Echo(true)));
        assert!(parser.echo_enabled());
        assert_eq!(parser.parse_line("::echo::off"), Some(Command::Echo(false)));
        assert!(!parser.echo_enabled());
        let Some(Command::Rejected(r)) = parser.parse_line("::echo::maybe") else {
            panic!("bad echo value must be rejected");
        };
        assert_eq!(r.level, AnnotationLevel::Error);
        assert!(!parser.echo_enabled());
    }

    #[test]
    fn stop_commands_until_token() {
        let mut parser = CommandParser::new();
        assert_eq!(
            parser.parse_line("::stop-commands::pause-123"),
            Some(Command::StopCommands("pause-123".into()))
        );
        assert!(parser.is_stopped());
        assert_eq!(parser.parse_line("::add-mask::x"), None);
        assert_eq!(parser.parse_line("::set-output name=a::b"), None);
        assert_eq!(parser.parse_line("::stop-commands::other"), None);
        assert_eq!(
            parser.parse_line("::pause-12::"),
            None,
            "needs the exact token"
        );
        assert_eq!(
            parser.parse_line("::PAUSE-123::"),
            Some(Command::ResumeCommands)
        );
        assert!(!parser.is_stopped());
        assert_eq!(
            parser.parse_line("::add-mask::x"),
            Some(Command::AddMask("x".into()))
        );
        // After resuming, the token is ordinary output again.
        assert_eq!(parser.parse_line("::pause-123::"), None);
    }

    #[test]
    fn empty_stop_token_never_resumes() {
        let mut parser = CommandParser::new();
        assert_eq!(
            parser.parse_line("::stop-commands::"),
            Some(Command::StopCommands(String::new()))
        );
        assert_eq!(parser.parse_line("::::"), None);
        assert_eq!(parser.parse_line("::group::x"), None);
        assert!(parser.is_stopped());
    }

    #[test]
    fn a_token_named_like_a_command_resumes_instead_of_running_it() {
        let mut parser = CommandParser::new();
        parser.parse_line("::stop-commands::group");
        assert_eq!(
            parser.parse_line("::group::title"),
            Some(Command::ResumeCommands)
        );
    }
}
