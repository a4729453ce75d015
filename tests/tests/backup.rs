//! `starling backup`, `restore` and `import-prosody` against the real binary (issue 8).
//!
//! A backup of a server with rosters, a mutual subscription, pending requests and an offline
//! message is restored into a fresh data directory: the accounts, passwords, rosters, block
//! lists and waiting stanzas come back, and a backup of the restored server is byte-identical
//! to the first. A vCard, private XML and another module's data restored from a file come out
//! of the next backup byte for byte. Bad files and existing accounts change nothing; a running
//! server (an answering admin socket) is not written to without `--force`.
//! `tests/prosody-data/` is imported: its users log in with their Prosody passwords, and the
//! block list, vCard and private XML come along.

use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use anyhow::{Context as _, bail, ensure};
use starling_testkit::server::find_binary;
use starling_testkit::{
    Element, Incoming, SaslFailure, ScramMech, ServerOptions, TestServer, XmppClient, matches,
};

const ROSTER: &str = "jabber:iq:roster";
const BLOCKING: &str = "urn:xmpp:blocking";

/// Runs `starling --config <server's config> args…` and returns its output.
async fn starling(server: &TestServer, args: &[&str]) -> anyhow::Result<Output> {
    let output = tokio::process::Command::new(find_binary()?)
        .arg("--config")
        .arg(server.config_path())
        .args(args)
        .kill_on_drop(true)
        .output()
        .await
        .context("running starling")?;
    Ok(output)
}

/// As [`starling`], failing unless it succeeds; returns standard output and standard error.
async fn starling_ok(server: &TestServer, args: &[&str]) -> anyhow::Result<(String, String)> {
    let output = starling(server, args).await?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    ensure!(
        output.status.success(),
        "`starling {}` failed with {}:\n{stdout}\n{stderr}",
        args.join(" "),
        output.status
    );
    Ok((stdout, stderr))
}

/// As [`starling`], failing unless it fails; returns standard error.
async fn starling_fails(server: &TestServer, args: &[&str]) -> anyhow::Result<String> {
    let output = starling(server, args).await?;
    ensure!(
        !output.status.success(),
        "`starling {}` should have failed:\n{}",
        args.join(" "),
        String::from_utf8_lossy(&output.stdout)
    );
    Ok(String::from_utf8_lossy(&output.stderr).into_owned())
}

fn parse(xml: &str) -> anyhow::Result<Element> {
    starling_testkit::parse_stream_child(xml).map_err(|err| anyhow::anyhow!("{err}: {xml}"))
}

fn path_arg(path: &Path) -> anyhow::Result<&str> {
    path.to_str().context("test paths are UTF-8")
}

/// Sends a ping and reads until its answer, skipping everything before it (pushes, presence):
/// everything this client sent earlier has then been handled by the server.
async fn fence(client: &mut XmppClient, id: &str) -> anyhow::Result<Vec<Element>> {
    client
        .send_str(&format!(
            "<iq type='get' id='{id}'><ping xmlns='urn:xmpp:ping'/></iq>"
        ))
        .await?;
    let mut skipped = Vec::new();
    loop {
        match client.next_element().await? {
            Incoming::Element(element)
                if element.name() == "iq" && element.attr("id") == Some(id) =>
            {
                return Ok(skipped);
            }
            Incoming::Element(element) => skipped.push(element),
            other => bail!("waiting for {id}: {other:?}"),
        }
    }
}

/// The roster query of a roster get, serialized.
async fn roster(client: &mut XmppClient) -> anyhow::Result<String> {
    client
        .send_str(&format!(
            "<iq type='get' id='roster'><query xmlns='{ROSTER}'/></iq>"
        ))
        .await?;
    loop {
        match client.next_element().await? {
            Incoming::Element(element) if element.attr("id") == Some("roster") => {
                let query = element
                    .get_child("query", ROSTER)
                    .context("roster result without query")?;
                let mut out = Vec::new();
                query.write_to(&mut out)?;
                return Ok(String::from_utf8(out)?);
            }
            Incoming::Element(_) => {}
            other => bail!("waiting for the roster: {other:?}"),
        }
    }
}

