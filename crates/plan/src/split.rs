//! The weighted split of `ISTIO_VSVC` and `HTTPROUTE`, one rule for both: the canary's share of
//! every route of the object that has a target to the canary's service.
//!
//! The canary gets its percent; the route's other targets share the rest in proportion to
//! their weights, rounded by the largest remainder so that the weights always sum to 100.
//! When every other target is at 0 (the canary was at 100) their proportions are gone from the
//! weights, so each write records them in the annotation [`SHARES`]; a target at 0 that comes
//! back then gets its share as it was (equal shares without a record). A record is used only
//! while the weights still are its own rounding: after a hand edit of the split, the new
//! weights are the proportions.
//!
//! What differs between the two objects is their [`Shape`]: where the routes and their targets
//! are (a VirtualService's `spec.http[].route[]`, an HTTPRoute's `spec.rules[].backendRefs[]`),
//! which target goes to a service, what an absent weight is, and the words of messages. Both
//! APIs read weights as proportions (Istio refuses only a route whose weights sum to 0; the
//! Gateway API says a weight is `weight / sum`), so the canary's share now is its weight over
//! its route's sum.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::file::Kind;
use super::naming::Names;
use super::{httproute, vsvc};
use super::{FieldChange, Object, ObjectKind, Refusal, Write};

/// Annotation keeping each route's proportions of the non-canary targets, as JSON
/// `{"<route>": [weights...]}`, routes named by `name` or `#<index>`.
pub const SHARES: &str = "stickycanary.io/plan-shares";

/// How one kind of object holds weighted splits, and how messages name its parts.
#[derive(Debug)]
pub struct Shape {
    /// The object's kind.
    pub kind: ObjectKind,
    /// The plan entry's field that names the object.
    pub field: &'static str,
    /// The object's name among an entry's names.
    pub name: fn(&Names) -> &str,
    /// `spec.<routes>`: the routes (`http`, `rules`).
    pub routes: &'static str,
    /// `<route>.<targets>`: a route's weighted targets (`route`, `backendRefs`).
    pub targets: &'static str,
    /// One route, in messages (`route`, `rule`).
    pub route_word: &'static str,
    /// Routes, in "no ... of" (`HTTP route`, `rule`).
    pub any_route_word: &'static str,
    /// One target, in messages (`destination`, `backendRef`).
    pub target_word: &'static str,
    /// What a target goes to, in messages (`host`, `Service`).
    pub service_word: &'static str,
    /// The weight of a target that has none.
    pub absent_weight: u64,
    /// A target's label in previews and status (`host/subset`, `name`).
    pub label: fn(target: &Value, namespace: &str) -> String,
    /// Whether a target goes to the service `name` of `namespace` (the entry's `stable` or
    /// `canary`).
    pub goes_to: fn(target: &Value, name: &str, namespace: &str) -> bool,
}

/// The shape of `kind`'s object, for the kinds that set a weighted split.
pub fn shape(kind: Kind) -> Option<&'static Shape> {
    match kind {
        Kind::IstioVsvc => Some(&vsvc::SHAPE),
        Kind::HttpRoute => Some(&httproute::SHAPE),
        Kind::Sticky
        | Kind::IngressNginx
        | Kind::DeploymentReplicas
        | Kind::DeploymentSingleton => None,
    }
}

impl Shape {
    /// The entry's object: `VirtualService prod/map`.
    pub fn object(&self, names: &Names) -> Object {
        Object::new(self.kind, &names.namespace, (self.name)(names))
    }
}

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

/// One route that has the canary, as it stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// `name`, or `#<index>` for an unnamed route.
    pub key: String,
    /// Position in `spec.<routes>`.
    pub index: usize,
    /// Position of the canary's target in the route.
    pub canary: usize,
    /// Every target's label and weight (absent: the shape's default).
    pub targets: Vec<(String, u64)>,
    /// Which targets have no weight written.
    pub absent: Vec<bool>,
}

impl Route {
    /// The canary's share of the route's requests, in percent: its weight over the route's
    /// sum (0 when every weight is 0: the route answers errors, the canary gets nothing).
    pub fn canary_share(&self) -> f64 {
        let sum: u64 = self.targets.iter().map(|(_, w)| w).sum();
        if sum == 0 {
            0.0
        } else {
            self.targets[self.canary].1 as f64 * 100.0 / sum as f64
        }
    }
}

/// The routes of `object` (the entry's object of `shape`) that take the canary, each with one
/// target to the canary and one to the stable service; refused by name otherwise.
pub fn routes(shape: &Shape, names: &Names, object: Option<&Value>) -> Result<Vec<Route>, Refusal> {
    routes_in(shape, names, existing(shape, names, object)?)
}

