//! Routing rules against a real registry and an in-memory SQLite account store.

use starling_registry::{RegistryConfig, SessionReceiver};
use starling_sasl::StoredCredentials;
use starling_storage::{AccountStore as _, RosterStore as _, SqliteStore};

use super::*;

struct World {
    router: Router<SqliteStore>,
}

struct Client {
    handle: SessionHandle,
    rx: SessionReceiver,
}

impl Client {
    /// Everything queued for this client, serialized with single quotes.
    fn received(&mut self) -> Vec<String> {
        let mut out = Vec::new();
        while let Some(stanza) = self.rx.try_recv() {
            let element = stanza.to_element().unwrap();
            let mut bytes = Vec::new();
            element.write_to(&mut bytes).unwrap();
            out.push(String::from_utf8(bytes).unwrap());
        }
        out
    }
}

async fn world() -> World {
    world_with(RegistryConfig::default(), RouterLimits::default()).await
}

async fn world_with(config: RegistryConfig, limits: RouterLimits) -> World {
    world_with_modules(config, limits, |_| vec![Arc::new(starling_services::Ping)]).await
}

/// A world whose modules are made with its registry.
async fn world_with_modules(
    config: RegistryConfig,
    limits: RouterLimits,
    modules: impl FnOnce(&Arc<Registry>) -> Vec<Arc<dyn starling_modules::Module>>,
) -> World {
    let store = SqliteStore::open_in_memory().unwrap();
    let creds =
        StoredCredentials::from_password("pw", b"0123456789abcdef", b"0123456789abcdef", 4096)
            .unwrap();
    for user in ["alice", "bob"] {
        store
            .create_account(&format!("{user}@localhost").parse().unwrap(), &creds)
            .await
            .unwrap();
    }
    let registry = Arc::new(Registry::new(["localhost".to_owned()], config));
    let modules = modules(&registry);
    World {
        router: Router::new(
            registry,
            store,
            limits,
            Arc::new(starling_modules::ModuleSet::build(modules).unwrap()),
        ),
    }
}

impl World {
    fn connect(&self, jid: &str) -> Client {
        let (handle, rx) = self
            .router
            .registry()
            .new_session(jid.parse().unwrap(), uuid_for(jid));
        self.router.registry().bind(&handle).unwrap();
        Client { handle, rx }
    }

    async fn available(&self, client: &mut Client, priority: i8) {
        self.send(
            client,
            &format!("<presence><priority>{priority}</priority></presence>"),
        )
        .await;
        client.received();
    }

    async fn send(&self, client: &Client, xml: &str) {
        // Add the namespace and the stamped `from` to the opening tag, self-closing or not.
        let end = xml.find('>').unwrap();
        let insert_at = if xml[..end].ends_with('/') {
            end - 1
        } else {
            end
        };
        let attrs = format!(" xmlns='jabber:client' from='{}'", client.handle.full_jid());
        let element: Element = format!("{}{}{}", &xml[..insert_at], attrs, &xml[insert_at..])
            .parse()
            .unwrap();
        self.router
            .route(&client.handle, Stanza::try_from(element).unwrap())
            .await;
    }
}

fn uuid_for(_jid: &str) -> uuid::Uuid {
    uuid::Uuid::now_v7()
}

#[tokio::test]
async fn message_to_bare_jid_goes_to_highest_non_negative_priority() {
    let w = world().await;
    let mut alice = w.connect("alice@localhost/a");
    let mut low = w.connect("bob@localhost/low");
    let mut high = w.connect("bob@localhost/high");
    let mut negative = w.connect("bob@localhost/neg");
    w.available(&mut low, 1).await;
    w.available(&mut high, 5).await;
    w.available(&mut negative, -1).await;
    for client in [&mut low, &mut high, &mut negative] {
        client.received();
    }
    w.send(
        &alice,
        "<message to='bob@localhost' type='chat'><body>hi</body></message>",
    )
    .await;
    assert_eq!(
        high.received(),
        [
            "<message xmlns='jabber:client' from='alice@localhost/a' to='bob@localhost' type='chat'><body>hi</body></message>"
        ]
    );
    assert!(low.received().is_empty());
    assert!(negative.received().is_empty());
    assert!(alice.received().is_empty());
}

