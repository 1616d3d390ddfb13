//! `uses:` steps: the built-in checkout, local composite actions, and a clear
//! failure for everything else.

use indexmap::IndexMap;
use kiln_expr::Value;
use kiln_workflow::{Action, Runs, Step};
use serde_json::Value as Json;
use tokio_util::sync::CancellationToken;

use crate::job::{Frame, JobRunner, MAX_ACTION_DEPTH, Ran};
use crate::output::OutputProcessor;
use crate::status::Conclusion;

impl JobRunner<'_> {
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn uses(
        &mut self,
        frame: &mut Frame,
        step: &Step,
        uses: &str,
        env: IndexMap<String, String>,
        depth: usize,
        _cancel: CancellationToken,
        output: &mut OutputProcessor,
    ) -> Result<Ran, String> {
        let status = self.status(frame);
        let scope = self.scope(status);
        let mut with = IndexMap::new();
        for (name, value) in &step.with {
            let v = scope
                .interpolate(value)
                .map_err(|e| format!("with.{name}: {e}"))?;
            with.insert(name.clone(), v);
        }
        let (name, _version) = uses.split_once('@').unwrap_or((uses, ""));
        if name.eq_ignore_ascii_case("actions/checkout") {
            let done = crate::checkout::checkout(
                self.cx.vm,
                &self.cx.cfg.git,
                &with,
                &self.cx.dirs.workspace,
            )
            .await?;
            output.runner_line(&format!("checked out {} into {}", done.sha, done.path));
            return Ok(Ran {
                outcome: Conclusion::Success,
                exit_code: None,
                outputs: IndexMap::new(),
                error: None,
            });
        }
        if let Some(path) = uses.strip_prefix("./") {
            return Box::pin(self.composite(frame, path, with, env, depth, output)).await;
        }
        let what = if uses.starts_with("docker://") {
            "docker actions"
        } else {
            "remote actions"
        };
        Err(format!(
            "uses: {uses}: {what} are not supported yet (supported: actions/checkout and local composite actions ./path)"
        ))
    }

    async fn composite(
        &mut self,
        frame: &Frame,
        path: &str,
        with: IndexMap<String, String>,
        env: IndexMap<String, String>,
        depth: usize,
        output: &mut OutputProcessor,
    ) -> Result<Ran, String> {
        if depth >= MAX_ACTION_DEPTH {
            return Err(format!(
                "uses: ./{path}: composite actions nest deeper than {MAX_ACTION_DEPTH} levels"
            ));
        }
        let dir = format!("{}/{}", self.cx.dirs.workspace, path.trim_end_matches('/'));
        let action = self.load_action(&dir).await?;
        let Runs::Composite { steps } = &action.runs else {
            return Err(format!(
                "uses: ./{path}: only composite local actions are supported (this one runs {})",
                match &action.runs {
                    Runs::Node { using, .. } => using.value.clone(),
                    _ => "docker".into(),
                }
            ));
        };
        // Inputs: given values, else defaults (which may use expressions).
        let status = self.status(frame);
        let mut inputs = serde_json::Map::new();
        for (name, input) in &action.inputs {
            let value = match with.get(name) {
                Some(v) => v.clone(),
                None => match &input.default {
                    Some(d) => self
                        .scope(status)
                        .interpolate(d)
                        .map_err(|e| format!("inputs.{name}.default: {e}"))?,
                    None if input.required => {
                        return Err(format!("uses: ./{path}: input \"{name}\" is required"));
                    }
                    None => String::new(),
                },
            };
            inputs.insert(name.clone(), Json::String(value));
        }
        for name in with.keys() {
            if !action.inputs.contains_key(name) {
                output.runner_line(&format!(
                    "warning: unexpected input \"{name}\" for ./{path}"
                ));
                inputs.insert(name.clone(), Json::String(with[name].clone()));
            }
        }
        let mut child = Frame {
            steps: serde_json::Map::new(),
            inputs: Json::Object(inputs),
            env,
            action_path: Some(dir),
            failed: frame.failed,
        };
        let results = self.run_steps(&mut child, steps, depth + 1).await;
        // Back in the caller's scope to evaluate the action's outputs.
        self.contexts
            .insert("steps", Value::from(Json::Object(child.steps.clone())));
        self.contexts
            .insert("inputs", Value::from(child.inputs.clone()));
        let scope = self.scope(self.status(&child));
        let mut outputs = IndexMap::new();
        for (name, out) in &action.outputs {
            if let Some(value) = &out.value {
                let v = scope
                    .interpolate(value)
                    .map_err(|e| format!("outputs.{name}: {e}"))?;
                outputs.insert(name.clone(), v);
            }
        }
        self.enter(frame, &frame.env.clone());
        let outcome = crate::status::job_conclusion(results.iter().map(|r| r.conclusion));
        let error = results
            .iter()
            .find(|r| r.conclusion == Conclusion::Failure)
            .map(|r| {
                format!(
                    "step \"{}\" of ./{path} failed{}",
                    r.name,
                    r.error.as_ref().map_or(String::new(), |e| format!(": {e}"))
                )
            });
        Ok(Ran {
            outcome,
            exit_code: None,
            outputs,
            error,
        })
    }

    async fn load_action(&self, dir: &str) -> Result<Action, String> {
        let mut last_err = String::new();
        for file in ["action.yml", "action.yaml"] {
            let path = format!("{dir}/{file}");
            match self.cx.vm.get_file(&path).await {
                Ok(bytes) => {
                    let source = String::from_utf8_lossy(&bytes);
                    let (action, diagnostics) = kiln_workflow::parse_action(&source);
                    let errors: Vec<String> = diagnostics
                        .iter()
                        .filter(|d| d.is_error())
                        .map(|d| d.render(&path, &source))
                        .collect();
                    return match action {
                        Some(action) if errors.is_empty() => Ok(action),
                        _ => Err(format!("invalid action {path}:\n{}", errors.join(""))),
                    };
                }
                Err(e) => last_err = e.to_string(),
            }
        }
        Err(format!(
            "no action.yml or action.yaml in {dir} (did a checkout step run first?): {last_err}"
        ))
    }
}
