//! The presence-subscription state machine, RFC 6121 §3 and Appendix A.
//!
//! A user's item for a contact holds the `to`/`from` halves of the subscription, "pending out"
//! (`ask='subscribe'`) and pre-approval; "pending in" is the stored request of the contact. Each
//! function looks at one side — the user's own state — and says what changes and what happens to
//! the stanza. The router runs [`outbound`] for the sender and [`inbound`] for a local recipient
//! and commits both results together.

use jid::BareJid;
use starling_storage::RosterItem;

/// The four subscription presence types (RFC 6121 §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubscriptionStanza {
    /// `type='subscribe'`: ask for the other's presence.
    Subscribe,
    /// `type='subscribed'`: approve a request (or pre-approve, §3.4).
    Subscribed,
    /// `type='unsubscribe'`: stop receiving the other's presence.
    Unsubscribe,
    /// `type='unsubscribed'`: deny a request or cancel the other's subscription.
    Unsubscribed,
}

impl SubscriptionStanza {
    /// Parse a presence `type`.
    pub fn parse(presence_type: &str) -> Option<Self> {
        match presence_type {
            "subscribe" => Some(Self::Subscribe),
            "subscribed" => Some(Self::Subscribed),
            "unsubscribe" => Some(Self::Unsubscribe),
            "unsubscribed" => Some(Self::Unsubscribed),
            _ => None,
        }
    }
}

/// What to do with the stored "pending in" request of the contact.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestChange {
    /// Leave it as it is.
    Keep,
    /// Store the request (the contact asked to subscribe).
    Add,
    /// Forget it (answered or cancelled).
    Remove,
}

/// The outcome of one subscription stanza for one side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// The user's new item, when it changed (push it to interested resources).
    pub item: Option<RosterItem>,
    /// The contact's pending request to the user.
    pub request: RequestChange,
    /// Outbound only: forward the stanza to the contact.
    pub route: bool,
    /// Inbound only: deliver the stanza to the user's available resources.
    pub deliver: bool,
    /// Inbound only: answer the contact with `subscribed` on the user's behalf (§3.1.3).
    pub auto_subscribed: bool,
    /// The contact newly gets the user's presence: send it the user's current presence.
    pub send_presence: bool,
    /// The contact no longer gets the user's presence: send it unavailable presence.
    pub send_unavailable: bool,
}

impl Step {
    fn nothing() -> Self {
        Self {
            item: None,
            request: RequestChange::Keep,
            route: false,
            deliver: false,
            auto_subscribed: false,
            send_presence: false,
            send_unavailable: false,
        }
    }
}

/// The user sends `stanza` to `contact`. `item` is the user's item for the contact;
/// `has_request` whether the contact's subscription request to the user is pending.
pub fn outbound(
    item: Option<&RosterItem>,
    contact: &BareJid,
    has_request: bool,
    stanza: SubscriptionStanza,
) -> Step {
    let current = item
        .cloned()
        .unwrap_or_else(|| RosterItem::new(contact.clone()));
    let mut step = Step::nothing();
    match stanza {
        SubscriptionStanza::Subscribe => {
            // §3.1.2: the request goes out; the item shows "pending out" unless already subscribed.
            step.route = true;
            if !current.subscription.has_to() && !current.pending_out {
                step.item = Some(RosterItem {
                    pending_out: true,
                    ..current
                });
            }
        }
        SubscriptionStanza::Subscribed => {
            if has_request {
                // §3.1.5: approving a pending request: the contact now gets our presence.
                step.route = true;
                step.request = RequestChange::Remove;
                step.send_presence = true;
                if !current.subscription.has_from() || item.is_none() {
                    step.item = Some(RosterItem {
                        subscription: current.subscription.with_from(true),
                        approved: false,
                        ..current
                    });
                }
            } else if !current.subscription.has_from() && !current.approved {
                // §3.4: no request yet: a pre-approval, kept on the item and not routed.
                step.item = Some(RosterItem {
                    approved: true,
                    ..current
                });
            }
        }
        SubscriptionStanza::Unsubscribe => {
            // §3.3.2: cancel our subscription to the contact (or our pending request).
            if current.subscription.has_to() || current.pending_out {
                step.route = true;
                step.item = Some(RosterItem {
                    subscription: current.subscription.with_to(false),
                    pending_out: false,
                    ..current
                });
            }
        }
        SubscriptionStanza::Unsubscribed => {
            // §3.2.2: deny a request or revoke the contact's subscription to us.
            let had_from = current.subscription.has_from();
            if had_from || has_request || current.approved {
                step.route = had_from || has_request;
                step.request = if has_request {
                    RequestChange::Remove
                } else {
                    RequestChange::Keep
                };
                step.send_unavailable = had_from;
                if item.is_some() {
                    step.item = Some(RosterItem {
                        subscription: current.subscription.with_from(false),
                        approved: false,
                        ..current
                    });
                }
            }
        }
    }
    step
}

