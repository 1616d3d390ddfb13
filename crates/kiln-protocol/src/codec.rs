//! Framing (`u32` big-endian length + payload) and postcard payloads, as
//! `tokio_util` codecs so either side can wrap any `AsyncRead`/`AsyncWrite`.

use std::marker::PhantomData;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio_util::codec::{Decoder, Encoder};

use crate::{MAX_FRAME_LEN, ProtocolError};

const LEN_PREFIX: usize = 4;

/// Splits a byte stream into frames (payloads without their length prefix).
///
/// Never panics and never allocates more than the announced length of a
/// frame that is within the limit, whatever the input.
#[derive(Debug, Clone, Copy)]
pub struct FrameCodec {
    max_len: usize,
}

impl FrameCodec {
    pub fn new() -> Self {
        FrameCodec {
            max_len: MAX_FRAME_LEN,
        }
    }

    /// A smaller limit, for tests; larger than [`MAX_FRAME_LEN`] is clamped,
    /// since the peer would reject such frames anyway.
    pub fn with_max_len(max_len: usize) -> Self {
        FrameCodec {
            max_len: max_len.min(MAX_FRAME_LEN),
        }
    }

    pub fn max_len(&self) -> usize {
        self.max_len
    }
}

impl Default for FrameCodec {
    fn default() -> Self {
        FrameCodec::new()
    }
}

impl Decoder for FrameCodec {
    type Item = BytesMut;
    type Error = ProtocolError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<BytesMut>, ProtocolError> {
        let Some(&[a, b, c, d]) = src.get(..LEN_PREFIX) else {
            return Ok(None);
        };
        // u32 always fits usize on the 32/64-bit targets Kiln runs on.
        let len = u32::from_be_bytes([a, b, c, d]) as usize;
        if len > self.max_len {
            return Err(ProtocolError::FrameTooLarge {
                len,
                max: self.max_len,
            });
        }
        let total = LEN_PREFIX + len;
        if src.len() < total {
            src.reserve(total - src.len());
            return Ok(None);
        }
        src.advance(LEN_PREFIX);
        Ok(Some(src.split_to(len)))
    }
}

/// Writes `payload` as one raw frame. Mostly for tests that need to send
/// frames no well-behaved peer would.
impl Encoder<Bytes> for FrameCodec {
    type Error = ProtocolError;

    fn encode(&mut self, payload: Bytes, dst: &mut BytesMut) -> Result<(), ProtocolError> {
        let len = check_len(payload.len(), self.max_len)?;
        dst.reserve(LEN_PREFIX + payload.len());
        dst.put_u32(len);
        dst.extend_from_slice(&payload);
        Ok(())
    }
}

/// Encodes `Out` messages and decodes `In` messages: the host uses
/// `MessageCodec<Request, Reply>`, the agent `MessageCodec<Reply, Request>`.
pub struct MessageCodec<Out, In> {
    frames: FrameCodec,
    _types: PhantomData<fn(Out) -> In>,
}

impl<Out, In> MessageCodec<Out, In> {
    pub fn new() -> Self {
        Self::with_frames(FrameCodec::new())
    }

    pub fn with_frames(frames: FrameCodec) -> Self {
        MessageCodec {
            frames,
            _types: PhantomData,
        }
    }
}

impl<Out, In> Default for MessageCodec<Out, In> {
    fn default() -> Self {
        Self::new()
    }
}

impl<Out, In> std::fmt::Debug for MessageCodec<Out, In> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MessageCodec")
            .field("max_len", &self.frames.max_len)
            .finish()
    }
}

impl<Out: Serialize, In> Encoder<Out> for MessageCodec<Out, In> {
    type Error = ProtocolError;

    fn encode(&mut self, item: Out, dst: &mut BytesMut) -> Result<(), ProtocolError> {
        encode_frame(&item, dst, self.frames.max_len)
    }
}

impl<Out, In: DeserializeOwned> Decoder for MessageCodec<Out, In> {
    type Item = In;
    type Error = ProtocolError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<In>, ProtocolError> {
        match self.frames.decode(src)? {
            Some(payload) => decode_message(&payload).map(Some),
            None => Ok(None),
        }
    }
}

/// Appends `msg` to `dst` as one complete frame.
pub fn encode_message<T: Serialize>(msg: &T, dst: &mut BytesMut) -> Result<(), ProtocolError> {
    encode_frame(msg, dst, MAX_FRAME_LEN)
}

