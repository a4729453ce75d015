//! Round trips and refusals of the XEP-0227 writer and reader.

use super::*;

fn jid(text: &str) -> BareJid {
    BareJid::new(text).expect("test JID is valid")
}

fn keys(hash: ScramHash, seed: u8) -> ScramKeys {
    ScramKeys {
        hash,
        salt: vec![seed, 1, 2, 3],
        iterations: 4096 + u32::from(seed),
        stored_key: vec![seed; hash.output_len()],
        server_key: vec![seed.wrapping_add(1); hash.output_len()],
    }
}

fn item(contact: &str) -> RosterItem {
    RosterItem {
        jid: jid(contact),
        name: None,
        groups: Vec::new(),
        subscription: Subscription::None,
        pending_out: false,
        approved: false,
    }
}

/// An account with every kind of data, its lists in an order the writer must sort.
fn juliet() -> AccountData {
    let mut romeo = item("romeo@montague.example");
    romeo.name = Some("Romeo & <3".to_owned());
    romeo.groups = vec!["Friends".to_owned(), "Lovers".to_owned()];
    romeo.subscription = Subscription::Both;
    let mut nurse = item("nurse@capulet.example");
    nurse.pending_out = true;
    nurse.approved = true;
    AccountData {
        jid: jid("juliet@capulet.example"),
        credentials: StoredCredentials {
            keys: vec![keys(ScramHash::Sha256, 7), keys(ScramHash::Sha1, 3)],
        },
        roster_version: 12,
        roster: vec![romeo, nurse],
        requests: vec![
            (
                jid("tybalt@capulet.example"),
                "<presence xmlns='jabber:client' type='subscribe' from='tybalt@capulet.example/sword' to='juliet@capulet.example'><status>let me in</status></presence>".to_owned(),
            ),
            // Stored without a parsable stanza: written as a plain subscribe.
            (jid("paris@verona.example"), String::new()),
        ],
        offline: vec![
            OfflineMessage {
                stored_at_unix_ms: 1_764_097_236_123,
                stanza: "<message xmlns='jabber:client' from='romeo@montague.example/orchard' type='chat'><body>Neither, fair saint</body><delay xmlns='urn:xmpp:delay' from='montague.example' stamp='2025-11-25T19:00:00Z'/></message>".to_owned(),
            },
            OfflineMessage {
                stored_at_unix_ms: 1_000,
                stanza: "<message xmlns='jabber:client'><body>older text, stored later</body></message>".to_owned(),
            },
        ],
        module_data: Vec::new(),
    }
}

fn host(accounts: Vec<AccountData>) -> HostData {
    HostData {
        host: "capulet.example".to_owned(),
        accounts,
    }
}

fn text(hosts: &[HostData]) -> String {
    String::from_utf8(write(hosts).bytes).expect("UTF-8")
}

fn read_text(text: &str) -> Result<ServerData, BackupError> {
    read(text.as_bytes(), 99)
}

fn error(text: &str) -> String {
    read_text(text).expect_err("must be refused").to_string()
}

/// A file with one user whose body is `inner`.
fn user_file(inner: &str) -> String {
    format!(
        "<server-data xmlns='urn:xmpp:pie:0'><host jid='capulet.example'>\
         <user name='juliet'>{inner}</user></host></server-data>"
    )
}

