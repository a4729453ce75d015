//! Resumable sessions written down across a graceful restart: what the connection held (the
//! counters, the unacknowledged stanzas) and what the registry held (full JID, presence,
//! queue), as one XML document the server writes on shutdown and reads back at start-up.

use minidom::Element;
use minidom::rxml::xml_ncname;
use starling_stanza::OutboundStanza;

use crate::acks::{Acks, Resumption, SmSession};

/// The namespace of the saved-sessions file (a private file format, not a protocol).
pub const NS_SAVED: &str = "urn:starling:resumable-sessions:0";

/// Why a saved-sessions document cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SavedError {
    /// Not XML, or not the document this module writes.
    #[error("not a saved-sessions document: {0}")]
    Format(String),
}

/// One resumable session as it was when the server stopped.
#[derive(Debug, Clone)]
pub struct SavedSession {
    /// The bound full JID.
    pub full_jid: String,
    /// Its stream management state, resumption included.
    pub sm: SmSession,
    /// The last available presence, if the resource was available.
    pub presence: Option<Element>,
    /// Presence priority.
    pub priority: i8,
    /// Whether it received roster pushes.
    pub interested: bool,
    /// Stanzas queued for it and not yet written, oldest first.
    pub queued: Vec<OutboundStanza>,
    /// When it was saved, Unix milliseconds (its window counts from here).
    pub saved_at_unix_ms: u64,
}

impl SavedSession {
    /// Milliseconds of its resumption window left at `now_unix_ms`; `None` when it has passed
    /// (or the session was not resumable).
    pub fn remaining_ms(&self, now_unix_ms: u64) -> Option<u64> {
        let window_ms = u64::from(self.sm.resumption.as_ref()?.window_secs) * 1000;
        let ends = self.saved_at_unix_ms.saturating_add(window_ms);
        (ends > now_unix_ms).then(|| ends - now_unix_ms)
    }
}

fn attr(element: &mut Element, name: &minidom::rxml::NcNameStr, value: String) {
    starling_stanza::set_attr(element, name, Some(&value));
}

fn stanzas<'a>(name: &str, stanzas: impl Iterator<Item = &'a OutboundStanza>) -> Element {
    let mut list = Element::builder(name, NS_SAVED).build();
    for stanza in stanzas {
        if let Some(element) = stanza.to_element() {
            list.append_child(element);
        }
    }
    list
}

/// The document for `sessions`.
pub fn to_document(sessions: &[SavedSession]) -> Vec<u8> {
    let mut root = Element::builder("sessions", NS_SAVED).build();
    for saved in sessions {
        let Some(resumption) = &saved.sm.resumption else {
            continue;
        };
        let mut session = Element::builder("session", NS_SAVED).build();
        attr(&mut session, xml_ncname!("id"), resumption.id.clone());
        attr(&mut session, xml_ncname!("jid"), saved.full_jid.clone());
        attr(
            &mut session,
            xml_ncname!("window"),
            resumption.window_secs.to_string(),
        );
        attr(
            &mut session,
            xml_ncname!("handled"),
            saved.sm.acks.handled().to_string(),
        );
        attr(
            &mut session,
            xml_ncname!("acked"),
            saved.sm.acks.acked().to_string(),
        );
        attr(
            &mut session,
            xml_ncname!("priority"),
            saved.priority.to_string(),
        );
        attr(
            &mut session,
            xml_ncname!("interested"),
            saved.interested.to_string(),
        );
        attr(
            &mut session,
            xml_ncname!("saved"),
            saved.saved_at_unix_ms.to_string(),
        );
        if let Some(presence) = &saved.presence {
            let mut holder = Element::builder("presence", NS_SAVED).build();
            holder.append_child(presence.clone());
            session.append_child(holder);
        }
        session.append_child(stanzas("unacked", saved.sm.acks.unacked()));
        session.append_child(stanzas("queued", saved.queued.iter()));
        root.append_child(session);
    }
    starling_xml::write_element(&root)
}

fn number<T: std::str::FromStr>(element: &Element, name: &str) -> Result<T, SavedError> {
    element
        .attr(name)
        .and_then(|text| text.parse().ok())
        .ok_or_else(|| SavedError::Format(format!("session without a valid '{name}'")))
}

fn children_as_stanzas(session: &Element, name: &str) -> Vec<OutboundStanza> {
    session
        .get_child(name, NS_SAVED)
        .map(|list| list.children().map(OutboundStanza::new).collect())
        .unwrap_or_default()
}

