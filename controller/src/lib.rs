//! stickyctl: the rollout model of sticky-canary, its renderers and its targets.

pub mod analysis;
pub mod cli;
pub mod controller;
pub mod dashboard;
pub mod error;
pub mod exposure;
pub mod fsutil;
pub mod metrics;
pub mod model;
pub mod notify;
pub mod ops;
pub mod plan;
pub mod prometheus;
pub mod reconcile;
pub mod render;
pub mod rollout;
pub mod status;
pub mod target;
