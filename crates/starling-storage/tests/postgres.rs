//! The storage contract and PostgreSQL-specific behaviour, against a real PostgreSQL.
//!
//! The server is named by `STARLING_TEST_POSTGRES_URL`, a libpq `key=value` connection string
//! for a role that may create databases; `cargo xtask test` starts a throwaway PostgreSQL and
//! sets it. Without it every test here fails rather than passing unchecked. Each test runs in
//! a database of its own, created for it and dropped after, so tests run in parallel.
//!
//! This is an integration test, not a unit test, so `cargo xtask test --quick` (which runs only
//! `--lib --bins`) does not need PostgreSQL.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use jid::BareJid;
use starling_sasl::{KeyCoverage, ScramHashes, ScramKeys, StoredCredentials};
use starling_storage::{
    AccountData, AccountDataEntry, AccountDataStore, AccountStore, AnyStore, Appended,
    ArchiveFilter, ArchivePage, ArchiveQuota, ArchiveStore, ArchiveUsage, ArchivedMessage,
    DataChange, DataQuota, Direction, ExistingAccounts, InitialPresence, OfflineMessage,
    OfflineQuota, OfflineStore, PageFrom, PortableStore, PostgresStore, Retention, RosterChange,
    RosterItem, RosterStore, StorageError, StoredOffline, Subscription, WithFilter, id_at,
};
use tokio_postgres::NoTls;

// The backend-independent bodies, shared with the SQLite unit tests. They name the crate's
// items through `crate::`, which the `use` above provides here.
#[allow(dead_code)]
#[path = "../src/account_tests.rs"]
mod account_tests;

#[allow(dead_code)]
#[path = "../src/roster_tests.rs"]
mod roster_tests;

#[allow(dead_code)]
#[path = "../src/portable_tests.rs"]
mod portable_tests;

#[allow(dead_code)]
#[path = "../src/data_tests.rs"]
mod data_tests;

#[allow(dead_code)]
#[path = "../src/archive_tests.rs"]
mod archive_tests;

use account_tests::{alice, credentials, dump, jid};

const URL_VARIABLE: &str = "STARLING_TEST_POSTGRES_URL";

account_tests::account_store_tests!(TestDb::new().await);
roster_tests::roster_store_tests!(TestDb::new().await);
portable_tests::portable_store_tests!(TestDb::new().await);
data_tests::account_data_store_tests!(TestDb::new().await);
archive_tests::archive_store_tests!(TestDb::new().await);

/// The contract through [`AnyStore`], so its forwarding is checked on this variant too.
mod through_any_store {
    use super::*;

    account_tests::account_store_tests!(TestDb::new_with(AnyStore::from).await);
    roster_tests::roster_store_tests!(TestDb::new_with(AnyStore::from).await);
    portable_tests::portable_store_tests!(TestDb::new_with(AnyStore::from).await);
    data_tests::account_data_store_tests!(TestDb::new_with(AnyStore::from).await);
    archive_tests::archive_store_tests!(TestDb::new_with(AnyStore::from).await);
}

/// The admin connection string from the environment.
fn server_url() -> String {
    match std::env::var(URL_VARIABLE) {
        Ok(url) if !url.trim().is_empty() => {
            assert!(
                !url.contains("://"),
                "{URL_VARIABLE} must be a key=value connection string \
                 (host=... port=... user=... dbname=...), not a URI"
            );
            url
        }
        _ => panic!(
            "{URL_VARIABLE} is not set, so there is no PostgreSQL to test against: run \
             `cargo xtask test`, which starts one, or point {URL_VARIABLE} at a server where \
             the user may CREATE DATABASE"
        ),
    }
}

async fn admin_client(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .unwrap_or_else(|err| panic!("cannot connect to {URL_VARIABLE} ({url}): {err}"));
    tokio::spawn(connection);
    client
}

