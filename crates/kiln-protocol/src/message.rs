//! The messages. Their order and field layout is the wire format: read the
//! versioning rules in the crate docs before touching anything here.

use std::fmt;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// Chosen by the host, unique among its requests in flight; every reply to a
/// request carries it. 0 is never used for a request (the client starts at 1),
/// so it can stand for "the handshake" in a host's bookkeeping.
pub type RequestId = u64;

/// Host → agent.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// First message of a connection; answered by [`Reply::HelloOk`] or
    /// [`Reply::HelloRejected`]. Variant 0, frozen (crate docs).
    Hello(Hello),
    /// Run a command. Answered by [`Reply::Output`] chunks, then exactly one
    /// [`Reply::Exited`]; or by [`Reply::Error`] if it could not be started.
    Exec { id: RequestId, req: ExecRequest },
    /// Run the [`KillGrace`] ladder on command `id`'s process group. No reply
    /// of its own: the command's `Exited` says `cancelled`. Unknown ids are
    /// ignored, since a command may exit while its cancel is in flight.
    Cancel { id: RequestId },
    /// Write a file (parents created, replaced if present). `data` is the
    /// first chunk; when `more`, [`Request::PutData`] chunks follow. Answered
    /// by [`Reply::Ok`] once the last chunk is on disk, or [`Reply::Error`].
    PutFile {
        id: RequestId,
        path: String,
        mode: u32,
        data: Bytes,
        more: bool,
    },
    /// Unpack a tar stream below `dir` (created). Chunked like `PutFile`.
    PutArchive {
        id: RequestId,
        dir: String,
        tar: Bytes,
        more: bool,
    },
    /// A further chunk of upload `id`; the last one has `more == false`.
    PutData {
        id: RequestId,
        data: Bytes,
        more: bool,
    },
    /// Read a file: answered by [`Reply::Data`] chunks then [`Reply::Ok`],
    /// or by [`Reply::Error`].
    GetFile { id: RequestId, path: String },
    /// Tar everything below `dir` (paths relative to it, symlinks not
    /// followed); answered like `GetFile`.
    GetArchive { id: RequestId, dir: String },
    /// Answered by [`Reply::Pong`] straight from the agent's read loop: proof
    /// of life, also used as the client's keepalive.
    Ping { id: RequestId },
    /// Stop every command, sync the disks, answer [`Reply::Ok`], power off.
    Shutdown { id: RequestId },
    /// Give a machine restored from a snapshot its own identity (new in
    /// version 2): from now on hellos must carry the new token; the
    /// hostname, machine id and clock are set and the kernel's random
    /// generator is reseeded with host randomness. Answered by
    /// [`Reply::Ok`] once all of it is done, or [`Reply::Error`].
    Reidentify { id: RequestId, identity: Identity },
}

/// What makes a restored machine itself rather than a clone of its
/// snapshot's template.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    /// The token later hellos must carry (the template's stops working).
    pub token: String,
    pub hostname: String,
    /// 32 lowercase hex digits, written to `/etc/machine-id`.
    pub machine_id: String,
    /// Host randomness mixed into the guest's pool before a forced reseed.
    pub entropy: Bytes,
    /// The host's wall clock (the restored one is as old as the snapshot).
    pub unix_time_ns: u64,
}

/// The handshake. `protocol_version` must stay the first field (crate docs).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    pub protocol_version: u32,
    /// Checked against the agent's configured token, if it has one.
    pub token: String,
    /// The ladder for cancels and timeouts of this connection's commands.
    pub kill_grace: KillGrace,
}

/// One command. The environment is exactly `env` (nothing inherited from the
/// agent); `argv[0]` is looked up in that environment's `PATH`. A script runs
/// by naming its interpreter: `["bash", "-e", "/path/to/script"]`.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecRequest {
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
    /// `None`: the agent's own working directory.
    pub cwd: Option<String>,
    /// `None`: stdin is `/dev/null`. `Some`: written to a pipe, then closed.
    pub stdin: Option<Bytes>,
    /// Past this, the command's process group goes through the ladder and
    /// the result says `timed_out`.
    pub timeout_ms: Option<u64>,
}

