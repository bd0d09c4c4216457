//! An in-process fake Kubernetes API server over real HTTP (axum on 127.0.0.1, port chosen by
//! the OS) for the custom resources of the loaded CRDs and a few built-in kinds (see
//! [`builtin_kinds`]). See the crate docs for usage and for what is approximated.

mod api_error;
mod builtin_kinds;
mod faults;
mod field_ownership;
mod http;
mod patch;
mod request_path;
mod selectors;
mod store;
mod watch;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::oneshot;

pub use api_error::ApiError;
pub use builtin_kinds::builtin_kinds;
pub use faults::{AuditedWrite, Chaos, EventMatch, Fate, Snapshot, StaleLists, WatchFault};
pub use field_ownership::FieldOwners;
pub use http::RecordedRequest;
pub use request_path::{parse as parse_path, ResourcePath};
pub use selectors::Selector;
pub use store::{ObjectKey, DEFAULT_HISTORY_LIMIT};

use crate::crd::CrdSet;
use http::Shared;
use store::{Part, PatchRequest, Store, Target};

/// A running fake API server; stops (and drops open watches) when dropped.
pub struct FakeApiServer {
    address: SocketAddr,
    shared: Arc<Shared>,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl FakeApiServer {
    /// Starts a server for the kinds of `crds` (plus [`builtin_kinds`]) on its own thread and
    /// runtime, so it works from synchronous tests (driving a `stickyctl` child process) and
    /// async ones alike.
    ///
    /// # Panics
    /// When no loopback port can be bound or the runtime cannot start: the test cannot run.
    pub fn start(crds: CrdSet) -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("bind 127.0.0.1:0 for the fake API server");
        listener
            .set_nonblocking(true)
            .expect("non-blocking listener");
        let address = listener.local_addr().expect("listener address");
        let mut kinds = builtin_kinds();
        kinds.merge(crds);
        let faults = Arc::default();
        let shared = Arc::new(Shared {
            store: Mutex::new(Store::new(Arc::new(kinds), Arc::clone(&faults))),
            requests: Mutex::new(Vec::new()),
            faults,
        });
        let (shutdown, stopped) = oneshot::channel::<()>();
        let router = http::router(Arc::clone(&shared));
        let thread = std::thread::Builder::new()
            .name(format!("fake-apiserver-{}", address.port()))
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("tokio runtime for the fake API server");
                runtime.block_on(async move {
                    let listener =
                        tokio::net::TcpListener::from_std(listener).expect("tokio listener");
                    tokio::select! {
                        served = axum::serve(listener, router) => {
                            if let Err(e) = served {
                                eprintln!("fake API server stopped: {e}");
                            }
                        }
                        _ = stopped => {}
                    }
                });
                // Open watch streams never end by themselves; drop them instead of waiting.
                runtime.shutdown_background();
            })
            .expect("spawn the fake API server thread");
        Self {
            address,
            shared,
            shutdown: Some(shutdown),
            thread: Some(thread),
        }
    }

    /// Base URL, e.g. `http://127.0.0.1:41234`.
    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// A kube-rs client configuration pointing at this server (namespace `default`).
    pub fn kube_config(&self) -> kube::Config {
        let uri = self.url().parse().expect("the server URL is a valid URI");
        kube::Config::new(uri)
    }

    /// A kubeconfig document pointing at this server, for child processes (`KUBECONFIG=...`).
    pub fn kubeconfig_yaml(&self, namespace: &str) -> String {
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: {}\nusers:\n- name: fake\n  user: {{}}\ncontexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\n    namespace: {namespace}\ncurrent-context: fake\n",
            self.url()
        )
    }

    /// Writes [`FakeApiServer::kubeconfig_yaml`] to `path`.
    pub fn write_kubeconfig(&self, path: &Path, namespace: &str) -> std::io::Result<()> {
        std::fs::write(path, self.kubeconfig_yaml(namespace))
    }

    /// Makes the next `count` writes (create, replace, patch, delete; HTTP or hook) fail with a
    /// 409 Conflict without changing anything: a conflict storm for retry logic.
    pub fn fail_next_writes(&self, count: usize) {
        self.shared.store().fail_next_writes(count);
    }

    /// Makes the next `count` writes of object `name` of `plural` (`httproutes`), in any
    /// namespace, fail with a 409 Conflict without changing anything (dry runs do not count):
    /// a conflict storm on one object, as when another writer keeps changing it, while
    /// writes of everything else go through.
    pub fn fail_next_writes_of(&self, plural: &str, name: &str, count: usize) {
        self.shared.store().fail_next_writes_of(plural, name, count);
    }

    /// Lets `successes` writes through (create, replace, patch, delete; dry runs do not count),
    /// then fails the next one with a 500 without changing anything: a failure mid-change.
    pub fn fail_write_after(&self, successes: usize) {
        self.shared.store().fail_write_after(successes);
    }

    /// Drops the next `times` watch events that match, on every watch that would see them:
    /// missed events. A watch resumed from an earlier resourceVersion still replays them.
    pub fn drop_watch_events(&self, matching: EventMatch, times: usize) {
        self.shared.faults().add(WatchFault {
            matching,
            fate: Fate::Drop,
            times,
        });
    }

    /// Delays the next `times` watch events that match by `delay`; the events after them are
    /// delivered meanwhile, so they arrive out of order: late and reordered events.
    pub fn delay_watch_events(&self, matching: EventMatch, times: usize, delay: Duration) {
        self.shared.faults().add(WatchFault {
            matching,
            fate: Fate::Delay(delay),
            times,
        });
    }

    /// Drops and delays (so reorders) a random share of every watch event from now on,
    /// reproducibly from the seed; `None` stops it.
    pub fn watch_chaos(&self, chaos: Option<Chaos>) {
        self.shared.faults().set_chaos(chaos);
    }

    /// Stops every watch fault (events already delayed still arrive late).
    pub fn clear_watch_faults(&self) {
        self.shared.faults().clear_watch_faults();
    }

    /// resourceVersions of the watch events dropped so far, and of those delayed.
    pub fn faulted_events(&self) -> (Vec<u64>, Vec<u64>) {
        let faults = self.shared.faults();
        (faults.dropped().to_vec(), faults.delayed().to_vec())
    }

    /// The objects as they are now, for [`FakeApiServer::serve_stale_lists`] later.
    pub fn snapshot(&self) -> Snapshot {
        self.shared.store().snapshot()
    }

    /// From now on the server answers like a cache stuck at `snapshot`, the stale reads Sieve
    /// injects: the lists `which` names get the objects as they were then, with that
    /// resourceVersion, however they changed since; a watch from the current state or
    /// replaying history sees nothing after the snapshot, then the live changes (the ones in
    /// between are missed). GETs stay current, as quorum reads are. See
    /// [`FakeApiServer::expire_watches`] to make running reflectors list again.
    pub fn serve_stale_lists(&self, snapshot: Snapshot, which: StaleLists) {
        self.shared.faults().stale = Some((snapshot, which));
    }

    /// Ends every open watch with an ERROR event carrying a 410 Expired, as a server that lost
    /// the history does: kube-rs watchers then list again (from a stale cache, if one is on).
    pub fn expire_watches(&self) {
        self.shared.faults().expire.send_modify(|epoch| *epoch += 1);
    }

    /// How many lists were answered from a stale snapshot so far.
    pub fn stale_lists_served(&self) -> usize {
        self.shared.faults().stale_lists_served.len()
    }

    /// How many lists of `plural` were answered from a stale snapshot so far.
    pub fn stale_lists_of(&self, plural: &str) -> usize {
        let faults = self.shared.faults();
        faults
            .stale_lists_served
            .iter()
            .filter(|p| *p == plural)
            .count()
    }

    /// Lists answer from the current state again; returns how many were stale.
    pub fn serve_fresh_lists(&self) -> usize {
        let mut faults = self.shared.faults();
        faults.stale = None;
        faults.stale_lists_served.len()
    }

    /// Every write (dry runs included) the server received, with the resourceVersion it was
    /// conditioned on and the one it found: see [`AuditedWrite::accepted_stale`] and
    /// [`AuditedWrite::unconditional_overwrite`].
    pub fn write_audit(&self) -> Vec<AuditedWrite> {
        self.shared.faults().audit.clone()
    }

    /// The objects the retained history holds for `plural`/`namespace`/`name`, oldest first:
    /// every state it went through (deleted ones included, with `type` `DELETED`).
    pub fn history_of(&self, plural: &str, namespace: &str, name: &str) -> Vec<(String, Value)> {
        self.shared.store().history_of(plural, namespace, name)
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.requests().clone()
    }

    /// The requests that could have changed state (see [`RecordedRequest::is_write`]).
    pub fn write_requests(&self) -> Vec<RecordedRequest> {
        self.requests()
            .into_iter()
            .filter(RecordedRequest::is_write)
            .collect()
    }

    /// Forgets the recorded requests, e.g. after seeding.
    pub fn clear_requests(&self) {
        self.shared.requests().clear();
    }

    /// The latest resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.shared.store().resource_version()
    }

    /// Drops the event history: watches from any earlier resourceVersion get 410 Gone.
    pub fn compact_history(&self) {
        self.shared.store().compact_history();
    }

    /// Sets how many events are kept for watches to replay (default [`DEFAULT_HISTORY_LIMIT`]).
    pub fn set_history_limit(&self, limit: usize) {
        self.shared.store().set_history_limit(limit);
    }

    /// Runs `operation` on the store for the kind of `api_version`/`kind` in `namespace`.
    fn with_target<T>(
        &self,
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
        operation: impl FnOnce(&mut Store, &Target) -> Result<T, ApiError>,
    ) -> Result<T, ApiError> {
        let mut store = self.shared.store();
        let crds = store.crds();
        let (resource, version) = crds
            .find(api_version, kind)
            .ok_or_else(|| ApiError::unknown_resource(&format!("{api_version} {kind}")))?;
        operation(
            &mut store,
            &Target {
                resource,
                version,
                namespace,
            },
        )
    }

    /// Creates an object directly (validated like a POST; not recorded as a request): seeding.
    pub fn create(&self, object: Value) -> Result<Value, ApiError> {
        let api_version = object["apiVersion"].as_str().unwrap_or_default().to_owned();
        let kind = object["kind"].as_str().unwrap_or_default().to_owned();
        let namespace = object["metadata"]["namespace"]
            .as_str()
            .unwrap_or("default")
            .to_owned();
        self.with_target(&api_version, &kind, Some(&namespace), |store, target| {
            store.create(target, object, "test-seed")
        })
    }

    /// An object, or `None` when it does not exist.
    pub fn get(&self, api_version: &str, kind: &str, namespace: &str, name: &str) -> Option<Value> {
        self.with_target(api_version, kind, Some(namespace), |store, target| {
            store.get(target, name)
        })
        .ok()
    }

    /// All objects of a kind in all namespaces, in namespace/name order.
    pub fn list(&self, api_version: &str, kind: &str) -> Vec<Value> {
        self.with_target(api_version, kind, None, |store, target| {
            Ok(store.matching(target, &Selector::default()).collect())
        })
        .unwrap_or_default()
    }

    /// Changes an object out of band, like another operator or `kubectl edit` would: reads it,
    /// lets `edit` change it, and writes it back (validated, new resourceVersion, watch event).
    pub fn update(
        &self,
        api_version: &str,
        kind: &str,
        namespace: &str,
        name: &str,
        edit: impl FnOnce(&mut Value),
    ) -> Result<Value, ApiError> {
        self.with_target(api_version, kind, Some(namespace), |store, target| {
            let mut object = store.get(target, name)?;
            edit(&mut object);
            store.replace(target, name, object, Part::Main, "test-edit")
        })
    }

    /// Writes the status subresource out of band (as a controller would through `/status`).
    pub fn update_status(
        &self,
        api_version: &str,
        kind: &str,
        namespace: &str,
        name: &str,
        status: Value,
    ) -> Result<Value, ApiError> {
        self.with_target(api_version, kind, Some(namespace), |store, target| {
            let body = serde_json::json!({"status": status}).to_string();
            let patch = PatchRequest {
                kind: patch::PatchKind::Merge,
                body: body.as_bytes(),
                field_manager: Some("test-edit"),
                force: false,
            };
            store.patch(target, name, patch, Part::Status)
        })
    }

    /// Deletes an object out of band.
    pub fn delete(
        &self,
        api_version: &str,
        kind: &str,
        namespace: &str,
        name: &str,
    ) -> Result<Value, ApiError> {
        self.with_target(api_version, kind, Some(namespace), |store, target| {
            store.delete(target, name, None)
        })
    }

    /// Field managers of an object and the fields each owns (server-side apply bookkeeping).
    pub fn field_owners(
        &self,
        api_version: &str,
        kind: &str,
        namespace: &str,
        name: &str,
    ) -> Option<FieldOwners> {
        let store = self.shared.store();
        let crds = store.crds();
        let (resource, _) = crds.find(api_version, kind)?;
        let key = ObjectKey {
            group: resource.group.clone(),
            plural: resource.plural.clone(),
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        };
        store.owners(&key).cloned()
    }
}

impl Drop for FakeApiServer {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            // The server thread may already be gone; nothing else to stop then.
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
