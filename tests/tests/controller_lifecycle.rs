//! The controller over a rollout's life, on both backends (see `support`): hand edits of the
//! objects it writes are repaired through its watches (long before the resync), deleting a
//! rollout takes only the managed routes and subsets out of the user's objects, and deletes
//! the DestinationRule stickyctl created when nothing of the user's is in it (with the
//! controller's finalizer, with `stickyctl delete` and no controller, or both at once) and
//! its entry out of the gateway's shared WasmPlugin (the last rollout to leave deletes the
//! plugin, which no rollout can own), and what the controller does is recorded as Kubernetes
//! Events.

#[macro_use]
mod support;

use serde_json::{json, Value};
use support::{eventually, names, Cluster, GATEWAY_NS, GATEWAY_PLUGIN, NS, WP};

const VS: (&str, &str) = ("networking.istio.io/v1", "VirtualService");
const DR: (&str, &str) = ("networking.istio.io/v1", "DestinationRule");
const SC: (&str, &str) = ("stickycanary.io/v1alpha1", "StickyCanary");
const FINALIZER: &str = "stickycanary.io/cleanup";

impl Cluster {
    fn find(&self, (api_version, kind): (&str, &str), name: &str) -> Option<Value> {
        self.get_in(api_version, kind, NS, name)
    }

    fn edit(&self, (api_version, kind): (&str, &str), name: &str, edit: impl FnMut(&mut Value)) {
        self.update(api_version, kind, NS, name, edit)
            .unwrap_or_else(|e| panic!("edit {kind} {name}: {e:?}"));
    }

    fn has_finalizer(&self) -> bool {
        self.find(SC, "shop").is_some_and(|sc| {
            sc["metadata"]["finalizers"]
                .as_array()
                .is_some_and(|f| f.contains(&json!(FINALIZER)))
        })
    }

    /// Reasons of the Events recorded on rollout `shop`.
    fn event_reasons(&self) -> Vec<String> {
        self.list("events.k8s.io/v1", "Event")
            .iter()
            .filter(|e| {
                e["regarding"]["kind"] == "StickyCanary" && e["regarding"]["name"] == "shop"
            })
            .map(|e| {
                assert_eq!(e["reportingController"], "stickyctl", "{e:#}");
                e["reason"].as_str().unwrap_or_default().to_owned()
            })
            .collect()
    }

    /// A rollout with a canary, the user's own subset in the DestinationRule, and the user's
    /// VirtualService and DestinationRule specs from before stickyctl touched them.
    async fn rollout_at_ten_percent(&self) -> (Value, Value) {
        self.create(json!({"apiVersion": DR.0, "kind": DR.1,
                "metadata": {"name": "shop", "namespace": NS},
                "spec": {"host": "shop", "subsets": [{"name": "legacy", "labels": {"track": "old"}}]}}))
            .expect("create the user's DestinationRule");
        let user_vs = self.find(VS, "shop").unwrap()["spec"].clone();
        let user_dr = self.find(DR, "shop").unwrap()["spec"].clone();
        self.init().await;
        self.ok(&["start", "--canary", "v2"]).await;
        self.ok(&["set-weight", "10"]).await;
        (user_vs, user_dr)
    }
}

fn route_names(vs: &Value) -> Vec<String> {
    names(&vs["spec"]["http"])
}

