//! A throwaway PostgreSQL for the storage tests (STYLE.md §6: real services, no mocks).
//!
//! `start` finds `initdb` and `pg_ctl` (on `PATH`, else Debian's `/usr/lib/postgresql/<ver>/bin`),
//! installing Debian's `postgresql` package first when they are missing and xtask runs as root.
//! It creates a cluster with trust authentication in a fresh directory under the system temp
//! directory and starts it on a free loopback port. Dropping the returned guard stops the
//! server and deletes the directory, so a failing step cleans up too.
//!
//! PostgreSQL refuses to run as root. As root, the cluster belongs to the `postgres` system user
//! (which the Debian package creates) and every PostgreSQL command runs through `runuser`. The
//! directory lives under the temp directory rather than the target directory because the
//! latter is often under root's home, which that user cannot enter, and because the Unix
//! socket path must stay short.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, bail};

use crate::steps::Run;

/// The environment variable the storage tests read the connection string from.
pub const URL_VARIABLE: &str = "STARLING_TEST_POSTGRES_URL";

/// The environment variable naming the PEM file of the CA that signed the server's TLS
/// certificate (for `localhost` and `127.0.0.1`), for the `sslmode=verify-full` tests.
pub const CA_VARIABLE: &str = "STARLING_TEST_POSTGRES_CA";

/// Seconds `pg_ctl` waits for the server to start or stop before giving up.
const PG_CTL_WAIT_SECONDS: &str = "30";

/// Attempts at starting on a free port: another process may take the port between our probe
/// and the server's bind.
const PORT_ATTEMPTS: usize = 3;

/// The system user that owns the cluster when xtask runs as root.
const SERVER_USER: &str = "postgres";

/// A running throwaway PostgreSQL; stopped and deleted on drop.
pub struct TestPostgres {
    pg_ctl: PathBuf,
    /// Holds `data/`, the Unix socket and `server.log`.
    dir: PathBuf,
    /// `Some(user)` when commands run as that user (xtask is root).
    run_as: Option<&'static str>,
    pub url: String,
    /// The CA certificate (PEM) behind the server's TLS certificate.
    pub ca_file: PathBuf,
    pub version: String,
}

impl TestPostgres {
    pub fn start() -> anyhow::Result<Self> {
        let root = is_root()?;
        let bin = match find_bin_dir() {
            Some(bin) => bin,
            None => {
                install(root)?;
                find_bin_dir().context(
                    "installed the postgresql package but still found no initdb and pg_ctl",
                )?
            }
        };
        let (initdb, pg_ctl) = (bin.join("initdb"), bin.join("pg_ctl"));
        let version = output(Command::new(&pg_ctl).arg("--version"))?;

        let run_as = root.then_some(SERVER_USER);
        let dir = std::env::temp_dir().join(format!("starling-xtask-pg-{}", std::process::id()));
        if dir.exists() {
            // Left by an earlier xtask that had this pid and was killed; nothing of ours.
            let _ = stop_server(&pg_ctl, &dir, run_as);
            std::fs::remove_dir_all(&dir)
                .with_context(|| format!("removing stale {}", dir.display()))?;
        }
        std::fs::create_dir(&dir).with_context(|| format!("creating {}", dir.display()))?;
        // The guard exists from here on, so any failure below removes the directory.
        let mut server = Self {
            pg_ctl,
            dir,
            run_as,
            url: String::new(),
            ca_file: PathBuf::new(),
            version,
        };
        if let Some(user) = run_as {
            Command::new("chown")
                .arg(format!("{user}:"))
                .arg(&server.dir)
                .run()
                .with_context(|| {
                    format!("PostgreSQL cannot run as root and the `{user}` user cannot be given the cluster directory")
                })?;
        }

        let data = server.dir.join("data");
        // C locale and UTF-8: containers often have no other locale generated. --no-sync
        // because the cluster is deleted after the run.
        server
            .command(&initdb)
            .arg("--pgdata")
            .arg(&data)
            .args(["--username=postgres", "--auth=trust", "--encoding=UTF8"])
            .args(["--locale=C", "--no-sync"])
            .stdout(Stdio::null())
            .run()
            .context("initdb failed")?;

        server.ca_file = server.give_certificate(&data)?;

        let mut last_error = None;
        for _ in 0..PORT_ATTEMPTS {
            let port = free_port()?;
            // -F: no fsync, for the same reason as --no-sync. TLS is offered, not required, so
            // clients choose with sslmode.
            let options = format!(
                "-F -h 127.0.0.1 -p {port} -k '{}' -c ssl=on -c ssl_cert_file=server.crt \
                 -c ssl_key_file=server.key",
                server.dir.display()
            );
            let started = server
                .command(&server.pg_ctl)
                .arg("--pgdata")
                .arg(&data)
                .arg("--log")
                .arg(server.dir.join("server.log"))
                .args(["-o", &options, "-w", "-t", PG_CTL_WAIT_SECONDS, "start"])
                .stdout(Stdio::null())
                .run();
            match started {
                Ok(()) => {
                    server.url =
                        format!("host=127.0.0.1 port={port} user=postgres dbname=postgres");
                    return Ok(server);
                }
                Err(err) => last_error = Some(err),
            }
        }
        let log = std::fs::read_to_string(server.dir.join("server.log")).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(20).collect();
        for line in tail.into_iter().rev() {
            eprintln!("    server.log: {line}");
        }
        Err(last_error
            .unwrap_or_else(|| anyhow::anyhow!("no attempt was made"))
            .context(format!(
                "PostgreSQL did not start after {PORT_ATTEMPTS} attempts"
            )))
    }

