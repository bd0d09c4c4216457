//! A rollout's objects on the HTTPRoute API (Gateway API gateways, sidecars, ambient
//! waypoints): a Service per version ([`services`]), the managed rules in the user's HTTPRoute
//! ([`httproute`]), and its entry in the shared plugins, listing the service and every version
//! Service, since the filter reads the rollout off the cluster a route chose.
//!
//! Make before break: a version's Service is applied before any rule sends to it, and its
//! rule before the plugins stamp requests with it (so no stamped request meets a route
//! without its rule); then the plugins switch, then the route drops the rules of versions no
//! longer stamped, then the rollout leaves the plugins of groups it is no longer placed on,
//! and only then are the Services nothing routes to deleted.

use std::collections::BTreeSet;

use serde_json::{json, Value};

use super::istio::{
    deletion, namespace_and_name, object_name, plugin_writes, with_spec, Desired, Kind, Live, Write,
};
use super::{httproute, same_opt, services, EditError};
use api::{RoutingApi, StickyCanarySpec};

/// The service of an HTTPRoute rollout: its Service's name, from `spec.service`, which must be
/// the full host `<name>.<namespace>.svc.<domain>` of a Service in the rollout's namespace
/// (the version Services are made next to it, and the rules name it).
fn service_name<'a>(namespace: &str, spec: &'a StickyCanarySpec) -> Result<&'a str, EditError> {
    let malformed = |why: String| EditError::Malformed {
        object: "spec.service".to_owned(),
        why,
    };
    let (name, service_namespace, _) = services::parse_host(&spec.service).ok_or_else(|| {
        malformed(format!(
            "{:?}: the HTTPRoute API needs the service's full host, <name>.<namespace>.svc.<domain> (e.g. shop.{namespace}.svc.cluster.local): its rules name a Service and a namespace",
            spec.service
        ))
    })?;
    if service_namespace != namespace {
        return Err(malformed(format!(
            "{:?} is in namespace {service_namespace}, the rollout in {namespace}: on the HTTPRoute API the rollout lives next to its Service, where it makes the version Services",
            spec.service
        )));
    }
    Ok(name)
}

/// The user's HTTPRoute of rollout `rollout`: the one the spec names (default: the rollout's
/// name) when it exists, else the only HTTPRoute of the namespace with a rule to the service.
pub fn find_route<'a>(
    rollout: &str,
    namespace: &str,
    spec: &StickyCanarySpec,
    live: &'a Live,
) -> Option<&'a Value> {
    let named = object_name(Kind::HttpRoute, rollout, spec);
    let by_name = live
        .http_routes
        .iter()
        .find(|route| namespace_and_name(route).1 == named);
    if by_name.is_some() || spec.routing.http_route.is_some() {
        return by_name;
    }
    match routing(namespace, spec, live)[..] {
        [only] => Some(only),
        _ => None,
    }
}

/// The HTTPRoutes of the namespace with a rule to the rollout's service.
pub fn routing<'a>(namespace: &str, spec: &StickyCanarySpec, live: &'a Live) -> Vec<&'a Value> {
    let service = spec.service.split('.').next().unwrap_or(&spec.service);
    live.http_routes
        .iter()
        .filter(|route| {
            let route_spec = route.get("spec").unwrap_or(&Value::Null);
            httproute::routes_to(route_spec, namespace, service, namespace)
        })
        .collect()
}

