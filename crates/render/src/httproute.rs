//! Managed rules in the user's own Gateway API HTTPRoute: the HTTPRoute backend's twin of
//! [`virtualservice`](super::virtualservice) (see `docs/gateway-api.md`, which also gives the
//! Istio code this relies on).
//!
//! Before each of the user's rules with a backendRef to the parent Service, the rollout adds
//! one rule per routed version, named `sticky-canary.<rollout>.v-<version>`: the user rule's
//! matches, each with the version header added, and its filters, timeouts and retry, sending
//! to that version's Service (an HTTPRoute backend has no subsets) and setting the plain
//! version in place of the sealed stamp; then `sticky-canary.<rollout>.default` with the user
//! rule's matches alone, sending to stable's Service and removing the header, for requests the
//! filter did not stamp. Every edit drops the rollout's rules (found by name: versions hold no
//! dot here, so `sticky-canary.shop.…` is never `sticky-canary.shop-api.…`'s) and adds the
//! current ones back, so edits are idempotent and a removed version leaves nothing behind.
//! User rules are never modified.
//!
//! Gateway API (and Istio's `sortHTTPRoutes`) orders matches by path, method, then the number
//! of header matches, ties going to the earlier rule: a version rule, one header more than the
//! user rule it copies, sorts before it, and the fallback, the same match, is placed just
//! before it. So, unlike a VirtualService, no user rule can come before the managed ones
//! without coming before the user's own rule to the service. What is refused, by name: a user
//! rule matching on or rewriting the version header, one routing to a version Service, a rule
//! to the service that an earlier identical match makes dead, no rule to the service, a route
//! grown past Gateway API's limits, and another HTTPRoute routing to the service
//! ([`check_other_route`]).

use serde_json::{json, Map, Value};
use sticky_canary_filter::names::{is_dns_name, quoted};

use super::{EditError, HeaderEdit};

/// API version of Gateway API's HTTPRoute.
pub const API_VERSION: &str = "gateway.networking.k8s.io/v1";
/// Kind of Gateway API's HTTPRoute.
pub const KIND: &str = "HTTPRoute";
/// Most rules an HTTPRoute may hold (gateway-api v1.6 `HTTPRouteSpec.Rules`).
pub const MAX_RULES: usize = 16;
/// Most matches across an HTTPRoute's rules (the CEL rule on `HTTPRouteSpec.Rules`).
pub const MAX_MATCHES: usize = 128;

/// Start of every managed rule's name.
const MANAGED_PREFIX: &str = "sticky-canary.";

/// What the managed rules must say.
#[derive(Debug, Clone, PartialEq)]
pub struct ManagedRules<'a> {
    /// The rollout's name (its `StickyCanary`'s `metadata.name`), part of every rule name.
    pub rollout: &'a str,
    /// Name of the parent Service, the one the user's rules send to.
    pub service: &'a str,
    /// Its namespace (a backendRef without a namespace is in the route's).
    pub service_namespace: &'a str,
    /// Header the filter stamps.
    pub header: &'a str,
    /// `(version, its Service's name)` for every routed version, stable first (a retiring
    /// version is still routed). The Services are in the parent's namespace.
    pub versions: Vec<(&'a str, &'a str)>,
    /// The rollout's route seal: a version's rule matches `<version>;<seal>` only and sets the
    /// plain `<version>` before the upstream (`None`: the plain version).
    pub seal: Option<&'a str>,
}

/// Name of the managed rule of `version`.
pub fn rule_name(rollout: &str, version: &str) -> String {
    format!("{MANAGED_PREFIX}{rollout}.v-{version}")
}

/// Name of the managed rule to stable for unstamped requests.
pub fn default_rule_name(rollout: &str) -> String {
    format!("{MANAGED_PREFIX}{rollout}.default")
}

