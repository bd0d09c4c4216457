//! `ISTIO_VSVC`: a plain VirtualService weight split (no stickiness), the canary's share of
//! every HTTP route that has a destination to the canary's host, by the one rule of
//! [`split`](super::split).
//!
//! What is the VirtualService's own: the routes are `spec.http[]` and their destinations
//! `route[]`; a destination goes to a service when its `host` is the service's, short or
//! fully qualified (`map`, `map.prod.svc.cluster.local`); it is labelled `host` or
//! `host/subset`; an absent weight is 0.

use serde_json::Value;

use super::naming::Names;
use super::split::Shape;
use super::ObjectKind;

/// The VirtualService's routes and destinations.
pub static SHAPE: Shape = Shape {
    kind: ObjectKind::VirtualService,
    field: "virtualService",
    name,
    routes: "http",
    targets: "route",
    route_word: "route",
    any_route_word: "HTTP route",
    target_word: "destination",
    service_word: "host",
    absent_weight: 0,
    label,
    goes_to,
};

/// The VirtualService of an entry.
fn name(names: &Names) -> &str {
    &names.virtual_service
}

/// Whether destination host `host` is the service `name` (either may be fully qualified).
fn is_host(host: &str, name: &str) -> bool {
    host == name
        || host
            .strip_prefix(name)
            .is_some_and(|rest| rest.starts_with('.'))
        || name
            .strip_prefix(host)
            .is_some_and(|rest| rest.starts_with('.'))
}

/// `host`, or `host/subset`.
fn label(destination: &Value, _namespace: &str) -> String {
    let host = destination["destination"]["host"]
        .as_str()
        .unwrap_or_default();
    match destination["destination"]["subset"].as_str() {
        Some(subset) => format!("{host}/{subset}"),
        None => host.to_owned(),
    }
}

/// Whether the destination's host is the service `name` (the entry's hosts may be fully
/// qualified, and so name their namespace themselves).
fn goes_to(destination: &Value, name: &str, _namespace: &str) -> bool {
    is_host(
        destination["destination"]["host"]
            .as_str()
            .unwrap_or_default(),
        name,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::split::tests::names;
    use crate::split::{edit, routes};
    use serde_json::json;

    #[test]
    fn hosts_match_short_or_fully_qualified() {
        assert!(is_host("map", "map"));
        assert!(is_host("map.prod.svc.cluster.local", "map"));
        assert!(is_host("map", "map.prod.svc.cluster.local"));
        assert!(!is_host("map-canary", "map"));
        assert!(!is_host("map", "map-canary"));
        assert!(!is_host("mapx.prod", "map"));
    }

    #[test]
    fn destinations_are_told_by_host_and_labelled_with_their_subset() {
        let vs = json!({"metadata": {"name": "map", "namespace": "prod"}, "spec": {"http": [{"name": "main", "route": [
            {"destination": {"host": "map.prod.svc.cluster.local", "subset": "v1"}, "weight": 100},
            {"destination": {"host": "map-canary"}}]}]}});
        let got = routes(&SHAPE, &names(), Some(&vs)).expect("a route");
        assert_eq!(
            got[0].targets,
            [
                ("map.prod.svc.cluster.local/v1".to_owned(), 100),
                // An absent weight is 0.
                ("map-canary".to_owned(), 0)
            ]
        );
        let write = edit(&SHAPE, &names(), Some(&vs), 10)
            .expect("editable")
            .expect("a write");
        assert_eq!(write.object.label(), "VirtualService prod/map");
        assert_eq!(
            write.changes[1],
            crate::FieldChange::new("http[main].route[map-canary].weight", "-", "10")
        );
    }
}
