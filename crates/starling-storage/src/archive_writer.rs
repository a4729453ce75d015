//! Group commit for archive appends: many messages, one transaction, each caller told when its
//! message is durable.
//!
//! A message is worth archiving only if it is still there after a crash, and a client is told
//! it was received (a XEP-0198 ack) once the router is done with it; so a hook waits for its
//! archive write. One transaction (one fsync) per message would cap the whole server at the
//! disk's sync rate, so [`ArchiveWriter`] queues appends and one writer task commits whatever
//! has queued while the previous commit ran: under load a transaction carries as many
//! messages as there are senders waiting, and an idle server commits each message at once.
//!
//! **Ids are handed out in commit order.** The id of a message (its UUIDv7, which is its time)
//! is made under the queue's lock, in the order messages enter the queue, and the queue is
//! committed in that order. So an archive never gains a message older than one a query has
//! already seen, and a client that pages "after the newest id I have" misses nothing.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use jid::BareJid;
use tokio::sync::{Notify, oneshot};
use uuid::Uuid;

use crate::StorageError;
use crate::archive::{Appended, ArchiveQuota, ArchiveStore, ArchivedMessage};

/// Messages one transaction carries at most; more wait for the next one.
pub const DEFAULT_MAX_BATCH: usize = 512;

/// Where ids come from: called under the queue's lock, once per message, in queue order. The
/// server passes `Uuid::now_v7` (monotonic within the process); tests pass a counter.
pub type IdSource = Box<dyn FnMut() -> Uuid + Send>;

/// The group-commit writer over a store. Cloning is cheap; clones share one queue and one
/// writer task, started on the first append (so it runs on the caller's runtime).
pub struct ArchiveWriter<S> {
    shared: Arc<Shared<S>>,
}

impl<S> Clone for ArchiveWriter<S> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
        }
    }
}

/// A message queued by [`ArchiveWriter::submit`].
pub struct Pending {
    /// Its archive id.
    pub id: Uuid,
    outcome: oneshot::Receiver<Result<Appended, StorageError>>,
}

impl Pending {
    /// Wait until the message is committed, or refused.
    pub async fn committed(self) -> Result<Appended, StorageError> {
        match self.outcome.await {
            Ok(result) => result,
            Err(_) => Err(StorageError::Backend(
                "the archive writer stopped before committing".to_owned(),
            )),
        }
    }
}

struct Shared<S> {
    store: S,
    quota: ArchiveQuota,
    max_batch: usize,
    /// A std mutex: held only to push or take, never across an await.
    queue: Mutex<Queue>,
    /// Wakes the writer task when the queue gains a message.
    wake: Notify,
    started: AtomicBool,
}

struct Queue {
    ids: IdSource,
    jobs: Vec<Job>,
}

struct Job {
    owner: BareJid,
    message: ArchivedMessage,
    done: oneshot::Sender<Result<Appended, StorageError>>,
}

impl<S: ArchiveStore + Clone> ArchiveWriter<S> {
    /// A writer appending to `store` under `quota`, at most `max_batch` messages per
    /// transaction, with ids from `ids`.
    pub fn new(store: S, quota: ArchiveQuota, max_batch: usize, ids: IdSource) -> Self {
        Self {
            shared: Arc::new(Shared {
                store,
                quota,
                max_batch: max_batch.max(1),
                queue: Mutex::new(Queue {
                    ids,
                    jobs: Vec::new(),
                }),
                wake: Notify::new(),
                started: AtomicBool::new(false),
            }),
        }
    }

    /// Archive the message `make` builds from its id for `owner`, and wait until it is
    /// committed (or refused). `make` runs under the queue's lock, so keep it to building the
    /// row. Returns the id and what became of the message.
    pub async fn append(
        &self,
        owner: BareJid,
        make: impl FnOnce(Uuid) -> ArchivedMessage,
    ) -> Result<(Uuid, Appended), StorageError> {
        let pending = self.submit(owner, make);
        let id = pending.id;
        pending.committed().await.map(|appended| (id, appended))
    }

