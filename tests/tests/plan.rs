//! `stickyctl plan`: one file for every kind of workload, against the real kube-apiserver
//! (with kube-controller-manager running, so Deployments get ReplicaSets, Pods and a status
//! as on a cluster; no scheduler or kubelet, so Pods stay Pending and go at once when
//! deleted) and, for the faults a real server cannot be made to have, the fake API.

mod support;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{ListParams, Patch, PatchParams, WatchEvent, WatchParams};
use kube::{Api, ResourceExt};
use serde_json::{json, Value};
use sticky_canary_e2e::locate::stickyctl_bin;
use sticky_canary_e2e::process::ChildGuard;
use support::{eventually, with_plane, Backend, Cluster, HTTPROUTE, NS, SC};

const ING: (&str, &str) = ("networking.k8s.io/v1", "Ingress");
const VS: (&str, &str) = ("networking.istio.io/v1", "VirtualService");
const DEPLOY: (&str, &str) = ("apps/v1", "Deployment");
const CANARY: &str = "nginx.ingress.kubernetes.io/canary";
const CANARY_WEIGHT: &str = "nginx.ingress.kubernetes.io/canary-weight";
/// A finalizer the tests put on a Pod to keep it terminating: an old version whose pods take
/// their time to go.
const HOLD: &str = "sticky-canary.test/hold";

fn ingress(name: &str, annotations: Value) -> Value {
    json!({"apiVersion": ING.0, "kind": ING.1,
        "metadata": {"name": name, "namespace": NS, "annotations": annotations},
        "spec": {"rules": [{"host": "web.example.com", "http": {"paths": [{"path": "/", "pathType": "Prefix",
            "backend": {"service": {"name": name, "port": {"number": 80}}}}]}}]}})
}

fn deployment(name: &str, replicas: i32) -> Value {
    json!({"apiVersion": DEPLOY.0, "kind": DEPLOY.1,
        "metadata": {"name": name, "namespace": NS},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "app", "image": "registry.invalid/app:1"}]}}}})
}

fn virtual_service(name: &str, destinations: &[(&str, u64)]) -> Value {
    let route: Vec<Value> = destinations
        .iter()
        .map(
            |(host, w)| json!({"destination": {"host": host, "port": {"number": 80}}, "weight": w}),
        )
        .collect();
    json!({"apiVersion": VS.0, "kind": VS.1,
        "metadata": {"name": name, "namespace": NS},
        "spec": {"hosts": [name], "http": [{"name": "main", "route": route}]}})
}

/// The user's HTTPRoute `name` behind the Gateway `public`: rule `main` with weighted
/// backendRefs to `services` (each a Service of its own, on port 8080), and rule `static` to
/// another Service, which no plan entry touches.
fn http_route(name: &str, services: &[(&str, u64)]) -> Value {
    let backends: Vec<Value> = services
        .iter()
        .map(|(service, w)| json!({"name": service, "port": 8080, "weight": w}))
        .collect();
    json!({"apiVersion": HTTPROUTE.0, "kind": HTTPROUTE.1,
        "metadata": {"name": name, "namespace": NS},
        "spec": {"parentRefs": [{"name": "public", "namespace": "istio-system"}],
            "hostnames": [format!("{name}.example.com")],
            "rules": [
                {"name": "main", "matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
                 "backendRefs": backends},
                {"name": "static", "matches": [{"path": {"type": "PathPrefix", "value": "/static"}}],
                 "backendRefs": [{"name": "cdn", "port": 80}]}]}})
}

/// What of an HTTPRoute a plan writes (its spec, annotations and so its generation), not the
/// status its implementation writes: istiod, once the CRD is served, writes the status of
/// every HTTPRoute (and so a 409 may meet the plan's write, which reads and edits again).
fn spec_written_of(route: &Value) -> (Value, Value, Value) {
    (
        route["spec"].clone(),
        route["metadata"]["annotations"].clone(),
        route["metadata"]["generation"].clone(),
    )
}

/// [`spec_written_of`] the HTTPRoute `name` as it is now.
fn spec_written(c: &Cluster, name: &str) -> (Value, Value, Value) {
    spec_written_of(&c.get(HTTPROUTE.0, HTTPROUTE.1, name))
}

/// The weights of rule `main` of the HTTPRoute, in order.
fn backend_weights(c: &Cluster, name: &str) -> Vec<u64> {
    c.get(HTTPROUTE.0, HTTPROUTE.1, name)["spec"]["rules"][0]["backendRefs"]
        .as_array()
        .expect("backendRefs")
        .iter()
        .map(|b| b["weight"].as_u64().expect("a weight"))
        .collect()
}

/// The weights of the VirtualService's first route, in order.
fn weights(c: &Cluster, name: &str) -> Vec<u64> {
    c.get(VS.0, VS.1, name)["spec"]["http"][0]["route"]
        .as_array()
        .expect("routes")
        .iter()
        .map(|d| d["weight"].as_u64().expect("a weight"))
        .collect()
}

fn replicas(c: &Cluster, name: &str) -> i64 {
    c.get(DEPLOY.0, DEPLOY.1, name)["spec"]["replicas"]
        .as_i64()
        .expect("replicas")
}

