//! A rollout's three Istio objects, from its spec and the live objects, in apply order.
//!
//! Order is make-before-break: the DestinationRule first gains the subsets of new versions
//! (keeping those of versions on their way out), then the WasmPlugin and the VirtualService
//! switch traffic, and only then does the DestinationRule lose the subsets nothing routes to.
//! So a route never points at a subset that does not exist.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use serde_json::{json, Value};

use super::{destinationrule, virtualservice, wasmplugin, EditError};
use crate::model::StickyCanarySpec;

/// The kinds of object a rollout writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// `extensions.istio.io/v1alpha1` WasmPlugin, owned by the rollout.
    WasmPlugin,
    /// `networking.istio.io/v1` VirtualService, the user's, edited.
    VirtualService,
    /// `networking.istio.io/v1` DestinationRule, the user's (or created), edited.
    DestinationRule,
}

impl Kind {
    /// Every kind, in display order.
    pub const ALL: [Kind; 3] = [
        Kind::WasmPlugin,
        Kind::VirtualService,
        Kind::DestinationRule,
    ];

    /// The kind's name, as in `kind:`.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::WasmPlugin => wasmplugin::KIND,
            Kind::VirtualService => virtualservice::KIND,
            Kind::DestinationRule => destinationrule::KIND,
        }
    }

    /// The kind's `apiVersion`.
    pub fn api_version(self) -> &'static str {
        match self {
            Kind::WasmPlugin => wasmplugin::API_VERSION,
            Kind::VirtualService => virtualservice::API_VERSION,
            Kind::DestinationRule => destinationrule::API_VERSION,
        }
    }
}

/// The names of a rollout's objects.
pub fn object_name(kind: Kind, rollout: &str, spec: &StickyCanarySpec) -> String {
    match kind {
        Kind::WasmPlugin => wasmplugin::name(rollout),
        Kind::VirtualService => spec
            .routing
            .virtual_service
            .clone()
            .unwrap_or_else(|| rollout.to_owned()),
        Kind::DestinationRule => spec
            .routing
            .destination_rule
            .clone()
            .unwrap_or_else(|| rollout.to_owned()),
    }
}

/// The live objects, as read (`None` when absent).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Live {
    /// The rollout's WasmPlugin.
    pub wasm_plugin: Option<Value>,
    /// The VirtualService carrying the routes.
    pub virtual_service: Option<Value>,
    /// The DestinationRule carrying the subsets.
    pub destination_rule: Option<Value>,
}

impl Live {
    /// The live object of `kind`.
    pub fn get(&self, kind: Kind) -> Option<&Value> {
        match kind {
            Kind::WasmPlugin => self.wasm_plugin.as_ref(),
            Kind::VirtualService => self.virtual_service.as_ref(),
            Kind::DestinationRule => self.destination_rule.as_ref(),
        }
    }
}

/// One object write, in order.
#[derive(Debug, Clone, PartialEq)]
pub struct Write {
    /// What is written.
    pub kind: Kind,
    /// The whole object; metadata comes from the live object when there is one, so the write
    /// carries its resourceVersion.
    pub object: Value,
}

/// The rollout's objects as they should be, and the writes that get there from `live`.
#[derive(Debug, Clone, PartialEq)]
pub struct Desired {
    /// Final WasmPlugin, VirtualService and DestinationRule, in [`Kind::ALL`] order.
    pub objects: Vec<Write>,
    /// The writes to make, in order; objects already as desired are left out.
    pub writes: Vec<Write>,
}

