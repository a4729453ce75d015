//! Which SCRAM hashes a host offers: only those every account on it can complete.
//!
//! An account imported from another server may carry keys for one hash only (Prosody keeps
//! SCRAM-SHA-1 by default). Offering SCRAM-SHA-256 on its host would lock its user out: a
//! client picks the strongest offered mechanism and gets `<not-authorized/>` with the right
//! password. So the mechanisms offered on a host leave out every hash that some account with
//! keys lacks ([`KeyCoverage::complete_hashes`]); -PLUS variants follow their hash. The offer
//! is per host, fixed before the client names a user, so it reveals nothing about any
//! account. Accounts without any keys cannot log in by any mechanism and do not count.
//!
//! The server keeps the current offer of each host in a [`ScramOffers`] table it shares with
//! the stream engines, and updates it from storage as keys are added.

use std::sync::atomic::{AtomicU8, Ordering};

use crate::credentials::ScramHash;

/// A set of SCRAM hashes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ScramHashes(u8);

impl ScramHashes {
    /// No hash.
    pub const NONE: ScramHashes = ScramHashes(0);
    /// Every hash this build implements.
    pub const ALL: ScramHashes = ScramHashes(0b11);

    /// The set holding only `hash`.
    pub fn only(hash: ScramHash) -> Self {
        ScramHashes(bit(hash))
    }

    /// Whether `hash` is in the set.
    pub fn contains(self, hash: ScramHash) -> bool {
        self.0 & bit(hash) != 0
    }

    /// The set with `hash` added.
    #[must_use]
    pub fn with(self, hash: ScramHash) -> Self {
        ScramHashes(self.0 | bit(hash))
    }

    /// The set with `hash` removed.
    #[must_use]
    pub fn without(self, hash: ScramHash) -> Self {
        ScramHashes(self.0 & !bit(hash))
    }

    /// True when the set holds no hash.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The hashes in the set, in [`ScramHash::ALL`] order.
    pub fn iter(self) -> impl Iterator<Item = ScramHash> {
        ScramHash::ALL
            .into_iter()
            .filter(move |hash| self.contains(*hash))
    }
}

fn bit(hash: ScramHash) -> u8 {
    match hash {
        ScramHash::Sha1 => 0b01,
        ScramHash::Sha256 => 0b10,
    }
}

/// How many accounts of one host hold keys for each hash, as storage counts them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyCoverage {
    /// Every account of the host.
    pub accounts: u64,
    /// Accounts with no keys at all (they cannot log in with any mechanism).
    pub without_keys: u64,
    /// For each hash, the accounts holding keys for it.
    pub with_hash: Vec<(ScramHash, u64)>,
}

impl KeyCoverage {
    /// Accounts that have keys, but none for `hash`: they cannot complete that SCRAM
    /// mechanism until they get keys for it.
    pub fn lacking(&self, hash: ScramHash) -> u64 {
        let holding = self
            .with_hash
            .iter()
            .find(|(h, _)| *h == hash)
            .map_or(0, |(_, n)| *n);
        self.accounts
            .saturating_sub(self.without_keys)
            .saturating_sub(holding)
    }

    /// The hashes every account with keys holds: what the host may offer. A host without
    /// accounts offers every hash (whoever is created next gets keys for all of them).
    pub fn complete_hashes(&self) -> ScramHashes {
        ScramHash::ALL
            .into_iter()
            .filter(|hash| self.lacking(*hash) == 0)
            .fold(ScramHashes::NONE, ScramHashes::with)
    }
}

/// What a server offers of the SCRAM hashes, per the operator's choice (`c2s.scram_offer`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OfferPolicy {
    /// Offer a hash on a host only when every account there with keys holds it (the default).
    #[default]
    Complete,
    /// Offer every hash everywhere; accounts without keys for the chosen one fail it.
    Always,
}

impl OfferPolicy {
    /// The hashes a host with this coverage offers.
    pub fn hashes(self, coverage: &KeyCoverage) -> ScramHashes {
        match self {
            OfferPolicy::Complete => coverage.complete_hashes(),
            OfferPolicy::Always => ScramHashes::ALL,
        }
    }
}

/// The SCRAM hashes each served host offers now, shared between the server, which updates a
/// host's entry when its accounts' keys change, and every stream engine, which reads it when it
/// lists or starts mechanisms. Hosts are fixed at construction; reads and writes are single
/// atomic loads and stores.
#[derive(Debug)]
pub struct ScramOffers {
    /// (normalised host, its offered hashes as [`ScramHashes`] bits).
    hosts: Vec<(String, AtomicU8)>,
}

impl ScramOffers {
    /// Every host offering every hash, until [`ScramOffers::set`] says otherwise.
    pub fn new(hosts: &[String]) -> Self {
        Self {
            hosts: hosts
                .iter()
                .map(|host| (host.clone(), AtomicU8::new(ScramHashes::ALL.0)))
                .collect(),
        }
    }

