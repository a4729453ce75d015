//! SIGHUP reloads the config file (issue 7, item 5): settings that are safe to change apply to
//! new connections while open sessions keep theirs; keys that need a restart and invalid files
//! are refused with a log line and the server keeps running as it was. And a restart with
//! other `hosts` never serves the old host's data.

use std::time::Duration;

use starling_testkit::reader::NS_STREAMS;
use starling_testkit::{Incoming, ScramMech, ServerOptions, TestServer, XmppClient};

/// A chat message of about `bytes` bytes from `client` to its own full JID.
fn message_to_self(client: &XmppClient, id: &str, bytes: usize) -> anyhow::Result<String> {
    let jid = client.jid().ok_or_else(|| anyhow::anyhow!("not bound"))?;
    Ok(format!(
        "<message to='{jid}' type='chat' id='{id}'><body>{}</body></message>",
        "x".repeat(bytes)
    ))
}

/// Sends the message to itself and reads it back.
async fn echo_to_self(client: &mut XmppClient, id: &str, bytes: usize) -> anyhow::Result<()> {
    client
        .send_str(&message_to_self(client, id, bytes)?)
        .await?;
    loop {
        let element = client.expect_element("the message to self").await?;
        if element.name() == "message" && element.attr("id") == Some(id) {
            anyhow::ensure!(
                element.attr("type") == Some("chat"),
                "expected the message back, got type {:?}",
                element.attr("type")
            );
            return Ok(());
        }
    }
}

// A lower limits.max_stanza_bytes applies to the next connection; the session that was open
// during the SIGHUP keeps its limit and keeps working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_lowers_the_stanza_limit_for_new_connections_only() -> anyhow::Result<()> {
    let mut server = TestServer::start().await?;
    server.add_user("alice", "alice-password").await?;
    let mut before = XmppClient::login(&server, "alice", "alice-password").await?;
    echo_to_self(&mut before, "big1", 4096).await?;

    server.rewrite_config(ServerOptions {
        max_stanza_bytes: 2048,
        ..ServerOptions::default()
    })?;
    server.signal("HUP")?;
    server
        .wait_for_log("SIGHUP: configuration reloaded", 1)
        .await?;
    assert!(
        server.log_text().contains("limits.max_stanza_bytes"),
        "the reload names the changed key; log tail:\n{}",
        server.log_tail(10)
    );

    // The old session: its 256 KiB limit still holds.
    echo_to_self(&mut before, "big2", 4096).await?;
    before.ping().await?;

    // A new session: the same stanza is over the new 2 KiB limit.
    let mut after = XmppClient::login(&server, "alice", "alice-password").await?;
    echo_to_self(&mut after, "small", 512).await?;
    after
        .send_str(&message_to_self(&after, "big3", 4096)?)
        .await?;
    assert_eq!(after.expect_stream_error().await?, "policy-violation");

    before.ping().await?;
    echo_to_self(&mut before, "big4", 4096).await?;
    server.ensure_alive()
}

// `hosts` cannot change while running: the SIGHUP names it in a warning and the server keeps
// serving the old host (and not the new one) until a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_refuses_a_hosts_change() -> anyhow::Result<()> {
    let mut server = TestServer::start().await?;
    server.add_user("alice", "alice-password").await?;
    let mut open = XmppClient::login(&server, "alice", "alice-password").await?;

    server.rewrite_config(ServerOptions {
        hosts: vec!["other.test".to_owned()],
        ..ServerOptions::default()
    })?;
    server.signal("HUP")?;
    server
        .wait_for_log("SIGHUP: configuration reloaded", 1)
        .await?;
    let log = server.log_text();
    assert!(
        log.lines()
            .any(|line| line.contains("WARN")
                && line.contains("`hosts` changed but needs a restart")),
        "no warning naming `hosts`; log tail:\n{}",
        server.log_tail(10)
    );

    open.ping().await?;
    assert_eq!(server.domain, "localhost");
    let mut again = XmppClient::login(&server, "alice", "alice-password").await?;
    again.ping().await?;
    assert_eq!(
        open_stream_error(&server, "other.test").await?,
        "host-unknown"
    );
    server.ensure_alive()
}

