//! Loopback tests of `TlsStream` against rustls clients (tokio-rustls), over real sockets.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::{CipherSuite, ClientConfig, ProtocolVersion, ServerConfig, SupportedProtocolVersion};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

use super::*;
use crate::prepare_server_config;

type Client = tokio_rustls::client::TlsStream<TcpStream>;

/// A self-signed certificate for `localhost` and its key.
struct Identity {
    cert: CertificateDer<'static>,
    key: PrivateKeyDer<'static>,
}

fn identity() -> Identity {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    Identity {
        cert: certified.cert.der().clone(),
        key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
            certified.signing_key.serialize_der(),
        )),
    }
}

/// TLS 1.3 and 1.2, as the server offers them, with the hooks installed.
fn server_config(identity: &Identity) -> Arc<ServerConfig> {
    let mut config =
        ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![identity.cert.clone()], identity.key.clone_key())
            .unwrap();
    prepare_server_config(&mut config);
    Arc::new(config)
}

/// A client that trusts `identity`, speaks only `version` and, if given, only `suite`.
fn client_config(
    identity: &Identity,
    version: &'static SupportedProtocolVersion,
    suite: Option<CipherSuite>,
) -> ClientConfig {
    let mut provider = rustls::crypto::ring::default_provider();
    if let Some(suite) = suite {
        provider
            .cipher_suites
            .retain(|offered| offered.suite() == suite);
    }
    let mut roots = rustls::RootCertStore::empty();
    roots.add(identity.cert.clone()).unwrap();
    ClientConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(&[version])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth()
}

/// Fail a test that hangs instead of hanging the run.
async fn within<T>(future: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(20), future)
        .await
        .expect("the test finished in time")
}

/// Handshake a client with `client` config against [`accept`] over loopback.
async fn connect(server: Arc<ServerConfig>, client: ClientConfig) -> (TlsStream, Client) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
    let (server, client) = tokio::join!(
        async {
            let (tcp, _) = listener.accept().await.unwrap();
            accept(server, tcp).await
        },
        async {
            let tcp = TcpStream::connect(addr).await.unwrap();
            connector
                .connect(ServerName::try_from("localhost").unwrap(), tcp)
                .await
        }
    );
    (server.unwrap(), client.unwrap())
}

/// [`connect`] with the test identity, the given version and every cipher suite offered.
async fn connect_default(
    version: &'static rustls::SupportedProtocolVersion,
) -> (TlsStream, Client) {
    let identity = identity();
    connect(
        server_config(&identity),
        client_config(&identity, version, None),
    )
    .await
}

/// Send `message` each way and check it arrives whole.
async fn echo(server: &mut TlsStream, client: &mut Client, message: &[u8]) {
    client.write_all(message).await.unwrap();
    client.flush().await.unwrap();
    let mut received = vec![0; message.len()];
    server.read_exact(&mut received).await.unwrap();
    assert_eq!(received, message);
    server.write_all(message).await.unwrap();
    server.flush().await.unwrap();
    let mut received = vec![0; message.len()];
    client.read_exact(&mut received).await.unwrap();
    assert_eq!(received, message);
}

/// The client's exporter value, as SASL -PLUS clients compute it.
fn client_exporter(client: &Client) -> [u8; 32] {
    client
        .get_ref()
        .1
        .export_keying_material([0; 32], b"EXPORTER-Channel-Binding", None)
        .unwrap()
}

/// The exporter and the other handshake facts for one protocol version and suite.
async fn check_handshake(
    version: &'static SupportedProtocolVersion,
    suite: Option<CipherSuite>,
) -> (TlsStream, Client) {
    let identity = identity();
    let (mut server, mut client) = connect(
        server_config(&identity),
        client_config(&identity, version, suite),
    )
    .await;
    echo(&mut server, &mut client, b"<stream:stream>").await;
    assert_eq!(server.info().protocol_version, version.version);
    assert_eq!(server.info().server_name.as_deref(), Some("localhost"));
    if let Some(suite) = suite {
        assert_eq!(
            client
                .get_ref()
                .1
                .negotiated_cipher_suite()
                .unwrap()
                .suite(),
            suite
        );
    }
    (server, client)
}

