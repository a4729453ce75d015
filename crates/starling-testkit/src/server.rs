//! Launches the real `starling` binary in a scratch directory, one per test.
//!
//! Each server gets its own temporary data directory, config file and ports (port 0 in the
//! config; the server prints what it bound). Its stderr goes to `starling.log` in the data
//! directory so a failing test can show it. Dropping the [`TestServer`] kills the process.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::time::timeout;

/// How long the server may take to print `ready`, and an account command to finish.
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(20);

/// Server settings a test may change; [`Default`] gives the values of a normal deployment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerOptions {
    /// `hosts`: the domains served; the first is [`TestServer::domain`].
    pub hosts: Vec<String>,
    /// `c2s.require_encryption`: STARTTLS is required before SASL.
    pub require_encryption: bool,
    /// `c2s.allow_plain_without_tls`: PLAIN is offered on unencrypted streams.
    pub allow_plain_without_tls: bool,
    /// `c2s.max_auth_failures`: SASL failures tolerated on one connection.
    pub max_auth_failures: u32,
    /// `limits.max_stanza_bytes` once authenticated.
    pub max_stanza_bytes: usize,
    /// `limits.max_stanza_bytes_unauthenticated`.
    pub max_stanza_bytes_unauthenticated: usize,
    /// `limits.max_depth`: element nesting limit.
    pub max_depth: u32,
    /// `limits.max_attributes_per_element`.
    pub max_attributes_per_element: u32,
    /// `c2s.conflict_policy`: `kick_old` or `refuse_new`.
    pub conflict_policy: String,
    /// `c2s.max_resources_per_account`.
    pub max_resources_per_account: usize,
    /// `limits.outbound_queue_stanzas`.
    pub outbound_queue_stanzas: usize,
    /// `limits.outbound_queue_grace_secs`.
    pub outbound_queue_grace_secs: u64,
    /// `limits.max_unauthenticated_connections_per_ip`.
    pub max_unauthenticated_connections_per_ip: usize,
    /// `limits.max_sessions_per_ip` (0: no cap).
    pub max_sessions_per_ip: usize,
    /// `limits.max_unauthenticated_connections`.
    pub max_unauthenticated_connections: usize,
    /// `limits.read_bytes_per_sec_unauthenticated`.
    pub read_bytes_per_sec_unauthenticated: u64,
    /// `limits.read_bytes_per_sec`.
    pub read_bytes_per_sec: u64,
    /// `limits.read_burst_bytes`.
    pub read_burst_bytes: u64,
    /// `limits.auth_failure_delay_ms`.
    pub auth_failure_delay_ms: u64,
    /// `limits.max_auth_failure_delay_ms`.
    pub max_auth_failure_delay_ms: u64,
    /// `limits.max_directed_presences`.
    pub max_directed_presences: usize,
    /// `c2s.auth_timeout_secs`.
    pub auth_timeout_secs: u64,
    /// `c2s.idle_timeout_secs`.
    pub idle_timeout_secs: u64,
    /// `c2s.idle_ping_timeout_secs`.
    pub idle_ping_timeout_secs: u64,
    /// `c2s.scram_iterations`: PBKDF2 iterations for passwords set from now on.
    pub scram_iterations: u32,
    /// `STARLING_LOG` for the server process (a tracing filter); `None` keeps its default.
    pub log_filter: Option<String>,
    /// `storage.postgres_url` with `storage.backend = "postgres"`; `None` keeps the embedded
    /// SQLite database in the data directory.
    pub postgres_url: Option<String>,
    /// Raw TOML lines appended to the generated `[limits]` section, for limits the fields
    /// above do not cover (`max_roster_items = 5`, one per line).
    pub extra_limits: String,
    /// Raw TOML appended to the generated file: whole sections the fields above do not cover
    /// (`[metrics]`, `[admin]`, `[tls]`, `[log]`, …). Must not repeat a section written above
    /// (`[listen]`, `[c2s]`, `[limits]`, and `[storage]` when `postgres_url` is set).
    pub extra_toml: String,
    /// `[archive]` keys and their TOML values, set by `archive.<key>` options.
    pub archive: Vec<(String, String)>,
    /// Keep the server's data in this subdirectory of the scratch directory, which the server
    /// creates itself (so a test sees the mode it gives its data directory); `None`: the
    /// scratch directory itself. The config and the log stay in the scratch directory, and
    /// [`TestServer::cert_path`] assumes `None`.
    pub data_subdir: Option<String>,
    /// `listen.direct_tls`'s one address; `"127.0.0.1:0"` by default. A test can give an
    /// IPv4-mapped IPv6 address (`"[::ffff:127.0.0.1]:0"`), which still takes only loopback
    /// connections but sees IPv4 peers as `::ffff:a.b.c.d`.
    pub direct_tls_listen: String,
    /// Keys of other sections, set as `section.key=value` (`stream_management.resume_window_secs=2`):
    /// each section is written once with its keys, values as given (TOML literals).
    pub sections: std::collections::BTreeMap<String, Vec<(String, String)>>,
}

