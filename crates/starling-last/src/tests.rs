//! XEP-0012 last activity of accounts: the stored form, and the module driven through a
//! `ModuleSet` with a real registry and an in-memory SQLite store.

use std::sync::atomic::{AtomicU64, Ordering};

use jid::{FullJid, Jid};
use starling_modules::ModuleSet;
use starling_registry::RegistryConfig;
use starling_sasl::StoredCredentials;
use starling_stanza::Stanza;
use starling_storage::{
    AccountStore as _, RosterChange, RosterItem, RosterStore as _, SqliteStore, Subscription,
};

use super::*;

fn el(xml: &str) -> Element {
    xml.parse().unwrap()
}

#[test]
fn records_round_trip_in_the_documented_form() {
    let with = Record {
        at: 1_700_000_000,
        status: Some("Heading Home\nfor tea".to_owned()),
    };
    assert_eq!(with.encode(), b"1700000000\nHeading Home\nfor tea");
    assert_eq!(Record::decode(&with.encode()), Some(with));
    let without = Record {
        at: 5,
        status: None,
    };
    assert_eq!(without.encode(), b"5");
    assert_eq!(Record::decode(b"5"), Some(without));
    assert_eq!(
        Record::decode(b"5\n"),
        Some(Record {
            at: 5,
            status: Some(String::new())
        })
    );
    for bad in [
        &b""[..],
        b"x",
        b"-5",
        b"+5",
        b"\nhi",
        b"99999999999999999999999",
        b"\xff",
    ] {
        assert_eq!(Record::decode(bad), None, "{bad:?}");
    }
}

#[test]
fn answers_carry_seconds_and_the_status_as_text() {
    assert_eq!(
        answer(903, Some("Heading Home")),
        el("<query xmlns='jabber:iq:last' seconds='903'>Heading Home</query>")
    );
    assert_eq!(
        answer(0, None),
        el("<query xmlns='jabber:iq:last' seconds='0'/>")
    );
    assert_eq!(
        answer(7, Some("")),
        el("<query xmlns='jabber:iq:last' seconds='7'/>")
    );
}

// The module through a ModuleSet.

struct World {
    store: SqliteStore,
    registry: Arc<Registry>,
    now: Arc<AtomicU64>,
    set: ModuleSet,
}

async fn world() -> World {
    let store = SqliteStore::open_in_memory().unwrap();
    let creds =
        StoredCredentials::from_password("pw", b"0123456789abcdef", b"0123456789abcdef", 4096)
            .unwrap();
    for user in ["alice", "bob", "carol"] {
        store
            .create_account(&format!("{user}@localhost").parse().unwrap(), &creds)
            .await
            .unwrap();
    }
    let registry = Arc::new(Registry::new(
        ["localhost".to_owned()],
        RegistryConfig::default(),
    ));
    let now = Arc::new(AtomicU64::new(1_000));
    let clock_now = Arc::clone(&now);
    let clock: UnixClock = Arc::new(move || clock_now.load(Ordering::SeqCst));
    let module = Arc::new(LastActivity::new(
        store.clone(),
        Arc::clone(&registry),
        clock,
    ));
    World {
        store,
        registry,
        now,
        set: ModuleSet::build(vec![module]).unwrap(),
    }
}

fn bare(jid: &str) -> BareJid {
    jid.parse().unwrap()
}

impl World {
    fn connect(&self, jid: &str) -> SessionHandle {
        let (handle, _rx) = self
            .registry
            .new_session(jid.parse().unwrap(), uuid::Uuid::now_v7());
        self.registry.bind(&handle).unwrap();
        handle
    }

    async fn available(&self, session: &SessionHandle) {
        let presence = el("<presence xmlns='jabber:client'/>");
        session.set_presence(Some(presence), 0);
        self.set
            .session_event(SessionEvent::Available, session)
            .await;
    }

    /// What the router does for unavailable presence (`xml`) and then the session's end.
    async fn unavailable_and_end(&self, session: &SessionHandle, xml: Option<&str>) {
        if let Some(xml) = xml {
            let from: Jid = session.full_jid().clone().into();
            let to: Jid = session.bare_jid().into();
            let stanza = el(xml);
            let mut routed = Routed::new(
                RoutingPoint::Outbound,
                StanzaKind::Presence,
                &from,
                &to,
                &stanza,
            );
            assert_eq!(self.set.run_hooks(&mut routed).await, Verdict::Continue);
            session.set_presence(None, 0);
            self.set
                .session_event(SessionEvent::Unavailable, session)
                .await;
        }
        self.registry.unbind(session);
        self.set.session_event(SessionEvent::Ended, session).await;
    }

