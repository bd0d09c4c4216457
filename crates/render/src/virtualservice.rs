//! Managed header routes in the user's own VirtualService.
//!
//! Before each of the user's routes to the service, the rollout adds one route per routed
//! version, named `sticky-canary-<rollout>-<version>`: the user route's own match conditions
//! and settings (timeouts, retries, rewrites) plus the version header, sending to that
//! version's subset; and after them a route named `sticky-canary-<rollout>` with the user
//! route's conditions alone, sending to stable, for requests the filter did not stamp (a
//! module that failed open). So a stamped request takes exactly the path the user's route gave
//! it, and several services sharing one VirtualService (`/` and `/api`, each with its own
//! rollout and the same version names) never catch each other's requests. Every edit starts by
//! dropping all managed routes (found by name and destination host) and adds the current ones
//! back, so repeated edits are idempotent and removed versions leave no route behind (no
//! header routes piling up, as Argo Rollouts once did).
//!
//! A user route before the service's first one that catches every request would make ours
//! unreachable and is refused, naming it, as is any user route matching on the version header
//! itself. Without a user route to the service the managed routes go last, the stable one
//! without conditions. User routes are never modified.

use serde_json::{json, Map, Value};

use super::{EditError, HeaderEdit};
use api::names::subset_name;

/// API version of Istio's VirtualService.
pub const API_VERSION: &str = "networking.istio.io/v1";
/// Kind of Istio's VirtualService.
pub const KIND: &str = "VirtualService";

/// What the managed routes must say.
#[derive(Debug, Clone, PartialEq)]
pub struct ManagedRoutes<'a> {
    /// Rollout name, part of every managed route name.
    pub rollout: &'a str,
    /// Destination host of the service.
    pub service: &'a str,
    /// Header the filter stamps.
    pub header: &'a str,
    /// Versions that get a route, stable first (a retiring version is still routed).
    pub versions: Vec<&'a str>,
    /// The rollout's route seal: a version's route matches `<version>;<seal>` only and puts
    /// the plain `<version>` back before the upstream (`None`: the plain version, as before
    /// the rollout had a seal).
    pub seal: Option<&'a str>,
}

/// Start of every managed route's name.
const MANAGED_PREFIX: &str = "sticky-canary-";

/// Name of the managed route of `version`.
pub fn route_name(rollout: &str, version: &str) -> String {
    format!("{MANAGED_PREFIX}{rollout}-{version}")
}

/// Name of the managed route to stable for unstamped requests.
pub fn default_route_name(rollout: &str) -> String {
    format!("{MANAGED_PREFIX}{rollout}")
}

/// The VirtualService `spec` with the managed routes in place; `name` is the VirtualService's,
/// for error messages.
pub fn edit(name: &str, spec: &Value, routes: &ManagedRoutes) -> Result<Value, EditError> {
    let malformed = |why: &str| EditError::Malformed {
        object: format!("VirtualService {name}"),
        why: why.to_owned(),
    };
    let mut spec = spec
        .as_object()
        .cloned()
        .ok_or_else(|| malformed("spec is not an object"))?;
    let http = match spec.get("http") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(http)) => http.clone(),
        Some(_) => return Err(malformed("spec.http is not a list")),
    };
    let header = routes.header.to_ascii_lowercase();
    let user: Vec<Value> = http
        .into_iter()
        .filter(|route| !is_managed(route, routes.rollout, routes.service))
        .collect();
    for (i, route) in user.iter().enumerate() {
        if matches_header(route, &header) && !is_any_rollouts(route) {
            return Err(EditError::HeaderConflict {
                virtual_service: name.to_owned(),
                route: describe(route, i),
                header: header.clone(),
            });
        }
    }
    let ours: Vec<usize> = user
        .iter()
        .enumerate()
        .filter(|(_, route)| destination_hosts(route).any(|h| same_host(h, routes.service)))
        .map(|(i, _)| i)
        .collect();
    let first = ours.first().copied().unwrap_or(user.len());
    if let Some((i, route)) = user[..first]
        .iter()
        .enumerate()
        .find(|(_, route)| is_catch_all(route))
    {
        return Err(EditError::Shadowed {
            virtual_service: name.to_owned(),
            route: describe(route, i),
        });
    }
    let mut out: Vec<Value> = Vec::with_capacity(user.len() * (routes.versions.len() + 2) + 1);
    if ours.is_empty() {
        out.extend(user.iter().cloned());
        out.extend(managed_group(routes, &header, &json!({})));
    } else {
        for (i, route) in user.iter().enumerate() {
            if ours.contains(&i) {
                out.extend(managed_group(routes, &header, route));
            }
            out.push(route.clone());
        }
    }
    spec.insert("http".to_owned(), Value::Array(out));
    Ok(Value::Object(spec))
}

