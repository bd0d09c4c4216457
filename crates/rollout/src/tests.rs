use super::*;
use sticky_canary_filter::VersionWeight;

fn at(seconds: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + seconds).unwrap()
}

fn spec(versions: &[(&str, f64)]) -> StickyCanarySpec {
    let mut spec = StickyCanarySpec::new("shop", versions[0].0);
    spec.versions = versions
        .iter()
        .map(|&(name, weight)| VersionWeight::new(name, weight))
        .collect();
    spec
}

fn command(
    spec: &StickyCanarySpec,
    status: &StickyCanaryStatus,
    command: Command,
    now: Timestamp,
) -> Transition {
    transition(spec, status, &Input::Command(command), now).expect("accepted")
}

/// Runs `commands` from a stable rollout, each on the state the one before left.
fn after(commands: &[Command]) -> (StickyCanarySpec, StickyCanaryStatus) {
    let mut state = (spec(&[("v1", 100.0)]), StickyCanaryStatus::default());
    for (i, c) in commands.iter().enumerate() {
        loop {
            let t = command(&state.0, &state.1, c.clone(), at(i as i64));
            state.0 = t.spec.unwrap_or(state.0);
            state.1 = t.status.unwrap_or(state.1);
            if !t.again {
                break;
            }
        }
    }
    state
}

fn op(op: Op) -> Command {
    Command::Op(op)
}

fn start() -> Command {
    op(Op::Start {
        canary: "v2".into(),
    })
}

#[test]
fn commands_set_the_phase_in_the_status() {
    let cases: Vec<(&str, Vec<Command>, Phase)> = vec![
        ("nothing yet", vec![], Phase::Stable),
        ("start", vec![start()], Phase::Progressing),
        (
            "weight",
            vec![start(), op(Op::SetWeight(10.0))],
            Phase::Progressing,
        ),
        (
            "promote drains",
            vec![
                start(),
                op(Op::SetWeight(10.0)),
                op(Op::Promote { finish: false }),
            ],
            Phase::Promoting,
        ),
        (
            "promote --finish",
            vec![
                start(),
                op(Op::SetWeight(10.0)),
                op(Op::Promote { finish: true }),
            ],
            Phase::Promoted,
        ),
        (
            "abort runs both halves",
            vec![start(), op(Op::SetWeight(10.0)), op(Op::Abort)],
            Phase::Aborted,
        ),
        (
            "a new canary after an abort",
            vec![start(), op(Op::Abort), start()],
            Phase::Progressing,
        ),
    ];
    for (name, commands, phase) in cases {
        let (spec, status) = after(&commands);
        assert_eq!(status.phase, phase, "{name}");
        assert_eq!(phase_for(&spec, status.phase), phase, "{name}");
    }
}

#[test]
fn abort_and_finish_ask_to_run_again_after_the_switch() {
    let (s, status) = after(&[start(), op(Op::SetWeight(10.0))]);
    let first = command(&s, &status, op(Op::Abort), at(9));
    assert!(first.again);
    assert_eq!(first.status.as_ref().unwrap().phase, Phase::Aborting);
    let s = first.spec.unwrap();
    let second = command(&s, &first.status.unwrap(), op(Op::Abort), at(9));
    assert!(!second.again);
    assert_eq!(second.action.as_deref(), Some("abort: remove v2"));
    let plain = command(
        &s,
        &StickyCanaryStatus::default(),
        op(Op::Promote { finish: false }),
        at(9),
    );
    assert!(
        !plain.again,
        "promote stops after the switch while the old version drains"
    );
}

#[test]
fn weight_changes_start_a_step() {
    let (s, status) = after(&[start(), op(Op::SetWeight(10.0))]);
    let step = status.step.clone().expect("a step");
    assert_eq!((step.weight, step.started), (10.0, at(1)));
    assert_eq!(step.waiting, None);
    let t = command(&s, &status, op(Op::Next), at(5));
    let step = t.status.unwrap().step.unwrap();
    assert_eq!((step.weight, step.started), (20.0, at(5)));
    let t = command(&s, &status, op(Op::Promote { finish: false }), at(5));
    assert_eq!(t.status.unwrap().step, None, "promotion ends the steps");
}

