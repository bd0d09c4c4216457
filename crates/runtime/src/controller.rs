//! The controller: the kube-rs runtime shell around [`converge`] and [`teardown`].
//!
//! A rollout is reconciled when it changes, when an object it renders to changes (so a hand
//! edit that drops a managed route or subset is repaired at once, not at the next resync), and
//! every [`RESYNC`]. A finalizer holds a deleted rollout until it is out of the shared
//! WasmPlugins and its routes and subsets are out of the user's objects. Applied
//! changes and failures are also Kubernetes Events on the rollout, so `kubectl describe` shows
//! them; recording one is best effort and never holds a reconcile up.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::finalizer::{self, finalizer};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Api, Client, Resource, ResourceExt};
use serde_json::Value;
use tokio::signal::unix::{signal, SignalKind};

use crate::act::look;
use crate::error::{Error, EXIT_INVALID};
use crate::metrics::Metrics;
use crate::notify::Notifier;
use crate::reconcile::{converge, teardown};
use crate::target::envoy_dir::EnvoyDir;
use crate::target::kube::{objects_api, KubeTarget, FINALIZER};
use crate::target::place::Place;
use crate::target::Target;
use api::StickyCanary;
use render::istio::{namespace_and_name, object_name, Kind};
use render::placement::{placements, rollout_key};
use render::wasmplugin::{self, MANAGED_BY, MANAGED_BY_LABEL};

/// How often the controller re-checks a rollout that did not change, as a safety net behind
/// the watches on the objects it writes.
pub const RESYNC: Duration = Duration::from_secs(300);
/// Name the controller reports its Events under.
pub const REPORTER: &str = "stickyctl";

/// What the controller's reconciler needs.
pub struct Ctx<M> {
    /// The cluster.
    pub client: Client,
    /// Where Events go.
    pub recorder: Recorder,
    /// Where automatic rollouts' metrics come from (`--prometheus`); without it they wait.
    pub metrics: Option<M>,
    /// How the looks' notices are sent: in the background, with one client.
    pub notifier: Notifier,
}

impl<M: Metrics> Ctx<M> {
    /// The context of a controller talking to `client`, reading metrics from `metrics`.
    pub fn new(client: Client, metrics: Option<M>) -> Self {
        let recorder = Recorder::new(client.clone(), Reporter::from(REPORTER));
        Ctx {
            client,
            recorder,
            metrics,
            notifier: Notifier::server(),
        }
    }

    /// Records an Event on `canary`; a failure is logged, never returned, because a lost
    /// Event must not stop or repeat a reconcile.
    async fn publish(&self, canary: &StickyCanary, type_: EventType, reason: &str, note: String) {
        let event = Event {
            type_,
            reason: reason.to_owned(),
            note: Some(note),
            action: "Reconcile".to_owned(),
            secondary: None,
        };
        if let Err(error) = self.recorder.publish(&event, &canary.object_ref(&())).await {
            tracing::warn!(rollout = %canary.name_any(), %error, "cannot record an event");
        }
    }
}

/// The kube-rs reconciler: converge a live rollout (after putting the finalizer on it), or
/// tear down a deleted one (then take the finalizer off); a failure is also an Event.
pub async fn reconcile<M: Metrics>(
    canary: Arc<StickyCanary>,
    ctx: Arc<Ctx<M>>,
) -> Result<Action, Error> {
    let result = finalize(Arc::clone(&canary), &ctx).await;
    if let Err(error) = &result {
        ctx.publish(
            &canary,
            EventType::Warning,
            "ReconcileFailed",
            error.to_string(),
        )
        .await;
    }
    result
}

