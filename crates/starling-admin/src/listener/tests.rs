//! The listener and the client over real Unix sockets in a temporary directory.

use std::os::unix::fs::PermissionsExt as _;
use std::path::PathBuf;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::*;
use crate::client::{ClientError, request};

/// Answers from the command alone, so tests can check what went through.
struct Canned;

impl Handler for Canned {
    async fn handle(&self, command: Command) -> Response {
        match command {
            Command::Kick { jid, .. } if jid == "nobody@a.test" => {
                Response::error(ErrorKind::NotFound, "no session for nobody@a.test")
            }
            Command::Kick { .. } => Response::Kicked { count: 1 },
            Command::ListSessions { .. } => Response::Sessions {
                sessions: Vec::new(),
            },
            Command::Announce { message, .. } => Response::Announced {
                count: message.len(),
            },
        }
    }
}

struct Running {
    dir: tempfile::TempDir,
    path: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl Running {
    /// Shut the listener down; the directory stays until the returned guard drops.
    async fn stop(mut self) -> tempfile::TempDir {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(Duration::from_secs(5), &mut self.task)
            .await
            .expect("serve returns after shutdown")
            .unwrap();
        self.dir
    }
}

async fn start(limits: ListenerLimits) -> Running {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("admin.sock");
    let listener = AdminListener::bind(&path, limits).await.unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(listener.serve(Arc::new(Canned), async move {
        let _ = stopped.await;
    }));
    Running {
        dir,
        path,
        stop: Some(stop),
        task,
    }
}

/// Write raw bytes, read one reply line.
async fn exchange_raw(stream: &mut BufReader<UnixStream>, bytes: &[u8]) -> String {
    stream.get_mut().write_all(bytes).await.unwrap();
    let mut line = String::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_line(&mut line))
        .await
        .expect("a reply within 5 s")
        .unwrap();
    line
}

async fn connect(path: &Path) -> BufReader<UnixStream> {
    BufReader::new(UnixStream::connect(path).await.unwrap())
}

#[tokio::test]
async fn socket_is_private_and_answers() {
    let running = start(ListenerLimits::default()).await;
    let mode = std::fs::metadata(&running.path)
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "mode {mode:o}");
    // Nothing is left of the staging directory.
    let names: Vec<_> = std::fs::read_dir(running.path.parent().unwrap())
        .unwrap()
        .map(|entry| entry.unwrap().file_name())
        .collect();
    assert_eq!(names, ["admin.sock"]);

    let answer = request(
        &running.path,
        &Command::Announce {
            host: "a.test".to_owned(),
            message: "hello".to_owned(),
        },
    )
    .await
    .unwrap();
    assert_eq!(answer, Response::Announced { count: 5 });
    running.stop().await;
}

#[tokio::test]
async fn server_errors_reach_the_client_as_errors() {
    let running = start(ListenerLimits::default()).await;
    let err = request(
        &running.path,
        &Command::Kick {
            jid: "nobody@a.test".to_owned(),
            reason: None,
        },
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&err, ClientError::Server { kind: ErrorKind::NotFound, message } if message == "no session for nobody@a.test"),
        "{err:?}"
    );
    running.stop().await;
}

