//! The server's certificates, one per host and chosen by SNI, and the rustls server config that
//! serves them: ring's provider with our cipher-suite order, TLS 1.2 and 1.3 only.
//!
//! Which files serve which host is the caller's decision (`starling_config::Config::
//! certificate_for`); this module loads each pair once however many hosts share it, resolves
//! the client's SNI name to a certificate (the first host's for no or an unknown name) and keeps
//! each leaf's RFC 5929 `tls-server-end-point` data for the session that was served it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::certificate::{CertificateError, certified_key, read_certs, read_key};

/// The rustls server config and the certificates it serves.
#[derive(Debug)]
pub struct ServerCertificates {
    /// The rustls server configuration, shared by all connections.
    pub server_config: Arc<rustls::ServerConfig>,
    /// The certificates by host; also the server config's certificate resolver.
    certificates: Arc<HostCertificates>,
}

/// Gathers each host's certificate ([`HostCertificatesBuilder::add`]), then builds the server
/// config ([`HostCertificatesBuilder::build`]).
pub struct HostCertificatesBuilder {
    provider: Arc<CryptoProvider>,
    /// Pairs already loaded, so hosts sharing files share one entry.
    loaded: HashMap<(PathBuf, PathBuf), Arc<ServedCertificate>>,
    by_host: HashMap<String, Arc<ServedCertificate>>,
    /// The first host added, whose certificate is the default.
    first: Option<String>,
}

/// Why the server's TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ServerTlsError {
    /// A host's certificate or key could not be loaded.
    #[error("loading the certificate for {host}")]
    Load {
        /// The host.
        host: String,
        /// Why (boxed: the rustls error inside is large).
        #[source]
        source: Box<LoadError>,
    },
    /// No host was added.
    #[error("no hosts configured")]
    NoHosts,
    /// rustls refused the protocol versions.
    #[error("building TLS configuration")]
    Config(#[source] rustls::Error),
}

/// Why one certificate and key pair could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// A file could not be read or parsed.
    #[error(transparent)]
    Read(CertificateError),
    /// The key and chain do not make a usable pair.
    #[error("{} and {}", certificate.display(), private_key.display())]
    Pair {
        /// The certificate file.
        certificate: PathBuf,
        /// The key file.
        private_key: PathBuf,
        /// Why.
        #[source]
        source: CertificateError,
    },
}

impl Default for HostCertificatesBuilder {
    fn default() -> Self {
        Self {
            provider: Arc::new(server_provider()),
            loaded: HashMap::new(),
            by_host: HashMap::new(),
            first: None,
        }
    }
}

impl HostCertificatesBuilder {
    /// Serve `host` (normalised, lower case) with this certificate chain and key.
    pub fn add(
        &mut self,
        host: &str,
        certificate: &Path,
        private_key: &Path,
    ) -> Result<(), ServerTlsError> {
        let files = (certificate.to_path_buf(), private_key.to_path_buf());
        let served = match self.loaded.get(&files) {
            Some(served) => Arc::clone(served),
            None => {
                let served = Arc::new(
                    load_served(certificate, private_key, &self.provider).map_err(|source| {
                        ServerTlsError::Load {
                            host: host.to_owned(),
                            source: Box::new(source),
                        }
                    })?,
                );
                self.loaded.insert(files, Arc::clone(&served));
                served
            }
        };
        self.first.get_or_insert_with(|| host.to_owned());
        self.by_host.insert(host.to_owned(), served);
        Ok(())
    }

    /// The rustls server config over the hosts added so far.
    pub fn build(self) -> Result<ServerCertificates, ServerTlsError> {
        let default = self
            .first
            .and_then(|first| self.by_host.get(&first).map(Arc::clone))
            .ok_or(ServerTlsError::NoHosts)?;
        let certificates = Arc::new(HostCertificates {
            by_host: self.by_host,
            default,
        });
        // TLS 1.2 and 1.3 only; rustls has never implemented 1.0 or 1.1.
        let mut server_config = rustls::ServerConfig::builder_with_provider(self.provider)
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(ServerTlsError::Config)?
            .with_no_client_auth()
            .with_cert_resolver(Arc::clone(&certificates) as Arc<dyn ResolvesServerCert>);
        server_config.ignore_client_order = true;
        // The SNI name and the TLS 1.3 exporter secret, which connections driven through
        // rustls's unbuffered API cannot ask for afterwards.
        crate::prepare_server_config(&mut server_config);
        Ok(ServerCertificates {
            server_config: Arc::new(server_config),
            certificates,
        })
    }
}

impl ServerCertificates {
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

    /// RFC 5929 `tls-server-end-point` data of the certificate served for this SNI name (the
    /// resolver chose it from the same name), if its signature algorithm defines one.
    pub fn server_end_point(&self, server_name: Option<&str>) -> Option<&[u8]> {
        self.certificates
            .for_name(server_name)
            .server_end_point
            .as_deref()
    }
}

/// ring's provider with the cipher suites in our order of preference, which the server
/// applies over the client's (`ignore_client_order`): AES-128-GCM with SHA-256 first. All
/// offered suites are AEADs with forward secrecy, so the order is about cost: AES-128 needs
/// fewer rounds than AES-256 and SHA-256 runs on the SHA extensions of current x86 and ARM
/// CPUs, where SHA-384's key schedule does not.
pub fn server_provider() -> CryptoProvider {
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

/// A self-signed certificate and its key, PEM-encoded.
pub struct SelfSigned {
    /// The certificate.
    pub certificate_pem: String,
    /// The private key; a secret.
    pub private_key_pem: String,
}

/// Make a self-signed certificate for `host` (rcgen, ECDSA P-256) with `host` as its common
/// name and only subjectAltName.
pub fn self_signed(host: &str) -> Result<SelfSigned, rcgen::Error> {
    let mut params = rcgen::CertificateParams::new(vec![host.to_owned()])?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, host);
    let key = rcgen::KeyPair::generate()?;
    let cert = params.self_signed(&key)?;
    Ok(SelfSigned {
        certificate_pem: cert.pem(),
        private_key_pem: key.serialize_pem(),
    })
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
    certificate: &Path,
    private_key: &Path,
    provider: &CryptoProvider,
) -> Result<ServedCertificate, LoadError> {
    let certs = read_certs(certificate).map_err(LoadError::Read)?;
    let key = read_key(private_key).map_err(LoadError::Read)?;
    let certified = certified_key(certs, key, provider).map_err(|source| LoadError::Pair {
        certificate: certificate.to_path_buf(),
        private_key: private_key.to_path_buf(),
        source,
    })?;
    let server_end_point = certified
        .cert
        .first()
        .and_then(|leaf| crate::certificate::server_end_point_hash(leaf.as_ref()));
    Ok(ServedCertificate {
        certified: Arc::new(certified),
        server_end_point,
        path: certificate.to_path_buf(),
    })
}
