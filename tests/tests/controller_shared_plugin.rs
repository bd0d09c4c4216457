//! Rollouts sharing the ingress gateway's WasmPlugin, on both backends (see `support`): each
//! rollout edits only its own entry, leaving keeps the others' and the last one to leave
//! deletes the plugin; the single-rollout plugin of earlier versions is deleted once the
//! shared one carries the rollout; and rollouts writing the shared plugin at the same time
//! (a 409 on it, or the plugin deleted under a writer) retry until neither entry is lost. The
//! races are forced by a wrapper target that runs the other writer between a read and a write,
//! which works on either server; only the counts of requests (how many 409s, which DELETEs, in
//! which order) are checked on the fake alone, which logs them.

#[macro_use]
mod support;

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use api::{StickyCanary, StickyCanarySpec, StickyCanaryStatus};
use runtime::error::Error;
use runtime::reconcile::{converge, teardown};
use runtime::target::kube::KubeTarget;
use runtime::target::{Doc, Plan, Target};
use serde_json::{json, Value};
use sticky_canary_filter::PluginConfig;
use support::{
    assert_same, eventually, names, Backend, Cluster, GATEWAY_NS, GATEWAY_PLUGIN, LEGACY_PLUGIN,
    NS, WP,
};

const SC: (&str, &str) = ("stickycanary.io/v1alpha1", "StickyCanary");
const PLUGINS_IN_GATEWAY_NS: &str =
    "/apis/extensions.istio.io/v1alpha1/namespaces/istio-system/wasmplugins";

/// One VirtualService `shop` with the user's routes to two services, each with its rollout.
fn two_services(backend: Backend) -> Option<Cluster> {
    backend.cluster_with(json!([
        {"name": "cart", "match": [{"uri": {"prefix": "/cart"}}],
         "route": [{"destination": {"host": "cart"}}]},
        {"name": "shop", "match": [{"uri": {"prefix": "/shop"}}],
         "route": [{"destination": {"host": "shop", "port": {"number": 8080}}}]}
    ]))
}

impl Cluster {
    /// `stickyctl init` of rollout `cart` (service `cart`, in the VirtualService `shop`).
    async fn init_cart(&self) {
        self.ok(&[
            "init",
            "--service",
            "cart",
            "--stable",
            "v1",
            "--virtual-service",
            "shop",
        ])
        .await;
    }

    /// Both rollouts, each with a canary at a different weight.
    async fn two_rollouts(&self) {
        self.init().await;
        self.init_cart().await;
        self.ok(&["--name", "shop", "start", "--canary", "v2"])
            .await;
        self.ok(&["--name", "shop", "set-weight", "10"]).await;
        self.ok(&["--name", "cart", "start", "--canary", "v2"])
            .await;
        self.ok(&["--name", "cart", "set-weight", "30"]).await;
    }

    /// The versions rollout `name` asks for.
    fn rollout_versions(&self, name: &str) -> Value {
        self.get_in(SC.0, SC.1, NS, name)
            .unwrap_or_else(|| panic!("rollout {name} missing"))["spec"]["versions"]
            .clone()
    }

    /// Every rollout still there has its entry in the shared plugin with its versions, and
    /// the plugin has no other entry.
    fn assert_entries(&self, rollouts: &[&str]) {
        let expected: Vec<String> = rollouts.iter().map(|r| format!("{NS}/{r}")).collect();
        assert_eq!(self.plugin_rollouts(), expected);
        for rollout in rollouts {
            let entry = self.plugin_entry(rollout).unwrap();
            assert!(
                render::same(
                    &entry["config"]["versions"],
                    &self.rollout_versions(rollout)
                ),
                "{rollout}: {entry:#} against {:#}",
                self.rollout_versions(rollout)
            );
        }
    }

    /// The requests to the gateway's plugin that the API server answered with `status`;
    /// `None` on the real backend, whose requests no test can count.
    fn plugin_requests_with(&self, status: u16) -> Option<usize> {
        let server = self.fake()?;
        Some(
            server
                .requests()
                .iter()
                .filter(|r| r.path.starts_with(PLUGINS_IN_GATEWAY_NS) && r.status == status)
                .count(),
        )
    }
}

