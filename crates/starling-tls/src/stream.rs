//! [`TlsStream`]: a server-side TLS session over a `TcpStream`, driven through rustls's
//! unbuffered API, and [`accept`], its handshake.
//!
//! Received ciphertext is read into a per-thread scratch buffer and decrypted there; the
//! connection keeps only what must outlive one call — bytes rustls has not consumed yet (an
//! incomplete record), plaintext the caller's buffer could not take, and ciphertext the socket
//! would not accept — each in a `Vec` that is freed once drained.

use std::cell::RefCell;
use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use rustls::server::{ServerConnectionData, UnbufferedServerConnection};
use rustls::unbuffered::{
    ConnectionState, EncodeError, EncodeTlsData, EncryptError, InsufficientSizeError,
    UnbufferedStatus, WriteTraffic,
};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::hooks::{self, Capture};
use crate::{HandshakeInfo, TlsError};

/// RFC 8446 §5.1 and RFC 5246 §6.2.1: a record header is five bytes.
const RECORD_HEADER_LEN: usize = 5;

/// The largest record body a peer may send. RFC 8446 §5.2 allows 2^14 + 256 bytes in TLS 1.3,
/// RFC 5246 §6.2.3 2^14 + 2048 in TLS 1.2; TLS 1.2 is enabled, and rustls accepts that much.
const MAX_CIPHERTEXT_LEN: usize = (1 << 14) + 2048;

/// One maximal record with its header: the scratch buffer's size, so any record that has begun
/// to arrive can be completed in it.
const MAX_RECORD_LEN: usize = RECORD_HEADER_LEN + MAX_CIPHERTEXT_LEN;

/// RFC 8446 §5.1: the largest plaintext fragment. Each `poll_write` encrypts at most this
/// much, one full record.
const MAX_PLAINTEXT_PER_WRITE: usize = 1 << 14;

/// Room for a record's header, AEAD tag and TLS 1.3 content type, used to size the first
/// attempt at encrypting; rustls names the exact size when it is not enough.
const RECORD_OVERHEAD_ESTIMATE: usize = 64;

/// The message rustls gives a TCP EOF that was not preceded by `close_notify`; tokio-rustls
/// reports it as `UnexpectedEof` with this text, and so do we.
const UNEXPECTED_EOF_MESSAGE: &str = "peer closed connection without sending TLS close_notify: \
https://docs.rs/rustls/latest/rustls/manual/_03_howto/index.html#unexpected-eof";

thread_local! {
    /// Where received ciphertext is read and decrypted in place. Connections read
    /// synchronously once the socket is readable, so one buffer per thread serves them all.
    static READ_SCRATCH: RefCell<Box<[u8]>> =
        RefCell::new(vec![0; MAX_RECORD_LEN].into_boxed_slice());
    /// Where outgoing records are encrypted before they are written to the socket.
    static WRITE_SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Run the TLS handshake on `tcp` with `config` (which should have been through
/// [`crate::prepare_server_config`]) and return the established stream. The future does
/// not time out by itself; wrap it in `tokio::time::timeout`.
pub async fn accept(
    config: Arc<rustls::ServerConfig>,
    tcp: TcpStream,
) -> Result<TlsStream, TlsError> {
    let mut session = Session::new(tcp, UnbufferedServerConnection::new(config)?);
    let mut capture = Capture::default();
    poll_fn(|cx| session.poll_handshake(cx, &mut capture)).await?;
    let info = HandshakeInfo::new(&session.conn, capture)?;
    Ok(TlsStream { session, info })
}

/// An established server-side TLS session over a TCP socket.
///
/// Reading returns end of file after the peer's `close_notify`, and an `UnexpectedEof` error
/// when the TCP connection ends without one (as tokio-rustls does). A record that fails to
/// decrypt or parse is an `InvalidData` error; rustls's alert is sent first when the socket
/// takes it. Shutting down sends `close_notify`, then shuts the TCP write side.
pub struct TlsStream {
    session: Session,
    info: HandshakeInfo,
}

impl TlsStream {
    /// The TCP socket underneath, to wait on for readability.
    pub fn tcp(&self) -> &TcpStream {
        &self.session.tcp
    }

    /// What the handshake negotiated.
    pub fn info(&self) -> &HandshakeInfo {
        &self.info
    }

    /// Capacities of the stream's own buffers (received bytes, plaintext, outgoing bytes).
    #[cfg(test)]
    pub(crate) fn buffer_capacities(&self) -> [usize; 3] {
        [
            self.session.incoming.capacity(),
            self.session.plaintext.bytes.capacity(),
            self.session.outgoing.bytes.capacity(),
        ]
    }
}

impl AsyncRead for TlsStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.get_mut().session.poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().session.poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let session = &mut self.get_mut().session;
        ready!(session.poll_flush_outgoing(cx))?;
        Pin::new(&mut session.tcp).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().session.poll_shutdown(cx)
    }
}

