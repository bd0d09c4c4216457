//! Automatic progression, pure: what one look at the metrics does to a rollout.
//!
//! A step holds its weight for `spec.auto.intervalSeconds`, judged at every look (the test
//! stays valid however often it is checked, so a bad canary is rolled back at the first look
//! that shows it). A step that passes when its interval is over goes on to the next weight,
//! unless that weight is a gate or the last step was reached and promotion is a gate: then it
//! waits for a person, still judged, so a canary failing while it waits is still rolled back.
//! A step without enough evidence at its deadline holds or rolls back, as the spec says.
//! After an automatic promotion the old stable drains for one interval, then it is removed;
//! after a rollback in drain mode, the canary likewise.

use jiff::{SignedDuration, Timestamp};

use super::{end_step, new_step, phase_for, Transition};
use crate::ops::{self, Op};
use analysis::{judge, CheckName, Evidence, LookError, Outcome, Snapshot, StepPlan, Verdict};
use api::{
    OnInconclusive, Phase, Promotion, RollbackMode, StepStatus, StickyCanarySpec,
    StickyCanaryStatus, Waiting,
};

/// What a look at the metrics (or the failure to read them) does at `now`.
pub fn look(
    spec: &StickyCanarySpec,
    status: &StickyCanaryStatus,
    look: &Result<Snapshot, LookError>,
    now: Timestamp,
) -> Transition {
    if !spec.auto.enabled || spec.paused || ops::validate(spec).is_err() {
        return Transition::default();
    }
    match phase_for(spec, status.phase) {
        Phase::Progressing => progress(spec, status, look, now),
        // Once the interval of drain is over, the version left behind goes.
        Phase::Promoting if elapsed(status, now) >= interval(spec) => {
            finish(spec, status, &Op::Promote { finish: true }, now)
        }
        Phase::RolledBack if spec.retiring.is_some() => {
            let drains = spec.versions.iter().skip(1).any(|v| v.drain);
            if drains && elapsed(status, now) < interval(spec) {
                return Transition::default();
            }
            finish(spec, status, &Op::Abort, now)
        }
        _ => Transition::default(),
    }
}

/// One look at a live canary's step.
fn progress(
    spec: &StickyCanarySpec,
    status: &StickyCanaryStatus,
    look: &Result<Snapshot, LookError>,
    now: Timestamp,
) -> Transition {
    let Some(canary) = spec.canary() else {
        return Transition::default();
    };
    // A weight set by hand (or a status behind its spec) starts a step at that weight.
    let step = match &status.step {
        Some(step) if step.weight == canary.weight => step,
        _ => {
            let mut next = status.clone();
            next.step = Some(new_step(spec, now));
            return Transition {
                status: Some(next),
                notices: vec![format!("step {}% started", canary.weight)],
                ..Transition::default()
            };
        }
    };
    // At 0% there is nothing to judge: the steps begin.
    if canary.weight == 0.0 {
        return forward(spec, status, step.clone(), None, now);
    }
    let elapsed = elapsed(status, now);
    let snapshot = match look {
        Ok(snapshot) => snapshot,
        Err(why) => {
            let reason = format!("no metrics: {why}");
            return match inconclusive(spec, elapsed) {
                Some(OnInconclusive::Rollback) => rollback(spec, status, None, &reason, now),
                Some(OnInconclusive::Hold) => hold(status, step, None, &reason),
                None => with_message(status, step.clone(), &reason),
            };
        }
    };
    let evidence = match &step.evidence {
        Some(evidence) => {
            let mut evidence = evidence.clone();
            evidence.observe(snapshot, &spec.analysis);
            evidence
        }
        None => {
            // The rollout's alpha is split over every step judged with both versions live.
            let plan = StepPlan {
                weight: canary.weight,
                judged_steps: spec.steps.iter().filter(|&&s| s < 100.0).count(),
            };
            Evidence::start(snapshot, &spec.analysis, plan)
        }
    };
    let verdict = judge(&spec.analysis, &evidence);
    let mut judged = step.clone();
    judged.evidence = Some(evidence);
    judged.verdict = Some(verdict.clone());
    let mut change = judged_step(spec, status, step, judged, &verdict, elapsed, now);
    if let Some(unanswered) = newly_unanswered(step.verdict.as_ref(), &verdict) {
        change
            .notices
            .push(format!("step {}%: {unanswered}", canary.weight));
    }
    change
}

/// The reason of the `queries` check when it turned inconclusive at this look: said once
/// per step (a webhook notice), not at every look.
fn newly_unanswered(before: Option<&Verdict>, now: &Verdict) -> Option<String> {
    let unanswered = |verdict: &Verdict| {
        verdict
            .checks
            .iter()
            .find(|c| c.name == CheckName::Queries && c.outcome == Outcome::Inconclusive)
            .map(|c| c.reason.clone())
    };
    let reason = unanswered(now)?;
    before.and_then(unanswered).is_none().then_some(reason)
}

