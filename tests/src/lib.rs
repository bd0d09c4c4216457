//! Test support shared by the workspace-level tests: Kubernetes CRD schema validation and a
//! fake Kubernetes API server that validates Istio objects against their CRD schemas.
//!
//! # Validating objects
//! ```no_run
//! use sticky_canary_tests::{all_crds, CrdSet};
//! // Istio's CRDs (ISTIO_CRDS or ../shared/istio/crds.gen.yaml), Gateway API's
//! // (GATEWAY_API_CRDS, a directory or a file, or sigs.k8s.io/gateway-api@v1.6.0's
//! // config/crd/standard in the Go module cache) plus the CRDs in istio/.
//! // None (after a loud "SKIPPED" banner) when one is missing; panics when CI=true.
//! let Some(crds) = all_crds() else { return };
//! let vs = serde_json::json!({"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
//!     "metadata": {"name": "web"}, "spec": {"hosts": ["web"]}});
//! crds.validate(&vs).expect("valid");
//! ```
//! Unknown fields are errors (the real server prunes them silently), except under
//! `x-kubernetes-preserve-unknown-fields: true`. Errors name the field:
//! `spec.http[0].match[0].headers.x-sticky-version: unknown field "exactly"`.
//! Not enforced: CEL rules (`x-kubernetes-validations`; listed by [`CrdSet::cel_rules`]),
//! and formats other than date-time, byte, int32, int64, uint32. The schema's `default`s
//! ([`CrdSet::apply_defaults`]) are set by the fake API server on every write, as the real
//! one does (Gateway API's CRDs have many; Istio's none).
//!
//! # The fake API server
//! ```no_run
//! use sticky_canary_tests::{all_crds, FakeApiServer};
//! let Some(crds) = all_crds() else { return };
//! let server = FakeApiServer::start(crds);          // 127.0.0.1:<free port>, stops on drop
//! let config = server.kube_config();                 // kube::Client::try_from(config)
//! let dir = std::env::temp_dir();
//! server.write_kubeconfig(&dir.join("kubeconfig"), "default").unwrap(); // for child processes
//! server.fail_next_writes(3);                        // next 3 writes -> 409 Conflict
//! server.fail_next_writes_of("httproutes", "web", 3); // next 3 writes of that one -> 409
//! let writes = server.write_requests().len();        // e.g. 0 after a --dry-run command
//! let vs = server.get("networking.istio.io/v1", "VirtualService", "default", "web");
//! ```
//! Served, for the kinds of the loaded CRDs (Gateway API's HTTPRoute among them with
//! [`all_crds`]) and the built-in `events.k8s.io/v1` Event (what a controller's event recorder
//! writes), core `v1` Secret and core `v1` Service (defaulted and given a cluster IP as the
//! real registry does; see [`fake_apiserver::builtin_kinds`]), namespaced:
//! `/apis/{group}/{version}/namespaces/{ns}/{plural}[/{name}[/status]]` (`/api/v1/...` for the
//! core group) and the all-namespaces
//! list/watch `/apis/{group}/{version}/{plural}` (with the same selectors: how stickyctl finds
//! the WasmPlugins it manages wherever they are). Unknown group/plural: 404.
//! - GET, LIST (`labelSelector`, `fieldSelector` on metadata.name/namespace; `limit` is ignored:
//!   one page), POST (409 AlreadyExists; `generateName`), PUT (resourceVersion required and must
//!   be current, else 409 Conflict), DELETE (finalizers honoured; `preconditions.resourceVersion`
//!   in the DeleteOptions body must be current, else 409 Conflict; 404 when absent).
//! - PATCH by Content-Type: merge patch, JSON patch (with `test`), apply (`fieldManager`
//!   required, `force=true`, creates when missing); strategic merge patch -> 415. A patch that
//!   carries `metadata.resourceVersion` must match the current one (409).
//! - Status subresource: main-resource writes ignore `status`, `/status` writes change only it.
//! - One global resourceVersion counter; `generation` bumps when anything but metadata (and
//!   status, with the subresource) changes; a write that changes nothing is a no-op (same
//!   resourceVersion, no event). `dryRun=All` validates without persisting.
//! - WATCH (`watch=true`): the current state as ADDED (no or `0` resourceVersion, or
//!   `sendInitialEvents=true` with the initial-events-end bookmark), or the retained history
//!   after `resourceVersion=N`, then live ADDED/MODIFIED/DELETED until `timeoutSeconds`; an ERROR
//!   event with a 410 Expired Status when N is older than the bounded history.
//! - Every write is validated against the CRD schema and metadata rules: 422 Invalid with one
//!   cause per field.
//! - Faults on demand, the ones Sieve injects into controllers: watch events dropped
//!   (`drop_watch_events`), delayed and so reordered (`delay_watch_events`), a seeded random
//!   mix (`watch_chaos`), stale lists from a snapshot (`snapshot`, `serve_stale_lists`), open
//!   watches ended with 410 (`expire_watches`); and a write audit (`write_audit`) telling
//!   writes from a stale read and unconditional overwrites.
//!
//! Approximated: server-side apply tracks ownership per leaf field with atomic lists and merges
//! with merge-patch rules (no `managedFields` rendered; see [`FieldOwners`]); objects are stored
//! once per kind and presented in the requested version (Istio's versions share a schema);
//! lists are not paginated; `null` fields that are not `nullable` are accepted and stored as
//! sent (the real server prunes them); no authentication, discovery, or cluster-scoped
//! single-object paths.

pub mod crd;
pub mod crds_path;
pub mod fake_apiserver;
pub mod field_error;
pub mod object_meta;
pub mod samples;
pub mod schema_validation;

pub use crd::{CelRule, CrdSet, ResourceKind, ServedVersion};
pub use crds_path::{
    all_crds, gateway_api_crds, gateway_api_crds_dir, istio_crds, istio_crds_path, project_crds,
    repo_root,
};
pub use fake_apiserver::{
    ApiError, AuditedWrite, Chaos, EventMatch, FakeApiServer, Fate, RecordedRequest, Snapshot,
    StaleLists, WatchFault,
};
pub use field_error::{FieldError, FieldErrorKind, ValidationErrors};