    async fn subscribe(&self, owner: &str, contact: &str, subscription: Subscription) {
        let mut item = RosterItem::new(bare(contact));
        item.subscription = subscription;
        self.store
            .apply(
                &[RosterChange::Put {
                    owner: bare(owner),
                    item,
                }],
                100,
            )
            .await
            .unwrap();
    }

    /// `from` (a full JID) asks `to` (a bare JID, or `None` for no `to`).
    async fn query(&self, from: &str, to: Option<&str>, iq_type: &str) -> IqAnswer {
        let element = el(&format!(
            "<iq xmlns='jabber:client' type='{iq_type}' id='l1'><query xmlns='jabber:iq:last'/></iq>"
        ));
        let iq_type = if iq_type == "get" {
            IqType::Get
        } else {
            IqType::Set
        };
        let stanza = Stanza::try_from(element).unwrap();
        let from: FullJid = from.parse().unwrap();
        let account = to.map_or_else(|| from.to_bare(), bare);
        let payload = stanza.element().children().next().unwrap();
        let handler = self
            .set
            .iq_handler(AddressForm::Bare, iq_type, NS_LAST)
            .unwrap();
        handler
            .handle(IqRequest {
                from: &from,
                to: IqTarget::Account {
                    jid: &account,
                    is_own: account == from.to_bare(),
                },
                iq_type,
                payload,
                stanza: &stanza,
            })
            .await
    }

    /// The verdict of the `ToFull` hooks for `xml` from `from` to the full JID `to`.
    async fn to_full(&self, from: &str, to: &str, xml: &str) -> Verdict {
        let from: Jid = from.parse().unwrap();
        let to: Jid = to.parse().unwrap();
        let stanza = el(xml);
        let mut routed = Routed::new(RoutingPoint::ToFull, StanzaKind::Iq, &from, &to, &stanza);
        self.set.run_hooks(&mut routed).await
    }
}

fn error(answer: IqAnswer) -> StanzaErrorCondition {
    answer.unwrap_err().condition
}

fn ok(answer: IqAnswer) -> Element {
    answer.unwrap().unwrap()
}

#[tokio::test]
async fn the_feature_is_advertised_for_accounts() {
    let w = world().await;
    assert_eq!(w.set.names(), ["last"]);
    assert!(w.set.account_info().features.contains(NS_LAST));
    assert!(!w.set.server_info().features.contains(NS_LAST));
}

#[tokio::test]
async fn an_online_account_answers_zero_to_itself_and_to_subscribers() {
    let w = world().await;
    let alice = w.connect("alice@localhost/desk");
    w.available(&alice).await;
    w.subscribe("alice@localhost", "bob@localhost", Subscription::Both)
        .await;
    let zero = el("<query xmlns='jabber:iq:last' seconds='0'/>");
    assert_eq!(ok(w.query("alice@localhost/desk", None, "get").await), zero);
    assert_eq!(
        ok(w.query("bob@localhost/x", Some("alice@localhost"), "get")
            .await),
        zero
    );
    // A connected resource that never sent presence counts too (§3: "connected or available").
    let bob = w.connect("bob@localhost/idle");
    assert_eq!(
        ok(w.query("bob@localhost/idle", Some("bob@localhost"), "get")
            .await),
        zero
    );
    drop(bob);
}

#[tokio::test]
async fn after_logout_the_seconds_and_status_of_the_last_resource_are_answered() {
    let w = world().await;
    w.subscribe("alice@localhost", "bob@localhost", Subscription::From)
        .await;
    let alice = w.connect("alice@localhost/desk");
    w.available(&alice).await;
    w.now.store(1_000, Ordering::SeqCst);
    w.unavailable_and_end(
        &alice,
        Some("<presence xmlns='jabber:client' type='unavailable'><status>Heading Home</status></presence>"),
    )
    .await;
    w.now.store(1_903, Ordering::SeqCst);
    assert_eq!(
        ok(w.query("bob@localhost/x", Some("alice@localhost"), "get")
            .await),
        el("<query xmlns='jabber:iq:last' seconds='903'>Heading Home</query>")
    );
    assert_eq!(
        w.store
            .data_get(&bare("alice@localhost"), STORE, KEY)
            .await
            .unwrap(),
        Some(b"1000\nHeading Home".to_vec())
    );
    // A dropped connection leaves no status.
    let alice = w.connect("alice@localhost/desk");
    w.available(&alice).await;
    w.now.store(2_000, Ordering::SeqCst);
    w.unavailable_and_end(&alice, None).await;
    w.now.store(2_010, Ordering::SeqCst);
    assert_eq!(
        ok(w.query("bob@localhost/x", Some("alice@localhost"), "get")
            .await),
        el("<query xmlns='jabber:iq:last' seconds='10'/>")
    );
}

