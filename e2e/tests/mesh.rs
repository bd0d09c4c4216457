//! The Istio claims, proven through a real control plane: `stickyctl` writes to a real
//! kube-apiserver, istiod translates, and an Envoy 1.40 ingress gateway in `istio-system`
//! (configured by istiod alone) serves real HTTP to upstream processes.
//!
//! Each test starts its own control plane on loopback (a few seconds), one at a time; the
//! control-plane binaries come from `tools/control-plane/build`, and a missing piece fails.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sticky_canary_e2e::browser::{Browser, Dest};
use sticky_canary_e2e::crowd::Crowd;
use sticky_canary_e2e::envoy::free_port;
use sticky_canary_e2e::load::browse_while;
use sticky_canary_e2e::mesh::proxy::{MeshProxy, Role};
use sticky_canary_e2e::mesh::stack::{
    fqdn, override_token, runs_weights, served_name, MeshStack, Service, GATEWAY_PLUGIN, NS,
    PROPAGATION,
};

/// One control plane at a time: each is four processes compiling and pushing configuration,
/// and several at once on a small machine only make each slower.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// A mesh for one test, holding the turn until all of it is gone.
struct Mesh {
    stack: MeshStack,
    // Last, so the next test starts only once all of this one's processes are gone.
    _turn: MutexGuard<'static, ()>,
}

impl std::ops::Deref for Mesh {
    type Target = MeshStack;
    fn deref(&self) -> &MeshStack {
        &self.stack
    }
}

fn mesh(services: &[Service]) -> Mesh {
    mesh_on(services, free_port().unwrap())
}

fn mesh_on(services: &[Service], service_port: u16) -> Mesh {
    // A test that failed while holding the turn poisons it; the next one may still run.
    let turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let upstream = Path::new(env!("CARGO_BIN_EXE_sticky-upstream"));
    let stack = MeshStack::start(upstream, services, service_port)
        .unwrap_or_else(|e| panic!("cannot start the mesh: {e:?}"));
    Mesh { stack, _turn: turn }
}

impl Mesh {
    fn init(&self, service: &str, extra: &[&str]) {
        self.stack
            .init(service, extra)
            .unwrap_or_else(|e| panic!("{e:?}"));
    }

    fn sticky(&self, rollout: &str, args: &[&str]) {
        self.stack
            .sticky(rollout, args)
            .unwrap_or_else(|e| panic!("{e:?}"));
    }

    fn wait_until(&self, what: &str, done: impl FnMut(&sticky_canary_e2e::browser::Http) -> bool) {
        self.stack
            .wait_until(what, done)
            .unwrap_or_else(|e| panic!("{e:?}"));
    }

    /// The share of `crowd` visits of `service` that `version` served, after checking that no
    /// page mixed versions or missed an asset.
    fn visit_share(&self, crowd: &mut Crowd, service: &str, version: &str) -> f64 {
        crowd
            .visit_share(&self.http, "/", &served_name(service, version))
            .unwrap_or_else(|e| panic!("{service}: {e:?}"))
    }

    /// Waits until the gateway runs `weights` for rollout `prod/<rollout>`.
    fn wait_for_weights(&self, rollout: &str, weights: &[f64]) {
        let key = format!("{NS}/{rollout}");
        self.wait_until(&format!("{key} at {weights:?} at the gateway"), |_| {
            runs_weights(&self.gateway, &key, weights)
        });
    }

    /// Waits until a first-time visitor of each of `services` gets a stamped request.
    fn wait_until_stamped(&self, services: &[&str]) {
        self.wait_until("the rollouts live at the gateway", |http| {
            services.iter().all(|service| {
                MeshStack::browser(service)
                    .visit(http, "/")
                    .is_ok_and(|v| v.page.received_version.is_some())
            })
        });
    }
}

/// `size` returning visitors of `service` (see [`Crowd::returning`]).
fn crowd(service: &str, size: usize) -> Crowd {
    Crowd::returning(&MeshStack::browser(service), size)
}

