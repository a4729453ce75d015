//! Two virtual hosts in one process (issue 8): `a.test` and `b.test` each have their own
//! certificate, chosen by SNI on STARTTLS and direct TLS, and their own accounts and rosters;
//! an account of one host cannot log in on the other, while messages between the two hosts
//! are still delivered (both are local).

use std::path::Path;

use starling_testkit::{Element, SaslFailure, ScramMech, ServerOptions, TestServer, XmppClient};

const ROSTER: &str = "jabber:iq:roster";

/// Writes a self-signed certificate for `host` as `<host>.pem` and `<host>.key`; returns its DER.
fn certificate(dir: &Path, host: &str) -> anyhow::Result<Vec<u8>> {
    let key = rcgen::KeyPair::generate()?;
    let cert = rcgen::CertificateParams::new(vec![host.to_owned()])?.self_signed(&key)?;
    std::fs::write(dir.join(format!("{host}.pem")), cert.pem())?;
    std::fs::write(dir.join(format!("{host}.key")), key.serialize_pem())?;
    Ok(cert.der().to_vec())
}

/// Runs `starling adduser <jid>` against the server's config.
fn add_user(server: &TestServer, jid: &str, password: &str) -> anyhow::Result<()> {
    let password_path = server.data_dir().join(format!("password-{jid}"));
    std::fs::write(&password_path, password)?;
    let output = std::process::Command::new(starling_testkit::server::find_binary()?)
        .arg("--config")
        .arg(server.config_path())
        .args(["adduser", jid, "--password-file"])
        .arg(&password_path)
        .output()?;
    std::fs::remove_file(&password_path)?;
    anyhow::ensure!(
        output.status.success(),
        "adduser {jid}: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(())
}

/// STARTTLS with `host` in the stream header and SNI; returns the certificate served.
async fn tls_to(server: &TestServer, host: &str) -> anyhow::Result<(XmppClient, Vec<u8>)> {
    let mut client = XmppClient::connect_plain(server.starttls_addr).await?;
    client.open_stream(host).await?;
    client.starttls().await?;
    let cert = client
        .peer_cert_der()
        .ok_or_else(|| anyhow::anyhow!("no certificate after STARTTLS"))?;
    Ok((client, cert))
}

/// Logs in as `localpart` on `host` (SCRAM-SHA-256); the inner error is the SASL failure.
async fn login(
    server: &TestServer,
    host: &str,
    localpart: &str,
    password: &str,
) -> anyhow::Result<Result<XmppClient, SaslFailure>> {
    let (mut client, _) = tls_to(server, host).await?;
    if let Err(failure) = client
        .auth_scram(ScramMech::Sha256, localpart, password)
        .await?
    {
        return Ok(Err(failure));
    }
    client.bind(None).await?;
    Ok(Ok(client))
}

/// Reads until the element named `name` (with `id`, when given) arrives.
async fn expect(client: &mut XmppClient, name: &str, id: Option<&str>) -> anyhow::Result<Element> {
    loop {
        let element = client.expect_element(name).await?;
        if element.name() == name && (id.is_none() || element.attr("id") == id) {
            return Ok(element);
        }
    }
}

/// The JIDs in a roster result.
async fn roster_jids(client: &mut XmppClient, id: &str) -> anyhow::Result<Vec<String>> {
    client
        .send_str(&format!(
            "<iq type='get' id='{id}'><query xmlns='{ROSTER}'/></iq>"
        ))
        .await?;
    let result = expect(client, "iq", Some(id)).await?;
    anyhow::ensure!(
        result.attr("type") == Some("result"),
        "roster get failed: {result:?}"
    );
    let query = result
        .get_child("query", ROSTER)
        .ok_or_else(|| anyhow::anyhow!("roster result without a query"))?;
    Ok(query
        .children()
        .filter_map(|item| item.attr("jid").map(str::to_owned))
        .collect())
}

/// A server for `a.test` and `b.test`, each with `[tls.hosts."<host>"]` pointing at
/// `<certs>/<host>.pem` and `.key` (written by [`certificate`]).
async fn start_two_hosts(certs: &Path) -> anyhow::Result<TestServer> {
    let mut extra_toml = String::new();
    for host in ["a.test", "b.test"] {
        extra_toml.push_str(&format!(
            "[tls.hosts.\"{host}\"]\ncertificate = {:?}\nprivate_key = {:?}\n",
            certs.join(format!("{host}.pem")).display().to_string(),
            certs.join(format!("{host}.key")).display().to_string(),
        ));
    }
    TestServer::start_with(ServerOptions {
        hosts: vec!["a.test".to_owned(), "b.test".to_owned()],
        extra_toml,
        ..ServerOptions::default()
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hosts_have_their_own_certificates_and_data() -> anyhow::Result<()> {
    let certs = tempfile::tempdir()?;
    let a_der = certificate(certs.path(), "a.test")?;
    let b_der = certificate(certs.path(), "b.test")?;
    let server = start_two_hosts(certs.path()).await?;

    // Each host's certificate, by SNI, on both kinds of listener.
    assert_eq!(tls_to(&server, "a.test").await?.1, a_der);
    assert_eq!(tls_to(&server, "b.test").await?.1, b_der);
    for (host, der) in [("a.test", &a_der), ("b.test", &b_der)] {
        let direct = XmppClient::connect_direct_tls(server.direct_tls_addr, host).await?;
        assert_eq!(
            direct.peer_cert_der().as_ref(),
            Some(der),
            "direct TLS to {host}"
        );
    }

    add_user(&server, "alice@a.test", "alice-password")?;
    add_user(&server, "bob@b.test", "bob-password")?;
    assert_eq!(server.list_users(Some("a.test")).await?, ["alice@a.test"]);
    assert_eq!(server.list_users(Some("b.test")).await?, ["bob@b.test"]);

    let mut alice = login(&server, "a.test", "alice", "alice-password")
        .await?
        .map_err(|failure| anyhow::anyhow!("alice: {failure}"))?;
    let mut bob = login(&server, "b.test", "bob", "bob-password")
        .await?
        .map_err(|failure| anyhow::anyhow!("bob: {failure}"))?;
    assert!(
        alice
            .jid()
            .is_some_and(|jid| jid.starts_with("alice@a.test/"))
    );
    assert!(bob.jid().is_some_and(|jid| jid.starts_with("bob@b.test/")));

    // Alice's roster is hers alone.
    alice
        .send_str(&format!(
            "<iq type='set' id='add'><query xmlns='{ROSTER}'>\
             <item jid='carol@a.test' name='Carol'/></query></iq>"
        ))
        .await?;
    let answer = expect(&mut alice, "iq", Some("add")).await?;
    assert_eq!(answer.attr("type"), Some("result"), "{answer:?}");
    assert_eq!(roster_jids(&mut alice, "r1").await?, ["carol@a.test"]);
    assert!(roster_jids(&mut bob, "r2").await?.is_empty());

    // alice exists on a.test only: on b.test she is an unknown user.
    let refused = login(&server, "b.test", "alice", "alice-password").await?;
    assert_eq!(
        refused.err().map(|failure| failure.condition),
        Some("not-authorized".to_owned())
    );

    // Both hosts are local, so a message from one to the other is delivered.
    bob.send_str("<presence/>").await?;
    expect(&mut bob, "presence", None).await?;
    alice
        .send_str(
            "<message to='bob@b.test' type='chat' id='m1'><body>hello from a</body></message>",
        )
        .await?;
    let message = expect(&mut bob, "message", Some("m1")).await?;
    assert_eq!(message.attr("from"), alice.jid());
    assert_eq!(
        message
            .get_child("body", "jabber:client")
            .map(Element::text),
        Some("hello from a".to_owned())
    );
    server.ensure_alive()
}

// SIGHUP reads the per-host certificate files again: after b.test's certificate is replaced
// (a renewal), new connections to b.test get the new one and a.test keeps its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_a_hosts_certificate() -> anyhow::Result<()> {
    let certs = tempfile::tempdir()?;
    let a_der = certificate(certs.path(), "a.test")?;
    let old_b = certificate(certs.path(), "b.test")?;
    let server = start_two_hosts(certs.path()).await?;
    let (_open, served) = tls_to(&server, "b.test").await?;
    assert_eq!(served, old_b);

    let new_b = certificate(certs.path(), "b.test")?;
    assert_ne!(new_b, old_b);
    server.signal("HUP")?;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while !server
        .log_text()
        .contains("SIGHUP: reloaded the TLS certificate")
    {
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "no reload logged; log tail:\n{}",
            server.log_tail(10)
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(tls_to(&server, "b.test").await?.1, new_b);
    assert_eq!(tls_to(&server, "a.test").await?.1, a_der);
    server.ensure_alive()
}
