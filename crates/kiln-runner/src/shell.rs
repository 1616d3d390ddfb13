//! How a `run:` step's script is executed: GitHub's shell templates.
//!
//! | `shell:`              | command                                   | script |
//! |-----------------------|-------------------------------------------|--------|
//! | unspecified           | `bash -e {0}`, or `sh -e {0}` without bash | `.sh`  |
//! | `bash`                | `bash --noprofile --norc -eo pipefail {0}` | `.sh`  |
//! | `sh`                  | `sh -e {0}`                               | `.sh`  |
//! | `pwsh`, `powershell`  | `pwsh -command ". '{0}'"`                 | `.ps1` |
//! | `python`              | `python {0}`                              | `.py`  |
//! | `cmd`                 | error: Windows only                       |        |
//! | `command [args] {0} [args]` | as written, `{0}` = script path     | by command |
//!
//! Note that an unspecified shell is *not* the same as `shell: bash`: GitHub
//! runs it without `pipefail`. A custom template must contain `{0}` (GitHub
//! rejects it otherwise; nothing is appended). Its first word picks the script
//! extension as for the built-ins, so `python -u {0}` still gets `.py`.
//!
//! Kiln's choices: `powershell` runs `pwsh` (Windows PowerShell does not exist
//! on Linux); template arguments are split like the runner's process launcher
//! (whitespace separates, double quotes group, backslash escapes a quote,
//! single quotes are literal) *before* `{0}` is substituted, so a script path
//! with spaces stays one argument.

use thiserror::Error;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ShellError {
    #[error("shell `{0}` is only available on Windows runners")]
    WindowsOnly(String),
    #[error(
        "invalid shell `{0}`: use a built-in shell (bash, sh, pwsh, powershell, python) \
         or a template containing `{{0}}` for the script path"
    )]
    MissingPlaceholder(String),
}

/// A resolved shell: an argv template with `{0}` placeholders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shell {
    template: Vec<String>,
    /// Lowercased first word as written (`powershell` stays `powershell`
    /// even though it runs `pwsh`); decides extension and script fix-ups.
    kind: String,
}

/// The command to run for one script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShellCommand {
    /// Program and arguments, with `{0}` replaced by the script path.
    pub argv: Vec<String>,
    /// Extension for the script file, with its dot (`.sh`), or empty.
    pub script_extension: &'static str,
}

const PLACEHOLDER: &str = "{0}";

fn builtin(name: &str) -> Option<&'static [&'static str]> {
    Some(match name {
        "bash" => &[
            "bash",
            "--noprofile",
            "--norc",
            "-eo",
            "pipefail",
            PLACEHOLDER,
        ],
        "sh" => &["sh", "-e", PLACEHOLDER],
        "pwsh" | "powershell" => &["pwsh", "-command", ". '{0}'"],
        "python" => &["python", PLACEHOLDER],
        _ => return None,
    })
}

impl Shell {
    /// Resolves a step's `shell:` value (after `defaults.run.shell` has been
    /// applied; `None` or blank means unspecified). `bash_available` says
    /// whether `bash` is on the guest's `PATH`; it only matters when the shell
    /// is unspecified.
    pub fn resolve(spec: Option<&str>, bash_available: bool) -> Result<Shell, ShellError> {
        let spec = spec.map(str::trim).unwrap_or("");
        if spec.is_empty() {
            let program = if bash_available { "bash" } else { "sh" };
            return Ok(Shell {
                template: vec![program.into(), "-e".into(), PLACEHOLDER.into()],
                kind: program.into(),
            });
        }
        let (command, args) = match spec.split_once(char::is_whitespace) {
            Some((command, args)) => (command, args.trim_start()),
            None => (spec, ""),
        };
        let kind = command.to_lowercase();
        if kind == "cmd" {
            return Err(ShellError::WindowsOnly(spec.to_owned()));
        }
        let template: Vec<String> = if args.is_empty() {
            builtin(&kind)
                .ok_or_else(|| ShellError::MissingPlaceholder(spec.to_owned()))?
                .iter()
                .map(|s| (*s).to_owned())
                .collect()
        } else {
            let mut argv = vec![command.to_owned()];
            argv.extend(split_args(args));
            if !argv.iter().any(|a| a.contains(PLACEHOLDER)) {
                return Err(ShellError::MissingPlaceholder(spec.to_owned()));
            }
            argv
        };
        Ok(Shell { template, kind })
    }

