//! Names of the filter's metrics: a decision counter per version and reason, and a gauge of
//! the weight each version has in the configuration the filter runs (and rollout, when the
//! filter serves several).
//!
//! The proxy-wasm ABI has no metric labels, so rollout, version and reason are encoded in the
//! name and Envoy's `stats_tags` turn them back into the Prometheus labels `sticky_rollout`,
//! `sticky_version` and `sticky_reason` (the regexes below; Istio takes them as
//! `extraStatTags`-style settings). Without the tag rules the metrics still show, with
//! rollout, version and reason in the name.

use crate::decision::Reason;

/// The name part that follows the rollout's name in a multi-rollout metric, and that the
/// tag rules look for to find where the rollout's name ends.
const VERSION_LABEL: &str = "version";
/// The decision counters' family.
const DECISIONS: &str = "sticky_canary.decisions";
/// The applied-weight gauges' family: in basis points (1/100 %), as proxy-wasm gauges hold
/// whole numbers and the filter splits clients in basis points.
const WEIGHT: &str = "sticky_canary.weight_basis_points";

/// `<family>.[rollout.<rollout>.]version.<version>`. `rollout` is the rollout's name when the
/// filter serves several ([`crate::rollouts`]); the single-rollout form keeps the names it
/// always had, so existing dashboards keep working.
fn name(family: &str, rollout: Option<&str>, version: &str) -> String {
    // Pushed piece by piece rather than `format!`ted: the same name in less code.
    let mut name = String::from(family);
    if let Some(rollout) = rollout {
        name.push_str(".rollout.");
        name.push_str(rollout);
    }
    name.push('.');
    name.push_str(VERSION_LABEL);
    name.push('.');
    name.push_str(version);
    name
}

/// Counter name for decisions of `reason` that chose `version`.
pub fn decision_counter(rollout: Option<&str>, version: &str, reason: Reason) -> String {
    let mut name = name(DECISIONS, rollout, version);
    name.push_str(".reason.");
    name.push_str(reason.as_str());
    name
}

/// Gauge name for the weight of `version` in the configuration the filter runs: what the
/// data plane applied, per proxy, whatever traffic it sees.
pub fn weight_gauge(rollout: Option<&str>, version: &str) -> String {
    name(WEIGHT, rollout, version)
}

/// Refuses rollout names the tag rules could not split off the counter name. The rollout
/// regex ends the name at the first `.version.`, so a rollout name with a dot-separated part
/// `version` (such as `prod/shop.version.b`) would be cut short; every other valid rollout name
/// is found exactly.
pub fn check_rollout_name(name: &str) -> Result<(), String> {
    if name.split('.').any(|part| part == VERSION_LABEL) {
        Err(crate::names::quoted(name)
            + " cannot be told apart from the version in the metric names \
               (...rollout.<rollout>.version.<version>...): no dot-separated part may be \
               `version`")
    } else {
        Ok(())
    }
}

/// Envoy tag name of the rollout label.
pub const ROLLOUT_TAG: &str = "sticky_rollout";
/// Envoy tag name of the version label.
pub const VERSION_TAG: &str = "sticky_version";
/// Envoy tag name of the reason label.
pub const REASON_TAG: &str = "sticky_reason";
/// Envoy `stats_tags` regex extracting the rollout (first group removed, second is the value).
/// Envoy files every Wasm-defined metric under `wasmcustom.` (and drops that prefix again in
/// `/stats/prometheus`), so the tag rules must match it. Single-rollout counters have no
/// rollout part and get no rollout label.
pub const ROLLOUT_TAG_REGEX: &str =
    r"^wasmcustom\.sticky_canary\.(?:decisions|weight_basis_points)(\.rollout\.(.+?))\.version\.";
