//! A cluster for the controller tests, on one of two backends: the in-process fake API server
//! or a real kube-apiserver (with etcd, RBAC, Istio's CRDs and ours: `sticky_canary_e2e`'s
//! [`ControlPlane`]). Either way it holds the user's VirtualService in [`NS`], gives a
//! kubeconfig and a kube client for it, runs `stickyctl` commands in-process and the controller
//! in the background. Each test binary uses a part of it.
//!
//! # Which tests run where
//!
//! A test of behaviour a real server has (commands end to end, dry runs, idempotency, racing
//! operators and their resourceVersion conflicts, watches driving the controller, the
//! finalizer, the status subresource, preconditioned deletes, Istio's schemas) is written
//! once with [`on_both_backends!`], which makes a `<name>::fake` and a `<name>::real` test of
//! it. What only the fake can be made to do on demand stays fake-only: injected 409 storms,
//! and counting every request the code makes (the RBAC verbs, the order of writes, the number
//! of 409s): a real server keeps no request log a test can read. Those fake-only details sit
//! inside shared tests behind [`Cluster::fake`]. What only the real server shows (CEL rules,
//! a real RBAC authorizer) is in `real_apiserver.rs`.
//!
//! # Sharing the real control plane
//!
//! One control plane per test binary, started by the first real-backend test (about 5 s) on a
//! thread of its own that lives as long as the process: its processes die with the thread that
//! spawned them (`PR_SET_PDEATHSIG`), so no test thread may own them. At exit that thread
//! drops it, which removes its directory too. Real-backend tests of one
//! binary take turns ([`TURN`]): they all use [`NS`] and the gateway's shared WasmPlugin in
//! [`GATEWAY_NS`], and each starts by deleting what the previous one left there. One control
//! plane at a time, and one test on it at a time, is what two shared cores can carry. Without
//! the control-plane binaries, or without Istio's CRDs under `CI=true`, a real-backend test
//! fails.
#![allow(dead_code, unused_macros)]

use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::mpsc;
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use kube::api::{ApiResource, DeleteParams, DynamicObject, GroupVersionKind, PostParams};
use kube::Api;
use serde_json::{json, Value};
use sticky_canary_e2e::mesh::control_plane::ControlPlane;
use sticky_canary_tests::crds_path::missing_input;
use sticky_canary_tests::{all_crds, istio_crds_path, FakeApiServer};
use stickyctl::cli::{run, Outcome};

/// The namespace every test works in.
pub const NS: &str = "prod";
/// Where the ingress gateway runs, and so its shared WasmPlugin.
pub const GATEWAY_NS: &str = "istio-system";
/// The shared WasmPlugin of the ingress gateway (`istio: ingressgateway`).
pub const GATEWAY_PLUGIN: &str = "sticky-canary-gateway-istio-ingressgateway";
/// The single-rollout WasmPlugin earlier versions wrote for rollout `shop`, in [`NS`].
pub const LEGACY_PLUGIN: &str = "sticky-canary-shop";
/// apiVersion and kind of Istio's WasmPlugin.
pub const WP: (&str, &str) = ("extensions.istio.io/v1alpha1", "WasmPlugin");
/// apiVersion and kind of the rollout.
pub const SC: (&str, &str) = ("stickycanary.io/v1alpha1", "StickyCanary");
/// apiVersion and kind of the Gateway API's HTTPRoute.
pub const HTTPROUTE: (&str, &str) = ("gateway.networking.k8s.io/v1", "HTTPRoute");
/// Where the Gateway API gateway of the HTTPRoute API's tests runs (Gateway `public`), and so
/// the WasmPlugin of its rollouts.
pub const GATEWAY_API_NS: &str = "istio-ingress";
/// apiVersion and kind of a core Service.
pub const SVC: (&str, &str) = ("v1", "Service");
/// Service `shop`'s full host, which the HTTPRoute API needs in `spec.service`.
pub const SHOP_HOST: &str = "shop.prod.svc.cluster.local";
/// The user's HTTPRoute to service `shop` in the HTTPRoute API's tests.
pub const ROUTE: &str = "storefront";
/// The label stickyctl puts on what it writes.
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "stickyctl");

/// The user's HTTPRoute `storefront` to Service `shop` through Gateway `public` of
/// [`GATEWAY_API_NS`], as a user writes it: the server fills in the defaults of Gateway
/// API's schema (the path match's type, the backend's group, kind and weight, the parent's
/// group and kind), the fake as the real one.
pub fn storefront_route() -> Value {
    json!({"apiVersion": HTTPROUTE.0, "kind": HTTPROUTE.1,
        "metadata": {"name": ROUTE, "namespace": NS},
        "spec": {
            "parentRefs": [{"name": "public", "namespace": GATEWAY_API_NS}],
            "hostnames": ["shop.example.com"],
            "rules": [{"matches": [{"path": {"value": "/shop"}}],
                       "backendRefs": [{"name": "shop", "port": 80}]}]}})
}

