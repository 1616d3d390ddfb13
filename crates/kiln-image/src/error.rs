//! The one error type of this crate. Messages name the fix where there is one.

use std::path::PathBuf;

use crate::manifest::Flavour;

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// No `current` image for the flavour.
    #[error("no {flavour} image: run `{}`", flavour.build_command())]
    NotBuilt { flavour: Flavour },

    /// The manifest is there but one of its files is not.
    #[error(
        "image {flavour}/{id} is incomplete ({} is missing): run `{}`",
        missing.display(),
        flavour.build_command()
    )]
    Incomplete {
        flavour: Flavour,
        id: String,
        missing: PathBuf,
    },

    /// `remove` found neither a flavour nor a version by that name.
    #[error("no image flavour or version id {target:?} (see `kiln image list`)")]
    NotFound { target: String },

    #[error("unknown image flavour {0:?}: expected `minimal` or `debian`")]
    UnknownFlavour(String),

    #[error("unknown kernel kind {0:?}: expected `minimal` or `stock`")]
    UnknownKernelKind(String),

    #[error("{action} {}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("cannot parse the image manifest {}", path.display())]
    BadManifest {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },

    #[error(
        "image manifest {} has schema {found}, this kiln reads schema {expected}: rebuild with `kiln image build`",
        path.display()
    )]
    Schema {
        path: PathBuf,
        found: u32,
        expected: u32,
    },

    /// Something the build needs is not where it was said to be.
    #[error("{what} {} not found: {fix}", path.display())]
    MissingInput {
        what: &'static str,
        path: PathBuf,
        fix: &'static str,
    },

    #[error("cannot run {program}")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },

    /// A build script exited unsuccessfully. `output` holds the end of what
    /// it printed when that was captured rather than shown.
    #[error("{script} failed ({status}){}", tail(output))]
    ScriptFailed {
        script: String,
        status: String,
        output: String,
    },

    #[error("{script} --print printed {output:?}, not a path that exists")]
    BadScriptOutput { script: String, output: String },
}

/// `map_err` helper: an [`ImageError::Io`] for `path`.
pub(crate) fn io_err(
    action: &'static str,
    path: &std::path::Path,
) -> impl FnOnce(std::io::Error) -> ImageError {
    let path = path.to_owned();
    move |source| ImageError::Io {
        action,
        path,
        source,
    }
}

fn tail(output: &str) -> String {
    let lines: Vec<&str> = output.lines().collect();
    if lines.is_empty() {
        return String::new();
    }
    let start = lines.len().saturating_sub(20);
    format!(":\n  {}", lines[start..].join("\n  "))
}
