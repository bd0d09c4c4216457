//! Live weight changes through Envoy's file-based listener reload: who moves, and when.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use api::names::cluster_name;
use render::envoy::render_lds;
use serde_json::json;
use sticky_canary_e2e::browser::{subresources, Browser, Dest, Visit};
use sticky_canary_e2e::crowd::{par_map, Crowd, Moves, Tally};
use sticky_canary_e2e::site::{app_script, PAGES, WHOAMI};
use sticky_canary_e2e::stack::weights;

/// Ramp-up 10 -> 50: sub-resource and API requests keep the version of the page they belong
/// to; at the next navigation some stable clients move into the canary and nobody leaves it.
#[test]
fn a_ramp_up_moves_clients_only_at_navigations_and_only_into_the_canary() {
    let mut stack = common::start(&weights(&[("v1", 90.0), ("v2", 10.0)]));
    // 1000 clients: at 50% the binomial standard deviation is 1.6 points, so ±6 is safe.
    let mut crowd = Crowd::new(1000);
    let before = crowd.visit(&stack.http, "/").unwrap();
    stack
        .set_plugin(&weights(&[("v1", 50.0), ("v2", 50.0)]))
        .unwrap();

    let reloads = crowd.reload_subresources(&stack.http).unwrap();
    for (visit, reload) in before.iter().zip(&reloads) {
        assert_eq!(reload.len(), 3);
        for response in reload {
            assert_eq!(response.status, 200);
            assert_eq!(response.served_by.as_deref(), visit.version());
            assert!(response.set_cookies.is_empty());
        }
    }

    let after = crowd.visit(&stack.http, "/").unwrap();
    let moves = Moves::between(&before, &after, "v1");
    let tally = Tally::of(&after);
    println!("{tally}\n{moves:?}");
    assert_eq!(moves.to_stable, 0, "nobody leaves the canary on a ramp-up");
    assert!(moves.from_stable > 250, "{moves:?}: about 40% should move");
    let canary = tally.share("v2");
    assert!((44.0..=56.0).contains(&canary), "canary share {canary:.2}%");
    assert_eq!(
        (tally.not_found, tally.mixed, tally.other_errors),
        (0, 0, 0)
    );
    for (browser, visit) in crowd.browsers.iter().zip(&after) {
        assert_eq!(browser.cookie("sticky-version"), visit.version());
    }

    // Unchanged weights: navigations re-decide to the same version.
    let again = crowd.visit(&stack.http, PAGES[1]).unwrap();
    assert_eq!(Moves::between(&after, &again, "v1").stayed, 1000);
}

/// Abort (canary weight 0): each canary client is back on stable at its very next request,
/// even a sub-resource one, and its cookie is rewritten to stable.
#[test]
fn an_abort_sends_every_canary_client_back_to_stable() {
    let mut stack = common::start(&weights(&[("v1", 50.0), ("v2", 50.0)]));
    let mut crowd = Crowd::new(400);
    let before = crowd.visit(&stack.http, "/").unwrap();
    let on_canary = before.iter().filter(|v| v.version() == Some("v2")).count();
    assert!(on_canary > 100, "{on_canary} clients on the canary");
    stack
        .set_plugin(&weights(&[("v1", 100.0), ("v2", 0.0)]))
        .unwrap();

    let http = &stack.http;
    let next = par_map(&mut crowd.browsers, |b| b.fetch(http, WHOAMI, Dest::Api)).unwrap();
    for (visit, response) in before.iter().zip(&next) {
        assert_eq!(response.status, 200);
        assert_eq!(response.served_by.as_deref(), Some("v1"));
        let rewritten = response.cookie("sticky-version");
        if visit.version() == Some("v2") {
            assert_eq!(rewritten, Some("v1"));
        } else {
            assert_eq!(rewritten, None, "stable clients keep their cookie");
        }
    }
    let after = Tally::of(&crowd.visit(&stack.http, "/").unwrap());
    assert_eq!(after.pages.keys().collect::<Vec<_>>(), ["v1"]);
    assert_eq!((after.not_found, after.mixed), (0, 0));
}

