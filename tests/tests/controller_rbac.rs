//! The RBAC rules shipped in `istio/rbac.yaml` and in the Helm chart (the same rules, checked
//! equal) are exactly what the code needs: the controller
//! and the CLI run through a whole rollout against the fake API server, every request they
//! make is turned into the RBAC verb the real server would check, and those verbs are compared
//! with the ClusterRoles both ways: a missing verb would fail in a cluster, a granted verb the
//! code never uses is privilege nobody needs (no `delete` on the user's objects, for one).
//! The operator's roles are also checked by where each request goes, as they are bound: the
//! rollout's namespace, the gateways' (`istio-system`, where the ingress gateway's shared
//! WasmPlugin lives, and `istio-ingress`, the Gateway API gateway's) and all namespaces (the
//! one list that finds the plugins stickyctl manages). Both run a rollout on each routing
//! API: the VirtualService, then the HTTPRoute (with its per-version Services).
//!
//! Fake-only: it reads the fake's log of every request, which a real server does not give a
//! test. `real_apiserver.rs` runs the controller as its ServiceAccount on a real RBAC
//! authorizer.

mod support;

use std::collections::{BTreeMap, BTreeSet};

use api::{Proxies, StickyCanary, StickyCanarySpec, TargetRef};
use serde::Deserialize;
use serde_json::{json, Value};
use sticky_canary_filter::VersionWeight;
use sticky_canary_tests::fake_apiserver::parse_path;
use sticky_canary_tests::{repo_root, RecordedRequest};
use support::{
    cluster, eventually, names, Cluster, GATEWAY_API_NS, GATEWAY_NS, NS, SHOP_HOST, SVC,
};

/// `(apiGroup, resource[/subresource], verb)`.
type Permission = (String, String, String);

/// The permissions the ClusterRole `role` grants, in `istio/rbac.yaml` and in the chart's
/// rendered RBAC alike: both ship the same rules, so every check below holds for both.
fn granted(role: &str) -> BTreeSet<Permission> {
    let path = repo_root().join("istio/rbac.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let manifests: Vec<Value> = serde_norway::Deserializer::from_str(&text)
        .map(|d| Value::deserialize(d).unwrap())
        .collect();
    let from_file = permissions(&manifests, role, &path.display().to_string());
    let chart = sticky_canary_e2e::chart::render(&["images.registry=registry.example.com"])
        .unwrap_or_else(|e| panic!("{e:?}"));
    let from_chart = permissions(&chart, role, "the chart");
    assert_eq!(
        from_chart, from_file,
        "the chart's ClusterRole {role} differs from istio/rbac.yaml's"
    );
    from_file
}

/// The permissions of ClusterRole `role` among `documents` (of `source`).
fn permissions(documents: &[Value], role: &str, source: &str) -> BTreeSet<Permission> {
    let document = documents
        .iter()
        .find(|d| d["kind"] == "ClusterRole" && d["metadata"]["name"] == role)
        .unwrap_or_else(|| panic!("{source}: no ClusterRole {role}"));
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap().to_owned())
            .collect()
    };
    let mut permissions = BTreeSet::new();
    for rule in document["rules"].as_array().unwrap() {
        for group in strings(&rule["apiGroups"]) {
            for resource in strings(&rule["resources"]) {
                for verb in strings(&rule["verbs"]) {
                    permissions.insert((group.clone(), resource.clone(), verb));
                }
            }
        }
    }
    permissions
}

/// The permission the real API server checks for a request.
fn permission(request: &RecordedRequest) -> Permission {
    let path = parse_path(&request.path)
        .unwrap_or_else(|| panic!("not a resource request: {}", request.path));
    let watch = request
        .query
        .split('&')
        .any(|p| p == "watch=true" || p == "watch=1");
    let verb = match (request.method.as_str(), path.name.is_some(), watch) {
        ("GET", true, _) => "get",
        ("GET", false, true) => "watch",
        ("GET", false, false) => "list",
        ("POST", ..) => "create",
        ("PUT", ..) => "update",
        ("PATCH", ..) => "patch",
        ("DELETE", true, _) => "delete",
        ("DELETE", false, _) => "deletecollection",
        (method, ..) => panic!("unexpected {method} {}", request.path),
    };
    let resource = match &path.subresource {
        Some(sub) => format!("{}/{sub}", path.plural),
        None => path.plural.clone(),
    };
    (path.group, resource, verb.to_owned())
}