impl Default for ServerOptions {
    fn default() -> Self {
        Self {
            hosts: vec!["localhost".to_owned()],
            require_encryption: true,
            allow_plain_without_tls: false,
            max_auth_failures: 3,
            max_stanza_bytes: 262_144,
            max_stanza_bytes_unauthenticated: 16_384,
            max_depth: 32,
            max_attributes_per_element: 64,
            conflict_policy: "kick_old".to_owned(),
            max_resources_per_account: 10,
            outbound_queue_stanzas: 512,
            outbound_queue_grace_secs: 5,
            max_unauthenticated_connections_per_ip: 32,
            max_sessions_per_ip: 0,
            max_unauthenticated_connections: 1000,
            read_bytes_per_sec_unauthenticated: 16_384,
            read_bytes_per_sec: 262_144,
            read_burst_bytes: 65_536,
            auth_failure_delay_ms: 250,
            max_auth_failure_delay_ms: 8000,
            max_directed_presences: 1000,
            auth_timeout_secs: 60,
            idle_timeout_secs: 300,
            idle_ping_timeout_secs: 30,
            scram_iterations: 4096,
            log_filter: None,
            postgres_url: None,
            extra_limits: String::new(),
            extra_toml: String::new(),
            archive: Vec::new(),
            data_subdir: None,
            direct_tls_listen: "127.0.0.1:0".to_owned(),
            sections: std::collections::BTreeMap::new(),
        }
    }
}

