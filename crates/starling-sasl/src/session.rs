//! One SASL negotiation as a step machine (RFC 6120 §6.4, RFC 4616, RFC 5802 §5).
//!
//! The engine feeds decoded client data in through [`SaslSession::step`] and account data
//! through [`SaslSession::credentials`]; each call returns the one thing to do next.

use crate::credentials::{MAX_ITERATIONS, ScramHash, ScramKeys, StoredCredentials};
use crate::failure::SaslFailure;
use crate::mechanism::{ChannelBinding, ChannelBindingType, Mechanism, ServerContext};
use crate::offer::ScramHashes;
use crate::plain;
use crate::scram::{self, CbindFlag};

/// What the engine should do after feeding the session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SaslStep {
    /// Send `<challenge/>` with these raw bytes (the engine base64-encodes them).
    Challenge(Vec<u8>),
    /// Fetch `StoredCredentials` for `username@domain` and pass them to
    /// [`SaslSession::credentials`].
    LookupCredentials {
        /// The authcid after SASLprep (the engine applies nodeprep).
        username: String,
    },
    /// Send `<success/>`; the stream is authenticated as `username`.
    Success {
        /// The authcid after SASLprep (the engine applies nodeprep).
        username: String,
        /// Additional data with success (RFC 6120 §6.3.10): the SCRAM server-final-message.
        additional_data: Option<Vec<u8>>,
    },
    /// Run this PBKDF2 check (CPU-heavy: off the async reactor) and pass its outcome to
    /// [`SaslSession::password_checked`].
    CheckPassword(PasswordCheck),
    /// Send `<failure/>` with this condition; the session is over.
    Failure(SaslFailure),
}

/// One PLAIN password check: the PBKDF2 derivation and comparison a PLAIN login costs, as a
/// value that owns everything it needs, so the engine's shell can run it on a blocking thread
/// (and bound how many run at once) while the step machine waits.
///
/// For an unknown account it derives keys for a made-up salt at the count a new account gets,
/// so the answer takes as long as a real check and says no.
///
/// A check also knows which hashes the account has no keys for, so that a login with the right
/// password can fill them in ([`PasswordCheck::run_upgrading`]): an account imported with
/// SCRAM-SHA-1 keys only gets SCRAM-SHA-256 keys the first time its user logs in with PLAIN.
#[derive(Clone, PartialEq, Eq)]
pub struct PasswordCheck {
    password: Secret,
    /// The account's keys, or the decoy's (never matched: the session refuses decoys).
    keys: ScramKeys,
    /// The hashes the account has no keys for; none for a decoy.
    missing: ScramHashes,
    /// The iteration count keys derived for `missing` get (the count new accounts get).
    upgrade_iterations: u32,
}

/// What a [`PasswordCheck`] found, with the keys it derived for hashes the account lacked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckOutcome {
    /// The password matches the account's keys.
    pub matches: bool,
    /// Keys to add to the account; `Some` only for a match on an account that lacked a hash.
    pub upgrade: Option<KeyUpgrade>,
}

/// Keys for the hashes an account lacked, derived from the password it has just proved.
///
/// Store them only if the account still holds `verified` (its password did not change since
/// the check) and only for hashes it still lacks: `starling-storage`'s
/// `AccountStore::add_missing_keys` does both in one transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyUpgrade {
    /// The keys the password was checked against.
    pub verified: ScramKeys,
    /// New keys, one per hash the account lacked, each with its own salt.
    pub added: Vec<ScramKeys>,
}

impl PasswordCheck {
    /// Derives and compares in constant time; true when the password matches the keys. Costs
    /// one PBKDF2 at the keys' iteration count (at most [`MAX_ITERATIONS`]).
    pub fn run(&self) -> bool {
        self.keys.verify_prepared(&self.password.0)
    }

    /// The hashes the account has no keys for (none for an unknown account).
    pub fn missing_hashes(&self) -> ScramHashes {
        self.missing
    }

