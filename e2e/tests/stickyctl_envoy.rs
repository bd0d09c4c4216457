//! The real `stickyctl --envoy-dir` driving the live Envoy of the end-to-end stack while a crowd
//! of browsers keeps loading pages: every command reaches Envoy without a restart, a ramp-up
//! fails no request and moves nobody out of the canary, abort and promote switch everyone,
//! `status -o json` reports what was applied, racing operators end in one state, and dry runs
//! touch nothing.
//!
//! The ramp to 100% and promote break no page: the old stable drains (the filter's `drain`),
//! so a page of it still loading gets its own script from it. Abort alone is not seamless, by
//! design: its canary goes to weight 0 without draining and pins nobody any more (issue 2), so a
//! canary page still loading gets its own script from stable, which lacks it. The abort test
//! counts those pages in flight and allows no other failure.
//!
//! The harness writes the directory's layout and a first listener (both versions, canary at 0)
//! so Envoy can start; `stickyctl init` then takes the directory over and rewrites the listener
//! from the rollout, exactly as on a machine where Envoy was started before the rollout.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::SystemTime;

use api::names::cluster_name;
use render::envoy::LDS_FILE;
use sticky_canary_e2e::browser::{subresources, Visit};
use sticky_canary_e2e::crowd::{Crowd, Tally};
use sticky_canary_e2e::envoy::{Envoy, EnvoyOptions};
use sticky_canary_e2e::load::{browse_while, PageLoad};
use sticky_canary_e2e::operator::Stickyctl;
use sticky_canary_e2e::site::app_script;
use sticky_canary_e2e::stack::{EnvoyRollout, Stack};
use sticky_canary_filter::PluginConfig;

const STABLE: &str = "v1";
const CANARY: &str = "v2";
/// Browsers in the load: at 50% the canary share's standard deviation is 4.6 points, so a
/// share 18 points off its weight (4 deviations) means Envoy does not run that weight.
const CLIENTS: usize = 120;

/// One operator command and the weights Envoy must run once it returns.
type Step = (&'static [&'static str], &'static [(&'static str, f64)]);

/// A stack whose Envoy directory `stickyctl` owns, initialized with the stable version only.
fn rollout() -> (Stack, Stickyctl) {
    let started = EnvoyRollout::start(
        Path::new(env!("CARGO_BIN_EXE_sticky-upstream")),
        EnvoyOptions::default(),
        &BTreeMap::new(),
        (STABLE, CANARY),
        &[],
    )
    .unwrap_or_else(|err| panic!("{err:#}"));
    let (ctl, init) = (&started.ctl, &started.init_command);
    check(
        ctl,
        init,
        &[(STABLE, 100.0)],
        &started.init_output,
        &started.serving,
    );
    (started.stack, started.ctl)
}

/// Runs the command of `step`, waits until Envoy's active listener runs the configuration it
/// wrote, and [`check`]s it.
fn apply(envoy: &mut Envoy, ctl: &Stickyctl, (args, expected): &Step) {
    let out = ctl.ok(args).unwrap_or_else(|err| panic!("{err:#}"));
    let live = envoy.wait_for_lds_file().unwrap();
    check(ctl, &format!("{args:?}"), expected, &out, &live);
}

/// Checks that Envoy (running `live` after `command`, which printed `out`) and `status -o
/// json` both show the `expected` weights, and that Envoy runs exactly the rollout's versions
/// (drain flags included).
fn check(ctl: &Stickyctl, command: &str, expected: &[(&str, f64)], out: &str, live: &PluginConfig) {
    assert_eq!(
        versions(live),
        pairs(expected),
        "Envoy after {command}: {out}"
    );
    assert_eq!(live.versions, ctl.rollout().unwrap().spec.versions);
    let status = ctl.status().unwrap();
    assert_eq!(status["inSync"], true, "{status:#}");
    let reported: Vec<(String, f64)> = status["versions"]
        .as_array()
        .unwrap()
        .iter()
        .zip(&live.versions)
        .map(|(v, running)| {
            assert_eq!(v["drain"], running.drain, "{status:#}");
            (
                v["name"].as_str().unwrap().to_owned(),
                v["weight"].as_f64().unwrap(),
            )
        })
        .collect();
    assert_eq!(reported, pairs(expected), "status after {command}");
}

