//! `cargo xtask bench`: runs `starling-loadgen` against Starling and, with `--peer`, against
//! Prosody and ejabberd on the same machine in the same run, and writes the results.
//!
//! Every server gets a temporary data directory under the target directory, its own loopback
//! port, the same TLS certificate (the one Starling generates), STARTTLS required, PBKDF2 with
//! 4,096 iterations, and no rate limits, per-address connection limits or traffic shapers
//! ([`LIMITS_NOTE`]). The server runs on core 0 and the generator on core 1 when `taskset`
//! exists; both get the hard open-file limit as their soft limit through `prlimit`. Every
//! server started here is stopped by its pid.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};

use crate::steps::{Run, cargo};

/// What the benchmark turns off, the same way for every server.
pub const LIMITS_NOTE: &str = "Rate limits, per-address connection limits, unauthenticated-connection caps, \
the SASL failure delay and traffic shapers are off (set far above the load) for every server; \
idle pings are pushed past the run. PBKDF2 uses 4,096 iterations everywhere; STARTTLS is required \
and all servers present the same self-signed certificate.";

/// How long a server may take to start accepting connections.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a server may take to exit after SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(15);
/// The one password of every benchmark account.
const PASSWORD: &str = "bench-password";
/// Resources per account in the idle run: every server's default cap is at least 10.
const RESOURCES_PER_ACCOUNT: usize = 10;

/// A server to compare against.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
pub enum Peer {
    Prosody,
    Ejabberd,
}

impl Peer {
    fn name(self) -> &'static str {
        match self {
            Peer::Prosody => "prosody",
            Peer::Ejabberd => "ejabberd",
        }
    }
}

/// What to run.
pub struct Options {
    pub quick: bool,
    pub peers: Vec<Peer>,
    pub profile: bool,
    /// Build and run debug binaries (the smoke test inside `cargo xtask test`).
    pub debug: bool,
}

/// Sizes of one suite.
struct Suite {
    accounts: usize,
    idle_steps: Vec<usize>,
    scram_logins: usize,
    plain_logins: usize,
    login_concurrency: usize,
    /// (pairs, messages per pair, window)
    message_runs: Vec<(usize, usize, usize)>,
    time_limit_secs: u64,
}

impl Suite {
    fn new(quick: bool) -> Self {
        if quick {
            Suite {
                accounts: 20,
                idle_steps: vec![50, 100],
                scram_logins: 100,
                plain_logins: 50,
                login_concurrency: 10,
                message_runs: vec![(5, 200, 10), (2, 200, 1)],
                time_limit_secs: 60,
            }
        } else {
            Suite {
                accounts: 1500,
                idle_steps: vec![1000, 5000, 15000],
                scram_logins: 3000,
                plain_logins: 1000,
                login_concurrency: 50,
                message_runs: vec![(50, 2000, 10), (10, 3000, 1)],
                time_limit_secs: 300,
            }
        }
    }
}

/// One finished loadgen run.
struct RunResult {
    /// `login-scram`, `messages-50x10`, ...
    name: String,
    json: String,
    clean: bool,
}

impl RunResult {
    fn figure(&self, key: &str) -> Option<f64> {
        summary_number(&self.json, key)
    }
}

/// Everything measured on one server.
struct ServerResults {
    name: String,
    version: String,
    scram_mech: &'static str,
    runs: Vec<RunResult>,
}

impl ServerResults {
    fn figure(&self, run: &str, key: &str) -> Option<f64> {
        self.runs
            .iter()
            .find(|r| r.name == run)
            .and_then(|r| r.figure(key))
    }
}

/// A running server started here.
struct Server {
    name: &'static str,
    child: Option<Child>,
    /// The process whose CPU and memory count (beam.smp for ejabberd).
    pid: u32,
    addr: SocketAddr,
    /// Extra pids to stop afterwards (ejabberd's epmd when we started it).
    helpers: Vec<u32>,
}

impl Server {
    fn stop(mut self) -> anyhow::Result<()> {
        eprintln!("    stopping {} (pid {})", self.name, self.pid);
        stop_pid(self.pid)?;
        if let Some(child) = self.child.as_mut() {
            let _ = child.wait();
        }
        for pid in std::mem::take(&mut self.helpers) {
            stop_pid(pid)?;
        }
        Ok(())
    }
}

/// SIGTERM, wait, then SIGKILL: only the given pid.
fn stop_pid(pid: u32) -> anyhow::Result<()> {
    if !alive(pid) {
        return Ok(());
    }
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    let deadline = Instant::now() + STOP_TIMEOUT;
    while alive(pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    if alive(pid) {
        eprintln!("    pid {pid} ignored SIGTERM; sending SIGKILL");
        let _ = Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status();
    }
    Ok(())
}

/// Whether `pid` exists and is not a zombie.
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            let after = stat.get(stat.rfind(')')? + 2..)?.to_owned();
            Some(!after.starts_with('Z'))
        })
        .unwrap_or(false)
}

