//! The Prometheus endpoint (issue 8, item 4): scraped over plain HTTP during a short load, its
//! counters move by what the load did, its gauges return to zero when the clients leave, and a
//! non-loopback `metrics.listen` is refused at start.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use starling_testkit::{ChatPair, Incoming, ScramMech, ServerOptions, TestServer, XmppClient};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// A server with the endpoint on a free loopback port.
async fn server_with_metrics() -> anyhow::Result<(TestServer, SocketAddr)> {
    let options = ServerOptions {
        extra_toml: "[metrics]\nlisten = \"127.0.0.1:0\"\n".to_owned(),
        ..ServerOptions::default()
    };
    let server = TestServer::start_with(options).await?;
    let addr = metrics_addr(&server)?;
    Ok((server, addr))
}

/// The endpoint's address, from the server's `listening … kind="metrics"` log line (port 0 in
/// the config, so the server chose it).
fn metrics_addr(server: &TestServer) -> anyhow::Result<SocketAddr> {
    let log = server.log_text();
    let line = log
        .lines()
        .find(|line| line.contains("listening") && line.contains("kind=\"metrics\""))
        .ok_or_else(|| anyhow::anyhow!("no metrics listening line in the log:\n{log}"))?;
    let addr = line
        .split_whitespace()
        .find_map(|field| field.strip_prefix("addr="))
        .ok_or_else(|| anyhow::anyhow!("no addr= in {line:?}"))?;
    Ok(addr.parse()?)
}

/// `GET path` over a raw TCP connection; returns the status line and the body.
async fn http_get(addr: SocketAddr, path: &str) -> anyhow::Result<(String, String)> {
    let mut socket = tokio::net::TcpStream::connect(addr).await?;
    socket
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").as_bytes())
        .await?;
    let mut response = String::new();
    tokio::time::timeout(
        Duration::from_secs(10),
        socket.read_to_string(&mut response),
    )
    .await??;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .ok_or_else(|| anyhow::anyhow!("no end of headers in {response:?}"))?;
    let status = head.lines().next().unwrap_or_default().to_owned();
    let length: usize = head
        .lines()
        .find_map(|line| line.strip_prefix("Content-Length: "))
        .ok_or_else(|| anyhow::anyhow!("no Content-Length in {head:?}"))?
        .parse()?;
    anyhow::ensure!(
        length == body.len(),
        "Content-Length {length}, body {} bytes",
        body.len()
    );
    Ok((status, body.to_owned()))
}

/// One scrape: every sample by name and sorted labels.
#[derive(Debug)]
struct Scrape {
    samples: BTreeMap<(String, Vec<(String, String)>), f64>,
    text: String,
}

impl Scrape {
    async fn take(addr: SocketAddr) -> anyhow::Result<Self> {
        let (status, text) = http_get(addr, "/metrics").await?;
        anyhow::ensure!(status == "HTTP/1.1 200 OK", "{status}");
        let mut samples = BTreeMap::new();
        for line in text
            .lines()
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
        {
            let (series, value) = line
                .rsplit_once(' ')
                .ok_or_else(|| anyhow::anyhow!("bad sample line {line:?}"))?;
            let (name, labels) = match series.split_once('{') {
                Some((name, labels)) => (name, labels.trim_end_matches('}')),
                None => (series, ""),
            };
            let mut labels: Vec<(String, String)> = labels
                .split(',')
                .filter(|pair| !pair.is_empty())
                .map(|pair| {
                    let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
                    (key.to_owned(), value.trim_matches('"').to_owned())
                })
                .collect();
            labels.sort();
            samples.insert((name.to_owned(), labels), value.parse::<f64>()?);
        }
        Ok(Self { samples, text })
    }

    /// The sample `name{labels}`; an absent series counts as 0, as Prometheus treats a counter
    /// that was never incremented.
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let mut labels: Vec<(String, String)> = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        labels.sort();
        self.samples
            .get(&(name.to_owned(), labels))
            .copied()
            .unwrap_or(0.0)
    }
}

/// How much `name{labels}` grew from `before` to `after`.
fn delta(before: &Scrape, after: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    after.get(name, labels) - before.get(name, labels)
}

