//! The admin socket: the server side (`AdminHandler` over the session registry, started with
//! the server) and the client side of `starling list-sessions`, `kick` and `announce`.
//!
//! *Kick condition:* a kicked session gets `<policy-violation/>` (RFC 6120 §4.9.3.14, "the
//! entity has violated some local service policy"), with the operator's reason as `<text/>`.
//! ejabberd uses the same condition when an operator bans or blocks an account; Prosody's
//! `c2s:close` sends `<undefined-condition/>` with a text. `<reset/>` (§4.9.3.17) is about a
//! changed security context and `<conflict/>` (§4.9.3.3) tells the client that another
//! session replaced it, both of which would mislead the client.

use std::io::Read as _;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use minidom::Element;
use starling_admin::{
    AdminListener, Command, ErrorKind, ListenerLimits, Response, SessionInfo, Transport,
};
use starling_registry::{CloseReason, Registry, SessionHandle, StreamTransport};
use starling_stanza::{NS_CLIENT, StreamErrorCondition};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::info;

use crate::config::Config;

/// The stream error text when the operator gives no reason.
const DEFAULT_KICK_TEXT: &str = "disconnected by the server administrator";

/// Largest announcement read from standard input; the request must fit the admin protocol's
/// line limit with room for the JSON around it.
const MAX_ANNOUNCEMENT_BYTES: usize = starling_admin::MAX_REQUEST_BYTES / 2;

