//! What the server's `backup`, `restore` and `import-prosody` commands decide besides opening
//! the store and the files: which configured host a name is, the keys for plaintext passwords
//! (with salts from the caller), and the summary and warning lines they print.

use std::fmt::Display;
use std::path::{Path, PathBuf};

use jid::DomainPart;
use starling_sasl::ScramHash;
use starling_storage::AccountData;

use crate::pie::ImportedHost;
use crate::{BackupError, ImportedAccount};

/// A host named on the command line or in a file that this server does not serve.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// Not a host name at all.
    #[error("{host:?} is not a valid host name")]
    Invalid {
        /// The name as given.
        host: String,
        /// Why it is not one.
        #[source]
        source: jid::Error,
    },
    /// A valid name, but not one of the configured hosts.
    #[error(
        "{host} is not one of the configured hosts ({}); nothing was written",
        configured.join(", ")
    )]
    NotConfigured {
        /// The name, normalised.
        host: String,
        /// The configured hosts, as configured.
        configured: Vec<String>,
    },
}

/// A backup file could not be written.
#[derive(Debug, thiserror::Error)]
#[error("cannot write {}", path.display())]
pub struct WriteError {
    /// The file.
    pub path: PathBuf,
    /// Why.
    #[source]
    pub source: std::io::Error,
}

/// `host` normalised, if it is one of `configured`.
pub fn configured_host(configured: &[String], host: &str) -> Result<String, HostError> {
    let normalised = DomainPart::new(host)
        .map(|d| d.to_string())
        .map_err(|source| HostError::Invalid {
            host: host.to_owned(),
            source,
        })?;
    let is_configured = configured
        .iter()
        .any(|c| DomainPart::new(c).is_ok_and(|d| d.as_str() == normalised));
    if !is_configured {
        return Err(HostError::NotConfigured {
            host: normalised,
            configured: configured.to_vec(),
        });
    }
    Ok(normalised)
}

/// Derives keys for every plaintext password (PBKDF2 at `iterations`: CPU work, to be run off
/// the reactor), each hash with a fresh salt from `salt`, and returns each host's accounts.
pub fn derive_keys(
    hosts: Vec<ImportedHost>,
    iterations: u32,
    mut salt: impl FnMut() -> [u8; 16],
) -> Result<Vec<(String, Vec<AccountData>)>, BackupError> {
    hosts
        .into_iter()
        .map(|host| {
            let accounts = host
                .accounts
                .into_iter()
                .map(|mut account: ImportedAccount| {
                    let salt_sha1 = salt();
                    let salt_sha256 = salt();
                    account.derive_missing_keys(&salt_sha1, &salt_sha256, iterations)?;
                    Ok(account.data)
                })
                .collect::<Result<Vec<_>, BackupError>>()?;
            Ok((host.host, accounts))
        })
        .collect()
}

/// "`verb` N accounts, R roster items, S subscription requests, M offline messages on `host`".
pub fn summary(verb: &str, host: &str, accounts: &[AccountData]) -> String {
    let items: usize = accounts.iter().map(|a| a.roster.len()).sum();
    let requests: usize = accounts.iter().map(|a| a.requests.len()).sum();
    let offline: usize = accounts.iter().map(|a| a.offline.len()).sum();
    format!(
        "{verb} {} account(s), {items} roster item(s), {requests} subscription request(s), \
         {offline} offline message(s) on {host}",
        accounts.len()
    )
}

/// Each warning as a `warning: ` line.
pub fn warning_lines(warnings: impl IntoIterator<Item = impl Display>) -> Vec<String> {
    warnings
        .into_iter()
        .map(|w| format!("warning: {w}"))
        .collect()
}

/// The note for imported accounts that came with SCRAM-SHA-1 keys only (Prosody's default
/// `password_hash`), if there are any.
pub fn sha1_only_note(hosts: &[ImportedHost]) -> Option<String> {
    let sha1_only = hosts
        .iter()
        .flat_map(|host| &host.accounts)
        .filter(|account| account.password.is_none() && account.hashes() == [ScramHash::Sha1])
        .count();
    (sha1_only > 0).then(|| {
        format!(
            "note: {sha1_only} account(s) came with SCRAM-SHA-1 keys only (Prosody's default \
             password_hash): their hosts offer SCRAM-SHA-1 and PLAIN but not SCRAM-SHA-256 \
             until each of them has logged in once with PLAIN (which stores SCRAM-SHA-256 keys) \
             or had its password set with `starling passwd`; `starling hash-report` counts \
             those left"
        )
    })
}

/// Writes `bytes` to `path` readable by the owner only (XEP-0227 §6: the keys in a backup
/// are password equivalents), through a temporary file renamed into place, so an interrupted
/// backup never leaves a truncated file under the final name.
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<(), WriteError> {
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".partial");
    let temporary = PathBuf::from(temporary);
    // Created anew (never through a planted symbolic link, never keeping an old file's mode);
    // a `.partial` that is not our own regular file is refused and left alone.
    starling_private_fs::write_new_file(&temporary, bytes, starling_private_fs::PRIVATE_FILE_MODE)
        .map_err(|source| WriteError {
            path: temporary.clone(),
            source,
        })?;
    if let Err(source) = std::fs::rename(&temporary, path) {
        let _ = std::fs::remove_file(&temporary);
        return Err(WriteError {
            path: path.to_path_buf(),
            source,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_are_normalised_and_must_be_configured() {
        let configured = ["Example.org".to_owned(), "b.test".to_owned()];
        assert_eq!(
            configured_host(&configured, "EXAMPLE.org").unwrap(),
            "example.org"
        );
        assert_eq!(
            configured_host(&configured, "c.test")
                .unwrap_err()
                .to_string(),
            "c.test is not one of the configured hosts (Example.org, b.test); nothing was written"
        );
        let err = configured_host(&configured, "a b").unwrap_err();
        assert!(matches!(err, HostError::Invalid { .. }), "{err}");
        assert_eq!(err.to_string(), "\"a b\" is not a valid host name");
    }

    #[test]
    fn summary_counts_everything() {
        assert_eq!(
            summary("restored", "a.test", &[]),
            "restored 0 account(s), 0 roster item(s), 0 subscription request(s), \
             0 offline message(s) on a.test"
        );
        assert_eq!(warning_lines(["x"]), ["warning: x"]);
    }

    // Issue 15: a backup's `.partial` file is created anew with mode 0600; a symbolic link
    // planted at that name is refused rather than followed.
    #[test]
    fn backup_is_private_and_never_written_through_a_link() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("backup.xml");
        let partial = dir.path().join("backup.xml.partial");
        std::fs::write(&partial, "stale").unwrap();
        std::fs::set_permissions(&partial, std::fs::Permissions::from_mode(0o644)).unwrap();
        write_private(&path, b"<server-data/>").unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(!partial.exists());

        let victim = dir.path().join("victim");
        std::fs::write(&victim, "not a backup").unwrap();
        std::os::unix::fs::symlink(&victim, &partial).unwrap();
        let err = write_private(&dir.path().join("backup.xml"), b"secret").unwrap_err();
        assert_eq!(err.path, partial);
        assert!(
            err.source.to_string().contains("symbolic link"),
            "{}",
            err.source
        );
        assert_eq!(std::fs::read(&victim).unwrap(), b"not a backup");
        // The refused attempt left the planted link alone (it is not ours to remove).
        assert!(partial.symlink_metadata().unwrap().file_type().is_symlink());
    }
}
