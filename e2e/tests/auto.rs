//! Automatic rollouts on real parts: the shipped `stickyctl controller --envoy-dir` judging a
//! real Envoy with the filter from a real Prometheus that scrapes it every second, while
//! `sticky-load` browses, against upstreams whose error rate and latency each test sets.
//! Intervals are seconds, not minutes, so a whole rollout takes well under a minute.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use api::StickyCanary;
use runtime::target::envoy_dir::ROLLOUT_FILE;
use serde_json::Value;
use sticky_canary_e2e::envoy::EnvoyOptions;
use sticky_canary_e2e::operator::Stickyctl;
use sticky_canary_e2e::process::ChildGuard;
use sticky_canary_e2e::prometheus::Prometheus;
use sticky_canary_e2e::site::Faults;
use sticky_canary_e2e::stack::{EnvoyRollout, Stack};
use sticky_canary_e2e::traffic::{Traffic, TrafficOptions};
use sticky_canary_e2e::verdicts::{check, failed_checks};
use sticky_canary_e2e::wait;
use sticky_canary_e2e::webhook::Webhook;

const STABLE: &str = "v1";
const CANARY: &str = "v2";
/// Seconds each step holds (Prometheus scrapes every second; the controller looks every
/// second at this interval).
const INTERVAL: &str = "4";
/// The interval of the failure scenarios: at the load's rate the canary at 5 % serves about
/// 20 requests a second, and the test needs about 11 errors (220 requests at 5 %).
const SLOW_INTERVAL: &str = "12";
/// How often a test looks at `stickyctl status` (a process each time).
const POLL: Duration = Duration::from_millis(250);

/// A rollout of `shop` on a live Envoy, Prometheus scraping it, and the logs of its parts.
struct Rollout {
    stack: Stack,
    ctl: Stickyctl,
    prometheus: Prometheus,
    logs: tempfile::TempDir,
}

fn upstream_bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_sticky-upstream"))
}

/// Starts the stack with `faults` per version, runs `stickyctl init` (steps 5-50-100, a short
/// interval, auto on, then `extra` flags), lets `edit` change the stored spec (as an operator
/// edits `stickycanary.json`), and starts the canary at 0%.
fn rollout(
    faults: &[(&str, Faults)],
    interval: &str,
    extra: &[&str],
    edit: impl FnOnce(&mut StickyCanary),
) -> Rollout {
    let faults: BTreeMap<String, Faults> =
        faults.iter().map(|(v, f)| ((*v).to_owned(), *f)).collect();
    let mut init = vec!["--steps", "5,50,100", "--interval", interval, "--auto"];
    init.extend(extra);
    let EnvoyRollout { stack, ctl, .. } = EnvoyRollout::start(
        upstream_bin(),
        EnvoyOptions::default(),
        &faults,
        (STABLE, CANARY),
        &init,
    )
    .unwrap_or_else(|e| panic!("{e:#}"));
    let path = stack.envoy.dir().join(ROLLOUT_FILE);
    let mut stored: StickyCanary = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    // Windows of fresh decisions fill in seconds, not minutes, at the load's rate.
    stored.spec.analysis.data_plane.tolerance = 0.15;
    edit(&mut stored);
    std::fs::write(&path, serde_json::to_vec_pretty(&stored).unwrap()).unwrap();
    let prometheus = Prometheus::start(&[stack.envoy.admin_address().unwrap()])
        .unwrap_or_else(|e| panic!("{e:#}"));
    Rollout {
        stack,
        ctl,
        prometheus,
        logs: tempfile::tempdir().unwrap(),
    }
}

impl Rollout {
    /// `sticky-load` for `seconds`: a steady crowd, every second visit by a new visitor.
    fn load(&self, seconds: u64) -> Traffic {
        self.load_with(TrafficOptions {
            visits_per_second: 100.0,
            seconds,
            new_every: 2,
            returning: 100,
        })
    }

    fn load_with(&self, options: TrafficOptions) -> Traffic {
        Traffic::start(
            Path::new(env!("CARGO_BIN_EXE_sticky-load")),
            self.stack.envoy.listener(),
            options,
        )
        .unwrap_or_else(|e| panic!("{e:#}"))
    }

    fn controller_log(&self) -> PathBuf {
        self.logs.path().join("controller.log")
    }

