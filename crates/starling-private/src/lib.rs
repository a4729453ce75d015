//! XEP-0049 private XML storage (v1.2), a module on the extension interface.
//!
//! A user stores arbitrary XML fragments on the server with an iq set of
//! `<query xmlns='jabber:iq:private'/>` and reads them back with an iq get naming the fragment's
//! root element (§2). Only the user's own account is served: a request with no `to`, or to the
//! user's own bare JID. What the module answers, and the section behind each error:
//! - another account's data: `forbidden` (§2.3 allows `forbidden` or `service-unavailable` and
//!   calls the former preferable; §3 lists `forbidden`; §4 says nobody but the user may touch it);
//! - a query with no child element: `not-acceptable` (§2.3 MUST; the later SHOULD of "Bad Format"
//!   names no RFC 6120 stanza condition, and the §2.3 example answers `not-acceptable`);
//! - a child in a reserved namespace (`jabber:*`, `http://jabber.org/*`, `vcard-temp`, §2.3),
//!   which includes a child without a namespace of its own (it inherits `jabber:iq:private`):
//!   `not-acceptable`, the optional refusal §2.3 describes, so clients cannot shadow protocols
//!   the server answers itself (a vCard belongs to XEP-0054);
//! - a payload that is not `<query/>`, or a set naming the same element twice: `bad-request`;
//! - a set that would take the account past the operator's byte limit: `policy-violation`
//!   (RFC 6120 §8.3.3.12, a local service policy; the XEP and Prosody set no limit; the same
//!   condition `starling-blocking` uses for its limit).
//!
//! A get answers each child it names with the stored element, or with the empty element asked
//! for when nothing is stored (as Prosody does). A set stores each child; a child with no
//! attributes and no content removes what was stored under its name (reading it back gives the
//! same empty element). Several children in one set are stored together in one transaction
//! (§2.3: a set MAY carry several elements of one namespace).
//!
//! **Storage layout** (backup and import code read it): module store [`STORE`] (`"private"`),
//! key `"{name}:{namespace}"` of the fragment's root element (Prosody's key form, [`key`]),
//! value the fragment serialized as UTF-8 XML by minidom (with its `xmlns` declaration).
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

use std::sync::Arc;

use jid::BareJid;
use minidom::Element;
use starling_modules::{
    AddressForm, BoxFuture, DiscoTarget, IqAnswer, IqHandler, IqRequest, IqTarget, Module,
    Registrar, Rejection,
};
use starling_stanza::{IqType, StanzaErrorCondition};
use starling_storage::{AccountDataStore, DataChange, DataQuota};

/// The private storage namespace.
pub use starling_stanza::NS_PRIVATE;
/// The module store fragments live in.
pub const STORE: &str = "private";
/// Default for the bytes (keys plus values) one account may keep: 1 MiB.
pub const DEFAULT_MAX_BYTES: usize = 1 << 20;

/// The storage key of a fragment whose root element is `name` in `namespace`.
pub fn key(name: &str, namespace: &str) -> String {
    format!("{name}:{namespace}")
}

/// Whether §2.3 reserves `namespace` (`jabber:*`, `http://jabber.org/*`, `vcard-temp`); the
/// empty namespace is not a proper one either.
pub fn is_reserved(namespace: &str) -> bool {
    namespace.is_empty()
        || namespace.starts_with("jabber:")
        || namespace.starts_with("http://jabber.org/")
        || namespace == starling_stanza::NS_VCARD
}

/// One fragment a request names: its root element and storage key.
#[derive(Debug)]
struct Fragment<'a> {
    element: &'a Element,
    key: String,
}

/// The fragments of a `<query/>`, checked as §2.3 requires.
fn fragments(query: &Element) -> Result<Vec<Fragment<'_>>, Rejection> {
    if query.name() != "query" {
        return Err(StanzaErrorCondition::BadRequest.into());
    }
    let mut out: Vec<Fragment<'_>> = Vec::new();
    for element in query.children() {
        let namespace = element.ns();
        if is_reserved(&namespace) {
            return Err(StanzaErrorCondition::NotAcceptable.into());
        }
        let key = key(element.name(), &namespace);
        if out.iter().any(|other| other.key == key) {
            // Two fragments cannot share one key.
            return Err(StanzaErrorCondition::BadRequest.into());
        }
        out.push(Fragment { element, key });
    }
    if out.is_empty() {
        return Err(StanzaErrorCondition::NotAcceptable.into());
    }
    Ok(out)
}

