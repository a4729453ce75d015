//! Prosody's configuration (`prosody.cfg.lua` and the files it includes) translated into a
//! `starling.toml`, without running it.
//!
//! The files are read with [`crate::lua::script`]: assignments of constants and calls such as
//! `VirtualHost "example.org"` are understood, everything else is named and skipped. Reading
//! is bounded: [`MAX_CONFIG_BYTES`] per file, [`MAX_CONFIG_FILES`] files, includes nested at
//! most [`MAX_INCLUDE_DEPTH`] deep.
//!
//! What is translated: the virtual hosts (disabled ones left out), their certificates (an
//! `ssl` table, else Prosody's own search of its `certificates` directory:
//! `<host>.crt`/`.key`, `<host>/fullchain.pem`/`privkey.pem`, `<host>.pem`, then the parent
//! domain's), the c2s ports and interfaces (STARTTLS and direct TLS), `c2s_require_encryption`,
//! `allow_unencrypted_plain_auth`, `default_iteration_count`, `c2s_stanza_size_limit`,
//! `c2s_timeout`, mod_limits' c2s rate and burst, the storage backend, and `modules_enabled` /
//! `modules_disabled` as `[modules]` ([`MODULES`] pairs Starling's modules with Prosody's).
//! Everything else — modules Starling does not have yet, components, server-to-server and HTTP
//! ports, settings without an equivalent, statements that are not constants — becomes one
//! note each in [`Translation::notes`]. As Starling gains a module, it gets a line in
//! [`MODULES`] and its notes go away.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::io::Read as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};

use jid::DomainPart;

use crate::BackupError;
use crate::lua::script::{self, Statement, StatementKind};
use crate::lua::{Table, Value};

/// Largest configuration file read.
pub const MAX_CONFIG_BYTES: u64 = 1024 * 1024;

/// Most files read for one configuration, the main one and every include.
pub const MAX_CONFIG_FILES: usize = 64;

/// Deepest nesting of `Include`.
pub const MAX_INCLUDE_DEPTH: usize = 8;

/// Starling's modules (`[modules]` keys) and the Prosody modules that provide the same thing.
/// A Starling module is on when any served host loads one of its Prosody counterparts.
pub const MODULES: &[(&str, &[&str])] = &[
    ("ping", &["ping"]),
    ("version", &["version"]),
    ("time", &["time"]),
    ("uptime", &["uptime"]),
    ("blocking", &["blocklist"]),
    ("private", &["private"]),
    ("vcard", &["vcard", "vcard_legacy"]),
    ("last", &["lastactivity"]),
    // Prosody's mod_disco puts the server's capabilities hash in the stream features.
    ("caps", &["disco"]),
];

/// Prosody modules whose work Starling does without a module, or that have no meaning here.
const BUILT_IN: &[&str] = &[
    "roster",
    "saslauth",
    "tls",
    "presence",
    "message",
    "iq",
    "c2s",
    "offline",
    "posix",
    "s2s_auth_certs",
    // mod_limits is translated into [limits].
    "limits",
];

/// What to say about Prosody modules Starling lacks, where more than the name helps.
const MODULE_NOTES: &[(&str, &str)] = &[
    (
        "s2s",
        "server-to-server federation is not implemented yet; remote domains get <remote-server-not-found/>",
    ),
    (
        "dialback",
        "server-to-server federation is not implemented yet",
    ),
    (
        "carbons",
        "XEP-0280 message carbons are not implemented yet",
    ),
    ("mam", "XEP-0313 message archives are not implemented yet"),
    (
        "smacks",
        "XEP-0198 stream management is not implemented yet",
    ),
    (
        "csi_simple",
        "XEP-0352 client state indication is not implemented yet",
    ),
    (
        "csi",
        "XEP-0352 client state indication is not implemented yet",
    ),
    ("pep", "XEP-0163 personal eventing is not implemented yet"),
    (
        "bookmarks",
        "XEP-0402 bookmarks (PEP) are not implemented yet; XEP-0049 private storage is",
    ),
    (
        "vcard4",
        "XEP-0292 vCard4 (PEP) is not implemented yet; vcard-temp is (modules.vcard)",
    ),
    (
        "register",
        "in-band registration is not offered; create accounts with `starling adduser`",
    ),
    (
        "register_ibr",
        "in-band registration is not offered; create accounts with `starling adduser`",
    ),
    (
        "invites",
        "invitations are not implemented; create accounts with `starling adduser`",
    ),
    (
        "invites_adhoc",
        "invitations are not implemented; create accounts with `starling adduser`",
    ),
    (
        "invites_register",
        "invitations are not implemented; create accounts with `starling adduser`",
    ),
    (
        "admin_adhoc",
        "ad-hoc administration is not implemented; use the `starling` operator commands",
    ),
    (
        "admin_shell",
        "Starling's operator commands (list-sessions, kick, announce) use its admin socket",
    ),
    (
        "admin_telnet",
        "Starling's operator commands (list-sessions, kick, announce) use its admin socket",
    ),
    ("announce", "use `starling announce HOST`"),
    ("bosh", "BOSH (HTTP) is not implemented yet"),
    ("websocket", "XMPP over WebSocket is not implemented yet"),
    (
        "http_file_share",
        "XEP-0363 HTTP upload is not implemented yet",
    ),
    ("http_upload", "XEP-0363 HTTP upload is not implemented yet"),
    ("muc", "group chat (XEP-0045) is not implemented yet"),
    (
        "http_openmetrics",
        "Starling serves Prometheus metrics itself (metrics.listen)",
    ),
];

