//! Graceful shutdown and restart (RFC 6120 §4.9.3.20, issue 7): SIGTERM with 100 sessions
//! open sends every one `<system-shutdown/>`, the process exits 0, and a restart on the same
//! data directory serves the same stored data. SIGHUP reloads the certificate and keeps
//! sessions.

use std::time::Duration;

use starling_testkit::{Incoming, ServerOptions, TestServer, XmppClient};

const ROSTER: &str = "jabber:iq:roster";
const SESSIONS: usize = 100;
const USERS: usize = 10;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_100_sessions_then_restart() -> anyhow::Result<()> {
    let mut server = TestServer::start_with(ServerOptions {
        max_resources_per_account: SESSIONS / USERS,
        ..ServerOptions::default()
    })
    .await?;
    for user in 0..USERS {
        server
            .add_user(&format!("user{user}"), &format!("password{user}"))
            .await?;
    }
    server.add_user("offline", "offline-password").await?;

    // Logins in parallel batches: SCRAM costs the debug-built client real CPU.
    let mut clients = Vec::new();
    for batch in 0..SESSIONS / USERS {
        let logins: Vec<_> = (0..USERS)
            .map(|user| {
                let addr = server.starttls_addr;
                let server_ref = &server;
                let resource = format!("r{batch}");
                async move {
                    let client = XmppClient::connect_plain(addr).await?;
                    client
                        .login_on(
                            server_ref,
                            &format!("user{user}"),
                            &format!("password{user}"),
                            Some(&resource),
                        )
                        .await
                }
            })
            .collect();
        for login in futures_join(logins).await {
            clients.push(login?);
        }
    }
    assert_eq!(clients.len(), SESSIONS);

    // Stored data: a roster item and an offline message.
    let first = &mut clients[0];
    first
        .send_str(&format!(
            "<iq type='set' id='r1'><query xmlns='{ROSTER}'><item jid='friend@localhost' name='Friend'/></query></iq>"
        ))
        .await?;
    loop {
        match first.next_element().await? {
            Incoming::Element(iq) if iq.attr("id") == Some("r1") => {
                assert_eq!(iq.attr("type"), Some("result"));
                break;
            }
            Incoming::Element(_push) => {}
            other => anyhow::bail!("expected the roster result, got {other:?}"),
        }
    }
    first
        .send_str("<message to='offline@localhost' type='chat' id='o1'><body>kept</body></message>")
        .await?;
    first.ping().await?;

    let status = server.terminate(Duration::from_secs(15)).await?;
    assert!(status.success(), "exit status {status}");
    for (n, client) in clients.iter_mut().enumerate() {
        let mut condition = None;
        loop {
            match client.next_element().await? {
                Incoming::StreamError(error) => {
                    condition = starling_testkit::client::stream_error_condition(&error)
                }
                Incoming::Closed => break,
                Incoming::Element(_) => {}
            }
        }
        assert_eq!(condition.as_deref(), Some("system-shutdown"), "session {n}");
    }
    assert!(server.log_text().contains("stopped"));

    server.restart().await?;
    let mut user0 = XmppClient::login(&server, "user0", "password0").await?;
    user0
        .send_str(&format!(
            "<iq type='get' id='r2'><query xmlns='{ROSTER}'/></iq>"
        ))
        .await?;
    let roster = user0.expect_element("the roster").await?;
    let items: Vec<_> = roster
        .get_child("query", ROSTER)
        .map(|query| {
            query
                .children()
                .filter_map(|item| item.attr("jid"))
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(items, ["friend@localhost"]);
    let mut offline = XmppClient::login(&server, "offline", "offline-password").await?;
    offline.send_str("<presence/>").await?;
    loop {
        let element = offline.expect_element("the offline message").await?;
        if element.name() == "message" {
            assert_eq!(
                element
                    .get_child("body", "jabber:client")
                    .map(|b| b.text())
                    .as_deref(),
                Some("kept")
            );
            break;
        }
    }
    Ok(())
}

/// Runs the futures concurrently on this task and returns their outputs in order.
async fn futures_join<F: std::future::Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut pinned: Vec<_> = futures.into_iter().map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = pinned.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (future, output) in pinned.iter_mut().zip(outputs.iter_mut()) {
            if output.is_none() {
                match future.as_mut().poll(cx) {
                    std::task::Poll::Ready(value) => *output = Some(value),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    outputs.into_iter().flatten().collect()
}

// Issue 7: SIGHUP reloads the certificate for new connections and drops no session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_certificate_and_keeps_sessions() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    server.add_user("alice", "alice-password").await?;
    let mut alice = XmppClient::login(&server, "alice", "alice-password").await?;
    let old_cert = alice.peer_cert_der();
    // With no certificate configured, the reload generates a new self-signed one.
    std::fs::remove_file(server.cert_path())?;
    std::fs::remove_file(server.data_dir().join("tls").join("key.pem"))?;
    server.signal("HUP")?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !server
        .log_text()
        .contains("SIGHUP: reloaded the TLS certificate")
    {
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "no reload logged; log tail:\n{}",
            server.log_tail(10)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    alice.ping().await?;
    let mut again = XmppClient::login(&server, "alice", "alice-password").await?;
    again.ping().await?;
    assert!(old_cert.is_some());
    assert_ne!(
        again.peer_cert_der(),
        old_cert,
        "new connections use the new certificate"
    );
    server.ensure_alive()
}
