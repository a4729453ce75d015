//! XEP-0198 §5 across a graceful restart: sessions that enabled resumption survive SIGTERM.
//! The server writes them down as it stops (without a `<system-shutdown/>` for them: only the
//! transport ends) and restores them at start-up; every client then resumes with `<resumed/>`
//! and receives what it had not acknowledged and what was queued for it.

use std::time::Duration;

use starling_testkit::{Element, Incoming, ScramMech, TestServer, XmppClient, matches};

const SM: &str = "urn:xmpp:sm:3";

fn parse(xml: &str) -> Element {
    starling_testkit::parse_stream_child(xml).expect("expectation parses")
}

async fn expect(client: &mut XmppClient, expected: &str) -> anyhow::Result<Element> {
    let expected = parse(expected);
    match client.next_element().await? {
        Incoming::Element(actual) => match matches(&expected, &actual) {
            Ok(_) => Ok(actual),
            Err(reason) => anyhow::bail!("unexpected element: {reason}"),
        },
        other => anyhow::bail!("expected an element, got {other:?}"),
    }
}

/// Logs in as `user` with resource `resource` and enables resumable stream management;
/// returns the client and the resumption id.
async fn resumable(
    server: &TestServer,
    user: &str,
    resource: &str,
) -> anyhow::Result<(XmppClient, String)> {
    let mut client =
        XmppClient::login_with_resource(server, user, &format!("{user}-pw"), Some(resource))
            .await?;
    client
        .send_str(&format!("<enable xmlns='{SM}' resume='true'/>"))
        .await?;
    let enabled = expect(
        &mut client,
        &format!("<enabled xmlns='{SM}' resume='true'/>"),
    )
    .await?;
    let id = enabled
        .attr("id")
        .ok_or_else(|| anyhow::anyhow!("<enabled/> without an id"))?
        .to_owned();
    Ok((client, id))
}

/// A new connection for `user`, authenticated and not bound.
async fn authenticated(server: &TestServer, user: &str) -> anyhow::Result<XmppClient> {
    let mut client = XmppClient::connect_plain(server.starttls_addr).await?;
    client.open_stream(&server.domain).await?;
    client.starttls().await?;
    client
        .auth_scram(ScramMech::Sha256, user, &format!("{user}-pw"))
        .await?
        .map_err(|failure| anyhow::anyhow!("logging in as {user}: {failure:?}"))?;
    Ok(client)
}

#[tokio::test]
async fn resumable_sessions_survive_a_graceful_restart() -> anyhow::Result<()> {
    let mut server = TestServer::start().await?;
    for user in ["alice", "bob", "carol"] {
        server.add_user(user, &format!("{user}-pw")).await?;
    }
    let (mut alice, alice_id) = resumable(&server, "alice", "phone").await?;
    let (carol, carol_id) = resumable(&server, "carol", "tablet").await?;
    let mut bob = XmppClient::login_with_resource(&server, "bob", "bob-pw", Some("pc")).await?;

    // Alice gets m1 and does not acknowledge it.
    bob.send_str(
        "<message to='alice@localhost/phone' type='chat' id='m1'><body>one</body></message>",
    )
    .await?;
    expect(&mut alice, "<message id='m1'/>").await?;
    // Carol's connection breaks; m2 waits for her in her hibernating session.
    drop(carol);
    server
        .wait_for_log("session kept for resumption", 1)
        .await?;
    bob.send_str(
        "<message to='carol@localhost/tablet' type='chat' id='m2'><body>two</body></message>",
    )
    .await?;
    bob.ping().await?;

    let status = server.terminate(Duration::from_secs(20)).await?;
    assert!(status.success(), "exit status {status}");
    // Alice's transport ended without a stream error: her session was kept, not ended.
    match alice.next_element().await? {
        Incoming::Closed => {}
        other => anyhow::bail!("alice expected her connection to end quietly, got {other:?}"),
    }
    let saved = std::fs::read_to_string(server.data_dir().join("resumable-sessions.xml"))?;
    assert!(
        saved.contains(&alice_id) && saved.contains(&carol_id),
        "both sessions saved: {saved}"
    );

    server.restart().await?;
    assert!(
        !server.data_dir().join("resumable-sessions.xml").exists(),
        "a saved session is restored once"
    );

    let mut alice = authenticated(&server, "alice").await?;
    alice
        .send_str(&format!("<resume xmlns='{SM}' previd='{alice_id}' h='0'/>"))
        .await?;
    expect(
        &mut alice,
        &format!("<resumed xmlns='{SM}' previd='{alice_id}' h='0'/>"),
    )
    .await?;
    expect(
        &mut alice,
        "<message from='bob@localhost/pc' to='alice@localhost/phone' id='m1'><body>one</body></message>",
    )
    .await?;

    let mut carol = authenticated(&server, "carol").await?;
    carol
        .send_str(&format!("<resume xmlns='{SM}' previd='{carol_id}' h='0'/>"))
        .await?;
    expect(
        &mut carol,
        &format!("<resumed xmlns='{SM}' previd='{carol_id}'/>"),
    )
    .await?;
    expect(
        &mut carol,
        "<message from='bob@localhost/pc' to='carol@localhost/tablet' id='m2'><body>two</body></message>",
    )
    .await?;

    // Both are the connected resources they were: a message to the full JID reaches them.
    let mut bob = XmppClient::login_with_resource(&server, "bob", "bob-pw", Some("pc")).await?;
    bob.send_str(
        "<message to='alice@localhost/phone' type='chat' id='m3'><body>three</body></message>",
    )
    .await?;
    loop {
        let element = alice.expect_element("m3").await?;
        if element.is("r", SM) {
            continue;
        }
        assert_eq!(element.attr("id"), Some("m3"), "{element:?}");
        break;
    }
    Ok(())
}

#[tokio::test]
async fn a_session_not_resumed_in_time_leaves_its_messages_offline() -> anyhow::Result<()> {
    let mut options = starling_testkit::ServerOptions::default();
    options.set("stream_management.resume_window_secs", "1")?;
    let server = TestServer::start_with(options).await?;
    for user in ["alice", "bob"] {
        server.add_user(user, &format!("{user}-pw")).await?;
    }
    let (mut alice, alice_id) = resumable(&server, "alice", "phone").await?;
    let mut bob = XmppClient::login_with_resource(&server, "bob", "bob-pw", Some("pc")).await?;
    bob.send_str(
        "<message to='alice@localhost/phone' type='chat' id='m1'><body>one</body></message>",
    )
    .await?;
    expect(&mut alice, "<message id='m1'/>").await?;
    drop(alice);
    server.wait_for_log("resumption window passed", 1).await?;

    let mut late = authenticated(&server, "alice").await?;
    late.send_str(&format!("<resume xmlns='{SM}' previd='{alice_id}' h='1'/>"))
        .await?;
    expect(
        &mut late,
        &format!(
            "<failed xmlns='{SM}'><item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></failed>"
        ),
    )
    .await?;
    late.bind(Some("phone")).await?;
    late.send_str("<presence/>").await?;
    expect(&mut late, "<presence from='alice@localhost/phone'/>").await?;
    expect(
        &mut late,
        "<message from='bob@localhost/pc' id='m1'><body>one</body><delay xmlns='urn:xmpp:delay'/></message>",
    )
    .await?;
    Ok(())
}
