//! The wire protocol between the Kiln host and `kiln-agent`, the agent that
//! runs inside every guest VM.
//!
//! # Frames
//!
//! The channel (a virtio-serial port, a unix socket in tests) carries a
//! sequence of frames:
//!
//! ```text
//! +-------------------------+---------------------------+
//! | length: u32 big-endian  | payload: `length` bytes   |
//! +-------------------------+---------------------------+
//! ```
//!
//! A length above [`MAX_FRAME_LEN`] is a decode error, detected before any
//! allocation: a corrupt or hostile peer cannot make either side reserve
//! gigabytes. Bulk data (files, archives) therefore travels in chunks of at
//! most [`DATA_CHUNK_LEN`] bytes (see [`Request::PutData`], [`Reply::Data`]).
//!
//! # Payload encoding
//!
//! A payload is one [`Request`] (host → agent) or one [`Reply`]
//! (agent → host) encoded with [`postcard`]: compact, serde-based, no
//! allocation on decode beyond the decoded values, and byte fields
//! ([`bytes::Bytes`]) are a varint length plus the raw bytes, so 100 MiB of
//! step output costs a memcpy per hop, not base64. JSON would be easier to read
//! in a hex dump but triples binary output; the [`Debug`] impls serve for
//! debugging instead.
//!
//! # Versioning
//!
//! postcard is not self-describing: adding, removing or reordering a field or
//! a variant changes the bytes. The rules are therefore strict:
//!
//! 1. Any change to any message bumps [`PROTOCOL_VERSION`]. Host and agent must
//!    speak the same version; there is no negotiation. They are built from the
//!    same workspace and the agent ships inside the guest image, so a mismatch
//!    means a stale image, and the right answer is a clear error.
//! 2. Frozen forever, so that two different versions can always *tell* each
//!    other they differ: the frame format, [`Request::Hello`] as request
//!    variant 0, [`Reply::HelloOk`] and [`Reply::HelloRejected`] as reply
//!    variants 0 and 1, and `protocol_version: u32` as the first field of each
//!    of them. [`peek_protocol_version`] reads just that prefix from a payload
//!    the current types cannot decode.
//! 3. New variants go at the end of their enum.
//!
//! # Conversation
//!
//! The host sends [`Request::Hello`] first; the agent answers `HelloOk` or
//! `HelloRejected` (and then closes). After that any number of requests may be
//! in flight at once; every reply carries the request's id (chosen by the host,
//! unique among the requests in flight). See [`Request`] and [`Reply`] for what
//! answers what.

mod codec;
mod error;
mod message;

#[cfg(feature = "client")]
pub mod client;

pub use codec::{FrameCodec, MessageCodec, decode_message, encode_message, peek_protocol_version};
pub use error::ProtocolError;
pub use message::{
    ExecRequest, ExitInfo, Hello, Identity, KillGrace, OutputStream, Reply, Request, RequestId,
};

#[cfg(feature = "client")]
pub use client::{
    AgentClient, AgentInfo, ClientConfig, ClientError, ExecHandle, LostReason, OutputChunk,
};

/// The version of the message set. See the crate docs for when it changes.
/// 2: [`Request::Reidentify`].
pub const PROTOCOL_VERSION: u32 = 2;

/// The largest payload either side accepts or sends.
pub const MAX_FRAME_LEN: usize = 16 * 1024 * 1024;

/// The size of the chunks bulk transfers are cut into: well below
/// [`MAX_FRAME_LEN`], large enough that framing overhead is negligible.
pub const DATA_CHUNK_LEN: usize = 1024 * 1024;
