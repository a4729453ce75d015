//! The three stanza kinds of RFC 6120 §8 as a validated view over an element.

use minidom::Element;

use crate::{NS_CLIENT, StanzaErrorCondition};

/// Which of the three stanza kinds an element is (RFC 6120 §8).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StanzaKind {
    /// `<message/>`, §8.2.1.
    Message,
    /// `<presence/>`, §8.2.2.
    Presence,
    /// `<iq/>`, §8.2.3.
    Iq,
}

/// The `type` of an iq stanza (RFC 6120 §8.2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IqType {
    /// A request for information.
    Get,
    /// A request that changes something.
    Set,
    /// A successful response.
    Result,
    /// A failed response.
    Error,
}

/// Why an element is not an acceptable stanza.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StanzaError {
    /// Not message, presence or iq in `jabber:client` (RFC 6120 §4.9.3.24 `unsupported-stanza-type`).
    #[error("<{name}/> in namespace {namespace:?} is not a client stanza")]
    NotAStanza {
        /// The element name.
        name: String,
        /// The element namespace.
        namespace: String,
    },
    /// An iq without `id` or with a missing or unknown `type` (RFC 6120 §8.2.3: `bad-request`).
    #[error("iq stanza lacks a valid id or type")]
    InvalidIq,
}

/// A message, presence or iq stanza, keeping the whole element so unknown payloads survive.
#[derive(Debug, Clone, PartialEq)]
pub struct Stanza {
    kind: StanzaKind,
    element: Element,
}

impl TryFrom<Element> for Stanza {
    type Error = StanzaError;

    fn try_from(element: Element) -> Result<Self, Self::Error> {
        let kind = if element.is("message", NS_CLIENT) {
            StanzaKind::Message
        } else if element.is("presence", NS_CLIENT) {
            StanzaKind::Presence
        } else if element.is("iq", NS_CLIENT) {
            StanzaKind::Iq
        } else {
            return Err(StanzaError::NotAStanza {
                name: element.name().to_owned(),
                namespace: element.ns(),
            });
        };
        Ok(Self { kind, element })
    }
}

impl From<Stanza> for Element {
    fn from(stanza: Stanza) -> Element {
        stanza.element
    }
}

impl Stanza {
    /// Which kind of stanza this is.
    pub fn kind(&self) -> StanzaKind {
        self.kind
    }

    /// The underlying element.
    pub fn element(&self) -> &Element {
        &self.element
    }

    /// The `id` attribute.
    pub fn id(&self) -> Option<&str> {
        self.element.attr("id")
    }

    /// The `type` attribute as written.
    pub fn type_attr(&self) -> Option<&str> {
        self.element.attr("type")
    }

    /// The `to` attribute as written.
    pub fn to(&self) -> Option<&str> {
        self.element.attr("to")
    }

    /// The `from` attribute as written.
    pub fn from(&self) -> Option<&str> {
        self.element.attr("from")
    }

    /// Replace (or add) the `from` attribute; the server stamps it on everything a client sends.
    pub fn set_from(&mut self, from: &str) {
        set_attr(&mut self.element, rxml::xml_ncname!("from"), Some(from));
    }

    /// For an iq: its type and the single payload child a get or set must carry
    /// (RFC 6120 §8.2.3). `InvalidIq` when the iq breaks those rules.
    pub fn iq(&self) -> Result<(IqType, Option<&Element>), StanzaError> {
        if self.kind != StanzaKind::Iq || self.id().is_none() {
            return Err(StanzaError::InvalidIq);
        }
        let iq_type = match self.type_attr() {
            Some("get") => IqType::Get,
            Some("set") => IqType::Set,
            Some("result") => IqType::Result,
            Some("error") => IqType::Error,
            _ => return Err(StanzaError::InvalidIq),
        };
        let mut children = self.element.children();
        let payload = children.next();
        match iq_type {
            IqType::Get | IqType::Set => {
                // §8.2.3: a get or set contains exactly one payload element.
                if payload.is_none() || children.next().is_some() {
                    return Err(StanzaError::InvalidIq);
                }
            }
            IqType::Result | IqType::Error => {}
        }
        Ok((iq_type, payload))
    }

    /// Is this stanza itself an error? Errors are never answered with errors (RFC 6120 §8.3.1).
    pub fn is_error(&self) -> bool {
        self.type_attr() == Some("error")
    }

