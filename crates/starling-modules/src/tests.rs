//! Unit tests of registration and dispatch order.

use std::sync::{Arc, Mutex};

use minidom::Element;
use starling_stanza::{IqType, StanzaErrorCondition, StanzaKind};

use crate::*;

/// A module that records the order its hooks run in and answers with a fixed verdict.
struct Recorder {
    name: &'static str,
    priority: Priority,
    verdict: Verdict,
    log: Arc<Mutex<Vec<&'static str>>>,
}

impl Module for Recorder {
    fn name(&self) -> &'static str {
        self.name
    }
    fn register(self: Arc<Self>, registrar: &mut Registrar<'_>) {
        let priority = self.priority;
        registrar.hook(RoutingPoint::ToFull, &[StanzaKind::Message], priority, self);
    }
}

impl StanzaHook for Recorder {
    fn on_stanza<'a>(&'a self, _routed: &'a mut Routed<'_>) -> Hooked<'a> {
        self.log.lock().unwrap().push(self.name);
        // Half of them answer later, so both kinds of answer are run in order.
        if self.name.len().is_multiple_of(2) {
            Hooked::Now(self.verdict.clone())
        } else {
            let verdict = self.verdict.clone();
            Hooked::Later(Box::pin(async move { verdict }))
        }
    }
}

fn recorder(
    name: &'static str,
    priority: Priority,
    verdict: Verdict,
    log: &Arc<Mutex<Vec<&'static str>>>,
) -> Arc<dyn Module> {
    Arc::new(Recorder {
        name,
        priority,
        verdict,
        log: Arc::clone(log),
    })
}

fn run(set: &ModuleSet) -> Verdict {
    let from = jid::Jid::new("a@example.org/x").unwrap();
    let to = jid::Jid::new("b@example.org/y").unwrap();
    let stanza: Element = "<message xmlns='jabber:client'/>".parse().unwrap();
    let mut routed = Routed::new(
        RoutingPoint::ToFull,
        StanzaKind::Message,
        &from,
        &to,
        &stanza,
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    runtime.block_on(set.run_hooks(&mut routed))
}

#[test]
fn hooks_run_by_priority_then_name_and_stop_at_the_first_decision() {
    let log = Arc::new(Mutex::new(Vec::new()));
    let set = ModuleSet::build(vec![
        recorder("carbons", Priority::COPY, Verdict::Continue, &log),
        recorder("archive", Priority::ARCHIVE, Verdict::Continue, &log),
        recorder("blocking", Priority::POLICY, Verdict::Continue, &log),
        recorder("b-archive", Priority::ARCHIVE, Verdict::Handled, &log),
        recorder("late", Priority::FALLBACK, Verdict::Continue, &log),
    ])
    .unwrap();
    assert_eq!(run(&set), Verdict::Handled);
    assert_eq!(
        *log.lock().unwrap(),
        vec!["blocking", "archive", "b-archive"]
    );
}

#[test]
fn no_hooks_means_continue() {
    let set = ModuleSet::build(Vec::new()).unwrap();
    assert!(!set.has_hooks(RoutingPoint::ToFull, StanzaKind::Message));
    assert_eq!(run(&set), Verdict::Continue);
}

#[test]
fn a_rejection_carries_its_application_condition_into_the_reply() {
    let stanza = starling_stanza::Stanza::try_from(
        "<message xmlns='jabber:client' from='a@x/r' to='b@x' id='m'/>"
            .parse::<Element>()
            .unwrap(),
    )
    .unwrap();
    let rejection = Rejection {
        condition: StanzaErrorCondition::NotAcceptable,
        application: Some(Element::builder("blocked", "urn:xmpp:blocking:errors").build()),
    };
    let reply = rejection.reply_to(&stanza).unwrap();
    let error = reply.get_child("error", "jabber:client").unwrap();
    assert!(error.has_child("not-acceptable", starling_stanza::NS_STANZA_ERRORS));
    assert!(error.has_child("blocked", "urn:xmpp:blocking:errors"));
    assert_eq!(reply.attr("to"), Some("a@x/r"));
}

struct Answers(&'static str);

impl Module for Answers {
    fn name(&self) -> &'static str {
        self.0
    }
    fn register(self: Arc<Self>, registrar: &mut Registrar<'_>) {
        registrar.iq(AddressForm::Bare, IqType::Get, "urn:example:x", self);
    }
}

impl IqHandler for Answers {
    fn handle<'a>(&'a self, _request: IqRequest<'a>) -> BoxFuture<'a, IqAnswer> {
        Box::pin(async { Ok(None) })
    }
}

#[test]
fn two_modules_answering_the_same_request_is_an_error() {
    let result = ModuleSet::build(vec![Arc::new(Answers("one")), Arc::new(Answers("two"))]);
    assert_eq!(
        result.err(),
        Some(ModuleError::IqConflict {
            first: "one",
            second: "two",
            form: AddressForm::Bare,
            iq_type: IqType::Get,
            namespace: "urn:example:x",
        })
    );
    let result = ModuleSet::build(vec![Arc::new(Answers("one")), Arc::new(Answers("one"))]);
    assert_eq!(result.err(), Some(ModuleError::Duplicate("one")));
}

#[test]
fn iq_lookup_is_by_form_type_and_namespace() {
    let set = ModuleSet::build(vec![Arc::new(Answers("one"))]).unwrap();
    assert!(
        set.iq_handler(AddressForm::Bare, IqType::Get, "urn:example:x")
            .is_some()
    );
    assert!(
        set.iq_handler(AddressForm::Bare, IqType::Set, "urn:example:x")
            .is_none()
    );
    assert!(
        set.iq_handler(AddressForm::Server, IqType::Get, "urn:example:x")
            .is_none()
    );
    assert!(
        set.iq_handler(AddressForm::Bare, IqType::Result, "urn:example:x")
            .is_none()
    );
}

struct Finisher;

impl Module for Finisher {
    fn name(&self) -> &'static str {
        "finisher"
    }
    fn register(self: Arc<Self>, registrar: &mut Registrar<'_>) {
        registrar.disco_feature(DiscoTarget::Server, "urn:example:late");
        registrar.after_disco(self);
    }
}

