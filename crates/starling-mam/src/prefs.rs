//! XEP-0441 (0.2) message archive preferences: the default rule and the always/never lists,
//! parsed, answered, stored and matched.
//!
//! **Stored form:** module store [`crate::STORE`], key [`PREFS_KEY`], the canonical
//! `<prefs xmlns='urn:xmpp:mam:2'/>` element as answered (lists sorted, without repeats), so a
//! backup carries it as readable XML and a restore gives it back byte for byte.

use std::collections::BTreeSet;

use jid::Jid;
use minidom::Element;
use starling_stanza::StanzaErrorCondition;

use crate::NS_MAM;

/// The key of the preferences in [`crate::STORE`].
pub const PREFS_KEY: &str = "prefs";

/// What happens to messages with a JID in neither list (XEP-0441 §2.1.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DefaultRule {
    /// Archive everything.
    Always,
    /// Archive nothing.
    Never,
    /// Archive only messages with JIDs in the user's roster.
    Roster,
}

impl DefaultRule {
    /// The `default` attribute value.
    pub fn as_str(self) -> &'static str {
        match self {
            DefaultRule::Always => "always",
            DefaultRule::Never => "never",
            DefaultRule::Roster => "roster",
        }
    }

    /// The rule an attribute value names.
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "always" => Some(DefaultRule::Always),
            "never" => Some(DefaultRule::Never),
            "roster" => Some(DefaultRule::Roster),
            _ => None,
        }
    }
}

/// One account's archiving preferences.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prefs {
    /// For JIDs in neither list.
    pub default: DefaultRule,
    /// JIDs whose messages are always archived (normalised, sorted).
    pub always: BTreeSet<String>,
    /// JIDs whose messages are never archived (normalised, sorted).
    pub never: BTreeSet<String>,
}

/// Why a `<prefs/>` set was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PrefsError {
    /// No valid `default`, or a list holds something other than `<jid/>` elements.
    #[error("the default must be always, never or roster, and the lists hold <jid/> elements")]
    Malformed,
    /// A `<jid/>` does not hold a JID.
    #[error("a list holds something that is not a JID")]
    BadJid,
    /// More JIDs than the configured limit.
    #[error("more JIDs than the server keeps ({0})")]
    TooMany(usize),
}

impl PrefsError {
    /// The stanza error condition of the refusal.
    pub fn condition(self) -> StanzaErrorCondition {
        match self {
            PrefsError::Malformed => StanzaErrorCondition::BadRequest,
            PrefsError::BadJid => StanzaErrorCondition::JidMalformed,
            PrefsError::TooMany(_) => StanzaErrorCondition::PolicyViolation,
        }
    }
}

impl Prefs {
    /// Preferences with only a default and empty lists.
    pub fn with_default(default: DefaultRule) -> Self {
        Self {
            default,
            always: BTreeSet::new(),
            never: BTreeSet::new(),
        }
    }

    /// The preferences a `<prefs/>` set asks for. Both lists together may hold at most
    /// `max_jids` JIDs; missing lists are empty (§2.1.2, §2.1.3).
    pub fn parse(element: &Element, max_jids: usize) -> Result<Self, PrefsError> {
        let default = element
            .attr("default")
            .and_then(DefaultRule::parse)
            .ok_or(PrefsError::Malformed)?;
        let mut prefs = Self::with_default(default);
        for child in element.children() {
            let list = match (child.ns().as_str(), child.name()) {
                (NS_MAM, "always") => &mut prefs.always,
                (NS_MAM, "never") => &mut prefs.never,
                _ => continue,
            };
            for item in child.children() {
                if !item.is("jid", NS_MAM) {
                    return Err(PrefsError::Malformed);
                }
                let jid = Jid::new(item.text().trim()).map_err(|_| PrefsError::BadJid)?;
                list.insert(jid.to_string());
            }
        }
        if prefs.always.len() + prefs.never.len() > max_jids {
            return Err(PrefsError::TooMany(max_jids));
        }
        Ok(prefs)
    }

    /// The `<prefs/>` answer (§2.1: both lists present, even empty).
    pub fn to_element(&self) -> Element {
        let list = |name: &str, jids: &BTreeSet<String>| {
            let mut element = Element::builder(name, NS_MAM).build();
            for jid in jids {
                element.append_child(Element::builder("jid", NS_MAM).append(jid.as_str()).build());
            }
            element
        };
        Element::builder("prefs", NS_MAM)
            .attr(
                minidom::rxml::xml_ncname!("default").to_owned(),
                self.default.as_str(),
            )
            .append(list("always", &self.always))
            .append(list("never", &self.never))
            .build()
    }

