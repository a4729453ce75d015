//! Starling's configuration, `starling.toml`: every key, its default and what it is for;
//! loading with every problem located by key and line; and `starling check-config`.
//!
//! Unknown keys are errors, so a typo never silently falls back to a default. The one design
//! choice to know: a file is checked as far as possible before anything is refused, so one run
//! names every problem (syntax, unknown keys, wrong types, values out of range), each with its
//! line ([`Config::parse`]); [`Config::load`] then refuses a file with any problem at all.
//!
//! Each section is its own struct with `#[serde(default)]`, so a new table (a `[modules]` of
//! feature switches, say) is one more field on [`Config`], its `Default` and, if it can change
//! on SIGHUP, a line in [`Config::reload`].

mod archive;
mod certificates;
mod check;
mod document;
mod modules;
mod names;
mod stream_management;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

pub use archive::{Archive, DefaultPrefs};
pub use certificates::CertificateReportError;
pub use check::{Report, check_config};
pub use document::{KeyLines, Problem, key_path, sort_by_line};
pub use modules::Modules;
pub use names::{AccountJidError, HostSelectionError};
pub use stream_management::StreamManagement;

/// Why [`Config::load`] failed.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The built-in defaults do not pass the checks (a bug, not an operator's mistake).
    #[error("invalid defaults: {}", join_problems(.0))]
    InvalidDefaults(Vec<Problem>),
    /// The file cannot be read.
    #[error("cannot read config file {}", path.display())]
    Read {
        /// The config file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file has problems, listed in the message on one line.
    #[error("invalid config file {}: {}", path.display(), join_problems(problems))]
    Invalid {
        /// The config file.
        path: PathBuf,
        /// Every problem found, in line order.
        problems: Vec<Problem>,
    },
}

/// The whole configuration file. Every field has a default, so an empty file is valid.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Domains served by this server, e.g. `["example.org"]`.
    pub hosts: Vec<String>,
    /// Where the database and generated certificates live. Relative paths are taken from the
    /// directory the server was started in.
    pub data_dir: PathBuf,
    /// Listening sockets.
    pub listen: Listen,
    /// Certificate and key.
    pub tls: Tls,
    /// Client-to-server stream policy.
    pub c2s: C2s,
    /// Bounds on what a peer may send.
    pub limits: LimitsConfig,
    /// Where accounts are stored.
    pub storage: Storage,
    /// Seconds to wait for sessions to close on shutdown before exiting anyway.
    pub shutdown_grace_secs: u64,
    /// The local admin socket used by `starling list-sessions`, `kick`, `announce`, ….
    pub admin: Admin,
    /// Log output.
    pub log: Log,
    /// The optional Prometheus endpoint.
    pub metrics: Metrics,
    /// Which feature modules run.
    pub modules: Modules,
    /// XEP-0198 stream management.
    pub stream_management: StreamManagement,
    /// The message archive's policy and limits.
    pub archive: Archive,
}

/// `[admin]`: the Unix socket that admin commands use to reach the running server.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Admin {
    /// Open the admin socket. Default true.
    pub enabled: bool,
    /// Socket path; default `<data_dir>/admin.sock`. It is created with mode 0600, so only the
    /// user the server runs as (and root) can use it.
    pub socket: Option<PathBuf>,
}

/// `[log]`: what is logged and how. `STARLING_LOG` in the environment overrides `level`, and
/// `--log-format` on the command line overrides `format`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Log {
    /// A tracing filter: a default level and per-module levels, e.g.
    /// `"info,starling_router=debug"`. Default `"info"`.
    pub level: String,
    /// `"human"` (default) or `"json"` (one JSON object per line).
    pub format: LogFormat,
}

/// `log.format` values.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// Readable lines.
    #[default]
    Human,
    /// One JSON object per line.
    Json,
}

/// `[metrics]`: a Prometheus text endpoint, off unless `listen` is set.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Metrics {
    /// Loopback address to serve `/metrics` on, e.g. `"127.0.0.1:9700"`. Unset: no endpoint.
    pub listen: Option<SocketAddr>,
}

impl Default for Admin {
    fn default() -> Self {
        Self {
            enabled: true,
            socket: None,
        }
    }
}

impl Default for Log {
    fn default() -> Self {
        Self {
            level: "info".to_owned(),
            format: LogFormat::Human,
        }
    }
}

/// The outcome of [`Config::reload`].
#[derive(Debug)]
pub struct Reload {
    /// The configuration to run with from now on.
    pub config: Config,
    /// Keys whose new value was ignored because it needs a restart.
    pub needs_restart: Vec<&'static str>,
    /// Keys whose new value applies from now on.
    pub changed: Vec<&'static str>,
}

/// `[listen]`: addresses for client connections. Port 0 picks a free port.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Listen {
    /// Plain TCP with STARTTLS (RFC 6120 §5), conventionally port 5222.
    pub starttls: Vec<SocketAddr>,
    /// TLS from the first byte (XEP-0368), conventionally port 5223.
    pub direct_tls: Vec<SocketAddr>,
}

/// `[tls]`: PEM files, per host and as a fallback. A host is served the certificate of its
/// `[tls.hosts."<host>"]` table, else the top-level pair, else a self-signed certificate
/// generated for it in the data directory (fine for local use, not for the internet; see
/// [`Config::certificate_for`]). Clients that send no SNI, or a name we do not serve, get the
/// first host's certificate.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Tls {
    /// Certificate chain, leaf first.
    pub certificate: Option<PathBuf>,
    /// The leaf's private key (PKCS#8, PKCS#1 or SEC1).
    pub private_key: Option<PathBuf>,
    /// Per-host certificates, by host name (each must be one of `hosts`).
    pub hosts: BTreeMap<String, HostTls>,
}

