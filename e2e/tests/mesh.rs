//! The Istio claims, proven through a real control plane: `stickyctl` writes to a real
//! kube-apiserver, istiod translates, and an Envoy 1.40 ingress gateway in `istio-system`
//! (configured by istiod alone) serves real HTTP to upstream processes.
//!
//! Each test starts its own control plane on loopback (a few seconds); the control-plane
//! binaries come from `tools/control-plane/build`, and a missing piece fails the test.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Mutex, MutexGuard};
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

/// One control plane at a time: each is four processes compiling and pushing configuration,
/// and several at once on a small machine only make each slower.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// A control plane, an ingress gateway fed by it, and services with their versions.
struct Mesh {
    plane: ControlPlane,
    gateway: MeshProxy,
    http: Http,
    port: u16,
    stickyctl: Stickyctl,
    _upstreams: Vec<Upstream>,
    // Last, so the next test starts only once all of this one's processes are gone.
    _turn: MutexGuard<'static, ()>,
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
        Mesh::start_with(services, free_port().unwrap(), &BTreeMap::new())
    }

    /// [`Mesh::start`] with the services listening on `service_port` (their port in the mesh,
    /// where a caller's sidecar takes their calls) and the upstreams of the services in `calls`
    /// calling the service named there through the address named there (see `site::HOP`).
    fn start_with(
        services: &[(&str, &[&str])],
        service_port: u16,
        calls: &BTreeMap<&str, (SocketAddr, String)>,
    ) -> Mesh {
        // A test that failed while holding the turn poisons it; the next one may still run.
        let turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
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
                let call: Vec<String> = calls
                    .get(service)
                    .map(|(address, host)| vec!["--call".into(), address.to_string(), host.clone()])
                    .unwrap_or_default();
                let call: Vec<&str> = call.iter().map(String::as_str).collect();
                let upstream =
                    Upstream::spawn_with(bin, &served_name(service, version), &call).unwrap();
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
                             "ports": [{"number": service_port, "name": "http", "protocol": "HTTP"}],
                             "endpoints": endpoints}}))
                .unwrap();
            plane
                .apply(&json!({
                    "apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
                    "metadata": {"name": service, "namespace": NS},
                    "spec": {"hosts": [host(service), format!("{service}.{NS}.svc.cluster.local")],
                             "gateways": ["istio-system/web", "mesh"],
                             "http": [{"name": service,
                                       "route": [{"destination": {"host": service,
                                                                  "port": {"number": service_port}}}]}]}}))
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
            _turn: turn,
        }
    }

    /// `stickyctl init` of `service` at stable `v1`, loading the built filter from its file.
    fn init(&self, service: &str) {
        let url = format!("file://{}", locate::filter_wasm().unwrap().display());
        self.sticky(&[
            "init", "--service", service, "--stable", "v1", "--plugin-url", &url,
        ]);
    }

    /// Runs a `stickyctl` command that must succeed.
    fn sticky(&self, args: &[&str]) -> String {
        self.stickyctl
            .ok(args)
            .unwrap_or_else(|e| panic!("{e:?}"))
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
            assert!(!visit.mixed(), "a page of {service} mixed versions: {visit:?}");
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
    assert_eq!(plugin["spec"]["pluginConfig"]["rollouts"][0]["name"], "prod/shop");
    let filters = mesh.gateway.http_filters(mesh.port).unwrap();
    let wasm = filters
        .iter()
        .position(|f| f.contains("sticky-canary-gateway-istio-ingressgateway"))
        .unwrap_or_else(|| panic!("the gateway runs no sticky filter: {filters:?}"));
    let router = filters
        .iter()
        .position(|f| f == "envoy.filters.http.router")
        .unwrap();
    assert!(wasm < router, "the filter runs before the router: {filters:?}");

    mesh.wait_until("the canary at 30%", |http| {
        let mut browser = Mesh::browser("shop");
        browser
            .visit(http, "/")
            .is_ok_and(|v| v.page.received_version.is_some())
    });
    let mut visitors = crowd("shop", 400);
    let share = mesh.visit_share(&mut visitors, "shop", "v2");
    assert!((0.22..=0.38).contains(&share), "v2 share {share} at weight 30");
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
        .get("/", &[("host", b"shop.example.com"), ("x-sticky-version", b"v9")])
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
    assert_eq!(names, [&json!("prod/api"), &json!("prod/web")], "one plugin, both rollouts");
    let filters = mesh.gateway.http_filters(mesh.port).unwrap();
    assert_eq!(
        filters.iter().filter(|f| f.contains("sticky-canary")).count(),
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
    assert!((0.13..=0.27).contains(&web_share), "web v2 {web_share} at 20");
    assert!((0.73..=0.87).contains(&api_share), "api v2 {api_share} at 80");

    // The service without a rollout: nothing stamped, no cookie.
    let plain = mesh
        .http
        .get("/", &[("host", b"static.example.com")])
        .unwrap();
    assert_eq!(plain.served_by.as_deref(), Some("static-v1"));
    assert_eq!(plain.received_version, None, "no header stamped for static");
    assert!(plain.set_cookies.is_empty(), "no cookie: {:?}", plain.set_cookies);

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

/// Across a hop: the gateway stamps a request for `a`; `a` calls `b` through its sidecar,
/// where `b`'s filter runs on the client side. With `trustIncomingHeader` (the rule for
/// sidecars behind a gateway that decided), `b` follows the version `a`'s request carried;
/// the filter does not run on the sidecar's inbound side, nor for calls to other services.
#[test]
fn across_a_hop_the_callee_follows_the_trusted_header() {
    let service_port = free_port().unwrap();
    let sidecar = SocketAddr::from(([127, 0, 0, 1], service_port));
    let calls = BTreeMap::from([("a", (sidecar, format!("b.{NS}.svc.cluster.local")))]);
    let mesh = Mesh::start_with(&[("a", &["v1", "v2"]), ("b", &["v1", "v2"])], service_port, &calls);
    // The caller's sidecar: one listener bound on loopback, for the calls `a` makes.
    mesh.plane
        .apply(&json!({
            "apiVersion": "networking.istio.io/v1", "kind": "Sidecar",
            "metadata": {"name": "a", "namespace": NS},
            "spec": {"workloadSelector": {"labels": {"app": "a"}},
                     "egress": [{"port": {"number": service_port, "protocol": "HTTP", "name": "http"},
                                 "bind": "127.0.0.1", "captureMode": "NONE",
                                 "hosts": [format!("{NS}/*")]}]}}))
        .unwrap();
    let mut a_sidecar = MeshProxy::start(
        &mesh.plane,
        Role::Sidecar,
        "a-0",
        NS,
        &BTreeMap::from([("app".to_owned(), "a".to_owned())]),
    )
    .unwrap();
    a_sidecar.wait_for_listener(service_port).unwrap();
    mesh.init("a");
    mesh.stickyctl.ok(&["--name", "a", "start", "--canary", "v2"]).unwrap();
    mesh.stickyctl.ok(&["--name", "a", "set-weight", "50"]).unwrap();
    let url = format!("file://{}", locate::filter_wasm().unwrap().display());
    mesh.sticky(&[
        "init", "--service", "b", "--stable", "v1", "--plugin-url", &url,
        "--sidecar", "app=a", "--trust-incoming-header",
    ]);
    mesh.stickyctl.ok(&["--name", "b", "start", "--canary", "v2"]).unwrap();
    mesh.stickyctl.ok(&["--name", "b", "set-weight", "50"]).unwrap();
    let sidecar_plugin = mesh
        .plane
        .get("extensions.istio.io/v1alpha1", "WasmPlugin", NS, "sticky-canary-sidecar-app-a")
        .unwrap()
        .expect("the callers' plugin lives in their namespace");
    assert_eq!(sidecar_plugin["spec"]["match"], json!([{"mode": "CLIENT"}]));

    let hop = |browser: &mut Browser| -> Option<(String, String)> {
        let r = browser.fetch(&mesh.http, "/hop", sticky_canary_e2e::browser::Dest::Api).ok()?;
        Some((r.served_by?, r.callee_served_by?))
    };
    mesh.wait_until("the hop stamped at both ends", |_| {
        let mut browser = Mesh::browser("a");
        hop(&mut browser).is_some_and(|(a, b)| {
            a.strip_prefix("a-") == b.strip_prefix("b-")
        }) && a_sidecar.envoy().stats().is_ok_and(|stats| {
            stats.keys().any(|k| k.contains("sticky_canary") && k.contains("trusted"))
        })
    });
    let mut on_v2 = 0;
    for _ in 0..200 {
        let mut browser = Mesh::browser("a");
        let (a, b) = hop(&mut browser).expect("the hop answers");
        assert_eq!(
            a.strip_prefix("a-"),
            b.strip_prefix("b-"),
            "b follows the version a's request carried"
        );
        on_v2 += usize::from(a == "a-v2");
    }
    assert!((60..=140).contains(&on_v2), "a's weight decides: {on_v2} of 200 on v2");
}

/// The weights of rollout `rollout` in the shared plugin the gateway runs now (its ECDS
/// configuration as Envoy holds it), `None` while it holds none.
fn applied_weights(gateway: &MeshProxy, rollout: &str) -> Option<Vec<f64>> {
    let dump = gateway.envoy().config_dump("").ok()?;
    let configs = dump["configs"].as_array()?;
    configs
        .iter()
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
        })
}

