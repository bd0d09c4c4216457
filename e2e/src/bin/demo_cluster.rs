//! `sticky-demo-cluster` (`make demo-cluster`): the story of `make demo` on a real node of this
//! machine: the kubelet and containerd running istiod, the ingress gateway and shop's two
//! versions as pods with injected sidecars under STRICT mTLS, and the chart's controller as its
//! Pod. Every change is a `stickyctl` command (printed as typed); returning visitors load pages
//! and assets through the gateway Pod at each step of a ramp to 100%, then the promote. Exits
//! non-zero if an invariant broke: a 404, a page mixing versions, or a client moving from the
//! canary back to stable. Runs in namespaces of its own (root): everything stops with it.

use std::process::ExitCode;
use std::time::Instant;

use anyhow::Result;
use clap::Parser;
use sticky_canary_e2e::browser::{Browser, Http};
use sticky_canary_e2e::crowd::{Crowd, Moves};
use sticky_canary_e2e::demo::visit;
use sticky_canary_e2e::locate::workspace_root;
use sticky_canary_e2e::node::{self, isolate, istio, shop, Node};
use sticky_canary_e2e::operator::Stickyctl;

/// Shows a sticky canary ramped up on a real node.
#[derive(Parser)]
struct Args {
    /// Returning visitors.
    #[arg(long, default_value_t = 300)]
    clients: usize,
}

fn main() -> ExitCode {
    // Parsed before the run inside the namespaces, so that --help or a typo needs no root.
    let parsed = Args::parse();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match isolate::inside_with(&args) {
        Ok(true) => sticky_canary_e2e::demo::exit(
            "sticky-demo-cluster",
            "no 404, no page mixing versions, nobody moved back from the canary.",
            run(&parsed),
        ),
        // The run inside the namespaces said everything.
        Ok(false) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("{err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> Result<Vec<String>> {
    let started = Instant::now();
    println!("Starting etcd, kube-apiserver, the controller-manager, the scheduler, containerd, the kubelet, kube-proxy and CoreDNS ...");
    let node = Node::start()?;
    println!("  the node is Ready ({:.0?})", started.elapsed());
    istio::install(&node)?;
    println!(
        "  istiod and the ingress gateway run as pods ({:.0?})",
        started.elapsed()
    );
    shop::install(&node)?;
    println!(
        "  shop-v1 and shop-v2 run, two injected pods each ({:.0?})",
        started.elapsed()
    );
    let controller = node.image("sticky-canary/stickyctl");
    let filter = node.image("sticky-canary/filter");
    istio::helm(
        &node,
        &[
            "install",
            "sticky-canary",
            &workspace_root()
                .join("charts/sticky-canary")
                .display()
                .to_string(),
            "--namespace=sticky-canary-system",
            "--create-namespace",
            &format!("--set=images.registry={}", node.registry),
            &format!(
                "--set=images.controller.digest={}",
                node::digest(&controller)
            ),
            &format!("--set=images.filter.digest={}", node::digest(&filter)),
        ],
    )?;
    node.wait_rollout("sticky-canary-system", "stickyctl-controller")?;
    istio::gateway_proxy_stats(&node)?;
    println!(
        "  the chart's controller runs as its Pod; the gateway keeps the filter's stats ({:.0?})\n",
        started.elapsed()
    );

    let admin = node.plane.admin_kubeconfig(shop::NS)?;
    let stickyctl = Stickyctl::kube(&admin, shop::NS)?;
    let type_command = |command: &[&str]| -> Result<()> {
        println!("$ {}", stickyctl.command_line(command));
        for line in stickyctl.ok(command)?.lines() {
            println!("  {line}");
        }
        Ok(())
    };
    let init = [
        "init",
        "--service",
        "shop.prod.svc.cluster.local",
        "--stable",
        "v1",
    ];
    let plugin = node.plugin_flags();
    let init: Vec<&str> = init
        .into_iter()
        .chain(plugin.iter().map(String::as_str))
        .collect();
    type_command(&init)?;
    type_command(&["start", "--canary", "v2"])?;
    // The managed routes and the plugin at the gateway before the first visit: until then the
    // user's route splits requests across both versions' pods.
    await_gateway(&node, 0)?;
    let http = Http::new(istio::gateway_address(&node)?);
    let mut crowd = Crowd::returning(
        &Browser::new().with_header("host", "shop.example.com"),
        args.clients,
    );
    let mut broken = Vec::new();
    let mut before = visit(&http, &mut crowd, "shop", &mut broken)?;
    for weight in [1u32, 5, 10, 20, 50, 80, 100] {
        println!();
        type_command(&["set-weight", &weight.to_string()])?;
        await_gateway(&node, weight)?;
        let after = visit(&http, &mut crowd, "shop", &mut broken)?;
        let moves = Moves::between(&before, &after, "shop-v1");
        println!(
            "  moved to the canary {}, moved back to stable {}, stayed {}",
            moves.from_stable, moves.to_stable, moves.stayed
        );
        if moves.to_stable > 0 {
            broken.push(format!(
                "{} clients left the canary at {weight}%",
                moves.to_stable
            ));
        }
        before = after;
    }
    println!();
    type_command(&["promote"])?;
    type_command(&["promote", "--finish"])?;
    type_command(&["status"])?;
    println!("\nStopping every pod, the node and the control plane.");
    Ok(broken)
}

/// Waits until the gateway pod reports `weight`% for the canary, and says how long it took.
fn await_gateway(node: &Node, weight: u32) -> Result<()> {
    let took = istio::wait_weights(
        node,
        istio::GATEWAY_PODS,
        "prod/shop",
        &istio::shop_at(weight),
    )?;
    println!(
        "  istio-agent's Envoy in the gateway Pod runs it {} ms after the command",
        took.as_millis()
    );
    Ok(())
}