/// `[tls.hosts."<host>"]`: the certificate for one host.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostTls {
    /// Certificate chain, leaf first.
    pub certificate: PathBuf,
    /// The leaf's private key.
    pub private_key: PathBuf,
}

/// Where a host's certificate comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertificateSource {
    /// Files named in the configuration.
    Configured {
        /// The config key that names them: `tls` or `tls.hosts."<host>"`.
        key: String,
        /// The PEM certificate chain.
        certificate: PathBuf,
        /// The PEM private key.
        private_key: PathBuf,
    },
    /// A self-signed certificate the server generates (and generates again when it no
    /// longer covers the host or has expired).
    Generated {
        /// The PEM certificate.
        certificate: PathBuf,
        /// The PEM private key, mode 0600.
        private_key: PathBuf,
    },
}

impl CertificateSource {
    /// The certificate file.
    pub fn certificate(&self) -> &Path {
        match self {
            Self::Configured { certificate, .. } | Self::Generated { certificate, .. } => {
                certificate
            }
        }
    }

    /// The private key file.
    pub fn private_key(&self) -> &Path {
        match self {
            Self::Configured { private_key, .. } | Self::Generated { private_key, .. } => {
                private_key
            }
        }
    }
}

/// The outcome of [`Config::parse`].
#[derive(Debug)]
pub struct Checked {
    /// The configuration; `None` when the TOML syntax is broken.
    pub config: Option<Config>,
    /// Everything wrong, in the order found.
    pub problems: Vec<Problem>,
    /// Where each key is, to locate further problems (certificates, listeners).
    pub lines: KeyLines,
    /// Keys whose values were wrong and are replaced by defaults in `config`.
    pub dropped: Vec<String>,
}

fn join_problems(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// `[c2s]`: how client streams are negotiated.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct C2s {
    /// Require STARTTLS before SASL (RFC 6120 §5.3.1). Default true.
    pub require_encryption: bool,
    /// Offer SASL PLAIN on unencrypted streams. Default false: PLAIN sends the password itself.
    pub allow_plain_without_tls: bool,
    /// SASL failures tolerated on one connection before the stream is closed
    /// (RFC 6120 §6.4.5 suggests 2 to 5). Default 3.
    pub max_auth_failures: u32,
    /// Seconds a TLS handshake may take before the connection is dropped. Default 30.
    pub tls_handshake_timeout_secs: u64,
    /// PBKDF2 iterations for newly set passwords (RFC 7677 asks for at least 4096). Default 4096.
    pub scram_iterations: u32,
    /// Which SCRAM hashes a host offers: `"complete"` (default) offers a hash (and its -PLUS
    /// variant) only when every account of the host with keys holds keys for it, so nobody is
    /// offered a mechanism their account cannot complete; `"always"` offers every hash.
    pub scram_offer: ScramOfferConfig,
    /// What happens when a client binds a resource that is already in use (RFC 6120 §7.7.2.2):
    /// `"kick_old"` (default: the old session gets a `<conflict/>` stream error) or
    /// `"refuse_new"` (the new bind fails with a `<conflict/>` stanza error).
    pub conflict_policy: ConflictPolicyConfig,
    /// Simultaneous resources per account; more gets `resource-constraint`. Default 10.
    pub max_resources_per_account: usize,
    /// Seconds from accepting a connection until a resource must be bound (STARTTLS, SASL and
    /// binding included); later, the stream ends with `<connection-timeout/>`. This is what
    /// times out a client that sends half an `<auth/>` and stops. Default 60.
    pub auth_timeout_secs: u64,
    /// Seconds a bound session may send nothing before the server pings it (XEP-0199); a
    /// whitespace keepalive from the client counts as something. Default 300.
    pub idle_timeout_secs: u64,
    /// Seconds to wait for any byte after that ping before the stream ends with
    /// `<connection-timeout/>`. Default 30.
    pub idle_ping_timeout_secs: u64,
}

/// `c2s.scram_offer` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScramOfferConfig {
    /// Only hashes every account with keys holds.
    Complete,
    /// Every hash, whatever the accounts hold.
    Always,
}

impl ScramOfferConfig {
    /// The value as written in the file.
    pub fn name(self) -> &'static str {
        match self {
            Self::Complete => "complete",
            Self::Always => "always",
        }
    }

    /// The SASL crate's policy.
    pub fn policy(self) -> starling_sasl::OfferPolicy {
        match self {
            Self::Complete => starling_sasl::OfferPolicy::Complete,
            Self::Always => starling_sasl::OfferPolicy::Always,
        }
    }
}

/// `c2s.conflict_policy` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConflictPolicyConfig {
    /// The new session wins.
    KickOld,
    /// The old session wins.
    RefuseNew,
}

