//! `starling check-config`: every problem in a config file, each with its key and line, and
//! the certificates checked against the hosts they serve.
//!
//! The checks go beyond what the server needs to start: listeners that would collide, and for
//! each host a certificate that exists, parses, matches its key, names the host (RFC 6125
//! §6.4) and is valid today.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::Path;

use starling_tls::certificate::{self as cert, CertificateInfo};

use crate::{CertificateSource, Config, KeyLines, Problem, StorageBackend, sort_by_line};

/// A certificate this close to its end is reported as a warning.
const EXPIRY_WARNING_SECS: i64 = 14 * 24 * 3600;

/// The result of checking one file.
pub struct Report {
    /// Whether the file is fine (warnings allowed).
    pub is_ok: bool,
    /// What to print: the problems, one per line, or an "ok" summary.
    pub text: String,
    /// How many problems were found.
    pub problem_count: usize,
}

/// Check the config file at `path` (or the defaults when `None`).
pub fn check_config(path: Option<&Path>) -> Report {
    let label = path.map_or_else(|| "(defaults)".to_owned(), |p| p.display().to_string());
    let (config, mut problems, lines, dropped) = match path {
        None => (
            Some(Config::default()),
            Vec::new(),
            KeyLines::default(),
            Vec::new(),
        ),
        Some(path) => match std::fs::read_to_string(path) {
            Ok(text) => {
                let checked = Config::parse(&text);
                (
                    checked.config,
                    checked.problems,
                    checked.lines,
                    checked.dropped,
                )
            }
            Err(err) => {
                return Report {
                    is_ok: false,
                    text: format!("{label}: cannot read the file: {err}\n"),
                    problem_count: 1,
                };
            }
        },
    };
    let mut warnings = Vec::new();
    let mut certificates = Vec::new();
    if let Some(config) = &config {
        let is_dropped = |prefix: &str| dropped.iter().any(|key| key.starts_with(prefix));
        // The server logs a bad filter and keeps the running one, so `Config::problems` lets
        // it pass; here it is a problem.
        if let Err(err) = tracing_subscriber::EnvFilter::try_new(&config.log.level) {
            problems.push(lines.problem(
                "log.level",
                format!("not a valid filter (e.g. \"info,starling_router=debug\"): {err}"),
            ));
        }
        if !is_dropped("listen") && !is_dropped("metrics") {
            problems.extend(listener_problems(config, &lines));
        }
        // Certificates are only checked against the hosts the file really names.
        if !is_dropped("hosts") && !is_dropped("data_dir") && !is_dropped("tls") {
            let found = certificate_checks(config, &lines);
            problems.extend(found.problems);
            warnings.extend(found.warnings);
            certificates = found.summary;
        }
        if !is_dropped("limits") {
            warnings.extend(limit_warnings(config, &lines));
        }
    }
    sort_by_line(&mut problems);
    let mut text = String::new();
    for problem in &problems {
        let _ = writeln!(text, "{}", located(&label, problem));
    }
    for warning in &warnings {
        let _ = writeln!(text, "warning: {}", located(&label, warning));
    }
    let config = match config {
        Some(config) if problems.is_empty() => config,
        _ => {
            return Report {
                is_ok: false,
                text,
                problem_count: problems.len(),
            };
        }
    };
    let _ = writeln!(text, "{label}: ok");
    let _ = writeln!(text, "hosts:        {}", config.hosts.join(", "));
    let listeners: Vec<String> = config
        .listen
        .starttls
        .iter()
        .map(|addr| format!("starttls {addr}"))
        .chain(
            config
                .listen
                .direct_tls
                .iter()
                .map(|addr| format!("direct-tls {addr}")),
        )
        .collect();
    let _ = writeln!(text, "listeners:    {}", or_none(&listeners.join(", ")));
    let storage = match config.storage.backend {
        StorageBackend::Sqlite => format!("sqlite {}", config.sqlite_path().display()),
        // The URL may hold a password, so it is not printed.
        StorageBackend::Postgres => "postgres (storage.postgres_url)".to_owned(),
    };
    let _ = writeln!(text, "storage:      {storage}");
    let _ = writeln!(text, "data_dir:     {}", config.data_dir.display());
    let admin = if config.admin.enabled {
        config.admin_socket().display().to_string()
    } else {
        "off".to_owned()
    };
    let _ = writeln!(text, "admin socket: {admin}");
    let metrics = config
        .metrics
        .listen
        .map_or_else(|| "off".to_owned(), |addr| format!("http://{addr}/metrics"));
    let _ = writeln!(text, "metrics:      {metrics}");
    let _ = writeln!(text, "certificates:");
    for line in certificates {
        let _ = writeln!(text, "  {line}");
    }
    Report {
        is_ok: true,
        text,
        problem_count: 0,
    }
}

