//! On a real node (`sticky_canary_e2e::node`): Istio installed by its Helm charts, istiod and
//! the ingress gateway as Pods, `shop`'s versions as Deployments with injected sidecars under
//! STRICT mTLS, the chart's controller as its Pod, and the install guide (`docs/istio.md`) run
//! block by block against it. The filter reaches the gateway as the guide pins it: istio-agent
//! pulls `oci://…@sha256:…` from the node's registry.
//!
//! Run by `make test-cluster` (`.ci/run` runs it after `make test`).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::Value;
use sticky_canary_e2e::browser::{Browser, Dest, Http};
use sticky_canary_e2e::crowd::{par_map, Crowd, Moves};
use sticky_canary_e2e::guide::{guide_blocks, path_with, Shell};
use sticky_canary_e2e::load::{browse_while, whole};
use sticky_canary_e2e::locate::{self, workspace_root};
use sticky_canary_e2e::node::{isolate, istio, shop, Node, TAG};
use sticky_canary_e2e::operator::Stickyctl;
use sticky_canary_e2e::site::HOP;

const CHART_NS: &str = "sticky-canary-system";

#[test]
#[ignore = "a real node (root, namespaces, containerd): make test-cluster"]
fn the_install_guide_runs_on_a_real_node_with_injected_sidecars() {
    if !isolate::inside("the_install_guide_runs_on_a_real_node_with_injected_sidecars").unwrap() {
        return;
    }
    let started = Instant::now();
    let (node, gateway_address) = node_with_shop(started);
    let http = Http::new(gateway_address);
    let site = Browser::new().with_header("host", "shop.example.com");

    let root = workspace_root();
    let guide = std::fs::read_to_string(root.join("docs/istio.md")).unwrap();
    let blocks = guide_blocks(&guide).unwrap();
    let stickyctl = locate::stickyctl_bin().unwrap();
    let path = path_with(&[&node.helm, &node.crane, &stickyctl]);
    let admin = node.plane.admin_kubeconfig("default").unwrap();
    let shell = Shell::new(&[
        ("PATH", path),
        ("KUBECONFIG", admin.display().to_string()),
        ("REGISTRY", node.registry.clone()),
        ("GATEWAY", gateway_address.to_string()),
    ])
    .unwrap();
    let block = |id: &str| -> String {
        let (_, script) = blocks.iter().find(|(b, _)| b == id).unwrap();
        shell.run(id, script).unwrap_or_else(|e| panic!("{e:?}"))
    };

    block("push");
    let installing = Instant::now();
    block("install");
    node.wait_rollout(CHART_NS, "stickyctl-controller")
        .unwrap_or_else(|e| panic!("{e:?}"));
    eprintln!(
        "figure: helm install to the controller Ready: {:?}",
        installing.elapsed()
    );
    istio::gateway_proxy_stats(&node).unwrap_or_else(|e| panic!("{e:?}"));

    block("init");
    let mut crowd = Crowd::returning(&site, 200);
    let share = wait_share(&mut crowd, &http, "shop-v1", |s| s == 1.0);
    assert_eq!(share, 1.0, "every client on stable after init");

    block("canary");
    block("qa-token");
    // The gateway applies the token once istiod has pushed it.
    let qa = retry(|| block("qa"), |qa| qa.contains("shop-v2"));
    assert!(
        qa.contains("shop-v2"),
        "QA reaches the canary: {qa}\n{}",
        node.logs("istio-system", istio::GATEWAY, "istio-proxy")
    );
    outsiders_cannot_choose(&http);
    trust_needs_a_sidecar(&node);
    istio_agent_refuses_a_wrong_digest(&node, &shell.var("FILTER").unwrap());

    // The step while 300 returning visitors load page after page with their assets.
    let mut visitors = Crowd::returning(&site, 300);
    let before = visitors.visit(&http, "/").unwrap();
    let ((), loads) = browse_while(&http.fresh(), &mut visitors.browsers, |driver| {
        driver.wait_for_round().unwrap();
        driver.change(|| {
            let command = Instant::now();
            block("step");
            let applied = Instant::now();
            istio::wait_weights(&node, istio::GATEWAY_PODS, "prod/shop", &istio::shop_at(50))
                .unwrap_or_else(|e| panic!("{e:?}\n{}", gateway_stats(&node)));
            eprintln!(
                "figure: every gateway pod reports 50% {:?} after the step's commands returned ({:?} after they began)",
                applied.elapsed(),
                command.elapsed()
            );
        });
        driver.wait_for_round().unwrap();
    });
    let across = whole(&loads, 1).unwrap_or_else(|e| panic!("across the step: {e}"));
    eprintln!(
        "{} page loads across the live step ({across} overlapping it): every one whole",
        loads.len()
    );
    let after = visitors.visit(&http, "/").unwrap();
    let moves = Moves::between(&before, &after, "shop-v1");
    assert_eq!(moves.to_stable, 0, "a ramp-up moves nobody back: {moves:?}");
    let share = wait_share(&mut crowd, &http, "shop-v2", |s| (0.35..=0.65).contains(&s));
    assert!(
        (0.35..=0.65).contains(&share),
        "share of v2 at 50%: {share}"
    );

    block("abort");
    let share = wait_share(&mut crowd, &http, "shop-v1", |s| s == 1.0);
    assert_eq!(share, 1.0, "every client back on stable after the abort");

    block("promote");
    let share = wait_share(&mut crowd, &http, "shop-v2", |s| s == 1.0);
    assert_eq!(share, 1.0, "every client on the promoted version");
    block("delete");
    block("uninstall");
    eprintln!("done: {:?}", started.elapsed());
}

