//! The thin shell between Prometheus and the analysis: instant queries of raw counters at a
//! time, turned into a [`Snapshot`]; and the check, before anything is written, that every
//! template is one Prometheus accepts and reads metrics it has.
//!
//! It reads and never judges (that is `analysis`) or writes a rollout (`runtime`).

#![deny(missing_docs)]

pub mod queries;

use std::collections::BTreeMap;
use std::time::Duration;

use jiff::Timestamp;
use serde::Deserialize;

use analysis::metric::MetricSample;
use analysis::{AnalysisSpec, Counter, Histogram, MetricKind, MetricSpec, Snapshot, VersionSample};
pub use queries::{Field, RolloutRef};

/// Why Prometheus could not be asked or answered.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// What the user gave cannot work: a bad address, a template Prometheus rejects, a
    /// metric it does not have.
    #[error("{0}")]
    Invalid(String),
    /// Prometheus could not be reached or its answer could not be read.
    #[error("{0}")]
    Runtime(String),
}

/// A failed [`Prometheus::snapshot`] as the rollout's look takes it, its words unchanged.
impl From<Error> for analysis::LookError {
    fn from(err: Error) -> Self {
        match err {
            Error::Invalid(why) => analysis::LookError::Rejected(why),
            Error::Runtime(why) => analysis::LookError::Unreachable(why),
        }
    }
}

/// Longest a query may take, Prometheus's own evaluation included.
const QUERY_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest to wait for a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Largest answer read: a million series of the default queries is about 200 MiB, far beyond
/// one rollout's; more is a wrong template or a hostile server, never held in memory.
pub const MAX_BODY: usize = 32 << 20;
/// Most series one answer may hold (one per proxy and label combination).
pub const MAX_SERIES: usize = 100_000;
/// Largest counter value taken: 2^53, above which an `f64` (what Prometheus stores and sends)
/// no longer holds every integer. Sums of values are checked too: one that does not fit a
/// `u64` is refused like the value.
pub const MAX_COUNT: f64 = 9_007_199_254_740_992.0;

/// A Prometheus server's HTTP API.
#[derive(Debug, Clone)]
pub struct Prometheus {
    client: reqwest::Client,
    query_url: reqwest::Url,
    targets_url: reqwest::Url,
}

