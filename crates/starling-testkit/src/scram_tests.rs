//! Tests of the client's SASL exchanges (RFC 6120 §6) against a scripted in-memory peer.
//!
//! The peer computes SCRAM-SHA-256 (RFC 5802, RFC 7677) with its own HMAC and PBKDF2 built on
//! `sha2`, checked first against RFC 4231, RFC 7914 and the RFC 7677 example, so the client is
//! verified against an implementation that shares no code with the `sasl` crate.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

use crate::ChannelBinding;
use crate::client::{NS_SASL, SaslFailure, ScramMech, XmppClient};
use crate::reader::{StreamEvent, StreamReader, to_xml};

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    const BLOCK: usize = 64;
    let mut key = if key.len() > BLOCK {
        Sha256::digest(key).to_vec()
    } else {
        key.to_vec()
    };
    key.resize(BLOCK, 0);
    let inner: Vec<u8> = key.iter().map(|b| b ^ 0x36).collect();
    let outer: Vec<u8> = key.iter().map(|b| b ^ 0x5c).collect();
    let inner_hash = Sha256::new()
        .chain_update(&inner)
        .chain_update(data)
        .finalize();
    Sha256::new()
        .chain_update(&outer)
        .chain_update(inner_hash)
        .finalize()
        .to_vec()
}

