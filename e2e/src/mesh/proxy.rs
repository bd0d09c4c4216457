//! An Envoy 1.40 that takes its whole configuration from istiod over xDS, as an ingress
//! gateway or as a workload's sidecar: what istio-agent would start, without the agent.
//!
//! istiod knows a proxy by its node id and metadata (namespace, labels), which select the
//! Gateways, Sidecars and WasmPlugins that apply to it; no Pod exists for it.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use anyhow::Result;
use serde_json::{json, Value};

use super::control_plane::ControlPlane;
use crate::browser::Http;
use crate::envoy_process::EnvoyProcess;

/// The Istio version istiod is told the proxies run: the development line it was built from.
pub const PROXY_ISTIO_VERSION: &str = "1.31.0";

/// What the proxy is to istiod.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// A gateway (`router` node): listeners from Gateway objects.
    Gateway,
    /// A sidecar: listeners from the Sidecar object of its namespace.
    Sidecar,
}

/// A running proxy fed by istiod; stopped when dropped.
pub struct MeshProxy {
    envoy: EnvoyProcess,
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
        let kind = match role {
            Role::Gateway => "router",
            Role::Sidecar => "sidecar",
        };
        let id = format!("{name}.{namespace}");
        let bootstrap = json!({
            "node": {
                "id": format!("{kind}~127.0.0.1~{id}~{namespace}.svc.cluster.local"),
                "cluster": format!("{name}.{namespace}"),
                "metadata": {
                    "NAMESPACE": namespace,
                    "NAME": name,
                    "CLUSTER_ID": "Kubernetes",
                    "ISTIO_VERSION": PROXY_ISTIO_VERSION,
                    "LABELS": labels,
                    "WORKLOAD_NAME": name,
                    "INSTANCE_IPS": "127.0.0.1",
                    "MESH_ID": "cluster.local",
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
            "static_resources": {"clusters": [{
                "name": "xds-grpc",
                "type": "STATIC",
                "connect_timeout": "1s",
                "typed_extension_protocol_options": {
                    "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                        "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                        "explicit_http_config": {"http2_protocol_options": {}},
                    },
                },
                "load_assignment": {
                    "cluster_name": "xds-grpc",
                    "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {"socket_address": {
                        "address": plane.xds.ip().to_string(),
                        "port_value": plane.xds.port(),
                    }}}}]}],
                },
            }]},
        });
        let dir = tempfile::Builder::new()
            .prefix(&format!("sticky-{name}-"))
            .tempdir()?;
        let mut envoy = EnvoyProcess::spawn(&id, dir, &bootstrap, 1, &[])?;
        envoy.wait_ready().map_err(|err| envoy.explain(err))?;
        Ok(MeshProxy { envoy, id })
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
