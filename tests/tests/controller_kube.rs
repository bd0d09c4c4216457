//! stickyctl against a Kubernetes API over real HTTP, on both backends (see `support`): every
//! command end to end, dry runs, idempotency, racing operators, a controller killed in the
//! middle of a change, and refusals before any write. Every object either server accepts has
//! been validated against Istio's CRD schemas (and the StickyCanary CRD shipped in `istio/`).
//! Fake-only: the conflict storm (409s injected on demand).

#[macro_use]
mod support;

use std::time::Duration;

use api::StickyCanaryStatus;
use runtime::error::Error;
use runtime::reconcile::converge;
use runtime::target::kube::KubeTarget;
use runtime::target::{Doc, Plan, Target};
use serde_json::{json, Value};
use sticky_canary_filter::PluginConfig;
use sticky_canary_tests::all_crds;
use stickyctl::cli::run;
use support::{assert_same, cluster, NS};

on_both_backends! {
    async fn every_command_end_to_end(backend) {
        let Some(c) = backend.cluster() else { return };
        c.init().await;
        // The managed routes go before the user's route to the service: one per version, then
        // stable's for unstamped requests, with the user route's conditions.
        assert_eq!(
            c.route_names(),
            ["sticky-canary-shop-v1", "sticky-canary-shop", "shop"]
        );
        assert_eq!(c.subsets(), ["sticky-canary-v1"]);
        assert_same(&c.plugin_weights(), &json!([{"name": "v1", "weight": 100.0}]));

        c.ok(&["start", "--canary", "v2"]).await;
        assert_eq!(
            c.route_names(),
            [
                "sticky-canary-shop-v1",
                "sticky-canary-shop-v2",
                "sticky-canary-shop",
                "shop"
            ]
        );
        c.ok(&["set-weight", "10"]).await;
        assert_same(
            &c.plugin_weights(),
            &json!([{"name": "v1", "weight": 90.0}, {"name": "v2", "weight": 10.0}]),
        );
        c.ok(&["next"]).await;
        let status = c.status().await;
        assert_eq!(status["phase"], "Progressing");
        assert_eq!(status["stepIndex"], 3);
        assert_eq!(
            status["versions"][1],
            json!({"name": "v2", "weight": 20.0, "drain": false, "role": "canary"})
        );
        c.assert_consistent().await;

        let table = c.ok(&["status"]).await;
        assert!(
            table.contains("in sync") && !table.contains("drifted"),
            "{table}"
        );
        let explain: Value =
            serde_json::from_str(&c.ok(&["explain", "--key", "alice", "-o", "json"]).await).unwrap();
        assert_eq!(explain["reason"], "hash");
        // The pin cookie is the rollout's own in the mesh (rollouts share the gateway and maybe
        // the host), so a pin of the bare default name is some other rollout's and not read.
        let cluster = &c;
        let explain_with = move |cookie: &'static str| async move {
            let out = cluster
                .ok(&[
                    "explain", "--key", "alice", "--cookie", cookie, "-o", "json",
                ])
                .await;
            serde_json::from_str::<Value>(&out).unwrap()
        };
        let pinned = explain_with("sticky-version.prod.shop=v2").await;
        assert_eq!(
            (pinned["version"].as_str(), pinned["reason"].as_str()),
            (Some("v2"), Some("cookie"))
        );
        let foreign = explain_with("sticky-version=v2").await;
        assert_eq!(foreign["reason"], "hash", "{foreign:#}");

        let rendered = c.ok(&["render"]).await;
        let crds = all_crds().unwrap();
        let mut docs = 0;
        for doc in rendered.split("---\n").filter(|d| !d.trim().is_empty()) {
            let value: Value = serde_norway::from_str(doc).unwrap();
            crds.validate(&value)
                .unwrap_or_else(|e| panic!("rendered {} invalid: {e}", value["kind"]));
            docs += 1;
        }
        assert_eq!(docs, 3);

        // Promote switches and leaves v1 draining, routed, until `promote --finish`.
        let out = c.ok(&["promote"]).await;
        assert!(
            out.contains("promote v2") && !out.contains("remove v1"),
            "{out}"
        );
        assert!(out.contains("v1 drains"), "{out}");
        assert_same(
            &c.plugin_weights(),
            &json!([{"name": "v2", "weight": 100.0}, {"name": "v1", "weight": 0.0, "drain": true}]),
        );
        assert_eq!(c.subsets(), ["sticky-canary-v2", "sticky-canary-v1"]);
        assert_eq!(c.status().await["phase"], "Promoting");
        c.assert_consistent().await;
        let again = c.ok(&["promote"]).await;
        assert!(again.contains("nothing to change"), "{again}");
        let out = c.ok(&["promote", "--finish"]).await;
        assert!(out.contains("promote: remove v1"), "{out}");
        assert_eq!(
            c.route_names(),
            ["sticky-canary-shop-v2", "sticky-canary-shop", "shop"]
        );
        assert_eq!(c.subsets(), ["sticky-canary-v2"]);
        assert_eq!(c.status().await["phase"], "Promoted");
        c.assert_consistent().await;

        c.ok(&["start", "--canary", "v3"]).await;
        c.ok(&["set-weight", "50"]).await;
        c.ok(&["abort"]).await;
        assert_same(&c.plugin_weights(), &json!([{"name": "v2", "weight": 100.0}]));
        assert_eq!(c.status().await["phase"], "Aborted");
        c.assert_consistent().await;
        let status: StickyCanaryStatus = serde_json::from_value(c.rollout()["status"].clone()).unwrap();
        let actions: Vec<&str> = status.history.iter().map(|h| h.action.as_str()).collect();
        // Every command is recorded as its Kubernetes user's.
        let by = |action: &str| format!("{}: {action}", c.user());
        let expected: Vec<String> = [
                "init v1",
                "start v2",
                "set-weight 10",
                "next 20",
                "promote v2",
                "promote: remove v1",
                "start v3",
                "set-weight 50",
                "abort v3",
                "abort: remove v3"
            ]
        .map(by)
        .into();
        assert_eq!(actions, expected);
    }
}