/// Binaries and places one bench run uses.
struct Context_ {
    starling: PathBuf,
    loadgen: PathBuf,
    work: PathBuf,
    nofile: Option<u64>,
    taskset: bool,
}

impl Context_ {
    /// `prlimit` and `taskset -c CORE` in front of `program`, as available.
    fn command(&self, core: u32, program: &Path) -> Command {
        let mut parts: Vec<String> = Vec::new();
        if let Some(n) = self.nofile {
            parts.extend(["prlimit".into(), format!("--nofile={n}:{n}"), "--".into()]);
        }
        if self.taskset {
            parts.extend(["taskset".into(), "-c".into(), core.to_string()]);
        }
        parts.push(program.display().to_string());
        let (first, rest) = parts.split_first().map_or(("", &[][..]), |(f, r)| (f, r));
        let mut command = Command::new(first);
        command.args(rest);
        command
    }
}

/// Builds the binaries and runs the whole benchmark.
pub fn run(root: &Path, options: &Options) -> anyhow::Result<()> {
    let suite = Suite::new(options.quick);
    let mut build = cargo(root);
    build.args(["build", "-p", "starling-server", "-p", "starling-loadgen"]);
    if !options.debug {
        build.arg("--release");
    }
    build.run()?;
    let target = crate::steps::target_directory(root)?;
    let bin_dir = target.join(if options.debug { "debug" } else { "release" });
    let work = target.join("xtask").join("bench");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work)?;
    let context = Context_ {
        starling: bin_dir.join("starling"),
        loadgen: bin_dir.join("starling-loadgen"),
        work: work.clone(),
        nofile: hard_nofile(),
        taskset: have("taskset") && cores() >= 2,
    };
    std::fs::write(work.join("password"), PASSWORD)?;
    let load_before = loadavg();
    eprintln!(
        "    load average {load_before}; fd limit {:?}; taskset {}",
        context.nofile, context.taskset
    );

    let cert_dir = make_certificate(&work)?;
    let mut all = Vec::new();
    let starling = start_starling(&context, &suite, &cert_dir)?;
    let outcome = run_suite(&context, &suite, &starling, "starling", "SCRAM-SHA-256");
    let profile = if options.profile && outcome.is_ok() {
        Some(profile(&context, &starling))
    } else {
        None
    };
    starling.stop()?;
    all.push(ServerResults {
        name: "starling".into(),
        version: version_of(&context.starling, &["--version"]),
        scram_mech: "SCRAM-SHA-256",
        runs: outcome?,
    });
    for &peer in &options.peers {
        eprintln!("\n    --- peer {} ---", peer.name());
        let result = match peer {
            Peer::Prosody => run_prosody(&context, &suite, &cert_dir),
            Peer::Ejabberd => run_ejabberd(&context, &suite, &cert_dir),
        };
        match result {
            Ok(results) => all.push(results),
            Err(err) => eprintln!("    peer {} failed: {err:#}", peer.name()),
        }
    }
    let load_after = loadavg();

    let markdown = markdown(&all, &suite, options, &load_before, &load_after, &context);
    let json = results_json(&all, options, &load_before, &load_after);
    let (dir, stem) = if options.quick {
        (work.clone(), "quick".to_owned())
    } else {
        (root.join("bench").join("results"), date_stamp())
    };
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join(format!("{stem}.json")), json)?;
    let mut markdown = markdown;
    if let Some(profile) = profile {
        match profile {
            Ok(report) => {
                std::fs::write(dir.join(format!("{stem}-profile.md")), &report)?;
                markdown.push_str(&report);
            }
            Err(err) => {
                let _ = writeln!(markdown, "\nProfile failed: {err:#}");
            }
        }
    }
    std::fs::write(dir.join(format!("{stem}.md")), &markdown)?;
    {
        use std::io::Write as _;
        let mut stdout = std::io::stdout().lock();
        stdout.write_all(markdown.as_bytes())?;
        stdout.flush()?;
    }
    eprintln!("    wrote {}", dir.join(format!("{stem}.md")).display());

    let dirty: Vec<String> = all
        .iter()
        .flat_map(|s| {
            s.runs
                .iter()
                .filter(|r| !r.clean)
                .map(move |r| format!("{}/{}", s.name, r.name))
        })
        .collect();
    ensure!(
        dirty.is_empty(),
        "runs with errors or lost messages: {}",
        dirty.join(", ")
    );
    Ok(())
}

