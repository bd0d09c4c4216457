//! Canary analysis: from raw counter samples of both versions to a verdict with its reasons.
//!
//! Pure, no I/O: [`evidence`] turns Prometheus snapshots into per-step counts (raw counter
//! differences, resets handled, see [`counters`]), [`sequential`] is the anytime-valid test
//! that may be looked at after every scrape, [`dataplane`] checks that the proxies applied the
//! weight, and [`verdict`] judges. The Prometheus shell is the `prometheus` crate; the
//! rollout's state machine decides when to look and what a verdict does. docs/analysis.md
//! explains why. Depends on no other crate of the project: it judges counters, whatever
//! rollout they come from.

#![deny(missing_docs)]

pub mod check;
pub mod counters;
pub mod dataplane;
pub mod evidence;
pub mod metric;
pub mod sequential;
pub mod verdict;

#[cfg(test)]
mod gauge_simulation;
#[cfg(test)]
mod simulation;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use check::{ArmCounts, Check, CheckName, Outcome};
pub use evidence::{
    ArmEvidence, Bucket, Counter, Evidence, Histogram, LookError, Snapshot, StepPlan, VersionSample,
};
pub use metric::{MetricCheck, MetricKind, MetricSpec, Rule, Worse};
pub use verdict::{judge, ArmSummary, Verdict};

/// How the canary is judged (`spec.analysis`). Every field has a default, so `analysis: {}`
/// is a complete, sensible configuration.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AnalysisSpec {
    /// Which metrics the default queries read: a plain Envoy's cluster stats, or Istio's.
    #[serde(default)]
    pub provider: Provider,
    /// Query templates replacing the provider's defaults.
    #[serde(default, skip_serializing_if = "Queries::is_empty")]
    pub queries: Queries,
    /// Probability that a canary no worse than stable is rolled back by the sequential tests,
    /// for the whole rollout: every step, errors and latency together. In (0, 1).
    #[serde(default = "default_alpha")]
    pub alpha: f64,
    /// Concentration of the test's Dirichlet mixture: larger is more sensitive to small
    /// differences and slower on large ones. Positive.
    #[serde(default = "default_k")]
    pub k: f64,
    /// Canary requests (and stable requests) a step needs before it can pass: below it the
    /// verdict is inconclusive, never a promotion on three requests.
    #[serde(default = "default_min_requests")]
    pub min_requests: u64,
    /// The canary fails, whatever stable does, once its share of 5xx responses is shown above
    /// this (a sequential test too, so noise at one look does not fail it). In (0, 1].
    #[serde(default = "default_max_error_rate")]
    pub max_error_rate: f64,
    /// The canary fails once its p99 (the `latencyQuantile`) is shown above this many
    /// milliseconds, judged at the first bucket boundary at or above it. Unset: no guard.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_p99_ms: Option<f64>,
    /// Quantile of stable's latency whose bucket boundary splits fast from slow requests
    /// for the latency test (and the quantile `maxP99Ms` bounds). In (0, 1).
    #[serde(default = "default_latency_quantile")]
    pub latency_quantile: f64,
    /// The check that the proxies applied each new weight.
    #[serde(default)]
    pub data_plane: DataPlaneSpec,
    /// Further metrics, each judged canary against stable or against a limit (latency
    /// percentiles, CPU, memory, any counter of events).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub metrics: Vec<MetricSpec>,
}

/// The metrics the default query templates read.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Provider {
    /// A plain Envoy (`stickyctl controller --envoy-dir`): its per-cluster upstream stats,
    /// one cluster per version.
    #[default]
    Envoy,
    /// Istio: the calling proxy's cluster stats (`outbound|<port>|<subset>|<host>`) for
    /// requests, errors and latency.
    Istio,
}

