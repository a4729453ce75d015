//! Backend-independent tests of the [`AccountStore`] contract.
//!
//! Each test body is an `async fn` taking `&impl AccountStore`, so every backend runs the same
//! bodies: SQLite in the unit tests, PostgreSQL in `tests/postgres.rs` (as ripgrep's `rgtest!`
//! runs each test under both regex engines). A backend module instantiates them all with
//! `crate::account_tests::account_store_tests!(expression making a fresh, empty store);` and
//! keeps only its backend-specific tests (migrations, pragmas, raw rows) to itself.

use jid::BareJid;
use starling_sasl::{KeyCoverage, ScramHash, ScramHashes, ScramKeys, StoredCredentials};

use crate::{AccountStore, StorageError};

/// Generates one `#[tokio::test]` per body in this module, each on a fresh store.
macro_rules! account_store_tests {
    ($fresh_store:expr) => {
        $crate::account_tests::account_store_tests!(@each $fresh_store;
            create_then_fetch,
            duplicate_create_is_account_exists,
            jid_without_localpart_is_no_account,
            list_is_per_host_and_sorted,
            lookups_use_normalised_jids,
            set_credentials_replaces_all_keys,
            set_credentials_of_missing_account_is_not_found,
            delete_removes_account,
            delete_missing_is_not_found,
            credentials_round_trip_byte_exact,
            account_without_keys_is_still_an_account,
            failed_create_leaves_nothing_behind,
            missing_keys_are_added_only_while_the_verified_keys_stand,
            missing_keys_never_replace_existing_ones,
            missing_keys_for_an_unknown_account_add_nothing,
            key_coverage_counts_per_host_and_hash,
        );
    };
    (@each $fresh_store:expr; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $name() {
                $crate::account_tests::$name(&$fresh_store).await;
            }
        )*
    };
}
pub(crate) use account_store_tests;

pub(crate) fn jid(text: &str) -> BareJid {
    BareJid::new(text).expect("test JID is valid")
}

pub(crate) fn alice() -> BareJid {
    jid("alice@example.org")
}

/// Distinct, recognisable credentials with both hashes, derived from `seed`.
pub(crate) fn credentials(seed: u8) -> StoredCredentials {
    StoredCredentials {
        keys: vec![
            ScramKeys {
                hash: ScramHash::Sha1,
                salt: vec![seed, 0x01, 0x02, 0x03],
                iterations: 4096,
                stored_key: vec![seed; 20],
                server_key: vec![seed.wrapping_add(1); 20],
            },
            ScramKeys {
                hash: ScramHash::Sha256,
                salt: vec![seed, 0x11, 0x12, 0x13],
                iterations: 10_000,
                stored_key: vec![seed; 32],
                server_key: vec![seed.wrapping_add(2); 32],
            },
        ],
    }
}

/// `ScramKeys` has no `Debug` (it holds key material), so tests compare this printable form.
pub(crate) type KeysDump = Vec<(ScramHash, Vec<u8>, u32, Vec<u8>, Vec<u8>)>;

pub(crate) fn dump(creds: &StoredCredentials) -> KeysDump {
    creds
        .keys
        .iter()
        .map(|k| {
            (
                k.hash,
                k.salt.clone(),
                k.iterations,
                k.stored_key.clone(),
                k.server_key.clone(),
            )
        })
        .collect()
}

async fn stored(store: &impl AccountStore, jid: &BareJid) -> Option<KeysDump> {
    store
        .credentials(jid)
        .await
        .expect("credentials lookup succeeds")
        .as_ref()
        .map(dump)
}

async fn create(store: &impl AccountStore, jid: &BareJid, creds: &StoredCredentials) {
    store
        .create_account(jid, creds)
        .await
        .expect("account is created");
}

pub(crate) async fn create_then_fetch(store: &impl AccountStore) {
    create(store, &alice(), &credentials(1)).await;
    assert_eq!(stored(store, &alice()).await, Some(dump(&credentials(1))));
    assert_eq!(stored(store, &jid("bob@example.org")).await, None);
    assert_eq!(stored(store, &jid("alice@example.com")).await, None);
}

pub(crate) async fn duplicate_create_is_account_exists(store: &impl AccountStore) {
    create(store, &alice(), &credentials(1)).await;
    assert_eq!(
        store.create_account(&alice(), &credentials(2)).await,
        Err(StorageError::AccountExists(alice()))
    );
    assert_eq!(stored(store, &alice()).await, Some(dump(&credentials(1))));
}

pub(crate) async fn jid_without_localpart_is_no_account(store: &impl AccountStore) {
    let domain = jid("example.org");
    assert_eq!(
        store.create_account(&domain, &credentials(1)).await,
        Err(StorageError::NoLocalpart(domain.clone()))
    );
    assert_eq!(stored(store, &domain).await, None);
    assert_eq!(
        store.set_credentials(&domain, &credentials(1)).await,
        Err(StorageError::AccountNotFound(domain.clone()))
    );
    assert_eq!(
        store.delete_account(&domain).await,
        Err(StorageError::AccountNotFound(domain.clone()))
    );
    assert_eq!(store.list_accounts("example.org").await, Ok(vec![]));
}