fn pins(crowd: &Crowd, cookie: &str) -> Vec<Option<String>> {
    crowd.pins(cookie)
}

/// Through the gateway in `istio-system`, a rollout of a service in `prod`: the filter runs
/// there (the placement `stickyctl` renders), before the router; it pins, shares, ignores a
/// spoofed header, lets QA reach the canary with the token only (which stays out of every
/// object and of the upstream's requests), and an abort brings everyone back.
#[test]
fn a_rollout_through_the_ingress_gateway() {
    let mesh = mesh(&[Service::new("shop", &["v1", "v2"])]);
    mesh.init("shop", &[]);
    mesh.sticky("shop", &["start", "--canary", "v2"]);
    mesh.sticky("shop", &["set-weight", "30"]);

    let plugin = mesh
        .gateway_plugin()
        .unwrap()
        .expect("the shared plugin lives in the gateway's namespace");
    assert_eq!(
        plugin["spec"]["pluginConfig"]["rollouts"][0]["name"],
        "prod/shop"
    );
    mesh.wait_for_weights("shop", &[70.0, 30.0]);
    mesh.wait_until_stamped(&["shop"]);
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

    let mut visitors = crowd("shop", 400);
    let share = mesh.visit_share(&mut visitors, "shop", "v2");
    assert!(
        (0.22..=0.38).contains(&share),
        "v2 share {share} at weight 30"
    );
    // The same visitors again: every one on the version it had.
    let first = pins(&visitors, "sticky-version.prod.shop");
    assert!(first.iter().all(Option::is_some), "every visitor pinned");
    assert_eq!(mesh.visit_share(&mut visitors, "shop", "v2"), share);
    assert_eq!(
        pins(&visitors, "sticky-version.prod.shop"),
        first,
        "pins hold"
    );

    // A spoofed version header is overwritten; the QA override reaches the canary.
    let host = b"shop.example.com";
    for _ in 0..20 {
        let spoofed = mesh
            .http
            .get("/", &[("host", host), ("x-sticky-version", b"v9")])
            .unwrap();
        assert!(
            matches!(spoofed.received_version.as_deref(), Some("v1" | "v2")),
            "{spoofed:?}"
        );
    }
    mesh.sticky("shop", &["set-weight", "0"]);
    mesh.wait_for_weights("shop", &[100.0, 0.0]);
    // The override is off by default: a client who guesses the header name gets nothing.
    let served = |http: &sticky_canary_e2e::browser::Http, value: &[u8]| {
        http.get("/", &[("host", host), ("x-sticky-override", value)])
            .ok()
            .filter(|r| r.received_override.is_none())
            .and_then(|r| r.served_by)
    };
    for _ in 0..20 {
        assert_eq!(
            served(&mesh.http, b"v2").as_deref(),
            Some("shop-v1"),
            "no token, no override"
        );
    }
    // QA's token: created by stickyctl, kept in the namespace's Secret, only its digest in
    // the rollout, the WasmPlugin and the gateway's configuration.
    let said = mesh
        .stickyctl
        .ok(&["--name", "shop", "override", "token"])
        .unwrap();
    assert!(
        said.contains("kubectl get secret sticky-canary-override-tokens"),
        "{said}"
    );
    let token = override_token(&mesh.plane, "shop")
        .unwrap()
        .expect("a token for shop");
    let with_token = format!("v2:{token}");
    mesh.wait_until("the override token at the gateway", |http| {
        served(http, with_token.as_bytes()).as_deref() == Some("shop-v2")
    });
    for _ in 0..10 {
        assert_eq!(
            served(&mesh.http, b"v2").as_deref(),
            Some("shop-v1"),
            "no token"
        );
        assert_eq!(served(&mesh.http, b"v2:wrong").as_deref(), Some("shop-v1"));
        assert_eq!(
            served(&mesh.http, with_token.as_bytes()).as_deref(),
            Some("shop-v2")
        );
    }
    let plugin = mesh
        .gateway_plugin()
        .unwrap()
        .expect("the gateway's plugin");
    let dump = mesh.gateway.envoy().config_dump("").unwrap();
    let rollout = mesh
        .plane
        .get("stickycanary.io/v1alpha1", "StickyCanary", NS, "shop")
        .unwrap()
        .expect("the rollout");
    for (what, text) in [
        ("WasmPlugin", plugin.to_string()),
        ("config dump", dump.to_string()),
        ("rollout", rollout.to_string()),
    ] {
        assert!(!text.contains(&token), "the token in clear in the {what}");
    }
    mesh.sticky("shop", &["set-weight", "30"]);
    mesh.sticky("shop", &["abort"]);
    // Only stable left in the plugin (a probe on v1 at 30 would pass before the abort lands).
    mesh.wait_for_weights("shop", &[100.0]);
    assert_eq!(
        mesh.visit_share(&mut visitors, "shop", "v1"),
        1.0,
        "after abort everyone is on stable"
    );
}

