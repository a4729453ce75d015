//! XEP-0054 vcard-temp (v1.3.0, which keeps every server rule of v1.2 and settles its choice of
//! error for another user's missing vCard), a module on the extension interface.
//!
//! A user publishes a vCard with an iq set of `<vCard xmlns='vcard-temp'/>` to their own account
//! (no `to`, or their own bare JID) and anyone reads it with an iq get to the account's bare JID;
//! the server answers on the account's behalf (§3.3, RFC 6120 §10.3.3). The element is kept
//! exactly as received (PHOTO and unknown elements included) and given back as it was stored.
//! What the module answers, and the section behind each choice:
//! - the user's own vCard when none is stored: `item-not-found` (§3.1: an error, which SHOULD be
//!   `item-not-found`, or an empty vCard; Prosody also answers `item-not-found`);
//! - another user's vCard when none is stored: `service-unavailable` (§3.3 of v1.3.0 MUST, the
//!   same condition the router answers for an account that does not exist, so the two cannot be
//!   told apart; v1.2 allowed it too);
//! - a set to another account: `forbidden` (§3.2 SHOULD `forbidden` or `not-allowed`; Prosody
//!   answers `forbidden`);
//! - a payload other than `<vCard/>`: `bad-request`;
//! - a vCard larger than the operator's limit: `policy-violation` (RFC 6120 §8.3.3.12, a local
//!   service policy; the XEP and Prosody set no limit). The default, [`DEFAULT_MAX_BYTES`]
//!   (128 KiB of serialized XML), stays well below the default stanza limit of 256 KiB, so a
//!   vCard the server accepts can always be sent back in a stanza of its own.
//!
//! **Storage layout** (backup and import code read it): module store [`STORE`] (`"vcard"`), one
//! key [`KEY`] (`"vcard"`), value the `<vCard/>` element serialized as UTF-8 XML by minidom.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

use std::sync::Arc;

use jid::BareJid;
use minidom::Element;
use starling_modules::{
    AddressForm, BoxFuture, DiscoTarget, IqAnswer, IqHandler, IqRequest, IqTarget, Module,
    Registrar, Rejection,
};
use starling_stanza::{IqType, StanzaErrorCondition};
use starling_storage::{AccountDataStore, DataChange, DataQuota};

/// The vcard-temp namespace (also the disco feature, §4).
pub use starling_stanza::NS_VCARD;
/// The module store vCards live in.
pub const STORE: &str = "vcard";
/// The one key of [`STORE`].
pub const KEY: &str = "vcard";
/// Default for the largest vCard, serialized: 128 KiB.
pub const DEFAULT_MAX_BYTES: usize = 128 * 1024;

/// The vCard serialized for storage.
pub fn serialize(vcard: &Element) -> Option<Vec<u8>> {
    let mut bytes = Vec::new();
    vcard.write_to(&mut bytes).ok()?;
    Some(bytes)
}

/// A stored vCard read back; `None` for bytes that are not one UTF-8 XML element.
pub fn deserialize(bytes: &[u8]) -> Option<Element> {
    std::str::from_utf8(bytes).ok()?.parse().ok()
}

/// The module. `S` is the server's store.
pub struct VCard<S> {
    store: S,
    max_bytes: usize,
}

impl<S: AccountDataStore> VCard<S> {
    /// The module over `store`; a vCard may take at most `max_bytes` serialized.
    pub fn new(store: S, max_bytes: usize) -> Self {
        Self { store, max_bytes }
    }

    async fn answer(&self, request: IqRequest<'_>) -> IqAnswer {
        let IqTarget::Account {
            jid: account,
            is_own,
        } = request.to
        else {
            return Err(StanzaErrorCondition::ServiceUnavailable.into());
        };
        match request.iq_type {
            IqType::Get => {
                if request.payload.name() != "vCard" {
                    return Err(StanzaErrorCondition::BadRequest.into());
                }
                self.get(account, is_own).await
            }
            IqType::Set => {
                if !is_own {
                    return Err(StanzaErrorCondition::Forbidden.into());
                }
                if request.payload.name() != "vCard" {
                    return Err(StanzaErrorCondition::BadRequest.into());
                }
                self.set(account, request.payload).await
            }
            IqType::Result | IqType::Error => Err(StanzaErrorCondition::BadRequest.into()),
        }
    }

    async fn get(&self, account: &BareJid, is_own: bool) -> IqAnswer {
        match self.store.data_get(account, STORE, KEY).await {
            Ok(Some(bytes)) => match deserialize(&bytes) {
                Some(vcard) => Ok(Some(vcard)),
                None => {
                    tracing::error!(%account, "stored vCard does not parse");
                    Err(StanzaErrorCondition::InternalServerError.into())
                }
            },
            Ok(None) if is_own => Err(StanzaErrorCondition::ItemNotFound.into()),
            Ok(None) => Err(StanzaErrorCondition::ServiceUnavailable.into()),
            Err(err) => {
                tracing::error!(%account, error = %err, "reading a vCard failed");
                Err(StanzaErrorCondition::InternalServerError.into())
            }
        }
    }

    async fn set(&self, account: &BareJid, vcard: &Element) -> IqAnswer {
        let value = serialize(vcard)
            .ok_or_else(|| Rejection::from(StanzaErrorCondition::InternalServerError))?;
        if value.len() > self.max_bytes {
            return Err(StanzaErrorCondition::PolicyViolation.into());
        }
        let change = DataChange::Put {
            key: KEY.to_owned(),
            value,
        };
        let quota = DataQuota {
            max_keys: 1,
            max_bytes: self.max_bytes.saturating_add(KEY.len()),
        };
        match self
            .store
            .data_apply(account, STORE, &[change], quota)
            .await
        {
            Ok(true) => Ok(None),
            Ok(false) => Err(StanzaErrorCondition::PolicyViolation.into()),
            Err(err) => {
                tracing::error!(%account, error = %err, "storing a vCard failed");
                Err(StanzaErrorCondition::InternalServerError.into())
            }
        }
    }
}

impl<S: AccountDataStore> Module for VCard<S> {
    fn name(&self) -> &'static str {
        "vcard"
    }

    fn register(self: Arc<Self>, registrar: &mut Registrar<'_>) {
        registrar.iq_get_set(AddressForm::Bare, NS_VCARD, self);
        registrar.disco_feature(DiscoTarget::Server, NS_VCARD);
    }
}

impl<S: AccountDataStore> IqHandler for VCard<S> {
    fn handle<'a>(&'a self, request: IqRequest<'a>) -> BoxFuture<'a, IqAnswer> {
        Box::pin(self.answer(request))
    }
}

#[cfg(test)]
mod tests;
