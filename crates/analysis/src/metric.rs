//! Metrics the user adds (`spec.analysis.metrics[]`), each judged at every look with a test
//! that stays valid however often it is looked at:
//!
//! - a **counter** of events over requests: the count test of the built-in errors check, its
//!   null moved to the rule's bound (a ratio moves the canary's expected share of the events;
//!   a difference is the ratio it means at stable's measured rate), or the guard's test of an
//!   absolute rate;
//! - a **histogram** at a quantile: the canary's requests beyond a bucket bound (stable's
//!   quantile times the ratio, plus the difference, or the limit) must stay within the
//!   quantile's tail, the guard's test;
//! - a **gauge** sampled per pod (CPU, memory): a sign test over looks. Under "no worse",
//!   each new sample puts the canary's mean beyond its bound with probability at most ½; the
//!   guard's test of that rate fails the canary once it is shown above ½. See
//!   docs/analysis.md for why, and its false-alarm rate under autocorrelated samples.

use std::collections::BTreeMap;

use jiff::Timestamp;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::check::Outcome;
use super::evidence::{Counter, Histogram};
use super::sequential;

/// Samples a gauge needs before it can pass.
pub const MIN_GAUGE_LOOKS: u64 = 3;
/// Seconds between two samples of a gauge counted by its sign test, unless the metric says.
pub const DEFAULT_SAMPLE_SECONDS: u64 = 15;

/// One metric of `spec.analysis.metrics[]`.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MetricSpec {
    /// Its name in verdicts, charts and messages: lower-case letters, digits and `-`.
    pub name: String,
    /// What kind of series the query returns.
    pub kind: MetricKind,
    /// PromQL template for one version, with the placeholders of `queries`: a raw counter of
    /// events (`counter`), buckets by `le` (`histogram`), or one series per pod (`gauge`).
    pub query: String,
    /// `counter` only: the requests the events are counted over (a raw counter template);
    /// the rollout's requests query when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests: Option<String>,
    /// `histogram` only: the quantile judged, in (0, 1); `latencyQuantile` when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quantile: Option<f64>,
    /// `gauge` only: seconds between two samples its test counts (15 when unset). Samples
    /// closer than the gauge's own memory are not independent: see docs/analysis.md.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sample_seconds: Option<u64>,
    /// Which way is worse (`higher` by default; `histogram` only `higher`).
    #[serde(default)]
    pub worse: Worse,
    /// The bound the canary must stay within.
    pub rule: Rule,
}

/// What kind of series a metric's query returns.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum MetricKind {
    /// A raw counter of events, judged as a rate over the requests.
    Counter,
    /// A histogram's buckets (by `le`), judged at a quantile.
    Histogram,
    /// A gauge, one series per pod of the version, judged by its mean at each sample.
    Gauge,
}

/// Which way of a metric is worse.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub enum Worse {
    /// Higher values are worse (errors, latency, CPU).
    #[default]
    Higher,
    /// Lower values are worse (conversions, cache hits).
    Lower,
}

/// The bound of a metric: exactly one of the three. Canary against stable: `ratio` (the
/// canary may be this many times worse, ≥ 1) or `difference` (this much worse, in the
/// metric's unit); or an absolute `limit` the canary must not be worse than.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct Rule {
    /// At most this many times worse than stable (1 = no worse).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ratio: Option<f64>,
    /// At most this much worse than stable, in the metric's unit (a rate for counters,
    /// milliseconds or the histogram's unit, the gauge's unit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub difference: Option<f64>,
    /// Never worse than this, whatever stable does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<f64>,
}

/// A rule with its one bound read.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Bound {
    Ratio(f64),
    Difference(f64),
    Limit(f64),
}

impl Rule {
    fn bound(&self) -> Option<Bound> {
        match (self.ratio, self.difference, self.limit) {
            (Some(r), None, None) => Some(Bound::Ratio(r)),
            (None, Some(d), None) => Some(Bound::Difference(d)),
            (None, None, Some(l)) => Some(Bound::Limit(l)),
            _ => None,
        }
    }
}

impl std::fmt::Display for Bound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Bound::Ratio(r) => write!(f, "ratio {r}"),
            Bound::Difference(d) => write!(f, "difference {d}"),
            Bound::Limit(l) => write!(f, "limit {l}"),
        }
    }
}

