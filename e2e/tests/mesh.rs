//! The Istio claims, proven through a real control plane: `stickyctl` writes to a real
//! kube-apiserver, istiod translates, and an Envoy 1.40 ingress gateway in `istio-system`
//! (configured by istiod alone) serves real HTTP to upstream processes.
//!
//! Each test starts its own control plane on loopback (a few seconds); the control-plane
//! binaries come from `tools/control-plane/build`, and a missing piece fails the test.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sticky_canary_e2e::browser::{Browser, Http};
use sticky_canary_e2e::crowd::Crowd;
use sticky_canary_e2e::envoy::free_port;
use sticky_canary_e2e::locate;
use sticky_canary_e2e::mesh::control_plane::ControlPlane;
use sticky_canary_e2e::mesh::proxy::{MeshProxy, Role};
use sticky_canary_e2e::operator::Stickyctl;
use sticky_canary_e2e::upstream::Upstream;

/// Where the services run.
const NS: &str = "prod";
/// How long a change may take to travel from the API server through istiod to Envoy.
const PROPAGATION: Duration = Duration::from_secs(30);

/// A control plane, an ingress gateway fed by it, and services with their versions.
struct Mesh {
    plane: ControlPlane,
    gateway: MeshProxy,
    http: Http,
    port: u16,
    stickyctl: Stickyctl,
    _upstreams: Vec<Upstream>,
}

/// The upstream of `service`'s `version` names itself `<service>-<version>`.
fn served_name(service: &str, version: &str) -> String {
    format!("{service}-{version}")
}

fn host(service: &str) -> String {
    format!("{service}.example.com")
}

