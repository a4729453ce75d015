//! TLS to PostgreSQL (issue 15): libpq's `sslmode` and `sslrootcert` read from the connection
//! string, a rustls (ring) connector for tokio-postgres, and the rule that account data never
//! crosses a network in plaintext unless the operator said so.
//!
//! tokio-postgres knows `sslmode` `disable`, `prefer` and `require` only, and refuses options
//! it does not know, so [`TlsSettings::split`] takes `sslmode` and `sslrootcert` out of the
//! string and hands the rest on. The modes keep libpq's meaning
//! (<https://www.postgresql.org/docs/current/libpq-ssl.html>): `disable` never uses TLS,
//! `prefer` (the default) uses it when the server offers it, `require` insists on it without
//! checking the certificate, and `verify-full` insists on it and checks the certificate chain
//! against `sslrootcert` and the host name. `verify-ca` (chain without host name) is refused
//! rather than silently treated as something else.

use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::config::{Host, SslMode as DriverSslMode};
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect, TlsStream};

/// libpq's `sslmode` values that Starling supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    /// Never TLS.
    Disable,
    /// TLS when the server offers it, plaintext otherwise; the certificate is not checked.
    Prefer,
    /// TLS or no connection; the certificate is not checked.
    Require,
    /// TLS or no connection, with the certificate checked against `sslrootcert` and the host.
    VerifyFull,
}

impl SslMode {
    /// Whether a connection in this mode may carry data in plaintext.
    pub fn allows_plaintext(self) -> bool {
        matches!(self, SslMode::Disable | SslMode::Prefer)
    }

    fn parse(value: &str) -> Result<Self, TlsConfigError> {
        match value {
            "disable" => Ok(SslMode::Disable),
            "prefer" => Ok(SslMode::Prefer),
            "require" => Ok(SslMode::Require),
            "verify-full" => Ok(SslMode::VerifyFull),
            "allow" | "verify-ca" => Err(TlsConfigError::UnsupportedSslMode(value.to_owned())),
            _ => Err(TlsConfigError::UnknownSslMode(value.to_owned())),
        }
    }
}

/// What is wrong with a connection string's TLS settings.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TlsConfigError {
    #[error("sslmode={0} is not supported; use disable, prefer, require or verify-full")]
    UnsupportedSslMode(String),
    #[error("unknown sslmode {0:?}; use disable, prefer, require or verify-full")]
    UnknownSslMode(String),
    #[error("sslmode=verify-full needs sslrootcert=<file with the CA certificates in PEM>")]
    MissingRootCert,
    #[error("cannot read sslrootcert {path}: {reason}")]
    RootCert { path: String, reason: String },
    #[error("bad {0} in the connection string")]
    Syntax(&'static str),
    #[error(
        "the connection to {host} may be plaintext (sslmode={mode}); use sslmode=verify-full \
         (or require) for a PostgreSQL server that is not on this machine"
    )]
    PlaintextToRemote { host: String, mode: &'static str },
}

/// The TLS part of a connection string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    /// `sslmode`; `prefer` when absent, as in libpq.
    pub mode: SslMode,
    /// `sslrootcert`: a PEM file of CA certificates for `verify-full`.
    pub root_cert: Option<PathBuf>,
}

