//! `sticky-demo` (`make demo`): the filter at work on one machine, no Kubernetes.
//!
//! Starts two upstream versions and Envoy with the filter, then plays the operator: every
//! weight change is a `stickyctl --envoy-dir` command (printed as typed), which rewrites the
//! listener file Envoy reloads live. A crowd of simulated browsers goes through Envoy before
//! and after the canary is raised. Exits non-zero if an invariant broke: a 404, a page mixing
//! versions, an in-page request changing version, or a client moving from the canary back to
//! stable. Last, an automatic rollout on a second Envoy: a canary failing 5% of its requests,
//! judged by `stickyctl controller` from a real Prometheus, rolls itself back (a non-zero exit
//! if it does not within two minutes). Everything it starts stops with it: on exit, on error, and on Ctrl-C (the terminal
//! signals the children too, and the kernel kills them when the demo dies).

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Parser;
use sticky_canary_e2e::crowd::{Crowd, Moves, Tally};
use sticky_canary_e2e::envoy::EnvoyOptions;
use sticky_canary_e2e::locate;
use sticky_canary_e2e::operator::Stickyctl;
use sticky_canary_e2e::prometheus::Prometheus;
use sticky_canary_e2e::site::Faults;
use sticky_canary_e2e::stack::{EnvoyRollout, Stack};
use sticky_canary_e2e::traffic::{Traffic, TrafficOptions};
use sticky_canary_e2e::wait;
use sticky_canary_filter::PluginConfig;

const STABLE: &str = "v1";
const CANARY: &str = "v2";

/// Shows sticky canary routing on a real Envoy: shares, a live ramp-up, and nobody broken.
#[derive(Parser)]
struct Args {
    /// Simulated browsers in the crowd.
    #[arg(long, default_value_t = 1000)]
    clients: usize,
    /// Canary weight at the start, in percent.
    #[arg(long, default_value_t = 5.0)]
    from: f64,
    /// Canary weight after the live change, in percent.
    #[arg(long, default_value_t = 50.0)]
    to: f64,
}

fn main() -> ExitCode {
    sticky_canary_e2e::demo::exit(
        "sticky-demo",
        "no 404, no page mixing versions, nobody moved from canary to stable.",
        run(&Args::parse()),
    )
}

/// Runs `stickyctl --envoy-dir <dir> args...` as an operator would, echoing the command and
/// what it printed.
fn type_command(ctl: &Stickyctl, args: &[&str]) -> Result<()> {
    echo(&ctl.command_line(args), &ctl.ok(args)?);
    Ok(())
}

/// Shows a command as typed and what it printed.
fn echo(command: &str, printed: &str) {
    println!("$ {command}");
    for line in printed.lines() {
        if line.is_empty() {
            println!();
        } else {
            println!("  {line}");
        }
    }
}

/// Runs a command that changes the rollout and waits until Envoy serves the listener it wrote.
fn operate(stack: &mut Stack, ctl: &Stickyctl, args: &[&str]) -> Result<()> {
    type_command(ctl, args)?;
    show_serving(&stack.wait_for_lds_file()?);
    Ok(())
}

/// Shows `init` as typed, what it printed and what Envoy then serves, as [`operate`] does.
fn show_init(rollout: &EnvoyRollout) {
    echo(&rollout.init_command, &rollout.init_output);
    show_serving(&rollout.serving);
}

/// What Envoy serves, as a line of the demo.
fn show_serving(serving: &PluginConfig) {
    let weights: Vec<String> = serving
        .versions
        .iter()
        .map(|v| format!("{}={}", v.name, v.weight))
        .collect();
    println!(
        "  Envoy now serves {} (listener reloaded from lds.json, no restart)",
        weights.join(" ")
    );
}

