//! Configuration of a plain Envoy that runs the filter in front of one upstream per version.
//!
//! Envoy reads its listeners and clusters from `lds.json` and `cds.json` in one directory and
//! reloads them when they are renamed into place, so a weight change is a file write, not a
//! restart. Everything here is pure: the files are written by the callers (the controller's
//! envoy-dir target and the end-to-end harness) with `runtime::fsutil::write_atomic`.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use api::names::cluster_name;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sticky_canary_filter::{ConfigError, PluginConfig};

/// Where a plain Envoy listens and where each version runs; stored as JSON in the envoy dir.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EnvoyLayout {
    /// Port of the HTTP listener on 127.0.0.1.
    pub listen_port: u16,
    /// The filter's `.wasm`, loaded by Envoy's V8 runtime.
    pub wasm_path: PathBuf,
    /// Address of each version's upstream, by version name.
    pub upstreams: BTreeMap<String, SocketAddr>,
}

/// File name of the [`EnvoyLayout`] in the envoy dir.
pub const LAYOUT_FILE: &str = "envoy-layout.json";
/// File name of the listener discovery file Envoy watches.
pub const LDS_FILE: &str = "lds.json";
/// File name of the cluster discovery file Envoy watches.
pub const CDS_FILE: &str = "cds.json";

/// Name of the only listener; fixed so a rewrite updates it in place instead of adding one.
pub const LISTENER_NAME: &str = "sticky_canary";
/// Name the filter's Wasm plugin is registered under in Envoy (log lines and config dumps).
pub const PLUGIN_NAME: &str = "sticky_canary";

/// Why a listener cannot be rendered.
#[derive(Debug, Clone, PartialEq)]
pub enum RenderError {
    /// The plugin configuration breaks one of the filter's rules; Envoy would refuse it.
    InvalidPlugin(ConfigError),
    /// A version has no upstream, so its route would point at a cluster that does not exist.
    MissingUpstream(String),
}

impl fmt::Display for RenderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RenderError::InvalidPlugin(err) => write!(f, "invalid plugin configuration: {err}"),
            RenderError::MissingUpstream(version) => write!(
                f,
                "version {version:?} has no upstream in the envoy layout ({LAYOUT_FILE})"
            ),
        }
    }
}

impl std::error::Error for RenderError {}

/// The Envoy bootstrap: admin on 127.0.0.1, listeners and clusters from the files in `dir`,
/// and stats tags that turn the filter's counter names into `sticky_version`/`sticky_reason`
/// labels (and `sticky_rollout`, for a filter serving several rollouts). Stats are flushed
/// every second (Envoy's default is 5 s), so latency histograms in `/stats/prometheus` keep up
/// with the counters that the canary analysis compares them with.
pub fn render_bootstrap(dir: &Path, admin_port: u16) -> Value {
    let file_source = |file: &str| {
        json!({
            "resource_api_version": "V3",
            "path_config_source": {
                "path": dir.join(file),
                // Watching the directory picks up the atomic rename of a rewritten file.
                "watched_directory": { "path": dir },
            },
        })
    };
    json!({
        "node": { "id": "sticky-canary", "cluster": "sticky-canary" },
        "stats_flush_interval": "1s",
        "admin": { "address": socket_address(admin_port) },
        "dynamic_resources": {
            "lds_config": file_source(LDS_FILE),
            "cds_config": file_source(CDS_FILE),
        },
        "stats_config": { "stats_tags": super::proxy_stats::stats_tags() },
    })
}

/// The listener discovery file: the filter with `plugin` as its configuration, then a router
/// with one route per configured version matched on the version header, and the stable
/// version as the default route.
///
/// Every version gets a route, also at weight 0, so a QA override can reach a canary no user
/// is on yet.
pub fn render_lds(plugin: &PluginConfig, layout: &EnvoyLayout) -> Result<Value, RenderError> {
    plugin.validate().map_err(RenderError::InvalidPlugin)?;
    for version in &plugin.versions {
        if !layout.upstreams.contains_key(&version.name) {
            return Err(RenderError::MissingUpstream(version.name.clone()));
        }
    }
    // A struct of strings, numbers and lists always serializes.
    let plugin_json = serde_json::to_string(plugin).expect("PluginConfig serializes to JSON");
    let mut routes: Vec<Value> = plugin
        .versions
        .iter()
        .map(|version| {
            let mut route = json!({
                "name": cluster_name(&version.name),
                "match": {
                    "prefix": "/",
                    "headers": [{
                        "name": plugin.header,
                        "string_match": { "exact": version.name },
                    }],
                },
                "route": { "cluster": cluster_name(&version.name) },
            });
            // Sealed: only the filter's stamp matches, and the upstream gets the plain name.
            if let Some(seal) = &plugin.seal {
                route["match"]["headers"][0]["string_match"]["exact"] =
                    json!(format!("{};{seal}", version.name));
                route["request_headers_to_add"] = json!([{
                    "header": { "key": plugin.header, "value": version.name },
                    "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
                }]);
            }
            route
        })
        .collect();
    // validate() guarantees at least one version; the first is stable. Unstamped requests
    // (the filter not running) go there, without a version header of the client's own.
    if let Some(stable) = plugin.versions.first() {
        routes.push(json!({
            "name": "stable",
            "match": { "prefix": "/" },
            "route": { "cluster": cluster_name(&stable.name) },
            "request_headers_to_remove": [plugin.header],
        }));
    }
    let virtual_hosts = json!([{ "name": "app", "domains": ["*"], "routes": routes }]);
    Ok(render_listener(
        &plugin_json,
        &layout.wasm_path,
        layout.listen_port,
        virtual_hosts,
    ))
}