/// The canary reaches 100% with the stable version draining: a stable client in the middle of
/// a page keeps loading that page's v1 assets from v1 (the 404 story at the last step), its
/// next navigation lands on v2 with the cookie rewritten, and nobody new gets v1. The same
/// switch without `drain` (what abort does) sends those assets to v2, which lacks them.
#[test]
fn at_100_percent_a_draining_stable_serves_its_pages_in_flight_until_the_next_navigation() {
    let mut stack = common::start(&weights(&[("v1", 60.0), ("v2", 40.0)]));
    let mut draining = weights(&[("v1", 0.0), ("v2", 100.0)]);
    draining.versions[0].drain = true;
    for (plugin, drains) in [
        (draining, true),
        (weights(&[("v1", 0.0), ("v2", 100.0)]), false),
    ] {
        stack
            .set_plugin(&weights(&[("v1", 60.0), ("v2", 40.0)]))
            .unwrap();
        let mut crowd = Crowd::new(200);
        let before = crowd.visit(&stack.http, "/").unwrap();
        let on_stable = before.iter().filter(|v| v.version() == Some("v1")).count();
        assert!(on_stable > 50, "{on_stable} clients on stable");
        stack.set_plugin(&plugin).unwrap();

        let reloads = crowd.reload_subresources(&stack.http).unwrap();
        for (visit, reload) in before.iter().zip(&reloads) {
            let page = visit.version().unwrap();
            let requested = subresources(&visit.page.body);
            assert_eq!(requested.len(), reload.len());
            for ((_, url), response) in requested.iter().zip(reload) {
                let got = (response.status, response.served_by.as_deref());
                if page == "v2" || drains {
                    assert_eq!(got, (200, Some(page)), "drain {drains}: {url}");
                    assert!(response.set_cookies.is_empty(), "{response:?}");
                } else if *url == app_script("v1") {
                    assert_eq!(got, (404, Some("v2")), "without drain: {url}");
                } else {
                    assert_eq!(got, (200, Some("v2")), "without drain: {url}");
                }
            }
        }

        let next = crowd.visit(&stack.http, PAGES[1]).unwrap();
        for ((visit, after), browser) in before.iter().zip(&next).zip(&crowd.browsers) {
            assert_eq!(after.version(), Some("v2"), "drain {drains}");
            assert_eq!((after.not_found(), after.mixed()), (0, false), "{after:?}");
            assert_eq!(browser.cookie("sticky-version"), Some("v2"));
            if visit.version() == Some("v1") && drains {
                assert_eq!(
                    after.page.cookie("sticky-version"),
                    Some("v2"),
                    "the navigation rewrites the cookie"
                );
            }
        }
        let newcomer = Browser::new().visit(&stack.http, "/").unwrap();
        assert_eq!(newcomer.version(), Some("v2"));
    }
}

