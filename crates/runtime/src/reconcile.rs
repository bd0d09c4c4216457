//! Converging a target on its rollout, once (every CLI command) or forever (the controller),
//! and tearing a deleted rollout's routes and subsets down again.
//!
//! A pass reads the rollout, renders it against the live objects and writes what differs, in
//! order; a conflict anywhere re-reads and starts over. Converging ends only with a pass that
//! finds nothing to write, so a writer that raced with another re-applies the latest rollout
//! instead of leaving its own stale render behind; that pass records the status. Both loops
//! are bounded: conflicts by [`MAX_ATTEMPTS`], passes by [`MAX_PASSES`].

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use kube::ResourceExt;

use crate::error::Error;
use crate::target::kube::KubeTarget;
use crate::target::{Doc, Target};
use api::{StickyCanary, StickyCanarySpec, ACTION_ANNOTATION};
use rollout::status;
use rollout::{self, Input};

/// Attempts before a command gives up on a resource others keep changing.
pub const MAX_ATTEMPTS: u32 = 40;
/// Passes of one attempt: a pass writes what differs and the next should find nothing left.
/// More means that what was written does not read back as written (a server that rewrites
/// a field), which no further pass will change.
pub const MAX_PASSES: usize = 4;

/// The error after [`MAX_PASSES`] passes that each still found `docs` to write.
fn never_settles(docs: &[crate::target::Doc]) -> Error {
    let labels: Vec<&str> = docs.iter().map(|d| d.label.as_str()).collect();
    Error::Runtime(format!(
        "still differing after {MAX_PASSES} passes of writes: {} (the API server keeps changing what was written)",
        labels.join(", ")
    ))
}

/// Runs `f` until it does not return [`Error::Conflict`], at most [`MAX_ATTEMPTS`] times,
/// backing off between attempts.
pub async fn retry_on_conflict<T, F, Fut>(f: F) -> Result<T, Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, Error>>,
{
    f.retry(conflict_backoff())
        .when(|err| matches!(err, Error::Conflict(_)))
        .notify(|err, wait| tracing::debug!(%err, ?wait, "conflict, retrying"))
        .await
        .map_err(|err| match err {
            Error::Conflict(changed) => Error::GaveUp(changed),
            other => other,
        })
}

/// Exponential from 5 ms, capped at half a second, with jitter so racing writers spread out.
fn conflict_backoff() -> ExponentialBuilder {
    ExponentialBuilder::new()
        .with_min_delay(Duration::from_millis(5))
        .with_max_delay(Duration::from_millis(500))
        .with_jitter()
        // Retries after the first attempt.
        .with_max_times(MAX_ATTEMPTS as usize - 1)
}

/// Brings the target's objects and the rollout's status in line with the rollout; returns how
/// many objects were written (0 when everything already matched).
pub async fn converge<T: Target>(target: &T) -> Result<usize, Error> {
    let written = AtomicUsize::new(0);
    retry_on_conflict(|| async {
        let mut last = Vec::new();
        for _ in 0..MAX_PASSES {
            let canary = load(target).await?;
            let plan = target.plan(&canary).await?;
            if plan.writes.is_empty() {
                let hash = status::hash_objects(plan.objects.iter().map(|d| &d.owned));
                if let Some(next) = status::observe(&canary, &hash, jiff::Timestamp::now()) {
                    target.save_status(&canary, &next).await?;
                }
                return Ok(());
            }
            // The server's own validation first: a plan it refuses in part is not started.
            target.check(&plan).await?;
            for doc in &plan.writes {
                target.write(doc).await?;
                written.fetch_add(1, Ordering::Relaxed);
            }
            last = plan.writes;
        }
        Err(never_settles(&last))
    })
    .await?;
    Ok(written.into_inner())
}

/// What a change did ([`crate::act::act`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Advanced {
    /// The spec changes made, in order, each with the objects written to apply it (empty:
    /// nothing changed).
    pub actions: Vec<(String, usize)>,
    /// The notifications the transitions made, in order.
    pub notices: Vec<String>,
    /// Objects written while converging, in all.
    pub written: usize,
}

