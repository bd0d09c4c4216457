//! `ISTIO_VSVC`: a plain VirtualService weight split (no stickiness), the canary's share of
//! every HTTP route that has a destination to the canary's host.
//!
//! The canary gets its percent; the route's other destinations share the rest in proportion
//! to their weights, rounded by the largest remainder so that the weights always sum to 100.
//! When every other destination is at 0 (the canary was at 100) their proportions are gone
//! from the weights, so each write records them in the annotation [`SHARES`]; a destination
//! at 0 that comes back then gets its share as it was (equal shares without a record).
//! A record is used only while the weights still are its own rounding: after a hand edit of
//! the split, the new weights are the proportions.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::naming::Names;
use super::{FieldChange, Object, ObjectKind, Refusal, Write};

/// Annotation keeping each route's proportions of the non-canary destinations, as JSON
/// `{"<route>": [weights...]}`, routes named by `name` or `#<index>`.
pub const SHARES: &str = "stickycanary.io/plan-shares";

/// Splits `total` in proportion to `proportions`, in whole numbers summing exactly to `total`:
/// each gets the floor of its quota and the units left go to the largest remainders (the
/// earlier one first on a tie). All-zero proportions split equally.
pub fn apportion(total: u64, proportions: &[u64]) -> Vec<u64> {
    if proportions.is_empty() {
        return Vec::new();
    }
    let equal = vec![1; proportions.len()];
    let weights = if proportions.iter().sum::<u64>() == 0 {
        &equal
    } else {
        proportions
    };
    let sum: u64 = weights.iter().sum();
    let mut shares: Vec<u64> = weights.iter().map(|w| total * w / sum).collect();
    let mut order: Vec<usize> = (0..weights.len()).collect();
    // Remainders compare exactly as `total * w mod sum` (all quotas share the denominator).
    order.sort_by_key(|&i| std::cmp::Reverse(total * weights[i] % sum));
    let left = total - shares.iter().sum::<u64>();
    for &i in order.iter().take(left as usize) {
        shares[i] += 1;
    }
    shares
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

/// One HTTP route that has the canary's host, as it stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// `name`, or `#<index>` for an unnamed route.
    pub key: String,
    /// Position in `spec.http`.
    pub index: usize,
    /// Position of the canary's destination in the route.
    pub canary: usize,
    /// Every destination's label (`host`, `host/subset`) and weight (absent is 0).
    pub destinations: Vec<(String, u64)>,
}

impl Route {
    /// The canary's weight.
    pub fn canary_weight(&self) -> u64 {
        self.destinations[self.canary].1
    }
}

/// The routes of `vs` (named `names.virtual_service`) that take the canary, each with one
/// canary destination and a stable one; refused by name otherwise.
pub fn routes(names: &Names, vs: Option<&Value>) -> Result<Vec<Route>, Refusal> {
    let label = Object::new(
        ObjectKind::VirtualService,
        &names.namespace,
        &names.virtual_service,
    )
    .label();
    let vs = vs.ok_or_else(|| Refusal::new("virtualService", format!("{label} does not exist")))?;
    let empty = Vec::new();
    let http = vs["spec"]["http"].as_array().unwrap_or(&empty);
    let mut found = Vec::new();
    for (index, route) in http.iter().enumerate() {
        let key = route["name"]
            .as_str()
            .map_or_else(|| format!("#{index}"), str::to_owned);
        let destinations: Vec<(String, u64)> = route["route"]
            .as_array()
            .unwrap_or(&empty)
            .iter()
            .map(|d| {
                let host = d["destination"]["host"].as_str().unwrap_or_default();
                let label = match d["destination"]["subset"].as_str() {
                    Some(subset) => format!("{host}/{subset}"),
                    None => host.to_owned(),
                };
                (label, d["weight"].as_u64().unwrap_or(0))
            })
            .collect();
        let host = |i: usize| {
            route["route"][i]["destination"]["host"]
                .as_str()
                .unwrap_or_default()
        };
        let canaries: Vec<usize> = (0..destinations.len())
            .filter(|&i| is_host(host(i), &names.canary))
            .collect();
        let canary = match canaries.as_slice() {
            [] => continue,
            [one] => *one,
            _ => {
                return Err(Refusal::new(
                    "canary",
                    format!("route {key} of {label} has {} destinations to host {}: the canary's share would be ambiguous", canaries.len(), names.canary),
                ))
            }
        };
        if !(0..destinations.len()).any(|i| is_host(host(i), &names.stable)) {
            return Err(Refusal::new(
                "stable",
                format!(
                    "route {key} of {label} has the canary's host {} but no destination to the stable host {}",
                    names.canary, names.stable
                ),
            ));
        }
        found.push(Route {
            key,
            index,
            canary,
            destinations,
        });
    }
    if found.is_empty() {
        return Err(Refusal::new(
            "canary",
            format!(
                "no HTTP route of {label} has a destination to the canary's host {}",
                names.canary
            ),
        ));
    }
    Ok(found)
}

