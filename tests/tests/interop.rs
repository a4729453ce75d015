//! Interop: slixmpp and aioxmpp, two client libraries we did not write (and that share no
//! code with each other), against the real `starling` binary.
//!
//! Each test starts a server with `starling-testkit`, adds a user and runs one script from
//! `tests/interop/` with the Python of the venv that `cargo xtask test` builds from
//! `tests/interop/requirements.txt` (passed in `STARLING_PYTHON`). A script exits 0 only on
//! the outcome it expects: for `login.py`, a started session (SASL with the forced
//! mechanism, then resource binding) over the requested kind of TLS and a clean stream
//! close; for `wrong_password.py`, a SASL `<not-authorized/>`. See
//! `tests/interop/session_probe.py` for the details and exit codes. `aioxmpp_login.py` does
//! the same with aioxmpp (SASL by aiosasl, TLS by aioopenssl); with `--expect-failure` it
//! expects the given SASL condition instead.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use starling_testkit::TestServer;
use starling_testkit::script::run_with_timeout;
use tokio::process::Command;

/// Backstop for one script run; the scripts give up on their own after 20 s.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(30);
const USER: &str = "alice";
const PASSWORD: &str = "interop-Passw0rd";

#[tokio::test]
async fn slixmpp_scram_sha_256_over_starttls() -> anyhow::Result<()> {
    check(
        Script::Login,
        Transport::StartTls,
        "SCRAM-SHA-256",
        PASSWORD,
    )
    .await
}

#[tokio::test]
async fn slixmpp_scram_sha_256_over_direct_tls() -> anyhow::Result<()> {
    check(
        Script::Login,
        Transport::DirectTls,
        "SCRAM-SHA-256",
        PASSWORD,
    )
    .await
}

#[tokio::test]
async fn slixmpp_scram_sha_1_over_starttls() -> anyhow::Result<()> {
    check(Script::Login, Transport::StartTls, "SCRAM-SHA-1", PASSWORD).await
}

#[tokio::test]
async fn slixmpp_plain_over_starttls() -> anyhow::Result<()> {
    check(Script::Login, Transport::StartTls, "PLAIN", PASSWORD).await
}

#[tokio::test]
async fn slixmpp_wrong_password_is_not_authorized() -> anyhow::Result<()> {
    let wrong = "not-the-password";
    check(
        Script::WrongPassword,
        Transport::StartTls,
        "SCRAM-SHA-256",
        wrong,
    )
    .await
}

#[tokio::test]
async fn aioxmpp_scram_sha_256_over_starttls() -> anyhow::Result<()> {
    check(
        Script::AioxmppLogin,
        Transport::StartTls,
        "SCRAM-SHA-256",
        PASSWORD,
    )
    .await
}

#[tokio::test]
async fn aioxmpp_scram_sha_1_over_starttls() -> anyhow::Result<()> {
    check(
        Script::AioxmppLogin,
        Transport::StartTls,
        "SCRAM-SHA-1",
        PASSWORD,
    )
    .await
}

#[tokio::test]
async fn aioxmpp_wrong_password_is_not_authorized() -> anyhow::Result<()> {
    check(
        Script::AioxmppWrongPassword,
        Transport::StartTls,
        "SCRAM-SHA-256",
        "not-the-password",
    )
    .await
}

#[derive(Clone, Copy)]
enum Script {
    /// `login.py`: expects a started session.
    Login,
    /// `wrong_password.py`: expects SASL `<not-authorized/>`.
    WrongPassword,
    /// `aioxmpp_login.py`: expects a bound session over STARTTLS.
    AioxmppLogin,
    /// `aioxmpp_login.py --expect-failure not-authorized`.
    AioxmppWrongPassword,
}

#[derive(Clone, Copy)]
enum Transport {
    StartTls,
    DirectTls,
}