impl ServerOptions {
    /// Sets one option by its config key (the field name), as case files do.
    pub fn set(&mut self, key: &str, value: &str) -> anyhow::Result<()> {
        fn parse<T: std::str::FromStr>(key: &str, value: &str) -> anyhow::Result<T> {
            value
                .parse()
                .map_err(|_| anyhow!("option {key}: cannot parse {value:?}"))
        }
        match key {
            "hosts" => {
                self.hosts = value
                    .split(',')
                    .map(|host| host.trim().to_owned())
                    .collect()
            }
            "require_encryption" => self.require_encryption = parse(key, value)?,
            "allow_plain_without_tls" => self.allow_plain_without_tls = parse(key, value)?,
            "max_auth_failures" => self.max_auth_failures = parse(key, value)?,
            "max_stanza_bytes" => self.max_stanza_bytes = parse(key, value)?,
            "max_stanza_bytes_unauthenticated" => {
                self.max_stanza_bytes_unauthenticated = parse(key, value)?
            }
            "max_depth" => self.max_depth = parse(key, value)?,
            "max_attributes_per_element" => self.max_attributes_per_element = parse(key, value)?,
            "conflict_policy" => match value {
                "kick_old" | "refuse_new" => self.conflict_policy = value.to_owned(),
                _ => {
                    bail!("option conflict_policy: expected kick_old or refuse_new, got {value:?}")
                }
            },
            "max_resources_per_account" => self.max_resources_per_account = parse(key, value)?,
            "outbound_queue_stanzas" => self.outbound_queue_stanzas = parse(key, value)?,
            "outbound_queue_grace_secs" => self.outbound_queue_grace_secs = parse(key, value)?,
            "max_unauthenticated_connections_per_ip" => {
                self.max_unauthenticated_connections_per_ip = parse(key, value)?
            }
            "max_sessions_per_ip" => self.max_sessions_per_ip = parse(key, value)?,
            "max_unauthenticated_connections" => {
                self.max_unauthenticated_connections = parse(key, value)?
            }
            "read_bytes_per_sec_unauthenticated" => {
                self.read_bytes_per_sec_unauthenticated = parse(key, value)?
            }
            "read_bytes_per_sec" => self.read_bytes_per_sec = parse(key, value)?,
            "read_burst_bytes" => self.read_burst_bytes = parse(key, value)?,
            "auth_failure_delay_ms" => self.auth_failure_delay_ms = parse(key, value)?,
            "max_auth_failure_delay_ms" => self.max_auth_failure_delay_ms = parse(key, value)?,
            "max_directed_presences" => self.max_directed_presences = parse(key, value)?,
            "auth_timeout_secs" => self.auth_timeout_secs = parse(key, value)?,
            "idle_timeout_secs" => self.idle_timeout_secs = parse(key, value)?,
            "idle_ping_timeout_secs" => self.idle_ping_timeout_secs = parse(key, value)?,
            "scram_iterations" => self.scram_iterations = parse(key, value)?,
            _ if key.starts_with("archive.") => {
                let name = &key["archive.".len()..];
                if name.is_empty() || !name.chars().all(|c| c.is_ascii_lowercase() || c == '_') {
                    bail!("option {key}: not an [archive] key");
                }
                // Numbers and booleans as written; anything else as a TOML string.
                let is_bare = value.parse::<i64>().is_ok() || value == "true" || value == "false";
                let value = if is_bare {
                    value.to_owned()
                } else {
                    format!("{value:?}")
                };
                self.archive.push((name.to_owned(), value));
            }
            _ => match key.split_once('.') {
                Some((section, name))
                    if !["listen", "c2s", "limits", "storage"].contains(&section)
                        && !section.is_empty()
                        && !name.is_empty() =>
                {
                    self.sections
                        .entry(section.to_owned())
                        .or_default()
                        .push((name.to_owned(), value.to_owned()));
                }
                _ => bail!("unknown server option {key:?}"),
            },
        }
        Ok(())
    }

    /// The TOML config for a server keeping its data in `data_dir`.
    pub fn to_toml(&self, data_dir: &Path) -> String {
        format!(
            r#"hosts = [{}]
data_dir = {data_dir:?}

[listen]
starttls = ["127.0.0.1:0"]
direct_tls = [{direct_tls:?}]

[c2s]
require_encryption = {}
allow_plain_without_tls = {}
max_auth_failures = {}
conflict_policy = "{}"
max_resources_per_account = {}
auth_timeout_secs = {}
idle_timeout_secs = {}
idle_ping_timeout_secs = {}
scram_iterations = {}

[limits]
max_stanza_bytes = {}
max_stanza_bytes_unauthenticated = {}
max_depth = {}
max_attributes_per_element = {}
outbound_queue_stanzas = {}
outbound_queue_grace_secs = {}
max_unauthenticated_connections_per_ip = {}
max_sessions_per_ip = {}
max_unauthenticated_connections = {}
read_bytes_per_sec_unauthenticated = {}
read_bytes_per_sec = {}
read_burst_bytes = {}
auth_failure_delay_ms = {}
max_auth_failure_delay_ms = {}
max_directed_presences = {}
{}"#,
            self.hosts
                .iter()
                .map(|host| format!("{host:?}"))
                .collect::<Vec<_>>()
                .join(", "),
            self.require_encryption,
            self.allow_plain_without_tls,
            self.max_auth_failures,
            self.conflict_policy,
            self.max_resources_per_account,
            self.auth_timeout_secs,
            self.idle_timeout_secs,
            self.idle_ping_timeout_secs,
            self.scram_iterations,
            self.max_stanza_bytes,
            self.max_stanza_bytes_unauthenticated,
            self.max_depth,
            self.max_attributes_per_element,
            self.outbound_queue_stanzas,
            self.outbound_queue_grace_secs,
            self.max_unauthenticated_connections_per_ip,
            self.max_sessions_per_ip,
            self.max_unauthenticated_connections,
            self.read_bytes_per_sec_unauthenticated,
            self.read_bytes_per_sec,
            self.read_burst_bytes,
            self.auth_failure_delay_ms,
            self.max_auth_failure_delay_ms,
            self.max_directed_presences,
            extra_lines(&self.extra_limits),
            direct_tls = self.direct_tls_listen,
            data_dir = match &self.data_subdir {
                Some(subdir) => data_dir.join(subdir),
                None => data_dir.to_owned(),
            }
            .display()
            .to_string(),
        ) + &self.storage_toml()
            + &self.sections_toml()
            + &self.archive_section()
            + &self.extra_toml_section()
    }

