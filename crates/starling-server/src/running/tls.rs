//! rustls set-up: a certificate per host (configured, or generated with rcgen), chosen by SNI;
//! the server config; and the channel-binding data SASL -PLUS needs from each TLS session.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use starling_config::{CertificateSource, Config};
use starling_sasl::{ChannelBinding, ChannelBindingType};
use starling_stream::TlsInfo;
use starling_tls::certificate::{
    certified_key, is_usable_for, read_certs, read_key, server_end_point_hash,
};

/// Everything a connection task needs to run TLS.
pub struct TlsSetup {
    /// The rustls server configuration, shared by all connections.
    pub server_config: Arc<rustls::ServerConfig>,
    /// The certificates by host; also the server config's certificate resolver.
    certificates: Arc<HostCertificates>,
}

/// The certificate each host is served with, chosen by the client's SNI.
#[derive(Debug)]
struct HostCertificates {
    /// Host name (normalised, lower case) → its certificate. Hosts sharing a file pair share
    /// one entry.
    by_host: HashMap<String, Arc<ServedCertificate>>,
    /// For clients that send no SNI or a name we do not serve: the first host's.
    default: Arc<ServedCertificate>,
}

/// One loaded certificate chain with its key.
#[derive(Debug)]
struct ServedCertificate {
    /// What rustls presents.
    certified: Arc<CertifiedKey>,
    /// RFC 5929 `tls-server-end-point` data of the leaf, if its signature algorithm defines one.
    server_end_point: Option<Vec<u8>>,
    /// The certificate file, for log lines.
    path: PathBuf,
}

impl TlsSetup {
    /// Load every host's certificate, generating self-signed ones where none is configured.
    pub fn load(config: &Config) -> anyhow::Result<Self> {
        let provider = Arc::new(server_provider());
        let mut loaded: HashMap<(PathBuf, PathBuf), Arc<ServedCertificate>> = HashMap::new();
        let mut by_host = HashMap::new();
        for host in &config.hosts {
            let source = config.certificate_for(host);
            if let CertificateSource::Generated {
                certificate,
                private_key,
            } = &source
                && !(private_key.exists() && is_usable_for(certificate, host))
            {
                generate_self_signed(host, certificate, private_key)?;
            }
            let files = (
                source.certificate().to_path_buf(),
                source.private_key().to_path_buf(),
            );
            let served = match loaded.get(&files) {
                Some(served) => Arc::clone(served),
                None => {
                    let served = Arc::new(
                        load_served(&source, &provider)
                            .with_context(|| format!("loading the certificate for {host}"))?,
                    );
                    loaded.insert(files, Arc::clone(&served));
                    served
                }
            };
            by_host.insert(host.clone(), served);
        }
        let first = config.hosts.first().context("no hosts configured")?;
        let default = by_host
            .get(first)
            .map(Arc::clone)
            .context("no certificate for the first host")?;
        let certificates = Arc::new(HostCertificates { by_host, default });
        // TLS 1.2 and 1.3 only; rustls has never implemented 1.0 or 1.1.
        let server_config = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .context("building TLS configuration")?
            .with_no_client_auth()
            .with_cert_resolver(Arc::clone(&certificates) as Arc<dyn ResolvesServerCert>);
        let mut server_config = server_config;
        server_config.ignore_client_order = true;
        // The SNI name and the TLS 1.3 exporter secret, which connections driven through
        // rustls's unbuffered API cannot ask for afterwards (see `starling-tls`).
        starling_tls::prepare_server_config(&mut server_config);
        Ok(Self {
            server_config: Arc::new(server_config),
            certificates,
        })
    }

