//! Did the proxies apply the weight? Each proxy's filter reports the weight of the
//! configuration it runs (a gauge per version): the step's weights must be reported by every
//! proxy that reports the rollout before a deadline, or the step fails naming the proxies that
//! do not, however little traffic there is.
//!
//! The share of new clients (the filter's `hash` reason: clients without a pin, hashed by the
//! live weights) is a second, statistical signal when there are enough of them: a full window
//! of them far from the weight at the deadline fails the step too. Pinned clients a navigation
//! moved (`repin`) all move the same way after a weight change, and kept pins (`cookie`) stay
//! by design, so neither says anything about the weight; the share of requests served is shown
//! beside it.

use jiff::Timestamp;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::check::{percent, ArmCounts, Check, CheckName, Outcome};
use super::evidence::Snapshot;
use super::AnalysisSpec;

/// Weights closer than this (in percent) are the same: the filter applies basis points.
const SAME_WEIGHT: f64 = 0.005;

/// The step's progress: when every proxy reported its weights, and new clients counted in
/// windows. A window with enough decisions either shows the weight (reached, for good) or does
/// not (and the next window starts, so decisions made before the change reached the proxies
/// drop out).
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Progress {
    /// Canary weight in percent the proxies should run with.
    pub weight: f64,
    /// Allowed distance of the new clients' share from the weight (absolute share).
    pub tolerance: f64,
    /// Seconds after the step's start by which the weight must be applied.
    pub deadline_seconds: u64,
    /// When every proxy reporting the rollout first reported the step's weights.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub applied: Option<Timestamp>,
    /// New clients a window needs before it is judged.
    pub window_decisions: u64,
    /// When the current window started.
    #[schemars(with = "String")]
    pub window_start: Timestamp,
    /// New clients given the canary in the current window.
    pub canary: u64,
    /// New clients given stable in the current window.
    pub stable: u64,
    /// The last complete window that missed the weight.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub missed: Option<Window>,
    /// When a window first showed the weight.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub reached: Option<Timestamp>,
}

/// New clients of a window, per version.
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

/// What the proxies of a snapshot report against the canary's `weight`: how many report the
/// rollout, and each one that runs other weights, in words.
pub fn proxies(weight: f64, snapshot: &Snapshot) -> (usize, Vec<String>) {
    let (canary, stable) = (&snapshot.canary, &snapshot.stable);
    let mut names: Vec<&String> = canary.weights.keys().chain(stable.weights.keys()).collect();
    names.sort();
    names.dedup();
    let off = |reported: Option<&f64>, expected: f64| {
        reported.is_none_or(|&w| (w - expected).abs() >= SAME_WEIGHT)
    };
    let shown =
        |reported: Option<&f64>| reported.map_or_else(|| "nothing".to_owned(), |w| format!("{w}%"));
    let wrong = names
        .iter()
        .filter_map(|&name| {
            let (c, s) = (canary.weights.get(name), stable.weights.get(name));
            (off(c, weight) || off(s, 100.0 - weight)).then(|| {
                format!(
                    "{name} runs {} at {}, {} at {}",
                    canary.version,
                    shown(c),
                    stable.version,
                    shown(s)
                )
            })
        })
        .collect();
    (names.len(), wrong)
}

impl Progress {
    /// The progress of a step whose weight was just written, as of `snapshot`.
    pub fn new(snapshot: &Snapshot, weight: f64, spec: &AnalysisSpec) -> Progress {
        let mut progress = Progress {
            weight,
            tolerance: spec.data_plane.tolerance,
            deadline_seconds: spec.data_plane.deadline_seconds,
            applied: None,
            window_decisions: window_decisions(weight, spec.data_plane.tolerance),
            window_start: snapshot.at,
            canary: 0,
            stable: 0,
            missed: None,
            reached: None,
        };
        progress.note_applied(snapshot);
        progress
    }

    fn distance(&self, canary: u64, stable: u64) -> f64 {
        (share(canary, stable) - self.weight / 100.0).abs()
    }

    /// Records when every proxy first reports the step's weights (for good: a proxy that
    /// joins later starts from the configuration of the moment). New clients count from then
    /// on: those decided before, by a proxy still at the old weight, say nothing of the new one.
    /// Whether it did so at this snapshot.
    fn note_applied(&mut self, snapshot: &Snapshot) -> bool {
        if self.applied.is_some() {
            return false;
        }
        let (reporting, wrong) = proxies(self.weight, snapshot);
        if reporting == 0 || !wrong.is_empty() {
            return false;
        }
        self.applied = Some(snapshot.at);
        if self.reached.is_none() {
            self.window_start = snapshot.at;
            self.canary = 0;
            self.stable = 0;
            self.missed = None;
        }
        true
    }