    /// The real controller on the Envoy's directory, reading this Prometheus.
    fn controller(&self) -> ChildGuard {
        self.ctl
            .spawn(
                &["controller", "--prometheus", &self.prometheus.url()],
                &self.controller_log(),
            )
            .unwrap()
    }

    /// Waits until the rollout is rolled back; returns the status and the last judged step.
    fn rolled_back(&self) -> (Value, Value) {
        let status = self.wait("rolled back", Duration::from_secs(60), |s| {
            phase(s) == "RolledBack"
        });
        let last = status["verdicts"]
            .as_array()
            .unwrap()
            .last()
            .unwrap()
            .clone();
        (status, last)
    }

    /// `auto on --prometheus` is refused (exit 2) saying `words`, and nothing is written.
    fn auto_on_refused(&self, words: &str) {
        let stored = || std::fs::read(self.stack.envoy.dir().join(ROLLOUT_FILE)).unwrap();
        let before = stored();
        let run = self
            .ctl
            .run(&["auto", "on", "--prometheus", &self.prometheus.url()])
            .unwrap();
        assert_eq!(run.code, Some(2), "{}{}", run.stdout, run.stderr);
        assert!(run.stderr.contains(words), "{words}: {}", run.stderr);
        assert!(stored() == before, "nothing written");
    }

    fn status(&self) -> Value {
        self.ctl.status().unwrap_or_else(|e| panic!("{e:#}"))
    }

    /// Polls `status -o json` until `done` holds, for at most `within`.
    fn wait(&self, what: &str, within: Duration, done: impl Fn(&Value) -> bool) -> Value {
        wait::until(what, within, POLL, || {
            let status = self.status();
            Ok(done(&status).then_some(status))
        })
        .unwrap_or_else(|err| {
            panic!(
                "{err}\nstatus: {:#}\ncontroller log:\n{}",
                self.status(),
                std::fs::read_to_string(self.controller_log()).unwrap_or_default()
            )
        })
    }
}

fn errors(error_rate: f64) -> Faults {
    Faults {
        error_rate,
        delay: Duration::ZERO,
    }
}

fn phase(status: &Value) -> &str {
    status["phase"].as_str().unwrap_or_default()
}

fn waiting(status: &Value) -> &str {
    status["step"]["waiting"].as_str().unwrap_or_default()
}

/// The actions of the rollout's history, oldest first.
fn actions(ctl: &Stickyctl) -> Vec<String> {
    let rollout = ctl.rollout().unwrap();
    let history = rollout.status.unwrap_or_default().history;
    history.into_iter().map(|h| h.action).collect()
}

fn seconds_between(from: &Value, to: &Value) -> i64 {
    let parse = |v: &Value| v.as_str().unwrap().parse::<jiff::Timestamp>().unwrap();
    parse(to).as_second() - parse(from).as_second()
}

