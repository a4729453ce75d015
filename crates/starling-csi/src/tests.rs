//! The module against real session handles: what an inactive session gets, when, and in
//! which order.

use jid::{FullJid, Jid};
use starling_registry::{Registry, RegistryConfig, SessionReceiver};

use super::*;

struct Phone {
    session: SessionHandle,
    receiver: SessionReceiver,
}

impl Phone {
    /// The `id`s of what is queued for the phone now, in order.
    fn received(&mut self) -> Vec<String> {
        let mut ids = Vec::new();
        while let Some(stanza) = self.receiver.try_recv() {
            let element = stanza.to_element().unwrap();
            ids.push(element.attr("id").unwrap_or("?").to_owned());
        }
        ids
    }
}

fn phone(registry: &Registry) -> Phone {
    let (session, receiver) = registry.new_session(
        FullJid::new("alice@example.org/phone").unwrap(),
        uuid::Uuid::now_v7(),
    );
    registry.bind(&session).unwrap();
    Phone { session, receiver }
}

fn registry() -> Registry {
    Registry::new(["example.org".to_owned()], RegistryConfig::default())
}

fn element(module: &Csi, session: &SessionHandle, name: &str) {
    let element = Element::builder(name, NS_CSI).build();
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(module.on_element(session, &element));
}

/// Route `xml` from `from` to the phone through the module's hook, delivering it to the
/// phone's queue when the verdict lets it through (as the router would).
fn route(module: &Csi, phone: &Phone, kind: StanzaKind, from: &str, xml: &str) -> Verdict {
    let from = Jid::new(from).unwrap();
    let to: Jid = phone.session.full_jid().clone().into();
    let stanza: Element = xml.parse().unwrap();
    let mut routed = Routed::new(RoutingPoint::ToFull, kind, &from, &to, &stanza);
    let Hooked::Now(verdict) = module.on_stanza(&mut routed) else {
        panic!("csi decides at once");
    };
    if verdict == Verdict::Continue {
        phone.session.send(OutboundStanza::new(&stanza)).unwrap();
    }
    verdict
}

fn presence(id: &str, kind: Option<&str>) -> String {
    let kind = kind
        .map(|kind| format!(" type='{kind}'"))
        .unwrap_or_default();
    format!("<presence xmlns='jabber:client' id='{id}'{kind}/>")
}

fn message(id: &str, content: &str) -> String {
    format!("<message xmlns='jabber:client' type='chat' id='{id}'>{content}</message>")
}

const TYPING: &str = "<composing xmlns='http://jabber.org/protocol/chatstates'/>";
const BOB: &str = "bob@example.org/desk";
const CAROL: &str = "carol@example.org/desk";

#[test]
fn an_active_session_gets_everything_at_once() {
    let registry = registry();
    let module = Csi::default();
    let mut phone = phone(&registry);
    let presence = presence("p1", None);
    let verdict = route(&module, &phone, StanzaKind::Presence, BOB, &presence);
    assert_eq!(verdict, Verdict::Continue);
    let typing = message("t1", TYPING);
    assert_eq!(
        route(&module, &phone, StanzaKind::Message, BOB, &typing),
        Verdict::Continue
    );
    assert_eq!(phone.received(), ["p1", "t1"]);
}

#[test]
fn inactive_holds_the_latest_presence_per_sender_and_drops_chat_states_until_active() {
    let registry = registry();
    let module = Csi::default();
    let mut phone = phone(&registry);
    element(&module, &phone.session, "inactive");
    assert!(module.is_inactive(&phone.session));
    let p = StanzaKind::Presence;
    for (from, xml) in [
        (BOB, presence("bob-1", None)),
        (CAROL, presence("carol-1", None)),
        (BOB, presence("bob-2", None)),
        (CAROL, presence("carol-2", Some("unavailable"))),
    ] {
        assert_eq!(route(&module, &phone, p, from, &xml), Verdict::Handled);
    }
    let typing = message("t1", TYPING);
    assert_eq!(
        route(&module, &phone, StanzaKind::Message, BOB, &typing),
        Verdict::Handled
    );
    assert!(phone.received().is_empty());
    element(&module, &phone.session, "active");
    assert!(!module.is_inactive(&phone.session));
    // The latest from each, in the order the latest came; the chat state never.
    assert_eq!(phone.received(), ["bob-2", "carol-2"]);
    // Active again: nothing is held.
    let xml = presence("bob-3", None);
    assert_eq!(route(&module, &phone, p, BOB, &xml), Verdict::Continue);
    assert_eq!(phone.received(), ["bob-3"]);
}