/// The 404 story: each version's page loads a script only that version has. Clients browsing
/// page after page while the canary ramps up 5 -> 10 -> 20 -> 50 -> 80 never get a 404, never
/// see a page mixing versions, and never move from the canary back to stable.
#[test]
fn following_links_never_404s_while_the_weights_change() {
    let ramp = [5.0, 10.0, 20.0, 50.0, 80.0];
    let mut stack = common::start(&weights(&[("v1", 100.0 - ramp[0]), ("v2", ramp[0])]));
    let mut crowd = Crowd::new(200);
    let rounds = AtomicUsize::new(0);
    let done = AtomicBool::new(false);
    let http = stack.http.clone();
    // Each round, every client follows a link (alternating pages) and loads what it links to.
    let rounds_of_visits: Vec<Vec<Visit>> = std::thread::scope(|scope| {
        let browsing = scope.spawn(|| {
            let mut all = Vec::new();
            while !done.load(Ordering::SeqCst) {
                all.push(crowd.visit(&http, PAGES[all.len() % 2])?);
                rounds.fetch_add(1, Ordering::SeqCst);
            }
            all.push(crowd.visit(&http, PAGES[all.len() % 2])?);
            anyhow::Ok(all)
        });
        for &canary in &ramp[1..] {
            // Let the whole crowd browse under each weight before the next change.
            let seen = rounds.load(Ordering::SeqCst);
            while rounds.load(Ordering::SeqCst) < seen + 2 && !browsing.is_finished() {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            let weights = weights(&[("v1", 100.0 - canary), ("v2", canary)]);
            stack.envoy.set_plugin(&weights).unwrap();
        }
        done.store(true, Ordering::SeqCst);
        browsing.join().unwrap().unwrap()
    });

    let mut moved = 0;
    for round in &rounds_of_visits {
        for visit in round {
            assert_eq!(visit.not_found(), 0, "{visit:?}");
            assert!(!visit.mixed(), "{visit:?}");
            assert_eq!(visit.resources.len(), 3);
        }
    }
    for pair in rounds_of_visits.windows(2) {
        let moves = Moves::between(&pair[0], &pair[1], "v1");
        assert_eq!(
            moves.to_stable, 0,
            "a client left the canary during a ramp-up"
        );
        moved += moves.from_stable;
    }
    let tally = Tally::of(rounds_of_visits.last().unwrap());
    println!(
        "{} rounds of {} clients, {moved} moved into the canary\n{tally}",
        rounds_of_visits.len(),
        crowd.browsers.len()
    );
    assert!(
        moved > 100,
        "the ramp to 80% moved only {moved} of 200 clients"
    );
    // Sanity of the story itself: the v2 script really is missing on v1.
    let mut browser = Browser::new();
    let on_stable = browser.fetch(&stack.http, "/", Dest::Document).unwrap();
    let other = if on_stable.served_by.as_deref() == Some("v1") {
        "v2"
    } else {
        "v1"
    };
    let missing = browser
        .fetch(&stack.http, &app_script(other), Dest::Script)
        .unwrap();
    assert_eq!(missing.status, 404);
}

/// The control of the 404 story: the same site behind a plain per-request 50/50 split (Envoy's
/// weighted clusters, no filter) breaks pages, so the tests above would notice a filter that
/// stopped pinning.
#[test]
fn without_the_filter_a_per_request_split_breaks_pages() {
    let plugin = weights(&[("v1", 50.0), ("v2", 50.0)]);
    let mut stack = common::start(&plugin);
    let mut lds = render_lds(&plugin, stack.envoy.layout()).unwrap();
    let manager = lds
        .pointer_mut("/resources/0/filter_chains/0/filters/0/typed_config")
        .unwrap();
    manager["http_filters"].as_array_mut().unwrap().remove(0);
    manager["route_config"]["virtual_hosts"][0]["routes"] = json!([{
        "match": { "prefix": "/" },
        "route": { "weighted_clusters": { "clusters": [
            { "name": cluster_name("v1"), "weight": 50 },
            { "name": cluster_name("v2"), "weight": 50 },
        ]}},
    }]);
    stack.envoy.write_lds(&lds).unwrap();
    stack
        .envoy
        .wait_for_listener("the listener without the filter", |listener| {
            let filters =
                &listener["filter_chains"][0]["filters"][0]["typed_config"]["http_filters"];
            filters.as_array().is_some_and(|f| f.len() == 1)
        })
        .unwrap();
    let http = stack.http.fresh();
    let tally = Tally::of(&Crowd::new(100).visit(&http, "/").unwrap());
    println!("{tally}");
    // Each page's script lands on the other version half of the time.
    assert!(tally.not_found > 10, "{tally}");
    assert!(tally.mixed > 10, "{tally}");
}
