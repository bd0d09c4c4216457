//! `DEPLOYMENT_SINGLETON`: exactly one of stable (weight 0) and canary (weight 1) runs, and
//! never both, not even for a moment: the running one is scaled to 0, its pods are awaited
//! until none is left (its controller has seen the 0, counts no replica, and no pod of its
//! selector exists, terminating ones included), and only then is the other scaled to 1.
//!
//! [`step`] decides the next move from the live Deployments alone, so a handover interrupted
//! anywhere (the command killed while waiting, a timeout) resumes safely on the next run: it
//! finds the old one at 0 and waits again, or finds it gone and scales the new one up.

use super::naming::Names;
use super::workload::{both, Workload};
use super::{Refusal, Write};

/// One of the two releases.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// `<project>`, weight 0.
    Stable,
    /// `<project>-canary`, weight 1.
    Canary,
}

impl Side {
    /// The side a weight of the plan runs (0 stable, 1 canary; checked when parsed).
    pub fn of_weight(weight: i32) -> Side {
        if weight == 0 {
            Side::Stable
        } else {
            Side::Canary
        }
    }

    /// The other side.
    pub fn other(self) -> Side {
        match self {
            Side::Stable => Side::Canary,
            Side::Canary => Side::Stable,
        }
    }

    /// `stable` or `canary`.
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Stable => "stable",
            Side::Canary => "canary",
        }
    }
}

/// The next move of a handover.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Scale this side to 0.
    ScaleDown(Side),
    /// Wait until this side's pods are gone.
    AwaitGone(Side),
    /// Scale this side to 1.
    ScaleUp(Side),
    /// The wanted side runs alone (as asked: one replica), the other is gone.
    Done,
}

fn pick<'a>(side: Side, stable: &'a Workload, canary: &'a Workload) -> &'a Workload {
    match side {
        Side::Stable => stable,
        Side::Canary => canary,
    }
}

/// The next move towards `runs` running alone.
pub fn step(stable: &Workload, canary: &Workload, runs: Side) -> Step {
    let (on, off) = (
        pick(runs, stable, canary),
        pick(runs.other(), stable, canary),
    );
    if off.replicas > 0 {
        Step::ScaleDown(runs.other())
    } else if off.may_run() {
        Step::AwaitGone(runs.other())
    } else if on.replicas != 1 {
        Step::ScaleUp(runs)
    } else {
        Step::Done
    }
}

/// The moves from here to `runs` running alone, each assumed to complete: the preview.
pub fn handover(stable: &Workload, canary: &Workload, runs: Side) -> Vec<Step> {
    let (mut stable, mut canary) = (stable.clone(), canary.clone());
    let mut steps = Vec::new();
    // At most one of each move; the bound only guards the loop.
    for _ in 0..3 {
        let next = step(&stable, &canary, runs);
        let (Step::ScaleDown(side) | Step::AwaitGone(side) | Step::ScaleUp(side)) = next else {
            break;
        };
        let moved = match side {
            Side::Stable => &mut stable,
            Side::Canary => &mut canary,
        };
        match next {
            Step::ScaleDown(_) => moved.replicas = 0,
            Step::AwaitGone(_) => {
                (moved.status_replicas, moved.pods, moved.observed) = (0, 0, true)
            }
            _ => moved.replicas = 1,
        }
        steps.push(next);
    }
    steps
}

/// The scale writes of a handover from here, each against the Deployment as read: what the
/// server is asked to check before anything is written.
pub fn writes(
    names: &Names,
    stable: Option<&Workload>,
    canary: Option<&Workload>,
    runs: Side,
) -> Result<Vec<Write>, Refusal> {
    let (stable, canary) = both(names, stable, canary)?;
    Ok(handover(stable, canary, runs)
        .into_iter()
        .filter_map(|s| match s {
            Step::ScaleDown(side) => Some(pick(side, stable, canary).scale_to(0)),
            Step::ScaleUp(side) => Some(pick(side, stable, canary).scale_to(1)),
            Step::AwaitGone(_) | Step::Done => None,
        })
        .collect())
}

/// What runs now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// Only this side may run.
    Alone(Side),
    /// Neither runs yet: both are at 0 and this side's pods are still going (a handover
    /// waiting, or one interrupted while it waited). Looked at by what runs alone, it would
    /// pass for this side running, and it is the one moment nothing runs.
    HandingOver(Side),
    /// Neither: between the old one's pods going and the new one's scale-up, or both at 0.
    Neither,
    /// Both may run: a handover someone else began, or a broken rule to repair.
    Both,
}

