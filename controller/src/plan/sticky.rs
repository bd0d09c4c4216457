//! `STICKY`: this project's own sticky rollout, set to the entry's weight by the same
//! transition `stickyctl set-weight` makes ([`ops::apply`] with [`Op::SetWeight`]), so one
//! rule decides what a weight does (a drain at 100, none at 0, refusals by phase); the
//! shell then converges its objects as every command does.

use kube::ResourceExt;

use super::naming::Names;
use super::Refusal;
use crate::model::{StickyCanary, ACTION_ANNOTATION};
use crate::ops::{self, Op};

/// The rollout at `percent`, with the action recorded; `None` when it is there already.
pub fn edit(
    names: &Names,
    rollout: Option<&StickyCanary>,
    percent: f64,
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
    let change = ops::apply(&rollout.spec, &Op::SetWeight(percent))
        .map_err(|e| Refusal::new("weight", format!("{label}: {e}")))?;
    Ok(change.map(|change| {
        let mut next = rollout.clone();
        next.spec = change.spec;
        next.annotations_mut().insert(
            ACTION_ANNOTATION.to_owned(),
            format!("plan {}", change.action),
        );
        next
    }))
}

/// The canary's name and weight, `None` without a canary.
pub fn canary_weight(rollout: &StickyCanary) -> Option<(String, f64)> {
    rollout.spec.canary().map(|v| (v.name.clone(), v.weight))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::StickyCanarySpec;
    use sticky_canary_filter::VersionWeight;

    fn names() -> Names {
        Names {
            namespace: "prod".into(),
            rollout: "server".into(),
            virtual_service: "server".into(),
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
            let next = edit(&names(), Some(&rollout(Some(*now))), *percent).expect("a canary runs");
            assert_eq!(
                next.as_ref().and_then(canary_weight).map(|(_, w)| w),
                *expected,
                "{now} -> {percent}"
            );
            if let Some(next) = next {
                assert_eq!(
                    next.annotations()
                        .get(ACTION_ANNOTATION)
                        .map(String::as_str),
                    Some(format!("plan set-weight {percent}").as_str())
                );
                // The one rule: exactly what set-weight would make of the spec.
                let direct = ops::apply(&rollout(Some(*now)).spec, &Op::SetWeight(*percent))
                    .unwrap()
                    .unwrap();
                assert_eq!(next.spec, direct.spec);
            }
        }
    }

    #[test]
    fn a_missing_rollout_or_canary_is_refused_by_name() {
        let missing = edit(&names(), None, 10.0).unwrap_err();
        assert_eq!(missing.field, "rollout");
        assert!(
            missing
                .message
                .starts_with("StickyCanary prod/server does not exist"),
            "{missing}"
        );
        let no_canary = edit(&names(), Some(&rollout(None)), 10.0).unwrap_err();
        assert_eq!(no_canary.field, "weight");
        assert!(
            no_canary.message.starts_with("StickyCanary prod/server: "),
            "{no_canary}"
        );
        assert!(no_canary.message.contains("no canary"), "{no_canary}");
        // Without a canary, weight 0 is where the rollout is: nothing to do (a rollback).
        assert!(matches!(
            edit(&names(), Some(&rollout(None)), 0.0),
            Ok(None)
        ));
    }
}
