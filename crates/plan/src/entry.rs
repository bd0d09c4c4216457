//! One entry against its live objects, pure: what applying it takes ([`decide`]) and where
//! it stands ([`standing`]), by its type's edit, so that "in sync" is exactly "applying
//! writes nothing".

use jiff::Timestamp;
use serde_json::Value;

use super::file::{Entry, Kind};
use super::naming::Names;
use super::preview::{EntryStatus, SingletonStatus};
use super::singleton::{self, Side, Step};
use super::workload::{both, Workload};
use super::{ingress, replicas, split, sticky, Object, ObjectKind, Refusal, Write};
use api::StickyCanary;

/// The live objects of one entry.
#[derive(Debug, Clone)]
pub enum Live {
    /// `STICKY`: the rollout.
    Sticky(Option<Box<StickyCanary>>),
    /// `INGRESS_NGINX`: the stable and the canary Ingress.
    Ingress {
        /// `<project>`.
        stable: Option<Value>,
        /// `<project>-canary`.
        canary: Option<Value>,
    },
    /// `ISTIO_VSVC`, `HTTPROUTE`: the VirtualService or the HTTPRoute.
    Routes(Option<Value>),
    /// `DEPLOYMENT_*`: the stable and the canary Deployment.
    Deployments {
        /// `<project>`.
        stable: Option<Workload>,
        /// `<project>-canary`.
        canary: Option<Workload>,
    },
}

/// What applying an entry takes.
#[derive(Debug, Clone)]
pub enum Decision {
    /// The rollout to save (`None`: its weight is the file's), then converged.
    Sticky(Option<Box<StickyCanary>>),
    /// These writes (none: nothing to change).
    Writes(Vec<Write>),
    /// A singleton's handover: its moves and the scale writes among them.
    Handover {
        /// The moves, in order.
        steps: Vec<Step>,
        /// The scale writes, each against the Deployment as read.
        writes: Vec<Write>,
        /// The stable Deployment as read.
        stable: Box<Workload>,
        /// The canary Deployment as read.
        canary: Box<Workload>,
    },
}

impl Decision {
    /// Whether applying writes nothing (a sticky rollout's objects may still be re-applied).
    pub fn is_empty(&self) -> bool {
        match self {
            Decision::Sticky(next) => next.is_none(),
            Decision::Writes(writes) => writes.is_empty(),
            Decision::Handover { steps, .. } => steps.is_empty(),
        }
    }
}

/// The objects of an entry, `Kind namespace/name`.
pub fn objects(entry: &Entry, names: &Names) -> Vec<String> {
    let label = |kind, name: &str| Object::new(kind, &names.namespace, name).label();
    match entry.kind {
        Kind::Sticky => vec![format!("StickyCanary {}", names.path(&names.rollout))],
        Kind::IngressNginx => vec![
            label(ObjectKind::Ingress, &names.stable),
            label(ObjectKind::Ingress, &names.canary),
        ],
        Kind::IstioVsvc | Kind::HttpRoute => split::shape(entry.kind)
            .map(|shape| shape.object(names).label())
            .into_iter()
            .collect(),
        Kind::DeploymentReplicas | Kind::DeploymentSingleton => vec![
            label(ObjectKind::DeploymentScale, &names.stable),
            label(ObjectKind::DeploymentScale, &names.canary),
        ],
    }
}

/// What applying `entry` to `live` takes, or why it cannot be applied.
/// `now` dates the step a `STICKY` entry's transition starts.
pub fn decide(
    entry: &Entry,
    names: &Names,
    live: &Live,
    now: Timestamp,
) -> Result<Decision, Refusal> {
    let mismatch = || {
        Refusal::new(
            "type",
            format!("read objects of another type than {}", entry.kind.as_str()),
        )
    };
    if let (Some(shape), Live::Routes(object)) = (split::shape(entry.kind), live) {
        let percent = entry.count().unsigned_abs().into();
        return Ok(Decision::Writes(
            split::edit(shape, names, object.as_ref(), percent)?
                .into_iter()
                .collect(),
        ));
    }
    match (entry.kind, live) {
        (Kind::Sticky, Live::Sticky(rollout)) => Ok(Decision::Sticky(
            sticky::edit(names, rollout.as_deref(), entry.weight, now)?.map(Box::new),
        )),
        (Kind::IngressNginx, Live::Ingress { stable, canary }) => Ok(Decision::Writes(
            ingress::edit(
                names,
                stable.as_ref(),
                canary.as_ref(),
                i64::from(entry.count()),
            )?
            .into_iter()
            .collect(),
        )),
        (Kind::DeploymentReplicas, Live::Deployments { stable, canary }) => Ok(Decision::Writes(
            replicas::edit(names, stable.as_ref(), canary.as_ref(), entry.count())?
                .into_iter()
                .collect(),
        )),
        (Kind::DeploymentSingleton, Live::Deployments { stable, canary }) => {
            let runs = Side::of_weight(entry.count());
            let writes = singleton::writes(names, stable.as_ref(), canary.as_ref(), runs)?;
            let (stable, canary) = both(names, stable.as_ref(), canary.as_ref())?;
            Ok(Decision::Handover {
                steps: singleton::handover(stable, canary, runs),
                writes,
                stable: Box::new(stable.clone()),
                canary: Box::new(canary.clone()),
            })
        }
        _ => Err(mismatch()),
    }
}

