//! Managed subsets in the service's DestinationRule: one per routed version, by pod label.
//!
//! Managed subsets are named `sticky-canary-<version>`; the user's own subsets and every other
//! field are kept as they are. A DestinationRule that does not exist yet is created with the
//! managed subsets only (labelled as stickyctl's), and deleted with the rollout once nothing
//! but its host is left in it ([`leftover`]).

use serde_json::{json, Value};

use api::names::{subset_name, SUBSET_PREFIX};

use super::wasmplugin::{MANAGED_BY, MANAGED_BY_LABEL};
use super::EditError;

/// API version of Istio's DestinationRule.
pub const API_VERSION: &str = "networking.istio.io/v1";
/// Kind of Istio's DestinationRule.
pub const KIND: &str = "DestinationRule";
/// Versions that currently have a managed subset in a DestinationRule `spec`.
pub fn managed_versions(spec: &Value) -> Vec<String> {
    subsets(spec)
        .filter_map(|s| s.get("name").and_then(Value::as_str))
        .filter_map(|n| n.strip_prefix(SUBSET_PREFIX))
        .map(str::to_owned)
        .collect()
}

/// The DestinationRule `spec` with exactly one managed subset per version in `versions`;
/// `current` is the live spec, if the object exists; `name` is for error messages.
pub fn edit(
    name: &str,
    current: Option<&Value>,
    service: &str,
    label: &str,
    versions: &[&str],
) -> Result<Value, EditError> {
    let mut spec = match current {
        None => json!({ "host": service }),
        Some(spec) if spec.is_object() => spec.clone(),
        Some(_) => {
            return Err(EditError::Malformed {
                object: format!("DestinationRule {name}"),
                why: "spec is not an object".to_owned(),
            })
        }
    };
    if let Some(host) = spec.get("host").and_then(Value::as_str) {
        if host != service {
            return Err(EditError::Malformed {
                object: format!("DestinationRule {name}"),
                why: format!("its host is {host:?}, not the rollout's service {service:?}"),
            });
        }
    }
    let mut out: Vec<Value> = subsets(&spec).filter(|s| !is_managed(s)).cloned().collect();
    out.extend(
        versions
            .iter()
            .map(|version| json!({ "name": subset_name(version), "labels": { label: version } })),
    );
    spec["subsets"] = Value::Array(out);
    Ok(spec)
}

/// The DestinationRule `spec` without the managed subsets, for when the rollout is deleted: the
/// user's subsets and settings stay. A spec without a subset list is returned unchanged.
pub fn remove(spec: &Value) -> Value {
    let mut spec = spec.clone();
    if let Some(subsets) = spec.get_mut("subsets").and_then(Value::as_array_mut) {
        subsets.retain(|s| !is_managed(s));
    }
    spec
}

/// Whether `object`, with `cleaned` as its spec once the managed subsets are out, is a
/// DestinationRule stickyctl created (labelled [`MANAGED_BY`]) that holds nothing of the
/// user's: no subset, no setting but its host. Such a rule is deleted with the rollout;
/// one the user wrote, or added to, stays.
pub fn leftover(object: &Value, cleaned: &Value) -> bool {
    let created = object["metadata"]["labels"][MANAGED_BY_LABEL] == MANAGED_BY;
    let empty = cleaned.as_object().is_some_and(|spec| {
        spec.iter().all(|(field, value)| match field.as_str() {
            "host" => true,
            "subsets" => value.as_array().is_some_and(Vec::is_empty),
            _ => false,
        })
    });
    created && empty
}

fn is_managed(subset: &Value) -> bool {
    subset
        .get("name")
        .and_then(Value::as_str)
        .is_some_and(|n| n.starts_with(SUBSET_PREFIX))
}

fn subsets(spec: &Value) -> impl Iterator<Item = &Value> {
    spec.get("subsets")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subsets_table() {
        let user = json!({"name": "legacy", "labels": {"track": "old"}});
        let existing = json!({"host": "shop", "trafficPolicy": {"tls": {"mode": "ISTIO_MUTUAL"}},
            "subsets": [user.clone(), {"name": "sticky-canary-v0", "labels": {"version": "v0"}}]});
        let cases: Vec<(Option<&Value>, Vec<&str>, Value)> = vec![
            (
                None,
                vec!["v1"],
                json!({"host": "shop", "subsets": [
                {"name": "sticky-canary-v1", "labels": {"version": "v1"}}]}),
            ),
            (
                Some(&existing),
                vec!["v1", "v2"],
                json!({"host": "shop",
                "trafficPolicy": {"tls": {"mode": "ISTIO_MUTUAL"}}, "subsets": [user.clone(),
                {"name": "sticky-canary-v1", "labels": {"version": "v1"}},
                {"name": "sticky-canary-v2", "labels": {"version": "v2"}}]}),
            ),
        ];
        for (current, versions, expected) in cases {
            let out = edit("shop", current, "shop", "version", &versions).unwrap();
            assert_eq!(out, expected);
            assert_eq!(
                edit("shop", Some(&out), "shop", "version", &versions).unwrap(),
                out
            );
        }
        assert_eq!(managed_versions(&existing), ["v0"]);
    }

    #[test]
    fn remove_keeps_the_users_subsets() {
        let user = json!({"name": "legacy", "labels": {"track": "old"}});
        let managed = |v: &str| json!({"name": subset_name(v), "labels": {"version": v}});
        let cases = [
            (
                json!({"host": "shop", "subsets": [managed("v1"), user.clone(), managed("v2")]}),
                json!({"host": "shop", "subsets": [user.clone()]}),
            ),
            (
                json!({"host": "shop", "subsets": [managed("v1")]}),
                json!({"host": "shop", "subsets": []}),
            ),
            (
                json!({"host": "shop", "subsets": [user.clone()]}),
                json!({"host": "shop", "subsets": [user.clone()]}),
            ),
            (json!({"host": "shop"}), json!({"host": "shop"})),
        ];
        for (spec, expected) in cases {
            assert_eq!(remove(&spec), expected, "{spec}");
        }
    }

    /// Only a rule stickyctl created, with nothing of the user's in it, is left over.
    #[test]
    fn a_created_rule_without_subsets_is_left_over() {
        let created = json!({"metadata": {"labels": {MANAGED_BY_LABEL: MANAGED_BY}}});
        let users = json!({"metadata": {"labels": {"team": "shop"}}});
        let user_subset = json!({"name": "legacy", "labels": {"track": "old"}});
        let cases = [
            (&created, json!({"host": "shop", "subsets": []}), true),
            (&created, json!({"host": "shop"}), true),
            (
                &created,
                json!({"host": "shop", "subsets": [user_subset]}),
                false,
            ),
            (
                &created,
                json!({"host": "shop", "subsets": [], "trafficPolicy": {"tls": {"mode": "ISTIO_MUTUAL"}}}),
                false,
            ),
            (&users, json!({"host": "shop", "subsets": []}), false),
        ];
        for (object, cleaned, expected) in cases {
            assert_eq!(leftover(object, &cleaned), expected, "{object} {cleaned}");
        }
    }

    #[test]
    fn label_key_is_configurable() {
        let out = edit("shop", None, "shop", "app.kubernetes.io/version", &["v1"]).unwrap();
        assert_eq!(
            out["subsets"][0]["labels"],
            json!({"app.kubernetes.io/version": "v1"})
        );
    }

    #[test]
    fn another_host_is_refused() {
        let other = json!({"host": "cart"});
        let err = edit("shop", Some(&other), "shop", "version", &["v1"]).unwrap_err();
        assert!(err.to_string().contains("\"cart\""), "{err}");
    }
}