fn located(label: &str, problem: &Problem) -> String {
    let mut out = label.to_owned();
    if let Some(line) = problem.line {
        let _ = write!(out, ":{line}");
    }
    out.push_str(": ");
    if !problem.key.is_empty() {
        let _ = write!(out, "{}: ", problem.key);
    }
    out.push_str(&problem.message);
    out
}

fn or_none(text: &str) -> &str {
    if text.is_empty() { "none" } else { text }
}

/// Two sockets that cannot both be bound: the same port (not 0) on the same address, or on
/// an address and the unspecified address of its family (and `[::]` also takes IPv4 on
/// Linux's default dual-stack sockets).
fn listener_problems(config: &Config, lines: &KeyLines) -> Vec<Problem> {
    let mut listeners: Vec<(String, SocketAddr)> = Vec::new();
    for (i, addr) in config.listen.starttls.iter().enumerate() {
        listeners.push((format!("listen.starttls[{i}]"), *addr));
    }
    for (i, addr) in config.listen.direct_tls.iter().enumerate() {
        listeners.push((format!("listen.direct_tls[{i}]"), *addr));
    }
    if let Some(addr) = config.metrics.listen {
        listeners.push(("metrics.listen".to_owned(), addr));
    }
    let mut problems = Vec::new();
    for (i, (key, addr)) in listeners.iter().enumerate() {
        let earlier = listeners
            .iter()
            .take(i)
            .find(|(_, other)| collide(*addr, *other));
        if let Some((other_key, other)) = earlier {
            problems.push(lines.problem(
                key.clone(),
                format!("{addr} collides with {other} ({other_key}); both cannot be bound"),
            ));
        }
    }
    if listeners.is_empty() {
        problems.push(lines.problem("listen", "no listening addresses; clients cannot connect"));
    }
    problems
}

fn collide(a: SocketAddr, b: SocketAddr) -> bool {
    if a.port() == 0 || a.port() != b.port() {
        return false;
    }
    let (a, b) = (a.ip(), b.ip());
    let is_v6_any = |ip: std::net::IpAddr| ip.is_ipv6() && ip.is_unspecified();
    a == b
        || (a.is_ipv4() == b.is_ipv4() && (a.is_unspecified() || b.is_unspecified()))
        || is_v6_any(a)
        || is_v6_any(b)
}

#[derive(Default)]
struct CertificateChecks {
    problems: Vec<Problem>,
    warnings: Vec<Problem>,
    /// `host: file (…)` lines for the summary.
    summary: Vec<String>,
}

fn certificate_checks(config: &Config, lines: &KeyLines) -> CertificateChecks {
    let mut out = CertificateChecks::default();
    let provider = rustls::crypto::ring::default_provider();
    let now = cert::unix_now();
    let mut seen = BTreeSet::new();
    let mut sources: Vec<(Option<&str>, CertificateSource)> = config
        .hosts
        .iter()
        .map(|host| (Some(host.as_str()), config.certificate_for(host)))
        .collect();
    // The top-level pair is checked even when every host has its own.
    if let (Some(certificate), Some(private_key)) =
        (&config.tls.certificate, &config.tls.private_key)
    {
        sources.push((
            None,
            CertificateSource::Configured {
                key: "tls".to_owned(),
                certificate: certificate.clone(),
                private_key: private_key.clone(),
            },
        ));
    }
    for (host, source) in sources {
        match &source {
            CertificateSource::Configured {
                key,
                certificate,
                private_key,
            } => {
                let info = match load_configured(certificate, private_key, &provider) {
                    Ok(info) => info,
                    Err((field, message)) => {
                        if seen.insert((key.clone(), field)) {
                            out.problems
                                .push(lines.problem(format!("{key}.{field}"), message));
                        }
                        continue;
                    }
                };
                let cert_key = format!("{key}.certificate");
                if seen.insert((key.clone(), "validity")) {
                    if now < info.not_before {
                        out.problems.push(lines.problem(
                            cert_key.clone(),
                            format!(
                                "{} is not valid before {}",
                                certificate.display(),
                                cert::format_time(info.not_before)
                            ),
                        ));
                    } else if now > info.not_after {
                        out.problems.push(lines.problem(
                            cert_key.clone(),
                            format!(
                                "{} expired on {}",
                                certificate.display(),
                                cert::format_time(info.not_after)
                            ),
                        ));
                    } else if info.not_after - now < EXPIRY_WARNING_SECS {
                        out.warnings.push(lines.problem(
                            cert_key.clone(),
                            format!(
                                "{} expires on {}",
                                certificate.display(),
                                cert::format_time(info.not_after)
                            ),
                        ));
                    }
                }
                let Some(host) = host else { continue };
                if !info.covers(host) {
                    out.problems.push(lines.problem(
                        cert_key,
                        format!(
                            "{} does not cover host {host} (its names: {})",
                            certificate.display(),
                            info.names()
                        ),
                    ));
                    continue;
                }
                out.summary.push(format!(
                    "{host}: {} ([{key}]; names {}; valid until {})",
                    certificate.display(),
                    info.names(),
                    cert::format_time(info.not_after)
                ));
            }
            CertificateSource::Generated { certificate, .. } => {
                let Some(host) = host else { continue };
                let state = if cert::is_usable_for(certificate, host) {
                    "self-signed, generated"
                } else {
                    "self-signed, generated at start"
                };
                out.summary
                    .push(format!("{host}: {} ({state})", certificate.display()));
            }
        }
    }
    out
}

