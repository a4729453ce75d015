//! One connected resource and the handle through which everything else reaches it.

use std::collections::{BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use jid::{BareJid, FullJid};
use minidom::Element;
use starling_stanza::{OutboundStanza, StreamErrorCondition};
use tokio::sync::{Notify, oneshot};

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
///
/// Dropping it ends the session for senders: [`SessionHandle::send`] then fails with
/// [`SendError::Closed`].
pub struct SessionReceiver {
    session: Arc<Session>,
    /// Whether [`SessionReceiver::next`] already reported the close request.
    close_reported: bool,
}

/// What [`SessionReceiver::next`] yields.
#[derive(Debug, Clone, PartialEq)]
pub enum SessionEvent {
    /// A stanza to write to the client.
    Stanza(OutboundStanza),
    /// Someone asked the session to close; reported once, after the stanzas queued before it.
    Close(CloseReason),
    /// A new connection resumes this session (XEP-0198 §5): stop using the old connection
    /// and hand the session over ([`SessionReceiver::take_takeover`]). Reported before any
    /// queued stanza, which stay queued for the new connection.
    TakeOver,
}

/// The session, handed from the connection that held it to the one resuming it (XEP-0198
/// §5): its handle and queue, and its stream management state.
pub struct Handover {
    /// The session's handle (it stays bound throughout).
    pub handle: SessionHandle,
    /// Its queue, with whatever arrived meanwhile.
    pub receiver: SessionReceiver,
    /// Counters and unacknowledged stanzas.
    pub sm: starling_sm::SmSession,
}

impl std::fmt::Debug for Handover {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handover")
            .field("handle", &self.handle)
            .finish_non_exhaustive()
    }
}

/// Where to hand a resumed session over to.
pub type TakeoverReply = oneshot::Sender<Handover>;

/// What ended a hibernation ([`SessionReceiver::hibernation_ends`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HibernationEnd {
    /// A new connection resumes the session.
    TakeOver,
    /// Someone asked the session to close.
    Close,
}

impl SessionReceiver {
    /// The next queued stanza, without waiting.
    pub fn try_recv(&mut self) -> Option<OutboundStanza> {
        lock(&self.session.outbox).pop()
    }

    /// Waits for the next stanza or, once the queue is empty, the close request. After the
    /// close was reported this waits for stanzas only.
    pub async fn next(&mut self) -> SessionEvent {
        loop {
            {
                let mut outbox = lock(&self.session.outbox);
                if outbox.takeover.is_some() {
                    return SessionEvent::TakeOver;
                }
                if let Some(stanza) = outbox.pop() {
                    return SessionEvent::Stanza(stanza);
                }
                if !self.close_reported
                    && let Some(reason) = outbox.close.clone()
                {
                    self.close_reported = true;
                    return SessionEvent::Close(reason);
                }
            }
            // One consumer and `notify_one` on every change: a change made after the check
            // above leaves a permit, so this returns at once and the loop looks again.
            self.session.wake.notified().await;
        }
    }

    /// Resolves once someone asked the session to close, or a new connection resumes it.
    pub async fn close_requested(&self) {
        loop {
            {
                let outbox = lock(&self.session.outbox);
                if outbox.close.is_some() || outbox.takeover.is_some() {
                    return;
                }
            }
            self.session.wake.notified().await;
        }
    }

    /// While the session is hibernating (its connection broke, XEP-0198 §5): resolves when a
    /// new connection resumes it or someone asks it to close. Queued stanzas stay queued.
    pub async fn hibernation_ends(&self) -> HibernationEnd {
        loop {
            {
                let outbox = lock(&self.session.outbox);
                if outbox.takeover.is_some() {
                    return HibernationEnd::TakeOver;
                }
                if outbox.close.is_some() {
                    return HibernationEnd::Close;
                }
            }
            self.session.wake.notified().await;
        }
    }

