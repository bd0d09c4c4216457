//! The anytime-valid test: Lindon & Malek's sequential multinomial test ("Anytime-Valid
//! Inference for Multinomial Count Data", NeurIPS 2022) on two arms.
//!
//! Under "the canary is no worse", each event (a 5xx, a slow request) falls on the canary
//! with probability ρ, its share of requests. The statistic is the ratio of a
//! Dirichlet(kρ)-multinomial mixture likelihood to the null's; it starts at 1 and is a
//! martingale under the null, so by Ville's inequality it ever reaches 1/α with probability at
//! most α, however often it is looked at. The event-by-event product
//! `O ← O · (kρᵢ + Nᵢ) / ((k + N) ρᵢ)` telescopes into Gamma functions of the totals, so it is
//! computed from the counts alone, in log space, whatever the order of the events.
//!
//! The mixture is two-sided; only a canary worse than stable (its share of events above its
//! share of requests) is rejected, which keeps the level.

use libm::lgamma;

/// ln O for events `counts` over arms with null shares `shares` (summing to 1, each in
/// (0, 1)) and concentration `k`:
/// lnΓ(k) − lnΓ(k+N) + Σᵢ [lnΓ(kρᵢ+Nᵢ) − lnΓ(kρᵢ)] − Σᵢ Nᵢ ln ρᵢ.
pub fn log_statistic(k: f64, shares: &[f64], counts: &[u64]) -> f64 {
    let total: u64 = counts.iter().sum();
    let mut log_o = lgamma(k) - lgamma(k + total as f64);
    for (&rho, &n) in shares.iter().zip(counts) {
        let n = n as f64;
        log_o += lgamma(k * rho + n) - lgamma(k * rho) - n * rho.ln();
    }
    log_o
}

/// The test of "the canary's events are no more frequent than stable's" at one look.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Test {
    /// ln O, the log of the statistic (0 when there is nothing to test).
    pub log_statistic: f64,
    /// The canary's share of the events is above its share of requests.
    pub canary_worse: bool,
    /// O ≥ 1/α and the canary is the worse arm: the canary fails.
    pub rejects: bool,
}

/// Runs the two-arm test at level `alpha` with concentration `k`: `canary_share` is the
/// canary's measured share of requests (ρ), the events are counted per arm. A share outside
/// (0, 1) (one arm served nothing) leaves nothing to compare: the statistic stays at 1.
pub fn canary_worse(
    k: f64,
    alpha: f64,
    canary_share: f64,
    canary_events: u64,
    stable_events: u64,
) -> Test {
    if !(canary_share > 0.0 && canary_share < 1.0) {
        return Test {
            log_statistic: 0.0,
            canary_worse: false,
            rejects: false,
        };
    }
    let log_statistic = log_statistic(
        k,
        &[canary_share, 1.0 - canary_share],
        &[canary_events, stable_events],
    );
    let total = canary_events + stable_events;
    let canary_worse = total > 0 && canary_events as f64 > canary_share * total as f64;
    Test {
        log_statistic,
        canary_worse,
        rejects: canary_worse && log_statistic >= -alpha.ln(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// The paper's update, one event at a time.
    fn event_by_event(k: f64, shares: &[f64], arms: &[usize]) -> f64 {
        let mut counts = vec![0u64; shares.len()];
        let mut o = 1.0f64;
        for &arm in arms {
            let total: u64 = counts.iter().sum();
            o *= (k * shares[arm] + counts[arm] as f64) / ((k + total as f64) * shares[arm]);
            counts[arm] += 1;
        }
        o
    }

    #[test]
    fn the_closed_form_is_the_papers_event_by_event_product() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        for case in 0..200 {
            let k = [1.0, 10.0, 100.0, 1000.0][case % 4];
            let canary = rng.random_range(0.01..0.99);
            let shares = [canary, 1.0 - canary];
            let n = rng.random_range(0..300);
            let arms: Vec<usize> = (0..n).map(|_| rng.random_range(0..2)).collect();
            let counts = [
                arms.iter().filter(|&&a| a == 0).count() as u64,
                arms.iter().filter(|&&a| a == 1).count() as u64,
            ];
            let expected = event_by_event(k, &shares, &arms).ln();
            let got = log_statistic(k, &shares, &counts);
            assert!(
                (got - expected).abs() <= 1e-9 * expected.abs().max(1.0),
                "k={k} shares={shares:?} counts={counts:?}: {got} vs {expected}"
            );
        }
        // Three arms too: the formula is the multinomial one.
        let shares = [0.2, 0.3, 0.5];
        let arms = [0, 2, 2, 1, 0, 0, 2, 1, 0, 0, 0];
        let expected = event_by_event(100.0, &shares, &arms).ln();
        let got = log_statistic(100.0, &shares, &[6, 2, 3]);
        assert!((got - expected).abs() < 1e-9, "{got} vs {expected}");
    }

    #[test]
    fn no_events_is_no_evidence() {
        assert_eq!(log_statistic(100.0, &[0.05, 0.95], &[0, 0]), 0.0);
        let test = canary_worse(100.0, 0.05, 0.05, 0, 0);
        assert!(!test.rejects && !test.canary_worse);
    }

    /// Fewest canary events that reject at level `alpha` next to `stable` stable events.
    fn needed(alpha: f64, share: f64, stable: u64) -> u64 {
        (0..100_000)
            .find(|&canary| canary_worse(100.0, alpha, share, canary, stable).rejects)
            .expect("rejects eventually")
    }

    /// The counts the research notes give for k = 100, α = 0.05.
    #[test]
    fn counts_needed_to_reject() {
        let cases = [
            (0.5, 0, 29),
            (0.5, 100, 151),
            (0.5, 1000, 1143),
            (0.05, 0, 8),
        ];
        for (share, stable, canary) in cases {
            assert_eq!(
                needed(0.05, share, stable),
                canary,
                "ρ={share}, {stable} stable"
            );
        }
    }

    #[test]
    fn only_a_worse_canary_is_rejected() {
        // Stable has far more than its share of the events: the statistic is huge, but the
        // canary is the better arm.
        let better = canary_worse(100.0, 0.05, 0.5, 0, 500);
        assert!(better.log_statistic > 20.0);
        assert!(!better.canary_worse && !better.rejects);
        let worse = canary_worse(100.0, 0.05, 0.5, 500, 0);
        assert!(worse.canary_worse && worse.rejects);
        // Exactly its share: not worse.
        let even = canary_worse(100.0, 0.05, 0.5, 50, 50);
        assert!(!even.canary_worse && !even.rejects);
    }

    #[test]
    fn an_arm_without_requests_leaves_nothing_to_test() {
        for share in [0.0, 1.0, f64::NAN] {
            let test = canary_worse(100.0, 0.05, share, 10, 0);
            assert_eq!(test.log_statistic, 0.0);
            assert!(!test.rejects);
        }
    }

    #[test]
    fn large_counts_stay_finite() {
        let log_o = log_statistic(100.0, &[0.5, 0.5], &[5_000_000, 4_000_000]);
        assert!(log_o.is_finite() && log_o > 1000.0, "{log_o}");
        let even = log_statistic(100.0, &[0.5, 0.5], &[5_000_000, 5_000_000]);
        assert!(even.is_finite() && even < 0.0, "{even}");
    }
}