on_both_backends! {
    async fn hand_edits_are_repaired_through_the_watches(backend) {
        let Some(c) = backend.cluster() else { return };
        c.rollout_at_ten_percent().await;
        let vs = c.find(VS, "shop").unwrap();
        let dr = c.find(DR, "shop").unwrap();
        let plugin = c.gateway_plugin().unwrap();
        let _controller = c.start_controller();
        eventually("the controller put its finalizer on", || c.has_finalizer()).await;

        // Someone drops the canary's managed route and edits their own route meanwhile.
        c.edit(VS, "shop", |vs| {
            let http = vs["spec"]["http"].as_array_mut().unwrap();
            http.retain(|r| r["name"] != "sticky-canary-shop-v2");
            let user = http.iter_mut().find(|r| r["name"] == "shop").unwrap();
            user["match"][0]["uri"]["prefix"] = json!("/store");
        });
        eventually("the managed route is back", || {
            route_names(&c.find(VS, "shop").unwrap()) == route_names(&vs)
        })
        .await;
        let repaired = c.find(VS, "shop").unwrap();
        let user: Vec<&Value> = repaired["spec"]["http"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["name"] == "shop")
            .collect();
        assert_eq!(
            user[0]["match"][0]["uri"]["prefix"], "/store",
            "the user's own edit stays"
        );
        // The managed routes carry the user route's conditions, so they follow the user's edit
        // and are otherwise exactly what they were.
        for (i, route) in vs["spec"]["http"].as_array().unwrap().iter().enumerate() {
            if route["name"] != "shop" {
                let mut expected = route.clone();
                expected["match"][0]["uri"]["prefix"] = json!("/store");
                assert_eq!(repaired["spec"]["http"][i], expected, "managed route {i}");
            }
        }

        // The canary's subset, and the weights in the WasmPlugin.
        c.edit(DR, "shop", |dr| {
            let subsets = dr["spec"]["subsets"].as_array_mut().unwrap();
            subsets.retain(|s| s["name"] != "sticky-canary-v2");
        });
        // The shared plugin is in the gateway's namespace, not the one the controller serves:
        // its cluster-wide watch still sees the edit.
        c.update(WP.0, WP.1, GATEWAY_NS, GATEWAY_PLUGIN, |wp| {
                wp["spec"]["pluginConfig"]["rollouts"][0]["config"]["versions"] =
                    json!([{"name": "v1", "weight": 50.0}, {"name": "v2", "weight": 50.0}]);
            })
            .expect("edit the shared WasmPlugin");
        eventually("the subset and the weights are back", || {
            c.find(DR, "shop").unwrap()["spec"] == dr["spec"]
                && c.gateway_plugin().unwrap()["spec"] == plugin["spec"]
        })
        .await;
        // An entry dropped by hand comes back too (the plugin still exists, without it).
        c.update(WP.0, WP.1, GATEWAY_NS, GATEWAY_PLUGIN, |wp| {
                wp["spec"]["pluginConfig"]["rollouts"] = json!([]);
            })
            .expect("empty the shared WasmPlugin");
        eventually("the rollout's entry is back", || {
            c.gateway_plugin().unwrap()["spec"] == plugin["spec"]
        })
        .await;
        eventually("the repairs are recorded as Events", || {
            c.event_reasons().iter().any(|r| r == "Applied")
        })
        .await;
    }
}

on_both_backends! {
    async fn deleting_a_rollout_leaves_only_the_users_routes_and_subsets(backend) {
        let Some(c) = backend.cluster() else { return };
        let (user_vs, user_dr) = c.rollout_at_ten_percent().await;
        let _controller = c.start_controller();
        eventually("the controller put its finalizer on", || c.has_finalizer()).await;

        // The WasmPlugin is the gateway's, shared, in the gateway's namespace: no rollout owns
        // it (owners cannot cross namespaces), so no garbage collector deletes it; the last
        // rollout leaving it does.
        let plugin = c.gateway_plugin().expect("the gateway's shared WasmPlugin");
        assert!(
            plugin["metadata"].get("ownerReferences").is_none(),
            "{plugin:#}"
        );
        assert_eq!(plugin["metadata"]["namespace"], GATEWAY_NS);
        assert_eq!(
            plugin["metadata"]["labels"]["app.kubernetes.io/managed-by"],
            "stickyctl"
        );
        assert_eq!(c.plugin_rollouts(), ["prod/shop"]);
        assert!(
            c.find(WP, "sticky-canary-shop").is_none(),
            "no plugin per rollout"
        );

        c.delete(SC.0, SC.1, NS, "shop")
            .expect("kubectl delete stickycanary shop");
        eventually("the rollout is gone", || c.find(SC, "shop").is_none()).await;
        assert_eq!(c.find(VS, "shop").unwrap()["spec"], user_vs);
        assert_eq!(c.find(DR, "shop").unwrap()["spec"], user_dr);
        assert!(
            c.gateway_plugin().is_none(),
            "the last rollout to leave the shared plugin deleted it"
        );
        eventually("the clean-up is recorded as an Event", || {
            c.event_reasons().iter().any(|r| r == "CleanedUp")
        })
        .await;
    }
}

