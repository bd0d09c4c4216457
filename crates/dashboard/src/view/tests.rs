use super::*;
use analysis::{ArmSummary, Check, CheckName, Outcome, Verdict};
use api::{HistoryEntry, StepStatus, StickyCanarySpec, StickyCanaryStatus};
use sticky_canary_filter::VersionWeight;

fn now() -> Timestamp {
    Timestamp::from_second(1_000).unwrap()
}

/// The `n`th second of the tests' clock, before [`now`].
fn at(n: i64) -> Timestamp {
    Timestamp::from_second(n).unwrap()
}

fn rollout_with(versions: &[(&str, f64)], phase: Phase) -> StickyCanary {
    let mut spec = StickyCanarySpec::new("shop.prod.svc.cluster.local", "v1");
    spec.versions = versions
        .iter()
        .map(|&(name, weight)| VersionWeight::new(name, weight))
        .collect();
    let mut canary = StickyCanary::new("shop", spec);
    canary.metadata.namespace = Some("prod".to_owned());
    canary.metadata.generation = Some(7);
    canary.status = Some(StickyCanaryStatus {
        phase,
        ..StickyCanaryStatus::default()
    });
    canary
}

fn verdict(outcome: Outcome, reason: &str) -> Verdict {
    Verdict {
        outcome,
        reason: reason.to_owned(),
        checks: vec![Check {
            name: CheckName::Errors,
            canary: Default::default(),
            stable: Default::default(),
            share: 0.1,
            statistic: 0.5,
            threshold: 4.6,
            outcome,
            reason: "canary 1.0% (1/100) vs stable 1.1% (10/900)".to_owned(),
        }],
        metrics: Vec::new(),
        score: None,
        canary: ArmSummary {
            version: "v2".to_owned(),
            requests: 100,
            errors: 1,
            error_rate: 0.01,
            p99_ms: Some(42.0),
        },
        stable: ArmSummary {
            version: "v1".to_owned(),
            requests: 900,
            errors: 10,
            error_rate: 0.011,
            p99_ms: Some(40.0),
        },
    }
}

/// Versions, phase; then the ratio, the phase in words, its tone, and the states of the
/// seven default steps (`d` done, `C` current, `t` to come), with the canary's own weight
/// as one more entry (`B`, current) when it is between two steps.
type BarCase = (
    &'static [(&'static str, f64)],
    Phase,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
);

#[test]
fn phase_ratio_and_steps_bar() {
    let table: &[BarCase] = &[
        (
            &[("v1", 100.0)],
            Phase::Stable,
            "100:0 (no canary)",
            "Stable",
            "ok",
            "ttttttt",
        ),
        (
            &[("v1", 100.0), ("v2", 0.0)],
            Phase::Progressing,
            "100:0",
            "Progressing",
            "moving",
            "Bttttttt",
        ),
        (
            &[("v1", 90.0), ("v2", 10.0)],
            Phase::Progressing,
            "90:10",
            "Progressing",
            "moving",
            "ddCtttt",
        ),
        (
            &[("v1", 87.5), ("v2", 12.5)],
            Phase::Progressing,
            "87.5:12.5",
            "Progressing",
            "moving",
            "dddBtttt",
        ),
        (
            &[("v1", 0.0), ("v2", 100.0)],
            Phase::Progressing,
            "0:100",
            "Progressing",
            "moving",
            "ddddddC",
        ),
        (
            &[("v2", 100.0)],
            Phase::Promoted,
            "100:0 (no canary)",
            "Promoted",
            "ok",
            "ddddddd",
        ),
        (
            &[("v1", 100.0)],
            Phase::Aborted,
            "100:0 (no canary)",
            "Aborted",
            "bad",
            "ttttttt",
        ),
        (
            &[("v1", 100.0)],
            Phase::RolledBack,
            "100:0 (no canary)",
            "Rolled back",
            "bad",
            "ttttttt",
        ),
    ];
    for (versions, phase, ratio, words, tone, states) in table {
        let view = rollout(&rollout_with(versions, *phase), now());
        assert_eq!(view.ratio, *ratio, "{versions:?}");
        assert_eq!(
            (view.phase.as_str(), view.tone),
            (*words, *tone),
            "{versions:?}"
        );
        let bar: String = view
            .steps
            .iter()
            .map(|s| match (s.state, s.between) {
                ("done", _) => 'd',
                ("current", false) => 'C',
                ("current", true) => 'B',
                _ => 't',
            })
            .collect();
        assert_eq!(bar, *states, "{versions:?} {phase:?}");
        assert_eq!((view.id.as_str(), view.generation), ("prod/shop", 7));
    }
}

