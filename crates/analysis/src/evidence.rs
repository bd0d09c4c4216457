//! What one look at Prometheus returns ([`Snapshot`]) and what a step has gathered from its
//! looks ([`Evidence`]), kept in the rollout's status so a restarted controller resumes the
//! step with everything it had counted.

use std::collections::BTreeMap;

use jiff::Timestamp;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::counters::{bucket_increases, increase};
use super::dataplane;
use super::metric::{MetricEvidence, MetricSample};
use super::AnalysisSpec;

/// The filter's decision reason of new clients (no pin), the decisions that follow the
/// weights; pinned clients a navigation moved are `repin`, kept pins `cookie`.
pub const HASH_REASON: &str = "hash";

/// A cumulative counter as Prometheus returns it: one raw value per series (a proxy, a label
/// combination), keyed by the series' labels. Increases are taken per series and then added,
/// so one proxy restarting (its counter reset) does not look like a reset of the sum.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(transparent)]
pub struct Counter(pub BTreeMap<String, u64>);

impl Counter {
    /// A counter of one series (labels `""`).
    pub fn single(value: u64) -> Counter {
        Counter(BTreeMap::from([(String::new(), value)]))
    }

    /// Whether no series was read.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The sum over every series (saturating: counters come from outside, and a status
    /// edited by hand may hold anything a `u64` does).
    pub fn total(&self) -> u64 {
        self.0.values().fold(0, |sum, &v| sum.saturating_add(v))
    }

    /// What was counted between `before` and `self`: per series, resets handled; a series
    /// new in `self` counts whole, a series gone from it adds nothing.
    pub fn increase_since(&self, before: &Counter) -> u64 {
        self.0
            .iter()
            .map(|(series, &now)| increase(before.0.get(series).copied().unwrap_or(0), now))
            .fold(0, u64::saturating_add)
    }
}

/// One cumulative latency bucket: requests that took at most `leMs` milliseconds.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Bucket {
    /// Upper bound in milliseconds (finite; the `+Inf` bucket is [`Histogram::count`]).
    pub le_ms: f64,
    /// Requests at or below it.
    pub count: u64,
}

/// A latency histogram as Prometheus exposes it: cumulative buckets by upper bound.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct Histogram {
    /// Finite buckets, ascending by `leMs`.
    #[serde(default)]
    pub buckets: Vec<Bucket>,
    /// Every observed request (the `+Inf` bucket).
    #[serde(default)]
    pub count: u64,
}

impl Histogram {
    /// A histogram from `(le, cumulative count)` pairs in any order, `+Inf` among them.
    pub fn from_pairs(pairs: &[(f64, u64)]) -> Histogram {
        let mut buckets: Vec<Bucket> = pairs
            .iter()
            .filter(|(le, _)| le.is_finite())
            .map(|&(le_ms, count)| Bucket { le_ms, count })
            .collect();
        buckets.sort_by(|a, b| a.le_ms.total_cmp(&b.le_ms));
        let count = pairs
            .iter()
            .find(|(le, _)| *le == f64::INFINITY)
            .map(|&(_, c)| c)
            .unwrap_or_else(|| buckets.last().map_or(0, |b| b.count));
        Histogram { buckets, count }
    }

    fn pairs(&self) -> Vec<(f64, u64)> {
        self.buckets
            .iter()
            .map(|b| (b.le_ms, b.count))
            .chain([(f64::INFINITY, self.count)])
            .collect()
    }

    /// What was observed between `before` and `self`, resets handled.
    pub fn increase_since(&self, before: &Histogram) -> Histogram {
        Histogram::from_pairs(&bucket_increases(&before.pairs(), &self.pairs()))
    }

    /// What histograms kept per series observed from `before` to `now`, added up: each
    /// series' increase (resets handled), a series new in `now` whole.
    pub fn increase_per_series(
        before: &BTreeMap<String, Histogram>,
        now: &BTreeMap<String, Histogram>,
    ) -> Histogram {
        let empty = Histogram::default();
        let mut sum = Histogram::default();
        for (series, histogram) in now {
            sum.add(&histogram.increase_since(before.get(series).unwrap_or(&empty)));
        }
        sum
    }