/// Sends the iq `request` whose id is `id` and returns the iq answering it, skipping
/// everything before it.
async fn iq(client: &mut XmppClient, id: &str, request: &str) -> anyhow::Result<Element> {
    client.send_str(request).await?;
    loop {
        match client.next_element().await? {
            Incoming::Element(element)
                if element.name() == "iq" && element.attr("id") == Some(id) =>
            {
                return Ok(element);
            }
            Incoming::Element(_) => {}
            other => bail!("waiting for {id}: {other:?}"),
        }
    }
}

/// The JIDs a block-list get (XEP-0191 §3.2) returns, sorted.
async fn block_list(client: &mut XmppClient) -> anyhow::Result<Vec<String>> {
    let answer = iq(
        client,
        "bl",
        &format!("<iq type='get' id='bl'><blocklist xmlns='{BLOCKING}'/></iq>"),
    )
    .await?;
    let list = answer
        .get_child("blocklist", BLOCKING)
        .with_context(|| format!("no <blocklist/> in {answer:?}"))?;
    let mut jids: Vec<String> = list
        .children()
        .filter_map(|item| item.attr("jid").map(str::to_owned))
        .collect();
    jids.sort();
    Ok(jids)
}

/// What an iq get of `payload` returns, serialized: the vCard for a vCard get, the stored
/// fragment for a private XML get (XEP-0049 §2.2, unwrapped from its `<query/>`).
async fn fetch(client: &mut XmppClient, id: &str, payload: &str) -> anyhow::Result<String> {
    let answer = iq(
        client,
        id,
        &format!("<iq type='get' id='{id}'>{payload}</iq>"),
    )
    .await?;
    ensure!(
        answer.attr("type") == Some("result"),
        "{payload}: {answer:?}"
    );
    let mut element = answer
        .children()
        .next()
        .with_context(|| format!("{payload}: an empty result"))?;
    if element.is("query", "jabber:iq:private") {
        element = element
            .children()
            .next()
            .with_context(|| format!("{payload}: an empty query"))?;
    }
    let mut out = Vec::new();
    element.write_to(&mut out)?;
    Ok(String::from_utf8(out)?)
}

/// Reads until an element matching `expected` arrives, skipping others.
async fn expect_eventually(client: &mut XmppClient, expected: &str) -> anyhow::Result<Element> {
    let expected = parse(expected)?;
    for _ in 0..20 {
        match client.next_element().await? {
            Incoming::Element(actual) if matches(&expected, &actual).is_ok() => return Ok(actual),
            Incoming::Element(_) => {}
            other => bail!("waiting for {expected:?}: {other:?}"),
        }
    }
    bail!("{expected:?} did not arrive")
}

async fn login_with(
    server: &TestServer,
    user: &str,
    password: &str,
    mech: ScramMech,
) -> anyhow::Result<Result<XmppClient, SaslFailure>> {
    let mut client = XmppClient::connect_plain(server.starttls_addr).await?;
    client.open_stream(&server.domain).await?;
    client.starttls().await?;
    if let Err(failure) = client.auth_scram(mech, user, password).await? {
        return Ok(Err(failure));
    }
    client.bind(None).await?;
    Ok(Ok(client))
}

async fn login_plain(
    server: &TestServer,
    user: &str,
    password: &str,
) -> anyhow::Result<Result<(), SaslFailure>> {
    let mut client = XmppClient::connect_plain(server.starttls_addr).await?;
    client.open_stream(&server.domain).await?;
    client.starttls().await?;
    client.auth_plain(user, password, None).await
}

/// Stops the server so a command may write to its data (the admin socket stops answering).
async fn stop(server: &TestServer) -> anyhow::Result<()> {
    server.terminate(Duration::from_secs(15)).await?;
    Ok(())
}

