//! XEP-0227 v1.1, Portable Import/Export Format for XMPP-IM Servers (`urn:xmpp:pie:0`): the
//! backup file, written and read with minidom.
//!
//! ```xml
//! <server-data xmlns='urn:xmpp:pie:0'>
//!   <host jid='example.org'>
//!     <user name='juliet'>
//!       <scram-credentials xmlns='urn:xmpp:pie:0#scram' mechanism='SCRAM-SHA-256'>
//!         <iter-count>4096</iter-count><salt>…</salt><server-key>…</server-key><stored-key>…</stored-key>
//!       </scram-credentials>
//!       <query xmlns='jabber:iq:roster' ver='3'><item jid='romeo@example.net' subscription='both'/></query>
//!       <presence xmlns='jabber:client' type='subscribe' from='nurse@example.org'/>
//!       <offline-messages><message xmlns='jabber:client'>…<delay xmlns='urn:xmpp:delay'/></message></offline-messages>
//!     </user>
//!   </host>
//! </server-data>
//! ```
//!
//! Writing is deterministic: hosts, users, keys and roster items are sorted, attributes come
//! out in minidom's (sorted) order, and nothing depends on the clock, so two backups of the
//! same data are byte-identical. The roster version travels as the roster's `ver` attribute
//! (RFC 6121 §2.6) and each offline message's storage time as the XEP-0203 `<delay/>` the
//! XEP shows, which the reader takes off again. Pre-approval is the roster item's `approved`
//! attribute (RFC 6121 §2.1.2.1). Elements Starling does not keep (vCards, private storage,
//! PEP) are skipped with a warning, as XEP-0227 §4 asks; XInclude is not supported.
//!
//! Not yet carried: feature modules' per-account data ([`AccountData::module_data`]: vCards,
//! private XML storage and the like) is left out by [`write()`] and never produced by
//! [`read()`], until it is mapped to the XEP's elements.

use std::collections::BTreeSet;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use jid::{BareJid, DomainPart, Jid, NodePart};
use minidom::{Element, Node};
use starling_sasl::{ScramHash, ScramKeys, StoredCredentials};
use starling_storage::{AccountData, OfflineMessage, RosterItem, Subscription};

use starling_stanza::datetime;
use starling_stanza::{NS_CLIENT, NS_DELAY, NS_ROSTER};

use crate::{BackupError, ImportedAccount, Password};

/// The XEP-0227 namespace.
pub const NS_PIE: &str = "urn:xmpp:pie:0";
/// The namespace of XEP-0227 v1.0 and earlier drafts, still accepted when reading.
pub const NS_PIE_OLD: &str = "http://www.xmpp.org/extensions/xep-0227.html#ns";
/// SCRAM credentials in XEP-0227 v1.1.
pub const NS_PIE_SCRAM: &str = "urn:xmpp:pie:0#scram";
/// XInclude, which XEP-0227 §5 allows and this reader refuses.
const NS_XINCLUDE: &str = "http://www.w3.org/2001/XInclude";

/// Largest file [`read()`] accepts: a generous bound for one server's users, rosters and
/// offline messages, and small enough that the parsed tree fits in memory.
pub const MAX_FILE_BYTES: u64 = 256 * 1024 * 1024;
/// Deepest element nesting [`read()`] accepts: four levels of structure above the stored stanzas
/// plus the server's default stanza depth limit, with room to spare.
pub const MAX_DEPTH: usize = 48;

/// The accounts of one host, for [`write()`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostData {
    /// The host's domain.
    pub host: String,
    /// Its accounts (any order; the writer sorts).
    pub accounts: Vec<AccountData>,
}

/// A written backup.
#[derive(Debug)]
pub struct Written {
    /// The XML document.
    pub bytes: Vec<u8>,
    /// Stored data that could not be written (a stored stanza that does not parse).
    pub warnings: Vec<String>,
}

/// A file read back: hosts in file order, and what was skipped.
#[derive(Debug)]
pub struct ServerData {
    /// The hosts.
    pub hosts: Vec<ImportedHost>,
    /// Data the file holds that Starling does not keep, one line each.
    pub warnings: Vec<String>,
}

