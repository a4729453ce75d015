//! The admin commands that act on a running server (`list-sessions`, `kick`, `announce`),
//! run as the real `starling` binary against a real server through its admin socket, with
//! clients logged in over real TLS connections; and the socket itself: mode 0600, a clear
//! error when no server runs, an error answer to garbage while the server carries on.
//!
//! `slixmpp_sees_announce_and_kick` has a client library we did not write
//! (`tests/interop/admin_observer.py`, slixmpp) receive the announcement and the kick's stream
//! error; like `tests/interop.rs`, it needs the venv python in `STARLING_PYTHON` and fails
//! without it.

use std::os::unix::fs::{FileTypeExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail, ensure};
use starling_testkit::{Element, Incoming, ScramMech, ServerOptions, TestServer, XmppClient};
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::process::Command;

const PASSWORD: &str = "admin-test-Passw0rd";
/// Backstop for one admin command.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(20);

/// What a `starling` command printed and how it ended.
struct Output {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

impl Output {
    fn ok(self, what: &str) -> anyhow::Result<String> {
        ensure!(
            self.status.success(),
            "`starling {what}` failed with {}:\nstdout:\n{}\nstderr:\n{}",
            self.status,
            self.stdout,
            self.stderr
        );
        Ok(self.stdout)
    }
}

/// Runs `starling --config <server's file> <args>`, feeding `stdin` if given.
async fn starling(
    server: &TestServer,
    args: &[&str],
    stdin: Option<&str>,
) -> anyhow::Result<Output> {
    let mut command = Command::new(starling_testkit::server::find_binary()?);
    command
        .arg("--config")
        .arg(server.config_path())
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = command.spawn().context("starting starling")?;
    if let Some(text) = stdin {
        let mut pipe = child.stdin.take().context("stdin pipe")?;
        pipe.write_all(text.as_bytes()).await?;
        drop(pipe);
    }
    let output = tokio::time::timeout(COMMAND_TIMEOUT, child.wait_with_output())
        .await
        .map_err(|_| anyhow!("`starling {}` did not finish in time", args.join(" ")))??;
    Ok(Output {
        status: output.status,
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    })
}

fn admin_socket(server: &TestServer) -> PathBuf {
    server.data_dir().join("admin.sock")
}

/// Logs `localpart` in on `host` (which may differ from the server's first host) over STARTTLS.
async fn login_on_host(
    server: &TestServer,
    host: &str,
    localpart: &str,
    resource: &str,
) -> anyhow::Result<XmppClient> {
    let mut client = XmppClient::connect_plain(server.starttls_addr).await?;
    client.open_stream(host).await?;
    client.starttls().await?;
    client
        .auth_scram(ScramMech::Sha256, localpart, PASSWORD)
        .await?
        .with_context(|| format!("logging in as {localpart}@{host}"))?;
    client.bind(Some(resource)).await?;
    Ok(client)
}

/// Sends initial presence and reads the server's reflection of it (RFC 6121 §4.2.2).
async fn become_available(client: &mut XmppClient) -> anyhow::Result<()> {
    client
        .send_str("<presence><priority>3</priority></presence>")
        .await?;
    let echo = client.expect_element("our own presence").await?;
    ensure!(
        echo.name() == "presence" && echo.attr("from") == client.jid(),
        "expected our presence back, got {}",
        String::from(&echo)
    );
    Ok(())
}

/// The next element, which must be an announcement; returns (from, type, body).
async fn expect_message(client: &mut XmppClient) -> anyhow::Result<(String, String, String)> {
    let message = client.expect_element("the announcement").await?;
    ensure!(
        message.name() == "message",
        "expected a message, got {}",
        String::from(&message)
    );
    let body = message
        .children()
        .find(|child: &&Element| child.name() == "body")
        .map(Element::text)
        .context("the announcement has no <body/>")?;
    ensure!(
        message.attr("to") == client.jid(),
        "announcement addressed to {:?}, not {:?}",
        message.attr("to"),
        client.jid()
    );
    Ok((
        message.attr("from").unwrap_or_default().to_owned(),
        message.attr("type").unwrap_or_default().to_owned(),
        body,
    ))
}

#[tokio::test]
async fn list_sessions_shows_logged_in_clients() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    server.add_user("alice", PASSWORD).await?;
    server.add_user("bob", PASSWORD).await?;
    let mut alice =
        XmppClient::login_with_resource(&server, "alice", PASSWORD, Some("phone")).await?;
    become_available(&mut alice).await?;
    let _bob = XmppClient::login_with_resource(&server, "bob", PASSWORD, Some("laptop")).await?;

