//! stickyctl: the rollout model of sticky-canary, its renderers and its targets.

pub mod fsutil;
pub mod render;