on_both_backends! {
    async fn two_rollouts_share_the_gateways_plugin_and_leave_it_in_turn(backend) {
        let Some(c) = two_services(backend) else { return };
        c.two_rollouts().await;
        c.assert_entries(&["cart", "shop"]);
        let cart = c.plugin_entry("cart").unwrap();
        let shop = c.plugin_entry("shop").unwrap();
        assert_eq!(cart["services"], json!(["cart.prod.svc.cluster.local"]));
        assert_eq!(shop["services"], json!(["shop.prod.svc.cluster.local"]));
        // Each rollout pins with its own cookie; the client id is one for both.
        assert_eq!(cart["config"]["cookie"]["name"], "sticky-version.prod.cart");
        assert_eq!(shop["config"]["cookie"]["name"], "sticky-version.prod.shop");
        assert_eq!(
            cart["config"]["cookie"]["idName"],
            shop["config"]["cookie"]["idName"]
        );
        // Each rollout's managed routes go before its own service's route, with its conditions.
        assert_eq!(
            c.route_names(),
            [
                "sticky-canary-cart-v1",
                "sticky-canary-cart-v2",
                "sticky-canary-cart",
                "cart",
                "sticky-canary-shop-v1",
                "sticky-canary-shop-v2",
                "sticky-canary-shop",
                "shop"
            ]
        );

        // A change of one rollout writes its own entry only.
        c.clear_writes();
        c.ok(&["--name", "shop", "set-weight", "20"]).await;
        assert_eq!(
            c.plugin_entry("cart").unwrap(),
            cart,
            "cart's entry untouched"
        );
        c.assert_entries(&["cart", "shop"]);
        assert_eq!(c.plugin_weights()[1]["weight"], 20.0);
        // The other rollout is still in sync: its status does not depend on the other entries.
        let status = c.ok(&["--name", "cart", "status", "-o", "json"]).await;
        let status: Value = serde_json::from_str(&status).unwrap();
        assert_eq!(status["inSync"], true, "{status:#}");

        // Deleting one keeps the other's entry, exactly, and its routes.
        c.ok(&["--name", "shop", "delete"]).await;
        c.assert_entries(&["cart"]);
        assert_eq!(c.plugin_entry("cart").unwrap(), cart);
        assert_eq!(
            c.route_names(),
            [
                "sticky-canary-cart-v1",
                "sticky-canary-cart-v2",
                "sticky-canary-cart",
                "cart",
                "shop"
            ]
        );
        // Deleting the last one deletes the plugin.
        c.clear_writes();
        c.ok(&["--name", "cart", "delete"]).await;
        assert!(c.gateway_plugin().is_none(), "the last rollout deleted it");
        assert_eq!(c.route_names(), ["cart", "shop"]);
        if let Some(server) = c.fake() {
            let deletes: Vec<_> = server
                .requests()
                .into_iter()
                .filter(|r| r.method == "DELETE" && r.path.starts_with(PLUGINS_IN_GATEWAY_NS))
                .collect();
            assert_eq!(deletes.len(), 1, "{deletes:?}");
            assert_eq!(deletes[0].status, 200);
        } else {
            let plugin = format!("WasmPlugin {GATEWAY_NS}/{GATEWAY_PLUGIN}");
            assert!(c.writes().contains(&format!("deleted: {plugin}")), "{:?}", c.writes());
        }
    }
}