    /// `host=file` for each host, for log lines.
    pub fn describe(&self) -> String {
        let mut hosts: Vec<_> = self.certificates.by_host.iter().collect();
        hosts.sort_by(|a, b| a.0.cmp(b.0));
        hosts
            .iter()
            .map(|(host, served)| format!("{host}={}", served.path.display()))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Channel bindings this established session can offer SASL (RFC 5929, RFC 9266).
    pub fn session_info(&self, handshake: &starling_tls::HandshakeInfo) -> TlsInfo {
        let mut channel_bindings = Vec::new();
        // RFC 9266 defines tls-exporter for TLS 1.3; on TLS 1.2 it is only safe with the extended
        // master secret, so it is not offered there.
        if handshake.protocol_version == rustls::ProtocolVersion::TLSv1_3
            && let Some(data) = handshake.exporter
        {
            channel_bindings.push(ChannelBinding {
                kind: ChannelBindingType::TlsExporter,
                data: data.to_vec(),
            });
        }
        // RFC 5929 §4.1 binds the certificate this session was served, which the resolver
        // chose from the same SNI.
        if let Some(data) = &self
            .certificates
            .for_name(handshake.server_name.as_deref())
            .server_end_point
        {
            channel_bindings.push(ChannelBinding {
                kind: ChannelBindingType::TlsServerEndPoint,
                data: data.clone(),
            });
        }
        TlsInfo { channel_bindings }
    }
}

/// ring's provider with the cipher suites in our order of preference, which the server
/// applies over the client's (`ignore_client_order`): AES-128-GCM with SHA-256 first. All
/// offered suites are AEADs with forward secrecy, so the order is about cost: AES-128 needs
/// fewer rounds than AES-256 and SHA-256 runs on the SHA extensions of current x86 and ARM
/// CPUs, where SHA-384's key schedule does not.
fn server_provider() -> CryptoProvider {
    let mut provider = rustls::crypto::ring::default_provider();
    provider
        .cipher_suites
        .sort_by_key(|suite| match suite.suite() {
            rustls::CipherSuite::TLS13_AES_128_GCM_SHA256 => 0,
            rustls::CipherSuite::TLS13_CHACHA20_POLY1305_SHA256 => 1,
            rustls::CipherSuite::TLS13_AES_256_GCM_SHA384 => 2,
            rustls::CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
            | rustls::CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 => 3,
            _ => 4,
        });
    provider
}

impl HostCertificates {
    /// The certificate for an SNI name (or none).
    fn for_name(&self, name: Option<&str>) -> &Arc<ServedCertificate> {
        name.map(|name| name.trim_end_matches('.').to_ascii_lowercase())
            .and_then(|name| self.by_host.get(&name))
            .unwrap_or(&self.default)
    }
}

impl ResolvesServerCert for HostCertificates {
    fn resolve(&self, client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(
            &self.for_name(client_hello.server_name()).certified,
        ))
    }
}

fn load_served(
    source: &CertificateSource,
    provider: &CryptoProvider,
) -> anyhow::Result<ServedCertificate> {
    let certs = read_certs(source.certificate())?;
    let key = read_key(source.private_key())?;
    let certified = certified_key(certs, key, provider).with_context(|| {
        format!(
            "{} and {}",
            source.certificate().display(),
            source.private_key().display()
        )
    })?;
    let server_end_point = certified
        .cert
        .first()
        .and_then(|leaf| server_end_point_hash(leaf.as_ref()));
    Ok(ServedCertificate {
        certified: Arc::new(certified),
        server_end_point,
        path: source.certificate().to_path_buf(),
    })
}