/// The HTTPRoute `spec` with the managed rules in place. `name` and `namespace` are the
/// route's (for messages, and for backendRefs that leave their namespace out).
pub fn edit(
    name: &str,
    namespace: &str,
    spec: &Value,
    managed: &ManagedRules,
) -> Result<Value, EditError> {
    let malformed = |why: String| EditError::Malformed {
        object: format!("HTTPRoute {namespace}/{name}"),
        why,
    };
    let conflict = |rule: &Value, i: usize, why: String| EditError::RuleConflict {
        http_route: format!("{namespace}/{name}"),
        rule: describe(rule, i),
        why,
    };
    for (version, _) in &managed.versions {
        let rule = rule_name(managed.rollout, version);
        if version.contains('.') || !is_dns_name(&rule) {
            return Err(malformed(format!(
                "version {} cannot name a rule ({rule}): on the HTTPRoute backend a version is lower-case letters, digits and '-'",
                quoted(version)
            )));
        }
    }
    let mut spec = spec
        .as_object()
        .cloned()
        .ok_or_else(|| malformed("spec is not an object".into()))?;
    let rules = match spec.get("rules") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(rules)) => rules.clone(),
        Some(_) => return Err(malformed("spec.rules is not a list".into())),
    };
    // The user's rules (other rollouts' managed ones included), with their live positions.
    let user: Vec<(usize, Value)> = rules
        .into_iter()
        .enumerate()
        .filter(|(_, rule)| !is_managed(rule, managed.rollout))
        .collect();
    let to_service = |rule: &Value| {
        backend_refs(rule)
            .any(|r| is_service_ref(r, namespace, managed.service, managed.service_namespace))
    };
    let header = managed.header.to_ascii_lowercase();
    for (i, rule) in &user {
        if is_any_rollouts(rule) {
            continue;
        }
        if matches_header(rule, &header) {
            return Err(conflict(rule, *i, format!(
                "matches on header {header}, which the filter stamps and the managed rules own: remove that match"
            )));
        }
        if to_service(rule) && modifies_header(rule, &header) {
            return Err(conflict(rule, *i, format!(
                "sets or removes header {header}, which the managed rules in front of it own: remove it from its RequestHeaderModifier"
            )));
        }
        if let Some((version, service)) = managed.versions.iter().find(|(_, service)| {
            backend_refs(rule)
                .any(|r| is_service_ref(r, namespace, service, managed.service_namespace))
        }) {
            return Err(conflict(rule, *i, format!(
                "sends to Service {service}, the Service of version {} that the rollout routes to by the version header: send to Service {} instead (the rollout splits it)",
                quoted(version),
                managed.service
            )));
        }
    }
    let ours: Vec<usize> = user
        .iter()
        .enumerate()
        .filter(|(_, (_, rule))| !is_any_rollouts(rule) && to_service(rule))
        .map(|(at, _)| at)
        .collect();
    if ours.is_empty() {
        return Err(malformed(format!(
            "has no rule with a backendRef to Service {}/{}: add the rule that routes the service, the rollout only adds its managed rules in front of it",
            managed.service_namespace, managed.service
        )));
    }
    for &at in &ours {
        let (i, rule) = &user[at];
        for (j, earlier) in user[..at]
            .iter()
            .filter(|(_, r)| !is_any_rollouts(r) && !to_service(r))
        {
            if matches_of(rule).iter().any(|m| {
                matches_of(earlier)
                    .iter()
                    .any(|e| super::same(&normal(e), &normal(m)))
            }) {
                return Err(EditError::RuleShadowed {
                    http_route: format!("{namespace}/{name}"),
                    rule: describe(rule, *i),
                    by: describe(earlier, *j),
                });
            }
        }
    }
    let mut out: Vec<Value> =
        Vec::with_capacity(user.len() + ours.len() * (managed.versions.len() + 1));
    for (at, (_, rule)) in user.iter().enumerate() {
        if ours.contains(&at) {
            out.extend(managed_group(managed, namespace, &header, rule));
        }
        out.push(rule.clone());
    }
    let matches: usize = out.iter().map(|rule| matches_of(rule).len()).sum();
    if out.len() > MAX_RULES || matches > MAX_MATCHES {
        return Err(malformed(format!(
            "would hold {} rules and {matches} matches with the managed ones ({} in front of each of its {} rules to the service), Gateway API allows {MAX_RULES} rules and {MAX_MATCHES} matches: move other rules to another HTTPRoute, or route the service with fewer rules",
            out.len(),
            managed.versions.len() + 1,
            ours.len()
        )));
    }
    spec.insert("rules".to_owned(), Value::Array(out));
    Ok(Value::Object(spec))
}

