//! The server side: bind the admin socket safely and answer requests through a [`Handler`].

use std::future::Future;
use std::io;
use std::os::unix::fs::{
    DirBuilderExt as _, FileTypeExt as _, MetadataExt as _, PermissionsExt as _,
};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{
    AsyncBufReadExt as _, AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _, BufReader,
};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::Semaphore;
use tracing::{debug, warn};

use crate::protocol::{
    Command, ErrorKind, MAX_REQUEST_BYTES, Response, decode_request, encode_reply,
};

/// What the server does with each decoded request. Implemented by the server over its live
/// state; this crate knows nothing of sessions.
pub trait Handler: Send + Sync + 'static {
    /// Carry out `command` and say how it went. Failures are [`Response::Error`].
    fn handle(&self, command: Command) -> impl Future<Output = Response> + Send;
}

/// Bounds that keep an admin client from holding the server's resources.
#[derive(Debug, Clone)]
pub struct ListenerLimits {
    /// Largest request line, newline included.
    pub max_request_bytes: usize,
    /// How long a connection may stay silent (before a request or between requests) and how
    /// long writing one reply may take; then it is closed.
    pub idle_timeout: Duration,
    /// Admin connections served at once; more are answered `busy` and closed.
    pub max_connections: usize,
}

/// Default [`ListenerLimits::idle_timeout`].
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// Default [`ListenerLimits::max_connections`].
pub const DEFAULT_MAX_CONNECTIONS: usize = 16;

impl Default for ListenerLimits {
    fn default() -> Self {
        Self {
            max_request_bytes: MAX_REQUEST_BYTES,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
        }
    }
}

/// Why the admin socket could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    /// A live server answers on the path.
    #[error("another server is already running with the admin socket {}", path.display())]
    InUse {
        /// The socket path.
        path: PathBuf,
    },
    /// Something other than a socket is at the path; it is left alone.
    #[error("{} exists and is not a socket; remove it or set admin.socket", path.display())]
    NotASocket {
        /// The path.
        path: PathBuf,
    },
    /// The filesystem refused.
    #[error("cannot create the admin socket {}: {source}", path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// What failed.
        source: io::Error,
    },
}

/// A bound admin socket. Dropping it removes the socket file (if it is still ours).
pub struct AdminListener {
    listener: UnixListener,
    path: PathBuf,
    /// Device and inode of the socket file we created, so drop never removes a file that
    /// someone else put at the path since.
    identity: (u64, u64),
    limits: ListenerLimits,
}