fn scratch() -> anyhow::Result<tempfile::TempDir> {
    Ok(tempfile::Builder::new()
        .prefix("starling-backup-")
        .tempdir()?)
}

#[tokio::test]
async fn backup_wipe_restore_gives_back_accounts_rosters_and_waiting_stanzas() -> anyhow::Result<()>
{
    backup_wipe_restore(ServerOptions::default()).await
}

/// The same, restored into PostgreSQL: a backup also moves a server between backends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sqlite_backup_restores_into_postgres_byte_for_byte() -> anyhow::Result<()> {
    backup_wipe_restore(ServerOptions {
        postgres_url: Some(starling_testkit::fresh_postgres_database("starling_backup").await?),
        ..ServerOptions::default()
    })
    .await
}

/// Fills a SQLite server, backs it up, restores into a fresh server with `target` options and
/// checks everything came back.
async fn backup_wipe_restore(target: ServerOptions) -> anyhow::Result<()> {
    let original = TestServer::start().await?;
    for user in ["alice", "bob", "carol", "dave"] {
        original.add_user(user, &format!("{user}-pw")).await?;
    }
    let mut alice = XmppClient::login(&original, "alice", "alice-pw").await?;
    let mut bob = XmppClient::login(&original, "bob", "bob-pw").await?;
    for client in [&mut alice, &mut bob] {
        roster(client).await?;
        client.send_str("<presence/>").await?;
        fence(client, "online").await?;
    }
    // A mutual subscription, both halves approved.
    alice
        .send_str("<presence to='bob@localhost' type='subscribe'/>")
        .await?;
    fence(&mut alice, "f1").await?;
    bob.send_str("<presence to='alice@localhost' type='subscribed'/>")
        .await?;
    bob.send_str("<presence to='alice@localhost' type='subscribe'/>")
        .await?;
    fence(&mut bob, "f2").await?;
    alice
        .send_str("<presence to='bob@localhost' type='subscribed'/>")
        .await?;
    alice
        .send_str(&format!(
            "<iq type='set' id='set'><query xmlns='{ROSTER}'><item jid='carol@localhost' name='Carol &amp; co'>\
             <group>Friends</group><group>Work</group></item></query></iq>"
        ))
        .await?;
    fence(&mut alice, "f3").await?;
    // Carol asks alice (online) and dave (never logged in) to subscribe, and leaves dave a
    // message: two pending requests and one offline message.
    let mut carol = XmppClient::login(&original, "carol", "carol-pw").await?;
    carol
        .send_str("<presence to='alice@localhost' type='subscribe'/>")
        .await?;
    carol
        .send_str("<presence to='dave@localhost' type='subscribe'/>")
        .await?;
    carol
        .send_str("<message to='dave@localhost' type='chat' id='m1'><body>while you were out</body></message>")
        .await?;
    fence(&mut carol, "f4").await?;
    fence(&mut bob, "f5").await?;
    fence(&mut alice, "f6").await?;
    // alice blocks a full JID (given in another case) and a domain: the block list travels too.
    let blocked = iq(
        &mut alice,
        "block",
        &format!(
            "<iq type='set' id='block'><block xmlns='{BLOCKING}'>\
             <item jid='Mallory@localhost/phone'/><item jid='spam.example'/></block></iq>"
        ),
    )
    .await?;
    ensure!(blocked.attr("type") == Some("result"), "{blocked:?}");
    let alice_blocks = block_list(&mut alice).await?;
    assert_eq!(alice_blocks, ["mallory@localhost/phone", "spam.example"]);
    let alice_roster = roster(&mut alice).await?;
    let bob_roster = roster(&mut bob).await?;
    assert!(
        alice_roster.contains("subscription='both'"),
        "{alice_roster}"
    );
    assert!(
        alice_roster.contains("<group>Work</group>"),
        "{alice_roster}"
    );

    let dir = scratch()?;
    let first = dir.path().join("first.xml");
    // Reading is allowed while the server runs.
    let (stdout, stderr) =
        starling_ok(&original, &["backup", "localhost", "-o", path_arg(&first)?]).await?;
    assert_eq!(stdout, "");
    assert_eq!(
        stderr.trim_end(),
        "backed up 4 account(s), 5 roster item(s), 2 subscription request(s), 1 offline message(s) on localhost"
    );
    let first_bytes = std::fs::read(&first)?;
    let text = String::from_utf8(first_bytes.clone())?;
    for needle in [
        "<server-data xmlns='urn:xmpp:pie:0'>",
        "mechanism='SCRAM-SHA-256'",
        "subscription='both'",
        "type='subscribe'",
        "<body>while you were out</body>",
        "<blocklist xmlns='urn:xmpp:blocking'>\n        <item jid='mallory@localhost/phone'/>\n        <item jid='spam.example'/>\n      </blocklist>",
    ] {
        assert!(text.contains(needle), "{needle} missing from\n{text}");
    }
    assert!(!text.contains("-pw"), "a password leaked into the backup");
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(
        std::fs::metadata(&first)?.permissions().mode() & 0o777,
        0o600
    );
    // The same data backed up again, to standard output, gives the same bytes.
    let again = starling(&original, &["backup", "localhost"]).await?;
    assert_eq!(again.stdout, first_bytes);

    // A fresh data directory (and database): restore, restart, and everything is back.
    let mut restored = TestServer::start_with(target).await?;
    stop(&restored).await?;
    let (stdout, _) = starling_ok(&restored, &["restore", path_arg(&first)?]).await?;
    assert_eq!(
        stdout.trim_end(),
        "restored 4 account(s), 5 roster item(s), 2 subscription request(s), 1 offline message(s) on localhost"
    );
    restored.restart().await?;
    // Before anyone logs in (which would deliver the waiting stanzas): byte-identical.
    let second = starling(&restored, &["backup", "localhost"]).await?;
    assert!(second.status.success());
    assert_eq!(String::from_utf8(second.stdout)?, text);

    assert_eq!(
        restored.list_users(None).await?,
        [
            "alice@localhost",
            "bob@localhost",
            "carol@localhost",
            "dave@localhost"
        ]
    );
    let mut alice = XmppClient::login(&restored, "alice", "alice-pw").await?;
    assert_eq!(roster(&mut alice).await?, alice_roster);
    assert_eq!(block_list(&mut alice).await?, alice_blocks);
    let mut bob = login_with(&restored, "bob", "bob-pw", ScramMech::Sha1)
        .await?
        .map_err(|failure| anyhow::anyhow!("bob with SCRAM-SHA-1: {failure}"))?;
    assert_eq!(roster(&mut bob).await?, bob_roster);
    assert_eq!(login_plain(&restored, "carol", "carol-pw").await?, Ok(()));
    assert_eq!(
        login_plain(&restored, "carol", "alice-pw").await?,
        Err(SaslFailure::condition("not-authorized"))
    );
    let mut dave = XmppClient::login(&restored, "dave", "dave-pw").await?;
    dave.send_str("<presence/>").await?;
    expect_eventually(
        &mut dave,
        "<presence type='subscribe' from='carol@localhost'/>",
    )
    .await?;
    expect_eventually(
        &mut dave,
        "<message from='carol@localhost/{*}' id='m1'><body>while you were out</body>\
         <delay xmlns='urn:xmpp:delay' from='localhost' stamp='{*}'/></message>",
    )
    .await?;
    Ok(())
}

