//! The automatic rollout through istiod, judged from a real Prometheus: `stickyctl controller`
//! on the real kube-apiserver, istiod pushing each step's weight to an Envoy 1.40 ingress
//! gateway started as istio-agent starts one on a pod that names the chart's proxy stats, and
//! Prometheus scraping that gateway every second. Each test runs two rollouts on the one
//! gateway, with `spec.analysis.provider: Istio`: a healthy canary (identical to stable),
//! promoted, and a bad one (5 % of its requests fail, stable's 0.1 %), rolled back; one test
//! with a stream of new visitors, one with a fixed population of returning clients.
//!
//! Every query is the Istio provider's default: the filter's decisions and weight gauges
//! (`sticky_rollout="{rollout}"`), and each version's subset cluster stats at the gateway
//! (requests, 5xx, latency), which the chart's proxy stats keep. Istio's standard metrics
//! (`istio_requests_total`) cannot exist here: only istio-proxy's own Envoy build has the
//! `istio.stats` filter that makes them (see docs/analysis.md).
//!
//! Intervals are seconds; one control plane at a time (see `mesh.rs`).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::json;
use sticky_canary_e2e::envoy::free_port;
use sticky_canary_e2e::mesh::auto::{
    assert_decision_reasons, assert_promoted_through_10_50_100, assert_rolled_back_at_10,
    patch_analysis, AutoLoop, BAD_FAULTS, CANARY, STABLE,
};
use sticky_canary_e2e::mesh::proxy::AgentStats;
use sticky_canary_e2e::mesh::stack::{host, MeshStack, Service};
use sticky_canary_e2e::prometheus::Prometheus;
use sticky_canary_e2e::traffic::{Traffic, TrafficOptions};

/// One control plane at a time, as in `mesh.rs`.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// The service whose canary is identical to stable.
const HEALTHY: &str = "shop";
/// The service whose canary fails 5 % of its requests.
const BAD: &str = "cart";
/// Seconds each healthy step holds.
const INTERVAL: &str = "4";
/// The bad canary's interval. A step fails at the first look whose test rejects (about 10 s
/// in, at 10 % of this load), but passes only at the end of its interval: long enough that a
/// slower machine's fewer requests still fail the step rather than pass it.
const SLOW_INTERVAL: &str = "20";
/// Page visits per second per service (about four requests each).
const VISITS_PER_SECOND: f64 = 60.0;
/// How long the load runs: longer than any scenario.
const LOAD_SECONDS: u64 = 150;
/// How long each rollout may take from `auto on` to its end.
const WITHIN: Duration = Duration::from_secs(100);

/// A mesh whose gateway Prometheus scrapes, both rollouts set up; holds the turn until all of
/// it is gone.
struct AutoMesh {
    stack: MeshStack,
    prometheus: Prometheus,
    logs: tempfile::TempDir,
    // Last, so the next test starts only once all of this one's processes are gone.
    _turn: MutexGuard<'static, ()>,
}

fn upstream_bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_sticky-upstream"))
}

/// Starts the mesh with both services, each rollout initialised with steps 10-50-100, provider
/// Istio and its canary at 0 %, and Prometheus scraping the gateway.
fn auto_mesh() -> AutoMesh {
    let turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let stats = AgentStats::istio_with_chart_proxy_stats().unwrap_or_else(|e| panic!("{e:#}"));
    let bad = Service {
        faults: &BAD_FAULTS,
        ..Service::new(BAD, &[STABLE, CANARY])
    };
    let stack = MeshStack::start_with(
        upstream_bin(),
        &[Service::new(HEALTHY, &[STABLE, CANARY]), bad],
        free_port().unwrap(),
        &stats,
    )
    .unwrap_or_else(|e| panic!("cannot start the mesh: {e:?}"));
    for (service, interval) in [(HEALTHY, INTERVAL), (BAD, SLOW_INTERVAL)] {
        let init = [
            "--steps",
            "10,50,100",
            "--interval",
            interval,
            "--promotion",
            "auto",
        ];
        stack
            .init(service, &init)
            .unwrap_or_else(|e| panic!("{e:#}"));
        patch_analysis(&stack.plane, service, json!({"provider": "Istio"}));
        stack
            .sticky(service, &["start", "--canary", CANARY])
            .unwrap_or_else(|e| panic!("{e:#}"));
    }
    let admin = stack.gateway.envoy().admin().unwrap().address();
    let prometheus = Prometheus::start(&[admin]).unwrap_or_else(|e| panic!("{e:#}"));
    AutoMesh {
        stack,
        prometheus,
        logs: tempfile::tempdir().unwrap(),
        _turn: turn,
    }
}