/// A client outside the mesh cannot choose its version at the gateway Pod: a version header
/// of its own, an override without the token or with a wrong one get what the hash gives
/// (stable, at weight 0).
fn outsiders_cannot_choose(http: &Http) {
    let forged: [(&str, &[u8]); 3] = [
        ("x-sticky-version", b"v2"),
        ("x-sticky-override", b"v2"),
        ("x-sticky-override", b"v2:0123456789abcdef"),
    ];
    for (name, value) in forged {
        for _ in 0..20 {
            let r = http
                .get("/", &[("host", b"shop.example.com"), (name, value)])
                .unwrap();
            assert_eq!(
                r.served_by.as_deref(),
                Some("shop-v1"),
                "{name}: {} from outside the mesh: {r:?}",
                String::from_utf8_lossy(value)
            );
        }
    }
}

/// A node with Istio installed and shop's two versions running (two injected pods each), and
/// the address of the ingress gateway's Service; progress timed from `started`.
fn node_with_shop(started: Instant) -> (Node, SocketAddr) {
    let node = Node::start().unwrap_or_else(|e| panic!("{e:?}"));
    eprintln!("node Ready, CoreDNS running: {:?}", started.elapsed());
    istio::install(&node).unwrap_or_else(|e| panic!("{e:?}"));
    eprintln!("istiod and the gateway running: {:?}", started.elapsed());
    shop::install(&node).unwrap_or_else(|e| panic!("{e:?}"));
    eprintln!("shop's versions running: {:?}", started.elapsed());
    // Every pod of shop has istiod's sidecar, from the node's proxy image.
    let pods = node.plane.list("v1", "Pod", shop::NS, "app=shop").unwrap();
    assert_eq!(pods.len(), 4);
    let proxy_image = format!("{}/istio/proxyv2:{TAG}", node.registry);
    for pod in &pods {
        assert!(injected(pod, &proxy_image), "not injected: {pod}");
    }
    let address = istio::gateway_address(&node).unwrap();
    (node, address)
}

