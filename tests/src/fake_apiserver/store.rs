//! The fake API server's state and its write semantics: one global resourceVersion counter,
//! optimistic concurrency (409 on a stale resourceVersion), generation bumps on spec changes,
//! the status subresource split, finalizers, schema validation of every write, and the bounded
//! event history that watches replay. Synchronous and free of HTTP, so the HTTP layer and the
//! test hooks share exactly the same semantics.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

use serde_json::{json, Value};
use tokio::sync::broadcast;

use super::api_error::ApiError;
use super::builtin_kinds::{is_service, service_defaults};
use super::faults::{Fate, Faults, Snapshot};
use super::field_ownership::FieldOwners;
use super::patch::{self, PatchKind};
use super::request_path::api_version;
use super::selectors::Selector;
use crate::crd::{CrdSet, ResourceKind, ServedVersion};
use crate::field_error::{FieldError, FieldErrorKind, ValidationErrors};

/// How many events the history keeps before older watches get 410 Gone.
pub const DEFAULT_HISTORY_LIMIT: usize = 1000;

/// Identity of a stored object.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectKey {
    /// API group.
    pub group: String,
    /// Plural resource name.
    pub plural: String,
    /// Namespace, empty for cluster-scoped kinds.
    pub namespace: String,
    /// Object name.
    pub name: String,
}

/// Watch event types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    /// The object was created.
    Added,
    /// The object changed.
    Modified,
    /// The object was deleted (the event carries its last state).
    Deleted,
}

impl EventType {
    /// The `type` field of a watch event line.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Added => "ADDED",
            Self::Modified => "MODIFIED",
            Self::Deleted => "DELETED",
        }
    }
}

/// One change, kept in the history and broadcast to live watches.
#[derive(Debug, Clone)]
pub struct Event {
    /// resourceVersion of the change.
    pub resource_version: u64,
    /// What happened.
    pub event_type: EventType,
    /// Which object.
    pub key: ObjectKey,
    /// The object after the change (before it, for deletions).
    pub object: Value,
    /// The object before the change, so selector watches can emit DELETED when it leaves.
    pub previous: Option<Value>,
    /// What live watches do with it (see [`Faults`]), decided when it happened.
    pub fate: Fate,
}

/// The start of a watch: retained events to replay, then the live receiver.
pub type Replay = (Vec<Arc<Event>>, broadcast::Receiver<Arc<Event>>);

/// Which part of the object a write may change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// The main resource: with a status subresource, `status` changes are ignored.
    Main,
    /// The `/status` subresource: only `status` changes.
    Status,
}

/// What a request addresses, resolved against the CRDs.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    /// The kind.
    pub resource: &'a ResourceKind,
    /// The version the request uses (objects are returned in it).
    pub version: &'a ServedVersion,
    /// Namespace of the request; `None` for all namespaces.
    pub namespace: Option<&'a str>,
}

/// A PATCH request's parameters.
#[derive(Debug, Clone, Copy)]
pub struct PatchRequest<'a> {
    /// Body format.
    pub kind: PatchKind,
    /// Raw body.
    pub body: &'a [u8],
    /// Field manager (required for apply).
    pub field_manager: Option<&'a str>,
    /// `force=true` for apply.
    pub force: bool,
}

/// All server state.
pub struct Store {
    crds: Arc<CrdSet>,
    objects: BTreeMap<ObjectKey, Value>,
    owners: HashMap<ObjectKey, FieldOwners>,
    last_resource_version: u64,
    history: VecDeque<Arc<Event>>,
    history_limit: usize,
    /// Every event with a resourceVersion at or below this is gone from the history.
    compacted_through: u64,
    events: broadcast::Sender<Arc<Event>>,
    injected_conflicts: usize,
    /// `(plural, name, count)`: the next `count` writes of that object fail with 409.
    injected_object_conflicts: Vec<(String, String, usize)>,
    /// Writes to let through before one fails with a 500 (`None`: no failure injected).
    injected_failure: Option<usize>,
    /// Watch faults, which decide each event's fate.
    faults: Arc<std::sync::Mutex<Faults>>,
}