impl TlsSettings {
    /// Take `sslmode` and `sslrootcert` out of `url` (a `key=value` string or a
    /// `postgres://`/`postgresql://` URI); returns them and the rest of the string for
    /// tokio-postgres.
    pub fn split(url: &str) -> Result<(TlsSettings, String), TlsConfigError> {
        let mut mode = None;
        let mut root_cert = None;
        let mut take = |key: &str, value: String| -> Result<bool, TlsConfigError> {
            match key {
                "sslmode" => mode = Some(SslMode::parse(&value)?),
                "sslrootcert" => root_cert = Some(PathBuf::from(value)),
                _ => return Ok(false),
            }
            Ok(true)
        };
        let rest = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            split_uri(url, &mut take)?
        } else {
            split_key_values(url, &mut take)?
        };
        let settings = TlsSettings {
            mode: mode.unwrap_or(SslMode::Prefer),
            root_cert,
        };
        if settings.mode == SslMode::VerifyFull && settings.root_cert.is_none() {
            return Err(TlsConfigError::MissingRootCert);
        }
        Ok((settings, rest))
    }

    /// What [`PostgresStore::connect_with`](super::PostgresStore::connect_with) would refuse
    /// about `url`'s TLS settings, without connecting (for `check-config`). A string
    /// tokio-postgres cannot parse passes here; connecting reports it.
    pub fn check_url(url: &str, allow_plaintext_remote: bool) -> Result<(), TlsConfigError> {
        let (settings, rest) = Self::split(url)?;
        match rest.parse::<tokio_postgres::Config>() {
            Ok(config) => settings.check_plaintext(&config, allow_plaintext_remote),
            Err(_) => Ok(()),
        }
    }

    /// The mode tokio-postgres negotiates with (it only needs to know whether TLS is off,
    /// optional or mandatory; verification is the connector's business).
    pub(super) fn driver_mode(&self) -> DriverSslMode {
        match self.mode {
            SslMode::Disable => DriverSslMode::Disable,
            SslMode::Prefer => DriverSslMode::Prefer,
            SslMode::Require | SslMode::VerifyFull => DriverSslMode::Require,
        }
    }

    /// Refuse a mode that allows plaintext when a host is not on this machine, unless
    /// `allow_plaintext_remote`.
    pub fn check_plaintext(
        &self,
        config: &tokio_postgres::Config,
        allow_plaintext_remote: bool,
    ) -> Result<(), TlsConfigError> {
        if !self.mode.allows_plaintext() || allow_plaintext_remote {
            return Ok(());
        }
        match remote_host(config) {
            None => Ok(()),
            Some(host) => Err(TlsConfigError::PlaintextToRemote {
                host,
                mode: match self.mode {
                    SslMode::Disable => "disable",
                    _ => "prefer",
                },
            }),
        }
    }

    /// The connector for these settings (rustls with the ring provider).
    pub(super) fn connector(&self) -> Result<RustlsConnect, TlsConfigError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .map_err(|_| TlsConfigError::Syntax("TLS protocol versions"))?;
        let mut config = match (&self.mode, &self.root_cert) {
            (SslMode::VerifyFull, Some(path)) => {
                let roots = read_roots(path)?;
                builder.with_root_certificates(roots).with_no_client_auth()
            }
            // prefer and require: encrypted, but, as in libpq, the certificate is not checked.
            _ => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(UncheckedCertificate { provider }))
                .with_no_client_auth(),
        };
        // PostgreSQL 17 checks this ALPN id when a client offers one; older servers ignore it.
        config.alpn_protocols = vec![b"postgresql".to_vec()];
        Ok(RustlsConnect {
            config: Arc::new(config),
        })
    }
}

/// The first host of `config` that is not on this machine: a TCP host that is neither
/// `localhost` nor a loopback address (a `hostaddr`, when given, is what is connected to).
/// Unix-domain sockets are local.
fn remote_host(config: &tokio_postgres::Config) -> Option<String> {
    let addrs = config.get_hostaddrs();
    if !addrs.is_empty() {
        return addrs
            .iter()
            .find(|addr| !addr.is_loopback())
            .map(IpAddr::to_string);
    }
    config.get_hosts().iter().find_map(|host| match host {
        Host::Tcp(name) => {
            let is_local = name.eq_ignore_ascii_case("localhost")
                || name
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .parse::<IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback());
            (!is_local).then(|| name.clone())
        }
        Host::Unix(_) => None,
    })
}

fn read_roots(path: &std::path::Path) -> Result<RootCertStore, TlsConfigError> {
    let failed = |reason: String| TlsConfigError::RootCert {
        path: path.display().to_string(),
        reason,
    };
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(path).map_err(|err| failed(err.to_string()))? {
        let cert = cert.map_err(|err| failed(err.to_string()))?;
        roots.add(cert).map_err(|err| failed(err.to_string()))?;
    }
    if roots.is_empty() {
        return Err(failed("no certificate in it".to_owned()));
    }
    Ok(roots)
}

/// `sslmode=prefer` and `require`: any certificate is accepted (libpq checks none in these
/// modes), but the handshake signatures are still verified, so the session key belongs to
/// whoever holds the presented certificate's key.
#[derive(Debug)]
struct UncheckedCertificate {
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for UncheckedCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// tokio-postgres's TLS hook over tokio-rustls.
#[derive(Clone)]
pub(super) struct RustlsConnect {
    config: Arc<ClientConfig>,
}

/// One connection's handshake, for the host name it connects to.
pub(super) struct RustlsConnectOne {
    config: Arc<ClientConfig>,
    server_name: ServerName<'static>,
}

impl<S> MakeTlsConnect<S> for RustlsConnect
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type TlsConnect = RustlsConnectOne;
    type Error = io::Error;

