//! `starling cert show` and `starling cert create`: the certificate serving each host and what
//! it says (`Config::certificate_report`), and self-signed ones made on request.

use std::fmt::Write as _;

use starling_config::{CertificateSource, Config};

use crate::running::tls;

/// `starling cert show [HOST]`: for each host, the certificate serving it and what it says.
pub fn show(config: &Config, host: Option<&str>) -> anyhow::Result<String> {
    let mut out = String::new();
    for host in config.selected_hosts(host.into_iter().map(str::to_owned).collect())? {
        out.push_str(&config.certificate_report(&host)?);
    }
    Ok(out)
}

/// `starling cert create [HOST…] [--force]`: generate self-signed certificates for hosts that
/// have no configured certificate. An existing generated certificate is kept unless `force`.
pub fn create(config: &Config, hosts: Vec<String>, force: bool) -> anyhow::Result<String> {
    let explicit = !hosts.is_empty();
    let hosts = config.selected_hosts(hosts)?;
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