/// Renders the desired objects of rollout `rollout` in `namespace` and plans their writes;
/// `owner` is the rollout's reference when it exists on the cluster (see [`wasmplugin::render`]).
pub fn desired(
    rollout: &str,
    namespace: &str,
    spec: &StickyCanarySpec,
    live: &Live,
    owner: Option<&OwnerReference>,
) -> Result<Desired, EditError> {
    let name = |kind| object_name(kind, rollout, spec);
    let versions: Vec<&str> = spec.versions.iter().map(|v| v.name.as_str()).collect();

    let vs_name = name(Kind::VirtualService);
    let vs_live = live
        .virtual_service
        .as_ref()
        .ok_or_else(|| EditError::Missing {
            kind: virtualservice::KIND,
            namespace: namespace.to_owned(),
            name: vs_name.clone(),
        })?;
    let routes = virtualservice::ManagedRoutes {
        rollout,
        service: &spec.service,
        header: &spec.filter.header,
        versions: versions.clone(),
    };
    let vs_spec =
        virtualservice::edit(&vs_name, vs_live.get("spec").unwrap_or(&json!({})), &routes)?;
    let virtual_service = with_spec(vs_live, vs_spec);

    let dr_name = name(Kind::DestinationRule);
    let dr_live_spec = live
        .destination_rule
        .as_ref()
        .map(|dr| dr.get("spec").unwrap_or(&Value::Null));
    let label = spec.version_label();
    let dr_base = live
        .destination_rule
        .clone()
        .unwrap_or_else(|| new_object(Kind::DestinationRule, &dr_name, namespace));
    let dr_final = with_spec(
        &dr_base,
        destinationrule::edit(&dr_name, dr_live_spec, &spec.service, label, &versions)?,
    );
    let leaving = dr_live_spec
        .map(destinationrule::managed_versions)
        .unwrap_or_default();
    let mut both = versions.clone();
    both.extend(
        leaving
            .iter()
            .map(String::as_str)
            .filter(|v| !versions.contains(v)),
    );
    let dr_first = with_spec(
        &dr_base,
        destinationrule::edit(&dr_name, dr_live_spec, &spec.service, label, &both)?,
    );

    let wasm_plugin = {
        let rendered = wasmplugin::render(rollout, namespace, spec, owner);
        match &live.wasm_plugin {
            Some(current) => with_metadata_of(current, rendered),
            None => rendered,
        }
    };

    let objects = vec![
        Write {
            kind: Kind::WasmPlugin,
            object: wasm_plugin,
        },
        Write {
            kind: Kind::VirtualService,
            object: virtual_service,
        },
        Write {
            kind: Kind::DestinationRule,
            object: dr_final.clone(),
        },
    ];
    let mut writes = Vec::new();
    let mut dr_current = live.destination_rule.clone();
    let adds_subsets = versions.iter().any(|v| !leaving.iter().any(|l| l == v));
    if adds_subsets && dr_current.as_ref() != Some(&dr_first) {
        writes.push(Write {
            kind: Kind::DestinationRule,
            object: dr_first.clone(),
        });
        dr_current = Some(dr_first);
    }
    for write in &objects[..2] {
        if live.get(write.kind) != Some(&write.object) {
            writes.push(write.clone());
        }
    }
    if dr_current.as_ref() != Some(&dr_final) {
        writes.push(Write {
            kind: Kind::DestinationRule,
            object: dr_final,
        });
    }
    Ok(Desired { objects, writes })
}

/// The writes that take a deleted rollout's routes and subsets out of the user's objects,
/// VirtualService first (nothing routes to a subset any more) and DestinationRule second;
/// objects that are absent or already clean are left out, so a repeated teardown writes
/// nothing. The WasmPlugin is not among them: the garbage collector deletes it through its
/// ownerReference once the rollout is gone.
pub fn teardown(rollout: &str, spec: &StickyCanarySpec, live: &Live) -> Vec<Write> {
    let cleaned = |kind: Kind, object: &Option<Value>, remove: &dyn Fn(&Value) -> Value| {
        let object = object.as_ref()?;
        let spec = object.get("spec")?;
        let clean = with_spec(object, remove(spec));
        (clean != *object).then_some(Write {
            kind,
            object: clean,
        })
    };
    [
        cleaned(Kind::VirtualService, &live.virtual_service, &|vs| {
            virtualservice::remove(vs, rollout, &spec.service)
        }),
        cleaned(
            Kind::DestinationRule,
            &live.destination_rule,
            &destinationrule::remove,
        ),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// The object without what the API server manages, as a GitOps repository or a diff shows it.
pub fn for_display(object: &Value) -> Value {
    let mut object = object.clone();
    if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        for field in [
            "resourceVersion",
            "uid",
            "generation",
            "creationTimestamp",
            "managedFields",
        ] {
            meta.remove(field);
        }
    }
    if let Some(object) = object.as_object_mut() {
        object.remove("status");
    }
    object
}

fn new_object(kind: Kind, name: &str, namespace: &str) -> Value {
    json!({
        "apiVersion": kind.api_version(),
        "kind": kind.as_str(),
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": { wasmplugin::MANAGED_BY_LABEL: wasmplugin::MANAGED_BY },
        },
    })
}

