//! The PATCH body formats a custom resource accepts, chosen by Content-Type as the real server
//! does: JSON merge patch (RFC 7386), JSON patch (RFC 6902) and server-side apply; strategic
//! merge patch is refused with 415 because CRDs carry no patch strategy.

use serde::Deserialize;
use serde_json::Value;

use super::api_error::ApiError;

/// The patch format named by a request's Content-Type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchKind {
    /// `application/merge-patch+json`.
    Merge,
    /// `application/json-patch+json`.
    Json,
    /// `application/apply-patch+yaml` (server-side apply).
    Apply,
}

impl PatchKind {
    /// Picks the format from the Content-Type (parameters such as `; charset` ignored).
    pub fn from_content_type(content_type: &str) -> Result<Self, ApiError> {
        let media_type = content_type.split(';').next().unwrap_or_default().trim();
        match media_type {
            "application/merge-patch+json" => Ok(Self::Merge),
            "application/json-patch+json" => Ok(Self::Json),
            "application/apply-patch+yaml" | "application/apply-patch+cbor" => Ok(Self::Apply),
            other => Err(ApiError::unsupported_media_type(other)),
        }
    }
}

fn parse_json(body: &[u8]) -> Result<Value, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("request body is not JSON: {e}")))
}

/// Applies a merge patch (RFC 7386) to a copy of `current`.
pub fn merge_patch(current: &Value, body: &[u8]) -> Result<Value, ApiError> {
    let patch = parse_json(body)?;
    if !patch.is_object() {
        return Err(ApiError::bad_request(
            "a merge patch must be a JSON object".into(),
        ));
    }
    let mut result = current.clone();
    json_patch::merge(&mut result, &patch);
    Ok(result)
}

/// Applies a JSON patch (RFC 6902, including `test`) to a copy of `current`; a failing
/// operation rejects the whole patch with 422, as the real server does. Like the real server
/// (evanphx/json-patch), a `test` for `null` passes on a member that is absent: kube-rs'
/// finalizer helper tests `/metadata/finalizers` for `null` before adding the first one.
pub fn json_patch(current: &Value, body: &[u8]) -> Result<Value, ApiError> {
    let patch: json_patch::Patch = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("request body is not a JSON patch: {e}")))?;
    let mut result = current.clone();
    for operation in &patch.0 {
        if let json_patch::PatchOperation::Test(test) = operation {
            if test.value.is_null() && result.pointer(test.path.as_str()).is_none() {
                continue;
            }
        }
        json_patch::patch(&mut result, std::slice::from_ref(operation)).map_err(|e| {
            ApiError::unprocessable(format!(
                "the server rejected our request due to an error in our request: {e}"
            ))
        })?;
    }
    Ok(result)
}

/// Parses a server-side apply body: YAML (JSON is YAML too), one object.
pub fn apply_config(body: &[u8]) -> Result<Value, ApiError> {
    let text = std::str::from_utf8(body)
        .map_err(|e| ApiError::bad_request(format!("apply body is not UTF-8: {e}")))?;
    let value = Value::deserialize(serde_norway::Deserializer::from_str(text))
        .map_err(|e| ApiError::bad_request(format!("apply body is not YAML: {e}")))?;
    if value.is_object() {
        Ok(value)
    } else {
        Err(ApiError::bad_request("apply body must be an object".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn content_types() {
        assert_eq!(
            PatchKind::from_content_type("application/merge-patch+json; charset=utf-8"),
            Ok(PatchKind::Merge)
        );
        assert_eq!(
            PatchKind::from_content_type("application/json-patch+json"),
            Ok(PatchKind::Json)
        );
        assert_eq!(
            PatchKind::from_content_type("application/apply-patch+yaml"),
            Ok(PatchKind::Apply)
        );
        assert_eq!(
            PatchKind::from_content_type("application/strategic-merge-patch+json")
                .unwrap_err()
                .code,
            415
        );
    }

    #[test]
    fn merge_and_json_patches() {
        let current = json!({"spec": {"a": 1, "b": [1, 2]}});
        assert_eq!(
            merge_patch(&current, br#"{"spec": {"a": null, "b": [3]}}"#).unwrap(),
            json!({"spec": {"b": [3]}})
        );
        let ops = br#"[{"op": "test", "path": "/spec/a", "value": 1}, {"op": "add", "path": "/spec/b/-", "value": 3}]"#;
        assert_eq!(
            json_patch(&current, ops).unwrap(),
            json!({"spec": {"a": 1, "b": [1, 2, 3]}})
        );
        let failing = br#"[{"op": "test", "path": "/spec/a", "value": 2}, {"op": "remove", "path": "/spec/a"}]"#;
        assert_eq!(json_patch(&current, failing).unwrap_err().code, 422);
        let absent_is_null = br#"[{"op": "test", "path": "/spec/c", "value": null}, {"op": "add", "path": "/spec/c", "value": 1}]"#;
        assert_eq!(
            json_patch(&current, absent_is_null).unwrap()["spec"]["c"],
            1
        );
        let absent_is_not_one = br#"[{"op": "test", "path": "/spec/c", "value": 1}]"#;
        assert_eq!(
            json_patch(&current, absent_is_not_one).unwrap_err().code,
            422
        );
        assert_eq!(
            apply_config(b"spec:\n  a: 1\n").unwrap(),
            json!({"spec": {"a": 1}})
        );
    }
}
