//! The HTTPRoute API from the outside, through `stickyctl` against the fake API server (which
//! serves Gateway API's HTTPRoute from its CRD and core Services): what `init` records, the
//! order of the writes (a version's Service exists before a rule sends to it, and is deleted
//! only after none does), `delete` giving the user back their route byte for byte and
//! removing only stickyctl's Services, a VirtualService next to an HTTPRoute refused with
//! nothing written, a 409 storm on the route ending as if there had been none, and the
//! dashboard working unchanged.
//!
//! Fake-only: it reads the fake's change history and request log and injects conflicts on
//! one object, which a real server does not offer.

mod support;

use serde_json::{json, Value};
use sticky_canary_tests::FakeApiServer;
use support::{
    names, Backend, Cluster, GATEWAY_API_NS, HTTPROUTE, MANAGED_BY, NS, ROUTE, SC, SHOP_HOST, SVC,
};

/// A fake cluster with the user's Service `shop` and HTTPRoute `storefront`, and the route as
/// seeded.
fn cluster() -> Option<(Cluster, Value)> {
    let c = Backend::Fake.empty_cluster()?;
    let route = c.seed_http_route();
    Some((c, route))
}

fn fake(c: &Cluster) -> &FakeApiServer {
    c.fake().expect("the fake API server")
}

/// Whether a rule of `route` (a whole HTTPRoute) sends to Service `service`.
fn sends_to(route: &Value, service: &str) -> bool {
    route["spec"]["rules"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|rule| rule["backendRefs"].as_array().into_iter().flatten())
        .any(|backend| backend["name"] == service)
}

/// The resourceVersion of a history entry (`(type, object)`).
fn version_of(entry: &(String, Value)) -> u64 {
    entry.1["metadata"]["resourceVersion"]
        .as_str()
        .and_then(|v| v.parse().ok())
        .expect("a stored object has a numeric resourceVersion")
}

/// When Service `service` was created and deleted (resourceVersions; `None`: not yet), and
/// when the route first and last sent to it.
struct Timeline {
    created: Option<u64>,
    deleted: Option<u64>,
    first_routed: Option<u64>,
    last_routed: Option<u64>,
    /// The first route state after the last one that sent to it.
    left: Option<u64>,
}

fn timeline(c: &Cluster, service: &str) -> Timeline {
    let fake = fake(c);
    let of_service = fake.history_of("services", NS, service);
    let event = |kind: &str| of_service.iter().find(|(t, _)| t == kind).map(version_of);
    let route = fake.history_of("httproutes", NS, ROUTE);
    let routed: Vec<u64> = route
        .iter()
        .filter(|(_, r)| sends_to(r, service))
        .map(version_of)
        .collect();
    let last_routed = routed.last().copied();
    Timeline {
        created: event("ADDED"),
        deleted: event("DELETED"),
        first_routed: routed.first().copied(),
        last_routed,
        left: last_routed.and_then(|last| route.iter().map(version_of).find(|&v| v > last)),
    }
}

