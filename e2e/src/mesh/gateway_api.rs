//! The mesh of [`super::stack`] the Gateway API way: Kubernetes Services with real endpoints,
//! a Gateway API `Gateway` with an Envoy playing its pod, and optionally an ambient waypoint
//! with an Envoy playing its pod. Hand-written objects or `stickyctl` then route through it.
//!
//! **Services and their workloads.** A service is a Kubernetes Service `<service>` (selector
//! `app: <service>`, port 80 named `http`, targetPort 8080), and each of its versions a
//! workload `<service>-<version>` labelled `app`, `version`: an upstream process listening on
//! its own loopback address (127.0.k.n, distinct per workload and per stack) and port 8080,
//! registered with istiod as a WorkloadEntry of that address and labels. istiod gives every
//! Kubernetes Service with a selector the WorkloadEntries of its namespace that it selects as
//! endpoints, as it does Pods (`PILOT_ENABLE_K8S_SELECT_WORKLOAD_ENTRIES`, on by default:
//! `pilot/pkg/features/pilot.go:124`; `pilot/pkg/serviceregistry/kube/controller/
//! endpointslice.go:467-490`, `controller.go:795-845`, the targetPort being the endpoint's
//! port), so *any* Service selecting them has endpoints: the per-version Services `stickyctl`
//! writes (`<service>-<version>`, the parent's selector plus `version`) included.
//!
//! Pods were the first choice and are a dead end on loopback: with a Node, Pods whose status
//! the harness writes (Running, Ready, a Pod IP of 127.0.0.n) and kube-controller-manager's
//! EndpointSlice controller, every EndpointSlice is refused by the API server, "may not be in
//! the loopback range (127.0.0.0/8, ::1/128)" (`ValidateEndpointIP`,
//! `pkg/apis/core/validation/validation.go:8423-8443` of k8s.io/kubernetes v1.36.3; Endpoints
//! alike), and any other Pod IP is an address nothing here listens on without changing the
//! machine's network.
//!
//! **The gateway.** A Gateway `public` of class `istio` in `istio-ingress`, one HTTP listener
//! on a free port, routes from every namespace. istiod's deployment controller is off (see
//! [`super::control_plane`]); the harness writes what it would have, from the pinned
//! templates (`manifests/charts/istio-control/istio-discovery/files/kube-gateway.yaml`): the
//! Service `public-istio` selecting `gateway.networking.k8s.io/gateway-name: public` with a
//! port per listener (`pilot/pkg/config/kube/gatewaycommon/deploymentcontroller.go:905-945`;
//! ClusterIP rather than the default LoadBalancer, which only changes the status: an address
//! that never comes is "pending"), and a workload with the labels the template gives the
//! gateway's pods, registered as above. An Envoy plays that workload at its address
//! ([`super::proxy::MeshProxy::start_as_workload`]). Chosen over
//! Istio's manual deployment mode (`spec.addresses` naming an existing Service) because it is
//! the Gateway users get from Istio's getting-started guide and the one `stickyctl` meets
//! most: the Gateway object is exactly the user's, and the proxy has exactly the labels
//! istiod's deployment gives it, the `gateway-name` label by which a WasmPlugin's `targetRefs`
//! kind `Gateway` selects it (`pilot/pkg/model/policyattachment.go:104-107, 184-197`).
//! istiod gives a Gateway API gateway's configuration to the proxies that are endpoints of the
//! Gateway's Service (`pilot/pkg/model/push_context.go:2462-2475`), which the workload is.
//!
//! Gateway API listeners have no `bind`: istiod binds them to the wildcard, `0.0.0.0:<port>`
//! (`pilot/pkg/networking/core/gateway.go:143-151`; the Gateway API conversion,
//! `pilot/pkg/config/kube/gateway/conversion.go:2154-2163`, never sets `Bind`), so the gateway
//! Envoy listens on every interface of the machine on that free port. Every request of the
//! harness goes to its workload's address on loopback ([`GatewayApiStack::gateway_address`]).
//!
//! **The waypoint** ([`Options::waypoint`]; istiod then runs with ambient on): a Gateway
//! `waypoint` of class `istio-waypoint` in the services' namespace with the one listener
//! `mesh` on 15008 (HBONE) that `istioctl waypoint generate` writes, its Service `waypoint`
//! (no class suffix for waypoints, `gatewaycommon/classinfo.go:141-152`), and a workload with
//! the labels of the `waypoint` template, played by an Envoy of node type `waypoint`. istiod
//! treats a Gateway as a waypoint only once it has written the Gateway's `status.addresses`
//! (`pilot/pkg/serviceregistry/ambient/waypoints.go:341-352`), which it does once the Service
//! has endpoints on the listener's port (`pilot/pkg/config/kube/gateway/conversion.go:1836,
//! 1907-1941`, `gatewaycommon/context.go:66-117`): the workload. The parent Services are bound
//! to it with the label `istio.io/use-waypoint: waypoint`; a Service not bound to it (a
//! version Service without the label) is an `outbound|80||<host>` cluster of the waypoint,
//! a bound one `inbound-vip|80|http|<host>`
//! (`pilot/pkg/networking/core/listener_waypoint.go:1262-1297`).
//!
//! What a waypoint needs that a gateway does not, found by running it: the internal-listener
//! bootstrap extension, and certificates (see [`super::sds`]: without them its Envoy never
//! asks for listeners). With them its Envoy takes every cluster, but refuses three listeners,
//! which carry Istio's own Envoy extensions that the upstream Envoy 1.40 lacks:
//! `connect_terminate` and `main_internal` (the `io.istio.http.peer_metadata.Config` filters
//! `waypoint_downstream_peer_metadata` and `waypoint_upstream_peer_metadata`, added
//! unconditionally: `listener_waypoint.go:288-290, 907`, `pilot/pkg/xds/filters/
//! filters.go:704-730`) and `inner_connect_originate` (`istio.double_hbone.*`). `main_internal`
//! is the one holding a filter chain per bound service, with its HTTP filters and routes, so
//! those are read from what istiod generates for the connected waypoint, its debug config dump
//! ([`GatewayApiStack::istiod_config_dump`]), the very resources it pushes to that Envoy. With
//! ambient on, istiod also gives gateways an HBONE cluster (`connect_originate`); the proxies
//! other than waypoints announce `DISABLE_HBONE_SEND` (see [`super::proxy`]).
//!
//! Only the waypoint's configuration is proven here, not traffic through it: a waypoint accepts
//! only HBONE (HTTP CONNECT over mutual TLS on 15008, into `connect_terminate`, one of the
//! listeners the upstream Envoy refuses), which ztunnel, ambient's node proxy, originates from
//! the client's pod. ztunnel is a Rust program of its own repository (istio/ztunnel), not in
//! any Go module the harness builds from, and Istio's Envoy (istio/proxy, with the
//! `peer_metadata` filter) is not built here either; so nothing here can carry a request
//! through the waypoint.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Value};

