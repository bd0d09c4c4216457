//! The query templates: defaults per provider, placeholders filled for one version, and the
//! metric names a template reads (so an unknown metric is refused before the rollout starts).

use std::collections::BTreeMap;
use std::convert::Infallible;

use analysis::{AnalysisSpec, MetricKind, MetricSpec, Provider};
use api::names::{cluster_name, subset_name, version_service_name};
use promql_parser::label::{MatchOp, METRIC_NAME};
use promql_parser::parser::{AggregateExpr, Expr, VectorSelector};
use promql_parser::util::{walk_expr, ExprVisitor};

/// The metrics the analysis reads, named as in `spec.analysis.queries`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    /// Requests of a version.
    Requests,
    /// Its 5xx responses.
    Errors,
    /// Its latency histogram buckets, by `le`.
    LatencyBuckets,
    /// The filter's decisions for it, by `sticky_reason`.
    Decisions,
    /// The weight each proxy's filter runs it with (a gauge, in basis points).
    Weights,
}

impl Field {
    /// Every field, in the order they are checked.
    pub const ALL: [Field; 5] = [
        Field::Requests,
        Field::Errors,
        Field::LatencyBuckets,
        Field::Decisions,
        Field::Weights,
    ];

    /// The field's name in the spec.
    pub fn name(self) -> &'static str {
        match self {
            Field::Requests => "requests",
            Field::Errors => "errors",
            Field::LatencyBuckets => "latencyBuckets",
            Field::Decisions => "decisions",
            Field::Weights => "weights",
        }
    }

    /// Whether the field must have series of stable for the rollout to be judged: stable
    /// serves requests before any canary, and every proxy's filter reports its series from
    /// the start. 5xx and latency may have none yet.
    pub fn must_answer(self) -> bool {
        matches!(self, Field::Requests | Field::Decisions | Field::Weights)
    }

    /// What usually leaves the field's query without a series.
    pub fn when_empty(self) -> &'static str {
        match self {
            Field::Requests | Field::Errors | Field::LatencyBuckets => {
                "nothing scrapes the proxies in front of this version yet, or the template's \
                 labels do not match what Prometheus has"
            }
            Field::Decisions | Field::Weights => {
                "usually the proxies' stats lack the filter's tags (the `stats_tags` of \
                 `stickyctl bootstrap`, or the chart's proxy stats on Istio), the filter does \
                 not run for this rollout, the `sticky_rollout` label differs, or the filter \
                 predates the weight gauges"
            }
        }
    }

    /// `spec.analysis.queries.<field>`, for messages.
    pub fn path(self) -> String {
        format!("spec.analysis.queries.{}", self.name())
    }
}

/// The rollout whose versions are queried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RolloutRef {
    /// The rollout's name.
    pub name: String,
    /// Its namespace.
    pub namespace: String,
    /// The service's host, as in `spec.service`.
    pub service: String,
    /// The stable version.
    pub stable: String,
    /// The canary version.
    pub canary: String,
    /// The Service of a version on the HTTPRoute API, where the user named one
    /// (`spec.routing.versionServices`); other versions have the default name.
    pub version_services: BTreeMap<String, String>,
}

/// Selects the version's upstream cluster(s) from a plain Envoy's cluster stats.
const ENVOY_CLUSTER: &str = r#"envoy_cluster_name=~"{cluster}""#;
/// Selects the version's subset cluster(s) from an Istio proxy's cluster stats: istio-agent's
/// tag rules name the label `cluster_name`. The chart's proxy stats keep these series, which
/// the filter's own need anyway; Istio's standard metrics (`istio_requests_total`) come from
/// a filter only istio-proxy's own Envoy build has, and depend on the telemetry settings.
const ISTIO_CLUSTER: &str = r#"cluster_name=~"{cluster}""#;

