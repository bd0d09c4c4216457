//! One filter serving several rollouts, as on an Istio ingress gateway: a real Envoy routes by
//! host to clusters named the way Istio names them, and the multi-rollout configuration finds
//! each request's rollout from the cluster Envoy picked (`xds.cluster_name`). Two services run a
//! rollout each, at different weights; a third has none and must be left alone.

use std::collections::BTreeMap;
use std::path::Path;

use sticky_canary_e2e::browser::{Browser, Dest, Visit};
use sticky_canary_e2e::crowd::{par_map, Tally};
use sticky_canary_e2e::exposition::decisions;
use sticky_canary_e2e::gateway::Gateway;
use sticky_canary_e2e::site::WHOAMI;
use sticky_canary_e2e::stack::weights;
use sticky_canary_filter::config::DEFAULT_ID_COOKIE;
use sticky_canary_filter::{Config, FilterConfig, PluginConfig, RolloutConfig, RolloutsConfig};

const SHOP: &str = "shop.prod.svc.cluster.local";
const API: &str = "api.prod.svc.cluster.local";
/// The service without a rollout.
const DOCS: &str = "docs.prod.svc.cluster.local";
const SHOP_COOKIE: &str = "sticky-version.prod.shop";
const API_COOKIE: &str = "sticky-version.prod.api";

/// A rollout of `host` at these weights, with its own version cookie and salt.
fn rollout(name: &str, host: &str, cookie: &str, versions: &[(&str, f64)]) -> RolloutConfig {
    let mut config = weights(versions);
    config.cookie.name = cookie.to_owned();
    config.salt = name.to_owned();
    RolloutConfig {
        name: name.to_owned(),
        services: vec![host.to_owned()],
        config,
    }
}

/// shop at 80/20 and api at 30/70; docs has no rollout.
fn rollouts(shop: &[(&str, f64)], api: &[(&str, f64)]) -> RolloutsConfig {
    RolloutsConfig {
        rollouts: vec![
            rollout("prod/shop", SHOP, SHOP_COOKIE, shop),
            rollout("prod/api", API, API_COOKIE, api),
        ],
    }
}

fn json(config: &RolloutsConfig) -> String {
    serde_json::to_string(&FilterConfig::Rollouts(config.clone())).unwrap()
}

fn start(config: &RolloutsConfig) -> Gateway {
    let upstream = Path::new(env!("CARGO_BIN_EXE_sticky-upstream"));
    let services: [(&str, &[&str], bool); 3] = [
        (SHOP, &["v1", "v2"], true),
        (API, &["v1", "v2"], true),
        (DOCS, &["v1"], false),
    ];
    match Gateway::start(upstream, &services, &json(config)) {
        Ok(gateway) => gateway,
        Err(err) => panic!("cannot start the gateway: {err:?}"),
    }
}

/// Every browser navigates to `/` of `host` and loads the page's sub-resources.
fn visit(gateway: &Gateway, browsers: &mut [Browser], host: &str) -> Vec<Visit> {
    par_map(browsers, |browser| {
        browser.set_header("host", host);
        browser.visit(&gateway.http, "/")
    })
    .unwrap()
}

/// The version `config` hashes a minted client id to.
fn hashed(config: &PluginConfig, id: &str) -> String {
    let config = Config::compile(config.clone()).unwrap();
    config.names[config.buckets.version_for_key(config.seed, id.as_bytes())].clone()
}

