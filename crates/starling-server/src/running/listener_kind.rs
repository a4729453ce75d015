//! How a connection arrived: the two listener kinds, named as logs and metrics label them.

/// How a connection arrived.
#[derive(Debug, Clone, Copy)]
pub enum ListenerKind {
    /// Plain TCP, STARTTLS later.
    StartTls,
    /// TLS from the first byte (XEP-0368).
    DirectTls,
}

impl ListenerKind {
    /// The listener's name in logs and metrics.
    pub fn name(self) -> &'static str {
        match self {
            ListenerKind::StartTls => "starttls",
            ListenerKind::DirectTls => "direct_tls",
        }
    }
}
