//! The shell of `plan apply`, `plan status` and `plan rollback`: read every entry's objects,
//! decide with the pure edits, preview every change, have the API server check every write
//! (a server-side dry run), and only then apply, entry by entry in file order, each re-read
//! and edited again on a conflict. A failure stops the plan and says which entries are
//! applied and which are not; `plan status` shows the same from the live objects.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use serde_json::json;

use super::cluster::Cluster;
use super::entry::{self, Decision, Live};
use super::file::{Entry, Kind};
use super::naming::{self, Names};
use super::preview::{self, EntryStatus};
use super::singleton::{self, Side, Step};
use super::workload::both;
use super::{split, ObjectKind, Refusal};
use runtime::act::act;
use runtime::console::Console;
use runtime::error::{Changed, Error, EXIT_INVALID};
use runtime::interrupt::Interrupt;
use runtime::notify::Notifier;
use runtime::reconcile::{converge, objects, retry_on_conflict, MAX_ATTEMPTS};
use runtime::target::place::{Opened, Place};
use runtime::target::{Plan, Target};

/// How often a handover looks whether the old pods are gone: the longest the new one waits
/// after they are.
const POLL: Duration = Duration::from_millis(100);

/// The namespace of entries that name none: the place's; `envoy-dir` in a plain Envoy's
/// directory, whose one rollout has none.
fn default_namespace(place: &Place) -> &str {
    place.namespace().unwrap_or("envoy-dir")
}

/// The cluster the entries other than `STICKY` are read from and written to; a plain Envoy's
/// directory has none ([`check_place`] refuses them before anything is read).
fn cluster(place: &Place, entry: &Entry) -> Result<Cluster, Error> {
    match place {
        Place::Kube { client, .. } => Ok(Cluster::new(client.clone())),
        Place::EnvoyDir(_) => Err(Error::Invalid(format!(
            "type {} needs Kubernetes",
            entry.kind.as_str()
        ))),
    }
}

/// The target of a `STICKY` entry's rollout (a plain Envoy's directory holds one, and refuses
/// another name).
async fn sticky_target(place: &Place, names: &Names) -> Result<Opened, Error> {
    place
        .open(Some(&names.namespace), Some(&names.rollout))
        .await
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
    let ns = &names.namespace;
    Ok(match entry.kind {
        Kind::Sticky => {
            let rollout = sticky_target(place, names).await?.load().await?;
            Live::Sticky(rollout.map(Box::new))
        }
        Kind::IngressNginx => {
            let cluster = cluster(place, entry)?;
            Live::Ingress {
                stable: cluster
                    .object(ObjectKind::Ingress, ns, &names.stable)
                    .await?,
                canary: cluster
                    .object(ObjectKind::Ingress, ns, &names.canary)
                    .await?,
            }
        }
        Kind::IstioVsvc | Kind::HttpRoute => {
            let cluster = cluster(place, entry)?;
            let object = match split::shape(entry.kind) {
                Some(shape) => cluster.object(shape.kind, ns, (shape.name)(names)).await?,
                None => None,
            };
            Live::Routes(object)
        }
        Kind::DeploymentReplicas | Kind::DeploymentSingleton => {
            let cluster = cluster(place, entry)?;
            Live::Deployments {
                stable: cluster.workload(ns, &names.stable).await?,
                canary: cluster.workload(ns, &names.canary).await?,
            }
        }
    })
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

/// What the rollout of `live` (after `decision`) renders to against its target's live objects.
async fn render(
    place: &Place,
    names: &Names,
    live: &Live,
    decision: &Decision,
) -> Result<Option<Plan>, Error> {
    let rollout = match (decision, live) {
        (Decision::Sticky(Some(next)), _) => next.as_ref(),
        (Decision::Sticky(None), Live::Sticky(Some(current))) => current.as_ref(),
        _ => return Ok(None),
    };
    let target = sticky_target(place, names).await?;
    target.plan(rollout).await.map(Some)
}

/// Reads and decides every entry; every refusal at once, before any write.
async fn prepare(place: &Place, entries: &[Entry]) -> Result<Vec<Prepared>, Error> {
    let mut prepared = Vec::new();
    let mut refusals = Vec::new();
    for entry in entries {
        let names = naming::resolve(entry, default_namespace(place));
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
        let rendered = render(place, &names, &live, &decision).await;
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
                sticky_target(place, &p.names).await?.check(plan).await?;
                checked += plan.writes.len();
            }
            let writes = match &p.decision {
                Decision::Writes(writes) | Decision::Handover { writes, .. } => writes.as_slice(),
                Decision::Sticky(_) => return Ok(()),
            };
            let cluster = cluster(place, &p.entry)?;
            for write in writes {
                cluster.write(write, true).await?;
                checked += 1;
            }
            Ok::<(), Error>(())
        };
        result.await.map_err(|e| within(&p.entry, e))?;
    }
    Ok(checked)
}