use super::control_plane::{ControlPlane, Features};
use super::proxy::{AgentStats, MeshProxy, Role};
use super::stack::{host, served_name, Service, NS, PROPAGATION};
use crate::browser::Http;
use crate::envoy::free_port;
use crate::locate;
use crate::operator::Stickyctl;
use crate::upstream::Upstream;
use crate::wait;

/// The Gateway's namespace.
pub const GATEWAY_NS: &str = "istio-ingress";
/// The Gateway's name.
pub const GATEWAY: &str = "public";
/// The Service istiod's deployment controller would make for [`GATEWAY`] (`<name>-<class>`).
pub const GATEWAY_SERVICE: &str = "public-istio";
/// The waypoint's Gateway and Service, in [`NS`].
pub const WAYPOINT: &str = "waypoint";
/// Every service's port in the mesh.
pub const SERVICE_PORT: u16 = 80;
/// Every workload's port, the services' `targetPort`.
pub const TARGET_PORT: u16 = 8080;
/// The Gateway API's API version.
pub const GATEWAY_API: &str = "gateway.networking.k8s.io/v1";

/// What else the stack runs.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// An ambient waypoint for the services' namespace, every parent Service bound to it
    /// (istiod with ambient on).
    pub waypoint: bool,
}

/// The control plane, the services' workloads, the gateway (and the waypoint);
/// everything stops when dropped.
pub struct GatewayApiStack {
    /// The control plane.
    pub plane: ControlPlane,
    /// The Envoy playing the gateway's pod.
    pub gateway: MeshProxy,
    /// The Envoy playing the waypoint's pod, with [`Options::waypoint`].
    pub waypoint: Option<MeshProxy>,
    /// The Gateway's listener port (also its Service's port, as the deployment controller
    /// makes it).
    pub gateway_port: u16,
    gateway_ip: Ipv4Addr,
    workload_ips: BTreeMap<String, Ipv4Addr>,
    _upstreams: Vec<Upstream>,
}