    /// The stored form.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        // Writing to a Vec cannot fail.
        let _ = self.to_element().write_to(&mut out);
        out
    }

    /// A stored form read back; `None` for bytes that are not one.
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        let element: Element = std::str::from_utf8(bytes).ok()?.parse().ok()?;
        if !element.is("prefs", NS_MAM) {
            return None;
        }
        Self::parse(&element, usize::MAX).ok()
    }

    /// What the lists say about `target` (the `to` of an outgoing message, the `from` of an
    /// incoming one, §2.3): `Some(false)` when a never entry matches (never wins), `Some(true)`
    /// when an always entry does, `None` when the default decides. A listed bare JID matches
    /// every resource of it; a listed full JID only itself.
    pub fn listed(&self, target: &Jid) -> Option<bool> {
        let full = target.to_string();
        let bare = target.to_bare().to_string();
        let matches = |list: &BTreeSet<String>| list.contains(&bare) || list.contains(&full);
        if matches(&self.never) {
            Some(false)
        } else if matches(&self.always) {
            Some(true)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn el(xml: &str) -> Element {
        xml.parse().expect("test XML parses")
    }

    fn jid(text: &str) -> Jid {
        Jid::new(text).expect("test JID")
    }

    #[test]
    fn a_set_is_parsed_normalised_and_answered_with_both_lists() {
        let prefs = Prefs::parse(
            &el("<prefs xmlns='urn:xmpp:mam:2' default='roster'>\
                 <always><jid>Romeo@Montague.lit</jid><jid>romeo@montague.lit</jid></always>\
                 </prefs>"),
            10,
        )
        .expect("valid");
        assert_eq!(prefs.default, DefaultRule::Roster);
        assert_eq!(
            prefs.always.iter().collect::<Vec<_>>(),
            ["romeo@montague.lit"]
        );
        assert!(prefs.never.is_empty());
        assert_eq!(
            prefs.to_element(),
            el("<prefs xmlns='urn:xmpp:mam:2' default='roster'>\
                <always><jid>romeo@montague.lit</jid></always><never/></prefs>")
        );
        assert_eq!(Prefs::decode(&prefs.encode()), Some(prefs));
    }

    #[test]
    fn bad_sets_are_refused_with_their_condition() {
        let refused = |xml: &str, max| Prefs::parse(&el(xml), max).err();
        assert_eq!(
            refused("<prefs xmlns='urn:xmpp:mam:2'/>", 10),
            Some(PrefsError::Malformed)
        );
        assert_eq!(
            refused("<prefs xmlns='urn:xmpp:mam:2' default='sometimes'/>", 10),
            Some(PrefsError::Malformed)
        );
        assert_eq!(
            refused(
                "<prefs xmlns='urn:xmpp:mam:2' default='always'><never><jid>@bad</jid></never></prefs>",
                10
            ),
            Some(PrefsError::BadJid)
        );
        assert_eq!(
            refused(
                "<prefs xmlns='urn:xmpp:mam:2' default='always'><never><item/></never></prefs>",
                10
            ),
            Some(PrefsError::Malformed)
        );
        assert_eq!(
            refused(
                "<prefs xmlns='urn:xmpp:mam:2' default='always'><always><jid>a@b</jid></always><never><jid>c@d</jid></never></prefs>",
                1
            ),
            Some(PrefsError::TooMany(1))
        );
        assert_eq!(
            PrefsError::BadJid.condition(),
            StanzaErrorCondition::JidMalformed
        );
    }

    #[test]
    fn lists_match_bare_entries_for_every_resource_and_never_wins() {
        let prefs = Prefs::parse(
            &el("<prefs xmlns='urn:xmpp:mam:2' default='never'>\
                 <always><jid>romeo@montague.lit</jid><jid>nurse@capulet.lit/kitchen</jid></always>\
                 <never><jid>montague.lit</jid><jid>romeo@montague.lit</jid></never>\
                 </prefs>"),
            10,
        )
        .expect("valid");
        assert_eq!(
            prefs.listed(&jid("romeo@montague.lit/orchard")),
            Some(false)
        );
        assert_eq!(prefs.listed(&jid("nurse@capulet.lit/kitchen")), Some(true));
        assert_eq!(prefs.listed(&jid("nurse@capulet.lit/garden")), None);
        assert_eq!(prefs.listed(&jid("nurse@capulet.lit")), None);
        assert_eq!(prefs.listed(&jid("montague.lit")), Some(false));
        assert_eq!(prefs.listed(&jid("benvolio@montague.lit")), None);
    }
}
