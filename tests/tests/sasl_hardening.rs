//! SASL under attack (issue 15, findings 1 and 4): PLAIN's PBKDF2 runs off the async workers
//! and a bounded number at a time, and the made-up SCRAM answer for an unknown user cannot
//! be told from a real account's.
//!
//! The decoy tests speak SCRAM on plaintext streams (offered there; TLS adds nothing to what
//! is compared) and compare the salt length, the salt and the iteration count of the
//! server-first-message, the part a prober sees before it must know the password.

use std::time::Duration;

use base64::Engine as _;
use starling_testkit::{
    Arena, SaslFailure, ServerOptions, TestServer, XmppClient, attacker, client::NS_SASL,
};
use tokio::time::Instant;

/// Iterations of the victim account in the PLAIN flood: a debug build spends tens of
/// milliseconds on each check, so fifty of them on the runtime's two workers stall every
/// session for seconds.
const VICTIM_ITERATIONS: u32 = 10_000;

/// Wrong-password PLAIN attempts in the flood, all at once.
const ATTEMPTS: usize = 50;

/// The longest a ping to the server may take while the flood runs (the bound).
const PING_BOUND: Duration = Duration::from_millis(100);

/// Finding 1: PLAIN's PBKDF2 ran on the runtime's workers, so wrong passwords against an
/// account with a high iteration count (or the made-up check for unknown names) stalled every
/// session. Fifty wrong PLAIN attempts at once, against a real account and an unknown name,
/// from ten addresses; meanwhile a logged-in user pings the server and the bystander pair
/// chats. Every ping must come back within 100 ms, and every attempt must end in
/// `<not-authorized/>`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_plain_passwords_do_not_stall_other_sessions() -> anyhow::Result<()> {
    let arena = Arena::start(ServerOptions {
        require_encryption: false,
        allow_plain_without_tls: true,
        scram_iterations: VICTIM_ITERATIONS,
        auth_failure_delay_ms: 1,
        max_auth_failure_delay_ms: 1,
        ..ServerOptions::default()
    })
    .await?;
    let server = &arena.server;
    server.add_user("victim", "Right-Password-1").await?;
    server.add_user("pinger", "pinger-password").await?;
    let mut pinger = XmppClient::login(server, "pinger", "pinger-password").await?;

    let addr = server.starttls_addr;
    let domain = server.domain.clone();
    let attempts: Vec<_> = (0..ATTEMPTS)
        .map(|n| {
            let domain = domain.clone();
            tokio::spawn(async move {
                let from = attacker(2 + (n % 10) as u8);
                let mut client = XmppClient::connect_plain_from(addr, from).await?;
                client.set_timeout(Duration::from_secs(120));
                client.open_stream(&domain).await?;
                let user = if n % 2 == 0 { "victim" } else { "ghost" };
                client.auth_plain(user, "wrong-password", None).await
            })
        })
        .collect();

    let started = Instant::now();
    let mut slowest = Duration::ZERO;
    let mut pings = 0u32;
    while !attempts.iter().all(|task| task.is_finished()) {
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(120),
            "the flood did not end within 120 s"
        );
        let sent = Instant::now();
        pinger.ping().await?;
        slowest = slowest.max(sent.elapsed());
        pings += 1;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for task in attempts {
        assert_eq!(task.await??, Err(SaslFailure::condition("not-authorized")));
    }
    eprintln!(
        "{ATTEMPTS} PLAIN attempts at {VICTIM_ITERATIONS} iterations took {:?}; {pings} pings, slowest {slowest:?}",
        started.elapsed()
    );
    anyhow::ensure!(pings >= 5, "only {pings} pings while the flood ran");
    anyhow::ensure!(
        slowest < PING_BOUND,
        "a ping took {slowest:?} while PLAIN checks ran (bound {PING_BOUND:?})"
    );
    arena
        .finish("PLAIN flood", 128 * 1024, Duration::from_millis(500))
        .await?;
    Ok(())
}

/// What a SCRAM-SHA-256 attempt for `user` on `host` is told before it must prove anything:
/// the salt (base64, as sent) and the iteration count of the server-first-message.
async fn server_first(
    server: &TestServer,
    host: &str,
    user: &str,
) -> anyhow::Result<(String, u32)> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut client = XmppClient::connect_plain(server.starttls_addr).await?;
    client.open_stream(host).await?;
    let first = b64.encode(format!("n,,n={user},r=fixedclientnonce"));
    client
        .send_str(&format!(
            "<auth xmlns='{NS_SASL}' mechanism='SCRAM-SHA-256'>{first}</auth>"
        ))
        .await?;
    let challenge = client.expect_element("<challenge/>").await?;
    anyhow::ensure!(
        challenge.is("challenge", NS_SASL),
        "expected a challenge, got {}",
        String::from(&challenge)
    );
    let text = String::from_utf8(b64.decode(challenge.text().trim())?)?;
    let field = |name: &str| {
        text.split(',')
            .find_map(|part| part.strip_prefix(name))
            .map(str::to_owned)
            .ok_or_else(|| anyhow::anyhow!("no {name} in {text:?}"))
    };
    Ok((field("s=")?, field("i=")?.parse()?))
}