    /// The sections set through `section.key=value` options.
    fn sections_toml(&self) -> String {
        let mut out = String::new();
        for (section, keys) in &self.sections {
            out.push_str(&format!("\n[{section}]\n"));
            for (key, value) in keys {
                out.push_str(&format!("{key} = {value}\n"));
            }
        }
        out
    }

    /// The `[archive]` section of the `archive.*` options, if any.
    fn archive_section(&self) -> String {
        if self.archive.is_empty() {
            return String::new();
        }
        let mut section = "\n[archive]\n".to_owned();
        for (key, value) in &self.archive {
            section.push_str(&format!("{key} = {value}\n"));
        }
        section
    }

    /// `extra_toml`, set apart by a blank line when there is any.
    fn extra_toml_section(&self) -> String {
        match self.extra_toml.as_str() {
            "" => String::new(),
            extra => format!("\n{extra}"),
        }
    }

    /// The `[storage]` section: SQLite unless a PostgreSQL URL is set.
    fn storage_toml(&self) -> String {
        match &self.postgres_url {
            None => String::new(),
            Some(url) => format!("\n[storage]\nbackend = \"postgres\"\npostgres_url = {url:?}\n"),
        }
    }
}

/// A running `starling` process with its own data directory.
pub struct TestServer {
    /// Where the server accepts plaintext connections that upgrade with STARTTLS.
    pub starttls_addr: SocketAddr,
    /// Where the server accepts direct TLS connections (XEP-0368).
    pub direct_tls_addr: SocketAddr,
    /// The served domain: the first of the options' `hosts`.
    pub domain: String,
    /// The options the config file was last written from.
    options: ServerOptions,
    /// The binary that was started, for account commands.
    binary: PathBuf,
    /// The config file.
    config_path: PathBuf,
    /// `STARLING_LOG` for the process, if set.
    log_filter: Option<String>,
    /// The server process; killed on drop.
    child: Mutex<Child>,
    /// Lines the server printed on stdout after `ready`.
    stdout_lines: Arc<Mutex<Vec<String>>>,
    /// Owns the scratch directory; deleted on drop, after the child is killed.
    data_dir: tempfile::TempDir,
}

impl TestServer {
    /// Starts a server with default options.
    pub async fn start() -> anyhow::Result<Self> {
        Self::start_with(ServerOptions::default()).await
    }

    /// Starts a server and waits until it prints `ready`.
    pub async fn start_with(options: ServerOptions) -> anyhow::Result<Self> {
        Self::start_binary(find_binary()?, options).await
    }

    /// Starts a specific binary that honours the `starling` command-line contract.
    pub async fn start_binary(binary: PathBuf, options: ServerOptions) -> anyhow::Result<Self> {
        let data_dir = tempfile::Builder::new()
            .prefix("starling-test-")
            .tempdir()
            .context("creating the server's data directory")?;
        let config_path = data_dir.path().join("starling.toml");
        std::fs::write(&config_path, options.to_toml(data_dir.path()))?;
        let log_path = data_dir.path().join("starling.log");
        let running = spawn(
            &binary,
            &config_path,
            &log_path,
            options.log_filter.as_deref(),
        )
        .await?;
        Ok(Self {
            log_filter: options.log_filter.clone(),
            starttls_addr: running.starttls_addr,
            direct_tls_addr: running.direct_tls_addr,
            domain: first_host(&options),
            options,
            binary,
            config_path,
            child: Mutex::new(running.child),
            stdout_lines: running.stdout_lines,
            data_dir,
        })
    }