on_both_backends! {
    async fn a_delete_of_the_plugin_is_refused_when_it_changed_since_it_was_read(backend) {
        let Some(c) = backend.cluster() else { return };
        c.init().await;
        let client = c.kube_client();
        let shop = KubeTarget::new(client, NS, "shop");
        let canary = shop.load().await.unwrap().unwrap();
        // The rollout's teardown, as read now: the last rollout leaving deletes the plugin.
        let docs = shop.teardown(&canary).await.unwrap();
        let delete = docs
            .iter()
            .find(|d| d.desired.is_none())
            .expect("the plugin's deletion");
        assert_eq!(
            delete.label,
            format!("WasmPlugin {GATEWAY_NS}/{GATEWAY_PLUGIN}")
        );
        // Another rollout joins the plugin between that read and the delete.
        c.update(WP.0, WP.1, GATEWAY_NS, GATEWAY_PLUGIN, |wp| {
                let mut other = wp["spec"]["pluginConfig"]["rollouts"][0].clone();
                other["name"] = json!("prod/cart");
                other["services"] = json!(["cart.prod.svc.cluster.local"]);
                wp["spec"]["pluginConfig"]["rollouts"]
                    .as_array_mut()
                    .unwrap()
                    .insert(0, other);
            })
            .unwrap();
        let err = shop.write(delete).await.expect_err("a stale delete");
        assert!(matches!(err, Error::Conflict(_)), "{err}");
        assert_eq!(
            c.plugin_rollouts(),
            ["prod/cart", "prod/shop"],
            "not deleted"
        );
        // Tearing down again reads the plugin again and leaves the other's entry.
        teardown(&shop, &canary).await.unwrap();
        assert_eq!(c.plugin_rollouts(), ["prod/cart"]);
        // A plugin already gone is no error: what the delete wanted is done.
        let gone = c.gateway_plugin().unwrap();
        c.delete(WP.0, WP.1, GATEWAY_NS, GATEWAY_PLUGIN)
            .unwrap();
        let doc = Doc {
            label: format!("WasmPlugin {GATEWAY_NS}/{GATEWAY_PLUGIN}"),
            current: Some(gone),
            desired: None,
            owned: Value::Null,
        };
        shop.write(&doc).await.expect("deleting a deleted plugin");
    }
}

on_both_backends! {
    async fn the_plugin_of_earlier_versions_goes_once_the_shared_one_is_written(backend) {
        let Some(c) = backend.cluster() else { return };
        c.init().await;
        // As an earlier version left the cluster: the rollout's own plugin, in its namespace.
        c.delete(WP.0, WP.1, GATEWAY_NS, GATEWAY_PLUGIN)
            .unwrap();
        c.seed_legacy_plugin();
        // Neither a user's plugin nor another rollout's plugin of earlier versions is touched.
        let users = json!({"apiVersion": WP.0, "kind": WP.1,
            "metadata": {"name": "sticky-canary-shop-auth", "namespace": NS},
            "spec": {"url": "oci://registry.internal/auth:1", "pluginConfig": {"versions": []}}});
        c.create(users).unwrap();
        let mut other = c.legacy_plugin().unwrap();
        other["metadata"] = json!({"name": "sticky-canary-cart", "namespace": NS,
            "labels": {"app.kubernetes.io/managed-by": "stickyctl"}});
        c.create(other).unwrap();

        c.clear_writes();
        c.ok(&["start", "--canary", "v2"]).await;
        assert!(c.legacy_plugin().is_none(), "the legacy plugin is gone");
        c.assert_consistent().await;
        let left: Vec<String> = c
            .list(WP.0, WP.1)
            .iter()
            .map(|p| {
                format!(
                    "{}/{}",
                    p["metadata"]["namespace"].as_str().unwrap(),
                    p["metadata"]["name"].as_str().unwrap()
                )
            })
            .collect();
        assert_eq!(
            left,
            [
                format!("{GATEWAY_NS}/{GATEWAY_PLUGIN}"),
                format!("{NS}/sticky-canary-cart"),
                format!("{NS}/sticky-canary-shop-auth"),
            ]
        );
        // Make before break: the shared plugin is written before the legacy one goes, so the
        // gateway never runs without the rollout's filter (in the fake's request log).
        let Some(server) = c.fake() else { return };
        let writes: Vec<String> = server
            .write_requests()
            .iter()
            .filter(|r| r.path.contains("/wasmplugins"))
            .map(|r| format!("{} {}", r.method, r.path))
            .collect();
        assert_eq!(
            writes,
            [
                format!("POST {PLUGINS_IN_GATEWAY_NS}"),
                format!(
                    "DELETE /apis/extensions.istio.io/v1alpha1/namespaces/{NS}/wasmplugins/{LEGACY_PLUGIN}"
                ),
            ]
        );
    }
}

