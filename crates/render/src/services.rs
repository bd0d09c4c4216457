//! The per-version Services of the HTTPRoute API (see `docs/gateway-api.md`).
//!
//! A Gateway API backendRef names a Service and a port, never a subset (Istio's
//! `buildDestination` sets none), so each routed version needs a Service of its own that
//! selects only that version's pods: the parent Service's selector plus the version label,
//! its ports unchanged (their names and `appProtocol` are how Istio tells HTTP), `ClusterIP`.
//! stickyctl writes them labelled as its own and annotated with the rollout, and writes over
//! nothing else: a Service of that name that is not stickyctl's rollout's is refused, naming
//! it. Services the user names per version are theirs, used as they are, never written. Make
//! before break is the caller's order (a Service is applied before a rule routes to it and
//! deleted after none does); [`stale`] says which ones may go.

use std::collections::BTreeSet;

use serde_json::{json, Map, Value};
use sticky_canary_filter::names::{is_dns_label, quoted};

use super::wasmplugin::{MANAGED_BY, MANAGED_BY_LABEL};
use super::EditError;

/// Label with the version a managed Service selects, so a rollout can list its Services.
pub const VERSION_LABEL: &str = "stickycanary.io/version";
/// Annotation naming the rollout (`<namespace>/<name>`) a managed Service belongs to; an
/// annotation because a rollout's name may be longer than a label value.
pub const ROLLOUT_ANNOTATION: &str = "stickycanary.io/rollout";
/// Longest Service name: a DNS-1035 label.
pub const MAX_SERVICE_NAME: usize = 63;

/// One version's Service, as the rollout wants it.
#[derive(Debug, Clone, PartialEq)]
pub struct VersionService<'a> {
    /// `<namespace>/<name>` of the rollout.
    pub rollout: &'a str,
    /// The version.
    pub version: &'a str,
    /// The Service's name ([`api::names::version_service_name`] unless the user named one).
    pub name: &'a str,
    /// Pod label whose value is the version name.
    pub version_label: &'a str,
}

/// Whether `name` can name a Service: a DNS-1035 label (lower-case letters, digits and '-',
/// starting with a letter, ending with a letter or digit, at most 63). For a default name
/// `<service>-<version>`, the message says how to get out.
pub fn check_name(name: &str, version: &str) -> Result<(), EditError> {
    let ok = is_dns_label(name)
        && name.len() <= MAX_SERVICE_NAME
        && name.starts_with(|c: char| c.is_ascii_lowercase());
    if ok {
        return Ok(());
    }
    Err(EditError::Malformed {
        object: format!("Service {name}"),
        why: format!(
            "the Service of version {} cannot have this name: a Service name is at most {MAX_SERVICE_NAME} lower-case letters, digits and '-', starting with a letter; name the version's Service in spec.routing.versionServices",
            quoted(version)
        ),
    })
}

/// The parent Service's labels that bind it to an ambient waypoint (`istio.io/use-waypoint`,
/// and the waypoint's namespace when it is another), copied onto its version Services.
pub const WAYPOINT_LABELS: [&str; 2] = ["istio.io/use-waypoint", "istio.io/use-waypoint-namespace"];

