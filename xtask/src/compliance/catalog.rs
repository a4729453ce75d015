//! Hand-maintained data for the compliance table: the XEP-0479 server requirements and the
//! catalogue of RFC 6120 / RFC 6121 sections that carry rules for a client-to-server server.
//!
//! XEP-0479 (XMPP Compliance Suites 2023) v0.1.0: a feature is supported when all of its
//! providers are, except where the suite asks for only one of them (Web Connection Mechanisms).
//! Columns that the suite marks N/A for servers are left out.

/// Whether a suite level asks for a feature.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    Required,
    NotRequired,
    NotApplicable,
}

impl Level {
    pub fn label(self) -> &'static str {
        match self {
            Level::Required => "required",
            Level::NotRequired => "-",
            Level::NotApplicable => "n/a",
        }
    }
}

/// The specs that provide a feature.
#[derive(Clone, Copy, Debug)]
pub enum Providers {
    All(&'static [&'static str]),
    AnyOf(&'static [&'static str]),
}

pub struct Feature {
    pub name: &'static str,
    pub providers: Providers,
    pub server: Level,
    pub advanced_server: Level,
}

pub struct Suite {
    pub name: &'static str,
    pub features: &'static [Feature],
}

const fn feature(
    name: &'static str,
    providers: Providers,
    server: Level,
    advanced_server: Level,
) -> Feature {
    Feature {
        name,
        providers,
        server,
        advanced_server,
    }
}

use Level::{NotApplicable as NA, NotRequired as NO, Required as REQ};
use Providers::{All, AnyOf};

/// The server columns of XEP-0479's Core, Web, IM and Mobile suites.
pub const SUITES: &[Suite] = &[
    Suite {
        name: "Core",
        features: &[
            feature("Core features", All(&["rfc6120"]), REQ, REQ),
            feature("TLS", All(&["rfc7590"]), REQ, REQ),
            feature("Direct TLS", All(&["xep0368"]), NO, REQ),
            feature("Feature discovery", All(&["xep0030"]), REQ, REQ),
            feature("Feature broadcasts", All(&["xep0115"]), NO, REQ),
            feature("Server Extensibility", All(&["xep0114"]), REQ, REQ),
            feature("Event publishing", All(&["xep0163"]), NO, REQ),
        ],
    },
    Suite {
        name: "Web",
        features: &[
            feature(
                "Web Connection Mechanisms",
                AnyOf(&["rfc7395", "xep0206"]),
                REQ,
                REQ,
            ),
            feature("Connection Mechanism Discovery", All(&["xep0156"]), NO, NA),
        ],
    },
    Suite {
        name: "IM",
        features: &[
            feature("Core features", All(&["rfc6121"]), REQ, REQ),
            feature(
                "User Avatar Compatibility",
                All(&["xep0398", "xep0153"]),
                NO,
                REQ,
            ),
            feature("vcard-temp", All(&["xep0054"]), REQ, REQ),
            feature(
                "Outbound Message Synchronization",
                All(&["xep0280"]),
                REQ,
                REQ,
            ),
            feature("User Blocking", All(&["xep0191"]), NO, REQ),
            feature("Group Chat", All(&["xep0045", "xep0249"]), REQ, REQ),
            feature(
                "Advanced Group Chat",
                All(&["xep0048", "xep0313", "xep0402", "xep0410"]),
                NO,
                REQ,
            ),
            feature(
                "Persistent Storage of Private Data via PubSub",
                All(&["xep0223"]),
                NO,
                REQ,
            ),
            feature("Private XML Storage", All(&["xep0049"]), NO, REQ),
            feature("Stream Management", All(&["xep0198"]), NO, REQ),
            feature("History Storage / Retrieval", All(&["xep0313"]), NO, REQ),
            feature("File Upload", All(&["xep0363"]), REQ, REQ),
        ],
    },
    Suite {
        name: "Mobile",
        features: &[
            feature("Stream Management", All(&["xep0198"]), REQ, REQ),
            feature("Client State Indication", All(&["xep0352"]), REQ, REQ),
            feature("Third Party Push Notifications", All(&["xep0357"]), NO, REQ),
        ],
    },
];

