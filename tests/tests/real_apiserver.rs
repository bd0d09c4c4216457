//! What only the real kube-apiserver shows (real backend only, see `support`): Istio's CEL
//! rules, which the fake's schema validation lists but does not enforce, refusing an object
//! stickyctl would write; and the controller running with nothing but the rights that
//! `istio/rbac.yaml` grants its ServiceAccount, on the real RBAC authorizer.

mod support;

use api::{StickyCanary, StickyCanarySpec};
use runtime::error::Error;
use runtime::reconcile::converge;
use runtime::target::kube::KubeTarget;
use serde_json::{json, Value};
use sticky_canary_filter::VersionWeight;
use sticky_canary_tests::repo_root;
use support::{
    assert_same, eventually, start_controller_with, with_plane, Backend, GATEWAY_NS,
    GATEWAY_PLUGIN, NS, SC, WP,
};

const VS: (&str, &str) = ("networking.istio.io/v1", "VirtualService");
const DR: (&str, &str) = ("networking.istio.io/v1", "DestinationRule");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wasmplugin_istios_cel_rule_refuses_is_reported_and_nothing_is_half_applied() {
    let Some(c) = Backend::Real.cluster() else {
        return;
    };
    let user_vs = c.get(VS.0, VS.1, "shop");
    c.clear_writes();
    // WasmPlugin's `url` has a CEL rule (schemes http, https, oci, file); stickyctl's own
    // checks and the StickyCanary schema let an ftp:// URL through to the WasmPlugin.
    let out = c
        .sticky(&[
            "init",
            "--service",
            "shop",
            "--stable",
            "v1",
            "--plugin-url",
            "ftp://registry.internal/sticky-canary/filter.wasm",
        ])
        .await;
    assert_eq!(out.code, 2, "refused before any write: {out:?}");
    let plugin = format!("WasmPlugin {GATEWAY_NS}/{GATEWAY_PLUGIN}");
    assert!(
        out.stderr
            .contains(&format!("the API server refuses {plugin}: "))
            && out.stderr.contains(
                "spec.url: Invalid value: \"ftp://registry.internal/sticky-canary/filter.wasm\": \
                 url must have schema one of [http, https, file, oci]"
            )
            && out.stderr.contains("nothing was written"),
        "{}",
        out.stderr
    );
    // Nothing was written: neither the rollout nor any Istio object.
    assert!(c.writes().is_empty(), "{:?}", c.writes());
    assert!(c.get_in(SC.0, SC.1, NS, "shop").is_none(), "no rollout");
    assert!(c.gateway_plugin().is_none(), "no WasmPlugin");
    assert!(
        c.get_in(DR.0, DR.1, NS, "shop").is_none(),
        "no DestinationRule"
    );
    assert_eq!(c.get(VS.0, VS.1, "shop"), user_vs, "the user's routes only");

    // The same rollout applied by GitOps: converging it (what the controller's reconcile
    // does) is refused by the dry run before any write, with the server's words.
    let mut rollout = rollout_at(10.0);
    rollout["spec"]["plugin"]["url"] = json!("ftp://registry.internal/sticky-canary/filter.wasm");
    c.create(rollout).expect("create the rollout (GitOps)");
    c.clear_writes();
    let target = KubeTarget::new(c.kube_client(), NS, "shop");
    match converge(&target).await {
        Err(err @ Error::Invalid(_)) => {
            let message = err.to_string();
            assert!(
                message.starts_with(&format!("the API server refuses {plugin}: "))
                    && message.contains("url must have schema one of"),
                "{message}"
            );
        }
        other => panic!("converging a rollout the server refuses: {other:?}"),
    }
    assert!(c.writes().is_empty(), "{:?}", c.writes());
    // The controller fails the same way: it records that, and writes nothing. (Not which
    // error: kube-rs's recorder makes later Events of one reason a series of the first, whose
    // note stays, and the first may be a retried conflict on adding the finalizer.)
    let _controller = c.start_controller();
    eventually("the failure is recorded as an Event", || {
        c.list("events.k8s.io/v1", "Event")
            .iter()
            .any(|e| e["reason"] == "ReconcileFailed" && e["regarding"]["name"] == "shop")
    })
    .await;
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    assert!(c.gateway_plugin().is_none(), "no WasmPlugin");
    assert!(
        c.get_in(DR.0, DR.1, NS, "shop").is_none(),
        "no DestinationRule"
    );
    assert_eq!(c.get(VS.0, VS.1, "shop"), user_vs, "the user's routes only");
}