    /// [`PasswordCheck::run`], and on a match derives keys for every hash the account lacks,
    /// with `salt(hash)` (draw [`crate::SALT_BYTES`] random bytes) and the count new accounts
    /// get: one more PBKDF2 per missing hash, once per account.
    pub fn run_upgrading(&self, mut salt: impl FnMut(ScramHash) -> Vec<u8>) -> CheckOutcome {
        let matches = self.run();
        if !matches || self.missing.is_empty() {
            return CheckOutcome {
                matches,
                upgrade: None,
            };
        }
        // The count was checked when the configuration was loaded; a count this build would
        // refuse only means no upgrade.
        let added: Vec<ScramKeys> = self
            .missing
            .iter()
            .filter_map(|hash| {
                ScramKeys::derive_prepared(
                    hash,
                    &self.password.0,
                    &salt(hash),
                    self.upgrade_iterations,
                )
                .ok()
            })
            .collect();
        CheckOutcome {
            matches,
            upgrade: (!added.is_empty()).then(|| KeyUpgrade {
                verified: self.keys.clone(),
                added,
            }),
        }
    }
}

// The password stays out of logs: Debug shows only the count the check costs.
impl std::fmt::Debug for PasswordCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PasswordCheck")
            .field("iterations", &self.keys.iterations)
            .finish_non_exhaustive()
    }
}

/// One SASL negotiation on one stream.
pub struct SaslSession {
    /// The mechanism the client chose.
    mechanism: Mechanism,
    /// The domain the client addressed; authzids must name an account there.
    domain: String,
    /// The bindings this connection can verify; `p=` must name one of them.
    channel_bindings: Vec<ChannelBinding>,
    /// The server's half of the SCRAM nonce, supplied by the engine.
    server_nonce: String,
    /// Keys made-up salts for unknown users ([`ServerContext::decoy_secret`]).
    decoy_secret: [u8; 32],
    /// The count made-up keys claim ([`ServerContext::new_account_iterations`]).
    new_account_iterations: u32,
    /// Where the exchange is.
    state: State,
}

enum State {
    /// Waiting for the initial response; `true` once the empty challenge went out.
    Initial { sent_empty_challenge: bool },
    /// PLAIN message accepted syntactically; waiting for the account's keys.
    PlainAwaitingCredentials { authcid: String, password: Secret },
    /// A [`PasswordCheck`] is out; `is_decoy` when the account does not exist or has no keys.
    PlainAwaitingCheck { authcid: String, is_decoy: bool },
    /// client-first-message accepted; waiting for the account's keys.
    ScramAwaitingCredentials {
        first: scram::ClientFirst,
        expected_cbind: Vec<u8>,
    },
    /// server-first-message sent; waiting for client-final-message.
    ScramAwaitingFinal(ScramPending),
    /// Success or failure was returned; nothing more is accepted.
    Finished,
}

struct ScramPending {
    username: String,
    /// `c=` must decode to exactly this: the GS2 header plus any channel binding data.
    expected_cbind: Vec<u8>,
    combined_nonce: String,
    /// `client-first-message-bare "," server-first-message ","`.
    auth_message_prefix: String,
    keys: ScramKeys,
    /// The keys are made up because the account is unknown or lacks this hash.
    is_decoy: bool,
}

/// A prepared PLAIN password.
#[derive(Clone, PartialEq, Eq)]
struct Secret(String);

// Passwords, keys and channel binding data stay out of logs: Debug names only the state.
impl std::fmt::Debug for SaslSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = match &self.state {
            State::Initial { .. } => "Initial",
            State::PlainAwaitingCredentials { .. } | State::ScramAwaitingCredentials { .. } => {
                "AwaitingCredentials"
            }
            State::PlainAwaitingCheck { .. } => "AwaitingPasswordCheck",
            State::ScramAwaitingFinal(_) => "AwaitingClientFinal",
            State::Finished => "Finished",
        };
        f.debug_struct("SaslSession")
            .field("mechanism", &self.mechanism)
            .field("domain", &self.domain)
            .field("state", &state)
            .finish_non_exhaustive()
    }
}

