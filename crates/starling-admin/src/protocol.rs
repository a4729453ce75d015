//! The wire format: one JSON object per line in each direction, each carrying the protocol
//! version, so a client and a server of different releases fail with a clear error instead of
//! misreading each other.

use std::time::SystemTime;

use serde::{Deserialize, Serialize};

/// The protocol version this crate speaks. A request with another version gets an
/// [`ErrorKind::UnsupportedVersion`] answer.
pub const PROTOCOL_VERSION: u32 = 1;

/// Largest request line the listener reads, newline included. An announcement body is the
/// largest thing a request carries; 64 KiB is far beyond any sensible one.
pub const MAX_REQUEST_BYTES: usize = 64 * 1024;

/// Largest reply line the client reads: a session list of a busy server (about 200 bytes a
/// session, so some 300 000 sessions) fits.
pub const MAX_REPLY_BYTES: usize = 64 * 1024 * 1024;

/// What an admin client asks the running server to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "kebab-case")]
pub enum Command {
    /// The bound sessions, of one host or of all.
    ListSessions {
        /// Only this host; `None` for every host.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        host: Option<String>,
    },
    /// End the sessions of a bare JID (all its resources) or of one full JID.
    Kick {
        /// A bare or full JID.
        jid: String,
        /// Sent to the client as the stream error's `<text/>`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// Send a message to every available session of a host.
    Announce {
        /// The host whose users hear it; it is also the message's sender.
        host: String,
        /// The message body.
        message: String,
    },
}

/// A request line: the version and the command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// [`PROTOCOL_VERSION`] of the sender.
    pub version: u32,
    /// What to do.
    #[serde(flatten)]
    pub command: Command,
}

/// What the server answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "kebab-case")]
pub enum Response {
    /// Answer to [`Command::ListSessions`].
    Sessions {
        /// One entry per bound session, ordered by JID.
        sessions: Vec<SessionInfo>,
    },
    /// Answer to [`Command::Kick`]: how many sessions were asked to close.
    Kicked {
        /// Sessions closed (at least one; none is an error).
        count: usize,
    },
    /// Answer to [`Command::Announce`]: how many sessions the message was queued for.
    Announced {
        /// Sessions that got the message.
        count: usize,
    },
    /// The request failed.
    Error {
        /// What kind of failure.
        kind: ErrorKind,
        /// For the operator, in English.
        message: String,
    },
}

impl Response {
    /// An error response.
    pub fn error(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self::Error {
            kind,
            message: message.into(),
        }
    }
}

/// A reply line: the version and the response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reply {
    /// [`PROTOCOL_VERSION`] of the server.
    pub version: u32,
    /// The answer.
    #[serde(flatten)]
    pub response: Response,
}

/// Why a request failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ErrorKind {
    /// The line is not JSON, or not a request this version knows.
    BadRequest,
    /// The request names a protocol version the server does not speak.
    UnsupportedVersion,
    /// The request line is longer than [`MAX_REQUEST_BYTES`].
    TooLarge,
    /// The JID or host has no sessions or is not served here.
    NotFound,
    /// Too many admin connections are open at once.
    Busy,
    /// The server failed; its log says why.
    Internal,
}

impl ErrorKind {
    /// The kebab-case name used on the wire.
    pub fn name(self) -> &'static str {
        match self {
            Self::BadRequest => "bad-request",
            Self::UnsupportedVersion => "unsupported-version",
            Self::TooLarge => "too-large",
            Self::NotFound => "not-found",
            Self::Busy => "busy",
            Self::Internal => "internal",
        }
    }
}

/// One bound session as `starling list-sessions` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionInfo {
    /// The bound full JID.
    pub jid: String,
    /// The client's address and port, when known.
    pub peer: Option<String>,
    /// When the connection was accepted, RFC 3339 in UTC, when known.
    pub connected_at: Option<String>,
    /// How the stream is protected, when known.
    pub transport: Option<Transport>,
    /// The resource sent available presence (RFC 6121 §4.2).
    pub available: bool,
    /// The resource asked for its roster and receives roster pushes (RFC 6121 §2.1.3).
    pub interested: bool,
    /// Presence priority (RFC 6121 §4.7.2.3); 0 while unavailable.
    pub priority: i8,
}

