//! Service answers, checked as serialized XML.

use expect_test::{Expect, expect};

use std::sync::Arc;

use starling_modules::{AddressForm, IqAnswer, IqTarget, ModuleSet};

use super::*;

const CLOCK: Clock = Clock {
    unix_seconds: 1_166_551_115,
    uptime_seconds: 42,
};

/// Who an iq is addressed to in these tests.
#[derive(Clone, Copy)]
enum Target {
    Server,
    Account,
}

fn modules() -> ModuleSet {
    let clock: ClockSource = Arc::new(|| CLOCK);
    ModuleSet::build(vec![
        Arc::new(Ping),
        Arc::new(Version),
        Arc::new(Time(clock.clone())),
        Arc::new(Uptime(clock)),
    ])
    .unwrap()
}

/// Dispatch `iq` through the module set as the router does: `None` when nothing answers.
fn dispatch(target: Target, iq: &Element) -> Option<IqAnswer> {
    let set = modules();
    let stanza = starling_stanza::Stanza::try_from(iq.clone()).unwrap();
    let (iq_type, payload) = stanza.iq().unwrap();
    let payload = payload.unwrap();
    let from = jid::FullJid::new("juliet@example.com/balcony").unwrap();
    let account = from.to_bare();
    let (form, to) = match target {
        Target::Server => (AddressForm::Server, IqTarget::Server("example.com")),
        Target::Account => (
            AddressForm::Bare,
            IqTarget::Account {
                jid: &account,
                is_own: true,
            },
        ),
    };
    let handler = set.iq_handler(form, iq_type, &payload.ns())?;
    let request = IqRequest {
        from: &from,
        to,
        iq_type,
        payload,
        stanza: &stanza,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    Some(runtime.block_on(handler.handle(request)))
}

fn check(target: Target, iq: &str, expected: Expect) {
    let iq: Element = iq.parse().unwrap();
    let rendered = match dispatch(target, &iq) {
        None => "unhandled".to_owned(),
        Some(Err(rejection)) => format!("error {}", rejection.condition.name()),
        Some(Ok(None)) => "empty result".to_owned(),
        Some(Ok(Some(payload))) => {
            let mut out = Vec::new();
            payload.write_to(&mut out).unwrap();
            String::from_utf8(out).unwrap()
        }
    };
    expected.assert_eq(&rendered);
}

#[test]
fn server_disco_info_lists_exactly_the_answered_features() {
    check(
        Target::Server,
        "<iq xmlns='jabber:client' type='get' id='d'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>",
        expect![
            "<query xmlns='http://jabber.org/protocol/disco#info'><identity category='server' name='Starling' type='im'/><feature var='http://jabber.org/protocol/disco#info'/><feature var='http://jabber.org/protocol/disco#items'/><feature var='jabber:iq:last'/><feature var='jabber:iq:version'/><feature var='urn:xmpp:ping'/><feature var='urn:xmpp:time'/></query>"
        ],
    );
}

#[test]
fn every_advertised_server_feature_is_answered() {
    for feature in &modules().server_info().features {
        let name = match feature.as_str() {
            NS_TIME => "time",
            starling_stanza::NS_PING => "ping",
            _ => "query",
        };
        let iq: Element =
            format!("<iq xmlns='jabber:client' type='get' id='x'><{name} xmlns='{feature}'/></iq>")
                .parse()
                .unwrap();
        assert!(
            matches!(dispatch(Target::Server, &iq), Some(Ok(_))),
            "{feature} is advertised but not answered"
        );
    }
}

#[test]
fn account_disco_info_is_a_registered_account() {
    check(
        Target::Account,
        "<iq xmlns='jabber:client' type='get' id='d'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>",
        expect![[
            r#"<query xmlns='http://jabber.org/protocol/disco#info'><identity category='account' type='registered'/><feature var='http://jabber.org/protocol/disco#info'/><feature var='http://jabber.org/protocol/disco#items'/><feature var='urn:xmpp:ping'/></query>"#
        ]],
    );
}

#[test]
fn disco_node_is_item_not_found() {
    check(
        Target::Server,
        "<iq xmlns='jabber:client' type='get' id='d'><query xmlns='http://jabber.org/protocol/disco#info' node='x'/></iq>",
        expect!["error item-not-found"],
    );
}

#[test]
fn disco_items_is_empty() {
    check(
        Target::Server,
        "<iq xmlns='jabber:client' type='get' id='d'><query xmlns='http://jabber.org/protocol/disco#items'/></iq>",
        expect![[r#"<query xmlns='http://jabber.org/protocol/disco#items'/>"#]],
    );
}

#[test]
fn version_time_and_last() {
    check(
        Target::Server,
        "<iq xmlns='jabber:client' type='get' id='v'><query xmlns='jabber:iq:version'/></iq>",
        expect![[
            r#"<query xmlns='jabber:iq:version'><name>Starling</name><version>0.1.0</version></query>"#
        ]],
    );
    check(
        Target::Server,
        "<iq xmlns='jabber:client' type='get' id='t'><time xmlns='urn:xmpp:time'/></iq>",
        expect![[
            r#"<time xmlns='urn:xmpp:time'><tzo>+00:00</tzo><utc>2006-12-19T17:58:35Z</utc></time>"#
        ]],
    );
    check(
        Target::Server,
        "<iq xmlns='jabber:client' type='get' id='l'><query xmlns='jabber:iq:last'/></iq>",
        expect![[r#"<query xmlns='jabber:iq:last' seconds='42'/>"#]],
    );
}

#[test]
fn ping_and_its_misuse() {
    check(
        Target::Account,
        "<iq xmlns='jabber:client' type='get' id='p'><ping xmlns='urn:xmpp:ping'/></iq>",
        expect!["empty result"],
    );
    check(
        Target::Server,
        "<iq xmlns='jabber:client' type='set' id='p'><ping xmlns='urn:xmpp:ping'/></iq>",
        expect!["error bad-request"],
    );
}

#[test]
fn set_on_read_only_services_is_not_allowed() {
    check(
        Target::Server,
        "<iq xmlns='jabber:client' type='set' id='v'><query xmlns='jabber:iq:version'/></iq>",
        expect!["error not-allowed"],
    );
}

#[test]
fn account_does_not_answer_server_only_services() {
    check(
        Target::Account,
        "<iq xmlns='jabber:client' type='get' id='v'><query xmlns='jabber:iq:version'/></iq>",
        expect!["unhandled"],
    );
    check(
        Target::Server,
        "<iq xmlns='jabber:client' type='get' id='v'><query xmlns='urn:example:none'/></iq>",
        expect!["unhandled"],
    );
}
