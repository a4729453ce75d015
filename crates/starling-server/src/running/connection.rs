//! One task per connection: owns the socket and the TLS session and drives a `C2sStream`.
//!
//! Besides moving bytes, the task keeps the connection's timers (authentication deadline, idle
//! ping, ping answer; `starling_limits::Deadlines` does their arithmetic) and its read token
//! bucket. *Why the timers live here and not in the
//! engine (STYLE.md §2 suggests `Input::Tick`):* every deadline is measured from an event only
//! the shell sees with a timestamp — the accept, the last socket read — so an engine clock
//! would need a time on every input for no gain in testability. The engine keeps the protocol
//! part: what an idle probe is (`Input::IdleProbe`) and how a timeout ends the stream
//! (`Input::TimedOut`), and those are unit-tested there.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use starling_limits::{Deadline, Deadlines};
use starling_logging::{EndReason, SessionRecord};
use starling_metrics::ListenerKind;
use starling_registry::{
    CloseReason, Handover, SessionEvent, SessionHandle, SessionOrigin, SessionReceiver,
    StreamTransport, TakeoverReply,
};
use starling_storage::AccountStore as _;
use starling_stream::{
    Action, C2sStream, Input, ResumeOutcome, SessionState, SmFailure, SmSession, Transport,
};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::ids::SystemIds;
use super::limits::{Admission, Refusal, TokenBucket};
use super::metrics::{self, SessionGauge};
use super::shared::{Live, Shared};

/// How long the last writes of a session that was asked to close may block on a peer that
/// does not read.
const CLOSING_WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// Size of one socket read. The parser enforces stanza limits on each chunk as it arrives.
const READ_CHUNK_BYTES: usize = 4 * 1024;

thread_local! {
    /// The buffer socket reads go into. Connections wait for readability without a buffer
    /// and read synchronously, so one buffer per worker thread serves them all and an idle
    /// connection holds none.
    static READ_BUFFER: std::cell::RefCell<Box<[u8]>> =
        std::cell::RefCell::new(vec![0; READ_CHUNK_BYTES].into_boxed_slice());
}

/// Serve one accepted connection until it closes. `admission` is the outcome of the
/// per-address and unauthenticated-connection limits: a refused connection on the STARTTLS
/// port is sent our stream header and the stream error at once (RFC 6120 §4.9.1.1); on the
/// direct TLS port it is closed without a handshake, so refusals cost no TLS work. `held`
/// (the caller's connection permit, say) is dropped when the connection has ended.
///
/// The connection runs with the settings in force when it was accepted ([`Shared::live`]);
/// a SIGHUP reload later does not change them.
///
/// *Why this builds the state first and returns a future, rather than being an `async fn`:*
/// an idle connection is mostly its task, and a task's future is as large as its largest
/// state. Arguments of an `async fn` are stored for the future's whole life, and a value
/// moved from one future into another is stored in both, so everything the connection keeps
/// lives in one [`Connection`] allocation here and the futures hold a pointer to it.
pub fn serve(
    shared: Arc<Shared>,
    socket: TcpStream,
    peer: SocketAddr,
    kind: ListenerKind,
    shutdown: watch::Receiver<bool>,
    admission: Result<Admission, Refusal>,
    held: impl Send + 'static,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    let session_id = uuid::Uuid::now_v7();
    let span = tracing::info_span!("c2s", session = %session_id, %peer);
    let mut record = span.in_scope(|| SessionRecord::start(peer, kind.name()));
    if admission.is_err() {
        record.ending(EndReason::Refused);
    }
    let now = Instant::now();
    let live = shared.live();
    let limits = &live.connection_limits;
    let (admission, refusal) = match admission {
        Ok(admission) => (Some(admission), None),
        Err(refusal) => (None, Some(refusal)),
    };
    let bucket = TokenBucket::new(
        limits.read_bytes_per_sec_unauthenticated,
        limits.read_burst_bytes,
        now.into_std(),
    );
    let deadlines = Deadlines::new(limits, now.into_std());
    let cx = Context {
        shared,
        live,
        shutdown,
        session_id,
        session: None,
        takeover: None,
        record,
        gauge: SessionGauge::new(),
        origin: SessionOrigin {
            peer,
            connected_at: std::time::SystemTime::now(),
            transport: match kind {
                ListenerKind::StartTls => StreamTransport::Plain,
                ListenerKind::DirectTls => StreamTransport::DirectTls,
            },
        },
        admission,
        deadlines,
        bucket,
        key_upgrade: None,
    };
    let mut connection = Box::new(Connection {
        cx,
        engine: None,
        opening: Some(Opening {
            socket,
            kind,
            refusal,
        }),
    });
    let task = async move {
        let result = run(&mut connection).await;
        // The socket is gone; the engine's buffers go with it, its stream management state
        // stays with the session.
        let sm = connection
            .engine
            .take()
            .and_then(|mut engine| engine.take_sm_session());
        let cx = &mut connection.cx;
        // The bound session, if there was one, is resumed elsewhere, kept for resumption or
        // removed, however the connection ended.
        if let Some((handle, receiver)) = cx.session.take() {
            Box::pin(after_connection(cx, handle, receiver, sm)).await;
        }
        let Connection { cx, .. } = *connection;
        let reason = cx.record.finish(result.as_ref().err());
        metrics::session_ended(reason.name());
        drop(held);
    };
    tracing::Instrument::instrument(task, span)
}

