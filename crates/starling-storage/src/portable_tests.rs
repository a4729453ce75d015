//! Backend-independent tests of the [`PortableStore`] contract, run on SQLite here and on
//! PostgreSQL by `tests/postgres.rs`, like `account_tests` and `roster_tests`.

use jid::BareJid;

use crate::account_tests::{credentials, dump, jid};
use crate::{
    AccountData, AccountDataEntry, AccountDataStore, AccountStore, DataChange, DataQuota,
    ExistingAccounts, OfflineMessage, OfflineQuota, OfflineStore, PortableStore, RosterChange,
    RosterItem, RosterStore, StorageError, Subscription,
};

/// Generates one `#[tokio::test]` per body in this module, each on a fresh store.
macro_rules! portable_store_tests {
    ($fresh_store:expr) => {
        $crate::portable_tests::portable_store_tests!(@each $fresh_store;
            export_of_an_empty_host_is_empty,
            export_reads_everything_of_one_host,
            import_then_export_round_trips,
            import_refuses_an_existing_account_and_writes_nothing,
            import_replace_replaces_and_moves_the_version_on,
            a_duplicate_contact_fails_the_whole_import,
            a_duplicate_data_key_fails_the_whole_import,
            a_bare_domain_cannot_be_imported,
        );
    };
    (@each $fresh_store:expr; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $name() {
                $crate::portable_tests::$name(&$fresh_store).await;
            }
        )*
    };
}
pub(crate) use portable_store_tests;

/// What every body needs of a store.
pub(crate) trait Store:
    AccountStore + RosterStore + OfflineStore + PortableStore + AccountDataStore
{
}
impl<T: AccountStore + RosterStore + OfflineStore + PortableStore + AccountDataStore> Store for T {}

fn item(contact: &str, subscription: Subscription, groups: &[&str]) -> RosterItem {
    RosterItem {
        jid: jid(contact),
        name: Some(format!("name of {contact}")),
        groups: groups.iter().map(|g| (*g).to_owned()).collect(),
        subscription,
        pending_out: false,
        approved: false,
    }
}

fn entry(store: &str, key: &str, value: &[u8]) -> AccountDataEntry {
    AccountDataEntry {
        store: store.to_owned(),
        key: key.to_owned(),
        value: value.to_vec(),
    }
}

fn message(at: u64, body: &str) -> OfflineMessage {
    OfflineMessage {
        stored_at_unix_ms: at,
        stanza: format!("<message xmlns='jabber:client'><body>{body}</body></message>"),
    }
}

/// A full account: keys, a roster of three with groups, two requests, two messages, module
/// data in two stores.
fn full_account(owner: &str, seed: u8) -> AccountData {
    let mut pending = item("zed@elsewhere.example", Subscription::None, &[]);
    pending.pending_out = true;
    pending.name = None;
    let mut approved = item("amy@elsewhere.example", Subscription::To, &["Work"]);
    approved.approved = true;
    AccountData {
        jid: jid(owner),
        credentials: credentials(seed),
        roster_version: 7,
        roster: vec![
            approved,
            item("bob@localhost", Subscription::Both, &["Friends", "Chess"]),
            pending,
        ],
        // Not in JID order, to show that insertion order is kept.
        requests: vec![
            (
                jid("yan@elsewhere.example"),
                "<presence type='subscribe'/>".to_owned(),
            ),
            (
                jid("abe@elsewhere.example"),
                "<presence type='subscribe' from='abe@elsewhere.example'/>".to_owned(),
            ),
        ],
        offline: vec![message(2000, "second stored first"), message(1000, "older")],
        // Not in (store, key) order, to show that it is read back sorted.
        module_data: vec![
            entry("vcard", "card", b"<vCard xmlns='vcard-temp'/>"),
            entry("private", "storage:bookmarks", b"<storage/>"),
            entry("private", "roster:delimiter", &[0, 0xff]),
        ],
    }
}

async fn export(store: &impl Store, host: &str) -> Vec<AccountData> {
    store.export_host(host).await.expect("export succeeds")
}

pub(crate) async fn export_of_an_empty_host_is_empty(store: &impl Store) {
    assert_eq!(export(store, "localhost").await, Vec::new());
    assert_eq!(export(store, "not a domain@").await, Vec::new());
}