fn versions(plugin: &PluginConfig) -> Vec<(String, f64)> {
    plugin
        .versions
        .iter()
        .map(|v| (v.name.clone(), v.weight))
        .collect()
}

fn pairs(expected: &[(&str, f64)]) -> Vec<(String, f64)> {
    expected.iter().map(|&(n, w)| (n.to_owned(), w)).collect()
}

/// Runs `steps` one after the other (numbered from 1) while the crowd browses, letting every
/// browser load a page under each configuration first.
fn under_load(stack: &mut Stack, ctl: &Stickyctl, steps: &[Step]) -> Vec<PageLoad> {
    let http = stack.http.clone();
    let mut crowd = Crowd::new(CLIENTS);
    let ((), loads) = browse_while(&http, &mut crowd.browsers, |driver| {
        driver.wait_for_round().unwrap();
        for step in steps {
            driver.change(|| apply(&mut stack.envoy, ctl, step));
            driver.wait_for_round().unwrap();
        }
    });
    loads
}

/// The visit of a page load that must have gone through: no transport error.
fn visit(load: &PageLoad) -> &Visit {
    match &load.outcome {
        Ok(visit) => visit,
        Err(err) => panic!("browser {} lost a request: {err}", load.browser),
    }
}

/// Asserts that every request of `loads` got a 200 from the page's own version.
fn assert_flawless<'a>(loads: impl IntoIterator<Item = &'a PageLoad>, what: &str) -> usize {
    let visits: Vec<Visit> = loads.into_iter().map(|l| visit(l).clone()).collect();
    let tally = Tally::of(&visits);
    assert_eq!(
        (tally.not_found, tally.mixed, tally.other_errors),
        (0, 0, 0),
        "{what}:\n{tally}"
    );
    for visit in &visits {
        assert_eq!(visit.resources.len(), 3, "{visit:?}");
    }
    tally.total
}

/// Page loads in flight while `change` switched every client off `from` to `to` without a
/// drain (abort): all answered by an upstream, and the only failures are the ones that switch
/// implies by design (a version at weight 0 without `drain` pins nobody): a `from` page whose
/// own script, requested after the switch, is now served by `to`, which lacks it. Returns
/// (page loads in flight, page loads broken).
fn assert_only_switch_breakage(
    loads: &[PageLoad],
    change: usize,
    from: &str,
    to: &str,
) -> (usize, usize) {
    let in_flight: Vec<&Visit> = loads
        .iter()
        .filter(|l| l.overlapped(change))
        .map(visit)
        .collect();
    let mut broken = 0;
    for visit in &in_flight {
        assert!(
            visit.responses().all(|r| r.served_by.is_some()),
            "{visit:?}"
        );
        assert_eq!(visit.page.status, 200, "{visit:?}");
        let requested = subresources(&visit.page.body);
        for ((_, url), response) in requested.iter().zip(&visit.resources) {
            if response.status != 200 {
                assert_eq!(
                    (
                        response.status,
                        url,
                        response.served_by.as_deref(),
                        visit.version()
                    ),
                    (404, &app_script(from), Some(to), Some(from)),
                    "{visit:?}"
                );
            }
        }
        broken += usize::from(visit.not_found() > 0);
    }
    (in_flight.len(), broken)
}