impl Advanced {
    /// What was done, a line per spec change (the CLI prints them, the dashboard shows them).
    pub fn lines(&self) -> Vec<String> {
        if self.actions.is_empty() {
            return vec![format!(
                "nothing to change ({})",
                objects(self.written, "re-applied")
            )];
        }
        self.actions
            .iter()
            .map(|(action, written)| {
                format!("{action}: applied ({})", objects(*written, "written"))
            })
            .collect()
    }
}

/// `1 object written`, `3 objects re-applied`: the count in a command's one-line report.
pub fn objects(count: usize, done: &str) -> String {
    match count {
        1 => format!("1 object {done}"),
        n => format!("{n} objects {done}"),
    }
}

/// Who asks for a change (the Kubernetes user of a command, the dashboard, the plan file), and
/// the rollout as they saw it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Requester {
    /// Recorded before the action in the history, e.g. `dashboard` gives `dashboard: next 10`.
    pub by: Option<String>,
    /// The rollout's generation they saw: a change since is refused with [`Error::Stale`].
    pub seen_generation: Option<i64>,
}

impl Requester {
    /// `action` as the history records it: after who asked for it, when known.
    pub fn action(&self, action: &str) -> String {
        match &self.by {
            Some(by) => format!("{by}: {action}"),
            None => action.to_owned(),
        }
    }
}

/// Runs `input` through [`rollout::transition`] on the stored rollout for `requester` and
/// applies the result: the spec (after the target checked that it takes the objects it
/// renders to), the status, then the objects. A transition that asks to run again once
/// applied (abort, `promote --finish`, an immediate rollback: make before break) runs again,
/// at most [`MAX_PASSES`] times. Only [`crate::act`] calls it, so no front end changes a
/// rollout without sending its notices.
pub(crate) async fn advance_as<T: Target>(
    target: &T,
    input: &Input,
    requester: &Requester,
) -> Result<Advanced, Error> {
    let mut done = Advanced::default();
    for pass in 0..MAX_PASSES {
        let transition = retry_on_conflict(|| async {
            let current = load(target).await?;
            if let Some(seen) = requester.seen_generation.filter(|_| pass == 0) {
                let now = current.metadata.generation.unwrap_or_default();
                if now != seen {
                    return Err(Error::Stale {
                        generation: now,
                        seen,
                        versions: current.spec.summary(),
                    });
                }
            }
            let status = current.status.clone().unwrap_or_default();
            let now = jiff::Timestamp::now();
            let transition = rollout::transition(&current.spec, &status, input, now)?;
            let mut saved = current.clone();
            if let Some(spec) = &transition.spec {
                let next = with_spec(&current, spec, transition.action.as_deref(), requester);
                // Refuse what cannot be rendered (a shadowing route, a version without
                // upstream) or what the API server would refuse, before the rollout changes.
                let plan = target.plan(&next).await?;
                target.check(&plan).await?;
                saved = target.save(&next).await?;
            }
            if let Some(status) = &transition.status {
                target.save_status(&saved, status).await?;
            }
            Ok(transition)
        })
        .await?;
        let written = converge(target).await?;
        done.written += written;
        done.notices.extend(transition.notices);
        if let (Some(_), Some(action)) = (&transition.spec, transition.action) {
            done.actions.push((action, written));
        }
        if !transition.again {
            break;
        }
    }
    Ok(done)
}

/// `current` with the new `spec` and, when a command made it, its action for the history
/// (after who asked for it).
fn with_spec(
    current: &StickyCanary,
    spec: &StickyCanarySpec,
    action: Option<&str>,
    requester: &Requester,
) -> StickyCanary {
    let mut next = current.clone();
    next.spec = spec.clone();
    if let Some(action) = action {
        annotate(&mut next, &requester.action(action));
    }
    next
}

