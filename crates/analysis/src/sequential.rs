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
    let total = counts.iter().fold(0u64, |sum, &n| sum.saturating_add(n));
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

/// Largest ln O written into a status: e^700 ≈ 1e304 still fits a finite JSON number.
const MAX_LOG_STATISTIC: f64 = 700.0;

impl Test {
    /// The statistic O as a status keeps it: finite, however far beyond 1/α it went.
    pub fn statistic(&self) -> f64 {
        self.log_statistic.min(MAX_LOG_STATISTIC).exp()
    }
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
    let total = canary_events.saturating_add(stable_events);
    let canary_worse = total > 0 && canary_events as f64 > canary_share * total as f64;
    Test {
        log_statistic,
        canary_worse,
        rejects: canary_worse && log_statistic >= -alpha.ln(),
    }
}

/// Ratios to the limit of the alternative rates mixed by [`rate_above`], equally weighted.
const RATE_RATIOS: [f64; 8] = [1.25, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0, 100.0];

/// The guard's test of "the canary's rate of events is at most `limit`", valid at every look
/// like the comparison: a mixture, over rates q above the limit, of the likelihood ratios
/// (q/p₀)ˣ((1−q)/(1−p₀))ⁿ⁻ˣ of `events` among `trials`. For any true rate at most the limit
/// each ratio, and so the mixture, is a supermartingale, so it reaches 1/α with probability at
/// most α: a canary within its limit is not failed by the noise of many looks.
pub fn rate_above(alpha: f64, limit: f64, events: u64, trials: u64) -> Test {
    let alternatives = RATE_RATIOS.iter().map(|ratio| limit * ratio);
    mixture(alpha, limit, true, alternatives, events, trials)
}

/// [`rate_above`] turned around: "the rate is at least `limit`", rejected once it is shown
/// below, by the mixture over rates q = limit / ratio below it (for any true rate at least the
/// limit each ratio is a supermartingale, as above).
pub fn rate_below(alpha: f64, limit: f64, events: u64, trials: u64) -> Test {
    let alternatives = RATE_RATIOS.iter().map(|ratio| limit / ratio);
    mixture(alpha, limit, false, alternatives, events, trials)
}

/// Alternatives of the sign test: a sign "beyond" more often than half the time.
const SIGN_ALTERNATIVES: [f64; 5] = [0.6, 0.7, 0.8, 0.9, 0.95];

/// The sign test of "a sample is beyond its bound at most half the time", rejected once it is
/// shown more often: [`rate_above`] at ½ with alternatives spread up to 0.95, since samples
/// are few and a canary that is worse is beyond at nearly every one.
pub fn sign_test(alpha: f64, beyond: u64, samples: u64) -> Test {
    mixture(
        alpha,
        0.5,
        true,
        SIGN_ALTERNATIVES.into_iter(),
        beyond,
        samples,
    )
}

/// The mixture, equally weighted over `alternatives` strictly between 0 and 1 (others are
/// dropped), of the likelihood ratios of rate q to `null` for `events` among `trials`; it
/// rejects when the observed rate is beyond the null: `above` it, or below.
fn mixture(
    alpha: f64,
    null: f64,
    above: bool,
    alternatives: impl Iterator<Item = f64>,
    events: u64,
    trials: u64,
) -> Test {
    let alternatives: Vec<f64> = alternatives.filter(|&q| q > 0.0 && q < 1.0).collect();
    let observed = events as f64 / trials.max(1) as f64;
    let beyond = trials > 0
        && if above {
            observed > null
        } else {
            observed < null
        };
    if !(null > 0.0 && null < 1.0) || trials == 0 || alternatives.is_empty() {
        return Test {
            log_statistic: 0.0,
            canary_worse: beyond,
            rejects: false,
        };
    }
    let (x, rest) = (events as f64, (trials - events.min(trials)) as f64);
    let terms: Vec<f64> = alternatives
        .iter()
        .map(|&q| x * (q / null).ln() + rest * ((1.0 - q) / (1.0 - null)).ln())
        .collect();
    let weight = -(terms.len() as f64).ln();
    let top = terms.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let log_statistic = if top.is_finite() {
        weight + top + terms.iter().map(|t| (t - top).exp()).sum::<f64>().ln()
    } else {
        0.0
    };
    Test {
        log_statistic,
        canary_worse: beyond,
        rejects: beyond && log_statistic >= -alpha.ln(),
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
    fn the_guard_fails_only_a_rate_shown_above_its_limit() {
        let alpha = 0.05 / 12.0;
        // (events, trials, rejects)
        let cases = [
            (1, 3, false),    // 33 %, but three requests show nothing
            (16, 295, false), // 5.4 % against 5 %: not shown above
            (30, 300, false), // 10 %: not yet shown with 300
            (45, 300, true),  // 15 %
            (0, 100_000, false),
            (6, 1000, false), // 0.6 % against a 1 % limit (maxP99)
            (40, 1000, true), // 4 % against 1 %
        ];
        for (events, trials, rejects) in cases {
            let limit = if trials == 1000 { 0.01 } else { 0.05 };
            let test = rate_above(alpha, limit, events, trials);
            assert_eq!(
                test.rejects, rejects,
                "{events}/{trials} vs {limit}: {test:?}"
            );
        }
        assert!(!rate_above(alpha, 0.05, 0, 0).rejects);
        assert!(
            !rate_above(alpha, 1.0, 10, 10).rejects,
            "a limit of 100 % is never exceeded"
        );
    }

    /// Simulated: a canary exactly at its limit, looked at after every 20 requests up to
    /// 5,000, is failed at most α of the time.
    #[test]
    fn the_guard_keeps_its_level_over_many_looks() {
        let alpha = 0.05;
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        let runs = 400;
        let failed = (0..runs)
            .filter(|_| {
                let (mut events, mut trials) = (0, 0);
                (0..250).any(|_| {
                    for _ in 0..20 {
                        trials += 1;
                        events += u64::from(rng.random_bool(0.05));
                    }
                    rate_above(alpha, 0.05, events, trials).rejects
                })
            })
            .count();
        assert!(failed as f64 / runs as f64 <= alpha, "{failed}/{runs}");
    }

    #[test]
    fn large_counts_stay_finite() {
        let log_o = log_statistic(100.0, &[0.5, 0.5], &[5_000_000, 4_000_000]);
        assert!(log_o.is_finite() && log_o > 1000.0, "{log_o}");
        let even = log_statistic(100.0, &[0.5, 0.5], &[5_000_000, 5_000_000]);
        assert!(even.is_finite() && even < 0.0, "{even}");
    }
}
