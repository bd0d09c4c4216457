//! A plain Envoy set up as the README's plain-Envoy section says, with nothing written by hand
//! but the layout: `stickyctl --envoy-dir DIR init` writes the listeners and clusters,
//! `stickyctl --envoy-dir DIR bootstrap` Envoy's bootstrap (reading them from DIR, with the
//! filter's stats tags), and the Envoy started on it stamps, pins and counts with labels.

use std::path::Path;

use render::envoy::LAYOUT_FILE;
use serde_json::{json, Value};
use sticky_canary_e2e::browser::Http;
use sticky_canary_e2e::envoy::free_port;
use sticky_canary_e2e::envoy_process::EnvoyProcess;
use sticky_canary_e2e::exposition::decisions;
use sticky_canary_e2e::locate;
use sticky_canary_e2e::operator::Stickyctl;
use sticky_canary_e2e::upstream::Upstream;

#[test]
fn stickyctl_writes_everything_a_plain_envoy_needs_but_the_layout() {
    let bin = Path::new(env!("CARGO_BIN_EXE_sticky-upstream"));
    let v1 = Upstream::spawn(bin, "v1").unwrap();
    let v2 = Upstream::spawn(bin, "v2").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port().unwrap();
    let layout = json!({"listenPort": port,
                        "wasmPath": locate::filter_wasm().unwrap(),
                        "upstreams": {"v1": v1.address, "v2": v2.address}});
    std::fs::write(dir.path().join(LAYOUT_FILE), layout.to_string()).unwrap();

    let stickyctl = Stickyctl::new(dir.path()).unwrap();
    stickyctl
        .ok(&["init", "--service", "shop", "--stable", "v1"])
        .unwrap();
    stickyctl.ok(&["start", "--canary", "v2"]).unwrap();
    stickyctl.ok(&["set-weight", "50"]).unwrap();
    let admin_port = free_port().unwrap().to_string();
    let bootstrap: Value = serde_json::from_str(
        &stickyctl
            .ok(&["bootstrap", "--admin-port", &admin_port])
            .unwrap(),
    )
    .unwrap();
    let lds = bootstrap
        .pointer("/dynamic_resources/lds_config/path_config_source/path")
        .and_then(Value::as_str)
        .unwrap();
    assert!(Path::new(lds).is_absolute(), "{lds}");

    let mut envoy =
        EnvoyProcess::spawn("plain", tempfile::tempdir().unwrap(), &bootstrap, 1, &[]).unwrap();
    envoy.wait_ready().map_err(|e| envoy.explain(e)).unwrap();
    let http = Http::new(([127, 0, 0, 1], port).into());
    envoy
        .wait_for("the listener from lds.json", |_| {
            Ok(http
                .get("/", &[])
                .is_ok_and(|r| r.status == 200)
                .then_some(()))
        })
        .unwrap();
    let hashed = |envoy: &EnvoyProcess| -> u64 {
        decisions(&envoy.prometheus().unwrap())
            .iter()
            .filter(|((rollout, _, reason), _)| rollout.is_none() && reason == "hash")
            .map(|(_, n)| n)
            .sum()
    };
    let before = hashed(&envoy);
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..40 {
        let response = http.fresh().get("/", &[]).unwrap();
        assert_eq!(response.status, 200);
        let version = response.received_version.clone().expect("stamped");
        assert_eq!(response.served_by.as_deref(), Some(version.as_str()));
        assert!(
            response
                .set_cookies
                .iter()
                .any(|c| c.starts_with("sticky-version=")),
            "pinned: {response:?}"
        );
        seen.insert(version);
    }
    assert_eq!(seen.len(), 2, "both versions at 50: {seen:?}");
    assert_eq!(
        hashed(&envoy) - before,
        40,
        "every new client counted under the labels sticky_version and sticky_reason"
    );
}
