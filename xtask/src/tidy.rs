//! Tidy checks that keep the layout honest (STYLE.md §7), after rust-analyzer's `tidy.rs`.
//!
//! * Every `.rs` file under `crates/`, `xtask/` and `tests/` opens with a `//!` line.
//! * Every folder under `crates/` is named in `ARCHITECTURE.md`'s code map.
//! * `docs/compliance.md` and the feature table in `README.md` match the recorded scenario
//!   results (see `compliance::stale_problems`).
//!
//! All violations are collected and reported together.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

/// Folders whose Rust sources must carry a module doc line.
const SOURCE_ROOTS: [&str; 3] = ["crates", "xtask", "tests"];

pub fn check(root: &Path) -> anyhow::Result<()> {
    let mut problems = Vec::new();

    let mut sources = Vec::new();
    for dir in SOURCE_ROOTS {
        rust_files(&root.join(dir), &mut sources)?;
    }
    sources.sort();
    for path in &sources {
        let text =
            fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        if !starts_with_module_doc(&text) {
            problems.push(format!(
                "{}: the first non-empty line must be a `//!` module doc (STYLE.md §7)",
                relative(root, path)
            ));
        }
    }

    problems.extend(architecture_problems(root)?);
    problems.extend(crate::compliance::stale_problems(root)?);

    if problems.is_empty() {
        eprintln!(
            "    {} Rust files, the code map and the compliance tables checked",
            sources.len()
        );
        return Ok(());
    }
    for problem in &problems {
        eprintln!("tidy: {problem}");
    }
    bail!("{} tidy problem(s)", problems.len());
}

fn starts_with_module_doc(text: &str) -> bool {
    text.lines()
        .map(str::trim)
        .find(|line| !line.is_empty())
        .is_some_and(|line| line.starts_with("//!"))
}

/// Crate folders that `ARCHITECTURE.md` does not mention as a whole word.
fn architecture_problems(root: &Path) -> anyhow::Result<Vec<String>> {
    let architecture_path = root.join("ARCHITECTURE.md");
    let architecture = match fs::read_to_string(&architecture_path) {
        Ok(text) => text,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            return Ok(vec![
                "ARCHITECTURE.md is missing; it must hold the code map (STYLE.md §7)".to_owned(),
            ]);
        }
        Err(err) => return Err(err).context("reading ARCHITECTURE.md"),
    };
    let mut crate_dirs = Vec::new();
    let entries = fs::read_dir(root.join("crates")).context("listing crates/")?;
    for entry in entries {
        let entry = entry.context("listing crates/")?;
        if entry.file_type().context("listing crates/")?.is_dir() {
            crate_dirs.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    crate_dirs.sort();
    Ok(crate_dirs
        .into_iter()
        .filter(|name| !mentions(&architecture, name))
        .map(|name| format!("ARCHITECTURE.md does not mention crates/{name} in its code map"))
        .collect())
}

/// Whether `name` occurs in `text` not as part of a longer crate-like name.
fn mentions(text: &str, name: &str) -> bool {
    let is_name_char = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
    text.match_indices(name).any(|(start, _)| {
        let before = text.get(..start).and_then(|s| s.chars().next_back());
        let after = text
            .get(start + name.len()..)
            .and_then(|s| s.chars().next());
        !before.is_some_and(is_name_char) && !after.is_some_and(is_name_char)
    })
}

/// Collects `.rs` files below `dir`, skipping build output and hidden folders.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    if !dir.is_dir() {
        return Ok(());
    }
    let entries = fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))?;
    for entry in entries {
        let entry = entry.with_context(|| format!("listing {}", dir.display()))?;
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let file_type = entry
            .file_type()
            .with_context(|| format!("reading {}", path.display()))?;
        if file_type.is_dir() {
            if name != "target" && !name.starts_with('.') {
                rust_files(&path, out)?;
            }
        } else if file_type.is_file() && name.ends_with(".rs") {
            out.push(path);
        }
    }
    Ok(())
}

fn relative(root: &Path, path: &Path) -> String {
    path.strip_prefix(root)
        .unwrap_or(path)
        .display()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::{mentions, starts_with_module_doc};

    #[test]
    fn module_doc_must_be_first_non_empty_line() {
        assert!(starts_with_module_doc("//! Resource binding.\n"));
        assert!(starts_with_module_doc("\n\n  //! Indented.\nfn f() {}"));
        assert!(!starts_with_module_doc("// SPDX header\n//! doc\n"));
        assert!(!starts_with_module_doc("#![no_main]\n//! doc\n"));
        assert!(!starts_with_module_doc("/// item doc\n"));
        assert!(!starts_with_module_doc(""));
    }

    #[test]
    fn crate_name_must_appear_as_a_whole_name() {
        assert!(mentions("### `starling-xml`\n", "starling-xml"));
        assert!(mentions("crates/starling-xml/src", "starling-xml"));
        assert!(!mentions("starling-xml-extra only", "starling-xml"));
        assert!(!mentions("my-starling-xml", "starling-xml"));
        assert!(!mentions("nothing here", "starling-xml"));
    }
}