/// The listener discovery file of one HTTP listener on 127.0.0.1 that runs the filter (loaded
/// from `wasm_path`, configured with the `pluginConfig` JSON `plugin_json`, not checked here)
/// before the router, with these virtual hosts. [`render_lds`] serves one service with it;
/// the end-to-end tests build a gateway in front of several.
pub fn render_listener(
    plugin_json: &str,
    wasm_path: &Path,
    listen_port: u16,
    virtual_hosts: Value,
) -> Value {
    let wasm = json!({
        "name": "envoy.filters.http.wasm",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
            "config": {
                "name": PLUGIN_NAME,
                "configuration": {
                    "@type": "type.googleapis.com/google.protobuf.StringValue",
                    "value": plugin_json,
                },
                // Same policy as the Istio WasmPlugin: should the VM fail, requests go through
                // unstamped to the default route (stable) rather than failing the whole site.
                "failure_policy": "FAIL_OPEN",
                "vm_config": {
                    "runtime": "envoy.wasm.runtime.v8",
                    "code": { "local": { "filename": wasm_path } },
                },
            },
        },
    });
    let manager = json!({
        "name": "envoy.filters.network.http_connection_manager",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
            "stat_prefix": LISTENER_NAME,
            "route_config": { "name": LISTENER_NAME, "virtual_hosts": virtual_hosts },
            "http_filters": [
                wasm,
                {
                    "name": "envoy.filters.http.router",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router",
                    },
                },
            ],
        },
    });
    // Files read through `path_config_source` hold a `DiscoveryResponse`.
    json!({
        "resources": [{
            "@type": "type.googleapis.com/envoy.config.listener.v3.Listener",
            "name": LISTENER_NAME,
            "address": socket_address(listen_port),
            "filter_chains": [{ "filters": [manager] }],
        }],
    })
}

/// The cluster discovery file: one static cluster per version in the layout.
pub fn render_cds(layout: &EnvoyLayout) -> Value {
    let clusters = layout
        .upstreams
        .iter()
        .map(|(version, address)| render_cluster(&cluster_name(version), *address))
        .collect::<Vec<_>>();
    json!({ "resources": clusters })
}

/// A static cluster `name` of one endpoint, as an entry of the cluster discovery file.
pub fn render_cluster(name: &str, address: SocketAddr) -> Value {
    json!({
        "@type": "type.googleapis.com/envoy.config.cluster.v3.Cluster",
        "name": name,
        "type": "STATIC",
        "connect_timeout": "1s",
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [{
                "lb_endpoints": [{
                    "endpoint": {
                        "address": {
                            "socket_address": {
                                "address": address.ip().to_string(),
                                "port_value": address.port(),
                            },
                        },
                    },
                }],
            }],
        },
    })
}

fn socket_address(port: u16) -> Value {
    json!({ "socket_address": { "address": "127.0.0.1", "port_value": port } })
}

#[cfg(test)]
mod tests {
    use super::*;
    use sticky_canary_filter::metrics::{REASON_TAG_REGEX, ROLLOUT_TAG_REGEX, VERSION_TAG_REGEX};
    use sticky_canary_filter::VersionWeight;

    fn layout() -> EnvoyLayout {
        EnvoyLayout {
            listen_port: 8080,
            wasm_path: PathBuf::from("/opt/sticky/filter.wasm"),
            upstreams: BTreeMap::from([
                ("v1".to_owned(), "127.0.0.1:9001".parse().unwrap()),
                ("v2".to_owned(), "127.0.0.1:9002".parse().unwrap()),
            ]),
        }
    }

    fn plugin(weights: &[(&str, f64)]) -> PluginConfig {
        PluginConfig::new(
            weights
                .iter()
                .map(|&(name, weight)| VersionWeight::new(name, weight))
                .collect(),
        )
    }

