//! Prosody's data directory, as its default `internal` storage writes it: accounts, rosters,
//! and the vCard, private XML and block list stores ([`module_stores`] has their layouts).
//!
//! ```text
//! DIR/<host>/accounts/<user>.dat    return { stored_key = "hex", server_key = "hex",
//!                                            salt = "…", iteration_count = 4096 };   (internal_hashed)
//!                                   return { password = "…" };                        (internal_plain)
//! DIR/<host>/roster/<user>.dat      return { [false] = { version = 3, pending = { ["jid"] = true } },
//!                                            ["jid"] = { subscription = "both", ask = "subscribe",
//!                                                        name = "…", groups = { ["Friends"] = true } } };
//! ```
//!
//! Host and user names are escaped in file names: every byte that is not an ASCII letter or
//! digit becomes `%xx` (so `example.org` is `example%2eorg`). The `.dat` files are Lua table
//! literals, read with this crate's own bounded [`lua`] parser, never executed.
//! Prosody's hashed accounts keep one set of SCRAM keys, for the hash its `password_hash`
//! option named (SHA-1 unless changed); the key length tells which. Such an account can then
//! log in here with SCRAM-SHA-1 and PLAIN; its host does not offer SCRAM-SHA-256 until its
//! first PLAIN login stores SCRAM-SHA-256 keys (`starling_sasl::KeyCoverage`). Plaintext
//! accounts get keys for both hashes.
//!
//! Every other store directory of a host (offline messages, archives, PEP, ...) is listed in
//! the warnings, one line each, and not imported; so is a per-user file without an account,
//! and a host directory without accounts (a component's, such as a MUC's rooms) with its
//! stores.

use std::path::{Path, PathBuf};

use jid::{BareJid, DomainPart, NodePart};
use minidom::Element;
use starling_sasl::{ScramHash, ScramKeys, StoredCredentials};
use starling_stanza::NS_CLIENT;
use starling_storage::{AccountData, RosterItem, Subscription};

use crate::lua::{self, Table, Value};

pub mod config;
pub mod module_stores;
pub mod stanza;
use crate::pie::{ImportedHost, name};
use crate::{BackupError, ImportedAccount, Password};

/// Largest `.dat` file read; Prosody's account and roster files are far smaller.
pub const MAX_DAT_BYTES: u64 = 4 * 1024 * 1024;

/// What a Prosody directory held.
#[derive(Debug)]
pub struct ProsodyImport {
    /// Hosts with an `accounts` directory, sorted by name.
    pub hosts: Vec<ImportedHost>,
    /// Data skipped, one line each.
    pub warnings: Vec<String>,
}

/// Reads the accounts, rosters, vCards, private XML and block lists of every host under `dir`,
/// or only of `only_host`.
/// Everything is read and validated before anything is returned.
pub fn read_dir(dir: &Path, only_host: Option<&str>) -> Result<ProsodyImport, BackupError> {
    let only_host = only_host
        .map(|host| {
            DomainPart::new(host)
                .map(|d| d.to_string())
                .map_err(|err| BackupError::invalid(format!("host {host:?}"), err.to_string()))
        })
        .transpose()?;
    let mut warnings = Vec::new();
    let mut hosts = Vec::new();
    for (name, path) in sorted_entries(dir)? {
        if !path.join("accounts").is_dir() {
            skipped_host(&name, &path, only_host.as_deref(), &mut warnings);
            continue;
        }
        let decoded = decode(&name).ok_or_else(|| {
            BackupError::invalid(path.display().to_string(), "not an escaped host name")
        })?;
        let domain = DomainPart::new(&decoded)
            .map_err(|err| BackupError::invalid(format!("host {decoded:?}"), err.to_string()))?
            .into_owned();
        if only_host
            .as_deref()
            .is_some_and(|only| only != domain.as_str())
        {
            continue;
        }
        hosts.push(read_host(&path, &domain, &mut warnings)?);
    }
    if let Some(only) = &only_host
        && hosts.is_empty()
    {
        return Err(BackupError::invalid(
            dir.display().to_string(),
            format!("no accounts directory for host {only}"),
        ));
    }
    Ok(ProsodyImport { hosts, warnings })
}

