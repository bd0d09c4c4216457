//! The HTTP shell: parses the request, resolves the resource, calls the [`Store`] under its lock,
//! and turns the result into the JSON (or Status) response; also records every request for tests.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use serde_json::Value;
use tokio::sync::broadcast;

use super::api_error::ApiError;
use super::faults::{AuditedWrite, Faults, StaleLists};
use super::patch::PatchKind;
use super::request_path::{self, ResourcePath};
use super::selectors::Selector;
use super::store::{ObjectKey, Part, PatchRequest, Store, Target};
use super::watch::{self, Start, WatchOptions, WatchScope};

/// One request the server received, for assertions such as "dry-run wrote nothing".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedRequest {
    /// HTTP method.
    pub method: String,
    /// URL path.
    pub path: String,
    /// Raw query string.
    pub query: String,
    /// Content-Type header, if any.
    pub content_type: Option<String>,
    /// Response status code.
    pub status: u16,
    /// `dryRun=All` was requested: nothing was persisted.
    pub dry_run: bool,
}

impl RecordedRequest {
    /// A mutating request (POST, PUT, PATCH, DELETE) that was not a server-side dry run,
    /// whether it succeeded or not. A review (`stickyctl` asking who it is: a POST of a
    /// SelfSubjectReview, which the fake does not serve, as a server before 1.28) persists
    /// nothing on any server, so it is no write.
    pub fn is_write(&self) -> bool {
        !self.dry_run
            && matches!(self.method.as_str(), "POST" | "PUT" | "PATCH" | "DELETE")
            && !self.is_review()
    }

    /// A POST of a `*reviews` resource (SelfSubjectReview, TokenReview, ...): a question.
    pub fn is_review(&self) -> bool {
        self.method == "POST" && self.path.ends_with("reviews")
    }
}

/// State shared by the handler and the test hooks.
pub struct Shared {
    /// Objects, history and faults.
    pub store: Mutex<Store>,
    /// Requests received so far.
    pub requests: Mutex<Vec<RecordedRequest>>,
    /// Injected watch and list faults, and the write audit.
    pub faults: Arc<Mutex<Faults>>,
}

impl Shared {
    /// Locks the store; a panic in another test thread must not hide this test's result.
    pub fn store(&self) -> MutexGuard<'_, Store> {
        self.store
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Locks the faults and the write audit.
    pub fn faults(&self) -> MutexGuard<'_, Faults> {
        self.faults
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Locks the request log.
    pub fn requests(&self) -> MutexGuard<'_, Vec<RecordedRequest>> {
        self.requests
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Every path goes to one handler: API paths are parsed by [`request_path::parse`].
pub fn router(shared: Arc<Shared>) -> Router {
    Router::new().fallback(handle).with_state(shared)
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let dry_run =
        query.get("dryRun").is_some_and(|v| v == "All") || body_requests_dry_run(&method, &body);
    let request = Request {
        method: &method,
        query: &query,
        content_type: content_type.as_deref().unwrap_or_default(),
        user_agent: headers
            .get("user-agent")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default(),
        body: &body,
        dry_run,
    };
    let response = match request_path::parse(uri.path()) {
        Some(path) => dispatch(&shared, &path, &request).unwrap_or_else(error_response),
        None => error_response(ApiError::unknown_resource(uri.path())),
    };
    shared.requests().push(RecordedRequest {
        method: method.to_string(),
        path: uri.path().to_owned(),
        query: uri.query().unwrap_or_default().to_owned(),
        content_type,
        status: response.status().as_u16(),
        dry_run,
    });
    response
}

/// kube-rs sends DeleteOptions (which may carry `dryRun: ["All"]`) as the DELETE body.
fn body_requests_dry_run(method: &Method, body: &[u8]) -> bool {
    *method == Method::DELETE
        && serde_json::from_slice::<Value>(body)
            .ok()
            .and_then(|v| v.get("dryRun").cloned())
            .is_some_and(|d| d.as_array().is_some_and(|a| a.iter().any(|x| x == "All")))
}

struct Request<'a> {
    method: &'a Method,
    query: &'a HashMap<String, String>,
    content_type: &'a str,
    user_agent: &'a str,
    body: &'a [u8],
    dry_run: bool,
}

impl Request<'_> {
    fn param(&self, name: &str) -> Option<&str> {
        self.query.get(name).map(String::as_str)
    }

    fn flag(&self, name: &str) -> bool {
        matches!(self.param(name), Some("true" | "1"))
    }

    /// `fieldManager`, else the client's name from User-Agent, as the real server defaults it.
    fn manager(&self) -> &str {
        self.param("fieldManager")
            .or_else(|| self.user_agent.split('/').next().filter(|s| !s.is_empty()))
            .unwrap_or("unknown")
    }

    fn json_body(&self) -> Result<Value, ApiError> {
        serde_json::from_slice(self.body)
            .map_err(|e| ApiError::bad_request(format!("request body is not JSON: {e}")))
    }
}

