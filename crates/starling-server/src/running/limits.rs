//! The connection cap (`limits.max_connections`): a semaphore the accept loops take a permit
//! from before each `accept`. The per-peer limits are `starling-limits`'s.

use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::Semaphore;

pub use starling_limits::{Admission, PeerLimits, Refusal, TokenBucket};

/// `limits.max_connections`: one semaphore permit per open connection, taken before `accept`.
/// SIGHUP may resize it: a larger cap adds permits at once; a smaller one takes the free
/// permits away now and the rest as connections end (a background task waits for them, and
/// the semaphore being fair, the accept loops wait behind it).
pub struct ConnectionCap {
    semaphore: Arc<Semaphore>,
    max: Mutex<usize>,
}

impl ConnectionCap {
    pub fn new(max: usize) -> Self {
        Self {
            semaphore: Arc::new(Semaphore::new(max)),
            max: Mutex::new(max),
        }
    }

    /// The semaphore the accept loops take permits from.
    pub fn semaphore(&self) -> Arc<Semaphore> {
        Arc::clone(&self.semaphore)
    }

    /// Change the cap to `new_max`; must run inside the tokio runtime.
    pub fn resize(&self, new_max: usize) {
        let mut max = self.max.lock().unwrap_or_else(PoisonError::into_inner);
        if new_max > *max {
            self.semaphore.add_permits(new_max - *max);
        } else if new_max < *max {
            let shrink = *max - new_max;
            let rest = shrink - self.semaphore.forget_permits(shrink);
            if rest > 0 {
                let semaphore = Arc::clone(&self.semaphore);
                let rest = u32::try_from(rest).unwrap_or(u32::MAX);
                tokio::spawn(async move {
                    if let Ok(permits) = semaphore.acquire_many_owned(rest).await {
                        permits.forget();
                    }
                });
            }
        }
        *max = new_max;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn connection_cap_grows_and_shrinks() {
        let cap = ConnectionCap::new(3);
        let semaphore = cap.semaphore();
        let held = Arc::clone(&semaphore).acquire_many_owned(2).await.unwrap();
        cap.resize(5);
        assert_eq!(semaphore.available_permits(), 3);
        // Down to 1 with 2 held: the 3 free permits go now, one more once a connection ends.
        cap.resize(1);
        assert_eq!(semaphore.available_permits(), 0);
        drop(held);
        tokio::task::yield_now().await;
        for _ in 0..100 {
            if semaphore.available_permits() == 1 {
                break;
            }
            tokio::task::yield_now().await;
        }
        assert_eq!(semaphore.available_permits(), 1);
    }
}
