//! The judgement of one step's evidence: a verdict that says why, with the numbers.
//!
//! Any failing check fails the canary at any look (the sequential tests stay valid however
//! often they are looked at; the guards are absolute). Below the minimum of evidence the
//! verdict is inconclusive, never a pass. What a verdict does (hold, go on, roll back, when a
//! deadline is over) is the rollout state machine's business: this only judges.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::check::{percent, ArmCounts, Check, CheckName, Outcome};
use super::dataplane;
use super::evidence::{boundary_requests, ArmEvidence};
use super::metric::{self, MetricCheck};
use super::sequential;
use super::{AnalysisSpec, Evidence};

/// One version's numbers in the step, for a status line.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ArmSummary {
    /// The version.
    pub version: String,
    /// Requests in the step.
    pub requests: u64,
    /// 5xx responses in the step.
    pub errors: u64,
    /// Their share of the requests (0 without requests).
    pub error_rate: f64,
    /// The latency quantile (p99 by default) in milliseconds, interpolated within its bucket
    /// as `histogram_quantile` does: for people, the tests do not use it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p99_ms: Option<f64>,
}

/// The judgement of a step at one look.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Verdict {
    /// Fail if any check fails, else Inconclusive if any check is, else Pass.
    pub outcome: Outcome,
    /// Why, in words, with the numbers: the failing checks, else the inconclusive ones,
    /// else what passed.
    pub reason: String,
    /// Every check.
    pub checks: Vec<Check>,
    /// Every metric of `spec.analysis.metrics`, judged.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub metrics: Vec<MetricCheck>,
    /// Share of the judged comparisons (errors, latency, the guards and every metric) that
    /// pass, in percent, as Toss's canary score: 100 when nothing is against the canary.
    /// Absent while none is judged yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score: Option<f64>,
    /// The canary's numbers.
    pub canary: ArmSummary,
    /// Stable's numbers.
    pub stable: ArmSummary,
}

impl Verdict {
    /// One line for a person following the rollout: each version's requests, error rate and
    /// p99, the sequential statistics against their threshold, the outcome.
    pub fn line(&self) -> String {
        let arm = |a: &ArmSummary| {
            let p99 = a
                .p99_ms
                .map_or_else(|| "-".to_owned(), |ms| format!("{ms:.0} ms"));
            format!(
                "{} {} req {} 5xx p99 {p99}",
                a.version,
                a.requests,
                percent(a.error_rate)
            )
        };
        let statistics: Vec<String> = self
            .checks
            .iter()
            .filter(|c| matches!(c.name, CheckName::Errors | CheckName::Latency))
            .map(|c| format!("{} {}/{}", c.name, number(c.statistic), number(c.threshold)))
            .chain(self.metrics.iter().map(|m| {
                let value = |x: Option<f64>| x.map_or_else(|| "-".to_owned(), number);
                format!("{} {} vs {}", m.name, value(m.canary), value(m.stable))
            }))
            .collect();
        let score = self
            .score
            .map(|score| format!(" | score {score:.0}"))
            .unwrap_or_default();
        format!(
            "canary {} | stable {} | {}{score} | {:?}",
            arm(&self.canary),
            arm(&self.stable),
            statistics.join(" "),
            self.outcome
        )
    }
}

/// A statistic for people: `3.2`, `240`, `1.2e4`.
fn number(x: f64) -> String {
    if x >= 10_000.0 {
        format!("{x:.1e}")
    } else if x >= 100.0 {
        format!("{x:.0}")
    } else {
        format!("{x:.2}")
    }
}

fn rate(events: u64, requests: u64) -> f64 {
    if requests == 0 {
        0.0
    } else {
        events as f64 / requests as f64
    }
}

/// `4.9% (49/1000)`.
fn counted(events: u64, requests: u64) -> String {
    format!("{} ({events}/{requests})", percent(rate(events, requests)))
}