/// Short names of the specifications that scenarios tag or XEP-0479 lists, for the README's
/// feature table. A spec missing here is shown by its number alone.
pub fn spec_name(spec: &str) -> Option<&'static str> {
    let name = match spec {
        "rfc3921" => "XMPP IM (2004): session establishment",
        "rfc4616" => "SASL PLAIN",
        "rfc5802" => "SCRAM",
        "rfc5929" => "Channel Bindings for TLS",
        "rfc6120" => "XMPP Core",
        "rfc6121" => "XMPP Instant Messaging and Presence",
        "rfc7395" => "XMPP over WebSocket",
        "rfc7590" => "Use of TLS in XMPP",
        "rfc7622" => "XMPP Address Format",
        "rfc7677" => "SCRAM-SHA-256",
        "rfc9266" => "Channel Bindings for TLS 1.3",
        "xep0012" => "Last Activity",
        "xep0030" => "Service Discovery",
        "xep0045" => "Multi-User Chat",
        "xep0049" => "Private XML Storage",
        "xep0054" => "vcard-temp",
        "xep0092" => "Software Version",
        "xep0114" => "Jabber Component Protocol",
        "xep0115" => "Entity Capabilities",
        "xep0133" => "Service Administration",
        "xep0153" => "vCard-Based Avatars",
        "xep0160" => "Best Practices for Handling Offline Messages",
        "xep0163" => "Personal Eventing Protocol",
        "xep0191" => "Blocking Command",
        "xep0198" => "Stream Management",
        "xep0199" => "XMPP Ping",
        "xep0202" => "Entity Time",
        "xep0203" => "Delayed Delivery",
        "xep0206" => "XMPP Over BOSH",
        "xep0223" => "Persistent Storage of Private Data via PubSub",
        "xep0249" => "Direct MUC Invitations",
        "xep0280" => "Message Carbons",
        "xep0313" => "Message Archive Management",
        "xep0352" => "Client State Indication",
        "xep0357" => "Push Notifications",
        "xep0363" => "HTTP File Upload",
        "xep0368" => "SRV records for XMPP over TLS (direct TLS)",
        "xep0398" => "User Avatar to vCard-Based Avatars Conversion",
        "xep0440" => "SASL Channel-Binding Type Capability",
        _ => return None,
    };
    Some(name)
}