/// Scrapes until `check` holds, or fails with the last scrape after ten seconds.
async fn wait_for(
    addr: SocketAddr,
    what: &str,
    check: impl Fn(&Scrape) -> bool,
) -> anyhow::Result<Scrape> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let scrape = Scrape::take(addr).await?;
        if check(&scrape) {
            return Ok(scrape);
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "{what} did not happen; last scrape:\n{}",
            scrape.text
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

const SESSIONS: &str = "starling_sessions";

fn sessions(scrape: &Scrape, state: &str) -> f64 {
    scrape.get(SESSIONS, &[("state", state)])
}

fn no_sessions(scrape: &Scrape) -> bool {
    ["unauthenticated", "authenticated", "bound", "available"]
        .iter()
        .all(|state| sessions(scrape, state) == 0.0)
}

/// Closes the stream and reads (skipping stanzas still on their way) until the server's close.
async fn close(client: &mut XmppClient) -> anyhow::Result<()> {
    client.close_stream().await?;
    loop {
        match client.next_element().await? {
            Incoming::Closed => return Ok(()),
            Incoming::StreamError(error) => anyhow::bail!("stream error: {error:?}"),
            Incoming::Element(_) => {}
        }
    }
}

/// Reads until a `<message/>` with this id arrives.
async fn expect_message(client: &mut XmppClient, id: &str) -> anyhow::Result<()> {
    loop {
        let element = client.expect_element("a message").await?;
        if element.name() == "message" && element.attr("id") == Some(id) {
            return Ok(());
        }
    }
}

// Logins (one with a wrong password), messages between two clients, a ping and initial
// presence move exactly the counters they should; the session gauges follow the session
// model and return to zero once everyone has left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_follow_a_short_load() -> anyhow::Result<()> {
    let (server, addr) = server_with_metrics().await?;
    server.add_user("alice", "alice-password").await?;
    server.add_user("bob", "bob-password").await?;
    let before = Scrape::take(addr).await?;
    assert_eq!(
        before.get("starling_build_info", &[("version", "0.1.0")]),
        1.0,
        "{}",
        before.text
    );
    assert!(no_sessions(&before), "{}", before.text);

    // A wrong password: one not-authorized failure, no success.
    let mut mallory = XmppClient::connect_plain(server.starttls_addr).await?;
    mallory.open_stream(&server.domain).await?;
    mallory.starttls().await?;
    let outcome = mallory
        .auth_scram(ScramMech::Sha256, "alice", "wrong-password")
        .await?;
    assert_eq!(
        outcome.map_err(|failure| failure.condition),
        Err("not-authorized".to_owned())
    );
    let during = Scrape::take(addr).await?;
    assert_eq!(sessions(&during, "unauthenticated"), 1.0, "{}", during.text);
    drop(mallory);

    let mut alice = XmppClient::login(&server, "alice", "alice-password").await?;
    let mut bob = XmppClient::login(&server, "bob", "bob-password").await?;
    let bound = Scrape::take(addr).await?;
    assert_eq!(sessions(&bound, "bound"), 2.0, "{}", bound.text);
    assert_eq!(sessions(&bound, "available"), 0.0, "{}", bound.text);

    // Initial presence makes alice an available resource.
    alice.send_str("<presence/>").await?;
    wait_for(addr, "alice becoming available", |s| {
        sessions(s, "available") == 1.0 && sessions(s, "bound") == 1.0
    })
    .await?;

    const MESSAGES: usize = 20;
    let bob_jid = bob.jid().unwrap_or_default().to_owned();
    for i in 0..MESSAGES {
        alice
            .send_str(&format!(
                "<message to='{bob_jid}' type='chat' id='m{i}'><body>{i}</body></message>"
            ))
            .await?;
    }
    expect_message(&mut bob, &format!("m{}", MESSAGES - 1)).await?;
    bob.ping().await?;

    let after = Scrape::take(addr).await?;
    let d = |name: &str, labels: &[(&str, &str)]| delta(&before, &after, name, labels);
    assert_eq!(
        d(
            "starling_auth_failures_total",
            &[("reason", "not-authorized")]
        ),
        1.0,
        "{}",
        after.text
    );
    assert_eq!(
        d(
            "starling_auth_successes_total",
            &[("mechanism", "SCRAM-SHA-256")]
        ),
        2.0,
        "{}",
        after.text
    );
    assert_eq!(
        d(
            "starling_connections_accepted_total",
            &[("listener", "starttls")]
        ),
        3.0,
        "{}",
        after.text
    );
    assert_eq!(
        d(
            "starling_connections_accepted_total",
            &[("listener", "direct_tls")]
        ),
        0.0
    );
    let kind = |k| [("kind", k)];
    assert_eq!(
        d("starling_stanzas_received_total", &kind("message")),
        MESSAGES as f64,
        "{}",
        after.text
    );
    assert_eq!(
        d("starling_stanzas_sent_total", &kind("message")),
        MESSAGES as f64
    );
    assert_eq!(d("starling_stanzas_received_total", &kind("presence")), 1.0);
    // Alice's presence comes back to her (RFC 6121 §4.2.2); bob is not subscribed.
    assert!(d("starling_stanzas_sent_total", &kind("presence")) >= 1.0);
    // Bob's ping and its answer.
    assert_eq!(d("starling_stanzas_received_total", &kind("iq")), 1.0);
    assert_eq!(d("starling_stanzas_sent_total", &kind("iq")), 1.0);
    // The credential lookups (three logins) were timed.
    let lookups = d(
        "starling_storage_operation_duration_seconds_count",
        &[("operation", "credentials")],
    );
    assert_eq!(lookups, 3.0, "{}", after.text);
    assert!(
        after.text.contains(
            "starling_storage_operation_duration_seconds_bucket{operation=\"credentials\",le=\"+Inf\"} "
        ),
        "latency is a histogram with buckets:\n{}",
        after.text
    );
    assert_eq!(after.get("starling_outbound_queue_stanzas", &[]), 0.0);

    // A background ping-pong: message counters keep moving.
    let pair = ChatPair::start(&server).await?;
    let report = pair.finish(1).await?;
    let loaded = Scrape::take(addr).await?;
    let messages = delta(
        &after,
        &loaded,
        "starling_stanzas_received_total",
        &kind("message"),
    );
    assert!(
        messages >= 2.0 * report.round_trips as f64,
        "{messages} messages for {} round trips",
        report.round_trips
    );

    close(&mut alice).await?;
    close(&mut bob).await?;
    // A session leaves the registry (the gauges) a moment before its end is counted, so wait
    // for both; a count that never comes fails here with the last scrape.
    let end = wait_for(addr, "every session gone and its end counted", |scrape| {
        no_sessions(scrape)
            && delta(
                &before,
                scrape,
                "starling_sessions_ended_total",
                &[("reason", "client-closed")],
            ) >= 2.0
    })
    .await?;
    let ended = |reason| {
        delta(
            &before,
            &end,
            "starling_sessions_ended_total",
            &[("reason", reason)],
        )
    };
    assert_eq!(ended("client-closed"), 2.0, "alice and bob:\n{}", end.text);
    assert!(
        ended("disconnected") >= 1.0,
        "mallory and the pair:\n{}",
        end.text
    );
    Ok(())
}