/// Judges the step's evidence as of its latest look.
pub fn judge(spec: &AnalysisSpec, evidence: &Evidence) -> Verdict {
    let (canary, stable) = (&evidence.canary, &evidence.stable);
    let mut checks = vec![
        errors(spec, evidence),
        latency(spec, evidence),
        max_error_rate(spec, evidence),
    ];
    if let Some(limit) = spec.max_p99_ms {
        checks.push(max_p99(spec, evidence, limit));
    }
    checks.push(minimum(spec, evidence));
    checks.push(dataplane::check(
        &evidence.data_plane,
        &evidence.last,
        (evidence.canary.requests, evidence.stable.requests),
        evidence.started,
        evidence.elapsed_seconds(),
    ));
    checks.push(queries(evidence));
    let metrics: Vec<MetricCheck> = spec
        .metrics
        .iter()
        .map(|m| {
            let quantile = m.quantile.unwrap_or(spec.latency_quantile);
            let gathered = evidence.metrics.get(&m.name).cloned().unwrap_or_default();
            metric::check(m, &gathered, evidence.alpha, spec.k, quantile)
        })
        .collect();
    let with = |outcome| {
        checks
            .iter()
            .filter(|c| c.outcome == outcome)
            .map(|c| c.reason.clone())
            .chain(
                metrics
                    .iter()
                    .filter(|m| m.outcome == outcome)
                    .map(|m| format!("{}: {}", m.name, m.reason)),
            )
            .collect::<Vec<_>>()
    };
    let compared: Vec<Outcome> = checks
        .iter()
        .filter(|c| {
            matches!(
                c.name,
                CheckName::Errors
                    | CheckName::Latency
                    | CheckName::MaxErrorRate
                    | CheckName::MaxP99
            )
        })
        .map(|c| c.outcome)
        .chain(metrics.iter().map(|m| m.outcome))
        .filter(|&o| o != Outcome::Inconclusive)
        .collect();
    let passed = compared.iter().filter(|&&o| o == Outcome::Pass).count();
    let score = (!compared.is_empty()).then(|| 100.0 * passed as f64 / compared.len() as f64);
    let (outcome, reasons) = if !with(Outcome::Fail).is_empty() {
        (Outcome::Fail, with(Outcome::Fail))
    } else if !with(Outcome::Inconclusive).is_empty() {
        (Outcome::Inconclusive, with(Outcome::Inconclusive))
    } else {
        (Outcome::Pass, with(Outcome::Pass))
    };
    let reason = reasons.join("; ");
    let summary = |arm: &ArmEvidence, version: &str| ArmSummary {
        version: version.to_owned(),
        requests: arm.requests,
        errors: arm.errors,
        error_rate: rate(arm.errors, arm.requests),
        p99_ms: arm.latency.quantile_ms(spec.latency_quantile),
    };
    Verdict {
        outcome,
        reason,
        canary: summary(canary, &evidence.last.canary.version),
        stable: summary(stable, &evidence.last.stable.version),
        checks,
        metrics,
        score,
    }
}

/// A sequential test's check: `what` names the events in the reason.
fn sequential_check(
    name: CheckName,
    what: &str,
    spec: &AnalysisSpec,
    evidence: &Evidence,
    canary: ArmCounts,
    stable: ArmCounts,
) -> Check {
    let share = rate(
        canary.requests,
        canary.requests.saturating_add(stable.requests),
    );
    let threshold = 1.0 / evidence.alpha;
    let test =
        sequential::canary_worse(spec.k, evidence.alpha, share, canary.events, stable.events);
    let statistic = test.statistic();
    let numbers = format!(
        "canary {what} {} vs stable {}",
        counted(canary.events, canary.requests),
        counted(stable.events, stable.requests)
    );
    let (outcome, reason) = if stable.requests == 0 || canary.requests == 0 {
        (
            Outcome::Pass,
            format!("{numbers}: one version served nothing, nothing to compare"),
        )
    } else if test.rejects {
        (
            Outcome::Fail,
            format!(
                "{numbers}: statistic {} ≥ {} = 1/α, the canary is worse",
                number(statistic),
                number(threshold)
            ),
        )
    } else {
        (
            Outcome::Pass,
            format!(
                "{numbers}: statistic {} < {} = 1/α{}",
                number(statistic),
                number(threshold),
                if test.canary_worse {
                    ""
                } else {
                    ", the canary no worse"
                }
            ),
        )
    };
    Check {
        name,
        canary,
        stable,
        share,
        statistic,
        threshold,
        outcome,
        reason,
    }
}