    let table = starling(&server, &["list-sessions"], None)
        .await?
        .ok("list-sessions")?;
    let lines: Vec<&str> = table.lines().collect();
    ensure!(
        lines.len() == 4,
        "header, two sessions, count; got:\n{table}"
    );
    ensure!(
        lines[0].split_whitespace().collect::<Vec<_>>()
            == ["JID", "PEER", "SINCE", "TLS", "STATE", "PRIORITY"],
        "{table}"
    );
    let alice_row: Vec<&str> = lines[1].split_whitespace().collect();
    let bob_row: Vec<&str> = lines[2].split_whitespace().collect();
    ensure!(alice_row[0] == "alice@localhost/phone", "{table}");
    ensure!(bob_row[0] == "bob@localhost/laptop", "{table}");
    for row in [&alice_row, &bob_row] {
        ensure!(row[1].starts_with("127.0.0.1:"), "peer address: {table}");
        ensure!(
            row[2].ends_with('Z') && row[2].contains('T'),
            "RFC 3339 time: {table}"
        );
        ensure!(row[3..5] == ["yes", "(starttls)"], "TLS: {table}");
    }
    ensure!(
        alice_row[5..] == ["available", "3"],
        "alice's state: {table}"
    );
    ensure!(bob_row[5..] == ["connected", "0"], "bob's state: {table}");
    ensure!(lines[3] == "2 session(s)", "{table}");

    // A host filter, and JSON.
    let json = starling(&server, &["list-sessions", "localhost", "--json"], None)
        .await?
        .ok("list-sessions --json")?;
    ensure!(
        json.contains("\"jid\": \"alice@localhost/phone\""),
        "{json}"
    );
    ensure!(json.contains("\"transport\": \"starttls\""), "{json}");
    ensure!(json.contains("\"available\": true"), "{json}");
    let unknown = starling(&server, &["list-sessions", "nowhere.test"], None).await?;
    ensure!(!unknown.status.success(), "unknown host accepted");
    ensure!(
        unknown
            .stderr
            .contains("nowhere.test is not a host of this server"),
        "{}",
        unknown.stderr
    );
    Ok(())
}

#[tokio::test]
async fn list_sessions_tells_direct_tls_apart() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    server.add_user("alice", PASSWORD).await?;
    let mut client = XmppClient::connect_direct_tls(server.direct_tls_addr, &server.domain).await?;
    client.open_stream(&server.domain).await?;
    client
        .auth_scram(ScramMech::Sha256, "alice", PASSWORD)
        .await?
        .context("logging in")?;
    client.bind(Some("direct")).await?;
    let table = starling(&server, &["list-sessions"], None)
        .await?
        .ok("list-sessions")?;
    let row = table
        .lines()
        .find(|line| line.starts_with("alice@localhost/direct"))
        .with_context(|| format!("no row for the session:\n{table}"))?;
    ensure!(row.contains("yes (direct)"), "{table}");
    Ok(())
}