/// The provider's default template of `field`.
pub fn default_template(provider: Provider, field: Field) -> String {
    match (provider, field) {
        (Provider::Envoy, Field::Requests) => {
            format!("envoy_cluster_upstream_rq_total{{{ENVOY_CLUSTER}}}")
        }
        (Provider::Envoy, Field::Errors) => format!(
            r#"envoy_cluster_upstream_rq_xx{{{ENVOY_CLUSTER},envoy_response_code_class="5"}}"#
        ),
        (Provider::Envoy, Field::LatencyBuckets) => {
            format!("envoy_cluster_upstream_rq_time_bucket{{{ENVOY_CLUSTER}}}")
        }
        // A plain Envoy serves one rollout: its counters carry no rollout label.
        (Provider::Envoy, Field::Decisions) => {
            r#"sticky_canary_decisions{sticky_version="{version}",sticky_rollout=""}"#.to_owned()
        }
        (Provider::Istio, Field::Requests) => {
            format!("envoy_cluster_upstream_rq_total{{{ISTIO_CLUSTER}}}")
        }
        // istio-agent's tag rules file `upstream_rq_5xx` as `response_code_class="5xx"`.
        (Provider::Istio, Field::Errors) => {
            format!(r#"envoy_cluster_upstream_rq{{{ISTIO_CLUSTER},response_code_class="5xx"}}"#)
        }
        (Provider::Istio, Field::LatencyBuckets) => {
            format!("envoy_cluster_upstream_rq_time_bucket{{{ISTIO_CLUSTER}}}")
        }
        (Provider::Envoy, Field::Weights) => {
            r#"sticky_canary_weight_basis_points{sticky_version="{version}",sticky_rollout=""}"#
                .to_owned()
        }
        // Istio's proxies share one plugin among rollouts: the counters name theirs.
        (Provider::Istio, Field::Decisions) => {
            r#"sticky_canary_decisions{sticky_rollout="{rollout}",sticky_version="{version}"}"#
                .to_owned()
        }
        (Provider::Istio, Field::Weights) => {
            r#"sticky_canary_weight_basis_points{sticky_rollout="{rollout}",sticky_version="{version}"}"#
                .to_owned()
        }
    }
}

/// The template of `field` in force: the spec's override, else the provider's default.
pub fn template(spec: &AnalysisSpec, field: Field) -> String {
    let custom = match field {
        Field::Requests => &spec.queries.requests,
        Field::Errors => &spec.queries.errors,
        Field::LatencyBuckets => &spec.queries.latency_buckets,
        Field::Decisions => &spec.queries.decisions,
        Field::Weights => &spec.queries.weights,
    };
    custom
        .clone()
        .unwrap_or_else(|| default_template(spec.provider, field))
}

/// What usually leaves a metric's query without a series.
pub const METRIC_WHEN_EMPTY: &str =
    "the template's labels do not match what Prometheus has, or nothing scrapes the version yet";

/// One query of `spec.analysis.metrics[index]`: where it is in the spec, and its template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricQuery {
    /// `spec.analysis.metrics[i].query (name)` (or `.requests`), for messages.
    pub path: String,
    /// The template.
    pub template: String,
}

/// The queries of `spec.analysis.metrics[index]`: its own, then for a counter the requests it
/// is counted over (the rollout's requests query unless the metric names its own).
pub fn metric_queries(spec: &AnalysisSpec, index: usize, metric: &MetricSpec) -> Vec<MetricQuery> {
    let path = |part: &str| format!("spec.analysis.metrics[{index}].{part} ({})", metric.name);
    let mut asked = vec![MetricQuery {
        path: path("query"),
        template: metric.query.clone(),
    }];
    if metric.kind == MetricKind::Counter {
        asked.push(MetricQuery {
            path: path("requests"),
            template: metric
                .requests
                .clone()
                .unwrap_or_else(|| template(spec, Field::Requests)),
        });
    }
    asked
}

/// A regex for a PromQL string (`=~"..."`): regex metacharacters escaped, and the escaping
/// backslash itself escaped for the string literal.
fn regex_literal(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars() {
        if r"\.+*?()|[]{}^$".contains(c) {
            out.push_str(r"\\");
        }
        out.push(c);
    }
    out
}

/// A plain PromQL string's content.
fn string_literal(text: &str) -> String {
    text.replace('\\', r"\\").replace('"', "\\\"")
}

/// The cluster(s) of `version` in the calling proxy's stats, as a regex: a plain Envoy's
/// `version_<version>`; on Istio either API's, so the queries hold whichever carries the
/// routes: the VirtualService's subset cluster `outbound|<port>|sticky-canary-<version>|<host>`
/// (the service's short or full name), and the HTTPRoute's version Service,
/// `outbound|<port>||<service>-<version>.<namespace>.svc.<domain>` at a gateway or sidecar and
/// `inbound-vip|<port>|http|...` at a waypoint.
pub fn cluster_regex(provider: Provider, rollout: &RolloutRef, version: &str) -> String {
    match provider {
        Provider::Envoy => regex_literal(&cluster_name(version)),
        Provider::Istio => {
            let (short, rest) = match rollout.service.split_once('.') {
                Some((short, rest)) => (short, regex_literal(&format!(".{rest}"))),
                None => (rollout.service.as_str(), r"(\\..+)?".to_owned()),
            };
            let service = rollout
                .version_services
                .get(version)
                .cloned()
                .unwrap_or_else(|| version_service_name(short, version));
            format!(
                r"outbound\\|[0-9]+\\|{}\\|{}(\\..+)?|(outbound|inbound-vip)\\|[0-9]+\\|(http)?\\|{}{rest}",
                regex_literal(&subset_name(version)),
                regex_literal(&rollout.service),
                regex_literal(&service),
            )
        }
    }
}