/// What runs now.
pub fn standing(stable: &Workload, canary: &Workload) -> Standing {
    match (stable.may_run(), canary.may_run()) {
        (true, false) if stable.replicas == 0 => Standing::HandingOver(Side::Stable),
        (false, true) if canary.replicas == 0 => Standing::HandingOver(Side::Canary),
        (true, false) => Standing::Alone(Side::Stable),
        (false, true) => Standing::Alone(Side::Canary),
        (false, false) => Standing::Neither,
        (true, true) => Standing::Both,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::workload;
    use Side::{Canary, Stable};
    use Step::{AwaitGone, Done, ScaleDown, ScaleUp};

    /// (stable: replicas, counted, pods), (canary: ...), which should run, the next step.
    type Case = ((i32, i32, usize), (i32, i32, usize), Side, Step);

    #[test]
    fn the_next_step_never_lets_both_run() {
        let cases: &[Case] = &[
            // Stable runs, canary wanted: down, wait, up.
            ((1, 1, 1), (0, 0, 0), Canary, ScaleDown(Stable)),
            ((0, 1, 1), (0, 0, 0), Canary, AwaitGone(Stable)),
            ((0, 0, 1), (0, 0, 0), Canary, AwaitGone(Stable)),
            ((0, 1, 0), (0, 0, 0), Canary, AwaitGone(Stable)),
            ((0, 0, 0), (0, 0, 0), Canary, ScaleUp(Canary)),
            ((0, 0, 0), (1, 0, 0), Canary, Done),
            ((0, 0, 0), (1, 1, 1), Canary, Done),
            // And back.
            ((0, 0, 0), (1, 1, 1), Stable, ScaleDown(Canary)),
            ((0, 0, 0), (0, 1, 1), Stable, AwaitGone(Canary)),
            ((0, 0, 0), (0, 0, 0), Stable, ScaleUp(Stable)),
            ((1, 1, 1), (0, 0, 0), Stable, Done),
            // Both running (someone scaled by hand): the unwanted one goes first.
            ((1, 1, 1), (1, 1, 1), Canary, ScaleDown(Stable)),
            ((1, 1, 1), (1, 1, 1), Stable, ScaleDown(Canary)),
            // A singleton asked for more than one replica is set to one, once alone.
            ((3, 3, 3), (0, 0, 0), Stable, ScaleUp(Stable)),
            ((0, 0, 0), (2, 2, 2), Canary, ScaleUp(Canary)),
        ];
        for (s, c, runs, expected) in cases {
            let stable = workload("job", s.0, s.1, s.2);
            let canary = workload("job-canary", c.0, c.1, c.2);
            assert_eq!(
                step(&stable, &canary, *runs),
                *expected,
                "{s:?} {c:?} {runs:?}"
            );
        }
        // A spec the controller has not seen yet may still start pods: wait for it.
        let unseen = Workload {
            observed: false,
            ..workload("job", 0, 0, 0)
        };
        assert_eq!(
            step(&unseen, &workload("job-canary", 0, 0, 0), Canary),
            AwaitGone(Stable)
        );
    }

    #[test]
    fn a_scale_up_only_ever_follows_the_other_being_gone() {
        // Every state of small counts: whenever the step scales a side up, the other side
        // may not run.
        for sr in 0..3 {
            for ss in 0..3 {
                for sp in 0..3usize {
                    for cr in 0..3 {
                        for cs in 0..3 {
                            for cp in 0..3usize {
                                for observed in [true, false] {
                                    let stable = Workload {
                                        observed,
                                        ..workload("job", sr, ss, sp)
                                    };
                                    let canary = workload("job-canary", cr, cs, cp);
                                    for runs in [Stable, Canary] {
                                        let next = step(&stable, &canary, runs);
                                        if let ScaleUp(side) = next {
                                            assert_eq!(side, runs);
                                            let other = pick(runs.other(), &stable, &canary);
                                            assert!(
                                                !other.may_run(),
                                                "{stable:?} {canary:?} {runs:?}"
                                            );
                                        }
                                        if next == Done {
                                            assert_eq!(
                                                standing(&stable, &canary),
                                                Standing::Alone(runs)
                                            );
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn the_preview_lists_the_whole_handover_from_where_it_stands() {
        let running = workload("job", 1, 1, 1);
        let idle = workload("job-canary", 0, 0, 0);
        assert_eq!(
            handover(&running, &idle, Canary),
            [ScaleDown(Stable), AwaitGone(Stable), ScaleUp(Canary)]
        );
        assert_eq!(handover(&running, &idle, Stable), []);
        let halfway = workload("job", 0, 1, 1);
        assert_eq!(
            handover(&halfway, &idle, Canary),
            [AwaitGone(Stable), ScaleUp(Canary)]
        );
        let names = Names {
            namespace: "prod".into(),
            rollout: "job".into(),
            virtual_service: "job".into(),
            http_route: "job".into(),
            stable: "job".into(),
            canary: "job-canary".into(),
        };
        let labels: Vec<(String, i64)> = writes(&names, Some(&running), Some(&idle), Canary)
            .unwrap()
            .iter()
            .map(|w| {
                (
                    w.object.label(),
                    w.desired["spec"]["replicas"].as_i64().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            labels,
            [
                ("Deployment prod/job".to_owned(), 0),
                ("Deployment prod/job-canary".to_owned(), 1)
            ]
        );
        assert_eq!(
            writes(&names, None, Some(&idle), Canary).unwrap_err().field,
            "stable"
        );
    }

    #[test]
    fn standing_says_what_runs() {
        let on = workload("a", 1, 1, 1);
        let off = workload("b", 0, 0, 0);
        let going = workload("b", 0, 1, 1);
        assert_eq!(standing(&on, &off), Standing::Alone(Stable));
        assert_eq!(standing(&off, &on), Standing::Alone(Canary));
        assert_eq!(standing(&off, &off), Standing::Neither);
        assert_eq!(standing(&on, &going), Standing::Both);
        // Both at 0, the old pods still there (or still counted): neither runs yet.
        assert_eq!(standing(&going, &off), Standing::HandingOver(Stable));
        assert_eq!(standing(&off, &going), Standing::HandingOver(Canary));
        let counted_only = workload("b", 0, 1, 0);
        assert_eq!(standing(&counted_only, &off), Standing::HandingOver(Stable));
    }
}
