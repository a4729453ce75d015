//! rustls set-up: the certificate (loaded or generated with rcgen), the server config, and the
//! channel-binding data SASL -PLUS needs from each TLS session.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use sha2::Digest as _;
use starling_sasl::{ChannelBinding, ChannelBindingType};
use starling_stream::TlsInfo;

use crate::config::Config;

/// Everything a connection task needs to run TLS.
pub struct TlsSetup {
    /// The rustls server configuration, shared by all connections.
    pub server_config: Arc<rustls::ServerConfig>,
    /// RFC 5929 `tls-server-end-point` data of our certificate, if its signature algorithm
    /// defines one.
    server_end_point: Option<Vec<u8>>,
}

impl TlsSetup {
    /// Load the configured certificate, or create a self-signed one in the data directory.
    pub fn load(config: &Config) -> anyhow::Result<Self> {
        let (cert_path, key_path) = match (&config.tls.certificate, &config.tls.private_key) {
            (Some(cert), Some(key)) => (cert.clone(), key.clone()),
            _ => ensure_self_signed(config)?,
        };
        let certs = read_certs(&cert_path)?;
        let key = read_key(&key_path)?;
        let leaf = certs
            .first()
            .with_context(|| format!("no certificate found in {}", cert_path.display()))?;
        let server_end_point = server_end_point_hash(leaf.as_ref());
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        // TLS 1.2 and 1.3 only; rustls has never implemented 1.0 or 1.1.
        let server_config = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .context("building TLS configuration")?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .context("certificate and private key do not match")?;
        Ok(Self {
            server_config: Arc::new(server_config),
            server_end_point,
        })
    }

    /// Channel bindings this established session can offer SASL (RFC 5929, RFC 9266).
    pub fn session_info(&self, conn: &rustls::ServerConnection) -> TlsInfo {
        let mut channel_bindings = Vec::new();
        // RFC 9266 defines tls-exporter for TLS 1.3; on TLS 1.2 it is only safe with the extended
        // master secret, so it is not offered there.
        if conn.protocol_version() == Some(rustls::ProtocolVersion::TLSv1_3)
            && let Ok(data) =
                conn.export_keying_material([0u8; 32], b"EXPORTER-Channel-Binding", None)
        {
            channel_bindings.push(ChannelBinding {
                kind: ChannelBindingType::TlsExporter,
                data: data.to_vec(),
            });
        }
        if let Some(data) = &self.server_end_point {
            channel_bindings.push(ChannelBinding {
                kind: ChannelBindingType::TlsServerEndPoint,
                data: data.clone(),
            });
        }
        TlsInfo { channel_bindings }
    }
}

fn ensure_self_signed(config: &Config) -> anyhow::Result<(PathBuf, PathBuf)> {
    let dir = config.data_dir.join("tls");
    let cert_path = dir.join("cert.pem");
    let key_path = dir.join("key.pem");
    if cert_path.exists() && key_path.exists() {
        return Ok((cert_path, key_path));
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let certified = rcgen::generate_simple_self_signed(config.hosts.clone())
        .context("generating a self-signed certificate")?;
    std::fs::write(&cert_path, certified.cert.pem())
        .with_context(|| format!("cannot write {}", cert_path.display()))?;
    write_private(&key_path, certified.signing_key.serialize_pem().as_bytes())?;
    tracing::info!(path = %cert_path.display(), hosts = ?config.hosts, "generated a self-signed certificate");
    Ok((cert_path, key_path))
}

fn write_private(path: &Path, contents: &[u8]) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    file.write_all(contents)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

fn read_certs(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let pem = std::fs::read(path)
        .with_context(|| format!("cannot read certificate {}", path.display()))?;
    rustls_pemfile::certs(&mut pem.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("invalid PEM in {}", path.display()))
}

fn read_key(path: &Path) -> anyhow::Result<PrivateKeyDer<'static>> {
    let pem = std::fs::read(path)
        .with_context(|| format!("cannot read private key {}", path.display()))?;
    rustls_pemfile::private_key(&mut pem.as_slice())
        .with_context(|| format!("invalid PEM in {}", path.display()))?
        .with_context(|| format!("no private key found in {}", path.display()))
}

/// RFC 5929 §4.1: the hash of the certificate, with the hash of its signature algorithm, except
/// that MD5 and SHA-1 are replaced by SHA-256. Algorithms without a hash (Ed25519) have no
/// defined end-point binding, so `None`.
fn server_end_point_hash(cert_der: &[u8]) -> Option<Vec<u8>> {
    let oid = signature_algorithm_oid(cert_der)?;
    // DER-encoded OID contents of the signature algorithms we recognise.
    const SHA384: [&[u8]; 2] = [
        &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x03], // ecdsa-with-SHA384
        &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0c], // sha384WithRSAEncryption
    ];
    const SHA512: [&[u8]; 2] = [
        &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x04], // ecdsa-with-SHA512
        &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0d], // sha512WithRSAEncryption
    ];
    const NO_HASH: [&[u8]; 2] = [
        &[0x2b, 0x65, 0x70], // Ed25519
        &[0x2b, 0x65, 0x71], // Ed448
    ];
    if SHA384.contains(&oid) {
        Some(sha2::Sha384::digest(cert_der).to_vec())
    } else if SHA512.contains(&oid) {
        Some(sha2::Sha512::digest(cert_der).to_vec())
    } else if NO_HASH.contains(&oid)
        || oid == [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0a]
    {
        // RSASSA-PSS carries its hash in parameters; not worth guessing.
        None
    } else {
        Some(sha2::Sha256::digest(cert_der).to_vec())
    }
}

/// The OID of `Certificate.signatureAlgorithm` (RFC 5280 §4.1): the second element of the outer
/// SEQUENCE. A minimal DER walk; `None` on anything unexpected.
fn signature_algorithm_oid(der: &[u8]) -> Option<&[u8]> {
    let (outer, _) = der_element(der, 0x30)?;
    let (_, after_tbs) = der_any(outer)?;
    let (algorithm, _) = der_element(after_tbs, 0x30)?;
    let (oid, _) = der_element(algorithm, 0x06)?;
    Some(oid)
}

/// Split one DER TLV with the expected tag off the front: (contents, rest).
fn der_element(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    if *input.first()? != tag {
        return None;
    }
    der_any(input)
}

/// Split any DER TLV off the front: (contents, rest).
fn der_any(input: &[u8]) -> Option<(&[u8], &[u8])> {
    let first_len = *input.get(1)?;
    let (len, header) = if first_len < 0x80 {
        (usize::from(first_len), 2)
    } else {
        let count = usize::from(first_len & 0x7f);
        if count == 0 || count > 4 {
            return None;
        }
        let mut len = 0usize;
        for i in 0..count {
            len = (len << 8) | usize::from(*input.get(2 + i)?);
        }
        (len, 2 + count)
    };
    let contents = input.get(header..header.checked_add(len)?)?;
    let rest = input.get(header + len..)?;
    Some((contents, rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rcgen_certificate_binds_with_sha256() {
        let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        let der = certified.cert.der().to_vec();
        // rcgen's default key is ECDSA P-256 signed with SHA-256.
        assert_eq!(
            signature_algorithm_oid(&der),
            Some(&[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02][..])
        );
        assert_eq!(
            server_end_point_hash(&der),
            Some(sha2::Sha256::digest(&der).to_vec())
        );
    }

    #[test]
    fn garbage_has_no_end_point_binding() {
        assert_eq!(signature_algorithm_oid(&[0x30, 0x05, 0x01]), None);
        assert_eq!(server_end_point_hash(&[]), None);
    }
}
