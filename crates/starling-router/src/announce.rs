//! Server announcements: a headline message from a host to every available session of that
//! host, as Prosody's mod_announce sends them (the `starling announce` admin command).

use minidom::Element;
use starling_registry::SessionHandle;
use starling_stanza::{NS_CLIENT, OutboundStanza};

use crate::router::{Router, Store};

/// Why an announcement was not sent. Nothing is sent to anyone in either case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AnnounceError {
    /// The text is empty or only whitespace.
    #[error("the announcement is empty")]
    Empty,
    /// The text holds a character XML 1.0 forbids; sent as is, it would end every recipient's
    /// stream.
    #[error(
        "the announcement contains U+{:04X}, a character not allowed in XML; nothing was sent",
        u32::from(*.0)
    )]
    IllegalCharacter(char),
}

impl<S: Store> Router<S> {
    /// Send `text` from `host` (one of ours, normalised) to each available session of the
    /// host, with the stanza id `id`; returns how many sessions took it. A session whose queue
    /// refuses it is skipped, not waited for.
    pub fn announce(&self, host: &str, id: &str, text: &str) -> Result<usize, AnnounceError> {
        if text.trim().is_empty() {
            return Err(AnnounceError::Empty);
        }
        if let Some(c) = starling_stanza::first_illegal_xml_char(text) {
            return Err(AnnounceError::IllegalCharacter(c));
        }
        let sessions = self.registry.host_sessions(host).unwrap_or_default();
        let count = sessions
            .iter()
            .filter(|session| session.is_available())
            .filter(|session| {
                let message = announcement(host, session, id, text);
                session.send(OutboundStanza::new(&message)).is_ok()
            })
            .count();
        Ok(count)
    }
}

/// `<message type='headline' from=HOST to=FULL-JID><body>TEXT</body></message>`: a headline
/// (RFC 6121 §5.2.2) because an announcement expects no reply, as in Prosody's mod_announce.
fn announcement(host: &str, to: &SessionHandle, id: &str, text: &str) -> Element {
    let mut body = Element::builder("body", NS_CLIENT).build();
    body.append_text_node(text);
    let mut message = Element::builder("message", NS_CLIENT).build();
    for (name, value) in [
        ("type", "headline"),
        ("from", host),
        ("to", &to.full_jid().to_string()),
        ("id", id),
    ] {
        // These names are constant NCNames, so the conversion cannot fail.
        if let Ok(name) = minidom::rxml::NcName::try_from(name) {
            starling_stanza::set_attr(&mut message, &name, Some(value));
        }
    }
    message.append_child(body);
    message
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use starling_registry::{Registry, RegistryConfig};
    use starling_stanza::Stanza;
    use starling_storage::SqliteStore;

    use super::*;
    use crate::RouterLimits;

    #[tokio::test]
    async fn only_available_sessions_of_the_host_get_the_headline() {
        let registry = Arc::new(Registry::new(
            ["a.test".to_owned(), "b.test".to_owned()],
            RegistryConfig::default(),
        ));
        let store = SqliteStore::open_in_memory().unwrap();
        let modules = Arc::new(starling_modules::ModuleSet::build(Vec::new()).unwrap());
        let router = Router::new(
            Arc::clone(&registry),
            store,
            RouterLimits::default(),
            modules,
        );
        let mut sessions = Vec::new();
        for jid in ["u@a.test/online", "u@a.test/bound", "v@b.test/online"] {
            let (handle, rx) = registry.new_session(jid.parse().unwrap(), uuid::Uuid::now_v7());
            registry.bind(&handle).unwrap();
            if jid.ends_with("online") {
                let presence: Element = format!("<presence xmlns='jabber:client' from='{jid}'/>")
                    .parse()
                    .unwrap();
                router
                    .route(&handle, Stanza::try_from(presence).unwrap())
                    .await;
            }
            sessions.push((handle, rx));
        }
        for (_, rx) in &mut sessions {
            while rx.try_recv().is_some() {}
        }
        assert_eq!(
            router.announce("a.test", "x", " \n"),
            Err(AnnounceError::Empty)
        );
        assert_eq!(
            router
                .announce("a.test", "x", "bell \u{7}")
                .unwrap_err()
                .to_string(),
            "the announcement contains U+0007, a character not allowed in XML; nothing was sent"
        );
        assert_eq!(router.announce("a.test", "id1", "restart at 18:00"), Ok(1));
        let received: Vec<Vec<String>> = sessions
            .iter_mut()
            .map(|(_, rx)| {
                std::iter::from_fn(|| rx.try_recv())
                    .map(|stanza| {
                        let mut bytes = Vec::new();
                        stanza.to_element().unwrap().write_to(&mut bytes).unwrap();
                        String::from_utf8(bytes).unwrap()
                    })
                    .collect()
            })
            .collect();
        assert_eq!(
            received,
            [
                vec![
                    "<message xmlns='jabber:client' from='a.test' id='id1' \
                     to='u@a.test/online' type='headline'><body>restart at 18:00</body></message>"
                        .to_owned()
                ],
                vec![],
                vec![],
            ]
        );
    }
}