/// The queries of the latest look that returned no series: a step cannot be judged without
/// them, and waiting in silence would hide a setup fault (stats tags, labels) for good.
fn queries(evidence: &Evidence) -> Check {
    let unanswered = &evidence.last.unanswered;
    let (outcome, reason) = if unanswered.is_empty() {
        (Outcome::Pass, "every query answered".to_owned())
    } else {
        (
            Outcome::Inconclusive,
            format!("no series: {}", unanswered.join("; ")),
        )
    };
    Check {
        name: CheckName::Queries,
        canary: ArmCounts::default(),
        stable: ArmCounts::default(),
        share: 0.0,
        statistic: unanswered.len() as f64,
        threshold: 0.0,
        outcome,
        reason,
    }
}

fn errors(spec: &AnalysisSpec, evidence: &Evidence) -> Check {
    let arm = |a: &ArmEvidence| ArmCounts {
        requests: a.requests,
        events: a.errors,
    };
    sequential_check(
        CheckName::Errors,
        "5xx",
        spec,
        evidence,
        arm(&evidence.canary),
        arm(&evidence.stable),
    )
}

fn latency(spec: &AnalysisSpec, evidence: &Evidence) -> Check {
    let Some(boundary) = evidence.boundary_ms else {
        let arm = |a: &ArmEvidence| ArmCounts {
            requests: a.latency.count,
            events: 0,
        };
        let (canary, stable) = (arm(&evidence.canary), arm(&evidence.stable));
        return Check {
            name: CheckName::Latency,
            canary,
            stable,
            share: rate(
                canary.requests,
                canary.requests.saturating_add(stable.requests),
            ),
            statistic: 1.0,
            threshold: 1.0 / evidence.alpha,
            // At 100 % stable serves nothing more: there is nothing to wait for.
            outcome: if evidence.weight < 100.0 {
                Outcome::Inconclusive
            } else {
                Outcome::Pass
            },
            reason: format!(
                "latency: waiting for {} stable requests to place the slow boundary near its p{}",
                boundary_requests(spec),
                spec.latency_quantile * 100.0
            ),
        };
    };
    let arm = |a: &ArmEvidence| ArmCounts {
        requests: a.latency.count,
        events: a.latency.above(boundary),
    };
    sequential_check(
        CheckName::Latency,
        &format!("slower than {boundary} ms"),
        spec,
        evidence,
        arm(&evidence.canary),
        arm(&evidence.stable),
    )
}

/// A guard's check: the canary's `events` among its `requests` against `limit`, failed once
/// the sequential guard test shows the rate above it.
fn guard(evidence: &Evidence, name: CheckName, what: &str, canary: ArmCounts, limit: f64) -> Check {
    let test = sequential::rate_above(evidence.alpha, limit, canary.events, canary.requests);
    let statistic = test.statistic();
    let threshold = 1.0 / evidence.alpha;
    let numbers = format!("canary {what} {}", counted(canary.events, canary.requests));
    let (outcome, reason) = if test.rejects {
        (
            Outcome::Fail,
            format!(
                "{numbers} is above {name} {}: statistic {} ≥ {} = 1/α",
                percent(limit),
                number(statistic),
                number(threshold)
            ),
        )
    } else {
        (
            Outcome::Pass,
            format!(
                "{numbers} not shown above {name} {} (statistic {} < {})",
                percent(limit),
                number(statistic),
                number(threshold)
            ),
        )
    };
    Check {
        name,
        canary,
        stable: ArmCounts::default(),
        share: 0.0,
        statistic,
        threshold,
        outcome,
        reason,
    }
}

fn max_error_rate(spec: &AnalysisSpec, evidence: &Evidence) -> Check {
    let counts = ArmCounts {
        requests: evidence.canary.requests,
        events: evidence.canary.errors,
    };
    guard(
        evidence,
        CheckName::MaxErrorRate,
        "5xx",
        counts,
        spec.max_error_rate,
    )
}

