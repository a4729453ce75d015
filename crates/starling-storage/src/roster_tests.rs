//! Backend-independent tests of the [`RosterStore`] and [`OfflineStore`] contracts.
//!
//! Like `account_tests`, each body is an `async fn` over a fresh, empty store, so every
//! backend runs the same bodies. A backend instantiates them all with
//! `crate::roster_tests::roster_store_tests!(expression making a fresh, empty store);`.
//! Concurrent calls are made by polling futures side by side (`join_all`), not by spawning
//! tasks, so the bodies need no `Clone + 'static` store; the backends still run them
//! concurrently (SQLite on the blocking pool, PostgreSQL on separate pooled connections).

use std::future::Future;
use std::pin::Pin;
use std::task::Poll;

use jid::BareJid;

use crate::account_tests::{credentials, jid};
use crate::{
    AccountStore, InitialPresence, OfflineMessage, OfflineQuota, OfflineStore, RosterChange,
    RosterItem, RosterStore, StorageError, StoredOffline, Subscription,
};

/// Generates one `#[tokio::test]` per body in this module, each on a fresh store.
macro_rules! roster_store_tests {
    ($fresh_store:expr) => {
        $crate::roster_tests::roster_store_tests!(@each $fresh_store;
            put_replace_remove_and_versions,
            roster_is_sorted_by_contact_jid,
            one_apply_changes_two_rosters,
            a_failing_change_leaves_nothing_applied,
            requests_are_kept_until_removed,
            initial_presence_reads_roster_requests_and_offline,
            unknown_owner_has_nothing_and_cannot_be_written,
            offline_messages_in_order_with_a_limit_and_taken_once,
            offline_messages_are_per_account,
            deleting_the_account_deletes_its_roster,
            concurrent_pushes_never_exceed_the_limit,
            concurrent_opposite_changes_all_land,
            roster_limit_counts_new_items_in_the_transaction,
            concurrent_applies_never_exceed_the_roster_limit,
            offline_bytes_are_capped_like_the_count,
            concurrent_pushes_never_exceed_the_byte_limit,
            offline_pages_are_removed_only_when_asked,
        );
    };
    (@each $fresh_store:expr; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $name() {
                $crate::roster_tests::$name(&$fresh_store).await;
            }
        )*
    };
}
pub(crate) use roster_store_tests;

/// What every body needs of a store.
pub(crate) trait Store: AccountStore + RosterStore + OfflineStore {}
impl<T: AccountStore + RosterStore + OfflineStore> Store for T {}

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

async fn apply(store: &impl Store, changes: &[RosterChange]) -> Vec<u64> {
    store
        .apply(changes, usize::MAX)
        .await
        .expect("changes apply")
}

fn put(owner: &BareJid, item: &RosterItem) -> RosterChange {
    RosterChange::Put {
        owner: owner.clone(),
        item: item.clone(),
    }
}

fn message(n: u64) -> OfflineMessage {
    OfflineMessage {
        stored_at_unix_ms: 1000 + n,
        stanza: format!("<message id='{n}'/>"),
    }
}

fn stanzas(messages: &[OfflineMessage]) -> Vec<&str> {
    messages.iter().map(|m| m.stanza.as_str()).collect()
}

/// Polls all `futures` side by side until every one is done; outputs in input order.
pub(crate) async fn join_all<F: Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut futures: Vec<Pin<Box<F>>> = futures.into_iter().map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (future, output) in futures.iter_mut().zip(&mut outputs) {
            if output.is_none() {
                match future.as_mut().poll(cx) {
                    Poll::Ready(value) => *output = Some(value),
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    })
    .await;
    outputs
        .into_iter()
        .map(|output| output.expect("every future completed"))
        .collect()
}