async fn finalize<M: Metrics>(canary: Arc<StickyCanary>, ctx: &Ctx<M>) -> Result<Action, Error> {
    let namespace = canary.namespace().ok_or_else(|| {
        Error::Invalid(format!(
            "StickyCanary {} has no namespace",
            canary.name_any()
        ))
    })?;
    let name = canary.name_any();
    let target = KubeTarget::new(ctx.client.clone(), &namespace, &name);
    let rollouts: Api<StickyCanary> = Api::namespaced(ctx.client.clone(), &namespace);
    finalizer(&rollouts, FINALIZER, canary, |event| async {
        match event {
            finalizer::Event::Apply(canary) => {
                let written = converge(&target).await?;
                if written > 0 {
                    tracing::info!(rollout = %name, %namespace, written, "converged");
                    let note = format!("wrote {written} object(s) for {}", canary.spec.summary());
                    ctx.publish(&canary, EventType::Normal, "Applied", note)
                        .await;
                }
                let Some(metrics) = &ctx.metrics else {
                    if canary.spec.auto.enabled {
                        let note = "auto is on, but the controller runs without --prometheus: the rollout waits".to_owned();
                        ctx.publish(&canary, EventType::Warning, "NoMetrics", note).await;
                    }
                    return Ok(Action::requeue(RESYNC));
                };
                // Whether the rollout is automatic, and its webhook, come from a fresh read,
                // never from `canary`: the cache may be stale (a re-list from a lagging API
                // server, a missed event), and trusting it held an automatic rollout, and the
                // rollback of a failing canary, until the rollout's next change was seen.
                let Some((acted, again)) = look(&target, metrics, &ctx.notifier).await? else {
                    return Ok(Action::requeue(RESYNC));
                };
                for (action, _) in &acted.done.actions {
                    ctx.publish(&canary, EventType::Normal, "Step", action.clone()).await;
                }
                if let Some(why) = acted.warning {
                    tracing::warn!(rollout = %name, %namespace, "{why}");
                    ctx.publish(&canary, EventType::Warning, "WebhookRefused", why).await;
                }
                Ok(Action::requeue(again))
            }
            finalizer::Event::Cleanup(canary) => {
                let written = teardown(&target, &canary).await?.len();
                tracing::info!(rollout = %name, %namespace, written, "cleaned up");
                let note = format!(
                    "left the shared WasmPlugins, removed the managed routes and subsets ({written} object(s) written)"
                );
                ctx.publish(&canary, EventType::Normal, "CleanedUp", note)
                    .await;
                Ok(Action::await_change())
            }
        }
    })
    .await
    .map_err(|error| match error {
        finalizer::Error::ApplyFailed(error) | finalizer::Error::CleanupFailed(error) => error,
        finalizer::Error::AddFinalizer(error) | finalizer::Error::RemoveFinalizer(error) => {
            Error::Kube(error)
        }
        other => Error::Runtime(other.to_string()),
    })
}

/// The kube-rs error policy: bad input waits for a human (a minute), anything else retries soon.
pub fn error_policy<M>(canary: Arc<StickyCanary>, error: &Error, _: Arc<Ctx<M>>) -> Action {
    tracing::warn!(rollout = %canary.name_any(), %error, "reconcile failed");
    Action::requeue(if error.exit_code() == EXIT_INVALID {
        Duration::from_secs(60)
    } else {
        Duration::from_secs(5)
    })
}

/// The rollouts among `rollouts` that render to the `kind` object `namespace/name`: the ones a
/// change to that object must reconcile again.
pub fn referencing(
    rollouts: &[Arc<StickyCanary>],
    kind: Kind,
    namespace: Option<&str>,
    name: &str,
) -> Vec<ObjectRef<StickyCanary>> {
    rollouts
        .iter()
        .filter(|rollout| rollout.namespace().as_deref() == namespace)
        .filter(|rollout| object_name(kind, &rollout.name_any(), &rollout.spec) == name)
        .map(|rollout| ObjectRef::from_obj(rollout.as_ref()))
        .collect()
}

/// The rollouts among `rollouts` that a change to shared `plugin` concerns: those with an
/// entry in it, and those placed on its proxy group (an entry removed by hand comes back).
pub fn in_plugin(rollouts: &[Arc<StickyCanary>], plugin: &Value) -> Vec<ObjectRef<StickyCanary>> {
    let at = namespace_and_name(plugin);
    rollouts
        .iter()
        .filter(|rollout| {
            let namespace = rollout.namespace().unwrap_or_default();
            let name = rollout.name_any();
            wasmplugin::entry(plugin, &rollout_key(&namespace, &name)).is_some()
                || placements(&namespace, &rollout.spec)
                    .iter()
                    .any(|p| (p.namespace.clone(), p.plugin_name()) == at)
        })
        .map(|rollout| ObjectRef::from_obj(rollout.as_ref()))
        .collect()
}

/// Runs the controller until SIGINT/SIGTERM, for one namespace or all.
pub async fn run<M: Metrics + Send + 'static>(
    client: Client,
    namespace: Option<&str>,
    metrics: Option<M>,
) {
    let rollouts: Api<StickyCanary> = match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let controller = Controller::new(rollouts, watcher::Config::default());
    let store = controller.store();
    // Shared plugins live in the proxies' namespaces, whatever namespace the controller serves.
    let (plugins, plugin_resource) = objects_api(client.clone(), Kind::WasmPlugin, None);
    let managed = watcher::Config::default().labels(&format!("{MANAGED_BY_LABEL}={MANAGED_BY}"));
    let plugin_store: Store<StickyCanary> = store.clone();
    let mut controller =
        controller.watches_with(plugins, plugin_resource, managed, move |plugin| {
            let plugin = serde_json::to_value(plugin).unwrap_or_default();
            in_plugin(&plugin_store.state(), &plugin)
        });
    for kind in [Kind::VirtualService, Kind::DestinationRule] {
        let (api, resource) = objects_api(client.clone(), kind, namespace);
        let store: Store<StickyCanary> = store.clone();
        controller =
            controller.watches_with(api, resource, watcher::Config::default(), move |object| {
                referencing(
                    &store.state(),
                    kind,
                    object.namespace().as_deref(),
                    &object.name_any(),
                )
            });
    }
    controller
        .shutdown_on_signal()
        .run(reconcile, error_policy, Arc::new(Ctx::new(client, metrics)))
        .for_each(|result| async move {
            if let Err(error) = result {
                tracing::debug!(%error, "reconcile error");
            }
        })
        .await;
}

