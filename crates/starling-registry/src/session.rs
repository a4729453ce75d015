//! One connected resource and the handle through which everything else reaches it.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use jid::{BareJid, FullJid};
use minidom::Element;
use starling_stanza::StreamErrorCondition;
use tokio::sync::{mpsc, watch};

/// Why a session is being closed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloseReason {
    /// End the stream with this stream error (RFC 6120 §4.9).
    StreamError {
        /// The condition.
        condition: StreamErrorCondition,
        /// Optional human-readable text.
        text: Option<String>,
    },
    /// End the stream with just `</stream:stream>`.
    Graceful,
}

/// Why [`SessionHandle::send`] did not queue a stanza.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// The session has ended; treat the resource as gone.
    #[error("the session has ended")]
    Closed,
    /// The session's outbound queue is full; treat the resource as gone for this stanza.
    #[error("the session's outbound queue is full")]
    QueueFull,
}

/// What the connection task reads: queued stanzas and a close request.
pub struct SessionReceiver {
    /// Stanzas to write to the client, in order. Boxed so that the channel's slots are a
    /// pointer wide: tokio allocates them in blocks of 32 up front, and a block of whole
    /// elements would cost every idle session a few kilobytes.
    pub stanzas: mpsc::Receiver<Box<Element>>,
    /// Becomes `Some` when someone asks the session to close.
    pub close: watch::Receiver<Option<CloseReason>>,
}

/// A snapshot of a connected resource (the session model's `ConnectedResource`).
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectedResource {
    /// The bound full JID.
    pub full_jid: FullJid,
    /// Presence priority, RFC 6121 §4.7.2.3 (-128..=127); 0 until presence says otherwise.
    pub priority: i8,
    /// The last available presence; `Some` makes this an *available resource*.
    pub presence: Option<Element>,
    /// Whether the resource asked for its roster and so receives roster pushes.
    pub is_interested: bool,
}

/// Where a session's connection came from, for operators (`starling list-sessions`). Fixed
/// when the session is created; routing never looks at it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionOrigin {
    /// The client's address and port.
    pub peer: SocketAddr,
    /// When the connection was accepted.
    pub connected_at: SystemTime,
    /// How the stream is protected.
    pub transport: StreamTransport,
}

/// How a client stream is carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamTransport {
    /// Plain TCP (only where the configuration allows it).
    Plain,
    /// TCP upgraded with STARTTLS (RFC 6120 §5).
    StartTls,
    /// TLS from the first byte (XEP-0368).
    DirectTls,
}

/// A cheap, cloneable reference to one session. Equality is session identity.
#[derive(Clone)]
pub struct SessionHandle {
    inner: Arc<Session>,
}

struct Session {
    /// Unique per connection (UUIDv7), so a stale handle never unbinds a newer session that
    /// reused the same full JID.
    id: uuid::Uuid,
    full_jid: FullJid,
    /// Peer, start time and transport; `None` for sessions made without them (tests).
    origin: Option<SessionOrigin>,
    stanzas: mpsc::Sender<Box<Element>>,
    close: watch::Sender<Option<CloseReason>>,
    state: Mutex<ResourceState>,
    /// When the queue was first found full, for the slow-reader grace period.
    overflow_since: Mutex<Option<Instant>>,
    /// JIDs this resource sent directed available presence to (RFC 6121 §4.6), which must hear
    /// its unavailable presence when it goes away.
    directed: Mutex<Vec<String>>,
    queue_depth: usize,
    overflow_grace: Duration,
}

#[derive(Debug, Default)]
struct ResourceState {
    priority: i8,
    /// Kept serialized: a parsed presence costs about a kilobyte per available session and is
    /// only read again when someone new must be told of it (probes, new resources).
    presence: Option<Box<str>>,
    is_interested: bool,
}

impl PartialEq for SessionHandle {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }
}

impl Eq for SessionHandle {}

impl std::fmt::Debug for SessionHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionHandle")
            .field("id", &self.inner.id)
            .field("full_jid", &self.inner.full_jid)
            .finish()
    }
}

impl SessionHandle {
    pub(crate) fn new(
        full_jid: FullJid,
        id: uuid::Uuid,
        origin: Option<SessionOrigin>,
        queue_depth: usize,
        overflow_grace: Duration,
    ) -> (Self, SessionReceiver) {
        let (stanza_tx, stanza_rx) = mpsc::channel(queue_depth.max(1));
        let (close_tx, close_rx) = watch::channel(None);
        let handle = Self {
            inner: Arc::new(Session {
                id,
                full_jid,
                origin,
                stanzas: stanza_tx,
                close: close_tx,
                state: Mutex::new(ResourceState::default()),
                overflow_since: Mutex::new(None),
                directed: Mutex::new(Vec::new()),
                queue_depth,
                overflow_grace,
            }),
        };
        (
            handle,
            SessionReceiver {
                stanzas: stanza_rx,
                close: close_rx,
            },
        )
    }

