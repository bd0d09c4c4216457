//! `HTTPROUTE`: the Gateway API twin of `ISTIO_VSVC`, a plain weight split of the user's
//! HTTPRoute (`gateway.networking.k8s.io/v1`, no stickiness): the canary's share of every rule
//! that has a backendRef to the canary's Service, by the one rule of [`split`](super::split).
//!
//! What is the HTTPRoute's own (gateway-api v1.6.0, `apis/v1`): the routes are
//! `spec.rules[]` and their targets `backendRefs[]`. A backendRef names a Service, never a
//! subset, so each version is a Service of its own (`shop`, `shop-canary`; or `shop-v1`,
//! `shop-v2` named in the entry's `stable` and `canary`), each with its port, which the plan
//! leaves as it is. A backendRef goes to the entry's Service when it is a core Service (`group`
//! `""` and `kind` `Service`, the defaults) of that name in the entry's namespace (its
//! `namespace`, when set, is that one; one of another namespace is another Service). An
//! absent weight is 1 (`shared_types.go`: `+kubebuilder:default=1`, "If unspecified, weight
//! defaults to 1"); weights are proportions, "not a percentage".

use serde_json::Value;

use super::naming::Names;
use super::split::Shape;
use super::ObjectKind;

/// The HTTPRoute's rules and backendRefs.
pub static SHAPE: Shape = Shape {
    kind: ObjectKind::HttpRoute,
    field: "httpRoute",
    name,
    routes: "rules",
    targets: "backendRefs",
    route_word: "rule",
    any_route_word: "rule",
    target_word: "backendRef",
    service_word: "Service",
    absent_weight: 1,
    label,
    goes_to,
};

/// The HTTPRoute of an entry.
fn name(names: &Names) -> &str {
    &names.http_route
}

/// Whether a backendRef is a core Service: `group` `""` and `kind` `Service`, the defaults.
fn is_service(backend: &Value) -> bool {
    backend["group"].as_str().unwrap_or_default().is_empty()
        && backend["kind"].as_str().unwrap_or("Service") == "Service"
}

/// The Service's name; `namespace/name` in another namespace than the route's; a backend
/// that is not a Service is named by its kind too (`ServiceImport shop`).
fn label(backend: &Value, namespace: &str) -> String {
    let name = backend["name"].as_str().unwrap_or_default();
    let name = match backend["namespace"].as_str() {
        Some(other) if other != namespace => format!("{other}/{name}"),
        _ => name.to_owned(),
    };
    if is_service(backend) {
        name
    } else {
        let kind = backend["kind"].as_str().unwrap_or("Service");
        format!("{kind} {name}")
    }
}