/// The HTTPRoute `spec` without rollout `rollout`'s managed rules, for when it is deleted: the
/// user's rules stay exactly as they are, in their order.
pub fn remove(spec: &Value, rollout: &str) -> Value {
    let mut spec = spec.clone();
    if let Some(rules) = spec.get_mut("rules").and_then(Value::as_array_mut) {
        rules.retain(|rule| !is_managed(rule, rollout));
    }
    spec
}

/// Whether HTTPRoute `spec` of `namespace` has a user rule with a backendRef to Service
/// `service_namespace/service`: how the route of a service is found when none is named.
pub fn routes_to(spec: &Value, namespace: &str, service: &str, service_namespace: &str) -> bool {
    spec.get("rules")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|rule| !is_any_rollouts(rule))
        .flat_map(backend_refs)
        .any(|r| is_service_ref(r, namespace, service, service_namespace))
}

/// The Gateways route `spec` of `namespace` attaches to, as `(namespace, name)`: where the
/// filter runs for an ingress route.
pub fn gateway_parents(spec: &Value, namespace: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = parents(spec, namespace)
        .into_iter()
        .filter(|(group, kind, _, _)| group == "gateway.networking.k8s.io" && kind == "Gateway")
        .map(|(_, _, namespace, name)| (namespace, name))
        .collect();
    out.sort();
    out.dedup();
    out
}

/// The parents route `spec` of `namespace` attaches to, as `(group, kind, namespace, name)`
/// with Gateway API's defaults filled in (a Gateway of the route's namespace).
pub fn parents(spec: &Value, namespace: &str) -> Vec<(String, String, String, String)> {
    spec.get("parentRefs")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|p| {
            let text = |field: &str, default: &str| {
                p.get(field)
                    .and_then(Value::as_str)
                    .unwrap_or(default)
                    .to_owned()
            };
            Some((
                text("group", "gateway.networking.k8s.io"),
                text("kind", "Gateway"),
                text("namespace", namespace),
                p.get("name")?.as_str()?.to_owned(),
            ))
        })
        .collect()
}

/// Refuses another HTTPRoute (`name`, `namespace`, `spec`) that routes to the rollout's
/// service too: its rule would take stamped requests around the managed rules of
/// `managed_route` (a longer path there sorts before them), to both versions.
pub fn check_other_route(
    name: &str,
    namespace: &str,
    spec: &Value,
    managed: &ManagedRules,
    managed_route: &str,
) -> Result<(), EditError> {
    let rules = spec
        .get("rules")
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice);
    for (i, rule) in rules.iter().enumerate() {
        let to_service = backend_refs(rule)
            .any(|r| is_service_ref(r, namespace, managed.service, managed.service_namespace));
        if to_service && !is_any_rollouts(rule) {
            return Err(EditError::RuleConflict {
                http_route: format!("{namespace}/{name}"),
                rule: describe(rule, i),
                why: format!(
                    "sends to Service {}/{} too, so the requests it matches bypass the managed rules in HTTPRoute {managed_route} and reach either version: move the rule into {managed_route}, or make that route the rollout's (spec.routing.httpRoute)",
                    managed.service_namespace, managed.service
                ),
            });
        }
    }
    Ok(())
}

