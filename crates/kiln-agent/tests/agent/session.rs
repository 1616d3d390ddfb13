//! Handshake, protocol abuse, ping and shutdown.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::{SinkExt, StreamExt};
use kiln_agent::ServeOutcome;
use kiln_protocol::{
    AgentClient, ClientError, FrameCodec, Hello, KillGrace, MessageCodec, PROTOCOL_VERSION, Reply,
    Request, encode_message,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_util::codec::{Framed, FramedRead};

use crate::common::{TOKEN, client_config, sh, spawn_agent, start, wait_gone};

type Host = Framed<tokio::net::UnixStream, MessageCodec<Request, Reply>>;

fn hello(version: u32, token: &str) -> Request {
    Request::Hello(Hello {
        protocol_version: version,
        token: token.into(),
        kill_grace: KillGrace::default(),
    })
}

async fn finished(served: tokio::task::JoinHandle<ServeOutcome>) -> ServeOutcome {
    tokio::time::timeout(Duration::from_secs(10), served)
        .await
        .expect("the agent ends the connection")
        .expect("the agent did not panic")
}

#[tokio::test]
async fn hello_reports_the_agent_version() {
    let (host, _served) = spawn_agent();
    let client = AgentClient::new(host, client_config());
    let info = client.hello(TOKEN).await.expect("hello");
    assert_eq!(info.protocol_version, PROTOCOL_VERSION);
    assert_eq!(info.agent_version, env!("CARGO_PKG_VERSION"));
}

#[tokio::test]
async fn wrong_token_is_rejected() {
    let (host, served) = spawn_agent();
    let client = AgentClient::new(host, client_config());
    let err = client.hello("guess").await.expect_err("bad token");
    assert_eq!(
        err.to_string(),
        "agent rejected the handshake: invalid token"
    );
    assert_eq!(finished(served).await, ServeOutcome::Closed);
}

#[tokio::test]
async fn version_mismatch_is_rejected_clearly() {
    let (host, served) = spawn_agent();
    let mut host: Host = Framed::new(host, MessageCodec::new());
    host.send(hello(PROTOCOL_VERSION + 1, TOKEN))
        .await
        .expect("send");
    match host.next().await {
        Some(Ok(Reply::HelloRejected {
            protocol_version,
            message,
        })) => {
            assert_eq!(protocol_version, PROTOCOL_VERSION);
            assert!(message.contains("protocol version"), "{message}");
        }
        other => panic!("expected a rejection, got {other:?}"),
    }
    assert!(host.next().await.is_none(), "the agent hangs up");
    assert_eq!(finished(served).await, ServeOutcome::Closed);
}

/// A hello from a future version that this agent cannot even decode is still
/// recognised by its frozen prefix.
#[tokio::test]
async fn undecodable_future_hello_is_a_version_mismatch() {
    let (mut host, served) = spawn_agent();
    let mut frame = BytesMut::new();
    encode_message(&hello(PROTOCOL_VERSION + 5, TOKEN), &mut frame).expect("encode");
    frame.extend_from_slice(b"new fields");
    let len = u32::try_from(frame.len() - 4).expect("small");
    frame[..4].copy_from_slice(&len.to_be_bytes());
    host.write_all(&frame).await.expect("write");
    let mut replies = FramedRead::new(host, MessageCodec::<Request, Reply>::new());
    assert!(
        matches!(replies.next().await, Some(Ok(Reply::HelloRejected { .. }))),
        "rejected"
    );
    assert_eq!(finished(served).await, ServeOutcome::Closed);
}

#[tokio::test]
async fn client_reports_a_rejected_version_as_mismatch() {
    // The agent side of a mismatch, seen through the real client: an old
    // agent answers with its own version.
    let (host, guest) = tokio::net::UnixStream::pair().expect("pair");
    let client = AgentClient::new(host, client_config());
    let mut agent: Framed<_, MessageCodec<Reply, Request>> =
        Framed::new(guest, MessageCodec::new());
    let fake = tokio::spawn(async move {
        let _ = agent.next().await;
        agent
            .send(Reply::HelloRejected {
                protocol_version: 0,
                message: "old".into(),
            })
            .await
            .expect("send");
        agent
    });
    let err = client.hello(TOKEN).await.expect_err("mismatch");
    assert!(
        matches!(err, ClientError::VersionMismatch { agent: 0, .. }),
        "{err}"
    );
    drop(fake);
}

#[tokio::test]
async fn requests_before_hello_are_refused() {
    let (host, served) = spawn_agent();
    let mut host: Host = Framed::new(host, MessageCodec::new());
    host.send(Request::Ping { id: 1 }).await.expect("send");
    assert!(matches!(
        host.next().await,
        Some(Ok(Reply::ProtocolError { .. }))
    ));
    assert!(host.next().await.is_none());
    assert_eq!(finished(served).await, ServeOutcome::Closed);
}

/// Random bytes: the agent answers with a protocol error or hangs up, and
/// never panics.
#[tokio::test]
async fn garbage_gets_an_error_or_a_hang_up() {
    let inputs: Vec<Vec<u8>> = vec![
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        vec![0xff; 64],
        vec![0, 0, 0, 3, 0xfe, 0xfe, 0xfe],
        (0..4096u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect(),
        vec![0, 0, 0],
    ];
    for input in inputs {
        let (mut host, served) = spawn_agent();
        host.write_all(&input).await.expect("write");
        host.shutdown().await.expect("half-close");
        let mut replies = FramedRead::new(host, MessageCodec::<Request, Reply>::new());
        while let Some(reply) = replies.next().await {
            assert!(
                matches!(reply, Ok(Reply::ProtocolError { .. })),
                "{input:?} -> {reply:?}"
            );
        }
        assert_eq!(finished(served).await, ServeOutcome::Closed, "{input:?}");
    }
}

/// After the handshake a bad payload in a good frame is reported and
/// skipped; a broken frame length ends the connection.
#[tokio::test]
async fn garbage_after_hello_is_survivable_until_framing_breaks() {
    let (host, served) = spawn_agent();
    let mut host = Framed::new(host, FrameCodec::new());
    let mut frame = BytesMut::new();
    encode_message(&hello(PROTOCOL_VERSION, TOKEN), &mut frame).expect("encode");
    host.get_mut().write_all(&frame).await.expect("hello");
    let reply = host.next().await.expect("reply").expect("frame");
    assert!(matches!(
        kiln_protocol::decode_message::<Reply>(&reply),
        Ok(Reply::HelloOk { .. })
    ));

    host.send(Bytes::from_static(&[0xee; 10]))
        .await
        .expect("garbage frame");
    let reply = host.next().await.expect("reply").expect("frame");
    assert!(matches!(
        kiln_protocol::decode_message::<Reply>(&reply),
        Ok(Reply::ProtocolError { .. })
    ));

    let mut ping = BytesMut::new();
    encode_message(&Request::Ping { id: 9 }, &mut ping).expect("encode");
    host.get_mut().write_all(&ping).await.expect("ping");
    let reply = host.next().await.expect("reply").expect("frame");
    assert_eq!(
        kiln_protocol::decode_message::<Reply>(&reply).expect("decodes"),
        Reply::Pong { id: 9 }
    );

    host.get_mut()
        .write_all(&[0x7f, 0xff, 0xff, 0xff])
        .await
        .expect("huge length");
    let reply = host.next().await.expect("reply").expect("frame");
    assert!(matches!(
        kiln_protocol::decode_message::<Reply>(&reply),
        Ok(Reply::ProtocolError { .. })
    ));
    let mut rest = Vec::new();
    host.get_mut().read_to_end(&mut rest).await.expect("eof");
    assert_eq!(finished(served).await, ServeOutcome::Closed);
}

#[tokio::test]
async fn duplicate_ids_in_flight_are_refused() {
    let (host, _served) = spawn_agent();
    let mut host: Host = Framed::new(host, MessageCodec::new());
    host.send(hello(PROTOCOL_VERSION, TOKEN))
        .await
        .expect("hello");
    assert!(matches!(host.next().await, Some(Ok(Reply::HelloOk { .. }))));
    let req = sh("sleep 5");
    host.send(Request::Exec {
        id: 5,
        req: req.clone(),
    })
    .await
    .expect("exec");
    host.send(Request::Exec { id: 5, req })
        .await
        .expect("exec again");
    match host.next().await {
        Some(Ok(Reply::Error { id: 5, message })) => {
            assert!(message.contains("in flight"), "{message}")
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    host.send(Request::Cancel { id: 5 }).await.expect("cancel");
    loop {
        match host.next().await {
            Some(Ok(Reply::Exited { id: 5, info })) => {
                assert!(info.cancelled);
                break;
            }
            Some(Ok(_)) => {}
            other => panic!("expected the exit, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn ping_answers() {
    let agent = start().await;
    for _ in 0..3 {
        agent.client.ping().await.expect("pong");
    }
}

#[tokio::test]
async fn shutdown_stops_commands_and_ends_the_session() {
    let agent = start().await;
    let (tx, mut rx) = mpsc::channel(16);
    let handle = agent
        .client
        .start_exec(sh("sleep 1000 & echo $!; wait"), tx)
        .await
        .expect("start");
    let chunk = rx.recv().await.expect("pid");
    let pid: i32 = String::from_utf8_lossy(&chunk.data)
        .trim()
        .parse()
        .expect("pid");
    let waiter = tokio::spawn(handle.wait());
    agent
        .client
        .shutdown()
        .await
        .expect("shutdown acknowledged");
    let info = waiter
        .await
        .expect("join")
        .expect("exit reported before the ack");
    assert_eq!(info.signal, Some(9), "{info:?}");
    assert!(wait_gone(pid).await, "{pid} survived the shutdown");
    assert_eq!(finished(agent.served).await, ServeOutcome::Shutdown);
}

/// Over virtio-serial a host that reconnects may not show up as EOF: its
/// new hello arrives on what the agent sees as the old stream. That hello
/// starts over (old commands killed, a fresh `HelloOk`); a bad one still
/// ends the connection.
#[tokio::test]
async fn a_second_hello_starts_over() {
    let (host, served) = spawn_agent();
    let mut host: Host = Framed::new(host, MessageCodec::new());
    host.send(hello(PROTOCOL_VERSION, TOKEN))
        .await
        .expect("hello");
    assert!(matches!(host.next().await, Some(Ok(Reply::HelloOk { .. }))));
    host.send(Request::Exec {
        id: 1,
        req: sh("sleep 1000"),
    })
    .await
    .expect("exec");
    host.send(hello(PROTOCOL_VERSION, TOKEN))
        .await
        .expect("hello again");
    loop {
        match host.next().await {
            Some(Ok(Reply::Exited { id: 1, info })) => assert_eq!(info.signal, Some(9)),
            Some(Ok(Reply::HelloOk { .. })) => break,
            other => panic!("expected a fresh HelloOk, got {other:?}"),
        }
    }
    // Ids of the old session are free again.
    host.send(Request::Ping { id: 1 }).await.expect("ping");
    assert!(matches!(host.next().await, Some(Ok(Reply::Pong { id: 1 }))));
    host.send(hello(PROTOCOL_VERSION, "guess"))
        .await
        .expect("bad hello");
    assert!(matches!(
        host.next().await,
        Some(Ok(Reply::HelloRejected { .. }))
    ));
    assert_eq!(finished(served).await, ServeOutcome::Closed);
}

fn identity(token: &str, hostname: &str) -> kiln_protocol::Identity {
    kiln_protocol::Identity {
        token: token.into(),
        hostname: hostname.into(),
        machine_id: "0123456789abcdef0123456789abcdef".into(),
        entropy: Bytes::from_static(&[7; 32]),
        unix_time_ns: 1_700_000_000_000_000_000,
    }
}

/// After `Reidentify` only the new token opens a session; an agent that
/// does not manage the system (a socket, here) changes nothing else.
#[tokio::test]
async fn reidentify_replaces_the_token() {
    let agent = start().await;
    let err = agent
        .client
        .reidentify(identity("new-token", "not a hostname"))
        .await
        .expect_err("bad hostname");
    assert!(err.to_string().contains("invalid hostname"), "{err}");
    agent
        .client
        .reidentify(identity("new-token", "kiln-1"))
        .await
        .expect("reidentify");
    agent.client.hello("new-token").await.expect("new token");
    agent.client.ping().await.expect("ping");
    let err = agent.client.hello(TOKEN).await.expect_err("old token");
    assert_eq!(
        err.to_string(),
        "agent rejected the handshake: invalid token"
    );
    assert_eq!(finished(agent.served).await, ServeOutcome::Closed);
}