/// The workload (WorkloadEntry) of `service`'s `version`.
pub fn workload_name(service: &str, version: &str) -> String {
    format!("{service}-{version}")
}

/// The labels of `service`'s `version` workload (`app`, `version`).
pub fn workload_labels(service: &str, version: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app".to_owned(), service.to_owned()),
        ("version".to_owned(), version.to_owned()),
    ])
}

/// The harness's user HTTPRoute of `service` through the Gateway: `<service>.example.com`,
/// every request to the Service `service` (named `service`, in [`NS`]).
pub fn user_http_route(service: &str) -> Value {
    json!({
        "apiVersion": GATEWAY_API, "kind": "HTTPRoute",
        "metadata": {"name": service, "namespace": NS},
        "spec": {
            "parentRefs": [{"group": "gateway.networking.k8s.io", "kind": "Gateway",
                            "name": GATEWAY, "namespace": GATEWAY_NS}],
            "hostnames": [host(service)],
            "rules": [{"backendRefs": [{"name": service, "port": SERVICE_PORT}]}],
        },
    })
}

/// The harness's user HTTPRoute of `service` in the mesh (for its waypoint): parent the
/// Service itself, every request to it; named `<service>-mesh`.
pub fn user_mesh_http_route(service: &str) -> Value {
    json!({
        "apiVersion": GATEWAY_API, "kind": "HTTPRoute",
        "metadata": {"name": format!("{service}-mesh"), "namespace": NS},
        "spec": {
            "parentRefs": [{"group": "", "kind": "Service", "name": service,
                            "port": SERVICE_PORT}],
            "rules": [{"backendRefs": [{"name": service, "port": SERVICE_PORT}]}],
        },
    })
}

/// The Kubernetes Service `name` in [`NS`]: `selector`, port 80 `http` to 8080, `labels`.
pub fn service_object(
    name: &str,
    selector: &BTreeMap<String, String>,
    labels: &BTreeMap<String, String>,
) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": NS, "labels": labels},
        "spec": {"selector": selector,
                 "ports": [{"name": "http", "port": SERVICE_PORT, "targetPort": TARGET_PORT,
                            "protocol": "TCP"}]},
    })
}

/// Blocks of workload addresses handed out in this process.
static BLOCKS: AtomicU32 = AtomicU32::new(0);

/// A block 127.0.k.0/24 of loopback addresses for one stack's workloads, with k chosen by the
/// process id so that stacks of concurrent test processes (other clones' included) do not
/// share addresses, and checked free on [`TARGET_PORT`] and `port`.
fn address_block(port: u16) -> Result<u8> {
    let base = std::process::id();
    for _ in 0..64 {
        let k = 20
            + (base
                .wrapping_mul(7)
                .wrapping_add(BLOCKS.fetch_add(1, Ordering::Relaxed))
                % 230);
        let k = u8::try_from(k).unwrap_or(20);
        let free = [2u8, 3, 10, 11, 12, 13]
            .iter()
            .all(|n| TcpListener::bind((Ipv4Addr::new(127, 0, k, *n), TARGET_PORT)).is_ok())
            && TcpListener::bind((Ipv4Addr::new(127, 0, k, 2), port)).is_ok();
        if free {
            return Ok(k);
        }
    }
    bail!("no free block of loopback addresses for the workloads")
}

impl GatewayApiStack {
    /// Starts the control plane (Gateway API on; ambient with [`Options::waypoint`]), every
    /// service of `services` with a workload (an upstream, `upstream_bin` being the
    /// `sticky-upstream` binary, serving as `<service>-<version>`) per version, the harness's
    /// user HTTPRoutes ([`user_http_route`], and [`user_mesh_http_route`] with a waypoint), the
    /// Gateway and its Envoy (the waypoint and its Envoy), and waits until the gateway listens.
    pub fn start(
        upstream_bin: &Path,
        services: &[Service],
        options: Options,
    ) -> Result<GatewayApiStack> {
        GatewayApiStack::start_with_stats(upstream_bin, services, options, &AgentStats::default())
    }

