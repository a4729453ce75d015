//! Backend-independent tests of the [`AccountDataStore`] contract, run on SQLite here and on
//! PostgreSQL by `tests/postgres.rs`, like `account_tests` and `roster_tests`.

use jid::BareJid;

use crate::account_tests::{credentials, jid};
use crate::{AccountDataStore, AccountStore, DataChange, DataQuota, StorageError};

/// Generates one `#[tokio::test]` per body in this module, each on a fresh store.
macro_rules! account_data_store_tests {
    ($fresh_store:expr) => {
        $crate::data_tests::account_data_store_tests!(@each $fresh_store;
            put_get_list_and_remove,
            list_is_sorted_by_key_bytes,
            stores_and_accounts_are_separate,
            changes_apply_in_order,
            clear_empties_one_store_of_one_account,
            key_quota_refuses_the_whole_change_list,
            byte_quota_counts_key_and_value_bytes,
            over_a_lowered_quota_data_can_still_shrink,
            unknown_account_has_nothing_and_cannot_be_written,
            deleting_the_account_deletes_its_data,
            concurrent_applies_never_exceed_the_key_quota,
            concurrent_applies_never_exceed_the_byte_quota,
            put_many_writes_existing_accounts_in_one_call,
        );
    };
    (@each $fresh_store:expr; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $name() {
                $crate::data_tests::$name(&$fresh_store).await;
            }
        )*
    };
}
pub(crate) use account_data_store_tests;

/// What every body needs of a store.
pub(crate) trait Store: AccountStore + AccountDataStore {}
impl<T: AccountStore + AccountDataStore> Store for T {}

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

pub(crate) fn put(key: &str, value: &[u8]) -> DataChange {
    DataChange::Put {
        key: key.to_owned(),
        value: value.to_vec(),
    }
}

fn remove(key: &str) -> DataChange {
    DataChange::Remove {
        key: key.to_owned(),
    }
}

/// Applies `changes` without a quota; they must land.
async fn apply(store: &impl Store, owner: &BareJid, name: &str, changes: &[DataChange]) {
    assert_eq!(
        store
            .data_apply(owner, name, changes, DataQuota::UNLIMITED)
            .await,
        Ok(true)
    );
}

async fn list(store: &impl Store, owner: &BareJid, name: &str) -> Vec<(String, Vec<u8>)> {
    store.data_list(owner, name).await.expect("list succeeds")
}

async fn get(store: &impl Store, owner: &BareJid, name: &str, key: &str) -> Option<Vec<u8>> {
    store
        .data_get(owner, name, key)
        .await
        .expect("get succeeds")
}

fn entries(pairs: &[(&str, &[u8])]) -> Vec<(String, Vec<u8>)> {
    pairs
        .iter()
        .map(|(key, value)| ((*key).to_owned(), value.to_vec()))
        .collect()
}

pub(crate) async fn put_get_list_and_remove(store: &impl Store) {
    let alice = alice();
    with_accounts(store, &[&alice]).await;
    assert_eq!(get(store, &alice, "vcard", "card").await, None);
    assert_eq!(list(store, &alice, "vcard").await, Vec::new());
    apply(
        store,
        &alice,
        "vcard",
        &[put("card", b"<vCard/>"), put("photo", &[0, 255, 1])],
    )
    .await;
    assert_eq!(
        get(store, &alice, "vcard", "card").await,
        Some(b"<vCard/>".to_vec())
    );
    // Values are opaque bytes, kept exactly.
    assert_eq!(
        get(store, &alice, "vcard", "photo").await,
        Some(vec![0, 255, 1])
    );
    apply(store, &alice, "vcard", &[put("card", b""), remove("photo")]).await;
    assert_eq!(get(store, &alice, "vcard", "card").await, Some(Vec::new()));
    assert_eq!(get(store, &alice, "vcard", "photo").await, None);
    assert_eq!(
        list(store, &alice, "vcard").await,
        entries(&[("card", b"")])
    );
    // Removing a missing key and an empty change list both succeed and change nothing.
    apply(store, &alice, "vcard", &[remove("nothing")]).await;
    apply(store, &alice, "vcard", &[]).await;
    assert_eq!(
        list(store, &alice, "vcard").await,
        entries(&[("card", b"")])
    );
}

