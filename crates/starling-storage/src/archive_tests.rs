//! Backend-independent tests of the [`ArchiveStore`] contract, run on SQLite here and on
//! PostgreSQL by `tests/postgres.rs`, like `data_tests`.

use jid::BareJid;
use uuid::Uuid;

use crate::account_tests::{credentials, jid};
use crate::{
    AccountStore, Appended, ArchiveFilter, ArchiveQuota, ArchiveStore, ArchiveUsage,
    ArchivedMessage, Direction, OfflineMessage, OfflineQuota, OfflineStore, PageFrom, Retention,
    WithFilter, id_at,
};

/// Generates one `#[tokio::test]` per body in this module, each on a fresh store.
macro_rules! archive_store_tests {
    ($fresh_store:expr) => {
        $crate::archive_tests::archive_store_tests!(@each $fresh_store;
            pages_from_either_end_in_archive_order,
            time_and_id_bounds_filter_inclusively_and_exclusively,
            with_filters_a_bare_jid_or_one_resource,
            archives_are_per_account_and_need_an_account,
            messages_are_fetched_by_id_and_counted,
            a_message_reads_back_as_appended,
            the_byte_quota_counts_earlier_messages_of_the_batch,
            an_id_is_stored_once,
            deleting_the_account_deletes_its_archive,
            retention_removes_the_oldest_by_age,
            retention_removes_the_oldest_past_the_count,
            retention_removes_at_most_the_rows_asked,
            concurrent_appends_never_exceed_the_quota,
            pending_rows_are_offline_messages_in_time_order,
            the_offline_quota_counts_pending_rows_and_copies,
            only_an_archived_message_can_be_marked,
        );
    };
    (@each $fresh_store:expr; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $name() {
                $crate::archive_tests::$name(&$fresh_store).await;
            }
        )*
    };
}
pub(crate) use archive_store_tests;

/// What every body needs of a store.
pub(crate) trait Store: AccountStore + ArchiveStore + OfflineStore {}
impl<T: AccountStore + ArchiveStore + OfflineStore> Store for T {}

fn alice() -> BareJid {
    jid("alice@localhost")
}

fn bob() -> BareJid {
    jid("bob@localhost")
}

async fn with_accounts(store: &impl Store, users: &[&BareJid]) {
    for user in users {
        store
            .create_account(user, &credentials(1))
            .await
            .expect("account is created");
    }
}

/// A message with `bob`'s `resource`, archived at `ms` (the id's random part is `seq`).
fn message(ms: u64, seq: u8, with: &BareJid, resource: Option<&str>) -> ArchivedMessage {
    ArchivedMessage {
        id: id_at(ms, [seq; 10]),
        with: with.clone(),
        with_resource: resource.map(str::to_owned),
        direction: Direction::Incoming,
        origin_id: None,
        stanza: format!("<message xmlns='jabber:client'><body>{ms}-{seq}</body></message>"),
    }
}

/// Appends `messages` to `owner`'s archive without a quota; they must all be stored.
async fn append(store: &impl Store, owner: &BareJid, messages: &[ArchivedMessage]) {
    let rows: Vec<(BareJid, ArchivedMessage)> = messages
        .iter()
        .map(|message| (owner.clone(), message.clone()))
        .collect();
    let outcomes = store
        .archive_append(&rows, ArchiveQuota::UNLIMITED)
        .await
        .expect("append");
    assert!(
        outcomes.iter().all(|outcome| *outcome == Appended::Stored),
        "{outcomes:?}"
    );
}

/// The ids of a page, and whether more match.
async fn page(
    store: &impl Store,
    owner: &BareJid,
    filter: &ArchiveFilter,
    from: PageFrom,
    max: usize,
) -> (Vec<Uuid>, bool) {
    let page = store
        .archive_page(owner, filter, from, max)
        .await
        .expect("page");
    (page.messages.iter().map(|m| m.id).collect(), page.more)
}