    /// The script file extension, with its dot, or empty for custom commands.
    pub fn script_extension(&self) -> &'static str {
        match self.kind.as_str() {
            "bash" | "sh" => ".sh",
            "pwsh" | "powershell" => ".ps1",
            "python" => ".py",
            _ => "",
        }
    }

    /// The argv template, e.g. `["bash", "-e", "{0}"]`, for logs
    /// (`shell: bash -e {0}`).
    pub fn template(&self) -> &[String] {
        &self.template
    }

    /// The command that runs the script at `script_path`.
    pub fn command(&self, script_path: &str) -> ShellCommand {
        ShellCommand {
            argv: self
                .template
                .iter()
                .map(|arg| arg.replace(PLACEHOLDER, script_path))
                .collect(),
            script_extension: self.script_extension(),
        }
    }

    /// The script file contents for `run:` text. PowerShell scripts get
    /// GitHub's wrapper: stop on errors, and exit with the last native
    /// command's exit code.
    pub fn script_contents(&self, run: &str) -> String {
        match self.kind.as_str() {
            "pwsh" | "powershell" => format!(
                "$ErrorActionPreference = 'stop'\n{run}\n\
                 if ((Test-Path -LiteralPath variable:\\LASTEXITCODE)) {{ exit $LASTEXITCODE }}"
            ),
            _ => run.to_owned(),
        }
    }
}

