//! Server-side TLS over tokio's `TcpStream` that holds no buffers while a connection is idle.
//!
//! *Why not tokio-rustls:* it drives rustls's buffered `ServerConnection`, whose record
//! deframer keeps a 4 KiB buffer for the life of the connection (it never shrinks below that),
//! plus two small queues. An XMPP server mostly holds idle connections, thousands of them, so
//! that buffer is a large share of what an idle session costs. This crate drives rustls's
//! *unbuffered* API (`UnbufferedServerConnection::process_tls_records`), where the caller owns
//! the buffers: ciphertext is read into a per-thread scratch buffer and decrypted in place, and
//! a connection keeps bytes only while they must survive a call — an incomplete record,
//! plaintext the reader had no room for, ciphertext the socket would not take yet. An idle
//! [`TlsStream`] holds no heap buffers besides rustls's own connection state.
//!
//! *Why the hooks ([`prepare_server_config`]):* the unbuffered connection offers neither
//! `server_name()` nor `export_keying_material()`, and SASL's -PLUS mechanisms need both: the
//! SNI name picks the certificate whose hash is `tls-server-end-point` (RFC 5929), and
//! `tls-exporter` (RFC 9266) is a TLS exporter value. So the server config gets a certificate
//! resolver wrapper that notes the SNI name rustls hands it, and a `KeyLog` that keeps only the
//! TLS 1.3 exporter master secret. Both write into a thread-local slot that [`accept`] installs
//! around each synchronous `process_tls_records` call, the only place rustls calls them from.
//! The exporter value, RFC 8446 §7.5 `TLS-Exporter("EXPORTER-Channel-Binding", "", 32)`, is
//! then computed here with ring's HKDF and the negotiated suite's hash, and the secret is wiped
//! at once. Only TLS 1.3 sessions get an exporter value: on TLS 1.2 RFC 9266 allows
//! `tls-exporter` only with the extended master secret, and the server never offered it there.

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod certificate;
mod hooks;
mod hosts;
mod stream;

pub use certificate::{CertificateError, CertificateInfo};
pub use hooks::{EXPORTER_LEN, prepare_server_config};
pub use hosts::{
    HostCertificatesBuilder, LoadError, SelfSigned, ServerCertificates, ServerTlsError,
    self_signed, server_provider,
};
pub use stream::{TlsStream, accept};

/// What a completed handshake negotiated, for channel bindings and logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandshakeInfo {
    /// The host name the client asked for with SNI.
    pub server_name: Option<String>,
    /// TLS 1.2 or TLS 1.3.
    pub protocol_version: rustls::ProtocolVersion,
    /// RFC 9266 `tls-exporter` channel binding; TLS 1.3 only.
    pub exporter: Option<[u8; EXPORTER_LEN]>,
}

impl HandshakeInfo {
    /// Read the negotiated values off a finished handshake and what the hooks captured;
    /// the exporter secret is dropped (and wiped) here.
    fn new(
        conn: &rustls::server::UnbufferedServerConnection,
        capture: hooks::Capture,
    ) -> Result<Self, TlsError> {
        let protocol_version = conn
            .protocol_version()
            .ok_or(rustls::Error::HandshakeNotComplete)?;
        let exporter = match (protocol_version, capture.exporter_secret) {
            (rustls::ProtocolVersion::TLSv1_3, Some(secret)) => conn
                .negotiated_cipher_suite()
                .and_then(|suite| suite.tls13())
                .and_then(|suite| {
                    hooks::channel_binding(&secret, suite.common.hash_provider.algorithm())
                }),
            _ => None,
        };
        Ok(Self {
            server_name: capture.server_name,
            protocol_version,
            exporter,
        })
    }
}

/// Why a handshake failed.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// rustls refused what the peer sent (its alert was sent when the socket took it).
    #[error(transparent)]
    Tls(#[from] rustls::Error),
    /// The socket failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// The peer closed the connection before the handshake finished.
    #[error("tls handshake eof")]
    HandshakeEof,
}

impl From<TlsError> for std::io::Error {
    /// As tokio-rustls reports them: rustls errors are `InvalidData`.
    fn from(err: TlsError) -> Self {
        match err {
            TlsError::Tls(err) => std::io::Error::new(std::io::ErrorKind::InvalidData, err),
            TlsError::Io(err) => err,
            TlsError::HandshakeEof => {
                std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "tls handshake eof")
            }
        }
    }
}
