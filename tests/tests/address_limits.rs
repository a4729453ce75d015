//! Issue 15 ("Security round 2") end to end: limits that key on a peer's address must bound
//! what an address can do *before* authentication without locking out the many users who
//! share one address (carrier-grade NAT, a campus, an office), and the server's secrets and
//! data must be created private. Each test attacks a fresh server from its own loopback
//! address while the test kit's `Arena` keeps a logged-in pair chatting from 127.0.0.1, and
//! ends by checking the pair lost nothing and was never slower than [`MAX_ROUND_TRIP`].
//!
//! Linux only: the attackers bind to 127.0.0.x source addresses, and RSS comes from /proc.

use std::time::Duration;

use starling_testkit::client::stream_error_condition;
use starling_testkit::{Arena, Incoming, ServerOptions, XmppClient, attacker};

/// Peak RSS allowed (a debug build with the pair logged in runs at about 16 MiB).
const RSS_BOUND_KIB: u64 = 64 * 1024;

/// The bystander pair's slowest round trip allowed while an attack runs.
const MAX_ROUND_TRIP: Duration = Duration::from_secs(2);

/// The default `limits.max_unauthenticated_connections_per_ip`.
const UNAUTHENTICATED_PER_ADDRESS: usize = 32;

/// More users than the old per-address cap (`max_connections_per_ip = 64`, which counted
/// authenticated sessions too) held.
const USERS_BEHIND_ONE_ADDRESS: usize = 70;

// Finding 10: 70 users log in from one shared address and all stay online (the old
// per-address cap of 64 counted their sessions and refused the 65th). Unauthenticated
// connections from that address are still bounded: past 32 they are refused with
// policy-violation, and the 70 logged-in users are not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_users_behind_one_address_stay_online() -> anyhow::Result<()> {
    let arena = Arena::start(ServerOptions::default()).await?;
    let shared = attacker(60);
    for n in 0..USERS_BEHIND_ONE_ADDRESS {
        arena
            .server
            .add_user(&format!("user{n}"), &format!("password{n}"))
            .await?;
    }
    let mut online = Vec::new();
    for n in 0..USERS_BEHIND_ONE_ADDRESS {
        let client = XmppClient::connect_plain_from(arena.server.starttls_addr, shared).await?;
        let client = client
            .login_on(
                &arena.server,
                &format!("user{n}"),
                &format!("password{n}"),
                None,
            )
            .await
            .map_err(|err| anyhow::anyhow!("user{n} behind the shared address: {err:#}"))?;
        online.push(client);
    }

    // Idle unauthenticated connections from the same address: the cap applies to them.
    let mut idle = Vec::new();
    for _ in 0..UNAUTHENTICATED_PER_ADDRESS + 8 {
        idle.push(XmppClient::connect_plain_from(arena.server.starttls_addr, shared).await?);
    }
    let mut refused = 0;
    let mut waiting = Vec::new();
    for mut client in idle {
        client.set_timeout(Duration::from_millis(300));
        match client.next_element().await {
            Ok(Incoming::StreamError(error)) => {
                assert_eq!(
                    stream_error_condition(&error).as_deref(),
                    Some("policy-violation")
                );
                refused += 1;
            }
            Ok(other) => anyhow::bail!("expected a refusal or silence, got {other:?}"),
            Err(_) => waiting.push(client),
        }
    }
    assert_eq!(refused, 8, "connections past the unauthenticated cap");

    // Every logged-in user is still online and answered.
    for (n, client) in online.iter_mut().enumerate() {
        client
            .ping()
            .await
            .map_err(|err| anyhow::anyhow!("user{n} lost its session: {err:#}"))?;
    }
    drop(waiting);
    arena
        .finish("users behind one address", RSS_BOUND_KIB, MAX_ROUND_TRIP)
        .await?;
    Ok(())
}

/// Log in as `user` from `from`; `Err` holds the failure's text.
async fn login_from(
    arena: &Arena,
    from: std::net::IpAddr,
    user: &str,
) -> anyhow::Result<Result<XmppClient, String>> {
    let client = XmppClient::connect_plain_from(arena.server.starttls_addr, from).await?;
    Ok(client
        .login_on(&arena.server, user, &format!("{user}-password"), None)
        .await
        .map_err(|err| format!("{err:#}")))
}