/// Runs the controller on `place` until SIGINT/SIGTERM: every StickyCanary of a cluster (of
/// its `--namespace`, or all), or the rollout of an Envoy directory.
pub async fn serve<M: Metrics + Send + 'static>(
    place: &Place,
    metrics: Option<M>,
) -> Result<(), Error> {
    match place {
        Place::Kube { client, namespace } => {
            run(client.clone(), namespace.as_deref(), metrics).await;
            Ok(())
        }
        Place::EnvoyDir(dir) => run_envoy_dir(dir, metrics).await,
    }
}

/// How long the plain-Envoy controller waits between passes over a rollout that is not
/// automatic (or not there yet).
pub const ENVOY_DIR_PERIOD: Duration = Duration::from_secs(5);

/// Runs the controller on a plain Envoy's config directory until SIGINT/SIGTERM: converges
/// its rollout and, when it is automatic, looks at it as on Kubernetes. The directory's lock
/// is held for one pass at a time, so commands run in between.
pub async fn run_envoy_dir<M: Metrics>(dir: &Path, metrics: Option<M>) -> Result<(), Error> {
    let notifier = Notifier::server();
    let mut terminate = signal(SignalKind::terminate())
        .map_err(|e| Error::Runtime(format!("cannot watch for SIGTERM: {e}")))?;
    loop {
        let wait = match envoy_dir_pass(dir, metrics.as_ref(), &notifier).await {
            Ok(wait) => wait,
            // A typo in the path stops the controller; anything else is retried.
            Err(error) if error.exit_code() == EXIT_INVALID && !dir.is_dir() => return Err(error),
            Err(error) => {
                tracing::warn!(dir = %dir.display(), %error, "pass failed");
                ENVOY_DIR_PERIOD
            }
        };
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            _ = tokio::signal::ctrl_c() => return Ok(()),
            _ = terminate.recv() => return Ok(()),
        }
    }
}

async fn envoy_dir_pass<M: Metrics>(
    dir: &Path,
    metrics: Option<&M>,
    notifier: &Notifier,
) -> Result<Duration, Error> {
    let target = EnvoyDir::open(dir).await?;
    let Some(canary) = target.load().await? else {
        return Ok(ENVOY_DIR_PERIOD);
    };
    let written = converge(&target).await?;
    if written > 0 {
        tracing::info!(dir = %dir.display(), written, "converged");
    }
    let (Some(metrics), true) = (metrics, canary.spec.auto.enabled) else {
        if canary.spec.auto.enabled {
            tracing::warn!(
                "auto is on, but the controller runs without --prometheus: the rollout waits"
            );
        }
        return Ok(ENVOY_DIR_PERIOD);
    };
    let Some((acted, again)) = look(&target, metrics, notifier).await? else {
        return Ok(ENVOY_DIR_PERIOD);
    };
    for (action, _) in &acted.done.actions {
        tracing::info!(rollout = %canary.name_any(), %action, "step");
    }
    if let Some(why) = acted.warning {
        tracing::warn!(rollout = %canary.name_any(), "{why}");
    }
    Ok(again)
}

#[cfg(test)]
mod tests {
    use super::*;
    use api::StickyCanarySpec;

    fn rollout(namespace: &str, name: &str, virtual_service: Option<&str>) -> Arc<StickyCanary> {
        let mut spec = StickyCanarySpec::new("shop", "v1");
        spec.routing.virtual_service = virtual_service.map(str::to_owned);
        let mut canary = StickyCanary::new(name, spec);
        canary.metadata.namespace = Some(namespace.to_owned());
        Arc::new(canary)
    }

    #[test]
    fn objects_map_back_to_the_rollouts_that_render_to_them() {
        let rollouts = [
            rollout("prod", "shop", None),
            rollout("prod", "cart", Some("web")),
            rollout("prod", "search", Some("web")),
            rollout("staging", "shop", None),
        ];
        let names = |kind, namespace, name| {
            referencing(&rollouts, kind, Some(namespace), name)
                .into_iter()
                .map(|r| format!("{}/{}", r.namespace.unwrap_or_default(), r.name))
                .collect::<Vec<_>>()
        };
        let cases: [(Kind, &str, &str, &[&str]); 6] = [
            (Kind::VirtualService, "prod", "shop", &["prod/shop"]),
            (
                Kind::VirtualService,
                "prod",
                "web",
                &["prod/cart", "prod/search"],
            ),
            (Kind::VirtualService, "prod", "cart", &[]),
            (Kind::DestinationRule, "prod", "cart", &["prod/cart"]),
            (Kind::DestinationRule, "staging", "shop", &["staging/shop"]),
            (Kind::VirtualService, "dev", "shop", &[]),
        ];
        for (kind, namespace, name, expected) in cases {
            assert_eq!(
                names(kind, namespace, name),
                expected,
                "{kind:?} {namespace}/{name}"
            );
        }
    }
}
