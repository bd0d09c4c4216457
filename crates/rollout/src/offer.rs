//! What a person may ask of a rollout now, pure: for each command a front end offers, whether
//! [`crate::transition`] would take it in this state, and in words why not. The answer is
//! the transition's own (each command is tried on it, nothing is written), so a front end
//! that offers only these offers exactly what the CLI would do, with the CLI's refusal.

use jiff::Timestamp;

use api::{StickyCanarySpec, StickyCanaryStatus};

use super::{transition, Command, Input, Op};

/// A command a person can give a rollout, by the name front ends send and show.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Action {
    /// `start --canary <version>`.
    Start,
    /// `next`.
    Next,
    /// `set-weight <percent>`.
    SetWeight,
    /// `pause`.
    Pause,
    /// `resume`.
    Resume,
    /// `auto on`.
    AutoOn,
    /// `auto off`.
    AutoOff,
    /// `promote`.
    Promote,
    /// `promote --finish`.
    PromoteFinish,
    /// `abort`.
    Abort,
}

impl Action {
    /// Every action, in the order a page lays them out.
    pub const ALL: [Action; 10] = [
        Action::Start,
        Action::Next,
        Action::SetWeight,
        Action::Pause,
        Action::Resume,
        Action::AutoOn,
        Action::AutoOff,
        Action::Promote,
        Action::PromoteFinish,
        Action::Abort,
    ];

    /// The name a front end sends: `start`, `next`, `set-weight`, `auto-on`, ...
    pub fn name(self) -> &'static str {
        match self {
            Action::Start => "start",
            Action::Next => "next",
            Action::SetWeight => "set-weight",
            Action::Pause => "pause",
            Action::Resume => "resume",
            Action::AutoOn => "auto-on",
            Action::AutoOff => "auto-off",
            Action::Promote => "promote",
            Action::PromoteFinish => "promote-finish",
            Action::Abort => "abort",
        }
    }

    /// The action named `name`.
    pub fn named(name: &str) -> Option<Action> {
        Action::ALL.into_iter().find(|a| a.name() == name)
    }

    /// Its command; `version` and `weight` are what [`Action::Start`] and
    /// [`Action::SetWeight`] need (the other actions take neither), else why not.
    pub fn command(self, version: Option<&str>, weight: Option<f64>) -> Result<Command, String> {
        let op = Command::Op;
        Ok(match self {
            Action::Start => match version {
                Some(canary) => op(Op::Start {
                    canary: canary.to_owned(),
                }),
                None => return Err("start needs `version`, the canary's version name".to_owned()),
            },
            Action::SetWeight => match weight {
                Some(weight) => op(Op::SetWeight(weight)),
                None => return Err("set-weight needs `weight`, the canary's percent".to_owned()),
            },
            Action::Next => op(Op::Next),
            Action::Pause => Command::Pause,
            Action::Resume => Command::Resume,
            Action::AutoOn => Command::Auto(true),
            Action::AutoOff => Command::Auto(false),
            Action::Promote => op(Op::Promote { finish: false }),
            Action::PromoteFinish => op(Op::Promote { finish: true }),
            Action::Abort => op(Op::Abort),
        })
    }
}

/// Whether the transition would take an action now.
#[derive(Debug, Clone, PartialEq)]
pub struct Offer {
    /// The action.
    pub action: Action,
    /// Why it would not be taken (the transition's refusal, or that it would change
    /// nothing); `None` when it would.
    pub refusal: Option<String>,
}

/// Every [`Action`] and whether [`crate::transition`] would take it on `spec` and `status`
/// at `now`. An action that takes a value is offered when some value would be taken: a
/// weight when 0% or 100% would be (one of them always differs from the canary's), a
/// version when no canary runs and none is being removed (the check `start` makes before
/// it looks at the name).
pub fn offers(spec: &StickyCanarySpec, status: &StickyCanaryStatus, now: Timestamp) -> Vec<Offer> {
    let tried = |command: Command, name: &str| match transition(
        spec,
        status,
        &Input::Command(command),
        now,
    ) {
        Err(refused) => Some(refused.to_string()),
        Ok(done) if !done.changes() => Some(format!(
            "nothing to do: `{name}` would change nothing now ({})",
            spec.summary()
        )),
        Ok(_) => None,
    };
    Action::ALL
        .into_iter()
        .map(|action| {
            let refusal = match action {
                Action::Start => crate::validate(spec)
                    .err()
                    .or_else(|| crate::ops::start_refusal(spec))
                    .map(|refused| refused.to_string()),
                Action::SetWeight => {
                    let at = |weight| Command::Op(Op::SetWeight(weight));
                    let (lower, upper) = (tried(at(0.0), "set-weight 0"), tried(at(100.0), ""));
                    lower.zip(upper).map(|(why, _)| why)
                }
                _ => action
                    .command(None, None)
                    .map_or_else(Some, |command| tried(command, action.name())),
            };
            Offer { action, refusal }
        })
        .collect()
}

#[cfg(test)]
mod tests;
