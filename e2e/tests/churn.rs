//! Churn through istiod, under load: a crowd of returning visitors (each keeping its cookies)
//! browses the gateway without pause while the rollout goes through 100 weight changes (two
//! ramps up, a partial rollback, an abort, a promote and its finish), with an invalid
//! configuration in between (refused by `stickyctl`, and one written behind its back that the
//! gateway refuses, keeping the last good one), istiod killed and restarted mid-rollout, and
//! the `stickyctl controller` process killed at each step of the abort and of the promote
//! (every write of the rollout during them) and restarted.
//!
//! Counted and asserted: failed requests (0), pages mixing versions (0 outside the abort,
//! which switches every client at once by design), clients moved from the canary back to
//! stable during a ramp up (0); measured and printed: the time each change took from the
//! command to the gateway's filter (median, max), and the test's wall time. Which version
//! served what is read from the upstreams' `x-served-by` and the cookies: no request sends a
//! version or override header.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use futures::StreamExt;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, PostParams, WatchEvent};
use serde_json::{json, Value};
use sticky_canary_e2e::browser::Browser;
use sticky_canary_e2e::envoy::free_port;
use sticky_canary_e2e::load::{browse_while, Driver, PageLoad};
use sticky_canary_e2e::mesh::stack::{
    served_name, MeshStack, Service, GATEWAY_PLUGIN, NS, PROPAGATION,
};
use sticky_canary_e2e::operator::Stickyctl;
use sticky_canary_e2e::process::ChildGuard;
use sticky_canary_filter::config::DEFAULT_ID_COOKIE;

/// Returning visitors browsing all along.
const CROWD: usize = 12;
const ROLLOUT: &str = "prod/shop";
const STICKYCANARY: (&str, &str, &str) = ("stickycanary.io", "v1alpha1", "StickyCanary");
const WASMPLUGIN: (&str, &str, &str) = ("extensions.istio.io", "v1alpha1", "WasmPlugin");

/// What a change does to the canary's clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// `start --canary`: the canary at 0%.
    Start,
    /// A higher canary weight: clients only ever move into the canary.
    Up,
    /// A lower canary weight (the partial rollback).
    Down,
    Abort,
    Promote,
    Finish,
}

/// One change and how long it took from the command to the gateway.
#[derive(Debug, Clone)]
struct Change {
    kind: Kind,
    label: String,
    took: Duration,
}

/// `stickyctl controller` as a process, on a thread of its own that lives as long as the test
/// (a child dies with the thread that spawned it): started again (after a SIGKILL of the
/// running one) or stopped on order.
struct Controllers {
    orders: Option<mpsc::Sender<(Order, mpsc::Sender<Result<()>>)>>,
    keeper: Option<JoinHandle<()>>,
}

#[derive(Debug, Clone, Copy)]
enum Order {
    /// Kill the running controller, if any, and start a new one.
    Restart,
    /// Kill the running controller.
    Kill,
}

impl Controllers {
    fn start(stickyctl: Stickyctl, log: PathBuf) -> Controllers {
        let (orders, received) = mpsc::channel::<(Order, mpsc::Sender<Result<()>>)>();
        let keeper = std::thread::spawn(move || {
            let mut running: Option<ChildGuard> = None;
            for (order, reply) in received {
                // Dropping the guard is a SIGKILL: a crash, not a shutdown.
                drop(running.take());
                let outcome = match order {
                    Order::Kill => Ok(()),
                    Order::Restart => stickyctl
                        .spawn(&["controller"], &log)
                        .map(|child| running = Some(child)),
                };
                let _ = reply.send(outcome);
            }
        });
        Controllers {
            orders: Some(orders),
            keeper: Some(keeper),
        }
    }

