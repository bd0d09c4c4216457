//! Every object stickyctl renders validates against Istio's own CRD schemas (and the rollout
//! itself against the shipped StickyCanary CRD), for the shapes of spec it supports.

use api::{Proxies, StickyCanary, StickyCanarySpec, TargetRef};
use render::istio::{desired, for_display, Kind, Live};
use render::placement::placements;
use serde_json::{json, Value};
use sticky_canary_filter::config::KeySource;
use sticky_canary_filter::VersionWeight;
use sticky_canary_tests::all_crds;

fn user_vs() -> Value {
    json!({"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
        "metadata": {"name": "shop", "namespace": "prod"},
        "spec": {"hosts": ["shop.example.com"], "gateways": ["istio-ingress/web"], "http": [
            {"name": "api", "match": [{"uri": {"prefix": "/api"}}],
             "route": [{"destination": {"host": "api"}}]},
            {"name": "shop", "match": [{"uri": {"prefix": "/shop"}}],
             "route": [{"destination": {"host": "shop", "port": {"number": 8080}}}]}]}})
}

fn specs() -> Vec<(&'static str, StickyCanarySpec)> {
    let stable = StickyCanarySpec::new("shop", "v1");
    let mut canary = stable.clone();
    canary.versions = vec![
        VersionWeight::new("v1", 66.67),
        VersionWeight::new("v2", 33.33),
    ];
    let mut placed = canary.clone();
    placed.plugin.url = Some("oci://registry.internal/sticky:1".into());
    placed
        .plugin
        .selector
        .insert("istio".into(), "ingressgateway".into());
    placed.filter.key_sources = vec![
        KeySource::Header("x-user-id".into()),
        KeySource::Cookie("session".into()),
    ];
    placed.filter.override_.token = Some("qa-token".into());
    placed.routing.version_label = Some("app.kubernetes.io/version".into());
    let mut gateway_api = canary.clone();
    gateway_api.plugin.target_refs.push(TargetRef {
        group: "gateway.networking.k8s.io".into(),
        kind: "Gateway".into(),
        name: "web".into(),
    });
    // Two gateways (the usual one and another namespace's) and callers' sidecars.
    let mut spread = canary.clone();
    spread.plugin.gateways = Some(vec![
        Proxies {
            namespace: None,
            selector: [("istio".to_owned(), "ingressgateway".to_owned())].into(),
            ..Default::default()
        },
        Proxies {
            namespace: Some("edge".into()),
            selector: [("app".to_owned(), "edge-gateway".to_owned())].into(),
            ..Default::default()
        },
    ]);
    spread.plugin.sidecars = vec![Proxies {
        namespace: Some("web".into()),
        selector: [("app".to_owned(), "web".to_owned())].into(),
        ..Default::default()
    }];
    let mut retiring = canary.clone();
    retiring.versions = vec![
        VersionWeight::new("v2", 100.0),
        VersionWeight::new("v1", 0.0),
    ];
    retiring.retiring = Some("v1".into());
    vec![
        ("stable only", stable),
        ("canary", canary),
        ("selector, key sources, token, label", placed),
        ("targetRefs", gateway_api),
        ("gateways and sidecars", spread),
        ("retiring", retiring),
    ]
}

/// A route seal as `stickyctl` derives one.
const SEAL: &str = "0123456789abcdef0123456789abcdef";

#[test]
fn rendered_objects_validate_against_istio_schemas() {
    let Some(crds) = all_crds() else { return };
    for (name, spec) in specs() {
        let live = Live {
            virtual_service: Some(user_vs()),
            ..Live::default()
        };
        // One shared WasmPlugin per proxy group, then the VirtualService and DestinationRule;
        // sealed, as every rollout with a uid is.
        let out = desired("shop", "prod", &spec, Some(SEAL), &live)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let groups = placements("prod", &spec).len();
        assert_eq!(out.objects.len(), groups + 2, "{name}");
        for write in out.objects.iter().chain(&out.writes) {
            crds.validate(&for_display(&write.object))
                .unwrap_or_else(|e| panic!("{name}: {} rejected: {e}", write.kind.as_str()));
        }
        let mut rollout = serde_json::to_value(StickyCanary::new("shop", spec)).unwrap();
        rollout["metadata"]["namespace"] = json!("prod");
        crds.validate(&rollout)
            .unwrap_or_else(|e| panic!("{name}: StickyCanary rejected: {e}"));
    }
}

#[test]
fn a_typo_in_a_rendered_route_would_be_caught() {
    let Some(crds) = all_crds() else { return };
    let (_, spec) = specs().remove(1);
    let live = Live {
        virtual_service: Some(user_vs()),
        ..Live::default()
    };
    let out = desired("shop", "prod", &spec, Some(SEAL), &live).unwrap();
    let vs = out
        .objects
        .iter()
        .find(|w| w.kind == Kind::VirtualService)
        .unwrap();
    let mut vs = for_display(&vs.object);
    vs["spec"]["http"][1]["match"][0]["headers"]["x-sticky-version"] = json!({"exactly": "v1"});
    assert!(
        crds.validate(&vs).is_err(),
        "the validator must see a bad match"
    );
}
