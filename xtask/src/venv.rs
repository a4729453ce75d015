//! The Python venv with the pinned slixmpp that the interop tests drive (STYLE.md §6).
//!
//! Lives at `<target>/xtask/venv`. A stamp file inside it holds the requirements it was
//! built from; when they match `tests/interop/requirements.txt`, nothing is reinstalled.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context;

use crate::steps::Run;

const REQUIREMENTS: &str = "tests/interop/requirements.txt";
const STAMP: &str = "xtask-requirements.stamp";

/// Makes sure `venv` holds exactly the pinned requirements; returns its python.
pub fn ensure(root: &Path, venv: &Path) -> anyhow::Result<PathBuf> {
    let requirements_path = root.join(REQUIREMENTS);
    let requirements = fs::read_to_string(&requirements_path)
        .with_context(|| format!("reading {}", requirements_path.display()))?;
    let python = venv.join("bin").join("python");
    let stamp = venv.join(STAMP);

    if python.is_file() && fs::read_to_string(&stamp).is_ok_and(|old| old == requirements) {
        eprintln!("    {REQUIREMENTS} unchanged since the last install; reusing the venv");
        return Ok(python);
    }

    // --clear drops packages a previous requirements file installed.
    Command::new("python3")
        .args(["-m", "venv", "--clear"])
        .arg(venv)
        .run()
        .context("creating the interop venv (on Debian/Ubuntu: apt-get install python3-venv)")?;
    Command::new(&python)
        .args([
            "-m",
            "pip",
            "install",
            "--disable-pip-version-check",
            "--quiet",
        ])
        .arg("--requirement")
        .arg(&requirements_path)
        .run()
        .context("installing the interop requirements")?;
    fs::write(&stamp, &requirements).with_context(|| format!("writing {}", stamp.display()))?;
    Ok(python)
}