pub(crate) async fn put_replace_remove_and_versions(store: &impl Store) {
    with_accounts(store, &[&alice()]).await;
    assert_eq!(store.roster(&alice()).await, Ok((0, vec![])));
    let mut item = RosterItem::new(bob());
    item.name = Some("Bob".into());
    item.groups = vec!["Friends".into(), "Work".into()];
    item.pending_out = true;
    assert_eq!(apply(store, &[put(&alice(), &item)]).await, [1]);
    assert_eq!(store.roster(&alice()).await, Ok((1, vec![item.clone()])));

    item.name = None;
    item.groups = vec!["Work".into()];
    item.subscription = Subscription::To;
    item.pending_out = false;
    item.approved = true;
    assert_eq!(apply(store, &[put(&alice(), &item)]).await, [2]);
    assert_eq!(store.roster_item(&alice(), &bob()).await, Ok(Some(item)));
    assert_eq!(
        store.roster_item(&alice(), &jid("carol@localhost")).await,
        Ok(None)
    );

    let remove = RosterChange::Remove {
        owner: alice(),
        contact: bob(),
    };
    assert_eq!(apply(store, std::slice::from_ref(&remove)).await, [3]);
    assert_eq!(store.roster(&alice()).await, Ok((3, vec![])));
    assert_eq!(store.roster_item(&alice(), &bob()).await, Ok(None));
    // Removing what is not there still counts as a change.
    assert_eq!(apply(store, &[remove]).await, [4]);
}

pub(crate) async fn roster_is_sorted_by_contact_jid(store: &impl Store) {
    with_accounts(store, &[&alice()]).await;
    // Byte order of the normalised JID, which puts "a-c" before "ab" ('-' < 'b'); a
    // natural-language collation ignoring punctuation would not. Groups keep their order.
    let contacts = [
        "zed@b.example",
        "ab@a.example",
        "a-c@a.example",
        "a@z.example",
    ];
    let changes: Vec<_> = contacts
        .iter()
        .map(|contact| {
            let mut item = RosterItem::new(jid(contact));
            item.groups = vec!["Z".into(), "A".into(), "m".into()];
            put(&alice(), &item)
        })
        .collect();
    assert_eq!(apply(store, &changes).await, [1, 2, 3, 4]);
    let (version, items) = store.roster(&alice()).await.expect("roster");
    assert_eq!(version, 4);
    let mut expected: Vec<BareJid> = contacts.iter().map(|c| jid(c)).collect();
    expected.sort();
    assert_eq!(
        items
            .iter()
            .map(|item| item.jid.clone())
            .collect::<Vec<_>>(),
        expected
    );
    assert_eq!(expected[0], jid("a-c@a.example"));
    assert!(items.iter().all(|item| item.groups == ["Z", "A", "m"]));
}

pub(crate) async fn one_apply_changes_two_rosters(store: &impl Store) {
    with_accounts(store, &[&alice(), &bob()]).await;
    apply(store, &[put(&bob(), &RosterItem::new(jid("x@localhost")))]).await;
    // Alice subscribes to Bob: her item goes pending out, Bob gets the request.
    let mut item = RosterItem::new(bob());
    item.pending_out = true;
    let versions = apply(
        store,
        &[
            put(&alice(), &item),
            RosterChange::AddRequest {
                owner: bob(),
                contact: alice(),
                stanza: "<presence type='subscribe'/>".into(),
            },
            put(&bob(), &RosterItem::new(alice())),
        ],
    )
    .await;
    // The request reports Bob's version before his Put, which then bumps it.
    assert_eq!(versions, [1, 1, 2]);
    assert_eq!(store.roster(&alice()).await, Ok((1, vec![item])));
    assert_eq!(store.roster(&bob()).await.expect("roster").0, 2);
    assert_eq!(store.has_request(&bob(), &alice()).await, Ok(true));
    assert_eq!(store.has_request(&alice(), &bob()).await, Ok(false));
}

pub(crate) async fn a_failing_change_leaves_nothing_applied(store: &impl Store) {
    with_accounts(store, &[&alice(), &bob()]).await;
    let nobody = jid("nobody@localhost");
    let err = store
        .apply(
            &[
                put(&alice(), &RosterItem::new(bob())),
                RosterChange::AddRequest {
                    owner: bob(),
                    contact: alice(),
                    stanza: "<presence type='subscribe'/>".into(),
                },
                put(&nobody, &RosterItem::new(alice())),
                put(&jid("localhost"), &RosterItem::new(alice())),
            ],
            usize::MAX,
        )
        .await;
    // The first change whose owner is missing is the one reported.
    assert_eq!(err, Err(StorageError::AccountNotFound(nobody)));
    assert_eq!(store.roster(&alice()).await, Ok((0, vec![])));
    assert_eq!(store.has_request(&bob(), &alice()).await, Ok(false));
    // And the store is usable afterwards.
    assert_eq!(
        apply(store, &[put(&alice(), &RosterItem::new(bob()))]).await,
        [1]
    );
}

