//! The shared plugin of a proxy group as an Istio `TrafficExtension` (Istio 1.30+), the API
//! that supersedes `WasmPlugin`. **The start of issue 20: not yet wired to a command** (see
//! `docs/gateway-api.md`).
//!
//! Its spec is a WasmPlugin's with the module's fields moved under `wasm` (istio/api
//! `extensions/v1alpha1/traffic_extension.proto`); istiod itself turns every WasmPlugin into
//! one (`pilot/pkg/config/kube/extensions/translate.go`). So the shared plugin keeps being
//! edited in its WasmPlugin form ([`wasmplugin::with_rollout`](super::wasmplugin::with_rollout)
//! and friends) and is converted on the way out ([`from_wasm_plugin`]) and back
//! ([`to_wasm_plugin`]): one set of rules for both kinds. A field neither form knows is
//! refused rather than dropped, since dropping it would change what the proxies run. One
//! proxy group gets one of the two kinds, never both: both would run the filter twice.

use serde_json::{json, Map, Value};

use super::wasmplugin;
use super::EditError;

/// API version of Istio's TrafficExtension.
pub const API_VERSION: &str = "extensions.istio.io/v1alpha1";
/// Kind of Istio's TrafficExtension.
pub const KIND: &str = "TrafficExtension";

/// WasmPlugin spec fields that a TrafficExtension keeps at the top of its spec.
const TOP: [&str; 5] = ["selector", "targetRefs", "phase", "priority", "match"];
/// WasmPlugin spec fields that a TrafficExtension holds under `wasm`.
const WASM: [&str; 10] = [
    "url",
    "sha256",
    "imagePullPolicy",
    "imagePullSecret",
    "verificationKey",
    "pluginConfig",
    "pluginName",
    "failStrategy",
    "vmConfig",
    "type",
];
/// Metadata a converted object keeps; the rest (uid, resourceVersion, ...) is the API
/// server's, for an object of the other kind.
const METADATA: [&str; 4] = ["name", "namespace", "labels", "annotations"];

/// The TrafficExtension saying what WasmPlugin `plugin` says.
pub fn from_wasm_plugin(plugin: &Value) -> Result<Value, EditError> {
    let object = describe(plugin, wasmplugin::KIND);
    let unknown = |field: &str| {
        EditError::Malformed {
        object: object.clone(),
        why: format!("spec.{field} has no TrafficExtension equivalent known to stickyctl: remove it, or keep the WasmPlugin"),
    }
    };
    let mut top = Map::new();
    let mut wasm = Map::new();
    let spec = spec_of(plugin, &object)?;
    for (field, value) in spec {
        match field.as_str() {
            // The deprecated single form: below.
            "targetRef" => {}
            "phase" if value == "UNSPECIFIED_PHASE" => {
                top.insert(field.clone(), json!("UNSPECIFIED"));
            }
            f if TOP.contains(&f) => {
                top.insert(field.clone(), value.clone());
            }
            f if WASM.contains(&f) => {
                wasm.insert(field.clone(), value.clone());
            }
            other => return Err(unknown(other)),
        }
    }
    // istiod reads the deprecated `targetRef` only when `targetRefs` is empty.
    let no_refs = top
        .get("targetRefs")
        .and_then(Value::as_array)
        .is_none_or(Vec::is_empty);
    if let (Some(single), true) = (spec.get("targetRef"), no_refs) {
        top.insert("targetRefs".to_owned(), json!([single]));
    }
    top.insert("wasm".to_owned(), Value::Object(wasm));
    Ok(convert(plugin, KIND, top))
}

/// The WasmPlugin form of TrafficExtension `extension`, to edit with the WasmPlugin rules. A
/// Lua extension, or one with fields the WasmPlugin form lacks, is refused: it is not one of
/// stickyctl's.
pub fn to_wasm_plugin(extension: &Value) -> Result<Value, EditError> {
    let object = describe(extension, KIND);
    let refuse = |why: String| EditError::Malformed {
        object: object.clone(),
        why,
    };
    let mut spec = Map::new();
    for (field, value) in spec_of(extension, &object)? {
        match field.as_str() {
            "wasm" => {
                let wasm = value
                    .as_object()
                    .ok_or_else(|| refuse("spec.wasm is not an object".into()))?;
                for (field, value) in wasm {
                    if !WASM.contains(&field.as_str()) {
                        return Err(refuse(format!(
                            "spec.wasm.{field} has no WasmPlugin equivalent known to stickyctl"
                        )));
                    }
                    spec.insert(field.clone(), value.clone());
                }
            }
            "phase" if value == "UNSPECIFIED" => {
                spec.insert(field.clone(), json!("UNSPECIFIED_PHASE"));
            }
            f if TOP.contains(&f) => {
                spec.insert(field.clone(), value.clone());
            }
            "lua" => {
                return Err(refuse(
                    "is a Lua extension, not stickyctl's filter: give the rollout's proxy group another plugin".into(),
                ))
            }
            other => {
                return Err(refuse(format!(
                    "spec.{other} has no WasmPlugin equivalent known to stickyctl"
                )))
            }
        }
    }
    Ok(convert(extension, wasmplugin::KIND, spec))
}

