//! The Envoy stats settings that make the filter's counters and the per-version cluster stats
//! reach Prometheus from a proxy that Istio configures: the `stats_tags` that turn the
//! counters' name parts into labels, and the `stats_matcher` patterns that keep them and the
//! managed subsets' request stats (Istio's proxies drop most stats by default). Istio takes
//! both as a bootstrap addition (`sidecar.istio.io/bootstrapOverride`, merged into the
//! bootstrap istio-agent writes); the chart ships it, `stickyctl proxy-stats` prints it.

use serde_json::{json, Value};
use sticky_canary_filter::metrics::{
    REASON_TAG, REASON_TAG_REGEX, ROLLOUT_TAG, ROLLOUT_TAG_REGEX, VERSION_TAG, VERSION_TAG_REGEX,
};

use api::names::SUBSET_PREFIX;

/// Where Envoy files every Wasm-defined metric, and so what the filter's counters start with.
pub const FILTER_STATS_PREFIX: &str = "wasmcustom.sticky_canary.";

/// The three tag rules of the filter's counters.
pub fn stats_tags() -> Value {
    json!([
        { "tag_name": ROLLOUT_TAG, "regex": ROLLOUT_TAG_REGEX },
        { "tag_name": VERSION_TAG, "regex": VERSION_TAG_REGEX },
        { "tag_name": REASON_TAG, "regex": REASON_TAG_REGEX },
    ])
}

/// The request count, status classes and latency histogram of the clusters a version's
/// requests take: on the VirtualService API every managed subset's
/// (`outbound|<port>|sticky-canary-<version>|<host>`); on the HTTPRoute API a version is a
/// Service of any name, so every Service cluster's without a subset, at a gateway or sidecar
/// (`outbound|<port>||<host>`) and at a waypoint (`inbound-vip|<port>|http|<host>`). These
/// are what the Istio provider's default queries read (`prometheus::queries::cluster_regex`).
/// Three series and a histogram per Service cluster of a proxy that takes these settings (the
/// ones that run the filter).
pub fn cluster_stats_regex() -> String {
    format!(
        r"^cluster\.(outbound\|[0-9]+\|({SUBSET_PREFIX}[^|]+)?|inbound-vip\|[0-9]+\|http)\|.+\.upstream_rq_(total|time|[1-5]xx)$"
    )
}

/// The bootstrap addition for Istio's proxies (JSON, as `custom_bootstrap.json`).
pub fn istio_bootstrap_override() -> Value {
    json!({
        "stats_config": {
            "stats_tags": stats_tags(),
            "stats_matcher": {"inclusion_list": {"patterns": [
                {"prefix": FILTER_STATS_PREFIX},
                {"safe_regex": {"regex": cluster_stats_regex()}},
            ]}},
        },
    })
}

/// [`istio_bootstrap_override`] as the chart's `files/proxy-stats.json` holds it.
pub fn istio_bootstrap_override_json() -> String {
    // Plain data; serializing it cannot fail.
    let mut text = serde_json::to_string_pretty(&istio_bootstrap_override())
        .expect("the bootstrap addition serializes");
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cluster_stats_kept_are_those_of_either_apis_version_clusters() {
        let kept = regex::Regex::new(&cluster_stats_regex()).unwrap();
        for name in [
            "cluster.outbound|80|sticky-canary-v2|shop.prod.svc.cluster.local.upstream_rq_total",
            "cluster.outbound|80||shop-v2.prod.svc.cluster.local.upstream_rq_5xx",
            "cluster.outbound|8080||shop-canary.prod.svc.cluster.local.upstream_rq_time",
            "cluster.inbound-vip|80|http|shop-v2.prod.svc.cluster.local.upstream_rq_total",
        ] {
            assert!(kept.is_match(name), "{name} kept");
        }
        for name in [
            "cluster.outbound|80||shop-v2.prod.svc.cluster.local.upstream_cx_total",
            "cluster.outbound|80|v2|shop.prod.svc.cluster.local.upstream_rq_total",
            "cluster.inbound|8080||.upstream_rq_total",
            "cluster.xds-grpc.upstream_rq_total",
            "cluster.inbound-vip|80|http/v2|shop.prod.svc.cluster.local.upstream_rq_total",
        ] {
            assert!(!kept.is_match(name), "{name} dropped");
        }
    }

    #[test]
    fn the_chart_ships_the_rendered_settings() {
        let shipped = include_str!("../../../charts/sticky-canary/files/proxy-stats.json");
        assert!(
            shipped == istio_bootstrap_override_json(),
            "charts/sticky-canary/files/proxy-stats.json is stale: regenerate it with `stickyctl proxy-stats > charts/sticky-canary/files/proxy-stats.json`"
        );
    }

    #[test]
    fn the_tag_rules_are_the_plain_envoy_bootstraps() {
        let plain = crate::envoy::render_bootstrap(std::path::Path::new("/d"), 1);
        assert_eq!(
            istio_bootstrap_override()["stats_config"]["stats_tags"],
            plain["stats_config"]["stats_tags"]
        );
    }
}
