//! Service discovery (XEP-0030 2.5) answered from what the enabled modules registered, so
//! the server cannot advertise a feature nothing answers, nor answer one it hides.

use std::collections::BTreeSet;

use minidom::Element;
use starling_stanza::{IqType, NS_DISCO_INFO, NS_DISCO_ITEMS, StanzaErrorCondition};

use crate::hooks::{BoxFuture, Rejection};
use crate::iq::{IqAnswer, IqHandler, IqRequest, IqTarget};

/// Whose disco#info a feature belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DiscoTarget {
    /// A host of this server.
    Server,
    /// A local account's bare JID, answered by the server on the account's behalf.
    Account,
}

/// An XEP-0030 `<identity/>`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Identity {
    /// `category`, from the XMPP registrar (`server`, `account`, `pubsub`...).
    pub category: String,
    /// `type` within the category.
    pub kind: String,
    /// `xml:lang`, if any.
    pub lang: Option<String>,
    /// The human-readable `name`, if any.
    pub name: Option<String>,
}

impl Identity {
    /// An identity without language or name.
    pub fn new(category: &str, kind: &str) -> Self {
        Self {
            category: category.to_owned(),
            kind: kind.to_owned(),
            lang: None,
            name: None,
        }
    }
}

/// The disco#info of one target: identities, features and extension forms (XEP-0128), each
/// kept sorted so the answer and any hash over it are stable.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DiscoInfo {
    /// Identities, sorted.
    pub identities: BTreeSet<Identity>,
    /// Feature `var`s, sorted and without repeats.
    pub features: BTreeSet<String>,
    /// XEP-0128 data forms, as registered.
    pub forms: Vec<Element>,
}

impl DiscoInfo {
    /// The `<query xmlns='…disco#info'/>` payload, with `node` when the request named one.
    pub fn to_element(&self, node: Option<&str>) -> Element {
        let mut query = Element::builder("query", NS_DISCO_INFO).build();
        if let Some(node) = node {
            set(&mut query, "node", node);
        }
        for identity in &self.identities {
            let mut element = Element::builder("identity", NS_DISCO_INFO).build();
            set(&mut element, "category", &identity.category);
            set(&mut element, "type", &identity.kind);
            if let Some(name) = &identity.name {
                set(&mut element, "name", name);
            }
            if let Some(lang) = &identity.lang {
                element.attrs_mut().insert(
                    minidom::rxml::Namespace::XML,
                    minidom::rxml::xml_ncname!("lang").to_owned(),
                    lang.clone(),
                );
            }
            query.append_child(element);
        }
        for feature in &self.features {
            let mut element = Element::builder("feature", NS_DISCO_INFO).build();
            set(&mut element, "var", feature);
            query.append_child(element);
        }
        for form in &self.forms {
            query.append_child(form.clone());
        }
        query
    }
}

/// What the server itself answers for XEP-0030: built last, from every registration.
pub(crate) struct Disco {
    pub(crate) server: DiscoInfo,
    pub(crate) account: DiscoInfo,
    /// Nodes whose disco#info is the server's own (XEP-0115 §6.2: `node#ver`).
    pub(crate) server_nodes: BTreeSet<String>,
}

impl IqHandler for Disco {
    fn handle<'a>(&'a self, request: IqRequest<'a>) -> BoxFuture<'a, IqAnswer> {
        Box::pin(async move { self.answer(&request) })
    }
}

impl Disco {
    fn answer(&self, request: &IqRequest<'_>) -> IqAnswer {
        if request.iq_type != IqType::Get {
            return Err(Rejection::from(StanzaErrorCondition::NotAllowed));
        }
        if request.payload.name() != "query" {
            return Err(Rejection::from(StanzaErrorCondition::BadRequest));
        }
        let node = request.payload.attr("node");
        let is_info = request.payload.ns() == NS_DISCO_INFO;
        match (is_info, request.to) {
            (true, IqTarget::Server(_)) => match node {
                None => Ok(Some(self.server.to_element(None))),
                Some(node) if self.server_nodes.contains(node) => {
                    Ok(Some(self.server.to_element(Some(node))))
                }
                // §3.2: a node we do not publish.
                Some(_) => Err(Rejection::from(StanzaErrorCondition::ItemNotFound)),
            },
            (true, IqTarget::Account { .. }) => match node {
                None => Ok(Some(self.account.to_element(None))),
                Some(_) => Err(Rejection::from(StanzaErrorCondition::ItemNotFound)),
            },
            // Items: no components or published items yet, so an empty list is the truth.
            (false, IqTarget::Server(_) | IqTarget::Account { .. }) => match node {
                None => Ok(Some(Element::builder("query", NS_DISCO_ITEMS).build())),
                Some(_) => Err(Rejection::from(StanzaErrorCondition::ItemNotFound)),
            },
            (_, IqTarget::Resource(_)) => {
                Err(Rejection::from(StanzaErrorCondition::ServiceUnavailable))
            }
        }
    }
}

fn set(element: &mut Element, name: &'static str, value: &str) {
    if let Ok(name) = minidom::rxml::NcName::try_from(name) {
        starling_stanza::set_attr(element, &name, Some(value));
    }
}