/// Per browser, its page loads that ended before `change` began, as version transitions:
/// (moved stable -> canary, moved canary -> stable).
fn moves_before(loads: &[PageLoad], change: usize) -> (usize, usize) {
    let mut last: BTreeMap<usize, Option<String>> = BTreeMap::new();
    let (mut into_canary, mut out_of_canary) = (0, 0);
    for load in loads.iter().filter(|l| l.ended_before(change)) {
        let version = visit(load).version().map(str::to_owned);
        if let Some(previous) = last.insert(load.browser, version.clone()) {
            match (previous.as_deref(), version.as_deref()) {
                (Some(STABLE), Some(CANARY)) => into_canary += 1,
                (Some(CANARY), Some(STABLE)) => out_of_canary += 1,
                _ => {}
            }
        }
    }
    (into_canary, out_of_canary)
}

/// The canary's share, in percent, of the page loads that ran entirely under `change`.
fn canary_share(loads: &[PageLoad], change: usize) -> f64 {
    let visits: Vec<Visit> = loads
        .iter()
        .filter(|l| l.settled_under() == Some(change))
        .map(|l| visit(l).clone())
        .collect();
    assert!(
        visits.len() >= CLIENTS,
        "{} page loads under change {change}",
        visits.len()
    );
    Tally::of(&visits).share(CANARY)
}

/// The actions in the rollout's status history, once the last applied state is the spec.
fn history(ctl: &Stickyctl) -> Vec<String> {
    let rollout = ctl.rollout().unwrap();
    let status = rollout.status.unwrap();
    assert_eq!(
        status.last_applied.and_then(|a| a.generation),
        rollout.metadata.generation,
        "the last applied state is the current spec"
    );
    status.history.into_iter().map(|h| h.action).collect()
}

/// Every step of the ramp-up by `next`, then abort, with the crowd browsing throughout.
#[test]
fn stickyctl_ramps_up_under_load_without_a_failed_request_and_abort_brings_everyone_back() {
    const STEPS: [Step; 8] = [
        (
            &["start", "--canary", CANARY],
            &[(STABLE, 100.0), (CANARY, 0.0)],
        ),
        (&["next"], &[(STABLE, 99.0), (CANARY, 1.0)]),
        (&["next"], &[(STABLE, 95.0), (CANARY, 5.0)]),
        (&["next"], &[(STABLE, 90.0), (CANARY, 10.0)]),
        (&["next"], &[(STABLE, 80.0), (CANARY, 20.0)]),
        (&["next"], &[(STABLE, 50.0), (CANARY, 50.0)]),
        (&["next"], &[(STABLE, 20.0), (CANARY, 80.0)]),
        (&["abort"], &[(STABLE, 100.0)]),
    ];
    const ABORT: usize = 8;
    let (mut stack, ctl) = rollout();
    let loads = under_load(&mut stack, &ctl, &STEPS);

    let ramp = assert_flawless(
        loads.iter().filter(|l| l.ended_before(ABORT)),
        "the ramp-up",
    );
    let (into_canary, out_of_canary) = moves_before(&loads, ABORT);
    assert_eq!(
        out_of_canary, 0,
        "a ramp-up never moves a client out of the canary"
    );
    assert!(
        into_canary >= 60,
        "only {into_canary} moves into the canary at 80%"
    );
    assert_eq!(
        canary_share(&loads, 1),
        0.0,
        "the canary at 0% serves nobody"
    );
    for (change, weight) in [(6, 50.0), (7, 80.0)] {
        let share = canary_share(&loads, change);
        assert!(
            (share - weight).abs() < 18.0,
            "{share:.1}% on the canary at {weight}%"
        );
    }

    let (in_flight, broken) = assert_only_switch_breakage(&loads, ABORT, CANARY, STABLE);
    let after: Vec<&PageLoad> = loads.iter().filter(|l| l.started_after(ABORT)).collect();
    assert_flawless(after.iter().copied(), "after the abort");
    assert!(after.len() >= CLIENTS);
    assert!(
        after.iter().all(|l| visit(l).version() == Some(STABLE)),
        "abort brings everyone back to stable"
    );
    println!(
        "{} page loads ({} requests): {ramp} through the ramp-up, all 200, \
         {into_canary} moves into the canary and none out; {in_flight} in flight at the abort, \
         {broken} of them v2 pages whose script came after the switch; {} after, all on {STABLE}",
        loads.len(),
        loads
            .iter()
            .map(|l| visit(l).resources.len() + 1)
            .sum::<usize>(),
        after.len()
    );

    let status = ctl.status().unwrap();
    assert_eq!(status["phase"], "Aborted", "{status:#}");
    assert_eq!(status["lastAction"], "abort: remove v2", "{status:#}");
    assert_eq!(
        history(&ctl),
        [
            "init v1",
            "start v2",
            "next 1",
            "next 5",
            "next 10",
            "next 20",
            "next 50",
            "next 80",
            "abort v2",
            "abort: remove v2"
        ]
    );
    let lds = std::fs::read_to_string(stack.envoy.dir().join(LDS_FILE)).unwrap();
    assert!(
        !lds.contains(&cluster_name(CANARY)),
        "the canary's route is gone"
    );
}

