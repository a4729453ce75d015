//! Start-up and shutdown: storage, TLS, listeners, the accept loops and the connection cap;
//! SIGHUP reloads the config file and the certificate for new connections.

use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::Context as _;
use starling_modules::{ModuleSet, StreamStage};
use starling_registry::Registry;
use starling_router::Router;
use starling_storage::AnyStore;
use starling_stream::StreamConfig;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, mpsc, watch};
use tracing::{error, info, warn};

use crate::config::Config;
use crate::connection::{self, ConnectionLimits, ListenerKind};
use crate::limits::{ConnectionCap, PeerLimits};
use crate::tls::TlsSetup;

/// The settings a connection runs with, fixed when it is accepted. SIGHUP builds a new one
/// and later connections take that; a connection keeps its snapshot until it ends.
pub struct Live {
    /// The configuration in force (restart-only keys keep their values from the start).
    pub config: Config,
    /// Engine settings derived from it.
    pub stream_config: Arc<StreamConfig>,
    /// Certificates and the rustls config.
    pub tls: Arc<TlsSetup>,
    /// Per-connection timers and read rates.
    pub connection_limits: ConnectionLimits,
}

impl Live {
    /// Derive everything from `config`, loading (or generating) the certificate.
    /// `decoy_secret` is read once at start (`ids::decoy_secret`) and carried over by reloads.
    /// The stream features the enabled `modules` contribute are added to the engine's.
    fn new(config: Config, decoy_secret: [u8; 32], modules: &ModuleSet) -> anyhow::Result<Self> {
        let tls = TlsSetup::load(&config)?;
        Ok(Self {
            stream_config: Arc::new({
                let mut stream = config.stream_config();
                stream.sasl_decoy_secret = decoy_secret;
                stream.extra_unauthenticated_features = modules
                    .stream_features(StreamStage::Unauthenticated)
                    .to_vec();
                stream
                    .extra_bound_features
                    .extend_from_slice(modules.stream_features(StreamStage::Authenticated));
                stream
            }),
            tls: Arc::new(tls),
            connection_limits: ConnectionLimits::new(&config),
            config,
        })
    }
}

/// What every connection task shares.
pub struct Shared {
    /// The settings for connections starting now; replaced on SIGHUP, so connections take a
    /// snapshot with [`Shared::live`]. The lock is only held to clone or replace the `Arc`.
    live: RwLock<Arc<Live>>,
    /// The config file the server was started with, re-read on SIGHUP; `None` for defaults.
    config_path: Option<PathBuf>,
    /// Accounts.
    pub store: AnyStore,
    /// Routes stanzas between sessions over the session registry.
    pub router: Router<AnyStore>,
    /// Limits across connections: per address, unauthenticated, SASL failures per address.
    pub peer_limits: PeerLimits,
    /// `limits.max_connections`.
    connection_cap: ConnectionCap,
    /// PLAIN password checks, off the reactor and a bounded number at once.
    pub password_checks: crate::hashing::PasswordChecks,
}

impl Shared {
    /// The settings for a connection starting now.
    pub fn live(&self) -> Arc<Live> {
        match self.live.read() {
            Ok(live) => Arc::clone(&live),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    /// SIGHUP: read the config file again and apply what can change while running to new
    /// connections and new checks; reload the certificate. Open sessions keep their settings.
    /// Keys that need a restart keep their running values (each is named in a warning); an
    /// invalid file or certificate leaves the running configuration in force.
    fn reload(&self) {
        let path = self
            .config_path
            .as_deref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "(defaults)".to_owned());
        let new = match Config::load(self.config_path.as_deref()) {
            Ok(new) => new,
            Err(err) => {
                error!(config = %path, error = %format!("{err:#}"), "SIGHUP: the config file is invalid; keeping the running configuration");
                return;
            }
        };
        let running = self.live();
        let reload = running.config.reload(new);
        for key in &reload.needs_restart {
            warn!(config = %path, key, "SIGHUP: `{key}` changed but needs a restart; keeping the running value");
        }
        let live = match Live::new(
            reload.config,
            running.stream_config.sasl_decoy_secret,
            self.router.modules(),
        ) {
            Ok(live) => live,
            Err(err) => {
                error!(error = %format!("{err:#}"), "SIGHUP: cannot reload the TLS certificate; keeping the running configuration and certificate");
                return;
            }
        };
        if reload.changed.contains(&"log.level") {
            crate::logging::reload_level(&live.config.log.level);
        }
        self.peer_limits.reconfigure(&live.config.limits);
        self.connection_cap
            .resize(live.config.limits.max_connections);
        info!(
            certificates = %live.tls.describe(),
            "SIGHUP: reloaded the TLS certificate and key for new connections"
        );
        info!(config = %path, changed = ?reload.changed, "SIGHUP: configuration reloaded for new connections");
        let live = Arc::new(live);
        match self.live.write() {
            Ok(mut current) => *current = live,
            Err(poisoned) => *poisoned.into_inner() = live,
        }
    }
}

/// Run the server until SIGINT or SIGTERM, then shut down gracefully.
/// `config_path` is the file `config` came from, read again on SIGHUP.
pub async fn run(config: Config, config_path: Option<PathBuf>) -> anyhow::Result<()> {
    crate::private_fs::create_private_dir(&config.data_dir)
        .with_context(|| format!("cannot create data directory {}", config.data_dir.display()))?;
    // Before the store opens, so its first operations are timed too.
    let metrics = crate::metrics::Endpoint::install(config.metrics.listen).await?;
    let store = config.open_store().await?;
    let registry = Arc::new(Registry::new(
        config.hosts.clone(),
        config.registry_config(),
    ));
    if let Some(metrics) = metrics {
        let local = metrics.local_addr()?;
        crate::metrics::announce(local);
        announce(&format!("listening metrics {local}"));
        metrics.spawn(Arc::clone(&registry));
    }
    let modules = Arc::new(crate::modules::enabled()?);
    let router = Router::new(
        registry,
        store.clone(),
        config.router_limits(),
        Arc::clone(&modules),
    );
    let shared = Arc::new(Shared {
        peer_limits: PeerLimits::new(&config.limits),
        connection_cap: ConnectionCap::new(config.limits.max_connections),
        live: RwLock::new(Arc::new(Live::new(
            config.clone(),
            crate::ids::decoy_secret(&config.data_dir)?,
            &modules,
        )?)),
        config_path,
        router,
        store,
        password_checks: crate::hashing::PasswordChecks::for_this_machine()
            .context("cannot start the password hashing threads")?,
    });

    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    // Each connection task holds a clone of `done_tx`; when all are dropped, `done_rx` ends.
    let (done_tx, mut done_rx) = mpsc::channel::<()>(1);
    let permits = shared.connection_cap.semaphore();
    // Before the listeners, so a second server on the same data directory stops here.
    let admin = crate::admin::start(
        &config,
        Arc::clone(shared.router.registry()),
        shutdown_rx.clone(),
    )
    .await?;

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
    // Handlers go in before `ready`, so a signal sent the moment the server says it is ready
    // is handled rather than ending the process with the default action.
    let signals = Signals::install()?;
    announce("ready");

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
    drop(accept_tasks);
    let grace_secs = shared.live().config.shutdown_grace_secs;
    let grace = Duration::from_secs(grace_secs);
    if tokio::time::timeout(grace, done_rx.recv()).await.is_err() {
        error!(
            grace_secs,
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
        crate::metrics::connection_accepted(kind);
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
