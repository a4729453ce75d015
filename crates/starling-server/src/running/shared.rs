//! What every connection task shares: the settings fixed when a connection is accepted
//! ([`Live`], replaced on SIGHUP), the router and store, and the limits across connections.

use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use anyhow::Context as _;
use starling_config::Config;
use starling_limits::ConnectionLimits;
use starling_modules::{ModuleSet, StreamStage};
use starling_router::Router;
use starling_storage::AnyStore;
use starling_stream::StreamConfig;
use tokio::sync::Semaphore;
use tracing::{error, info, warn};

use super::hashing::PasswordChecks;
use super::limits::{ConnectionCap, PeerLimits};
use super::offers::OfferKeeper;
use super::tls::TlsSetup;

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
    /// The stream features the enabled `modules` contribute are added to the engine's, and
    /// the engine lets through the stream elements they accept. Every engine reads its host's
    /// SCRAM offer from `offers`, the one table kept current by the [`OfferKeeper`].
    fn new(
        config: Config,
        decoy_secret: [u8; 32],
        modules: &ModuleSet,
        offers: &Arc<starling_sasl::ScramOffers>,
    ) -> anyhow::Result<Self> {
        let tls = super::tls::load(&config)?;
        Ok(Self {
            stream_config: Arc::new({
                let mut stream = config.stream_config();
                stream.sasl_decoy_secret = decoy_secret;
                stream.scram_offers = Arc::clone(offers);
                stream.extra_unauthenticated_features = modules
                    .stream_features(StreamStage::Unauthenticated)
                    .to_vec();
                stream
                    .extra_bound_features
                    .extend_from_slice(modules.stream_features(StreamStage::Authenticated));
                stream.stream_element_namespaces = modules.stream_element_namespaces();
                stream
            }),
            tls: Arc::new(tls),
            connection_limits: config.connection_limits(),
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
    pub router: Arc<Router<AnyStore>>,
    /// Limits across connections: per address, unauthenticated, SASL failures per address.
    pub peer_limits: PeerLimits,
    /// `limits.max_connections`.
    connection_cap: ConnectionCap,
    /// PLAIN password checks, off the reactor and a bounded number at once.
    pub password_checks: PasswordChecks,
    /// Resumable sessions written down as the server stops (XEP-0198 across a restart).
    saved_sessions: std::sync::Mutex<Vec<starling_sm::SavedSession>>,
    /// The SCRAM hashes each host offers, kept in step with the accounts' keys.
    pub offers: OfferKeeper,
}

impl Shared {
    /// Everything for `config`, loaded from `config_path`: the first [`Live`] settings (the
    /// certificates loaded or generated), the limits and the hashing threads.
    pub fn new(
        config: Config,
        config_path: Option<PathBuf>,
        router: Router<AnyStore>,
        store: AnyStore,
        decoy_secret: [u8; 32],
    ) -> anyhow::Result<Self> {
        let offers = OfferKeeper::new(&config.hosts);
        Ok(Self {
            peer_limits: PeerLimits::new(config.peer_settings()),
            connection_cap: ConnectionCap::new(config.limits.max_connections),
            live: RwLock::new(Arc::new(Live::new(
                config,
                decoy_secret,
                router.modules(),
                offers.offers(),
            )?)),
            offers,
            config_path,
            router: Arc::new(router),
            store,
            password_checks: PasswordChecks::for_this_machine()
                .context("cannot start the password hashing threads")?,
            saved_sessions: std::sync::Mutex::new(Vec::new()),
        })
    }

    /// Keep a resumable session for the next start.
    pub fn save_session(&self, saved: starling_sm::SavedSession) {
        self.saved_sessions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(saved);
    }

    /// The sessions saved so far, taken out.
    pub fn take_saved_sessions(&self) -> Vec<starling_sm::SavedSession> {
        std::mem::take(
            &mut *self
                .saved_sessions
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }

    /// The `limits.max_connections` permits, one taken per accepted connection.
    pub fn permits(&self) -> Arc<Semaphore> {
        self.connection_cap.semaphore()
    }

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
    pub fn reload(&self) {
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
            self.offers.offers(),
        ) {
            Ok(live) => live,
            Err(err) => {
                error!(error = %format!("{err:#}"), "SIGHUP: cannot reload the TLS certificate; keeping the running configuration and certificate");
                return;
            }
        };
        if reload.changed.contains(&"log.level") {
            starling_logging::reload_level(&live.config.log.level);
        }
        self.peer_limits.reconfigure(live.config.peer_settings());
        self.connection_cap
            .resize(live.config.limits.max_connections);
        // `c2s.scram_offer` may have changed, and an operator may have written accounts.
        self.offers.recount_soon();
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