/// A 1×1 PNG, as a client puts it in a vCard's PHOTO (XEP-0153); `tests/prosody-data` has it
/// in juliet's vCard too.
const PNG: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==";

#[tokio::test]
async fn vcards_private_xml_and_other_module_data_survive_restore_and_backup() -> anyhow::Result<()>
{
    let source = TestServer::start().await?;
    source.add_user("alice", "alice-pw").await?;
    let dir = scratch()?;
    let plain = dir.path().join("plain.xml");
    starling_ok(&source, &["backup", "-o", path_arg(&plain)?]).await?;
    let text = std::fs::read_to_string(&plain)?;
    // alice's vCard, two private XML fragments and a last-activity record, in the layout the
    // writer uses (the modules' minidom serialization, indented like the rest).
    let module_data = format!(
        "      <vCard xmlns='vcard-temp'><FN>Alice</FN><NICKNAME xml:lang='en'>Al</NICKNAME>\
         <PHOTO><TYPE>image/png</TYPE><BINVAL>{PNG}</BINVAL></PHOTO></vCard>\n\
         \x20     <query xmlns='jabber:iq:private'>\n\
         \x20       <storage xmlns='storage:bookmarks'><conference autojoin='true' \
         jid='room@conference.localhost' name='Room &amp; board'><nick>al</nick></conference></storage>\n\
         \x20       <x xmlns='urn:example:notes'>remember the milk</x>\n\
         \x20     </query>\n\
         \x20     <module-data xmlns='urn:starling:pie:module-data:0' key='last' store='lastactivity'>MTcwMDAwMDAwMApicmI=</module-data>\n"
    );
    let crafted = text.replacen("    </user>\n", &format!("{module_data}    </user>\n"), 1);
    ensure!(crafted != text, "no </user> in\n{text}");
    let file = dir.path().join("with-module-data.xml");
    std::fs::write(&file, &crafted)?;

    let mut target = TestServer::start().await?;
    stop(&target).await?;
    let (stdout, _) = starling_ok(&target, &["restore", path_arg(&file)?]).await?;
    assert_eq!(
        stdout.trim_end(),
        "restored 1 account(s), 0 roster item(s), 0 subscription request(s), 0 offline message(s) on localhost"
    );
    target.restart().await?;
    // Everything went into storage and comes out again byte for byte.
    let again = starling(&target, &["backup", "localhost"]).await?;
    assert!(again.status.success());
    assert_eq!(String::from_utf8(again.stdout)?, crafted);
    // The vCard and private XML modules answer with exactly what was restored.
    let mut alice = XmppClient::login(&target, "alice", "alice-pw").await?;
    assert_eq!(
        fetch(&mut alice, "v1", "<vCard xmlns='vcard-temp'/>").await?,
        format!(
            "<vCard xmlns='vcard-temp'><FN>Alice</FN><NICKNAME xml:lang='en'>Al</NICKNAME>\
             <PHOTO><TYPE>image/png</TYPE><BINVAL>{PNG}</BINVAL></PHOTO></vCard>"
        )
    );
    assert_eq!(
        fetch(
            &mut alice,
            "p1",
            "<query xmlns='jabber:iq:private'><storage xmlns='storage:bookmarks'/></query>"
        )
        .await?,
        "<storage xmlns='storage:bookmarks'><conference autojoin='true' \
         jid='room@conference.localhost' name='Room &amp; board'><nick>al</nick></conference></storage>"
    );
    assert_eq!(
        fetch(
            &mut alice,
            "p2",
            "<query xmlns='jabber:iq:private'><x xmlns='urn:example:notes'/></query>"
        )
        .await?,
        "<x xmlns='urn:example:notes'>remember the milk</x>"
    );
    Ok(())
}

