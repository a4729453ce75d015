//! What the server answers itself: iq requests addressed to a host or, on an account's behalf,
//! to a bare JID (RFC 6121 §8.5.2.1.3 — the server answers iqs sent to a bare JID).
//!
//! Each service is a pure function of the request and a [`Clock`] snapshot the caller supplies,
//! so the crate never reads time itself. [`server_features`] is the one list the disco#info answer
//! is built from, and [`answer`] handles exactly those namespaces, so the server never advertises
//! a feature it does not implement (XEP-0030 §3.1) and answers every feature it advertises.
//!
//! Versions implemented: XEP-0030 2.5, XEP-0199 2.0, XEP-0092 1.1, XEP-0202 2.0, XEP-0012 2.0.
//!
//! ```
//! use starling_services::{answer, Clock, Target};
//!
//! let iq: minidom::Element = "<iq xmlns='jabber:client' type='get' id='v1'>\
//!     <query xmlns='jabber:iq:version'/></iq>".parse().unwrap();
//! let clock = Clock { unix_seconds: 0, uptime_seconds: 5 };
//! let payload = answer(Target::Server, &iq, &clock).unwrap().unwrap().unwrap();
//! assert_eq!(payload.get_child("name", "jabber:iq:version").unwrap().text(), "Starling");
//! ```
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

mod time;

use minidom::Element;
use minidom::rxml::xml_ncname;
use starling_stanza::{
    NS_DISCO_INFO, NS_DISCO_ITEMS, NS_LAST, NS_TIME, NS_VERSION, StanzaErrorCondition, set_attr,
};
/// The software name reported by XEP-0092.
pub const SOFTWARE_NAME: &str = "Starling";

/// Who an iq is addressed to, from the server's point of view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// A host of this server.
    Server,
    /// An existing local account's bare JID; the server answers on its behalf.
    Account,
}

/// The time facts services need, read by the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Clock {
    /// Seconds since the Unix epoch, UTC.
    pub unix_seconds: u64,
    /// Seconds since the server started.
    pub uptime_seconds: u64,
}

/// Features a host advertises in disco#info, in the order listed.
pub fn server_features() -> &'static [&'static str] {
    &[
        NS_DISCO_INFO,
        NS_DISCO_ITEMS,
        starling_stanza::NS_PING,
        NS_VERSION,
        NS_TIME,
        NS_LAST,
    ]
}

/// Features an account advertises (answered by the server on its behalf).
pub fn account_features() -> &'static [&'static str] {
    &[NS_DISCO_INFO, NS_DISCO_ITEMS, starling_stanza::NS_PING]
}

/// Answer an iq get or set addressed to `target`.
///
/// `None`: no service here handles this payload (the caller answers `service-unavailable`,
/// RFC 6120 §8.3.3.19). `Some(Ok(payload))`: a result, with `payload` as its child (`None` for
/// an empty result). `Some(Err(condition))`: an error reply.
pub fn answer(
    target: Target,
    iq: &Element,
    clock: &Clock,
) -> Option<Result<Option<Element>, StanzaErrorCondition>> {
    let is_get = iq.attr("type") == Some("get");
    let payload = iq.children().next()?;
    let namespace = payload.ns();
    let advertised = match target {
        Target::Server => server_features(),
        Target::Account => account_features(),
    };
    if !advertised.contains(&namespace.as_str()) {
        return None;
    }
    if namespace == starling_stanza::NS_PING {
        // XEP-0199 §4: a ping is an iq get; an empty result is the pong.
        return Some(if is_get && payload.name() == "ping" {
            Ok(None)
        } else {
            Err(StanzaErrorCondition::BadRequest)
        });
    }
    if !is_get {
        // Every other service here is read-only.
        return Some(Err(StanzaErrorCondition::NotAllowed));
    }
    if payload.name() != "query" && namespace != NS_TIME {
        return Some(Err(StanzaErrorCondition::BadRequest));
    }
    Some(match namespace.as_str() {
        NS_DISCO_INFO => disco_info(target, payload),
        NS_DISCO_ITEMS => disco_items(payload),
        NS_VERSION => Ok(Some(version())),
        NS_TIME if payload.name() == "time" => Ok(Some(time::entity_time(clock.unix_seconds))),
        NS_LAST => Ok(Some(last_activity(clock.uptime_seconds))),
        _ => Err(StanzaErrorCondition::BadRequest),
    })
}

fn disco_info(target: Target, query: &Element) -> Result<Option<Element>, StanzaErrorCondition> {
    if query.attr("node").is_some() {
        // XEP-0030 §3.2: we publish no nodes.
        return Err(StanzaErrorCondition::ItemNotFound);
    }
    let (category, kind, features) = match target {
        Target::Server => ("server", "im", server_features()),
        Target::Account => ("account", "registered", account_features()),
    };
    let mut identity = Element::builder("identity", NS_DISCO_INFO).build();
    set_attr(&mut identity, xml_ncname!("category"), Some(category));
    set_attr(&mut identity, xml_ncname!("type"), Some(kind));
    if target == Target::Server {
        set_attr(&mut identity, xml_ncname!("name"), Some(SOFTWARE_NAME));
    }
    let mut reply = Element::builder("query", NS_DISCO_INFO)
        .append(identity)
        .build();
    for feature in features {
        let mut element = Element::builder("feature", NS_DISCO_INFO).build();
        set_attr(&mut element, xml_ncname!("var"), Some(feature));
        reply.append_child(element);
    }
    Ok(Some(reply))
}

fn disco_items(query: &Element) -> Result<Option<Element>, StanzaErrorCondition> {
    if query.attr("node").is_some() {
        return Err(StanzaErrorCondition::ItemNotFound);
    }
    // No components or published items yet: an empty list is the truthful answer.
    Ok(Some(Element::builder("query", NS_DISCO_ITEMS).build()))
}

fn version() -> Element {
    // XEP-0092 §2: name and version; the operating system is optional and left out because it
    // tells an attacker more than it tells a user.
    Element::builder("query", NS_VERSION)
        .append(
            Element::builder("name", NS_VERSION)
                .append(SOFTWARE_NAME)
                .build(),
        )
        .append(
            Element::builder("version", NS_VERSION)
                .append(env!("CARGO_PKG_VERSION"))
                .build(),
        )
        .build()
}

fn last_activity(uptime_seconds: u64) -> Element {
    // XEP-0012 §5: to a server, `seconds` is the time since it started.
    let mut query = Element::builder("query", NS_LAST).build();
    set_attr(
        &mut query,
        xml_ncname!("seconds"),
        Some(&uptime_seconds.to_string()),
    );
    query
}

#[cfg(test)]
mod tests;