impl SessionInfo {
    /// The session-model state in one word: `connected`, `available`, `interested` or
    /// `available+interested` (the last two facts are independent).
    pub fn state(&self) -> &'static str {
        match (self.available, self.interested) {
            (false, false) => "connected",
            (true, false) => "available",
            (false, true) => "interested",
            (true, true) => "available+interested",
        }
    }

    /// `starling list-sessions` as a table: a header, one line per session in aligned
    /// columns (JID, peer, since, TLS, state, priority), then the count.
    pub fn table(sessions: &[SessionInfo]) -> Vec<String> {
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
}

/// How a client stream is carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Transport {
    /// Plain TCP, never upgraded.
    Plain,
    /// TCP upgraded with STARTTLS (RFC 6120 §5).
    Starttls,
    /// TLS from the first byte (XEP-0368).
    DirectTls,
}

impl Transport {
    /// `no`, `yes (starttls)` or `yes (direct)`, for the session table.
    pub fn describe(self) -> &'static str {
        match self {
            Self::Plain => "no",
            Self::Starttls => "yes (starttls)",
            Self::DirectTls => "yes (direct)",
        }
    }
}

/// `time` as RFC 3339 in UTC with second precision, e.g. `2026-11-25T19:04:05Z`.
pub fn rfc3339(time: SystemTime) -> String {
    let seconds = match time.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(since) => i64::try_from(since.as_secs()).unwrap_or(i64::MAX),
        Err(before) => -i64::try_from(before.duration().as_secs()).unwrap_or(i64::MAX),
    };
    // Whole seconds, so the well-known format writes no fraction; UTC is written as `Z`.
    time::OffsetDateTime::from_unix_timestamp(seconds)
        .ok()
        .and_then(|utc| {
            utc.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| "(out of range)".to_owned())
}

/// Why a request line could not be read; each becomes an [`Response::Error`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// Not a JSON object, or not a known command with the right fields.
    #[error("malformed request: {0}")]
    Malformed(String),
    /// The `version` field is missing or not ours.
    #[error(
        "unsupported protocol version {found:?}; this server speaks version {PROTOCOL_VERSION}"
    )]
    UnsupportedVersion {
        /// The `version` value the request carried, if any.
        found: Option<u64>,
    },
}

impl RequestError {
    /// The error response for this failure.
    pub fn to_response(&self) -> Response {
        let kind = match self {
            Self::Malformed(_) => ErrorKind::BadRequest,
            Self::UnsupportedVersion { .. } => ErrorKind::UnsupportedVersion,
        };
        Response::error(kind, self.to_string())
    }
}

/// Decode one request line (without its newline). The version is checked before the command,
/// so a newer client's unknown command is reported as a version mismatch.
pub fn decode_request(line: &[u8]) -> Result<Command, RequestError> {
    let value: serde_json::Value = serde_json::from_slice(line)
        .map_err(|err| RequestError::Malformed(format!("not JSON: {err}")))?;
    let Some(object) = value.as_object() else {
        return Err(RequestError::Malformed("expected a JSON object".to_owned()));
    };
    let version = object.get("version").and_then(serde_json::Value::as_u64);
    if version != Some(u64::from(PROTOCOL_VERSION)) {
        return Err(RequestError::UnsupportedVersion { found: version });
    }
    serde_json::from_value::<Request>(value)
        .map(|request| request.command)
        .map_err(|err| RequestError::Malformed(err.to_string()))
}

/// Encode a request line, newline included.
pub fn encode_request(command: &Command) -> Vec<u8> {
    encode_line(&Request {
        version: PROTOCOL_VERSION,
        command: command.clone(),
    })
}

/// Encode a reply line, newline included.
pub fn encode_reply(response: &Response) -> Vec<u8> {
    encode_line(&Reply {
        version: PROTOCOL_VERSION,
        response: response.clone(),
    })
}