/// GitHub's runner stops a command with SIGINT, waits `interrupt_ms`, sends
/// SIGTERM, waits `terminate_ms`, then SIGKILLs, always to the whole process
/// group. Carried in the [`Hello`] so tests can shorten it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct KillGrace {
    pub interrupt_ms: u64,
    pub terminate_ms: u64,
}

impl Default for KillGrace {
    fn default() -> Self {
        KillGrace {
            interrupt_ms: 7500,
            terminate_ms: 2500,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum OutputStream {
    Stdout,
    Stderr,
}

/// How a command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitInfo {
    /// Set when the process exited normally.
    pub exit_code: Option<i32>,
    /// Set when the process was ended by a signal.
    pub signal: Option<i32>,
    pub timed_out: bool,
    pub cancelled: bool,
    pub duration_ms: u64,
}

/// Agent → host.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Reply {
    /// Variant 0, frozen (crate docs).
    HelloOk {
        protocol_version: u32,
        agent_version: String,
    },
    /// Variant 1, frozen. The agent closes the connection after sending it.
    HelloRejected {
        protocol_version: u32,
        message: String,
    },
    /// A chunk of a command's output, sent as soon as it is read. Chunks of
    /// one stream keep their order; across streams, order is as observed.
    Output {
        id: RequestId,
        stream: OutputStream,
        data: Bytes,
    },
    /// The last reply to an `Exec`; all its `Output` came before.
    Exited {
        id: RequestId,
        info: ExitInfo,
    },
    /// A put or shutdown succeeded, or the last `Data` of a get was sent.
    Ok {
        id: RequestId,
    },
    /// A chunk of a `GetFile` / `GetArchive` result.
    Data {
        id: RequestId,
        data: Bytes,
    },
    /// Request `id` failed; it gets no further replies.
    Error {
        id: RequestId,
        message: String,
    },
    Pong {
        id: RequestId,
    },
    /// A frame the agent could not make sense of (no id to blame). If the
    /// framing itself broke, the agent closes the connection after this.
    ProtocolError {
        message: String,
    },
}

impl Request {
    /// The request id, `None` for the handshake.
    pub fn id(&self) -> Option<RequestId> {
        match self {
            Request::Hello(_) => None,
            Request::Exec { id, .. }
            | Request::Cancel { id }
            | Request::PutFile { id, .. }
            | Request::PutArchive { id, .. }
            | Request::PutData { id, .. }
            | Request::GetFile { id, .. }
            | Request::GetArchive { id, .. }
            | Request::Ping { id }
            | Request::Shutdown { id }
            | Request::Reidentify { id, .. } => Some(*id),
        }
    }
}

impl Reply {
    /// The id of the request this answers; `None` for handshake replies and
    /// protocol errors.
    pub fn id(&self) -> Option<RequestId> {
        match self {
            Reply::HelloOk { .. } | Reply::HelloRejected { .. } | Reply::ProtocolError { .. } => {
                None
            }
            Reply::Output { id, .. }
            | Reply::Exited { id, .. }
            | Reply::Ok { id }
            | Reply::Data { id, .. }
            | Reply::Error { id, .. }
            | Reply::Pong { id } => Some(*id),
        }
    }
}

// Debug impls show sizes instead of payloads: a request may carry secrets
// (token, env values, stdin, file contents) and a megabyte chunk is no use in
// a log line.

impl fmt::Debug for Hello {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hello")
            .field("protocol_version", &self.protocol_version)
            .field("token", &"<redacted>")
            .field("kill_grace", &self.kill_grace)
            .finish()
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("token", &"<redacted>")
            .field("hostname", &self.hostname)
            .field("machine_id", &self.machine_id)
            .field("entropy_len", &self.entropy.len())
            .field("unix_time_ns", &self.unix_time_ns)
            .finish()
    }
}

impl fmt::Debug for ExecRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let keys: Vec<&str> = self.env.iter().map(|(k, _)| k.as_str()).collect();
        f.debug_struct("ExecRequest")
            .field("argv", &self.argv)
            .field("env_keys", &keys)
            .field("cwd", &self.cwd)
            .field("stdin_len", &self.stdin.as_ref().map(Bytes::len))
            .field("timeout_ms", &self.timeout_ms)
            .finish()
    }
}