/// A fresh, empty database and a store connected to it: a [`PostgresStore`], or the same in
/// an [`AnyStore`]. The database is dropped when this is.
struct TestDb<S = PostgresStore> {
    store: S,
    name: String,
    server_url: String,
}

impl TestDb {
    async fn new() -> Self {
        Self::new_with(|store| store).await
    }
}

impl<S> TestDb<S> {
    async fn new_with(wrap: impl FnOnce(PostgresStore) -> S) -> Self {
        let server_url = server_url();
        let name = unique_name();
        admin_client(&server_url)
            .await
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap_or_else(|err| panic!("cannot create test database {name}: {err}"));
        let store = PostgresStore::connect(&url_of(&server_url, &name))
            .await
            .expect("a fresh database connects and migrates");
        Self {
            store: wrap(store),
            name,
            server_url,
        }
    }

    fn url(&self) -> String {
        url_of(&self.server_url, &self.name)
    }

    /// A plain client on the test database, for inspecting and corrupting rows.
    async fn raw(&self) -> tokio_postgres::Client {
        admin_client(&self.url()).await
    }
}

/// The connection string of database `name` on the server: in a libpq `key=value` string a
/// later key overrides an earlier one.
fn url_of(server_url: &str, name: &str) -> String {
    format!("{server_url} dbname={name}")
}

/// Unique across the parallel test processes and threads of one run, and across runs against
/// a long-lived server.
fn unique_name() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_nanos());
    format!(
        "starling_test_{}_{}_{nanos}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

impl<S> Drop for TestDb<S> {
    fn drop(&mut self) {
        // Dropping needs async work and Drop cannot await, so it runs on a runtime of its own
        // on a separate thread (the test's runtime thread is the one being blocked). FORCE
        // ends the store's pooled connections, which are still open at this point.
        let (url, name) = (self.server_url.clone(), self.name.clone());
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime for dropping the test database");
            runtime.block_on(async move {
                admin_client(&url)
                    .await
                    .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .await
            })
        })
        .join();
        if !std::thread::panicking() {
            match dropped {
                Ok(Ok(())) => {}
                Ok(Err(err)) => panic!("cannot drop test database {}: {err}", self.name),
                Err(_) => panic!("dropping test database {} panicked", self.name),
            }
        }
    }
}

impl<S: AccountStore> AccountStore for TestDb<S> {
    async fn create_account(
        &self,
        jid: &BareJid,
        creds: &StoredCredentials,
    ) -> Result<(), StorageError> {
        self.store.create_account(jid, creds).await
    }

    async fn set_credentials(
        &self,
        jid: &BareJid,
        creds: &StoredCredentials,
    ) -> Result<(), StorageError> {
        self.store.set_credentials(jid, creds).await
    }

    async fn delete_account(&self, jid: &BareJid) -> Result<(), StorageError> {
        self.store.delete_account(jid).await
    }

    async fn credentials(&self, jid: &BareJid) -> Result<Option<StoredCredentials>, StorageError> {
        self.store.credentials(jid).await
    }

    async fn list_accounts(&self, host: &str) -> Result<Vec<BareJid>, StorageError> {
        self.store.list_accounts(host).await
    }

    async fn add_missing_keys(
        &self,
        jid: &BareJid,
        verified: &ScramKeys,
        added: &[ScramKeys],
    ) -> Result<ScramHashes, StorageError> {
        self.store.add_missing_keys(jid, verified, added).await
    }

    async fn key_coverage(&self, host: &str) -> Result<KeyCoverage, StorageError> {
        self.store.key_coverage(host).await
    }
}

impl<S: PortableStore> PortableStore for TestDb<S> {
    async fn export_host(&self, host: &str) -> Result<Vec<AccountData>, StorageError> {
        self.store.export_host(host).await
    }

    async fn import_accounts(
        &self,
        accounts: &[AccountData],
        existing: ExistingAccounts,
    ) -> Result<(), StorageError> {
        self.store.import_accounts(accounts, existing).await
    }
}