#[test]
fn where_the_canary_stands_among_the_steps() {
    let table: [(&[(&str, f64)], &str); 6] = [
        (&[("v1", 90.0), ("v2", 10.0)], "step 3 of 7 (10%)"),
        (
            &[("v1", 70.0), ("v2", 30.0)],
            "30%, between steps 20% and 50%",
        ),
        (
            &[("v1", 100.0), ("v2", 0.0)],
            "0%, before the first step (1%)",
        ),
        (&[("v1", 0.0), ("v2", 100.0)], "step 7 of 7 (100%)"),
        (
            &[("v1", 99.5), ("v2", 0.5)],
            "0.5%, before the first step (1%)",
        ),
        (&[("v1", 100.0)], "no canary"),
    ];
    for (versions, words) in table {
        let view = rollout(&rollout_with(versions, Phase::Progressing), now());
        assert_eq!(view.position, words, "{versions:?}");
    }
    let free = rollout(
        &rollout_with(&[("v1", 70.0), ("v2", 30.0)], Phase::Progressing),
        now(),
    );
    let current: Vec<(f64, bool)> = free
        .steps
        .iter()
        .filter(|s| s.state == "current")
        .map(|s| (s.weight, s.between))
        .collect();
    assert_eq!(current, [(30.0, true)]);
    let order: Vec<f64> = free.steps.iter().map(|s| s.weight).collect();
    assert_eq!(order, [1.0, 5.0, 10.0, 20.0, 30.0, 50.0, 80.0, 100.0]);
}

/// The page enables a button exactly when the view says the action is offered, so each
/// phase's enabled set is checked here (the rule itself: `rollout::offer`).
#[test]
fn each_phase_offers_only_what_the_transition_takes() {
    let mut paused = rollout_with(&[("v1", 70.0), ("v2", 30.0)], Phase::Progressing);
    paused.spec.paused = true;
    let mut promoting = rollout_with(&[("v2", 100.0), ("v1", 0.0)], Phase::Promoting);
    promoting.spec.versions[1].drain = true;
    promoting.spec.retiring = Some("v1".to_owned());
    let table: [(StickyCanary, &[&str]); 5] = [
        (
            rollout_with(&[("v1", 100.0)], Phase::Aborted),
            &["auto-on", "pause", "start"],
        ),
        (
            // At 0% nothing has reached the canary: nothing to promote.
            rollout_with(&[("v1", 100.0), ("v2", 0.0)], Phase::Progressing),
            &["abort", "auto-on", "next", "pause", "set-weight"],
        ),
        (
            paused,
            &[
                "abort",
                "auto-on",
                "next",
                "promote",
                "promote-finish",
                "resume",
                "set-weight",
            ],
        ),
        (
            rollout_with(&[("v1", 0.0), ("v2", 100.0)], Phase::Progressing),
            &[
                "abort",
                "auto-on",
                "pause",
                "promote",
                "promote-finish",
                "set-weight",
            ],
        ),
        (promoting, &["abort", "auto-on", "pause", "promote-finish"]),
    ];
    for (canary, enabled) in table {
        let view = rollout(&canary, now());
        let on: Vec<&str> = view
            .actions
            .iter()
            .filter(|(_, a)| a.enabled)
            .map(|(name, _)| *name)
            .collect();
        assert_eq!(on, enabled, "{}", view.versions);
        for (name, action) in &view.actions {
            assert_eq!(action.enabled, action.why.is_none(), "{name}");
        }
    }
    let aborted = rollout(&rollout_with(&[("v1", 100.0)], Phase::Aborted), now());
    let next = &aborted.actions["next"];
    assert!(
        next.why
            .as_deref()
            .unwrap_or_default()
            .contains("no canary is running"),
        "{next:?}"
    );
}