fn used(c: &Cluster) -> BTreeSet<Permission> {
    c.fake()
        .expect("the fake API server")
        .requests()
        .iter()
        .map(permission)
        .collect()
}

/// The permissions used, by the namespace of the request (`None`: all namespaces).
fn used_by_namespace(c: &Cluster) -> BTreeMap<Option<String>, BTreeSet<Permission>> {
    let mut by_namespace: BTreeMap<_, BTreeSet<_>> = BTreeMap::new();
    for request in c.fake().expect("the fake API server").requests() {
        let namespace = parse_path(&request.path).and_then(|p| p.namespace);
        by_namespace
            .entry(namespace)
            .or_default()
            .insert(permission(&request));
    }
    by_namespace
}

#[test]
fn requests_map_to_the_verbs_the_server_checks() {
    let request = |method: &str, path: &str, query: &str| RecordedRequest {
        method: method.into(),
        path: path.into(),
        query: query.into(),
        content_type: None,
        status: 200,
        dry_run: false,
    };
    let sc = "/apis/stickycanary.io/v1alpha1/namespaces/prod/stickycanaries";
    let cases = [
        (
            request("GET", &format!("{sc}/shop"), ""),
            "stickycanaries",
            "get",
        ),
        (
            request("GET", sc, "watch=true&resourceVersion=3"),
            "stickycanaries",
            "watch",
        ),
        (
            request("GET", sc, "labelSelector=a%3Db"),
            "stickycanaries",
            "list",
        ),
        (
            request("PUT", &format!("{sc}/shop/status"), ""),
            "stickycanaries/status",
            "update",
        ),
        (
            request("PATCH", &format!("{sc}/shop"), ""),
            "stickycanaries",
            "patch",
        ),
        (
            request("DELETE", &format!("{sc}/shop"), ""),
            "stickycanaries",
            "delete",
        ),
        (request("POST", sc, ""), "stickycanaries", "create"),
    ];
    for (request, resource, verb) in cases {
        assert_eq!(
            permission(&request),
            ("stickycanary.io".into(), resource.into(), verb.into()),
            "{request:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_controller_role_is_what_the_controller_uses() {
    let Some(c) = cluster() else { return };
    let mut spec = StickyCanarySpec::new("shop", "v1");
    spec.versions = vec![
        VersionWeight::new("v1", 90.0),
        VersionWeight::new("v2", 10.0),
    ];
    let mut rollout = serde_json::to_value(StickyCanary::new("shop", spec)).unwrap();
    rollout["metadata"]["namespace"] = json!(NS);
    c.create(rollout).expect("create the rollout (GitOps)");
    // An earlier version's plugin of the rollout, which the controller removes.
    c.seed_legacy_plugin();
    c.clear_writes();

    let controller = c.start_controller();
    eventually("the rollout is applied", || {
        c.rollout()["status"]["lastApplied"].is_object()
    })
    .await;
    let applied = c.route_names();
    // A change of weights (GitOps again): the WasmPlugin is updated.
    c.edit_rollout(|sc| {
        sc["spec"]["versions"] =
            json!([{"name": "v1", "weight": 80.0}, {"name": "v2", "weight": 20.0}]);
    });
    eventually("the new weights are applied", || {
        c.plugin_weights()[1]["weight"] == 20.0
    })
    .await;
    // Two repairs: the second Event of a kind is a patch of the first one's series.
    for _ in 0..2 {
        c.update(
            "networking.istio.io/v1",
            "VirtualService",
            NS,
            "shop",
            |vs| {
                vs["spec"]["http"]
                    .as_array_mut()
                    .unwrap()
                    .retain(|r| r["name"] != "sticky-canary-shop-v2");
            },
        )
        .unwrap();
        eventually("the route is repaired", || c.route_names() == applied).await;
    }
    // A subset taken out of the DestinationRule by hand is put back (an update).
    let subsets = c.subsets();
    c.update(
        "networking.istio.io/v1",
        "DestinationRule",
        NS,
        "shop",
        |dr| {
            dr["spec"]["subsets"].as_array_mut().unwrap().pop();
        },
    )
    .unwrap();
    eventually("the subset is repaired", || c.subsets() == subsets).await;
    c.delete("stickycanary.io/v1alpha1", "StickyCanary", NS, "shop")
        .unwrap();
    eventually("the rollout is cleaned up and gone", || {
        c.get_in("stickycanary.io/v1alpha1", "StickyCanary", NS, "shop")
            .is_none()
    })
    .await;
    assert!(
        names(&c.get("networking.istio.io/v1", "VirtualService", "shop")["spec"]["http"])
            .iter()
            .all(|r| !r.starts_with("sticky-canary-")),
        "cleaned up"
    );
    assert!(c.legacy_plugin().is_none() && c.gateway_plugin().is_none());

    // The same service on the HTTPRoute API: the user moved it to a Gateway API gateway.
    c.delete("networking.istio.io/v1", "VirtualService", NS, "shop")
        .unwrap();
    let route = c.seed_http_route();
    let mut spec = StickyCanarySpec::new(SHOP_HOST, "v1");
    spec.versions = vec![
        VersionWeight::new("v1", 90.0),
        VersionWeight::new("v2", 10.0),
    ];
    spec.plugin.gateways = Some(vec![public_gateway()]);
    let mut rollout = serde_json::to_value(StickyCanary::new("shop", spec)).unwrap();
    rollout["metadata"]["namespace"] = json!(NS);
    c.create(rollout)
        .expect("create the HTTPRoute rollout (GitOps)");
    eventually("the HTTPRoute rollout is applied", || {
        c.rollout()["status"]["lastApplied"].is_object()
            && c.http_route_rules().len() == 4
            && c.services() == ["shop", "shop-v1", "shop-v2"]
    })
    .await;
    // A weight change, with a port the user added to the service since: the version
    // Services follow it (updated).
    add_port(&c);
    c.edit_rollout(|sc| {
        sc["spec"]["versions"] =
            json!([{"name": "v1", "weight": 80.0}, {"name": "v2", "weight": 20.0}]);
    });
    eventually("the new weights are applied", || {
        c.gateway_api_weights()
            .is_some_and(|w| w[1]["weight"] == 20.0)
            && version_ports(&c, "shop-v2") == 2
    })
    .await;
    // Aborted by GitOps: v2 leaves, its Service is deleted after the route left it.
    c.edit_rollout(|sc| {
        sc["spec"]["versions"] = json!([{"name": "v1", "weight": 100.0}]);
    });
    eventually("v2's Service is gone", || {
        c.services() == ["shop", "shop-v1"] && c.http_route_rules().len() == 3
    })
    .await;
    c.delete("stickycanary.io/v1alpha1", "StickyCanary", NS, "shop")
        .unwrap();
    eventually("the HTTPRoute rollout is cleaned up and gone", || {
        c.get_in("stickycanary.io/v1alpha1", "StickyCanary", NS, "shop")
            .is_none()
    })
    .await;
    drop(controller);
    assert_eq!(c.http_route()["spec"], route["spec"], "the route restored");
    assert_eq!(c.services(), ["shop"]);
    assert!(c.managed_plugins_in(GATEWAY_API_NS).is_empty());
    assert_eq!(used(&c), granted("stickyctl-controller"));
}

/// Where the HTTPRoute rollouts' filter runs: Gateway `public` of [`GATEWAY_API_NS`].
fn public_gateway() -> Proxies {
    Proxies {
        namespace: Some(GATEWAY_API_NS.into()),
        target_refs: vec![TargetRef {
            group: "gateway.networking.k8s.io".into(),
            kind: "Gateway".into(),
            name: "public".into(),
        }],
        ..Proxies::default()
    }
}

/// The user adds a port to Service `shop` (by hand, as `kubectl edit` would).
fn add_port(c: &Cluster) {
    c.update(SVC.0, SVC.1, NS, "shop", |service| {
        service["spec"]["ports"]
            .as_array_mut()
            .unwrap()
            .push(json!({"name": "grpc", "port": 9090, "targetPort": 9090}));
    })
    .expect("add a port to the user's Service");
}

/// How many ports version Service `name` has (0 when it is gone).
fn version_ports(c: &Cluster, name: &str) -> usize {
    c.get_in(SVC.0, SVC.1, NS, name)
        .and_then(|s| s["spec"]["ports"].as_array().map(Vec::len))
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_role_is_what_the_cli_uses() {
    let Some(c) = cluster() else { return };
    // An earlier version's plugin of the rollout, which the first command removes.
    c.seed_legacy_plugin();
    c.clear_writes();
    c.init().await;
    for args in [
        &["start", "--canary", "v2"][..],
        &["set-weight", "10", "--dry-run"],
        &["set-weight", "10"],
        &["next"],
        &["status"],
        &["status", "-o", "json"],
        &["explain", "--key", "alice"],
        &["render"],
        // QA's token is created, then replaced, in the namespace's one Secret of tokens.
        &["override", "token"],
        &["override", "token"],
        &["promote"],
        &["promote", "--finish"],
        &["start", "--canary", "v3"],
        &["abort"],
        &["delete", "--dry-run"],
    ] {
        c.ok(args).await;
    }
    // A controller that ran once left its finalizer, which `delete` then removes.
    c.edit_rollout(|sc| {
        sc["metadata"]["finalizers"] = json!(["stickycanary.io/cleanup"]);
    });
    c.ok(&["delete"]).await;
    assert!(c.legacy_plugin().is_none() && c.gateway_plugin().is_none());

    // The same service on the HTTPRoute API: the user moved it to a Gateway API gateway.
    c.delete("networking.istio.io/v1", "VirtualService", NS, "shop")
        .unwrap();
    let route = c.seed_http_route();
    c.init_http_route(&[]).await;
    for args in [
        &["start", "--canary", "v2"][..],
        &["set-weight", "10"],
        &["status"],
        &["render"],
    ] {
        c.ok(args).await;
    }
    assert_eq!(c.services(), ["shop", "shop-v1", "shop-v2"]);
    // A weight change, with a port the user added to the service since: the version
    // Services follow it (updated).
    add_port(&c);
    c.ok(&["set-weight", "30"]).await;
    assert_eq!(version_ports(&c, "shop-v2"), 2);
    // v2 promoted and finished: v1's Service is deleted; then v3 comes and is aborted.
    c.ok(&["promote", "--finish"]).await;
    assert_eq!(c.services(), ["shop", "shop-v2"]);
    c.ok(&["start", "--canary", "v3"]).await;
    c.ok(&["abort"]).await;
    assert_eq!(c.services(), ["shop", "shop-v2"]);
    c.ok(&["delete", "--dry-run"]).await;
    c.ok(&["delete"]).await;
    assert_eq!(c.http_route()["spec"], route["spec"], "the route restored");
    assert_eq!(c.services(), ["shop"]);
    assert!(c.managed_plugins_in(GATEWAY_API_NS).is_empty());
    // As the roles are bound: RoleBindings in the rollout's namespace and in the gateway's,
    // and a ClusterRoleBinding for the list across all namespaces.
    // And the question who it is, for the history, which every authenticated user may ask
    // (the built-in ClusterRole system:basic-user).
    let mut cluster_wide = granted("stickyctl-operator-plugins");
    cluster_wide.insert((
        "authentication.k8s.io".into(),
        "selfsubjectreviews".into(),
        "create".into(),
    ));
    let expected = BTreeMap::from([
        (None, cluster_wide),
        (
            Some(GATEWAY_NS.to_owned()),
            granted("stickyctl-operator-proxies"),
        ),
        // The Gateway API gateway's namespace, where its plugin lives.
        (
            Some(GATEWAY_API_NS.to_owned()),
            granted("stickyctl-operator-proxies"),
        ),
        (Some(NS.to_owned()), granted("stickyctl-operator")),
    ]);
    assert_eq!(used_by_namespace(&c), expected);
}
