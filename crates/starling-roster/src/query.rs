//! `jabber:iq:roster` queries (RFC 6121 §2), with versioning (§2.6, formerly XEP-0237).

use std::collections::HashSet;

use jid::BareJid;
use minidom::Element;
use rxml::xml_ncname;
use starling_stanza::{
    IqType, NS_PRE_APPROVAL, NS_ROSTER, NS_ROSTER_VERSIONING, StanzaErrorCondition, set_attr,
};
use starling_storage::RosterItem;

/// The stream features a server using this crate offers after authentication:
/// `<ver xmlns='urn:xmpp:features:rosterver'/>` and `<sub xmlns='urn:xmpp:features:pre-approval'/>`.
pub fn stream_features() -> Vec<Element> {
    vec![
        Element::builder("ver", NS_ROSTER_VERSIONING).build(),
        Element::builder("sub", NS_PRE_APPROVAL).build(),
    ]
}

/// Bounds on what a client may store in its roster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RosterLimits {
    /// Items per roster; adding one more (by roster set or subscription) is
    /// `policy-violation`, enforced by storage (`RosterStore::apply`).
    pub max_items: usize,
    /// Bytes of an item's name; longer is `not-acceptable` (RFC 6121 §2.3.3).
    pub max_name_bytes: usize,
    /// Bytes of a group name; longer (or empty) is `not-acceptable`.
    pub max_group_bytes: usize,
    /// Groups per item; more is `not-acceptable`.
    pub max_groups_per_item: usize,
}

impl Default for RosterLimits {
    fn default() -> Self {
        Self {
            max_items: 1000,
            max_name_bytes: 1024,
            max_group_bytes: 1024,
            max_groups_per_item: 64,
        }
    }
}

/// A parsed roster request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RosterRequest {
    /// Roster get; `ver` is the version the client already has (RFC 6121 §2.6.2).
    Get {
        /// The client's cached version, if it sent one.
        ver: Option<String>,
    },
    /// Add or update one item (name and groups only; subscription state is the server's).
    Update {
        /// The contact.
        jid: BareJid,
        /// The new name.
        name: Option<String>,
        /// The new groups.
        groups: Vec<String>,
    },
    /// Remove one item (`subscription='remove'`, RFC 6121 §2.5).
    Remove {
        /// The contact.
        jid: BareJid,
    },
}

/// Parse the `<query xmlns='jabber:iq:roster'/>` of a roster get or set.
pub fn parse_request(
    iq_type: IqType,
    query: &Element,
    limits: &RosterLimits,
) -> Result<RosterRequest, StanzaErrorCondition> {
    match iq_type {
        IqType::Get => Ok(RosterRequest::Get {
            ver: query.attr("ver").map(str::to_owned),
        }),
        IqType::Set => parse_set(query, limits),
        IqType::Result | IqType::Error => Err(StanzaErrorCondition::BadRequest),
    }
}

fn parse_set(
    query: &Element,
    limits: &RosterLimits,
) -> Result<RosterRequest, StanzaErrorCondition> {
    let mut items = query.children().filter(|c| c.is("item", NS_ROSTER));
    // RFC 6121 §2.3.3: a roster set carries exactly one item.
    let (Some(item), None) = (items.next(), items.next()) else {
        return Err(StanzaErrorCondition::BadRequest);
    };
    let jid = item.attr("jid").ok_or(StanzaErrorCondition::BadRequest)?;
    // The address must survive normalisation, or it could be stored but never read back.
    let jid = starling_stanza::parse_jid(jid)
        .map_err(|_| StanzaErrorCondition::BadRequest)?
        .into_bare();
    // RFC 6121 §2.1.2.5: only `remove` means anything in a set; other values are ignored.
    if item.attr("subscription") == Some("remove") {
        return Ok(RosterRequest::Remove { jid });
    }
    let name = item
        .attr("name")
        .filter(|n| !n.is_empty())
        .map(str::to_owned);
    if name
        .as_ref()
        .is_some_and(|n| n.len() > limits.max_name_bytes)
    {
        return Err(StanzaErrorCondition::NotAcceptable);
    }
    let groups = parse_groups(item, limits)?;
    Ok(RosterRequest::Update { jid, name, groups })
}

/// The `<group/>` children of a roster set's item, in order. The count is checked as each one
/// is read, so a stanza with thousands of groups costs at most `max_groups_per_item + 1`
/// texts, and duplicates are found through a set, not by comparing every pair.
fn parse_groups(
    item: &Element,
    limits: &RosterLimits,
) -> Result<Vec<String>, StanzaErrorCondition> {
    let mut groups: Vec<String> = Vec::new();
    let mut seen: HashSet<String> = HashSet::new();
    for group in item.children().filter(|c| c.is("group", NS_ROSTER)) {
        if groups.len() >= limits.max_groups_per_item {
            return Err(StanzaErrorCondition::NotAcceptable);
        }
        let text = group.text();
        if text.is_empty() || text.len() > limits.max_group_bytes {
            return Err(StanzaErrorCondition::NotAcceptable);
        }
        // RFC 6121 §2.3.3: the same group twice is a bad request.
        if !seen.insert(text.clone()) {
            return Err(StanzaErrorCondition::BadRequest);
        }
        groups.push(text);
    }
    Ok(groups)
}