// Only GET /metrics is served.
#[tokio::test]
async fn other_paths_are_not_found() -> anyhow::Result<()> {
    let (_server, addr) = server_with_metrics().await?;
    let (status, _) = http_get(addr, "/").await?;
    assert_eq!(status, "HTTP/1.1 404 Not Found");
    Ok(())
}

// The endpoint is unauthenticated, so it may only listen on loopback.
#[tokio::test]
async fn non_loopback_listen_address_is_refused() -> anyhow::Result<()> {
    for listen in ["0.0.0.0:0", "[::]:9700", "192.0.2.1:9700"] {
        let options = ServerOptions {
            extra_toml: format!("[metrics]\nlisten = \"{listen}\"\n"),
            ..ServerOptions::default()
        };
        let error = match TestServer::start_with(options).await {
            Ok(_) => panic!("the server started with metrics.listen = {listen}"),
            Err(error) => format!("{error:#}"),
        };
        assert!(
            error.contains("metrics.listen") && error.contains("not a loopback address"),
            "{listen}: {error}"
        );
    }
    Ok(())
}

// Without `[metrics]`, nothing listens besides the client ports.
#[tokio::test]
async fn no_endpoint_without_metrics_listen() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    assert!(
        !server.log_text().contains("kind=\"metrics\""),
        "{}",
        server.log_text()
    );
    Ok(())
}
