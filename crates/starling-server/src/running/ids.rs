//! The server's source of generated ids: UUIDv7 for anything that sorts by time, OS randomness
//! for nonces, and the kept secret behind made-up SCRAM salts.

use std::io::Write as _;
use std::path::Path;

use anyhow::Context as _;
use rand::Rng as _;
use starling_stream::IdSource;

/// Real ids: `Uuid::now_v7()` and 24 random bytes per SCRAM nonce.
pub struct SystemIds;

impl IdSource for SystemIds {
    fn stream_id(&mut self) -> String {
        uuid::Uuid::now_v7().to_string()
    }

    fn nonce(&mut self) -> String {
        let bytes: [u8; 18] = rand::rng().random();
        // Base64 of 18 bytes is 24 printable characters with no `,` or padding (RFC 5802 nonce).
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(bytes)
    }

    fn resource(&mut self) -> uuid::Uuid {
        uuid::Uuid::now_v7()
    }
}

/// File in the data directory holding the secret behind made-up SCRAM salts for unknown users
/// (`starling_sasl::ServerContext::decoy_secret`).
const DECOY_SECRET_FILE: &str = "sasl-decoy.key";

/// The SCRAM decoy secret: read from `<data_dir>/sasl-decoy.key`, or made from OS randomness
/// and written there (mode 0600) on first start, so unknown users see the same salt across
/// attempts and restarts.
pub fn decoy_secret(data_dir: &Path) -> anyhow::Result<[u8; 32]> {
    let path = data_dir.join(DECOY_SECRET_FILE);
    let read = |path: &Path| -> anyhow::Result<[u8; 32]> {
        let bytes =
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        <[u8; 32]>::try_from(bytes.as_slice())
            .map_err(|_| anyhow::anyhow!("{} must hold exactly 32 bytes", path.display()))
    };
    if path.exists() {
        return read(&path);
    }
    starling_private_fs::create_private_dir(data_dir)
        .with_context(|| format!("cannot create data directory {}", data_dir.display()))?;
    let secret: [u8; 32] = rand::rng().random();
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(&path) {
        Ok(mut file) => {
            file.write_all(&secret)
                .with_context(|| format!("cannot write {}", path.display()))?;
            Ok(secret)
        }
        // Another process made it first; use theirs.
        Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => read(&path),
        Err(err) => Err(err).with_context(|| format!("cannot create {}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decoy_secret_is_made_once_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let first = decoy_secret(dir.path()).unwrap();
        assert_eq!(decoy_secret(dir.path()).unwrap(), first);
        assert_ne!(first, [0; 32]);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(dir.path().join(DECOY_SECRET_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::write(dir.path().join(DECOY_SECRET_FILE), b"short").unwrap();
        assert!(decoy_secret(dir.path()).is_err());
    }

    #[test]
    fn stream_ids_are_uuidv7_and_increase() {
        let mut ids = SystemIds;
        let first: uuid::Uuid = ids.stream_id().parse().unwrap();
        let second: uuid::Uuid = ids.stream_id().parse().unwrap();
        assert_eq!(first.get_version_num(), 7);
        assert!(second > first);
    }

    #[test]
    fn nonces_are_printable_without_commas_and_differ() {
        let mut ids = SystemIds;
        let a = ids.nonce();
        let b = ids.nonce();
        assert_eq!(a.len(), 24);
        assert!(a.bytes().all(|c| c.is_ascii_graphic() && c != b','));
        assert_ne!(a, b);
    }
}
