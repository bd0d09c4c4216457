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

use crate::error::Error;
use crate::model::StickyCanary;
use crate::status;
use crate::target::kube::KubeTarget;
use crate::target::Target;

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

/// Runs `f` until it does not return [`Error::Conflict`], backing off between attempts.
pub async fn retry_on_conflict<T, F, Fut>(mut f: F) -> Result<T, Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, Error>>,
{
    let mut last = String::new();
    for attempt in 0..MAX_ATTEMPTS {
        match f().await {
            Err(Error::Conflict(what)) => {
                tracing::debug!(%what, attempt, "conflict, retrying");
                last = what;
                tokio::time::sleep(backoff(attempt)).await;
            }
            other => return other,
        }
    }
    Err(Error::Runtime(format!(
        "gave up after {MAX_ATTEMPTS} conflicts: {last} keeps changing"
    )))
}

/// Exponential backoff capped at half a second, with jitter so racing writers spread out.
fn backoff(attempt: u32) -> Duration {
    let base = 5u64 << attempt.min(7);
    let jitter = u64::from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .subsec_nanos()
            % 5_000_000,
    );
    Duration::from_millis(base.min(500)) + Duration::from_nanos(jitter)
}

/// Brings the target's objects and the rollout's status in line with the rollout; returns how
/// many objects were written (0 when everything already matched).
pub async fn converge<T: Target>(target: &T) -> Result<usize, Error> {
    let written = AtomicUsize::new(0);
    retry_on_conflict(|| async {
        let mut last = Vec::new();
        for _ in 0..MAX_PASSES {
            let canary = target.load().await?.ok_or_else(|| {
                Error::Invalid("the rollout does not exist; run `stickyctl init` first".into())
            })?;
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
