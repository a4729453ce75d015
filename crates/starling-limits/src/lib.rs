//! Per-peer admission and rate limits the server applies around the engine (issues 7 and 15):
//! unauthenticated connections per IP address and in total, bound sessions per IP address
//! (opt-in), the read token bucket, the per-address delay for failed SASL attempts, and each
//! connection's deadlines ([`Deadlines`]).
//!
//! An address limit may only bound what a peer can do *before* it authenticates. Many users
//! share one address (carrier-grade NAT, a campus, an office), so a cap on their sessions would
//! let one attacker's idle sockets lock all of them out; once authenticated, use is bounded per
//! account (`c2s.max_resources_per_account`, applied by the registry), and a per-address cap on
//! sessions exists only for operators who ask for it.
//!
//! These need the peer's address, the clock or state shared between connections, none of which
//! the sans-IO engine has; the engine only learns the outcome (a stream error to write). Times
//! are passed in, so the arithmetic is tested here without sleeping. Shared state sits behind
//! std locks whose critical sections never await, so the crate needs no async runtime; the
//! connection cap (a semaphore the accept loops wait on) stays with the server's listeners.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant};

use starling_stanza::StreamErrorCondition;

mod deadlines;

pub use deadlines::{Deadline, Deadlines, RELEASE_IDLE_MEMORY_AFTER};

/// Limits shared by all connections of one server. The caps and delays ([`PeerSettings`]) come
/// from `[limits]` and may be replaced on SIGHUP ([`PeerLimits::reconfigure`]); the counts they are checked
/// against carry over, so lowering a cap refuses new connections until enough old ones end.
pub struct PeerLimits {
    /// The current caps and delays.
    settings: RwLock<PeerSettings>,
    /// Unauthenticated connections per address; an address is removed when its count reaches
    /// zero, so the map holds at most one entry per unauthenticated connection.
    unauthenticated_per_ip: AddressCounts,
    /// Bound sessions per address, counted whether or not their cap is on, so turning it on
    /// with SIGHUP sees the sessions already open.
    sessions_per_ip: AddressCounts,
    /// Connections that have not authenticated yet.
    unauthenticated: Arc<AtomicUsize>,
    /// Failed SASL attempts per address.
    auth_failures: Mutex<HashMap<IpAddr, FailureRecord>>,
}

/// The `[limits]` values [`PeerLimits`] applies (`starling_config::Config::peer_settings`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerSettings {
    /// `limits.max_unauthenticated_connections_per_ip`.
    pub max_unauthenticated_per_ip: usize,
    /// `limits.max_sessions_per_ip`; 0 is no cap.
    pub max_sessions_per_ip: usize,
    /// `limits.max_unauthenticated_connections`.
    pub max_unauthenticated: usize,
    /// `limits.auth_failure_delay_ms`.
    pub auth_failure_delay: Duration,
    /// `limits.max_auth_failure_delay_ms`.
    pub max_auth_failure_delay: Duration,
    /// `limits.auth_failure_window_secs`.
    pub auth_failure_window: Duration,
}

impl Default for PeerSettings {
    /// The `[limits]` defaults.
    fn default() -> Self {
        Self {
            max_unauthenticated_per_ip: 32,
            max_sessions_per_ip: 0,
            max_unauthenticated: 1000,
            auth_failure_delay: Duration::from_millis(250),
            max_auth_failure_delay: Duration::from_millis(8000),
            auth_failure_window: Duration::from_secs(600),
        }
    }
}

/// Why a new connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// `limits.max_unauthenticated_connections_per_ip` reached.
    TooManyUnauthenticatedFromAddress,
    /// `limits.max_unauthenticated_connections` reached.
    TooManyUnauthenticated,
}

impl Refusal {
    /// The stream error and text sent to the refused peer (RFC 6120 §4.9.3.14, §4.9.3.17).
    pub fn stream_error(self) -> (StreamErrorCondition, String) {
        match self {
            Refusal::TooManyUnauthenticatedFromAddress => (
                StreamErrorCondition::PolicyViolation,
                "too many unauthenticated connections from your address".to_owned(),
            ),
            Refusal::TooManyUnauthenticated => (
                StreamErrorCondition::ResourceConstraint,
                "too many connections are authenticating; try again later".to_owned(),
            ),
        }
    }
}

