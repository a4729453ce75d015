//! One connection's deadlines: the authentication deadline, the idle ping and its answer, and
//! when a quiet session gives back the memory it does not need.
//!
//! Every deadline is measured from an event only the connection task sees with a timestamp —
//! the accept, the last socket read, the ping — so the task reports those events here and asks
//! which deadline comes next ([`Deadlines::next`]); what happens when one passes (the idle
//! probe, the timeout's stream error) is the engine's. Times are passed in, so the arithmetic
//! is tested without sleeping.

use std::time::{Duration, Instant};

use crate::ConnectionLimits;

/// Silence after which a bound session gives back the memory an idle stream does not need
/// (the XML tokenizer's buffers; see `C2sStream::release_idle_memory`). Long enough that a
/// chatting client never pays for waking the parser up, short enough that the thousands of
/// idle sessions a server mostly holds stay small.
pub const RELEASE_IDLE_MEMORY_AFTER: Duration = Duration::from_secs(2);

/// Which deadline [`Deadlines::next`] chose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deadline {
    /// `c2s.auth_timeout_secs` since the accept, until a resource is bound.
    Auth,
    /// `c2s.idle_timeout_secs` of silence from a bound session.
    Idle,
    /// `c2s.idle_ping_timeout_secs` after the idle ping.
    PingAnswer,
    /// [`RELEASE_IDLE_MEMORY_AFTER`] of silence from a bound session.
    ReleaseIdleMemory,
}

/// The events one connection's deadlines are measured from.
#[derive(Debug, Clone)]
pub struct Deadlines {
    /// `c2s.auth_timeout_secs` after the accept; applies until a resource is bound.
    auth_deadline: Instant,
    /// `c2s.idle_timeout_secs`.
    idle_timeout: Duration,
    /// `c2s.idle_ping_timeout_secs`.
    idle_ping_timeout: Duration,
    /// When the peer last sent anything (for the idle ping).
    last_read: Instant,
    /// When the idle ping went out, if it is unanswered.
    pinged_at: Option<Instant>,
    /// Whether the memory an idle connection can give back is given back.
    idle_memory: IdleMemory,
}

impl Deadlines {
    /// A connection accepted at `accepted`.
    pub fn new(limits: &ConnectionLimits, accepted: Instant) -> Self {
        Self {
            auth_deadline: accepted + limits.auth_timeout,
            idle_timeout: limits.idle_timeout,
            idle_ping_timeout: limits.idle_ping_timeout,
            last_read: accepted,
            pinged_at: None,
            idle_memory: IdleMemory::InUse,
        }
    }

    /// The peer sent something at `now`: it is not idle, and any ping is answered.
    pub fn read(&mut self, now: Instant) {
        self.last_read = now;
        self.pinged_at = None;
        self.idle_memory = IdleMemory::InUse;
    }

    /// A stanza or close request for the session came at `now`, regrowing released queues.
    pub fn delivered(&mut self, now: Instant) {
        if self.idle_memory != IdleMemory::InUse {
            self.idle_memory = IdleMemory::RegrownAt(now);
        }
    }

    /// The idle ping went out at `now`.
    pub fn pinged(&mut self, now: Instant) {
        self.pinged_at = Some(now);
    }

    /// The idle memory was given back.
    pub fn released(&mut self) {
        self.idle_memory = IdleMemory::Released;
    }

    /// The next deadline and which it is; before binding (`is_bound` false) only the
    /// authentication deadline applies.
    pub fn next(&self, is_bound: bool) -> (Instant, Deadline) {
        if !is_bound {
            return (self.auth_deadline, Deadline::Auth);
        }
        let release_at = match self.idle_memory {
            IdleMemory::InUse => Some(self.last_read + RELEASE_IDLE_MEMORY_AFTER),
            IdleMemory::Released => None,
            IdleMemory::RegrownAt(at) => Some(at + RELEASE_IDLE_MEMORY_AFTER),
        };
        let ping = match self.pinged_at {
            None => (self.last_read + self.idle_timeout, Deadline::Idle),
            Some(pinged_at) => (pinged_at + self.idle_ping_timeout, Deadline::PingAnswer),
        };
        match release_at {
            Some(release_at) if release_at < ping.0 => (release_at, Deadline::ReleaseIdleMemory),
            _ => ping,
        }
    }
}

/// The memory a quiet connection gives back (the parser's tokenizer, emptied queues).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum IdleMemory {
    /// Since the last read: released [`RELEASE_IDLE_MEMORY_AFTER`] after it. Stanzas handed to
    /// the connection meanwhile do not postpone that, or a resource whose contacts keep
    /// changing presence would never release its parser.
    InUse,
    /// Released, and nothing has taken memory again since.
    Released,
    /// Released, then a stanza or close request came at this time; the queues it regrew are
    /// released again once deliveries have been quiet for [`RELEASE_IDLE_MEMORY_AFTER`].
    RegrownAt(Instant),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deadlines(t0: Instant) -> Deadlines {
        let limits = ConnectionLimits {
            auth_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            idle_ping_timeout: Duration::from_secs(10),
            read_bytes_per_sec_unauthenticated: 1,
            read_bytes_per_sec: 1,
            read_burst_bytes: 1,
            tls_handshake_timeout: Duration::from_secs(1),
        };
        Deadlines::new(&limits, t0)
    }

    #[test]
    fn only_the_auth_deadline_applies_before_binding() {
        let t0 = Instant::now();
        let mut deadlines = deadlines(t0);
        deadlines.read(t0 + Duration::from_secs(20));
        assert_eq!(
            deadlines.next(false),
            (t0 + Duration::from_secs(30), Deadline::Auth)
        );
    }

    #[test]
    fn a_bound_session_releases_memory_then_is_pinged_then_times_out() {
        let t0 = Instant::now();
        let secs = |n| t0 + Duration::from_secs(n);
        let mut deadlines = deadlines(t0);
        deadlines.read(secs(1));
        assert_eq!(deadlines.next(true), (secs(3), Deadline::ReleaseIdleMemory));
        deadlines.released();
        assert_eq!(deadlines.next(true), (secs(61), Deadline::Idle));
        // A delivery regrows the queues, which are released again after a quiet spell;
        // it does not postpone the ping.
        deadlines.delivered(secs(50));
        assert_eq!(
            deadlines.next(true),
            (secs(52), Deadline::ReleaseIdleMemory)
        );
        deadlines.released();
        deadlines.pinged(secs(61));
        assert_eq!(deadlines.next(true), (secs(71), Deadline::PingAnswer));
        // An answer (any read) starts the idle wait again.
        deadlines.read(secs(65));
        assert_eq!(
            deadlines.next(true),
            (secs(67), Deadline::ReleaseIdleMemory)
        );
    }
}
