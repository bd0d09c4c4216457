//! The Gateway API guide, `docs/gateway-api.md`, run as it is: each of its `sh` blocks, in
//! order, by bash, against the harness's real control plane (kube-apiserver, istiod with its
//! Gateway API controller and ambient on, an Envoy playing the Gateway `public`, one playing
//! the waypoint), with stickyctl on the PATH; the kubeconfig, `GATEWAY` and `PLUGIN_URL` (the
//! built filter as a `file://` module, as istio-agent would hand Envoy the file it fetched)
//! are all that is set. Between blocks the test checks what the guide says happened.

use std::path::Path;

use serde_json::Value;
use sticky_canary_e2e::guide::{guide_blocks, path_with, Shell};
use sticky_canary_e2e::locate::{self, workspace_root};
use sticky_canary_e2e::mesh::gateway_api::{
    chain_http_filters, GatewayApiStack, Options, GATEWAY_API, GATEWAY_NS,
};
use sticky_canary_e2e::mesh::stack::{MeshStack, Service, NS};

#[test]
fn the_gateway_api_guide_runs_against_a_real_control_plane() {
    let guide = std::fs::read_to_string(workspace_root().join("docs/gateway-api.md")).unwrap();
    let blocks = guide_blocks(&guide).unwrap();
    let ids: Vec<&str> = blocks.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(ids, ["init", "canary", "promote", "delete", "ambient"]);

    let upstream = Path::new(env!("CARGO_BIN_EXE_sticky-upstream"));
    let stack = GatewayApiStack::start(
        upstream,
        &[Service::new("shop", &["v1", "v2"])],
        Options { waypoint: true },
    )
    .unwrap_or_else(|e| panic!("cannot start the mesh: {e:?}"));
    let plane = &stack.plane;
    let stickyctl = locate::stickyctl_bin().unwrap();
    let path = path_with(&[&stickyctl]);
    let shell = Shell::new(&[
        ("PATH", path),
        (
            "KUBECONFIG",
            plane.admin_kubeconfig(NS).unwrap().display().to_string(),
        ),
        ("GATEWAY", stack.gateway_address().to_string()),
        ("PLUGIN_URL", MeshStack::plugin_url().unwrap()),
    ])
    .unwrap();
    let block = |id: &str| -> String {
        let (_, script) = blocks.iter().find(|(b, _)| b == id).unwrap();
        shell.run(id, script).unwrap_or_else(|e| panic!("{e:?}"))
    };
    let get = |api: &str, kind: &str, ns: &str, name: &str| -> Option<Value> {
        plane.get(api, kind, ns, name).unwrap()
    };
    let route = || get(GATEWAY_API, "HTTPRoute", NS, "shop").expect("the user's route");
    let rule_names = || -> Vec<Value> {
        route()["spec"]["rules"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["name"].clone())
            .collect()
    };
    let original = route();

    block("init");
    let rollout = get("stickycanary.io/v1alpha1", "StickyCanary", NS, "shop").unwrap();
    assert_eq!(rollout["spec"]["routing"]["api"], "HTTPRoute");
    assert_eq!(rollout["spec"]["routing"]["httpRoute"], "shop");
    assert!(
        get("v1", "Service", NS, "shop-v1").is_some(),
        "shop-v1 made"
    );
    assert_eq!(
        rule_names(),
        [
            Value::from("sticky-canary.shop.v-v1"),
            Value::from("sticky-canary.shop.default"),
            Value::Null
        ]
    );
    let plugins = plane
        .list("extensions.istio.io/v1alpha1", "WasmPlugin", GATEWAY_NS, "")
        .unwrap();
    assert_eq!(plugins.len(), 1, "one plugin in the Gateway's namespace");
    assert_eq!(
        plugins[0]["spec"]["targetRefs"][0]["name"], "public",
        "{plugins:?}"
    );

    block("canary");
    assert!(
        get("v1", "Service", NS, "shop-v2").is_some(),
        "shop-v2 made"
    );
    stack
        .wait_until(
            "a fifth of new clients on v2, stamped at the gateway",
            |http| {
                let on_v2 = (0..100)
                    .filter(|_| {
                        http.get("/", &[("host", b"shop.example.com")])
                            .ok()
                            .and_then(|r| r.received_version)
                            .as_deref()
                            == Some("v2")
                    })
                    .count();
                (8..=35).contains(&on_v2)
            },
        )
        .unwrap();

    block("promote");
    assert!(
        get("v1", "Service", NS, "shop-v1").is_none(),
        "shop-v1 gone"
    );
    assert_eq!(
        rule_names(),
        [
            Value::from("sticky-canary.shop.v-v2"),
            Value::from("sticky-canary.shop.default"),
            Value::Null
        ]
    );

    block("delete");
    assert_eq!(
        route()["spec"],
        original["spec"],
        "the route as the user wrote it"
    );
    assert!(
        get("v1", "Service", NS, "shop-v2").is_none(),
        "shop-v2 gone"
    );

    // The ambient variant: the block ends with a delete, so the waypoint's configuration is
    // checked while it runs: the rollout is started again between its commands.
    let (_, ambient) = blocks.iter().find(|(b, _)| b == "ambient").unwrap();
    let (until_delete, _) = ambient
        .rsplit_once("stickyctl delete")
        .expect("the ambient block ends with a delete");
    shell
        .run("ambient (before its delete)", until_delete)
        .unwrap_or_else(|e| panic!("{e:?}"));
    let waypoint = stack.waypoint.as_ref().expect("the waypoint");
    let plugin = plane
        .list("extensions.istio.io/v1alpha1", "WasmPlugin", NS, "")
        .unwrap()
        .into_iter()
        .find(|p| p["spec"]["targetRefs"][0]["kind"] == "Service")
        .expect("the waypoint's plugin in the service's namespace");
    assert!(plugin["spec"].get("match").is_none(), "{plugin}");
    let name = plugin["metadata"]["name"].as_str().unwrap().to_owned();
    stack
        .wait_for_istiod_config(
            waypoint,
            "the filter on shop's chain at the waypoint",
            |dump| {
                let filters = chain_http_filters(
                    dump,
                    "main_internal",
                    "inbound-vip|80|http|shop.prod.svc.cluster.local",
                );
                filters.iter().any(|f| f.contains(&name)).then_some(())
            },
        )
        .unwrap();
    shell
        .run(
            "ambient (its delete)",
            "stickyctl delete -n prod --name shop-mesh",
        )
        .unwrap_or_else(|e| panic!("{e:?}"));
    assert!(get(GATEWAY_API, "HTTPRoute", NS, "shop-mesh").is_some());
    assert!(
        get("v1", "Service", NS, "shop-v1").is_none(),
        "shop-v1 gone"
    );
}