/// Splits template arguments the way the runner's process launcher does.
fn split_args(text: &str) -> Vec<String> {
    let mut args = Vec::new();
    let mut current = String::new();
    let mut in_arg = false;
    let mut in_quotes = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                let mut backslashes = 1;
                while chars.peek() == Some(&'\\') {
                    chars.next();
                    backslashes += 1;
                }
                in_arg = true;
                if chars.peek() == Some(&'"') {
                    // 2n backslashes + quote: n backslashes, quote delimits;
                    // 2n+1: n backslashes and a literal quote.
                    current.extend(std::iter::repeat_n('\\', backslashes / 2));
                    if backslashes % 2 == 1 {
                        chars.next();
                        current.push('"');
                    }
                } else {
                    current.extend(std::iter::repeat_n('\\', backslashes));
                }
            }
            '"' => {
                in_arg = true;
                if in_quotes && chars.peek() == Some(&'"') {
                    chars.next();
                    current.push('"');
                } else {
                    in_quotes = !in_quotes;
                }
            }
            c if c.is_whitespace() && !in_quotes => {
                if in_arg {
                    args.push(std::mem::take(&mut current));
                    in_arg = false;
                }
            }
            c => {
                in_arg = true;
                current.push(c);
            }
        }
    }
    if in_arg {
        args.push(current);
    }
    args
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(spec: Option<&str>, bash: bool) -> Vec<String> {
        Shell::resolve(spec, bash)
            .expect("valid shell")
            .command("/tmp/s")
            .argv
    }

    #[test]
    fn unspecified_uses_bash_without_pipefail_or_falls_back_to_sh() {
        assert_eq!(argv(None, true), ["bash", "-e", "/tmp/s"]);
        assert_eq!(argv(None, false), ["sh", "-e", "/tmp/s"]);
        assert_eq!(argv(Some("  "), true), ["bash", "-e", "/tmp/s"]);
        let shell = Shell::resolve(None, false).expect("default");
        assert_eq!(shell.script_extension(), ".sh");
    }

    #[test]
    fn builtin_templates() {
        assert_eq!(
            argv(Some("bash"), false),
            ["bash", "--noprofile", "--norc", "-eo", "pipefail", "/tmp/s"]
        );
        assert_eq!(argv(Some("sh"), true), ["sh", "-e", "/tmp/s"]);
        assert_eq!(argv(Some("pwsh"), true), ["pwsh", "-command", ". '/tmp/s'"]);
        assert_eq!(
            argv(Some("powershell"), true),
            ["pwsh", "-command", ". '/tmp/s'"]
        );
        assert_eq!(argv(Some("python"), true), ["python", "/tmp/s"]);
        assert_eq!(
            argv(Some("BASH"), true)[1],
            "--noprofile",
            "case-insensitive"
        );
    }

    #[test]
    fn extensions_follow_the_command_word() {
        let ext = |spec: &str| {
            Shell::resolve(Some(spec), true)
                .expect("valid")
                .script_extension()
        };
        assert_eq!(ext("bash"), ".sh");
        assert_eq!(ext("sh"), ".sh");
        assert_eq!(ext("pwsh"), ".ps1");
        assert_eq!(ext("powershell"), ".ps1");
        assert_eq!(ext("python"), ".py");
        assert_eq!(ext("python -u {0}"), ".py");
        assert_eq!(ext("bash -x {0}"), ".sh");
        assert_eq!(ext("perl {0}"), "");
        assert_eq!(ext("/usr/bin/python3 {0}"), "");
        let cmd = Shell::resolve(Some("python {0}"), true)
            .expect("valid")
            .command("/tmp/x.py");
        assert_eq!(cmd.script_extension, ".py");
    }

    #[test]
    fn custom_templates() {
        assert_eq!(argv(Some("perl {0}"), true), ["perl", "/tmp/s"]);
        assert_eq!(
            argv(Some("bash -x  {0}   --flag"), true),
            ["bash", "-x", "/tmp/s", "--flag"]
        );
        assert_eq!(
            argv(Some("bash -c \"source {0} && run\""), true),
            ["bash", "-c", "source /tmp/s && run"]
        );
        // Single quotes do not group; the placeholder inside an argument is
        // still substituted.
        assert_eq!(
            argv(Some("node --require='{0}'"), true),
            ["node", "--require='/tmp/s'"]
        );
    }

    #[test]
    fn script_path_with_spaces_stays_one_argument() {
        let cmd = Shell::resolve(Some("bash"), true)
            .expect("valid")
            .command("/tmp/my dir/s.sh");
        assert_eq!(
            cmd.argv.last().map(String::as_str),
            Some("/tmp/my dir/s.sh")
        );
        assert_eq!(cmd.argv.len(), 6);
    }

    #[test]
    fn invalid_shells() {
        assert_eq!(
            Shell::resolve(Some("cmd"), true),
            Err(ShellError::WindowsOnly("cmd".into()))
        );
        assert_eq!(
            Shell::resolve(Some("CMD /c {0}"), true),
            Err(ShellError::WindowsOnly("CMD /c {0}".into()))
        );
        assert_eq!(
            Shell::resolve(Some("perl"), true),
            Err(ShellError::MissingPlaceholder("perl".into()))
        );
        assert_eq!(
            Shell::resolve(Some("bash -x"), true),
            Err(ShellError::MissingPlaceholder("bash -x".into())),
            "args without {{0}} are not completed with the built-in template"
        );
        let message = ShellError::MissingPlaceholder("perl".into()).to_string();
        assert!(message.contains("`{0}`"), "{message}");
    }

    #[test]
    fn template_for_logs() {
        let shell = Shell::resolve(None, true).expect("default");
        assert_eq!(shell.template().join(" "), "bash -e {0}");
    }

    #[test]
    fn powershell_scripts_are_wrapped() {
        let shell = Shell::resolve(Some("pwsh"), true).expect("valid");
        let script = shell.script_contents("Write-Host hi");
        assert!(script.starts_with("$ErrorActionPreference = 'stop'\nWrite-Host hi\n"));
        assert!(script.ends_with("{ exit $LASTEXITCODE }"));
        let bash = Shell::resolve(Some("bash"), true).expect("valid");
        assert_eq!(bash.script_contents("echo hi"), "echo hi");
    }

    #[test]
    fn argument_splitting_rules() {
        assert_eq!(split_args(r#"a "b c" d"#), ["a", "b c", "d"]);
        assert_eq!(split_args(r#""""#), [""]);
        assert_eq!(split_args(r#"a\"b"#), [r#"a"b"#]);
        assert_eq!(split_args(r#"a\\"b c""#), [r#"a\b c"#]);
        assert_eq!(split_args(r"C:\path\x"), [r"C:\path\x"]);
        assert_eq!(split_args(r#""say ""hi""""#), [r#"say "hi""#]);
        assert_eq!(split_args("  \t "), Vec::<String>::new());
        assert_eq!(
            split_args(r#"unterminated "quote here"#),
            ["unterminated", "quote here"]
        );
    }
}
