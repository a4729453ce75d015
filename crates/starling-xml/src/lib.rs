//! Sans-IO XML stream reader and writer for XMPP (RFC 6120 §4, §11), with hard limits.
//!
//! An XMPP stream is one long XML document: a `<stream:stream>` header, then
//! any number of top-level elements (stanzas and nonzas), then the close tag.
//! [`StreamParser`] is a push parser for that document. The caller feeds it
//! whatever bytes arrived and pulls [`StreamEvent`]s out; it never reads a
//! socket, never blocks and never looks at a clock, so the stream engine and
//! its tests drive it byte for byte.
//!
//! The design choice to understand is that **limits are enforced on bytes,
//! before parsing spends memory on them**. The parser gives the tokenizer
//! (rxml) no more than one byte past the remaining budget of the element in
//! progress, so a peer that sends an endless element, an endless attribute
//! list or an endless header is stopped the moment it passes
//! [`Limits::max_stanza_bytes`] or [`Limits::max_header_bytes`], however much
//! it sent in one go. Depth, attribute count, name and value lengths are
//! checked as each start tag completes, before the element is allocated.
//! Every failure is an [`XmlError`] that names its RFC 6120 stream error
//! through [`XmlError::condition`].
//!
//! ```
//! use starling_xml::{Limits, StreamEvent, StreamParser};
//!
//! let mut parser = StreamParser::new(Limits::unauthenticated());
//! parser.feed(b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
//!     xmlns:stream='http://etherx.jabber.org/streams' to='example.com' version='1.0'>");
//! let Ok(Some(StreamEvent::Header(header))) = parser.next_event() else { panic!() };
//! assert_eq!(header.to.as_deref(), Some("example.com"));
//! assert_eq!(header.content_namespace.as_deref(), Some("jabber:client"));
//!
//! // Half a stanza is not an event yet.
//! parser.feed(b"<message to='juliet@example.com'><body>hi</bo");
//! assert_eq!(parser.next_event(), Ok(None));
//! parser.feed(b"dy></message>");
//! let Ok(Some(StreamEvent::Element(message))) = parser.next_event() else { panic!() };
//! assert!(message.is("message", "jabber:client"));
//! assert_eq!(message.get_child("body", "jabber:client").map(|b| b.text()), Some("hi".into()));
//!
//! parser.feed(b"</stream:stream>");
//! assert_eq!(parser.next_event(), Ok(Some(StreamEvent::Close)));
//! ```
//!
//! The [`writer`] module serializes the server's half: the stream header,
//! elements and the close tag.

#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)
)]

mod error;
mod limits;
mod parser;
pub mod writer;

pub use error::{StreamCondition, XmlError};
pub use limits::{
    DEFAULT_MAX_ATTRIBUTE_VALUE_BYTES, DEFAULT_MAX_ATTRIBUTES_PER_ELEMENT, DEFAULT_MAX_DEPTH,
    DEFAULT_MAX_HEADER_BYTES, DEFAULT_MAX_NAME_BYTES, DEFAULT_MAX_STANZA_BYTES,
    DEFAULT_MAX_STANZA_BYTES_UNAUTHENTICATED, Limits,
};
pub use minidom;
pub use parser::{StreamEvent, StreamHeader, StreamParser};
pub use writer::{
    HeaderOut, STREAM_CLOSE, escape_attr, escape_text, write_element, write_stream_header,
};

/// The streams namespace, `http://etherx.jabber.org/streams` (RFC 6120 §4.8.1).
pub const STREAM_NS: &str = "http://etherx.jabber.org/streams";