/// Twenty weight changes pushed by istiod while a crowd browses: not one failed request,
/// not one page mixing versions, and each change reaches the gateway in seconds.
#[test]
fn twenty_weight_changes_under_load() {
    let mesh = Mesh::start(&[("shop", &["v1", "v2"])]);
    mesh.init("shop");
    mesh.sticky(&["start", "--canary", "v2"]);
    mesh.sticky(&["set-weight", "1"]);
    mesh.wait_until("the rollout live", |_| {
        applied_weights(&mesh.gateway, "prod/shop") == Some(vec![99.0, 1.0])
    });
    let weights = [
        5.0, 10.0, 20.0, 50.0, 80.0, 50.0, 20.0, 10.0, 5.0, 1.0, 10.0, 30.0, 60.0, 90.0, 99.0,
        70.0, 40.0, 15.0, 3.0, 25.0,
    ];
    let mut browsers: Vec<Browser> = (0..24).map(|_| Mesh::browser("shop")).collect();
    let http = mesh.http.fresh();
    let (took, loads) = sticky_canary_e2e::load::browse_while(&http, &mut browsers, |driver| {
        let mut took = Vec::new();
        for weight in weights {
            let elapsed = driver.change(|| {
                let start = Instant::now();
                mesh.sticky(&["set-weight", &weight.to_string()]);
                let written = start.elapsed();
                while applied_weights(&mesh.gateway, "prod/shop") != Some(vec![100.0 - weight, weight]) {
                    assert!(start.elapsed() < PROPAGATION, "weight {weight} never reached the gateway");
                    std::thread::sleep(Duration::from_millis(20));
                }
                (written, start.elapsed())
            });
            took.push(elapsed);
            driver.wait_for_round().unwrap();
        }
        took
    });
    let mut failed = 0;
    for load in &loads {
        match &load.outcome {
            Err(err) => panic!("a request failed during the changes: {err}"),
            Ok(visit) => {
                failed += visit.not_found();
                assert!(!visit.mixed(), "a page mixed versions: {visit:?}");
                assert!(
                    visit.responses().all(|r| r.status == 200),
                    "a request failed: {visit:?}"
                );
            }
        }
    }
    assert_eq!(failed, 0);
    let mut to_gateway: Vec<Duration> = took.iter().map(|(_, total)| *total).collect();
    to_gateway.sort();
    eprintln!(
        "{} page loads; stickyctl set-weight to the gateway's data plane: median {:?}, max {:?} (the command itself: median {:?})",
        loads.len(),
        to_gateway[to_gateway.len() / 2],
        to_gateway[to_gateway.len() - 1],
        {
            let mut written: Vec<Duration> = took.iter().map(|(w, _)| *w).collect();
            written.sort();
            written[written.len() / 2]
        }
    );
}
