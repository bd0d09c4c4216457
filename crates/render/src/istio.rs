//! A rollout's Istio objects, from its spec and the live objects, in apply order: its entry
//! in the shared WasmPlugin of each proxy group it is placed on, and its routes: the user's
//! VirtualService and DestinationRule, or on the HTTPRoute API the user's HTTPRoute and a
//! Service per version ([`super::gateway_api`]). [`routing_api`] says which.
//!
//! Order is make-before-break: the DestinationRule first gains the subsets of new versions
//! (keeping those of versions on their way out), then the WasmPlugins and the VirtualService
//! switch traffic, then the rollout leaves the plugins of groups it is no longer placed on,
//! and only then does the DestinationRule lose the subsets nothing routes to. So a route never
//! points at a subset that does not exist.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::{
    destinationrule, gateway_api, httproute, placement, same_opt, virtualservice, wasmplugin,
    EditError,
};
use api::{RoutingApi, StickyCanarySpec, DEFAULT_PLUGIN_URL};

/// The kinds of object a rollout writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// `extensions.istio.io/v1alpha1` WasmPlugin, shared by the rollouts of a proxy group.
    WasmPlugin,
    /// `networking.istio.io/v1` VirtualService, the user's, edited.
    VirtualService,
    /// `networking.istio.io/v1` DestinationRule, the user's (or created), edited.
    DestinationRule,
    /// `gateway.networking.k8s.io/v1` HTTPRoute, the user's, edited (HTTPRoute API).
    HttpRoute,
    /// `v1` Service of one version, stickyctl's (HTTPRoute API).
    Service,
}

impl Kind {
    /// Every kind, in display order.
    pub const ALL: [Kind; 5] = [
        Kind::WasmPlugin,
        Kind::VirtualService,
        Kind::DestinationRule,
        Kind::HttpRoute,
        Kind::Service,
    ];

    /// The kind's name, as in `kind:`.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::WasmPlugin => wasmplugin::KIND,
            Kind::VirtualService => virtualservice::KIND,
            Kind::DestinationRule => destinationrule::KIND,
            Kind::HttpRoute => httproute::KIND,
            Kind::Service => "Service",
        }
    }

    /// The kind's `apiVersion`.
    pub fn api_version(self) -> &'static str {
        match self {
            Kind::WasmPlugin => wasmplugin::API_VERSION,
            Kind::VirtualService => virtualservice::API_VERSION,
            Kind::DestinationRule => destinationrule::API_VERSION,
            Kind::HttpRoute => httproute::API_VERSION,
            Kind::Service => "v1",
        }
    }
}

/// The names of a rollout's own VirtualService, DestinationRule and HTTPRoute (the one it
/// looks for first), and of its service. Its WasmPlugins are the shared ones of its
/// placements ([`placement::Placement::plugin_name`]), elsewhere.
pub fn object_name(kind: Kind, rollout: &str, spec: &StickyCanarySpec) -> String {
    match kind {
        Kind::HttpRoute => spec
            .routing
            .http_route
            .clone()
            .unwrap_or_else(|| rollout.to_owned()),
        Kind::Service => spec
            .service
            .split('.')
            .next()
            .unwrap_or(&spec.service)
            .to_owned(),
        Kind::WasmPlugin => wasmplugin::legacy_name(rollout),
        Kind::VirtualService => spec
            .routing
            .virtual_service
            .clone()
            .unwrap_or_else(|| rollout.to_owned()),
        Kind::DestinationRule => spec
            .routing
            .destination_rule
            .clone()
            .unwrap_or_else(|| rollout.to_owned()),
    }
}

/// The live objects, as read (`None` when absent).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Live {
    /// Every WasmPlugin stickyctl manages (labelled [`wasmplugin::MANAGED_BY`]), by namespace
    /// and name: the shared plugins of every proxy group, and single-rollout plugins of
    /// earlier versions.
    pub plugins: BTreeMap<(String, String), Value>,
    /// The VirtualService carrying the routes.
    pub virtual_service: Option<Value>,
    /// The DestinationRule carrying the subsets.
    pub destination_rule: Option<Value>,
    /// Every HTTPRoute of the rollout's namespace (HTTPRoute API): the one carrying the rules,
    /// and the others, which must not route to the service.
    pub http_routes: Vec<Value>,
    /// Services of the rollout's namespace by name: the service itself, the rollout's
    /// version Services and those the spec names.
    pub services: BTreeMap<String, Value>,
}