/// The managed rules in front of the user's rule `user`: one per version with its matches and
/// the header, then stable's with its matches alone; its other settings carry over.
fn managed_group(
    managed: &ManagedRules,
    namespace: &str,
    header: &str,
    user: &Value,
) -> Vec<Value> {
    let parent = backend_refs(user)
        .find(|r| is_service_ref(r, namespace, managed.service, managed.service_namespace))
        .cloned()
        .unwrap_or_default();
    let backend = |service: &str| {
        let mut backend = json!({ "group": "", "kind": "Service", "name": service, "weight": 1 });
        if managed.service_namespace != namespace {
            backend["namespace"] = json!(managed.service_namespace);
        }
        for field in ["port", "filters"] {
            if let Some(value) = parent.get(field) {
                backend[field] = value.clone();
            }
        }
        json!([backend])
    };
    let settings: Map<String, Value> = user
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(k, _)| !matches!(k.as_str(), "name" | "matches" | "backendRefs" | "filters"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let matches = matches_of(user);
    let rule = |name: String, matches: Option<Value>, service: &str, edit: HeaderEdit| {
        let mut rule = settings.clone();
        rule.insert("name".to_owned(), json!(name));
        if let Some(matches) = matches {
            rule.insert("matches".to_owned(), matches);
        }
        let filters = with_header_edit(user.get("filters"), header, edit);
        if !filters.is_empty() {
            rule.insert("filters".to_owned(), Value::Array(filters));
        }
        rule.insert("backendRefs".to_owned(), backend(service));
        Value::Object(rule)
    };
    let mut group: Vec<Value> = managed
        .versions
        .iter()
        .map(|(version, service)| {
            let stamp = match managed.seal {
                Some(seal) => format!("{version};{seal}"),
                None => (*version).to_owned(),
            };
            let stamped = matches
                .iter()
                .map(|m| {
                    let mut m = m.clone();
                    // A match that is not an object is left for the API server to refuse.
                    if let Some(m) = m.as_object_mut() {
                        let headers = m.entry("headers").or_insert_with(|| json!([]));
                        if let Some(headers) = headers.as_array_mut() {
                            headers
                                .push(json!({ "type": "Exact", "name": header, "value": stamp }));
                        }
                    }
                    m
                })
                .collect();
            let edit = match managed.seal {
                Some(_) => HeaderEdit::Set(version),
                None => HeaderEdit::Keep,
            };
            rule(
                rule_name(managed.rollout, version),
                Some(Value::Array(stamped)),
                service,
                edit,
            )
        })
        .collect();
    if let Some((_, stable)) = managed.versions.first() {
        // Unstamped requests: whatever version header they carry came from the client. The
        // user rule's matches exactly as they are, so the two tie wherever Istio sorts the
        // user rule (an explicit `matches: []` sorts after every route with a match; a
        // written-out `/` would move the fallback in front of other routes' catch-alls).
        group.push(rule(
            default_rule_name(managed.rollout),
            user.get("matches").cloned(),
            stable,
            HeaderEdit::Remove,
        ));
    }
    group
}

/// The user rule's filters with `edit` of the header in its RequestHeaderModifier (Gateway API
/// allows one per rule, so ours joins the user's, which carries over).
fn with_header_edit(filters: Option<&Value>, header: &str, edit: HeaderEdit) -> Vec<Value> {
    let mut filters = filters
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let (list, entry) = match edit {
        HeaderEdit::Keep => return filters,
        HeaderEdit::Set(version) => ("set", json!({ "name": header, "value": version })),
        HeaderEdit::Remove => ("remove", json!(header)),
    };
    let at = match filters
        .iter()
        .position(|f| f["type"] == "RequestHeaderModifier")
    {
        Some(at) => at,
        None => {
            filters.push(json!({ "type": "RequestHeaderModifier", "requestHeaderModifier": {} }));
            filters.len() - 1
        }
    };
    if let Some(modifier) = filters[at]
        .get_mut("requestHeaderModifier")
        .and_then(Value::as_object_mut)
    {
        if let Some(list) = modifier
            .entry(list)
            .or_insert_with(|| json!([]))
            .as_array_mut()
        {
            list.push(entry);
        }
    }
    filters
}

/// The versions rollout `rollout`'s rules in route `spec` send to, with their Services, in
/// order: what the route routes now, which a change keeps until the filter stops stamping them.
pub fn managed_versions(spec: &Value, rollout: &str) -> Vec<(String, String)> {
    let prefix = rule_name(rollout, "");
    spec.get("rules")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|rule| is_managed(rule, rollout))
        .filter_map(|rule| {
            let version = rule.get("name")?.as_str()?.strip_prefix(&prefix)?;
            let service = backend_refs(rule).next()?.get("name")?.as_str()?;
            Some((version.to_owned(), service.to_owned()))
        })
        .collect()
}

/// Whether a rule is one of rollout `rollout`'s managed rules, by its name alone.
fn is_managed(rule: &Value, rollout: &str) -> bool {
    rule.get("name")
        .and_then(Value::as_str)
        .and_then(|name| name.strip_prefix(MANAGED_PREFIX))
        .and_then(|rest| rest.strip_prefix(rollout))
        .and_then(|rest| rest.strip_prefix('.'))
        .is_some_and(|tag| !tag.contains('.') && (tag == "default" || tag.starts_with("v-")))
}

/// Whether a rule is managed by some rollout (this one or another sharing the route).
fn is_any_rollouts(rule: &Value) -> bool {
    rule.get("name")
        .and_then(Value::as_str)
        .is_some_and(|name| name.starts_with(MANAGED_PREFIX))
}