impl AdminListener {
    /// Open the admin socket at `path` with mode 0600.
    ///
    /// If a socket file is already there, a connection attempt decides: a live server makes
    /// this fail with [`BindError::InUse`]; a stale file (connection refused) is removed.
    /// Anything else at the path is refused. The socket is bound inside a fresh 0700
    /// directory next to `path`, set to 0600 and only then renamed into place, so there is
    /// no moment at which another user could connect to it.
    pub async fn bind(path: &Path, limits: ListenerLimits) -> Result<Self, BindError> {
        let io_error = |source| BindError::Io {
            path: path.to_owned(),
            source,
        };
        match std::fs::symlink_metadata(path) {
            Ok(meta) if !meta.file_type().is_socket() => {
                return Err(BindError::NotASocket {
                    path: path.to_owned(),
                });
            }
            Ok(_) => match UnixStream::connect(path).await {
                Ok(_) => {
                    return Err(BindError::InUse {
                        path: path.to_owned(),
                    });
                }
                Err(err) if err.kind() == io::ErrorKind::ConnectionRefused => {
                    debug!(path = %path.display(), "removing a stale admin socket");
                    std::fs::remove_file(path).map_err(io_error)?;
                }
                Err(err) => return Err(io_error(err)),
            },
            Err(err) if err.kind() == io::ErrorKind::NotFound => {}
            Err(err) => return Err(io_error(err)),
        }

        let parent = match path.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent,
            _ => Path::new("."),
        };
        let staging = parent.join(format!(".admin-{}", std::process::id()));
        // A leftover from a crashed process that had our pid; it only ever holds our socket.
        let _ = std::fs::remove_dir_all(&staging);
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&staging)
            .map_err(io_error)?;
        let staged = staging.join("s");
        let bound = (|| {
            let listener = UnixListener::bind(&staged)?;
            std::fs::set_permissions(&staged, std::fs::Permissions::from_mode(0o600))?;
            std::fs::rename(&staged, path)?;
            let meta = std::fs::symlink_metadata(path)?;
            io::Result::Ok((listener, (meta.dev(), meta.ino())))
        })();
        let _ = std::fs::remove_file(&staged);
        let _ = std::fs::remove_dir(&staging);
        let (listener, identity) = bound.map_err(io_error)?;
        Ok(Self {
            listener,
            path: path.to_owned(),
            identity,
            limits,
        })
    }

    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Answer requests until `shutdown` resolves, then close the socket and remove its file.
    /// Each connection runs on its own task; one that stays silent past the idle timeout, sends
    /// an oversized line or goes away costs nothing beyond its own task.
    pub async fn serve<H: Handler>(self, handler: Arc<H>, shutdown: impl Future<Output = ()>) {
        let permits = Arc::new(Semaphore::new(self.limits.max_connections));
        let limits = Arc::new(self.limits.clone());
        tokio::pin!(shutdown);
        loop {
            let accepted = tokio::select! {
                () = &mut shutdown => break,
                accepted = self.listener.accept() => accepted,
            };
            let stream = match accepted {
                Ok((stream, _)) => stream,
                Err(err) => {
                    warn!(error = %err, "admin socket: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let handler = Arc::clone(&handler);
            let limits = Arc::clone(&limits);
            match Arc::clone(&permits).try_acquire_owned() {
                Ok(permit) => {
                    tokio::spawn(async move {
                        serve_connection(stream, &*handler, &limits).await;
                        drop(permit);
                    });
                }
                Err(_) => {
                    tokio::spawn(async move {
                        let busy = Response::error(
                            ErrorKind::Busy,
                            "too many admin connections are open; try again",
                        );
                        let mut stream = stream;
                        let _ = tokio::time::timeout(
                            limits.idle_timeout,
                            stream.write_all(&encode_reply(&busy)),
                        )
                        .await;
                    });
                }
            }
        }
    }
}

impl Drop for AdminListener {
    fn drop(&mut self) {
        let ours = std::fs::symlink_metadata(&self.path)
            .is_ok_and(|meta| (meta.dev(), meta.ino()) == self.identity);
        if ours {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// One line read with a size bound.
enum Line {
    /// A line, without its newline.
    Complete(Vec<u8>),
    /// More than the limit without a newline.
    TooLong,
    /// The peer closed before sending anything more.
    End,
}

/// Read, answer, repeat until the peer closes, stays silent too long or breaks framing.
async fn serve_connection<S, H>(stream: S, handler: &H, limits: &ListenerLimits)
where
    S: AsyncRead + AsyncWrite + Unpin,
    H: Handler,
{
    let (read, mut write) = tokio::io::split(stream);
    let mut reader = BufReader::new(read);
    loop {
        let line = match tokio::time::timeout(
            limits.idle_timeout,
            read_line(&mut reader, limits.max_request_bytes),
        )
        .await
        {
            Ok(Ok(line)) => line,
            Ok(Err(err)) => {
                debug!(error = %err, "admin connection: read failed");
                return;
            }
            Err(_) => {
                debug!("admin connection: idle timeout");
                return;
            }
        };
        let (response, keep_open) = match line {
            Line::End => return,
            Line::TooLong => (
                Response::error(
                    ErrorKind::TooLarge,
                    format!("request longer than {} bytes", limits.max_request_bytes),
                ),
                false,
            ),
            Line::Complete(bytes) => match decode_request(&bytes) {
                Ok(command) => (handler.handle(command).await, true),
                Err(err) => {
                    warn!(error = %err, "admin socket: bad request");
                    (err.to_response(), true)
                }
            },
        };
        let written = tokio::time::timeout(
            limits.idle_timeout,
            write.write_all(&encode_reply(&response)),
        )
        .await;
        if !matches!(written, Ok(Ok(()))) || !keep_open {
            return;
        }
    }
}

/// Read up to and including a newline, at most `max_bytes`. A final line without a newline
/// counts as complete.
async fn read_line<R: AsyncRead + Unpin>(
    reader: &mut BufReader<R>,
    max_bytes: usize,
) -> io::Result<Line> {
    let mut line = Vec::new();
    let limit = u64::try_from(max_bytes).unwrap_or(u64::MAX);
    (&mut *reader)
        .take(limit)
        .read_until(b'\n', &mut line)
        .await?;
    if line.last() == Some(&b'\n') {
        line.pop();
        return Ok(Line::Complete(line));
    }
    if line.len() >= max_bytes {
        return Ok(Line::TooLong);
    }
    if line.is_empty() {
        return Ok(Line::End);
    }
    Ok(Line::Complete(line))
}

#[cfg(test)]
mod tests;
