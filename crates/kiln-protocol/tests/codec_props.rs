//! Property tests of the codec: every message round-trips, and no input,
//! garbage or truncated, makes the decoder panic or allocate past the limit.

use bytes::{Bytes, BytesMut};
use kiln_protocol::{
    ExecRequest, ExitInfo, FrameCodec, Hello, Identity, KillGrace, MAX_FRAME_LEN, MessageCodec,
    OutputStream, ProtocolError, Reply, Request,
};
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use tokio_util::codec::{Decoder, Encoder};

fn bytes() -> impl Strategy<Value = Bytes> {
    vec(any::<u8>(), 0..300).prop_map(Bytes::from)
}

fn text() -> impl Strategy<Value = String> {
    any::<String>()
}

fn stream() -> impl Strategy<Value = OutputStream> {
    prop_oneof![Just(OutputStream::Stdout), Just(OutputStream::Stderr)]
}

fn exec_request() -> impl Strategy<Value = ExecRequest> {
    (
        vec(text(), 0..4),
        vec((text(), text()), 0..4),
        option::of(text()),
        option::of(bytes()),
        option::of(any::<u64>()),
    )
        .prop_map(|(argv, env, cwd, stdin, timeout_ms)| ExecRequest {
            argv,
            env,
            cwd,
            stdin,
            timeout_ms,
        })
}

fn request() -> impl Strategy<Value = Request> {
    let id = any::<u64>;
    prop_oneof![
        (any::<u32>(), text(), any::<u64>(), any::<u64>()).prop_map(|(v, token, i, t)| {
            Request::Hello(Hello {
                protocol_version: v,
                token,
                kill_grace: KillGrace {
                    interrupt_ms: i,
                    terminate_ms: t,
                },
            })
        }),
        (id(), exec_request()).prop_map(|(id, req)| Request::Exec { id, req }),
        id().prop_map(|id| Request::Cancel { id }),
        (id(), text(), any::<u32>(), bytes(), any::<bool>()).prop_map(
            |(id, path, mode, data, more)| Request::PutFile {
                id,
                path,
                mode,
                data,
                more
            }
        ),
        (id(), text(), bytes(), any::<bool>())
            .prop_map(|(id, dir, tar, more)| { Request::PutArchive { id, dir, tar, more } }),
        (id(), bytes(), any::<bool>()).prop_map(|(id, data, more)| Request::PutData {
            id,
            data,
            more
        }),
        (id(), text()).prop_map(|(id, path)| Request::GetFile { id, path }),
        (id(), text()).prop_map(|(id, dir)| Request::GetArchive { id, dir }),
        id().prop_map(|id| Request::Ping { id }),
        id().prop_map(|id| Request::Shutdown { id }),
        (id(), text(), text(), text(), bytes(), any::<u64>()).prop_map(
            |(id, token, hostname, machine_id, entropy, unix_time_ns)| Request::Reidentify {
                id,
                identity: Identity {
                    token,
                    hostname,
                    machine_id,
                    entropy,
                    unix_time_ns,
                },
            }
        ),
    ]
}

fn exit_info() -> impl Strategy<Value = ExitInfo> {
    (
        option::of(any::<i32>()),
        option::of(any::<i32>()),
        any::<bool>(),
        any::<bool>(),
        any::<u64>(),
    )
        .prop_map(
            |(exit_code, signal, timed_out, cancelled, duration_ms)| ExitInfo {
                exit_code,
                signal,
                timed_out,
                cancelled,
                duration_ms,
            },
        )
}

fn reply() -> impl Strategy<Value = Reply> {
    let id = any::<u64>;
    prop_oneof![
        (any::<u32>(), text()).prop_map(|(protocol_version, agent_version)| Reply::HelloOk {
            protocol_version,
            agent_version
        }),
        (any::<u32>(), text()).prop_map(|(protocol_version, message)| {
            Reply::HelloRejected {
                protocol_version,
                message,
            }
        }),
        (id(), stream(), bytes()).prop_map(|(id, stream, data)| Reply::Output { id, stream, data }),
        (id(), exit_info()).prop_map(|(id, info)| Reply::Exited { id, info }),
        id().prop_map(|id| Reply::Ok { id }),
        (id(), bytes()).prop_map(|(id, data)| Reply::Data { id, data }),
        (id(), text()).prop_map(|(id, message)| Reply::Error { id, message }),
        id().prop_map(|id| Reply::Pong { id }),
        text().prop_map(|message| Reply::ProtocolError { message }),
    ]
}

