//! Server-side SASL for XMPP (RFC 6120 §6): PLAIN, SCRAM-SHA-1, SCRAM-SHA-256 and their -PLUS
//! variants, as sans-IO step machines.
//!
//! # Why our own SCRAM
//!
//! The server keeps, per account and hash, only the salt, the iteration count, `StoredKey` and
//! `ServerKey` ([`ScramKeys`], RFC 5802 §3), never the password or `SaltedPassword`. PLAIN
//! logins are checked against the same keys by re-deriving them ([`ScramKeys::verify_password`]).
//! The `sasl` crate's 0.5.2 server side keeps `SaltedPassword` and refuses the ordinary `n,,` GS2
//! header when it has no channel binding, so it cannot serve these records; we use its client
//! only in tests, as an independent implementation to check ours against.
//!
//! # Shape
//!
//! Nothing here does I/O, reads a clock or draws random numbers. The engine picks the server
//! nonce and passes it to [`SaslSession::start`]; it decodes the base64 text of `<auth/>` and
//! `<response/>` with [`decode_payload`] and feeds the bytes to [`SaslSession::step`]; when
//! told [`SaslStep::LookupCredentials`] it fetches the account's [`StoredCredentials`] and hands
//! them to [`SaslSession::credentials`]. PBKDF2 runs only in [`ScramKeys::derive`] and
//! [`PasswordCheck::run`]: a PLAIN login hands the engine a [`SaslStep::CheckPassword`], a
//! self-contained job the engine's shell runs off the async reactor and answers through
//! [`SaslSession::password_checked`], so the state machine itself never hashes.
//!
//! # Failure conditions
//!
//! Syntax problems are `<malformed-request/>` (RFC 6120 §6.5.8) and verification problems
//! `<not-authorized/>` (§6.5.10). An unknown account, a wrong password and an account without
//! keys for the chosen hash all end in `<not-authorized/>`; for SCRAM the unknown account still
//! gets a plausible server-first-message, so usernames cannot be probed. A SCRAM `m=` extension
//! is `<malformed-request/>` (RFC 5802 §5.1 requires failure; it is not a credential problem).
//! A channel binding type we cannot provide and the `y` flag while -PLUS is offered (a
//! downgrade, RFC 5802 §6) are `<not-authorized/>`. PLAIN on a plaintext stream is
//! `<encryption-required/>` (§6.5.4); a -PLUS mechanism without channel bindings is
//! `<invalid-mechanism/>` (§6.5.7).
//!
//! # Example
//!
//! The SCRAM-SHA-256 exchange of RFC 7677 §3, with the server's side played by this crate:
//!
//! ```
//! use starling_sasl::{ScramHash, ScramKeys, SaslSession, SaslStep, ServerContext, StoredCredentials};
//!
//! let ctx = ServerContext {
//!     domain: "localhost".to_owned(),
//!     is_encrypted: false,
//!     allow_plain_without_tls: false,
//!     channel_bindings: Vec::new(),
//!     // Random and kept across restarts in a real server (see `ServerContext::decoy_secret`).
//!     decoy_secret: [0x5a; 32],
//!     // What a new account gets; decoys for unknown users claim the same.
//!     new_account_iterations: 4096,
//!     // The hashes every account on this host has keys for (`ScramOffers` keeps them).
//!     scram_hashes: starling_sasl::ScramHashes::ALL,
//! };
//! // The server nonce is an input: the engine draws it from its random source.
//! let mut session =
//!     SaslSession::start("SCRAM-SHA-256", &ctx, "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0").unwrap();
//!
//! let step = session.step(Some(b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO"));
//! assert_eq!(step, SaslStep::LookupCredentials { username: "user".to_owned() });
//!
//! // What storage holds for user "user" with password "pencil".
//! let salt = starling_sasl::decode_payload("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap().unwrap();
//! let keys = ScramKeys::derive(ScramHash::Sha256, "pencil", &salt, 4096).unwrap();
//! let step = session.credentials(Some(StoredCredentials { keys: vec![keys] }));
//! assert_eq!(
//!     step,
//!     SaslStep::Challenge(
//!         b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
//!             .to_vec()
//!     )
//! );
//!
//! let step = session.step(Some(
//!     b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
//!       p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
//! ));
//! assert_eq!(
//!     step,
//!     SaslStep::Success {
//!         username: "user".to_owned(),
//!         additional_data: Some(b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=".to_vec()),
//!     }
//! );
//! ```

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

mod credentials;
mod failure;
mod mechanism;
mod offer;
mod payload;
mod plain;
mod scram;
mod session;

pub use credentials::{
    DEFAULT_ITERATIONS, MAX_ITERATIONS, SALT_BYTES, SaslError, ScramHash, ScramKeys,
    StoredCredentials, check_iterations,
};
pub use failure::SaslFailure;
pub use mechanism::{
    ChannelBinding, ChannelBindingType, Mechanism, ServerContext, offered_mechanisms,
};
pub use offer::{KeyCoverage, OfferPolicy, ScramHashes, ScramOffers};
pub use payload::{decode_payload, encode_payload};
pub use session::{CheckOutcome, KeyUpgrade, PasswordCheck, SaslSession, SaslStep};
