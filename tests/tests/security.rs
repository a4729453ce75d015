//! Security checks of issue 7: no password reaches the log, and TLS 1.0/1.1 are refused.

use std::time::Duration;

use starling_testkit::{ScramMech, ServerOptions, TestServer, XmppClient};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// Architecture invariant "passwords are never stored or logged": logins with PLAIN and SCRAM,
/// right and wrong, with the most verbose log filter; then the log is searched for every
/// password and for the base64 PLAIN payloads that carry them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passwords_never_reach_the_log() -> anyhow::Result<()> {
    use base64::Engine as _;
    let server = TestServer::start_with(ServerOptions {
        log_filter: Some("trace".to_owned()),
        auth_failure_delay_ms: 1,
        max_auth_failure_delay_ms: 1,
        ..ServerOptions::default()
    })
    .await?;
    let right = "Correct-Horse-7f3a";
    let wrong = "Wrong-Battery-91c2";
    server.add_user("alice", right).await?;

    let mut client = XmppClient::connect_plain(server.starttls_addr).await?;
    client.open_stream(&server.domain).await?;
    client.starttls().await?;
    assert!(client.auth_plain("alice", wrong, None).await?.is_err());
    client.auth_plain("alice", right, None).await??;
    client.bind(None).await?;
    client.ping().await?;

    for mech in [ScramMech::Sha1, ScramMech::Sha256, ScramMech::Sha256Plus] {
        let mut client = XmppClient::connect_plain(server.starttls_addr).await?;
        client.open_stream(&server.domain).await?;
        client.starttls().await?;
        assert!(client.auth_scram(mech, "alice", wrong).await?.is_err());
        client.auth_scram(mech, "alice", right).await??;
        client.bind(None).await?;
        client.ping().await?;
    }

    let log = server.log_text();
    // The log is verbose enough for the check to mean something.
    assert!(
        log.contains("TRACE") || log.contains("DEBUG"),
        "log too quiet"
    );
    assert!(log.contains("authenticated"));
    let engine = base64::engine::general_purpose::STANDARD;
    for secret in [
        right.to_owned(),
        wrong.to_owned(),
        engine.encode(format!("\0alice\0{right}")),
        engine.encode(format!("\0alice\0{wrong}")),
        engine.encode(right),
    ] {
        assert!(
            !log.contains(&secret),
            "the server log contains a secret ({secret})"
        );
    }
    Ok(())
}

/// A TLS 1.1 ClientHello (RFC 4346 §7.4.1.2) without extensions, offering
/// TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA and TLS_RSA_WITH_AES_128_CBC_SHA.
fn tls11_client_hello(record_version: [u8; 2]) -> Vec<u8> {
    let mut body = vec![0x03, 0x02]; // client_version TLS 1.1
    body.extend_from_slice(&[0x42; 32]); // random
    body.push(0); // no session id
    body.extend_from_slice(&[0x00, 0x04, 0xc0, 0x13, 0x00, 0x2f]); // cipher suites
    body.extend_from_slice(&[0x01, 0x00]); // null compression
    let mut handshake = vec![0x01, 0x00, 0x00, body.len() as u8]; // client_hello
    handshake.extend_from_slice(&body);
    let mut record = vec![0x16, record_version[0], record_version[1], 0x00];
    record.push(handshake.len() as u8);
    record.extend_from_slice(&handshake);
    record
}

/// Issue 7: TLS 1.0 and 1.1 are refused. rustls cannot offer them, so the ClientHello is
/// written by hand; the server must answer with an alert record (content type 21), never a
/// ServerHello (handshake record, type 22), and close.
#[tokio::test]
async fn tls_1_0_and_1_1_client_hellos_are_refused() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    for (name, version) in [("TLS 1.0", [0x03, 0x01]), ("TLS 1.1", [0x03, 0x02])] {
        let mut socket = tokio::net::TcpStream::connect(server.direct_tls_addr).await?;
        let mut hello = tls11_client_hello(version);
        // For TLS 1.0 the hello itself says 1.0 too.
        hello[10] = version[1];
        socket.write_all(&hello).await?;
        let mut answer = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), socket.read_to_end(&mut answer))
            .await
            .map_err(|_| anyhow::anyhow!("{name}: the server neither answered nor closed"))?
            .or_else(|error| {
                if error.kind() == std::io::ErrorKind::ConnectionReset {
                    Ok(0)
                } else {
                    Err(error)
                }
            })?;
        assert_eq!(
            answer.first(),
            Some(&0x15),
            "{name}: expected an alert record, got {answer:02x?}"
        );
    }
    server.ensure_alive()?;
    // The server still speaks TLS 1.3 to a modern client.
    let client = XmppClient::connect_direct_tls(server.direct_tls_addr, &server.domain).await?;
    assert_eq!(
        client.tls_version().map(|version| format!("{version:?}")),
        Some("TLSv1_3".to_owned())
    );
    Ok(())
}