/// Scenarios 1 and 7: identical versions (a real A/A run) walk every step, each with its
/// verdict in the status, and the canary is promoted; no step is taken twice.
#[test]
fn a_healthy_canary_walks_every_step_and_is_promoted() {
    let r = rollout(&[], INTERVAL, &["--promotion", "auto"], |_| {});
    let _load = r.load(120);
    let _controller = r.controller();
    r.ctl.ok(&["start", "--canary", CANARY]).unwrap();
    let status = r.wait("promoted", Duration::from_secs(90), |s| {
        phase(s) == "Promoted"
    });
    assert_eq!(status["versions"][0]["name"], CANARY, "{status:#}");
    let verdicts: Vec<(f64, &str)> = status["verdicts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            (
                v["weight"].as_f64().unwrap(),
                v["verdict"]["outcome"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        verdicts,
        [(5.0, "Pass"), (50.0, "Pass"), (100.0, "Pass")],
        "{status:#}"
    );
    for verdict in status["verdicts"].as_array().unwrap() {
        assert!(
            seconds_between(&verdict["started"], &verdict["judged"]) >= 4,
            "each step holds its interval: {verdict:#}"
        );
        let canary = &verdict["verdict"]["canary"];
        assert!(canary["requests"].as_u64().unwrap() >= 200, "{verdict:#}");
    }
    let steps: Vec<String> = actions(&r.ctl)
        .into_iter()
        .filter(|a| a.starts_with("next") || a.starts_with("promote"))
        .collect();
    assert_eq!(
        steps,
        [
            "next 5",
            "next 50",
            "next 100",
            "promote v2",
            "promote: remove v1"
        ]
    );
}

/// Scenario 2: a canary failing 5 % of its requests (stable 0.1 %) at 5 % is rolled back
/// within two intervals, and the status says why, with the numbers.
#[test]
fn a_canary_failing_five_percent_is_rolled_back_saying_why() {
    let faults = [(STABLE, errors(0.001)), (CANARY, errors(0.05))];
    let r = rollout(&faults, SLOW_INTERVAL, &[], |_| {});
    let _load = r.load(120);
    let _controller = r.controller();
    r.ctl.ok(&["start", "--canary", CANARY]).unwrap();
    let (status, last) = r.rolled_back();
    assert_eq!(last["weight"], 5.0, "{status:#}");
    assert_eq!(last["verdict"]["outcome"], "Fail");
    assert!(
        seconds_between(&last["started"], &last["judged"]) <= 24,
        "caught within two intervals: {last:#}"
    );
    let message = status["message"].as_str().unwrap();
    assert!(message.starts_with("rolled back at 5%:"), "{message}");
    assert!(message.contains("5xx"), "{message}");
    let failed = failed_checks(&last);
    assert!(failed.contains(&"errors"), "{last:#}");
    // Immediate: the canary is gone, everyone on stable.
    let status = r.wait("canary removed", Duration::from_secs(10), |s| {
        s["versions"].as_array().unwrap().len() == 1
    });
    assert_eq!(status["versions"][0]["name"], STABLE);
}

/// Scenario 3: a canary adding 200 ms is rolled back by the latency test.
#[test]
fn a_slow_canary_is_rolled_back() {
    let faults = [(
        CANARY,
        Faults {
            error_rate: 0.0,
            delay: Duration::from_millis(200),
        },
    )];
    let r = rollout(&faults, SLOW_INTERVAL, &[], |_| {});
    let _load = r.load(120);
    let _controller = r.controller();
    r.ctl.ok(&["start", "--canary", CANARY]).unwrap();
    let (_, last) = r.rolled_back();
    let failed = failed_checks(&last);
    assert!(failed.contains(&"latency"), "{last:#}");
}

/// Scenario 4: without traffic the step is inconclusive, held at its deadline, never promoted.
#[test]
fn without_traffic_the_step_is_held_never_promoted() {
    let r = rollout(
        &[],
        INTERVAL,
        &["--promotion", "auto", "--inconclusive-deadline", "4"],
        |_| {},
    );
    let _controller = r.controller();
    r.ctl.ok(&["start", "--canary", CANARY]).unwrap();
    let status = r.wait("held", Duration::from_secs(30), |s| {
        waiting(s) == "Evidence"
    });
    assert_eq!(status["step"]["weight"], 5.0, "{status:#}");
    assert_eq!(status["step"]["verdict"]["outcome"], "Inconclusive");
    assert!(
        status["message"]
            .as_str()
            .unwrap()
            .starts_with("held at 5%"),
        "{status:#}"
    );
    // Three more intervals: still held at 5 %.
    std::thread::sleep(Duration::from_secs(12));
    let status = r.status();
    assert_eq!(phase(&status), "Progressing");
    assert_eq!(status["versions"][1]["weight"], 5.0, "{status:#}");
}

/// Scenario 5: a weight the data plane did not apply fails its step. The controller drives a
/// copy of the Envoy's directory, so Envoy keeps the old weight while the rollout moves on.
#[test]
fn a_weight_the_data_plane_did_not_apply_fails_its_step() {
    let r = rollout(&[], INTERVAL, &[], |c| {
        c.spec.analysis.data_plane.deadline_seconds = 3;
    });
    let _load = r.load(120);
    r.ctl.ok(&["start", "--canary", CANARY]).unwrap();
    r.ctl.ok(&["set-weight", "5"]).unwrap();
    // Envoy runs 5 %; from here on only the copy moves.
    let copy = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(r.stack.envoy.dir()).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            std::fs::copy(entry.path(), copy.path().join(entry.file_name())).unwrap();
        }
    }
    let ctl = Stickyctl::new(copy.path()).unwrap();
    ctl.ok(&["set-weight", "50"]).unwrap();
    let _controller = ctl
        .spawn(
            &["controller", "--prometheus", &r.prometheus.url()],
            &r.controller_log(),
        )
        .unwrap();
    let rolled_back = || {
        let status = ctl.status()?;
        Ok((phase(&status) == "RolledBack").then_some(status))
    };
    let status = wait::until("rolled back", Duration::from_secs(40), POLL, rolled_back)
        .unwrap_or_else(|err| panic!("{err}: {:#}", ctl.status().unwrap()));
    let message = status["message"].as_str().unwrap();
    assert!(message.starts_with("rolled back at 50%:"), "{message}");
    // Named by the proxy's own report of the weight it runs, not guessed from traffic.
    let envoy = r.stack.envoy.admin_address().unwrap();
    for words in [
        "the data plane did not apply the weight: 1 of 1 proxies not at weight 50% within 3 s"
            .to_owned(),
        format!(r#"instance="{envoy}""#),
        "runs v2 at 5%, v1 at 95%".to_owned(),
    ] {
        assert!(message.contains(&words), "{words}: {message}");
    }
}

