//! A whole mesh on one machine: the control plane, an ingress gateway in `istio-system` fed by
//! istiod, and services with their versions behind it, each an upstream process per version
//! registered with a ServiceEntry; and `stickyctl` driving the cluster. The mesh tests and
//! `make demo-mesh` start one of these.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use serde_json::{json, Value};

use super::control_plane::ControlPlane;
use super::proxy::{AgentStats, MeshProxy, Role};
use crate::browser::{Browser, Http};
use crate::envoy::free_port;
use crate::locate;
use crate::operator::Stickyctl;
use crate::site::Faults;
use crate::upstream::Upstream;
use crate::wait;

/// Where the services run.
pub const NS: &str = "prod";
/// How long a change may take to travel from the API server through istiod to Envoy.
pub const PROPAGATION: Duration = Duration::from_secs(30);
/// The shared plugin of the ingress gateway, as `stickyctl` names it.
pub const GATEWAY_PLUGIN: &str = "sticky-canary-gateway-istio-ingressgateway";

/// A service and its versions.
#[derive(Debug, Clone)]
pub struct Service<'a> {
    /// Its name: `<name>.prod.svc.cluster.local` in the mesh, `<name>.example.com` outside.
    pub name: &'a str,
    /// Its versions, stable first.
    pub versions: &'a [&'a str],
    /// The service its upstreams call on `/hop` (see `site::HOP`), through this address.
    pub calls: Option<(SocketAddr, String)>,
    /// The faults a version's upstream injects (none for a version not listed).
    pub faults: &'a [(&'a str, Faults)],
}

impl<'a> Service<'a> {
    /// A service that calls nobody.
    pub fn new(name: &'a str, versions: &'a [&'a str]) -> Self {
        Service {
            name,
            versions,
            calls: None,
            faults: &[],
        }
    }

    /// The arguments of `version`'s upstream: whom it calls on `/hop`, the faults it injects.
    pub fn upstream_args(&self, version: &str) -> Vec<String> {
        let call = self
            .calls
            .iter()
            .flat_map(|(address, host)| ["--call".into(), address.to_string(), host.clone()]);
        let faults = self
            .faults
            .iter()
            .filter(|(v, _)| *v == version)
            .flat_map(|(_, faults)| faults.args());
        call.chain(faults).collect()
    }
}

/// The control plane, the gateway and the services; everything stops when dropped.
pub struct MeshStack {
    /// The control plane.
    pub plane: ControlPlane,
    /// The ingress gateway.
    pub gateway: MeshProxy,
    /// A client of the gateway's listener.
    pub http: Http,
    /// The gateway's listener port.
    pub port: u16,
    /// `stickyctl` with the admin's kubeconfig, in [`NS`].
    pub stickyctl: Stickyctl,
    _upstreams: Vec<Upstream>,
}

/// The upstream of `service`'s `version` names itself `<service>-<version>`.
pub fn served_name(service: &str, version: &str) -> String {
    format!("{service}-{version}")
}

/// The host clients outside the mesh use for `service`.
pub fn host(service: &str) -> String {
    format!("{service}.example.com")
}

/// The service's name in the mesh.
pub fn fqdn(service: &str) -> String {
    format!("{service}.{NS}.svc.cluster.local")
}

impl MeshStack {
    /// `services` behind the gateway as `<service>.example.com` and in the mesh, listening on
    /// `service_port` (their port in the mesh, where a caller's sidecar takes their calls), each
    /// with the user's own VirtualService routing every request to it; `upstream_bin` is the
    /// `sticky-upstream` binary.
    pub fn start(
        upstream_bin: &Path,
        services: &[Service],
        service_port: u16,
    ) -> Result<MeshStack> {
        MeshStack::start_with(upstream_bin, services, service_port, &AgentStats::default())
    }

