//! Per-server settings the stream engine obeys; built once from `starling.toml`.

use std::sync::Arc;

use starling_sasl::ScramOffers;
use starling_xml::Limits;

/// Settings shared by every c2s stream of one server.
#[derive(Debug, Clone)]
pub struct StreamConfig {
    /// Domains this server hosts, normalised (RFC 7622 nameprep). A header `to` naming any
    /// other domain gets `<host-unknown/>` (RFC 6120 §4.9.3.6).
    pub hosts: Vec<String>,
    /// Whether STARTTLS can be offered (a certificate is loaded).
    pub starttls_available: bool,
    /// Refuse SASL until the stream is encrypted (RFC 6120 §5.3.1 mandatory-to-negotiate TLS).
    pub require_encryption: bool,
    /// Offer and accept SASL PLAIN on an unencrypted stream. Off by default: PLAIN sends the
    /// password itself.
    pub allow_plain_without_tls: bool,
    /// SASL failures allowed on one connection; the next failure closes the stream
    /// (RFC 6120 §6.4.5 asks for "at least 2 and no more than 5" retries).
    pub max_auth_failures: u32,
    /// Parser limits before authentication.
    pub limits_unauthenticated: Limits,
    /// Parser limits once authenticated.
    pub limits_authenticated: Limits,
    /// Extra stream features offered after authentication, next to bind (for example roster
    /// versioning and subscription pre-approval, RFC 6121 §2.6.1 and §3.4). The engine only
    /// advertises them; the crates that implement them supply the elements.
    pub extra_bound_features: Vec<minidom::Element>,
    /// Extra stream features offered before authentication, after the SASL mechanisms (for
    /// example XEP-0115 capabilities). Never offered on a stream that must do STARTTLS first.
    pub extra_unauthenticated_features: Vec<minidom::Element>,
    /// Namespaces of first-level elements other than stanzas (nonzas) accepted on a bound
    /// stream, such as XEP-0352's `urn:xmpp:csi:0`. Each such element leaves the engine as
    /// [`Action::StreamElement`](crate::Action::StreamElement); any other non-stanza is still
    /// `<unsupported-stanza-type/>` (RFC 6120 §4.9.3.24).
    pub stream_element_namespaces: Vec<String>,
    /// The secret that keys made-up SCRAM salts for unknown users
    /// (`starling_sasl::ServerContext::decoy_secret`). All zeros by default, which keeps the
    /// salt stable but computable by anyone; a server sets a random one it keeps.
    pub sasl_decoy_secret: [u8; 32],
    /// The PBKDF2 iteration count new accounts get (`c2s.scram_iterations`); SASL's made-up
    /// answers for unknown users name the same count
    /// (`starling_sasl::ServerContext::new_account_iterations`).
    pub new_account_iterations: u32,
    /// The SCRAM hashes each host offers now (`starling_sasl::ScramOffers`): the server
    /// updates it as accounts get keys, and the engine reads its host's entry whenever it lists
    /// or starts mechanisms. Shared by every stream and kept across reloads.
    pub scram_offers: Arc<ScramOffers>,
    /// XEP-0198 stream management; `None` turns it off (no `<sm/>` feature).
    pub stream_management: Option<SmConfig>,
}

/// How stream management behaves (`[stream_management]` in `starling.toml`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SmConfig {
    /// How long a session whose connection broke is kept for resumption, in seconds (the
    /// `max` of `<enabled/>`; a client asking for less gets less). 0 turns resumption off.
    pub resume_window_secs: u32,
    /// Ask the client for an acknowledgement after this many unacknowledged stanzas.
    pub request_every: u32,
    /// Or once a stanza has waited this long (milliseconds) without one; the shell keeps
    /// this timer.
    pub request_after_ms: u32,
    /// Unacknowledged stanzas a client may leave; past it the stream ends with
    /// `<policy-violation/>` (what it has not acknowledged then goes where §5 says).
    pub max_unacked: usize,
}

/// Default resumption window (XEP-0198 leaves it to the server; Prosody keeps 600 s,
/// ejabberd 300 s).
pub const DEFAULT_RESUME_WINDOW_SECS: u32 = 300;
/// Default number of stanzas after which the server asks for an acknowledgement.
pub const DEFAULT_ACK_REQUEST_EVERY: u32 = 5;
/// Default delay before unacknowledged stanzas get an `<r/>` of their own, in milliseconds.
pub const DEFAULT_ACK_REQUEST_AFTER_MS: u32 = 2_000;
/// Default cap on stanzas the client has not acknowledged.
pub const DEFAULT_MAX_UNACKED: usize = 1_000;

impl Default for SmConfig {
    fn default() -> Self {
        Self {
            resume_window_secs: DEFAULT_RESUME_WINDOW_SECS,
            request_every: DEFAULT_ACK_REQUEST_EVERY,
            request_after_ms: DEFAULT_ACK_REQUEST_AFTER_MS,
            max_unacked: DEFAULT_MAX_UNACKED,
        }
    }
}

/// Default number of SASL failures tolerated on one connection.
pub const DEFAULT_MAX_AUTH_FAILURES: u32 = 3;

impl StreamConfig {
    /// Secure defaults for the given hosts: STARTTLS offered and required, no PLAIN in the clear.
    pub fn new(hosts: Vec<String>) -> Self {
        Self {
            scram_offers: Arc::new(ScramOffers::new(&hosts)),
            hosts,
            starttls_available: true,
            require_encryption: true,
            allow_plain_without_tls: false,
            max_auth_failures: DEFAULT_MAX_AUTH_FAILURES,
            limits_unauthenticated: Limits::unauthenticated(),
            limits_authenticated: Limits::authenticated(),
            extra_bound_features: Vec::new(),
            extra_unauthenticated_features: Vec::new(),
            stream_element_namespaces: Vec::new(),
            sasl_decoy_secret: [0; 32],
            new_account_iterations: starling_sasl::DEFAULT_ITERATIONS,
            stream_management: Some(SmConfig::default()),
        }
    }
}