pub(crate) async fn requests_are_kept_until_removed(store: &impl Store) {
    with_accounts(store, &[&alice()]).await;
    apply(store, &[put(&alice(), &RosterItem::new(bob()))]).await;
    let add = |who: &str, stanza: &str| RosterChange::AddRequest {
        owner: alice(),
        contact: jid(who),
        stanza: stanza.to_owned(),
    };
    // Requests do not bump the version; they report the current one.
    let versions = apply(
        store,
        &[
            add("bob@localhost", "<bob first/>"),
            add("carol@localhost", "<carol/>"),
            add("bob@localhost", "<bob again/>"),
        ],
    )
    .await;
    assert_eq!(versions, [1, 1, 1]);
    assert_eq!(store.has_request(&alice(), &bob()).await, Ok(true));
    // A repeated request replaces the stanza and keeps its place.
    assert_eq!(
        store.requests(&alice()).await,
        Ok(vec![
            (bob(), "<bob again/>".to_owned()),
            (jid("carol@localhost"), "<carol/>".to_owned()),
        ])
    );
    let versions = apply(
        store,
        &[RosterChange::RemoveRequest {
            owner: alice(),
            contact: bob(),
        }],
    )
    .await;
    assert_eq!(versions, [1]);
    assert_eq!(store.has_request(&alice(), &bob()).await, Ok(false));
    apply(store, &[add("bob@localhost", "<bob third/>")]).await;
    // Removed and asked again: now the newest.
    assert_eq!(
        store.requests(&alice()).await,
        Ok(vec![
            (jid("carol@localhost"), "<carol/>".to_owned()),
            (bob(), "<bob third/>".to_owned()),
        ])
    );
    assert_eq!(store.roster(&alice()).await.expect("roster").0, 1);
}

/// Alice's initial-presence read, checked against the roster and requests read separately.
async fn initial_presence_as_separate_reads(store: &impl Store) -> InitialPresence {
    let state = store
        .initial_presence(&alice())
        .await
        .expect("initial presence");
    let (version, roster) = store.roster(&alice()).await.expect("roster");
    assert_eq!((state.version, &state.roster), (version, &roster));
    assert_eq!(
        state.requests,
        store.requests(&alice()).await.expect("requests")
    );
    state
}

/// Every stored message of `owner`, removed, oldest first: what delivery does a page at a
/// time.
pub(crate) async fn take_all(
    store: &impl OfflineStore,
    owner: &BareJid,
) -> Result<Vec<OfflineMessage>, StorageError> {
    let page = store.offline_page(owner, 10_000).await?;
    let ids: Vec<u64> = page.iter().map(|stored| stored.id).collect();
    store.remove_offline(owner, &ids).await?;
    Ok(page.into_iter().map(|stored| stored.message).collect())
}

pub(crate) async fn initial_presence_reads_roster_requests_and_offline(store: &impl Store) {
    with_accounts(store, &[&alice()]).await;
    let state = initial_presence_as_separate_reads(store).await;
    assert!(state.roster.is_empty() && state.requests.is_empty());
    let mut item = RosterItem::new(bob());
    item.groups = vec!["b".to_owned(), "a".to_owned()];
    apply(
        store,
        &[
            put(&alice(), &item),
            put(&alice(), &RosterItem::new(jid("carol@localhost"))),
            RosterChange::AddRequest {
                owner: alice(),
                contact: jid("dave@localhost"),
                stanza: "<dave/>".to_owned(),
            },
        ],
    )
    .await;
    assert!(
        store
            .push_offline(&alice(), &message(1), OfflineQuota::messages(10))
            .await
            .expect("push")
    );
    let state = initial_presence_as_separate_reads(store).await;
    assert_eq!(state.roster.len(), 2);
    assert_eq!(state.requests.len(), 1);
    // A backend may not know, but it must never say nothing waits when something does.
    assert!(state.offline_waiting);
    assert_eq!(take_all(store, &alice()).await.expect("take").len(), 1);
    let unknown = store.initial_presence(&jid("nobody@localhost")).await;
    assert_eq!(
        unknown.map(|state| (state.roster, state.requests)),
        Ok((vec![], vec![]))
    );
}

