//! Failures as the API server reports them: an HTTP code plus a `Status` object whose `reason`
//! clients such as kube-rs branch on (`Conflict` means re-read and retry, `Invalid` does not).

use serde_json::{json, Value};

use crate::crd::ResourceKind;
use crate::field_error::ValidationErrors;

/// A failed API request: HTTP status code and `Status` body.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    /// HTTP status code (404, 409, 410, 415, 422, ...).
    pub code: u16,
    /// `Status.reason`: `NotFound`, `AlreadyExists`, `Conflict`, `Invalid`, ...
    pub reason: String,
    /// `Status.message`.
    pub message: String,
    /// `Status.details`, when the real server gives them.
    pub details: Option<Value>,
}

impl ApiError {
    fn new(code: u16, reason: &str, message: String, details: Option<Value>) -> Self {
        Self {
            code,
            reason: reason.to_owned(),
            message,
            details,
        }
    }

    /// The `Status` object sent as the response body.
    pub fn status_body(&self) -> Value {
        let mut body = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let Some(details) = &self.details {
            body["details"] = details.clone();
        }
        body
    }

    /// 404 for an object that does not exist.
    pub fn not_found(resource: &ResourceKind, name: &str) -> Self {
        Self::new(
            404,
            "NotFound",
            format!("{} {name:?} not found", resource.qualified_plural()),
            Some(json!({"name": name, "group": resource.group, "kind": resource.plural})),
        )
    }

    /// 500 for a failure the test injected (a server that fails mid-change).
    pub fn internal(resource: &ResourceKind, name: &str) -> Self {
        Self::new(
            500,
            "InternalError",
            format!(
                "Internal error occurred: injected failure writing {} {name:?}",
                resource.qualified_plural()
            ),
            None,
        )
    }

    /// 404 for a URL no CRD serves.
    pub fn unknown_resource(path: &str) -> Self {
        Self::new(
            404,
            "NotFound",
            format!("the server could not find the requested resource ({path})"),
            None,
        )
    }

    /// 409 for a create of an existing name.
    pub fn already_exists(resource: &ResourceKind, name: &str) -> Self {
        Self::new(
            409,
            "AlreadyExists",
            format!("{} {name:?} already exists", resource.qualified_plural()),
            Some(json!({"name": name, "group": resource.group, "kind": resource.plural})),
        )
    }

    /// 409 for a write based on a stale resourceVersion, worded like the real server.
    pub fn conflict(resource: &ResourceKind, name: &str) -> Self {
        Self::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} {name:?}: the object has been modified; please apply your changes to the latest version and try again",
                resource.qualified_plural()
            ),
            Some(json!({"name": name, "group": resource.group, "kind": resource.plural})),
        )
    }

    /// 409 for a server-side apply that would take fields owned by another manager.
    pub fn apply_conflict(
        resource: &ResourceKind,
        name: &str,
        conflicts: &[(String, String)],
    ) -> Self {
        let listed: Vec<String> = conflicts
            .iter()
            .map(|(manager, field)| format!("conflict with {manager:?}: {field}"))
            .collect();
        let causes: Vec<Value> = conflicts
            .iter()
            .map(|(manager, field)| json!({"reason": "FieldManagerConflict", "message": format!("conflict with {manager:?}"), "field": field}))
            .collect();
        Self::new(
            409,
            "Conflict",
            format!(
                "Apply failed with {} conflict(s): {}",
                conflicts.len(),
                listed.join("; ")
            ),
            Some(
                json!({"name": name, "group": resource.group, "kind": resource.plural, "causes": causes}),
            ),
        )
    }

    /// 422 with one cause per invalid field, like the real server's validation failure.
    pub fn invalid(resource: &ResourceKind, name: &str, errors: &ValidationErrors) -> Self {
        let causes: Vec<Value> = errors
            .0
            .iter()
            .map(|e| json!({"reason": e.kind.reason(), "message": e.message, "field": e.path}))
            .collect();
        Self::new(
            422,
            "Invalid",
            format!(
                "{}.{} {name:?} is invalid: {errors}",
                resource.kind, resource.group
            ),
            Some(
                json!({"name": name, "group": resource.group, "kind": resource.kind, "causes": causes}),
            ),
        )
    }

    /// 422 for a request the server understood but cannot carry out (bad patch, bad precondition).
    pub fn unprocessable(message: String) -> Self {
        Self::new(422, "Invalid", message, None)
    }

    /// 400 for a malformed request.
    pub fn bad_request(message: String) -> Self {
        Self::new(400, "BadRequest", message, None)
    }

    /// 405 for a verb the resource does not support.
    pub fn method_not_allowed(method: &str) -> Self {
        Self::new(
            405,
            "MethodNotAllowed",
            format!("the server does not allow this method on the requested resource ({method})"),
            None,
        )
    }

    /// 415: custom resources do not support strategic merge patch.
    pub fn unsupported_media_type(content_type: &str) -> Self {
        Self::new(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format ({content_type}) - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml"
            ),
            None,
        )
    }

    /// 410 for a watch from a resourceVersion older than the retained history.
    pub fn expired(requested: u64, oldest: u64) -> Self {
        Self::new(
            410,
            "Expired",
            format!("too old resource version: {requested} ({oldest})"),
            None,
        )
    }
}