    /// Kills the server with SIGKILL — no shutdown, no flushing — waits for it to die, and
    /// starts it again on the same data directory and config (new ports). For durability tests.
    pub async fn kill_and_restart(&mut self) -> anyhow::Result<()> {
        {
            let mut child = self
                .child
                .lock()
                .map_err(|_| anyhow!("server child lock poisoned"))?;
            child
                .start_kill()
                .context("sending SIGKILL to the server")?;
        }
        // Wait for the process to be gone so its sockets and files are released.
        let deadline = std::time::Instant::now() + STARTUP_TIMEOUT;
        while self.exit_status()?.is_none() {
            if std::time::Instant::now() > deadline {
                bail!("the server did not die after SIGKILL");
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.restart().await
    }

    /// Sends SIGTERM and waits up to `within` for the process to exit; returns its status.
    pub async fn terminate(&self, within: Duration) -> anyhow::Result<ExitStatus> {
        self.signal("TERM")?;
        let deadline = std::time::Instant::now() + within;
        loop {
            if let Some(status) = self.exit_status()? {
                return Ok(status);
            }
            if std::time::Instant::now() > deadline {
                bail!(
                    "the server did not exit within {within:?} of SIGTERM; log tail:\n{}",
                    self.log_tail(20)
                );
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Sends a signal by name (`TERM`, `HUP`, ...) with kill(1).
    pub fn signal(&self, name: &str) -> anyhow::Result<()> {
        let pid = self
            .pid()
            .context("the server has no pid (it has exited)")?;
        let status = std::process::Command::new("kill")
            .arg("-s")
            .arg(name)
            .arg(pid.to_string())
            .status()
            .context("running kill")?;
        if !status.success() {
            bail!("kill -s {name} {pid} failed with {status}");
        }
        Ok(())
    }

    /// Rewrites the server's config file from `options` (same data directory, port 0). The
    /// running server sees it on SIGHUP ([`Self::signal`]) or [`Self::restart`]; `domain`
    /// follows the new first host only at the restart, since a running server keeps its hosts.
    /// `log_filter` is an environment variable, not part of the file, and stays as started.
    pub fn rewrite_config(&mut self, options: ServerOptions) -> anyhow::Result<()> {
        std::fs::write(&self.config_path, options.to_toml(self.data_dir.path()))
            .with_context(|| format!("writing {}", self.config_path.display()))?;
        self.options = options;
        Ok(())
    }

    /// The config file, to overwrite with arbitrary text (e.g. a broken file for a reload test).
    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    /// `starling list-users [host]` against this server's config: the accounts' JIDs.
    pub async fn list_users(&self, host: Option<&str>) -> anyhow::Result<Vec<String>> {
        let args: Vec<&str> = std::iter::once("list-users").chain(host).collect();
        let (status, output) = self.run_command(&args, None).await?;
        if !status.success() {
            bail!(
                "`starling {}` failed with {status}:\n{output}",
                args.join(" ")
            );
        }
        Ok(output
            .lines()
            .map(str::trim)
            .filter(|line| line.contains('@') && !line.contains(' '))
            .map(str::to_owned)
            .collect())
    }

    /// Starts the server again, after it exited, on the same data directory and config (new
    /// ports).
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        if self.exit_status()?.is_none() {
            bail!("restart: the server is still running");
        }
        let log_path = self.data_dir.path().join("starling.log");
        let running = spawn(
            &self.binary,
            &self.config_path,
            &log_path,
            self.log_filter.as_deref(),
        )
        .await?;
        self.starttls_addr = running.starttls_addr;
        self.direct_tls_addr = running.direct_tls_addr;
        self.stdout_lines = running.stdout_lines;
        self.domain = first_host(&self.options);
        *self
            .child
            .lock()
            .map_err(|_| anyhow!("server child lock poisoned"))? = running.child;
        Ok(())
    }

    /// The server's process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.lock().ok().and_then(|child| child.id())
    }

    /// The server's resident set size in KiB (`VmRSS` in `/proc/<pid>/status`; Linux only).
    pub fn rss_kib(&self) -> anyhow::Result<u64> {
        let pid = self
            .pid()
            .context("the server has no pid (it has exited)")?;
        crate::arena::rss_kib(pid).with_context(|| format!("no VmRSS in /proc/{pid}/status"))
    }

    /// Creates the account `localpart@domain` with `password`.
    pub async fn add_user(&self, localpart: &str, password: &str) -> anyhow::Result<()> {
        let password_path = self.data_dir.path().join(format!("password-{localpart}"));
        std::fs::write(&password_path, password)?;
        let jid = format!("{localpart}@{}", self.domain);
        let output = self
            .run_command(&["adduser", &jid, "--password-file"], Some(&password_path))
            .await?;
        std::fs::remove_file(&password_path)?;
        if !output.0.success() {
            bail!(
                "`starling adduser {jid}` failed with {}:\n{}",
                output.0,
                output.1
            );
        }
        Ok(())
    }

    /// Everything the server has logged on stderr so far.
    pub fn log_text(&self) -> String {
        read_log(&self.data_dir.path().join("starling.log"))
    }

    /// Waits (up to 10 s) until the log holds `needle` at least `count` times.
    pub async fn wait_for_log(&self, needle: &str, count: usize) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while self.log_text().matches(needle).count() < count {
            if tokio::time::Instant::now() >= deadline {
                bail!(
                    "{needle:?} not logged {count} time(s); log tail:\n{}",
                    self.log_tail(20)
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }

    /// The last `lines` lines of the log, for failure messages.
    pub fn log_tail(&self, lines: usize) -> String {
        let log = self.log_text();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Lines printed on stdout after `ready`.
    pub fn stdout_lines(&self) -> Vec<String> {
        self.stdout_lines
            .lock()
            .map(|lines| lines.clone())
            .unwrap_or_default()
    }

    /// The server's data directory (also holds the config and the log).
    pub fn data_dir(&self) -> &Path {
        self.data_dir.path()
    }

    /// The PEM certificate the server generated.
    pub fn cert_path(&self) -> PathBuf {
        self.data_dir.path().join("tls").join("cert.pem")
    }

    /// `Ok(None)` while the process runs, its exit status once it has exited.
    pub fn exit_status(&self) -> anyhow::Result<Option<ExitStatus>> {
        let mut child = self
            .child
            .lock()
            .map_err(|_| anyhow!("server child lock poisoned"))?;
        Ok(child.try_wait()?)
    }

    /// Fails, with the log tail, if the server process has exited.
    pub fn ensure_alive(&self) -> anyhow::Result<()> {
        match self.exit_status()? {
            None => Ok(()),
            Some(status) => bail!(
                "the server process exited with {status}; log tail:\n{}",
                self.log_tail(40)
            ),
        }
    }

    /// Runs `starling --config <file> <args> [path]` and returns its status and combined output.
    async fn run_command(
        &self,
        args: &[&str],
        path: Option<&Path>,
    ) -> anyhow::Result<(ExitStatus, String)> {
        let mut command = Command::new(&self.binary);
        command.arg("--config").arg(&self.config_path).args(args);
        if let Some(path) = path {
            command.arg(path);
        }
        command.stdin(Stdio::null()).kill_on_drop(true);
        let output = timeout(STARTUP_TIMEOUT, command.output())
            .await
            .map_err(|_| {
                anyhow!(
                    "`starling {}` did not finish within {STARTUP_TIMEOUT:?}",
                    args.join(" ")
                )
            })?
            .with_context(|| format!("running {}", self.binary.display()))?;
        let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
        let _ = write!(text, "{}", String::from_utf8_lossy(&output.stderr));
        Ok((output.status, text))
    }
}

/// A freshly started server process and what it announced.
struct Running {
    child: Child,
    starttls_addr: SocketAddr,
    direct_tls_addr: SocketAddr,
    stdout_lines: Arc<Mutex<Vec<String>>>,
}

/// Starts `binary` with `config_path`, appending its stderr to `log_path`, and waits for `ready`.
async fn spawn(
    binary: &Path,
    config_path: &Path,
    log_path: &Path,
    log_filter: Option<&str>,
) -> anyhow::Result<Running> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log_path)?;
    let mut command = Command::new(binary);
    if let Some(filter) = log_filter {
        command.env("STARLING_LOG", filter);
    }
    let mut child = command
        .arg("--config")
        .arg(config_path)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log))
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {}", binary.display()))?;
    let stdout = child.stdout.take().context("server stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let mut starttls_addr = None;
    let mut direct_tls_addr = None;
    let mut seen = Vec::new();
    let startup = async {
        while let Some(line) = lines.next_line().await? {
            seen.push(line.clone());
            let line = line.trim();
            if line == "ready" {
                return Ok(true);
            }
            if let Some(addr) = line.strip_prefix("listening starttls ") {
                starttls_addr = Some(addr.parse::<SocketAddr>()?);
            } else if let Some(addr) = line.strip_prefix("listening direct-tls ") {
                direct_tls_addr = Some(addr.parse::<SocketAddr>()?);
            }
        }
        anyhow::Ok(false)
    };
    let outcome = timeout(STARTUP_TIMEOUT, startup).await;
    let failure = match outcome {
        Ok(Ok(true)) => None,
        Ok(Ok(false)) => Some("the server closed stdout before printing `ready`".to_owned()),
        Ok(Err(error)) => Some(format!("reading the server's stdout: {error:#}")),
        Err(_) => Some(format!(
            "the server did not print `ready` within {STARTUP_TIMEOUT:?}"
        )),
    };
    if let Some(failure) = failure {
        let status = match child.try_wait() {
            Ok(Some(status)) => format!("exited with {status}"),
            _ => "still running".to_owned(),
        };
        let _ = child.start_kill();
        bail!(
            "{failure} ({status})\nstdout:\n{}\nstderr:\n{}",
            seen.join("\n"),
            read_log(log_path)
        );
    }
    let (Some(starttls_addr), Some(direct_tls_addr)) = (starttls_addr, direct_tls_addr) else {
        let _ = child.start_kill();
        bail!(
            "the server printed `ready` without both listening lines\nstdout:\n{}",
            seen.join("\n")
        );
    };
    // Keep draining stdout so the server never blocks writing to a full pipe.
    let stdout_lines = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&stdout_lines);
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            if let Ok(mut sink) = sink.lock() {
                sink.push(line);
            }
        }
    });
    Ok(Running {
        child,
        starttls_addr,
        direct_tls_addr,
        stdout_lines,
    })
}

