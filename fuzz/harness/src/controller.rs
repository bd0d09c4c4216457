//! The controller's inputs from outside: `StickyCanary` specs, plan files, Prometheus
//! answers, dashboard actions. The release profile aborts on panic, so a panic reachable from
//! any of them would take the whole controller down.

use analysis::{Snapshot, VersionSample};
use api::{StickyCanary, StickyCanarySpec, StickyCanaryStatus};
use dashboard::action::{self, ActionRequest};
use jiff::{SignedDuration, Timestamp};
use prometheus::{self, Field, Series};
use rollout::{self, Command, Input, Op};
use sticky_canary_filter::Config;

/// A `StickyCanary` written as YAML: its spec alone, or the whole object (`metadata`, `spec`,
/// `status`). kubectl turns the YAML into the JSON the API server keeps, and the controller
/// reads that JSON with serde; here serde-saphyr reads the YAML into that JSON value. A spec
/// `rollout::validate` accepts must give a plugin configuration the filter accepts, survive the
/// controller's write and read back, and every command on it must either be refused or lead to
/// a spec that is valid again.
pub fn spec_yaml(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(value) = serde_saphyr::from_str::<serde_json::Value>(text) else {
        return;
    };
    let (spec, status) = if value.get("spec").is_some() {
        match serde_json::from_value::<StickyCanary>(value) {
            Ok(object) => (object.spec, object.status.unwrap_or_default()),
            Err(_) => return,
        }
    } else {
        match serde_json::from_value::<StickyCanarySpec>(value) {
            Ok(spec) => (spec, StickyCanaryStatus::default()),
            Err(_) => return,
        }
    };
    let plugin = spec.plugin_config();
    let _ = spec.summary();
    if rollout::validate(&spec).is_err() {
        // Refused before anything is written; every command refuses it too.
        for command in commands() {
            assert!(rollout::transition(&spec, &status, &Input::Command(command), now()).is_err());
        }
        return;
    }
    let json = serde_json::to_vec(&plugin).expect("a plugin configuration serializes");
    if let Err(e) = Config::from_json(&json) {
        panic!("the filter refuses the configuration of a valid spec: {e}");
    }
    let written = serde_json::to_vec(&spec).expect("a spec serializes");
    let reread: StickyCanarySpec = serde_json::from_slice(&written)
        .unwrap_or_else(|e| panic!("the controller cannot read back the spec it wrote: {e}"));
    assert_eq!(reread, spec, "a spec changed through a write and a read");
    for command in commands() {
        check_command(&spec, &status, command);
    }
}

/// Every command a person can give, with weights around the edges.
fn commands() -> Vec<Command> {
    let mut ops = vec![
        Op::Start {
            canary: "v2".to_owned(),
        },
        Op::Next,
        Op::Promote { finish: false },
        Op::Promote { finish: true },
        Op::Abort,
        Op::Rollback { drain: false },
        Op::Rollback { drain: true },
    ];
    ops.extend([0.0, 0.01, 10.0, 100.0, 100.01].map(Op::SetWeight));
    let mut commands: Vec<Command> = ops.into_iter().map(Command::Op).collect();
    commands.extend([
        Command::Auto(true),
        Command::Auto(false),
        Command::Pause,
        Command::Resume,
    ]);
    commands
}

/// A command is refused, or leaves a valid spec.
fn check_command(spec: &StickyCanarySpec, status: &StickyCanaryStatus, command: Command) {
    let input = Input::Command(command);
    if let Ok(transition) = rollout::transition(spec, status, &input, now()) {
        if let Some(next) = &transition.spec {
            if let Err(e) = rollout::validate(next) {
                panic!("{input:?} on a valid spec made an invalid one: {e}\n{next:?}");
            }
        }
    }
}

fn now() -> Timestamp {
    Timestamp::from_second(1_800_000_000).expect("a valid time")
}

/// A plan file (`stickyctl plan`): any text parses to entries or is refused, and what is
/// accepted is whole (at least one entry, weights in range).
pub fn plan_file(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(entries) = plan::file::parse(text, "fuzz.yaml") {
        assert!(!entries.is_empty());
        for entry in &entries {
            assert!(entry.weight.is_finite() && entry.weight >= 0.0);
            let _ = (entry.what(), entry.count(), entry.on_stable());
        }
    }
}