/// How reading ended.
enum ReadEnd {
    /// The peer sent `close_notify`: end of file.
    CloseNotify,
    /// TCP ended without `close_notify`.
    UnexpectedEof,
    /// rustls refused what the peer sent.
    Failed(rustls::Error),
}

/// The connection and its buffers, shared by the handshake and the established stream.
struct Session {
    tcp: TcpStream,
    conn: UnbufferedServerConnection,
    /// Received bytes rustls has not consumed yet, exactly as it left them (the front may hold
    /// handshake fragments it already decrypted in place); they go back in front of the next
    /// read. Usually an incomplete record; empty, and unallocated, on an idle connection.
    incoming: Vec<u8>,
    /// Decrypted bytes the caller's buffer could not take.
    plaintext: Pending,
    /// Encrypted bytes the socket did not accept yet.
    outgoing: Pending,
    /// Set once reading has ended; later reads repeat the outcome.
    read_end: Option<ReadEnd>,
    /// Set once `close_notify` was encrypted; later writes fail.
    is_write_closed: bool,
    /// `outgoing` holds what rustls produced as the handshake completed (TLS 1.3 session
    /// tickets) while the client's first application data already waits in `plaintext`. Those
    /// records are held back to leave in one segment with our answer to that data: the next
    /// write queues behind them and its flush sends both. A read that has to wait on the
    /// socket, a flush or a shutdown sends them first, so they are never held while idle.
    is_held_for_first_write: bool,
}

impl Session {
    fn new(tcp: TcpStream, conn: UnbufferedServerConnection) -> Self {
        Self {
            tcp,
            conn,
            incoming: Vec::new(),
            plaintext: Pending::default(),
            outgoing: Pending::default(),
            read_end: None,
            is_write_closed: false,
            is_held_for_first_write: false,
        }
    }

    /// Drive the handshake until it completes and our last flight is written.
    fn poll_handshake(
        &mut self,
        cx: &mut Context<'_>,
        capture: &mut Capture,
    ) -> Poll<Result<(), TlsError>> {
        loop {
            if !self.is_held_for_first_write {
                ready!(self.poll_flush_outgoing(cx))?;
            }
            match &self.read_end {
                Some(ReadEnd::Failed(err)) => return Poll::Ready(Err(TlsError::Tls(err.clone()))),
                Some(ReadEnd::CloseNotify | ReadEnd::UnexpectedEof) => {
                    return Poll::Ready(Err(TlsError::HandshakeEof));
                }
                None => {}
            }
            if !self.conn.is_handshaking() {
                return Poll::Ready(Ok(()));
            }
            ready!(self.poll_receive(cx, None, Some(capture)))?;
        }
    }

