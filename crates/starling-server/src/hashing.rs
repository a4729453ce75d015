//! PLAIN password checks off the async reactor, a bounded number at a time.
//!
//! Each PLAIN attempt costs one PBKDF2 at the account's iteration count (a stand-in one for
//! unknown users). Run on a runtime worker, a burst of wrong passwords would stall every
//! session on that worker; run with `spawn_blocking` alone, a flood would start a blocking
//! thread per attempt. So checks take a permit first: at most half the cores hash at once
//! (at least one), the rest of the attempts wait for a permit without holding a thread, and
//! the other half of the machine stays free for routing.

use std::sync::Arc;

use starling_sasl::PasswordCheck;
use starling_stream::Input;
use tokio::sync::Semaphore;

/// The shared permit pool for password checks.
#[derive(Clone)]
pub struct PasswordChecks {
    permits: Arc<Semaphore>,
}

impl PasswordChecks {
    /// A pool sized for this machine: half its cores (as the process's affinity sees them),
    /// at least one.
    pub fn for_this_machine() -> Self {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        Self::new((cores / 2).max(1))
    }

    /// A pool running at most `concurrent` checks at once.
    pub fn new(concurrent: usize) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(concurrent.max(1))),
        }
    }

    /// Runs `check` on a blocking thread once a permit is free and returns the engine's
    /// answer: [`Input::PasswordChecked`], or [`Input::CredentialsUnavailable`] (a
    /// `temporary-auth-failure`) if the check could not run.
    pub async fn run(&self, check: PasswordCheck) -> Input<'static> {
        // The semaphore is never closed, so acquiring only fails if that changes.
        let Ok(_permit) = self.permits.acquire().await else {
            return Input::CredentialsUnavailable;
        };
        match tokio::task::spawn_blocking(move || check.run()).await {
            Ok(matches) => Input::PasswordChecked(matches),
            Err(err) => {
                tracing::error!(error = %err, "a password check did not complete");
                Input::CredentialsUnavailable
            }
        }
    }

    /// Checks running or waiting to run beyond the permits (for tests).
    #[cfg(test)]
    fn available_permits(&self) -> usize {
        self.permits.available_permits()
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use starling_sasl::{SaslSession, SaslStep, ServerContext};

    use super::*;

    /// A PLAIN check for an unknown user at `iterations`.
    fn check(iterations: u32) -> PasswordCheck {
        let ctx = ServerContext {
            domain: "localhost".to_owned(),
            is_encrypted: true,
            allow_plain_without_tls: false,
            channel_bindings: Vec::new(),
            decoy_secret: [1; 32],
            new_account_iterations: iterations,
        };
        let mut session = SaslSession::start("PLAIN", &ctx, "nonce").expect("PLAIN starts");
        session.step(Some(b"\0ghost\0wrong"));
        match session.credentials(None) {
            SaslStep::CheckPassword(check) => check,
            other => panic!("expected a password check, got {other:?}"),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn checks_beyond_the_permits_wait_and_the_reactor_stays_free() {
        let pool = PasswordChecks::new(1);
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
        assert_eq!(
            pool.available_permits(),
            0,
            "one check holds the only permit"
        );
        for task in checks {
            let input = task.await.expect("check task");
            assert!(matches!(input, Input::PasswordChecked(false)));
        }
        assert_eq!(pool.available_permits(), 1);
        assert!(
            late < Duration::from_millis(500),
            "timer fired after {late:?}"
        );
    }
}