    fn make_tls_connect(&mut self, domain: &str) -> Result<RustlsConnectOne, io::Error> {
        let server_name = ServerName::try_from(domain.to_owned())
            .map_err(|err| io::Error::new(io::ErrorKind::InvalidInput, err))?;
        Ok(RustlsConnectOne {
            config: Arc::clone(&self.config),
            server_name,
        })
    }
}

impl<S> TlsConnect<S> for RustlsConnectOne
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<RustlsStream<S>>> + Send>>;

    fn connect(self, stream: S) -> Self::Future {
        let connector = tokio_rustls::TlsConnector::from(self.config);
        Box::pin(async move {
            let tls = connector.connect(self.server_name, stream).await?;
            Ok(RustlsStream(Box::new(tls)))
        })
    }
}

/// A TLS stream to PostgreSQL.
pub(super) struct RustlsStream<S>(Box<tokio_rustls::client::TlsStream<S>>);

impl<S: AsyncRead + AsyncWrite + Unpin> TlsStream for RustlsStream<S> {
    fn channel_binding(&self) -> ChannelBinding {
        // SCRAM-SHA-256-PLUS is not offered; the password exchange is SCRAM over this TLS.
        ChannelBinding::none()
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for RustlsStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for RustlsStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0).poll_shutdown(cx)
    }
}

/// Splits `key=value` pairs (values bare or in single quotes, `\` escaping the next
/// character), keeping the pairs `take` does not claim, re-quoted.
fn split_key_values(
    text: &str,
    take: &mut impl FnMut(&str, String) -> Result<bool, TlsConfigError>,
) -> Result<String, TlsConfigError> {
    let mut rest = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.peek().is_none() {
            break;
        }
        let mut key = String::new();
        while let Some(c) = chars.next_if(|c| *c != '=' && !c.is_whitespace()) {
            key.push(c);
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.next() != Some('=') || key.is_empty() {
            return Err(TlsConfigError::Syntax("key=value pair"));
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut value = String::new();
        if chars.next_if_eq(&'\'').is_some() {
            loop {
                match chars.next() {
                    Some('\'') => break,
                    Some('\\') => value.push(chars.next().ok_or(TlsConfigError::Syntax("quote"))?),
                    Some(c) => value.push(c),
                    None => return Err(TlsConfigError::Syntax("quote")),
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                if c == '\\' {
                    value.push(chars.next().ok_or(TlsConfigError::Syntax("escape"))?);
                } else {
                    value.push(c);
                }
            }
        }
        if !take(&key, value.clone())? {
            let quoted = value.replace('\\', "\\\\").replace('\'', "\\'");
            rest.push(format!("{key}='{quoted}'"));
        }
    }
    Ok(rest.join(" "))
}

/// Splits the query of a `postgres://` URI, keeping the parameters `take` does not claim.
fn split_uri(
    uri: &str,
    take: &mut impl FnMut(&str, String) -> Result<bool, TlsConfigError>,
) -> Result<String, TlsConfigError> {
    let Some((base, query)) = uri.split_once('?') else {
        return Ok(uri.to_owned());
    };
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|pair| !pair.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        if !take(key, percent_decode(value)?)? {
            kept.push(pair);
        }
    }
    Ok(if kept.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", kept.join("&"))
    })
}

