//! The automatic loop through istiod, on either routing API: `stickyctl controller` reading a
//! real Prometheus that scrapes the gateway, and what a test of it checks (the rollouts'
//! analysis, `auto on`, phases, the verdicts' data-plane reasons). Shared by `mesh_auto.rs`
//! (VirtualService API, the classic ingress gateway) and `mesh_gateway_api.rs` (HTTPRoute API,
//! a Gateway API gateway).

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Value};

use super::control_plane::ControlPlane;
use super::stack::NS;
use crate::operator::{Run, Stickyctl};
use crate::process::ChildGuard;
use crate::prometheus::Prometheus;
use crate::site::Faults;
use crate::verdicts::{check, failed_checks};
use crate::wait;

/// The stable version of the automatic scenarios.
pub const STABLE: &str = "v1";
/// The canary version of the automatic scenarios.
pub const CANARY: &str = "v2";
/// A bad canary's faults: 5 % of its requests fail, stable's 0.1 %.
pub const BAD_FAULTS: [(&str, Faults); 2] = [
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

/// Sets fields of `spec.analysis` of rollout `service` in [`NS`], as an operator's `kubectl
/// apply --server-side`: a field set by an earlier call and left out of this one is removed.
pub fn patch_analysis(plane: &ControlPlane, service: &str, analysis: Value) {
    plane
        .apply(&json!({
            "apiVersion": "stickycanary.io/v1alpha1", "kind": "StickyCanary",
            "metadata": {"name": service, "namespace": NS},
            "spec": {"analysis": analysis}}))
        .unwrap_or_else(|e| panic!("{e:#}"));
}

/// Seconds from a step's start until every proxy reported its weight, from the check's
/// reason ("every proxy (1) reported weight 50% after 2 s; ...").
pub fn applied_after(reason: &str) -> u64 {
    let (_, rest) = reason
        .split_once(" after ")
        .unwrap_or_else(|| panic!("{reason}"));
    let seconds = rest.split_once(" s").map_or(rest, |(s, _)| s);
    seconds.parse().unwrap_or_else(|e| panic!("{e}: {reason}"))
}

/// The controller and the commands of the automatic loop, for rollouts in [`NS`].
pub struct AutoLoop<'a> {
    /// `stickyctl` on the cluster.
    pub stickyctl: &'a Stickyctl,
    /// The control plane.
    pub plane: &'a ControlPlane,
    /// Prometheus's URL.
    pub prometheus: String,
    /// Where the controller logs.
    pub logs: &'a Path,
    /// How long a rollout may take to reach a phase.
    pub within: Duration,
}

impl AutoLoop<'_> {
    /// The controller's log file.
    pub fn controller_log(&self) -> PathBuf {
        self.logs.join("controller.log")
    }

    /// The shipped controller on the cluster, reading this Prometheus.
    pub fn controller(&self) -> ChildGuard {
        self.stickyctl
            .spawn(
                &["controller", "--prometheus", &self.prometheus],
                &self.controller_log(),
            )
            .unwrap()
    }

    /// `stickyctl --name <service> auto on --prometheus <url>`.
    pub fn auto_on(&self, service: &str) -> Run {
        let args = [
            "--name",
            service,
            "auto",
            "on",
            "--prometheus",
            &self.prometheus,
        ];
        self.stickyctl.run(&args).unwrap()
    }

    /// `status -o json` of rollout `service`.
    pub fn status(&self, service: &str) -> Value {
        let out = self
            .stickyctl
            .ok(&["--name", service, "status", "-o", "json"])
            .unwrap_or_else(|e| panic!("{e:#}"));
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
    }

    /// The StickyCanary `service`.
    pub fn rollout(&self, service: &str) -> Value {
        self.plane
            .get("stickycanary.io/v1alpha1", "StickyCanary", NS, service)
            .unwrap()
            .unwrap_or_else(|| panic!("no rollout {service}"))
    }

    /// Polls `service`'s status until its phase is `phase`, for [`AutoLoop::within`].
    pub fn wait_for_phase(&self, service: &str, phase: &str) -> Value {
        wait::until(
            &format!("{service} {phase}"),
            self.within,
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
    pub fn auto_on_with_defaults(&self, service: &str) {
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

/// The bad canary's status once rolled back: at 10 % by the error test (5xx), its data plane
/// fine; returns after how many seconds the gateway reported the 10 %.
pub fn assert_rolled_back_at_10(bad: &Value) -> u64 {
    let last = bad["verdicts"].as_array().unwrap().last().unwrap();
    assert_eq!(last["weight"], 10.0, "{bad:#}");
    assert_eq!(last["verdict"]["outcome"], "Fail", "{last:#}");
    assert!(failed_checks(last).contains(&"errors"), "{last:#}");
    let message = bad["message"].as_str().unwrap();
    assert!(message.starts_with("rolled back at 10%:"), "{message}");
    assert!(message.contains("5xx"), "{message}");
    assert_eq!(check(last, "dataPlane")["outcome"], "Pass", "{last:#}");
    applied_after(check(last, "dataPlane")["reason"].as_str().unwrap())
}

/// The healthy canary's status once promoted: steps 10, 50 and 100 % passed, each with at
/// least 200 canary requests and its weight reported by the one gateway; returns after how
/// many seconds each step's weight was reported.
pub fn assert_promoted_through_10_50_100(healthy: &Value) -> Vec<u64> {
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
    applied
}

/// The decisions' reasons of rollout `service` reach Prometheus through istio-agent's stats
/// settings and the chart's tag rules: new clients (`hash`), kept pins (`cookie`) and pins
/// moved at a page load by the ramp (`repin`).
pub fn assert_decision_reasons(prometheus: &Prometheus, service: &str) {
    let reasons = prometheus
        .query(&format!(
            r#"sum by (sticky_reason) (sticky_canary_decisions{{sticky_rollout="{NS}/{service}"}}) > 0"#
        ))
        .unwrap();
    let reasons: Vec<&str> = reasons
        .iter()
        .filter_map(|s| s["metric"]["sticky_reason"].as_str())
        .collect();
    for reason in ["hash", "cookie", "repin"] {
        assert!(reasons.contains(&reason), "{reason} in {reasons:?}");
    }
}
