//! The `/metrics` endpoint on `metrics.listen`: the socket side of `starling-metrics`, which
//! holds what is counted, the recorder and the answer to a request.
//!
//! *Why our own HTTP responder rather than the exporter's `http-listener`:* that feature brings
//! hyper with HTTP/2 (about twenty crates) to answer one loopback `GET`. This module only reads
//! a request head and writes the answer `starling_metrics::answer` gives.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use starling_metrics::Scraper;
use starling_registry::Registry;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tracing::{debug, info};

pub use starling_metrics::{
    SessionGauge, auth_failed, auth_succeeded, connection_accepted, session_ended, stanza_received,
    stanza_sent,
};

/// How often histogram samples are folded into their buckets when nobody scrapes, so memory
/// stays bounded.
const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// How long a scraper may take to send its request head.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Largest request head read; the endpoint only needs the request line.
const MAX_REQUEST_HEAD_BYTES: usize = 8 * 1024;

/// The endpoint: the installed recorder's handle and the bound listener.
pub struct Endpoint {
    scraper: Scraper,
    listener: TcpListener,
}

impl Endpoint {
    /// With `metrics.listen` set: install the Prometheus recorder (once per process) and bind
    /// the endpoint. `None` leaves the facade without a recorder.
    pub async fn install(listen: Option<SocketAddr>) -> anyhow::Result<Option<Self>> {
        let Some(addr) = listen else {
            return Ok(None);
        };
        let scraper = starling_metrics::install(env!("CARGO_PKG_VERSION"))?;
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("metrics.listen: cannot listen on {addr}"))?;
        Ok(Some(Self { scraper, listener }))
    }

    /// The bound address (the configured port may be 0).
    pub fn local_addr(&self) -> anyhow::Result<SocketAddr> {
        self.listener
            .local_addr()
            .context("metrics listener has no local address")
    }

    /// Serve `/metrics` in the background, reading session counts from `registry`.
    pub fn spawn(self, registry: Arc<Registry>) {
        let upkeep = self.scraper.clone();
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(UPKEEP_INTERVAL);
            loop {
                ticks.tick().await;
                upkeep.run_upkeep();
            }
        });
        tokio::spawn(async move {
            loop {
                let (socket, peer) = match self.listener.accept().await {
                    Ok(accepted) => accepted,
                    Err(err) => {
                        debug!(error = %err, "metrics: accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let scraper = self.scraper.clone();
                let registry = Arc::clone(&registry);
                tokio::spawn(async move {
                    if let Err(err) = answer(socket, &scraper, &registry).await {
                        debug!(%peer, error = %err, "metrics: request failed");
                    }
                });
            }
        });
    }
}

/// Answer one HTTP/1.x request.
async fn answer(
    mut socket: TcpStream,
    scraper: &Scraper,
    registry: &Registry,
) -> std::io::Result<()> {
    let head = tokio::time::timeout(REQUEST_TIMEOUT, read_head(&mut socket))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "request timed out"))??;
    let response = starling_metrics::answer(&head, || scraper.render(registry));
    socket.write_all(response.as_bytes()).await?;
    socket.shutdown().await
}

/// Read until the blank line that ends the request head, or [`MAX_REQUEST_HEAD_BYTES`].
async fn read_head(socket: &mut TcpStream) -> std::io::Result<String> {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && !head.windows(2).any(|w| w == b"\n\n") {
        if head.len() >= MAX_REQUEST_HEAD_BYTES {
            break;
        }
        let n = socket.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(buf.get(..n).unwrap_or_default());
    }
    Ok(String::from_utf8_lossy(&head).into_owned())
}

/// Log where the endpoint listens, like the client listeners.
pub fn announce(addr: SocketAddr) {
    info!(addr = %addr, kind = "metrics", "listening");
}
