//! The status a rollout gets after its objects were applied, pure.
//!
//! Whoever applies the objects (the CLI reconciling once, or the controller) records what it
//! applied: canary weight and step, a hash of the applied objects, and a history entry when
//! that hash changes or a command changed only the spec. The phase is the transitions' ([`crate`]); it is corrected
//! here only where the spec contradicts it. Nothing changes when the same state is observed again, so an
//! idempotent reconcile does not write the status either.

use jiff::Timestamp;
use serde_json::Value;
use xxhash_rust::xxh64::xxh64;

use api::{
    Applied, HistoryEntry, StickyCanary, StickyCanaryStatus, ACTION_ANNOTATION, HISTORY_LIMIT,
};

/// A stable hash of the applied objects, as 16 hex digits.
pub fn hash_objects<'a>(objects: impl IntoIterator<Item = &'a Value>) -> String {
    let mut text = String::new();
    for object in objects {
        text.push_str(&object.to_string());
        text.push('\n');
    }
    format!("{:016x}", xxh64(text.as_bytes(), 0))
}

/// The action recorded on the rollout by the last command (empty when none).
pub fn last_action(canary: &StickyCanary) -> &str {
    canary
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(ACTION_ANNOTATION))
        .map_or("", String::as_str)
}

/// The status after applying objects with hash `hash` at `now`, or `None` when the current
/// status already says so.
pub fn observe(canary: &StickyCanary, hash: &str, now: Timestamp) -> Option<StickyCanaryStatus> {
    let spec = &canary.spec;
    let previous = canary.status.clone().unwrap_or_default();
    let generation = canary.metadata.generation;
    let action = last_action(canary);
    let mut next = StickyCanaryStatus {
        phase: crate::phase_for(spec, previous.phase),
        canary_weight: spec.canary().map_or(0.0, |c| c.weight),
        step_index: crate::step_index(spec),
        observed_generation: generation,
        ..previous.clone()
    };
    let same_hash = previous.last_applied.as_ref().map(|a| a.hash.as_str()) == Some(hash);
    if !same_hash || previous.observed_generation != generation {
        next.last_applied = Some(Applied {
            hash: hash.to_owned(),
            generation,
            time: now,
        });
    }
    // A command that changes the spec but no object (auto, pause, resume) is history too:
    // a new generation whose action is not the last one recorded.
    let new_action = previous.observed_generation != generation
        && !action.is_empty()
        && previous.history.last().map(|h| h.action.as_str()) != Some(action);
    if !same_hash || new_action {
        next.history.push(HistoryEntry {
            time: now,
            action: if action.is_empty() {
                "reconcile".to_owned()
            } else {
                action.to_owned()
            },
            versions: spec.summary(),
        });
        let excess = next.history.len().saturating_sub(HISTORY_LIMIT);
        next.history.drain(..excess);
    }
    (next != previous).then_some(next)
}

#[cfg(test)]
mod tests {
    use super::*;
    use api::{Phase, StickyCanarySpec};
    use serde_json::json;

    /// The `n`th second of the tests' clock.
    fn t(n: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + n).unwrap()
    }

    fn canary(action: &str, generation: i64) -> StickyCanary {
        let mut c = StickyCanary::new("shop", StickyCanarySpec::new("shop", "v1"));
        c.metadata.generation = Some(generation);
        c.metadata.annotations = Some([(ACTION_ANNOTATION.to_owned(), action.to_owned())].into());
        c
    }

    #[test]
    fn first_observation_records_and_repeats_do_not() {
        let mut c = canary("init v1", 1);
        let status = observe(&c, "aa", t(1)).unwrap();
        assert_eq!(status.phase, Phase::Stable);
        assert_eq!(status.observed_generation, Some(1));
        assert_eq!(status.history.len(), 1);
        assert_eq!(status.history[0].action, "init v1");
        assert_eq!(status.history[0].versions, "v1=100");
        c.status = Some(status);
        assert_eq!(observe(&c, "aa", t(2)), None);
    }

    #[test]
    fn new_generation_with_same_objects_updates_without_history() {
        let mut c = canary("init v1", 1);
        c.status = observe(&c, "aa", t(1));
        c.metadata.generation = Some(2);
        let status = observe(&c, "aa", t(2)).unwrap();
        assert_eq!(status.observed_generation, Some(2));
        assert_eq!(status.last_applied.unwrap().time, t(2));
        assert_eq!(status.history.len(), 1);
    }

    #[test]
    fn a_command_that_changes_only_the_spec_is_history() {
        let mut c = canary("next 10", 1);
        c.status = observe(&c, "aa", t(1));
        c.metadata.generation = Some(2);
        c.metadata.annotations = Some(
            [(
                ACTION_ANNOTATION.to_owned(),
                "dashboard: auto on".to_owned(),
            )]
            .into(),
        );
        c.status = observe(&c, "aa", t(2));
        let history = &c.status.as_ref().unwrap().history;
        assert_eq!(history.len(), 2);
        assert_eq!(history[1].action, "dashboard: auto on");
        assert_eq!(history[1].time, t(2));
        // A hand edit of the spec (a new generation, the same last action) is not.
        c.metadata.generation = Some(3);
        let status = observe(&c, "aa", t(3)).unwrap();
        assert_eq!(status.history.len(), 2);
    }

    #[test]
    fn history_is_bounded() {
        let mut c = canary("", 1);
        for i in 0..(HISTORY_LIMIT + 5) {
            c.status = observe(&c, &format!("h{i}"), t(i as i64));
        }
        let history = c.status.unwrap().history;
        assert_eq!(history.len(), HISTORY_LIMIT);
        assert_eq!(history[0].time, t(5));
        assert_eq!(history[0].action, "reconcile");
    }

    #[test]
    fn hash_depends_on_content_and_order() {
        let a = json!({"a": 1});
        let b = json!({"b": 2});
        assert_eq!(hash_objects([&a, &b]), hash_objects([&a, &b]));
        assert_ne!(hash_objects([&a, &b]), hash_objects([&b, &a]));
        assert_eq!(hash_objects([&a]).len(), 16);
    }
}