/// The managed routes in front of the user's route `user` to the service (`{}` when there is
/// none): one per version with the route's conditions and the header, then stable's with the
/// conditions alone; every other setting of the user's route carries over.
fn managed_group(routes: &ManagedRoutes, header: &str, user: &Value) -> Vec<Value> {
    let port = user.pointer("/route/0/destination/port").cloned();
    let destination = |version: &str| {
        let mut destination = json!({ "host": routes.service, "subset": subset_name(version) });
        if let Some(port) = &port {
            destination["port"] = port.clone();
        }
        json!([{ "destination": destination }])
    };
    let settings: Map<String, Value> = user
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(k, _)| !matches!(k.as_str(), "name" | "match" | "route"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let conditions: Vec<Value> = user
        .get("match")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let route = |name: String, conditions: Vec<Value>, version: &str, edit: HeaderEdit| {
        let mut route = settings.clone();
        route.insert("name".to_owned(), json!(name));
        if !conditions.is_empty() {
            route.insert("match".to_owned(), Value::Array(conditions));
        }
        route.insert("route".to_owned(), destination(version));
        edit_request_header(&mut route, header, edit);
        Value::Object(route)
    };
    let mut group: Vec<Value> = routes
        .versions
        .iter()
        .map(|version| {
            let stamped = if conditions.is_empty() {
                vec![json!({})]
            } else {
                conditions.clone()
            };
            let stamp = match routes.seal {
                Some(seal) => format!("{version};{seal}"),
                None => (*version).to_owned(),
            };
            let stamped = stamped
                .into_iter()
                .map(|mut condition| {
                    condition["headers"][header] = json!({ "exact": stamp });
                    condition
                })
                .collect();
            let edit = match routes.seal {
                Some(_) => HeaderEdit::Set(version),
                None => HeaderEdit::Keep,
            };
            route(route_name(routes.rollout, version), stamped, version, edit)
        })
        .collect();
    if let Some(stable) = routes.versions.first() {
        // Unstamped requests: whatever version header they carry came from the client, and
        // must not reach a service that propagates it to a hop that trusts it.
        group.push(route(
            default_route_name(routes.rollout),
            conditions,
            stable,
            HeaderEdit::Remove,
        ));
    }
    group
}

/// Adds `edit` of request header `header` to a route's `headers.request`, next to the user
/// route's own header settings (which carry over). A `headers` of another shape is left as
/// it is: the API server refuses it anyway, naming it.
fn edit_request_header(route: &mut Map<String, Value>, header: &str, edit: HeaderEdit) {
    if matches!(edit, HeaderEdit::Keep) {
        return;
    }
    let Some(request) = route
        .entry("headers")
        .or_insert_with(|| json!({}))
        .as_object_mut()
        .and_then(|headers| {
            headers
                .entry("request")
                .or_insert_with(|| json!({}))
                .as_object_mut()
        })
    else {
        return;
    };
    match edit {
        HeaderEdit::Keep => {}
        HeaderEdit::Set(version) => {
            if let Some(set) = request
                .entry("set")
                .or_insert_with(|| json!({}))
                .as_object_mut()
            {
                set.insert(header.to_owned(), json!(version));
            }
        }
        HeaderEdit::Remove => {
            if let Some(remove) = request
                .entry("remove")
                .or_insert_with(|| json!([]))
                .as_array_mut()
            {
                if !remove.iter().any(|h| h.as_str() == Some(header)) {
                    remove.push(json!(header));
                }
            }
        }
    }
}

/// The VirtualService `spec` without the managed routes of rollout `rollout` of `service`, for
/// when the rollout is deleted: the user's routes stay exactly as they are, in their order.
/// A spec without a route list has nothing of ours and is returned unchanged.
pub fn remove(spec: &Value, rollout: &str, service: &str) -> Value {
    let mut spec = spec.clone();
    if let Some(http) = spec.get_mut("http").and_then(Value::as_array_mut) {
        http.retain(|route| !is_managed(route, rollout, service));
    }
    spec
}

/// Whether a route is one of rollout `rollout`'s managed routes: by name, and by destination,
/// so a second rollout whose name extends this one's (`shop` and `shop-api`) is left alone.
fn is_managed(route: &Value, rollout: &str, service: &str) -> bool {
    let Some(name) = route.get("name").and_then(Value::as_str) else {
        return false;
    };
    let prefix = format!("{}-", default_route_name(rollout));
    let named = name == default_route_name(rollout) || name.starts_with(&prefix);
    let hosts: Vec<&str> = destination_hosts(route).collect();
    named && !hosts.is_empty() && hosts.iter().all(|h| *h == service)
}

/// Whether a route is managed by some rollout (this one or another sharing the VirtualService).
fn is_any_rollouts(route: &Value) -> bool {
    route
        .get("name")
        .and_then(Value::as_str)
        .is_some_and(|name| name.starts_with(MANAGED_PREFIX))
}

fn destination_hosts(route: &Value) -> impl Iterator<Item = &str> {
    route
        .get("route")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|d| d.pointer("/destination/host").and_then(Value::as_str))
}

