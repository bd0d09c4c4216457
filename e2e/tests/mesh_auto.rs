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

use serde_json::{json, Value};
use sticky_canary_e2e::envoy::free_port;
use sticky_canary_e2e::mesh::proxy::AgentStats;
use sticky_canary_e2e::mesh::stack::{host, MeshStack, Service, NS};
use sticky_canary_e2e::process::ChildGuard;
use sticky_canary_e2e::prometheus::Prometheus;
use sticky_canary_e2e::site::Faults;
use sticky_canary_e2e::traffic::{Traffic, TrafficOptions};
use sticky_canary_e2e::verdicts::{check, failed_checks};
use sticky_canary_e2e::wait;

/// One control plane at a time, as in `mesh.rs`.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

const STABLE: &str = "v1";
const CANARY: &str = "v2";
/// The service whose canary is identical to stable.
const HEALTHY: &str = "shop";
/// The service whose canary fails 5 % of its requests.
const BAD: &str = "cart";
const BAD_FAULTS: [(&str, Faults); 2] = [
    (
        STABLE,
        Faults {
            error_rate: 0.001,
            delay: Duration::ZERO,
        },
    ),
    (
        CANARY,
        Faults {
            error_rate: 0.05,
            delay: Duration::ZERO,
        },
    ),
];
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
        patch_analysis(&stack, service, json!({"provider": "Istio"}));
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

/// Sets fields of `spec.analysis` of `service`'s rollout, as an operator's `kubectl apply
/// --server-side`: a field set by an earlier call and left out of this one is removed.
fn patch_analysis(stack: &MeshStack, service: &str, analysis: Value) {
    stack
        .plane
        .apply(&json!({
            "apiVersion": "stickycanary.io/v1alpha1", "kind": "StickyCanary",
            "metadata": {"name": service, "namespace": NS},
            "spec": {"analysis": analysis}}))
        .unwrap_or_else(|e| panic!("{e:#}"));
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

    fn controller_log(&self) -> std::path::PathBuf {
        self.logs.path().join("controller.log")
    }

    /// The shipped controller on the cluster, reading this Prometheus.
    fn controller(&self) -> ChildGuard {
        self.stack
            .stickyctl
            .spawn(
                &["controller", "--prometheus", &self.prometheus.url()],
                &self.controller_log(),
            )
            .unwrap()
    }

    fn auto_on(&self, service: &str) -> sticky_canary_e2e::operator::Run {
        let url = self.prometheus.url();
        let args = ["--name", service, "auto", "on", "--prometheus", &url];
        self.stack.stickyctl.run(&args).unwrap()
    }

    fn status(&self, service: &str) -> Value {
        let out = self
            .stack
            .sticky(service, &["status", "-o", "json"])
            .unwrap_or_else(|e| panic!("{e:#}"));
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
    }

    fn rollout(&self, service: &str) -> Value {
        self.stack
            .plane
            .get("stickycanary.io/v1alpha1", "StickyCanary", NS, service)
            .unwrap()
            .unwrap_or_else(|| panic!("no rollout {service}"))
    }

    /// Polls `service`'s status until its phase is `phase`, for [`WITHIN`].
    fn wait_for_phase(&self, service: &str, phase: &str) -> Value {
        wait::until(
            &format!("{service} {phase}"),
            WITHIN,
            Duration::from_millis(500),
            || {
                let status = self.status(service);
                Ok((status["phase"] == phase).then_some(status))
            },
        )
        .unwrap_or_else(|err| {
            panic!(
                "{err}\nstatus: {:#}\ncontroller log:\n{}",
                self.status(service),
                std::fs::read_to_string(self.controller_log()).unwrap_or_default()
            )
        })
    }

    /// `auto on --prometheus` with every query the provider's default, once Prometheus has
    /// what it checks (stable's requests, decisions and weights).
    fn auto_on_with_defaults(&self, service: &str) {
        let mut last = String::new();
        wait::until(
            &format!("`auto on` of {service} accepted"),
            Duration::from_secs(30),
            Duration::from_millis(500),
            || {
                let run = self.auto_on(service);
                last = run.stderr;
                Ok((run.code == Some(0)).then_some(()))
            },
        )
        .unwrap_or_else(|err| panic!("{err}: {last}"));
        let analysis = &self.rollout(service)["spec"]["analysis"];
        assert_eq!(analysis["provider"], "Istio");
        assert_eq!(analysis.get("queries"), None, "{analysis:#}");
    }
}