    /// The session's unique id.
    pub fn id(&self) -> uuid::Uuid {
        self.inner.id
    }

    /// The bound full JID.
    pub fn full_jid(&self) -> &FullJid {
        &self.inner.full_jid
    }

    /// Where the connection came from, if the shell said.
    pub fn origin(&self) -> Option<&SessionOrigin> {
        self.inner.origin.as_ref()
    }

    /// The account's bare JID.
    pub fn bare_jid(&self) -> BareJid {
        self.inner.full_jid.to_bare()
    }

    /// Queue a stanza for the client. Never waits: a full queue is `QueueFull`, and a queue
    /// that has stayed full for longer than the grace period also closes the session with
    /// `<policy-violation/>`, so a client that stops reading cannot hold memory forever.
    pub fn send(&self, stanza: Element) -> Result<(), SendError> {
        match self.inner.stanzas.try_send(Box::new(stanza)) {
            Ok(()) => {
                *lock(&self.inner.overflow_since) = None;
                Ok(())
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Err(SendError::Closed),
            Err(mpsc::error::TrySendError::Full(_)) => {
                let now = Instant::now();
                let since = *lock(&self.inner.overflow_since).get_or_insert(now);
                if now.duration_since(since) >= self.inner.overflow_grace {
                    self.close(CloseReason::StreamError {
                        condition: StreamErrorCondition::PolicyViolation,
                        text: Some(format!(
                            "outbound queue of {} stanzas stayed full; the client is not reading",
                            self.inner.queue_depth
                        )),
                    });
                }
                Err(SendError::QueueFull)
            }
        }
    }

    /// Ask the connection task to end the session. The first reason wins.
    pub fn close(&self, reason: CloseReason) {
        self.inner.close.send_if_modified(|current| {
            if current.is_none() {
                *current = Some(reason);
                true
            } else {
                false
            }
        });
    }

    /// Whether someone asked this session to close.
    pub fn is_closing(&self) -> bool {
        self.inner.close.borrow().is_some()
    }

    /// Stanzas waiting in the outbound queue (for the metrics endpoint; it takes no lock).
    pub fn queued_stanzas(&self) -> usize {
        let sender = &self.inner.stanzas;
        sender.max_capacity().saturating_sub(sender.capacity())
    }

    /// Record a presence broadcast (RFC 6121 §4.2, §4.4, §4.5): `Some` with its priority makes
    /// the resource available, `None` makes it unavailable. Returns whether it was available
    /// before.
    pub fn set_presence(&self, presence: Option<Element>, priority: i8) -> bool {
        let mut state = lock(&self.inner.state);
        let was_available = state.presence.is_some();
        state.priority = if presence.is_some() { priority } else { 0 };
        state.presence = presence.map(|element| String::from(&element).into_boxed_str());
        was_available
    }

    /// Remember that directed available presence went to `jid` (RFC 6121 §4.6.2).
    pub fn add_directed(&self, jid: &str) {
        let mut directed = lock(&self.inner.directed);
        if !directed.iter().any(|j| j == jid) {
            directed.push(jid.to_owned());
        }
    }

    /// Forget `jid` after directed unavailable presence went to it.
    pub fn remove_directed(&self, jid: &str) {
        lock(&self.inner.directed).retain(|j| j != jid);
    }

    /// Every directed-presence recipient, forgetting them (on unavailable or disconnect).
    pub fn take_directed(&self) -> Vec<String> {
        std::mem::take(&mut *lock(&self.inner.directed))
    }

    /// Mark the resource as interested (it requested the roster, RFC 6121 §2.1.3).
    pub fn set_interested(&self) {
        lock(&self.inner.state).is_interested = true;
    }

    /// Presence priority (0 when unavailable).
    pub fn priority(&self) -> i8 {
        lock(&self.inner.state).priority
    }

    /// Whether the resource has sent available presence.
    pub fn is_available(&self) -> bool {
        lock(&self.inner.state).presence.is_some()
    }

    /// Whether the resource receives roster pushes.
    pub fn is_interested(&self) -> bool {
        lock(&self.inner.state).is_interested
    }

    /// A snapshot of the session-model state.
    pub fn snapshot(&self) -> ConnectedResource {
        let state = lock(&self.inner.state);
        ConnectedResource {
            full_jid: self.inner.full_jid.clone(),
            priority: state.priority,
            // We serialized it ourselves, so it parses; a failure would only hide this presence.
            presence: state
                .presence
                .as_deref()
                .and_then(|text| text.parse::<Element>().ok()),
            is_interested: state.is_interested,
        }
    }
}

/// These mutexes guard plain data and no code panics while holding them; a poisoned lock still
/// holds consistent data, so it is used as is.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