#[tokio::test]
async fn only_negative_priority_means_offline_storage_until_a_non_negative_resource() {
    let w = world().await;
    let mut alice = w.connect("alice@localhost/a");
    let mut negative = w.connect("bob@localhost/neg");
    w.available(&mut negative, -5).await;
    w.send(
        &alice,
        "<message to='bob@localhost' type='chat' id='m1'><body>hi</body></message>",
    )
    .await;
    assert!(negative.received().is_empty());
    assert!(alice.received().is_empty(), "stored, not bounced");
    let mut desk = w.connect("bob@localhost/desk");
    w.send(&desk, "<presence/>").await;
    let got = desk.received();
    let offline: Vec<_> = got.iter().filter(|s| s.starts_with("<message")).collect();
    assert_eq!(offline.len(), 1, "{got:?}");
    assert!(
        offline[0]
            .contains("<body>hi</body><delay xmlns='urn:xmpp:delay' from='localhost' stamp='"),
        "{}",
        offline[0]
    );
}

#[tokio::test]
async fn subscription_handshake_updates_both_rosters_and_shares_presence() {
    let w = world().await;
    let mut alice = w.connect("alice@localhost/a");
    let mut bob = w.connect("bob@localhost/b");
    for client in [&mut alice, &mut bob] {
        w.send(
            client,
            "<iq type='get' id='r'><query xmlns='jabber:iq:roster'/></iq>",
        )
        .await;
        w.available(client, 0).await;
    }
    w.send(&alice, "<presence to='bob@localhost' type='subscribe'/>")
        .await;
    let alice_got = alice.received();
    assert!(
        alice_got[0].contains("ask='subscribe'") && alice_got[0].contains("subscription='none'"),
        "{alice_got:?}"
    );
    assert_eq!(
        bob.received(),
        [
            "<presence xmlns='jabber:client' from='alice@localhost' to='bob@localhost' type='subscribe'/>"
        ]
    );
    w.send(&bob, "<presence to='alice@localhost' type='subscribed'/>")
        .await;
    let bob_got = bob.received();
    assert!(
        bob_got.iter().any(|s| s.contains("subscription='from'")),
        "{bob_got:?}"
    );
    let alice_got = alice.received();
    assert!(
        alice_got.iter().any(|s| s.contains("subscription='to'")),
        "{alice_got:?}"
    );
    assert!(
        alice_got.iter().any(|s| s.contains("type='subscribed'")),
        "{alice_got:?}"
    );
    assert!(
        alice_got
            .iter()
            .any(|s| s.starts_with("<presence") && s.contains("from='bob@localhost/b'")),
        "{alice_got:?}"
    );
    let (_, roster) = w
        .router
        .store
        .roster(&"alice@localhost".parse().unwrap())
        .await
        .unwrap();
    assert_eq!(roster[0].subscription, starling_storage::Subscription::To);
    // Bob's later presence reaches Alice, who is subscribed to him.
    w.send(&bob, "<presence><show>away</show></presence>").await;
    assert!(
        alice
            .received()
            .iter()
            .any(|s| s.contains("<show>away</show>"))
    );
}

#[tokio::test]
async fn message_to_offline_full_jid_falls_back_to_bare() {
    let w = world().await;
    let alice = w.connect("alice@localhost/a");
    let mut bob = w.connect("bob@localhost/desk");
    w.available(&mut bob, 0).await;
    w.send(
        &alice,
        "<message to='bob@localhost/gone' type='chat'><body>x</body></message>",
    )
    .await;
    assert_eq!(bob.received().len(), 1);
    // A headline to a missing resource is dropped silently, groupchat bounces.
    let mut alice = alice;
    w.send(
        &alice,
        "<message to='bob@localhost/gone' type='headline'><body>x</body></message>",
    )
    .await;
    assert!(bob.received().is_empty());
    assert!(alice.received().is_empty());
    w.send(
        &alice,
        "<message to='bob@localhost/gone' type='groupchat'><body>x</body></message>",
    )
    .await;
    assert!(alice.received()[0].contains("<service-unavailable"));
}

