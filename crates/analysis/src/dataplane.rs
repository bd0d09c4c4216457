//! Did the proxies apply the weight? Fresh decisions (the filter's `hash` reason: clients
//! without a pin, hashed by the live weights) must give the canary its new weight within a
//! tolerance before a deadline, or the step fails: a listener or WasmPlugin that did not
//! apply is caught, not assumed. Pinned clients (`cookie`) keep their version by design, so
//! they say nothing about the weight; the share of requests served is shown beside it.

use jiff::Timestamp;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::check::{percent, ArmCounts, Check, CheckName, Outcome};
use super::AnalysisSpec;

/// Fresh decisions counted in windows: a window with enough decisions either shows the
/// weight (reached, for good) or does not (and the next window starts, so decisions made
/// before the change reached the proxies drop out).
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Progress {
    /// Canary weight in percent the decisions should follow.
    pub weight: f64,
    /// Allowed distance of the share from the weight (absolute share).
    pub tolerance: f64,
    /// Seconds after the step's start by which the weight must be reached.
    pub deadline_seconds: u64,
    /// Decisions a window needs before it is judged.
    pub window_decisions: u64,
    /// When the current window started.
    #[schemars(with = "String")]
    pub window_start: Timestamp,
    /// Fresh decisions for the canary in the current window.
    pub canary: u64,
    /// Fresh decisions for stable in the current window.
    pub stable: u64,
    /// The last complete window that missed the weight.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub missed: Option<Window>,
    /// When a window first showed the weight.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub reached: Option<Timestamp>,
}

/// Fresh decisions of a window, per version.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Window {
    /// For the canary.
    pub canary: u64,
    /// For stable.
    pub stable: u64,
}

/// Decisions a window needs so that the tolerance is four standard deviations of the share's
/// sampling noise (at least 20): a window of a correctly applied weight misses it by chance
/// about 6 times in 100,000, so a rollout's steps are not failed by the noise of their windows.
pub fn window_decisions(weight: f64, tolerance: f64) -> u64 {
    let p = (weight / 100.0).clamp(0.0, 1.0);
    let needed = (16.0 * p * (1.0 - p) / (tolerance * tolerance)).ceil() as u64;
    needed.max(20)
}

impl Progress {
    /// The progress of a step whose weight was just written at `at`.
    pub fn new(at: Timestamp, weight: f64, spec: &AnalysisSpec) -> Progress {
        Progress {
            weight,
            tolerance: spec.data_plane.tolerance,
            deadline_seconds: spec.data_plane.deadline_seconds,
            window_decisions: window_decisions(weight, spec.data_plane.tolerance),
            window_start: at,
            canary: 0,
            stable: 0,
            missed: None,
            reached: None,
        }
    }

    fn distance(&self, canary: u64, stable: u64) -> f64 {
        (share(canary, stable) - self.weight / 100.0).abs()
    }

    /// Adds the fresh decisions of one look ending at `at`.
    pub fn observe(&mut self, at: Timestamp, canary: u64, stable: u64) {
        if self.reached.is_some() {
            // The window that showed the weight is kept as it was.
            return;
        }
        self.canary = self.canary.saturating_add(canary);
        self.stable = self.stable.saturating_add(stable);
        if self.canary.saturating_add(self.stable) < self.window_decisions {
            return;
        }
        if self.distance(self.canary, self.stable) <= self.tolerance {
            self.reached = Some(at);
        } else {
            self.missed = Some(Window {
                canary: self.canary,
                stable: self.stable,
            });
            self.window_start = at;
            self.canary = 0;
            self.stable = 0;
        }
    }
}

/// The canary's share of `canary + stable` (0 when both are 0).
pub fn share(canary: u64, stable: u64) -> f64 {
    let total = canary.saturating_add(stable);
    if total == 0 {
        0.0
    } else {
        canary as f64 / total as f64
    }
}

