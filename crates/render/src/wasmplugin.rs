//! The shared Istio `WasmPlugin` of one proxy group, carrying every rollout placed there.
//!
//! Its `pluginConfig` is the filter's multi-rollout form, `{"rollouts": [{name, services,
//! config}]}`, each `config` being the filter's own [`PluginConfig`]. A rollout edits only its
//! own entry, found by name, and keeps every other entry exactly as it is (even fields this
//! version does not know), so rollouts sharing a gateway never undo each other. Entries are
//! kept sorted by name, so the object does not change when nothing changed. The plugin cannot
//! be owned by any one rollout (and owners cannot cross namespaces), so the last rollout to
//! leave deletes it.
//!
//! [`PluginConfig`]: sticky_canary_filter::PluginConfig

use serde_json::{json, Value};
use sticky_canary_filter::config::CookieConfig;
use sticky_canary_filter::rollouts::cookie_collision;

use super::placement::{Placement, Side};
use super::EditError;

/// API version of Istio's WasmPlugin.
pub const API_VERSION: &str = "extensions.istio.io/v1alpha1";
/// Kind of Istio's WasmPlugin.
pub const KIND: &str = "WasmPlugin";
/// Filter phase: after Istio's authentication (so a key source can be a header that
/// `RequestAuthentication` sets from a JWT claim), before authorization, stats and routing, so
/// all of them see the stamped version; Envoy clears the route cache when the filter stamps.
pub const PHASE: &str = "AUTHZ";
/// A module that fails to load lets requests through unstamped: they reach the managed default
/// route to stable, so a broken plugin degrades the rollout, not the site.
pub const FAIL_STRATEGY: &str = "FAIL_OPEN";
/// Label on every object the rollout writes, so operators (and stickyctl) can find them.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// Value of [`MANAGED_BY_LABEL`].
pub const MANAGED_BY: &str = "stickyctl";

/// One rollout's entry in a shared plugin.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// `<namespace>/<rollout>`.
    pub key: String,
    /// Module URL the rollout asks for.
    pub url: String,
    /// The module's SHA-256 (hex), when the rollout pins it.
    pub sha256: Option<String>,
    /// `{name, services, config}` as the filter reads it.
    pub value: Value,
}

/// The rollouts' entries of a plugin's config (empty when it has none).
pub fn entries(plugin: &Value) -> &[Value] {
    plugin
        .pointer("/spec/pluginConfig/rollouts")
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

/// The entry of rollout `key` in `plugin`, if it is there.
pub fn entry<'a>(plugin: &'a Value, key: &str) -> Option<&'a Value> {
    entries(plugin).iter().find(|e| e["name"] == key)
}

/// The shared plugin of `placement` with `entry` in it, from `live` (absent: a new plugin).
/// A plugin that other rollouts share names one module: a rollout asking for another one is
/// refused, naming the rollouts it would change.
pub fn with_rollout(
    placement: &Placement,
    live: Option<&Value>,
    entry: &Entry,
) -> Result<Value, EditError> {
    let name = placement.plugin_name();
    let others: Vec<Value> = live
        .map(entries)
        .unwrap_or_default()
        .iter()
        .filter(|e| e["name"] != entry.key.as_str())
        .cloned()
        .collect();
    let live_field = |field: &str| {
        live.and_then(|p| p.pointer(&format!("/spec/{field}")))
            .and_then(Value::as_str)
    };
    if let (Some(url), false) = (live_field("url"), others.is_empty()) {
        let sharing: Vec<&str> = others.iter().filter_map(|e| e["name"].as_str()).collect();
        let refuse = |why: String| {
            EditError::Malformed {
            object: format!("WasmPlugin {}/{name}", placement.namespace),
            why: format!(
                "{why}, the module of the rollouts sharing this proxy group ({}); give them one module",
                sharing.join(", ")
            ),
        }
        };
        if url != entry.url {
            return Err(refuse(format!(
                "spec.plugin.url: {} differs from {url}",
                entry.url
            )));
        }
        let live_sha256 = live_field("sha256");
        if live_sha256 != entry.sha256.as_deref() {
            return Err(refuse(format!(
                "spec.plugin.sha256: {} differs from {}",
                entry.sha256.as_deref().unwrap_or("none"),
                live_sha256.unwrap_or("none")
            )));
        }
    }
    check_cookies(placement, &others, entry)?;
    let mut rollouts = others;
    rollouts.push(entry.value.clone());
    rollouts.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
    let mut spec = json!({
        "url": entry.url,
        "phase": PHASE,
        "failStrategy": FAIL_STRATEGY,
        "pluginConfig": { "rollouts": rollouts },
    });
    if let Some(sha256) = &entry.sha256 {
        spec["sha256"] = json!(sha256);
    }
    if placement.target_refs.is_empty() {
        if !placement.selector.is_empty() {
            spec["selector"] = json!({ "matchLabels": placement.selector });
        }
    } else {
        spec["targetRefs"] = json!(placement.target_refs);
    }
    if placement.side == Side::Sidecar {
        spec["match"] = json!([{ "mode": "CLIENT" }]);
    }
    Ok(match live {
        Some(live) => {
            let mut object = live.clone();
            object["spec"] = spec;
            object["metadata"]["labels"][MANAGED_BY_LABEL] = json!(MANAGED_BY);
            object
        }
        None => json!({
            "apiVersion": API_VERSION,
            "kind": KIND,
            "metadata": {
                "name": name,
                "namespace": placement.namespace,
                "labels": { MANAGED_BY_LABEL: MANAGED_BY },
            },
            "spec": spec,
        }),
    })
}

