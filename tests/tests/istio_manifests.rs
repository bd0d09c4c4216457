//! Every YAML document shipped in `istio/` parses, and every Istio or StickyCanary object in it
//! validates against the CRD schemas (unknown fields are errors). Kubernetes built-in kinds
//! (RBAC, Deployment, ...) have no schema here: they must at least name apiVersion, kind and
//! metadata.name. The example WasmPlugin is exactly what stickyctl writes for the example
//! rollout, so the shape it documents cannot drift from the code.

use std::path::Path;

use serde::Deserialize;
use serde_json::Value;
use sticky_canary_tests::crds_path::{istio_manifest_dir, istio_manifest_files};
use sticky_canary_tests::{all_crds, CrdSet};

/// The YAML documents of one file, or why it does not parse.
fn documents(path: &Path) -> Result<Vec<Value>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let mut docs = Vec::new();
    for (index, document) in serde_norway::Deserializer::from_str(&text).enumerate() {
        let value = Value::deserialize(document).map_err(|e| format!("document {index}: {e}"))?;
        if !value.is_null() {
            docs.push(value);
        }
    }
    Ok(docs)
}

fn group_of(api_version: &str) -> &str {
    api_version.split_once('/').map_or("", |(group, _)| group)
}

/// Objects of a group some CRD serves (or any `*.istio.io` group) must validate against a schema.
fn needs_schema(crds: &CrdSet, api_version: &str) -> bool {
    let group = group_of(api_version);
    group.ends_with("istio.io") || crds.kinds().iter().any(|k| k.group == group)
}

fn check_document(crds: Option<&CrdSet>, doc: &Value) -> Result<(), String> {
    let api_version = doc["apiVersion"].as_str().ok_or("no apiVersion")?;
    let kind = doc["kind"].as_str().ok_or("no kind")?;
    doc["metadata"]["name"]
        .as_str()
        .ok_or(format!("{kind}: no metadata.name"))?;
    match crds {
        Some(crds) if needs_schema(crds, api_version) => {
            crds.validate(doc).map_err(|e| format!("{kind}: {e}"))
        }
        _ => Ok(()),
    }
}

#[test]
fn every_manifest_in_istio_parses_and_validates() {
    let files = istio_manifest_files();
    assert!(
        !files.is_empty(),
        "no YAML files in {}: the manifests are part of the product",
        istio_manifest_dir().display()
    );
    let crds = all_crds();
    let mut failures = Vec::new();
    let mut checked = 0;
    for file in &files {
        match documents(file) {
            Ok(docs) => {
                for (index, doc) in docs.iter().enumerate() {
                    checked += 1;
                    if let Err(e) = check_document(crds.as_ref(), doc) {
                        failures.push(format!("{} document {index}: {e}", file.display()));
                    }
                }
            }
            Err(e) => failures.push(format!("{}: does not parse: {e}", file.display())),
        }
    }
    assert!(checked > 0, "the YAML files in istio/ hold no documents");
    assert!(
        failures.is_empty(),
        "invalid manifests:\n{}",
        failures.join("\n")
    );
}

#[test]
fn the_project_ships_the_stickycanary_crd() {
    let crds = sticky_canary_tests::project_crds();
    let shipped: Vec<String> = crds
        .kinds()
        .iter()
        .map(|k| format!("{}.{}", k.plural, k.group))
        .collect();
    assert!(
        crds.kinds()
            .iter()
            .any(|k| k.kind == "StickyCanary" && k.namespaced && !k.versions.is_empty()),
        "istio/ must define a namespaced, served StickyCanary kind; found {shipped:?}"
    );
}

#[test]
fn the_checker_rejects_what_it_must() {
    let Some(crds) = all_crds() else { return };
    let typo: Value = serde_json::json!({"apiVersion": "networking.istio.io/v1", "kind": "VirtualServce", "metadata": {"name": "x"}, "spec": {}});
    assert!(
        check_document(Some(&crds), &typo).is_err(),
        "a misspelled Istio kind must not pass as a built-in kind"
    );
    let builtin: Value = serde_json::json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": "x"}});
    assert!(check_document(Some(&crds), &builtin).is_ok());
    let unnamed: Value =
        serde_json::json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {}});
    assert!(check_document(Some(&crds), &unnamed).is_err());
}

/// The one document of a YAML file of `istio/examples`, or the one of `kind` among them.
fn example(file: &str, kind: &str) -> Value {
    let path = istio_manifest_dir().join("examples").join(file);
    let docs = documents(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    docs.into_iter()
        .find(|d| d["kind"] == kind)
        .unwrap_or_else(|| panic!("{}: no {kind}", path.display()))
}

#[test]
fn the_example_wasmplugin_is_what_stickyctl_writes_for_the_example_rollout() {
    use api::StickyCanary;
    use render::istio::{desired, for_display, Kind, Live};
    let rollout: StickyCanary =
        serde_json::from_value(example("stickycanary.yaml", "StickyCanary")).unwrap();
    let live = Live {
        virtual_service: Some(example("demo-service.yaml", "VirtualService")),
        destination_rule: Some(example("demo-service.yaml", "DestinationRule")),
        ..Live::default()
    };
    let out = desired(
        "shop",
        "shop",
        &rollout.spec,
        Some("5f0c3b8e2d6a4f1e9b7c0a1d3e5f7a9c"),
        &live,
    )
    .unwrap();
    let plugins: Vec<Value> = out
        .objects
        .iter()
        .filter(|w| w.kind == Kind::WasmPlugin)
        .map(|w| for_display(&w.object))
        .collect();
    let shown = example("wasmplugin.yaml", "WasmPlugin");
    assert_eq!(plugins.len(), 1, "one proxy group: the ingress gateway");
    assert!(
        render::same(&plugins[0], &shown),
        "istio/examples/wasmplugin.yaml differs from what stickyctl writes:\n{}",
        serde_norway::to_string(&plugins[0]).unwrap()
    );
}