/// Prints what applying will change, entry by entry.
fn print_preview(prepared: &[Prepared], out: &mut Console) {
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

/// What a plan run gets from its front end.
pub struct Context {
    /// How `STICKY` entries' notices go out.
    pub notifier: Notifier,
    /// The Kubernetes user the history names for `STICKY` entries ([`super::sticky::requester`]).
    pub user: Option<String>,
    /// What stops the run between entries and in a handover's wait.
    pub interrupt: Interrupt,
}

/// `plan apply` and `plan rollback`: previews, checks, then applies every entry (with
/// `dry_run`, previews and checks only), each said as it is done; `STICKY` entries' notices
/// go out as `context` says. Ctrl-C, once writing began, stops at the next safe point: between
/// entries, or in a handover's wait, never between a write and the next.
pub async fn apply(
    place: &Place,
    entries: &[Entry],
    goal: Goal,
    dry_run: bool,
    timeout: Duration,
    context: &Context,
    out: &mut Console,
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
    // Until here Ctrl-C ends the process: nothing was written.
    context.interrupt.listen();
    writeln!(
        out,
        "the API server accepts all {checked} writes (dry run); applying"
    )
    .ok();
    let mut wrote_any = false;
    for (i, p) in prepared.iter().enumerate() {
        let result = if context.interrupt.asked() {
            Err(Error::Runtime("interrupted (Ctrl-C) before it".into()))
        } else {
            apply_entry(place, p, timeout, context, out).await
        };
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
    context: &Context,
    out: &mut Console,
) -> Result<(bool, String), Error> {
    let (entry, names) = (&p.entry, &p.names);
    match entry.kind {
        Kind::Sticky => {
            let target = sticky_target(place, names).await?;
            apply_sticky(&target, entry, names, context).await
        }
        Kind::DeploymentSingleton => {
            let cluster = cluster(place, entry)?;
            hand_over(&cluster, entry, names, timeout, &context.interrupt, out).await
        }
        Kind::IngressNginx | Kind::IstioVsvc | Kind::HttpRoute | Kind::DeploymentReplicas => {
            let cluster = cluster(place, entry)?;
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
/// command is (the step's bookkeeping and its notices included), then converged.
async fn apply_sticky<T: Target>(
    target: &T,
    entry: &Entry,
    names: &Names,
    context: &Context,
) -> Result<(bool, String), Error> {
    let current = target.load().await?;
    // Refused as the preview refuses it, naming the entry's field.
    let edited = super::sticky::edit(names, current.as_ref(), entry.weight, Timestamp::now())
        .map_err(|r| refused(entry, r))?;
    let (changed, written, warning) = match edited {
        None => (false, converge(target).await?, None),
        Some(_) => {
            let input = super::sticky::input(entry.weight);
            let by = super::sticky::requester(context.user.as_deref());
            let acted = act(target, &input, &by, &context.notifier).await?;
            (
                !acted.done.actions.is_empty(),
                acted.done.written,
                acted.warning,
            )
        }
    };
    let report = match (changed, written) {
        (false, 0) => "nothing to change".to_owned(),
        (false, n) => format!(
            "applied: weight unchanged, {}",
            objects(n, "drifted and re-applied")
        ),
        (true, n) => format!(
            "applied: canary at {}% ({})",
            entry.weight,
            objects(n, "written")
        ),
    };
    let report = match warning {
        Some(why) => format!("{report}\nwarning: {why}"),
        None => report,
    };
    Ok((changed || written > 0, report))
}

/// `DEPLOYMENT_SINGLETON`: hands over to the side the entry names, never both running,
/// saying each write as it is made and how the wait for the old pods goes. Bounded by
/// `timeout` (the old pods' going) and by [`MAX_ATTEMPTS`] conflicting writes; Ctrl-C
/// stops it before its next write.
async fn hand_over(
    cluster: &Cluster,
    entry: &Entry,
    names: &Names,
    timeout: Duration,
    interrupt: &Interrupt,
    out: &mut Console,
) -> Result<(bool, String), Error> {
    let runs = Side::of_weight(entry.count());
    let started = Instant::now();
    // When the wait gives up, on the local clock a person compares it with (a timeout past
    // the calendar's end never comes).
    let deadline = Timestamp::now()
        .checked_add(jiff::SignedDuration::try_from(timeout).unwrap_or(jiff::SignedDuration::MAX))
        .map(|at| {
            at.to_zoned(jiff::tz::TimeZone::system())
                .strftime("%H:%M:%S")
                .to_string()
        })
        .unwrap_or_else(|_| "never".to_owned());
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
        // again and again cannot keep it going. Ctrl-C stops it before its next write.
        let stop = if step == Step::Done {
            None
        } else if interrupt.asked() {
            Some("interrupted (Ctrl-C)".to_owned())
        } else if started.elapsed() >= timeout {
            Some(format!("timed out after {}s", timeout.as_secs()))
        } else {
            None
        };
        if let Some(stop) = stop {
            let why = match step {
                Step::AwaitGone(side) => {
                    let waiting = pick(side);
                    format!(
                        "{stop} waiting for {}'s pods to be gone ({} left, {} replicas counted by its controller); {} was not scaled up",
                        waiting.label(),
                        waiting.pods,
                        waiting.status_replicas,
                        pick(side.other()).label(),
                    )
                }
                _ => format!("{stop} handing over to {}", pick(runs).label()),
            };
            return Err(halfway(&done, why));
        }
        let (workload, replicas) = match step {
            Step::Done => break,
            Step::AwaitGone(side) => {
                let old = pick(side);
                let line = preview::waiting(entry, old, started.elapsed(), timeout, &deadline);
                out.progress(&old.label(), &line);
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
            Ok(()) => {
                let what = format!("{} scaled to {replicas}", workload.label());
                writeln!(out, "{}: {what}", entry.what()).ok();
                done.push(what);
            }
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
    out: &mut Console,
) -> Result<(), Error> {
    check_place(place, entries)?;
    let mut statuses: Vec<EntryStatus> = Vec::new();
    for entry in entries {
        let names = naming::resolve(entry, default_namespace(place));
        let live = read(place, entry, &names)
            .await
            .map_err(|e| within(entry, e))?;
        let decision = entry::decide(entry, &names, &live, Timestamp::now()).ok();
        let rendered = match &decision {
            Some(d) => render(place, &names, &live, d).await,
            None => Ok(None),
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