#[tokio::test]
async fn tls13_handshake_echo_sni_and_exporter_with_sha256() {
    within(async {
        let (server, client) = check_handshake(
            &rustls::version::TLS13,
            Some(CipherSuite::TLS13_AES_128_GCM_SHA256),
        )
        .await;
        assert_eq!(server.info().exporter, Some(client_exporter(&client)));
    })
    .await;
}

#[tokio::test]
async fn tls13_exporter_with_sha384() {
    within(async {
        let (server, client) = check_handshake(
            &rustls::version::TLS13,
            Some(CipherSuite::TLS13_AES_256_GCM_SHA384),
        )
        .await;
        assert_eq!(server.info().exporter, Some(client_exporter(&client)));
    })
    .await;
}

#[tokio::test]
async fn tls12_handshake_and_echo_without_exporter() {
    within(async {
        let (server, _client) = check_handshake(&rustls::version::TLS12, None).await;
        assert_eq!(server.info().protocol_version, ProtocolVersion::TLSv1_2);
        assert_eq!(server.info().exporter, None);
    })
    .await;
}

#[tokio::test]
async fn a_client_without_sni_has_no_server_name() {
    within(async {
        let identity = identity();
        let mut client = client_config(&identity, &rustls::version::TLS13, None);
        client.enable_sni = false;
        let (mut server, mut client) = connect(server_config(&identity), client).await;
        echo(&mut server, &mut client, b"hello").await;
        assert_eq!(server.info().server_name, None);
    })
    .await;
}

/// 100 KiB each way: writes span several records, and the server reads in pieces smaller
/// than a record, so decrypted bytes wait in the stream between reads.
async fn check_large_transfers(version: &'static SupportedProtocolVersion) {
    let (mut server, mut client) = connect_default(version).await;
    let data: Vec<u8> = (0..100 * 1024).map(|i| (i % 251) as u8).collect();
    let (_, received) = tokio::join!(
        async {
            server.write_all(&data).await.unwrap();
            server.flush().await.unwrap();
        },
        async {
            let mut received = vec![0; data.len()];
            client.read_exact(&mut received).await.unwrap();
            received
        }
    );
    assert_eq!(received, data);
    let (_, received) = tokio::join!(
        async {
            client.write_all(&data).await.unwrap();
            client.flush().await.unwrap();
        },
        async {
            let mut received = Vec::new();
            let mut piece = [0; 1000];
            while received.len() < data.len() {
                let n = server.read(&mut piece).await.unwrap();
                assert_ne!(n, 0, "early end of stream");
                received.extend_from_slice(&piece[..n]);
            }
            received
        }
    );
    assert_eq!(received, data);
    echo(&mut server, &mut client, b"after").await;
    assert_eq!(server.buffer_capacities(), [0, 0, 0]);
}

#[tokio::test]
async fn large_writes_and_reads_split_across_records_tls13() {
    within(check_large_transfers(&rustls::version::TLS13)).await;
}

#[tokio::test]
async fn large_writes_and_reads_split_across_records_tls12() {
    within(check_large_transfers(&rustls::version::TLS12)).await;
}

/// Relay from `from` to `to` one byte per write, giving the runtime a turn between bytes so
/// the server sees each record arrive in pieces.
async fn trickle(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
) {
    let mut buffer = [0; 4096];
    loop {
        let n = from.read(&mut buffer).await.unwrap_or(0);
        if n == 0 {
            let _ = to.shutdown().await;
            return;
        }
        for byte in &buffer[..n] {
            if to.write_all(std::slice::from_ref(byte)).await.is_err() {
                return;
            }
            tokio::task::yield_now().await;
        }
    }
}

