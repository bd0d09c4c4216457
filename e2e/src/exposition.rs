//! Reading the filter's counters as Prometheus scrapes them from Envoy's `/stats/prometheus`.

use std::collections::BTreeMap;

/// `sticky_canary_decisions{sticky_rollout=..,sticky_version=..,sticky_reason=..}` values,
/// by (rollout, version, reason); `None` as rollout for a series without the label.
pub fn decisions(exposition: &str) -> BTreeMap<(Option<String>, String, String), u64> {
    exposition
        .lines()
        .filter_map(|line| {
            let labels = line.strip_prefix("sticky_canary_decisions{")?;
            let (labels, value) = labels.split_once("} ")?;
            let label = |name: &str| {
                labels.split(',').find_map(|pair| {
                    pair.strip_prefix(name)?
                        .strip_prefix("=\"")?
                        .strip_suffix('"')
                        .map(str::to_owned)
                })
            };
            Some((
                (
                    label("sticky_rollout"),
                    label("sticky_version")?,
                    label("sticky_reason")?,
                ),
                value.trim().parse().ok()?,
            ))
        })
        .collect()
}
