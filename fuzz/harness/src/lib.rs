//! The bodies of sticky-canary's fuzz targets, as Envoy keeps its fuzzers: one function per
//! target that takes the fuzzer's bytes and panics on a finding, so that cargo-fuzz
//! (`fuzz/fuzz_targets/`) and the corpus replay of `make test` (`tests/replay.rs`, without
//! libFuzzer) run exactly the same code. Each body checks more than "no panic": the oracles
//! next to it say what must hold for every input.
//!
//! The inputs are what reaches sticky-canary from outside: the filter's configuration (single
//! and multi-rollout), requests through [`decide`](sticky_canary_filter::decide), `Cookie`
//! headers, and the controller's specs (YAML), plan files, Prometheus answers and dashboard
//! actions.

mod controller;
mod filter;

pub use controller::{dashboard_action, plan_file, prometheus_answer, spec_yaml};
pub use filter::{cookie, decide, filter_config, rollouts};

/// A target's body: the fuzzer's bytes in, a panic on a finding.
pub type Body = fn(&[u8]);

/// Every target by its name, which is also its corpus directory: `fuzz/corpus/<name>/`.
pub const TARGETS: &[(&str, Body)] = &[
    ("filter_config", filter_config),
    ("rollouts", rollouts),
    ("decide", decide),
    ("cookie", cookie),
    ("spec_yaml", spec_yaml),
    ("plan_file", plan_file),
    ("prometheus_answer", prometheus_answer),
    ("dashboard_action", dashboard_action),
];