impl Live {
    /// The live object a write of `kind` named like `object` replaces.
    pub fn get(&self, kind: Kind, object: &Value) -> Option<&Value> {
        match kind {
            Kind::WasmPlugin => self.plugins.get(&namespace_and_name(object)),
            Kind::VirtualService => self.virtual_service.as_ref(),
            Kind::DestinationRule => self.destination_rule.as_ref(),
            Kind::HttpRoute => {
                let (_, name) = namespace_and_name(object);
                self.http_routes
                    .iter()
                    .find(|route| namespace_and_name(route).1 == name)
            }
            Kind::Service => self.services.get(&namespace_and_name(object).1),
        }
    }
}

/// The API that carries rollout `rollout`'s routes: the spec's, else detected from what
/// routes the service today, the named VirtualService first (every rollout made before the
/// HTTPRoute API keeps its routes), then an HTTPRoute. Both at once is refused: Istio merges a
/// VirtualService and the VirtualServices it makes from HTTPRoutes in list order at
/// waypoints, and lets one win at sidecars, so the managed routes of one would not hold.
pub fn routing_api(
    rollout: &str,
    namespace: &str,
    spec: &StickyCanarySpec,
    live: &Live,
) -> Result<RoutingApi, EditError> {
    let route = gateway_api::find_route(rollout, namespace, spec, live);
    match (spec.routing.api, &live.virtual_service, route) {
        (Some(api), _, _) => Ok(api),
        (None, Some(_), Some(route)) => Err(EditError::Malformed {
            object: format!(
                "VirtualService {namespace}/{}",
                object_name(Kind::VirtualService, rollout, spec)
            ),
            why: format!(
                "and HTTPRoute {namespace}/{} both route {}: Istio merges the two in list order at waypoints and lets one win at sidecars, so the managed routes of either would not hold; keep one (or set spec.routing.api)",
                namespace_and_name(route).1,
                spec.service
            ),
        }),
        (None, Some(_), None) => Ok(RoutingApi::VirtualService),
        (None, None, Some(_)) => Ok(RoutingApi::HttpRoute),
        (None, None, None) if gateway_api::routing(namespace, spec, live).len() > 1 => {
            let names: Vec<String> = gateway_api::routing(namespace, spec, live)
                .into_iter()
                .map(|route| format!("{namespace}/{}", namespace_and_name(route).1))
                .collect();
            Err(EditError::Malformed {
                object: format!("service {}", spec.service),
                why: format!(
                    "HTTPRoutes {} all route it: name the one for the rollout in spec.routing.httpRoute (stickyctl init --http-route)",
                    names.join(", ")
                ),
            })
        }
        (None, None, None) => Err(EditError::Malformed {
            object: format!("service {}", spec.service),
            why: format!(
                "nothing routes it: VirtualService {namespace}/{} does not exist, nor an HTTPRoute of namespace {namespace} with a rule to it; create one first, stickyctl only adds its managed routes to it",
                object_name(Kind::VirtualService, rollout, spec)
            ),
        }),
    }
}