/// One series of an instant vector.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// Its value.
    pub value: f64,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Response {
    status: String,
    #[serde(default)]
    data: Option<Data>,
    #[serde(default)]
    error_type: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Data {
    result_type: String,
    result: serde_json::Value,
}

#[derive(Deserialize)]
struct Sample {
    metric: BTreeMap<String, String>,
    value: (f64, String),
}

/// Why a query gave nothing usable.
#[derive(Debug, Clone, PartialEq)]
pub enum QueryError {
    /// Prometheus refused the query itself (`bad_data`): the template is wrong.
    Rejected(String),
    /// Anything else: unreachable, timeout, server error, a result of the wrong type.
    Failed(String),
}

impl Prometheus {
    /// A client of the Prometheus at `url` (`http://host:9090`, with or without a path prefix).
    pub fn new(url: &str) -> Result<Prometheus, Error> {
        let base = reqwest::Url::parse(url)
            .map_err(|err| Error::Invalid(format!("--prometheus {url:?}: {err}")))?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(Error::Invalid(format!(
                "--prometheus {url:?}: not an http(s) URL"
            )));
        }
        let api = |endpoint: &str| {
            let mut url = base.clone();
            url.set_path(&format!(
                "{}/api/v1/{endpoint}",
                base.path().trim_end_matches('/')
            ));
            url
        };
        let (query_url, targets_url) = (api("query"), api("targets"));
        let client = reqwest::Client::builder()
            .timeout(QUERY_TIMEOUT)
            .connect_timeout(CONNECT_TIMEOUT)
            .build()
            .map_err(|err| Error::Runtime(format!("HTTP client for Prometheus: {err}")))?;
        Ok(Prometheus {
            client,
            query_url,
            targets_url,
        })
    }

    /// The longest scrape interval among Prometheus's active targets (`None` without any):
    /// a step shorter than it would judge looks that saw no new sample.
    pub async fn scrape_interval(&self) -> Result<Option<Duration>, Error> {
        let failed = |err: &dyn std::fmt::Display| {
            Error::Runtime(format!("Prometheus at {}: {err}", self.targets_url))
        };
        let response = self
            .client
            .get(self.targets_url.clone())
            .query(&[("state", "active")])
            .send()
            .await
            .map_err(|err| failed(&err))?;
        let body = read_capped(response, MAX_BODY)
            .await
            .map_err(|err| failed(&err))?;
        longest_scrape_interval(&body).map_err(|err| failed(&err))
    }

    /// Evaluates `query` at `at`: the series of the instant vector it returns.
    pub async fn query(&self, query: &str, at: Timestamp) -> Result<Vec<Series>, Error> {
        self.instant(query, at).await.map_err(|err| match err {
            QueryError::Rejected(why) => {
                Error::Invalid(format!("Prometheus rejects `{query}`: {why}"))
            }
            QueryError::Failed(why) => Error::Runtime(why),
        })
    }

    async fn instant(&self, query: &str, at: Timestamp) -> Result<Vec<Series>, QueryError> {
        let failed = |what: &str, err: &dyn std::fmt::Display| {
            QueryError::Failed(format!("Prometheus at {}: {what}: {err}", self.query_url))
        };
        let time = format!("{:.3}", at.as_millisecond() as f64 / 1000.0);
        let timeout = format!("{}s", QUERY_TIMEOUT.as_secs());
        let response = self
            .client
            .get(self.query_url.clone())
            .query(&[("query", query), ("time", &time), ("timeout", &timeout)])
            .send()
            .await
            .map_err(|err| failed("query failed", &err))?;
        let status = response.status();
        let body = read_capped(response, MAX_BODY)
            .await
            .map_err(|err| failed("answer unread", &err))?;
        parse_answer(&body).map_err(|err| match err {
            QueryError::Failed(why) if why.starts_with("no API response") => {
                QueryError::Failed(format!(
                    "Prometheus at {}: answered {status} with {why}",
                    self.query_url
                ))
            }
            QueryError::Failed(why) => {
                QueryError::Failed(format!("Prometheus at {}: {why}", self.query_url))
            }
            rejected => rejected,
        })
    }

    /// Runs the template of `field` for `version`; a rejected template names the field.
    async fn field(
        &self,
        spec: &AnalysisSpec,
        rollout: &RolloutRef,
        field: Field,
        version: &str,
        at: Timestamp,
    ) -> Result<Vec<Series>, Error> {
        let template = queries::template(spec, field);
        self.ask(&field.path(), &template, spec, rollout, version, at)
            .await
    }

    /// Both versions' raw counters at `at`.
    pub async fn snapshot(
        &self,
        spec: &AnalysisSpec,
        rollout: &RolloutRef,
        at: Timestamp,
    ) -> Result<Snapshot, Error> {
        let (stable, canary) = futures::try_join!(
            self.version(spec, rollout, &rollout.stable, true, at),
            self.version(spec, rollout, &rollout.canary, false, at)
        )?;
        Ok(Snapshot {
            at,
            stable: stable.0,
            canary: canary.0,
            unanswered: [stable.1, canary.1].concat(),
        })
    }

    /// A version's sample, and what its queries that must answer and returned no series
    /// say ([`unanswered`]). Stable serves before the canary and every proxy reports the
    /// filter's series from its start: those must answer. The canary's requests and metrics
    /// of requests may not yet, at a small weight; a gauge of its pods must.
    async fn version(
        &self,
        spec: &AnalysisSpec,
        rollout: &RolloutRef,
        version: &str,
        stable: bool,
        at: Timestamp,
    ) -> Result<(VersionSample, Vec<String>), Error> {
        let answers = futures::try_join!(
            self.field(spec, rollout, Field::Requests, version, at),
            self.field(spec, rollout, Field::Errors, version, at),
            self.field(spec, rollout, Field::LatencyBuckets, version, at),
            self.field(spec, rollout, Field::Decisions, version, at),
            self.field(spec, rollout, Field::Weights, version, at),
        )?;
        let (requests, errors, latency, decisions, weights) = answers;
        let mut silent: Vec<String> = [
            (Field::Requests, &requests),
            (Field::Decisions, &decisions),
            (Field::Weights, &weights),
        ]
        .into_iter()
        .filter(|(field, series)| series.is_empty() && (stable || *field != Field::Requests))
        .map(|(field, _)| unanswered(spec, rollout, field, version))
        .collect();
        let mut sample = sample(version, [requests, errors, latency, decisions, weights])?;
        for (index, metric) in spec.metrics.iter().enumerate() {
            let asked = queries::metric_queries(spec, index, metric);
            let mut answers = Vec::with_capacity(asked.len());
            for query in &asked {
                answers.push(
                    self.ask(&query.path, &query.template, spec, rollout, version, at)
                        .await?,
                );
            }
            let quiet = metric_must_answer(metric, stable);
            if let Some(query) = quiet.filter(|&i| answers[i].is_empty()).map(|i| &asked[i]) {
                silent.push(format!(
                    "{} for {version} (`{}`): {}",
                    query.path,
                    queries::render(&query.template, spec.provider, rollout, version),
                    queries::METRIC_WHEN_EMPTY
                ));
            }
            sample.metrics.insert(
                metric.name.clone(),
                metric_sample(metric, &asked, &answers)?,
            );
        }
        Ok((sample, silent))
    }

    /// The series of `template` at `path` for `version`, its placeholders filled.
    async fn ask(
        &self,
        path: &str,
        template: &str,
        spec: &AnalysisSpec,
        rollout: &RolloutRef,
        version: &str,
        at: Timestamp,
    ) -> Result<Vec<Series>, Error> {
        let query = queries::render(template, spec.provider, rollout, version);
        self.instant(&query, at).await.map_err(|err| match err {
            QueryError::Rejected(why) => {
                Error::Invalid(format!("{path}: Prometheus rejects `{query}`: {why}"))
            }
            QueryError::Failed(why) => Error::Runtime(format!("{path} ({query}): {why}")),
        })
    }

    /// Refuses, naming the field, a template Prometheus rejects, one that reads a metric
    /// Prometheus has no series of, a latency template without `le` or a decisions template
    /// without `sticky_reason` labels, and a requests, decisions or weights template that
    /// finds nothing of stable (which serves traffic, and runs in every proxy's filter, before
    /// any canary does). Nothing is written before this passes.
    pub async fn validate_queries(
        &self,
        spec: &AnalysisSpec,
        rollout: &RolloutRef,
        at: Timestamp,
    ) -> Result<(), Error> {
        spec.validate().map_err(Error::Invalid)?;
        for field in Field::ALL {
            // Syntax first: a rejected template says nothing about its metrics.
            let stable = self
                .field(spec, rollout, field, &rollout.stable, at)
                .await?;
            let canary = self
                .field(spec, rollout, field, &rollout.canary, at)
                .await?;
            // The names of the query Prometheus just took (placeholders filled for stable).
            let query = queries::render(
                &queries::template(spec, field),
                spec.provider,
                rollout,
                &rollout.stable,
            );
            self.known_metrics(&field.path(), &query, at).await?;
            for series in [&stable, &canary] {
                match field {
                    Field::Requests | Field::Errors => drop(counter(field, series)?),
                    Field::LatencyBuckets => drop(histograms(series)?),
                    Field::Decisions => drop(by_reason(series)?),
                    Field::Weights => drop(applied_weights(series)?),
                }
            }
            if field.must_answer() && stable.is_empty() {
                return Err(Error::Invalid(format!(
                    "{}: no series for the stable version {} (`{query}`): {}",
                    field.path(),
                    rollout.stable,
                    field.when_empty()
                )));
            }
        }
        for (index, metric) in spec.metrics.iter().enumerate() {
            let asked = queries::metric_queries(spec, index, metric);
            for (version, stable) in [(&rollout.stable, true), (&rollout.canary, false)] {
                let mut answers = Vec::with_capacity(asked.len());
                for query in &asked {
                    let series = self
                        .ask(&query.path, &query.template, spec, rollout, version, at)
                        .await?;
                    // The names are the same for both versions: read them once.
                    if stable {
                        let rendered =
                            queries::render(&query.template, spec.provider, rollout, version);
                        self.known_metrics(&query.path, &rendered, at).await?;
                    }
                    answers.push(series);
                }
                metric_sample(metric, &asked, &answers)?;
                if let Some(i) = metric_must_answer(metric, stable).filter(|_| stable) {
                    if answers[i].is_empty() {
                        return Err(Error::Invalid(format!(
                            "{}: no series for the stable version {version} (`{}`): {}",
                            asked[i].path,
                            queries::render(&asked[i].template, spec.provider, rollout, version),
                            queries::METRIC_WHEN_EMPTY
                        )));
                    }
                }
            }
        }
        Ok(())
    }

    /// Refuses a query that reads a metric Prometheus has no series of (a typo, or nothing
    /// scrapes it yet). Prometheus is the judge of syntax: a query it took that the parser
    /// cannot read (PromQL newer than the parser) only goes without this check.
    async fn known_metrics(&self, path: &str, query: &str, at: Timestamp) -> Result<(), Error> {
        for name in queries::metric_names(query).unwrap_or_default() {
            let known = self
                .query(&format!("group({{__name__={name:?}}})"), at)
                .await?;
            if known.is_empty() {
                return Err(Error::Invalid(format!(
                    "{path}: Prometheus has no series of metric `{name}` (a typo, or nothing \
                     scrapes it yet)"
                )));
            }
        }
        Ok(())
    }
}