#[test]
fn an_important_stanza_goes_at_once_after_what_was_held() {
    let registry = registry();
    let module = Csi::default();
    let mut phone = phone(&registry);
    element(&module, &phone.session, "inactive");
    let p = StanzaKind::Presence;
    route(&module, &phone, p, BOB, &presence("p1", None));
    let headline = "<message xmlns='jabber:client' type='headline' id='h1'/>";
    let verdict = route(&module, &phone, StanzaKind::Message, CAROL, headline);
    assert_eq!(verdict, Verdict::Handled);
    let hello = message("m1", "<body>hello</body>");
    assert_eq!(
        route(&module, &phone, StanzaKind::Message, BOB, &hello),
        Verdict::Continue
    );
    assert_eq!(phone.received(), ["p1", "h1", "m1"]);
    // Still inactive: the next update is held again, and an iq flushes it.
    route(&module, &phone, p, BOB, &presence("p2", None));
    assert!(phone.received().is_empty());
    let iq = "<iq xmlns='jabber:client' type='get' id='q1'/>";
    assert_eq!(
        route(&module, &phone, StanzaKind::Iq, BOB, iq),
        Verdict::Continue
    );
    assert_eq!(phone.received(), ["p2", "q1"]);
    // A subscription request is important too.
    route(&module, &phone, p, BOB, &presence("p3", None));
    let subscribe = presence("s1", Some("subscribe"));
    assert_eq!(
        route(&module, &phone, p, CAROL, &subscribe),
        Verdict::Continue
    );
    assert_eq!(phone.received(), ["p3", "s1"]);
}

#[test]
fn past_the_limits_everything_held_is_flushed() {
    let registry = registry();
    let module = Csi::new(CsiLimits {
        max_held_stanzas: 2,
        max_held_bytes: 1 << 20,
    });
    let mut phone = phone(&registry);
    element(&module, &phone.session, "inactive");
    let p = StanzaKind::Presence;
    for (n, from) in ["a@example.org/x", "b@example.org/x", "c@example.org/x"]
        .into_iter()
        .enumerate()
    {
        route(&module, &phone, p, from, &presence(&format!("p{n}"), None));
    }
    assert_eq!(phone.received(), ["p0", "p1", "p2"]);

    let module = Csi::new(CsiLimits {
        max_held_stanzas: 100,
        max_held_bytes: 100,
    });
    element(&module, &phone.session, "inactive");
    route(&module, &phone, p, BOB, &presence("small", None));
    assert!(phone.received().is_empty());
    let big = format!(
        "<presence xmlns='jabber:client' id='big'><status>{}</status></presence>",
        "x".repeat(100)
    );
    route(&module, &phone, p, CAROL, &big);
    assert_eq!(phone.received(), ["small", "big"]);
    assert!(module.is_inactive(&phone.session));
}

#[test]
fn state_goes_with_the_session() {
    let registry = registry();
    let module = Csi::default();
    let phone = phone(&registry);
    element(&module, &phone.session, "inactive");
    route(
        &module,
        &phone,
        StanzaKind::Presence,
        BOB,
        &presence("p1", None),
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    runtime.block_on(module.on_session(SessionEvent::Ended, &phone.session));
    assert!(module.inactive.is_empty());

    // A session replacing another on the same resource starts active.
    element(&module, &phone.session, "inactive");
    let mut newer = self::phone(&registry);
    assert!(phone.session.is_closing());
    runtime.block_on(module.on_session(SessionEvent::Bound, &newer.session));
    assert!(module.inactive.is_empty());
    let xml = presence("p2", None);
    let verdict = route(&module, &newer, StanzaKind::Presence, BOB, &xml);
    assert_eq!(verdict, Verdict::Continue);
    assert_eq!(newer.received(), ["p2"]);
    // Even before its `Bound` event: the replaced session is closing.
    element(&module, &phone.session, "inactive");
    let xml = presence("p3", None);
    let verdict = route(&module, &newer, StanzaKind::Presence, BOB, &xml);
    assert_eq!(verdict, Verdict::Continue);
    assert!(module.inactive.is_empty());
}

#[test]
fn the_module_offers_its_feature_and_takes_its_elements() {
    let module: Arc<dyn Module> = Arc::new(Csi::default());
    let set = starling_modules::ModuleSet::build(vec![module]).unwrap();
    let feature = Element::builder("csi", NS_CSI).build();
    assert_eq!(
        set.stream_features(StreamStage::Authenticated),
        std::slice::from_ref(&feature)
    );
    assert!(set.stream_features(StreamStage::Unauthenticated).is_empty());
    assert_eq!(set.stream_element_namespaces(), [NS_CSI]);
    for kind in [StanzaKind::Message, StanzaKind::Presence, StanzaKind::Iq] {
        assert!(set.has_hooks(RoutingPoint::ToFull, kind));
        assert!(!set.has_hooks(RoutingPoint::ToBare, kind));
    }
}

#[test]
fn a_resumed_stream_starts_active_and_gets_what_was_held() {
    let registry = registry();
    let module = Csi::default();
    let mut phone = phone(&registry);
    element(&module, &phone.session, "inactive");
    route(
        &module,
        &phone,
        StanzaKind::Presence,
        BOB,
        &presence("held", None),
    );
    assert!(phone.received().is_empty());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    runtime.block_on(module.on_session(SessionEvent::Resumed, &phone.session));
    assert!(!module.is_inactive(&phone.session));
    assert_eq!(phone.received(), ["held"]);
}
