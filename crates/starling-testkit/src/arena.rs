//! A server under attack with a bystander: a fresh [`TestServer`], a logged-in [`ChatPair`]
//! chatting from 127.0.0.1 throughout, and a sampler of the server's resident memory.
//!
//! Hostile tests attack from other loopback addresses ([`attacker`]) and end with
//! [`Arena::finish`], which checks that the server lives, that its peak RSS stayed under the
//! test's bound and that the pair lost nothing and was never slower than the given bound.
//!
//! Linux only: attackers bind to 127.0.0.x source addresses, and RSS comes from /proc.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::pair::{ChatPair, PairReport};
use crate::server::{ServerOptions, TestServer};

/// The attacker's source address `127.0.0.<last_octet>`, distinct from the pair's 127.0.0.1.
pub fn attacker(last_octet: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, last_octet))
}

/// The resident set size of process `pid` in KiB, from `/proc/PID/status`.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().strip_suffix("kB"))
        .and_then(|kib| kib.trim().parse().ok())
}

/// A server, the background pair and an RSS sampler.
pub struct Arena {
    /// The server under attack.
    pub server: TestServer,
    pair: ChatPair,
    peak_rss_kib: Arc<AtomicU64>,
    sampler: tokio::task::JoinHandle<()>,
}

/// What [`Arena::finish`] measured.
#[derive(Debug, Clone, Copy)]
pub struct ArenaReport {
    /// The server's peak resident memory while the test ran.
    pub peak_rss_kib: u64,
    /// The bystander pair's exchange.
    pub pair: PairReport,
}

impl Arena {
    /// Starts a server with `options`, logs the pair in and starts sampling RSS every 20 ms.
    pub async fn start(options: ServerOptions) -> anyhow::Result<Self> {
        let server = TestServer::start_with(options).await?;
        let pair = ChatPair::start(&server).await?;
        let pid = server.pid().ok_or_else(|| anyhow::anyhow!("no pid"))?;
        let peak_rss_kib = Arc::new(AtomicU64::new(0));
        let peak = Arc::clone(&peak_rss_kib);
        let sampler = tokio::spawn(async move {
            loop {
                if let Some(kib) = rss_kib(pid) {
                    peak.fetch_max(kib, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
        Ok(Self {
            server,
            pair,
            peak_rss_kib,
            sampler,
        })
    }

    /// The pair kept exchanging with no round trip slower than `max_round_trip`, the server
    /// lives, and its peak RSS stayed under `rss_bound_kib`.
    pub async fn finish(
        self,
        name: &str,
        rss_bound_kib: u64,
        max_round_trip: Duration,
    ) -> anyhow::Result<ArenaReport> {
        self.server.ensure_alive()?;
        if let Some(kib) = self.server.pid().and_then(rss_kib) {
            self.peak_rss_kib.fetch_max(kib, Ordering::Relaxed);
        }
        self.sampler.abort();
        let pair = self.pair.finish(1).await?;
        let peak = self.peak_rss_kib.load(Ordering::Relaxed);
        eprintln!(
            "{name}: peak RSS {peak} KiB (bound {rss_bound_kib}); pair: {} round trips, slowest {:?} (bound {max_round_trip:?})",
            pair.round_trips, pair.slowest
        );
        anyhow::ensure!(
            peak > 0 && peak < rss_bound_kib,
            "{name}: server peak RSS {peak} KiB is over the bound of {rss_bound_kib} KiB"
        );
        anyhow::ensure!(
            pair.slowest <= max_round_trip,
            "{name}: the bystander pair's slowest round trip took {:?} (bound {max_round_trip:?})",
            pair.slowest
        );
        Ok(ArenaReport {
            peak_rss_kib: peak,
            pair,
        })
    }
}
