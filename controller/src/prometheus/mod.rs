//! The thin shell between Prometheus and the analysis: instant queries of raw counters at a
//! time, turned into a [`Snapshot`]; and the check, before anything is written, that every
//! template is one Prometheus accepts and reads metrics it has.

pub mod queries;

use std::collections::BTreeMap;
use std::time::Duration;

use jiff::Timestamp;
use serde::Deserialize;

use crate::analysis::{AnalysisSpec, Counter, Histogram, Snapshot, VersionSample};
use crate::error::Error;
pub use queries::{Field, RolloutRef};

/// Longest a query may take, Prometheus's own evaluation included.
const QUERY_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest to wait for a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

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
#[derive(Debug)]
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
        let body = self
            .client
            .get(self.targets_url.clone())
            .query(&[("state", "active")])
            .send()
            .await
            .map_err(|err| failed(&err))?
            .bytes()
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
        let body = response
            .bytes()
            .await
            .map_err(|err| failed("query failed", &err))?;
        read_answer(&body).map_err(|err| match err {
            QueryError::Failed(why) => failed(&format!("answered {status}"), &why),
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
        let query = queries::render(
            &queries::template(spec, field),
            spec.provider,
            rollout,
            version,
        );
        self.instant(&query, at).await.map_err(|err| match err {
            QueryError::Rejected(why) => Error::Invalid(format!(
                "{}: Prometheus rejects `{query}`: {why}",
                field.path()
            )),
            QueryError::Failed(why) => Error::Runtime(format!("{} ({query}): {why}", field.path())),
        })
    }

    /// Both versions' raw counters at `at`.
    pub async fn snapshot(
        &self,
        spec: &AnalysisSpec,
        rollout: &RolloutRef,
        at: Timestamp,
    ) -> Result<Snapshot, Error> {
        let (stable, canary) = futures::try_join!(
            self.version(spec, rollout, &rollout.stable, at),
            self.version(spec, rollout, &rollout.canary, at)
        )?;
        Ok(Snapshot { at, stable, canary })
    }

    async fn version(
        &self,
        spec: &AnalysisSpec,
        rollout: &RolloutRef,
        version: &str,
        at: Timestamp,
    ) -> Result<VersionSample, Error> {
        let (requests, errors, latency, decisions) = futures::try_join!(
            self.field(spec, rollout, Field::Requests, version, at),
            self.field(spec, rollout, Field::Errors, version, at),
            self.field(spec, rollout, Field::LatencyBuckets, version, at),
            self.field(spec, rollout, Field::Decisions, version, at),
        )?;
        Ok(VersionSample {
            version: version.to_owned(),
            requests: counter(Field::Requests, &requests)?,
            errors: counter(Field::Errors, &errors)?,
            latency: histograms(&latency)?,
            decisions: by_reason(&decisions)?,
        })
    }

    /// Refuses, naming the field, a template Prometheus rejects, one that reads a metric
    /// Prometheus has no series of, a latency template without `le` or a decisions template
    /// without `sticky_reason` labels, and a requests template that finds nothing of stable
    /// (which serves traffic before any canary does). Nothing is written before this passes.
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
            for name in queries::metric_names(&queries::template(spec, field)) {
                let known = self
                    .query(&format!("group({{__name__={name:?}}})"), at)
                    .await?;
                if known.is_empty() {
                    return Err(Error::Invalid(format!(
                        "{}: Prometheus has no series of metric `{name}` (a typo, or nothing \
                         scrapes it yet)",
                        field.path()
                    )));
                }
            }
            for series in [&stable, &canary] {
                match field {
                    Field::Requests | Field::Errors => drop(counter(field, series)?),
                    Field::LatencyBuckets => drop(histograms(series)?),
                    Field::Decisions => drop(by_reason(series)?),
                }
            }
            if field == Field::Requests && stable.is_empty() {
                return Err(Error::Invalid(format!(
                    "{}: no series for the stable version {}: check the template's labels \
                     against what Prometheus has",
                    field.path(),
                    rollout.stable
                )));
            }
        }
        Ok(())
    }
}

/// The series of an instant query's answer, from the body Prometheus sent. Public and taking
/// bytes so that the fuzz targets (`fuzz/`) read answers exactly as the controller does.
pub fn read_answer(body: &[u8]) -> Result<Vec<Series>, QueryError> {
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
    samples
        .into_iter()
        .map(|sample| {
            let value: f64 = sample
                .value
                .1
                .parse()
                .map_err(|err| failed("unreadable sample value", &err))?;
            Ok(Series {
                labels: sample.metric,
                value,
            })
        })
        .collect()
}

