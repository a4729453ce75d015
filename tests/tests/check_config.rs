//! `starling check-config` and `starling cert` with the real binary (issue 8, item 1): the
//! cases in `tests/check-config/*.toml` (format in its README) each give the exit status and
//! the messages their header names; `cert create` and `cert show` report the certificates
//! the server would serve.

use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::Digest as _;

/// What a case file's header asks for.
struct Expectation {
    exit_code: i32,
    present: Vec<String>,
    absent: Vec<String>,
}

fn expectation(text: &str) -> anyhow::Result<Expectation> {
    let mut exit_code = None;
    let mut present = Vec::new();
    let mut absent = Vec::new();
    for line in text.lines().take_while(|line| line.starts_with('#')) {
        if let Some(code) = line.strip_prefix("# expect-exit:") {
            exit_code = Some(code.trim().parse()?);
        } else if let Some(text) = line.strip_prefix("# expect:") {
            present.push(text.trim().to_owned());
        } else if let Some(text) = line.strip_prefix("# reject:") {
            absent.push(text.trim().to_owned());
        }
    }
    Ok(Expectation {
        exit_code: exit_code.ok_or_else(|| anyhow::anyhow!("no `# expect-exit:` line"))?,
        present,
        absent,
    })
}

/// Writes a certificate for `names` and its key as `<stem>.pem` and `<stem>.key`.
fn write_certificate(
    dir: &Path,
    stem: &str,
    names: &[&str],
    validity: Option<(i32, i32)>,
) -> anyhow::Result<Vec<u8>> {
    let mut params =
        rcgen::CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>())?;
    if let Some((from, to)) = validity {
        params.not_before = rcgen::date_time_ymd(from, 1, 1);
        params.not_after = rcgen::date_time_ymd(to, 1, 1);
    }
    let key = rcgen::KeyPair::generate()?;
    let cert = params.self_signed(&key)?;
    std::fs::write(dir.join(format!("{stem}.pem")), cert.pem())?;
    std::fs::write(dir.join(format!("{stem}.key")), key.serialize_pem())?;
    Ok(cert.der().to_vec())
}

/// A scratch directory with the certificates the cases refer to.
fn scratch() -> anyhow::Result<tempfile::TempDir> {
    let dir = tempfile::tempdir()?;
    write_certificate(dir.path(), "a", &["a.test"], None)?;
    write_certificate(dir.path(), "b", &["b.test"], None)?;
    write_certificate(dir.path(), "wild", &["*.a.test"], None)?;
    write_certificate(dir.path(), "expired", &["a.test"], Some((2000, 2001)))?;
    std::fs::write(dir.path().join("garbage.pem"), "not a certificate\n")?;
    Ok(dir)
}

/// Runs `starling --config starling.toml <args>` in `dir`; exit code and all output.
fn starling(dir: &Path, args: &[&str]) -> anyhow::Result<(i32, String)> {
    let output = Command::new(starling_testkit::server::find_binary()?)
        .current_dir(dir)
        .arg("--config")
        .arg("starling.toml")
        .args(args)
        .env_remove("STARLING_LOG")
        .output()?;
    let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&output.stderr));
    Ok((output.status.code().unwrap_or(-1), text))
}

fn case_files() -> anyhow::Result<Vec<PathBuf>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("check-config");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)?
        .map(|entry| entry.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    files.retain(|path| path.extension().is_some_and(|ext| ext == "toml"));
    files.sort();
    Ok(files)
}

