//! The client side: one request, one reply.

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::UnixStream;

use crate::protocol::{
    Command, ErrorKind, MAX_REPLY_BYTES, PROTOCOL_VERSION, Reply, Response, encode_request,
};

/// How long a request may take from connecting to the last byte of the reply.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a request got no successful answer.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Nothing listens at the path (no file, or a stale one).
    #[error("cannot reach the running server at {}: is it running?", path.display())]
    NotRunning {
        /// The socket path.
        path: PathBuf,
    },
    /// The socket belongs to another user (it is created with mode 0600).
    #[error(
        "permission denied on the admin socket {}: run this as the user the server runs as",
        path.display()
    )]
    PermissionDenied {
        /// The socket path.
        path: PathBuf,
    },
    /// The server did not answer in time.
    #[error("the server did not answer within {} s", REQUEST_TIMEOUT.as_secs())]
    Timeout,
    /// The connection failed midway.
    #[error("admin socket I/O failed: {0}")]
    Io(#[from] io::Error),
    /// The server's answer could not be read.
    #[error("unreadable answer from the server: {0}")]
    BadReply(String),
    /// The server refused or failed the request.
    #[error("{message}")]
    Server {
        /// The error kind.
        kind: ErrorKind,
        /// The server's explanation.
        message: String,
    },
}

/// Send `command` to the server listening at `path` and return its successful answer; a
/// [`Response::Error`] becomes [`ClientError::Server`].
pub async fn request(path: &Path, command: &Command) -> Result<Response, ClientError> {
    match tokio::time::timeout(REQUEST_TIMEOUT, exchange(path, command)).await {
        Ok(result) => result,
        Err(_) => Err(ClientError::Timeout),
    }
}

async fn exchange(path: &Path, command: &Command) -> Result<Response, ClientError> {
    let mut stream = UnixStream::connect(path)
        .await
        .map_err(|err| match err.kind() {
            io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused => ClientError::NotRunning {
                path: path.to_owned(),
            },
            io::ErrorKind::PermissionDenied => ClientError::PermissionDenied {
                path: path.to_owned(),
            },
            _ => ClientError::Io(err),
        })?;
    stream.write_all(&encode_request(command)).await?;
    let mut reader = BufReader::new(stream);
    let mut line = Vec::new();
    let limit = u64::try_from(MAX_REPLY_BYTES).unwrap_or(u64::MAX);
    (&mut reader)
        .take(limit)
        .read_until(b'\n', &mut line)
        .await?;
    if line.last() != Some(&b'\n') {
        return Err(ClientError::BadReply(if line.is_empty() {
            "the server closed the connection without answering".to_owned()
        } else {
            format!("no complete line within {MAX_REPLY_BYTES} bytes")
        }));
    }
    let reply: Reply = serde_json::from_slice(&line).map_err(|err| {
        // An older or newer server may still say which version it speaks.
        let version = serde_json::from_slice::<serde_json::Value>(&line)
            .ok()
            .and_then(|value| value.get("version").and_then(serde_json::Value::as_u64));
        match version {
            Some(version) if version != u64::from(PROTOCOL_VERSION) => {
                ClientError::BadReply(format!(
                    "the server speaks admin protocol version {version}, this command version \
                     {PROTOCOL_VERSION}; use the starling binary the server runs"
                ))
            }
            _ => ClientError::BadReply(err.to_string()),
        }
    })?;
    match reply.response {
        Response::Error { kind, message } => Err(ClientError::Server { kind, message }),
        response => Ok(response),
    }
}