/// The rollout's objects on the HTTPRoute API and the writes that get there from `live`.
pub(crate) fn desired(
    rollout: &str,
    namespace: &str,
    spec: &StickyCanarySpec,
    seal: Option<&str>,
    live: &Live,
) -> Result<Desired, EditError> {
    let service = service_name(namespace, spec)?;
    let route = find_route(rollout, namespace, spec, live).ok_or_else(|| EditError::Missing {
        kind: httproute::KIND,
        namespace: namespace.to_owned(),
        name: object_name(Kind::HttpRoute, rollout, spec),
    })?;
    let (_, route_name) = namespace_and_name(route);
    let parent = live
        .services
        .get(service)
        .ok_or_else(|| EditError::Missing {
            kind: "Service",
            namespace: namespace.to_owned(),
            name: service.to_owned(),
        })?;
    check_placed(spec, namespace, &route_name, route)?;

    let owner = format!("{namespace}/{rollout}");
    let routed: Vec<(String, String)> = spec
        .versions
        .iter()
        .map(|v| (v.name.clone(), spec.version_service(&v.name)))
        .collect();
    let mut service_writes = Vec::new();
    for (version, name) in &routed {
        if spec.routing.version_services.contains_key(version) {
            // The user's own: used as it is, never written.
            if !live.services.contains_key(name) {
                return Err(EditError::Missing {
                    kind: "Service",
                    namespace: namespace.to_owned(),
                    name: name.clone(),
                });
            }
            continue;
        }
        let made = services::render(
            parent,
            &services::VersionService {
                rollout: &owner,
                version,
                name,
                version_label: spec.version_label(),
            },
        )?;
        let object = services::with_live(&made, live.services.get(name), &owner)?;
        service_writes.push(Write::put(Kind::Service, object));
    }

    let managed = httproute::ManagedRules {
        rollout,
        service,
        service_namespace: namespace,
        header: &spec.filter.header,
        versions: routed
            .iter()
            .map(|(v, s)| (v.as_str(), s.as_str()))
            .collect(),
        seal,
    };
    let ours = httproute::parents(route.get("spec").unwrap_or(&Value::Null), namespace);
    for other in &live.http_routes {
        let (_, name) = namespace_and_name(other);
        let other_spec = other.get("spec").unwrap_or(&Value::Null);
        // A route of other parents is another proxy's (an ingress route and a mesh route
        // of one service): it never competes with the rollout's rules.
        let shared = httproute::parents(other_spec, namespace)
            .iter()
            .any(|p| ours.contains(p));
        if name != route_name && shared {
            httproute::check_other_route(&name, namespace, other_spec, &managed, &route_name)?;
        }
    }
    let live_spec = route.get("spec").unwrap_or(&json!({})).clone();
    let route_spec = httproute::edit(&route_name, namespace, &live_spec, &managed)?;
    // A new version's rule goes in before the plugins stamp it, and a leaving version's stays
    // until they no longer do: first the route with both, then the plugins, then the route.
    let live_versions = httproute::managed_versions(&live_spec, rollout);
    let mut both = routed.clone();
    for (version, service) in live_versions.clone() {
        if !both.iter().any(|(v, _)| *v == version) {
            both.push((version, service));
        }
    }
    let with_leaving = httproute::ManagedRules {
        versions: both.iter().map(|(v, s)| (v.as_str(), s.as_str())).collect(),
        ..managed.clone()
    };
    let route_first = with_spec(
        route,
        httproute::edit(&route_name, namespace, &live_spec, &with_leaving)?,
    );
    // The route may carry other rollouts' rules too (services path-routed on one host): the
    // rollout owns only its own, so another rollout's change is no change of this one.
    let own_rules: BTreeSet<String> = routed
        .iter()
        .map(|(version, _)| httproute::rule_name(rollout, version))
        .chain([httproute::default_rule_name(rollout)])
        .collect();
    let owned_rules: Vec<&Value> = route_spec["rules"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|rule| {
            rule["name"]
                .as_str()
                .is_some_and(|name| own_rules.contains(name))
        })
        .collect();
    let owned = json!({"httpRoute": format!("{namespace}/{route_name}"), "rules": owned_rules});
    let route_final = Write {
        owned,
        ..Write::put(Kind::HttpRoute, with_spec(route, route_spec))
    };

    let names: Vec<&str> = routed.iter().map(|(_, s)| s.as_str()).collect();
    let hosts = services::filter_services(&spec.service, &names)?;
    let (plugins, leaving) = plugin_writes(rollout, namespace, spec, seal, live, hosts)?;

    let keep: BTreeSet<&str> = names.iter().copied().collect();
    let live_services: Vec<Value> = live.services.values().cloned().collect();
    let stale: Vec<Write> = services::stale(&live_services, &owner, &keep)
        .into_iter()
        .filter_map(|name| live.services.get(name))
        .map(|object| deletion(Kind::Service, object))
        .collect();

    let mut objects = plugins;
    objects.push(route_final);
    objects.extend(service_writes);
    let changed = |w: &&Write| !same_opt(live.get(w.kind, &w.object), Some(&w.object));
    let of = |kind: Kind| objects.iter().filter(move |w| w.kind == kind);
    let mut writes: Vec<Write> = of(Kind::Service).filter(changed).cloned().collect();
    let adds = routed
        .iter()
        .any(|(v, _)| !live_versions.iter().any(|(l, _)| l == v));
    let mut route_now = route.clone();
    if adds && !same_opt(Some(&route_now), Some(&route_first)) {
        let final_owned = of(Kind::HttpRoute).next().map(|w| w.owned.clone());
        writes.push(Write {
            owned: final_owned.unwrap_or_default(),
            ..Write::put(Kind::HttpRoute, route_first.clone())
        });
        route_now = route_first;
    }
    writes.extend(of(Kind::WasmPlugin).filter(changed).cloned());
    writes.extend(
        of(Kind::HttpRoute)
            .filter(|w| !same_opt(Some(&route_now), Some(&w.object)))
            .cloned(),
    );
    writes.extend(leaving);
    writes.extend(stale);
    Ok(Desired {
        api: RoutingApi::HttpRoute,
        objects,
        writes,
    })
}

