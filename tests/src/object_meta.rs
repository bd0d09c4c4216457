//! Checks `metadata` the way the API server does for every object (name, namespace, labels,
//! annotations), plus the strict rule of this crate: an unknown metadata field (`label:` for
//! `labels:`) is an error instead of being dropped.

use serde_json::{Map, Value};

use crate::field_error::{child_path, FieldError, FieldErrorKind};

/// Every field of `ObjectMeta`; anything else is a typo.
const OBJECT_META_FIELDS: [&str; 15] = [
    "name",
    "generateName",
    "namespace",
    "selfLink",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "labels",
    "annotations",
    "ownerReferences",
    "finalizers",
    "managedFields",
];

/// Validates `object.metadata`; `namespaced` says whether the kind lives in a namespace.
pub fn validate_metadata(object: &Value, namespaced: bool, errors: &mut Vec<FieldError>) {
    let Some(meta) = object.get("metadata").and_then(Value::as_object) else {
        errors.push(FieldError::new(
            "metadata",
            FieldErrorKind::Required,
            "Required value",
        ));
        return;
    };
    for name in meta.keys() {
        if !OBJECT_META_FIELDS.contains(&name.as_str()) {
            errors.push(FieldError::new(
                "metadata",
                FieldErrorKind::UnknownField,
                format!("unknown field {name:?}"),
            ));
        }
    }
    match meta.get("name").and_then(Value::as_str) {
        Some(name) => {
            if let Err(message) = check_dns1123_subdomain(name) {
                errors.push(FieldError::new(
                    "metadata.name",
                    FieldErrorKind::Invalid,
                    format!("{name:?}: {message}"),
                ));
            }
        }
        None if meta.get("generateName").is_some() => {}
        None => errors.push(FieldError::new(
            "metadata.name",
            FieldErrorKind::Required,
            "name or generateName is required",
        )),
    }
    if let Some(namespace) = meta.get("namespace").and_then(Value::as_str) {
        if !namespaced {
            errors.push(FieldError::new(
                "metadata.namespace",
                FieldErrorKind::Invalid,
                "not allowed on a cluster-scoped kind",
            ));
        } else if let Err(message) = check_dns1123_label(namespace) {
            errors.push(FieldError::new(
                "metadata.namespace",
                FieldErrorKind::Invalid,
                format!("{namespace:?}: {message}"),
            ));
        }
    }
    check_string_map(meta, "labels", errors, check_label_value);
    check_string_map(meta, "annotations", errors, |_| Ok(()));
}

fn check_string_map(
    meta: &Map<String, Value>,
    field: &str,
    errors: &mut Vec<FieldError>,
    check_value: impl Fn(&str) -> Result<(), String>,
) {
    let path = child_path("metadata", field);
    let Some(map) = meta.get(field) else {
        return;
    };
    if map.is_null() {
        return;
    }
    let Some(map) = map.as_object() else {
        errors.push(FieldError::new(
            &path,
            FieldErrorKind::TypeInvalid,
            "must be a map of strings",
        ));
        return;
    };
    for (key, value) in map {
        let entry_path = child_path(&path, key);
        if let Err(message) = check_qualified_name(key) {
            errors.push(FieldError::new(
                &entry_path,
                FieldErrorKind::Invalid,
                format!("key {key:?}: {message}"),
            ));
        }
        match value.as_str() {
            Some(text) => {
                if let Err(message) = check_value(text) {
                    errors.push(FieldError::new(
                        &entry_path,
                        FieldErrorKind::Invalid,
                        format!("{text:?}: {message}"),
                    ));
                }
            }
            None => errors.push(FieldError::new(
                &entry_path,
                FieldErrorKind::TypeInvalid,
                "must be a string",
            )),
        }
    }
}

