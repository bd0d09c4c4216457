//! `make bench`: the filter against no filter, a Lua equivalent and a worst case, each in its
//! own Envoy (`--concurrency 1`) behind one local upstream, with load from wrk. Variants run
//! interleaved, round after round, so a slow moment of the machine hits all of them alike;
//! the table holds medians. Before the load, the instructions per request of the same Envoys
//! (direct response) under callgrind, and of the filter serving 1, 10 and 50 rollouts on one
//! gateway. Prints the table and writes it into BENCHMARKS.md.

mod callgrind;
mod envoy;
mod lua;
mod native;
mod report;
mod requests;
mod wrk;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Parser;
use sticky_canary_e2e::locate;

use envoy::{Envoy, Filter, Launch, Variant};
use report::{Memory, Report, Round, Row};
use requests::Shape;

/// Measures what the sticky-canary filter costs per request.
#[derive(Parser)]
struct Args {
    /// Rounds of every variant; the table shows medians.
    #[arg(long, default_value_t = 4)]
    rounds: usize,
    /// Seconds of load per variant and round.
    #[arg(long, default_value_t = 2)]
    seconds: u64,
    /// Connections wrk keeps open.
    #[arg(long, default_value_t = 16)]
    connections: u32,
    /// Where to write the table (between the generated-block markers).
    #[arg(long, default_value = "BENCHMARKS.md")]
    output: PathBuf,
    /// The filter to load; by default the one `make build` builds. For comparing builds.
    #[arg(long)]
    wasm: Option<PathBuf>,
    /// Skip the native benchmarks (criterion, callgrind).
    #[arg(long)]
    skip_native: bool,
    /// Skip counting Envoy's instructions per request under callgrind (a few minutes).
    #[arg(long)]
    skip_callgrind: bool,
    /// Count only the multi-rollout rows under callgrind, print them and write nothing (a
    /// partial run must not replace the whole table).
    #[arg(long)]
    rollouts_only: bool,
    /// Count only the sealed and unsealed rows under callgrind (what the route seal costs),
    /// print them and write nothing.
    #[arg(long)]
    seal_only: bool,
    /// Count only the main table's rows under callgrind, print them and write nothing (to
    /// compare two builds with `--wasm` in minutes, without the throughput runs).
    #[arg(long)]
    callgrind_only: bool,
}

/// Where things run: the Envoy under test alone on one CPU, wrk and the upstream on another.
#[derive(Debug, Clone, Copy)]
struct Placement {
    envoy: Option<usize>,
    load: Option<usize>,
}

impl Placement {
    fn detect() -> Placement {
        let cpus = std::thread::available_parallelism().map_or(1, usize::from);
        let taskset = Command::new("taskset")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
        if cpus >= 2 && taskset {
            Placement {
                envoy: Some(0),
                load: Some(1),
            }
        } else {
            Placement {
                envoy: None,
                load: None,
            }
        }
    }
}

/// The rows, in the order each round runs them; `baseline` indexes this list.
fn plan() -> Vec<(Variant, Shape, usize)> {
    let proxy = |filter, versions| Variant {
        filter,
        versions,
        direct: false,
        workers: 1,
        rollouts: 0,
        sealed: false,
    };
    let direct = |filter| Variant {
        filter,
        versions: 2,
        direct: true,
        workers: 1,
        rollouts: 0,
        sealed: false,
    };
    vec![
        (proxy(Filter::None, 2), Shape::New, 0),
        (proxy(Filter::Wasm, 2), Shape::New, 0),
        (proxy(Filter::Lua, 2), Shape::New, 0),
        (proxy(Filter::None, 2), Shape::Pinned, 3),
        (proxy(Filter::Wasm, 2), Shape::Pinned, 3),
        (proxy(Filter::Lua, 2), Shape::Pinned, 3),
        (proxy(Filter::Wasm, 20), Shape::Pinned, 3),
        (proxy(Filter::None, 20), Shape::Worst, 7),
        (proxy(Filter::Wasm, 20), Shape::Worst, 7),
        (proxy(Filter::Lua, 20), Shape::Worst, 7),
        (direct(Filter::None), Shape::New, 10),
        (direct(Filter::Wasm), Shape::New, 10),
        (direct(Filter::Wasm), Shape::Pinned, 10),
    ]
}