    /// Adds `other`'s counts bucket by bucket. A bound only one side has counts, on the other,
    /// what that side's next smaller bound held.
    pub fn add(&mut self, other: &Histogram) {
        let mut bounds: Vec<f64> = self
            .buckets
            .iter()
            .chain(&other.buckets)
            .map(|b| b.le_ms)
            .collect();
        bounds.sort_by(f64::total_cmp);
        bounds.dedup();
        self.buckets = bounds
            .into_iter()
            .map(|le_ms| Bucket {
                le_ms,
                count: self
                    .at_or_below(le_ms)
                    .saturating_add(other.at_or_below(le_ms)),
            })
            .collect();
        self.count = self.count.saturating_add(other.count);
    }

    /// Requests at or below `le_ms`, by the largest bucket bound at or below it.
    fn at_or_below(&self, le_ms: f64) -> u64 {
        self.buckets
            .iter()
            .rev()
            .find(|b| b.le_ms <= le_ms)
            .map_or(0, |b| b.count)
    }

    /// Requests slower than `le_ms` (a bucket bound, so the count is exact).
    pub fn above(&self, le_ms: f64) -> u64 {
        self.count.saturating_sub(self.at_or_below(le_ms))
    }

    /// The smallest bucket bound with at least a `quantile` share of the requests at or
    /// below it; the largest bound when the quantile lies beyond every finite bucket; `None`
    /// without buckets or requests.
    pub fn quantile_bound(&self, quantile: f64) -> Option<f64> {
        if self.count == 0 {
            return None;
        }
        let wanted = quantile * self.count as f64;
        self.buckets
            .iter()
            .find(|b| b.count as f64 >= wanted)
            .or(self.buckets.last())
            .map(|b| b.le_ms)
    }

    /// The smallest bucket bound at or above `ms`.
    pub fn bound_at_or_above(&self, ms: f64) -> Option<f64> {
        self.buckets.iter().find(|b| b.le_ms >= ms).map(|b| b.le_ms)
    }

    /// The `quantile` estimated as Prometheus's `histogram_quantile` does (linear within
    /// the bucket), for display only: the tests count requests above a bound instead.
    pub fn quantile_ms(&self, quantile: f64) -> Option<f64> {
        if self.count == 0 {
            return None;
        }
        let wanted = quantile * self.count as f64;
        let mut lower = (0.0, 0u64);
        for bucket in &self.buckets {
            if bucket.count as f64 >= wanted {
                // Buckets from outside need not be cumulative: never below zero.
                let in_bucket = bucket.count.saturating_sub(lower.1) as f64;
                let fraction = if in_bucket > 0.0 {
                    (wanted - lower.1 as f64) / in_bucket
                } else {
                    1.0
                };
                return Some(lower.0 + (bucket.le_ms - lower.0) * fraction);
            }
            lower = (bucket.le_ms, bucket.count);
        }
        // Beyond the last finite bound: that bound is all that can be said.
        self.buckets.last().map(|b| b.le_ms)
    }
}

/// One version's raw cumulative counters at one look, per series.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct VersionSample {
    /// The version's name.
    pub version: String,
    /// Requests served.
    #[serde(default)]
    pub requests: Counter,
    /// 5xx responses among them.
    #[serde(default)]
    pub errors: Counter,
    /// Latency of its requests, a histogram per series.
    #[serde(default)]
    pub latency: BTreeMap<String, Histogram>,
    /// The filter's decisions that chose this version, by reason (`hash`, `cookie`, ...).
    #[serde(default)]
    pub decisions: BTreeMap<String, Counter>,
    /// The weight in percent each proxy runs this version with (the filter's gauge), by the
    /// proxy's series labels.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub weights: BTreeMap<String, f64>,
    /// The readings of `spec.analysis.metrics`, by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metrics: BTreeMap<String, MetricSample>,
}

impl VersionSample {
    /// New clients' (hash) decisions since `before`.
    fn hash_since(&self, before: &VersionSample) -> u64 {
        match (
            self.decisions.get(HASH_REASON),
            before.decisions.get(HASH_REASON),
        ) {
            (Some(now), Some(then)) => now.increase_since(then),
            (Some(now), None) => now.total(),
            (None, _) => 0,
        }
    }
}

/// What one look at Prometheus returns: both versions' counters at one time.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Snapshot {
    /// When the counters were read (the query's evaluation time).
    #[schemars(with = "String")]
    pub at: Timestamp,
    /// The stable version's counters.
    pub stable: VersionSample,
    /// The canary's counters.
    pub canary: VersionSample,
    /// The queries that must answer for every rollout (the filter's series, stable's
    /// requests) and returned no series: which, and what usually causes it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unanswered: Vec<String>,
}

