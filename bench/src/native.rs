//! The pure decision, natively: nanoseconds from the criterion benchmark and instructions from
//! callgrind, both over the cases in `filter/benches/fixtures`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};
use serde_json::Value;
use sticky_canary_e2e::locate::workspace_root;

/// Iteration counts of the two callgrind runs; their difference cancels start-up and set-up.
const CALLGRIND_RUNS: (u64, u64) = (200, 2200);

/// One case of the native benchmarks.
#[derive(Debug, Clone, PartialEq)]
pub struct Case {
    /// `group/param`, as in `filter/benches/fixtures`.
    pub id: String,
    /// Median nanoseconds per decision (criterion).
    pub nanos: f64,
    /// Instructions per decision (callgrind), when valgrind is installed.
    pub instructions: Option<u64>,
}

/// The benchmark executables, built by cargo in release mode.
struct Executables {
    decision: PathBuf,
    instructions: PathBuf,
}

fn build() -> Result<Executables> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = Command::new(cargo)
        .current_dir(workspace_root())
        .args(["bench", "-q", "-p", "sticky-canary-filter", "--no-run"])
        .args(["--bench", "decision", "--bench", "instructions"])
        .args(["--message-format", "json"])
        .stderr(Stdio::inherit())
        .output()
        .context("running cargo bench --no-run")?;
    if !output.status.success() {
        bail!("building the native benchmarks failed ({})", output.status);
    }
    let mut found = (None, None);
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let Ok(message) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        let Some(executable) = message["executable"].as_str() else {
            continue;
        };
        match message["target"]["name"].as_str() {
            Some("decision") => found.0 = Some(PathBuf::from(executable)),
            Some("instructions") => found.1 = Some(PathBuf::from(executable)),
            _ => {}
        }
    }
    match found {
        (Some(decision), Some(instructions)) => Ok(Executables {
            decision,
            instructions,
        }),
        _ => bail!("cargo did not report both benchmark executables"),
    }
}

/// Runs criterion (short: the figures are for the table, `cargo bench` gives the careful
/// ones) and callgrind over every case.
pub fn measure() -> Result<Vec<Case>> {
    let exes = build()?;
    let home = tempfile::tempdir()?;
    let status = Command::new(&exes.decision)
        .args([
            "--bench",
            "--warm-up-time",
            "0.5",
            "--measurement-time",
            "1",
        ])
        .env("CRITERION_HOME", home.path())
        .stdout(Stdio::null())
        .status()
        .context("running the criterion benchmark")?;
    if !status.success() {
        bail!("the criterion benchmark failed ({status})");
    }
    let listing = Command::new(&exes.instructions)
        .output()
        .context("listing the benchmark cases")?;
    let ids: Vec<String> = String::from_utf8_lossy(&listing.stdout)
        .lines()
        .skip(1)
        .map(|l| l.trim().to_owned())
        .collect();
    let valgrind = crate::callgrind::available();
    ids.into_iter()
        .map(|id| {
            let nanos = criterion_median(home.path(), &id)?;
            let instructions = if valgrind {
                Some(instructions(&exes.instructions, &id)?)
            } else {
                None
            };
            Ok(Case {
                id,
                nanos,
                instructions,
            })
        })
        .collect()
}

fn criterion_median(home: &Path, id: &str) -> Result<f64> {
    let path = home.join(id).join("new/estimates.json");
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("reading criterion's {}", path.display()))?;
    let estimates: Value = serde_json::from_str(&text)?;
    estimates["median"]["point_estimate"]
        .as_f64()
        .with_context(|| format!("no median in {}", path.display()))
}

fn instructions(exe: &Path, id: &str) -> Result<u64> {
    let count = |n: u64| -> Result<u64> {
        let output = Command::new("valgrind")
            .args(["--tool=callgrind", "--callgrind-out-file=/dev/null"])
            .arg(exe)
            .args([id, &n.to_string()])
            .output()
            .context("running valgrind")?;
        let log = String::from_utf8_lossy(&output.stderr);
        log.lines()
            .find_map(|l| {
                l.split_once("Collected :")
                    .map(|(_, n)| n.trim().to_owned())
            })
            .and_then(|n| n.parse().ok())
            .with_context(|| format!("no instruction count from callgrind:\n{log}"))
    };
    let (few, many) = CALLGRIND_RUNS;
    let extra = count(many)?.saturating_sub(count(few)?);
    Ok(extra / (many - few))
}