/// The filter's cookie rule for rollouts sharing a proxy ([`cookie_collision`]), checked
/// against the entries already in the plugin before one is added, so a collision is refused
/// before anything is written, naming the rollout it collides with.
fn check_cookies(placement: &Placement, others: &[Value], entry: &Entry) -> Result<(), EditError> {
    let mine = cookie_of(&entry.value);
    for other in others {
        let owner = format!("rollout {}", other["name"]);
        if let Some((field, why)) = cookie_collision(&mine, &cookie_of(other), &owner) {
            return Err(EditError::Malformed {
                object: format!(
                    "WasmPlugin {}/{}",
                    placement.namespace,
                    placement.plugin_name()
                ),
                why: format!("spec.filter.{field}: {why}"),
            });
        }
    }
    Ok(())
}

/// The cookie settings of an entry, read field by field (an entry written by another version
/// of stickyctl may hold fields this one does not know), defaults for what is absent.
fn cookie_of(entry: &Value) -> CookieConfig {
    let cookie = &entry["config"]["cookie"];
    let text = |field: &str| cookie[field].as_str().map(str::to_owned);
    let defaults = CookieConfig::default();
    CookieConfig {
        name: text("name").unwrap_or(defaults.name),
        id_name: text("idName").unwrap_or(defaults.id_name),
        domain: text("domain"),
        path: text("path").unwrap_or(defaults.path),
        ..CookieConfig::default()
    }
}

/// What becomes of shared plugin `live` when rollout `key` leaves it.
#[derive(Debug, Clone, PartialEq)]
pub enum Leave {
    /// The rollout has no entry there: nothing to write.
    Absent,
    /// The plugin without the rollout's entry.
    Keep(Value),
    /// It was the last rollout: the plugin goes, so the proxies stop entering the filter.
    Delete,
}

/// Rollout `key` leaving shared plugin `live`.
pub fn without_rollout(live: &Value, key: &str) -> Leave {
    if entry(live, key).is_none() {
        return Leave::Absent;
    }
    let rest: Vec<Value> = entries(live)
        .iter()
        .filter(|e| e["name"] != key)
        .cloned()
        .collect();
    if rest.is_empty() {
        return Leave::Delete;
    }
    let mut object = live.clone();
    object["spec"]["pluginConfig"]["rollouts"] = Value::Array(rest);
    Leave::Keep(object)
}

/// Whether `plugin` is the single-rollout WasmPlugin that stickyctl wrote for rollout
/// `rollout` before plugins were shared (`sticky-canary-<rollout>` in the rollout's namespace,
/// its config one rollout's): it must go once the rollout runs from the shared plugins.
pub fn is_legacy_of(plugin: &Value, rollout: &str) -> bool {
    plugin.pointer("/metadata/name").and_then(Value::as_str) == Some(legacy_name(rollout).as_str())
        && plugin
            .pointer("/metadata/labels")
            .and_then(|l| l.get(MANAGED_BY_LABEL))
            == Some(&json!(MANAGED_BY))
        && plugin.pointer("/spec/pluginConfig/versions").is_some()
}