impl Snapshot {
    /// Both versions' counters read at `at`, every query answered.
    pub fn new(at: Timestamp, stable: VersionSample, canary: VersionSample) -> Snapshot {
        Snapshot {
            at,
            stable,
            canary,
            unanswered: Vec::new(),
        }
    }

    /// This snapshot with `proxy` reporting that it runs the canary at `weight` percent and
    /// stable at the rest, as the filter's gauges do. Simulations and tests use it.
    pub fn with_applied(mut self, proxy: &str, weight: f64) -> Snapshot {
        self.canary.weights.insert(proxy.to_owned(), weight);
        self.stable.weights.insert(proxy.to_owned(), 100.0 - weight);
        self
    }
}

/// Why a look at the metrics found no [`Snapshot`]. The state machine holds or rolls back on
/// any of them alike; they are told apart for the people reading why (the status message says
/// `no metrics: ` and this).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LookError {
    /// The rollout has no canary to compare with stable.
    NoCanary,
    /// Prometheus could not be reached or its answer could not be read: a later look may
    /// succeed as it is.
    Unreachable(String),
    /// Prometheus rejected a query, or answered what is no raw counter: the rollout's query
    /// templates need a fix.
    Rejected(String),
}

impl std::fmt::Display for LookError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LookError::NoCanary => f.write_str("no canary to compare with stable"),
            LookError::Unreachable(why) | LookError::Rejected(why) => f.write_str(why),
        }
    }
}

impl std::error::Error for LookError {}

/// One arm's increases accumulated over a step's looks.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ArmEvidence {
    /// Requests served during the step.
    pub requests: u64,
    /// 5xx responses during the step.
    pub errors: u64,
    /// Latency of the step's requests.
    #[serde(default)]
    pub latency: Histogram,
    /// Decisions during the step, by reason.
    #[serde(default)]
    pub decisions: BTreeMap<String, u64>,
}

impl ArmEvidence {
    /// Adds what happened between two samples of one version.
    fn add_increase(&mut self, before: &VersionSample, now: &VersionSample) {
        self.requests = self
            .requests
            .saturating_add(now.requests.increase_since(&before.requests));
        self.errors = self
            .errors
            .saturating_add(now.errors.increase_since(&before.errors));
        self.latency.add(&Histogram::increase_per_series(
            &before.latency,
            &now.latency,
        ));
        let none = Counter::default();
        for (reason, counter) in &now.decisions {
            let then = before.decisions.get(reason).unwrap_or(&none);
            let slot = self.decisions.entry(reason.clone()).or_default();
            *slot = slot.saturating_add(counter.increase_since(then));
        }
    }

    /// The step's decisions of one reason.
    pub fn decisions_of(&self, reason: &str) -> u64 {
        self.decisions.get(reason).copied().unwrap_or(0)
    }
}

/// What the state machine knows about the step that [`Evidence::start`] cannot.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct StepPlan {
    /// The canary's weight in percent during this step.
    pub weight: f64,
    /// How many steps of the rollout are judged (both versions live, canary below 100):
    /// the rollout's `alpha` is split over them.
    pub judged_steps: usize,
}

/// Everything one step has gathered: kept in the status, so a restarted controller resumes.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Evidence {
    /// The canary's weight in percent during the step.
    pub weight: f64,
    /// Level of each of this step's sequential tests (see [`AnalysisSpec::test_alpha`]).
    pub alpha: f64,
    /// When the step's first sample was taken.
    #[schemars(with = "String")]
    pub started: Timestamp,
    /// Looks after the first.
    pub looks: u32,
    /// Bucket bound splitting fast from slow requests, fixed near stable's latency quantile
    /// before the requests it judges; `None` until stable has enough requests to place it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boundary_ms: Option<f64>,
    /// The raw sample the step started from.
    pub baseline: Snapshot,
    /// The latest raw sample: the next look's increases are taken from it.
    pub last: Snapshot,
    /// Stable's increases over the step.
    pub stable: ArmEvidence,
    /// The canary's increases over the step.
    pub canary: ArmEvidence,
    /// Whether the proxies applied the new weight.
    pub data_plane: dataplane::Progress,
    /// What the step gathered of `spec.analysis.metrics`, by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metrics: BTreeMap<String, MetricEvidence>,
}

