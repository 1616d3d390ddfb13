//! Where, inside a machine, the runner keeps its files.

/// Guest-side directories the runner uses for a run. All are absolute guest
/// paths; the runner derives every path it needs from these, never from host
/// knowledge, so one runner drives every backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestLayout {
    /// Private directory for this machine's run data (scripts, env files).
    pub root: String,
    /// Parent of job workspaces (`GITHUB_WORKSPACE` lives below it).
    pub workspace_root: String,
    /// `RUNNER_TEMP`.
    pub temp: String,
    /// `RUNNER_TOOL_CACHE`.
    pub tool_cache: String,
    /// `HOME` of the user that runs steps.
    pub home: String,
}

impl GuestLayout {
    /// Everything below one private directory: what the host-process backend
    /// uses so runs cannot see each other's files by accident.
    pub fn under(root: &str) -> GuestLayout {
        let root = root.trim_end_matches('/');
        GuestLayout {
            root: root.to_owned(),
            workspace_root: format!("{root}/workspace"),
            temp: format!("{root}/temp"),
            tool_cache: format!("{root}/tool_cache"),
            home: format!("{root}/home"),
        }
    }

    /// The fixed paths of a Kiln guest image, mirroring GitHub-hosted Linux
    /// runners so actions that hard-code them keep working.
    pub fn standard() -> GuestLayout {
        GuestLayout {
            root: "/home/runner/_kiln".to_owned(),
            workspace_root: "/home/runner/work".to_owned(),
            temp: "/home/runner/work/_temp".to_owned(),
            tool_cache: "/opt/hostedtoolcache".to_owned(),
            home: "/home/runner".to_owned(),
        }
    }

    /// The directories a backend creates before handing the machine out.
    pub fn dirs(&self) -> [&str; 5] {
        [
            &self.root,
            &self.workspace_root,
            &self.temp,
            &self.tool_cache,
            &self.home,
        ]
    }
}
