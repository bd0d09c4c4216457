//! The mesh harness for the Gateway API and ambient, proven with hand-written objects (what
//! `stickyctl`'s HTTPRoute backend is to write): an HTTPRoute through a Gateway API gateway
//! that istiod configures, to per-version Services whose endpoints are the harness's Pods, a
//! WasmPlugin attached to that gateway by `targetRefs`, and a waypoint's configuration.
//!
//! Each test starts its own control plane on loopback, one at a time; the control-plane
//! binaries and the Gateway API CRDs come from `tools/control-plane/build`, and a missing
//! piece fails.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use serde_json::{json, Value};
use sticky_canary_e2e::browser::Http;
use sticky_canary_e2e::mesh::gateway_api::{
    chain_http_filters, cluster_endpoints, cluster_names, route_configs, service_object,
    GatewayApiStack, Options, GATEWAY, GATEWAY_API, GATEWAY_NS, SERVICE_PORT, TARGET_PORT,
};
use sticky_canary_e2e::mesh::stack::{host, MeshStack, Service, NS};

/// One control plane at a time (see `mesh.rs`).
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn stack(services: &[Service], options: Options) -> (GatewayApiStack, MutexGuard<'static, ()>) {
    let turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let upstream = Path::new(env!("CARGO_BIN_EXE_sticky-upstream"));
    let stack = GatewayApiStack::start(upstream, services, options)
        .unwrap_or_else(|e| panic!("cannot start the mesh: {e:?}"));
    (stack, turn)
}

/// The Service `<service>-<version>` as `stickyctl` is to write it: the parent's selector
/// plus `version`, the parent's port.
fn version_service(service: &str, version: &str) -> Value {
    service_object(
        &format!("{service}-{version}"),
        &BTreeMap::from([
            ("app".to_owned(), service.to_owned()),
            ("version".to_owned(), version.to_owned()),
        ]),
        &BTreeMap::new(),
    )
}

/// The sticky rules: `x-sticky-version: v2` to `shop-v2`, every other request to `shop-v1`.
fn sticky_rules(service: &str) -> Value {
    json!([
        {"name": "sticky-v2",
         "matches": [{"headers": [{"name": "x-sticky-version", "value": "v2"}]}],
         "backendRefs": [{"name": format!("{service}-v2"), "port": SERVICE_PORT}]},
        {"name": "sticky-default",
         "backendRefs": [{"name": format!("{service}-v1"), "port": SERVICE_PORT}]},
    ])
}

/// The module, from its file, as `stickyctl --plugin-url` gives it.
fn plugin_url() -> String {
    MeshStack::plugin_url().expect("the filter is built (make wasm)")
}

/// Where the filter of WasmPlugin `namespace/name` is among `filters` (HTTP filter names):
/// istiod names it `<namespace>.<name>`, or, translated into a TrafficExtension (1.30+,
/// `pilot/pkg/config/kube/extensions/translate.go`),
/// `extensions.istio.io/trafficextension/<namespace>.<name>~istio-translated-wasmplugin`.
fn plugin_position(filters: &[String], namespace: &str, name: &str) -> Option<usize> {
    let wanted = format!("{namespace}.{name}");
    filters.iter().position(|f| {
        let last = f.rsplit('/').next().unwrap_or(f);
        last.split('~').next() == Some(wanted.as_str())
    })
}

/// Who served `GET /` of `service` through `http`, with `headers`.
fn served_by(http: &Http, service: &str, headers: &[(&str, &[u8])]) -> Option<String> {
    let host = host(service);
    let mut all: Vec<(&str, &[u8])> = vec![("host", host.as_bytes())];
    all.extend_from_slice(headers);
    http.get("/", &all).ok().and_then(|r| r.served_by)
}

