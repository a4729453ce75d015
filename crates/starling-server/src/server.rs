//! Start-up and shutdown: storage, TLS, listeners, the accept loops and the connection cap.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use starling_registry::Registry;
use starling_router::Router;
use starling_storage::SqliteStore;
use starling_stream::StreamConfig;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, mpsc, watch};
use tracing::{error, info};

use crate::config::Config;
use crate::connection::{self, ListenerKind};
use crate::tls::TlsSetup;

/// What every connection task shares.
pub struct Shared {
    /// Engine settings derived from the config.
    pub stream_config: Arc<StreamConfig>,
    /// Certificates and the rustls config.
    pub tls: TlsSetup,
    /// Accounts.
    pub store: SqliteStore,
    /// Routes stanzas between sessions over the session registry.
    pub router: Router<SqliteStore>,
    /// Seconds a TLS handshake may take.
    pub tls_handshake_timeout_secs: u64,
}

/// Run the server until SIGINT or SIGTERM, then shut down gracefully.
pub async fn run(config: Config) -> anyhow::Result<()> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("cannot create data directory {}", config.data_dir.display()))?;
    let store = SqliteStore::open(&config.sqlite_path())
        .with_context(|| format!("cannot open database {}", config.sqlite_path().display()))?;
    let tls = TlsSetup::load(&config)?;
    let registry = Arc::new(Registry::new(
        config.hosts.clone(),
        config.registry_config(),
    ));
    let shared = Arc::new(Shared {
        stream_config: Arc::new(config.stream_config()),
        tls,
        router: Router::new(registry, store.clone(), config.router_limits()),
        store,
        tls_handshake_timeout_secs: config.c2s.tls_handshake_timeout_secs,
    });

    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    // Each connection task holds a clone of `done_tx`; when all are dropped, `done_rx` ends.
    let (done_tx, mut done_rx) = mpsc::channel::<()>(1);
    let permits = Arc::new(Semaphore::new(config.limits.max_connections));

    let mut listeners = Vec::new();
    for (addrs, kind, label) in [
        (&config.listen.starttls, ListenerKind::StartTls, "starttls"),
        (
            &config.listen.direct_tls,
            ListenerKind::DirectTls,
            "direct-tls",
        ),
    ] {
        for addr in addrs {
            let listener = TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen on {addr}"))?;
            let local = listener
                .local_addr()
                .context("listener has no local address")?;
            info!(addr = %local, kind = label, "listening");
            announce(&format!("listening {label} {local}"));
            listeners.push((listener, kind));
        }
    }
    let mut accept_tasks = Vec::new();
    for (listener, kind) in listeners {
        accept_tasks.push(tokio::spawn(accept_loop(
            listener,
            kind,
            Arc::clone(&shared),
            Arc::clone(&permits),
            shutdown_rx.clone(),
            done_tx.clone(),
        )));
    }
    drop(done_tx);
    announce("ready");

    wait_for_signal().await?;
    info!("shutting down");
    // Listeners stop accepting and every session is sent <system-shutdown/>.
    let _ = shutdown_tx.send(true);
    for task in &accept_tasks {
        task.abort();
    }
    drop(accept_tasks);
    let grace = Duration::from_secs(config.shutdown_grace_secs);
    if tokio::time::timeout(grace, done_rx.recv()).await.is_err() {
        error!(
            grace_secs = config.shutdown_grace_secs,
            "sessions still open after the grace period; exiting anyway"
        );
    }
    info!("stopped");
    Ok(())
}

/// A machine-readable line on stdout, for the test kit and for operators' scripts.
#[allow(clippy::print_stdout)]
fn announce(line: &str) {
    println!("{line}");
}

async fn accept_loop(
    listener: TcpListener,
    kind: ListenerKind,
    shared: Arc<Shared>,
    permits: Arc<Semaphore>,
    shutdown: watch::Receiver<bool>,
    done: mpsc::Sender<()>,
) {
    loop {
        // The permit is taken before accepting, so at the cap new connections wait in the
        // kernel's backlog instead of costing memory here.
        let Ok(permit) = Arc::clone(&permits).acquire_owned().await else {
            return;
        };
        let (socket, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(err) => {
                error!(error = %err, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = socket.set_nodelay(true);
        let shared = Arc::clone(&shared);
        let shutdown = shutdown.clone();
        let done = done.clone();
        tokio::spawn(async move {
            connection::serve(shared, socket, peer, kind, shutdown).await;
            drop(permit);
            drop(done);
        });
    }
}

async fn wait_for_signal() -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).context("cannot install SIGTERM handler")?;
        tokio::select! {
            result = tokio::signal::ctrl_c() => result.context("cannot wait for SIGINT")?,
            _ = term.recv() => {}
        }
        Ok(())
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c()
            .await
            .context("cannot wait for Ctrl-C")
    }
}