/// The decoded length of a base64 salt.
fn salt_len(salt: &str) -> anyhow::Result<usize> {
    Ok(base64::engine::general_purpose::STANDARD
        .decode(salt)?
        .len())
}

fn scram_on_plaintext(hosts: &[&str]) -> ServerOptions {
    ServerOptions {
        hosts: hosts.iter().map(|h| (*h).to_owned()).collect(),
        require_encryption: false,
        auth_failure_delay_ms: 1,
        max_auth_failure_delay_ms: 1,
        ..ServerOptions::default()
    }
}

/// RFC 5802 §9: the salt in server-first-message is public. For an unknown user the server
/// answers with a made-up one; it must stay the same between attempts and across a restart,
/// as a real account's does, or two tries would reveal that the account does not exist.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_users_salt_is_as_stable_as_a_real_one() -> anyhow::Result<()> {
    let mut server = TestServer::start_with(scram_on_plaintext(&["localhost"])).await?;
    server.add_user("alice", "Real-Password-1").await?;
    let ghost = server_first(&server, "localhost", "ghost").await?;
    let alice = server_first(&server, "localhost", "alice").await?;
    assert_eq!(server_first(&server, "localhost", "ghost").await?, ghost);
    assert_eq!(server_first(&server, "localhost", "alice").await?, alice);
    assert_ne!(
        server_first(&server, "localhost", "ghost2").await?.0,
        ghost.0
    );
    server.kill_and_restart().await?;
    assert_eq!(server_first(&server, "localhost", "ghost").await?, ghost);
    assert_eq!(server_first(&server, "localhost", "alice").await?, alice);
    Ok(())
}

/// Finding 4: account lookups fold case (nodeprep), so `ALICE` is `alice`; the decoy for an
/// unknown name must fold case too, or `ghost` and `GHOST` getting different salts would
/// mark both as unknown (a real account answers every spelling alike).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_spelling_of_a_name_gets_one_answer() -> anyhow::Result<()> {
    let server = TestServer::start_with(scram_on_plaintext(&["localhost"])).await?;
    server.add_user("alice", "Real-Password-1").await?;
    let alice = server_first(&server, "localhost", "alice").await?;
    assert_eq!(server_first(&server, "localhost", "ALICE").await?, alice);
    let ghost = server_first(&server, "localhost", "ghost").await?;
    assert_eq!(server_first(&server, "localhost", "GHOST").await?, ghost);
    assert_eq!(server_first(&server, "localhost", "Ghost").await?, ghost);
    assert_eq!(salt_len(&ghost.0)?, salt_len(&alice.0)?);
    assert_eq!(ghost.1, alice.1);
    Ok(())
}

/// Finding 4: the same unknown name on two hosts of one server must get two salts, as two
/// real accounts would; one salt for both would mark the name as unknown on both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_name_gets_a_salt_per_host() -> anyhow::Result<()> {
    let server = TestServer::start_with(scram_on_plaintext(&["a.test", "b.test"])).await?;
    let on_a = server_first(&server, "a.test", "ghost").await?;
    let on_b = server_first(&server, "b.test", "ghost").await?;
    assert_ne!(on_a.0, on_b.0);
    assert_eq!(server_first(&server, "A.TEST", "ghost").await?, on_a);
    Ok(())
}

/// Finding 4: the decoy always said 4096 iterations, while accounts carry the configured
/// count. After the operator raises `scram_iterations`, an account created then carries the
/// new count, and so must the answer for an unknown name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_decoy_follows_the_configured_iteration_count() -> anyhow::Result<()> {
    let mut options = scram_on_plaintext(&["localhost"]);
    let mut server = TestServer::start_with(options.clone()).await?;
    server.add_user("before", "Real-Password-1").await?;
    let before = server_first(&server, "localhost", "before").await?;
    assert_eq!(before.1, 4096);
    assert_eq!(server_first(&server, "localhost", "ghost").await?.1, 4096);

    options.scram_iterations = 10_000;
    server.rewrite_config(options)?;
    server.kill_and_restart().await?;
    server.add_user("after", "Real-Password-2").await?;
    let after = server_first(&server, "localhost", "after").await?;
    let ghost = server_first(&server, "localhost", "ghost").await?;
    assert_eq!(after.1, 10_000);
    assert_eq!(ghost.1, after.1);
    assert_eq!(salt_len(&ghost.0)?, salt_len(&after.0)?);
    // Accounts keep the count their keys were made with.
    assert_eq!(server_first(&server, "localhost", "before").await?, before);
    Ok(())
}