    fn order(&self, order: Order) -> Result<()> {
        let (reply, answer) = mpsc::channel();
        self.orders
            .as_ref()
            .ok_or_else(|| anyhow!("the controllers' keeper is gone"))?
            .send((order, reply))
            .map_err(|_| anyhow!("the controllers' keeper is gone"))?;
        answer
            .recv_timeout(Duration::from_secs(30))
            .map_err(|_| anyhow!("the controllers' keeper did not answer"))?
    }

    fn sender(&self) -> Option<mpsc::Sender<(Order, mpsc::Sender<Result<()>>)>> {
        self.orders.clone()
    }
}

impl Drop for Controllers {
    fn drop(&mut self) {
        // Closing the channel ends the keeper, which kills the last controller.
        self.orders.take();
        if let Some(keeper) = self.keeper.take() {
            let _ = keeper.join();
        }
    }
}

/// Kills (and restarts) the controller at every change of the rollout's spec until `stop`:
/// each step of an abort or a promote is one spec write. Returns the steps seen, each as the
/// versions and weights it wrote.
fn kill_at_each_step(
    kubeconfig: PathBuf,
    controllers: mpsc::Sender<(Order, mpsc::Sender<Result<()>>)>,
    stop: Arc<AtomicBool>,
    watching: mpsc::Sender<()>,
) -> JoinHandle<Result<Vec<String>>> {
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        runtime.block_on(async move {
            let (client, _) = runtime::target::kube::client(Some(&kubeconfig))
                .await
                .map_err(|e| anyhow!("{e}"))?;
            let (group, version, kind) = STICKYCANARY;
            let resource = ApiResource::from_gvk_with_plural(
                &GroupVersionKind::gvk(group, version, kind),
                "stickycanaries",
            );
            let api: Api<DynamicObject> = Api::namespaced_with(client, NS, &resource);
            let current = api.get("shop").await?;
            let mut generation = current.metadata.generation.unwrap_or_default();
            let from = current.metadata.resource_version.unwrap_or_default();
            let params = kube::api::WatchParams::default().timeout(60);
            let mut events = api.watch(&params, &from).await?.boxed();
            // From here every write after `from` comes as an event.
            let _ = watching.send(());
            let mut steps = Vec::new();
            loop {
                let event = tokio::select! {
                    event = events.next() => event,
                    () = tokio::time::sleep(Duration::from_millis(50)) => {
                        if stop.load(Ordering::SeqCst) {
                            return Ok(steps);
                        }
                        continue;
                    }
                };
                let Some(event) = event else {
                    bail!("the watch of the rollout ended");
                };
                if let WatchEvent::Modified(object) = event? {
                    let now = object.metadata.generation.unwrap_or_default();
                    if now > generation {
                        generation = now;
                        steps.push(object.data["spec"]["versions"].to_string());
                        let (reply, answer) = mpsc::channel();
                        controllers
                            .send((Order::Restart, reply))
                            .map_err(|_| anyhow!("the controllers' keeper is gone"))?;
                        answer
                            .recv_timeout(Duration::from_secs(30))
                            .map_err(|_| anyhow!("no restart"))??;
                    }
                }
            }
        })
    })
}

struct Churn<'a> {
    stack: &'a MeshStack,
    controllers: &'a Controllers,
    kubeconfig: PathBuf,
    changes: Vec<Change>,
    /// Times the controller was killed at a step.
    kills: usize,
}