    fn poll_read(&mut self, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        // A reply rustls produced while reading (a KeyUpdate, say) that the socket did not take
        // then; without this an idle connection could hold it until its next write. Records
        // held for the first write wait until this read has to go to the socket (below).
        if !self.outgoing.is_empty() && !self.is_held_for_first_write {
            let _ = self.write_outgoing_now();
        }
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        loop {
            if self.plaintext.take_into(buf) {
                return Poll::Ready(Ok(()));
            }
            match &self.read_end {
                Some(ReadEnd::CloseNotify) => return Poll::Ready(Ok(())),
                Some(ReadEnd::UnexpectedEof) => {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        UNEXPECTED_EOF_MESSAGE,
                    )));
                }
                Some(ReadEnd::Failed(err)) => {
                    return Poll::Ready(Err(TlsError::Tls(err.clone()).into()));
                }
                None => {}
            }
            if self.is_held_for_first_write {
                // Nothing stashed is left to answer: send the held records before waiting.
                self.is_held_for_first_write = false;
                let _ = self.write_outgoing_now();
            }
            let filled_before = buf.filled().len();
            ready!(self.poll_receive(cx, Some(&mut *buf), None))?;
            if buf.filled().len() > filled_before {
                return Poll::Ready(Ok(()));
            }
        }
    }

    /// Read from the socket once and run rustls over what arrived: plaintext goes to
    /// `read_buf` and what does not fit to `plaintext`; records rustls wants sent are written
    /// or queued; the end of reading is noted in `read_end`. Only socket errors are returned.
    fn poll_receive(
        &mut self,
        cx: &mut Context<'_>,
        read_buf: Option<&mut ReadBuf<'_>>,
        capture: Option<&mut Capture>,
    ) -> Poll<Result<(), TlsError>> {
        if self.read_end.is_some() {
            return Poll::Ready(Ok(()));
        }
        let is_handshake = capture.is_some();
        // Bytes rustls is holding on to beyond one record (only a handshake message spread
        // over several records) do not fit the scratch buffer; they get one of their own.
        let work_len = if self.incoming.len() < MAX_RECORD_LEN {
            MAX_RECORD_LEN
        } else {
            self.incoming.len() + MAX_RECORD_LEN
        };
        with_buffer(&READ_SCRATCH, work_len, |work| {
            let kept = self.incoming.len();
            let Some((front, room)) = work.split_at_mut_checked(kept) else {
                return Poll::Ready(Err(TlsError::Io(io::Error::other(
                    "TLS work buffer smaller than the kept bytes",
                ))));
            };
            front.copy_from_slice(&self.incoming);
            let mut room = ReadBuf::new(room);
            ready!(Pin::new(&mut self.tcp).poll_read(cx, &mut room))?;
            let received = room.filled().len();
            if received == 0 {
                self.read_end = Some(ReadEnd::UnexpectedEof);
                return Poll::Ready(Ok(()));
            }
            let filled = kept + received;
            let input = work.get_mut(..filled).unwrap_or_default();
            let outcome = with_buffer(&WRITE_SCRATCH, 0, |out| {
                out.clear();
                let outcome = run_rustls(
                    &mut self.conn,
                    input,
                    PlaintextSink {
                        read_buf,
                        stash: &mut self.plaintext,
                    },
                    out,
                    Request::Nothing,
                    capture,
                );
                if is_handshake
                    && outcome.error.is_none()
                    && !self.conn.is_handshaking()
                    && !self.plaintext.is_empty()
                    && self.outgoing.is_empty()
                {
                    // The handshake just completed and the client's first data came with its
                    // Finished: hold what rustls produced (the session tickets) for our answer.
                    self.outgoing.push(out);
                    self.is_held_for_first_write = !self.outgoing.is_empty();
                } else {
                    // A failed write means the peer is gone; the next read will say so.
                    let _ = self.outgoing.send(&self.tcp, out);
                }
                outcome
            });
            let rest = work.get(outcome.consumed..filled).unwrap_or_default();
            replace_incoming(&mut self.incoming, rest);
            self.note_outcome(&outcome);
            Poll::Ready(Ok(()))
        })
    }

    fn poll_write(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        if let Some(ReadEnd::Failed(err)) = &self.read_end {
            return Poll::Ready(Err(TlsError::Tls(err.clone()).into()));
        }
        if self.is_write_closed {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "write after TLS close_notify",
            )));
        }
        if self.is_held_for_first_write {
            // This write's records queue behind the held ones; the caller's flush sends both.
            self.is_held_for_first_write = false;
        } else {
            ready!(self.poll_flush_outgoing(cx))?;
        }
        let chunk = buf.get(..MAX_PLAINTEXT_PER_WRITE).unwrap_or(buf);
        let (outcome, sent) = self.run_without_input(Request::Encrypt(chunk));
        sent?;
        if let Some(err) = outcome.error {
            return Poll::Ready(Err(TlsError::Tls(err).into()));
        }
        if !outcome.is_request_done {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "the TLS session no longer accepts data",
            )));
        }
        Poll::Ready(Ok(chunk.len()))
    }

    fn poll_shutdown(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if !self.is_write_closed {
            // Whatever was written before goes out before close_notify.
            ready!(self.poll_flush_outgoing(cx))?;
            self.is_write_closed = true;
            // After a fatal alert rustls sends no close_notify; nothing is lost either way.
            let (_outcome, sent) = self.run_without_input(Request::CloseNotify);
            sent?;
        }
        ready!(self.poll_flush_outgoing(cx))?;
        Poll::Ready(match ready!(Pin::new(&mut self.tcp).poll_shutdown(cx)) {
            // As in tokio-rustls: a peer that is already gone is no failure to shut down.
            Err(err) if err.kind() != io::ErrorKind::NotConnected => Err(err),
            _ => Ok(()),
        })
    }

    /// Run rustls for a write-side request, over the received bytes it still holds (it may
    /// have positions in them), and send what it produced. A failed connection is not run
    /// again (see [`encode_alert`]).
    fn run_without_input(&mut self, request: Request<'_>) -> (Outcome, io::Result<()>) {
        if let Some(ReadEnd::Failed(err)) = &self.read_end {
            let outcome = Outcome {
                error: Some(err.clone()),
                ..Outcome::default()
            };
            return (outcome, Ok(()));
        }
        let (outcome, sent) = with_buffer(&WRITE_SCRATCH, 0, |out| {
            out.clear();
            let outcome = run_rustls(
                &mut self.conn,
                &mut self.incoming,
                PlaintextSink {
                    read_buf: None,
                    stash: &mut self.plaintext,
                },
                out,
                request,
                None,
            );
            let sent = self.outgoing.send(&self.tcp, out);
            (outcome, sent)
        });
        let consumed = outcome.consumed.min(self.incoming.len());
        if consumed > 0 {
            let rest = self.incoming.split_off(consumed);
            replace_incoming(&mut self.incoming, &rest);
        }
        self.note_outcome(&outcome);
        (outcome, sent)
    }

    fn note_outcome(&mut self, outcome: &Outcome) {
        if self.read_end.is_some() {
            return;
        }
        if let Some(err) = &outcome.error {
            self.read_end = Some(ReadEnd::Failed(err.clone()));
            // Never given to rustls again.
            self.incoming = Vec::new();
        } else if outcome.is_peer_closed {
            self.read_end = Some(ReadEnd::CloseNotify);
        }
    }

    /// Write the queued ciphertext, registering for writability when the socket is full.
    fn poll_flush_outgoing(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.is_held_for_first_write = false;
        while !self.outgoing.is_empty() {
            let written = ready!(Pin::new(&mut self.tcp).poll_write(cx, self.outgoing.unread()))?;
            if written == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.outgoing.consume(written);
        }
        Poll::Ready(Ok(()))
    }

    /// Write what of the queued ciphertext the socket takes now, without registering a waker.
    fn write_outgoing_now(&mut self) -> io::Result<()> {
        while !self.outgoing.is_empty() {
            match self.tcp.try_write(self.outgoing.unread()) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(written) => self.outgoing.consume(written),
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => return Err(err),
            }
        }
        Ok(())
    }
}

