//! Validates a JSON value against a Kubernetes *structural* OpenAPI v3 schema, the way the API
//! server validates custom resources, with one deliberate difference: a field the schema does not
//! declare is an error instead of being silently pruned (unless the schema says
//! `x-kubernetes-preserve-unknown-fields: true`). Pruning is how a typo such as `exactly:` for
//! `exact:` turns into an outage on a real cluster; here it fails the test.
//!
//! Hand-written rather than a generic JSON-Schema crate because Kubernetes' rules differ from
//! JSON Schema in ways that matter: `oneOf`/`anyOf`/`allOf`/`not` branches are *value validations*
//! that never declare fields (unknown-field checks use only the node's own `properties`), `null`
//! object fields are pruned unless `nullable`, `x-kubernetes-int-or-string`, list types, and the
//! error paths use the API server's `spec.http[0].match` notation.
//!
//! Not enforced: `x-kubernetes-validations` (CEL rules; see [`crate::crd::CrdSet::cel_rules`]),
//! and formats other than `date-time`, `byte`, `int32`, `int64`, `uint32`. Defaulting is
//! separate ([`apply_defaults`]), run by the fake API server before it validates a write.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, OnceLock};

use base64::Engine as _;
use regex::Regex;
use serde_json::{Map, Value};

use crate::field_error::{child_path, index_path, FieldError, FieldErrorKind};

/// Whether unknown fields are checked: only the structural part of a schema declares fields;
/// `oneOf`/`anyOf`/`allOf`/`not` branches merely constrain values the structure already allows.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Structural,
    ValueOnly,
}

/// Validates `value` (found at `path`) against `schema`, appending every failure to `errors`.
/// At the object root, pass `root = true` so `apiVersion`, `kind` and `metadata` are accepted
/// implicitly, as the API server does (metadata is checked by [`crate::object_meta`]).
pub fn validate(
    schema: &Value,
    value: &Value,
    path: &str,
    root: bool,
    errors: &mut Vec<FieldError>,
) {
    validate_node(schema, value, path, Mode::Structural, root, errors);
}