/// Settings of the global section this translation reads; any other is named in a note
/// unless [`IGNORED`] lists it.
const READ: &[&str] = &[
    "modules_enabled",
    "modules_disabled",
    "ssl",
    "certificates",
    "interfaces",
    "interface",
    "c2s_ports",
    "c2s_interfaces",
    "c2s_direct_tls_ports",
    "c2s_direct_tls_interfaces",
    "legacy_ssl_ports",
    "legacy_ssl_interfaces",
    "c2s_require_encryption",
    "require_encryption",
    "allow_unencrypted_plain_auth",
    "default_iteration_count",
    "c2s_stanza_size_limit",
    "c2s_timeout",
    "limits",
    "storage",
    "sql",
    "authentication",
    "data_path",
    "enabled",
];

/// Settings with nothing to translate and nothing worth a note: they concern how Prosody
/// runs (pid file, daemon, its own logs and plugins) or features already noted as modules.
const IGNORED: &[&str] = &[
    "pidfile",
    "daemonize",
    "plugin_paths",
    "log",
    "admins",
    "archive_expires_after",
    "s2s_secure_auth",
    "s2s_insecure_domains",
    "s2s_secure_domains",
    "s2s_require_encryption",
    "s2s_ports",
    "s2s_interfaces",
    "component_ports",
    "component_interfaces",
    "http_ports",
    "http_interfaces",
    "https_ports",
    "https_interfaces",
    "limits_resolution",
    "network_backend",
    "use_libevent",
    "statistics",
    "statistics_interval",
    "turn_external_host",
    "turn_external_secret",
];

/// What [`translate`] produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Translation {
    /// The `starling.toml` text.
    pub toml: String,
    /// What has no equivalent, one line each, in the order found.
    pub notes: Vec<String>,
    /// The files read, the main one first.
    pub files: Vec<PathBuf>,
}

/// Settings for the output that Prosody's file does not say.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// `data_dir` to write; `None` leaves Starling's default.
    pub data_dir: Option<PathBuf>,
}

/// Reads `path` (and what it includes) and translates it.
pub fn translate(path: &Path, options: &Options) -> Result<Translation, BackupError> {
    let mut reader = Reader::default();
    reader.read_file(path, 0)?;
    let base = path.parent().unwrap_or(Path::new(".")).to_path_buf();
    Writer::new(&reader, &base, options).write()
}

/// A setting and where it was made.
#[derive(Debug, Clone)]
struct Setting {
    name: String,
    value: Value,
    /// `file:line`, for notes.
    at: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    Global,
    Host(String),
    Component {
        host: String,
        module: Option<String>,
    },
}

#[derive(Debug)]
struct Section {
    kind: Kind,
    settings: Vec<Setting>,
}

impl Section {
    /// The last value assigned to `name` in this section.
    fn get(&self, name: &str) -> Option<&Setting> {
        self.settings.iter().rev().find(|s| s.name == name)
    }
}

/// The sections of every file read, Prosody's way: `VirtualHost`, `Host` and `Component`
/// start (or go back to) a section, which lasts across `Include`s until the next one.
struct Reader {
    sections: Vec<Section>,
    current: usize,
    files: Vec<PathBuf>,
    notes: Vec<String>,
}

impl Default for Reader {
    fn default() -> Self {
        Self {
            sections: vec![Section {
                kind: Kind::Global,
                settings: Vec::new(),
            }],
            current: 0,
            files: Vec::new(),
            notes: Vec::new(),
        }
    }
}

impl Reader {
    fn read_file(&mut self, path: &Path, depth: usize) -> Result<(), BackupError> {
        if self.files.len() >= MAX_CONFIG_FILES {
            return Err(BackupError::invalid(
                path.display().to_string(),
                format!("more than {MAX_CONFIG_FILES} configuration files"),
            ));
        }
        self.files.push(path.to_path_buf());
        let bytes = read_bounded(path)?;
        let name = path.display().to_string();
        let statements = script::parse_script(&bytes).map_err(|err| {
            let line = bytes
                .get(..err.offset)
                .map_or(0, |b| b.iter().filter(|c| **c == b'\n').count())
                + 1;
            BackupError::invalid(format!("{name}:{line}"), err.reason)
        })?;
        let dir = path.parent().unwrap_or(Path::new(".")).to_path_buf();
        for Statement { line, kind } in statements {
            let at = format!("{name}:{line}");
            match kind {
                StatementKind::Assign { name, value } => {
                    self.sections[self.current]
                        .settings
                        .push(Setting { name, value, at });
                }
                StatementKind::Call { name, args } => self.call(&name, &args, &at, &dir, depth)?,
                StatementKind::Unreadable { text } => self.notes.push(format!(
                    "{at}: not read, as it is not a constant (set what it does by hand): {text}"
                )),
            }
        }
        Ok(())
    }

