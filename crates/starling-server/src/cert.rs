//! Certificates as operators see them: what a certificate says (names, issuer, validity,
//! fingerprint), whether it covers a host (RFC 6125 §6.4), and the `starling cert show` and
//! `starling cert create` commands.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context as _;
use sha2::Digest as _;
use x509_parser::extensions::GeneralName;

use crate::config::{CertificateSource, Config};
use crate::tls;

/// What an end-entity certificate says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateInfo {
    /// The subject's distinguished name, e.g. `CN=a.test`.
    pub subject: String,
    /// The issuer's distinguished name (the subject again for a self-signed certificate).
    pub issuer: String,
    /// The subjectAltName dNSName entries, which are what clients check (RFC 6125 §6.4).
    pub dns_names: Vec<String>,
    /// Start of validity, seconds since the Unix epoch.
    pub not_before: i64,
    /// End of validity, seconds since the Unix epoch.
    pub not_after: i64,
    /// SHA-256 of the DER, as colon-separated upper-case hex.
    pub sha256_fingerprint: String,
}

impl CertificateInfo {
    /// Read a DER certificate.
    pub fn parse(der: &[u8]) -> anyhow::Result<Self> {
        let (_, cert) = x509_parser::parse_x509_certificate(der)
            .map_err(|err| anyhow::anyhow!("not an X.509 certificate: {err}"))?;
        let dns_names = match cert.subject_alternative_name() {
            Ok(Some(san)) => san
                .value
                .general_names
                .iter()
                .filter_map(|name| match name {
                    GeneralName::DNSName(dns) => Some((*dns).to_owned()),
                    _ => None,
                })
                .collect(),
            Ok(None) => Vec::new(),
            Err(err) => anyhow::bail!("unreadable subjectAltName extension: {err}"),
        };
        let fingerprint = sha2::Sha256::digest(der);
        Ok(Self {
            subject: cert.subject().to_string(),
            issuer: cert.issuer().to_string(),
            dns_names,
            not_before: cert.validity().not_before.timestamp(),
            not_after: cert.validity().not_after.timestamp(),
            sha256_fingerprint: fingerprint
                .iter()
                .map(|byte| format!("{byte:02X}"))
                .collect::<Vec<_>>()
                .join(":"),
        })
    }

    /// Whether a client connecting to `host` accepts this certificate's names: one of the
    /// dNSName entries matches. The subject's CN is not consulted; RFC 6125 §6.4.4 allows it
    /// only without any subjectAltName, and the verifiers our users' clients use never do.
    pub fn covers(&self, host: &str) -> bool {
        self.dns_names.iter().any(|name| name_matches(name, host))
    }

    /// Whether `now` (seconds since the epoch) is inside the validity period.
    pub fn is_valid_at(&self, now: i64) -> bool {
        self.not_before <= now && now <= self.not_after
    }

    /// The names, for messages.
    pub fn names(&self) -> String {
        if self.dns_names.is_empty() {
            "no DNS names".to_owned()
        } else {
            self.dns_names.join(", ")
        }
    }
}

/// RFC 6125 §6.4.1 and §6.4.3: a DNS-ID matches a host name case-insensitively; a `*` is
/// allowed only as the whole left-most label and stands for exactly one non-empty label, and
/// never for a label of a public-suffix-like name with fewer than two further labels
/// (`*.test` matches nothing, `*.a.test` matches `x.a.test` but not `a.test` or `y.x.a.test`).
pub fn name_matches(pattern: &str, host: &str) -> bool {
    let pattern = pattern.trim_end_matches('.').to_ascii_lowercase();
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    match pattern.strip_prefix("*.") {
        None => !pattern.contains('*') && pattern == host,
        Some(rest) => {
            if rest.contains('*') || rest.split('.').count() < 2 {
                return false;
            }
            match host.split_once('.') {
                Some((label, host_rest)) => !label.is_empty() && host_rest == rest,
                None => false,
            }
        }
    }
}

/// Seconds since the Unix epoch, now.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| {
            i64::try_from(elapsed.as_secs()).unwrap_or(i64::MAX)
        })
}

/// `2026-11-25 18:59:52 UTC` for seconds since the epoch.
pub fn format_time(unix: i64) -> String {
    let time = starling_stanza::datetime::UtcTime::from_unix_seconds(unix);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02} UTC",
        time.year, time.month, time.day, time.hour, time.minute, time.second
    )
}