/// Refuses metrics no analysis can use, naming the field as the spec spells it.
pub fn validate(metrics: &[MetricSpec]) -> Result<(), String> {
    for (i, metric) in metrics.iter().enumerate() {
        let field = |name: &str, problem: String| {
            Err(format!("spec.analysis.metrics[{i}].{name}: {problem}"))
        };
        let name = &metric.name;
        let valid_name = !name.is_empty()
            && name.len() <= 63
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !valid_name {
            return field(
                "name",
                format!("{name:?} is not 1 to 63 lower-case letters, digits and '-'"),
            );
        }
        if metrics[..i].iter().any(|m| &m.name == name) {
            return field("name", format!("{name:?} is named twice"));
        }
        if metric.query.trim().is_empty() {
            return field("query", "is empty".to_owned());
        }
        if metric.requests.is_some() && metric.kind != MetricKind::Counter {
            return field(
                "requests",
                "only a counter is counted over requests".to_owned(),
            );
        }
        if let Some(q) = metric.quantile {
            if metric.kind != MetricKind::Histogram {
                return field("quantile", "only a histogram has quantiles".to_owned());
            }
            if !(q > 0.0 && q < 1.0) {
                return field(
                    "quantile",
                    format!("{q} is not between 0 and 1 (exclusive)"),
                );
            }
        }
        if let Some(seconds) = metric.sample_seconds {
            if metric.kind != MetricKind::Gauge {
                return field("sampleSeconds", "only a gauge is sampled".to_owned());
            }
            if seconds == 0 {
                return field("sampleSeconds", "must be at least 1".to_owned());
            }
        }
        if metric.kind == MetricKind::Histogram && metric.worse == Worse::Lower {
            return field(
                "worse",
                "a histogram is judged by its upper tail: only `higher`".to_owned(),
            );
        }
        let Some(bound) = metric.rule.bound() else {
            return field(
                "rule",
                "exactly one of ratio, difference and limit".to_owned(),
            );
        };
        match bound {
            Bound::Ratio(r) if !(r.is_finite() && r >= 1.0) => {
                return field("rule.ratio", format!("{r} is not a finite number ≥ 1"));
            }
            Bound::Difference(d) if !(d.is_finite() && d >= 0.0) => {
                return field("rule.difference", format!("{d} is not a finite number ≥ 0"));
            }
            Bound::Limit(l) if !l.is_finite() => {
                return field("rule.limit", format!("{l} is not a finite number"));
            }
            Bound::Limit(l) if metric.kind == MetricKind::Counter && !(l > 0.0 && l < 1.0) => {
                return field(
                    "rule.limit",
                    format!("{l} is not a rate between 0 and 1 (exclusive)"),
                );
            }
            _ => {}
        }
    }
    Ok(())
}

/// One version's raw readings of a metric at one look: per series, as the other counters.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct MetricSample {
    /// `counter`: the events.
    #[serde(default, skip_serializing_if = "Counter::is_empty")]
    pub events: Counter,
    /// `counter`: the requests they are counted over.
    #[serde(default, skip_serializing_if = "Counter::is_empty")]
    pub requests: Counter,
    /// `histogram`: the buckets, per series.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub histograms: BTreeMap<String, Histogram>,
    /// `gauge`: the value per series (pod).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub values: BTreeMap<String, f64>,
}

impl MetricSample {
    /// The mean of a gauge's series, if it has any.
    pub fn mean(&self) -> Option<f64> {
        let values: Vec<f64> = self
            .values
            .values()
            .copied()
            .filter(|v| v.is_finite())
            .collect();
        (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
    }
}

/// One arm's readings of a metric over a step.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct MetricArm {
    /// `counter`: events during the step.
    #[serde(default)]
    pub events: u64,
    /// `counter`: requests during the step.
    #[serde(default)]
    pub requests: u64,
    /// `histogram`: the step's observations.
    #[serde(default, skip_serializing_if = "is_empty_histogram")]
    pub histogram: Histogram,
    /// `gauge`: the mean at the latest sample counted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last: Option<f64>,
}

fn is_empty_histogram(h: &Histogram) -> bool {
    h.count == 0 && h.buckets.is_empty()
}