    fn call(
        &mut self,
        name: &str,
        args: &[Value],
        at: &str,
        dir: &Path,
        depth: usize,
    ) -> Result<(), BackupError> {
        let text = |i: usize| args.get(i).and_then(Value::as_str).map(str::to_owned);
        match (name, text(0)) {
            ("VirtualHost" | "Host", Some(host)) if host == "*" => self.current = 0,
            ("VirtualHost" | "Host", Some(host)) => self.enter(Kind::Host(host)),
            ("Component", Some(host)) => self.enter(Kind::Component {
                host,
                module: text(1),
            }),
            ("Include", Some(pattern)) => {
                if depth >= MAX_INCLUDE_DEPTH {
                    return Err(BackupError::invalid(
                        at,
                        format!("includes nest deeper than {MAX_INCLUDE_DEPTH}"),
                    ));
                }
                let files = expand_include(dir, &pattern);
                if files.is_empty() {
                    self.notes
                        .push(format!("{at}: Include {pattern:?} matches no file"));
                }
                for file in files {
                    self.read_file(&file, depth + 1)?;
                }
            }
            _ => self.notes.push(format!(
                "{at}: not read: {name}(…) is not a section or an Include"
            )),
        }
        Ok(())
    }

    fn enter(&mut self, kind: Kind) {
        let same = |section: &Section| match (&section.kind, &kind) {
            (Kind::Host(a), Kind::Host(b)) => a == b,
            (Kind::Component { host: a, .. }, Kind::Component { host: b, .. }) => a == b,
            _ => false,
        };
        self.current = match self.sections.iter().position(same) {
            Some(index) => index,
            None => {
                self.sections.push(Section {
                    kind,
                    settings: Vec::new(),
                });
                self.sections.len() - 1
            }
        };
    }

    fn global(&self) -> &Section {
        &self.sections[0]
    }
}

/// A file's bytes, at most [`MAX_CONFIG_BYTES`].
fn read_bounded(path: &Path) -> Result<Vec<u8>, BackupError> {
    let io = |source| BackupError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let mut bytes = Vec::new();
    file.take(MAX_CONFIG_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    if bytes.len() as u64 > MAX_CONFIG_BYTES {
        return Err(BackupError::TooLarge {
            limit_bytes: MAX_CONFIG_BYTES,
        });
    }
    Ok(bytes)
}

/// The files an `Include` names, relative to the including file's directory: `*` and `?`
/// match within the last path component (as Prosody's do), sorted by name.
fn expand_include(dir: &Path, pattern: &str) -> Vec<PathBuf> {
    let path = dir.join(pattern);
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return Vec::new();
    };
    if !name.contains(['*', '?']) {
        return if path.is_file() {
            vec![path]
        } else {
            Vec::new()
        };
    }
    let parent = path.parent().unwrap_or(Path::new("."));
    let Ok(entries) = std::fs::read_dir(parent) else {
        return Vec::new();
    };
    let mut found: Vec<PathBuf> = entries
        .flatten()
        .filter(|entry| {
            entry
                .file_name()
                .to_str()
                .is_some_and(|entry_name| glob_matches(name.as_bytes(), entry_name.as_bytes()))
        })
        .map(|entry| entry.path())
        .filter(|path| path.is_file())
        .collect();
    found.sort();
    // Bounded here too, so a directory of thousands of matches is refused by read_file's
    // count rather than listed in full.
    found.truncate(MAX_CONFIG_FILES + 1);
    found
}

/// `*` (any run) and `?` (one byte) against `name`, iteratively (no backtracking blow-up).
fn glob_matches(pattern: &[u8], name: &[u8]) -> bool {
    let (mut p, mut n) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, n));
                p += 1;
            }
            Some(b'?') => {
                p += 1;
                n += 1;
            }
            Some(c) if Some(c) == name.get(n) => {
                p += 1;
                n += 1;
            }
            _ => match star {
                Some((sp, sn)) => {
                    p = sp + 1;
                    n = sn + 1;
                    star = Some((sp, sn + 1));
                }
                None => return false,
            },
        }
    }
    pattern
        .get(p..)
        .unwrap_or_default()
        .iter()
        .all(|c| *c == b'*')
}

/// Builds the TOML and the notes from what was read.
struct Writer<'a> {
    reader: &'a Reader,
    /// The main file's directory, against which Prosody resolves relative paths.
    base: PathBuf,
    options: &'a Options,
    notes: Vec<String>,
    /// Served hosts (normalised) and their sections.
    hosts: Vec<(String, &'a Section)>,
}

impl<'a> Writer<'a> {
    fn new(reader: &'a Reader, base: &Path, options: &'a Options) -> Self {
        Self {
            reader,
            base: base.to_path_buf(),
            options,
            notes: reader.notes.clone(),
            hosts: Vec::new(),
        }
    }