/// Keep `rest` as the received bytes rustls still needs, freeing the buffer when there are
/// none.
fn replace_incoming(incoming: &mut Vec<u8>, rest: &[u8]) {
    if rest.is_empty() {
        *incoming = Vec::new();
    } else {
        incoming.clear();
        incoming.extend_from_slice(rest);
        incoming.shrink_to_fit();
    }
}

/// Lend `f` this thread's `scratch` when it is free and at least `len` long; otherwise (a
/// larger need, or a nested call) a buffer of its own.
fn with_buffer<B, R>(
    scratch: &'static std::thread::LocalKey<RefCell<B>>,
    len: usize,
    f: impl FnOnce(&mut B) -> R,
) -> R
where
    B: FromLen,
{
    scratch.with(|cell| match cell.try_borrow_mut() {
        Ok(mut buffer) if B::GROWS || buffer.len() >= len => f(&mut buffer),
        _ => f(&mut B::from_len(len)),
    })
}

/// Scratch buffer types [`with_buffer`] can stand in for.
trait FromLen {
    /// Whether the buffer grows as needed (so any thread-local one will do).
    const GROWS: bool;
    fn from_len(len: usize) -> Self;
    /// Its current length.
    fn len(&self) -> usize;
}

impl FromLen for Box<[u8]> {
    const GROWS: bool = false;
    fn from_len(len: usize) -> Self {
        vec![0; len].into_boxed_slice()
    }
    fn len(&self) -> usize {
        <[u8]>::len(self)
    }
}

impl FromLen for Vec<u8> {
    const GROWS: bool = true;
    fn from_len(len: usize) -> Self {
        Vec::with_capacity(len)
    }
    fn len(&self) -> usize {
        Vec::len(self)
    }
}

/// Bytes waiting to be read or written, consumed from the front; unallocated when empty.
#[derive(Default)]
struct Pending {
    bytes: Vec<u8>,
    /// How much of `bytes` is already consumed.
    start: usize,
}

impl Pending {
    fn is_empty(&self) -> bool {
        self.start >= self.bytes.len()
    }

    fn unread(&self) -> &[u8] {
        self.bytes.get(self.start..).unwrap_or_default()
    }