#[tokio::test]
async fn message_to_full_jid_reaches_even_an_unavailable_connected_resource() {
    let w = world().await;
    let alice = w.connect("alice@localhost/a");
    let mut bob = w.connect("bob@localhost/desk");
    w.send(
        &alice,
        "<message to='bob@localhost/desk'><body>x</body></message>",
    )
    .await;
    assert_eq!(bob.received().len(), 1);
}

#[tokio::test]
async fn unknown_user_gets_service_unavailable_and_errors_are_never_answered() {
    let w = world().await;
    let mut alice = w.connect("alice@localhost/a");
    w.send(
        &alice,
        "<message to='nobody@localhost' id='m'><body>x</body></message>",
    )
    .await;
    let got = alice.received();
    assert_eq!(
        got,
        [
            "<message xmlns='jabber:client' from='nobody@localhost' id='m' to='alice@localhost/a' type='error'><body>x</body><error type='cancel'><service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></message>"
        ]
    );
    w.send(
        &alice,
        "<message to='nobody@localhost' type='error'><body>x</body></message>",
    )
    .await;
    assert!(alice.received().is_empty());
    w.send(
        &alice,
        "<iq to='nobody@localhost' type='get' id='q'><ping xmlns='urn:xmpp:ping'/></iq>",
    )
    .await;
    assert!(alice.received()[0].contains("<service-unavailable"));
}

#[tokio::test]
async fn iq_rules() {
    let w = world().await;
    let mut alice = w.connect("alice@localhost/a");
    let mut bob = w.connect("bob@localhost/b");
    // To an absent full JID.
    w.send(
        &alice,
        "<iq to='bob@localhost/gone' type='get' id='1'><query xmlns='urn:x'/></iq>",
    )
    .await;
    assert!(alice.received()[0].contains("<service-unavailable"));
    // Zero and two children.
    w.send(&alice, "<iq to='localhost' type='get' id='2'></iq>")
        .await;
    assert!(alice.received()[0].contains("<bad-request"));
    w.send(
        &alice,
        "<iq to='localhost' type='get' id='3'><a xmlns='urn:x'/><b xmlns='urn:x'/></iq>",
    )
    .await;
    assert!(alice.received()[0].contains("<bad-request"));
    // To a connected full JID: delivered untouched, and the result comes back.
    w.send(
        &alice,
        "<iq to='bob@localhost/b' type='get' id='4'><query xmlns='urn:x'/></iq>",
    )
    .await;
    assert_eq!(bob.received().len(), 1);
    w.send(
        &bob,
        "<iq to='alice@localhost/a' type='result' id='4'></iq>",
    )
    .await;
    assert_eq!(
        alice.received(),
        [
            "<iq xmlns='jabber:client' from='bob@localhost/b' id='4' to='alice@localhost/a' type='result'/>"
        ]
    );
    // A result to the server with an id it never used is dropped.
    w.send(&alice, "<iq to='localhost' type='result' id='zzz'></iq>")
        .await;
    assert!(alice.received().is_empty());
    // To a bare JID: answered by the server on the account's behalf.
    w.send(
        &alice,
        "<iq to='bob@localhost' type='get' id='5'><ping xmlns='urn:xmpp:ping'/></iq>",
    )
    .await;
    assert_eq!(
        alice.received(),
        [
            "<iq xmlns='jabber:client' from='bob@localhost' id='5' to='alice@localhost/a' type='result'/>"
        ]
    );
    assert!(bob.received().is_empty());
    // To a remote domain: no server-to-server yet.
    w.send(
        &alice,
        "<iq to='example.net' type='get' id='6'><ping xmlns='urn:xmpp:ping'/></iq>",
    )
    .await;
    assert!(alice.received()[0].contains("<remote-server-not-found"));
    // A malformed address.
    w.send(
        &alice,
        "<iq to='a@b@c/' type='get' id='7'><ping xmlns='urn:xmpp:ping'/></iq>",
    )
    .await;
    assert!(alice.received()[0].contains("<jid-malformed"));
}

