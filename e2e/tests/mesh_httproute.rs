//! The mesh scenarios on the HTTPRoute API, through the Gateway API gateway `public` of
//! `istio-ingress` that istiod configures ([`GatewayApiStack`]), each driven by `stickyctl` as
//! a user runs it (`init --target-ref Gateway/public --gateway-namespace istio-ingress`,
//! `start`, `set-weight`, `override token`, `abort`, `promote`, `delete`): a crowd of returning visitors
//! loading pages and their assets across a live weight change, an abort under load, QA's
//! override token and a spoofed header, several services with the same version names on one
//! gateway beside one without a rollout, two services routed by path by one HTTPRoute with a
//! rollout each, and Istio's analyzers on all of it.
//!
//! One stack per test (a control plane is 10-20 s), one test at a time; the scenarios of a test
//! share its stack, each on its own services and hosts.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sticky_canary_e2e::browser::{Browser, Http, Visit};
use sticky_canary_e2e::crowd::{Crowd, Moves};
use sticky_canary_e2e::load::{browse_while, whole};
use sticky_canary_e2e::mesh::analyze::{self, above_info, errors, show, Finding};
use sticky_canary_e2e::mesh::gateway_api::{
    GatewayApiStack, Options, GATEWAY_API, GATEWAY_NS, SERVICE_PORT,
};
use sticky_canary_e2e::mesh::stack::{
    host, override_token, runs_weights, MeshStack, Service, NS, PROPAGATION,
};
use sticky_canary_e2e::mesh::tools;
use sticky_canary_e2e::operator::Stickyctl;
use sticky_canary_e2e::site::WHOAMI;

/// One control plane at a time (see `mesh.rs`).
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

const ROLLOUT_API: &str = "stickycanary.io/v1alpha1";
const WASM_PLUGIN_API: &str = "extensions.istio.io/v1alpha1";

/// A Gateway API stack for one test and `stickyctl` on it, holding the turn until all of it is
/// gone.
struct Mesh {
    stack: GatewayApiStack,
    stickyctl: Stickyctl,
    http: Http,
    // Last, so the next test starts only once all of this one's processes are gone.
    _turn: MutexGuard<'static, ()>,
}

fn mesh(services: &[Service]) -> Mesh {
    // A test that failed while holding the turn poisons it; the next one may still run.
    let turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let started = Instant::now();
    let upstream = Path::new(env!("CARGO_BIN_EXE_sticky-upstream"));
    let stack = GatewayApiStack::start(upstream, services, Options::default())
        .unwrap_or_else(|e| panic!("cannot start the mesh: {e:?}"));
    eprintln!("the Gateway API stack is up in {:?}", started.elapsed());
    let stickyctl = stack.stickyctl().expect("stickyctl");
    let http = stack.http();
    Mesh {
        stack,
        stickyctl,
        http,
        _turn: turn,
    }
}

impl Mesh {
    /// `stickyctl init` of rollout `rollout` for `service` at stable `v1`, the filter at the
    /// Gateway API gateway, with `extra` flags.
    fn init(&self, rollout: &str, service: &str, extra: &[&str]) {
        let url = MeshStack::plugin_url().expect("the filter is built (make wasm)");
        let service = format!("{service}.{NS}.svc.cluster.local");
        let mut args = vec![
            "--name",
            rollout,
            "init",
            "--service",
            &service,
            "--stable",
            "v1",
            "--plugin-url",
            &url,
            "--target-ref",
            "Gateway/public",
            "--gateway-namespace",
            GATEWAY_NS,
        ];
        args.extend_from_slice(extra);
        self.stickyctl
            .ok(&args)
            .unwrap_or_else(|e| panic!("stickyctl {args:?}: {e:?}"));
    }

    /// `stickyctl --name <rollout> args...`, which must succeed.
    fn sticky(&self, rollout: &str, args: &[&str]) -> String {
        let mut all = vec!["--name", rollout];
        all.extend_from_slice(args);
        self.stickyctl
            .ok(&all)
            .unwrap_or_else(|e| panic!("stickyctl {all:?}: {e:?}"))
    }

    fn get(&self, api_version: &str, kind: &str, namespace: &str, name: &str) -> Option<Value> {
        self.stack
            .plane
            .get(api_version, kind, namespace, name)
            .unwrap_or_else(|e| panic!("reading {kind} {namespace}/{name}: {e:?}"))
    }

    /// The HTTPRoute `name` of [`NS`], which must exist.
    fn route(&self, name: &str) -> Value {
        self.get(GATEWAY_API, "HTTPRoute", NS, name)
            .unwrap_or_else(|| panic!("no HTTPRoute {name}"))
    }

