//! Known-good Istio objects of the shape sticky-canary writes: starting points that tests
//! mutate to show one specific defect is caught (a typo, a wrong type, a missing field).

use serde_json::{json, Value};

/// A VirtualService with a managed header-match route and a default route.
pub fn virtual_service(namespace: &str, name: &str) -> Value {
    json!({
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": name, "namespace": namespace, "labels": {"app": "web"}},
        "spec": {
            "hosts": ["web"],
            "http": [
                {
                    "name": "sticky-canary-v2",
                    "match": [{"headers": {"x-sticky-version": {"exact": "v2"}}}],
                    "route": [{"destination": {"host": "web", "subset": "v2"}}]
                },
                {
                    "name": "sticky-canary-default",
                    "route": [{"destination": {"host": "web", "subset": "v1"}, "weight": 100}],
                    "timeout": "5s"
                }
            ]
        }
    })
}

/// A DestinationRule with one subset per version, by pod label.
pub fn destination_rule(namespace: &str, name: &str) -> Value {
    json!({
        "apiVersion": "networking.istio.io/v1",
        "kind": "DestinationRule",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "host": "web",
            "subsets": [
                {"name": "v1", "labels": {"version": "v1"}},
                {"name": "v2", "labels": {"version": "v2"}}
            ]
        }
    })
}

/// A WasmPlugin loading the filter, with a free-form `pluginConfig`.
pub fn wasm_plugin(namespace: &str, name: &str) -> Value {
    json!({
        "apiVersion": "extensions.istio.io/v1alpha1",
        "kind": "WasmPlugin",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "selector": {"matchLabels": {"app": "web"}},
            "url": "oci://registry.example/sticky-canary-filter:0.1.0",
            "phase": "AUTHN",
            "priority": 10,
            "pluginConfig": {"versions": [{"name": "v1", "weight": 90}, {"name": "v2", "weight": 10}]}
        }
    })
}

/// A kube-rs API for the VirtualServices of `namespace` on `server`, through raw dynamic calls
/// (the fake's own tests drive watches and writes with it).
pub fn virtual_services(
    server: &crate::FakeApiServer,
    namespace: &str,
) -> kube::Api<kube::api::DynamicObject> {
    use kube::api::{ApiResource, GroupVersionKind};
    let client = kube::Client::try_from(server.kube_config()).expect("kube client");
    let gvk = GroupVersionKind::gvk("networking.istio.io", "v1", "VirtualService");
    kube::Api::namespaced_with(
        client,
        namespace,
        &ApiResource::from_gvk_with_plural(&gvk, "virtualservices"),
    )
}