/// Runs the demo; returns the invariants that broke.
fn run(args: &Args) -> Result<Vec<String>> {
    let upstream = locate::sibling_bin("sticky-upstream")?;
    let started = EnvoyRollout::start(
        &upstream,
        EnvoyOptions { concurrency: 2 },
        &BTreeMap::new(),
        (STABLE, CANARY),
        &[],
    )?;
    println!(
        "Envoy on http://{} runs the sticky-canary filter in front of {}.",
        started.stack.envoy.listener(),
        started
            .stack
            .upstreams
            .iter()
            .map(|u| format!("{} ({})", u.version, u.address))
            .collect::<Vec<_>>()
            .join(" and ")
    );
    println!("Each version's page loads /assets/app-<version>.js, which only that version has.");
    println!(
        "Config directory: {} (Envoy reloads lds.json from it; stickyctl owns the rollout there)\n",
        started.stack.envoy.dir().display()
    );
    let mut broken = Vec::new();
    let from = args.from.to_string();
    let to = args.to.to_string();

    println!("0) The operator puts {STABLE} under stickyctl and starts the canary {CANARY}:");
    show_init(&started);
    let EnvoyRollout { mut stack, ctl, .. } = started;
    operate(&mut stack, &ctl, &["start", "--canary", CANARY])?;
    operate(&mut stack, &ctl, &["set-weight", &from])?;

    println!(
        "\n1) {} new browsers load the home page and its assets; canary {CANARY} at {}%:",
        args.clients, args.from
    );
    let mut crowd = Crowd::new(args.clients);
    let before = crowd.visit(&stack.http, "/")?;
    let tally = Tally::of(&before);
    println!("{tally}");
    check_tally(&tally, &mut broken);

    println!("\n2) The operator raises the canary live to {to}%:");
    operate(&mut stack, &ctl, &["set-weight", &to])?;

    println!("\n3) The same browsers, still on their page, call its API and reload its assets:");
    let reloads = crowd.reload_subresources(&stack.http)?;
    let requests: usize = reloads.iter().map(Vec::len).sum();
    let changed = before
        .iter()
        .zip(&reloads)
        .filter(|(visit, reload)| {
            reload
                .iter()
                .any(|r| r.status != 200 || r.served_by.as_deref() != visit.version())
        })
        .count();
    println!("  {requests} in-page requests; pages where one failed or changed version: {changed}");
    if changed > 0 {
        broken.push(format!(
            "{changed} pages had in-page requests served by another version or failing"
        ));
    }

    println!("\n4) The same browsers navigate to the home page again:");
    let after = crowd.visit(&stack.http, "/")?;
    let tally = Tally::of(&after);
    println!("{tally}");
    check_tally(&tally, &mut broken);
    let moves = Moves::between(&before, &after, STABLE);
    println!(
        "  moved {STABLE} -> {CANARY} (stable to canary): {}   moved {CANARY} -> {STABLE} (canary to stable): {}   stayed: {}",
        moves.from_stable, moves.to_stable, moves.stayed
    );
    if moves.to_stable > 0 || moves.between_canaries > 0 {
        broken.push(format!(
            "{} clients left the canary during a ramp-up",
            moves.to_stable + moves.between_canaries
        ));
    }

    println!("\n5) The operator checks the rollout:");
    type_command(&ctl, &["status"])?;

    automatic(&upstream, &mut broken)?;
    Ok(broken)
}

/// Act 6: an automatic rollout of a canary that fails 5 % of its requests, judged from a real
/// Prometheus by `stickyctl controller`, rolls itself back.
fn automatic(upstream: &std::path::Path, broken: &mut Vec<String>) -> Result<()> {
    println!(
        "\n6) An automatic rollout: a new canary {CANARY} fails 5% of its requests (stable 0.1%)."
    );
    let faults = BTreeMap::from([
        (STABLE.to_owned(), errors(0.001)),
        (CANARY.to_owned(), errors(0.05)),
    ]);
    let started = EnvoyRollout::start(
        upstream,
        EnvoyOptions { concurrency: 2 },
        &faults,
        (STABLE, CANARY),
        &["--steps", "5,20,50,100", "--auto", "--interval", "15"],
    )
    .context("starting the second stack")?;
    let prometheus = Prometheus::start(&[started.stack.envoy.admin_address()?])?;
    println!(
        "  Prometheus on {} scrapes Envoy every second.",
        prometheus.url()
    );
    show_init(&started);
    let EnvoyRollout { stack, ctl, .. } = started;
    let options = TrafficOptions {
        visits_per_second: 100.0,
        seconds: 180,
        new_every: 2,
        returning: 100,
    };
    let _load = Traffic::start(
        &locate::sibling_bin("sticky-load")?,
        stack.envoy.listener(),
        options,
    )?;
    let log = stack.envoy.dir().join("controller.log");
    let controller_args = ["controller", "--prometheus", &prometheus.url()];
    println!("$ {} &", ctl.command_line(&controller_args));
    let _controller = ctl.spawn(&controller_args, &log)?;
    type_command(&ctl, &["start", "--canary", CANARY])?;
    let mut last = String::new();
    let rolled_back = wait::until(
        "the failing canary to be rolled back",
        Duration::from_secs(120),
        Duration::from_millis(500),
        || {
            let status = ctl.status()?;
            let line = format!(
                "{} {} step {} {}",
                status["phase"].as_str().unwrap_or_default(),
                weights_of(&status),
                status["step"]["weight"]
                    .as_f64()
                    .map_or("-".to_owned(), |w| format!("{w}%")),
                status["step"]["verdict"]["outcome"]
                    .as_str()
                    .unwrap_or("(no look yet)")
            );
            if line != last {
                println!("  {line}");
                last = line;
            }
            Ok((status["phase"] == "RolledBack").then_some(status))
        },
    );
    let status = match rolled_back {
        Ok(status) => status,
        Err(err) => {
            broken.push(format!("{err:#}"));
            return Ok(());
        }
    };
    println!("  {}", status["message"].as_str().unwrap_or_default());
    type_command(&ctl, &["status"])?;
    Ok(())
}

fn errors(error_rate: f64) -> Faults {
    Faults {
        error_rate,
        delay: Duration::ZERO,
    }
}

/// `v1=95 v2=5` from `status -o json`.
fn weights_of(status: &serde_json::Value) -> String {
    status["versions"]
        .as_array()
        .map(|versions| {
            versions
                .iter()
                .map(|v| {
                    let weight = v["weight"].as_f64().unwrap_or_default();
                    format!("{}={weight}", v["name"].as_str().unwrap_or_default())
                })
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default()
}

fn check_tally(tally: &Tally, broken: &mut Vec<String>) {
    if tally.not_found > 0 {
        broken.push(format!("{} requests got a 404", tally.not_found));
    }
    if tally.mixed > 0 {
        broken.push(format!("{} pages mixed versions", tally.mixed));
    }
    if tally.other_errors > 0 {
        broken.push(format!("{} requests failed", tally.other_errors));
    }
}