// Finding 10: authenticated use is bounded per account (c2s.max_resources_per_account, 3 here):
// the 4th resource of one account is refused with the RFC 6120 §7.6.2.1 resource-constraint
// stanza error. The per-address cap on sessions is opt-in (limits.max_sessions_per_ip, 5
// here): the 6th session from one address gets resource-constraint too, while another
// address still logs in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_are_bounded_per_account_and_opt_in_per_address() -> anyhow::Result<()> {
    let mut options = ServerOptions::default();
    options.set("max_resources_per_account", "3")?;
    options.set("max_sessions_per_ip", "5")?;
    let arena = Arena::start(options).await?;
    for user in ["alice", "bob"] {
        arena
            .server
            .add_user(user, &format!("{user}-password"))
            .await?;
    }
    let from = attacker(61);
    let mut online = Vec::new();
    for _ in 0..3 {
        online.push(
            login_from(&arena, from, "alice")
                .await?
                .map_err(anyhow::Error::msg)?,
        );
    }
    let fourth = login_from(&arena, from, "alice").await?;
    let refusal = fourth.err().unwrap_or_default();
    assert!(
        refusal.contains("type='error'")
            && refusal.contains("<error type='wait'><resource-constraint"),
        "alice's 4th resource: {refusal}"
    );
    for _ in 0..2 {
        online.push(
            login_from(&arena, from, "bob")
                .await?
                .map_err(anyhow::Error::msg)?,
        );
    }
    let sixth = login_from(&arena, from, "bob").await?;
    let refusal = sixth.err().unwrap_or_default();
    assert!(
        refusal.contains("<error type='wait'><resource-constraint"),
        "the 6th session from one address: {refusal}"
    );
    online.push(
        login_from(&arena, attacker(62), "bob")
            .await?
            .map_err(anyhow::Error::msg)?,
    );
    for client in &mut online {
        client.ping().await?;
    }
    arena
        .finish(
            "sessions per account and address",
            RSS_BOUND_KIB,
            MAX_ROUND_TRIP,
        )
        .await?;
    Ok(())
}