#[tokio::test]
async fn kick_of_a_full_jid_closes_that_client_only() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    server.add_user("alice", PASSWORD).await?;
    let mut phone =
        XmppClient::login_with_resource(&server, "alice", PASSWORD, Some("phone")).await?;
    let mut desk =
        XmppClient::login_with_resource(&server, "alice", PASSWORD, Some("desk")).await?;

    let out = starling(
        &server,
        &[
            "kick",
            "alice@localhost/phone",
            "--reason",
            "spam from this device",
        ],
        None,
    )
    .await?
    .ok("kick")?;
    ensure!(
        out.trim() == "kicked 1 session(s) of alice@localhost/phone",
        "{out}"
    );

    match phone.next_element().await? {
        Incoming::StreamError(error) => {
            ensure!(
                error.has_child("policy-violation", "urn:ietf:params:xml:ns:xmpp-streams"),
                "condition: {}",
                String::from(&error)
            );
            let text = error
                .get_child("text", "urn:ietf:params:xml:ns:xmpp-streams")
                .map(Element::text);
            ensure!(
                text.as_deref() == Some("spam from this device"),
                "text: {}",
                String::from(&error)
            );
        }
        other => bail!("expected the kick's stream error, got {other:?}"),
    }
    phone.expect_closed().await?;

    // The other resource is untouched.
    desk.ping().await?;
    let table = starling(&server, &["list-sessions"], None)
        .await?
        .ok("list-sessions")?;
    ensure!(
        table.contains("alice@localhost/desk") && !table.contains("alice@localhost/phone"),
        "{table}"
    );

    // Kicking it again, or someone absent, fails with a non-zero exit.
    for jid in [
        "alice@localhost/phone",
        "nobody@localhost",
        "alice@elsewhere.test",
    ] {
        let out = starling(&server, &["kick", jid], None).await?;
        ensure!(
            !out.status.success(),
            "kick {jid} succeeded: {}",
            out.stdout
        );
        ensure!(out.stderr.starts_with("starling: "), "{}", out.stderr);
    }
    desk.ping().await?;
    Ok(())
}

#[tokio::test]
async fn kick_of_a_bare_jid_closes_every_resource() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    server.add_user("alice", PASSWORD).await?;
    server.add_user("bob", PASSWORD).await?;
    let mut phone =
        XmppClient::login_with_resource(&server, "alice", PASSWORD, Some("phone")).await?;
    let mut desk =
        XmppClient::login_with_resource(&server, "alice", PASSWORD, Some("desk")).await?;
    let mut bob = XmppClient::login(&server, "bob", PASSWORD).await?;

    let out = starling(&server, &["kick", "alice@localhost"], None)
        .await?
        .ok("kick")?;
    ensure!(
        out.trim() == "kicked 2 session(s) of alice@localhost",
        "{out}"
    );
    for client in [&mut phone, &mut desk] {
        let condition = client.expect_disconnect().await?;
        ensure!(
            condition.as_deref() == Some("policy-violation"),
            "{condition:?}"
        );
    }
    bob.ping().await?;
    Ok(())
}

