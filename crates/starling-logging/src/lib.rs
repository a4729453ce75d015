//! Log output: `tracing` events on stderr, readable lines or one JSON object per line, behind a
//! filter that SIGHUP can replace (`log.level`), and the one-line session start and end records.
//!
//! The subscriber is installed once the configuration is loaded, so errors before that (a bad
//! command line, an unreadable config file) reach stderr as plain text.
//!
//! *Why a crate of its own rather than part of `starling-config`:* `log.level` and
//! `log.format` are configuration, but installing the process's global subscriber, holding its
//! reload handle and writing each session's records start something, which the configuration
//! crate never does. Events logged here keep the targets they had in the server
//! (`starling::running::logging`, `starling::session`), so existing filters still match.

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Instant;

use tracing::info;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer as _, Registry, reload};

use starling_config::LogFormat;

/// The environment variable that overrides `log.level`.
pub const LOG_ENV: &str = "STARLING_LOG";

/// Why the subscriber could not be installed.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    /// `$STARLING_LOG` does not parse as a filter.
    #[error("STARLING_LOG: invalid filter {filter:?}")]
    InvalidEnvFilter {
        filter: String,
        #[source]
        source: tracing_subscriber::filter::ParseError,
    },
    /// `log.level` does not parse as a filter.
    #[error("log.level: invalid filter {filter:?}")]
    InvalidLevel {
        filter: String,
        #[source]
        source: tracing_subscriber::filter::ParseError,
    },
    /// A global subscriber is already installed.
    #[error("cannot install the log subscriber")]
    Install(#[source] tracing_subscriber::util::TryInitError),
}

/// Install the global subscriber: `format` on stderr, filtered by `$STARLING_LOG` when it is set
/// and by `level` (the config's `log.level`) otherwise. An invalid filter is an error, naming
/// where it came from.
pub fn init(format: LogFormat, level: &str) -> Result<(), InitError> {
    let filter = match env_level() {
        Some(env) => parse_filter(&env).map_err(|source| InitError::InvalidEnvFilter {
            filter: env,
            source,
        })?,
        None => parse_filter(level).map_err(|source| InitError::InvalidLevel {
            filter: level.to_owned(),
            source,
        })?,
    };
    let (filter, handle) = reload::Layer::new(filter);
    use std::io::IsTerminal as _;
    let output = match format {
        LogFormat::Human => tracing_subscriber::fmt::layer()
            .with_ansi(std::io::stderr().is_terminal())
            .with_writer(std::io::stderr)
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_writer(std::io::stderr)
            .boxed(),
    };
    tracing_subscriber::registry()
        .with(filter)
        .with(output)
        .try_init()
        .map_err(InitError::Install)?;
    // `init` runs once per process; a second call fails above before reaching this line.
    let _ = FILTER.set(handle);
    Ok(())
}

/// SIGHUP: apply a new `log.level`. `$STARLING_LOG`, when set, keeps precedence; an invalid
/// filter leaves the running one in force. Either case is logged.
pub fn reload_level(level: &str) {
    if let Some(env) = env_level() {
        info!(
            target: LOG_TARGET,
            env = %env,
            "SIGHUP: log.level changed but {LOG_ENV} is set and takes precedence"
        );
        return;
    }
    let Some(handle) = FILTER.get() else {
        return;
    };
    match parse_filter(level) {
        Ok(filter) => match handle.reload(filter) {
            Ok(()) => info!(target: LOG_TARGET, level, "SIGHUP: log level changed"),
            Err(err) => tracing::error!(
                target: LOG_TARGET,
                error = %err,
                "SIGHUP: cannot change the log level"
            ),
        },
        Err(err) => tracing::error!(
            target: LOG_TARGET,
            level,
            error = %err,
            "SIGHUP: log.level is not a valid filter; keeping the running one"
        ),
    }
}

