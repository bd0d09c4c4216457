//! Faults a test injects on demand, the ones Sieve injects into controllers (Sun et al.,
//! OSDI '22): watch events that never arrive (missed events), arrive late, or arrive after
//! later ones (reordered), and lists that answer from an old snapshot (stale reads). Plus the
//! audit that tells whether a client ever wrote from a stale read: every write is recorded
//! with the resourceVersion it was conditioned on and the one it found.
//!
//! A fault is decided once per stored change, when it happens, so every watch that sees a
//! change treats it the same way: a dropped MODIFIED is dropped for all of them. Only live
//! events are faulted; a watch resumed from a resourceVersion replays the retained history as
//! it is (a reconnect recovers what a flaky stream lost, as with a real server).

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;

use super::store::{Event, ObjectKey};

/// What happens to one watch event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// Delivered at once.
    Deliver,
    /// Never delivered on the live stream.
    Drop,
    /// Delivered after this long; later events delivered meanwhile overtake it (reordering).
    Delay(Duration),
}

/// Which events a [`WatchFault`] hits.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventMatch {
    /// Plural of the resource (`virtualservices`), any when `None`.
    pub plural: Option<String>,
    /// Object name, any when `None`.
    pub name: Option<String>,
}

impl EventMatch {
    /// Every event of `plural`.
    pub fn plural(plural: &str) -> Self {
        EventMatch {
            plural: Some(plural.to_owned()),
            name: None,
        }
    }

    /// The events of object `name` of `plural`.
    pub fn object(plural: &str, name: &str) -> Self {
        EventMatch {
            plural: Some(plural.to_owned()),
            name: Some(name.to_owned()),
        }
    }

    fn matches(&self, key: &ObjectKey) -> bool {
        self.plural.as_ref().is_none_or(|p| *p == key.plural)
            && self.name.as_ref().is_none_or(|n| *n == key.name)
    }
}

/// One injected fault: the next `times` events that match get `fate`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchFault {
    /// Which events.
    pub matching: EventMatch,
    /// What happens to them.
    pub fate: Fate,
    /// How many more events it hits.
    pub times: usize,
}

/// A random mix of faults over every event, reproducible from its seed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chaos {
    /// Seed of the choices (the same seed and changes give the same fates).
    pub seed: u64,
    /// Per cent of events dropped.
    pub drop_percent: u8,
    /// Per cent of events delayed (between 0 and `max_delay`), so reordered.
    pub delay_percent: u8,
    /// Longest delay.
    pub max_delay: Duration,
}

/// Which lists a stale cache answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StaleLists {
    /// Only lists at resourceVersion `0`, which a real server may answer from its watch cache
    /// (kube-rs watchers list so with `ListSemantic::Any`; their default is a quorum read).
    Cached,
    /// Every list, quorum reads included: a broken or partitioned cache, harsher than any
    /// real server, so that a client's every list can be stale.
    Every,
}

/// A frozen copy of the objects, answering lists while stale reads are on.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// The objects as they were.
    pub objects: BTreeMap<ObjectKey, Value>,
    /// The resourceVersion they were at.
    pub resource_version: u64,
}

/// One write as the server saw it, for the stale-write audit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditedWrite {
    /// `PUT`, `PATCH` (with its content type), `DELETE`, `POST`.
    pub operation: String,
    /// The object.
    pub key: ObjectKey,
    /// The resourceVersion the write was conditioned on (the body's, a JSON patch's `test` of
    /// `/metadata/resourceVersion`, or a delete's precondition), if any.
    pub precondition: Option<String>,
    /// The write carries another guard: a JSON patch with `test` operations (how kube-rs adds
    /// and removes finalizers), or a create (refused when the object exists).
    pub guarded: bool,
    /// The object's resourceVersion when the write arrived, `None` when it did not exist.
    pub found: Option<String>,
    /// The answer's status code.
    pub status: u16,
    /// A server-side dry run: checked like the write, nothing changed.
    pub dry_run: bool,
}

