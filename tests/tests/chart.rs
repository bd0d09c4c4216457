//! The Helm chart (`charts/sticky-canary`), through the real Helm: it lints; every object it
//! renders validates, the Istio and StickyCanary ones against their CRD schemas (the same
//! checker as the fake API server's, unknown fields are errors), the Kubernetes ones against
//! the Kubernetes types (k8s-openapi: a field the type does not have is reported by its path);
//! missing or malformed values are refused by name. The install test (`e2e/tests/install.rs`)
//! also has the real API server check every rendered object with strict field validation, and
//! installs it. Its RBAC is checked against the code's requests in `controller_rbac.rs`.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Service, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, RoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use sticky_canary_e2e::chart::{chart_dir, helm, render};
use sticky_canary_tests::all_crds;

const DIGEST: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

/// Values that use every template: pinned images and one declared rollout.
fn full_values() -> Vec<String> {
    vec![
        "images.registry=registry.example.com/platform".into(),
        format!("images.controller.digest={DIGEST}"),
        format!("images.filter.digest={DIGEST}"),
        "rollouts[0].name=shop,rollouts[0].namespace=shop,rollouts[0].service=shop.shop.svc.cluster.local,rollouts[0].stable=v1".into(),
        "rolloutDefaults.filter.keySources[0].header=x-user-id".into(),
        "operators.namespaces={shop,web}".into(),
        "operators.subjects[0].kind=Group,operators.subjects[0].name=release-team,operators.subjects[0].apiGroup=rbac.authorization.k8s.io".into(),
        "controller.dashboard.enabled=true,controller.dashboard.tokenSecret=dashboard-token".into(),
    ]
}

fn rendered(values: &[String]) -> Vec<Value> {
    let values: Vec<&str> = values.iter().map(String::as_str).collect();
    render(&values).unwrap_or_else(|e| panic!("{e:?}"))
}

/// The paths of `original` that `roundtrip` lacks: fields the type does not know.
fn dropped(original: &Value, roundtrip: &Value, path: &str, out: &mut Vec<String>) {
    match (original, roundtrip) {
        (Value::Object(a), Value::Object(b)) => {
            for (key, value) in a {
                let at = format!("{path}.{key}");
                match b.get(key) {
                    Some(other) => dropped(value, other, &at, out),
                    None => out.push(at),
                }
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            for (index, (x, y)) in a.iter().zip(b).enumerate() {
                dropped(x, y, &format!("{path}[{index}]"), out);
            }
        }
        _ => {}
    }
}

/// `object` as the Kubernetes type `T`: an error naming each field `T` does not have.
fn check_typed<T: DeserializeOwned + Serialize>(object: &Value) -> Result<(), String> {
    let typed: T = serde_json::from_value(object.clone()).map_err(|e| e.to_string())?;
    let back = serde_json::to_value(&typed).map_err(|e| e.to_string())?;
    let mut unknown = Vec::new();
    dropped(object, &back, "", &mut unknown);
    if unknown.is_empty() {
        Ok(())
    } else {
        Err(format!("unknown fields {unknown:?}"))
    }
}

fn check_builtin(object: &Value) -> Result<(), String> {
    match (object["apiVersion"].as_str(), object["kind"].as_str()) {
        (Some("apps/v1"), Some("Deployment")) => check_typed::<Deployment>(object),
        (Some("v1"), Some("ServiceAccount")) => check_typed::<ServiceAccount>(object),
        (Some("v1"), Some("ConfigMap")) => check_typed::<ConfigMap>(object),
        (Some("v1"), Some("Service")) => check_typed::<Service>(object),
        (Some("rbac.authorization.k8s.io/v1"), Some("ClusterRole")) => {
            check_typed::<ClusterRole>(object)
        }
        (Some("rbac.authorization.k8s.io/v1"), Some("ClusterRoleBinding")) => {
            check_typed::<ClusterRoleBinding>(object)
        }
        (Some("rbac.authorization.k8s.io/v1"), Some("RoleBinding")) => {
            check_typed::<RoleBinding>(object)
        }
        (Some("apiextensions.k8s.io/v1"), Some("CustomResourceDefinition")) => {
            check_typed::<CustomResourceDefinition>(object)
        }
        (version, kind) => Err(format!(
            "a kind this test does not know: {version:?} {kind:?}"
        )),
    }
}

#[test]
fn helm_lint_passes_strictly() {
    let chart = chart_dir();
    let mut args = vec!["lint", "--strict", chart.to_str().unwrap()];
    let values = full_values();
    for value in &values {
        args.extend(["--set", value]);
    }
    let output = helm(&args).unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "helm lint: {stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("1 chart(s) linted, 0 chart(s) failed"),
        "{stdout}"
    );
}

