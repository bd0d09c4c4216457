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
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use kube::ResourceExt;

use crate::error::Error;
use crate::metrics::Metrics;
use crate::target::kube::KubeTarget;
use crate::target::Target;
use api::{StickyCanary, ACTION_ANNOTATION};
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
            Error::Conflict(what) => Error::Runtime(format!(
                "gave up after {MAX_ATTEMPTS} conflicts: {what} keeps changing"
            )),
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
            let canary = target.load().await?.ok_or_else(missing)?;
            let plan = target.plan(&canary).await?;
            if plan.writes.is_empty() {
                let hash = status::hash_objects(plan.objects.iter().map(|d| &d.owned));
                let now = jiff::Timestamp::now().to_string();
                if let Some(next) = status::observe(&canary, &hash, &now) {
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

/// What [`advance`] did.
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

/// Runs `input` through [`rollout::transition`] on the stored rollout and applies the result:
/// the spec (after the target checked that it takes the objects it renders to), the status,
/// then the objects. A transition that asks to run again once applied (abort, `promote
/// --finish`, an immediate rollback: make before break) runs again, at most
/// [`MAX_PASSES`] times.
pub async fn advance<T: Target>(target: &T, input: &Input) -> Result<Advanced, Error> {
    advance_as(target, input, &Requester::default()).await
}

/// Who asks for a change (the dashboard), and the rollout as they saw it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Requester {
    /// Recorded before the action in the history, e.g. `dashboard` gives `dashboard: next 10`.
    pub by: Option<String>,
    /// The rollout's generation they saw: a change since is refused with [`Error::Stale`].
    pub seen_generation: Option<i64>,
}

/// [`advance`] on behalf of `requester`.
pub async fn advance_as<T: Target>(
    target: &T,
    input: &Input,
    requester: &Requester,
) -> Result<Advanced, Error> {
    let mut done = Advanced::default();
    for pass in 0..MAX_PASSES {
        let transition = retry_on_conflict(|| async {
            let current = target.load().await?.ok_or_else(missing)?;
            if let Some(seen) = requester.seen_generation.filter(|_| pass == 0) {
                let now = current.metadata.generation.unwrap_or_default();
                if now != seen {
                    return Err(Error::Stale(format!(
                        "the rollout changed meanwhile (generation {now}, the page showed {seen}): {}; nothing was done",
                        current.spec.summary()
                    )));
                }
            }
            let status = current.status.clone().unwrap_or_default();
            let now = jiff::Timestamp::now();
            let transition = rollout::transition(&current.spec, &status, input, now)?;
            let mut saved = current.clone();
            if let Some(spec) = &transition.spec {
                let mut next = current.clone();
                next.spec = spec.clone();
                if let Some(action) = &transition.action {
                    let action = match &requester.by {
                        Some(by) => format!("{by}: {action}"),
                        None => action.clone(),
                    };
                    next.annotations_mut()
                        .insert(ACTION_ANNOTATION.to_owned(), action);
                }
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

/// One look at an automatic rollout: read its metrics and [`advance`] on them. Also returns
/// when to look again; `None` when the rollout is not automatic.
pub async fn look<T: Target, M: Metrics>(
    target: &T,
    metrics: &M,
) -> Result<(Advanced, Option<Duration>), Error> {
    let canary = target.load().await?.ok_or_else(missing)?;
    if !canary.spec.auto.enabled {
        return Ok((Advanced::default(), None));
    }
    let snapshot = metrics.snapshot(&canary).await;
    let done = advance(target, &Input::Look(Box::new(snapshot))).await?;
    Ok((done, Some(rollout::auto::look_period(&canary.spec))))
}

fn missing() -> Error {
    Error::Invalid("the rollout does not exist; run `stickyctl init` first".into())
}

/// Takes deleted rollout `canary`'s managed routes and subsets out of the user's objects, pass
/// after pass until one finds nothing left (a conflict re-reads, as in [`converge`]); returns
/// how many objects were written. Used by the controller's finalizer and `stickyctl delete`.
pub async fn teardown(target: &KubeTarget, canary: &StickyCanary) -> Result<usize, Error> {
    let written = AtomicUsize::new(0);
    retry_on_conflict(|| async {
        let mut last = Vec::new();
        for _ in 0..MAX_PASSES {
            let writes = target.teardown(canary).await?;
            if writes.is_empty() {
                return Ok(());
            }
            for doc in &writes {
                target.write(doc).await?;
                written.fetch_add(1, Ordering::Relaxed);
            }
            last = writes;
        }
        Err(never_settles(&last))
    })
    .await?;
    Ok(written.into_inner())
}
