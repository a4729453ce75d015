//! Replays the committed fuzz corpora through the fuzz targets' checks on stable Rust: every
//! file in `fuzz/regressions/<target>/` (crashes found by `cargo xtask fuzz`) and in
//! `fuzz/corpus-seed/<target>/` (hand-written seeds).

use std::path::{Path, PathBuf};

use starling_fuzz_checks::TARGETS;

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz")
}

/// The files directly in `dir`, sorted; none if it does not exist.
fn inputs(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|entry| entry.expect("listing a corpus folder").path())
        .filter(|path| path.is_file())
        .filter(|path| {
            !path
                .file_name()
                .is_some_and(|name| name.to_string_lossy().starts_with('.'))
        })
        .collect();
    files.sort();
    files
}

/// Runs every input of `corpus` through its target's check; fails naming every file that
/// fails, after trying them all. Returns how many inputs passed.
fn replay(corpus: &str) -> usize {
    let mut passed = 0;
    let mut failed = Vec::new();
    for (target, check) in TARGETS {
        for path in inputs(&fuzz_dir().join(corpus).join(target)) {
            let data = std::fs::read(&path).expect("reading a corpus file");
            match std::panic::catch_unwind(|| check(&data)) {
                Ok(()) => passed += 1,
                Err(_) => failed.push(format!("{target}: {}", path.display())),
            }
        }
    }
    assert!(failed.is_empty(), "failing inputs:\n{}", failed.join("\n"));
    passed
}

#[test]
fn regressions_pass() {
    replay("regressions");
}

#[test]
fn seeds_pass() {
    // Each target has seeds; an empty or misplaced folder would make this test vacuous.
    for (target, _) in TARGETS {
        assert!(
            !inputs(&fuzz_dir().join("corpus-seed").join(target)).is_empty(),
            "no seeds for {target}"
        );
    }
    assert!(replay("corpus-seed") >= TARGETS.len());
}