#[tokio::test]
async fn bad_files_and_existing_accounts_change_nothing() -> anyhow::Result<()> {
    // The backup: alice with her old password, and bob.
    let source = TestServer::start().await?;
    source.add_user("alice", "old-pw").await?;
    source.add_user("bob", "bob-pw").await?;
    let dir = scratch()?;
    let backup = dir.path().join("backup.xml");
    starling_ok(&source, &["backup", "-o", path_arg(&backup)?]).await?;
    let text = std::fs::read_to_string(&backup)?;

    // The target already has alice, with a new password.
    let mut target = TestServer::start().await?;
    target.add_user("alice", "new-pw").await?;
    stop(&target).await?;

    let truncated = dir.path().join("truncated.xml");
    std::fs::write(&truncated, &text[..text.len() / 2])?;
    let stderr = starling_fails(&target, &["restore", path_arg(&truncated)?]).await?;
    assert!(
        stderr.starts_with(&format!(
            "starling: {} is not a usable backup; nothing was restored: not well-formed XML",
            truncated.display()
        )),
        "{stderr}"
    );
    let wrong = dir.path().join("wrong.xml");
    std::fs::write(&wrong, text.replace("<stored-key>", "<stored-key>AAAA"))?;
    let stderr = starling_fails(&target, &["restore", path_arg(&wrong)?]).await?;
    assert!(
        stderr.contains("host localhost, user alice, SCRAM-SHA-1 credentials: <stored-key/> is 23 bytes, not the 20 of SCRAM-SHA-1"),
        "{stderr}"
    );
    let other_host = dir.path().join("other-host.xml");
    std::fs::write(
        &other_host,
        text.replace("<host jid='localhost'>", "<host jid='elsewhere.example'>"),
    )?;
    let stderr = starling_fails(&target, &["restore", path_arg(&other_host)?]).await?;
    assert!(
        stderr.starts_with("starling: elsewhere.example is not one of the configured hosts (localhost); nothing was written"),
        "{stderr}"
    );
    // alice exists: refused as a whole, so bob is not created either.
    let stderr = starling_fails(&target, &["restore", path_arg(&backup)?]).await?;
    assert_eq!(
        stderr.trim_end(),
        "starling: account alice@localhost already exists; nothing was written (pass --replace to overwrite existing accounts)"
    );
    assert_eq!(target.list_users(None).await?, ["alice@localhost"]);
    target.restart().await?;
    assert_eq!(login_plain(&target, "alice", "new-pw").await?, Ok(()));

    // --replace: alice is the backup's alice again, and bob arrives.
    stop(&target).await?;
    starling_ok(&target, &["restore", "--replace", path_arg(&backup)?]).await?;
    target.restart().await?;
    assert_eq!(
        target.list_users(None).await?,
        ["alice@localhost", "bob@localhost"]
    );
    assert_eq!(login_plain(&target, "alice", "old-pw").await?, Ok(()));
    assert_eq!(
        login_plain(&target, "alice", "new-pw").await?,
        Err(SaslFailure::condition("not-authorized"))
    );
    Ok(())
}