/// `[limits]`: applied while parsing, before memory is spent.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Largest stanza once authenticated, in bytes. Default 262144 (256 KiB).
    pub max_stanza_bytes: usize,
    /// Largest top-level element before authentication, in bytes. Default 16384 (16 KiB).
    pub max_stanza_bytes_unauthenticated: usize,
    /// Deepest element nesting inside one stanza. Default 32.
    pub max_depth: u16,
    /// Most attributes on one element. Default 64.
    pub max_attributes_per_element: u16,
    /// Elements in one stanza, itself included; more is `<policy-violation/>`. Default 4096.
    pub max_elements_per_stanza: u32,
    /// Most simultaneous client connections; further connections wait in the listen backlog.
    /// Default 10000.
    pub max_connections: usize,
    /// Simultaneous connections from one IP address (IPv6: one /64) that have not
    /// authenticated yet; more are refused with `<policy-violation/>`. Authenticated sessions
    /// do not count, so any number of users behind one NAT address can be online. Default 32.
    pub max_unauthenticated_connections_per_ip: usize,
    /// Opt-in: bound sessions from one IP address (IPv6: one /64); binding one more resource
    /// is refused with `resource-constraint`. Default 0, no cap: authenticated use is bounded
    /// per account (`c2s.max_resources_per_account`), since many users may share an address.
    pub max_sessions_per_ip: usize,
    /// Removed in issue 15: it counted authenticated sessions too, so users sharing an address
    /// locked each other out. Kept only so that a config still setting it gets an error saying
    /// what replaces it rather than "unknown field".
    pub max_connections_per_ip: Option<usize>,
    /// Simultaneous connections that have not authenticated yet, in total; more are refused
    /// with `<resource-constraint/>`, so idle unauthenticated sockets cannot crowd out users.
    /// Default 1000.
    pub max_unauthenticated_connections: usize,
    /// Bytes per second one connection may send before it has authenticated; faster senders
    /// are not read from until their budget refills (TCP backpressure, nothing is dropped).
    /// Default 16384.
    pub read_bytes_per_sec_unauthenticated: u64,
    /// Bytes per second one authenticated connection may send. Default 262144 (256 KiB).
    pub read_bytes_per_sec: u64,
    /// Bytes a connection may send at once above its rate (the token bucket's size).
    /// Default 65536.
    pub read_burst_bytes: u64,
    /// Delay before the `<failure/>` of the first failed SASL attempt from an IP address, in
    /// milliseconds; it doubles with each further failure from that address. Default 250.
    pub auth_failure_delay_ms: u64,
    /// Longest such delay, in milliseconds. Default 8000.
    pub max_auth_failure_delay_ms: u64,
    /// Seconds after its last failure until an IP address's failures are forgotten.
    /// Default 600.
    pub auth_failure_window_secs: u64,
    /// Stanzas queued for one session that is not reading fast enough. Default 512.
    pub outbound_queue_stanzas: usize,
    /// Bytes of stanzas queued for one session that is not reading fast enough; recipients of
    /// one stanza share its bytes. Default 2 MiB.
    pub outbound_queue_bytes: usize,
    /// Seconds a session's queue may stay full before the session is closed with
    /// `<policy-violation/>`; meanwhile stanzas to it are treated as undeliverable. Default 5.
    pub outbound_queue_grace_secs: u64,
    /// Items in one roster, by roster set or by subscription stanzas; one more gets
    /// `policy-violation`. Default 1000.
    pub max_roster_items: usize,
    /// Bytes of a roster item's name or group; longer gets `not-acceptable`. Default 1024.
    pub max_roster_text_bytes: usize,
    /// Offline messages kept per account (XEP-0160); more gets `service-unavailable`.
    /// Default 100.
    pub max_offline_messages: usize,
    /// Addresses one resource may have sent directed presence to (RFC 6121 §4.6) and not yet
    /// unavailable; more gets `policy-violation`. Default 1000.
    pub max_directed_presences: usize,
    /// Bytes of offline messages kept per account (their serialized stanzas); a message that
    /// would pass it gets `service-unavailable`, as past the count. Default 1048576 (1 MiB).
    pub max_offline_bytes: usize,
    /// JIDs one account may block (XEP-0191); a block past it gets `policy-violation`.
    /// Default 1000.
    pub max_blocklist_items: usize,
    /// Bytes of XEP-0049 private XML one account may keep (storage keys plus the serialized
    /// fragments); a set past it gets `policy-violation` and stores nothing. Default 1048576
    /// (1 MiB).
    pub max_private_bytes: usize,
    /// Bytes of one XEP-0054 vCard, serialized; a larger one gets `policy-violation`. Default
    /// 131072 (128 KiB), half the default stanza limit.
    pub max_vcard_bytes: usize,
    /// Stanzas held back for one XEP-0352 inactive session (presence updates, headlines);
    /// past it everything held is delivered at once. Default 256.
    pub csi_max_held_stanzas: usize,
    /// Bytes (serialized) held back for one XEP-0352 inactive session; past it everything
    /// held is delivered at once. Default 262144 (256 KiB).
    pub csi_max_held_bytes: usize,
}

/// `[storage]`: where accounts, rosters and offline messages live.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Storage {
    /// `"sqlite"` (default: a file in the data directory, no external service) or `"postgres"`.
    pub backend: StorageBackend,
    /// SQLite file; default `<data_dir>/starling.sqlite`.
    pub sqlite_path: Option<PathBuf>,
    /// PostgreSQL connection string (`host=… port=… user=… dbname=…` or a `postgresql://`
    /// URI); required when `backend = "postgres"`. Migrations run at start. TLS follows its
    /// `sslmode` (`disable`, `prefer` (default), `require`, `verify-full` with `sslrootcert`).
    pub postgres_url: Option<String>,
    /// Allow a connection that may be plaintext (`sslmode` `disable` or `prefer`) to a
    /// PostgreSQL host that is not on this machine. Default false: such a configuration is
    /// refused, since account keys and messages would cross the network readable.
    pub postgres_allow_plaintext_remote: bool,
}

/// `storage.backend` values.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StorageBackend {
    /// The embedded SQLite database.
    #[default]
    Sqlite,
    /// A PostgreSQL server.
    Postgres,
}

/// The TLS problem of a PostgreSQL connection string, as `check-config` and start-up report
/// it (never quoting the string, which may hold a password).
fn postgres_tls_problem(url: &str, allow_plaintext_remote: bool) -> Result<(), String> {
    starling_storage::TlsSettings::check_url(url, allow_plaintext_remote).map_err(|err| match err {
        starling_storage::TlsConfigError::PlaintextToRemote { .. } => {
            format!("{err}, or set storage.postgres_allow_plaintext_remote = true to accept that")
        }
        other => other.to_string(),
    })
}

