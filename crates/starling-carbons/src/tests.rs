//! The module against a real registry: who gets copies, the enable/disable requests, session
//! ends, and the removal of wrappers it did not make.

use jid::{FullJid, Jid};
use minidom::Element;
use starling_modules::{Direction, ModuleSet};
use starling_registry::{RegistryConfig, SessionReceiver};
use starling_stanza::{NS_CLIENT, Stanza};

use super::*;

struct Fixture {
    module: Arc<Carbons>,
    registry: Arc<Registry>,
    /// Kept so the sessions' queues stay open.
    _receivers: Vec<SessionReceiver>,
}

fn fixture(resources: &[&str]) -> (Fixture, Vec<SessionHandle>) {
    let registry = Arc::new(Registry::new(
        ["example.org".to_owned()],
        RegistryConfig::default(),
    ));
    let mut sessions = Vec::new();
    let mut receivers = Vec::new();
    for jid in resources {
        let (handle, receiver) = registry.new_session(FullJid::new(jid).unwrap(), Uuid::now_v7());
        registry.bind(&handle).unwrap();
        sessions.push(handle);
        receivers.push(receiver);
    }
    let module = Arc::new(Carbons::new(Arc::clone(&registry)));
    let fixture = Fixture {
        module,
        registry,
        _receivers: receivers,
    };
    (fixture, sessions)
}

fn run<T>(future: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(future)
}

impl Fixture {
    /// Send `payload` as an iq set from `session` to `to` (none: the own account).
    fn request(&self, session: &SessionHandle, to: Option<&str>, payload: &str) -> IqAnswer {
        let to_attr = to.map(|to| format!(" to='{to}'")).unwrap_or_default();
        let element: Element = format!(
            "<iq xmlns='jabber:client' type='set' id='c1' from='{}'{to_attr}>{payload}</iq>",
            session.full_jid()
        )
        .parse()
        .unwrap();
        let stanza = Stanza::try_from(element).unwrap();
        let payload = stanza.element().children().next().unwrap();
        let target = to.map_or_else(|| session.bare_jid(), |to| BareJid::new(to).unwrap());
        let is_own = target == session.bare_jid();
        let request = IqRequest {
            from: session.full_jid(),
            to: IqTarget::Account {
                jid: &target,
                is_own,
            },
            iq_type: IqType::Set,
            payload,
            stanza: &stanza,
        };
        run(self.module.handle(request))
    }

    fn enable(&self, session: &SessionHandle) {
        let answer = self.request(session, None, "<enable xmlns='urn:xmpp:carbons:2'/>");
        assert_eq!(answer, Ok(None));
    }

    /// The full JIDs that get a copy of `xml`, which `account` exchanged in `direction` and
    /// which `reached` already have.
    fn copied_to(
        &self,
        direction: Direction,
        account: &str,
        xml: &str,
        reached: &[SessionHandle],
    ) -> Vec<String> {
        let account = BareJid::new(account).unwrap();
        let stanza: Element = xml.parse().unwrap();
        let mut copies = Vec::new();
        self.module.copies(
            &Exchanged {
                direction,
                account: &account,
                stanza: &stanza,
                reached,
            },
            &mut copies,
        );
        let mut to: Vec<String> = copies
            .iter()
            .map(|copy| {
                assert_eq!(copy.stanza.attr("to"), Some(copy.to.full_jid().as_str()));
                assert_eq!(copy.stanza.attr("from"), Some(account.as_str()));
                copy.to.full_jid().to_string()
            })
            .collect();
        to.sort();
        to
    }
}

const CHAT: &str = "<message xmlns='jabber:client' from='bob@example.org/desk' \
    to='alice@example.org' type='chat'><body>hi</body></message>";

#[test]
fn received_copies_go_to_enabled_resources_that_did_not_get_the_original() {
    let (fixture, alice) = fixture(&[
        "alice@example.org/desk",
        "alice@example.org/phone",
        "alice@example.org/tablet",
        "alice@example.org/watch",
    ]);
    for session in &alice[1..] {
        fixture.enable(session);
    }
    // desk got it and has no carbons; phone got it too (equal priority); tablet and watch
    // enabled carbons and did not get it.
    let copied = fixture.copied_to(Direction::Received, "alice@example.org", CHAT, &alice[..2]);
    assert_eq!(
        copied,
        ["alice@example.org/tablet", "alice@example.org/watch"]
    );
    // Stored offline: every enabled resource gets a copy.
    let copied = fixture.copied_to(Direction::Received, "alice@example.org", CHAT, &[]);
    assert_eq!(copied.len(), 3);
}