/// The issue's case: a fixed population of a few hundred browsers that keep their cookies
/// and come back, no new visitor at all, the canary identical to stable. At each ramp the
/// clients a page load moves all go to the canary, so their decisions never show the weight;
/// the proxies' reports of the weight they run do, and the canary is promoted.
#[test]
fn a_healthy_canary_whose_users_come_back_is_promoted() {
    let r = rollout(&[], INTERVAL, &["--promotion", "auto"], |_| {});
    let _load = r.load_with(TrafficOptions {
        visits_per_second: 100.0,
        seconds: 120,
        new_every: 0,
        returning: 150,
    });
    let _controller = r.controller();
    r.ctl.ok(&["start", "--canary", CANARY]).unwrap();
    let status = r.wait("promoted", Duration::from_secs(90), |s| {
        phase(s) == "Promoted"
    });
    let verdicts = status["verdicts"].as_array().unwrap();
    let weights: Vec<f64> = verdicts
        .iter()
        .map(|v| v["weight"].as_f64().unwrap())
        .collect();
    assert_eq!(weights, [5.0, 50.0, 100.0], "{status:#}");
    for verdict in verdicts {
        let data_plane = check(verdict, "dataPlane");
        assert_eq!(data_plane["outcome"], "Pass", "{verdict:#}");
        let reason = data_plane["reason"].as_str().unwrap();
        assert!(
            reason.contains("every proxy (1) reported weight"),
            "{reason}"
        );
        // The figure docs/analysis.md quotes: seconds from the weight's write to its report.
        let after = reason
            .split(" after ")
            .nth(1)
            .and_then(|rest| rest.split(' ').next())
            .unwrap_or_default();
        eprintln!("step {}: weight applied after {after} s", verdict["weight"]);
    }
    let log = std::fs::read_to_string(r.controller_log()).unwrap_or_default();
    assert!(!log.contains("did not apply"), "{log}");
}