#[tokio::test]
async fn deluser_closes_the_deleted_accounts_sessions_only() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    server.add_user("alice", PASSWORD).await?;
    server.add_user("bob", PASSWORD).await?;
    let mut alice = XmppClient::login(&server, "alice", PASSWORD).await?;
    let mut bob = XmppClient::login(&server, "bob", PASSWORD).await?;

    let out = starling(&server, &["deluser", "alice@localhost"], None)
        .await?
        .ok("deluser")?;
    ensure!(
        out.trim() == "deleted alice@localhost and closed 1 session(s)",
        "{out}"
    );
    let condition = alice.expect_disconnect().await?;
    ensure!(
        condition.as_deref() == Some("policy-violation"),
        "{condition:?}"
    );
    bob.ping().await?;
    ensure!(server.list_users(None).await? == ["bob@localhost"]);

    // With nobody online the message says only what was deleted.
    bob.close_stream().await?;
    bob.expect_closed().await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while starling(&server, &["list-sessions"], None)
        .await?
        .ok("list-sessions")?
        .contains("bob@localhost")
    {
        ensure!(
            tokio::time::Instant::now() < deadline,
            "bob's session outlived its stream"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let out = starling(&server, &["deluser", "bob@localhost"], None)
        .await?
        .ok("deluser")?;
    ensure!(out.trim() == "deleted bob@localhost", "{out}");
    Ok(())
}

#[tokio::test]
async fn announce_reaches_available_clients_of_that_host_only() -> anyhow::Result<()> {
    let options = ServerOptions {
        hosts: vec!["a.test".to_owned(), "b.test".to_owned()],
        ..ServerOptions::default()
    };
    let server = TestServer::start_with(options).await?;
    server.add_user("alice", PASSWORD).await?;
    server.add_user("carol", PASSWORD).await?;
    let password_file = server.data_dir().join("bob-password");
    std::fs::write(&password_file, PASSWORD)?;
    starling(
        &server,
        &[
            "adduser",
            "bob@b.test",
            "--password-file",
            &password_file.to_string_lossy(),
        ],
        None,
    )
    .await?
    .ok("adduser bob@b.test")?;

    let mut alice = login_on_host(&server, "a.test", "alice", "phone").await?;
    become_available(&mut alice).await?;
    // Carol is connected but never sent presence: not online for an announcement.
    let mut carol = login_on_host(&server, "a.test", "carol", "idle").await?;
    let mut bob = login_on_host(&server, "b.test", "bob", "laptop").await?;
    become_available(&mut bob).await?;

    let out = starling(
        &server,
        &[
            "announce",
            "a.test",
            "--message",
            "maintenance at 18:00 <UTC> & coffee",
        ],
        None,
    )
    .await?
    .ok("announce")?;
    ensure!(
        out.trim() == "announcement sent to 1 available session(s) on a.test",
        "{out}"
    );
    let (from, kind, body) = expect_message(&mut alice).await?;
    ensure!(
        from == "a.test" && kind == "headline",
        "from {from:?} type {kind:?}"
    );
    ensure!(
        body == "maintenance at 18:00 <UTC> & coffee",
        "body {body:?}"
    );
    bob.expect_quiet(Duration::from_millis(500)).await?;
    carol.expect_quiet(Duration::from_millis(100)).await?;

    // The text can come from standard input.
    let out = starling(
        &server,
        &["announce", "b.test"],
        Some("from stdin\nsecond line\n"),
    )
    .await?
    .ok("announce from stdin")?;
    ensure!(
        out.trim() == "announcement sent to 1 available session(s) on b.test",
        "{out}"
    );
    let (from, _, body) = expect_message(&mut bob).await?;
    ensure!(
        from == "b.test" && body == "from stdin\nsecond line",
        "from {from:?} body {body:?}"
    );
    alice.expect_quiet(Duration::from_millis(300)).await?;

    let out = starling(&server, &["announce", "c.test", "--message", "hi"], None).await?;
    ensure!(
        !out.status.success(),
        "announce to an unknown host succeeded"
    );
    Ok(())
}

#[tokio::test]
async fn socket_is_private_and_an_absent_server_is_reported_clearly() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let path = admin_socket(&server);
    let meta = std::fs::symlink_metadata(&path).with_context(|| format!("{}", path.display()))?;
    ensure!(
        meta.file_type().is_socket(),
        "{} is not a socket",
        path.display()
    );
    ensure!(
        meta.permissions().mode() & 0o777 == 0o600,
        "mode {:o}",
        meta.permissions().mode()
    );

    // SIGTERM straight after start: the handlers are installed before `ready` is printed.
    let status = server.terminate(Duration::from_secs(10)).await?;
    ensure!(status.success(), "server exit {status}");
    ensure!(!path.exists(), "the socket file outlived the server");

    for args in [
        &["list-sessions"][..],
        &["kick", "alice@localhost"],
        &["announce", "localhost", "--message", "hi"],
    ] {
        let out = starling(&server, args, None).await?;
        ensure!(!out.status.success(), "{args:?} succeeded without a server");
        let expected = format!(
            "starling: cannot reach the running server at {}: is it running?",
            path.display()
        );
        ensure!(
            out.stderr.trim_end().ends_with(&expected),
            "{args:?}: {}",
            out.stderr
        );
    }
    Ok(())
}