/// Sections of RFC 6120 and RFC 6121 with rules a c2s server must follow, with their titles.
/// Purely informative sections (overviews, examples, IANA) are left out.
pub fn sections() -> &'static [(&'static str, &'static str)] {
    &[
        ("rfc6120:4.2", "Opening a Stream"),
        ("rfc6120:4.3.2", "Stream Features Format"),
        ("rfc6120:4.3.3", "Restarts"),
        ("rfc6120:4.3.4", "Resending Features"),
        ("rfc6120:4.3.5", "Completion of Stream Negotiation"),
        ("rfc6120:4.3.6", "Determination of Addresses"),
        ("rfc6120:4.4", "Closing a Stream"),
        ("rfc6120:4.6.1", "Dead Connection (whitespace keepalives)"),
        ("rfc6120:4.6.2", "Broken Stream"),
        ("rfc6120:4.6.3", "Idle Peer"),
        ("rfc6120:4.7.1", "from"),
        ("rfc6120:4.7.2", "to"),
        ("rfc6120:4.7.3", "id"),
        ("rfc6120:4.7.4", "xml:lang"),
        ("rfc6120:4.7.5", "version"),
        ("rfc6120:4.8.1", "Stream Namespace"),
        ("rfc6120:4.8.2", "Content Namespace"),
        ("rfc6120:4.8.5", "Namespace Declarations and Prefixes"),
        ("rfc6120:4.9.1.1", "Stream Errors Are Unrecoverable"),
        ("rfc6120:4.9.1.2", "Stream Errors Can Occur During Setup"),
        (
            "rfc6120:4.9.1.3",
            "Stream Errors When the Host Is Unspecified or Unknown",
        ),
        ("rfc6120:4.9.2", "Stream Error Syntax"),
        ("rfc6120:4.9.3.1", "bad-format"),
        ("rfc6120:4.9.3.2", "bad-namespace-prefix"),
        ("rfc6120:4.9.3.3", "conflict"),
        ("rfc6120:4.9.3.4", "connection-timeout"),
        ("rfc6120:4.9.3.6", "host-unknown"),
        ("rfc6120:4.9.3.7", "improper-addressing (s2s)"),
        ("rfc6120:4.9.3.9", "invalid-from (s2s)"),
        ("rfc6120:4.9.3.10", "invalid-namespace"),
        ("rfc6120:4.9.3.11", "invalid-xml"),
        ("rfc6120:4.9.3.12", "not-authorized"),
        ("rfc6120:4.9.3.13", "not-well-formed"),
        ("rfc6120:4.9.3.14", "policy-violation"),
        ("rfc6120:4.9.3.16", "reset"),
        ("rfc6120:4.9.3.17", "resource-constraint"),
        ("rfc6120:4.9.3.18", "restricted-xml"),
        ("rfc6120:4.9.3.20", "system-shutdown"),
        ("rfc6120:4.9.3.22", "unsupported-encoding"),
        ("rfc6120:4.9.3.23", "unsupported-feature"),
        ("rfc6120:4.9.3.24", "unsupported-stanza-type"),
        ("rfc6120:4.9.3.25", "unsupported-version"),
        ("rfc6120:5.3.1", "STARTTLS Mandatory-to-Negotiate"),
        ("rfc6120:5.3.2", "Restart after TLS"),
        ("rfc6120:5.3.4", "Order of TLS and SASL Negotiations"),
        (
            "rfc6120:5.4.1",
            "Exchange of Stream Headers and Stream Features (TLS)",
        ),
        ("rfc6120:5.4.2.1", "STARTTLS Command"),
        ("rfc6120:5.4.2.2", "STARTTLS Failure Case"),
        ("rfc6120:5.4.2.3", "STARTTLS Proceed Case"),
        ("rfc6120:5.4.3.1", "TLS Negotiation Rules"),
        ("rfc6120:5.4.3.2", "TLS Failure"),
        ("rfc6120:5.4.3.3", "TLS Success"),
        ("rfc6120:6.3.1", "SASL Mandatory-to-Negotiate"),
        ("rfc6120:6.3.2", "Restart after SASL"),
        ("rfc6120:6.3.4", "Mechanism Offers"),
        ("rfc6120:6.3.8", "Authorization Identity"),
        (
            "rfc6120:6.4.1",
            "Exchange of Stream Headers and Stream Features (SASL)",
        ),
        ("rfc6120:6.4.2", "SASL Initiation"),
        ("rfc6120:6.4.3", "Challenge-Response Sequence"),
        ("rfc6120:6.4.4", "Abort"),
        ("rfc6120:6.4.5", "SASL Failure"),
        ("rfc6120:6.4.6", "SASL Success"),
        ("rfc6120:6.5.1", "aborted"),
        ("rfc6120:6.5.2", "account-disabled"),
        ("rfc6120:6.5.3", "credentials-expired"),
        ("rfc6120:6.5.4", "encryption-required"),
        ("rfc6120:6.5.5", "incorrect-encoding"),
        ("rfc6120:6.5.6", "invalid-authzid"),
        ("rfc6120:6.5.7", "invalid-mechanism"),
        ("rfc6120:6.5.8", "malformed-request"),
        ("rfc6120:6.5.9", "mechanism-too-weak"),
        ("rfc6120:6.5.10", "not-authorized"),
        ("rfc6120:6.5.11", "temporary-auth-failure"),
        ("rfc6120:7.1", "Resource Binding Fundamentals"),
        ("rfc6120:7.3.1", "Binding Mandatory-to-Negotiate"),
        ("rfc6120:7.3.2", "No Restart after Binding"),
        ("rfc6120:7.4", "Advertising Support (bind feature)"),
        ("rfc6120:7.5", "Generation of Resource Identifiers"),
        ("rfc6120:7.6.1", "Server-Generated Resource: Success"),
        (
            "rfc6120:7.6.2.1",
            "Server-Generated Resource: resource-constraint",
        ),
        ("rfc6120:7.6.2.2", "Server-Generated Resource: not-allowed"),
        ("rfc6120:7.7.1", "Client-Submitted Resource: Success"),
        ("rfc6120:7.7.2.1", "Client-Submitted Resource: bad-request"),
        ("rfc6120:7.7.2.2", "Client-Submitted Resource: conflict"),
        ("rfc6120:7.7.3", "Binding Retries"),
        ("rfc6120:8.1.1.1", "'to' on Client-to-Server Streams"),
        ("rfc6120:8.1.2.1", "'from' on Client-to-Server Streams"),
        ("rfc6120:8.1.3", "id"),
        ("rfc6120:8.1.4", "type"),
        ("rfc6120:8.1.5", "xml:lang (stanzas)"),
        ("rfc6120:8.2.1", "Message Semantics"),
        ("rfc6120:8.2.2", "Presence Semantics"),
        ("rfc6120:8.2.3", "IQ Semantics"),
        ("rfc6120:8.3.1", "Stanza Error Rules"),
        ("rfc6120:8.3.2", "Stanza Error Syntax"),
        ("rfc6120:8.3.3.1", "bad-request"),
        ("rfc6120:8.3.3.2", "conflict"),
        ("rfc6120:8.3.3.3", "feature-not-implemented"),
        ("rfc6120:8.3.3.4", "forbidden"),
        ("rfc6120:8.3.3.7", "item-not-found"),
        ("rfc6120:8.3.3.8", "jid-malformed"),
        ("rfc6120:8.3.3.10", "not-allowed"),
        ("rfc6120:8.3.3.13", "recipient-unavailable"),
        ("rfc6120:8.3.3.16", "remote-server-not-found"),
        ("rfc6120:8.3.3.17", "remote-server-timeout"),
        ("rfc6120:8.3.3.18", "resource-constraint"),
        ("rfc6120:8.3.3.19", "service-unavailable"),
        ("rfc6120:8.3.3.22", "unexpected-request"),
        ("rfc6120:8.4", "Extended Content"),
        ("rfc6120:10.1", "In-Order Processing"),
        ("rfc6120:10.3.1", "No 'to' Address: Message"),
        ("rfc6120:10.3.2", "No 'to' Address: Presence"),
        ("rfc6120:10.3.3", "No 'to' Address: IQ"),
        ("rfc6120:10.4.3", "Remote Domain: Error Handling"),
        ("rfc6120:10.5.1", "Local Domain: domainpart"),
        ("rfc6120:10.5.2", "Local Domain: domainpart/resourcepart"),
        ("rfc6120:10.5.3.1", "Local Domain: No Such User"),
        ("rfc6120:10.5.3.2", "Local Domain: User Exists"),
        (
            "rfc6120:10.5.4",
            "Local Domain: localpart@domainpart/resourcepart",
        ),
        ("rfc6120:11.1", "XML Restrictions"),
        ("rfc6120:11.3", "Well-Formedness"),
        ("rfc6120:11.6", "Character Encoding"),
        ("rfc6120:13.9.4", "Use of SASL (no username probing)"),
        ("rfc6121:2.1.3", "Roster Get"),
        ("rfc6121:2.1.5", "Roster Set"),
        ("rfc6121:2.1.6", "Roster Push"),
        ("rfc6121:2.2", "Retrieving the Roster on Login"),
        ("rfc6121:2.3", "Adding a Roster Item"),
        ("rfc6121:2.4", "Updating a Roster Item"),
        ("rfc6121:2.5", "Deleting a Roster Item"),
        ("rfc6121:2.6", "Roster Versioning"),
        ("rfc6121:3.1", "Requesting a Subscription"),
        ("rfc6121:3.2", "Canceling a Subscription"),
        ("rfc6121:3.3", "Unsubscribing"),
        ("rfc6121:3.4", "Pre-Approving a Subscription Request"),
        ("rfc6121:4.2", "Initial Presence"),
        ("rfc6121:4.3", "Presence Probes"),
        ("rfc6121:4.4", "Subsequent Presence Broadcast"),
        ("rfc6121:4.5", "Unavailable Presence"),
        ("rfc6121:4.6", "Directed Presence"),
        ("rfc6121:4.7", "Presence Syntax"),
        ("rfc6121:5.1", "One-to-One Chat Sessions"),
        ("rfc6121:5.2", "Message Syntax"),
        ("rfc6121:6", "Exchanging IQ Stanzas"),
        ("rfc6121:8.1", "Server Rules: General Considerations"),
        ("rfc6121:8.2", "Server Rules: No 'to' Address"),
        ("rfc6121:8.3", "Server Rules: Remote Domain"),
        ("rfc6121:8.4", "Server Rules: Local Domain"),
        ("rfc6121:8.5.1", "Local User: No Such User"),
        (
            "rfc6121:8.5.2.1.1",
            "Bare JID, available resources: message",
        ),
        (
            "rfc6121:8.5.2.1.2",
            "Bare JID, available resources: presence",
        ),
        ("rfc6121:8.5.2.1.3", "Bare JID, available resources: IQ"),
        (
            "rfc6121:8.5.2.2.1",
            "Bare JID, no available resources: message",
        ),
        (
            "rfc6121:8.5.2.2.2",
            "Bare JID, no available resources: presence",
        ),
        ("rfc6121:8.5.2.2.3", "Bare JID, no available resources: IQ"),
        ("rfc6121:8.5.3.1", "Full JID, resource matches"),
        (
            "rfc6121:8.5.3.2.1",
            "Full JID, no resource matches: message",
        ),
        (
            "rfc6121:8.5.3.2.2",
            "Full JID, no resource matches: presence",
        ),
        ("rfc6121:8.5.3.2.3", "Full JID, no resource matches: IQ"),
    ]
}
