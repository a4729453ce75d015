//! Directed presence under attack (issue 15, finding 3). The server remembers whom a resource
//! sent directed presence to, so they hear its unavailable presence later (RFC 6121 §4.6.3).
//! It remembered every address, even accounts that do not exist, in a list scanned on every
//! insert, with no bound: one account could grow that list and the server's work without end.
//! Now only addresses where someone is online are remembered, in a set, up to
//! `limits.max_directed_presences`; past it directed presence gets `<policy-violation/>`.

use std::time::Duration;

use starling_testkit::{Arena, Element, ServerOptions, XmppClient};

const NS_STANZAS: &str = "urn:ietf:params:xml:ns:xmpp-stanzas";

/// The cap for the test: small, so a few real recipients exceed it.
const CAP: usize = 5;

/// Logged-in resources of the watching account; more than [`CAP`].
const WATCHERS: usize = 8;

/// Directed presences to addresses where nobody is online, sent in one burst.
const UNREACHABLE: usize = 5_000;

fn presences(elements: &[Element]) -> Vec<&Element> {
    elements.iter().filter(|e| e.name() == "presence").collect()
}

/// One account sends 5,000 directed presences to accounts that do not exist and to resources
/// that are not connected, then to eight connected resources of another account, with the cap
/// at five. The unreachable addresses must not count: the first five watchers get the
/// presence, the last three do not, and the sender gets `<policy-violation/>` for each of
/// those three. Unavailable presence then reaches exactly the five. The bystander pair keeps
/// chatting within a second per round trip, and the server's memory stays bounded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn directed_presence_is_remembered_only_where_heard_and_up_to_the_cap() -> anyhow::Result<()>
{
    let arena = Arena::start(ServerOptions {
        max_directed_presences: CAP,
        ..ServerOptions::default()
    })
    .await?;
    let server = &arena.server;
    server.add_user("prober", "prober-password").await?;
    server.add_user("watcher", "watcher-password").await?;
    let mut watchers = Vec::new();
    for n in 0..WATCHERS {
        let resource = format!("w{n}");
        watchers.push(
            XmppClient::login_with_resource(server, "watcher", "watcher-password", Some(&resource))
                .await?,
        );
    }
    let mut prober = XmppClient::login(server, "prober", "prober-password").await?;
    prober.send_str("<presence/>").await?;
    prober.sync().await?;

    let mut burst = String::new();
    for n in 0..UNREACHABLE {
        if n % 2 == 0 {
            burst.push_str(&format!("<presence to='nobody{n}@localhost'/>"));
        } else {
            burst.push_str(&format!("<presence to='watcher@localhost/gone{n}'/>"));
        }
    }
    prober.send_str(&burst).await?;
    for n in 0..WATCHERS {
        prober
            .send_str(&format!(
                "<presence to='watcher@localhost/w{n}' id='directed-{n}'/>"
            ))
            .await?;
    }
    let answers = prober.sync().await?;
    let refused: Vec<&str> = answers
        .iter()
        .filter(|e| {
            e.attr("type") == Some("error")
                && e.get_child("error", "jabber:client")
                    .is_some_and(|error| error.has_child("policy-violation", NS_STANZAS))
        })
        .filter_map(|e| e.attr("id"))
        .collect();
    assert_eq!(
        refused,
        ["directed-5", "directed-6", "directed-7"],
        "answers: {answers:?}"
    );
    assert_eq!(answers.len(), 3, "only the refusals: {answers:?}");

    for (n, watcher) in watchers.iter_mut().enumerate() {
        let got = watcher.sync().await?;
        let expected = usize::from(n < CAP);
        assert_eq!(presences(&got).len(), expected, "w{n} got {got:?}");
    }

    prober.send_str("<presence type='unavailable'/>").await?;
    prober.sync().await?;
    for (n, watcher) in watchers.iter_mut().enumerate() {
        let got = watcher.sync().await?;
        let unavailable = presences(&got)
            .iter()
            .filter(|p| p.attr("type") == Some("unavailable"))
            .count();
        assert_eq!(unavailable, usize::from(n < CAP), "w{n} got {got:?}");
    }
    arena
        .finish("directed presence", 96 * 1024, Duration::from_secs(1))
        .await?;
    Ok(())
}
