//! What the dashboard shows of a rollout, pure: the rollout and the time in, a view the page
//! renders as it is (words, numbers, the steps bar) out. The page adds no rule of its own.

use std::collections::BTreeMap;

use jiff::Timestamp;
use serde::Serialize;

use analysis::Outcome;
use api::{Phase, StickyCanary, StickyCanarySpec};
use render::exposure;

use rollout::{self, describe};

/// One rollout as the list and its page show it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RolloutView {
    /// How the dashboard names it in URLs: `namespace/name`, or the name alone.
    pub id: String,
    /// The service's host.
    pub service: String,
    /// The phase in words (`Progressing`, `Rolled back`...), never only a colour.
    pub phase: String,
    /// A CSS class for the phase's colour: `ok`, `moving`, `bad`.
    pub tone: &'static str,
    /// `stable:canary` in percent, e.g. `90:10`; `100:0 (no canary)` without a live canary
    /// (before the first, after an abort or a promotion).
    pub ratio: String,
    /// The versions and their weights, e.g. `v1=90 v2=10`.
    pub versions: String,
    /// The stable version's name.
    pub stable: String,
    /// The canary's name, if one is live.
    pub canary: Option<String>,
    /// How QA reaches the canary: the override header in its tokened form (never the token).
    pub qa: String,
    /// Health in words: the current verdict, the message, or what the rollout waits for.
    pub health: String,
    /// Automatic progression in words (`off`, `on, step 10%: 42s left`).
    pub auto: String,
    /// Whether automatic progression is on.
    pub auto_on: bool,
    /// Whether it is paused.
    pub paused: bool,
    /// The steps, each done, current or to come; a weight between two steps (set freely)
    /// is an entry of its own, current, where it stands.
    pub steps: Vec<StepView>,
    /// Where the canary stands among the steps, in words: `step 3 of 7 (10%)`,
    /// `30%, between steps 20% and 50%`.
    pub position: String,
    /// Every action by its name (`next`, `set-weight`...): whether the transition would take
    /// it now ([`rollout::offer`]), so the page offers exactly what the CLI would do.
    pub actions: BTreeMap<&'static str, ActionView>,
    /// The current step's verdict, with its numbers and reasons.
    pub verdict: Option<VerdictView>,
    /// Applied changes, newest first.
    pub history: Vec<HistoryRow>,
    /// The spec generation shown, which an action sends back so a change since is refused.
    pub generation: i64,
    /// What the list's search box matches, lowercase: id, service, versions, phase, health.
    pub search: String,
}

/// One step of the bar.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StepView {
    /// The canary weight of the step, in percent.
    pub weight: f64,
    /// `done`, `current` or `todo`.
    pub state: &'static str,
    /// Whether this is the canary's weight between two steps rather than a step (not a
    /// choice of the steps' list).
    pub between: bool,
}

/// Whether an action is offered now.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ActionView {
    /// Whether the transition would take it.
    pub enabled: bool,
    /// Why not, in the CLI's words, when it would not.
    pub why: Option<String>,
}

/// A verdict in words and numbers.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VerdictView {
    /// Which step it judged: `step 10% (current)`, or `step 5% (ended)` while the current
    /// step has no verdict yet.
    pub step: String,
    /// `Pass`, `Fail` or `Inconclusive`.
    pub outcome: String,
    /// Why, in words.
    pub reason: String,
    /// Each version's requests, error rate and p99, and the statistics ([`Verdict::line`]).
    ///
    /// [`Verdict::line`]: analysis::verdict::Verdict::line
    pub line: String,
    /// Every check, then every metric of `spec.analysis.metrics`: its name, outcome and
    /// reason.
    pub checks: Vec<(String, String, String)>,
}

/// One history entry.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HistoryRow {
    /// When (RFC 3339).
    pub time: Timestamp,
    /// When, as the page shows it: UTC to the second ([`when`]), as its header.
    pub when: String,
    /// What and by whom, e.g. `dashboard: next 10`.
    pub action: String,
    /// The versions after it.
    pub versions: String,
}

/// How the dashboard names `canary`: its notices' label, which
/// [`runtime::target::place::Place::open_label`] opens again.
pub fn id(canary: &StickyCanary) -> String {
    runtime::notify::label(canary)
}