/// What a step has gathered of one metric.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct MetricEvidence {
    /// The canary's readings.
    pub canary: MetricArm,
    /// Stable's readings.
    pub stable: MetricArm,
    /// `histogram`: stable's quantile bound, placed from its history before the step's
    /// requests (or from the step's once it has enough).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<f64>,
    /// `gauge`: when the last sample counted was read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub sampled: Option<Timestamp>,
    /// `gauge`: samples counted.
    #[serde(default)]
    pub looks: u64,
    /// `gauge`: those with the canary beyond its bound.
    #[serde(default)]
    pub beyond: u64,
    /// `gauge`: running sums of the samples' distance beyond the bound (the canary's mean
    /// minus the worst it may be, turned so that positive is worse), for its autocorrelation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub distances: Option<Distances>,
}

/// Running sums of a gauge's distances beyond its bound: enough to estimate how much
/// consecutive samples remember of each other.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct Distances {
    /// Σ d.
    pub sum: f64,
    /// Σ d².
    pub squares: f64,
    /// Σ dₜ·dₜ₋₁.
    pub lagged: f64,
    /// The latest d.
    pub last: f64,
}

impl Distances {
    /// An upper estimate of the lag-1 autocorrelation of `n` distances, in [0, 0.99]: the
    /// estimate, corrected for its small-sample bias (`(1 + 3ρ)/n` low) and raised by two of
    /// its standard errors (`1/√n`), since an estimate too low lets correlated samples pass
    /// for independent ones. Without variation the samples are one value, as far as can be
    /// told: 0.
    fn correlation(&self, n: u64) -> f64 {
        if n < 3 {
            return 0.99;
        }
        let n = n as f64;
        let mean = self.sum / n;
        let variance = self.squares / n - mean * mean;
        if variance.is_nan() || variance <= f64::EPSILON * self.squares.max(1.0) {
            return 0.0;
        }
        let covariance = self.lagged / (n - 1.0) - mean * mean;
        let estimate = (covariance / variance).clamp(0.0, 1.0);
        (estimate + (1.0 + 3.0 * estimate) / n + 2.0 / n.sqrt()).min(0.99)
    }
}

impl MetricEvidence {
    /// The evidence of a step starting at these readings of both arms.
    pub fn start(metric: &MetricSpec, stable: Option<&MetricSample>, quantile: f64) -> Self {
        let mut evidence = MetricEvidence::default();
        if metric.kind == MetricKind::Histogram {
            let mut history = Histogram::default();
            for histogram in stable.into_iter().flat_map(|s| s.histograms.values()) {
                history.add(histogram);
            }
            evidence.place_reference(&history, quantile);
        }
        evidence
    }

    fn place_reference(&mut self, stable: &Histogram, quantile: f64) {
        let tail = 1.0 / (1.0 - quantile);
        if self.reference.is_none() && stable.count as f64 >= tail * 10.0 {
            self.reference = stable.quantile_bound(quantile);
        }
    }

    /// Adds the look at `at`: both arms' readings now and at the previous look.
    pub fn observe(
        &mut self,
        metric: &MetricSpec,
        at: Timestamp,
        quantile: f64,
        (canary, canary_before): (Option<&MetricSample>, Option<&MetricSample>),
        (stable, stable_before): (Option<&MetricSample>, Option<&MetricSample>),
    ) {
        let none = MetricSample::default();
        for (arm, now, before) in [
            (&mut self.canary, canary, canary_before),
            (&mut self.stable, stable, stable_before),
        ] {
            let (now, before) = (now.unwrap_or(&none), before.unwrap_or(&none));
            match metric.kind {
                MetricKind::Counter => {
                    arm.events = arm
                        .events
                        .saturating_add(now.events.increase_since(&before.events));
                    arm.requests = arm
                        .requests
                        .saturating_add(now.requests.increase_since(&before.requests));
                }
                MetricKind::Histogram => arm.histogram.add(&Histogram::increase_per_series(
                    &before.histograms,
                    &now.histograms,
                )),
                MetricKind::Gauge => {}
            }
        }
        match metric.kind {
            MetricKind::Histogram => {
                let stable = self.stable.histogram.clone();
                self.place_reference(&stable, quantile);
            }
            MetricKind::Gauge => self.sample(metric, at, canary, stable),
            MetricKind::Counter => {}
        }
    }