/// What a connection keeps from its accept to its end.
struct Connection {
    cx: Context,
    /// The engine, once the transport it starts on is known (after the handshake on the
    /// direct TLS port).
    engine: Option<C2sStream>,
    /// The accepted socket, until [`run`] takes it.
    opening: Option<Opening>,
}

/// An accepted socket and how it arrived.
struct Opening {
    socket: TcpStream,
    kind: ListenerKind,
    /// Set when the admission limits refused the connection.
    refusal: Option<Refusal>,
}

enum Next {
    Closed,
    StartTls(TcpStream),
}

/// Per-connection context the drive loop needs besides the socket and the engine.
struct Context {
    shared: Arc<Shared>,
    /// This connection's settings, fixed at accept.
    live: Arc<Live>,
    shutdown: watch::Receiver<bool>,
    session_id: uuid::Uuid,
    /// The bound session, once there is one; kept across STARTTLS.
    session: Option<(SessionHandle, SessionReceiver)>,
    /// A connection resuming this session waits here for it (XEP-0198 §5).
    takeover: Option<TakeoverReply>,
    /// What the session's end record will say.
    record: SessionRecord,
    /// This connection's place in `starling_sessions`.
    gauge: SessionGauge,
    /// Peer, accept time and transport, recorded with the session for `list-sessions`.
    origin: SessionOrigin,
    /// The connection's per-address and unauthenticated slots; `None` when refused.
    admission: Option<Admission>,
    /// The authentication deadline, the idle ping and its answer, and releasing idle memory.
    deadlines: Deadlines,
    /// Read budget (`limits.read_bytes_per_sec*`).
    bucket: TokenBucket,
    /// Keys a matching PLAIN check derived for hashes the account lacked, stored when the
    /// engine reports the stream authenticated; boxed, as it is rarely there.
    key_upgrade: Option<Box<starling_sasl::KeyUpgrade>>,
}

impl Context {
    fn peer(&self) -> SocketAddr {
        self.origin.peer
    }
}