#[tokio::test]
async fn presence_reaches_own_resources_and_leaving_sends_unavailable() {
    let w = world().await;
    let mut phone = w.connect("alice@localhost/phone");
    let mut desk = w.connect("alice@localhost/desk");
    w.available(&mut desk, 0).await;
    w.send(&phone, "<presence><priority>3</priority></presence>")
        .await;
    assert_eq!(phone.handle.priority(), 3);
    // Reflected to the sender, which also learns of the other available resource; and sent
    // to that other resource.
    assert_eq!(
        phone.received(),
        [
            "<presence xmlns='jabber:client' from='alice@localhost/phone' to='alice@localhost'><priority>3</priority></presence>",
            "<presence xmlns='jabber:client' from='alice@localhost/desk' to='alice@localhost/phone'><priority>0</priority></presence>"
        ]
    );
    assert_eq!(
        desk.received(),
        [
            "<presence xmlns='jabber:client' from='alice@localhost/phone' to='alice@localhost'><priority>3</priority></presence>"
        ]
    );
    w.router.session_ended(&phone.handle).await;
    assert_eq!(
        desk.received(),
        [
            "<presence xmlns='jabber:client' from='alice@localhost/phone' to='alice@localhost' type='unavailable'/>"
        ]
    );
    assert!(
        w.router
            .registry()
            .resource(&"alice@localhost/phone".parse().unwrap())
            .is_none()
    );
}

// RFC 6121 §4.6 with the directed-presence cap (issue 15): addresses where nobody is online are
// not remembered, so they do not use up the cap; past the cap the sender gets policy-violation
// and the presence does not go out; unavailable reaches exactly the remembered ones.
#[tokio::test]
async fn directed_presence_remembers_reachable_addresses_up_to_the_cap() {
    let w = world_with(
        RegistryConfig::default(),
        RouterLimits {
            max_directed_presences: 2,
            ..RouterLimits::default()
        },
    )
    .await;
    let mut alice = w.connect("alice@localhost/a");
    w.available(&mut alice, 0).await;
    let mut bobs: Vec<Client> = ["b1", "b2", "b3"]
        .iter()
        .map(|r| w.connect(&format!("bob@localhost/{r}")))
        .collect();
    for n in 0..5 {
        w.send(&alice, &format!("<presence to='nobody{n}@localhost'/>"))
            .await;
        w.send(&alice, &format!("<presence to='bob@localhost/gone{n}'/>"))
            .await;
    }
    assert!(
        alice.received().is_empty(),
        "nobody there: dropped, not refused"
    );
    for bob in &bobs {
        let to = bob.handle.full_jid().to_string();
        w.send(&alice, &format!("<presence to='{to}' id='p-{to}'/>"))
            .await;
    }
    assert_eq!(bobs[0].received().len(), 1);
    assert_eq!(bobs[1].received().len(), 1);
    assert!(bobs[2].received().is_empty(), "over the cap: not sent");
    assert_eq!(
        alice.received(),
        [
            "<presence xmlns='jabber:client' from='bob@localhost/b3' id='p-bob@localhost/b3' to='alice@localhost/a' type='error'><error type='modify'><policy-violation xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></presence>"
        ]
    );
    w.send(&alice, "<presence type='unavailable'/>").await;
    for bob in &mut bobs[..2] {
        let got = bob.received();
        assert_eq!(got.len(), 1, "{got:?}");
        assert!(got[0].contains("type='unavailable'"), "{got:?}");
    }
    assert!(bobs[2].received().is_empty());
}

