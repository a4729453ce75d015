//! XEP-0198 (v1.6) stream management, sans-IO: the counters, the queue of stanzas the peer
//! has not acknowledged yet, and the stream-level elements (`<enable/>`, `<r/>`, `<a/>`,
//! `<resume/>` and the server's answers) parsed and rendered.
//!
//! The stream engine owns one [`SmSession`] per stream that enabled stream management and
//! feeds it: every stanza it handled from the client ([`Acks::handled_one`]), every stanza it
//! wrote to the client ([`Acks::sent`]) and every `<a h/>` the client answered
//! ([`Acks::on_ack`]). The state moves whole from a broken connection to the one that
//! resumes it, so it holds no socket, timer or task; what it holds beyond two counters are the
//! unacknowledged stanzas, shared with every other queue they were put on.
//!
//! The one rule to understand: `h` counts modulo 2^32 (§4), so every comparison here is a
//! wrapping difference, and an `h` that acknowledges more than was sent is an error the
//! engine turns into a stream error (§4, `<handled-count-too-high/>`), never a panic.
//!
//! ```
//! use starling_sm::{Acks, AckError};
//! use starling_stanza::OutboundStanza;
//!
//! let mut acks = Acks::default();
//! let message: minidom::Element = "<message xmlns='jabber:client'/>".parse().unwrap();
//! acks.sent(OutboundStanza::new(&message));
//! acks.sent(OutboundStanza::new(&message));
//! assert_eq!(acks.on_ack(1), Ok(1));
//! assert_eq!(acks.unacked().count(), 1);
//! assert_eq!(acks.on_ack(5), Err(AckError::TooHigh { h: 5, sent: 2 }));
//! ```
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

mod acks;
mod nonza;
mod saved;

pub use acks::{AckError, Acks, Resumption, SmSession};
pub use nonza::{
    Failure, NonzaError, Request, ack, ack_request, enabled, failed, handled_count_too_high, parse,
    resumed, sm_feature,
};
pub use saved::{NS_SAVED, SavedError, SavedSession, from_document, to_document};