fn with_spec(object: &Value, spec: Value) -> Value {
    let mut object = object.clone();
    object["spec"] = spec;
    object
}

/// `rendered` carrying the live object's metadata (resourceVersion, uid, user labels), with
/// the rendered labels and owner (when rendered with one) on top.
fn with_metadata_of(live: &Value, mut rendered: Value) -> Value {
    let mut metadata = live.get("metadata").cloned().unwrap_or_else(|| json!({}));
    if let Some(labels) = rendered
        .pointer("/metadata/labels")
        .and_then(Value::as_object)
    {
        for (key, value) in labels {
            metadata["labels"][key] = value.clone();
        }
    }
    if let Some(owners) = rendered.pointer("/metadata/ownerReferences") {
        metadata["ownerReferences"] = owners.clone();
    }
    rendered["metadata"] = metadata;
    if let Some(status) = live.get("status") {
        rendered["status"] = status.clone();
    }
    rendered
}

#[cfg(test)]
mod tests {
    use super::*;
    use sticky_canary_filter::VersionWeight;

    fn spec(versions: &[(&str, f64)]) -> StickyCanarySpec {
        let mut spec = StickyCanarySpec::new("shop", versions[0].0);
        spec.versions = versions
            .iter()
            .map(|&(name, weight)| VersionWeight::new(name, weight))
            .collect();
        spec
    }

    fn vs() -> Value {
        json!({"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
               "metadata": {"name": "shop", "namespace": "prod", "resourceVersion": "7"},
               "spec": {"hosts": ["shop"], "http": [{"name": "shop", "route": [{"destination": {"host": "shop"}}]}]}})
    }

    fn apply(live: &mut Live, writes: &[Write]) {
        for w in writes {
            let slot = match w.kind {
                Kind::WasmPlugin => &mut live.wasm_plugin,
                Kind::VirtualService => &mut live.virtual_service,
                Kind::DestinationRule => &mut live.destination_rule,
            };
            *slot = Some(w.object.clone());
        }
    }

    fn kinds(writes: &[Write]) -> Vec<Kind> {
        writes.iter().map(|w| w.kind).collect()
    }

    #[test]
    fn first_apply_writes_everything_then_nothing() {
        let mut live = Live {
            virtual_service: Some(vs()),
            ..Live::default()
        };
        let s = spec(&[("v1", 100.0)]);
        let d = desired("shop", "prod", &s, &live, None).unwrap();
        assert_eq!(
            kinds(&d.writes),
            [
                Kind::DestinationRule,
                Kind::WasmPlugin,
                Kind::VirtualService
            ]
        );
        assert_eq!(d.writes[2].object["metadata"]["resourceVersion"], "7");
        apply(&mut live, &d.writes);
        assert!(desired("shop", "prod", &s, &live, None)
            .unwrap()
            .writes
            .is_empty());
    }

