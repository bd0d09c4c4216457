//! `sticky-demo-mesh` (`make demo-mesh`): the story of `make demo`, through a real control
//! plane on this machine: etcd, kube-apiserver and istiod, and an Envoy ingress gateway in
//! `istio-system` that istiod configures. Two services behind the one gateway, each with its
//! own rollout and the same version names; every change is a `stickyctl` command against the
//! API server (printed as typed). Exits non-zero if an invariant broke: a 404, a page mixing
//! versions, a client moving from the canary back to stable during a ramp-up, or one
//! service's change moving the other's clients. Everything it starts stops with it.

use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Parser;
use sticky_canary_e2e::crowd::{Crowd, Moves};
use sticky_canary_e2e::demo::visit;
use sticky_canary_e2e::envoy::free_port;
use sticky_canary_e2e::locate;
use sticky_canary_e2e::mesh::stack::{served_name, MeshStack, Service, PROPAGATION};

/// Shows sticky canaries of two services through Istio: shares, a live ramp, an abort.
#[derive(Parser)]
struct Args {
    /// Simulated browsers per service.
    #[arg(long, default_value_t = 400)]
    clients: usize,
}

fn main() -> ExitCode {
    sticky_canary_e2e::demo::exit(
        "sticky-demo-mesh",
        "no 404, no page mixing versions, nobody moved back from a canary, and each service kept its own clients.",
        run(&Args::parse()),
    )
}

/// Runs `stickyctl --name <rollout> args...` as an operator would, echoing it and its output.
fn type_command(mesh: &MeshStack, rollout: &str, args: &[&str]) -> Result<()> {
    let mut all = vec!["--name", rollout];
    all.extend_from_slice(args);
    println!("$ {}", mesh.stickyctl.command_line(&all));
    for line in mesh.stickyctl.ok(&all)?.lines() {
        println!("  {line}");
    }
    Ok(())
}

/// Waits until the gateway runs `weights` for `rollout`, and says how long istiod took.
fn await_gateway(mesh: &MeshStack, rollout: &str, weights: &[f64]) -> Result<()> {
    let start = Instant::now();
    while mesh.applied_weights(rollout)?.as_deref() != Some(weights) {
        anyhow::ensure!(
            start.elapsed() < PROPAGATION,
            "the gateway did not get {rollout}'s weights {weights:?} within {PROPAGATION:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    println!(
        "  istiod pushed it; the gateway runs it {} ms after the command",
        start.elapsed().as_millis()
    );
    Ok(())
}

fn crowd(service: &str, size: usize) -> Crowd {
    Crowd {
        browsers: (0..size).map(|_| MeshStack::browser(service)).collect(),
    }
}

fn run(args: &Args) -> Result<Vec<String>> {
    let upstream = locate::sibling_bin("sticky-upstream")?;
    println!("Starting etcd, kube-apiserver, istiod and an Envoy gateway on 127.0.0.1 ...");
    let services = [
        Service::new("web", &["v1", "v2"]),
        Service::new("api", &["v1", "v2"]),
    ];
    let mesh = MeshStack::start(&upstream, &services, free_port()?).context("starting the mesh")?;
    println!(
        "The gateway (istio-system, istio=ingressgateway) listens on http://127.0.0.1:{}; web.example.com and api.example.com are behind it, each with versions v1 and v2.\n",
        mesh.port
    );
    let mut broken = Vec::new();

    println!("0) Two teams start their canaries, each with its own weight:");
    for (service, weight) in [("web", "10"), ("api", "50")] {
        let init = MeshStack::init_args(service, &MeshStack::plugin_url()?);
        let init: Vec<&str> = init.iter().map(String::as_str).collect();
        type_command(&mesh, service, &init)?;
        type_command(&mesh, service, &["start", "--canary", "v2"])?;
        type_command(&mesh, service, &["set-weight", weight])?;
    }
    await_gateway(&mesh, "prod/web", &[90.0, 10.0])?;
    await_gateway(&mesh, "prod/api", &[50.0, 50.0])?;
    println!(
        "  one WasmPlugin in istio-system carries both rollouts: {}",
        mesh.gateway_plugin()?.is_some()
    );

    println!(
        "\n1) {} new browsers per service load the home page and its assets:",
        args.clients
    );
    let mut web = crowd("web", args.clients);
    let mut api = crowd("api", args.clients);
    let web_before = visit(&mesh.http, &mut web, "web", &mut broken)?;
    let api_before = visit(&mesh.http, &mut api, "api", &mut broken)?;

    println!("\n2) web's team raises its canary live to 50%:");
    type_command(&mesh, "web", &["set-weight", "50"])?;
    await_gateway(&mesh, "prod/web", &[50.0, 50.0])?;
    let web_after = visit(&mesh.http, &mut web, "web", &mut broken)?;
    let moves = Moves::between(&web_before, &web_after, &served_name("web", "v1"));
    println!(
        "  web: moved to the canary {}, moved back to stable {}, stayed {}",
        moves.from_stable, moves.to_stable, moves.stayed
    );
    if moves.to_stable + moves.between_canaries > 0 {
        broken.push(format!(
            "{} web clients left the canary during a ramp-up",
            moves.to_stable + moves.between_canaries
        ));
    }
    let api_after = visit(&mesh.http, &mut api, "api", &mut broken)?;
    let api_moved = Moves::between(&api_before, &api_after, &served_name("api", "v1"));
    if api_moved.stayed != api_before.len() {
        broken.push(format!(
            "web's ramp moved {} api clients",
            api_before.len() - api_moved.stayed
        ));
    }

    println!("\n3) api's team aborts its canary; web's clients stay where they are:");
    type_command(&mesh, "api", &["abort"])?;
    await_gateway(&mesh, "prod/api", &[100.0])?;
    visit(&mesh.http, &mut api, "api", &mut broken)?;
    let web_still = visit(&mesh.http, &mut web, "web", &mut broken)?;
    if Moves::between(&web_after, &web_still, "").stayed != web_after.len() {
        broken.push("api's abort moved web clients".to_owned());
    }

    println!("\n4) The operator checks web's rollout:");
    type_command(&mesh, "web", &["status"])?;
    println!("\nStopping the gateway, istiod, kube-apiserver and etcd.");
    Ok(broken)
}