pub(crate) async fn unknown_owner_has_nothing_and_cannot_be_written(store: &impl Store) {
    for owner in [alice(), jid("localhost")] {
        assert_eq!(store.roster(&owner).await, Ok((0, vec![])));
        assert_eq!(store.roster_item(&owner, &bob()).await, Ok(None));
        assert_eq!(store.has_request(&owner, &bob()).await, Ok(false));
        assert_eq!(store.requests(&owner).await, Ok(vec![]));
        assert_eq!(take_all(store, &owner).await, Ok(vec![]));
        assert_eq!(
            store
                .push_offline(&owner, &message(0), OfflineQuota::messages(10))
                .await,
            Err(StorageError::AccountNotFound(owner.clone()))
        );
        assert_eq!(
            store
                .apply(
                    &[RosterChange::RemoveRequest {
                        owner: owner.clone(),
                        contact: bob(),
                    }],
                    usize::MAX
                )
                .await,
            Err(StorageError::AccountNotFound(owner.clone()))
        );
    }
    assert_eq!(store.apply(&[], usize::MAX).await, Ok(vec![]));
}

pub(crate) async fn offline_messages_in_order_with_a_limit_and_taken_once(store: &impl Store) {
    with_accounts(store, &[&alice()]).await;
    for n in 0..3 {
        assert_eq!(
            store
                .push_offline(&alice(), &message(n), OfflineQuota::messages(2))
                .await,
            Ok(n < 2),
            "message {n}"
        );
    }
    let taken = take_all(store, &alice()).await.expect("take");
    assert_eq!(stanzas(&taken), ["<message id='0'/>", "<message id='1'/>"]);
    assert_eq!(taken[0], message(0));
    assert_eq!(take_all(store, &alice()).await, Ok(vec![]));
    // Taking freed the space; a limit of 0 stores nothing.
    assert_eq!(
        store
            .push_offline(&alice(), &message(3), OfflineQuota::messages(2))
            .await,
        Ok(true)
    );
    assert_eq!(
        store
            .push_offline(&alice(), &message(4), OfflineQuota::messages(0))
            .await,
        Ok(false)
    );
    assert_eq!(take_all(store, &alice()).await, Ok(vec![message(3)]));
}

pub(crate) async fn offline_messages_are_per_account(store: &impl Store) {
    with_accounts(store, &[&alice(), &bob()]).await;
    assert_eq!(
        store
            .push_offline(&alice(), &message(0), OfflineQuota::messages(1))
            .await,
        Ok(true)
    );
    // Alice's message does not count against Bob's limit.
    assert_eq!(
        store
            .push_offline(&bob(), &message(1), OfflineQuota::messages(1))
            .await,
        Ok(true)
    );
    assert_eq!(take_all(store, &bob()).await, Ok(vec![message(1)]));
    assert_eq!(take_all(store, &alice()).await, Ok(vec![message(0)]));
}

pub(crate) async fn deleting_the_account_deletes_its_roster(store: &impl Store) {
    with_accounts(store, &[&alice(), &bob()]).await;
    let mut item = RosterItem::new(bob());
    item.groups = vec!["Friends".into()];
    apply(
        store,
        &[
            put(&alice(), &item),
            RosterChange::AddRequest {
                owner: alice(),
                contact: bob(),
                stanza: "<presence type='subscribe'/>".into(),
            },
            put(&bob(), &RosterItem::new(alice())),
        ],
    )
    .await;
    store
        .push_offline(&alice(), &message(0), OfflineQuota::messages(10))
        .await
        .expect("push");
    store.delete_account(&alice()).await.expect("delete");
    with_accounts(store, &[&alice()]).await;
    assert_eq!(store.roster(&alice()).await, Ok((0, vec![])));
    assert_eq!(store.requests(&alice()).await, Ok(vec![]));
    assert_eq!(take_all(store, &alice()).await, Ok(vec![]));
    // Bob's roster, which names Alice, is his own and stays.
    assert_eq!(
        store.roster(&bob()).await,
        Ok((1, vec![RosterItem::new(alice())]))
    );
}

pub(crate) async fn concurrent_pushes_never_exceed_the_limit(store: &impl Store) {
    with_accounts(store, &[&alice()]).await;
    let messages: Vec<OfflineMessage> = (0..20).map(message).collect();
    let alice = alice();
    let results = join_all(
        messages
            .iter()
            .map(|m| store.push_offline(&alice, m, OfflineQuota::messages(10)))
            .collect(),
    )
    .await;
    let stored = results
        .into_iter()
        .map(|result| result.expect("push succeeds"))
        .filter(|&stored| stored)
        .count();
    assert_eq!(stored, 10);
    let taken = take_all(store, &alice).await.expect("take");
    assert_eq!(taken.len(), 10);
    assert!(taken.iter().all(|m| messages.contains(m)));
}