impl Evidence {
    /// Starts a step at `snapshot`, taken right after its weight was written.
    pub fn start(snapshot: &Snapshot, spec: &AnalysisSpec, plan: StepPlan) -> Evidence {
        let mut evidence = Evidence {
            weight: plan.weight,
            alpha: spec.test_alpha(plan.judged_steps),
            started: snapshot.at,
            looks: 0,
            boundary_ms: None,
            baseline: snapshot.clone(),
            last: snapshot.clone(),
            stable: ArmEvidence::default(),
            canary: ArmEvidence::default(),
            data_plane: dataplane::Progress::new(snapshot, plan.weight, spec),
            metrics: spec
                .metrics
                .iter()
                .map(|m| {
                    let stable = snapshot.stable.metrics.get(&m.name);
                    let quantile = m.quantile.unwrap_or(spec.latency_quantile);
                    (m.name.clone(), MetricEvidence::start(m, stable, quantile))
                })
                .collect(),
        };
        // Stable's whole history so far places the boundary, before the step's requests.
        let mut history = Histogram::default();
        for histogram in snapshot.stable.latency.values() {
            history.add(histogram);
        }
        evidence.place_boundary(&history, spec);
        evidence
    }

    /// Adds a later look. A sample not later than the last one (a repeated or out-of-order
    /// read) is ignored, so a look is never counted twice.
    pub fn observe(&mut self, snapshot: &Snapshot, spec: &AnalysisSpec) {
        if snapshot.at <= self.last.at {
            return;
        }
        let canary_hash = snapshot.canary.hash_since(&self.last.canary);
        let stable_hash = snapshot.stable.hash_since(&self.last.stable);
        self.stable
            .add_increase(&self.last.stable, &snapshot.stable);
        self.canary
            .add_increase(&self.last.canary, &snapshot.canary);
        self.data_plane.observe(snapshot, canary_hash, stable_hash);
        for metric in &spec.metrics {
            let quantile = metric.quantile.unwrap_or(spec.latency_quantile);
            let name = &metric.name;
            self.metrics.entry(name.clone()).or_default().observe(
                metric,
                snapshot.at,
                quantile,
                (
                    snapshot.canary.metrics.get(name),
                    self.last.canary.metrics.get(name),
                ),
                (
                    snapshot.stable.metrics.get(name),
                    self.last.stable.metrics.get(name),
                ),
            );
        }
        self.last = snapshot.clone();
        self.looks = self.looks.saturating_add(1);
        if self.boundary_ms.is_none() {
            // Too little history at the start: place it from the step's stable requests.
            let stable = self.stable.latency.clone();
            self.place_boundary(&stable, spec);
        }
    }

    fn place_boundary(&mut self, stable: &Histogram, spec: &AnalysisSpec) {
        if stable.count >= boundary_requests(spec) {
            self.boundary_ms = stable.quantile_bound(spec.latency_quantile);
        }
    }

    /// Seconds from the step's first sample to its latest.
    pub fn elapsed_seconds(&self) -> f64 {
        (self.last.at.as_millisecond() as f64 - self.started.as_millisecond() as f64) / 1000.0
    }
}

/// Stable requests needed to place the latency boundary: the minimum evidence, and enough
/// for a handful of requests beyond the quantile.
pub fn boundary_requests(spec: &AnalysisSpec) -> u64 {
    let beyond = (1.0 / (1.0 - spec.latency_quantile)).ceil() as u64;
    spec.min_requests.max(beyond)
}