/// Read and pair a configured certificate and key; an error names the field at fault.
fn load_configured(
    certificate: &Path,
    private_key: &Path,
    provider: &rustls::crypto::CryptoProvider,
) -> Result<CertificateInfo, (&'static str, String)> {
    let chain = cert::read_certs(certificate).map_err(|err| ("certificate", with_causes(&err)))?;
    let leaf = chain.first().ok_or_else(|| {
        (
            "certificate",
            format!("no PEM certificate found in {}", certificate.display()),
        )
    })?;
    let info = CertificateInfo::parse(leaf.as_ref()).map_err(|err| {
        (
            "certificate",
            format!("{}: {}", certificate.display(), with_causes(&err)),
        )
    })?;
    let key = cert::read_key(private_key).map_err(|err| ("private_key", with_causes(&err)))?;
    cert::certified_key(chain, key, provider).map_err(|err| {
        (
            "private_key",
            format!(
                "{}: {} ({})",
                private_key.display(),
                with_causes(&err),
                certificate.display()
            ),
        )
    })?;
    Ok(info)
}

/// `err` and its sources, joined by `: ` (as the server prints errors).
fn with_causes(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let _ = write!(text, ": {cause}");
        source = cause.source();
    }
    text
}

/// Limits that work but probably not as the operator expects.
fn limit_warnings(config: &Config, lines: &KeyLines) -> Vec<Problem> {
    let mut warnings = Vec::new();
    let limits = &config.limits;
    // Offline delivery hands a login only what its queue has room for; the rest waits, stored,
    // for the resource's next login (see docs/configuration.md).
    let per_login = limits
        .outbound_queue_stanzas
        .saturating_sub(starling_router::OFFLINE_QUEUE_HEADROOM);
    if limits.max_offline_messages > per_login {
        warnings.push(lines.problem(
            "limits.max_offline_messages",
            format!(
                "{} offline messages may be stored, but a login is handed at most {per_login} \
                 (limits.outbound_queue_stanzas {} less {} kept free); the rest wait for later \
                 logins",
                limits.max_offline_messages,
                limits.outbound_queue_stanzas,
                starling_router::OFFLINE_QUEUE_HEADROOM
            ),
        ));
    }
    warnings
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listeners_collide_on_the_same_port_of_overlapping_addresses() {
        let addr = |s: &str| s.parse::<SocketAddr>().unwrap();
        assert!(collide(addr("127.0.0.1:5222"), addr("127.0.0.1:5222")));
        assert!(collide(addr("0.0.0.0:5222"), addr("127.0.0.1:5222")));
        assert!(collide(addr("[::]:5222"), addr("127.0.0.1:5222")));
        assert!(!collide(addr("127.0.0.1:5222"), addr("127.0.0.2:5222")));
        assert!(!collide(addr("127.0.0.1:5222"), addr("127.0.0.1:5223")));
        assert!(!collide(addr("127.0.0.1:0"), addr("127.0.0.1:0")));
        assert!(!collide(addr("[::1]:5222"), addr("127.0.0.1:5222")));
    }

    #[test]
    fn more_offline_messages_than_a_login_is_handed_is_a_warning() {
        let mut config = Config::default();
        assert!(limit_warnings(&config, &KeyLines::default()).is_empty());
        config.limits.outbound_queue_stanzas = 16;
        config.limits.max_offline_messages = 100;
        let warnings = limit_warnings(&config, &KeyLines::default());
        let texts: Vec<String> = warnings.iter().map(|w| located("f", w)).collect();
        assert_eq!(
            texts,
            [
                "f: limits.max_offline_messages: 100 offline messages may be stored, but a login \
              is handed at most 12 (limits.outbound_queue_stanzas 16 less 4 kept free); the rest \
              wait for later logins"
            ]
        );
    }
}
