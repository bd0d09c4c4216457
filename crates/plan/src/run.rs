//! The shell of `plan apply`, `plan status` and `plan rollback`: read every entry's objects,
//! decide with the pure edits, preview every change, have the API server check every write
//! (a server-side dry run), and only then apply, entry by entry in file order, each re-read
//! and edited again on a conflict. A failure stops the plan and says which entries are
//! applied and which are not; `plan status` shows the same from the live objects.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use kube::ResourceExt;
use serde_json::json;

use super::cluster::Cluster;
use super::entry::{self, Decision, Live};
use super::file::{Entry, Kind};
use super::naming::{self, Names};
use super::preview::{self, EntryStatus};
use super::singleton::{self, Side, Step};
use super::workload::both;
use super::{ObjectKind, Refusal};
use runtime::error::{Changed, Error, EXIT_INVALID};
use runtime::reconcile::{advance_as, converge, retry_on_conflict, MAX_ATTEMPTS};
use runtime::target::envoy_dir::EnvoyDir;
use runtime::target::kube::KubeTarget;
use runtime::target::{Plan, Target};

/// How often a handover looks whether the old pods are gone: the longest the new one waits
/// after they are.
const POLL: Duration = Duration::from_millis(100);

/// Where the plan's objects live.
pub enum Place {
    /// A Kubernetes cluster, and the namespace of entries that name none.
    Kube {
        /// The cluster.
        cluster: Cluster,
        /// The default namespace.
        namespace: String,
    },
    /// A plain Envoy's config directory: `STICKY` entries only (its one rollout).
    EnvoyDir(EnvoyDir),
}

impl Place {
    fn namespace(&self) -> &str {
        match self {
            Place::Kube { namespace, .. } => namespace,
            Place::EnvoyDir(_) => "envoy-dir",
        }
    }
}

/// `entry 3 (map)`'s error `err`, keeping what kind of error it is (and so its exit code).
fn within(entry: &Entry, err: Error) -> Error {
    let what = entry.what();
    match err {
        Error::Conflict(c) => Error::Conflict(Changed {
            object: format!("{what}: {}", c.object),
            ..c
        }),
        e if e.exit_code() == EXIT_INVALID => Error::Invalid(format!("{what}: {e}")),
        e => Error::Runtime(format!("{what}: {e}")),
    }
}

fn refused(entry: &Entry, refusal: Refusal) -> Error {
    Error::Invalid(format!("{}: {refusal}", entry.what()))
}

/// Refuses, before anything is read, entries a plain Envoy cannot have.
fn check_place(place: &Place, entries: &[Entry]) -> Result<(), Error> {
    if let Place::EnvoyDir(_) = place {
        let other: Vec<String> = entries
            .iter()
            .filter(|e| e.kind != Kind::Sticky)
            .map(|e| format!("{}: type {} needs Kubernetes; with --envoy-dir a plan has STICKY entries only (the directory's one rollout)", e.what(), e.kind.as_str()))
            .collect();
        if !other.is_empty() {
            return Err(Error::Invalid(other.join("\n")));
        }
    }
    Ok(())
}

/// Reads the live objects of `entry`.
async fn read(place: &Place, entry: &Entry, names: &Names) -> Result<Live, Error> {
    let cluster = match place {
        Place::EnvoyDir(dir) => {
            let rollout = dir.load().await?;
            if let Some(r) = &rollout {
                if r.name_any() != names.rollout {
                    return Err(Error::Invalid(format!(
                        "rollout: the Envoy directory holds rollout {:?}, not {:?}",
                        r.name_any(),
                        names.rollout
                    )));
                }
            }
            return Ok(Live::Sticky(rollout.map(Box::new)));
        }
        Place::Kube { cluster, .. } => cluster,
    };
    let ns = &names.namespace;
    Ok(match entry.kind {
        Kind::Sticky => Live::Sticky(sticky_target(cluster, names).load().await?.map(Box::new)),
        Kind::IngressNginx => Live::Ingress {
            stable: cluster
                .object(ObjectKind::Ingress, ns, &names.stable)
                .await?,
            canary: cluster
                .object(ObjectKind::Ingress, ns, &names.canary)
                .await?,
        },
        Kind::IstioVsvc => Live::VirtualService(
            cluster
                .object(ObjectKind::VirtualService, ns, &names.virtual_service)
                .await?,
        ),
        Kind::DeploymentReplicas | Kind::DeploymentSingleton => Live::Deployments {
            stable: cluster.workload(ns, &names.stable).await?,
            canary: cluster.workload(ns, &names.canary).await?,
        },
    })
}