#[test]
fn history_times_are_utc_to_the_second() {
    let mut c = rollout_with(&[("v1", 90.0), ("v2", 10.0)], Phase::Progressing);
    let time: Timestamp = "2026-12-05T18:14:11.987654321Z".parse().unwrap();
    c.status.as_mut().unwrap().history = vec![HistoryEntry {
        time,
        action: "next 10".to_owned(),
        versions: "v1=90 v2=10".to_owned(),
    }];
    let row = &rollout(&c, now()).history[0];
    assert_eq!(row.when, "2026-12-05 18:14:11 UTC");
    assert_eq!(row.time, time);
}

#[test]
fn health_in_words() {
    let hand = rollout_with(&[("v1", 90.0), ("v2", 10.0)], Phase::Progressing);
    assert_eq!(rollout(&hand, now()).health, "steered by hand");
    let mut auto = hand.clone();
    auto.spec.auto.enabled = true;
    assert_eq!(rollout(&auto, now()).health, "not judged yet");
    let judged = {
        let mut c = auto.clone();
        let status = c.status.as_mut().unwrap();
        status.step = Some(StepStatus {
            weight: 10.0,
            started: now(),
            waiting: None,
            evidence: None,
            verdict: Some(verdict(
                Outcome::Inconclusive,
                "too few canary requests (100 of 400)",
            )),
        });
        c
    };
    let view = rollout(&judged, now());
    assert_eq!(
        view.health,
        "Inconclusive: too few canary requests (100 of 400)"
    );
    let shown = view.verdict.unwrap();
    assert_eq!(shown.step, "step 10% (current)");
    assert_eq!(shown.outcome, "Inconclusive");
    assert!(
        shown.line.contains("canary v2 100 req 1.0% 5xx p99 42 ms"),
        "{}",
        shown.line
    );
    assert_eq!(shown.checks[0].0, "errors");
    assert!(shown.checks[0].2.contains("(1/100)"));
    let mut rolled_back = rollout_with(&[("v1", 100.0)], Phase::RolledBack);
    rolled_back.status.as_mut().unwrap().message =
        Some("rolled back: canary errors 9.0% vs 1.0%".to_owned());
    assert_eq!(
        rollout(&rolled_back, now()).health,
        "rolled back: canary errors 9.0% vs 1.0%"
    );
    let stable = rollout_with(&[("v1", 100.0)], Phase::Stable);
    assert_eq!(rollout(&stable, now()).health, "no canary");
}

#[test]
fn an_unjudged_step_shows_the_verdict_the_last_step_ended_with() {
    let mut c = rollout_with(&[("v1", 50.0), ("v2", 50.0)], Phase::Progressing);
    c.status.as_mut().unwrap().verdicts = vec![api::StepVerdict {
        weight: 5.0,
        started: at(0),
        judged: at(1),
        verdict: verdict(Outcome::Pass, "the canary is no worse"),
    }];
    let shown = rollout(&c, now()).verdict.unwrap();
    assert_eq!(
        (shown.step.as_str(), shown.outcome.as_str()),
        ("step 5% (ended)", "Pass")
    );
    assert_eq!(
        rollout(&rollout_with(&[("v1", 100.0)], Phase::Stable), now()).verdict,
        None
    );
}

