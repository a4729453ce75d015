//! Moving from Prosody without users noticing (issue 22), with Debian's real `prosody` package.
//!
//! - Migration: a Prosody started by the test (its own scratch directory, loopback, a free
//!   port) gets three accounts from `prosodyctl register` and, through two slixmpp clients, a
//!   roster item with a name and a group and a mutual subscription. Its data directory is
//!   imported into a fresh Starling. slixmpp, choosing its mechanism as a user's client does,
//!   logs in to every account and reads the same roster as it read from Prosody. Prosody left
//!   SCRAM-SHA-1 keys only, so Starling does not offer SCRAM-SHA-256 (a client picking it
//!   would fail with the right password); after each account's one PLAIN login its
//!   SCRAM-SHA-256 keys are stored, `hash-report` counts down to zero, and SCRAM-SHA-256 is
//!   offered and works, for slixmpp's own choice too.
//! - Policy: `c2s.scram_offer = "always"` offers SCRAM-SHA-256 despite such accounts, and
//!   `"complete"` takes it back, each on SIGHUP.
//! - Configuration: `import-prosody-config` on Debian's default `/etc/prosody/prosody.cfg.lua`
//!   (from the package) and on a multi-host file (`tests/prosody-config/`) writes a
//!   `starling.toml` that `check-config` accepts, and names what it could not translate.
//!
//! `cargo xtask test` installs the `prosody` package before the tests; without it (or without
//! the interop venv in `STARLING_PYTHON`) these tests fail rather than pass unchecked.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context as _, bail, ensure};
use starling_testkit::script::{ScriptRun, python, run_with_timeout};
use starling_testkit::server::find_binary;
use starling_testkit::{SaslFailure, ScramMech, TestServer, XmppClient};
use tokio::process::{Child, Command};

/// The accounts made in Prosody, with their passwords.
const ACCOUNTS: [(&str, &str); 3] = [
    ("alice", "alice-Pr0sody-pw"),
    ("bob", "bob-Pr0sody-pw"),
    ("carol", "carol-Pr0sody-pw"),
];

/// What a host offers while some account lacks SCRAM-SHA-256 keys.
const WITHOUT_SHA_256: [&str; 3] = ["SCRAM-SHA-1-PLUS", "SCRAM-SHA-1", "PLAIN"];

/// Deadline of one script or command.
const STEP_TIMEOUT: Duration = Duration::from_secs(40);