/// `limits.max_sessions_per_ip` reached: binding a resource is refused with
/// `resource-constraint` (RFC 6120 §7.6.2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooManySessionsFromAddress;

/// The slots one admitted connection holds; dropping it gives them back.
pub struct Admission {
    /// The address group the connection counts against.
    ip: IpAddr,
    /// Held until the connection authenticates.
    unauthenticated: Option<(AddressSlot, UnauthenticatedSlot)>,
    /// Held from binding a resource until the connection ends.
    session: Option<AddressSlot>,
}

impl Admission {
    /// The connection authenticated: it no longer counts as unauthenticated.
    pub fn authenticated(&mut self) {
        self.unauthenticated = None;
    }

    /// Binding failed after [`PeerLimits::bind_session`]: the connection holds no session.
    pub fn unbound(&mut self) {
        self.session = None;
    }
}

/// Connections per address, shared with the slots that give their count back.
type AddressCounts = Arc<Mutex<HashMap<IpAddr, usize>>>;

/// One count in an [`AddressCounts`] map, given back on drop.
struct AddressSlot {
    ip: IpAddr,
    counts: AddressCounts,
}

impl AddressSlot {
    /// Take a count for `ip` unless it already has `max` (`None`: no cap).
    fn take(counts: &AddressCounts, ip: IpAddr, max: Option<usize>) -> Option<Self> {
        let mut map = lock(counts);
        let count = map.entry(ip).or_insert(0);
        if max.is_some_and(|max| *count >= max) {
            if *count == 0 {
                map.remove(&ip);
            }
            return None;
        }
        *count += 1;
        Some(Self {
            ip,
            counts: Arc::clone(counts),
        })
    }
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut map = lock(&self.counts);
        if let Some(count) = map.get_mut(&self.ip) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                map.remove(&self.ip);
            }
        }
    }
}

/// One count in [`PeerLimits::unauthenticated`], given back on drop.
struct UnauthenticatedSlot {
    count: Arc<AtomicUsize>,
}

impl Drop for UnauthenticatedSlot {
    fn drop(&mut self) {
        self.count.fetch_sub(1, Ordering::AcqRel);
    }
}

struct FailureRecord {
    failures: u32,
    last: Instant,
}

/// Most addresses whose SASL failures are remembered; past it, expired records are pruned and,
/// if that is not enough, the map is cleared (forgetting is safe, growing without bound is not).
const MAX_TRACKED_FAILURE_ADDRESSES: usize = 100_000;

impl PeerLimits {
    /// No connections admitted yet, with these caps and delays.
    pub fn new(settings: PeerSettings) -> Self {
        Self {
            settings: RwLock::new(settings),
            unauthenticated_per_ip: Arc::new(Mutex::new(HashMap::new())),
            sessions_per_ip: Arc::new(Mutex::new(HashMap::new())),
            unauthenticated: Arc::new(AtomicUsize::new(0)),
            auth_failures: Mutex::new(HashMap::new()),
        }
    }

    /// SIGHUP: apply new caps and delays to connections admitted and failures recorded from
    /// now on.
    pub fn reconfigure(&self, settings: PeerSettings) {
        match self.settings.write() {
            Ok(mut current) => *current = settings,
            Err(poisoned) => *poisoned.into_inner() = settings,
        }
    }

    fn settings(&self) -> PeerSettings {
        match self.settings.read() {
            Ok(settings) => *settings,
            Err(poisoned) => *poisoned.into_inner(),
        }
    }

