//! Parsing of the step "file commands": `GITHUB_ENV`, `GITHUB_OUTPUT`,
//! `GITHUB_STATE` (one format) and `GITHUB_PATH`.
//!
//! The format follows the GitHub runner (`EnvFileKeyValuePairs`):
//!
//! - blank lines between entries are ignored;
//! - `NAME=value` sets `NAME` to everything after the first `=`;
//! - `NAME<<DELIM` starts a multiline value that runs up to the first line
//!   that is exactly `DELIM`; the newline before that line is not part of the
//!   value (an immediately following `DELIM` gives the empty string);
//! - whichever of `=` and `<<` comes first on the line decides the form, so
//!   `A=x<<y` sets `A` to `x<<y` and `A<<E=F` is a heredoc ended by `E=F`;
//! - a line with neither, an empty name, an empty delimiter or a heredoc
//!   without its closing delimiter is an error.
//!
//! Kiln's own choices, where the Linux runner is stricter or sloppier:
//! - CRLF counts as a line ending (like the Windows runner), so a file written
//!   with CRLF endings neither leaks `\r` into values nor misses the delimiter;
//!   heredoc values come back with `\n` line endings.
//! - `=value` is an error. The Linux runner accepts it with an empty name
//!   (its check tests the whole line instead of the name), which can only be
//!   a mistake.
//!
//! Errors carry the 1-based line number but never the line's text: these
//! files routinely hold secrets and errors end up in logs.

use thiserror::Error;

/// A malformed environment file. Line numbers are 1-based.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum EnvFileError {
    #[error("line {line}: invalid format, expected `NAME=value` or `NAME<<DELIMITER`")]
    InvalidFormat { line: usize },
    #[error("line {line}: the name must not be empty")]
    EmptyName { line: usize },
    #[error("line {line}: the heredoc delimiter must not be empty")]
    EmptyDelimiter { line: usize },
    #[error("line {line}: matching delimiter `{delimiter}` for `{name}` not found")]
    MissingDelimiter {
        line: usize,
        name: String,
        delimiter: String,
    },
}

/// Splits `text` into `(line_number, line)` with `\n` or `\r\n` endings
/// removed. A final line without a newline is still a line; a trailing newline
/// does not produce an extra empty line.
fn lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.split_inclusive('\n').enumerate().map(|(i, raw)| {
        let line = raw.strip_suffix('\n').unwrap_or(raw);
        let line = line.strip_suffix('\r').unwrap_or(line);
        (i + 1, line)
    })
}

/// Parses the contents of a `GITHUB_ENV`, `GITHUB_OUTPUT` or `GITHUB_STATE`
/// file into `(name, value)` pairs in file order. Duplicates are kept; when
/// applied in order the last one wins, as on GitHub.
pub fn parse_env_file(text: &str) -> Result<Vec<(String, String)>, EnvFileError> {
    let mut pairs = Vec::new();
    let mut lines = lines(text);
    while let Some((line_no, line)) = lines.next() {
        if line.is_empty() {
            continue;
        }
        let equals = line.find('=');
        let heredoc = line.find("<<");
        match (equals, heredoc) {
            (Some(eq), h) if h.is_none_or(|h| eq < h) => {
                let (name, value) = (&line[..eq], &line[eq + 1..]);
                if name.is_empty() {
                    return Err(EnvFileError::EmptyName { line: line_no });
                }
                pairs.push((name.to_owned(), value.to_owned()));
            }
            (_, Some(h)) => {
                let (name, delimiter) = (&line[..h], &line[h + 2..]);
                if name.is_empty() {
                    return Err(EnvFileError::EmptyName { line: line_no });
                }
                if delimiter.is_empty() {
                    return Err(EnvFileError::EmptyDelimiter { line: line_no });
                }
                let mut value_lines = Vec::new();
                let mut closed = false;
                for (_, value_line) in lines.by_ref() {
                    if value_line == delimiter {
                        closed = true;
                        break;
                    }
                    value_lines.push(value_line);
                }
                if !closed {
                    return Err(EnvFileError::MissingDelimiter {
                        line: line_no,
                        name: name.to_owned(),
                        delimiter: delimiter.to_owned(),
                    });
                }
                pairs.push((name.to_owned(), value_lines.join("\n")));
            }
            _ => return Err(EnvFileError::InvalidFormat { line: line_no }),
        }
    }
    Ok(pairs)
}

