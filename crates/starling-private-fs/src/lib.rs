//! Creating the server's private files and directories (issue 15): secrets (backups, generated
//! TLS keys) with mode 0600, never through a symbolic link and never keeping an older file's
//! mode, and the data directory with mode 0700.
//!
//! `OpenOptions::create(true)` opens whatever is at the path: a symbolic link planted there
//! makes the server write a secret wherever it points, and an existing file keeps its (possibly
//! world-readable) mode. So a file is always created anew (`O_CREAT | O_EXCL`, which refuses a
//! symbolic link, dangling or not); a stale file from an earlier run is removed first only if
//! it is a regular file owned by the server's own user, and anything else is an error that
//! names the path.
//!
//! Used by the server (the data directory, generated TLS keys, the SASL decoy secret) and by
//! `starling-backup` (backup files). Its one event keeps the target it had in the server.

use std::fs::File;
use std::io::{self, Write as _};
use std::os::unix::fs::{
    DirBuilderExt as _, MetadataExt as _, OpenOptionsExt as _, PermissionsExt as _,
};
use std::path::Path;

/// Mode of files that hold secrets or account data.
pub const PRIVATE_FILE_MODE: u32 = 0o600;
/// Mode of the data directory.
pub const PRIVATE_DIR_MODE: u32 = 0o700;

/// Create `path` anew with `mode` and write `contents` to it (flushed to disk), replacing a
/// stale regular file of ours; a symbolic link or someone else's file there is an error.
pub fn write_new_file(path: &Path, contents: &[u8], mode: u32) -> io::Result<()> {
    let mut file = create_new_file(path, mode)?;
    file.write_all(contents)?;
    file.sync_all()
}

/// Create `path` anew with `mode`, after removing a stale regular file owned by this process's
/// user. The mode is set explicitly too, so the umask cannot widen or narrow it.
pub fn create_new_file(path: &Path, mode: u32) -> io::Result<File> {
    remove_stale_file(path)?;
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)?;
    file.set_permissions(std::fs::Permissions::from_mode(mode))?;
    Ok(file)
}

/// Create the data directory `path` (and missing parents) with mode 0700. An existing
/// directory that others may read or enter is narrowed to 0700; when that is not possible (it
/// belongs to another user, as a bind mount may), a warning says so and start-up goes on: the
/// files that matter inside are 0600 themselves.
pub fn create_private_dir(path: &Path) -> io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(PRIVATE_DIR_MODE)
        .create(path)?;
    let mode = std::fs::metadata(path)?.mode() & 0o777;
    if mode & 0o077 != 0
        && let Err(err) =
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(PRIVATE_DIR_MODE))
    {
        tracing::warn!(
            target: "starling::private_fs",
            path = %path.display(),
            mode = format!("{mode:o}"),
            error = %err,
            "the data directory is open to other users and cannot be made private"
        );
    }
    Ok(())
}

/// Remove what is at `path` if it is a regular file owned by this process's user; nothing
/// there is fine; anything else is an error naming the path.
fn remove_stale_file(path: &Path) -> io::Result<()> {
    let metadata = match std::fs::symlink_metadata(path) {
        Ok(metadata) => metadata,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(err) => return Err(err),
    };
    let refuse = |what: &str| {
        Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!(
                "{} is {what}; refusing to replace it (remove it if it is safe to)",
                path.display()
            ),
        ))
    };
    if metadata.file_type().is_symlink() {
        return refuse("a symbolic link");
    }
    if !metadata.file_type().is_file() {
        return refuse("not a regular file");
    }
    if metadata.uid() != rustix::process::geteuid().as_raw() {
        return refuse("owned by another user");
    }
    std::fs::remove_file(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode_of(path: &Path) -> u32 {
        std::fs::symlink_metadata(path).unwrap().mode() & 0o777
    }

    #[test]
    fn new_files_are_private_and_replace_stale_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        std::fs::write(&path, "stale, world-readable").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        write_new_file(&path, b"key", PRIVATE_FILE_MODE).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"key");
        assert_eq!(mode_of(&path), 0o600);
    }

    #[test]
    fn a_symbolic_link_at_the_path_is_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "not yours").unwrap();
        let path = dir.path().join("secret");
        std::os::unix::fs::symlink(&victim, &path).unwrap();
        let err = write_new_file(&path, b"key", PRIVATE_FILE_MODE).unwrap_err();
        assert!(err.to_string().contains("is a symbolic link"), "{err}");
        assert_eq!(std::fs::read(&victim).unwrap(), b"not yours");
        // A dangling link is refused as well, rather than creating its target.
        let dangling = dir.path().join("dangling");
        std::os::unix::fs::symlink(dir.path().join("nowhere"), &dangling).unwrap();
        assert!(write_new_file(&dangling, b"key", PRIVATE_FILE_MODE).is_err());
        assert!(!dir.path().join("nowhere").exists());
    }

    #[test]
    fn the_data_directory_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("a").join("data");
        create_private_dir(&data).unwrap();
        assert_eq!(mode_of(&data), 0o700);
        // An existing directory open to others is narrowed.
        let open = dir.path().join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o755)).unwrap();
        create_private_dir(&open).unwrap();
        assert_eq!(mode_of(&open), 0o700);
    }
}