/// Runs `script` as alice against a fresh server and fails unless it exits 0.
async fn check(
    script: Script,
    transport: Transport,
    mech: &str,
    password: &str,
) -> anyhow::Result<()> {
    // Checked first: without the venv this test must fail, never pass vacuously.
    let python = starling_testkit::script::python()?;
    let (script_name, extra_args): (&str, &[&str]) = match script {
        Script::Login => ("login.py", &[]),
        Script::WrongPassword => ("wrong_password.py", &[]),
        Script::AioxmppLogin => ("aioxmpp_login.py", &[]),
        Script::AioxmppWrongPassword => {
            ("aioxmpp_login.py", &["--expect-failure", "not-authorized"])
        }
    };
    let script_path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("interop")
        .join(script_name);

    let server = TestServer::start().await?;
    server.add_user(USER, PASSWORD).await?;
    let (addr, transport_name) = match transport {
        Transport::StartTls => (server.starttls_addr, "STARTTLS"),
        Transport::DirectTls => (server.direct_tls_addr, "direct TLS"),
    };

    let mut command = Command::new(&python);
    command
        .arg(&script_path)
        .arg("--jid")
        .arg(format!("{USER}@{}", server.domain))
        .args(["--password", password])
        .args(["--host", &addr.ip().to_string()])
        .args(["--port", &addr.port().to_string()])
        .args(["--mech", mech])
        .args(extra_args);
    if let Transport::DirectTls = transport {
        command.arg("--direct-tls");
    }
    let what = format!("{script_name} --mech {mech} over {transport_name} to {addr}");

    let run = run_with_timeout(command, SCRIPT_TIMEOUT)
        .await
        .with_context(|| format!("running {what} with {}", python.to_string_lossy()))?;
    let verdict = match run.status {
        Some(status) if status.success() => return Ok(()),
        Some(status) => format!("{what} exited with {status}"),
        None => format!("{what} was killed after {SCRIPT_TIMEOUT:?}"),
    };
    bail!(
        "{verdict}\n--- script stdout ---\n{}\n--- script stderr ---\n{}\n--- server log ---\n{}",
        run.stdout.trim_end(),
        run.stderr.trim_end(),
        server.log_text().trim_end(),
    )
}

// Chat between two clients. `chat_slixmpp.py` logs in alice and bob with slixmpp;
// `chat_aioxmpp_slixmpp.py` logs in alice with aioxmpp and bob with slixmpp. In both, bob sends
// initial presence, alice sends a chat message to bob's bare JID that must reach him with
// `from` = alice's full JID, and bob's reply to that full JID must reach alice (the aioxmpp
// script then also checks a message to alice's bare JID once she is available). The scripts
// exit 0 only when every message arrived as expected.

const BOB: &str = "bob";
const BOB_PASSWORD: &str = "interop-Bob-Passw0rd";

#[tokio::test]
async fn slixmpp_to_slixmpp_chat_via_bare_and_full_jid() -> anyhow::Result<()> {
    check_chat("chat_slixmpp.py").await
}

#[tokio::test]
async fn slixmpp_roster_round_trip_and_subscription_handshake() -> anyhow::Result<()> {
    check_chat("roster_slixmpp.py").await
}

#[tokio::test]
async fn slixmpp_blocking_command() -> anyhow::Result<()> {
    check_chat("blocking_slixmpp.py").await
}

#[tokio::test]
async fn slixmpp_vcard_temp() -> anyhow::Result<()> {
    check_chat("vcard_slixmpp.py").await
}

#[tokio::test]
async fn slixmpp_stream_management_acks_and_resumption() -> anyhow::Result<()> {
    check_chat("sm_slixmpp.py").await
}

#[tokio::test]
async fn slixmpp_message_carbons() -> anyhow::Result<()> {
    check_chat("carbons_slixmpp.py").await
}

#[tokio::test]
async fn slixmpp_client_state_indication() -> anyhow::Result<()> {
    check_chat("csi_slixmpp.py").await
}

#[tokio::test]
async fn slixmpp_message_archive() -> anyhow::Result<()> {
    check_chat("mam_slixmpp.py").await
}

#[tokio::test]
async fn aioxmpp_to_slixmpp_chat_via_bare_and_full_jid() -> anyhow::Result<()> {
    check_chat("chat_aioxmpp_slixmpp.py").await
}

/// Runs the chat script `script_name` for alice and bob against a fresh server (STARTTLS)
/// and fails unless it exits 0.
async fn check_chat(script_name: &str) -> anyhow::Result<()> {
    let python = starling_testkit::script::python()?;
    let script_path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("interop")
        .join(script_name);

    let server = TestServer::start().await?;
    server.add_user(USER, PASSWORD).await?;
    server.add_user(BOB, BOB_PASSWORD).await?;
    let addr = server.starttls_addr;

    let mut command = Command::new(&python);
    command
        .arg(&script_path)
        .args(["--alice", &format!("{USER}@{}", server.domain)])
        .args(["--alice-password", PASSWORD])
        .args(["--bob", &format!("{BOB}@{}", server.domain)])
        .args(["--bob-password", BOB_PASSWORD])
        .args(["--host", &addr.ip().to_string()])
        .args(["--port", &addr.port().to_string()]);
    let what = format!("{script_name} over STARTTLS to {addr}");

    let run = run_with_timeout(command, SCRIPT_TIMEOUT)
        .await
        .with_context(|| format!("running {what} with {}", python.to_string_lossy()))?;
    let verdict = match run.status {
        Some(status) if status.success() => return Ok(()),
        Some(status) => format!("{what} exited with {status}"),
        None => format!("{what} was killed after {SCRIPT_TIMEOUT:?}"),
    };
    bail!(
        "{verdict}\n--- script stdout ---\n{}\n--- script stderr ---\n{}\n--- server log ---\n{}",
        run.stdout.trim_end(),
        run.stderr.trim_end(),
        server.log_text().trim_end(),
    )
}
