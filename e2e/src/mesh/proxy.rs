//! An Envoy 1.40 that takes its whole configuration from istiod over xDS, as an ingress
//! gateway or as a workload's sidecar: what istio-agent would start, without the agent.
//!
//! istiod knows a proxy by its node id and metadata (namespace, labels), which select the
//! Gateways, Sidecars and WasmPlugins that apply to it; no Pod exists for it, unless the proxy
//! plays a registered workload ([`MeshProxy::start_as_workload`]): then istiod finds it by the
//! proxy's address, and the Services that select it are the proxy's.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU8, Ordering};

use anyhow::{anyhow, Context, Result};
use serde_json::{json, Value};

use super::control_plane::ControlPlane;
use super::sds::SdsStub;
use crate::browser::Http;
use crate::envoy_process::EnvoyProcess;

/// The Istio version istiod is told the proxies run: the development line it was built from.
pub const PROXY_ISTIO_VERSION: &str = "1.31.0";

/// Proxies started so far, which numbers their node addresses.
static STARTED: AtomicU8 = AtomicU8::new(0);

/// The address istiod knows the next proxy by: one of TEST-NET-1 (192.0.2.0/24, never routed),
/// so that istiod, which takes a proxy's labels from the workload instance at its address,
/// finds none and uses the labels the proxy announces. At 127.0.0.1 it would take the labels of
/// the ServiceEntry endpoints the upstreams have there. Nothing connects to this address: the
/// proxies bind where their Gateway and Sidecar objects say (127.0.0.1).
fn node_address() -> String {
    format!(
        "192.0.2.{}",
        1 + STARTED.fetch_add(1, Ordering::Relaxed) % 250
    )
}

/// What the proxy is to istiod.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// A gateway (`router` node): listeners from Gateway objects.
    Gateway,
    /// A sidecar: listeners from the Sidecar object of its namespace.
    Sidecar,
    /// An ambient waypoint (`waypoint` node, what `pilot-agent proxy waypoint` announces):
    /// the HBONE listener on 15008 and one internal listener holding a filter chain per
    /// service bound to it (`pilot/pkg/networking/core/listener_waypoint.go`).
    Waypoint,
}

/// What istio-agent adds to a proxy's Envoy about stats, which a proxy started here does not
/// have unless given: the stats settings of the agent's bootstrap template, and a bootstrap
/// override (`sidecar.istio.io/bootstrapOverride`), which the agent hands Envoy as
/// `--config-yaml` (`pkg/envoy/proxy.go`) and Envoy merges into the bootstrap.
#[derive(Debug, Clone, Default)]
pub struct AgentStats {
    /// The bootstrap's `stats_config` (see [`istio_stats_config`]).
    pub stats_config: Option<Value>,
    /// The override, JSON.
    pub bootstrap_override: Option<String>,
}

impl AgentStats {
    /// What istio-agent gives a pod whose bootstrap override is the chart's proxy stats
    /// (`charts/sticky-canary/files/proxy-stats.json`, the ConfigMap the chart installs): the
    /// stats settings of the pinned Istio's bootstrap template, and that file.
    pub fn istio_with_chart_proxy_stats() -> Result<AgentStats> {
        let template_path = super::tools::istio_bootstrap_template()?;
        let template = std::fs::read_to_string(&template_path)
            .with_context(|| format!("reading {}", template_path.display()))?;
        let chart =
            crate::locate::workspace_root().join("charts/sticky-canary/files/proxy-stats.json");
        let proxy_stats = std::fs::read_to_string(&chart)
            .with_context(|| format!("reading {}", chart.display()))?;
        Ok(AgentStats {
            stats_config: Some(istio_stats_config(&template)?),
            bootstrap_override: Some(proxy_stats),
        })
    }
}