    /// The error reply of RFC 6120 §8.3.1: same kind and id, addresses swapped, type `error`, the
    /// original payload kept, and the condition appended. `None` for a stanza of type error.
    pub fn error_reply(&self, condition: StanzaErrorCondition) -> Option<Element> {
        if self.is_error() {
            return None;
        }
        let mut reply = self.element.clone();
        swap_addresses(&mut reply, self.to(), self.from());
        set_attr(&mut reply, rxml::xml_ncname!("type"), Some("error"));
        reply.append_child(condition.to_element());
        Some(reply)
    }

    /// An empty `result` answering this iq, from `from` (the server or the account addressed).
    pub fn iq_result(&self) -> Element {
        let mut reply = Element::builder("iq", NS_CLIENT).build();
        set_attr(&mut reply, rxml::xml_ncname!("type"), Some("result"));
        set_attr(&mut reply, rxml::xml_ncname!("id"), self.id());
        swap_addresses(&mut reply, self.to(), self.from());
        reply
    }
}

fn swap_addresses(element: &mut Element, to: Option<&str>, from: Option<&str>) {
    let to = to.map(str::to_owned);
    let from = from.map(str::to_owned);
    set_attr(element, rxml::xml_ncname!("from"), to.as_deref());
    set_attr(element, rxml::xml_ncname!("to"), from.as_deref());
}

/// Set or remove an unnamespaced attribute. (minidom's own `set_attr` panics when asked to
/// remove, so removal goes through the attribute map.)
pub fn set_attr(element: &mut Element, name: &rxml::NcNameStr, value: Option<&str>) {
    match value {
        Some(value) => {
            element
                .attrs_mut()
                .insert(rxml::Namespace::NONE, name.to_owned(), value.to_owned());
        }
        None => {
            element.attrs_mut().remove(&rxml::Namespace::NONE, name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(xml: &str) -> Element {
        xml.parse().unwrap()
    }

    fn serialize(element: &Element) -> String {
        let mut out = Vec::new();
        element.write_to(&mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn unknown_payload_survives_conversion() {
        let xml = "<message xmlns='jabber:client' to='a@b'><x xmlns='urn:example' k='v'><y>t</y></x></message>";
        let stanza = Stanza::try_from(parse(xml)).unwrap();
        assert_eq!(stanza.kind(), StanzaKind::Message);
        assert_eq!(serialize(&Element::from(stanza)), xml);
    }

    #[test]
    fn non_client_namespace_is_rejected() {
        let err = Stanza::try_from(parse("<message xmlns='jabber:server'/>")).unwrap_err();
        assert_eq!(
            err,
            StanzaError::NotAStanza {
                name: "message".into(),
                namespace: "jabber:server".into()
            }
        );
    }

    #[test]
    fn iq_get_needs_exactly_one_payload() {
        let none =
            Stanza::try_from(parse("<iq xmlns='jabber:client' type='get' id='a'/>")).unwrap();
        assert_eq!(none.iq(), Err(StanzaError::InvalidIq));
        let two = Stanza::try_from(parse(
            "<iq xmlns='jabber:client' type='set' id='a'><x xmlns='u'/><y xmlns='u'/></iq>",
        ))
        .unwrap();
        assert_eq!(two.iq(), Err(StanzaError::InvalidIq));
        let no_id = Stanza::try_from(parse(
            "<iq xmlns='jabber:client' type='get'><x xmlns='u'/></iq>",
        ))
        .unwrap();
        assert_eq!(no_id.iq(), Err(StanzaError::InvalidIq));
        let ok =
            Stanza::try_from(parse("<iq xmlns='jabber:client' type='result' id='a'/>")).unwrap();
        assert_eq!(ok.iq(), Ok((IqType::Result, None)));
    }

    #[test]
    fn error_reply_swaps_addresses_and_keeps_payload() {
        let stanza = Stanza::try_from(parse(
            "<iq xmlns='jabber:client' type='get' id='q' from='a@h/r' to='h'><q xmlns='urn:x'/></iq>",
        ))
        .unwrap();
        let reply = stanza
            .error_reply(StanzaErrorCondition::ServiceUnavailable)
            .unwrap();
        assert_eq!(
            serialize(&reply),
            "<iq xmlns='jabber:client' from='h' id='q' to='a@h/r' type='error'><q xmlns='urn:x'/><error type='cancel'><service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>"
        );
    }

    #[test]
    fn errors_are_not_answered_with_errors() {
        let stanza =
            Stanza::try_from(parse("<message xmlns='jabber:client' type='error'/>")).unwrap();
        assert_eq!(
            stanza.error_reply(StanzaErrorCondition::ServiceUnavailable),
            None
        );
    }
}