/// `(namespace, name)` of an object.
pub fn namespace_and_name(object: &Value) -> (String, String) {
    let field = |f: &str| {
        object
            .pointer(&format!("/metadata/{f}"))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    (field("namespace"), field("name"))
}

/// One object write, in order.
#[derive(Debug, Clone, PartialEq)]
pub struct Write {
    /// What is written.
    pub kind: Kind,
    /// The whole object; metadata comes from the live object when there is one, so the write
    /// carries its resourceVersion. For a deletion, the live object.
    pub object: Value,
    /// Delete the object (its resourceVersion a precondition) instead of writing it.
    pub delete: bool,
    /// What of the object this rollout owns, which its status hash covers: the whole object,
    /// but for a shared plugin only the rollout's own entry (and the module), so another
    /// rollout's change is no change of this one.
    pub owned: Value,
}

impl Write {
    pub(crate) fn put(kind: Kind, object: Value) -> Self {
        Write {
            kind,
            owned: object.clone(),
            object,
            delete: false,
        }
    }
}

/// The rollout's objects as they should be, and the writes that get there from `live`.
#[derive(Debug, Clone, PartialEq)]
pub struct Desired {
    /// The API that carries the routes ([`routing_api`]).
    pub api: RoutingApi,
    /// Final WasmPlugins, then the routes' objects.
    pub objects: Vec<Write>,
    /// The writes to make, in order; objects already as desired are left out.
    pub writes: Vec<Write>,
}

/// Renders the desired objects of rollout `rollout` in `namespace` and plans their writes;
/// `seal` is the rollout's route seal ([`super::seal::of_uid`]), `None` before it exists.
pub fn desired(
    rollout: &str,
    namespace: &str,
    spec: &StickyCanarySpec,
    seal: Option<&str>,
    live: &Live,
) -> Result<Desired, EditError> {
    if routing_api(rollout, namespace, spec, live)? == RoutingApi::HttpRoute {
        return gateway_api::desired(rollout, namespace, spec, seal, live);
    }
    let name = |kind| object_name(kind, rollout, spec);
    let versions: Vec<&str> = spec.versions.iter().map(|v| v.name.as_str()).collect();

    let vs_name = name(Kind::VirtualService);
    let vs_live = live
        .virtual_service
        .as_ref()
        .ok_or_else(|| EditError::Missing {
            kind: virtualservice::KIND,
            namespace: namespace.to_owned(),
            name: vs_name.clone(),
        })?;
    let routes = virtualservice::ManagedRoutes {
        rollout,
        service: &spec.service,
        header: &spec.filter.header,
        versions: versions.clone(),
        seal,
    };
    let vs_spec =
        virtualservice::edit(&vs_name, vs_live.get("spec").unwrap_or(&json!({})), &routes)?;
    let virtual_service = with_spec(vs_live, vs_spec);

    let dr_name = name(Kind::DestinationRule);
    let dr_live_spec = live
        .destination_rule
        .as_ref()
        .map(|dr| dr.get("spec").unwrap_or(&Value::Null));
    let label = spec.version_label();
    let dr_base = live
        .destination_rule
        .clone()
        .unwrap_or_else(|| new_object(Kind::DestinationRule, &dr_name, namespace));
    let dr_final = with_spec(
        &dr_base,
        destinationrule::edit(&dr_name, dr_live_spec, &spec.service, label, &versions)?,
    );
    let leaving_subsets = dr_live_spec
        .map(destinationrule::managed_versions)
        .unwrap_or_default();
    let mut both = versions.clone();
    both.extend(
        leaving_subsets
            .iter()
            .map(String::as_str)
            .filter(|v| !versions.contains(v)),
    );
    let dr_first = with_spec(
        &dr_base,
        destinationrule::edit(&dr_name, dr_live_spec, &spec.service, label, &both)?,
    );

    let (plugins, leaving) = plugin_writes(
        rollout,
        namespace,
        spec,
        seal,
        live,
        vec![placement::service_fqdn(&spec.service, namespace)],
    )?;

    let mut objects = plugins;
    objects.push(Write::put(Kind::VirtualService, virtual_service));
    objects.push(Write::put(Kind::DestinationRule, dr_final.clone()));
    let mut writes = Vec::new();
    let mut dr_current = live.destination_rule.clone();
    let adds_subsets = versions
        .iter()
        .any(|v| !leaving_subsets.iter().any(|l| l == v));
    if adds_subsets && !same_opt(dr_current.as_ref(), Some(&dr_first)) {
        writes.push(Write::put(Kind::DestinationRule, dr_first.clone()));
        dr_current = Some(dr_first);
    }
    for write in objects.iter().filter(|w| w.kind != Kind::DestinationRule) {
        if !same_opt(live.get(write.kind, &write.object), Some(&write.object)) {
            writes.push(write.clone());
        }
    }
    // The rollout's entry is in its new plugins before it leaves the old ones.
    writes.extend(leaving);
    if !same_opt(dr_current.as_ref(), Some(&dr_final)) {
        writes.push(Write::put(Kind::DestinationRule, dr_final));
    }
    Ok(Desired {
        api: RoutingApi::VirtualService,
        objects,
        writes,
    })
}

/// The rollout's entry in the shared plugin of each proxy group it is placed on, listing
/// `services` (the hosts whose clusters are the rollout's), and the writes that take it out
/// of the plugins of groups it is no longer placed on: the second to apply after the first.
pub(crate) fn plugin_writes(
    rollout: &str,
    namespace: &str,
    spec: &StickyCanarySpec,
    seal: Option<&str>,
    live: &Live,
    services: Vec<String>,
) -> Result<(Vec<Write>, Vec<Write>), EditError> {
    let key = placement::rollout_key(namespace, rollout);
    // The entry differs per side: only sidecars may trust an incoming header.
    let entry = |side| wasmplugin::Entry {
        key: key.clone(),
        url: spec
            .plugin
            .url
            .clone()
            .unwrap_or_else(|| DEFAULT_PLUGIN_URL.to_owned()),
        sha256: spec.plugin.sha256.clone(),
        value: json!({
            "name": key,
            "services": services,
            "config": placement::plugin_config(namespace, rollout, spec, side, seal),
        }),
    };
    let mut plugins = Vec::new();
    for group in &placement::placements(namespace, spec) {
        let entry = entry(group.side);
        let at = (group.namespace.clone(), group.plugin_name());
        let plugin = wasmplugin::with_rollout(group, live.plugins.get(&at), &entry)?;
        let owned = json!({
            "url": plugin.pointer("/spec/url"),
            "sha256": plugin.pointer("/spec/sha256"),
            "entry": wasmplugin::entry(&plugin, &key),
        });
        plugins.push(Write {
            kind: Kind::WasmPlugin,
            object: plugin,
            delete: false,
            owned,
        });
    }
    let placed: Vec<(String, String)> = plugins
        .iter()
        .map(|w| namespace_and_name(&w.object))
        .collect();
    let leaving = live
        .plugins
        .iter()
        .filter(|(at, _)| !placed.contains(at))
        .filter_map(|(at, plugin)| leave(plugin, &at.0, namespace, rollout))
        .collect();
    Ok((plugins, leaving))
}

/// The write that takes rollout `rollout` of `namespace` out of `plugin` (of namespace
/// `plugin_namespace`): its entry out of a shared plugin (the plugin deleted when it was the
/// last), or the rollout's own single-rollout plugin of earlier versions deleted; `None` when
/// the rollout is not in it.
pub(crate) fn leave(
    plugin: &Value,
    plugin_namespace: &str,
    namespace: &str,
    rollout: &str,
) -> Option<Write> {
    if plugin_namespace == namespace && wasmplugin::is_legacy_of(plugin, rollout) {
        return Some(deletion(Kind::WasmPlugin, plugin));
    }
    match wasmplugin::without_rollout(plugin, &placement::rollout_key(namespace, rollout)) {
        wasmplugin::Leave::Absent => None,
        wasmplugin::Leave::Keep(rest) => Some(Write::put(Kind::WasmPlugin, rest)),
        wasmplugin::Leave::Delete => Some(deletion(Kind::WasmPlugin, plugin)),
    }
}

/// The deletion of live object `object` of `kind`.
pub(crate) fn deletion(kind: Kind, object: &Value) -> Write {
    Write {
        kind,
        object: object.clone(),
        delete: true,
        owned: Value::Null,
    }
}

/// The writes that take deleted rollout `rollout` of `namespace` out of everything it
/// wrote: its entry out of the shared WasmPlugins first (the last one to leave deletes the
/// plugin), so no proxy stamps for it any more, then its managed routes out of the
/// VirtualService, then its subsets out of the DestinationRule, which is deleted when
/// stickyctl created it and nothing of the user's is in it ([`destinationrule::leftover`]);
/// on the HTTPRoute API its rules out of the routes and its version Services deleted.
/// Objects that are absent or already clean are left out, so a repeated teardown writes
/// nothing.
pub fn teardown(
    rollout: &str,
    namespace: &str,
    spec: &StickyCanarySpec,
    live: &Live,
) -> Vec<Write> {
    let plugins = live
        .plugins
        .iter()
        .filter_map(|(at, plugin)| leave(plugin, &at.0, namespace, rollout));
    let cleaned = |kind: Kind, object: &Option<Value>, remove: &dyn Fn(&Value) -> Value| {
        let object = object.as_ref()?;
        let spec = remove(object.get("spec")?);
        if kind == Kind::DestinationRule && destinationrule::leftover(object, &spec) {
            return Some(deletion(kind, object));
        }
        let clean = with_spec(object, spec);
        (clean != *object).then(|| Write::put(kind, clean))
    };
    plugins
        .chain(
            [
                cleaned(Kind::VirtualService, &live.virtual_service, &|vs| {
                    virtualservice::remove(vs, rollout, &spec.service)
                }),
                cleaned(
                    Kind::DestinationRule,
                    &live.destination_rule,
                    &destinationrule::remove,
                ),
            ]
            .into_iter()
            .flatten(),
        )
        .chain(gateway_api::teardown(rollout, namespace, live))
        .collect()
}

/// The object without what the API server manages, as a GitOps repository or a diff shows it.
pub fn for_display(object: &Value) -> Value {
    let mut object = object.clone();
    if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        for field in [
            "resourceVersion",
            "uid",
            "generation",
            "creationTimestamp",
            "managedFields",
        ] {
            meta.remove(field);
        }
    }
    if let Some(object) = object.as_object_mut() {
        object.remove("status");
    }
    object
}