#[test]
fn auto_pause_and_resume_are_spec_changes_with_history() {
    let (s, status) = after(&[start(), op(Op::SetWeight(5.0))]);
    let on = command(&s, &status, Command::Auto(true), at(3));
    let s_on = on.spec.clone().unwrap();
    assert!(s_on.auto.enabled);
    assert_eq!(on.action.as_deref(), Some("auto on"));
    assert_eq!(on.notices, ["auto on"]);
    assert_eq!(
        command(&s_on, &status, Command::Auto(true), at(4)),
        Transition::default()
    );
    let paused = command(&s_on, &status, Command::Pause, at(10));
    let (s_paused, st_paused) = (paused.spec.unwrap(), paused.status.unwrap());
    assert!(s_paused.paused);
    assert_eq!(
        st_paused.step.as_ref().unwrap().waiting,
        Some(Waiting::Resume)
    );
    assert_eq!(
        command(&s_paused, &st_paused, Command::Pause, at(11)),
        Transition::default()
    );
    let resumed = command(&s_paused, &st_paused, Command::Resume, at(70));
    let step = resumed.status.unwrap().step.unwrap();
    assert_eq!(step.waiting, None);
    assert_eq!(step.started, at(70), "the held step's interval starts over");
    assert!(!resumed.spec.unwrap().paused);
}

#[test]
fn refusals_come_before_any_write() {
    let (s, status) = after(&[]);
    let err = transition(&s, &status, &Input::Command(op(Op::Next)), at(0)).unwrap_err();
    assert!(err.to_string().contains("no canary is running"), "{err}");
    let mut bad = s.clone();
    bad.steps = vec![5.0, 1.0];
    let err = transition(&bad, &status, &Input::Command(Command::Pause), at(0)).unwrap_err();
    assert!(err.to_string().contains("spec.steps[1]"), "{err}");
}

#[test]
fn phase_follows_the_spec_where_the_status_contradicts_it() {
    let canary = spec(&[("v1", 90.0), ("v2", 10.0)]);
    let single = spec(&[("v1", 100.0)]);
    let mut promoting = spec(&[("v2", 100.0), ("v1", 0.0)]);
    promoting.retiring = Some("v1".into());
    promoting.versions[1].drain = true;
    let mut aborting = spec(&[("v1", 100.0), ("v2", 0.0)]);
    aborting.retiring = Some("v2".into());
    let cases = [
        (&canary, Phase::Stable, Phase::Progressing),
        (&canary, Phase::Progressing, Phase::Progressing),
        (&single, Phase::Progressing, Phase::Stable),
        (&single, Phase::Aborted, Phase::Aborted),
        (&single, Phase::RolledBack, Phase::RolledBack),
        (&promoting, Phase::Progressing, Phase::Promoting),
        (&aborting, Phase::Progressing, Phase::Aborting),
        (&aborting, Phase::RolledBack, Phase::RolledBack),
        (&aborting, Phase::Promoting, Phase::Promoting),
    ];
    for (s, recorded, expected) in cases {
        assert_eq!(
            phase_for(s, recorded),
            expected,
            "{} recorded {recorded:?}",
            s.summary()
        );
    }
}

mod looks {
    use super::*;
    use analysis::VersionSample;
    use analysis::{Outcome, Snapshot};
    use api::{OnInconclusive, Promotion};

    /// Cumulative counters of both versions, as Prometheus would return them.
    struct World {
        second: i64,
        /// (requests, errors, hash decisions) of stable and canary.
        stable: (u64, u64, u64),
        canary: (u64, u64, u64),
        /// The canary weight the proxy runs with, as its gauges report it.
        weight: f64,
    }

    impl World {
        fn new() -> World {
            World {
                second: 0,
                stable: (0, 0, 0),
                canary: (0, 0, 0),
                weight: 0.0,
            }
        }