    /// Admit a new connection from `ip`, or say which limit refuses it. The connection counts
    /// as unauthenticated, against its address and in total, until
    /// [`Admission::authenticated`].
    pub fn admit(&self, ip: IpAddr) -> Result<Admission, Refusal> {
        let ip = address_group(ip);
        let settings = self.settings();
        let address = AddressSlot::take(
            &self.unauthenticated_per_ip,
            ip,
            Some(settings.max_unauthenticated_per_ip),
        )
        .ok_or(Refusal::TooManyUnauthenticatedFromAddress)?;
        // On refusal `address` drops here and gives its count back.
        self.unauthenticated
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |count| {
                (count < settings.max_unauthenticated).then_some(count + 1)
            })
            .map_err(|_| Refusal::TooManyUnauthenticated)?;
        let total = UnauthenticatedSlot {
            count: Arc::clone(&self.unauthenticated),
        };
        Ok(Admission {
            ip,
            unauthenticated: Some((address, total)),
            session: None,
        })
    }

    /// The admitted connection is binding a resource: count it as a session of its address,
    /// or refuse when `limits.max_sessions_per_ip` is set and reached. A connection counts
    /// once however often it asks.
    pub fn bind_session(
        &self,
        admission: &mut Admission,
    ) -> Result<(), TooManySessionsFromAddress> {
        if admission.session.is_some() {
            return Ok(());
        }
        let max = match self.settings().max_sessions_per_ip {
            0 => None,
            max => Some(max),
        };
        let slot = AddressSlot::take(&self.sessions_per_ip, admission.ip, max)
            .ok_or(TooManySessionsFromAddress)?;
        admission.session = Some(slot);
        Ok(())
    }

    /// Record a failed SASL attempt from `ip` at `now`; returns how many failures the address
    /// has in the window and how long to wait before sending the `<failure/>`:
    /// `auth_failure_delay × 2^(failures − 1)`, at most `max_auth_failure_delay`.
    pub fn record_auth_failure(&self, ip: IpAddr, now: Instant) -> (u32, Duration) {
        let ip = address_group(ip);
        let settings = self.settings();
        let mut map = lock(&self.auth_failures);
        if map.len() >= MAX_TRACKED_FAILURE_ADDRESSES {
            let window = settings.auth_failure_window;
            map.retain(|_, record| now.saturating_duration_since(record.last) < window);
            if map.len() >= MAX_TRACKED_FAILURE_ADDRESSES {
                map.clear();
            }
        }
        let record = map.entry(ip).or_insert(FailureRecord {
            failures: 0,
            last: now,
        });
        if now.saturating_duration_since(record.last) >= settings.auth_failure_window {
            record.failures = 0;
        }
        record.failures = record.failures.saturating_add(1);
        record.last = now;
        let doublings = record.failures.saturating_sub(1).min(31);
        let delay = settings
            .auth_failure_delay
            .saturating_mul(1u32 << doublings)
            .min(settings.max_auth_failure_delay);
        (record.failures, delay)
    }
}

/// The key per-address limits count under: an IPv4 address as it is; an IPv4-mapped IPv6
/// address (`::ffff:a.b.c.d`, what a dual-stack socket reports for an IPv4 peer) as its IPv4
/// address; any other IPv6 address as its /64 prefix with the interface bits zeroed. One
/// subscriber or host is routinely given a whole /64 (RFC 6177), so keying on full IPv6
/// addresses would let one peer take a fresh address for every connection.
pub fn address_group(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(Ipv6Addr::from_bits(v6.to_bits() & !u128::from(u64::MAX))),
        },
    }
}

/// Timers and read rates of one connection, from `[c2s]` and `[limits]`
/// (`starling_config::Config::connection_limits`); [`TokenBucket`] applies the rates.
#[derive(Debug, Clone)]
pub struct ConnectionLimits {
    /// From accept until a resource is bound.
    pub auth_timeout: Duration,
    /// Silence from a bound session before it is pinged.
    pub idle_timeout: Duration,
    /// Silence after that ping before the stream ends.
    pub idle_ping_timeout: Duration,
    /// Read rate before authentication, bytes per second.
    pub read_bytes_per_sec_unauthenticated: u64,
    /// Read rate once authenticated, bytes per second.
    pub read_bytes_per_sec: u64,
    /// Token bucket size in bytes.
    pub read_burst_bytes: u64,
    /// How long a TLS handshake may take.
    pub tls_handshake_timeout: Duration,
}

