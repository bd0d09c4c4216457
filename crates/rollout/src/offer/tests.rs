use super::*;
use api::Phase;

fn at(seconds: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + seconds).unwrap()
}

/// The state `commands` leave a stable `v1` in, each run through the transition as the
/// runtime runs it (again while it asks to).
fn after(commands: &[Command]) -> (StickyCanarySpec, StickyCanaryStatus) {
    let mut state = (
        StickyCanarySpec::new("shop", "v1"),
        StickyCanaryStatus::default(),
    );
    for (i, command) in commands.iter().enumerate() {
        loop {
            let input = Input::Command(command.clone());
            let done = transition(&state.0, &state.1, &input, at(i as i64)).expect("taken");
            state.0 = done.spec.unwrap_or(state.0);
            state.1 = done.status.unwrap_or(state.1);
            if !done.again {
                break;
            }
        }
    }
    state
}

fn start() -> Command {
    Command::Op(Op::Start {
        canary: "v2".to_owned(),
    })
}

fn weight(percent: f64) -> Command {
    Command::Op(Op::SetWeight(percent))
}

/// The offers in [`Action::ALL`]'s order, `+` taken and `-` refused: start, next,
/// set-weight, pause, resume, auto-on, auto-off, promote, promote-finish, abort.
fn signs(spec: &StickyCanarySpec, status: &StickyCanaryStatus) -> String {
    offers(spec, status, at(100))
        .iter()
        .map(|o| if o.refusal.is_some() { '-' } else { '+' })
        .collect()
}

#[test]
fn each_phase_offers_what_the_transition_takes() {
    const PROMOTE: Command = Command::Op(Op::Promote { finish: false });
    let table: Vec<(&str, Vec<Command>, Phase, &str)> = vec![
        ("stable", vec![], Phase::Stable, "+--+-+----"),
        (
            "canary at 0",
            vec![start()],
            Phase::Progressing,
            "-+++-+---+",
        ),
        (
            "a free weight",
            vec![start(), weight(30.0)],
            Phase::Progressing,
            "-+++-+-+++",
        ),
        (
            "paused",
            vec![start(), weight(30.0), Command::Pause],
            Phase::Progressing,
            "-++-++-+++",
        ),
        (
            "auto on",
            vec![start(), Command::Auto(true)],
            Phase::Progressing,
            "-+++--+--+",
        ),
        (
            "past the last step",
            vec![start(), weight(100.0)],
            Phase::Progressing,
            "--++-+-+++",
        ),
        (
            "promoting",
            vec![start(), weight(50.0), PROMOTE],
            Phase::Promoting,
            "---+-+--++",
        ),
        (
            "promoted",
            vec![
                start(),
                weight(10.0),
                Command::Op(Op::Promote { finish: true }),
            ],
            Phase::Promoted,
            "+--+-+----",
        ),
        (
            "aborted",
            vec![start(), weight(10.0), Command::Op(Op::Abort)],
            Phase::Aborted,
            "+--+-+----",
        ),
    ];
    for (name, commands, phase, expected) in table {
        let (spec, status) = after(&commands);
        assert_eq!(status.phase, phase, "{name}");
        assert_eq!(
            signs(&spec, &status),
            expected,
            "{name}: {}",
            spec.summary()
        );
    }
}

#[test]
fn an_offer_is_exactly_what_the_transition_does() {
    // Every state above, every parameterless action: offered if and only if the transition
    // takes it and changes something.
    let states = [
        after(&[]),
        after(&[start()]),
        after(&[start(), weight(100.0)]),
        after(&[
            start(),
            weight(10.0),
            Command::Op(Op::Promote { finish: false }),
        ]),
        after(&[start(), Command::Pause, Command::Auto(true)]),
    ];
    for (spec, status) in &states {
        for offer in offers(spec, status, at(100)) {
            let Ok(command) = offer.action.command(None, None) else {
                continue;
            };
            let taken = transition(spec, status, &Input::Command(command), at(100))
                .is_ok_and(|done| done.changes());
            assert_eq!(
                offer.refusal.is_none(),
                taken,
                "{offer:?} {}",
                spec.summary()
            );
        }
    }
}

#[test]
fn a_refusal_is_in_the_clis_words() {
    let why = |commands: &[Command], action: Action| {
        let (spec, status) = after(commands);
        offers(&spec, &status, at(100))
            .into_iter()
            .find(|o| o.action == action)
            .and_then(|o| o.refusal)
            .unwrap_or_default()
    };
    let aborted = [start(), Command::Op(Op::Abort)];
    assert!(why(&aborted, Action::Next).contains("no canary is running"));
    assert!(why(&aborted, Action::SetWeight).contains("no canary is running"));
    assert_eq!(
        why(&aborted, Action::Promote),
        "nothing to do: `promote` would change nothing now (v1=100)"
    );
    assert!(why(&[start()], Action::Start).contains("canary \"v2\" is already running"));
    let promoting = [
        start(),
        weight(10.0),
        Command::Op(Op::Promote { finish: false }),
    ];
    assert!(why(&promoting, Action::Next).contains("is being removed"));
    assert!(why(&promoting, Action::Start).contains("is being removed"));
    assert!(why(&[start(), weight(100.0)], Action::Next).contains("past the last step"));
    assert!(why(&[start()], Action::Promote).contains("is at 0%: nothing has reached it yet"));
    assert!(why(&[start()], Action::PromoteFinish).contains("is at 0%"));
}

#[test]
fn a_spec_stored_broken_offers_nothing() {
    let (mut spec, status) = after(&[start()]);
    spec.steps.clear();
    for offer in offers(&spec, &status, at(100)) {
        let why = offer.refusal.unwrap_or_default();
        assert!(why.contains("spec.steps"), "{:?}: {why}", offer.action);
    }
}

#[test]
fn names_and_commands_go_both_ways() {
    for action in Action::ALL {
        assert_eq!(Action::named(action.name()), Some(action));
    }
    assert_eq!(Action::named("rollback"), None);
    assert_eq!(
        Action::Start.command(Some("v3"), None),
        Ok(Command::Op(Op::Start {
            canary: "v3".to_owned()
        }))
    );
    assert!(Action::Start
        .command(None, None)
        .unwrap_err()
        .contains("`version`"));
    assert!(Action::SetWeight
        .command(None, None)
        .unwrap_err()
        .contains("`weight`"));
}
