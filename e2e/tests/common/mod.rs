//! What every end-to-end test file shares: starting a stack with this package's upstream.

use std::path::Path;

use sticky_canary_e2e::stack::Stack;
use sticky_canary_filter::PluginConfig;

/// Upstreams for every version of `plugin` and an Envoy with the filter configured by it.
pub fn start(plugin: &PluginConfig) -> Stack {
    let upstream = Path::new(env!("CARGO_BIN_EXE_sticky-upstream"));
    match Stack::start(upstream, plugin) {
        Ok(stack) => stack,
        Err(err) => panic!("cannot start the end-to-end stack: {err:?}"),
    }
}