/// One `<host/>` of a file.
#[derive(Debug)]
pub struct ImportedHost {
    /// The host's domain, normalised.
    pub host: String,
    /// Its users in file order.
    pub accounts: Vec<ImportedAccount>,
}

/// Writes `hosts` as one XEP-0227 document.
pub fn write(hosts: &[HostData]) -> Written {
    let mut warnings = Vec::new();
    let mut hosts: Vec<&HostData> = hosts.iter().collect();
    hosts.sort_by(|a, b| a.host.cmp(&b.host));
    let host_elements = hosts
        .into_iter()
        .map(|host| {
            let mut accounts: Vec<&AccountData> = host.accounts.iter().collect();
            accounts.sort_by(|a, b| a.jid.cmp(&b.jid));
            let users = accounts
                .into_iter()
                .map(|account| user_element(&host.host, account, &mut warnings))
                .collect();
            indented(
                Element::builder("host", NS_PIE)
                    .attr(name("jid"), host.host.as_str())
                    .build(),
                users,
                1,
            )
        })
        .collect();
    let root = indented(Element::bare("server-data", NS_PIE), host_elements, 0);
    let mut bytes = Vec::new();
    // Writing to a Vec cannot fail for I/O reasons, and every name written here is a valid
    // XML name, so an error would be a bug in this module; it would leave `bytes` short, which
    // the reader then refuses.
    let _ = root.write_to_decl(&mut bytes);
    bytes.push(b'\n');
    Written { bytes, warnings }
}

/// Reads a whole XEP-0227 document. Everything is validated before anything is returned, so a
/// caller that writes only on `Ok` never writes part of a bad file. `now_unix_ms` is the
/// storage time given to offline messages without a stamp of this host.
pub fn read(bytes: &[u8], now_unix_ms: u64) -> Result<ServerData, BackupError> {
    if u64::try_from(bytes.len()).unwrap_or(u64::MAX) > MAX_FILE_BYTES {
        return Err(BackupError::TooLarge {
            limit_bytes: MAX_FILE_BYTES,
        });
    }
    let root = parse_bounded(bytes)?;
    if !(root.name() == "server-data" && (root.ns() == NS_PIE || root.ns() == NS_PIE_OLD)) {
        return Err(BackupError::invalid(
            "document",
            format!(
                "the root element is <{} xmlns='{}'>, not XEP-0227's <server-data xmlns='{NS_PIE}'>",
                root.name(),
                root.ns()
            ),
        ));
    }
    let pie = root.ns();
    let mut reader = Reader {
        warnings: Vec::new(),
        now_unix_ms,
    };
    let mut hosts: Vec<ImportedHost> = Vec::new();
    for child in root.children() {
        if child.is("host", pie.as_str()) {
            let host = reader.host(child, &pie)?;
            if hosts.iter().any(|h| h.host == host.host) {
                return Err(BackupError::invalid(
                    format!("host {}", host.host),
                    "the host appears twice",
                ));
            }
            hosts.push(host);
        } else {
            reader.unknown("server-data", child)?;
        }
    }
    Ok(ServerData {
        hosts,
        warnings: reader.warnings,
    })
}

/// Reads at most [`MAX_FILE_BYTES`] + 1 bytes of `path`, failing with
/// [`BackupError::TooLarge`] beyond the limit.
pub fn read_file(path: &std::path::Path) -> Result<Vec<u8>, BackupError> {
    crate::prosody::read_bounded(path, MAX_FILE_BYTES)
}

/// An attribute name; only called with this crate's constant names.
pub(crate) fn name(text: &str) -> minidom::rxml::NcName {
    // Only called with the constant attribute names of this module, all valid NCNames.
    #[allow(clippy::expect_used)]
    text.try_into().expect("attribute names here are valid")
}

/// `element` with `children`, each on its own line indented for `level`.
fn indented(mut element: Element, children: Vec<Element>, level: usize) -> Element {
    if children.is_empty() {
        return element;
    }
    let inner = format!("\n{}", "  ".repeat(level + 1));
    for child in children {
        element.append_text_node(inner.clone());
        element.append_child(child);
    }
    element.append_text_node(format!("\n{}", "  ".repeat(level)));
    element
}

fn text_element(tag: &str, namespace: &str, text: String) -> Element {
    Element::builder(tag, namespace).append(text).build()
}

