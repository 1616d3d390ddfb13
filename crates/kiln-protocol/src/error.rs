//! Errors of framing and message coding.

use std::io;

/// Why a frame could not be read or written.
///
/// After [`ProtocolError::FrameTooLarge`] on decode the stream is out of sync
/// and must be closed; after [`ProtocolError::Decode`] the next frame is still
/// well delimited, so a peer may report the problem and carry on.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    FrameTooLarge { len: usize, max: usize },
    #[error("malformed message")]
    Decode(#[source] postcard::Error),
    #[error("malformed message: {0} trailing bytes")]
    TrailingBytes(usize),
    #[error("cannot encode message")]
    Encode(#[source] postcard::Error),
    #[error("agent channel i/o failed")]
    Io(#[from] io::Error),
}
