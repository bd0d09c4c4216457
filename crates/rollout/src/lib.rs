//! The rollout's state machine, pure: the spec, the status, an input (a person's command or a
//! look at the metrics) and the time in; the next spec and status, the history line and the
//! notifications out.
//!
//! Every change of a rollout goes through [`transition`]: the CLI's commands, the
//! controller's automatic steps and the dashboard's buttons, so no rule is written twice.
//! `ops` holds the spec edits it is made of (weights, promote, abort), private so that
//! nothing changes a spec another way; this crate adds what lives in the status (phase, the current step and its evidence, verdicts) and the
//! automatic progression ([`auto`]), and which commands it would take now ([`offer`]).
//!
//! The shells write the spec first and the status second, each against the resourceVersion
//! they read, so two writers never interleave their halves. A crash between the two writes
//! leaves a status behind its spec; [`phase_for`] and the step's own weight repair it from the
//! spec at the next look, so the spec is what counts.
//!
//! Pure: time is a parameter. Only `runtime` applies a transition (`make lint` checks it).

#![deny(missing_docs)]

use jiff::Timestamp;

use analysis::{LookError, Snapshot};
use api::{
    Phase, StepStatus, StepVerdict, StickyCanarySpec, StickyCanaryStatus, Waiting, HISTORY_LIMIT,
};
use render::exposure;

use sticky_canary_filter::config::OverrideConfig;

pub mod auto;
pub mod describe;
pub mod offer;
mod ops;
pub mod status;

pub use ops::{init, step_index, validate, Op, OpError};

/// What a person asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// A change of the versions and weights ([`Op`]).
    Op(Op),
    /// Switch automatic progression on or off.
    Auto(bool),
    /// Hold automatic progression where it is.
    Pause,
    /// Let automatic progression go on.
    Resume,
    /// Who may use the QA override: off, a token (its digest) or public. The header name
    /// stays the spec's.
    Override(OverrideConfig),
}

/// What a transition reacts to.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    /// A person's command.
    Command(Command),
    /// A look at the metrics by the controller: what it read, or why it could not.
    Look(Box<Result<Snapshot, LookError>>),
}

/// The outcome of a transition: what to write and what to tell.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Transition {
    /// The new spec, when it changes.
    pub spec: Option<StickyCanarySpec>,
    /// The new status, when it changes.
    pub status: Option<StickyCanaryStatus>,
    /// What was done, for the history (e.g. `next 10`, `rollback v2`), when the spec changes.
    pub action: Option<String>,
    /// Notifications, in words (every step, hold, rollback and promotion).
    pub notices: Vec<String>,
    /// Run the same input again once this transition's objects are applied: abort,
    /// `promote --finish` and an immediate rollback first switch every client, then remove
    /// the other version (make before break).
    pub again: bool,
}

impl Transition {
    /// Whether anything is to be written.
    pub fn changes(&self) -> bool {
        self.spec.is_some() || self.status.is_some()
    }
}

/// The next state of a rollout after `input` at `now`; an error refuses the input before
/// anything is written.
pub fn transition(
    spec: &StickyCanarySpec,
    status: &StickyCanaryStatus,
    input: &Input,
    now: Timestamp,
) -> Result<Transition, OpError> {
    match input {
        Input::Command(command) => command_transition(spec, status, command, now),
        Input::Look(look) => Ok(auto::look(spec, status, look, now)),
    }
}