fn encode_line(value: &impl Serialize) -> Vec<u8> {
    // Serializing these types cannot fail: every map key is a string and nothing is a
    // non-finite float. Should that change, the client still gets a well-formed error line.
    let mut line = serde_json::to_vec(value).unwrap_or_else(|err| {
        format!(
            r#"{{"version":{PROTOCOL_VERSION},"result":"error","kind":"internal","message":{:?}}}"#,
            err.to_string()
        )
        .into_bytes()
    });
    line.push(b'\n');
    line
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn decode(line: &str) -> Result<Command, RequestError> {
        decode_request(line.as_bytes())
    }

    #[test]
    fn requests_round_trip() {
        for command in [
            Command::ListSessions { host: None },
            Command::ListSessions {
                host: Some("a.test".to_owned()),
            },
            Command::Kick {
                jid: "alice@a.test/phone".to_owned(),
                reason: Some("spam".to_owned()),
            },
            Command::Announce {
                host: "a.test".to_owned(),
                message: "line one\nline \"two\"".to_owned(),
            },
        ] {
            let line = encode_request(&command);
            assert_eq!(line.last(), Some(&b'\n'));
            assert_eq!(line.iter().filter(|b| **b == b'\n').count(), 1);
            assert_eq!(decode_request(&line[..line.len() - 1]), Ok(command));
        }
    }

    #[test]
    fn request_wire_form_is_stable() {
        let line = encode_request(&Command::Kick {
            jid: "alice@a.test".to_owned(),
            reason: None,
        });
        assert_eq!(
            String::from_utf8(line).unwrap(),
            "{\"version\":1,\"command\":\"kick\",\"jid\":\"alice@a.test\"}\n"
        );
    }

    #[test]
    fn reply_wire_form_is_stable() {
        let line = encode_reply(&Response::error(ErrorKind::NotFound, "no such session"));
        assert_eq!(
            String::from_utf8(line).unwrap(),
            "{\"version\":1,\"result\":\"error\",\"kind\":\"not-found\",\"message\":\"no such session\"}\n"
        );
        let line = encode_reply(&Response::Kicked { count: 2 });
        assert_eq!(
            String::from_utf8(line).unwrap(),
            "{\"version\":1,\"result\":\"kicked\",\"count\":2}\n"
        );
    }

    #[test]
    fn garbage_is_malformed() {
        assert!(matches!(decode("hello"), Err(RequestError::Malformed(_))));
        assert!(matches!(decode("[1, 2]"), Err(RequestError::Malformed(_))));
        assert!(matches!(
            decode(r#"{"version":1,"command":"reboot"}"#),
            Err(RequestError::Malformed(_))
        ));
        assert!(matches!(
            decode(r#"{"version":1,"command":"kick"}"#),
            Err(RequestError::Malformed(_))
        ));
        assert_eq!(
            decode("hello").unwrap_err().to_response(),
            Response::Error {
                kind: ErrorKind::BadRequest,
                message: "malformed request: not JSON: expected value at line 1 column 1"
                    .to_owned()
            }
        );
    }

    #[test]
    fn other_versions_are_refused_before_the_command_is_read() {
        assert_eq!(
            decode(r#"{"version":2,"command":"reboot"}"#),
            Err(RequestError::UnsupportedVersion { found: Some(2) })
        );
        assert_eq!(
            decode(r#"{"command":"list-sessions"}"#),
            Err(RequestError::UnsupportedVersion { found: None })
        );
        let response = decode(r#"{"version":0}"#).unwrap_err().to_response();
        assert!(matches!(
            response,
            Response::Error {
                kind: ErrorKind::UnsupportedVersion,
                ..
            }
        ));
    }

    #[test]
    fn states_name_the_session_model() {
        let mut info = SessionInfo {
            jid: "alice@a.test/phone".to_owned(),
            peer: None,
            connected_at: None,
            transport: None,
            available: false,
            interested: false,
            priority: 0,
        };
        assert_eq!(info.state(), "connected");
        info.interested = true;
        assert_eq!(info.state(), "interested");
        info.available = true;
        assert_eq!(info.state(), "available+interested");
        info.interested = false;
        assert_eq!(info.state(), "available");
    }

    #[test]
    fn rfc3339_is_utc_with_seconds() {
        assert_eq!(rfc3339(SystemTime::UNIX_EPOCH), "1970-01-01T00:00:00Z");
        let time = SystemTime::UNIX_EPOCH + Duration::from_millis(1_795_633_445_900);
        assert_eq!(rfc3339(time), "2026-11-25T19:04:05Z");
    }

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
        let lines = SessionInfo::table(&[
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
}
