//! The counters of §4 and the unacknowledged-stanza queue of §5.

use std::collections::VecDeque;

use starling_stanza::OutboundStanza;

/// Why an `<a h/>` cannot be applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AckError {
    /// The peer acknowledged more stanzas than were sent to it (§4: the stream ends with
    /// `<undefined-condition/>` and `<handled-count-too-high/>`).
    #[error("the peer acknowledged {h} stanzas, but only {sent} were sent")]
    TooHigh {
        /// The value the peer sent.
        h: u32,
        /// How many stanzas were sent since stream management was enabled (mod 2^32).
        sent: u32,
    },
}

/// Both directions' counts and the stanzas the peer has not acknowledged yet.
#[derive(Debug, Default, Clone)]
pub struct Acks {
    /// Stanzas handled from the peer since `<enabled/>` (the `h` we report), mod 2^32.
    handled: u32,
    /// The peer's last `h`: stanzas of ours it acknowledged, mod 2^32.
    acked: u32,
    /// Sent and not acknowledged, oldest first; stanza number `acked + 1` is at the front.
    unacked: VecDeque<OutboundStanza>,
    /// Bytes of `unacked`.
    unacked_bytes: usize,
    /// Stanzas sent since the last `<r/>`.
    since_request: u32,
    /// An `<r/>` went out and no `<a/>` has come back since.
    request_outstanding: bool,
}

impl Acks {
    /// One stanza from the peer was handled.
    pub fn handled_one(&mut self) {
        self.handled = self.handled.wrapping_add(1);
    }

    /// The `h` to report: stanzas handled from the peer, mod 2^32.
    pub fn handled(&self) -> u32 {
        self.handled
    }

    /// The peer's last `h`: how many of our stanzas it acknowledged, mod 2^32.
    pub fn acked(&self) -> u32 {
        self.acked
    }

    /// The state as it was saved: both counts and the unacknowledged stanzas, oldest first.
    pub fn restore(handled: u32, acked: u32, unacked: Vec<OutboundStanza>) -> Self {
        let unacked_bytes = unacked.iter().map(OutboundStanza::len).sum();
        Self {
            handled,
            acked,
            unacked: unacked.into(),
            unacked_bytes,
            since_request: 0,
            request_outstanding: false,
        }
    }

    /// A stanza was written to the peer; it stays queued until acknowledged.
    pub fn sent(&mut self, stanza: OutboundStanza) {
        self.unacked_bytes += stanza.len();
        self.unacked.push_back(stanza);
        self.since_request = self.since_request.saturating_add(1);
    }

    /// How many stanzas were sent since stream management was enabled, mod 2^32.
    pub fn sent_count(&self) -> u32 {
        // The queue never holds 2^32 stanzas: the engine's limit is far below.
        self.acked.wrapping_add(self.unacked.len() as u32)
    }

    /// The peer acknowledged `h` stanzas in all (§4). Returns how many were newly
    /// acknowledged; those leave the queue. The same `h` again acknowledges nothing new; an
    /// `h` above the count sent (or behind the last one) is an error and changes nothing.
    pub fn on_ack(&mut self, h: u32) -> Result<usize, AckError> {
        self.request_outstanding = false;
        let newly = h.wrapping_sub(self.acked) as usize;
        if newly > self.unacked.len() {
            // Either more than we sent, or an old h from before the last one (a wrapped
            // difference looks huge). The latter cannot happen on one ordered stream.
            return Err(AckError::TooHigh {
                h,
                sent: self.sent_count(),
            });
        }
        for stanza in self.unacked.drain(..newly) {
            self.unacked_bytes -= stanza.len();
        }
        self.acked = h;
        Ok(newly)
    }

    /// The unacknowledged stanzas, oldest first.
    pub fn unacked(&self) -> impl Iterator<Item = &OutboundStanza> {
        self.unacked.iter()
    }

    /// How many stanzas wait for an acknowledgement.
    pub fn unacked_len(&self) -> usize {
        self.unacked.len()
    }

    /// Bytes of the stanzas waiting for an acknowledgement.
    pub fn unacked_bytes(&self) -> usize {
        self.unacked_bytes
    }

    /// Takes the unacknowledged stanzas out (the session ends; §5 says what becomes of them).
    pub fn take_unacked(&mut self) -> VecDeque<OutboundStanza> {
        self.unacked_bytes = 0;
        std::mem::take(&mut self.unacked)
    }

    /// Whether to ask for an acknowledgement now: no `<r/>` is outstanding and `every`
    /// stanzas (at least one) went out since the last.
    pub fn wants_request(&self, every: u32) -> bool {
        !self.request_outstanding && self.since_request >= every.max(1)
    }