/// The version string of a roster version number.
pub fn format_version(version: u64) -> String {
    version.to_string()
}

/// `<item/>` for a roster result or push.
///
/// A name or group holding a character XML 1.0 does not allow (stored before imports checked
/// for them, or written to the database by other means) is sent without it, and a group left
/// empty is left out: one such character would end the client's stream at every roster fetch.
pub fn item_element(item: &RosterItem) -> Element {
    let mut element = Element::builder("item", NS_ROSTER).build();
    set_attr(&mut element, xml_ncname!("jid"), Some(item.jid.as_str()));
    let name = item
        .name
        .as_deref()
        .map(|name| starling_stanza::strip_illegal_xml_chars(name).0)
        .filter(|name| !name.is_empty());
    set_attr(&mut element, xml_ncname!("name"), name.as_deref());
    set_attr(
        &mut element,
        xml_ncname!("subscription"),
        Some(item.subscription.as_str()),
    );
    if item.pending_out {
        set_attr(&mut element, xml_ncname!("ask"), Some("subscribe"));
    }
    if item.approved {
        set_attr(&mut element, xml_ncname!("approved"), Some("true"));
    }
    for group in &item.groups {
        let (group, _) = starling_stanza::strip_illegal_xml_chars(group);
        if group.is_empty() {
            continue;
        }
        element.append_child(
            Element::builder("group", NS_ROSTER)
                .append(group.into_owned())
                .build(),
        );
    }
    element
}

/// `<item jid='…' subscription='remove'/>` for the push announcing a removal (RFC 6121 §2.5.2).
pub fn removed_item_element(jid: &BareJid) -> Element {
    let mut element = Element::builder("item", NS_ROSTER).build();
    set_attr(&mut element, xml_ncname!("jid"), Some(jid.as_str()));
    set_attr(&mut element, xml_ncname!("subscription"), Some("remove"));
    element
}

/// The `<query/>` of a roster result: every item and the current version.
pub fn query_result(items: &[RosterItem], version: u64) -> Element {
    let mut query = Element::builder("query", NS_ROSTER).build();
    set_attr(
        &mut query,
        xml_ncname!("ver"),
        Some(&format_version(version)),
    );
    for item in items {
        query.append_child(item_element(item));
    }
    query
}

/// A roster push (RFC 6121 §2.1.6): an iq set from the account to one interested resource.
pub fn push(item: Element, version: u64, to: &jid::FullJid, id: &str) -> Element {
    let mut query = Element::builder("query", NS_ROSTER).build();
    set_attr(
        &mut query,
        xml_ncname!("ver"),
        Some(&format_version(version)),
    );
    query.append_child(item);
    let mut iq = Element::builder("iq", starling_stanza::NS_CLIENT)
        .append(query)
        .build();
    set_attr(&mut iq, xml_ncname!("type"), Some("set"));
    set_attr(&mut iq, xml_ncname!("id"), Some(id));
    set_attr(&mut iq, xml_ncname!("to"), Some(to.as_str()));
    iq
}

#[cfg(test)]
mod tests {
    use expect_test::{Expect, expect};
    use starling_storage::Subscription;

    use super::*;

    fn parse(iq_type: IqType, xml: &str) -> Result<RosterRequest, StanzaErrorCondition> {
        parse_request(
            iq_type,
            &xml.parse().unwrap(),
            &RosterLimits {
                max_name_bytes: 8,
                ..Default::default()
            },
        )
    }

    fn render(element: &Element, expected: Expect) {
        let mut out = Vec::new();
        element.write_to(&mut out).unwrap();
        expected.assert_eq(&String::from_utf8(out).unwrap());
    }

    #[test]
    fn get_with_and_without_version() {
        assert_eq!(
            parse(IqType::Get, "<query xmlns='jabber:iq:roster'/>"),
            Ok(RosterRequest::Get { ver: None })
        );
        assert_eq!(
            parse(IqType::Get, "<query xmlns='jabber:iq:roster' ver='7'/>"),
            Ok(RosterRequest::Get {
                ver: Some("7".into())
            })
        );
    }

    #[test]
    fn set_update_and_remove() {
        assert_eq!(
            parse(
                IqType::Set,
                "<query xmlns='jabber:iq:roster'><item jid='Bob@LocalHost' name='Bob' subscription='both' ask='subscribe'><group>A</group><group>B</group></item></query>"
            ),
            Ok(RosterRequest::Update {
                jid: "bob@localhost".parse().unwrap(),
                name: Some("Bob".into()),
                groups: vec!["A".into(), "B".into()]
            })
        );
        assert_eq!(
            parse(
                IqType::Set,
                "<query xmlns='jabber:iq:roster'><item jid='bob@localhost' subscription='remove'/></query>"
            ),
            Ok(RosterRequest::Remove {
                jid: "bob@localhost".parse().unwrap()
            })
        );
    }

