//! The Istio `WasmPlugin` that loads the filter with the rollout's versions and weights.
//!
//! The object is wholly owned by the rollout: it is rendered from the spec alone and
//! replaced whole. Its `pluginConfig` is the filter's own [`PluginConfig`], serialized. It
//! carries an ownerReference to the rollout, so Kubernetes' garbage collector deletes it with
//! the rollout: stickyctl needs no right to delete WasmPlugins.
//!
//! [`PluginConfig`]: sticky_canary_filter::PluginConfig

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use serde_json::{json, Value};

use crate::model::{StickyCanarySpec, DEFAULT_PLUGIN_URL};

/// API version of Istio's WasmPlugin.
pub const API_VERSION: &str = "extensions.istio.io/v1alpha1";
/// Kind of Istio's WasmPlugin.
pub const KIND: &str = "WasmPlugin";
/// Filter phase: after Istio's authentication (so a key source can be a header that
/// `RequestAuthentication` sets from a JWT claim), before authorization, stats and routing, so
/// all of them see the stamped version; the filter clears the route cache when it stamps.
pub const PHASE: &str = "AUTHZ";
/// A module that fails to load lets requests through unstamped: they reach the managed default
/// route to stable, so a broken plugin degrades the rollout, not the site.
pub const FAIL_STRATEGY: &str = "FAIL_OPEN";
/// Label on every object the rollout writes, so operators can find them.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// Value of [`MANAGED_BY_LABEL`].
pub const MANAGED_BY: &str = "stickyctl";

/// Name of the WasmPlugin of rollout `rollout`.
pub fn name(rollout: &str) -> String {
    format!("sticky-canary-{rollout}")
}

/// The WasmPlugin of rollout `rollout` in `namespace`, owned by `owner` (the rollout, when it
/// exists on the cluster; `None` for a rollout not created yet, as `render` shows for GitOps).
pub fn render(
    rollout: &str,
    namespace: &str,
    spec: &StickyCanarySpec,
    owner: Option<&OwnerReference>,
) -> Value {
    let placement = &spec.plugin;
    let mut plugin_spec = json!({
        "url": placement.url.as_deref().unwrap_or(DEFAULT_PLUGIN_URL),
        "phase": PHASE,
        "failStrategy": FAIL_STRATEGY,
        "pluginConfig": spec.plugin_config(),
    });
    if !placement.selector.is_empty() {
        plugin_spec["selector"] = json!({ "matchLabels": placement.selector });
    }
    if !placement.target_refs.is_empty() {
        plugin_spec["targetRefs"] = json!(placement.target_refs);
    }
    let mut plugin = json!({
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {
            "name": name(rollout),
            "namespace": namespace,
            "labels": { MANAGED_BY_LABEL: MANAGED_BY },
        },
        "spec": plugin_spec,
    });
    if let Some(owner) = owner {
        plugin["metadata"]["ownerReferences"] = json!([owner]);
    }
    plugin
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::TargetRef;
    use sticky_canary_filter::{PluginConfig, VersionWeight};

    #[test]
    fn plugin_config_is_the_filters_config() {
        let mut spec = StickyCanarySpec::new("shop", "v1");
        spec.versions[0].weight = 90.0;
        spec.versions.push(VersionWeight::new("v2", 10.0));
        let wp = render("shop", "prod", &spec, None);
        assert_eq!(wp["metadata"]["name"], "sticky-canary-shop");
        assert_eq!(wp["metadata"]["namespace"], "prod");
        assert_eq!(wp["spec"]["phase"], "AUTHZ");
        assert_eq!(wp["spec"]["url"], DEFAULT_PLUGIN_URL);
        let config = serde_json::to_vec(&wp["spec"]["pluginConfig"]).unwrap();
        let parsed = PluginConfig::from_json(&config).unwrap();
        assert_eq!(parsed, spec.plugin_config());
        assert!(parsed.validate().is_ok());
        assert!(wp["spec"].get("selector").is_none());
        assert!(wp["metadata"].get("ownerReferences").is_none());
    }

    #[test]
    fn owned_by_the_rollout() {
        let owner = OwnerReference {
            api_version: "stickycanary.io/v1alpha1".into(),
            kind: "StickyCanary".into(),
            name: "shop".into(),
            uid: "u-1".into(),
            controller: Some(true),
            block_owner_deletion: None,
        };
        let wp = render(
            "shop",
            "prod",
            &StickyCanarySpec::new("shop", "v1"),
            Some(&owner),
        );
        assert_eq!(
            wp["metadata"]["ownerReferences"],
            json!([{"apiVersion": "stickycanary.io/v1alpha1", "kind": "StickyCanary",
                    "name": "shop", "uid": "u-1", "controller": true}])
        );
    }

    #[test]
    fn placement_is_rendered() {
        let mut spec = StickyCanarySpec::new("shop", "v1");
        spec.plugin.url = Some("oci://registry.local/sticky:1".into());
        spec.plugin
            .selector
            .insert("istio".into(), "ingressgateway".into());
        spec.plugin.target_refs.push(TargetRef {
            group: "gateway.networking.k8s.io".into(),
            kind: "Gateway".into(),
            name: "web".into(),
        });
        let wp = render("shop", "prod", &spec, None);
        assert_eq!(wp["spec"]["url"], "oci://registry.local/sticky:1");
        assert_eq!(
            wp["spec"]["selector"],
            json!({"matchLabels": {"istio": "ingressgateway"}})
        );
        assert_eq!(
            wp["spec"]["targetRefs"],
            json!([{"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "web"}])
        );
    }
}