impl SaslSession {
    /// Starts the mechanism the client chose in `<auth mechanism='...'>`.
    ///
    /// * an unknown name, or -PLUS on a connection without channel bindings:
    ///   `<invalid-mechanism/>` (RFC 6120 §6.5.7), since we did not offer it;
    /// * PLAIN on a plaintext stream when not allowed: `<encryption-required/>` (§6.5.4),
    ///   which tells the client that the mechanism works once TLS protects the stream;
    /// * a SCRAM mechanism with a `server_nonce` that is not printable ASCII without ','
    ///   (RFC 5802 §7): `<temporary-auth-failure/>` (§6.5.11), as that is a fault of ours.
    pub fn start(
        mechanism: &str,
        ctx: &ServerContext,
        server_nonce: &str,
    ) -> Result<SaslSession, SaslFailure> {
        let mechanism = Mechanism::from_name(mechanism).ok_or(SaslFailure::InvalidMechanism)?;
        if !ctx.offers(mechanism) {
            return Err(match mechanism {
                Mechanism::Plain => SaslFailure::EncryptionRequired,
                Mechanism::ScramSha1
                | Mechanism::ScramSha1Plus
                | Mechanism::ScramSha256
                | Mechanism::ScramSha256Plus => SaslFailure::InvalidMechanism,
            });
        }
        if mechanism.scram_hash().is_some() && !scram::is_nonce(server_nonce) {
            return Err(SaslFailure::TemporaryAuthFailure);
        }
        Ok(SaslSession {
            mechanism,
            domain: ctx.domain.clone(),
            channel_bindings: ctx.channel_bindings.clone(),
            decoy_secret: ctx.decoy_secret,
            new_account_iterations: ctx.new_account_iterations,
            server_nonce: server_nonce.to_owned(),
            state: State::Initial {
                sent_empty_challenge: false,
            },
        })
    }

    /// Feeds the (already base64-decoded) initial response or a response to a challenge.
    ///
    /// `None` is "no initial response" (RFC 6120 §6.4.2); the first time, the session answers
    /// with an empty challenge and waits for the data in `<response/>`. Data arriving when
    /// none is expected, or after the outcome, is `<malformed-request/>` (§6.5.8).
    pub fn step(&mut self, response: Option<&[u8]>) -> SaslStep {
        match std::mem::replace(&mut self.state, State::Finished) {
            State::Initial {
                sent_empty_challenge,
            } => match response {
                Some(data) => self.initial_response(data),
                None if !sent_empty_challenge => {
                    self.state = State::Initial {
                        sent_empty_challenge: true,
                    };
                    SaslStep::Challenge(Vec::new())
                }
                None => SaslStep::Failure(SaslFailure::MalformedRequest),
            },
            State::ScramAwaitingFinal(pending) => match response {
                Some(data) => scram_verify(pending, data).unwrap_or_else(SaslStep::Failure),
                None => SaslStep::Failure(SaslFailure::MalformedRequest),
            },
            State::PlainAwaitingCredentials { .. }
            | State::PlainAwaitingCheck { .. }
            | State::ScramAwaitingCredentials { .. }
            | State::Finished => SaslStep::Failure(SaslFailure::MalformedRequest),
        }
    }

    /// Answers `LookupCredentials`; `None` means the account does not exist.
    ///
    /// An unknown account and a wrong password end the same way, `<not-authorized/>`
    /// (RFC 6120 §6.5.10). For SCRAM the unknown account still gets a plausible
    /// server-first-message and fails only at the proof, as does an account without keys for
    /// the mechanism's hash. PLAIN answers with [`SaslStep::CheckPassword`], for unknown
    /// accounts too. Called when no lookup is pending, it is the engine's fault:
    /// `<temporary-auth-failure/>` (§6.5.11), as is a PLAIN login to an account whose keys
    /// have more than [`MAX_ITERATIONS`] iterations (stored before the cap; the server will
    /// not spend that much CPU on one attempt).
    pub fn credentials(&mut self, creds: Option<StoredCredentials>) -> SaslStep {
        match std::mem::replace(&mut self.state, State::Finished) {
            State::PlainAwaitingCredentials { authcid, password } => {
                self.plain_check(authcid, password, creds.as_ref())
            }
            State::ScramAwaitingCredentials {
                first,
                expected_cbind,
            } => self.scram_server_first(first, expected_cbind, creds.as_ref()),
            State::Initial { .. }
            | State::PlainAwaitingCheck { .. }
            | State::ScramAwaitingFinal(_)
            | State::Finished => SaslStep::Failure(SaslFailure::TemporaryAuthFailure),
        }
    }