/// The user's Service `shop`: every version's pods (`app: shop`), port 80 to 8080.
pub fn shop_service() -> Value {
    json!({"apiVersion": SVC.0, "kind": SVC.1,
        "metadata": {"name": "shop", "namespace": NS, "labels": {"app": "shop"}},
        "spec": {"selector": {"app": "shop"},
                 "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}})
}

/// The kinds stickyctl writes (and the tests seed): what a real-backend test starts without,
/// and whose writes [`Cluster::writes`] reports there.
const WRITTEN_KINDS: [(&str, &str); 4] = [
    SC,
    ("networking.istio.io/v1", "VirtualService"),
    ("networking.istio.io/v1", "DestinationRule"),
    WP,
];

/// What else a real-backend test starts without: the objects `stickyctl plan` edits, and
/// what the controller-manager (when a test runs it) makes of Deployments. Deleting a
/// Deployment does not delete its ReplicaSets and Pods: no garbage collector runs. HTTPRoutes
/// only where the API serves them ([`Cluster::serve_httproutes`]).
const PLAN_KINDS: [(&str, &str); 5] = [
    ("networking.k8s.io/v1", "Ingress"),
    HTTPROUTE,
    ("apps/v1", "Deployment"),
    ("apps/v1", "ReplicaSet"),
    ("v1", "Pod"),
];

/// Writes a test body once for both backends: `on_both_backends! { async fn name(backend) {
/// ... } }` makes the tests `name::fake` and `name::real`, each with `backend` bound to its
/// [`Backend`].
#[macro_export]
macro_rules! on_both_backends {
    ($(#[$meta:meta])* async fn $name:ident($backend:ident) $body:block) => {
        $(#[$meta])*
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn fake() {
                let $backend = $crate::support::Backend::Fake;
                $body
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn real() {
                let $backend = $crate::support::Backend::Real;
                $body
            }
        }
    };
}

/// Which API server a test runs against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// The in-process fake API server of `sticky_canary_tests`.
    Fake,
    /// The real kube-apiserver of the shared [`ControlPlane`].
    Real,
}

impl Backend {
    /// A cluster with the demo service's VirtualService; `None` (after a loud banner) when
    /// Istio's CRDs (or, on the fake, the Gateway API's) are not available outside CI.
    pub fn cluster_with(self, http: Value) -> Option<Cluster> {
        Some(Cluster::around(self.api()?, http))
    }

    /// A cluster with nothing of the user's in it yet; `None` as [`Backend::cluster_with`].
    pub fn empty_cluster(self) -> Option<Cluster> {
        Some(Cluster::bare(self.api()?))
    }

    /// [`Backend::cluster_with`] the user's one route to the service.
    pub fn cluster(self) -> Option<Cluster> {
        self.cluster_with(users_route())
    }

    fn api(self) -> Option<ApiServer> {
        Some(match self {
            Backend::Fake => ApiServer::Fake(FakeApiServer::start(all_crds()?)),
            Backend::Real => ApiServer::Real(Real::take_turn()?),
        })
    }
}

/// The user's one route to the service.
fn users_route() -> Value {
    json!([{"name": "shop", "match": [{"uri": {"prefix": "/shop"}}],
        "route": [{"destination": {"host": "shop", "port": {"number": 8080}}}]}])
}

/// A fake cluster ([`Backend::cluster`]) whose API also serves the Gateway API's HTTPRoute:
/// every fake does now ([`all_crds`] has the Gateway API's CRDs); `None` (after a loud
/// banner) when a CRD file is missing outside CI.
pub fn fake_cluster_serving_httproutes() -> Option<Cluster> {
    Backend::Fake.cluster()
}

impl Cluster {
    /// The cluster of `api`, with nothing of the user's in it.
    fn bare(api: ApiServer) -> Cluster {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let kubeconfig = dir.path().join("kubeconfig");
        match &api {
            ApiServer::Fake(server) => server
                .write_kubeconfig(&kubeconfig, NS)
                .expect("write the kubeconfig"),
            ApiServer::Real(real) => {
                std::fs::copy(&real.kubeconfig, &kubeconfig).expect("copy the kubeconfig");
            }
        }
        Cluster {
            api,
            kubeconfig,
            _dir: dir,
        }
    }

    /// The cluster of `api`, with the demo service's VirtualService of `http` routes.
    fn around(api: ApiServer, http: Value) -> Cluster {
        let cluster = Self::bare(api);
        cluster
            .create(
                json!({"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
                "metadata": {"name": "shop", "namespace": NS},
                "spec": {"hosts": ["shop.example.com"], "http": http}}),
            )
            .expect("create the user's VirtualService");
        cluster
    }
}

/// A fake cluster with the demo service's VirtualService (see [`Backend::cluster_with`]).
pub fn cluster_with(http: Value) -> Option<Cluster> {
    Backend::Fake.cluster_with(http)
}

/// A fake cluster with the user's one route to the service.
pub fn cluster() -> Option<Cluster> {
    Backend::Fake.cluster()
}

/// A cluster of either backend, and a kubeconfig file for it.
pub struct Cluster {
    api: ApiServer,
    pub kubeconfig: PathBuf,
    _dir: tempfile::TempDir,
}

enum ApiServer {
    Fake(FakeApiServer),
    Real(Real),
}

/// Runs `future` to its end from synchronous test code inside the test's (multi-threaded)
/// runtime, so that `eventually` conditions can read the real server as they read the fake.
pub fn block<F: Future>(future: F) -> F::Output {
    tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(future))
}

/// Where the API serves `kind` of `api_version`: the plural is the kind's, lowercased, with
/// `-y` turned into `-ies` and `-s` into `-ses` (every kind these tests touch follows that rule).
fn api_resource(api_version: &str, kind: &str) -> ApiResource {
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let lower = kind.to_ascii_lowercase();
    let plural = match lower.strip_suffix('y') {
        Some(stem) => format!("{stem}ies"),
        None if lower.ends_with('s') => format!("{lower}es"),
        None => format!("{lower}s"),
    };
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), &plural)
}

fn to_value(object: DynamicObject) -> Value {
    serde_json::to_value(object).expect("a DynamicObject serializes")
}

impl Cluster {
    /// The backend this cluster runs on.
    pub fn backend(&self) -> Backend {
        match self.api {
            ApiServer::Fake(_) => Backend::Fake,
            ApiServer::Real(_) => Backend::Real,
        }
    }

    /// The fake API server, for what only it can do (injected conflicts, the request log);
    /// `None` on the real backend.
    pub fn fake(&self) -> Option<&FakeApiServer> {
        match &self.api {
            ApiServer::Fake(server) => Some(server),
            ApiServer::Real(_) => None,
        }
    }

    /// A kube client with every right (no RBAC on the fake, the admin identity on the real).
    pub fn kube_client(&self) -> kube::Client {
        match &self.api {
            ApiServer::Fake(server) => {
                kube::Client::try_from(server.kube_config()).expect("a client for the fake")
            }
            ApiServer::Real(real) => real.client.clone(),
        }
    }

    fn dynamic(
        &self,
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
    ) -> Api<DynamicObject> {
        let resource = api_resource(api_version, kind);
        match namespace {
            Some(ns) => Api::namespaced_with(self.kube_client(), ns, &resource),
            None => Api::all_with(self.kube_client(), &resource),
        }
    }

    /// Creates an object (seeding, or another actor's write).
    pub fn create(&self, object: Value) -> Result<Value, String> {
        match &self.api {
            ApiServer::Fake(server) => server.create(object).map_err(|e| format!("{e:?}")),
            ApiServer::Real(_) => {
                let namespace = object["metadata"]["namespace"]
                    .as_str()
                    .unwrap_or("default");
                let api = self.dynamic(
                    object["apiVersion"].as_str().unwrap_or_default(),
                    object["kind"].as_str().unwrap_or_default(),
                    Some(namespace),
                );
                let object: DynamicObject =
                    serde_json::from_value(object.clone()).map_err(|e| e.to_string())?;
                block(api.create(&PostParams::default(), &object))
                    .map(to_value)
                    .map_err(|e| e.to_string())
            }
        }
    }

    /// An object in `namespace`, or `None` when it does not exist.
    pub fn get_in(
        &self,
        api_version: &str,
        kind: &str,
        namespace: &str,
        name: &str,
    ) -> Option<Value> {
        match &self.api {
            ApiServer::Fake(server) => server.get(api_version, kind, namespace, name),
            ApiServer::Real(_) => {
                let api = self.dynamic(api_version, kind, Some(namespace));
                block(api.get_opt(name))
                    .unwrap_or_else(|e| panic!("get {kind} {namespace}/{name}: {e}"))
                    .map(to_value)
            }
        }
    }

    /// All objects of a kind in all namespaces, in namespace/name order.
    pub fn list(&self, api_version: &str, kind: &str) -> Vec<Value> {
        match &self.api {
            ApiServer::Fake(server) => server.list(api_version, kind),
            ApiServer::Real(_) => {
                let api = self.dynamic(api_version, kind, None);
                block(api.list(&Default::default()))
                    .unwrap_or_else(|e| panic!("list {kind}: {e}"))
                    .items
                    .into_iter()
                    .map(to_value)
                    .collect()
            }
        }
    }

    /// Changes an object out of band, like another operator or `kubectl edit` would: reads it,
    /// lets `edit` change it, and writes it back with the resourceVersion it read (again from
    /// a fresh read when someone, the controller for one, wrote in between).
    pub fn update(
        &self,
        api_version: &str,
        kind: &str,
        namespace: &str,
        name: &str,
        mut edit: impl FnMut(&mut Value),
    ) -> Result<Value, String> {
        match &self.api {
            ApiServer::Fake(server) => server
                .update(api_version, kind, namespace, name, edit)
                .map_err(|e| format!("{e:?}")),
            ApiServer::Real(_) => {
                let api = self.dynamic(api_version, kind, Some(namespace));
                for _ in 0..20 {
                    let mut object = to_value(block(api.get(name)).map_err(|e| e.to_string())?);
                    edit(&mut object);
                    let object: DynamicObject =
                        serde_json::from_value(object).map_err(|e| e.to_string())?;
                    match block(api.replace(name, &PostParams::default(), &object)) {
                        Err(kube::Error::Api(status)) if status.code == 409 => continue,
                        other => return other.map(to_value).map_err(|e| e.to_string()),
                    }
                }
                Err(format!("{kind} {namespace}/{name} keeps changing"))
            }
        }
    }

    /// Deletes an object out of band (with finalizers on it, it is only marked for deletion).
    pub fn delete(
        &self,
        api_version: &str,
        kind: &str,
        namespace: &str,
        name: &str,
    ) -> Result<(), String> {
        match &self.api {
            ApiServer::Fake(server) => server
                .delete(api_version, kind, namespace, name)
                .map(drop)
                .map_err(|e| format!("{e:?}")),
            ApiServer::Real(_) => {
                let api = self.dynamic(api_version, kind, Some(namespace));
                block(api.delete(name, &DeleteParams::default()))
                    .map(drop)
                    .map_err(|e| e.to_string())
            }
        }
    }

    /// Has the real API server serve the Gateway API's HTTPRoute: its CRD (from
    /// [`sticky_canary_tests::crds_path::httproute_crd`]) applied, idempotently, and HTTPRoutes
    /// listed in [`NS`]. `false` (after a loud banner) when the CRD file is missing outside
    /// CI; panics on the fake backend, which serves them from the start ([`all_crds`]).
    pub fn serve_httproutes(&self) -> bool {
        assert_eq!(
            self.backend(),
            Backend::Real,
            "the HTTPRoute CRD is installed on the real API server only"
        );
        let Some(crd) = sticky_canary_tests::crds_path::httproute_crd() else {
            return false;
        };
        with_plane(move |plane| plane.apply_yaml(&crd))
            .unwrap_or_else(|e| panic!("applying the HTTPRoute CRD: {e:?}"));
        let api = self.dynamic(HTTPROUTE.0, HTTPROUTE.1, Some(NS));
        let deadline = std::time::Instant::now() + PATIENCE;
        while let Err(e) = block(api.list(&Default::default())) {
            assert!(
                std::time::Instant::now() < deadline,
                "HTTPRoutes not served {PATIENCE:?} after their CRD was applied: {e}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        true
    }

    /// Forgets the writes so far: [`Cluster::writes`] reports the ones after this.
    pub fn clear_writes(&self) {
        match &self.api {
            ApiServer::Fake(server) => server.clear_requests(),
            ApiServer::Real(real) => {
                let versions = self.resource_versions();
                *real.since.lock().unwrap_or_else(|e| e.into_inner()) = versions;
            }
        }
    }

    /// The writes since [`Cluster::clear_writes`]: on the fake every request that could have
    /// changed something; on the real server (which logs nothing a test can read) every
    /// object of the kinds stickyctl writes that was created, changed or deleted.
    pub fn writes(&self) -> Vec<String> {
        match &self.api {
            ApiServer::Fake(server) => server
                .write_requests()
                .iter()
                .map(|r| format!("{} {}?{} -> {}", r.method, r.path, r.query, r.status))
                .collect(),
            ApiServer::Real(real) => {
                let before = real.since.lock().unwrap_or_else(|e| e.into_inner()).clone();
                let now = self.resource_versions();
                let mut changed: Vec<String> = now
                    .iter()
                    .filter(|(object, version)| before.get(*object) != Some(version))
                    .map(|(object, _)| format!("written: {object}"))
                    .collect();
                changed.extend(
                    before
                        .keys()
                        .filter(|object| !now.contains_key(*object))
                        .map(|object| format!("deleted: {object}")),
                );
                changed
            }
        }
    }

    /// `kind namespace/name` -> resourceVersion of every object of [`WRITTEN_KINDS`].
    fn resource_versions(&self) -> BTreeMap<String, String> {
        let mut versions = BTreeMap::new();
        for (api_version, kind) in WRITTEN_KINDS {
            for object in self.list(api_version, kind) {
                let meta = &object["metadata"];
                versions.insert(
                    format!(
                        "{kind} {}/{}",
                        meta["namespace"].as_str().unwrap_or(""),
                        meta["name"].as_str().unwrap_or("")
                    ),
                    meta["resourceVersion"].as_str().unwrap_or("").to_owned(),
                );
            }
        }
        versions
    }

    /// Who the history says ran the commands: on the real server the harness's admin (its
    /// SelfSubjectReview), on the fake (which serves no review, as a server before 1.28) the
    /// user the kubeconfig's context names.
    pub fn user(&self) -> &'static str {
        match self.api {
            ApiServer::Fake(_) => "fake",
            ApiServer::Real(_) => "sticky-harness",
        }
    }

    /// Runs `stickyctl` in-process against this cluster.
    pub async fn sticky(&self, args: &[&str]) -> Outcome {
        let kubeconfig = self.kubeconfig.to_str().expect("a UTF-8 temporary path");
        let mut argv = vec!["stickyctl", "--kubeconfig", kubeconfig];
        argv.extend_from_slice(args);
        run(argv).await
    }

    /// Runs `stickyctl`, asserting exit code 0; its standard output.
    pub async fn ok(&self, args: &[&str]) -> String {
        let out = self.sticky(args).await;
        assert_eq!(out.code, 0, "{args:?}: {}{}", out.stdout, out.stderr);
        out.stdout
    }

    /// An object of the namespace, which must exist.
    pub fn get(&self, api_version: &str, kind: &str, name: &str) -> Value {
        self.get_in(api_version, kind, NS, name)
            .unwrap_or_else(|| panic!("{kind} {name} missing"))
    }

    /// The rollout `shop`.
    pub fn rollout(&self) -> Value {
        self.get(SC.0, SC.1, "shop")
    }

    /// Edits the rollout `shop` behind stickyctl's back, as a GitOps sync or a hand edit would.
    pub fn edit_rollout(&self, edit: impl FnMut(&mut Value)) {
        self.update(SC.0, SC.1, NS, "shop", edit)
            .expect("edit the rollout");
    }

    /// The shared WasmPlugin of the ingress gateway, if it exists.
    pub fn gateway_plugin(&self) -> Option<Value> {
        self.get_in(WP.0, WP.1, GATEWAY_NS, GATEWAY_PLUGIN)
    }

    /// The entry of rollout `name` of [`NS`] in the gateway's shared WasmPlugin, if any.
    pub fn plugin_entry(&self, name: &str) -> Option<Value> {
        let key = format!("{NS}/{name}");
        self.gateway_plugin()?["spec"]["pluginConfig"]["rollouts"]
            .as_array()?
            .iter()
            .find(|e| e["name"] == key.as_str())
            .cloned()
    }

    /// The names of the entries of the gateway's shared WasmPlugin, in order.
    pub fn plugin_rollouts(&self) -> Vec<String> {
        self.gateway_plugin()
            .map(|p| names(&p["spec"]["pluginConfig"]["rollouts"]))
            .unwrap_or_default()
    }

    /// Seeds the single-rollout WasmPlugin an earlier stickyctl wrote for rollout `shop`:
    /// `sticky-canary-shop` in the rollout's namespace, with one rollout's config.
    pub fn seed_legacy_plugin(&self) {
        self.create(json!({"apiVersion": WP.0, "kind": WP.1,
            "metadata": {"name": LEGACY_PLUGIN, "namespace": NS,
                         "labels": {"app.kubernetes.io/managed-by": "stickyctl"}},
            "spec": {"selector": {"matchLabels": {"istio": "ingressgateway"}},
                     "url": "oci://registry.internal/sticky-canary/filter:0.1.0",
                     "phase": "AUTHZ", "failStrategy": "FAIL_OPEN",
                     "pluginConfig": {"versions": [{"name": "v1", "weight": 100.0}]}}}))
            .expect("seed the legacy WasmPlugin");
    }

    /// The legacy single-rollout WasmPlugin of rollout `shop`, if it is still there.
    pub fn legacy_plugin(&self) -> Option<Value> {
        self.get_in(WP.0, WP.1, NS, LEGACY_PLUGIN)
    }

    /// The versions and weights of rollout `shop` in the gateway's shared WasmPlugin.
    pub fn plugin_weights(&self) -> Value {
        self.plugin_entry("shop")
            .unwrap_or_else(|| panic!("no entry {NS}/shop in {GATEWAY_NS}/{GATEWAY_PLUGIN}"))
            ["config"]["versions"]
            .clone()
    }

    /// Names of the VirtualService's routes, in order.
    pub fn route_names(&self) -> Vec<String> {
        names(&self.get("networking.istio.io/v1", "VirtualService", "shop")["spec"]["http"])
    }

    /// Names of the DestinationRule's subsets, in order.
    pub fn subsets(&self) -> Vec<String> {
        names(&self.get("networking.istio.io/v1", "DestinationRule", "shop")["spec"]["subsets"])
    }

    /// `stickyctl status -o json`.
    pub async fn status(&self) -> Value {
        serde_json::from_str(&self.ok(&["status", "-o", "json"]).await).expect("status JSON")
    }

    /// The cluster objects say exactly what the rollout says.
    pub async fn assert_consistent(&self) {
        let rollout = self.rollout();
        let status = self.status().await;
        assert_eq!(status["inSync"], true, "{status:#}");
        assert_same(&self.plugin_weights(), &rollout["spec"]["versions"]);
        let versions: Vec<String> = names(&rollout["spec"]["versions"]);
        let expected_subsets: Vec<String> = versions
            .iter()
            .map(|v| format!("sticky-canary-{v}"))
            .collect();
        assert_eq!(self.subsets(), expected_subsets);
        let routes: Vec<String> = self
            .route_names()
            .into_iter()
            .filter(|r| r.starts_with("sticky-canary-shop-"))
            .collect();
        let expected_routes: Vec<String> = versions
            .iter()
            .map(|v| format!("sticky-canary-shop-{v}"))
            .collect();
        assert_eq!(routes, expected_routes);
    }

    /// Seeds what a user of the HTTPRoute API has: Service `shop` and HTTPRoute `storefront`
    /// to it ([`shop_service`], [`storefront_route`]); the route as stored.
    pub fn seed_http_route(&self) -> Value {
        self.create(shop_service())
            .expect("create the user's Service");
        self.create(storefront_route())
            .expect("create the user's HTTPRoute")
    }

    /// The user's HTTPRoute `storefront`.
    pub fn http_route(&self) -> Value {
        self.get(HTTPROUTE.0, HTTPROUTE.1, ROUTE)
    }

    /// The names of the HTTPRoute's rules, in order, `(user's)` for an unnamed one.
    pub fn http_route_rules(&self) -> Vec<String> {
        self.http_route()["spec"]["rules"]
            .as_array()
            .map(|rules| {
                rules
                    .iter()
                    .map(|r| r["name"].as_str().unwrap_or("(user's)").to_owned())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The names of the Services of [`NS`], in order.
    pub fn services(&self) -> Vec<String> {
        self.list(SVC.0, SVC.1)
            .iter()
            .filter(|s| s["metadata"]["namespace"] == NS)
            .filter_map(|s| s["metadata"]["name"].as_str().map(str::to_owned))
            .collect()
    }

    /// The WasmPlugins stickyctl manages in `namespace`.
    pub fn managed_plugins_in(&self, namespace: &str) -> Vec<Value> {
        self.list(WP.0, WP.1)
            .into_iter()
            .filter(|p| {
                p["metadata"]["namespace"] == namespace
                    && p["metadata"]["labels"][MANAGED_BY.0] == MANAGED_BY.1
            })
            .collect()
    }

    /// The versions and weights of rollout `shop` in the one managed WasmPlugin of the
    /// Gateway API gateway's namespace ([`GATEWAY_API_NS`]), if it is there.
    pub fn gateway_api_weights(&self) -> Option<Value> {
        let key = format!("{NS}/shop");
        let plugins = self.managed_plugins_in(GATEWAY_API_NS);
        let [plugin] = &plugins[..] else { return None };
        plugin["spec"]["pluginConfig"]["rollouts"]
            .as_array()?
            .iter()
            .find(|e| e["name"] == key.as_str())
            .map(|e| e["config"]["versions"].clone())
    }

    /// `stickyctl init` of Service `shop` by its full host at stable `v1` on the HTTPRoute API
    /// (detected), the filter on Gateway `public` of [`GATEWAY_API_NS`]; `extra` flags after.
    pub async fn init_http_route(&self, extra: &[&str]) -> String {
        let mut args = vec![
            "init",
            "--service",
            SHOP_HOST,
            "--stable",
            "v1",
            "--target-ref",
            "Gateway/public",
            "--gateway-namespace",
            GATEWAY_API_NS,
        ];
        args.extend_from_slice(extra);
        self.ok(&args).await
    }

    /// `stickyctl init` of service `shop` at stable `v1`, on the default placement: the
    /// ingress gateway (`istio: ingressgateway` in `istio-system`).
    pub async fn init(&self) {
        self.ok(&["init", "--service", "shop", "--stable", "v1"])
            .await;
    }
}

/// Asserts that `actual` is `expected` with numbers compared by value: the real server
/// answers `30` for the `30.0` stickyctl wrote, as [`render::same`] allows.
#[track_caller]
pub fn assert_same(actual: &Value, expected: &Value) {
    assert!(
        render::same(actual, expected),
        "{actual:#}\nis not\n{expected:#}"
    );
}

/// The `name`s of a list of routes, subsets or versions.
pub fn names(list: &Value) -> Vec<String> {
    list.as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|i| i["name"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// The controller running in the background for one namespace; stopped when dropped.
pub struct RunningController(tokio::task::JoinHandle<()>);

impl Drop for RunningController {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Cluster {
    /// Starts the controller on this cluster's namespace.
    pub fn start_controller(&self) -> RunningController {
        start_controller_with(self.kube_client())
    }
}

/// Starts the controller on [`NS`] with `client` (and its rights).
pub fn start_controller_with(client: kube::Client) -> RunningController {
    RunningController(tokio::spawn(runtime::controller::run(
        client,
        Some(NS),
        None::<prometheus::Prometheus>,
    )))
}

/// Starts the controller on [`NS`] with `client`, reading automatic rollouts' metrics from
/// `metrics`.
pub fn start_controller_with_metrics<M>(client: kube::Client, metrics: M) -> RunningController
where
    M: runtime::metrics::Metrics + Send + 'static,
{
    RunningController(tokio::spawn(runtime::controller::run(
        client,
        Some(NS),
        Some(metrics),
    )))
}

/// How long a test waits for the cluster to get somewhere: a loaded 2-core CI machine took over
/// 30 s once.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// Waits until `done` holds, polling; panics naming `what` after [`PATIENCE`], still far below
/// the controller's 300 s resync, so passing proves a watch triggered the work, not the resync.
pub async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let wait = async {
        while !done() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(PATIENCE, wait)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting until {what}"));
}

/// Work for the control plane's thread, which owns it.
type Job = Box<dyn FnOnce(&ControlPlane) + Send>;

/// The shared control plane: where its admin kubeconfig is, and the way to its thread.
struct Plane {
    admin_kubeconfig: PathBuf,
    /// Taken at exit ([`stop_plane`]), which ends the thread's loop.
    jobs: Mutex<Option<mpsc::Sender<Job>>>,
    /// Answers once the thread has dropped the control plane.
    stopped: Mutex<mpsc::Receiver<()>>,
}

/// The control plane of this test binary, started by the first real-backend test.
static PLANE: OnceLock<Result<Plane, String>> = OnceLock::new();
/// One real-backend test at a time on the shared control plane (see the module doc).
static TURN: Mutex<()> = Mutex::new(());

/// Starts the control plane on a thread that keeps it (and so its processes) for the life of
/// the test process, with the namespaces the tests write in; [`stop_plane`] drops it at exit.
fn start_plane() -> Result<Plane, String> {
    let crds = istio_crds_path();
    let (ready, started) = mpsc::channel();
    let (jobs, queue) = mpsc::channel::<Job>();
    let (stop, stopped) = mpsc::channel();
    std::thread::Builder::new()
        .name("control-plane".into())
        .spawn(move || {
            let begun = std::time::Instant::now();
            let plane = ControlPlane::start(&crds).and_then(|plane| {
                plane.apply(&json!({"apiVersion": "v1", "kind": "Namespace",
                                    "metadata": {"name": NS}}))?;
                let kubeconfig = plane.admin_kubeconfig(NS)?;
                Ok((plane, kubeconfig))
            });
            match plane {
                Ok((plane, kubeconfig)) => {
                    eprintln!("control plane up in {:?}", begun.elapsed());
                    // The receiver waits for this; it cannot have gone.
                    let _ = ready.send(Ok(kubeconfig));
                    // Serve jobs until stop_plane drops the sender at exit.
                    for job in queue {
                        job(&plane);
                    }
                    // Stops the processes, then removes their directory (about 125 MB).
                    drop(plane);
                    let _ = stop.send(());
                }
                Err(err) => {
                    let _ = ready.send(Err(format!("cannot start the control plane: {err:?}")));
                }
            }
        })
        .map_err(|e| format!("spawning the control plane's thread: {e}"))?;
    let admin_kubeconfig = started
        .recv()
        .map_err(|_| "the control plane's thread died".to_owned())??;
    // SAFETY: registers, once (PLANE starts once), a function that cannot unwind (no unwrap or
    // expect: an unwind out of extern "C" aborts), never calls exit, and blocks at most 20 s.
    if unsafe { libc::atexit(stop_plane) } != 0 {
        eprintln!("warning: the control plane's directory will be left behind (atexit failed)");
    }
    Ok(Plane {
        admin_kubeconfig,
        jobs: Mutex::new(Some(jobs)),
        stopped: Mutex::new(stopped),
    })
}

/// Run by the C library's `exit` (where libtest ends): a static is never dropped, so without
/// this every test binary on the real backend left its control plane's directory in the
/// temporary directory. Bounded: a job still running at exit does not hold the process.
extern "C" fn stop_plane() {
    let Some(Ok(plane)) = PLANE.get() else {
        return;
    };
    drop(plane.jobs.lock().unwrap_or_else(|e| e.into_inner()).take());
    let stopped = plane.stopped.lock().unwrap_or_else(|e| e.into_inner());
    let _ = stopped.recv_timeout(Duration::from_secs(20));
}

/// Runs `job` on the shared control plane (on its thread) and returns what it returns.
pub fn with_plane<T: Send + 'static>(job: impl FnOnce(&ControlPlane) -> T + Send + 'static) -> T {
    let plane = PLANE
        .get()
        .expect("with_plane needs a real-backend cluster first")
        .as_ref()
        .expect("the control plane started");
    let (reply, answer) = mpsc::channel();
    plane
        .jobs
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .as_ref()
        .expect("the control plane runs until exit")
        .send(Box::new(move |p: &ControlPlane| {
            let _ = reply.send(job(p));
        }))
        .expect("the control plane's thread is running");
    tokio::task::block_in_place(|| answer.recv().expect("the control plane's job answered"))
}

/// A turn on the shared real API server.
struct Real {
    kubeconfig: PathBuf,
    client: kube::Client,
    /// resourceVersions at the last [`Cluster::clear_writes`].
    since: Mutex<BTreeMap<String, String>>,
    // Last, so the next test starts only once this one's client is gone.
    _turn: MutexGuard<'static, ()>,
}

impl Real {
    /// Waits for the turn, starts the control plane if this is the first, and leaves nothing
    /// of earlier tests in [`NS`] and [`GATEWAY_NS`]. `None` (after a loud banner) when
    /// Istio's CRDs are missing outside CI.
    fn take_turn() -> Option<Real> {
        let crds = istio_crds_path();
        if !crds.exists() {
            missing_input(&format!("Istio CRD file {} not found", crds.display()));
            return None;
        }
        // A test that failed during its turn poisons the lock; the next one may still run.
        let turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
        let plane = PLANE
            .get_or_init(start_plane)
            .as_ref()
            .unwrap_or_else(|e| panic!("{e}"));
        let kubeconfig = plane.admin_kubeconfig.clone();
        let client = block(runtime::target::kube::client(Some(&kubeconfig)))
            .unwrap_or_else(|e| panic!("a client for the control plane: {e}"))
            .0;
        let real = Real {
            kubeconfig,
            client,
            since: Mutex::new(BTreeMap::new()),
            _turn: turn,
        };
        real.clean();
        Some(real)
    }

    /// Deletes every object the tests write in [`NS`] and [`GATEWAY_NS`] (finalizers first,
    /// as no controller is left to remove them), and the Events there, and waits until they
    /// are gone.
    fn clean(&self) {
        let mut kinds: Vec<(&str, &str)> = WRITTEN_KINDS.to_vec();
        kinds.extend(PLAN_KINDS);
        kinds.push(("events.k8s.io/v1", "Event"));
        for namespace in [NS, GATEWAY_NS] {
            for (api_version, kind) in &kinds {
                let api: Api<DynamicObject> = Api::namespaced_with(
                    self.client.clone(),
                    namespace,
                    &api_resource(api_version, kind),
                );
                let objects = match block(api.list(&Default::default())) {
                    Ok(objects) => objects,
                    // A kind this server does not serve (yet) has nothing to clean.
                    Err(kube::Error::Api(status)) if status.code == 404 => continue,
                    Err(e) => panic!("list {kind} in {namespace}: {e}"),
                };
                for object in objects {
                    let name = object.metadata.name.clone().unwrap_or_default();
                    if object
                        .metadata
                        .finalizers
                        .as_ref()
                        .is_some_and(|f| !f.is_empty())
                    {
                        let patch = json!({"metadata": {"finalizers": null}});
                        block(api.patch(
                            &name,
                            &kube::api::PatchParams::default(),
                            &kube::api::Patch::Merge(&patch),
                        ))
                        .unwrap_or_else(|e| panic!("unfinalize {kind} {namespace}/{name}: {e}"));
                    }
                    match block(api.delete(&name, &DeleteParams::default())) {
                        Ok(_) => {}
                        Err(kube::Error::Api(status)) if status.code == 404 => {}
                        Err(e) => panic!("delete {kind} {namespace}/{name}: {e}"),
                    }
                }
                // Deleted again while any are left: the controllers (kube-controller-manager's
                // for the plan tests) may still write Events about an earlier test's objects
                // after the first delete, later the more loaded the machine is.
                let deadline = std::time::Instant::now() + PATIENCE;
                loop {
                    let left = match block(api.list(&Default::default())) {
                        Ok(list) if list.items.is_empty() => break,
                        Ok(list) => list.items,
                        Err(_) => Vec::new(),
                    };
                    assert!(
                        std::time::Instant::now() < deadline,
                        "{kind} in {namespace} not gone"
                    );
                    for object in left {
                        let name = object.metadata.name.unwrap_or_default();
                        let _ = block(api.delete(&name, &DeleteParams::default()));
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        }
    }
}
