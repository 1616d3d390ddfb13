//! Running one `run:` step in the VM: script file, shell, environment,
//! environment files, output processing. Exactly one `exec` per step; every
//! other interaction with the VM is a file transfer.

use std::time::Duration;

use indexmap::IndexMap;
use kiln_vm::{DEFAULT_PATH, ExecRequest, ExecResult, Vm};
use tokio_util::sync::CancellationToken;

use crate::envfile::{PathPrepends, parse_env_file};
use crate::output::{Effects, OutputProcessor};
use crate::shell::Shell;

/// The environment files a step may write, created empty before it runs.
pub struct EnvFiles {
    pub env: String,
    pub output: String,
    pub path: String,
    pub summary: String,
    pub state: String,
}

impl EnvFiles {
    pub fn for_step(files_dir: &str, n: usize) -> Self {
        EnvFiles {
            env: format!("{files_dir}/set_env_{n}"),
            output: format!("{files_dir}/set_output_{n}"),
            path: format!("{files_dir}/add_path_{n}"),
            summary: format!("{files_dir}/step_summary_{n}"),
            state: format!("{files_dir}/save_state_{n}"),
        }
    }

    fn all(&self) -> [(&'static str, &str); 5] {
        [
            ("GITHUB_ENV", &self.env),
            ("GITHUB_OUTPUT", &self.output),
            ("GITHUB_PATH", &self.path),
            ("GITHUB_STEP_SUMMARY", &self.summary),
            ("GITHUB_STATE", &self.state),
        ]
    }
}

/// A fully evaluated `run` step, ready to execute.
pub struct Script<'a> {
    pub run: &'a str,
    pub shell: Option<&'a str>,
    pub working_directory: &'a str,
    pub temp_dir: &'a str,
    pub env: IndexMap<String, String>,
    pub path: &'a PathPrepends,
    pub timeout: Option<Duration>,
    pub cancel: CancellationToken,
    /// Unique within the job: names the script and env files.
    pub n: usize,
    pub files_dir: &'a str,
}

/// What running a script produced.
pub struct ScriptOutcome {
    pub exec: ExecResult,
    pub effects: Effects,
    /// `GITHUB_ENV` assignments, in order.
    pub env: Vec<(String, String)>,
    pub outputs: Vec<(String, String)>,
    pub path_file: String,
    pub summary: String,
    /// Env-file problems, reported as step failures.
    pub errors: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum StepError {
    #[error("{0}")]
    Shell(#[from] crate::shell::ShellError),
    #[error(transparent)]
    Vm(#[from] kiln_vm::VmError),
}

pub async fn run_script(
    vm: &dyn Vm,
    script: Script<'_>,
    output: &mut OutputProcessor,
) -> Result<ScriptOutcome, StepError> {
    let shell = Shell::resolve(script.shell, true)?;
    let script_path = format!(
        "{}/_kiln_step_{}{}",
        script.temp_dir,
        script.n,
        shell.script_extension()
    );
    vm.put_file(
        &script_path,
        shell.script_contents(script.run).into_bytes(),
        0o755,
    )
    .await?;
    let files = EnvFiles::for_step(script.files_dir, script.n);
    for (_, path) in files.all() {
        vm.put_file(path, Vec::new(), 0o644).await?;
    }

    let mut env = script.env;
    for (name, path) in files.all() {
        env.insert(name.to_string(), path.to_string());
    }
    let base_path = env
        .get("PATH")
        .cloned()
        .unwrap_or_else(|| DEFAULT_PATH.to_string());
    env.insert("PATH".into(), script.path.apply(&base_path));

    let command = shell.command(&script_path);
    let mut request = ExecRequest::new(command.argv)
        .cwd(script.working_directory)
        .cancel(script.cancel);
    request.env = env.into_iter().collect();
    if let Some(timeout) = script.timeout {
        request = request.timeout(timeout);
    }

    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let exec = vm.exec(request, tx);
    let drain = async {
        while let Some(chunk) = rx.recv().await {
            output.push(chunk);
        }
    };
    let (exec, ()) = tokio::join!(exec, drain);
    let exec = exec?;
    // Flush unterminated last lines before reading the env files.
    output.finish();

    let mut errors = Vec::new();
    let mut read = async |path: &str, what: &str| -> String {
        match vm.get_file(path).await {
            Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            Err(err) => {
                errors.push(format!("cannot read {what}: {err}"));
                String::new()
            }
        }
    };
    let env_text = read(&files.env, "GITHUB_ENV").await;
    let output_text = read(&files.output, "GITHUB_OUTPUT").await;
    let path_file = read(&files.path, "GITHUB_PATH").await;
    let summary = read(&files.summary, "GITHUB_STEP_SUMMARY").await;
    let mut parse = |text: &str, what: &str| match parse_env_file(text) {
        Ok(pairs) => pairs,
        Err(err) => {
            errors.push(format!("{what}: {err}"));
            Vec::new()
        }
    };
    let env = parse(&env_text, "GITHUB_ENV");
    let outputs = parse(&output_text, "GITHUB_OUTPUT");
    Ok(ScriptOutcome {
        exec,
        effects: std::mem::take(&mut output.effects),
        env,
        outputs,
        path_file,
        summary,
        errors,
    })
}
