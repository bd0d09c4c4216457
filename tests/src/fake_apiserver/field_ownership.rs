//! Server-side apply, approximated: which field manager owns which fields of an object, so an
//! apply removes the fields its manager applied before and now omits, and reports a conflict when
//! it would change a field another manager set (unless `force=true`).
//!
//! Approximations (documented in the crate docs): ownership is tracked per *leaf path* (JSON
//! pointer to a scalar, a list, or an empty object); every list is atomic (owned and replaced
//! whole), as for CRD lists without `x-kubernetes-list-type: map`; the applied configuration is
//! merged with JSON merge-patch rules; `metadata.managedFields` is not rendered.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

/// Fields owned by each manager of one object.
#[derive(Debug, Clone, Default)]
pub struct FieldOwners(BTreeMap<String, BTreeSet<String>>);

/// Fields the server maintains or that identify the object: nobody owns them.
fn is_system_path(path: &str) -> bool {
    matches!(
        path,
        "/apiVersion"
            | "/kind"
            | "/metadata/name"
            | "/metadata/namespace"
            | "/metadata/resourceVersion"
            | "/metadata/uid"
            | "/metadata/generation"
            | "/metadata/creationTimestamp"
            | "/metadata/deletionTimestamp"
    ) || path.starts_with("/metadata/managedFields")
}