/// How long Prosody may take to listen.
const PROSODY_START: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prosody_users_keep_accounts_and_rosters_and_gain_scram_sha_256() -> anyhow::Result<()> {
    let python = python()?;
    let mut prosody = Prosody::start().await?;
    for (user, password) in ACCOUNTS {
        prosody.register(user, password).await?;
    }
    prosody.run().await?;
    let prosody_addr = format!("127.0.0.1:{}", prosody.port);

    // The roster, made by real clients through Prosody.
    let befriended = run_script(
        &python,
        "mutual_subscription.py",
        &[
            "--alice",
            "alice@localhost",
            "--alice-password",
            ACCOUNTS[0].1,
            "--bob",
            "bob@localhost",
            "--bob-password",
            ACCOUNTS[1].1,
            "--host",
            "127.0.0.1",
            "--port",
            &prosody.port.to_string(),
        ],
    )
    .await?;
    ensure!(
        befriended.succeeded(),
        "mutual_subscription.py against Prosody: {}\n--- prosody log ---\n{}",
        befriended.describe(),
        prosody.log()
    );
    let mut before = BTreeMap::new();
    for (user, password) in ACCOUNTS {
        let dump = roster_dump(&python, &prosody_addr, user, password, None).await?;
        before.insert(user, dump.roster);
    }
    ensure!(
        before["alice"]
            == r#"{"bob@localhost":{"ask":null,"groups":["Friends"],"name":"Bob","subscription":"both"}}"#,
        "alice's roster in Prosody: {}",
        before["alice"]
    );
    ensure!(
        before["bob"].starts_with(r#"{"alice@localhost":{"#)
            && before["bob"].ends_with(r#""subscription":"both"}}"#),
        "bob's roster in Prosody: {}",
        before["bob"]
    );
    let data = prosody.stop().await?;

    // Into a fresh Starling.
    let mut server = TestServer::start().await?;
    server.terminate(Duration::from_secs(15)).await?;
    let data_arg = data.to_str().context("test paths are UTF-8")?;
    let imported = starling(
        &server,
        &["import-prosody", data_arg, "--host", "localhost"],
    )
    .await?;
    ensure!(
        imported.succeeded(),
        "import-prosody: {}",
        imported.describe()
    );
    ensure!(
        imported.stdout.contains("imported 3 account(s)")
            && imported
                .stdout
                .contains("3 account(s) came with SCRAM-SHA-1 keys only"),
        "import-prosody said: {}",
        imported.stdout
    );
    server.restart().await?;
    let addr = server.starttls_addr.to_string();
    assert_eq!(
        hash_report(&server).await?,
        "localhost: 3 account(s); lacking SCRAM-SHA-1: 0, lacking SCRAM-SHA-256: 3; offers \
         SCRAM-SHA-1 (scram_offer = \"complete\")"
    );
    assert_eq!(server.offered_mechanisms().await?, WITHOUT_SHA_256);

    // slixmpp's own choice logs in to every account and finds the roster it left in Prosody.
    for (user, password) in ACCOUNTS {
        let dump = roster_dump(&python, &addr, user, password, None).await?;
        ensure!(
            dump.mech.starts_with("SCRAM-SHA-1"),
            "{user} logged in with {} (expected SCRAM-SHA-1, the strongest offered)",
            dump.mech
        );
        assert_eq!(dump.roster, before[user], "the roster of {user}");
    }

    // One PLAIN login gives alice SCRAM-SHA-256 keys; the host waits for the others.
    login(&python, &addr, ACCOUNTS[0], "PLAIN").await?;
    wait_for_report(&server, "lacking SCRAM-SHA-256: 2;").await?;
    assert_eq!(server.offered_mechanisms().await?, WITHOUT_SHA_256);
    for account in &ACCOUNTS[1..] {
        login(&python, &addr, *account, "PLAIN").await?;
    }
    wait_for_report(&server, "lacking SCRAM-SHA-256: 0;").await?;
    server.wait_until_offered("SCRAM-SHA-256").await?;
    for account in ACCOUNTS {
        login(&python, &addr, account, "SCRAM-SHA-256").await?;
    }
    let dump = roster_dump(&python, &addr, ACCOUNTS[0].0, ACCOUNTS[0].1, None).await?;
    ensure!(
        dump.mech.starts_with("SCRAM-SHA-256"),
        "with every account upgraded slixmpp chose {}",
        dump.mech
    );
    assert_eq!(dump.roster, before["alice"]);
    Ok(())
}

#[tokio::test]
async fn debians_default_prosody_configuration_translates_to_a_valid_starling_toml()
-> anyhow::Result<()> {
    let debian = Path::new("/etc/prosody/prosody.cfg.lua");
    ensure!(
        debian.is_file(),
        "{} is missing: install the prosody package (`cargo xtask test` does)",
        debian.display()
    );
    let dir = scratch()?;
    let output = dir.path().join("starling.toml");
    let lines = import_config(debian, &output).await?;
    // Debian's file loads these; Starling has none of them yet, and says so.
    for expected in [
        "not translated: mod_carbons: XEP-0280 message carbons are not implemented yet",
        "not translated: mod_smacks: XEP-0198 stream management is not implemented yet",
        "not translated: mod_s2s: server-to-server federation is not implemented yet",
    ] {
        ensure!(
            lines.contains(expected),
            "missing {expected:?} in:\n{lines}"
        );
    }
    let toml = std::fs::read_to_string(&output)?;
    ensure!(toml.contains("hosts = [\"localhost\"]"), "{toml}");
    check_config(&output).await
}

#[tokio::test]
async fn a_multi_host_prosody_configuration_translates_to_a_valid_starling_toml()
-> anyhow::Result<()> {
    let dir = scratch()?;
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("prosody-config");
    starling_testkit::files::copy_dir(&fixture, dir.path())?;
    let certs = dir.path().join("certs");
    write_certificate(
        &certs.join("example.org.crt"),
        &certs.join("example.org.key"),
        "example.org",
    )?;
    let chat = certs.join("chat.example.net");
    write_certificate(
        &chat.join("fullchain.pem"),
        &chat.join("privkey.pem"),
        "chat.example.net",
    )?;
    let output = dir.path().join("starling.toml");
    let lines = import_config(&dir.path().join("prosody.cfg.lua"), &output).await?;
    for expected in [
        "not translated: host old.example.org: disabled in Prosody (enabled = false); not served",
        "not translated: modules.vcard: Prosody loads mod_vcard on example.org only",
        "not translated: mod_mam: XEP-0313 message archives are not implemented yet",
        "not translated: component conference.example.org (mod_muc): components are not implemented in Starling yet; not served",
        "not translated: component gateway.example.org (external, XEP-0114)",
        "http_ports: HTTP is not implemented in Starling yet",
        "limits.s2sin: only client connections (c2s) have a Starling equivalent",
        "not read, as it is not a constant (set what it does by hand): local domain = \"example.org\"",
        "import-prosody /var/lib/prosody",
        "wrote ",
    ] {
        ensure!(
            lines.contains(expected),
            "missing {expected:?} in:\n{lines}"
        );
    }
    let toml = std::fs::read_to_string(&output)?;
    for expected in [
        "hosts = [\"example.org\", \"chat.example.net\"]",
        "starttls = [\"127.0.0.1:5222\"]",
        "direct_tls = [\"127.0.0.1:5223\"]",
        "[tls.hosts.\"example.org\"]",
        "[tls.hosts.\"chat.example.net\"]",
        "scram_iterations = 12000",
        "auth_timeout_secs = 90",
        "max_stanza_bytes = 65536",
        "read_bytes_per_sec = 64000",
        "read_burst_bytes = 192000",
        "blocking = true",
        "last = true",
    ] {
        ensure!(toml.contains(expected), "missing {expected:?} in:\n{toml}");
    }
    check_config(&output).await?;
    // The output is not replaced without --force.
    let again = run_starling(&[
        "import-prosody-config",
        path_str(&dir.path().join("prosody.cfg.lua"))?,
        "-o",
        path_str(&output)?,
    ])
    .await?;
    ensure!(
        !again.succeeded() && again.stderr.contains("exists; pass --force"),
        "{}",
        again.describe()
    );
    Ok(())
}

/// `c2s.scram_offer = "always"` offers every hash although an account lacks one (its user
/// then fails SCRAM-SHA-256 with the right password); back to `"complete"`, the offer shrinks
/// again. Both on SIGHUP. Uses the Prosody data in `tests/prosody-data/`, where juliet has
/// SCRAM-SHA-1 keys only.
#[tokio::test]
async fn the_operator_may_offer_every_hash_anyway() -> anyhow::Result<()> {
    let mut server = TestServer::start().await?;
    server.terminate(Duration::from_secs(15)).await?;
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("prosody-data");
    let imported = starling(
        &server,
        &["import-prosody", path_str(&data)?, "--host", "localhost"],
    )
    .await?;
    ensure!(
        imported.succeeded(),
        "import-prosody: {}",
        imported.describe()
    );
    server.restart().await?;
    assert_eq!(server.offered_mechanisms().await?, WITHOUT_SHA_256);

    let config = std::fs::read_to_string(server.config_path())?;
    let set_offer = |offer: &str| {
        std::fs::write(
            server.config_path(),
            config.replace("[c2s]\n", &format!("[c2s]\nscram_offer = \"{offer}\"\n")),
        )
    };
    set_offer("always")?;
    server.signal("HUP")?;
    server.wait_until_offered("SCRAM-SHA-256").await?;
    assert_eq!(
        hash_report(&server).await?,
        "localhost: 2 account(s); lacking SCRAM-SHA-1: 0, lacking SCRAM-SHA-256: 1; offers \
         SCRAM-SHA-256, SCRAM-SHA-1 (scram_offer = \"always\")"
    );
    let mut juliet = XmppClient::connect_plain(server.starttls_addr).await?;
    juliet.open_stream(&server.domain).await?;
    juliet.starttls().await?;
    let failure = juliet
        .auth_scram(ScramMech::Sha256, "juliet", "balcony-r0se")
        .await?
        .err();
    assert_eq!(failure, Some(SaslFailure::condition("not-authorized")));

    set_offer("complete")?;
    server.signal("HUP")?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while server.offered_mechanisms().await? != WITHOUT_SHA_256 {
        ensure!(
            tokio::time::Instant::now() < deadline,
            "SCRAM-SHA-256 still offered 10 s after going back to \"complete\""
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

// ---- Prosody --------------------------------------------------------------------------------

/// A Prosody of our own: its configuration, data, certificate and log in a scratch
/// directory, listening for clients on one free loopback port; killed when dropped.
struct Prosody {
    dir: tempfile::TempDir,
    config: PathBuf,
    port: u16,
    child: Option<Child>,
    /// Prosody refuses to run as root: then it runs as the package's `prosody` user.
    as_root: bool,
}

impl Prosody {
    /// Writes the configuration and starts Prosody (in the foreground, `-F`).
    async fn start() -> anyhow::Result<Self> {
        for program in ["prosody", "prosodyctl"] {
            ensure!(
                have(program).await,
                "{program} is missing: install Debian's prosody package (`cargo xtask test` does)"
            );
        }
        let dir = tempfile::Builder::new()
            .prefix("starling-prosody-")
            .tempdir()?;
        let d = dir.path();
        std::fs::create_dir_all(d.join("data"))?;
        write_certificate(&d.join("cert.pem"), &d.join("key.pem"), "localhost")?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let config = d.join("prosody.cfg.lua");
        let p = d.display();
        std::fs::write(
            &config,
            format!(
                r#"-- Written by tests/tests/prosody_migration.rs.
pidfile = "{p}/prosody.pid"
data_path = "{p}/data"
log = {{ debug = "{p}/prosody.log" }}
modules_enabled = {{ "roster", "saslauth", "tls", "disco", "ping" }}
modules_disabled = {{ "s2s" }}
authentication = "internal_hashed"
c2s_require_encryption = true
c2s_ports = {{ {port} }}
c2s_interfaces = {{ "127.0.0.1" }}
s2s_ports = {{}}
http_ports = {{}}
https_ports = {{}}
component_ports = {{}}
ssl = {{ certificate = "{p}/cert.pem", key = "{p}/key.pem" }}
VirtualHost "localhost"
"#
            ),
        )?;
        let as_root = is_root().await;
        if as_root {
            // The package's user must own what Prosody reads and writes.
            let chown = run_program("chown", &["-R", "prosody:prosody", path_str(d)?]).await?;
            ensure!(chown.succeeded(), "chown: {}", chown.describe());
        }
        Ok(Self {
            dir,
            config,
            port,
            child: None,
            as_root,
        })
    }

    /// `prosodyctl register USER localhost PASSWORD`, before Prosody runs.
    async fn register(&self, user: &str, password: &str) -> anyhow::Result<()> {
        let config = path_str(&self.config)?;
        let run = run_program(
            "prosodyctl",
            &["--config", config, "register", user, "localhost", password],
        )
        .await?;
        ensure!(
            run.succeeded(),
            "prosodyctl register {user}: {}",
            run.describe()
        );
        Ok(())
    }

    /// Starts Prosody and waits until it accepts connections.
    async fn run(&mut self) -> anyhow::Result<()> {
        let mut command = if self.as_root {
            let mut command = Command::new("setpriv");
            command.args([
                "--reuid=prosody",
                "--regid=prosody",
                "--init-groups",
                "--",
                "prosody",
            ]);
            command
        } else {
            Command::new("prosody")
        };
        command
            .arg("--config")
            .arg(&self.config)
            .arg("-F")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(self.dir.path().join("stderr.log"))?)
            .kill_on_drop(true);
        let child = self
            .child
            .insert(command.spawn().context("starting prosody")?);
        let deadline = tokio::time::Instant::now() + PROSODY_START;
        loop {
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                .await
                .is_ok()
            {
                return Ok(());
            }
            if let Some(status) = child.try_wait()? {
                bail!(
                    "prosody exited with {status} while starting:\n{}",
                    self.log()
                );
            }
            if tokio::time::Instant::now() > deadline {
                bail!(
                    "prosody does not listen after {PROSODY_START:?}:\n{}",
                    self.log()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Stops Prosody (SIGTERM, then SIGKILL after 10 s) and returns its data directory.
    async fn stop(&mut self) -> anyhow::Result<PathBuf> {
        if let Some(mut child) = self.child.take() {
            if let Some(pid) = child.id() {
                let _ = run_program("kill", &["-TERM", &pid.to_string()]).await;
            }
            if tokio::time::timeout(Duration::from_secs(10), child.wait())
                .await
                .is_err()
            {
                child.kill().await?;
            }
        }
        Ok(self.dir.path().join("data"))
    }

    /// Prosody's log and standard error, for failure messages.
    fn log(&self) -> String {
        let read =
            |name: &str| std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default();
        let log = read("prosody.log");
        // The debug log is long; its end says what went wrong.
        let tail: Vec<&str> = log.lines().rev().take(60).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        format!(
            "{}\n--- stderr ---\n{}",
            tail.join("\n"),
            read("stderr.log")
        )
    }
}

// ---- helpers --------------------------------------------------------------------------------

/// What `roster_dump.py` printed: the mechanism slixmpp used and the roster, as JSON text
/// (keys sorted, so equal rosters are equal strings).
struct RosterDump {
    mech: String,
    roster: String,
}

/// Runs `tests/interop/<script>` with the venv's Python.
async fn run_script(
    python: &std::ffi::OsStr,
    script: &str,
    args: &[&str],
) -> anyhow::Result<ScriptRun> {
    let mut command = Command::new(python);
    command
        .arg(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("interop")
                .join(script),
        )
        .args(args);
    run_with_timeout(command, STEP_TIMEOUT).await
}

/// Logs in as `user` with slixmpp (its own choice of mechanism, or `mech`) and reads the
/// roster.
async fn roster_dump(
    python: &std::ffi::OsStr,
    addr: &str,
    user: &str,
    password: &str,
    mech: Option<&str>,
) -> anyhow::Result<RosterDump> {
    let run = session_script(python, "roster_dump.py", addr, (user, password), mech).await?;
    let line = run.stdout.lines().last().unwrap_or_default().to_owned();
    let value: serde_json::Value =
        serde_json::from_str(&line).with_context(|| format!("roster_dump.py printed {line:?}"))?;
    Ok(RosterDump {
        mech: value["mech"].as_str().unwrap_or_default().to_owned(),
        roster: value["roster"].to_string(),
    })
}

/// A login with slixmpp restricted to `mech`, which must succeed.
async fn login(
    python: &std::ffi::OsStr,
    addr: &str,
    account: (&str, &str),
    mech: &str,
) -> anyhow::Result<()> {
    session_script(python, "login.py", addr, account, Some(mech))
        .await
        .map(drop)
}

/// Runs a `session_probe.py` script as `user@localhost` at `addr` (`host:port`), with
/// `--mech` when given; it must succeed.
async fn session_script(
    python: &std::ffi::OsStr,
    script: &str,
    addr: &str,
    (user, password): (&str, &str),
    mech: Option<&str>,
) -> anyhow::Result<ScriptRun> {
    let (host, port) = addr.rsplit_once(':').context("host:port")?;
    let jid = format!("{user}@localhost");
    let mut args = vec![
        "--jid",
        &jid,
        "--password",
        password,
        "--host",
        host,
        "--port",
        port,
    ];
    if let Some(mech) = mech {
        args.extend(["--mech", mech]);
    }
    let run = run_script(python, script, &args).await?;
    ensure!(
        run.succeeded(),
        "{script} as {user} at {addr} (--mech {mech:?}): {}",
        run.describe()
    );
    Ok(run)
}

/// Runs the starling binary with `args`.
async fn run_starling(args: &[&str]) -> anyhow::Result<ScriptRun> {
    let mut command = Command::new(find_binary()?);
    command.args(args);
    run_with_timeout(command, STEP_TIMEOUT).await
}

/// `starling --config <the server's> args…`.
async fn starling(server: &TestServer, args: &[&str]) -> anyhow::Result<ScriptRun> {
    let config = path_str(server.config_path())?.to_owned();
    let mut all = vec!["--config", config.as_str()];
    all.extend_from_slice(args);
    run_starling(&all).await
}

/// `starling hash-report` for localhost, its one line.
async fn hash_report(server: &TestServer) -> anyhow::Result<String> {
    let run = starling(server, &["hash-report", "localhost"]).await?;
    ensure!(run.succeeded(), "hash-report: {}", run.describe());
    Ok(run.stdout.trim_end().to_owned())
}

/// Waits (up to 10 s: the upgrade is stored after the login answers) until `hash-report`
/// says `needle`.
async fn wait_for_report(server: &TestServer, needle: &str) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let report = hash_report(server).await?;
        if report.contains(needle) {
            return Ok(());
        }
        ensure!(
            tokio::time::Instant::now() < deadline,
            "hash-report still says {report:?}, not {needle:?}\n{}",
            server.log_tail(20)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `starling import-prosody-config FILE -o OUTPUT`, which must succeed; its standard output.
async fn import_config(file: &Path, output: &Path) -> anyhow::Result<String> {
    let run = run_starling(&[
        "import-prosody-config",
        path_str(file)?,
        "-o",
        path_str(output)?,
    ])
    .await?;
    ensure!(
        run.succeeded(),
        "import-prosody-config {}: {}",
        file.display(),
        run.describe()
    );
    Ok(run.stdout)
}

/// `starling --config FILE check-config`, which must accept it.
async fn check_config(file: &Path) -> anyhow::Result<()> {
    let run = run_starling(&["--config", path_str(file)?, "check-config"]).await?;
    ensure!(
        run.succeeded() && run.stdout.contains(": ok"),
        "check-config {}: {}\n--- the file ---\n{}",
        file.display(),
        run.describe(),
        std::fs::read_to_string(file).unwrap_or_default()
    );
    Ok(())
}

/// A self-signed certificate for `name` and its key, as PEM files.
fn write_certificate(certificate: &Path, key: &Path, name: &str) -> anyhow::Result<()> {
    let params = rcgen::CertificateParams::new(vec![name.to_owned()])?;
    let key_pair = rcgen::KeyPair::generate()?;
    let cert = params.self_signed(&key_pair)?;
    for path in [certificate, key] {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
    }
    std::fs::write(certificate, cert.pem())?;
    std::fs::write(key, key_pair.serialize_pem())?;
    Ok(())
}

fn scratch() -> anyhow::Result<tempfile::TempDir> {
    Ok(tempfile::Builder::new()
        .prefix("starling-prosody-config-")
        .tempdir()?)
}

fn path_str(path: &Path) -> anyhow::Result<&str> {
    path.to_str().context("test paths are UTF-8")
}

/// Runs `program args…` to its end (or its deadline).
async fn run_program(program: &str, args: &[&str]) -> anyhow::Result<ScriptRun> {
    let mut command = Command::new(program);
    command.args(args);
    run_with_timeout(command, STEP_TIMEOUT).await
}

async fn have(program: &str) -> bool {
    run_program("sh", &["-c", &format!("command -v {program}")])
        .await
        .is_ok_and(|run| run.succeeded())
}

async fn is_root() -> bool {
    run_program("id", &["-u"])
        .await
        .is_ok_and(|run| run.stdout.trim() == "0")
}
