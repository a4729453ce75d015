//! The module driven through a `ModuleSet`, with a real registry and an in-memory SQLite store,
//! as the router drives it.

use jid::FullJid;
use starling_modules::ModuleSet;
use starling_registry::{RegistryConfig, SessionReceiver};
use starling_sasl::StoredCredentials;
use starling_stanza::{NS_CLIENT, Stanza};
use starling_storage::{
    AccountStore as _, ArchiveFilter, OfflineStore as _, RosterChange, RosterItem,
    RosterStore as _, SqliteStore, id_at,
};

use super::*;

fn el(xml: &str) -> Element {
    xml.parse().unwrap()
}

struct World {
    store: SqliteStore,
    registry: Arc<Registry>,
    module: Arc<Mam<SqliteStore>>,
    set: ModuleSet,
}

/// Ids of millisecond 1000, 1001, ... one per message.
fn ids() -> IdSource {
    let mut next = 1000;
    Box::new(move || {
        next += 1;
        id_at(next, [0; 10])
    })
}

async fn world_with(settings: Settings) -> World {
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
    let module = Arc::new(Mam::new(
        store.clone(),
        Arc::clone(&registry),
        settings,
        ids(),
    ));
    let set = ModuleSet::build(vec![module.clone()]).unwrap();
    World {
        store,
        registry,
        module,
        set,
    }
}

async fn world() -> World {
    world_with(Settings::default()).await
}

fn bare(jid: &str) -> BareJid {
    jid.parse().unwrap()
}

const CHAT: &str = "<message xmlns='jabber:client' type='chat' id='m1' from='alice@localhost/desk' to='bob@localhost'><body>hi</body></message>";

impl World {
    fn connect(&self, jid: &str) -> (SessionHandle, SessionReceiver) {
        let (handle, rx) = self
            .registry
            .new_session(jid.parse().unwrap(), Uuid::now_v7());
        self.registry.bind(&handle).unwrap();
        (handle, rx)
    }

    /// The hooks of `point` for `xml` from `from` to `to`: the verdict and the stanza after.
    async fn at(&self, point: RoutingPoint, from: &str, to: &str, xml: &str) -> (Verdict, Element) {
        let from: Jid = from.parse().unwrap();
        let to: Jid = to.parse().unwrap();
        let stanza = el(xml);
        let mut routed = Routed::new(point, StanzaKind::Message, &from, &to, &stanza);
        let verdict = self.set.run_hooks(&mut routed).await;
        let after = routed.into_changed().unwrap_or(stanza.clone());
        (verdict, after)
    }

    /// What the router does with a message from `from` to a local bare or full JID `to`: the
    /// outbound hooks, then the recipient's point (`ToBare` for a bare JID, `ToFull` for a
    /// full one). Returns what the recipient gets.
    async fn send(&self, from: &str, to: &str, xml: &str) -> Element {
        let (verdict, out) = self.at(RoutingPoint::Outbound, from, to, xml).await;
        assert_eq!(verdict, Verdict::Continue);
        let point = if to.contains('/') {
            RoutingPoint::ToFull
        } else {
            RoutingPoint::ToBare
        };
        let (verdict, delivered) = self.at(point, from, to, &serialize(&out)).await;
        assert_eq!(verdict, Verdict::Continue);
        delivered
    }

    async fn archive(&self, owner: &str) -> Vec<ArchivedMessage> {
        self.store
            .archive_page(
                &bare(owner),
                &ArchiveFilter::default(),
                PageFrom::Oldest,
                100,
            )
            .await
            .unwrap()
            .messages
    }