/// Five messages with bob, one per millisecond from 1000.
async fn five(store: &impl Store) -> Vec<Uuid> {
    with_accounts(store, &[&alice()]).await;
    let messages: Vec<ArchivedMessage> = (0..5)
        .map(|n| message(1000 + n, 1, &bob(), Some("phone")))
        .collect();
    append(store, &alice(), &messages).await;
    messages.iter().map(|m| m.id).collect()
}

pub(crate) async fn pages_from_either_end_in_archive_order(store: &impl Store) {
    let ids = five(store).await;
    let all = ArchiveFilter::default();
    assert_eq!(
        page(store, &alice(), &all, PageFrom::Oldest, 2).await,
        (ids[..2].to_vec(), true)
    );
    assert_eq!(
        page(store, &alice(), &all, PageFrom::Newest, 2).await,
        (ids[3..].to_vec(), true),
        "the newest page is still oldest first"
    );
    assert_eq!(
        page(store, &alice(), &all, PageFrom::Oldest, 5).await,
        (ids.clone(), false)
    );
    assert_eq!(
        page(store, &alice(), &all, PageFrom::Newest, 9).await,
        (ids.clone(), false)
    );
    assert_eq!(
        page(store, &alice(), &all, PageFrom::Oldest, 0).await,
        (vec![], true)
    );
}

pub(crate) async fn time_and_id_bounds_filter_inclusively_and_exclusively(store: &impl Store) {
    let ids = five(store).await;
    let times = ArchiveFilter {
        start_ms: Some(1001),
        end_ms: Some(1003),
        ..ArchiveFilter::default()
    };
    assert_eq!(
        page(store, &alice(), &times, PageFrom::Oldest, 10).await,
        (ids[1..4].to_vec(), false),
        "start and end include their millisecond"
    );
    let between = ArchiveFilter {
        after_id: Some(ids[0]),
        before_id: Some(ids[3]),
        ..ArchiveFilter::default()
    };
    assert_eq!(
        page(store, &alice(), &between, PageFrom::Oldest, 10).await,
        (ids[1..3].to_vec(), false),
        "after and before exclude their message"
    );
    assert_eq!(
        page(store, &alice(), &between, PageFrom::Newest, 1).await,
        (ids[2..3].to_vec(), true)
    );
    let crossed = ArchiveFilter {
        after_id: Some(ids[3]),
        before_id: Some(ids[1]),
        ..ArchiveFilter::default()
    };
    assert_eq!(
        page(store, &alice(), &crossed, PageFrom::Oldest, 10).await,
        (vec![], false)
    );
    assert_eq!(store.archive_count(&alice(), &times).await, Ok(3));
    assert_eq!(store.archive_count(&alice(), &crossed).await, Ok(0));
}

pub(crate) async fn with_filters_a_bare_jid_or_one_resource(store: &impl Store) {
    with_accounts(store, &[&alice()]).await;
    let carol = jid("carol@example.net");
    let messages = [
        message(1000, 1, &bob(), Some("phone")),
        message(1001, 1, &carol, None),
        message(1002, 1, &bob(), Some("laptop")),
        message(1003, 1, &bob(), None),
    ];
    append(store, &alice(), &messages).await;
    let with = |bare: &BareJid, resource: Option<&str>| ArchiveFilter {
        with: Some(WithFilter {
            bare: bare.clone(),
            resource: resource.map(str::to_owned),
        }),
        ..ArchiveFilter::default()
    };
    let ids: Vec<Uuid> = messages.iter().map(|m| m.id).collect();
    assert_eq!(
        page(store, &alice(), &with(&bob(), None), PageFrom::Oldest, 10).await,
        (vec![ids[0], ids[2], ids[3]], false)
    );
    assert_eq!(
        page(
            store,
            &alice(),
            &with(&bob(), Some("laptop")),
            PageFrom::Newest,
            10
        )
        .await,
        (vec![ids[2]], false)
    );
    assert_eq!(
        page(store, &alice(), &with(&carol, None), PageFrom::Oldest, 10).await,
        (vec![ids[1]], false)
    );
    assert_eq!(
        store.archive_count(&alice(), &with(&bob(), None)).await,
        Ok(3)
    );
    assert_eq!(
        store
            .archive_count(&alice(), &with(&bob(), Some("phone")))
            .await,
        Ok(1)
    );
}