fn new_object(kind: Kind, name: &str, namespace: &str) -> Value {
    json!({
        "apiVersion": kind.api_version(),
        "kind": kind.as_str(),
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": { wasmplugin::MANAGED_BY_LABEL: wasmplugin::MANAGED_BY },
        },
    })
}

pub(crate) fn with_spec(object: &Value, spec: Value) -> Value {
    let mut object = object.clone();
    object["spec"] = spec;
    object
}

#[cfg(test)]
mod tests {
    use super::*;
    use sticky_canary_filter::VersionWeight;

    fn spec(versions: &[(&str, f64)]) -> StickyCanarySpec {
        let mut spec = StickyCanarySpec::new("shop", versions[0].0);
        spec.versions = versions
            .iter()
            .map(|&(name, weight)| VersionWeight::new(name, weight))
            .collect();
        spec
    }

    fn vs() -> Value {
        json!({"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
               "metadata": {"name": "shop", "namespace": "prod", "resourceVersion": "7"},
               "spec": {"hosts": ["shop"], "http": [{"name": "shop", "route": [{"destination": {"host": "shop"}}]}]}})
    }

    fn apply(live: &mut Live, writes: &[Write]) {
        for w in writes {
            match (w.kind, w.delete) {
                (Kind::WasmPlugin, true) => {
                    live.plugins.remove(&namespace_and_name(&w.object));
                }
                (Kind::WasmPlugin, false) => {
                    live.plugins
                        .insert(namespace_and_name(&w.object), w.object.clone());
                }
                (Kind::VirtualService, _) => live.virtual_service = Some(w.object.clone()),
                (Kind::DestinationRule, true) => live.destination_rule = None,
                (Kind::DestinationRule, false) => live.destination_rule = Some(w.object.clone()),
                (Kind::HttpRoute | Kind::Service, _) => unreachable!("not on this API"),
            }
        }
    }

