//! Mechanism names, channel bindings and what a connection offers (RFC 6120 §6.3.3, RFC 5802 §6).

use crate::credentials::ScramHash;
use crate::offer::ScramHashes;

/// A SASL mechanism this server implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mechanism {
    /// PLAIN (RFC 4616).
    Plain,
    /// SCRAM-SHA-1 (RFC 5802).
    ScramSha1,
    /// SCRAM-SHA-1-PLUS: SCRAM-SHA-1 with channel binding (RFC 5802 §6).
    ScramSha1Plus,
    /// SCRAM-SHA-256 (RFC 7677).
    ScramSha256,
    /// SCRAM-SHA-256-PLUS: SCRAM-SHA-256 with channel binding (RFC 7677, RFC 5802 §6).
    ScramSha256Plus,
}

impl Mechanism {
    /// Every mechanism, strongest first (the order `offered_mechanisms` keeps).
    pub const ALL: [Mechanism; 5] = [
        Mechanism::ScramSha256Plus,
        Mechanism::ScramSha1Plus,
        Mechanism::ScramSha256,
        Mechanism::ScramSha1,
        Mechanism::Plain,
    ];

    /// The registered SASL name, as sent in `<mechanism/>` and `<auth mechanism='...'/>`.
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::Plain => "PLAIN",
            Mechanism::ScramSha1 => "SCRAM-SHA-1",
            Mechanism::ScramSha1Plus => "SCRAM-SHA-1-PLUS",
            Mechanism::ScramSha256 => "SCRAM-SHA-256",
            Mechanism::ScramSha256Plus => "SCRAM-SHA-256-PLUS",
        }
    }

    /// Parses a mechanism name. SASL names are matched exactly: RFC 4422 §3.1 defines them
    /// in upper case and RFC 6120 §6.4.2 carries them verbatim.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.name() == name)
    }

    /// True for the channel-binding (-PLUS) variants.
    pub fn is_plus(self) -> bool {
        matches!(self, Mechanism::ScramSha1Plus | Mechanism::ScramSha256Plus)
    }

    /// The SCRAM hash, or `None` for PLAIN.
    pub fn scram_hash(self) -> Option<ScramHash> {
        match self {
            Mechanism::Plain => None,
            Mechanism::ScramSha1 | Mechanism::ScramSha1Plus => Some(ScramHash::Sha1),
            Mechanism::ScramSha256 | Mechanism::ScramSha256Plus => Some(ScramHash::Sha256),
        }
    }
}

/// A channel binding type the server can verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChannelBindingType {
    /// "tls-exporter" (RFC 9266), for TLS 1.3.
    TlsExporter,
    /// "tls-server-end-point" (RFC 5929 §4), a hash of the server certificate.
    TlsServerEndPoint,
}

impl ChannelBindingType {
    /// The registered name, as it appears in a GS2 header's `p=` (RFC 5056 §7).
    pub fn name(self) -> &'static str {
        match self {
            ChannelBindingType::TlsExporter => "tls-exporter",
            ChannelBindingType::TlsServerEndPoint => "tls-server-end-point",
        }
    }

    /// Parses a channel binding type name exactly.
    pub fn from_name(name: &str) -> Option<Self> {
        [
            ChannelBindingType::TlsExporter,
            ChannelBindingType::TlsServerEndPoint,
        ]
        .into_iter()
        .find(|t| t.name() == name)
    }
}

/// One channel binding the TLS layer produced for this connection.
#[derive(Clone, PartialEq, Eq)]
pub struct ChannelBinding {
    /// Which binding this is.
    pub kind: ChannelBindingType,
    /// The binding data (the exporter output or the certificate hash).
    pub data: Vec<u8>,
}

// The binding data is connection-secret material, so Debug shows only its length.
impl std::fmt::Debug for ChannelBinding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChannelBinding")
            .field("kind", &self.kind)
            .field("data_len", &self.data.len())
            .finish()
    }
}

