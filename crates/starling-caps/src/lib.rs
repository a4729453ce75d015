//! XEP-0115 entity capabilities (v1.6.0) of the server itself, a module on the extension
//! interface.
//!
//! Once every module has registered, the module hashes the server's final disco#info into a
//! verification string (§5.1, SHA-1 as §8.1 makes mandatory) and contributes:
//! - the stream feature `<c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='…'
//!   ver='…'/>` at both stream stages (§6.3), so a client learns the server's features without
//!   a disco#info round trip;
//! - the disco node `{node}#{ver}`, whose disco#info is the server's own (§6.2);
//! - the disco feature `http://jabber.org/protocol/caps` on the server (§7 MUST), registered
//!   before the hash is taken so the hash covers it.
//!
//! The node names the software (§4: a URI that identifies the application, RECOMMENDED an HTTP
//! URL about it): by default Starling's repository URL, [`DEFAULT_NODE`].
//!
//! Extended information forms (XEP-0128) are hashed as §5.1 steps 6–7 say. A form without a
//! hidden `FORM_TYPE` field is left out of the hash, because a receiver following §5.4 ignores
//! it when it checks the hash.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

use std::sync::Arc;

use base64::Engine as _;
use minidom::Element;
use sha1::{Digest as _, Sha1};
use starling_modules::{
    DiscoFinisher, DiscoInfo, DiscoTarget, Finished, Identity, Module, Registrar,
};

/// The entity capabilities namespace.
pub use starling_stanza::NS_CAPS;
use starling_stanza::NS_DATA;
/// The caps node Starling advertises unless told otherwise: its repository URL.
pub const DEFAULT_NODE: &str = env!("CARGO_PKG_REPOSITORY");

/// The string §5.1 hashes (steps 1–8), for `info`.
pub fn verification_input(info: &DiscoInfo) -> String {
    let mut s = String::new();
    let mut identities: Vec<&Identity> = info.identities.iter().collect();
    // Steps 2–3: by category, type and xml:lang, octet by octet.
    identities.sort_by(|a, b| {
        (a.category.as_bytes(), a.kind.as_bytes(), lang(a)).cmp(&(
            b.category.as_bytes(),
            b.kind.as_bytes(),
            lang(b),
        ))
    });
    for identity in identities {
        s.push_str(&identity.category);
        s.push('/');
        s.push_str(&identity.kind);
        s.push('/');
        s.push_str(identity.lang.as_deref().unwrap_or(""));
        s.push('/');
        s.push_str(identity.name.as_deref().unwrap_or(""));
        s.push('<');
    }
    // Steps 4–5: the set is sorted by `String`'s order, which is octet order.
    for feature in &info.features {
        s.push_str(feature);
        s.push('<');
    }
    // Steps 6–7.
    let mut forms: Vec<Form> = info.forms.iter().filter_map(Form::of).collect();
    forms.sort_by(|a, b| a.form_type.as_bytes().cmp(b.form_type.as_bytes()));
    for form in forms {
        s.push_str(&form.form_type);
        s.push('<');
        for (var, values) in form.fields {
            s.push_str(&var);
            s.push('<');
            for value in values {
                s.push_str(&value);
                s.push('<');
            }
        }
    }
    s
}

/// The `ver` of `info`: base64 of the SHA-1 of [`verification_input`] (§5.1 step 9).
pub fn verification_string(info: &DiscoInfo) -> String {
    let digest = Sha1::digest(verification_input(info).as_bytes());
    base64::engine::general_purpose::STANDARD.encode(digest)
}

fn lang(identity: &Identity) -> &[u8] {
    identity.lang.as_deref().unwrap_or("").as_bytes()
}

/// An XEP-0128 form as §5.1 step 7 reads it.
struct Form {
    form_type: String,
    /// Fields other than FORM_TYPE, sorted by var, each with its values sorted.
    fields: Vec<(String, Vec<String>)>,
}

impl Form {
    /// `element` as a form to hash, or `None` when it is not a data form with a hidden
    /// FORM_TYPE of one value (§5.4 step 3.6 and 3.5).
    fn of(element: &Element) -> Option<Self> {
        if !element.is("x", NS_DATA) {
            return None;
        }
        let mut form_type = None;
        let mut fields = Vec::new();
        for field in element
            .children()
            .filter(|child| child.is("field", NS_DATA))
        {
            let Some(var) = field.attr("var") else {
                continue;
            };
            let mut values: Vec<String> = field
                .children()
                .filter(|child| child.is("value", NS_DATA))
                .map(Element::text)
                .collect();
            values.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
            if var == "FORM_TYPE" {
                values.dedup();
                if field.attr("type") != Some("hidden") || values.len() != 1 {
                    return None;
                }
                form_type = values.pop();
            } else {
                fields.push((var.to_owned(), values));
            }
        }
        fields.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
        Some(Self {
            form_type: form_type?,
            fields,
        })
    }
}

/// The module: the server's capabilities under `node`.
pub struct Caps {
    node: String,
}

impl Caps {
    /// Capabilities advertised under `node` (a URI naming the software, §4).
    pub fn new(node: impl Into<String>) -> Self {
        Self { node: node.into() }
    }

    /// The `<c/>` element for `ver`.
    fn element(&self, ver: &str) -> Element {
        Element::builder("c", NS_CAPS)
            .attr(minidom::rxml::xml_ncname!("hash").to_owned(), "sha-1")
            .attr(minidom::rxml::xml_ncname!("node").to_owned(), &*self.node)
            .attr(minidom::rxml::xml_ncname!("ver").to_owned(), ver)
            .build()
    }
}

impl Default for Caps {
    fn default() -> Self {
        Self::new(DEFAULT_NODE)
    }
}

impl Module for Caps {
    fn name(&self) -> &'static str {
        "caps"
    }

    fn register(self: Arc<Self>, registrar: &mut Registrar<'_>) {
        registrar.disco_feature(DiscoTarget::Server, NS_CAPS);
        registrar.after_disco(self);
    }
}

impl DiscoFinisher for Caps {
    fn finish(&self, server: &DiscoInfo) -> Finished {
        let ver = verification_string(server);
        Finished {
            stream_features: vec![self.element(&ver)],
            server_nodes: vec![format!("{}#{ver}", self.node)],
        }
    }
}

#[cfg(test)]
mod tests;