/// Three services behind one gateway: two rollouts with the same version names at different
/// weights, one service without a rollout. Each keeps its own clients and versions, and one
/// rollout's abort and deletion leave the others as they were.
#[test]
fn many_rollouts_on_one_gateway() {
    let mesh = mesh(&[
        Service::new("web", &["v1", "v2"]),
        Service::new("api", &["v1", "v2"]),
        Service::new("static", &["v1"]),
    ]);
    for (service, weight) in [("web", "20"), ("api", "80")] {
        mesh.init(service, &[]);
        mesh.sticky(service, &["start", "--canary", "v2"]);
        mesh.sticky(service, &["set-weight", weight]);
    }
    let plugin = mesh.gateway_plugin().unwrap().unwrap();
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
    mesh.wait_for_weights("web", &[80.0, 20.0]);
    mesh.wait_for_weights("api", &[20.0, 80.0]);
    mesh.wait_until_stamped(&["web", "api"]);
    let filters = mesh.gateway.http_filters(mesh.port).unwrap();
    assert_eq!(
        filters
            .iter()
            .filter(|f| f.contains("sticky-canary"))
            .count(),
        1,
        "one filter per request, whatever the number of rollouts: {filters:?}"
    );

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
    mesh.sticky("api", &["abort"]);
    mesh.wait_until("api back on stable", |http| {
        (0..20).all(|_| {
            MeshStack::browser("api")
                .visit(http, "/")
                .is_ok_and(|v| v.version() == Some("api-v1"))
        })
    });
    assert_eq!(mesh.visit_share(&mut api, "api", "v1"), 1.0);
    assert_eq!(
        mesh.visit_share(&mut web, "web", "v2"),
        web_share,
        "web unchanged"
    );
    assert_eq!(pins(&web, "sticky-version.prod.web"), web_pins);

    // api's rollout deleted: web still runs from the shared plugin, api is plain again.
    mesh.sticky("api", &["delete"]);
    mesh.wait_until("api without the filter", |http| {
        http.get("/", &[("host", b"api.example.com")])
            .is_ok_and(|r| r.received_version.is_none() && r.set_cookies.is_empty())
    });
    assert_eq!(mesh.visit_share(&mut web, "web", "v2"), web_share);
    let plugin = mesh.gateway_plugin().unwrap().unwrap();
    assert_eq!(
        plugin["spec"]["pluginConfig"]["rollouts"][0]["name"],
        "prod/web"
    );
    mesh.sticky("web", &["delete"]);
    assert!(
        mesh.gateway_plugin().unwrap().is_none(),
        "the last rollout to leave deletes the shared plugin"
    );
}