impl Default for Config {
    fn default() -> Self {
        Self {
            hosts: vec!["localhost".to_owned()],
            data_dir: PathBuf::from("starling-data"),
            listen: Listen::default(),
            tls: Tls::default(),
            c2s: C2s::default(),
            limits: LimitsConfig::default(),
            storage: Storage::default(),
            shutdown_grace_secs: 5,
            admin: Admin::default(),
            log: Log::default(),
            metrics: Metrics::default(),
            modules: Modules::default(),
            stream_management: StreamManagement::default(),
            archive: Archive::default(),
        }
    }
}

impl Default for Listen {
    fn default() -> Self {
        Self {
            starttls: vec![SocketAddr::from(([127, 0, 0, 1], 5222))],
            direct_tls: vec![SocketAddr::from(([127, 0, 0, 1], 5223))],
        }
    }
}

impl Default for C2s {
    fn default() -> Self {
        Self {
            require_encryption: true,
            allow_plain_without_tls: false,
            max_auth_failures: starling_stream::DEFAULT_MAX_AUTH_FAILURES,
            tls_handshake_timeout_secs: 30,
            scram_iterations: starling_sasl::DEFAULT_ITERATIONS,
            scram_offer: ScramOfferConfig::Complete,
            conflict_policy: ConflictPolicyConfig::KickOld,
            max_resources_per_account: starling_registry::RegistryConfig::default()
                .max_resources_per_account,
            auth_timeout_secs: 60,
            idle_timeout_secs: 300,
            idle_ping_timeout_secs: 30,
        }
    }
}

impl Default for LimitsConfig {
    fn default() -> Self {
        let authenticated = starling_xml::Limits::authenticated();
        Self {
            max_stanza_bytes: authenticated.max_stanza_bytes,
            max_stanza_bytes_unauthenticated: starling_xml::Limits::unauthenticated()
                .max_stanza_bytes,
            max_depth: authenticated.max_depth,
            max_attributes_per_element: authenticated.max_attributes_per_element,
            max_elements_per_stanza: authenticated.max_elements_per_stanza,
            max_connections: 10_000,
            max_unauthenticated_connections_per_ip: 32,
            max_sessions_per_ip: 0,
            max_connections_per_ip: None,
            max_unauthenticated_connections: 1000,
            read_bytes_per_sec_unauthenticated: 16 * 1024,
            read_bytes_per_sec: 256 * 1024,
            read_burst_bytes: 64 * 1024,
            auth_failure_delay_ms: 250,
            max_auth_failure_delay_ms: 8000,
            auth_failure_window_secs: 600,
            outbound_queue_stanzas: starling_registry::RegistryConfig::default().queue_depth,
            outbound_queue_bytes: starling_registry::RegistryConfig::default().queue_bytes,
            max_roster_items: starling_roster::RosterLimits::default().max_items,
            max_roster_text_bytes: starling_roster::RosterLimits::default().max_name_bytes,
            max_offline_messages: starling_router::RouterLimits::default().max_offline_messages,
            max_directed_presences: starling_router::RouterLimits::default().max_directed_presences,
            max_offline_bytes: starling_router::RouterLimits::default().max_offline_bytes,
            max_blocklist_items: 1000,
            max_private_bytes: 1 << 20,
            max_vcard_bytes: 128 * 1024,
            csi_max_held_stanzas: 256,
            csi_max_held_bytes: 256 * 1024,
            outbound_queue_grace_secs: starling_registry::RegistryConfig::default()
                .overflow_grace
                .as_secs(),
        }
    }
}

impl Config {
    /// Read `path`, or the defaults when `path` is `None`. Every problem in the file is in the
    /// error, each with its key and line, on one line (it is also logged on SIGHUP).
    pub fn load(path: Option<&Path>) -> Result<Self, LoadError> {
        let Some(path) = path else {
            let mut config = Config::default();
            let problems = config.normalize_and_check(&KeyLines::default());
            if problems.is_empty() {
                return Ok(config);
            }
            return Err(LoadError::InvalidDefaults(problems));
        };
        let text = std::fs::read_to_string(path).map_err(|source| LoadError::Read {
            path: path.to_owned(),
            source,
        })?;
        let checked = Config::parse(&text);
        match checked.config {
            Some(config) if checked.problems.is_empty() => Ok(config),
            _ => Err(LoadError::Invalid {
                path: path.to_owned(),
                problems: checked.problems,
            }),
        }
    }

    /// Parse and check a config file's text, finding as many problems as possible: syntax
    /// errors; then unknown keys and values of the wrong type (each dropped in turn, so all are
    /// found); then values out of range. `config` is `None` only when the syntax is broken;
    /// with problems it holds defaults for the keys that were dropped.
    pub fn parse(text: &str) -> Checked {
        let parsed = document::parse::<Config>(text);
        let mut problems = parsed.problems;
        let dropped = parsed.dropped;
        let config = parsed.value.map(|mut config| {
            problems.extend(
                config
                    .normalize_and_check(&parsed.lines)
                    .into_iter()
                    .filter(|problem| !dropped.iter().any(|d| problem.key.starts_with(d.as_str()))),
            );
            config
        });
        sort_by_line(&mut problems);
        Checked {
            config,
            problems,
            lines: parsed.lines,
            dropped,
        }
    }