/// Through the Gateway API gateway: per-version Services get their workloads as endpoints, the
/// HTTPRoute's header rule beats its catch-all, the clusters carry no subset, and a WasmPlugin
/// reaches the gateway by `targetRefs` kind `Gateway` in the Gateway's namespace while one
/// with only a selector in another namespace does not.
#[test]
fn an_httproute_through_a_gateway_api_gateway() {
    let (mesh, _turn) = stack(&[Service::new("shop", &["v1", "v2"])], Options::default());
    let http = mesh.http();

    // The harness's own route to the parent: both Pods serve it.
    mesh.wait_until("the user's route serving shop", |http| {
        served_by(http, "shop", &[]).is_some_and(|s| s.starts_with("shop-v"))
    })
    .expect("the gateway routes the user's HTTPRoute");

    for version in ["v1", "v2"] {
        mesh.plane
            .apply(&version_service("shop", version))
            .expect("a version Service");
    }
    let mut route = mesh
        .plane
        .get(GATEWAY_API, "HTTPRoute", NS, "shop")
        .expect("reading the HTTPRoute")
        .expect("the harness wrote the user's HTTPRoute");
    route["spec"]["rules"] = sticky_rules("shop");
    let route = json!({"apiVersion": GATEWAY_API, "kind": "HTTPRoute",
                       "metadata": {"name": "shop", "namespace": NS}, "spec": route["spec"]});
    mesh.plane.apply(&route).expect("the sticky rules");

    let v2: &[(&str, &[u8])] = &[("x-sticky-version", b"v2")];
    mesh.wait_until("stamped requests on shop-v2", |http| {
        served_by(http, "shop", v2).as_deref() == Some("shop-v2")
            && served_by(http, "shop", &[]).as_deref() == Some("shop-v1")
    })
    .expect("the sticky rules take effect");
    for _ in 0..20 {
        assert_eq!(served_by(&http, "shop", v2).as_deref(), Some("shop-v2"));
        assert_eq!(served_by(&http, "shop", &[]).as_deref(), Some("shop-v1"));
        let other: &[(&str, &[u8])] = &[("x-sticky-version", b"v3")];
        assert_eq!(served_by(&http, "shop", other).as_deref(), Some("shop-v1"));
    }

    let dump = mesh
        .gateway
        .config_dump()
        .expect("the gateway's config dump");
    let clusters = cluster_names(&dump);
    for version in ["v1", "v2"] {
        let cluster = format!("outbound|{SERVICE_PORT}||shop-{version}.{NS}.svc.cluster.local");
        assert!(
            clusters.contains(&cluster),
            "{cluster} at the gateway: {clusters:?}"
        );
        let ip = mesh
            .workload_ip("shop", version)
            .expect("a workload per version");
        assert_eq!(
            cluster_endpoints(&dump, &cluster),
            [format!("{ip}:{TARGET_PORT}")],
            "{cluster}'s endpoint is its version's workload"
        );
    }
    assert!(
        !clusters
            .iter()
            .any(|c| c.contains("|v2|") || c.contains("|v1|")),
        "no subset clusters: {clusters:?}"
    );
    let routes = route_configs(&dump);
    let text = serde_json::to_string(&routes).unwrap_or_default();
    assert!(
        text.contains("x-sticky-version"),
        "the gateway's routes match on the header: {text}"
    );

    // A plugin selecting the gateway's labels from another namespace, then one attached by
    // targetRefs in the Gateway's namespace.
    let url = plugin_url();
    mesh.plane
        .apply(&json!({
            "apiVersion": "extensions.istio.io/v1alpha1", "kind": "WasmPlugin",
            "metadata": {"name": "selected-elsewhere", "namespace": NS},
            "spec": {"selector": {"matchLabels": {"gateway.networking.k8s.io/gateway-name": GATEWAY}},
                     "url": url, "phase": "AUTHN", "failStrategy": "FAIL_OPEN",
                     "pluginConfig": {"rollouts": []}}}))
        .expect("a selector plugin");
    mesh.plane
        .apply(&json!({
            "apiVersion": "extensions.istio.io/v1alpha1", "kind": "WasmPlugin",
            "metadata": {"name": "sticky", "namespace": GATEWAY_NS},
            "spec": {"targetRefs": [{"group": "gateway.networking.k8s.io", "kind": "Gateway",
                                     "name": GATEWAY}],
                     "url": url, "phase": "AUTHN", "failStrategy": "FAIL_OPEN",
                     "pluginConfig": {"rollouts": []}}}))
        .expect("a targetRefs plugin");
    let filters = GatewayApiStack::wait_for_config(
        &mesh.gateway,
        "the targetRefs plugin at the gateway",
        |_| {
            let filters = mesh.gateway.http_filters(mesh.gateway_port).ok()?;
            plugin_position(&filters, GATEWAY_NS, "sticky")
                .is_some()
                .then_some(filters)
        },
    )
    .expect("the plugin attached by targetRefs reaches the gateway");
    assert_eq!(
        plugin_position(&filters, NS, "selected-elsewhere"),
        None,
        "a selector plugin of another namespace stays off the gateway: {filters:?}"
    );
    let wasm = plugin_position(&filters, GATEWAY_NS, "sticky");
    let router = filters
        .iter()
        .position(|f| f == "envoy.filters.http.router");
    assert!(
        wasm < router,
        "the filter runs before the router: {filters:?}"
    );
    // Requests still flow with the filter in place.
    mesh.wait_until("requests with the filter in place", |http| {
        served_by(http, "shop", v2).as_deref() == Some("shop-v2")
    })
    .expect("the gateway serves with the filter");
}