/// Finds the `starling` binary: `$STARLING_BIN`, else `debug/starling` under
/// `$CARGO_TARGET_DIR` or the workspace's `target/`.
pub fn find_binary() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os("STARLING_BIN") {
        let path = PathBuf::from(path);
        if path.is_file() {
            return Ok(path);
        }
        bail!("STARLING_BIN={} does not exist", path.display());
    }
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let workspace = manifest_dir
        .join("../..")
        .canonicalize()
        .unwrap_or_else(|_| manifest_dir.join("../.."));
    let mut candidates = Vec::new();
    if let Some(target) = std::env::var_os("CARGO_TARGET_DIR") {
        candidates.push(workspace.join(target).join("debug").join(binary_name()));
    }
    candidates.push(workspace.join("target").join("debug").join(binary_name()));
    for candidate in &candidates {
        if candidate.is_file() {
            return Ok(candidate.clone());
        }
    }
    bail!(
        "the starling binary was not found (looked at {}); run `cargo xtask test`, which builds it, \
         or set STARLING_BIN",
        candidates
            .iter()
            .map(|path| path.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    )
}

fn binary_name() -> &'static str {
    if cfg!(windows) {
        "starling.exe"
    } else {
        "starling"
    }
}

fn first_host(options: &ServerOptions) -> String {
    options
        .hosts
        .first()
        .cloned()
        .unwrap_or_else(|| "localhost".to_owned())
}