/// Why a session ended, as written in the `reason` field of its end record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    /// The client closed its stream (`</stream:stream>`).
    ClientClosed,
    /// The connection went away without a stream close: the socket closed or was reset, or
    /// TLS ended without `close_notify`.
    Disconnected,
    /// We ended the stream with a stream error, for what the client sent (the condition is
    /// logged with it).
    StreamError(&'static str),
    /// Authentication, binding or an idle ping answer did not come in time.
    Timeout,
    /// Someone else asked the session to close: a newer session took its resource (conflict)
    /// or an operator or the overflow guard closed it.
    Kicked(Option<&'static str>),
    /// The server is shutting down.
    Shutdown,
    /// The TLS handshake failed or timed out.
    TlsFailed,
    /// A connection limit refused it at once.
    Refused,
    /// Reading or writing the socket failed.
    IoError,
    /// A new connection resumed the session (XEP-0198 §5); it goes on there.
    Resumed,
}

impl EndReason {
    /// The value of the `reason` field.
    pub fn name(self) -> &'static str {
        match self {
            EndReason::ClientClosed => "client-closed",
            EndReason::Disconnected => "disconnected",
            EndReason::StreamError(_) => "stream-error",
            EndReason::Timeout => "timeout",
            EndReason::Kicked(_) => "kicked",
            EndReason::Shutdown => "shutdown",
            EndReason::TlsFailed => "tls-failed",
            EndReason::Refused => "refused",
            EndReason::IoError => "io-error",
            EndReason::Resumed => "resumed-elsewhere",
        }
    }

    /// A failed socket read: the peer vanishing (reset, or TLS without `close_notify`) is
    /// `Disconnected`, anything else `IoError`.
    pub fn of_read_error(err: &std::io::Error) -> Self {
        use std::io::ErrorKind;
        match err.kind() {
            ErrorKind::UnexpectedEof
            | ErrorKind::ConnectionReset
            | ErrorKind::ConnectionAborted => EndReason::Disconnected,
            _ => EndReason::IoError,
        }
    }

    /// The stream error condition that went with it, if any.
    pub fn condition(self) -> Option<&'static str> {
        match self {
            EndReason::StreamError(condition) => Some(condition),
            EndReason::Kicked(condition) => condition,
            EndReason::ClientClosed
            | EndReason::Disconnected
            | EndReason::Timeout
            | EndReason::Shutdown
            | EndReason::TlsFailed
            | EndReason::Refused
            | EndReason::IoError
            | EndReason::Resumed => None,
        }
    }
}

/// What one connection's start and end records say: written as `session started` when the
/// connection is accepted and `session ended` when its task finishes, whatever ends it.
#[derive(Debug)]
pub struct SessionRecord {
    /// The peer's address.
    peer: SocketAddr,
    /// When the connection was accepted.
    started: Instant,
    /// The bare JID after authentication, the full JID after binding.
    jid: Option<String>,
    /// The first cause of the end that was seen; later consequences (the stream error a
    /// timeout produces, say) do not replace it.
    reason: Option<EndReason>,
}

impl SessionRecord {
    /// Log the start of a connection from `peer` on a `listener` port.
    pub fn start(peer: SocketAddr, listener: &'static str) -> Self {
        info!(target: SESSION_TARGET, %peer, listener, "session started");
        Self {
            peer,
            started: Instant::now(),
            jid: None,
            reason: None,
        }
    }

    /// The session now has this JID (bare after SASL, full after binding).
    pub fn set_jid(&mut self, jid: &impl std::fmt::Display) {
        self.jid = Some(jid.to_string());
    }

    /// Note why the session is ending, unless a cause was already noted.
    pub fn ending(&mut self, reason: EndReason) {
        self.reason.get_or_insert(reason);
    }

    /// Log the end and return its reason. `error` is the I/O error that ended the connection,
    /// if one did; without any noted cause the peer closed the stream (the engine ends a stream
    /// only for a noted cause or the peer's `</stream:stream>`).
    pub fn finish(mut self, error: Option<&std::io::Error>) -> EndReason {
        if error.is_some() {
            self.ending(EndReason::IoError);
        }
        let reason = self.reason.unwrap_or(EndReason::ClientClosed);
        info!(
            target: SESSION_TARGET,
            peer = %self.peer,
            jid = self.jid.as_deref().map(tracing::field::display),
            reason = %reason.name(),
            condition = reason.condition().map(tracing::field::display),
            error = error.map(tracing::field::display),
            duration_ms = self.started.elapsed().as_millis() as u64,
            "session ended"
        );
        reason
    }
}

/// The target of the session start and end records, so a filter can keep or drop them alone.
const SESSION_TARGET: &str = "starling::session";

/// The target of this crate's other events: the server module they came from before this
/// crate was split out of it.
const LOG_TARGET: &str = "starling::running::logging";

static FILTER: OnceLock<reload::Handle<EnvFilter, Registry>> = OnceLock::new();