/// A directory of `dir` without accounts: a component's (a MUC's rooms, say) or a host's
/// that only ever stored other data. Named in the warnings with its stores, unless the import
/// is limited to another host; anything that is not a directory of an escaped domain is not
/// Prosody's and is left unmentioned.
fn skipped_host(name: &str, path: &Path, only_host: Option<&str>, warnings: &mut Vec<String>) {
    if !path.is_dir() {
        return;
    }
    let Some(host) =
        decode(name).and_then(|host| DomainPart::new(&host).ok().map(|d| d.to_string()))
    else {
        return;
    };
    if only_host.is_some_and(|only| only != host) {
        return;
    }
    let stores: Vec<String> = sorted_entries(path)
        .unwrap_or_default()
        .into_iter()
        .filter(|(_, store)| store.is_dir())
        .map(|(store, _)| decode(&store).unwrap_or(store))
        .collect();
    if stores.is_empty() {
        return;
    }
    warnings.push(format!(
        "host {host}: skipped, as it has no accounts (a component's data?); its stores {} are \
         not imported",
        stores
            .iter()
            .map(|store| format!("{store:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    ));
}

fn read_host(
    path: &Path,
    domain: &DomainPart,
    warnings: &mut Vec<String>,
) -> Result<ImportedHost, BackupError> {
    let mut accounts = Vec::new();
    for (name, file) in sorted_entries(&path.join("accounts"))? {
        let Some(stem) = name.strip_suffix(".dat") else {
            continue;
        };
        let user = decode(stem).ok_or_else(|| {
            BackupError::invalid(file.display().to_string(), "not an escaped user name")
        })?;
        let node = NodePart::new(&user).map_err(|err| {
            BackupError::invalid(format!("host {domain}, user {user:?}"), err.to_string())
        })?;
        let jid = BareJid::from_parts(Some(&node), domain);
        let mut account = read_account(&file, jid)?;
        let roster_file = path.join("roster").join(&name);
        if roster_file.is_file() {
            read_roster(&roster_file, &mut account.data, warnings)?;
        }
        for store in module_stores::STORES {
            let file = path.join(store).join(&name);
            if file.is_file() {
                module_stores::read_store(store, &file, &mut account.data, warnings)?;
            }
        }
        account
            .data
            .module_data
            .sort_by(|a, b| (&a.store, &a.key).cmp(&(&b.store, &b.key)));
        accounts.push(account);
    }
    for (store, store_dir) in sorted_entries(path)? {
        if store == "accounts" || !store_dir.is_dir() {
            continue;
        }
        let files: Vec<String> = sorted_entries(&store_dir)
            .unwrap_or_default()
            .into_iter()
            .map(|(name, _)| name)
            .collect();
        if store == "roster" || module_stores::STORES.contains(&store.as_str()) {
            for name in files {
                if name.ends_with(".dat") && !path.join("accounts").join(&name).is_file() {
                    warnings.push(format!(
                        "host {domain}: skipped {store}/{name}, which has no account"
                    ));
                }
            }
        } else {
            let store = decode(&store).unwrap_or(store);
            warnings.push(format!(
                "host {domain}: skipped Prosody's {store:?} store ({} file(s)), which is not imported",
                files.len()
            ));
        }
    }
    Ok(ImportedHost {
        host: domain.to_string(),
        accounts,
    })
}

fn read_account(file: &Path, jid: BareJid) -> Result<ImportedAccount, BackupError> {
    let table = read_table(file)?;
    let at = jid.to_string();
    let text = |key: &str| -> Result<Option<&str>, BackupError> {
        match table.get(key) {
            None | Some(Value::Nil) => Ok(None),
            Some(value) => value
                .as_str()
                .map(Some)
                .ok_or_else(|| BackupError::invalid(&at, format!("'{key}' is not a UTF-8 string"))),
        }
    };
    let password = text("password")?.map(|p| Password::new(p.to_owned()));
    let mut credentials = StoredCredentials::default();
    if let Some(stored_key) = text("stored_key")? {
        let stored_key = hex(stored_key)
            .ok_or_else(|| BackupError::invalid(&at, "'stored_key' is not hexadecimal"))?;
        let server_key = text("server_key")?.and_then(hex).ok_or_else(|| {
            BackupError::invalid(&at, "'server_key' is missing or not hexadecimal")
        })?;
        // The salt is the raw bytes of the Lua string, not hex.
        let salt = match table.get("salt") {
            Some(Value::Str(bytes)) if !bytes.is_empty() => bytes.clone(),
            _ => return Err(BackupError::invalid(&at, "'salt' is missing or empty")),
        };
        let iterations = match table.get("iteration_count") {
            Some(Value::Number(n))
                if n.fract() == 0.0 && *n >= 1.0 && *n <= f64::from(u32::MAX) =>
            {
                // Checked above to be a whole number in u32's range.
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                let n = *n as u32;
                n
            }
            _ => {
                return Err(BackupError::invalid(
                    &at,
                    "'iteration_count' is missing or not a positive whole number",
                ));
            }
        };
        if let Err(err) = starling_sasl::check_iterations(iterations) {
            return Err(BackupError::invalid(
                &at,
                format!("'iteration_count': {err}"),
            ));
        }
        let hash = [ScramHash::Sha1, ScramHash::Sha256]
            .into_iter()
            .find(|hash| hash.output_len() == stored_key.len())
            .ok_or_else(|| {
                BackupError::invalid(
                    &at,
                    format!(
                        "'stored_key' is {} bytes, neither SHA-1's 20 nor SHA-256's 32",
                        stored_key.len()
                    ),
                )
            })?;
        if server_key.len() != stored_key.len() {
            return Err(BackupError::invalid(
                &at,
                "'server_key' and 'stored_key' differ in length",
            ));
        }
        credentials.keys.push(ScramKeys {
            hash,
            salt,
            iterations,
            stored_key,
            server_key,
        });
    }
    if credentials.keys.is_empty() && password.is_none() {
        return Err(BackupError::invalid(
            &at,
            "neither SCRAM keys (stored_key, server_key, salt, iteration_count) nor a password",
        ));
    }
    Ok(ImportedAccount {
        data: AccountData::new(jid, credentials),
        password,
    })
}

fn read_roster(
    file: &Path,
    data: &mut AccountData,
    warnings: &mut Vec<String>,
) -> Result<(), BackupError> {
    let table = read_table(file)?;
    let at = format!("{}, roster", data.jid);
    let mut version = None;
    let mut pending: Vec<BareJid> = Vec::new();
    for (key, value) in &table.fields {
        match key {
            Value::Bool(false) => {
                let Some(meta) = value.as_table() else {
                    continue;
                };
                version = match meta.get("version") {
                    Some(Value::Number(n)) if n.fract() == 0.0 && *n >= 0.0 => {
                        // A whole, non-negative number; larger than u64 saturates.
                        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                        let n = *n as u64;
                        Some(n)
                    }
                    Some(Value::Str(text)) => {
                        std::str::from_utf8(text).ok().and_then(|t| t.parse().ok())
                    }
                    _ => None,
                };
                if let Some(requests) = meta.get("pending").and_then(Value::as_table) {
                    for (contact, _) in &requests.fields {
                        match contact.as_str().map(BareJid::new) {
                            Some(Ok(jid)) => pending.push(jid),
                            _ => warnings.push(format!(
                                "{at}: skipped a pending request from an invalid JID"
                            )),
                        }
                    }
                }
            }
            Value::Str(_) => {
                let Some(contact) = key.as_str() else {
                    warnings.push(format!("{at}: skipped an item whose JID is not UTF-8"));
                    continue;
                };
                let Ok(jid) = BareJid::new(contact) else {
                    warnings.push(format!(
                        "{at}: skipped the item {contact:?}, not a bare JID"
                    ));
                    continue;
                };
                let Some(fields) = value.as_table() else {
                    warnings.push(format!("{at}: skipped the item {contact}, not a table"));
                    continue;
                };
                data.roster.push(roster_item(jid, fields, &at, warnings)?);
            }
            _ => warnings.push(format!(
                "{at}: skipped an entry with a key that is not a JID"
            )),
        }
    }
    data.roster.sort_by(|a, b| a.jid.cmp(&b.jid));
    data.roster.dedup_by(|a, b| a.jid == b.jid);
    pending.sort();
    pending.dedup();
    data.requests = pending
        .into_iter()
        .map(|contact| {
            let stanza = Element::builder("presence", NS_CLIENT)
                .attr(name("type"), "subscribe")
                .attr(name("from"), contact.as_str())
                .attr(name("to"), data.jid.as_str())
                .build();
            let mut out = Vec::new();
            let _ = stanza.write_to(&mut out);
            (contact, String::from_utf8(out).unwrap_or_default())
        })
        .collect();
    data.roster_version = match version {
        Some(version) => version,
        None if data.roster.is_empty() => 0,
        None => 1,
    };
    Ok(())
}

/// Lua strings may hold any bytes; a name or group with a character XML 1.0 does not allow
/// would break the user's stream at every roster fetch. Such characters are removed rather than
/// the import refused: names and groups are the user's labels, losing a control character
/// does not change what they say, and one bad label should not stop a whole host's import.
/// Each removal is reported with `warning:`.
fn xml_text(text: &str, what: &str, at: &str, jid: &BareJid, warnings: &mut Vec<String>) -> String {
    let (kept, removed) = starling_stanza::strip_illegal_xml_chars(text);
    if removed > 0 {
        warnings.push(format!(
            "{at}: removed {removed} character(s) not allowed in XML from {what} of {jid}"
        ));
    }
    kept.into_owned()
}

fn roster_item(
    jid: BareJid,
    fields: &Table,
    roster_at: &str,
    warnings: &mut Vec<String>,
) -> Result<RosterItem, BackupError> {
    let at = format!("{roster_at} item {jid}");
    let text = |key: &str| fields.get(key).and_then(Value::as_str);
    let subscription = match text("subscription") {
        None => Subscription::None,
        Some(value) => Subscription::parse(value)
            .ok_or_else(|| BackupError::invalid(&at, format!("unknown subscription {value:?}")))?,
    };
    let mut groups = Vec::new();
    if let Some(set) = fields.get("groups").and_then(Value::as_table) {
        for (key, value) in &set.fields {
            // A set is { ["name"] = true }; an array { "name" } is accepted too.
            let group = match (key, value) {
                (Value::Str(_), Value::Bool(true)) => key.as_str(),
                (Value::Number(_), Value::Str(_)) => value.as_str(),
                _ => None,
            };
            if let Some(group) = group {
                let group = xml_text(group, "a group", roster_at, &jid, warnings);
                if !group.is_empty() {
                    groups.push(group);
                }
            }
        }
    }
    // Lua tables have no order; sort for a stable result.
    groups.sort();
    groups.dedup();
    let name = text("name")
        .map(|name| xml_text(name, "the name", roster_at, &jid, warnings))
        .filter(|name| !name.is_empty());
    Ok(RosterItem {
        jid,
        name,
        groups,
        subscription,
        pending_out: text("ask") == Some("subscribe"),
        approved: matches!(fields.get("approved"), Some(Value::Bool(true))),
    })
}

fn read_table(file: &Path) -> Result<Table, BackupError> {
    let bytes = read_bounded(file, MAX_DAT_BYTES)?;
    match lua::parse_return(&bytes) {
        Ok(Value::Table(table)) => Ok(table),
        Ok(_) => Err(BackupError::invalid(
            file.display().to_string(),
            "does not return a table",
        )),
        Err(err) => Err(BackupError::invalid(
            file.display().to_string(),
            err.to_string(),
        )),
    }
}

/// Reads a whole file of at most `limit` bytes.
pub(crate) fn read_bounded(path: &Path, limit: u64) -> Result<Vec<u8>, BackupError> {
    use std::io::Read as _;
    let io = |source| BackupError::Io {
        path: path.to_owned(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let mut bytes = Vec::new();
    file.take(limit.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(io)?;
    if u64::try_from(bytes.len()).unwrap_or(u64::MAX) > limit {
        return Err(BackupError::TooLarge { limit_bytes: limit });
    }
    Ok(bytes)
}

/// The entries of a directory, sorted by name; names that are not UTF-8 are skipped.
fn sorted_entries(dir: &Path) -> Result<Vec<(String, PathBuf)>, BackupError> {
    let io = |source| BackupError::Io {
        path: dir.to_owned(),
        source,
    };
    let mut entries = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        if let Ok(name) = entry.file_name().into_string() {
            entries.push((name, entry.path()));
        }
    }
    entries.sort();
    Ok(entries)
}

/// Undoes Prosody's file-name escaping (`%xx` for each byte that is not a letter or digit).
fn decode(name: &str) -> Option<String> {
    let bytes = name.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while let Some(&byte) = bytes.get(at) {
        if byte == b'%' {
            let hex = name.get(at + 1..at + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            at += 3;
        } else {
            out.push(byte);
            at += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Lower- or upper-case hexadecimal to bytes.
fn hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|at| u8::from_str_radix(text.get(at..at + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_decode() {
        assert_eq!(decode("example%2eorg").as_deref(), Some("example.org"));
        assert_eq!(
            decode("my%2dhost%2elocal").as_deref(),
            Some("my-host.local")
        );
        assert_eq!(decode("plain").as_deref(), Some("plain"));
        assert_eq!(decode("bad%2"), None);
        assert_eq!(decode("bad%zz"), None);
    }

    /// jid, name, groups, subscription, pending out.
    type ItemView<'a> = (&'a str, Option<&'a str>, &'a [String], Subscription, bool);

    fn test_data() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/prosody-data")
    }

    fn account<'a>(import: &'a ProsodyImport, jid: &str) -> &'a ImportedAccount {
        import
            .hosts
            .iter()
            .flat_map(|host| &host.accounts)
            .find(|account| account.data.jid.as_str() == jid)
            .unwrap_or_else(|| panic!("{jid} was imported"))
    }

    #[test]
    fn a_component_directory_is_named_with_its_stores() {
        let dir = tempfile::tempdir().expect("scratch");
        let muc = dir.path().join("conference%2elocalhost");
        for store in ["config", "persistent"] {
            std::fs::create_dir_all(muc.join(store)).expect("store");
        }
        std::fs::create_dir_all(dir.path().join("localhost/accounts")).expect("accounts");
        std::fs::write(dir.path().join("not-prosody.txt"), "x").expect("file");
        let import = read_dir(dir.path(), None).expect("reads");
        assert_eq!(
            import.warnings,
            [
                "host conference.localhost: skipped, as it has no accounts (a component's \
                 data?); its stores \"config\", \"persistent\" are not imported"
            ]
        );
        let only = read_dir(dir.path(), Some("localhost")).expect("reads");
        assert!(only.warnings.is_empty(), "{:?}", only.warnings);
    }

    #[test]
    fn reads_the_test_data_directory() {
        let import = read_dir(&test_data(), None).expect("reads");
        let hosts: Vec<&str> = import.hosts.iter().map(|h| h.host.as_str()).collect();
        assert_eq!(hosts, ["example.org", "localhost"]);
        assert_eq!(
            import.warnings,
            [
                "host localhost: skipped Prosody's \"offline\" store (1 file(s)), which is not imported"
            ]
        );

        let juliet = account(&import, "juliet@localhost");
        assert_eq!(juliet.password, None);
        assert_eq!(juliet.hashes(), [ScramHash::Sha1]);
        // The hand-computed keys match the password, as `starling-sasl` derives them.
        assert!(juliet.data.credentials.keys[0].verify_password("balcony-r0se"));
        assert!(!juliet.data.credentials.keys[0].verify_password("balcony-rose"));
        assert_eq!(juliet.data.roster_version, 4);
        let roster: Vec<ItemView<'_>> = juliet
            .data
            .roster
            .iter()
            .map(|i| {
                (
                    i.jid.as_str(),
                    i.name.as_deref(),
                    i.groups.as_slice(),
                    i.subscription,
                    i.pending_out,
                )
            })
            .collect();
        assert_eq!(
            roster,
            [
                ("nurse@localhost", None, &[][..], Subscription::None, true),
                (
                    "romeo@localhost",
                    Some("Roméo"),
                    &["Friends".to_owned(), "Montague family".to_owned()][..],
                    Subscription::Both,
                    false
                ),
            ]
        );
        assert_eq!(
            juliet.data.requests,
            [(
                BareJid::new("tybalt@localhost").expect("jid"),
                "<presence xmlns='jabber:client' from='tybalt@localhost' to='juliet@localhost' type='subscribe'/>"
                    .to_owned()
            )]
        );

        let stores: Vec<(&str, &str)> = juliet
            .data
            .module_data
            .iter()
            .map(|entry| (entry.store.as_str(), entry.key.as_str()))
            .collect();
        assert_eq!(
            stores,
            [
                ("blocklist", "montague.example"),
                ("blocklist", "paris@localhost"),
                ("private", "roster:roster:delimiter"),
                ("private", "storage:storage:bookmarks"),
                ("vcard", "vcard"),
            ]
        );

        let romeo = account(&import, "romeo@localhost");
        assert_eq!(
            romeo.password.as_ref().map(Password::expose),
            Some("wherefore\"art\\thou")
        );
        assert!(romeo.data.credentials.keys.is_empty());
        assert_eq!(romeo.data.roster_version, 2);
        let mercutio = account(&import, "mercutio.jester@example.org");
        assert_eq!(
            mercutio.password.as_ref().map(Password::expose),
            Some("queen mab")
        );
    }

    #[test]
    fn one_host_only_and_missing_hosts() {
        let import = read_dir(&test_data(), Some("LOCALHOST")).expect("reads");
        let hosts: Vec<&str> = import.hosts.iter().map(|h| h.host.as_str()).collect();
        assert_eq!(hosts, ["localhost"]);
        let err = read_dir(&test_data(), Some("nowhere.example")).expect_err("no such host");
        assert!(
            err.to_string()
                .ends_with("no accounts directory for host nowhere.example"),
            "{err}"
        );
    }

    #[test]
    fn bad_account_files_are_refused_with_their_path() {
        let dir =
            std::env::temp_dir().join(format!("starling-prosody-test-{}", std::process::id()));
        let accounts = dir.join("localhost").join("accounts");
        std::fs::create_dir_all(&accounts).expect("mkdir");
        let check = |content: &str, expected: &str| {
            std::fs::write(accounts.join("x.dat"), content).expect("write");
            let err = read_dir(&dir, None).expect_err("refused").to_string();
            assert!(err.contains(expected), "{err}");
        };
        check("return { stored_key = \"00\" }", "'server_key' is missing");
        check(
            "return { stored_key = \"0000\", server_key = \"0000\", salt = \"s\", iteration_count = 1 }",
            "'stored_key' is 2 bytes, neither SHA-1's 20 nor SHA-256's 32",
        );
        check(
            "return { stored_key = \"0000\", server_key = \"0000\", salt = \"s\", iteration_count = 4294967295 }",
            "'iteration_count': PBKDF2 iteration count 4294967295 is over the limit of 600000",
        );
        check("return { }", "neither SCRAM keys");
        check(
            "return { password = os.getenv('X') }",
            "x.dat: at byte 20: only constants",
        );
        check("return 1", "does not return a table");
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }

    #[test]
    fn characters_xml_forbids_are_removed_from_names_and_groups_and_reported() {
        let dir =
            std::env::temp_dir().join(format!("starling-prosody-xml-test-{}", std::process::id()));
        let host = dir.join("localhost");
        std::fs::create_dir_all(host.join("accounts")).expect("mkdir");
        std::fs::create_dir_all(host.join("roster")).expect("mkdir");
        std::fs::write(
            host.join("accounts/amy.dat"),
            "return { password = \"pw\" }",
        )
        .expect("write");
        std::fs::write(
            host.join("roster/amy.dat"),
            "return { [\"bob@localhost\"] = { subscription = \"both\", name = \"B\\1ob\\27\", \
             groups = { [\"Fri\\2ends\"] = true, [\"\\3\"] = true } } }",
        )
        .expect("write");
        let import = read_dir(&dir, None).expect("reads");
        std::fs::remove_dir_all(&dir).expect("cleanup");
        let amy = account(&import, "amy@localhost");
        let bob = amy.data.roster.first().expect("bob is imported");
        assert_eq!(
            (bob.name.as_deref(), bob.groups.as_slice()),
            (Some("Bob"), ["Friends".to_owned()].as_slice())
        );
        let mut warnings = import.warnings.clone();
        warnings.sort();
        assert_eq!(
            warnings,
            [
                "amy@localhost, roster: removed 1 character(s) not allowed in XML from a group of bob@localhost",
                "amy@localhost, roster: removed 1 character(s) not allowed in XML from a group of bob@localhost",
                "amy@localhost, roster: removed 2 character(s) not allowed in XML from the name of bob@localhost",
            ]
        );
    }

    #[test]
    fn hex_decodes() {
        assert_eq!(hex("00ffA0"), Some(vec![0, 255, 160]));
        assert_eq!(hex("0"), None);
        assert_eq!(hex("zz"), None);
    }
}