/// Ramp to 100% and promote under load without breaking a page: at 100% the stable version
/// drains, so its pages in flight finish on it and its clients move at their next page;
/// `promote` keeps it draining and `promote --finish` removes it. Not one 404, not one page
/// mixing versions, nobody moved out of the canary.
#[test]
fn stickyctl_ramps_to_100_and_promotes_under_load_without_breaking_a_page() {
    const STEPS: [Step; 6] = [
        (
            &["start", "--canary", CANARY],
            &[(STABLE, 100.0), (CANARY, 0.0)],
        ),
        (&["set-weight", "50"], &[(STABLE, 50.0), (CANARY, 50.0)]),
        (&["next"], &[(STABLE, 20.0), (CANARY, 80.0)]),
        (&["next"], &[(STABLE, 0.0), (CANARY, 100.0)]),
        (&["promote"], &[(CANARY, 100.0), (STABLE, 0.0)]),
        (&["promote", "--finish"], &[(CANARY, 100.0)]),
    ];
    const FULL: usize = 4;
    const FINISH: usize = 6;
    let (mut stack, ctl) = rollout();
    let loads = under_load(&mut stack, &ctl, &STEPS);

    let total = assert_flawless(&loads, "the ramp to 100% and the promotion");
    // Every page load ended before a change after the last one.
    let (_, out_of_canary) = moves_before(&loads, FINISH + 1);
    assert_eq!(
        out_of_canary, 0,
        "a ramp-up never moves a client out of the canary"
    );
    let stable_in_flight = loads
        .iter()
        .filter(|l| l.overlapped(FULL) && visit(l).version() == Some(STABLE))
        .count();
    assert!(
        loads
            .iter()
            .filter(|l| l.started_after(FULL))
            .all(|l| visit(l).version() == Some(CANARY)),
        "every page load from 100% on is on the canary"
    );
    println!(
        "{total} page loads, all 200 and none mixed: {stable_in_flight} {STABLE} pages in flight \
         at the switch to 100% finished on {STABLE}; everything after on {CANARY}"
    );

    let status = ctl.status().unwrap();
    assert_eq!(status["phase"], "Promoted", "{status:#}");
    assert_eq!(status["versions"][0]["role"], "stable", "{status:#}");
    assert_eq!(
        history(&ctl)[1..],
        [
            "start v2",
            "set-weight 50",
            "next 80",
            "next 100",
            "promote v2",
            "promote: remove v1"
        ]
    );
    let lds = std::fs::read_to_string(stack.envoy.dir().join(LDS_FILE)).unwrap();
    assert!(
        !lds.contains(&cluster_name(STABLE)),
        "the old version's route is gone"
    );
}

