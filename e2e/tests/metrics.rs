//! The filter's metrics, as Prometheus scrapes them from Envoy: a decision counter per version
//! and reason, labelled `sticky_version` and `sticky_reason` by the bootstrap's stats tags,
//! and the weight each version has in the configuration the filter runs.

mod common;

use std::collections::BTreeMap;

use sticky_canary_e2e::browser::Browser;
use sticky_canary_e2e::crowd::{Crowd, Tally};
use sticky_canary_e2e::exposition;
use sticky_canary_e2e::stack::weights;

/// `sticky_canary_decisions{sticky_version=..,sticky_reason=..}` values, by (version, reason):
/// the single-rollout form's counters carry no rollout label.
fn decisions(exposition: &str) -> BTreeMap<(String, String), u64> {
    exposition::decisions(exposition)
        .into_iter()
        .filter_map(|((rollout, version, reason), value)| {
            rollout.is_none().then_some(((version, reason), value))
        })
        .collect()
}

#[test]
fn decisions_are_counted_per_version_and_reason_on_stats_prometheus() {
    let mut plugin = weights(&[("v1", 50.0), ("v2", 50.0)]);
    plugin.override_.public = true;
    let stack = common::start(&plugin);
    // Envoy's readiness probe went through the filter too: count from here.
    let before = decisions(&stack.envoy.prometheus().unwrap());
    assert_eq!(
        before.len(),
        12,
        "a series per version and reason: {before:?}"
    );
    let mut crowd = Crowd::new(300);
    let tally = Tally::of(&crowd.visit(&stack.http, "/").unwrap());
    let mut qa = Browser::new().with_header("x-sticky-override", "v2");
    for _ in 0..7 {
        qa.visit(&stack.http, "/").unwrap();
    }
    let counted: BTreeMap<_, _> = decisions(&stack.envoy.prometheus().unwrap())
        .into_iter()
        .map(|(series, value)| {
            let base = before.get(&series).copied().unwrap_or(0);
            (series, value - base)
        })
        .collect();
    let pages = |v: &str| tally.pages.get(v).copied().unwrap_or(0) as u64;
    let mut expected = BTreeMap::new();
    for version in ["v1", "v2"] {
        // New clients: the page is hashed, its three sub-resources follow the new cookie.
        expected.insert((version.to_owned(), "hash".to_owned()), pages(version));
        expected.insert(
            (version.to_owned(), "cookie".to_owned()),
            3 * pages(version),
        );
        expected.insert((version.to_owned(), "trusted".to_owned()), 0);
        expected.insert((version.to_owned(), "repin".to_owned()), 0);
        expected.insert((version.to_owned(), "preflight".to_owned()), 0);
        let overrides = if version == "v2" { 7 * 4 } else { 0 };
        expected.insert((version.to_owned(), "override".to_owned()), overrides);
    }
    assert_eq!(counted, expected);
}

/// The weight gauges follow the configuration Envoy runs, without a single request: set at
/// start, changed by a live reconfiguration, and a version at weight 0 reports 0.
#[test]
fn the_weights_in_effect_are_reported_per_version() {
    let weights_now = |stack: &sticky_canary_e2e::stack::Stack| -> BTreeMap<String, u64> {
        exposition::weights(&stack.envoy.prometheus().unwrap())
            .into_iter()
            .filter_map(|((rollout, version), value)| rollout.is_none().then_some((version, value)))
            .collect()
    };
    let mut stack = common::start(&weights(&[("v1", 95.0), ("v2", 5.0)]));
    let expect = |pairs: &[(&str, u64)]| -> BTreeMap<String, u64> {
        pairs.iter().map(|&(v, bp)| (v.to_owned(), bp)).collect()
    };
    assert_eq!(weights_now(&stack), expect(&[("v1", 9500), ("v2", 500)]));
    stack
        .set_plugin(&weights(&[("v1", 66.67), ("v2", 33.33)]))
        .unwrap();
    assert_eq!(weights_now(&stack), expect(&[("v1", 6667), ("v2", 3333)]));
    stack
        .set_plugin(&weights(&[("v1", 0.0), ("v2", 100.0)]))
        .unwrap();
    assert_eq!(weights_now(&stack), expect(&[("v1", 0), ("v2", 10000)]));
}