async fn check_byte_by_byte(version: &'static SupportedProtocolVersion) {
    let identity = identity();
    let server_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server_addr = server_listener.local_addr().unwrap();
    let relay_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let relay_addr = relay_listener.local_addr().unwrap();
    let relay = tokio::spawn(async move {
        let (client_side, _) = relay_listener.accept().await.unwrap();
        let server_side = TcpStream::connect(server_addr).await.unwrap();
        server_side.set_nodelay(true).unwrap();
        let (client_read, mut client_write) = client_side.into_split();
        let (mut server_read, server_write) = server_side.into_split();
        tokio::join!(trickle(client_read, server_write), async {
            let _ = tokio::io::copy(&mut server_read, &mut client_write).await;
        });
    });
    let connector =
        tokio_rustls::TlsConnector::from(Arc::new(client_config(&identity, version, None)));
    let config = server_config(&identity);
    let (server, client) = tokio::join!(
        async {
            let (tcp, _) = server_listener.accept().await.unwrap();
            accept(config, tcp).await
        },
        async {
            let tcp = TcpStream::connect(relay_addr).await.unwrap();
            connector
                .connect(ServerName::try_from("localhost").unwrap(), tcp)
                .await
        }
    );
    let (mut server, mut client) = (server.unwrap(), client.unwrap());
    echo(&mut server, &mut client, b"<presence/>").await;
    let data: Vec<u8> = (0..3000).map(|i| (i % 241) as u8).collect();
    echo(&mut server, &mut client, &data).await;
    assert_eq!(server.info().server_name.as_deref(), Some("localhost"));
    assert_eq!(server.buffer_capacities(), [0, 0, 0]);
    drop(client);
    drop(server);
    relay.await.unwrap();
}

#[tokio::test]
async fn records_arriving_byte_by_byte_tls13() {
    within(check_byte_by_byte(&rustls::version::TLS13)).await;
}

#[tokio::test]
async fn records_arriving_byte_by_byte_tls12() {
    within(check_byte_by_byte(&rustls::version::TLS12)).await;
}

#[tokio::test]
async fn close_notify_is_end_of_file_and_shutdown_sends_one() {
    within(async {
        let (mut server, mut client) = connect_default(&rustls::version::TLS13).await;
        client.write_all(b"last words").await.unwrap();
        client.shutdown().await.unwrap();
        let mut received = Vec::new();
        server.read_to_end(&mut received).await.unwrap();
        assert_eq!(received, b"last words");
        // And again: end of file stays end of file.
        assert_eq!(server.read(&mut [0; 16]).await.unwrap(), 0);

        server.write_all(b"goodbye").await.unwrap();
        server.shutdown().await.unwrap();
        let mut received = Vec::new();
        client.read_to_end(&mut received).await.unwrap();
        assert_eq!(received, b"goodbye");
    })
    .await;
}

/// Read until the stream fails, returning the error.
async fn read_error(stream: &mut (impl tokio::io::AsyncRead + Unpin)) -> std::io::Error {
    let mut buffer = [0; 1024];
    loop {
        match stream.read(&mut buffer).await {
            Ok(0) => panic!("end of file instead of an error"),
            Ok(_) => {}
            Err(err) => return err,
        }
    }
}

#[tokio::test]
async fn tcp_eof_without_close_notify_reads_as_tokio_rustls_reports_it() {
    within(async {
        let identity = identity();
        let config = server_config(&identity);
        let client = client_config(&identity, &rustls::version::TLS13, None);

        // Ours.
        let (mut server, client_stream) = connect(Arc::clone(&config), client.clone()).await;
        let (mut tcp, _) = client_stream.into_inner();
        tcp.shutdown().await.unwrap();
        let ours = read_error(&mut server).await;
        // Reading again gives the same answer.
        let again = read_error(&mut server).await;

        // tokio-rustls's.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
        let (theirs, client_stream) = tokio::join!(
            async {
                let (tcp, _) = listener.accept().await.unwrap();
                acceptor.accept(tcp).await.unwrap()
            },
            async {
                let tcp = TcpStream::connect(addr).await.unwrap();
                connector
                    .connect(ServerName::try_from("localhost").unwrap(), tcp)
                    .await
                    .unwrap()
            }
        );
        let mut theirs = theirs;
        let (mut tcp, _) = client_stream.into_inner();
        tcp.shutdown().await.unwrap();
        let expected = read_error(&mut theirs).await;

        assert_eq!(expected.kind(), std::io::ErrorKind::UnexpectedEof);
        for err in [ours, again] {
            assert_eq!(err.kind(), expected.kind());
            assert_eq!(err.to_string(), expected.to_string());
        }
    })
    .await;
}

/// The rustls error inside an `InvalidData` read error.
fn rustls_error(err: &std::io::Error) -> Option<&rustls::Error> {
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidData, "{err}");
    err.get_ref()?.downcast_ref::<rustls::Error>()
}