#[tokio::test]
async fn a_stale_socket_file_does_not_stop_a_restart() -> anyhow::Result<()> {
    let mut server = TestServer::start().await?;
    server.kill_and_restart().await?;
    // SIGKILL left the old file; the new server replaced it and answers.
    let table = starling(&server, &["list-sessions"], None)
        .await?
        .ok("list-sessions")?;
    ensure!(table.trim_end().ends_with("0 session(s)"), "{table}");
    Ok(())
}

#[tokio::test]
async fn a_second_server_on_the_same_socket_refuses_to_start() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let out = starling(&server, &["serve"], None).await?;
    ensure!(!out.status.success(), "a second server started");
    ensure!(
        out.stderr.contains("another server is already running"),
        "{}",
        out.stderr
    );
    server.ensure_alive()?;
    starling(&server, &["list-sessions"], None)
        .await?
        .ok("list-sessions")?;
    Ok(())
}

#[tokio::test]
async fn garbage_on_the_socket_gets_an_error_and_the_server_keeps_running() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    server.add_user("alice", PASSWORD).await?;
    let mut alice = XmppClient::login(&server, "alice", PASSWORD).await?;

    let stream = tokio::net::UnixStream::connect(admin_socket(&server)).await?;
    let mut stream = BufReader::new(stream);
    for garbage in [
        &b"\xff\xfe not even utf-8\n"[..],
        b"{\"version\":1,\"command\":\"format-disk\"}\n",
        b"{\"command\":\"list-sessions\"}\n",
    ] {
        stream.get_mut().write_all(garbage).await?;
        let mut reply = String::new();
        tokio::time::timeout(Duration::from_secs(5), stream.read_line(&mut reply))
            .await
            .context("no answer to garbage")??;
        ensure!(reply.contains("\"result\":\"error\""), "{reply}");
        ensure!(
            reply.contains("\"kind\":\"bad-request\"")
                || reply.contains("\"kind\":\"unsupported-version\""),
            "{reply}"
        );
    }
    // An oversized line is refused and that connection closed.
    stream.get_mut().write_all(&vec![b'x'; 70 * 1024]).await?;
    let mut reply = String::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_line(&mut reply))
        .await
        .context("no answer to an oversized line")??;
    ensure!(reply.contains("\"kind\":\"too-large\""), "{reply}");

    server.ensure_alive()?;
    alice.ping().await?;
    let table = starling(&server, &["list-sessions"], None)
        .await?
        .ok("list-sessions")?;
    ensure!(table.contains("alice@localhost/"), "{table}");
    Ok(())
}

// Interop: a slixmpp client receives the announcement and the kick.