/// `template` with its placeholders filled for `version` of `rollout`: `{service}`,
/// `{serviceName}` (the service's first DNS label), `{namespace}`, `{rollout}`
/// (`namespace/name`, the filter's `sticky_rollout`), `{version}`, `{cluster}` (a regex).
pub fn render(template: &str, provider: Provider, rollout: &RolloutRef, version: &str) -> String {
    let service_name = rollout
        .service
        .split('.')
        .next()
        .unwrap_or(&rollout.service);
    template
        .replace("{serviceName}", &string_literal(service_name))
        .replace("{service}", &string_literal(&rollout.service))
        .replace("{namespace}", &string_literal(&rollout.namespace))
        .replace(
            "{rollout}",
            &string_literal(&format!("{}/{}", rollout.namespace, rollout.name)),
        )
        .replace("{version}", &string_literal(version))
        .replace("{cluster}", &cluster_regex(provider, rollout, version))
}

/// The metric names a query reads, in order, each once: its selectors' names and their
/// `__name__="..."` matchers; or why it does not parse as PromQL. Parsed by a PromQL parser,
/// so keywords, functions, label names, strings and durations are never taken for names.
pub fn metric_names(query: &str) -> Result<Vec<String>, String> {
    let expr = promql_parser::parser::parse(query)?;
    let mut names = MetricNames(Vec::new());
    let Ok(_) = walk_expr(&mut names, &expr);
    Ok(names.0)
}

/// Collects the names of the selectors the walk meets.
struct MetricNames(Vec<String>);

impl MetricNames {
    fn add(&mut self, selector: &VectorSelector) {
        let matched = selector
            .matchers
            .find_matchers(METRIC_NAME)
            .into_iter()
            .filter(|m| matches!(m.op, MatchOp::Equal))
            .map(|m| m.value);
        for name in selector.name.iter().cloned().chain(matched) {
            if !self.0.contains(&name) {
                self.0.push(name);
            }
        }
    }
}

impl ExprVisitor for MetricNames {
    type Error = Infallible;

