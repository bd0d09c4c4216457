//! `DEPLOYMENT_REPLICAS`: the canary Deployment's replica count, for workloads whose traffic
//! follows their pods (queue workers taking jobs from one queue). The share of the work the
//! canary gets is its part of all replicas: 1 canary beside 4 stable is 20%.

use super::naming::Names;
use super::workload::{both, Workload};
use super::{Refusal, Write};

/// The canary's share of the replicas in percent; `None` when neither has any.
pub fn share(stable: &Workload, canary: &Workload) -> Option<f64> {
    let (s, c) = (
        f64::from(stable.replicas.max(0)),
        f64::from(canary.replicas.max(0)),
    );
    (s + c > 0.0).then(|| c * 100.0 / (s + c))
}

/// The write that gives the canary `count` replicas; `None` when it has them. The stable
/// Deployment is not written, but must exist: without it the count is no canary's share.
pub fn edit(
    names: &Names,
    stable: Option<&Workload>,
    canary: Option<&Workload>,
    count: i32,
) -> Result<Option<Write>, Refusal> {
    let (_, canary) = both(names, stable, canary)?;
    Ok((canary.replicas != count).then(|| canary.scale_to(count)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::workload;

    fn names() -> Names {
        Names {
            namespace: "prod".into(),
            rollout: "d".into(),
            virtual_service: "d".into(),
            http_route: "d".into(),
            stable: "d".into(),
            canary: "d-canary".into(),
        }
    }

    #[test]
    fn the_share_is_the_canarys_part_of_all_replicas() {
        let cases = [
            (4, 1, Some(20.0)),
            (1, 1, Some(50.0)),
            (0, 3, Some(100.0)),
            (3, 0, Some(0.0)),
            (0, 0, None),
            (2, 1, Some(100.0 / 3.0)),
        ];
        for (s, c, expected) in cases {
            let got = share(&workload("d", s, s, 0), &workload("d-canary", c, c, 0));
            assert_eq!(got, expected, "{s} stable, {c} canary");
        }
    }

    #[test]
    fn only_the_canary_is_scaled_and_only_when_it_differs() {
        let stable = workload("d", 4, 4, 4);
        let cases = [
            (0, 1, Some(1)),
            (1, 1, None),
            (3, 0, Some(0)),
            (0, 0, None),
            (2, 250, Some(250)),
        ];
        for (now, count, expected) in cases {
            let canary = workload("d-canary", now, now, 0);
            let write = edit(&names(), Some(&stable), Some(&canary), count).expect("both exist");
            assert_eq!(
                write
                    .as_ref()
                    .map(|w| (w.object.label(), w.desired["spec"]["replicas"].as_i64())),
                expected.map(|r| ("Deployment prod/d-canary".to_owned(), Some(r))),
                "{now} -> {count}"
            );
        }
    }

    #[test]
    fn a_missing_deployment_is_refused_by_name() {
        let w = workload("d", 1, 1, 1);
        let stable = edit(&names(), None, Some(&w), 1).unwrap_err();
        assert_eq!(
            stable,
            Refusal::new(
                "stable",
                "Deployment prod/d (the stable release's) does not exist"
            )
        );
        let canary = edit(&names(), Some(&w), None, 1).unwrap_err();
        assert_eq!(
            canary,
            Refusal::new(
                "canary",
                "Deployment prod/d-canary (the canary release's) does not exist"
            )
        );
    }
}