    /// Counts a gauge's sample once `sampleSeconds` passed since the last one counted: looks
    /// come every few seconds, and samples closer than the gauge's memory are one sample
    /// counted twice, which the test's level does not allow for.
    fn sample(
        &mut self,
        metric: &MetricSpec,
        at: Timestamp,
        canary: Option<&MetricSample>,
        stable: Option<&MetricSample>,
    ) {
        let (Some(c), Some(s)) = (
            canary.and_then(MetricSample::mean),
            stable.and_then(MetricSample::mean),
        ) else {
            return;
        };
        let spacing = metric.sample_seconds.unwrap_or(DEFAULT_SAMPLE_SECONDS) as i64;
        if self
            .sampled
            .is_some_and(|last| at.as_second() - last.as_second() < spacing)
        {
            return;
        }
        self.sampled = Some(at);
        self.canary.last = Some(c);
        self.stable.last = Some(s);
        self.looks = self.looks.saturating_add(1);
        let Some(bound) = metric.rule.bound() else {
            return;
        };
        let edge = allowed(metric.worse, bound, s);
        if beyond(metric.worse, c, edge) {
            self.beyond = self.beyond.saturating_add(1);
        }
        let distance = match metric.worse {
            Worse::Higher => c - edge,
            Worse::Lower => edge - c,
        };
        let sums = self.distances.get_or_insert_with(Distances::default);
        if self.looks > 1 {
            sums.lagged += distance * sums.last;
        }
        sums.sum += distance;
        sums.squares += distance * distance;
        sums.last = distance;
    }

    /// The gauge's samples and those beyond the bound as independent samples count: scaled
    /// by `(1 − ρ)/(1 + ρ)` for the measured autocorrelation ρ of the distances, the effective
    /// sample size of an AR(1) process's mean.
    fn effective_samples(&self) -> (u64, u64) {
        let rho = self.distances.map_or(0.0, |d| d.correlation(self.looks));
        let factor = (1.0 - rho) / (1.0 + rho);
        let scale = |n: u64| (n as f64 * factor).round() as u64;
        (scale(self.beyond), scale(self.looks))
    }
}

/// The worst value `bound` allows the canary next to stable's `stable`.
fn allowed(worse: Worse, bound: Bound, stable: f64) -> f64 {
    match (worse, bound) {
        (Worse::Higher, Bound::Ratio(r)) => stable * r,
        (Worse::Lower, Bound::Ratio(r)) => stable / r,
        (Worse::Higher, Bound::Difference(d)) => stable + d,
        (Worse::Lower, Bound::Difference(d)) => stable - d,
        (_, Bound::Limit(l)) => l,
    }
}

fn beyond(worse: Worse, value: f64, allowed: f64) -> bool {
    match worse {
        Worse::Higher => value > allowed,
        Worse::Lower => value < allowed,
    }
}

/// One metric's result in a verdict: the Toss-style summary line of it.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MetricCheck {
    /// The metric's name.
    pub name: String,
    /// Its kind.
    pub kind: MetricKind,
    /// The canary's value in the step: the rate, the quantile, the latest mean.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary: Option<f64>,
    /// Stable's value, likewise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stable: Option<f64>,
    /// The test statistic O.
    pub statistic: f64,
    /// 1/α.
    pub threshold: f64,
    /// What the test concluded.
    pub outcome: Outcome,
    /// The metric in words, with its numbers.
    pub reason: String,
}

fn rate(events: u64, total: u64) -> Option<f64> {
    (total > 0).then(|| events as f64 / total as f64)
}

/// `0.1234` as `0.123`, `1234.5` as `1234`.
fn number(x: f64) -> String {
    if x.abs() >= 100.0 {
        format!("{x:.0}")
    } else {
        format!("{x:.3}")
    }
}

fn shown(x: Option<f64>) -> String {
    x.map_or_else(|| "-".to_owned(), number)
}

