//! Who may choose a version: QA with the override header (only with the token, unless the
//! configuration says `public`), never a client sending the version header itself; and no
//! override header, token included, ever reaches the upstream.

mod common;

use sticky_canary_e2e::browser::{Browser, Dest};
use sticky_canary_e2e::site::WHOAMI;
use sticky_canary_e2e::stack::weights;
use sticky_canary_filter::config::{OverrideConfig, TokenDigest};
use sticky_canary_filter::PluginConfig;

/// Before any user is on the canary (weight 0), QA reaches it with the override header, for
/// the page and everything it loads, without being pinned to it afterwards.
#[test]
fn qa_override_reaches_a_canary_at_weight_zero() {
    let plugin = PluginConfig {
        override_: OverrideConfig {
            public: true,
            ..OverrideConfig::default()
        },
        ..weights(&[("v1", 100.0), ("v2", 0.0)])
    };
    let stack = common::start(&plugin);
    let mut qa = Browser::new().with_header("x-sticky-override", "v2");
    let visit = qa.visit(&stack.http, "/").unwrap();
    assert_eq!(visit.version(), Some("v2"));
    for response in visit.responses() {
        assert_eq!(response.status, 200);
        assert_eq!(response.served_by.as_deref(), Some("v2"));
        assert_eq!(response.received_version.as_deref(), Some("v2"));
        assert_eq!(
            response.received_override, None,
            "removed before the upstream"
        );
    }
    assert_eq!(
        qa.cookie("sticky-version"),
        None,
        "an override does not pin the tester"
    );
    let mut user = Browser::new();
    for _ in 0..20 {
        let visit = user.visit(&stack.http, "/").unwrap();
        assert_eq!(visit.version(), Some("v1"));
    }
}

/// By default (no token, not public) the override header is ignored, and still removed
/// before the upstream.
#[test]
fn the_override_is_off_by_default() {
    let stack = common::start(&weights(&[("v1", 100.0), ("v2", 0.0)]));
    for _ in 0..20 {
        let response = Browser::new()
            .with_header("x-sticky-override", "v2")
            .fetch(&stack.http, "/", Dest::Document)
            .unwrap();
        assert_eq!(response.served_by.as_deref(), Some("v1"));
        assert_eq!(response.received_override, None);
    }
}

/// With a token's digest configured, the override works only with `<version>:<token>`, and
/// the token never reaches the upstream, whether it was right or not.
#[test]
fn a_guarded_override_needs_the_token() {
    let plugin = PluginConfig {
        override_: OverrideConfig {
            token_digest: Some(TokenDigest::of("s3cret", b"a key of sixteen bytes")),
            ..OverrideConfig::default()
        },
        ..weights(&[("v1", 100.0), ("v2", 0.0)])
    };
    let stack = common::start(&plugin);
    for (value, expected) in [
        ("v2:s3cret", "v2"),
        ("v2", "v1"),
        ("v2:wrong", "v1"),
        ("v2:s3cret2", "v1"),
        ("v2:", "v1"),
        (":s3cret", "v1"),
    ] {
        let response = Browser::new()
            .with_header("x-sticky-override", value)
            .fetch(&stack.http, "/", Dest::Document)
            .unwrap();
        assert_eq!(response.served_by.as_deref(), Some(expected), "{value}");
        assert_eq!(response.received_override, None, "{value}");
    }
}

/// A client sending `x-sticky-version: v2` itself gets what the filter decides: the header is
/// overwritten before routing, as the upstream's echo of the received header shows.
#[test]
fn a_spoofed_version_header_is_overwritten() {
    let stack = common::start(&weights(&[("v1", 100.0), ("v2", 0.0)]));
    for dest in [Dest::Document, Dest::Script, Dest::Api] {
        let response = Browser::new()
            .with_header("x-sticky-version", "v2")
            .fetch(&stack.http, WHOAMI, dest)
            .unwrap();
        assert_eq!(response.status, 200);
        assert_eq!(response.served_by.as_deref(), Some("v1"), "{dest:?}");
        assert_eq!(response.received_version.as_deref(), Some("v1"));
    }
    // Also against a live pin: the cookie decides, not the header.
    let mut browser = Browser::new();
    browser.fetch(&stack.http, "/", Dest::Document).unwrap();
    let mut spoofing = browser.with_header("x-sticky-version", "v2");
    let response = spoofing.fetch(&stack.http, WHOAMI, Dest::Api).unwrap();
    assert_eq!(response.received_version.as_deref(), Some("v1"));
}

/// Behind a gateway (`trustIncomingHeader`, as on sidecars), a known version in the header is
/// honoured and passed on untouched; an unknown one is still replaced by the filter's decision.
#[test]
fn a_trusted_hop_keeps_the_version_it_carries() {
    let plugin = PluginConfig {
        trust_incoming_header: true,
        ..weights(&[("v1", 100.0), ("v2", 0.0)])
    };
    let stack = common::start(&plugin);
    for (carried, expected) in [("v2", "v2"), ("v1", "v1"), ("v9", "v1"), ("V2", "v1")] {
        for dest in [Dest::Document, Dest::Api] {
            let response = Browser::new()
                .with_header("x-sticky-version", carried)
                .fetch(&stack.http, WHOAMI, dest)
                .unwrap();
            assert_eq!(response.status, 200);
            assert_eq!(
                response.served_by.as_deref(),
                Some(expected),
                "{carried} {dest:?}"
            );
            assert_eq!(response.received_version.as_deref(), Some(expected));
        }
    }
}
