//! Roster get and set (RFC 6121 §2) for the account's own connected resources.

use starling_registry::SessionHandle;
use starling_roster::{RosterRequest, SubscriptionStanza};
use starling_stanza::{IqType, Stanza, StanzaErrorCondition};
use starling_storage::{RosterChange, RosterItem};

use crate::presence::Committed;
use crate::router::{Router, Store};

impl<S: Store> Router<S> {
    /// Handle a roster query; `false` when the iq is not one (the caller answers it otherwise).
    pub(crate) async fn handle_roster_iq(
        &self,
        sender: &SessionHandle,
        stanza: &Stanza,
        iq_type: IqType,
    ) -> bool {
        let Some(query) = stanza
            .element()
            .children()
            .next()
            .filter(|q| q.is("query", starling_stanza::NS_ROSTER))
        else {
            return false;
        };
        match starling_roster::parse_request(iq_type, query, &self.limits.roster) {
            Err(condition) => self.bounce(sender, stanza, condition),
            Ok(RosterRequest::Get { ver }) => self.roster_get(sender, stanza, ver.as_deref()).await,
            Ok(RosterRequest::Update { jid, name, groups }) => {
                self.roster_update(sender, stanza, jid, name, groups).await;
            }
            Ok(RosterRequest::Remove { jid }) => self.roster_remove(sender, stanza, jid).await,
        }
        true
    }

    async fn roster_get(&self, sender: &SessionHandle, stanza: &Stanza, ver: Option<&str>) {
        // Prosody's session model: asking for the roster makes the resource interested.
        sender.set_interested();
        let (version, items) = match self.store.roster(&sender.bare_jid()).await {
            Ok(roster) => roster,
            Err(err) => {
                tracing::error!(error = %err, "reading a roster failed");
                self.bounce(sender, stanza, StanzaErrorCondition::InternalServerError);
                return;
            }
        };
        let mut reply = stanza.iq_result();
        // RFC 6121 §2.6.3: a client holding the current version gets an empty result; changes
        // after this point reach it as pushes.
        if ver != Some(starling_roster::format_version(version).as_str()) {
            reply.append_child(starling_roster::query_result(&items, version));
        }
        self.deliver(sender, reply, None);
    }

    async fn roster_update(
        &self,
        sender: &SessionHandle,
        stanza: &Stanza,
        jid: jid::BareJid,
        name: Option<String>,
        groups: Vec<String>,
    ) {
        let owner = sender.bare_jid();
        let existing = match self.store.roster_item(&owner, &jid).await {
            Ok(existing) => existing,
            Err(err) => {
                tracing::error!(error = %err, "reading a roster item failed");
                self.bounce(sender, stanza, StanzaErrorCondition::InternalServerError);
                return;
            }
        };
        // The client sets name and groups; subscription state stays the server's (§2.1.2.5).
        let item = RosterItem {
            name,
            groups,
            ..existing.unwrap_or_else(|| RosterItem::new(jid))
        };
        // Storage enforces limits.roster.max_items in the same transaction as the insert.
        match self.commit(&[RosterChange::Put { owner, item }]).await {
            Committed::Yes => {
                self.deliver(sender, stanza.iq_result(), None);
            }
            // RFC 6120 §8.3.3.12: a local policy; the client can remove an item and retry.
            Committed::RosterFull => {
                self.bounce(sender, stanza, StanzaErrorCondition::PolicyViolation)
            }
            Committed::Failed => {
                self.bounce(sender, stanza, StanzaErrorCondition::InternalServerError)
            }
        };
    }

    async fn roster_remove(&self, sender: &SessionHandle, stanza: &Stanza, jid: jid::BareJid) {
        let owner = sender.bare_jid();
        let Some(item) = self.roster_item(&owner, &jid).await else {
            // RFC 6121 §2.5.3: removing an item that is not there.
            self.bounce(sender, stanza, StanzaErrorCondition::ItemNotFound);
            return;
        };
        // §2.5.2: cancel both directions first, so the contact's roster is updated too.
        if item.subscription.has_to() || item.pending_out {
            self.subscription_on_behalf(sender, &jid, SubscriptionStanza::Unsubscribe)
                .await;
        }
        if item.subscription.has_from() || self.has_request(&owner, &jid).await {
            self.subscription_on_behalf(sender, &jid, SubscriptionStanza::Unsubscribed)
                .await;
        }
        if self
            .commit(&[RosterChange::Remove {
                owner,
                contact: jid,
            }])
            .await
            == Committed::Yes
        {
            self.deliver(sender, stanza.iq_result(), None);
        } else {
            self.bounce(sender, stanza, StanzaErrorCondition::InternalServerError);
        }
    }
}