async fn check_corrupted_record(version: &'static SupportedProtocolVersion) {
    let (mut server, mut client) = connect_default(version).await;
    echo(&mut server, &mut client, b"fine so far").await;
    // An application-data record whose contents are noise: it cannot be decrypted.
    let mut record = vec![0x17, 0x03, 0x03, 0x00, 0x40];
    record.extend((0..0x40).map(|i| i as u8));
    client.get_mut().0.write_all(&record).await.unwrap();
    let err = read_error(&mut server).await;
    assert_eq!(rustls_error(&err), Some(&rustls::Error::DecryptError));
    // The alert reached the client.
    let err = read_error(&mut client).await;
    assert_eq!(
        rustls_error(&err),
        Some(&rustls::Error::AlertReceived(
            rustls::AlertDescription::BadRecordMac
        ))
    );
    // The stream stays failed, for reads and writes.
    let again = read_error(&mut server).await;
    assert_eq!(rustls_error(&again), Some(&rustls::Error::DecryptError));
    let write = server.write_all(b"more").await.unwrap_err();
    assert_eq!(rustls_error(&write), Some(&rustls::Error::DecryptError));
}

#[tokio::test]
async fn a_corrupted_record_is_an_error_and_the_alert_is_sent_tls13() {
    within(check_corrupted_record(&rustls::version::TLS13)).await;
}

#[tokio::test]
async fn a_corrupted_record_is_an_error_and_the_alert_is_sent_tls12() {
    within(check_corrupted_record(&rustls::version::TLS12)).await;
}

#[tokio::test]
async fn a_client_key_update_is_answered_and_traffic_goes_on() {
    within(async {
        let (mut server, mut client) = connect_default(&rustls::version::TLS13).await;
        echo(&mut server, &mut client, b"before").await;
        for round in 0..3 {
            client.get_mut().1.refresh_traffic_keys().unwrap();
            let message = format!("after key update {round}");
            echo(&mut server, &mut client, message.as_bytes()).await;
        }
        assert_eq!(server.buffer_capacities(), [0, 0, 0]);
    })
    .await;
}

#[tokio::test]
async fn an_idle_stream_holds_no_buffers() {
    within(async {
        let (mut server, mut client) = connect_default(&rustls::version::TLS13).await;
        assert_eq!(server.buffer_capacities(), [0, 0, 0]);
        echo(&mut server, &mut client, b"<iq type='get' id='1'/>").await;
        // Half a record: the stream must keep it, and give it back once the rest arrives.
        let data = vec![b'x'; 40_000];
        client.write_all(&data).await.unwrap();
        client.flush().await.unwrap();
        let mut first = [0; 10];
        server.read_exact(&mut first).await.unwrap();
        assert_ne!(server.buffer_capacities(), [0, 0, 0]);
        let mut rest = vec![0; data.len() - first.len()];
        server.read_exact(&mut rest).await.unwrap();
        assert_eq!(server.buffer_capacities(), [0, 0, 0]);
    })
    .await;
}

#[tokio::test]
async fn a_handshake_cut_short_is_an_eof_error() {
    within(async {
        let identity = identity();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (server, ()) = tokio::join!(
            async {
                let (tcp, _) = listener.accept().await.unwrap();
                accept(server_config(&identity), tcp).await
            },
            async {
                let mut tcp = TcpStream::connect(addr).await.unwrap();
                // The start of a ClientHello record, then nothing.
                tcp.write_all(&[0x16, 0x03, 0x01, 0x00, 0x80, 0x01])
                    .await
                    .unwrap();
                tcp.shutdown().await.unwrap();
            }
        );
        assert!(matches!(server, Err(TlsError::HandshakeEof)));
    })
    .await;
}