    /// The pending takeover's reply, once [`SessionEvent::TakeOver`] was reported.
    pub fn take_takeover(&mut self) -> Option<TakeoverReply> {
        lock(&self.session.outbox).takeover.take()
    }

    /// Ends the session for senders and takes every queued stanza out, in one step, so
    /// nothing queued in between is lost (the session is ending: XEP-0198 §5 decides what
    /// becomes of them; later sends fail with [`SendError::Closed`]).
    pub fn drain(self) -> Vec<OutboundStanza> {
        let mut outbox = lock(&self.session.outbox);
        outbox.receiver_gone = true;
        outbox.queued_bytes = 0;
        outbox.takeover = None;
        std::mem::take(&mut outbox.queue).into()
    }

    /// Whether someone asked the session to close.
    pub fn is_closing(&self) -> bool {
        lock(&self.session.outbox).close.is_some()
    }

    /// The close request, if there is one.
    pub fn close_reason(&self) -> Option<CloseReason> {
        lock(&self.session.outbox).close.clone()
    }

    /// Gives back the queue's storage when it is empty; for connections gone quiet, so an idle
    /// session keeps no room for the burst it once had.
    pub fn release_idle_memory(&mut self) {
        let mut outbox = lock(&self.session.outbox);
        if outbox.queue.is_empty() {
            outbox.queue = VecDeque::new();
        }
    }
}

impl Drop for SessionReceiver {
    fn drop(&mut self) {
        let mut outbox = lock(&self.session.outbox);
        outbox.receiver_gone = true;
        outbox.queue = VecDeque::new();
        outbox.queued_bytes = 0;
    }
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
    /// The stanzas queued for the client and the close request, read by [`SessionReceiver`].
    /// A plain queue under a lock rather than a channel: tokio's bounded channel allocates
    /// its state and a first block of 32 slots up front (with a watch channel for the close
    /// request, about 1.2 kB a session), while an empty `VecDeque` holds no heap at all.
    outbox: Mutex<Outbox>,
    /// Wakes the receiver after each change to `outbox`.
    wake: Notify,
    state: Mutex<ResourceState>,
    /// JIDs this resource sent directed available presence to (RFC 6121 §4.6), which must hear
    /// its unavailable presence when it goes away. A set, bounded by the caller's cap: a
    /// resource probing many addresses costs a lookup each, not a scan.
    directed: Mutex<BTreeSet<Box<str>>>,
    limits: QueueLimits,
}

/// How much one session's queue may hold, and for how long it may stay full.
#[derive(Debug, Clone, Copy)]
pub(crate) struct QueueLimits {
    /// Stanzas; at least 1.
    stanzas: usize,
    /// Bytes on the wire; a larger stanza still goes into an empty queue.
    bytes: usize,
    /// How long the queue may stay full before the session is closed.
    overflow_grace: Duration,
}

impl QueueLimits {
    pub(crate) fn of(config: &crate::RegistryConfig) -> Self {
        Self {
            stanzas: config.queue_depth.max(1),
            bytes: config.queue_bytes,
            overflow_grace: config.overflow_grace,
        }
    }
}

#[derive(Default)]
struct Outbox {
    /// In order; at most `QueueLimits::stanzas` and, unless it holds one stanza,
    /// `QueueLimits::bytes`. Recipients of one routed stanza share its bytes.
    queue: VecDeque<OutboundStanza>,
    /// The bytes of the stanzas in `queue`.
    queued_bytes: usize,
    /// The first close request; later ones are ignored.
    close: Option<CloseReason>,
    /// Set when the [`SessionReceiver`] is dropped.
    receiver_gone: bool,
    /// When the queue was first found full, for the slow-reader grace period.
    overflow_since: Option<Instant>,
    /// A connection resuming this session waits here for it (XEP-0198 §5).
    takeover: Option<TakeoverReply>,
}