    /// [`GatewayApiStack::start`] with the gateway's Envoy given what istio-agent adds about
    /// stats (as [`super::stack::MeshStack::start_with`] gives its gateway): with
    /// [`AgentStats::istio_with_chart_proxy_stats`], the chart's proxy stats, which keep each
    /// version Service's cluster stats that the Istio analysis queries read.
    pub fn start_with_stats(
        upstream_bin: &Path,
        services: &[Service],
        options: Options,
        stats: &AgentStats,
    ) -> Result<GatewayApiStack> {
        let plane = ControlPlane::start_with(
            &locate::istio_crds()?,
            Features {
                ambient: options.waypoint,
            },
        )?;
        for namespace in [NS, GATEWAY_NS] {
            plane.apply(
                &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}),
            )?;
        }
        // No istio-agent hands the proxies certificates: plaintext between them.
        plane.apply(&json!({
            "apiVersion": "security.istio.io/v1", "kind": "PeerAuthentication",
            "metadata": {"name": "default", "namespace": "istio-system"},
            "spec": {"mtls": {"mode": "DISABLE"}}}))?;

        let gateway_port = free_port()?;
        let block = address_block(gateway_port)?;
        let gateway_ip = Ipv4Addr::new(127, 0, block, 2);
        let waypoint_ip = Ipv4Addr::new(127, 0, block, 3);
        let mut next_workload = 10u8;
        let mut workload_ips = BTreeMap::new();
        let mut upstreams = Vec::new();
        for service in services {
            let mut labels = BTreeMap::new();
            if options.waypoint {
                labels.insert("istio.io/use-waypoint".to_owned(), WAYPOINT.to_owned());
            }
            let selector = BTreeMap::from([("app".to_owned(), service.name.to_owned())]);
            plane.apply(&service_object(service.name, &selector, &labels))?;
            for version in service.versions {
                let ip = Ipv4Addr::new(127, 0, block, next_workload);
                next_workload = next_workload.checked_add(1).ok_or_else(|| {
                    anyhow!("more workloads than addresses in 127.0.{block}.0/24")
                })?;
                let args = service.upstream_args(version);
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                upstreams.push(Upstream::spawn_at(
                    upstream_bin,
                    &served_name(service.name, version),
                    SocketAddr::from((ip, TARGET_PORT)),
                    &args,
                )?);
                let name = workload_name(service.name, version);
                register_workload(
                    &plane,
                    NS,
                    &name,
                    &workload_labels(service.name, version),
                    "default",
                    ip,
                )?;
                workload_ips.insert(name, ip);
            }
            plane.apply(&user_http_route(service.name))?;
            if options.waypoint {
                plane.apply(&user_mesh_http_route(service.name))?;
            }
        }

        // The Gateway, and what istiod's deployment controller would make of it.
        plane.apply(&json!({
            "apiVersion": GATEWAY_API, "kind": "Gateway",
            "metadata": {"name": GATEWAY, "namespace": GATEWAY_NS},
            "spec": {"gatewayClassName": "istio",
                     "listeners": [{"name": "http", "port": gateway_port, "protocol": "HTTP",
                                    "allowedRoutes": {"namespaces": {"from": "All"}}}]}}))?;
        let gateway_labels = infrastructure_labels(GATEWAY, "istio", GATEWAY_SERVICE);
        gateway_service(
            &plane,
            GATEWAY_NS,
            GATEWAY_SERVICE,
            GATEWAY,
            "istio",
            &[("http", gateway_port, "http")],
        )?;
        let gateway_pod = format!("{GATEWAY_SERVICE}-0");
        register_workload(
            &plane,
            GATEWAY_NS,
            &gateway_pod,
            &gateway_labels,
            GATEWAY_SERVICE,
            gateway_ip,
        )?;
        let mut gateway = MeshProxy::start_as_workload_with(
            &plane,
            Role::Gateway,
            &gateway_pod,
            GATEWAY_NS,
            &gateway_labels,
            &gateway_ip.to_string(),
            stats,
        )?;
        gateway
            .wait_for_listener(gateway_port)
            .context("the Gateway API gateway's listener")?;

        let waypoint = if options.waypoint {
            Some(start_waypoint(&plane, waypoint_ip)?)
        } else {
            None
        };
        Ok(GatewayApiStack {
            plane,
            gateway,
            waypoint,
            gateway_port,
            gateway_ip,
            workload_ips,
            _upstreams: upstreams,
        })
    }

    /// Where clients reach the gateway: its workload's address and listener port (the Envoy
    /// listens on every address of that port, see the module's doc).
    pub fn gateway_address(&self) -> SocketAddr {
        SocketAddr::from((self.gateway_ip, self.gateway_port))
    }

    /// A client of the gateway.
    pub fn http(&self) -> Http {
        Http::new(self.gateway_address())
    }

    /// The address of `service`'s `version`, where its upstream listens on [`TARGET_PORT`].
    pub fn workload_ip(&self, service: &str, version: &str) -> Option<Ipv4Addr> {
        self.workload_ips
            .get(&workload_name(service, version))
            .copied()
    }

    /// `proxy`'s whole configuration as Envoy holds it (admin `/config_dump` with endpoints).
    pub fn config_dump(proxy: &MeshProxy) -> Result<Value> {
        proxy.config_dump()
    }

    /// `stickyctl` with the admin's kubeconfig, in [`NS`].
    pub fn stickyctl(&self) -> Result<Stickyctl> {
        Stickyctl::kube(&self.plane.admin_kubeconfig(NS)?, NS)
    }

    /// Polls `done` (with a fresh client of the gateway) until it holds, for [`PROPAGATION`].
    pub fn wait_until(&self, what: &str, mut done: impl FnMut(&Http) -> bool) -> Result<()> {
        let http = self.http();
        wait::until(what, PROPAGATION, Duration::from_millis(200), || {
            Ok(done(&http.fresh()).then_some(()))
        })
        .map_err(|err| {
            let log = self.gateway.envoy().log().unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(15).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            anyhow!("{err}; the gateway's log ends:\n{}", tail.join("\n"))
        })
    }

    /// The configuration istiod generates for `proxy`, as istiod's debug endpoint gives it:
    /// for a waypoint, whose Envoy here refuses the listeners that carry Istio's own filters
    /// (see the module's doc), the listeners and routes are read here.
    pub fn istiod_config_dump(&self, proxy: &MeshProxy) -> Result<Value> {
        self.plane.istiod_config_dump(&proxy.id)
    }

    /// Polls istiod's configuration for `proxy` until `found` finds something in it, for
    /// [`PROPAGATION`].
    pub fn wait_for_istiod_config<T>(
        &self,
        proxy: &MeshProxy,
        what: &str,
        mut found: impl FnMut(&Value) -> Option<T>,
    ) -> Result<T> {
        let mut last = Value::Null;
        wait::until(what, PROPAGATION, Duration::from_millis(300), || {
            last = self.istiod_config_dump(proxy)?;
            Ok(found(&last))
        })
        .map_err(|err| {
            let clusters = cluster_names(&last);
            let listeners: Vec<String> = listeners(&last)
                .iter()
                .filter_map(|l| l["name"].as_str().map(str::to_owned))
                .collect();
            anyhow!(
                "{err}; istiod's configuration for {} has the clusters {clusters:?} and the \
                 listeners {listeners:?}",
                proxy.id
            )
        })
    }

    /// Polls `proxy`'s config dump until `found` finds something in it, for [`PROPAGATION`].
    pub fn wait_for_config<T>(
        proxy: &MeshProxy,
        what: &str,
        mut found: impl FnMut(&Value) -> Option<T>,
    ) -> Result<T> {
        let mut last = Value::Null;
        wait::until(what, PROPAGATION, Duration::from_millis(300), || {
            last = proxy.config_dump()?;
            Ok(found(&last))
        })
        .map_err(|err| {
            let clusters = cluster_names(&last);
            anyhow!("{err}; {} holds the clusters {clusters:?}", proxy.id)
        })
    }
}