/// The `stats_config` of istio-agent's bootstrap template (`envoy_bootstrap.json` of the
/// pinned Istio) with its optional parts (each a `{{ if }}` or `{{ range }}` block over
/// settings the proxies here do not have) left out: Istio's stats tag rules (`cluster_name`,
/// `response_code_class`, ...) and its default inclusion list.
pub fn istio_stats_config(template: &str) -> Result<Value> {
    let start = template
        .find("\"stats_config\":")
        .ok_or_else(|| anyhow!("no stats_config in the bootstrap template"))?;
    let end = template[start..]
        .find("\"admin\":")
        .map(|e| start + e)
        .ok_or_else(|| anyhow!("no admin after stats_config in the bootstrap template"))?;
    let mut section = &template[start..end];
    let mut plain = String::new();
    while let Some(open) = section.find("{{") {
        plain.push_str(&section[..open]);
        let close = section[open..]
            .find("}}")
            .map(|c| open + c + 2)
            .ok_or_else(|| anyhow!("an unclosed {{{{ in the bootstrap template"))?;
        let directive = section[open + 2..close - 2].trim_start_matches('-').trim();
        section = &section[close..];
        if directive.starts_with("if ") || directive.starts_with("range ") {
            let end = section
                .find("{{- end }}")
                .ok_or_else(|| anyhow!("{{{{ {directive} }}}} has no end"))?;
            section = &section[end + "{{- end }}".len()..];
        }
    }
    plain.push_str(section);
    let object = format!("{{{}}}", plain.trim_end().trim_end_matches(','));
    let parsed: Value = serde_json::from_str(&object)
        .with_context(|| format!("the bootstrap template's stats_config: {object}"))?;
    Ok(parsed["stats_config"].clone())
}

/// A running proxy fed by istiod; stopped when dropped.
pub struct MeshProxy {
    envoy: EnvoyProcess,
    /// A waypoint's certificates (see [`super::sds`]).
    _sds: Option<SdsStub>,
    /// `<name>.<namespace>`, as istiod's logs and config dumps name it.
    pub id: String,
}

impl MeshProxy {
    /// Starts the proxy `name` in `namespace` with pod `labels`, connected to `plane`'s
    /// istiod, and waits until Envoy is ready (its listeners come later: see
    /// [`MeshProxy::wait_for_listener`]).
    pub fn start(
        plane: &ControlPlane,
        role: Role,
        name: &str,
        namespace: &str,
        labels: &BTreeMap<String, String>,
    ) -> Result<MeshProxy> {
        MeshProxy::start_with(plane, role, name, namespace, labels, &AgentStats::default())
    }

    /// [`MeshProxy::start`] with what istio-agent would add about stats.
    pub fn start_with(
        plane: &ControlPlane,
        role: Role,
        name: &str,
        namespace: &str,
        labels: &BTreeMap<String, String>,
        stats: &AgentStats,
    ) -> Result<MeshProxy> {
        MeshProxy::spawn(plane, role, name, namespace, labels, stats, &node_address())
    }

    /// The proxy of the workload `namespace/name` registered at `address` (a WorkloadEntry, a
    /// Pod) with `labels`, as istio-agent would start it there: istiod finds the workload by
    /// the proxy's address (`pilot/pkg/serviceregistry/kube/controller/controller.go:882-935`,
    /// `pilot/pkg/serviceregistry/util/workloadinstances/util.go:48-87`), and the Services that
    /// select it are the proxy's, which is how a Gateway API gateway's configuration finds its
    /// proxies (`pilot/pkg/model/push_context.go:2462-2475`) and how a waypoint finds the
    /// services bound to it (`pilot/pkg/model/service.go:1053-1083`).
    pub fn start_as_workload(
        plane: &ControlPlane,
        role: Role,
        name: &str,
        namespace: &str,
        labels: &BTreeMap<String, String>,
        address: &str,
    ) -> Result<MeshProxy> {
        MeshProxy::start_as_workload_with(
            plane,
            role,
            name,
            namespace,
            labels,
            address,
            &AgentStats::default(),
        )
    }

    /// [`MeshProxy::start_as_workload`] with what istio-agent would add about stats.
    pub fn start_as_workload_with(
        plane: &ControlPlane,
        role: Role,
        name: &str,
        namespace: &str,
        labels: &BTreeMap<String, String>,
        address: &str,
        stats: &AgentStats,
    ) -> Result<MeshProxy> {
        MeshProxy::spawn(plane, role, name, namespace, labels, stats, address)
    }