    /// `from` (a full JID) sends an iq `iq_type` with `payload` to its own account, or to
    /// `to`.
    async fn iq(&self, from: &str, to: Option<&str>, iq_type: IqType, payload: &str) -> IqAnswer {
        let kind = if iq_type == IqType::Get { "get" } else { "set" };
        let stanza = Stanza::try_from(el(&format!(
            "<iq xmlns='jabber:client' type='{kind}' id='q1'>{payload}</iq>"
        )))
        .unwrap();
        let from: FullJid = from.parse().unwrap();
        let account = to.map_or_else(|| from.to_bare(), bare);
        let payload = stanza.element().children().next().unwrap();
        let handler = self
            .set
            .iq_handler(AddressForm::Bare, iq_type, &payload.ns())
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
}

fn stanza_ids(message: &Element) -> Vec<(String, String)> {
    message
        .children()
        .filter(|child| child.is("stanza-id", NS_SID))
        .map(|child| {
            (
                child.attr("by").unwrap_or_default().to_owned(),
                child.attr("id").unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

/// What is queued for a session, as elements.
fn drain(rx: &mut SessionReceiver) -> Vec<Element> {
    std::iter::from_fn(|| rx.try_recv())
        .map(|stanza| stanza.to_element().unwrap())
        .collect()
}

fn condition(answer: IqAnswer) -> StanzaErrorCondition {
    answer.unwrap_err().condition
}

#[tokio::test]
async fn accounts_advertise_the_archive_and_stanza_ids() {
    let w = world().await;
    assert_eq!(w.set.names(), ["mam"]);
    for feature in [NS_MAM, NS_MAM_EXTENDED, NS_SID] {
        assert!(w.set.account_info().features.contains(feature), "{feature}");
        assert!(!w.set.server_info().features.contains(feature), "{feature}");
    }
}

#[tokio::test]
async fn a_chat_message_is_kept_once_by_each_side_and_the_recipient_learns_its_id() {
    let w = world().await;
    let delivered = w.send("alice@localhost/desk", "bob@localhost", CHAT).await;
    let alice = w.archive("alice@localhost").await;
    let bob = w.archive("bob@localhost").await;
    assert_eq!((alice.len(), bob.len()), (1, 1));
    assert_eq!(alice[0].direction, Direction::Outgoing);
    assert_eq!(alice[0].with, bare("bob@localhost"));
    assert_eq!(alice[0].with_resource, None);
    assert_eq!(bob[0].direction, Direction::Incoming);
    assert_eq!(bob[0].with, bare("alice@localhost"));
    assert_eq!(bob[0].with_resource.as_deref(), Some("desk"));
    // Only the recipient's id travels, and it is the recipient's archive id.
    assert_eq!(
        stanza_ids(&delivered),
        vec![("bob@localhost".to_owned(), bob[0].id.to_string())]
    );
    // The recipient's stored copy is what was delivered; the sender's is what was sent.
    assert_eq!(bob[0].stanza.parse::<Element>().unwrap(), delivered);
    assert!(stanza_ids(&alice[0].stanza.parse::<Element>().unwrap()).is_empty());
}

#[tokio::test]
async fn the_sender_id_is_on_the_stanza_only_between_archive_and_strip() {
    let w = world().await;
    let from: Jid = "alice@localhost/desk".parse().unwrap();
    let to: Jid = "bob@localhost".parse().unwrap();
    let stanza = el(CHAT);
    let mut routed = Routed::new(
        RoutingPoint::Outbound,
        StanzaKind::Message,
        &from,
        &to,
        &stanza,
    );
    // The archive hook alone, as carbons (between the two bands) would see the stanza.
    let hook: &dyn StanzaHook = w.module.as_ref();
    let verdict = match hook.on_stanza(&mut routed) {
        Hooked::Now(verdict) => verdict,
        Hooked::Later(future) => future.await,
    };
    assert_eq!(verdict, Verdict::Continue);
    let sent_id = w.archive("alice@localhost").await[0].id.to_string();
    assert_eq!(
        stanza_ids(routed.stanza()),
        vec![("alice@localhost".to_owned(), sent_id)]
    );
    match StripOutgoingId.on_stanza(&mut routed) {
        Hooked::Now(verdict) => assert_eq!(verdict, Verdict::Continue),
        Hooked::Later(_) => panic!("stripping decides at once"),
    }
    assert!(stanza_ids(routed.stanza()).is_empty());
}

#[tokio::test]
async fn spoofed_ids_are_removed_foreign_ones_and_origin_id_kept() {
    let w = world().await;
    let spoofed = "<message xmlns='jabber:client' type='chat' from='alice@localhost/desk' to='bob@localhost'>\
         <body>hi</body>\
         <stanza-id xmlns='urn:xmpp:sid:0' by='bob@localhost' id='forged'/>\
         <stanza-id xmlns='urn:xmpp:sid:0' by='localhost' id='forged-host'/>\
         <stanza-id xmlns='urn:xmpp:sid:0' by='room@muc.example.net' id='theirs'/>\
         <origin-id xmlns='urn:xmpp:sid:0' id='o-1'/></message>";
    let delivered = w
        .send("alice@localhost/desk", "bob@localhost", spoofed)
        .await;
    let bob = w.archive("bob@localhost").await;
    assert_eq!(
        stanza_ids(&delivered),
        vec![
            ("room@muc.example.net".to_owned(), "theirs".to_owned()),
            ("bob@localhost".to_owned(), bob[0].id.to_string())
        ]
    );
    assert_eq!(
        delivered
            .get_child("origin-id", NS_SID)
            .and_then(|o| o.attr("id")),
        Some("o-1")
    );
    assert_eq!(bob[0].origin_id.as_deref(), Some("o-1"));
    // Stripped even when the message is not archived (XEP-0359 §4 rule 2).
    let (_, out) = w
        .at(
            RoutingPoint::Outbound,
            "alice@localhost/desk",
            "bob@localhost",
            "<message xmlns='jabber:client' type='headline' to='bob@localhost'><body>x</body>\
             <stanza-id xmlns='urn:xmpp:sid:0' by='bob@localhost' id='forged'/></message>",
        )
        .await;
    assert!(stanza_ids(&out).is_empty());
}

#[tokio::test]
async fn a_full_jid_message_is_archived_at_to_full_and_a_fan_out_is_not_again() {
    let w = world().await;
    let to_full = CHAT.replace("to='bob@localhost'", "to='bob@localhost/phone'");
    let delivered = w
        .send("alice@localhost/desk", "bob@localhost/phone", &to_full)
        .await;
    assert_eq!(stanza_ids(&delivered).len(), 1);
    assert_eq!(w.archive("bob@localhost").await.len(), 1);
    // A bare-JID message fanned out to two resources: archived at ToBare only.
    let delivered = w.send("alice@localhost/desk", "bob@localhost", CHAT).await;
    for resource in ["bob@localhost/phone", "bob@localhost/laptop"] {
        let (verdict, copy) = w
            .at(
                RoutingPoint::ToFull,
                "alice@localhost/desk",
                resource,
                &serialize(&delivered),
            )
            .await;
        assert_eq!(verdict, Verdict::Continue);
        assert_eq!(stanza_ids(&copy), stanza_ids(&delivered));
    }
    // A full-JID message already archived on its way (offline, then flushed) is not again.
    let (_, again) = w
        .at(
            RoutingPoint::ToFull,
            "alice@localhost/desk",
            "bob@localhost/laptop",
            &serialize(
                &w.send("alice@localhost/desk", "bob@localhost", &to_full)
                    .await,
            ),
        )
        .await;
    assert_eq!(stanza_ids(&again).len(), 1);
    assert_eq!(w.archive("bob@localhost").await.len(), 3);
    assert_eq!(w.archive("alice@localhost").await.len(), 3);
}

#[tokio::test]
async fn only_archivable_messages_are_kept() {
    let w = world().await;
    for xml in [
        "<message xmlns='jabber:client' type='chat' to='bob@localhost'><active xmlns='http://jabber.org/protocol/chatstates'/></message>",
        "<message xmlns='jabber:client' type='headline' to='bob@localhost'><body>news</body></message>",
        "<message xmlns='jabber:client' type='chat' to='bob@localhost'><body>secret</body><no-store xmlns='urn:xmpp:hints'/></message>",
        "<message xmlns='jabber:client' type='chat' to='bob@localhost'><body>secret</body><no-permanent-store xmlns='urn:xmpp:hints'/></message>",
    ] {
        let delivered = w.send("alice@localhost/desk", "bob@localhost", xml).await;
        assert!(stanza_ids(&delivered).is_empty(), "{xml}");
    }
    assert!(w.archive("alice@localhost").await.is_empty());
    assert!(w.archive("bob@localhost").await.is_empty());
    w.send(
        "alice@localhost/desk",
        "bob@localhost",
        "<message xmlns='jabber:client' type='chat' to='bob@localhost'><store xmlns='urn:xmpp:hints'/></message>",
    )
    .await;
    assert_eq!(w.archive("bob@localhost").await.len(), 1);
}

#[tokio::test]
async fn a_message_to_oneself_is_archived_once() {
    let w = world().await;
    let note = "<message xmlns='jabber:client' type='chat' to='alice@localhost'><body>note</body></message>";
    let delivered = w
        .send("alice@localhost/desk", "alice@localhost", note)
        .await;
    let archive = w.archive("alice@localhost").await;
    assert_eq!(archive.len(), 1);
    assert_eq!(archive[0].direction, Direction::Incoming);
    assert_eq!(archive[0].with, bare("alice@localhost"));
    assert_eq!(stanza_ids(&delivered).len(), 1);
}

#[tokio::test]
async fn preferences_are_answered_stored_and_applied() {
    let w = world().await;
    let prefs = |answer: IqAnswer| answer.unwrap().unwrap();
    assert_eq!(
        prefs(
            w.iq(
                "bob@localhost/phone",
                None,
                IqType::Get,
                "<prefs xmlns='urn:xmpp:mam:2'/>"
            )
            .await
        ),
        el("<prefs xmlns='urn:xmpp:mam:2' default='always'><always/><never/></prefs>")
    );
    let set = "<prefs xmlns='urn:xmpp:mam:2' default='roster'><always><jid>carol@localhost</jid></always><never><jid>alice@localhost</jid></never></prefs>";
    let applied = prefs(w.iq("bob@localhost/phone", None, IqType::Set, set).await);
    assert_eq!(applied, el(set));
    assert_eq!(
        prefs(
            w.iq(
                "bob@localhost/phone",
                None,
                IqType::Get,
                "<prefs xmlns='urn:xmpp:mam:2'/>"
            )
            .await
        ),
        el(set)
    );
    // never: alice's message is delivered without an id and kept only in alice's archive.
    let delivered = w.send("alice@localhost/desk", "bob@localhost", CHAT).await;
    assert!(stanza_ids(&delivered).is_empty());
    assert!(w.archive("bob@localhost").await.is_empty());
    assert_eq!(w.archive("alice@localhost").await.len(), 1);
    // always: carol, not in the roster, is archived.
    let from_carol = CHAT.replace("alice@localhost/desk", "carol@localhost/x");
    w.send("carol@localhost/x", "bob@localhost", &from_carol)
        .await;
    assert_eq!(w.archive("bob@localhost").await.len(), 1);
    // roster: a stranger's message is not; a contact's is; and so are bob's own.
    let dave = CHAT.replace("alice@localhost/desk", "dave@localhost/x");
    w.send("dave@localhost/x", "bob@localhost", &dave).await;
    assert_eq!(w.archive("bob@localhost").await.len(), 1);
    w.store
        .apply(
            &[RosterChange::Put {
                owner: bare("bob@localhost"),
                item: RosterItem::new(bare("dave@localhost")),
            }],
            100,
        )
        .await
        .unwrap();
    w.send("dave@localhost/x", "bob@localhost", &dave).await;
    assert_eq!(w.archive("bob@localhost").await.len(), 2);
    // Refusals.
    assert_eq!(
        condition(
            w.iq(
                "bob@localhost/phone",
                None,
                IqType::Set,
                "<prefs xmlns='urn:xmpp:mam:2' default='maybe'/>"
            )
            .await
        ),
        StanzaErrorCondition::BadRequest
    );
    assert_eq!(
        condition(
            w.iq(
                "alice@localhost/desk",
                Some("bob@localhost"),
                IqType::Get,
                "<prefs xmlns='urn:xmpp:mam:2'/>"
            )
            .await
        ),
        StanzaErrorCondition::Forbidden
    );
}

#[tokio::test]
async fn a_full_archive_refuses_the_message_with_resource_constraint() {
    let size = CHAT.len() as u64 + 200;
    let w = world_with(Settings {
        quota: ArchiveQuota { max_bytes: size },
        ..Settings::default()
    })
    .await;
    let from_carol = CHAT.replace("alice@localhost/desk", "carol@localhost/x");
    w.send("carol@localhost/x", "bob@localhost", &from_carol)
        .await;
    let (verdict, _) = w
        .at(
            RoutingPoint::ToBare,
            "alice@localhost/desk",
            "bob@localhost",
            CHAT,
        )
        .await;
    let Verdict::Reject(rejection) = verdict else {
        panic!("refused: {verdict:?}");
    };
    assert_eq!(
        rejection.condition,
        StanzaErrorCondition::ResourceConstraint
    );
    let text = rejection.application.as_ref().map(Element::text);
    assert_eq!(
        text.as_deref(),
        Some("the recipient's message archive is full; the message was not delivered")
    );
    let reply = rejection
        .reply_to(&Stanza::try_from(el(CHAT)).unwrap())
        .unwrap();
    let error = reply.get_child("error", NS_CLIENT).unwrap();
    assert_eq!(error.attr("type"), Some("wait"));
    let children: Vec<&str> = error.children().map(Element::name).collect();
    assert_eq!(children, ["resource-constraint", "text"]);
}

/// Alice's archive: five messages with bob (ms 1001..=1005), returned ids.
async fn five(w: &World) -> Vec<String> {
    for n in 0..5 {
        w.send(
            "bob@localhost/phone",
            "alice@localhost",
            &format!("<message xmlns='jabber:client' type='chat' to='alice@localhost'><body>{n}</body></message>"),
        )
        .await;
    }
    w.archive("alice@localhost")
        .await
        .iter()
        .map(|m| m.id.to_string())
        .collect()
}

/// The result ids and bodies queued for a session, and the fin's answer.
fn results(rx: &mut SessionReceiver) -> Vec<(String, String)> {
    drain(rx)
        .iter()
        .map(|message| {
            let result = message.get_child("result", NS_MAM).unwrap();
            let forwarded = result.get_child("forwarded", query::NS_FORWARD).unwrap();
            assert!(
                forwarded
                    .get_child("delay", starling_stanza::NS_DELAY)
                    .is_some()
            );
            let body = forwarded
                .get_child("message", NS_CLIENT)
                .and_then(|m| m.get_child("body", NS_CLIENT))
                .map(Element::text)
                .unwrap_or_default();
            (result.attr("id").unwrap().to_owned(), body)
        })
        .collect()
}

fn ids_of(results: &[(String, String)]) -> Vec<&str> {
    results.iter().map(|(id, _)| id.as_str()).collect()
}

#[tokio::test]
async fn queries_page_both_ways_and_flip() {
    let w = world().await;
    let ids = five(&w).await;
    let (_alice, mut rx) = w.connect("alice@localhost/desk");
    let ask = |rsm: &str, extra: &str| {
        format!(
            "<query xmlns='urn:xmpp:mam:2' queryid='q'><set xmlns='http://jabber.org/protocol/rsm'>{rsm}</set>{extra}</query>"
        )
    };
    let fin = w
        .iq(
            "alice@localhost/desk",
            None,
            IqType::Set,
            &ask("<max>2</max>", ""),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ids_of(&results(&mut rx)), [&ids[0], &ids[1]]);
    assert_eq!(
        fin,
        el(&format!(
            "<fin xmlns='urn:xmpp:mam:2'><set xmlns='http://jabber.org/protocol/rsm'><first>{}</first><last>{}</last><count>5</count></set></fin>",
            ids[0], ids[1]
        ))
    );
    let fin = w
        .iq(
            "alice@localhost/desk",
            None,
            IqType::Set,
            &ask(&format!("<max>10</max><after>{}</after>", ids[1]), ""),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ids_of(&results(&mut rx)), [&ids[2], &ids[3], &ids[4]]);
    assert_eq!(fin.attr("complete"), Some("true"));
    // The last page, then the one before it, flipped.
    w.iq(
        "alice@localhost/desk",
        None,
        IqType::Set,
        &ask("<max>2</max><before/>", ""),
    )
    .await
    .unwrap();
    assert_eq!(ids_of(&results(&mut rx)), [&ids[3], &ids[4]]);
    let fin = w
        .iq(
            "alice@localhost/desk",
            None,
            IqType::Set,
            &ask(
                &format!("<max>2</max><before>{}</before>", ids[3]),
                "<flip-page/>",
            ),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        ids_of(&results(&mut rx)),
        [&ids[2], &ids[1]],
        "newest first"
    );
    let set = fin.get_child("set", query::NS_RSM).unwrap();
    assert_eq!(
        set.get_child("first", query::NS_RSM).unwrap().text(),
        ids[1],
        "first stays the oldest"
    );
    assert_eq!(fin.attr("complete"), None, "an older message remains");
}

#[tokio::test]
async fn queries_by_ids_and_counts_and_errors() {
    let w = world().await;
    let ids = five(&w).await;
    let (_alice, mut rx) = w.connect("alice@localhost/desk");
    let form = |fields: &str| {
        format!(
            "<query xmlns='urn:xmpp:mam:2'><x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'><value>urn:xmpp:mam:2</value></field>{fields}</x></query>"
        )
    };
    let fin = w
        .iq(
            "alice@localhost/desk",
            None,
            IqType::Set,
            &form(&format!(
                "<field var='ids'><value>{}</value><value>{}</value></field>",
                ids[3], ids[1]
            )),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ids_of(&results(&mut rx)), [&ids[1], &ids[3]]);
    assert_eq!(fin.attr("complete"), Some("true"));
    w.iq("alice@localhost/desk", None, IqType::Set, &form(&format!("<field var='after-id'><value>{}</value></field><field var='before-id'><value>{}</value></field>", ids[0], ids[3])))
        .await
        .unwrap();
    assert_eq!(ids_of(&results(&mut rx)), [&ids[1], &ids[2]]);
    // The count alone.
    let fin = w
        .iq("alice@localhost/desk", None, IqType::Set, "<query xmlns='urn:xmpp:mam:2'><x xmlns='jabber:x:data' type='submit'><field var='with'><value>bob@localhost</value></field></x><set xmlns='http://jabber.org/protocol/rsm'><max>0</max></set></query>")
        .await
        .unwrap()
        .unwrap();
    assert!(drain(&mut rx).is_empty());
    assert_eq!(
        fin.get_child("set", query::NS_RSM)
            .and_then(|s| s.get_child("count", query::NS_RSM))
            .map(Element::text),
        Some("5".to_owned())
    );
    // Unknown ids, in the form or in RSM.
    let unknown = id_at(1003, [9; 10]).to_string();
    for payload in [
        form(&format!(
            "<field var='ids'><value>{}</value><value>{unknown}</value></field>",
            ids[0]
        )),
        form(&format!(
            "<field var='after-id'><value>{unknown}</value></field>"
        )),
        format!(
            "<query xmlns='urn:xmpp:mam:2'><set xmlns='http://jabber.org/protocol/rsm'><after>{unknown}</after></set></query>"
        ),
        format!(
            "<query xmlns='urn:xmpp:mam:2'><set xmlns='http://jabber.org/protocol/rsm'><before>{unknown}</before></set></query>"
        ),
    ] {
        assert_eq!(
            condition(
                w.iq("alice@localhost/desk", None, IqType::Set, &payload)
                    .await
            ),
            StanzaErrorCondition::ItemNotFound,
            "{payload}"
        );
    }
    assert!(drain(&mut rx).is_empty(), "no results before an error");
    // Another account's archive, and the form and metadata.
    assert_eq!(
        condition(
            w.iq(
                "bob@localhost/phone",
                Some("alice@localhost"),
                IqType::Set,
                "<query xmlns='urn:xmpp:mam:2'/>"
            )
            .await
        ),
        StanzaErrorCondition::Forbidden
    );
    let form = w
        .iq(
            "alice@localhost/desk",
            None,
            IqType::Get,
            "<query xmlns='urn:xmpp:mam:2'/>",
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(form, query::form());
    let metadata = w
        .iq(
            "alice@localhost/desk",
            None,
            IqType::Get,
            "<metadata xmlns='urn:xmpp:mam:2'/>",
        )
        .await
        .unwrap()
        .unwrap();
    let id_of = |name: &str| {
        metadata
            .get_child(name, NS_MAM)
            .and_then(|e| e.attr("id"))
            .map(str::to_owned)
    };
    assert_eq!(
        (id_of("start"), id_of("end")),
        (Some(ids[0].clone()), Some(ids[4].clone()))
    );
    assert_eq!(
        w.iq(
            "carol@localhost/x",
            None,
            IqType::Get,
            "<metadata xmlns='urn:xmpp:mam:2'/>"
        )
        .await,
        Ok(Some(el("<metadata xmlns='urn:xmpp:mam:2'/>"))),
        "an empty archive has empty metadata"
    );
}

#[tokio::test]
async fn a_page_is_capped_by_policy_and_by_the_queue() {
    let w = world_with(Settings {
        max_page: 3,
        ..Settings::default()
    })
    .await;
    let ids = five(&w).await;
    let (_alice, mut rx) = w.connect("alice@localhost/desk");
    let fin = w
        .iq("alice@localhost/desk", None, IqType::Set, "<query xmlns='urn:xmpp:mam:2'><set xmlns='http://jabber.org/protocol/rsm'><max>50</max></set></query>")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ids_of(&results(&mut rx)), [&ids[0], &ids[1], &ids[2]]);
    assert_eq!(fin.attr("complete"), None);
    // A queue with room for only two results plus the headroom.
    let registry = RegistryConfig {
        queue_depth: QUERY_QUEUE_HEADROOM + 2,
        ..RegistryConfig::default()
    };
    let small = Registry::new(["localhost".to_owned()], registry);
    let (handle, mut small_rx) =
        small.new_session("alice@localhost/small".parse().unwrap(), Uuid::now_v7());
    small.bind(&handle).unwrap();
    let module = Arc::new(Mam::new(
        w.store.clone(),
        Arc::new(small),
        Settings::default(),
        ids_source_after(2000),
    ));
    let set = ModuleSet::build(vec![module]).unwrap();
    let stanza = Stanza::try_from(el(
        "<iq xmlns='jabber:client' type='set' id='q'><query xmlns='urn:xmpp:mam:2'/></iq>",
    ))
    .unwrap();
    let from: FullJid = "alice@localhost/small".parse().unwrap();
    let account = from.to_bare();
    let fin = set
        .iq_handler(AddressForm::Bare, IqType::Set, NS_MAM)
        .unwrap()
        .handle(IqRequest {
            from: &from,
            to: IqTarget::Account {
                jid: &account,
                is_own: true,
            },
            iq_type: IqType::Set,
            payload: stanza.element().children().next().unwrap(),
            stanza: &stanza,
        })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ids_of(&results(&mut small_rx)), [&ids[0], &ids[1]]);
    assert_eq!(fin.attr("complete"), None);
}

fn ids_source_after(ms: u64) -> IdSource {
    let mut next = ms;
    Box::new(move || {
        next += 1;
        id_at(next, [0; 10])
    })
}

#[tokio::test]
async fn retention_sweeps_the_oldest() {
    let w = world_with(Settings {
        max_messages: 2,
        sweep_batch_rows: 1,
        ..Settings::default()
    })
    .await;
    let ids = five(&w).await;
    assert_eq!(
        w.module.sweep(10_000).await,
        Ok(3 + 3),
        "alice's and bob's oldest three"
    );
    let kept: Vec<String> = w
        .archive("alice@localhost")
        .await
        .iter()
        .map(|m| m.id.to_string())
        .collect();
    assert_eq!(kept, ids[3..]);
    let by_age = world_with(Settings {
        max_age_days: 1,
        max_messages: 0,
        ..Settings::default()
    })
    .await;
    five(&by_age).await;
    assert_eq!(
        by_age.module.sweep(86_400_000 + 1005).await,
        Ok(4),
        "two each side"
    );
    assert_eq!(by_age.archive("alice@localhost").await.len(), 3);
}

#[tokio::test]
async fn without_waiting_the_message_goes_on_at_once_and_is_committed_next() {
    let w = world_with(Settings {
        wait_for_commit: false,
        ..Settings::default()
    })
    .await;
    let delivered = w.send("alice@localhost/desk", "bob@localhost", CHAT).await;
    let (_, id) = stanza_ids(&delivered)
        .pop()
        .expect("the recipient's id is there at once");
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let bob = w.archive("bob@localhost").await;
        if let Some(message) = bob.first() {
            assert_eq!(message.id.to_string(), id);
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "never committed");
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    assert_eq!(w.archive("alice@localhost").await.len(), 1);
}

#[tokio::test]
async fn an_archived_message_for_nobody_online_is_kept_once_as_its_archive_row() {
    let w = world().await;
    let delivered = w.send("alice@localhost/desk", "bob@localhost", CHAT).await;
    let (verdict, _) = w
        .at(
            RoutingPoint::DeliveryFailed,
            "alice@localhost/desk",
            "bob@localhost",
            &serialize(&delivered),
        )
        .await;
    assert_eq!(verdict, Verdict::Handled, "the router stores no copy");
    let page = w
        .store
        .offline_page(&bare("bob@localhost"), 10)
        .await
        .unwrap();
    assert_eq!(page.len(), 1);
    assert_eq!(
        page[0].message.stanza.parse::<Element>().unwrap(),
        delivered
    );
    // A message that was not archived is left to the router's offline copy.
    let hinted = "<message xmlns='jabber:client' type='chat' to='bob@localhost'><body>x</body><no-permanent-store xmlns='urn:xmpp:hints'/></message>";
    let (verdict, _) = w
        .at(
            RoutingPoint::DeliveryFailed,
            "alice@localhost/desk",
            "bob@localhost",
            hinted,
        )
        .await;
    assert_eq!(verdict, Verdict::Continue);
    // And so is one past the offline quota.
    let full = world_with(Settings {
        offline_quota: OfflineQuota::messages(1),
        ..Settings::default()
    })
    .await;
    for expected in [Verdict::Handled, Verdict::Continue] {
        let delivered = full
            .send("alice@localhost/desk", "bob@localhost", CHAT)
            .await;
        let (verdict, _) = full
            .at(
                RoutingPoint::DeliveryFailed,
                "alice@localhost/desk",
                "bob@localhost",
                &serialize(&delivered),
            )
            .await;
        assert_eq!(verdict, expected);
    }
}
