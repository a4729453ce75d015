//! Keeps each host's SCRAM offer in step with its accounts' keys (`starling_sasl::ScramOffers`,
//! read by every stream engine when it lists mechanisms).
//!
//! The keys are counted in storage (`AccountStore::key_coverage`) at start, before the
//! listeners open, then by one task: within [`UPGRADE_SETTLE`] of a PLAIN login that added
//! keys, on SIGHUP (the policy may have changed), and every [`RECOUNT_INTERVAL`], which
//! notices accounts written by another process (`restore --force`). Counting rather than
//! keeping a tally in memory means no drift between what storage holds and what is offered;
//! a count is one indexed statement per host, and a burst of upgrades costs one count per
//! [`UPGRADE_SETTLE`].

use std::sync::Arc;
use std::time::Duration;

use starling_sasl::{KeyCoverage, OfferPolicy, ScramHash, ScramHashes, ScramOffers};
use starling_storage::{AccountStore, StorageError};
use tokio::sync::{Notify, watch};
use tracing::{error, info};

use super::shared::Shared;

/// How often the keys are counted when nothing asks for it.
pub const RECOUNT_INTERVAL: Duration = Duration::from_secs(60);

/// The least time between two counts: upgrades arriving together are counted once.
pub const UPGRADE_SETTLE: Duration = Duration::from_secs(1);

/// The offers table and what asks for a recount.
pub struct OfferKeeper {
    offers: Arc<ScramOffers>,
    recount: Notify,
}

impl OfferKeeper {
    /// Every host of `hosts` offering every hash until the first count.
    pub fn new(hosts: &[String]) -> Self {
        Self {
            offers: Arc::new(ScramOffers::new(hosts)),
            recount: Notify::new(),
        }
    }

    /// The table the stream engines read.
    pub fn offers(&self) -> &Arc<ScramOffers> {
        &self.offers
    }

    /// Ask for a count soon: keys were added, or the policy may have changed.
    pub fn recount_soon(&self) {
        self.recount.notify_one();
    }

    /// Counts every host's keys now and applies `policy`, logging each host whose offer
    /// changes (and, the first time, every host's). A host whose count fails keeps its offer.
    pub async fn recount(&self, store: &impl AccountStore, policy: OfferPolicy, first: bool) {
        let hosts: Vec<String> = self.offers.hosts().map(str::to_owned).collect();
        for host in hosts {
            let coverage = match store.key_coverage(&host).await {
                Ok(coverage) => coverage,
                Err(err) => {
                    error!(%host, error = %err, "cannot count SCRAM keys; the host keeps its SASL offer");
                    continue;
                }
            };
            let hashes = policy.hashes(&coverage);
            let before = self.offers.set(&host, hashes);
            if first || before != Some(hashes) {
                info!(
                    %host,
                    offers = %names(hashes),
                    accounts = coverage.accounts,
                    lacking_sha1 = coverage.lacking(ScramHash::Sha1),
                    lacking_sha256 = coverage.lacking(ScramHash::Sha256),
                    "SCRAM mechanisms offered"
                );
            }
        }
    }

    /// Counts whenever asked, at most once per [`UPGRADE_SETTLE`], and every
    /// [`RECOUNT_INTERVAL`], until `shutdown` turns true.
    pub async fn run(shared: Arc<Shared>, mut shutdown: watch::Receiver<bool>) {
        let keeper = &shared.offers;
        loop {
            tokio::select! {
                () = keeper.recount.notified() => {}
                () = tokio::time::sleep(RECOUNT_INTERVAL) => {}
                _ = shutdown.wait_for(|stopping| *stopping) => return,
            }
            // Let the upgrades of a burst land before counting them all at once.
            tokio::time::sleep(UPGRADE_SETTLE).await;
            let policy = shared.live().config.c2s.scram_offer.policy();
            keeper.recount(&shared.store, policy, false).await;
        }
    }
}

/// `starling hash-report`: per host, the accounts lacking each hash and what the host offers
/// under `policy`; one line each.
pub async fn report(
    store: &impl AccountStore,
    hosts: &[String],
    policy: OfferPolicy,
    policy_name: &str,
) -> Result<Vec<String>, StorageError> {
    let mut lines = Vec::new();
    for host in hosts {
        let coverage = store.key_coverage(host).await?;
        lines.push(report_line(host, &coverage, policy, policy_name));
    }
    Ok(lines)
}