        /// `seconds` of `rps` requests per second at canary `weight`, the canary failing
        /// `canary_errors` of its requests; a tenth of the requests are new clients.
        fn run(&mut self, seconds: i64, rps: u64, weight: f64, canary_errors: f64) {
            self.second += seconds;
            self.weight = weight;
            let total = rps * seconds as u64;
            let canary = (total as f64 * weight / 100.0).round() as u64;
            let stable = total - canary;
            self.canary.0 += canary;
            self.canary.1 += (canary as f64 * canary_errors).round() as u64;
            self.canary.2 += canary / 10;
            self.stable.0 += stable;
            self.stable.2 += stable / 10;
        }

        fn snapshot(&self) -> Snapshot {
            let buckets = |(requests, ..): (u64, u64, u64)| {
                vec![
                    (10.0, requests * 9 / 10),
                    (100.0, requests),
                    (f64::INFINITY, requests),
                ]
            };
            let arm = |name: &str, c: (u64, u64, u64)| {
                VersionSample::from_totals(name, c.0, c.1, &buckets(c), c.2)
            };
            Snapshot::new(
                at(self.second),
                arm("v1", self.stable),
                arm("v2", self.canary),
            )
            .with_applied("proxy", self.weight)
        }
    }

    fn auto_spec(steps: &[f64]) -> StickyCanarySpec {
        let mut s = spec(&[("v1", 100.0 - steps[0]), ("v2", steps[0])]);
        s.steps = steps.to_vec();
        s.auto.enabled = true;
        s.auto.interval_seconds = 60;
        s
    }

    /// A rollout at its first step, as `set-weight` leaves it.
    fn started(spec: &StickyCanarySpec) -> StickyCanaryStatus {
        StickyCanaryStatus {
            phase: Phase::Progressing,
            step: Some(new_step(spec, at(0))),
            ..StickyCanaryStatus::default()
        }
    }

    /// Applies one look (and the run again it may ask for) to the state.
    fn look(
        state: &mut (StickyCanarySpec, StickyCanaryStatus),
        seen: &Result<Snapshot, LookError>,
        now: Timestamp,
    ) -> Vec<String> {
        let mut notices = Vec::new();
        for _ in 0..3 {
            let t = transition(
                &state.0,
                &state.1,
                &Input::Look(Box::new(seen.clone())),
                now,
            )
            .unwrap();
            notices.extend(t.notices.clone());
            state.0 = t.spec.unwrap_or(state.0.clone());
            state.1 = t.status.unwrap_or(state.1.clone());
            if !t.again {
                break;
            }
        }
        notices
    }

    /// Looks every 10 s for at most `seconds`, traffic flowing at the spec's weight; stops
    /// at the first look after which `done` holds.
    fn drive(
        state: &mut (StickyCanarySpec, StickyCanaryStatus),
        world: &mut World,
        seconds: i64,
        rps: u64,
        canary_errors: f64,
        done: impl Fn(&(StickyCanarySpec, StickyCanaryStatus)) -> bool,
    ) -> Vec<String> {
        let mut notices = Vec::new();
        while world.second < seconds {
            let weight = state.0.canary().map_or(0.0, |c| c.weight);
            world.run(10, rps, weight, canary_errors);
            notices.extend(look(state, &Ok(world.snapshot()), at(world.second)));
            if done(state) {
                break;
            }
        }
        notices
    }

    #[test]
    fn a_healthy_canary_walks_every_step_and_is_promoted() {
        let mut s = auto_spec(&[10.0, 50.0, 100.0]);
        s.auto.promotion = Promotion::Auto;
        let mut state = (s.clone(), started(&s));
        let mut world = World::new();
        let notices = drive(&mut state, &mut world, 3600, 100, 0.0, |s| {
            s.1.phase == Phase::Promoted
        });
        assert_eq!(state.1.phase, Phase::Promoted, "{:#?}", state.1);
        assert_eq!(state.0.summary(), "v2=100");
        let judged: Vec<(f64, Outcome)> = state
            .1
            .verdicts
            .iter()
            .map(|v| (v.weight, v.verdict.outcome))
            .collect();
        assert_eq!(
            judged,
            [
                (10.0, Outcome::Pass),
                (50.0, Outcome::Pass),
                (100.0, Outcome::Pass)
            ]
        );
        assert!(
            notices
                .iter()
                .any(|n| n.contains("step 10% passed (score 100: ")),
            "{notices:?}"
        );
        assert!(
            notices.iter().any(|n| n.starts_with("promote: remove v1")),
            "{notices:?}"
        );
        // Each step held at least its interval.
        assert!(world.second >= 3 * 60, "{}", world.second);
    }