pub(crate) async fn archives_are_per_account_and_need_an_account(store: &impl Store) {
    with_accounts(store, &[&alice(), &bob()]).await;
    let nobody = jid("nobody@localhost");
    let rows = vec![
        (alice(), message(1000, 1, &bob(), None)),
        (nobody.clone(), message(1000, 2, &bob(), None)),
        (bob(), message(1000, 1, &alice(), None)),
        (jid("localhost"), message(1000, 3, &bob(), None)),
    ];
    assert_eq!(
        store
            .archive_append(&rows, ArchiveQuota::UNLIMITED)
            .await
            .expect("append"),
        vec![
            Appended::Stored,
            Appended::NoAccount,
            Appended::Stored,
            Appended::NoAccount
        ]
    );
    let all = ArchiveFilter::default();
    assert_eq!(
        page(store, &alice(), &all, PageFrom::Oldest, 10).await,
        (vec![rows[0].1.id], false)
    );
    assert_eq!(
        page(store, &bob(), &all, PageFrom::Oldest, 10)
            .await
            .0
            .len(),
        1
    );
    assert_eq!(
        page(store, &nobody, &all, PageFrom::Oldest, 10).await,
        (vec![], false)
    );
    assert_eq!(store.archive_bounds(&nobody).await, Ok(None));
    assert_eq!(
        store.archive_usage(&nobody).await,
        Ok(ArchiveUsage::default())
    );
}

pub(crate) async fn messages_are_fetched_by_id_and_counted(store: &impl Store) {
    let ids = five(store).await;
    let unknown = id_at(1002, [9; 10]);
    let found = store
        .archive_get(&alice(), &[ids[3], unknown, ids[1], ids[3]])
        .await
        .expect("get");
    assert_eq!(
        found.iter().map(|m| m.id).collect::<Vec<_>>(),
        vec![ids[1], ids[3]],
        "in archive order, unknown ids left out, once each"
    );
    assert_eq!(
        store.archive_get(&bob(), &ids).await,
        Ok(vec![]),
        "another account's ids are not found"
    );
    assert_eq!(
        store.archive_bounds(&alice()).await,
        Ok(Some((ids[0], ids[4])))
    );
    assert_eq!(
        store
            .archive_count(&alice(), &ArchiveFilter::default())
            .await,
        Ok(5)
    );
    let usage = store.archive_usage(&alice()).await.expect("usage");
    assert_eq!(usage.messages, 5);
    assert_eq!(
        usage.bytes,
        (0..5)
            .map(|n| message(1000 + n, 1, &bob(), None).stanza.len() as u64)
            .sum::<u64>()
    );
}

pub(crate) async fn a_message_reads_back_as_appended(store: &impl Store) {
    with_accounts(store, &[&alice()]).await;
    let sent = ArchivedMessage {
        id: id_at(1_765_000_000_123, [7; 10]),
        with: jid("juliet@capulet.example"),
        with_resource: Some("balcony ☾".to_owned()),
        direction: Direction::Outgoing,
        origin_id: Some("de305d54-75b4-431b-adb2-eb6b9e546013".to_owned()),
        stanza: "<message xmlns='jabber:client' to='juliet@capulet.example/balcony ☾'><body>Ünïcode 💬</body></message>".to_owned(),
    };
    append(store, &alice(), std::slice::from_ref(&sent)).await;
    assert_eq!(
        store.archive_get(&alice(), &[sent.id]).await,
        Ok(vec![sent.clone()])
    );
    assert_eq!(sent.timestamp_ms(), 1_765_000_000_123);
    let page = store
        .archive_page(&alice(), &ArchiveFilter::default(), PageFrom::Newest, 1)
        .await
        .expect("page");
    assert_eq!(page.messages, vec![sent.clone()]);
    assert_eq!(
        store.archive_usage(&alice()).await.expect("usage").bytes,
        sent.stanza.len() as u64,
        "bytes are UTF-8 bytes, not characters"
    );
}