/// The labels istiod's templates give a gateway's or waypoint's pods
/// (`kube-gateway.yaml:59-71`, `waypoint.yaml:59-71` of
/// `manifests/charts/istio-control/istio-discovery/files/`).
fn infrastructure_labels(gateway: &str, class: &str, deployment: &str) -> BTreeMap<String, String> {
    let managed = if class == "istio-waypoint" {
        "istio.io-mesh-controller"
    } else {
        "istio.io-gateway-controller"
    };
    let mut labels: BTreeMap<String, String> = [
        ("sidecar.istio.io/inject", "false"),
        ("service.istio.io/canonical-name", deployment),
        ("service.istio.io/canonical-revision", "latest"),
        ("gateway.networking.k8s.io/gateway-name", gateway),
        ("gateway.networking.k8s.io/gateway-class-name", class),
        ("gateway.istio.io/managed", managed),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    if class == "istio-waypoint" {
        labels.insert("istio.io/dataplane-mode".to_owned(), "none".to_owned());
    }
    labels
}

/// The Service istiod's deployment controller makes for Gateway `gateway` of `class`:
/// `status-port` 15021 and one port per listener (`name`, `port`, `appProtocol`), selecting
/// the gateway's pods by their `gateway-name` label (`waypoint.yaml:320-355`,
/// `deploymentcontroller.go:905-945`).
fn gateway_service(
    plane: &ControlPlane,
    namespace: &str,
    name: &str,
    gateway: &str,
    class: &str,
    listeners: &[(&str, u16, &str)],
) -> Result<()> {
    let mut ports = vec![
        json!({"name": "status-port", "port": 15021, "protocol": "TCP",
                                "appProtocol": "tcp"}),
    ];
    ports.extend(listeners.iter().map(|(name, port, app_protocol)| {
        json!({"name": name, "port": port, "protocol": "TCP", "appProtocol": app_protocol})
    }));
    plane.apply(&json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": namespace,
                     "labels": {"gateway.networking.k8s.io/gateway-name": gateway,
                                "gateway.networking.k8s.io/gateway-class-name": class}},
        "spec": {"type": "ClusterIP",
                 "selector": {"gateway.networking.k8s.io/gateway-name": gateway},
                 "ports": ports}}))
}