// An invalid config file (a TOML error, then a value that fails validation) is logged with
// the problem and changes nothing; a valid file afterwards is applied again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_with_a_broken_config_keeps_the_running_one() -> anyhow::Result<()> {
    let mut server = TestServer::start().await?;
    server.add_user("alice", "alice-password").await?;
    let mut open = XmppClient::login(&server, "alice", "alice-password").await?;
    let invalid = "SIGHUP: the config file is invalid; keeping the running configuration";

    std::fs::write(server.config_path(), "hosts = [\"localhost\"\n[limits\n")?;
    server.signal("HUP")?;
    server.wait_for_log(invalid, 1).await?;
    let line = last_line_with(&server, invalid);
    assert!(
        line.contains("ERROR") && line.contains("invalid config file"),
        "the error names the problem: {line}"
    );

    let mut options = ServerOptions {
        max_stanza_bytes: 100,
        ..ServerOptions::default()
    };
    server.rewrite_config(options.clone())?;
    server.signal("HUP")?;
    server.wait_for_log(invalid, 2).await?;
    let line = last_line_with(&server, invalid);
    assert!(
        line.contains("stanza size limits must be at least 1024 bytes"),
        "the error names the problem: {line}"
    );
    assert!(!server.log_text().contains("SIGHUP: configuration reloaded"));

    // The old configuration is in force: the old session and a new one both work, and the
    // new one still has the 256 KiB stanza limit.
    open.ping().await?;
    let mut fresh = XmppClient::login(&server, "alice", "alice-password").await?;
    echo_to_self(&mut fresh, "big", 8192).await?;

    options.max_stanza_bytes = 2048;
    server.rewrite_config(options)?;
    server.signal("HUP")?;
    server
        .wait_for_log("SIGHUP: configuration reloaded", 1)
        .await?;
    let mut last = XmppClient::login(&server, "alice", "alice-password").await?;
    last.send_str(&message_to_self(&last, "big", 8192)?).await?;
    assert_eq!(last.expect_stream_error().await?, "policy-violation");
    fresh.ping().await?;
    server.ensure_alive()
}

// "A restart never serves a different host's data": alice@localhost exists; after a restart
// with hosts = ["other.test"], localhost is unknown, alice@other.test does not exist and
// other.test lists no users.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_with_other_hosts_serves_none_of_the_old_hosts_data() -> anyhow::Result<()> {
    let mut server = TestServer::start().await?;
    server.add_user("alice", "alice-password").await?;
    XmppClient::login(&server, "alice", "alice-password")
        .await?
        .ping()
        .await?;
    let status = server.terminate(Duration::from_secs(15)).await?;
    assert!(status.success(), "exit status {status}");

    server.rewrite_config(ServerOptions {
        hosts: vec!["other.test".to_owned()],
        ..ServerOptions::default()
    })?;
    server.restart().await?;
    assert_eq!(server.domain, "other.test");

    assert_eq!(
        open_stream_error(&server, "localhost").await?,
        "host-unknown"
    );

    let mut client = XmppClient::connect_plain(server.starttls_addr).await?;
    client.open_stream("other.test").await?;
    client.starttls().await?;
    match client
        .auth_scram(ScramMech::Sha256, "alice", "alice-password")
        .await?
    {
        Ok(()) => anyhow::bail!("alice@other.test must not exist"),
        Err(failure) => assert_eq!(failure.condition, "not-authorized"),
    }

    assert_eq!(
        server.list_users(Some("other.test")).await?,
        Vec::<String>::new()
    );
    assert_eq!(server.list_users(None).await?, Vec::<String>::new());
    server.ensure_alive()
}

/// Opens a stream to `to` and returns the stream error the server answers with.
async fn open_stream_error(server: &TestServer, to: &str) -> anyhow::Result<String> {
    let mut client = XmppClient::connect_plain(server.starttls_addr).await?;
    client
        .send_str(&format!(
            "<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
             xmlns:stream='{NS_STREAMS}' to='{to}' version='1.0'>"
        ))
        .await?;
    client.read_stream_header().await?;
    match client.next_element().await? {
        Incoming::StreamError(error) => starling_testkit::client::stream_error_condition(&error)
            .ok_or_else(|| anyhow::anyhow!("stream error without a condition")),
        other => anyhow::bail!("expected a stream error, got {other:?}"),
    }
}

fn last_line_with(server: &TestServer, needle: &str) -> String {
    server
        .log_text()
        .lines()
        .rev()
        .find(|line| line.contains(needle))
        .unwrap_or_default()
        .to_owned()
}