/// The index in the write log (dry runs left out) of the first successful write `method` to
/// a path ending in `path_end`.
fn first_write(c: &Cluster, method: &str, path_end: &str) -> Option<usize> {
    fake(c)
        .write_requests()
        .iter()
        .position(|r| r.method == method && r.path.ends_with(path_end) && r.status < 300)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_detects_the_api_and_a_version_service_is_made_before_and_deleted_after_its_rules() {
    let Some((c, route)) = cluster() else { return };
    // Stored with the defaults of Gateway API's schema, as a real server stores it.
    assert_eq!(
        route["spec"]["rules"][0]["backendRefs"][0],
        json!({"group": "", "kind": "Service", "name": "shop", "port": 80, "weight": 1})
    );
    assert_eq!(
        route["spec"]["rules"][0]["matches"][0]["path"]["type"],
        "PathPrefix"
    );
    c.clear_writes();
    c.init_http_route(&[]).await;
    // Detected and recorded: the rollout says which API and which route from now on.
    let rollout = c.rollout();
    assert_eq!(
        rollout["spec"]["routing"]["api"], "HTTPRoute",
        "{rollout:#}"
    );
    assert_eq!(
        rollout["spec"]["routing"]["httpRoute"], ROUTE,
        "{rollout:#}"
    );
    assert_eq!(c.services(), ["shop", "shop-v1"]);
    // The Service, then the route (its rule in before any request is stamped with the
    // version), then the plugin (the write log).
    let service =
        first_write(&c, "POST", "/api/v1/namespaces/prod/services").expect("a Service created");
    let plugin = first_write(
        &c,
        "POST",
        &format!("/namespaces/{GATEWAY_API_NS}/wasmplugins"),
    )
    .expect("the Gateway's plugin created");
    let put_route =
        first_write(&c, "PUT", &format!("/httproutes/{ROUTE}")).expect("the route updated");
    assert!(
        service < put_route && put_route < plugin,
        "{:#?}",
        c.writes()
    );

    c.ok(&["start", "--canary", "v2"]).await;
    c.ok(&["set-weight", "10"]).await;
    assert_eq!(c.services(), ["shop", "shop-v1", "shop-v2"]);
    assert_eq!(
        c.http_route_rules(),
        [
            "sticky-canary.shop.v-v1",
            "sticky-canary.shop.v-v2",
            "sticky-canary.shop.default",
            "(user's)"
        ]
    );
    // The v2 rule: the user's matches plus the version header, to v2's Service.
    let rules = c.http_route()["spec"]["rules"].clone();
    assert_eq!(rules[1]["backendRefs"][0]["name"], "shop-v2");
    assert_eq!(
        rules[1]["matches"][0]["path"],
        route["spec"]["rules"][0]["matches"][0]["path"]
    );
    assert_eq!(
        rules[1]["matches"][0]["headers"][0]["name"],
        "x-sticky-version"
    );
    // v2's Service: the parent's selector plus the version, its ports, labelled and
    // annotated as stickyctl's, with the cluster IP the server gave it.
    let v2 = c.get(SVC.0, SVC.1, "shop-v2");
    assert_eq!(
        v2["spec"]["selector"],
        json!({"app": "shop", "version": "v2"})
    );
    assert_eq!(
        v2["spec"]["ports"],
        c.get(SVC.0, SVC.1, "shop")["spec"]["ports"]
    );
    assert_eq!(v2["metadata"]["labels"][MANAGED_BY.0], MANAGED_BY.1);
    assert_eq!(
        v2["metadata"]["annotations"]["stickycanary.io/rollout"],
        "prod/shop"
    );
    assert!(v2["spec"]["clusterIP"]
        .as_str()
        .is_some_and(|ip| !ip.is_empty()));
    let made = timeline(&c, "shop-v2");
    let (created, first_routed) = (made.created.unwrap(), made.first_routed.unwrap());
    assert!(
        created < first_routed,
        "shop-v2 made at {created}, routed at {first_routed}"
    );
    // Nothing left to do: what the server stored (its defaults filled in) is what stickyctl
    // wants, so a command that changes nothing writes nothing.
    assert_eq!(c.status().await["inSync"], true);
    c.clear_writes();
    c.ok(&["set-weight", "10"]).await;
    assert_eq!(c.writes(), Vec::<String>::new());

    // Aborted: the route leaves v2's Service, which is deleted after.
    c.ok(&["abort"]).await;
    assert_eq!(c.services(), ["shop", "shop-v1"]);
    let gone = timeline(&c, "shop-v2");
    let (left, deleted) = (gone.left.unwrap(), gone.deleted.unwrap());
    assert!(
        gone.last_routed.unwrap() < left && left < deleted,
        "the route left shop-v2 at {left}, deleted at {deleted}"
    );
    // And so for v1 at the end.
    c.ok(&["delete"]).await;
    let v1 = timeline(&c, "shop-v1");
    assert!(v1.created.unwrap() < v1.first_routed.unwrap());
    assert!(v1.left.unwrap() < v1.deleted.unwrap());
    assert_eq!(c.http_route()["spec"], route["spec"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_gives_the_route_back_byte_for_byte_and_removes_only_stickyctls_services() {
    let Some((c, route)) = cluster() else { return };
    // The user's own Service for v2, and another rollout's version Service.
    let mut canary = support::shop_service();
    canary["metadata"]["name"] = json!("shop-canary");
    canary["spec"]["selector"] = json!({"app": "shop", "track": "canary"});
    let canary = c.create(canary).unwrap();
    let mut other = support::shop_service();
    other["metadata"] = json!({"name": "cart-v2", "namespace": NS,
        "labels": {(MANAGED_BY.0): MANAGED_BY.1, "stickycanary.io/version": "v2"},
        "annotations": {"stickycanary.io/rollout": "prod/cart"}});
    other["spec"]["selector"] = json!({"app": "cart", "version": "v2"});
    let other = c.create(other).unwrap();

    c.init_http_route(&["--version-service", "v2=shop-canary"])
        .await;
    assert_eq!(
        c.rollout()["spec"]["routing"]["versionServices"],
        json!({"v2": "shop-canary"})
    );
    c.ok(&["start", "--canary", "v2"]).await;
    c.ok(&["set-weight", "50"]).await;
    let rules = c.http_route()["spec"]["rules"].clone();
    assert_eq!(
        names(&rules),
        [
            "sticky-canary.shop.v-v1",
            "sticky-canary.shop.v-v2",
            "sticky-canary.shop.default"
        ]
    );
    assert_eq!(rules[1]["backendRefs"][0]["name"], "shop-canary");
    assert_eq!(c.services(), ["cart-v2", "shop", "shop-canary", "shop-v1"]);

    c.ok(&["delete"]).await;
    assert!(c.get_in(SC.0, SC.1, NS, "shop").is_none());
    let after = c.http_route();
    assert_eq!(
        serde_json::to_string(&after["spec"]).unwrap(),
        serde_json::to_string(&route["spec"]).unwrap(),
        "the user's HTTPRoute, byte for byte"
    );
    assert_eq!(after["metadata"]["labels"], route["metadata"]["labels"]);
    assert_eq!(
        after["metadata"]["annotations"],
        route["metadata"]["annotations"]
    );
    assert_eq!(c.services(), ["cart-v2", "shop", "shop-canary"]);
    // Neither was ever written.
    assert_eq!(c.get(SVC.0, SVC.1, "shop-canary"), canary);
    assert_eq!(c.get(SVC.0, SVC.1, "cart-v2"), other);
    assert!(c.managed_plugins_in(GATEWAY_API_NS).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_virtualservice_and_an_httproute_for_one_service_are_refused_with_nothing_written() {
    // The user's VirtualService `shop` routes the service, and so does their HTTPRoute.
    let Some(c) = Backend::Fake.cluster() else {
        return;
    };
    let route = c.seed_http_route();
    let virtual_service = c.get("networking.istio.io/v1", "VirtualService", "shop");
    c.clear_writes();
    for service in [SHOP_HOST, "shop"] {
        let out = c
            .sticky(&[
                "init",
                "--service",
                service,
                "--stable",
                "v1",
                "--target-ref",
                "Gateway/public",
                "--gateway-namespace",
                GATEWAY_API_NS,
            ])
            .await;
        assert_eq!(out.code, 2, "{}{}", out.stdout, out.stderr);
        assert!(
            out.stderr.contains(&format!(
                "VirtualService {NS}/shop: and HTTPRoute {NS}/{ROUTE} both route {service}"
            )),
            "{}",
            out.stderr
        );
    }
    // Not even a dry run: refused before anything was sent but reads.
    let requests = fake(&c).requests();
    assert!(
        requests.iter().all(|r| r.method == "GET" || r.is_review()),
        "{requests:#?}"
    );
    assert!(c.get_in(SC.0, SC.1, NS, "shop").is_none());
    assert_eq!(c.http_route(), route);
    assert_eq!(
        c.get("networking.istio.io/v1", "VirtualService", "shop"),
        virtual_service
    );
    assert_eq!(c.services(), ["shop"]);
}

/// The objects a rollout of `shop` on the HTTPRoute API left: the route's spec, and each
/// Service of [`NS`] by name with its spec, less the cluster IPs the server chose.
fn end_state(c: &Cluster) -> (Value, Vec<(String, Value)>) {
    let services = c
        .list(SVC.0, SVC.1)
        .into_iter()
        .filter(|s| s["metadata"]["namespace"] == NS)
        .map(|mut s| {
            let spec = s["spec"].as_object_mut().unwrap();
            spec.remove("clusterIP");
            spec.remove("clusterIPs");
            (
                s["metadata"]["name"].as_str().unwrap().to_owned(),
                s["spec"].clone(),
            )
        })
        .collect();
    (c.http_route()["spec"].clone(), services)
}

/// `init`, then a canary `v2` at 10%.
async fn to_canary(c: &Cluster) {
    c.init_http_route(&[]).await;
    c.ok(&["start", "--canary", "v2"]).await;
    c.ok(&["set-weight", "10"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conflict_storm_on_the_route_ends_as_if_there_had_been_none() {
    // Without a storm, for comparison.
    let Some((calm, _)) = cluster() else { return };
    to_canary(&calm).await;
    let expected = end_state(&calm);
    assert_eq!(
        expected.0["rules"].as_array().map(Vec::len),
        Some(4),
        "{:#}",
        expected.0
    );

    // Every write of the route fails with a 409 a few times over, at init and at the canary.
    let Some((c, route)) = cluster() else { return };
    let storm = 6;
    fake(&c).fail_next_writes_of("httproutes", ROUTE, storm);
    c.init_http_route(&[]).await;
    fake(&c).fail_next_writes_of("httproutes", ROUTE, storm);
    c.ok(&["start", "--canary", "v2"]).await;
    c.ok(&["set-weight", "10"]).await;
    let conflicts = fake(&c)
        .write_requests()
        .iter()
        .filter(|r| r.path.ends_with(&format!("/httproutes/{ROUTE}")) && r.status == 409)
        .count();
    assert_eq!(conflicts, 2 * storm, "{:#?}", c.writes());
    assert_eq!(
        end_state(&c),
        expected,
        "the same objects as without the storm"
    );
    assert_eq!(c.status().await["inSync"], true);
    // Every write was conditioned on what was read, and none from a stale read got through.
    let audit = fake(&c).write_audit();
    assert!(
        audit
            .iter()
            .all(|w| !w.unconditional_overwrite() && !w.accepted_stale()),
        "{audit:#?}"
    );

    // A storm that outlasts the retries: the command fails naming the route, and what was
    // written is a safe prefix: v3's Service made, no rule sending to a Service that is not
    // there, the user's rule untouched.
    c.ok(&["abort"]).await;
    let before = c.http_route();
    assert_eq!(before["spec"]["rules"].as_array().map(Vec::len), Some(3));
    fake(&c).fail_next_writes_of("httproutes", ROUTE, 10_000);
    let out = c.sticky(&["start", "--canary", "v3"]).await;
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stderr.contains(&format!("HTTPRoute {NS}/{ROUTE}")),
        "{}",
        out.stderr
    );
    let held = c.http_route();
    assert_eq!(held, before, "the route was never written");
    assert_eq!(c.services(), ["shop", "shop-v1", "shop-v3"]);
    for service in ["shop-v1", "shop-v2", "shop-v3"] {
        assert!(
            !sends_to(&held, service) || c.services().contains(&service.to_owned()),
            "the route sends to {service}, which is not there"
        );
    }
    assert_eq!(
        held["spec"]["rules"][2], route["spec"]["rules"][0],
        "the user's rule"
    );
    // Once the storm is over, aborting takes out what the failed start left: v3's Service.
    fake(&c).fail_next_writes_of("httproutes", ROUTE, 0);
    c.ok(&["abort"]).await;
    assert_eq!(
        c.rollout()["spec"]["versions"]
            .as_array()
            .map(|v| names(&Value::Array(v.clone()))),
        Some(vec!["v1".to_owned()])
    );
    assert_eq!(c.services(), ["shop", "shop-v1"]);
    assert_eq!(
        c.get(HTTPROUTE.0, HTTPROUTE.1, ROUTE)["spec"]["rules"]
            .as_array()
            .map(Vec::len),
        Some(3)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_rollouts_share_one_route_and_each_delete_takes_out_only_its_own() {
    // One host, two path-routed services in one HTTPRoute, each with its rollout.
    let Some(c) = Backend::Fake.empty_cluster() else {
        return;
    };
    c.create(support::shop_service()).unwrap();
    let mut cart = support::shop_service();
    cart["metadata"] = json!({"name": "cart", "namespace": NS, "labels": {"app": "cart"}});
    cart["spec"]["selector"] = json!({"app": "cart"});
    c.create(cart).unwrap();
    let mut route = support::storefront_route();
    route["spec"]["rules"]
        .as_array_mut()
        .unwrap()
        .push(json!({"matches": [{"path": {"value": "/cart"}}],
                     "backendRefs": [{"name": "cart", "port": 80}]}));
    let route = c.create(route).unwrap();
    c.init_http_route(&[]).await;
    c.ok(&[
        "--name",
        "cart",
        "init",
        "--service",
        "cart.prod.svc.cluster.local",
        "--stable",
        "v1",
        "--target-ref",
        "Gateway/public",
        "--gateway-namespace",
        GATEWAY_API_NS,
    ])
    .await;
    for name in ["shop", "cart"] {
        c.ok(&["--name", name, "start", "--canary", "v2"]).await;
        c.ok(&["--name", name, "set-weight", "20"]).await;
    }
    let rules = |c: &Cluster| -> Vec<String> { c.http_route_rules() };
    let both = [
        "sticky-canary.shop.v-v1",
        "sticky-canary.shop.v-v2",
        "sticky-canary.shop.default",
        "(user's)",
        "sticky-canary.cart.v-v1",
        "sticky-canary.cart.v-v2",
        "sticky-canary.cart.default",
        "(user's)",
    ];
    assert_eq!(rules(&c), both);
    // Each rollout's managed rules carry the user's matches of its own service's rule.
    let spec = c.http_route()["spec"].clone();
    assert_eq!(spec["rules"][1]["matches"][0]["path"]["value"], "/shop");
    assert_eq!(spec["rules"][5]["matches"][0]["path"]["value"], "/cart");
    assert_eq!(spec["rules"][5]["backendRefs"][0]["name"], "cart-v2");
    // Both settled: re-running either writes nothing, its status neither: neither moves the
    // other's rules, and the other's rules are no change of its own (no "reconcile" in its
    // history each time the other one moves).
    let history = |c: &Cluster| c.rollout()["status"]["history"].clone();
    let shop_history = history(&c);
    c.clear_writes();
    c.ok(&["--name", "shop", "set-weight", "20"]).await;
    c.ok(&["--name", "cart", "set-weight", "20"]).await;
    assert_eq!(c.writes(), Vec::<String>::new());
    assert_eq!(history(&c), shop_history);
    // Both rollouts' entries in the Gateway's one plugin.
    let plugins = c.managed_plugins_in(GATEWAY_API_NS);
    assert_eq!(plugins.len(), 1);
    assert_eq!(
        names(&plugins[0]["spec"]["pluginConfig"]["rollouts"]),
        ["prod/cart", "prod/shop"]
    );

    c.ok(&["--name", "shop", "delete"]).await;
    assert_eq!(rules(&c), both[3..]);
    assert_eq!(
        c.services(),
        ["cart", "cart-v1", "cart-v2", "shop"],
        "only shop's went"
    );
    c.ok(&["--name", "cart", "delete"]).await;
    assert_eq!(
        serde_json::to_string(&c.http_route()["spec"]).unwrap(),
        serde_json::to_string(&route["spec"]).unwrap()
    );
    assert_eq!(c.services(), ["cart", "shop"]);
    assert!(c.managed_plugins_in(GATEWAY_API_NS).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_service_name_taken_by_someone_else_is_refused_with_nothing_written() {
    let Some((c, route)) = cluster() else { return };
    c.init_http_route(&[]).await;
    // The user's own Service happens to be called what v2's would be.
    let mut theirs = support::shop_service();
    theirs["metadata"]["name"] = json!("shop-v2");
    let theirs = c.create(theirs).unwrap();
    let before = c.http_route();
    c.clear_writes();
    let out = c.sticky(&["start", "--canary", "v2"]).await;
    assert_eq!(out.code, 2, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stderr.contains("Service shop-v2")
            && out.stderr.contains("it is not stickyctl's")
            && out.stderr.contains("spec.routing.versionServices"),
        "{}",
        out.stderr
    );
    assert_eq!(c.writes(), Vec::<String>::new());
    assert_eq!(c.get(SVC.0, SVC.1, "shop-v2"), theirs);
    assert_eq!(c.http_route(), before);
    assert_eq!(
        c.rollout()["spec"]["versions"].as_array().map(Vec::len),
        Some(1)
    );
    c.ok(&["delete"]).await;
    assert_eq!(c.http_route()["spec"], route["spec"]);
    assert_eq!(c.services(), ["shop", "shop-v2"], "theirs stays");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_works_unchanged_on_the_httproute_api() {
    let Some((c, _)) = cluster() else { return };
    c.init_http_route(&[]).await;
    c.ok(&["start", "--canary", "v2"]).await;
    let source = runtime::target::place::Place::Kube {
        client: c.kube_client(),
        namespace: Some(NS.to_owned()),
    };
    let listener = dashboard::server::bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let served = tokio::spawn(dashboard::server::serve(listener, source, None, None, None));
    let http = reqwest::Client::new();
    let state: Value = http
        .get(format!("http://{address}/api/rollouts"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let shop = &state["rollouts"][0];
    assert_eq!(shop["id"], "prod/shop", "{state:#}");
    assert_eq!(shop["ratio"], "100:0", "{state:#}");
    let next = json!({"rollout": "prod/shop", "action": "next", "generation": shop["generation"]});
    let answer = http
        .post(format!("http://{address}/api/actions"))
        .json(&next)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status().as_u16(), 200);
    let answer: Value = answer.json().await.unwrap();
    assert_eq!(
        answer["message"], "next 1: applied (1 object written)",
        "{answer}"
    );
    assert_eq!(c.rollout()["spec"]["versions"][1]["weight"], 1.0);
    assert_eq!(
        c.rollout()["status"]["history"]
            .as_array()
            .unwrap()
            .last()
            .unwrap()["action"],
        "dashboard: next 1"
    );
    assert!(c
        .http_route_rules()
        .contains(&"sticky-canary.shop.v-v2".to_owned()));
    served.abort();
}