/// web's pages call shop (`/hop`), each through its pod's sidecar. With web's rollout at the
/// gateway and shop's on web's sidecars trusting the header (`--sidecar app=web
/// --trust-incoming-header`, the README's rule for sidecars behind a gateway), shop serves
/// every hop from the version the gateway chose for web; before shop's rollout, shop's
/// versions split the hops with no regard for web's (the control).
#[test]
#[ignore = "a real node (root, namespaces, containerd): make test-cluster"]
fn across_a_hop_shop_follows_the_version_the_gateway_chose() {
    if !isolate::inside("across_a_hop_shop_follows_the_version_the_gateway_chose").unwrap() {
        return;
    }
    let (node, gateway) = node_with_shop(Instant::now());
    let upstream = node.image("sticky-canary/upstream");
    let admin = node.plane.admin_kubeconfig(shop::NS).unwrap();
    let stickyctl = Stickyctl::kube(&admin, shop::NS).unwrap();
    // web's sidecars keep the filter's stats, labelled, as the gateway's do.
    let proxy_stats = stickyctl.ok(&["proxy-stats"]).unwrap();
    node.plane
        .apply(&serde_json::json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": shop::PROXY_STATS, "namespace": shop::NS},
            "data": {"custom_bootstrap.json": proxy_stats},
        }))
        .unwrap();
    for object in shop::web_objects() {
        node.plane.apply(&object).unwrap();
    }
    for version in ["v1", "v2"] {
        node.plane
            .apply(&shop::web_version(&upstream, version))
            .unwrap();
    }
    for version in ["v1", "v2"] {
        node.wait_rollout(shop::NS, &format!("web-{version}"))
            .unwrap_or_else(|e| panic!("{e:?}"));
    }
    let plugin = node.plugin_flags();
    let init = |service: &str, extra: &[&str]| {
        let fqdn = format!("{service}.{}.svc.cluster.local", shop::NS);
        let mut args = vec!["init", "--service", &fqdn, "--stable", "v1"];
        args.extend(plugin.iter().map(String::as_str));
        args.extend_from_slice(extra);
        stickyctl.ok(&args).unwrap_or_else(|e| panic!("{e:?}"));
        for step in [&["start", "--canary", "v2"][..], &["set-weight", "50"]] {
            let mut args = vec!["--name", service];
            args.extend_from_slice(step);
            stickyctl.ok(&args).unwrap_or_else(|e| panic!("{e:?}"));
        }
    };
    init("web", &[]);

    let http = Http::new(gateway);
    let mut crowd = Crowd::returning(&Browser::new().with_header("host", "web.example.com"), 200);
    let hops = |crowd: &mut Crowd| -> Vec<Option<(String, String)>> {
        par_map(&mut crowd.browsers, |browser| {
            let response = browser.fetch(&http, HOP, Dest::Api).ok();
            Ok(response.and_then(|r| Some((r.served_by?, r.callee_served_by?))))
        })
        .unwrap_or_default()
    };
    let version = |served: &str| served.rsplit('-').next().unwrap_or_default().to_owned();
    let matching = |hops: &[Option<(String, String)>]| {
        hops.iter()
            .flatten()
            .filter(|(web, shop)| version(web) == version(shop))
            .count()
    };
    // web at 50% through the gateway; shop splits its calls by its own pods.
    let before = retry(
        || hops(&mut crowd),
        |hops| hops.iter().all(Option::is_some) && has_both(hops),
    );
    let agreeing = matching(&before);
    assert!(
        (40..=160).contains(&agreeing),
        "without shop's rollout about half the hops mix versions: {agreeing} of 200 agree"
    );

    init("shop", &["--sidecar", "app=web", "--trust-incoming-header"]);
    let after = retry(|| hops(&mut crowd), |hops| matching(hops) == 200);
    assert_eq!(
        matching(&after),
        200,
        "shop follows web's version on every hop: {:?}",
        after
            .iter()
            .filter(|h| h.as_ref().is_none_or(|(w, s)| version(w) != version(s)))
            .take(5)
            .collect::<Vec<_>>()
    );
    let on_v2 = after
        .iter()
        .flatten()
        .filter(|(web, _)| version(web) == "v2")
        .count();
    assert!(
        (60..=140).contains(&on_v2),
        "web's weight decides: {on_v2} of 200 on v2"
    );

    // A change of shop's weight reaches every sidecar that runs shop's rollout.
    let command = Instant::now();
    stickyctl
        .ok(&["--name", "shop", "set-weight", "80"])
        .unwrap_or_else(|e| panic!("{e:?}"));
    let returned = Instant::now();
    istio::wait_weights(
        &node,
        (shop::NS, "app=web", 2),
        "prod/shop",
        &istio::shop_at(80),
    )
    .unwrap_or_else(|e| panic!("web's two sidecars report 80% for shop: {e:?}"));
    eprintln!(
        "figure: both web sidecars report shop at 80% {:?} after set-weight returned ({:?} after it began)",
        returned.elapsed(),
        command.elapsed()
    );
}

