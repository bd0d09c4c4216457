//! `sticky-demo` (`make demo`): the filter at work on one machine, no Kubernetes.
//!
//! Starts two upstream versions and Envoy with the filter, then plays the operator: every
//! weight change is a `stickyctl --envoy-dir` command (printed as typed), which rewrites the
//! listener file Envoy reloads live. A crowd of simulated browsers goes through Envoy before
//! and after the canary is raised. Exits non-zero if an invariant broke: a 404, a page mixing
//! versions, an in-page request changing version, or a client moving from the canary back to
//! stable. Everything it starts stops with it: on exit, on error, and on Ctrl-C (the terminal
//! signals the children too, and the kernel kills them when the demo dies).

use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Parser;
use sticky_canary_e2e::crowd::{Crowd, Moves, Tally};
use sticky_canary_e2e::envoy::EnvoyOptions;
use sticky_canary_e2e::locate;
use sticky_canary_e2e::operator::Stickyctl;
use sticky_canary_e2e::stack::{weights, Stack};

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
    println!("$ {}", ctl.command_line(args));
    for line in ctl.ok(args)?.lines() {
        if line.is_empty() {
            println!();
        } else {
            println!("  {line}");
        }
    }
    Ok(())
}

/// Runs a command that changes the rollout and waits until Envoy serves the listener it wrote.
fn operate(stack: &mut Stack, ctl: &Stickyctl, args: &[&str]) -> Result<()> {
    type_command(ctl, args)?;
    let serving = stack.wait_for_lds_file()?;
    let weights: Vec<String> = serving
        .versions
        .iter()
        .map(|v| format!("{}={}", v.name, v.weight))
        .collect();
    println!(
        "  Envoy now serves {} (listener reloaded from lds.json, no restart)",
        weights.join(" ")
    );
    Ok(())
}

/// Runs the demo; returns the invariants that broke.
fn run(args: &Args) -> Result<Vec<String>> {
    let upstream = locate::sibling_bin("sticky-upstream")?;
    // Envoy needs a listener to start with; `stickyctl init` takes the directory over.
    let plugin = weights(&[(STABLE, 100.0), (CANARY, 0.0)]);
    let mut stack = Stack::start_with(&upstream, &plugin, EnvoyOptions { concurrency: 2 })
        .context("starting upstreams and Envoy")?;
    let ctl = Stickyctl::new(stack.envoy.dir())?;
    println!(
        "Envoy on http://{} runs the sticky-canary filter in front of {}.",
        stack.envoy.listener(),
        stack
            .upstreams
            .iter()
            .map(|u| format!("{} ({})", u.version, u.address))
            .collect::<Vec<_>>()
            .join(" and ")
    );
    println!("Each version's page loads /assets/app-<version>.js, which only that version has.");
    println!(
        "Config directory: {} (Envoy reloads lds.json from it; stickyctl owns the rollout there)\n",
        stack.envoy.dir().display()
    );
    let mut broken = Vec::new();
    let from = args.from.to_string();
    let to = args.to.to_string();

    println!("0) The operator puts {STABLE} under stickyctl and starts the canary {CANARY}:");
    operate(
        &mut stack,
        &ctl,
        &["init", "--service", "shop", "--stable", STABLE],
    )?;
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
    Ok(broken)
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