/// Sets the schema's `default`s in `value`, as the API server's structural defaulting does
/// on every write of a custom resource (and on every read): a property with a `default` that
/// is absent (or `null` without `nullable`) gets a copy of it, then every property, list item
/// and map value is defaulted in turn, defaults just set included. Objects that are absent
/// are not made up. At the root, `metadata` is left alone (ObjectMeta is never defaulted
/// from a CRD's schema).
pub fn apply_defaults(schema: &Value, value: &mut Value, root: bool) {
    let Some(schema) = schema.as_object() else {
        return;
    };
    match value {
        Value::Object(fields) => {
            let properties = schema.get("properties").and_then(Value::as_object);
            for (name, property) in properties.into_iter().flatten() {
                if root && name == "metadata" {
                    continue;
                }
                let Some(default) = property.get("default") else {
                    continue;
                };
                let missing = match fields.get(name) {
                    None => true,
                    Some(Value::Null) => !flag_of(property, "nullable"),
                    Some(_) => false,
                };
                if missing {
                    fields.insert(name.clone(), default.clone());
                }
            }
            let additional = schema.get("additionalProperties");
            for (name, field) in fields.iter_mut() {
                if root && name == "metadata" {
                    continue;
                }
                match properties.and_then(|p| p.get(name)) {
                    Some(property) => apply_defaults(property, field, false),
                    None => {
                        if let Some(values @ Value::Object(_)) = additional {
                            apply_defaults(values, field, false);
                        }
                    }
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for item in items {
                    apply_defaults(item_schema, item, false);
                }
            }
        }
        _ => {}
    }
}

fn flag_of(schema: &Value, name: &str) -> bool {
    schema.get(name).and_then(Value::as_bool).unwrap_or(false)
}

fn validate_node(
    schema: &Value,
    value: &Value,
    path: &str,
    mode: Mode,
    root: bool,
    errors: &mut Vec<FieldError>,
) {
    let Some(schema) = schema.as_object() else {
        return;
    };
    if value.is_null() {
        if !flag(schema, "nullable") {
            errors.push(FieldError::new(
                path,
                FieldErrorKind::TypeInvalid,
                "must not be null (the schema does not set nullable)",
            ));
        }
        return;
    }
    if !check_type(schema, value, path, errors) {
        return;
    }
    check_enum(schema, value, path, errors);
    match value {
        Value::String(s) => check_string(schema, s, path, errors),
        Value::Number(_) => check_number(schema, value, path, errors),
        Value::Array(items) => check_array(schema, items, path, mode, errors),
        Value::Object(fields) => check_object(schema, fields, path, mode, root, errors),
        Value::Bool(_) | Value::Null => {}
    }
    check_combinators(schema, value, path, errors);
}

fn flag(schema: &Map<String, Value>, key: &str) -> bool {
    schema.get(key).and_then(Value::as_bool).unwrap_or(false)
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Returns false when the type is wrong, so deeper checks do not pile up noise.
fn check_type(
    schema: &Map<String, Value>,
    value: &Value,
    path: &str,
    errors: &mut Vec<FieldError>,
) -> bool {
    let actual = json_type(value);
    if flag(schema, "x-kubernetes-int-or-string") {
        if actual == "integer" || actual == "string" {
            return true;
        }
        errors.push(FieldError::new(
            path,
            FieldErrorKind::TypeInvalid,
            format!("must be an integer or a string, got {actual}"),
        ));
        return false;
    }
    let Some(expected) = schema.get("type").and_then(Value::as_str) else {
        return true;
    };
    let integral_float = value.as_f64().is_some_and(|f| f.fract() == 0.0);
    let ok = expected == actual
        || (expected == "number" && actual == "integer")
        || (expected == "integer" && actual == "number" && integral_float);
    if !ok {
        errors.push(FieldError::new(
            path,
            FieldErrorKind::TypeInvalid,
            format!("must be of type {expected}, got {actual}"),
        ));
    }
    ok
}

fn check_enum(
    schema: &Map<String, Value>,
    value: &Value,
    path: &str,
    errors: &mut Vec<FieldError>,
) {
    let Some(allowed) = schema.get("enum").and_then(Value::as_array) else {
        return;
    };
    if !allowed.contains(value) {
        let list: Vec<String> = allowed.iter().map(Value::to_string).collect();
        errors.push(FieldError::new(
            path,
            FieldErrorKind::NotSupported,
            format!(
                "unsupported value {value}: supported values: {}",
                list.join(", ")
            ),
        ));
    }
}

fn check_string(schema: &Map<String, Value>, s: &str, path: &str, errors: &mut Vec<FieldError>) {
    let length = s.chars().count() as u64;
    if let Some(max) = schema.get("maxLength").and_then(Value::as_u64) {
        if length > max {
            errors.push(FieldError::new(
                path,
                FieldErrorKind::TooLong,
                format!("may not be longer than {max} characters, got {length}"),
            ));
        }
    }
    if let Some(min) = schema.get("minLength").and_then(Value::as_u64) {
        if length < min {
            errors.push(FieldError::new(
                path,
                FieldErrorKind::Invalid,
                format!("must be at least {min} characters long, got {length}"),
            ));
        }
    }
    if let Some(pattern) = schema.get("pattern").and_then(Value::as_str) {
        match compiled(pattern) {
            Ok(re) if re.is_match(s) => {}
            Ok(_) => errors.push(FieldError::new(
                path,
                FieldErrorKind::Invalid,
                format!("{s:?} does not match pattern {pattern:?}"),
            )),
            Err(e) => errors.push(FieldError::new(
                path,
                FieldErrorKind::Invalid,
                format!("schema pattern {pattern:?} does not compile: {e}"),
            )),
        }
    }
    match schema.get("format").and_then(Value::as_str) {
        Some("date-time") if s.parse::<jiff::Timestamp>().is_err() => errors.push(FieldError::new(
            path,
            FieldErrorKind::Invalid,
            format!("{s:?} is not an RFC 3339 date-time"),
        )),
        Some("byte") if base64::engine::general_purpose::STANDARD.decode(s).is_err() => errors
            .push(FieldError::new(
                path,
                FieldErrorKind::Invalid,
                format!("{s:?} is not base64 (format byte)"),
            )),
        _ => {}
    }
}

/// Patterns are compiled once per process: the Istio schemas are validated on every write.
fn compiled(pattern: &str) -> Result<Regex, regex::Error> {
    static CACHE: OnceLock<Mutex<HashMap<String, Regex>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    let mut cache = cache
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(re) = cache.get(pattern) {
        return Ok(re.clone());
    }
    let re = Regex::new(pattern)?;
    cache.insert(pattern.to_owned(), re.clone());
    Ok(re)
}

fn check_number(
    schema: &Map<String, Value>,
    value: &Value,
    path: &str,
    errors: &mut Vec<FieldError>,
) {
    let Some(n) = value.as_f64() else {
        return;
    };
    let exclusive = |key| flag(schema, key);
    if let Some(min) = schema.get("minimum").and_then(Value::as_f64) {
        let below = if exclusive("exclusiveMinimum") {
            n <= min
        } else {
            n < min
        };
        if below {
            errors.push(FieldError::new(
                path,
                FieldErrorKind::Invalid,
                format!("{value} is below the minimum {min}"),
            ));
        }
    }
    if let Some(max) = schema.get("maximum").and_then(Value::as_f64) {
        let above = if exclusive("exclusiveMaximum") {
            n >= max
        } else {
            n > max
        };
        if above {
            errors.push(FieldError::new(
                path,
                FieldErrorKind::Invalid,
                format!("{value} is above the maximum {max}"),
            ));
        }
    }
    if let Some(step) = schema.get("multipleOf").and_then(Value::as_f64) {
        if step != 0.0 && (n / step).fract() != 0.0 {
            errors.push(FieldError::new(
                path,
                FieldErrorKind::Invalid,
                format!("{value} is not a multiple of {step}"),
            ));
        }
    }
    let range = match schema.get("format").and_then(Value::as_str) {
        Some("int32") => Some((i32::MIN as f64, i32::MAX as f64)),
        Some("uint32") => Some((0.0, u32::MAX as f64)),
        Some("int64") => Some((i64::MIN as f64, i64::MAX as f64)),
        _ => None,
    };
    if let Some((low, high)) = range {
        if n < low || n > high {
            errors.push(FieldError::new(
                path,
                FieldErrorKind::Invalid,
                format!("{value} does not fit the format {}", schema["format"]),
            ));
        }
    }
}

fn check_array(
    schema: &Map<String, Value>,
    items: &[Value],
    path: &str,
    mode: Mode,
    errors: &mut Vec<FieldError>,
) {
    let count = items.len() as u64;
    if let Some(max) = schema.get("maxItems").and_then(Value::as_u64) {
        if count > max {
            errors.push(FieldError::new(
                path,
                FieldErrorKind::TooMany,
                format!("must have at most {max} items, got {count}"),
            ));
        }
    }
    if let Some(min) = schema.get("minItems").and_then(Value::as_u64) {
        if count < min {
            errors.push(FieldError::new(
                path,
                FieldErrorKind::Invalid,
                format!("must have at least {min} items, got {count}"),
            ));
        }
    }
    if let Some(item_schema) = schema.get("items") {
        for (i, item) in items.iter().enumerate() {
            validate_node(item_schema, item, &index_path(path, i), mode, false, errors);
        }
    }
    check_list_type(schema, items, path, errors);
}

/// `x-kubernetes-list-type: set|map` lists must not hold duplicates; the real server rejects them.
fn check_list_type(
    schema: &Map<String, Value>,
    items: &[Value],
    path: &str,
    errors: &mut Vec<FieldError>,
) {
    let key_of = |item: &Value| -> Option<String> {
        match schema.get("x-kubernetes-list-type").and_then(Value::as_str) {
            Some("set") => Some(item.to_string()),
            Some("map") => {
                let keys = schema.get("x-kubernetes-list-map-keys")?.as_array()?;
                let parts: Vec<String> = keys
                    .iter()
                    .filter_map(Value::as_str)
                    .map(|k| item.get(k).map(Value::to_string).unwrap_or_default())
                    .collect();
                Some(parts.join(","))
            }
            _ => None,
        }
    };
    let mut seen = HashSet::new();
    for (i, item) in items.iter().enumerate() {
        if let Some(key) = key_of(item) {
            if !seen.insert(key.clone()) {
                errors.push(FieldError::new(
                    &index_path(path, i),
                    FieldErrorKind::Duplicate,
                    format!("duplicate entry {key}"),
                ));
            }
        }
    }
}

const IMPLICIT_ROOT_FIELDS: [&str; 3] = ["apiVersion", "kind", "metadata"];

fn check_object(
    schema: &Map<String, Value>,
    fields: &Map<String, Value>,
    path: &str,
    mode: Mode,
    root: bool,
    errors: &mut Vec<FieldError>,
) {
    let properties = schema.get("properties").and_then(Value::as_object);
    let additional = schema.get("additionalProperties");
    let preserve = flag(schema, "x-kubernetes-preserve-unknown-fields");
    if let Some(required) = schema.get("required").and_then(Value::as_array) {
        for name in required.iter().filter_map(Value::as_str) {
            if fields.get(name).is_none_or(Value::is_null) {
                errors.push(FieldError::new(
                    &child_path(path, name),
                    FieldErrorKind::Required,
                    "Required value",
                ));
            }
        }
    }
    let count = fields.len() as u64;
    if let Some(max) = schema.get("maxProperties").and_then(Value::as_u64) {
        if count > max {
            errors.push(FieldError::new(
                path,
                FieldErrorKind::TooMany,
                format!("must have at most {max} entries, got {count}"),
            ));
        }
    }
    if let Some(min) = schema.get("minProperties").and_then(Value::as_u64) {
        if count < min {
            errors.push(FieldError::new(
                path,
                FieldErrorKind::Invalid,
                format!("must have at least {min} entries, got {count}"),
            ));
        }
    }
    for (name, field_value) in fields {
        let field_path = child_path(path, name);
        if root && name == "metadata" {
            // The API server checks a custom object's metadata as ObjectMeta whatever its
            // CRD's schema says there (the Gateway API's CRDs declare a bare
            // `metadata: {type: object}`); the caller checks it.
            continue;
        }
        if let Some(field_schema) = properties.and_then(|p| p.get(name)) {
            // The API server prunes a null field that is not nullable instead of rejecting it.
            let pruned_null = field_value.is_null()
                && !field_schema
                    .get("nullable")
                    .and_then(Value::as_bool)
                    .unwrap_or(false);
            if !pruned_null {
                validate_node(field_schema, field_value, &field_path, mode, false, errors);
            }
        } else if root && IMPLICIT_ROOT_FIELDS.contains(&name.as_str()) {
            // Declared by every kind; the caller checks metadata itself.
        } else if let Some(map_schema @ Value::Object(_)) = additional {
            validate_node(map_schema, field_value, &field_path, mode, false, errors);
        } else if mode == Mode::Structural && !preserve && additional != Some(&Value::Bool(true)) {
            errors.push(FieldError::new(
                path,
                FieldErrorKind::UnknownField,
                format!("unknown field {name:?}"),
            ));
        }
    }
}

fn check_combinators(
    schema: &Map<String, Value>,
    value: &Value,
    path: &str,
    errors: &mut Vec<FieldError>,
) {
    let branch_errors = |branch: &Value| {
        let mut found = Vec::new();
        validate_node(branch, value, path, Mode::ValueOnly, false, &mut found);
        found
    };
    if let Some(branches) = schema.get("allOf").and_then(Value::as_array) {
        for branch in branches {
            errors.extend(branch_errors(branch));
        }
    }
    if let Some(branches) = schema.get("anyOf").and_then(Value::as_array) {
        let results: Vec<Vec<FieldError>> = branches.iter().map(branch_errors).collect();
        if !results.iter().any(Vec::is_empty) {
            let reasons: Vec<String> = results.iter().flatten().map(ToString::to_string).collect();
            errors.push(FieldError::new(
                path,
                FieldErrorKind::Invalid,
                format!(
                    "must match at least one anyOf alternative: {}",
                    reasons.join("; ")
                ),
            ));
        }
    }
    if let Some(branches) = schema.get("oneOf").and_then(Value::as_array) {
        check_one_of(branches, value, path, errors, &branch_errors);
    }
    if let Some(negated) = schema.get("not") {
        if branch_errors(negated).is_empty() {
            errors.push(FieldError::new(
                path,
                FieldErrorKind::Invalid,
                format!("must not match the schema {negated}"),
            ));
        }
    }
}

fn check_one_of(
    branches: &[Value],
    value: &Value,
    path: &str,
    errors: &mut Vec<FieldError>,
    branch_errors: &dyn Fn(&Value) -> Vec<FieldError>,
) {
    let results: Vec<Vec<FieldError>> = branches.iter().map(branch_errors).collect();
    let matched: Vec<&Value> = branches
        .iter()
        .zip(&results)
        .filter(|(_, found)| found.is_empty())
        .map(|(branch, _)| branch)
        .collect();
    match matched.len() {
        1 => {}
        0 => {
            let reasons: Vec<String> = results.iter().flatten().map(ToString::to_string).collect();
            errors.push(FieldError::new(
                path,
                FieldErrorKind::Invalid,
                format!(
                    "must match exactly one oneOf alternative, matched none: {}",
                    reasons.join("; ")
                ),
            ));
        }
        n => {
            // Istio expresses "at most one of these fields" as oneOf over `required` branches;
            // naming the fields is far more useful than "matched 2 alternatives".
            let exclusive: Vec<&str> = matched
                .iter()
                .filter_map(|b| b.get("required")?.as_array())
                .flatten()
                .filter_map(Value::as_str)
                .filter(|field| value.get(field).is_some())
                .collect();
            let message = if exclusive.len() > 1 {
                format!(
                    "fields {} are mutually exclusive: set only one",
                    exclusive.join(", ")
                )
            } else {
                format!("must match exactly one oneOf alternative, matched {n}")
            };
            errors.push(FieldError::new(path, FieldErrorKind::Invalid, message));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn errors_of(schema: Value, value: Value) -> Vec<String> {
        let mut errors = Vec::new();
        validate(&schema, &value, "spec", false, &mut errors);
        errors.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn defaults_are_set_where_absent_and_inside_what_they_set() {
        // As Gateway API's HTTPRoute declares them.
        let path = json!({"type": "object", "properties": {
            "type": {"type": "string", "default": "PathPrefix"},
            "value": {"type": "string", "default": "/"}}});
        let backend = json!({"type": "object", "properties": {
            "group": {"type": "string", "default": ""},
            "kind": {"type": "string", "default": "Service"},
            "name": {"type": "string"},
            "weight": {"type": "integer", "default": 1}}});
        let schema = json!({"type": "object", "properties": {
            "metadata": {"type": "object", "properties": {"name": {"default": "x"}}},
            "spec": {"type": "object", "properties": {
                "rules": {"type": "array", "items": {"type": "object", "properties": {
                    "matches": {"type": "array",
                                "default": [{"path": {"type": "PathPrefix", "value": "/"}}],
                                "items": {"type": "object", "properties": {"path": path}}},
                    "backendRefs": {"type": "array", "items": backend}}}},
                "labels": {"type": "object", "additionalProperties": {"type": "object",
                    "properties": {"on": {"type": "boolean", "default": true}}}},
                "absent": {"type": "object", "properties": {"a": {"default": 1}}}}}}});
        let mut object = json!({"metadata": {}, "spec": {
            "rules": [{"backendRefs": [{"name": "shop", "weight": 5}]},
                      {"matches": [{"path": {"value": "/a"}}]}],
            "labels": {"x": {}}}});
        apply_defaults(&schema, &mut object, true);
        assert_eq!(
            object,
            json!({"metadata": {}, "spec": {
                "rules": [{"matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
                           "backendRefs": [{"group": "", "kind": "Service", "name": "shop",
                                            "weight": 5}]},
                          {"matches": [{"path": {"type": "PathPrefix", "value": "/a"}}]}],
                "labels": {"x": {"on": true}}}})
        );
    }

    #[test]
    fn below_the_root_a_field_named_metadata_is_an_ordinary_field() {
        let mut errors = Vec::new();
        let nested = json!({"spec": {"metadata": {"name": "x"}}});
        let schema = json!({"type": "object", "properties": {"spec": {"type": "object",
            "properties": {"metadata": {"type": "object"}}}}});
        validate(&schema, &nested, "", true, &mut errors);
        assert_eq!(errors.len(), 1, "{errors:?}");
    }

    #[test]
    fn a_root_metadata_is_objectmeta_whatever_the_schema_says_there() {
        // As the Gateway API's CRDs declare it.
        let schema = json!({"type": "object", "properties": {
            "metadata": {"type": "object"}, "spec": {"type": "object"}}});
        let object = json!({"apiVersion": "g/v1", "kind": "K", "spec": {},
            "metadata": {"name": "a", "namespace": "prod", "annotations": {"k": "v"}}});
        let mut errors = Vec::new();
        validate(&schema, &object, "", true, &mut errors);
        assert!(errors.is_empty(), "{errors:?}");
    }

    #[test]
    fn table() {
        let string_match = json!({
            "type": "object",
            "properties": {"exact": {"type": "string"}, "prefix": {"type": "string"}},
            "oneOf": [
                {"not": {"anyOf": [{"required": ["exact"]}, {"required": ["prefix"]}]}},
                {"required": ["exact"]},
                {"required": ["prefix"]}
            ]
        });
        let cases: Vec<(&str, Value, Value, Vec<&str>)> = vec![
            ("ok", string_match.clone(), json!({"exact": "a"}), vec![]),
            ("empty ok", string_match.clone(), json!({}), vec![]),
            (
                "typo",
                string_match.clone(),
                json!({"exactly": "a"}),
                vec!["spec: unknown field \"exactly\""],
            ),
            (
                "exclusive",
                string_match.clone(),
                json!({"exact": "a", "prefix": "b"}),
                vec!["spec: fields exact, prefix are mutually exclusive: set only one"],
            ),
            (
                "type",
                json!({"type": "integer"}),
                json!("1"),
                vec!["spec: must be of type integer, got string"],
            ),
            (
                "int-or-string",
                json!({"x-kubernetes-int-or-string": true, "anyOf": [{"type": "integer"}, {"type": "string"}]}),
                json!("50%"),
                vec![],
            ),
            (
                "int-or-string bad",
                json!({"x-kubernetes-int-or-string": true}),
                json!(true),
                vec!["spec: must be an integer or a string, got boolean"],
            ),
            (
                "enum",
                json!({"type": "string", "enum": ["A", "B"]}),
                json!("C"),
                vec!["spec: unsupported value \"C\": supported values: \"A\", \"B\""],
            ),
            (
                "max",
                json!({"type": "integer", "maximum": 100}),
                json!(101),
                vec!["spec: 101 is above the maximum 100"],
            ),
            (
                "int32",
                json!({"type": "integer", "format": "int32"}),
                json!(4_294_967_296u64),
                vec!["spec: 4294967296 does not fit the format \"int32\""],
            ),
            (
                "pattern",
                json!({"type": "string", "pattern": "^[a-z]+$"}),
                json!("A"),
                vec!["spec: \"A\" does not match pattern \"^[a-z]+$\""],
            ),
            (
                "date-time",
                json!({"type": "string", "format": "date-time"}),
                json!("yesterday"),
                vec!["spec: \"yesterday\" is not an RFC 3339 date-time"],
            ),
            (
                "null pruned",
                json!({"type": "object", "properties": {"a": {"type": "string"}}}),
                json!({"a": null}),
                vec![],
            ),
            (
                "null item",
                json!({"type": "array", "items": {"type": "string"}}),
                json!([null]),
                vec!["spec[0]: must not be null (the schema does not set nullable)"],
            ),
            (
                "nullable",
                json!({"type": "string", "nullable": true}),
                json!(null),
                vec![],
            ),
            (
                "required",
                json!({"type": "object", "required": ["a"], "properties": {"a": {"type": "string"}}}),
                json!({}),
                vec!["spec.a: Required value"],
            ),
            (
                "map",
                json!({"type": "object", "additionalProperties": {"type": "string"}}),
                json!({"k": 1}),
                vec!["spec.k: must be of type string, got integer"],
            ),
            (
                "preserve",
                json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true, "properties": {"a": {"type": "string"}}}),
                json!({"b": 1}),
                vec![],
            ),
            (
                "bare object",
                json!({"type": "object"}),
                json!({"b": 1}),
                vec!["spec: unknown field \"b\""],
            ),
            (
                "maxItems",
                json!({"type": "array", "maxItems": 1}),
                json!([1, 2]),
                vec!["spec: must have at most 1 items, got 2"],
            ),
            (
                "set",
                json!({"type": "array", "x-kubernetes-list-type": "set"}),
                json!(["a", "a"]),
                vec!["spec[1]: duplicate entry \"a\""],
            ),
        ];
        for (name, schema, value, expected) in cases {
            assert_eq!(errors_of(schema, value), expected, "case {name}");
        }
    }
}
