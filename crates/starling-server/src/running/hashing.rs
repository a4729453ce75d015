//! PLAIN password checks off the async reactor, on a fixed set of hashing threads.
//!
//! Each PLAIN attempt costs one PBKDF2 at the account's iteration count (a stand-in one for
//! unknown users). Run on a runtime worker, a burst of wrong passwords would stall every
//! session on that worker. So checks go to dedicated threads, half the cores' worth (at least
//! one), started once: a flood waits in their queue, holding no thread, and the other half of
//! the machine stays free for routing. *Why not `spawn_blocking` behind a semaphore:* measured
//! with `starling-loadgen login --mech PLAIN` on one pinned core in interleaved runs, that way
//! stayed at 878-899 logins/s in five runs, while these threads gave 864-992 and the old inline
//! check 873-1005 in four each. The likely cause is the pool starting a fresh thread whenever the next check arrived before
//! the finished thread was back in its idle list; a fixed set of threads has no such race.
//!
//! A check that matches on an account lacking keys for a hash also derives those keys here
//! (`PasswordCheck::run_upgrading`, fresh random salts), so the connection can store them: the
//! one extra PBKDF2 per missing hash happens once per account, on these threads too.

use std::sync::mpsc;
use std::sync::{Arc, Mutex, PoisonError};

use rand::Rng as _;
use starling_sasl::{CheckOutcome, KeyUpgrade, PasswordCheck, SALT_BYTES};
use starling_stream::Input;
use tokio::sync::oneshot;

/// One check and where its outcome goes.
type Job = (PasswordCheck, oneshot::Sender<CheckOutcome>);

/// The queue in front of the hashing threads; cheap to clone.
#[derive(Clone)]
pub struct PasswordChecks {
    jobs: mpsc::Sender<Job>,
}

impl PasswordChecks {
    /// Threads for this machine: half its cores (as the process's affinity sees them), at
    /// least one.
    pub fn for_this_machine() -> std::io::Result<Self> {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        Self::new((cores / 2).max(1))
    }

    /// Starts `threads` hashing threads (at least one); they end when every clone is dropped.
    pub fn new(threads: usize) -> std::io::Result<Self> {
        let (jobs, queue) = mpsc::channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        for n in 0..threads.max(1) {
            let queue = Arc::clone(&queue);
            std::thread::Builder::new()
                .name(format!("starling-hash-{n}"))
                .spawn(move || hash_until_closed(&queue))?;
        }
        Ok(Self { jobs })
    }

    /// Runs `check` on a hashing thread and returns the engine's answer:
    /// [`Input::PasswordChecked`], or [`Input::CredentialsUnavailable`] (a
    /// `temporary-auth-failure`) if the check could not run; with it, on a match, the keys
    /// for the hashes the account lacked, to store once the stream is authenticated.
    pub async fn run(&self, check: PasswordCheck) -> (Input<'static>, Option<KeyUpgrade>) {
        let (reply, outcome) = oneshot::channel();
        if self.jobs.send((check, reply)).is_err() {
            tracing::error!("the password hashing threads are gone");
            return (Input::CredentialsUnavailable, None);
        }
        match outcome.await {
            Ok(outcome) => (Input::PasswordChecked(outcome.matches), outcome.upgrade),
            Err(_) => {
                tracing::error!("a password check did not complete");
                (Input::CredentialsUnavailable, None)
            }
        }
    }
}

/// One hashing thread: take a check, run it, answer; until the queue closes.
fn hash_until_closed(queue: &Mutex<mpsc::Receiver<Job>>) {
    loop {
        // The lock is held only while waiting for the next job, never while hashing. A
        // poisoned lock still guards a usable receiver.
        let job = queue.lock().unwrap_or_else(PoisonError::into_inner).recv();
        let Ok((check, reply)) = job else {
            return;
        };
        let outcome = check.run_upgrading(|_| rand::rng().random::<[u8; SALT_BYTES]>().to_vec());
        // The connection may have gone meanwhile; nobody waits for the answer then.
        let _ = reply.send(outcome);
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use starling_sasl::{SaslSession, SaslStep, ServerContext};

    use super::*;

    /// A TLS stream's SASL context; new accounts get `iterations`.
    pub(super) fn context(iterations: u32) -> ServerContext {
        ServerContext {
            domain: "localhost".to_owned(),
            is_encrypted: true,
            allow_plain_without_tls: false,
            channel_bindings: Vec::new(),
            decoy_secret: [1; 32],
            new_account_iterations: iterations,
            scram_hashes: starling_sasl::ScramHashes::ALL,
        }
    }

    /// A PLAIN check for an unknown user at `iterations`.
    fn check(iterations: u32) -> PasswordCheck {
        let ctx = context(iterations);
        let mut session = SaslSession::start("PLAIN", &ctx, "nonce").expect("PLAIN starts");
        session.step(Some(b"\0ghost\0wrong"));
        match session.credentials(None) {
            SaslStep::CheckPassword(check) => check,
            other => panic!("expected a password check, got {other:?}"),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn checks_queue_for_one_thread_and_the_reactor_stays_free() {
        let pool = PasswordChecks::new(1).expect("hashing thread starts");
        let checks: Vec<_> = (0..4)
            .map(|_| {
                let pool = pool.clone();
                tokio::spawn(async move { pool.run(check(200_000)).await })
            })
            .collect();
        // While the checks run, a timer on the runtime still fires on time: hashing holds no
        // worker.
        let before = Instant::now();
        tokio::time::sleep(Duration::from_millis(10)).await;
        let late = before.elapsed();
        for task in checks {
            let (input, upgrade) = task.await.expect("check task");
            assert!(matches!(input, Input::PasswordChecked(false)));
            assert!(upgrade.is_none());
        }
        assert!(
            late < Duration::from_millis(500),
            "timer fired after {late:?}"
        );
    }
}

#[cfg(test)]
mod upgrade_tests {
    use starling_sasl::{SaslSession, SaslStep, ScramHash, ScramKeys, StoredCredentials};

    use super::*;

    #[tokio::test]
    async fn a_matching_check_on_a_sha1_only_account_brings_sha256_keys_with_a_fresh_salt() {
        let ctx = super::tests::context(4096);
        let account = StoredCredentials {
            keys: vec![
                ScramKeys::derive(ScramHash::Sha1, "pencil", b"prosody-salt", 4096).unwrap(),
            ],
        };
        let pool = PasswordChecks::new(1).expect("hashing thread starts");
        let mut salts = Vec::new();
        for _ in 0..2 {
            let mut session = SaslSession::start("PLAIN", &ctx, "nonce").expect("PLAIN starts");
            session.step(Some(b"\0juliet\0pencil"));
            let SaslStep::CheckPassword(check) = session.credentials(Some(account.clone())) else {
                panic!("expected a password check");
            };
            let (input, upgrade) = pool.run(check).await;
            assert!(matches!(input, Input::PasswordChecked(true)));
            let upgrade = upgrade.expect("SHA-256 keys derived");
            assert_eq!(upgrade.added.len(), 1);
            let added = &upgrade.added[0];
            assert_eq!(added.hash, ScramHash::Sha256);
            assert_eq!(added.iterations, 4096);
            assert_eq!(added.salt.len(), SALT_BYTES);
            assert!(added.verify_password("pencil"));
            salts.push(added.salt.clone());
        }
        assert_ne!(salts[0], salts[1], "each upgrade draws its own salt");
    }
}
