//! Feature modules' per-account data ([`starling_storage::AccountData::module_data`]) in a
//! XEP-0227 `<user/>`.
//!
//! Three stores have a layout the XEP or its neighbours give an element for, and go out as
//! that element so other servers can read them:
//!
//! | store | key | value | element in `<user/>` |
//! |---|---|---|---|
//! | `vcard` (XEP-0054) | `vcard` | the `<vCard xmlns='vcard-temp'/>` as XML | that `<vCard/>` (XEP-0227 §4 "vCards") |
//! | `private` (XEP-0049) | `{name}:{namespace}` | the fragment as XML | a child of one `<query xmlns='jabber:iq:private'/>` (XEP-0227 §4 "Private XML Storage") |
//! | `blocklist` (XEP-0191) | a normalised JID | empty | an `<item jid='…'/>` of one `<blocklist xmlns='urn:xmpp:blocking'/>` |
//!
//! Neither XEP-0227 nor Prosody's `mod_storage_xep0227` has an element for a block list
//! (Prosody's XEP-0227 storage handles accounts, roster, vCard, private XML, PEP and MAM
//! only), so the list travels as XEP-0191's own `<blocklist/>` payload, the element a
//! client receives for a block-list get.
//!
//! Every other entry, and any entry of those three stores that the table's element could not
//! carry byte for byte (a value that is not XML, or XML a re-serialization would change, a key
//! that does not match the element), goes out as
//! `<module-data xmlns='urn:starling:pie:module-data:0' store='…' key='…'>base64</module-data>`
//! ([`NS_MODULE_DATA`]), so a backup and restore gives every module back exactly the bytes
//! it stored. Other servers skip that element as XEP-0227 §4 asks of unknown data.
//!
//! Values written as elements are compared with minidom's serialization of their parse, which
//! is how the vCard and private modules store them; reading takes each element and serializes
//! it the same way, so the round trip is exact.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use minidom::Element;
use starling_storage::AccountDataEntry;

use super::{indented, name, serialize};
use crate::BackupError;

/// The vCard module's store (XEP-0054).
pub const STORE_VCARD: &str = "vcard";
/// The one key of [`STORE_VCARD`].
pub const KEY_VCARD: &str = "vcard";
/// The private XML storage module's store (XEP-0049), keyed `{name}:{namespace}`.
pub const STORE_PRIVATE: &str = "private";
/// The blocking module's store (XEP-0191), keyed by normalised JID with empty values.
pub const STORE_BLOCKLIST: &str = "blocklist";
pub use starling_stanza::{NS_PRIVATE, NS_VCARD};
/// The blocking command (XEP-0191).
pub const NS_BLOCKING: &str = "urn:xmpp:blocking";
/// Starling's element for module data the XEP has no element for: one `<module-data/>` per
/// entry, with `store` and `key` attributes and the value in base64 (RFC 4648 §4, padded).
/// The trailing `0` is the version of this layout.
pub const NS_MODULE_DATA: &str = "urn:starling:pie:module-data:0";

/// The elements carrying `entries` in a `<user/>`: the vCard, the private XML query, the block
/// list and one `<module-data/>` per other entry, in that order, each sorted by key. An entry
/// whose store or key XML cannot hold is left out with a warning.
pub(crate) fn write(
    entries: &[AccountDataEntry],
    at: &str,
    warnings: &mut Vec<String>,
) -> Vec<Element> {
    let mut entries: Vec<&AccountDataEntry> = entries.iter().collect();
    entries.sort_by(|a, b| (&a.store, &a.key).cmp(&(&b.store, &b.key)));
    let mut vcard = None;
    let mut private = Vec::new();
    let mut blocked = Vec::new();
    let mut opaque = Vec::new();
    for entry in entries {
        let placed = match entry.store.as_str() {
            STORE_VCARD if entry.key == KEY_VCARD => {
                match exact_element(&entry.value).filter(|e| e.is("vCard", NS_VCARD)) {
                    Some(element) => {
                        vcard = Some(element);
                        true
                    }
                    None => false,
                }
            }
            STORE_PRIVATE => match exact_element(&entry.value)
                .filter(|element| private_key(element) == entry.key)
            {
                Some(element) => {
                    private.push(element);
                    true
                }
                None => false,
            },
            STORE_BLOCKLIST
                if entry.value.is_empty()
                    && normalised_jid(&entry.key).as_deref() == Some(entry.key.as_str()) =>
            {
                blocked.push(
                    Element::builder("item", NS_BLOCKING)
                        .attr(name("jid"), entry.key.as_str())
                        .build(),
                );
                true
            }
            _ => false,
        };
        if placed {
            continue;
        }
        let legal = |text: &str| starling_stanza::strip_illegal_xml_chars(text).1 == 0;
        if legal(&entry.store) && legal(&entry.key) {
            opaque.push(
                Element::builder("module-data", NS_MODULE_DATA)
                    .attr(name("store"), entry.store.as_str())
                    .attr(name("key"), entry.key.as_str())
                    .append(BASE64.encode(&entry.value))
                    .build(),
            );
        } else {
            warnings.push(format!(
                "{at}: module data of store {:?} under key {:?} was skipped, its name holds characters XML does not allow",
                entry.store, entry.key
            ));
        }
    }
    let mut elements: Vec<Element> = vcard.into_iter().collect();
    if !private.is_empty() {
        elements.push(indented(Element::bare("query", NS_PRIVATE), private, 3));
    }
    if !blocked.is_empty() {
        elements.push(indented(
            Element::bare("blocklist", NS_BLOCKING),
            blocked,
            3,
        ));
    }
    elements.extend(opaque);
    elements
}