#[tokio::test]
async fn writing_is_refused_while_the_admin_socket_answers() -> anyhow::Result<()> {
    let source = TestServer::start().await?;
    source.add_user("alice", "alice-pw").await?;
    let dir = scratch()?;
    let backup = dir.path().join("backup.xml");
    starling_ok(&source, &["backup", "-o", path_arg(&backup)?]).await?;

    let target = TestServer::start().await?;
    stop(&target).await?;
    // Stand in for a running server's admin socket at the configured default path.
    let socket = target.data_dir().join("admin.sock");
    let _ = std::fs::remove_file(&socket);
    let _listener = UnixListener::bind(&socket)?;
    for args in [
        vec!["restore", path_arg(&backup)?],
        vec![
            "import-prosody",
            path_arg(&prosody_data())?,
            "--host",
            "localhost",
        ],
    ] {
        let stderr = starling_fails(&target, &args).await?;
        assert!(
            stderr.starts_with(&format!(
                "starling: a server is running on this data (its admin socket {} accepts connections)",
                socket.display()
            )),
            "{stderr}"
        );
    }
    assert_eq!(target.list_users(None).await?, Vec::<String>::new());
    starling_ok(&target, &["restore", "--force", path_arg(&backup)?]).await?;
    assert_eq!(target.list_users(None).await?, ["alice@localhost"]);
    Ok(())
}

