//! One task per connection: owns the socket and the TLS session and drives a `C2sStream`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use starling_registry::{BindRefusal, CloseReason, SessionHandle, SessionReceiver};
use starling_storage::AccountStore as _;
use starling_stream::{Action, C2sStream, Input, Transport};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tracing::{debug, info, warn};

use crate::ids::SystemIds;
use crate::server::Shared;

/// Size of one socket read. The parser enforces stanza limits on each chunk as it arrives.
const READ_CHUNK_BYTES: usize = 16 * 1024;

/// How a connection arrived.
#[derive(Debug, Clone, Copy)]
pub enum ListenerKind {
    /// Plain TCP, STARTTLS later.
    StartTls,
    /// TLS from the first byte (XEP-0368).
    DirectTls,
}

/// Serve one accepted connection until it closes.
pub async fn serve(
    shared: Arc<Shared>,
    socket: TcpStream,
    peer: SocketAddr,
    kind: ListenerKind,
    shutdown: watch::Receiver<bool>,
) {
    let session_id = uuid::Uuid::now_v7();
    let span = tracing::info_span!("c2s", session = %session_id, %peer);
    // The bound session, once there is one; kept across STARTTLS and removed when the task ends,
    // however it ends.
    let mut session: Option<(SessionHandle, SessionReceiver)> = None;
    let result = tracing::Instrument::instrument(
        run(&shared, socket, kind, shutdown, session_id, &mut session),
        span,
    )
    .await;
    if let Some((handle, _receiver)) = session {
        shared.router.session_ended(&handle).await;
        debug!(session = %session_id, jid = %handle.full_jid(), "session removed");
    }
    if let Err(err) = result {
        debug!(session = %session_id, %peer, error = %err, "connection ended with an I/O error");
    }
}

enum Next {
    Closed,
    StartTls(TcpStream),
}

/// Per-connection context the drive loop needs besides the socket and the engine.
struct Context<'a> {
    shared: &'a Shared,
    shutdown: watch::Receiver<bool>,
    session_id: uuid::Uuid,
    session: &'a mut Option<(SessionHandle, SessionReceiver)>,
}

async fn run(
    shared: &Shared,
    socket: TcpStream,
    kind: ListenerKind,
    shutdown: watch::Receiver<bool>,
    session_id: uuid::Uuid,
    session: &mut Option<(SessionHandle, SessionReceiver)>,
) -> std::io::Result<()> {
    let config = Arc::clone(&shared.stream_config);
    let mut cx = Context {
        shared,
        shutdown,
        session_id,
        session,
    };
    match kind {
        ListenerKind::StartTls => {
            let mut engine = C2sStream::new(config, Transport::Plain, Box::new(SystemIds));
            match drive(&mut cx, &mut engine, PlainSocket(socket)).await? {
                Next::Closed => Ok(()),
                Next::StartTls(socket) => {
                    let Some(tls) = handshake(shared, socket).await else {
                        engine.handle(Input::TlsFailed);
                        return Ok(());
                    };
                    let info = shared.tls.session_info(tls.get_ref().1);
                    engine.handle(Input::TlsEstablished(info));
                    drive(&mut cx, &mut engine, TlsSocket(tls))
                        .await
                        .map(|_| ())
                }
            }
        }
        ListenerKind::DirectTls => {
            let Some(tls) = handshake(shared, socket).await else {
                return Ok(());
            };
            let info = shared.tls.session_info(tls.get_ref().1);
            let mut engine =
                C2sStream::new(config, Transport::DirectTls(info), Box::new(SystemIds));
            drive(&mut cx, &mut engine, TlsSocket(tls))
                .await
                .map(|_| ())
        }
    }
}

async fn handshake(
    shared: &Shared,
    socket: TcpStream,
) -> Option<tokio_rustls::server::TlsStream<TcpStream>> {
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::clone(&shared.tls.server_config));
    let timeout = Duration::from_secs(shared.tls_handshake_timeout_secs);
    match tokio::time::timeout(timeout, acceptor.accept(socket)).await {
        Ok(Ok(tls)) => Some(tls),
        Ok(Err(err)) => {
            warn!(error = %err, "TLS handshake failed");
            None
        }
        Err(_) => {
            warn!(
                timeout_secs = shared.tls_handshake_timeout_secs,
                "TLS handshake timed out"
            );
            None
        }
    }
}

/// The socket types a stream runs over, with the one thing that differs: giving the TCP
/// socket back for STARTTLS.
trait Socket: AsyncRead + AsyncWrite + Unpin {
    fn into_tcp(self) -> Option<TcpStream>;
}

struct PlainSocket(TcpStream);
struct TlsSocket(tokio_rustls::server::TlsStream<TcpStream>);

impl Socket for PlainSocket {
    fn into_tcp(self) -> Option<TcpStream> {
        Some(self.0)
    }
}

impl Socket for TlsSocket {
    fn into_tcp(self) -> Option<TcpStream> {
        None
    }
}