/// Hosts name the same service when equal, or when one is the other's short form
/// (`reviews` and `reviews.shop.svc.cluster.local`).
fn same_host(a: &str, b: &str) -> bool {
    let (short, long) = if a.len() <= b.len() { (a, b) } else { (b, a) };
    short == long
        || long
            .strip_prefix(short)
            .is_some_and(|rest| rest.starts_with('.'))
}

/// A route that takes every request: no match, or a match entry with no condition.
fn is_catch_all(route: &Value) -> bool {
    match route.get("match") {
        None | Some(Value::Null) => true,
        Some(Value::Array(matches)) => matches.is_empty() || matches.iter().any(matches_all),
        Some(_) => false,
    }
}

fn matches_all(entry: &Value) -> bool {
    let Some(entry) = entry.as_object() else {
        return false;
    };
    let conditions: Map<String, Value> = entry
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "name" | "ignoreUriCase"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let whole_uri = |uri: &Value| uri == &json!({"prefix": "/"}) || uri == &json!({"regex": ".*"});
    match conditions.len() {
        0 => true,
        1 => conditions.get("uri").is_some_and(whole_uri),
        _ => false,
    }
}

fn matches_header(route: &Value, header: &str) -> bool {
    route
        .get("match")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .flat_map(|entry| ["headers", "withoutHeaders"].map(|k| entry.get(k)))
        .flatten()
        .filter_map(Value::as_object)
        .any(|headers| headers.keys().any(|k| k.eq_ignore_ascii_case(header)))
}