on_both_backends! {
    async fn the_controller_migrates_the_plugin_of_earlier_versions(backend) {
        let Some(c) = backend.cluster() else { return };
        let mut rollout = serde_json::to_value(StickyCanary::new(
            "shop",
            StickyCanarySpec::new("shop", "v1"),
        ))
        .unwrap();
        rollout["metadata"]["namespace"] = json!(NS);
        c.create(rollout).unwrap();
        c.seed_legacy_plugin();
        let _controller = c.start_controller();
        eventually("the legacy plugin is replaced by the shared one", || {
            c.legacy_plugin().is_none() && c.plugin_entry("shop").is_some()
        })
        .await;
        assert_same(&c.plugin_weights(), &json!([{"name": "v1", "weight": 100.0}]));
    }
}

on_both_backends! {
    async fn racing_rollouts_on_one_gateway_keep_both_entries(backend) {
        let Some(c) = two_services(backend) else { return };
        // Both create the plugin at once: one POST wins, the other gets 409 AlreadyExists,
        // re-reads and adds its entry to the winner's plugin.
        let (a, b) = tokio::join!(
            c.sticky(&["init", "--service", "shop", "--stable", "v1"]),
            c.sticky(&[
                "init",
                "--service",
                "cart",
                "--stable",
                "v1",
                "--virtual-service",
                "shop"
            ])
        );
        assert_eq!((a.code, b.code), (0, 0), "{a:?} {b:?}");
        c.assert_entries(&["cart", "shop"]);
        for name in ["shop", "cart"] {
            c.ok(&["--name", name, "start", "--canary", "v2"]).await;
        }
        for round in 0..3 {
            let (shop, cart) = (format!("{}", 10 + round), format!("{}", 40 + round));
            let shop_args = ["--name", "shop", "set-weight", &shop];
            let cart_args = ["--name", "cart", "set-weight", &cart];
            let (a, b) = tokio::join!(c.sticky(&shop_args), c.sticky(&cart_args));
            assert_eq!((a.code, b.code), (0, 0), "round {round}: {a:?} {b:?}");
            c.assert_entries(&["cart", "shop"]);
            assert_eq!(
                c.plugin_entry("cart").unwrap()["config"]["versions"][1]["weight"],
                40.0 + f64::from(round)
            );
            assert_eq!(
                c.plugin_weights()[1]["weight"],
                10.0 + f64::from(round),
                "round {round}"
            );
        }
        // One leaves while the other changes: the one staying keeps its entry, and the plugin.
        let (a, b) = tokio::join!(
            c.sticky(&["--name", "shop", "delete"]),
            c.sticky(&["--name", "cart", "set-weight", "50"])
        );
        assert_eq!((a.code, b.code), (0, 0), "{a:?} {b:?}");
        c.assert_entries(&["cart"]);
        let status = c.ok(&["--name", "cart", "status", "-o", "json"]).await;
        let status: Value = serde_json::from_str(&status).unwrap();
        assert_eq!(status["inSync"], true, "{status:#}");
        assert!(
            names(&c.get("networking.istio.io/v1", "VirtualService", "shop")["spec"]["http"])
                .iter()
                .all(|r| !r.starts_with("sticky-canary-shop"))
        );
        // The last one leaves (deleting the plugin) while another joins: the plugin ends with
        // the newcomer's entry, whichever wrote first.
        let (a, b) = tokio::join!(
            c.sticky(&["--name", "cart", "delete"]),
            c.sticky(&["init", "--service", "shop", "--stable", "v1"])
        );
        assert_eq!((a.code, b.code), (0, 0), "{a:?} {b:?}");
        c.assert_entries(&["shop"]);
        c.assert_consistent().await;
    }
}

/// Work another process does at a chosen moment, like a racing `stickyctl` of another rollout.
type Interleaved = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A rollout's target that runs `interleave` just before its first write of a WasmPlugin,
/// after the plan it writes was read: whatever `interleave` writes makes that plan stale.
struct RacedTarget {
    inner: KubeTarget,
    interleave: Mutex<Option<Interleaved>>,
    raced: AtomicBool,
}

impl RacedTarget {
    fn new(inner: KubeTarget, interleave: Interleaved) -> Self {
        RacedTarget {
            inner,
            interleave: Mutex::new(Some(interleave)),
            raced: AtomicBool::new(false),
        }
    }
}