impl<S: AccountDataStore> AccountDataStore for TestDb<S> {
    async fn data_get(
        &self,
        account: &BareJid,
        store: &str,
        key: &str,
    ) -> Result<Option<Vec<u8>>, StorageError> {
        self.store.data_get(account, store, key).await
    }

    async fn data_list(
        &self,
        account: &BareJid,
        store: &str,
    ) -> Result<Vec<(String, Vec<u8>)>, StorageError> {
        self.store.data_list(account, store).await
    }

    async fn data_apply(
        &self,
        account: &BareJid,
        store: &str,
        changes: &[DataChange],
        quota: DataQuota,
    ) -> Result<bool, StorageError> {
        self.store.data_apply(account, store, changes, quota).await
    }

    async fn data_put_many(
        &self,
        store: &str,
        key: &str,
        entries: &[(BareJid, Vec<u8>)],
    ) -> Result<usize, StorageError> {
        self.store.data_put_many(store, key, entries).await
    }
}

impl<S: RosterStore> RosterStore for TestDb<S> {
    async fn roster(&self, owner: &BareJid) -> Result<(u64, Vec<RosterItem>), StorageError> {
        self.store.roster(owner).await
    }

    async fn roster_item(
        &self,
        owner: &BareJid,
        contact: &BareJid,
    ) -> Result<Option<RosterItem>, StorageError> {
        self.store.roster_item(owner, contact).await
    }

    async fn apply(
        &self,
        changes: &[RosterChange],
        max_items: usize,
    ) -> Result<Vec<u64>, StorageError> {
        self.store.apply(changes, max_items).await
    }

    async fn has_request(&self, owner: &BareJid, contact: &BareJid) -> Result<bool, StorageError> {
        self.store.has_request(owner, contact).await
    }

    async fn requests(&self, owner: &BareJid) -> Result<Vec<(BareJid, String)>, StorageError> {
        self.store.requests(owner).await
    }

    async fn initial_presence(&self, owner: &BareJid) -> Result<InitialPresence, StorageError> {
        self.store.initial_presence(owner).await
    }
}

impl<S: OfflineStore> OfflineStore for TestDb<S> {
    async fn push_offline(
        &self,
        owner: &BareJid,
        message: &OfflineMessage,
        quota: OfflineQuota,
    ) -> Result<bool, StorageError> {
        self.store.push_offline(owner, message, quota).await
    }

    async fn offline_page(
        &self,
        owner: &BareJid,
        max: usize,
    ) -> Result<Vec<StoredOffline>, StorageError> {
        self.store.offline_page(owner, max).await
    }

    async fn remove_offline(&self, owner: &BareJid, ids: &[u64]) -> Result<usize, StorageError> {
        self.store.remove_offline(owner, ids).await
    }
}

impl<S: ArchiveStore> ArchiveStore for TestDb<S> {
    async fn archive_append(
        &self,
        messages: &[(BareJid, ArchivedMessage)],
        quota: ArchiveQuota,
    ) -> Result<Vec<Appended>, StorageError> {
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
        ids: &[uuid::Uuid],
    ) -> Result<Vec<ArchivedMessage>, StorageError> {
        self.store.archive_get(owner, ids).await
    }

    async fn archive_bounds(
        &self,
        owner: &BareJid,
    ) -> Result<Option<(uuid::Uuid, uuid::Uuid)>, StorageError> {
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
        id: &uuid::Uuid,
        quota: OfflineQuota,
    ) -> Result<bool, StorageError> {
        self.store.archive_mark_pending(owner, id, quota).await
    }
}

async fn applied_versions(client: &tokio_postgres::Client) -> Vec<i32> {
    client
        .query(
            "SELECT version FROM schema_migrations ORDER BY version",
            &[],
        )
        .await
        .expect("schema_migrations is readable")
        .iter()
        .map(|row| row.get(0))
        .collect()
}