async fn run(connection: &mut Connection) -> std::io::Result<()> {
    let Some(Opening {
        socket,
        kind,
        refusal,
    }) = connection.opening.take()
    else {
        return Ok(());
    };
    let cx = &mut connection.cx;
    let live = Arc::clone(&cx.live);
    // One engine and one TLS drive call for both listener kinds, so the task's future holds
    // a single copy of each.
    let (transport, opened) = match kind {
        ListenerKind::StartTls => (Transport::Plain, Opened::Plain(socket)),
        ListenerKind::DirectTls => {
            if refusal.is_some() {
                return Ok(());
            }
            let Some(tls) = Box::pin(handshake(&live, socket)).await else {
                cx.record.ending(EndReason::TlsFailed);
                return Ok(());
            };
            let info = super::tls::session_info(&live.tls, tls.info());
            (Transport::DirectTls(info), Opened::Tls(tls))
        }
    };
    let config = Arc::clone(&live.stream_config);
    let engine = connection
        .engine
        .insert(C2sStream::new(config, transport, Box::new(SystemIds)));
    let tls = match opened {
        Opened::Tls(tls) => tls,
        Opened::Plain(socket) => {
            if let Some(refusal) = refusal {
                let (condition, text) = refusal.stream_error();
                engine.handle(Input::Close(Some((condition, Some(text)))));
            }
            // Boxed: the plain stage is short, and its future would otherwise add its
            // size to the TLS stage's for the rest of the connection.
            let Next::StartTls(socket) = Box::pin(drive(cx, engine, socket)).await? else {
                return Ok(());
            };
            let Some(tls) = Box::pin(handshake(&live, socket)).await else {
                cx.record.ending(EndReason::TlsFailed);
                engine.handle(Input::TlsFailed);
                return Ok(());
            };
            engine.handle(Input::TlsEstablished(super::tls::session_info(
                &live.tls,
                tls.info(),
            )));
            cx.origin.transport = StreamTransport::StartTls;
            tls
        }
    };
    drop(live);
    drive(cx, engine, tls).await.map(|_| ())
}

/// A connection after its listener's own start: plain TCP (STARTTLS may follow) or already
/// TLS (XEP-0368).
enum Opened {
    Plain(TcpStream),
    Tls(Box<starling_tls::TlsStream>),
}

/// The TLS handshake with the certificate current when the connection was accepted (SIGHUP
/// may replace it for later connections; the same `TlsSetup` then gives this session's channel
/// bindings).
async fn handshake(live: &Live, socket: TcpStream) -> Option<Box<starling_tls::TlsStream>> {
    let config = Arc::clone(&live.tls.server_config);
    let timeout = live.connection_limits.tls_handshake_timeout;
    match tokio::time::timeout(timeout, starling_tls::accept(config, socket)).await {
        Ok(Ok(tls)) => Some(Box::new(tls)),
        Ok(Err(err)) => {
            warn!(error = %err, "TLS handshake failed");
            None
        }
        Err(_) => {
            warn!(timeout_secs = timeout.as_secs(), "TLS handshake timed out");
            None
        }
    }
}

/// The socket types a stream runs over, with the one thing that differs: giving the TCP
/// socket back for STARTTLS. The TLS stream is boxed: rustls's connection state is over a
/// kilobyte, and kept inline it would be stored in the connection task's futures (and copied
/// between them) rather than once.
trait Socket: AsyncRead + AsyncWrite + Unpin {
    fn into_tcp(self) -> Option<TcpStream>;
    /// The TCP socket underneath, to wait on for readability.
    fn tcp(&self) -> &TcpStream;
}

impl Socket for TcpStream {
    fn into_tcp(self) -> Option<TcpStream> {
        Some(self)
    }
    fn tcp(&self) -> &TcpStream {
        self
    }
}

impl Socket for Box<starling_tls::TlsStream> {
    fn into_tcp(self) -> Option<TcpStream> {
        None
    }
    fn tcp(&self) -> &TcpStream {
        starling_tls::TlsStream::tcp(self)
    }
}

/// What one read attempt found.
enum ReadOutcome {
    /// This many bytes were handed to the engine.
    Bytes(usize),
    /// End of stream (`None`) or a socket error: the peer is gone.
    Closed(Option<std::io::Error>),
    /// Nothing now; wait for the socket to become readable.
    WouldBlock,
}

/// Read what the socket has now, without waiting, into the thread's [`READ_BUFFER`], and hand
/// it to the engine. The TLS layer may hold decrypted bytes the TCP socket no longer signals,
/// so callers keep reading until this reports [`ReadOutcome::WouldBlock`] before they wait
/// for readability again.
fn read_now<S: Socket>(socket: &mut S, engine: &mut C2sStream) -> ReadOutcome {
    READ_BUFFER.with_borrow_mut(|buffer| {
        let mut read_buf = tokio::io::ReadBuf::new(buffer);
        let mut task_cx = std::task::Context::from_waker(std::task::Waker::noop());
        match std::pin::Pin::new(&mut *socket).poll_read(&mut task_cx, &mut read_buf) {
            std::task::Poll::Pending => ReadOutcome::WouldBlock,
            std::task::Poll::Ready(Err(err)) => ReadOutcome::Closed(Some(err)),
            std::task::Poll::Ready(Ok(())) => match read_buf.filled() {
                [] => ReadOutcome::Closed(None),
                bytes => {
                    engine.handle(Input::Bytes(bytes));
                    ReadOutcome::Bytes(bytes.len())
                }
            },
        }
    })
}