/// Parses a `GITHUB_PATH` file: one directory per line, blank lines ignored,
/// in file order. See [`PathPrepends`] for how they combine into `PATH`.
pub fn parse_path_file(text: &str) -> Vec<String> {
    lines(text)
        .filter(|(_, line)| !line.is_empty())
        .map(|(_, line)| line.to_owned())
        .collect()
}

/// The directories added through `GITHUB_PATH` during a job.
///
/// GitHub keeps one list per job: adding a directory moves it to the end,
/// and `PATH` is built from the list reversed, so the directory added last is
/// searched first (also within one file: its last line comes first).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PathPrepends {
    /// In the order they were (last) added.
    entries: Vec<String>,
}

impl PathPrepends {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one directory, moving it to the front of `PATH` if it was
    /// already there. Empty entries are ignored.
    pub fn add(&mut self, dir: &str) {
        if dir.is_empty() {
            return;
        }
        self.entries.retain(|existing| existing != dir);
        self.entries.push(dir.to_owned());
    }

    /// Applies the contents of a `GITHUB_PATH` file.
    pub fn add_file(&mut self, text: &str) {
        for dir in parse_path_file(text) {
            self.add(&dir);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The directories in `PATH` order (searched first, first).
    pub fn in_path_order(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().rev().map(String::as_str)
    }

    /// The `PATH` value for a step: the added directories, then `base`.
    pub fn apply(&self, base: &str) -> String {
        let mut parts: Vec<&str> = self.in_path_order().collect();
        if !base.is_empty() {
            parts.push(base);
        }
        parts.join(":")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(text: &str) -> Vec<(String, String)> {
        parse_env_file(text).expect("valid env file")
    }

    fn p(name: &str, value: &str) -> (String, String) {
        (name.to_owned(), value.to_owned())
    }

    #[test]
    fn simple_pairs_in_order_with_duplicates() {
        assert_eq!(
            pairs("A=1\nB=two words\nA=3\n"),
            vec![p("A", "1"), p("B", "two words"), p("A", "3")]
        );
    }

    #[test]
    fn value_keeps_everything_after_first_equals() {
        assert_eq!(pairs("URL=a=b==c"), vec![p("URL", "a=b==c")]);
        assert_eq!(pairs("EMPTY="), vec![p("EMPTY", "")]);
        assert_eq!(
            pairs("SPACES =  x "),
            vec![p("SPACES ", "  x ")],
            "no trimming"
        );
    }

    #[test]
    fn blank_lines_are_skipped_and_last_line_needs_no_newline() {
        assert_eq!(pairs("\n\nA=1\n\nB=2"), vec![p("A", "1"), p("B", "2")]);
        assert_eq!(pairs(""), vec![]);
    }

    #[test]
    fn heredoc_multiline_value() {
        let text = "JSON<<EOF\n{\n  \"a\": 1\n}\nEOF\nNEXT=ok\n";
        assert_eq!(
            pairs(text),
            vec![p("JSON", "{\n  \"a\": 1\n}"), p("NEXT", "ok")]
        );
    }

    #[test]
    fn heredoc_keeps_blank_lines_and_equals_inside() {
        let text = "V<<END\n\nx=1\n\nEND\n";
        assert_eq!(pairs(text), vec![p("V", "\nx=1\n")]);
    }

    #[test]
    fn heredoc_empty_value() {
        assert_eq!(pairs("V<<END\nEND\n"), vec![p("V", "")]);
        assert_eq!(pairs("V<<END\nEND"), vec![p("V", "")]);
    }

    #[test]
    fn heredoc_ends_only_at_exact_delimiter_line() {
        // " EOF" and "EOF2" are content; the value ends at the exact line.
        let text = "V<<EOF\n EOF\nEOF2\nEOF\n";
        assert_eq!(pairs(text), vec![p("V", " EOF\nEOF2")]);
    }

    #[test]
    fn first_of_equals_and_heredoc_decides() {
        assert_eq!(pairs("A=x<<y"), vec![p("A", "x<<y")]);
        assert_eq!(pairs("A<<E=F\nline\nE=F\n"), vec![p("A", "line")]);
    }

    #[test]
    fn crlf_line_endings() {
        let text = "A=1\r\nM<<EOF\r\none\r\ntwo\r\nEOF\r\nB=2\r\n";
        assert_eq!(
            pairs(text),
            vec![p("A", "1"), p("M", "one\ntwo"), p("B", "2")]
        );
    }

    #[test]
    fn lone_carriage_return_inside_value_is_kept() {
        assert_eq!(pairs("A=x\ry\n"), vec![p("A", "x\ry")]);
    }

    #[test]
    fn missing_delimiter_names_the_heredoc_line() {
        let err = parse_env_file("A=1\n\nM<<EOF\none\ntwo\n").expect_err("unterminated");
        assert_eq!(
            err,
            EnvFileError::MissingDelimiter {
                line: 3,
                name: "M".into(),
                delimiter: "EOF".into()
            }
        );
        assert_eq!(
            err.to_string(),
            "line 3: matching delimiter `EOF` for `M` not found"
        );
    }

    #[test]
    fn invalid_lines_are_errors_with_line_numbers() {
        assert_eq!(
            parse_env_file("A=1\njust text\n"),
            Err(EnvFileError::InvalidFormat { line: 2 })
        );
        assert_eq!(
            parse_env_file("=value"),
            Err(EnvFileError::EmptyName { line: 1 })
        );
        assert_eq!(
            parse_env_file("A=1\n<<EOF\nx\nEOF\n"),
            Err(EnvFileError::EmptyName { line: 2 })
        );
        assert_eq!(
            parse_env_file("NAME<<\nx\n"),
            Err(EnvFileError::EmptyDelimiter { line: 1 })
        );
    }

    #[test]
    fn errors_do_not_echo_line_contents() {
        let err = parse_env_file("supersecretvalue").expect_err("invalid");
        assert!(!err.to_string().contains("supersecret"));
    }

    #[test]
    fn path_file_lines_in_order_skipping_blanks() {
        assert_eq!(
            parse_path_file("/a\n\n/b c\r\n/d"),
            vec!["/a".to_owned(), "/b c".to_owned(), "/d".to_owned()]
        );
    }

    #[test]
    fn path_prepends_last_added_comes_first() {
        let mut prepends = PathPrepends::new();
        prepends.add_file("/one\n/two\n");
        assert_eq!(prepends.apply("/usr/bin:/bin"), "/two:/one:/usr/bin:/bin");
        // A later step re-adds /one: it moves to the front, no duplicate.
        prepends.add_file("/one\n");
        assert_eq!(prepends.apply("/usr/bin"), "/one:/two:/usr/bin");
        assert_eq!(
            prepends.in_path_order().collect::<Vec<_>>(),
            ["/one", "/two"]
        );
    }

    #[test]
    fn path_prepends_empty_base_and_empty_entries() {
        let mut prepends = PathPrepends::new();
        assert!(prepends.is_empty());
        assert_eq!(prepends.apply("/bin"), "/bin");
        prepends.add("");
        assert!(prepends.is_empty());
        prepends.add("/x");
        assert_eq!(prepends.apply(""), "/x");
    }
}
