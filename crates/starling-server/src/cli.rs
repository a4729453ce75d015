//! The `starling` command line: global flags and one subcommand per operator command.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use starling_config::LogFormat;

/// Starling, an XMPP server.
#[derive(Parser)]
#[command(version, about)]
pub struct Cli {
    /// Configuration file; without it, `./starling.toml` is used if present, else the defaults
    /// (serve localhost on 127.0.0.1:5222 and :5223, data in ./starling-data).
    #[arg(long, short, global = true)]
    pub config: Option<PathBuf>,
    /// Log output format; overrides `log.format` in the config file.
    #[arg(long, global = true, value_enum)]
    pub log_format: Option<LogFormat>,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run the server (the default).
    Serve,
    /// Create an account, e.g. `starling adduser alice@localhost`.
    Adduser {
        /// The account's bare JID.
        jid: String,
        /// Read the password from the first line of this file (`-` for standard input)
        /// instead of prompting.
        #[arg(long)]
        password_file: Option<PathBuf>,
    },
    /// Change an account's password.
    Passwd {
        /// The account's bare JID.
        jid: String,
        /// Read the password from the first line of this file (`-` for standard input).
        #[arg(long)]
        password_file: Option<PathBuf>,
    },
    /// Delete an account.
    Deluser {
        /// The account's bare JID.
        jid: String,
    },
    /// List the accounts of a host (default: every configured host).
    ListUsers {
        /// Only this host.
        host: Option<String>,
    },
    /// For each host (or only HOST): how many accounts lack keys for each SCRAM hash, and
    /// which SCRAM mechanisms the host offers because of it (`c2s.scram_offer`). Accounts
    /// imported with SCRAM-SHA-1 keys only get SCRAM-SHA-256 keys at their first PLAIN login;
    /// once none lacks them, the host offers SCRAM-SHA-256. Safe while the server runs.
    HashReport {
        /// Only this host.
        host: Option<String>,
    },
    /// List the sessions of the running server, one line each: full JID, peer address,
    /// connected since (UTC), TLS (direct or STARTTLS), state (connected, available,
    /// interested) and priority. Talks to the server over its admin socket.
    ListSessions {
        /// Only this host.
        host: Option<String>,
        /// Print a JSON array instead of the table.
        #[arg(long)]
        json: bool,
    },
    /// Disconnect sessions of the running server: a bare JID ends all its resources, a full
    /// JID one. The client gets a `<policy-violation/>` stream error with the reason as text.
    /// Fails when no such session is connected.
    Kick {
        /// A bare JID (every resource) or a full JID (one session).
        jid: String,
        /// Text sent to the client with the stream error.
        #[arg(long)]
        reason: Option<String>,
    },
    /// Send a headline message from HOST to every available session of HOST on the running
    /// server, e.g. `starling announce localhost --message "restart at 18:00"`.
    Announce {
        /// The host whose online users get the message.
        host: String,
        /// The message text; without it, the text is read from standard input.
        #[arg(long, short)]
        message: Option<String>,
    },
    /// Check the config file and the certificates it names; each problem with its key and line.
    ///
    /// Reports unknown keys, values of the wrong type or out of range, colliding listen
    /// addresses, and for each host a certificate that is missing, does not match its private
    /// key, does not name the host or is not valid today. Writes nothing. Exit status 0 with a
    /// summary (hosts, listeners, storage, which certificate serves which host) when the file
    /// is fine, 1 with one line per problem otherwise.
    CheckConfig,
    /// Show or create the TLS certificates of the configured hosts.
    ///
    /// Each host is served its `[tls.hosts."<host>"]` certificate, else the `[tls]` one, else
    /// a self-signed one generated in the data directory.
    #[command(subcommand)]
    Cert(CertCommand),
    /// Back up accounts (their SCRAM keys, never passwords), rosters, pending subscription
    /// requests and offline messages as a XEP-0227 portable file. Safe while the server runs.
    Backup {
        /// Only this host (default: every configured host).
        host: Option<String>,
        /// Write to this file, readable by its owner only (default: standard output).
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
    /// Restore a XEP-0227 file written by `backup` (or by another server) in one transaction.
    /// Its hosts must be configured; existing accounts are an error unless --replace.
    Restore {
        /// The backup file.
        file: PathBuf,
        /// Replace accounts that already exist (with everything they own).
        #[arg(long)]
        replace: bool,
        /// Write even though a server answers on the admin socket.
        #[arg(long)]
        force: bool,
    },
    /// Import accounts and rosters from a Prosody data directory (its default `internal`
    /// storage: DIR/<host>/accounts/*.dat and roster/*.dat) in one transaction.
    ImportProsody {
        /// Prosody's data directory.
        dir: PathBuf,
        /// Only this host (default: every host directory with accounts).
        #[arg(long)]
        host: Option<String>,
        /// Replace accounts that already exist (with everything they own).
        #[arg(long)]
        replace: bool,
        /// Write even though a server answers on the admin socket.
        #[arg(long)]
        force: bool,
    },
    /// Translate Prosody's configuration into a starling.toml, reading it as data (it is never
    /// run): virtual hosts, certificates, client ports, encryption and SASL settings, limits,
    /// storage and modules_enabled. Prints one line for each thing without an equivalent, and
    /// checks the written file as `check-config` does.
    ImportProsodyConfig {
        /// Prosody's main configuration file, e.g. /etc/prosody/prosody.cfg.lua; the files it
        /// includes are read too.
        file: PathBuf,
        /// Where to write (default: ./starling.toml), readable by its owner only.
        #[arg(long, short)]
        output: Option<PathBuf>,
        /// `data_dir` for the new file (default: Starling's, ./starling-data).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Replace the output file if it exists.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Subcommand)]
pub enum CertCommand {
    /// For each host (or only HOST): the certificate file serving it, its subject, names,
    /// issuer, validity and SHA-256 fingerprint.
    Show {
        /// Only this host.
        host: Option<String>,
    },
    /// Generate self-signed certificates in the data directory for hosts that have no
    /// configured certificate (default: all hosts). A running server picks them up on SIGHUP.
    Create {
        /// Only these hosts.
        hosts: Vec<String>,
        /// Replace certificates that were generated before.
        #[arg(long)]
        force: bool,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_format_is_a_global_flag() {
        let cli = Cli::try_parse_from(["starling", "--log-format", "json", "list-users"]).unwrap();
        assert_eq!(cli.log_format, Some(LogFormat::Json));
        let cli = Cli::try_parse_from(["starling", "serve", "--log-format", "human"]).unwrap();
        assert_eq!(cli.log_format, Some(LogFormat::Human));
        assert_eq!(Cli::try_parse_from(["starling"]).unwrap().log_format, None);
        assert!(Cli::try_parse_from(["starling", "--log-format", "xml"]).is_err());
    }
}
