//! Sans-IO client-to-server stream engine, RFC 6120 §4–§7.
//!
//! [`C2sStream`] holds the whole negotiation of one c2s connection — stream headers, features,
//! STARTTLS, SASL, the stream restarts between them, resource binding and closing — without a
//! socket, a clock or a random number generator. The connection task pushes what happened into
//! [`C2sStream::handle`] ([`Input`]) and drains what to do from [`C2sStream::poll_action`]
//! ([`Action`]). Generated values (stream ids, SCRAM nonces, resources) come from an [`IdSource`]
//! the caller supplies, so a test can replay a session byte for byte.
//!
//! The one design choice a user of this crate must understand: a protocol failure is an
//! outcome, not an error. The engine writes the stream error, then asks for [`Action::Close`];
//! it never returns an error and never panics on peer input.
//!
//! ```
//! use std::sync::Arc;
//! use starling_stream::{Action, C2sStream, Input, SequentialIds, StreamConfig, Transport};
//!
//! let config = Arc::new(StreamConfig::new(vec!["localhost".to_owned()]));
//! let mut stream = C2sStream::new(config, Transport::Plain, Box::new(SequentialIds::default()));
//! stream.handle(Input::Bytes(
//!     b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
//!       xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>",
//! ));
//! let mut written = Vec::new();
//! while let Some(action) = stream.poll_action() {
//!     if let Action::Write(bytes) = action {
//!         written.extend_from_slice(&bytes);
//!     }
//! }
//! let written = String::from_utf8(written).unwrap();
//! // No TLS yet and encryption is required by default: STARTTLS is the only feature offered.
//! assert!(written.contains("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/></starttls>"));
//! assert!(!written.contains("mechanisms"));
//! ```
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

mod config;
mod engine;
mod ids;
mod nonza;

pub use config::{
    DEFAULT_ACK_REQUEST_AFTER_MS, DEFAULT_ACK_REQUEST_EVERY, DEFAULT_MAX_AUTH_FAILURES,
    DEFAULT_MAX_UNACKED, DEFAULT_RESUME_WINDOW_SECS, SmConfig, StreamConfig,
};
pub use engine::{Action, C2sStream, Input, ResumeOutcome, SessionState, TlsInfo, Transport};
pub use ids::{IdSource, SequentialIds};
pub use starling_sm::{Failure as SmFailure, Resumption, SmSession};
