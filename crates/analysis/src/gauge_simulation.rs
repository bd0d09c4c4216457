//! Simulated gauges (CPU, memory per pod) through the real [`MetricEvidence`] and
//! [`metric::check`]: the sign test's false rollbacks when consecutive samples are correlated,
//! and how many samples it takes to catch a canary that uses more. The table in
//! docs/analysis.md is checked to be what this code generates.

use jiff::Timestamp;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};

use super::metric::{self, MetricEvidence, MetricKind, MetricSample, MetricSpec, Rule, Worse};
use super::simulation::check_doc_table;
use super::{judged_steps, AnalysisSpec, Outcome};
use api::DEFAULT_STEPS;

/// Samples a step holds: ten minutes at the default 15 s.
const SAMPLES_PER_STEP: u64 = 40;
/// Rollouts per cell.
const RUNS: u64 = 400;
/// Correlation of consecutive samples of one version (an AR(1) process).
const CORRELATIONS: [f64; 4] = [0.0, 0.5, 0.9, 0.99];
/// The gauge's noise around its mean: 10 % of it.
const NOISE: f64 = 0.1;

/// One version's gauge: mean 1 plus AR(1) noise of standard deviation [`NOISE`].
struct Gauge {
    mean: f64,
    deviation: f64,
}

impl Gauge {
    fn next(&mut self, rng: &mut ChaCha8Rng, correlation: f64) -> f64 {
        let innovation = Normal::new(0.0, NOISE * (1.0 - correlation * correlation).sqrt())
            .expect("a positive deviation")
            .sample(rng);
        self.deviation = correlation * self.deviation + innovation;
        self.mean + self.deviation
    }
}

fn sample(value: f64) -> MetricSample {
    MetricSample {
        values: [("pod".to_owned(), value)].into(),
        ..MetricSample::default()
    }
}

/// Samples a step of a rollout takes to fail a canary whose gauge has `canary_mean` (stable's
/// is 1), judged by `ratio`; `None` when no step fails it. Every default judged step runs
/// [`SAMPLES_PER_STEP`] samples, the versions' processes going on across steps.
fn rollout(seed: u64, correlation: f64, canary_mean: f64, ratio: f64) -> Option<u64> {
    let metric = MetricSpec {
        name: "cpu".to_owned(),
        kind: MetricKind::Gauge,
        query: "q".to_owned(),
        requests: None,
        quantile: None,
        sample_seconds: None,
        worse: Worse::Higher,
        rule: Rule {
            ratio: Some(ratio),
            ..Rule::default()
        },
    };
    let spec = AnalysisSpec {
        metrics: vec![metric.clone()],
        ..AnalysisSpec::default()
    };
    let steps = judged_steps(&DEFAULT_STEPS);
    let alpha = spec.test_alpha(steps);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let noise = Normal::new(0.0, NOISE).expect("a positive deviation");
    let mut stable = Gauge {
        mean: 1.0,
        deviation: noise.sample(&mut rng),
    };
    let mut canary = Gauge {
        mean: canary_mean,
        deviation: noise.sample(&mut rng),
    };
    let mut second = 0i64;
    for _ in 0..steps {
        let mut evidence = MetricEvidence::start(&metric, None, spec.latency_quantile);
        for n in 1..=SAMPLES_PER_STEP {
            second += 15;
            let at = Timestamp::from_second(1_800_000_000 + second).expect("in range");
            let (s, c) = (
                sample(stable.next(&mut rng, correlation)),
                sample(canary.next(&mut rng, correlation)),
            );
            evidence.observe(
                &metric,
                at,
                spec.latency_quantile,
                (Some(&c), None),
                (Some(&s), None),
            );
            let check = metric::check(&metric, &evidence, alpha, spec.k, spec.latency_quantile);
            if check.outcome == Outcome::Fail {
                return Some(n);
            }
        }
    }
    None
}

fn share(failed: u64) -> String {
    format!("{:.1} %", 100.0 * failed as f64 / RUNS as f64)
}

/// The table as docs/analysis.md holds it.
fn gauge_table() -> String {
    let mut table = String::from(
        "| correlation of consecutive samples | A/A rolled back, ratio 1 | A/A rolled back, ratio 1.2 | canary +50 %, ratio 1.2: samples to catch (median) |\n|---|---|---|---|\n",
    );
    for (row, &correlation) in CORRELATIONS.iter().enumerate() {
        let seed = (row as u64) << 20;
        let failed = |ratio| {
            (0..RUNS)
                .filter(|&run| rollout(seed + run, correlation, 1.0, ratio).is_some())
                .count() as u64
        };
        let mut caught: Vec<Option<u64>> = (0..RUNS / 4)
            .map(|run| rollout(seed + (1 << 16) + run, correlation, 1.5, 1.2))
            .collect();
        caught.sort_by_key(|n| n.unwrap_or(u64::MAX));
        let median =
            caught[caught.len() / 2].map_or_else(|| "not caught".to_owned(), |n| n.to_string());
        table.push_str(&format!(
            "| {correlation} | {} | {} | {median} |\n",
            share(failed(1.0)),
            share(failed(1.2))
        ));
    }
    table
}

#[test]
fn the_gauge_table_in_the_docs_is_what_the_code_generates() {
    let table = gauge_table();
    // Independent samples keep the level: at most α of A/A rollouts rolled back.
    let first = table.lines().nth(2).expect("a row per correlation");
    let strict: f64 = first
        .split('|')
        .nth(2)
        .and_then(|c| c.trim().trim_end_matches(" %").parse().ok())
        .expect("a share");
    assert!(strict <= 100.0 * AnalysisSpec::default().alpha, "{table}");
    check_doc_table("gauge-table", &table);
}