/// Every file of `dir` with its content and modification time.
fn snapshot(dir: &Path) -> BTreeMap<String, (Vec<u8>, SystemTime)> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| {
            let entry = entry.unwrap();
            let meta = entry.metadata().unwrap();
            let name = entry.file_name().to_string_lossy().into_owned();
            (
                name,
                (
                    std::fs::read(entry.path()).unwrap(),
                    meta.modified().unwrap(),
                ),
            )
        })
        .collect()
}

/// Operators racing `set-weight` on one directory (three processes at a time) end in one
/// consistent state: every command applied once, in some order, and the rollout file,
/// `lds.json`, Envoy's active listener and `status` agree. Dry runs print a diff and write
/// nothing, so Envoy keeps serving what it served.
#[test]
fn racing_operators_end_in_one_state_and_dry_runs_change_nothing() {
    let (mut stack, ctl) = rollout();
    apply(
        &mut stack.envoy,
        &ctl,
        &(
            &["start", "--canary", CANARY],
            &[(STABLE, 100.0), (CANARY, 0.0)],
        ),
    );
    // Distinct weights, none equal to the one before the race: each command changes the spec.
    for race in [["20", "60", "35"], ["5", "90", "45"], ["10", "70", "30"]] {
        let before = ctl.rollout().unwrap().metadata.generation.unwrap();
        let runs: Vec<_> = std::thread::scope(|scope| {
            let racers: Vec<_> = race
                .iter()
                .map(|w| scope.spawn(|| ctl.run(&["set-weight", w]).unwrap()))
                .collect();
            racers.into_iter().map(|r| r.join().unwrap()).collect()
        });
        for run in &runs {
            assert_eq!(run.code, Some(0), "{run:?}");
        }
        let live = stack.envoy.wait_for_lds_file().unwrap();
        let rollout = ctl.rollout().unwrap();
        assert_eq!(
            rollout.spec.versions, live.versions,
            "rollout file and Envoy"
        );
        assert_eq!(
            rollout.metadata.generation,
            Some(before + 3),
            "each command applied once, none lost: {runs:?}"
        );
        let status = rollout.status.unwrap();
        assert_eq!(status.observed_generation, rollout.metadata.generation);
        let mut applied: Vec<String> = status
            .history
            .iter()
            .rev()
            .take(3)
            .map(|h| h.action.clone())
            .collect();
        let last = applied[0].clone();
        applied.sort();
        let mut asked: Vec<String> = race.iter().map(|w| format!("set-weight {w}")).collect();
        asked.sort();
        assert_eq!(applied, asked, "the history records each racer once");
        let canary = rollout.spec.versions[1].weight;
        assert_eq!(
            last,
            format!("set-weight {canary}"),
            "the last one applied is live"
        );
        let reported = ctl.status().unwrap();
        assert_eq!(reported["inSync"], true, "{reported:#}");
        assert_eq!(reported["versions"][1]["weight"], canary, "{reported:#}");
    }

    let dir = stack.envoy.dir().to_owned();
    let files = snapshot(&dir);
    let serving = stack.envoy.active_plugin_config().unwrap();
    for args in [
        &["set-weight", "99", "--dry-run"][..],
        &["next", "--dry-run"],
        &["promote", "--dry-run"],
        &["abort", "--dry-run"],
    ] {
        let diff = ctl.ok(args).unwrap();
        assert!(
            diff.contains("+++ b/lds.json"),
            "{args:?} shows no listener diff:\n{diff}"
        );
    }
    assert!(snapshot(&dir) == files, "a dry run changed the directory");
    assert_eq!(stack.envoy.active_plugin_config().unwrap(), serving);
    let refused = ctl.run(&["set-weight", "101"]).unwrap();
    assert_eq!(refused.code, Some(2), "{refused:?}");
    assert!(refused.stderr.contains("101"), "{refused:?}");
    assert!(
        snapshot(&dir) == files,
        "a refused command changed the directory"
    );
}
