//! sticky-canary's proxy-wasm filter: keeps every client on one version of a service for a
//! whole canary rollout, so a page and everything it loads come from the same version.
//!
//! The decision and the configuration are pure and compile natively (`stickyctl` uses them
//! for `explain` and to render the WasmPlugin); only [`plugin`] touches the proxy-wasm host.

pub mod bucket;
pub mod config;
pub mod cookie;
pub mod decision;
pub mod metrics;
pub mod names;
#[cfg(target_arch = "wasm32")]
mod plugin;

pub use config::{Config, ConfigError, PluginConfig, VersionWeight};
pub use decision::{decide, Decision, Reason, RequestHeaders};