/// Reads a document [`to_document`] wrote.
pub fn from_document(bytes: &[u8]) -> Result<Vec<SavedSession>, SavedError> {
    let text = std::str::from_utf8(bytes).map_err(|err| SavedError::Format(err.to_string()))?;
    let root: Element = text
        .parse()
        .map_err(|err: minidom::Error| SavedError::Format(err.to_string()))?;
    if !root.is("sessions", NS_SAVED) {
        return Err(SavedError::Format("unexpected root element".to_owned()));
    }
    let mut sessions = Vec::new();
    for session in root.children().filter(|c| c.is("session", NS_SAVED)) {
        let id = session
            .attr("id")
            .ok_or_else(|| SavedError::Format("session without an id".to_owned()))?;
        let full_jid = session
            .attr("jid")
            .ok_or_else(|| SavedError::Format("session without a jid".to_owned()))?;
        let acks = Acks::restore(
            number(session, "handled")?,
            number(session, "acked")?,
            children_as_stanzas(session, "unacked"),
        );
        sessions.push(SavedSession {
            full_jid: full_jid.to_owned(),
            sm: SmSession {
                acks,
                resumption: Some(Resumption {
                    id: id.to_owned(),
                    window_secs: number(session, "window")?,
                }),
            },
            presence: session
                .get_child("presence", NS_SAVED)
                .and_then(|holder| holder.children().next().cloned()),
            priority: number(session, "priority")?,
            interested: number(session, "interested")?,
            queued: children_as_stanzas(session, "queued"),
            saved_at_unix_ms: number(session, "saved")?,
        });
    }
    Ok(sessions)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stanza(xml: &str) -> OutboundStanza {
        OutboundStanza::new(&xml.parse::<Element>().unwrap())
    }

    #[test]
    fn a_session_survives_the_round_trip() {
        let mut acks = Acks::default();
        acks.handled_one();
        acks.handled_one();
        acks.sent(stanza(
            "<message xmlns='jabber:client' id='a1'><body>x</body></message>",
        ));
        acks.sent(stanza(
            "<message xmlns='jabber:client' id='a2'><body>&lt;y&gt;</body></message>",
        ));
        assert_eq!(acks.on_ack(1), Ok(1));
        let saved = SavedSession {
            full_jid: "alice@localhost/phone".into(),
            sm: SmSession {
                acks,
                resumption: Some(Resumption {
                    id: "r-1".into(),
                    window_secs: 60,
                }),
            },
            presence: Some(
                "<presence xmlns='jabber:client'><show>away</show></presence>"
                    .parse()
                    .unwrap(),
            ),
            priority: -3,
            interested: true,
            queued: vec![stanza("<message xmlns='jabber:client' id='q1'/>")],
            saved_at_unix_ms: 1_000,
        };
        let document = to_document(std::slice::from_ref(&saved));
        let back = from_document(&document).unwrap();
        assert_eq!(back.len(), 1);
        let back = &back[0];
        assert_eq!(back.full_jid, "alice@localhost/phone");
        assert_eq!(back.sm.resumption, saved.sm.resumption);
        assert_eq!(back.sm.acks.handled(), 2);
        assert_eq!(back.sm.acks.acked(), 1);
        assert_eq!(back.sm.acks.sent_count(), 2);
        let unacked: Vec<_> = back
            .sm
            .acks
            .unacked()
            .map(|s| s.to_element().unwrap())
            .collect();
        assert_eq!(unacked.len(), 1);
        assert_eq!(unacked[0].attr("id"), Some("a2"));
        assert_eq!(
            unacked[0]
                .get_child("body", "jabber:client")
                .unwrap()
                .text(),
            "<y>"
        );
        assert_eq!(
            back.presence
                .as_ref()
                .unwrap()
                .get_child("show", "jabber:client")
                .unwrap()
                .text(),
            "away"
        );
        assert_eq!(back.priority, -3);
        assert!(back.interested);
        assert_eq!(back.queued.len(), 1);
        assert_eq!(back.remaining_ms(31_000), Some(30_000));
        assert_eq!(back.remaining_ms(61_000), None);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(from_document(b"not xml").is_err());
        assert!(from_document(b"<other xmlns='x'/>").is_err());
        let missing = format!("<sessions xmlns='{NS_SAVED}'><session id='x'/></sessions>");
        assert!(from_document(missing.as_bytes()).is_err());
    }
}