pub(crate) async fn list_is_per_host_and_sorted(store: &impl AccountStore) {
    // "a.b" sorts before "a" as a JID ('.' < '@'), the opposite of username order.
    for user in ["romeo", "a", "juliet", "a.b"] {
        create(store, &jid(&format!("{user}@example.org")), &credentials(1)).await;
    }
    create(store, &jid("nurse@other.example"), &credentials(1)).await;

    let expected = vec![
        jid("a.b@example.org"),
        jid("a@example.org"),
        jid("juliet@example.org"),
        jid("romeo@example.org"),
    ];
    assert_eq!(
        store.list_accounts("example.org").await,
        Ok(expected.clone())
    );
    assert_eq!(store.list_accounts("EXAMPLE.org").await, Ok(expected));
    assert_eq!(
        store.list_accounts("other.example").await,
        Ok(vec![jid("nurse@other.example")])
    );
    assert_eq!(store.list_accounts("nowhere.example").await, Ok(vec![]));
    assert_eq!(store.list_accounts("").await, Ok(vec![]));
}

pub(crate) async fn lookups_use_normalised_jids(store: &impl AccountStore) {
    create(store, &jid("Alice@Example.ORG"), &credentials(1)).await;
    assert_eq!(stored(store, &alice()).await, Some(dump(&credentials(1))));
    assert_eq!(
        store.create_account(&alice(), &credentials(2)).await,
        Err(StorageError::AccountExists(alice()))
    );
    assert_eq!(store.list_accounts("example.org").await, Ok(vec![alice()]));
}

pub(crate) async fn set_credentials_replaces_all_keys(store: &impl AccountStore) {
    let bob = jid("bob@example.org");
    create(store, &alice(), &credentials(1)).await;
    create(store, &bob, &credentials(3)).await;

    let mut sha256_only = credentials(2);
    sha256_only.keys.retain(|k| k.hash == ScramHash::Sha256);
    store
        .set_credentials(&alice(), &sha256_only)
        .await
        .expect("credentials are replaced");

    assert_eq!(stored(store, &alice()).await, Some(dump(&sha256_only)));
    assert_eq!(stored(store, &bob).await, Some(dump(&credentials(3))));
}

pub(crate) async fn set_credentials_of_missing_account_is_not_found(store: &impl AccountStore) {
    assert_eq!(
        store.set_credentials(&alice(), &credentials(1)).await,
        Err(StorageError::AccountNotFound(alice()))
    );
    assert_eq!(stored(store, &alice()).await, None);
}

pub(crate) async fn delete_removes_account(store: &impl AccountStore) {
    let bob = jid("bob@example.org");
    create(store, &alice(), &credentials(1)).await;
    create(store, &bob, &credentials(2)).await;

    store
        .delete_account(&alice())
        .await
        .expect("account is deleted");

    assert_eq!(stored(store, &alice()).await, None);
    assert_eq!(stored(store, &bob).await, Some(dump(&credentials(2))));
    assert_eq!(store.list_accounts("example.org").await, Ok(vec![bob]));
    // The name is free again, with none of the old keys.
    create(store, &alice(), &credentials(4)).await;
    assert_eq!(stored(store, &alice()).await, Some(dump(&credentials(4))));
}

pub(crate) async fn delete_missing_is_not_found(store: &impl AccountStore) {
    assert_eq!(
        store.delete_account(&alice()).await,
        Err(StorageError::AccountNotFound(alice()))
    );
    create(store, &alice(), &credentials(1)).await;
    store.delete_account(&alice()).await.expect("first delete");
    assert_eq!(
        store.delete_account(&alice()).await,
        Err(StorageError::AccountNotFound(alice()))
    );
}

pub(crate) async fn credentials_round_trip_byte_exact(store: &impl AccountStore) {
    let all_bytes: Vec<u8> = (0..=u8::MAX).collect();
    let creds = StoredCredentials {
        // Stored SHA-256 first; read back in ScramHash order.
        keys: vec![
            ScramKeys {
                hash: ScramHash::Sha256,
                salt: all_bytes.clone(),
                iterations: u32::MAX,
                stored_key: vec![0x00; 32],
                server_key: vec![0xff; 32],
            },
            ScramKeys {
                hash: ScramHash::Sha1,
                salt: Vec::new(),
                iterations: 1,
                stored_key: all_bytes.iter().rev().copied().collect(),
                server_key: b"\0trailing nul\0".to_vec(),
            },
        ],
    };
    create(store, &alice(), &creds).await;

    let mut expected = dump(&creds);
    expected.reverse();
    assert_eq!(stored(store, &alice()).await, Some(expected));
}

pub(crate) async fn account_without_keys_is_still_an_account(store: &impl AccountStore) {
    create(store, &alice(), &StoredCredentials::default()).await;
    assert_eq!(stored(store, &alice()).await, Some(vec![]));
    assert_eq!(
        store.create_account(&alice(), &credentials(1)).await,
        Err(StorageError::AccountExists(alice()))
    );
}