/// Seconds from a step's start until every proxy reported its weight, from the check's
/// reason ("every proxy (1) reported weight 50% after 2 s; ...").
fn applied_after(reason: &str) -> u64 {
    let (_, rest) = reason
        .split_once(" after ")
        .unwrap_or_else(|| panic!("{reason}"));
    let seconds = rest.split_once(" s").map_or(rest, |(s, _)| s);
    seconds.parse().unwrap_or_else(|e| panic!("{e}: {reason}"))
}

/// Both rollouts driven by the controller while `population` browses each service: the
/// healthy canary walks 10-50-100 and is promoted, each step's weight reported by the gateway;
/// the bad canary is rolled back at 10 % by the error test.
fn healthy_promoted_and_bad_rolled_back(label: &str, population: TrafficOptions) {
    let mesh = auto_mesh();
    let _loads = [HEALTHY, BAD].map(|service| mesh.load(service, population));
    let _controller = mesh.controller();
    let started = Instant::now();
    for service in [HEALTHY, BAD] {
        mesh.auto_on_with_defaults(service);
    }

    let bad = mesh.wait_for_phase(BAD, "RolledBack");
    let bad_took = started.elapsed();
    let last = bad["verdicts"].as_array().unwrap().last().unwrap();
    assert_eq!(last["weight"], 10.0, "{bad:#}");
    assert_eq!(last["verdict"]["outcome"], "Fail", "{last:#}");
    assert!(failed_checks(last).contains(&"errors"), "{last:#}");
    let message = bad["message"].as_str().unwrap();
    assert!(message.starts_with("rolled back at 10%:"), "{message}");
    assert!(message.contains("5xx"), "{message}");
    assert_eq!(check(last, "dataPlane")["outcome"], "Pass", "{last:#}");

    let healthy = mesh.wait_for_phase(HEALTHY, "Promoted");
    let healthy_took = started.elapsed();
    assert_eq!(healthy["versions"][0]["name"], CANARY, "{healthy:#}");
    let verdicts = healthy["verdicts"].as_array().unwrap();
    let judged: Vec<(f64, &str)> = verdicts
        .iter()
        .map(|v| {
            let outcome = v["verdict"]["outcome"].as_str().unwrap();
            (v["weight"].as_f64().unwrap(), outcome)
        })
        .collect();
    assert_eq!(
        judged,
        [(10.0, "Pass"), (50.0, "Pass"), (100.0, "Pass")],
        "{healthy:#}"
    );
    let mut applied = Vec::new();
    for verdict in verdicts {
        let data_plane = check(verdict, "dataPlane");
        let reason = data_plane["reason"].as_str().unwrap();
        assert_eq!(data_plane["outcome"], "Pass", "{verdict:#}");
        assert!(
            reason.contains("every proxy (1) reported weight"),
            "{reason}"
        );
        assert!(
            verdict["verdict"]["canary"]["requests"].as_u64().unwrap() >= 200,
            "{verdict:#}"
        );
        applied.push(applied_after(reason));
    }
    // The decisions' reasons reach Prometheus through istio-agent's stats settings and the
    // chart's tag rules: new clients (`hash`), kept pins (`cookie`) and pins moved at a page
    // load by the ramp (`repin`).
    let reasons = mesh
        .prometheus
        .query(&format!(
            r#"sum by (sticky_reason) (sticky_canary_decisions{{sticky_rollout="{NS}/{HEALTHY}"}}) > 0"#
        ))
        .unwrap();
    let reasons: Vec<&str> = reasons
        .iter()
        .filter_map(|s| s["metric"]["sticky_reason"].as_str())
        .collect();
    for reason in ["hash", "cookie", "repin"] {
        assert!(reasons.contains(&reason), "{reason} in {reasons:?}");
    }
    let bad_applied = applied_after(check(last, "dataPlane")["reason"].as_str().unwrap());
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
