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

    /// The versions and weights in the rollout's WasmPlugin.
    pub fn plugin_weights(&self) -> Value {
        self.get(
            "extensions.istio.io/v1alpha1",
            "WasmPlugin",
            "sticky-canary-shop",
        )["spec"]["pluginConfig"]["versions"]
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

    /// `stickyctl init` of service `shop` at stable `v1`.
    pub async fn init(&self) {
        self.ok(&[
            "init",
            "--service",
            "shop",
            "--stable",
            "v1",
            "--selector",
            "istio=ingressgateway",
        ])
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
