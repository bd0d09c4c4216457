//! Instructions per request executed by Envoy itself (user space), counted by callgrind.
//!
//! Throughput on a shared 2-CPU VM varies by 10-30 % from run to run, too much to see a few
//! percent; instruction counts are exact and repeat within a few hundred per request. Each
//! Envoy runs under callgrind, most with a direct-response listener, whose cost is Envoy's
//! smallest. The multi-rollout rows proxy instead (a request finds its rollout from the
//! cluster its route names, and a direct response names none), to a native Envoy answering
//! itself: a separate process, which callgrind does not count. Counting is switched on once
//! Envoy answers (start-up, mostly V8 compiling the module, is six times faster uncounted).
//! One kept-alive connection sends a warm-up, then two batches of requests, each between
//! `callgrind_control -z` and `-d`; the difference of the two dumps divided by the difference
//! of the batch sizes is the cost of one request, with the connection, timers and the control
//! requests themselves cancelled out. A row whose requests differ (one per service of a
//! gateway) sends them in turn; the batch sizes are multiples of its number of services, so
//! every service gets its share of both batches.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use sticky_canary_e2e::browser::Http;

use crate::envoy::{Envoy, Launch, Variant, NOWHERE, UPSTREAM};
use crate::requests::Shape;

/// Requests before counting, so that first-use work (V8 tiering, caches, pools) is done.
const WARM: u64 = 300;
/// Requests in the two counted batches: multiples of every gateway's number of services
/// (1, 10, 50).
const BATCHES: (u64, u64) = (200, 700);
/// How long a dump may take to appear complete.
const DUMP_PATIENCE: Duration = Duration::from_secs(60);

/// One row of the instruction table.
#[derive(Debug, Clone, PartialEq)]
pub struct Count {
    /// The Envoy configuration (direct response).
    pub variant: Variant,
    /// The request.
    pub shape: Shape,
    /// Index of the no-filter row with the same request.
    pub baseline: usize,
    /// Instructions per request, when valgrind is installed.
    pub per_request: Option<u64>,
}

/// Whether valgrind and callgrind_control are installed: without them the instruction
/// columns say so instead of failing the bench.
pub fn available() -> bool {
    let runs = |program: &str| {
        Command::new(program)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    };
    runs("valgrind") && runs("callgrind_control")
}

/// Counts every row of `plan` (variant, request, baseline index): all Envoys start under
/// callgrind at once (start-up is the slow part), then each counts its rows on its own
/// thread. Counts do not depend on how busy the CPUs are, so this may overlap freely, but
/// nothing timed should run meanwhile.
pub fn measure(plan: &[(Variant, Shape, usize)], wasm: &Path) -> Result<Vec<Count>> {
    let counts = |per_request: Vec<Option<u64>>| -> Vec<Count> {
        plan.iter()
            .zip(per_request)
            .map(|(&(variant, shape, baseline), per_request)| Count {
                variant,
                shape,
                baseline,
                per_request,
            })
            .collect()
    };
    if !available() {
        return Ok(counts(vec![None; plan.len()]));
    }
    // Only proxying rows need the upstream; it runs natively, uncounted.
    let upstream = if plan.iter().any(|(v, _, _)| !v.direct) {
        Some(Envoy::start(UPSTREAM, NOWHERE, Launch::Native(None), wasm)?)
    } else {
        None
    };
    let mut envoys: Vec<(Variant, Envoy)> = Vec::new();
    for variant in Variant::processes(plan.iter().map(|&(v, _, _)| v)) {
        let target = match (&upstream, variant.direct) {
            (Some(upstream), false) => upstream.address,
            _ => NOWHERE,
        };
        let envoy = Envoy::spawn(variant, target, Launch::Callgrind, wasm)
            .with_context(|| format!("starting {} under callgrind", variant.label()))?;
        envoys.push((variant, envoy));
    }
    let started = Instant::now();
    for (variant, envoy) in &mut envoys {
        envoy.wait_ready(*variant)?;
        control(envoy.pid(), "--instr=on")?;
    }
    eprintln!(
        "callgrind: {} Envoys up in {:.0} s, counting ...",
        envoys.len(),
        started.elapsed().as_secs_f64()
    );
    let mut per_request = vec![None; plan.len()];
    let results: Vec<Result<Vec<(usize, u64)>>> = std::thread::scope(|scope| {
        let threads: Vec<_> = envoys
            .iter_mut()
            .map(|(variant, envoy)| {
                let rows: Vec<(usize, Variant, Shape)> = plan
                    .iter()
                    .enumerate()
                    .filter(|(_, (v, _, _))| v.process() == *variant)
                    .map(|(i, &(v, shape, _))| (i, v, shape))
                    .collect();
                scope.spawn(move || {
                    rows.into_iter()
                        .map(|(i, variant, shape)| {
                            Ok((i, per_request_of(envoy, &variant.requests(shape))?))
                        })
                        .collect()
                })
            })
            .collect();
        threads
            .into_iter()
            .map(|t| {
                t.join()
                    .unwrap_or_else(|_| Err(anyhow!("a callgrind thread panicked")))
            })
            .collect()
    });
    for (i, count) in results.into_iter().collect::<Result<Vec<_>>>()?.concat() {
        per_request[i] = Some(count);
    }
    Ok(counts(per_request))
}