fn sticky_target(cluster: &Cluster, names: &Names) -> KubeTarget {
    KubeTarget::new(cluster.client(), &names.namespace, &names.rollout)
}

/// One entry, read and decided.
struct Prepared {
    entry: Entry,
    names: Names,
    live: Live,
    decision: Decision,
    /// `STICKY`: what the rollout (as it will be) renders to against the live objects.
    rendered: Option<Plan>,
}

impl Prepared {
    /// Whether applying it writes nothing.
    fn is_empty(&self) -> bool {
        self.decision.is_empty() && self.rendered.as_ref().is_none_or(|p| p.writes.is_empty())
    }
}

/// What the rollout of `live` (after `decision`) renders to against `target`'s live objects.
async fn render<T: Target>(
    target: &T,
    live: &Live,
    decision: &Decision,
) -> Result<Option<Plan>, Error> {
    let rollout = match (decision, live) {
        (Decision::Sticky(Some(next)), _) => next.as_ref(),
        (Decision::Sticky(None), Live::Sticky(Some(current))) => current.as_ref(),
        _ => return Ok(None),
    };
    target.plan(rollout).await.map(Some)
}

/// Reads and decides every entry; every refusal at once, before any write.
async fn prepare(place: &Place, entries: &[Entry]) -> Result<Vec<Prepared>, Error> {
    let mut prepared = Vec::new();
    let mut refusals = Vec::new();
    for entry in entries {
        let names = naming::resolve(entry, place.namespace());
        let live = read(place, entry, &names)
            .await
            .map_err(|e| within(entry, e))?;
        let decision = match entry::decide(entry, &names, &live, Timestamp::now()) {
            Ok(decision) => decision,
            Err(refusal) => {
                refusals.push(refused(entry, refusal).to_string());
                continue;
            }
        };
        let rendered = match place {
            Place::Kube { cluster, .. } => {
                render(&sticky_target(cluster, &names), &live, &decision).await
            }
            Place::EnvoyDir(dir) => render(dir, &live, &decision).await,
        };
        let rendered = match rendered.map_err(|e| within(entry, e)) {
            Ok(rendered) => rendered,
            Err(e) if e.exit_code() == EXIT_INVALID => {
                refusals.push(e.to_string());
                continue;
            }
            Err(e) => return Err(e),
        };
        prepared.push(Prepared {
            entry: entry.clone(),
            names,
            live,
            decision,
            rendered,
        });
    }
    if refusals.is_empty() {
        Ok(prepared)
    } else {
        Err(Error::Invalid(format!(
            "{}\nnothing was written",
            refusals.join("\n")
        )))
    }
}

/// Has the API server check every write of every entry, writing nothing.
async fn check(place: &Place, prepared: &[Prepared]) -> Result<usize, Error> {
    let mut checked = 0;
    for p in prepared {
        let result = async {
            if let Some(plan) = &p.rendered {
                match place {
                    Place::Kube { cluster, .. } => {
                        sticky_target(cluster, &p.names).check(plan).await?
                    }
                    Place::EnvoyDir(dir) => dir.check(plan).await?,
                }
                checked += plan.writes.len();
            }
            let writes = match &p.decision {
                Decision::Writes(writes) | Decision::Handover { writes, .. } => writes.as_slice(),
                Decision::Sticky(_) => &[],
            };
            if let Place::Kube { cluster, .. } = place {
                for write in writes {
                    cluster.write(write, true).await?;
                    checked += 1;
                }
            }
            Ok::<(), Error>(())
        };
        result.await.map_err(|e| within(&p.entry, e))?;
    }
    Ok(checked)
}