fn error_response(error: ApiError) -> Response {
    let code = StatusCode::from_u16(error.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (code, Json(error.status_body())).into_response()
}

fn dispatch(shared: &Shared, path: &ResourcePath, request: &Request) -> Result<Response, ApiError> {
    let crds = shared.store().crds();
    let not_served =
        || ApiError::unknown_resource(&format!("{}/{}", path.api_version(), path.plural));
    let (resource, version) = crds
        .find_plural(&path.group, &path.version, &path.plural)
        .ok_or_else(not_served)?;
    if resource.namespaced == path.namespace.is_none() && path.name.is_some() {
        return Err(not_served());
    }
    let part = match path.subresource.as_deref() {
        None => Part::Main,
        Some("status") if version.status_subresource => Part::Status,
        Some(_) => return Err(not_served()),
    };
    let target = Target {
        resource,
        version,
        namespace: path.namespace.as_deref(),
    };
    let name = path.name.as_deref();
    let ok = |value: Value| Ok((StatusCode::OK, Json(value)).into_response());
    match (request.method.clone(), name) {
        (Method::GET, None) if request.flag("watch") => start_watch(shared, &target, request),
        (Method::GET, None) => {
            let selector = Selector::parse(
                request.param("labelSelector"),
                request.param("fieldSelector"),
            )?;
            // Only a list that accepts any resourceVersion (`0`) may come from a real cache.
            let cached = request.param("resourceVersion") == Some("0");
            let stale = shared
                .faults()
                .stale
                .clone()
                .filter(|(_, which)| cached || *which == StaleLists::Every);
            match stale {
                Some((snapshot, _)) => {
                    shared
                        .faults()
                        .stale_lists_served
                        .push(target.resource.plural.clone());
                    ok(Store::list_from(&snapshot, &target, &selector))
                }
                None => ok(shared.store().list(&target, &selector)),
            }
        }
        (Method::GET, Some(name)) => ok(shared.store().get(&target, name)?),
        (Method::POST, None) => {
            let body = request.json_body()?;
            let audit = Audit::create(&target, &body);
            let created = write(shared, request.dry_run, audit, |store| {
                store.create(&target, body, request.manager())
            })?;
            Ok((StatusCode::CREATED, Json(created)).into_response())
        }
        (Method::PUT, Some(name)) => {
            let body = request.json_body()?;
            let audit = Audit::new("PUT", &target, name, resource_version_of(&body), false);
            ok(write(shared, request.dry_run, audit, |store| {
                store.replace(&target, name, body, part, request.manager())
            })?)
        }
        (Method::PATCH, Some(name)) => {
            let patch = PatchRequest {
                kind: PatchKind::from_content_type(request.content_type)?,
                body: request.body,
                field_manager: request.param("fieldManager"),
                force: request.flag("force"),
            };
            let existed = shared.store().get(&target, name).is_ok();
            let (precondition, guarded) = patch_precondition(patch.kind, request.body);
            let operation = format!("PATCH {}", request.content_type);
            let audit = Audit::new(&operation, &target, name, precondition, guarded);
            let patched = write(shared, request.dry_run, audit, |store| {
                store.patch(&target, name, patch, part)
            })?;
            let code = if existed {
                StatusCode::OK
            } else {
                StatusCode::CREATED
            };
            Ok((code, Json(patched)).into_response())
        }
        (Method::DELETE, Some(name)) => {
            let options: Value = serde_json::from_slice(request.body).unwrap_or(Value::Null);
            let precondition = options["preconditions"]["resourceVersion"].as_str();
            let audit = Audit::new(
                "DELETE",
                &target,
                name,
                precondition.map(str::to_owned),
                false,
            );
            ok(write(shared, request.dry_run, audit, |store| {
                store.delete(&target, name, precondition)
            })?)
        }
        (method, _) => Err(ApiError::method_not_allowed(method.as_str())),
    }
}

/// What the write audit records of a write before it runs.
struct Audit {
    operation: String,
    key: ObjectKey,
    precondition: Option<String>,
    guarded: bool,
}

impl Audit {
    fn new(
        operation: &str,
        target: &Target,
        name: &str,
        precondition: Option<String>,
        guarded: bool,
    ) -> Self {
        Audit {
            operation: operation.to_owned(),
            key: ObjectKey {
                group: target.resource.group.clone(),
                plural: target.resource.plural.clone(),
                namespace: target.namespace.unwrap_or_default().to_owned(),
                name: name.to_owned(),
            },
            precondition: precondition.filter(|rv| !rv.is_empty()),
            guarded,
        }
    }

    /// A create is guarded by itself: it is refused when the object exists.
    fn create(target: &Target, body: &Value) -> Self {
        let name = body["metadata"]["name"].as_str().unwrap_or_default();
        Audit::new("POST", target, name, None, true)
    }
}

fn resource_version_of(body: &Value) -> Option<String> {
    body["metadata"]["resourceVersion"]
        .as_str()
        .map(str::to_owned)
}

/// The resourceVersion a patch is conditioned on, and whether it carries another guard (a
/// JSON patch's `test` operations).
fn patch_precondition(kind: PatchKind, body: &[u8]) -> (Option<String>, bool) {
    match kind {
        PatchKind::Json => {
            let operations: Vec<Value> = serde_json::from_slice(body).unwrap_or_default();
            let tests: Vec<&Value> = operations.iter().filter(|o| o["op"] == "test").collect();
            let version = tests
                .iter()
                .find(|o| o["path"] == "/metadata/resourceVersion")
                .and_then(|o| o["value"].as_str())
                .map(str::to_owned);
            (version, !tests.is_empty())
        }
        PatchKind::Merge => (
            serde_json::from_slice::<Value>(body)
                .ok()
                .and_then(|b| resource_version_of(&b)),
            false,
        ),
        PatchKind::Apply => (
            super::patch::apply_config(body)
                .ok()
                .and_then(|b| resource_version_of(&b)),
            false,
        ),
    }
}

/// Runs a write, on a scratch copy of the store for `dryRun=All` (validated, never persisted),
/// and records it in the write audit with the resourceVersion it found.
fn write(
    shared: &Shared,
    dry_run: bool,
    audit: Audit,
    operation: impl FnOnce(&mut Store) -> Result<Value, ApiError>,
) -> Result<Value, ApiError> {
    let mut store = shared.store();
    let found = store.resource_version_of(&audit.key);
    let result = if dry_run {
        operation(&mut store.scratch_copy())
    } else {
        operation(&mut store)
    };
    drop(store);
    let status = match &result {
        Ok(_) => 200,
        Err(error) => error.code,
    };
    shared.faults().audit.push(AuditedWrite {
        operation: audit.operation,
        key: audit.key,
        precondition: audit.precondition,
        guarded: audit.guarded,
        found,
        status,
        dry_run,
    });
    result
}

fn start_watch(shared: &Shared, target: &Target, request: &Request) -> Result<Response, ApiError> {
    let selector = Selector::parse(
        request.param("labelSelector"),
        request.param("fieldSelector"),
    )?;
    let timeout_seconds = match request.param("timeoutSeconds") {
        Some(text) => text
            .parse()
            .map_err(|_| ApiError::bad_request(format!("invalid timeoutSeconds {text:?}")))?,
        None => 1800,
    };
    let options = WatchOptions {
        bookmarks: request.flag("allowWatchBookmarks"),
        send_initial_events: request.flag("sendInitialEvents"),
        timeout: Duration::from_secs(timeout_seconds),
    };
    let requested = request
        .param("resourceVersion")
        .filter(|rv| !rv.is_empty() && *rv != "0");
    let stale = shared.faults().stale.clone().map(|(snapshot, _)| snapshot);
    let store = shared.store();
    let (start, live): (Start, broadcast::Receiver<_>) = match requested {
        Some(rv) if !options.send_initial_events => {
            let from: u64 = rv
                .parse()
                .map_err(|_| ApiError::bad_request(format!("invalid resourceVersion {rv:?}")))?;
            match store.watch_from(from) {
                Ok((mut events, live)) => {
                    // A cache stuck at its snapshot has nothing after it to replay.
                    if let Some(snapshot) = &stale {
                        events.retain(|e| e.resource_version <= snapshot.resource_version);
                    }
                    (Start::History { events, from }, live)
                }
                Err(expired) => (Start::Expired(expired), store.subscribe()),
            }
        }
        _ => match stale {
            // A stale cache starts the stream with what it holds, then live changes: the
            // ones in between are missed.
            Some(snapshot) => {
                let live = store.subscribe();
                let objects = Store::list_from(&snapshot, target, &selector)["items"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default();
                let start = Start::CurrentState {
                    objects,
                    resource_version: snapshot.resource_version,
                };
                (start, live)
            }
            None => (
                Start::CurrentState {
                    objects: store.matching(target, &selector).collect(),
                    resource_version: store.resource_version(),
                },
                store.subscribe(),
            ),
        },
    };
    drop(store);
    let scope = WatchScope {
        group: target.resource.group.clone(),
        version: target.version.name.clone(),
        plural: target.resource.plural.clone(),
        kind: target.resource.kind.clone(),
        namespace: target.namespace.map(str::to_owned),
        selector,
    };
    Ok(watch::respond(
        scope,
        options,
        start,
        live,
        Arc::clone(&shared.faults),
    ))
}