    fn plugin_names(live: &Live) -> Vec<String> {
        live.plugins
            .keys()
            .map(|(ns, name)| format!("{ns}/{name}"))
            .collect()
    }

    fn kinds(writes: &[Write]) -> Vec<Kind> {
        writes.iter().map(|w| w.kind).collect()
    }

    #[test]
    fn first_apply_writes_everything_then_nothing() {
        let mut live = Live {
            virtual_service: Some(vs()),
            ..Live::default()
        };
        let s = spec(&[("v1", 100.0)]);
        let d = desired("shop", "prod", &s, None, &live).unwrap();
        assert_eq!(
            kinds(&d.writes),
            [
                Kind::DestinationRule,
                Kind::WasmPlugin,
                Kind::VirtualService
            ]
        );
        assert_eq!(d.writes[2].object["metadata"]["resourceVersion"], "7");
        apply(&mut live, &d.writes);
        assert!(desired("shop", "prod", &s, None, &live)
            .unwrap()
            .writes
            .is_empty());
    }

    #[test]
    fn removing_a_version_is_make_before_break() {
        let mut live = Live {
            virtual_service: Some(vs()),
            ..Live::default()
        };
        let d = desired(
            "shop",
            "prod",
            &spec(&[("v1", 90.0), ("v2", 10.0)]),
            None,
            &live,
        )
        .unwrap();
        apply(&mut live, &d.writes);
        // Promote finished: v1 goes away, v2 is stable. The routes switch before the subset goes.
        let d = desired("shop", "prod", &spec(&[("v2", 100.0)]), None, &live).unwrap();
        assert_eq!(
            kinds(&d.writes),
            [
                Kind::WasmPlugin,
                Kind::VirtualService,
                Kind::DestinationRule
            ]
        );
        // Adding v3: its subset exists before anything routes to it.
        apply(&mut live, &d.writes);
        let d = desired(
            "shop",
            "prod",
            &spec(&[("v2", 100.0), ("v3", 0.0)]),
            None,
            &live,
        )
        .unwrap();
        assert_eq!(
            kinds(&d.writes),
            [
                Kind::DestinationRule,
                Kind::WasmPlugin,
                Kind::VirtualService
            ]
        );
        // Swapping a version for another in one go: union first, then prune.
        apply(&mut live, &d.writes);
        let d = desired(
            "shop",
            "prod",
            &spec(&[("v2", 100.0), ("v4", 0.0)]),
            None,
            &live,
        )
        .unwrap();
        assert_eq!(
            kinds(&d.writes),
            [
                Kind::DestinationRule,
                Kind::WasmPlugin,
                Kind::VirtualService,
                Kind::DestinationRule
            ]
        );
        let subsets = |w: &Write| destinationrule::managed_versions(&w.object["spec"]);
        assert_eq!(subsets(&d.writes[0]), ["v2", "v4", "v3"]);
        assert_eq!(subsets(&d.writes[3]), ["v2", "v4"]);
    }