#[tokio::test]
async fn roster_push_from_another_account_is_refused_not_relayed() {
    let w = world().await;
    let mut alice = w.connect("alice@localhost/a");
    let mut other = w.connect("alice@localhost/b");
    let mut bob = w.connect("bob@localhost/b");
    let push = "<iq type='set' id='p1' to='alice@localhost/a'><query xmlns='jabber:iq:roster'><item jid='bob@localhost' subscription='both'/></query></iq>";
    w.send(&bob, push).await;
    assert!(alice.received().is_empty());
    assert_eq!(
        bob.received(),
        [
            "<iq xmlns='jabber:client' from='alice@localhost/a' id='p1' to='bob@localhost/b' type='error'><query xmlns='jabber:iq:roster'><item jid='bob@localhost' subscription='both'/></query><error type='auth'><forbidden xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>"
        ]
    );
    // From the account's own other resource it is the client's business (and so is a get).
    w.send(&other, push).await;
    assert_eq!(alice.received().len(), 1);
    w.send(
        &bob,
        "<iq type='get' id='g1' to='alice@localhost/a'><query xmlns='jabber:iq:roster'/></iq>",
    )
    .await;
    assert_eq!(alice.received().len(), 1);
    other.received();
}

#[tokio::test]
async fn offline_messages_that_do_not_fit_the_queue_stay_stored() {
    // A queue of 12: the reflected presence and 4 slots kept free leave room for 7 messages.
    let w = world_with(
        RegistryConfig {
            queue_depth: 12,
            ..RegistryConfig::default()
        },
        RouterLimits::default(),
    )
    .await;
    let alice = w.connect("alice@localhost/a");
    for n in 0..20 {
        w.send(
            &alice,
            &format!("<message to='bob@localhost' type='chat'><body>m{n}</body></message>"),
        )
        .await;
    }
    let mut bodies = Vec::new();
    for login in 0..5 {
        let mut bob = w.connect(&format!("bob@localhost/r{login}"));
        w.send(&bob, "<presence/>").await;
        let got: Vec<String> = bob
            .received()
            .into_iter()
            .filter(|s| s.starts_with("<message"))
            .collect();
        assert!(got.len() <= 7, "login {login}: {}", got.len());
        bodies.extend(got.iter().filter_map(|s| {
            let start = s.find("<body>")? + 6;
            let end = s.find("</body>")?;
            s.get(start..end).map(str::to_owned)
        }));
        w.router.session_ended(&bob.handle).await;
    }
    let expected: Vec<String> = (0..20).map(|n| format!("m{n}")).collect();
    assert_eq!(bodies, expected);
}

#[tokio::test]
async fn a_second_resource_does_not_read_offline_messages_being_handed_to_the_first() {
    let w = world().await;
    let alice = w.connect("alice@localhost/a");
    w.send(
        &alice,
        "<message to='bob@localhost' type='chat'><body>once</body></message>",
    )
    .await;
    let bob = "bob@localhost".parse().unwrap();
    // Stands in for a flush to another resource of Bob's, between its read and its removal.
    let claim = crate::presence::FlushClaim::take(&w.router.offline_flushing, &bob)
        .expect("nobody is flushing");
    assert!(crate::presence::FlushClaim::take(&w.router.offline_flushing, &bob).is_none());
    let mut phone = w.connect("bob@localhost/phone");
    w.send(&phone, "<presence/>").await;
    assert!(!phone.received().iter().any(|s| s.starts_with("<message")));
    drop(claim);
    let mut desk = w.connect("bob@localhost/desk");
    w.send(&desk, "<presence/>").await;
    let got: Vec<String> = desk
        .received()
        .into_iter()
        .filter(|s| s.starts_with("<message"))
        .collect();
    assert_eq!(got.len(), 1, "{got:?}");
}

/// Records every message it is asked to copy (direction, account, the resources reached) and
/// copies it to the account's other connected resources; a `ToFull` hook marks each copy, to
/// show copies pass the hooks.
struct Copier {
    registry: Arc<Registry>,
    seen: Mutex<Vec<String>>,
}

impl starling_modules::Module for Copier {
    fn name(&self) -> &'static str {
        "copier"
    }
    fn register(self: Arc<Self>, registrar: &mut starling_modules::Registrar<'_>) {
        registrar.hook(
            RoutingPoint::ToFull,
            &[StanzaKind::Message],
            starling_modules::Priority::COPY,
            self.clone(),
        );
        registrar.copies(self);
    }
}