#[tokio::test]
async fn garbage_gets_an_error_and_the_connection_keeps_working() {
    let running = start(ListenerLimits::default()).await;
    let mut stream = connect(&running.path).await;
    let reply = exchange_raw(&mut stream, b"\x00 this is not json\n").await;
    assert!(
        reply.starts_with(r#"{"version":1,"result":"error","kind":"bad-request","message":"malformed request: not JSON"#),
        "{reply}"
    );
    let reply = exchange_raw(&mut stream, b"{\"version\":7,\"command\":\"kick\"}\n").await;
    assert!(
        reply.starts_with(r#"{"version":1,"result":"error","kind":"unsupported-version""#),
        "{reply}"
    );
    let reply = exchange_raw(
        &mut stream,
        b"{\"version\":1,\"command\":\"kick\",\"jid\":\"alice@a.test\"}\n",
    )
    .await;
    assert_eq!(reply, "{\"version\":1,\"result\":\"kicked\",\"count\":1}\n");
    running.stop().await;
}

#[tokio::test]
async fn an_oversized_line_is_refused_and_the_connection_closed() {
    let limits = ListenerLimits {
        max_request_bytes: 100,
        ..ListenerLimits::default()
    };
    let running = start(limits).await;
    let mut stream = connect(&running.path).await;
    let reply = exchange_raw(&mut stream, &[b'x'; 150]).await;
    assert_eq!(
        reply,
        "{\"version\":1,\"result\":\"error\",\"kind\":\"too-large\",\"message\":\"request longer than 100 bytes\"}\n"
    );
    let mut rest = String::new();
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read_line(&mut rest))
        .await
        .unwrap();
    assert_eq!(
        read.unwrap_or(0),
        0,
        "connection closed after a broken frame"
    );
    // The listener still answers others.
    assert!(
        request(&running.path, &Command::ListSessions { host: None })
            .await
            .is_ok()
    );
    running.stop().await;
}

#[tokio::test]
async fn a_silent_client_is_dropped_and_does_not_block_others() {
    let limits = ListenerLimits {
        idle_timeout: Duration::from_millis(300),
        ..ListenerLimits::default()
    };
    let running = start(limits).await;
    let mut silent = connect(&running.path).await;
    // Another client is served while the silent one waits.
    assert!(
        request(&running.path, &Command::ListSessions { host: None })
            .await
            .is_ok()
    );
    let mut line = String::new();
    let read = tokio::time::timeout(Duration::from_secs(5), silent.read_line(&mut line))
        .await
        .expect("the server closes the silent connection");
    assert_eq!(read.unwrap_or(0), 0);
    running.stop().await;
}

#[tokio::test]
async fn connections_beyond_the_limit_are_told_busy() {
    let limits = ListenerLimits {
        max_connections: 1,
        ..ListenerLimits::default()
    };
    let running = start(limits).await;
    let mut first = connect(&running.path).await;
    // Make sure the first connection holds its permit before the second arrives.
    let reply = exchange_raw(
        &mut first,
        b"{\"version\":1,\"command\":\"list-sessions\"}\n",
    )
    .await;
    assert!(reply.contains("\"sessions\""), "{reply}");
    let err = request(&running.path, &Command::ListSessions { host: None })
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            ClientError::Server {
                kind: ErrorKind::Busy,
                ..
            }
        ),
        "{err:?}"
    );
    drop(first);
    running.stop().await;
}

#[tokio::test]
async fn shutdown_removes_the_socket_file() {
    let running = start(ListenerLimits::default()).await;
    let path = running.path.clone();
    assert!(path.exists());
    let dir = running.stop().await;
    assert!(dir.path().exists());
    assert!(!path.exists(), "socket file removed at shutdown");
}

#[tokio::test]
async fn absent_server_gives_the_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("admin.sock");
    let err = request(&path, &Command::ListSessions { host: None })
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "cannot reach the running server at {}: is it running?",
            path.display()
        )
    );
}

#[tokio::test]
async fn a_stale_socket_is_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("admin.sock");
    // A socket file nobody listens on, as a killed server leaves behind.
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    assert!(path.exists());
    let err = request(&path, &Command::ListSessions { host: None })
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::NotRunning { .. }), "{err:?}");

    let listener = AdminListener::bind(&path, ListenerLimits::default())
        .await
        .unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    drop(listener);
    assert!(!path.exists());
}

#[tokio::test]
async fn a_live_server_is_not_displaced() {
    let running = start(ListenerLimits::default()).await;
    let err = AdminListener::bind(&running.path, ListenerLimits::default())
        .await
        .err()
        .expect("second bind refused");
    assert!(matches!(err, BindError::InUse { .. }), "{err:?}");
    // The first server still answers.
    assert!(
        request(&running.path, &Command::ListSessions { host: None })
            .await
            .is_ok()
    );
    running.stop().await;
}

#[tokio::test]
async fn a_regular_file_is_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("admin.sock");
    std::fs::write(&path, "not a socket").unwrap();
    let err = AdminListener::bind(&path, ListenerLimits::default())
        .await
        .err()
        .expect("bind refused");
    assert!(matches!(err, BindError::NotASocket { .. }), "{err:?}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "not a socket");
}