on_both_backends! {
    async fn dry_run_prints_a_diff_and_writes_nothing(backend) {
        let Some(c) = backend.cluster() else { return };
        c.clear_writes();
        let out = c
            .ok(&["init", "--service", "shop", "--stable", "v1", "--dry-run"])
            .await;
        assert!(
            out.contains("+++ b/WasmPlugin istio-system/sticky-canary-gateway-istio-ingressgateway"),
            "{out}"
        );
        assert!(c.writes().is_empty(), "{:?}", c.writes());
        c.init().await;
        c.ok(&["start", "--canary", "v2"]).await;
        c.clear_writes();
        for args in [
            &["set-weight", "10", "--dry-run"][..],
            &["next", "--dry-run"],
            &["abort", "--dry-run"],
        ] {
            let out = c.ok(args).await;
            assert!(out.contains("--- a/StickyCanary shop"), "{args:?}: {out}");
        }
        // At 0% nothing has reached the canary: promote is refused, dry run or not.
        let refused = c.sticky(&["promote", "--dry-run"]).await;
        assert_eq!(refused.code, 2, "{}{}", refused.stdout, refused.stderr);
        assert!(refused.stderr.contains("is at 0%"), "{}", refused.stderr);
        let out = c.ok(&["set-weight", "10", "--dry-run"]).await;
        assert!(
            out.contains("-    weight: 100.0") && out.contains("+    weight: 90.0"),
            "{out}"
        );
        assert!(
            c.writes().is_empty(),
            "{:?}",
            c.writes()
        );
    }
}