fn encode<T: serde::Serialize>(msg: T) -> BytesMut {
    let mut codec = MessageCodec::<T, Request>::new();
    let mut buf = BytesMut::new();
    codec
        .encode(msg, &mut buf)
        .expect("a valid message encodes");
    buf
}

/// Decodes every frame in `input`, in pieces as a socket would deliver them,
/// until the decoder wants more or fails. Must never panic.
fn decode_all<T: serde::de::DeserializeOwned>(
    input: &[u8],
    split: usize,
) -> Result<Vec<T>, ProtocolError> {
    let mut codec = MessageCodec::<Reply, T>::new();
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    let split = split.min(input.len());
    for piece in [&input[..split], &input[split..]] {
        buf.extend_from_slice(piece);
        while let Some(msg) = codec.decode(&mut buf)? {
            out.push(msg);
        }
    }
    if let Some(msg) = codec.decode_eof(&mut buf)? {
        out.push(msg);
    }
    Ok(out)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn requests_round_trip(msg in request(), split in any::<usize>()) {
        let frame = encode(msg.clone());
        let decoded = decode_all::<Request>(&frame, split % (frame.len() + 1));
        prop_assert_eq!(decoded.ok(), Some(vec![msg]));
    }

    #[test]
    fn replies_round_trip(msg in reply(), split in any::<usize>()) {
        let frame = encode(msg.clone());
        let decoded = decode_all::<Reply>(&frame, split % (frame.len() + 1));
        prop_assert_eq!(decoded.ok(), Some(vec![msg]));
    }

    #[test]
    fn several_frames_in_one_buffer_come_apart(msgs in vec(reply(), 0..8), split in any::<usize>()) {
        let mut stream = BytesMut::new();
        for msg in &msgs {
            stream.extend_from_slice(&encode(msg.clone()));
        }
        let decoded = decode_all::<Reply>(&stream, split % (stream.len() + 1));
        prop_assert_eq!(decoded.ok(), Some(msgs));
    }

    /// A cut frame is "need more" while the stream is open and an error at
    /// its end, never a message and never a panic.
    #[test]
    fn truncated_frames_are_incomplete(msg in request(), cut in any::<usize>()) {
        let frame = encode(msg);
        let cut = cut % frame.len();
        let mut codec = MessageCodec::<Reply, Request>::new();
        let mut buf = BytesMut::from(&frame[..cut]);
        prop_assert!(matches!(codec.decode(&mut buf), Ok(None)));
        let at_eof = codec.decode_eof(&mut buf);
        prop_assert!(at_eof.is_err() || (cut == 0 && matches!(at_eof, Ok(None))));
    }

    #[test]
    fn garbage_never_panics(data in vec(any::<u8>(), 0..2048), split in any::<usize>()) {
        let _ = decode_all::<Request>(&data, split);
        let _ = decode_all::<Reply>(&data, split);
    }

    /// Garbage behind a plausible length prefix reaches the message decoder,
    /// which must reject or accept it cleanly.
    #[test]
    fn garbage_payloads_never_panic(payload in vec(any::<u8>(), 0..512)) {
        let mut framed = BytesMut::new();
        FrameCodec::new()
            .encode(Bytes::from(payload), &mut framed)
            .expect("frames");
        let _ = decode_all::<Request>(&framed, 0);
        let _ = decode_all::<Reply>(&framed, 0);
    }

    /// Corrupting one byte of a valid frame must not panic either.
    #[test]
    fn flipped_bytes_never_panic(msg in reply(), at in any::<usize>(), xor in 1u8..) {
        let mut frame = encode(msg).to_vec();
        let at = at % frame.len();
        frame[at] ^= xor;
        let _ = decode_all::<Reply>(&frame, 0);
    }

    #[test]
    fn lengths_over_the_limit_are_errors(len in (MAX_FRAME_LEN as u64 + 1)..=u64::from(u32::MAX)) {
        let len = u32::try_from(len).expect("in range");
        let mut buf = BytesMut::from(&len.to_be_bytes()[..]);
        let result = FrameCodec::new().decode(&mut buf);
        prop_assert!(
            matches!(result, Err(ProtocolError::FrameTooLarge { .. })),
            "{:?}", result
        );
    }
}