/// The longest scrape interval in the body of a `/api/v1/targets` answer (`None` without any
/// target). Public and taking bytes for the fuzz targets, as [`read_answer`].
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
/// beyond rounding, not finite), which is what `rate()` or `increase()` return.
fn count(field: Field, series: &Series) -> Result<u64, Error> {
    let value = series.value;
    if !value.is_finite() || value < 0.0 || (value - value.round()).abs() > 1e-6 * value.max(1.0) {
        return Err(Error::Invalid(format!(
            "{}: {value} is not a raw counter (the template must return cumulative counts, \
             not rate() or increase())",
            field.path()
        )));
    }
    Ok(value.round() as u64)
}

/// Adds a series' count to `sum`. Counts past `u64::MAX` are no counter's: a hostile or broken
/// answer, refused like any unreadable one rather than wrapped or, in a debug build, a panic.
fn add(field: Field, sum: &mut u64, series: &Series) -> Result<(), Error> {
    *sum = sum.checked_add(count(field, series)?).ok_or_else(|| {
        Error::Invalid(format!(
            "{}: the series' counts add up past {}",
            field.path(),
            u64::MAX
        ))
    })?;
    Ok(())
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

/// Public for the fuzz targets (`fuzz/`), which read answers as the controller does.
pub fn counter(field: Field, series: &[Series]) -> Result<Counter, Error> {
    let mut counter = Counter::default();
    for s in series {
        add(
            field,
            counter.0.entry(series_key(&s.labels)).or_default(),
            s,
        )?;
    }
    Ok(counter)
}

/// Public for the fuzz targets, as [`counter`].
pub fn histograms(series: &[Series]) -> Result<BTreeMap<String, Histogram>, Error> {
    let field = Field::LatencyBuckets;
    let mut pairs: BTreeMap<String, Vec<(f64, u64)>> = BTreeMap::new();
    for s in series {
        let le = s.labels.get("le").ok_or_else(|| {
            Error::Invalid(format!(
                "{}: a series without an `le` label: the template must return histogram buckets",
                field.path()
            ))
        })?;
        let le: f64 = le.parse().map_err(|_| {
            Error::Invalid(format!(
                "{}: `le` label {le:?} is not a number",
                field.path()
            ))
        })?;
        pairs
            .entry(series_key(&s.labels))
            .or_default()
            .push((le, count(field, s)?));
    }
    Ok(pairs
        .into_iter()
        .map(|(key, pairs)| (key, Histogram::from_pairs(&pairs)))
        .collect())
}

/// Public for the fuzz targets, as [`counter`].
pub fn by_reason(series: &[Series]) -> Result<BTreeMap<String, Counter>, Error> {
    let field = Field::Decisions;
    let mut reasons: BTreeMap<String, Counter> = BTreeMap::new();
    for s in series {
        let reason = s.labels.get("sticky_reason").ok_or_else(|| {
            Error::Invalid(format!(
                "{}: a series without a `sticky_reason` label",
                field.path()
            ))
        })?;
        let sum = reasons
            .entry(reason.clone())
            .or_default()
            .0
            .entry(series_key(&s.labels))
            .or_default();
        add(field, sum, s)?;
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
            assert_eq!(err.exit_code(), crate::error::EXIT_INVALID);
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

    /// Found while writing the `prometheus_answer` fuzz target and confirmed by it (its
    /// corpus keeps both inputs): durations and counts adding up past what their types hold
    /// panicked ("overflow when adding durations", "attempt to add with overflow"); they are
    /// refused.
    #[test]
    fn absurd_answers_are_refused_not_overflowed() {
        assert_eq!(
            parse_duration("18000000000000000000s18000000000000000000s"),
            None
        );
        assert_eq!(
            parse_duration("18446744073709551615ms18446744073709551615s"),
            None
        );
        let targets =
            br#"{"data":{"activeTargets":[{"scrapeInterval":"18446744073709551615s1s"}]}}"#;
        assert!(longest_scrape_interval(targets).is_err());
        let huge = [series(&[("pod", "a")], 1e19), series(&[("pod", "a")], 1e19)];
        let err = counter(Field::Requests, &huge).unwrap_err();
        assert!(err.to_string().contains("add up past"), "{err}");
        let reasons = [
            series(&[("sticky_reason", "hash")], 1e19),
            series(&[("sticky_reason", "hash")], 1e19),
        ];
        assert!(by_reason(&reasons).is_err());
        let answer = br#"{"status":"success","data":{"resultType":"vector","result":[
            {"metric":{"a":"1"},"value":[1,"1e19"]},{"metric":{"a":"1","le":"2"},"value":[1,"1e19"]}]}}"#;
        let read = read_answer(answer).unwrap();
        assert!(counter(Field::Errors, &read).is_err());
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
}