/// Prints what applying will change, entry by entry.
fn print_preview(prepared: &[Prepared], out: &mut String) {
    for p in prepared {
        writeln!(out, "{}", preview::heading(&p.entry, &p.names.namespace)).ok();
        if p.is_empty() {
            writeln!(out, "    nothing to change").ok();
            continue;
        }
        match &p.decision {
            Decision::Sticky(next) => {
                if let (Some(next), Live::Sticky(Some(current))) = (next, &p.live) {
                    writeln!(
                        out,
                        "    StickyCanary {}: versions {} -> {}",
                        p.names.path(&p.names.rollout),
                        current.spec.summary(),
                        next.spec.summary()
                    )
                    .ok();
                }
                if let Some(plan) = &p.rendered {
                    for doc in &plan.writes {
                        writeln!(out, "    {}: re-rendered", doc.label).ok();
                    }
                }
            }
            Decision::Writes(writes) => preview::writes(writes, out),
            Decision::Handover {
                steps,
                stable,
                canary,
                ..
            } => {
                preview::handover(steps, stable, canary, out);
            }
        }
    }
}

/// What the user asked for: the file's weights, or every entry on stable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Goal {
    /// `plan apply`.
    File,
    /// `plan rollback`.
    Stable,
}

/// `plan apply` and `plan rollback`: previews, checks, then applies every entry (with
/// `dry_run`, previews and checks only).
pub async fn apply(
    place: &Place,
    entries: &[Entry],
    goal: Goal,
    dry_run: bool,
    timeout: Duration,
    out: &mut String,
) -> Result<(), Error> {
    check_place(place, entries)?;
    let entries: Vec<Entry> = match goal {
        Goal::File => entries.to_vec(),
        Goal::Stable => entries.iter().map(Entry::on_stable).collect(),
    };
    // A conflict between reading and checking (someone wrote in between) reads again.
    let (prepared, checked) = retry_on_conflict(|| async {
        let prepared = prepare(place, &entries).await?;
        let checked = check(place, &prepared).await?;
        Ok((prepared, checked))
    })
    .await?;
    print_preview(&prepared, out);
    let changing = prepared.iter().filter(|p| !p.is_empty()).count();
    if changing == 0 {
        let already = match goal {
            Goal::File => "every entry is as the file says",
            Goal::Stable => "every entry is on stable already",
        };
        writeln!(out, "nothing to change: {already}").ok();
        return Ok(());
    }
    if dry_run {
        writeln!(
            out,
            "dry run: the API server accepts all {checked} writes; nothing was written"
        )
        .ok();
        return Ok(());
    }
    writeln!(
        out,
        "the API server accepts all {checked} writes (dry run); applying"
    )
    .ok();
    let mut wrote_any = false;
    for (i, p) in prepared.iter().enumerate() {
        let result = apply_entry(place, p, timeout).await;
        match result {
            Ok((written, report)) => {
                wrote_any |= written;
                writeln!(out, "{}: {report}", p.entry.what()).ok();
            }
            Err(err) => {
                let done: Vec<&Entry> = prepared[..i].iter().map(|p| &p.entry).collect();
                let rest: Vec<&Entry> = prepared[i..].iter().map(|p| &p.entry).collect();
                let refusal = err.exit_code() == EXIT_INVALID;
                let message = format!(
                    "{}\napplied: {}; not applied: {}",
                    within(&p.entry, err),
                    preview::entries(&done),
                    preview::entries(&rest)
                );
                // A refusal is exit code 2 only while nothing was written.
                return Err(if wrote_any || !refusal {
                    Error::Runtime(message)
                } else {
                    Error::Invalid(message)
                });
            }
        }
    }
    writeln!(
        out,
        "plan applied: {}",
        preview::entries(&prepared.iter().map(|p| &p.entry).collect::<Vec<_>>())
    )
    .ok();
    Ok(())
}