/// Run the engine over one socket until it closes or asks for STARTTLS.
async fn drive<S: Socket>(
    cx: &mut Context,
    engine: &mut C2sStream,
    mut socket: S,
) -> std::io::Result<Next> {
    // Whether the socket may have bytes we have not read; until a read would block, reading
    // comes before waiting for readability.
    let mut may_have_input = true;
    // When the pending ack request is due, once stanzas wait for one.
    let mut ack_requested_at: Option<Instant> = None;
    if *cx.shutdown.borrow() {
        cx.record.ending(EndReason::Shutdown);
        engine.handle(Input::Shutdown);
    }
    loop {
        // `let else` rather than `while let`: the action is moved into `act`, so the
        // future does not keep a second copy of it across the await.
        loop {
            let Some(action) = engine.poll_action() else {
                break;
            };
            match act(cx, engine, &mut socket, action).await? {
                Flow::Continue => {}
                Flow::StartTls => {
                    return Ok(match socket.into_tcp() {
                        Some(tcp) => Next::StartTls(tcp),
                        None => Next::Closed,
                    });
                }
                Flow::Closed => return Ok(Next::Closed),
            }
        }
        if engine.is_closed() {
            return Ok(Next::Closed);
        }
        let now = Instant::now();
        let read_resumes_at = cx.bucket.resume_at(now.into_std()).map(Instant::from_std);
        if may_have_input && read_resumes_at.is_none() {
            match read_now(&mut socket, engine) {
                ReadOutcome::Bytes(n) => {
                    cx.deadlines.read(now.into_std());
                    cx.bucket.consume(n, now.into_std());
                    // Let other tasks run between reads of a fast sender.
                    tokio::task::consume_budget().await;
                }
                ReadOutcome::Closed(error) => {
                    cx.record.ending(match &error {
                        None => EndReason::Disconnected,
                        Some(err) => EndReason::of_read_error(err),
                    });
                    engine.handle(Input::PeerClosed);
                }
                ReadOutcome::WouldBlock => may_have_input = false,
            }
            continue;
        }
        // One timer for whichever comes first: the read budget refilling (over budget, the
        // bytes wait in the kernel) or the connection's next deadline.
        let is_bound = matches!(engine.session_state(), SessionState::Bound { .. });
        let (deadline, timer) = cx.deadlines.next(is_bound);
        let deadline = Instant::from_std(deadline);
        let (wake_at, timer) = match read_resumes_at {
            Some(resume_at) if resume_at < deadline => (resume_at, None),
            _ => (deadline, Some(timer)),
        };
        // XEP-0198 §4: stanzas the client has not acknowledged and no <r/> asked about yet get
        // one after the ack delay, so a quiet client still releases them.
        let ack_due = if engine.wants_ack_request() {
            *ack_requested_at.get_or_insert_with(|| now + ack_delay(cx))
        } else {
            ack_requested_at = None;
            Instant::now() + Duration::from_secs(86_400)
        };
        let (wake_at, timer) = if ack_requested_at.is_some() && ack_due < wake_at {
            (ack_due, Some(Wake::AckRequest))
        } else {
            (wake_at, timer.map(Wake::Deadline))
        };
        tokio::select! {
            // Readiness through the socket's own waker slot (the one reads use), which
            // costs the future nothing, where `readable()` would hold a waiter node.
            readable = std::future::poll_fn(|task_cx| socket.tcp().poll_read_ready(task_cx)),
                if read_resumes_at.is_none() => match readable {
                Ok(()) => may_have_input = true,
                Err(err) => {
                    cx.record.ending(EndReason::of_read_error(&err));
                    engine.handle(Input::PeerClosed);
                }
            },
            () = tokio::time::sleep_until(wake_at) => match timer {
                None => {}
                Some(Wake::Deadline(timer)) => on_timer(cx, engine, timer),
                Some(Wake::AckRequest) => {
                    ack_requested_at = None;
                    engine.handle(Input::RequestAck);
                }
            },
            event = next_session_event(&mut cx.session) => {
                cx.deadlines.delivered(Instant::now().into_std());
                match event {
                    SessionEvent::Stanza(stanza) => {
                        let taken = stanza.len();
                        metrics::stanza_sent(&stanza);
                        engine.handle(Input::Deliver(stanza));
                        // And more of what is queued now: the engine joins adjacent writes,
                        // so a burst goes to the socket in one write, not one per stanza.
                        if let Some((_, receiver)) = cx.session.as_mut() {
                            deliver_queued(receiver, engine, taken);
                        }
                    }
                    SessionEvent::Close(CloseReason::StreamError { condition, text }) => {
                        cx.record.ending(EndReason::Kicked(Some(condition.name())));
                        engine.handle(Input::Close(Some((condition, text))));
                    }
                    SessionEvent::Close(CloseReason::Graceful) => {
                        cx.record.ending(EndReason::Kicked(None));
                        engine.handle(Input::Close(None));
                    }
                    SessionEvent::TakeOver => {
                        // XEP-0198 §5: a new connection resumes this session; this one ends
                        // without a word (the client has moved on) and hands it over.
                        cx.record.ending(EndReason::Resumed);
                        cx.takeover = cx.session.as_mut().and_then(|(_, r)| r.take_takeover());
                        engine.handle(Input::PeerClosed);
                    }
                }
            }
            changed = cx.shutdown.changed() => {
                if changed.is_err() || *cx.shutdown.borrow() {
                    cx.record.ending(EndReason::Shutdown);
                    engine.handle(Input::Shutdown);
                }
            }
        }
    }
}