fn percent_decode(text: &str) -> Result<String, TlsConfigError> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&byte) = bytes.get(i) {
        if byte == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|hex| std::str::from_utf8(hex).ok())
                .and_then(|hex| u8::from_str_radix(hex, 16).ok())
                .ok_or(TlsConfigError::Syntax("percent-encoding"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(byte);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| TlsConfigError::Syntax("percent-encoding"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(url: &str) -> (TlsSettings, String) {
        TlsSettings::split(url).unwrap()
    }

    #[test]
    fn sslmode_and_root_cert_are_taken_out_of_key_values() {
        let (settings, rest) = split(
            "host=db.example.net sslmode=verify-full sslrootcert='/etc/ca dir/ca.pem' \
             password='it\\'s' user = starling",
        );
        assert_eq!(settings.mode, SslMode::VerifyFull);
        assert_eq!(
            settings.root_cert,
            Some(PathBuf::from("/etc/ca dir/ca.pem"))
        );
        assert_eq!(
            rest,
            "host='db.example.net' password='it\\'s' user='starling'"
        );
        // What is left still parses, with the same password.
        let config: tokio_postgres::Config = rest.parse().unwrap();
        assert_eq!(config.get_password(), Some(&b"it's"[..]));
    }

    #[test]
    fn sslmode_and_root_cert_are_taken_out_of_uris() {
        let (settings, rest) = split(
            "postgresql://u:p@db.example.net:5433/starling?sslmode=require&connect_timeout=5",
        );
        assert_eq!(settings.mode, SslMode::Require);
        assert_eq!(
            rest,
            "postgresql://u:p@db.example.net:5433/starling?connect_timeout=5"
        );
        let (settings, rest) =
            split("postgres://db/x?sslrootcert=%2Fetc%2Fca.pem&sslmode=verify-full");
        assert_eq!(settings.root_cert, Some(PathBuf::from("/etc/ca.pem")));
        assert_eq!(rest, "postgres://db/x");
    }

    #[test]
    fn sslmode_defaults_to_prefer_and_rejects_what_it_cannot_honour() {
        assert_eq!(split("host=localhost").0.mode, SslMode::Prefer);
        assert_eq!(
            TlsSettings::split("host=db sslmode=verify-ca"),
            Err(TlsConfigError::UnsupportedSslMode("verify-ca".to_owned()))
        );
        assert_eq!(
            TlsSettings::split("host=db sslmode=bogus"),
            Err(TlsConfigError::UnknownSslMode("bogus".to_owned()))
        );
        assert_eq!(
            TlsSettings::split("host=db sslmode=verify-full"),
            Err(TlsConfigError::MissingRootCert)
        );
        assert_eq!(
            TlsSettings::split("host=db sslmode='open"),
            Err(TlsConfigError::Syntax("quote"))
        );
    }

    fn check(url: &str, allow_plaintext_remote: bool) -> Result<(), TlsConfigError> {
        let (settings, rest) = TlsSettings::split(url)?;
        let config: tokio_postgres::Config = rest.parse().unwrap();
        settings.check_plaintext(&config, allow_plaintext_remote)
    }

    #[test]
    fn plaintext_is_refused_to_remote_hosts_only() {
        for local in [
            "host=localhost",
            "host=127.0.0.1 sslmode=disable",
            "host=::1",
            "host=/run/postgresql",
            "host=db.example.net hostaddr=127.0.0.1",
            "postgresql://localhost/starling",
        ] {
            assert_eq!(check(local, false), Ok(()), "{local}");
        }
        assert_eq!(
            check("host=db.example.net", false),
            Err(TlsConfigError::PlaintextToRemote {
                host: "db.example.net".to_owned(),
                mode: "prefer"
            })
        );
        assert_eq!(
            check("host=localhost,10.0.0.5 sslmode=disable", false),
            Err(TlsConfigError::PlaintextToRemote {
                host: "10.0.0.5".to_owned(),
                mode: "disable"
            })
        );
        assert_eq!(
            check("postgresql://u@192.0.2.7/starling", false).map_err(|e| e.to_string()),
            Err(
                "the connection to 192.0.2.7 may be plaintext (sslmode=prefer); use \
                 sslmode=verify-full (or require) for a PostgreSQL server that is not on \
                 this machine"
                    .to_owned()
            )
        );
        assert_eq!(check("host=db.example.net sslmode=require", false), Ok(()));
        assert_eq!(check("host=db.example.net sslmode=disable", true), Ok(()));
    }

    #[test]
    fn verify_full_needs_a_readable_ca_file() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let (settings, _) = split(&format!(
            "host=db sslmode=verify-full sslrootcert={}",
            missing.display()
        ));
        assert!(matches!(
            settings.connector().err(),
            Some(TlsConfigError::RootCert { .. })
        ));
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "").unwrap();
        let (settings, _) = split(&format!(
            "host=db sslmode=verify-full sslrootcert={}",
            empty.display()
        ));
        assert!(matches!(
            settings.connector().err(),
            Some(TlsConfigError::RootCert { reason, .. }) if reason == "no certificate in it"
        ));
        assert!(split("host=db sslmode=require").0.connector().is_ok());
    }
}