/// A TLS 1.3 handshake with a buffered rustls client that sends its Finished and `first` in
/// one TCP write, as XMPP clients send their stream header. Returns the server stream, the
/// client and its socket.
async fn pipelined_handshake(first: &[u8]) -> (TlsStream, rustls::ClientConnection, TcpStream) {
    let identity = identity();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let config = client_config(&identity, &rustls::version::TLS13, None);
    let mut client =
        rustls::ClientConnection::new(Arc::new(config), ServerName::try_from("localhost").unwrap())
            .unwrap();
    let (server, tcp) = tokio::join!(
        async {
            let (tcp, _) = listener.accept().await.unwrap();
            accept(server_config(&identity), tcp).await.unwrap()
        },
        async {
            let mut tcp = TcpStream::connect(addr).await.unwrap();
            let mut out = Vec::new();
            client.write_tls(&mut out).unwrap();
            tcp.write_all(&out).await.unwrap();
            let mut buf = vec![0; 65536];
            while client.is_handshaking() {
                let n = tcp.read(&mut buf).await.unwrap();
                assert_ne!(n, 0, "the server closed during the handshake");
                client.read_tls(&mut &buf[..n]).unwrap();
                client.process_new_packets().unwrap();
            }
            std::io::Write::write_all(&mut client.writer(), first).unwrap();
            let mut out = Vec::new();
            while client.wants_write() {
                client.write_tls(&mut out).unwrap();
            }
            tcp.write_all(&out).await.unwrap();
            tcp
        }
    );
    (server, client, tcp)
}

/// Read what the server sent in one socket read and run the client over it; the plaintext.
async fn client_receive(
    client: &mut rustls::ClientConnection,
    tcp: &mut TcpStream,
) -> (usize, Vec<u8>) {
    let mut buf = vec![0; 65536];
    let n = tcp.read(&mut buf).await.unwrap();
    client.read_tls(&mut &buf[..n]).unwrap();
    client.process_new_packets().unwrap();
    let mut plaintext = Vec::new();
    match std::io::Read::read_to_end(&mut client.reader(), &mut plaintext) {
        Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => {}
        other => panic!("unexpected client read result {other:?}"),
    }
    (n, plaintext)
}

#[tokio::test]
async fn session_tickets_leave_with_the_answer_to_pipelined_data() {
    within(async {
        let (mut server, mut client, mut tcp) = pipelined_handshake(b"hello").await;
        let mut received = [0; 5];
        server.read_exact(&mut received).await.unwrap();
        assert_eq!(&received, b"hello");
        // The tickets wait for the answer, so that both leave in one segment.
        let [_, _, held] = server.buffer_capacities();
        assert_ne!(held, 0, "the tickets were sent on their own");
        server.write_all(b"world").await.unwrap();
        server.flush().await.unwrap();
        assert_eq!(server.buffer_capacities(), [0, 0, 0]);
        // More than the answer's record (5 header + 5 data + 1 type + 16 tag bytes).
        let (n, plaintext) = client_receive(&mut client, &mut tcp).await;
        assert_eq!(plaintext, b"world");
        assert!(n > 27, "only {n} bytes: no tickets came");
        echo_raw(&mut server, &mut client, &mut tcp).await;
        assert_eq!(server.buffer_capacities(), [0, 0, 0]);
    })
    .await;
}

#[tokio::test]
async fn held_session_tickets_are_sent_when_the_server_waits_to_read() {
    within(async {
        let (mut server, mut client, mut tcp) = pipelined_handshake(b"hello").await;
        let mut received = [0; 5];
        server.read_exact(&mut received).await.unwrap();
        // Nothing to answer yet: the next read waits, and the tickets go out before it does.
        let mut more = [0; 1];
        let waited = tokio::time::timeout(Duration::from_millis(100), server.read(&mut more)).await;
        assert!(waited.is_err(), "the client sent nothing more");
        let (n, plaintext) = client_receive(&mut client, &mut tcp).await;
        assert!(n > 0 && plaintext.is_empty());
        assert_eq!(server.buffer_capacities(), [0, 0, 0]);
        echo_raw(&mut server, &mut client, &mut tcp).await;
    })
    .await;
}

/// Traffic still flows both ways after the tickets.
async fn echo_raw(
    server: &mut TlsStream,
    client: &mut rustls::ClientConnection,
    tcp: &mut TcpStream,
) {
    std::io::Write::write_all(&mut client.writer(), b"ping").unwrap();
    let mut out = Vec::new();
    while client.wants_write() {
        client.write_tls(&mut out).unwrap();
    }
    tcp.write_all(&out).await.unwrap();
    let mut received = [0; 4];
    server.read_exact(&mut received).await.unwrap();
    assert_eq!(&received, b"ping");
    server.write_all(b"pong").await.unwrap();
    server.flush().await.unwrap();
    let (_, plaintext) = client_receive(client, tcp).await;
    assert_eq!(plaintext, b"pong");
}