#[tokio::test]
async fn connect_records_migrations_once() {
    let db = TestDb::new().await;
    let raw = db.raw().await;
    assert_eq!(applied_versions(&raw).await, vec![1, 2, 3, 4]);
    // Connecting again finds everything applied and changes nothing.
    db.store
        .create_account(&alice(), &credentials(1))
        .await
        .expect("create");
    PostgresStore::connect(&db.url()).await.expect("reconnect");
    assert_eq!(applied_versions(&raw).await, vec![1, 2, 3, 4]);
    assert_eq!(
        db.store
            .credentials(&alice())
            .await
            .expect("lookup")
            .as_ref()
            .map(dump),
        Some(dump(&credentials(1)))
    );
}

#[tokio::test]
async fn concurrent_connects_migrate_once() {
    let db = TestDb::new().await;
    // A second empty database, migrated by several "nodes" starting at once.
    let raw = db.raw().await;
    let name = unique_name();
    raw.batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .expect("create second database");
    let url = url_of(&db.server_url, &name);
    let connects: Vec<_> = (0..4)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move { PostgresStore::connect(&url).await.map(|_| ()) })
        })
        .collect();
    for connect in connects {
        assert_eq!(connect.await.expect("task completes"), Ok(()));
    }
    assert_eq!(
        applied_versions(&admin_client(&url).await).await,
        vec![1, 2, 3, 4]
    );
    raw.batch_execute(&format!("DROP DATABASE {name} WITH (FORCE)"))
        .await
        .expect("drop second database");
}

#[tokio::test]
async fn newer_database_is_refused() {
    let db = TestDb::new().await;
    db.raw()
        .await
        .batch_execute("INSERT INTO schema_migrations (version) VALUES (5)")
        .await
        .expect("pretend a newer build migrated");
    assert_eq!(
        PostgresStore::connect(&db.url()).await.err(),
        Some(StorageError::Migration {
            version: 5,
            reason: "database schema is newer than this build, which knows versions up to 4"
                .to_owned(),
        })
    );
}

#[tokio::test]
async fn delete_cascades_to_keys() {
    let db = TestDb::new().await;
    db.create_account(&alice(), &credentials(1))
        .await
        .expect("create");
    db.delete_account(&alice()).await.expect("delete");
    let keys: i64 = db
        .raw()
        .await
        .query_one("SELECT count(*) FROM scram_keys", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(keys, 0);
}

#[tokio::test]
async fn duplicate_hash_is_a_backend_error() {
    let db = TestDb::new().await;
    let mut creds = credentials(1);
    creds.keys.push(creds.keys[0].clone());
    assert_eq!(
        db.create_account(&alice(), &creds).await,
        Err(StorageError::Backend(
            "insert SCRAM-SHA-1 keys: duplicate key value violates unique constraint \
             \"scram_keys_pkey\""
                .to_owned()
        ))
    );
    // The pool's connection was left mid-transaction by the error; the next borrower must
    // find it clean.
    db.create_account(&alice(), &credentials(1))
        .await
        .expect("create after a failed create");
}

async fn insert_raw_keys(db: &TestDb, hash: &str, iterations: i64) {
    db.create_account(&alice(), &StoredCredentials::default())
        .await
        .expect("create");
    db.raw()
        .await
        .execute(
            "INSERT INTO scram_keys SELECT id, $1, '\\x00', $2, '\\x00', '\\x00' FROM accounts",
            &[&hash, &iterations],
        )
        .await
        .expect("insert");
}

#[tokio::test]
async fn unknown_hash_name_is_corrupt() {
    let db = TestDb::new().await;
    insert_raw_keys(&db, "SCRAM-MD5", 1).await;
    assert_eq!(
        db.credentials(&alice()).await.err(),
        Some(StorageError::Corrupt(
            "unknown hash \"SCRAM-MD5\" in keys of alice@example.org".to_owned()
        ))
    );
}

#[tokio::test]
async fn out_of_range_iteration_count_is_corrupt() {
    for (iterations, text) in [(-1, "-1"), (1 << 32, "4294967296")] {
        let db = TestDb::new().await;
        insert_raw_keys(&db, "SCRAM-SHA-256", iterations).await;
        assert_eq!(
            db.credentials(&alice()).await.err(),
            Some(StorageError::Corrupt(format!(
                "iteration count {text} out of range in SCRAM-SHA-256 keys of alice@example.org"
            )))
        );
    }
}

#[tokio::test]
async fn invalid_stored_username_is_corrupt() {
    let db = TestDb::new().await;
    db.raw()
        .await
        .batch_execute("INSERT INTO accounts (host, username) VALUES ('example.org', 'a@b')")
        .await
        .expect("insert");
    let err = db.list_accounts("example.org").await.err();
    assert!(
        matches!(&err, Some(StorageError::Corrupt(text))
            if text.starts_with("stored username \"a@b\" on example.org is not a valid localpart")),
        "{err:?}"
    );
}

#[tokio::test]
async fn concurrent_creates_beyond_the_pool_size_all_land() {
    let db = TestDb::new().await;
    let tasks: Vec<_> = (0..32u8)
        .map(|i| {
            let store = db.store.clone();
            tokio::spawn(async move {
                let jid = BareJid::new(&format!("user{i:02}@example.org")).expect("valid JID");
                store.create_account(&jid, &credentials(i)).await
            })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.expect("task completes"), Ok(()));
    }
    let listed = db.list_accounts("example.org").await.expect("list");
    assert_eq!(listed.len(), 32);
    let connections: i64 = db
        .raw()
        .await
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()",
            &[],
        )
        .await
        .expect("count connections")
        .get(0);
    // The store's pool (at most 8) plus this raw client.
    assert!(connections <= 9, "{connections} connections are open");
}