pub(crate) async fn list_is_sorted_by_key_bytes(store: &impl Store) {
    let alice = alice();
    with_accounts(store, &[&alice]).await;
    // Given out of order; a locale collation would put "B" after "a" and "é" before "z".
    let keys = ["z", "b", "é", "a", "B", "aa", "romeo@montague.example"];
    let changes: Vec<DataChange> = keys.iter().map(|key| put(key, key.as_bytes())).collect();
    apply(store, &alice, "blocklist", &changes).await;
    let listed: Vec<String> = list(store, &alice, "blocklist")
        .await
        .into_iter()
        .map(|(key, _)| key)
        .collect();
    assert_eq!(
        listed,
        ["B", "a", "aa", "b", "romeo@montague.example", "z", "é"]
    );
}

pub(crate) async fn stores_and_accounts_are_separate(store: &impl Store) {
    let (alice, bob) = (alice(), bob());
    with_accounts(store, &[&alice, &bob]).await;
    apply(store, &alice, "private", &[put("k", b"alice private")]).await;
    apply(store, &alice, "vcard", &[put("k", b"alice vcard")]).await;
    apply(store, &bob, "private", &[put("k", b"bob private")]).await;
    assert_eq!(
        get(store, &alice, "private", "k").await,
        Some(b"alice private".to_vec())
    );
    assert_eq!(
        get(store, &alice, "vcard", "k").await,
        Some(b"alice vcard".to_vec())
    );
    assert_eq!(
        get(store, &bob, "private", "k").await,
        Some(b"bob private".to_vec())
    );
    assert_eq!(get(store, &bob, "vcard", "k").await, None);
    assert_eq!(
        list(store, &bob, "private").await,
        entries(&[("k", b"bob private")])
    );
    // Lookups use the normalised JID, as accounts do.
    assert_eq!(
        get(store, &jid("Alice@LOCALHOST"), "vcard", "k").await,
        Some(b"alice vcard".to_vec())
    );
}

pub(crate) async fn changes_apply_in_order(store: &impl Store) {
    let alice = alice();
    with_accounts(store, &[&alice]).await;
    apply(
        store,
        &alice,
        "s",
        &[put("k", b"1"), remove("k"), put("k", b"2"), put("k", b"3")],
    )
    .await;
    assert_eq!(list(store, &alice, "s").await, entries(&[("k", b"3")]));
    apply(
        store,
        &alice,
        "s",
        &[put("gone", b"x"), DataChange::Clear, put("kept", b"y")],
    )
    .await;
    assert_eq!(list(store, &alice, "s").await, entries(&[("kept", b"y")]));
    apply(store, &alice, "s", &[put("k", b"4"), remove("k")]).await;
    assert_eq!(get(store, &alice, "s", "k").await, None);
}

pub(crate) async fn clear_empties_one_store_of_one_account(store: &impl Store) {
    let (alice, bob) = (alice(), bob());
    with_accounts(store, &[&alice, &bob]).await;
    for owner in [&alice, &bob] {
        for name in ["private", "vcard"] {
            apply(store, owner, name, &[put("a", b"1"), put("b", b"2")]).await;
        }
    }
    apply(store, &alice, "private", &[DataChange::Clear]).await;
    assert_eq!(list(store, &alice, "private").await, Vec::new());
    let both = entries(&[("a", b"1"), ("b", b"2")]);
    assert_eq!(list(store, &alice, "vcard").await, both);
    assert_eq!(list(store, &bob, "private").await, both);
    assert_eq!(list(store, &bob, "vcard").await, both);
    // Clearing an empty store succeeds.
    apply(store, &alice, "private", &[DataChange::Clear]).await;
}

fn keys(max_keys: usize) -> DataQuota {
    DataQuota {
        max_keys,
        max_bytes: usize::MAX,
    }
}

fn bytes(max_bytes: usize) -> DataQuota {
    DataQuota {
        max_keys: usize::MAX,
        max_bytes,
    }
}

