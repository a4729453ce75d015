//! XEP-0115 verification strings against the examples of §5.2 and §5.3, and the module in a
//! `ModuleSet`.

use jid::FullJid;
use starling_modules::{AddressForm, IqAnswer, IqRequest, IqTarget, ModuleSet, StreamStage};
use starling_stanza::{IqType, NS_DISCO_INFO, Stanza, StanzaErrorCondition};

use super::*;

fn identity(category: &str, kind: &str, lang: Option<&str>, name: &str) -> Identity {
    Identity {
        category: category.to_owned(),
        kind: kind.to_owned(),
        lang: lang.map(str::to_owned),
        name: Some(name.to_owned()),
    }
}

fn features(info: &mut DiscoInfo, vars: &[&str]) {
    info.features
        .extend(vars.iter().map(|var| (*var).to_owned()));
}

#[test]
fn the_simple_example_of_section_5_2() {
    let mut info = DiscoInfo::default();
    info.identities
        .insert(identity("client", "pc", None, "Exodus 0.9.1"));
    features(
        &mut info,
        &[
            "http://jabber.org/protocol/muc",
            "http://jabber.org/protocol/disco#info",
            "http://jabber.org/protocol/caps",
            "http://jabber.org/protocol/disco#items",
        ],
    );
    assert_eq!(
        verification_input(&info),
        "client/pc//Exodus 0.9.1<http://jabber.org/protocol/caps<\
         http://jabber.org/protocol/disco#info<http://jabber.org/protocol/disco#items<\
         http://jabber.org/protocol/muc<"
    );
    assert_eq!(verification_string(&info), "QgayPKawpkPSDYmwT/WM94uAlu0=");
}

fn complex() -> DiscoInfo {
    let mut info = DiscoInfo::default();
    info.identities
        .insert(identity("client", "pc", Some("en"), "Psi 0.11"));
    info.identities
        .insert(identity("client", "pc", Some("el"), "\u{3a8} 0.11"));
    features(
        &mut info,
        &[
            "http://jabber.org/protocol/caps",
            "http://jabber.org/protocol/disco#info",
            "http://jabber.org/protocol/disco#items",
            "http://jabber.org/protocol/muc",
        ],
    );
    // Fields out of order, to show they are sorted.
    info.forms.push(
        "<x xmlns='jabber:x:data' type='result'>\
           <field var='software_version'><value>0.11</value></field>\
           <field var='FORM_TYPE' type='hidden'><value>urn:xmpp:dataforms:softwareinfo</value></field>\
           <field var='ip_version' type='text-multi'><value>ipv6</value><value>ipv4</value></field>\
           <field var='os'><value>Mac</value></field>\
           <field var='os_version'><value>10.5.1</value></field>\
           <field var='software'><value>Psi</value></field>\
         </x>"
            .parse()
            .unwrap(),
    );
    info
}

#[test]
fn the_complex_example_of_section_5_3() {
    let info = complex();
    assert_eq!(
        verification_input(&info),
        "client/pc/el/\u{3a8} 0.11<client/pc/en/Psi 0.11<http://jabber.org/protocol/caps<\
         http://jabber.org/protocol/disco#info<http://jabber.org/protocol/disco#items<\
         http://jabber.org/protocol/muc<urn:xmpp:dataforms:softwareinfo<\
         ip_version<ipv4<ipv6<os<Mac<os_version<10.5.1<software<Psi<software_version<0.11<"
    );
    assert_eq!(verification_string(&info), "q07IKJEyjvHSyhy//CH0CxmKi8w=");
}

#[test]
fn forms_are_sorted_by_form_type_and_forms_a_receiver_ignores_are_left_out() {
    let base = complex();
    let mut info = complex();
    // A form sorting before the software info one.
    info.forms.insert(
        0,
        "<x xmlns='jabber:x:data' type='result'>\
           <field var='FORM_TYPE' type='hidden'><value>urn:xmpp:zzz</value></field>\
           <field var='a'/>\
         </x>"
            .parse()
            .unwrap(),
    );
    assert!(
        verification_input(&info).ends_with("software_version<0.11<urn:xmpp:zzz<a<"),
        "{}",
        verification_input(&info)
    );
    // Without FORM_TYPE, with a FORM_TYPE that is not hidden, or not a data form: ignored.
    let mut ignored = complex();
    for form in [
        "<x xmlns='jabber:x:data' type='result'><field var='a'><value>b</value></field></x>",
        "<x xmlns='jabber:x:data' type='result'><field var='FORM_TYPE'><value>urn:x</value></field></x>",
        "<x xmlns='urn:other'><field var='FORM_TYPE' type='hidden'><value>urn:x</value></field></x>",
    ] {
        ignored.forms.push(form.parse().unwrap());
    }
    assert_eq!(verification_string(&ignored), verification_string(&base));
}

// The module through a ModuleSet.

async fn disco_info(set: &ModuleSet, node: Option<&str>) -> IqAnswer {
    let query = match node {
        Some(node) => format!("<query xmlns='{NS_DISCO_INFO}' node='{node}'/>"),
        None => format!("<query xmlns='{NS_DISCO_INFO}'/>"),
    };
    let element: Element =
        format!("<iq xmlns='jabber:client' type='get' id='d1' to='localhost'>{query}</iq>")
            .parse()
            .unwrap();
    let stanza = Stanza::try_from(element).unwrap();
    let from: FullJid = "alice@localhost/desk".parse().unwrap();
    let payload = stanza.element().children().next().unwrap();
    set.iq_handler(AddressForm::Server, IqType::Get, NS_DISCO_INFO)
        .unwrap()
        .handle(IqRequest {
            from: &from,
            to: IqTarget::Server("localhost"),
            iq_type: IqType::Get,
            payload,
            stanza: &stanza,
        })
        .await
}

#[tokio::test]
async fn the_server_offers_its_caps_as_a_stream_feature_and_answers_the_caps_node() {
    let set = ModuleSet::build(vec![Arc::new(Caps::new("https://starling.example/caps"))]).unwrap();
    assert_eq!(set.names(), ["caps"]);
    let info = set.server_info();
    assert!(info.features.contains(NS_CAPS));
    let ver = verification_string(info);
    let expected: Element = format!(
        "<c xmlns='{NS_CAPS}' hash='sha-1' node='https://starling.example/caps' ver='{ver}'/>"
    )
    .parse()
    .unwrap();
    for stage in [StreamStage::Unauthenticated, StreamStage::Authenticated] {
        assert_eq!(set.stream_features(stage), std::slice::from_ref(&expected));
    }
    // The hash covers what disco#info answers: the server identity, disco and caps.
    assert_eq!(
        verification_input(info),
        "server/im//Starling<http://jabber.org/protocol/caps<\
         http://jabber.org/protocol/disco#info<http://jabber.org/protocol/disco#items<"
    );
    let node = format!("https://starling.example/caps#{ver}");
    let answer = disco_info(&set, Some(&node)).await.unwrap().unwrap();
    assert_eq!(answer.attr("node"), Some(node.as_str()));
    assert_eq!(answer, info.to_element(Some(&node)));
    assert_eq!(
        disco_info(&set, Some("https://starling.example/caps#other"))
            .await
            .unwrap_err()
            .condition,
        StanzaErrorCondition::ItemNotFound
    );
}

#[test]
fn the_default_node_is_the_repository() {
    assert_eq!(DEFAULT_NODE, "https://example.invalid/starling");
    assert_eq!(Caps::default().node, DEFAULT_NODE);
}
