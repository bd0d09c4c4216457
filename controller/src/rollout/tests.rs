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
    assert_eq!(
        (step.weight, step.started.as_str()),
        (10.0, at(1).to_string().as_str())
    );
    assert_eq!(step.waiting, None);
    let t = command(&s, &status, op(Op::Next), at(5));
    let step = t.status.unwrap().step.unwrap();
    assert_eq!((step.weight, step.started), (20.0, at(5).to_string()));
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
    assert_eq!(
        step.started,
        at(70).to_string(),
        "the held step's interval starts over"
    );
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