/// Where `entry` stands on `live`; `rendered_in_sync` says, for `STICKY`, whether the
/// rollout's objects are what it renders to.
pub fn standing(
    entry: &Entry,
    names: &Names,
    live: &Live,
    rendered_in_sync: bool,
    now: Timestamp,
) -> EntryStatus {
    let mut status = EntryStatus {
        entry: entry.index,
        project: entry.project.clone(),
        kind: entry.kind,
        namespace: names.namespace.clone(),
        objects: objects(entry, names),
        weight: entry.weight,
        current: None,
        share: None,
        in_sync: false,
        detail: String::new(),
        problem: None,
        singleton: None,
    };
    if let (
        Kind::DeploymentSingleton,
        Live::Deployments {
            stable: Some(stable),
            canary: Some(canary),
        },
    ) = (entry.kind, live)
    {
        status.singleton = Some(SingletonStatus::of(stable, canary));
    }
    let decided = decide(entry, names, live, now);
    let stood = match live {
        Live::Sticky(Some(rollout)) => {
            let (current, detail) = match sticky::canary_weight(rollout) {
                Some((name, w)) => (w, format!("canary {name} at {w}%")),
                None => (
                    0.0,
                    format!(
                        "no canary: every client on {}",
                        rollout.spec.versions[0].name
                    ),
                ),
            };
            Ok((Some(current), Some(current), detail))
        }
        Live::Sticky(None) => Err(()),
        Live::Ingress { stable, canary } => {
            ingress::standing(names, stable.as_ref(), canary.as_ref())
                .map(|s| {
                    let written = s.written.unwrap_or_else(|| "absent".into());
                    (
                        Some(s.share),
                        Some(s.share),
                        format!("canary-weight {written} of {}", s.total),
                    )
                })
                .map_err(drop)
        }
        Live::Routes(object) => split::shape(entry.kind).ok_or(()).and_then(|shape| {
            split::standing(shape, names, object.as_ref())
                .map(|(share, detail)| (share, share, detail))
                .map_err(drop)
        }),
        Live::Deployments { stable, canary } => both(names, stable.as_ref(), canary.as_ref())
            .map(|(stable, canary)| match entry.kind {
                Kind::DeploymentSingleton => match singleton::standing(stable, canary) {
                    singleton::Standing::Alone(side) => {
                        let (current, share) = match side {
                            Side::Stable => (0.0, 0.0),
                            Side::Canary => (1.0, 100.0),
                        };
                        (
                            Some(current),
                            Some(share),
                            format!("{} runs alone", side.as_str()),
                        )
                    }
                    singleton::Standing::HandingOver(going) => {
                        let (old, new) = match going {
                            Side::Stable => (stable, canary),
                            Side::Canary => (canary, stable),
                        };
                        (
                            None,
                            None,
                            format!(
                                "handing over: neither runs yet (old pod terminating): {}; {}",
                                counts(old),
                                counts(new)
                            ),
                        )
                    }
                    singleton::Standing::Neither => (
                        None,
                        None,
                        "neither runs (a handover between its steps, or both at 0)".into(),
                    ),
                    singleton::Standing::Both => {
                        (None, None, "both may run: run the plan to hand over".into())
                    }
                },
                _ => (
                    Some(f64::from(canary.replicas)),
                    replicas::share(stable, canary),
                    format!(
                        "{} canary beside {} stable replicas",
                        canary.replicas, stable.replicas
                    ),
                ),
            })
            .map_err(drop),
    };
    match (stood, decided) {
        (Ok((current, share, detail)), Ok(decision)) => {
            status.current = current;
            status.share = share;
            status.detail = detail;
            status.in_sync = decision.is_empty() && rendered_in_sync;
            if decision.is_empty() && !rendered_in_sync {
                status
                    .detail
                    .push_str("; its objects drifted from the rollout");
            }
        }
        (Ok((current, share, detail)), Err(refusal)) => {
            status.current = current;
            status.share = share;
            status.detail = detail;
            status.problem = Some(refusal.to_string());
        }
        (Err(()), Err(refusal)) => {
            status.detail = "cannot be read as its type".into();
            status.problem = Some(refusal.to_string());
        }
        (Err(()), Ok(_)) => status.detail = "cannot be read as its type".into(),
    }
    status
}

