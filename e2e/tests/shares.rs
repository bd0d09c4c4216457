//! Shares, stickiness and cookies, over real HTTP through a real Envoy running the filter.

mod common;

use sticky_canary_e2e::browser::{Browser, Dest};
use sticky_canary_e2e::crowd::{Crowd, Tally};
use sticky_canary_e2e::site::{PAGES, WHOAMI};
use sticky_canary_e2e::stack::weights;
use sticky_canary_filter::config::{CookieConfig, SameSite};
use sticky_canary_filter::PluginConfig;

/// 2000 new clients at 90/10: the canary gets about 10% of them (binomial standard deviation
/// 0.67 points, so ±3 points is over 4 deviations), and no page load breaks.
#[test]
fn a_crowd_gets_the_configured_shares_without_a_single_404() {
    let stack = common::start(&weights(&[("v1", 90.0), ("v2", 10.0)]));
    let mut crowd = Crowd::new(2000);
    let visits = crowd.visit(&stack.http, "/").unwrap();
    let tally = Tally::of(&visits);
    println!("{tally}");
    assert_eq!(tally.total, 2000);
    assert_eq!(tally.pages.keys().collect::<Vec<_>>(), ["v1", "v2"]);
    let canary = tally.share("v2");
    assert!((7.0..=13.0).contains(&canary), "canary share {canary:.2}%");
    assert_eq!(
        (tally.not_found, tally.mixed, tally.other_errors),
        (0, 0, 0)
    );
    for (browser, visit) in crowd.browsers.iter().zip(&visits) {
        assert_eq!(browser.cookie("sticky-version"), visit.version());
        let id = browser.cookie("sticky-id").expect("a minted id");
        assert!(
            id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()),
            "{id}"
        );
    }
}

/// A client keeps its version over many navigations and sub-resource requests, and the filter
/// stamps that version on every request it forwards.
#[test]
fn a_client_keeps_its_version_over_many_requests() {
    let stack = common::start(&weights(&[("v1", 50.0), ("v2", 50.0)]));
    let mut crowd = Crowd::new(200);
    let first = crowd.visit(&stack.http, "/").unwrap();
    for round in 0..6 {
        let visits = crowd.visit(&stack.http, PAGES[round % 2]).unwrap();
        let reloads = crowd.reload_subresources(&stack.http).unwrap();
        for ((before, visit), reload) in first.iter().zip(&visits).zip(&reloads) {
            for response in visit.responses().chain(reload) {
                assert_eq!(response.status, 200);
                assert_eq!(response.served_by.as_deref(), before.version());
                assert_eq!(response.received_version.as_deref(), before.version());
            }
        }
    }
    let tally = Tally::of(&first);
    assert!(
        tally.pages.len() == 2,
        "both versions have clients: {tally}"
    );
}

/// A new client gets its version cookie and its minted id with the default attributes, once;
/// returning with them it is not sent any cookie again.
#[test]
fn new_clients_get_cookies_with_the_default_attributes_once() {
    let stack = common::start(&weights(&[("v1", 90.0), ("v2", 10.0)]));
    let mut browser = Browser::new();
    let first = browser.fetch(&stack.http, "/", Dest::Document).unwrap();
    let version = first.served_by.clone().unwrap();
    assert_eq!(
        first.set_cookie("sticky-version"),
        Some(
            format!(
                "sticky-version={version}; Path=/; Max-Age=86400; HttpOnly; Secure; SameSite=Lax"
            )
            .as_str()
        )
    );
    let id = first.cookie("sticky-id").unwrap();
    assert_eq!(
        first.set_cookie("sticky-id"),
        Some(
            format!("sticky-id={id}; Path=/; Max-Age=86400; HttpOnly; Secure; SameSite=Lax")
                .as_str()
        )
    );
    assert_eq!(first.set_cookies.len(), 2);
    for dest in [Dest::Document, Dest::Api, Dest::Script] {
        let again = browser.fetch(&stack.http, WHOAMI, dest).unwrap();
        assert_eq!(again.served_by.as_deref(), Some(version.as_str()));
        assert!(
            again.set_cookies.is_empty(),
            "{dest:?}: {:?}",
            again.set_cookies
        );
    }
}

/// Cookie names and attributes follow the plugin configuration.
#[test]
fn cookie_names_and_attributes_follow_the_configuration() {
    let plugin = PluginConfig {
        cookie: CookieConfig {
            name: "ver".to_owned(),
            id_name: "cid".to_owned(),
            domain: Some("shop.test".to_owned()),
            path: "/shop".to_owned(),
            max_age: 600,
            http_only: false,
            secure: false,
            same_site: SameSite::Strict,
        },
        ..weights(&[("v1", 50.0), ("v2", 50.0)])
    };
    let stack = common::start(&plugin);
    let response = Browser::new()
        .fetch(&stack.http, "/", Dest::Document)
        .unwrap();
    let version = response.served_by.clone().unwrap();
    assert_eq!(
        response.set_cookie("ver"),
        Some(
            format!("ver={version}; Domain=shop.test; Path=/shop; Max-Age=600; SameSite=Strict")
                .as_str()
        )
    );
    let id = response.cookie("cid").unwrap();
    assert_eq!(
        response.set_cookie("cid"),
        Some(
            format!("cid={id}; Domain=shop.test; Path=/shop; Max-Age=600; SameSite=Strict")
                .as_str()
        )
    );
}
