//! End-to-end login: STARTTLS and direct TLS, the SASL mechanisms, channel binding and its
//! downgrade protection, stream ids, keepalives and closing (RFC 6120 §4–§7, RFC 5802, RFC 7677,
//! RFC 9266, XEP-0368 v1.1.0, XEP-0440 v0.4.x).

use starling_testkit::client::{NS_BIND, NS_SASL, NS_TLS};
use starling_testkit::{
    ChannelBinding, SaslFailure, ScramMech, TestServer, XmppClient, matches, mechanisms,
    parse_stream_child,
};

const ALICE: &str = "alice";
const ALICE_PASSWORD: &str = "alice-password";

async fn server_with_alice() -> anyhow::Result<TestServer> {
    let server = TestServer::start().await?;
    server.add_user(ALICE, ALICE_PASSWORD).await?;
    Ok(server)
}

/// Connects to the STARTTLS port and negotiates TLS; returns the client and the features
/// offered after TLS.
async fn connect_tls(
    server: &TestServer,
) -> anyhow::Result<(XmppClient, starling_testkit::Element)> {
    let mut client = XmppClient::connect_plain(server.starttls_addr).await?;
    client.open_stream(&server.domain).await?;
    let features = client.starttls().await?;
    Ok((client, features))
}

/// Asserts `actual` matches the XML `expected` (parsed as a client stream child).
fn assert_matches(expected: &str, actual: &starling_testkit::Element) {
    let expected = parse_stream_child(expected).expect("expectation is valid XML");
    if let Err(reason) = matches(&expected, actual) {
        panic!("{reason}");
    }
}

/// The SASL outcome's failure condition, for asserting downgrade rejections.
fn condition(outcome: Result<(), SaslFailure>) -> Option<String> {
    outcome.err().map(|failure| failure.condition)
}

// RFC 6120 §5.3.1, §5.4.1: the plaintext stream offers STARTTLS as mandatory-to-negotiate.
#[tokio::test]
async fn plaintext_features_require_starttls() -> anyhow::Result<()> {
    let server = server_with_alice().await?;
    let mut client = XmppClient::connect_plain(server.starttls_addr).await?;
    let features = client.open_stream(&server.domain).await?;
    assert_matches(
        &format!(
            "<stream:features><starttls xmlns='{NS_TLS}'><required/></starttls></stream:features>"
        ),
        &features,
    );
    Ok(())
}

// RFC 6120 §6.3.3, XEP-0440: after TLS the mechanisms are offered strongest first, and the
// supported channel binding types are announced.
#[tokio::test]
async fn features_after_tls_list_mechanisms_in_order() -> anyhow::Result<()> {
    let server = server_with_alice().await?;
    let (_client, features) = connect_tls(&server).await?;
    assert_eq!(
        mechanisms(&features),
        [
            "SCRAM-SHA-256-PLUS",
            "SCRAM-SHA-1-PLUS",
            "SCRAM-SHA-256",
            "SCRAM-SHA-1",
            "PLAIN"
        ]
    );
    assert_matches(
        "<stream:features><sasl-channel-binding xmlns='urn:xmpp:sasl-cb:0'>\
         <channel-binding type='tls-exporter'/></sasl-channel-binding></stream:features>",
        &features,
    );
    assert!(
        features.get_child("starttls", NS_TLS).is_none(),
        "STARTTLS offered again after TLS"
    );
    Ok(())
}

// RFC 6120 §5, §6, §7 with RFC 7677: the ordinary login path.
#[tokio::test]
async fn scram_sha256_over_starttls() -> anyhow::Result<()> {
    let server = server_with_alice().await?;
    let (mut client, _) = connect_tls(&server).await?;
    assert_eq!(
        client
            .auth_scram(ScramMech::Sha256, ALICE, ALICE_PASSWORD)
            .await?,
        Ok(())
    );
    let features = client
        .features()
        .expect("features after the SASL restart")
        .clone();
    assert_matches(
        &format!("<stream:features><bind xmlns='{NS_BIND}'/></stream:features>"),
        &features,
    );
    assert!(
        features.get_child("mechanisms", NS_SASL).is_none(),
        "SASL offered again after success"
    );
    let jid = client.bind(None).await?;
    assert!(
        jid.starts_with("alice@localhost/") && jid.len() > "alice@localhost/".len(),
        "{jid}"
    );
    client.ping().await
}

// XEP-0368 v1.1.0: direct TLS on its own port, then the same SASL and binding.
#[tokio::test]
async fn scram_sha256_over_direct_tls() -> anyhow::Result<()> {
    let server = server_with_alice().await?;
    let mut client = XmppClient::connect_direct_tls(server.direct_tls_addr, &server.domain).await?;
    let features = client.open_stream(&server.domain).await?;
    assert!(
        features.get_child("starttls", NS_TLS).is_none(),
        "STARTTLS offered on direct TLS"
    );
    assert_eq!(mechanisms(&features)[0], "SCRAM-SHA-256-PLUS");
    assert_eq!(
        client
            .auth_scram(ScramMech::Sha256, ALICE, ALICE_PASSWORD)
            .await?,
        Ok(())
    );
    assert_eq!(client.bind(Some("laptop")).await?, "alice@localhost/laptop");
    client.ping().await
}

// RFC 5802: SCRAM-SHA-1 remains available.
#[tokio::test]
async fn scram_sha1() -> anyhow::Result<()> {
    let server = server_with_alice().await?;
    let (mut client, _) = connect_tls(&server).await?;
    assert_eq!(
        client
            .auth_scram(ScramMech::Sha1, ALICE, ALICE_PASSWORD)
            .await?,
        Ok(())
    );
    client.bind(None).await?;
    client.ping().await
}