fn user_element(host: &str, account: &AccountData, warnings: &mut Vec<String>) -> Element {
    let localpart = account
        .jid
        .node()
        .map(|n| n.to_string())
        .unwrap_or_default();
    let at = format!("host {host}, user {localpart}");
    let mut children = Vec::new();
    let mut keys: Vec<&ScramKeys> = account.credentials.keys.iter().collect();
    keys.sort_by_key(|keys| hash_rank(keys.hash));
    for keys in keys {
        children.push(indented(
            Element::builder("scram-credentials", NS_PIE_SCRAM)
                .attr(name("mechanism"), mechanism_name(keys.hash))
                .build(),
            vec![
                text_element("iter-count", NS_PIE_SCRAM, keys.iterations.to_string()),
                text_element("salt", NS_PIE_SCRAM, BASE64.encode(&keys.salt)),
                text_element("server-key", NS_PIE_SCRAM, BASE64.encode(&keys.server_key)),
                text_element("stored-key", NS_PIE_SCRAM, BASE64.encode(&keys.stored_key)),
            ],
            3,
        ));
    }
    let mut roster: Vec<&RosterItem> = account.roster.iter().collect();
    roster.sort_by(|a, b| a.jid.cmp(&b.jid));
    children.push(indented(
        Element::builder("query", NS_ROSTER)
            .attr(name("ver"), account.roster_version.to_string())
            .build(),
        roster.into_iter().map(item_element).collect(),
        3,
    ));
    for (contact, stanza) in &account.requests {
        children.push(request_element(&account.jid, contact, stanza));
    }
    if !account.offline.is_empty() {
        let mut messages = Vec::new();
        for (index, message) in account.offline.iter().enumerate() {
            match message.stanza.parse::<Element>() {
                Ok(mut element) => {
                    let mut delay = starling_stanza::delay(host, message.stored_at_unix_ms);
                    delay.append_text_node("Offline Storage");
                    element.append_child(delay);
                    messages.push(element);
                }
                Err(err) => warnings.push(format!(
                    "{at}: offline message {} was skipped, its stored stanza does not parse: {err}",
                    index + 1
                )),
            }
        }
        children.push(indented(
            Element::bare("offline-messages", NS_PIE),
            messages,
            3,
        ));
    }
    indented(
        Element::builder("user", NS_PIE)
            .attr(name("name"), localpart)
            .build(),
        children,
        2,
    )
}

fn item_element(item: &RosterItem) -> Element {
    let mut builder = Element::builder("item", NS_ROSTER)
        .attr(name("jid"), item.jid.as_str())
        .attr(name("subscription"), item.subscription.as_str());
    // Characters XML forbids (in data stored before imports removed them) would make a backup
    // that cannot be read back; they are left out, as on the stream.
    if let Some(contact_name) = &item.name {
        let (contact_name, _) = starling_stanza::strip_illegal_xml_chars(contact_name);
        if !contact_name.is_empty() {
            builder = builder.attr(name("name"), contact_name.as_ref());
        }
    }
    if item.pending_out {
        builder = builder.attr(name("ask"), "subscribe");
    }
    if item.approved {
        builder = builder.attr(name("approved"), "true");
    }
    for group in &item.groups {
        let (group, _) = starling_stanza::strip_illegal_xml_chars(group);
        if !group.is_empty() {
            builder = builder.append(text_element("group", NS_ROSTER, group.into_owned()));
        }
    }
    builder.build()
}

/// The stored request stanza as it is, or a plain `subscribe` from the contact when the stored
/// text is missing or is not a presence stanza.
fn request_element(owner: &BareJid, contact: &BareJid, stanza: &str) -> Element {
    match stanza.parse::<Element>() {
        Ok(mut element) if element.is("presence", NS_CLIENT) => {
            if element.attr("from").is_none() {
                element.set_attr(
                    minidom::rxml::Namespace::NONE,
                    name("from"),
                    contact.as_str(),
                );
            }
            element
        }
        _ => Element::builder("presence", NS_CLIENT)
            .attr(name("type"), "subscribe")
            .attr(name("from"), contact.as_str())
            .attr(name("to"), owner.as_str())
            .build(),
    }
}

