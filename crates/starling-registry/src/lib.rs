//! The live sessions of one Starling node: host → user → resource, as Prosody keeps them in
//! `hosts[host].sessions[user].sessions[resource]`.
//!
//! A bound session is a *connected resource* ([`SessionHandle`]). It has a priority and its last
//! presence: once it has sent initial presence it is an *available resource*; once it has asked for
//! its roster it is an *interested resource*, the only kind that receives roster pushes. Whatever
//! its state, a session can be sent a stanza and be closed through its handle, which never exposes
//! the socket: [`SessionHandle::send`] puts the stanza on a bounded queue that the connection task
//! drains, and [`SessionHandle::close`] asks that task to end the stream.
//!
//! A session whose client enabled XEP-0198 resumption and whose connection broke is
//! *hibernating* ([`SessionHandle::is_hibernating`]): it is still a connected resource (bound,
//! its presence standing, stanzas for it queued) until a new connection resumes it
//! ([`Registry::claim`], which asks the connection task holding it for a [`Handover`]) or its
//! resumption window passes.
//!
//! The design choice to understand: nothing here awaits. Lookups copy handles out of the
//! `DashMap` and let the shard guard drop at the end of the statement, so no lock is ever held
//! across an `.await`, and a sender never waits for a slow reader — a full queue is an error the
//! caller handles (RFC 6121 §8.5 decides what happens to the stanza), and a queue that stays full
//! past a grace period gets its session closed with `<policy-violation/>`.
//!
//! ```
//! use starling_registry::{Registry, RegistryConfig};
//!
//! let registry = Registry::new(["localhost".to_owned()], RegistryConfig::default());
//! let jid: jid::FullJid = "alice@localhost/phone".parse().unwrap();
//! let (handle, mut receiver) = registry.new_session(jid.clone(), uuid::Uuid::nil());
//! registry.bind(&handle).unwrap();
//! assert_eq!(registry.resource(&jid).map(|h| h.id()), Some(uuid::Uuid::nil()));
//!
//! // Nobody is available until initial presence arrives.
//! assert!(registry.highest_priority_available(&jid.to_bare()).is_empty());
//! handle.set_presence(Some("<presence xmlns='jabber:client'/>".parse().unwrap()), 0);
//! assert_eq!(registry.highest_priority_available(&jid.to_bare()).len(), 1);
//!
//! let message: minidom::Element = "<message xmlns='jabber:client'/>".parse().unwrap();
//! handle.send(starling_stanza::OutboundStanza::new(&message)).unwrap();
//! assert!(receiver.try_recv().is_some());
//! ```
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

mod registry;
mod session;

pub use registry::{BindRefusal, ConflictPolicy, Registry, RegistryConfig};
pub use session::{
    CloseReason, ConnectedResource, Handover, HibernationEnd, SendError, SessionEvent,
    SessionHandle, SessionOrigin, SessionReceiver, StreamTransport, TakeoverReply,
};
