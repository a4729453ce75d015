//! Logs (issue 8, item 3): human lines by default, one JSON object per line with
//! `log.format = "json"` or `--log-format json`, exactly one start and one end record per
//! session with peer, JID and reason, and per-module levels from `log.level`, changeable by
//! SIGHUP.

use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use starling_testkit::{ScramMech, ServerOptions, TestServer, XmppClient};
use tokio::io::{AsyncBufReadExt as _, BufReader};

fn options_with(extra_toml: &str) -> ServerOptions {
    ServerOptions {
        extra_toml: extra_toml.to_owned(),
        ..ServerOptions::default()
    }
}

/// Every line of the server's stderr as JSON; fails on the first line that is not an object.
fn json_records(server: &TestServer) -> anyhow::Result<Vec<Value>> {
    json_lines(&server.log_text())
}

fn json_lines(text: &str) -> anyhow::Result<Vec<Value>> {
    text.lines()
        .map(|line| {
            let value: Value = serde_json::from_str(line)
                .map_err(|err| anyhow::anyhow!("not JSON ({err}): {line:?}"))?;
            anyhow::ensure!(value.is_object(), "not a JSON object: {line:?}");
            Ok(value)
        })
        .collect()
}

/// The records whose message is `message`.
fn with_message<'a>(records: &'a [Value], message: &str) -> Vec<&'a Value> {
    records
        .iter()
        .filter(|r| r["fields"]["message"] == message)
        .collect()
}

/// Logs in and out: a clean close by alice, a wrong password from a third connection that
/// then drops the socket, and bob kicked by his own second login on the same resource. Returns the JIDs alice and bob
/// (first login) were bound to.
async fn sessions_with_every_ending(server: &TestServer) -> anyhow::Result<(String, String)> {
    server.add_user("alice", "alice-password").await?;
    server.add_user("bob", "bob-password").await?;

    let mut alice = XmppClient::login(server, "alice", "alice-password").await?;
    let alice_jid = alice.jid().unwrap_or_default().to_owned();
    alice.close_stream().await?;
    alice.expect_closed().await?;

    let mut mallory = XmppClient::connect_plain(server.starttls_addr).await?;
    mallory.open_stream(&server.domain).await?;
    mallory.starttls().await?;
    let outcome = mallory
        .auth_scram(ScramMech::Sha256, "alice", "wrong")
        .await?;
    anyhow::ensure!(outcome.is_err(), "a wrong password was accepted");
    drop(mallory);

    let mut bob =
        XmppClient::login_with_resource(server, "bob", "bob-password", Some("desk")).await?;
    let bob_jid = bob.jid().unwrap_or_default().to_owned();
    let mut bob_again =
        XmppClient::login_with_resource(server, "bob", "bob-password", Some("desk")).await?;
    assert_eq!(bob.expect_disconnect().await?.as_deref(), Some("conflict"));
    bob_again.close_stream().await?;
    bob_again.expect_closed().await?;
    Ok((alice_jid, bob_jid))
}

// With `log.format = "json"` every line is a JSON object, and each of the four connections has
// exactly one start and one end record; the end names the peer, the JID when one was known,
// the reason and the duration.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_log_has_one_start_and_one_end_record_per_session() -> anyhow::Result<()> {
    let server = TestServer::start_with(options_with("[log]\nformat = \"json\"\n")).await?;
    let (alice_jid, bob_jid) = sessions_with_every_ending(&server).await?;
    server.wait_for_log("session ended", 4).await?;

    let records = json_records(&server)?;
    let started = with_message(&records, "session started");
    let ended = with_message(&records, "session ended");
    assert_eq!(started.len(), 4, "{}", server.log_text());
    assert_eq!(ended.len(), 4, "{}", server.log_text());
    for record in started.iter().chain(&ended) {
        assert_eq!(record["level"], "INFO");
        assert_eq!(record["target"], "starling::session");
        assert!(
            record["fields"]["peer"]
                .as_str()
                .is_some_and(|p| p.starts_with("127.0.0.1:")),
            "{record}"
        );
    }
    // Each connection's start and end name the same peer, once each.
    let mut start_peers: Vec<&str> = started
        .iter()
        .filter_map(|r| r["fields"]["peer"].as_str())
        .collect();
    let mut end_peers: Vec<&str> = ended
        .iter()
        .filter_map(|r| r["fields"]["peer"].as_str())
        .collect();
    start_peers.sort_unstable();
    end_peers.sort_unstable();
    assert_eq!(start_peers, end_peers);
    start_peers.dedup();
    assert_eq!(start_peers.len(), 4);

    let end_of = |jid: Option<&str>, reason: &str| {
        ended.iter().any(|r| {
            r["fields"]["jid"].as_str() == jid
                && r["fields"]["reason"] == reason
                && r["fields"]["duration_ms"].is_u64()
        })
    };
    let log = server.log_text();
    assert!(end_of(Some(&alice_jid), "client-closed"), "{log}");
    assert!(end_of(Some(&bob_jid), "client-closed"), "{log}");
    assert!(
        end_of(None, "disconnected"),
        "mallory dropped the connection before SASL succeeded, so no JID:\n{log}"
    );
    let kicked = ended
        .iter()
        .find(|r| r["fields"]["reason"] == "kicked")
        .ok_or_else(|| anyhow::anyhow!("no kicked session:\n{log}"))?;
    assert_eq!(kicked["fields"]["jid"], bob_jid.as_str());
    assert_eq!(kicked["fields"]["condition"], "conflict");
    Ok(())
}