/// The rollout [`crate::act::act`] would store after `input` at `now`, computed in memory and
/// written nowhere: every pass it would make, without converging between them. Previews
/// (`--dry-run`, the plan file's) show exactly this.
pub fn planned(
    current: &StickyCanary,
    input: &Input,
    requester: &Requester,
    now: jiff::Timestamp,
) -> Result<StickyCanary, Error> {
    let mut next = current.clone();
    for _ in 0..MAX_PASSES {
        let status = next.status.clone().unwrap_or_default();
        let transition = rollout::transition(&next.spec, &status, input, now)?;
        if let Some(spec) = &transition.spec {
            next = with_spec(&next, spec, transition.action.as_deref(), requester);
        }
        next.status = transition.status.or(next.status);
        if !transition.again {
            break;
        }
    }
    Ok(next)
}

/// Records `action` on `canary` as the change that made it, for the status history.
pub fn annotate(canary: &mut StickyCanary, action: &str) {
    canary
        .annotations_mut()
        .insert(ACTION_ANNOTATION.to_owned(), action.to_owned());
}

/// The rollout at the target, or the refusal a command without one gets.
pub async fn load<T: Target>(target: &T) -> Result<StickyCanary, Error> {
    target.load().await?.ok_or_else(|| {
        Error::Invalid("the rollout does not exist; run `stickyctl init` first".into())
    })
}

/// Takes deleted rollout `canary`'s managed routes and subsets out of the user's objects (and
/// deletes the DestinationRule stickyctl created, when nothing of the user's is in it), pass
/// after pass until one finds nothing left (a conflict re-reads, as in [`converge`]); returns
/// what was written, an object once (its last write). Used by the controller's finalizer and
/// `stickyctl delete`.
pub async fn teardown(target: &KubeTarget, canary: &StickyCanary) -> Result<Vec<Doc>, Error> {
    let written: Mutex<Vec<Doc>> = Mutex::default();
    let keep = |doc: &Doc| {
        let mut written = written.lock().unwrap_or_else(PoisonError::into_inner);
        written.retain(|w| w.label != doc.label);
        written.push(doc.clone());
    };
    retry_on_conflict(|| async {
        let mut last = Vec::new();
        for _ in 0..MAX_PASSES {
            let writes = target.teardown(canary).await?;
            if writes.is_empty() {
                return Ok(());
            }
            for doc in &writes {
                target.write(doc).await?;
                keep(doc);
            }
            last = writes;
        }
        Err(never_settles(&last))
    })
    .await?;
    Ok(written.into_inner().unwrap_or_else(PoisonError::into_inner))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rollout::{Command, Op};
    use sticky_canary_filter::VersionWeight;

    fn canary_at(weight: f64) -> StickyCanary {
        let mut spec = StickyCanarySpec::new("shop", "v1");
        spec.versions = vec![
            VersionWeight::new("v1", 100.0 - weight),
            VersionWeight::new("v2", weight),
        ];
        StickyCanary::new("shop", spec)
    }

    fn action(canary: &StickyCanary) -> Option<&str> {
        canary
            .annotations()
            .get(ACTION_ANNOTATION)
            .map(String::as_str)
    }

    /// An abort first sends every client to stable, then (the pass `advance_as` makes once
    /// the objects are applied) removes the canary: the preview shows where both end.
    #[test]
    fn planned_makes_every_pass_and_names_who_asked() {
        let op = |op| Input::Command(Command::Op(op));
        let now = jiff::Timestamp::UNIX_EPOCH;
        let by = Requester {
            by: Some("plan".to_owned()),
            seen_generation: None,
        };
        let aborted = planned(&canary_at(10.0), &op(Op::Abort), &by, now).unwrap();
        assert_eq!(aborted.spec.versions.len(), 1, "{:?}", aborted.spec);
        assert_eq!(aborted.spec.retiring, None);
        assert_eq!(action(&aborted), Some("plan: abort: remove v2"));

        let raised = planned(
            &canary_at(10.0),
            &op(Op::SetWeight(20.0)),
            &Requester::default(),
            now,
        )
        .unwrap();
        assert_eq!(raised.spec.canary().map(|c| c.weight), Some(20.0));
        assert_eq!(action(&raised), Some("set-weight 20"));

        let refused = planned(
            &StickyCanary::new("shop", StickyCanarySpec::new("shop", "v1")),
            &op(Op::Next),
            &by,
            now,
        );
        assert!(matches!(refused, Err(Error::Op(_))), "{refused:?}");
    }
}