    fn listener(lds: &Value) -> &Value {
        let resources = lds["resources"].as_array().unwrap();
        assert_eq!(resources.len(), 1);
        &resources[0]
    }

    fn manager(lds: &Value) -> &Value {
        &listener(lds)["filter_chains"][0]["filters"][0]["typed_config"]
    }

    /// (route name, header name, header value or None for the default route, cluster)
    /// Route name, matched header (name, value) or `None` for the default route, cluster.
    type Route = (String, Option<(String, String)>, String);

    fn r(name: &str, header: Option<(String, String)>, cluster: &str) -> Route {
        (name.to_owned(), header, cluster.to_owned())
    }

    fn routes(lds: &Value) -> Vec<Route> {
        manager(lds)["route_config"]["virtual_hosts"][0]["routes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                assert_eq!(r["match"]["prefix"], "/");
                let header = r["match"]["headers"].as_array().map(|h| {
                    assert_eq!(h.len(), 1);
                    (
                        h[0]["name"].as_str().unwrap().to_owned(),
                        h[0]["string_match"]["exact"].as_str().unwrap().to_owned(),
                    )
                });
                (
                    r["name"].as_str().unwrap().to_owned(),
                    header,
                    r["route"]["cluster"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    }

    fn h(name: &str, value: &str) -> Option<(String, String)> {
        Some((name.to_owned(), value.to_owned()))
    }

    #[test]
    fn bootstrap_reads_listeners_and_clusters_from_the_dir() {
        let b = render_bootstrap(Path::new("/run/sticky"), 9901);
        assert_eq!(
            b["admin"]["address"]["socket_address"],
            json!({"address": "127.0.0.1", "port_value": 9901})
        );
        for (key, file) in [("lds_config", LDS_FILE), ("cds_config", CDS_FILE)] {
            let source = &b["dynamic_resources"][key];
            assert_eq!(source["resource_api_version"], "V3");
            assert_eq!(
                source["path_config_source"]["path"],
                format!("/run/sticky/{file}")
            );
            assert_eq!(
                source["path_config_source"]["watched_directory"]["path"],
                "/run/sticky"
            );
        }
        assert_eq!(
            b["stats_config"]["stats_tags"],
            json!([
                {"tag_name": "sticky_rollout", "regex": ROLLOUT_TAG_REGEX},
                {"tag_name": "sticky_version", "regex": VERSION_TAG_REGEX},
                {"tag_name": "sticky_reason", "regex": REASON_TAG_REGEX},
            ])
        );
    }

    #[test]
    fn every_version_gets_a_route_and_stable_is_the_default() {
        let cases = [
            (
                plugin(&[("v1", 90.0), ("v2", 10.0)]),
                vec![
                    r("version_v1", h("x-sticky-version", "v1"), "version_v1"),
                    r("version_v2", h("x-sticky-version", "v2"), "version_v2"),
                    r("stable", None, "version_v1"),
                ],
            ),
            (
                // Weight 0 still routable, for the QA override.
                plugin(&[("v1", 100.0), ("v2", 0.0)]),
                vec![
                    r("version_v1", h("x-sticky-version", "v1"), "version_v1"),
                    r("version_v2", h("x-sticky-version", "v2"), "version_v2"),
                    r("stable", None, "version_v1"),
                ],
            ),
            (
                // The first version is stable, whatever its name sorts as.
                plugin(&[("v2", 100.0)]),
                vec![
                    r("version_v2", h("x-sticky-version", "v2"), "version_v2"),
                    r("stable", None, "version_v2"),
                ],
            ),
            (
                PluginConfig {
                    header: "x-ver".to_owned(),
                    ..plugin(&[("v2", 50.0), ("v1", 50.0)])
                },
                vec![
                    r("version_v2", h("x-ver", "v2"), "version_v2"),
                    r("version_v1", h("x-ver", "v1"), "version_v1"),
                    r("stable", None, "version_v2"),
                ],
            ),
        ];
        for (plugin, expected) in cases {
            let lds = render_lds(&plugin, &layout()).unwrap();
            assert_eq!(routes(&lds), expected, "{plugin:?}");
        }
    }

    #[test]
    fn listener_runs_the_filter_with_the_plugin_config_before_the_router() {
        let plugin = PluginConfig {
            salt: "checkout".to_owned(),
            ..plugin(&[("v1", 95.5), ("v2", 4.5)])
        };
        let lds = render_lds(&plugin, &layout()).unwrap();
        let l = listener(&lds);
        assert_eq!(
            l["@type"],
            "type.googleapis.com/envoy.config.listener.v3.Listener"
        );
        assert_eq!(l["name"], LISTENER_NAME);
        assert_eq!(
            l["address"]["socket_address"],
            json!({"address": "127.0.0.1", "port_value": 8080})
        );
        let filters = manager(&lds)["http_filters"].as_array().unwrap();
        let names: Vec<_> = filters
            .iter()
            .map(|f| f["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            names,
            ["envoy.filters.http.wasm", "envoy.filters.http.router"]
        );
        let wasm = &filters[0]["typed_config"]["config"];
        assert_eq!(wasm["failure_policy"], "FAIL_OPEN");
        assert_eq!(wasm["vm_config"]["runtime"], "envoy.wasm.runtime.v8");
        assert_eq!(
            wasm["vm_config"]["code"]["local"]["filename"],
            "/opt/sticky/filter.wasm"
        );
        let value = wasm["configuration"]["value"].as_str().unwrap();
        assert_eq!(PluginConfig::from_json(value.as_bytes()).unwrap(), plugin);
    }

    #[test]
    fn refuses_what_envoy_could_not_serve() {
        let cases = [
            (
                plugin(&[("v1", 90.0), ("v3", 10.0)]),
                RenderError::MissingUpstream("v3".to_owned()),
                r#"version "v3" has no upstream in the envoy layout (envoy-layout.json)"#,
            ),
            (
                plugin(&[("v1", 90.0), ("v2", 5.0)]),
                RenderError::InvalidPlugin(ConfigError {
                    field: "versions".to_owned(),
                    message: "weights must sum to 100, they sum to 95".to_owned(),
                }),
                "invalid plugin configuration: versions: weights must sum to 100, they sum to 95",
            ),
            (
                plugin(&[]),
                RenderError::InvalidPlugin(ConfigError {
                    field: "versions".to_owned(),
                    message: "at least one version is required".to_owned(),
                }),
                "invalid plugin configuration: versions: at least one version is required",
            ),
        ];
        for (plugin, error, message) in cases {
            let err = render_lds(&plugin, &layout()).unwrap_err();
            assert_eq!(err, error);
            assert_eq!(err.to_string(), message);
        }
    }

    #[test]
    fn one_static_cluster_per_upstream() {
        let cds = render_cds(&layout());
        let clusters = cds["resources"].as_array().unwrap();
        let got: Vec<_> = clusters
            .iter()
            .map(|c| {
                assert_eq!(
                    c["@type"],
                    "type.googleapis.com/envoy.config.cluster.v3.Cluster"
                );
                assert_eq!(c["type"], "STATIC");
                assert_eq!(c["load_assignment"]["cluster_name"], c["name"]);
                let a = &c["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]
                    ["address"]["socket_address"];
                (
                    c["name"].as_str().unwrap().to_owned(),
                    a["address"].as_str().unwrap().to_owned(),
                    a["port_value"].as_u64().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("version_v1".to_owned(), "127.0.0.1".to_owned(), 9001),
                ("version_v2".to_owned(), "127.0.0.1".to_owned(), 9002),
            ]
        );
    }

    #[test]
    fn layout_file_format() {
        let json = r#"{"listenPort":8080,"wasmPath":"/opt/sticky/filter.wasm","upstreams":{"v1":"127.0.0.1:9001","v2":"127.0.0.1:9002"}}"#;
        let parsed: EnvoyLayout = serde_json::from_str(json).unwrap();
        assert_eq!(parsed, layout());
        assert_eq!(serde_json::to_string(&parsed).unwrap(), json);
        let unknown = r#"{"listenPort":1,"wasmPath":"/w","upstreams":{},"admin":2}"#;
        let err = serde_json::from_str::<EnvoyLayout>(unknown).unwrap_err();
        assert!(err.to_string().contains("unknown field `admin`"), "{err}");
    }

    #[test]
    fn sealed_routes_match_the_seal_and_the_stable_route_drops_a_clients_header() {
        let mut plugin = PluginConfig::new(vec![
            VersionWeight::new("v1", 90.0),
            VersionWeight::new("v2", 10.0),
        ]);
        plugin.seal = Some("0123456789abcdef".to_owned());
        let lds = render_lds(&plugin, &layout()).unwrap();
        assert_eq!(
            routes(&lds),
            [
                r(
                    "version_v1",
                    h("x-sticky-version", "v1;0123456789abcdef"),
                    "version_v1"
                ),
                r(
                    "version_v2",
                    h("x-sticky-version", "v2;0123456789abcdef"),
                    "version_v2"
                ),
                r("stable", None, "version_v1"),
            ]
        );
        let all = &manager(&lds)["route_config"]["virtual_hosts"][0]["routes"];
        assert_eq!(
            all[1]["request_headers_to_add"],
            json!([{"header": {"key": "x-sticky-version", "value": "v2"},
                    "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}]),
            "the upstream gets the plain version"
        );
        assert_eq!(
            all[2]["request_headers_to_remove"],
            json!(["x-sticky-version"])
        );
    }
}
