//! Reading the filter's metrics as Prometheus scrapes them from Envoy's `/stats/prometheus`.

use std::collections::BTreeMap;

/// The samples of metric `name`: each one's label lookup and value.
fn samples<'a>(
    exposition: &'a str,
    name: &'a str,
) -> impl Iterator<Item = (impl Fn(&str) -> Option<String> + 'a, u64)> + 'a {
    exposition.lines().filter_map(move |line| {
        let labels = line.strip_prefix(name)?.strip_prefix('{')?;
        let (labels, value) = labels.split_once("} ")?;
        let label = move |label: &str| {
            labels.split(',').find_map(|pair| {
                pair.strip_prefix(label)?
                    .strip_prefix("=\"")?
                    .strip_suffix('"')
                    .map(str::to_owned)
            })
        };
        Some((label, value.trim().parse().ok()?))
    })
}

/// `sticky_canary_decisions{sticky_rollout=..,sticky_version=..,sticky_reason=..}` values,
/// by (rollout, version, reason); `None` as rollout for a series without the label.
pub fn decisions(exposition: &str) -> BTreeMap<(Option<String>, String, String), u64> {
    samples(exposition, "sticky_canary_decisions")
        .filter_map(|(label, value)| {
            Some((
                (
                    label("sticky_rollout"),
                    label("sticky_version")?,
                    label("sticky_reason")?,
                ),
                value,
            ))
        })
        .collect()
}

/// `sticky_canary_weight_basis_points{sticky_rollout=..,sticky_version=..}` values, by
/// (rollout, version): the weights the filter runs with.
pub fn weights(exposition: &str) -> BTreeMap<(Option<String>, String), u64> {
    samples(exposition, "sticky_canary_weight_basis_points")
        .filter_map(|(label, value)| {
            Some(((label("sticky_rollout"), label("sticky_version")?), value))
        })
        .collect()
}