/// Parse a filter. The binary's own modules log under its crate name, `starling`
/// (`starling::running::connection`), while the workspace calls the crate `starling-server`;
/// so a directive for `starling_server` (or `starling_server::module`) is read as one for the
/// binary's modules. Targets match by prefix, so `starling=debug` covers every Starling crate.
/// Directives naming a module by its path before issue 16 (`starling::connection`) are read
/// as its path now ([`MOVED_MODULES`]), so existing `log.level` settings keep working.
fn parse_filter(filter: &str) -> Result<EnvFilter, tracing_subscriber::filter::ParseError> {
    let directives: Vec<String> = filter
        .split(',')
        .map(|directive| {
            let directive = directive.trim();
            let directive = match directive.strip_prefix("starling_server") {
                Some(rest) if rest.starts_with("::") => format!("starling{rest}"),
                Some(rest) if rest.is_empty() || rest.starts_with(['=', '[']) => {
                    format!("starling::{rest}")
                }
                _ => directive.to_owned(),
            };
            moved_module(&directive).unwrap_or(directive)
        })
        .collect();
    EnvFilter::try_new(directives.join(","))
}

/// The binary's modules that issue 16 moved: (old target, new target).
const MOVED_MODULES: [(&str, &str); 12] = [
    ("starling::server", "starling::running"),
    ("starling::connection", "starling::running::connection"),
    ("starling::tls", "starling::running::tls"),
    ("starling::limits", "starling::running::limits"),
    ("starling::hashing", "starling::running::hashing"),
    ("starling::logging", "starling::running::logging"),
    ("starling::metrics", "starling::running::metrics"),
    ("starling::admin", "starling::running::admin"),
    ("starling::ids", "starling::running::ids"),
    ("starling::accounts", "starling::commands::accounts"),
    ("starling::data", "starling::commands::data"),
    ("starling::cert", "starling::commands::cert"),
];

/// `directive` with a moved module's old target replaced by its new one.
fn moved_module(directive: &str) -> Option<String> {
    MOVED_MODULES.iter().find_map(|(old, new)| {
        let rest = directive.strip_prefix(old)?;
        (rest.is_empty() || rest.starts_with(['=', '[', ':'])).then(|| format!("{new}{rest}"))
    })
}

fn env_level() -> Option<String> {
    std::env::var(LOG_ENV)
        .ok()
        .filter(|value| !value.trim().is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starling_server_names_the_binary_modules() {
        let filter = parse_filter("warn,starling_server=debug,starling_router=info").unwrap();
        let text = filter.to_string();
        assert!(text.contains("starling::=debug"), "{text}");
        assert!(text.contains("starling_router=info"), "{text}");
        let filter = parse_filter("starling_server::running::connection=trace").unwrap();
        assert_eq!(filter.to_string(), "starling::running::connection=trace");
        assert!(parse_filter("info,=nonsense=").is_err());
    }

    #[test]
    fn old_module_targets_are_read_as_their_new_ones() {
        let filter = parse_filter("info,starling::connection=debug,starling::tls").unwrap();
        let text = filter.to_string();
        assert!(
            text.contains("starling::running::connection=debug"),
            "{text}"
        );
        assert!(text.contains("starling::running::tls"), "{text}");
        let filter = parse_filter("starling_server::server=trace").unwrap();
        assert_eq!(filter.to_string(), "starling::running=trace");
        let filter = parse_filter("starling::tlsx=debug").unwrap();
        assert_eq!(filter.to_string(), "starling::tlsx=debug");
    }

    #[test]
    fn first_cause_wins() {
        let mut record = SessionRecord {
            peer: SocketAddr::from(([127, 0, 0, 1], 1)),
            started: Instant::now(),
            jid: None,
            reason: None,
        };
        record.ending(EndReason::Timeout);
        record.ending(EndReason::StreamError("connection-timeout"));
        assert_eq!(record.reason, Some(EndReason::Timeout));
    }

    #[test]
    fn reasons_have_distinct_names() {
        let all = [
            EndReason::ClientClosed,
            EndReason::Disconnected,
            EndReason::StreamError("x"),
            EndReason::Timeout,
            EndReason::Kicked(None),
            EndReason::Shutdown,
            EndReason::TlsFailed,
            EndReason::Refused,
            EndReason::IoError,
        ];
        let names: std::collections::HashSet<_> = all.iter().map(|r| r.name()).collect();
        assert_eq!(names.len(), all.len());
        assert_eq!(
            EndReason::Kicked(Some("conflict")).condition(),
            Some("conflict")
        );
    }
}