/// The rows of the instruction table, in the order each Envoy counts them; `baseline`
/// indexes this list. Direct responses, then [`rollouts_plan`].
fn counted_plan() -> Vec<(Variant, Shape, usize)> {
    let direct = |filter, versions| Variant {
        filter,
        versions,
        direct: true,
        workers: 1,
        rollouts: 0,
        sealed: false,
    };
    let mut plan = vec![
        (direct(Filter::None, 2), Shape::New, 0),
        (direct(Filter::Wasm, 2), Shape::New, 0),
        (direct(Filter::Lua, 2), Shape::New, 0),
        (direct(Filter::None, 2), Shape::Pinned, 3),
        (direct(Filter::Wasm, 2), Shape::Pinned, 3),
        (direct(Filter::Lua, 2), Shape::Pinned, 3),
        (direct(Filter::None, 20), Shape::Worst, 6),
        (direct(Filter::Wasm, 20), Shape::Worst, 6),
        (direct(Filter::Lua, 20), Shape::Worst, 6),
    ];
    let offset = plan.len();
    plan.extend(
        rollouts_plan()
            .into_iter()
            .map(|(variant, shape, baseline)| (variant, shape, baseline + offset)),
    );
    plan
}

/// The multi-rollout rows: one filter serving 1, 10 and 50 rollouts of a gateway, returning
/// clients (cookie path) spread evenly over the services, each against no filter on the same
/// gateway; and the single-rollout form on the same terms, so the two forms compare. All
/// proxied: a request finds its rollout from the cluster its route names, and a direct
/// response names none. `baseline` indexes this list.
fn rollouts_plan() -> Vec<(Variant, Shape, usize)> {
    let proxy = |filter, rollouts| Variant {
        filter,
        versions: 2,
        direct: false,
        workers: 1,
        rollouts,
        sealed: false,
    };
    let mut plan = vec![
        (proxy(Filter::None, 0), Shape::Pinned, 0),
        (proxy(Filter::Wasm, 0), Shape::Pinned, 0),
    ];
    for rollouts in [1, 10, 50] {
        let baseline = plan.len();
        plan.push((proxy(Filter::None, rollouts), Shape::Pinned, baseline));
        plan.push((proxy(Filter::Wasm, rollouts), Shape::Pinned, baseline));
    }
    plan
}

/// What the route seal costs: the filter without and with a seal, new and returning clients,
/// each against no filter. Direct responses, so Envoy's own share is smallest; the version
/// routes still match the stamp. `baseline` indexes this list.
fn seal_plan() -> Vec<(Variant, Shape, usize)> {
    let direct = |filter, sealed| Variant {
        filter,
        versions: 2,
        direct: true,
        workers: 1,
        rollouts: 0,
        sealed,
    };
    let mut plan = Vec::new();
    for shape in [Shape::New, Shape::Pinned] {
        let baseline = plan.len();
        plan.push((direct(Filter::None, false), shape, baseline));
        plan.push((direct(Filter::Wasm, false), shape, baseline));
        plan.push((direct(Filter::Wasm, true), shape, baseline));
    }
    plan
}

/// The running Envoy that serves `variant`.
fn envoy_of(envoys: &mut [(Variant, Envoy)], variant: Variant) -> Result<&mut Envoy> {
    envoys
        .iter_mut()
        .find(|(v, _)| *v == variant.process())
        .map(|(_, e)| e)
        .context("no Envoy for a planned variant")
}

