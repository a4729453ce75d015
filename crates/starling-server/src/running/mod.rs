//! The running server: start-up and shutdown, the listeners and their accept loops, and the
//! connection cap; SIGHUP reloads the config file and the certificate for new connections.
//!
//! Submodules, each used only from here and below: `shared` (what every connection shares),
//! `connection` (one task per connection), `tls`, `limits`, `hashing`, `offers` (the SCRAM
//! mechanisms each host offers, from its accounts' keys), `ids`, `admin` (the
//! admin socket's server side) and `metrics` (the `/metrics` socket). Logs are
//! `starling-logging`'s, counters `starling-metrics`'s.

pub mod admin;
mod connection;
mod hashing;
mod ids;
mod limits;
mod metrics;
pub(crate) mod offers;
mod resumption;
mod shared;
pub mod tls;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use starling_config::Config;
use starling_metrics::ListenerKind;
use starling_modules::Module;
use starling_registry::Registry;
use starling_router::Router;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, mpsc, oneshot, watch};
use tracing::{error, info, warn};

use self::shared::Shared;

/// What a program that runs the server in-process adds to it (see [`run_embedded`]).
#[derive(Default)]
pub struct Embedding {
    /// Feature modules registered after the ones the configuration enables.
    pub modules: Vec<Arc<dyn Module>>,
    /// Told the listening addresses (STARTTLS first, then direct TLS) once the server is
    /// ready.
    pub ready: Option<oneshot::Sender<Vec<SocketAddr>>>,
}

/// Run the server until SIGINT or SIGTERM, then shut down gracefully.
/// `config_path` is the file `config` came from, read again on SIGHUP.
pub async fn run(config: Config, config_path: Option<PathBuf>) -> anyhow::Result<()> {
    run_embedded(config, config_path, Embedding::default()).await
}

/// [`run`], with `embedding`'s extra modules and ready notice: for a program (a test) that
/// runs the server inside its own process.
pub async fn run_embedded(
    config: Config,
    config_path: Option<PathBuf>,
    embedding: Embedding,
) -> anyhow::Result<()> {
    starling_private_fs::create_private_dir(&config.data_dir)
        .with_context(|| format!("cannot create data directory {}", config.data_dir.display()))?;
    // Before the store opens, so its first operations are timed too.
    let metrics = metrics::Endpoint::install(config.metrics.listen).await?;
    let store = crate::store::open(&config).await?;
    let registry = Arc::new(Registry::new(
        config.hosts.clone(),
        config.registry_config(),
    ));
    if let Some(metrics) = metrics {
        let local = metrics.local_addr()?;
        metrics::announce(local);
        announce(&format!("listening metrics {local}"));
        metrics.spawn(Arc::clone(&registry));
    }
    let modules = Arc::new(crate::modules::enabled(
        &config,
        &store,
        &registry,
        embedding.modules,
    )?);
    let router = Router::new(registry, store.clone(), config.router_limits(), modules);
    let decoy_secret = ids::decoy_secret(&config.data_dir)?;
    let shared = Arc::new(Shared::new(
        config.clone(),
        config_path,
        router,
        store,
        decoy_secret,
    )?);

    // Before the listeners, so the first client already sees what its host's accounts can do.
    shared
        .offers
        .recount(&shared.store, config.c2s.scram_offer.policy(), true)
        .await;

    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let offer_keeper = tokio::spawn(offers::OfferKeeper::run(
        Arc::clone(&shared),
        shutdown_rx.clone(),
    ));
    // Each connection task holds a clone of `done_tx`; when all are dropped, `done_rx` ends.
    let (done_tx, mut done_rx) = mpsc::channel::<()>(1);
    let permits = shared.permits();
    // Sessions kept across the last graceful restart wait for their clients again.
    resumption::restore(&shared, &config.data_dir, &shutdown_rx, &done_tx).await;
    // Before the listeners, so a second server on the same data directory stops here.
    let admin = admin::start(&config, Arc::clone(&shared.router), shutdown_rx.clone()).await?;

    let mut listeners = Vec::new();
    let mut addresses = Vec::new();
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
            addresses.push(local);
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
    // Handlers go in before `ready`, so a signal sent the moment the server says it is ready
    // is handled rather than ending the process with the default action.
    let signals = Signals::install()?;
    announce("ready");
    if let Some(ready) = embedding.ready {
        let _ = ready.send(addresses);
    }

    signals.wait(&shared).await?;
    info!("shutting down");
    // Listeners stop accepting and every session is sent <system-shutdown/>.
    let _ = shutdown_tx.send(true);
    if let Some(admin) = admin {
        // The admin listener stops at once and removes its socket file.
        let _ = admin.await;
    }
    for task in &accept_tasks {
        task.abort();
    }
    offer_keeper.abort();
    drop(accept_tasks);
    let grace_secs = shared.live().config.shutdown_grace_secs;
    let grace = Duration::from_secs(grace_secs);
    if tokio::time::timeout(grace, done_rx.recv()).await.is_err() {
        error!(
            grace_secs,
            "sessions still open after the grace period; exiting anyway"
        );
    }
    resumption::write_saved(&shared, &config.data_dir);
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
        metrics::connection_accepted(kind);
        let admission = shared.peer_limits.admit(peer.ip());
        if let Err(refusal) = &admission {
            warn!(%peer, reason = ?refusal, "connection refused");
        }
        // The permit and the shutdown tracker are held until the connection ends.
        tokio::spawn(connection::serve(
            Arc::clone(&shared),
            socket,
            peer,
            kind,
            shutdown.clone(),
            admission,
            (permit, done.clone()),
        ));
    }
}

/// The signals the server acts on: SIGINT and SIGTERM stop it, SIGHUP reloads.
struct Signals {
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
    #[cfg(unix)]
    hangup: tokio::signal::unix::Signal,
}

impl Signals {
    /// Install the handlers (from now on these signals no longer kill the process).
    fn install() -> anyhow::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(Self {
                interrupt: signal(SignalKind::interrupt())
                    .context("cannot install SIGINT handler")?,
                terminate: signal(SignalKind::terminate())
                    .context("cannot install SIGTERM handler")?,
                hangup: signal(SignalKind::hangup()).context("cannot install SIGHUP handler")?,
            })
        }
        #[cfg(not(unix))]
        Ok(Self {})
    }

    /// Wait for SIGINT or SIGTERM; meanwhile each SIGHUP reloads the config and certificate.
    async fn wait(mut self, shared: &Shared) -> anyhow::Result<()> {
        #[cfg(unix)]
        loop {
            tokio::select! {
                _ = self.interrupt.recv() => return Ok(()),
                _ = self.terminate.recv() => return Ok(()),
                _ = self.hangup.recv() => shared.reload(),
            }
        }
        #[cfg(not(unix))]
        {
            let _ = shared;
            tokio::signal::ctrl_c()
                .await
                .context("cannot wait for Ctrl-C")
        }
    }
}