/// Query templates (PromQL) replacing the provider's defaults. Placeholders: `{service}`,
/// `{serviceName}` (its first DNS label), `{namespace}`, `{rollout}` (`namespace/name`),
/// `{version}`, `{cluster}` (a regex of the version's upstream cluster). Each counter template
/// must return raw cumulative counters of one version, best one series per proxy (increases
/// are taken per series), with `le` labels for latency buckets and `sticky_reason` for
/// decisions; never `rate()` or `increase()`.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct Queries {
    /// Requests of one version (a counter).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests: Option<String>,
    /// 5xx responses of one version (a counter).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub errors: Option<String>,
    /// Latency histogram buckets of one version in milliseconds, by `le`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_buckets: Option<String>,
    /// The filter's decisions that chose one version, by `sticky_reason`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decisions: Option<String>,
    /// The weight of one version each proxy's filter runs with: a gauge in basis points,
    /// one series per proxy (the one query that is not a counter).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weights: Option<String>,
}

impl Queries {
    fn is_empty(&self) -> bool {
        self == &Queries::default()
    }
}

/// The data-plane check: every proxy must report the new weight, and new clients follow it.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DataPlaneSpec {
    /// How far (absolute share, e.g. 0.05 = 5 points) the canary's share of new clients
    /// (the filter's `hash` decisions) may be from its weight. In (0, 1).
    #[serde(default = "default_tolerance")]
    pub tolerance: f64,
    /// Seconds after the step's start by which every proxy must report the weight (and a
    /// full window of new clients must not miss it), else the step fails. Positive.
    #[serde(default = "default_deadline_seconds")]
    pub deadline_seconds: u64,
}

impl Default for DataPlaneSpec {
    fn default() -> Self {
        DataPlaneSpec {
            tolerance: default_tolerance(),
            deadline_seconds: default_deadline_seconds(),
        }
    }
}

impl Default for AnalysisSpec {
    fn default() -> Self {
        AnalysisSpec {
            provider: Provider::default(),
            queries: Queries::default(),
            alpha: default_alpha(),
            k: default_k(),
            min_requests: default_min_requests(),
            max_error_rate: default_max_error_rate(),
            max_p99_ms: None,
            latency_quantile: default_latency_quantile(),
            data_plane: DataPlaneSpec::default(),
            metrics: Vec::new(),
        }
    }
}

fn default_alpha() -> f64 {
    0.05
}
fn default_k() -> f64 {
    100.0
}
fn default_min_requests() -> u64 {
    200
}
fn default_max_error_rate() -> f64 {
    0.05
}
fn default_latency_quantile() -> f64 {
    0.99
}
fn default_tolerance() -> f64 {
    0.05
}
fn default_deadline_seconds() -> u64 {
    120
}

/// Built-in sequential tests run per judged step: errors and latency (each metric of
/// `metrics` adds one).
pub const TESTS_PER_STEP: usize = 2;

/// Steps of a rollout that are judged: those with stable still live next to the canary
/// (below 100 %). The rollout's `alpha` is split over them.
pub fn judged_steps(steps: &[f64]) -> usize {
    steps.iter().filter(|&&weight| weight < 100.0).count()
}

impl AnalysisSpec {
    /// Refuses values no analysis can use, naming the field as the spec spells it.
    pub fn validate(&self) -> Result<(), String> {
        let field = |name: &str, problem: String| Err(format!("spec.analysis.{name}: {problem}"));
        let open_unit = |x: f64| x > 0.0 && x < 1.0;
        if !open_unit(self.alpha) {
            return field(
                "alpha",
                format!("{} is not between 0 and 1 (exclusive)", self.alpha),
            );
        }
        if !(self.k.is_finite() && self.k > 0.0) {
            return field("k", format!("{} is not a positive number", self.k));
        }
        if self.min_requests == 0 {
            return field(
                "minRequests",
                "0 would let a step pass without a single request; at least 1".to_owned(),
            );
        }
        if !(self.max_error_rate > 0.0 && self.max_error_rate <= 1.0) {
            return field(
                "maxErrorRate",
                format!("{} is not in (0, 1]", self.max_error_rate),
            );
        }
        if let Some(ms) = self.max_p99_ms {
            if !(ms.is_finite() && ms > 0.0) {
                return field(
                    "maxP99Ms",
                    format!("{ms} is not a positive number of milliseconds"),
                );
            }
        }
        if !open_unit(self.latency_quantile) {
            return field(
                "latencyQuantile",
                format!(
                    "{} is not between 0 and 1 (exclusive)",
                    self.latency_quantile
                ),
            );
        }
        if !open_unit(self.data_plane.tolerance) {
            return field(
                "dataPlane.tolerance",
                format!(
                    "{} is not between 0 and 1 (exclusive)",
                    self.data_plane.tolerance
                ),
            );
        }
        if self.data_plane.deadline_seconds == 0 {
            return field("dataPlane.deadlineSeconds", "must be at least 1".to_owned());
        }
        for (name, template) in [
            ("requests", &self.queries.requests),
            ("errors", &self.queries.errors),
            ("latencyBuckets", &self.queries.latency_buckets),
            ("decisions", &self.queries.decisions),
            ("weights", &self.queries.weights),
        ] {
            if template.as_deref().is_some_and(|t| t.trim().is_empty()) {
                return field(&format!("queries.{name}"), "is empty".to_owned());
            }
        }
        metric::validate(&self.metrics)
    }