/// A Deployment's counts, for a person: `Deployment prod/batch: replicas 0, counted 1, pods 1`.
fn counts(workload: &Workload) -> String {
    format!(
        "{}: replicas {}, counted {}, pods {}",
        workload.label(),
        workload.replicas,
        workload.status_replicas,
        workload.pods
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::file::parse;
    use crate::naming::resolve;
    use crate::workload::workload;
    use serde_json::json;

    fn entry(text: &str) -> (Entry, Names) {
        let entry = parse(text, "p.yaml").expect("valid").remove(0);
        let names = resolve(&entry, "prod");
        (entry, names)
    }

    fn deployments(stable: (i32, i32, usize), canary: (i32, i32, usize)) -> Live {
        Live::Deployments {
            stable: Some(workload("d", stable.0, stable.1, stable.2)),
            canary: Some(workload("d-canary", canary.0, canary.1, canary.2)),
        }
    }

    #[test]
    fn replicas_status_is_the_share_the_counts_give() {
        let (e, n) = entry("- {project: d, type: DEPLOYMENT_REPLICAS, weight: 1}\n");
        let s = standing(
            &e,
            &n,
            &deployments((4, 4, 4), (1, 1, 1)),
            true,
            Timestamp::UNIX_EPOCH,
        );
        assert_eq!(
            (s.current, s.share, s.in_sync),
            (Some(1.0), Some(20.0), true)
        );
        assert_eq!(s.detail, "1 canary beside 4 stable replicas");
        assert_eq!(s.objects, ["Deployment prod/d", "Deployment prod/d-canary"]);
        let s = standing(
            &e,
            &n,
            &deployments((4, 4, 4), (0, 0, 0)),
            true,
            Timestamp::UNIX_EPOCH,
        );
        assert_eq!(
            (s.current, s.share, s.in_sync),
            (Some(0.0), Some(0.0), false)
        );
        let missing = Live::Deployments {
            stable: None,
            canary: Some(workload("d-canary", 1, 1, 1)),
        };
        let s = standing(&e, &n, &missing, true, Timestamp::UNIX_EPOCH);
        assert!(!s.in_sync);
        assert_eq!(
            s.problem.as_deref(),
            Some("stable: Deployment prod/d (the stable release's) does not exist")
        );
    }

    #[test]
    fn singleton_status_says_which_runs() {
        let (e, n) = entry("- {project: d, type: DEPLOYMENT_SINGLETON, weight: 1}\n");
        let cases = [
            ((1, 1, 1), (0, 0, 0), Some(0.0), false, "stable runs alone"),
            ((0, 0, 0), (1, 1, 1), Some(1.0), true, "canary runs alone"),
            ((0, 0, 0), (0, 0, 0), None, false, "neither runs"),
            (
                (0, 1, 1),
                (0, 0, 0),
                None,
                false,
                "handing over: neither runs yet (old pod terminating): Deployment prod/d: replicas 0, counted 1, pods 1; Deployment prod/d-canary: replicas 0, counted 0, pods 0",
            ),
            ((1, 1, 1), (1, 0, 0), None, false, "both may run"),
        ];
        for (s, c, current, in_sync, detail) in cases {
            let got = standing(&e, &n, &deployments(s, c), true, Timestamp::UNIX_EPOCH);
            assert_eq!(
                (got.current, got.in_sync),
                (current, in_sync),
                "{s:?} {c:?}"
            );
            assert!(got.detail.starts_with(detail), "{}", got.detail);
        }
        let Decision::Handover { steps, writes, .. } = decide(
            &e,
            &n,
            &deployments((1, 1, 1), (0, 0, 0)),
            Timestamp::UNIX_EPOCH,
        )
        .unwrap() else {
            panic!("a handover")
        };
        assert_eq!(
            steps,
            [
                Step::ScaleDown(Side::Stable),
                Step::AwaitGone(Side::Stable),
                Step::ScaleUp(Side::Canary)
            ]
        );
        assert_eq!(writes.len(), 2);
    }

    #[test]
    fn in_sync_is_exactly_applying_writes_nothing() {
        let (e, n) = entry("- {project: web, type: INGRESS_NGINX, weight: 10}\n");
        let ing = |name: &str, a: Value| json!({"metadata": {"name": name, "namespace": "prod", "annotations": a}});
        let live = |w: &str| Live::Ingress {
            stable: Some(ing("web", json!({}))),
            canary: Some(ing(
                "web-canary",
                json!({ingress::CANARY: "true", ingress::WEIGHT: w}),
            )),
        };
        for (weight, in_sync) in [("10", true), ("0", false)] {
            let s = standing(&e, &n, &live(weight), true, Timestamp::UNIX_EPOCH);
            assert_eq!(s.in_sync, in_sync);
            assert_eq!(
                decide(&e, &n, &live(weight), Timestamp::UNIX_EPOCH)
                    .unwrap()
                    .is_empty(),
                in_sync
            );
        }
        let (e, n) = entry("- {project: map, type: ISTIO_VSVC, weight: 10}\n");
        let vs = json!({"metadata": {"name": "map", "namespace": "prod"}, "spec": {"http": [
            {"name": "a", "route": [{"destination": {"host": "map"}, "weight": 90}, {"destination": {"host": "map-canary"}, "weight": 10}]},
            {"name": "b", "route": [{"destination": {"host": "map"}, "weight": 80}, {"destination": {"host": "map-canary"}, "weight": 20}]}]}});
        let s = standing(&e, &n, &Live::Routes(Some(vs)), true, Timestamp::UNIX_EPOCH);
        assert_eq!(
            (s.current, s.in_sync),
            (None, false),
            "routes disagree: {s:?}"
        );
        assert_eq!(
            s.detail,
            "route a: map 90, map-canary 10; route b: map 80, map-canary 20"
        );
    }

    #[test]
    fn an_httproute_entry_is_decided_and_stands_as_the_virtualservice_one_does() {
        let (e, n) = entry(
            "- {project: shop, type: HTTPROUTE, weight: 10, stable: shop-v1, canary: shop-v2}\n",
        );
        let route = |stable: u64, canary: u64| {
            Live::Routes(Some(
                json!({"metadata": {"name": "shop", "namespace": "prod"},
                "spec": {"rules": [{"name": "main", "backendRefs": [
                    {"name": "shop-v1", "port": 80, "weight": stable},
                    {"name": "shop-v2", "port": 80, "weight": canary}]}]}}),
            ))
        };
        for ((stable, canary), in_sync, current) in [((90, 10), true, 10.0), ((3, 1), false, 25.0)]
        {
            let live = route(stable, canary);
            let s = standing(&e, &n, &live, true, Timestamp::UNIX_EPOCH);
            assert_eq!(s.objects, ["HTTPRoute prod/shop"]);
            assert_eq!(
                (s.current, s.share, s.in_sync, s.problem),
                (Some(current), Some(current), in_sync, None)
            );
            assert_eq!(
                s.detail,
                format!("rule main: shop-v1 {stable}, shop-v2 {canary}")
            );
            let decision = decide(&e, &n, &live, Timestamp::UNIX_EPOCH).expect("decided");
            assert_eq!(decision.is_empty(), in_sync);
        }
        let Decision::Writes(writes) =
            decide(&e, &n, &route(100, 0), Timestamp::UNIX_EPOCH).expect("decided")
        else {
            panic!("plain writes")
        };
        assert_eq!(writes[0].object.label(), "HTTPRoute prod/shop");
        let missing = standing(&e, &n, &Live::Routes(None), true, Timestamp::UNIX_EPOCH);
        assert_eq!(
            missing.problem.as_deref(),
            Some("httpRoute: HTTPRoute prod/shop does not exist")
        );
        // Objects of another type are never edited as the entry's.
        let other = Live::Ingress {
            stable: None,
            canary: None,
        };
        let refusal = decide(&e, &n, &other, Timestamp::UNIX_EPOCH).expect_err("a mismatch");
        assert_eq!(
            refusal.to_string(),
            "type: read objects of another type than HTTPROUTE"
        );
    }

    #[test]
    fn a_sticky_rollout_in_sync_needs_its_objects_in_sync_too() {
        use api::StickyCanarySpec;
        use sticky_canary_filter::VersionWeight;
        let (e, n) = entry("- {project: server, type: STICKY, weight: 10}\n");
        let mut spec = StickyCanarySpec::new("server", "v1");
        spec.versions = vec![
            VersionWeight::new("v1", 90.0),
            VersionWeight::new("v2", 10.0),
        ];
        let live = Live::Sticky(Some(Box::new(StickyCanary::new("server", spec))));
        let s = standing(&e, &n, &live, true, Timestamp::UNIX_EPOCH);
        assert_eq!(
            (s.current, s.share, s.in_sync),
            (Some(10.0), Some(10.0), true)
        );
        assert_eq!(s.detail, "canary v2 at 10%");
        let drifted = standing(&e, &n, &live, false, Timestamp::UNIX_EPOCH);
        assert!(!drifted.in_sync && drifted.detail.ends_with("drifted from the rollout"));
        let none = standing(&e, &n, &Live::Sticky(None), true, Timestamp::UNIX_EPOCH);
        assert!(none
            .problem
            .unwrap()
            .starts_with("rollout: StickyCanary prod/server does not exist"));
    }
}