/// A waypoint's configuration, from its config dump: the HTTPRoute whose parent is the Service
/// becomes the waypoint's routes for it, the version Services are its clusters (`outbound`
/// while they are not bound to the waypoint, `inbound-vip` once they are), and a WasmPlugin
/// with `targetRefs` kind Service is on that service's server-side filter chain only.
#[test]
fn a_waypoint_gets_the_httproute_of_its_service_and_the_plugin() {
    let (mesh, _turn) = stack(
        &[
            Service::new("shop", &["v1", "v2"]),
            Service::new("cart", &["v1"]),
        ],
        Options { waypoint: true },
    );
    let waypoint = mesh.waypoint.as_ref().expect("a waypoint");
    for version in ["v1", "v2"] {
        mesh.plane
            .apply(&version_service("shop", version))
            .expect("a version Service");
    }
    mesh.plane
        .apply(&json!({
            "apiVersion": GATEWAY_API, "kind": "HTTPRoute",
            "metadata": {"name": "shop-mesh", "namespace": NS},
            "spec": {"parentRefs": [{"group": "", "kind": "Service", "name": "shop",
                                     "port": SERVICE_PORT}],
                     "rules": sticky_rules("shop")}}))
        .expect("the sticky rules on the parent Service");
    mesh.plane
        .apply(&json!({
            "apiVersion": "extensions.istio.io/v1alpha1", "kind": "WasmPlugin",
            "metadata": {"name": "sticky", "namespace": NS},
            "spec": {"targetRefs": [{"group": "", "kind": "Service", "name": "shop"}],
                     "url": plugin_url(), "phase": "AUTHN", "failStrategy": "FAIL_OPEN",
                     "pluginConfig": {"rollouts": []}}}))
        .expect("the plugin on the waypoint");

    let shop_chain = format!("inbound-vip|{SERVICE_PORT}|http|shop.{NS}.svc.cluster.local");
    let cart_chain = format!("inbound-vip|{SERVICE_PORT}|http|cart.{NS}.svc.cluster.local");
    let v2_unbound = format!("outbound|{SERVICE_PORT}||shop-v2.{NS}.svc.cluster.local");
    // Envoy takes the waypoint's clusters; istiod's listeners and routes for it are read from
    // istiod (the Envoy refuses those carrying Istio's own filters: see the harness's doc).
    GatewayApiStack::wait_for_config(waypoint, "the waypoint's clusters in its Envoy", |dump| {
        let clusters = cluster_names(dump);
        (clusters.contains(&shop_chain) && clusters.contains(&v2_unbound)).then_some(())
    })
    .expect("the waypoint's Envoy holds its clusters");
    let dump = mesh
        .wait_for_istiod_config(waypoint, "the waypoint's routes for shop", |dump| {
            let clusters = cluster_names(dump);
            let filters = chain_http_filters(dump, "main_internal", &shop_chain);
            (clusters.contains(&shop_chain)
                && clusters.contains(&v2_unbound)
                && plugin_position(&filters, NS, "sticky").is_some())
            .then(|| dump.clone())
        })
        .expect("the waypoint's configuration for shop");

    let filters = chain_http_filters(&dump, "main_internal", &shop_chain);
    let router = filters
        .iter()
        .position(|f| f == "envoy.filters.http.router");
    assert!(
        plugin_position(&filters, NS, "sticky") < router,
        "the filter runs before the router on shop's server-side chain: {filters:?}"
    );
    let cart = chain_http_filters(&dump, "main_internal", &cart_chain);
    assert!(
        cart.contains(&"envoy.filters.http.router".to_owned()),
        "cart is bound to the waypoint too: {cart:?}"
    );
    assert_eq!(
        plugin_position(&cart, NS, "sticky"),
        None,
        "a plugin targeting shop stays off cart's chain: {cart:?}"
    );

    // The managed rule and the fallback, in the route of shop's chain.
    let routes = serde_json::to_string(&route_configs(&dump)).unwrap_or_default();
    assert!(
        routes.contains("x-sticky-version") && routes.contains(&v2_unbound),
        "the waypoint routes x-sticky-version to shop-v2: {routes}"
    );

    // Bound to the waypoint too, the version Services are its inbound-vip clusters.
    for version in ["v1", "v2"] {
        let mut object = version_service("shop", version);
        object["metadata"]["labels"] = json!({"istio.io/use-waypoint": "waypoint"});
        mesh.plane
            .apply(&object)
            .expect("binding a version Service");
    }
    let v2_bound = format!("inbound-vip|{SERVICE_PORT}|http|shop-v2.{NS}.svc.cluster.local");
    GatewayApiStack::wait_for_config(waypoint, "shop-v2 bound, in the Envoy", |dump| {
        cluster_names(dump).contains(&v2_bound).then_some(())
    })
    .expect("the waypoint's Envoy holds the inbound-vip cluster of a bound version Service");
    let dump = mesh
        .wait_for_istiod_config(waypoint, "shop-v2 bound to the waypoint", |dump| {
            let routes = serde_json::to_string(&route_configs(dump)).unwrap_or_default();
            routes.contains(&v2_bound).then(|| dump.clone())
        })
        .expect("inbound-vip clusters for bound version Services");
    let routes = serde_json::to_string(&route_configs(&dump)).unwrap_or_default();
    assert!(
        routes.contains(&v2_bound),
        "the waypoint's route to shop-v2 uses its inbound-vip cluster: {routes}"
    );
}