    /// Queue the message `make` builds from its id for `owner` without waiting: the returned
    /// [`Pending`] says its id at once and, awaited, when it is committed. Dropping it is
    /// fine; a message refused then (its archive full) is logged.
    pub fn submit(&self, owner: BareJid, make: impl FnOnce(Uuid) -> ArchivedMessage) -> Pending {
        self.start();
        let (done, outcome) = oneshot::channel();
        let id = {
            let mut queue = self.queue();
            let id = (queue.ids)();
            let message = make(id);
            queue.jobs.push(Job {
                owner,
                message,
                done,
            });
            id
        };
        self.shared.wake.notify_one();
        Pending { id, outcome }
    }

    fn queue(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.shared
            .queue
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn start(&self) {
        if self.shared.started.swap(true, Ordering::AcqRel) {
            return;
        }
        let shared = Arc::clone(&self.shared);
        tokio::spawn(async move { shared.run().await });
    }
}

impl<S: ArchiveStore> Shared<S> {
    /// The writer task: commit what has queued, then wait for more.
    async fn run(&self) {
        loop {
            let batch: Vec<Job> = {
                let mut queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
                let take = queue.jobs.len().min(self.max_batch);
                queue.jobs.drain(..take).collect()
            };
            if batch.is_empty() {
                // `notify_one` keeps a permit when nobody waits, so a push between the take
                // above and this wait is not missed.
                self.wake.notified().await;
                continue;
            }
            self.commit(batch).await;
        }
    }

