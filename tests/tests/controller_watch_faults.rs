//! The real controller (`runtime::controller::run`) through the faults Sieve injects into
//! Kubernetes controllers, on the fake API server (only it can inject them): watch events that
//! are missed, late or reordered, and a cache that serves stale lists. It still converges to
//! the spec, it never writes from a stale read (every write it makes carries the
//! resourceVersion it read, and the server's write audit shows none accepted from a stale
//! one, nor any unconditional overwrite), and a rollback in progress is never lost or undone.

#[macro_use]
mod support;

use std::time::Duration;

use analysis::{LookError, Snapshot};
use api::StickyCanary;
use runtime::metrics::Metrics;
use serde_json::{json, Value};
use sticky_canary_tests::{Chaos, EventMatch, FakeApiServer, StaleLists};
use support::{
    cluster, eventually, Cluster, RunningController, GATEWAY_NS, GATEWAY_PLUGIN, NS, WP,
};

const VS: (&str, &str) = ("networking.istio.io/v1", "VirtualService");
const DR: (&str, &str) = ("networking.istio.io/v1", "DestinationRule");

/// Metrics that are never there: an automatic rollout with `onInconclusive: Rollback` and no
/// deadline to speak of rolls back at its first look.
struct NoMetrics;

impl Metrics for NoMetrics {
    async fn snapshot(&self, _: &StickyCanary) -> Result<Snapshot, LookError> {
        Err(LookError::Unreachable("no samples (test)".into()))
    }
}

/// A controller without Prometheus: it converges, and takes no automatic step.
fn start_manual_controller(c: &Cluster) -> RunningController {
    support::start_controller_with(c.kube_client())
}

/// A controller whose every look finds no samples ([`NoMetrics`]).
fn start_controller_finding_no_samples(c: &Cluster) -> RunningController {
    support::start_controller_with_metrics(c.kube_client(), NoMetrics)
}

/// A rollout of `v1` with the canary `v2` at `percent`.
async fn canary_at(c: &Cluster, percent: &str) {
    c.init().await;
    c.ok(&["start", "--canary", "v2"]).await;
    c.ok(&["set-weight", percent]).await;
}

fn fake(c: &Cluster) -> &FakeApiServer {
    c.fake().expect("these faults need the fake API server")
}

/// Every write the server saw was conditioned on what its author read, and none from a stale
/// read got through; returns how many writes were refused as stale. Prints the figures.
#[track_caller]
fn assert_no_stale_write(server: &FakeApiServer) -> usize {
    let (dropped, delayed) = server.faulted_events();
    // Events (the recorder's, patched without a precondition) are reports, not state.
    let audit: Vec<_> = server
        .write_audit()
        .into_iter()
        .filter(|w| w.key.group != "events.k8s.io")
        .collect();
    println!(
        "faults: {} watch events dropped, {} delayed, {} stale lists; writes: {} ({} dry runs), \
         {} conditioned on a resourceVersion, {} refused as stale, {} accepted stale, {} \
         unconditional overwrites",
        dropped.len(),
        delayed.len(),
        server.stale_lists_served(),
        audit.len(),
        audit.iter().filter(|w| w.dry_run).count(),
        audit.iter().filter(|w| w.precondition.is_some()).count(),
        audit.iter().filter(|w| w.stale()).count(),
        audit.iter().filter(|w| w.accepted_stale()).count(),
        audit.iter().filter(|w| w.unconditional_overwrite()).count(),
    );
    let ours: Vec<_> = audit.iter().collect();
    assert!(!ours.is_empty(), "no write at all: the test proved nothing");
    for write in &ours {
        assert!(
            !write.accepted_stale(),
            "a write from a stale read got through: {write:?}"
        );
        assert!(
            !write.unconditional_overwrite(),
            "a write that could have replaced a newer object: {write:?}"
        );
    }
    ours.iter().filter(|w| w.stale()).count()
}

/// The weight of `version` in each state of the shared plugin the server's history holds
/// after resourceVersion `after` (`None` for a state without it).
fn plugin_weights_after(server: &FakeApiServer, version: &str, after: u64) -> Vec<Option<f64>> {
    server
        .history_of("wasmplugins", GATEWAY_NS, GATEWAY_PLUGIN)
        .into_iter()
        .filter(|(_, o)| {
            o["metadata"]["resourceVersion"]
                .as_str()
                .and_then(|rv| rv.parse::<u64>().ok())
                .is_some_and(|rv| rv > after)
        })
        .map(|(_, plugin)| {
            plugin["spec"]["pluginConfig"]["rollouts"][0]["config"]["versions"]
                .as_array()
                .and_then(|vs| vs.iter().find(|v| v["name"] == version))
                .and_then(|v| v["weight"].as_f64())
        })
        .collect()
}