fn version_of(object: &Value) -> String {
    object["metadata"]["resourceVersion"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// The plan file `text` in a temporary directory (kept alive by the returned guard).
fn plan_file(text: &str) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("canary.yaml");
    std::fs::write(&path, text).expect("write the plan");
    let path = path.to_str().expect("a UTF-8 path").to_owned();
    (dir, path)
}

async fn plan_status(c: &Cluster, path: &str) -> Value {
    serde_json::from_str(&c.ok(&["plan", "status", path, "-o", "json"]).await).expect("status JSON")
}

/// `inSync` of every entry of a `plan status -o json`, in order.
fn in_sync(status: &Value) -> Vec<bool> {
    status["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| e["inSync"].as_bool().expect("inSync"))
        .collect()
}

/// The control plane of this binary with its controller-manager running.
fn with_controller_manager() {
    with_plane(|plane| plane.start_controller_manager())
        .unwrap_or_else(|e| panic!("kube-controller-manager: {e:?}"));
}

fn pods(c: &Cluster) -> Api<Pod> {
    Api::namespaced(c.kube_client(), NS)
}

/// The names of the Pods of Deployment `app`.
async fn pods_of(c: &Cluster, app: &str) -> Vec<Pod> {
    pods(c)
        .list(&ListParams::default().labels(&format!("app={app}")))
        .await
        .expect("list pods")
        .items
}

/// Puts [`HOLD`] on every Pod of `app` (or takes it off), once the controller-manager made one.
async fn hold_pods(c: &Cluster, app: &str, hold: bool) {
    if hold {
        // The first test of the binary waits for a controller-manager just started, too.
        eventually(&format!("a pod of {app} appears"), || {
            !support::block(pods_of(c, app)).is_empty()
        })
        .await;
    }
    for pod in pods_of(c, app).await {
        let finalizers: Value = if hold { json!([HOLD]) } else { json!(null) };
        pods(c)
            .patch(
                &pod.name_any(),
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"finalizers": finalizers}})),
            )
            .await
            .expect("patch the pod's finalizers");
    }
}

/// Every Pod event of Deployments `a` and `b` from now on, in the API server's order.
struct PodLog {
    events: Arc<Mutex<Vec<(String, String, String)>>>,
    initial: Vec<(String, String)>,
    task: tokio::task::JoinHandle<()>,
}

impl PodLog {
    async fn start(c: &Cluster, a: &str, b: &str) -> PodLog {
        let api = pods(c);
        let selector = format!("app in ({a},{b})");
        let list = api
            .list(&ListParams::default().labels(&selector))
            .await
            .expect("list pods");
        let initial = list
            .items
            .iter()
            .map(|p| (p.name_any(), p.labels()["app"].clone()))
            .collect();
        let version = list.metadata.resource_version.unwrap_or_default();
        let events = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&events);
        let task = tokio::spawn(async move {
            let params = WatchParams::default().labels(&selector).timeout(290);
            let mut stream = api
                .watch(&params, &version)
                .await
                .expect("watch pods")
                .boxed();
            while let Some(Ok(event)) = stream.next().await {
                let (kind, pod) = match event {
                    WatchEvent::Added(p) => ("added", p),
                    WatchEvent::Modified(p) => ("modified", p),
                    WatchEvent::Deleted(p) => ("deleted", p),
                    _ => continue,
                };
                let app = pod.labels().get("app").cloned().unwrap_or_default();
                log.lock().unwrap_or_else(|e| e.into_inner()).push((
                    kind.to_owned(),
                    pod.name_any(),
                    app,
                ));
            }
        });
        PodLog {
            events,
            initial,
            task,
        }
    }

    /// Waits until the log has a Pod of `app` added: a list can show it before the watch
    /// delivers it.
    async fn wait_added(&self, app: &str) {
        eventually(&format!("the watch saw a pod of {app} added"), || {
            self.events
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .any(|(kind, _, of)| kind == "added" && of == app)
        })
        .await;
    }

    /// Replays the log: asserts that no moment had a Pod of both, and returns the apps in the
    /// order their first Pod appeared.
    fn assert_never_both(self, a: &str, b: &str) -> Vec<String> {
        self.task.abort();
        let mut live: BTreeMap<String, String> = self.initial.into_iter().collect();
        let mut appeared = Vec::new();
        for (kind, name, app) in self.events.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            if kind == "deleted" {
                live.remove(name);
            } else {
                if !live.contains_key(name) && !appeared.contains(app) {
                    appeared.push(app.clone());
                }
                live.insert(name.clone(), app.clone());
            }
            let apps: Vec<&String> = live.values().collect();
            assert!(
                !(apps.iter().any(|x| *x == a) && apps.iter().any(|x| *x == b)),
                "pods of both {a} and {b} existed at once: {live:?}"
            );
        }
        appeared
    }
}

/// Seeds one workload of every kind, with the canary off.
async fn seed_every_kind(c: &Cluster) {
    c.init().await;
    c.ok(&["start", "--canary", "v2"]).await;
    c.create(ingress("web", json!({})))
        .expect("the stable Ingress");
    c.create(ingress("web-canary", json!({CANARY: "true"})))
        .expect("the canary Ingress");
    c.create(virtual_service(
        "map",
        &[("map", 60), ("map-legacy", 30), ("map-canary", 10)],
    ))
    .expect("the VirtualService");
    for (name, count) in [
        ("dispatcher", 4),
        ("dispatcher-canary", 0),
        ("batch", 1),
        ("batch-canary", 0),
    ] {
        c.create(deployment(name, count)).expect("a Deployment");
    }
}