/// The view of `canary` at `now`.
pub fn rollout(canary: &StickyCanary, now: Timestamp) -> RolloutView {
    let spec = &canary.spec;
    let status = canary.status.clone().unwrap_or_default();
    let phase = rollout::phase_for(spec, status.phase);
    let canary_version = spec.canary();
    let stable = spec.stable().map(|v| v.name.clone()).unwrap_or_default();
    let ratio = match (spec.stable(), canary_version) {
        (Some(s), Some(c)) => format!("{}:{}", s.weight, c.weight),
        (Some(s), None) => format!("{}:0 (no canary)", s.weight),
        _ => "-".to_owned(),
    };
    let verdict = status.step.as_ref().and_then(|s| s.verdict.as_ref());
    let health = match (verdict, &status.message) {
        (_, Some(message)) => message.clone(),
        (Some(v), None) => format!("{}: {}", outcome(v.outcome), v.reason),
        (None, None) if canary_version.is_none() => "no canary".to_owned(),
        (None, None) if spec.auto.enabled => "not judged yet".to_owned(),
        (None, None) => "steered by hand".to_owned(),
    };
    let current = rollout::step_index(spec).map(|i| i as usize);
    let weight = canary_version.map_or(0.0, |c| c.weight);
    let mut steps: Vec<StepView> = spec
        .steps
        .iter()
        .enumerate()
        .map(|(i, &w)| StepView {
            weight: w,
            state: match current {
                Some(c) if i == c => "current",
                _ if canary_version.is_some() && w < weight => "done",
                _ if phase == Phase::Promoted || phase == Phase::Promoting => "done",
                _ => "todo",
            },
            between: false,
        })
        .collect();
    let position = position(spec, current);
    if let (Some(_), None) = (canary_version, current) {
        let at = steps.iter().position(|s| s.weight > weight);
        steps.insert(
            at.unwrap_or(steps.len()),
            StepView {
                weight,
                state: "current",
                between: true,
            },
        );
    }
    RolloutView {
        id: id(canary),
        service: spec.service.clone(),
        phase: phase_words(phase).to_owned(),
        tone: tone(phase),
        ratio,
        versions: spec.summary(),
        stable,
        canary: canary_version.map(|c| c.name.clone()),
        qa: exposure::qa_line(spec, canary_version.map(|c| c.name.as_str())),
        health,
        auto: describe::progression(spec, &status, now),
        auto_on: spec.auto.enabled,
        paused: spec.paused,
        steps,
        position,
        actions: rollout::offer::offers(spec, &status, now)
            .into_iter()
            .map(|offer| {
                let view = ActionView {
                    enabled: offer.refusal.is_none(),
                    why: offer.refusal,
                };
                (offer.action.name(), view)
            })
            .collect(),
        verdict: match (verdict, status.verdicts.last()) {
            (Some(v), _) => Some(verdict_view(v, format!("step {weight}% (current)"))),
            (None, Some(ended)) => Some(verdict_view(
                &ended.verdict,
                format!("step {}% (ended)", ended.weight),
            )),
            (None, None) => None,
        },
        history: status
            .history
            .iter()
            .rev()
            .map(|h| HistoryRow {
                time: h.time,
                when: when(h.time),
                action: h.action.clone(),
                versions: h.versions.clone(),
            })
            .collect(),
        generation: canary.metadata.generation.unwrap_or_default(),
        search: String::new(),
    }
    .searchable()
}

impl RolloutView {
    fn searchable(mut self) -> Self {
        self.search = [
            &self.id,
            &self.service,
            &self.versions,
            &self.phase,
            &self.health,
        ]
        .map(|field| field.to_lowercase())
        .join(" ");
        self
    }

    /// Whether the search box's `query` matches (case-insensitive; empty matches all).
    pub fn matches(&self, query: &str) -> bool {
        self.search.contains(&query.trim().to_lowercase())
    }
}

/// Where the canary stands among `spec`'s steps (`current`: the index of the step it is on).
fn position(spec: &StickyCanarySpec, current: Option<usize>) -> String {
    let Some(canary) = spec.canary() else {
        return "no canary".to_owned();
    };
    let weight = canary.weight;
    let count = spec.steps.len();
    if let Some(i) = current {
        return format!("step {} of {count} ({weight}%)", i + 1);
    }
    let below = spec.steps.iter().rev().find(|&&s| s < weight);
    let above = spec.steps.iter().find(|&&s| s > weight);
    match (below, above) {
        (Some(b), Some(a)) => format!("{weight}%, between steps {b}% and {a}%"),
        (None, Some(a)) => format!("{weight}%, before the first step ({a}%)"),
        (Some(b), None) => format!("{weight}%, past the last step ({b}%)"),
        (None, None) => format!("{weight}%, no steps"),
    }
}

/// A time as the page shows every time: UTC, to the second (`2026-12-05 18:14:11 UTC`).
pub fn when(time: Timestamp) -> String {
    time.strftime("%Y-%m-%d %H:%M:%S UTC").to_string()
}

fn verdict_view(v: &analysis::Verdict, step: String) -> VerdictView {
    VerdictView {
        step,
        outcome: outcome(v.outcome).to_owned(),
        reason: v.reason.clone(),
        line: v.line(),
        checks: v
            .checks
            .iter()
            .map(|c| {
                (
                    c.name.to_string(),
                    outcome(c.outcome).to_owned(),
                    c.reason.clone(),
                )
            })
            .chain(v.metrics.iter().map(|m| {
                (
                    m.name.clone(),
                    outcome(m.outcome).to_owned(),
                    m.reason.clone(),
                )
            }))
            .collect(),
    }
}

/// A phase in words.
pub fn phase_words(phase: Phase) -> &'static str {
    match phase {
        Phase::Stable => "Stable",
        Phase::Progressing => "Progressing",
        Phase::Promoting => "Promoting",
        Phase::Promoted => "Promoted",
        Phase::Aborting => "Aborting",
        Phase::Aborted => "Aborted",
        Phase::RolledBack => "Rolled back",
    }
}

fn tone(phase: Phase) -> &'static str {
    match phase {
        Phase::Stable | Phase::Promoted => "ok",
        Phase::Progressing | Phase::Promoting => "moving",
        Phase::Aborting | Phase::Aborted | Phase::RolledBack => "bad",
    }
}

fn outcome(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Pass => "Pass",
        Outcome::Fail => "Fail",
        Outcome::Inconclusive => "Inconclusive",
    }
}

/// The views of `rollouts`, sorted by id.
pub fn list(rollouts: &[StickyCanary], now: Timestamp) -> Vec<RolloutView> {
    let mut views: Vec<RolloutView> = rollouts.iter().map(|c| rollout(c, now)).collect();
    views.sort_by(|a, b| a.id.cmp(&b.id));
    views
}

#[cfg(test)]
mod tests;
