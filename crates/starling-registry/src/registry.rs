//! The registry proper: which sessions are bound, and the lookups routing needs.

use std::collections::HashMap;
use std::time::Duration;

use dashmap::DashMap;
use jid::{BareJid, FullJid};
use starling_stanza::StreamErrorCondition;

use crate::session::{
    CloseReason, Handover, QueueLimits, SessionHandle, SessionOrigin, SessionReceiver,
};

/// What happens when a client binds a full JID that is already in use (RFC 6120 §7.7.2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ConflictPolicy {
    /// The new session takes the resource; the old one gets a `<conflict/>` stream error
    /// (Prosody's `kick_old`, the default).
    #[default]
    KickOld,
    /// The new session's bind fails with a `<conflict/>` stanza error.
    RefuseNew,
}

/// Limits and policies of the registry.
#[derive(Debug, Clone)]
pub struct RegistryConfig {
    /// Resource conflict policy.
    pub conflict_policy: ConflictPolicy,
    /// Simultaneous resources one account may bind; more gets `resource-constraint`
    /// (RFC 6120 §7.6.2.1).
    pub max_resources_per_account: usize,
    /// Stanzas queued for one session before `send` reports `QueueFull`.
    pub queue_depth: usize,
    /// Bytes of stanzas queued for one session before `send` reports `QueueFull`; a stanza
    /// larger than this still goes into an empty queue.
    pub queue_bytes: usize,
    /// How long a queue may stay full before its session is closed.
    pub overflow_grace: Duration,
}

/// Default number of resources per account.
pub const DEFAULT_MAX_RESOURCES_PER_ACCOUNT: usize = 10;
/// Default outbound queue depth per session, in stanzas.
pub const DEFAULT_QUEUE_DEPTH: usize = 512;
/// Default outbound queue size per session, in bytes on the wire: eight of the largest
/// stanzas, far more than a client that reads ever has waiting.
pub const DEFAULT_QUEUE_BYTES: usize = 2 * 1024 * 1024;
/// Default time a full queue is tolerated.
pub const DEFAULT_OVERFLOW_GRACE: Duration = Duration::from_secs(5);

impl Default for RegistryConfig {
    fn default() -> Self {
        Self {
            conflict_policy: ConflictPolicy::default(),
            max_resources_per_account: DEFAULT_MAX_RESOURCES_PER_ACCOUNT,
            queue_depth: DEFAULT_QUEUE_DEPTH,
            queue_bytes: DEFAULT_QUEUE_BYTES,
            overflow_grace: DEFAULT_OVERFLOW_GRACE,
        }
    }
}

/// Why a bind was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BindRefusal {
    /// The full JID is in use and the policy is `RefuseNew` (RFC 6120 §7.7.2.2).
    #[error("the resource is already in use")]
    Conflict,
    /// The account has as many resources as it may (RFC 6120 §7.6.2.1).
    #[error("the account has reached its resource limit")]
    ResourceConstraint,
    /// The JID is not on a host of this server.
    #[error("the host is not served here")]
    UnknownHost,
}

impl From<BindRefusal> for starling_bind::BindError {
    /// What the client is told (RFC 6120 §7.6.2, §7.7.2.2); a host we do not serve is
    /// `not-allowed`, since the client may not bind a resource there at all.
    fn from(refusal: BindRefusal) -> Self {
        match refusal {
            BindRefusal::Conflict => Self::Conflict,
            BindRefusal::ResourceConstraint => Self::ResourceConstraint,
            BindRefusal::UnknownHost => Self::NotAllowed,
        }
    }
}

/// All bound sessions, by host, then user, then resource.
pub struct Registry {
    /// Fixed at start-up; each host's users in a concurrent map keyed by localpart.
    hosts: HashMap<String, DashMap<String, Vec<SessionHandle>>>,
    /// Sessions that may be resumed (XEP-0198 §5), by the id given in `<enabled/>`.
    resumable: DashMap<String, SessionHandle>,
    config: RegistryConfig,
}