// RFC 4616 over TLS (RFC 6120 §13.8.3: PLAIN only under TLS).
#[tokio::test]
async fn plain_over_tls() -> anyhow::Result<()> {
    let server = server_with_alice().await?;
    let (mut client, _) = connect_tls(&server).await?;
    assert_eq!(
        client.auth_plain(ALICE, ALICE_PASSWORD, None).await?,
        Ok(())
    );
    client.bind(None).await?;
    client.ping().await
}

// RFC 9266, RFC 5802 §6: SCRAM-SHA-256-PLUS with tls-exporter on TLS 1.3.
#[tokio::test]
async fn scram_sha256_plus_with_tls_exporter() -> anyhow::Result<()> {
    let server = server_with_alice().await?;
    let (mut client, _) = connect_tls(&server).await?;
    assert_eq!(client.tls_version(), Some(rustls_version_1_3()));
    assert_eq!(
        client
            .auth_scram(ScramMech::Sha256Plus, ALICE, ALICE_PASSWORD)
            .await?,
        Ok(())
    );
    client.bind(None).await?;
    client.ping().await
}

// RFC 5802 §6: a client that says "y" (it thinks the server cannot bind) while the server
// offers -PLUS is under a downgrade attack; the server must fail the exchange.
#[tokio::test]
async fn gs2_y_flag_while_plus_is_offered_is_rejected() -> anyhow::Result<()> {
    let server = server_with_alice().await?;
    let (mut client, features) = connect_tls(&server).await?;
    assert!(
        mechanisms(&features)
            .iter()
            .any(|m| m == "SCRAM-SHA-256-PLUS")
    );
    let outcome = client
        .auth_scram_with_binding(
            ScramMech::Sha256,
            ALICE,
            ALICE_PASSWORD,
            ChannelBinding::Unsupported,
        )
        .await?;
    assert_eq!(condition(outcome), Some("not-authorized".to_owned()));
    Ok(())
}

// RFC 5802 §6, RFC 9266: -PLUS with channel binding data that is not this connection's fails.
#[tokio::test]
async fn plus_with_wrong_binding_data_is_rejected() -> anyhow::Result<()> {
    let server = server_with_alice().await?;
    let (mut client, _) = connect_tls(&server).await?;
    let mut wrong = client.tls_exporter()?;
    wrong[0] ^= 0xff;
    let outcome = client
        .auth_scram_with_binding(
            ScramMech::Sha256Plus,
            ALICE,
            ALICE_PASSWORD,
            ChannelBinding::TlsExporter(wrong),
        )
        .await?;
    assert_eq!(condition(outcome), Some("not-authorized".to_owned()));
    Ok(())
}

// RFC 6120 §4.7.3: stream ids are unique and unpredictable; Starling uses UUIDv7.
#[tokio::test]
async fn stream_ids_are_distinct_uuid_v7() -> anyhow::Result<()> {
    let server = server_with_alice().await?;
    let mut ids = Vec::new();
    for _ in 0..2 {
        let mut client = XmppClient::connect_plain(server.starttls_addr).await?;
        client.open_stream(&server.domain).await?;
        ids.push(
            client
                .stream_id()
                .expect("the server header has an id")
                .to_owned(),
        );
        client.starttls().await?;
        ids.push(
            client
                .stream_id()
                .expect("the server header has an id")
                .to_owned(),
        );
    }
    for id in &ids {
        assert_eq!(
            uuid_version(id),
            Some(7),
            "stream id {id:?} is not a UUIDv7"
        );
    }
    let mut unique = ids.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), ids.len(), "stream ids repeat: {ids:?}");
    Ok(())
}

// RFC 6120 §4.6.1: whitespace between stanzas is a keepalive and changes nothing.
#[tokio::test]
async fn whitespace_keepalive_is_accepted() -> anyhow::Result<()> {
    let server = server_with_alice().await?;
    let mut client = XmppClient::login(&server, ALICE, ALICE_PASSWORD).await?;
    client.send_whitespace().await?;
    client.send_str(" \n\t ").await?;
    client.ping().await
}

// RFC 6120 §4.4: the client's </stream:stream> is answered with the server's, then the server
// closes the TCP connection.
#[tokio::test]
async fn client_close_is_answered_and_connection_closed() -> anyhow::Result<()> {
    let server = server_with_alice().await?;
    let mut client = XmppClient::login(&server, ALICE, ALICE_PASSWORD).await?;
    client.close_stream().await?;
    client.expect_closed().await
}

fn rustls_version_1_3() -> starling_testkit::tls::ProtocolVersion {
    starling_testkit::tls::ProtocolVersion::TLSv1_3
}

/// The version nibble of a textual UUID (RFC 9562 §4), or `None` if `id` is not one.
fn uuid_version(id: &str) -> Option<u8> {
    let groups: Vec<&str> = id.split('-').collect();
    let lengths: Vec<usize> = groups.iter().map(|g| g.len()).collect();
    let is_hex = groups
        .iter()
        .all(|g| g.chars().all(|c| c.is_ascii_hexdigit()));
    if lengths != [8, 4, 4, 4, 12] || !is_hex {
        return None;
    }
    // RFC 9562 §4.1: the variant bits are 10xx.
    let variant = u8::from_str_radix(&groups[3][..1], 16).ok()?;
    if variant & 0b1100 != 0b1000 {
        return None;
    }
    u8::from_str_radix(&groups[2][..1], 16).ok()
}