/// Which timer woke the drive loop.
enum Wake {
    Deadline(Deadline),
    AckRequest,
}

/// How long unacknowledged stanzas wait before the server asks for an ack (XEP-0198 §4).
fn ack_delay(cx: &Context) -> Duration {
    cx.live
        .stream_config
        .stream_management
        .map_or(Duration::from_secs(5), |sm| {
            Duration::from_millis(u64::from(sm.request_after_ms))
        })
}

/// What the drive loop does after an action.
enum Flow {
    Continue,
    /// Hand the TCP socket to the TLS handshake.
    StartTls,
    /// The stream is closed.
    Closed,
}

/// Carry out one of the engine's actions.
///
/// Not an `async fn`: its argument would be copied into a local and the 120-byte action
/// stored twice in the future; an `async` block matches on the captured value in place.
#[allow(clippy::manual_async_fn)]
fn act<'a, S: Socket>(
    cx: &'a mut Context,
    engine: &'a mut C2sStream,
    socket: &'a mut S,
    action: Action,
) -> impl std::future::Future<Output = std::io::Result<Flow>> + 'a {
    async move {
        match action {
            Action::Write(bytes) => write(cx, socket, &bytes).await?,
            Action::StartTls => {
                socket.flush().await?;
                return Ok(Flow::StartTls);
            }
            Action::LookupCredentials(jid) => {
                let input = match Box::pin(cx.shared.store.credentials(&jid)).await {
                    Ok(creds) => Input::Credentials(creds),
                    Err(err) => {
                        tracing::error!(%jid, error = %err, "credential lookup failed");
                        Input::CredentialsUnavailable
                    }
                };
                engine.handle(input);
            }
            Action::CheckPassword(check) => {
                let (input, upgrade) = Box::pin(cx.shared.password_checks.run(check)).await;
                // Stored once the engine says whose stream this is (the next action).
                cx.key_upgrade = upgrade.map(Box::new);
                engine.handle(input);
            }
            Action::Authenticated(jid) => {
                info!(%jid, "authenticated");
                if let Some(upgrade) = cx.key_upgrade.take() {
                    store_key_upgrade(&cx.shared, jid.clone(), *upgrade);
                }
                cx.record.set_jid(&jid);
                cx.gauge.authenticated();
                metrics::auth_succeeded(engine.mechanism());
                if let Some(admission) = cx.admission.as_mut() {
                    admission.authenticated();
                }
                let rate = cx.live.connection_limits.read_bytes_per_sec;
                cx.bucket.set_rate(rate, Instant::now().into_std());
            }
            Action::Bind(full_jid) => {
                let answer = bind(cx, full_jid);
                let bound = answer.is_ok();
                engine.handle(Input::Bound(answer));
                if bound && let Some((handle, _)) = cx.session.as_ref() {
                    Box::pin(cx.shared.router.session_bound(handle)).await;
                }
            }
            Action::Route(stanza) => {
                metrics::stanza_received(stanza.kind());
                if let Some((handle, receiver)) = cx.session.as_mut() {
                    Box::pin(cx.shared.router.route(handle, stanza)).await;
                    // Take what is queued for us now (often the answer to this very
                    // stanza): one read can carry more stanzas than the queue holds, and
                    // answers to a client's own burst must not overflow its own queue.
                    deliver_queued(receiver, engine, 0);
                }
            }
            Action::StreamElement(element) => {
                if let Some((handle, receiver)) = cx.session.as_mut() {
                    Box::pin(cx.shared.router.stream_element(handle, &element)).await;
                    deliver_queued(receiver, engine, 0);
                }
            }
            Action::AuthFailed(failure) => {
                cx.key_upgrade = None;
                Box::pin(auth_failed(cx, failure)).await;
            }
            Action::StreamError(condition) => {
                cx.record.ending(EndReason::StreamError(condition.name()));
                warn!(peer = %cx.peer(), condition = condition.name(), "stream error")
            }
            Action::Close => {
                socket.flush().await?;
                // Best effort: the peer may already be gone.
                let _ = socket.shutdown().await;
                return Ok(Flow::Closed);
            }
            Action::SmEnabled(resumption) => {
                if let Some((handle, _)) = cx.session.as_ref() {
                    cx.shared
                        .router
                        .registry()
                        .make_resumable(&resumption.id, handle);
                    debug!(jid = %handle.full_jid(), "stream management enabled, resumable");
                }
            }
            Action::Resume { previd, h } => {
                let user = match engine.session_state() {
                    SessionState::Authenticated { user } => Some(user.clone()),
                    _ => None,
                };
                let outcome = Box::pin(resume(cx, user, &previd)).await;
                debug!(
                    h,
                    resumed = matches!(outcome, ResumeOutcome::Resumed { .. }),
                    "resumption asked for"
                );
                engine.handle(Input::Resumed(outcome));
            }
        }
        Ok(Flow::Continue)
    }
}

