//! Durability (RFC 6121 §2–§3 state, XEP-0160): what the server acknowledged survives SIGKILL.
//!
//! The test makes roster changes and leaves offline messages and a subscription request, waits
//! until the server has acknowledged all of it (an iq result after the messages proves they were
//! routed and stored, since a session's stanzas are handled in order), kills the process with
//! SIGKILL — no shutdown, no flush — restarts it on the same data and checks every piece.

use std::time::Duration;

use starling_testkit::{Element, Incoming, ServerOptions, TestServer, XmppClient, matches};

const ROSTER: &str = "jabber:iq:roster";

fn parse(xml: &str) -> Element {
    starling_testkit::parse_stream_child(xml).expect("expectation parses")
}

/// Read elements until one matches `expected`, failing on anything else that is not in `skip`
/// (by element name).
async fn expect(client: &mut XmppClient, expected: &str, skip: &[&str]) -> anyhow::Result<Element> {
    let expected = parse(expected);
    loop {
        match client.next_element().await? {
            Incoming::Element(actual) => match matches(&expected, &actual) {
                Ok(_) => return Ok(actual),
                Err(reason) if skip.contains(&actual.name()) => {
                    let _ = reason;
                }
                Err(reason) => anyhow::bail!("unexpected element: {reason}"),
            },
            other => anyhow::bail!("expected an element, got {other:?}"),
        }
    }
}

async fn durability_survives_sigkill(options: ServerOptions) -> anyhow::Result<()> {
    let mut server = TestServer::start_with(options).await?;
    for user in ["alice", "bob"] {
        server.add_user(user, &format!("{user}-pw")).await?;
    }

    let mut alice = XmppClient::login(&server, "alice", "alice-pw").await?;
    alice
        .send_str(&format!(
            "<iq type='get' id='r0'><query xmlns='{ROSTER}'/></iq>"
        ))
        .await?;
    expect(&mut alice, "<iq type='result' id='r0'/>", &[]).await?;
    alice
        .send_str(&format!(
            "<iq type='set' id='r1'><query xmlns='{ROSTER}'><item jid='carol@localhost' name='Carol'>\
             <group>Friends</group><group>Work</group></item></query></iq>"
        ))
        .await?;
    expect(&mut alice, "<iq type='result' id='r1'/>", &["iq"]).await?;
    // Bob is offline: the request and three messages wait for him.
    alice
        .send_str("<presence to='bob@localhost' type='subscribe'/>")
        .await?;
    for n in 1..=3 {
        alice
            .send_str(&format!("<message to='bob@localhost' type='chat' id='m{n}'><body>message {n}</body></message>"))
            .await?;
    }
    alice
        .send_str("<iq type='get' id='fence'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await?;
    expect(&mut alice, "<iq type='result' id='fence'/>", &["iq"]).await?;

    server.kill_and_restart().await?;

    let mut alice = XmppClient::login(&server, "alice", "alice-pw").await?;
    alice
        .send_str(&format!(
            "<iq type='get' id='r2'><query xmlns='{ROSTER}'/></iq>"
        ))
        .await?;
    let roster = expect(&mut alice, "<iq type='result' id='r2'/>", &[]).await?;
    let query = roster
        .get_child("query", ROSTER)
        .ok_or_else(|| anyhow::anyhow!("roster result without query"))?;
    let expected = parse(&format!(
        "<query xmlns='{ROSTER}'>\
         <item jid='bob@localhost' subscription='none' ask='subscribe'/>\
         <item jid='carol@localhost' name='Carol' subscription='none'><group>Friends</group><group>Work</group></item>\
         </query>"
    ));
    matches(&expected, query)
        .map_err(|reason| anyhow::anyhow!("roster after restart: {reason}"))?;

    let mut bob = XmppClient::login(&server, "bob", "bob-pw").await?;
    bob.send_str("<presence/>").await?;
    expect(&mut bob, "<presence from='bob@localhost/{*}'/>", &[]).await?;
    expect(
        &mut bob,
        "<presence type='subscribe' from='alice@localhost'/>",
        &[],
    )
    .await?;
    for n in 1..=3 {
        expect(
            &mut bob,
            &format!(
                "<message from='alice@localhost/{{*}}' id='m{n}'><body>message {n}</body>\
                 <delay xmlns='urn:xmpp:delay' from='localhost' stamp='{{*}}'/></message>"
            ),
            &[],
        )
        .await?;
    }
    // Delivered once: a second login finds nothing waiting.
    drop(bob);
    let mut bob = XmppClient::login(&server, "bob", "bob-pw").await?;
    bob.send_str("<presence/>").await?;
    expect(&mut bob, "<presence from='bob@localhost/{*}'/>", &[]).await?;
    expect(
        &mut bob,
        "<presence type='subscribe' from='alice@localhost'/>",
        &[],
    )
    .await?;
    bob.expect_quiet(Duration::from_millis(300)).await?;
    Ok(())
}

#[tokio::test]
async fn acknowledged_state_survives_sigkill_on_sqlite() -> anyhow::Result<()> {
    durability_survives_sigkill(ServerOptions::default()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_state_survives_sigkill_on_postgres() -> anyhow::Result<()> {
    let url = starling_testkit::fresh_postgres_database("starling_durability").await?;
    durability_survives_sigkill(ServerOptions {
        postgres_url: Some(url),
        ..ServerOptions::default()
    })
    .await
}