/// What the connection can offer; built by the stream engine per connection.
#[derive(Debug, Clone)]
pub struct ServerContext {
    /// The host the client addressed, e.g. "localhost"; authzids must name an account on it.
    pub domain: String,
    /// True once TLS protects the stream.
    pub is_encrypted: bool,
    /// Offer and accept PLAIN on an unencrypted stream (default false in config).
    pub allow_plain_without_tls: bool,
    /// Empty on plaintext; tls-server-end-point always on TLS, tls-exporter additionally on TLS 1.3.
    pub channel_bindings: Vec<ChannelBinding>,
    /// The server's secret for made-up SCRAM salts of unknown users: with it, a decoy salt is
    /// the same on every attempt (as a real account's is) and nobody without it can compute
    /// one to tell a decoy from a real account. Keep it across restarts.
    pub decoy_secret: [u8; 32],
    /// The PBKDF2 iteration count new accounts get (the configured `scram_iterations`). A
    /// made-up SCRAM exchange for an unknown user names this count, and the stand-in PBKDF2 a
    /// PLAIN login for one runs uses it, as they would for an account created now.
    pub new_account_iterations: u32,
    /// The SCRAM hashes this host offers (`crate::offer`): the ones every account on it holds
    /// keys for, unless the operator chose otherwise. A SCRAM mechanism and its -PLUS variant
    /// are offered only when their hash is in the set.
    pub scram_hashes: ScramHashes,
}

impl ServerContext {
    /// The binding of the given type, if this connection has one.
    pub fn channel_binding(&self, kind: ChannelBindingType) -> Option<&ChannelBinding> {
        self.channel_bindings.iter().find(|cb| cb.kind == kind)
    }

    /// Whether the mechanism is offered on this connection: the transport allows it and, for
    /// SCRAM, its hash is in [`ServerContext::scram_hashes`]. Should that leave nothing to
    /// offer (a plaintext stream without PLAIN, on a host where no hash is held by every
    /// account), every SCRAM mechanism the transport allows is offered instead: some users
    /// failing is better than none being able to log in.
    pub fn offers(&self, mechanism: Mechanism) -> bool {
        self.transport_allows(mechanism)
            && match mechanism.scram_hash() {
                None => true,
                Some(hash) => self.scram_hashes.contains(hash) || !self.offers_any_by_hash(),
            }
    }

    /// Whether some mechanism passes both the transport and the hash filter.
    fn offers_any_by_hash(&self) -> bool {
        Mechanism::ALL.into_iter().any(|m| {
            self.transport_allows(m)
                && m.scram_hash()
                    .is_none_or(|hash| self.scram_hashes.contains(hash))
        })
    }

    /// Whether the transport allows the mechanism: PLAIN only when encrypted or allowed,
    /// -PLUS only with channel bindings.
    fn transport_allows(&self, mechanism: Mechanism) -> bool {
        match mechanism {
            Mechanism::Plain => self.is_encrypted || self.allow_plain_without_tls,
            Mechanism::ScramSha1Plus | Mechanism::ScramSha256Plus => {
                !self.channel_bindings.is_empty()
            }
            Mechanism::ScramSha1 | Mechanism::ScramSha256 => true,
        }
    }
}