pub(crate) async fn key_quota_refuses_the_whole_change_list(store: &impl Store) {
    let alice = alice();
    with_accounts(store, &[&alice]).await;
    let quota = keys(2);
    assert_eq!(
        store
            .data_apply(&alice, "s", &[put("a", b"1"), put("b", b"2")], quota)
            .await,
        Ok(true)
    );
    // A third key is refused, and the change before it in the list is not written either.
    assert_eq!(
        store
            .data_apply(&alice, "s", &[put("a", b"changed"), put("c", b"3")], quota)
            .await,
        Ok(false)
    );
    let full = entries(&[("a", b"1"), ("b", b"2")]);
    assert_eq!(list(store, &alice, "s").await, full);
    // Replacing a key at the limit is fine, and so is adding one while removing another:
    // the count is taken after all the changes.
    assert_eq!(
        store
            .data_apply(&alice, "s", &[put("a", b"new")], quota)
            .await,
        Ok(true)
    );
    assert_eq!(
        store
            .data_apply(&alice, "s", &[put("c", b"3"), remove("b")], quota)
            .await,
        Ok(true)
    );
    assert_eq!(
        list(store, &alice, "s").await,
        entries(&[("a", b"new"), ("c", b"3")])
    );
    // The quota is per store: another store of the same account has its own.
    assert_eq!(
        store
            .data_apply(&alice, "other", &[put("x", b""), put("y", b"")], quota)
            .await,
        Ok(true)
    );
    // Refusal after a Clear writes nothing either: the store keeps its keys.
    assert_eq!(
        store
            .data_apply(
                &alice,
                "s",
                &[
                    DataChange::Clear,
                    put("1", b""),
                    put("2", b""),
                    put("3", b"")
                ],
                quota,
            )
            .await,
        Ok(false)
    );
    assert_eq!(
        list(store, &alice, "s").await,
        entries(&[("a", b"new"), ("c", b"3")])
    );
}

pub(crate) async fn byte_quota_counts_key_and_value_bytes(store: &impl Store) {
    let alice = alice();
    with_accounts(store, &[&alice]).await;
    let quota = bytes(10);
    // "é" is two bytes of UTF-8: 2 + 3 = 5 bytes.
    assert_eq!(
        store
            .data_apply(&alice, "s", &[put("é", b"xyz")], quota)
            .await,
        Ok(true)
    );
    // 5 + (2 + 4) = 11 bytes: refused.
    assert_eq!(
        store
            .data_apply(&alice, "s", &[put("ab", b"1234")], quota)
            .await,
        Ok(false)
    );
    assert_eq!(list(store, &alice, "s").await, entries(&[("é", b"xyz")]));
    // 5 + (2 + 3) = 10 bytes: exactly the quota.
    assert_eq!(
        store
            .data_apply(&alice, "s", &[put("ab", b"123")], quota)
            .await,
        Ok(true)
    );
    // Growing a value past the quota is refused as well; the old value stays.
    assert_eq!(
        store
            .data_apply(&alice, "s", &[put("ab", b"1234")], quota)
            .await,
        Ok(false)
    );
    assert_eq!(get(store, &alice, "s", "ab").await, Some(b"123".to_vec()));
    // Shrinking one value makes room for another in the same list.
    assert_eq!(
        store
            .data_apply(&alice, "s", &[put("é", b""), put("ab", b"123456")], quota)
            .await,
        Ok(true)
    );
    assert_eq!(
        list(store, &alice, "s").await,
        entries(&[("ab", b"123456"), ("é", b"")])
    );
}

pub(crate) async fn over_a_lowered_quota_data_can_still_shrink(store: &impl Store) {
    let alice = alice();
    with_accounts(store, &[&alice]).await;
    apply(
        store,
        &alice,
        "s",
        &[put("a", b"aaaa"), put("b", b"bbbb"), put("c", b"cccc")],
    )
    .await;
    // Now 3 keys and 15 bytes, over this quota on both counts.
    let quota = DataQuota {
        max_keys: 1,
        max_bytes: 5,
    };
    assert_eq!(
        store.data_apply(&alice, "s", &[put("d", b"")], quota).await,
        Ok(false)
    );
    assert_eq!(
        store
            .data_apply(&alice, "s", &[put("a", b"aaaaa")], quota)
            .await,
        Ok(false)
    );
    assert_eq!(
        store.data_apply(&alice, "s", &[remove("a")], quota).await,
        Ok(true)
    );
    assert_eq!(
        store.data_apply(&alice, "s", &[put("b", b"")], quota).await,
        Ok(true)
    );
    assert_eq!(
        list(store, &alice, "s").await,
        entries(&[("b", b""), ("c", b"cccc")])
    );
}