/// Whether the backendRef is the core Service `name` of `namespace`.
fn goes_to(backend: &Value, name: &str, namespace: &str) -> bool {
    is_service(backend)
        && backend["name"].as_str() == Some(name)
        && backend["namespace"].as_str().unwrap_or(namespace) == namespace
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::split::{edit, routes, standing};
    use crate::FieldChange;
    use serde_json::json;

    fn names() -> Names {
        Names {
            namespace: "prod".into(),
            rollout: "shop".into(),
            virtual_service: "shop".into(),
            http_route: "shop".into(),
            stable: "shop-v1".into(),
            canary: "shop-v2".into(),
        }
    }

    fn route(backends: Value) -> Value {
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
               "metadata": {"name": "shop", "namespace": "prod", "resourceVersion": "7"},
               "spec": {"parentRefs": [{"name": "public", "namespace": "gateways"}],
                        "rules": [{"name": "main",
                                   "matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
                                   "backendRefs": backends}]}})
    }

    #[test]
    fn backend_refs_are_told_by_service_name_kind_and_namespace() {
        let cases: &[(Value, bool, &str)] = &[
            (json!({"name": "shop-v2", "port": 80}), true, "shop-v2"),
            (
                json!({"group": "", "kind": "Service", "name": "shop-v2", "namespace": "prod", "port": 80}),
                true,
                "shop-v2",
            ),
            // Another namespace's Service of the same name is another Service.
            (
                json!({"name": "shop-v2", "namespace": "staging", "port": 80}),
                false,
                "staging/shop-v2",
            ),
            // Not a Service.
            (
                json!({"group": "multicluster.x-k8s.io", "kind": "ServiceImport", "name": "shop-v2", "port": 80}),
                false,
                "ServiceImport shop-v2",
            ),
            (
                json!({"group": "networking.istio.io", "kind": "Hostname", "name": "shop-v2"}),
                false,
                "Hostname shop-v2",
            ),
            (json!({"name": "shop-v2x", "port": 80}), false, "shop-v2x"),
            (json!({"port": 80}), false, ""),
        ];
        for (backend, goes, labelled) in cases {
            assert_eq!(goes_to(backend, "shop-v2", "prod"), *goes, "{backend}");
            assert_eq!(label(backend, "prod"), *labelled, "{backend}");
        }
    }

    #[test]
    fn the_weighted_backend_refs_are_set_and_their_ports_and_filters_kept() {
        let filter = json!([{"type": "RequestHeaderModifier",
                             "requestHeaderModifier": {"set": [{"name": "x-v", "value": "2"}]}}]);
        let start = route(json!([
            {"name": "shop-v1", "port": 8080, "weight": 100},
            {"name": "shop-v2", "port": 8081, "weight": 0, "filters": filter}]));
        let write = edit(&SHAPE, &names(), Some(&start), 10)
            .expect("editable")
            .expect("a write");
        assert_eq!(write.object.label(), "HTTPRoute prod/shop");
        assert_eq!(
            write.changes,
            [
                FieldChange::new("rules[main].backendRefs[shop-v1].weight", "100", "90"),
                FieldChange::new("rules[main].backendRefs[shop-v2].weight", "0", "10"),
            ]
        );
        let mut expected = start.clone();
        expected["spec"]["rules"][0]["backendRefs"][0]["weight"] = json!(90);
        expected["spec"]["rules"][0]["backendRefs"][1]["weight"] = json!(10);
        expected["metadata"]["annotations"] = json!({crate::split::SHARES: "{\"main\":[100]}"});
        // Only the weights and the record: ports, filters, matches, parents and the read's
        // resourceVersion are as they were.
        assert_eq!(write.desired, expected);
        assert_eq!(edit(&SHAPE, &names(), Some(&write.desired), 10), Ok(None));
    }

    #[test]
    fn an_absent_weight_is_the_gateway_apis_default_of_1_and_shares_are_proportions() {
        // Both at the default weight 1: the canary has half the requests.
        let start =
            route(json!([{"name": "shop-v1", "port": 80}, {"name": "shop-v2", "port": 80}]));
        assert_eq!(
            standing(&SHAPE, &names(), Some(&start)),
            Ok((Some(50.0), "rule main: shop-v1 1, shop-v2 1".to_owned()))
        );
        let write = edit(&SHAPE, &names(), Some(&start), 50)
            .expect("editable")
            .expect("the weights written out");
        assert_eq!(
            write.changes,
            [
                FieldChange::new("rules[main].backendRefs[shop-v1].weight", "-", "50"),
                FieldChange::new("rules[main].backendRefs[shop-v2].weight", "-", "50"),
            ]
        );
        // Weights that are not percents: 9 and 1 are 10%, and the plan writes percents.
        let tenth = route(
            json!([{"name": "shop-v1", "port": 80, "weight": 9}, {"name": "shop-v2", "port": 80, "weight": 1}]),
        );
        let got = routes(&SHAPE, &names(), Some(&tenth)).expect("a rule");
        assert_eq!(got[0].canary_share(), 10.0);
        let write = edit(&SHAPE, &names(), Some(&tenth), 10).expect("editable");
        let desired = write.expect("a write").desired;
        assert_eq!(desired["spec"]["rules"][0]["backendRefs"][0]["weight"], 90);
        assert_eq!(desired["spec"]["rules"][0]["backendRefs"][1]["weight"], 10);
        // Every weight 0: the rule answers errors, the canary has none of it.
        let zero = route(
            json!([{"name": "shop-v1", "port": 80, "weight": 0}, {"name": "shop-v2", "port": 80, "weight": 0}]),
        );
        assert_eq!(
            standing(&SHAPE, &names(), Some(&zero)).map(|s| s.0),
            Ok(Some(0.0))
        );
    }

    #[test]
    fn a_canary_of_another_namespace_is_not_the_entrys() {
        let start = route(json!([
            {"name": "shop-v1", "port": 80, "weight": 100},
            {"name": "shop-v2", "namespace": "staging", "port": 80, "weight": 0}]));
        let refusal = edit(&SHAPE, &names(), Some(&start), 10).expect_err("no canary here");
        assert_eq!(
            refusal.to_string(),
            "canary: no rule of HTTPRoute prod/shop has a backendRef to the canary's Service shop-v2"
        );
    }
}
