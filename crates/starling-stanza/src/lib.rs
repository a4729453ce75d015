//! Typed XMPP stanzas and the RFC 6120 error conditions.
//!
//! A [`Stanza`] is a thin, validated view over a `minidom::Element`: the element is kept whole, so
//! payloads this server does not understand travel on unchanged. What this crate adds is the
//! knowledge the rest of the server needs to act on a stanza without re-reading XML: its kind, its
//! type, its addresses, and how to build the RFC 6120 §8.3 error reply to it. Stream errors
//! (§4.9) are here too, so every layer names conditions the same way. So are the small pieces
//! every layer shares: the XMPP namespaces ([`ns`], re-exported here), XEP-0082 date and time
//! ([`datetime`]), the XEP-0203 [`delay()`] element and [`set_attr`].
//!
//! ```
//! use starling_stanza::{Stanza, StanzaKind, StanzaErrorCondition, NS_CLIENT};
//!
//! let element: minidom::Element =
//!     "<iq xmlns='jabber:client' type='get' id='q1'><query xmlns='urn:example:unknown'/></iq>"
//!         .parse()
//!         .unwrap();
//! let stanza = Stanza::try_from(element).unwrap();
//! assert_eq!(stanza.kind(), StanzaKind::Iq);
//! let reply = stanza.error_reply(StanzaErrorCondition::ServiceUnavailable).unwrap();
//! assert_eq!(reply.attr("type"), Some("error"));
//! assert_eq!(reply.attr("id"), Some("q1"));
//! assert!(reply.is("iq", NS_CLIENT));
//! ```
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod datetime;
mod delay;
mod error;
pub mod ns;
mod outbound;
mod stanza;
mod text;

pub use delay::delay;
pub use error::{ErrorType, StanzaErrorCondition, StreamErrorCondition};
pub use ns::*;
pub use outbound::OutboundStanza;
pub use stanza::{IqType, Stanza, StanzaError, StanzaKind, set_attr};
pub use text::{first_illegal_xml_char, is_xml_char, strip_illegal_xml_chars};

/// Parse a JID from the wire, accepting only JIDs whose normalised form parses back to the same
/// JID.
///
/// The `jid` crate normalises before validating some rules, so a few inputs are accepted but
/// print as text it then refuses: `ß--ß` maps to `ss--ss`, which IDNA forbids. Such a JID could
/// be stored but never read back, so every address a client hands the server for routing or
/// storage goes through this check.
pub fn parse_jid(text: &str) -> Result<jid::Jid, jid::Error> {
    let parsed = jid::Jid::new(text)?;
    match jid::Jid::new(parsed.as_str()) {
        Ok(again) if again == parsed => Ok(parsed),
        Ok(_) => Err(jid::Error::Idna),
        Err(err) => Err(err),
    }
}

#[cfg(test)]
mod jid_tests {
    use super::parse_jid;

    #[test]
    fn ordinary_jids_parse_normalised() {
        assert_eq!(
            parse_jid("Alice@LocalHost/Phone").unwrap().as_str(),
            "alice@localhost/Phone"
        );
    }

    #[test]
    fn jids_that_do_not_survive_normalisation_are_refused() {
        // Found by the `jid` fuzz target: `ß--ß` becomes `ss--ss`, which is not a valid label.
        assert!(
            jid::Jid::new("ß--ß").is_ok(),
            "the jid crate quirk this guards against"
        );
        assert_eq!(parse_jid("ß--ß").unwrap_err(), jid::Error::Idna);
        assert!(parse_jid("a@ß--ß/r").is_err());
    }
}