#[test]
fn a_small_backup_looks_like_the_xep() {
    let mut account = AccountData::new(
        jid("juliet@capulet.example"),
        StoredCredentials {
            keys: vec![keys(ScramHash::Sha1, 0)],
        },
    );
    let mut romeo = item("romeo@montague.example");
    romeo.subscription = Subscription::To;
    romeo.groups = vec!["Friends".to_owned()];
    account.roster = vec![romeo];
    account.roster_version = 2;
    account.requests = vec![(jid("nurse@capulet.example"), String::new())];
    account.offline = vec![OfflineMessage {
        stored_at_unix_ms: 0,
        stanza: "<message xmlns='jabber:client'><body>hi</body></message>".to_owned(),
    }];
    assert_eq!(
        text(&[host(vec![account])]),
        "<?xml version='1.0' encoding='utf-8'?>
<server-data xmlns='urn:xmpp:pie:0'>
  <host jid='capulet.example'>
    <user name='juliet'>
      <scram-credentials xmlns='urn:xmpp:pie:0#scram' mechanism='SCRAM-SHA-1'>
        <iter-count>4096</iter-count>
        <salt>AAECAw==</salt>
        <server-key>AQEBAQEBAQEBAQEBAQEBAQEBAQE=</server-key>
        <stored-key>AAAAAAAAAAAAAAAAAAAAAAAAAAA=</stored-key>
      </scram-credentials>
      <query xmlns='jabber:iq:roster' ver='2'>
        <item jid='romeo@montague.example' subscription='to'><group>Friends</group></item>
      </query>
      <presence xmlns='jabber:client' from='nurse@capulet.example' to='juliet@capulet.example' type='subscribe'/>
      <offline-messages>
        <message xmlns='jabber:client'><body>hi</body><delay xmlns='urn:xmpp:delay' from='capulet.example' stamp='1970-01-01T00:00:00.000Z'>Offline Storage</delay></message>
      </offline-messages>
    </user>
  </host>
</server-data>
"
    );
}

#[test]
fn round_trip_keeps_every_field() {
    let original = juliet();
    let data = read(&write(&[host(vec![original.clone()])]).bytes, 99).expect("reads back");
    assert!(data.warnings.is_empty(), "{:?}", data.warnings);
    let [imported] = data.hosts.as_slice() else {
        panic!("one host")
    };
    assert_eq!(imported.host, "capulet.example");
    let [account] = imported.accounts.as_slice() else {
        panic!("one user")
    };
    assert_eq!(account.password, None);
    let data = &account.data;
    assert_eq!(data.jid, original.jid);
    // Keys in hash order, byte for byte.
    assert!(data.credentials.keys == vec![keys(ScramHash::Sha1, 3), keys(ScramHash::Sha256, 7)]);
    assert_eq!(data.roster_version, 12);
    let mut roster = original.roster.clone();
    roster.sort_by(|a, b| a.jid.cmp(&b.jid));
    assert_eq!(data.roster, roster);
    let requesters: Vec<&BareJid> = data.requests.iter().map(|(c, _)| c).collect();
    assert_eq!(
        requesters,
        [&jid("tybalt@capulet.example"), &jid("paris@verona.example")]
    );
    assert!(data.requests[0].1.contains("<status>let me in</status>"));
    // Storage times come back from our own delay; the sender's server's delay stays.
    let times: Vec<u64> = data.offline.iter().map(|m| m.stored_at_unix_ms).collect();
    assert_eq!(times, [1_764_097_236_123, 1_000]);
    assert!(
        data.offline[0]
            .stanza
            .contains("<delay xmlns='urn:xmpp:delay' from='montague.example'"),
        "{}",
        data.offline[0].stanza
    );
    assert!(!data.offline[0].stanza.contains("Offline Storage"));
    assert!(!data.offline[1].stanza.contains("delay"));
}

#[test]
fn writing_is_deterministic_and_a_restored_backup_writes_the_same_bytes() {
    let mut other = AccountData::new(jid("nurse@capulet.example"), StoredCredentials::default());
    other.roster = vec![item("b@x.example"), item("a@x.example")];
    let first = write(&[host(vec![juliet(), other.clone()])]).bytes;
    let mut shuffled = juliet();
    shuffled.roster.reverse();
    shuffled.credentials.keys.reverse();
    let second = write(&[host(vec![other, shuffled])]).bytes;
    assert_eq!(first, second);
    let data = read(&first, 99).expect("reads back");
    let hosts: Vec<HostData> = data
        .hosts
        .into_iter()
        .map(|h| HostData {
            host: h.host,
            accounts: h.accounts.into_iter().map(|a| a.data).collect(),
        })
        .collect();
    assert_eq!(
        String::from_utf8(write(&hosts).bytes).expect("UTF-8"),
        String::from_utf8(first).expect("UTF-8")
    );
}

