//! Live per-version charts: requests per second, error rate, p99, the weight the proxies run
//! and every metric of `spec.analysis.metrics` (CPU and memory included) of stable and
//! canary, read with the analysis' own queries ([`Prometheus::snapshot`]) every [`PERIOD`]
//! and kept for the last [`POINTS`] looks. [`points`] is pure; [`Charts`] is the thin shell.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use jiff::Timestamp;
use serde::Serialize;
use serde_json::Value;

use analysis::metric::MetricSample;
use analysis::{AnalysisSpec, Histogram, MetricKind, Snapshot, VersionSample};
use api::StickyCanary;
use prometheus::Prometheus;
use runtime::metrics::rollout_ref;

/// How often Prometheus is asked.
pub const PERIOD: Duration = Duration::from_secs(5);
/// Looks kept per rollout (with [`PERIOD`], five minutes).
pub const POINTS: usize = 60;

/// One version's rates between two looks.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Point {
    /// Seconds before the latest look.
    pub ago: f64,
    /// Requests per second.
    pub rps: f64,
    /// 5xx share of them (0 to 1).
    pub error_rate: f64,
    /// p99 latency in milliseconds, when there were requests.
    pub p99_ms: Option<f64>,
    /// The weight in percent the proxies run the version with (their mean; each proxy's own
    /// in the data-plane check), when they report it.
    pub weight: Option<f64>,
    /// Each metric's value: a counter's rate between the looks, a histogram's quantile, a
    /// gauge's mean over the version's pods.
    pub metrics: BTreeMap<String, f64>,
}

/// Each version's points, by name, between consecutive `looks` (oldest first), the metrics
/// as `analysis` says.
pub fn points(looks: &[Snapshot], analysis: &AnalysisSpec) -> BTreeMap<String, Vec<Point>> {
    let mut charts: BTreeMap<String, Vec<Point>> = BTreeMap::new();
    let Some(latest) = looks.last().map(|s| s.at) else {
        return charts;
    };
    for pair in looks.windows(2) {
        let (before, after) = (&pair[0], &pair[1]);
        let seconds = after.at.duration_since(before.at).as_secs_f64();
        if seconds <= 0.0 {
            continue;
        }
        let ago = latest.duration_since(after.at).as_secs_f64();
        for (then, now) in [
            (&before.stable, &after.stable),
            (&before.canary, &after.canary),
        ] {
            if then.version != now.version {
                continue;
            }
            charts
                .entry(now.version.clone())
                .or_default()
                .push(point(then, now, seconds, ago, analysis));
        }
    }
    charts
}

fn point(
    then: &VersionSample,
    now: &VersionSample,
    seconds: f64,
    ago: f64,
    analysis: &AnalysisSpec,
) -> Point {
    let requests = now.requests.increase_since(&then.requests);
    let errors = now.errors.increase_since(&then.errors);
    let latency = Histogram::increase_per_series(&then.latency, &now.latency);
    let weight = (!now.weights.is_empty())
        .then(|| now.weights.values().sum::<f64>() / now.weights.len() as f64);
    let none = MetricSample::default();
    let metrics = analysis
        .metrics
        .iter()
        .filter_map(|metric| {
            let sample = now.metrics.get(&metric.name)?;
            let before = then.metrics.get(&metric.name).unwrap_or(&none);
            let value = match metric.kind {
                MetricKind::Counter => {
                    let total = sample.requests.increase_since(&before.requests);
                    let events = sample.events.increase_since(&before.events);
                    (total > 0).then(|| events as f64 / total as f64)
                }
                MetricKind::Histogram => {
                    Histogram::increase_per_series(&before.histograms, &sample.histograms)
                        .quantile_ms(metric.quantile.unwrap_or(analysis.latency_quantile))
                }
                MetricKind::Gauge => sample.mean(),
            }?;
            Some((metric.name.clone(), value))
        })
        .collect();
    Point {
        ago,
        rps: requests as f64 / seconds,
        error_rate: if requests == 0 {
            0.0
        } else {
            errors as f64 / requests as f64
        },
        p99_ms: latency.quantile_ms(0.99),
        weight,
        metrics,
    }
}

/// The looks of every rollout with a canary.
pub struct Charts {
    prometheus: Prometheus,
    looks: BTreeMap<String, VecDeque<Snapshot>>,
    last: Option<Timestamp>,
    cached: Value,
}

impl Charts {
    /// Charts read from `prometheus`.
    pub fn new(prometheus: Prometheus) -> Charts {
        Charts {
            prometheus,
            looks: BTreeMap::new(),
            last: None,
            cached: Value::Null,
        }
    }