    #[test]
    fn missing_virtual_service_is_refused() {
        let err = desired(
            "shop",
            "prod",
            &spec(&[("v1", 100.0)]),
            None,
            &Live::default(),
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("VirtualService prod/shop does not exist"),
            "{err}"
        );
    }

    #[test]
    fn the_plugin_lives_with_the_gateway_and_follows_the_placement() {
        let mut live = Live {
            virtual_service: Some(vs()),
            ..Live::default()
        };
        let mut s = spec(&[("v1", 90.0), ("v2", 10.0)]);
        let d = desired("shop", "prod", &s, None, &live).unwrap();
        apply(&mut live, &d.writes);
        assert_eq!(
            plugin_names(&live),
            ["istio-system/sticky-canary-gateway-istio-ingressgateway"]
        );
        let plugin = live.plugins.values().next().unwrap();
        let entry = wasmplugin::entry(plugin, "prod/shop").unwrap();
        assert_eq!(entry["services"], json!(["shop.prod.svc.cluster.local"]));
        assert_eq!(
            entry["config"]["cookie"]["name"],
            "sticky-version.prod.shop"
        );
        // Placed on another gateway: the entry moves, and the plugin it leaves goes with it.
        s.plugin.gateways = Some(vec![api::Proxies {
            namespace: Some("edge".into()),
            selector: BTreeMap::from([("app".into(), "edge".into())]),
            ..Default::default()
        }]);
        let d = desired("shop", "prod", &s, None, &live).unwrap();
        assert_eq!(kinds(&d.writes), [Kind::WasmPlugin, Kind::WasmPlugin]);
        assert!(
            !d.writes[0].delete && d.writes[1].delete,
            "make before break"
        );
        apply(&mut live, &d.writes);
        assert_eq!(plugin_names(&live), ["edge/sticky-canary-gateway-app-edge"]);
        assert!(desired("shop", "prod", &s, None, &live)
            .unwrap()
            .writes
            .is_empty());
    }

    #[test]
    fn rollouts_share_the_gateways_plugin_and_leave_it_to_each_other() {
        let mut live = Live {
            virtual_service: Some(vs()),
            ..Live::default()
        };
        let s = spec(&[("v1", 90.0), ("v2", 10.0)]);
        for rollout in ["shop", "cart"] {
            let d = desired(rollout, "prod", &s, None, &live).unwrap();
            apply(&mut live, &d.writes);
        }
        let plugin = live.plugins.values().next().unwrap().clone();
        let names: Vec<&str> = wasmplugin::entries(&plugin)
            .iter()
            .filter_map(|e| e["name"].as_str())
            .collect();
        assert_eq!(names, ["prod/cart", "prod/shop"]);
        // What the rollout owns does not change when the other one changes.
        let owned = |live: &Live| {
            desired("shop", "prod", &s, None, live).unwrap().objects[0]
                .owned
                .clone()
        };
        let before = owned(&live);
        let d = desired(
            "cart",
            "prod",
            &spec(&[("v1", 50.0), ("v2", 50.0)]),
            None,
            &live,
        )
        .unwrap();
        apply(&mut live, &d.writes);
        assert_eq!(owned(&live), before);
        // Deleting one leaves the other's entry; deleting the last deletes the plugin.
        let writes = teardown("cart", "prod", &s, &live);
        assert!(!writes[0].delete);
        apply(&mut live, &writes);
        assert_eq!(live.plugins.len(), 1);
        let writes = teardown("shop", "prod", &s, &live);
        assert!(writes[0].delete);
        apply(&mut live, &writes);
        assert!(live.plugins.is_empty());
    }