    #[test]
    fn a_failing_canary_is_rolled_back_within_two_intervals_saying_why() {
        let s = auto_spec(&[5.0, 50.0, 100.0]);
        let mut state = (s.clone(), started(&s));
        let mut world = World::new();
        let notices = drive(&mut state, &mut world, 3600, 400, 0.05, |s| {
            s.1.phase == Phase::RolledBack
        });
        assert_eq!(state.1.phase, Phase::RolledBack);
        assert!(world.second <= 120, "caught after {} s", world.second);
        assert_eq!(state.0.summary(), "v1=100", "the canary is removed at once");
        let message = state.1.message.clone().unwrap();
        assert!(message.starts_with("rolled back at 5%: "), "{message}");
        assert!(message.contains("5xx"), "{message}");
        let last = state.1.verdicts.last().unwrap();
        assert_eq!(last.verdict.outcome, Outcome::Fail);
        assert!(
            notices.iter().any(|n| n.contains("rolled back")),
            "{notices:?}"
        );
    }

    #[test]
    fn without_traffic_a_step_is_held_never_promoted() {
        let mut s = auto_spec(&[10.0, 100.0]);
        s.auto.promotion = Promotion::Auto;
        s.auto.inconclusive_deadline_seconds = 120;
        let mut state = (s.clone(), started(&s));
        let mut world = World::new();
        let notices = drive(&mut state, &mut world, 600, 0, 0.0, |_| false);
        assert_eq!(state.0, s, "the spec never changed");
        let step = state.1.step.clone().unwrap();
        assert_eq!(step.waiting, Some(Waiting::Evidence));
        assert_eq!(step.verdict.unwrap().outcome, Outcome::Inconclusive);
        assert_eq!(notices.len(), 1, "one notice for the hold: {notices:?}");
        assert!(notices[0].starts_with("held at 10%"), "{notices:?}");

        // With `onInconclusive: Rollback` the same step is rolled back at its deadline.
        s.auto.on_inconclusive = OnInconclusive::Rollback;
        let mut state = (s.clone(), started(&s));
        let mut world = World::new();
        drive(&mut state, &mut world, 600, 0, 0.0, |s| {
            s.1.phase == Phase::RolledBack
        });
        assert_eq!(state.1.phase, Phase::RolledBack);
        assert_eq!(world.second, 120);
        assert!(state.1.message.unwrap().contains("inconclusive for 120s"));
    }

    /// A step that waits says for what in the status message at once, not only at its
    /// deadline; a query that returns nothing is named there and notified once; once the
    /// step passes, the waiting message goes.
    #[test]
    fn a_waiting_step_says_why_and_an_unanswered_query_is_notified_once() {
        let s = auto_spec(&[10.0, 100.0]);
        let mut state = (s.clone(), started(&s));
        let mut world = World::new();
        // The proxies' gauges are not scraped: the weights query answers nothing.
        let mut notices = Vec::new();
        for _ in 0..3 {
            world.run(10, 100, 10.0, 0.0);
            let mut snapshot = world.snapshot();
            snapshot.canary.weights.clear();
            snapshot.stable.weights.clear();
            snapshot.unanswered =
                vec!["spec.analysis.queries.weights for v2 (`q`): the stats tags".to_owned()];
            notices.extend(look(&mut state, &Ok(snapshot), at(world.second)));
        }
        let message = state.1.message.clone().unwrap_or_default();
        assert!(message.starts_with("waiting at 10%: "), "{message}");
        assert!(
            message
                .contains("no series: spec.analysis.queries.weights for v2 (`q`): the stats tags"),
            "{message}"
        );
        assert!(
            message.contains("no proxy reports the weights it runs"),
            "{message}"
        );
        assert_eq!(
            notices,
            ["step 10%: no series: spec.analysis.queries.weights for v2 (`q`): the stats tags"],
            "once, not at every look"
        );
        // The gauges show up: the step passes and the waiting message goes.
        let notices = drive(&mut state, &mut world, 50, 100, 0.0, |_| false);
        assert!(notices.is_empty(), "{notices:?}");
        let step = state.1.step.clone().unwrap();
        assert_eq!(step.verdict.unwrap().outcome, Outcome::Pass);
        assert_eq!(state.1.message, None);
    }