impl Cluster {
    fn has_finalizer(&self) -> bool {
        self.rollout()["metadata"]["finalizers"]
            .as_array()
            .is_some_and(|f| !f.is_empty())
    }

    fn phase(&self) -> Value {
        self.rollout()["status"]["phase"].clone()
    }

    /// What the shared plugin, the routes and the subsets say matches the rollout's spec.
    fn matches_spec(&self) -> bool {
        let rollout = self.rollout();
        let versions: Vec<String> = support::names(&rollout["spec"]["versions"]);
        let weights_ok = self
            .plugin_entry("shop")
            .is_some_and(|e| render::same(&e["config"]["versions"], &rollout["spec"]["versions"]));
        let managed: Vec<String> = self
            .route_names()
            .into_iter()
            .filter(|r| r.starts_with("sticky-canary-shop-"))
            .collect();
        let routes: Vec<String> = versions
            .iter()
            .map(|v| format!("sticky-canary-shop-{v}"))
            .collect();
        let subsets: Vec<String> = versions
            .iter()
            .map(|v| format!("sticky-canary-{v}"))
            .collect();
        weights_ok && managed == routes && self.subsets() == subsets
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missed_late_and_reordered_events_still_converge_to_the_spec() {
    let Some(c) = cluster() else { return };
    canary_at(&c, "10").await;
    let _controller = start_manual_controller(&c);
    eventually("the controller put its finalizer on", || c.has_finalizer()).await;
    let server = fake(&c);
    server.watch_chaos(Some(Chaos {
        seed: 17,
        drop_percent: 35,
        delay_percent: 35,
        max_delay: Duration::from_millis(400),
    }));

    // Another operator breaks what the controller owns while the weights move.
    for (round, weight) in ["20", "35", "50", "15", "60", "80"].iter().enumerate() {
        c.ok(&["set-weight", weight]).await;
        match round % 3 {
            0 => c
                .update(VS.0, VS.1, NS, "shop", |vs| {
                    let http = vs["spec"]["http"].as_array_mut().unwrap();
                    http.retain(|r| r["name"] != "sticky-canary-shop-v2");
                })
                .unwrap(),
            1 => c
                .update(DR.0, DR.1, NS, "shop", |dr| {
                    let subsets = dr["spec"]["subsets"].as_array_mut().unwrap();
                    subsets.retain(|s| s["name"] != "sticky-canary-v2");
                })
                .unwrap(),
            _ => c
                .update(WP.0, WP.1, GATEWAY_NS, GATEWAY_PLUGIN, |wp| {
                    wp["spec"]["pluginConfig"]["rollouts"][0]["config"]["versions"] =
                        json!([{"name": "v1", "weight": 1.0}, {"name": "v2", "weight": 99.0}]);
                })
                .unwrap(),
        };
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    let (dropped, delayed) = server.faulted_events();
    assert!(
        !dropped.is_empty() && !delayed.is_empty(),
        "the chaos hit nothing: dropped {dropped:?}, delayed {delayed:?}"
    );
    // The last damage is left for the controller; what it missed, a re-list brings back.
    server.clear_watch_faults();
    c.update(VS.0, VS.1, NS, "shop", |vs| {
        let http = vs["spec"]["http"].as_array_mut().unwrap();
        http.retain(|r| r["name"] != "sticky-canary-shop-v1");
    })
    .unwrap();
    server.drop_watch_events(EventMatch::object("virtualservices", "shop"), 1);
    server.expire_watches();
    eventually("the objects match the spec at 80%", || c.matches_spec()).await;
    assert_eq!(c.rollout()["spec"]["versions"][1]["weight"], json!(80.0));
    c.assert_consistent().await;
    assert_no_stale_write(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_controller_reading_stale_lists_never_writes_from_them() {
    let Some(c) = cluster() else { return };
    canary_at(&c, "10").await;
    let server = fake(&c);
    let at_ten = server.snapshot();
    c.ok(&["set-weight", "50"]).await;
    let at_fifty = server.resource_version();
    // A hand edit the controller has to repair.
    c.update(VS.0, VS.1, NS, "shop", |vs| {
        let http = vs["spec"]["http"].as_array_mut().unwrap();
        http.retain(|r| r["name"] != "sticky-canary-shop-v2");
    })
    .unwrap();
    // Every list the controller makes, its reflectors' and its own reads of the shared
    // plugins, answers from the cache stuck at 10%.
    server.serve_stale_lists(at_ten, StaleLists::Every);
    let controller = start_manual_controller(&c);
    eventually("the controller tried a write from what it listed", || {
        server.write_audit().iter().any(|w| w.stale())
    })
    .await;
    drop(controller);
    let _controller = start_manual_controller(&c);
    eventually(
        "the restarted controller listed from the stale cache",
        || server.stale_lists_of("stickycanaries") >= 2,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let stale_lists = server.serve_fresh_lists();
    let refused = assert_no_stale_write(server);
    assert!(
        refused > 0,
        "the controller never tried a write from its {stale_lists} stale lists"
    );
    // Fresh reads again: a re-list, and it repairs the route, at 50%.
    server.expire_watches();
    eventually("the managed route is repaired, at 50%", || c.matches_spec()).await;
    c.assert_consistent().await;
    assert_eq!(
        plugin_weights_after(server, "v2", at_fifty),
        Vec::<Option<f64>>::new(),
        "the shared plugin was written again after 50%, from the stale 10%"
    );
    assert_no_stale_write(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abort_is_never_undone_by_a_stale_controller() {
    let Some(c) = cluster() else { return };
    canary_at(&c, "50").await;
    let controller = start_manual_controller(&c);
    eventually("the controller put its finalizer on", || c.has_finalizer()).await;
    let server = fake(&c);
    let at_fifty = server.snapshot();
    // Every event arrives late and out of order, a third never.
    server.watch_chaos(Some(Chaos {
        seed: 5,
        drop_percent: 33,
        delay_percent: 67,
        max_delay: Duration::from_millis(500),
    }));
    let before_abort = server.resource_version();
    c.ok(&["abort"]).await;
    assert_eq!(c.phase(), "Aborted");
    // The controller lists again from a cache that still shows the canary at 50%, and is
    // restarted on it.
    server.serve_stale_lists(at_fifty, StaleLists::Every);
    server.expire_watches();
    eventually(
        "the controller listed the rollouts from the stale cache",
        || server.stale_lists_of("stickycanaries") >= 1,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    drop(controller);
    let _controller = start_manual_controller(&c);
    eventually(
        "the restarted controller listed from the stale cache",
        || server.stale_lists_of("stickycanaries") >= 2,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    server.serve_fresh_lists();
    server.clear_watch_faults();
    server.expire_watches();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(c.phase(), "Aborted");
    assert_eq!(support::names(&c.rollout()["spec"]["versions"]), ["v1"]);
    assert!(c.matches_spec(), "the canary is back somewhere");
    let weights = plugin_weights_after(server, "v2", before_abort);
    assert!(
        weights
            .iter()
            .skip_while(|w| w.is_some())
            .all(Option::is_none),
        "the canary came back into the plugin after the abort removed it: {weights:?}"
    );
    assert!(
        weights.iter().flatten().all(|w| *w == 0.0),
        "the canary had weight again after the abort: {weights:?}"
    );
    c.assert_consistent().await;
    assert_no_stale_write(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_automatic_rollback_is_not_lost_to_a_stale_cache() {
    let Some(c) = cluster() else { return };
    canary_at(&c, "50").await;
    let _controller = start_controller_finding_no_samples(&c);
    eventually("the controller put its finalizer on", || c.has_finalizer()).await;
    let server = fake(&c);
    let by_hand = server.snapshot();
    // The rollout goes automatic (a GitOps sync), with steps that roll back when they have
    // no evidence. The controller misses every change of the rollout from now on, and its
    // reflectors list again from a cache that still shows it steered by hand.
    server.drop_watch_events(EventMatch::plural("stickycanaries"), usize::MAX);
    let before = server.resource_version();
    c.edit_rollout(|sc| {
        sc["spec"]["auto"] = json!({"enabled": true, "intervalSeconds": 1,
            "onInconclusive": "Rollback", "inconclusiveDeadlineSeconds": 1});
    });
    let stale_version = format!("resourceVersion={}", by_hand.resource_version);
    server.serve_stale_lists(by_hand, StaleLists::Every);
    server.expire_watches();
    // Listed, and watching from there: from now on it sees only what happens next.
    eventually(
        "the controller watches the rollouts from the stale cache",
        || {
            server.stale_lists_of("stickycanaries") >= 1
                && server.requests().iter().any(|r| {
                    r.path.ends_with("/stickycanaries")
                        && r.query.contains("watch=true")
                        && r.query.contains(&stale_version)
                })
        },
    )
    .await;
    server.serve_fresh_lists();
    eventually("the rollback removed the canary", || {
        support::names(&c.rollout()["spec"]["versions"]) == ["v1"]
    })
    .await;
    assert_eq!(c.phase(), "RolledBack");
    let message = c.rollout()["status"]["message"].clone();
    assert!(
        message
            .as_str()
            .is_some_and(|m| m.contains("no samples (test)")),
        "{message}"
    );
    eventually("the objects follow", || c.matches_spec()).await;
    let weights = plugin_weights_after(server, "v2", before);
    assert!(
        weights
            .iter()
            .skip_while(|w| w.is_some())
            .all(Option::is_none)
            && weights.iter().flatten().all(|w| *w == 0.0),
        "the canary's weight came back during the rollback: {weights:?}"
    );
    assert_no_stale_write(server);
}