fn mechanism_name(hash: ScramHash) -> &'static str {
    match hash {
        ScramHash::Sha1 => "SCRAM-SHA-1",
        ScramHash::Sha256 => "SCRAM-SHA-256",
    }
}

fn hash_rank(hash: ScramHash) -> u8 {
    match hash {
        ScramHash::Sha1 => 0,
        ScramHash::Sha256 => 1,
    }
}

/// Parses one document with minidom's tree builder, refusing nesting deeper than
/// [`MAX_DEPTH`] as it goes (a deep tree would also be dropped recursively).
fn parse_bounded(bytes: &[u8]) -> Result<Element, BackupError> {
    let mut builder = minidom::tree_builder::TreeBuilder::new();
    let mut reader = minidom::rxml::RawReader::new(bytes);
    let xml = |err: &dyn std::fmt::Display| BackupError::Xml(err.to_string());
    while let Some(event) = reader.read().map_err(|e| xml(&e))? {
        builder.process_event(event).map_err(|e| xml(&e))?;
        if builder.depth() > MAX_DEPTH {
            return Err(BackupError::TooDeep { limit: MAX_DEPTH });
        }
        if let Some(root) = builder.root.take() {
            return Ok(root);
        }
    }
    Err(BackupError::Xml("the document ends early".to_owned()))
}

/// Serializes a stanza element for storage, as the router does.
fn serialize(element: &Element) -> String {
    let mut out = Vec::new();
    let _ = element.write_to(&mut out);
    String::from_utf8(out).unwrap_or_default()
}

struct Reader {
    warnings: Vec<String>,
    now_unix_ms: u64,
}

impl Reader {
    /// An element this reader does not use: a warning, or an error for XInclude.
    fn unknown(&mut self, at: &str, element: &Element) -> Result<(), BackupError> {
        if element.ns() == NS_XINCLUDE {
            return Err(BackupError::invalid(
                at,
                "XInclude (<include/>) is not supported; merge the files into one first",
            ));
        }
        self.warnings.push(format!(
            "{at}: skipped <{} xmlns='{}'>, which Starling does not keep",
            element.name(),
            element.ns()
        ));
        Ok(())
    }

    fn host(&mut self, element: &Element, pie: &str) -> Result<ImportedHost, BackupError> {
        let raw = element
            .attr("jid")
            .ok_or_else(|| BackupError::invalid("a <host/>", "it has no 'jid' attribute"))?;
        let domain = DomainPart::new(raw)
            .map_err(|err| BackupError::invalid(format!("host {raw:?}"), err.to_string()))?
            .into_owned();
        let host = domain.to_string();
        let mut accounts: Vec<ImportedAccount> = Vec::new();
        for child in element.children() {
            if child.is("user", pie) {
                let account = self.user(child, &domain, pie)?;
                if accounts.iter().any(|a| a.data.jid == account.data.jid) {
                    return Err(BackupError::invalid(
                        format!("host {host}, user {}", account.data.jid),
                        "the user appears twice",
                    ));
                }
                accounts.push(account);
            } else {
                self.unknown(&format!("host {host}"), child)?;
            }
        }
        Ok(ImportedHost { host, accounts })
    }

    fn user(
        &mut self,
        element: &Element,
        domain: &DomainPart,
        pie: &str,
    ) -> Result<ImportedAccount, BackupError> {
        let host_at = format!("host {domain}");
        let raw = element
            .attr("name")
            .ok_or_else(|| BackupError::invalid(&host_at, "a <user/> has no 'name' attribute"))?;
        let node = NodePart::new(raw).map_err(|err| {
            BackupError::invalid(format!("{host_at}, user {raw:?}"), err.to_string())
        })?;
        let jid = BareJid::from_parts(Some(&node), domain);
        let at = format!("{host_at}, user {node}");
        let mut data = AccountData::new(jid.clone(), StoredCredentials::default());
        let password = element
            .attr("password")
            .map(|p| Password::new(p.to_owned()));
        let mut saw_roster = false;
        for child in element.children() {
            if child.is("scram-credentials", NS_PIE_SCRAM) {
                if let Some(keys) = self.scram(child, &at)? {
                    if data.credentials.keys_for(keys.hash).is_some() {
                        return Err(BackupError::invalid(
                            &at,
                            format!("two sets of {} credentials", mechanism_name(keys.hash)),
                        ));
                    }
                    data.credentials.keys.push(keys);
                }
            } else if child.is("query", NS_ROSTER) {
                if saw_roster {
                    return Err(BackupError::invalid(&at, "two rosters"));
                }
                saw_roster = true;
                self.roster(child, &at, &mut data)?;
            } else if child.is("presence", NS_CLIENT) {
                self.request(child, &at, &mut data)?;
            } else if child.is("offline-messages", pie) {
                self.offline(child, &at, domain, &mut data)?;
            } else {
                self.unknown(&at, child)?;
            }
        }
        data.credentials
            .keys
            .sort_by_key(|keys| hash_rank(keys.hash));
        if data.credentials.keys.is_empty() && password.is_none() {
            self.warnings.push(format!(
                "{at}: no SCRAM-SHA-1 or SCRAM-SHA-256 credentials and no password; \
                 the account cannot log in until `starling passwd` sets one"
            ));
        }
        Ok(ImportedAccount { data, password })
    }