fn describe(route: &Value, index: usize) -> String {
    match route.get("name").and_then(Value::as_str) {
        Some(name) => format!("{name:?}"),
        None => format!("#{} (unnamed)", index + 1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn routes<'a>(versions: &[&'a str]) -> ManagedRoutes<'a> {
        ManagedRoutes {
            rollout: "shop",
            service: "shop.prod.svc.cluster.local",
            header: "x-sticky-version",
            versions: versions.to_vec(),
            seal: None,
        }
    }

    fn names(spec: &Value) -> Vec<String> {
        spec["http"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["name"].as_str().unwrap_or("?").to_owned())
            .collect()
    }

    fn user_route(name: &str, path: &str, host: &str) -> Value {
        json!({"name": name, "match": [{"uri": {"prefix": path}}],
               "route": [{"destination": {"host": host, "port": {"number": 8080}}}]})
    }

    #[test]
    fn sealed_routes_match_the_seal_and_hand_on_the_plain_version() {
        let user = json!({"name": "shop", "match": [{"uri": {"prefix": "/"}}],
            "headers": {"request": {"set": {"x-team": "a"}, "remove": ["x-debug"]}},
            "route": [{"destination": {"host": "shop.prod.svc.cluster.local"}}]});
        let sealed = ManagedRoutes {
            seal: Some("0123456789abcdef"),
            ..routes(&["v1", "v2"])
        };
        let spec = edit("shop", &json!({"http": [user]}), &sealed).unwrap();
        let http = spec["http"].as_array().unwrap();
        assert_eq!(
            http[1]["match"][0]["headers"]["x-sticky-version"],
            json!({"exact": "v2;0123456789abcdef"})
        );
        assert_eq!(
            http[1]["headers"]["request"],
            json!({"set": {"x-team": "a", "x-sticky-version": "v2"}, "remove": ["x-debug"]}),
            "the user's header settings carry over"
        );
        assert_eq!(
            http[2]["headers"]["request"],
            json!({"set": {"x-team": "a"}, "remove": ["x-debug", "x-sticky-version"]}),
            "the stable route drops a client's own header"
        );
        assert_eq!(
            http[3]["headers"]["request"]["remove"],
            json!(["x-debug"]),
            "the user's route untouched"
        );
        let again = edit("shop", &spec, &sealed).unwrap();
        assert_eq!(again, spec, "idempotent");
    }

    #[test]
    fn placement_table() {
        let api = user_route("api", "/api", "api");
        let shop = user_route("shop", "/shop", "shop");
        let catch_all = json!({"name": "rest", "route": [{"destination": {"host": "shop"}}]});
        let cases = [
            (
                "empty",
                json!({"hosts": ["web"]}),
                vec![
                    "sticky-canary-shop-v1",
                    "sticky-canary-shop-v2",
                    "sticky-canary-shop",
                ],
            ),
            (
                "after routes to others",
                json!({"http": [api.clone(), shop.clone()]}),
                vec![
                    "api",
                    "sticky-canary-shop-v1",
                    "sticky-canary-shop-v2",
                    "sticky-canary-shop",
                    "shop",
                ],
            ),
            (
                "before each of the user's routes to the service",
                json!({"http": [shop.clone(), catch_all.clone()]}),
                vec![
                    "sticky-canary-shop-v1",
                    "sticky-canary-shop-v2",
                    "sticky-canary-shop",
                    "shop",
                    "sticky-canary-shop-v1",
                    "sticky-canary-shop-v2",
                    "sticky-canary-shop",
                    "rest",
                ],
            ),
            (
                "no route to the service: after the user's",
                json!({"http": [api.clone()]}),
                vec![
                    "api",
                    "sticky-canary-shop-v1",
                    "sticky-canary-shop-v2",
                    "sticky-canary-shop",
                ],
            ),
        ];
        for (name, spec, expected) in cases {
            let out = edit("web", &spec, &routes(&["v1", "v2"])).unwrap();
            assert_eq!(names(&out), expected, "{name}");
            assert_eq!(
                edit("web", &out, &routes(&["v1", "v2"])).unwrap(),
                out,
                "{name}: idempotent"
            );
        }
    }

    #[test]
    fn managed_route_content() {
        let spec = json!({"hosts": ["web"], "http": [user_route("shop", "/shop", "shop")]});
        let out = edit("web", &spec, &routes(&["v1", "v2"])).unwrap();
        assert_eq!(out["hosts"], json!(["web"]));
        assert_eq!(
            out["http"][1],
            json!({"name": "sticky-canary-shop-v2",
                   "match": [{"uri": {"prefix": "/shop"},
                              "headers": {"x-sticky-version": {"exact": "v2"}}}],
                   "route": [{"destination": {"host": "shop.prod.svc.cluster.local",
                              "subset": "sticky-canary-v2", "port": {"number": 8080}}}]})
        );
        assert_eq!(
            out["http"][2],
            json!({"name": "sticky-canary-shop",
                   "match": [{"uri": {"prefix": "/shop"}}],
                   "headers": {"request": {"remove": ["x-sticky-version"]}},
                   "route": [{"destination": {"host": "shop.prod.svc.cluster.local",
                              "subset": "sticky-canary-v1", "port": {"number": 8080}}}]}),
            "unstamped requests go to stable, without a version header of the client's"
        );
        assert_eq!(out["http"][3], spec["http"][0], "user route untouched");
    }

    #[test]
    fn the_users_settings_and_header_conditions_carry_over() {
        let user = json!({"name": "shop", "timeout": "3s", "retries": {"attempts": 2},
            "match": [{"uri": {"prefix": "/a"}, "headers": {"x-beta": {"exact": "1"}}},
                      {"uri": {"prefix": "/b"}}],
            "route": [{"destination": {"host": "shop"}}]});
        let out = edit("web", &json!({"http": [user]}), &routes(&["v1"])).unwrap();
        let managed = &out["http"][0];
        assert_eq!(managed["timeout"], "3s");
        assert_eq!(managed["retries"], json!({"attempts": 2}));
        assert_eq!(
            managed["match"],
            json!([{"uri": {"prefix": "/a"}, "headers": {"x-beta": {"exact": "1"},
                                                       "x-sticky-version": {"exact": "v1"}}},
                   {"uri": {"prefix": "/b"}, "headers": {"x-sticky-version": {"exact": "v1"}}}])
        );
    }

    #[test]
    fn rollouts_sharing_a_virtual_service_never_catch_each_others_requests() {
        let mut spec = json!({"http": [user_route("api", "/api", "api"),
                                       user_route("web", "/", "web")]});
        for (rollout, service) in [("web", "web"), ("api", "api")] {
            let r = ManagedRoutes {
                rollout,
                service,
                header: "x-sticky-version",
                versions: vec!["v1", "v2"],
                seal: None,
            };
            spec = edit("web", &spec, &r).unwrap();
        }
        // Every managed route to a service carries that service's own path condition, so a
        // request stamped v2 for /api only ever matches the api's routes.
        for route in spec["http"].as_array().unwrap() {
            let host = route["route"][0]["destination"]["host"].as_str().unwrap();
            let prefix = route["match"][0]["uri"]["prefix"].as_str().unwrap();
            assert_eq!(prefix == "/api", host == "api", "{route}");
        }
        assert_eq!(
            names(&spec),
            [
                "sticky-canary-api-v1",
                "sticky-canary-api-v2",
                "sticky-canary-api",
                "api",
                "sticky-canary-web-v1",
                "sticky-canary-web-v2",
                "sticky-canary-web",
                "web"
            ]
        );
    }

    #[test]
    fn removed_versions_leave_no_route_and_nothing_piles_up() {
        let spec = json!({"http": [user_route("shop", "/shop", "shop")]});
        let mut current = spec;
        for versions in [
            &["v1", "v2"][..],
            &["v2", "v1"],
            &["v2"],
            &["v2", "v3"],
            &["v3"],
        ] {
            current = edit("web", &current, &routes(versions)).unwrap();
        }
        assert_eq!(
            names(&current),
            ["sticky-canary-shop-v3", "sticky-canary-shop", "shop"]
        );
    }

    #[test]
    fn other_rollouts_routes_are_not_ours() {
        let other = json!({"name": "sticky-canary-shop-api-v1",
            "match": [{"headers": {"x-other": {"exact": "v1"}}}],
            "route": [{"destination": {"host": "shop-api", "subset": "sticky-canary-v1"}}]});
        let spec = json!({"http": [other.clone(), user_route("shop", "/", "shop")]});
        let out = edit("web", &spec, &routes(&["v1"])).unwrap();
        assert_eq!(out["http"][0], other);
    }

    #[test]
    fn refusals_name_the_route() {
        let shadowing = json!({"http": [
            {"name": "everything", "match": [{"uri": {"prefix": "/"}}], "route": [{"destination": {"host": "old"}}]},
            user_route("shop", "/shop", "shop")]});
        let unnamed = json!({"http": [{"route": [{"destination": {"host": "old"}}]}]});
        let header = json!({"http": [{"name": "qa", "match": [{"headers": {"X-Sticky-Version": {"exact": "v9"}}}],
            "route": [{"destination": {"host": "shop"}}]}]});
        let cases = [
            (
                shadowing,
                "route \"everything\" of VirtualService web catches every request",
            ),
            (unnamed, "route #1 (unnamed)"),
            (
                header,
                "route \"qa\" of VirtualService web matches on header x-sticky-version",
            ),
            (json!({"http": 3}), "spec.http is not a list"),
            (json!([]), "spec is not an object"),
        ];
        for (spec, needle) in cases {
            let err = edit("web", &spec, &routes(&["v1"]))
                .unwrap_err()
                .to_string();
            assert!(err.contains(needle), "{err}");
        }
    }

    #[test]
    fn remove_drops_only_this_rollouts_routes() {
        let user = user_route("shop", "/shop", "shop");
        let other = json!({"name": "sticky-canary-shop-api-v1",
            "match": [{"headers": {"x-other": {"exact": "v1"}}}],
            "route": [{"destination": {"host": "shop-api", "subset": "sticky-canary-v1"}}]});
        let managed = edit(
            "web",
            &json!({"hosts": ["web"], "http": [other.clone(), user.clone()]}),
            &routes(&["v1", "v2"]),
        )
        .unwrap();
        let service = "shop.prod.svc.cluster.local";
        let cases = [
            (
                "managed routes go, the others stay in order",
                managed,
                json!({"hosts": ["web"], "http": [other.clone(), user.clone()]}),
            ),
            (
                "nothing managed: unchanged",
                json!({"http": [user.clone()]}),
                json!({"http": [user.clone()]}),
            ),
            (
                "our name to another host is the user's",
                json!({"http": [{"name": "sticky-canary-shop-v1",
                    "route": [{"destination": {"host": "legacy"}}]}]}),
                json!({"http": [{"name": "sticky-canary-shop-v1",
                    "route": [{"destination": {"host": "legacy"}}]}]}),
            ),
            (
                "no routes",
                json!({"hosts": ["web"]}),
                json!({"hosts": ["web"]}),
            ),
        ];
        for (name, spec, expected) in cases {
            assert_eq!(remove(&spec, "shop", service), expected, "{name}");
        }
    }

    #[test]
    fn hosts() {
        assert!(same_host("shop", "shop.prod.svc.cluster.local"));
        assert!(same_host("shop.prod", "shop"));
        assert!(!same_host("shop", "shopping"));
        assert!(!same_host("shop", "api"));
    }
}