/// Stores the keys a PLAIN login derived for the hashes `jid` lacked, on a task of its own so
/// the login does not wait for the write; then asks for the host's offer to be counted again.
/// A failed write only means the next PLAIN login tries again.
fn store_key_upgrade(shared: &Arc<Shared>, jid: jid::BareJid, upgrade: starling_sasl::KeyUpgrade) {
    let shared = Arc::clone(shared);
    tokio::spawn(async move {
        match shared
            .store
            .add_missing_keys(&jid, &upgrade.verified, &upgrade.added)
            .await
        {
            Ok(added) if !added.is_empty() => {
                let hashes: Vec<&str> = added.iter().map(starling_sasl::ScramHash::name).collect();
                info!(%jid, hashes = ?hashes, "stored SCRAM keys derived at a PLAIN login");
                shared.offers.recount_soon();
            }
            Ok(_) => {
                debug!(%jid, "no SCRAM keys to add (the password changed, or a concurrent login added them)")
            }
            Err(err) => {
                warn!(%jid, error = %err, "cannot store SCRAM keys derived at a PLAIN login")
            }
        }
    });
}

/// Bytes of queued stanzas a connection hands its engine at once. The engine copies them into
/// its write buffer, which the socket may not take soon (a client that stops reading), so the
/// batch is bounded: the rest waits in the session's queue, shared with the other recipients
/// and bounded there, and the queue's overflow rule deals with a reader that never catches up.
const DELIVERY_BATCH_BYTES: usize = 64 * 1024;