#[test]
fn check_config_cases() -> anyhow::Result<()> {
    let files = case_files()?;
    assert!(files.len() >= 10, "only {} case files", files.len());
    let mut failures = Vec::new();
    for file in &files {
        let name = file.file_name().unwrap_or_default().to_string_lossy();
        let text = std::fs::read_to_string(file)?;
        let expected = expectation(&text).map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
        let dir = scratch()?;
        std::fs::write(dir.path().join("starling.toml"), &text)?;
        let (code, output) = starling(dir.path(), &["check-config"])?;
        let mut wrong = Vec::new();
        if code != expected.exit_code {
            wrong.push(format!("exit code {code}, expected {}", expected.exit_code));
        }
        for needle in &expected.present {
            if !output.contains(needle.as_str()) {
                wrong.push(format!("missing {needle:?}"));
            }
        }
        for needle in &expected.absent {
            if output.contains(needle.as_str()) {
                wrong.push(format!("unexpected {needle:?}"));
            }
        }
        if !wrong.is_empty() {
            failures.push(format!("{name}: {}\noutput:\n{output}", wrong.join("; ")));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    Ok(())
}

// The example in the repository is a good file as it stands.
#[test]
fn example_config_is_ok() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../starling.example.toml");
    std::fs::copy(example, dir.path().join("starling.toml"))?;
    let (code, output) = starling(dir.path(), &["check-config"])?;
    assert_eq!(code, 0, "{output}");
    assert!(
        output.starts_with("starling.toml: ok\nhosts:        localhost\n"),
        "{output}"
    );
    assert!(
        output.contains("localhost: starling-data/tls/cert.pem (self-signed, generated at start)"),
        "{output}"
    );
    Ok(())
}

// `check-config` needs no server and no database: it creates nothing.
#[test]
fn check_config_writes_nothing() -> anyhow::Result<()> {
    let dir = scratch()?;
    std::fs::write(
        dir.path().join("starling.toml"),
        "hosts = ['a.test', 'b.test']\ndata_dir = 'data'\n",
    )?;
    let (code, output) = starling(dir.path(), &["check-config"])?;
    assert_eq!(code, 0, "{output}");
    assert!(!dir.path().join("data").exists(), "{output}");
    Ok(())
}

// `cert create` makes the self-signed certificates `check-config` announced, keeps them on a
// second run, replaces them with --force, and refuses a host with a configured certificate.
// `cert show` prints each host's file, names and SHA-256 fingerprint.
#[test]
fn cert_create_and_show() -> anyhow::Result<()> {
    let dir = scratch()?;
    let a_der = write_certificate(dir.path(), "a", &["a.test"], None)?;
    std::fs::write(
        dir.path().join("starling.toml"),
        "hosts = ['a.test', 'b.test', 'c.test']\ndata_dir = 'data'\n\
         [tls.hosts.'a.test']\ncertificate = 'a.pem'\nprivate_key = 'a.key'\n",
    )?;
    let (code, output) = starling(dir.path(), &["cert", "show", "b.test"])?;
    assert_eq!(code, 0, "{output}");
    assert!(output.contains("not generated yet"), "{output}");

    let (code, output) = starling(dir.path(), &["cert", "create"])?;
    assert_eq!(code, 0, "{output}");
    assert!(
        output.contains("a.test: served by a.pem from [tls.hosts.\"a.test\"]"),
        "{output}"
    );
    assert!(
        output.contains("b.test: created data/tls/cert.pem")
            || output.contains("b.test: created data/tls/b.test/cert.pem"),
        "{output}"
    );
    assert!(
        output.contains("c.test: created data/tls/c.test/cert.pem"),
        "{output}"
    );
    let b_path = dir.path().join("data/tls/b.test/cert.pem");
    let b_pem = std::fs::read_to_string(&b_path)?;

    let (code, output) = starling(dir.path(), &["cert", "create", "b.test"])?;
    assert_eq!(code, 0, "{output}");
    assert!(output.contains("b.test: kept"), "{output}");
    assert_eq!(std::fs::read_to_string(&b_path)?, b_pem);
    let (code, output) = starling(dir.path(), &["cert", "create", "--force", "b.test"])?;
    assert_eq!(code, 0, "{output}");
    assert_ne!(std::fs::read_to_string(&b_path)?, b_pem, "{output}");
    let (code, output) = starling(dir.path(), &["cert", "create", "a.test"])?;
    assert_eq!(code, 1, "{output}");
    assert!(output.contains("a.test: served by a.pem"), "{output}");
    let (code, output) = starling(dir.path(), &["cert", "create", "d.test"])?;
    assert_eq!(code, 1, "{output}");
    assert!(
        output.contains("d.test is not one of the configured hosts"),
        "{output}"
    );

    let (code, output) = starling(dir.path(), &["cert", "show"])?;
    assert_eq!(code, 0, "{output}");
    let fingerprint = sha2::Sha256::digest(&a_der)
        .iter()
        .map(|byte| format!("{byte:02X}"))
        .collect::<Vec<_>>()
        .join(":");
    let a_section = output
        .split("\nb.test\n")
        .next()
        .unwrap_or_default()
        .to_owned();
    assert!(a_section.starts_with("a.test\n"), "{output}");
    assert!(a_section.contains("file:        a.pem"), "{output}");
    assert!(
        a_section.contains(&format!("sha256:      {fingerprint}")),
        "{output}"
    );
    assert!(a_section.contains("names:       a.test"), "{output}");
    assert!(output.contains("names:       b.test"), "{output}");
    assert!(output.contains("names:       c.test"), "{output}");
    assert!(output.contains("subject:     CN=c.test"), "{output}");
    assert!(!output.contains("warning"), "{output}");

    // --help exists for each command.
    for args in [
        &["check-config", "--help"][..],
        &["cert", "show", "--help"],
        &["cert", "create", "--help"],
    ] {
        let (code, output) = starling(dir.path(), args)?;
        assert_eq!(code, 0, "{args:?}: {output}");
        assert!(output.contains("Usage:"), "{args:?}: {output}");
    }
    Ok(())
}