/// Generate a self-signed certificate for `host` (rcgen, ECDSA P-256), replacing the files.
pub fn generate_self_signed(host: &str, cert_path: &Path, key_path: &Path) -> anyhow::Result<()> {
    for dir in [cert_path.parent(), key_path.parent()]
        .into_iter()
        .flatten()
    {
        crate::private_fs::create_private_dir(dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let generate = || -> Result<(String, String), rcgen::Error> {
        let mut params = rcgen::CertificateParams::new(vec![host.to_owned()])?;
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, host);
        let key = rcgen::KeyPair::generate()?;
        let cert = params.self_signed(&key)?;
        Ok((cert.pem(), key.serialize_pem()))
    };
    let (cert_pem, key_pem) = generate().context("generating a self-signed certificate")?;
    // Both files are created anew, so a symbolic link planted at either path is refused
    // rather than written through; the key is readable by this user only.
    crate::private_fs::write_new_file(
        key_path,
        key_pem.as_bytes(),
        crate::private_fs::PRIVATE_FILE_MODE,
    )
    .with_context(|| format!("cannot write {}", key_path.display()))?;
    crate::private_fs::write_new_file(cert_path, cert_pem.as_bytes(), 0o644)
        .with_context(|| format!("cannot write {}", cert_path.display()))?;
    tracing::info!(path = %cert_path.display(), host, "generated a self-signed certificate");
    Ok(())
}

#[cfg(test)]
mod tests {
    use rustls::pki_types::CertificateDer;
    use sha2::Digest as _;

    use super::*;

    // Issue 15: the generated key is created anew with mode 0600: a symbolic link planted at
    // its path is refused rather than followed, and a stale world-readable key is replaced.
    #[test]
    fn generated_key_is_private_and_never_written_through_a_link() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        std::fs::write(&key, "stale").unwrap();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
        generate_self_signed("localhost", &cert, &key).unwrap();
        let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(read_key(&key).is_ok());

        let victim = dir.path().join("victim");
        std::fs::write(&victim, "not a key").unwrap();
        std::fs::remove_file(&key).unwrap();
        std::os::unix::fs::symlink(&victim, &key).unwrap();
        let err = generate_self_signed("localhost", &cert, &key).unwrap_err();
        assert!(format!("{err:#}").contains("symbolic link"), "{err:#}");
        assert_eq!(std::fs::read(&victim).unwrap(), b"not a key");
    }

    /// A client that accepts any certificate; the test compares certificates itself.
    #[derive(Debug)]
    struct AnyCertificate(rustls::crypto::WebPkiSupportedAlgorithms);

    impl rustls::client::danger::ServerCertVerifier for AnyCertificate {
        fn verify_server_cert(
            &self,
            _: &CertificateDer<'_>,
            _: &[CertificateDer<'_>],
            _: &rustls::pki_types::ServerName<'_>,
            _: &[u8],
            _: rustls::pki_types::UnixTime,
        ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
            Ok(rustls::client::danger::ServerCertVerified::assertion())
        }
        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
        }
        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
        }
        fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
            self.0.supported_schemes()
        }
    }

    /// Handshake in memory with `sni`; returns the leaf the client saw and the
    /// tls-server-end-point data the server would give SASL.
    fn handshake(setup: &TlsSetup, sni: &str) -> (Vec<u8>, Option<Vec<u8>>) {
        let provider = Arc::new(server_provider());
        let verifier = Arc::new(AnyCertificate(provider.signature_verification_algorithms));
        let client_config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
        let name = rustls::pki_types::ServerName::try_from(sni.to_owned()).unwrap();
        let mut client = rustls::ClientConnection::new(Arc::new(client_config), name).unwrap();
        let mut server = rustls::ServerConnection::new(Arc::clone(&setup.server_config)).unwrap();
        for _ in 0..10 {
            let mut buf = Vec::new();
            client.write_tls(&mut buf).unwrap();
            server.read_tls(&mut buf.as_slice()).unwrap();
            server.process_new_packets().unwrap();
            let mut buf = Vec::new();
            server.write_tls(&mut buf).unwrap();
            client.read_tls(&mut buf.as_slice()).unwrap();
            client.process_new_packets().unwrap();
            if !client.is_handshaking() && !server.is_handshaking() {
                break;
            }
        }
        let leaf = client.peer_certificates().unwrap()[0].to_vec();
        let handshake = starling_tls::HandshakeInfo {
            server_name: server.server_name().map(str::to_owned),
            protocol_version: server.protocol_version().unwrap(),
            exporter: None,
        };
        let end_point = setup
            .session_info(&handshake)
            .channel_bindings
            .into_iter()
            .find(|binding| binding.kind == ChannelBindingType::TlsServerEndPoint)
            .map(|binding| binding.data);
        (leaf, end_point)
    }

    #[test]
    fn each_host_gets_its_own_certificate_and_end_point_binding() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config {
            hosts: vec!["a.test".to_owned(), "b.test".to_owned()],
            data_dir: dir.path().to_path_buf(),
            ..Config::default()
        };
        let setup = TlsSetup::load(&config).unwrap();
        assert!(dir.path().join("tls/cert.pem").exists());
        assert!(dir.path().join("tls/b.test/cert.pem").exists());
        let (a, a_end_point) = handshake(&setup, "a.test");
        let (b, b_end_point) = handshake(&setup, "B.TEST");
        let (other, _) = handshake(&setup, "unknown.test");
        assert_ne!(a, b);
        assert_eq!(other, a, "unknown names get the first host's certificate");
        assert!(
            starling_tls::CertificateInfo::parse(&b)
                .unwrap()
                .covers("b.test")
        );
        assert_eq!(a_end_point, Some(sha2::Sha256::digest(&a).to_vec()));
        assert_eq!(b_end_point, Some(sha2::Sha256::digest(&b).to_vec()));

        // A generated certificate that no longer names its host is made again; one that
        // does is kept.
        config.hosts = vec!["c.test".to_owned(), "b.test".to_owned()];
        let setup = TlsSetup::load(&config).unwrap();
        let (c, _) = handshake(&setup, "c.test");
        assert!(
            starling_tls::CertificateInfo::parse(&c)
                .unwrap()
                .covers("c.test")
        );
        assert_eq!(handshake(&setup, "b.test").0, b);
    }
}