fn encode_frame<T: Serialize>(
    msg: &T,
    dst: &mut BytesMut,
    max_len: usize,
) -> Result<(), ProtocolError> {
    let start = dst.len();
    dst.put_u32(0);
    // Serialising straight into the buffer: a data chunk is copied once.
    if let Err(e) = postcard::to_io(msg, (&mut *dst).writer()) {
        dst.truncate(start);
        return Err(ProtocolError::Encode(e));
    }
    let len = match check_len(dst.len() - start - LEN_PREFIX, max_len) {
        Ok(len) => len,
        Err(e) => {
            dst.truncate(start);
            return Err(e);
        }
    };
    dst[start..start + LEN_PREFIX].copy_from_slice(&len.to_be_bytes());
    Ok(())
}

fn check_len(len: usize, max_len: usize) -> Result<u32, ProtocolError> {
    match u32::try_from(len) {
        Ok(len32) if len <= max_len => Ok(len32),
        _ => Err(ProtocolError::FrameTooLarge { len, max: max_len }),
    }
}

/// Decodes one payload (a frame without its length prefix). The whole payload
/// must be consumed: trailing bytes mean the peer encodes something else.
pub fn decode_message<T: DeserializeOwned>(payload: &[u8]) -> Result<T, ProtocolError> {
    let (msg, rest) = postcard::take_from_bytes(payload).map_err(ProtocolError::Decode)?;
    if !rest.is_empty() {
        return Err(ProtocolError::TrailingBytes(rest.len()));
    }
    Ok(msg)
}

/// The `protocol_version` of a handshake payload that the current message
/// types may not be able to decode (a different protocol version): request
/// variant 0 ([`Request::Hello`](crate::Request::Hello)) or reply variants 0
/// and 1 ([`Reply::HelloOk`](crate::Reply::HelloOk),
/// [`Reply::HelloRejected`](crate::Reply::HelloRejected)) all start with it.
/// `handshake_variants` is 1 for a request, 2 for a reply.
pub fn peek_protocol_version(payload: &[u8], handshake_variants: u32) -> Option<u32> {
    match postcard::take_from_bytes::<(u32, u32)>(payload) {
        Ok(((variant, version), _)) if variant < handshake_variants => Some(version),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Hello, KillGrace, Reply, Request};

    fn frame_of<T: Serialize>(msg: &T) -> BytesMut {
        let mut buf = BytesMut::new();
        encode_message(msg, &mut buf).expect("encodes");
        buf
    }

    #[test]
    fn length_prefix_is_big_endian_payload_length() {
        let buf = frame_of(&Request::Ping { id: 7 });
        let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
        assert_eq!(len, buf.len() - 4);
    }

    #[test]
    fn oversized_length_is_an_error_without_allocation() {
        let mut codec = FrameCodec::new();
        let mut src = BytesMut::from(&[0xff, 0xff, 0xff, 0xff, 1, 2, 3][..]);
        let cap = src.capacity();
        assert!(matches!(
            codec.decode(&mut src),
            Err(ProtocolError::FrameTooLarge { .. })
        ));
        assert_eq!(src.capacity(), cap);
    }

    #[test]
    fn encoder_refuses_frames_over_the_limit() {
        let mut codec = MessageCodec::<Reply, Request>::with_frames(FrameCodec::with_max_len(64));
        let mut dst = BytesMut::from(&b"keep"[..]);
        let big = Reply::Data {
            id: 1,
            data: Bytes::from(vec![0; 100]),
        };
        assert!(matches!(
            codec.encode(big, &mut dst),
            Err(ProtocolError::FrameTooLarge { .. })
        ));
        assert_eq!(&dst[..], b"keep", "a failed encode leaves nothing behind");
    }

    #[test]
    fn trailing_bytes_are_rejected() {
        let mut payload = frame_of(&Request::Ping { id: 1 }).split_off(4).to_vec();
        payload.push(0);
        assert!(matches!(
            decode_message::<Request>(&payload),
            Err(ProtocolError::TrailingBytes(1))
        ));
    }

    #[test]
    fn handshake_version_is_readable_across_versions() {
        // A "future" hello: our prefix, then fields this version doesn't know.
        let mut payload = frame_of(&Request::Hello(Hello {
            protocol_version: 999,
            token: "t".into(),
            kill_grace: KillGrace::default(),
        }))
        .split_off(4)
        .to_vec();
        payload.extend_from_slice(&[0xde, 0xad, 0xbe, 0xef]);
        assert!(decode_message::<Request>(&payload).is_err());
        assert_eq!(peek_protocol_version(&payload, 1), Some(999));

        let rejected = frame_of(&Reply::HelloRejected {
            protocol_version: 42,
            message: "no".into(),
        })
        .split_off(4);
        assert_eq!(peek_protocol_version(&rejected, 2), Some(42));

        let ping = frame_of(&Request::Ping { id: 3 }).split_off(4);
        assert_eq!(peek_protocol_version(&ping, 1), None);
    }
}