/// `starling cert show [HOST]`: for each host, the certificate serving it and what it says.
pub fn show(config: &Config, host: Option<&str>) -> anyhow::Result<String> {
    let hosts = selected_hosts(config, host.into_iter().map(str::to_owned).collect())?;
    let mut out = String::new();
    for host in &hosts {
        let source = config.certificate_for(host);
        let _ = writeln!(out, "{host}");
        let _ = writeln!(out, "  file:        {}", source.certificate().display());
        let origin = match &source {
            CertificateSource::Configured { key, .. } => format!("configured in [{key}]"),
            CertificateSource::Generated { .. } => "self-signed, generated by starling".to_owned(),
        };
        let _ = writeln!(out, "  source:      {origin}");
        if matches!(source, CertificateSource::Generated { .. }) && !source.certificate().exists() {
            let _ = writeln!(
                out,
                "  not generated yet: the server creates it at start, or run `starling cert create {host}`"
            );
            continue;
        }
        let chain = tls::read_certs(source.certificate())?;
        let leaf = chain
            .first()
            .with_context(|| format!("no certificate in {}", source.certificate().display()))?;
        let info = CertificateInfo::parse(leaf.as_ref())
            .with_context(|| format!("reading {}", source.certificate().display()))?;
        let _ = writeln!(out, "  subject:     {}", info.subject);
        let _ = writeln!(out, "  names:       {}", info.names());
        let _ = writeln!(out, "  issuer:      {}", info.issuer);
        let _ = writeln!(out, "  not before:  {}", format_time(info.not_before));
        let _ = writeln!(out, "  not after:   {}", format_time(info.not_after));
        let _ = writeln!(out, "  sha256:      {}", info.sha256_fingerprint);
        let mut notes = Vec::new();
        if !info.covers(host) {
            notes.push(format!("does NOT cover {host}"));
        }
        if !info.is_valid_at(unix_now()) {
            notes.push("NOT valid now".to_owned());
        }
        if !notes.is_empty() {
            let _ = writeln!(out, "  warning:     {}", notes.join("; "));
        }
    }
    Ok(out)
}

/// `starling cert create [HOST…] [--force]`: generate self-signed certificates for hosts that
/// have no configured certificate. An existing generated certificate is kept unless `force`.
pub fn create(config: &Config, hosts: Vec<String>, force: bool) -> anyhow::Result<String> {
    let explicit = !hosts.is_empty();
    let hosts = selected_hosts(config, hosts)?;
    let mut out = String::new();
    let mut refused = Vec::new();
    for host in &hosts {
        match config.certificate_for(host) {
            CertificateSource::Configured {
                key, certificate, ..
            } => {
                let line = format!(
                    "{host}: served by {} from [{key}]; remove that to use a generated certificate",
                    certificate.display()
                );
                if explicit {
                    refused.push(line);
                } else {
                    let _ = writeln!(out, "{line}");
                }
            }
            CertificateSource::Generated {
                certificate,
                private_key,
            } => {
                if !force && certificate.exists() && private_key.exists() {
                    let _ = writeln!(
                        out,
                        "{host}: kept {} (use --force to replace it)",
                        certificate.display()
                    );
                    continue;
                }
                tls::generate_self_signed(host, &certificate, &private_key)?;
                let _ = writeln!(out, "{host}: created {}", certificate.display());
            }
        }
    }
    anyhow::ensure!(refused.is_empty(), "{}", refused.join("\n"));
    let _ = writeln!(
        out,
        "a running server uses new certificates after SIGHUP (kill -HUP <pid>) or a restart"
    );
    Ok(out)
}

/// The named hosts (normalised, each one we serve), or all hosts.
fn selected_hosts(config: &Config, names: Vec<String>) -> anyhow::Result<Vec<String>> {
    if names.is_empty() {
        return Ok(config.hosts.clone());
    }
    names
        .iter()
        .map(|name| {
            let domain = jid::DomainPart::new(name)
                .map_err(|err| anyhow::anyhow!("{name:?} is not a valid domain: {err}"))?;
            let domain = domain.as_str().to_owned();
            anyhow::ensure!(
                config.hosts.contains(&domain),
                "{domain} is not one of the configured hosts ({})",
                config.hosts.join(", ")
            );
            Ok(domain)
        })
        .collect()
}

/// Whether the certificate at `path` exists, covers `host` and is valid now; used to decide
/// whether a generated certificate must be made again.
pub fn is_usable_for(path: &Path, host: &str) -> bool {
    let Ok(chain) = tls::read_certs(path) else {
        return false;
    };
    chain
        .first()
        .and_then(|leaf| CertificateInfo::parse(leaf.as_ref()).ok())
        .is_some_and(|info| info.covers(host) && info.is_valid_at(unix_now()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_follow_rfc_6125() {
        for (pattern, host, expected) in [
            ("a.test", "a.test", true),
            ("A.Test", "a.test", true),
            ("a.test.", "a.test", true),
            ("a.test", "b.test", false),
            ("*.a.test", "x.a.test", true),
            ("*.a.test", "a.test", false),
            ("*.a.test", "y.x.a.test", false),
            ("*.test", "a.test", false),
            ("x*.a.test", "xy.a.test", false),
            ("*.*.test", "a.b.test", false),
            ("*", "a", false),
        ] {
            assert_eq!(name_matches(pattern, host), expected, "{pattern} vs {host}");
        }
    }

    #[test]
    fn dates_are_civil_utc() {
        assert_eq!(format_time(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(format_time(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(format_time(1_795_636_792), "2026-11-25 19:59:52 UTC");
    }

    #[test]
    fn generated_certificate_is_described() {
        let certified = rcgen::generate_simple_self_signed(vec!["a.test".to_owned()]).unwrap();
        let der = certified.cert.der();
        let info = CertificateInfo::parse(der).unwrap();
        assert_eq!(info.dns_names, ["a.test"]);
        assert!(info.covers("a.test") && !info.covers("b.test"));
        assert!(info.is_valid_at(unix_now()));
        assert_eq!(info.subject, info.issuer);
        assert_eq!(info.sha256_fingerprint.len(), 32 * 3 - 1);
        assert!(
            info.sha256_fingerprint
                .starts_with(&format!("{:02X}:", sha2::Sha256::digest(der)[0]))
        );
    }
}
