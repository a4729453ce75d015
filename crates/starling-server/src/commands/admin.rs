//! The client side of the admin socket: `starling list-sessions`, `kick` and `announce`, and
//! closing a deleted account's sessions after `deluser`. The server side is
//! `running::admin`.

use std::io::Read as _;
use std::path::Path;

use anyhow::Context as _;
use starling_admin::{Command, Response, SessionInfo};
use starling_config::Config;

/// Largest announcement read from standard input; the request must fit the admin protocol's
/// line limit with room for the JSON around it.
const MAX_ANNOUNCEMENT_BYTES: usize = starling_admin::MAX_REQUEST_BYTES / 2;

/// `starling list-sessions [HOST] [--json]`: one line per session, or the JSON array.
pub async fn list_sessions(
    config: &Config,
    host: Option<String>,
    json: bool,
) -> anyhow::Result<Vec<String>> {
    let response = request(config, Command::ListSessions { host }).await?;
    let Response::Sessions { sessions } = response else {
        anyhow::bail!("unexpected answer from the server: {response:?}");
    };
    if json {
        return Ok(vec![serde_json::to_string_pretty(&sessions)?]);
    }
    Ok(SessionInfo::table(&sessions))
}

/// `starling kick JID [--reason TEXT]`.
pub async fn kick(config: &Config, jid: String, reason: Option<String>) -> anyhow::Result<String> {
    match request(
        config,
        Command::Kick {
            jid: jid.clone(),
            reason,
        },
    )
    .await?
    {
        Response::Kicked { count } => Ok(format!("kicked {count} session(s) of {jid}")),
        other => anyhow::bail!("unexpected answer from the server: {other:?}"),
    }
}

/// After `deluser`: close the deleted account's sessions on the running server, if one
/// answers on the admin socket. Returns how many were closed; `None` when no server runs.
pub async fn close_deleted_account(config: &Config, jid: &str) -> anyhow::Result<Option<usize>> {
    let command = Command::Kick {
        jid: jid.to_owned(),
        reason: Some("the account was deleted".to_owned()),
    };
    match starling_admin::request(&config.admin_socket(), &command).await {
        Ok(Response::Kicked { count }) => Ok(Some(count)),
        Ok(other) => anyhow::bail!("unexpected answer from the server: {other:?}"),
        Err(starling_admin::ClientError::NotRunning { .. }) => Ok(None),
        Err(starling_admin::ClientError::Server {
            kind: starling_admin::ErrorKind::NotFound,
            ..
        }) => Ok(Some(0)),
        Err(err) => Err(err.into()),
    }
}

/// `starling announce HOST [--message TEXT]`; without `--message` the text is read from
/// standard input.
pub async fn announce(
    config: &Config,
    host: String,
    message: Option<String>,
) -> anyhow::Result<String> {
    let message = match message {
        Some(message) => message,
        None => read_stdin_message()?,
    };
    match request(
        config,
        Command::Announce {
            host: host.clone(),
            message,
        },
    )
    .await?
    {
        Response::Announced { count } => Ok(format!(
            "announcement sent to {count} available session(s) on {host}"
        )),
        other => anyhow::bail!("unexpected answer from the server: {other:?}"),
    }
}

fn read_stdin_message() -> anyhow::Result<String> {
    use std::io::IsTerminal as _;
    if std::io::stdin().is_terminal() {
        eprintln!("type the announcement, then Ctrl-D on a line of its own");
    }
    let mut bytes = Vec::new();
    let limit = u64::try_from(MAX_ANNOUNCEMENT_BYTES).unwrap_or(u64::MAX);
    std::io::stdin()
        .lock()
        .take(limit + 1)
        .read_to_end(&mut bytes)
        .context("cannot read the announcement from standard input")?;
    anyhow::ensure!(
        bytes.len() <= MAX_ANNOUNCEMENT_BYTES,
        "the announcement is longer than {MAX_ANNOUNCEMENT_BYTES} bytes"
    );
    let text = String::from_utf8(bytes).context("the announcement is not UTF-8")?;
    Ok(text.trim_end_matches(['\n', '\r']).to_owned())
}

async fn request(config: &Config, command: Command) -> anyhow::Result<Response> {
    let path = config.admin_socket();
    Ok(starling_admin::request(Path::new(&path), &command).await?)
}