fn now() -> String {
    jiff::Timestamp::now()
        .round(jiff::Unit::Second)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

/// Sets `object[field]` to `value`, or removes the field for `None`.
fn set_or_remove(object: &mut Value, field: &str, value: Option<Value>) {
    match (value, object.as_object_mut()) {
        (Some(value), Some(map)) => {
            map.insert(field.to_owned(), value);
        }
        (None, Some(map)) => {
            map.remove(field);
        }
        (_, None) => {}
    }
}

fn meta_str<'v>(object: &'v Value, field: &str) -> Option<&'v str> {
    object.get("metadata")?.get(field)?.as_str()
}

/// The object without the fields the server maintains, to decide whether a write changed anything.
fn comparable(object: &Value) -> Value {
    let mut copy = object.clone();
    if let Some(meta) = copy.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("resourceVersion");
        meta.remove("managedFields");
    }
    copy
}

/// The object without metadata (and status, when it has its own subresource): what `generation` tracks.
fn generation_relevant(object: &Value, status_subresource: bool) -> Value {
    let mut copy = object.clone();
    if let Some(map) = copy.as_object_mut() {
        map.remove("metadata");
        if status_subresource {
            map.remove("status");
        }
    }
    copy
}

impl Store {
    /// An empty store serving the kinds of `crds`, its events' fates decided by `faults`.
    pub fn new(crds: Arc<CrdSet>, faults: Arc<std::sync::Mutex<Faults>>) -> Self {
        let (events, _) = broadcast::channel(4096);
        Self {
            crds,
            objects: BTreeMap::new(),
            owners: HashMap::new(),
            last_resource_version: 0,
            history: VecDeque::new(),
            history_limit: DEFAULT_HISTORY_LIMIT,
            compacted_through: 0,
            events,
            injected_conflicts: 0,
            injected_object_conflicts: Vec::new(),
            injected_failure: None,
            faults,
        }
    }

    /// A copy for a server-side dry run: writes to it validate and compute the result but reach
    /// no watch and leave the real store untouched.
    pub fn scratch_copy(&self) -> Self {
        Self {
            crds: Arc::clone(&self.crds),
            objects: self.objects.clone(),
            owners: self.owners.clone(),
            last_resource_version: self.last_resource_version,
            history: VecDeque::new(),
            history_limit: self.history_limit,
            compacted_through: self.last_resource_version,
            events: broadcast::channel(1).0,
            injected_conflicts: 0,
            injected_object_conflicts: Vec::new(),
            injected_failure: None,
            faults: Arc::default(),
        }
    }

    /// The CRDs served.
    pub fn crds(&self) -> Arc<CrdSet> {
        Arc::clone(&self.crds)
    }