pub(crate) async fn the_byte_quota_counts_earlier_messages_of_the_batch(store: &impl Store) {
    with_accounts(store, &[&alice(), &bob()]).await;
    let one = message(1000, 1, &bob(), None);
    let size = one.stanza.len() as u64;
    let quota = ArchiveQuota {
        max_bytes: 2 * size,
    };
    let rows = vec![
        (alice(), one.clone()),
        (alice(), message(1000, 2, &bob(), None)),
        (alice(), message(1000, 3, &bob(), None)),
        (bob(), message(1000, 3, &alice(), None)),
    ];
    assert_eq!(
        store.archive_append(&rows, quota).await.expect("append"),
        vec![
            Appended::Stored,
            Appended::Stored,
            Appended::QuotaExceeded,
            Appended::Stored
        ],
        "the quota is per account"
    );
    assert_eq!(
        store
            .archive_append(&[(alice(), message(1001, 1, &bob(), None))], quota)
            .await,
        Ok(vec![Appended::QuotaExceeded]),
        "and counted across transactions"
    );
    assert_eq!(
        store.archive_usage(&alice()).await,
        Ok(ArchiveUsage {
            messages: 2,
            bytes: 2 * size
        })
    );
}

pub(crate) async fn an_id_is_stored_once(store: &impl Store) {
    with_accounts(store, &[&alice()]).await;
    let first = message(1000, 1, &bob(), None);
    let mut again = first.clone();
    again.stanza = "<message xmlns='jabber:client'><body>other</body></message>".to_owned();
    assert_eq!(
        store
            .archive_append(
                &[(alice(), first.clone()), (alice(), again)],
                ArchiveQuota::UNLIMITED
            )
            .await,
        Ok(vec![Appended::Stored, Appended::Duplicate])
    );
    assert_eq!(
        store.archive_get(&alice(), &[first.id]).await,
        Ok(vec![first])
    );
    assert_eq!(
        store.archive_usage(&alice()).await.expect("usage").messages,
        1
    );
}

pub(crate) async fn deleting_the_account_deletes_its_archive(store: &impl Store) {
    let ids = five(store).await;
    store.delete_account(&alice()).await.expect("delete");
    with_accounts(store, &[&alice()]).await;
    assert_eq!(store.archive_get(&alice(), &ids).await, Ok(vec![]));
    assert_eq!(store.archive_bounds(&alice()).await, Ok(None));
    assert_eq!(
        store.archive_usage(&alice()).await,
        Ok(ArchiveUsage::default())
    );
}

pub(crate) async fn retention_removes_the_oldest_by_age(store: &impl Store) {
    let ids = five(store).await;
    with_accounts(store, &[&bob()]).await;
    append(store, &bob(), &[message(1001, 1, &alice(), None)]).await;
    let retention = Retention {
        before_ms: Some(1002),
        max_messages: None,
    };
    assert_eq!(store.archive_trim(retention, 100).await, Ok(3));
    assert_eq!(
        page(
            store,
            &alice(),
            &ArchiveFilter::default(),
            PageFrom::Oldest,
            10
        )
        .await,
        (ids[2..].to_vec(), false)
    );
    assert_eq!(store.archive_bounds(&bob()).await, Ok(None));
    assert_eq!(
        store.archive_usage(&alice()).await.expect("usage").messages,
        3
    );
    assert_eq!(store.archive_trim(retention, 100).await, Ok(0), "done");
}