    fn scram(&mut self, element: &Element, at: &str) -> Result<Option<ScramKeys>, BackupError> {
        let mechanism = element.attr("mechanism").unwrap_or_default();
        let hash = match mechanism {
            "SCRAM-SHA-1" => ScramHash::Sha1,
            "SCRAM-SHA-256" => ScramHash::Sha256,
            other => {
                self.warnings.push(format!(
                    "{at}: skipped {other:?} credentials, a mechanism Starling does not offer"
                ));
                return Ok(None);
            }
        };
        let at = format!("{at}, {mechanism} credentials");
        let field = |tag: &str| -> Result<String, BackupError> {
            element
                .get_child(tag, NS_PIE_SCRAM)
                .map(|child| child.text().trim().to_owned())
                .ok_or_else(|| BackupError::invalid(&at, format!("no <{tag}/>")))
        };
        let decode = |tag: &str| -> Result<Vec<u8>, BackupError> {
            BASE64
                .decode(field(tag)?)
                .map_err(|err| BackupError::invalid(&at, format!("<{tag}/> is not base64: {err}")))
        };
        let iterations: u32 = field("iter-count")?
            .parse()
            .ok()
            .filter(|&n| n > 0)
            .ok_or_else(|| {
                BackupError::invalid(&at, "<iter-count/> is not a positive 32-bit number")
            })?;
        starling_sasl::check_iterations(iterations)
            .map_err(|err| BackupError::invalid(&at, format!("<iter-count/>: {err}")))?;
        let keys = ScramKeys {
            hash,
            salt: decode("salt")?,
            iterations,
            stored_key: decode("stored-key")?,
            server_key: decode("server-key")?,
        };
        for (tag, key) in [
            ("stored-key", &keys.stored_key),
            ("server-key", &keys.server_key),
        ] {
            if key.len() != hash.output_len() {
                return Err(BackupError::invalid(
                    &at,
                    format!(
                        "<{tag}/> is {} bytes, not the {} of {mechanism}",
                        key.len(),
                        hash.output_len()
                    ),
                ));
            }
        }
        if keys.salt.is_empty() {
            return Err(BackupError::invalid(&at, "<salt/> is empty"));
        }
        Ok(Some(keys))
    }

    fn roster(
        &mut self,
        query: &Element,
        at: &str,
        data: &mut AccountData,
    ) -> Result<(), BackupError> {
        let mut seen = BTreeSet::new();
        for child in query.children() {
            if !child.is("item", NS_ROSTER) {
                self.unknown(&format!("{at}, roster"), child)?;
                continue;
            }
            let item = self.item(child, at)?;
            if !seen.insert(item.jid.clone()) {
                return Err(BackupError::invalid(
                    format!("{at}, roster item {}", item.jid),
                    "the contact appears twice",
                ));
            }
            data.roster.push(item);
        }
        let version = query.attr("ver").or_else(|| query.attr("version"));
        data.roster_version = match version.and_then(|v| v.parse().ok()) {
            Some(version) => version,
            // A roster without a numeric version still needs one that is not the empty
            // roster's 0, or a client could take it for the empty roster it cached.
            None if data.roster.is_empty() => 0,
            None => 1,
        };
        Ok(())
    }