/// The Service of `version` made from the parent Service `parent` (a whole object as the API
/// server returns it). Refused: a parent that selects no pods by label (no selector, or
/// `ExternalName`: its endpoints are not chosen by pod labels, so no per-version Service can
/// be derived), and one whose selector names a version already.
pub fn render(parent: &Value, version: &VersionService) -> Result<Value, EditError> {
    check_name(version.name, version.version)?;
    let parent_name = parent
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("?");
    let refuse = |why: String| EditError::Malformed {
        object: format!("Service {parent_name}"),
        why,
    };
    let spec = &parent["spec"];
    if spec["type"] == "ExternalName" {
        return Err(refuse(
            "is of type ExternalName: it has no pods to split by version; name the versions' Services in spec.routing.versionServices".into(),
        ));
    }
    let mut selector = match spec.get("selector") {
        Some(Value::Object(selector)) if !selector.is_empty() => selector.clone(),
        _ => {
            return Err(refuse(
                "has no selector: its endpoints are not chosen by pod labels, so stickyctl cannot derive a Service per version; name the versions' Services in spec.routing.versionServices".into(),
            ))
        }
    };
    if let Some(value) = selector.get(version.version_label) {
        return Err(refuse(format!(
            "selects {}: {value} already, one version only: select every version's pods (the rollout splits them)",
            version.version_label
        )));
    }
    selector.insert(version.version_label.to_owned(), json!(version.version));
    let ports: Vec<Value> = spec
        .get("ports")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|port| {
            let kept: Map<String, Value> = port
                .as_object()
                .into_iter()
                .flatten()
                .filter(|(k, _)| {
                    matches!(
                        k.as_str(),
                        "name" | "port" | "protocol" | "targetPort" | "appProtocol"
                    )
                })
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            Value::Object(kept)
        })
        .collect();
    if ports.is_empty() {
        return Err(refuse("has no ports".into()));
    }
    let namespace = parent.pointer("/metadata/namespace").cloned();
    let mut labels = json!({ MANAGED_BY_LABEL: MANAGED_BY, VERSION_LABEL: version.version });
    // Bound to the parent's waypoint too: a waypoint's route to a version Service then uses
    // its `inbound-vip` cluster, as for the parent, and the waypoint applies to that traffic
    // what it applies to the parent's (`listener_waypoint.go:1262-1297` of the pinned Istio);
    // unbound, the same route takes an `outbound` cluster around the waypoint's handling.
    for label in WAYPOINT_LABELS {
        if let Some(value) = parent
            .pointer("/metadata/labels")
            .and_then(|l| l.get(label))
        {
            labels[label] = value.clone();
        }
    }
    let mut metadata = json!({
        "name": version.name,
        "labels": labels,
        "annotations": { ROLLOUT_ANNOTATION: version.rollout },
    });
    if let Some(namespace) = namespace {
        metadata["namespace"] = namespace;
    }
    let mut out_spec = json!({ "type": "ClusterIP", "selector": selector, "ports": ports });
    // Dual-stack settings follow the parent, so both answer on the same families.
    for field in ["ipFamilyPolicy", "ipFamilies"] {
        if let Some(value) = spec.get(field) {
            out_spec[field] = value.clone();
        }
    }
    Ok(json!({ "apiVersion": "v1", "kind": "Service", "metadata": metadata, "spec": out_spec }))
}

/// Whether `service` (a live object) is the managed Service of rollout `rollout`.
pub fn is_owned_by(service: &Value, rollout: &str) -> bool {
    service["metadata"]["labels"][MANAGED_BY_LABEL] == MANAGED_BY
        && service["metadata"]["annotations"][ROLLOUT_ANNOTATION] == rollout
}

/// What to write for `desired` given the live Service of that name, if any: the desired
/// object onto the live one (its `clusterIP`, `resourceVersion` and whatever else the API
/// server keeps stay), or a refusal when the live one is not this rollout's.
pub fn with_live(desired: &Value, live: Option<&Value>, rollout: &str) -> Result<Value, EditError> {
    let Some(live) = live else {
        return Ok(desired.clone());
    };
    if !is_owned_by(live, rollout) {
        let name = desired["metadata"]["name"].as_str().unwrap_or("?");
        let owner = live["metadata"]["annotations"][ROLLOUT_ANNOTATION]
            .as_str()
            .map_or_else(
                || "it is not stickyctl's".to_owned(),
                |other| format!("it belongs to rollout {other}"),
            );
        return Err(EditError::Malformed {
            object: format!("Service {name}"),
            why: format!(
                "exists and {owner}: the rollout will not write over it; name another Service for this version in spec.routing.versionServices"
            ),
        });
    }
    let mut out = live.clone();
    if !out["spec"].is_object() {
        out["spec"] = json!({});
    }
    for field in ["labels", "annotations"] {
        if let Some(Value::Object(desired)) = desired["metadata"].get(field) {
            let mut merged = out["metadata"][field]
                .as_object()
                .cloned()
                .unwrap_or_default();
            if field == "labels" {
                // The waypoint binding follows the parent's, removed with it.
                merged.retain(|k, _| !WAYPOINT_LABELS.contains(&k.as_str()));
            }
            merged.extend(desired.clone());
            out["metadata"][field] = Value::Object(merged);
        }
    }
    for field in ["selector", "ports", "type"] {
        out["spec"][field] = desired["spec"][field].clone();
    }
    Ok(out)
}

/// Names of rollout `rollout`'s managed Services in `live` that no version in `keep` uses any
/// more: the ones to delete once no route sends to them.
pub fn stale<'a>(live: &'a [Value], rollout: &str, keep: &BTreeSet<&str>) -> Vec<&'a str> {
    live.iter()
        .filter(|service| is_owned_by(service, rollout))
        .filter_map(|service| service.pointer("/metadata/name").and_then(Value::as_str))
        .filter(|name| !keep.contains(name))
        .collect()
}

/// The parts of a Service host `<name>.<namespace>.svc.<domain>`: the form the HTTPRoute
/// backend needs in `spec.service`, since backendRefs name a Service and a namespace.
pub fn parse_host(host: &str) -> Option<(&str, &str, &str)> {
    let (name, rest) = host.split_once('.')?;
    let (namespace, rest) = rest.split_once('.')?;
    let domain = rest.strip_prefix("svc.")?;
    let ok = |part: &str| is_dns_label(part);
    (ok(name) && ok(namespace) && !domain.is_empty()).then_some((name, namespace, domain))
}