/// What the step `before` does, judged now: roll back, hold, wait (saying for what) or go on.
fn judged_step(
    spec: &StickyCanarySpec,
    status: &StickyCanaryStatus,
    before: &StepStatus,
    mut judged: StepStatus,
    verdict: &Verdict,
    elapsed: SignedDuration,
    now: Timestamp,
) -> Transition {
    match verdict.outcome {
        Outcome::Fail => rollback(spec, status, Some(judged), &verdict.reason, now),
        Outcome::Inconclusive => match inconclusive(spec, elapsed) {
            Some(OnInconclusive::Rollback) => {
                let reason = format!(
                    "inconclusive for {}s: {}",
                    spec.auto.inconclusive_deadline_seconds, verdict.reason
                );
                rollback(spec, status, Some(judged), &reason, now)
            }
            Some(OnInconclusive::Hold) => hold(status, &judged, Some(verdict.clone()), ""),
            None => {
                let message = format!("waiting at {}%: {}", judged.weight, verdict.reason);
                with_message(status, judged, &message)
            }
        },
        Outcome::Pass => {
            // Evidence came after all: a hold for evidence is over.
            if judged.waiting == Some(Waiting::Evidence) {
                judged.waiting = None;
            }
            if elapsed < interval(spec) || judged.waiting.is_some() {
                // A message that said what the step waited for is no longer true.
                let waited = before
                    .verdict
                    .as_ref()
                    .is_some_and(|v| v.outcome == Outcome::Inconclusive);
                let message = match &status.message {
                    Some(message) if !waited => message.as_str(),
                    _ => "",
                };
                with_message(status, judged, message)
            } else {
                forward(spec, status, judged, Some(verdict), now)
            }
        }
    }
}

/// A step that passed its interval (`verdict`), or the canary at 0% before the first step:
/// the next step, or a wait for a person (notified once).
fn forward(
    spec: &StickyCanarySpec,
    status: &StickyCanaryStatus,
    judged: StepStatus,
    verdict: Option<&Verdict>,
    now: Timestamp,
) -> Transition {
    let weight = judged.weight;
    let passed = match verdict {
        Some(_) => format!("step {weight}% passed"),
        None => format!("the canary is at {weight}%"),
    };
    let why = verdict.map_or(String::new(), |v| match v.score {
        Some(score) => format!(" (score {score:.0}: {})", v.reason),
        None => format!(" ({})", v.reason),
    });
    let next_weight = spec.steps.iter().copied().find(|&s| s > weight);
    let wait = match next_weight {
        None if spec.auto.promotion == Promotion::Auto => None,
        None => Some((
            Waiting::Promotion,
            "`stickyctl promote` finishes".to_owned(),
        )),
        Some(w) if spec.auto.gates.contains(&w) => Some((
            Waiting::Gate,
            format!("{w}% is a gate: `stickyctl next` enters it"),
        )),
        Some(_) => None,
    };
    if let Some((waiting, what)) = wait {
        let first = judged.waiting != Some(waiting);
        let mut next = status.clone();
        let mut step = judged;
        step.waiting = Some(waiting);
        next.step = Some(step);
        next.message = Some(format!("{passed}; {what}"));
        return Transition {
            notices: if first {
                vec![format!("{passed}{why}; {what}")]
            } else {
                Vec::new()
            },
            status: (next != *status).then_some(next),
            ..Transition::default()
        };
    }
    let op = if next_weight.is_some() {
        Op::Next
    } else {
        Op::Promote { finish: false }
    };
    let mut status = status.clone();
    status.step = Some(judged);
    let mut change = finish(spec, &status, &op, now);
    if let Some(notice) = change.notices.first_mut() {
        *notice = format!("{passed}{why}; {notice}");
    }
    change
}

/// Applies `op` to the spec as the automation's own move; the step is ended (its verdict
/// kept) and, while the rollout goes on, a new one begins.
fn finish(
    spec: &StickyCanarySpec,
    status: &StickyCanaryStatus,
    op: &Op,
    now: Timestamp,
) -> Transition {
    let Ok(Some(change)) = ops::apply(spec, op) else {
        return Transition::default();
    };
    let mut next = status.clone();
    end_step(&mut next, now);
    next.message = None;
    next.phase = match op {
        Op::Promote { .. } if change.spec.retiring.is_some() => Phase::Promoting,
        Op::Promote { .. } => Phase::Promoted,
        Op::Abort if status.phase == Phase::RolledBack => Phase::RolledBack,
        Op::Abort => Phase::Aborted,
        _ => Phase::Progressing,
    };
    // A step also times a promotion's drain.
    if matches!(op, Op::Next) || change.spec.retiring.is_some() {
        next.step = Some(new_step(&change.spec, now));
    }
    if let Op::Abort = op {
        next.message = status.message.clone();
    }
    Transition {
        notices: vec![format!("{}: {}", change.action, change.spec.summary())],
        action: Some(change.action),
        spec: Some(change.spec),
        status: Some(next),
        again: false,
    }
}