    /// Answers [`SaslStep::CheckPassword`] with [`PasswordCheck::run`]'s outcome. A match for
    /// a made-up account is still `<not-authorized/>`; called when no check is out, it is the
    /// engine's fault: `<temporary-auth-failure/>`.
    pub fn password_checked(&mut self, matches: bool) -> SaslStep {
        match std::mem::replace(&mut self.state, State::Finished) {
            State::PlainAwaitingCheck { authcid, is_decoy } => {
                if matches && !is_decoy {
                    SaslStep::Success {
                        username: authcid,
                        additional_data: None,
                    }
                } else {
                    SaslStep::Failure(SaslFailure::NotAuthorized)
                }
            }
            State::Initial { .. }
            | State::PlainAwaitingCredentials { .. }
            | State::ScramAwaitingCredentials { .. }
            | State::ScramAwaitingFinal(_)
            | State::Finished => SaslStep::Failure(SaslFailure::TemporaryAuthFailure),
        }
    }

    /// The client sent `<abort/>` (RFC 6120 §6.4.4): the session ends with `<aborted/>`.
    pub fn abort(&mut self) -> SaslStep {
        self.state = State::Finished;
        SaslStep::Failure(SaslFailure::Aborted)
    }

    /// The mechanism being negotiated.
    pub fn mechanism(&self) -> Mechanism {
        self.mechanism
    }

    /// True once `Success` or `Failure` has been returned.
    pub fn is_finished(&self) -> bool {
        matches!(self.state, State::Finished)
    }

    fn initial_response(&mut self, data: &[u8]) -> SaslStep {
        let outcome = match self.mechanism.scram_hash() {
            None => self.plain_initial(data),
            Some(_) => self.scram_initial(data),
        };
        outcome.unwrap_or_else(SaslStep::Failure)
    }

    fn plain_initial(&mut self, data: &[u8]) -> Result<SaslStep, SaslFailure> {
        let message = plain::parse(data)?;
        if let Some(authzid) = &message.authzid {
            check_authzid(authzid, &message.authcid, &self.domain)?;
        }
        self.state = State::PlainAwaitingCredentials {
            authcid: message.authcid.clone(),
            password: Secret(message.password),
        };
        Ok(SaslStep::LookupCredentials {
            username: message.authcid,
        })
    }

    fn scram_initial(&mut self, data: &[u8]) -> Result<SaslStep, SaslFailure> {
        let first = scram::parse_client_first(data)?;
        let mut expected_cbind = first.gs2_header.as_bytes().to_vec();
        match (&first.cbind, self.mechanism.is_plus()) {
            // RFC 5802 §6: "p" is for -PLUS only, and -PLUS requires "p".
            (CbindFlag::Required(_), false)
            | (CbindFlag::NotSupported | CbindFlag::ServerUnsupported, true) => {
                return Err(SaslFailure::MalformedRequest);
            }
            (CbindFlag::Required(name), true) => {
                // RFC 5802 §7 e=unsupported-channel-binding-type: refused as not-authorized.
                let binding = ChannelBindingType::from_name(name)
                    .and_then(|kind| self.channel_bindings.iter().find(|cb| cb.kind == kind))
                    .ok_or(SaslFailure::NotAuthorized)?;
                expected_cbind.extend_from_slice(&binding.data);
            }
            // RFC 5802 §6: "y" while we advertise -PLUS means someone removed -PLUS from the
            // features the client saw: a downgrade, so the exchange must fail.
            (CbindFlag::ServerUnsupported, false) if !self.channel_bindings.is_empty() => {
                return Err(SaslFailure::NotAuthorized);
            }
            (CbindFlag::ServerUnsupported | CbindFlag::NotSupported, false) => {}
        }
        if let Some(authzid) = &first.authzid {
            check_authzid(authzid, &first.username, &self.domain)?;
        }
        let username = first.username.clone();
        self.state = State::ScramAwaitingCredentials {
            first,
            expected_cbind,
        };
        Ok(SaslStep::LookupCredentials { username })
    }

    fn scram_server_first(
        &mut self,
        first: scram::ClientFirst,
        expected_cbind: Vec<u8>,
        creds: Option<&StoredCredentials>,
    ) -> SaslStep {
        let Some(hash) = self.mechanism.scram_hash() else {
            return SaslStep::Failure(SaslFailure::TemporaryAuthFailure);
        };
        let (keys, is_decoy) = match creds.and_then(|c| c.keys_for(hash)) {
            Some(keys) => (keys.clone(), false),
            None => (self.decoy_keys(hash, &first.username), true),
        };
        let combined_nonce = format!("{}{}", first.nonce, self.server_nonce);
        let server_first = scram::server_first(&combined_nonce, &keys);
        self.state = State::ScramAwaitingFinal(ScramPending {
            username: first.username,
            expected_cbind,
            combined_nonce,
            auth_message_prefix: format!("{},{},", first.bare, server_first),
            keys,
            is_decoy,
        });
        SaslStep::Challenge(server_first.into_bytes())
    }