#[tokio::test]
async fn pool_replaces_connections_the_server_ended() {
    let db = TestDb::new().await;
    db.create_account(&alice(), &credentials(1))
        .await
        .expect("create");
    let raw = db.raw().await;
    let ended: i64 = raw
        .query_one(
            "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE datname = current_database() AND pid <> pg_backend_pid()) AS t",
            &[],
        )
        .await
        .expect("terminate the store's connections")
        .get(0);
    assert_eq!(ended, 1);
    // The idle connection is dead; at most the call that finds out fails, and only with a
    // backend error. After that the pool opens a fresh connection.
    let first = db.credentials(&alice()).await;
    if let Err(err) = &first {
        assert!(matches!(err, StorageError::Backend(_)), "{err:?}");
    }
    assert_eq!(
        db.credentials(&alice())
            .await
            .expect("lookup on a new connection")
            .as_ref()
            .map(dump),
        Some(dump(&credentials(1)))
    );
}

#[tokio::test]
async fn version_1_database_gains_rosters_and_keeps_accounts() {
    let db = TestDb::new().await;
    db.create_account(&alice(), &credentials(1))
        .await
        .expect("create");
    // Take the database back to what a version-1 build left behind.
    db.raw()
        .await
        .batch_execute(
            "DROP TABLE roster_versions, roster_groups, roster_items, subscription_requests,
                        offline_messages, account_data, archive, archive_usage;
             DELETE FROM schema_migrations WHERE version IN (2, 3, 4);",
        )
        .await
        .expect("undo versions 2 to 4");
    let upgraded = PostgresStore::connect(&db.url()).await.expect("upgrade");
    assert_eq!(applied_versions(&db.raw().await).await, vec![1, 2, 3, 4]);
    assert_eq!(
        upgraded
            .credentials(&alice())
            .await
            .expect("lookup")
            .as_ref()
            .map(dump),
        Some(dump(&credentials(1)))
    );
    let item = RosterItem::new(jid("bob@example.org"));
    assert_eq!(
        upgraded
            .apply(
                &[RosterChange::Put {
                    owner: alice(),
                    item: item.clone(),
                }],
                usize::MAX
            )
            .await,
        Ok(vec![1])
    );
    assert_eq!(upgraded.roster(&alice()).await, Ok((1, vec![item])));
}

