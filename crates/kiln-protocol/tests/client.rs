#![cfg(feature = "client")]

//! The client against scripted peers: every way an agent can misbehave ends
//! in a clear error, never a hang.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::{SinkExt, StreamExt};
use kiln_protocol::client::LostReason;
use kiln_protocol::{
    AgentClient, ClientConfig, ClientError, ExecRequest, MAX_FRAME_LEN, MessageCodec,
    PROTOCOL_VERSION, Reply, Request, encode_message,
};
use tokio::io::AsyncWriteExt;
use tokio::net::UnixStream;
use tokio::sync::mpsc;
use tokio_util::codec::Framed;

type Peer = Framed<UnixStream, MessageCodec<Reply, Request>>;

fn quick() -> ClientConfig {
    ClientConfig {
        request_timeout: Duration::from_millis(300),
        keepalive_interval: Duration::from_millis(50),
        idle_timeout: Duration::from_millis(300),
        ..ClientConfig::default()
    }
}

fn connect(config: ClientConfig) -> (AgentClient, Peer) {
    let (host, agent) = UnixStream::pair().expect("socket pair");
    (
        AgentClient::new(host, config),
        Framed::new(agent, MessageCodec::new()),
    )
}

async fn accept_hello(peer: &mut Peer) {
    match peer.next().await {
        Some(Ok(Request::Hello(hello))) => assert_eq!(hello.protocol_version, PROTOCOL_VERSION),
        other => panic!("expected hello, got {other:?}"),
    }
    peer.send(Reply::HelloOk {
        protocol_version: PROTOCOL_VERSION,
        agent_version: "test".into(),
    })
    .await
    .expect("send");
}

async fn handshake(client: &AgentClient, peer: &mut Peer) {
    let (info, ()) = tokio::join!(client.hello("t"), accept_hello(peer));
    assert_eq!(info.expect("hello").agent_version, "test");
}

#[tokio::test]
async fn silent_peer_makes_hello_time_out() {
    let (client, _peer) = connect(quick());
    let err = client.hello("t").await.expect_err("no answer");
    assert!(
        matches!(err, ClientError::Timeout { what: "hello", .. }),
        "{err:?}"
    );
    assert_eq!(err.to_string(), "agent did not answer hello within 300ms");
}

/// A command may run silently for ever; a dead agent must still be noticed:
/// the keepalive pings go unanswered and the connection is declared dead.
#[tokio::test]
async fn agent_going_silent_mid_command_is_detected() {
    let (client, mut peer) = connect(quick());
    handshake(&client, &mut peer).await;
    let (tx, _rx) = mpsc::channel(8);
    let exec = client.exec(ExecRequest::default(), tx);
    // The peer keeps its socket open and reads, but never answers again.
    let drain = tokio::spawn(async move { while peer.next().await.is_some() {} });
    let err = tokio::time::timeout(Duration::from_secs(10), exec)
        .await
        .expect("the client gives up by itself")
        .expect_err("dead agent");
    assert!(
        matches!(
            err,
            ClientError::ConnectionLost(LostReason::Unresponsive(_))
        ),
        "{err:?}"
    );
    assert!(client.ping().await.is_err(), "later calls fail at once");
    drain.abort();
}

#[tokio::test]
async fn answering_pings_keeps_a_long_command_alive() {
    let (client, mut peer) = connect(quick());
    handshake(&client, &mut peer).await;
    let agent = tokio::spawn(async move {
        let mut exec_id = None;
        let started = tokio::time::Instant::now();
        while let Some(Ok(req)) = peer.next().await {
            match req {
                Request::Ping { id } => peer.send(Reply::Pong { id }).await.expect("pong"),
                Request::Exec { id, .. } => exec_id = Some(id),
                other => panic!("unexpected {other:?}"),
            }
            // Three idle timeouts of silence on the command itself.
            if let Some(id) = exec_id.filter(|_| started.elapsed() > Duration::from_millis(900)) {
                let info = kiln_protocol::ExitInfo {
                    exit_code: Some(0),
                    signal: None,
                    timed_out: false,
                    cancelled: false,
                    duration_ms: 900,
                };
                peer.send(Reply::Exited { id, info }).await.expect("exited");
                break;
            }
        }
        peer
    });
    let (tx, _rx) = mpsc::channel(8);
    let info = client
        .exec(ExecRequest::default(), tx)
        .await
        .expect("exits");
    assert_eq!(info.exit_code, Some(0));
    drop(agent);
}