    /// What `host` offers now; every hash for a host not in the table.
    pub fn get(&self, host: &str) -> ScramHashes {
        self.entry(host).map_or(ScramHashes::ALL, |offer| {
            ScramHashes(offer.load(Ordering::Relaxed))
        })
    }

    /// Sets what `host` offers; returns what it offered before (`None` for a host not in the
    /// table, which is left alone).
    pub fn set(&self, host: &str, hashes: ScramHashes) -> Option<ScramHashes> {
        self.entry(host)
            .map(|offer| ScramHashes(offer.swap(hashes.0, Ordering::Relaxed)))
    }

    /// The hosts in the table, in construction order.
    pub fn hosts(&self) -> impl Iterator<Item = &str> {
        self.hosts.iter().map(|(host, _)| host.as_str())
    }

    fn entry(&self, host: &str) -> Option<&AtomicU8> {
        self.hosts
            .iter()
            .find(|(name, _)| name == host)
            .map(|(_, offer)| offer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn coverage(accounts: u64, without_keys: u64, sha1: u64, sha256: u64) -> KeyCoverage {
        KeyCoverage {
            accounts,
            without_keys,
            with_hash: vec![(ScramHash::Sha1, sha1), (ScramHash::Sha256, sha256)],
        }
    }

    #[test]
    fn a_hash_some_account_lacks_is_not_offered() {
        // A Prosody import: every account has SHA-1, two of five also SHA-256.
        let c = coverage(5, 0, 5, 2);
        assert_eq!(c.lacking(ScramHash::Sha1), 0);
        assert_eq!(c.lacking(ScramHash::Sha256), 3);
        assert_eq!(c.complete_hashes(), ScramHashes::only(ScramHash::Sha1));
        assert_eq!(
            OfferPolicy::Always.hashes(&c),
            ScramHashes::ALL,
            "the operator may offer everything anyway"
        );
    }

    #[test]
    fn the_offer_grows_once_the_last_account_gets_keys() {
        assert_eq!(
            coverage(5, 0, 5, 4).complete_hashes(),
            ScramHashes::only(ScramHash::Sha1)
        );
        assert_eq!(coverage(5, 0, 5, 5).complete_hashes(), ScramHashes::ALL);
    }

    #[test]
    fn accounts_without_keys_and_empty_hosts_do_not_hold_the_offer_back() {
        assert_eq!(coverage(3, 1, 2, 2).complete_hashes(), ScramHashes::ALL);
        assert_eq!(KeyCoverage::default().complete_hashes(), ScramHashes::ALL);
        // A hash missing from the counts is held by nobody.
        let c = KeyCoverage {
            accounts: 2,
            without_keys: 0,
            with_hash: vec![(ScramHash::Sha256, 2)],
        };
        assert_eq!(c.lacking(ScramHash::Sha1), 2);
        assert_eq!(c.complete_hashes(), ScramHashes::only(ScramHash::Sha256));
    }

    #[test]
    fn disjoint_keys_leave_no_hash_complete() {
        // One account with SHA-1 only, one with SHA-256 only.
        let c = coverage(2, 0, 1, 1);
        assert!(c.complete_hashes().is_empty());
    }

    #[test]
    fn inconsistent_counts_saturate_rather_than_wrap() {
        let c = coverage(1, 2, 5, 5);
        assert_eq!(c.lacking(ScramHash::Sha1), 0);
    }

    #[test]
    fn hash_sets() {
        let sha1 = ScramHashes::only(ScramHash::Sha1);
        assert!(sha1.contains(ScramHash::Sha1));
        assert!(!sha1.contains(ScramHash::Sha256));
        assert_eq!(sha1.with(ScramHash::Sha256), ScramHashes::ALL);
        assert_eq!(ScramHashes::ALL.without(ScramHash::Sha256), sha1);
        assert!(ScramHashes::NONE.is_empty());
        assert_eq!(
            ScramHashes::ALL.iter().collect::<Vec<_>>(),
            ScramHash::ALL.to_vec()
        );
    }

    #[test]
    fn offers_table_per_host() {
        let offers = ScramOffers::new(&["a.example".to_owned(), "b.example".to_owned()]);
        assert_eq!(offers.get("a.example"), ScramHashes::ALL);
        let sha1 = ScramHashes::only(ScramHash::Sha1);
        assert_eq!(offers.set("a.example", sha1), Some(ScramHashes::ALL));
        assert_eq!(offers.get("a.example"), sha1);
        assert_eq!(offers.get("b.example"), ScramHashes::ALL);
        assert_eq!(offers.set("c.example", sha1), None);
        assert_eq!(offers.get("c.example"), ScramHashes::ALL);
        assert_eq!(
            offers.hosts().collect::<Vec<_>>(),
            ["a.example", "b.example"]
        );
    }
}