fn context(args: &Args, placement: Placement) -> Vec<String> {
    // The first non-empty line a program prints, for the record.
    let first_line = |program: &str, args: &[&str]| {
        Command::new(program)
            .args(args)
            .output()
            .ok()
            .and_then(|o| {
                let text = String::from_utf8_lossy(&o.stdout).into_owned()
                    + &String::from_utf8_lossy(&o.stderr);
                text.lines()
                    .map(str::trim)
                    .find(|l| !l.is_empty())
                    .map(str::to_owned)
            })
            .unwrap_or_else(|| "?".into())
    };
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|l| l.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_else(|| "?".into());
    let envoy = locate::envoy_bin()
        .map(|bin| first_line(&bin.to_string_lossy(), &["--version"]))
        .unwrap_or_default();
    let envoy = envoy
        .split_once("version: ")
        .map_or(envoy.as_str(), |(_, v)| v);
    let wrk = first_line("wrk", &["--version"]);
    let wrk = wrk.split(" [").next().unwrap_or_default();
    vec![
        format!("Date: {}", first_line("date", &["-u", "+%Y-%m-%d %H:%M UTC"])),
        format!(
            "Machine: {} CPUs (`nproc`), {cpu}",
            std::thread::available_parallelism().map_or(0, usize::from)
        ),
        format!("Envoy: {envoy}"),
        format!(
            "Load: {}, 1 thread, {} connections, {} rounds × {} s per row, interleaved; \
             Envoy under test pinned to CPU {}, wrk and the upstream to CPU {}",
            wrk,
            args.connections,
            args.rounds,
            args.seconds,
            placement.envoy.map_or("-".into(), |c| c.to_string()),
            placement.load.map_or("-".into(), |c| c.to_string()),
        ),
        "Command: `make bench` (= `cargo run --release -q -p sticky-canary-bench --bin sticky-bench`)"
            .into(),
    ]
}

