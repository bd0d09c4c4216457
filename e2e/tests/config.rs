//! Envoy accepts the rendered configuration and refuses a bad plugin configuration with the
//! filter's own message, both up front (`envoy --mode validate`) and live, where the running
//! Envoy keeps serving its last good configuration.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;

use render::envoy::{render_cds, render_lds, EnvoyLayout};
use serde_json::Value;
use sticky_canary_e2e::browser::Dest;
use sticky_canary_e2e::envoy::validate;
use sticky_canary_e2e::locate;
use sticky_canary_e2e::stack::weights;
use sticky_canary_filter::PluginConfig;

/// Bad `pluginConfig`s and the message the filter must log for each.
const BAD_CONFIGS: [(&str, &str); 4] = [
    (
        r#"{"versions":[{"name":"v1","weight":90},{"name":"v2","weight":5}]}"#,
        "sticky-canary: invalid plugin configuration: versions: weights must sum to 100, they sum to 95",
    ),
    (
        r#"{"versions":[{"name":"v1","weight":100}],"colour":"blue"}"#,
        "sticky-canary: invalid plugin configuration: colour: unknown field `colour`",
    ),
    (
        r#"{"versions":[{"name":"v 1","weight":100}]}"#,
        "sticky-canary: invalid plugin configuration: versions[0].name: \"v 1\" is not a valid version name",
    ),
    (
        "not json",
        "sticky-canary: invalid plugin configuration: (root): expected",
    ),
];

fn layout() -> EnvoyLayout {
    let address = |port| SocketAddr::from(([127, 0, 0, 1], port));
    EnvoyLayout {
        listen_port: 8080,
        wasm_path: locate::filter_wasm().unwrap(),
        upstreams: BTreeMap::from([
            ("v1".to_owned(), address(9001)),
            ("v2".to_owned(), address(9002)),
        ]),
    }
}

/// The rendered listener with its plugin configuration replaced by `raw`, as a hand-edited or
/// corrupted file would hold it (`render_lds` itself refuses invalid configurations).
fn lds_with_raw_plugin_config(plugin: &PluginConfig, layout: &EnvoyLayout, raw: &str) -> Value {
    let mut lds = render_lds(plugin, layout).unwrap();
    let value = lds
        .pointer_mut("/resources/0/filter_chains/0/filters/0/typed_config/http_filters/0/typed_config/config/configuration/value")
        .expect("the rendered listener carries the plugin configuration");
    *value = Value::from(raw);
    lds
}

#[test]
fn envoy_validate_accepts_the_rendered_configuration() {
    let layout = layout();
    for plugin in [
        weights(&[("v1", 90.0), ("v2", 10.0)]),
        weights(&[("v1", 100.0), ("v2", 0.0)]),
    ] {
        let result =
            validate(&render_lds(&plugin, &layout).unwrap(), &render_cds(&layout)).unwrap();
        assert!(result.ok, "{}", result.output);
    }
}

#[test]
fn envoy_validate_refuses_a_bad_plugin_configuration_with_the_filters_message() {
    let layout = layout();
    let good = weights(&[("v1", 90.0), ("v2", 10.0)]);
    for (raw, message) in BAD_CONFIGS {
        let lds = lds_with_raw_plugin_config(&good, &layout, raw);
        let result = validate(&lds, &render_cds(&layout)).unwrap();
        assert!(!result.ok, "{raw} was accepted");
        assert!(
            result.output.contains(message),
            "{raw}: the output does not show {message:?}:\n{}",
            result.output
        );
    }
}

/// Pushed to a running Envoy, a bad configuration is rejected (with the filter's message in
/// the log and in `listener_manager.lds.update_rejected`) and the last good one keeps serving.
#[test]
fn a_running_envoy_keeps_its_last_good_configuration() {
    let good = weights(&[("v1", 100.0), ("v2", 0.0)]);
    let mut stack = common::start(&good);
    let good_json = serde_json::to_string(&good).unwrap();
    let layout = stack.envoy.layout().clone();
    for (raw, message) in BAD_CONFIGS {
        let rejected = stack
            .envoy
            .stat("listener_manager.lds.update_rejected")
            .unwrap();
        stack
            .envoy
            .write_lds(&lds_with_raw_plugin_config(&good, &layout, raw))
            .unwrap();
        let now = stack
            .envoy
            .wait_for_stat_change("listener_manager.lds.update_rejected", rejected)
            .unwrap();
        assert_eq!(now, rejected + 1);
        assert!(stack.envoy.log().unwrap().contains(message), "{message}");
        assert_eq!(
            stack.envoy.active_plugin_config().unwrap().as_deref(),
            Some(good_json.as_str())
        );
        let response = stack
            .http
            .fresh()
            .get("/", &Dest::Document.fetch_headers())
            .unwrap();
        assert_eq!(response.status, 200);
        assert_eq!(response.served_by.as_deref(), Some("v1"));
    }
    // And a good configuration after the bad ones is taken.
    stack
        .set_plugin(&weights(&[("v1", 0.0), ("v2", 100.0)]))
        .unwrap();
    let response = stack
        .http
        .get("/", &Dest::Document.fetch_headers())
        .unwrap();
    assert_eq!(response.served_by.as_deref(), Some("v2"));
}
