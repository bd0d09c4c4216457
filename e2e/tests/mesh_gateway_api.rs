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
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sticky_canary_e2e::browser::Http;
use sticky_canary_e2e::mesh::auto::{
    assert_decision_reasons, assert_promoted_through_10_50_100, assert_rolled_back_at_10,
    patch_analysis, AutoLoop, BAD_FAULTS, CANARY, STABLE,
};
use sticky_canary_e2e::mesh::gateway_api::{
    chain_http_filters, cluster_endpoints, cluster_names, route_configs, service_object,
    GatewayApiStack, Options, GATEWAY, GATEWAY_API, GATEWAY_NS, SERVICE_PORT, TARGET_PORT,
};
use sticky_canary_e2e::mesh::proxy::AgentStats;
use sticky_canary_e2e::mesh::stack::{host, runs_weights, MeshStack, Service, NS};
use sticky_canary_e2e::prometheus::Prometheus;
use sticky_canary_e2e::traffic::{Traffic, TrafficOptions};

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
    // Several in a row: under the route before, to `shop`, either answer comes by chance.
    mesh.wait_until("stamped requests on shop-v2", |http| {
        (0..8).all(|_| {
            served_by(http, "shop", v2).as_deref() == Some("shop-v2")
                && served_by(http, "shop", &[]).as_deref() == Some("shop-v1")
        })
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

/// `stickyctl` on the HTTPRoute API through the Gateway API gateway, as a user runs it: it
/// finds the route, records the API, makes `shop-v2` before the route sends to it, pins 200
/// users by weight through a live weight change, ignores a spoofed header, lets QA through
/// with the public override, and `delete` leaves the user's HTTPRoute exactly as it was,
/// without stickyctl's Services.
#[test]
fn stickyctl_rolls_out_on_the_httproute_api() {
    let (stack, _turn) = stack(&[Service::new("shop", &["v1", "v2"])], Options::default());
    let plane = &stack.plane;
    let route = |plane: &sticky_canary_e2e::mesh::control_plane::ControlPlane| {
        plane
            .get(GATEWAY_API, "HTTPRoute", NS, "shop")
            .expect("read the HTTPRoute")
            .expect("the user's HTTPRoute")
    };
    let original = route(plane);
    let stickyctl = stack.stickyctl().expect("stickyctl");
    let url = plugin_url();
    let sticky = |args: &[&str]| {
        let mut all = vec!["--name", "shop"];
        all.extend_from_slice(args);
        stickyctl
            .ok(&all)
            .unwrap_or_else(|e| panic!("stickyctl {args:?}: {e:?}"))
    };
    // Without a placement the route's Gateway is named as the fix, and nothing is written.
    let refused = stickyctl
        .run(&[
            "--name",
            "shop",
            "init",
            "--service",
            "shop.prod.svc.cluster.local",
            "--stable",
            "v1",
            "--plugin-url",
            &url,
        ])
        .expect("stickyctl runs");
    assert!(
        refused.code == Some(2)
            && refused
                .stderr
                .contains("--target-ref Gateway/public --gateway-namespace istio-ingress"),
        "{refused:?}"
    );
    assert_eq!(route(plane)["spec"], original["spec"], "nothing written");
    sticky(&[
        "init",
        "--service",
        "shop.prod.svc.cluster.local",
        "--stable",
        "v1",
        "--plugin-url",
        &url,
        "--target-ref",
        "Gateway/public",
        "--gateway-namespace",
        GATEWAY_NS,
        "--key-header",
        "x-user-id",
        "--override",
        "public",
    ]);
    let rollout = plane
        .get("stickycanary.io/v1alpha1", "StickyCanary", NS, "shop")
        .unwrap()
        .expect("the rollout");
    assert_eq!(rollout["spec"]["routing"]["api"], "HTTPRoute");
    assert_eq!(rollout["spec"]["routing"]["httpRoute"], "shop");
    sticky(&["start", "--canary", "v2"]);
    sticky(&["set-weight", "30"]);
    let v2 = plane
        .get("v1", "Service", NS, "shop-v2")
        .unwrap()
        .expect("shop-v2 made");
    assert_eq!(
        v2["spec"]["selector"],
        json!({"app": "shop", "version": "v2"})
    );
    let names: Vec<Value> = route(plane)["spec"]["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].clone())
        .collect();
    assert_eq!(
        names,
        [
            json!("sticky-canary.shop.v-v1"),
            json!("sticky-canary.shop.v-v2"),
            json!("sticky-canary.shop.default"),
            Value::Null
        ]
    );

    // The version a user got, when the one that served them is the one stamped.
    let user = |http: &Http, id: usize, extra: &[(&str, &[u8])]| {
        let id = format!("u{id}");
        let mut headers: Vec<(&str, &[u8])> =
            vec![("host", b"shop.example.com"), ("x-user-id", id.as_bytes())];
        headers.extend_from_slice(extra);
        let r = http.get("/", &headers).ok()?;
        let version = r.received_version?;
        (r.served_by? == format!("shop-{version}")).then_some(version)
    };
    // Weight 30 in the gateway's plugin before the crowd (a user counted at the weight `start`
    // left, 0, would be seen to move), and both versions' routes live: u0 hashes to v1 at 30,
    // u2 to v2.
    stack
        .wait_until("weight 30 stamped at the gateway", |http| {
            runs_weights(&stack.gateway, &format!("{NS}/shop"), &[70.0, 30.0])
                && user(http, 0, &[]).as_deref() == Some("v1")
                && user(http, 2, &[]).as_deref() == Some("v2")
        })
        .expect("stamped at weight 30");
    let http = stack.http();
    let first: Vec<Option<String>> = (0..200).map(|i| user(&http, i, &[])).collect();
    assert!(
        first.iter().all(Option::is_some),
        "every user served by the version stamped: {first:?}"
    );
    let share = first.iter().filter(|v| v.as_deref() == Some("v2")).count() as f64 / 200.0;
    assert!(
        (0.2..=0.4).contains(&share),
        "v2 share {share} at weight 30"
    );
    let again: Vec<Option<String>> = (0..200).map(|i| user(&http, i, &[])).collect();
    assert_eq!(again, first, "every user keeps their version");
    // A spoofed header is overwritten; the public override reaches the canary.
    let on_v1 = first
        .iter()
        .position(|v| v.as_deref() == Some("v1"))
        .expect("a user on v1");
    for _ in 0..10 {
        assert_eq!(
            user(&http, on_v1, &[("x-sticky-version", b"v2")]).as_deref(),
            Some("v1")
        );
        assert_eq!(
            user(&http, on_v1, &[("x-sticky-override", b"v2")]).as_deref(),
            Some("v2")
        );
    }
    // A live weight change: users on v2 stay (ramp up), more join.
    sticky(&["set-weight", "60"]);
    stack
        .wait_until("the new weight applies", |http| {
            let now = (0..200)
                .filter(|&i| user(http, i, &[]).as_deref() == Some("v2"))
                .count();
            now as f64 / 200.0 > share + 0.15
        })
        .expect("60%");
    for (i, before) in first.iter().enumerate() {
        if before.as_deref() == Some("v2") {
            assert_eq!(
                user(&http, i, &[]).as_deref(),
                Some("v2"),
                "user {i} stays on v2"
            );
        }
    }

    sticky(&["delete"]);
    let after = route(plane);
    assert_eq!(
        after["spec"], original["spec"],
        "the user's HTTPRoute exactly as it was"
    );
    for version in ["v1", "v2"] {
        assert!(
            plane
                .get("v1", "Service", NS, &format!("shop-{version}"))
                .unwrap()
                .is_none(),
            "shop-{version} deleted"
        );
    }
    assert!(
        plane.get("v1", "Service", NS, "shop").unwrap().is_some(),
        "the user's Service stays"
    );
}

/// `stickyctl` on the HTTPRoute API with the filter on the service's ambient waypoint, as a
/// user runs it: `init --waypoint --http-route shop-mesh` (the user's route whose parent is the
/// Service `shop`, bound to the waypoint), `start`, `set-weight 30`; then what istiod generates
/// for the waypoint proxy, read from istiod's debug config dump (the upstream Envoy playing the
/// waypoint refuses the listeners carrying Istio's own filters, see the harness's doc): the
/// WasmPlugin `sticky-canary-waypoint-service-shop-<hash>` in `prod` (targetRefs kind Service `shop`,
/// no `match`) on shop's server-side filter chain (`main_internal`, chain
/// `inbound-vip|80|http|shop...`) before the router, the managed rules in its routes (the
/// sealed `x-sticky-version` values) to the version Services' `inbound-vip` clusters: the
/// version Services `stickyctl` makes carry the parent's `istio.io/use-waypoint`, so they are
/// bound to the waypoint as the parent is. `delete` leaves the user's route exactly and the
/// plugin and Services gone.
///
/// No request goes through the waypoint: it accepts only HBONE (HTTP CONNECT over mutual TLS
/// on 15008, into `connect_terminate`), which ztunnel originates and the upstream Envoy cannot
/// terminate (Istio's `peer_metadata` filters); neither ztunnel nor Istio's Envoy is built
/// here. So the proof stops at the configuration istiod pushes to the waypoint.
///
/// The harness's gateway route `shop` routes to the Service too; the rollout refuses a second
/// HTTPRoute to its service, so this test removes it first: the service is reached through its
/// waypoint only.
#[test]
fn stickyctl_rolls_out_at_a_waypoint() {
    let (mesh, _turn) = stack(
        &[Service::new("shop", &["v1", "v2"])],
        Options { waypoint: true },
    );
    let waypoint = mesh.waypoint.as_ref().expect("a waypoint");
    let plane = &mesh.plane;
    plane
        .delete(GATEWAY_API, "HTTPRoute", NS, "shop")
        .expect("the gateway's route removed");
    let route = || {
        plane
            .get(GATEWAY_API, "HTTPRoute", NS, "shop-mesh")
            .expect("read the HTTPRoute")
            .expect("the user's mesh HTTPRoute")
    };
    let original = route();
    let stickyctl = mesh.stickyctl().expect("stickyctl");
    let url = plugin_url();
    let sticky = |args: &[&str]| {
        let mut all = vec!["--name", "shop"];
        all.extend_from_slice(args);
        stickyctl
            .ok(&all)
            .unwrap_or_else(|e| panic!("stickyctl {args:?}: {e:?}"))
    };
    sticky(&[
        "init",
        "--service",
        "shop.prod.svc.cluster.local",
        "--stable",
        "v1",
        "--waypoint",
        "--plugin-url",
        &url,
        "--http-route",
        "shop-mesh",
    ]);
    let rollout = plane
        .get("stickycanary.io/v1alpha1", "StickyCanary", NS, "shop")
        .unwrap()
        .expect("the rollout");
    assert_eq!(rollout["spec"]["routing"]["api"], "HTTPRoute");
    assert_eq!(rollout["spec"]["routing"]["httpRoute"], "shop-mesh");
    assert_eq!(rollout["spec"]["plugin"]["waypoint"], true);
    sticky(&["start", "--canary", "v2"]);
    sticky(&["set-weight", "30"]);

    // The plugin: in the Service's namespace, targeting it, on every request (no match).
    // Named by the group, `sticky-canary-waypoint-service-shop-<hash>` (the kind's capital
    // is spelled differently in a name, so a short hash keeps groups apart).
    let plugins = plane
        .list("extensions.istio.io/v1alpha1", "WasmPlugin", NS, "")
        .unwrap();
    assert_eq!(plugins.len(), 1, "one plugin in {NS}: {plugins:#?}");
    let plugin = plugins[0].clone();
    let plugin_name = plugin["metadata"]["name"].as_str().unwrap().to_owned();
    let plugin_name = plugin_name.as_str();
    assert!(
        plugin_name.starts_with("sticky-canary-waypoint-service-shop-"),
        "{plugin_name}"
    );
    let refs = plugin["spec"]["targetRefs"].as_array().expect("targetRefs");
    assert_eq!(refs.len(), 1, "{plugin:#}");
    assert_eq!(refs[0]["kind"], "Service", "{plugin:#}");
    assert_eq!(refs[0]["name"], "shop", "{plugin:#}");
    assert!(
        refs[0].get("group").is_none_or(|g| g == ""),
        "core group: {plugin:#}"
    );
    assert!(
        plugin["spec"].get("match").is_none(),
        "no match: {plugin:#}"
    );
    assert!(plugin["spec"].get("selector").is_none(), "{plugin:#}");

    // The version Services, bound to the waypoint as the parent is.
    for version in ["v1", "v2"] {
        let service = plane
            .get("v1", "Service", NS, &format!("shop-{version}"))
            .unwrap()
            .unwrap_or_else(|| panic!("shop-{version} made"));
        assert_eq!(
            service["spec"]["selector"],
            json!({"app": "shop", "version": version})
        );
        assert_eq!(
            service["metadata"]["labels"]["istio.io/use-waypoint"],
            sticky_canary_e2e::mesh::gateway_api::WAYPOINT,
            "shop-{version} bound to the parent's waypoint: {service:#}"
        );
    }

    // The managed rules' sealed header values, as stickyctl wrote them.
    let rules = route()["spec"]["rules"].as_array().cloned().unwrap();
    let names: Vec<Value> = rules.iter().map(|r| r["name"].clone()).collect();
    assert_eq!(
        names,
        [
            json!("sticky-canary.shop.v-v1"),
            json!("sticky-canary.shop.v-v2"),
            json!("sticky-canary.shop.default"),
            Value::Null
        ]
    );
    let sealed: BTreeMap<&str, String> = [("v1", 0), ("v2", 1)]
        .into_iter()
        .map(|(version, i)| {
            let value = rules[i]
                .pointer("/matches/0/headers/0/value")
                .and_then(Value::as_str)
                .unwrap_or_else(|| panic!("a header match in {:#}", rules[i]));
            assert!(
                value.starts_with(&format!("{version};")),
                "sealed {version}: {value}"
            );
            (version, value.to_owned())
        })
        .collect();

    // What istiod generates for the waypoint proxy.
    let shop_chain = format!("inbound-vip|{SERVICE_PORT}|http|shop.{NS}.svc.cluster.local");
    let bound = |version: &str| {
        format!("inbound-vip|{SERVICE_PORT}|http|shop-{version}.{NS}.svc.cluster.local")
    };
    let dump = mesh
        .wait_for_istiod_config(waypoint, "the rollout at the waypoint", |dump| {
            let clusters = cluster_names(dump);
            let filters = chain_http_filters(dump, "main_internal", &shop_chain);
            let routes = serde_json::to_string(&route_configs(dump)).unwrap_or_default();
            (clusters.contains(&bound("v1"))
                && clusters.contains(&bound("v2"))
                && plugin_position(&filters, NS, plugin_name).is_some()
                && sealed.values().all(|v| routes.contains(v.as_str())))
            .then(|| dump.clone())
        })
        .expect("the rollout in istiod's configuration for the waypoint");
    let clusters = cluster_names(&dump);
    let filters = chain_http_filters(&dump, "main_internal", &shop_chain);
    let router = filters
        .iter()
        .position(|f| f == "envoy.filters.http.router");
    let wasm = plugin_position(&filters, NS, plugin_name);
    assert!(
        wasm.is_some() && wasm < router,
        "the filter before the router on shop's server-side chain: {filters:?}"
    );
    let shop_clusters: Vec<&String> = clusters.iter().filter(|c| c.contains("|shop")).collect();
    eprintln!("the waypoint's clusters for shop: {shop_clusters:?}; shop's chain: {filters:?}");
    for version in ["v1", "v2"] {
        let unbound = format!("outbound|{SERVICE_PORT}||shop-{version}.{NS}.svc.cluster.local");
        assert!(
            !clusters.contains(&unbound),
            "no outbound cluster for a bound version Service: {clusters:?}"
        );
    }
    // Each managed version rule: its sealed header to its version Service's inbound-vip
    // cluster; the fallback to stable's.
    let routes = route_configs(&dump);
    let all_routes: Vec<&Value> = routes
        .iter()
        .flat_map(|r| r["virtual_hosts"].as_array().into_iter().flatten())
        .flat_map(|h| h["routes"].as_array().into_iter().flatten())
        .collect();
    for (version, value) in &sealed {
        let to = all_routes
            .iter()
            .find(|r| {
                r["match"]["headers"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|h| {
                        h["name"] == "x-sticky-version"
                            && serde_json::to_string(h).unwrap_or_default().contains(value)
                    })
            })
            .unwrap_or_else(|| panic!("a route matching {value}: {all_routes:#?}"));
        assert_eq!(
            to["route"]["cluster"],
            json!(bound(version)),
            "{value} to shop-{version}: {to:#}"
        );
    }
    assert!(
        all_routes.iter().any(|r| {
            r["name"] == "sticky-canary.shop.default" && r["route"]["cluster"] == json!(bound("v1"))
        }),
        "the fallback to shop-v1: {all_routes:#?}"
    );

    sticky(&["delete"]);
    assert_eq!(
        route()["spec"],
        original["spec"],
        "the user's mesh route exactly as it was"
    );
    assert!(
        plane
            .get(
                "extensions.istio.io/v1alpha1",
                "WasmPlugin",
                NS,
                plugin_name
            )
            .unwrap()
            .is_none(),
        "the plugin deleted"
    );
    for version in ["v1", "v2"] {
        assert!(
            plane
                .get("v1", "Service", NS, &format!("shop-{version}"))
                .unwrap()
                .is_none(),
            "shop-{version} deleted"
        );
    }
    mesh.wait_for_istiod_config(waypoint, "the plugin gone from the waypoint", |dump| {
        let filters = chain_http_filters(dump, "main_internal", &shop_chain);
        (filters.contains(&"envoy.filters.http.router".to_owned())
            && plugin_position(&filters, NS, plugin_name).is_none())
        .then_some(())
    })
    .expect("the waypoint without the filter");
}

/// `auto` through istiod on the HTTPRoute API, as `mesh_auto.rs` proves it on the
/// VirtualService API: `stickyctl controller` on the cluster, Prometheus scraping the Gateway
/// API gateway's Envoy (started with the chart's proxy stats, as istio-agent starts a pod that
/// names them), two rollouts on the one gateway with `spec.analysis.provider: Istio` and every
/// query the provider's default: a healthy canary (identical to stable) walks 10-50-100 and is
/// promoted, a bad one (5 % of its requests fail, stable's 0.1 %) is rolled back at 10 %. The
/// default queries read each version's cluster stats at the gateway, here the version
/// Services' `outbound|80||<service>-<version>.prod.svc.cluster.local` (no subset on this API),
/// which the Istio provider's cluster regex matches. Load: new visitors (every second visit a
/// browser never seen before).
#[test]
fn auto_through_istiod_on_the_httproute_api_promotes_a_healthy_canary_and_rolls_back_a_bad_one() {
    const WITHIN: Duration = Duration::from_secs(100);
    // Dropped last, once every process of this test is gone.
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let stats = AgentStats::istio_with_chart_proxy_stats().unwrap_or_else(|e| panic!("{e:#}"));
    let bad = Service {
        faults: &BAD_FAULTS,
        ..Service::new("cart", &[STABLE, CANARY])
    };
    let mesh = GatewayApiStack::start_with_stats(
        Path::new(env!("CARGO_BIN_EXE_sticky-upstream")),
        &[Service::new("shop", &[STABLE, CANARY]), bad],
        Options::default(),
        &stats,
    )
    .unwrap_or_else(|e| panic!("cannot start the mesh: {e:?}"));
    let stickyctl = mesh.stickyctl().expect("stickyctl");
    let url = plugin_url();
    for (service, interval) in [("shop", "4"), ("cart", "20")] {
        let fqdn = format!("{service}.{NS}.svc.cluster.local");
        stickyctl
            .ok(&[
                "--name",
                service,
                "init",
                "--service",
                &fqdn,
                "--stable",
                STABLE,
                "--plugin-url",
                &url,
                "--target-ref",
                &format!("Gateway/{GATEWAY}"),
                "--gateway-namespace",
                GATEWAY_NS,
                "--steps",
                "10,50,100",
                "--interval",
                interval,
                "--promotion",
                "auto",
            ])
            .unwrap_or_else(|e| panic!("{e:#}"));
        patch_analysis(&mesh.plane, service, json!({"provider": "Istio"}));
        stickyctl
            .ok(&["--name", service, "start", "--canary", CANARY])
            .unwrap_or_else(|e| panic!("{e:#}"));
    }
    let admin = mesh.gateway.envoy().admin().unwrap().address();
    let prometheus = Prometheus::start(&[admin]).unwrap_or_else(|e| panic!("{e:#}"));
    let logs = tempfile::tempdir().unwrap();
    let population = TrafficOptions {
        visits_per_second: 60.0,
        seconds: 150,
        new_every: 2,
        returning: 100,
    };
    let _loads = ["shop", "cart"].map(|service| {
        Traffic::start_on(
            Path::new(env!("CARGO_BIN_EXE_sticky-load")),
            mesh.gateway_address(),
            Some(&host(service)),
            population,
        )
        .unwrap_or_else(|e| panic!("{e:#}"))
    });
    let auto = AutoLoop {
        stickyctl: &stickyctl,
        plane: &mesh.plane,
        prometheus: prometheus.url(),
        logs: logs.path(),
        within: WITHIN,
    };
    let _controller = auto.controller();
    let started = Instant::now();
    for service in ["shop", "cart"] {
        auto.auto_on_with_defaults(service);
    }

    let bad = auto.wait_for_phase("cart", "RolledBack");
    let bad_took = started.elapsed();
    let bad_applied = assert_rolled_back_at_10(&bad);
    let healthy = auto.wait_for_phase("shop", "Promoted");
    let healthy_took = started.elapsed();
    let applied = assert_promoted_through_10_50_100(&healthy);
    assert_decision_reasons(&prometheus, "shop");
    // The version Services' clusters are what Prometheus had from the gateway (over the run:
    // once promoted, stable's Service and cluster are gone, and their series with them).
    let clusters = prometheus
        .query(r#"sum by (cluster_name) (max_over_time(envoy_cluster_upstream_rq_total{cluster_name=~"outbound\\|80\\|\\|(shop|cart)-v[12]\\..*"}[10m])) > 0"#)
        .unwrap();
    let clusters: Vec<&str> = clusters
        .iter()
        .filter_map(|s| s["metric"]["cluster_name"].as_str())
        .collect();
    eprintln!("version Services' clusters in Prometheus: {clusters:?}");
    for version in [STABLE, CANARY] {
        let cluster = format!("outbound|{SERVICE_PORT}||shop-{version}.{NS}.svc.cluster.local");
        assert!(
            clusters.contains(&cluster.as_str()),
            "{cluster} in {clusters:?}"
        );
    }
    eprintln!(
        "HTTPRoute API: bad canary rolled back {:.0} s after `auto on` (weight 10% reported \
         after {bad_applied} s); healthy canary promoted after {:.0} s, steps 10/50/100% \
         reported by the gateway after {applied:?} s",
        bad_took.as_secs_f64(),
        healthy_took.as_secs_f64()
    );
}