// Finding 8: a server that creates its own data directory makes it 0700, and the database
// (with its -wal and -shm), the generated TLS key, the decoy secret and the admin socket
// 0600, whatever the umask (the test process's, usually 022, is inherited). Meanwhile a peer
// at another address sees nothing of it, and the pair chats on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_directory_and_secrets_are_private() -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    let arena = Arena::start(ServerOptions {
        data_subdir: Some("data".to_owned()),
        ..ServerOptions::default()
    })
    .await?;
    // The pair's logins and messages have written to the database, so -wal and -shm exist.
    let data = arena.server.data_dir().join("data");
    let mode = |name: &str| -> anyhow::Result<u32> {
        let path = data.join(name);
        let metadata = std::fs::symlink_metadata(&path)
            .map_err(|err| anyhow::anyhow!("{}: {err}", path.display()))?;
        Ok(metadata.permissions().mode() & 0o777)
    };
    let modes = [
        ("", mode("")?),
        ("starling.sqlite", mode("starling.sqlite")?),
        ("starling.sqlite-wal", mode("starling.sqlite-wal")?),
        ("starling.sqlite-shm", mode("starling.sqlite-shm")?),
        ("tls/key.pem", mode("tls/key.pem")?),
        ("sasl-decoy.key", mode("sasl-decoy.key")?),
        ("admin.sock", mode("admin.sock")?),
    ];
    let expected = [
        ("", 0o700),
        ("starling.sqlite", 0o600),
        ("starling.sqlite-wal", 0o600),
        ("starling.sqlite-shm", 0o600),
        ("tls/key.pem", 0o600),
        ("sasl-decoy.key", 0o600),
        ("admin.sock", 0o600),
    ];
    let show = |modes: &[(&str, u32)]| {
        modes
            .iter()
            .map(|(name, mode)| format!("{name}={mode:o}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    assert_eq!(show(&modes), show(&expected));
    // A peer elsewhere still gets its stream; nothing about the files leaks into the protocol.
    let mut peer = XmppClient::connect_plain_from(arena.server.starttls_addr, attacker(63)).await?;
    peer.open_stream(&arena.server.domain).await?;
    arena
        .finish("private data", RSS_BOUND_KIB, MAX_ROUND_TRIP)
        .await?;
    Ok(())
}

// Finding 9a: with sslmode=verify-full and the CA of the throwaway PostgreSQL (`cargo xtask
// with-postgres` gives it a certificate for localhost and 127.0.0.1), every connection the
// server holds to its database is TLS, as PostgreSQL's own pg_stat_ssl reports, while the pair
// chats through it. A CA that did not sign the database's certificate stops the server at
// start-up instead of letting it talk to an unverified peer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_connections_are_verified_tls() -> anyhow::Result<()> {
    let ca = std::env::var("STARLING_TEST_POSTGRES_CA").map_err(|_| {
        anyhow::anyhow!(
            "STARLING_TEST_POSTGRES_CA is not set: run through `cargo xtask with-postgres`, \
             which gives PostgreSQL a certificate"
        )
    })?;
    let url = starling_testkit::fresh_postgres_database("starling_tls").await?;
    let database = url
        .rsplit("dbname=")
        .next()
        .ok_or_else(|| anyhow::anyhow!("no dbname in {url}"))?
        .to_owned();
    let arena = Arena::start(ServerOptions {
        postgres_url: Some(format!("{url} sslmode=verify-full sslrootcert={ca}")),
        ..ServerOptions::default()
    })
    .await?;
    let mut peer = XmppClient::connect_plain_from(arena.server.starttls_addr, attacker(64)).await?;
    peer.open_stream(&arena.server.domain).await?;

    let base = std::env::var("STARLING_TEST_POSTGRES_URL")?;
    let (client, connection) = tokio_postgres::connect(&base, tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    let row = client
        .query_one(
            "SELECT count(*) FILTER (WHERE s.ssl), count(*) FILTER (WHERE NOT s.ssl) \
             FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) WHERE a.datname = $1",
            &[&database],
        )
        .await?;
    let (encrypted, plaintext): (i64, i64) = (row.get(0), row.get(1));
    assert!(encrypted >= 1, "the server holds no TLS connection");
    assert_eq!(plaintext, 0, "the server holds plaintext connections");

    // A CA of our own, which did not sign PostgreSQL's certificate.
    let dir = tempfile::tempdir()?;
    let other_ca = dir.path().join("other-ca.pem");
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    std::fs::write(
        &other_ca,
        params.self_signed(&rcgen::KeyPair::generate()?)?.pem(),
    )?;
    let refused = starling_testkit::TestServer::start_with(ServerOptions {
        postgres_url: Some(format!(
            "{url} sslmode=verify-full sslrootcert={}",
            other_ca.display()
        )),
        ..ServerOptions::default()
    })
    .await;
    let err = match refused {
        Ok(_) => anyhow::bail!("the server started with a CA that did not sign the database's"),
        Err(err) => format!("{err:#}"),
    };
    assert!(
        err.contains("cannot open the PostgreSQL database") && err.contains("UnknownIssuer"),
        "{err}"
    );
    arena
        .finish("postgres over TLS", RSS_BOUND_KIB, MAX_ROUND_TRIP)
        .await?;
    Ok(())
}

// Finding 9b: an IPv4 peer reached through an IPv6 socket is seen as `::ffff:a.b.c.d` and
// must count as `a.b.c.d`, or it gets the per-address cap twice over. The STARTTLS listener
// here is IPv4 and the direct-TLS one an IPv6 socket bound to ::ffff:127.0.0.1 (loopback
// only). 32 idle connections from 127.0.0.65 to the first fill its unauthenticated cap; 8 more
// from the same address to the second are refused. (The /64 grouping of native IPv6 has unit
// tests only: loopback has the one IPv6 address ::1.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mapped_ipv4_peers_share_their_address_cap() -> anyhow::Result<()> {
    let arena = Arena::start(ServerOptions {
        direct_tls_listen: "[::ffff:127.0.0.1]:0".to_owned(),
        ..ServerOptions::default()
    })
    .await?;
    let from = attacker(65);
    let mut idle = Vec::new();
    for _ in 0..UNAUTHENTICATED_PER_ADDRESS {
        let mut client = XmppClient::connect_plain_from(arena.server.starttls_addr, from).await?;
        client.open_stream(&arena.server.domain).await?;
        idle.push(client);
    }
    let mapped = arena.server.direct_tls_addr;
    assert!(
        matches!(mapped.ip(), std::net::IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some()),
        "{mapped}"
    );
    let as_ipv4 = std::net::SocketAddr::from(([127, 0, 0, 1], mapped.port()));
    for _ in 0..8 {
        idle.push(XmppClient::connect_plain_from(as_ipv4, from).await?);
    }
    arena
        .server
        .wait_for_log("reason=TooManyUnauthenticatedFromAddress", 8)
        .await?;
    let log = arena.server.log_text();
    let refused: Vec<&str> = log
        .lines()
        .filter(|line| line.contains("reason=TooManyUnauthenticatedFromAddress"))
        .collect();
    assert_eq!(refused.len(), 8, "{refused:#?}");
    assert!(
        refused
            .iter()
            .all(|line| line.contains("peer=[::ffff:127.0.0.65]:")),
        "{refused:#?}"
    );
    drop(idle);
    arena
        .finish("mapped IPv4 peers", RSS_BOUND_KIB, MAX_ROUND_TRIP)
        .await?;
    Ok(())
}
