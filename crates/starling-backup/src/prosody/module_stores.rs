//! Prosody's `vcard`, `private` and `blocklist` stores, as its 0.12 modules write them, into
//! the module stores Starling's vCard, private XML and blocking modules read.
//!
//! ```text
//! DIR/<host>/vcard/<user>.dat      mod_vcard: the vCard as a stored stanza (`st.preserialize`)
//!                                  return { name = "vCard", attr = { xmlns = "vcard-temp" }, … };
//! DIR/<host>/private/<user>.dat    mod_private (a "map" store, one keyval file per user):
//!                                  return { ["storage:storage:bookmarks"] = { name = "storage", … } };
//! DIR/<host>/blocklist/<user>.dat  mod_blocklist: blocked JIDs (already `jid_prep`ed) to the
//!                                  time they were blocked (`true` when migrated from privacy
//!                                  lists); `[false]` holds the list's own metadata
//!                                  return { [false] = { created = 1700000000 }, ["tybalt@example.org"] = 1700000100 };
//! ```
//!
//! Each becomes entries in [`AccountData::module_data`] in the layout of
//! [`crate::pie::module_data`]: the vCard under `vcard`/`vcard`, each private fragment under
//! `private`/`{name}:{namespace}`, each JID under `blocklist` with an empty value. Stored
//! stanzas are turned into XML by the bounded [`super::stanza`] converter. Data that cannot
//! be carried (a stanza that is not one, a key that is not a JID) is skipped with a warning;
//! a file that is not a Lua table literal stops the import, as for accounts and rosters.

use std::path::Path;

use minidom::Element;
use starling_storage::{AccountData, AccountDataEntry};

use super::read_table;
use super::stanza::{self, Converted};
use crate::BackupError;
use crate::lua::Value;
use crate::pie::module_data::{
    KEY_VCARD, NS_VCARD, STORE_BLOCKLIST, STORE_PRIVATE, STORE_VCARD, normalised_jid, private_key,
};

/// The per-user stores read here, by their Prosody directory names.
pub const STORES: [&str; 3] = ["vcard", "private", "blocklist"];

/// Reads `DIR/<host>/<store>/<user>.dat` of one of [`STORES`] into `data`.
pub(crate) fn read_store(
    store: &str,
    file: &Path,
    data: &mut AccountData,
    warnings: &mut Vec<String>,
) -> Result<(), BackupError> {
    let table = Value::Table(read_table(file)?);
    let at = format!("{}, {store}", data.jid);
    match store {
        "vcard" => read_vcard(&table, &at, &mut data.module_data, warnings),
        "private" => read_private(&table, &at, &mut data.module_data, warnings),
        "blocklist" => read_blocklist(&table, &at, &mut data.module_data, warnings),
        _ => {}
    }
    Ok(())
}

fn read_vcard(
    table: &Value,
    at: &str,
    entries: &mut Vec<AccountDataEntry>,
    warnings: &mut Vec<String>,
) {
    let Some(vcard) = convert(table, NS_VCARD, at, "the vCard", warnings) else {
        return;
    };
    if !vcard.is("vCard", NS_VCARD) {
        warnings.push(format!(
            "{at}: skipped <{} xmlns='{}'>, which is not a vcard-temp <vCard/>",
            vcard.name(),
            vcard.ns()
        ));
        return;
    }
    entries.push(AccountDataEntry {
        store: STORE_VCARD.to_owned(),
        key: KEY_VCARD.to_owned(),
        value: serialize(&vcard),
    });
}

fn read_private(
    table: &Value,
    at: &str,
    entries: &mut Vec<AccountDataEntry>,
    warnings: &mut Vec<String>,
) {
    let Some(fragments) = table.as_table() else {
        return;
    };
    for (key, value) in &fragments.fields {
        let Some(key) = key.as_str() else {
            warnings.push(format!("{at}: skipped an entry whose key is not a string"));
            continue;
        };
        // `mod_private` keys fragments "{name}:{namespace}"; a name has no colon, so the
        // namespace is what follows the first one.
        let namespace = key.split_once(':').map(|(_, ns)| ns).unwrap_or_default();
        let what = format!("the fragment {key:?}");
        let Some(fragment) = convert(value, namespace, at, &what, warnings) else {
            continue;
        };
        let key = private_key(&fragment);
        if entries
            .iter()
            .any(|entry| entry.store == STORE_PRIVATE && entry.key == key)
        {
            warnings.push(format!("{at}: skipped a second fragment {key:?}"));
            continue;
        }
        entries.push(AccountDataEntry {
            store: STORE_PRIVATE.to_owned(),
            key,
            value: serialize(&fragment),
        });
    }
}

fn read_blocklist(
    table: &Value,
    at: &str,
    entries: &mut Vec<AccountDataEntry>,
    warnings: &mut Vec<String>,
) {
    let Some(list) = table.as_table() else {
        return;
    };
    for (key, value) in &list.fields {
        match (key, value) {
            // The list's metadata (created, modified, migrated), not a JID.
            (Value::Bool(false), _) => {}
            // An unblocked JID is removed, never stored as false or nil; skip it if it is.
            (Value::Str(_), Value::Bool(false) | Value::Nil) => {}
            (Value::Str(_), _) => {
                let raw = key.as_str().unwrap_or_default();
                let Some(jid) = normalised_jid(raw) else {
                    warnings.push(format!("{at}: skipped {raw:?}, not a JID"));
                    continue;
                };
                if !entries
                    .iter()
                    .any(|entry| entry.store == STORE_BLOCKLIST && entry.key == jid)
                {
                    entries.push(AccountDataEntry {
                        store: STORE_BLOCKLIST.to_owned(),
                        key: jid,
                        value: Vec::new(),
                    });
                }
            }
            _ => warnings.push(format!("{at}: skipped an entry whose key is not a JID")),
        }
    }
}

/// The element a stored stanza holds, or `None` with a warning.
fn convert(
    value: &Value,
    default_ns: &str,
    at: &str,
    what: &str,
    warnings: &mut Vec<String>,
) -> Option<Element> {
    match stanza::to_element(value, default_ns) {
        Ok(Converted {
            element,
            removed_chars,
            dropped_attributes,
        }) => {
            if removed_chars > 0 {
                warnings.push(format!(
                    "{at}: removed {removed_chars} character(s) not allowed in XML from {what}"
                ));
            }
            if dropped_attributes > 0 {
                warnings.push(format!(
                    "{at}: dropped {dropped_attributes} attribute(s) in other namespaces from {what}"
                ));
            }
            Some(element)
        }
        Err(err) => {
            warnings.push(format!("{at}: skipped {what}: {err}"));
            None
        }
    }
}

/// The element as the vCard and private modules store it: minidom's serialization.
fn serialize(element: &Element) -> Vec<u8> {
    let mut out = Vec::new();
    // Writing to a Vec does not fail for I/O reasons, and the converter checked every name.
    let _ = element.write_to(&mut out);
    out
}

#[cfg(test)]
mod tests;