#[tokio::test]
async fn rejected_version_is_a_mismatch_error() {
    let (client, mut peer) = connect(quick());
    tokio::spawn(async move {
        let _ = peer.next().await;
        peer.send(Reply::HelloRejected {
            protocol_version: PROTOCOL_VERSION + 1,
            message: "no".into(),
        })
        .await
        .expect("send");
        peer
    });
    let err = client.hello("t").await.expect_err("mismatch");
    assert!(
        matches!(err, ClientError::VersionMismatch { host, agent } if host == PROTOCOL_VERSION && agent == PROTOCOL_VERSION + 1),
        "{err:?}"
    );
}

/// An agent of another version may send a hello reply this version cannot
/// decode; its frozen prefix still identifies the mismatch.
#[tokio::test]
async fn undecodable_hello_reply_from_another_version_is_a_mismatch() {
    let (host, mut agent) = UnixStream::pair().expect("pair");
    let client = AgentClient::new(host, quick());
    let mut payload = BytesMut::new();
    encode_message(
        &Reply::HelloOk {
            protocol_version: 77,
            agent_version: "future".into(),
        },
        &mut payload,
    )
    .expect("encode");
    // A field this version does not know, appended by the "future" agent.
    payload.extend_from_slice(&[1, 2, 3]);
    let len = u32::try_from(payload.len() - 4).expect("small");
    payload[..4].copy_from_slice(&len.to_be_bytes());
    agent.write_all(&payload).await.expect("write");
    let err = client.hello("t").await.expect_err("mismatch");
    assert!(
        matches!(err, ClientError::VersionMismatch { agent: 77, .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn garbage_from_the_agent_ends_the_connection_clearly() {
    let (host, mut agent) = UnixStream::pair().expect("pair");
    let client = AgentClient::new(host, quick());
    agent
        .write_all(&[0xff, 0xff, 0xff, 0xff, 0, 0])
        .await
        .expect("write");
    let err = client.hello("t").await.expect_err("garbage");
    assert!(
        matches!(err, ClientError::ConnectionLost(LostReason::Malformed(_))),
        "{err:?}"
    );
    assert!(
        format!("{:?}", client.lost()).contains("exceeds the limit"),
        "{:?}",
        client.lost()
    );
}

#[tokio::test]
async fn peer_hanging_up_fails_waiting_calls() {
    let (client, peer) = connect(quick());
    let hello = tokio::spawn({
        let client = client.clone();
        async move { client.hello("t").await }
    });
    tokio::time::sleep(Duration::from_millis(20)).await;
    drop(peer);
    let err = hello.await.expect("join").expect_err("closed");
    assert!(
        matches!(err, ClientError::ConnectionLost(LostReason::Closed)),
        "{err:?}"
    );
}

#[tokio::test]
async fn oversized_request_fails_alone() {
    let (client, mut peer) = connect(quick());
    handshake(&client, &mut peer).await;
    let (tx, _rx) = mpsc::channel(1);
    let huge = ExecRequest {
        argv: vec!["cat".into()],
        stdin: Some(Bytes::from(vec![0u8; MAX_FRAME_LEN + 1])),
        ..ExecRequest::default()
    };
    let err = client.exec(huge, tx).await.expect_err("too large");
    assert!(matches!(err, ClientError::Encode(_)), "{err:?}");
    // The connection is still usable.
    let ping = tokio::spawn({
        let client = client.clone();
        async move { client.ping().await }
    });
    loop {
        match peer.next().await {
            Some(Ok(Request::Ping { id })) => {
                peer.send(Reply::Pong { id }).await.expect("pong");
                if ping.is_finished() {
                    break;
                }
            }
            other => panic!("unexpected {other:?}"),
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
        if ping.is_finished() {
            break;
        }
    }
    ping.await.expect("join").expect("pong");
}

#[tokio::test]
async fn agent_error_reply_is_reported_with_its_message() {
    let (client, mut peer) = connect(quick());
    handshake(&client, &mut peer).await;
    let agent = tokio::spawn(async move {
        while let Some(Ok(req)) = peer.next().await {
            if let Request::GetFile { id, path } = req {
                let message = format!("cannot read {path}: No such file");
                peer.send(Reply::Error { id, message }).await.expect("send");
            }
        }
    });
    let err = client.get_file("/nope").await.expect_err("missing");
    assert_eq!(
        err.to_string(),
        "agent failed get_file: cannot read /nope: No such file"
    );
    agent.abort();
}