#[test]
fn history_newest_first_with_who_did_it() {
    let mut c = rollout_with(&[("v1", 90.0), ("v2", 10.0)], Phase::Progressing);
    c.status.as_mut().unwrap().history = ["init v1", "start v2", "dashboard: next 10"]
        .iter()
        .enumerate()
        .map(|(i, action)| HistoryEntry {
            time: at(i as i64),
            action: (*action).to_owned(),
            versions: "v1=90 v2=10".to_owned(),
        })
        .collect();
    let history = rollout(&c, now()).history;
    assert_eq!(history[0].action, "dashboard: next 10");
    assert_eq!(history[2].time, at(0));
}

#[test]
fn no_secret_reaches_the_page() {
    let mut c = rollout_with(&[("v1", 90.0), ("v2", 10.0)], Phase::Progressing);
    c.spec.filter.override_.token = Some("qa-secret-token".to_owned());
    c.spec.auto.webhook = Some("https://hooks.example/T000/secret-path".to_owned());
    let json = serde_json::to_string(&list(&[c], now())).unwrap();
    assert!(!json.contains("qa-secret-token"), "{json}");
    assert!(!json.contains("secret-path"), "{json}");
}

#[test]
fn search_matches_id_service_versions_phase_and_health() {
    let shop = rollout_with(&[("v1", 90.0), ("v2", 10.0)], Phase::Progressing);
    let mut cart = rollout_with(&[("c7", 100.0)], Phase::RolledBack);
    cart.metadata.name = Some("cart".to_owned());
    cart.spec.service = "cart.prod.svc.cluster.local".to_owned();
    let all = [shop, cart];
    let ids = |query: &str| -> Vec<String> {
        list(&all, now())
            .into_iter()
            .filter(|v| v.matches(query))
            .map(|v| v.id)
            .collect()
    };
    assert_eq!(ids(""), ["prod/cart", "prod/shop"]);
    assert_eq!(ids("SHOP"), ["prod/shop"]);
    assert_eq!(ids("c7"), ["prod/cart"]);
    assert_eq!(ids("rolled back"), ["prod/cart"]);
    assert_eq!(ids(" cart.prod "), ["prod/cart"]);
    assert_eq!(ids("by hand"), ["prod/shop"]);
    assert!(ids("nothing").is_empty());
}

/// A rollout stored by hand (kubectl, an edited file) may hold anything its types take: no
/// version, no step, absurd weights and steps, a step started at the end of time. Its view is
/// words, never a panic (the dashboard's process would abort).
#[test]
fn rollouts_stored_by_hand_show_without_a_panic() {
    let weights: [&[(&str, f64)]; 5] = [
        &[],
        &[("v1", f64::MAX)],
        &[("v1", -1.0), ("v2", 1e308)],
        &[("v1", 100.0), ("v2", 0.0), ("v3", 5.0)],
        &[("<img src=x>", 99.999), ("\u{202e}", 0.001)],
    ];
    for versions in weights {
        for steps in [vec![], vec![f64::MAX, -1.0, 1e-300], vec![5.0, 5.0, 100.0]] {
            let mut canary = rollout_with(versions, Phase::Progressing);
            canary.spec.steps = steps;
            canary.spec.auto.enabled = true;
            canary.spec.auto.interval_seconds = u32::MAX;
            canary.metadata.generation = Some(i64::MIN);
            canary.status = Some(StickyCanaryStatus {
                step: Some(StepStatus {
                    weight: f64::MIN_POSITIVE,
                    started: Timestamp::MAX,
                    waiting: None,
                    evidence: None,
                    verdict: None,
                }),
                ..StickyCanaryStatus::default()
            });
            for now in [now(), Timestamp::MIN, Timestamp::MAX] {
                let view = rollout(&canary, now);
                assert!(!view.auto.is_empty());
            }
        }
    }
}
