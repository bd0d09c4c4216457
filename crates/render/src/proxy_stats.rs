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

/// The request count, status classes and latency histogram of every managed subset's
/// cluster (Istio names it `outbound|<port>|sticky-canary-<version>|<host>`).
pub fn cluster_stats_regex() -> String {
    format!(
        r"^cluster\.outbound\|[0-9]+\|{SUBSET_PREFIX}[^|]+\|.+\.upstream_rq_(total|time|[1-5]xx)$"
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
