//! Names of the decision counters, one per version and reason.
//!
//! The proxy-wasm ABI has no metric labels, so version and reason are encoded in the name and
//! Envoy's `stats_tags` turn them back into the Prometheus labels `sticky_version` and
//! `sticky_reason` (the regexes below; Istio takes them as `extraStatTags`-style settings).
//! Without the tag rules the counters still show, with version and reason in the name.

use crate::decision::Reason;

/// Counter name for decisions of `reason` that chose `version`.
pub fn decision_counter(version: &str, reason: Reason) -> String {
    format!(
        "sticky_canary.decisions.version.{version}.reason.{}",
        reason.as_str()
    )
}

/// Envoy tag name of the version label.
pub const VERSION_TAG: &str = "sticky_version";
/// Envoy tag name of the reason label.
pub const REASON_TAG: &str = "sticky_reason";
/// Envoy `stats_tags` regex extracting the version (first group removed, second is the value).
/// Envoy files every Wasm-defined metric under `wasmcustom.` (and drops that prefix again in
/// `/stats/prometheus`), so the tag rules must match it.
pub const VERSION_TAG_REGEX: &str =
    r"^wasmcustom\.sticky_canary\.decisions(\.version\.(.+?))\.reason\.";
/// Envoy `stats_tags` regex extracting the reason.
pub const REASON_TAG_REGEX: &str = r"^wasmcustom\.sticky_canary\.decisions.*?(\.reason\.([a-z]+))$";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_stable() {
        assert_eq!(
            decision_counter("v2", Reason::Hash),
            "sticky_canary.decisions.version.v2.reason.hash"
        );
        assert_eq!(
            decision_counter("1.2.3", Reason::Override),
            "sticky_canary.decisions.version.1.2.3.reason.override"
        );
    }
}