/// Mechanisms to advertise, strongest first: SCRAM-SHA-256-PLUS, SCRAM-SHA-1-PLUS (only if
/// channel bindings exist), SCRAM-SHA-256, SCRAM-SHA-1, PLAIN (only if encrypted or allowed);
/// SCRAM ones only for the host's [`ServerContext::scram_hashes`] (see [`ServerContext::offers`]).
pub fn offered_mechanisms(ctx: &ServerContext) -> Vec<Mechanism> {
    Mechanism::ALL
        .into_iter()
        .filter(|m| ctx.offers(*m))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(
        is_encrypted: bool,
        allow_plain: bool,
        bindings: &[ChannelBindingType],
    ) -> ServerContext {
        ServerContext {
            domain: "localhost".to_owned(),
            is_encrypted,
            allow_plain_without_tls: allow_plain,
            channel_bindings: bindings
                .iter()
                .map(|kind| ChannelBinding {
                    kind: *kind,
                    data: vec![1, 2, 3],
                })
                .collect(),
            decoy_secret: [0; 32],
            new_account_iterations: crate::DEFAULT_ITERATIONS,
            scram_hashes: ScramHashes::ALL,
        }
    }

    fn names(ctx: &ServerContext) -> Vec<&'static str> {
        offered_mechanisms(ctx)
            .into_iter()
            .map(Mechanism::name)
            .collect()
    }

    #[test]
    fn plaintext_offers_scram_only() {
        assert_eq!(
            names(&ctx(false, false, &[])),
            ["SCRAM-SHA-256", "SCRAM-SHA-1"]
        );
    }

    #[test]
    fn plaintext_with_plain_allowed_offers_plain_last() {
        assert_eq!(
            names(&ctx(false, true, &[])),
            ["SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN"]
        );
    }

    #[test]
    fn tls_without_bindings_offers_plain_but_no_plus() {
        assert_eq!(
            names(&ctx(true, false, &[])),
            ["SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN"]
        );
    }

    #[test]
    fn tls_with_bindings_offers_everything_strongest_first() {
        assert_eq!(
            names(&ctx(true, false, &[ChannelBindingType::TlsServerEndPoint])),
            [
                "SCRAM-SHA-256-PLUS",
                "SCRAM-SHA-1-PLUS",
                "SCRAM-SHA-256",
                "SCRAM-SHA-1",
                "PLAIN"
            ]
        );
    }

    #[test]
    fn a_hash_the_host_does_not_offer_is_left_out_with_its_plus_variant() {
        let mut ctx = ctx(true, false, &[ChannelBindingType::TlsExporter]);
        ctx.scram_hashes = ScramHashes::only(ScramHash::Sha1);
        assert_eq!(names(&ctx), ["SCRAM-SHA-1-PLUS", "SCRAM-SHA-1", "PLAIN"]);
        assert!(!ctx.offers(Mechanism::ScramSha256));
        assert!(!ctx.offers(Mechanism::ScramSha256Plus));
        ctx.scram_hashes = ScramHashes::only(ScramHash::Sha256);
        assert_eq!(
            names(&ctx),
            ["SCRAM-SHA-256-PLUS", "SCRAM-SHA-256", "PLAIN"]
        );
        // No hash held by every account: PLAIN alone, which every account can complete.
        ctx.scram_hashes = ScramHashes::NONE;
        assert_eq!(names(&ctx), ["PLAIN"]);
    }

    #[test]
    fn with_nothing_left_to_offer_every_scram_mechanism_is_offered() {
        // Plaintext without PLAIN, and no hash complete: an empty list would lock everyone
        // out, so the SCRAM mechanisms come back.
        let mut ctx = ctx(false, false, &[]);
        ctx.scram_hashes = ScramHashes::NONE;
        assert_eq!(names(&ctx), ["SCRAM-SHA-256", "SCRAM-SHA-1"]);
        // One complete hash is enough to apply the filter.
        ctx.scram_hashes = ScramHashes::only(ScramHash::Sha1);
        assert_eq!(names(&ctx), ["SCRAM-SHA-1"]);
    }

    #[test]
    fn mechanism_names_round_trip() {
        for m in Mechanism::ALL {
            assert_eq!(Mechanism::from_name(m.name()), Some(m));
        }
        assert_eq!(Mechanism::from_name("scram-sha-1"), None);
        assert_eq!(Mechanism::from_name("DIGEST-MD5"), None);
        assert_eq!(Mechanism::from_name(""), None);
    }

    #[test]
    fn plus_and_hash_of_each_mechanism() {
        let table: Vec<(Mechanism, bool, Option<ScramHash>)> = Mechanism::ALL
            .into_iter()
            .map(|m| (m, m.is_plus(), m.scram_hash()))
            .collect();
        assert_eq!(
            table,
            [
                (Mechanism::ScramSha256Plus, true, Some(ScramHash::Sha256)),
                (Mechanism::ScramSha1Plus, true, Some(ScramHash::Sha1)),
                (Mechanism::ScramSha256, false, Some(ScramHash::Sha256)),
                (Mechanism::ScramSha1, false, Some(ScramHash::Sha1)),
                (Mechanism::Plain, false, None),
            ]
        );
    }

    #[test]
    fn channel_binding_names_round_trip() {
        assert_eq!(ChannelBindingType::TlsExporter.name(), "tls-exporter");
        assert_eq!(
            ChannelBindingType::TlsServerEndPoint.name(),
            "tls-server-end-point"
        );
        assert_eq!(
            ChannelBindingType::from_name("tls-exporter"),
            Some(ChannelBindingType::TlsExporter)
        );
        assert_eq!(
            ChannelBindingType::from_name("tls-server-end-point"),
            Some(ChannelBindingType::TlsServerEndPoint)
        );
        assert_eq!(ChannelBindingType::from_name("tls-unique"), None);
    }

    #[test]
    fn channel_binding_debug_hides_data() {
        let cb = ChannelBinding {
            kind: ChannelBindingType::TlsExporter,
            data: vec![9; 32],
        };
        assert_eq!(
            format!("{cb:?}"),
            "ChannelBinding { kind: TlsExporter, data_len: 32 }"
        );
    }
}
