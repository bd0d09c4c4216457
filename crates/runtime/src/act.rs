//! The one way a front end changes a rollout: read, [`rollout::transition`], write and
//! converge (`reconcile::advance_as`), then send the change's notices with the front end's
//! [`Notifier`]. The CLI's commands, the dashboard's buttons, the plan file's `STICKY`
//! entries and the controller's looks all come here, so none of them forgets the notices or
//! sends them its own way.

use std::time::Duration;

use crate::error::Error;
use crate::metrics::Metrics;
use crate::notify::Notifier;
use crate::reconcile::{advance_as, load, Advanced, Requester};
use crate::target::Target;
use api::StickyCanary;
use rollout::Input;

/// What [`act`] did.
#[derive(Debug, Clone)]
pub struct Acted {
    /// The changes made and the objects written.
    pub done: Advanced,
    /// The rollout afterwards, as stored.
    pub rollout: StickyCanary,
    /// Why the notices were not all sent, if they were not (the change stands regardless).
    pub warning: Option<String>,
}

/// Runs `input` on `target`'s rollout for `requester` (`reconcile::advance_as`), then sends the
/// notices to the rollout's webhook as stored afterwards (a change may have been the one
/// that set it) the way `notifier` does.
pub async fn act<T: Target>(
    target: &T,
    input: &Input,
    requester: &Requester,
    notifier: &Notifier,
) -> Result<Acted, Error> {
    let done = advance_as(target, input, requester).await?;
    let rollout = load(target).await?;
    let warning = notifier.send(&rollout, done.notices.clone()).await;
    Ok(Acted {
        done,
        rollout,
        warning,
    })
}

/// One look at an automatic rollout: its metrics read and [`act`] on them. `None` when the
/// rollout is not automatic; else what was done and when to look again.
pub async fn look<T: Target, M: Metrics>(
    target: &T,
    metrics: &M,
    notifier: &Notifier,
) -> Result<Option<(Acted, Duration)>, Error> {
    let canary = load(target).await?;
    if !canary.spec.auto.enabled {
        return Ok(None);
    }
    let snapshot = metrics.snapshot(&canary).await;
    let input = Input::Look(Box::new(snapshot));
    let acted = act(target, &input, &Requester::default(), notifier).await?;
    Ok(Some((acted, rollout::auto::look_period(&canary.spec))))
}