    /// Adds one look: its snapshot, and the new clients since the previous one (dropped when
    /// this look is the first to see the weight applied: they may predate it).
    pub fn observe(&mut self, snapshot: &Snapshot, canary: u64, stable: u64) {
        if self.note_applied(snapshot) || self.reached.is_some() {
            // The window that showed the weight is kept as it was.
            return;
        }
        self.canary = self.canary.saturating_add(canary);
        self.stable = self.stable.saturating_add(stable);
        if self.canary.saturating_add(self.stable) < self.window_decisions {
            return;
        }
        if self.distance(self.canary, self.stable) <= self.tolerance {
            self.reached = Some(snapshot.at);
        } else {
            self.missed = Some(Window {
                canary: self.canary,
                stable: self.stable,
            });
            self.window_start = snapshot.at;
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

/// Seconds from `from` to `to`, never negative.
fn seconds(from: Timestamp, to: Timestamp) -> i64 {
    (to.as_second() - from.as_second()).max(0)
}

/// The data-plane check at the step's latest look: `progress` of a step that started at
/// `started`, `elapsed` seconds ago, whose latest snapshot is `last`, in which the arms served
/// `(canary, stable)` requests.
pub fn check(
    progress: &Progress,
    last: &Snapshot,
    requests: (u64, u64),
    started: Timestamp,
    elapsed: f64,
) -> Check {
    let served = share(requests.0, requests.1);
    let served_text = format!(
        "requests served: canary {} ({}/{})",
        percent(served),
        requests.0,
        requests.0.saturating_add(requests.1)
    );
    let weight = format!("weight {}%", progress.weight);
    let window = format!("{weight} ± {} points", progress.tolerance * 100.0);
    let decided = |(canary, stable): (u64, u64)| {
        format!(
            "new clients gave the canary {} ({canary}/{})",
            percent(share(canary, stable)),
            canary.saturating_add(stable)
        )
    };
    let past_deadline = elapsed >= progress.deadline_seconds as f64;
    let (reporting, wrong) = proxies(progress.weight, last);
    let new_clients = if let Some(reached) = progress.reached {
        format!(
            "{}: {window} after {} s",
            decided((progress.canary, progress.stable)),
            seconds(started, reached)
        )
    } else {
        let missed = progress
            .missed
            .map(|m| format!(", last window: {}", decided((m.canary, m.stable))))
            .unwrap_or_default();
        format!(
            "new clients: {} of the {} a window needs{missed}",
            progress.canary.saturating_add(progress.stable),
            progress.window_decisions
        )
    };
    let counted = (progress.canary, progress.stable);
    let (outcome, counted, reason) = if let Some(applied) = progress.applied {
        match progress.missed.filter(|_| past_deadline && progress.reached.is_none()) {
            Some(missed) => (
                Outcome::Fail,
                (missed.canary, missed.stable),
                format!(
                    "the data plane did not apply the weight: every proxy reports {weight}, but \
                     {}, not {window} within {} s; {served_text}",
                    decided((missed.canary, missed.stable)),
                    progress.deadline_seconds
                ),
            ),
            None => (
                Outcome::Pass,
                counted,
                format!(
                    "every proxy ({reporting}) reported {weight} after {} s; {new_clients}; {served_text}",
                    seconds(started, applied)
                ),
            ),
        }
    } else if reporting == 0 {
        (
            Outcome::Inconclusive,
            counted,
            format!(
                "no proxy reports the weights it runs (see the queries check); {new_clients}; \
                 {served_text}"
            ),
        )
    } else if past_deadline {
        (
            Outcome::Fail,
            counted,
            format!(
                "the data plane did not apply the weight: {} of {reporting} proxies not at \
                 {weight} within {} s: {}; {served_text}",
                wrong.len(),
                progress.deadline_seconds,
                wrong.join("; ")
            ),
        )
    } else {
        (
            Outcome::Inconclusive,
            counted,
            format!(
                "waiting for {} of {reporting} proxies to apply {weight}: {}; {new_clients}; \
                 {served_text}",
                wrong.len(),
                wrong.join("; ")
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

    /// One look: new clients for (canary, stable) since the last, and the canary weight each
    /// proxy reports (stable reporting the rest).
    type Look = (u64, u64, &'static [(&'static str, f64)]);

    /// A step at weight 5 with these looks every 15 s; the check after the last.
    fn after(looks: &[Look]) -> Check {
        let spec = AnalysisSpec::default();
        let snap = |second: i64, canary: u64, stable: u64, proxies: &[(&str, f64)]| {
            let mut snapshot = Snapshot::new(
                at(second),
                sample("v1", stable * 4, 0, &[], stable),
                sample("v2", canary * 4, 0, &[], canary),
            );
            for &(proxy, weight) in proxies {
                snapshot = snapshot.with_applied(proxy, weight);
            }
            snapshot
        };
        let plan = StepPlan {
            weight: 5.0,
            judged_steps: 6,
        };
        let mut evidence = Evidence::start(&snap(0, 0, 0, &[]), &spec, plan);
        let (mut canary, mut stable) = (0, 0);
        for (i, &(c, s, proxies)) in looks.iter().enumerate() {
            canary += c;
            stable += s;
            evidence.observe(&snap(15 * (i as i64 + 1), canary, stable, proxies), &spec);
        }
        check(
            &evidence.data_plane,
            &evidence.last,
            (evidence.canary.requests, evidence.stable.requests),
            evidence.started,
            evidence.elapsed_seconds(),
        )
    }

    const OLD: &[(&str, f64)] = &[("a", 20.0)];
    const NEW: &[(&str, f64)] = &[("a", 5.0)];
    const ONE_BEHIND: &[(&str, f64)] = &[("a", 5.0), ("b", 20.0)];

    #[test]
    fn the_data_plane_check_follows_the_proxies_then_new_clients() {
        // (looks, outcome, words in the reason)
        type Case = (Vec<Look>, Outcome, &'static str);
        let cases: Vec<Case> = vec![
            (vec![], Outcome::Inconclusive, "no proxy reports the weights it runs"),
            // The gauges are missing however long it runs: said, never a failure by itself.
            (vec![(5, 95, &[]); 20], Outcome::Inconclusive, "no proxy reports"),
            (vec![(0, 0, OLD)], Outcome::Inconclusive, "waiting for 1 of 1 proxies to apply weight 5%: a runs v2 at 20%, v1 at 80%"),
            // Returning clients only: no new client at all, yet the weight is seen applied.
            (vec![(0, 0, OLD), (0, 0, NEW)], Outcome::Pass, "every proxy (1) reported weight 5% after 30 s; new clients: 0 of the 304"),
            // One proxy still at the old weight at the deadline (120 s): failed, naming it.
            (vec![(0, 0, ONE_BEHIND); 8], Outcome::Fail, "1 of 2 proxies not at weight 5% within 120 s: b runs v2 at 20%, v1 at 80%"),
            (vec![(0, 0, ONE_BEHIND); 7], Outcome::Inconclusive, "waiting for 1 of 2 proxies"),
            // A proxy reporting the canary's weight but not stable's is not at the weight.
            (vec![(0, 0, &[("a", 5.0)]); 1], Outcome::Pass, "every proxy (1)"),
            // Decisions made before the weight reached every proxy do not count: the window
            // that missed is dropped when the weight is applied, and the next one shows it.
            (vec![(80, 320, OLD), (20, 380, NEW)], Outcome::Pass, "new clients: 0 of the 304"),
            (vec![(80, 320, OLD), (0, 0, NEW), (20, 380, NEW)], Outcome::Pass, "new clients gave the canary 5.0% (20/400): weight 5% ± 5 points after 45 s"),
            // Every proxy reports the weight, yet new clients keep the old share: a proxy
            // that does not report (or a broken filter) is caught at the deadline.
            (vec![(0, 0, NEW), (80, 320, NEW), (80, 320, NEW)], Outcome::Pass, "last window: new clients gave the canary 20.0% (80/400)"),
            (vec![(0, 0, NEW), (80, 320, NEW), (80, 320, NEW), (80, 320, NEW), (80, 320, NEW), (80, 320, NEW), (80, 320, NEW), (80, 320, NEW)], Outcome::Fail, "every proxy reports weight 5%, but new clients gave the canary 20.0% (80/400), not weight 5% ± 5 points within 120 s"),
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
    }

    #[test]
    fn a_proxy_missing_one_version_is_not_at_the_weight() {
        let mut snapshot = Snapshot::new(
            at(0),
            sample("v1", 0, 0, &[], 0),
            sample("v2", 0, 0, &[], 0),
        );
        snapshot.canary.weights.insert("a".to_owned(), 5.0);
        let (reporting, wrong) = proxies(5.0, &snapshot);
        assert_eq!(reporting, 1);
        assert_eq!(wrong, ["a runs v2 at 5%, v1 at nothing"]);
        snapshot.stable.weights.insert("a".to_owned(), 95.0);
        assert_eq!(proxies(5.0, &snapshot), (1, vec![]));
        // Basis points: 33.33 is 33.33, not 33.3.
        let thirds = snapshot.clone().with_applied("a", 33.33);
        assert_eq!(proxies(33.33, &thirds).1.len(), 0);
        assert_eq!(proxies(33.3, &thirds).1.len(), 1);
    }
}