#[derive(Debug, Default)]
struct ResourceState {
    priority: i8,
    /// Kept serialized: a parsed presence costs about a kilobyte per available session and is
    /// only read again when someone new must be told of it (probes, new resources).
    presence: Option<Box<str>>,
    is_interested: bool,
    /// The connection broke and the session waits to be resumed (XEP-0198 §5); it is still a
    /// connected resource.
    is_hibernating: bool,
}

impl Outbox {
    fn pop(&mut self) -> Option<OutboundStanza> {
        let stanza = self.queue.pop_front()?;
        self.queued_bytes -= stanza.len();
        Some(stanza)
    }

    /// Whether `stanza` does not fit (an empty queue takes any one stanza).
    fn is_full_for(&self, stanza: &OutboundStanza, limits: &QueueLimits) -> bool {
        !self.queue.is_empty()
            && (self.queue.len() >= limits.stanzas
                || self.queued_bytes + stanza.len() > limits.bytes)
    }
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
        limits: QueueLimits,
    ) -> (Self, SessionReceiver) {
        let session = Arc::new(Session {
            id,
            full_jid,
            origin,
            outbox: Mutex::new(Outbox::default()),
            wake: Notify::new(),
            state: Mutex::new(ResourceState::default()),
            directed: Mutex::new(BTreeSet::new()),
            limits,
        });
        let receiver = SessionReceiver {
            session: Arc::clone(&session),
            close_reported: false,
        };
        (Self { inner: session }, receiver)
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

    /// Queue a stanza for the client. Never waits: a full queue (by stanzas or by bytes) is
    /// `QueueFull`, and a queue that has stayed full for longer than the grace period also
    /// closes the session with `<policy-violation/>`, so a client that stops reading cannot
    /// hold memory forever.
    pub fn send(&self, stanza: OutboundStanza) -> Result<(), SendError> {
        let limits = &self.inner.limits;
        let mut outbox = lock(&self.inner.outbox);
        if outbox.receiver_gone {
            return Err(SendError::Closed);
        }
        if outbox.is_full_for(&stanza, limits) {
            let now = Instant::now();
            let since = *outbox.overflow_since.get_or_insert(now);
            if now.duration_since(since) >= limits.overflow_grace && outbox.close.is_none() {
                outbox.close = Some(CloseReason::StreamError {
                    condition: StreamErrorCondition::PolicyViolation,
                    text: Some(format!(
                        "outbound queue of {} stanzas or {} bytes stayed full; the client is not reading",
                        limits.stanzas, limits.bytes
                    )),
                });
                drop(outbox);
                self.inner.wake.notify_one();
            }
            return Err(SendError::QueueFull);
        }
        outbox.overflow_since = None;
        outbox.queued_bytes += stanza.len();
        outbox.queue.push_back(stanza);
        drop(outbox);
        self.inner.wake.notify_one();
        Ok(())
    }

    /// Ask the connection task to end the session. The first reason wins.
    pub fn close(&self, reason: CloseReason) {
        let mut outbox = lock(&self.inner.outbox);
        if outbox.close.is_none() {
            outbox.close = Some(reason);
            drop(outbox);
            self.inner.wake.notify_one();
        }
    }

    /// Whether someone asked this session to close.
    pub fn is_closing(&self) -> bool {
        lock(&self.inner.outbox).close.is_some()
    }

    /// Ask the connection holding this session to hand it over to `reply` (XEP-0198 §5). A
    /// newer request replaces an older one, whose waiter then sees its channel closed.
    pub(crate) fn request_takeover(&self, reply: TakeoverReply) {
        let mut outbox = lock(&self.inner.outbox);
        if outbox.receiver_gone {
            return;
        }
        outbox.takeover = Some(reply);
        drop(outbox);
        self.inner.wake.notify_one();
    }

    /// Record whether the session is hibernating (its connection broke; XEP-0198 §5).
    pub fn set_hibernating(&self, hibernating: bool) {
        lock(&self.inner.state).is_hibernating = hibernating;
    }

    /// Whether the session is hibernating: bound and resumable, with no connection.
    pub fn is_hibernating(&self) -> bool {
        lock(&self.inner.state).is_hibernating
    }

    /// How many more stanzas the outbound queue takes before [`SessionHandle::send`] fails
    /// with [`SendError::QueueFull`] (0 once the session has ended); the byte bound may stop
    /// it sooner.
    pub fn queue_room(&self) -> usize {
        let outbox = lock(&self.inner.outbox);
        if outbox.receiver_gone {
            return 0;
        }
        self.inner.limits.stanzas.saturating_sub(outbox.queue.len())
    }

    /// Stanzas waiting in the outbound queue (for the metrics endpoint).
    pub fn queued_stanzas(&self) -> usize {
        lock(&self.inner.outbox).queue.len()
    }

    /// Bytes of the stanzas waiting in the outbound queue.
    #[cfg(test)]
    fn queued_bytes(&self) -> usize {
        lock(&self.inner.outbox).queued_bytes
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

    /// Remember that directed available presence went to `jid` (RFC 6121 §4.6.2). False, and
    /// nothing remembered, when `max` other recipients are remembered already.
    pub fn add_directed(&self, jid: &str, max: usize) -> bool {
        let mut directed = lock(&self.inner.directed);
        if directed.contains(jid) {
            return true;
        }
        if directed.len() >= max {
            return false;
        }
        directed.insert(jid.into());
        true
    }

    /// Forget `jid` after directed unavailable presence went to it.
    pub fn remove_directed(&self, jid: &str) {
        lock(&self.inner.directed).remove(jid);
    }

    /// Every directed-presence recipient, forgetting them (on unavailable or disconnect).
    pub fn take_directed(&self) -> BTreeSet<Box<str>> {
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn session_with(bytes: usize) -> (SessionHandle, SessionReceiver) {
        SessionHandle::new(
            "alice@localhost/phone".parse().expect("jid"),
            uuid::Uuid::nil(),
            None,
            QueueLimits {
                stanzas: 4,
                bytes,
                overflow_grace: Duration::from_secs(60),
            },
        )
    }

    fn session() -> (SessionHandle, SessionReceiver) {
        session_with(1 << 20)
    }

    fn message(id: &str) -> OutboundStanza {
        let element: Element = format!("<message xmlns='jabber:client' id='{id}'/>")
            .parse()
            .expect("message parses");
        OutboundStanza::new(&element)
    }

    #[test]
    fn the_queue_is_bounded_in_bytes_but_takes_one_stanza_of_any_size() {
        let one = message("1").len();
        let (handle, mut receiver) = session_with(2 * one);
        let big = OutboundStanza::new(
            &format!(
                "<message xmlns='jabber:client'><body>{}</body></message>",
                "x".repeat(10 * one)
            )
            .parse::<Element>()
            .expect("parses"),
        );
        handle.send(big.clone()).expect("an empty queue takes it");
        assert_eq!(handle.send(message("1")), Err(SendError::QueueFull));
        assert_eq!(handle.queued_bytes(), big.len());
        assert_eq!(receiver.try_recv(), Some(big));
        assert_eq!(handle.queued_bytes(), 0);
        handle.send(message("1")).expect("fits");
        handle.send(message("2")).expect("fits exactly");
        assert_eq!(handle.send(message("3")), Err(SendError::QueueFull));
        assert_eq!(handle.queued_stanzas(), 2);
        assert_eq!(handle.queued_bytes(), 2 * one);
    }

    #[test]
    fn recipients_share_the_bytes_of_one_stanza() {
        let (first, mut first_rx) = session();
        let (second, mut second_rx) = session();
        let stanza = message("shared");
        first.send(stanza.clone()).expect("queued");
        second.send(stanza.clone()).expect("queued");
        let a = first_rx.try_recv().expect("queued");
        let b = second_rx.try_recv().expect("queued");
        assert!(std::ptr::eq(a.bytes(), b.bytes()));
        assert!(std::ptr::eq(a.bytes(), stanza.bytes()));
    }

    #[tokio::test]
    async fn stanzas_queued_before_a_close_come_first_and_the_close_once() {
        let (handle, mut receiver) = session();
        handle.send(message("1")).expect("queued");
        handle.send(message("2")).expect("queued");
        handle.close(CloseReason::Graceful);
        assert_eq!(receiver.next().await, SessionEvent::Stanza(message("1")));
        assert_eq!(receiver.next().await, SessionEvent::Stanza(message("2")));
        assert_eq!(
            receiver.next().await,
            SessionEvent::Close(CloseReason::Graceful)
        );
        let again = tokio::time::timeout(Duration::from_millis(50), receiver.next()).await;
        assert!(again.is_err(), "the close is reported once: {again:?}");
        handle.send(message("3")).expect("still queued");
        assert_eq!(receiver.next().await, SessionEvent::Stanza(message("3")));
    }

    #[tokio::test]
    async fn a_waiting_receiver_wakes_for_a_stanza_from_another_task() {
        let (handle, mut receiver) = session();
        let sender = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            handle.send(message("late")).expect("queued");
            handle
        });
        let event = tokio::time::timeout(Duration::from_secs(5), receiver.next())
            .await
            .expect("woken");
        assert_eq!(event, SessionEvent::Stanza(message("late")));
        drop(sender.await.expect("sender task"));
    }

    #[tokio::test]
    async fn close_requested_resolves_only_after_a_close() {
        let (handle, receiver) = session();
        handle.send(message("1")).expect("queued");
        let early = tokio::time::timeout(Duration::from_millis(50), receiver.close_requested());
        assert!(early.await.is_err(), "a stanza is not a close request");
        assert!(!receiver.is_closing());
        handle.close(CloseReason::Graceful);
        tokio::time::timeout(Duration::from_secs(5), receiver.close_requested())
            .await
            .expect("resolved");
        assert!(receiver.is_closing());
    }

    #[test]
    fn sends_fail_once_the_receiver_is_gone() {
        let (handle, receiver) = session();
        handle.send(message("1")).expect("queued");
        drop(receiver);
        assert_eq!(handle.send(message("2")), Err(SendError::Closed));
        assert_eq!(
            handle.queued_stanzas(),
            0,
            "the queue went with the receiver"
        );
    }

    #[test]
    fn directed_recipients_are_a_set_with_a_cap() {
        let (handle, _receiver) = session();
        assert!(handle.add_directed("a@localhost", 2));
        assert!(handle.add_directed("a@localhost", 2), "already there");
        assert!(handle.add_directed("b@localhost/r", 2));
        assert!(!handle.add_directed("c@localhost", 2), "over the cap");
        assert!(
            handle.add_directed("a@localhost", 2),
            "a known one is still fine"
        );
        handle.remove_directed("a@localhost");
        assert!(handle.add_directed("c@localhost", 2), "room again");
        let taken: Vec<String> = handle
            .take_directed()
            .into_iter()
            .map(String::from)
            .collect();
        assert_eq!(taken, ["b@localhost/r", "c@localhost"]);
        assert!(handle.take_directed().is_empty());
    }

    #[test]
    fn idle_release_frees_an_empty_queue_only() {
        let (handle, mut receiver) = session();
        for id in ["1", "2", "3"] {
            handle.send(message(id)).expect("queued");
        }
        receiver.release_idle_memory();
        assert_eq!(handle.queued_stanzas(), 3, "nothing queued is dropped");
        while receiver.try_recv().is_some() {}
        assert!(lock(&handle.inner.outbox).queue.capacity() > 0);
        receiver.release_idle_memory();
        assert_eq!(lock(&handle.inner.outbox).queue.capacity(), 0);
    }
}