/// Reads a `<vCard xmlns='vcard-temp'/>` of a `<user/>`.
pub(crate) fn read_vcard(element: &Element, entries: &mut Vec<AccountDataEntry>) {
    entries.push(AccountDataEntry {
        store: STORE_VCARD.to_owned(),
        key: KEY_VCARD.to_owned(),
        value: serialize(element).into_bytes(),
    });
}

/// Reads a `<query xmlns='jabber:iq:private'/>` of a `<user/>`: each child element is one
/// fragment.
pub(crate) fn read_private(query: &Element, entries: &mut Vec<AccountDataEntry>) {
    for fragment in query.children() {
        entries.push(AccountDataEntry {
            store: STORE_PRIVATE.to_owned(),
            key: private_key(fragment),
            value: serialize(fragment).into_bytes(),
        });
    }
}

/// Reads a `<blocklist xmlns='urn:xmpp:blocking'/>` of a `<user/>`. An item whose `jid` is not
/// a JID is skipped with a warning (nobody can send from it); a JID listed twice counts once.
pub(crate) fn read_blocklist(
    list: &Element,
    at: &str,
    entries: &mut Vec<AccountDataEntry>,
    warnings: &mut Vec<String>,
) {
    let mut seen = std::collections::BTreeSet::new();
    for item in list.children() {
        if !item.is("item", NS_BLOCKING) {
            warnings.push(format!(
                "{at}, block list: skipped <{} xmlns='{}'>, which is not an <item/>",
                item.name(),
                item.ns()
            ));
            continue;
        }
        let raw = item.attr("jid").unwrap_or_default();
        let Some(jid) = normalised_jid(raw) else {
            warnings.push(format!(
                "{at}, block list: skipped the item {raw:?}, not a JID"
            ));
            continue;
        };
        if seen.insert(jid.clone()) {
            entries.push(AccountDataEntry {
                store: STORE_BLOCKLIST.to_owned(),
                key: jid,
                value: Vec::new(),
            });
        }
    }
}

/// Reads a `<module-data xmlns='urn:starling:pie:module-data:0'/>` of a `<user/>`.
pub(crate) fn read_opaque(
    element: &Element,
    at: &str,
    entries: &mut Vec<AccountDataEntry>,
) -> Result<(), BackupError> {
    let attr = |attr: &'static str| {
        element
            .attr(attr)
            .filter(|value| !value.is_empty() || attr == "key")
            .ok_or_else(|| BackupError::invalid(at, format!("a <module-data/> has no '{attr}'")))
    };
    let store = attr("store")?.to_owned();
    let key = attr("key")?.to_owned();
    let value = BASE64.decode(element.text().trim()).map_err(|err| {
        BackupError::invalid(
            format!("{at}, module data {store:?} key {key:?}"),
            format!("the value is not base64: {err}"),
        )
    })?;
    entries.push(AccountDataEntry { store, key, value });
    Ok(())
}

/// Sorts `entries` as `PortableStore::export_host` does (store, then key) and refuses a
/// (store, key) pair that came twice, which the store would refuse on import.
pub(crate) fn finish(entries: &mut [AccountDataEntry], at: &str) -> Result<(), BackupError> {
    entries.sort_by(|a, b| (&a.store, &a.key).cmp(&(&b.store, &b.key)));
    for pair in entries.windows(2) {
        if let [a, b] = pair
            && (&a.store, &a.key) == (&b.store, &b.key)
        {
            return Err(BackupError::invalid(
                at,
                format!(
                    "module data of store {:?} under key {:?} appears twice",
                    a.store, a.key
                ),
            ));
        }
    }
    Ok(())
}

/// The private storage key of a fragment: `{name}:{namespace}`, Prosody's `mod_private` form.
pub(crate) fn private_key(fragment: &Element) -> String {
    format!("{}:{}", fragment.name(), fragment.ns())
}

/// `text` as the blocking module keeps a JID (`starling_stanza::parse_jid`'s normal form), or
/// `None` when it is not a JID.
pub(crate) fn normalised_jid(text: &str) -> Option<String> {
    starling_stanza::parse_jid(text)
        .ok()
        .map(|jid| jid.as_str().to_owned())
}

/// The element `value` holds, when a backup can carry it exactly: written inside a `<user/>`
/// as [`write()`] writes it and read back as [`super::read()`] reads it, it must serialize to
/// the very bytes of `value`. (Parsing and serializing on its own is not enough: minidom
/// writes some namespace prefixes differently once the element sits inside a document.)
fn exact_element(value: &[u8]) -> Option<Element> {
    let text = std::str::from_utf8(value).ok()?;
    let element: Element = text.parse().ok()?;
    let mut user = Element::bare("user", super::NS_PIE);
    user.append_child(element.clone());
    let mut user = super::parse_bounded(serialize(&user).as_bytes()).ok()?;
    let mut nodes = user.take_nodes().into_iter();
    let (Some(minidom::Node::Element(read_back)), None) = (nodes.next(), nodes.next()) else {
        return None;
    };
    (serialize(&read_back) == text).then_some(element)
}

#[cfg(test)]
mod tests;
