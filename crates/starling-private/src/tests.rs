//! XEP-0049 private storage: the pure checks, and the module driven through a `ModuleSet` over
//! an in-memory SQLite store.

use jid::FullJid;
use starling_modules::ModuleSet;
use starling_sasl::StoredCredentials;
use starling_stanza::Stanza;
use starling_storage::{AccountStore as _, SqliteStore};

use super::*;

fn el(xml: &str) -> Element {
    xml.parse().unwrap()
}

fn condition(result: Result<Vec<Fragment<'_>>, Rejection>) -> StanzaErrorCondition {
    result.unwrap_err().condition
}

#[test]
fn keys_take_prosodys_form() {
    assert_eq!(key("exodus", "exodus:prefs"), "exodus:exodus:prefs");
    assert_eq!(
        key("storage", "storage:bookmarks"),
        "storage:storage:bookmarks"
    );
}

#[test]
fn reserved_namespaces_are_those_of_section_2_3() {
    for reserved in [
        "",
        "jabber:iq:private",
        "jabber:client",
        "jabber:x:data",
        "http://jabber.org/protocol/disco#info",
        "vcard-temp",
    ] {
        assert!(is_reserved(reserved), "{reserved}");
    }
    for free in [
        "exodus:prefs",
        "storage:bookmarks",
        "urn:xmpp:x",
        "vcard-temp:x:update",
    ] {
        assert!(!is_reserved(free), "{free}");
    }
}

#[test]
fn a_query_needs_a_child_in_a_proper_namespace() {
    let empty = el("<query xmlns='jabber:iq:private'/>");
    assert_eq!(
        condition(fragments(&empty)),
        StanzaErrorCondition::NotAcceptable
    );
    // Without a namespace of its own the child inherits jabber:iq:private.
    let inherited = el("<query xmlns='jabber:iq:private'><prefs/></query>");
    assert_eq!(
        condition(fragments(&inherited)),
        StanzaErrorCondition::NotAcceptable
    );
    let vcard = el("<query xmlns='jabber:iq:private'><vCard xmlns='vcard-temp'/></query>");
    assert_eq!(
        condition(fragments(&vcard)),
        StanzaErrorCondition::NotAcceptable
    );
    let not_query = el("<storage xmlns='jabber:iq:private'><a xmlns='b'/></storage>");
    assert_eq!(
        condition(fragments(&not_query)),
        StanzaErrorCondition::BadRequest
    );
    let twice = el("<query xmlns='jabber:iq:private'><a xmlns='b'/><a xmlns='b'>x</a></query>");
    assert_eq!(
        condition(fragments(&twice)),
        StanzaErrorCondition::BadRequest
    );
    let two = el("<query xmlns='jabber:iq:private'><a xmlns='b'/><c xmlns='b'/></query>");
    let keys: Vec<String> = fragments(&two)
        .unwrap()
        .into_iter()
        .map(|f| f.key)
        .collect();
    assert_eq!(keys, ["a:b", "c:b"]);
}

#[test]
fn fragments_survive_storage() {
    let fragment = el(
        "<exodus xmlns='exodus:prefs' v='1'><defaultnick>Hamlet</defaultnick><x xmlns='urn:other'>\u{3a8}</x></exodus>",
    );
    let bytes = serialize(&fragment).unwrap();
    assert_eq!(deserialize(&bytes).unwrap(), fragment);
    assert!(deserialize(b"<unclosed xmlns='a'>").is_none());
    assert!(deserialize(&[0xff, 0xfe]).is_none());
}

// The module through a ModuleSet.

const ALICE: &str = "alice@localhost";

struct World {
    store: SqliteStore,
    set: ModuleSet,
}

async fn world(max_bytes: usize) -> World {
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
    let module = Arc::new(Private::new(store.clone(), max_bytes));
    World {
        store,
        set: ModuleSet::build(vec![module]).unwrap(),
    }
}