/// Whether both of web's versions served some of `hops`.
fn has_both(hops: &[Option<(String, String)>]) -> bool {
    ["web-v1", "web-v2"]
        .iter()
        .all(|v| hops.iter().flatten().any(|(web, _)| web == v))
}

/// The Gateway API guide (`docs/gateway-api.md`, but for its ambient block: no ztunnel here) on
/// istiod's own gateway: the user's Gateway `public`, for which istiod's deployment controller
/// makes the Deployment and Service `public-istio` from its `kube-gateway` template, and the
/// kubelet runs that Pod with its injected istio-agent. A fifth of 200 returning clients on the
/// canary through it, every client on the promoted version, the route given back by `delete`.
#[test]
#[ignore = "a real node (root, namespaces, containerd): make test-cluster"]
fn the_gateway_api_guide_runs_on_istios_gateway_deployment() {
    if !isolate::inside("the_gateway_api_guide_runs_on_istios_gateway_deployment").unwrap() {
        return;
    }
    let (node, _) = node_with_shop(Instant::now());
    // shop moves to the Gateway API: stickyctl refuses a service both APIs route.
    node.plane
        .delete("networking.istio.io/v1", "VirtualService", shop::NS, "shop")
        .unwrap();
    let gateway_api = "gateway.networking.k8s.io/v1";
    node.plane
        .apply(&serde_json::json!({"apiVersion": "v1", "kind": "Namespace",
                                   "metadata": {"name": "istio-ingress"}}))
        .unwrap();
    node.plane
        .apply(&serde_json::json!({
            "apiVersion": gateway_api, "kind": "Gateway",
            "metadata": {"name": "public", "namespace": "istio-ingress"},
            "spec": {"gatewayClassName": "istio",
                     "listeners": [{"name": "http", "port": 80, "protocol": "HTTP",
                                    "allowedRoutes": {"namespaces": {"from": "All"}}}]},
        }))
        .unwrap();
    let route = serde_json::json!({
        "apiVersion": gateway_api, "kind": "HTTPRoute",
        "metadata": {"name": "shop", "namespace": shop::NS},
        "spec": {"parentRefs": [{"name": "public", "namespace": "istio-ingress"}],
                 "hostnames": ["shop.example.com"],
                 "rules": [{"backendRefs": [{"name": "shop", "port": 80}]}]},
    });
    node.plane.apply(&route).unwrap();
    let started = Instant::now();
    // Waits while istiod has not written the Deployment yet, then for its pod.
    node.wait_rollout("istio-ingress", "public-istio")
        .unwrap_or_else(|e| panic!("{e:?}"));
    eprintln!(
        "figure: the Gateway to istiod's gateway Pod running: {:?}",
        started.elapsed()
    );
    let gateway_pods = node
        .plane
        .list(
            "v1",
            "Pod",
            "istio-ingress",
            "gateway.networking.k8s.io/gateway-name=public",
        )
        .unwrap();
    assert_eq!(gateway_pods.len(), 1, "{gateway_pods:?}");
    let service = node
        .plane
        .get("v1", "Service", "istio-ingress", "public-istio")
        .unwrap()
        .expect("istiod's Service for the Gateway");
    let address: SocketAddr = format!("{}:80", service["spec"]["clusterIP"].as_str().unwrap())
        .parse()
        .unwrap();
    let http = Http::new(address);

    let guide = std::fs::read_to_string(workspace_root().join("docs/gateway-api.md")).unwrap();
    let blocks = guide_blocks(&guide).unwrap();
    let stickyctl = locate::stickyctl_bin().unwrap();
    let path = path_with(&[&stickyctl]);
    let admin = node.plane.admin_kubeconfig("default").unwrap();
    let shell = Shell::new(&[
        ("PATH", path),
        ("KUBECONFIG", admin.display().to_string()),
        ("GATEWAY", address.to_string()),
        (
            "PLUGIN_URL",
            format!("oci://{}", node.image("sticky-canary/filter")),
        ),
    ])
    .unwrap();
    let block = |id: &str| -> String {
        let (_, script) = blocks.iter().find(|(b, _)| b == id).unwrap();
        shell.run(id, script).unwrap_or_else(|e| panic!("{e:?}"))
    };
    let site = Browser::new().with_header("host", "shop.example.com");
    let mut crowd = Crowd::returning(&site, 200);
    let original = node
        .plane
        .get(gateway_api, "HTTPRoute", shop::NS, "shop")
        .unwrap()
        .expect("the user's route");
    block("init");
    let share = wait_share(&mut crowd, &http, "shop-v1", |s| s == 1.0);
    assert_eq!(share, 1.0, "every client on stable after init");
    block("canary");
    let share = wait_share(&mut crowd, &http, "shop-v2", |s| (0.1..=0.3).contains(&s));
    assert!((0.1..=0.3).contains(&share), "share of v2 at 20%: {share}");
    block("promote");
    let share = wait_share(&mut crowd, &http, "shop-v2", |s| s == 1.0);
    assert_eq!(share, 1.0, "every client on the promoted version");
    block("delete");
    let restored = node
        .plane
        .get(gateway_api, "HTTPRoute", shop::NS, "shop")
        .unwrap()
        .expect("the user's route");
    assert_eq!(
        restored["spec"], original["spec"],
        "delete gives the route back"
    );
}