/// Runs every workload of `suite` against `server`.
fn run_suite(
    context: &Context_,
    suite: &Suite,
    server: &Server,
    name: &str,
    scram: &'static str,
) -> anyhow::Result<Vec<RunResult>> {
    let mut runs = Vec::new();
    // Idle first, while the server's heap is fresh.
    let steps: Vec<String> = suite.idle_steps.iter().map(usize::to_string).collect();
    runs.push(loadgen(
        context,
        suite,
        server,
        name,
        "idle",
        &["--mech", scram],
        &["idle", "--sessions", &steps.join(","), "--settle-secs", "3"],
    )?);
    runs.push(loadgen(
        context,
        suite,
        server,
        name,
        "login-scram",
        &["--mech", scram],
        &["login", "--count", &suite.scram_logins.to_string()],
    )?);
    runs.push(loadgen(
        context,
        suite,
        server,
        name,
        "login-plain",
        &["--mech", "PLAIN"],
        &["login", "--count", &suite.plain_logins.to_string()],
    )?);
    for &(pairs, per_pair, window) in &suite.message_runs {
        runs.push(loadgen(
            context,
            suite,
            server,
            name,
            &format!("messages-{pairs}x{window}"),
            &["--mech", scram],
            &[
                "messages",
                "--pairs",
                &pairs.to_string(),
                "--per-pair",
                &per_pair.to_string(),
                "--window",
                &window.to_string(),
            ],
        )?);
    }
    // Last: sessions with XEP-0198 stream management, then the same sessions hibernating
    // (their connections cut; the server keeps them for resumption, which would crowd the
    // runs above).
    runs.push(loadgen(
        context,
        suite,
        server,
        name,
        "idle-sm",
        &["--mech", scram],
        &[
            "idle",
            "--sessions",
            &steps.join(","),
            "--settle-secs",
            "3",
            "--stream-management",
            "--hibernate",
        ],
    )?);
    Ok(runs)
}

/// Runs the generator once and keeps its JSON.
fn loadgen(
    context: &Context_,
    suite: &Suite,
    server: &Server,
    server_name: &str,
    run_name: &str,
    global: &[&str],
    mode: &[&str],
) -> anyhow::Result<RunResult> {
    let json_path = context.work.join(format!("{server_name}-{run_name}.json"));
    let mut command = context.command(1, &context.loadgen);
    command
        .arg("--addr")
        .arg(server.addr.to_string())
        .arg("--accounts")
        .arg(suite.accounts.to_string())
        .arg("--password-file")
        .arg(context.work.join("password"))
        .arg("--concurrency")
        .arg(suite.login_concurrency.to_string())
        .arg("--time-limit-secs")
        .arg(suite.time_limit_secs.to_string())
        .arg("--server-pid")
        .arg(server.pid.to_string())
        .arg("--json")
        .arg(&json_path)
        .args(global)
        .args(mode);
    eprintln!("    [{server_name}] {run_name}");
    let status = command
        .status()
        .with_context(|| format!("running {}", context.loadgen.display()))?;
    let json = std::fs::read_to_string(&json_path)
        .with_context(|| format!("{run_name}: the generator wrote no report ({status})"))?;
    Ok(RunResult {
        name: run_name.to_owned(),
        json,
        clean: status.success(),
    })
}

