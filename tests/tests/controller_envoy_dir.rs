//! stickyctl driving a plain Envoy's config directory (no Envoy here: the live-Envoy run is in
//! the e2e suite): every command writes the listener Envoy will load, racing operators end in
//! one consistent state, dry runs and repeated commands write nothing, bad input is refused.

use std::path::Path;

use render::envoy::{CDS_FILE, LAYOUT_FILE, LDS_FILE};
use runtime::target::envoy_dir::ROLLOUT_FILE;
use serde_json::{json, Value};
use stickyctl::cli::{run, Outcome};

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

/// `init --override token` creates QA's token: kept in a file only its owner reads, only its
/// digest in the rollout and the listener; `explain` honours it and nothing else. The stamps
/// are sealed, the routes match the sealed stamp, and `status` says who may override.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_creates_a_token_the_proxies_only_know_the_digest_of() {
    use std::os::unix::fs::PermissionsExt;
    let dir = envoy_dir();
    let d = dir.path();
    let said = ok(
        d,
        &[
            "init",
            "--service",
            "shop",
            "--stable",
            "v1",
            "--override",
            "token",
        ],
    )
    .await;
    let file = d.join(runtime::target::envoy_dir::OVERRIDE_TOKEN_FILE);
    assert!(said.contains(&format!("cat {}", file.display())), "{said}");
    let mode = std::fs::metadata(&file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "readable by its owner only");
    let token = std::fs::read_to_string(&file).unwrap().trim().to_owned();
    assert_eq!(token.len(), 64, "256 random bits in hex: {token}");
    ok(d, &["start", "--canary", "v2"]).await;
    for text in [
        listener_config(d).to_string(),
        read(d, ROLLOUT_FILE).to_string(),
    ] {
        assert!(!text.contains(&token), "the token in clear: {text}");
        assert!(
            text.contains("tokenDigest") || text.contains("hmacSha256"),
            "{text}"
        );
    }
    let config = listener_config(d);
    let seal = config["seal"]
        .as_str()
        .expect("a sealed configuration")
        .to_owned();
    let lds = read(d, LDS_FILE).to_string();
    assert!(
        lds.contains(&format!("v2;{seal}")),
        "the route matches the sealed stamp"
    );
    let explain = |value: String| async move {
        let out = ok(
            d,
            &[
                "explain",
                "--key",
                "alice",
                "--override",
                &value,
                "-o",
                "json",
            ],
        )
        .await;
        serde_json::from_str::<Value>(&out).unwrap()["reason"].clone()
    };
    assert_eq!(explain(format!("v2:{token}")).await, "override");
    assert_eq!(explain("v2".to_owned()).await, "hash");
    assert_eq!(explain("v2:wrong".to_owned()).await, "hash");
    let status: Value = serde_json::from_str(&ok(d, &["status", "-o", "json"]).await).unwrap();
    assert_eq!(status["override"], "token");
    assert_eq!(status["warnings"], json!([]));
    // Opened to anyone, knowingly: said in the status.
    ok(d, &["override", "public"]).await;
    let status: Value = serde_json::from_str(&ok(d, &["status", "-o", "json"]).await).unwrap();
    assert_eq!(status["override"], "public");
    assert!(status["warnings"][0]
        .as_str()
        .unwrap()
        .contains("public on a gateway"));
    assert_eq!(explain("v2".to_owned()).await, "override");
    let refused = sticky(d, &["override", "public", "--token", "x"]).await;
    assert_eq!(refused.code, 2, "{refused:?}");
}