impl Mesh {
    /// `services` with their versions, each behind the gateway as `<service>.example.com`
    /// with the user's own VirtualService routing every request to it.
    fn start(services: &[(&str, &[&str])]) -> Mesh {
        let plane = ControlPlane::start(&locate::istio_crds().unwrap())
            .unwrap_or_else(|e| panic!("cannot start the control plane: {e:?}"));
        let port = free_port().unwrap();
        plane
            .apply(&json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}}))
            .unwrap();
        plane
            .apply(&json!({
                "apiVersion": "networking.istio.io/v1", "kind": "Gateway",
                "metadata": {"name": "web", "namespace": "istio-system"},
                "spec": {"selector": {"istio": "ingressgateway"},
                         "servers": [{"port": {"number": port, "name": "http", "protocol": "HTTP"},
                                      "bind": "127.0.0.1", "hosts": ["*/*"]}]}}))
            .unwrap();
        let bin = Path::new(env!("CARGO_BIN_EXE_sticky-upstream"));
        let mut upstreams = Vec::new();
        for (service, versions) in services {
            let mut endpoints = Vec::new();
            for version in *versions {
                let upstream = Upstream::spawn(bin, &served_name(service, version)).unwrap();
                endpoints.push(json!({"address": "127.0.0.1",
                                      "ports": {"http": upstream.address.port()},
                                      "labels": {"version": version}}));
                upstreams.push(upstream);
            }
            plane
                .apply(&json!({
                    "apiVersion": "networking.istio.io/v1", "kind": "ServiceEntry",
                    "metadata": {"name": service, "namespace": NS},
                    "spec": {"hosts": [format!("{service}.{NS}.svc.cluster.local")],
                             "location": "MESH_INTERNAL", "resolution": "STATIC",
                             "ports": [{"number": 8080, "name": "http", "protocol": "HTTP"}],
                             "endpoints": endpoints}}))
                .unwrap();
            plane
                .apply(&json!({
                    "apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
                    "metadata": {"name": service, "namespace": NS},
                    "spec": {"hosts": [host(service)], "gateways": ["istio-system/web"],
                             "http": [{"name": service,
                                       "route": [{"destination": {"host": service,
                                                                  "port": {"number": 8080}}}]}]}}))
                .unwrap();
        }
        let mut gateway = MeshProxy::start(
            &plane,
            Role::Gateway,
            "istio-ingressgateway",
            "istio-system",
            &BTreeMap::from([("istio".to_owned(), "ingressgateway".to_owned())]),
        )
        .unwrap();
        let http = gateway.wait_for_listener(port).unwrap();
        let stickyctl = Stickyctl::kube(&plane.admin_kubeconfig(NS).unwrap(), NS).unwrap();
        Mesh {
            plane,
            gateway,
            http,
            port,
            stickyctl,
            _upstreams: upstreams,
        }
    }

    /// `stickyctl init` of `service` at stable `v1`, loading the built filter from its file.
    fn init(&self, service: &str) {
        let url = format!("file://{}", locate::filter_wasm().unwrap().display());
        self.sticky(&[
            "init",
            "--service",
            service,
            "--stable",
            "v1",
            "--plugin-url",
            &url,
        ]);
    }

    /// Runs a `stickyctl` command that must succeed.
    fn sticky(&self, args: &[&str]) -> String {
        self.stickyctl.ok(args).unwrap_or_else(|e| panic!("{e:?}"))
    }

    /// A first-time visitor of `service`.
    fn browser(service: &str) -> Browser {
        Browser::new().with_header("host", &host(service))
    }

    /// Waits until a first-time visitor of `service` lands on `version` `share` of the time
    /// or more, i.e. until the data plane serves the rollout's latest weights.
    fn wait_until(&self, what: &str, mut done: impl FnMut(&Http) -> bool) {
        let deadline = Instant::now() + PROPAGATION;
        while !done(&self.http.fresh()) {
            assert!(
                Instant::now() < deadline,
                "{what}: not seen within {PROPAGATION:?}\n{}",
                self.gateway_log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn gateway_log(&self) -> String {
        let log = self.gateway.envoy().log().unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(15).collect();
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    }

    /// The share of `crowd` visits of `service` that `version` served, after checking that no
    /// page mixed versions or missed an asset.
    fn visit_share(&self, crowd: &mut Crowd, service: &str, version: &str) -> f64 {
        let visits = crowd.visit(&self.http, "/").unwrap();
        let served = served_name(service, version);
        let mut on = 0;
        for visit in &visits {
            assert_eq!(visit.not_found(), 0, "a 404 on {service}: {visit:?}");
            assert!(
                !visit.mixed(),
                "a page of {service} mixed versions: {visit:?}"
            );
            if visit.version() == Some(served.as_str()) {
                on += 1;
            }
        }
        f64::from(on) / visits.len() as f64
    }
}

fn crowd(service: &str, size: usize) -> Crowd {
    Crowd {
        browsers: (0..size).map(|_| Mesh::browser(service)).collect(),
    }
}

/// Through the gateway in `istio-system`, a rollout of a service in `prod`: the filter runs
/// there (the placement `stickyctl` renders), pins, shares, aborts, and the QA override works.
#[test]
fn a_rollout_through_the_ingress_gateway() {
    let mesh = Mesh::start(&[("shop", &["v1", "v2"])]);
    mesh.init("shop");
    mesh.sticky(&["start", "--canary", "v2"]);
    mesh.sticky(&["set-weight", "30"]);

    let plugin = mesh
        .plane
        .get(
            "extensions.istio.io/v1alpha1",
            "WasmPlugin",
            "istio-system",
            "sticky-canary-gateway-istio-ingressgateway",
        )
        .unwrap()
        .expect("the shared plugin lives in the gateway's namespace");
    assert_eq!(
        plugin["spec"]["pluginConfig"]["rollouts"][0]["name"],
        "prod/shop"
    );
    let filters = mesh.gateway.http_filters(mesh.port).unwrap();
    let wasm = filters
        .iter()
        .position(|f| f.contains("sticky-canary-gateway-istio-ingressgateway"))
        .unwrap_or_else(|| panic!("the gateway runs no sticky filter: {filters:?}"));
    let router = filters
        .iter()
        .position(|f| f == "envoy.filters.http.router")
        .unwrap();
    assert!(
        wasm < router,
        "the filter runs before the router: {filters:?}"
    );

    mesh.wait_until("the canary at 30%", |http| {
        let mut browser = Mesh::browser("shop");
        browser
            .visit(http, "/")
            .is_ok_and(|v| v.page.received_version.is_some())
    });
    let mut visitors = crowd("shop", 400);
    let share = mesh.visit_share(&mut visitors, "shop", "v2");
    assert!(
        (0.22..=0.38).contains(&share),
        "v2 share {share} at weight 30"
    );
    // The same visitors again: every one on the version it had.
    let first: Vec<Option<String>> = visitors
        .browsers
        .iter()
        .map(|b| b.cookie("sticky-version.prod.shop").map(str::to_owned))
        .collect();
    mesh.visit_share(&mut visitors, "shop", "v2");
    let second: Vec<Option<String>> = visitors
        .browsers
        .iter()
        .map(|b| b.cookie("sticky-version.prod.shop").map(str::to_owned))
        .collect();
    assert_eq!(first, second, "pins hold");

    // A spoofed version header is overwritten; the QA override reaches the canary.
    let spoofed = mesh
        .http
        .get(
            "/",
            &[("host", b"shop.example.com"), ("x-sticky-version", b"v9")],
        )
        .unwrap();
    assert!(
        matches!(spoofed.received_version.as_deref(), Some("v1" | "v2")),
        "{spoofed:?}"
    );

    mesh.sticky(&["abort"]);
    mesh.wait_until("every client back on stable", |http| {
        let mut browsers = crowd("shop", 1);
        browsers.browsers[0] = visitors.browsers[0].clone();
        browsers
            .visit(http, "/")
            .is_ok_and(|v| v[0].version() == Some("shop-v1"))
    });
    let share = mesh.visit_share(&mut visitors, "shop", "v1");
    assert_eq!(share, 1.0, "after abort everyone is on stable");
}

/// Three services behind one gateway: two rollouts with the same version names at different
/// weights, one service without a rollout. Each keeps its own clients and versions, and one
/// rollout's change, abort and deletion leave the others as they were.
#[test]
fn many_rollouts_on_one_gateway() {
    let mesh = Mesh::start(&[
        ("web", &["v1", "v2"]),
        ("api", &["v1", "v2"]),
        ("static", &["v1"]),
    ]);
    for service in ["web", "api"] {
        mesh.init(service);
        mesh.stickyctl
            .ok(&["--name", service, "start", "--canary", "v2"])
            .unwrap();
    }
    mesh.stickyctl
        .ok(&["--name", "web", "set-weight", "20"])
        .unwrap();
    mesh.stickyctl
        .ok(&["--name", "api", "set-weight", "80"])
        .unwrap();
    let plugin = mesh
        .plane
        .get(
            "extensions.istio.io/v1alpha1",
            "WasmPlugin",
            "istio-system",
            "sticky-canary-gateway-istio-ingressgateway",
        )
        .unwrap()
        .unwrap();
    let names: Vec<&Value> = plugin["spec"]["pluginConfig"]["rollouts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| &r["name"])
        .collect();
    assert_eq!(
        names,
        [&json!("prod/api"), &json!("prod/web")],
        "one plugin, both rollouts"
    );
    let filters = mesh.gateway.http_filters(mesh.port).unwrap();
    assert_eq!(
        filters
            .iter()
            .filter(|f| f.contains("sticky-canary"))
            .count(),
        1,
        "one filter per request, whatever the number of rollouts: {filters:?}"
    );

    mesh.wait_until("both rollouts live", |http| {
        ["web", "api"].iter().all(|service| {
            Mesh::browser(service)
                .visit(http, "/")
                .is_ok_and(|v| v.page.received_version.is_some())
        })
    });
    let mut web = crowd("web", 400);
    let mut api = crowd("api", 400);
    let web_share = mesh.visit_share(&mut web, "web", "v2");
    let api_share = mesh.visit_share(&mut api, "api", "v2");
    assert!(
        (0.13..=0.27).contains(&web_share),
        "web v2 {web_share} at 20"
    );
    assert!(
        (0.73..=0.87).contains(&api_share),
        "api v2 {api_share} at 80"
    );

    // The service without a rollout: nothing stamped, no cookie.
    let plain = mesh
        .http
        .get("/", &[("host", b"static.example.com")])
        .unwrap();
    assert_eq!(plain.served_by.as_deref(), Some("static-v1"));
    assert_eq!(plain.received_version, None, "no header stamped for static");
    assert!(
        plain.set_cookies.is_empty(),
        "no cookie: {:?}",
        plain.set_cookies
    );

    // api aborts; web's clients stay where they were.
    let web_pins = pins(&web, "sticky-version.prod.web");
    mesh.stickyctl.ok(&["--name", "api", "abort"]).unwrap();
    mesh.wait_until("api back on stable", |http| {
        let mut b = Browser::new().with_header("host", "api.example.com");
        (0..20).all(|_| {
            b = Browser::new().with_header("host", "api.example.com");
            b.visit(http, "/")
                .is_ok_and(|v| v.version() == Some("api-v1"))
        })
    });
    assert_eq!(mesh.visit_share(&mut api, "api", "v1"), 1.0);
    let again = mesh.visit_share(&mut web, "web", "v2");
    assert_eq!(again, web_share, "web unchanged by api's abort");
    assert_eq!(pins(&web, "sticky-version.prod.web"), web_pins);

    // api's rollout deleted: web still runs from the shared plugin, api is plain again.
    mesh.stickyctl.ok(&["--name", "api", "delete"]).unwrap();
    mesh.wait_until("api without the filter", |http| {
        http.get("/", &[("host", b"api.example.com")])
            .is_ok_and(|r| r.received_version.is_none() && r.set_cookies.is_empty())
    });
    assert_eq!(mesh.visit_share(&mut web, "web", "v2"), web_share);
}

fn pins(crowd: &Crowd, cookie: &str) -> Vec<Option<String>> {
    crowd
        .browsers
        .iter()
        .map(|b| b.cookie(cookie).map(str::to_owned))
        .collect()
}