macro_rules! delegate_io {
    ($ty:ty) => {
        impl AsyncRead for $ty {
            fn poll_read(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                buf: &mut tokio::io::ReadBuf<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                std::pin::Pin::new(&mut self.get_mut().0).poll_read(cx, buf)
            }
        }
        impl AsyncWrite for $ty {
            fn poll_write(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                buf: &[u8],
            ) -> std::task::Poll<std::io::Result<usize>> {
                std::pin::Pin::new(&mut self.get_mut().0).poll_write(cx, buf)
            }
            fn poll_flush(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                std::pin::Pin::new(&mut self.get_mut().0).poll_flush(cx)
            }
            fn poll_shutdown(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                std::pin::Pin::new(&mut self.get_mut().0).poll_shutdown(cx)
            }
        }
    };
}
delegate_io!(PlainSocket);
delegate_io!(TlsSocket);

/// Run the engine over one socket until it closes or asks for STARTTLS.
async fn drive<S: Socket>(
    cx: &mut Context<'_>,
    engine: &mut C2sStream,
    mut socket: S,
) -> std::io::Result<Next> {
    let mut buf = vec![0u8; READ_CHUNK_BYTES];
    if *cx.shutdown.borrow() {
        engine.handle(Input::Shutdown);
    }
    loop {
        while let Some(action) = engine.poll_action() {
            match action {
                Action::Write(bytes) => socket.write_all(&bytes).await?,
                Action::StartTls => {
                    socket.flush().await?;
                    return Ok(match socket.into_tcp() {
                        Some(tcp) => Next::StartTls(tcp),
                        None => Next::Closed,
                    });
                }
                Action::LookupCredentials(jid) => {
                    let input = match cx.shared.store.credentials(&jid).await {
                        Ok(creds) => Input::Credentials(creds),
                        Err(err) => {
                            tracing::error!(%jid, error = %err, "credential lookup failed");
                            Input::CredentialsUnavailable
                        }
                    };
                    // PLAIN runs PBKDF2 here; let the runtime move other tasks off this thread.
                    tokio::task::block_in_place(|| engine.handle(input));
                }
                Action::Authenticated(jid) => info!(%jid, "authenticated"),
                Action::Bind(full_jid) => {
                    let answer = bind(cx, full_jid);
                    engine.handle(Input::Bound(answer));
                }
                Action::Route(stanza) => {
                    if let Some((handle, _)) = cx.session.as_ref() {
                        cx.shared.router.route(handle, stanza).await;
                    }
                }
                Action::AuthFailed(failure) => {
                    warn!(condition = failure.element_name(), "SASL failure")
                }
                Action::StreamError(condition) => {
                    warn!(condition = condition.name(), "stream error")
                }
                Action::Close => {
                    socket.flush().await?;
                    // Best effort: the peer may already be gone.
                    let _ = socket.shutdown().await;
                    return Ok(Next::Closed);
                }
            }
        }
        if engine.is_closed() {
            return Ok(Next::Closed);
        }
        tokio::select! {
            read = socket.read(&mut buf) => match read {
                Ok(0) | Err(_) => engine.handle(Input::PeerClosed),
                Ok(n) => engine.handle(Input::Bytes(buf.get(..n).unwrap_or_default())),
            },
            event = next_session_event(cx.session) => match event {
                SessionEvent::Stanza(stanza) => engine.handle(Input::Deliver(stanza)),
                SessionEvent::Close(CloseReason::StreamError { condition, text }) => {
                    engine.handle(Input::Close(Some((condition, text))));
                }
                SessionEvent::Close(CloseReason::Graceful) => engine.handle(Input::Close(None)),
            },
            changed = cx.shutdown.changed() => {
                if changed.is_err() || *cx.shutdown.borrow() {
                    engine.handle(Input::Shutdown);
                }
            }
        }
    }
}

/// Register the bound resource; the registry applies the conflict policy and resource limit.
fn bind(cx: &mut Context<'_>, full_jid: jid::FullJid) -> Result<(), starling_bind::BindError> {
    let registry = cx.shared.router.registry();
    let (handle, receiver) = registry.new_session(full_jid.clone(), cx.session_id);
    match registry.bind(&handle) {
        Ok(replaced) => {
            if let Some(old) = replaced {
                info!(jid = %full_jid, replaced = %old.id(), "resource conflict: the old session is closed");
            }
            info!(jid = %full_jid, "resource bound");
            *cx.session = Some((handle, receiver));
            Ok(())
        }
        Err(refusal) => {
            warn!(jid = %full_jid, reason = %refusal, "bind refused");
            Err(match refusal {
                BindRefusal::Conflict => starling_bind::BindError::Conflict,
                BindRefusal::ResourceConstraint => starling_bind::BindError::ResourceConstraint,
                BindRefusal::UnknownHost => starling_bind::BindError::NotAllowed,
            })
        }
    }
}

enum SessionEvent {
    Stanza(minidom::Element),
    Close(CloseReason),
}

/// The next stanza or close request for the bound session; never resolves before binding.
async fn next_session_event(
    session: &mut Option<(SessionHandle, SessionReceiver)>,
) -> SessionEvent {
    let Some((_, receiver)) = session.as_mut() else {
        return std::future::pending().await;
    };
    tokio::select! {
        stanza = receiver.stanzas.recv() => match stanza {
            Some(stanza) => SessionEvent::Stanza(stanza),
            // The session holds a sender itself, so the channel cannot close under it.
            None => std::future::pending().await,
        },
        changed = receiver.close.changed() => {
            let reason = receiver.close.borrow_and_update().clone();
            match (changed, reason) {
                (Ok(()), Some(reason)) => SessionEvent::Close(reason),
                _ => std::future::pending().await,
            }
        }
    }
}