/// The hosts the rollout's filter entry lists as its `services`: the parent's and every
/// version Service's, in the parent's namespace and domain. The filter is entered before it
/// stamps, so an unstamped request's cluster is the one of the managed fallback, stable's
/// Service (`outbound|80||shop-v1...`, `inbound-vip|80|http|shop-v1...` at a waypoint), and a
/// trusted hop's may be any version's: every one of them must map to the rollout.
pub fn filter_services(
    parent_host: &str,
    version_services: &[&str],
) -> Result<Vec<String>, EditError> {
    let (_, namespace, domain) = parse_host(parent_host).ok_or_else(|| EditError::Malformed {
        object: format!("service {parent_host}"),
        why: "the HTTPRoute backend needs the service's full host, <name>.<namespace>.svc.<domain> (e.g. shop.prod.svc.cluster.local): its routes name a Service and a namespace".into(),
    })?;
    let mut hosts = vec![parent_host.to_owned()];
    hosts.extend(
        version_services
            .iter()
            .map(|name| format!("{name}.{namespace}.svc.{domain}")),
    );
    Ok(hosts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use api::names::version_service_name;

    fn parent() -> Value {
        json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "shop", "namespace": "prod", "uid": "u1",
                         "labels": {"istio.io/use-waypoint": "waypoint"}},
            "spec": {
                "type": "ClusterIP", "clusterIP": "10.0.0.7",
                "selector": {"app": "shop"},
                "ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP",
                           "appProtocol": "http", "nodePort": 30080}],
                "ipFamilyPolicy": "SingleStack", "ipFamilies": ["IPv4"],
                "sessionAffinity": "None",
            },
        })
    }

    fn version<'a>(name: &'a str, version: &'a str) -> VersionService<'a> {
        VersionService {
            rollout: "prod/shop",
            version,
            name,
            version_label: "version",
        }
    }

    #[test]
    fn a_version_service_selects_the_parents_pods_of_that_version_on_the_same_ports() {
        let name = version_service_name("shop", "v2");
        let service = render(&parent(), &version(&name, "v2")).unwrap();
        assert_eq!(
            service,
            json!({
                "apiVersion": "v1", "kind": "Service",
                "metadata": {
                    "name": "shop-v2", "namespace": "prod",
                    "labels": {MANAGED_BY_LABEL: MANAGED_BY, VERSION_LABEL: "v2",
                               "istio.io/use-waypoint": "waypoint"},
                    "annotations": {ROLLOUT_ANNOTATION: "prod/shop"},
                },
                "spec": {
                    "type": "ClusterIP",
                    "selector": {"app": "shop", "version": "v2"},
                    "ports": [{"name": "http", "port": 80, "targetPort": 8080,
                               "protocol": "TCP", "appProtocol": "http"}],
                    "ipFamilyPolicy": "SingleStack", "ipFamilies": ["IPv4"],
                },
            })
        );
    }

    #[test]
    fn names_and_parents_that_cannot_give_a_version_service_are_refused() {
        let mut no_selector = parent();
        no_selector["spec"]
            .as_object_mut()
            .unwrap()
            .remove("selector");
        let mut external = parent();
        external["spec"]["type"] = json!("ExternalName");
        let mut pinned = parent();
        pinned["spec"]["selector"]["version"] = json!("v1");
        let mut portless = parent();
        portless["spec"]["ports"] = json!([]);
        let long = "s".repeat(60);
        let long_name = version_service_name(&long, "v2.1");
        let cases: [(Value, &str, &str, &str); 8] = [
            (parent(), "shop-v2_1", "v2_1", "cannot have this name"),
            (parent(), "shop-V2", "V2", "cannot have this name"),
            (parent(), "shop-v2.1", "v2.1", "cannot have this name"),
            (parent(), &long_name, "v2.1", "cannot have this name"),
            (no_selector, "shop-v2", "v2", "has no selector"),
            (external, "shop-v2", "v2", "ExternalName"),
            (pinned, "shop-v2", "v2", "selects version: \"v1\" already"),
            (portless, "shop-v2", "v2", "has no ports"),
        ];
        for (parent, name, v, why) in cases {
            let err = render(&parent, &version(name, v)).unwrap_err().to_string();
            assert!(err.contains(why), "{name}: {err}");
        }
        assert!(check_name("9shop", "v1").is_err());
        assert!(check_name(&"a".repeat(63), "v1").is_ok());
        assert!(check_name(&"a".repeat(64), "v1").is_err());
    }

    #[test]
    fn only_the_rollouts_own_service_is_written_over_keeping_what_the_server_set() {
        let desired = render(&parent(), &version("shop-v2", "v2")).unwrap();
        assert_eq!(with_live(&desired, None, "prod/shop").unwrap(), desired);

        let mut live = desired.clone();
        live["metadata"]["resourceVersion"] = json!("7");
        live["metadata"]["labels"]["team"] = json!("a");
        live["spec"]["clusterIP"] = json!("10.0.0.9");
        live["spec"]["selector"] = json!({"app": "old"});
        let out = with_live(&desired, Some(&live), "prod/shop").unwrap();
        assert_eq!(out["metadata"]["resourceVersion"], "7");
        assert_eq!(out["metadata"]["labels"]["team"], "a");
        assert_eq!(out["spec"]["clusterIP"], "10.0.0.9");
        assert_eq!(out["spec"]["selector"], desired["spec"]["selector"]);

        let users = json!({"metadata": {"name": "shop-v2"}, "spec": {}});
        let err = with_live(&desired, Some(&users), "prod/shop").unwrap_err();
        assert!(err.to_string().contains("it is not stickyctl's"), "{err}");
        let others = render(
            &parent(),
            &VersionService {
                rollout: "prod/other",
                ..version("shop-v2", "v2")
            },
        )
        .unwrap();
        let err = with_live(&desired, Some(&others), "prod/shop").unwrap_err();
        assert!(
            err.to_string().contains("belongs to rollout prod/other"),
            "{err}"
        );
    }

    #[test]
    fn a_version_service_is_bound_to_the_parents_waypoint_and_follows_its_binding() {
        let mut elsewhere = parent();
        elsewhere["metadata"]["labels"]["istio.io/use-waypoint-namespace"] = json!("mesh");
        elsewhere["metadata"]["labels"]["team"] = json!("a");
        let service = render(&elsewhere, &version("shop-v2", "v2")).unwrap();
        assert_eq!(
            service["metadata"]["labels"],
            json!({MANAGED_BY_LABEL: MANAGED_BY, VERSION_LABEL: "v2",
                   "istio.io/use-waypoint": "waypoint",
                   "istio.io/use-waypoint-namespace": "mesh"}),
            "the binding, not the parent's other labels"
        );

        // The parent unbound: so is its version Service, live labels of others kept.
        let mut unbound = parent();
        unbound["metadata"]["labels"] = json!({});
        let desired = render(&unbound, &version("shop-v2", "v2")).unwrap();
        assert_eq!(
            desired["metadata"]["labels"],
            json!({MANAGED_BY_LABEL: MANAGED_BY, VERSION_LABEL: "v2"})
        );
        let mut live = service.clone();
        live["metadata"]["labels"]["team"] = json!("b");
        let out = with_live(&desired, Some(&live), "prod/shop").unwrap();
        assert_eq!(
            out["metadata"]["labels"],
            json!({MANAGED_BY_LABEL: MANAGED_BY, VERSION_LABEL: "v2", "team": "b"})
        );
    }

    #[test]
    fn stale_services_are_the_rollouts_own_that_no_version_uses() {
        let v1 = render(&parent(), &version("shop-v1", "v1")).unwrap();
        let v2 = render(&parent(), &version("shop-v2", "v2")).unwrap();
        let v3 = render(&parent(), &version("shop-v3", "v3")).unwrap();
        let other = render(
            &parent(),
            &VersionService {
                rollout: "prod/other",
                ..version("other-v1", "v1")
            },
        )
        .unwrap();
        let users = json!({"metadata": {"name": "shop-v4"}});
        let live = [v1, v2, v3, other, users];
        assert_eq!(
            stale(&live, "prod/shop", &BTreeSet::from(["shop-v2"])),
            ["shop-v1", "shop-v3"]
        );
        assert!(stale(
            &live,
            "prod/shop",
            &BTreeSet::from(["shop-v1", "shop-v2", "shop-v3"])
        )
        .is_empty());
    }

    #[test]
    fn the_filter_lists_the_parent_and_every_version_service_host() {
        assert_eq!(
            filter_services("shop.prod.svc.cluster.local", &["shop-v1", "shop-canary"]).unwrap(),
            [
                "shop.prod.svc.cluster.local",
                "shop-v1.prod.svc.cluster.local",
                "shop-canary.prod.svc.cluster.local"
            ]
        );
        assert_eq!(
            parse_host("shop.prod.svc.corp.example"),
            Some(("shop", "prod", "corp.example"))
        );
        for host in [
            "shop",
            "shop.prod",
            "shop.prod.svc",
            "shop.prod.svc.",
            "shop.prod.cluster.local",
            "Shop.prod.svc.cluster.local",
        ] {
            assert_eq!(parse_host(host), None, "{host}");
        }
        let err = filter_services("shop", &["shop-v1"]).unwrap_err();
        assert!(
            err.to_string().contains("needs the service's full host"),
            "{err}"
        );
    }
}