    fn spawn(
        plane: &ControlPlane,
        role: Role,
        name: &str,
        namespace: &str,
        labels: &BTreeMap<String, String>,
        stats: &AgentStats,
        address: &str,
    ) -> Result<MeshProxy> {
        let kind = match role {
            Role::Gateway => "router",
            Role::Sidecar => "sidecar",
            Role::Waypoint => "waypoint",
        };
        let id = format!("{name}.{namespace}");
        let mut bootstrap = json!({
            "node": {
                "id": format!("{kind}~{address}~{id}~{namespace}.svc.cluster.local"),
                "cluster": format!("{name}.{namespace}"),
                "metadata": {
                    "NAMESPACE": namespace,
                    "NAME": name,
                    "CLUSTER_ID": "Kubernetes",
                    "ISTIO_VERSION": PROXY_ISTIO_VERSION,
                    "LABELS": labels,
                    "WORKLOAD_NAME": name,
                    "INSTANCE_IPS": address,
                    "MESH_ID": "cluster.local",
                    // No iptables here: istiod then builds no capturing listeners on
                    // 0.0.0.0 (15001, 15006), only those a Sidecar object binds.
                    "INTERCEPTION_MODE": "NONE",
                    // With ambient on, istiod gives gateways and sidecars an HBONE cluster
                    // (`connect_originate`, mutual TLS with istio-agent's SDS certificates,
                    // which these proxies have not; `pilot/pkg/networking/core/cluster.go:
                    // 393-395`), and Envoy would not finish starting without its secrets.
                    // Nothing here sends HBONE. (A waypoint ignores this; it gets
                    // certificates below.)
                    "DISABLE_HBONE_SEND": "true",
                },
            },
            "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}},
            "dynamic_resources": {
                "ads_config": {
                    "api_type": "GRPC",
                    "transport_api_version": "V3",
                    "grpc_services": [{"envoy_grpc": {"cluster_name": "xds-grpc"}}],
                },
                "cds_config": {"ads": {}, "resource_api_version": "V3"},
                "lds_config": {"ads": {}, "resource_api_version": "V3"},
            },
            "static_resources": {"clusters": [grpc_cluster("xds-grpc", plane.xds())]},
        });
        // Ambient's listeners hand connections to each other through Envoy's internal
        // listeners (a waypoint's always, a gateway's `connect_originate` with ambient on),
        // which need this extension in the bootstrap (istio-agent's template,
        // `tools/packaging/common/envoy_bootstrap.json`, always has it).
        bootstrap["bootstrap_extensions"] = json!([{
            "name": "envoy.bootstrap.internal_listener",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.bootstrap.internal_listener.v3.InternalListener",
            },
        }]);
        let mut sds = None;
        if role == Role::Waypoint {
            // Its certificates, where istio-agent's bootstrap has its SDS server.
            let stub = SdsStub::start(&format!(
                "spiffe://cluster.local/ns/{namespace}/sa/{}",
                labels
                    .get("gateway.networking.k8s.io/gateway-name")
                    .map_or(name, String::as_str)
            ))?;
            if let Some(clusters) = bootstrap
                .pointer_mut("/static_resources/clusters")
                .and_then(Value::as_array_mut)
            {
                clusters.push(grpc_cluster("sds-grpc", stub.address));
            }
            sds = Some(stub);
        }
        let dir = tempfile::Builder::new()
            .prefix(&format!("sticky-{name}-"))
            .tempdir()?;
        if let Some(stats_config) = &stats.stats_config {
            bootstrap["stats_config"] = stats_config.clone();
        }
        let args: Vec<&str> = match &stats.bootstrap_override {
            Some(text) => vec!["--config-yaml", text],
            None => vec![],
        };
        let mut envoy = EnvoyProcess::spawn(&id, dir, &bootstrap, 1, &args)?;
        envoy.wait_ready().map_err(|err| envoy.explain(err))?;
        Ok(MeshProxy {
            envoy,
            _sds: sds,
            id,
        })
    }

    /// Waits until istiod gave the proxy an active listener on 127.0.0.1:`port`.
    pub fn wait_for_listener(&mut self, port: u16) -> Result<Http> {
        let result = self
            .envoy
            .wait_for(&format!("a listener on port {port}"), |envoy| {
                let dump = envoy.config_dump("resource=dynamic_listeners")?;
                let active = dump["configs"].as_array().into_iter().flatten().any(|l| {
                    l.get("warming_state").is_none()
                        && l.pointer("/active_state/listener/address/socket_address/port_value")
                            == Some(&json!(port))
                });
                Ok(active.then_some(()))
            });
        result.map_err(|err| self.envoy.explain(err))?;
        Ok(Http::new(SocketAddr::from(([127, 0, 0, 1], port))))
    }

    /// Envoy's whole configuration as it holds it now (admin `/config_dump`, with the
    /// endpoints of every cluster): what istiod made of the objects.
    pub fn config_dump(&self) -> Result<Value> {
        self.envoy.config_dump("include_eds")
    }

    /// The Envoy process, for its stats, log and config dump.
    pub fn envoy(&self) -> &EnvoyProcess {
        &self.envoy
    }

    /// The names of the HTTP filters of the listener on `port`, in order, as istiod built them.
    pub fn http_filters(&self, port: u16) -> Result<Vec<String>> {
        let dump = self.envoy.config_dump("resource=dynamic_listeners")?;
        Ok(dump["configs"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|l| {
                l.pointer("/active_state/listener/address/socket_address/port_value")
                    == Some(&json!(port))
            })
            .flat_map(|l| {
                l.pointer("/active_state/listener/filter_chains")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .flat_map(|chain| chain["filters"].as_array().into_iter().flatten())
                    .flat_map(|f| {
                        f.pointer("/typed_config/http_filters")
                            .and_then(Value::as_array)
                            .into_iter()
                            .flatten()
                            .filter_map(|f| f["name"].as_str().map(str::to_owned))
                    })
                    .collect::<Vec<String>>()
            })
            .collect())
    }
}

