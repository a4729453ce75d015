//! `[stream_management]`: XEP-0198 acknowledgements and resumption.

use serde::Deserialize;

/// `[stream_management]`: XEP-0198 stream management for client streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StreamManagement {
    /// Offer stream management (`<sm xmlns='urn:xmpp:sm:3'/>`). Default true.
    pub enabled: bool,
    /// Seconds a session whose connection broke is kept for resumption, the `max` the server
    /// grants in `<enabled/>` (a client asking for less gets less). 0 offers acknowledgements
    /// without resumption. Default 300.
    pub resume_window_secs: u32,
    /// Ask the client for an acknowledgement after this many unacknowledged stanzas.
    /// Default 5.
    pub ack_request_every: u32,
    /// Or once a stanza has waited this many milliseconds without one. Default 2000.
    pub ack_request_after_ms: u32,
    /// Stanzas a client may leave unacknowledged; past it the stream ends with
    /// `<policy-violation/>` and what it did not acknowledge is delivered elsewhere or kept
    /// offline. Default 1000.
    pub max_unacked_stanzas: usize,
}

impl Default for StreamManagement {
    fn default() -> Self {
        Self {
            enabled: true,
            resume_window_secs: starling_stream::DEFAULT_RESUME_WINDOW_SECS,
            ack_request_every: starling_stream::DEFAULT_ACK_REQUEST_EVERY,
            ack_request_after_ms: starling_stream::DEFAULT_ACK_REQUEST_AFTER_MS,
            max_unacked_stanzas: starling_stream::DEFAULT_MAX_UNACKED,
        }
    }
}

impl StreamManagement {
    /// The stream engine's settings; `None` when stream management is off.
    pub fn engine(&self) -> Option<starling_stream::SmConfig> {
        self.enabled.then_some(starling_stream::SmConfig {
            resume_window_secs: self.resume_window_secs,
            request_every: self.ack_request_every.max(1),
            request_after_ms: self.ack_request_after_ms.max(1),
            max_unacked: self.max_unacked_stanzas.max(1),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_engine_and_off_means_none() {
        let config = StreamManagement::default();
        assert_eq!(config.engine(), Some(starling_stream::SmConfig::default()));
        let off = StreamManagement {
            enabled: false,
            ..config
        };
        assert_eq!(off.engine(), None);
        let parsed: StreamManagement =
            toml::from_str("resume_window_secs = 0\nack_request_every = 0").unwrap();
        let engine = parsed.engine().unwrap();
        assert_eq!(engine.resume_window_secs, 0);
        assert_eq!(engine.request_every, 1, "at least one");
    }
}