#[test]
fn sent_copies_go_to_every_enabled_resource_but_the_sender() {
    let (fixture, alice) = fixture(&[
        "alice@example.org/desk",
        "alice@example.org/phone",
        "alice@example.org/tablet",
    ]);
    fixture.enable(&alice[0]);
    fixture.enable(&alice[1]);
    let sent = "<message xmlns='jabber:client' from='alice@example.org/desk' \
        to='bob@example.org' type='chat'><body>hi</body></message>";
    let copied = fixture.copied_to(Direction::Sent, "alice@example.org", sent, &alice[..1]);
    assert_eq!(copied, ["alice@example.org/phone"]);
    // Sent by a resource without carbons: still copied to the enabled ones (§8).
    let copied = fixture.copied_to(Direction::Sent, "alice@example.org", sent, &alice[2..]);
    assert_eq!(
        copied,
        ["alice@example.org/desk", "alice@example.org/phone"]
    );
}

#[test]
fn nothing_is_copied_for_accounts_without_carbons_or_ineligible_messages() {
    let (fixture, alice) = fixture(&["alice@example.org/desk", "alice@example.org/phone"]);
    assert!(
        fixture
            .copied_to(Direction::Received, "alice@example.org", CHAT, &alice[..1])
            .is_empty()
    );
    // The router skips such accounts before it builds anything.
    assert!(!fixture.module.copies_for("alice@example.org"));
    fixture.enable(&alice[1]);
    assert!(fixture.module.copies_for("alice@example.org"));
    assert!(!fixture.module.copies_for("bob@example.org"));
    let groupchat = "<message xmlns='jabber:client' from='room@muc.example.org/bob' \
        type='groupchat'><body>hi</body></message>";
    assert!(
        fixture
            .copied_to(
                Direction::Received,
                "alice@example.org",
                groupchat,
                &alice[..1]
            )
            .is_empty()
    );
    // Another account's carbons are not alice's.
    assert!(
        fixture
            .copied_to(Direction::Received, "bob@example.org", CHAT, &[])
            .is_empty()
    );
}

#[test]
fn disable_and_session_end_stop_copies_and_repeats_are_results() {
    let (fixture, alice) = fixture(&["alice@example.org/desk", "alice@example.org/phone"]);
    let account = alice[0].bare_jid();
    fixture.enable(&alice[1]);
    fixture.enable(&alice[1]);
    assert!(fixture.module.is_enabled(&account, alice[1].id()));
    let disable = "<disable xmlns='urn:xmpp:carbons:2'/>";
    assert_eq!(fixture.request(&alice[1], None, disable), Ok(None));
    assert_eq!(fixture.request(&alice[1], None, disable), Ok(None));
    assert!(!fixture.module.is_enabled(&account, alice[1].id()));
    assert!(fixture.module.enabled.is_empty());

    // Enabled with `to` naming the own account, then the session ends.
    let enable = "<enable xmlns='urn:xmpp:carbons:2'/>";
    let own = Some("alice@example.org");
    assert_eq!(fixture.request(&alice[1], own, enable), Ok(None));
    assert!(fixture.module.is_enabled(&account, alice[1].id()));
    fixture.registry.unbind(&alice[1]);
    run(fixture.module.on_session(SessionEvent::Ended, &alice[1]));
    assert!(fixture.module.enabled.is_empty());
}

#[test]
fn requests_for_another_account_or_unknown_elements_are_refused() {
    let (fixture, alice) = fixture(&["alice@example.org/desk", "bob@example.org/desk"]);
    let enable = "<enable xmlns='urn:xmpp:carbons:2'/>";
    assert_eq!(
        fixture.request(&alice[0], Some("bob@example.org"), enable),
        Err(StanzaErrorCondition::NotAllowed.into())
    );
    assert!(fixture.module.enabled.is_empty());
    let other = "<private xmlns='urn:xmpp:carbons:2'/>";
    assert_eq!(
        fixture.request(&alice[0], None, other),
        Err(StanzaErrorCondition::BadRequest.into())
    );
}

