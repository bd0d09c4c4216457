//! stickyctl driving a plain Envoy's config directory (no Envoy here: the live-Envoy run is in
//! the e2e suite): every command writes the listener Envoy will load, racing operators end in
//! one consistent state, dry runs and repeated commands write nothing, bad input is refused.

use std::path::Path;

use serde_json::{json, Value};
use stickyctl::cli::{run, Outcome};
use stickyctl::render::envoy::{CDS_FILE, LAYOUT_FILE, LDS_FILE};
use stickyctl::target::envoy_dir::ROLLOUT_FILE;

fn envoy_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let layout = json!({"listenPort": 10000, "wasmPath": "/filter.wasm",
        "upstreams": {"v1": "127.0.0.1:8001", "v2": "127.0.0.1:8002"}});
    std::fs::write(dir.path().join(LAYOUT_FILE), layout.to_string()).unwrap();
    dir
}

async fn sticky(dir: &Path, args: &[&str]) -> Outcome {
    let mut argv = vec!["stickyctl", "--envoy-dir", dir.to_str().unwrap()];
    argv.extend_from_slice(args);
    run(argv).await
}

async fn ok(dir: &Path, args: &[&str]) -> String {
    let out = sticky(dir, args).await;
    assert_eq!(out.code, 0, "{args:?}: {out:?}");
    out.stdout
}

fn read(dir: &Path, file: &str) -> Value {
    serde_json::from_slice(&std::fs::read(dir.join(file)).unwrap()).unwrap()
}

/// The versions and weights in the filter configuration of the listener Envoy loads.
fn listener_versions(dir: &Path) -> Value {
    let lds = read(dir, LDS_FILE);
    let filter =
        &lds["resources"][0]["filter_chains"][0]["filters"][0]["typed_config"]["http_filters"][0];
    let config = filter["typed_config"]["config"]["configuration"]["value"]
        .as_str()
        .unwrap();
    serde_json::from_str::<Value>(config).unwrap()["versions"].clone()
}

fn modified(dir: &Path) -> Vec<std::time::SystemTime> {
    [ROLLOUT_FILE, LDS_FILE, CDS_FILE]
        .iter()
        .map(|f| std::fs::metadata(dir.join(f)).unwrap().modified().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_rewrite_the_listener() {
    let dir = envoy_dir();
    let d = dir.path();
    ok(d, &["init", "--service", "shop", "--stable", "v1"]).await;
    assert_eq!(
        listener_versions(d),
        json!([{"name": "v1", "weight": 100.0}])
    );
    ok(d, &["start", "--canary", "v2"]).await;
    ok(d, &["set-weight", "10"]).await;
    assert_eq!(
        listener_versions(d),
        json!([{"name": "v1", "weight": 90.0}, {"name": "v2", "weight": 10.0}])
    );
    let status: Value = serde_json::from_str(&ok(d, &["status", "-o", "json"]).await).unwrap();
    assert_eq!(status["inSync"], true);
    ok(d, &["promote"]).await;
    assert_eq!(
        listener_versions(d),
        json!([{"name": "v2", "weight": 100.0}, {"name": "v1", "weight": 0.0, "drain": true}])
    );
    assert_eq!(read(d, ROLLOUT_FILE)["status"]["phase"], "Promoting");
    ok(d, &["promote", "--finish"]).await;
    assert_eq!(
        listener_versions(d),
        json!([{"name": "v2", "weight": 100.0}])
    );
    assert_eq!(read(d, ROLLOUT_FILE)["status"]["phase"], "Promoted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_runs_and_repeats_write_nothing() {
    let dir = envoy_dir();
    let d = dir.path();
    ok(d, &["init", "--service", "shop", "--stable", "v1"]).await;
    ok(d, &["start", "--canary", "v2"]).await;
    let before = modified(d);
    let diff = ok(d, &["set-weight", "25", "--dry-run"]).await;
    assert!(diff.contains("+++ b/lds.json"), "{diff}");
    assert_eq!(modified(d), before);
    ok(d, &["start", "--canary", "v2"]).await;
    assert_eq!(modified(d), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_operators_end_consistent() {
    let dir = envoy_dir();
    let d = dir.path();
    ok(d, &["init", "--service", "shop", "--stable", "v1"]).await;
    ok(d, &["start", "--canary", "v2"]).await;
    let tasks: Vec<_> = ["5", "10", "20", "50"]
        .into_iter()
        .map(|w| {
            let d = d.to_owned();
            tokio::spawn(async move { sticky(&d, &["set-weight", w]).await })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap().code, 0);
    }
    let rollout = read(d, ROLLOUT_FILE);
    assert_eq!(listener_versions(d), rollout["spec"]["versions"]);
    assert_eq!(
        rollout["metadata"]["generation"], 6,
        "init, start and four weights"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_without_upstream_is_refused_before_any_write() {
    let dir = envoy_dir();
    let d = dir.path();
    ok(d, &["init", "--service", "shop", "--stable", "v1"]).await;
    let before = modified(d);
    let out = sticky(d, &["start", "--canary", "v3"]).await;
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr.contains("\"v3\" has no upstream"),
        "{}",
        out.stderr
    );
    assert_eq!(modified(d), before);
}

/// The filter configuration of the listener Envoy loads.
fn listener_config(dir: &Path) -> Value {
    let lds = read(dir, LDS_FILE);
    let filter =
        &lds["resources"][0]["filter_chains"][0]["filters"][0]["typed_config"]["http_filters"][0];
    let config = filter["typed_config"]["config"]["configuration"]["value"]
        .as_str()
        .unwrap();
    serde_json::from_str(config).unwrap()
}

/// `init --cookie-domain` shares both cookies with the sibling hosts, the spec and `explain`
/// show it, and a value that is not a domain is refused naming the field, before any write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cookie_domain_goes_from_init_to_the_filter_and_explain() {
    let dir = envoy_dir();
    let d = dir.path();
    let out = sticky(
        d,
        &[
            "init",
            "--service",
            "shop",
            "--stable",
            "v1",
            "--cookie-domain",
            "https://shop.example",
        ],
    )
    .await;
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr
            .contains("cookie.domain: \"https://shop.example\" is not a domain"),
        "{}",
        out.stderr
    );
    assert!(!d.join(ROLLOUT_FILE).exists(), "nothing written");
    ok(
        d,
        &[
            "init",
            "--service",
            "shop",
            "--stable",
            "v1",
            "--cookie-domain",
            "shop.example",
        ],
    )
    .await;
    assert_eq!(
        read(d, ROLLOUT_FILE)["spec"]["filter"]["cookie"]["domain"],
        "shop.example"
    );
    assert_eq!(listener_config(d)["cookie"]["domain"], "shop.example");
    let explain = ok(d, &["explain", "--key", "alice"]).await;
    assert!(
        explain.contains("cookie   sticky-version (domain shop.example)"),
        "{explain}"
    );
    let json: Value =
        serde_json::from_str(&ok(d, &["explain", "--key", "alice", "-o", "json"]).await).unwrap();
    assert_eq!(json["cookieDomain"], "shop.example");
}