/// Judges one metric's evidence at level `alpha`, with `k` the count test's concentration and
/// `quantile` the histogram's.
pub fn check(
    metric: &MetricSpec,
    evidence: &MetricEvidence,
    alpha: f64,
    k: f64,
    quantile: f64,
) -> MetricCheck {
    let threshold = 1.0 / alpha;
    let name = &metric.name;
    let worse = match metric.worse {
        Worse::Higher => "higher",
        Worse::Lower => "lower",
    };
    let result = |canary, stable, test: Option<sequential::Test>, outcome, reason: String| {
        let statistic = test.map_or(1.0, |t| t.statistic());
        MetricCheck {
            name: name.clone(),
            kind: metric.kind,
            canary,
            stable,
            statistic,
            threshold,
            outcome,
            reason,
        }
    };
    let Some(bound) = metric.rule.bound() else {
        return result(
            None,
            None,
            None,
            Outcome::Inconclusive,
            "no rule".to_owned(),
        );
    };
    let judged = |test: sequential::Test, numbers: String| {
        let statistic = test.statistic();
        if test.rejects {
            (
                Outcome::Fail,
                format!(
                    "{numbers}: statistic {} ≥ {} = 1/α, the canary is worse beyond {bound}",
                    number(statistic),
                    number(threshold)
                ),
            )
        } else {
            (
                Outcome::Pass,
                format!(
                    "{numbers}: statistic {} < {} = 1/α ({worse} is worse, {bound})",
                    number(statistic),
                    number(threshold)
                ),
            )
        }
    };
    let (c, s) = (&evidence.canary, &evidence.stable);
    match metric.kind {
        MetricKind::Counter => {
            let (canary, stable) = (rate(c.events, c.requests), rate(s.events, s.requests));
            let numbers = format!(
                "canary {} ({}/{}) vs stable {} ({}/{})",
                shown(canary),
                c.events,
                c.requests,
                shown(stable),
                s.events,
                s.requests
            );
            if c.requests == 0 || (s.requests == 0 && !matches!(bound, Bound::Limit(_))) {
                return result(
                    canary,
                    stable,
                    None,
                    Outcome::Inconclusive,
                    format!("{numbers}: waiting for requests of both versions"),
                );
            }
            let test = counter_test(
                metric.worse,
                bound,
                alpha,
                k,
                (c.events, c.requests),
                (s.events, s.requests),
            );
            let (outcome, reason) = judged(test, numbers);
            result(canary, stable, Some(test), outcome, reason)
        }
        MetricKind::Histogram => {
            let (canary, stable) = (
                c.histogram.quantile_ms(quantile),
                s.histogram.quantile_ms(quantile),
            );
            let numbers = format!(
                "p{} canary {} vs stable {}",
                quantile * 100.0,
                shown(canary),
                shown(stable)
            );
            let edge = match bound {
                Bound::Limit(l) => Some(l),
                _ => evidence
                    .reference
                    .map(|reference| allowed(Worse::Higher, bound, reference)),
            };
            let Some(edge) = edge else {
                return result(
                    canary,
                    stable,
                    None,
                    Outcome::Inconclusive,
                    format!(
                        "{numbers}: waiting for stable's requests to place its p{}",
                        quantile * 100.0
                    ),
                );
            };
            let Some(boundary) = c.histogram.bound_at_or_above(edge) else {
                return result(
                    canary,
                    stable,
                    None,
                    Outcome::Pass,
                    format!(
                        "{numbers}: no bucket at or above {}: nothing can be beyond it",
                        number(edge)
                    ),
                );
            };
            let above = c.histogram.above(boundary);
            let test = sequential::rate_above(alpha, 1.0 - quantile, above, c.histogram.count);
            let (outcome, reason) = judged(
                test,
                format!(
                    "{numbers}; canary beyond {boundary}: {above}/{}",
                    c.histogram.count
                ),
            );
            result(canary, stable, Some(test), outcome, reason)
        }
        MetricKind::Gauge => {
            let numbers = format!(
                "canary {} vs stable {}, beyond the bound at {} of {} samples",
                shown(c.last),
                shown(s.last),
                evidence.beyond,
                evidence.looks
            );
            let (beyond, samples) = evidence.effective_samples();
            let test = sequential::sign_test(alpha, beyond, samples);
            if !test.rejects && evidence.looks < MIN_GAUGE_LOOKS {
                return result(
                    c.last,
                    s.last,
                    Some(test),
                    Outcome::Inconclusive,
                    format!("{numbers}: waiting for {MIN_GAUGE_LOOKS} samples"),
                );
            }
            let (outcome, reason) = judged(test, numbers);
            result(c.last, s.last, Some(test), outcome, reason)
        }
    }
}

