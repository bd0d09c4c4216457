//! A rollout's progress in words, pure: what `stickyctl status` and `status --watch` print.

use jiff::{SignedDuration, Timestamp};

use super::phase_for;
use api::{Phase, StickyCanarySpec, StickyCanaryStatus, Waiting};

/// Automatic progression in a few words: `off`, `paused`, or the step and its time left.
pub fn progression(spec: &StickyCanarySpec, status: &StickyCanaryStatus, now: Timestamp) -> String {
    if !spec.auto.enabled {
        return "off".to_owned();
    }
    if spec.paused {
        return "on, paused (`stickyctl resume` goes on)".to_owned();
    }
    let Some(step) = &status.step else {
        return "on".to_owned();
    };
    let waiting = match step.waiting {
        Some(Waiting::Gate) => "waiting at a gate for `stickyctl next`".to_owned(),
        Some(Waiting::Promotion) => "last step passed, waiting for `stickyctl promote`".to_owned(),
        Some(Waiting::Evidence) => "held: too little evidence".to_owned(),
        Some(Waiting::Resume) => "paused".to_owned(),
        None => {
            let left = time_left(spec, step.started, now);
            if left > SignedDuration::ZERO {
                format!("{}s left", left.as_secs())
            } else {
                "interval over, judging".to_owned()
            }
        }
    };
    format!("on, step {}%: {waiting}", step.weight)
}

/// One line: phase, weights, the step and its time left, and the current verdict (requests,
/// error rate and p99 per version, the statistics against their thresholds, the outcome).
pub fn line(spec: &StickyCanarySpec, status: &StickyCanaryStatus, now: Timestamp) -> String {
    let phase = phase_for(spec, status.phase);
    let mut line = format!("{phase:?} {}", spec.summary());
    if spec.auto.enabled {
        line.push_str(&format!(" | auto {}", progression(spec, status, now)));
    }
    if let Some(verdict) = status.step.as_ref().and_then(|s| s.verdict.as_ref()) {
        line.push_str(&format!(" | {}", verdict.line()));
    }
    if let Some(message) = &status.message {
        line.push_str(&format!(" | {message}"));
    }
    line
}

/// Whether the rollout has ended: no canary live, nothing left to remove.
pub fn ended(spec: &StickyCanarySpec, status: &StickyCanaryStatus) -> bool {
    let phase = phase_for(spec, status.phase);
    spec.retiring.is_none()
        && matches!(
            phase,
            Phase::Stable | Phase::Promoted | Phase::Aborted | Phase::RolledBack
        )
}

fn time_left(spec: &StickyCanarySpec, started: Timestamp, now: Timestamp) -> SignedDuration {
    let interval = SignedDuration::from_secs(i64::from(spec.auto.interval_seconds));
    interval - now.duration_since(started)
}