    fn item(&mut self, element: &Element, at: &str) -> Result<RosterItem, BackupError> {
        let raw = element.attr("jid").ok_or_else(|| {
            BackupError::invalid(format!("{at}, roster"), "an <item/> has no 'jid'")
        })?;
        let at = format!("{at}, roster item {raw}");
        let jid = match Jid::new(raw) {
            Ok(jid) if jid.resource().is_some() => {
                return Err(BackupError::invalid(
                    at,
                    "a roster item's JID has no resource",
                ));
            }
            Ok(jid) => jid.to_bare(),
            Err(err) => return Err(BackupError::invalid(at, err.to_string())),
        };
        let subscription = match element.attr("subscription") {
            None => Subscription::None,
            Some(value) => Subscription::parse(value).ok_or_else(|| {
                BackupError::invalid(&at, format!("unknown subscription {value:?}"))
            })?,
        };
        let pending_out = match element.attr("ask") {
            None => false,
            Some("subscribe") => true,
            Some(other) => {
                return Err(BackupError::invalid(&at, format!("unknown ask {other:?}")));
            }
        };
        let approved = matches!(element.attr("approved"), Some("true" | "1"));
        let mut groups: Vec<String> = Vec::new();
        for child in element.children() {
            if child.is("group", NS_ROSTER) {
                let group = child.text();
                if group.is_empty() {
                    self.warnings
                        .push(format!("{at}: skipped an empty group name"));
                } else if !groups.contains(&group) {
                    groups.push(group);
                }
            } else {
                self.unknown(&at, child)?;
            }
        }
        Ok(RosterItem {
            jid,
            name: element.attr("name").map(str::to_owned),
            groups,
            subscription,
            pending_out,
            approved,
        })
    }

    fn request(
        &mut self,
        presence: &Element,
        at: &str,
        data: &mut AccountData,
    ) -> Result<(), BackupError> {
        if presence.attr("type") != Some("subscribe") {
            self.warnings.push(format!(
                "{at}: skipped a <presence/> that is not a subscription request"
            ));
            return Ok(());
        }
        let from = presence
            .attr("from")
            .ok_or_else(|| BackupError::invalid(at, "a subscription request has no 'from'"))?;
        let contact = Jid::new(from)
            .map_err(|err| {
                BackupError::invalid(format!("{at}, request from {from}"), err.to_string())
            })?
            .to_bare();
        if data.requests.iter().any(|(c, _)| *c == contact) {
            self.warnings
                .push(format!("{at}: skipped a second request from {contact}"));
            return Ok(());
        }
        data.requests.push((contact, serialize(presence)));
        Ok(())
    }

    fn offline(
        &mut self,
        element: &Element,
        at: &str,
        domain: &DomainPart,
        data: &mut AccountData,
    ) -> Result<(), BackupError> {
        for child in element.children() {
            if !child.is("message", NS_CLIENT) {
                self.unknown(&format!("{at}, offline-messages"), child)?;
                continue;
            }
            let mut message = child.clone();
            let stored_at = take_own_delay(&mut message, domain.as_str());
            data.offline.push(OfflineMessage {
                stored_at_unix_ms: stored_at.unwrap_or(self.now_unix_ms),
                stanza: serialize(&message),
            });
        }
        Ok(())
    }
}

/// Removes the last `<delay/>` this host stamped (the one [`write()`] adds) and returns its
/// instant; other delays, such as one from the sender's server, stay in the stanza.
fn take_own_delay(message: &mut Element, host: &str) -> Option<u64> {
    let nodes = message.take_nodes();
    let own = nodes.iter().rposition(|node| {
        matches!(node, Node::Element(e)
            if e.is("delay", NS_DELAY) && e.attr("from") == Some(host)
                && e.attr("stamp").is_some_and(|stamp| datetime::parse_ms(stamp).is_ok()))
    });
    let mut stored_at = None;
    for (index, node) in nodes.into_iter().enumerate() {
        if Some(index) == own {
            if let Node::Element(delay) = &node {
                stored_at = delay
                    .attr("stamp")
                    .and_then(|stamp| datetime::parse_ms(stamp).ok());
            }
            continue;
        }
        message.append_node(node);
    }
    stored_at
}

#[cfg(test)]
mod tests;