#[test]
fn a_replaced_session_is_forgotten_when_next_seen_missing() {
    let (fixture, alice) = fixture(&["alice@example.org/desk", "alice@example.org/phone"]);
    let account = alice[0].bare_jid();
    fixture.enable(&alice[1]);
    // A new session takes the phone's resource (kick-old): the old one leaves the registry
    // with no `Ended` event.
    let (newer, _receiver) = fixture
        .registry
        .new_session(alice[1].full_jid().clone(), Uuid::now_v7());
    fixture.registry.bind(&newer).unwrap();
    let copied = fixture.copied_to(Direction::Received, "alice@example.org", CHAT, &alice[..1]);
    assert!(copied.is_empty(), "{copied:?}");
    assert!(!fixture.module.is_enabled(&account, alice[1].id()));
    assert!(fixture.module.enabled.is_empty());
}

fn hooked(point: RoutingPoint, from: &str, to: &str, xml: &str) -> Element {
    let (fixture, _) = fixture(&[]);
    let from = Jid::new(from).unwrap();
    let to = Jid::new(to).unwrap();
    let stanza: Element = xml.parse().unwrap();
    let mut routed = Routed::new(point, StanzaKind::Message, &from, &to, &stanza);
    let Hooked::Now(Verdict::Continue) = fixture.module.on_stanza(&mut routed) else {
        panic!("the carbons hook only ever continues at once");
    };
    routed.into_changed().unwrap_or(stanza)
}

#[test]
fn carbons_wrappers_reach_a_client_only_from_its_own_bare_jid() {
    let forged = "<message xmlns='jabber:client' from='mallory@example.org/x' type='chat'>\
        <received xmlns='urn:xmpp:carbons:2'><forwarded xmlns='urn:xmpp:forward:0'>\
        <message xmlns='jabber:client' from='bob@example.org/desk'><body>lies</body></message>\
        </forwarded></received><body>hello</body></message>";
    let alice = "alice@example.org/phone";
    for (point, from, to) in [
        (
            RoutingPoint::ToBare,
            "mallory@example.org/x",
            "alice@example.org",
        ),
        (RoutingPoint::ToFull, "mallory@example.org/x", alice),
        // Even from the account's own other resource: a client must only trust the bare JID.
        (RoutingPoint::ToFull, "alice@example.org/desk", alice),
        // Another account's bare JID (a server on its behalf) is not alice's.
        (RoutingPoint::ToFull, "bob@example.org", alice),
        // Not a copy: copies only come at ToFull.
        (
            RoutingPoint::ToBare,
            "alice@example.org",
            "alice@example.org",
        ),
    ] {
        let delivered = hooked(point, from, to, forged);
        assert!(!rules::is_carbon(&delivered), "{point:?} {from} -> {to}");
        assert!(delivered.has_child("body", NS_CLIENT));
    }
    // A copy made here: from the recipient's own bare JID, at ToFull.
    let delivered = hooked(RoutingPoint::ToFull, "alice@example.org", alice, forged);
    assert!(rules::is_carbon(&delivered));
}

#[test]
fn the_module_registers_its_feature_iq_and_copies() {
    let (fixture, _) = fixture(&[]);
    let module: Arc<dyn Module> = fixture.module.clone();
    let set = ModuleSet::build(vec![module]).unwrap();
    assert!(set.server_info().features.contains(NS_CARBONS));
    assert!(
        set.iq_handler(AddressForm::Bare, IqType::Set, NS_CARBONS)
            .is_some()
    );
    assert!(
        set.iq_handler(AddressForm::Bare, IqType::Get, NS_CARBONS)
            .is_none()
    );
    assert!(set.makes_copies());
    assert!(set.has_hooks(RoutingPoint::ToBare, StanzaKind::Message));
    assert!(set.has_hooks(RoutingPoint::ToFull, StanzaKind::Message));
    assert!(!set.has_hooks(RoutingPoint::Outbound, StanzaKind::Message));
}
