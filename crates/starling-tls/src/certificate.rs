//! Certificates as files and as operators see them: reading PEM chains and keys, pairing a
//! chain with its key, what a certificate says (names, issuer, validity, fingerprint), whether
//! it covers a host (RFC 6125 §6.4), and the RFC 5929 `tls-server-end-point` hash.
//!
//! Which certificate serves which host is the server's business; this module only reads and
//! describes the files it is given.

use std::path::{Path, PathBuf};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use x509_parser::extensions::GeneralName;
use x509_parser::oid_registry as oids;

/// What went wrong reading or pairing a certificate and its key. The messages name the file,
/// and the source (if any) says why, as `check-config` and start-up print them.
#[derive(Debug, thiserror::Error)]
pub enum CertificateError {
    /// The certificate file cannot be read.
    #[error("cannot read certificate {}", path.display())]
    ReadCertificate {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The private key file cannot be read.
    #[error("cannot read private key {}", path.display())]
    ReadKey {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid PEM.
    #[error("invalid PEM in {}", path.display())]
    InvalidPem {
        /// The file.
        path: PathBuf,
        /// What the PEM reader said.
        #[source]
        source: std::io::Error,
    },
    /// The key file holds no private key.
    #[error("no private key found in {}", path.display())]
    NoPrivateKey {
        /// The file.
        path: PathBuf,
    },
    /// The chain to pair with a key is empty.
    #[error("the certificate file holds no certificate")]
    NoCertificate,
    /// The crypto provider cannot use the key.
    #[error("unusable private key: {0}")]
    UnusableKey(rustls::Error),
    /// The key is not the leaf certificate's.
    #[error("the private key does not match the certificate")]
    KeyMismatch,
    /// The provider could not compare key and certificate.
    #[error("cannot check the key against the certificate: {0}")]
    KeyCheck(rustls::Error),
    /// The DER is not an X.509 certificate.
    #[error("not an X.509 certificate: {0}")]
    NotX509(String),
    /// The subjectAltName extension cannot be read.
    #[error("unreadable subjectAltName extension: {0}")]
    SubjectAltName(String),
}

/// The PEM certificates in `path`, leaf first.
pub fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, CertificateError> {
    let pem = std::fs::read(path).map_err(|source| CertificateError::ReadCertificate {
        path: path.to_owned(),
        source,
    })?;
    rustls_pemfile::certs(&mut pem.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| CertificateError::InvalidPem {
            path: path.to_owned(),
            source,
        })
}

/// The first PEM private key in `path`.
pub fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, CertificateError> {
    let pem = std::fs::read(path).map_err(|source| CertificateError::ReadKey {
        path: path.to_owned(),
        source,
    })?;
    rustls_pemfile::private_key(&mut pem.as_slice())
        .map_err(|source| CertificateError::InvalidPem {
            path: path.to_owned(),
            source,
        })?
        .ok_or_else(|| CertificateError::NoPrivateKey {
            path: path.to_owned(),
        })
}

/// Pair a chain with its key, checking that the key belongs to the leaf.
pub fn certified_key(
    certs: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    provider: &CryptoProvider,
) -> Result<CertifiedKey, CertificateError> {
    if certs.is_empty() {
        return Err(CertificateError::NoCertificate);
    }
    let signing_key = provider
        .key_provider
        .load_private_key(key)
        .map_err(CertificateError::UnusableKey)?;
    let certified = CertifiedKey::new(certs, signing_key);
    match certified.keys_match() {
        // ring can compare every key type it loads; an unknown answer is not a mismatch.
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {
            Ok(certified)
        }
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
            Err(CertificateError::KeyMismatch)
        }
        Err(err) => Err(CertificateError::KeyCheck(err)),
    }
}

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
    pub fn parse(der: &[u8]) -> Result<Self, CertificateError> {
        let (_, cert) = x509_parser::parse_x509_certificate(der)
            .map_err(|err| CertificateError::NotX509(err.to_string()))?;
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
            Err(err) => return Err(CertificateError::SubjectAltName(err.to_string())),
        };
        let fingerprint = ring::digest::digest(&ring::digest::SHA256, der);
        Ok(Self {
            subject: cert.subject().to_string(),
            issuer: cert.issuer().to_string(),
            dns_names,
            not_before: cert.validity().not_before.timestamp(),
            not_after: cert.validity().not_after.timestamp(),
            sha256_fingerprint: fingerprint
                .as_ref()
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

/// Whether the certificate at `path` exists, covers `host` and is valid now; used to decide
/// whether a generated certificate must be made again.
pub fn is_usable_for(path: &Path, host: &str) -> bool {
    let Ok(chain) = read_certs(path) else {
        return false;
    };
    chain
        .first()
        .and_then(|leaf| CertificateInfo::parse(leaf.as_ref()).ok())
        .is_some_and(|info| info.covers(host) && info.is_valid_at(unix_now()))
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

/// RFC 5929 §4.1 `tls-server-end-point`: the hash of the certificate, with the hash of its
/// signature algorithm, except that MD5 and SHA-1 (and any algorithm we do not recognise)
/// are replaced by SHA-256. Algorithms without a hash of their own (Ed25519, Ed448) have no
/// defined end-point binding, and RSASSA-PSS carries its hash in parameters, which we do not
/// guess at: `None` for those, and for anything that is not a certificate.
pub fn server_end_point_hash(cert_der: &[u8]) -> Option<Vec<u8>> {
    let (_, cert) = x509_parser::parse_x509_certificate(cert_der).ok()?;
    let algorithm = &cert.signature_algorithm.algorithm;
    let hash = if *algorithm == oids::OID_SIG_ECDSA_WITH_SHA384
        || *algorithm == oids::OID_PKCS1_SHA384WITHRSA
    {
        &ring::digest::SHA384
    } else if *algorithm == oids::OID_SIG_ECDSA_WITH_SHA512
        || *algorithm == oids::OID_PKCS1_SHA512WITHRSA
    {
        &ring::digest::SHA512
    } else if *algorithm == oids::OID_SIG_ED25519
        || *algorithm == oids::OID_SIG_ED448
        || *algorithm == oids::OID_PKCS1_RSASSAPSS
    {
        return None;
    } else {
        &ring::digest::SHA256
    };
    Some(ring::digest::digest(hash, cert_der).as_ref().to_vec())
}

/// Seconds since the Unix epoch, now.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| {
            i64::try_from(elapsed.as_secs()).unwrap_or(i64::MAX)
        })
}

/// `2026-11-25 18:59:52 UTC` for seconds since the epoch (the `time` crate does the calendar;
/// a time it cannot represent is shown as its raw number).
pub fn format_time(unix: i64) -> String {
    const FORMAT: &[time::format_description::BorrowedFormatItem<'_>] =
        time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second] UTC");
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|at| at.format(FORMAT).ok())
        .unwrap_or_else(|| format!("{unix} s since 1970"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sha(algorithm: &'static ring::digest::Algorithm, der: &[u8]) -> Option<Vec<u8>> {
        Some(ring::digest::digest(algorithm, der).as_ref().to_vec())
    }

    fn self_signed(algorithm: &'static rcgen::SignatureAlgorithm) -> Vec<u8> {
        let key = rcgen::KeyPair::generate_for(algorithm).unwrap();
        let params = rcgen::CertificateParams::new(vec!["a.test".to_owned()]).unwrap();
        params.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn end_point_hash_follows_the_signature_hash() {
        // rcgen's default key is ECDSA P-256 signed with SHA-256.
        let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        let der = certified.cert.der().to_vec();
        assert_eq!(
            server_end_point_hash(&der),
            sha(&ring::digest::SHA256, &der)
        );
        let p384 = self_signed(&rcgen::PKCS_ECDSA_P384_SHA384);
        assert_eq!(
            server_end_point_hash(&p384),
            sha(&ring::digest::SHA384, &p384)
        );
        assert_eq!(
            server_end_point_hash(&self_signed(&rcgen::PKCS_ED25519)),
            None
        );
    }

    #[test]
    fn garbage_has_no_end_point_binding() {
        assert_eq!(server_end_point_hash(&[0x30, 0x05, 0x01]), None);
        assert_eq!(server_end_point_hash(&[]), None);
    }

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
        let first = ring::digest::digest(&ring::digest::SHA256, der).as_ref()[0];
        assert!(
            info.sha256_fingerprint
                .starts_with(&format!("{first:02X}:"))
        );
    }

    #[test]
    fn a_key_that_does_not_match_is_refused() {
        let a = rcgen::generate_simple_self_signed(vec!["a.test".to_owned()]).unwrap();
        let b = rcgen::generate_simple_self_signed(vec!["b.test".to_owned()]).unwrap();
        let key = |certified: &rcgen::CertifiedKey<rcgen::KeyPair>| {
            PrivateKeyDer::try_from(certified.signing_key.serialize_der()).unwrap()
        };
        let provider = rustls::crypto::ring::default_provider();
        let chain = || vec![a.cert.der().clone()];
        assert!(certified_key(chain(), key(&a), &provider).is_ok());
        let err = certified_key(chain(), key(&b), &provider).err().unwrap();
        assert_eq!(
            err.to_string(),
            "the private key does not match the certificate"
        );
    }
}