/// `stanza` from `contact` arrives for the user. Same inputs as [`outbound`].
pub fn inbound(
    item: Option<&RosterItem>,
    contact: &BareJid,
    has_request: bool,
    stanza: SubscriptionStanza,
) -> Step {
    let current = item
        .cloned()
        .unwrap_or_else(|| RosterItem::new(contact.clone()));
    let mut step = Step::nothing();
    match stanza {
        SubscriptionStanza::Subscribe => {
            if current.subscription.has_from() {
                // §3.1.3: already subscribed: answer for the user, deliver nothing.
                step.auto_subscribed = true;
            } else if current.approved {
                // §3.4: pre-approved: complete the subscription without asking the user.
                step.auto_subscribed = true;
                step.send_presence = true;
                step.item = Some(RosterItem {
                    subscription: current.subscription.with_from(true),
                    approved: false,
                    ..current
                });
            } else if !has_request {
                // §3.1.3: keep the request (delivered again at next login) and show it now.
                step.request = RequestChange::Add;
                step.deliver = true;
            }
        }
        SubscriptionStanza::Subscribed => {
            // §3.1.6: only an answer to our pending request counts.
            if current.pending_out && item.is_some() {
                step.deliver = true;
                step.item = Some(RosterItem {
                    subscription: current.subscription.with_to(true),
                    pending_out: false,
                    ..current
                });
            }
        }
        SubscriptionStanza::Unsubscribe => {
            // §3.3.3: the contact no longer wants our presence.
            let had_from = current.subscription.has_from();
            if had_from || has_request {
                step.deliver = true;
                step.send_unavailable = had_from;
                step.request = if has_request {
                    RequestChange::Remove
                } else {
                    RequestChange::Keep
                };
                if item.is_some() {
                    step.item = Some(RosterItem {
                        subscription: current.subscription.with_from(false),
                        ..current
                    });
                }
            }
        }
        SubscriptionStanza::Unsubscribed => {
            // §3.2.3: our subscription (or request) was denied or revoked.
            if item.is_some() && (current.subscription.has_to() || current.pending_out) {
                step.deliver = true;
                step.item = Some(RosterItem {
                    subscription: current.subscription.with_to(false),
                    pending_out: false,
                    ..current
                });
            }
        }
    }
    step
}

#[cfg(test)]
mod tests {
    use starling_storage::Subscription;

    use super::*;

    fn contact() -> BareJid {
        "bob@localhost".parse().unwrap()
    }

    fn item(subscription: Subscription, pending_out: bool, approved: bool) -> RosterItem {
        RosterItem {
            subscription,
            pending_out,
            approved,
            ..RosterItem::new(contact())
        }
    }

    fn state(step: &Step) -> Option<(Subscription, bool, bool)> {
        step.item
            .as_ref()
            .map(|i| (i.subscription, i.pending_out, i.approved))
    }

