//! `[archive]`: the message archive (XEP-0313) module's policy and limits.

use std::time::Duration;

use serde::Deserialize;

/// `archive.default_prefs` values (XEP-0441 §2.1.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DefaultPrefs {
    /// Archive every message.
    Always,
    /// Archive nothing until the user asks for it.
    Never,
    /// Archive messages with contacts in the user's roster.
    Roster,
}

/// `[archive]`: what the message archive keeps and for how long. Every field has a default.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Archive {
    /// What is archived for accounts that have not set preferences of their own (XEP-0441):
    /// `"always"` (default), `"never"` or `"roster"`.
    pub default_prefs: DefaultPrefs,
    /// Results one query returns at most; a client's RSM `<max/>` above it is lowered to it.
    /// Default 100.
    pub max_page: usize,
    /// Bytes of messages (their serialized stanzas) one account's archive holds at most; a
    /// message that would pass it is not delivered and its sender gets
    /// `<resource-constraint/>` saying whose archive is full. 0 means no quota. Default
    /// 104857600 (100 MiB).
    pub max_bytes: u64,
    /// Messages older than this many days are removed by the retention sweep; 0 keeps them
    /// forever. Default 0.
    pub max_age_days: u64,
    /// The oldest messages of an archive holding more than this many are removed by the
    /// retention sweep; 0 keeps them all. Default 100000.
    pub max_messages: u64,
    /// Seconds between retention sweeps (the first runs at start). Default 3600.
    pub cleanup_interval_secs: u64,
    /// Messages one retention transaction removes at most, so a sweep never holds the
    /// database's writer for long. Default 1000.
    pub cleanup_batch: usize,
    /// Messages one archive transaction (group commit) carries at most. Default 512.
    pub write_batch: usize,
    /// JIDs an account's always and never lists (XEP-0441) hold together, at most; a
    /// preferences set past it gets `policy-violation`. Default 1000.
    pub max_prefs_jids: usize,
    /// Whether each message waits for its archive transaction to commit before it is
    /// delivered and its sender's next stanza is read, so a message the server has handled
    /// (and a XEP-0198 ack) is on disk. `false` delivers at once and commits in larger
    /// batches, one commit later, and a full archive then no longer refuses messages (they go
    /// on unarchived, logged). Default true.
    pub wait_for_commit: bool,
}

impl Default for Archive {
    fn default() -> Self {
        let settings = starling_mam::Settings::default();
        Self {
            default_prefs: match settings.default_rule {
                starling_mam::DefaultRule::Always => DefaultPrefs::Always,
                starling_mam::DefaultRule::Never => DefaultPrefs::Never,
                starling_mam::DefaultRule::Roster => DefaultPrefs::Roster,
            },
            max_page: settings.max_page,
            max_bytes: settings.quota.max_bytes,
            max_age_days: settings.max_age_days,
            max_messages: settings.max_messages,
            cleanup_interval_secs: settings.sweep_interval.as_secs(),
            cleanup_batch: settings.sweep_batch_rows,
            write_batch: settings.write_batch,
            max_prefs_jids: settings.max_prefs_jids,
            wait_for_commit: settings.wait_for_commit,
        }
    }
}

impl Archive {
    /// The module's settings, with the offline limits `limits` sets.
    pub fn settings(&self, limits: &crate::LimitsConfig) -> starling_mam::Settings {
        starling_mam::Settings {
            default_rule: match self.default_prefs {
                DefaultPrefs::Always => starling_mam::DefaultRule::Always,
                DefaultPrefs::Never => starling_mam::DefaultRule::Never,
                DefaultPrefs::Roster => starling_mam::DefaultRule::Roster,
            },
            max_page: self.max_page,
            quota: starling_storage::ArchiveQuota {
                max_bytes: match self.max_bytes {
                    0 => u64::MAX,
                    bytes => bytes,
                },
            },
            max_age_days: self.max_age_days,
            max_messages: self.max_messages,
            sweep_interval: Duration::from_secs(self.cleanup_interval_secs),
            sweep_batch_rows: self.cleanup_batch,
            write_batch: self.write_batch,
            max_prefs_jids: self.max_prefs_jids,
            wait_for_commit: self.wait_for_commit,
            offline_quota: starling_storage::OfflineQuota {
                max_messages: limits.max_offline_messages,
                max_bytes: limits.max_offline_bytes,
            },
        }
    }

    /// Values out of range, as (key, message).
    pub(crate) fn problems(&self) -> Vec<(String, String)> {
        [
            (self.max_page >= 1, "archive.max_page"),
            (
                self.cleanup_interval_secs >= 1,
                "archive.cleanup_interval_secs",
            ),
            (self.cleanup_batch >= 1, "archive.cleanup_batch"),
            (self.write_batch >= 1, "archive.write_batch"),
        ]
        .into_iter()
        .filter(|(ok, _)| !ok)
        .map(|(_, key)| (key.to_owned(), "must be at least 1".to_owned()))
        .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_modules_and_zero_bytes_is_no_quota() {
        // The offline quota is the router's limits' default, as the module's is.
        assert_eq!(
            Archive::default().settings(&crate::LimitsConfig::default()),
            starling_mam::Settings::default()
        );
        let unlimited = Archive {
            max_bytes: 0,
            ..Archive::default()
        };
        assert_eq!(
            unlimited
                .settings(&crate::LimitsConfig::default())
                .quota
                .max_bytes,
            u64::MAX
        );
        assert!(Archive::default().problems().is_empty());
        let zero = Archive {
            max_page: 0,
            write_batch: 0,
            ..Archive::default()
        };
        assert_eq!(
            zero.problems(),
            vec![
                (
                    "archive.max_page".to_owned(),
                    "must be at least 1".to_owned()
                ),
                (
                    "archive.write_batch".to_owned(),
                    "must be at least 1".to_owned()
                ),
            ]
        );
    }
}