impl starling_modules::CopyMaker for Copier {
    fn copies(
        &self,
        message: &starling_modules::Exchanged<'_>,
        copies: &mut Vec<starling_modules::MessageCopy>,
    ) {
        let mut reached: Vec<String> = message
            .reached
            .iter()
            .map(|session| session.full_jid().to_string())
            .collect();
        reached.sort();
        self.seen.lock().unwrap().push(format!(
            "{:?} {} [{}]",
            message.direction,
            message.account,
            reached.join(" ")
        ));
        for session in self.registry.connected_resources(message.account) {
            if !message.reached.contains(&session) {
                let mut copy = Element::builder("message", NS_CLIENT).build();
                set_attr(&mut copy, xml_ncname!("id"), Some("copy"));
                copies.push(starling_modules::MessageCopy {
                    to: session,
                    stanza: copy,
                });
            }
        }
    }
}

impl starling_modules::StanzaHook for Copier {
    fn on_stanza<'a>(
        &'a self,
        routed: &'a mut starling_modules::Routed<'_>,
    ) -> starling_modules::Hooked<'a> {
        if routed.stanza().attr("id") == Some("copy") {
            let from = routed.from.to_string();
            routed.stanza_mut().append_child(
                Element::builder("hooked", "urn:test")
                    .attr(xml_ncname!("from").to_owned(), from)
                    .build(),
            );
        }
        starling_modules::Hooked::Now(Verdict::Continue)
    }
}

#[tokio::test]
async fn copy_makers_learn_who_got_a_message_and_copies_pass_the_to_full_hooks() {
    let mut copier = None;
    let w = world_with_modules(
        RegistryConfig::default(),
        RouterLimits::default(),
        |registry| {
            let made = Arc::new(Copier {
                registry: Arc::clone(registry),
                seen: Mutex::new(Vec::new()),
            });
            copier = Some(Arc::clone(&made));
            vec![made]
        },
    )
    .await;
    let copier = copier.unwrap();
    let mut bob = w.connect("bob@localhost/a");
    let mut high = w.connect("alice@localhost/high");
    let mut low = w.connect("alice@localhost/low");
    w.available(&mut high, 5).await;
    w.available(&mut low, 1).await;
    high.received();
    let copy = "<message xmlns='jabber:client' id='copy'><hooked xmlns='urn:test' from='alice@localhost'/></message>";

    // To the bare JID: the highest-priority resource got it, the other one gets the copy.
    w.send(
        &bob,
        "<message to='alice@localhost' type='chat'><body>1</body></message>",
    )
    .await;
    assert_eq!(high.received().len(), 1);
    assert_eq!(low.received(), [copy]);
    // To a full JID: that resource got it.
    w.send(
        &bob,
        "<message to='alice@localhost/low' type='chat'><body>2</body></message>",
    )
    .await;
    assert_eq!(high.received(), [copy]);
    assert_eq!(low.received().len(), 1);
    // Bob's own message was seen as sent, by the one session that has it.
    assert!(bob.received().is_empty());
    let seen = std::mem::take(&mut *copier.seen.lock().unwrap());
    assert_eq!(
        seen,
        [
            "Sent bob@localhost [bob@localhost/a]",
            "Received alice@localhost [alice@localhost/high]",
            "Sent bob@localhost [bob@localhost/a]",
            "Received alice@localhost [alice@localhost/low]",
        ]
    );

    // Stored offline: nobody reached. Refused (to an account that does not exist): not seen.
    w.router.session_ended(&high.handle).await;
    w.router.session_ended(&low.handle).await;
    let mut phone = w.connect("alice@localhost/phone");
    w.send(
        &bob,
        "<message to='alice@localhost' type='chat'><body>3</body></message>",
    )
    .await;
    assert_eq!(phone.received(), [copy]);
    w.send(
        &bob,
        "<message to='nobody@localhost' type='chat'><body>4</body></message>",
    )
    .await;
    let seen = std::mem::take(&mut *copier.seen.lock().unwrap());
    assert_eq!(
        seen,
        [
            "Sent bob@localhost [bob@localhost/a]",
            "Received alice@localhost []",
            "Sent bob@localhost [bob@localhost/a]",
        ]
    );
}