// The default human format has the same start and end lines.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn human_log_has_start_and_end_lines() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let (alice_jid, bob_jid) = sessions_with_every_ending(&server).await?;
    server.wait_for_log("session ended", 4).await?;
    let log = server.log_text();
    assert!(
        log.lines().all(|line| !line.starts_with('{')),
        "JSON in the human log:\n{log}"
    );
    assert_eq!(log.matches("session started").count(), 4, "{log}");
    let ends: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("session ended"))
        .collect();
    assert_eq!(ends.len(), 4, "{log}");
    assert!(
        ends.iter()
            .all(|l| l.contains("peer=127.0.0.1:") && l.contains("duration_ms="))
    );
    let has_end = |jid: &str, reason: &str| {
        ends.iter()
            .any(|l| l.contains(&format!("jid={jid} ")) && l.contains(&format!("reason={reason} ")))
    };
    assert!(has_end(&alice_jid, "client-closed"), "{log}");
    assert!(has_end(&bob_jid, "kicked"), "{log}");
    Ok(())
}

/// The targets of the records at `level`.
fn targets_at<'a>(records: &'a [Value], level: &str) -> Vec<&'a str> {
    records
        .iter()
        .filter(|r| r["level"] == level)
        .filter_map(|r| r["target"].as_str())
        .collect()
}

// `log.level = "warn,starling_server=debug"`: debug lines from the server's own modules, and
// nothing below warn from any other crate (rustls logs its handshakes at debug, the storage
// and router crates at info and debug).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_module_levels_apply() -> anyhow::Result<()> {
    let server = TestServer::start_with(options_with(
        "[log]\nformat = \"json\"\nlevel = \"warn,starling_server=debug\"\n",
    ))
    .await?;
    server.add_user("alice", "alice-password").await?;
    let mut alice = XmppClient::login(&server, "alice", "alice-password").await?;
    alice.close_stream().await?;
    alice.expect_closed().await?;
    server.wait_for_log("session ended", 1).await?;

    let records = json_records(&server)?;
    let log = server.log_text();
    let debug = targets_at(&records, "DEBUG");
    assert!(!debug.is_empty(), "no debug lines:\n{log}");
    for level in ["DEBUG", "INFO", "TRACE"] {
        for target in targets_at(&records, level) {
            assert!(
                target.starts_with("starling::"),
                "{level} from {target} despite warn:\n{log}"
            );
        }
    }
    assert!(targets_at(&records, "TRACE").is_empty(), "{log}");
    Ok(())
}

// SIGHUP applies a changed `log.level` at once: debug lines appear without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_changes_the_log_level() -> anyhow::Result<()> {
    let mut server = TestServer::start_with(options_with("[log]\nformat = \"json\"\n")).await?;
    server.add_user("alice", "alice-password").await?;
    let mut alice = XmppClient::login(&server, "alice", "alice-password").await?;
    alice.close_stream().await?;
    alice.expect_closed().await?;
    server.wait_for_log("session ended", 1).await?;
    assert!(
        targets_at(&json_records(&server)?, "DEBUG").is_empty(),
        "debug lines at the default level:\n{}",
        server.log_text()
    );

    server.rewrite_config(options_with(
        "[log]\nformat = \"json\"\nlevel = \"info,starling_server=debug\"\n",
    ))?;
    server.signal("HUP")?;
    server.wait_for_log("SIGHUP: log level changed", 1).await?;
    let mut alice = XmppClient::login(&server, "alice", "alice-password").await?;
    alice.close_stream().await?;
    alice.expect_closed().await?;
    server.wait_for_log("session ended", 2).await?;
    let records = json_records(&server)?;
    let debug = targets_at(&records, "DEBUG");
    assert!(
        !debug.is_empty(),
        "no debug lines after SIGHUP:\n{}",
        server.log_text()
    );
    assert!(
        debug.iter().all(|t| t.starts_with("starling::")),
        "{debug:?}"
    );
    Ok(())
}

// `--log-format json` on the command line overrides `log.format = "human"` in the file.
#[tokio::test]
async fn log_format_flag_overrides_the_file() -> anyhow::Result<()> {
    let dir = tempfile_dir()?;
    let config = dir.join("starling.toml");
    let options = options_with("[log]\nformat = \"human\"\n");
    std::fs::write(&config, options.to_toml(&dir))?;
    let stderr_path = dir.join("stderr.log");
    let mut child = tokio::process::Command::new(starling_testkit::server::find_binary()?)
        .arg("--log-format")
        .arg("json")
        .arg("--config")
        .arg(&config)
        .env_remove("STARLING_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&stderr_path)?)
        .kill_on_drop(true)
        .spawn()?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| anyhow::anyhow!("no stdout"))?;
    let mut lines = BufReader::new(stdout).lines();
    let ready = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(line) = lines.next_line().await? {
            if line == "ready" {
                return anyhow::Ok(true);
            }
        }
        Ok(false)
    })
    .await??;
    child.start_kill()?;
    child.wait().await?;
    let text = std::fs::read_to_string(&stderr_path)?;
    assert!(ready, "no `ready`; stderr:\n{text}");
    let records = json_lines(&text)?;
    assert!(
        records
            .iter()
            .any(|r| r["fields"]["message"] == "listening"),
        "{text}"
    );
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

// An invalid `log.level` stops the start with an error naming the key.
#[tokio::test]
async fn invalid_log_level_is_refused() -> anyhow::Result<()> {
    let error = match TestServer::start_with(options_with("[log]\nlevel = \"info,=x=\"\n")).await {
        Ok(_) => panic!("the server started with an invalid log.level"),
        Err(error) => format!("{error:#}"),
    };
    assert!(error.contains("log.level"), "{error}");
    Ok(())
}

/// A fresh scratch directory (the test package has no tempfile dependency).
fn tempfile_dir() -> anyhow::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!(
        "starling-logging-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_nanos()
    ));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
