//! A fake cluster for the controller tests: the fake API server with the user's VirtualService,
//! a kubeconfig pointing at it, `stickyctl` commands run in-process, and the controller run in
//! the background. Each test binary uses a part of it.
#![allow(dead_code)]

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{json, Value};
use sticky_canary_tests::{all_crds, FakeApiServer};
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

/// A fake API server and a kubeconfig file for it.
pub struct Cluster {
    pub server: FakeApiServer,
    pub kubeconfig: PathBuf,
    _dir: tempfile::TempDir,
}

/// A fake cluster with the demo service's VirtualService; `None` (after a loud banner) when
/// Istio's CRDs are not available outside CI.
pub fn cluster_with(http: Value) -> Option<Cluster> {
    let server = FakeApiServer::start(all_crds()?);
    server
        .create(
            json!({"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
            "metadata": {"name": "shop", "namespace": NS},
            "spec": {"hosts": ["shop.example.com"], "http": http}}),
        )
        .expect("create the user's VirtualService");
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    server.write_kubeconfig(&kubeconfig, NS).unwrap();
    Some(Cluster {
        server,
        kubeconfig,
        _dir: dir,
    })
}

/// [`cluster_with`] the user's one route to the service.
pub fn cluster() -> Option<Cluster> {
    cluster_with(
        json!([{"name": "shop", "match": [{"uri": {"prefix": "/shop"}}],
        "route": [{"destination": {"host": "shop", "port": {"number": 8080}}}]}]),
    )
}

impl Cluster {
    /// Runs `stickyctl` in-process against this cluster.
    pub async fn sticky(&self, args: &[&str]) -> Outcome {
        let mut argv = vec![
            "stickyctl",
            "--kubeconfig",
            self.kubeconfig.to_str().unwrap(),
        ];
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
        self.server
            .get(api_version, kind, NS, name)
            .unwrap_or_else(|| panic!("{kind} {name} missing"))
    }

    /// The rollout `shop`.
    pub fn rollout(&self) -> Value {
        self.get("stickycanary.io/v1alpha1", "StickyCanary", "shop")
    }

    /// Edits the rollout `shop` behind stickyctl's back, as a GitOps sync or a hand edit would.
    pub fn edit_rollout(&self, edit: impl FnOnce(&mut Value)) {
        self.server
            .update("stickycanary.io/v1alpha1", "StickyCanary", NS, "shop", edit)
            .expect("edit the rollout");
    }

    /// The shared WasmPlugin of the ingress gateway, if it exists.
    pub fn gateway_plugin(&self) -> Option<Value> {
        self.server.get(WP.0, WP.1, GATEWAY_NS, GATEWAY_PLUGIN)
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
        self.server
            .create(json!({"apiVersion": WP.0, "kind": WP.1,
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
        self.server.get(WP.0, WP.1, NS, LEGACY_PLUGIN)
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
        serde_json::from_str(&self.ok(&["status", "-o", "json"]).await).unwrap()
    }

    /// The cluster objects say exactly what the rollout says.
    pub async fn assert_consistent(&self) {
        let rollout = self.rollout();
        let status = self.status().await;
        assert_eq!(status["inSync"], true, "{status:#}");
        assert_eq!(self.plugin_weights(), rollout["spec"]["versions"]);
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

    /// `stickyctl init` of service `shop` at stable `v1`, on the default placement: the
    /// ingress gateway (`istio: ingressgateway` in `istio-system`).
    pub async fn init(&self) {
        self.ok(&["init", "--service", "shop", "--stable", "v1"])
            .await;
    }
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
        let client = kube::Client::try_from(self.server.kube_config()).unwrap();
        RunningController(tokio::spawn(stickyctl::controller::run(client, Some(NS))))
    }
}

/// Waits until `done` holds, polling; panics naming `what` after a generous bound (far below
/// the controller's resync, so passing proves a watch triggered the work, not the resync).
pub async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let wait = async {
        while !done() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(30), wait)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting until {what}"));
}
