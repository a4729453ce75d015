//! The hosts and accounts an operator's command names, checked against the configured hosts.

use jid::BareJid;

use crate::Config;

/// A host name on the command line that this server does not serve.
#[derive(Debug, thiserror::Error)]
pub enum HostSelectionError {
    /// Not a domain at all.
    #[error("{name:?} is not a valid domain: {reason}")]
    InvalidDomain {
        /// The name as given.
        name: String,
        /// Why (in the message, as the command has always printed it).
        reason: jid::Error,
    },
    /// A domain that is not one of `hosts`.
    #[error("{domain} is not one of the configured hosts ({})", configured.join(", "))]
    NotConfigured {
        /// The domain, normalised.
        domain: String,
        /// The configured hosts.
        configured: Vec<String>,
    },
}

/// An account named on the command line that this server cannot hold.
#[derive(Debug, thiserror::Error)]
pub enum AccountJidError {
    /// Not a bare JID.
    #[error("{jid:?} is not a valid JID")]
    Invalid {
        /// The JID as given.
        jid: String,
        /// Why.
        #[source]
        source: jid::Error,
    },
    /// A domain without a user part.
    #[error("{jid} has no user part; use user@host")]
    NoUser {
        /// The JID.
        jid: BareJid,
    },
    /// The domain is not one of the configured hosts.
    #[error("{} is not one of the configured hosts ({})", jid.domain(), configured.join(", "))]
    NotConfigured {
        /// The JID.
        jid: BareJid,
        /// The configured hosts.
        configured: Vec<String>,
    },
}

impl Config {
    /// The named hosts (normalised, each one we serve), or all hosts when none is named.
    pub fn selected_hosts(&self, names: Vec<String>) -> Result<Vec<String>, HostSelectionError> {
        if names.is_empty() {
            return Ok(self.hosts.clone());
        }
        names
            .into_iter()
            .map(|name| {
                let domain = match jid::DomainPart::new(&name) {
                    Ok(domain) => domain.as_str().to_owned(),
                    Err(reason) => return Err(HostSelectionError::InvalidDomain { name, reason }),
                };
                if !self.hosts.contains(&domain) {
                    return Err(HostSelectionError::NotConfigured {
                        domain,
                        configured: self.hosts.clone(),
                    });
                }
                Ok(domain)
            })
            .collect()
    }

    /// `jid` as an account of one of the configured hosts.
    pub fn account_jid(&self, jid: &str) -> Result<BareJid, AccountJidError> {
        let jid = BareJid::new(jid).map_err(|source| AccountJidError::Invalid {
            jid: jid.to_owned(),
            source,
        })?;
        if jid.node().is_none() {
            return Err(AccountJidError::NoUser { jid });
        }
        if !self.hosts.iter().any(|h| h == jid.domain().as_str()) {
            return Err(AccountJidError::NotConfigured {
                jid,
                configured: self.hosts.clone(),
            });
        }
        Ok(jid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_hosts_are_normalised_and_must_be_served() {
        let config = Config {
            hosts: vec!["a.test".to_owned(), "b.test".to_owned()],
            ..Config::default()
        };
        assert_eq!(config.selected_hosts(Vec::new()).unwrap(), config.hosts);
        assert_eq!(
            config.selected_hosts(vec!["B.test".to_owned()]).unwrap(),
            ["b.test"]
        );
        let err = config.selected_hosts(vec!["a b".to_owned()]).unwrap_err();
        assert!(std::error::Error::source(&err).is_none(), "{err}");
        assert_eq!(
            config
                .selected_hosts(vec!["c.test".to_owned()])
                .unwrap_err()
                .to_string(),
            "c.test is not one of the configured hosts (a.test, b.test)"
        );
    }

    #[test]
    fn accounts_must_have_a_user_on_a_configured_host() {
        let config = Config::default();
        assert_eq!(
            config.account_jid("alice@localhost").unwrap().to_string(),
            "alice@localhost"
        );
        let message = |jid| config.account_jid(jid).unwrap_err().to_string();
        assert_eq!(
            message("localhost"),
            "localhost has no user part; use user@host"
        );
        assert_eq!(
            message("alice@example.org"),
            "example.org is not one of the configured hosts (localhost)"
        );
        assert_eq!(message("@@"), "\"@@\" is not a valid JID");
    }
}