fn report_line(
    host: &str,
    coverage: &KeyCoverage,
    policy: OfferPolicy,
    policy_name: &str,
) -> String {
    let lacking: Vec<String> = ScramHash::ALL
        .iter()
        .map(|hash| format!("lacking SCRAM-{}: {}", hash.name(), coverage.lacking(*hash)))
        .collect();
    let without_keys = if coverage.without_keys > 0 {
        format!(" ({} without any keys)", coverage.without_keys)
    } else {
        String::new()
    };
    format!(
        "{host}: {} account(s){without_keys}; {}; offers {} (scram_offer = \"{policy_name}\")",
        coverage.accounts,
        lacking.join(", "),
        names(policy.hashes(coverage)),
    )
}

/// The SCRAM mechanisms of `hashes`, strongest first, e.g. "SCRAM-SHA-256, SCRAM-SHA-1";
/// "no SCRAM (PLAIN only)" for none.
fn names(hashes: ScramHashes) -> String {
    let names: Vec<String> = ScramHash::ALL
        .iter()
        .rev()
        .filter(|hash| hashes.contains(**hash))
        .map(|hash| format!("SCRAM-{}", hash.name()))
        .collect();
    if names.is_empty() {
        "no SCRAM (PLAIN only)".to_owned()
    } else {
        names.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use jid::BareJid;
    use starling_sasl::{ScramKeys, StoredCredentials};
    use starling_storage::SqliteStore;

    use super::*;

    fn keys(hash: ScramHash) -> ScramKeys {
        ScramKeys::derive(hash, "pw", b"salt", 1).unwrap()
    }

    async fn add(store: &SqliteStore, jid: &str, hashes: &[ScramHash]) {
        let creds = StoredCredentials {
            keys: hashes.iter().map(|hash| keys(*hash)).collect(),
        };
        store
            .create_account(&BareJid::new(jid).unwrap(), &creds)
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn counts_set_each_hosts_offer_and_follow_upgrades() {
        let store = SqliteStore::open_in_memory().unwrap();
        add(
            &store,
            "a@one.example",
            &[ScramHash::Sha1, ScramHash::Sha256],
        )
        .await;
        add(&store, "b@one.example", &[ScramHash::Sha1]).await;
        add(
            &store,
            "c@two.example",
            &[ScramHash::Sha1, ScramHash::Sha256],
        )
        .await;
        let hosts = ["one.example".to_owned(), "two.example".to_owned()];
        let keeper = OfferKeeper::new(&hosts);
        keeper.recount(&store, OfferPolicy::Complete, true).await;
        let offers = keeper.offers();
        assert_eq!(
            offers.get("one.example"),
            ScramHashes::only(ScramHash::Sha1)
        );
        assert_eq!(offers.get("two.example"), ScramHashes::ALL);
        let lines = report(&store, &hosts, OfferPolicy::Complete, "complete")
            .await
            .unwrap();
        assert_eq!(
            lines,
            [
                "one.example: 2 account(s); lacking SCRAM-SHA-1: 0, lacking SCRAM-SHA-256: 1; \
                 offers SCRAM-SHA-1 (scram_offer = \"complete\")",
                "two.example: 1 account(s); lacking SCRAM-SHA-1: 0, lacking SCRAM-SHA-256: 0; \
                 offers SCRAM-SHA-256, SCRAM-SHA-1 (scram_offer = \"complete\")",
            ]
        );

        // b logs in with PLAIN and gets SHA-256 keys: the next count offers SHA-256 on one.
        let b = BareJid::new("b@one.example").unwrap();
        store
            .add_missing_keys(&b, &keys(ScramHash::Sha1), &[keys(ScramHash::Sha256)])
            .await
            .unwrap();
        keeper.recount(&store, OfferPolicy::Complete, false).await;
        assert_eq!(offers.get("one.example"), ScramHashes::ALL);

        // An operator who wants every hash offered regardless gets it.
        add(&store, "d@two.example", &[]).await;
        add(&store, "e@two.example", &[ScramHash::Sha256]).await;
        keeper.recount(&store, OfferPolicy::Complete, false).await;
        assert_eq!(
            offers.get("two.example"),
            ScramHashes::only(ScramHash::Sha256)
        );
        keeper.recount(&store, OfferPolicy::Always, false).await;
        assert_eq!(offers.get("two.example"), ScramHashes::ALL);
        let lines = report(&store, &hosts[1..], OfferPolicy::Always, "always")
            .await
            .unwrap();
        assert_eq!(
            lines,
            [
                "two.example: 3 account(s) (1 without any keys); lacking SCRAM-SHA-1: 1, \
              lacking SCRAM-SHA-256: 0; offers SCRAM-SHA-256, SCRAM-SHA-1 (scram_offer = \"always\")"
            ]
        );
    }

    #[test]
    fn names_strongest_first() {
        assert_eq!(names(ScramHashes::ALL), "SCRAM-SHA-256, SCRAM-SHA-1");
        assert_eq!(names(ScramHashes::NONE), "no SCRAM (PLAIN only)");
    }
}