impl fmt::Debug for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Request::Hello(hello) => hello.fmt(f),
            Request::Exec { id, req } => f
                .debug_struct("Exec")
                .field("id", id)
                .field("req", req)
                .finish(),
            Request::Cancel { id } => f.debug_struct("Cancel").field("id", id).finish(),
            Request::PutFile {
                id,
                path,
                mode,
                data,
                more,
            } => f
                .debug_struct("PutFile")
                .field("id", id)
                .field("path", path)
                .field("mode", &format_args!("{mode:o}"))
                .field("len", &data.len())
                .field("more", more)
                .finish(),
            Request::PutArchive { id, dir, tar, more } => f
                .debug_struct("PutArchive")
                .field("id", id)
                .field("dir", dir)
                .field("len", &tar.len())
                .field("more", more)
                .finish(),
            Request::PutData { id, data, more } => f
                .debug_struct("PutData")
                .field("id", id)
                .field("len", &data.len())
                .field("more", more)
                .finish(),
            Request::GetFile { id, path } => f
                .debug_struct("GetFile")
                .field("id", id)
                .field("path", path)
                .finish(),
            Request::GetArchive { id, dir } => f
                .debug_struct("GetArchive")
                .field("id", id)
                .field("dir", dir)
                .finish(),
            Request::Ping { id } => f.debug_struct("Ping").field("id", id).finish(),
            Request::Shutdown { id } => f.debug_struct("Shutdown").field("id", id).finish(),
            Request::Reidentify { id, identity } => f
                .debug_struct("Reidentify")
                .field("id", id)
                .field("identity", identity)
                .finish(),
        }
    }
}

impl fmt::Debug for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reply::HelloOk {
                protocol_version,
                agent_version,
            } => f
                .debug_struct("HelloOk")
                .field("protocol_version", protocol_version)
                .field("agent_version", agent_version)
                .finish(),
            Reply::HelloRejected {
                protocol_version,
                message,
            } => f
                .debug_struct("HelloRejected")
                .field("protocol_version", protocol_version)
                .field("message", message)
                .finish(),
            Reply::Output { id, stream, data } => f
                .debug_struct("Output")
                .field("id", id)
                .field("stream", stream)
                .field("len", &data.len())
                .finish(),
            Reply::Exited { id, info } => f
                .debug_struct("Exited")
                .field("id", id)
                .field("info", info)
                .finish(),
            Reply::Ok { id } => f.debug_struct("Ok").field("id", id).finish(),
            Reply::Data { id, data } => f
                .debug_struct("Data")
                .field("id", id)
                .field("len", &data.len())
                .finish(),
            Reply::Error { id, message } => f
                .debug_struct("Error")
                .field("id", id)
                .field("message", message)
                .finish(),
            Reply::Pong { id } => f.debug_struct("Pong").field("id", id).finish(),
            Reply::ProtocolError { message } => f
                .debug_struct("ProtocolError")
                .field("message", message)
                .finish(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_secrets_and_payloads() {
        let hello = Request::Hello(Hello {
            protocol_version: 1,
            token: "tok-s3cr3t".into(),
            kill_grace: KillGrace::default(),
        });
        let exec = Request::Exec {
            id: 1,
            req: ExecRequest {
                argv: vec!["env".into()],
                env: vec![("API_KEY".into(), "val-s3cr3t".into())],
                stdin: Some(Bytes::from_static(b"in-s3cr3t")),
                ..ExecRequest::default()
            },
        };
        let put = Request::PutFile {
            id: 2,
            path: "/x".into(),
            mode: 0o644,
            data: Bytes::from_static(b"file-s3cr3t"),
            more: false,
        };
        let reidentify = Request::Reidentify {
            id: 3,
            identity: Identity {
                token: "new-s3cr3t".into(),
                hostname: "kiln-1".into(),
                machine_id: "0".repeat(32),
                entropy: Bytes::from_static(b"s3cr3t-entropy"),
                unix_time_ns: 1,
            },
        };
        for shown in [
            format!("{reidentify:?}"),
            format!("{hello:?}"),
            format!("{exec:?}"),
            format!("{put:?}"),
        ] {
            assert!(!shown.contains("s3cr3t"), "{shown}");
        }
        assert!(format!("{exec:?}").contains("API_KEY"));
        assert!(format!("{put:?}").contains("644"));
    }
}