    #[test]
    fn removing_a_version_is_make_before_break() {
        let mut live = Live {
            virtual_service: Some(vs()),
            ..Live::default()
        };
        let d = desired(
            "shop",
            "prod",
            &spec(&[("v1", 90.0), ("v2", 10.0)]),
            &live,
            None,
        )
        .unwrap();
        apply(&mut live, &d.writes);
        // Promote finished: v1 goes away, v2 is stable. The routes switch before the subset goes.
        let d = desired("shop", "prod", &spec(&[("v2", 100.0)]), &live, None).unwrap();
        assert_eq!(
            kinds(&d.writes),
            [
                Kind::WasmPlugin,
                Kind::VirtualService,
                Kind::DestinationRule
            ]
        );
        // Adding v3: its subset exists before anything routes to it.
        apply(&mut live, &d.writes);
        let d = desired(
            "shop",
            "prod",
            &spec(&[("v2", 100.0), ("v3", 0.0)]),
            &live,
            None,
        )
        .unwrap();
        assert_eq!(
            kinds(&d.writes),
            [
                Kind::DestinationRule,
                Kind::WasmPlugin,
                Kind::VirtualService
            ]
        );
        // Swapping a version for another in one go: union first, then prune.
        apply(&mut live, &d.writes);
        let d = desired(
            "shop",
            "prod",
            &spec(&[("v2", 100.0), ("v4", 0.0)]),
            &live,
            None,
        )
        .unwrap();
        assert_eq!(
            kinds(&d.writes),
            [
                Kind::DestinationRule,
                Kind::WasmPlugin,
                Kind::VirtualService,
                Kind::DestinationRule
            ]
        );
        let subsets = |w: &Write| destinationrule::managed_versions(&w.object["spec"]);
        assert_eq!(subsets(&d.writes[0]), ["v2", "v4", "v3"]);
        assert_eq!(subsets(&d.writes[3]), ["v2", "v4"]);
    }

    #[test]
    fn missing_virtual_service_is_refused() {
        let err = desired(
            "shop",
            "prod",
            &spec(&[("v1", 100.0)]),
            &Live::default(),
            None,
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("VirtualService prod/shop does not exist"),
            "{err}"
        );
    }

    #[test]
    fn the_plugin_gains_its_owner_and_keeps_it() {
        let mut live = Live {
            virtual_service: Some(vs()),
            ..Live::default()
        };
        let s = spec(&[("v1", 100.0)]);
        // Created before the rollout existed (or by an older stickyctl): no owner yet.
        let first = desired("shop", "prod", &s, &live, None).unwrap();
        apply(&mut live, &first.writes);
        assert!(live.wasm_plugin.as_ref().unwrap()["metadata"]
            .get("ownerReferences")
            .is_none());
        let owner = OwnerReference {
            api_version: "stickycanary.io/v1alpha1".into(),
            kind: "StickyCanary".into(),
            name: "shop".into(),
            uid: "u-1".into(),
            controller: Some(true),
            block_owner_deletion: None,
        };
        let d = desired("shop", "prod", &s, &live, Some(&owner)).unwrap();
        assert_eq!(kinds(&d.writes), [Kind::WasmPlugin]);
        assert_eq!(
            d.writes[0].object["metadata"]["ownerReferences"][0]["uid"],
            "u-1"
        );
        apply(&mut live, &d.writes);
        // Rendering without an owner (a dry run of a rollout) does not take it away.
        assert!(desired("shop", "prod", &s, &live, None)
            .unwrap()
            .writes
            .is_empty());
    }

    #[test]
    fn teardown_leaves_only_the_users_objects() {
        let mut live = Live {
            virtual_service: Some(vs()),
            destination_rule: Some(json!({"apiVersion": "networking.istio.io/v1",
                "kind": "DestinationRule", "metadata": {"name": "shop", "namespace": "prod"},
                "spec": {"host": "shop", "subsets": [{"name": "legacy", "labels": {"track": "old"}}]}})),
            ..Live::default()
        };
        let before = live.clone();
        let s = spec(&[("v1", 90.0), ("v2", 10.0)]);
        let first = desired("shop", "prod", &s, &live, None).unwrap();
        apply(&mut live, &first.writes);
        let writes = teardown("shop", &s, &live);
        assert_eq!(
            kinds(&writes),
            [Kind::VirtualService, Kind::DestinationRule]
        );
        apply(&mut live, &writes);
        assert_eq!(live.virtual_service, before.virtual_service);
        assert_eq!(live.destination_rule, before.destination_rule);
        assert!(teardown("shop", &s, &live).is_empty(), "idempotent");
        assert!(
            teardown("shop", &s, &Live::default()).is_empty(),
            "nothing there"
        );
    }

    #[test]
    fn display_drops_server_fields() {
        let shown = for_display(&vs());
        assert!(shown["metadata"].get("resourceVersion").is_none());
        assert_eq!(shown["metadata"]["name"], "shop");
    }
}