impl Churn<'_> {
    fn rollout(&self) -> Result<Value> {
        let (group, version, kind) = STICKYCANARY;
        self.stack
            .plane
            .get(&format!("{group}/{version}"), kind, NS, "shop")?
            .ok_or_else(|| anyhow!("the rollout is gone"))
    }

    fn spec_weights(&self) -> Result<Vec<f64>> {
        Ok(self.rollout()?["spec"]["versions"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v["weight"].as_f64())
            .collect())
    }

    /// Waits until the gateway's filter runs `weights`; the time it took from `since`.
    fn reach_gateway(&self, weights: &[f64], since: Instant, what: &str) -> Result<Duration> {
        let deadline = Instant::now() + PROPAGATION;
        loop {
            if self.stack.applied_weights(ROLLOUT)?.as_deref() == Some(weights) {
                return Ok(since.elapsed());
            }
            if Instant::now() > deadline {
                bail!("{what}: the gateway does not run {weights:?} after {PROPAGATION:?}");
            }
            std::thread::sleep(Duration::from_millis(40));
        }
    }

    /// Runs `stickyctl args` as change number `changes + 1` and waits for the gateway.
    fn change(&mut self, driver: &Driver, kind: Kind, args: &[&str]) -> Result<()> {
        let label = args.join(" ");
        let took = driver.change(|| -> Result<Duration> {
            let started = Instant::now();
            self.stack.sticky("shop", args)?;
            let weights = self.spec_weights()?;
            self.reach_gateway(&weights, started, &label)
        })?;
        self.changes.push(Change { kind, label, took });
        Ok(())
    }

    /// A step of an abort or a promote with the controller killed at each of its writes.
    fn change_killing_the_controller(
        &mut self,
        driver: &Driver,
        kind: Kind,
        args: &[&str],
        steps: usize,
    ) -> Result<()> {
        let stop = Arc::new(AtomicBool::new(false));
        let (watching, started) = mpsc::channel();
        let killer = kill_at_each_step(
            self.kubeconfig.clone(),
            self.controllers
                .sender()
                .ok_or_else(|| anyhow!("no controllers"))?,
            Arc::clone(&stop),
            watching,
        );
        // The watch open before the command writes (or the killer's own error).
        if started.recv_timeout(Duration::from_secs(30)).is_err() {
            stop.store(true, Ordering::SeqCst);
            return match killer.join() {
                Ok(Err(e)) => Err(e.context("the killer's watch did not start")),
                _ => Err(anyhow!("the killer's watch did not start within 30 s")),
            };
        }
        let changed = self.change(driver, kind, args);
        std::thread::sleep(Duration::from_millis(300));
        stop.store(true, Ordering::SeqCst);
        let seen = killer
            .join()
            .map_err(|_| anyhow!("the killer panicked"))??;
        changed?;
        self.kills += seen.len();
        if seen.len() != steps {
            bail!(
                "`{}`: {} step(s) killed the controller, expected {steps}: {seen:?}",
                args.join(" "),
                seen.len()
            );
        }
        self.converged(&args.join(" "))
    }

    /// The restarted controller finds everything in sync and the gateway at the spec.
    fn converged(&self, after: &str) -> Result<()> {
        let deadline = Instant::now() + PROPAGATION;
        loop {
            let status = self.stack.stickyctl.status()?;
            let weights = self.spec_weights()?;
            if status["inSync"] == true
                && self.stack.applied_weights(ROLLOUT)?.as_deref() == Some(weights.as_slice())
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("after `{after}` and the controller's restarts: not in sync: {status:#}");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// A weight `stickyctl` refuses: exit code 2, nothing written.
    fn refused_by_stickyctl(&self) -> Result<()> {
        let before = self.rollout()?;
        let run = self
            .stack
            .stickyctl
            .run(&["--name", "shop", "set-weight", "33.333"])?;
        if run.code != Some(2) {
            bail!("an invalid weight was not refused: {run:?}");
        }
        let after = self.rollout()?;
        if before["metadata"]["resourceVersion"] != after["metadata"]["resourceVersion"] {
            bail!("a refused command changed the rollout");
        }
        Ok(())
    }

    /// With the controller down, a configuration the filter refuses (weights summing to 95)
    /// is written into the shared plugin behind stickyctl's back: the gateway refuses it and
    /// keeps the last good one; the controller, started again, repairs the plugin.
    fn refused_by_the_gateway(&self) -> Result<Duration> {
        let good = self.spec_weights()?;
        self.controllers.order(Order::Kill)?;
        let rejected = || -> Result<u64> {
            Ok(self
                .stack
                .gateway
                .envoy()
                .stats()?
                .iter()
                .filter(|(k, _)| k.contains(GATEWAY_PLUGIN) && k.ends_with(".update_rejected"))
                .map(|(_, v)| *v)
                .sum())
        };
        let rejected_before = rejected()?;
        let (group, version, kind) = WASMPLUGIN;
        let resource = ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk(group, version, kind),
            "wasmplugins",
        );
        let plane = &self.stack.plane;
        let api: Api<DynamicObject> =
            Api::namespaced_with(plane.client(), "istio-system", &resource);
        let stored = plane.block_on(api.get(GATEWAY_PLUGIN))?;
        let mut broken = stored.clone();
        let canary = good.get(1).copied().unwrap_or(0.0);
        broken.data["spec"]["pluginConfig"]["rollouts"][0]["config"]["versions"] = json!([
            {"name": "v1", "weight": 95.0 - canary}, {"name": "v2", "weight": canary}]);
        plane.block_on(api.replace(GATEWAY_PLUGIN, &PostParams::default(), &broken))?;
        let deadline = Instant::now() + PROPAGATION;
        while rejected()? == rejected_before {
            if Instant::now() > deadline {
                bail!("the gateway never refused weights summing to 95");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        // The filter still runs, on the last good configuration: it is the only one it can
        // run (Envoy's ECDS config dump shows the refused one as its latest, so the weights are
        // read from the decisions instead).
        let probe = MeshStack::browser("shop").visit(&self.stack.http.fresh(), "/")?;
        if probe.page.status != 200 || probe.page.received_version.is_none() {
            bail!("the gateway stopped deciding on a refused configuration: {probe:?}");
        }
        let log = self.stack.gateway.envoy().log().unwrap_or_default();
        if !log.contains("rollouts[0].config.versions: weights must sum to 100, they sum to 95") {
            bail!("the gateway's log does not name the refused field");
        }
        let repair = Instant::now();
        self.controllers.order(Order::Restart)?;
        let deadline = Instant::now() + PROPAGATION;
        while plane.block_on(api.get(GATEWAY_PLUGIN))?.data["spec"] != stored.data["spec"] {
            if Instant::now() > deadline {
                bail!("the controller did not repair the shared plugin");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.reach_gateway(&good, repair, "the repaired plugin")
    }

    fn ramp(
        &mut self,
        driver: &Driver,
        kind: Kind,
        weights: impl Iterator<Item = u32>,
    ) -> Result<()> {
        for weight in weights {
            self.change(driver, kind, &["set-weight", &weight.to_string()])?;
        }
        Ok(())
    }
}

/// The counts a run is judged by.
#[derive(Debug, Default)]
struct Counts {
    page_loads: usize,
    requests: usize,
    failed: Vec<String>,
    mixed: usize,
    mixed_in_abort: usize,
    not_found_in_abort: usize,
    moved_back_in_ramp_up: usize,
    moved_into_canary: usize,
    /// The control: during the partial rollback clients do move back.
    moved_back_in_rollback: usize,
}

fn count(loads: &[PageLoad], changes: &[Change]) -> Counts {
    let mut counts = Counts::default();
    let abort = changes
        .iter()
        .position(|c| c.kind == Kind::Abort)
        .map(|i| i + 1);
    let promote = changes
        .iter()
        .position(|c| c.kind == Kind::Promote)
        .map_or(changes.len() + 1, |i| i + 1);
    for load in loads {
        counts.page_loads += 1;
        let visit = match &load.outcome {
            Ok(visit) => visit,
            Err(error) => {
                counts
                    .failed
                    .push(format!("browser {}: {error}", load.browser));
                continue;
            }
        };
        counts.requests += visit.responses().count();
        let in_abort = abort.is_some_and(|k| load.overlapped(k));
        for response in visit.responses() {
            match response.status {
                200 => {}
                404 if in_abort => counts.not_found_in_abort += 1,
                status => counts
                    .failed
                    .push(format!("browser {}: {status}", load.browser)),
            }
        }
        if visit.mixed() {
            if in_abort {
                counts.mixed_in_abort += 1;
            } else {
                counts.mixed += 1;
            }
        }
    }
    let stable = served_name("shop", "v1");
    let canary = served_name("shop", "v2");
    for browser in 0..CROWD {
        let own: Vec<&PageLoad> = loads.iter().filter(|l| l.browser == browser).collect();
        for pair in own.windows(2) {
            let (Ok(a), Ok(b)) = (&pair[0].outcome, &pair[1].outcome) else {
                continue;
            };
            // The changes that ran between the start of one load and the end of the next.
            let between: Vec<Kind> = (1..=changes.len())
                .filter(|&k| pair[0].started < 2 * k && pair[1].ended >= 2 * k - 1)
                .map(|k| changes[k - 1].kind)
                .collect();
            let ramp_up = between.iter().all(|k| matches!(k, Kind::Up | Kind::Start))
                && (1..=changes.len())
                    .filter(|&k| pair[1].ended >= 2 * k - 1)
                    .all(|k| k < promote);
            let rollback = between.contains(&Kind::Down)
                && between.iter().all(|k| matches!(k, Kind::Up | Kind::Down));
            if rollback
                && a.version() == Some(canary.as_str())
                && b.version() == Some(stable.as_str())
            {
                counts.moved_back_in_rollback += 1;
            }
            if !ramp_up {
                continue;
            }
            match (a.version(), b.version()) {
                (Some(x), Some(y)) if x == canary && y == stable => {
                    counts.moved_back_in_ramp_up += 1;
                }
                (Some(x), Some(y)) if x == stable && y == canary => counts.moved_into_canary += 1,
                _ => {}
            }
        }
    }
    counts
}

fn median(mut values: Vec<Duration>) -> Duration {
    values.sort();
    values.get(values.len() / 2).copied().unwrap_or_default()
}

#[test]
fn a_hundred_changes_through_istiod_under_load() {
    let begun = Instant::now();
    let upstream = Path::new(env!("CARGO_BIN_EXE_sticky-upstream"));
    let stack = MeshStack::start(
        upstream,
        &[Service::new("shop", &["v1", "v2"])],
        free_port().unwrap(),
    )
    .unwrap_or_else(|e| panic!("cannot start the mesh: {e:?}"));
    let setup = begun.elapsed();
    stack.init("shop", &[]).unwrap();
    let logs = tempfile::tempdir().unwrap();
    let controller_log = logs.path().join("controller.log");
    let controllers = Controllers::start(stack.stickyctl.clone(), controller_log.clone());
    controllers.order(Order::Restart).unwrap();
    let kubeconfig = stack.plane.admin_kubeconfig(NS).unwrap();
    stack
        .wait_until("the rollout live at the gateway", |http| {
            MeshStack::browser("shop").visit(http, "/").is_ok_and(|v| {
                v.page.served_by.is_some() && v.page.cookie(DEFAULT_ID_COOKIE).is_some()
            })
        })
        .unwrap();

    // Returning visitors: each holds an id cookie, as if the filter had minted it.
    let mut browsers: Vec<Browser> = (0..CROWD)
        .map(|i| MeshStack::browser("shop").with_cookie(DEFAULT_ID_COOKIE, &format!("churn-{i}")))
        .collect();
    let mut churn = Churn {
        stack: &stack,
        controllers: &controllers,
        kubeconfig,
        changes: Vec::new(),
        kills: 0,
    };
    let mut repair = Duration::ZERO;
    let mut istiod_restart = Duration::ZERO;
    let (driven, loads) = browse_while(&stack.http, &mut browsers, |driver| -> Result<()> {
        // A first ramp up, with a weight stickyctl refuses on the way.
        churn.change(driver, Kind::Start, &["start", "--canary", "v2"])?;
        churn.ramp(driver, Kind::Up, (2..=30).step_by(2))?;
        churn.refused_by_stickyctl()?;
        repair = churn.refused_by_the_gateway()?;
        churn.ramp(driver, Kind::Up, (32..=60).step_by(2))?;
        // A partial rollback, then up again, with istiod killed and restarted meanwhile and
        // a configuration only the gateway can refuse.
        churn.ramp(driver, Kind::Down, (30..=58).rev().step_by(2))?;
        churn.ramp(driver, Kind::Up, (32..=40).step_by(2))?;
        let restart = Instant::now();
        stack.plane.restart_istiod().context("restarting istiod")?;
        istiod_restart = restart.elapsed();
        churn.ramp(driver, Kind::Up, (42..=50).step_by(2))?;
        // The abort: its switch and the removal of the canary, the controller killed at each.
        churn.change_killing_the_controller(driver, Kind::Abort, &["abort"], 2)?;
        // A second canary all the way, promoted (the old stable drains, then goes).
        churn.change(driver, Kind::Start, &["start", "--canary", "v2"])?;
        churn.ramp(driver, Kind::Up, (2..=80).step_by(2))?;
        churn.change_killing_the_controller(driver, Kind::Promote, &["promote"], 1)?;
        driver.wait_for_round()?;
        driver.wait_for_round()?;
        churn.change_killing_the_controller(driver, Kind::Finish, &["promote", "--finish"], 1)?;
        driver.wait_for_round()?;
        Ok(())
    });
    let changes = std::mem::take(&mut churn.changes);
    let kills = churn.kills;
    drop(controllers);
    if let Err(error) = driven {
        let log = std::fs::read_to_string(&controller_log).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(20).collect();
        panic!("{error:?}\nthe controller's log ends:\n{}", tail.join("\n"));
    }
    let counts = count(&loads, &changes);
    let times: Vec<Duration> = changes.iter().map(|c| c.took).collect();
    let slowest = changes.iter().max_by_key(|c| c.took).unwrap();
    let wall = begun.elapsed();
    println!(
        "churn: {} changes; propagation to the gateway median {:?}, max {:?} ({}); \
         {} page loads, {} requests: {} failed, {} pages mixing versions \
         ({} more overlapping the abort, with {} 404s), {} clients moved from the canary back \
         to stable during a ramp up ({} moved into it, {} back during the partial rollback); \
         controller killed {} times; controller repair of a refused \
         plugin {repair:?}; istiod restarted in {istiod_restart:?}; wall time {wall:?} \
         (mesh start {setup:?})",
        changes.len(),
        median(times.clone()),
        slowest.took,
        slowest.label,
        counts.page_loads,
        counts.requests,
        counts.failed.len(),
        counts.mixed,
        counts.mixed_in_abort,
        counts.not_found_in_abort,
        counts.moved_back_in_ramp_up,
        counts.moved_into_canary,
        counts.moved_back_in_rollback,
        kills,
    );
    assert_eq!(changes.len(), 100, "{changes:?}");
    assert!(
        counts.failed.is_empty(),
        "failed requests: {:?}",
        counts.failed
    );
    assert_eq!(counts.mixed, 0, "pages mixing versions outside the abort");
    assert_eq!(
        counts.moved_back_in_ramp_up, 0,
        "clients left the canary during a ramp up"
    );
    assert!(
        counts.moved_back_in_rollback > 0,
        "no client left the canary during the partial rollback: the moves are not seen"
    );
    assert!(
        counts.moved_into_canary > 0 && counts.page_loads > 20 * CROWD,
        "the crowd did not browse through the ramps: {counts:?}"
    );
    let last = loads
        .iter()
        .rev()
        .find_map(|l| l.outcome.as_ref().ok())
        .unwrap();
    assert_eq!(last.version(), Some(served_name("shop", "v2").as_str()));
}
