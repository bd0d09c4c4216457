//! The query templates: defaults per provider, placeholders filled for one version, and the
//! metric names a template reads (so an unknown metric is refused before the rollout starts).

use analysis::{AnalysisSpec, Provider};
use api::names::{cluster_name, subset_name};

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
}

impl Field {
    /// Every field, in the order they are checked.
    pub const ALL: [Field; 4] = [
        Field::Requests,
        Field::Errors,
        Field::LatencyBuckets,
        Field::Decisions,
    ];

    /// The field's name in the spec.
    pub fn name(self) -> &'static str {
        match self {
            Field::Requests => "requests",
            Field::Errors => "errors",
            Field::LatencyBuckets => "latencyBuckets",
            Field::Decisions => "decisions",
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
}

/// Selects the version's upstream cluster(s) from the calling proxy's cluster stats.
const ENVOY_CLUSTER: &str = r#"envoy_cluster_name=~"{cluster}""#;
/// Istio's standard metrics as the calling proxy (gateway or sidecar) reports them.
const ISTIO_SELECTOR: &str = r#"reporter="source",destination_service_namespace="{namespace}",destination_service_name="{serviceName}",destination_version="{version}""#;

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
        (Provider::Istio, Field::Requests) => format!("istio_requests_total{{{ISTIO_SELECTOR}}}"),
        (Provider::Istio, Field::Errors) => {
            format!(r#"istio_requests_total{{{ISTIO_SELECTOR},response_code=~"5.."}}"#)
        }
        (Provider::Istio, Field::LatencyBuckets) => {
            format!("istio_request_duration_milliseconds_bucket{{{ISTIO_SELECTOR}}}")
        }
        // Istio's proxies share one plugin among rollouts: the counters name theirs.
        (Provider::Istio, Field::Decisions) => {
            r#"sticky_canary_decisions{sticky_rollout="{rollout}",sticky_version="{version}"}"#
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
    };
    custom
        .clone()
        .unwrap_or_else(|| default_template(spec.provider, field))
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
/// `version_<version>`, Istio's `outbound|<port>|sticky-canary-<version>|<host>` for any
/// port and the service's short or full name.
pub fn cluster_regex(provider: Provider, rollout: &RolloutRef, version: &str) -> String {
    match provider {
        Provider::Envoy => regex_literal(&cluster_name(version)),
        Provider::Istio => format!(
            r"outbound\\|[0-9]+\\|{}\\|{}(\\..+)?",
            regex_literal(&subset_name(version)),
            regex_literal(&rollout.service)
        ),
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

/// PromQL words that are not metric names: keywords, and the aggregation operators (which
/// may be followed by `by (...)` rather than by their parenthesis).
const KEYWORDS: [&str; 28] = [
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "offset",
    "and",
    "or",
    "unless",
    "inf",
    "nan",
    "atan2",
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "limitk",
    "limit_ratio",
];

/// The metric names a query reads: identifiers that are neither functions (followed by `(`),
/// keywords, label names (inside `{}` or the label list of `by (...)` and the like), nor
/// inside strings or durations.
pub fn metric_names(query: &str) -> Vec<String> {
    let chars: Vec<char> = query.chars().collect();
    let mut names = Vec::new();
    let mut i = 0;
    let mut label_list = false;
    while i < chars.len() {
        let c = chars[i];
        if c == '"' || c == '\'' || c == '`' {
            i = skip_string(&chars, i);
        } else if c == '{' {
            // A label matcher list (may hold a `__name__` matcher).
            let end = find_closing(&chars, i, '{', '}');
            let inner: String = chars[i + 1..end.min(chars.len())].iter().collect();
            names.extend(name_matchers(&inner));
            i = end + 1;
        } else if c == '[' {
            i = find_closing(&chars, i, '[', ']') + 1;
        } else if c == '(' && label_list {
            i = find_closing(&chars, i, '(', ')') + 1;
            label_list = false;
        } else if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || "_:".contains(chars[i])) {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let next = chars[i..].iter().find(|c| !c.is_whitespace());
            let lower = word.to_ascii_lowercase();
            if [
                "by",
                "without",
                "on",
                "ignoring",
                "group_left",
                "group_right",
            ]
            .contains(&lower.as_str())
            {
                label_list = true;
            } else if next != Some(&'(')
                && !KEYWORDS.contains(&lower.as_str())
                && !names.contains(&word)
            {
                names.push(word);
            }
        } else if c.is_ascii_digit() {
            // A number or a duration (`5m`, `1e3`): not a name.
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                i += 1;
            }
        } else {
            i += 1;
        }
    }
    names
}

fn skip_string(chars: &[char], start: usize) -> usize {
    let quote = chars[start];
    let mut i = start + 1;
    while i < chars.len() && chars[i] != quote {
        if chars[i] == '\\' && quote != '`' {
            i += 1;
        }
        i += 1;
    }
    i + 1
}

/// Index of the bracket closing the one at `start` (strings skipped); the end if none.
fn find_closing(chars: &[char], start: usize, open: char, close: char) -> usize {
    let mut depth = 0;
    let mut i = start;
    while i < chars.len() {
        match chars[i] {
            '"' | '\'' | '`' => {
                i = skip_string(chars, i);
                continue;
            }
            c if c == open => depth += 1,
            c if c == close => {
                depth -= 1;
                if depth == 0 {
                    return i;
                }
            }
            _ => {}
        }
        i += 1;
    }
    chars.len()
}

/// Names given as `__name__="..."` in a matcher list.
fn name_matchers(inner: &str) -> Vec<String> {
    inner
        .split(',')
        .filter_map(|matcher| {
            let value = matcher.trim().strip_prefix("__name__")?.trim_start();
            let value = value.strip_prefix('=')?.trim();
            Some(value.trim_matches(|c| c == '"' || c == '\'').to_owned())
        })
        .collect()
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
        }
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
                r#"istio_requests_total{reporter="source",destination_service_namespace="prod",destination_service_name="shop",destination_version="v1",response_code=~"5.."}"#,
            ),
            (
                Provider::Istio,
                Field::LatencyBuckets,
                "v1",
                r#"istio_request_duration_milliseconds_bucket{reporter="source",destination_service_namespace="prod",destination_service_name="shop",destination_version="v1"}"#,
            ),
            (
                Provider::Istio,
                Field::Decisions,
                "v1",
                r#"sticky_canary_decisions{sticky_rollout="prod/shop",sticky_version="v1"}"#,
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
            r#"envoy_cluster_upstream_rq_total{envoy_cluster_name=~"outbound\\|[0-9]+\\|sticky-canary-v2\\|shop\\.prod\\.svc\\.cluster\\.local(\\..+)?"}"#
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
            assert_eq!(metric_names(query), expected, "{query}");
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
                "spec.analysis.queries.decisions"
            ]
        );
    }
}