impl AuditedWrite {
    /// A write that changed an existing object without any condition: it could have replaced
    /// a newer object than the one its author read.
    pub fn unconditional_overwrite(&self) -> bool {
        !self.dry_run
            && self.status < 300
            && self.found.is_some()
            && self.precondition.is_none()
            && !self.guarded
    }

    /// A write conditioned on a resourceVersion that was no longer current (a stale read).
    pub fn stale(&self) -> bool {
        matches!((&self.precondition, &self.found), (Some(p), Some(f)) if p != f)
    }

    /// A write from a stale read that the server accepted: what must never happen.
    pub fn accepted_stale(&self) -> bool {
        !self.dry_run && self.stale() && self.status < 300
    }
}

/// The faults in force and the decisions taken.
#[derive(Debug)]
pub struct Faults {
    /// Bumped to end every open watch with a 410 Expired (the clients re-list).
    pub expire: tokio::sync::watch::Sender<u64>,
    rules: Vec<WatchFault>,
    chaos: Option<Chaos>,
    /// Events dropped, delayed, by resourceVersion order of decision.
    dropped: Vec<u64>,
    delayed: Vec<u64>,
    /// Lists answer from this while set.
    pub stale: Option<(Snapshot, StaleLists)>,
    /// The plural of every list answered from the snapshot.
    pub stale_lists_served: Vec<String>,
    /// Every write, in order.
    pub audit: Vec<AuditedWrite>,
}

/// splitmix64: a good enough, dependency-free hash for reproducible choices.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

impl Default for Faults {
    fn default() -> Self {
        Faults {
            expire: tokio::sync::watch::channel(0).0,
            rules: Vec::new(),
            chaos: None,
            dropped: Vec::new(),
            delayed: Vec::new(),
            stale: None,
            stale_lists_served: Vec::new(),
            audit: Vec::new(),
        }
    }
}

impl Faults {
    /// Adds a fault for the next matching events.
    pub fn add(&mut self, fault: WatchFault) {
        self.rules.push(fault);
    }

    /// Sets (or clears) the random mix.
    pub fn set_chaos(&mut self, chaos: Option<Chaos>) {
        self.chaos = chaos;
    }

    /// Removes every watch fault not yet used, and the random mix; decisions taken stay.
    pub fn clear_watch_faults(&mut self) {
        self.rules.clear();
        self.chaos = None;
    }

    /// The fate of `event`, decided when it is recorded, the same for every watch.
    pub fn fate(&mut self, event: &Event) -> Fate {
        let fate = self.decide(event);
        match fate {
            Fate::Drop => self.dropped.push(event.resource_version),
            Fate::Delay(_) => self.delayed.push(event.resource_version),
            Fate::Deliver => {}
        }
        fate
    }

    fn decide(&mut self, event: &Event) -> Fate {
        if let Some(rule) = self
            .rules
            .iter_mut()
            .find(|r| r.times > 0 && r.matching.matches(&event.key))
        {
            rule.times -= 1;
            return rule.fate;
        }
        let Some(chaos) = self.chaos else {
            return Fate::Deliver;
        };
        let roll = mix(chaos.seed ^ mix(event.resource_version));
        let percent = (roll % 100) as u8;
        if percent < chaos.drop_percent {
            Fate::Drop
        } else if percent < chaos.drop_percent.saturating_add(chaos.delay_percent) {
            let max = u64::try_from(chaos.max_delay.as_millis())
                .unwrap_or(u64::MAX)
                .max(1);
            Fate::Delay(Duration::from_millis((roll >> 8) % max + 1))
        } else {
            Fate::Deliver
        }
    }

    /// resourceVersions of the events dropped so far.
    pub fn dropped(&self) -> &[u64] {
        &self.dropped
    }

    /// resourceVersions of the events delayed so far.
    pub fn delayed(&self) -> &[u64] {
        &self.delayed
    }
}
