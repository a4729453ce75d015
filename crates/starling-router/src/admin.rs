//! The admin socket's answers (`starling-admin`'s `Handler`) from the live sessions: list
//! them, kick them, announce to them. The server opens the socket and serves this handler.
//!
//! *Kick condition:* a kicked session gets `<policy-violation/>` (RFC 6120 §4.9.3.14, "the
//! entity has violated some local service policy"), with the operator's reason as `<text/>`.
//! ejabberd uses the same condition when an operator bans or blocks an account; Prosody's
//! `c2s:close` sends `<undefined-condition/>` with a text. `<reset/>` (§4.9.3.17) is about a
//! changed security context and `<conflict/>` (§4.9.3.3) tells the client that another
//! session replaced it, both of which would mislead the client.

use std::sync::Arc;

use starling_admin::{Command, ErrorKind, Response, SessionInfo, Transport};
use starling_registry::{CloseReason, Registry, SessionHandle, StreamTransport};
use starling_stanza::StreamErrorCondition;
use tracing::info;

use crate::announce::AnnounceError;
use crate::{Router, Store};

/// The stream error text when the operator gives no reason.
const DEFAULT_KICK_TEXT: &str = "disconnected by the server administrator";

/// The events' target: the server module this came from, so existing filters still match.
const LOG_TARGET: &str = "starling::running::admin";

/// Answers admin requests from the live sessions.
pub struct AdminHandler<S> {
    router: Arc<Router<S>>,
}

impl<S> AdminHandler<S> {
    /// Answer from `router`'s sessions.
    pub fn new(router: Arc<Router<S>>) -> Self {
        Self { router }
    }
}

impl<S: Store> starling_admin::Handler for AdminHandler<S> {
    async fn handle(&self, command: Command) -> Response {
        let result = match command {
            Command::ListSessions { host } => self.list_sessions(host.as_deref()),
            Command::Kick { jid, reason } => self.kick(&jid, reason),
            Command::Announce { host, message } => self.announce(&host, &message),
        };
        result.unwrap_or_else(|error| error)
    }
}

impl<S: Store> AdminHandler<S> {
    fn registry(&self) -> &Registry {
        self.router.registry()
    }

    fn list_sessions(&self, host: Option<&str>) -> Result<Response, Response> {
        let hosts = match host {
            Some(host) => vec![self.served_host(host)?],
            None => self.registry().hosts(),
        };
        let mut sessions: Vec<SessionInfo> = hosts
            .iter()
            .filter_map(|host| self.registry().host_sessions(host))
            .flatten()
            .map(|handle| session_info(&handle))
            .collect();
        sessions.sort_by(|a, b| a.jid.cmp(&b.jid));
        Ok(Response::Sessions { sessions })
    }

    fn kick(&self, jid: &str, reason: Option<String>) -> Result<Response, Response> {
        let parsed: jid::Jid = jid
            .parse()
            .map_err(|err| Response::error(ErrorKind::BadRequest, format!("{jid:?}: {err}")))?;
        if !self.registry().serves(parsed.domain().as_str()) {
            return Err(not_served(parsed.domain().as_str()));
        }
        let targets = match parsed.try_as_full() {
            Ok(full) => self.registry().resource(full).into_iter().collect(),
            Err(bare) => self.registry().connected_resources(bare),
        };
        if targets.is_empty() {
            return Err(Response::error(
                ErrorKind::NotFound,
                format!("no session of {parsed} is connected"),
            ));
        }
        let text = reason
            .filter(|reason| !reason.trim().is_empty())
            .unwrap_or_else(|| DEFAULT_KICK_TEXT.to_owned());
        for target in &targets {
            info!(target: LOG_TARGET, jid = %target.full_jid(), reason = %text, "kicked by the administrator");
            target.close(CloseReason::StreamError {
                condition: StreamErrorCondition::PolicyViolation,
                text: Some(text.clone()),
            });
        }
        Ok(Response::Kicked {
            count: targets.len(),
        })
    }

    fn announce(&self, host: &str, message: &str) -> Result<Response, Response> {
        let host = self.served_host(host)?;
        let id = uuid::Uuid::now_v7().to_string();
        let count = self
            .router
            .announce(&host, &id, message)
            .map_err(|err| match err {
                AnnounceError::Empty | AnnounceError::IllegalCharacter(_) => {
                    Response::error(ErrorKind::BadRequest, err.to_string())
                }
            })?;
        info!(target: LOG_TARGET, host = %host, sessions = count, "announcement sent");
        Ok(Response::Announced { count })
    }

    /// `host` in its normal form, if it is served here.
    fn served_host(&self, host: &str) -> Result<String, Response> {
        let parsed: jid::Jid = host
            .parse()
            .map_err(|err| Response::error(ErrorKind::BadRequest, format!("{host:?}: {err}")))?;
        if parsed.node().is_some() || parsed.resource().is_some() {
            return Err(Response::error(
                ErrorKind::BadRequest,
                format!("{host:?} is a JID, not a host name"),
            ));
        }
        let domain = parsed.domain().as_str();
        if !self.registry().serves(domain) {
            return Err(not_served(domain));
        }
        Ok(domain.to_owned())
    }
}

fn not_served(host: &str) -> Response {
    Response::error(
        ErrorKind::NotFound,
        format!("{host} is not a host of this server"),
    )
}

fn session_info(handle: &SessionHandle) -> SessionInfo {
    let snapshot = handle.snapshot();
    let origin = handle.origin();
    SessionInfo {
        jid: snapshot.full_jid.to_string(),
        peer: origin.map(|origin| origin.peer.to_string()),
        connected_at: origin.map(|origin| starling_admin::rfc3339(origin.connected_at)),
        transport: origin.map(|origin| match origin.transport {
            StreamTransport::Plain => Transport::Plain,
            StreamTransport::StartTls => Transport::Starttls,
            StreamTransport::DirectTls => Transport::DirectTls,
        }),
        available: snapshot.presence.is_some(),
        interested: snapshot.is_interested,
        priority: snapshot.priority,
    }
}