    /// Normalise host names (nameprep, lower case) in `hosts` and `tls.hosts`, then check
    /// every value; problems are located with `lines`.
    fn normalize_and_check(&mut self, lines: &KeyLines) -> Vec<Problem> {
        let mut problems = Vec::new();
        let mut hosts: Vec<String> = Vec::new();
        for (i, host) in self.hosts.iter().enumerate() {
            match jid::DomainPart::new(host) {
                Ok(domain) if hosts.iter().any(|h| h == domain.as_str()) => problems.push(
                    lines.problem(format!("hosts[{i}]"), format!("{host:?} is listed twice")),
                ),
                Ok(domain) => hosts.push(domain.as_str().to_owned()),
                Err(err) => problems.push(lines.problem(
                    format!("hosts[{i}]"),
                    format!("{host:?} is not a valid domain: {err}"),
                )),
            }
        }
        self.hosts = hosts;
        let mut tls_hosts = BTreeMap::new();
        for (name, host_tls) in std::mem::take(&mut self.tls.hosts) {
            let key = key_path(&["tls", "hosts", name.as_str()]);
            match jid::DomainPart::new(&name) {
                Ok(domain) if self.hosts.iter().any(|h| h == domain.as_str()) => {
                    tls_hosts.insert(domain.as_str().to_owned(), host_tls);
                }
                Ok(_) => problems.push(lines.problem(
                    key,
                    format!("{name:?} is not one of `hosts` ({})", self.hosts.join(", ")),
                )),
                Err(err) => problems
                    .push(lines.problem(key, format!("{name:?} is not a valid domain: {err}"))),
            }
        }
        self.tls.hosts = tls_hosts;
        for (key, message) in self.problems() {
            problems.push(lines.problem(key, message));
        }
        problems
    }

    /// Values out of range or inconsistent with each other, as (key, message).
    pub fn problems(&self) -> Vec<(String, String)> {
        let mut problems = Vec::new();
        let mut check = |ok: bool, key: &str, message: &str| {
            if !ok {
                problems.push((key.to_owned(), message.to_owned()));
            }
        };
        check(
            !self.hosts.is_empty(),
            "hosts",
            "at least one host is required",
        );
        check(
            self.tls.certificate.is_some() == self.tls.private_key.is_some(),
            "tls",
            "set both certificate and private_key, or neither",
        );
        check(
            self.c2s.max_auth_failures >= 1,
            "c2s.max_auth_failures",
            "must be at least 1",
        );
        check(
            self.c2s.scram_iterations >= 4096,
            "c2s.scram_iterations",
            "must be at least 4096 (RFC 7677)",
        );
        check(
            self.c2s.scram_iterations <= starling_sasl::MAX_ITERATIONS,
            "c2s.scram_iterations",
            "must be at most 600000 (each PLAIN login costs the server one PBKDF2 at this count)",
        );
        check(
            self.limits.max_elements_per_stanza >= 16,
            "limits.max_elements_per_stanza",
            "must be at least 16",
        );
        check(
            self.limits.outbound_queue_bytes >= self.limits.max_stanza_bytes,
            "limits.outbound_queue_bytes",
            "must be at least limits.max_stanza_bytes, or one largest stanza fills the queue",
        );
        check(
            self.limits.max_depth >= 2,
            "limits.max_depth",
            "must be at least 2",
        );
        check(
            self.limits.max_stanza_bytes >= 1024,
            "limits.max_stanza_bytes",
            "stanza size limits must be at least 1024 bytes",
        );
        check(
            self.limits.max_stanza_bytes_unauthenticated >= 1024,
            "limits.max_stanza_bytes_unauthenticated",
            "stanza size limits must be at least 1024 bytes",
        );
        for (value, key) in [
            (self.limits.max_connections, "limits.max_connections"),
            (
                self.limits.max_unauthenticated_connections_per_ip,
                "limits.max_unauthenticated_connections_per_ip",
            ),
            (
                self.limits.max_unauthenticated_connections,
                "limits.max_unauthenticated_connections",
            ),
        ] {
            check(value >= 1, key, "must be at least 1");
        }
        check(
            self.limits.max_connections_per_ip.is_none(),
            "limits.max_connections_per_ip",
            "was removed because it counted authenticated sessions, so users sharing one \
             address locked each other out; use limits.max_unauthenticated_connections_per_ip \
             (before authentication, default 32), c2s.max_resources_per_account (per account) \
             and, only if you want a per-address cap on sessions, limits.max_sessions_per_ip",
        );
        for (value, key) in [
            (
                self.limits.read_bytes_per_sec_unauthenticated,
                "limits.read_bytes_per_sec_unauthenticated",
            ),
            (self.limits.read_bytes_per_sec, "limits.read_bytes_per_sec"),
            (self.limits.read_burst_bytes, "limits.read_burst_bytes"),
        ] {
            check(
                value >= 1024,
                key,
                "read rates and read_burst_bytes must be at least 1024",
            );
        }
        if let Some(addr) = self.metrics.listen {
            check(
                addr.ip().is_loopback(),
                "metrics.listen",
                &format!("{addr} is not a loopback address; the endpoint is unauthenticated"),
            );
        }
        for (value, key) in [
            (self.c2s.auth_timeout_secs, "c2s.auth_timeout_secs"),
            (self.c2s.idle_timeout_secs, "c2s.idle_timeout_secs"),
            (
                self.c2s.idle_ping_timeout_secs,
                "c2s.idle_ping_timeout_secs",
            ),
        ] {
            check(value >= 1, key, "timeouts must be at least 1 second");
        }
        check(
            self.storage.backend != StorageBackend::Postgres || self.storage.postgres_url.is_some(),
            "storage.postgres_url",
            "required when storage.backend = \"postgres\"",
        );
        if let (StorageBackend::Postgres, Some(url)) =
            (self.storage.backend, &self.storage.postgres_url)
            && let Err(problem) =
                postgres_tls_problem(url, self.storage.postgres_allow_plaintext_remote)
        {
            problems.push(("storage.postgres_url".to_owned(), problem));
        }
        problems.extend(self.archive.problems());
        problems
    }

