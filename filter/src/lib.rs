//! sticky-canary's proxy-wasm filter: keeps every client on one version of a service for a
//! whole canary rollout, so a page and everything it loads come from the same version.
//!
//! The decision and the configuration are pure and compile natively (`stickyctl` uses them
//! for `explain` and to render the WasmPlugin); only [`plugin`] touches the proxy-wasm host.
//! One filter serves one rollout for every request, or many, each request taking the rollout
//! of its service ([`rollouts`]).

pub mod bucket;
pub mod config;
pub mod cookie;
pub mod decision;
pub mod guard;
pub mod ids;
pub mod metrics;
pub mod names;
#[cfg(target_arch = "wasm32")]
mod plugin;
pub mod rollouts;
mod rollouts_json;

pub use config::{Config, ConfigError, PluginConfig, VersionWeight};
pub use decision::{decide, Decision, Reason, RequestHeaders};
pub use rollouts::{FilterConfig, Rollout, Rollouts};
pub use rollouts_json::{RolloutConfig, RolloutsConfig};

/// proxy-wasm callbacks the SDK exports but this filter leaves at their defaults. `make wasm`
/// removes their exports from the module (`sticky-canary-trim`), and the host skips a callback
/// that is not exported. The per-request ones (bodies, trailers, log, done) would each make
/// Envoy enter the VM on every request, about 1,700 Envoy instructions per call (see
/// BENCHMARKS.md). The others are never called for an HTTP filter that opens no connections,
/// calls, queues or timers; their exports only keep the SDK's dispatch code in the module.
/// Implementing one of them in `plugin.rs` means taking it off this list.
pub const UNUSED_CALLBACKS: &[&str] = &[
    "proxy_on_request_body",
    "proxy_on_request_trailers",
    "proxy_on_response_body",
    "proxy_on_response_trailers",
    "proxy_on_log",
    "proxy_on_done",
    "proxy_on_new_connection",
    "proxy_on_downstream_data",
    "proxy_on_downstream_connection_close",
    "proxy_on_upstream_data",
    "proxy_on_upstream_connection_close",
    "proxy_on_http_call_response",
    "proxy_on_grpc_receive_initial_metadata",
    "proxy_on_grpc_receive",
    "proxy_on_grpc_receive_trailing_metadata",
    "proxy_on_grpc_close",
    "proxy_on_queue_ready",
    "proxy_on_tick",
    "proxy_on_foreign_function",
];
