//! Increases of cumulative counters between two raw samples.
//!
//! Prometheus's `increase()` extrapolates to the window's edges and returns non-integers; the
//! analysis counts events, so it takes raw samples and subtracts them itself. A counter that
//! went down was reset (the proxy restarted): everything it counted since is new.

/// How much a cumulative counter grew from `before` to `now`. A drop means a reset, after
/// which the counter started again from zero, so all of `now` is new.
pub fn increase(before: u64, now: u64) -> u64 {
    if now >= before {
        now - before
    } else {
        now
    }
}

/// Increases of cumulative histogram buckets, matched by upper bound: `before` and `now` are
/// `(le, cumulative count)` pairs. A bucket new in `now` counts whole. If any bucket went
/// down the proxy restarted, and every bucket of `now` counts whole, so the increases stay
/// cumulative (never smaller for a larger `le`).
pub fn bucket_increases(before: &[(f64, u64)], now: &[(f64, u64)]) -> Vec<(f64, u64)> {
    let previous = |le: f64| before.iter().find(|(b, _)| *b == le).map(|&(_, c)| c);
    let reset = now
        .iter()
        .any(|&(le, count)| previous(le).is_some_and(|p| count < p));
    now.iter()
        .map(|&(le, count)| {
            let base = if reset { 0 } else { previous(le).unwrap_or(0) };
            (le, count - base)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn increases_of_a_counter() {
        let cases = [
            (0, 0, 0),
            (0, 7, 7),
            (10, 10, 0),
            (10, 25, 15),
            // Reset: the process restarted and counted 3 since.
            (1000, 3, 3),
            (1000, 0, 0),
            (u64::MAX - 1, u64::MAX, 1),
        ];
        for (before, now, expected) in cases {
            assert_eq!(increase(before, now), expected, "{before} -> {now}");
        }
    }

    #[test]
    fn increases_of_histogram_buckets() {
        let before = [(10.0, 5), (100.0, 8), (f64::INFINITY, 9)];
        assert_eq!(
            bucket_increases(&before, &[(10.0, 7), (100.0, 12), (f64::INFINITY, 14)]),
            vec![(10.0, 2), (100.0, 4), (f64::INFINITY, 5)]
        );
        // One bucket went down: a restart; everything since counts.
        assert_eq!(
            bucket_increases(&before, &[(10.0, 1), (100.0, 9), (f64::INFINITY, 10)]),
            vec![(10.0, 1), (100.0, 9), (f64::INFINITY, 10)]
        );
        // A bucket that appeared (first request of its range) counts whole.
        assert_eq!(
            bucket_increases(
                &before,
                &[(10.0, 5), (50.0, 2), (100.0, 8), (f64::INFINITY, 9)]
            ),
            vec![(10.0, 0), (50.0, 2), (100.0, 0), (f64::INFINITY, 0)]
        );
        assert_eq!(bucket_increases(&[], &[(1.0, 4)]), vec![(1.0, 4)]);
        assert_eq!(bucket_increases(&before, &[]), vec![]);
    }
}
