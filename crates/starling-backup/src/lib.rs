//! Backups and migrations for Starling: a host's accounts, rosters, pending subscription
//! requests, offline messages and feature modules' data (vCards, private XML, block lists and
//! any other module store) as a portable file, and an import of Prosody's data directory
//! (accounts, rosters, and its `vcard`, `private` and `blocklist` stores).
//!
//! The file format is XEP-0227 v1.1 (Portable Import/Export Format for XMPP-IM Servers,
//! `urn:xmpp:pie:0`), so a backup is also a way to move to or from another server. The one
//! design choice to understand: **a backup never holds a password.** Starling stores only
//! SCRAM keys, and the file carries them per hash in XEP-0227's `urn:xmpp:pie:0#scram`
//! elements; a restored account logs in with its old password because the keys are the same
//! bytes. A plaintext `password` in a file written by another server, or a Prosody
//! `internal_plain` account, is handed to the caller as a [`Password`] to derive keys from.
//!
//! Everything here is pure over `starling-storage`'s types: [`pie`] turns [`AccountData`] into
//! bytes and back, [`prosody`] reads a directory into the same types, and the server's `data`
//! module moves them in and out of a store with `PortableStore`.
//!
//! [`AccountData`]: starling_storage::AccountData
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod commands;
pub mod lua;
pub mod pie;
pub mod prosody;

use std::path::PathBuf;

use starling_sasl::{SaslError, ScramHash, ScramKeys};
use starling_storage::AccountData;

/// What went wrong reading or writing a backup or a Prosody directory.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// The input is larger than the reader accepts.
    #[error("the input is larger than {limit_bytes} bytes")]
    TooLarge {
        /// The limit.
        limit_bytes: u64,
    },
    /// Elements nest deeper than the reader accepts.
    #[error("elements nest deeper than {limit} levels")]
    TooDeep {
        /// The limit.
        limit: usize,
    },
    /// The file is not well-formed XML.
    #[error("not well-formed XML: {0}")]
    Xml(String),
    /// The data breaks a rule of the format; `at` says where (host, user, element).
    #[error("{at}: {reason}")]
    Invalid {
        /// Where, e.g. `host example.org, user alice, roster item romeo@example.net`.
        at: String,
        /// What is wrong.
        reason: String,
    },
    /// A file or directory could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// A password could not be turned into SCRAM keys.
    #[error("{at}: {source}")]
    Password {
        /// Whose password.
        at: String,
        /// Why.
        #[source]
        source: SaslError,
    },
}

impl BackupError {
    pub(crate) fn invalid(at: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Invalid {
            at: at.into(),
            reason: reason.into(),
        }
    }
}

/// A plaintext password from an imported file. Its `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

impl Password {
    /// Wraps a password.
    pub fn new(password: String) -> Self {
        Self(password)
    }

    /// The password itself.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(..)")
    }
}

/// One account read from a file or directory, ready for `PortableStore::import_accounts`
/// once [`ImportedAccount::derive_missing_keys`] has run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportedAccount {
    /// Everything the source had, with the SCRAM keys it carried (possibly none).
    pub data: AccountData,
    /// A plaintext password the source held.
    pub password: Option<Password>,
}

impl ImportedAccount {
    /// Derives keys from the plaintext password for each hash the account has no keys for,
    /// each with its own salt; without a password, nothing changes. This runs PBKDF2.
    pub fn derive_missing_keys(
        &mut self,
        salt_sha1: &[u8],
        salt_sha256: &[u8],
        iterations: u32,
    ) -> Result<(), BackupError> {
        let Some(password) = &self.password else {
            return Ok(());
        };
        for (hash, salt) in [
            (ScramHash::Sha1, salt_sha1),
            (ScramHash::Sha256, salt_sha256),
        ] {
            if self.data.credentials.keys_for(hash).is_none() {
                let keys = ScramKeys::derive(hash, password.expose(), salt, iterations).map_err(
                    |source| BackupError::Password {
                        at: self.data.jid.to_string(),
                        source,
                    },
                )?;
                self.data.credentials.keys.push(keys);
            }
        }
        self.data
            .credentials
            .keys
            .sort_by_key(|keys| match keys.hash {
                ScramHash::Sha1 => 0,
                ScramHash::Sha256 => 1,
            });
        Ok(())
    }

    /// The hashes this account can log in with once imported.
    pub fn hashes(&self) -> Vec<ScramHash> {
        self.data.credentials.keys.iter().map(|k| k.hash).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jid::BareJid;
    use starling_sasl::StoredCredentials;

    #[test]
    fn derive_missing_keys_fills_only_the_gaps() {
        let jid = BareJid::new("a@example.org").expect("jid");
        let sha1 = ScramKeys::derive(ScramHash::Sha1, "old", b"salt1", 4096).expect("derive");
        let mut account = ImportedAccount {
            data: AccountData::new(
                jid,
                StoredCredentials {
                    keys: vec![sha1.clone()],
                },
            ),
            password: Some(Password::new("pencil".to_owned())),
        };
        account
            .derive_missing_keys(b"s-1", b"s-256", 4096)
            .expect("derive");
        assert_eq!(account.hashes(), [ScramHash::Sha1, ScramHash::Sha256]);
        // The SHA-1 keys the source had are kept; SHA-256 comes from the password.
        assert!(account.data.credentials.keys[0] == sha1);
        assert!(account.data.credentials.keys[1].verify_password("pencil"));
        assert_eq!(format!("{:?}", account.password), "Some(Password(..))");
    }
}