/// The count test of a counter against its bound: the canary's events against stable's with
/// the null share moved by the bound's ratio (a difference is the ratio it means at stable's
/// measured rate); an absolute limit is the guard's test of the canary alone. When lower is
/// worse the arms trade places: stable's share of the events too high is the canary's too low.
fn counter_test(
    worse: Worse,
    bound: Bound,
    alpha: f64,
    k: f64,
    (canary_events, canary_requests): (u64, u64),
    (stable_events, stable_requests): (u64, u64),
) -> sequential::Test {
    let stable_rate = rate(stable_events, stable_requests).unwrap_or(0.0);
    let ratio = match (worse, bound) {
        (Worse::Higher, Bound::Limit(l)) => {
            return sequential::rate_above(alpha, l, canary_events, canary_requests)
        }
        (Worse::Lower, Bound::Limit(l)) => {
            return sequential::rate_below(alpha, l, canary_events, canary_requests)
        }
        (_, Bound::Ratio(r)) => r,
        // A difference is the ratio it means at stable's rate.
        (Worse::Higher, Bound::Difference(d)) if stable_rate > 0.0 => {
            (stable_rate + d) / stable_rate
        }
        // Stable without events: the difference is the canary's own limit.
        (Worse::Higher, Bound::Difference(d)) => {
            return sequential::rate_above(alpha, d, canary_events, canary_requests)
        }
        (Worse::Lower, Bound::Difference(d)) if stable_rate > d => stable_rate / (stable_rate - d),
        // Stable's rate is within the difference of 0: the canary cannot be worse by more.
        (Worse::Lower, Bound::Difference(_)) => f64::INFINITY,
    };
    let share = canary_requests as f64 / (canary_requests + stable_requests) as f64;
    match worse {
        // Under the null the canary's rate is `ratio` times stable's at most.
        Worse::Higher => {
            let moved = ratio * share / (ratio * share + 1.0 - share);
            sequential::canary_worse(k, alpha, moved, canary_events, stable_events)
        }
        // Under the null it is stable's divided by `ratio` at least: stable's share of the
        // events is at most what that leaves it.
        Worse::Lower => {
            let canary = share / ratio;
            let moved = (1.0 - share) / (canary + 1.0 - share);
            sequential::canary_worse(k, alpha, moved, stable_events, canary_events)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(kind: MetricKind, worse: Worse, rule: Rule) -> MetricSpec {
        MetricSpec {
            name: "m".to_owned(),
            kind,
            query: "q".to_owned(),
            requests: None,
            quantile: None,
            sample_seconds: None,
            worse,
            rule,
        }
    }

    fn ratio(r: f64) -> Rule {
        Rule {
            ratio: Some(r),
            ..Rule::default()
        }
    }
    fn difference(d: f64) -> Rule {
        Rule {
            difference: Some(d),
            ..Rule::default()
        }
    }
    fn limit(l: f64) -> Rule {
        Rule {
            limit: Some(l),
            ..Rule::default()
        }
    }

    const ALPHA: f64 = 0.05 / 18.0;

    #[test]
    fn bad_metrics_are_refused_naming_the_field() {
        let ok = spec(MetricKind::Counter, Worse::Higher, ratio(1.5));
        assert_eq!(validate(std::slice::from_ref(&ok)), Ok(()));
        type Edit = fn(&mut MetricSpec);
        let cases: Vec<(Edit, &str)> = vec![
            (
                |m| m.name = "CPU".to_owned(),
                "metrics[0].name: \"CPU\" is not",
            ),
            (|m| m.query = " ".to_owned(), "metrics[0].query: is empty"),
            (|m| m.rule = Rule::default(), "metrics[0].rule: exactly one"),
            (|m| m.rule.limit = Some(0.1), "metrics[0].rule: exactly one"),
            (
                |m| m.rule = ratio(0.5),
                "metrics[0].rule.ratio: 0.5 is not a finite number ≥ 1",
            ),
            (
                |m| m.rule = difference(-1.0),
                "metrics[0].rule.difference: -1",
            ),
            (
                |m| m.rule = limit(2.0),
                "metrics[0].rule.limit: 2 is not a rate",
            ),
            (
                |m| m.quantile = Some(0.9),
                "metrics[0].quantile: only a histogram",
            ),
            (|m| m.kind = MetricKind::Gauge, ""),
            (
                |m| {
                    m.kind = MetricKind::Histogram;
                    m.worse = Worse::Lower;
                },
                "metrics[0].worse: a histogram is judged by its upper tail",
            ),
            (
                |m| {
                    m.kind = MetricKind::Histogram;
                    m.quantile = Some(1.0);
                },
                "metrics[0].quantile: 1 is not between 0 and 1",
            ),
            (
                |m| {
                    m.kind = MetricKind::Gauge;
                    m.requests = Some("r".to_owned());
                },
                "metrics[0].requests: only a counter",
            ),
        ];
        for (edit, words) in cases {
            let mut metric = ok.clone();
            edit(&mut metric);
            match validate(&[metric.clone()]) {
                Ok(()) => assert!(words.is_empty(), "{metric:?} passed"),
                Err(why) => assert!(
                    !words.is_empty() && why.contains(words),
                    "{metric:?}: {why}"
                ),
            }
        }
        let twice = validate(&[ok.clone(), ok]).unwrap_err();
        assert!(
            twice.starts_with("spec.analysis.metrics[1].name: \"m\" is named twice"),
            "{twice}"
        );
    }

    fn counted(canary: (u64, u64), stable: (u64, u64)) -> MetricEvidence {
        MetricEvidence {
            canary: MetricArm {
                events: canary.0,
                requests: canary.1,
                ..MetricArm::default()
            },
            stable: MetricArm {
                events: stable.0,
                requests: stable.1,
                ..MetricArm::default()
            },
            ..MetricEvidence::default()
        }
    }

    #[test]
    fn counters_against_their_bound() {
        use MetricKind::Counter;
        // (worse, rule, canary (events, requests), stable, outcome)
        let cases = [
            // 5 % against 0.1 %: worse by any small ratio, not by a ratio of 100.
            (
                Worse::Higher,
                ratio(1.0),
                (50, 1000),
                (19, 19000),
                Outcome::Fail,
            ),
            (
                Worse::Higher,
                ratio(2.0),
                (50, 1000),
                (19, 19000),
                Outcome::Fail,
            ),
            (
                Worse::Higher,
                ratio(100.0),
                (50, 1000),
                (19, 19000),
                Outcome::Pass,
            ),
            (
                Worse::Higher,
                ratio(1.0),
                (1, 1000),
                (19, 19000),
                Outcome::Pass,
            ),
            // A difference of 10 points allows 5 % next to 0.1 %; of 1 point it does not.
            (
                Worse::Higher,
                difference(0.1),
                (50, 1000),
                (19, 19000),
                Outcome::Pass,
            ),
            (
                Worse::Higher,
                difference(0.01),
                (50, 1000),
                (19, 19000),
                Outcome::Fail,
            ),
            // Stable without events: the difference is the rate itself.
            (
                Worse::Higher,
                difference(0.01),
                (50, 1000),
                (0, 19000),
                Outcome::Fail,
            ),
            (
                Worse::Higher,
                limit(0.01),
                (50, 1000),
                (0, 0),
                Outcome::Fail,
            ),
            (Worse::Higher, limit(0.2), (50, 1000), (0, 0), Outcome::Pass),
            // Conversions: 1 % next to stable's 10 % is worse; 9.5 % is not.
            (
                Worse::Lower,
                ratio(1.0),
                (10, 1000),
                (1900, 19000),
                Outcome::Fail,
            ),
            (
                Worse::Lower,
                ratio(1.0),
                (95, 1000),
                (1900, 19000),
                Outcome::Pass,
            ),
            (
                Worse::Lower,
                ratio(20.0),
                (10, 1000),
                (1900, 19000),
                Outcome::Pass,
            ),
            (
                Worse::Lower,
                difference(0.02),
                (10, 1000),
                (1900, 19000),
                Outcome::Fail,
            ),
            (Worse::Lower, limit(0.05), (10, 1000), (0, 0), Outcome::Fail),
            (Worse::Lower, limit(0.05), (95, 1000), (0, 0), Outcome::Pass),
            // Nothing to compare yet.
            (
                Worse::Higher,
                ratio(1.0),
                (0, 0),
                (19, 19000),
                Outcome::Inconclusive,
            ),
        ];
        for (worse, rule, canary, stable, outcome) in cases {
            let metric = spec(Counter, worse, rule);
            let check = check(&metric, &counted(canary, stable), ALPHA, 100.0, 0.99);
            assert_eq!(
                check.outcome, outcome,
                "{worse:?} {rule:?} {canary:?} {stable:?}: {}",
                check.reason
            );
            assert!(check.reason.starts_with("canary "), "{}", check.reason);
        }
    }

    /// A histogram at p90 with buckets 10, 50, 100, 500 ms: stable's p90 is at 50 ms.
    #[test]
    fn histograms_against_their_bound() {
        let stable = Histogram::from_pairs(&[
            (10.0, 500),
            (50.0, 950),
            (100.0, 990),
            (500.0, 1000),
            (f64::INFINITY, 1000),
        ]);
        let sample = MetricSample {
            histograms: BTreeMap::from([(String::new(), stable.clone())]),
            ..MetricSample::default()
        };
        let canary = |slow: u64| {
            Histogram::from_pairs(&[
                (10.0, 500 - slow),
                (50.0, 950 - slow),
                (100.0, 990 - slow / 2),
                (500.0, 1000),
                (f64::INFINITY, 1000),
            ])
        };
        let cases = [
            (ratio(1.0), 0, Outcome::Pass),
            (ratio(1.0), 400, Outcome::Fail),
            // Twice stable's p90 is 100 ms: 200 of 1000 beyond it is too many, 5 is not.
            (ratio(2.0), 400, Outcome::Fail),
            (ratio(2.0), 10, Outcome::Pass),
            (difference(50.0), 10, Outcome::Pass),
            (limit(10.0), 0, Outcome::Fail),
            (limit(500.0), 400, Outcome::Pass),
        ];
        for (rule, slow, outcome) in cases {
            let mut metric = spec(MetricKind::Histogram, Worse::Higher, rule);
            metric.quantile = Some(0.9);
            let mut evidence = MetricEvidence::start(&metric, Some(&sample), 0.9);
            assert_eq!(evidence.reference, Some(50.0));
            evidence.canary.histogram = canary(slow);
            evidence.stable.histogram = stable.clone();
            let check = check(&metric, &evidence, ALPHA, 100.0, 0.9);
            assert_eq!(check.outcome, outcome, "{rule:?} {slow}: {}", check.reason);
        }
    }

    fn gauge(value: f64) -> MetricSample {
        MetricSample {
            values: BTreeMap::from([
                ("pod=\"a\"".to_owned(), value),
                ("pod=\"b\"".to_owned(), value + 0.2),
            ]),
            ..MetricSample::default()
        }
    }

    /// Samples of a gauge, one per `sampleSeconds`; looks in between do not count.
    #[test]
    fn gauges_are_a_sign_test_over_spaced_samples() {
        let mut metric = spec(MetricKind::Gauge, Worse::Higher, ratio(1.2));
        metric.sample_seconds = Some(10);
        let mut evidence = MetricEvidence::start(&metric, None, 0.99);
        let mut second = 0;
        let mut observe = |evidence: &mut MetricEvidence, canary: f64, stable: f64, after: i64| {
            second += after;
            let at = Timestamp::from_second(1_800_000_000 + second).unwrap();
            evidence.observe(
                &metric,
                at,
                0.99,
                (Some(&gauge(canary)), None),
                (Some(&gauge(stable)), None),
            );
        };
        observe(&mut evidence, 1.0, 1.0, 0);
        observe(&mut evidence, 1.0, 1.0, 5);
        assert_eq!(
            (evidence.looks, evidence.beyond),
            (1, 0),
            "5 s apart: one sample"
        );
        let first = check(&metric, &evidence, ALPHA, 100.0, 0.99);
        assert_eq!(first.outcome, Outcome::Inconclusive, "{}", first.reason);
        for i in 0..4 {
            observe(&mut evidence, 1.0 + i as f64 / 100.0, 1.0, 10);
        }
        let calm = check(&metric, &evidence, ALPHA, 100.0, 0.99);
        assert_eq!(calm.outcome, Outcome::Pass, "{}", calm.reason);
        assert_eq!(calm.canary, Some(1.13));
        // A canary using three times stable's from the step's start is caught at its 11th
        // sample: the mixture then reaches 1/α = 360.
        let mut evidence = MetricEvidence::start(&metric, None, 0.99);
        let mut caught = None;
        for i in 0..40 {
            observe(&mut evidence, 3.0, 1.0, 10);
            if check(&metric, &evidence, ALPHA, 100.0, 0.99).outcome == Outcome::Fail {
                caught = Some(i + 1);
                break;
            }
        }
        assert_eq!(caught, Some(11));
        let failed = check(&metric, &evidence, ALPHA, 100.0, 0.99);
        assert!(
            failed
                .reason
                .contains("the canary is worse beyond ratio 1.2"),
            "{}",
            failed.reason
        );
    }
}
