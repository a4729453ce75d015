//! Memory amplification through parsed copies (issue 15, finding 2). A stanza of many small
//! elements costs tens of times its size once parsed, and the router gave every recipient a
//! deep copy of the tree, held in queues that counted stanzas, not bytes, until the client
//! read it: nine resources that never read and large presences from a tenth grew the server
//! by hundreds of megabytes. Now a stanza holds at most `limits.max_elements_per_stanza`
//! elements, recipients share one serialized copy, and queues are bounded in bytes.

use std::time::Duration;

use starling_testkit::client::stream_error_condition;
use starling_testkit::{Arena, Incoming, ServerOptions, TestServer, XmppClient, attacker};
use tokio::time::Instant;

/// Resources of the account that never read.
const NON_READERS: usize = 10;

/// Large presences the eleventh resource broadcasts to them.
const PRESENCES: usize = 32;

/// Child elements of each presence: under the default element limit of 4096.
const CHILDREN: usize = 4000;

/// The server's peak RSS allowed while the non-readers hold their queues. A debug build with
/// everyone logged in runs at about 25 MiB; the shared copies and the bounded queues add a few.
const RSS_BOUND_KIB: u64 = 80 * 1024;

/// A presence of about 250 KiB: [`CHILDREN`] elements with some text each.
fn big_presence(n: usize) -> String {
    let mut presence = format!("<presence id='big-{n}'><x xmlns='urn:example:bulk'>");
    for i in 0..CHILDREN {
        presence.push_str(&format!("<i>{i:05}-{}</i>", "p".repeat(44)));
    }
    presence.push_str("</x></presence>");
    presence
}

fn options() -> ServerOptions {
    ServerOptions {
        // The bound under test is memory, not the read rate: let the sender go fast.
        read_bytes_per_sec: 16 * 1024 * 1024,
        read_burst_bytes: 1024 * 1024,
        outbound_queue_grace_secs: 3,
        // Ten silent resources and the sender.
        max_resources_per_account: NON_READERS + 1,
        ..ServerOptions::default()
    }
}

/// Logs in `hog/<resource>` on a socket whose receive buffer is small and fixed, and sends
/// initial presence; the caller then never reads it again.
async fn non_reader(server: &TestServer, resource: &str) -> anyhow::Result<XmppClient> {
    let client =
        XmppClient::connect_plain_with(server.starttls_addr, attacker(3), Some(16 * 1024)).await?;
    let mut client = client
        .login_on(server, "hog", "hog-password", Some(resource))
        .await?;
    client.send_str("<presence/>").await?;
    Ok(client)
}

/// The acceptance test of the finding: ten resources of one account never read while an
/// eleventh broadcasts 32 presences of about 250 KiB, 4,000 elements each, to them. The
/// server's RSS, read from /proc throughout, stays under [`RSS_BOUND_KIB`] until the
/// non-readers are cut off (their queues stay full past the grace period), which the sender
/// sees as their unavailable presence. The bystander pair chats throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_that_never_read_hold_bounded_memory() -> anyhow::Result<()> {
    let arena = Arena::start(options()).await?;
    let server = &arena.server;
    server.add_user("hog", "hog-password").await?;
    let mut silent = Vec::new();
    for n in 0..NON_READERS {
        silent.push(non_reader(server, &format!("silent{n}")).await?);
    }
    let mut sender =
        XmppClient::login_with_resource(server, "hog", "hog-password", Some("sender")).await?;
    sender.send_str("<presence/>").await?;
    sender.sync().await?;

    for n in 0..PRESENCES {
        sender.send_str(&big_presence(n)).await?;
        // The broadcast reaches the sender too (RFC 6121 §4.2.2): wait for it, so the sender
        // is a reader that keeps up.
        let id = format!("big-{n}");
        loop {
            match sender.next_element().await? {
                Incoming::Element(e) if e.attr("id") == Some(id.as_str()) => break,
                Incoming::Element(_) => {}
                other => anyhow::bail!("the sender's stream ended: {other:?}"),
            }
        }
    }
    // The non-readers are cut off once their queues stayed full past the grace period; their
    // unavailable presence reaches the sender.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut gone = 0;
    while gone < NON_READERS {
        anyhow::ensure!(
            Instant::now() < deadline,
            "only {gone} of {NON_READERS} non-readers were cut off within 60 s"
        );
        sender.send_str("<presence id='nudge'/>").await?;
        for element in sender.sync().await? {
            if element.attr("type") == Some("unavailable")
                && element
                    .attr("from")
                    .is_some_and(|from| from.contains("/silent"))
            {
                gone += 1;
            }
        }
    }
    let report = arena
        .finish(
            "ten non-readers, 32 presences of 250 KiB",
            RSS_BOUND_KIB,
            Duration::from_secs(2),
        )
        .await?;
    eprintln!("peak RSS {} KiB", report.peak_rss_kib);
    drop(silent);
    Ok(())
}

/// A stanza of 256 KiB of empty elements (about 65,000) is refused while it is parsed, with
/// `<policy-violation/>`, before its tree is built.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stanza_of_too_many_elements_is_a_policy_violation() -> anyhow::Result<()> {
    let arena = Arena::start(options()).await?;
    let server = &arena.server;
    server.add_user("hog", "hog-password").await?;
    let mut client = XmppClient::login(server, "hog", "hog-password").await?;
    let mut stanza = String::from("<presence><x xmlns='urn:example:bulk'>");
    while stanza.len() < 255 * 1024 {
        stanza.push_str("<a/>");
    }
    stanza.push_str("</x></presence>");
    client.send_str(&stanza).await?;
    match client.next_element().await? {
        Incoming::StreamError(error) => assert_eq!(
            stream_error_condition(&error).as_deref(),
            Some("policy-violation")
        ),
        // Not the element itself: it is 256 KiB.
        Incoming::Element(element) => anyhow::bail!(
            "the server accepted the stanza and sent back <{}> with {} children",
            element.name(),
            element.children().count()
        ),
        Incoming::Closed => anyhow::bail!("closed without a stream error"),
    }
    arena
        .finish(
            "65,000 empty elements",
            RSS_BOUND_KIB,
            Duration::from_secs(2),
        )
        .await?;
    Ok(())
}