/// Envoy `stats_tags` regex extracting the version, after the rollout part if there is one
/// (Envoy matches every rule against the full name): up to the reason of a counter, to the
/// end of a gauge's name.
pub const VERSION_TAG_REGEX: &str = r"^wasmcustom\.sticky_canary\.(?:decisions|weight_basis_points)(?:\.rollout\..+?)?(\.version\.(.+?))(?:\.reason\.[a-z]+)?$";
/// Envoy `stats_tags` regex extracting the reason.
pub const REASON_TAG_REGEX: &str = r"^wasmcustom\.sticky_canary\.decisions.*?(\.reason\.([a-z]+))$";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_stable() {
        assert_eq!(
            decision_counter(None, "v2", Reason::Hash),
            "sticky_canary.decisions.version.v2.reason.hash"
        );
        assert_eq!(
            decision_counter(None, "1.2.3", Reason::Override),
            "sticky_canary.decisions.version.1.2.3.reason.override"
        );
        assert_eq!(
            decision_counter(Some("prod/shop"), "v2", Reason::Cookie),
            "sticky_canary.decisions.rollout.prod/shop.version.v2.reason.cookie"
        );
        assert_eq!(
            weight_gauge(None, "v2"),
            "sticky_canary.weight_basis_points.version.v2"
        );
        assert_eq!(
            weight_gauge(Some("prod/shop"), "1.2.3"),
            "sticky_canary.weight_basis_points.rollout.prod/shop.version.1.2.3"
        );
    }

    #[test]
    fn rollout_names_the_tag_rules_could_not_split_are_refused() {
        for good in [
            "prod/shop",
            "prod/shop.v2",
            "version/shop",
            "prod/version",
            "prod/versions.x",
        ] {
            assert!(check_rollout_name(good).is_ok(), "{good}");
        }
        for bad in ["prod/shop.version", "prod/a.version.b"] {
            let err = check_rollout_name(bad).expect_err(bad);
            assert!(err.contains("cannot be told apart"), "{err}");
        }
    }

    /// Envoy's tag extraction as `stats_tags` documents it: every rule is matched against the
    /// full name, its second group is the tag's value and its first group is cut out of the
    /// name. (Rust's `regex` agrees with Envoy's ECMAScript engine on these patterns: lazy
    /// quantifiers, an optional non-capturing group; the e2e test `metrics` checks the real
    /// Envoy's `/stats/prometheus`.)
    fn tags(counter: &str) -> (String, Vec<(&'static str, String)>) {
        let name = format!("wasmcustom.{counter}");
        let mut cut = Vec::new();
        let mut tags = Vec::new();
        for (tag, rule) in [
            (ROLLOUT_TAG, ROLLOUT_TAG_REGEX),
            (VERSION_TAG, VERSION_TAG_REGEX),
            (REASON_TAG, REASON_TAG_REGEX),
        ] {
            if let Some(groups) = regex::Regex::new(rule).unwrap().captures(&name) {
                cut.push(groups.get(1).unwrap().range());
                tags.push((tag, groups[2].to_owned()));
            }
        }
        cut.sort_by_key(|range| range.start);
        let mut rest = String::new();
        let mut at = 0;
        for range in cut {
            rest.push_str(&name[at..range.start]);
            at = range.end;
        }
        rest.push_str(&name[at..]);
        (rest, tags)
    }

    #[test]
    fn the_tag_rules_split_both_forms_of_counter_names() {
        let cases = [
            (None, "v2", vec![(VERSION_TAG, "v2"), (REASON_TAG, "hash")]),
            (
                None,
                "1.2.3",
                vec![(VERSION_TAG, "1.2.3"), (REASON_TAG, "hash")],
            ),
            (
                Some("prod/shop"),
                "v2",
                vec![
                    (ROLLOUT_TAG, "prod/shop"),
                    (VERSION_TAG, "v2"),
                    (REASON_TAG, "hash"),
                ],
            ),
            (
                Some("prod/shop.eu.reason.x"),
                "1.version.2",
                vec![
                    (ROLLOUT_TAG, "prod/shop.eu.reason.x"),
                    (VERSION_TAG, "1.version.2"),
                    (REASON_TAG, "hash"),
                ],
            ),
            (
                Some("rollout/version-2"),
                "rollout",
                vec![
                    (ROLLOUT_TAG, "rollout/version-2"),
                    (VERSION_TAG, "rollout"),
                    (REASON_TAG, "hash"),
                ],
            ),
        ];
        for (rollout, version, expected) in cases {
            let counter = decision_counter(rollout, version, Reason::Hash);
            let (rest, found) = tags(&counter);
            assert_eq!(rest, "wasmcustom.sticky_canary.decisions", "{counter}");
            let expected: Vec<_> = expected
                .into_iter()
                .map(|(tag, value)| (tag, value.to_owned()))
                .collect();
            assert_eq!(found, expected, "{counter}");
            // The weight gauge of the same version gets the same labels, without a reason.
            let gauge = weight_gauge(rollout, version);
            let (rest, found) = tags(&gauge);
            assert_eq!(
                rest, "wasmcustom.sticky_canary.weight_basis_points",
                "{gauge}"
            );
            let without_reason: Vec<_> = expected
                .into_iter()
                .filter(|(tag, _)| *tag != REASON_TAG)
                .collect();
            assert_eq!(found, without_reason, "{gauge}");
        }
    }

    /// The names `check_rollout_name` refuses are exactly those the rules would cut short.
    #[test]
    fn a_refused_rollout_name_would_be_cut_short() {
        let counter = decision_counter(Some("prod/a.version.b"), "v1", Reason::Hash);
        let (_, tags) = tags(&counter);
        assert_eq!(tags[0], (ROLLOUT_TAG, "prod/a".to_owned()));
    }
}