/// Applies one entry, read and edited again (on every conflict too); whether it wrote, and
/// what it did.
async fn apply_entry(
    place: &Place,
    p: &Prepared,
    timeout: Duration,
) -> Result<(bool, String), Error> {
    let (entry, names) = (&p.entry, &p.names);
    let cluster = match place {
        Place::EnvoyDir(dir) => return apply_sticky(dir, entry, names).await,
        Place::Kube { cluster, .. } => cluster,
    };
    match entry.kind {
        Kind::Sticky => apply_sticky(&sticky_target(cluster, names), entry, names).await,
        Kind::DeploymentSingleton => hand_over(cluster, entry, names, timeout).await,
        Kind::IngressNginx | Kind::IstioVsvc | Kind::DeploymentReplicas => {
            let written = retry_on_conflict(|| async {
                let live = read(place, entry, names).await?;
                let Decision::Writes(writes) = entry::decide(entry, names, &live, Timestamp::now())
                    .map_err(|r| refused(entry, r))?
                else {
                    return Err(Error::Runtime("not a plain write".into()));
                };
                for write in &writes {
                    cluster.write(write, false).await?;
                }
                Ok(writes)
            })
            .await?;
            let report = match written.as_slice() {
                [] => "nothing to change".to_owned(),
                writes => {
                    let changes: Vec<String> = writes
                        .iter()
                        .flat_map(|w| {
                            w.changes.iter().map(|c| {
                                format!("{} {} {} -> {}", w.object.label(), c.field, c.from, c.to)
                            })
                        })
                        .collect();
                    format!("applied: {}", changes.join("; "))
                }
            };
            Ok((!written.is_empty(), report))
        }
    }
}

/// `STICKY`: the weight through `set-weight`'s transition, applied by the runtime as every
/// command is (the step's bookkeeping included), then converged.
async fn apply_sticky<T: Target>(
    target: &T,
    entry: &Entry,
    names: &Names,
) -> Result<(bool, String), Error> {
    let current = target.load().await?;
    // Refused as the preview refuses it, naming the entry's field.
    let edited = super::sticky::edit(names, current.as_ref(), entry.weight, Timestamp::now())
        .map_err(|r| refused(entry, r))?;
    let (changed, written) = match edited {
        None => (false, converge(target).await?),
        Some(_) => {
            let input = super::sticky::input(entry.weight);
            let done = advance_as(target, &input, &super::sticky::requester()).await?;
            (!done.actions.is_empty(), done.written)
        }
    };
    let objects = |n: usize| match n {
        1 => "1 object".to_owned(),
        n => format!("{n} objects"),
    };
    let report = match (changed, written) {
        (false, 0) => "nothing to change".to_owned(),
        (false, n) => format!(
            "applied: weight unchanged, {} drifted and re-applied",
            objects(n)
        ),
        (true, n) => format!(
            "applied: canary at {}% ({} written)",
            entry.weight,
            objects(n)
        ),
    };
    Ok((changed || written > 0, report))
}

