//! XEP-0054 vcard-temp: storage round trips, and the module driven through a `ModuleSet` over
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

const VCARD: &str = "<vCard xmlns='vcard-temp'><FN>Peter Saint-Andre</FN>\
    <N><FAMILY>Saint-Andre</FAMILY><GIVEN>Peter</GIVEN></N>\
    <PHOTO><TYPE>image/png</TYPE><BINVAL>iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==</BINVAL></PHOTO>\
    <X-UNKNOWN xmlns='urn:example'>kept</X-UNKNOWN><DESC>\u{3a8} &amp; more</DESC></vCard>";

#[test]
fn a_vcard_survives_storage_exactly() {
    let vcard = el(VCARD);
    let bytes = serialize(&vcard).unwrap();
    assert_eq!(deserialize(&bytes).unwrap(), vcard);
    assert!(deserialize(b"<vCard xmlns='vcard-temp'>").is_none());
}

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
    let module = Arc::new(VCard::new(store.clone(), max_bytes));
    World {
        store,
        set: ModuleSet::build(vec![module]).unwrap(),
    }
}

impl World {
    /// `user` (a localpart) sends the iq `xml` to the bare JID `to`, or with no `to`.
    async fn iq(&self, user: &str, to: Option<&str>, xml: &str) -> IqAnswer {
        let element = el(xml);
        let iq_type = match element.attr("type") {
            Some("get") => IqType::Get,
            _ => IqType::Set,
        };
        let stanza = Stanza::try_from(element).unwrap();
        let from: FullJid = format!("{user}@localhost/desk").parse().unwrap();
        let account: BareJid = match to {
            Some(to) => to.parse().unwrap(),
            None => from.to_bare(),
        };
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

fn set(vcard: &str) -> String {
    format!("<iq xmlns='jabber:client' type='set' id='v2'>{vcard}</iq>")
}

const GET: &str = "<iq xmlns='jabber:client' type='get' id='v1'><vCard xmlns='vcard-temp'/></iq>";

fn error(answer: IqAnswer) -> StanzaErrorCondition {
    answer.unwrap_err().condition
}

#[tokio::test]
async fn a_published_vcard_comes_back_exactly_to_its_owner_and_to_others() {
    let w = world(DEFAULT_MAX_BYTES).await;
    assert_eq!(w.set.names(), ["vcard"]);
    assert!(w.set.server_info().features.contains(NS_VCARD));
    assert_eq!(w.iq("alice", None, &set(VCARD)).await, Ok(None));
    assert_eq!(w.iq("alice", None, GET).await, Ok(Some(el(VCARD))));
    assert_eq!(
        w.iq("alice", Some("alice@localhost"), GET).await,
        Ok(Some(el(VCARD)))
    );
    assert_eq!(
        w.iq("bob", Some("alice@localhost"), GET).await,
        Ok(Some(el(VCARD)))
    );
    // Stored in the documented layout.
    let alice: BareJid = "alice@localhost".parse().unwrap();
    let stored = w.store.data_list(&alice, STORE).await.unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].0, KEY);
    assert_eq!(deserialize(&stored[0].1).unwrap(), el(VCARD));
    // A new set replaces the whole vCard (§3.2: no partial updates).
    let short = "<vCard xmlns='vcard-temp'><FN>Peter</FN></vCard>";
    assert_eq!(
        w.iq("alice", Some("alice@localhost"), &set(short)).await,
        Ok(None)
    );
    assert_eq!(
        w.iq("bob", Some("alice@localhost"), GET).await,
        Ok(Some(el(short)))
    );
}

#[tokio::test]
async fn a_missing_vcard_is_item_not_found_for_its_owner_and_service_unavailable_for_others() {
    let w = world(DEFAULT_MAX_BYTES).await;
    assert_eq!(
        error(w.iq("alice", None, GET).await),
        StanzaErrorCondition::ItemNotFound
    );
    assert_eq!(
        error(w.iq("bob", Some("alice@localhost"), GET).await),
        StanzaErrorCondition::ServiceUnavailable
    );
}

#[tokio::test]
async fn nobody_sets_another_users_vcard() {
    let w = world(DEFAULT_MAX_BYTES).await;
    assert_eq!(
        error(w.iq("bob", Some("alice@localhost"), &set(VCARD)).await),
        StanzaErrorCondition::Forbidden
    );
    let alice: BareJid = "alice@localhost".parse().unwrap();
    assert!(w.store.data_list(&alice, STORE).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_payload_that_is_not_a_vcard_is_a_bad_request() {
    let w = world(DEFAULT_MAX_BYTES).await;
    assert_eq!(
        error(
            w.iq("alice", None, &set("<card xmlns='vcard-temp'/>"))
                .await
        ),
        StanzaErrorCondition::BadRequest
    );
    let get = "<iq xmlns='jabber:client' type='get' id='v1'><query xmlns='vcard-temp'/></iq>";
    assert_eq!(
        error(w.iq("alice", None, get).await),
        StanzaErrorCondition::BadRequest
    );
}

#[tokio::test]
async fn a_vcard_over_the_limit_is_a_policy_violation_and_keeps_the_old_one() {
    let short = "<vCard xmlns='vcard-temp'><FN>Peter</FN></vCard>";
    let w = world(serialize(&el(short)).unwrap().len()).await;
    assert_eq!(w.iq("alice", None, &set(short)).await, Ok(None));
    assert_eq!(
        error(w.iq("alice", None, &set(VCARD)).await),
        StanzaErrorCondition::PolicyViolation
    );
    assert_eq!(w.iq("alice", None, GET).await, Ok(Some(el(short))));
}