    fn consume(&mut self, n: usize) {
        self.start += n;
        if self.is_empty() {
            *self = Self::default();
        }
    }

    fn push(&mut self, more: &[u8]) {
        if more.is_empty() {
            return;
        }
        if self.start > 0 {
            self.bytes.drain(..self.start);
            self.start = 0;
        }
        self.bytes.extend_from_slice(more);
    }

    /// Copy what fits into `buf`; whether there was anything.
    fn take_into(&mut self, buf: &mut ReadBuf<'_>) -> bool {
        if self.is_empty() {
            return false;
        }
        let n = self.unread().len().min(buf.remaining());
        buf.put_slice(self.unread().get(..n).unwrap_or_default());
        self.consume(n);
        true
    }

    /// Send `records` after what is queued: write them now as far as the socket takes them
    /// without waiting, and queue the rest.
    fn send(&mut self, tcp: &TcpStream, records: &[u8]) -> io::Result<()> {
        if !self.is_empty() {
            self.push(records);
            return Ok(());
        }
        let mut written = 0;
        while written < records.len() {
            match tcp.try_write(records.get(written..).unwrap_or_default()) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => written += n,
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => break,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => return Err(err),
            }
        }
        self.push(records.get(written..).unwrap_or_default());
        Ok(())
    }
}

/// Where decrypted application data goes: the caller's buffer while it has room and nothing is
/// stashed before it, the stash otherwise.
struct PlaintextSink<'a, 'b> {
    read_buf: Option<&'a mut ReadBuf<'b>>,
    stash: &'a mut Pending,
}

impl PlaintextSink<'_, '_> {
    fn put(&mut self, mut bytes: &[u8]) {
        if let Some(buf) = self.read_buf.as_deref_mut()
            && self.stash.is_empty()
        {
            let n = bytes.len().min(buf.remaining());
            let (now, later) = bytes.split_at(n);
            buf.put_slice(now);
            bytes = later;
        }
        self.stash.push(bytes);
    }
}

/// What the caller wants rustls to encrypt once it may.
#[derive(Clone, Copy)]
enum Request<'a> {
    Nothing,
    Encrypt(&'a [u8]),
    CloseNotify,
}

/// What one run of rustls's state machine did.
#[derive(Default)]
struct Outcome {
    /// Bytes at the front of the input rustls is done with.
    consumed: usize,
    /// The peer sent `close_notify`.
    is_peer_closed: bool,
    /// The [`Request`] was carried out.
    is_request_done: bool,
    /// rustls refused the input (its alert, if any, is in the output).
    error: Option<rustls::Error>,
}

/// Run rustls over `input` until it needs more input (or, for a [`Request`], until it can be
/// carried out): plaintext to `sink`, records to send appended to `out`.
fn run_rustls(
    conn: &mut UnbufferedServerConnection,
    input: &mut [u8],
    mut sink: PlaintextSink<'_, '_>,
    out: &mut Vec<u8>,
    request: Request<'_>,
    mut capture: Option<&mut Capture>,
) -> Outcome {
    let mut outcome = Outcome::default();
    loop {
        let rest = input.get_mut(outcome.consumed..).unwrap_or_default();
        let UnbufferedStatus { mut discard, state } = match capture.as_deref_mut() {
            Some(capture) => hooks::capturing(capture, || conn.process_tls_records(rest)),
            None => conn.process_tls_records(rest),
        };
        let step = match state {
            Err(err) => Step::Fail(err),
            Ok(ConnectionState::ReadTraffic(mut traffic)) => {
                let mut step = Step::Continue;
                while let Some(record) = traffic.next_record() {
                    match record {
                        Ok(record) => {
                            discard += record.discard;
                            sink.put(record.payload);
                        }
                        Err(err) => {
                            step = Step::Fail(err);
                            break;
                        }
                    }
                }
                step
            }
            Ok(ConnectionState::EncodeTlsData(mut encode)) => match encode_into(out, &mut encode) {
                Ok(()) => Step::Continue,
                Err(err) => Step::Fail(err),
            },
            // The records are in `out`, which the caller sends before anything encoded later.
            Ok(ConnectionState::TransmitTlsData(transmit)) => {
                transmit.done();
                Step::Continue
            }
            Ok(ConnectionState::BlockedHandshake) => Step::Stop,
            Ok(ConnectionState::WriteTraffic(mut write)) => {
                let done = match request {
                    Request::Nothing => Ok(false),
                    Request::Encrypt(data) => {
                        encrypt_into(out, data, |data, buf| write.encrypt(data, buf)).map(|()| true)
                    }
                    Request::CloseNotify => {
                        encrypt_into(out, &[], |_, buf| close_notify(&mut write, buf))
                            .map(|()| true)
                    }
                };
                match done {
                    Ok(done) => {
                        outcome.is_request_done = done;
                        Step::Stop
                    }
                    Err(err) => Step::Fail(err),
                }
            }
            Ok(ConnectionState::PeerClosed) => {
                outcome.is_peer_closed = true;
                Step::Continue
            }
            Ok(ConnectionState::Closed) => {
                outcome.is_peer_closed = true;
                Step::Stop
            }
            // `max_early_data_size` is left at zero, so rustls refuses 0-RTT data itself.
            Ok(ConnectionState::ReadEarlyData(_)) => Step::Fail(rustls::Error::General(
                "unexpected TLS early data".to_owned(),
            )),
            Ok(other) => Step::Fail(rustls::Error::General(format!(
                "unexpected rustls state {other:?}"
            ))),
        };
        outcome.consumed = (outcome.consumed + discard).min(input.len());
        match step {
            Step::Continue => {}
            Step::Stop => return outcome,
            Step::Fail(err) => {
                let rest = input.get_mut(outcome.consumed..).unwrap_or_default();
                encode_alert(conn, rest, out);
                outcome.error = Some(err);
                return outcome;
            }
        }
    }
}

