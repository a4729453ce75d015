//! The account commands of the `starling` binary: adduser, passwd, deluser, list-users,
//! hash-report.

use std::io::IsTerminal as _;
use std::path::Path;

use anyhow::Context as _;
use rand::Rng as _;
use starling_sasl::StoredCredentials;
use starling_storage::AccountStore as _;

use starling_config::Config;

/// Where a new password comes from.
pub enum PasswordSource<'a> {
    /// Read the first line of this file (`-` is standard input).
    File(&'a Path),
    /// Prompt on the terminal, or read a line from standard input when it is not a terminal.
    Interactive,
}

/// Create an account.
pub async fn add_user(
    config: &Config,
    jid: &str,
    source: PasswordSource<'_>,
) -> anyhow::Result<String> {
    let jid = config.account_jid(jid)?;
    let store = crate::store::open(config).await?;
    let creds = credentials(config, &read_password(source)?)?;
    store
        .create_account(&jid, &creds)
        .await
        .with_context(|| format!("cannot create {jid}"))?;
    Ok(format!("created {jid}"))
}

/// Change an account's password.
pub async fn set_password(
    config: &Config,
    jid: &str,
    source: PasswordSource<'_>,
) -> anyhow::Result<String> {
    let jid = config.account_jid(jid)?;
    let store = crate::store::open(config).await?;
    let creds = credentials(config, &read_password(source)?)?;
    store
        .set_credentials(&jid, &creds)
        .await
        .with_context(|| format!("cannot change the password of {jid}"))?;
    Ok(format!("changed the password of {jid}"))
}

/// Delete an account.
pub async fn delete_user(config: &Config, jid: &str) -> anyhow::Result<String> {
    let jid = config.account_jid(jid)?;
    let store = crate::store::open(config).await?;
    store
        .delete_account(&jid)
        .await
        .with_context(|| format!("cannot delete {jid}"))?;
    // A running server still has the account's sessions; end them (RFC 6120 §4.9.3.14's
    // policy-violation, as `kick` does) so a deleted account cannot keep chatting.
    let closed = super::admin::close_deleted_account(config, &jid.to_string())
        .await
        .with_context(|| format!("deleted {jid}, but could not close its sessions"))?;
    Ok(match closed {
        Some(count) if count > 0 => format!("deleted {jid} and closed {count} session(s)"),
        _ => format!("deleted {jid}"),
    })
}

/// List the accounts of one host, or of every configured host.
pub async fn list_users(config: &Config, host: Option<&str>) -> anyhow::Result<Vec<String>> {
    let store = crate::store::open(config).await?;
    let hosts: Vec<String> = match host {
        Some(host) => vec![host.to_owned()],
        None => config.hosts.clone(),
    };
    let mut lines = Vec::new();
    for host in hosts {
        for jid in store
            .list_accounts(&host)
            .await
            .with_context(|| format!("cannot list users of {host}"))?
        {
            lines.push(jid.to_string());
        }
    }
    Ok(lines)
}

/// `starling hash-report [HOST]`: one line per host (see `running::offers::report`).
pub async fn hash_report(config: &Config, host: Option<&str>) -> anyhow::Result<Vec<String>> {
    let hosts = match host {
        Some(host) => vec![starling_backup::commands::configured_host(
            &config.hosts,
            host,
        )?],
        None => config.hosts.clone(),
    };
    let store = crate::store::open(config).await?;
    let policy = config.c2s.scram_offer;
    crate::running::offers::report(&store, &hosts, policy.policy(), policy.name())
        .await
        .context("cannot count the accounts' SCRAM keys")
}

fn credentials(config: &Config, password: &str) -> anyhow::Result<StoredCredentials> {
    let mut rng = rand::rng();
    let salt_sha1: [u8; 16] = rng.random();
    let salt_sha256: [u8; 16] = rng.random();
    StoredCredentials::from_password(
        password,
        &salt_sha1,
        &salt_sha256,
        config.c2s.scram_iterations,
    )
    .map_err(|err| anyhow::anyhow!("password rejected: {err}"))
}

fn read_password(source: PasswordSource<'_>) -> anyhow::Result<String> {
    let password = match source {
        PasswordSource::File(path) if path == Path::new("-") => {
            read_first_line(std::io::stdin().lock())?
        }
        PasswordSource::File(path) => {
            let file = std::fs::File::open(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            read_first_line(std::io::BufReader::new(file))?
        }
        PasswordSource::Interactive if std::io::stdin().is_terminal() => {
            let first = rpassword::prompt_password("Password: ").context("cannot read password")?;
            let second =
                rpassword::prompt_password("Repeat password: ").context("cannot read password")?;
            anyhow::ensure!(first == second, "the passwords do not match");
            first
        }
        PasswordSource::Interactive => read_first_line(std::io::stdin().lock())?,
    };
    anyhow::ensure!(!password.is_empty(), "the password is empty");
    Ok(password)
}

fn read_first_line(mut reader: impl std::io::BufRead) -> anyhow::Result<String> {
    let mut line = String::new();
    reader
        .read_line(&mut line)
        .context("cannot read password")?;
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}