/// Refuses the one placement that cannot work on the HTTPRoute API: none given, which means
/// the classic ingress gateway (`istio: ingressgateway`), a proxy that does not serve this
/// route. The message names the route's Gateways as the fix.
fn check_placed(
    spec: &StickyCanarySpec,
    namespace: &str,
    route_name: &str,
    route: &Value,
) -> Result<(), EditError> {
    let plugin = &spec.plugin;
    let given = plugin.gateways.is_some()
        || !plugin.selector.is_empty()
        || !plugin.target_refs.is_empty()
        || plugin.waypoint;
    if given {
        return Ok(());
    }
    let parents = httproute::gateway_parents(route.get("spec").unwrap_or(&Value::Null), namespace);
    let fix = match parents.first() {
        Some((gateway_namespace, gateway)) => format!(
            "for its Gateway, spec.plugin.gateways: [{{namespace: {gateway_namespace}, targetRefs: [{{group: gateway.networking.k8s.io, kind: Gateway, name: {gateway}}}]}}] (stickyctl init --target-ref Gateway/{gateway} --gateway-namespace {gateway_namespace})"
        ),
        None => "spec.plugin.waypoint (an ambient waypoint) or spec.plugin.sidecars (the callers)".to_owned(),
    };
    Err(EditError::Malformed {
        object: "spec.plugin".to_owned(),
        why: format!(
            "says where the filter runs, and on the HTTPRoute API there is no default (HTTPRoute {namespace}/{route_name} is not served by the classic ingress gateway): set {fix}"
        ),
    })
}

/// The writes that take deleted rollout `rollout` out of the HTTPRoute API's objects, after
/// its plugin entries are gone: its rules out of every route of the namespace (found by name),
/// then its version Services deleted.
pub(crate) fn teardown(rollout: &str, namespace: &str, live: &Live) -> Vec<Write> {
    let owner = format!("{namespace}/{rollout}");
    let routes = live.http_routes.iter().filter_map(|route| {
        let clean = with_spec(route, httproute::remove(route.get("spec")?, rollout));
        (clean != *route).then(|| Write::put(Kind::HttpRoute, clean))
    });
    let owned = live
        .services
        .values()
        .filter(|service| services::is_owned_by(service, &owner))
        .map(|service| deletion(Kind::Service, service));
    routes.chain(owned).collect()
}

#[cfg(test)]
mod tests {
    use super::super::istio::{desired as render, routing_api, teardown as tear_down};
    use super::*;
    use api::{Proxies, TargetRef};
    use sticky_canary_filter::VersionWeight;

    const HOST: &str = "shop.prod.svc.cluster.local";

    fn spec(versions: &[(&str, f64)]) -> StickyCanarySpec {
        let mut spec = StickyCanarySpec::new(HOST, versions[0].0);
        spec.versions = versions
            .iter()
            .map(|&(name, weight)| VersionWeight::new(name, weight))
            .collect();
        spec.plugin.gateways = Some(vec![Proxies {
            namespace: Some("istio-ingress".into()),
            target_refs: vec![TargetRef {
                group: "gateway.networking.k8s.io".into(),
                kind: "Gateway".into(),
                name: "public".into(),
            }],
            ..Proxies::default()
        }]);
        spec
    }

    fn route(name: &str, backend: &str) -> Value {
        json!({"apiVersion": httproute::API_VERSION, "kind": "HTTPRoute",
               "metadata": {"name": name, "namespace": "prod", "resourceVersion": "3"},
               "spec": {"parentRefs": [{"name": "public", "namespace": "istio-ingress"}],
                        "hostnames": ["shop.example"],
                        "rules": [{"backendRefs": [{"name": backend, "port": 80}]}]}})
    }