    /// Looks again if [`PERIOD`] has passed; the charts by rollout id, with the last error
    /// of each rollout that could not be read.
    pub async fn update(&mut self, rollouts: &[StickyCanary], now: Timestamp) -> Value {
        let due = self
            .last
            .is_none_or(|last| now.duration_since(last).as_secs_f64() >= PERIOD.as_secs_f64());
        if !due {
            return self.cached.clone();
        }
        self.last = Some(now);
        let mut charts = serde_json::Map::new();
        for canary in rollouts {
            let id = super::view::id(canary);
            let Some(rollout) = rollout_ref(canary) else {
                self.looks.remove(&id);
                continue;
            };
            let looks = self.looks.entry(id.clone()).or_default();
            let chart = match self
                .prometheus
                .snapshot(&canary.spec.analysis, &rollout, now)
                .await
            {
                Ok(snapshot) => {
                    if looks
                        .back()
                        .is_some_and(|last| last.canary.version != snapshot.canary.version)
                    {
                        looks.clear();
                    }
                    looks.push_back(snapshot);
                    while looks.len() > POINTS {
                        looks.pop_front();
                    }
                    let looks: Vec<Snapshot> = looks.iter().cloned().collect();
                    serde_json::json!({
                        "versions": points(&looks, &canary.spec.analysis),
                        "metrics": canary.spec.analysis.metrics.iter().map(|m| &m.name).collect::<Vec<_>>(),
                    })
                }
                Err(err) => serde_json::json!({ "error": err.to_string() }),
            };
            charts.insert(id, chart);
        }
        self.cached = Value::Object(charts);
        self.cached.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use analysis::{Bucket, Counter};

    fn sample(version: &str, requests: u64, errors: u64, fast: u64) -> VersionSample {
        VersionSample {
            version: version.to_owned(),
            requests: Counter::single(requests),
            errors: Counter::single(errors),
            latency: BTreeMap::from([(
                String::new(),
                Histogram {
                    buckets: vec![
                        Bucket {
                            le_ms: 10.0,
                            count: fast,
                        },
                        Bucket {
                            le_ms: 100.0,
                            count: requests,
                        },
                    ],
                    count: requests,
                },
            )]),
            decisions: BTreeMap::new(),
            weights: BTreeMap::new(),
            metrics: BTreeMap::new(),
        }
    }

    fn look(at: i64, stable: (u64, u64, u64), canary: (u64, u64, u64)) -> Snapshot {
        Snapshot {
            at: Timestamp::from_second(at).unwrap(),
            stable: sample("v1", stable.0, stable.1, stable.2),
            canary: sample("v2", canary.0, canary.1, canary.2),
            unanswered: Vec::new(),
        }
    }

    #[test]
    fn rates_between_looks_per_version() {
        let looks = [
            look(100, (1000, 0, 1000), (0, 0, 0)),
            look(105, (1500, 5, 1500), (50, 10, 0)),
            look(110, (2000, 5, 2000), (100, 10, 50)),
        ];
        let charts = points(&looks, &AnalysisSpec::default());
        let stable = &charts["v1"];
        assert_eq!(stable.len(), 2);
        assert_eq!((stable[0].ago, stable[0].rps), (5.0, 100.0));
        assert_eq!(stable[0].error_rate, 0.01);
        assert_eq!(stable[1].error_rate, 0.0);
        assert!(stable[1].p99_ms.unwrap() <= 10.0);
        let canary = &charts["v2"];
        assert_eq!((canary[0].rps, canary[0].error_rate), (10.0, 0.2));
        // Every request of the first interval was slow, none of the second.
        assert!(canary[0].p99_ms.unwrap() > 10.0);
        assert!(canary[1].p99_ms.unwrap() <= 10.0);
    }

    #[test]
    fn no_points_without_two_looks_or_time_between() {
        assert!(points(&[], &AnalysisSpec::default()).is_empty());
        assert!(points(&[look(1, (1, 0, 1), (1, 0, 1))], &AnalysisSpec::default()).is_empty());
        let same = [look(1, (1, 0, 1), (1, 0, 1)), look(1, (2, 0, 2), (2, 0, 2))];
        assert!(points(&same, &AnalysisSpec::default()).is_empty());
    }

    #[test]
    fn a_counter_reset_is_no_negative_rate() {
        let looks = [
            look(0, (1000, 10, 1000), (10, 0, 10)),
            look(10, (100, 0, 100), (20, 0, 20)),
        ];
        let stable = &points(&looks, &AnalysisSpec::default())["v1"];
        assert_eq!(stable[0].rps, 10.0);
    }

    /// The weight the proxies run and every metric, charted per version: a counter's rate
    /// between looks, a gauge's mean over the pods.
    #[test]
    fn weights_and_metrics_per_version() {
        use analysis::metric::MetricSample;
        use analysis::{Counter, MetricSpec, Rule};
        let metric = |name: &str, kind| MetricSpec {
            name: name.to_owned(),
            kind,
            query: "q".to_owned(),
            requests: None,
            quantile: None,
            sample_seconds: None,
            worse: Default::default(),
            rule: Rule {
                ratio: Some(1.5),
                ..Rule::default()
            },
        };
        let analysis = AnalysisSpec {
            metrics: vec![
                metric("conversions", MetricKind::Counter),
                metric("cpu", MetricKind::Gauge),
            ],
            ..AnalysisSpec::default()
        };
        let with = |mut snapshot: Snapshot, bought: u64, visits: u64, cpu: f64| {
            for arm in [&mut snapshot.stable, &mut snapshot.canary] {
                arm.metrics.insert(
                    "conversions".to_owned(),
                    MetricSample {
                        events: Counter::single(bought),
                        requests: Counter::single(visits),
                        ..MetricSample::default()
                    },
                );
                arm.metrics.insert(
                    "cpu".to_owned(),
                    MetricSample {
                        values: BTreeMap::from([
                            ("a".to_owned(), cpu),
                            ("b".to_owned(), cpu + 0.5),
                        ]),
                        ..MetricSample::default()
                    },
                );
            }
            snapshot.with_applied("p1", 20.0).with_applied("p2", 20.0)
        };
        let looks = [
            with(look(0, (0, 0, 0), (0, 0, 0)), 10, 100, 1.0),
            with(look(10, (10, 0, 10), (10, 0, 10)), 30, 300, 2.0),
        ];
        let charts = points(&looks, &analysis);
        let canary = &charts["v2"][0];
        assert_eq!(canary.weight, Some(20.0));
        assert_eq!(charts["v1"][0].weight, Some(80.0));
        assert_eq!(canary.metrics["conversions"], 0.1);
        assert_eq!(canary.metrics["cpu"], 2.25);
    }
}