#[tokio::test]
async fn only_the_last_connected_resource_ending_is_a_logout() {
    let w = world().await;
    let desk = w.connect("alice@localhost/desk");
    let phone = w.connect("alice@localhost/phone");
    w.available(&desk).await;
    w.available(&phone).await;
    w.now.store(100, Ordering::SeqCst);
    w.unavailable_and_end(
        &desk,
        Some("<presence xmlns='jabber:client' type='unavailable'><status>desk off</status></presence>"),
    )
    .await;
    assert_eq!(
        w.store
            .data_get(&bare("alice@localhost"), STORE, KEY)
            .await
            .unwrap(),
        None
    );
    // The phone went unavailable, came back, and then dropped: no stale status.
    let from: Jid = phone.full_jid().clone().into();
    let to: Jid = phone.bare_jid().into();
    let stanza =
        el("<presence xmlns='jabber:client' type='unavailable'><status>away</status></presence>");
    let mut routed = Routed::new(
        RoutingPoint::Outbound,
        StanzaKind::Presence,
        &from,
        &to,
        &stanza,
    );
    w.set.run_hooks(&mut routed).await;
    w.available(&phone).await;
    w.now.store(200, Ordering::SeqCst);
    w.unavailable_and_end(&phone, None).await;
    assert_eq!(
        w.store
            .data_get(&bare("alice@localhost"), STORE, KEY)
            .await
            .unwrap(),
        Some(b"200".to_vec())
    );
}

#[tokio::test]
async fn nobody_without_a_presence_subscription_learns_anything() {
    let w = world().await;
    // Bob is in alice's roster but she does not share her presence with him.
    w.subscribe("alice@localhost", "bob@localhost", Subscription::To)
        .await;
    let alice = w.connect("alice@localhost/desk");
    w.unavailable_and_end(&alice, None).await;
    for from in ["bob@localhost/x", "carol@localhost/y"] {
        assert_eq!(
            error(w.query(from, Some("alice@localhost"), "get").await),
            StanzaErrorCondition::Forbidden,
            "{from}"
        );
    }
    // Online too: forbidden, not zero.
    let _alice = w.connect("alice@localhost/desk");
    assert_eq!(
        error(
            w.query("carol@localhost/y", Some("alice@localhost"), "get")
                .await
        ),
        StanzaErrorCondition::Forbidden
    );
}

#[tokio::test]
async fn no_recorded_logout_is_service_unavailable_and_a_set_not_allowed() {
    let w = world().await;
    w.subscribe("alice@localhost", "bob@localhost", Subscription::Both)
        .await;
    assert_eq!(
        error(
            w.query("bob@localhost/x", Some("alice@localhost"), "get")
                .await
        ),
        StanzaErrorCondition::ServiceUnavailable
    );
    assert_eq!(
        error(w.query("alice@localhost/desk", None, "set").await),
        StanzaErrorCondition::NotAllowed
    );
}

#[tokio::test]
async fn a_query_to_a_resource_from_a_stranger_is_refused_before_delivery() {
    let w = world().await;
    w.subscribe("alice@localhost", "bob@localhost", Subscription::From)
        .await;
    let _alice = w.connect("alice@localhost/desk");
    let query = "<iq xmlns='jabber:client' type='get' id='l2'><query xmlns='jabber:iq:last'/></iq>";
    assert_eq!(
        w.to_full("carol@localhost/y", "alice@localhost/desk", query)
            .await,
        Verdict::Reject(StanzaErrorCondition::Forbidden.into())
    );
    for allowed in ["bob@localhost/x", "alice@localhost/phone"] {
        assert_eq!(
            w.to_full(allowed, "alice@localhost/desk", query).await,
            Verdict::Continue,
            "{allowed}"
        );
    }
    // Other iqs, and answers, pass untouched.
    let ping = "<iq xmlns='jabber:client' type='get' id='p'><ping xmlns='urn:xmpp:ping'/></iq>";
    let result = "<iq xmlns='jabber:client' type='result' id='l3'><query xmlns='jabber:iq:last' seconds='5'/></iq>";
    for other in [ping, result] {
        assert_eq!(
            w.to_full("carol@localhost/y", "alice@localhost/desk", other)
                .await,
            Verdict::Continue
        );
    }
}