#[tokio::test]
async fn version_2_database_gains_account_data_and_keeps_rosters() {
    let db = TestDb::new().await;
    db.create_account(&alice(), &credentials(1))
        .await
        .expect("create");
    let item = RosterItem::new(jid("bob@example.org"));
    let put = RosterChange::Put {
        owner: alice(),
        item: item.clone(),
    };
    assert_eq!(db.apply(&[put], usize::MAX).await, Ok(vec![1]));
    // Take the database back to what a version-2 build left behind.
    db.raw()
        .await
        .batch_execute(
            "DROP TABLE account_data, archive, archive_usage;
             DELETE FROM schema_migrations WHERE version IN (3, 4);",
        )
        .await
        .expect("undo versions 3 and 4");
    let upgraded = PostgresStore::connect(&db.url()).await.expect("upgrade");
    assert_eq!(applied_versions(&db.raw().await).await, vec![1, 2, 3, 4]);
    assert_eq!(upgraded.roster(&alice()).await, Ok((1, vec![item])));
    let change = DataChange::Put {
        key: "card".to_owned(),
        value: b"<vCard/>".to_vec(),
    };
    assert_eq!(
        upgraded
            .data_apply(&alice(), "vcard", &[change], DataQuota::UNLIMITED)
            .await,
        Ok(true)
    );
    assert_eq!(
        upgraded.data_get(&alice(), "vcard", "card").await,
        Ok(Some(b"<vCard/>".to_vec()))
    );
}

#[tokio::test]
async fn delete_cascades_to_roster_tables() {
    let db = TestDb::new().await;
    let bob = jid("bob@example.org");
    for user in [alice(), bob.clone()] {
        db.create_account(&user, &credentials(1))
            .await
            .expect("create");
    }
    let mut item = RosterItem::new(bob.clone());
    item.groups = vec!["Friends".into(), "Work".into()];
    item.subscription = Subscription::Both;
    db.apply(
        &[
            RosterChange::Put {
                owner: alice(),
                item,
            },
            RosterChange::AddRequest {
                owner: alice(),
                contact: bob.clone(),
                stanza: "<presence/>".into(),
            },
            RosterChange::Put {
                owner: bob.clone(),
                item: RosterItem::new(alice()),
            },
        ],
        usize::MAX,
    )
    .await
    .expect("apply");
    let message = OfflineMessage {
        stored_at_unix_ms: 1,
        stanza: "<message/>".into(),
    };
    db.push_offline(&alice(), &message, OfflineQuota::messages(10))
        .await
        .expect("push");
    db.delete_account(&alice()).await.expect("delete");
    let raw = db.raw().await;
    // Only Bob's version and item are left.
    for (table, left) in [
        ("roster_versions", 1),
        ("roster_items", 1),
        ("roster_groups", 0),
        ("subscription_requests", 0),
        ("offline_messages", 0),
    ] {
        let count: i64 = raw
            .query_one(&format!("SELECT count(*) FROM {table}"), &[])
            .await
            .expect("count")
            .get(0);
        assert_eq!(count, left, "{table}");
    }
}

#[tokio::test]
async fn unknown_subscription_state_is_corrupt() {
    let db = TestDb::new().await;
    db.create_account(&alice(), &credentials(1))
        .await
        .expect("create");
    db.raw()
        .await
        .batch_execute(
            "INSERT INTO roster_items (account_id, contact, subscription, pending_out, approved)
             SELECT id, 'bob@example.org', 'sideways', false, false FROM accounts",
        )
        .await
        .expect("insert");
    assert_eq!(
        db.roster(&alice()).await,
        Err(StorageError::Corrupt(
            "unknown subscription state \"sideways\"".to_owned()
        ))
    );
}