    fn parent() -> Value {
        json!({"apiVersion": "v1", "kind": "Service",
               "metadata": {"name": "shop", "namespace": "prod", "resourceVersion": "1"},
               "spec": {"selector": {"app": "shop"}, "clusterIP": "10.0.0.7",
                        "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}})
    }

    fn live() -> Live {
        Live {
            http_routes: vec![route("storefront", "shop")],
            services: [("shop".to_owned(), parent())].into(),
            ..Live::default()
        }
    }

    /// What the API server holds after `writes`.
    fn apply(live: &mut Live, writes: &[Write]) {
        for w in writes {
            let (namespace, name) = namespace_and_name(&w.object);
            match (w.kind, w.delete) {
                (Kind::WasmPlugin, false) => {
                    live.plugins.insert((namespace, name), w.object.clone());
                }
                (Kind::WasmPlugin, true) => {
                    live.plugins.remove(&(namespace, name));
                }
                (Kind::HttpRoute, _) => {
                    for route in &mut live.http_routes {
                        if namespace_and_name(route).1 == name {
                            *route = w.object.clone();
                        }
                    }
                }
                (Kind::Service, false) => {
                    live.services.insert(name, w.object.clone());
                }
                (Kind::Service, true) => {
                    live.services.remove(&name);
                }
                (kind, _) => panic!("{kind:?} written on the HTTPRoute API"),
            }
        }
    }

    /// `(kind, name, deleted)` of each write, in order.
    fn steps(writes: &[Write]) -> Vec<(Kind, String, bool)> {
        writes
            .iter()
            .map(|w| (w.kind, namespace_and_name(&w.object).1, w.delete))
            .collect()
    }

    fn rule_names(live: &Live) -> Vec<String> {
        live.http_routes[0]["spec"]["rules"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["name"].as_str().unwrap_or("(user's)").to_owned())
            .collect()
    }

    const PLUGIN: &str = "sticky-canary-gateway-gateway-public-e135f078";

    #[test]
    fn detected_then_written_service_first_then_nothing() {
        let mut live = live();
        let s = spec(&[("v1", 100.0)]);
        assert_eq!(
            routing_api("shop", "prod", &s, &live),
            Ok(RoutingApi::HttpRoute)
        );
        let d = render("shop", "prod", &s, None, &live).unwrap();
        assert_eq!(d.api, RoutingApi::HttpRoute);
        assert_eq!(
            steps(&d.writes),
            [
                (Kind::Service, "shop-v1".into(), false),
                (Kind::HttpRoute, "storefront".into(), false),
                (Kind::WasmPlugin, PLUGIN.into(), false),
            ]
        );
        let plugin = &d.writes[2].object;
        assert_eq!(plugin["metadata"]["namespace"], "istio-ingress");
        assert_eq!(
            plugin["spec"]["pluginConfig"]["rollouts"][0]["services"],
            json!([HOST, "shop-v1.prod.svc.cluster.local"])
        );
        apply(&mut live, &d.writes);
        assert_eq!(
            rule_names(&live),
            [
                "sticky-canary.shop.v-v1",
                "sticky-canary.shop.default",
                "(user's)"
            ]
        );
        assert!(render("shop", "prod", &s, None, &live)
            .unwrap()
            .writes
            .is_empty());
    }

    #[test]
    fn a_canary_comes_and_goes_make_before_break() {
        let mut live = live();
        let one = spec(&[("v1", 100.0)]);
        let writes = render("shop", "prod", &one, None, &live).unwrap().writes;
        apply(&mut live, &writes);
        let two = spec(&[("v1", 90.0), ("v2", 10.0)]);
        let d = render("shop", "prod", &two, Some("s3al"), &live).unwrap();
        assert_eq!(
            steps(&d.writes),
            [
                (Kind::Service, "shop-v2".into(), false),
                (Kind::HttpRoute, "storefront".into(), false),
                (Kind::WasmPlugin, PLUGIN.into(), false),
            ]
        );
        assert_eq!(
            d.writes[0].object["spec"]["selector"],
            json!({"app": "shop", "version": "v2"})
        );
        apply(&mut live, &d.writes);
        assert_eq!(
            rule_names(&live),
            [
                "sticky-canary.shop.v-v1",
                "sticky-canary.shop.v-v2",
                "sticky-canary.shop.default",
                "(user's)"
            ]
        );
        // Back to one version: the Service goes last, after nothing routes to it.
        let d = render("shop", "prod", &one, None, &live).unwrap();
        assert_eq!(
            steps(&d.writes),
            [
                (Kind::WasmPlugin, PLUGIN.into(), false),
                (Kind::HttpRoute, "storefront".into(), false),
                (Kind::Service, "shop-v2".into(), true),
            ]
        );
        apply(&mut live, &d.writes);
        assert!(!live.services.contains_key("shop-v2"));
    }

    #[test]
    fn a_new_versions_rule_is_in_before_the_filter_stamps_it_and_a_leaving_ones_after() {
        let mut live = live();
        let two = spec(&[("v1", 90.0), ("v2", 10.0)]);
        let writes = render("shop", "prod", &two, None, &live).unwrap().writes;
        apply(&mut live, &writes);
        let three = spec(&[("v1", 90.0), ("v3", 10.0)]);
        let d = render("shop", "prod", &three, None, &live).unwrap();
        assert_eq!(
            steps(&d.writes),
            [
                (Kind::Service, "shop-v3".into(), false),
                (Kind::HttpRoute, "storefront".into(), false),
                (Kind::WasmPlugin, PLUGIN.into(), false),
                (Kind::HttpRoute, "storefront".into(), false),
                (Kind::Service, "shop-v2".into(), true),
            ]
        );
        let rules = |w: &Write| -> Vec<String> {
            w.object["spec"]["rules"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|r| r["name"].as_str().map(str::to_owned))
                .collect()
        };
        assert_eq!(
            rules(&d.writes[1]),
            [
                "sticky-canary.shop.v-v1",
                "sticky-canary.shop.v-v3",
                "sticky-canary.shop.v-v2",
                "sticky-canary.shop.default"
            ]
        );
        assert_eq!(
            rules(&d.writes[3]),
            [
                "sticky-canary.shop.v-v1",
                "sticky-canary.shop.v-v3",
                "sticky-canary.shop.default"
            ]
        );
        apply(&mut live, &d.writes);
        assert!(render("shop", "prod", &three, None, &live)
            .unwrap()
            .writes
            .is_empty());
    }

    #[test]
    fn teardown_restores_the_route_exactly_and_deletes_only_its_services() {
        let original = live();
        let mut live = original.clone();
        let mut s = spec(&[("v1", 90.0), ("v2", 10.0)]);
        s.routing
            .version_services
            .insert("v2".into(), "shop-canary".into());
        let err = render("shop", "prod", &s, None, &live).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Service prod/shop-canary does not exist: create it first; stickyctl only adds its managed routes to it"
        );
        let mut users = parent();
        users["metadata"]["name"] = json!("shop-canary");
        live.services.insert("shop-canary".into(), users.clone());
        let writes = render("shop", "prod", &s, None, &live).unwrap().writes;
        apply(&mut live, &writes);
        assert!(live.services.contains_key("shop-v1"));
        assert_eq!(
            live.services["shop-canary"], users,
            "the user's is never written"
        );
        let writes = tear_down("shop", "prod", &s, &live);
        assert_eq!(
            steps(&writes),
            [
                (Kind::WasmPlugin, PLUGIN.into(), true),
                (Kind::HttpRoute, "storefront".into(), false),
                (Kind::Service, "shop-v1".into(), true),
            ]
        );
        apply(&mut live, &writes);
        assert_eq!(live.http_routes, original.http_routes);
        assert_eq!(live.services.len(), 2, "{:?}", live.services.keys());
        assert!(tear_down("shop", "prod", &s, &live).is_empty());
    }

    #[test]
    fn another_rollouts_rules_in_the_same_route_are_no_change_of_this_one() {
        // Services path-routed on one host: `shop` and `cart` in one HTTPRoute.
        let mut live = live();
        let cart_rule = json!({"matches": [{"path": {"type": "PathPrefix", "value": "/cart"}}],
                               "backendRefs": [{"name": "cart", "port": 80}]});
        live.http_routes[0]["spec"]["rules"]
            .as_array_mut()
            .unwrap()
            .push(cart_rule);
        let mut cart_parent = parent();
        cart_parent["metadata"]["name"] = json!("cart");
        cart_parent["spec"]["selector"] = json!({"app": "cart"});
        live.services.insert("cart".into(), cart_parent);
        let shop = spec(&[("v1", 90.0), ("v2", 10.0)]);
        let mut cart = spec(&[("v1", 100.0)]);
        cart.service = "cart.prod.svc.cluster.local".into();
        let writes = render("shop", "prod", &shop, None, &live).unwrap().writes;
        apply(&mut live, &writes);
        let owned = |live: &Live| {
            let d = render("shop", "prod", &shop, None, live).unwrap();
            let route = d
                .objects
                .iter()
                .find(|w| w.kind == Kind::HttpRoute)
                .unwrap();
            route.owned.clone()
        };
        let before = owned(&live);
        assert_eq!(before["httpRoute"], "prod/storefront");
        assert_eq!(
            before["rules"].as_array().map(Vec::len),
            Some(3),
            "{before:#}"
        );
        // Cart's rollout comes, then its canary: shop's part of the route is unchanged.
        for versions in [&[("v1", 100.0)][..], &[("v1", 50.0), ("v2", 50.0)]] {
            cart.versions = versions
                .iter()
                .map(|&(name, weight)| VersionWeight::new(name, weight))
                .collect();
            let writes = render("cart", "prod", &cart, None, &live).unwrap().writes;
            assert!(!writes.is_empty());
            apply(&mut live, &writes);
            assert!(render("shop", "prod", &shop, None, &live)
                .unwrap()
                .writes
                .is_empty());
            assert_eq!(owned(&live), before);
        }
        assert_eq!(rule_names(&live).len(), 8, "{:?}", rule_names(&live));
        // A change of shop's own is one.
        let mut user = live.clone();
        user.http_routes[0]["spec"]["rules"][3]["matches"] =
            json!([{"path": {"type": "PathPrefix", "value": "/shop"}}]);
        assert_ne!(owned(&user), before);
    }

    #[test]
    fn without_a_placement_the_routes_gateway_is_the_fix() {
        let mut s = spec(&[("v1", 100.0)]);
        s.plugin.gateways = None;
        let err = render("shop", "prod", &s, None, &live())
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("spec.plugin: says where the filter runs, and on the HTTPRoute API there is no default")
                && err.contains("--target-ref Gateway/public --gateway-namespace istio-ingress"),
            "{err}"
        );
        s.plugin.waypoint = true;
        assert!(render("shop", "prod", &s, None, &live()).is_ok());
    }

    #[test]
    fn refused_by_name_before_anything_is_written() {
        let s = spec(&[("v1", 100.0)]);
        let mut both = live();
        both.virtual_service = Some(json!({"metadata": {"name": "shop", "namespace": "prod"}}));
        let err = routing_api("shop", "prod", &s, &both)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("VirtualService prod/shop: and HTTPRoute prod/storefront both route shop.prod.svc.cluster.local"),
            "{err}"
        );
        // Two routes to the service: neither is the rollout's by detection.
        let mut two = live();
        two.http_routes.push(route("checkout", "shop"));
        let err = render("shop", "prod", &s, None, &two)
            .unwrap_err()
            .to_string();
        assert!(
            err.ends_with("HTTPRoutes prod/storefront, prod/checkout all route it: name the one for the rollout in spec.routing.httpRoute (stickyctl init --http-route)"),
            "{err}"
        );
        // Named, the other one is refused.
        let mut named = s.clone();
        named.routing.http_route = Some("storefront".into());
        let err = render("shop", "prod", &named, None, &two)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with(
                "rule rules[0] of HTTPRoute prod/checkout sends to Service prod/shop too"
            ),
            "{err}"
        );
        // A route of the service with other parents (a mesh route, parent the Service) is
        // another proxy's: not refused.
        let mut mesh = two.clone();
        mesh.http_routes[1]["spec"]["parentRefs"] =
            json!([{"group": "", "kind": "Service", "name": "shop"}]);
        assert!(render("shop", "prod", &named, None, &mesh).is_ok());
        let mut short = s.clone();
        short.service = "shop".into();
        short.routing.api = Some(RoutingApi::HttpRoute);
        let err = render("shop", "prod", &short, None, &live())
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with(
                "spec.service: \"shop\": the HTTPRoute API needs the service's full host"
            ),
            "{err}"
        );
        let mut elsewhere = short;
        elsewhere.service = "shop.web.svc.cluster.local".into();
        let err = render("shop", "prod", &elsewhere, None, &live())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("is in namespace web, the rollout in prod"),
            "{err}"
        );
    }
}