    fn write(mut self) -> Result<Translation, BackupError> {
        self.collect_hosts();
        if self.hosts.is_empty() {
            return Err(BackupError::invalid(
                self.reader
                    .files
                    .first()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default(),
                "no enabled VirtualHost; there is nothing to serve",
            ));
        }
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# Written by `starling import-prosody-config` from {}.",
            self.reader
                .files
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
        out.push_str(
            "# Check it with `starling check-config`; docs/configuration.md explains each key.\n\n",
        );
        let hosts: Vec<String> = self.hosts.iter().map(|(h, _)| h.clone()).collect();
        let _ = writeln!(out, "hosts = {}", toml_list(&hosts));
        if let Some(dir) = &self.options.data_dir {
            let _ = writeln!(
                out,
                "data_dir = {}",
                toml_string(&dir.display().to_string())
            );
        }
        out.push('\n');
        self.listen(&mut out);
        self.tls(&mut out);
        self.c2s(&mut out);
        self.limits(&mut out);
        self.storage(&mut out);
        self.modules(&mut out);
        self.components();
        self.other_settings();
        Ok(Translation {
            toml: out,
            notes: self.notes,
            files: self.reader.files.clone(),
        })
    }

    fn note(&mut self, text: impl Into<String>) {
        self.notes.push(text.into());
    }