#[test]
fn every_rendered_object_validates_against_its_schema_or_type() {
    let objects = rendered(&full_values());
    let crds = all_crds();
    let mut failures = Vec::new();
    for object in &objects {
        let group = object["apiVersion"].as_str().unwrap_or_default();
        let name = format!("{} {}", object["kind"], object["metadata"]["name"]);
        let result = if group.contains("istio.io") || group.starts_with("stickycanary.io/") {
            match &crds {
                Some(crds) => crds.validate(object).map_err(|e| e.to_string()),
                None => Ok(()),
            }
        } else {
            check_builtin(object)
        };
        if let Err(e) = result {
            failures.push(format!("{name}: {e}"));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
    let kinds: Vec<&str> = objects.iter().filter_map(|o| o["kind"].as_str()).collect();
    for kind in [
        "CustomResourceDefinition",
        "Deployment",
        "StickyCanary",
        "ClusterRole",
    ] {
        assert!(kinds.contains(&kind), "no {kind} rendered: {kinds:?}");
    }
}

#[test]
fn the_checker_names_a_field_the_kubernetes_type_lacks() {
    let mut objects = rendered(&full_values());
    let deployment = objects
        .iter_mut()
        .find(|o| o["kind"] == "Deployment")
        .unwrap();
    deployment["spec"]["template"]["spec"]["containers"][0]["securityContex"] =
        serde_json::json!({"runAsNonRoot": true});
    let err = check_builtin(deployment).unwrap_err();
    assert!(
        err.contains(".spec.template.spec.containers[0].securityContex"),
        "{err}"
    );
}

#[test]
fn the_images_are_pinned_by_digest_and_the_declared_rollout_uses_the_filter_image() {
    let objects = rendered(&full_values());
    let deployment = objects.iter().find(|o| o["kind"] == "Deployment").unwrap();
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(
        pod["containers"][0]["image"],
        format!("registry.example.com/platform/sticky-canary/stickyctl@{DIGEST}")
    );
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(
        pod["containers"][0]["securityContext"]["readOnlyRootFilesystem"],
        true
    );
    let rollout = objects
        .iter()
        .find(|o| o["kind"] == "StickyCanary")
        .unwrap();
    assert_eq!(
        rollout["spec"]["plugin"]["url"],
        format!("oci://registry.example.com/platform/sticky-canary/filter@{DIGEST}")
    );
    assert_eq!(
        rollout["spec"]["plugin"]["sha256"],
        DIGEST.trim_start_matches("sha256:")
    );
    assert_eq!(
        rollout["spec"]["plugin"]["gateways"][0],
        serde_json::json!({"namespace": "istio-system", "selector": {"istio": "ingressgateway"}})
    );
    assert_eq!(
        rollout["spec"]["filter"]["keySources"],
        serde_json::json!([{"header": "x-user-id"}])
    );
    let dashboard = objects
        .iter()
        .find(|o| o["kind"] == "ConfigMap" && o["metadata"]["name"] == "sticky-canary-dashboard")
        .unwrap();
    assert_eq!(dashboard["metadata"]["labels"]["grafana_dashboard"], "1");
    let json: Value =
        serde_json::from_str(dashboard["data"]["sticky-canary.json"].as_str().unwrap()).unwrap();
    assert_eq!(json["uid"], "sticky-canary");
}

#[test]
fn a_declared_rollout_runs_at_a_gateway_api_gateway_by_target_refs() {
    let mut values = full_values();
    values.extend([
        "gateway.namespace=istio-ingress".to_owned(),
        "gateway.targetRefs[0].group=gateway.networking.k8s.io".to_owned(),
        "gateway.targetRefs[0].kind=Gateway".to_owned(),
        "gateway.targetRefs[0].name=public".to_owned(),
    ]);
    let objects = rendered(&values);
    let rollout = objects
        .iter()
        .find(|o| o["kind"] == "StickyCanary")
        .unwrap();
    assert_eq!(
        rollout["spec"]["plugin"]["gateways"],
        serde_json::json!([{"namespace": "istio-ingress", "targetRefs": [
            {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "public"}]}])
    );
}

#[test]
fn the_operators_are_bound_where_their_requests_go() {
    let objects = rendered(&full_values());
    let mut bindings: Vec<(String, String, String)> = objects
        .iter()
        .filter(|o| {
            (o["kind"] == "RoleBinding" || o["kind"] == "ClusterRoleBinding")
                && o["roleRef"]["name"] != "stickyctl-controller"
        })
        .map(|o| {
            assert_eq!(o["subjects"][0]["name"], "release-team", "{o}");
            (
                o["kind"].as_str().unwrap().to_owned(),
                o["metadata"]["namespace"].as_str().unwrap_or("").to_owned(),
                o["roleRef"]["name"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    bindings.sort();
    let binding = |kind: &str, ns: &str, role: &str| (kind.into(), ns.into(), role.into());
    assert_eq!(
        bindings,
        [
            binding("ClusterRoleBinding", "", "stickyctl-operator-plugins"),
            binding("RoleBinding", "istio-system", "stickyctl-operator-proxies"),
            binding("RoleBinding", "shop", "stickyctl-operator"),
            binding("RoleBinding", "web", "stickyctl-operator"),
        ]
    );
    let none = rendered(&["images.registry=r.example".into()]);
    assert!(
        !none.iter().any(|o| o["kind"] == "RoleBinding"),
        "no subjects, no bindings"
    );
}

#[test]
fn missing_or_malformed_values_are_refused_by_name() {
    let err = render(&[]).unwrap_err().to_string();
    assert!(err.contains("images.registry is required"), "{err}");
    let err = render(&[
        "images.registry=r.example",
        "images.controller.digest=latest",
    ])
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("images.controller.digest must be sha256: and 64 hex digits"),
        "{err}"
    );
    let err = render(&["images.registry=r.example", "rollouts[0].name=shop"])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("rollouts[shop].namespace is required"),
        "{err}"
    );
    let err = render(&[
        "images.registry=r.example",
        "controller.dashboard.enabled=true",
    ])
    .unwrap_err()
    .to_string();
    assert!(err.contains("controller.dashboard.tokenSecret"), "{err}");
}

#[test]
fn the_dashboard_is_served_by_the_controller_with_its_token_from_a_secret() {
    let objects = rendered(&full_values());
    let deployment = objects.iter().find(|o| o["kind"] == "Deployment").unwrap();
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(
        container["args"],
        serde_json::json!(["controller", "--dashboard", "0.0.0.0:8080"])
    );
    assert_eq!(container["ports"][0]["containerPort"], 8080);
    let token = container["env"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "STICKY_DASHBOARD_TOKEN")
        .unwrap();
    assert_eq!(
        token["valueFrom"]["secretKeyRef"]["name"],
        "dashboard-token"
    );
    let service = objects
        .iter()
        .find(|o| o["kind"] == "Service" && o["metadata"]["name"] == "stickyctl-dashboard")
        .unwrap();
    assert_eq!(service["spec"]["ports"][0]["targetPort"], "dashboard");
    // Who acted, from an authenticating proxy's header: only when named.
    let mut values = full_values();
    values.push("controller.dashboard.identityHeader=x-forwarded-user".into());
    let named = rendered(&values);
    let deployment = named.iter().find(|o| o["kind"] == "Deployment").unwrap();
    assert_eq!(
        deployment["spec"]["template"]["spec"]["containers"][0]["args"],
        serde_json::json!([
            "controller",
            "--dashboard",
            "0.0.0.0:8080",
            "--dashboard-identity-header",
            "x-forwarded-user"
        ])
    );
    // Off by default: no port, no Service.
    let plain = rendered(&["images.registry=r.example".to_owned()]);
    assert!(plain.iter().all(|o| o["kind"] != "Service"));
    let deployment = plain.iter().find(|o| o["kind"] == "Deployment").unwrap();
    assert_eq!(
        deployment["spec"]["template"]["spec"]["containers"][0]["args"],
        serde_json::json!(["controller"])
    );
}