impl Registry {
    /// A registry for these (already normalised) hosts.
    pub fn new(hosts: impl IntoIterator<Item = String>, config: RegistryConfig) -> Self {
        Self {
            hosts: hosts
                .into_iter()
                .map(|host| (host, DashMap::new()))
                .collect(),
            resumable: DashMap::new(),
            config,
        }
    }

    /// Whether this server hosts `domain`.
    pub fn serves(&self, domain: &str) -> bool {
        self.hosts.contains_key(domain)
    }

    /// A handle and its receiving end for a session about to bind `full_jid`. Nothing is
    /// registered until [`Registry::bind`].
    pub fn new_session(
        &self,
        full_jid: FullJid,
        id: uuid::Uuid,
    ) -> (SessionHandle, SessionReceiver) {
        SessionHandle::new(full_jid, id, None, QueueLimits::of(&self.config))
    }

    /// Like [`Registry::new_session`], recording where the connection came from for
    /// operators ([`SessionHandle::origin`]).
    pub fn new_session_from(
        &self,
        full_jid: FullJid,
        id: uuid::Uuid,
        origin: SessionOrigin,
    ) -> (SessionHandle, SessionReceiver) {
        SessionHandle::new(full_jid, id, Some(origin), QueueLimits::of(&self.config))
    }

    /// Register a session as a connected resource, applying the conflict policy and the
    /// resource limit atomically. With `KickOld`, the replaced session (if any) is sent a
    /// `<conflict/>` stream error and returned.
    pub fn bind(&self, handle: &SessionHandle) -> Result<Option<SessionHandle>, BindRefusal> {
        let full_jid = handle.full_jid();
        let users = self
            .hosts
            .get(full_jid.domain().as_str())
            .ok_or(BindRefusal::UnknownHost)?;
        let node = full_jid
            .node()
            .map(|n| n.as_str().to_owned())
            .unwrap_or_default();
        // The entry guard is the shard lock; everything below is synchronous.
        let mut resources = users.entry(node).or_default();
        let existing = resources
            .iter()
            .position(|other| other.full_jid() == full_jid);
        match existing {
            Some(index) => match self.config.conflict_policy {
                ConflictPolicy::RefuseNew => Err(BindRefusal::Conflict),
                ConflictPolicy::KickOld => {
                    let old = std::mem::replace(&mut resources[index], handle.clone());
                    old.close(CloseReason::StreamError {
                        condition: StreamErrorCondition::Conflict,
                        text: Some("replaced by a new session for the same resource".to_owned()),
                    });
                    Ok(Some(old))
                }
            },
            None if resources.len() >= self.config.max_resources_per_account => {
                Err(BindRefusal::ResourceConstraint)
            }
            None => {
                resources.push(handle.clone());
                Ok(None)
            }
        }
    }

    /// Remove this session (and only this session, not a newer one that took its resource).
    /// Returns whether it was registered.
    pub fn unbind(&self, handle: &SessionHandle) -> bool {
        let full_jid = handle.full_jid();
        let Some(users) = self.hosts.get(full_jid.domain().as_str()) else {
            return false;
        };
        let Some(node) = full_jid.node() else {
            return false;
        };
        let mut removed = false;
        users.remove_if_mut(node.as_str(), |_, resources| {
            let before = resources.len();
            resources.retain(|other| other != handle);
            removed = resources.len() != before;
            resources.is_empty()
        });
        removed
    }

    /// Make `handle` resumable under `id` (XEP-0198 §5) until [`Registry::forget_resumable`].
    pub fn make_resumable(&self, id: &str, handle: &SessionHandle) {
        self.resumable.insert(id.to_owned(), handle.clone());
    }

    /// `handle` may no longer be resumed under `id` (its session ended or moved on).
    pub fn forget_resumable(&self, id: &str, handle: &SessionHandle) {
        self.resumable.remove_if(id, |_, kept| kept == handle);
    }

    /// How many sessions are resumable (connected or hibernating).
    pub fn resumable_count(&self) -> usize {
        self.resumable.len()
    }