    #[test]
    fn a_gate_waits_for_next_and_a_waiting_canary_is_still_judged() {
        let mut s = auto_spec(&[10.0, 50.0, 100.0]);
        s.auto.gates = vec![50.0];
        let mut state = (s.clone(), started(&s));
        let mut world = World::new();
        let notices = drive(&mut state, &mut world, 600, 100, 0.0, |_| false);
        assert_eq!(state.0.summary(), s.summary(), "the gate held the weight");
        assert_eq!(state.1.step.as_ref().unwrap().waiting, Some(Waiting::Gate));
        assert_eq!(
            notices.iter().filter(|n| n.contains("is a gate")).count(),
            1
        );
        // A person enters the gate.
        let t = command(&state.0, &state.1, op(Op::Next), at(world.second));
        assert_eq!(t.spec.as_ref().unwrap().summary(), "v1=50 v2=50");
        // While waiting at the end for a promotion, a failing canary is still rolled back.
        let mut state = (t.spec.unwrap(), t.status.unwrap());
        drive(&mut state, &mut world, 1800, 100, 0.0, |s| {
            s.1.step.as_ref().and_then(|s| s.waiting) == Some(Waiting::Promotion)
        });
        drive(&mut state, &mut world, 3600, 100, 0.0, |s| {
            s.1.step.as_ref().and_then(|s| s.waiting) == Some(Waiting::Promotion)
        });
        assert_eq!(state.0.summary(), "v1=0 v2=100");
        assert_eq!(
            state.1.step.as_ref().unwrap().waiting,
            Some(Waiting::Promotion)
        );
        drive(&mut state, &mut world, 7200, 100, 0.5, |s| {
            s.1.phase == Phase::RolledBack
        });
        assert_eq!(state.1.phase, Phase::RolledBack, "{:#?}", state.1.step);
    }

    #[test]
    fn a_restart_resumes_the_step_with_its_evidence() {
        let s = auto_spec(&[10.0, 50.0, 100.0]);
        let mut state = (s.clone(), started(&s));
        let mut world = World::new();
        drive(&mut state, &mut world, 30, 100, 0.0, |_| false);
        let before = state.1.step.clone().unwrap();
        // What a new controller reads back from the API server.
        let stored = serde_json::to_string(&state.1).unwrap();
        let mut resumed = (state.0.clone(), serde_json::from_str(&stored).unwrap());
        drive(&mut resumed, &mut world, 40, 100, 0.0, |_| false);
        let after = resumed.1.step.unwrap();
        assert_eq!(after.started, before.started, "the same step");
        let (b, a) = (before.evidence.unwrap(), after.evidence.unwrap());
        assert_eq!(a.baseline, b.baseline, "the same baseline");
        assert_eq!(a.looks, b.looks + 1);
        assert!(a.canary.requests > b.canary.requests);
        assert_eq!(resumed.0, s, "no step taken twice, none skipped");
    }

    #[test]
    fn looks_change_nothing_when_off_paused_or_blind() {
        let s = auto_spec(&[10.0, 100.0]);
        let status = started(&s);
        let seen = Ok(World::new().snapshot());
        let mut off = s.clone();
        off.auto.enabled = false;
        let mut paused = s.clone();
        paused.paused = true;
        for spec in [&off, &paused] {
            let t =
                transition(spec, &status, &Input::Look(Box::new(seen.clone())), at(90)).unwrap();
            assert_eq!(t, Transition::default());
        }
        let blind = Err(LookError::Unreachable("connection refused".to_owned()));
        let t = transition(&s, &status, &Input::Look(Box::new(blind)), at(30)).unwrap();
        assert_eq!(t.spec, None);
        let message = t.status.unwrap().message.unwrap();
        assert_eq!(message, "no metrics: connection refused");
    }