fn command_transition(
    spec: &StickyCanarySpec,
    status: &StickyCanaryStatus,
    command: &Command,
    now: Timestamp,
) -> Result<Transition, OpError> {
    ops::validate(spec)?;
    let mut next_spec = spec.clone();
    let mut next = status.clone();
    let mut notices = Vec::new();
    let mut again = false;
    let action = match command {
        Command::Op(op) => {
            let Some(change) = ops::apply(spec, op)? else {
                return Ok(Transition::default());
            };
            next_spec = change.spec;
            next.phase = phase_after(op, &next_spec);
            next.message = None;
            again = matches!(op, Op::Promote { finish: true } | Op::Abort)
                && next_spec.retiring.is_some();
            end_step(&mut next, now);
            if let Op::Start { .. } = op {
                // A new canary is judged from scratch.
                next.verdicts.clear();
            }
            if matches!(op, Op::Start { .. } | Op::SetWeight(_) | Op::Next) {
                next.step = Some(new_step(&next_spec, now));
            }
            notices.push(format!("{}: {}", change.action, next_spec.summary()));
            change.action
        }
        Command::Auto(on) => {
            if spec.auto.enabled == *on {
                return Ok(Transition::default());
            }
            next_spec.auto.enabled = *on;
            if *on && next.step.is_none() && spec.canary().is_some() {
                next.step = Some(new_step(spec, now));
            }
            let action = format!("auto {}", if *on { "on" } else { "off" });
            notices.push(action.clone());
            action
        }
        Command::Override(access) => {
            let mut next_override = access.clone();
            next_override.header = spec.filter.override_.header.clone();
            if next_override == spec.filter.override_ {
                return Ok(Transition::default());
            }
            next_spec.filter.override_ = next_override;
            let action = format!("override {}", exposure::access(access).as_str());
            notices.push(action.clone());
            action
        }
        Command::Pause | Command::Resume => {
            let pause = *command == Command::Pause;
            if spec.paused == pause {
                return Ok(Transition::default());
            }
            next_spec.paused = pause;
            if let Some(step) = &mut next.step {
                if pause {
                    step.waiting = Some(Waiting::Resume);
                } else if step.waiting == Some(Waiting::Resume) {
                    // The step's interval starts over: the time it was held does not count
                    // as time at its weight under watch. Its evidence stays.
                    step.waiting = None;
                    step.started = now;
                }
            }
            let action = if pause { "pause" } else { "resume" }.to_owned();
            notices.push(action.clone());
            action
        }
    };
    ops::validate(&next_spec)?;
    next.phase = phase_for(&next_spec, next.phase);
    Ok(Transition {
        spec: (next_spec != *spec).then_some(next_spec),
        status: (next != *status).then_some(next),
        action: Some(action),
        notices,
        again,
    })
}

/// The phase a command leaves the rollout in.
fn phase_after(op: &Op, spec: &StickyCanarySpec) -> Phase {
    let done = spec.retiring.is_none();
    match (op, done) {
        (Op::Promote { .. }, false) => Phase::Promoting,
        (Op::Promote { .. }, true) => Phase::Promoted,
        (Op::Abort, false) => Phase::Aborting,
        (Op::Abort, true) => Phase::Aborted,
        _ => Phase::Progressing,
    }
}

/// `phase`, unless the spec contradicts it (a hand edit, or a status write lost after its
/// spec write): then the phase the spec shows.
pub fn phase_for(spec: &StickyCanarySpec, phase: Phase) -> Phase {
    let fits = match (&spec.retiring, spec.versions.len()) {
        (Some(_), _) => matches!(
            phase,
            Phase::Promoting | Phase::Aborting | Phase::RolledBack
        ),
        (None, 1) => matches!(
            phase,
            Phase::Stable | Phase::Promoted | Phase::Aborted | Phase::RolledBack
        ),
        (None, _) => phase == Phase::Progressing,
    };
    if fits {
        return phase;
    }
    match (&spec.retiring, spec.versions.len()) {
        // Promote drains the old stable; abort never drains.
        (Some(_), _) if spec.versions.iter().any(|v| v.drain) => Phase::Promoting,
        (Some(_), _) => Phase::Aborting,
        (None, 1) => Phase::Stable,
        (None, _) => Phase::Progressing,
    }
}

/// A step at the spec's canary weight, starting `now`, waiting for nothing.
fn new_step(spec: &StickyCanarySpec, now: Timestamp) -> StepStatus {
    StepStatus {
        weight: spec.canary().map_or(0.0, |c| c.weight),
        started: now,
        waiting: spec.paused.then_some(Waiting::Resume),
        evidence: None,
        verdict: None,
    }
}

/// Ends the current step: its last verdict, if it was judged, joins the verdict history.
fn end_step(status: &mut StickyCanaryStatus, now: Timestamp) {
    let Some(step) = status.step.take() else {
        return;
    };
    if let Some(verdict) = step.verdict {
        status.verdicts.push(StepVerdict {
            weight: step.weight,
            started: step.started,
            judged: now,
            verdict,
        });
        let excess = status.verdicts.len().saturating_sub(HISTORY_LIMIT);
        status.verdicts.drain(..excess);
    }
}

#[cfg(test)]
mod tests;
