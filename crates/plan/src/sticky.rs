//! `STICKY`: this project's own sticky rollout, set to the entry's weight by the transition
//! `stickyctl set-weight` makes ([`Op::SetWeight`]), so one rule decides what a weight does (a
//! drain at 100, none at 0, refusals by phase, the step's bookkeeping). The preview is the
//! runtime's [`runtime::reconcile::planned`]; the run applies it through the runtime as every
//! command does.

use jiff::Timestamp;
use rollout::{Command, Input, Op};
use runtime::reconcile::Requester;

use super::naming::Names;
use super::Refusal;
use api::StickyCanary;

/// The input that sets the rollout to `percent`.
pub fn input(percent: f64) -> Input {
    Input::Command(Command::Op(Op::SetWeight(percent)))
}

/// The rollout at `percent` at `now`, as the runtime would store it; `None` when it is there
/// already. Refusals name the entry's field.
pub fn edit(
    names: &Names,
    rollout: Option<&StickyCanary>,
    percent: f64,
    now: Timestamp,
) -> Result<Option<StickyCanary>, Refusal> {
    let label = format!("StickyCanary {}", names.path(&names.rollout));
    let rollout = rollout.ok_or_else(|| {
        Refusal::new(
            "rollout",
            format!("{label} does not exist: run `stickyctl init` and `stickyctl start` first"),
        )
    })?;
    // Weight 0 without a canary (none started, or aborted): every client is on stable.
    if percent == 0.0 && rollout.spec.canary().is_none() {
        return Ok(None);
    }
    let next = runtime::reconcile::planned(rollout, &input(percent), &requester(None), now)
        .map_err(|e| Refusal::new("weight", format!("{label}: {e}")))?;
    Ok((next.spec != rollout.spec).then_some(next))
}

/// Who the history says set the weight: the Kubernetes user through the plan,
/// `alice (plan): set-weight 20`, or `plan: set-weight 20` when none is known.
pub fn requester(user: Option<&str>) -> Requester {
    let by = match user {
        Some(user) => format!("{user} (plan)"),
        None => "plan".to_owned(),
    };
    Requester {
        by: Some(by),
        seen_generation: None,
    }
}

/// The canary's name and weight, `None` without a canary.
pub fn canary_weight(rollout: &StickyCanary) -> Option<(String, f64)> {
    rollout.spec.canary().map(|v| (v.name.clone(), v.weight))
}

#[cfg(test)]
mod tests {
    use super::*;
    use api::StickyCanarySpec;
    use sticky_canary_filter::VersionWeight;

    fn names() -> Names {
        Names {
            namespace: "prod".into(),
            rollout: "server".into(),
            virtual_service: "server".into(),
            http_route: "server".into(),
            stable: "server".into(),
            canary: "server-canary".into(),
        }
    }

    fn rollout(canary: Option<f64>) -> StickyCanary {
        let mut spec = StickyCanarySpec::new("server", "v1");
        if let Some(w) = canary {
            spec.versions = vec![
                VersionWeight::new("v1", 100.0 - w),
                VersionWeight::new("v2", w),
            ];
        }
        StickyCanary::new("server", spec)
    }

    #[test]
    fn the_weight_goes_through_set_weight() {
        let cases: &[(f64, f64, Option<f64>)] = &[
            (0.0, 10.0, Some(10.0)),
            (10.0, 10.0, None),
            (10.0, 0.0, Some(0.0)),
            (5.0, 12.5, Some(12.5)),
        ];
        for (now, percent, expected) in cases {
            let at = Timestamp::UNIX_EPOCH;
            let next =
                edit(&names(), Some(&rollout(Some(*now))), *percent, at).expect("a canary runs");
            assert_eq!(
                next.as_ref().and_then(canary_weight).map(|(_, w)| w),
                *expected,
                "{now} -> {percent}"
            );
            if let Some(next) = next {
                // The step's bookkeeping is the transition's: a new step at the new weight.
                let step = next.status.and_then(|s| s.step).expect("a new step");
                assert_eq!(step.weight, *percent, "{now} -> {percent}");
            }
        }
    }

    #[test]
    fn a_missing_rollout_or_canary_is_refused_by_name() {
        let missing = edit(&names(), None, 10.0, Timestamp::UNIX_EPOCH).unwrap_err();
        assert_eq!(missing.field, "rollout");
        assert!(
            missing
                .message
                .starts_with("StickyCanary prod/server does not exist"),
            "{missing}"
        );
        let no_canary =
            edit(&names(), Some(&rollout(None)), 10.0, Timestamp::UNIX_EPOCH).unwrap_err();
        assert_eq!(no_canary.field, "weight");
        assert!(
            no_canary.message.starts_with("StickyCanary prod/server: "),
            "{no_canary}"
        );
        assert!(no_canary.message.contains("no canary"), "{no_canary}");
        // Without a canary, weight 0 is where the rollout is: nothing to do (a rollback).
        assert!(matches!(
            edit(&names(), Some(&rollout(None)), 0.0, Timestamp::UNIX_EPOCH),
            Ok(None)
        ));
    }
}