pub(crate) async fn export_reads_everything_of_one_host(store: &impl Store) {
    let alice = jid("alice@localhost");
    let bob = jid("bob@localhost");
    let carol = jid("carol@other.example");
    for (seed, user) in [&bob, &carol, &alice].into_iter().enumerate() {
        let seed = u8::try_from(seed).expect("few users");
        store
            .create_account(user, &credentials(seed))
            .await
            .expect("create");
    }
    let bob_item = item("bob@localhost", Subscription::Both, &["Friends"]);
    let alice_item = item("alice@localhost", Subscription::Both, &[]);
    store
        .apply(
            &[
                RosterChange::Put {
                    owner: alice.clone(),
                    item: bob_item.clone(),
                },
                RosterChange::Put {
                    owner: bob.clone(),
                    item: alice_item.clone(),
                },
                RosterChange::AddRequest {
                    owner: alice.clone(),
                    contact: carol.clone(),
                    stanza: "<presence type='subscribe'/>".to_owned(),
                },
                RosterChange::Put {
                    owner: carol.clone(),
                    item: alice_item.clone(),
                },
            ],
            usize::MAX,
        )
        .await
        .expect("apply");
    store
        .push_offline(&alice, &message(5, "hello"), OfflineQuota::messages(10))
        .await
        .expect("push");
    for (owner, name, key) in [
        (&alice, "vcard", "card"),
        (&alice, "private", "b"),
        (&alice, "private", "a"),
        (&carol, "vcard", "card"),
    ] {
        let change = DataChange::Put {
            key: key.to_owned(),
            value: format!("{owner} {name} {key}").into_bytes(),
        };
        assert_eq!(
            store
                .data_apply(owner, name, &[change], DataQuota::UNLIMITED)
                .await,
            Ok(true)
        );
    }

    let exported = export(store, "localhost").await;
    let jids: Vec<&BareJid> = exported.iter().map(|a| &a.jid).collect();
    assert_eq!(jids, [&alice, &bob]);
    let [alice_data, bob_data] = exported.as_slice() else {
        panic!("two accounts");
    };
    assert_eq!(dump(&alice_data.credentials), dump(&credentials(2)));
    assert_eq!(alice_data.roster_version, 1);
    assert_eq!(alice_data.roster, vec![bob_item]);
    assert_eq!(
        alice_data.requests,
        vec![(carol.clone(), "<presence type='subscribe'/>".to_owned())]
    );
    assert_eq!(alice_data.offline, vec![message(5, "hello")]);
    assert_eq!(
        alice_data.module_data,
        vec![
            entry("private", "a", b"alice@localhost private a"),
            entry("private", "b", b"alice@localhost private b"),
            entry("vcard", "card", b"alice@localhost vcard card"),
        ]
    );
    assert_eq!(dump(&bob_data.credentials), dump(&credentials(0)));
    assert_eq!(bob_data.roster, vec![alice_item]);
    assert!(bob_data.requests.is_empty() && bob_data.offline.is_empty());
    assert!(bob_data.module_data.is_empty());
    // Exporting does not take the offline messages.
    assert_eq!(
        crate::roster_tests::take_all(store, &alice)
            .await
            .expect("take"),
        vec![message(5, "hello")]
    );
}

pub(crate) async fn import_then_export_round_trips(store: &impl Store) {
    let mut bare = AccountData::new(jid("bare@localhost"), credentials(9));
    bare.credentials.keys.truncate(1);
    let imported = vec![full_account("alice@localhost", 1), bare];
    store
        .import_accounts(&imported, ExistingAccounts::Refuse)
        .await
        .expect("import");
    let mut expected = imported;
    // Read back: rosters sorted by contact JID, module data by store and key, everything
    // else as given.
    expected[0].roster.sort_by(|a, b| a.jid.cmp(&b.jid));
    expected[0]
        .module_data
        .sort_by(|a, b| (&a.store, &a.key).cmp(&(&b.store, &b.key)));
    assert_eq!(export(store, "localhost").await, expected);
    // The imported data is live data: the roster store and the login path see it.
    let alice = jid("alice@localhost");
    assert_eq!(
        store.roster(&alice).await.expect("roster"),
        (7, expected[0].roster.clone())
    );
    assert!(
        store
            .has_request(&alice, &jid("abe@elsewhere.example"))
            .await
            .expect("request")
    );
    assert_eq!(
        store
            .credentials(&alice)
            .await
            .expect("credentials")
            .as_ref()
            .map(dump),
        Some(dump(&credentials(1)))
    );
    assert_eq!(
        store.data_get(&alice, "private", "roster:delimiter").await,
        Ok(Some(vec![0, 0xff]))
    );
}