pub(crate) async fn concurrent_opposite_changes_all_land(store: &impl Store) {
    // Mutual subscriptions in both directions at once, each touching both rosters in the
    // opposite order: a backend that locks in change order could deadlock here.
    with_accounts(store, &[&alice(), &bob()]).await;
    const ROUNDS: usize = 10;
    let forward = [
        put(&alice(), &RosterItem::new(bob())),
        put(&bob(), &RosterItem::new(alice())),
    ];
    let backward = [forward[1].clone(), forward[0].clone()];
    let results = join_all(
        (0..2 * ROUNDS)
            .map(|n| store.apply(if n % 2 == 0 { &forward } else { &backward }, usize::MAX))
            .collect(),
    )
    .await;
    let mut alice_versions = Vec::new();
    for (n, result) in results.into_iter().enumerate() {
        let versions = result.expect("every change lands");
        alice_versions.push(versions[n % 2]);
    }
    // Each apply bumped Alice's version exactly once, and no two saw the same version.
    alice_versions.sort_unstable();
    let expected: Vec<u64> = (1..=2 * ROUNDS as u64).collect();
    assert_eq!(alice_versions, expected);
    let total = 2 * ROUNDS as u64;
    assert_eq!(store.roster(&alice()).await.expect("roster").0, total);
    assert_eq!(store.roster(&bob()).await.expect("roster").0, total);
}

fn contact(n: usize) -> BareJid {
    jid(&format!("contact{n}@localhost"))
}

pub(crate) async fn roster_limit_counts_new_items_in_the_transaction(store: &impl Store) {
    with_accounts(store, &[&alice(), &bob()]).await;
    let full = || StorageError::RosterFull {
        owner: alice(),
        limit: 2,
    };
    let new_item = |n| put(&alice(), &RosterItem::new(contact(n)));
    assert_eq!(
        store.apply(&[new_item(0), new_item(1)], 2).await,
        Ok(vec![1, 2])
    );
    // A third contact does not fit, and the whole list is refused: Bob's change too.
    assert_eq!(
        store
            .apply(&[put(&bob(), &RosterItem::new(alice())), new_item(2)], 2)
            .await,
        Err(full())
    );
    assert_eq!(store.roster(&bob()).await, Ok((0, vec![])));
    assert_eq!(store.roster(&alice()).await.expect("roster").1.len(), 2);
    // Two new items in one list count together.
    assert_eq!(
        store.apply(&[new_item(2), new_item(3)], 3).await,
        Err(StorageError::RosterFull {
            owner: alice(),
            limit: 3,
        })
    );
    // Replacing an item of a full roster is fine, and so is adding after a removal in the
    // same list.
    let mut renamed = RosterItem::new(contact(0));
    renamed.name = Some("Zero".into());
    assert_eq!(
        store.apply(&[put(&alice(), &renamed)], 2).await,
        Ok(vec![3])
    );
    assert_eq!(
        store
            .apply(
                &[
                    RosterChange::Remove {
                        owner: alice(),
                        contact: contact(1),
                    },
                    new_item(2),
                ],
                2
            )
            .await,
        Ok(vec![4, 5])
    );
    // Requests are not roster items and are not counted.
    assert_eq!(
        store
            .apply(
                &[RosterChange::AddRequest {
                    owner: alice(),
                    contact: contact(9),
                    stanza: "<presence type='subscribe'/>".into(),
                }],
                2
            )
            .await,
        Ok(vec![5])
    );
}

pub(crate) async fn concurrent_applies_never_exceed_the_roster_limit(store: &impl Store) {
    with_accounts(store, &[&alice()]).await;
    const LIMIT: usize = 5;
    let changes: Vec<[RosterChange; 1]> = (0..20)
        .map(|n| [put(&alice(), &RosterItem::new(contact(n)))])
        .collect();
    let results = join_all(changes.iter().map(|c| store.apply(c, LIMIT)).collect()).await;
    let applied = results.iter().filter(|r| r.is_ok()).count();
    let refused = results
        .iter()
        .filter(|r| {
            **r == Err(StorageError::RosterFull {
                owner: alice(),
                limit: LIMIT,
            })
        })
        .count();
    assert_eq!((applied, refused), (LIMIT, 20 - LIMIT), "{results:?}");
    assert_eq!(store.roster(&alice()).await.expect("roster").1.len(), LIMIT);
}

