//! stickyctl: the rollout model of sticky-canary, its renderers and its targets.

pub mod cli;
pub mod controller;
pub mod error;
pub mod fsutil;
pub mod model;
pub mod ops;
pub mod plan;
pub mod reconcile;
pub mod render;
pub mod status;
pub mod target;