    /// [`MeshStack::start`] with a gateway that has what istio-agent would add about stats.
    pub fn start_with(
        upstream_bin: &Path,
        services: &[Service],
        service_port: u16,
        gateway_stats: &AgentStats,
    ) -> Result<MeshStack> {
        let plane = ControlPlane::start(&locate::istio_crds()?)?;
        let port = free_port()?;
        plane.apply(&json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}}))?;
        // No istio-agent hands the proxies certificates: plaintext between them, so that
        // istiod builds no inbound TLS chain that would wait forever for its secret.
        plane.apply(&json!({
            "apiVersion": "security.istio.io/v1", "kind": "PeerAuthentication",
            "metadata": {"name": "default", "namespace": "istio-system"},
            "spec": {"mtls": {"mode": "DISABLE"}}}))?;
        plane.apply(&json!({
            "apiVersion": "networking.istio.io/v1", "kind": "Gateway",
            "metadata": {"name": "web", "namespace": "istio-system"},
            "spec": {"selector": {"istio": "ingressgateway"},
                     "servers": [{"port": {"number": port, "name": "http", "protocol": "HTTP"},
                                  "bind": "127.0.0.1", "hosts": ["*/*"]}]}}))?;
        let mut upstreams = Vec::new();
        for service in services {
            let mut endpoints = Vec::new();
            for version in service.versions {
                let args = service.upstream_args(version);
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                let upstream =
                    Upstream::spawn_with(upstream_bin, &served_name(service.name, version), &args)?;
                endpoints.push(json!({"address": "127.0.0.1",
                                      "ports": {"http": upstream.address.port()},
                                      "labels": {"version": version}}));
                upstreams.push(upstream);
            }
            plane.apply(&json!({
                "apiVersion": "networking.istio.io/v1", "kind": "ServiceEntry",
                "metadata": {"name": service.name, "namespace": NS},
                "spec": {"hosts": [fqdn(service.name)],
                         "location": "MESH_INTERNAL", "resolution": "STATIC",
                         "ports": [{"number": service_port, "name": "http", "protocol": "HTTP"}],
                         "endpoints": endpoints}}))?;
            plane.apply(&json!({
                "apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
                "metadata": {"name": service.name, "namespace": NS},
                "spec": {"hosts": [host(service.name), fqdn(service.name)],
                         "gateways": ["istio-system/web", "mesh"],
                         "http": [{"name": service.name,
                                   "route": [{"destination": {"host": service.name,
                                                              "port": {"number": service_port}}}]}]}}))?;
        }
        let mut gateway = MeshProxy::start_with(
            &plane,
            Role::Gateway,
            "istio-ingressgateway",
            "istio-system",
            &BTreeMap::from([("istio".to_owned(), "ingressgateway".to_owned())]),
            gateway_stats,
        )?;
        let http = gateway.wait_for_listener(port)?;
        let stickyctl = Stickyctl::kube(&plane.admin_kubeconfig(NS)?, NS)?;
        Ok(MeshStack {
            plane,
            gateway,
            http,
            port,
            stickyctl,
            _upstreams: upstreams,
        })
    }

    /// The `--plugin-url` of the built filter, loaded by the proxies from its file.
    pub fn plugin_url() -> Result<String> {
        Ok(format!("file://{}", locate::filter_wasm()?.display()))
    }

    /// The arguments of `stickyctl init` of `service` at stable `v1` with the module at `url`.
    pub fn init_args(service: &str, url: &str) -> Vec<String> {
        [
            "init",
            "--service",
            service,
            "--stable",
            "v1",
            "--plugin-url",
            url,
        ]
        .map(str::to_owned)
        .to_vec()
    }

    /// `stickyctl init` of `service` with the built filter (see [`MeshStack::init_args`]) and
    /// `extra` flags.
    pub fn init(&self, service: &str, extra: &[&str]) -> Result<String> {
        let init = MeshStack::init_args(service, &MeshStack::plugin_url()?);
        let mut args: Vec<&str> = init.iter().map(String::as_str).collect();
        args.extend_from_slice(extra);
        self.stickyctl.ok(&args)
    }

    /// Runs `stickyctl --name <rollout> args...`, which must succeed.
    pub fn sticky(&self, rollout: &str, args: &[&str]) -> Result<String> {
        let mut all = vec!["--name", rollout];
        all.extend_from_slice(args);
        self.stickyctl.ok(&all)
    }

    /// A first-time visitor of `service` from outside.
    pub fn browser(service: &str) -> Browser {
        Browser::new().with_header("host", &host(service))
    }

    /// Polls `done` (with a fresh client of the gateway) until it holds, for [`PROPAGATION`].
    pub fn wait_until(&self, what: &str, mut done: impl FnMut(&Http) -> bool) -> Result<()> {
        wait::until(what, PROPAGATION, Duration::from_millis(200), || {
            Ok(done(&self.http.fresh()).then_some(()))
        })
        .map_err(|err| {
            let log = self.gateway.envoy().log().unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(15).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            let counters: Vec<String> = self
                .gateway
                .envoy()
                .stats()
                .unwrap_or_default()
                .into_iter()
                .filter(|(name, _)| name.contains("sticky_canary") || name.contains("wasm"))
                .map(|(name, value)| format!("{name}: {value}"))
                .collect();
            anyhow!(
                "{err}; the gateway's filter counters: {counters:?}; its log ends:\n{}",
                tail.join("\n")
            )
        })
    }

    /// The shared plugin of the gateway as stored, if it exists.
    pub fn gateway_plugin(&self) -> Result<Option<Value>> {
        self.plane.get(
            "extensions.istio.io/v1alpha1",
            "WasmPlugin",
            "istio-system",
            GATEWAY_PLUGIN,
        )
    }

    /// The weights of rollout `rollout` (`prod/<name>`) in the shared plugin the gateway runs
    /// now (its ECDS configuration as Envoy holds it), `None` while it holds none.
    pub fn applied_weights(&self, rollout: &str) -> Result<Option<Vec<f64>>> {
        applied_weights(&self.gateway, rollout)
    }
}