impl AutoMesh {
    /// `sticky-load` browsing `service` through the gateway as `population` does.
    fn load(&self, service: &str, population: TrafficOptions) -> Traffic {
        Traffic::start_on(
            Path::new(env!("CARGO_BIN_EXE_sticky-load")),
            SocketAddr::from(([127, 0, 0, 1], self.stack.port)),
            Some(&host(service)),
            population,
        )
        .unwrap_or_else(|e| panic!("{e:#}"))
    }

    /// The automatic loop on this mesh.
    fn auto(&self) -> AutoLoop<'_> {
        AutoLoop {
            stickyctl: &self.stack.stickyctl,
            plane: &self.stack.plane,
            prometheus: self.prometheus.url(),
            logs: self.logs.path(),
            within: WITHIN,
        }
    }
}

/// Both rollouts driven by the controller while `population` browses each service: the
/// healthy canary walks 10-50-100 and is promoted, each step's weight reported by the gateway;
/// the bad canary is rolled back at 10 % by the error test.
fn healthy_promoted_and_bad_rolled_back(label: &str, population: TrafficOptions) {
    let mesh = auto_mesh();
    let _loads = [HEALTHY, BAD].map(|service| mesh.load(service, population));
    let auto = mesh.auto();
    let _controller = auto.controller();
    let started = Instant::now();
    for service in [HEALTHY, BAD] {
        auto.auto_on_with_defaults(service);
    }

    let bad = auto.wait_for_phase(BAD, "RolledBack");
    let bad_took = started.elapsed();
    let bad_applied = assert_rolled_back_at_10(&bad);

    let healthy = auto.wait_for_phase(HEALTHY, "Promoted");
    let healthy_took = started.elapsed();
    let applied = assert_promoted_through_10_50_100(&healthy);
    assert_decision_reasons(&mesh.prometheus, HEALTHY);
    eprintln!(
        "{label}: bad canary rolled back {:.0} s after `auto on` (weight 10% reported after \
         {bad_applied} s); healthy canary promoted after {:.0} s, steps 10/50/100% reported by \
         the gateway after {applied:?} s",
        bad_took.as_secs_f64(),
        healthy_took.as_secs_f64()
    );
}

/// New visitors: every second visit by a browser never seen before.
#[test]
fn through_istiod_new_visitors_a_healthy_canary_is_promoted_a_bad_one_rolled_back() {
    healthy_promoted_and_bad_rolled_back(
        "new visitors",
        TrafficOptions {
            visits_per_second: VISITS_PER_SECOND,
            seconds: LOAD_SECONDS,
            new_every: 2,
            returning: 100,
        },
    );
}

/// Returning clients: a fixed population that keeps its cookies, no new visitor at all.
#[test]
fn through_istiod_returning_clients_a_healthy_canary_is_promoted_a_bad_one_rolled_back() {
    healthy_promoted_and_bad_rolled_back(
        "returning clients",
        TrafficOptions {
            visits_per_second: VISITS_PER_SECOND,
            seconds: LOAD_SECONDS,
            new_every: 0,
            returning: 300,
        },
    );
}