    /// Writes a throwaway CA (`ca.crt` beside the cluster) and a certificate it signed for
    /// `localhost` and `127.0.0.1` (`server.crt`, `server.key` in the cluster's data
    /// directory, where PostgreSQL wants the key private to its user); returns the CA's path.
    fn give_certificate(&self, data: &Path) -> anyhow::Result<PathBuf> {
        let generate = || -> Result<(String, String, String), rcgen::Error> {
            let mut ca = rcgen::CertificateParams::new(Vec::<String>::new())?;
            ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
            ca.distinguished_name
                .push(rcgen::DnType::CommonName, "Starling test PostgreSQL CA");
            let ca = rcgen::CertifiedIssuer::self_signed(ca, rcgen::KeyPair::generate()?)?;
            let key = rcgen::KeyPair::generate()?;
            let leaf = rcgen::CertificateParams::new(vec![
                "localhost".to_owned(),
                "127.0.0.1".to_owned(),
            ])?
            .signed_by(&key, &ca)?;
            Ok((ca.pem(), leaf.pem(), key.serialize_pem()))
        };
        let (ca_pem, cert_pem, key_pem) = generate().context("generating TLS certificates")?;
        let ca_file = self.dir.join("ca.crt");
        std::fs::write(&ca_file, ca_pem).context("writing ca.crt")?;
        let key_file = data.join("server.key");
        std::fs::write(data.join("server.crt"), cert_pem).context("writing server.crt")?;
        std::fs::write(&key_file, key_pem).context("writing server.key")?;
        {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600))
                .context("making server.key private")?;
        }
        if let Some(user) = self.run_as {
            Command::new("chown")
                .arg(format!("{user}:"))
                .arg(data.join("server.crt"))
                .arg(&key_file)
                .run()
                .context("giving the TLS key to the PostgreSQL user")?;
        }
        Ok(ca_file)
    }

    fn command(&self, program: &Path) -> Command {
        command_as(program, &self.dir, self.run_as)
    }
}

impl Drop for TestPostgres {
    fn drop(&mut self) {
        if let Err(err) = stop_server(&self.pg_ctl, &self.dir, self.run_as) {
            eprintln!("    warning: stopping PostgreSQL: {err:#}");
        }
        if let Err(err) = std::fs::remove_dir_all(&self.dir) {
            eprintln!("    warning: removing {}: {err}", self.dir.display());
        }
    }
}

/// Stops the server of the cluster in `dir`, if one runs; `-m immediate` because the data is
/// thrown away.
fn stop_server(pg_ctl: &Path, dir: &Path, run_as: Option<&str>) -> anyhow::Result<()> {
    let data = dir.join("data");
    if !data.join("postmaster.pid").exists() {
        return Ok(());
    }
    command_as(pg_ctl, dir, run_as)
        .arg("--pgdata")
        .arg(&data)
        .args(["-m", "immediate", "-w", "-t", PG_CTL_WAIT_SECONDS, "stop"])
        .stdout(Stdio::null())
        .run()
}

/// `program`, run as `user` through `runuser` when one is given, from `dir` (PostgreSQL's
/// tools complain when they cannot read the current directory).
fn command_as(program: &Path, dir: &Path, user: Option<&str>) -> Command {
    let mut command = match user {
        Some(user) => {
            let mut command = Command::new("runuser");
            command.args(["-u", user, "--"]).arg(program);
            command
        }
        None => Command::new(program),
    };
    command.current_dir(dir);
    command
}

/// The directory holding both `initdb` and `pg_ctl`: the one on `PATH`, else the newest
/// Debian `/usr/lib/postgresql/<major>/bin`.
fn find_bin_dir() -> Option<PathBuf> {
    let has_tools = |dir: &Path| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file();
    if let Some(path) = std::env::var_os("PATH")
        && let Some(dir) = std::env::split_paths(&path).find(|dir| has_tools(dir))
    {
        return Some(dir);
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let major = entry.file_name().to_str()?.parse().ok()?;
            Some((major, entry.path().join("bin")))
        })
        .filter(|(_, bin)| has_tools(bin))
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

/// Installs Debian's `postgresql` package, which only root can do.
fn install(root: bool) -> anyhow::Result<()> {
    if !root {
        bail!(
            "PostgreSQL's initdb and pg_ctl were found neither on PATH nor in \
             /usr/lib/postgresql/*/bin; the storage tests need a real PostgreSQL. Install it \
             (Debian/Ubuntu: `sudo apt-get install postgresql`) or run xtask as root so it can"
        );
    }
    if Command::new("apt-get")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_err()
    {
        bail!("PostgreSQL is not installed and there is no apt-get to install it with");
    }
    eprintln!("    PostgreSQL not found; installing the Debian package");
    Command::new("apt-get")
        .arg("update")
        .env("DEBIAN_FRONTEND", "noninteractive")
        .run()?;
    Command::new("apt-get")
        .args(["install", "-y", "--no-install-recommends", "postgresql"])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .run()
        .context("installing the postgresql package")
}

fn is_root() -> anyhow::Result<bool> {
    Ok(output(Command::new("id").arg("-u"))? == "0")
}

/// A loopback port nothing listened on a moment ago.
fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("binding a loopback port")?;
    Ok(listener.local_addr()?.port())
}

/// The trimmed standard output of a command that must succeed.
fn output(command: &mut Command) -> anyhow::Result<String> {
    let shown = format!("{command:?}");
    let out = command
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("could not run {shown}"))?;
    if !out.status.success() {
        bail!("{shown} exited with {}", out.status);
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}