    /// Where `host`'s certificate comes from: its `[tls.hosts]` entry, else the top-level
    /// pair, else a generated one — the first host's in `<data_dir>/tls/cert.pem` (where the
    /// single generated certificate of earlier versions lives, so clients that accepted it
    /// keep seeing it), every other host's in `<data_dir>/tls/<host>/cert.pem`.
    pub fn certificate_for(&self, host: &str) -> CertificateSource {
        if let Some(host_tls) = self.tls.hosts.get(host) {
            return CertificateSource::Configured {
                key: key_path(&["tls", "hosts", host]),
                certificate: host_tls.certificate.clone(),
                private_key: host_tls.private_key.clone(),
            };
        }
        if let (Some(certificate), Some(private_key)) =
            (&self.tls.certificate, &self.tls.private_key)
        {
            return CertificateSource::Configured {
                key: "tls".to_owned(),
                certificate: certificate.clone(),
                private_key: private_key.clone(),
            };
        }
        let mut dir = self.data_dir.join("tls");
        if self.hosts.first().map(String::as_str) != Some(host) {
            dir.push(host);
        }
        CertificateSource::Generated {
            certificate: dir.join("cert.pem"),
            private_key: dir.join("key.pem"),
        }
    }

    /// SIGHUP: combine the running configuration with `new`, freshly loaded from the file.
    /// Keys that only take effect at start (what is served, where it is stored, where the
    /// server listens, and what the registry and router were built with) keep their running
    /// values and are named in [`Reload::needs_restart`]; every other key is taken from `new`
    /// and applies to connections accepted from now on.
    pub fn reload(&self, mut new: Config) -> Reload {
        let mut needs_restart = Vec::new();
        macro_rules! restart_only {
            ($($name:literal => $($field:ident).+;)*) => {$(
                if self.$($field).+ != new.$($field).+ {
                    needs_restart.push($name);
                    new.$($field).+ = self.$($field).+.clone();
                }
            )*};
        }
        restart_only! {
            "hosts" => hosts;
            "data_dir" => data_dir;
            "listen.starttls" => listen.starttls;
            "listen.direct_tls" => listen.direct_tls;
            "storage.backend" => storage.backend;
            "storage.sqlite_path" => storage.sqlite_path;
            "storage.postgres_url" => storage.postgres_url;
            "storage.postgres_allow_plaintext_remote" => storage.postgres_allow_plaintext_remote;
            "admin.enabled" => admin.enabled;
            "admin.socket" => admin.socket;
            "log.format" => log.format;
            "metrics.listen" => metrics.listen;
            "modules" => modules;
            "archive" => archive;
            "c2s.conflict_policy" => c2s.conflict_policy;
            "c2s.max_resources_per_account" => c2s.max_resources_per_account;
            "limits.outbound_queue_stanzas" => limits.outbound_queue_stanzas;
            "limits.outbound_queue_bytes" => limits.outbound_queue_bytes;
            "limits.outbound_queue_grace_secs" => limits.outbound_queue_grace_secs;
            "limits.max_roster_items" => limits.max_roster_items;
            "limits.max_roster_text_bytes" => limits.max_roster_text_bytes;
            "limits.max_offline_messages" => limits.max_offline_messages;
            "limits.max_directed_presences" => limits.max_directed_presences;
            "limits.max_offline_bytes" => limits.max_offline_bytes;
            "limits.max_blocklist_items" => limits.max_blocklist_items;
            "limits.max_private_bytes" => limits.max_private_bytes;
            "limits.max_vcard_bytes" => limits.max_vcard_bytes;
            "limits.csi_max_held_stanzas" => limits.csi_max_held_stanzas;
            "limits.csi_max_held_bytes" => limits.csi_max_held_bytes;
        }
        let mut changed = Vec::new();
        macro_rules! live {
            ($($name:literal => $($field:ident).+;)*) => {$(
                if self.$($field).+ != new.$($field).+ {
                    changed.push($name);
                }
            )*};
        }
        live! {
            "shutdown_grace_secs" => shutdown_grace_secs;
            "stream_management" => stream_management;
            "log.level" => log.level;
            "tls.certificate" => tls.certificate;
            "tls.private_key" => tls.private_key;
            "tls.hosts" => tls.hosts;
            "c2s.require_encryption" => c2s.require_encryption;
            "c2s.allow_plain_without_tls" => c2s.allow_plain_without_tls;
            "c2s.max_auth_failures" => c2s.max_auth_failures;
            "c2s.tls_handshake_timeout_secs" => c2s.tls_handshake_timeout_secs;
            "c2s.scram_iterations" => c2s.scram_iterations;
            "c2s.scram_offer" => c2s.scram_offer;
            "c2s.auth_timeout_secs" => c2s.auth_timeout_secs;
            "c2s.idle_timeout_secs" => c2s.idle_timeout_secs;
            "c2s.idle_ping_timeout_secs" => c2s.idle_ping_timeout_secs;
            "limits.max_stanza_bytes" => limits.max_stanza_bytes;
            "limits.max_stanza_bytes_unauthenticated" => limits.max_stanza_bytes_unauthenticated;
            "limits.max_depth" => limits.max_depth;
            "limits.max_attributes_per_element" => limits.max_attributes_per_element;
            "limits.max_elements_per_stanza" => limits.max_elements_per_stanza;
            "limits.max_connections" => limits.max_connections;
            "limits.max_unauthenticated_connections_per_ip" => limits.max_unauthenticated_connections_per_ip;
            "limits.max_sessions_per_ip" => limits.max_sessions_per_ip;
            "limits.max_unauthenticated_connections" => limits.max_unauthenticated_connections;
            "limits.read_bytes_per_sec_unauthenticated" => limits.read_bytes_per_sec_unauthenticated;
            "limits.read_bytes_per_sec" => limits.read_bytes_per_sec;
            "limits.read_burst_bytes" => limits.read_burst_bytes;
            "limits.auth_failure_delay_ms" => limits.auth_failure_delay_ms;
            "limits.max_auth_failure_delay_ms" => limits.max_auth_failure_delay_ms;
            "limits.auth_failure_window_secs" => limits.auth_failure_window_secs;
        }
        Reload {
            config: new,
            needs_restart,
            changed,
        }
    }