#[test]
fn an_unparsable_stored_message_is_skipped_with_a_warning() {
    let mut account = juliet();
    account.offline[0].stanza = "<message".to_owned();
    let written = write(&[host(vec![account])]);
    assert_eq!(written.warnings.len(), 1);
    assert!(
        written.warnings[0]
            .starts_with("host capulet.example, user juliet: offline message 1 was skipped"),
        "{:?}",
        written.warnings
    );
    let data = read(&written.bytes, 99).expect("reads back");
    assert_eq!(data.hosts[0].accounts[0].data.offline.len(), 1);
}

#[test]
fn plaintext_passwords_unknown_data_and_missing_stamps() {
    let data = read_text(&user_file(
        "<pubsub xmlns='http://jabber.org/protocol/pubsub'><items node='x'/></pubsub>\
         <scram-credentials xmlns='urn:xmpp:pie:0#scram' mechanism='SCRAM-SHA-512'/>\
         <offline-messages><message xmlns='jabber:client'><body>x</body></message></offline-messages>",
    )
    .replace("name='juliet'", "name='juliet' password='s3crEt'"))
    .expect("reads");
    let account = &data.hosts[0].accounts[0];
    assert_eq!(
        account.password.as_ref().map(Password::expose),
        Some("s3crEt")
    );
    assert_eq!(account.data.offline[0].stored_at_unix_ms, 99);
    assert_eq!(
        data.warnings,
        [
            "host capulet.example, user juliet: skipped <pubsub xmlns='http://jabber.org/protocol/pubsub'>, which Starling does not keep",
            "host capulet.example, user juliet: skipped \"SCRAM-SHA-512\" credentials, a mechanism Starling does not offer",
        ]
    );
}

#[test]
fn an_account_with_no_credentials_is_read_with_a_warning() {
    let data = read_text(&user_file("")).expect("reads");
    assert!(data.hosts[0].accounts[0].data.credentials.keys.is_empty());
    assert_eq!(data.warnings.len(), 1);
    assert!(data.warnings[0].contains("cannot log in until `starling passwd`"));
}