impl DiscoFinisher for Finisher {
    fn finish(&self, server: &DiscoInfo) -> Finished {
        Finished {
            stream_features: vec![
                Element::builder("count", "urn:example")
                    .append(server.features.len().to_string())
                    .build(),
            ],
            server_nodes: vec!["urn:example#node".to_owned()],
        }
    }
}

#[test]
fn disco_answers_exactly_what_was_registered_and_finishers_see_all_of_it() {
    let set = ModuleSet::build(vec![Arc::new(Finisher)]).unwrap();
    let features: Vec<&str> = set
        .server_info()
        .features
        .iter()
        .map(String::as_str)
        .collect();
    assert_eq!(
        features,
        vec![
            "http://jabber.org/protocol/disco#info",
            "http://jabber.org/protocol/disco#items",
            "urn:example:late",
        ]
    );
    // The finisher ran after disco's own features were added: it counted three.
    for stage in [StreamStage::Unauthenticated, StreamStage::Authenticated] {
        assert_eq!(set.stream_features(stage)[0].text(), "3");
    }
    assert!(
        set.iq_handler(
            AddressForm::Server,
            IqType::Get,
            "http://jabber.org/protocol/disco#info"
        )
        .is_some()
    );
}

/// Accepts stream elements of one namespace and records their names.
struct Nonzas {
    name: &'static str,
    namespace: &'static str,
    seen: Mutex<Vec<String>>,
}

impl Module for Nonzas {
    fn name(&self) -> &'static str {
        self.name
    }
    fn register(self: Arc<Self>, registrar: &mut Registrar<'_>) {
        let namespace = self.namespace;
        registrar.stream_element(namespace, self);
    }
}

impl StreamElementHandler for Nonzas {
    fn on_element<'a>(
        &'a self,
        session: &'a starling_registry::SessionHandle,
        element: &'a Element,
    ) -> BoxFuture<'a, ()> {
        let seen = format!("{} from {}", element.name(), session.full_jid());
        self.seen.lock().unwrap().push(seen);
        Box::pin(async {})
    }
}

fn nonzas(name: &'static str, namespace: &'static str) -> Arc<Nonzas> {
    Arc::new(Nonzas {
        name,
        namespace,
        seen: Mutex::new(Vec::new()),
    })
}

#[test]
fn stream_elements_go_to_the_module_of_their_namespace() {
    let csi = nonzas("csi", "urn:xmpp:csi:0");
    let other = nonzas("other", "urn:example:other");
    let set = ModuleSet::build(vec![csi.clone(), other.clone()]).unwrap();
    assert_eq!(
        set.stream_element_namespaces(),
        ["urn:xmpp:csi:0", "urn:example:other"]
    );
    let registry = starling_registry::Registry::new(
        ["example.org".to_owned()],
        starling_registry::RegistryConfig::default(),
    );
    let (session, _receiver) = registry.new_session(
        "alice@example.org/phone".parse().unwrap(),
        uuid::Uuid::nil(),
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    for xml in [
        "<inactive xmlns='urn:xmpp:csi:0'/>",
        "<unknown xmlns='urn:example:nobody'/>",
        "<active xmlns='urn:xmpp:csi:0'/>",
    ] {
        let element: Element = xml.parse().unwrap();
        runtime.block_on(set.stream_element(&session, &element));
    }
    assert_eq!(
        *csi.seen.lock().unwrap(),
        [
            "inactive from alice@example.org/phone",
            "active from alice@example.org/phone"
        ]
    );
    assert!(other.seen.lock().unwrap().is_empty());
}

#[test]
fn two_modules_accepting_the_same_stream_elements_is_an_error() {
    let result = ModuleSet::build(vec![
        nonzas("one", "urn:xmpp:csi:0"),
        nonzas("two", "urn:xmpp:csi:0"),
    ]);
    assert_eq!(
        result.err(),
        Some(ModuleError::StreamElementConflict {
            first: "one",
            second: "two",
            namespace: "urn:xmpp:csi:0",
        })
    );
}