    #[test]
    fn the_single_rollout_plugin_of_earlier_versions_goes_once_the_shared_one_is_there() {
        let legacy = json!({"apiVersion": wasmplugin::API_VERSION, "kind": wasmplugin::KIND,
            "metadata": {"name": "sticky-canary-shop", "namespace": "prod", "resourceVersion": "3",
                         "labels": {wasmplugin::MANAGED_BY_LABEL: wasmplugin::MANAGED_BY}},
            "spec": {"pluginConfig": {"versions": [{"name": "v1", "weight": 100}]}}});
        let mut live = Live {
            virtual_service: Some(vs()),
            ..Live::default()
        };
        live.plugins
            .insert(namespace_and_name(&legacy), legacy.clone());
        let d = desired("shop", "prod", &spec(&[("v1", 100.0)]), None, &live).unwrap();
        let plugin_writes: Vec<(bool, (String, String))> = d
            .writes
            .iter()
            .filter(|w| w.kind == Kind::WasmPlugin)
            .map(|w| (w.delete, namespace_and_name(&w.object)))
            .collect();
        assert_eq!(
            plugin_writes,
            [
                (
                    false,
                    (
                        "istio-system".into(),
                        "sticky-canary-gateway-istio-ingressgateway".into()
                    )
                ),
                (true, ("prod".into(), "sticky-canary-shop".into())),
            ]
        );
    }

    #[test]
    fn teardown_leaves_only_the_users_objects() {
        let mut live = Live {
            virtual_service: Some(vs()),
            destination_rule: Some(json!({"apiVersion": "networking.istio.io/v1",
                "kind": "DestinationRule", "metadata": {"name": "shop", "namespace": "prod"},
                "spec": {"host": "shop", "subsets": [{"name": "legacy", "labels": {"track": "old"}}]}})),
            ..Live::default()
        };
        let before = live.clone();
        let s = spec(&[("v1", 90.0), ("v2", 10.0)]);
        let first = desired("shop", "prod", &s, None, &live).unwrap();
        apply(&mut live, &first.writes);
        let writes = teardown("shop", "prod", &s, &live);
        assert_eq!(
            kinds(&writes),
            [
                Kind::WasmPlugin,
                Kind::VirtualService,
                Kind::DestinationRule
            ]
        );
        apply(&mut live, &writes);
        assert_eq!(live, before);
        assert!(teardown("shop", "prod", &s, &live).is_empty(), "idempotent");
        assert!(
            teardown("shop", "prod", &s, &Live::default()).is_empty(),
            "nothing there"
        );
    }

    /// The DestinationRule the rollout created goes with it; the user's VirtualService stays.
    #[test]
    fn teardown_deletes_the_destination_rule_it_created() {
        let mut live = Live {
            virtual_service: Some(vs()),
            ..Live::default()
        };
        let s = spec(&[("v1", 90.0), ("v2", 10.0)]);
        let first = desired("shop", "prod", &s, None, &live).unwrap();
        apply(&mut live, &first.writes);
        let writes = teardown("shop", "prod", &s, &live);
        let deleted: Vec<(Kind, bool)> = writes.iter().map(|w| (w.kind, w.delete)).collect();
        assert_eq!(
            deleted,
            [
                (Kind::WasmPlugin, true),
                (Kind::VirtualService, false),
                (Kind::DestinationRule, true)
            ]
        );
        apply(&mut live, &writes);
        assert_eq!(live.destination_rule, None);
        assert_eq!(live.virtual_service, Some(vs()));
    }

    #[test]
    fn display_drops_server_fields() {
        let shown = for_display(&vs());
        assert!(shown["metadata"].get("resourceVersion").is_none());
        assert_eq!(shown["metadata"]["name"], "shop");
    }
}