    /// Asks the connection holding resumable session `id` of account `user` to hand it over
    /// (XEP-0198 §5); the answer arrives on the returned channel, or the channel closes when
    /// the session ended first. `None` when no such session of that account is kept: a
    /// session of another account is not found either, so ids cannot be probed.
    pub fn claim(
        &self,
        id: &str,
        user: &BareJid,
    ) -> Option<tokio::sync::oneshot::Receiver<Handover>> {
        let handle = self.resumable.get(id).map(|entry| entry.value().clone())?;
        if handle.bare_jid() != *user {
            return None;
        }
        let (reply, answer) = tokio::sync::oneshot::channel();
        handle.request_takeover(reply);
        Some(answer)
    }

    /// The session bound to exactly this full JID.
    pub fn resource(&self, full_jid: &FullJid) -> Option<SessionHandle> {
        self.with_resources(&full_jid.to_bare(), |resources| {
            resources.iter().find(|h| h.full_jid() == full_jid).cloned()
        })
        .flatten()
    }

    /// Every connected resource of an account.
    pub fn connected_resources(&self, bare: &BareJid) -> Vec<SessionHandle> {
        self.with_resources(bare, <[SessionHandle]>::to_vec)
            .unwrap_or_default()
    }

    /// The available resources of an account (those that sent available presence).
    pub fn available_resources(&self, bare: &BareJid) -> Vec<SessionHandle> {
        self.filtered(bare, SessionHandle::is_available)
    }

    /// The interested resources of an account (those that receive roster pushes).
    pub fn interested_resources(&self, bare: &BareJid) -> Vec<SessionHandle> {
        self.filtered(bare, SessionHandle::is_interested)
    }

    /// The available resources with the highest non-negative priority (RFC 6121 §8.5.2.1.1):
    /// all of them when several share it, none when every priority is negative.
    pub fn highest_priority_available(&self, bare: &BareJid) -> Vec<SessionHandle> {
        let available: Vec<(i8, SessionHandle)> = self
            .available_resources(bare)
            .into_iter()
            .map(|h| (h.priority(), h))
            .filter(|(priority, _)| *priority >= 0)
            .collect();
        let Some(best) = available.iter().map(|(priority, _)| *priority).max() else {
            return Vec::new();
        };
        available
            .into_iter()
            .filter(|(priority, _)| *priority == best)
            .map(|(_, h)| h)
            .collect()
    }

    /// Every bound session on every host (for shutdown and announcements).
    pub fn all_sessions(&self) -> Vec<SessionHandle> {
        self.hosts
            .values()
            .flat_map(|users| {
                users
                    .iter()
                    .flat_map(|entry| entry.value().clone())
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// Every bound session of one host (for `list-sessions` and announcements); `None` when
    /// the host is not served here.
    pub fn host_sessions(&self, host: &str) -> Option<Vec<SessionHandle>> {
        let users = self.hosts.get(host)?;
        Some(
            users
                .iter()
                .flat_map(|entry| entry.value().clone())
                .collect(),
        )
    }

    /// The served hosts, sorted.
    pub fn hosts(&self) -> Vec<String> {
        let mut hosts: Vec<String> = self.hosts.keys().cloned().collect();
        hosts.sort();
        hosts
    }

    /// How many sessions are bound.
    pub fn session_count(&self) -> usize {
        self.hosts
            .values()
            .map(|users| users.iter().map(|entry| entry.value().len()).sum::<usize>())
            .sum()
    }

    fn filtered(&self, bare: &BareJid, keep: fn(&SessionHandle) -> bool) -> Vec<SessionHandle> {
        self.with_resources(bare, |resources| {
            resources.iter().filter(|h| keep(h)).cloned().collect()
        })
        .unwrap_or_default()
    }

    /// Run `f` on an account's resources under the shard lock; `f` must not block.
    fn with_resources<T>(
        &self,
        bare: &BareJid,
        f: impl FnOnce(&[SessionHandle]) -> T,
    ) -> Option<T> {
        let users = self.hosts.get(bare.domain().as_str())?;
        let node = bare.node()?;
        let resources = users.get(node.as_str())?;
        Some(f(&resources))
    }
}

#[cfg(test)]
mod tests;