#[tokio::test]
async fn slixmpp_sees_announce_and_kick() -> anyhow::Result<()> {
    // Checked first: without the venv this test must fail, never pass vacuously.
    let python = std::env::var_os("STARLING_PYTHON").context(
        "STARLING_PYTHON is not set: run through `cargo xtask test`, which sets up the interop venv",
    )?;
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("interop")
        .join("admin_observer.py");
    let server = TestServer::start().await?;
    server.add_user("alice", PASSWORD).await?;
    let addr = server.starttls_addr;
    let mut child = Command::new(&python)
        .arg(&script)
        .args(["--jid", "alice@localhost/observer", "--password", PASSWORD])
        .args([
            "--host",
            &addr.ip().to_string(),
            "--port",
            &addr.port().to_string(),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("starting admin_observer.py")?;
    let stderr = child.stderr.take().context("stderr pipe")?;
    let stderr_task = tokio::spawn(async move {
        let mut text = String::new();
        let mut lines = BufReader::new(stderr).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            text.push_str(&line);
            text.push('\n');
        }
        text
    });
    let mut lines = BufReader::new(child.stdout.take().context("stdout pipe")?).lines();
    let mut seen = Vec::new();
    let outcome = async {
        let ready = next_report(&mut lines, &mut seen, "READY").await?;
        ensure!(
            ready.contains("\"jid\": \"alice@localhost/observer\""),
            "{ready}"
        );

        starling(
            &server,
            &[
                "announce",
                "localhost",
                "--message",
                "server restarts at 18:00",
            ],
            None,
        )
        .await?
        .ok("announce")?;
        let announce = next_report(&mut lines, &mut seen, "ANNOUNCE").await?;
        ensure!(announce.contains("\"from\": \"localhost\""), "{announce}");
        ensure!(announce.contains("\"type\": \"headline\""), "{announce}");
        ensure!(
            announce.contains("\"body\": \"server restarts at 18:00\""),
            "{announce}"
        );

        starling(
            &server,
            &[
                "kick",
                "alice@localhost/observer",
                "--reason",
                "testing kicks",
            ],
            None,
        )
        .await?
        .ok("kick")?;
        let error = next_report(&mut lines, &mut seen, "STREAM-ERROR").await?;
        ensure!(
            error.contains("\"condition\": \"policy-violation\""),
            "{error}"
        );
        ensure!(error.contains("\"text\": \"testing kicks\""), "{error}");
        let status = tokio::time::timeout(COMMAND_TIMEOUT, child.wait())
            .await
            .context("the script did not exit after the kick")??;
        ensure!(status.success(), "the script exited with {status}");
        anyhow::Ok(())
    }
    .await;
    if let Err(err) = outcome {
        let _ = child.start_kill();
        let stderr = stderr_task.await.unwrap_or_default();
        bail!(
            "{err:#}\n--- script stdout ---\n{}\n--- script stderr (tail) ---\n{}\n--- server log ---\n{}",
            seen.join("\n"),
            tail(&stderr, 40),
            server.log_tail(40)
        );
    }
    Ok(())
}

/// Reads the script's stdout until a line starting with `keyword`; returns that line.
async fn next_report(
    lines: &mut tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
    seen: &mut Vec<String>,
    keyword: &str,
) -> anyhow::Result<String> {
    let wait = async {
        while let Some(line) = lines.next_line().await? {
            seen.push(line.clone());
            if line.starts_with(keyword) {
                return Ok(line);
            }
        }
        bail!("the script ended before printing {keyword}")
    };
    tokio::time::timeout(COMMAND_TIMEOUT, wait)
        .await
        .map_err(|_| anyhow!("no {keyword} line within {COMMAND_TIMEOUT:?}"))?
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[tokio::test]
async fn admin_socket_follows_the_config() -> anyhow::Result<()> {
    // `admin.socket` moves it, and the commands find it through the same config file.
    let elsewhere = tempfile_dir()?;
    let custom = elsewhere.join("ctl.sock");
    let options = ServerOptions {
        extra_toml: format!("[admin]\nsocket = {:?}\n", custom.display().to_string()),
        ..ServerOptions::default()
    };
    let server = TestServer::start_with(options).await?;
    ensure!(custom.exists(), "no socket at {}", custom.display());
    ensure!(
        !admin_socket(&server).exists(),
        "socket also at the default path"
    );
    starling(&server, &["list-sessions"], None)
        .await?
        .ok("list-sessions")?;
    drop(server);

    // `admin.enabled = false`: no socket, and the commands say no server can be reached.
    let options = ServerOptions {
        extra_toml: "[admin]\nenabled = false\n".to_owned(),
        ..ServerOptions::default()
    };
    let server = TestServer::start_with(options).await?;
    ensure!(
        !admin_socket(&server).exists(),
        "socket created while disabled"
    );
    let out = starling(&server, &["list-sessions"], None).await?;
    ensure!(!out.status.success(), "list-sessions succeeded");
    ensure!(out.stderr.contains("is it running?"), "{}", out.stderr);
    std::fs::remove_dir_all(&elsewhere)?;
    Ok(())
}

/// A fresh directory under the system temp dir (the tests package has no `tempfile`).
fn tempfile_dir() -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!(
        "starling-admin-test-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_nanos()
    ));
    std::fs::create_dir(&dir)?;
    Ok(dir)
}