/// Instructions per request on `envoy`, which runs under callgrind, of these requests (their
/// extra headers) sent in turn.
fn per_request_of(envoy: &mut Envoy, requests: &[Vec<(&str, String)>]) -> Result<u64> {
    let out = envoy
        .callgrind_out()
        .context("instructions are counted only under callgrind")?;
    let pid = envoy.pid();
    let requests: Vec<Vec<(&str, &[u8])>> = requests
        .iter()
        .map(|headers| {
            headers
                .iter()
                .map(|(name, value)| (*name, value.as_bytes()))
                .collect()
        })
        .collect();
    // One client, so one kept-alive connection for the warm-up and both batches.
    let http = Http::new(envoy.address);
    let send = |n: u64| -> Result<()> {
        for headers in requests.iter().cycle().take(n as usize) {
            let response = http.get("/", headers)?;
            if response.status != 200 {
                bail!("status {} from the Envoy under callgrind", response.status);
            }
        }
        Ok(())
    };
    let count = |n: u64| -> Result<u64> {
        control(pid, "--zero")?;
        send(n)?;
        control(pid, "--dump")?;
        take_dump(&out)
    };
    send(WARM)?;
    let few = count(BATCHES.0)?;
    let many = count(BATCHES.1)?;
    Ok(many.saturating_sub(few) / (BATCHES.1 - BATCHES.0))
}

fn control(pid: u32, request: &str) -> Result<()> {
    let output = Command::new("callgrind_control")
        .arg(request)
        .arg(pid.to_string())
        .output()
        .context("running callgrind_control")?;
    if !output.status.success() {
        bail!(
            "callgrind_control {request} {pid} failed ({}): {}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}

/// Waits for the one dump next to `out` (`<out>.<n>`) to be complete, reads its total and
/// removes it, so the next dump is again the only one.
fn take_dump(out: &Path) -> Result<u64> {
    let dir = out.parent().context("callgrind output has no directory")?;
    let prefix = format!(
        "{}.",
        out.file_name()
            .context("callgrind output has no file name")?
            .to_string_lossy()
    );
    let deadline = Instant::now() + DUMP_PATIENCE;
    loop {
        for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
            let path = entry?.path();
            let is_dump = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_prefix(&prefix))
                .is_some_and(|n| n.parse::<u32>().is_ok());
            if !is_dump {
                continue;
            }
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("reading {}", path.display()))?;
            if let Some(total) = summary(&text)? {
                std::fs::remove_file(&path)
                    .with_context(|| format!("removing {}", path.display()))?;
                return Ok(total);
            }
        }
        if Instant::now() > deadline {
            bail!("no complete callgrind dump {prefix}* in {}", dir.display());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The instruction count of a callgrind dump (its `summary:` line), or `None` while the dump
/// is still being written (callgrind writes the closing `totals:` line last).
fn summary(dump: &str) -> Result<Option<u64>> {
    if !dump.lines().any(|l| l.starts_with("totals:")) {
        return Ok(None);
    }
    let line = dump
        .lines()
        .find_map(|l| l.strip_prefix("summary:"))
        .context("callgrind dump without a summary: line")?;
    // With the default events (`events: Ir`) the line holds one number: instructions.
    let instructions = line
        .split_whitespace()
        .next()
        .context("empty summary: line in callgrind dump")?;
    instructions
        .parse()
        .map(Some)
        .with_context(|| format!("summary {instructions:?} in callgrind dump"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const DUMP: &str = "# callgrind format
version: 1
creator: callgrind-3.19.0
pid: 4242
cmd:  /venv/envoy --config-path /tmp/bootstrap.json
part: 1

desc: Trigger: Client Request

positions: line
events: Ir
summary: 128783512

ob=(1) /usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2
fn=(72) __tls_pre_init_tp
51 2

totals: 128783512
";

    #[test]
    fn reads_the_summary() {
        assert_eq!(summary(DUMP).unwrap(), Some(128_783_512));
    }

    #[test]
    fn a_dump_being_written_is_not_read_yet() {
        let partial = &DUMP[..DUMP.find("totals:").unwrap()];
        assert_eq!(summary(partial).unwrap(), None);
    }

    #[test]
    fn a_bad_summary_fails() {
        assert!(summary(&DUMP.replace("summary: 128783512", "summary: many")).is_err());
        assert!(summary(&DUMP.replace("summary: 128783512\n", "")).is_err());
    }
}