pub(crate) async fn import_refuses_an_existing_account_and_writes_nothing(store: &impl Store) {
    let bob = jid("bob@localhost");
    store
        .create_account(&bob, &credentials(3))
        .await
        .expect("create");
    let result = store
        .import_accounts(
            &[
                full_account("alice@localhost", 1),
                full_account("bob@localhost", 2),
            ],
            ExistingAccounts::Refuse,
        )
        .await;
    assert_eq!(result, Err(StorageError::AccountExists(bob.clone())));
    assert_eq!(
        store.list_accounts("localhost").await.expect("list"),
        vec![bob.clone()]
    );
    assert_eq!(
        store
            .credentials(&bob)
            .await
            .expect("credentials")
            .as_ref()
            .map(dump),
        Some(dump(&credentials(3)))
    );
}

pub(crate) async fn import_replace_replaces_and_moves_the_version_on(store: &impl Store) {
    let alice = jid("alice@localhost");
    store
        .create_account(&alice, &credentials(3))
        .await
        .expect("create");
    for contact in ["a@x.example", "b@x.example", "c@x.example"] {
        store
            .apply(
                &[RosterChange::Put {
                    owner: alice.clone(),
                    item: item(contact, Subscription::None, &[]),
                }],
                usize::MAX,
            )
            .await
            .expect("apply");
    }
    store
        .push_offline(&alice, &message(1, "old"), OfflineQuota::messages(10))
        .await
        .expect("push");
    let old_data = [DataChange::Put {
        key: "old".to_owned(),
        value: b"gone after the import".to_vec(),
    }];
    assert_eq!(
        store
            .data_apply(&alice, "vcard", &old_data, DataQuota::UNLIMITED)
            .await,
        Ok(true)
    );
    // Version 3 now; the imported roster has version 1, so the result must be 4.
    let mut replacement = AccountData::new(alice.clone(), credentials(4));
    replacement.roster_version = 1;
    replacement.roster = vec![item("new@x.example", Subscription::To, &["G"])];
    replacement.module_data = vec![entry("vcard", "new", b"replaces the old data")];
    store
        .import_accounts(&[replacement.clone()], ExistingAccounts::Replace)
        .await
        .expect("replace");
    let mut expected = replacement.clone();
    expected.roster_version = 4;
    assert_eq!(export(store, "localhost").await, vec![expected]);

    // A higher imported version is kept as it is.
    replacement.roster_version = 40;
    store
        .import_accounts(&[replacement.clone()], ExistingAccounts::Replace)
        .await
        .expect("replace again");
    assert_eq!(export(store, "localhost").await, vec![replacement]);
}

pub(crate) async fn a_duplicate_contact_fails_the_whole_import(store: &impl Store) {
    let mut broken = full_account("bob@localhost", 2);
    broken
        .roster
        .push(item("bob@localhost", Subscription::None, &[]));
    let result = store
        .import_accounts(
            &[full_account("alice@localhost", 1), broken],
            ExistingAccounts::Refuse,
        )
        .await;
    assert!(
        matches!(&result, Err(StorageError::Backend(text)) if text.starts_with("insert roster item")),
        "{result:?}"
    );
    assert_eq!(export(store, "localhost").await, Vec::new());
}

pub(crate) async fn a_duplicate_data_key_fails_the_whole_import(store: &impl Store) {
    let mut broken = full_account("bob@localhost", 2);
    broken
        .module_data
        .push(entry("vcard", "card", b"a second card"));
    let result = store
        .import_accounts(
            &[full_account("alice@localhost", 1), broken],
            ExistingAccounts::Refuse,
        )
        .await;
    assert!(
        matches!(&result, Err(StorageError::Backend(text)) if text.starts_with("insert account data")),
        "{result:?}"
    );
    assert_eq!(export(store, "localhost").await, Vec::new());
}

pub(crate) async fn a_bare_domain_cannot_be_imported(store: &impl Store) {
    let domain = jid("localhost");
    let result = store
        .import_accounts(
            &[AccountData::new(domain.clone(), credentials(1))],
            ExistingAccounts::Refuse,
        )
        .await;
    assert_eq!(result, Err(StorageError::NoLocalpart(domain)));
}