    #[test]
    fn full_handshake_from_none_to_both() {
        use SubscriptionStanza::*;
        // Alice subscribes: her side goes none+pending-out, Bob's side stores the request.
        let a1 = outbound(None, &contact(), false, Subscribe);
        assert_eq!(state(&a1), Some((Subscription::None, true, false)));
        let b1 = inbound(None, &"alice@localhost".parse().unwrap(), false, Subscribe);
        assert_eq!(
            (b1.request, b1.deliver, b1.item.is_none()),
            (RequestChange::Add, true, true)
        );
        // Bob approves: his side becomes from, the request is gone, Alice's becomes to.
        let b2 = outbound(None, &"alice@localhost".parse().unwrap(), true, Subscribed);
        assert_eq!(state(&b2), Some((Subscription::From, false, false)));
        assert!(b2.route && b2.send_presence && b2.request == RequestChange::Remove);
        let a2 = inbound(a1.item.as_ref(), &contact(), false, Subscribed);
        assert_eq!(state(&a2), Some((Subscription::To, false, false)));
        assert!(a2.deliver);
    }

    #[test]
    fn duplicate_and_out_of_state_stanzas_change_nothing() {
        use SubscriptionStanza::*;
        // A second request while one is pending is not delivered again.
        assert_eq!(inbound(None, &contact(), true, Subscribe), Step::nothing());
        // `subscribed` that answers nothing is ignored (§3.1.6).
        assert_eq!(
            inbound(
                Some(&item(Subscription::None, false, false)),
                &contact(),
                false,
                Subscribed
            ),
            Step::nothing()
        );
        // Unsubscribing from someone we are not subscribed to: nothing to do.
        assert_eq!(
            outbound(
                Some(&item(Subscription::From, false, false)),
                &contact(),
                false,
                Unsubscribe
            ),
            Step::nothing()
        );
        // Subscribing again when already subscribed: routed, no state change.
        let again = outbound(
            Some(&item(Subscription::To, false, false)),
            &contact(),
            false,
            Subscribe,
        );
        assert!(again.route && again.item.is_none());
    }

    #[test]
    fn already_subscribed_contact_gets_an_automatic_subscribed() {
        let step = inbound(
            Some(&item(Subscription::From, false, false)),
            &contact(),
            false,
            SubscriptionStanza::Subscribe,
        );
        assert!(step.auto_subscribed && !step.deliver && step.item.is_none());
    }

    #[test]
    fn pre_approval_then_request_completes_without_the_user() {
        let pre = outbound(None, &contact(), false, SubscriptionStanza::Subscribed);
        assert_eq!(state(&pre), Some((Subscription::None, false, true)));
        assert!(!pre.route);
        let request = inbound(
            pre.item.as_ref(),
            &contact(),
            false,
            SubscriptionStanza::Subscribe,
        );
        assert_eq!(state(&request), Some((Subscription::From, false, false)));
        assert!(request.auto_subscribed && request.send_presence && !request.deliver);
    }

    #[test]
    fn cancel_and_revoke() {
        use SubscriptionStanza::*;
        let both = item(Subscription::Both, false, false);
        let cancel = outbound(Some(&both), &contact(), false, Unsubscribe);
        assert_eq!(state(&cancel), Some((Subscription::From, false, false)));
        assert!(cancel.route);
        let revoke = outbound(Some(&both), &contact(), false, Unsubscribed);
        assert_eq!(state(&revoke), Some((Subscription::To, false, false)));
        assert!(revoke.route && revoke.send_unavailable);
        let revoked = inbound(Some(&both), &contact(), false, Unsubscribed);
        assert_eq!(state(&revoked), Some((Subscription::From, false, false)));
        let they_cancel = inbound(Some(&both), &contact(), false, Unsubscribe);
        assert_eq!(state(&they_cancel), Some((Subscription::To, false, false)));
        assert!(they_cancel.send_unavailable);
    }

    #[test]
    fn denying_a_pending_request() {
        let deny = outbound(None, &contact(), true, SubscriptionStanza::Unsubscribed);
        assert_eq!(
            (deny.route, deny.request, deny.item.is_none()),
            (true, RequestChange::Remove, true)
        );
        let denied = inbound(
            Some(&item(Subscription::None, true, false)),
            &contact(),
            false,
            SubscriptionStanza::Unsubscribed,
        );
        assert_eq!(state(&denied), Some((Subscription::None, false, false)));
        assert!(denied.deliver);
    }
}