#[cfg(test)]
mod tests {
    use minidom::Element;
    use starling_storage::SqliteStore;

    use super::*;

    fn handler_with_sessions() -> (
        AdminHandler<SqliteStore>,
        Vec<(SessionHandle, starling_registry::SessionReceiver)>,
    ) {
        let registry = Arc::new(Registry::new(
            ["a.test".to_owned(), "b.test".to_owned()],
            Default::default(),
        ));
        let mut sessions = Vec::new();
        for jid in ["alice@a.test/phone", "alice@a.test/desk", "bob@b.test/x"] {
            let (handle, receiver) =
                registry.new_session(jid.parse().unwrap(), uuid::Uuid::now_v7());
            registry.bind(&handle).unwrap();
            sessions.push((handle, receiver));
        }
        let store = SqliteStore::open_in_memory().unwrap();
        let modules = starling_modules::ModuleSet::build(Vec::new()).unwrap();
        let router = Router::new(registry, store, Default::default(), Arc::new(modules));
        (
            AdminHandler {
                router: Arc::new(router),
            },
            sessions,
        )
    }

    #[test]
    fn kick_of_a_full_jid_closes_that_session_only() {
        let (handler, sessions) = handler_with_sessions();
        let answer = handler.kick("alice@a.test/phone", Some("spam".to_owned()));
        assert_eq!(answer, Ok(Response::Kicked { count: 1 }));
        assert_eq!(
            sessions[0].1.close_reason(),
            Some(CloseReason::StreamError {
                condition: StreamErrorCondition::PolicyViolation,
                text: Some("spam".to_owned()),
            })
        );
        assert!(!sessions[1].0.is_closing());
        assert!(!sessions[2].0.is_closing());
    }

    #[test]
    fn kick_of_a_bare_jid_closes_every_resource() {
        let (handler, sessions) = handler_with_sessions();
        assert_eq!(
            handler.kick("alice@a.test", None),
            Ok(Response::Kicked { count: 2 })
        );
        assert_eq!(
            sessions[1].1.close_reason(),
            Some(CloseReason::StreamError {
                condition: StreamErrorCondition::PolicyViolation,
                text: Some(DEFAULT_KICK_TEXT.to_owned()),
            })
        );
        assert!(sessions[0].0.is_closing());
        assert!(!sessions[2].0.is_closing());
    }

    #[test]
    fn kick_of_an_unknown_jid_is_not_found() {
        let (handler, _sessions) = handler_with_sessions();
        for jid in ["carol@a.test", "alice@a.test/tablet", "alice@c.test"] {
            let Err(Response::Error { kind, .. }) = handler.kick(jid, None) else {
                panic!("{jid} kicked something");
            };
            assert_eq!(kind, ErrorKind::NotFound, "{jid}");
        }
        let Err(Response::Error { kind, .. }) = handler.kick("@@", None) else {
            panic!("a malformed JID was accepted");
        };
        assert_eq!(kind, ErrorKind::BadRequest);
    }

    #[test]
    fn announce_reaches_available_sessions_of_that_host_only() {
        let (handler, mut sessions) = handler_with_sessions();
        let presence: Element = "<presence xmlns='jabber:client'/>".parse().unwrap();
        sessions[0].0.set_presence(Some(presence.clone()), 0);
        sessions[2].0.set_presence(Some(presence), 0);
        assert_eq!(
            handler.announce("a.test", "hello"),
            Ok(Response::Announced { count: 1 })
        );
        let got = sessions[0].1.try_recv().unwrap().to_element().unwrap();
        assert_eq!(got.attr("to"), Some("alice@a.test/phone"));
        assert!(sessions[1].1.try_recv().is_none(), "not available");
        assert!(sessions[2].1.try_recv().is_none(), "other host");
        let Err(Response::Error { kind, .. }) = handler.announce("c.test", "hello") else {
            panic!("announced to an unknown host");
        };
        assert_eq!(kind, ErrorKind::NotFound);
    }

    #[test]
    fn announcement_with_a_character_xml_forbids_is_refused() {
        let (handler, mut sessions) = handler_with_sessions();
        let presence: Element = "<presence xmlns='jabber:client'/>".parse().unwrap();
        sessions[0].0.set_presence(Some(presence), 0);
        assert_eq!(
            handler.announce("a.test", "restart\u{1b}[1m now"),
            Err(Response::error(
                ErrorKind::BadRequest,
                "the announcement contains U+001B, a character not allowed in XML; nothing was sent"
            ))
        );
        assert!(sessions[0].1.try_recv().is_none());
        // Tab and line breaks are fine.
        assert_eq!(
            handler.announce("a.test", "restart\tnow\r\n"),
            Ok(Response::Announced { count: 1 })
        );
    }

    #[test]
    fn list_sessions_filters_by_host() {
        let (handler, _sessions) = handler_with_sessions();
        let Ok(Response::Sessions { sessions }) = handler.list_sessions(Some("a.test")) else {
            panic!("no list");
        };
        let jids: Vec<&str> = sessions.iter().map(|s| s.jid.as_str()).collect();
        assert_eq!(jids, ["alice@a.test/desk", "alice@a.test/phone"]);
        let Ok(Response::Sessions { sessions }) = handler.list_sessions(None) else {
            panic!("no list");
        };
        assert_eq!(sessions.len(), 3);
    }
}
