//! Module data through the XEP-0227 writer and reader: exact round trips, the XML shape, and
//! what other servers' files give.

use jid::BareJid;
use minidom::Element;
use starling_sasl::{ScramHash, ScramKeys, StoredCredentials};
use starling_storage::{AccountData, AccountDataEntry};

use crate::pie::{HostData, ServerData, read, write};

fn entry(store: &str, key: &str, value: &[u8]) -> AccountDataEntry {
    AccountDataEntry {
        store: store.to_owned(),
        key: key.to_owned(),
        value: value.to_vec(),
    }
}

/// `xml` as the vCard and private modules store an element: minidom's serialization.
fn stored(xml: &str) -> Vec<u8> {
    let element: Element = xml.parse().expect("test XML parses");
    let mut out = Vec::new();
    element.write_to(&mut out).expect("serializes");
    out
}

fn account(module_data: Vec<AccountDataEntry>) -> AccountData {
    let keys = ScramKeys {
        hash: ScramHash::Sha1,
        salt: b"salt".to_vec(),
        iterations: 4096,
        stored_key: vec![1; 20],
        server_key: vec![2; 20],
    };
    let mut account = AccountData::new(
        BareJid::new("juliet@capulet.example").expect("JID"),
        StoredCredentials { keys: vec![keys] },
    );
    account.module_data = module_data;
    account
}

fn backup(account: AccountData) -> (String, Vec<String>) {
    let written = write(&[HostData {
        host: "capulet.example".to_owned(),
        accounts: vec![account],
    }]);
    (
        String::from_utf8(written.bytes).expect("UTF-8"),
        written.warnings,
    )
}

/// The one account of a file, and the reader's warnings.
fn restore(text: &str) -> (AccountData, Vec<String>) {
    let ServerData { hosts, warnings } = read(text.as_bytes(), 0).expect("reads");
    let [host] = <[_; 1]>::try_from(hosts).expect("one host");
    let [account] = <[_; 1]>::try_from(host.accounts).expect("one user");
    (account.data, warnings)
}

/// A file with one user whose body is `inner`.
fn user_file(inner: &str) -> String {
    format!(
        "<server-data xmlns='urn:xmpp:pie:0'><host jid='capulet.example'>\
         <user name='juliet' password='pw'>{inner}</user></host></server-data>"
    )
}

/// A PNG's first bytes in base64, long enough to wrap as clients do.
const BINVAL: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==\n\
                      iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJ";

/// Every kind of module data, in an order the writer must sort.
fn every_kind() -> Vec<AccountDataEntry> {
    vec![
        entry("lastactivity", "last", b"1764097236\nasleep \xff\x00"),
        entry("blocklist", "tybalt@capulet.example", b""),
        entry(
            "private",
            "storage:storage:bookmarks",
            &stored(
                "<storage xmlns='storage:bookmarks'><conference jid='balcony@rooms.capulet.example' \
                 autojoin='true' name='The &lt;balcony&gt;'><nick>Jules</nick></conference></storage>",
            ),
        ),
        entry(
            "vcard",
            "vcard",
            &stored(&format!(
                "<vCard xmlns='vcard-temp'><FN>Juliet Capulet</FN><N><FAMILY>Capulet</FAMILY>\
                 <GIVEN>Juliet</GIVEN></N><NICKNAME xml:lang='it'>Giulietta</NICKNAME>\
                 <PHOTO><TYPE>image/png</TYPE><BINVAL>{BINVAL}</BINVAL></PHOTO></vCard>"
            )),
        ),
        entry("blocklist", "montague.example", b""),
        entry(
            "private",
            "prefs:exodus:prefs",
            &stored("<prefs xmlns='exodus:prefs'><defaultnick>Jules</defaultnick></prefs>"),
        ),
        entry(
            "private",
            "x:urn:example:prefixed",
            &stored(
                "<x xmlns='urn:example:prefixed' xmlns:e='urn:example:other'><e:y e:z='1'/></x>",
            ),
        ),
        entry("blocklist", "romeo@montague.example/orchard", b""),
        entry("lastactivity", "", b""),
        entry(
            "mam-prefs",
            "key with\nnewline\tand 'quotes' & <tags>",
            b"v",
        ),
    ]
}

fn sorted(mut entries: Vec<AccountDataEntry>) -> Vec<AccountDataEntry> {
    entries.sort_by(|a, b| (&a.store, &a.key).cmp(&(&b.store, &b.key)));
    entries
}