/// Whether `pod` was injected as Istio's template does on Kubernetes 1.36: `istio-init` (the
/// capture rules) then `istio-proxy` as a native sidecar (an init container that keeps running),
/// both of `proxy_image`.
fn injected(pod: &Value, proxy_image: &str) -> bool {
    let init: Vec<&Value> = pod["spec"]["initContainers"]
        .as_array()
        .into_iter()
        .flatten()
        .collect();
    let names: Vec<&str> = init.iter().filter_map(|c| c["name"].as_str()).collect();
    names.starts_with(&["istio-init", "istio-proxy"])
        && init[..2].iter().all(|c| c["image"] == proxy_image)
        && init[1]["restartPolicy"] == "Always"
}

/// The crowd's share of page loads `served` served, once `done` holds of it (or after a
/// minute, the last share): the gateway applies a change when istiod has pushed it.
fn wait_share(crowd: &mut Crowd, http: &Http, served: &str, done: impl Fn(f64) -> bool) -> f64 {
    retry(
        || crowd.visit_share(http, "/", served).unwrap_or(-1.0),
        |share| done(*share),
    )
}

/// How long the tests wait for a change to reach the proxies.
const PATIENCE: Duration = Duration::from_secs(60);

/// `probe()` every half second until `done` holds of what it returns, or [`PATIENCE`] runs
/// out: the last result either way, for the caller's assertion.
fn retry<T>(mut probe: impl FnMut() -> T, done: impl Fn(&T) -> bool) -> T {
    let deadline = Instant::now() + PATIENCE;
    let mut last = probe();
    while !done(&last) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(500));
        last = probe();
    }
    last
}

/// The README's trust rule rests on STRICT mTLS: a workload without a sidecar cannot send a
/// request (version header and all) to shop's pods, one with a sidecar can; with shop's
/// namespace PERMISSIVE the same sidecar-less call gets through, so the refusal is mTLS's.
fn trust_needs_a_sidecar(node: &Node) {
    let upstream = node.image("sticky-canary/upstream");
    node.plane
        .apply(&shop::caller(&upstream, "outsider", false))
        .unwrap();
    node.plane
        .apply(&shop::caller(&upstream, "insider", true))
        .unwrap();
    // The test reaches the insider's own port in plain text; its calls to shop still leave
    // through its sidecar, with mTLS.
    node.plane
        .apply(&serde_json::json!({
            "apiVersion": "security.istio.io/v1", "kind": "PeerAuthentication",
            "metadata": {"name": "insider", "namespace": shop::NS},
            "spec": {"selector": {"matchLabels": {"app": "insider"}}, "mtls": {"mode": "PERMISSIVE"}},
        }))
        .unwrap();
    let outsider = node
        .wait_pod(shop::NS, "outsider")
        .unwrap_or_else(|e| panic!("{e:?}"));
    let insider = node
        .wait_pod(shop::NS, "insider")
        .unwrap_or_else(|e| panic!("{e:?}"));
    let hop = |ip: &str| {
        let http = Http::new(format!("{ip}:{}", shop::APP_PORT).parse().unwrap());
        http.get(HOP, &[("x-sticky-version", b"v2")]).unwrap()
    };
    let from_insider = retry(|| hop(&insider), |r| r.status == 200);
    assert_eq!(
        from_insider.status, 200,
        "a mesh workload reaches shop: {from_insider:?}"
    );
    let from_outsider = hop(&outsider);
    assert_eq!(
        from_outsider.status, 502,
        "STRICT mTLS refuses a workload without a sidecar: {from_outsider:?}"
    );

    let permissive = serde_json::json!({
        "apiVersion": "security.istio.io/v1", "kind": "PeerAuthentication",
        "metadata": {"name": "default", "namespace": shop::NS},
        "spec": {"mtls": {"mode": "PERMISSIVE"}},
    });
    node.plane.apply(&permissive).unwrap();
    let permitted = retry(|| hop(&outsider), |r| r.status == 200);
    assert_eq!(
        permitted.status, 200,
        "PERMISSIVE lets it through: {permitted:?}"
    );
    node.plane
        .delete(
            "security.istio.io/v1",
            "PeerAuthentication",
            shop::NS,
            "default",
        )
        .unwrap();
    let refused = retry(|| hop(&outsider), |r| r.status == 502);
    assert_eq!(refused.status, 502, "STRICT again: {refused:?}");
}

