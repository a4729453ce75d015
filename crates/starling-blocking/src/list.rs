//! A block list and the XEP-0191 §4 / XEP-0016 §2.1 JID matching rules.

use std::collections::BTreeSet;

use jid::Jid;

/// The JIDs one account blocks, as stored (normalised JID strings), sorted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BlockList {
    items: BTreeSet<String>,
}

impl BlockList {
    /// A list of these items.
    pub fn new(items: impl IntoIterator<Item = String>) -> Self {
        Self {
            items: items.into_iter().collect(),
        }
    }

    /// Whether nothing is blocked.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The items, sorted.
    pub fn items(&self) -> impl Iterator<Item = &str> {
        self.items.iter().map(String::as_str)
    }

    /// Whether `jid` is blocked. XEP-0191 §4 adopts XEP-0016 §2.1: a `user@domain/resource`
    /// is compared with the items `user@domain/resource`, `user@domain`, `domain/resource`
    /// and `domain`, in that order; a bare JID with itself and its domain; a domain with
    /// itself. So an account item blocks every resource, a domain item everything there.
    pub fn blocks(&self, jid: &Jid) -> bool {
        if self.items.is_empty() {
            return false;
        }
        let domain = jid.domain().as_str();
        if self.items.contains(jid.as_str()) || self.items.contains(domain) {
            return true;
        }
        let full = jid.as_str();
        let bare = full.split_once('/').map_or(full, |(bare, _)| bare);
        if bare != full && self.items.contains(bare) {
            return true;
        }
        match (jid.node(), jid.resource()) {
            (Some(_), Some(resource)) => self
                .items
                .contains(&format!("{domain}/{}", resource.as_str())),
            _ => false,
        }
    }

    pub(crate) fn insert(&mut self, item: String) -> bool {
        self.items.insert(item)
    }

    pub(crate) fn remove(&mut self, item: &str) -> bool {
        self.items.remove(item)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blocks(items: &[&str], jid: &str) -> bool {
        BlockList::new(items.iter().map(|s| (*s).to_owned())).blocks(&Jid::new(jid).unwrap())
    }

    #[test]
    fn each_item_form_blocks_what_xep_0016_says() {
        // user@domain/resource: only that full JID.
        assert!(blocks(
            &["romeo@montague.lit/orchard"],
            "romeo@montague.lit/orchard"
        ));
        assert!(!blocks(
            &["romeo@montague.lit/orchard"],
            "romeo@montague.lit/garden"
        ));
        assert!(!blocks(
            &["romeo@montague.lit/orchard"],
            "romeo@montague.lit"
        ));
        // user@domain: the account and all of its resources.
        assert!(blocks(&["romeo@montague.lit"], "romeo@montague.lit"));
        assert!(blocks(
            &["romeo@montague.lit"],
            "romeo@montague.lit/orchard"
        ));
        assert!(!blocks(&["romeo@montague.lit"], "mercutio@montague.lit"));
        // domain/resource: that address, and (XEP-0016 §2.1 compares a full JID's
        // domain/resource form too) any account's resource of that name there.
        assert!(blocks(&["montague.lit/orchard"], "montague.lit/orchard"));
        assert!(blocks(
            &["montague.lit/orchard"],
            "romeo@montague.lit/orchard"
        ));
        assert!(!blocks(
            &["montague.lit/orchard"],
            "romeo@montague.lit/garden"
        ));
        assert!(!blocks(&["montague.lit/orchard"], "romeo@montague.lit"));
        // domain: everything there.
        assert!(blocks(&["montague.lit"], "montague.lit"));
        assert!(blocks(&["montague.lit"], "romeo@montague.lit/orchard"));
        assert!(blocks(&["montague.lit"], "montague.lit/orchard"));
        assert!(!blocks(&["montague.lit"], "romeo@capulet.lit"));
        assert!(!blocks(&[], "romeo@montague.lit"));
    }
}