#[test]
fn every_kind_of_module_data_round_trips_byte_for_byte() {
    let original = account(every_kind());
    let (text, warnings) = backup(original.clone());
    assert!(warnings.is_empty(), "{warnings:?}");
    let (restored, warnings) = restore(&text);
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(
        restored,
        AccountData {
            module_data: sorted(every_kind()),
            ..original
        }
    );
    // And the restored data backs up to the same bytes.
    assert_eq!(backup(restored).0, text);
    // The three known stores went out as the XEP's elements, not as module-data.
    for needle in [
        "<vCard xmlns='vcard-temp'><FN>Juliet Capulet</FN>",
        "<PHOTO><TYPE>image/png</TYPE><BINVAL>iVBORw0KGgo",
        "<query xmlns='jabber:iq:private'>",
        "<blocklist xmlns='urn:xmpp:blocking'>",
    ] {
        assert!(text.contains(needle), "{needle} missing from\n{text}");
    }
    // The other store's entries, and the fragment with a prefixed child: minidom would write
    // that one's prefixes differently inside the document, so it goes as opaque bytes.
    assert_eq!(text.matches("<module-data ").count(), 4, "{text}");
    assert!(
        text.contains("key='x:urn:example:prefixed' store='private'>"),
        "{text}"
    );
}

#[test]
fn module_data_looks_like_this() {
    let (text, _) = backup(account(vec![
        entry(
            "vcard",
            "vcard",
            &stored("<vCard xmlns='vcard-temp'><FN>Juliet</FN></vCard>"),
        ),
        entry(
            "private",
            "a:urn:example:a",
            &stored("<a xmlns='urn:example:a'>1</a>"),
        ),
        entry(
            "private",
            "b:urn:example:b",
            &stored("<b xmlns='urn:example:b'/>"),
        ),
        entry("blocklist", "tybalt@capulet.example", b""),
        entry("blocklist", "montague.example", b""),
        entry("lastactivity", "last", b"123\nasleep"),
    ]));
    assert_eq!(
        text,
        "<?xml version='1.0' encoding='utf-8'?>
<server-data xmlns='urn:xmpp:pie:0'>
  <host jid='capulet.example'>
    <user name='juliet'>
      <scram-credentials xmlns='urn:xmpp:pie:0#scram' mechanism='SCRAM-SHA-1'>
        <iter-count>4096</iter-count>
        <salt>c2FsdA==</salt>
        <server-key>AgICAgICAgICAgICAgICAgICAgI=</server-key>
        <stored-key>AQEBAQEBAQEBAQEBAQEBAQEBAQE=</stored-key>
      </scram-credentials>
      <query xmlns='jabber:iq:roster' ver='0'/>
      <vCard xmlns='vcard-temp'><FN>Juliet</FN></vCard>
      <query xmlns='jabber:iq:private'>
        <a xmlns='urn:example:a'>1</a>
        <b xmlns='urn:example:b'/>
      </query>
      <blocklist xmlns='urn:xmpp:blocking'>
        <item jid='montague.example'/>
        <item jid='tybalt@capulet.example'/>
      </blocklist>
      <module-data xmlns='urn:starling:pie:module-data:0' key='last' store='lastactivity'>MTIzCmFzbGVlcA==</module-data>
    </user>
  </host>
</server-data>
"
    );
}

#[test]
fn entries_an_element_would_change_go_as_module_data() {
    let entries = vec![
        // Not minidom's form (double quotes, a declaration): re-serializing would change bytes.
        entry(
            "vcard",
            "vcard",
            b"<vCard xmlns=\"vcard-temp\"><FN>J</FN></vCard>",
        ),
        entry(
            "private",
            "a:urn:example:a",
            b"<?xml version='1.0'?><a xmlns='urn:example:a'/>",
        ),
        // The key does not name the element.
        entry(
            "private",
            "b:urn:example:wrong",
            &stored("<b xmlns='urn:example:b'/>"),
        ),
        // Not XML at all.
        entry("private", "c:urn:example:c", b"\xff<c"),
        // Not in normal form, or with a value.
        entry("blocklist", "Tybalt@capulet.example", b""),
        entry("blocklist", "nurse@capulet.example", b"note"),
        // A vCard under another key, and another element under the vCard key.
        entry("vcard", "other", &stored("<vCard xmlns='vcard-temp'/>")),
        entry(
            "vcard",
            "vcard",
            &stored("<vCard xmlns='urn:ietf:params:xml:ns:vcard-4.0'/>"),
        ),
    ];
    for entry in entries {
        let (text, warnings) = backup(account(vec![entry.clone()]));
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(text.matches("<module-data ").count(), 1, "{text}");
        let (restored, _) = restore(&text);
        assert_eq!(restored.module_data, [entry]);
    }
}