/// Registers the workload `namespace/name` at `ip` with `labels`: a WorkloadEntry, which
/// istiod treats as it would a ready Pod of that IP and labels (see the module's doc).
fn register_workload(
    plane: &ControlPlane,
    namespace: &str,
    name: &str,
    labels: &BTreeMap<String, String>,
    service_account: &str,
    ip: Ipv4Addr,
) -> Result<()> {
    plane.apply(&json!({
        "apiVersion": "networking.istio.io/v1", "kind": "WorkloadEntry",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {"address": ip.to_string(), "labels": labels,
                 "serviceAccount": service_account},
    }))
}

/// The waypoint: its Gateway, Service and workload, and the Envoy playing the workload; returns
/// once istiod wrote the Gateway's addresses (the waypoint is then known to the ambient index).
fn start_waypoint(plane: &ControlPlane, ip: Ipv4Addr) -> Result<MeshProxy> {
    plane.apply(&json!({
        "apiVersion": GATEWAY_API, "kind": "Gateway",
        "metadata": {"name": WAYPOINT, "namespace": NS,
                     "labels": {"istio.io/waypoint-for": "service"}},
        "spec": {"gatewayClassName": "istio-waypoint",
                 "listeners": [{"name": "mesh", "port": 15008, "protocol": "HBONE"}]}}))?;
    gateway_service(
        plane,
        NS,
        WAYPOINT,
        WAYPOINT,
        "istio-waypoint",
        &[("mesh", 15008, "hbone")],
    )?;
    let labels = infrastructure_labels(WAYPOINT, "istio-waypoint", WAYPOINT);
    let pod = format!("{WAYPOINT}-0");
    register_workload(plane, NS, &pod, &labels, WAYPOINT, ip)?;
    wait::until(
        "istiod writing the waypoint Gateway's status.addresses",
        PROPAGATION,
        Duration::from_millis(300),
        || {
            let gateway = plane.get(GATEWAY_API, "Gateway", NS, WAYPOINT)?;
            let addresses = gateway
                .as_ref()
                .and_then(|g| g.pointer("/status/addresses"))
                .and_then(Value::as_array)
                .is_some_and(|a| !a.is_empty());
            Ok(addresses.then_some(()))
        },
    )
    .map_err(|err| plane.explain("istiod", err))?;
    MeshProxy::start_as_workload(plane, Role::Waypoint, &pod, NS, &labels, &ip.to_string())
}