    /// Whether anything is waiting for an acknowledgement and no `<r/>` asks for it yet.
    pub fn has_unrequested(&self) -> bool {
        !self.request_outstanding && self.since_request > 0 && !self.unacked.is_empty()
    }

    /// An `<r/>` was written.
    pub fn requested(&mut self) {
        self.request_outstanding = true;
        self.since_request = 0;
    }

    /// Gives back spare queue capacity (an idle session).
    pub fn shrink(&mut self) {
        if self.unacked.is_empty() {
            self.unacked = VecDeque::new();
        } else {
            self.unacked.shrink_to_fit();
        }
    }
}

/// What resuming a session needs besides the counters (§5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resumption {
    /// The id given in `<enabled id/>`, the `previd` a resuming stream names.
    pub id: String,
    /// How long the session is kept after its connection broke, in seconds (`max`).
    pub window_secs: u32,
}

/// Stream management of one session: the counts and queue, and resumption if it was asked for.
#[derive(Debug, Clone)]
pub struct SmSession {
    /// Counters and the unacknowledged stanzas.
    pub acks: Acks,
    /// `Some` when the client asked for resumption and the server allowed it.
    pub resumption: Option<Resumption>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stanza(id: u32) -> OutboundStanza {
        let element: minidom::Element = format!("<message xmlns='jabber:client' id='m{id}'/>")
            .parse()
            .unwrap();
        OutboundStanza::new(&element)
    }

    fn ids(acks: &Acks) -> Vec<String> {
        acks.unacked()
            .map(|s| {
                let text = String::from_utf8(s.bytes().to_vec()).unwrap();
                let start = text.find("id=").unwrap() + 4;
                text[start..start + 2].to_owned()
            })
            .collect()
    }

    #[test]
    fn acks_remove_what_the_peer_handled_in_order() {
        let mut acks = Acks::default();
        for id in 1..=4 {
            acks.sent(stanza(id));
        }
        assert_eq!(acks.sent_count(), 4);
        assert_eq!(acks.on_ack(2), Ok(2));
        assert_eq!(ids(&acks), ["m3", "m4"]);
        // The same h again acknowledges nothing new.
        assert_eq!(acks.on_ack(2), Ok(0));
        assert_eq!(acks.on_ack(4), Ok(2));
        assert_eq!(acks.unacked_len(), 0);
        assert_eq!(acks.unacked_bytes(), 0);
    }

    #[test]
    fn an_h_above_what_was_sent_is_refused_and_changes_nothing() {
        let mut acks = Acks::default();
        acks.sent(stanza(1));
        assert_eq!(acks.on_ack(2), Err(AckError::TooHigh { h: 2, sent: 1 }));
        assert_eq!(acks.unacked_len(), 1);
        // An h from before the last one wraps to a huge difference: refused as well.
        acks.sent(stanza(2));
        assert_eq!(acks.on_ack(2), Ok(2));
        assert_eq!(
            acks.on_ack(1),
            Err(AckError::TooHigh { h: 1, sent: 2 }),
            "going backwards"
        );
    }

    #[test]
    fn counters_wrap_at_two_to_the_32() {
        let mut acks = Acks {
            handled: u32::MAX,
            acked: u32::MAX - 1,
            ..Acks::default()
        };
        acks.handled_one();
        assert_eq!(acks.handled(), 0);
        acks.sent(stanza(1));
        acks.sent(stanza(2));
        acks.sent(stanza(3));
        assert_eq!(acks.sent_count(), 1);
        assert_eq!(acks.on_ack(0), Ok(2));
        assert_eq!(acks.on_ack(1), Ok(1));
        assert_eq!(acks.unacked_len(), 0);
    }

    #[test]
    fn requests_are_asked_for_every_n_stanzas_and_one_at_a_time() {
        let mut acks = Acks::default();
        assert!(!acks.wants_request(2));
        assert!(!acks.has_unrequested());
        acks.sent(stanza(1));
        assert!(!acks.wants_request(2));
        assert!(acks.has_unrequested());
        acks.sent(stanza(2));
        assert!(acks.wants_request(2));
        acks.requested();
        acks.sent(stanza(3));
        acks.sent(stanza(4));
        assert!(!acks.wants_request(2), "one <r/> outstanding at a time");
        assert_eq!(acks.on_ack(2), Ok(2));
        assert!(acks.wants_request(2));
    }

    #[test]
    fn taking_the_unacked_leaves_an_empty_queue() {
        let mut acks = Acks::default();
        acks.sent(stanza(1));
        acks.sent(stanza(2));
        let taken = acks.take_unacked();
        assert_eq!(taken.len(), 2);
        assert_eq!(acks.unacked_bytes(), 0);
        assert_eq!(acks.unacked_len(), 0);
    }
}