/// Across a hop: the gateway stamps a request for `a`; `a` calls `b` through its sidecar,
/// where `b`'s filter runs on the client side. With `trustIncomingHeader` (the rule for
/// sidecars behind a gateway that decided), `b` follows the version `a`'s request carried;
/// and `b`'s entry at the gateway, from the same rollout, trusts no client.
#[test]
fn across_a_hop_the_callee_follows_the_trusted_header() {
    let service_port = free_port().unwrap();
    let sidecar = SocketAddr::from(([127, 0, 0, 1], service_port));
    let mut a = Service::new("a", &["v1", "v2"]);
    a.calls = Some((sidecar, fqdn("b")));
    let mesh = mesh_on(&[a, Service::new("b", &["v1", "v2"])], service_port);
    let inbound = free_port().unwrap();
    // The caller's sidecar: one listener bound on loopback, for the calls `a` makes.
    mesh.plane
        .apply(&json!({
            "apiVersion": "networking.istio.io/v1", "kind": "Sidecar",
            "metadata": {"name": "a", "namespace": NS},
            "spec": {"workloadSelector": {"labels": {"app": "a"}},
                     "ingress": [{"port": {"number": inbound, "protocol": "HTTP", "name": "http-in"},
                                  "bind": "127.0.0.1", "captureMode": "NONE",
                                  "defaultEndpoint": "127.0.0.1:9"}],
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
    mesh.init("a", &[]);
    mesh.sticky("a", &["start", "--canary", "v2"]);
    mesh.sticky("a", &["set-weight", "50"]);
    mesh.init("b", &["--sidecar", "app=a", "--trust-incoming-header"]);
    mesh.sticky("b", &["start", "--canary", "v2"]);
    mesh.sticky("b", &["set-weight", "50"]);
    let sidecar_plugin = mesh
        .plane
        .get(
            "extensions.istio.io/v1alpha1",
            "WasmPlugin",
            NS,
            "sticky-canary-sidecar-app-a",
        )
        .unwrap()
        .expect("the callers' plugin lives in their namespace");
    assert_eq!(sidecar_plugin["spec"]["match"], json!([{"mode": "CLIENT"}]));

    let hop = |http: &sticky_canary_e2e::browser::Http| -> Option<(String, String)> {
        let r = MeshStack::browser("a")
            .fetch(http, "/hop", Dest::Api)
            .ok()?;
        Some((r.served_by?, r.callee_served_by?))
    };
    mesh.wait_until("the sidecar's filter trusting a's header", |http| {
        hop(http).is_some()
            && a_sidecar.envoy().stats().is_ok_and(|stats| {
                stats
                    .iter()
                    .any(|(k, v)| k.contains("sticky_canary") && k.contains("trusted") && *v > 0)
            })
    });
    // Where routing happens and nowhere else: the caller's outbound side, not its inbound.
    a_sidecar.wait_for_listener(inbound).unwrap();
    let sticky = |port| {
        a_sidecar
            .http_filters(port)
            .unwrap()
            .iter()
            .filter(|f| f.contains("sticky-canary"))
            .count()
    };
    assert_eq!(sticky(service_port), 1, "outbound: the filter runs once");
    assert_eq!(sticky(inbound), 0, "inbound: no filter");
    mesh.wait_for_weights("a", &[50.0, 50.0]);
    // b's entry at the sidecar knows v2 (after `init b` it held v1 only, and trusted that).
    mesh.wait_until("b at 50% at a's sidecar", |_| {
        runs_weights(&a_sidecar, &format!("{NS}/b"), &[50.0, 50.0])
    });
    let mut on_v2 = 0;
    for _ in 0..200 {
        let (a, b) = hop(&mesh.http).expect("the hop answers");
        assert_eq!(
            a.strip_prefix("a-"),
            b.strip_prefix("b-"),
            "b follows the version a's request carried"
        );
        on_v2 += usize::from(a == "a-v2");
    }
    assert!(
        (60..=140).contains(&on_v2),
        "a's weight decides: {on_v2} of 200 on v2"
    );

    // Trust is the sidecars' only: b's entry at the public gateway never keeps a header a
    // client sent, although the rollout asks for trust.
    let entry = |plugin: &Value| -> Value {
        plugin["spec"]["pluginConfig"]["rollouts"]
            .as_array()
            .and_then(|r| r.iter().find(|e| e["name"] == format!("{NS}/b")))
            .cloned()
            .unwrap_or(Value::Null)
    };
    let gateway_plugin = mesh
        .gateway_plugin()
        .unwrap()
        .expect("the gateway's plugin");
    assert_eq!(
        entry(&gateway_plugin)["config"].get("trustIncomingHeader"),
        None
    );
    assert_eq!(
        entry(&sidecar_plugin)["config"]["trustIncomingHeader"],
        json!(true)
    );
    mesh.sticky("b", &["set-weight", "10"]);
    mesh.wait_for_weights("b", &[90.0, 10.0]);
    let mut spoofers = crowd("b", 300);
    spoofers.browsers = spoofers
        .browsers
        .into_iter()
        .map(|b| b.with_header("x-sticky-version", "v2"))
        .collect();
    let share = mesh.visit_share(&mut spoofers, "b", "v2");
    let mut honest = crowd("b", 300);
    assert_eq!(
        mesh.visit_share(&mut honest, "b", "v2"),
        share,
        "the same clients without the header: the same versions"
    );
    assert!(
        share < 0.2,
        "v2 share {share} at weight 10 for clients sending v2"
    );
    let trusted_at_gateway: u64 = mesh
        .gateway
        .envoy()
        .stats()
        .unwrap()
        .iter()
        .filter(|(k, _)| k.contains(&format!("rollout.{NS}/b.")) && k.ends_with("reason.trusted"))
        .map(|(_, v)| *v)
        .sum();
    assert_eq!(
        trusted_at_gateway, 0,
        "the gateway trusted a client's header"
    );
}

/// Twenty weight changes pushed by istiod while a crowd browses: not one failed request,
/// not one page mixing versions, and each change reaches the gateway within seconds.
#[test]
fn twenty_weight_changes_under_load() {
    let mesh = mesh(&[Service::new("shop", &["v1", "v2"])]);
    mesh.init("shop", &[]);
    mesh.sticky("shop", &["start", "--canary", "v2"]);
    mesh.sticky("shop", &["set-weight", "1"]);
    let applied = |weight: f64| runs_weights(&mesh.gateway, "prod/shop", &[100.0 - weight, weight]);
    mesh.wait_until("the rollout live", |_| applied(1.0));
    let weights = [
        5.0, 10.0, 20.0, 50.0, 80.0, 50.0, 20.0, 10.0, 5.0, 1.0, 10.0, 30.0, 60.0, 90.0, 99.0,
        70.0, 40.0, 15.0, 3.0, 25.0,
    ];
    let mut browsers: Vec<Browser> = (0..24).map(|_| MeshStack::browser("shop")).collect();
    let http = mesh.http.fresh();
    let (took, loads) = browse_while(&http, &mut browsers, |driver| {
        let mut took = Vec::new();
        for weight in weights {
            took.push(driver.change(|| {
                let start = Instant::now();
                mesh.sticky("shop", &["set-weight", &weight.to_string()]);
                let written = start.elapsed();
                while !applied(weight) {
                    assert!(
                        start.elapsed() < PROPAGATION,
                        "weight {weight} never reached the gateway"
                    );
                    std::thread::sleep(Duration::from_millis(20));
                }
                (written, start.elapsed())
            }));
            driver.wait_for_round().unwrap();
        }
        took
    });
    for load in &loads {
        let visit = load
            .outcome
            .as_ref()
            .unwrap_or_else(|err| panic!("a request failed during the changes: {err}"));
        assert!(
            visit.whole(),
            "a request failed or the page mixed versions: {visit:?}"
        );
    }
    let median = |mut d: Vec<Duration>| {
        d.sort();
        (d[d.len() / 2], d[d.len() - 1])
    };
    let (command, _) = median(took.iter().map(|t| t.0).collect());
    let (to_gateway, slowest) = median(took.iter().map(|t| t.1).collect());
    eprintln!(
        "{} page loads, none failed or mixed; set-weight until the gateway runs it: median {to_gateway:?}, max {slowest:?} (the command alone: median {command:?})",
        loads.len()
    );
}

/// A module that loads but fails on every request: the filter traps, and the WasmPlugin's
/// `FAIL_OPEN` lets the request through unstamped, to the managed route to stable.
const TRAPPING_MODULE: &str = r#"(module
  (memory (export "memory") 1)
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_memory_allocate") (param i32) (result i32) i32.const 1024)
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32) i32.const 1)
  (func (export "proxy_on_configure") (param i32 i32) (result i32) i32.const 1)
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32) unreachable))"#;