    fn service_exists(&self, name: &str) -> bool {
        self.get("v1", "Service", NS, name).is_some()
    }

    fn wait_until(&self, what: &str, done: impl FnMut(&Http) -> bool) {
        self.stack
            .wait_until(what, done)
            .unwrap_or_else(|e| panic!("{e:?}"));
    }

    /// Whether the gateway runs `weights` for rollout `prod/<rollout>`.
    fn runs_weights(&self, rollout: &str, weights: &[f64]) -> bool {
        runs_weights(&self.stack.gateway, &format!("{NS}/{rollout}"), weights)
    }

    fn wait_for_weights(&self, rollout: &str, weights: &[f64]) {
        self.wait_until(&format!("{rollout} at {weights:?} at the gateway"), |_| {
            self.runs_weights(rollout, weights)
        });
    }
}

/// Sets its flag when dropped (also while a failing test unwinds).
struct SetOnDrop<'a>(&'a AtomicBool);

impl Drop for SetOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// A first-time visitor of `site` (`Host: <site>.example.com`).
fn browser(site: &str) -> Browser {
    Browser::new().with_header("host", &host(site))
}

/// The names of a route's rules, `""` for a rule without one (the user's, here).
fn rule_names(route: &Value) -> Vec<String> {
    route["spec"]["rules"]
        .as_array()
        .expect("rules")
        .iter()
        .map(|r| r["name"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// The rules of `route` without those of rollout `rollout` (`sticky-canary.<rollout>.*`).
fn rules_without(route: &Value, rollout: &str) -> Vec<Value> {
    let prefix = format!("sticky-canary.{rollout}.");
    route["spec"]["rules"]
        .as_array()
        .expect("rules")
        .iter()
        .filter(|r| !r["name"].as_str().unwrap_or_default().starts_with(&prefix))
        .cloned()
        .collect()
}

/// Whether a rule of `route` has a backendRef to Service `service`.
fn sends_to(route: &Value, service: &str) -> bool {
    route["spec"]["rules"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|r| r["backendRefs"].as_array().into_iter().flatten())
        .any(|b| b["name"] == service)
}

/// Every page load of `visits` is whole ([`Visit::whole`]).
fn assert_whole(visits: &[Visit], what: &str) {
    for visit in visits {
        assert!(
            visit.whole(),
            "{what}: a request failed or the page mixed versions: {visit:?}"
        );
    }
}

fn versions(visits: &[Visit]) -> Vec<Option<String>> {
    visits
        .iter()
        .map(|v| v.version().map(str::to_owned))
        .collect()
}

/// One service through the Gateway API gateway on the HTTPRoute API: a crowd of returning
/// visitors loads pages and their assets with no 404 and no page mixing versions, before,
/// across and after a live weight change (nobody on the canary moved back); a spoofed
/// `x-sticky-version` changes nobody's version; QA reaches the canary with the token
/// `stickyctl override token` made (and only with it, the token in clear nowhere stickyctl
/// wrote nor at the gateway); an abort under load brings every client back to stable without
/// a failed request, the route no longer sending to `shop-v2` and that Service then deleted;
/// and `delete` gives the user's HTTPRoute back exactly.
#[test]
fn page_and_assets_override_and_abort_on_the_httproute_api() {
    let mesh = mesh(&[Service::new("shop", &["v1", "v2"])]);
    let original = mesh.route("shop");
    mesh.init("shop", "shop", &[]);
    mesh.sticky("shop", &["start", "--canary", "v2"]);
    mesh.sticky("shop", &["set-weight", "20"]);
    assert_eq!(
        rule_names(&mesh.route("shop")),
        [
            "sticky-canary.shop.v-v1",
            "sticky-canary.shop.v-v2",
            "sticky-canary.shop.default",
            ""
        ]
    );
    mesh.wait_for_weights("shop", &[80.0, 20.0]);
    mesh.wait_until("a first-time visitor stamped", |http| {
        browser("shop")
            .visit(http, "/")
            .is_ok_and(|v| v.page.received_version.is_some())
    });

    // Returning visitors: shares by weight, pins that hold.
    let pin = format!("sticky-version.{NS}.shop");
    let mut visitors = Crowd::returning(&browser("shop"), 300);
    let share = visitors
        .visit_share(&mesh.http, "/", "shop-v2")
        .unwrap_or_else(|e| panic!("{e:?}"));
    assert!((0.12..=0.28).contains(&share), "v2 share {share} at 20");
    let pinned = visitors.pins(&pin);
    assert!(pinned.iter().all(Option::is_some), "every visitor pinned");
    let before = visitors.visit(&mesh.http, "/").unwrap();
    assert_whole(&before, "at 20");
    assert_eq!(visitors.pins(&pin), pinned, "pins hold");

    // A live weight change while the crowd browses page after page.
    let (_, loads) = browse_while(&mesh.http.fresh(), &mut visitors.browsers, |driver| {
        driver.wait_for_round().unwrap();
        driver.change(|| {
            mesh.sticky("shop", &["set-weight", "50"]);
            let start = Instant::now();
            while !mesh.runs_weights("shop", &[50.0, 50.0]) {
                assert!(
                    start.elapsed() < PROPAGATION,
                    "50 never reached the gateway"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        driver.wait_for_round().unwrap();
    });
    let across = whole(&loads, 1).unwrap_or_else(|e| panic!("across 20 -> 50: {e}"));
    eprintln!(
        "{} page loads across the live change ({across} overlapping it): no 404, none mixed",
        loads.len()
    );
    let after = visitors.visit(&mesh.http, "/").unwrap();
    assert_whole(&after, "at 50");
    let moves = Moves::between(&before, &after, "shop-v1");
    assert_eq!(moves.to_stable, 0, "a ramp-up moves nobody back: {moves:?}");
    let share = after
        .iter()
        .filter(|v| v.version() == Some("shop-v2"))
        .count() as f64
        / after.len() as f64;
    assert!((0.4..=0.6).contains(&share), "v2 share {share} at 50");

    // A spoofed version header: every client where it was without it.
    let mut spoofers = Crowd {
        browsers: visitors
            .browsers
            .iter()
            .map(|b| b.clone().with_header("x-sticky-version", "v2"))
            .collect(),
    };
    let spoofed = spoofers.visit(&mesh.http, "/").unwrap();
    assert_whole(&spoofed, "spoofed");
    assert_eq!(
        versions(&spoofed),
        versions(&after),
        "a client's own x-sticky-version changes nothing"
    );
    let mut newcomers = Crowd {
        browsers: (0..100)
            .map(|_| browser("shop").with_header("x-sticky-version", "v2"))
            .collect(),
    };
    let newcomers = newcomers.visit(&mesh.http, "/").unwrap();
    assert_whole(&newcomers, "spoofing newcomers");
    let on_v2 = newcomers
        .iter()
        .filter(|v| v.version() == Some("shop-v2"))
        .count();
    assert!(
        (25..=75).contains(&on_v2),
        "newcomers asking for v2: {on_v2} of 100 on it, the weight decides"
    );

    // QA's override: off by default, then with the token only.
    let on_v1 = versions(&after)
        .iter()
        .position(|v| v.as_deref() == Some("shop-v1"))
        .expect("a visitor on v1");
    let qa = |http: &Http, value: Option<&str>| -> Option<String> {
        let mut b = visitors.browsers[on_v1].clone();
        if let Some(value) = value {
            b = b.with_header("x-sticky-override", value);
        }
        let visit = b.visit(http, "/").ok()?;
        (visit.not_found() == 0 && !visit.mixed())
            .then(|| visit.version().map(str::to_owned))
            .flatten()
    };
    for _ in 0..10 {
        assert_eq!(
            qa(&mesh.http, Some("v2")).as_deref(),
            Some("shop-v1"),
            "no override by default"
        );
    }
    let said = mesh.sticky("shop", &["override", "token"]);
    assert!(
        said.contains("kubectl get secret sticky-canary-override-tokens"),
        "{said}"
    );
    let token = override_token(&mesh.stack.plane, "shop")
        .unwrap()
        .expect("a token for shop");
    let with_token = format!("v2:{token}");
    mesh.wait_until("the override token at the gateway", |http| {
        qa(http, Some(&with_token)).as_deref() == Some("shop-v2")
    });
    for _ in 0..10 {
        assert_eq!(
            qa(&mesh.http, Some(&with_token)).as_deref(),
            Some("shop-v2")
        );
        assert_eq!(qa(&mesh.http, Some("v2")).as_deref(), Some("shop-v1"));
        assert_eq!(qa(&mesh.http, Some("v2:wrong")).as_deref(), Some("shop-v1"));
        assert_eq!(qa(&mesh.http, None).as_deref(), Some("shop-v1"));
    }
    let plugins = mesh
        .stack
        .plane
        .list(WASM_PLUGIN_API, "WasmPlugin", GATEWAY_NS, "")
        .unwrap();
    assert_eq!(plugins.len(), 1, "one plugin at the gateway: {plugins:?}");
    let written = [
        ("WasmPlugin", plugins[0].to_string()),
        ("HTTPRoute", mesh.route("shop").to_string()),
        (
            "rollout",
            mesh.get(ROLLOUT_API, "StickyCanary", NS, "shop")
                .unwrap()
                .to_string(),
        ),
        (
            "gateway's config dump",
            mesh.stack.gateway.config_dump().unwrap().to_string(),
        ),
    ];
    for (what, text) in written {
        assert!(!text.contains(&token), "the token in clear in the {what}");
    }

    // Abort while the crowd browses: every client back on stable, no request failing on the
    // way (a route sending to a Service already gone would answer 500 or 503).
    assert!(mesh.service_exists("shop-v2"));
    let on_v2 = versions(&after)
        .iter()
        .position(|v| v.as_deref() == Some("shop-v2"))
        .expect("a visitor on v2");
    let probe = visitors.browsers[on_v2].clone();
    // Meanwhile a watcher reads the Service, then the route, over and over: the Service gone
    // while the route still sends to it would be a break before the make.
    let stop = AtomicBool::new(false);
    let plane = &mesh.stack.plane;
    let read_route = || {
        plane
            .get(GATEWAY_API, "HTTPRoute", NS, "shop")
            .ok()
            .flatten()
    };
    let (loads, reads) = std::thread::scope(|scope| {
        let watcher = scope.spawn(|| {
            let mut reads = 0;
            while !stop.load(Ordering::SeqCst) {
                let gone = plane
                    .get("v1", "Service", NS, "shop-v2")
                    .ok()
                    .flatten()
                    .is_none();
                if let Some(route) = read_route() {
                    assert!(
                        !(gone && sends_to(&route, "shop-v2")),
                        "shop-v2 deleted while the route still sends to it: {route}"
                    );
                    reads += 1;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            reads
        });
        // Stops the watcher however this ends, so a failure here cannot leave it running.
        let _stop = SetOnDrop(&stop);
        let (_, loads) = browse_while(&mesh.http.fresh(), &mut visitors.browsers, |driver| {
            driver.wait_for_round().unwrap();
            driver.change(|| {
                mesh.sticky("shop", &["abort"]);
                mesh.wait_until("every client back on stable", |http| {
                    let mut returning = probe.clone();
                    returning
                        .visit(http, "/")
                        .is_ok_and(|v| v.version() == Some("shop-v1"))
                });
            });
            driver.wait_for_round().unwrap();
        });
        let wait_gone = Instant::now();
        while mesh.service_exists("shop-v2") {
            assert!(
                wait_gone.elapsed() < PROPAGATION,
                "shop-v2 not deleted after the abort"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        stop.store(true, Ordering::SeqCst);
        (loads, watcher.join().unwrap())
    });
    assert!(reads > 10, "the watcher read the route {reads} times");
    let broken = loads
        .iter()
        .filter_map(|l| l.outcome.as_ref().ok())
        .filter(|v| v.not_found() > 0)
        .count();
    eprintln!(
        "{} page loads across the abort, none failed ({broken} with a 404: a canary's page \
         whose assets came after the switch); route and Service read {reads} times",
        loads.len()
    );
    for load in &loads {
        let visit = load
            .outcome
            .as_ref()
            .unwrap_or_else(|err| panic!("a page load failed across the abort: {err}"));
        assert!(
            visit
                .responses()
                .all(|r| r.status == 200 || r.status == 404),
            "a request failed across the abort: {visit:?}"
        );
        if load.started_after(1) {
            assert_eq!(
                visit.version(),
                Some("shop-v1"),
                "after the abort: {visit:?}"
            );
            assert_whole(std::slice::from_ref(visit), "after the abort");
        }
    }
    let route = mesh.route("shop");
    assert!(
        !sends_to(&route, "shop-v2"),
        "the route still sends to shop-v2: {route}"
    );
    assert!(mesh.service_exists("shop-v1"), "stable's Service stays");
    let share = visitors
        .visit_share(&mesh.http, "/", "shop-v1")
        .unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(share, 1.0, "after abort everyone is on stable");

    mesh.sticky("shop", &["delete"]);
    assert_eq!(
        mesh.route("shop")["spec"],
        original["spec"],
        "the user's HTTPRoute exactly as it was"
    );
    assert!(!mesh.service_exists("shop-v1") && mesh.service_exists("shop"));
}

/// The user's HTTPRoute of `site.example.com`, routing by path: `/api` to Service `api`,
/// everything else to Service `web` (one rule each, unnamed).
fn site_route() -> Value {
    json!({
        "apiVersion": GATEWAY_API, "kind": "HTTPRoute",
        "metadata": {"name": "site", "namespace": NS},
        "spec": {
            "parentRefs": [{"group": "gateway.networking.k8s.io", "kind": "Gateway",
                            "name": "public", "namespace": GATEWAY_NS}],
            "hostnames": [host("site")],
            "rules": [
                {"matches": [{"path": {"type": "PathPrefix", "value": "/api"}}],
                 "backendRefs": [{"name": "api", "port": SERVICE_PORT}]},
                {"backendRefs": [{"name": "web", "port": SERVICE_PORT}]},
            ],
        },
    })
}

/// What a visitor of `site.example.com` got on a visit of `/`: the version of `web` that
/// served the page and its assets (a page whose assets came from another version of `web`, or
/// any 404 or failure, is a panic), and the version of `api` that served the page's call to
/// `/api/whoami`.
fn site_versions(visit: &Visit) -> (String, String) {
    assert!(
        visit.responses().all(|r| r.status == 200),
        "a request failed on site: {visit:?}"
    );
    let page = visit.version().expect("the page's version").to_owned();
    assert!(page.starts_with("web-"), "/ served by {page}");
    let api: Vec<&str> = visit
        .resources
        .iter()
        .filter_map(|r| r.served_by.as_deref())
        .filter(|s| s.starts_with("api-"))
        .collect();
    let web = visit
        .resources
        .iter()
        .filter(|r| {
            r.served_by
                .as_deref()
                .is_some_and(|s| s.starts_with("web-"))
        })
        .count();
    assert!(
        api.len() == 1 && web + 1 == visit.resources.len(),
        "the page's assets from web, its {WHOAMI} from api: {visit:?}"
    );
    assert!(
        visit.resources.iter().all(|r| !r
            .served_by
            .as_deref()
            .unwrap_or_default()
            .starts_with("web-")
            || r.served_by.as_deref() == Some(&page)),
        "a page of web mixed versions: {visit:?}"
    );
    (page, api[0].to_owned())
}

/// The share of `of` equal to `what`.
fn share_of(of: &[String], what: &str) -> f64 {
    of.iter().filter(|v| *v == what).count() as f64 / of.len() as f64
}

/// Several services on one Gateway API gateway, all with versions `v1` and `v2`: `cart` on its
/// own HTTPRoute, `web` and `api` routed by path by ONE HTTPRoute of `site.example.com` with a
/// rollout each (`init --http-route site`), and `static` without a rollout. Each rollout's
/// managed rules sit in front of its own user rule; the canaries run at their own weights and
/// a change of one moves nobody of the others; `static` gets no header and no cookie; `cart`,
/// promoted and finished, serves everyone v2 whole and loses `cart-v1`. Istio's
/// analyzers (`istioctl analyze`) find nothing in what stickyctl wrote on this API during the
/// rollouts: not one message more than before them (HTTPRoute's validation is empty), while a
/// control route to a missing Service is flagged (IST0171, from istiod's status). Deleting
/// `api`'s rollout leaves `web`'s rules and the user's rules exactly, `web`'s canary running;
/// deleting the others gives every user route back exactly, and the analysis of before.
#[test]
fn many_services_and_path_routes_on_one_gateway() {
    // The tool first: with CI=true a missing or unbuildable istioctl fails the test here.
    let istioctl = tools::istioctl().unwrap_or_else(|e| panic!("istioctl: {e:?}"));
    let mesh = mesh(&[
        Service::new("cart", &["v1", "v2"]),
        Service::new("web", &["v1", "v2"]),
        Service::new("api", &["v1", "v2"]),
        Service::new("static", &["v1"]),
    ]);
    let plane = &mesh.stack.plane;
    // web and api by path on one host: the harness's own routes of them go, one route takes
    // both.
    for service in ["web", "api"] {
        plane.delete(GATEWAY_API, "HTTPRoute", NS, service).unwrap();
    }
    plane.apply(&site_route()).unwrap();
    let users: BTreeMap<&str, Value> = ["site", "cart", "static"]
        .into_iter()
        .map(|name| (name, mesh.route(name)))
        .collect();
    mesh.wait_until("site routed by path", |http| {
        browser("site")
            .visit(http, "/")
            .is_ok_and(|v| v.version().is_some_and(|s| s.starts_with("web-")))
    });
    let kubeconfig = plane.admin_kubeconfig(NS).unwrap();
    let analysis = |round: &str| -> BTreeSet<Finding> {
        analyze::analyze(&istioctl, &kubeconfig, round, &[]).unwrap_or_else(|e| panic!("{e:?}"))
    };
    let before = analysis("before");
    // Before any rollout, the harness's own objects: infos only, the namespaces not labelled
    // for injection (IST0102), so every message below would be the rollouts'.
    let codes = |findings: &BTreeSet<Finding>| -> Vec<(String, String, String)> {
        findings
            .iter()
            .map(|f| (f.level.clone(), f.code.clone(), f.origin.clone()))
            .collect()
    };
    let injection = |namespace: &str| {
        (
            "Info".to_owned(),
            "IST0102".to_owned(),
            format!("Namespace {namespace}"),
        )
    };
    assert_eq!(
        codes(&before),
        [injection("default"), injection(GATEWAY_NS), injection(NS)],
        "before any rollout:{}",
        show(&before)
    );

    mesh.init("cart", "cart", &[]);
    mesh.init("web", "web", &["--http-route", "site"]);
    mesh.init("api", "api", &["--http-route", "site"]);
    for (rollout, weight) in [("cart", "80"), ("web", "20"), ("api", "50")] {
        mesh.sticky(rollout, &["start", "--canary", "v2"]);
        mesh.sticky(rollout, &["set-weight", weight]);
    }
    for rollout in ["web", "api"] {
        let canary = mesh.get(ROLLOUT_API, "StickyCanary", NS, rollout).unwrap();
        assert_eq!(canary["spec"]["routing"]["httpRoute"], "site");
        assert_eq!(canary["spec"]["routing"]["api"], "HTTPRoute");
    }
    // Each rollout's rules in front of its own rule, with that rule's path; the user's rules
    // as they were, in their order.
    let site = mesh.route("site");
    assert_eq!(
        rule_names(&site),
        [
            "sticky-canary.api.v-v1",
            "sticky-canary.api.v-v2",
            "sticky-canary.api.default",
            "",
            "sticky-canary.web.v-v1",
            "sticky-canary.web.v-v2",
            "sticky-canary.web.default",
            ""
        ]
    );
    let rules = site["spec"]["rules"].as_array().unwrap();
    for (at, service, path) in [(0, "api", "/api"), (4, "web", "/")] {
        for (i, version) in ["v1", "v2", ""].into_iter().enumerate() {
            let rule = &rules[at + i];
            let backend = if version.is_empty() {
                format!("{service}-v1")
            } else {
                format!("{service}-{version}")
            };
            assert_eq!(
                rule["backendRefs"][0]["name"], backend,
                "{service}'s rule {i}: {rule}"
            );
            for m in rule["matches"].as_array().expect("matches") {
                assert_eq!(
                    m["path"],
                    json!({"type": "PathPrefix", "value": path}),
                    "{service}'s rule {i} has its user rule's path: {rule}"
                );
            }
        }
    }
    assert_eq!(
        rules_without(&rules_as_route(&rules_without(&site, "api")), "web"),
        users["site"]["spec"]["rules"].as_array().unwrap().clone(),
        "the user's rules exactly, in their order"
    );
    for service in ["cart", "web", "api"] {
        for version in ["v1", "v2"] {
            assert!(mesh.service_exists(&format!("{service}-{version}")));
        }
    }
    assert!(!mesh.service_exists("static-v1"), "no Service for static");
    let plugins = plane
        .list(WASM_PLUGIN_API, "WasmPlugin", GATEWAY_NS, "")
        .unwrap();
    assert_eq!(plugins.len(), 1, "one plugin at the gateway: {plugins:?}");
    let mut entries: Vec<&str> = plugins[0]["spec"]["pluginConfig"]["rollouts"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["name"].as_str())
        .collect();
    entries.sort_unstable();
    assert_eq!(entries, ["prod/api", "prod/cart", "prod/web"]);

    for (rollout, weights) in [
        ("cart", [20.0, 80.0]),
        ("web", [80.0, 20.0]),
        ("api", [50.0, 50.0]),
    ] {
        mesh.wait_for_weights(rollout, &weights);
    }
    mesh.wait_until("every rollout stamping", |http| {
        browser("cart")
            .visit(http, "/")
            .is_ok_and(|v| v.page.received_version.is_some())
            && browser("site").visit(http, "/").is_ok_and(|v| {
                v.page.received_version.is_some()
                    && v.resources.iter().all(|r| r.received_version.is_some())
            })
    });

    // Istio's analyzers on everything stickyctl wrote: the managed rules, the version
    // Services, the plugin attached to the Gateway.
    // istiod's verdict on the routes stickyctl edited, first: accepted, every backendRef
    // resolved (the version Services were there before the rules), at their generation.
    for name in ["site", "cart"] {
        mesh.wait_until(&format!("istiod's status of HTTPRoute {name}"), |_| {
            resolved(&mesh.route(name))
        });
    }
    let during = analysis("during the rollouts");
    assert_eq!(errors(&during), BTreeSet::new(), "{}", show(&during));
    let new: BTreeSet<Finding> = during.difference(&before).cloned().collect();
    assert_eq!(
        new,
        BTreeSet::new(),
        "what the rollouts added to the analysis:{}",
        show(&new)
    );
    assert_eq!(
        above_info(&during),
        BTreeSet::new(),
        "warnings during the rollouts:{}",
        show(&during)
    );
    assert_eq!(during, before, "{}", show(&during));

    // Returning visitors of each: shares by weight, versions whole.
    let mut carts = Crowd::returning(&browser("cart"), 300);
    let cart_share = carts
        .visit_share(&mesh.http, "/", "cart-v2")
        .unwrap_or_else(|e| panic!("{e:?}"));
    assert!(
        (0.72..=0.88).contains(&cart_share),
        "cart v2 {cart_share} at 80"
    );
    let mut sites = Crowd::returning(&browser("site"), 300);
    let visit_site = |sites: &mut Crowd| -> (Vec<String>, Vec<String>) {
        sites
            .visit(&mesh.http, "/")
            .unwrap()
            .iter()
            .map(site_versions)
            .unzip()
    };
    let (web, api) = visit_site(&mut sites);
    let web_share = share_of(&web, "web-v2");
    let api_share = share_of(&api, "api-v2");
    assert!(
        (0.12..=0.28).contains(&web_share),
        "web v2 {web_share} at 20"
    );
    assert!((0.4..=0.6).contains(&api_share), "api v2 {api_share} at 50");
    // The api's own callers, navigating to it: the same clients on the same versions.
    let mut api_callers = Crowd::returning(&browser("site"), 300);
    let direct: Vec<String> = api_callers
        .visit(&mesh.http, WHOAMI)
        .unwrap()
        .iter()
        .map(|v| v.version().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(
        direct, api,
        "a client's api version, from a page or directly"
    );

    // The service without a rollout: nothing stamped, no cookie.
    for _ in 0..10 {
        let plain = mesh
            .http
            .get("/", &[("host", host("static").as_bytes())])
            .unwrap();
        assert_eq!(plain.served_by.as_deref(), Some("static-v1"));
        assert_eq!(plain.received_version, None, "no header stamped for static");
        assert!(
            plain.set_cookies.is_empty(),
            "no cookie: {:?}",
            plain.set_cookies
        );
    }

    // web's canary up to 60: api's and cart's clients stay where they were.
    let cart_pins = carts.pins(&format!("sticky-version.{NS}.cart"));
    mesh.sticky("web", &["set-weight", "60"]);
    mesh.wait_for_weights("web", &[40.0, 60.0]);
    let (web_after, api_after) = visit_site(&mut sites);
    assert_eq!(api_after, api, "api's clients unchanged by web's change");
    assert!(
        web.iter()
            .zip(&web_after)
            .all(|(b, a)| b != "web-v2" || a == "web-v2"),
        "web's canary clients stay on it"
    );
    let web_share = share_of(&web_after, "web-v2");
    assert!((0.5..=0.7).contains(&web_share), "web v2 {web_share} at 60");
    assert_eq!(
        carts
            .visit_share(&mesh.http, "/", "cart-v2")
            .unwrap_or_else(|e| panic!("{e:?}")),
        cart_share
    );
    assert_eq!(carts.pins(&format!("sticky-version.{NS}.cart")), cart_pins);

    // cart promoted: every returning visitor on v2 from their next page, whole; finished:
    // the route no longer sends to cart-v1, whose Service goes.
    mesh.sticky("cart", &["promote"]);
    // Every worker of the gateway runs it once forty returning visitors in a row, those of
    // stable among them, get v2 on fresh connections.
    mesh.wait_until("cart's stable is v2", |http| {
        Crowd::returning(&browser("cart"), 40)
            .visit(http, "/")
            .is_ok_and(|visits| visits.iter().all(|v| v.version() == Some("cart-v2")))
    });
    let promoted = carts.visit(&mesh.http, "/").unwrap();
    assert_whole(&promoted, "cart promoted");
    let left: Vec<&Visit> = promoted
        .iter()
        .filter(|v| v.version() != Some("cart-v2"))
        .collect();
    assert!(
        left.is_empty(),
        "every cart visitor on v2 after the promotion: {left:?}"
    );
    mesh.sticky("cart", &["promote", "--finish"]);
    let cart = mesh.route("cart");
    assert!(!sends_to(&cart, "cart-v1"), "{cart}");
    assert_eq!(
        rule_names(&cart),
        ["sticky-canary.cart.v-v2", "sticky-canary.cart.default", ""]
    );
    assert_eq!(
        cart["spec"]["rules"][1]["backendRefs"][0]["name"],
        "cart-v2"
    );
    let wait_gone = Instant::now();
    while mesh.service_exists("cart-v1") {
        assert!(wait_gone.elapsed() < PROPAGATION, "cart-v1 not deleted");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(mesh.service_exists("cart-v2"));
    mesh.wait_until("the gateway without cart-v1", |_| {
        !sticky_canary_e2e::mesh::gateway_api::cluster_names(
            &mesh.stack.gateway.config_dump().unwrap_or_default(),
        )
        .iter()
        .any(|c| c.contains("cart-v1."))
    });
    assert_eq!(
        carts
            .visit_share(&mesh.http, "/", "cart-v2")
            .unwrap_or_else(|e| panic!("{e:?}")),
        1.0
    );

    // api's rollout deleted: web's rules and the user's exactly, web's canary running.
    let site_before = mesh.route("site");
    mesh.sticky("api", &["delete"]);
    let site_after = mesh.route("site");
    assert_eq!(
        site_after["spec"]["rules"].as_array().unwrap().clone(),
        rules_without(&site_before, "api"),
        "deleting api's rollout removes its rules and nothing else"
    );
    for version in ["v1", "v2"] {
        assert!(!mesh.service_exists(&format!("api-{version}")));
        assert!(mesh.service_exists(&format!("web-{version}")));
    }
    mesh.wait_until("api without the filter", |http| {
        http.get(WHOAMI, &[("host", host("site").as_bytes())])
            .is_ok_and(|r| {
                r.served_by
                    .as_deref()
                    .is_some_and(|s| s.starts_with("api-"))
                    && r.received_version.is_none()
            })
    });
    let visits = sites.visit(&mesh.http, "/").unwrap();
    let web_now: Vec<String> = visits.iter().map(|v| site_versions(v).0).collect();
    assert_eq!(web_now, web_after, "web's clients where they were");

    for rollout in ["web", "cart"] {
        mesh.sticky(rollout, &["delete"]);
    }
    for (name, route) in &users {
        assert_eq!(
            mesh.route(name)["spec"],
            route["spec"],
            "HTTPRoute {name} exactly as the user wrote it"
        );
    }
    assert!(
        plane
            .list(WASM_PLUGIN_API, "WasmPlugin", GATEWAY_NS, "")
            .unwrap()
            .is_empty(),
        "the last rollout to leave deletes the plugin"
    );
    let after = analysis("after the rollouts");
    assert_eq!(
        after,
        before,
        "after:{}\nbefore:{}",
        show(&after),
        show(&before)
    );

    // The control: the analysis does read HTTPRoutes and istiod's status of them. A route to a
    // Service that does not exist (what a version rule written before its Service would be)
    // is flagged.
    let mut broken = site_route();
    broken["metadata"]["name"] = json!("broken");
    broken["spec"]["hostnames"] = json!([host("broken")]);
    broken["spec"]["rules"] = json!([{"backendRefs": [{"name": "nowhere", "port": SERVICE_PORT}]}]);
    plane.apply(&broken).unwrap();
    mesh.wait_until("istiod's status of HTTPRoute broken", |_| {
        mesh.route("broken")["status"]["parents"]
            .as_array()
            .is_some_and(|p| !p.is_empty())
    });
    assert!(!resolved(&mesh.route("broken")), "{}", mesh.route("broken"));
    let control = analysis("a route to a missing Service");
    let flagged: BTreeSet<Finding> = control.difference(&before).cloned().collect();
    let expected = BTreeSet::from([Finding {
        level: "Warning".to_owned(),
        code: "IST0171".to_owned(),
        origin: format!("HTTPRoute {NS}/broken"),
        message: format!(
            "A condition with a negative status is present: type=ResolvedRefs, \
             reason=BackendNotFound, message=backend(nowhere.{NS}.svc.cluster.local) not found."
        ),
    }]);
    assert_eq!(flagged, expected, "{}", show(&flagged));
}

/// Whether istiod's status of `route` says, for its current generation, Accepted and
/// ResolvedRefs (every backendRef a Service that exists).
fn resolved(route: &Value) -> bool {
    let generation = &route["metadata"]["generation"];
    let parents = route["status"]["parents"].as_array();
    parents.is_some_and(|parents| {
        !parents.is_empty()
            && parents.iter().all(|p| {
                ["Accepted", "ResolvedRefs"].iter().all(|kind| {
                    p["conditions"].as_array().into_iter().flatten().any(|c| {
                        c["type"] == *kind
                            && c["status"] == "True"
                            && &c["observedGeneration"] == generation
                    })
                })
            })
    })
}

/// `rules` as the `spec.rules` of a route, for [`rules_without`].
fn rules_as_route(rules: &[Value]) -> Value {
    json!({"spec": {"rules": rules}})
}