fn main() -> Result<()> {
    let args = Args::parse();
    let placement = Placement::detect();
    let wasm = match &args.wasm {
        Some(path) => path
            .canonicalize()
            .with_context(|| format!("{}", path.display()))?,
        None => locate::filter_wasm()?,
    };
    let wasm_bytes = std::fs::metadata(&wasm)?.len();
    if args.rollouts_only {
        eprintln!("callgrind: instructions per request, multi-rollout rows only ...");
        let counts = callgrind::measure(&rollouts_plan(), &wasm)?;
        println!("{}", report::instruction_table(&counts));
        return Ok(());
    }
    if args.seal_only {
        eprintln!("callgrind: instructions per request, sealed and unsealed stamps ...");
        let counts = callgrind::measure(&seal_plan(), &wasm)?;
        println!("{}", report::instruction_table(&counts));
        return Ok(());
    }
    if args.callgrind_only {
        eprintln!("callgrind: instructions per request in Envoy, main table rows only ...");
        let counts = callgrind::measure(&counted_plan(), &wasm)?;
        println!("{}", report::instruction_table(&counts));
        return Ok(());
    }
    let native = if args.skip_native {
        Vec::new()
    } else {
        eprintln!("native: criterion and callgrind over the pure decision ...");
        native::measure()?
    };
    // Before the load: the valgrind Envoys must be gone when wrk needs quiet CPUs.
    let instructions = if args.skip_callgrind {
        Vec::new()
    } else {
        eprintln!("callgrind: instructions per request in Envoy ...");
        let started = Instant::now();
        let counts = callgrind::measure(&counted_plan(), &wasm)?;
        eprintln!(
            "callgrind: done in {:.0} s",
            started.elapsed().as_secs_f64()
        );
        counts
    };

    eprintln!("starting Envoys ...");
    let upstream = Envoy::start(
        envoy::UPSTREAM,
        envoy::NOWHERE,
        Launch::Native(placement.load),
        &wasm,
    )?;
    let plan = plan();
    let mut envoys: Vec<(Variant, Envoy)> = Vec::new();
    for variant in Variant::processes(plan.iter().map(|&(v, _, _)| v)) {
        let envoy = Envoy::start(
            variant,
            upstream.address,
            Launch::Native(placement.envoy),
            &wasm,
        )
        .with_context(|| format!("starting {}", variant.label()))?;
        envoys.push((variant, envoy));
    }
    let load = wrk::Load {
        connections: args.connections,
        duration: Duration::from_secs(args.seconds),
        cpu: placement.load,
    };

    eprintln!("warming up ...");
    let warm = wrk::Load {
        duration: Duration::from_secs(1),
        ..load
    };
    for &(variant, shape, _) in &plan {
        let envoy = envoy_of(&mut envoys, variant)?;
        wrk::run(envoy.address, &shape.headers(variant.versions), warm)?;
    }
    // Memory per worker: the same Envoys with two workers, unpinned, each worker warmed.
    for filter in [Filter::None, Filter::Wasm] {
        let variant = Variant {
            filter,
            versions: 2,
            direct: false,
            workers: 2,
            rollouts: 0,
            sealed: false,
        };
        let envoy = Envoy::start(variant, upstream.address, Launch::Native(None), &wasm)
            .with_context(|| format!("starting {}", variant.label()))?;
        wrk::run(envoy.address, &[], warm)?;
        envoys.push((variant, envoy));
    }
    let memory = envoys
        .iter_mut()
        .map(|(variant, envoy)| {
            Ok(Memory {
                variant: *variant,
                rss_kib: envoy.rss_kib()?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    // Only the Envoys under load stay up.
    envoys.retain(|(variant, _)| variant.workers == 1);

    let mut rows: Vec<Row> = plan
        .iter()
        .map(|&(variant, shape, baseline)| Row {
            variant,
            shape,
            baseline,
            samples: Vec::new(),
        })
        .collect();
    for round in 1..=args.rounds {
        eprintln!("round {round}/{} ...", args.rounds);
        for row in &mut rows {
            let envoy = envoy_of(&mut envoys, row.variant)?;
            let headers = row.shape.headers(row.variant.versions);
            let before = envoy.cpu_time()?;
            let sample = wrk::run(envoy.address, &headers, load)?;
            row.samples.push(Round {
                load: sample,
                envoy_cpu: envoy.cpu_time()?.saturating_sub(before),
            });
        }
    }
    drop(envoys);
    drop(upstream);

    let report = Report {
        context: context(&args, placement),
        rows,
        memory,
        native,
        instructions,
        wasm_bytes,
    };
    let block = report.render();
    println!("{block}");
    let output = locate::workspace_root().join(&args.output);
    let document = std::fs::read_to_string(&output).unwrap_or_default();
    std::fs::write(&output, report::splice(&document, &block))
        .with_context(|| format!("writing {}", output.display()))?;
    eprintln!("written to {}", output.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every row is compared with the no-filter Envoy of the same listener (service or gateway
    /// of as many services) and mode, on the same requests.
    #[test]
    fn every_counted_row_has_the_no_filter_row_of_its_kind_as_baseline() {
        let plan = counted_plan();
        for &(variant, shape, baseline) in &plan {
            let (base, base_shape, _) = plan[baseline];
            assert_eq!(base.filter, Filter::None, "{}", variant.label());
            assert_eq!(
                (base.direct, base.rollouts, base_shape),
                (variant.direct, variant.rollouts, shape),
                "{}",
                variant.label()
            );
        }
        let rollouts: Vec<usize> = plan
            .iter()
            .filter(|(v, _, _)| v.filter == Filter::Wasm && v.rollouts > 0)
            .map(|(v, _, _)| v.rollouts)
            .collect();
        assert_eq!(rollouts, [1, 10, 50]);
    }

    /// A gateway's requests go to every service in turn, each with its own rollout's cookie.
    #[test]
    fn gateway_requests_spread_over_the_services() {
        let variant = rollouts_plan()[7].0;
        assert_eq!(variant.label(), "wasm filter, 50 rollouts of 2 versions");
        let requests = variant.requests(Shape::Pinned);
        assert_eq!(requests.len(), 50);
        assert_eq!(requests[3][0], ("host", requests::service_host(3)));
        assert!(requests[3][1].1.contains("; sticky-version.svc-3=v2"));
        requests::rollouts_config(50, 2).validate().unwrap();
    }
}