/// `DEPLOYMENT_SINGLETON`: hands over to the side the entry names, never both running.
/// Bounded by `timeout` (the old pods' going) and by [`MAX_ATTEMPTS`] conflicting writes.
async fn hand_over(
    cluster: &Cluster,
    entry: &Entry,
    names: &Names,
    timeout: Duration,
) -> Result<(bool, String), Error> {
    let runs = Side::of_weight(entry.count());
    let started = Instant::now();
    let mut done: Vec<String> = Vec::new();
    let mut conflicts = 0;
    let mut gone_after: Option<Duration> = None;
    let halfway = |done: &[String], why: String| {
        if done.is_empty() {
            Error::Runtime(why)
        } else {
            Error::Runtime(format!(
                "{why}; done so far: {}; run the plan again to resume the handover",
                done.join(", ")
            ))
        }
    };
    loop {
        let stable = cluster.workload(&names.namespace, &names.stable).await?;
        let canary = cluster.workload(&names.namespace, &names.canary).await?;
        let (stable, canary) =
            both(names, stable.as_ref(), canary.as_ref()).map_err(|r| refused(entry, r))?;
        let pick = |side| if side == Side::Stable { stable } else { canary };
        let step = singleton::step(stable, canary, runs);
        // The whole handover is bounded, not only its wait: someone scaling the old one up
        // again and again cannot keep it going.
        if step != Step::Done && started.elapsed() >= timeout {
            let why = match step {
                Step::AwaitGone(side) => {
                    let waiting = pick(side);
                    format!(
                        "timed out after {}s waiting for {}'s pods to be gone ({} left, {} replicas counted by its controller); {} was not scaled up",
                        timeout.as_secs(),
                        waiting.label(),
                        waiting.pods,
                        waiting.status_replicas,
                        pick(side.other()).label(),
                    )
                }
                _ => format!(
                    "timed out after {}s handing over to {}",
                    timeout.as_secs(),
                    pick(runs).label()
                ),
            };
            return Err(halfway(&done, why));
        }
        let (workload, replicas) = match step {
            Step::Done => break,
            Step::AwaitGone(_) => {
                tokio::time::sleep(POLL).await;
                continue;
            }
            Step::ScaleDown(side) => (pick(side), 0),
            Step::ScaleUp(side) => {
                if gone_after.is_none() && !done.is_empty() {
                    gone_after = Some(started.elapsed());
                }
                (pick(side), 1)
            }
        };
        match cluster.write(&workload.scale_to(replicas), false).await {
            Ok(()) => done.push(format!("{} scaled to {replicas}", workload.label())),
            Err(Error::Conflict(what)) => {
                conflicts += 1;
                if conflicts >= MAX_ATTEMPTS {
                    return Err(halfway(
                        &done,
                        format!("gave up after {MAX_ATTEMPTS} conflicts: {what} keeps changing"),
                    ));
                }
                tokio::time::sleep(POLL).await;
            }
            Err(err) => return Err(halfway(&done, err.to_string())),
        }
    }
    let took = started.elapsed();
    let report = match (done.as_slice(), gone_after) {
        ([], _) => format!("nothing to change ({} runs alone)", runs.as_str()),
        (_, Some(gone)) => format!(
            "handed over to {} in {:.2}s ({}; the old pods were gone after {:.2}s)",
            runs.as_str(),
            took.as_secs_f64(),
            done.join(", "),
            gone.as_secs_f64()
        ),
        (_, None) => format!(
            "{} runs alone after {:.2}s ({})",
            runs.as_str(),
            took.as_secs_f64(),
            done.join(", ")
        ),
    };
    Ok((!done.is_empty(), report))
}

/// `plan status`: where each entry stands against the file, as a table or JSON.
pub async fn status(
    place: &Place,
    entries: &[Entry],
    source: &str,
    json: bool,
    out: &mut String,
) -> Result<(), Error> {
    check_place(place, entries)?;
    let mut statuses: Vec<EntryStatus> = Vec::new();
    for entry in entries {
        let names = naming::resolve(entry, place.namespace());
        let live = read(place, entry, &names)
            .await
            .map_err(|e| within(entry, e))?;
        let decision = entry::decide(entry, &names, &live, Timestamp::now()).ok();
        let rendered = match (&decision, place) {
            (Some(d), Place::Kube { cluster, .. }) => {
                render(&sticky_target(cluster, &names), &live, d).await
            }
            (Some(d), Place::EnvoyDir(dir)) => render(dir, &live, d).await,
            (None, _) => Ok(None),
        };
        let rendered_in_sync = match rendered {
            Ok(plan) => plan.is_none_or(|p| p.writes.is_empty()),
            Err(_) => false,
        };
        statuses.push(entry::standing(
            entry,
            &names,
            &live,
            rendered_in_sync,
            Timestamp::now(),
        ));
    }
    if json {
        let report = json!({
            "plan": source,
            "inSync": statuses.iter().all(|s| s.in_sync),
            "entries": statuses,
        });
        writeln!(out, "{report:#}").ok();
    } else {
        preview::status_table(&statuses, out);
    }
    Ok(())
}