/// Name of the single-rollout WasmPlugin of earlier versions.
pub fn legacy_name(rollout: &str) -> String {
    format!("sticky-canary-{rollout}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn gateway() -> Placement {
        Placement {
            side: Side::Gateway,
            namespace: "istio-system".into(),
            selector: BTreeMap::from([("istio".into(), "ingressgateway".into())]),
            target_refs: Vec::new(),
        }
    }

    fn entry(key: &str, weight: f64) -> Entry {
        Entry {
            key: key.into(),
            url: "file:///filter.wasm".into(),
            sha256: None,
            value: json!({"name": key, "services": [format!("{key}.svc")],
                          "config": {"versions": [{"name": "v1", "weight": weight}],
                                     "cookie": {"name": format!("v.{key}")}}}),
        }
    }

    fn names(plugin: &Value) -> Vec<&str> {
        entries(plugin)
            .iter()
            .filter_map(|e| e["name"].as_str())
            .collect()
    }

    #[test]
    fn a_new_plugin_selects_the_gateway_in_its_namespace() {
        let p = with_rollout(&gateway(), None, &entry("prod/shop", 100.0)).unwrap();
        assert_eq!(p["metadata"]["namespace"], "istio-system");
        assert_eq!(
            p["metadata"]["name"],
            "sticky-canary-gateway-istio-ingressgateway"
        );
        assert_eq!(
            p["spec"]["selector"],
            json!({"matchLabels": {"istio": "ingressgateway"}})
        );
        assert_eq!(p["spec"]["phase"], "AUTHZ");
        assert_eq!(p["spec"]["failStrategy"], "FAIL_OPEN");
        assert!(p["spec"].get("match").is_none(), "gateways: every request");
        assert_eq!(names(&p), ["prod/shop"]);
    }

    #[test]
    fn sidecars_run_it_on_the_client_side_only() {
        let mut sidecars = gateway();
        sidecars.side = Side::Sidecar;
        let p = with_rollout(&sidecars, None, &entry("prod/shop", 100.0)).unwrap();
        assert_eq!(p["spec"]["match"], json!([{"mode": "CLIENT"}]));
    }

    #[test]
    fn each_rollout_edits_only_its_own_entry() {
        let mut live = with_rollout(&gateway(), None, &entry("prod/web", 100.0)).unwrap();
        live["metadata"]["resourceVersion"] = json!("5");
        // Someone else's entry carries a field this version does not know: it stays.
        live["spec"]["pluginConfig"]["rollouts"][0]["future"] = json!(true);
        let p = with_rollout(&gateway(), Some(&live), &entry("prod/api", 100.0)).unwrap();
        assert_eq!(names(&p), ["prod/api", "prod/web"]);
        assert_eq!(p["metadata"]["resourceVersion"], "5");
        assert_eq!(entries(&p)[1]["future"], true);
        let changed = with_rollout(&gateway(), Some(&p), &entry("prod/api", 50.0)).unwrap();
        assert_eq!(names(&changed), ["prod/api", "prod/web"]);
        assert_eq!(
            entries(&changed)[0]["config"]["versions"][0]["weight"],
            50.0
        );
        assert_eq!(entries(&changed)[1], entries(&p)[1]);
        assert_eq!(
            with_rollout(&gateway(), Some(&p), &entry("prod/api", 100.0)).unwrap(),
            p,
            "re-applying the same entry changes nothing"
        );
    }

    #[test]
    fn a_shared_plugin_names_one_module() {
        let live = with_rollout(&gateway(), None, &entry("prod/web", 100.0)).unwrap();
        let mut other = entry("prod/api", 100.0);
        other.url = "oci://registry/filter:2".into();
        let err = with_rollout(&gateway(), Some(&live), &other).unwrap_err();
        assert!(err.to_string().contains("spec.plugin.url"), "{err}");
        assert!(err.to_string().contains("prod/web"), "{err}");
        // Alone in it, a rollout may change the module.
        let mut web = entry("prod/web", 100.0);
        web.url = "oci://registry/filter:2".into();
        let p = with_rollout(&gateway(), Some(&live), &web).unwrap();
        assert_eq!(p["spec"]["url"], "oci://registry/filter:2");
    }

    #[test]
    fn rollouts_sharing_a_plugin_never_share_a_version_cookie_nor_scope_an_id_cookie_apart() {
        let mut web = entry("prod/web", 100.0);
        web.value["config"]["cookie"]["domain"] = json!("shop.example");
        let live = with_rollout(&gateway(), None, &web).unwrap();
        let refused = |cookie: Value| {
            let mut api = entry("prod/api", 100.0);
            api.value["config"]["cookie"] = cookie;
            with_rollout(&gateway(), Some(&live), &api)
                .unwrap_err()
                .to_string()
        };
        let err = refused(json!({"name": "v.prod/web", "domain": "shop.example"}));
        assert!(err.contains(r#"spec.filter.cookie.name: "v.prod/web" is the version cookie of rollout "prod/web" already"#), "{err}");
        let err = refused(json!({"name": "v.prod/api"}));
        assert!(err.contains(r#"spec.filter.cookie.domain: the id cookie "sticky-id" is shared with rollout "prod/web", which sets it with domain "shop.example", path "/""#), "{err}");
        let mut api = entry("prod/api", 100.0);
        api.value["config"]["cookie"]["domain"] = json!("shop.example");
        with_rollout(&gateway(), Some(&live), &api).unwrap();
        // Changing one's own entry is checked against the others only.
        with_rollout(&gateway(), Some(&live), &web).unwrap();
    }

    #[test]
    fn a_pinned_module_carries_its_sha256_and_sharers_must_pin_the_same() {
        let digest = "ab".repeat(32);
        let mut web = entry("prod/web", 100.0);
        web.sha256 = Some(digest.clone());
        let live = with_rollout(&gateway(), None, &web).unwrap();
        assert_eq!(live["spec"]["sha256"], digest.as_str());
        let unpinned = with_rollout(&gateway(), Some(&live), &entry("prod/api", 100.0));
        let err = unpinned.unwrap_err().to_string();
        assert!(
            err.contains("spec.plugin.sha256: none differs from abab") && err.contains("prod/web"),
            "{err}"
        );
        let mut api = entry("prod/api", 100.0);
        api.sha256 = Some(digest.clone());
        let shared = with_rollout(&gateway(), Some(&live), &api).unwrap();
        assert_eq!(shared["spec"]["sha256"], digest.as_str());
        assert!(
            with_rollout(&gateway(), None, &entry("prod/web", 1.0)).unwrap()["spec"]
                .get("sha256")
                .is_none()
        );
    }

    #[test]
    fn the_last_rollout_to_leave_deletes_the_plugin() {
        let one = with_rollout(&gateway(), None, &entry("prod/web", 100.0)).unwrap();
        let two = with_rollout(&gateway(), Some(&one), &entry("prod/api", 100.0)).unwrap();
        match without_rollout(&two, "prod/api") {
            Leave::Keep(p) => assert_eq!(names(&p), ["prod/web"]),
            other => panic!("{other:?}"),
        }
        assert_eq!(without_rollout(&one, "prod/api"), Leave::Absent);
        assert_eq!(without_rollout(&one, "prod/web"), Leave::Delete);
    }

    #[test]
    fn the_single_rollout_plugin_of_earlier_versions_is_recognised() {
        let legacy = json!({"metadata": {"name": "sticky-canary-shop", "namespace": "prod",
            "labels": {MANAGED_BY_LABEL: MANAGED_BY}},
            "spec": {"pluginConfig": {"versions": [{"name": "v1", "weight": 100}]}}});
        assert!(is_legacy_of(&legacy, "shop"));
        assert!(!is_legacy_of(&legacy, "web"));
        let shared = with_rollout(&gateway(), None, &entry("prod/shop", 100.0)).unwrap();
        assert!(!is_legacy_of(&shared, "shop"));
        let mut users = legacy.clone();
        users["metadata"]["labels"] = json!({});
        assert!(!is_legacy_of(&users, "shop"), "not ours");
    }
}
