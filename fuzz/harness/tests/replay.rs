//! `make test` replays every fuzz corpus without libFuzzer, as Envoy's CI replays its corpora:
//! each input in `fuzz/corpus/<target>/` goes through its target's body, so a crash found and
//! committed into the corpus stays fixed. A missing or empty corpus fails, never skips.

use std::path::{Path, PathBuf};

use sticky_canary_fuzz_harness::TARGETS;

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the harness sits in fuzz/")
        .to_path_buf()
}

/// Runs every input of `target`'s corpus, reporting all the inputs that fail, not the first.
fn replay(target: &str) {
    let (_, body) = TARGETS
        .iter()
        .find(|(name, _)| *name == target)
        .unwrap_or_else(|| panic!("no target {target}"));
    let dir = fuzz_dir().join("corpus").join(target);
    let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| {
        panic!(
            "{}: {e}: the corpus of fuzz target {target} is missing (it lives in the repository)",
            dir.display()
        )
    });
    let mut inputs: Vec<PathBuf> = entries
        .map(|entry| entry.expect("a readable directory entry").path())
        .collect();
    inputs.sort();
    assert!(!inputs.is_empty(), "{}: empty corpus", dir.display());
    let mut failed = Vec::new();
    for path in &inputs {
        let data = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        if std::panic::catch_unwind(|| body(&data)).is_err() {
            failed.push(path.display().to_string());
        }
    }
    assert!(
        failed.is_empty(),
        "{} of {} inputs of {target} fail (reproduce with `cargo fuzz run --sanitizer none \
         {target} <file>` in fuzz/):\n{}",
        failed.len(),
        inputs.len(),
        failed.join("\n")
    );
}

macro_rules! replay_tests {
    ($($target:ident),* $(,)?) => {
        $(
            #[test]
            fn $target() {
                replay(stringify!($target));
            }
        )*

        /// Every target has its test above, a cargo-fuzz binary and a corpus, and nothing else
        /// is there: the fuzz crate is outside the workspace, so nothing else would notice.
        #[test]
        fn targets_binaries_and_corpora_match() {
            let mut tested = vec![$(stringify!($target)),*];
            let mut names: Vec<&str> = TARGETS.iter().map(|(name, _)| *name).collect();
            tested.sort_unstable();
            names.sort_unstable();
            assert_eq!(tested, names, "a target without its replay test");
            let manifest = std::fs::read_to_string(fuzz_dir().join("Cargo.toml"))
                .expect("fuzz/Cargo.toml");
            let mut bins: Vec<&str> = manifest
                .split("[[bin]]")
                .skip(1)
                .filter_map(|bin| bin.split('"').nth(1))
                .collect();
            bins.sort_unstable();
            assert_eq!(bins, names, "fuzz/Cargo.toml's [[bin]]s are not the targets");
            let mut corpora: Vec<String> = std::fs::read_dir(fuzz_dir().join("corpus"))
                .expect("fuzz/corpus")
                .map(|e| e.expect("an entry").file_name().to_string_lossy().into_owned())
                .collect();
            corpora.sort_unstable();
            assert_eq!(corpora, names, "fuzz/corpus/ has a directory per target, no other");
        }
    };
}

replay_tests!(
    filter_config,
    rollouts,
    decide,
    cookie,
    spec_yaml,
    plan_file,
    prometheus_answer,
    dashboard_action,
);