/// 400 new clients visit the shop, then the api, then the docs, then all of them again: each
/// rollout's clients get that rollout's shares (binomial deviation 2.0 and 2.3 points, so ±10
/// points is over 4 deviations), each exactly as its own configuration hashes the client's one
/// id, stickily, with that rollout's cookie; the docs see no version header and no cookie.
#[test]
fn each_service_gets_its_own_rollouts_weights_stickily_and_the_other_is_left_alone() {
    let config = rollouts(&[("v1", 80.0), ("v2", 20.0)], &[("v1", 30.0), ("v2", 70.0)]);
    let gateway = start(&config);
    let mut browsers = vec![Browser::new(); 400];
    let shop = visit(&gateway, &mut browsers, SHOP);
    let api = visit(&gateway, &mut browsers, API);
    let docs = visit(&gateway, &mut browsers, DOCS);

    for (visits, canary, range) in [(&shop, "v2", 10.0..=30.0), (&api, "v2", 60.0..=80.0)] {
        let tally = Tally::of(visits);
        println!("{tally}");
        assert_eq!(
            (tally.not_found, tally.mixed, tally.other_errors),
            (0, 0, 0)
        );
        let share = tally.share(canary);
        assert!(range.contains(&share), "canary share {share:.2}%");
    }
    for (i, browser) in browsers.iter().enumerate() {
        let id = browser.cookie(DEFAULT_ID_COOKIE).expect("a minted id");
        for (visit, rollout, cookie) in [
            (&shop[i], &config.rollouts[0], SHOP_COOKIE),
            (&api[i], &config.rollouts[1], API_COOKIE),
        ] {
            let version = hashed(&rollout.config, id);
            assert_eq!(visit.version(), Some(version.as_str()), "{}", rollout.name);
            assert_eq!(browser.cookie(cookie), Some(version.as_str()));
            for response in visit.responses() {
                assert_eq!(response.received_version, response.served_by);
            }
            assert_eq!(visit.page.cookie(cookie), Some(version.as_str()));
        }
        // The shop minted the id; the api, sharing the id cookie, kept it.
        assert_eq!(shop[i].page.cookie(DEFAULT_ID_COOKIE), Some(id));
        assert_eq!(api[i].page.cookie(DEFAULT_ID_COOKIE), None);
        assert_eq!(api[i].page.set_cookies.len(), 1, "{:?}", api[i].page);
        for response in docs[i].responses() {
            assert_eq!(response.status, 200);
            assert_eq!(response.served_by.as_deref(), Some("v1"));
            assert_eq!(response.received_version, None, "docs got a version header");
            assert!(
                response.set_cookies.is_empty(),
                "{:?}",
                response.set_cookies
            );
        }
    }

    // Returning: every page and sub-resource comes from the same version, no cookie again.
    for (host, first) in [(SHOP, &shop), (API, &api)] {
        let again = visit(&gateway, &mut browsers, host);
        let reloads = par_map(&mut browsers, |b| b.reload_subresources(&gateway.http)).unwrap();
        for ((before, visit), reload) in first.iter().zip(&again).zip(&reloads) {
            for response in visit.responses().chain(reload) {
                assert_eq!(response.served_by.as_deref(), before.version(), "{host}");
                assert!(
                    response.set_cookies.is_empty(),
                    "{:?}",
                    response.set_cookies
                );
            }
        }
    }
}

/// The service without a rollout gets requests exactly as clients sent them: a spoofed version
/// header stays (no rollout, no overwrite), an override is not honoured, no cookie is set, and
/// no decision is counted.
#[test]
fn requests_to_a_service_without_a_rollout_are_untouched() {
    let gateway = start(&rollouts(&[("v1", 50.0), ("v2", 50.0)], &[("v1", 100.0)]));
    let decisions = || -> u64 {
        let stats = gateway.envoy.stats().unwrap();
        stats
            .iter()
            .filter(|(name, _)| name.contains("sticky_canary.decisions"))
            .map(|(_, value)| value)
            .sum()
    };
    let before = decisions();
    let cookie = format!("{SHOP_COOKIE}=v2; {API_COOKIE}=v1; {DEFAULT_ID_COOKIE}=abc");
    for dest in [Dest::Document, Dest::Script, Dest::Api] {
        let mut headers: Vec<(&str, &[u8])> = dest.fetch_headers().to_vec();
        headers.extend([
            ("host", DOCS.as_bytes()),
            ("cookie", cookie.as_bytes()),
            ("x-sticky-version", b"v7"),
            ("x-sticky-override", b"v2"),
        ]);
        let response = gateway.http.get(WHOAMI, &headers).unwrap();
        assert_eq!(response.status, 200);
        assert_eq!(response.received_version.as_deref(), Some("v7"));
        assert!(
            response.set_cookies.is_empty(),
            "{:?}",
            response.set_cookies
        );
    }
    assert_eq!(decisions(), before);
}

/// The counters, as Prometheus scrapes them from the real Envoy: the bootstrap's stats tags
/// turn `sticky_canary.decisions.rollout.prod/shop.version.v2.reason.hash` into labels, the
/// rollout's name as given, and nothing is left in the metric name.
#[test]
fn decisions_are_counted_per_rollout_version_and_reason_on_stats_prometheus() {
    let gateway = start(&rollouts(&[("v1", 50.0), ("v2", 50.0)], &[("v1", 100.0)]));
    let exposition = gateway.envoy.prometheus().unwrap();
    // Series of the filter's metrics whose name is not exactly `sticky_canary_decisions` or
    // `sticky_canary_weight_basis_points`.
    let unlabelled: Vec<&str> = exposition
        .lines()
        .filter(|line| line.starts_with("sticky_canary"))
        .filter(|line| !line.starts_with("sticky_canary_decisions{"))
        .filter(|line| !line.starts_with("sticky_canary_weight_basis_points{"))
        .collect();
    assert!(unlabelled.is_empty(), "{unlabelled:#?}");
    // The weight each rollout's versions run with, labelled alike.
    let weights = sticky_canary_e2e::exposition::weights(&exposition);
    let expected: BTreeMap<(Option<String>, String), u64> = [
        ("prod/shop", "v1", 5000),
        ("prod/shop", "v2", 5000),
        ("prod/api", "v1", 10000),
    ]
    .into_iter()
    .map(|(r, v, bp)| ((Some(r.to_owned()), v.to_owned()), bp))
    .collect();
    assert_eq!(weights, expected);
    let before = decisions(&exposition);
    // A series per rollout, version and reason: 2 × 6 for the shop, 1 × 6 for the api.
    assert_eq!(before.len(), 18, "{before:?}");
    assert!(before.keys().all(|(rollout, _, _)| rollout.is_some()));
    let mut browsers = vec![Browser::new(); 120];
    let shop = Tally::of(&visit(&gateway, &mut browsers, SHOP));
    visit(&gateway, &mut browsers, API);
    visit(&gateway, &mut browsers, DOCS);
    let counted: BTreeMap<_, _> = decisions(&gateway.envoy.prometheus().unwrap())
        .into_iter()
        .map(|(series, value)| {
            let base = before.get(&series).copied().unwrap_or(0);
            (series, value - base)
        })
        .filter(|&(_, value)| value > 0)
        .collect();
    let series = |rollout: &str, version: &str, reason: &str| {
        (
            Some(rollout.to_owned()),
            version.to_owned(),
            reason.to_owned(),
        )
    };
    let mut expected = BTreeMap::new();
    for version in ["v1", "v2"] {
        // New to the shop: the page is hashed, its three sub-resources follow the new cookie.
        let pages = shop.pages.get(version).copied().unwrap_or(0) as u64;
        if pages > 0 {
            expected.insert(series("prod/shop", version, "hash"), pages);
            expected.insert(series("prod/shop", version, "cookie"), 3 * pages);
        }
    }
    // New to the api too (its own version cookie), with the id the shop minted.
    expected.insert(series("prod/api", "v1", "hash"), 120);
    expected.insert(series("prod/api", "v1", "cookie"), 3 * 120);
    assert_eq!(counted, expected);
}