    #[test]
    fn set_errors_follow_rfc_6121_2_3_3() {
        let two = "<query xmlns='jabber:iq:roster'><item jid='a@localhost'/><item jid='b@localhost'/></query>";
        assert_eq!(
            parse(IqType::Set, two),
            Err(StanzaErrorCondition::BadRequest)
        );
        assert_eq!(
            parse(IqType::Set, "<query xmlns='jabber:iq:roster'/>"),
            Err(StanzaErrorCondition::BadRequest)
        );
        assert_eq!(
            parse(
                IqType::Set,
                "<query xmlns='jabber:iq:roster'><item jid='a@b@c'/></query>"
            ),
            Err(StanzaErrorCondition::BadRequest)
        );
        assert_eq!(
            parse(
                IqType::Set,
                "<query xmlns='jabber:iq:roster'><item jid='a@localhost' name='far too long'/></query>"
            ),
            Err(StanzaErrorCondition::NotAcceptable)
        );
        assert_eq!(
            parse(
                IqType::Set,
                "<query xmlns='jabber:iq:roster'><item jid='a@localhost'><group/></item></query>"
            ),
            Err(StanzaErrorCondition::NotAcceptable)
        );
        assert_eq!(
            parse(
                IqType::Set,
                "<query xmlns='jabber:iq:roster'><item jid='a@localhost'><group>X</group><group>X</group></item></query>"
            ),
            Err(StanzaErrorCondition::BadRequest)
        );
    }

    #[test]
    fn items_render_with_ask_and_approved() {
        let mut item = RosterItem::new("bob@localhost".parse().unwrap());
        item.name = Some("Bob".into());
        item.groups = vec!["Friends".into()];
        item.subscription = Subscription::From;
        item.pending_out = true;
        render(
            &query_result(&[item.clone()], 4),
            expect![[
                r#"<query xmlns='jabber:iq:roster' ver='4'><item ask='subscribe' jid='bob@localhost' name='Bob' subscription='from'><group>Friends</group></item></query>"#
            ]],
        );
        item.pending_out = false;
        item.approved = true;
        render(
            &push(
                item_element(&item),
                5,
                &"alice@localhost/phone".parse().unwrap(),
                "push1",
            ),
            expect![[
                r#"<iq xmlns='jabber:client' id='push1' to='alice@localhost/phone' type='set'><query xmlns='jabber:iq:roster' ver='5'><item approved='true' jid='bob@localhost' name='Bob' subscription='from'><group>Friends</group></item></query></iq>"#
            ]],
        );
        render(
            &removed_item_element(&"bob@localhost".parse().unwrap()),
            expect![[
                r#"<item xmlns='jabber:iq:roster' jid='bob@localhost' subscription='remove'/>"#
            ]],
        );
    }

    #[test]
    fn group_limit_is_checked_while_parsing() {
        let limits = RosterLimits {
            max_groups_per_item: 2,
            ..Default::default()
        };
        let check = |groups: &str| {
            let xml = format!(
                "<query xmlns='jabber:iq:roster'><item jid='a@localhost'>{groups}</item></query>"
            );
            parse_request(IqType::Set, &xml.parse().unwrap(), &limits)
        };
        // The third group is over the limit: refused there, before the duplicate after it
        // is even looked at.
        assert_eq!(
            check("<group>A</group><group>B</group><group>C</group><group>C</group>"),
            Err(StanzaErrorCondition::NotAcceptable)
        );
        assert_eq!(
            check("<group>A</group><group>A</group>"),
            Err(StanzaErrorCondition::BadRequest)
        );
        assert_eq!(
            check("<group>A</group><group>B</group>"),
            Ok(RosterRequest::Update {
                jid: "a@localhost".parse().unwrap(),
                name: None,
                groups: vec!["A".into(), "B".into()]
            })
        );
    }

    #[test]
    fn characters_xml_forbids_never_reach_the_stream() {
        let mut item = RosterItem::new("bob@localhost".parse().unwrap());
        item.name = Some("B\u{1}ob\u{1b}".into());
        item.groups = vec!["Fri\u{2}ends".into(), "\u{ffff}".into()];
        render(
            &item_element(&item),
            expect![[
                r#"<item xmlns='jabber:iq:roster' jid='bob@localhost' name='Bob' subscription='none'><group>Friends</group></item>"#
            ]],
        );
        item.name = Some("\u{7}".into());
        render(
            &item_element(&item),
            expect![[
                r#"<item xmlns='jabber:iq:roster' jid='bob@localhost' subscription='none'><group>Friends</group></item>"#
            ]],
        );
    }
}
