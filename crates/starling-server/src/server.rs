//! Start-up and shutdown: storage, TLS, listeners, the accept loops and the connection cap;
//! SIGHUP reloads the certificate.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::Context as _;
use starling_registry::Registry;
use starling_router::Router;
use starling_storage::AnyStore;
use starling_stream::StreamConfig;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, mpsc, watch};
use tracing::{error, info, warn};

use crate::config::Config;
use crate::connection::{self, ConnectionLimits, ListenerKind};
use crate::limits::PeerLimits;
use crate::tls::TlsSetup;

/// What every connection task shares.
pub struct Shared {
    /// Engine settings derived from the config.
    pub stream_config: Arc<StreamConfig>,
    /// Certificates and the rustls config; replaced on SIGHUP, so connections take a snapshot
    /// with [`Shared::tls`].
    pub tls: RwLock<Arc<TlsSetup>>,
    /// Accounts.
    pub store: AnyStore,
    /// Routes stanzas between sessions over the session registry.
    pub router: Router<AnyStore>,
    /// Seconds a TLS handshake may take.
    pub tls_handshake_timeout_secs: u64,
    /// Per-connection timers and read rates.
    pub connection_limits: ConnectionLimits,
    /// Limits across connections: per address, unauthenticated, SASL failures per address.
    pub peer_limits: PeerLimits,
}

impl Shared {
    /// The TLS setup for a connection starting now.
    pub fn tls(&self) -> Arc<TlsSetup> {
        match self.tls.read() {
            Ok(tls) => Arc::clone(&tls),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    /// SIGHUP: load the certificate and key again and use them for new connections. Sessions
    /// already open keep the TLS session they have; a load failure keeps the old certificate.
    fn reload_tls(&self, config: &Config) {
        match TlsSetup::load(config) {
            Ok(tls) => {
                match self.tls.write() {
                    Ok(mut current) => *current = Arc::new(tls),
                    Err(poisoned) => *poisoned.into_inner() = Arc::new(tls),
                }
                info!(
                    certificate = %config.tls.certificate.as_deref().map(|p| p.display().to_string()).unwrap_or_else(|| "self-signed".to_owned()),
                    "SIGHUP: reloaded the TLS certificate and key for new connections"
                );
            }
            Err(err) => {
                error!(error = %format!("{err:#}"), "SIGHUP: cannot reload the TLS certificate; keeping the old one")
            }
        }
    }
}

/// Run the server until SIGINT or SIGTERM, then shut down gracefully.
pub async fn run(config: Config) -> anyhow::Result<()> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("cannot create data directory {}", config.data_dir.display()))?;
    let store = config.open_store().await?;
    let tls = TlsSetup::load(&config)?;
    let registry = Arc::new(Registry::new(
        config.hosts.clone(),
        config.registry_config(),
    ));
    let shared = Arc::new(Shared {
        stream_config: Arc::new(config.stream_config()),
        tls: RwLock::new(Arc::new(tls)),
        router: Router::new(registry, store.clone(), config.router_limits()),
        store,
        tls_handshake_timeout_secs: config.c2s.tls_handshake_timeout_secs,
        connection_limits: ConnectionLimits {
            auth_timeout: Duration::from_secs(config.c2s.auth_timeout_secs),
            idle_timeout: Duration::from_secs(config.c2s.idle_timeout_secs),
            idle_ping_timeout: Duration::from_secs(config.c2s.idle_ping_timeout_secs),
            read_bytes_per_sec_unauthenticated: config.limits.read_bytes_per_sec_unauthenticated,
            read_bytes_per_sec: config.limits.read_bytes_per_sec,
            read_burst_bytes: config.limits.read_burst_bytes,
        },
        peer_limits: PeerLimits::new(&config.limits),
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

    wait_for_signal(&shared, &config).await?;
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
        let admission = shared.peer_limits.admit(peer.ip());
        if let Err(refusal) = &admission {
            warn!(%peer, reason = ?refusal, "connection refused");
        }
        let shared = Arc::clone(&shared);
        let shutdown = shutdown.clone();
        let done = done.clone();
        tokio::spawn(async move {
            connection::serve(shared, socket, peer, kind, shutdown, admission).await;
            drop(permit);
            drop(done);
        });
    }
}

/// Wait for SIGINT or SIGTERM; meanwhile each SIGHUP reloads the certificate.
async fn wait_for_signal(shared: &Shared, config: &Config) -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).context("cannot install SIGTERM handler")?;
        let mut hup = signal(SignalKind::hangup()).context("cannot install SIGHUP handler")?;
        loop {
            tokio::select! {
                result = tokio::signal::ctrl_c() => {
                    result.context("cannot wait for SIGINT")?;
                    return Ok(());
                }
                _ = term.recv() => return Ok(()),
                _ = hup.recv() => shared.reload_tls(config),
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = (shared, config);
        tokio::signal::ctrl_c()
            .await
            .context("cannot wait for Ctrl-C")
    }
}