    /// The current (latest) resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.last_resource_version
    }

    /// Makes the next `count` writes fail with 409 Conflict.
    pub fn fail_next_writes(&mut self, count: usize) {
        self.injected_conflicts = count;
    }

    /// Makes the next `count` writes (create, replace, patch, delete; dry runs do not count)
    /// of object `name` of `plural`, in any namespace, fail with 409 Conflict: a storm on one
    /// object, others written meanwhile as usual.
    pub fn fail_next_writes_of(&mut self, plural: &str, name: &str, count: usize) {
        self.injected_object_conflicts
            .retain(|(p, n, _)| !(p == plural && n == name));
        self.injected_object_conflicts
            .push((plural.to_owned(), name.to_owned(), count));
    }

    /// Lets `successes` writes through, then fails the next one with a 500 Internal Server
    /// Error without changing anything (once): a server failing in the middle of a change.
    pub fn fail_write_after(&mut self, successes: usize) {
        self.injected_failure = Some(successes);
    }

    /// Consumes one injected fault, if any: called by every write entry point.
    fn injected_fault(&mut self, resource: &ResourceKind, name: &str) -> Result<(), ApiError> {
        if self.injected_conflicts > 0 {
            self.injected_conflicts -= 1;
            return Err(ApiError::conflict(resource, name));
        }
        let storm = self
            .injected_object_conflicts
            .iter_mut()
            .find(|(plural, object, left)| {
                *plural == resource.plural && object == name && *left > 0
            });
        if let Some((_, _, left)) = storm {
            *left -= 1;
            return Err(ApiError::conflict(resource, name));
        }
        match self.injected_failure {
            Some(0) => {
                self.injected_failure = None;
                return Err(ApiError::internal(resource, name));
            }
            Some(left) => self.injected_failure = Some(left - 1),
            None => {}
        }
        Ok(())
    }

    /// Drops the whole event history: watches from any earlier resourceVersion get 410 Gone.
    pub fn compact_history(&mut self) {
        self.history.clear();
        self.compacted_through = self.last_resource_version;
    }

    /// Sets how many events the history keeps.
    pub fn set_history_limit(&mut self, limit: usize) {
        self.history_limit = limit;
        self.trim_history();
    }

    fn trim_history(&mut self) {
        while self.history.len() > self.history_limit {
            if let Some(dropped) = self.history.pop_front() {
                self.compacted_through = dropped.resource_version;
            }
        }
    }

    /// The stored object a write (replace, delete) acts on, after consuming an injected fault:
    /// 404 when there is none.
    fn existing_for_write(
        &mut self,
        target: &Target,
        name: &str,
    ) -> Result<(ObjectKey, Value), ApiError> {
        self.injected_fault(target.resource, name)?;
        let key = Self::key(target, name);
        let current = self
            .objects
            .get(&key)
            .cloned()
            .ok_or_else(|| ApiError::not_found(target.resource, name))?;
        Ok((key, current))
    }

    fn key(target: &Target, name: &str) -> ObjectKey {
        ObjectKey {
            group: target.resource.group.clone(),
            plural: target.resource.plural.clone(),
            namespace: target.namespace.unwrap_or_default().to_owned(),
            name: name.to_owned(),
        }
    }

    /// An object as returned to a client of `version`: storage is version-agnostic, like
    /// Istio's CRDs whose versions share one schema and need no conversion.
    fn present(target: &Target, object: &Value) -> Value {
        let mut object = object.clone();
        object["apiVersion"] = json!(api_version(&target.resource.group, &target.version.name));
        object
    }

    /// GET of one object.
    pub fn get(&self, target: &Target, name: &str) -> Result<Value, ApiError> {
        self.objects
            .get(&Self::key(target, name))
            .map(|object| Self::present(target, object))
            .ok_or_else(|| ApiError::not_found(target.resource, name))
    }

    /// The objects a list or watch of `target` sees, in name order.
    pub fn matching<'s>(
        &'s self,
        target: &'s Target<'s>,
        selector: &'s Selector,
    ) -> impl Iterator<Item = Value> + 's {
        self.objects
            .iter()
            .filter(move |(key, _)| {
                key.group == target.resource.group
                    && key.plural == target.resource.plural
                    && target.namespace.is_none_or(|ns| key.namespace == ns)
            })
            .filter(move |(_, object)| selector.matches(object))
            .map(move |(_, object)| Self::present(target, object))
    }

    /// The resourceVersion of a stored object, `None` when there is none.
    pub fn resource_version_of(&self, key: &ObjectKey) -> Option<String> {
        meta_str(self.objects.get(key)?, "resourceVersion").map(str::to_owned)
    }

    /// A frozen copy of every object, for stale reads.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            objects: self.objects.clone(),
            resource_version: self.last_resource_version,
        }
    }

    /// LIST answered from `snapshot`, as a cache that stopped at its resourceVersion would.
    pub fn list_from(snapshot: &Snapshot, target: &Target, selector: &Selector) -> Value {
        let items: Vec<Value> = snapshot
            .objects
            .iter()
            .filter(|(key, _)| {
                key.group == target.resource.group
                    && key.plural == target.resource.plural
                    && target.namespace.is_none_or(|ns| key.namespace == ns)
            })
            .filter(|(_, object)| selector.matches(object))
            .map(|(_, object)| Self::present(target, object))
            .collect();
        json!({
            "apiVersion": format!("{}/{}", target.resource.group, target.version.name),
            "kind": target.resource.list_kind,
            "metadata": {"resourceVersion": snapshot.resource_version.to_string()},
            "items": items,
        })
    }

    /// LIST: a `<Kind>List` with the current resourceVersion. `limit`/`continue` are ignored (all
    /// items in one page, no continue token), which clients accept.
    pub fn list(&self, target: &Target, selector: &Selector) -> Value {
        let items: Vec<Value> = self.matching(target, selector).collect();
        json!({
            "apiVersion": api_version(&target.resource.group, &target.version.name),
            "kind": target.resource.list_kind,
            "metadata": {"resourceVersion": self.last_resource_version.to_string()},
            "items": items,
        })
    }

    /// POST: creates `body`; 409 AlreadyExists when the name is taken.
    pub fn create(
        &mut self,
        target: &Target,
        body: Value,
        manager: &str,
    ) -> Result<Value, ApiError> {
        let name = self.name_for_create(target, &body)?;
        self.injected_fault(target.resource, &name)?;
        if meta_str(&body, "resourceVersion").is_some_and(|rv| !rv.is_empty()) {
            return Err(ApiError::unprocessable(format!(
                "{} {name:?}: resourceVersion should not be set on objects to be created",
                target.resource.qualified_plural()
            )));
        }
        let key = Self::key(target, &name);
        if self.objects.contains_key(&key) {
            return Err(ApiError::already_exists(target.resource, &name));
        }
        let stored = self.commit(target, key.clone(), None, body, Part::Main)?;
        self.owners
            .entry(key)
            .or_default()
            .record_update(&json!({}), &stored, manager);
        Ok(Self::present(target, &stored))
    }

    /// The name a create uses: `metadata.name`, or `generateName` plus a suffix.
    fn name_for_create(&self, target: &Target, body: &Value) -> Result<String, ApiError> {
        self.check_namespace(target, body)?;
        if let Some(name) = meta_str(body, "name") {
            return Ok(name.to_owned());
        }
        match meta_str(body, "generateName") {
            Some(prefix) => Ok(format!("{prefix}{:05x}", self.last_resource_version + 1)),
            None => Err(ApiError::invalid(
                target.resource,
                "",
                &ValidationErrors(vec![FieldError::new(
                    "metadata.name",
                    FieldErrorKind::Required,
                    "name or generateName is required",
                )]),
            )),
        }
    }

    /// The body's namespace, when given, must be the URL's (400 like the real server).
    fn check_namespace(&self, target: &Target, body: &Value) -> Result<(), ApiError> {
        match (meta_str(body, "namespace"), target.namespace) {
            (Some(body_ns), Some(url_ns)) if body_ns != url_ns => Err(ApiError::bad_request(format!(
                "the namespace of the provided object ({body_ns}) does not match the namespace sent on the request ({url_ns})"
            ))),
            _ => Ok(()),
        }
    }

    /// PUT: replaces the object; `metadata.resourceVersion` is required and must be current.
    pub fn replace(
        &mut self,
        target: &Target,
        name: &str,
        body: Value,
        part: Part,
        manager: &str,
    ) -> Result<Value, ApiError> {
        self.check_namespace(target, &body)?;
        if meta_str(&body, "name").is_some_and(|body_name| body_name != name) {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({}) does not match the name on the URL ({name})",
                meta_str(&body, "name").unwrap_or_default()
            )));
        }
        let (key, current) = self.existing_for_write(target, name)?;
        match meta_str(&body, "resourceVersion") {
            None | Some("") => {
                return Err(ApiError::unprocessable(format!(
                    "{} {name:?} is invalid: metadata.resourceVersion: Invalid value: 0x0: must be specified for an update",
                    target.resource.qualified_plural()
                )))
            }
            Some(rv) if Some(rv) != meta_str(&current, "resourceVersion") => {
                return Err(ApiError::conflict(target.resource, name));
            }
            Some(_) => {}
        }
        self.write_existing(target, key, current, body, part, manager)
    }

    /// PATCH: applies the patch to the current object; a resourceVersion inside the patch must
    /// be current. Apply creates a missing object and requires `fieldManager`.
    pub fn patch(
        &mut self,
        target: &Target,
        name: &str,
        request: PatchRequest,
        part: Part,
    ) -> Result<Value, ApiError> {
        self.injected_fault(target.resource, name)?;
        let key = Self::key(target, name);
        let current = self.objects.get(&key).cloned();
        let apply_patch = match request.kind {
            PatchKind::Apply => return self.apply(target, key, current, request, part),
            PatchKind::Merge => patch::merge_patch,
            PatchKind::Json => patch::json_patch,
        };
        let Some(current) = current else {
            return Err(ApiError::not_found(target.resource, name));
        };
        let patched = apply_patch(&current, request.body)?;
        if meta_str(&patched, "resourceVersion") != meta_str(&current, "resourceVersion") {
            return Err(ApiError::conflict(target.resource, name));
        }
        self.write_existing(
            target,
            key,
            current,
            patched,
            part,
            request.field_manager.unwrap_or("unknown"),
        )
    }

    /// Server-side apply (see [`FieldOwners`] for the approximation); creates a missing object.
    fn apply(
        &mut self,
        target: &Target,
        key: ObjectKey,
        current: Option<Value>,
        request: PatchRequest,
        part: Part,
    ) -> Result<Value, ApiError> {
        let name = key.name.clone();
        let Some(manager) = request.field_manager.filter(|m| !m.is_empty()) else {
            return Err(ApiError::bad_request(
                "PATCH of type application/apply-patch+yaml requires the fieldManager query parameter".into(),
            ));
        };
        let config = patch::apply_config(request.body)?;
        self.check_namespace(target, &config)?;
        if meta_str(&config, "name").is_some_and(|n| n != name) {
            return Err(ApiError::bad_request(format!(
                "the name of the applied object does not match the URL ({name})"
            )));
        }
        let mut owners = self.owners.get(&key).cloned().unwrap_or_default();
        let merged = owners
            .apply(current.as_ref(), &config, manager, request.force)
            .map_err(|conflicts| ApiError::apply_conflict(target.resource, &name, &conflicts))?;
        if let Some(current) = &current {
            if meta_str(&merged, "resourceVersion") != meta_str(current, "resourceVersion") {
                return Err(ApiError::conflict(target.resource, &name));
            }
        }
        let stored = self.commit(target, key.clone(), current, merged, part)?;
        if self.objects.contains_key(&key) {
            self.owners.insert(key, owners);
        }
        Ok(Self::present(target, &stored))
    }

    fn write_existing(
        &mut self,
        target: &Target,
        key: ObjectKey,
        current: Value,
        body: Value,
        part: Part,
        manager: &str,
    ) -> Result<Value, ApiError> {
        let stored = self.commit(target, key.clone(), Some(current.clone()), body, part)?;
        if let Some(owners) = self.owners.get_mut(&key) {
            owners.record_update(&current, &stored, manager);
        }
        Ok(Self::present(target, &stored))
    }

    /// DELETE: removes the object, or only marks it (deletionTimestamp) while finalizers remain.
    /// `precondition_rv`, from DeleteOptions, must be current when given.
    pub fn delete(
        &mut self,
        target: &Target,
        name: &str,
        precondition_rv: Option<&str>,
    ) -> Result<Value, ApiError> {
        let (key, current) = self.existing_for_write(target, name)?;
        if precondition_rv.is_some_and(|rv| Some(rv) != meta_str(&current, "resourceVersion")) {
            return Err(ApiError::conflict(target.resource, name));
        }
        let has_finalizers = current["metadata"]["finalizers"]
            .as_array()
            .is_some_and(|f| !f.is_empty());
        if has_finalizers {
            if current["metadata"].get("deletionTimestamp").is_some() {
                return Ok(Self::present(target, &current));
            }
            let mut marked = current.clone();
            marked["metadata"]["deletionTimestamp"] = json!(now());
            let stored = self.store(key, Some(current), marked);
            return Ok(Self::present(target, &stored));
        }
        let stored = self.remove(key, current);
        Ok(Self::present(target, &stored))
    }

    /// The write pipeline shared by create, replace, patch and apply.
    fn commit(
        &mut self,
        target: &Target,
        key: ObjectKey,
        current: Option<Value>,
        body: Value,
        part: Part,
    ) -> Result<Value, ApiError> {
        if !body.is_object() {
            return Err(ApiError::bad_request(
                "the object must be a JSON object".into(),
            ));
        }
        let status_subresource = target.version.status_subresource;
        // The part of the write that is ignored comes from the current object.
        let (mut object, kept_status) = match (part, &current) {
            (Part::Status, Some(current)) => (current.clone(), body.get("status").cloned()),
            (Part::Status, None) => return Err(ApiError::not_found(target.resource, &key.name)),
            (Part::Main, _) if status_subresource => {
                let status = current.as_ref().and_then(|c| c.get("status")).cloned();
                (body, status)
            }
            (Part::Main, _) => {
                let status = body.get("status").cloned();
                (body, status)
            }
        };
        set_or_remove(&mut object, "status", kept_status);
        if !object["metadata"].is_object() {
            object["metadata"] = json!({});
        }
        object["apiVersion"] = json!(api_version(&target.resource.group, &target.version.name));
        object["kind"] = json!(target.resource.kind);
        object["metadata"]["name"] = json!(key.name);
        if target.resource.namespaced {
            object["metadata"]["namespace"] = json!(key.namespace);
        }
        let meta = &mut object["metadata"];
        match &current {
            Some(current) => {
                for field in [
                    "uid",
                    "creationTimestamp",
                    "generation",
                    "deletionTimestamp",
                ] {
                    set_or_remove(meta, field, current["metadata"].get(field).cloned());
                }
            }
            None => {
                meta["uid"] = json!(format!(
                    "00000000-0000-4000-8000-{:012x}",
                    self.last_resource_version + 1
                ));
                meta["creationTimestamp"] = json!(now());
                meta["generation"] = json!(1);
                set_or_remove(meta, "deletionTimestamp", None);
            }
        }
        self.crds.apply_defaults(&mut object);
        if part == Part::Main && is_service(&target.resource.group, &target.resource.kind) {
            service_defaults(
                &mut object,
                current.as_ref(),
                self.last_resource_version + 1,
            )
            .map_err(|errors| ApiError::invalid(target.resource, &key.name, &errors))?;
        }
        if let Err(errors) = self.crds.validate(&object) {
            return Err(ApiError::invalid(target.resource, &key.name, &errors));
        }
        if let Some(current) = &current {
            if comparable(current) == comparable(&object) {
                return Ok(current.clone());
            }
            if generation_relevant(current, status_subresource)
                != generation_relevant(&object, status_subresource)
            {
                let generation = current["metadata"]["generation"].as_i64().unwrap_or(0);
                object["metadata"]["generation"] = json!(generation + 1);
            }
        }
        let being_deleted = object["metadata"].get("deletionTimestamp").is_some();
        let finalizers_left = object["metadata"]["finalizers"]
            .as_array()
            .is_some_and(|f| !f.is_empty());
        if being_deleted && !finalizers_left {
            return Ok(self.remove(key, object));
        }
        Ok(self.store(key, current, object))
    }

    /// Stores a changed object under a new resourceVersion and records the event.
    fn store(&mut self, key: ObjectKey, previous: Option<Value>, mut object: Value) -> Value {
        self.last_resource_version += 1;
        object["metadata"]["resourceVersion"] = json!(self.last_resource_version.to_string());
        let event_type = if previous.is_some() {
            EventType::Modified
        } else {
            EventType::Added
        };
        self.objects.insert(key.clone(), object.clone());
        self.record(Event {
            resource_version: self.last_resource_version,
            event_type,
            key,
            object: object.clone(),
            previous,
            fate: Fate::Deliver,
        });
        object
    }

    /// Deletes an object; the DELETED event carries its last state under a new resourceVersion.
    fn remove(&mut self, key: ObjectKey, mut object: Value) -> Value {
        self.last_resource_version += 1;
        object["metadata"]["resourceVersion"] = json!(self.last_resource_version.to_string());
        self.objects.remove(&key);
        self.owners.remove(&key);
        self.record(Event {
            resource_version: self.last_resource_version,
            event_type: EventType::Deleted,
            key,
            object: object.clone(),
            previous: None,
            fate: Fate::Deliver,
        });
        object
    }

    fn record(&mut self, mut event: Event) {
        event.fate = self
            .faults
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .fate(&event);
        let event = Arc::new(event);
        self.history.push_back(Arc::clone(&event));
        self.trim_history();
        // No receiver simply means no watch is open.
        let _ = self.events.send(event);
    }

    /// Starts a watch after `from` (a resourceVersion): the retained events since then, plus a
    /// receiver for live events, taken under the same lock so none is lost. 410 when events
    /// after `from` have been compacted away.
    pub fn watch_from(&self, from: u64) -> Result<Replay, ApiError> {
        if from < self.compacted_through {
            return Err(ApiError::expired(from, self.compacted_through));
        }
        let replay = self
            .history
            .iter()
            .filter(|e| e.resource_version > from)
            .cloned()
            .collect();
        Ok((replay, self.events.subscribe()))
    }

    /// The states the retained history holds of one object, oldest first, with the event type.
    pub fn history_of(&self, plural: &str, namespace: &str, name: &str) -> Vec<(String, Value)> {
        self.history
            .iter()
            .filter(|e| {
                e.key.plural == plural && e.key.namespace == namespace && e.key.name == name
            })
            .map(|e| (e.event_type.as_str().to_owned(), e.object.clone()))
            .collect()
    }

    /// A live-event receiver, for watches that start from the current state.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.events.subscribe()
    }

    /// Field ownership of an object, for tests of server-side apply.
    pub fn owners(&self, key: &ObjectKey) -> Option<&FieldOwners> {
        self.owners.get(key)
    }
}