impl Target for RacedTarget {
    async fn load(&self) -> Result<Option<StickyCanary>, Error> {
        self.inner.load().await
    }
    async fn save(&self, c: &StickyCanary) -> Result<StickyCanary, Error> {
        self.inner.save(c).await
    }
    async fn save_status(&self, c: &StickyCanary, s: &StickyCanaryStatus) -> Result<(), Error> {
        self.inner.save_status(c, s).await
    }
    async fn plan(&self, c: &StickyCanary) -> Result<Plan, Error> {
        self.inner.plan(c).await
    }
    fn plugin_config(&self, c: &StickyCanary) -> PluginConfig {
        self.inner.plugin_config(c)
    }
    async fn keep_override_token(&self, c: &StickyCanary, token: &str) -> Result<String, Error> {
        self.inner.keep_override_token(c, token).await
    }
    async fn write(&self, doc: &Doc) -> Result<(), Error> {
        if doc.label.starts_with("WasmPlugin ") {
            let other = self.interleave.lock().unwrap().take();
            if let Some(other) = other {
                other.await;
                self.raced.store(true, Ordering::SeqCst);
            }
        }
        self.inner.write(doc).await
    }
}

on_both_backends! {
    async fn a_409_on_the_shared_plugin_is_retried_without_losing_the_other_rollouts_entry(backend) {
        let Some(c) = two_services(backend) else { return };
        c.two_rollouts().await;
        // Both rollouts change (GitOps) and both converge; `cart` writes the shared plugin
        // after `shop` read it and before `shop` writes it.
        for (name, weight) in [("shop", 25.0), ("cart", 35.0)] {
            c.update(SC.0, SC.1, NS, name, |sc| {
                    sc["spec"]["versions"] = json!([
                        {"name": "v1", "weight": 100.0 - weight},
                        {"name": "v2", "weight": weight}
                    ]);
                })
                .unwrap();
        }
        let client = c.kube_client();
        let cart = KubeTarget::new(client.clone(), NS, "cart");
        let shop = RacedTarget::new(
            KubeTarget::new(client, NS, "shop"),
            Box::pin(async move {
                converge(&cart).await.expect("cart converges");
            }),
        );
        c.clear_writes();
        converge(&shop).await.expect("shop converges after the 409");
        assert!(shop.raced.load(Ordering::SeqCst), "cart wrote in between");
        if let Some(conflicts) = c.plugin_requests_with(409) {
            assert_eq!(conflicts, 1, "shop's stale write");
        }
        c.assert_entries(&["cart", "shop"]);
        assert_eq!(c.plugin_weights()[1]["weight"], 25.0);
        for name in ["shop", "cart"] {
            let status = c.ok(&["--name", name, "status", "-o", "json"]).await;
            let status: Value = serde_json::from_str(&status).unwrap();
            assert_eq!(status["inSync"], true, "{name}: {status:#}");
        }
    }
}

on_both_backends! {
    async fn a_plugin_deleted_by_the_last_rollout_leaving_is_created_again_for_the_one_joining(backend) {
        let Some(c) = two_services(backend) else { return };
        c.init().await;
        // Rollout `cart` exists (GitOps) but was never applied; `shop` is the plugin's only one.
        let mut spec = StickyCanarySpec::new("cart", "v1");
        spec.routing.virtual_service = Some("shop".into());
        let mut rollout = serde_json::to_value(StickyCanary::new("cart", spec)).unwrap();
        rollout["metadata"]["namespace"] = json!(NS);
        c.create(rollout).unwrap();
        // `cart` read the plugin with `shop` in it; `shop` is deleted and deletes the plugin
        // before `cart` writes its entry into it.
        let client = c.kube_client();
        let shop = KubeTarget::new(client.clone(), NS, "shop");
        let canary = shop.load().await.unwrap().unwrap();
        let cart = RacedTarget::new(
            KubeTarget::new(client, NS, "cart"),
            Box::pin(async move {
                shop.delete().await.expect("delete shop");
                teardown(&shop, &canary).await.expect("shop leaves");
            }),
        );
        converge(&cart)
            .await
            .expect("cart converges although the plugin it read is gone");
        assert!(cart.raced.load(Ordering::SeqCst), "shop left in between");
        assert!(c.get_in(SC.0, SC.1, NS, "shop").is_none());
        c.assert_entries(&["cart"]);
    }
}
