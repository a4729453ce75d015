//! IQ requests the server answers itself, dispatched by address form, type and namespace
//! (Prosody's `iq-get/host/<ns>` style events, typed).

use jid::{BareJid, FullJid};
use minidom::Element;
use starling_stanza::{IqType, Stanza};

use crate::hooks::{BoxFuture, Rejection};

/// Which kind of address a request names, as handlers are registered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AddressForm {
    /// A host of this server (`example.org`).
    Server,
    /// A local account's bare JID, or no `to` at all (the sender's own account, RFC 6120
    /// §10.3.3). The server answers on the account's behalf (RFC 6121 §8.5.2.1.3).
    Bare,
    /// A connected resource's full JID. Without a handler the request is forwarded to the
    /// resource, which is the normal case; a handler here answers in the resource's stead.
    Full,
}

impl AddressForm {
    pub(crate) fn index(self) -> usize {
        match self {
            AddressForm::Server => 0,
            AddressForm::Bare => 1,
            AddressForm::Full => 2,
        }
    }
}

/// The address of a request, with what a handler needs to know about it.
#[derive(Debug, Clone, Copy)]
pub enum IqTarget<'a> {
    /// One of our hosts.
    Server(&'a str),
    /// A local account; `is_own` when it is the sender's (or the request named no `to`).
    Account {
        /// The account.
        jid: &'a BareJid,
        /// Whether the sender is this account.
        is_own: bool,
    },
    /// A connected resource.
    Resource(&'a FullJid),
}

impl IqTarget<'_> {
    /// The form handlers are registered under.
    pub fn form(&self) -> AddressForm {
        match self {
            IqTarget::Server(_) => AddressForm::Server,
            IqTarget::Account { .. } => AddressForm::Bare,
            IqTarget::Resource(_) => AddressForm::Full,
        }
    }
}

/// An iq get or set the server answers.
#[derive(Debug, Clone, Copy)]
pub struct IqRequest<'a> {
    /// The sender's full JID (already stamped by its stream).
    pub from: &'a FullJid,
    /// The address the request names.
    pub to: IqTarget<'a>,
    /// Get or set (results and errors never reach handlers).
    pub iq_type: IqType,
    /// The one child element (RFC 6120 §8.2.3) whose namespace chose the handler.
    pub payload: &'a Element,
    /// The whole request.
    pub stanza: &'a Stanza,
}

/// A handler's answer: the child of the `result` (`None` for an empty result), or the error.
pub type IqAnswer = Result<Option<Element>, Rejection>;

/// Answers iq requests of the namespaces it was registered for.
pub trait IqHandler: Send + Sync {
    /// Answer `request`. The router turns the answer into the `result` or `error` reply.
    fn handle<'a>(&'a self, request: IqRequest<'a>) -> BoxFuture<'a, IqAnswer>;
}