/// A static cluster `name` of one gRPC (HTTP/2) server at `address`, as istio-agent's
/// bootstrap has for istiod (`xds-grpc`) and for the agent's SDS server (`sds-grpc`).
fn grpc_cluster(name: &str, address: std::net::SocketAddr) -> Value {
    json!({
        "name": name,
        "type": "STATIC",
        "connect_timeout": "1s",
        "typed_extension_protocol_options": {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                "explicit_http_config": {"http2_protocol_options": {}},
            },
        },
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {"socket_address": {
                "address": address.ip().to_string(),
                "port_value": address.port(),
            }}}}]}],
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_templates_stats_config_without_its_optional_parts() {
        let template = r#"{
  "stats_config": {
    "use_all_default_tags": false,
    "stats_tags": [
      {"tag_name": "cluster_name", "regex": "^cluster(\\.(.+);)"},
      {{- range $a, $tag := .extraStatTags }}
      {"regex": "({{ $tag }}=\\.=(.*?);\\.;)", "tag_name": "{{ $tag }}"},
      {{- end }}
      {"tag_name": "cache", "regex": "(cache\\.(.+?)\\.)"}
    ],
    {{- if .histogram_buckets }}
    "histogram_bucket_settings": {{ toJson .histogram_buckets }},
    {{- end }}
    "stats_matcher": {"inclusion_list": {"patterns": [{"prefix": "istio"}]}}
  },
  "admin": {}
}"#;
        let config = istio_stats_config(template).unwrap();
        assert_eq!(config["use_all_default_tags"], false);
        let tags: Vec<&str> = config["stats_tags"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|t| t["tag_name"].as_str())
            .collect();
        assert_eq!(tags, ["cluster_name", "cache"]);
        assert!(config.get("histogram_bucket_settings").is_none());
        assert!(istio_stats_config("{}").is_err());
    }
}