    async fn commit(&self, batch: Vec<Job>) {
        metrics::histogram!("starling_archive_batch_messages").record(batch.len() as f64);
        let started = std::time::Instant::now();
        let (rows, waiters): (Vec<(BareJid, ArchivedMessage)>, Vec<oneshot::Sender<_>>) = batch
            .into_iter()
            .map(|job| ((job.owner, job.message), job.done))
            .unzip();
        let result = self.store.archive_append(&rows, self.quota).await;
        tracing::trace!(
            messages = rows.len(),
            micros = started.elapsed().as_micros() as u64,
            "archive transaction"
        );
        match result {
            Ok(outcomes) => {
                let mut outcomes = outcomes.into_iter();
                for (waiter, (owner, _)) in waiters.into_iter().zip(&rows) {
                    let outcome = outcomes.next().ok_or_else(|| {
                        StorageError::Backend("the archive answered fewer outcomes".to_owned())
                    });
                    if let Err(Ok(Appended::QuotaExceeded)) = waiter.send(outcome) {
                        // Nobody waited to refuse the message, so it went on unarchived.
                        tracing::warn!(%owner, "a message was not archived: the archive is full");
                    }
                }
            }
            Err(err) => {
                tracing::error!(error = %err, messages = rows.len(), "archiving failed");
                let text = err.to_string();
                for waiter in waiters {
                    let _ = waiter.send(Err(StorageError::Backend(text.clone())));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use super::*;
    use crate::account_tests::{credentials, jid};
    use crate::archive::{
        ArchiveFilter, ArchivePage, ArchiveUsage, Direction, PageFrom, Retention, id_at,
    };
    use crate::{AccountStore as _, SqliteStore};

    /// A SQLite store that counts its append transactions.
    #[derive(Clone)]
    struct Counted {
        store: SqliteStore,
        appends: Arc<AtomicUsize>,
    }

    impl ArchiveStore for Counted {
        async fn archive_append(
            &self,
            messages: &[(BareJid, ArchivedMessage)],
            quota: ArchiveQuota,
        ) -> Result<Vec<Appended>, StorageError> {
            self.appends.fetch_add(1, Ordering::SeqCst);
            self.store.archive_append(messages, quota).await
        }
        async fn archive_page(
            &self,
            owner: &BareJid,
            filter: &ArchiveFilter,
            from: PageFrom,
            max: usize,
        ) -> Result<ArchivePage, StorageError> {
            self.store.archive_page(owner, filter, from, max).await
        }
        async fn archive_count(
            &self,
            owner: &BareJid,
            filter: &ArchiveFilter,
        ) -> Result<u64, StorageError> {
            self.store.archive_count(owner, filter).await
        }
        async fn archive_get(
            &self,
            owner: &BareJid,
            ids: &[Uuid],
        ) -> Result<Vec<ArchivedMessage>, StorageError> {
            self.store.archive_get(owner, ids).await
        }
        async fn archive_bounds(
            &self,
            owner: &BareJid,
        ) -> Result<Option<(Uuid, Uuid)>, StorageError> {
            self.store.archive_bounds(owner).await
        }
        async fn archive_usage(&self, owner: &BareJid) -> Result<ArchiveUsage, StorageError> {
            self.store.archive_usage(owner).await
        }
        async fn archive_trim(
            &self,
            retention: Retention,
            max_rows: usize,
        ) -> Result<usize, StorageError> {
            self.store.archive_trim(retention, max_rows).await
        }
        async fn archive_mark_pending(
            &self,
            owner: &BareJid,
            id: &Uuid,
            quota: crate::OfflineQuota,
        ) -> Result<bool, StorageError> {
            self.store.archive_mark_pending(owner, id, quota).await
        }
    }

    /// Ids of millisecond 1000 counting up from 1.
    fn counting_ids() -> IdSource {
        let mut next = 0u8;
        Box::new(move || {
            next += 1;
            id_at(1000, [next; 10])
        })
    }

    fn row(id: Uuid, body: &str) -> ArchivedMessage {
        ArchivedMessage {
            id,
            with: jid("bob@localhost"),
            with_resource: None,
            direction: Direction::Incoming,
            origin_id: None,
            stanza: format!("<message><body>{body}</body></message>"),
        }
    }

    #[tokio::test]
    async fn concurrent_appends_share_transactions_and_commit_in_id_order() {
        let store = SqliteStore::open_in_memory().expect("store");
        let alice = jid("alice@localhost");
        store
            .create_account(&alice, &credentials(1))
            .await
            .expect("account");
        let counted = Counted {
            store: store.clone(),
            appends: Arc::new(AtomicUsize::new(0)),
        };
        let writer =
            ArchiveWriter::new(counted.clone(), ArchiveQuota::UNLIMITED, 64, counting_ids());
        let tasks: Vec<_> = (0..100)
            .map(|n| {
                let (writer, alice) = (writer.clone(), alice.clone());
                tokio::spawn(
                    async move { writer.append(alice, |id| row(id, &n.to_string())).await },
                )
            })
            .collect();
        let mut ids = Vec::new();
        for task in tasks {
            let (id, appended) = task.await.expect("join").expect("append");
            assert_eq!(appended, Appended::Stored);
            ids.push(id);
        }
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), 100, "every message got its own id");
        let transactions = counted.appends.load(Ordering::SeqCst);
        assert!(
            (2..100).contains(&transactions),
            "100 messages in {transactions} transactions (at most 64 per transaction)"
        );
        let page = store
            .archive_page(&alice, &ArchiveFilter::default(), PageFrom::Oldest, 200)
            .await
            .expect("page");
        assert_eq!(
            page.messages.iter().map(|m| m.id).collect::<Vec<_>>(),
            ids,
            "all committed"
        );
    }

    #[tokio::test]
    async fn each_caller_hears_its_own_outcome() {
        let store = SqliteStore::open_in_memory().expect("store");
        let alice = jid("alice@localhost");
        store
            .create_account(&alice, &credentials(1))
            .await
            .expect("account");
        let quota = ArchiveQuota {
            max_bytes: row(Uuid::nil(), "1").stanza.len() as u64,
        };
        let writer = ArchiveWriter::new(store.clone(), quota, DEFAULT_MAX_BATCH, counting_ids());
        let first = writer.append(alice.clone(), |id| row(id, "1")).await;
        let second = writer.append(alice.clone(), |id| row(id, "2")).await;
        let nobody = writer
            .append(jid("nobody@localhost"), |id| row(id, "3"))
            .await;
        assert_eq!(first, Ok((id_at(1000, [1; 10]), Appended::Stored)));
        assert_eq!(second, Ok((id_at(1000, [2; 10]), Appended::QuotaExceeded)));
        assert_eq!(nobody, Ok((id_at(1000, [3; 10]), Appended::NoAccount)));
    }
}