/// The recorded proportions, by route.
fn recorded(vs: &Value) -> BTreeMap<String, Vec<u64>> {
    vs["metadata"]["annotations"][SHARES]
        .as_str()
        .and_then(|text| serde_json::from_str(text).ok())
        .unwrap_or_default()
}

/// The weights of `route` with the canary at `percent`, and the proportions of the others.
fn split(route: &Route, percent: u64, record: Option<&Vec<u64>>) -> (Vec<u64>, Vec<u64>) {
    let others: Vec<u64> = route
        .destinations
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != route.canary)
        .map(|(_, (_, w))| *w)
        .collect();
    let now: u64 = others.iter().sum();
    let record = record.filter(|r| r.len() == others.len() && r.iter().sum::<u64>() > 0);
    let proportions = match record {
        // The weights are the record's own rounding (or all 0): the record is exact.
        Some(r) if now == 0 || apportion(now, r) == others => r.clone(),
        _ => others,
    };
    let mut shares = apportion(100 - percent, &proportions).into_iter();
    let weights = (0..route.destinations.len())
        .map(|i| {
            if i == route.canary {
                percent
            } else {
                shares.next().unwrap_or(0)
            }
        })
        .collect();
    (weights, proportions)
}

/// The write that gives the canary `percent` of every route's requests; `None` when it has.
pub fn edit(names: &Names, vs: Option<&Value>, percent: u64) -> Result<Option<Write>, Refusal> {
    let routes = routes(names, vs)?;
    let Some(vs) = vs else {
        unreachable!("routes() refuses a missing VirtualService")
    };
    let mut desired = vs.clone();
    let mut record = recorded(vs);
    let mut changes = Vec::new();
    for route in &routes {
        let (weights, proportions) = split(route, percent, record.get(&route.key));
        if proportions.iter().sum::<u64>() > 0 {
            record.insert(route.key.clone(), proportions);
        }
        for (i, ((label, before), after)) in route.destinations.iter().zip(&weights).enumerate() {
            let destination = &mut desired["spec"]["http"][route.index]["route"][i];
            let absent = destination.get("weight").is_none();
            if *before != *after || absent {
                destination["weight"] = json!(after);
            }
            if *before != *after {
                changes.push(FieldChange::new(
                    format!("http[{}].route[{label}].weight", route.key),
                    if absent {
                        "-".to_owned()
                    } else {
                        before.to_string()
                    },
                    after.to_string(),
                ));
            }
        }
    }
    if changes.is_empty() {
        return Ok(None);
    }
    let text = serde_json::to_string(&record).unwrap_or_default();
    desired["metadata"]["annotations"][SHARES] = json!(text);
    if let Some(map) = desired["metadata"].as_object_mut() {
        map.remove("managedFields");
    }
    Ok(Some(Write {
        object: Object::new(
            ObjectKind::VirtualService,
            &names.namespace,
            &names.virtual_service,
        ),
        desired,
        changes,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apportion_sums_exactly_and_gives_the_largest_remainders_first() {
        let cases: &[(u64, &[u64], &[u64])] = &[
            (90, &[100], &[90]),
            (90, &[1, 1], &[45, 45]),
            (90, &[2, 1], &[60, 30]),
            (100, &[1, 1, 1], &[34, 33, 33]),
            (50, &[1, 1, 1], &[17, 17, 16]),
            (67, &[60, 30], &[45, 22]),
            (90, &[45, 22], &[60, 30]),
            (10, &[1, 2, 3, 4], &[1, 2, 3, 4]),
            (7, &[1, 2, 3, 4], &[1, 1, 2, 3]),
            (1, &[5, 5], &[1, 0]),
            (0, &[5, 5], &[0, 0]),
            (90, &[0, 0], &[45, 45]),
            (90, &[0, 7], &[0, 90]),
            (99, &[0, 0, 0], &[33, 33, 33]),
            (100, &[], &[]),
        ];
        for (total, proportions, expected) in cases {
            let got = apportion(*total, proportions);
            assert_eq!(got, *expected, "{total} over {proportions:?}");
            if !proportions.is_empty() {
                assert_eq!(got.iter().sum::<u64>(), *total);
            }
        }
        // Exhaustively: every total and many three-way splits sum exactly, and no share is
        // more than one unit from its exact quota.
        for total in 0..=100u64 {
            for p in [[1, 1, 1], [3, 2, 1], [97, 2, 1], [0, 5, 9], [50, 25, 25]] {
                let got = apportion(total, &p);
                assert_eq!(got.iter().sum::<u64>(), total);
                let sum: u64 = p.iter().sum();
                for (share, w) in got.iter().zip(p) {
                    let exact = (total * w) as f64 / sum as f64;
                    assert!((*share as f64 - exact).abs() < 1.0, "{total} {p:?} {got:?}");
                }
            }
        }
    }

    fn names() -> Names {
        Names {
            namespace: "prod".into(),
            rollout: "map".into(),
            virtual_service: "map".into(),
            stable: "map".into(),
            canary: "map-canary".into(),
        }
    }

    fn dest(host: &str, weight: Option<u64>) -> Value {
        let mut d = json!({"destination": {"host": host, "port": {"number": 80}}});
        if let Some(w) = weight {
            d["weight"] = json!(w);
        }
        d
    }

    fn vs(routes: Value) -> Value {
        json!({"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
               "metadata": {"name": "map", "namespace": "prod", "resourceVersion": "3"},
               "spec": {"hosts": ["map"], "http": routes}})
    }

    fn weights(vs: &Value, route: usize) -> Vec<u64> {
        vs["spec"]["http"][route]["route"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["weight"].as_u64().unwrap())
            .collect()
    }

    /// Applies the plan's edit and returns the object after it (the one before if no write).
    fn step(current: &Value, percent: u64) -> Value {
        match edit(&names(), Some(current), percent).expect("editable") {
            Some(write) => {
                assert_eq!(write.object.label(), "VirtualService prod/map");
                write.desired
            }
            None => current.clone(),
        }
    }

    #[test]
    fn two_destinations_split_and_a_second_apply_writes_nothing() {
        let start = vs(json!([{"name": "map", "route": [
            dest("map", Some(100)), dest("map-canary.prod.svc.cluster.local", Some(0))]}]));
        let cases: &[(u64, &[u64])] = &[
            (10, &[90, 10]),
            (0, &[100, 0]),
            (100, &[0, 100]),
            (1, &[99, 1]),
        ];
        for (percent, expected) in cases {
            let after = step(&start, *percent);
            assert_eq!(weights(&after, 0), *expected, "{percent}");
            assert_eq!(
                edit(&names(), Some(&after), *percent),
                Ok(None),
                "idempotent"
            );
        }
        assert_eq!(edit(&names(), Some(&start), 0), Ok(None));
        let write = edit(&names(), Some(&start), 10).unwrap().unwrap();
        assert_eq!(
            write.changes,
            [
                FieldChange::new("http[map].route[map].weight", "100", "90"),
                FieldChange::new(
                    "http[map].route[map-canary.prod.svc.cluster.local].weight",
                    "0",
                    "10"
                ),
            ]
        );
        // Only the weights and the record change; the read's resourceVersion is kept.
        assert_eq!(write.desired["metadata"]["resourceVersion"], "3");
        assert_eq!(write.desired["spec"]["hosts"], json!(["map"]));
    }

    #[test]
    fn more_destinations_rebalance_in_proportion_and_come_back_with_their_share() {
        // Stable 60, a legacy version 30, the canary 10.
        let start = vs(json!([{"route": [
            dest("map", Some(60)), dest("map-legacy", Some(30)), dest("map-canary", Some(10))]}]));
        let ramp: &[(u64, &[u64])] = &[
            (10, &[60, 30, 10]),
            (40, &[40, 20, 40]),
            (33, &[45, 22, 33]),
            (50, &[33, 17, 50]),
            (100, &[0, 0, 100]),
            // Back from 100: each gets its recorded share again, not an equal one.
            (10, &[60, 30, 10]),
            (0, &[67, 33, 0]),
            (1, &[66, 33, 1]),
        ];
        let mut current = start.clone();
        for (percent, expected) in ramp {
            current = step(&current, *percent);
            assert_eq!(weights(&current, 0), *expected, "canary at {percent}");
            assert_eq!(weights(&current, 0).iter().sum::<u64>(), 100);
        }
        // A hand edit of the split becomes the new proportions.
        current["spec"]["http"][0]["route"][0]["weight"] = json!(49);
        current["spec"]["http"][0]["route"][1]["weight"] = json!(50);
        let after = step(&current, 10);
        assert_eq!(weights(&after, 0), [45, 45, 10]);
        // All others at 0 and no record: equal shares.
        let bare = vs(
            json!([{"route": [dest("map", Some(0)), dest("map-legacy", None), dest("map-canary", Some(100))]}]),
        );
        assert_eq!(weights(&step(&bare, 10), 0), [45, 45, 10]);
    }

    #[test]
    fn every_route_with_the_canary_is_set_and_others_are_left_alone() {
        let start = vs(json!([
            {"name": "api", "route": [dest("map", Some(100)), dest("map-canary", Some(0))]},
            {"name": "other", "route": [dest("other", None)]},
            {"route": [dest("map-canary", None), dest("map", None)]},
        ]));
        let after = step(&start, 20);
        assert_eq!(weights(&after, 0), [80, 20]);
        assert_eq!(after["spec"]["http"][1], start["spec"]["http"][1]);
        assert_eq!(weights(&after, 2), [20, 80]);
        let got = routes(&names(), Some(&after)).unwrap();
        let keys: Vec<(&str, u64)> = got
            .iter()
            .map(|r| (r.key.as_str(), r.canary_weight()))
            .collect();
        assert_eq!(keys, [("api", 20), ("#2", 20)]);
    }

    #[test]
    fn what_cannot_take_the_split_is_refused_by_name() {
        let cases: &[(Option<Value>, &str, &str)] = &[
            (None, "virtualService", "VirtualService prod/map does not exist"),
            (
                Some(vs(json!([{"route": [dest("map", None)]}]))),
                "canary",
                "no HTTP route of VirtualService prod/map has a destination to the canary's host map-canary",
            ),
            (
                Some(vs(json!([{"name": "r", "route": [dest("other", Some(90)), dest("map-canary", Some(10))]}]))),
                "stable",
                "route r of VirtualService prod/map has the canary's host map-canary but no destination to the stable host map",
            ),
            (
                Some(vs(json!([{"route": [dest("map", Some(80)), dest("map-canary", Some(10)), dest("map-canary.prod", Some(10))]}]))),
                "canary",
                "route #0 of VirtualService prod/map has 2 destinations to host map-canary",
            ),
        ];
        for (object, field, message) in cases {
            let refusal = edit(&names(), object.as_ref(), 10).expect_err(message);
            assert_eq!(refusal.field, *field);
            assert!(refusal.message.starts_with(message), "{refusal}");
        }
    }

    #[test]
    fn hosts_match_short_or_fully_qualified() {
        assert!(is_host("map", "map"));
        assert!(is_host("map.prod.svc.cluster.local", "map"));
        assert!(is_host("map", "map.prod.svc.cluster.local"));
        assert!(!is_host("map-canary", "map"));
        assert!(!is_host("map", "map-canary"));
        assert!(!is_host("mapx.prod", "map"));
    }
}