pub(crate) async fn retention_removes_the_oldest_past_the_count(store: &impl Store) {
    let ids = five(store).await;
    let retention = Retention {
        before_ms: None,
        max_messages: Some(2),
    };
    assert_eq!(store.archive_trim(retention, 100).await, Ok(3));
    assert_eq!(
        store.archive_bounds(&alice()).await,
        Ok(Some((ids[3], ids[4])))
    );
    let usage = store.archive_usage(&alice()).await.expect("usage");
    assert_eq!(usage.messages, 2);
    let remaining: u64 = store
        .archive_get(&alice(), &ids)
        .await
        .expect("get")
        .iter()
        .map(|m| m.stanza.len() as u64)
        .sum();
    assert_eq!(usage.bytes, remaining, "bytes follow the removals");
    assert_eq!(store.archive_trim(retention, 100).await, Ok(0));
}

pub(crate) async fn retention_removes_at_most_the_rows_asked(store: &impl Store) {
    let ids = five(store).await;
    let retention = Retention {
        before_ms: Some(10_000),
        max_messages: None,
    };
    assert_eq!(store.archive_trim(retention, 2).await, Ok(2));
    assert_eq!(
        store.archive_bounds(&alice()).await,
        Ok(Some((ids[2], ids[4]))),
        "the oldest went first"
    );
    assert_eq!(store.archive_trim(retention, 2).await, Ok(2));
    assert_eq!(store.archive_trim(retention, 2).await, Ok(1));
    assert_eq!(store.archive_trim(retention, 2).await, Ok(0));
    assert_eq!(store.archive_bounds(&alice()).await, Ok(None));
}

pub(crate) async fn concurrent_appends_never_exceed_the_quota(store: &impl Store) {
    with_accounts(store, &[&alice()]).await;
    let size = message(1000, 0, &bob(), None).stanza.len() as u64;
    let quota = ArchiveQuota {
        max_bytes: 5 * size,
    };
    let appends = (0..12u8).map(|seq| {
        let row = [(alice(), message(1000, seq, &bob(), None))];
        async move { store.archive_append(&row, quota).await }
    });
    let outcomes: Vec<Appended> = futures_join(appends)
        .await
        .into_iter()
        .map(|result| result.expect("append").remove(0))
        .collect();
    assert_eq!(
        outcomes.iter().filter(|o| **o == Appended::Stored).count(),
        5,
        "{outcomes:?}"
    );
    assert_eq!(
        store.archive_usage(&alice()).await,
        Ok(ArchiveUsage {
            messages: 5,
            bytes: 5 * size
        })
    );
}

/// Polls the futures side by side until all are done (the roster tests' `join_all`).
async fn futures_join<F: std::future::Future>(futures: impl Iterator<Item = F>) -> Vec<F::Output> {
    crate::roster_tests::join_all(futures.collect()).await
}

fn copy(stored_at_unix_ms: u64, body: &str) -> OfflineMessage {
    OfflineMessage {
        stored_at_unix_ms,
        stanza: format!("<message xmlns='jabber:client'><body>{body}</body></message>"),
    }
}