impl VersionSample {
    /// A sample of `version` from one series per counter: its requests, errors, latency
    /// buckets (upper bound, count) and `hash` decisions. Simulations and tests build their
    /// scrapes with it.
    pub fn from_totals(
        version: &str,
        requests: u64,
        errors: u64,
        buckets: &[(f64, u64)],
        hash: u64,
    ) -> Self {
        VersionSample {
            version: version.to_owned(),
            requests: Counter::single(requests),
            errors: Counter::single(errors),
            latency: BTreeMap::from([(String::new(), Histogram::from_pairs(buckets))]),
            decisions: BTreeMap::from([(HASH_REASON.to_owned(), Counter::single(hash))]),
            weights: BTreeMap::new(),
            metrics: BTreeMap::new(),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn sample(
        version: &str,
        requests: u64,
        errors: u64,
        buckets: &[(f64, u64)],
        hash: u64,
    ) -> VersionSample {
        VersionSample::from_totals(version, requests, errors, buckets, hash)
    }

    pub(crate) fn at(second: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + second).unwrap()
    }

    fn plan() -> StepPlan {
        StepPlan {
            weight: 10.0,
            judged_steps: 6,
        }
    }

    #[test]
    fn counters_increase_per_series() {
        let counter = |pairs: &[(&str, u64)]| {
            Counter(pairs.iter().map(|&(k, v)| (k.to_owned(), v)).collect())
        };
        let before = counter(&[("a", 100), ("b", 50)]);
        // b restarted: its 5 are new, a's 10 too; the sum went down, yet 15 were counted.
        assert_eq!(counter(&[("a", 110), ("b", 5)]).increase_since(&before), 15);
        // A new proxy counts whole; one gone adds nothing.
        assert_eq!(counter(&[("a", 100), ("c", 7)]).increase_since(&before), 7);
        assert_eq!(counter(&[("a", 110), ("b", 5)]).total(), 115);
        assert_eq!(Counter::default().increase_since(&before), 0);
    }

    #[test]
    fn histogram_bounds_and_counts() {
        let h = Histogram::from_pairs(&[
            (f64::INFINITY, 1000),
            (5.0, 900),
            (1.0, 500),
            (25.0, 990),
            (100.0, 999),
        ]);
        assert_eq!(h.count, 1000);
        assert_eq!(h.buckets[0].le_ms, 1.0);
        assert_eq!(h.quantile_bound(0.5), Some(1.0));
        assert_eq!(h.quantile_bound(0.9), Some(5.0));
        assert_eq!(h.quantile_bound(0.99), Some(25.0));
        assert_eq!(h.quantile_bound(0.9999), Some(100.0));
        assert_eq!(h.above(25.0), 10);
        assert_eq!(h.above(0.5), 1000);
        assert_eq!(h.above(30.0), 10);
        assert_eq!(h.bound_at_or_above(20.0), Some(25.0));
        assert_eq!(h.bound_at_or_above(200.0), None);
        assert_eq!(h.quantile_ms(0.95), Some(5.0 + 20.0 * 50.0 / 90.0));
        assert_eq!(Histogram::default().quantile_bound(0.99), None);
        assert_eq!(Histogram::default().quantile_ms(0.99), None);
        // Without an +Inf pair the largest bucket holds everything.
        assert_eq!(Histogram::from_pairs(&[(1.0, 3), (2.0, 4)]).count, 4);
    }

    #[test]
    fn histograms_add_bucket_by_bucket() {
        let mut h = Histogram::from_pairs(&[(1.0, 2), (10.0, 5), (f64::INFINITY, 6)]);
        h.add(&Histogram::from_pairs(&[
            (1.0, 1),
            (10.0, 1),
            (f64::INFINITY, 3),
        ]));
        assert_eq!(
            h,
            Histogram::from_pairs(&[(1.0, 3), (10.0, 6), (f64::INFINITY, 9)])
        );
        let mut empty = Histogram::default();
        empty.add(&h);
        assert_eq!(empty, h);
        // A bound new to one side: its count on that side is what the bound below held.
        h.add(&Histogram::from_pairs(&[(5.0, 1), (f64::INFINITY, 1)]));
        assert_eq!(
            h,
            Histogram::from_pairs(&[(1.0, 3), (5.0, 4), (10.0, 7), (f64::INFINITY, 10)])
        );
    }

    #[test]
    fn a_step_accumulates_increases_per_arm() {
        let spec = AnalysisSpec::default();
        let buckets =
            |fast: u64, total: u64| vec![(1.0, fast), (50.0, total), (f64::INFINITY, total)];
        let start = Snapshot {
            at: at(0),
            stable: sample("v1", 10_000, 10, &buckets(9_900, 10_000), 500),
            canary: sample("v2", 0, 0, &[], 0),
            unanswered: Vec::new(),
        };
        let mut evidence = Evidence::start(&start, &spec, plan());
        assert_eq!(evidence.alpha, 0.05 / 12.0);
        assert_eq!(
            evidence.boundary_ms,
            Some(1.0),
            "stable's history places it"
        );
        let look = |second, stable: (u64, u64, u64, u64), canary: (u64, u64, u64, u64)| Snapshot {
            at: at(second),
            stable: sample(
                "v1",
                stable.0,
                stable.1,
                &buckets(stable.2, stable.0),
                stable.3,
            ),
            canary: sample(
                "v2",
                canary.0,
                canary.1,
                &buckets(canary.2, canary.0),
                canary.3,
            ),
            unanswered: Vec::new(),
        };
        evidence.observe(
            &look(15, (10_900, 11, 10_790, 590), (100, 2, 90, 10)),
            &spec,
        );
        // The canary's proxy restarted: its counters start again.
        evidence.observe(&look(30, (11_800, 12, 11_680, 680), (50, 1, 45, 5)), &spec);
        // A repeated read changes nothing.
        evidence.observe(
            &look(30, (99_999, 99, 99_999, 999), (999, 9, 999, 99)),
            &spec,
        );
        assert_eq!(evidence.looks, 2);
        assert_eq!(evidence.stable.requests, 1_800);
        assert_eq!(evidence.stable.errors, 2);
        assert_eq!(evidence.stable.latency.above(1.0), 20);
        assert_eq!(evidence.stable.decisions_of(HASH_REASON), 180);
        assert_eq!(evidence.canary.requests, 150);
        assert_eq!(evidence.canary.errors, 3);
        assert_eq!(evidence.canary.latency.above(1.0), 15);
        assert_eq!(evidence.canary.latency.count, 150);
        assert_eq!(evidence.canary.decisions_of(HASH_REASON), 15);
        assert_eq!(evidence.elapsed_seconds(), 30.0);
        // What the status stores comes back whole, bucket bounds to the bit.
        let json = serde_json::to_string(&evidence).unwrap();
        let back: Evidence = serde_json::from_str(&json).unwrap();
        assert_eq!(back, evidence);
        let odd = Histogram::from_pairs(&[(0.1 + 0.2, 1), (1.0 / 3.0, 2), (2.5e-3, 3)]);
        let json = serde_json::to_string(&odd).unwrap();
        assert_eq!(serde_json::from_str::<Histogram>(&json).unwrap(), odd);
    }

    #[test]
    fn without_history_the_boundary_waits_for_stable_requests() {
        let spec = AnalysisSpec::default();
        let empty = Snapshot {
            at: at(0),
            stable: sample("v1", 0, 0, &[], 0),
            canary: sample("v2", 0, 0, &[], 0),
            unanswered: Vec::new(),
        };
        let mut evidence = Evidence::start(&empty, &spec, plan());
        assert_eq!(evidence.boundary_ms, None);
        let with = |second, stable: u64| Snapshot {
            at: at(second),
            stable: sample(
                "v1",
                stable,
                0,
                &[
                    (5.0, stable * 99 / 100),
                    (10.0, stable),
                    (f64::INFINITY, stable),
                ],
                0,
            ),
            canary: sample("v2", 0, 0, &[], 0),
            unanswered: Vec::new(),
        };
        evidence.observe(&with(15, 150), &spec);
        assert_eq!(
            evidence.boundary_ms,
            None,
            "150 < {}",
            boundary_requests(&spec)
        );
        evidence.observe(&with(30, 300), &spec);
        assert_eq!(evidence.boundary_ms, Some(5.0));
        // Once placed it stays, whatever stable does next.
        evidence.observe(&with(45, 400), &spec);
        assert_eq!(evidence.boundary_ms, Some(5.0));
    }

    /// Every metric of the spec gathers its increases look by look, as the counters do.
    #[test]
    fn metrics_gather_their_increases_per_look() {
        use crate::metric::{MetricKind, MetricSample, MetricSpec, Rule};
        let spec = AnalysisSpec {
            metrics: vec![MetricSpec {
                name: "sales".to_owned(),
                kind: MetricKind::Counter,
                query: "q".to_owned(),
                requests: None,
                quantile: None,
                sample_seconds: None,
                worse: Default::default(),
                rule: Rule {
                    ratio: Some(1.0),
                    ..Rule::default()
                },
            }],
            ..AnalysisSpec::default()
        };
        let with_sales = |second, sold: u64, visits: u64| {
            let mut snapshot = Snapshot::new(
                at(second),
                sample("v1", 0, 0, &[], 0),
                sample("v2", 0, 0, &[], 0),
            );
            for arm in [&mut snapshot.stable, &mut snapshot.canary] {
                arm.metrics.insert(
                    "sales".to_owned(),
                    MetricSample {
                        events: Counter::single(sold),
                        requests: Counter::single(visits),
                        ..MetricSample::default()
                    },
                );
            }
            snapshot
        };
        let mut evidence = Evidence::start(&with_sales(0, 10, 100), &spec, plan());
        evidence.observe(&with_sales(10, 15, 150), &spec);
        evidence.observe(&with_sales(20, 18, 200), &spec);
        let sales = &evidence.metrics["sales"];
        assert_eq!((sales.canary.events, sales.canary.requests), (8, 100));
        assert_eq!((sales.stable.events, sales.stable.requests), (8, 100));
    }
}