/// A Prometheus answer, read as the controller reads the answers of its instant queries and of
/// `/api/v1/targets`. Series it accepts become each field's counters, and then the evidence of
/// an automatic step: a first look with nothing counted, a second with the answer for both
/// versions. A hostile or absurd answer may be refused or judged, never crash.
pub fn prometheus_answer(data: &[u8]) {
    let _ = prometheus::longest_scrape_interval(data);
    let Ok(series) = prometheus::parse_answer(data) else {
        return;
    };
    let Some(sample) = sample("v1", &series) else {
        return;
    };
    let spec = automatic_canary();
    let start = now();
    let mut status = StickyCanaryStatus::default();
    let set = Input::Command(Command::Op(Op::SetWeight(10.0)));
    let step = rollout::transition(&spec, &status, &set, start).expect("a valid command");
    let spec = step.spec.unwrap_or(spec);
    status = step.status.unwrap_or(status);
    let empty = VersionSample {
        version: String::new(),
        ..VersionSample::default()
    };
    let looks = [
        (empty.clone(), empty),
        (
            sample,
            self::sample("v2", &series).expect("read once already"),
        ),
    ];
    for (i, (stable, canary)) in looks.into_iter().enumerate() {
        let at = start + SignedDuration::from_secs(60 * (i as i64 + 1));
        let snapshot = Snapshot {
            at,
            stable: VersionSample {
                version: "v1".to_owned(),
                ..stable
            },
            canary: VersionSample {
                version: "v2".to_owned(),
                ..canary
            },
            unanswered: Vec::new(),
        };
        let look = Input::Look(Box::new(Ok(snapshot)));
        let transition =
            rollout::transition(&spec, &status, &look, at).expect("a look never fails");
        if let Some(next) = transition.status {
            status = next;
        }
        if transition.spec.is_some() {
            break;
        }
    }
}

/// One version's counters from the same series for each field, as the controller builds them
/// (`None` when one of the counters is refused).
fn sample(version: &str, series: &[Series]) -> Option<VersionSample> {
    Some(VersionSample {
        version: version.to_owned(),
        requests: prometheus::counter(Field::Requests, series).ok()?,
        errors: prometheus::counter(Field::Errors, series).ok()?,
        latency: prometheus::histograms(series).ok()?,
        decisions: prometheus::by_reason(series).ok()?,
        // Counts above 100 % are no weight: read as none reported, which the check says.
        weights: prometheus::applied_weights(series).unwrap_or_default(),
        metrics: Default::default(),
    })
}

/// `shop` with canary `v2` at 0, steps run by themselves.
fn automatic_canary() -> StickyCanarySpec {
    let spec = rollout::init("shop", "v1").expect("a valid spec");
    let start = Op::Start {
        canary: "v2".to_owned(),
    };
    let mut spec = after(&spec, start).expect("a valid start");
    spec.auto.enabled = true;
    spec
}

/// `spec` after a person's `op`, through the one transition; `None` when refused or unchanged.
fn after(spec: &StickyCanarySpec, op: Op) -> Option<StickyCanarySpec> {
    let input = Input::Command(Command::Op(op));
    let status = StickyCanaryStatus::default();
    rollout::transition(spec, &status, &input, jiff::Timestamp::UNIX_EPOCH)
        .ok()?
        .spec
}

/// The body of `POST /api/actions` as the dashboard reads it (axum's `Json`, serde_json), the
/// command it asks for, and that command on rollouts in each phase: refused, or a valid spec.
pub fn dashboard_action(data: &[u8]) {
    let Ok(request) = serde_json::from_slice::<ActionRequest>(data) else {
        return;
    };
    let Ok(command) = action::command(&request) else {
        return;
    };
    let canary = automatic_canary();
    let mut specs = vec![
        rollout::init("shop", "v1").expect("a valid spec"),
        canary.clone(),
    ];
    for op in [Op::SetWeight(10.0), Op::Promote { finish: false }] {
        let last = specs.last().expect("not empty").clone();
        if let Some(next) = after(&last, op) {
            specs.push(next);
        }
    }
    for spec in &specs {
        check_command(spec, &StickyCanaryStatus::default(), command.clone());
    }
}