    fn pre_visit(&mut self, expr: &Expr) -> Result<bool, Infallible> {
        match expr {
            Expr::VectorSelector(selector) => self.add(selector),
            Expr::MatrixSelector(matrix) => self.add(&matrix.vs),
            // The walk does not enter an aggregation's parameter (`topk(scalar(k), m)`).
            Expr::Aggregate(AggregateExpr {
                param: Some(param), ..
            }) => {
                walk_expr(self, param)?;
            }
            _ => {}
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shop() -> RolloutRef {
        RolloutRef {
            name: "shop".to_owned(),
            namespace: "prod".to_owned(),
            service: "shop.prod.svc.cluster.local".to_owned(),
            stable: "v1".to_owned(),
            canary: "1.2.3".to_owned(),
            version_services: BTreeMap::new(),
        }
    }

    #[test]
    fn a_version_service_the_user_named_is_its_cluster() {
        let mut rollout = shop();
        rollout
            .version_services
            .insert("1.2.3".to_owned(), "shop-canary".to_owned());
        let regex = cluster_regex(Provider::Istio, &rollout, "1.2.3");
        assert!(
            regex.ends_with(r"(outbound|inbound-vip)\\|[0-9]+\\|(http)?\\|shop-canary\\.prod\\.svc\\.cluster\\.local"),
            "{regex}"
        );
        assert!(cluster_regex(Provider::Istio, &rollout, "v1")
            .ends_with(r"\\|shop-v1\\.prod\\.svc\\.cluster\\.local"));
        // A short service name: the version Service in any namespace and domain.
        rollout.service = "shop".to_owned();
        assert!(cluster_regex(Provider::Istio, &rollout, "v1").ends_with(r"\\|shop-v1(\\..+)?"));
    }

    #[test]
    fn default_templates_rendered() {
        let rollout = shop();
        let cases = [
            (
                Provider::Envoy,
                Field::Requests,
                "v1",
                r#"envoy_cluster_upstream_rq_total{envoy_cluster_name=~"version_v1"}"#,
            ),
            (
                Provider::Envoy,
                Field::Errors,
                "1.2.3",
                r#"envoy_cluster_upstream_rq_xx{envoy_cluster_name=~"version_1\\.2\\.3",envoy_response_code_class="5"}"#,
            ),
            (
                Provider::Envoy,
                Field::LatencyBuckets,
                "v1",
                r#"envoy_cluster_upstream_rq_time_bucket{envoy_cluster_name=~"version_v1"}"#,
            ),
            (
                Provider::Envoy,
                Field::Decisions,
                "v1",
                r#"sticky_canary_decisions{sticky_version="v1",sticky_rollout=""}"#,
            ),
            (
                Provider::Istio,
                Field::Errors,
                "v1",
                r#"envoy_cluster_upstream_rq{cluster_name=~"outbound\\|[0-9]+\\|sticky-canary-v1\\|shop\\.prod\\.svc\\.cluster\\.local(\\..+)?|(outbound|inbound-vip)\\|[0-9]+\\|(http)?\\|shop-v1\\.prod\\.svc\\.cluster\\.local",response_code_class="5xx"}"#,
            ),
            (
                Provider::Istio,
                Field::LatencyBuckets,
                "v1",
                r#"envoy_cluster_upstream_rq_time_bucket{cluster_name=~"outbound\\|[0-9]+\\|sticky-canary-v1\\|shop\\.prod\\.svc\\.cluster\\.local(\\..+)?|(outbound|inbound-vip)\\|[0-9]+\\|(http)?\\|shop-v1\\.prod\\.svc\\.cluster\\.local"}"#,
            ),
            (
                Provider::Istio,
                Field::Decisions,
                "v1",
                r#"sticky_canary_decisions{sticky_rollout="prod/shop",sticky_version="v1"}"#,
            ),
            (
                Provider::Envoy,
                Field::Weights,
                "v2",
                r#"sticky_canary_weight_basis_points{sticky_version="v2",sticky_rollout=""}"#,
            ),
            (
                Provider::Istio,
                Field::Weights,
                "v2",
                r#"sticky_canary_weight_basis_points{sticky_rollout="prod/shop",sticky_version="v2"}"#,
            ),
        ];
        for (provider, field, version, expected) in cases {
            let spec = AnalysisSpec {
                provider,
                ..AnalysisSpec::default()
            };
            let query = render(&template(&spec, field), provider, &rollout, version);
            assert_eq!(query, expected, "{provider:?} {field:?}");
        }
    }

    #[test]
    fn overrides_and_the_istio_cluster() {
        let mut spec = AnalysisSpec {
            provider: Provider::Istio,
            ..AnalysisSpec::default()
        };
        spec.queries.requests =
            Some(r#"envoy_cluster_upstream_rq_total{envoy_cluster_name=~"{cluster}"}"#.to_owned());
        let query = render(
            &template(&spec, Field::Requests),
            spec.provider,
            &shop(),
            "v2",
        );
        assert_eq!(
            query,
            r#"envoy_cluster_upstream_rq_total{envoy_cluster_name=~"outbound\\|[0-9]+\\|sticky-canary-v2\\|shop\\.prod\\.svc\\.cluster\\.local(\\..+)?|(outbound|inbound-vip)\\|[0-9]+\\|(http)?\\|shop-v2\\.prod\\.svc\\.cluster\\.local"}"#
        );
        assert_eq!(
            template(&spec, Field::Errors),
            default_template(Provider::Istio, Field::Errors)
        );
    }

    #[test]
    fn metric_names_of_queries() {
        let cases: [(&str, &[&str]); 9] = [
            (
                r#"envoy_cluster_upstream_rq_total{envoy_cluster_name=~"version_v1"}"#,
                &["envoy_cluster_upstream_rq_total"],
            ),
            (
                "sum by (le, pod) (rate(http_bucket{job=\"a,b\"}[5m]))",
                &["http_bucket"],
            ),
            (
                "sum without(instance) (a) + on(job) group_left(x) b offset 5m",
                &["a", "b"],
            ),
            (r#"{__name__="up", job="x"}"#, &["up"]),
            ("a_total / 1e3 > bool 0.5", &["a_total"]),
            ("rate(x:y:z[1h:5m])", &["x:y:z"]),
            (
                "histogram_quantile(0.99, sum by (le) (h_bucket))",
                &["h_bucket"],
            ),
            (r#"label_replace(m, "dst", "$1", "src", "(.*)")"#, &["m"]),
            ("a and b or c unless a", &["a", "b", "c"]),
        ];
        for (query, expected) in cases {
            assert_eq!(metric_names(query).unwrap(), expected, "{query}");
        }
    }

    #[test]
    fn field_paths() {
        let paths: Vec<String> = Field::ALL.iter().map(|f| f.path()).collect();
        assert_eq!(
            paths,
            [
                "spec.analysis.queries.requests",
                "spec.analysis.queries.errors",
                "spec.analysis.queries.latencyBuckets",
                "spec.analysis.queries.decisions",
                "spec.analysis.queries.weights"
            ]
        );
    }
}