/// The rollout `shop` with a canary at `weight` percent, as a GitOps sync would create it.
fn rollout_at(weight: f64) -> Value {
    let mut spec = StickyCanarySpec::new("shop", "v1");
    spec.versions = vec![
        VersionWeight::new("v1", 100.0 - weight),
        VersionWeight::new("v2", weight),
    ];
    let mut rollout = serde_json::to_value(StickyCanary::new("shop", spec)).expect("a rollout");
    rollout["metadata"]["namespace"] = json!(NS);
    rollout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_controller_reconciles_with_the_rights_of_its_service_account_in_rbac_yaml() {
    let Some(c) = Backend::Real.cluster() else {
        return;
    };
    let rbac =
        std::fs::read_to_string(repo_root().join("istio/rbac.yaml")).expect("istio/rbac.yaml");
    with_plane(move |plane| plane.apply_yaml(&rbac)).expect("apply istio/rbac.yaml");
    let kubeconfig = with_plane(|plane| {
        plane.service_account_kubeconfig("sticky-canary-system", "stickyctl-controller")
    })
    .expect("a token of the controller's ServiceAccount");
    let (client, _) = runtime::target::kube::client(Some(&kubeconfig))
        .await
        .expect("a client as the controller's ServiceAccount");
    // The authorizer is real: what the role does not grant is refused.
    let vs_api: kube::Api<kube::api::DynamicObject> = kube::Api::namespaced_with(
        client.clone(),
        NS,
        &kube::api::ApiResource::from_gvk_with_plural(
            &kube::api::GroupVersionKind::gvk("networking.istio.io", "v1", "VirtualService"),
            "virtualservices",
        ),
    );
    match vs_api.delete("shop", &Default::default()).await {
        Err(kube::Error::Api(status)) => assert_eq!(status.code, 403, "{status:?}"),
        other => panic!("the controller may not delete VirtualServices: {other:?}"),
    }

    c.create(rollout_at(10.0))
        .expect("create the rollout (GitOps)");
    // A plugin of earlier versions, which the controller deletes once the shared one is in.
    c.seed_legacy_plugin();
    let controller = start_controller_with(client);
    eventually("the rollout is applied", || {
        c.rollout()["status"]["lastApplied"].is_object()
    })
    .await;
    assert_same(
        &c.plugin_weights(),
        &json!([{"name": "v1", "weight": 90.0}, {"name": "v2", "weight": 10.0}]),
    );
    assert_eq!(c.subsets(), ["sticky-canary-v1", "sticky-canary-v2"]);
    eventually("the legacy plugin is gone", || c.legacy_plugin().is_none()).await;
    let applied = c.route_names();
    assert_eq!(
        applied,
        [
            "sticky-canary-shop-v1",
            "sticky-canary-shop-v2",
            "sticky-canary-shop",
            "shop"
        ]
    );
    let finalizers = c.rollout()["metadata"]["finalizers"].clone();
    assert_eq!(finalizers, json!(["stickycanary.io/cleanup"]));

    // New weights, and a hand edit repaired through the watches.
    c.edit_rollout(|sc| {
        sc["spec"]["versions"] =
            json!([{"name": "v1", "weight": 80.0}, {"name": "v2", "weight": 20.0}]);
    });
    eventually("the new weights are applied", || {
        c.plugin_weights()[1]["weight"] == 20.0
    })
    .await;
    c.update(VS.0, VS.1, NS, "shop", |vs| {
        if let Some(http) = vs["spec"]["http"].as_array_mut() {
            http.retain(|r| r["name"] != "sticky-canary-shop-v2");
        }
    })
    .expect("drop a managed route by hand");
    eventually("the route is repaired", || c.route_names() == applied).await;
    eventually("the controller recorded Events", || {
        c.list("events.k8s.io/v1", "Event")
            .iter()
            .any(|e| e["regarding"]["name"] == "shop" && e["reason"] == "Applied")
    })
    .await;

    // Deleting the rollout: the finalizer's clean-up, with the same rights.
    c.delete(SC.0, SC.1, NS, "shop")
        .expect("kubectl delete stickycanary shop");
    eventually("the rollout is cleaned up and gone", || {
        c.get_in(SC.0, SC.1, NS, "shop").is_none()
    })
    .await;
    drop(controller);
    assert_eq!(c.route_names(), ["shop"]);
    // The DestinationRule the controller created, with nothing of the user's, went too.
    assert_eq!(c.get_in(DR.0, DR.1, NS, "shop"), None);
    assert!(c.get_in(WP.0, WP.1, GATEWAY_NS, GATEWAY_PLUGIN).is_none());
}