/// A message whose stanza is exactly `bytes` bytes long (at least 20).
fn message_of(n: u64, bytes: usize) -> OfflineMessage {
    let head = format!("<message id='{n}'>");
    let tail = "</message>";
    let fill = bytes.saturating_sub(head.len() + tail.len());
    OfflineMessage {
        stored_at_unix_ms: 1000 + n,
        // Two-byte characters count as two bytes, not one character.
        stanza: format!(
            "{head}{}{}{tail}",
            "é".repeat(fill / 2),
            "x".repeat(fill % 2)
        ),
    }
}

pub(crate) async fn offline_bytes_are_capped_like_the_count(store: &impl Store) {
    with_accounts(store, &[&alice()]).await;
    let quota = OfflineQuota {
        max_messages: 100,
        max_bytes: 250,
    };
    assert_eq!(message_of(0, 100).stanza.len(), 100);
    assert_eq!(
        store
            .push_offline(&alice(), &message_of(0, 100), quota)
            .await,
        Ok(true)
    );
    assert_eq!(
        store
            .push_offline(&alice(), &message_of(1, 100), quota)
            .await,
        Ok(true)
    );
    // 200 stored: 51 more bytes would pass 250, 50 would not.
    assert_eq!(
        store
            .push_offline(&alice(), &message_of(2, 51), quota)
            .await,
        Ok(false)
    );
    assert_eq!(
        store
            .push_offline(&alice(), &message_of(3, 50), quota)
            .await,
        Ok(true)
    );
    // One message larger than the whole quota is never stored.
    take_all(store, &alice()).await.expect("take");
    assert_eq!(
        store
            .push_offline(&alice(), &message_of(4, 251), quota)
            .await,
        Ok(false)
    );
    assert_eq!(take_all(store, &alice()).await, Ok(vec![]));
}

pub(crate) async fn concurrent_pushes_never_exceed_the_byte_limit(store: &impl Store) {
    with_accounts(store, &[&alice()]).await;
    let quota = OfflineQuota {
        max_messages: 1000,
        max_bytes: 1000,
    };
    let messages: Vec<OfflineMessage> = (0..20).map(|n| message_of(n, 100)).collect();
    let alice = alice();
    let results = join_all(
        messages
            .iter()
            .map(|m| store.push_offline(&alice, m, quota))
            .collect(),
    )
    .await;
    let stored = results
        .into_iter()
        .map(|result| result.expect("push succeeds"))
        .filter(|&stored| stored)
        .count();
    assert_eq!(stored, 10);
    assert_eq!(take_all(store, &alice).await.expect("take").len(), 10);
}

pub(crate) async fn offline_pages_are_removed_only_when_asked(store: &impl Store) {
    with_accounts(store, &[&alice(), &bob()]).await;
    for n in 0..5 {
        store
            .push_offline(&alice(), &message(n), OfflineQuota::messages(10))
            .await
            .expect("push");
    }
    store
        .push_offline(&bob(), &message(9), OfflineQuota::messages(10))
        .await
        .expect("push");
    let page = store.offline_page(&alice(), 3).await.expect("page");
    let messages: Vec<OfflineMessage> = page.iter().map(|s| s.message.clone()).collect();
    assert_eq!(messages, vec![message(0), message(1), message(2)]);
    // Reading removes nothing.
    assert_eq!(store.offline_page(&alice(), 3).await, Ok(page.clone()));
    // Only what was handed over goes: here the first two of the page.
    let ids: Vec<u64> = page.iter().map(|s| s.id).take(2).collect();
    assert_eq!(store.remove_offline(&alice(), &ids).await, Ok(2));
    assert_eq!(store.remove_offline(&alice(), &ids).await, Ok(0));
    // Bob's ids are not Alice's to remove.
    let bobs: Vec<u64> = store
        .offline_page(&bob(), 10)
        .await
        .expect("page")
        .iter()
        .map(|s: &StoredOffline| s.id)
        .collect();
    assert_eq!(store.remove_offline(&alice(), &bobs).await, Ok(0));
    assert_eq!(
        take_all(store, &alice()).await,
        Ok(vec![message(2), message(3), message(4)])
    );
    assert_eq!(take_all(store, &bob()).await, Ok(vec![message(9)]));
    assert_eq!(store.offline_page(&alice(), 10).await, Ok(vec![]));
}