/// istio-agent pulls a WasmPlugin's module and checks it against the plugin's `sha256`: the
/// filter's image with a digest that is not its module's is refused (its fetch counted as
/// `checksum_mismatched` in the agent's own metrics), the guide's is fetched.
fn istio_agent_refuses_a_wrong_digest(node: &Node, filter: &str) {
    node.plane
        .apply(&serde_json::json!({
            "apiVersion": "extensions.istio.io/v1alpha1", "kind": "WasmPlugin",
            "metadata": {"name": "wrong-digest", "namespace": "istio-system"},
            "spec": {"selector": {"matchLabels": {"istio": "ingressgateway"}},
                     "url": format!("oci://{filter}"),
                     "sha256": "0".repeat(64),
                     "failStrategy": "FAIL_OPEN",
                     "phase": "STATS"},
        }))
        .unwrap();
    let gateway =
        istio::serving_pods(node, "istio-system", &format!("app={}", istio::GATEWAY)).unwrap();
    let ip = gateway[0]["status"]["podIP"].as_str().unwrap().to_owned();
    let agent = Http::new(format!("{ip}:15020").parse().unwrap());
    let count = |result: &str| -> f64 {
        let text = agent
            .get("/stats/prometheus", &[])
            .map(|r| r.body)
            .unwrap_or_default();
        text.lines()
            .filter(|l| {
                l.starts_with("istio_agent_wasm_remote_fetch_count")
                    && l.contains(&format!("result=\"{result}\""))
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    assert!(
        retry(|| count("checksum_mismatched"), |n| *n >= 1.0) >= 1.0,
        "istio-agent refused the wrong digest: {}",
        node.logs("istio-system", istio::GATEWAY, "istio-proxy")
    );
    assert!(count("success") >= 1.0, "and fetched the guide's module");
    node.plane
        .delete(
            "extensions.istio.io/v1alpha1",
            "WasmPlugin",
            "istio-system",
            "wrong-digest",
        )
        .unwrap();
}

/// The gateway pods' annotations and the lines of their Envoy's Prometheus stats that name the
/// filter, for a failure's message.
fn gateway_stats(node: &Node) -> String {
    let pods = node
        .plane
        .list(
            "v1",
            "Pod",
            "istio-system",
            &format!("app={}", istio::GATEWAY),
        )
        .unwrap_or_default();
    pods.iter()
        .map(|pod| {
            let ip = pod["status"]["podIP"].as_str().unwrap_or_default();
            let stats = format!("{ip}:15090")
                .parse()
                .ok()
                .and_then(|a| Http::new(a).get("/stats/prometheus", &[]).ok())
                .map(|r| r.body)
                .unwrap_or_default();
            let sticky: Vec<&str> = stats.lines().filter(|l| l.contains("sticky")).collect();
            format!(
                "{} {}: {} stats lines, of the filter:\n{}",
                pod["metadata"]["name"],
                pod["metadata"]["annotations"],
                stats.lines().count(),
                sticky.join("\n")
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}