/// One self-signed ECDSA P-256 certificate for `localhost`, made with `openssl`, that every
/// server presents (Erlang's pkix rejects rcgen's default subject, so ejabberd cannot use the
/// certificate Starling would generate).
fn make_certificate(work: &Path) -> anyhow::Result<PathBuf> {
    let dir = work.join("tls");
    std::fs::create_dir_all(&dir)?;
    Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .args(["-nodes", "-days", "30", "-subj", "/CN=localhost"])
        .args(["-addext", "subjectAltName=DNS:localhost", "-keyout"])
        .arg(dir.join("key.pem"))
        .arg("-out")
        .arg(dir.join("cert.pem"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .run()
        .context("making the benchmark certificate with openssl")?;
    Ok(dir)
}

/// Starts Starling with the benchmark config and creates the accounts.
fn start_starling(context: &Context_, suite: &Suite, cert_dir: &Path) -> anyhow::Result<Server> {
    let dir = context.work.join("starling");
    std::fs::create_dir_all(&dir)?;
    let config = dir.join("starling.toml");
    let connections = suite.idle_steps.iter().max().copied().unwrap_or(0) + 1000;
    std::fs::write(
        &config,
        format!(
            r#"hosts = ["localhost"]
data_dir = {data:?}

[listen]
starttls = ["127.0.0.1:0"]
direct_tls = []

[tls]
certificate = {cert:?}
private_key = {key:?}

[c2s]
require_encryption = true
scram_iterations = 4096
max_resources_per_account = {RESOURCES_PER_ACCOUNT}
idle_timeout_secs = 86400

[limits]
max_connections = {connections}
max_unauthenticated_connections_per_ip = {connections}
max_unauthenticated_connections = {connections}
read_bytes_per_sec_unauthenticated = 1000000000
read_bytes_per_sec = 1000000000
read_burst_bytes = 1000000000
auth_failure_delay_ms = 0
max_auth_failure_delay_ms = 0
"#,
            data = dir.join("data").display().to_string(),
            cert = cert_dir.join("cert.pem").display().to_string(),
            key = cert_dir.join("key.pem").display().to_string(),
        ),
    )?;
    let mut child = context
        .command(0, &context.starling)
        .arg("--config")
        .arg(&config)
        .env("STARLING_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(dir.join("starling.log"))?)
        .spawn()
        .context("starting starling")?;
    let pid = child.id();
    let stdout = child.stdout.take().context("no stdout pipe")?;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + START_TIMEOUT;
    let mut addr = None;
    // Bounded by the start deadline.
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok(line) = rx.recv_timeout(left) else {
            let _ = stop_pid(pid);
            bail!("starling did not print `ready` within {START_TIMEOUT:?}");
        };
        if let Some(rest) = line.strip_prefix("listening starttls ") {
            addr = Some(rest.trim().parse::<SocketAddr>()?);
        }
        if line.trim() == "ready" {
            break;
        }
    }
    let server = Server {
        name: "starling",
        child: Some(child),
        pid,
        addr: addr.context("starling printed no `listening starttls` line")?,
        helpers: Vec::new(),
    };
    eprintln!("    starling pid {pid} on {}", server.addr);
    let started = Instant::now();
    for i in 0..suite.accounts {
        let status = Command::new(&context.starling)
            .arg("--config")
            .arg(&config)
            .args(["adduser", &format!("bench{i}@localhost"), "--password-file"])
            .arg(context.work.join("password"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()?;
        if !status.success() {
            let _ = server.stop();
            bail!("starling adduser bench{i}@localhost failed with {status}");
        }
    }
    eprintln!(
        "    {} accounts created in {:.1}s",
        suite.accounts,
        started.elapsed().as_secs_f64()
    );
    Ok(server)
}

/// Prosody 0.12: `internal_hashed` keeps SCRAM-SHA-1 keys only, so its SCRAM run uses
/// SCRAM-SHA-1 (the cost of the exchange is the same shape).
fn run_prosody(
    context: &Context_,
    suite: &Suite,
    cert_dir: &Path,
) -> anyhow::Result<ServerResults> {
    ensure_package("prosody", "prosody")?;
    let dir = context.work.join("prosody");
    std::fs::create_dir_all(dir.join("data"))?;
    std::fs::copy(cert_dir.join("cert.pem"), dir.join("cert.pem"))?;
    std::fs::copy(cert_dir.join("key.pem"), dir.join("key.pem"))?;
    let port = free_port()?;
    let d = dir.display();
    let config = dir.join("prosody.cfg.lua");
    std::fs::write(
        &config,
        format!(
            r#"-- Written by `cargo xtask bench`.
pidfile = "{d}/prosody.pid"
data_path = "{d}/data"
log = {{ warn = "{d}/prosody.log" }}
certificates = "{d}"
modules_enabled = {{ "roster", "saslauth", "tls", "disco", "ping", "presence", "message", "iq" }}
modules_disabled = {{ "s2s", "offline" }}
-- mod_limits (traffic shaping) is not loaded.
authentication = "internal_hashed"
default_iteration_count = 4096
c2s_require_encryption = true
allow_unencrypted_plain_auth = false
c2s_ports = {{ {port} }}
c2s_interfaces = {{ "127.0.0.1" }}
c2s_direct_tls_ports = {{}}
s2s_ports = {{}}
http_ports = {{}}
https_ports = {{}}
component_ports = {{}}
network_backend = "epoll"
ssl = {{ certificate = "{d}/cert.pem", key = "{d}/key.pem" }}
VirtualHost "localhost"
"#
        ),
    )?;
    let as_root = is_root();
    if as_root {
        // Prosody refuses to run as root; it runs as its own user, which must own the files.
        Command::new("chown")
            .args(["-R", "prosody:prosody"])
            .arg(&dir)
            .run()?;
    }
    let started = Instant::now();
    for i in 0..suite.accounts {
        let status = Command::new("prosodyctl")
            .arg("--config")
            .arg(&config)
            .args(["register", &format!("bench{i}"), "localhost", PASSWORD])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()?;
        ensure!(status.success(), "prosodyctl register bench{i} failed");
    }
    eprintln!(
        "    {} accounts created with prosodyctl in {:.1}s",
        suite.accounts,
        started.elapsed().as_secs_f64()
    );
    let mut command = if as_root {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=prosody", "--regid=prosody", "--init-groups", "--"]);
        let inner = context.command(0, Path::new("prosody"));
        c.arg(inner.get_program()).args(inner.get_args());
        c
    } else {
        context.command(0, Path::new("prosody"))
    };
    let child = command
        .arg("--config")
        .arg(&config)
        .arg("-F")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("stderr.log"))?)
        .spawn()
        .context("starting prosody")?;
    let pid = child.id();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse()?;
    let server = Server {
        name: "prosody",
        child: Some(child),
        pid,
        addr,
        helpers: Vec::new(),
    };
    if let Err(err) = wait_for_port(addr, pid) {
        let _ = server.stop();
        return Err(err.context(format!("see {}", dir.join("prosody.log").display())));
    }
    eprintln!("    prosody pid {pid} on {addr}");
    let runs = run_suite(context, suite, &server, "prosody", "SCRAM-SHA-1");
    server.stop()?;
    Ok(ServerResults {
        name: "prosody".into(),
        version: version_of(Path::new("prosodyctl"), &["about"])
            .lines()
            .find(|l| l.contains("Prosody"))
            .unwrap_or("prosody")
            .trim()
            .to_owned(),
        scram_mech: "SCRAM-SHA-1",
        runs: runs?,
    })
}

/// ejabberd: see `ejabberd_config` for its settings. Accounts are created with
/// `ejabberdctl register` through one running node.
fn run_ejabberd(
    context: &Context_,
    suite: &Suite,
    cert_dir: &Path,
) -> anyhow::Result<ServerResults> {
    ensure_package("ejabberdctl", "ejabberd")?;
    let dir = context.work.join("ejabberd");
    for sub in ["db", "logs"] {
        std::fs::create_dir_all(dir.join(sub))?;
    }
    // ejabberd wants the key and certificate in one PEM file.
    let pem = std::fs::read_to_string(cert_dir.join("key.pem"))?
        + &std::fs::read_to_string(cert_dir.join("cert.pem"))?;
    std::fs::write(dir.join("server.pem"), pem)?;
    let port = free_port()?;
    let node = format!("bench{}@localhost", std::process::id());
    let d = dir.display().to_string();
    std::fs::write(dir.join("ejabberd.yml"), ejabberd_config(&d, port))?;
    std::fs::write(
        dir.join("ejabberdctl.cfg"),
        format!(
            "ERLANG_NODE={node}\nERL_OPTIONS=\"-env ERL_CRASH_DUMP_BYTES 0\"\n\
             EJABBERD_CONFIG_PATH={d}/ejabberd.yml\nEJABBERD_PID_PATH={d}/ejabberd.pid\n{}",
            // When ejabberdctl is not started as root (see `ctl` below), raise the limit here
            // too; it is sourced before the node starts.
            context
                .nofile
                .map_or_else(String::new, |n| format!("ulimit -n {n}\n"))
        ),
    )?;
    if is_root() {
        Command::new("chown")
            .args(["-R", "ejabberd:ejabberd"])
            .arg(&dir)
            .run()?;
    }
    let epmd_before = pids_named("epmd");
    // As root, ejabberdctl would start the node through `su ejabberd`, whose PAM session
    // resets the open-file limit to 1,024; the BEAM sizes its port table from that limit at
    // start, so raising it afterwards does not help and the node stops accepting near 1,000
    // connections. Switching user with `setpriv` (no PAM) under `prlimit` keeps our limit;
    // ejabberdctl then sees it already runs as `ejabberd` and starts the node directly.
    let ctl = |args: &[&str]| -> Command {
        let mut c = if is_root() {
            let mut c = Command::new("prlimit");
            if let Some(n) = context.nofile {
                c.arg(format!("--nofile={n}:{n}"));
            }
            c.args([
                "--",
                "setpriv",
                "--reuid=ejabberd",
                "--regid=ejabberd",
                "--init-groups",
                "ejabberdctl",
            ]);
            // The Erlang cookie goes in HOME; keep it in the scratch directory ejabberd owns.
            c.env("HOME", &d);
            c
        } else {
            Command::new("ejabberdctl")
        };
        c.args(["--config-dir", &d])
            .args(["--ctl-config", &format!("{d}/ejabberdctl.cfg")])
            .args(["--config", &format!("{d}/ejabberd.yml")])
            .args(["--spool", &format!("{d}/db")])
            .args(["--logs", &format!("{d}/logs")])
            .args(args);
        c
    };
    // `ejabberdctl start` detaches; the server process is the beam.smp running our node.
    let mut start = if context.taskset {
        let mut c = Command::new("taskset");
        c.args(["-c", "0"]);
        let inner = ctl(&["start"]);
        c.arg(inner.get_program()).args(inner.get_args());
        for (key, value) in inner.get_envs() {
            if let Some(value) = value {
                c.env(key, value);
            }
        }
        c
    } else {
        ctl(&["start"])
    };
    if let Some(n) = context.nofile {
        start.env("ERL_MAX_PORTS", (n + 1000).to_string());
    }
    start.stdout(Stdio::null()).run()?;
    let deadline = Instant::now() + START_TIMEOUT;
    let pid = loop {
        if let Some(pid) = pids_with_arg("beam.smp", &node).first() {
            break *pid;
        }
        if Instant::now() > deadline {
            bail!("ejabberd's beam.smp for {node} did not appear");
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let helpers: Vec<u32> = pids_named("epmd")
        .into_iter()
        .filter(|p| !epmd_before.contains(p))
        .collect();
    if let Some(n) = context.nofile {
        let _ = Command::new("prlimit")
            .args([format!("--nofile={n}:{n}"), format!("--pid={pid}")])
            .status();
    }
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse()?;
    let server = Server {
        name: "ejabberd",
        child: None,
        pid,
        addr,
        helpers,
    };
    if let Err(err) = wait_for_port(addr, pid) {
        let _ = server.stop();
        return Err(err);
    }
    let _ = ctl(&["started"]).stdout(Stdio::null()).status();
    eprintln!("    ejabberd pid {pid} on {addr}");
    let started = Instant::now();
    // Accounts through the admin tool, a few at a time (each call starts an Erlang VM).
    let mut pending: Vec<(usize, Child)> = Vec::new();
    let mut failed = Vec::new();
    for i in 0..suite.accounts {
        pending.push((
            i,
            ctl(&["register", &format!("bench{i}"), "localhost", PASSWORD])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()?,
        ));
        if pending.len() >= 8 || i + 1 == suite.accounts {
            for (i, mut child) in pending.drain(..) {
                if !child.wait()?.success() {
                    failed.push(i);
                }
            }
        }
    }
    // An ejabberdctl call now and then fails under the parallel load (its VM did not reach the
    // node in time); such accounts are retried one at a time, and one whose first attempt did
    // land after all is recognised with `check_account`.
    let succeeds = |ctl_args: &[&str]| -> anyhow::Result<bool> {
        Ok(ctl(ctl_args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()?
            .success())
    };
    for i in failed {
        let user = format!("bench{i}");
        let mut created = false;
        for _attempt in 0..3 {
            if succeeds(&["check_account", &user, "localhost"])?
                || succeeds(&["register", &user, "localhost", PASSWORD])?
            {
                created = true;
                break;
            }
        }
        if !created {
            let _ = server.stop();
            bail!("ejabberdctl register {user} failed three more times");
        }
    }
    eprintln!(
        "    {} accounts created with ejabberdctl in {:.1}s",
        suite.accounts,
        started.elapsed().as_secs_f64()
    );
    let runs = run_suite(context, suite, &server, "ejabberd", "SCRAM-SHA-256");
    let _ = ctl(&["stop"]).stdout(Stdio::null()).status();
    server.stop()?;
    Ok(ServerResults {
        name: "ejabberd".into(),
        version: format!(
            "ejabberd {}",
            package_version("ejabberd").unwrap_or_default()
        ),
        scram_mech: "SCRAM-SHA-256",
        runs: runs?,
    })
}

/// ejabberd.yml: STARTTLS required, SCRAM-SHA-256 keys with 4,096 iterations (so PLAIN logins
/// derive the key like the others), no shapers, a listen backlog of 4,096 (its default of 5
/// stalls concurrent connects), at most 10 sessions per account like everyone else.
fn ejabberd_config(dir: &str, port: u16) -> String {
    format!(
        r#"# Written by `cargo xtask bench`.
hosts:
  - localhost
loglevel: warning
certfiles:
  - "{dir}/server.pem"
auth_method: internal
auth_password_format: scram
auth_scram_hash: sha256
default_db: mnesia
listen:
  -
    port: {port}
    ip: "127.0.0.1"
    module: ejabberd_c2s
    starttls_required: true
    backlog: 4096
    max_stanza_size: 262144
acl:
  local:
    user_regexp: ""
access_rules:
  local:
    allow: local
  c2s:
    allow: all
shaper_rules:
  max_user_sessions: {RESOURCES_PER_ACCOUNT}
  c2s_shaper: none
modules:
  mod_disco: {{}}
  mod_ping: {{}}
  mod_roster: {{}}
"#
    )
}

/// Profiles Starling during a short messages run with `perf record` and summarises it.
fn profile(context: &Context_, server: &Server) -> anyhow::Result<String> {
    ensure!(have("perf"), "perf is not installed");
    let data = context.work.join("perf.data");
    let mut perf = Command::new("perf")
        .args(["record", "-F", "999", "-g", "-o"])
        .arg(&data)
        .args(["-p", &server.pid.to_string(), "--", "sleep", "8"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting perf record")?;
    std::thread::sleep(Duration::from_millis(500));
    let suite = Suite::new(false);
    let run = loadgen(
        context,
        &suite,
        server,
        "starling",
        "profile-messages",
        &["--mech", "SCRAM-SHA-256"],
        &[
            "messages",
            "--pairs",
            "20",
            "--per-pair",
            "5000",
            "--window",
            "10",
        ],
    );
    let status = perf.wait()?;
    ensure!(status.success(), "perf record exited with {status}");
    let report = Command::new("perf")
        .args([
            "report",
            "--stdio",
            "--no-children",
            "--percent-limit",
            "1.5",
        ])
        .args(["--sort", "symbol", "-g", "none", "-i"])
        .arg(&data)
        .stderr(Stdio::null())
        .output()
        .context("running perf report")?;
    let text = String::from_utf8_lossy(&report.stdout);
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .take(25)
        .collect();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\n## Profile: Starling during messages (20 pairs, window 10)\n"
    );
    if let Ok(run) = run {
        let _ = writeln!(
            out,
            "{} messages/s during the profile (perf at 999 Hz slows it).\n",
            fmt(run.figure("messages_per_sec"), 0)
        );
    }
    let _ = writeln!(
        out,
        "Self time by symbol (`perf report --no-children --sort symbol`):\n\n```text"
    );
    for line in lines {
        let _ = writeln!(out, "{line}");
    }
    let _ = writeln!(out, "```");
    Ok(out)
}

// ---- reporting ----

/// Rows of the markdown table: label, run, summary key, decimals, whether higher is better.
const ROWS: &[(&str, &str, &str, usize, bool)] = &[
    ("logins/s, SCRAM", "login-scram", "logins_per_sec", 0, true),
    ("  login p99 ms", "login-scram", "p99_ms", 1, false),
    (
        "  server CPU µs/login",
        "login-scram",
        "server_cpu_us_per_op",
        0,
        false,
    ),
    ("logins/s, PLAIN", "login-plain", "logins_per_sec", 0, true),
    ("  login p99 ms", "login-plain", "p99_ms", 1, false),
    (
        "  server CPU µs/login",
        "login-plain",
        "server_cpu_us_per_op",
        0,
        false,
    ),
];

fn markdown(
    all: &[ServerResults],
    suite: &Suite,
    options: &Options,
    load_before: &str,
    load_after: &str,
    context: &Context_,
) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# Starling benchmark{}\n",
        if options.quick { " (quick)" } else { "" }
    );
    let _ = writeln!(
        out,
        "Date {}; {} cores; load average before `{}`, after `{}`; server on core 0 and \
         generator on core 1: {}; open-file limit {}.\n",
        date_stamp(),
        cores(),
        load_before,
        load_after,
        if context.taskset {
            "yes"
        } else {
            "no (taskset missing or one core)"
        },
        context
            .nofile
            .map_or_else(|| "unchanged".to_owned(), |n| n.to_string())
    );
    for server in all {
        let _ = writeln!(
            out,
            "- {}: {} (SCRAM run: {})",
            server.name, server.version, server.scram_mech
        );
    }
    let _ = writeln!(out, "\n{LIMITS_NOTE}\n");
    let mut rows: Vec<(String, String, String, usize, bool)> = ROWS
        .iter()
        .map(|&(l, r, k, d, h)| (l.to_owned(), r.to_owned(), k.to_owned(), d, h))
        .collect();
    for &(pairs, per_pair, window) in &suite.message_runs {
        let run = format!("messages-{pairs}x{window}");
        rows.push((
            format!("messages/s, {pairs} pairs × {per_pair}, window {window}"),
            run.clone(),
            "messages_per_sec".into(),
            0,
            true,
        ));
        rows.push(("  p50 ms".into(), run.clone(), "p50_ms".into(), 2, false));
        rows.push(("  p99 ms".into(), run.clone(), "p99_ms".into(), 2, false));
        rows.push((
            "  server CPU µs/message".into(),
            run,
            "server_cpu_us_per_op".into(),
            1,
            false,
        ));
    }
    for &n in &suite.idle_steps {
        rows.push((
            format!("idle kB/session at {n}"),
            "idle".into(),
            format!("kb_per_session@{n}"),
            1,
            false,
        ));
        rows.push((
            format!("  sessions open at {n}"),
            "idle".into(),
            format!("open@{n}"),
            0,
            true,
        ));
    }
    if let Some(&n) = suite.idle_steps.last() {
        rows.push((
            format!("idle kB/session at {n}, stream management on"),
            "idle-sm".into(),
            format!("kb_per_session@{n}"),
            1,
            false,
        ));
        rows.push((
            format!("  kB/session, {n} hibernating (connections cut)"),
            "idle-sm".into(),
            "kb_per_hibernated_session".into(),
            1,
            false,
        ));
    }
    let mut header = "| metric |".to_owned();
    let mut rule = "|---|".to_owned();
    for server in all {
        let _ = write!(header, " {} |", server.name);
        rule.push_str("---:|");
    }
    for server in all.iter().skip(1) {
        let _ = write!(header, " starling / {} |", server.name);
        rule.push_str("---:|");
    }
    let _ = writeln!(out, "{header}\n{rule}");
    for (label, run, key, decimals, _) in &rows {
        let mut line = format!("| {label} |");
        let values: Vec<Option<f64>> = all.iter().map(|s| s.figure(run, key)).collect();
        for value in &values {
            let _ = write!(line, " {} |", fmt(*value, *decimals));
        }
        for value in values.iter().skip(1) {
            let ratio = match (values.first().copied().flatten(), value) {
                (Some(ours), Some(theirs)) if *theirs > 0.0 => format!("{:.2}×", ours / theirs),
                _ => "-".to_owned(),
            };
            let _ = write!(line, " {ratio} |");
        }
        let _ = writeln!(out, "{line}");
    }
    let _ = writeln!(out, "\nErrors and lost messages per run:\n");
    for server in all {
        let mut parts = Vec::new();
        for run in &server.runs {
            parts.push(format!(
                "{} {}/{}",
                run.name,
                fmt(run.figure("errors"), 0),
                fmt(run.figure("lost"), 0)
            ));
        }
        let _ = writeln!(out, "- {}: {}", server.name, parts.join(", "));
    }
    out
}

fn fmt(value: Option<f64>, decimals: usize) -> String {
    value.map_or_else(|| "-".to_owned(), |v| format!("{v:.decimals$}"))
}

fn results_json(
    all: &[ServerResults],
    options: &Options,
    load_before: &str,
    load_after: &str,
) -> String {
    let mut servers = BTreeMap::new();
    for server in all {
        let runs: Vec<String> = server
            .runs
            .iter()
            .map(|r| format!("{}: {}", quote(&r.name), r.json.trim()))
            .collect();
        servers.insert(
            server.name.clone(),
            format!(
                "{{\"version\": {}, \"scram_mechanism\": {}, \"runs\": {{{}}}}}",
                quote(&server.version),
                quote(server.scram_mech),
                runs.join(", ")
            ),
        );
    }
    let servers: Vec<String> = servers
        .iter()
        .map(|(name, body)| format!("{}: {body}", quote(name)))
        .collect();
    format!(
        "{{\"date\": {}, \"quick\": {}, \"cores\": {}, \"loadavg_before\": {}, \
         \"loadavg_after\": {}, \"settings\": {}, \"servers\": {{{}}}}}\n",
        quote(&date_stamp()),
        options.quick,
        cores(),
        quote(load_before),
        quote(load_after),
        quote(LIMITS_NOTE),
        servers.join(", ")
    )
}

/// A JSON string literal.
fn quote(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A number from the generator's flat `"summary"` object.
fn summary_number(json: &str, key: &str) -> Option<f64> {
    let summary = json.get(json.find("\"summary\"")?..)?;
    let pattern = format!("\"{key}\":");
    let rest = summary.get(summary.find(&pattern)? + pattern.len()..)?;
    let rest = rest.trim_start();
    let end = rest
        .find(|c: char| !(c.is_ascii_digit() || matches!(c, '.' | '-' | 'e' | 'E' | '+')))
        .unwrap_or(rest.len());
    rest.get(..end)?.parse().ok()
}

// ---- system helpers ----

fn have(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .ok()
        .is_some_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

/// The hard open-file limit, used as soft limit for server and generator (needs `prlimit`).
fn hard_nofile() -> Option<u64> {
    if !have("prlimit") {
        return None;
    }
    let out = Command::new("sh")
        .args(["-c", "ulimit -Hn"])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    if text == "unlimited" {
        Some(1_048_576)
    } else {
        text.parse().ok()
    }
}

fn date_stamp() -> String {
    Command::new("date")
        .args(["-u", "+%Y-%m-%dT%H%M%SZ"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|_| "unknown-date".to_owned())
}

fn version_of(program: &Path, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

fn package_version(package: &str) -> Option<String> {
    let out = Command::new("dpkg-query")
        .args(["-W", "-f=${Version}", package])
        .output()
        .ok()?;
    Some(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// Installs the Debian `package` (as root, with apt-get) unless `program` is on the PATH;
/// the bench's peers and the Prosody migration tests need it.
pub fn ensure_package(program: &str, package: &str) -> anyhow::Result<()> {
    if have(program) {
        return Ok(());
    }
    ensure!(
        is_root(),
        "{program} is missing; install the `{package}` package"
    );
    eprintln!("    installing {package}");
    Command::new("apt-get")
        .args(["install", "-y", package])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .run()?;
    // The package may start a system instance; the benchmark and the tests use their own.
    if package == "prosody" {
        let _ = Command::new("service").args(["prosody", "stop"]).status();
    }
    Ok(())
}

/// A loopback port that was free a moment ago.
fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Waits until `addr` accepts connections while `pid` lives.
fn wait_for_port(addr: SocketAddr, pid: u32) -> anyhow::Result<()> {
    let deadline = Instant::now() + START_TIMEOUT;
    // Bounded by the start deadline.
    while Instant::now() < deadline {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        ensure!(alive(pid), "the server (pid {pid}) exited during start-up");
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!("nothing listens on {addr} after {START_TIMEOUT:?}")
}

/// Pids of processes whose executable name is `name`.
fn pids_named(name: &str) -> Vec<u32> {
    scan_proc(|comm, _| comm == name)
}

/// Pids of processes named `name` with an argument containing `needle`.
fn pids_with_arg(name: &str, needle: &str) -> Vec<u32> {
    scan_proc(|comm, cmdline| comm == name && cmdline.contains(needle))
}

fn scan_proc(matches: impl Fn(&str, &str) -> bool) -> Vec<u32> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return found;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline"))
            .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
            .unwrap_or_default();
        if matches(comm.trim(), &cmdline) {
            found.push(pid);
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::{quote, summary_number};

    #[test]
    fn reads_numbers_from_the_summary_only() {
        let json = r#"{"errors": {"count": 3}, "summary": {"errors": 0.0, "kb_per_session@15000": 7.5, "p99_ms": 1e-3}}"#;
        assert_eq!(summary_number(json, "errors"), Some(0.0));
        assert_eq!(summary_number(json, "kb_per_session@15000"), Some(7.5));
        assert_eq!(summary_number(json, "p99_ms"), Some(0.001));
        assert_eq!(summary_number(json, "missing"), None);
    }

    #[test]
    fn quotes_json_strings() {
        assert_eq!(quote("a\"b\\c\n"), r#""a\"b\\c\n""#);
    }
}