fn max_p99(spec: &AnalysisSpec, evidence: &Evidence, limit_ms: f64) -> Check {
    let canary = &evidence.canary;
    // Requests above the first bound at or above the limit: a canary whose quantile is at
    // most the limit never fails, however coarse the buckets.
    let Some(bound) = canary.latency.bound_at_or_above(limit_ms) else {
        return Check {
            name: CheckName::MaxP99,
            canary: ArmCounts {
                requests: canary.latency.count,
                events: 0,
            },
            stable: ArmCounts::default(),
            share: 0.0,
            statistic: 0.0,
            threshold: 1.0 - spec.latency_quantile,
            outcome: Outcome::Pass,
            reason: format!(
                "maxP99: no latency bucket at or above {limit_ms} ms to judge it by ({} canary requests)",
                canary.latency.count
            ),
        };
    };
    let counts = ArmCounts {
        requests: canary.latency.count,
        events: canary.latency.above(bound),
    };
    guard(
        evidence,
        CheckName::MaxP99,
        &format!("requests slower than {bound} ms"),
        counts,
        1.0 - spec.latency_quantile,
    )
}

fn minimum(spec: &AnalysisSpec, evidence: &Evidence) -> Check {
    let canary = ArmCounts {
        requests: evidence.canary.requests,
        events: 0,
    };
    let stable = ArmCounts {
        requests: evidence.stable.requests,
        events: 0,
    };
    // At 100 % there is no stable to compare with: the canary's own requests must do.
    let needs_stable = evidence.weight < 100.0;
    let short = canary.requests < spec.min_requests
        || (needs_stable && stable.requests < spec.min_requests);
    let reason = format!(
        "evidence: canary {} and stable {} requests (at least {} each{})",
        canary.requests,
        stable.requests,
        spec.min_requests,
        if needs_stable { "" } else { " of the canary" }
    );
    Check {
        name: CheckName::Evidence,
        canary,
        stable,
        share: rate(
            canary.requests,
            canary.requests.saturating_add(stable.requests),
        ),
        statistic: canary.requests as f64,
        threshold: spec.min_requests as f64,
        outcome: if short {
            Outcome::Inconclusive
        } else {
            Outcome::Pass
        },
        reason: if short {
            format!("too little {reason}")
        } else {
            reason
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::evidence::tests::{at, sample};
    use crate::{Snapshot, StepPlan};

    /// One arm's increases in a step: requests, 5xx, requests slower than 25 ms, fresh
    /// decisions.
    #[derive(Clone, Copy)]
    struct Arm(u64, u64, u64, u64);

    /// A step at `weight` that started with a stable history (p99 at 25 ms) and saw `canary`
    /// and `stable` over one look 60 s later.
    fn step(spec: &AnalysisSpec, weight: f64, canary: Arm, stable: Arm) -> Evidence {
        let history = 100_000;
        let buckets = |requests: u64, slow: u64| {
            vec![
                (5.0, (requests - slow) / 2),
                (25.0, requests - slow),
                (250.0, requests - slow / 10),
                (f64::INFINITY, requests),
            ]
        };
        let start = Snapshot {
            at: at(0),
            stable: sample("v1", history, 10, &buckets(history, 1000), 0),
            canary: sample("v2", 0, 0, &[], 0),
            unanswered: Vec::new(),
        };
        let plan = StepPlan {
            weight,
            judged_steps: 6,
        };
        let mut evidence = Evidence::start(&start, spec, plan);
        assert_eq!(evidence.boundary_ms, Some(25.0));
        let later = Snapshot {
            at: at(60),
            stable: sample(
                "v1",
                history + stable.0,
                10 + stable.1,
                &buckets(history, 1000)
                    .iter()
                    .zip(buckets(stable.0, stable.2))
                    .map(|(a, b)| (a.0, a.1 + b.1))
                    .collect::<Vec<_>>(),
                stable.3,
            ),
            canary: sample(
                "v2",
                canary.0,
                canary.1,
                &buckets(canary.0, canary.2),
                canary.3,
            ),
            unanswered: Vec::new(),
        }
        .with_applied("proxy", weight);
        evidence.observe(&later, spec);
        evidence
    }

    fn check<'a>(verdict: &'a Verdict, name: &str) -> &'a Check {
        verdict
            .checks
            .iter()
            .find(|c| c.name.as_str() == name)
            .unwrap_or_else(|| panic!("no {name} check in {verdict:?}"))
    }

    #[test]
    fn verdicts() {
        let spec = AnalysisSpec::default();
        let guarded = AnalysisSpec {
            max_p99_ms: Some(100.0),
            ..AnalysisSpec::default()
        };
        // (spec, weight, canary, stable, outcome, the check that decides, words in the reason)
        let cases: Vec<(&AnalysisSpec, f64, Arm, Arm, Outcome, &str, &str)> = vec![
            (
                &spec, 5.0, Arm(1000, 1, 10, 50), Arm(19000, 19, 190, 950),
                Outcome::Pass, "errors", "canary 5xx 0.1% (1/1000) vs stable 0.1% (19/19000): statistic",
            ),
            (
                &spec, 5.0, Arm(1000, 49, 10, 50), Arm(19000, 19, 190, 950),
                Outcome::Fail, "errors", "canary 5xx 4.9% (49/1000) vs stable 0.1% (19/19000): statistic 3.4e26 ≥ 240 = 1/α, the canary is worse",
            ),
            (
                &spec, 5.0, Arm(3, 0, 0, 3), Arm(57, 0, 0, 57),
                Outcome::Inconclusive, "evidence", "too little evidence: canary 3 and stable 57 requests (at least 200 each)",
            ),
            (
                &spec, 5.0, Arm(1000, 1, 1000, 50), Arm(19000, 19, 190, 950),
                Outcome::Fail, "latency", "canary slower than 25 ms 100.0% (1000/1000) vs stable 1.0% (190/19000)",
            ),
            (
                // Both versions fail 9 %: no worse than stable, but beyond the guard.
                &spec, 5.0, Arm(1000, 90, 10, 50), Arm(19000, 1710, 190, 950),
                Outcome::Fail, "maxErrorRate", "canary 5xx 9.0% (90/1000) is above maxErrorRate 5.0%: statistic",
            ),
            (
                // Both versions are as slow, beyond the guard.
                &guarded, 5.0, Arm(1000, 1, 400, 50), Arm(19000, 19, 7600, 950),
                Outcome::Fail, "maxP99", "canary requests slower than 250 ms 4.0% (40/1000) is above maxP99 1.0%",
            ),
            (
                // Far fewer errors than stable: the statistic is large, the canary better.
                &spec, 50.0, Arm(10000, 0, 100, 1000), Arm(10000, 200, 100, 1000),
                Outcome::Pass, "errors", "the canary no worse",
            ),
            (
                // At 100 % there is no stable to compare with.
                &spec, 100.0, Arm(1000, 1, 10, 1000), Arm(0, 0, 0, 0),
                Outcome::Pass, "errors", "one version served nothing",
            ),
        ];
        for (spec, weight, canary, stable, outcome, name, words) in cases {
            let evidence = step(spec, weight, canary, stable);
            let verdict = judge(spec, &evidence);
            let decisive = check(&verdict, name);
            assert_eq!(verdict.outcome, outcome, "{name}: {}", verdict.reason);
            if outcome != Outcome::Pass {
                assert_eq!(decisive.outcome, outcome, "{}", decisive.reason);
                assert!(
                    verdict.reason.contains(&decisive.reason),
                    "{}",
                    verdict.reason
                );
            }
            assert!(
                decisive.reason.contains(words),
                "{name}: {}",
                decisive.reason
            );
            // The verdict goes into the status and comes back whole.
            let json = serde_json::to_value(&verdict).unwrap();
            let back: Verdict = serde_json::from_value(json.clone()).unwrap();
            assert_eq!(serde_json::to_value(back).unwrap(), json);
        }
    }

    #[test]
    fn a_verdict_carries_the_numbers_of_both_arms() {
        let spec = AnalysisSpec::default();
        let evidence = step(&spec, 5.0, Arm(1000, 49, 10, 50), Arm(19000, 19, 190, 950));
        let verdict = judge(&spec, &evidence);
        let errors = check(&verdict, "errors");
        assert_eq!(
            errors.canary,
            ArmCounts {
                requests: 1000,
                events: 49
            }
        );
        assert_eq!(
            errors.stable,
            ArmCounts {
                requests: 19000,
                events: 19
            }
        );
        assert_eq!(errors.share, 0.05);
        assert_eq!(errors.threshold, 240.0);
        assert!(errors.statistic > 1e20);
        assert_eq!(verdict.canary.version, "v2");
        assert_eq!(verdict.canary.errors, 49);
        assert_eq!(verdict.stable.requests, 19000);
        assert!((verdict.canary.error_rate - 0.049).abs() < 1e-12);
        assert!(verdict
            .canary
            .p99_ms
            .is_some_and(|ms| ms > 5.0 && ms <= 25.0));
        let names: Vec<_> = verdict.checks.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "errors",
                "latency",
                "maxErrorRate",
                "evidence",
                "dataPlane",
                "queries"
            ]
        );
    }

    /// A query that returned nothing holds the step, saying which, whatever else passed.
    #[test]
    fn an_unanswered_query_holds_the_step_saying_which() {
        let spec = AnalysisSpec::default();
        let mut evidence = step(&spec, 5.0, Arm(1000, 1, 10, 50), Arm(19000, 19, 190, 950));
        assert_eq!(judge(&spec, &evidence).outcome, Outcome::Pass);
        evidence.last.unanswered = vec!["spec.analysis.queries.weights for v2".to_owned()];
        let verdict = judge(&spec, &evidence);
        assert_eq!(verdict.outcome, Outcome::Inconclusive);
        let queries = check(&verdict, "queries");
        assert_eq!(queries.statistic, 1.0);
        assert_eq!(
            verdict.reason,
            "no series: spec.analysis.queries.weights for v2"
        );
    }

    #[test]
    fn a_line_for_people() {
        let spec = AnalysisSpec::default();
        let evidence = step(&spec, 5.0, Arm(1000, 49, 10, 50), Arm(19000, 19, 190, 950));
        assert_eq!(
            judge(&spec, &evidence).line(),
            "canary v2 1000 req 4.9% 5xx p99 25 ms | stable v1 19000 req 0.1% 5xx p99 25 ms | \
             errors 3.4e26/240 latency 0.57/240 | score 67 | Fail"
        );
    }

    #[test]
    fn at_full_weight_nothing_waits_for_stable() {
        let spec = AnalysisSpec::default();
        let start = Snapshot {
            at: at(0),
            stable: sample("v1", 0, 0, &[], 0),
            canary: sample("v2", 0, 0, &[], 0),
            unanswered: Vec::new(),
        };
        let plan = StepPlan {
            weight: 100.0,
            judged_steps: 6,
        };
        let mut evidence = Evidence::start(&start, &spec, plan);
        let later = Snapshot {
            at: at(60),
            stable: sample("v1", 0, 0, &[], 0),
            canary: sample("v2", 500, 0, &[(5.0, 500), (f64::INFINITY, 500)], 100),
            unanswered: Vec::new(),
        }
        .with_applied("proxy", 100.0);
        evidence.observe(&later, &spec);
        let verdict = judge(&spec, &evidence);
        assert_eq!(verdict.outcome, Outcome::Pass, "{}", verdict.reason);
    }

    #[test]
    fn an_enormous_statistic_is_still_a_finite_number() {
        let spec = AnalysisSpec::default();
        let evidence = step(
            &spec,
            50.0,
            Arm(1_000_000, 500_000, 10, 500),
            Arm(1_000_000, 0, 10, 500),
        );
        let verdict = judge(&spec, &evidence);
        let errors = check(&verdict, "errors");
        assert!(errors.statistic.is_finite() && errors.statistic > 1e300);
        assert!(serde_json::to_value(&verdict).unwrap()["checks"][0]["statistic"].is_number());
    }

    /// The status keeps the names people read: serde's spelling is `as_str`'s, and a name
    /// the status holds reads back as its check.
    #[test]
    fn check_names_are_stored_as_they_are_written() {
        use CheckName::*;
        for name in [
            Errors,
            Latency,
            MaxErrorRate,
            MaxP99,
            Evidence,
            DataPlane,
            Queries,
        ] {
            let json = serde_json::to_value(name).unwrap();
            assert_eq!(json, name.as_str());
            assert_eq!(serde_json::from_value::<CheckName>(json).unwrap(), name);
        }
        assert!(serde_json::from_value::<CheckName>("errorRate".into()).is_err());
    }

    #[test]
    fn numbers_for_people() {
        assert_eq!(percent(0.049), "4.9%");
        assert_eq!(percent(0.0004), "0.04%");
        assert_eq!(percent(0.0), "0.0%");
        assert_eq!(number(12_345.0), "1.2e4");
        assert_eq!(number(240.0), "240");
        assert_eq!(number(0.912), "0.91");
    }
}
