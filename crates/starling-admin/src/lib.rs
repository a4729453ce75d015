//! The local admin protocol of Starling: how `starling list-sessions`, `kick` and `announce`
//! reach the running server.
//!
//! The transport is a Unix socket (never a network port), created with mode 0600 so only the
//! user the server runs as can use it; file permissions are the whole access control. Each
//! direction carries newline-delimited JSON objects with a `version` field ([`Request`],
//! [`Reply`]); a failure is a [`Response::Error`] with an [`ErrorKind`], never a dropped
//! connection without a word.
//!
//! The design choice to understand: this crate knows nothing of sessions or XMPP. The server
//! implements [`Handler`] over its registry and hands it to [`AdminListener::serve`]; the
//! listener owns framing, size bounds, timeouts and the socket file's life cycle, so an admin
//! client can neither hang nor crash the server, and the same listener can serve future
//! commands (backup, metrics snapshots) without change.
//!
//! ```no_run
//! # async fn example() -> Result<(), starling_admin::ClientError> {
//! use starling_admin::{Command, Response};
//!
//! let path = std::path::Path::new("starling-data/admin.sock");
//! let command = Command::Kick { jid: "alice@localhost".to_owned(), reason: None };
//! if let Response::Kicked { count } = starling_admin::request(path, &command).await? {
//!     println!("{count} sessions kicked");
//! }
//! # Ok(())
//! # }
//! ```
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

mod client;
mod listener;
mod protocol;

pub use client::{ClientError, REQUEST_TIMEOUT, request};
pub use listener::{
    AdminListener, BindError, DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_CONNECTIONS, Handler,
    ListenerLimits,
};
pub use protocol::{
    Command, ErrorKind, MAX_REPLY_BYTES, MAX_REQUEST_BYTES, PROTOCOL_VERSION, Reply, Request,
    RequestError, Response, SessionInfo, Transport, decode_request, encode_reply, encode_request,
    rfc3339,
};