/// The QA override token of rollout `rollout` in [`NS`], as `stickyctl override token` keeps
/// it: the Secret `sticky-canary-override-tokens`, key the rollout's name (base64, as the API
/// server writes a Secret's `data`); `None` while there is none.
pub fn override_token(plane: &ControlPlane, rollout: &str) -> Result<Option<String>> {
    use base64::Engine;
    let Some(secret) = plane.get("v1", "Secret", NS, "sticky-canary-override-tokens")? else {
        return Ok(None);
    };
    let Some(text) = secret["data"][rollout].as_str() else {
        return Ok(None);
    };
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text)
        .with_context(|| format!("the token of {rollout} is not base64: {text:?}"))?;
    String::from_utf8(bytes)
        .map(Some)
        .with_context(|| format!("the token of {rollout} is not UTF-8"))
}

/// Whether `proxy` runs `weights` for rollout `rollout` (`<namespace>/<name>`) now: what a test
/// waits for before it judges traffic at those weights ([`applied_weights`]; an unreadable
/// configuration is not yet).
pub fn runs_weights(proxy: &MeshProxy, rollout: &str, weights: &[f64]) -> bool {
    applied_weights(proxy, rollout).ok().flatten().as_deref() == Some(weights)
}

/// The weights of rollout `rollout` (`<namespace>/<name>`) in the plugin `proxy` runs now (its
/// ECDS configuration as Envoy holds it), `None` while it holds none.
pub fn applied_weights(proxy: &MeshProxy, rollout: &str) -> Result<Option<Vec<f64>>> {
    let dump = proxy
        .envoy()
        .config_dump("")
        .with_context(|| format!("{}'s config", proxy.id))?;
    Ok(dump["configs"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|c| c["ecds_filters"].as_array().into_iter().flatten())
        .filter_map(|f| f.pointer("/ecds_filter/typed_config/config/configuration/value"))
        .filter_map(Value::as_str)
        .filter_map(|text| serde_json::from_str::<Value>(text).ok())
        .find_map(|config| {
            let entry = config["rollouts"]
                .as_array()?
                .iter()
                .find(|r| r["name"] == rollout)?
                .clone();
            entry["config"]["versions"]
                .as_array()
                .map(|vs| vs.iter().filter_map(|v| v["weight"].as_f64()).collect())
        }))
}