/// PBKDF2-HMAC-SHA-256, first block only (which is all SCRAM-SHA-256 needs).
fn pbkdf2(password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
    let mut u = hmac(password, &[salt, &1u32.to_be_bytes()].concat());
    let mut out = u.clone();
    for _ in 1..iterations {
        u = hmac(password, &u);
        out.iter_mut().zip(&u).for_each(|(o, b)| *o ^= b);
    }
    out
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Client proof and server signature for one exchange.
fn scram_sha256(
    password: &str,
    salt: &[u8],
    iterations: u32,
    auth_message: &str,
) -> (Vec<u8>, Vec<u8>) {
    let salted = pbkdf2(password.as_bytes(), salt, iterations);
    let client_key = hmac(&salted, b"Client Key");
    let stored_key = Sha256::digest(&client_key);
    let client_signature = hmac(&stored_key, auth_message.as_bytes());
    let proof = client_key
        .iter()
        .zip(&client_signature)
        .map(|(a, b)| a ^ b)
        .collect();
    let server_key = hmac(&salted, b"Server Key");
    (proof, hmac(&server_key, auth_message.as_bytes()))
}

#[test]
fn hmac_matches_rfc4231_case_2() {
    assert_eq!(
        hex(&hmac(b"Jefe", b"what do ya want for nothing?")),
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    );
}

#[test]
fn pbkdf2_matches_rfc7914_first_block() {
    assert_eq!(
        hex(&pbkdf2(b"passwd", b"salt", 1)),
        "55ac046e56e3089fec1691c22544b605f94185216dde0465e68b9d57c20dacbc"
    );
}

#[test]
fn peer_math_matches_rfc7677_example() {
    let auth_message = "n=user,r=rOprNGfwEbeRWgbNEkqO,\
        r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096,\
        c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
    let salt = BASE64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").expect("base64");
    let (proof, signature) = scram_sha256("pencil", &salt, 4096, auth_message);
    assert_eq!(
        BASE64.encode(proof),
        "dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
    );
    assert_eq!(
        BASE64.encode(signature),
        "6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
    );
}

/// How the scripted peer ends the SCRAM exchange.
#[derive(Clone, Copy, PartialEq)]
enum Ending {
    /// Verifies the proof and answers with the correct signature.
    Honest,
    /// Answers `<success/>` with a signature for the wrong password.
    ForgedSignature,
    /// Answers `<failure><not-authorized/><text>no</text></failure>`.
    Refuse,
}

/// The server side of one in-memory connection.
struct Peer {
    io: DuplexStream,
    reader: StreamReader,
}

impl Peer {
    async fn next(&mut self) -> StreamEvent {
        loop {
            if let Some(event) = self.reader.next_event().expect("client XML is well-formed") {
                return event;
            }
            let mut buf = [0u8; 4096];
            let n = self.io.read(&mut buf).await.expect("read");
            if n == 0 {
                self.reader.feed_eof();
            } else {
                self.reader.feed(&buf[..n]);
            }
        }
    }

    async fn element(&mut self) -> minidom::Element {
        match self.next().await {
            StreamEvent::Element(element) => element,
            other => panic!("peer expected an element, got {other:?}"),
        }
    }

    async fn open(&mut self, features: &str) {
        assert!(matches!(self.next().await, StreamEvent::Header(_)));
        self.send(&format!(
            "<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
             xmlns:stream='http://etherx.jabber.org/streams' id='s' from='localhost' version='1.0'>\
             <stream:features>{features}</stream:features>"
        ))
        .await;
    }

    async fn send(&mut self, text: &str) {
        self.io.write_all(text.as_bytes()).await.expect("write");
    }
}

/// Runs `auth_scram_with_binding` against the scripted peer. Returns the client's outcome
/// (errors as strings) and the gs2 header plus `c=` binding data the peer saw.
async fn scram_against_peer(
    password: &str,
    binding: ChannelBinding,
    ending: Ending,
) -> (Result<Result<(), SaslFailure>, String>, String, Vec<u8>) {
    let (client_io, server_io) = tokio::io::duplex(64 * 1024);
    let peer = tokio::spawn(async move {
        let mut peer = Peer {
            io: server_io,
            reader: StreamReader::new(),
        };
        peer.open("<mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>SCRAM-SHA-256</mechanism></mechanisms>").await;
        let auth = peer.element().await;
        assert!(auth.is("auth", NS_SASL), "{}", to_xml(&auth));
        let client_first =
            String::from_utf8(BASE64.decode(auth.text()).expect("base64")).expect("utf-8");
        let (gs2_flag, rest) = client_first.split_once(',').expect("gs2 flag");
        let (authzid, bare) = rest.split_once(',').expect("gs2 authzid");
        let gs2_header = format!("{gs2_flag},{authzid},");
        let client_nonce = bare
            .split(',')
            .find_map(|kv| kv.strip_prefix("r="))
            .expect("nonce");
        let salt = BASE64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").expect("base64");
        let server_first = format!("r={client_nonce}srv,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096");
        peer.send(&format!(
            "<challenge xmlns='{NS_SASL}'>{}</challenge>",
            BASE64.encode(&server_first)
        ))
        .await;
        let response = peer.element().await;
        let client_final =
            String::from_utf8(BASE64.decode(response.text()).expect("base64")).expect("utf-8");
        let (without_proof, proof) = client_final.split_once(",p=").expect("proof");
        let cbind = without_proof
            .split(',')
            .find_map(|kv| kv.strip_prefix("c="))
            .map(|c| BASE64.decode(c).expect("base64"))
            .expect("c=");
        let auth_message = format!("{bare},{server_first},{without_proof}");
        let (expected_proof, signature) = scram_sha256("pencil", &salt, 4096, &auth_message);
        assert_eq!(BASE64.encode(expected_proof), proof, "client proof");
        match ending {
            Ending::Honest => {
                peer.send(&format!(
                    "<success xmlns='{NS_SASL}'>{}</success>",
                    BASE64.encode(format!("v={}", BASE64.encode(signature)))
                ))
                .await;
                // RFC 6120 §6.4.6: the client restarts the stream, so the peer parses a new one.
                let leftover = peer.reader.unparsed().to_vec();
                peer.reader = StreamReader::new();
                peer.reader.feed(&leftover);
                peer.open("<bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/>")
                    .await;
            }
            Ending::ForgedSignature => {
                let (_, forged) = scram_sha256("wrong", &salt, 4096, &auth_message);
                peer.send(&format!(
                    "<success xmlns='{NS_SASL}'>{}</success>",
                    BASE64.encode(format!("v={}", BASE64.encode(forged)))
                ))
                .await;
            }
            Ending::Refuse => {
                peer.send(&format!(
                    "<failure xmlns='{NS_SASL}'><not-authorized/><text>no</text></failure>"
                ))
                .await;
            }
        }
        (gs2_header, cbind)
    });
    let mut client = XmppClient::from_stream(client_io, "localhost");
    client.open_stream("localhost").await.expect("stream opens");
    let outcome = client
        .auth_scram_with_binding(ScramMech::Sha256, "user", password, binding)
        .await
        .map_err(|error| format!("{error:#}"));
    if outcome == Ok(Ok(())) {
        let features = client.features().expect("features after restart");
        assert!(features.has_child("bind", "urn:ietf:params:xml:ns:xmpp-bind"));
    }
    let (gs2_header, cbind) = peer.await.expect("peer finished");
    (outcome, gs2_header, cbind)
}

#[tokio::test]
async fn scram_sha256_succeeds_and_restarts_the_stream() {
    let (outcome, gs2, cbind) =
        scram_against_peer("pencil", ChannelBinding::None, Ending::Honest).await;
    assert_eq!(outcome, Ok(Ok(())));
    assert_eq!(gs2, "n,,");
    assert_eq!(cbind, b"n,,");
}

#[tokio::test]
async fn downgrade_flag_is_sent_as_y() {
    let (outcome, gs2, cbind) =
        scram_against_peer("pencil", ChannelBinding::Unsupported, Ending::Honest).await;
    assert_eq!(outcome, Ok(Ok(())));
    assert_eq!(gs2, "y,,");
    assert_eq!(cbind, b"y,,");
}

#[tokio::test]
async fn tls_exporter_binding_data_follows_the_gs2_header() {
    let (outcome, gs2, cbind) = scram_against_peer(
        "pencil",
        ChannelBinding::TlsExporter(vec![7; 32]),
        Ending::Honest,
    )
    .await;
    assert_eq!(outcome, Ok(Ok(())));
    assert_eq!(gs2, "p=tls-exporter,,");
    assert_eq!(cbind, [b"p=tls-exporter,,".as_slice(), &[7; 32]].concat());
}

#[tokio::test]
async fn forged_server_signature_is_rejected() {
    let (outcome, _, _) =
        scram_against_peer("pencil", ChannelBinding::None, Ending::ForgedSignature).await;
    assert_eq!(
        outcome,
        Err(
            "SCRAM-SHA-256: bad server final message: invalid signature in success response"
                .to_owned()
        )
    );
}

#[tokio::test]
async fn failure_condition_and_text_are_reported() {
    let (outcome, _, _) = scram_against_peer("pencil", ChannelBinding::None, Ending::Refuse).await;
    assert_eq!(
        outcome,
        Ok(Err(SaslFailure {
            condition: "not-authorized".to_owned(),
            text: Some("no".to_owned())
        }))
    );
}

#[tokio::test]
async fn plain_with_authzid_sends_all_three_fields() {
    let (client_io, server_io) = tokio::io::duplex(64 * 1024);
    let peer = tokio::spawn(async move {
        let mut peer = Peer {
            io: server_io,
            reader: StreamReader::new(),
        };
        peer.open("").await;
        let auth = peer.element().await;
        peer.send(&format!(
            "<failure xmlns='{NS_SASL}'><invalid-authzid/></failure>"
        ))
        .await;
        (
            auth.attr("mechanism").map(str::to_owned),
            BASE64.decode(auth.text()).expect("base64"),
        )
    });
    let mut client = XmppClient::from_stream(client_io, "localhost");
    client.open_stream("localhost").await.expect("stream opens");
    let outcome = client
        .auth_plain("alice", "secret", Some("bob@localhost"))
        .await
        .expect("no protocol error");
    assert_eq!(outcome, Err(SaslFailure::condition("invalid-authzid")));
    let (mechanism, payload) = peer.await.expect("peer finished");
    assert_eq!(mechanism.as_deref(), Some("PLAIN"));
    assert_eq!(payload, b"bob@localhost\0alice\0secret");
}

#[tokio::test]
async fn timeouts_name_what_was_awaited() {
    let (client_io, _server_io) = tokio::io::duplex(1024);
    let mut client = XmppClient::from_stream(client_io, "localhost");
    client.set_timeout(std::time::Duration::from_millis(50));
    let error = client
        .open_stream("localhost")
        .await
        .expect_err("peer is silent");
    assert_eq!(
        format!("{error:#}"),
        "timed out after 50ms waiting for the server's stream header"
    );
}