/// The object, or its refusal when it does not exist.
fn existing<'a>(
    shape: &Shape,
    names: &Names,
    object: Option<&'a Value>,
) -> Result<&'a Value, Refusal> {
    let label = shape.object(names).label();
    object.ok_or_else(|| Refusal::new(shape.field, format!("{label} does not exist")))
}

/// [`routes`] of an object that exists.
fn routes_in(shape: &Shape, names: &Names, object: &Value) -> Result<Vec<Route>, Refusal> {
    let label = shape.object(names).label();
    let (route_word, target_word, service) =
        (shape.route_word, shape.target_word, shape.service_word);
    let ns = &names.namespace;
    let empty = Vec::new();
    let all = object["spec"][shape.routes].as_array().unwrap_or(&empty);
    let mut found = Vec::new();
    for (index, route) in all.iter().enumerate() {
        let key = route["name"]
            .as_str()
            .map_or_else(|| format!("#{index}"), str::to_owned);
        let targets = route[shape.targets].as_array().unwrap_or(&empty);
        let to = |name: &str| -> Vec<usize> {
            (0..targets.len())
                .filter(|&i| (shape.goes_to)(&targets[i], name, ns))
                .collect()
        };
        let canary = match to(&names.canary).as_slice() {
            [] => continue,
            [one] => *one,
            many => {
                return Err(Refusal::new(
                    "canary",
                    format!(
                        "{route_word} {key} of {label} has {} {target_word}s to {service} {}: the canary's share would be ambiguous",
                        many.len(),
                        names.canary
                    ),
                ))
            }
        };
        if to(&names.stable).is_empty() {
            return Err(Refusal::new(
                "stable",
                format!(
                    "{route_word} {key} of {label} has the canary's {service} {} but no {target_word} to the stable {service} {}",
                    names.canary, names.stable
                ),
            ));
        }
        found.push(Route {
            key,
            index,
            canary,
            targets: targets
                .iter()
                .map(|t| {
                    let weight = t["weight"].as_u64().unwrap_or(shape.absent_weight);
                    ((shape.label)(t, ns), weight)
                })
                .collect(),
            absent: targets.iter().map(|t| t.get("weight").is_none()).collect(),
        });
    }
    if found.is_empty() {
        return Err(Refusal::new(
            "canary",
            format!(
                "no {} of {label} has a {target_word} to the canary's {service} {}",
                shape.any_route_word, names.canary
            ),
        ));
    }
    Ok(found)
}

/// The recorded proportions, by route.
fn recorded(object: &Value) -> BTreeMap<String, Vec<u64>> {
    object["metadata"]["annotations"][SHARES]
        .as_str()
        .and_then(|text| serde_json::from_str(text).ok())
        .unwrap_or_default()
}

