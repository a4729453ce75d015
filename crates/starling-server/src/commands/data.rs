//! The data commands of the `starling` binary: `backup`, `restore`, `import-prosody` and
//! `import-prosody-config`.
//!
//! They work on the database directly, like the account commands. Reading is safe while the
//! server runs (one snapshot per host). Writing is refused while the server's admin socket
//! answers, unless `--force`: online sessions keep their rosters in memory and would not see
//! the restored ones until they reconnect. What they decide besides files and the store is
//! `starling_backup::commands`.

use std::io::Write as _;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use rand::Rng as _;
use starling_backup::commands::{
    configured_host, derive_keys, sha1_only_note, summary, warning_lines, write_private,
};
use starling_backup::pie::{self, HostData, ImportedHost};
use starling_backup::prosody;
use starling_storage::{ExistingAccounts, PortableStore as _, StorageError};

use starling_config::Config;

/// Writes a XEP-0227 backup of `host` (or of every configured host) to `output`, or to
/// standard output. Returns a summary for standard error.
pub async fn backup(
    config: &Config,
    host: Option<&str>,
    output: Option<&Path>,
) -> anyhow::Result<Vec<String>> {
    let hosts = match host {
        Some(host) => vec![configured_host(&config.hosts, host)?],
        None => config.hosts.clone(),
    };
    let store = crate::store::open(config).await?;
    let mut data = Vec::new();
    let mut lines = Vec::new();
    for host in hosts {
        let accounts = store
            .export_host(&host)
            .await
            .with_context(|| format!("cannot read the data of {host}"))?;
        lines.push(summary("backed up", &host, &accounts));
        data.push(HostData { host, accounts });
    }
    let written = pie::write(&data);
    lines.extend(warning_lines(&written.warnings));
    match output {
        Some(path) => write_private(path, &written.bytes)?,
        None => {
            let mut stdout = std::io::stdout().lock();
            stdout
                .write_all(&written.bytes)
                .and_then(|()| stdout.flush())
                .context("cannot write the backup to standard output")?;
        }
    }
    Ok(lines)
}

/// Restores the accounts in a XEP-0227 file, all in one transaction.
pub async fn restore(
    config: &Config,
    file: &Path,
    replace: bool,
    force: bool,
) -> anyhow::Result<Vec<String>> {
    refuse_if_running(config, force)?;
    let bytes = pie::read_file(file)?;
    let data = pie::read(&bytes, now_unix_ms()).with_context(|| {
        format!(
            "{} is not a usable backup; nothing was restored",
            file.display()
        )
    })?;
    anyhow::ensure!(
        !data.hosts.is_empty(),
        "{} holds no <host/>; nothing was restored",
        file.display()
    );
    let mut lines = warning_lines(&data.warnings);
    lines.extend(write_hosts(config, data.hosts, replace, "restored").await?);
    Ok(lines)
}

/// Imports the accounts and rosters of a Prosody data directory, all in one transaction.
pub async fn import_prosody(
    config: &Config,
    dir: &Path,
    host: Option<&str>,
    replace: bool,
    force: bool,
) -> anyhow::Result<Vec<String>> {
    refuse_if_running(config, force)?;
    let data = prosody::read_dir(dir, host)
        .with_context(|| format!("cannot import {}; nothing was imported", dir.display()))?;
    anyhow::ensure!(
        !data.hosts.is_empty(),
        "{} has no host directory with accounts (expected DIR/<host>/accounts/<user>.dat)",
        dir.display()
    );
    let note = sha1_only_note(&data.hosts);
    let mut lines = warning_lines(&data.warnings);
    lines.extend(write_hosts(config, data.hosts, replace, "imported").await?);
    lines.extend(note);
    Ok(lines)
}

/// Checks every host, derives keys for plaintext passwords and writes all accounts at once.
/// `verb` starts each summary line ("restored", "imported").
async fn write_hosts(
    config: &Config,
    hosts: Vec<ImportedHost>,
    replace: bool,
    verb: &str,
) -> anyhow::Result<Vec<String>> {
    for host in &hosts {
        configured_host(&config.hosts, &host.host)?;
    }
    let iterations = config.c2s.scram_iterations;
    // PBKDF2 for every plaintext password: CPU work, off the reactor.
    let hosts = tokio::task::spawn_blocking(move || {
        let mut rng = rand::rng();
        derive_keys(hosts, iterations, || rng.random())
    })
    .await
    .context("key derivation did not complete")??;
    let mut lines = Vec::new();
    let mut all = Vec::new();
    for (host, accounts) in hosts {
        lines.push(summary(verb, &host, &accounts));
        all.extend(accounts);
    }
    let existing = if replace {
        ExistingAccounts::Replace
    } else {
        ExistingAccounts::Refuse
    };
    let store = crate::store::open(config).await?;
    match store.import_accounts(&all, existing).await {
        Ok(()) => Ok(lines),
        Err(StorageError::AccountExists(jid)) => anyhow::bail!(
            "account {jid} already exists; nothing was written (pass --replace to overwrite \
             existing accounts)"
        ),
        Err(err) => Err(err).context("cannot write the accounts; nothing was written"),
    }
}

/// Refuses to write while a server answers on the admin socket, unless `force`.
fn refuse_if_running(config: &Config, force: bool) -> anyhow::Result<()> {
    let socket = config.admin_socket();
    if !force && std::os::unix::net::UnixStream::connect(&socket).is_ok() {
        anyhow::bail!(
            "a server is running on this data (its admin socket {} accepts connections); stop \
             it first, or pass --force to write anyway (its online sessions keep their old \
             rosters until they reconnect)",
            socket.display()
        );
    }
    Ok(())
}

fn now_unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// `starling import-prosody-config FILE`: translates Prosody's configuration
/// (`starling_backup::prosody::config`), writes it to `output` (mode 0600: it may hold a
/// database password) and checks it as `check-config` does. Returns one line per thing
/// without an equivalent, then a summary.
pub fn import_prosody_config(
    file: &Path,
    output: &Path,
    data_dir: Option<std::path::PathBuf>,
    force: bool,
) -> anyhow::Result<Vec<String>> {
    anyhow::ensure!(
        force || !output.exists(),
        "{} exists; pass --force to replace it, or --output to write elsewhere",
        output.display()
    );
    let options = prosody::config::Options { data_dir };
    let translation = prosody::config::translate(file, &options)
        .with_context(|| format!("cannot translate {}", file.display()))?;
    write_private(output, translation.toml.as_bytes())?;
    let report = starling_config::check_config(Some(output));
    anyhow::ensure!(
        report.is_ok,
        "wrote {}, but check-config finds {} problem(s) in it:\n{}",
        output.display(),
        report.problem_count,
        report.text.trim_end()
    );
    let mut lines: Vec<String> = translation
        .notes
        .iter()
        .map(|note| format!("not translated: {note}"))
        .collect();
    lines.push(format!(
        "wrote {} from {} file(s); check-config accepts it",
        output.display(),
        translation.files.len()
    ));
    Ok(lines)
}