fn prosody_data() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("prosody-data")
}

#[tokio::test]
async fn prosody_users_log_in_with_their_prosody_passwords() -> anyhow::Result<()> {
    let mut server = TestServer::start().await?;
    stop(&server).await?;
    let data = prosody_data();
    // The directory also holds example.org, which this server does not serve.
    let stderr = starling_fails(&server, &["import-prosody", path_arg(&data)?]).await?;
    assert!(
        stderr.starts_with("starling: example.org is not one of the configured hosts (localhost); nothing was written"),
        "{stderr}"
    );
    let (stdout, _) = starling_ok(
        &server,
        &["import-prosody", path_arg(&data)?, "--host", "localhost"],
    )
    .await?;
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines,
        [
            "warning: host localhost: skipped Prosody's \"offline\" store (1 file(s)), which is not imported",
            "imported 2 account(s), 3 roster item(s), 1 subscription request(s), 0 offline message(s) on localhost",
            "note: 1 account(s) came with SCRAM-SHA-1 keys only (Prosody's default password_hash): \
             their hosts offer SCRAM-SHA-1 and PLAIN but not SCRAM-SHA-256 until each of them \
             has logged in once with PLAIN (which stores SCRAM-SHA-256 keys) or had its password \
             set with `starling passwd`; `starling hash-report` counts those left",
        ]
    );
    server.restart().await?;
    assert_eq!(
        server.list_users(None).await?,
        ["juliet@localhost", "romeo@localhost"]
    );

    // juliet was stored hashed (SCRAM-SHA-1 keys only), so localhost does not offer
    // SCRAM-SHA-256 (to anyone: the offer is per host), and asking for it anyway is refused
    // as for any mechanism not offered.
    assert_eq!(
        starling_ok(&server, &["hash-report"]).await?.0,
        "localhost: 2 account(s); lacking SCRAM-SHA-1: 0, lacking SCRAM-SHA-256: 1; \
         offers SCRAM-SHA-1 (scram_offer = \"complete\")\n"
    );
    assert_eq!(
        server.offered_mechanisms().await?,
        ["SCRAM-SHA-1-PLUS", "SCRAM-SHA-1", "PLAIN"]
    );
    assert_eq!(
        login_with(&server, "juliet", "balcony-r0se", ScramMech::Sha256)
            .await?
            .err(),
        Some(SaslFailure::condition("invalid-mechanism"))
    );
    let mut juliet = login_with(&server, "juliet", "balcony-r0se", ScramMech::Sha1)
        .await?
        .map_err(|failure| anyhow::anyhow!("juliet with SCRAM-SHA-1: {failure}"))?;
    assert_eq!(
        login_plain(&server, "juliet", "wrong").await?,
        Err(SaslFailure::condition("not-authorized"))
    );
    // One PLAIN login with the right password stores her SCRAM-SHA-256 keys; with no account
    // lacking them any more, localhost offers SCRAM-SHA-256 again and her login with it works.
    assert_eq!(
        login_plain(&server, "juliet", "balcony-r0se").await?,
        Ok(())
    );
    server.wait_until_offered("SCRAM-SHA-256").await?;
    assert_eq!(
        starling_ok(&server, &["hash-report", "localhost"]).await?.0,
        "localhost: 2 account(s); lacking SCRAM-SHA-1: 0, lacking SCRAM-SHA-256: 0; \
         offers SCRAM-SHA-256, SCRAM-SHA-1 (scram_offer = \"complete\")\n"
    );
    login_with(&server, "juliet", "balcony-r0se", ScramMech::Sha256)
        .await?
        .map_err(|failure| anyhow::anyhow!("juliet with SCRAM-SHA-256 after PLAIN: {failure}"))?;
    let juliet_roster = roster(&mut juliet).await?;
    let expected = parse(&format!(
        "<query xmlns='{ROSTER}' ver='4'>\
         <item jid='nurse@localhost' subscription='none' ask='subscribe'/>\
         <item jid='romeo@localhost' name='Roméo' subscription='both'>\
         <group>Friends</group><group>Montague family</group></item></query>"
    ))?;
    matches(&expected, &parse(&juliet_roster)?)
        .map_err(|reason| anyhow::anyhow!("juliet's roster: {reason}\n{juliet_roster}"))?;
    juliet.send_str("<presence/>").await?;
    expect_eventually(
        &mut juliet,
        "<presence type='subscribe' from='tybalt@localhost'/>",
    )
    .await?;
    // Her block list (mod_blocklist's store) answers over XEP-0191.
    assert_eq!(
        block_list(&mut juliet).await?,
        ["montague.example", "paris@localhost"]
    );
    // Her vCard (mod_vcard) and private XML (mod_private) are answered over XEP-0054 and
    // XEP-0049 exactly as Prosody stored them, and a backup shows them in XEP-0227's elements.
    assert_eq!(
        fetch(&mut juliet, "v1", "<vCard xmlns='vcard-temp'/>").await?,
        format!(
            "<vCard xmlns='vcard-temp'><FN>Juliet Capulet</FN><NICKNAME>Giuliétta</NICKNAME>\
             <PHOTO><TYPE>image/png</TYPE><BINVAL>{PNG}</BINVAL></PHOTO></vCard>"
        )
    );
    assert_eq!(
        fetch(
            &mut juliet,
            "p1",
            "<query xmlns='jabber:iq:private'><storage xmlns='storage:bookmarks'/></query>"
        )
        .await?,
        "<storage xmlns='storage:bookmarks'><conference autojoin='true' \
         jid='balcony@conference.localhost' name='The balcony'><nick>Jules</nick></conference></storage>"
    );
    assert_eq!(
        fetch(
            &mut juliet,
            "p2",
            "<query xmlns='jabber:iq:private'><roster xmlns='roster:delimiter'/></query>"
        )
        .await?,
        "<roster xmlns='roster:delimiter'>::</roster>"
    );
    let backup = starling(&server, &["backup", "localhost"]).await?;
    ensure!(backup.status.success(), "backup failed");
    let backup = String::from_utf8(backup.stdout)?;
    for needle in [
        "      <vCard xmlns='vcard-temp'><FN>Juliet Capulet</FN><NICKNAME>Giuliétta</NICKNAME>\
         <PHOTO><TYPE>image/png</TYPE><BINVAL>iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==</BINVAL></PHOTO></vCard>\n",
        "      <query xmlns='jabber:iq:private'>\n\
         \x20       <roster xmlns='roster:delimiter'>::</roster>\n\
         \x20       <storage xmlns='storage:bookmarks'><conference autojoin='true' \
         jid='balcony@conference.localhost' name='The balcony'><nick>Jules</nick></conference></storage>\n\
         \x20     </query>\n",
        "      <blocklist xmlns='urn:xmpp:blocking'>\n\
         \x20       <item jid='montague.example'/>\n\
         \x20       <item jid='paris@localhost'/>\n\
         \x20     </blocklist>\n",
    ] {
        assert!(backup.contains(needle), "{needle} missing from\n{backup}");
    }

    // romeo was stored in plaintext: both hashes were derived, SCRAM-SHA-256 works.
    let mut romeo = XmppClient::login(&server, "romeo", "wherefore\"art\\thou").await?;
    let romeo_roster = roster(&mut romeo).await?;
    let expected = parse(&format!(
        "<query xmlns='{ROSTER}' ver='2'>\
         <item jid='juliet@localhost' name='Juliet' subscription='both'><group>Lovers</group></item></query>"
    ))?;
    matches(&expected, &parse(&romeo_roster)?)
        .map_err(|reason| anyhow::anyhow!("romeo's roster: {reason}\n{romeo_roster}"))?;
    Ok(())
}