/// The weights of `route` with the canary at `percent`, and the proportions of the others.
fn split(route: &Route, percent: u64, record: Option<&Vec<u64>>) -> (Vec<u64>, Vec<u64>) {
    let others: Vec<u64> = route
        .targets
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
    let weights = (0..route.targets.len())
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
pub fn edit(
    shape: &Shape,
    names: &Names,
    object: Option<&Value>,
    percent: u64,
) -> Result<Option<Write>, Refusal> {
    let object = existing(shape, names, object)?;
    let routes = routes_in(shape, names, object)?;
    let mut desired = object.clone();
    let mut record = recorded(object);
    let mut changes = Vec::new();
    for route in &routes {
        let (weights, proportions) = split(route, percent, record.get(&route.key));
        if proportions.iter().sum::<u64>() > 0 {
            record.insert(route.key.clone(), proportions);
        }
        let targets = route.targets.iter().zip(&route.absent).zip(&weights);
        for (i, (((label, before), absent), after)) in targets.enumerate() {
            let target = &mut desired["spec"][shape.routes][route.index][shape.targets][i];
            if *before != *after || *absent {
                target["weight"] = json!(after);
            }
            if *before != *after {
                changes.push(FieldChange::new(
                    format!(
                        "{}[{}].{}[{label}].weight",
                        shape.routes, route.key, shape.targets
                    ),
                    if *absent {
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
        object: shape.object(names),
        desired,
        changes,
    }))
}

/// Where the split stands: the canary's share when every route gives it the same (`None` when
/// they disagree), and each route's targets with their weights
/// (`route main: map 90, map-canary 10`).
pub fn standing(
    shape: &Shape,
    names: &Names,
    object: Option<&Value>,
) -> Result<(Option<f64>, String), Refusal> {
    let routes = routes(shape, names, object)?;
    let shares: Vec<f64> = routes.iter().map(Route::canary_share).collect();
    let agreed = shares.iter().all(|s| *s == shares[0]).then(|| shares[0]);
    let detail = routes
        .iter()
        .map(|r| {
            let split: Vec<String> = r.targets.iter().map(|(t, w)| format!("{t} {w}")).collect();
            format!("{} {}: {}", shape.route_word, r.key, split.join(", "))
        })
        .collect::<Vec<_>>()
        .join("; ");
    Ok((agreed, detail))
}

#[cfg(test)]
pub(crate) mod tests {
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

    /// Both shapes: every test of the rule below runs on each.
    const SHAPES: [&Shape; 2] = [&vsvc::SHAPE, &httproute::SHAPE];

    /// The names of the rule's tests: a rollout `map` whose canary Service is `map-canary`.
    pub(crate) fn names() -> Names {
        Names {
            namespace: "prod".into(),
            rollout: "map".into(),
            virtual_service: "map".into(),
            http_route: "map".into(),
            stable: "map".into(),
            canary: "map-canary".into(),
        }
    }

    /// A route `name` (none: unnamed) with targets to the services, with their weights.
    type RouteSpec<'a> = (Option<&'a str>, &'a [(&'a str, Option<u64>)]);

    /// The object of `shape` with `routes`, as its API holds it.
    fn object(shape: &Shape, routes: &[RouteSpec]) -> Value {
        let routes: Vec<Value> = routes
            .iter()
            .map(|(name, targets)| {
                let targets: Vec<Value> = targets
                    .iter()
                    .map(|(service, weight)| {
                        let mut target = match shape.kind {
                            ObjectKind::HttpRoute => json!({"name": service, "port": 80}),
                            _ => json!({"destination": {"host": service, "port": {"number": 80}}}),
                        };
                        if let Some(w) = weight {
                            target["weight"] = json!(w);
                        }
                        target
                    })
                    .collect();
                let mut route = json!({ shape.targets: targets });
                if let Some(name) = name {
                    route["name"] = json!(name);
                }
                route
            })
            .collect();
        let (api_version, kind, spec) = match shape.kind {
            ObjectKind::HttpRoute => (
                "gateway.networking.k8s.io/v1",
                "HTTPRoute",
                json!({"parentRefs": [{"name": "public"}], "rules": routes}),
            ),
            _ => (
                "networking.istio.io/v1",
                "VirtualService",
                json!({"hosts": ["map"], "http": routes}),
            ),
        };
        json!({"apiVersion": api_version, "kind": kind,
               "metadata": {"name": "map", "namespace": "prod", "resourceVersion": "3"},
               "spec": spec})
    }

    fn weights(shape: &Shape, object: &Value, route: usize) -> Vec<u64> {
        object["spec"][shape.routes][route][shape.targets]
            .as_array()
            .expect("targets")
            .iter()
            .map(|t| t["weight"].as_u64().expect("a weight"))
            .collect()
    }

    /// Applies the plan's edit and returns the object after it (the one before if no write).
    fn step(shape: &Shape, current: &Value, percent: u64) -> Value {
        match edit(shape, &names(), Some(current), percent).expect("editable") {
            Some(write) => {
                assert_eq!(write.object, shape.object(&names()));
                write.desired
            }
            None => current.clone(),
        }
    }

    #[test]
    fn two_targets_split_and_a_second_apply_writes_nothing() {
        for shape in SHAPES {
            let start = object(
                shape,
                &[(Some("main"), &[("map", Some(100)), ("map-canary", Some(0))])],
            );
            let cases: &[(u64, &[u64])] = &[
                (10, &[90, 10]),
                (0, &[100, 0]),
                (100, &[0, 100]),
                (1, &[99, 1]),
            ];
            for (percent, expected) in cases {
                let after = step(shape, &start, *percent);
                assert_eq!(weights(shape, &after, 0), *expected, "{percent}");
                assert_eq!(
                    edit(shape, &names(), Some(&after), *percent),
                    Ok(None),
                    "idempotent"
                );
            }
            assert_eq!(edit(shape, &names(), Some(&start), 0), Ok(None));
            let write = edit(shape, &names(), Some(&start), 10).unwrap().unwrap();
            let field =
                |target: &str| format!("{}[main].{}[{target}].weight", shape.routes, shape.targets);
            assert_eq!(
                write.changes,
                [
                    FieldChange::new(field("map"), "100", "90"),
                    FieldChange::new(field("map-canary"), "0", "10"),
                ]
            );
            // Only the weights and the record change; the read's resourceVersion is kept.
            let mut expected = start.clone();
            expected["spec"][shape.routes][0][shape.targets][0]["weight"] = json!(90);
            expected["spec"][shape.routes][0][shape.targets][1]["weight"] = json!(10);
            expected["metadata"]["annotations"] = json!({SHARES: "{\"main\":[100]}"});
            assert_eq!(write.desired, expected);
        }
    }

    #[test]
    fn more_targets_rebalance_in_proportion_and_come_back_with_their_share() {
        for shape in SHAPES {
            // Stable 60, a legacy version 30, the canary 10.
            let start = object(
                shape,
                &[(
                    None,
                    &[
                        ("map", Some(60)),
                        ("map-legacy", Some(30)),
                        ("map-canary", Some(10)),
                    ],
                )],
            );
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
                current = step(shape, &current, *percent);
                assert_eq!(
                    weights(shape, &current, 0),
                    *expected,
                    "canary at {percent}"
                );
                assert_eq!(weights(shape, &current, 0).iter().sum::<u64>(), 100);
            }
            // A hand edit of the split becomes the new proportions.
            current["spec"][shape.routes][0][shape.targets][0]["weight"] = json!(49);
            current["spec"][shape.routes][0][shape.targets][1]["weight"] = json!(50);
            let after = step(shape, &current, 10);
            assert_eq!(weights(shape, &after, 0), [45, 45, 10]);
            // All others at 0 and no record: equal shares.
            let bare = object(
                shape,
                &[(
                    None,
                    &[
                        ("map", Some(0)),
                        ("map-legacy", Some(0)),
                        ("map-canary", Some(100)),
                    ],
                )],
            );
            assert_eq!(weights(shape, &step(shape, &bare, 10), 0), [45, 45, 10]);
        }
    }

    #[test]
    fn every_route_with_the_canary_is_set_and_others_are_left_alone() {
        for shape in SHAPES {
            let start = object(
                shape,
                &[
                    (Some("api"), &[("map", Some(100)), ("map-canary", Some(0))]),
                    (Some("other"), &[("other", None)]),
                    (None, &[("map-canary", None), ("map", None)]),
                ],
            );
            let after = step(shape, &start, 20);
            assert_eq!(weights(shape, &after, 0), [80, 20]);
            assert_eq!(
                after["spec"][shape.routes][1],
                start["spec"][shape.routes][1]
            );
            assert_eq!(weights(shape, &after, 2), [20, 80]);
            let got = routes(shape, &names(), Some(&after)).unwrap();
            let keys: Vec<(&str, f64)> = got
                .iter()
                .map(|r| (r.key.as_str(), r.canary_share()))
                .collect();
            assert_eq!(keys, [("api", 20.0), ("#2", 20.0)]);
            let route = shape.route_word;
            assert_eq!(
                standing(shape, &names(), Some(&after)),
                Ok((
                    Some(20.0),
                    format!(
                        "{route} api: map 80, map-canary 20; {route} #2: map-canary 20, map 80"
                    )
                ))
            );
            // Routes that disagree have no one share.
            let mut disagree = after.clone();
            disagree["spec"][shape.routes][0][shape.targets][0]["weight"] = json!(90);
            disagree["spec"][shape.routes][0][shape.targets][1]["weight"] = json!(10);
            assert_eq!(
                standing(shape, &names(), Some(&disagree)).map(|s| s.0),
                Ok(None)
            );
        }
    }

    #[test]
    fn what_cannot_take_the_split_is_refused_by_name() {
        type Case<'a> = (Option<&'a [RouteSpec<'a>]>, &'a str, [&'a str; 2]);
        let cases: &[Case] = &[
            (
                None,
                "",
                [
                    "VirtualService prod/map does not exist",
                    "HTTPRoute prod/map does not exist",
                ],
            ),
            (
                Some(&[(None, &[("map", None)])]),
                "canary",
                [
                    "no HTTP route of VirtualService prod/map has a destination to the canary's host map-canary",
                    "no rule of HTTPRoute prod/map has a backendRef to the canary's Service map-canary",
                ],
            ),
            (
                Some(&[(Some("r"), &[("other", Some(90)), ("map-canary", Some(10))])]),
                "stable",
                [
                    "route r of VirtualService prod/map has the canary's host map-canary but no destination to the stable host map",
                    "rule r of HTTPRoute prod/map has the canary's Service map-canary but no backendRef to the stable Service map",
                ],
            ),
            (
                Some(&[(None, &[("map", Some(80)), ("map-canary", Some(10)), ("map-canary", Some(10))])]),
                "canary",
                [
                    "route #0 of VirtualService prod/map has 2 destinations to host map-canary: the canary's share would be ambiguous",
                    "rule #0 of HTTPRoute prod/map has 2 backendRefs to Service map-canary: the canary's share would be ambiguous",
                ],
            ),
        ];
        for (routes, field, messages) in cases {
            for (shape, message) in SHAPES.iter().zip(messages) {
                let live = routes.map(|r| object(shape, r));
                // Status says the same as apply.
                for refusal in [
                    edit(shape, &names(), live.as_ref(), 10).expect_err(message),
                    standing(shape, &names(), live.as_ref()).expect_err(message),
                ] {
                    let field = if field.is_empty() { shape.field } else { field };
                    assert_eq!(refusal, Refusal::new(field, *message));
                }
            }
        }
    }
}