const EVERY_KIND: &str = "\
- {project: shop, type: STICKY, weight: 10}
- {project: web, type: INGRESS_NGINX, weight: 10}
- {project: map, type: ISTIO_VSVC, weight: 40}
- {project: dispatcher, type: DEPLOYMENT_REPLICAS, weight: 1}
- {project: batch, type: DEPLOYMENT_SINGLETON, weight: 1}
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_is_previewed_checked_and_applied_and_a_second_apply_writes_nothing() {
    let Some(c) = Backend::Real.cluster() else {
        return;
    };
    with_controller_manager();
    seed_every_kind(&c).await;
    let (_dir, path) = plan_file(EVERY_KIND);
    let stable_ingress = version_of(&c.get(ING.0, ING.1, "web"));

    // A dry run previews every change of every entry and writes nothing.
    let before: Vec<Value> = ["shop"].iter().map(|n| c.get(SC.0, SC.1, n)).collect();
    let dry = c.ok(&["plan", "apply", &path, "--dry-run"]).await;
    for line in [
        "entry 1 (shop) STICKY in prod",
        "    StickyCanary prod/shop: versions v1=100 v2=0 -> v1=90 v2=10",
        "    Ingress prod/web-canary: annotations[nginx.ingress.kubernetes.io/canary-weight] - -> 10",
        "    VirtualService prod/map: http[main].route[map].weight 60 -> 40",
        "    VirtualService prod/map: http[main].route[map-legacy].weight 30 -> 20",
        "    VirtualService prod/map: http[main].route[map-canary].weight 10 -> 40",
        "    Deployment prod/dispatcher-canary: replicas 0 -> 1",
        "    Deployment prod/batch: replicas 1 -> 0",
        "    wait until Deployment prod/batch's pods are gone",
        "    Deployment prod/batch-canary: replicas 0 -> 1",
        "dry run: the API server accepts all ",
    ] {
        assert!(dry.contains(line), "{line:?} missing from:\n{dry}");
    }
    assert_eq!(before, [c.get(SC.0, SC.1, "shop")]);
    assert!(c.get(ING.0, ING.1, "web-canary")["metadata"]["annotations"]
        .get(CANARY_WEIGHT)
        .is_none());
    assert_eq!(replicas(&c, "batch-canary"), 0);

    let applied = c.ok(&["plan", "apply", &path]).await;
    eprintln!("{applied}");
    assert!(
        applied.contains("entry 5 (batch): handed over to canary in "),
        "{applied}"
    );
    assert!(
        applied.ends_with("plan applied: entries 1-5 (shop, web, map, dispatcher, batch)\n"),
        "{applied}"
    );
    let weights_of_shop = c.rollout()["spec"]["versions"].clone();
    support::assert_same(
        &weights_of_shop,
        &json!([{"name": "v1", "weight": 90.0}, {"name": "v2", "weight": 10.0}]),
    );
    assert_eq!(
        c.get(ING.0, ING.1, "web-canary")["metadata"]["annotations"][CANARY_WEIGHT],
        "10"
    );
    assert_eq!(
        version_of(&c.get(ING.0, ING.1, "web")),
        stable_ingress,
        "only the canary Ingress is written"
    );
    assert_eq!(weights(&c, "map"), [40, 20, 40]);
    assert_eq!(
        (
            replicas(&c, "dispatcher"),
            replicas(&c, "dispatcher-canary")
        ),
        (4, 1)
    );
    assert_eq!(
        (replicas(&c, "batch"), replicas(&c, "batch-canary")),
        (0, 1)
    );

    let status = plan_status(&c, &path).await;
    assert_eq!(in_sync(&status), [true; 5], "{status:#}");
    assert_eq!(status["inSync"], true);
    let dispatcher = &status["entries"][3];
    assert_eq!(
        (dispatcher["current"].as_f64(), dispatcher["share"].as_f64()),
        (Some(1.0), Some(20.0)),
        "1 canary beside 4 stable is 20%"
    );
    assert_eq!(status["entries"][4]["current"].as_f64(), Some(1.0));
    let table = c.ok(&["plan", "status", &path]).await;
    assert!(
        table.contains("1 canary beside 4 stable replicas")
            && table.ends_with("every entry is as the file says\n"),
        "{table}"
    );

    // Idempotent: the same plan again writes nothing.
    let versions = |c: &Cluster| {
        (
            version_of(&c.get(ING.0, ING.1, "web-canary")),
            version_of(&c.get(VS.0, VS.1, "map")),
            ["dispatcher-canary", "batch", "batch-canary"]
                .map(|d| c.get(DEPLOY.0, DEPLOY.1, d)["metadata"]["generation"].clone()),
        )
    };
    let written = versions(&c);
    c.clear_writes();
    let again = c.ok(&["plan", "apply", &path]).await;
    assert!(
        again.ends_with("nothing to change: every entry is as the file says\n"),
        "{again}"
    );
    assert!(c.writes().is_empty(), "{:?}", c.writes());
    assert_eq!(versions(&c), written);

    // Rollback: every entry back on stable, the singleton handed back.
    let back = c.ok(&["plan", "rollback", &path]).await;
    eprintln!("{back}");
    assert_eq!(
        c.rollout()["spec"]["versions"][1]["weight"].as_f64(),
        Some(0.0)
    );
    assert_eq!(
        c.get(ING.0, ING.1, "web-canary")["metadata"]["annotations"][CANARY_WEIGHT],
        "0"
    );
    assert_eq!(weights(&c, "map"), [67, 33, 0]);
    assert_eq!(replicas(&c, "dispatcher-canary"), 0);
    assert_eq!(
        (replicas(&c, "batch"), replicas(&c, "batch-canary")),
        (1, 0)
    );
    let status = plan_status(&c, &path).await;
    assert_eq!(
        in_sync(&status),
        [false; 5],
        "every entry now differs from the file: {status:#}"
    );
    // And forward again: the legacy destination comes back with its share.
    c.ok(&["plan", "apply", &path]).await;
    assert_eq!(weights(&c, "map"), [40, 20, 40]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_httproute_split_is_previewed_checked_applied_and_rolled_back_as_a_virtualservice_one() {
    let Some(c) = Backend::Real.cluster() else {
        return;
    };
    if !c.serve_httproutes() {
        return;
    }
    c.create(http_route(
        "store",
        &[("store-v1", 60), ("store-legacy", 30), ("store-v2", 10)],
    ))
    .expect("the HTTPRoute");
    c.create(virtual_service(
        "map",
        &[("map", 60), ("map-legacy", 30), ("map-canary", 10)],
    ))
    .expect("the VirtualService");
    let (_dir, path) = plan_file(
        "- {project: store, type: HTTPROUTE, weight: 40, stable: store-v1, canary: store-v2}\n\
         - {project: map, type: ISTIO_VSVC, weight: 40}\n",
    );
    let before = c.get(HTTPROUTE.0, HTTPROUTE.1, "store");

    // The dry run previews both twins alike, the server checks both writes, nothing is written.
    let dry = c.ok(&["plan", "apply", &path, "--dry-run"]).await;
    for line in [
        "entry 1 (store) HTTPROUTE in prod\n",
        "    HTTPRoute prod/store: rules[main].backendRefs[store-v1].weight 60 -> 40\n",
        "    HTTPRoute prod/store: rules[main].backendRefs[store-legacy].weight 30 -> 20\n",
        "    HTTPRoute prod/store: rules[main].backendRefs[store-v2].weight 10 -> 40\n",
        "entry 2 (map) ISTIO_VSVC in prod\n",
        "    VirtualService prod/map: http[main].route[map-canary].weight 10 -> 40\n",
        "dry run: the API server accepts all 2 writes; nothing was written\n",
    ] {
        assert!(dry.contains(line), "{line:?} missing from:\n{dry}");
    }
    assert_eq!(spec_written(&c, "store"), spec_written_of(&before));

    let applied = c.ok(&["plan", "apply", &path]).await;
    assert!(
        applied.contains("entry 1 (store): applied: HTTPRoute prod/store rules[main].backendRefs[store-v1].weight 60 -> 40; HTTPRoute prod/store rules[main].backendRefs[store-legacy].weight 30 -> 20; HTTPRoute prod/store rules[main].backendRefs[store-v2].weight 10 -> 40\n")
            && applied.ends_with("plan applied: entries 1-2 (store, map)\n"),
        "{applied}"
    );
    assert_eq!(backend_weights(&c, "store"), [40, 20, 40]);
    assert_eq!(weights(&c, "map"), [40, 20, 40], "the twins split alike");
    // Only the weights (and the record of the shares) changed: the ports, the other rule,
    // the matches and the parents are the user's.
    let after = c.get(HTTPROUTE.0, HTTPROUTE.1, "store");
    let mut expected = before["spec"].clone();
    for (i, w) in [40, 20, 40].into_iter().enumerate() {
        expected["rules"][0]["backendRefs"][i]["weight"] = json!(w);
    }
    support::assert_same(&after["spec"], &expected);
    assert!(
        after["metadata"]["annotations"]["stickycanary.io/plan-shares"].is_string(),
        "{after:#}"
    );

    let status = plan_status(&c, &path).await;
    let store = &status["entries"][0];
    assert_eq!(
        (
            store["type"].as_str(),
            store["objects"].clone(),
            store["current"].as_f64(),
            store["share"].as_f64(),
            store["inSync"].as_bool(),
            store["detail"].as_str(),
        ),
        (
            Some("HTTPROUTE"),
            json!(["HTTPRoute prod/store"]),
            Some(40.0),
            Some(40.0),
            Some(true),
            Some("rule main: store-v1 40, store-legacy 20, store-v2 40"),
        ),
        "{status:#}"
    );
    assert_eq!(status["inSync"], true);

    // Idempotent: the same plan again writes nothing.
    let written = spec_written(&c, "store");
    let again = c.ok(&["plan", "apply", &path]).await;
    assert!(
        again.ends_with("nothing to change: every entry is as the file says\n"),
        "{again}"
    );
    assert_eq!(spec_written(&c, "store"), written);

    // Rollback and forward: the legacy backend comes back with its share, as on the twin.
    c.ok(&["plan", "rollback", &path]).await;
    assert_eq!(backend_weights(&c, "store"), [67, 33, 0]);
    assert_eq!(in_sync(&plan_status(&c, &path).await), [false, false]);
    c.ok(&["plan", "apply", &path]).await;
    assert_eq!(backend_weights(&c, "store"), [40, 20, 40]);

    // Refused by name, every entry at once, before any write.
    let (_bad, bad) = plan_file(
        "- {project: store, type: HTTPROUTE, weight: 10, canary: store-v3}\n\
         - {project: gone, type: HTTPROUTE, weight: 10}\n\
         - {project: shop, type: HTTPROUTE, weight: 10, httpRoute: store, stable: store-v0, canary: store-v2}\n",
    );
    let written = spec_written(&c, "store");
    let out = c.sticky(&["plan", "apply", &bad]).await;
    assert_eq!(out.code, 2, "{out:?}");
    for line in [
        "entry 1 (store): canary: no rule of HTTPRoute prod/store has a backendRef to the canary's Service store-v3",
        "entry 2 (gone): httpRoute: HTTPRoute prod/gone does not exist",
        "entry 3 (shop): stable: rule main of HTTPRoute prod/store has the canary's Service store-v2 but no backendRef to the stable Service store-v0",
        "nothing was written",
    ] {
        assert!(out.stderr.contains(line), "{line:?} missing from {}", out.stderr);
    }
    assert_eq!(spec_written(&c, "store"), written);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_singleton_handover_waits_until_the_old_pods_are_gone_never_both_and_resumes() {
    let Some(c) = Backend::Real.cluster() else {
        return;
    };
    with_controller_manager();
    c.create(deployment("batch", 1)).expect("stable");
    c.create(deployment("batch-canary", 0)).expect("canary");
    // The old version's pod takes its time to go: it stays terminating until released.
    hold_pods(&c, "batch", true).await;
    let log = PodLog::start(&c, "batch", "batch-canary").await;
    let (_dir, path) = plan_file("- {project: batch, type: DEPLOYMENT_SINGLETON, weight: 1}\n");

    let args = ["plan", "apply", path.as_str()];
    let apply = c.sticky(&args);
    let old_version_goes_slowly = async {
        eventually("batch is scaled to 0 and its pod is terminating", || {
            replicas(&c, "batch") == 0
                && support::block(pods_of(&c, "batch"))
                    .iter()
                    .all(|p| p.metadata.deletion_timestamp.is_some())
        })
        .await;
        // The old pod still exists: the command waits, the canary stays at 0.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert_eq!(
            replicas(&c, "batch-canary"),
            0,
            "scaled up while the old pod still existed"
        );
        assert_eq!(support::block(pods_of(&c, "batch")).len(), 1);
        hold_pods(&c, "batch", false).await;
    };
    let (out, ()) = tokio::join!(apply, old_version_goes_slowly);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stdout
            .contains("entry 1 (batch): handed over to canary in "),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("the old pods were gone after "),
        "{}",
        out.stdout
    );
    log.wait_added("batch-canary").await;
    assert_eq!(
        log.assert_never_both("batch", "batch-canary"),
        ["batch-canary"]
    );

    // Back, with the canary's pod held past the timeout: the command stops, says what it did
    // and what it did not, and the stable one is not scaled up.
    hold_pods(&c, "batch-canary", true).await;
    let log = PodLog::start(&c, "batch", "batch-canary").await;
    let out = c
        .sticky(&["plan", "rollback", &path, "--timeout", "1"])
        .await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr.contains("timed out after 1s waiting for Deployment prod/batch-canary's pods to be gone (1 left")
            && out.stderr.contains("Deployment prod/batch was not scaled up")
            && out.stderr.contains("done so far: Deployment prod/batch-canary scaled to 0; run the plan again to resume")
            && out.stderr.contains("applied: no entry; not applied: entry 1 (batch)"),
        "{}",
        out.stderr
    );
    assert_eq!(
        (replicas(&c, "batch"), replicas(&c, "batch-canary")),
        (0, 0)
    );
    // Run again while still held: it resumes the wait (and stops again), never scales up.
    let out = c
        .sticky(&["plan", "rollback", &path, "--timeout", "1"])
        .await;
    assert_eq!(out.code, 1, "{out:?}");
    assert_eq!(replicas(&c, "batch"), 0);
    // Released, the next run finishes the handover.
    hold_pods(&c, "batch-canary", false).await;
    let out = c.ok(&["plan", "rollback", &path]).await;
    assert!(
        out.contains("entry 1 (batch): stable runs alone after "),
        "{out}"
    );
    assert_eq!(
        (replicas(&c, "batch"), replicas(&c, "batch-canary")),
        (1, 0)
    );
    log.wait_added("batch").await;
    assert_eq!(log.assert_never_both("batch", "batch-canary"), ["batch"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_name_the_entry_and_come_before_any_write() {
    let Some(c) = Backend::Real.cluster() else {
        return;
    };
    c.create(virtual_service("map", &[("map", 100), ("map-canary", 0)]))
        .expect("the VirtualService");
    c.create(ingress("web", json!({})))
        .expect("the stable Ingress");
    // Not a canary: no canary annotation.
    c.create(ingress("web-canary", json!({CANARY_WEIGHT: "0"})))
        .expect("an Ingress");
    let (_dir, path) = plan_file(
        "- {project: map, type: ISTIO_VSVC, weight: 10}\n\
         - {project: web, type: INGRESS_NGINX, weight: 10}\n\
         - {project: ghost, type: DEPLOYMENT_REPLICAS, weight: 1}\n\
         - {project: lone, type: INGRESS_NGINX, weight: 5}\n",
    );
    let map = version_of(&c.get(VS.0, VS.1, "map"));
    let out = c.sticky(&["plan", "apply", &path]).await;
    assert_eq!(out.code, 2, "{out:?}");
    for line in [
        "entry 2 (web): canary: Ingress prod/web-canary is not a canary Ingress: it has no annotation nginx.ingress.kubernetes.io/canary",
        "entry 3 (ghost): stable: Deployment prod/ghost (the stable release's) does not exist",
        "entry 4 (lone): stable: Ingress prod/lone does not exist",
        "nothing was written",
    ] {
        assert!(out.stderr.contains(line), "{line:?} missing from {}", out.stderr);
    }
    assert_eq!(
        version_of(&c.get(VS.0, VS.1, "map")),
        map,
        "entry 1 is valid but not applied"
    );
    let status = plan_status(&c, &path).await;
    assert_eq!(in_sync(&status), [false; 4]);
    assert!(status["entries"][1]["problem"]
        .as_str()
        .unwrap_or_default()
        .contains("is not a canary Ingress"));
    // A file error comes before the cluster is even read.
    let (_bad, bad) = plan_file("- {project: map, type: ISTIO_VSVC, weight: 101}\n");
    let out = c.sticky(&["plan", "apply", &bad]).await;
    assert_eq!(out.code, 2);
    assert!(
        out.stderr
            .contains("entry 1 (map): weight 101: must be an integer percent from 0 to 100"),
        "{}",
        out.stderr
    );
}

/// Three plain splits of type `kind` (`ISTIO_VSVC` or `HTTPROUTE`) on the fake API, which can
/// fail a write on demand.
fn three_splits(c: &Cluster, kind: &str) -> (tempfile::TempDir, String) {
    for name in ["a", "b", "c"] {
        let canary = format!("{name}-canary");
        let split = [(name, 100), (canary.as_str(), 0)];
        let object = match kind {
            "HTTPROUTE" => http_route(name, &split),
            _ => virtual_service(name, &split),
        };
        c.create(object).expect("a split");
    }
    plan_file(&format!(
        "- {{project: a, type: {kind}, weight: 10}}\n\
         - {{project: b, type: {kind}, weight: 20}}\n\
         - {{project: c, type: {kind}, weight: 30}}\n"
    ))
}

/// The weights of `name`'s split of type `kind`, as [`three_splits`] made it.
fn split_weights(c: &Cluster, kind: &str, name: &str) -> Vec<u64> {
    match kind {
        "HTTPROUTE" => backend_weights(c, name),
        _ => weights(c, name),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_mid_plan_says_exactly_which_entries_are_applied_and_status_agrees() {
    let Some(c) = Backend::Fake.cluster() else {
        return;
    };
    let (_dir, path) = three_splits(&c, "ISTIO_VSVC");
    let fake = c.fake().expect("the fake API");
    // Every dry run passes; the second real write fails with a 500.
    fake.fail_write_after(1);
    let out = c.sticky(&["plan", "apply", &path]).await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stdout.contains("entry 1 (a): applied: VirtualService prod/a http[main].route[a].weight 100 -> 90; VirtualService prod/a http[main].route[a-canary].weight 0 -> 10\n"),
        "{}",
        out.stdout
    );
    assert!(
        out.stderr.contains("entry 2 (b): ")
            && out.stderr.contains("injected failure")
            && out
                .stderr
                .contains("applied: entry 1 (a); not applied: entries 2-3 (b, c)"),
        "{}",
        out.stderr
    );
    assert_eq!(
        (weights(&c, "a"), weights(&c, "b"), weights(&c, "c")),
        (vec![90, 10], vec![100, 0], vec![100, 0])
    );
    let status = plan_status(&c, &path).await;
    assert_eq!(in_sync(&status), [true, false, false], "{status:#}");
    // The next run applies the rest, and only the rest.
    c.clear_writes();
    let out = c.ok(&["plan", "apply", &path]).await;
    assert!(
        out.contains("entry 1 (a): nothing to change")
            || out.contains("entry 1 (a) ISTIO_VSVC in prod\n    nothing to change"),
        "{out}"
    );
    let writes: Vec<String> = c
        .writes()
        .into_iter()
        .filter(|w| w.starts_with("PUT"))
        .collect();
    assert_eq!(writes.len(), 2, "{writes:?}");
    assert_eq!(in_sync(&plan_status(&c, &path).await), [true; 3]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conflict_storm_is_retried_and_each_entry_written_once() {
    // The VirtualService and its HTTPRoute twin alike.
    for kind in ["ISTIO_VSVC", "HTTPROUTE"] {
        let cluster = match kind {
            "HTTPROUTE" => support::fake_cluster_serving_httproutes(),
            _ => Backend::Fake.cluster(),
        };
        let Some(c) = cluster else {
            continue;
        };
        let (_dir, path) = three_splits(&c, kind);
        let fake = c.fake().expect("the fake API");
        c.clear_writes();
        fake.fail_next_writes(5);
        let out = c.ok(&["plan", "apply", &path]).await;
        assert!(
            out.ends_with("plan applied: entries 1-3 (a, b, c)\n"),
            "{kind}: {out}"
        );
        assert_eq!(
            ["a", "b", "c"].map(|name| split_weights(&c, kind, name)),
            [vec![90, 10], vec![80, 20], vec![70, 30]],
            "{kind}"
        );
        let writes = c.writes();
        let conflicts = writes.iter().filter(|w| w.ends_with("-> 409")).count();
        let done = writes.iter().filter(|w| w.ends_with("-> 200")).count();
        assert_eq!((conflicts, done), (5, 3), "{kind}: {writes:?}");
        c.clear_writes();
        c.ok(&["plan", "apply", &path]).await;
        assert!(c.writes().is_empty(), "{kind}: {:?}", c.writes());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plan_runs_with_the_rights_of_stickyctl_plan_operator_in_rbac_yaml() {
    let Some(c) = Backend::Real.cluster() else {
        return;
    };
    with_controller_manager();
    let rbac = std::fs::read_to_string(sticky_canary_tests::repo_root().join("istio/rbac.yaml"))
        .expect("istio/rbac.yaml");
    // The role's HTTPRoute rule is checked where the Gateway API's CRD is at hand (in CI it
    // must be); the other kinds are checked either way.
    let gateway_api = c.serve_httproutes();
    let kubeconfig = with_plane(move |plane| {
        plane.apply_yaml(&rbac)?;
        plane.apply(&json!({"apiVersion": "v1", "kind": "ServiceAccount",
            "metadata": {"name": "release-team", "namespace": NS}}))?;
        plane.apply(&json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": {"name": "release-team-plan", "namespace": NS},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "stickyctl-plan-operator"},
            "subjects": [{"kind": "ServiceAccount", "name": "release-team", "namespace": NS}]}))?;
        plane.service_account_kubeconfig(NS, "release-team")
    })
    .expect("a ServiceAccount bound to stickyctl-plan-operator");
    c.create(ingress("web", json!({})))
        .expect("the stable Ingress");
    c.create(ingress("web-canary", json!({CANARY: "true"})))
        .expect("the canary Ingress");
    c.create(virtual_service("map", &[("map", 100), ("map-canary", 0)]))
        .expect("the VirtualService");
    if gateway_api {
        c.create(http_route("store", &[("store", 100), ("store-canary", 0)]))
            .expect("the HTTPRoute");
    }
    for (name, count) in [
        ("dispatcher", 2),
        ("dispatcher-canary", 0),
        ("batch", 1),
        ("batch-canary", 0),
    ] {
        c.create(deployment(name, count)).expect("a Deployment");
    }
    let mut plan = String::from(
        "- {project: web, type: INGRESS_NGINX, weight: 50}\n\
         - {project: map, type: ISTIO_VSVC, weight: 50}\n\
         - {project: dispatcher, type: DEPLOYMENT_REPLICAS, weight: 2}\n\
         - {project: batch, type: DEPLOYMENT_SINGLETON, weight: 1}\n",
    );
    if gateway_api {
        plan.push_str("- {project: store, type: HTTPROUTE, weight: 50}\n");
    }
    let (_dir, path) = plan_file(&plan);
    let kubeconfig = kubeconfig.to_str().expect("a UTF-8 path").to_owned();
    let as_release_team = |command: &'static str| {
        let (kubeconfig, path) = (kubeconfig.clone(), path.clone());
        async move {
            stickyctl::cli::run([
                "stickyctl",
                "--kubeconfig",
                &kubeconfig,
                "plan",
                command,
                &path,
            ])
            .await
        }
    };
    for command in ["apply", "status", "rollback"] {
        let out = as_release_team(command).await;
        assert_eq!(out.code, 0, "plan {command}: {}{}", out.stdout, out.stderr);
    }
    assert_eq!(
        c.get(ING.0, ING.1, "web-canary")["metadata"]["annotations"][CANARY_WEIGHT],
        "0"
    );
    assert_eq!(
        (replicas(&c, "batch"), replicas(&c, "batch-canary")),
        (1, 0)
    );
    if gateway_api {
        // Written there and back (only the plan writes the record of the shares).
        let store = c.get(HTTPROUTE.0, HTTPROUTE.1, "store");
        assert_eq!(backend_weights(&c, "store"), [100, 0]);
        assert!(
            store["metadata"]["annotations"]["stickycanary.io/plan-shares"].is_string(),
            "{store:#}"
        );
    }
    // What the role leaves out is refused: the stable Deployment's spec, say.
    let deployments: Api<k8s_openapi::api::apps::v1::Deployment> = Api::namespaced(
        runtime::target::kube::client(Some(std::path::Path::new(&kubeconfig)))
            .await
            .expect("a client")
            .0,
        NS,
    );
    match deployments.delete("batch", &Default::default()).await {
        Err(kube::Error::Api(status)) => assert_eq!(status.code, 403, "{status:?}"),
        other => panic!("the plan operator may not delete Deployments: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_envoy_takes_sticky_entries_and_refuses_the_kubernetes_kinds() {
    use render::envoy::LAYOUT_FILE;
    use runtime::target::envoy_dir::ROLLOUT_FILE;
    let dir = tempfile::tempdir().expect("a temporary directory");
    let layout = json!({"listenPort": 10000, "wasmPath": "/filter.wasm",
        "upstreams": {"v1": "127.0.0.1:8001", "v2": "127.0.0.1:8002"}});
    std::fs::write(dir.path().join(LAYOUT_FILE), layout.to_string()).expect("the layout");
    let d = dir.path().to_str().expect("a UTF-8 path").to_owned();
    let sticky = |args: Vec<String>| {
        let d = d.clone();
        async move {
            let mut argv = vec!["stickyctl".to_owned(), "--envoy-dir".to_owned(), d];
            argv.extend(args);
            stickyctl::cli::run(argv).await
        }
    };
    let args = |a: &[&str]| a.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    for setup in [
        &["init", "--service", "shop", "--stable", "v1"][..],
        &["start", "--canary", "v2"],
    ] {
        assert_eq!(sticky(args(setup)).await.code, 0);
    }
    let (_plan, path) = plan_file("- {project: shop, type: STICKY, weight: 25}\n");
    let rollout = || -> Value {
        serde_json::from_slice(&std::fs::read(dir.path().join(ROLLOUT_FILE)).expect("the rollout"))
            .expect("JSON")
    };
    let out = sticky(args(&["plan", "apply", &path])).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stdout
            .contains("entry 1 (shop): applied: canary at 25%"),
        "{}",
        out.stdout
    );
    support::assert_same(
        &rollout()["spec"]["versions"],
        &json!([{"name": "v1", "weight": 75.0}, {"name": "v2", "weight": 25.0}]),
    );
    let status: Value = serde_json::from_str(
        &sticky(args(&["plan", "status", &path, "-o", "json"]))
            .await
            .stdout,
    )
    .expect("status JSON");
    assert_eq!(in_sync(&status), [true]);
    assert_eq!(sticky(args(&["plan", "rollback", &path])).await.code, 0);
    assert_eq!(
        rollout()["spec"]["versions"][1]["weight"].as_f64(),
        Some(0.0)
    );

    let (_other, other) = plan_file(
        "- {project: shop, type: STICKY, weight: 5}\n- {project: map, type: ISTIO_VSVC, weight: 5}\n- {project: web, type: INGRESS_NGINX, weight: 5}\n",
    );
    let out = sticky(args(&["plan", "apply", &other])).await;
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr
            .contains("entry 2 (map): type ISTIO_VSVC needs Kubernetes")
            && out
                .stderr
                .contains("entry 3 (web): type INGRESS_NGINX needs Kubernetes"),
        "{}",
        out.stderr
    );
    assert_eq!(
        rollout()["spec"]["versions"][1]["weight"].as_f64(),
        Some(0.0),
        "nothing applied"
    );
    let (_named, named) = plan_file("- {project: cart, type: STICKY, weight: 5}\n");
    let out = sticky(args(&["plan", "apply", &named])).await;
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr.contains(
            "entry 1 (cart): rollout: the Envoy directory holds rollout \"shop\", not \"cart\""
        ),
        "{}",
        out.stderr
    );
}

/// `stickyctl` run as a process, as an operator runs it, its standard output read a line at a
/// time as it comes.
struct Running {
    child: ChildGuard,
    lines: mpsc::Receiver<String>,
    stderr: std::thread::JoinHandle<String>,
}

impl Running {
    fn start(c: &Cluster, args: &[&str]) -> Running {
        let mut command = Command::new(stickyctl_bin().expect("stickyctl is built"));
        command
            .arg("--kubeconfig")
            .arg(&c.kubeconfig)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = ChildGuard::spawn(command, "stickyctl").expect("start stickyctl");
        let stdout = child.child_mut().stdout.take().expect("piped stdout");
        let mut stderr = child.child_mut().stderr.take().expect("piped stderr");
        let (send, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if send.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = std::thread::spawn(move || {
            let mut text = String::new();
            stderr.read_to_string(&mut text).ok();
            text
        });
        Running {
            child,
            lines,
            stderr,
        }
    }

    /// The lines printed until one contains `words` (that one last), while the process still
    /// runs: a line printed only when it exits does not count.
    fn until_line(&mut self, words: &str) -> Vec<String> {
        let mut seen = Vec::new();
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let line = tokio::task::block_in_place(|| self.lines.recv_timeout(left))
                .unwrap_or_else(|e| panic!("no line with {words:?} ({e}); so far: {seen:#?}"));
            let found = line.contains(words);
            seen.push(line);
            if found {
                let running = self.child.child_mut().try_wait().expect("try_wait");
                assert_eq!(running, None, "{words:?} came only at the exit: {seen:#?}");
                return seen;
            }
        }
    }

    /// Ctrl-C, as a terminal sends it.
    fn interrupt(&mut self) {
        let pid = libc::pid_t::try_from(self.child.child_mut().id()).expect("a pid");
        // SAFETY: kill(2) with a pid of our own child and a valid signal touches no memory.
        let sent = unsafe { libc::kill(pid, libc::SIGINT) };
        assert_eq!(sent, 0, "SIGINT not sent");
    }

    /// Its exit code (`None`: a signal ended it), the rest of its output and its stderr.
    fn finish(mut self) -> (Option<i32>, Vec<String>, String) {
        let status = tokio::task::block_in_place(|| {
            let deadline = std::time::Instant::now() + Duration::from_secs(30);
            loop {
                if let Some(status) = self.child.child_mut().try_wait().expect("try_wait") {
                    return status;
                }
                assert!(
                    std::time::Instant::now() < deadline,
                    "stickyctl did not exit"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        let rest = self.lines.iter().collect();
        let stderr = self.stderr.join().expect("the stderr reader");
        (status.code(), rest, stderr)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_says_each_step_as_it_goes_and_ctrl_c_stops_a_handover_saying_what_was_applied() {
    let Some(c) = Backend::Real.cluster() else {
        return;
    };
    with_controller_manager();
    c.create(ingress("web", json!({})))
        .expect("the stable Ingress");
    c.create(ingress("web-canary", json!({CANARY: "true"})))
        .expect("the canary Ingress");
    c.create(virtual_service("map", &[("map", 90), ("map-canary", 10)]))
        .expect("the VirtualService");
    c.create(deployment("batch", 1)).expect("stable");
    c.create(deployment("batch-canary", 0)).expect("canary");
    // The old version's pod takes its time to go: it stays terminating until released.
    hold_pods(&c, "batch", true).await;
    let (_dir, path) = plan_file(
        "- {project: web, type: INGRESS_NGINX, weight: 20}\n\
         - {project: batch, type: DEPLOYMENT_SINGLETON, weight: 1}\n\
         - {project: map, type: ISTIO_VSVC, weight: 30}\n",
    );

    let mut apply = Running::start(&c, &["plan", "apply", &path]);
    // The preview comes before the first write, each entry as it is applied, then the wait.
    let before = apply.until_line("the API server accepts all");
    assert!(
        before
            .iter()
            .any(|l| l == &format!("entry 1 (web) INGRESS_NGINX in {NS}")),
        "{before:#?}"
    );
    // No entry is said applied before the check line (the Ingress itself may be written by
    // now: the process runs on). That nothing is written before the check is
    // refusals_name_the_entry_and_come_before_any_write's.
    assert!(
        !before.iter().any(|l| l.contains(": applied")),
        "{before:#?}"
    );
    apply.until_line("entry 1 (web): applied: ");
    assert_eq!(
        c.get(ING.0, ING.1, "web-canary")["metadata"]["annotations"][CANARY_WEIGHT],
        "20"
    );
    apply.until_line(&format!(
        "entry 2 (batch): Deployment {NS}/batch scaled to 0"
    ));
    let waiting = apply.until_line(&format!(
        "entry 2 (batch): waiting for Deployment {NS}/batch's pods to be gone (1 left"
    ));
    let progress = waiting.last().expect("the progress line");
    assert!(
        progress.contains("s of at most 300s, until ") && progress.contains(':'),
        "{progress}"
    );
    assert_eq!(replicas(&c, "batch-canary"), 0);

    apply.interrupt();
    let (code, rest, stderr) = apply.finish();
    assert_eq!(code, Some(1), "{rest:#?}\n{stderr}");
    assert!(
        stderr.contains(&format!("entry 2 (batch): interrupted (Ctrl-C) waiting for Deployment {NS}/batch's pods to be gone"))
            && stderr.contains(&format!("Deployment {NS}/batch-canary was not scaled up"))
            && stderr.contains(&format!("done so far: Deployment {NS}/batch scaled to 0; run the plan again to resume"))
            && stderr.contains("applied: entry 1 (web); not applied: entries 2-3 (batch, map)"),
        "{stderr}"
    );
    assert_eq!(replicas(&c, "batch-canary"), 0, "scaled up after Ctrl-C");
    assert_eq!(
        weights(&c, "map"),
        [90, 10],
        "an entry after Ctrl-C was applied"
    );

    // Both at 0, the old pod still terminating: status says so, in words and in JSON.
    let table = c.ok(&["plan", "status", &path]).await;
    let row = table
        .lines()
        .find(|l| l.contains("DEPLOYMENT_SINGLETON"))
        .expect("the singleton's row");
    assert!(
        row.contains("differs  handing over: neither runs yet (old pod terminating): ")
            && row.contains(&format!("Deployment {NS}/batch: replicas 0, counted ")),
        "{table}"
    );
    let status = plan_status(&c, &path).await;
    let batch = &status["entries"][1];
    assert!(
        batch["detail"]
            .as_str()
            .is_some_and(|d| d.starts_with("handing over: neither runs yet (old pod terminating)")),
        "{batch:#}"
    );
    assert_eq!(batch["current"], Value::Null, "{batch:#}");
    assert_eq!(batch["singleton"]["runs"], "handingOver", "{batch:#}");
    assert_eq!(batch["singleton"]["terminating"], "stable", "{batch:#}");
    assert_eq!(batch["singleton"]["stable"]["replicas"], 0, "{batch:#}");
    assert_eq!(batch["singleton"]["stable"]["pods"], 1, "{batch:#}");
    assert_eq!(batch["singleton"]["canary"]["pods"], 0, "{batch:#}");

    // Released, the next run resumes the handover and applies the rest.
    hold_pods(&c, "batch", false).await;
    let out = c.ok(&["plan", "apply", &path]).await;
    assert!(
        out.contains("entry 2 (batch): canary runs alone after "),
        "{out}"
    );
    assert_eq!(replicas(&c, "batch-canary"), 1);
    assert_eq!(weights(&c, "map"), [70, 30]);
}