pub(crate) async fn pending_rows_are_offline_messages_in_time_order(store: &impl Store) {
    with_accounts(store, &[&alice()]).await;
    let early = message(1000, 1, &bob(), None);
    let late = message(2000, 1, &bob(), None);
    append(store, &alice(), &[early.clone(), late.clone()]).await;
    let quota = OfflineQuota::messages(10);
    assert_eq!(
        store.archive_mark_pending(&alice(), &late.id, quota).await,
        Ok(true)
    );
    assert_eq!(
        store
            .push_offline(&alice(), &copy(1500, "not archived"), quota)
            .await,
        Ok(true)
    );
    assert_eq!(
        store.archive_mark_pending(&alice(), &early.id, quota).await,
        Ok(true)
    );
    let page = store.offline_page(&alice(), 10).await.expect("page");
    let seen: Vec<(u64, &str)> = page
        .iter()
        .map(|stored| {
            (
                stored.message.stored_at_unix_ms,
                stored.message.stanza.as_str(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        vec![
            (1000, early.stanza.as_str()),
            (1500, copy(1500, "not archived").stanza.as_str()),
            (2000, late.stanza.as_str()),
        ],
        "oldest first, archive rows with the archive's time and stanza"
    );
    let first_two = store.offline_page(&alice(), 2).await.expect("page");
    assert_eq!(first_two, page[..2].to_vec());
    let ids: Vec<u64> = page[..2].iter().map(|stored| stored.id).collect();
    assert_eq!(store.remove_offline(&alice(), &ids).await, Ok(2));
    assert_eq!(
        store.offline_page(&alice(), 10).await,
        Ok(page[2..].to_vec())
    );
    assert_eq!(
        store.remove_offline(&alice(), &ids).await,
        Ok(0),
        "removed once"
    );
    // Delivered means no longer pending, not gone from the archive.
    assert_eq!(
        store.archive_get(&alice(), &[early.id, late.id]).await,
        Ok(vec![early, late])
    );
    assert_eq!(
        store.remove_offline(&bob(), &[page[2].id]).await,
        Ok(0),
        "not bob's"
    );
}

pub(crate) async fn the_offline_quota_counts_pending_rows_and_copies(store: &impl Store) {
    with_accounts(store, &[&alice()]).await;
    let messages = [
        message(1000, 1, &bob(), None),
        message(1001, 1, &bob(), None),
    ];
    append(store, &alice(), &messages).await;
    let quota = OfflineQuota::messages(2);
    assert_eq!(
        store
            .archive_mark_pending(&alice(), &messages[0].id, quota)
            .await,
        Ok(true)
    );
    assert_eq!(
        store.push_offline(&alice(), &copy(1, "copy"), quota).await,
        Ok(true)
    );
    assert_eq!(
        store
            .archive_mark_pending(&alice(), &messages[1].id, quota)
            .await,
        Ok(false),
        "two are waiting already"
    );
    assert_eq!(
        store.push_offline(&alice(), &copy(2, "copy"), quota).await,
        Ok(false)
    );
    assert_eq!(
        store.offline_page(&alice(), 10).await.expect("page").len(),
        2
    );
    let size = messages[0].stanza.len();
    let bytes = OfflineQuota {
        max_messages: 10,
        max_bytes: size + copy(1, "copy").stanza.len(),
    };
    assert_eq!(
        store
            .archive_mark_pending(&alice(), &messages[1].id, bytes)
            .await,
        Ok(false),
        "bytes of pending rows count too"
    );
}

pub(crate) async fn only_an_archived_message_can_be_marked(store: &impl Store) {
    with_accounts(store, &[&alice(), &bob()]).await;
    let kept = message(1000, 1, &bob(), None);
    append(store, &alice(), std::slice::from_ref(&kept)).await;
    let quota = OfflineQuota::messages(10);
    assert_eq!(
        store
            .archive_mark_pending(&alice(), &id_at(1000, [9; 10]), quota)
            .await,
        Ok(false)
    );
    assert_eq!(
        store.archive_mark_pending(&bob(), &kept.id, quota).await,
        Ok(false)
    );
    assert_eq!(
        store
            .archive_mark_pending(&jid("nobody@localhost"), &kept.id, quota)
            .await,
        Ok(false)
    );
    assert_eq!(
        store.archive_mark_pending(&alice(), &kept.id, quota).await,
        Ok(true)
    );
    assert_eq!(
        store
            .archive_mark_pending(&alice(), &kept.id, OfflineQuota::messages(1))
            .await,
        Ok(true),
        "marked once, counted once"
    );
    assert_eq!(
        store.offline_page(&alice(), 10).await.expect("page").len(),
        1
    );
    assert!(
        store
            .offline_page(&bob(), 10)
            .await
            .expect("page")
            .is_empty()
    );
}