/// A broken module fails open, as the WasmPlugin says, and sends every client to stable:
/// the managed routes match only the sealed stamp the filter makes, so neither an unstamped
/// request nor a client's own `x-sticky-version: v2` reaches the canary. The request during
/// which the module traps is answered 503 by Envoy (one per worker; the VM is dead after);
/// every request after it passes. (A file that is not a loadable module at all is another
/// matter: Envoy rejects the filter configuration istiod sends, and with no earlier
/// configuration to keep, the listener answers 500: see the README.)
#[test]
fn a_broken_module_sends_everyone_to_stable() {
    let mesh = mesh(&[Service::new("shop", &["v1", "v2"])]);
    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("broken.wasm");
    std::fs::write(&broken, wat::parse_str(TRAPPING_MODULE).unwrap()).unwrap();
    let url = format!("file://{}", broken.display());
    let init = MeshStack::init_args("shop", &url);
    let init: Vec<&str> = init.iter().map(String::as_str).collect();
    mesh.stickyctl.ok(&init).unwrap();
    mesh.sticky("shop", &["start", "--canary", "v2"]);
    mesh.sticky("shop", &["set-weight", "50"]);
    // The managed routes are at the gateway, the canary's among them ...
    mesh.wait_until("the managed routes at the gateway", |_| {
        mesh.gateway
            .envoy()
            .config_dump("")
            .is_ok_and(|dump| dump.to_string().contains("sticky-canary-shop-v2"))
    });
    // ... the gateway took the module (it runs, it is not a configuration Envoy refused) ...
    let filters = mesh.gateway.http_filters(mesh.port).unwrap();
    assert!(
        filters.iter().any(|f| f.contains(GATEWAY_PLUGIN)),
        "{filters:?}"
    );
    let stats = mesh.gateway.envoy().stats().unwrap();
    let ecds = |what: &str| {
        stats
            .iter()
            .filter(|(k, _)| k.contains(GATEWAY_PLUGIN) && k.ends_with(what))
            .map(|(_, v)| *v)
            .sum::<u64>()
    };
    assert!(
        ecds(".update_success") > 0 && ecds(".update_rejected") == 0,
        "{stats:?}"
    );
    // ... each worker's first request traps the module ...
    mesh.wait_until("the module trapped on every worker", |http| {
        (0..20).all(|_| {
            http.get("/", &[("host", b"shop.example.com")])
                .is_ok_and(|r| r.status == 200)
        })
    });
    // ... and then every request goes to stable, with or without a version of its own.
    for spoof in [None, Some("v2")] {
        let mut visitors = crowd("shop", 100);
        if let Some(version) = spoof {
            visitors.browsers = visitors
                .browsers
                .into_iter()
                .map(|b| b.with_header("x-sticky-version", version))
                .collect();
        }
        let visits = visitors.visit(&mesh.http, "/").unwrap();
        for visit in &visits {
            assert!(visit.responses().all(|r| r.status == 200), "{visit:?}");
            assert_eq!(visit.version(), Some("shop-v1"), "{spoof:?}: {visit:?}");
            assert_eq!(
                visit.page.received_version, None,
                "nothing stamped, and a client's own header removed"
            );
        }
    }
}
