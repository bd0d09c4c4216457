//! The install guide's example service on the node: `shop` in `prod`, its versions as
//! Deployments of the test service (`sticky-upstream`) whose pods istiod injects, the gateway's
//! `web` Gateway and the user's VirtualService routing `shop.example.com` and the mesh name.

use anyhow::Result;
use serde_json::{json, Value};

use super::Node;

/// Deploys shop on `node`: [`objects`] and two pods of each version; returns once they run.
pub fn install(node: &Node) -> Result<()> {
    for object in objects() {
        node.plane.apply(&object)?;
    }
    let upstream = node.image("sticky-canary/upstream");
    for name in ["v1", "v2"] {
        node.plane.apply(&version(&upstream, name, 2))?;
    }
    for name in ["v1", "v2"] {
        node.wait_rollout(NS, &format!("shop-{name}"))?;
    }
    Ok(())
}

/// The service's namespace, labelled for injection.
pub const NS: &str = "prod";
/// The service's ClusterIP, fixed so that callers can be told it before it exists.
pub const SHOP_IP: &str = "10.96.1.10";
/// The port the test service listens on in its pod.
pub const APP_PORT: u16 = 8080;

/// `web`'s ClusterIP: the service whose pages call shop (the hop).
pub const WEB_IP: &str = "10.96.1.20";

/// `web` beside shop: its Service and its VirtualService for `web.example.com` and the mesh.
/// Its versions ([`web_version`]) serve `/hop` by calling shop.
pub fn web_objects() -> Vec<Value> {
    vec![
        json!({"apiVersion": "v1", "kind": "Service",
               "metadata": {"name": "web", "namespace": NS, "labels": {"app": "web"}},
               "spec": {"clusterIP": WEB_IP, "selector": {"app": "web"},
                        "ports": [{"name": "http", "port": 80, "targetPort": APP_PORT}]}}),
        json!({"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
               "metadata": {"name": "web", "namespace": NS},
               "spec": {"hosts": ["web.example.com", "web.prod.svc.cluster.local"],
                        "gateways": ["istio-system/web", "mesh"],
                        "http": [{"route": [{"destination": {"host": "web.prod.svc.cluster.local"}}]}]}}),
    ]
}

/// The ConfigMap of the filter's stats settings (`stickyctl proxy-stats`, as the chart ships
/// them for the gateway) in shop's namespace, which web's pods name.
pub const PROXY_STATS: &str = "sticky-canary-proxy-stats";

/// Deployment `web-<version>`: like [`version`], its `/hop` calling shop through its sidecar,
/// whose istio-agent merges [`PROXY_STATS`] into its Envoy's bootstrap.
pub fn web_version(image: &str, version: &str) -> Value {
    let labels = json!({"app": "web", "version": version});
    json!({"apiVersion": "apps/v1", "kind": "Deployment",
    "metadata": {"name": format!("web-{version}"), "namespace": NS},
    "spec": {
        "replicas": 1,
        "selector": {"matchLabels": labels},
        "template": {
            "metadata": {"labels": labels,
                         "annotations": {"sidecar.istio.io/bootstrapOverride": PROXY_STATS}},
            "spec": {"containers": [app(image, &format!("web-{version}"), &calls_shop())]},
        },
    }})
}

/// `--call` of shop's ClusterIP, with its mesh name as the host.
fn calls_shop() -> Vec<String> {
    vec![
        "--call".into(),
        format!("{SHOP_IP}:80"),
        "shop.prod.svc.cluster.local".into(),
    ]
}

/// The namespace, the Service, the Gateway and the VirtualService.
pub fn objects() -> Vec<Value> {
    vec![
        json!({"apiVersion": "v1", "kind": "Namespace",
               "metadata": {"name": NS, "labels": {"istio-injection": "enabled"}}}),
        json!({"apiVersion": "v1", "kind": "Service",
               "metadata": {"name": "shop", "namespace": NS, "labels": {"app": "shop"}},
               "spec": {"clusterIP": SHOP_IP, "selector": {"app": "shop"},
                        "ports": [{"name": "http", "port": 80, "targetPort": APP_PORT}]}}),
        json!({"apiVersion": "networking.istio.io/v1", "kind": "Gateway",
               "metadata": {"name": "web", "namespace": "istio-system"},
               "spec": {"selector": {"istio": "ingressgateway"},
                        "servers": [{"port": {"number": 80, "name": "http", "protocol": "HTTP"},
                                     "hosts": ["*/*"]}]}}),
        json!({"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
               "metadata": {"name": "shop", "namespace": NS},
               "spec": {"hosts": ["shop.example.com", "shop.prod.svc.cluster.local"],
                        "gateways": ["istio-system/web", "mesh"],
                        "http": [{"route": [{"destination": {"host": "shop.prod.svc.cluster.local"}}]}]}}),
    ]
}

/// Deployment `shop-<version>` of `image`: `replicas` pods labelled `app: shop`,
/// `version: <version>`, injected as the namespace says unless `sidecar` is false.
pub fn version(image: &str, version: &str, replicas: u32) -> Value {
    let labels = json!({"app": "shop", "version": version});
    json!({"apiVersion": "apps/v1", "kind": "Deployment",
    "metadata": {"name": format!("shop-{version}"), "namespace": NS},
    "spec": {
        "replicas": replicas,
        "selector": {"matchLabels": labels},
        "template": {
            "metadata": {"labels": labels},
            "spec": {"containers": [app(image, &format!("shop-{version}"), &[])]},
        },
    }})
}

/// A caller of shop: a pod of `image` serving `/hop` by calling shop's ClusterIP with the
/// version header it received, with a sidecar or, with `sidecar` false, without one.
pub fn caller(image: &str, name: &str, sidecar: bool) -> Value {
    let labels = json!({"app": name, "sidecar.istio.io/inject": sidecar.to_string()});
    json!({"apiVersion": "v1", "kind": "Pod",
    "metadata": {"name": name, "namespace": NS, "labels": labels},
    "spec": {"containers": [app(image, name, &calls_shop())]}})
}

/// The test service's container, answering as `served` (its `x-served-by`).
fn app(image: &str, served: &str, extra: &[String]) -> Value {
    let mut args = vec![
        "--version".to_owned(),
        served.to_owned(),
        "--address=0.0.0.0".into(),
        format!("--port={APP_PORT}"),
    ];
    args.extend_from_slice(extra);
    json!({
        "name": "app",
        "image": image,
        "args": args,
        "ports": [{"containerPort": APP_PORT, "name": "http"}],
        "readinessProbe": {"httpGet": {"path": "/", "port": APP_PORT}, "periodSeconds": 1},
        "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}},
    })
}