/// The data-plane check at the step's latest look: `progress` of a step that started at
/// `started`, `elapsed` seconds ago, in which the arms served `(canary, stable)` requests.
pub fn check(progress: &Progress, requests: (u64, u64), started: Timestamp, elapsed: f64) -> Check {
    let served = share(requests.0, requests.1);
    let served_text = format!(
        "requests served: canary {} ({}/{})",
        percent(served),
        requests.0,
        requests.0.saturating_add(requests.1)
    );
    let weight = format!(
        "weight {}% ± {} points",
        progress.weight,
        progress.tolerance * 100.0
    );
    let decided = |(canary, stable): (u64, u64)| {
        format!(
            "fresh decisions gave the canary {} ({canary}/{})",
            percent(share(canary, stable)),
            canary.saturating_add(stable)
        )
    };
    let (outcome, counted, reason) = if let Some(reached) = progress.reached {
        let after = (reached.as_second() - started.as_second()).max(0);
        (
            Outcome::Pass,
            (progress.canary, progress.stable),
            format!(
                "{}: {weight} reached after {after} s; {served_text}",
                decided((progress.canary, progress.stable))
            ),
        )
    } else if let Some(missed) = progress
        .missed
        .map(|w| (w.canary, w.stable))
        .filter(|_| elapsed >= progress.deadline_seconds as f64)
    {
        (
            Outcome::Fail,
            missed,
            format!(
                "the data plane did not apply the weight: {}, not {weight} within {} s; {served_text}",
                decided(missed),
                progress.deadline_seconds
            ),
        )
    } else {
        let counted = (progress.canary, progress.stable);
        let missed = progress
            .missed
            .map(|m| format!(" (last window: {})", decided((m.canary, m.stable))))
            .unwrap_or_default();
        (
            Outcome::Inconclusive,
            counted,
            format!(
                "waiting for fresh decisions to show {weight}: {} of {} counted{missed}; {served_text}",
                counted.0 + counted.1,
                progress.window_decisions
            ),
        )
    };
    Check {
        name: CheckName::DataPlane,
        canary: ArmCounts {
            requests: requests.0,
            events: counted.0,
        },
        stable: ArmCounts {
            requests: requests.1,
            events: counted.1,
        },
        share: served,
        statistic: progress.distance(counted.0, counted.1),
        threshold: progress.tolerance,
        outcome,
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::evidence::tests::{at, sample};
    use crate::{Evidence, Snapshot, StepPlan};

    #[test]
    fn window_sizes() {
        assert_eq!(window_decisions(50.0, 0.05), 1600);
        assert_eq!(window_decisions(5.0, 0.05), 304);
        assert_eq!(window_decisions(1.0, 0.05), 64);
        assert_eq!(window_decisions(20.0, 0.1), 256);
        assert_eq!(window_decisions(100.0, 0.05), 20);
        assert_eq!(window_decisions(0.0, 0.05), 20);
    }

    /// A step at weight 5 whose looks bring these (canary, stable) fresh decisions, every
    /// 15 s; the check after the last.
    fn after(looks: &[(u64, u64)]) -> Check {
        let spec = AnalysisSpec::default();
        let snap = |second: i64, canary: u64, stable: u64| Snapshot {
            at: at(second),
            stable: sample("v1", stable * 4, 0, &[], stable),
            canary: sample("v2", canary * 4, 0, &[], canary),
        };
        let plan = StepPlan {
            weight: 5.0,
            judged_steps: 6,
        };
        let mut evidence = Evidence::start(&snap(0, 0, 0), &spec, plan);
        let (mut canary, mut stable) = (0, 0);
        for (i, &(c, s)) in looks.iter().enumerate() {
            canary += c;
            stable += s;
            evidence.observe(&snap(15 * (i as i64 + 1), canary, stable), &spec);
        }
        check(
            &evidence.data_plane,
            (evidence.canary.requests, evidence.stable.requests),
            evidence.started,
            evidence.elapsed_seconds(),
        )
    }

    #[test]
    fn the_data_plane_check_follows_the_decisions() {
        // (looks, outcome, words in the reason)
        type Case = (Vec<(u64, u64)>, Outcome, &'static str);
        let cases: Vec<Case> = vec![
            (vec![], Outcome::Inconclusive, "0 of 304 counted"),
            (vec![(5, 60)], Outcome::Inconclusive, "65 of 304 counted"),
            (vec![(16, 304)], Outcome::Pass, "reached after 15 s"),
            // The old weight (20 %) first, then the new one: the first window misses, the
            // next shows it; passed is passed, and the window that showed it is kept.
            (vec![(80, 320), (20, 380), (0, 500)], Outcome::Pass, "gave the canary 5.0% (20/400): weight 5% ± 5 points reached after 30 s"),
            // Still at the old weight, but before the deadline: waiting.
            (vec![(80, 320); 4], Outcome::Inconclusive, "last window: fresh decisions gave the canary 20.0% (80/400)"),
            // Past the deadline (120 s) with a window that missed: the step fails.
            (vec![(80, 320); 8], Outcome::Fail, "did not apply the weight: fresh decisions gave the canary 20.0% (80/400), not weight 5% ± 5 points within 120 s"),
            // No traffic at all, long past the deadline: nothing to judge, not a failure.
            (vec![(0, 0); 20], Outcome::Inconclusive, "0 of 304 counted"),
        ];
        for (looks, outcome, words) in cases {
            let check = after(&looks);
            assert_eq!(check.outcome, outcome, "{looks:?}: {}", check.reason);
            assert!(check.reason.contains(words), "{looks:?}: {}", check.reason);
            assert_eq!(check.name, CheckName::DataPlane);
            assert!(
                check.reason.contains("requests served: canary"),
                "{}",
                check.reason
            );
        }
        let passed = after(&[(16, 304)]);
        assert_eq!(passed.canary.events, 16);
        assert!((passed.statistic - (0.05f64 - 16.0 / 320.0).abs()).abs() < 1e-12);
        assert_eq!(passed.threshold, 0.05);
        assert!((passed.share - 16.0 / 320.0).abs() < 1e-12);
    }
}