    /// Made-up keys for `username` on this session's host, shaped like an account created
    /// now (`scram::decoy_keys`).
    fn decoy_keys(&self, hash: ScramHash, username: &str) -> ScramKeys {
        scram::decoy_keys(
            hash,
            &scram::decoy_account(username, &self.domain),
            &self.decoy_secret,
            self.new_account_iterations.min(MAX_ITERATIONS),
        )
    }

    /// The PLAIN check for these credentials: against the account's SHA-256 keys, or its
    /// SHA-1 keys if those are all it has; against made-up keys if it has neither.
    fn plain_check(
        &mut self,
        authcid: String,
        password: Secret,
        creds: Option<&StoredCredentials>,
    ) -> SaslStep {
        let keys = creds.and_then(|c| {
            c.keys_for(ScramHash::Sha256)
                .or_else(|| c.keys_for(ScramHash::Sha1))
        });
        let (keys, is_decoy) = match keys {
            Some(keys) if keys.iterations > MAX_ITERATIONS => {
                return SaslStep::Failure(SaslFailure::TemporaryAuthFailure);
            }
            Some(keys) => (keys.clone(), false),
            // Spend the time a check for an account created now takes, so the answer's timing
            // does not reveal whether the account exists.
            None => (self.decoy_keys(ScramHash::Sha256, &authcid), true),
        };
        let missing = match creds {
            Some(creds) if !is_decoy => creds
                .keys
                .iter()
                .fold(ScramHashes::ALL, |missing, keys| missing.without(keys.hash)),
            _ => ScramHashes::NONE,
        };
        self.state = State::PlainAwaitingCheck { authcid, is_decoy };
        SaslStep::CheckPassword(PasswordCheck {
            password,
            keys,
            missing,
            upgrade_iterations: self.new_account_iterations.min(MAX_ITERATIONS),
        })
    }
}

/// Checks a client-final-message (RFC 5802 §5.1, §7): syntax problems are
/// `<malformed-request/>`, verification failures `<not-authorized/>`.
fn scram_verify(pending: ScramPending, data: &[u8]) -> Result<SaslStep, SaslFailure> {
    let last = scram::parse_client_final(data)?;
    if last.proof.len() != pending.keys.hash.output_len() {
        return Err(SaslFailure::MalformedRequest);
    }
    if last.channel_binding != pending.expected_cbind || last.nonce != pending.combined_nonce {
        return Err(SaslFailure::NotAuthorized);
    }
    let auth_message = format!("{}{}", pending.auth_message_prefix, last.without_proof);
    let server_final = scram::verify_proof(&pending.keys, auth_message.as_bytes(), &last.proof)
        .filter(|_| !pending.is_decoy)
        .ok_or(SaslFailure::NotAuthorized)?;
    Ok(SaslStep::Success {
        username: pending.username,
        additional_data: Some(server_final),
    })
}

/// The authzid may only name the account itself: the bare JID `authcid@domain`
/// (RFC 6120 §6.3.8 leaves other identities to policy; we allow none).
///
/// Without nodeprep at hand, the localpart and domain are compared after Unicode lower-casing,
/// which covers the case folding nodeprep (RFC 3920 Appendix A) and the domain's
/// case-insensitivity would apply. Anything else, including a full JID, is
/// `<invalid-authzid/>` (RFC 6120 §6.5.6).
fn check_authzid(authzid: &str, authcid: &str, domain: &str) -> Result<(), SaslFailure> {
    let (local, host) = authzid.split_once('@').ok_or(SaslFailure::InvalidAuthzid)?;
    if local.to_lowercase() == authcid.to_lowercase()
        && host.to_lowercase() == domain.to_lowercase()
    {
        Ok(())
    } else {
        Err(SaslFailure::InvalidAuthzid)
    }
}

#[cfg(test)]
mod tests;