    /// The admin socket's path.
    pub fn admin_socket(&self) -> PathBuf {
        self.admin
            .socket
            .clone()
            .unwrap_or_else(|| self.data_dir.join("admin.sock"))
    }

    /// The SQLite database file.
    pub fn sqlite_path(&self) -> PathBuf {
        self.storage
            .sqlite_path
            .clone()
            .unwrap_or_else(|| self.data_dir.join("starling.sqlite"))
    }

    /// The session registry's view of this configuration.
    pub fn registry_config(&self) -> starling_registry::RegistryConfig {
        starling_registry::RegistryConfig {
            conflict_policy: match self.c2s.conflict_policy {
                ConflictPolicyConfig::KickOld => starling_registry::ConflictPolicy::KickOld,
                ConflictPolicyConfig::RefuseNew => starling_registry::ConflictPolicy::RefuseNew,
            },
            max_resources_per_account: self.c2s.max_resources_per_account,
            queue_depth: self.limits.outbound_queue_stanzas,
            queue_bytes: self.limits.outbound_queue_bytes,
            overflow_grace: std::time::Duration::from_secs(self.limits.outbound_queue_grace_secs),
        }
    }

    /// The per-peer admission limits' view of `[limits]`.
    pub fn peer_settings(&self) -> starling_limits::PeerSettings {
        starling_limits::PeerSettings {
            max_unauthenticated_per_ip: self.limits.max_unauthenticated_connections_per_ip,
            max_sessions_per_ip: self.limits.max_sessions_per_ip,
            max_unauthenticated: self.limits.max_unauthenticated_connections,
            auth_failure_delay: std::time::Duration::from_millis(self.limits.auth_failure_delay_ms),
            max_auth_failure_delay: std::time::Duration::from_millis(
                self.limits.max_auth_failure_delay_ms,
            ),
            auth_failure_window: std::time::Duration::from_secs(
                self.limits.auth_failure_window_secs,
            ),
        }
    }

    /// One connection's timers and read rates.
    pub fn connection_limits(&self) -> starling_limits::ConnectionLimits {
        starling_limits::ConnectionLimits {
            auth_timeout: std::time::Duration::from_secs(self.c2s.auth_timeout_secs),
            idle_timeout: std::time::Duration::from_secs(self.c2s.idle_timeout_secs),
            idle_ping_timeout: std::time::Duration::from_secs(self.c2s.idle_ping_timeout_secs),
            read_bytes_per_sec_unauthenticated: self.limits.read_bytes_per_sec_unauthenticated,
            read_bytes_per_sec: self.limits.read_bytes_per_sec,
            read_burst_bytes: self.limits.read_burst_bytes,
            tls_handshake_timeout: std::time::Duration::from_secs(
                self.c2s.tls_handshake_timeout_secs,
            ),
        }
    }

    /// The router's limits.
    pub fn router_limits(&self) -> starling_router::RouterLimits {
        starling_router::RouterLimits {
            roster: starling_roster::RosterLimits {
                max_items: self.limits.max_roster_items,
                max_name_bytes: self.limits.max_roster_text_bytes,
                max_group_bytes: self.limits.max_roster_text_bytes,
                ..starling_roster::RosterLimits::default()
            },
            max_offline_messages: self.limits.max_offline_messages,
            max_directed_presences: self.limits.max_directed_presences,
            max_offline_bytes: self.limits.max_offline_bytes,
        }
    }

    /// The stream engine's view of this configuration.
    pub fn stream_config(&self) -> starling_stream::StreamConfig {
        let mut stream = starling_stream::StreamConfig::new(self.hosts.clone());
        stream.require_encryption = self.c2s.require_encryption;
        stream.allow_plain_without_tls = self.c2s.allow_plain_without_tls;
        stream.max_auth_failures = self.c2s.max_auth_failures;
        stream.new_account_iterations = self.c2s.scram_iterations;
        stream.extra_bound_features = starling_roster::stream_features();
        stream.stream_management = self.stream_management.engine();
        let mut limits = starling_xml::Limits::authenticated();
        limits.max_depth = self.limits.max_depth;
        limits.max_attributes_per_element = self.limits.max_attributes_per_element;
        limits.max_elements_per_stanza = self.limits.max_elements_per_stanza;
        limits.max_stanza_bytes = self.limits.max_stanza_bytes;
        stream.limits_authenticated = limits;
        limits.max_stanza_bytes = self.limits.max_stanza_bytes_unauthenticated;
        stream.limits_unauthenticated = limits;
        stream
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_gives_secure_defaults() {
        let config: Config = toml::from_str("").unwrap();
        assert_eq!(config.hosts, vec!["localhost".to_owned()]);
        assert!(config.c2s.require_encryption);
        assert!(!config.c2s.allow_plain_without_tls);
        assert_eq!(config.limits.max_stanza_bytes, 256 * 1024);
        assert_eq!(config.limits.max_stanza_bytes_unauthenticated, 16 * 1024);
        assert_eq!(
            config.peer_settings(),
            starling_limits::PeerSettings::default()
        );
    }

    #[test]
    fn unknown_keys_are_errors() {
        let err = toml::from_str::<Config>("[c2s]\nrequire_encrption = false\n").unwrap_err();
        assert!(
            err.to_string()
                .contains("unknown field `require_encrption`"),
            "{err}"
        );
    }

    #[test]
    fn example_config_in_repository_parses() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../starling.example.toml");
        let config = Config::load(Some(&path)).unwrap();
        assert_eq!(config.hosts, vec!["localhost".to_owned()]);
    }