    fn global(&self, name: &str) -> Option<&'a Setting> {
        self.reader.global().get(name)
    }

    fn collect_hosts(&mut self) {
        let reader = self.reader;
        for section in &reader.sections {
            let Kind::Host(name) = &section.kind else {
                continue;
            };
            if matches!(
                section.get("enabled").map(|s| &s.value),
                Some(Value::Bool(false))
            ) {
                self.note(format!(
                    "host {name}: disabled in Prosody (enabled = false); not served"
                ));
                continue;
            }
            match DomainPart::new(name) {
                Ok(domain) if self.hosts.iter().any(|(h, _)| h == domain.as_str()) => {}
                Ok(domain) => self.hosts.push((domain.as_str().to_owned(), section)),
                Err(err) => self.note(format!(
                    "host {name:?}: not a valid domain ({err}); not served"
                )),
            }
        }
    }

    // ---- [listen] -------------------------------------------------------------------------

    fn listen(&mut self, out: &mut String) {
        let starttls_ports = self.ports(&["c2s_ports"], &[5222]);
        let starttls_ifaces = self.interfaces("c2s_interfaces");
        let direct_ports = self.ports(&["c2s_direct_tls_ports", "legacy_ssl_ports"], &[]);
        let direct_ifaces = match self.global("c2s_direct_tls_interfaces") {
            Some(_) => self.interfaces("c2s_direct_tls_interfaces"),
            None => self.interfaces("legacy_ssl_interfaces"),
        };
        let mut kept: Vec<SocketAddr> = Vec::new();
        let mut starttls = self.addresses(&starttls_ifaces, &starttls_ports, &mut kept);
        let direct = self.addresses(&direct_ifaces, &direct_ports, &mut kept);
        if starttls.is_empty() && direct.is_empty() {
            let fallback = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 5222);
            self.note(format!(
                "listen: Prosody's configuration gives no client port; {fallback} is used"
            ));
            starttls.push(fallback);
        }
        out.push_str("[listen]\n");
        let _ = writeln!(out, "starttls = {}", toml_list(&starttls));
        let _ = writeln!(out, "direct_tls = {}", toml_list(&direct));
        out.push('\n');
        for (name, what) in [
            ("s2s_ports", "server-to-server"),
            ("component_ports", "external components (XEP-0114)"),
            ("http_ports", "HTTP"),
            ("https_ports", "HTTPS"),
        ] {
            if let Some(setting) = self.global(name) {
                let at = setting.at.clone();
                self.note(format!(
                    "{at}: {name}: {what} is not implemented in Starling yet; nothing listens there"
                ));
            }
        }
    }

    /// The first of `names` that is set, as ports; `default` when none is.
    fn ports(&mut self, names: &[&str], default: &[u16]) -> Vec<u16> {
        let mut ports = Vec::new();
        let mut any_set = false;
        for name in names {
            let Some(setting) = self.global(name) else {
                continue;
            };
            any_set = true;
            for value in list(&setting.value) {
                match value {
                    Value::Number(n) if n.fract() == 0.0 && (1.0..=65535.0).contains(n) => {
                        // Checked to be a whole number in u16's range.
                        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                        ports.push(*n as u16);
                    }
                    other => {
                        let at = setting.at.clone();
                        self.note(format!(
                            "{at}: {name}: {} is not a port; left out",
                            show(other)
                        ));
                    }
                }
            }
        }
        if any_set { ports } else { default.to_vec() }
    }

    /// `name`, else `interfaces` (or the old `interface`), else Prosody's default: every IPv4
    /// and IPv6 address.
    fn interfaces(&mut self, name: &str) -> Vec<(IpAddr, String)> {
        let setting = self
            .global(name)
            .or_else(|| self.global("interfaces"))
            .or_else(|| self.global("interface"));
        let values: Vec<String> = match setting {
            Some(setting) => list(&setting.value)
                .into_iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect(),
            None => vec!["*".to_owned(), "::".to_owned()],
        };
        let mut out = Vec::new();
        for value in values {
            let ip = match value.as_str() {
                "*" => Some(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
                "::" => Some(IpAddr::V6(Ipv6Addr::UNSPECIFIED)),
                other => other.parse::<IpAddr>().ok(),
            };
            match ip {
                Some(ip) => out.push((ip, value)),
                None => self.note(format!(
                    "listen: interface {value:?} is not an IP address; Starling listens on addresses only, left out"
                )),
            }
        }
        out
    }

    /// Every interface with every port, unspecified addresses first, leaving out any that
    /// cannot be bound next to one already `kept` (check-config's rule).
    fn addresses(
        &mut self,
        interfaces: &[(IpAddr, String)],
        ports: &[u16],
        kept: &mut Vec<SocketAddr>,
    ) -> Vec<SocketAddr> {
        let mut candidates: Vec<(SocketAddr, &str)> = Vec::new();
        for (ip, text) in interfaces {
            for port in ports {
                candidates.push((SocketAddr::new(*ip, *port), text));
            }
        }
        // 0.0.0.0 before [::] before specific addresses: the widest IPv4 bind wins.
        candidates.sort_by_key(|(addr, _)| match addr.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => 0,
            IpAddr::V6(ip) if ip.is_unspecified() => 1,
            _ => 2,
        });
        let mut mine = Vec::new();
        for (addr, text) in candidates {
            if let Some(other) = kept.iter().find(|k| collide(**k, addr)) {
                let hint = if addr.ip() == IpAddr::V6(Ipv6Addr::UNSPECIFIED) {
                    format!(
                        "; on Linux [::]:{} takes IPv4 too, so use it in place of {other} if \
                         this machine has IPv6",
                        addr.port()
                    )
                } else {
                    String::new()
                };
                self.note(format!(
                    "listen: left out {addr} (Prosody's {text:?}), which cannot be bound next to {other}{hint}"
                ));
                continue;
            }
            kept.push(addr);
            mine.push(addr);
        }
        mine
    }

    // ---- [tls] ----------------------------------------------------------------------------

    fn tls(&mut self, out: &mut String) {
        let mut global_pair = None;
        if let Some(setting) = self.global("ssl") {
            global_pair = self.ssl_pair(setting, "the global ssl");
        }
        let mut per_host = Vec::new();
        let hosts = self.hosts.clone();
        for (host, section) in &hosts {
            if let Some(setting) = section.get("ssl") {
                if let Some(pair) = self.ssl_pair(setting, &format!("host {host}'s ssl")) {
                    per_host.push((host.clone(), pair));
                }
                continue;
            }
            let dir = section
                .get("certificates")
                .or_else(|| self.global("certificates"))
                .and_then(|s| s.value.as_str())
                .unwrap_or("certs");
            let dir = self.resolve(dir);
            match find_certificate(&dir, host) {
                Some(pair) => per_host.push((host.clone(), pair)),
                None if global_pair.is_some() => {}
                None => self.note(format!(
                    "host {host}: no certificate in Prosody's configuration or in {}; Starling \
                     generates a self-signed one until [tls.hosts.\"{host}\"] names yours",
                    dir.display()
                )),
            }
        }
        if global_pair.is_none() && per_host.is_empty() {
            return;
        }
        out.push_str("[tls]\n");
        if let Some(pair) = &global_pair {
            write_pair(out, pair);
        }
        out.push('\n');
        for (host, pair) in per_host {
            let _ = writeln!(out, "[tls.hosts.{}]", toml_string(&host));
            write_pair(out, &pair);
            out.push('\n');
        }
    }

    /// The certificate and key of an `ssl` table, when both files exist.
    fn ssl_pair(&mut self, setting: &Setting, what: &str) -> Option<(PathBuf, PathBuf)> {
        let table = setting.value.as_table()?;
        let file = |key: &str| {
            table
                .get(key)
                .and_then(Value::as_str)
                .map(|p| self.resolve(p))
        };
        let (Some(certificate), Some(key)) = (file("certificate"), file("key")) else {
            self.note(format!(
                "{}: {what} has no certificate and key pair; not translated",
                setting.at
            ));
            return None;
        };
        for path in [&certificate, &key] {
            if !path.is_file() {
                self.note(format!(
                    "{}: {what} names {}, which does not exist here; not translated",
                    setting.at,
                    path.display()
                ));
                return None;
            }
        }
        Some((certificate, key))
    }

    /// A path Prosody would resolve against its configuration's directory.
    fn resolve(&self, path: &str) -> PathBuf {
        self.base.join(path)
    }

    // ---- [c2s] and [limits] ---------------------------------------------------------------

    fn c2s(&mut self, out: &mut String) {
        out.push_str("[c2s]\n");
        let require = self
            .bool_setting("c2s_require_encryption")
            .or_else(|| self.bool_setting("require_encryption"))
            .unwrap_or(true);
        let _ = writeln!(out, "require_encryption = {require}");
        let plain = self
            .bool_setting("allow_unencrypted_plain_auth")
            .unwrap_or(false);
        let _ = writeln!(out, "allow_plain_without_tls = {plain}");
        // Prosody 0.12's default for new passwords.
        let iterations = self
            .whole_number("default_iteration_count")
            .unwrap_or(10_000);
        let clamped = iterations.clamp(4096, u64::from(starling_sasl::MAX_ITERATIONS));
        if clamped != iterations {
            self.note(format!(
                "default_iteration_count = {iterations} is outside Starling's 4096..=600000; {clamped} is used"
            ));
        }
        let _ = writeln!(out, "scram_iterations = {clamped}");
        if let Some(timeout) = self.whole_number("c2s_timeout") {
            let _ = writeln!(out, "auth_timeout_secs = {}", timeout.max(1));
        }
        out.push('\n');
        match self.global("authentication").and_then(|s| s.value.as_str()) {
            None | Some("internal_hashed" | "internal_plain") => {}
            Some(other) => self.note(format!(
                "authentication = {other:?}: Starling authenticates against its own accounts \
                 only (SCRAM keys in its storage)"
            )),
        }
    }

    fn limits(&mut self, out: &mut String) {
        let mut lines = Vec::new();
        if let Some(size) = self.whole_number("c2s_stanza_size_limit") {
            let size = size.max(1024);
            lines.push(format!("max_stanza_bytes = {size}"));
            // Starling requires room for one largest stanza in a session's queue.
            if size > 2 * 1024 * 1024 {
                lines.push(format!("outbound_queue_bytes = {size}"));
            }
        }
        if self.loads("limits") {
            let configured = self
                .global("limits")
                .and_then(|s| s.value.as_table())
                .cloned();
            let (rate, burst) = match configured
                .as_ref()
                .and_then(|t| t.get("c2s"))
                .and_then(Value::as_table)
            {
                Some(c2s) => (
                    parse_rate(c2s.get("rate")).unwrap_or(3000),
                    parse_burst(c2s.get("burst")).unwrap_or(2),
                ),
                // mod_limits' own default for c2s.
                None => (10 * 1024, 2),
            };
            let rate = rate.max(1024);
            lines.push(format!("read_bytes_per_sec = {rate}"));
            lines.push(format!(
                "read_bytes_per_sec_unauthenticated = {}",
                rate.min(16_384)
            ));
            lines.push(format!(
                "read_burst_bytes = {}",
                rate.saturating_mul(burst).max(1024)
            ));
            if let Some(table) = &configured {
                for (key, _) in &table.fields {
                    let key = key.as_str().unwrap_or("?");
                    if key != "c2s" {
                        self.note(format!(
                            "limits.{key}: only client connections (c2s) have a Starling equivalent"
                        ));
                    }
                }
            }
        }
        if lines.is_empty() {
            return;
        }
        out.push_str("[limits]\n");
        for line in lines {
            out.push_str(&line);
            out.push('\n');
        }
        out.push('\n');
    }

    fn bool_setting(&self, name: &str) -> Option<bool> {
        match self.global(name).map(|s| &s.value) {
            Some(Value::Bool(b)) => Some(*b),
            _ => None,
        }
    }

    fn whole_number(&self, name: &str) -> Option<u64> {
        match self.global(name).map(|s| &s.value) {
            Some(Value::Number(n)) if n.fract() == 0.0 && *n >= 0.0 && *n <= 1e15 => {
                // Checked to be a whole, non-negative number well inside u64.
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                Some(*n as u64)
            }
            _ => None,
        }
    }

    // ---- [storage] ------------------------------------------------------------------------

    fn storage(&mut self, out: &mut String) {
        let data_path = self
            .global("data_path")
            .and_then(|s| s.value.as_str())
            .map_or_else(
                || "/var/lib/prosody".to_owned(),
                |p| self.resolve(p).display().to_string(),
            );
        let storage = self.global("storage").map(|s| s.value.clone());
        match storage.as_ref().and_then(Value::as_str) {
            None if storage.is_some() => self.note(
                "storage: Prosody keeps some stores in other backends (a per-store table); \
                 `starling import-prosody` reads the internal (file) stores only",
            ),
            None | Some("internal") => self.note(format!(
                "data: Prosody's accounts, rosters, vCards, private XML and block lists are not in \
                 its configuration; copy them with \
                 `starling --config <this file> import-prosody {data_path}`"
            )),
            Some("sql") => {
                self.sql(out);
                return;
            }
            Some(other) => self.note(format!(
                "storage = {other:?}: Starling keeps its data in SQLite (the default) or PostgreSQL; \
                 nothing can be imported from this backend"
            )),
        }
        out.push_str("[storage]\nbackend = \"sqlite\"\n\n");
    }

    fn sql(&mut self, out: &mut String) {
        let sql = self
            .global("sql")
            .and_then(|s| s.value.as_table())
            .cloned()
            .unwrap_or_default();
        let text = |key: &str| sql.get(key).and_then(Value::as_str).map(str::to_owned);
        let migrate = "`starling import-prosody` reads Prosody's internal (file) storage only: \
                       copy the data there first with prosody-migrator";
        match text("driver").as_deref() {
            Some("PostgreSQL") => {
                let host = text("host").unwrap_or_else(|| "localhost".to_owned());
                let is_local = matches!(host.as_str(), "localhost" | "127.0.0.1" | "::1")
                    || host.starts_with('/');
                let mut url = format!("host={}", libpq_value(&host));
                if let Some(port) = sql.get("port") {
                    let _ = write!(url, " port={}", libpq_value(&show(port)));
                }
                if let Some(user) = text("username") {
                    let _ = write!(url, " user={}", libpq_value(&user));
                }
                if let Some(password) = text("password") {
                    let _ = write!(url, " password={}", libpq_value(&password));
                }
                url.push_str(" dbname=starling");
                if !is_local {
                    url.push_str(" sslmode=require");
                    self.note(format!(
                        "storage: PostgreSQL on {host} is reached with sslmode=require (Starling \
                         refuses plaintext to a remote database); use verify-full with \
                         sslrootcert if you can"
                    ));
                }
                let database = text("database").unwrap_or_else(|| "prosody".to_owned());
                self.note(format!(
                    "storage: Prosody's PostgreSQL database {database:?} stays Prosody's; \
                     Starling uses its own database `starling` on the same server (create it, \
                     e.g. `createdb starling`); {migrate}"
                ));
                out.push_str("[storage]\nbackend = \"postgres\"\n");
                let _ = writeln!(out, "postgres_url = {}\n", toml_string(&url));
            }
            driver => {
                self.note(match driver {
                    Some("SQLite3") => format!("storage: Prosody's SQLite database is not Starling's; Starling keeps its own SQLite file in data_dir; {migrate}"),
                    Some(other) => format!("storage: the {other} driver has no Starling equivalent; Starling keeps its data in SQLite; {migrate}"),
                    None => format!("storage: sql without a driver; Starling keeps its data in SQLite; {migrate}"),
                });
                out.push_str("[storage]\nbackend = \"sqlite\"\n\n");
            }
        }
    }

    // ---- [modules] ------------------------------------------------------------------------

    /// The Prosody modules loaded on one served host, as modulemanager computes them.
    fn modules_of(&self, section: &Section) -> BTreeSet<String> {
        let names = |setting: Option<&Setting>| -> Vec<String> {
            setting
                .map(|s| {
                    list(&s.value)
                        .into_iter()
                        .filter_map(|v| v.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default()
        };
        let mut modules: BTreeSet<String> = [
            "posix",
            "presence",
            "message",
            "iq",
            "offline",
            "c2s",
            "s2s",
            "s2s_auth_certs",
        ]
        .iter()
        .map(|m| (*m).to_owned())
        .collect();
        modules.extend(names(self.global("modules_enabled")));
        for module in names(self.global("modules_disabled")) {
            modules.remove(&module);
        }
        modules.extend(names(section.get("modules_enabled")));
        for module in names(section.get("modules_disabled")) {
            modules.remove(&module);
        }
        modules
    }

    /// Whether any served host loads `module`.
    fn loads(&self, module: &str) -> bool {
        self.hosts
            .iter()
            .any(|(_, section)| self.modules_of(section).contains(module))
    }

    fn modules(&mut self, out: &mut String) {
        let per_host: Vec<(String, BTreeSet<String>)> = self
            .hosts
            .iter()
            .map(|(host, section)| (host.clone(), self.modules_of(section)))
            .collect();
        out.push_str("[modules]\n");
        for (key, prosody) in MODULES {
            let on: Vec<&str> = per_host
                .iter()
                .filter(|(_, loaded)| prosody.iter().any(|m| loaded.contains(*m)))
                .map(|(host, _)| host.as_str())
                .collect();
            let enabled = !on.is_empty();
            let _ = writeln!(out, "{key} = {enabled}");
            if enabled && on.len() < per_host.len() {
                self.note(format!(
                    "modules.{key}: Prosody loads mod_{} on {} only; Starling's [modules] apply to every host",
                    prosody.first().copied().unwrap_or(key),
                    on.join(", ")
                ));
            }
        }
        out.push('\n');
        let mut missing: BTreeSet<&str> = BTreeSet::new();
        for (_, loaded) in &per_host {
            for module in loaded {
                let known = BUILT_IN.contains(&module.as_str())
                    || MODULES
                        .iter()
                        .any(|(_, prosody)| prosody.contains(&module.as_str()));
                if !known {
                    missing.insert(module);
                }
            }
        }
        // "offline" disabled: Starling always stores messages for offline accounts.
        if per_host
            .iter()
            .any(|(_, loaded)| !loaded.contains("offline"))
        {
            self.note("modules_disabled: offline: Starling always stores messages for offline accounts (limits.max_offline_messages)");
        }
        for module in missing {
            let why = MODULE_NOTES
                .iter()
                .find(|(name, _)| *name == module)
                .map_or("no equivalent in Starling yet", |(_, why)| why);
            self.note(format!("mod_{module}: {why}"));
        }
    }

    // ---- what is left -------------------------------------------------------------------

    fn components(&mut self) {
        let reader = self.reader;
        for section in &reader.sections {
            if let Kind::Component { host, module } = &section.kind {
                self.note(match module {
                    Some(module) => format!(
                        "component {host} (mod_{module}): components are not implemented in Starling yet; not served"
                    ),
                    None => format!(
                        "component {host} (external, XEP-0114): components are not implemented in Starling yet; not served"
                    ),
                });
            }
        }
    }

    fn other_settings(&mut self) {
        let reader = self.reader;
        let mut seen = BTreeSet::new();
        for setting in &reader.global().settings {
            let name = setting.name.as_str();
            if READ.contains(&name) || IGNORED.contains(&name) || !seen.insert(name) {
                continue;
            }
            self.note(format!(
                "{}: {name}: no equivalent in Starling; not translated",
                setting.at
            ));
        }
        let hosts = self.hosts.clone();
        for (host, section) in hosts {
            let mut seen = BTreeSet::new();
            for setting in &section.settings {
                let name = setting.name.as_str();
                if matches!(
                    name,
                    "enabled" | "ssl" | "certificates" | "modules_enabled" | "modules_disabled"
                ) || !seen.insert(name)
                {
                    continue;
                }
                self.note(format!(
                    "{}: {name} (in host {host}): Starling has no per-host setting for it; not translated",
                    setting.at
                ));
            }
        }
    }
}

/// Prosody's certificate search for `host` in `dir`: `<name>.crt` with `<name>.key`,
/// `<name>/fullchain.pem` with `<name>/privkey.pem`, then `<name>.pem` holding both, for the
/// host and then each parent domain.
fn find_certificate(dir: &Path, host: &str) -> Option<(PathBuf, PathBuf)> {
    let mut name = host;
    loop {
        let candidates = [
            (
                dir.join(format!("{name}.crt")),
                dir.join(format!("{name}.key")),
            ),
            (
                dir.join(name).join("fullchain.pem"),
                dir.join(name).join("privkey.pem"),
            ),
            (
                dir.join(format!("{name}.pem")),
                dir.join(format!("{name}.pem")),
            ),
        ];
        if let Some(pair) = candidates
            .into_iter()
            .find(|(c, k)| c.is_file() && k.is_file())
        {
            return Some(pair);
        }
        name = name.split_once('.')?.1;
    }
}

/// mod_limits' rate: `"<n> <unit>b/s"`, units decimal (k = 10^3, as Prosody counts them).
fn parse_rate(value: Option<&Value>) -> Option<u64> {
    let text = value?.as_str()?.strip_suffix("/s")?;
    let digits: String = text.chars().take_while(char::is_ascii_digit).collect();
    let quantity: u64 = digits.parse().ok()?;
    let unit = text.get(digits.len()..)?.trim_start();
    let exponent = match unit.chars().next()?.to_ascii_lowercase() {
        'b' => 0,
        'k' => 3,
        'm' => 6,
        'g' => 9,
        _ => return None,
    };
    quantity.checked_mul(10u64.pow(exponent))
}

/// mod_limits' burst: seconds, as a number or `"<n>s"`.
fn parse_burst(value: Option<&Value>) -> Option<u64> {
    match value? {
        Value::Number(n) if n.fract() == 0.0 && (0.0..=86_400.0).contains(n) => {
            // Checked to be a whole number of seconds within a day.
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            Some(*n as u64)
        }
        other => other.as_str()?.trim_end_matches('s').trim().parse().ok(),
    }
}

/// A value as a list: a table's positional values, or the value itself.
fn list(value: &Value) -> Vec<&Value> {
    match value {
        Value::Table(Table { fields }) => fields
            .iter()
            .filter(|(k, _)| matches!(k, Value::Number(_)))
            .map(|(_, v)| v)
            .collect(),
        other => vec![other],
    }
}

/// A value for a message.
fn show(value: &Value) -> String {
    match value {
        Value::Nil => "nil".to_owned(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) if n.fract() == 0.0 && n.abs() < 1e15 => format!("{n:.0}"),
        Value::Number(n) => n.to_string(),
        Value::Str(bytes) => format!("{:?}", String::from_utf8_lossy(bytes)),
        Value::Table(_) => "a table".to_owned(),
    }
}

/// check-config's rule: the same port on the same address, or on an address and the
/// unspecified address of its family, or anything next to `[::]` (dual-stack on Linux).
fn collide(a: SocketAddr, b: SocketAddr) -> bool {
    if a.port() != b.port() {
        return false;
    }
    let (a, b) = (a.ip(), b.ip());
    let is_v6_any = |ip: IpAddr| ip.is_ipv6() && ip.is_unspecified();
    a == b
        || (a.is_ipv4() == b.is_ipv4() && (a.is_unspecified() || b.is_unspecified()))
        || is_v6_any(a)
        || is_v6_any(b)
}

/// `certificate = …` and `private_key = …` lines.
fn write_pair(out: &mut String, (certificate, key): &(PathBuf, PathBuf)) {
    for (name, path) in [("certificate", certificate), ("private_key", key)] {
        let _ = writeln!(out, "{name} = {}", toml_string(&path.display().to_string()));
    }
}

/// A TOML basic string.
fn toml_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A TOML array of strings.
fn toml_list(items: &[impl ToString]) -> String {
    let items: Vec<String> = items.iter().map(|i| toml_string(&i.to_string())).collect();
    format!("[{}]", items.join(", "))
}

/// A libpq connection-string value, quoted when it must be.
fn libpq_value(text: &str) -> String {
    if !text.is_empty() && !text.contains([' ', '\'', '\\']) {
        return text.to_owned();
    }
    format!("'{}'", text.replace('\\', "\\\\").replace('\'', "\\'"))
}

#[cfg(test)]
mod tests;