/// A query that returns nothing is said at once, in the status message and one webhook
/// notice, naming the query and the usual cause; `auto on --prometheus` refuses it before any
/// write.
#[test]
fn a_query_without_series_is_said_not_waited_on() {
    let webhook = Webhook::start(0).unwrap();
    let silent = r#"sticky_canary_weight_basis_points{sticky_version="{version}",sticky_rollout="elsewhere"}"#;
    let r = rollout(&[], INTERVAL, &["--webhook", &webhook.url()], |c| {
        c.spec.analysis.queries.weights = Some(silent.to_owned());
    });
    let _load = r.load(60);
    let _controller = r.controller();
    r.ctl.ok(&["start", "--canary", CANARY]).unwrap();
    let said = r.wait("the silent query said", Duration::from_secs(40), |s| {
        s["message"]
            .as_str()
            .is_some_and(|m| m.contains("no series: spec.analysis.queries.weights for v1"))
    });
    let message = said["message"].as_str().unwrap();
    assert!(message.starts_with("waiting at 5%: "), "{message}");
    assert!(
        message.contains(r#"sticky_rollout="elsewhere""#),
        "{message}"
    );
    assert!(message.contains("stats_tags"), "{message}");
    assert_eq!(said["versions"][1]["weight"], 5.0, "held: {said:#}");
    webhook
        .wait_for(
            "step 5%: no series: spec.analysis.queries.weights",
            Duration::from_secs(20),
        )
        .unwrap();
    std::thread::sleep(Duration::from_secs(5));
    let notices = webhook
        .texts()
        .into_iter()
        .filter(|t| t.contains("no series"))
        .count();
    assert_eq!(notices, 1, "once per step: {:#?}", webhook.texts());
    // Refused before any write by `auto on --prometheus`, naming the field and the cause.
    r.ctl.ok(&["auto", "off"]).unwrap();
    r.auto_on_refused("spec.analysis.queries.weights: no series for the stable version v1");
}

/// Scenario 6: the controller killed mid-step resumes that step with its evidence: the same
/// start, the same baseline, more looks; no step is taken twice.
#[test]
fn a_controller_killed_mid_step_resumes_it() {
    let r = rollout(&[], "8", &["--promotion", "auto"], |_| {});
    let _load = r.load(120);
    let controller = r.controller();
    r.ctl.ok(&["start", "--canary", CANARY]).unwrap();
    let before = r.wait("a step with evidence", Duration::from_secs(40), |s| {
        s["step"]["weight"] == 50.0 && s["step"]["evidence"]["looks"].as_u64() >= Some(2)
    });
    drop(controller);
    let _controller = r.controller();
    let after = r.wait("more looks", Duration::from_secs(20), |s| {
        s["step"]["evidence"]["looks"].as_u64() > before["step"]["evidence"]["looks"].as_u64()
    });
    assert_eq!(after["step"]["started"], before["step"]["started"]);
    assert_eq!(
        after["step"]["evidence"]["baseline"],
        before["step"]["evidence"]["baseline"]
    );
    r.wait("promoted", Duration::from_secs(60), |s| {
        phase(s) == "Promoted"
    });
    let steps: Vec<String> = actions(&r.ctl)
        .into_iter()
        .filter(|a| a.starts_with("next"))
        .collect();
    assert_eq!(steps, ["next 5", "next 50", "next 100"]);
}

/// Scenario 8: pause, resume, a manual gate and `auto off`, each notified to a webhook that
/// fails its first request (the notice is retried).
#[test]
fn pause_resume_gate_and_auto_off_are_notified() {
    let webhook = Webhook::start(1).unwrap();
    let r = rollout(
        &[],
        INTERVAL,
        &["--gate", "50", "--webhook", &webhook.url()],
        |_| {},
    );
    let _load = r.load(120);
    let _controller = r.controller();
    r.ctl.ok(&["start", "--canary", CANARY]).unwrap();
    let wait = Duration::from_secs(40);
    r.wait("at the gate", wait, |s| waiting(s) == "Gate");
    webhook.wait_for("50% is a gate", wait).unwrap();
    r.ctl.ok(&["pause"]).unwrap();
    r.ctl.ok(&["next"]).unwrap();
    let paused = r.wait("paused at 50", wait, |s| waiting(s) == "Resume");
    assert_eq!(paused["versions"][1]["weight"], 50.0);
    std::thread::sleep(Duration::from_secs(6));
    assert_eq!(r.status()["versions"][1]["weight"], 50.0, "paused: no step");
    r.ctl.ok(&["resume"]).unwrap();
    r.wait("on to 100", wait, |s| s["versions"][1]["weight"] == 100.0);
    r.ctl.ok(&["auto", "off"]).unwrap();
    std::thread::sleep(Duration::from_secs(9));
    let status = r.status();
    assert_eq!(phase(&status), "Progressing", "auto off: no promotion");
    for needle in [
        "the canary is at 0%; next 5",
        "step 5% passed",
        "50% is a gate",
        "pause",
        "next 50",
        "resume",
        "next 100",
        "auto off",
    ] {
        webhook.wait_for(needle, wait).unwrap();
    }
    let texts = webhook.texts();
    assert!(texts.iter().all(|t| t.starts_with("shop: ")), "{texts:#?}");
}

/// Bad input is refused before any write, naming the field: `auto on --prometheus` checks the
/// queries against the real Prometheus.
#[test]
fn auto_on_refuses_a_query_prometheus_cannot_answer_before_any_write() {
    let r = rollout(&[], INTERVAL, &[], |c| {
        c.spec.auto.enabled = false;
        c.spec.analysis.queries.requests =
            Some(r#"no_such_metric_total{envoy_cluster_name=~"{cluster}"}"#.to_owned());
    });
    r.ctl.ok(&["start", "--canary", CANARY]).unwrap();
    r.auto_on_refused(
        "spec.analysis.queries.requests: Prometheus has no series of metric `no_such_metric_total`",
    );
}

/// The metrics of `spec.analysis.metrics`, one of each kind, from the Envoy's own stats: each
/// judged at every step, in every verdict with both versions' numbers, the score and the
/// status text; a metric whose template returns nothing is refused by `auto on` before any
/// write, naming it.
#[test]
fn metrics_of_every_kind_are_judged_and_a_silent_one_is_refused() {
    use analysis::{MetricKind, MetricSpec, Rule, Worse};
    let metric = |name: &str, kind, query: &str, worse, rule| MetricSpec {
        name: name.to_owned(),
        kind,
        query: query.to_owned(),
        requests: None,
        quantile: (kind == MetricKind::Histogram).then_some(0.95),
        sample_seconds: (kind == MetricKind::Gauge).then_some(1),
        worse,
        rule,
    };
    let ratio = |r| Rule {
        ratio: Some(r),
        ..Rule::default()
    };
    let metrics = vec![
        metric(
            "server-errors",
            MetricKind::Counter,
            r#"envoy_cluster_upstream_rq_xx{envoy_cluster_name=~"{cluster}",envoy_response_code_class="5"}"#,
            Worse::Higher,
            Rule {
                limit: Some(0.02),
                ..Rule::default()
            },
        ),
        metric(
            "p95",
            MetricKind::Histogram,
            r#"envoy_cluster_upstream_rq_time_bucket{envoy_cluster_name=~"{cluster}"}"#,
            Worse::Higher,
            ratio(3.0),
        ),
        metric(
            "healthy-hosts",
            MetricKind::Gauge,
            r#"envoy_cluster_membership_healthy{envoy_cluster_name=~"{cluster}"}"#,
            Worse::Lower,
            ratio(1.0),
        ),
    ];
    let names: Vec<String> = metrics.iter().map(|m| m.name.clone()).collect();
    let r = rollout(&[], INTERVAL, &["--promotion", "auto"], |c| {
        c.spec.analysis.metrics = metrics.clone();
    });
    let _load = r.load(120);
    let _controller = r.controller();
    r.ctl.ok(&["start", "--canary", CANARY]).unwrap();
    let text = r.wait("a judged step", Duration::from_secs(40), |s| {
        s["step"]["verdict"]["metrics"]
            .as_array()
            .is_some_and(|m| m.len() == 3)
    });
    assert!(text["step"]["verdict"]["score"].is_number(), "{text:#}");
    let printed = r.ctl.ok(&["status"]).unwrap();
    for name in &names {
        assert!(printed.contains(&format!("metric   {name} ")), "{printed}");
    }
    let status = r.wait("promoted", Duration::from_secs(90), |s| {
        phase(s) == "Promoted"
    });
    for verdict in status["verdicts"].as_array().unwrap() {
        let judged: Vec<(&str, &str)> = verdict["verdict"]["metrics"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| (m["name"].as_str().unwrap(), m["outcome"].as_str().unwrap()))
            .collect();
        let expected: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "Pass")).collect();
        assert_eq!(judged, expected, "{verdict:#}");
        assert_eq!(verdict["verdict"]["score"], 100.0, "{verdict:#}");
    }

    // A second rollout whose metric reads a label nobody has.
    let r = rollout(&[], INTERVAL, &[], |c| {
        c.spec.auto.enabled = false;
        c.spec.analysis.metrics = vec![metric(
            "cpu",
            MetricKind::Gauge,
            r#"envoy_cluster_membership_healthy{envoy_cluster_name=~"{cluster}",pod="nowhere"}"#,
            Worse::Higher,
            ratio(1.2),
        )];
    });
    r.ctl.ok(&["start", "--canary", CANARY]).unwrap();
    r.auto_on_refused("spec.analysis.metrics[0].query (cpu): no series for the stable version v1");
}