impl World {
    /// Send `xml` (an iq) from alice's resource to `to` (`None`: no `to`, her own account).
    async fn iq(&self, to: Option<&str>, xml: &str) -> IqAnswer {
        let element = el(xml);
        let iq_type = match element.attr("type") {
            Some("get") => IqType::Get,
            _ => IqType::Set,
        };
        let stanza = Stanza::try_from(element).unwrap();
        let from: FullJid = "alice@localhost/desk".parse().unwrap();
        let account: BareJid = to.unwrap_or(ALICE).parse().unwrap();
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

fn xml(answer: IqAnswer) -> String {
    match answer.unwrap() {
        Some(element) => String::from_utf8(serialize(&element).unwrap()).unwrap(),
        None => "(empty result)".to_owned(),
    }
}

fn error(answer: IqAnswer) -> StanzaErrorCondition {
    answer.unwrap_err().condition
}

const SET_PREFS: &str = "<iq xmlns='jabber:client' type='set' id='1'><query xmlns='jabber:iq:private'>\
    <exodus xmlns='exodus:prefs'><defaultnick>Hamlet</defaultnick></exodus></query></iq>";
const GET_PREFS: &str = "<iq xmlns='jabber:client' type='get' id='2'><query xmlns='jabber:iq:private'>\
    <exodus xmlns='exodus:prefs'/></query></iq>";

#[tokio::test]
async fn stored_data_comes_back_and_is_stored_in_the_documented_layout() {
    let w = world(DEFAULT_MAX_BYTES).await;
    assert_eq!(w.set.names(), ["private"]);
    assert!(w.set.server_info().features.contains(NS_PRIVATE));
    assert_eq!(xml(w.iq(None, SET_PREFS).await), "(empty result)");
    assert_eq!(
        xml(w.iq(None, GET_PREFS).await),
        "<query xmlns='jabber:iq:private'><exodus xmlns='exodus:prefs'><defaultnick>Hamlet</defaultnick></exodus></query>"
    );
    // The same answer to her own bare JID.
    assert_eq!(
        xml(w.iq(Some(ALICE), GET_PREFS).await),
        "<query xmlns='jabber:iq:private'><exodus xmlns='exodus:prefs'><defaultnick>Hamlet</defaultnick></exodus></query>"
    );
    let alice: BareJid = ALICE.parse().unwrap();
    let stored = w.store.data_list(&alice, STORE).await.unwrap();
    assert_eq!(
        stored,
        [(
            "exodus:exodus:prefs".to_owned(),
            b"<exodus xmlns='exodus:prefs'><defaultnick>Hamlet</defaultnick></exodus>".to_vec()
        )]
    );
}

#[tokio::test]
async fn nothing_stored_answers_the_empty_element_asked_for() {
    let w = world(DEFAULT_MAX_BYTES).await;
    assert_eq!(
        xml(w.iq(None, GET_PREFS).await),
        "<query xmlns='jabber:iq:private'><exodus xmlns='exodus:prefs'/></query>"
    );
}

#[tokio::test]
async fn an_empty_set_removes_and_one_set_stores_several() {
    let w = world(DEFAULT_MAX_BYTES).await;
    w.iq(None, SET_PREFS).await.unwrap();
    let both = "<iq xmlns='jabber:client' type='set' id='3'><query xmlns='jabber:iq:private'>\
        <exodus xmlns='exodus:prefs'/><other xmlns='exodus:prefs'>x</other></query></iq>";
    assert_eq!(xml(w.iq(None, both).await), "(empty result)");
    let alice: BareJid = ALICE.parse().unwrap();
    let keys: Vec<String> = w
        .store
        .data_list(&alice, STORE)
        .await
        .unwrap()
        .into_iter()
        .map(|(key, _)| key)
        .collect();
    assert_eq!(keys, ["other:exodus:prefs"]);
    assert_eq!(
        xml(w.iq(None, GET_PREFS).await),
        "<query xmlns='jabber:iq:private'><exodus xmlns='exodus:prefs'/></query>"
    );
}

#[tokio::test]
async fn another_accounts_data_is_forbidden() {
    let w = world(DEFAULT_MAX_BYTES).await;
    assert_eq!(
        error(w.iq(Some("bob@localhost"), SET_PREFS).await),
        StanzaErrorCondition::Forbidden
    );
    assert_eq!(
        error(w.iq(Some("bob@localhost"), GET_PREFS).await),
        StanzaErrorCondition::Forbidden
    );
    let bob: BareJid = "bob@localhost".parse().unwrap();
    assert!(w.store.data_list(&bob, STORE).await.unwrap().is_empty());
}

#[tokio::test]
async fn malformed_and_reserved_requests_are_refused() {
    let w = world(DEFAULT_MAX_BYTES).await;
    let cases = [
        (
            "<iq xmlns='jabber:client' type='get' id='4'><query xmlns='jabber:iq:private'/></iq>",
            StanzaErrorCondition::NotAcceptable,
        ),
        (
            "<iq xmlns='jabber:client' type='set' id='5'><query xmlns='jabber:iq:private'/></iq>",
            StanzaErrorCondition::NotAcceptable,
        ),
        (
            "<iq xmlns='jabber:client' type='set' id='6'><query xmlns='jabber:iq:private'>\
             <vCard xmlns='vcard-temp'><FN>Hamlet</FN></vCard></query></iq>",
            StanzaErrorCondition::NotAcceptable,
        ),
        (
            "<iq xmlns='jabber:client' type='get' id='7'><query xmlns='jabber:iq:private'>\
             <query xmlns='jabber:iq:roster'/></query></iq>",
            StanzaErrorCondition::NotAcceptable,
        ),
        (
            "<iq xmlns='jabber:client' type='get' id='8'><other xmlns='jabber:iq:private'/></iq>",
            StanzaErrorCondition::BadRequest,
        ),
    ];
    for (request, expected) in cases {
        assert_eq!(error(w.iq(None, request).await), expected, "{request}");
    }
}

#[tokio::test]
async fn the_byte_limit_is_a_policy_violation_and_stores_nothing() {
    // Key (19 bytes) and fragment (71 bytes) fit in 100; a second fragment (15 + 69) does not.
    let w = world(100).await;
    w.iq(None, SET_PREFS).await.unwrap();
    let more = "<iq xmlns='jabber:client' type='set' id='9'><query xmlns='jabber:iq:private'>\
        <other xmlns='exodus:prefs'><defaultnick>Hamlet</defaultnick></other></query></iq>";
    assert_eq!(
        error(w.iq(None, more).await),
        StanzaErrorCondition::PolicyViolation
    );
    let alice: BareJid = ALICE.parse().unwrap();
    assert_eq!(w.store.data_list(&alice, STORE).await.unwrap().len(), 1);
    // Shrinking is always allowed.
    let remove = "<iq xmlns='jabber:client' type='set' id='10'><query xmlns='jabber:iq:private'>\
        <exodus xmlns='exodus:prefs'/></query></iq>";
    assert_eq!(xml(w.iq(None, remove).await), "(empty result)");
    assert!(w.store.data_list(&alice, STORE).await.unwrap().is_empty());
}