/// `object` as a `kind` with spec `spec`, keeping its name, namespace, labels and annotations.
fn convert(object: &Value, kind: &str, spec: Map<String, Value>) -> Value {
    let metadata: Map<String, Value> = object
        .get("metadata")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter(|(k, _)| METADATA.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    json!({ "apiVersion": API_VERSION, "kind": kind, "metadata": metadata, "spec": spec })
}

fn spec_of<'a>(object: &'a Value, described: &str) -> Result<&'a Map<String, Value>, EditError> {
    object
        .get("spec")
        .and_then(Value::as_object)
        .ok_or_else(|| EditError::Malformed {
            object: described.to_owned(),
            why: "spec is not an object".into(),
        })
}

fn describe(object: &Value, kind: &str) -> String {
    let text = |field: &str| {
        object
            .pointer(&format!("/metadata/{field}"))
            .and_then(Value::as_str)
            .unwrap_or("?")
            .to_owned()
    };
    format!("{kind} {}/{}", text("namespace"), text("name"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plugin(spec: Value) -> Value {
        json!({
            "apiVersion": API_VERSION, "kind": "WasmPlugin",
            "metadata": {"name": "sticky-canary-gateway", "namespace": "prod",
                         "labels": {wasmplugin::MANAGED_BY_LABEL: wasmplugin::MANAGED_BY},
                         "uid": "u1", "resourceVersion": "7"},
            "spec": spec,
        })
    }

    #[test]
    fn the_module_moves_under_wasm_and_the_attachment_stays_on_top() {
        let wp = plugin(json!({
            "url": "oci://registry/filter@sha256:ab", "sha256": "ab", "phase": "AUTHZ",
            "failStrategy": "FAIL_OPEN",
            "targetRefs": [{"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "public"}],
            "pluginConfig": {"rollouts": [{"name": "prod/shop"}]},
        }));
        let te = from_wasm_plugin(&wp).unwrap();
        assert_eq!(
            te,
            json!({
                "apiVersion": API_VERSION, "kind": KIND,
                "metadata": {"name": "sticky-canary-gateway", "namespace": "prod",
                             "labels": {wasmplugin::MANAGED_BY_LABEL: wasmplugin::MANAGED_BY}},
                "spec": {
                    "phase": "AUTHZ",
                    "targetRefs": [{"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "public"}],
                    "wasm": {"url": "oci://registry/filter@sha256:ab", "sha256": "ab",
                             "failStrategy": "FAIL_OPEN",
                             "pluginConfig": {"rollouts": [{"name": "prod/shop"}]}},
                },
            })
        );
        let mut back = wp.clone();
        for field in ["uid", "resourceVersion"] {
            back["metadata"].as_object_mut().unwrap().remove(field);
        }
        assert_eq!(to_wasm_plugin(&te).unwrap(), back, "round trip");
    }

    #[test]
    fn a_sidecar_plugin_keeps_its_selector_and_client_side_and_the_old_forms_convert() {
        let wp = plugin(json!({
            "url": "file:///f.wasm", "selector": {"matchLabels": {"app": "web"}},
            "match": [{"mode": "CLIENT"}], "phase": "UNSPECIFIED_PHASE",
        }));
        let te = from_wasm_plugin(&wp).unwrap();
        assert_eq!(
            te["spec"]["selector"],
            json!({"matchLabels": {"app": "web"}})
        );
        assert_eq!(te["spec"]["match"], json!([{"mode": "CLIENT"}]));
        assert_eq!(te["spec"]["phase"], "UNSPECIFIED");
        assert_eq!(
            to_wasm_plugin(&te).unwrap()["spec"]["phase"],
            "UNSPECIFIED_PHASE"
        );
        let single = plugin(json!({"url": "u", "targetRef": {"kind": "Service", "name": "shop"}}));
        assert_eq!(
            from_wasm_plugin(&single).unwrap()["spec"]["targetRefs"],
            json!([{"kind": "Service", "name": "shop"}])
        );
        let both = plugin(
            json!({"url": "u", "targetRef": {"kind": "Service", "name": "old"},
                                 "targetRefs": [{"kind": "Service", "name": "shop"}]}),
        );
        assert_eq!(
            from_wasm_plugin(&both).unwrap()["spec"]["targetRefs"],
            json!([{"kind": "Service", "name": "shop"}])
        );
    }

    #[test]
    fn what_the_other_form_cannot_say_is_refused_naming_the_field() {
        let cases = [
            (from_wasm_plugin(&plugin(json!({"url": "u", "newField": 1}))), "WasmPlugin prod/sticky-canary-gateway: spec.newField has no TrafficExtension equivalent"),
            (from_wasm_plugin(&plugin(json!("x"))), "spec is not an object"),
            (to_wasm_plugin(&plugin(json!({"lua": {"inlineCode": "x"}}))), "is a Lua extension"),
            (to_wasm_plugin(&plugin(json!({"wasm": {"url": "u", "later": 1}}))), "spec.wasm.later has no WasmPlugin equivalent"),
            (to_wasm_plugin(&plugin(json!({"wasm": "u"}))), "spec.wasm is not an object"),
            (to_wasm_plugin(&plugin(json!({"other": 1}))), "spec.other has no WasmPlugin equivalent"),
        ];
        for (result, why) in cases {
            let err = result.unwrap_err().to_string();
            assert!(err.contains(why), "{why}\n{err}");
        }
    }
}