/// Sends the canary's clients back to stable, at once or as they leave their pages.
fn rollback(
    spec: &StickyCanarySpec,
    status: &StickyCanaryStatus,
    judged: Option<StepStatus>,
    reason: &str,
    now: Timestamp,
) -> Transition {
    let drain = spec.auto.rollback == RollbackMode::Drain;
    let Ok(Some(change)) = ops::apply(spec, &Op::Rollback { drain }) else {
        return Transition::default();
    };
    let weight = spec.canary().map_or(0.0, |c| c.weight);
    let mut next = status.clone();
    if let Some(judged) = judged {
        next.step = Some(judged);
    }
    end_step(&mut next, now);
    next.phase = Phase::RolledBack;
    next.message = Some(format!("rolled back at {weight}%: {reason}"));
    // The drain is timed like a step.
    next.step = drain.then(|| StepStatus {
        weight: 0.0,
        ..new_step(&change.spec, now)
    });
    Transition {
        notices: vec![format!(
            "{} ({}): rolled back at {weight}%: {reason}",
            change.action,
            if drain {
                "its clients leave it at their next page"
            } else {
                "every client is back on stable"
            }
        )],
        action: Some(change.action),
        spec: Some(change.spec),
        status: Some(next),
        again: !drain,
    }
}

/// Holds an inconclusive step for evidence or a person; notifies once.
fn hold(
    status: &StickyCanaryStatus,
    step: &StepStatus,
    verdict: Option<Verdict>,
    reason: &str,
) -> Transition {
    let reason = verdict.as_ref().map_or(reason, |v| v.reason.as_str());
    let mut held = step.clone();
    let first = held.waiting != Some(Waiting::Evidence);
    held.waiting = Some(Waiting::Evidence);
    let message = format!("held at {}%: {reason}", step.weight);
    let mut change = with_message(status, held, &message);
    if first {
        change.notices.push(message);
    }
    change
}

/// The status with the step and message replaced; a transition only when that changes it.
fn with_message(status: &StickyCanaryStatus, step: StepStatus, message: &str) -> Transition {
    let mut next = status.clone();
    next.step = Some(step);
    next.message = (!message.is_empty()).then(|| message.to_owned());
    Transition {
        status: (next != *status).then_some(next),
        ..Transition::default()
    }
}

/// What an inconclusive step does now: nothing before its deadline.
fn inconclusive(spec: &StickyCanarySpec, elapsed: SignedDuration) -> Option<OnInconclusive> {
    let deadline = SignedDuration::from_secs(i64::from(spec.auto.inconclusive_deadline_seconds));
    (elapsed >= deadline).then_some(spec.auto.on_inconclusive)
}

/// How often an automatic rollout is looked at: six looks per interval, between once a
/// second and every ten seconds (Prometheus scrapes every 15-30 s; a failing canary is rolled
/// back at the first look that shows it).
pub fn look_period(spec: &StickyCanarySpec) -> std::time::Duration {
    let sixth = u64::from(spec.auto.interval_seconds) * 1000 / 6;
    std::time::Duration::from_millis(sixth.clamp(1000, 10_000))
}

/// Refuses an interval shorter than Prometheus's scrape interval: its step would be judged on
/// looks that saw no new sample.
pub fn check_interval(spec: &StickyCanarySpec, scrape: std::time::Duration) -> Result<(), String> {
    if u64::from(spec.auto.interval_seconds) < scrape.as_secs() {
        return Err(format!(
            "spec.auto.intervalSeconds: {} is shorter than Prometheus's scrape interval of {}s",
            spec.auto.interval_seconds,
            scrape.as_secs()
        ));
    }
    Ok(())
}

fn interval(spec: &StickyCanarySpec) -> SignedDuration {
    SignedDuration::from_secs(i64::from(spec.auto.interval_seconds))
}

/// How long the current step has run (nothing without a step).
fn elapsed(status: &StickyCanaryStatus, now: Timestamp) -> SignedDuration {
    status.step.as_ref().map_or(SignedDuration::ZERO, |step| {
        now.duration_since(step.started)
    })
}