/// Bad multi-rollout configurations and the message the filter must log for each.
fn bad_configs() -> Vec<(String, &'static str)> {
    let good = rollouts(&[("v1", 50.0), ("v2", 50.0)], &[("v1", 100.0)]);
    let mut sum = good.clone();
    sum.rollouts[1].config = weights(&[("v1", 90.0), ("v2", 5.0)]);
    sum.rollouts[1].config.cookie.name = API_COOKIE.to_owned();
    let mut shared_service = good.clone();
    shared_service.rollouts[1].services = vec![SHOP.to_owned()];
    let mut shared_cookie = good.clone();
    shared_cookie.rollouts[1].config.cookie.name = SHOP_COOKIE.to_owned();
    vec![
        (
            json(&sum),
            "sticky-canary: invalid plugin configuration: rollouts[1].config.versions: weights must sum to 100, they sum to 95",
        ),
        (
            json(&shared_service),
            "sticky-canary: invalid plugin configuration: rollouts[1].services[0]: \"shop.prod.svc.cluster.local\" of rollout \"prod/api\" belongs to rollout \"prod/shop\" (rollouts[0]) already",
        ),
        (
            json(&shared_cookie),
            "sticky-canary: invalid plugin configuration: rollouts[1].config.cookie.name: \"sticky-version.prod.shop\" is the version cookie of rollout \"prod/shop\" (rollouts[0]) already",
        ),
        (
            json(&good).replace(r#""services""#, r#""hosts""#),
            "sticky-canary: invalid plugin configuration: rollouts[0].hosts: unknown field `hosts`",
        ),
    ]
}

/// Pushed to the running gateway, a configuration with one broken rollout is rejected whole,
/// with the filter's message naming the field, and the last good one keeps serving every
/// rollout; a good configuration after them is taken.
#[test]
fn a_broken_rollout_is_refused_and_the_last_good_configuration_kept() {
    let good = rollouts(&[("v1", 100.0), ("v2", 0.0)], &[("v1", 100.0)]);
    let mut gateway = start(&good);
    let good_json = json(&good);
    for (raw, message) in bad_configs() {
        let rejected = gateway
            .envoy
            .stat("listener_manager.lds.update_rejected")
            .unwrap();
        gateway.envoy.write_lds(&gateway.lds(&raw)).unwrap();
        let now = gateway
            .envoy
            .wait_for_stat_change("listener_manager.lds.update_rejected", rejected)
            .unwrap();
        assert_eq!(now, rejected + 1);
        assert!(gateway.envoy.log().unwrap().contains(message), "{message}");
        assert_eq!(
            gateway.envoy.active_plugin_config().unwrap().as_deref(),
            Some(good_json.as_str())
        );
        let mut browser = Browser::new().with_header("host", SHOP);
        let response = browser
            .fetch(&gateway.http.fresh(), "/", Dest::Document)
            .unwrap();
        assert_eq!(response.served_by.as_deref(), Some("v1"));
        assert_eq!(response.cookie(SHOP_COOKIE), Some("v1"));
    }
    let flipped = rollouts(&[("v1", 0.0), ("v2", 100.0)], &[("v1", 100.0)]);
    gateway.set_plugin_json(&json(&flipped)).unwrap();
    let mut browser = Browser::new().with_header("host", SHOP);
    let response = browser.fetch(&gateway.http, "/", Dest::Document).unwrap();
    assert_eq!(response.served_by.as_deref(), Some("v2"));
}