/// A token bucket over bytes read (Prosody's mod_limits does the same): it fills at `rate`
/// bytes per second up to `burst`; each read takes what it read, possibly going into debt, and
/// the connection is not read from again until the debt is paid. Nothing is dropped: the
/// kernel's receive buffer fills and TCP flow control slows the sender.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate_bytes_per_sec: f64,
    burst_bytes: f64,
    tokens: f64,
    updated: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(rate_bytes_per_sec: u64, burst_bytes: u64, now: Instant) -> Self {
        Self {
            rate_bytes_per_sec: rate_bytes_per_sec.max(1) as f64,
            burst_bytes: burst_bytes as f64,
            tokens: burst_bytes as f64,
            updated: now,
        }
    }

    /// Change the rate (after authentication); tokens and debt carry over.
    pub fn set_rate(&mut self, rate_bytes_per_sec: u64, now: Instant) {
        self.refill(now);
        self.rate_bytes_per_sec = rate_bytes_per_sec.max(1) as f64;
    }

    /// `bytes` were read at `now`.
    pub fn consume(&mut self, bytes: usize, now: Instant) {
        self.refill(now);
        self.tokens -= bytes as f64;
    }

    /// `None` when reading may go on; otherwise when the debt will have been paid.
    pub fn resume_at(&mut self, now: Instant) -> Option<Instant> {
        self.refill(now);
        if self.tokens >= 0.0 {
            return None;
        }
        let wait = Duration::from_secs_f64(-self.tokens / self.rate_bytes_per_sec);
        Some(now + wait.max(Duration::from_millis(1)))
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate_bytes_per_sec).min(self.burst_bytes);
        self.updated = now;
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // The critical sections above cannot panic, so a poisoned lock still holds good data.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(per_ip: usize, unauthenticated: usize) -> PeerLimits {
        PeerLimits::new(PeerSettings {
            max_unauthenticated_per_ip: per_ip,
            max_unauthenticated: unauthenticated,
            auth_failure_delay: Duration::from_millis(100),
            max_auth_failure_delay: Duration::from_millis(1000),
            auth_failure_window: Duration::from_secs(60),
            ..PeerSettings::default()
        })
    }

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 2));

    #[test]
    fn per_address_limit_counts_unauthenticated_connections_only() {
        let limits = limits(2, 100);
        let first = limits.admit(A).unwrap();
        let mut second = limits.admit(A).unwrap();
        assert_eq!(
            limits.admit(A).err(),
            Some(Refusal::TooManyUnauthenticatedFromAddress)
        );
        assert!(limits.admit(B).is_ok(), "other addresses are unaffected");
        drop(first);
        let mut third = limits.admit(A).unwrap();
        // Authenticated and bound connections no longer count against the address: many
        // users behind one NAT address can all be online.
        second.authenticated();
        third.authenticated();
        let mut sessions = vec![second, third];
        for _ in 0..100 {
            let mut admission = limits.admit(A).unwrap();
            admission.authenticated();
            limits.bind_session(&mut admission).unwrap();
            sessions.push(admission);
        }
        assert_eq!(lock(&limits.unauthenticated_per_ip).get(&A), None);
        assert_eq!(lock(&limits.sessions_per_ip).get(&A), Some(&100));
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn address_groups() {
        assert_eq!(address_group(A), A);
        assert_eq!(address_group(ip("::ffff:192.0.2.1")), A);
        assert_eq!(
            address_group(ip("2001:db8:1:2:3:4:5:6")),
            ip("2001:db8:1:2::")
        );
        assert_eq!(address_group(ip("::1")), ip("::"));
    }

    #[test]
    fn ipv6_addresses_count_per_64_and_mapped_ipv4_as_ipv4() {
        let limits = limits(2, 100);
        let _first = limits.admit(ip("2001:db8:1:2::1")).unwrap();
        let _second = limits
            .admit(ip("2001:db8:1:2:ffff:ffff:ffff:ffff"))
            .unwrap();
        // A third address in the same /64 is the same peer for the per-address cap.
        assert_eq!(
            limits.admit(ip("2001:db8:1:2:abcd::9")).err(),
            Some(Refusal::TooManyUnauthenticatedFromAddress)
        );
        assert!(limits.admit(ip("2001:db8:1:3::1")).is_ok(), "another /64");
        // An IPv4-mapped IPv6 address is its IPv4 address.
        let _v4 = limits.admit(A).unwrap();
        let _mapped = limits.admit(ip("::ffff:192.0.2.1")).unwrap();
        assert_eq!(
            limits.admit(A).err(),
            Some(Refusal::TooManyUnauthenticatedFromAddress)
        );
        // SASL failures are counted per group too.
        let now = Instant::now();
        assert_eq!(limits.record_auth_failure(ip("2001:db8::1"), now).0, 1);
        assert_eq!(limits.record_auth_failure(ip("2001:db8::2"), now).0, 2);
        assert_eq!(limits.record_auth_failure(ip("::ffff:192.0.2.2"), now).0, 1);
        assert_eq!(limits.record_auth_failure(B, now).0, 2);
    }

    #[test]
    fn sessions_per_address_are_capped_only_when_asked() {
        let limits = PeerLimits::new(PeerSettings {
            max_sessions_per_ip: 2,
            ..PeerSettings::default()
        });
        let mut admissions: Vec<Admission> = (0..3).map(|_| limits.admit(A).unwrap()).collect();
        for admission in &mut admissions[..2] {
            admission.authenticated();
            assert_eq!(limits.bind_session(admission), Ok(()));
        }
        // Asking again does not count twice.
        assert_eq!(limits.bind_session(&mut admissions[0]), Ok(()));
        assert_eq!(
            limits.bind_session(&mut admissions[2]),
            Err(TooManySessionsFromAddress)
        );
        let mut other = limits.admit(B).unwrap();
        assert_eq!(limits.bind_session(&mut other), Ok(()));
        admissions.remove(0);
        assert_eq!(limits.bind_session(&mut admissions[1]), Ok(()));
    }

    #[test]
    fn authenticating_frees_the_unauthenticated_slot() {
        let limits = limits(10, 1);
        let mut first = limits.admit(A).unwrap();
        assert_eq!(limits.admit(B).err(), Some(Refusal::TooManyUnauthenticated));
        // The refused connection gave its per-address count back.
        assert_eq!(lock(&limits.unauthenticated_per_ip).get(&B), None);
        first.authenticated();
        assert_eq!(lock(&limits.unauthenticated_per_ip).get(&A), None);
        assert!(limits.admit(B).is_ok());
    }

    #[test]
    fn reconfigure_applies_to_new_admissions_and_failures() {
        let limits = limits(1, 100);
        let _first = limits.admit(A).unwrap();
        assert_eq!(
            limits.admit(A).err(),
            Some(Refusal::TooManyUnauthenticatedFromAddress)
        );
        limits.reconfigure(PeerSettings {
            max_unauthenticated_per_ip: 2,
            max_unauthenticated: 2,
            auth_failure_delay: Duration::from_millis(10),
            ..PeerSettings::default()
        });
        let _second = limits.admit(A).unwrap();
        // Two connections are unauthenticated now, the new total cap.
        assert_eq!(limits.admit(B).err(), Some(Refusal::TooManyUnauthenticated));
        assert_eq!(
            limits.record_auth_failure(A, Instant::now()).1,
            Duration::from_millis(10)
        );
    }

    #[test]
    fn auth_failure_delay_doubles_up_to_the_maximum_and_expires() {
        let limits = limits(10, 10);
        let t0 = Instant::now();
        let delays: Vec<u64> = (0..6)
            .map(|_| limits.record_auth_failure(A, t0).1.as_millis() as u64)
            .collect();
        assert_eq!(delays, [100, 200, 400, 800, 1000, 1000]);
        assert_eq!(
            limits.record_auth_failure(B, t0),
            (1, Duration::from_millis(100))
        );
        let later = t0 + Duration::from_secs(61);
        assert_eq!(
            limits.record_auth_failure(A, later),
            (1, Duration::from_millis(100))
        );
    }

    #[test]
    fn token_bucket_pauses_until_the_debt_is_paid() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::new(1000, 500, t0);
        bucket.consume(400, t0);
        assert_eq!(bucket.resume_at(t0), None);
        bucket.consume(600, t0);
        // 500 bytes of debt at 1000 bytes/s: half a second.
        assert_eq!(bucket.resume_at(t0), Some(t0 + Duration::from_millis(500)));
        assert_eq!(bucket.resume_at(t0 + Duration::from_millis(500)), None);
        // Never more than the burst accumulates.
        let idle = t0 + Duration::from_secs(100);
        bucket.consume(501, idle);
        assert!(bucket.resume_at(idle).is_some());
    }

    #[test]
    fn token_bucket_rate_change_keeps_the_debt() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::new(100, 100, t0);
        bucket.consume(1100, t0);
        bucket.set_rate(1000, t0);
        assert_eq!(bucket.resume_at(t0), Some(t0 + Duration::from_secs(1)));
    }
}