/// Hand the engine what is queued for the session now, without waiting: whole stanzas until
/// [`DELIVERY_BATCH_BYTES`] (counting `taken`, already handed over) are reached.
fn deliver_queued(receiver: &mut SessionReceiver, engine: &mut C2sStream, mut taken: usize) {
    while taken < DELIVERY_BATCH_BYTES {
        let Some(stanza) = receiver.try_recv() else {
            return;
        };
        taken += stanza.len();
        metrics::stanza_sent(&stanza);
        engine.handle(Input::Deliver(stanza));
    }
}

/// A deadline from [`Deadlines::next`] has passed.
fn on_timer(cx: &mut Context, engine: &mut C2sStream, timer: Deadline) {
    match timer {
        Deadline::Auth => {
            warn!(
                peer = %cx.peer(),
                timeout_secs = cx.live.connection_limits.auth_timeout.as_secs(),
                "authentication not finished in time"
            );
            cx.record.ending(EndReason::Timeout);
            engine.handle(Input::TimedOut);
        }
        Deadline::Idle => {
            debug!("idle; pinging");
            cx.deadlines.pinged(Instant::now().into_std());
            engine.handle(Input::IdleProbe);
        }
        Deadline::PingAnswer => {
            warn!(peer = %cx.peer(), "no answer to the idle ping");
            cx.record.ending(EndReason::Timeout);
            engine.handle(Input::TimedOut);
        }
        Deadline::ReleaseIdleMemory => {
            cx.deadlines.released();
            engine.release_idle_memory();
            if let Some((_, receiver)) = cx.session.as_mut() {
                receiver.release_idle_memory();
            }
        }
    }
}

/// Write all of `bytes`. A peer that does not read blocks the write once the socket buffers
/// are full; if its session is asked to close meanwhile (its queue stayed full, see
/// `starling-registry`), the connection is dropped, since the stream error could not get
/// through either. Once a close was requested, each write (the stream error) gets
/// [`CLOSING_WRITE_TIMEOUT`].
async fn write<S: Socket>(cx: &mut Context, socket: &mut S, bytes: &[u8]) -> std::io::Result<()> {
    let is_closing = cx
        .session
        .as_ref()
        .is_some_and(|(_, receiver)| receiver.is_closing());
    // Flushed too: a TLS stream may keep the end of a write queued (when the socket was full)
    // until the next write, which an idle session may never make.
    let write_all = async {
        socket.write_all(bytes).await?;
        socket.flush().await
    };
    if is_closing {
        return match tokio::time::timeout(CLOSING_WRITE_TIMEOUT, write_all).await {
            Ok(result) => result,
            Err(_) => {
                warn!(peer = %cx.peer(), "closing a session that does not read");
                Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "the peer did not read its stream error",
                ))
            }
        };
    }
    tokio::select! {
        result = write_all => result,
        () = close_requested(&mut cx.session) => {
            warn!(peer = %cx.peer(), "closing a session that does not read");
            Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the peer stopped reading and its session was closed",
            ))
        }
    }
}

/// Resolves once someone asked the bound session to close; never before binding.
async fn close_requested(session: &mut Option<(SessionHandle, SessionReceiver)>) {
    let Some((_, receiver)) = session.as_ref() else {
        return std::future::pending().await;
    };
    receiver.close_requested().await;
}

/// A failed SASL attempt: count it against the peer's address and hold the `<failure/>` (the
/// engine's next action) back for the growing delay, so guessing passwords from one address
/// gets slower with every try (issue 7; the per-connection limit is the engine's).
async fn auth_failed(cx: &mut Context, failure: starling_sasl::SaslFailure) {
    metrics::auth_failed(failure);
    if failure == starling_sasl::SaslFailure::TemporaryAuthFailure {
        // Our storage failed; the peer did nothing wrong.
        warn!(peer = %cx.peer(), condition = failure.element_name(), "SASL failure");
        return;
    }
    let (failures, delay) = cx
        .shared
        .peer_limits
        .record_auth_failure(cx.peer().ip(), Instant::now().into_std());
    warn!(
        peer = %cx.peer(),
        condition = failure.element_name(),
        failures_from_address = failures,
        delay_ms = delay.as_millis() as u64,
        "SASL failure"
    );
    tokio::select! {
        () = tokio::time::sleep(delay) => {}
        _ = cx.shutdown.wait_for(|stopping| *stopping) => {}
    }
}