/// Whether storing `element` would keep nothing beyond its name: no attributes, no content.
fn is_empty(element: &Element) -> bool {
    element.attrs().is_empty() && element.nodes().next().is_none()
}

/// `element` without attributes or content.
fn bare(element: &Element) -> Element {
    Element::builder(element.name(), element.ns()).build()
}

/// The fragment serialized for storage.
pub fn serialize(element: &Element) -> Option<Vec<u8>> {
    let mut bytes = Vec::new();
    element.write_to(&mut bytes).ok()?;
    Some(bytes)
}

/// A stored fragment read back; `None` for bytes that are not one UTF-8 XML element.
pub fn deserialize(bytes: &[u8]) -> Option<Element> {
    std::str::from_utf8(bytes).ok()?.parse().ok()
}

/// The module. `S` is the server's store.
pub struct Private<S> {
    store: S,
    max_bytes: usize,
}

impl<S: AccountDataStore> Private<S> {
    /// The module over `store`; an account may keep at most `max_bytes` (keys plus values).
    pub fn new(store: S, max_bytes: usize) -> Self {
        Self { store, max_bytes }
    }

    async fn answer(&self, request: IqRequest<'_>) -> IqAnswer {
        let IqTarget::Account {
            jid: account,
            is_own: true,
        } = request.to
        else {
            return Err(StanzaErrorCondition::Forbidden.into());
        };
        let fragments = fragments(request.payload)?;
        match request.iq_type {
            IqType::Get => self.get(account, &fragments).await,
            IqType::Set => self.set(account, &fragments).await,
            IqType::Result | IqType::Error => Err(StanzaErrorCondition::BadRequest.into()),
        }
    }

    async fn get(&self, account: &BareJid, fragments: &[Fragment<'_>]) -> IqAnswer {
        let mut query = Element::builder("query", NS_PRIVATE).build();
        for fragment in fragments {
            let stored = match self.store.data_get(account, STORE, &fragment.key).await {
                Ok(stored) => stored,
                Err(err) => {
                    tracing::error!(%account, error = %err, "reading private XML failed");
                    return Err(StanzaErrorCondition::InternalServerError.into());
                }
            };
            let element = match stored {
                None => bare(fragment.element),
                Some(bytes) => deserialize(&bytes).ok_or_else(|| {
                    tracing::error!(%account, key = %fragment.key, "stored private XML does not parse");
                    Rejection::from(StanzaErrorCondition::InternalServerError)
                })?,
            };
            query.append_child(element);
        }
        Ok(Some(query))
    }

    async fn set(&self, account: &BareJid, fragments: &[Fragment<'_>]) -> IqAnswer {
        let mut changes = Vec::with_capacity(fragments.len());
        for fragment in fragments {
            let key = fragment.key.clone();
            if is_empty(fragment.element) {
                changes.push(DataChange::Remove { key });
            } else {
                let value = serialize(fragment.element)
                    .ok_or_else(|| Rejection::from(StanzaErrorCondition::InternalServerError))?;
                changes.push(DataChange::Put { key, value });
            }
        }
        let quota = DataQuota {
            max_keys: usize::MAX,
            max_bytes: self.max_bytes,
        };
        match self.store.data_apply(account, STORE, &changes, quota).await {
            Ok(true) => Ok(None),
            Ok(false) => Err(StanzaErrorCondition::PolicyViolation.into()),
            Err(err) => {
                tracing::error!(%account, error = %err, "storing private XML failed");
                Err(StanzaErrorCondition::InternalServerError.into())
            }
        }
    }
}

impl<S: AccountDataStore> Module for Private<S> {
    fn name(&self) -> &'static str {
        "private"
    }

    fn register(self: Arc<Self>, registrar: &mut Registrar<'_>) {
        registrar.iq_get_set(AddressForm::Bare, NS_PRIVATE, self);
        registrar.disco_feature(DiscoTarget::Server, NS_PRIVATE);
    }
}

impl<S: AccountDataStore> IqHandler for Private<S> {
    fn handle<'a>(&'a self, request: IqRequest<'a>) -> BoxFuture<'a, IqAnswer> {
        Box::pin(self.answer(request))
    }
}

#[cfg(test)]
mod tests;