    /// The level of each step's sequential test when the rollout judges `judged_steps` steps
    /// (those with both versions live): `alpha` split evenly over every test of every step,
    /// the metrics' included, so the whole rollout's false-rollback rate stays at most `alpha`.
    pub fn test_alpha(&self, judged_steps: usize) -> f64 {
        let tests = TESTS_PER_STEP + self.metrics.len();
        self.alpha / (tests * judged_steps.max(1)) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_analysis_gets_every_default() {
        let spec: AnalysisSpec = serde_json::from_str("{}").unwrap();
        assert_eq!(spec, AnalysisSpec::default());
        assert_eq!(spec.provider, Provider::Envoy);
        assert_eq!(spec.alpha, 0.05);
        assert_eq!(spec.k, 100.0);
        assert_eq!(spec.min_requests, 200);
        assert_eq!(spec.max_error_rate, 0.05);
        assert_eq!(spec.max_p99_ms, None);
        assert_eq!(spec.latency_quantile, 0.99);
        assert_eq!(spec.data_plane.tolerance, 0.05);
        assert_eq!(spec.data_plane.deadline_seconds, 120);
        assert!(spec.validate().is_ok());
        assert_eq!(serde_json::to_value(&spec).unwrap()["minRequests"], 200);
    }

    #[test]
    fn fields_are_camel_case() {
        let spec: AnalysisSpec = serde_json::from_value(serde_json::json!({
            "provider": "Istio",
            "queries": {"latencyBuckets": "x{le!=\"\"}"},
            "maxP99Ms": 250.0,
            "dataPlane": {"deadlineSeconds": 30}
        }))
        .unwrap();
        assert_eq!(spec.provider, Provider::Istio);
        assert_eq!(spec.queries.latency_buckets.as_deref(), Some("x{le!=\"\"}"));
        assert_eq!(spec.max_p99_ms, Some(250.0));
        assert_eq!(spec.data_plane.deadline_seconds, 30);
        assert_eq!(spec.data_plane.tolerance, 0.05);
    }

    #[test]
    fn bad_values_are_refused_naming_the_field() {
        type Edit = fn(&mut AnalysisSpec);
        let cases: [(Edit, &str); 14] = [
            (|s| s.alpha = 0.0, "spec.analysis.alpha: "),
            (|s| s.alpha = 1.0, "spec.analysis.alpha: "),
            (|s| s.alpha = f64::NAN, "spec.analysis.alpha: "),
            (|s| s.k = 0.0, "spec.analysis.k: "),
            (|s| s.k = f64::INFINITY, "spec.analysis.k: "),
            (|s| s.min_requests = 0, "spec.analysis.minRequests: "),
            (|s| s.max_error_rate = 0.0, "spec.analysis.maxErrorRate: "),
            (|s| s.max_error_rate = 1.5, "spec.analysis.maxErrorRate: "),
            (|s| s.max_p99_ms = Some(-1.0), "spec.analysis.maxP99Ms: "),
            (
                |s| s.latency_quantile = 1.0,
                "spec.analysis.latencyQuantile: ",
            ),
            (
                |s| s.data_plane.tolerance = 0.0,
                "spec.analysis.dataPlane.tolerance: ",
            ),
            (
                |s| s.data_plane.tolerance = 1.0,
                "spec.analysis.dataPlane.tolerance: ",
            ),
            (
                |s| s.data_plane.deadline_seconds = 0,
                "spec.analysis.dataPlane.deadlineSeconds: ",
            ),
            (
                |s| s.queries.errors = Some(" ".to_owned()),
                "spec.analysis.queries.errors: ",
            ),
        ];
        for (edit, prefix) in cases {
            let mut spec = AnalysisSpec::default();
            edit(&mut spec);
            let err = spec.validate().expect_err(prefix);
            assert!(err.starts_with(prefix), "{err} should start with {prefix}");
        }
        let edge = AnalysisSpec {
            max_error_rate: 1.0,
            max_p99_ms: Some(0.5),
            min_requests: 1,
            ..AnalysisSpec::default()
        };
        assert_eq!(edge.validate(), Ok(()));
    }

    /// The schema of `value` as kube's derive writes it into the CRD.
    fn crd_schema<T: JsonSchema>() -> serde_json::Value {
        let generator = schemars::generate::SchemaSettings::openapi3()
            .with(|s| {
                s.inline_subschemas = true;
                s.meta_schema = None;
            })
            .with_transform(schemars::transform::AddNullable::default())
            .with_transform(kube::core::schema::StructuralSchemaRewriter)
            .with_transform(kube::core::schema::OptionalEnum)
            .into_generator();
        serde_json::to_value(generator.into_root_schema_for::<T>()).unwrap()
    }

    /// Kubernetes takes only structural schemas: every node typed, `items` one schema (no
    /// tuples), no references.
    fn assert_structural(path: &str, schema: &serde_json::Value) {
        let Some(node) = schema.as_object() else {
            return;
        };
        assert!(node.get("$ref").is_none(), "{path}: a reference");
        assert!(node.get("prefixItems").is_none(), "{path}: a tuple");
        let typed = node.contains_key("type")
            || node.contains_key("x-kubernetes-preserve-unknown-fields")
            || node.contains_key("x-kubernetes-int-or-string");
        assert!(typed, "{path}: no type in {schema}");
        if let Some(items) = node.get("items") {
            assert!(
                items.is_object(),
                "{path}: items is not one schema: {items}"
            );
            assert_structural(&format!("{path}[]"), items);
        }
        for (name, property) in node
            .get("properties")
            .and_then(|p| p.as_object())
            .into_iter()
            .flatten()
        {
            assert_structural(&format!("{path}.{name}"), property);
        }
        if let Some(values) = node.get("additionalProperties").filter(|v| v.is_object()) {
            assert_structural(&format!("{path}{{}}"), values);
        }
    }

    #[test]
    fn spec_evidence_and_verdicts_have_structural_schemas() {
        let schemas = [
            ("spec.analysis", crd_schema::<AnalysisSpec>()),
            ("evidence", crd_schema::<Evidence>()),
            ("verdict", crd_schema::<Verdict>()),
        ];
        for (path, schema) in &schemas {
            let _: k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::JSONSchemaProps =
                serde_json::from_value(schema.clone()).unwrap_or_else(|e| panic!("{path}: {e}"));
            assert_structural(path, schema);
        }
    }

    #[test]
    fn the_default_rollout_judges_six_steps() {
        assert_eq!(judged_steps(&api::DEFAULT_STEPS), 6);
        assert_eq!(judged_steps(&[10.0, 100.0]), 1);
        assert_eq!(judged_steps(&[]), 0);
    }

    #[test]
    fn alpha_is_split_over_every_test_of_every_step() {
        let spec = AnalysisSpec::default();
        assert_eq!(spec.test_alpha(6), 0.05 / 12.0);
        assert_eq!(spec.test_alpha(1), 0.025);
        assert_eq!(spec.test_alpha(0), 0.025);
    }
}