pub(crate) async fn unknown_account_has_nothing_and_cannot_be_written(store: &impl Store) {
    let (alice, nobody, domain) = (alice(), jid("nobody@localhost"), jid("localhost"));
    with_accounts(store, &[&alice]).await;
    for owner in [&nobody, &domain] {
        assert_eq!(
            store
                .data_apply(owner, "s", &[put("k", b"v")], DataQuota::UNLIMITED)
                .await,
            Err(StorageError::AccountNotFound(owner.clone()))
        );
        assert_eq!(get(store, owner, "s", "k").await, None);
        assert_eq!(list(store, owner, "s").await, Vec::new());
    }
    // Creating the account later does not reveal anything of the refused write.
    with_accounts(store, &[&nobody]).await;
    assert_eq!(list(store, &nobody, "s").await, Vec::new());
}

pub(crate) async fn deleting_the_account_deletes_its_data(store: &impl Store) {
    let (alice, bob) = (alice(), bob());
    with_accounts(store, &[&alice, &bob]).await;
    apply(store, &alice, "vcard", &[put("card", b"<vCard/>")]).await;
    apply(store, &alice, "private", &[put("k", b"v")]).await;
    apply(store, &bob, "vcard", &[put("card", b"bob")]).await;
    store.delete_account(&alice).await.expect("delete");
    assert_eq!(get(store, &alice, "vcard", "card").await, None);
    // A new account of the same name starts empty.
    with_accounts(store, &[&alice]).await;
    assert_eq!(list(store, &alice, "vcard").await, Vec::new());
    assert_eq!(list(store, &alice, "private").await, Vec::new());
    assert_eq!(
        list(store, &bob, "vcard").await,
        entries(&[("card", b"bob")])
    );
}

pub(crate) async fn concurrent_applies_never_exceed_the_key_quota(store: &impl Store) {
    let alice = alice();
    with_accounts(store, &[&alice]).await;
    let quota = keys(3);
    let changes: Vec<[DataChange; 1]> = (0..12).map(|n| [put(&format!("k{n:02}"), b"")]).collect();
    let results = crate::roster_tests::join_all(
        changes
            .iter()
            .map(|change| store.data_apply(&alice, "s", change, quota))
            .collect(),
    )
    .await;
    let stored = results.iter().filter(|result| **result == Ok(true)).count();
    let refused = results
        .iter()
        .filter(|result| **result == Ok(false))
        .count();
    assert_eq!((stored, refused), (3, 9), "{results:?}");
    assert_eq!(list(store, &alice, "s").await.len(), 3);
}

pub(crate) async fn concurrent_applies_never_exceed_the_byte_quota(store: &impl Store) {
    let alice = alice();
    with_accounts(store, &[&alice]).await;
    // Each entry is 3 + 7 = 10 bytes; 35 bytes hold three.
    let quota = bytes(35);
    let changes: Vec<[DataChange; 1]> = (0..12)
        .map(|n| [put(&format!("k{n:02}"), b"1234567")])
        .collect();
    let results = crate::roster_tests::join_all(
        changes
            .iter()
            .map(|change| store.data_apply(&alice, "s", change, quota))
            .collect(),
    )
    .await;
    let stored = results.iter().filter(|result| **result == Ok(true)).count();
    assert_eq!(stored, 3, "{results:?}");
    assert_eq!(list(store, &alice, "s").await.len(), 3);
}

pub(crate) async fn put_many_writes_existing_accounts_in_one_call(store: &impl Store) {
    let (alice, bob, ghost) = (alice(), bob(), jid("ghost@localhost"));
    with_accounts(store, &[&alice, &bob]).await;
    apply(store, &alice, "last", &[put("other", b"kept")]).await;
    let written = store
        .data_put_many(
            "last",
            "last",
            &[
                (alice.clone(), b"1".to_vec()),
                (ghost.clone(), b"2".to_vec()),
                (bob.clone(), b"3".to_vec()),
            ],
        )
        .await;
    // The account that does not exist is skipped, the others written.
    assert_eq!(written, Ok(2));
    assert_eq!(
        list(store, &alice, "last").await,
        entries(&[("last", b"1"), ("other", b"kept")])
    );
    assert_eq!(get(store, &bob, "last", "last").await, Some(b"3".to_vec()));
    assert_eq!(get(store, &ghost, "last", "last").await, None);
    // A second call replaces the values; an empty one writes nothing.
    let again = store
        .data_put_many("last", "last", &[(alice.clone(), b"4".to_vec())])
        .await;
    assert_eq!(again, Ok(1));
    assert_eq!(
        get(store, &alice, "last", "last").await,
        Some(b"4".to_vec())
    );
    assert_eq!(store.data_put_many("last", "last", &[]).await, Ok(0));
}