#[test]
fn refusals_name_the_place_and_the_reason() {
    assert_eq!(
        error("<server-data xmlns='urn:xmpp:pie:0'><host"),
        "not well-formed XML: invalid eof in name"
    );
    assert_eq!(
        error("<backup xmlns='urn:example'/>"),
        "document: the root element is <backup xmlns='urn:example'>, not XEP-0227's <server-data xmlns='urn:xmpp:pie:0'>"
    );
    assert_eq!(
        error("<server-data xmlns='urn:xmpp:pie:0'><host/></server-data>"),
        "a <host/>: it has no 'jid' attribute"
    );
    assert_eq!(
        error(
            "<server-data xmlns='urn:xmpp:pie:0'><host jid='a.example'/><host jid='A.example'/></server-data>"
        ),
        "host a.example: the host appears twice"
    );
    assert_eq!(
        error(
            "<server-data xmlns='urn:xmpp:pie:0'><host jid='capulet.example'><user name='a'/><user name='a'/></host></server-data>"
        ),
        "host capulet.example, user a@capulet.example: the user appears twice"
    );
    assert_eq!(
        error(&user_file(
            "<scram-credentials xmlns='urn:xmpp:pie:0#scram' mechanism='SCRAM-SHA-1'>\
             <iter-count>4096</iter-count><salt>c2FsdA==</salt>\
             <server-key>AAAA</server-key><stored-key>AAAA</stored-key></scram-credentials>"
        )),
        "host capulet.example, user juliet, SCRAM-SHA-1 credentials: <stored-key/> is 3 bytes, not the 20 of SCRAM-SHA-1"
    );
    assert_eq!(
        error(&user_file(
            "<scram-credentials xmlns='urn:xmpp:pie:0#scram' mechanism='SCRAM-SHA-1'>\
             <iter-count>0</iter-count></scram-credentials>"
        )),
        "host capulet.example, user juliet, SCRAM-SHA-1 credentials: <iter-count/> is not a positive 32-bit number"
    );
    // Issue 15: an absurd count would make every PLAIN attempt on the account stall a core.
    assert_eq!(
        error(&user_file(
            "<scram-credentials xmlns='urn:xmpp:pie:0#scram' mechanism='SCRAM-SHA-1'>\
             <iter-count>4294967295</iter-count></scram-credentials>"
        )),
        "host capulet.example, user juliet, SCRAM-SHA-1 credentials: <iter-count/>: PBKDF2 iteration count 4294967295 is over the limit of 600000"
    );
    assert_eq!(
        error(&user_file(
            "<scram-credentials xmlns='urn:xmpp:pie:0#scram' mechanism='SCRAM-SHA-1'>\
             <iter-count>1</iter-count><salt>!!</salt></scram-credentials>"
        )),
        "host capulet.example, user juliet, SCRAM-SHA-1 credentials: <salt/> is not base64: Invalid symbol 33, offset 0."
    );
    assert_eq!(
        error(&user_file(
            "<query xmlns='jabber:iq:roster'><item jid='a@b/c'/></query>"
        )),
        "host capulet.example, user juliet, roster item a@b/c: a roster item's JID has no resource"
    );
    assert_eq!(
        error(&user_file(
            "<query xmlns='jabber:iq:roster'><item jid='a@b' subscription='remove'/></query>"
        )),
        "host capulet.example, user juliet, roster item a@b: unknown subscription \"remove\""
    );
    assert_eq!(
        error(&user_file(
            "<query xmlns='jabber:iq:roster'><item jid='a@b'/><item jid='A@b'/></query>"
        )),
        "host capulet.example, user juliet, roster item a@b: the contact appears twice"
    );
    assert_eq!(
        error(&user_file(
            "<presence xmlns='jabber:client' type='subscribe'/>"
        )),
        "host capulet.example, user juliet: a subscription request has no 'from'"
    );
    assert_eq!(
        error(
            "<server-data xmlns='urn:xmpp:pie:0' xmlns:xi='http://www.w3.org/2001/XInclude'>\
             <xi:include href='capulet.example.xml'/></server-data>"
        ),
        "server-data: XInclude (<include/>) is not supported; merge the files into one first"
    );
}

#[test]
fn input_is_bounded() {
    let deep = user_file(&format!(
        "<offline-messages>{}{}</offline-messages>",
        "<x xmlns='urn:example'>".repeat(MAX_DEPTH),
        "</x>".repeat(MAX_DEPTH)
    ));
    assert_eq!(
        error(&deep),
        format!("elements nest deeper than {MAX_DEPTH} levels")
    );
}

#[test]
fn the_old_namespace_and_version_attribute_are_read() {
    let data = read_text(
        "<server-data xmlns='http://www.xmpp.org/extensions/xep-0227.html#ns'>\
         <host jid='capulet.example'><user name='juliet'>\
         <query xmlns='jabber:iq:roster' version='5'><item jid='romeo@montague.example'/></query>\
         </user></host></server-data>",
    )
    .expect("reads");
    assert_eq!(data.hosts[0].accounts[0].data.roster_version, 5);
    let data = read_text(&user_file(
        "<query xmlns='jabber:iq:roster'><item jid='romeo@montague.example'/></query>",
    ))
    .expect("reads");
    // No version, but items: not the empty roster's 0.
    assert_eq!(data.hosts[0].accounts[0].data.roster_version, 1);
}
