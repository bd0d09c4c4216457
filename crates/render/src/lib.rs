//! Pure renderers: desired state in, configuration objects out, no I/O.
//!
//! Owns every object the project writes: Istio's VirtualService routes, DestinationRule
//! subsets and WasmPlugin ([`istio`], with edits that touch only what they own), the plain
//! Envoy files ([`envoy`]), the filter's configuration per placement ([`placement`]), the
//! proxies' stats settings ([`proxy_stats`]) and who can choose a version ([`exposure`]). It
//! reads the spec; it never decides a change (that is `rollout`) nor writes one (`runtime`).
//! On the HTTPRoute API ([`gateway_api`]): the managed HTTPRoute rules ([`httproute`]) and
//! per-version Services ([`services`]); the shared plugin as a TrafficExtension
//! ([`trafficextension`]) is not yet written by any command. See `docs/gateway-api.md`.

#![deny(missing_docs)]

pub mod destinationrule;
pub mod envoy;
pub mod exposure;
pub mod gateway_api;
pub mod httproute;
pub mod istio;
pub mod placement;
pub mod proxy_stats;
pub mod seal;
pub mod services;
pub mod trafficextension;
pub mod virtualservice;
pub mod wasmplugin;

use serde_json::Value;

/// Whether two objects say the same thing: equal, with numbers compared by value, since the
/// API server writes back `30.0` as `30` (Go marshals whole floats without a fraction).
pub fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x == y || x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}

/// [`same`] for objects that may be absent.
pub fn same_opt(a: Option<&Value>, b: Option<&Value>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => same(a, b),
        (None, None) => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn numbers_compare_by_value() {
        assert!(same(&json!({"w": [30.0, 1]}), &json!({"w": [30, 1.0]})));
        assert!(!same(&json!({"w": 30.5}), &json!({"w": 30})));
        assert!(!same(&json!({"a": 1}), &json!({"a": 1, "b": 2})));
        assert!(same_opt(None, None) && !same_opt(Some(&json!(1)), None));
    }
}

/// What a managed route or rule does to the version header before the upstream.
#[derive(Debug, Clone, Copy)]
enum HeaderEdit<'a> {
    /// Leave it as the request carries it.
    Keep,
    /// Replace the sealed stamp with the plain version, the value services propagate.
    Set(&'a str),
    /// Drop it.
    Remove,
}

/// Why the user's Istio objects cannot take the managed routes and subsets; raised before
/// anything is written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EditError {
    /// A user route before the managed ones would catch every request they should match.
    #[error("route {route} of VirtualService {virtual_service} catches every request before the managed version routes could match: narrow its match, or move it after the service's route")]
    Shadowed {
        /// The VirtualService.
        virtual_service: String,
        /// The route, by name or position.
        route: String,
    },
    /// A user route matches on the header the filter stamps, which the managed routes own.
    #[error("route {route} of VirtualService {virtual_service} matches on header {header}, which the filter stamps and the managed routes own: remove that match")]
    HeaderConflict {
        /// The VirtualService.
        virtual_service: String,
        /// The route, by name or position.
        route: String,
        /// The filter's header.
        header: String,
    },
    /// The object the rollout must edit does not exist.
    #[error("{kind} {namespace}/{name} does not exist: create it first; stickyctl only adds its managed routes to it")]
    Missing {
        /// Kind of the object.
        kind: &'static str,
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
    },
    /// A rule of the user's HTTPRoute cannot stand next to the managed rules (HTTPRoute
    /// backend, issue 20).
    #[error("rule {rule} of HTTPRoute {http_route} {why}")]
    RuleConflict {
        /// The HTTPRoute.
        http_route: String,
        /// The rule, by name or position.
        rule: String,
        /// What it does and what to do instead.
        why: String,
    },
    /// An earlier rule has exactly the match of a user rule to the service, so Gateway API's
    /// tie rule gives it every request of that rule (HTTPRoute backend, issue 20).
    #[error("rule {rule} of HTTPRoute {http_route} routes to the service but can never match: rule {by} before it has the same match and wins the tie, so the requests it should send to the service (and the managed rules in front of it) go elsewhere: remove one of the two, or give them different matches")]
    RuleShadowed {
        /// The HTTPRoute.
        http_route: String,
        /// The user's rule to the service, by name or position.
        rule: String,
        /// The earlier rule with the same match.
        by: String,
    },
    /// The object exists but cannot be edited as it is.
    #[error("{object}: {why}")]
    Malformed {
        /// Kind and name of the object.
        object: String,
        /// What is wrong.
        why: String,
    },
}
