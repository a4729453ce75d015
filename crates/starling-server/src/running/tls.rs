//! rustls set-up for the configured hosts: a certificate per host (configured, or generated with
//! rcgen and written here), served by `starling-tls` by SNI; and the channel-binding data SASL
//! -PLUS needs from each TLS session.

use std::path::Path;

use anyhow::Context as _;
use starling_config::{CertificateSource, Config};
use starling_sasl::{ChannelBinding, ChannelBindingType};
use starling_stream::TlsInfo;
use starling_tls::certificate::is_usable_for;
use starling_tls::{HostCertificatesBuilder, ServerCertificates};

/// Everything a connection task needs to run TLS: the rustls config and the certificates.
pub type TlsSetup = ServerCertificates;

/// Load every host's certificate, generating self-signed ones where none is configured.
pub fn load(config: &Config) -> anyhow::Result<TlsSetup> {
    let mut certificates = HostCertificatesBuilder::default();
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
        certificates.add(host, source.certificate(), source.private_key())?;
    }
    Ok(certificates.build()?)
}

/// Channel bindings this established session can offer SASL (RFC 5929, RFC 9266).
pub fn session_info(setup: &TlsSetup, handshake: &starling_tls::HandshakeInfo) -> TlsInfo {
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
    // RFC 5929 §4.1 binds the certificate this session was served, which the resolver chose
    // from the same SNI.
    if let Some(data) = setup.server_end_point(handshake.server_name.as_deref()) {
        channel_bindings.push(ChannelBinding {
            kind: ChannelBindingType::TlsServerEndPoint,
            data: data.to_vec(),
        });
    }
    TlsInfo { channel_bindings }
}

/// Generate a self-signed certificate for `host` (rcgen, ECDSA P-256), replacing the files.
pub fn generate_self_signed(host: &str, cert_path: &Path, key_path: &Path) -> anyhow::Result<()> {
    for dir in [cert_path.parent(), key_path.parent()]
        .into_iter()
        .flatten()
    {
        starling_private_fs::create_private_dir(dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let generated =
        starling_tls::self_signed(host).context("generating a self-signed certificate")?;
    // Both files are created anew, so a symbolic link planted at either path is refused
    // rather than written through; the key is readable by this user only.
    starling_private_fs::write_new_file(
        key_path,
        generated.private_key_pem.as_bytes(),
        starling_private_fs::PRIVATE_FILE_MODE,
    )
    .with_context(|| format!("cannot write {}", key_path.display()))?;
    starling_private_fs::write_new_file(cert_path, generated.certificate_pem.as_bytes(), 0o644)
        .with_context(|| format!("cannot write {}", cert_path.display()))?;
    tracing::info!(path = %cert_path.display(), host, "generated a self-signed certificate");
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use rustls::pki_types::CertificateDer;
    use sha2::Digest as _;
    use starling_tls::certificate::read_key;

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
        let provider = Arc::new(starling_tls::server_provider());
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
        let end_point = session_info(setup, &handshake)
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
        let setup = load(&config).unwrap();
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
        let setup = load(&config).unwrap();
        let (c, _) = handshake(&setup, "c.test");
        assert!(
            starling_tls::CertificateInfo::parse(&c)
                .unwrap()
                .covers("c.test")
        );
        assert_eq!(handshake(&setup, "b.test").0, b);
    }
}