    #[test]
    fn every_key_of_the_example_is_documented() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let example = std::fs::read_to_string(root.join("starling.example.toml")).unwrap();
        let docs = std::fs::read_to_string(root.join("docs/configuration.md")).unwrap();
        let mut keys = 0;
        for line in example.lines() {
            let line = line.trim_start_matches(['#', ' ']);
            let Some((key, _)) = line.split_once(" = ") else {
                continue;
            };
            if key.chars().all(|c| c.is_ascii_lowercase() || c == '_') {
                keys += 1;
                assert!(
                    docs.contains(&format!("`{key}`")),
                    "{key} is not in docs/configuration.md"
                );
            }
        }
        assert!(keys > 40, "only {keys} keys found");
    }

    #[test]
    fn reload_keeps_restart_only_keys_and_takes_the_rest() {
        let running = Config::default();
        let mut new = Config {
            hosts: vec!["other.test".to_owned()],
            ..Config::default()
        };
        new.storage.backend = StorageBackend::Postgres;
        new.limits.max_stanza_bytes = 4096;
        new.c2s.auth_timeout_secs = 5;
        new.tls.hosts.insert(
            "localhost".to_owned(),
            HostTls {
                certificate: PathBuf::from("l.pem"),
                private_key: PathBuf::from("l.key"),
            },
        );
        let reload = running.reload(new);
        assert_eq!(reload.needs_restart, ["hosts", "storage.backend"]);
        assert_eq!(
            reload.changed,
            [
                "tls.hosts",
                "c2s.auth_timeout_secs",
                "limits.max_stanza_bytes"
            ]
        );
        assert_eq!(reload.config.tls.hosts.len(), 1);
        assert_eq!(reload.config.hosts, ["localhost"]);
        assert_eq!(reload.config.storage.backend, StorageBackend::Sqlite);
        assert_eq!(reload.config.limits.max_stanza_bytes, 4096);
        assert_eq!(reload.config.c2s.auth_timeout_secs, 5);
        let unchanged = running.reload(Config::default());
        assert!(unchanged.needs_restart.is_empty() && unchanged.changed.is_empty());
    }

    fn problems_of(text: &str) -> Vec<String> {
        Config::parse(text)
            .problems
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn half_a_tls_pair_is_rejected() {
        assert_eq!(
            problems_of("hosts = ['a.test']\n[tls]\ncertificate = 'a.pem'\n"),
            ["line 2: tls: set both certificate and private_key, or neither"]
        );
    }

    #[test]
    fn every_problem_is_reported_with_key_and_line() {
        let problems = problems_of(
            "hosts = ['a.test', 'b.test']\n\n[c2s]\nmax_auth_failures = 0\nrequire_encrption = true\n\n[limits]\nmax_depth = 1\n\n[tls.hosts.'c.test']\ncertificate = 'c.pem'\nprivate_key = 'c.key'\n",
        );
        assert_eq!(problems.len(), 4, "{problems:?}");
        assert_eq!(
            problems[0],
            "line 4: c2s.max_auth_failures: must be at least 1"
        );
        assert!(
            problems[1]
                .starts_with("line 5: c2s.require_encrption: unknown field `require_encrption`"),
            "{problems:?}"
        );
        assert_eq!(
            problems[2..],
            [
                "line 8: limits.max_depth: must be at least 2",
                "line 10: tls.hosts.\"c.test\": \"c.test\" is not one of `hosts` (a.test, b.test)",
            ]
        );
    }

    #[test]
    fn load_names_the_file_and_every_problem_on_one_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("starling.toml");
        std::fs::write(&path, "hosts = []\n[limits]\nmax_stanza_bytes = 10\n").unwrap();
        let err = Config::load(Some(&path)).unwrap_err().to_string();
        assert_eq!(
            err,
            format!(
                "invalid config file {}: line 1: hosts: at least one host is required; \
                 line 3: limits.max_stanza_bytes: stanza size limits must be at least 1024 bytes",
                path.display()
            )
        );
    }

    #[test]
    fn per_host_certificates_fall_back_to_the_pair_then_to_generated_ones() {
        let config = Config::parse(
            "hosts = ['A.test', 'b.test', 'c.test']\ndata_dir = '/d'\n[tls.hosts.'B.TEST']\ncertificate = 'b.pem'\nprivate_key = 'b.key'\n",
        )
        .config
        .unwrap();
        assert_eq!(config.hosts, ["a.test", "b.test", "c.test"]);
        assert_eq!(
            config.certificate_for("b.test").certificate(),
            Path::new("b.pem")
        );
        assert_eq!(
            config.certificate_for("a.test"),
            CertificateSource::Generated {
                certificate: PathBuf::from("/d/tls/cert.pem"),
                private_key: PathBuf::from("/d/tls/key.pem"),
            }
        );
        assert_eq!(
            config.certificate_for("c.test").certificate(),
            Path::new("/d/tls/c.test/cert.pem")
        );
        let mut with_pair = config.clone();
        with_pair.tls.certificate = Some(PathBuf::from("all.pem"));
        with_pair.tls.private_key = Some(PathBuf::from("all.key"));
        assert_eq!(
            with_pair.certificate_for("c.test").certificate(),
            Path::new("all.pem")
        );
        assert_eq!(
            with_pair.certificate_for("b.test").certificate(),
            Path::new("b.pem")
        );
    }
}