fn is_alnum(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

/// DNS-1123 label: what namespaces (and most names) must be.
pub fn check_dns1123_label(s: &str) -> Result<(), String> {
    let valid = !s.is_empty()
        && s.len() <= 63
        && s.chars().all(|c| is_alnum(c) || c == '-')
        && s.starts_with(is_alnum)
        && s.ends_with(is_alnum);
    if valid {
        Ok(())
    } else {
        Err("must be a lowercase RFC 1123 label (a-z, 0-9, '-', at most 63 characters, alphanumeric at both ends)".into())
    }
}

/// DNS-1123 subdomain: what custom resource names must be.
pub fn check_dns1123_subdomain(s: &str) -> Result<(), String> {
    let valid = !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|label| check_dns1123_label(label).is_ok());
    if valid {
        Ok(())
    } else {
        Err("must be a lowercase RFC 1123 subdomain (a-z, 0-9, '-', '.', at most 253 characters, alphanumeric at both ends)".into())
    }
}

fn is_name_part(s: &str) -> bool {
    let alnum = |c: char| c.is_ascii_alphanumeric();
    !s.is_empty()
        && s.len() <= 63
        && s.chars().all(|c| alnum(c) || matches!(c, '-' | '_' | '.'))
        && s.starts_with(alnum)
        && s.ends_with(alnum)
}

/// Label and annotation keys: `[prefix/]name`, prefix a DNS subdomain, name at most 63 characters.
pub fn check_qualified_name(s: &str) -> Result<(), String> {
    let (prefix, name) = match s.split_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, s),
    };
    if let Some(prefix) = prefix {
        check_dns1123_subdomain(prefix).map_err(|e| format!("prefix {e}"))?;
    }
    if is_name_part(name) {
        Ok(())
    } else {
        Err(
            "name part must be at most 63 characters of [A-Za-z0-9_.-], alphanumeric at both ends"
                .into(),
        )
    }
}

/// Label values: empty, or at most 63 characters of `[A-Za-z0-9_.-]`, alphanumeric at both ends.
pub fn check_label_value(s: &str) -> Result<(), String> {
    if s.is_empty() || is_name_part(s) {
        Ok(())
    } else {
        Err(
            "must be empty or at most 63 characters of [A-Za-z0-9_.-], alphanumeric at both ends"
                .into(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn errors_of(object: Value) -> Vec<String> {
        let mut errors = Vec::new();
        validate_metadata(&object, true, &mut errors);
        errors.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn metadata_table() {
        let cases: Vec<(Value, Vec<&str>)> = vec![
            (json!({"metadata": {"name": "web", "namespace": "prod", "labels": {"app.kubernetes.io/name": "web"}}}), vec![]),
            (json!({"metadata": {"generateName": "web-"}}), vec![]),
            (json!({}), vec!["metadata: Required value"]),
            (json!({"metadata": {}}), vec!["metadata.name: name or generateName is required"]),
            (json!({"metadata": {"name": "Web"}}), vec!["metadata.name: \"Web\": must be a lowercase RFC 1123 subdomain (a-z, 0-9, '-', '.', at most 253 characters, alphanumeric at both ends)"]),
            (json!({"metadata": {"name": "a", "label": {}}}), vec!["metadata: unknown field \"label\""]),
            (json!({"metadata": {"name": "a", "namespace": "a.b"}}), vec!["metadata.namespace: \"a.b\": must be a lowercase RFC 1123 label (a-z, 0-9, '-', at most 63 characters, alphanumeric at both ends)"]),
            (json!({"metadata": {"name": "a", "labels": {"v": "-x"}}}), vec!["metadata.labels.v: \"-x\": must be empty or at most 63 characters of [A-Za-z0-9_.-], alphanumeric at both ends"]),
            (json!({"metadata": {"name": "a", "labels": {"v": 1}}}), vec!["metadata.labels.v: must be a string"]),
        ];
        for (object, expected) in cases {
            assert_eq!(errors_of(object.clone()), expected, "{object}");
        }
    }
}