on_both_backends! {
    async fn the_same_command_twice_writes_once(backend) {
        let Some(c) = backend.cluster() else { return };
        c.init().await;
        c.ok(&["start", "--canary", "v2"]).await;
        c.ok(&["set-weight", "10"]).await;
        for args in [
            &["set-weight", "10"][..],
            &["start", "--canary", "v2"],
            &["init", "--service", "shop", "--stable", "v1"],
        ] {
            c.clear_writes();
            c.ok(args).await;
            assert!(
                c.writes().is_empty(),
                "{args:?}: {:?}",
                c.writes()
            );
        }
        c.ok(&["promote"]).await;
        c.clear_writes();
        c.ok(&["promote"]).await;
        assert!(c.writes().is_empty(), "{:?}", c.writes());
    }
}

on_both_backends! {
    async fn racing_operators_end_consistent(backend) {
        let Some(c) = backend.cluster() else { return };
        c.init().await;
        c.ok(&["start", "--canary", "v2"]).await;
        for round in 0..3 {
            let (a, b) = tokio::join!(
                c.sticky(&["set-weight", "10"]),
                c.sticky(&["set-weight", "20"])
            );
            assert_eq!((a.code, b.code), (0, 0), "round {round}: {a:?} {b:?}");
            let weight = c.rollout()["spec"]["versions"][1]["weight"]
                .as_f64()
                .unwrap();
            assert!(weight == 10.0 || weight == 20.0, "{weight}");
            c.assert_consistent().await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conflict_storm_still_converges() {
    let Some(c) = cluster() else { return };
    let server = c.fake().expect("the fake API server");
    c.init().await;
    c.ok(&["start", "--canary", "v2"]).await;
    server.fail_next_writes(12);
    c.ok(&["set-weight", "30"]).await;
    assert_same(
        &c.plugin_weights(),
        &json!([{"name": "v1", "weight": 70.0}, {"name": "v2", "weight": 30.0}]),
    );
    assert!(
        server
            .write_requests()
            .iter()
            .filter(|r| r.status == 409)
            .count()
            >= 12
    );
    c.assert_consistent().await;
}

/// A target that dies (like a killed process) after a number of object writes.
struct Killed {
    inner: KubeTarget,
    writes_left: std::sync::atomic::AtomicUsize,
}

impl Target for Killed {
    async fn load(&self) -> Result<Option<api::StickyCanary>, Error> {
        self.inner.load().await
    }
    async fn save(&self, c: &api::StickyCanary) -> Result<api::StickyCanary, Error> {
        self.inner.save(c).await
    }
    async fn save_status(
        &self,
        c: &api::StickyCanary,
        s: &StickyCanaryStatus,
    ) -> Result<(), Error> {
        self.inner.save_status(c, s).await
    }
    async fn plan(&self, c: &api::StickyCanary) -> Result<Plan, Error> {
        self.inner.plan(c).await
    }
    fn plugin_config(&self, c: &api::StickyCanary) -> PluginConfig {
        self.inner.plugin_config(c)
    }
    async fn keep_override_token(
        &self,
        c: &api::StickyCanary,
        token: &str,
    ) -> Result<String, Error> {
        self.inner.keep_override_token(c, token).await
    }
    async fn write(&self, doc: &Doc) -> Result<(), Error> {
        let left = self.writes_left.load(std::sync::atomic::Ordering::SeqCst);
        if left == 0 {
            return Err(Error::Runtime("killed".into()));
        }
        self.writes_left
            .store(left - 1, std::sync::atomic::Ordering::SeqCst);
        self.inner.write(doc).await
    }
}

on_both_backends! {
    async fn a_controller_killed_mid_change_converges_after_restart(backend) {
        let Some(c) = backend.cluster() else { return };
        c.init().await;
        c.ok(&["start", "--canary", "v2"]).await;
        c.ok(&["set-weight", "10"]).await;
        // Someone edits the rollout directly (GitOps): promote's first step, which rewrites the
        // WasmPlugin and the VirtualService.
        c.edit_rollout(|rollout| {
            rollout["spec"]["versions"] = json!([
                {"name": "v2", "weight": 100.0},
                {"name": "v1", "weight": 0.0, "drain": true}
            ]);
            rollout["spec"]["retiring"] = json!("v1");
        });
        let client = c.kube_client();
        let killed = Killed {
            inner: KubeTarget::new(client.clone(), NS, "shop"),
            writes_left: 1.into(),
        };
        let err = converge(&killed).await.expect_err("killed after one write");
        assert!(err.to_string().contains("killed"));
        assert_eq!(c.status().await["inSync"], false, "the change is half done");

        let controller = tokio::spawn(runtime::controller::run(client, Some(NS), None::<prometheus::Prometheus>));
        let converged = async {
            loop {
                if c.status().await["inSync"] == true
                    && c.rollout()["status"]["lastApplied"].is_object()
                {
                    let observed = &c.rollout()["status"]["observedGeneration"];
                    if *observed == c.rollout()["metadata"]["generation"] {
                        break;
                    }
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        };
        tokio::time::timeout(support::PATIENCE, converged)
            .await
            .expect("the restarted controller converges");
        controller.abort();
        assert_same(
            &c.plugin_weights(),
            &json!([{"name": "v2", "weight": 100.0}, {"name": "v1", "weight": 0.0, "drain": true}]),
        );
        c.assert_consistent().await;
    }
}

on_both_backends! {
    async fn bad_input_is_refused_before_any_write(backend) {
        let Some(c) = backend.cluster_with(json!([
            {"name": "legacy-everything", "route": [{"destination": {"host": "legacy"}}]},
            {"name": "shop", "match": [{"uri": {"prefix": "/shop"}}], "route": [{"destination": {"host": "shop"}}]}
        ])) else {
            return;
        };
        c.clear_writes();
        let out = c
            .sticky(&["init", "--service", "shop", "--stable", "v1"])
            .await;
        assert_eq!(out.code, 2, "{out:?}");
        assert!(
            out.stderr.contains("\"legacy-everything\""),
            "{}",
            out.stderr
        );
        assert!(c.writes().is_empty(), "{:?}", c.writes());
        // One cluster at a time: the real backend's next one waits for this one's turn.
        drop(c);

        let Some(c) = backend.cluster() else { return };
        c.init().await;
        c.ok(&["start", "--canary", "v2"]).await;
        c.clear_writes();
        let cases: [(&[&str], &str); 7] = [
            (&["set-weight", "150"], "must be between 0 and 100"),
            (&["set-weight", "10.005"], "two decimals"),
            (&["set-weight", "ten"], "invalid value"),
            (&["start", "--canary", "v 3"], "not a valid version name"),
            (&["start", "--canary", "v3"], "already running"),
            (
                &[
                    "init",
                    "--service",
                    "shop",
                    "--stable",
                    "v1",
                    "--name",
                    "shop",
                    "--steps",
                    "5,1",
                ],
                "spec.steps[1]",
            ),
            (
                &[
                    "init",
                    "--service",
                    "web",
                    "--stable",
                    "v1",
                    "--plugin-sha256",
                    "sha256:0123",
                ],
                "--plugin-sha256 \"sha256:0123\": expected 64 lowercase hex digits",
            ),
        ];
        for (args, needle) in cases {
            let out = c.sticky(args).await;
            assert_eq!(out.code, 2, "{args:?}: {out:?}");
            assert!(out.stderr.contains(needle), "{args:?}: {}", out.stderr);
        }
        assert!(
            c.writes().is_empty(),
            "{:?}",
            c.writes()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn against_a_real_cluster_when_given() {
    let Ok(kubeconfig) = std::env::var("STICKY_E2E_KUBECONFIG") else {
        eprintln!("NOT RUN: set STICKY_E2E_KUBECONFIG to run stickyctl against a real cluster");
        return;
    };
    let namespace = std::env::var("STICKY_E2E_NAMESPACE").unwrap_or_else(|_| "default".into());
    let out = run([
        "stickyctl",
        "--kubeconfig",
        &kubeconfig,
        "-n",
        &namespace,
        "status",
        "-o",
        "json",
    ])
    .await;
    // Reaching the API is what this proves; a namespace without a rollout says so with code 2.
    assert!(
        out.code == 0 || out.stderr.contains("no StickyCanary"),
        "{out:?}"
    );
}