/// Register the bound resource; the registry applies the conflict policy and the per-account
/// resource limit, and, when an operator turned it on, `limits.max_sessions_per_ip` applies
/// first (RFC 6120 §7.6.2.1: both refusals are `resource-constraint`).
fn bind(cx: &mut Context, full_jid: jid::FullJid) -> Result<(), starling_bind::BindError> {
    if let Some(admission) = cx.admission.as_mut()
        && cx.shared.peer_limits.bind_session(admission).is_err()
    {
        warn!(jid = %full_jid, reason = "TooManySessionsFromAddress", "bind refused");
        return Err(starling_bind::BindError::ResourceConstraint);
    }
    let registry = cx.shared.router.registry();
    let (handle, receiver) =
        registry.new_session_from(full_jid.clone(), cx.session_id, cx.origin.clone());
    match registry.bind(&handle) {
        Ok(replaced) => {
            if let Some(old) = replaced {
                info!(jid = %full_jid, replaced = %old.id(), "resource conflict: the old session is closed");
            }
            info!(jid = %full_jid, "resource bound");
            cx.record.set_jid(&full_jid);
            cx.gauge.bound();
            cx.session = Some((handle, receiver));
            Ok(())
        }
        Err(refusal) => {
            if let Some(admission) = cx.admission.as_mut() {
                admission.unbound();
            }
            warn!(jid = %full_jid, reason = %refusal, "bind refused");
            Err(refusal.into())
        }
    }
}

/// How long a resuming connection waits for the old one to hand the session over. The old
/// connection answers at its next turn (a write blocked on a dead socket is abandoned for it),
/// so this only bounds a bug.
const TAKEOVER_TIMEOUT: Duration = Duration::from_secs(10);

/// XEP-0198 §5: take session `previd` over from the connection holding it (live or
/// hibernating), if it belongs to this account.
async fn resume(cx: &mut Context, user: Option<jid::BareJid>, previd: &str) -> ResumeOutcome {
    let Some(user) = user else {
        return ResumeOutcome::Failed(SmFailure::UnexpectedRequest);
    };
    let registry = Arc::clone(cx.shared.router.registry());
    let Some(answer) = registry.claim(previd, &user) else {
        return ResumeOutcome::Failed(SmFailure::ItemNotFound);
    };
    let handover = match tokio::time::timeout(TAKEOVER_TIMEOUT, answer).await {
        Ok(Ok(handover)) => handover,
        Ok(Err(_)) => return ResumeOutcome::Failed(SmFailure::ItemNotFound),
        Err(_) => {
            warn!(%user, "the connection holding a session did not hand it over in time");
            return ResumeOutcome::Failed(SmFailure::ItemNotFound);
        }
    };
    let Handover {
        handle,
        receiver,
        sm,
    } = handover;
    handle.set_hibernating(false);
    let full_jid = handle.full_jid().clone();
    info!(jid = %full_jid, "session resumed");
    cx.record.set_jid(&full_jid);
    cx.gauge.bound();
    Box::pin(
        cx.shared
            .router
            .session_event(starling_modules::SessionEvent::Resumed, &handle),
    )
    .await;
    cx.session = Some((handle, receiver));
    ResumeOutcome::Resumed {
        full_jid,
        session: sm,
    }
}

/// The connection is over and `handle` was its bound session: see
/// [`super::resumption::keep_or_end`].
async fn after_connection(
    cx: &mut Context,
    handle: SessionHandle,
    receiver: SessionReceiver,
    sm: Option<SmSession>,
) {
    let shared = Arc::clone(&cx.shared);
    let takeover = cx.takeover.take();
    super::resumption::keep_or_end(
        &shared,
        &mut cx.shutdown,
        handle,
        receiver,
        sm,
        takeover,
        None,
    )
    .await;
    debug!(session = %cx.session_id, "connection's session handled");
}

/// The next stanza or close request for the bound session; never resolves before binding.
async fn next_session_event(
    session: &mut Option<(SessionHandle, SessionReceiver)>,
) -> SessionEvent {
    let Some((_, receiver)) = session.as_mut() else {
        return std::future::pending().await;
    };
    receiver.next().await
}