    #[test]
    fn a_weight_set_by_hand_starts_a_step_there() {
        let s = auto_spec(&[10.0, 50.0, 100.0]);
        let status = started(&s);
        let mut by_hand = s.clone();
        by_hand.versions = vec![
            VersionWeight::new("v1", 70.0),
            VersionWeight::new("v2", 30.0),
        ];
        let seen = Ok(World::new().snapshot());
        let t = transition(&by_hand, &status, &Input::Look(Box::new(seen)), at(40)).unwrap();
        let step = t.status.unwrap().step.unwrap();
        assert_eq!((step.weight, step.started), (30.0, at(40)));
        assert_eq!(t.spec, None);
    }

    #[test]
    fn at_zero_the_steps_begin_unless_the_first_is_a_gate() {
        let mut s = auto_spec(&[10.0, 100.0]);
        s.versions = vec![
            VersionWeight::new("v1", 100.0),
            VersionWeight::new("v2", 0.0),
        ];
        let status = started(&s);
        let seen = Ok(World::new().snapshot());
        let t = transition(&s, &status, &Input::Look(Box::new(seen.clone())), at(1)).unwrap();
        assert_eq!(t.spec.unwrap().summary(), "v1=90 v2=10");
        assert_eq!(t.action.as_deref(), Some("next 10"));
        assert_eq!(t.notices, ["the canary is at 0%; next 10: v1=90 v2=10"]);
        s.auto.gates = vec![10.0];
        let t = transition(&s, &status, &Input::Look(Box::new(seen)), at(1)).unwrap();
        assert_eq!(t.spec, None);
        assert_eq!(t.status.unwrap().step.unwrap().waiting, Some(Waiting::Gate));
    }

    #[test]
    fn an_interval_below_the_scrape_interval_is_refused() {
        let s = auto_spec(&[10.0, 100.0]);
        let scrape = |secs| std::time::Duration::from_secs(secs);
        assert_eq!(auto::check_interval(&s, scrape(60)), Ok(()));
        assert_eq!(
            auto::check_interval(&s, scrape(61)),
            Err(
                "spec.auto.intervalSeconds: 60 is shorter than Prometheus's scrape interval of 61s"
                    .to_owned()
            )
        );
    }
}

#[test]
fn the_override_access_changes_only_the_spec_and_keeps_the_header_name() {
    use sticky_canary_filter::config::{OverrideConfig, TokenDigest};
    let (mut s, status) = after(&[start()]);
    s.filter.override_.header = "x-qa".into();
    let token = OverrideConfig {
        token_digest: Some(TokenDigest::of("t0k3n", &[9; 16])),
        ..OverrideConfig::default()
    };
    let t = command(&s, &status, Command::Override(token.clone()), at(1));
    let next = t.spec.expect("the spec changes");
    assert_eq!(
        next.filter.override_.header, "x-qa",
        "the header name stays"
    );
    assert_eq!(next.filter.override_.token_digest, token.token_digest);
    assert_eq!(t.action.as_deref(), Some("override token"));
    assert_eq!(t.status, None, "nothing of the step changes");
    assert_eq!(
        command(&next, &status, Command::Override(token), at(2)),
        Transition::default(),
        "the same access again changes nothing"
    );
    let public = OverrideConfig {
        public: true,
        ..OverrideConfig::default()
    };
    let t = command(&next, &status, Command::Override(public), at(3));
    assert_eq!(t.action.as_deref(), Some("override public"));
    assert_eq!(t.spec.unwrap().filter.override_.token_digest, None);
    let contradiction = OverrideConfig {
        public: true,
        token: Some("t".into()),
        ..OverrideConfig::default()
    };
    let err = transition(
        &s,
        &status,
        &Input::Command(Command::Override(contradiction)),
        at(4),
    )
    .unwrap_err();
    assert!(err.to_string().contains("override.public"), "{err}");
}
