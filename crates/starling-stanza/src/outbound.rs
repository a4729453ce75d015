//! A stanza on its way to sessions: serialized once, shared by every recipient.
//!
//! Routing one stanza to many sessions (a presence broadcast, a message to every resource of
//! an account) used to give each recipient a deep copy of the parsed tree, held in its queue
//! until its client read it. A tree costs tens of times the stanza's size on the wire, so a
//! few large stanzas to clients that do not read could hold hundreds of megabytes. An
//! [`OutboundStanza`] holds the bytes the recipients' streams will write, once, behind a
//! reference count; queues count their size in bytes.

use std::sync::Arc;

use minidom::Element;

use crate::StanzaKind;

/// The serialized form of one stanza, cheap to clone: clones share the bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct OutboundStanza {
    bytes: Arc<[u8]>,
    kind: Option<StanzaKind>,
}

impl OutboundStanza {
    /// Serializes `element` as a stream child (`starling_xml::write_element`: the element
    /// declares its own default namespace).
    pub fn new(element: &Element) -> Self {
        let kind = match element.name() {
            "message" => Some(StanzaKind::Message),
            "presence" => Some(StanzaKind::Presence),
            "iq" => Some(StanzaKind::Iq),
            _ => None,
        };
        Self {
            bytes: starling_xml::write_element(element).into(),
            kind,
        }
    }

    /// The bytes to write to the stream.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Bytes on the wire, for queue accounting.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Whether there are no bytes (never, for a serialized element).
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// Message, presence or iq; `None` for any other element.
    pub fn kind(&self) -> Option<StanzaKind> {
        self.kind
    }

    /// Parses the bytes back into an element (for tests and operators' tools; routing never
    /// needs it).
    pub fn to_element(&self) -> Option<Element> {
        std::str::from_utf8(&self.bytes).ok()?.parse().ok()
    }
}

impl From<&Element> for OutboundStanza {
    fn from(element: &Element) -> Self {
        Self::new(element)
    }
}

// The bytes may carry message bodies: Debug shows the kind and size only.
impl std::fmt::Debug for OutboundStanza {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutboundStanza")
            .field("kind", &self.kind)
            .field("len", &self.bytes.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn element(xml: &str) -> Element {
        xml.parse().expect("test XML parses")
    }

    #[test]
    fn clones_share_one_copy_of_the_bytes() {
        let stanza = OutboundStanza::new(&element(
            "<message xmlns='jabber:client' to='a@b'><body>hi</body></message>",
        ));
        let copy = stanza.clone();
        assert!(std::ptr::eq(stanza.bytes(), copy.bytes()));
        assert_eq!(stanza.kind(), Some(StanzaKind::Message));
        assert_eq!(stanza.len(), stanza.bytes().len());
    }

    #[test]
    fn round_trips_through_the_stream_writer() {
        let original = element(
            "<presence xmlns='jabber:client' from='a@b/c'><status>x &amp; y</status></presence>",
        );
        let stanza = OutboundStanza::new(&original);
        assert_eq!(stanza.to_element(), Some(original));
        assert_eq!(stanza.kind(), Some(StanzaKind::Presence));
        assert_eq!(
            format!("{stanza:?}"),
            format!(
                "OutboundStanza {{ kind: Some(Presence), len: {} }}",
                stanza.len()
            )
        );
    }
}