/// The body of `response`, refused beyond `limit` bytes (read in chunks, never whole).
async fn read_capped(mut response: reqwest::Response, limit: usize) -> Result<Vec<u8>, String> {
    if response.content_length().is_some_and(|n| n > limit as u64) {
        return Err(format!("longer than {limit} bytes"));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|err| err.to_string())? {
        if body.len() + chunk.len() > limit {
            return Err(format!("longer than {limit} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Reads one answer of Prometheus's instant query API (`/api/v1/query`) from its bytes: the
/// series of its instant vector, or why there are none. Pure, and public for the fuzz
/// targets: any bytes give an answer or an error, never a panic.
pub fn parse_answer(body: &[u8]) -> Result<Vec<Series>, QueryError> {
    let failed =
        |what: &str, err: &dyn std::fmt::Display| QueryError::Failed(format!("{what}: {err}"));
    let body: Response =
        serde_json::from_slice(body).map_err(|err| failed("no API response", &err))?;
    if body.status != "success" {
        let why = body.error.unwrap_or_default();
        return Err(match body.error_type.as_deref() {
            Some("bad_data") => QueryError::Rejected(why),
            other => failed(&format!("error {}", other.unwrap_or("unknown")), &why),
        });
    }
    let data = body
        .data
        .ok_or_else(|| failed("a success without data", &"?"))?;
    if data.result_type != "vector" {
        return Err(QueryError::Rejected(format!(
            "it returns a {}, not an instant vector of counters",
            data.result_type
        )));
    }
    let samples: Vec<Sample> =
        serde_json::from_value(data.result).map_err(|err| failed("unreadable vector", &err))?;
    if samples.len() > MAX_SERIES {
        return Err(failed(
            "too many series",
            &format!("{} (at most {MAX_SERIES})", samples.len()),
        ));
    }
    samples
        .into_iter()
        .map(|sample| {
            // Prometheus writes "NaN", "+Inf" and "-Inf"; Rust reads them, [`count`] refuses them.
            let value: f64 = sample
                .value
                .1
                .trim()
                .parse()
                .map_err(|err| failed("unreadable sample value", &err))?;
            Ok(Series {
                labels: sample.metric,
                value,
            })
        })
        .collect()
}

/// One version's sample from the bytes of its answers, in [`Field::ALL`]'s order (requests,
/// errors, latency buckets, decisions, weights), read as [`Prometheus::snapshot`] reads them.
/// Pure, and public for the fuzz targets (feed two into [`analysis::Evidence`] to reach the
/// verdict).
pub fn version_sample(version: &str, answers: [&[u8]; 5]) -> Result<VersionSample, Error> {
    let mut series: [Vec<Series>; 5] = Default::default();
    for ((slot, field), body) in series.iter_mut().zip(Field::ALL).zip(answers) {
        *slot = parse_answer(body).map_err(|err| match err {
            QueryError::Rejected(why) | QueryError::Failed(why) => {
                Error::Invalid(format!("{}: {why}", field.path()))
            }
        })?;
    }
    sample(version, series)
}

/// One version's sample from its series, in [`Field::ALL`]'s order.
fn sample(version: &str, series: [Vec<Series>; 5]) -> Result<VersionSample, Error> {
    let [requests, errors, latency, decisions, weights] = series;
    Ok(VersionSample {
        version: version.to_owned(),
        requests: counter(Field::Requests, &requests)?,
        errors: counter(Field::Errors, &errors)?,
        latency: histograms(&latency)?,
        decisions: by_reason(&decisions)?,
        weights: applied_weights(&weights)?,
        metrics: BTreeMap::new(),
    })
}

/// Which of a metric's queries ([`queries::metric_queries`]) must return series of the
/// version (`stable` or the canary) for it to be judged: a counter's requests and a
/// histogram of stable's (the canary's may have none yet), a gauge of every version's pods.
fn metric_must_answer(metric: &MetricSpec, stable: bool) -> Option<usize> {
    match metric.kind {
        MetricKind::Counter => stable.then_some(1),
        MetricKind::Histogram => stable.then_some(0),
        MetricKind::Gauge => Some(0),
    }
}

/// A metric's readings from the answers to its queries ([`queries::metric_queries`]).
fn metric_sample(
    metric: &MetricSpec,
    asked: &[queries::MetricQuery],
    answers: &[Vec<Series>],
) -> Result<MetricSample, Error> {
    let own = (&asked[0].path, &answers[0]);
    Ok(match metric.kind {
        MetricKind::Counter => MetricSample {
            events: counter_at(own.0, own.1)?,
            requests: counter_at(&asked[1].path, &answers[1])?,
            ..MetricSample::default()
        },
        MetricKind::Histogram => MetricSample {
            histograms: histograms_at(own.0, own.1)?,
            ..MetricSample::default()
        },
        MetricKind::Gauge => MetricSample {
            values: gauge_at(own.0, own.1)?,
            ..MetricSample::default()
        },
    })
}

/// What a query that must answer and returned no series says: which, for which version,
/// the query itself, and what usually causes it.
fn unanswered(spec: &AnalysisSpec, rollout: &RolloutRef, field: Field, version: &str) -> String {
    let query = queries::render(
        &queries::template(spec, field),
        spec.provider,
        rollout,
        version,
    );
    format!(
        "{} for {version} (`{query}`): {}",
        field.path(),
        field.when_empty()
    )
}

/// The longest scrape interval in the body of a `/api/v1/targets` answer (`None` without any
/// target). Public and taking bytes for the fuzz targets, as [`parse_answer`].
pub fn longest_scrape_interval(body: &[u8]) -> Result<Option<Duration>, String> {
    let body: serde_json::Value = serde_json::from_slice(body).map_err(|err| err.to_string())?;
    let targets = body["data"]["activeTargets"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mut longest = None;
    for target in &targets {
        let text = target["scrapeInterval"].as_str().unwrap_or_default();
        let interval =
            parse_duration(text).ok_or_else(|| format!("unreadable scrapeInterval {text:?}"))?;
        longest = longest.max(Some(interval));
    }
    Ok(longest)
}

/// A Prometheus duration (`15s`, `1m30s`, `500ms`, `1h`).
fn parse_duration(text: &str) -> Option<Duration> {
    let mut total = Duration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit())?;
        let (number, tail) = rest.split_at(digits);
        let number: u64 = number.parse().ok()?;
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        let seconds = match unit {
            "ms" => {
                total = total.checked_add(Duration::from_millis(number))?;
                rest = tail;
                continue;
            }
            "s" => 1,
            "m" => 60,
            "h" => 3600,
            "d" => 86_400,
            "w" => 604_800,
            "y" => 31_536_000,
            _ => return None,
        };
        total = total.checked_add(Duration::from_secs(number.checked_mul(seconds)?))?;
        rest = tail;
    }
    (!text.is_empty()).then_some(total)
}

/// A raw counter value as an integer; refuses what no counter holds (negative, fractional
/// beyond rounding, not finite), which is what `rate()` or `increase()` return, and values
/// beyond [`MAX_COUNT`] (no proxy counts that far; the arithmetic after stays exact).
fn count(path: &str, series: &Series) -> Result<u64, Error> {
    let value = series.value;
    if !value.is_finite() || value < 0.0 || (value - value.round()).abs() > 1e-6 * value.max(1.0) {
        return Err(Error::Invalid(format!(
            "{path}: {value} is not a raw counter (the template must return cumulative counts, \
             not rate() or increase())"
        )));
    }
    if value > MAX_COUNT {
        return Err(Error::Invalid(format!(
            "{path}: {value} is beyond any counter (at most 2^53)"
        )));
    }
    // Finite, in [0, 2^53]: the cast is exact.
    Ok(value.round() as u64)
}

/// `total + value`, or the error of a sum no counter reaches.
fn add(path: &str, total: u64, value: u64) -> Result<u64, Error> {
    total
        .checked_add(value)
        .ok_or_else(|| Error::Invalid(format!("{path}: the series add up beyond any counter")))
}

/// The series' identity: its labels but the ones the analysis groups by.
fn series_key(labels: &BTreeMap<String, String>) -> String {
    labels
        .iter()
        .filter(|(name, _)| !matches!(name.as_str(), "__name__" | "le" | "sticky_reason"))
        .map(|(name, value)| format!("{name}={value:?}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// The `field`'s counter from its series, one slot per series identity; a value that is not
/// a whole, finite, non-negative count is refused naming the field.
pub fn counter(field: Field, series: &[Series]) -> Result<Counter, Error> {
    counter_at(&field.path(), series)
}

/// [`counter`] of the template at `path`.
fn counter_at(path: &str, series: &[Series]) -> Result<Counter, Error> {
    let mut counter = Counter::default();
    for s in series {
        let slot = counter.0.entry(series_key(&s.labels)).or_default();
        *slot = add(path, *slot, count(path, s)?)?;
    }
    Ok(counter)
}

/// The latency histograms from their `le` bucket series, one per series identity.
pub fn histograms(series: &[Series]) -> Result<BTreeMap<String, Histogram>, Error> {
    histograms_at(&Field::LatencyBuckets.path(), series)
}

/// [`histograms`] of the template at `path`.
fn histograms_at(path: &str, series: &[Series]) -> Result<BTreeMap<String, Histogram>, Error> {
    let mut pairs: BTreeMap<String, Vec<(f64, u64)>> = BTreeMap::new();
    for s in series {
        let le = s.labels.get("le").ok_or_else(|| {
            Error::Invalid(format!(
                "{path}: a series without an `le` label: the template must return histogram buckets"
            ))
        })?;
        let le: f64 = le
            .parse()
            .ok()
            .filter(|le: &f64| !le.is_nan())
            .ok_or_else(|| Error::Invalid(format!("{path}: `le` label {le:?} is not a number")))?;
        pairs
            .entry(series_key(&s.labels))
            .or_default()
            .push((le, count(path, s)?));
    }
    Ok(pairs
        .into_iter()
        .map(|(key, pairs)| (key, Histogram::from_pairs(&pairs)))
        .collect())
}

/// Largest weight gauge value: 100 % in basis points.
const FULL_WEIGHT: f64 = 10_000.0;

/// The weight each proxy runs a version with, in percent, from the filter's gauges (basis
/// points), by the series' labels but the version's and the rollout's, so that a proxy's
/// gauges of both versions share a key.
pub fn applied_weights(series: &[Series]) -> Result<BTreeMap<String, f64>, Error> {
    let field = Field::Weights;
    let mut weights = BTreeMap::new();
    for s in series {
        if !(0.0..=FULL_WEIGHT).contains(&s.value) {
            return Err(Error::Invalid(format!(
                "{}: {} is not a weight in basis points (0 to 10000)",
                field.path(),
                s.value
            )));
        }
        let proxy = s
            .labels
            .iter()
            .filter(|(name, _)| {
                !matches!(
                    name.as_str(),
                    "__name__" | "sticky_version" | "sticky_rollout"
                )
            })
            .map(|(name, value)| format!("{name}={value:?}"))
            .collect::<Vec<_>>()
            .join(",");
        weights.insert(proxy, s.value / 100.0);
    }
    Ok(weights)
}

/// A gauge's value per series; a value that is no finite number is refused naming `path`.
fn gauge_at(path: &str, series: &[Series]) -> Result<BTreeMap<String, f64>, Error> {
    series
        .iter()
        .map(|s| {
            if s.value.is_finite() {
                Ok((series_key(&s.labels), s.value))
            } else {
                Err(Error::Invalid(format!(
                    "{path}: {} is not a gauge's value",
                    s.value
                )))
            }
        })
        .collect()
}

/// The decision counters by `sticky_reason`.
pub fn by_reason(series: &[Series]) -> Result<BTreeMap<String, Counter>, Error> {
    let field = &Field::Decisions.path();
    let mut reasons: BTreeMap<String, Counter> = BTreeMap::new();
    for s in series {
        let reason = s.labels.get("sticky_reason").ok_or_else(|| {
            Error::Invalid(format!("{field}: a series without a `sticky_reason` label"))
        })?;
        let slot = reasons
            .entry(reason.clone())
            .or_default()
            .0
            .entry(series_key(&s.labels))
            .or_default();
        *slot = add(field, *slot, count(field, s)?)?;
    }
    Ok(reasons)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(labels: &[(&str, &str)], value: f64) -> Series {
        Series {
            labels: labels
                .iter()
                .map(|&(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
            value,
        }
    }

    /// A proxy's gauges of both versions share its key, whatever their version and rollout
    /// labels; a value no weight can be is refused naming the field.
    #[test]
    fn applied_weights_are_keyed_by_proxy() {
        let of = |version: &str, instance: &str, value: f64| {
            series(
                &[
                    ("__name__", "sticky_canary_weight_basis_points"),
                    ("sticky_rollout", "prod/shop"),
                    ("sticky_version", version),
                    ("instance", instance),
                ],
                value,
            )
        };
        let stable =
            applied_weights(&[of("v1", "a:15090", 9500.0), of("v1", "b:15090", 8000.0)]).unwrap();
        let canary =
            applied_weights(&[of("v2", "a:15090", 500.0), of("v2", "b:15090", 2000.0)]).unwrap();
        assert_eq!(
            stable.keys().collect::<Vec<_>>(),
            canary.keys().collect::<Vec<_>>()
        );
        assert_eq!(canary[r#"instance="a:15090""#], 5.0);
        assert_eq!(stable[r#"instance="b:15090""#], 80.0);
        for bad in [-1.0, 10_001.0, f64::NAN, f64::INFINITY] {
            let why = applied_weights(&[of("v2", "a", bad)])
                .unwrap_err()
                .to_string();
            assert!(why.starts_with("spec.analysis.queries.weights: "), "{why}");
        }
    }

    #[test]
    fn series_become_counters_per_series() {
        let got = counter(
            Field::Requests,
            &[
                series(&[("__name__", "x"), ("instance", "a")], 10.0),
                series(&[("instance", "b")], 5.0),
            ],
        )
        .unwrap();
        assert_eq!(got.total(), 15);
        assert_eq!(
            got.0.keys().collect::<Vec<_>>(),
            [r#"instance="a""#, r#"instance="b""#]
        );
        for bad in [0.5, -1.0, f64::NAN, f64::INFINITY] {
            let err = counter(Field::Errors, &[series(&[], bad)]).unwrap_err();
            assert!(
                err.to_string()
                    .starts_with("spec.analysis.queries.errors: "),
                "{err}"
            );
            assert!(matches!(err, Error::Invalid(_)), "{err}");
        }
        assert_eq!(
            counter(Field::Requests, &[series(&[], 1.23456789e9)])
                .unwrap()
                .total(),
            1_234_567_890
        );
    }

    #[test]
    fn buckets_become_histograms_per_series() {
        let got = histograms(&[
            series(&[("le", "+Inf"), ("pod", "a")], 10.0),
            series(&[("le", "5"), ("pod", "a")], 8.0),
            series(&[("le", "0.5"), ("pod", "a")], 2.0),
            series(&[("le", "+Inf"), ("pod", "b")], 1.0),
        ])
        .unwrap();
        assert_eq!(
            got[r#"pod="a""#],
            Histogram::from_pairs(&[(0.5, 2), (5.0, 8), (f64::INFINITY, 10)])
        );
        assert_eq!(got[r#"pod="b""#].count, 1);
        let err = histograms(&[series(&[], 1.0)]).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("spec.analysis.queries.latencyBuckets: "),
            "{err}"
        );
    }

    #[test]
    fn decisions_group_by_reason() {
        let got = by_reason(&[
            series(&[("sticky_reason", "hash"), ("pod", "a")], 3.0),
            series(&[("sticky_reason", "hash"), ("pod", "b")], 4.0),
            series(&[("sticky_reason", "cookie"), ("pod", "a")], 9.0),
        ])
        .unwrap();
        assert_eq!(got["hash"].total(), 7);
        assert_eq!(got["cookie"].total(), 9);
        let err = by_reason(&[series(&[("pod", "a")], 1.0)]).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("spec.analysis.queries.decisions: "),
            "{err}"
        );
    }

    #[test]
    fn durations() {
        let cases = [
            ("15s", Some(15_000)),
            ("1m30s", Some(90_000)),
            ("500ms", Some(500)),
            ("1h", Some(3_600_000)),
            ("", None),
            ("5", None),
            ("1x", None),
        ];
        for (text, millis) in cases {
            assert_eq!(
                parse_duration(text).map(|d| d.as_millis() as u64),
                millis,
                "{text:?}"
            );
        }
    }

    #[test]
    fn urls() {
        let prometheus = Prometheus::new("http://127.0.0.1:9090/prom/").unwrap();
        assert_eq!(
            prometheus.query_url.as_str(),
            "http://127.0.0.1:9090/prom/api/v1/query"
        );
        let prometheus = Prometheus::new("http://127.0.0.1:9090").unwrap();
        assert_eq!(
            prometheus.query_url.as_str(),
            "http://127.0.0.1:9090/api/v1/query"
        );
        for bad in ["", "127.0.0.1:9090", "ftp://x"] {
            let err = Prometheus::new(bad).unwrap_err();
            assert!(err.to_string().starts_with("--prometheus "), "{err}");
        }
    }

    /// An answer of the query API with `result` as its vector.
    fn vector(result: &str) -> String {
        format!(r#"{{"status":"success","data":{{"resultType":"vector","result":{result}}}}}"#)
    }

    fn one(labels: &str, value: &str) -> String {
        vector(&format!(
            r#"[{{"metric":{{{labels}}},"value":[1800000000.5,{value:?}]}}]"#
        ))
    }

    /// Hostile or absurd answers: each is an error that names what is wrong, never a panic
    /// and never a number that wrapped.
    #[test]
    fn hostile_answers_are_refused_with_a_message() {
        let many = vector(&format!(
            "[{}]",
            vec![r#"{"metric":{},"value":[1,"1"]}"#; MAX_SERIES + 1].join(",")
        ));
        let cases: Vec<(String, &str)> = vec![
            (String::new(), "no API response"),
            ("\u{0}\u{ff}garbage".to_owned(), "no API response"),
            ("[".repeat(100_000), "no API response"),
            ("{}".to_owned(), "no API response"),
            (r#"{"status":"error","errorType":"bad_data","error":"<img src=x onerror=alert(1)>"}"#.to_owned(), "<img src=x"),
            (r#"{"status":"success"}"#.to_owned(), "without data"),
            (r#"{"status":"success","data":{"resultType":"matrix","result":[]}}"#.to_owned(), "matrix"),
            (vector(r#"{"a":1}"#), "unreadable vector"),
            (vector(r#"[{"metric":{},"value":[1]}]"#), "unreadable vector"),
            (vector(r#"[{"metric":{"a":1},"value":[1,"1"]}]"#), "unreadable vector"),
            (vector(r#"[{"metric":{},"value":[1e999,"1"]}]"#), "number out of range"),
            (one("", "twelve"), "unreadable sample value"),
            (one("", ""), "unreadable sample value"),
            (one("", "NaN"), "not a raw counter"),
            (one("", "+Inf"), "not a raw counter"),
            (one("", "-Inf"), "not a raw counter"),
            (one("", "-1"), "not a raw counter"),
            (one("", "0.5"), "not a raw counter"),
            (one("", "1e308"), "beyond any counter"),
            (one("", "1.8446744073709552e19"), "beyond any counter"),
            (one("", "9007199254740994"), "beyond any counter"),
            (many, "too many series"),
        ];
        for (body, words) in &cases {
            let empty = vector("[]");
            let why = match version_sample(
                "v1",
                [
                    body.as_bytes(),
                    one("", "0").as_bytes(),
                    empty.as_bytes(),
                    empty.as_bytes(),
                    empty.as_bytes(),
                ],
            ) {
                Ok(sample) => panic!("{body:.80}: read as {sample:?}"),
                Err(err) => err.to_string(),
            };
            assert!(why.starts_with("spec.analysis.queries.requests: "), "{why}");
            assert!(why.contains(words), "{body:.80}: {why}");
        }
        // Series that each fit but add up beyond a u64.
        let beyond = vector(&format!(
            "[{}]",
            (0..3000)
                .map(|i| format!(
                    r#"{{"metric":{{"__name__":"x{i}"}},"value":[1,"9007199254740992"]}}"#
                ))
                .collect::<Vec<_>>()
                .join(",")
        ));
        let empty = vector("[]");
        let why = version_sample(
            "v1",
            [
                beyond.as_bytes(),
                empty.as_bytes(),
                empty.as_bytes(),
                empty.as_bytes(),
                empty.as_bytes(),
            ],
        )
        .unwrap_err()
        .to_string();
        assert!(why.contains("add up beyond any counter"), "{why}");
        // Buckets whose `le` is not a number, or NaN; decisions without a reason.
        for (le, words) in [("\"x\"", "is not a number"), ("\"NaN\"", "is not a number")] {
            let latency = one(&format!(r#""le":{le}"#), "1");
            let why = version_sample(
                "v1",
                [
                    vector("[]").as_bytes(),
                    vector("[]").as_bytes(),
                    latency.as_bytes(),
                    vector("[]").as_bytes(),
                    vector("[]").as_bytes(),
                ],
            )
            .unwrap_err()
            .to_string();
            assert!(
                why.starts_with("spec.analysis.queries.latencyBuckets: "),
                "{why}"
            );
            assert!(why.contains(words), "{why}");
        }
    }

    /// Absurd but well-formed answers (counters at 2^53, buckets that go down, labels full of
    /// markup) are counted and judged without a panic, and a look of them is a verdict.
    #[test]
    fn absurd_counters_are_judged_without_a_panic() {
        use analysis::{judge, AnalysisSpec, Evidence, Snapshot, StepPlan};
        let top = "9007199254740992";
        let hostile = r#""pod":"<img src=x onerror=alert(1)></script>\u202e""#;
        let read = |requests: &str, errors: &str, slow: &str| {
            let latency = vector(&format!(
                r#"[{{"metric":{{"le":"10"}},"value":[1,{slow:?}]}},{{"metric":{{"le":"5"}},"value":[1,{top:?}]}},{{"metric":{{"le":"+Inf"}},"value":[1,"3"]}},{{"metric":{{"le":"-Inf"}},"value":[1,"7"]}}]"#
            ));
            version_sample(
                "v1",
                [
                    one(hostile, requests).as_bytes(),
                    one(hostile, errors).as_bytes(),
                    latency.as_bytes(),
                    one(r#""sticky_reason":"hash""#, requests).as_bytes(),
                    one(hostile, "10000").as_bytes(),
                ],
            )
            .unwrap()
        };
        let spec = AnalysisSpec::default();
        let plan = StepPlan {
            weight: 10.0,
            judged_steps: 6,
        };
        let at = |s| jiff::Timestamp::from_second(1_800_000_000 + s).unwrap();
        let looks = [
            (read("0", "0", "0"), read(top, top, top)),
            (read(top, top, "0"), read("0", top, "1")),
            (read("1", top, top), read(top, "0", top)),
            (read(top, top, top), read(top, top, top)),
        ];
        let mut evidence: Option<Evidence> = None;
        for (i, (stable, canary)) in looks.into_iter().enumerate() {
            let snapshot = Snapshot {
                at: at(i as i64 * 10),
                stable,
                canary,
                unanswered: Vec::new(),
            };
            match &mut evidence {
                None => evidence = Some(Evidence::start(&snapshot, &spec, plan)),
                Some(evidence) => evidence.observe(&snapshot, &spec),
            }
            let evidence = evidence.as_ref().unwrap();
            let verdict = judge(&spec, evidence);
            assert!(!verdict.reason.is_empty());
            let _ = verdict.line();
        }
        // A status edited by hand to hold the largest counters keeps adding without a panic.
        let mut evidence = evidence.unwrap();
        evidence.stable.requests = u64::MAX;
        evidence.canary.errors = u64::MAX;
        evidence.looks = u32::MAX;
        let later = Snapshot {
            at: at(1000),
            stable: read(top, top, top),
            canary: read(top, top, top),
            unanswered: Vec::new(),
        };
        evidence.observe(&later, &spec);
        assert_eq!(evidence.stable.requests, u64::MAX);
        let _ = judge(&spec, &evidence).line();
    }

    #[test]
    fn durations_beyond_any_clock_are_refused() {
        let most = Some(Duration::from_secs(u64::MAX));
        assert_eq!(parse_duration("18446744073709551615s"), most);
        for text in [
            "18446744073709551615s1s",
            "999999999999y",
            "99999999999999999999w",
            "18446744073709551615s18446744073709551615ms",
        ] {
            assert_eq!(parse_duration(text), None, "{text}");
        }
    }

    /// An answer longer than [`MAX_BODY`], announced or streamed, is refused unread.
    #[tokio::test]
    async fn enormous_answers_are_refused() {
        let chunk = vec![b' '; 1 << 20];
        let streamed = chunk.clone();
        let app = axum::Router::new()
            .route(
                "/announced/api/v1/query",
                axum::routing::get(move || async move { vec![b' '; MAX_BODY + 1] }),
            )
            .route(
                "/streamed/api/v1/query",
                axum::routing::get(move || async move {
                    let chunks = (0..40).map(move |_| Ok::<_, std::io::Error>(streamed.clone()));
                    axum::body::Body::from_stream(futures::stream::iter(chunks))
                }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        drop(chunk);
        for path in ["announced", "streamed"] {
            let prometheus = Prometheus::new(&format!("http://{address}/{path}")).unwrap();
            let err = prometheus
                .query("up", jiff::Timestamp::now())
                .await
                .unwrap_err()
                .to_string();
            assert!(
                err.contains(&format!("longer than {MAX_BODY} bytes")),
                "{path}: {err}"
            );
        }
    }
}