fn backend_refs(rule: &Value) -> impl Iterator<Item = &Value> {
    rule.get("backendRefs")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
}

/// Whether backendRef `r` of a route in `route_namespace` names Service
/// `service_namespace/service` (group `""` or `core`, kind `Service`: the defaults).
fn is_service_ref(
    r: &Value,
    route_namespace: &str,
    service: &str,
    service_namespace: &str,
) -> bool {
    let text = |field: &str, default: &'static str| -> String {
        r.get(field)
            .and_then(Value::as_str)
            .unwrap_or(default)
            .to_owned()
    };
    let group = text("group", "");
    (group.is_empty() || group == "core")
        && text("kind", "Service") == "Service"
        && r.get("name").and_then(Value::as_str) == Some(service)
        && r.get("namespace")
            .and_then(Value::as_str)
            .unwrap_or(route_namespace)
            == service_namespace
}

/// A rule's matches, with the one Gateway API defaults to (`PathPrefix /`) when it has none.
/// A version rule built on it always has a path: the API server would default one into its
/// header-only match anyway (`HTTPRouteMatch.path`), and only stamped requests match it,
/// which the filter stamps only when the user's rule took them unstamped.
fn matches_of(rule: &Value) -> Vec<Value> {
    match rule.get("matches").and_then(Value::as_array) {
        Some(matches) if !matches.is_empty() => matches.clone(),
        _ => vec![json!({ "path": { "type": "PathPrefix", "value": "/" } })],
    }
}

/// A match with Gateway API's defaults filled in, for comparing two.
fn normal(m: &Value) -> Value {
    let Some(mut m) = m.as_object().cloned() else {
        return m.clone();
    };
    m.entry("path")
        .or_insert_with(|| json!({ "type": "PathPrefix", "value": "/" }));
    for field in ["headers", "queryParams"] {
        let Some(list) = m.get_mut(field).and_then(Value::as_array_mut) else {
            continue;
        };
        for entry in list.iter_mut().filter_map(Value::as_object_mut) {
            entry.entry("type").or_insert_with(|| json!("Exact"));
        }
        list.sort_by_key(|entry| entry["name"].as_str().map(str::to_ascii_lowercase));
        let empty = list.is_empty();
        if empty {
            m.remove(field);
        }
    }
    Value::Object(m)
}

fn matches_header(rule: &Value, header: &str) -> bool {
    matches_of(rule).iter().any(|m| {
        m.get("headers")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .any(|h| {
                h["name"]
                    .as_str()
                    .is_some_and(|n| n.eq_ignore_ascii_case(header))
            })
    })
}

/// Whether the rule (or one of its backendRefs) sets, adds or removes `header` on the request.
fn modifies_header(rule: &Value, header: &str) -> bool {
    let rule_filters = rule
        .get("filters")
        .and_then(Value::as_array)
        .into_iter()
        .flatten();
    let ref_filters = backend_refs(rule)
        .filter_map(|r| r.get("filters").and_then(Value::as_array))
        .flatten();
    rule_filters.chain(ref_filters).any(|f| {
        let modifier = &f["requestHeaderModifier"];
        let named = |list: &str| {
            modifier[list].as_array().into_iter().flatten().any(|h| {
                h.as_str()
                    .or_else(|| h["name"].as_str())
                    .is_some_and(|n| n.eq_ignore_ascii_case(header))
            })
        };
        named("set") || named("add") || named("remove")
    })
}