#[test]
fn a_name_xml_cannot_hold_is_skipped_with_a_warning() {
    let (text, warnings) = backup(account(vec![
        entry("lastactivity", "bad\u{1}key", b"x"),
        entry("lastactivity", "last", b"x"),
    ]));
    assert_eq!(
        warnings,
        [
            "host capulet.example, user juliet: module data of store \"lastactivity\" under key \"bad\\u{1}key\" was skipped, its name holds characters XML does not allow"
        ]
    );
    let (restored, _) = restore(&text);
    assert_eq!(restored.module_data, [entry("lastactivity", "last", b"x")]);
}

#[test]
fn other_servers_vcards_private_xml_and_block_lists_are_read() {
    let (data, warnings) = restore(&user_file(
        "<vCard xmlns='vcard-temp'>\n  <FN>Juliet</FN>\n  <PHOTO><BINVAL>AAAA</BINVAL></PHOTO>\n</vCard>\
         <query xmlns='jabber:iq:private'>\n  <storage xmlns='storage:bookmarks'><conference jid='r@c.example'/></storage>\n  \
         <roster xmlns='roster:delimiter'>::</roster></query>\
         <blocklist xmlns='urn:xmpp:blocking'><item jid='Tybalt@Capulet.example'/>\
         <item jid='tybalt@capulet.example'/><item jid='@bad'/><item/><group/></blocklist>\
         <query xmlns='jabber:iq:privacy'><list name='x'/></query>",
    ));
    assert_eq!(
        data.module_data,
        [
            entry("blocklist", "tybalt@capulet.example", b""),
            entry(
                "private",
                "roster:roster:delimiter",
                b"<roster xmlns='roster:delimiter'>::</roster>"
            ),
            entry(
                "private",
                "storage:storage:bookmarks",
                b"<storage xmlns='storage:bookmarks'><conference jid='r@c.example'/></storage>"
            ),
            entry(
                "vcard",
                "vcard",
                b"<vCard xmlns='vcard-temp'>\n  <FN>Juliet</FN>\n  <PHOTO><BINVAL>AAAA</BINVAL></PHOTO>\n</vCard>"
            ),
        ]
    );
    assert_eq!(
        warnings,
        [
            "host capulet.example, user juliet, block list: skipped the item \"@bad\", not a JID",
            "host capulet.example, user juliet, block list: skipped the item \"\", not a JID",
            "host capulet.example, user juliet, block list: skipped <group xmlns='urn:xmpp:blocking'>, which is not an <item/>",
            "host capulet.example, user juliet: skipped <query xmlns='jabber:iq:privacy'>, which Starling does not keep",
        ]
    );
}

#[test]
fn refusals_name_the_module_data() {
    let error = |inner: &str| {
        read(user_file(inner).as_bytes(), 0)
            .expect_err("must be refused")
            .to_string()
    };
    assert_eq!(
        error("<vCard xmlns='vcard-temp'/><vCard xmlns='vcard-temp'/>"),
        "host capulet.example, user juliet: module data of store \"vcard\" under key \"vcard\" appears twice"
    );
    assert_eq!(
        error(
            "<query xmlns='jabber:iq:private'><a xmlns='urn:example:a'/></query>\
             <module-data xmlns='urn:starling:pie:module-data:0' store='private' key='a:urn:example:a'/>"
        ),
        "host capulet.example, user juliet: module data of store \"private\" under key \"a:urn:example:a\" appears twice"
    );
    assert_eq!(
        error("<module-data xmlns='urn:starling:pie:module-data:0' key='k'/>"),
        "host capulet.example, user juliet: a <module-data/> has no 'store'"
    );
    assert_eq!(
        error("<module-data xmlns='urn:starling:pie:module-data:0' store='s'/>"),
        "host capulet.example, user juliet: a <module-data/> has no 'key'"
    );
    assert_eq!(
        error(
            "<module-data xmlns='urn:starling:pie:module-data:0' store='s' key='k'>!!</module-data>"
        ),
        "host capulet.example, user juliet, module data \"s\" key \"k\": the value is not base64: Invalid symbol 33, offset 0."
    );
}