/// The endpoints (`address:port`) of cluster `name` in a config dump (with EDS, as
/// [`MeshProxy::config_dump`] takes it).
pub fn cluster_endpoints(dump: &Value, name: &str) -> Vec<String> {
    configs_of(dump, "EndpointsConfigDump")
        .flat_map(|c| {
            c["dynamic_endpoint_configs"]
                .as_array()
                .into_iter()
                .flatten()
        })
        .filter_map(|e| e.get("endpoint_config"))
        .filter(|e| e["cluster_name"] == name)
        .flat_map(|e| e["endpoints"].as_array().into_iter().flatten())
        .flat_map(|l| l["lb_endpoints"].as_array().into_iter().flatten())
        .filter_map(|e| {
            let socket = e.pointer("/endpoint/address/socket_address")?;
            Some(format!(
                "{}:{}",
                socket["address"].as_str()?,
                socket["port_value"].as_u64()?
            ))
        })
        .collect()
}

/// The names of the clusters in a config dump, active and warming.
pub fn cluster_names(dump: &Value) -> Vec<String> {
    configs_of(dump, "ClustersConfigDump")
        .flat_map(|c| {
            [
                "dynamic_active_clusters",
                "dynamic_warming_clusters",
                "static_clusters",
            ]
            .into_iter()
            .flat_map(move |key| c[key].as_array().into_iter().flatten())
        })
        .filter_map(|c| c.pointer("/cluster/name").and_then(Value::as_str))
        .map(str::to_owned)
        .collect()
}

/// The listeners of a config dump (active, else warming), as Envoy's `Listener` objects.
pub fn listeners(dump: &Value) -> Vec<Value> {
    configs_of(dump, "ListenersConfigDump")
        .flat_map(|c| c["dynamic_listeners"].as_array().into_iter().flatten())
        .filter_map(|l| {
            l.pointer("/active_state/listener")
                .or_else(|| l.pointer("/warming_state/listener"))
                .cloned()
        })
        .collect()
}

/// The route configurations of a config dump: RDS ones and those inline in listeners' HTTP
/// connection managers (a waypoint's are inline).
pub fn route_configs(dump: &Value) -> Vec<Value> {
    let mut routes: Vec<Value> = configs_of(dump, "RoutesConfigDump")
        .flat_map(|c| c["dynamic_route_configs"].as_array().into_iter().flatten())
        .filter_map(|r| r.get("route_config").cloned())
        .collect();
    for listener in listeners(dump) {
        for manager in http_connection_managers(&listener) {
            if let Some(inline) = manager.1.get("route_config") {
                routes.push(inline.clone());
            }
        }
    }
    routes
}

/// Each filter chain's name and its HTTP connection manager's config, of `listener`.
pub fn http_connection_managers(listener: &Value) -> Vec<(String, Value)> {
    listener["filter_chains"]
        .as_array()
        .into_iter()
        .flatten()
        .chain(listener.get("default_filter_chain"))
        .flat_map(|chain| {
            let name = chain["name"].as_str().unwrap_or_default().to_owned();
            chain["filters"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|f| f["name"] == "envoy.filters.network.http_connection_manager")
                .map(move |f| (name.clone(), f["typed_config"].clone()))
        })
        .collect()
}

/// The HTTP filters' names of the filter chain `chain` of listener `listener` (by name), in
/// order.
pub fn chain_http_filters(dump: &Value, listener: &str, chain: &str) -> Vec<String> {
    listeners(dump)
        .iter()
        .filter(|l| l["name"] == listener)
        .flat_map(http_connection_managers)
        .filter(|(name, _)| name == chain)
        .flat_map(|(_, manager)| {
            manager["http_filters"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|f| f["name"].as_str().map(str::to_owned))
                .collect::<Vec<String>>()
        })
        .collect()
}

fn configs_of<'a>(dump: &'a Value, kind: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
    dump["configs"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(move |c| c["@type"].as_str().is_some_and(|t| t.ends_with(kind)))
}