/// A rule in messages: its name, or its position.
fn describe(rule: &Value, i: usize) -> String {
    match rule.get("name").and_then(Value::as_str) {
        Some(name) => quoted(name),
        None => format!("rules[{i}]"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn managed<'a>(versions: &[(&'a str, &'a str)]) -> ManagedRules<'a> {
        ManagedRules {
            rollout: "shop",
            service: "shop",
            service_namespace: "prod",
            header: "X-Sticky-Version",
            versions: versions.to_vec(),
            seal: Some("sealsealsealseal"),
        }
    }

    fn two() -> ManagedRules<'static> {
        managed(&[("v1", "shop-v1"), ("v2", "shop-v2")])
    }

    fn to_shop(path: &str) -> Value {
        json!({
            "matches": [{"path": {"type": "PathPrefix", "value": path}}],
            "backendRefs": [{"name": "shop", "port": 80}],
        })
    }

    fn to(service: &str, path: &str) -> Value {
        json!({
            "matches": [{"path": {"type": "PathPrefix", "value": path}}],
            "backendRefs": [{"name": service, "port": 8080}],
        })
    }

    fn spec(rules: Vec<Value>) -> Value {
        json!({"parentRefs": [{"name": "public", "namespace": "gateways"}],
               "hostnames": ["shop.example.com"], "rules": rules})
    }

    fn names(spec: &Value) -> Vec<String> {
        spec["rules"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["name"].as_str().unwrap_or("-").to_owned())
            .collect()
    }

    #[test]
    fn managed_rules_go_in_front_of_the_rule_to_the_service_with_its_matches_and_settings() {
        let mut user = to_shop("/");
        user["timeouts"] = json!({"request": "10s"});
        user["filters"] = json!([{"type": "RequestHeaderModifier",
                                  "requestHeaderModifier": {"add": [{"name": "x-a", "value": "1"}]}}]);
        user["matches"][0]["headers"] = json!([{"name": "x-tenant", "value": "a"}]);
        let api = to("api", "/api");
        let edited = edit(
            "shop",
            "prod",
            &spec(vec![api.clone(), user.clone()]),
            &two(),
        )
        .unwrap();
        assert_eq!(
            names(&edited),
            [
                "-",
                "sticky-canary.shop.v-v1",
                "sticky-canary.shop.v-v2",
                "sticky-canary.shop.default",
                "-"
            ]
        );
        let rules = edited["rules"].as_array().unwrap();
        assert_eq!(rules[0], api);
        assert_eq!(rules[4], user, "the user's rule is kept as it is");
        assert_eq!(
            rules[2],
            json!({
                "name": "sticky-canary.shop.v-v2",
                "matches": [{"path": {"type": "PathPrefix", "value": "/"}, "headers": [
                    {"name": "x-tenant", "value": "a"},
                    {"type": "Exact", "name": "x-sticky-version", "value": "v2;sealsealsealseal"},
                ]}],
                "filters": [{"type": "RequestHeaderModifier", "requestHeaderModifier": {
                    "add": [{"name": "x-a", "value": "1"}],
                    "set": [{"name": "x-sticky-version", "value": "v2"}],
                }}],
                "backendRefs": [{"group": "", "kind": "Service", "name": "shop-v2", "port": 80, "weight": 1}],
                "timeouts": {"request": "10s"},
            })
        );
        assert_eq!(
            rules[3],
            json!({
                "name": "sticky-canary.shop.default",
                "matches": [{"path": {"type": "PathPrefix", "value": "/"},
                             "headers": [{"name": "x-tenant", "value": "a"}]}],
                "filters": [{"type": "RequestHeaderModifier", "requestHeaderModifier": {
                    "add": [{"name": "x-a", "value": "1"}],
                    "remove": ["x-sticky-version"],
                }}],
                "backendRefs": [{"group": "", "kind": "Service", "name": "shop-v1", "port": 80, "weight": 1}],
                "timeouts": {"request": "10s"},
            })
        );
        assert_eq!(edited["parentRefs"], spec(vec![])["parentRefs"]);
        assert_eq!(edited["hostnames"], json!(["shop.example.com"]));
    }

    #[test]
    fn edits_are_idempotent_follow_the_versions_and_remove_restores_the_users_rules() {
        let user = spec(vec![to("api", "/api"), to_shop("/"), to_shop("/cart")]);
        let once = edit("shop", "prod", &user, &two()).unwrap();
        let twice = edit("shop", "prod", &once, &two()).unwrap();
        assert_eq!(once, twice);
        assert_eq!(names(&once).len(), 3 + 2 * 3);
        let one = managed(&[("v2", "shop-v2")]);
        let after = edit("shop", "prod", &once, &one).unwrap();
        assert_eq!(
            names(&after),
            [
                "-",
                "sticky-canary.shop.v-v2",
                "sticky-canary.shop.default",
                "-",
                "sticky-canary.shop.v-v2",
                "sticky-canary.shop.default",
                "-"
            ]
        );
        assert_eq!(remove(&once, "shop"), user);
        assert_eq!(remove(&user, "shop"), user);
    }

    #[test]
    fn rollouts_sharing_a_route_keep_each_others_rules() {
        let user = spec(vec![to("shop-api", "/api"), to_shop("/")]);
        let api = ManagedRules {
            rollout: "shop-api",
            service: "shop-api",
            ..managed(&[("v1", "shop-api-v1"), ("v2", "shop-api-v2")])
        };
        let both = edit(
            "shop",
            "prod",
            &edit("shop", "prod", &user, &api).unwrap(),
            &two(),
        )
        .unwrap();
        let again = edit("shop", "prod", &both, &two()).unwrap();
        assert_eq!(both, again);
        assert_eq!(
            names(&both)
                .iter()
                .filter(|n| n.starts_with("sticky-canary.shop-api."))
                .count(),
            3
        );
        assert_eq!(
            names(&both)
                .iter()
                .filter(|n| n.starts_with("sticky-canary.shop."))
                .count(),
            3
        );
        assert_eq!(remove(&remove(&both, "shop"), "shop-api"), user);
        assert_eq!(
            names(&remove(&both, "shop")),
            names(&edit("shop", "prod", &user, &api).unwrap())
        );
    }

    #[test]
    fn a_rule_without_matches_keeps_its_shape_in_the_fallback_and_other_namespaces_are_named() {
        let user = spec(vec![
            json!({"matches": [], "backendRefs": [{"name": "shop", "namespace": "prod", "port": 80}]}),
        ]);
        let edited = edit("shop", "web", &user, &two()).unwrap();
        let v2 = &edited["rules"][1];
        assert_eq!(
            v2["matches"][0]["path"],
            json!({"type": "PathPrefix", "value": "/"})
        );
        assert_eq!(v2["backendRefs"][0]["namespace"], "prod");
        assert_eq!(
            edited["rules"][2]["matches"],
            json!([]),
            "the fallback ties with it"
        );
        assert_eq!(
            edited["rules"][3], user["rules"][0],
            "the user's rule is untouched"
        );
        let absent = spec(vec![
            json!({"backendRefs": [{"name": "shop", "namespace": "prod", "port": 80}]}),
        ]);
        let edited = edit("shop", "web", &absent, &two()).unwrap();
        assert!(edited["rules"][2].get("matches").is_none());
        // A ref without a namespace in another namespace is another Service.
        let elsewhere = spec(vec![to_shop("/")]);
        assert!(edit("shop", "web", &elsewhere, &two()).is_err());
    }

    #[test]
    fn unsealed_version_rules_leave_the_header_alone() {
        let unsealed = ManagedRules {
            seal: None,
            ..two()
        };
        let edited = edit("shop", "prod", &spec(vec![to_shop("/")]), &unsealed).unwrap();
        assert!(edited["rules"][0].get("filters").is_none());
        assert_eq!(
            edited["rules"][0]["matches"][0]["headers"][0]["value"],
            "v1"
        );
        assert_eq!(
            edited["rules"][2]["filters"][0]["requestHeaderModifier"]["remove"],
            json!(["x-sticky-version"])
        );
    }

    #[test]
    fn what_cannot_stand_next_to_the_managed_rules_is_refused_by_name() {
        let mut header_match = to("other", "/x");
        header_match["name"] = json!("pick");
        header_match["matches"][0]["headers"] =
            json!([{"type": "RegularExpression", "name": "x-sticky-VERSION", "value": "v.*"}]);
        let mut rewrites = to_shop("/");
        rewrites["filters"] = json!([{"type": "RequestHeaderModifier",
                                      "requestHeaderModifier": {"remove": ["X-Sticky-Version"]}}]);
        let mut split = to_shop("/");
        split["backendRefs"] = json!([{"name": "shop-v1", "port": 80, "weight": 90},
                                      {"name": "shop-v2", "port": 80, "weight": 10}]);
        let mut dead = to_shop("/");
        dead["name"] = json!("shop");
        let many: Vec<Value> = (0..5).map(|i| to_shop(&format!("/p{i}"))).collect();
        let cases: Vec<(Vec<Value>, &str)> = vec![
            (vec![header_match, to_shop("/")], "rule \"pick\" of HTTPRoute prod/shop matches on header x-sticky-version"),
            (vec![rewrites], "rule rules[0] of HTTPRoute prod/shop sets or removes header x-sticky-version"),
            (vec![split], "sends to Service shop-v1, the Service of version \"v1\""),
            (vec![to("other", "/"), dead], "rule \"shop\" of HTTPRoute prod/shop routes to the service but can never match: rule rules[0]"),
            (vec![to("other", "/")], "has no rule with a backendRef to Service prod/shop"),
            (vec![], "has no rule with a backendRef"),
            (many, "would hold 20 rules and 20 matches"),
        ];
        for (rules, why) in cases {
            let err = edit("shop", "prod", &spec(rules), &two())
                .unwrap_err()
                .to_string();
            assert!(err.contains(why), "{why}\n{err}");
        }
        // Three versions (a retiring one) in front of three rules: 3 + 3 * 4 = 15 rules fit.
        let three = managed(&[("v1", "shop-v1"), ("v2", "shop-v2"), ("v3", "shop-v3")]);
        let rules: Vec<Value> = (0..3).map(|i| to_shop(&format!("/p{i}"))).collect();
        assert!(edit("shop", "prod", &spec(rules), &three).is_ok());
        let dotted = managed(&[("v2.1", "shop-v2-1")]);
        let err = edit("shop", "prod", &spec(vec![to_shop("/")]), &dotted).unwrap_err();
        assert!(
            err.to_string()
                .contains("version \"v2.1\" cannot name a rule"),
            "{err}"
        );
        assert!(matches!(
            edit("shop", "prod", &json!({"rules": {}}), &two()),
            Err(EditError::Malformed { .. })
        ));
    }

    #[test]
    fn an_identical_earlier_match_counts_with_gateway_apis_defaults() {
        let earlier = json!({"matches": [{"headers": [{"name": "x-b", "value": "1"}, {"name": "x-a", "value": "1"}]}],
                             "backendRefs": [{"name": "other", "port": 80}]});
        let mut later = to_shop("/");
        later["matches"][0]["headers"] = json!([{"type": "Exact", "name": "x-a", "value": "1"},
                                                {"type": "Exact", "name": "x-b", "value": "1"}]);
        let err = edit("shop", "prod", &spec(vec![earlier, later.clone()]), &two()).unwrap_err();
        assert!(matches!(err, EditError::RuleShadowed { .. }), "{err}");
        // A different match, or an identical one after the rule, is fine.
        assert!(edit(
            "shop",
            "prod",
            &spec(vec![to("other", "/x"), later.clone()]),
            &two()
        )
        .is_ok());
        assert!(edit("shop", "prod", &spec(vec![later, to("other", "/")]), &two()).is_ok());
    }

    #[test]
    fn another_route_to_the_service_is_refused_by_name() {
        let m = two();
        let other = spec(vec![to("cart", "/cart"), to_shop("/checkout")]);
        let err = check_other_route("checkout", "prod", &other, &m, "prod/shop").unwrap_err();
        assert_eq!(
            err.to_string(),
            "rule rules[1] of HTTPRoute prod/checkout sends to Service prod/shop too, so the requests it matches bypass the managed rules in HTTPRoute prod/shop and reach either version: move the rule into prod/shop, or make that route the rollout's (spec.routing.httpRoute)"
        );
        assert!(check_other_route(
            "cart",
            "prod",
            &spec(vec![to("cart", "/")]),
            &m,
            "prod/shop"
        )
        .is_ok());
        assert!(
            check_other_route("x", "other-ns", &spec(vec![to_shop("/")]), &m, "prod/shop").is_ok()
        );
        assert!(check_other_route("x", "prod", &json!({}), &m, "prod/shop").is_ok());
    }

    #[test]
    fn rule_names_tell_rollouts_apart() {
        let rule = |name: &str| json!({"name": name});
        assert!(is_managed(&rule("sticky-canary.shop.v-v2"), "shop"));
        assert!(is_managed(&rule("sticky-canary.shop.default"), "shop"));
        assert!(!is_managed(&rule("sticky-canary.shop-api.v-v2"), "shop"));
        assert!(!is_managed(
            &rule("sticky-canary.shop.v-v2.default"),
            "shop"
        ));
        assert!(is_managed(
            &rule("sticky-canary.shop.v-v2.default"),
            "shop.v-v2"
        ));
        assert!(!is_managed(&rule("sticky-canary.shop.v-v2"), "shop.v-v2"));
        assert!(!is_managed(&rule("shop"), "shop"));
        assert!(!is_managed(&json!({}), "shop"));
    }
}