on_both_backends! {
    async fn stickyctl_delete_needs_no_controller(backend) {
        let Some(c) = backend.cluster() else { return };
        let (user_vs, user_dr) = c.rollout_at_ten_percent().await;
        // A controller that ran once left its finalizer on, and is gone now.
        c.edit(SC, "shop", |sc| {
            sc["metadata"]["finalizers"] = json!([FINALIZER]);
        });

        c.clear_writes();
        let dry = c.ok(&["delete", "--dry-run"]).await;
        assert!(
            dry.contains("--- a/StickyCanary shop")
                && dry.contains("-    name: sticky-canary-shop-v2")
                && dry.contains("-  - labels:\n-      version: v2\n-    name: sticky-canary-v2"),
            "{dry}"
        );
        // The rollout is the plugin's only one: the plugin goes, every line of it.
        let plugin_diff = format!("--- a/WasmPlugin {GATEWAY_NS}/{GATEWAY_PLUGIN}\n+++ b/WasmPlugin {GATEWAY_NS}/{GATEWAY_PLUGIN}\n");
        assert!(dry.contains(&plugin_diff), "{dry}");
        assert!(
            dry.contains("-  name: sticky-canary-gateway-istio-ingressgateway"),
            "{dry}"
        );
        assert!(c.writes().is_empty());
        assert!(c.gateway_plugin().is_some());

        let out = c.ok(&["delete"]).await;
        assert!(out.contains("delete shop: applied"), "{out}");
        let kept = [
            format!("DestinationRule {NS}/shop: kept: its managed subsets are out, yours stay"),
            format!("VirtualService {NS}/shop: kept: its managed routes are out, yours stay"),
        ];
        assert!(kept.iter().all(|line| out.contains(line)), "{out}");
        assert!(c.find(SC, "shop").is_none(), "deleted, finalizer removed");
        assert_eq!(c.find(VS, "shop").unwrap()["spec"], user_vs);
        assert_eq!(c.find(DR, "shop").unwrap()["spec"], user_dr);
        assert!(c.gateway_plugin().is_none(), "the last rollout deleted it");

        let again = c.sticky(&["delete", "--name", "shop"]).await;
        assert_eq!(again.code, 2, "{again:?}");
        assert!(again.stderr.contains("does not exist"), "{}", again.stderr);
    }
}

on_both_backends! {
    async fn stickyctl_delete_removes_the_destination_rule_init_created_and_says_so(backend) {
        let Some(c) = backend.cluster() else { return };
        c.init().await;
        c.ok(&["start", "--canary", "v2"]).await;
        let created = c.find(DR, "shop").expect("init created the DestinationRule");
        assert_eq!(created["metadata"]["labels"]["app.kubernetes.io/managed-by"], "stickyctl");

        let out = c.ok(&["delete"]).await;
        assert!(
            out.contains(&format!(
                "DestinationRule {NS}/shop: deleted: stickyctl created it and nothing of yours is in it"
            )),
            "{out}"
        );
        assert!(c.find(DR, "shop").is_none(), "the DestinationRule init created is left behind");
        assert!(c.find(VS, "shop").is_some(), "the user's VirtualService stays");
    }
}

on_both_backends! {
    async fn stickyctl_delete_and_the_controller_agree(backend) {
        let Some(c) = backend.cluster() else { return };
        let (user_vs, user_dr) = c.rollout_at_ten_percent().await;
        let _controller = c.start_controller();
        eventually("the controller put its finalizer on", || c.has_finalizer()).await;
        // Both clean up at once: the controller through its finalizer, the CLI itself.
        c.ok(&["delete"]).await;
        eventually("the rollout is gone", || c.find(SC, "shop").is_none()).await;
        assert_eq!(c.find(VS, "shop").unwrap()["spec"], user_vs);
        assert_eq!(c.find(DR, "shop").unwrap()["spec"], user_dr);
        assert!(c.gateway_plugin().is_none());
    }
}