pub(crate) async fn failed_create_leaves_nothing_behind(store: &impl AccountStore) {
    // Two keys for one hash break StoredCredentials' invariant; the backend refuses the
    // second insert and the account row must go with it.
    let mut creds = credentials(1);
    let first = creds.keys[0].clone();
    creds.keys.push(first);
    let result = store.create_account(&alice(), &creds).await;
    assert!(
        matches!(result, Err(StorageError::Backend(_))),
        "duplicate hash is refused by the backend: {result:?}"
    );
    assert_eq!(stored(store, &alice()).await, None);
    assert_eq!(store.list_accounts("example.org").await, Ok(vec![]));
}

/// `credentials(seed)` with only its SHA-1 keys, as Prosody's import leaves an account.
pub(crate) fn sha1_only(seed: u8) -> StoredCredentials {
    let mut creds = credentials(seed);
    creds.keys.retain(|keys| keys.hash == ScramHash::Sha1);
    creds
}

/// The SHA-256 keys of `credentials(seed)`.
fn sha256_keys(seed: u8) -> ScramKeys {
    credentials(seed).keys[1].clone()
}

pub(crate) async fn missing_keys_are_added_only_while_the_verified_keys_stand(
    store: &impl AccountStore,
) {
    create(store, &alice(), &sha1_only(1)).await;
    let verified = sha1_only(1).keys[0].clone();
    // A password change between the check and the upgrade: keys derived from the old password
    // must not land.
    store
        .set_credentials(&alice(), &sha1_only(2))
        .await
        .expect("password change");
    assert_eq!(
        store
            .add_missing_keys(&alice(), &verified, &[sha256_keys(1)])
            .await,
        Ok(ScramHashes::NONE)
    );
    assert_eq!(stored(store, &alice()).await, Some(dump(&sha1_only(2))));
    // With the keys the password was checked against, the missing hash is added.
    let verified = sha1_only(2).keys[0].clone();
    assert_eq!(
        store
            .add_missing_keys(&alice(), &verified, &[sha256_keys(2)])
            .await,
        Ok(ScramHashes::only(ScramHash::Sha256))
    );
    assert_eq!(stored(store, &alice()).await, Some(dump(&credentials(2))));
}

pub(crate) async fn missing_keys_never_replace_existing_ones(store: &impl AccountStore) {
    create(store, &alice(), &credentials(1)).await;
    let verified = credentials(1).keys[0].clone();
    // Keys for both hashes offered; the account has both already (a concurrent upgrade won).
    let offered = credentials(9).keys;
    assert_eq!(
        store.add_missing_keys(&alice(), &verified, &offered).await,
        Ok(ScramHashes::NONE)
    );
    assert_eq!(stored(store, &alice()).await, Some(dump(&credentials(1))));
}

pub(crate) async fn missing_keys_for_an_unknown_account_add_nothing(store: &impl AccountStore) {
    let verified = credentials(1).keys[0].clone();
    assert_eq!(
        store
            .add_missing_keys(&alice(), &verified, &[sha256_keys(1)])
            .await,
        Ok(ScramHashes::NONE)
    );
    assert_eq!(
        store
            .add_missing_keys(&jid("example.org"), &verified, &[sha256_keys(1)])
            .await,
        Ok(ScramHashes::NONE)
    );
    assert_eq!(store.credentials(&alice()).await, Ok(None));
}

pub(crate) async fn key_coverage_counts_per_host_and_hash(store: &impl AccountStore) {
    assert_eq!(
        store.key_coverage("example.org").await,
        Ok(KeyCoverage::default()),
        "an empty host"
    );
    for (name, creds) in [
        ("a@example.org", credentials(1)),
        ("b@example.org", sha1_only(2)),
        ("c@example.org", sha1_only(3)),
        ("d@example.org", StoredCredentials::default()),
        ("e@example.net", sha1_only(4)),
    ] {
        store
            .create_account(&jid(name), &creds)
            .await
            .expect("create");
    }
    let coverage = store.key_coverage("Example.ORG").await.expect("count");
    assert_eq!(
        coverage,
        KeyCoverage {
            accounts: 4,
            without_keys: 1,
            with_hash: vec![(ScramHash::Sha1, 3), (ScramHash::Sha256, 1)],
        }
    );
    assert_eq!(coverage.lacking(ScramHash::Sha256), 2);
    assert_eq!(
        coverage.complete_hashes(),
        ScramHashes::only(ScramHash::Sha1)
    );
    assert_eq!(
        store
            .key_coverage("example.net")
            .await
            .expect("count")
            .lacking(ScramHash::Sha256),
        1
    );
    assert_eq!(
        store.key_coverage("not a domain").await,
        Ok(KeyCoverage::default())
    );
    // One upgrade each, and SHA-256 is complete on example.org.
    for (name, seed) in [("b@example.org", 2), ("c@example.org", 3)] {
        let verified = sha1_only(seed).keys[0].clone();
        store
            .add_missing_keys(&jid(name), &verified, &[sha256_keys(seed)])
            .await
            .expect("upgrade");
    }
    assert_eq!(
        store
            .key_coverage("example.org")
            .await
            .expect("count")
            .complete_hashes(),
        ScramHashes::ALL
    );
}