/// What [`run_rustls`] does after handling one state.
enum Step {
    Continue,
    Stop,
    Fail(rustls::Error),
}

/// After an error rustls has usually queued an alert, which the next call hands out before it
/// looks at the input again. That call is the last: rustls does not remember a failed record
/// (it would decrypt it again and queue a second alert), so a failed connection is never run
/// again.
fn encode_alert(conn: &mut UnbufferedServerConnection, input: &mut [u8], out: &mut Vec<u8>) {
    if let Ok(ConnectionState::EncodeTlsData(mut encode)) = conn.process_tls_records(input).state {
        let _ = encode_into(out, &mut encode);
    }
}

/// Append the handshake (or alert) record rustls offers to `out`.
fn encode_into(
    out: &mut Vec<u8>,
    encode: &mut EncodeTlsData<'_, ServerConnectionData>,
) -> Result<(), rustls::Error> {
    let required = match encode.encode(&mut []) {
        Ok(_) | Err(EncodeError::AlreadyEncoded) => return Ok(()),
        Err(EncodeError::InsufficientSize(InsufficientSizeError { required_size })) => {
            required_size
        }
    };
    let start = out.len();
    out.resize(start + required, 0);
    match encode.encode(out.get_mut(start..).unwrap_or_default()) {
        Ok(written) => {
            out.truncate(start + written);
            Ok(())
        }
        Err(err) => {
            out.truncate(start);
            Err(rustls::Error::General(err.to_string()))
        }
    }
}

/// Append what `encrypt` writes for `data` to `out`, growing it to the size rustls asks for.
fn encrypt_into(
    out: &mut Vec<u8>,
    data: &[u8],
    mut encrypt: impl FnMut(&[u8], &mut [u8]) -> Result<usize, EncryptError>,
) -> Result<(), rustls::Error> {
    let start = out.len();
    let records = data.len().div_ceil(MAX_PLAINTEXT_PER_WRITE).max(1);
    let mut len = data.len() + records * RECORD_OVERHEAD_ESTIMATE;
    // Twice at most: rustls reports the exact size when the estimate is short.
    for _ in 0..2 {
        out.resize(start + len, 0);
        match encrypt(data, out.get_mut(start..).unwrap_or_default()) {
            Ok(written) => {
                out.truncate(start + written);
                return Ok(());
            }
            Err(EncryptError::InsufficientSize(InsufficientSizeError { required_size })) => {
                len = required_size;
            }
            Err(EncryptError::EncryptExhausted) => {
                out.truncate(start);
                return Err(rustls::Error::EncryptError);
            }
        }
    }
    out.truncate(start);
    Err(rustls::Error::General(
        "rustls asked for a larger output buffer twice".to_owned(),
    ))
}

/// `queue_close_notify` in the shape [`encrypt_into`] takes.
fn close_notify(
    write: &mut WriteTraffic<'_, ServerConnectionData>,
    buf: &mut [u8],
) -> Result<usize, EncryptError> {
    write.queue_close_notify(buf)
}

#[cfg(test)]
mod tests;