fn read_log(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|error| format!("(no log: {error})"))
}

/// `lines` ending in a newline, or nothing.
fn extra_lines(lines: &str) -> String {
    let lines = lines.trim();
    if lines.is_empty() {
        String::new()
    } else {
        format!("{lines}\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes an executable shell script standing in for `starling`.
    #[cfg(unix)]
    fn fake_binary(dir: &Path, body: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let path = dir.join("fake-starling");
        std::fs::write(&path, format!("#!/bin/sh\n{body}")).expect("write script");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        path
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn launcher_reads_addresses_and_captures_the_log() {
        let dir = tempfile::tempdir().expect("tempdir");
        let binary = fake_binary(
            dir.path(),
            r#"if [ "$3" = adduser ]; then
  [ "$4" = alice@localhost ] && [ "$(cat "$6")" = secret ] && exit 0
  echo "bad adduser $*" >&2; exit 1
fi
echo "starting with $2" >&2
echo "listening starttls 127.0.0.1:5222"
echo "listening direct-tls 127.0.0.1:5223"
echo ready
exec sleep 30
"#,
        );
        let server = TestServer::start_binary(binary, ServerOptions::default())
            .await
            .expect("fake server starts");
        assert_eq!(
            server.starttls_addr,
            "127.0.0.1:5222".parse().expect("addr")
        );
        assert_eq!(
            server.direct_tls_addr,
            "127.0.0.1:5223".parse().expect("addr")
        );
        assert_eq!(
            server.log_text(),
            format!(
                "starting with {}\n",
                server.data_dir().join("starling.toml").display()
            )
        );
        server
            .add_user("alice", "secret")
            .await
            .expect("adduser succeeds");
        let error = server
            .add_user("bob", "x")
            .await
            .expect_err("adduser fails");
        assert!(
            format!("{error:#}")
                .starts_with("`starling adduser bob@localhost` failed with exit status: 1"),
            "{error:#}"
        );
        assert_eq!(server.exit_status().expect("status"), None);
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn launcher_reports_a_server_that_dies_during_startup() {
        let dir = tempfile::tempdir().expect("tempdir");
        let binary = fake_binary(dir.path(), "echo 'config: no hosts' >&2\nexit 3\n");
        let error = match TestServer::start_binary(binary, ServerOptions::default()).await {
            Ok(_) => panic!("startup must fail"),
            Err(error) => format!("{error:#}"),
        };
        assert!(
            error.starts_with("the server closed stdout before printing `ready`"),
            "{error}"
        );
        assert!(error.ends_with("stderr:\nconfig: no hosts\n"), "{error}");
    }

    #[test]
    fn default_config_matches_the_contract() {
        let toml = ServerOptions::default().to_toml(Path::new("/tmp/x"));
        assert_eq!(
            toml,
            r#"hosts = ["localhost"]
data_dir = "/tmp/x"

[listen]
starttls = ["127.0.0.1:0"]
direct_tls = ["127.0.0.1:0"]

[c2s]
require_encryption = true
allow_plain_without_tls = false
max_auth_failures = 3
conflict_policy = "kick_old"
max_resources_per_account = 10
auth_timeout_secs = 60
idle_timeout_secs = 300
idle_ping_timeout_secs = 30
scram_iterations = 4096

[limits]
max_stanza_bytes = 262144
max_stanza_bytes_unauthenticated = 16384
max_depth = 32
max_attributes_per_element = 64
outbound_queue_stanzas = 512
outbound_queue_grace_secs = 5
max_unauthenticated_connections_per_ip = 32
max_sessions_per_ip = 0
max_unauthenticated_connections = 1000
read_bytes_per_sec_unauthenticated = 16384
read_bytes_per_sec = 262144
read_burst_bytes = 65536
auth_failure_delay_ms = 250
max_auth_failure_delay_ms = 8000
max_directed_presences = 1000
"#
        );
    }

    #[test]
    fn options_are_set_by_name() {
        let mut options = ServerOptions::default();
        options.set("require_encryption", "false").expect("known");
        options.set("max_depth", "8").expect("known");
        assert!(!options.require_encryption);
        assert_eq!(options.max_depth, 8);
        assert_eq!(
            options.set("max_depth", "deep").map_err(|e| e.to_string()),
            Err("option max_depth: cannot parse \"deep\"".to_owned())
        );
        assert_eq!(
            options.set("colour", "blue").map_err(|e| e.to_string()),
            Err("unknown server option \"colour\"".to_owned())
        );
    }
}