/// Open the admin socket (unless `admin.enabled` is false) and answer requests on a task until
/// `shutdown` turns true; the task removes the socket file when it ends. Fails when another
/// server answers on the socket.
pub async fn start(
    config: &Config,
    registry: Arc<Registry>,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<Option<JoinHandle<()>>> {
    if !config.admin.enabled {
        return Ok(None);
    }
    let path = config.admin_socket();
    let listener = AdminListener::bind(&path, ListenerLimits::default())
        .await
        .context("cannot open the admin socket (admin.socket)")?;
    info!(path = %path.display(), "admin socket listening");
    let handler = Arc::new(AdminHandler { registry });
    Ok(Some(tokio::spawn(listener.serve(handler, async move {
        let _ = shutdown.wait_for(|stopping| *stopping).await;
    }))))
}

/// `starling list-sessions [HOST] [--json]`: one line per session, or the JSON array.
pub async fn list_sessions(
    config: &Config,
    host: Option<String>,
    json: bool,
) -> anyhow::Result<Vec<String>> {
    let response = request(config, Command::ListSessions { host }).await?;
    let Response::Sessions { sessions } = response else {
        anyhow::bail!("unexpected answer from the server: {response:?}");
    };
    if json {
        return Ok(vec![serde_json::to_string_pretty(&sessions)?]);
    }
    Ok(session_table(&sessions))
}

/// `starling kick JID [--reason TEXT]`.
pub async fn kick(config: &Config, jid: String, reason: Option<String>) -> anyhow::Result<String> {
    match request(
        config,
        Command::Kick {
            jid: jid.clone(),
            reason,
        },
    )
    .await?
    {
        Response::Kicked { count } => Ok(format!("kicked {count} session(s) of {jid}")),
        other => anyhow::bail!("unexpected answer from the server: {other:?}"),
    }
}

/// After `deluser`: close the deleted account's sessions on the running server, if one
/// answers on the admin socket. Returns how many were closed; `None` when no server runs.
pub async fn close_deleted_account(config: &Config, jid: &str) -> anyhow::Result<Option<usize>> {
    let command = Command::Kick {
        jid: jid.to_owned(),
        reason: Some("the account was deleted".to_owned()),
    };
    match starling_admin::request(&config.admin_socket(), &command).await {
        Ok(Response::Kicked { count }) => Ok(Some(count)),
        Ok(other) => anyhow::bail!("unexpected answer from the server: {other:?}"),
        Err(starling_admin::ClientError::NotRunning { .. }) => Ok(None),
        Err(starling_admin::ClientError::Server {
            kind: starling_admin::ErrorKind::NotFound,
            ..
        }) => Ok(Some(0)),
        Err(err) => Err(err.into()),
    }
}

/// `starling announce HOST [--message TEXT]`; without `--message` the text is read from
/// standard input.
pub async fn announce(
    config: &Config,
    host: String,
    message: Option<String>,
) -> anyhow::Result<String> {
    let message = match message {
        Some(message) => message,
        None => read_stdin_message()?,
    };
    match request(
        config,
        Command::Announce {
            host: host.clone(),
            message,
        },
    )
    .await?
    {
        Response::Announced { count } => Ok(format!(
            "announcement sent to {count} available session(s) on {host}"
        )),
        other => anyhow::bail!("unexpected answer from the server: {other:?}"),
    }
}

/// Answers admin requests from the live sessions.
pub struct AdminHandler {
    registry: Arc<Registry>,
}

impl starling_admin::Handler for AdminHandler {
    async fn handle(&self, command: Command) -> Response {
        let result = match command {
            Command::ListSessions { host } => self.list_sessions(host.as_deref()),
            Command::Kick { jid, reason } => self.kick(&jid, reason),
            Command::Announce { host, message } => self.announce(&host, &message),
        };
        result.unwrap_or_else(|error| error)
    }
}

impl AdminHandler {
    fn list_sessions(&self, host: Option<&str>) -> Result<Response, Response> {
        let hosts = match host {
            Some(host) => vec![self.served_host(host)?],
            None => self.registry.hosts(),
        };
        let mut sessions: Vec<SessionInfo> = hosts
            .iter()
            .filter_map(|host| self.registry.host_sessions(host))
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
        if !self.registry.serves(parsed.domain().as_str()) {
            return Err(not_served(parsed.domain().as_str()));
        }
        let targets = match parsed.try_as_full() {
            Ok(full) => self.registry.resource(full).into_iter().collect(),
            Err(bare) => self.registry.connected_resources(bare),
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
            info!(jid = %target.full_jid(), reason = %text, "kicked by the administrator");
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
        if message.trim().is_empty() {
            return Err(Response::error(
                ErrorKind::BadRequest,
                "the announcement is empty",
            ));
        }
        // Sent as is, a character XML 1.0 forbids would end every recipient's stream.
        if let Some(c) = starling_stanza::first_illegal_xml_char(message) {
            return Err(Response::error(
                ErrorKind::BadRequest,
                format!(
                    "the announcement contains U+{:04X}, a character not allowed in XML; nothing was sent",
                    u32::from(c)
                ),
            ));
        }
        let sessions = self.registry.host_sessions(&host).unwrap_or_default();
        let id = uuid::Uuid::now_v7().to_string();
        let count = sessions
            .iter()
            .filter(|session| session.is_available())
            .filter(|session| {
                let announcement = announcement(&host, session, &id, message);
                session
                    .send(starling_stanza::OutboundStanza::new(&announcement))
                    .is_ok()
            })
            .count();
        info!(host = %host, sessions = count, "announcement sent");
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
        if !self.registry.serves(domain) {
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

fn read_stdin_message() -> anyhow::Result<String> {
    use std::io::IsTerminal as _;
    if std::io::stdin().is_terminal() {
        eprintln!("type the announcement, then Ctrl-D on a line of its own");
    }
    let mut bytes = Vec::new();
    let limit = u64::try_from(MAX_ANNOUNCEMENT_BYTES).unwrap_or(u64::MAX);
    std::io::stdin()
        .lock()
        .take(limit + 1)
        .read_to_end(&mut bytes)
        .context("cannot read the announcement from standard input")?;
    anyhow::ensure!(
        bytes.len() <= MAX_ANNOUNCEMENT_BYTES,
        "the announcement is longer than {MAX_ANNOUNCEMENT_BYTES} bytes"
    );
    let text = String::from_utf8(bytes).context("the announcement is not UTF-8")?;
    Ok(text.trim_end_matches(['\n', '\r']).to_owned())
}

async fn request(config: &Config, command: Command) -> anyhow::Result<Response> {
    let path = config.admin_socket();
    Ok(starling_admin::request(Path::new(&path), &command).await?)
}

/// Aligned columns: JID, peer, since, TLS, state, priority.
fn session_table(sessions: &[SessionInfo]) -> Vec<String> {
    const UNKNOWN: &str = "-";
    let rows: Vec<[String; 6]> = sessions
        .iter()
        .map(|session| {
            [
                session.jid.clone(),
                session.peer.clone().unwrap_or_else(|| UNKNOWN.to_owned()),
                session
                    .connected_at
                    .clone()
                    .unwrap_or_else(|| UNKNOWN.to_owned()),
                session
                    .transport
                    .map_or(UNKNOWN, Transport::describe)
                    .to_owned(),
                session.state().to_owned(),
                session.priority.to_string(),
            ]
        })
        .collect();
    let header = ["JID", "PEER", "SINCE", "TLS", "STATE", "PRIORITY"].map(str::to_owned);
    let mut widths = header.clone().map(|cell| cell.chars().count());
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut lines: Vec<String> = std::iter::once(&header)
        .chain(&rows)
        .map(|row| {
            let cells: Vec<String> = row
                .iter()
                .zip(widths)
                .map(|(cell, width)| format!("{cell:<width$}"))
                .collect();
            cells.join("  ").trim_end().to_owned()
        })
        .collect();
    lines.push(format!("{} session(s)", sessions.len()));
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(jid: &str, transport: Option<Transport>, available: bool) -> SessionInfo {
        SessionInfo {
            jid: jid.to_owned(),
            peer: transport.map(|_| "127.0.0.1:40000".to_owned()),
            connected_at: transport.map(|_| "2026-11-25T19:04:05Z".to_owned()),
            transport,
            available,
            interested: false,
            priority: if available { 5 } else { 0 },
        }
    }

    #[test]
    fn table_has_a_header_a_line_per_session_and_a_count() {
        let lines = session_table(&[
            info("alice@a.test/phone", Some(Transport::Starttls), true),
            info("bob@a.test/x", None, false),
        ]);
        assert_eq!(
            lines,
            [
                "JID                 PEER             SINCE                 TLS             STATE      PRIORITY",
                "alice@a.test/phone  127.0.0.1:40000  2026-11-25T19:04:05Z  yes (starttls)  available  5",
                "bob@a.test/x        -                -                     -               connected  0",
                "2 session(s)",
            ]
        );
    }

    #[test]
    fn announcement_is_a_headline_from_the_host() {
        let registry = Registry::new(["a.test".to_owned()], Default::default());
        let (handle, _rx) =
            registry.new_session("alice@a.test/phone".parse().unwrap(), uuid::Uuid::nil());
        let message = announcement("a.test", &handle, "m1", "maintenance at 5 <UTC> & more");
        assert_eq!(
            String::from(&message),
            "<message xmlns='jabber:client' from='a.test' id='m1' to='alice@a.test/phone' \
             type='headline'><body>maintenance at 5 &lt;UTC&gt; &amp; more</body></message>"
        );
    }

    fn handler_with_sessions() -> (
        AdminHandler,
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
        (AdminHandler { registry }, sessions)
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