fn escape(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

/// Leaf paths of `value` as JSON pointers: objects are walked, everything else is a leaf.
pub fn leaf_paths(value: &Value) -> BTreeSet<String> {
    fn walk(value: &Value, prefix: String, out: &mut BTreeSet<String>) {
        match value {
            Value::Object(map) if !map.is_empty() => {
                for (key, child) in map {
                    walk(child, format!("{prefix}/{}", escape(key)), out);
                }
            }
            _ => {
                out.insert(prefix);
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(value, String::new(), &mut out);
    out.retain(|p| !p.is_empty() && !is_system_path(p));
    out
}

/// Leaf paths whose value differs between `old` and `new` (added, removed or changed).
pub fn changed_paths(old: &Value, new: &Value) -> BTreeSet<String> {
    leaf_paths(old)
        .union(&leaf_paths(new))
        .filter(|p| old.pointer(p) != new.pointer(p))
        .cloned()
        .collect()
}

/// True when one path is the other or contains it.
fn overlaps(a: &str, b: &str) -> bool {
    let nested = |outer: &str, inner: &str| {
        inner
            .strip_prefix(outer)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    };
    nested(a, b) || nested(b, a)
}

/// Removes the value at a JSON pointer, if present.
fn remove_path(value: &mut Value, path: &str) {
    let Some((parent, key)) = path.rsplit_once('/') else {
        return;
    };
    let key = key.replace("~1", "/").replace("~0", "~");
    if let Some(Value::Object(map)) = value.pointer_mut(parent) {
        map.remove(&key);
    }
}

/// `/spec/hosts` as `.spec.hosts`, the way conflicts are reported.
pub fn dotted(path: &str) -> String {
    path.replace('/', ".")
}

impl FieldOwners {
    /// Applies `config` for `manager` on top of `current` (None: the object does not exist).
    /// Returns the merged object, or the `(manager, field)` conflicts when not forced.
    pub fn apply(
        &mut self,
        current: Option<&Value>,
        config: &Value,
        manager: &str,
        force: bool,
    ) -> Result<Value, Vec<(String, String)>> {
        let mut result = current
            .cloned()
            .unwrap_or_else(|| Value::Object(Default::default()));
        let applied = leaf_paths(config);
        let mut conflicts = Vec::new();
        for (other, fields) in self.0.iter_mut().filter(|(m, _)| m.as_str() != manager) {
            let contested: Vec<String> = fields
                .iter()
                .filter(|f| {
                    applied.iter().any(|a| overlaps(f, a)) && result.pointer(f) != config.pointer(f)
                })
                .cloned()
                .collect();
            if force {
                fields.retain(|f| !contested.contains(f));
            } else {
                conflicts.extend(contested.into_iter().map(|f| (other.clone(), dotted(&f))));
            }
        }
        if !conflicts.is_empty() {
            return Err(conflicts);
        }
        let previously = self.0.remove(manager).unwrap_or_default();
        for dropped in previously.difference(&applied) {
            let owned_by_other = self.0.values().any(|fields| fields.contains(dropped));
            if !owned_by_other {
                remove_path(&mut result, dropped);
            }
        }
        json_patch::merge(&mut result, config);
        self.0.insert(manager.to_owned(), applied);
        Ok(result)
    }

    /// Records a non-apply write (PUT, PATCH): `manager` takes the fields it changed, as the
    /// real server does, so a later apply by someone else conflicts on them.
    pub fn record_update(&mut self, old: &Value, new: &Value, manager: &str) {
        let changed = changed_paths(old, new);
        if changed.is_empty() {
            return;
        }
        for fields in self.0.values_mut() {
            fields.retain(|f| !changed.iter().any(|c| overlaps(f, c)));
        }
        let mine = self.0.entry(manager.to_owned()).or_default();
        mine.extend(changed.into_iter().filter(|c| new.pointer(c).is_some()));
        self.0.retain(|_, fields| !fields.is_empty());
    }

    /// The managers and the fields they own, for assertions in tests.
    pub fn managers(&self) -> &BTreeMap<String, BTreeSet<String>> {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn apply_removes_fields_dropped_by_the_same_manager() {
        let mut owners = FieldOwners::default();
        let first = owners
            .apply(None, &json!({"spec": {"a": 1, "b": 2}}), "ctl", false)
            .unwrap();
        let second = owners
            .apply(Some(&first), &json!({"spec": {"a": 1}}), "ctl", false)
            .unwrap();
        assert_eq!(second, json!({"spec": {"a": 1}}));
    }

    #[test]
    fn apply_conflicts_with_other_manager_unless_forced() {
        let mut owners = FieldOwners::default();
        let object = owners
            .apply(None, &json!({"spec": {"a": 1}}), "alice", false)
            .unwrap();
        let conflict = owners.apply(Some(&object), &json!({"spec": {"a": 2}}), "bob", false);
        assert_eq!(conflict, Err(vec![("alice".into(), ".spec.a".into())]));
        let same_value = owners.apply(Some(&object), &json!({"spec": {"a": 1}}), "bob", false);
        assert!(
            same_value.is_ok(),
            "same value is shared ownership, not a conflict"
        );
        let forced = owners
            .apply(Some(&object), &json!({"spec": {"a": 2}}), "bob", true)
            .unwrap();
        assert_eq!(forced, json!({"spec": {"a": 2}}));
        assert!(
            !owners.managers().contains_key("alice")
                || !owners.managers()["alice"].contains("/spec/a")
        );
    }

    #[test]
    fn update_takes_ownership_from_appliers() {
        let mut owners = FieldOwners::default();
        let object = owners
            .apply(None, &json!({"spec": {"a": 1}}), "alice", false)
            .unwrap();
        let edited = json!({"spec": {"a": 5}});
        owners.record_update(&object, &edited, "kubectl-edit");
        let conflict = owners.apply(Some(&edited), &json!({"spec": {"a": 1}}), "alice", false);
        assert_eq!(
            conflict,
            Err(vec![("kubectl-edit".into(), ".spec.a".into())])
        );
    }

    #[test]
    fn label_keys_with_slashes_round_trip() {
        let paths = leaf_paths(
            &json!({"metadata": {"name": "x", "labels": {"app.kubernetes.io/name": "web"}}}),
        );
        assert_eq!(
            paths,
            BTreeSet::from(["/metadata/labels/app.kubernetes.io~1name".to_owned()])
        );
        let mut object = json!({"metadata": {"labels": {"app.kubernetes.io/name": "web"}}});
        remove_path(&mut object, "/metadata/labels/app.kubernetes.io~1name");
        assert_eq!(object, json!({"metadata": {"labels": {}}}));
    }
}
