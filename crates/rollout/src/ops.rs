//! The rollout's state transitions, pure: a spec and a command in, the next spec out.
//!
//! Every transition validates its input and the phase first and returns an error before
//! anything is written. A transition that would not change the spec returns `None`, so running
//! a command twice writes once. `promote` and `abort` take two steps (make before break): the
//! first switches every client (weight 100 to the new stable, 0 to the other version, which
//! stays routed as `retiring` so requests already stamped with it still land); the second
//! removes the retiring version's routes and subset.
//!
//! A version that served users and is switched off while still configured drains (the
//! filter's `drain`: its clients keep it until their next page): the stable version when the
//! canary reaches 100%, and the old stable in `promote`'s first step, which is why that step
//! waits: `promote` stops there (running it again changes nothing) and `promote --finish`
//! removes the drained version once its pages are done. `abort` never drains: it is immediate
//! by contract, and removes the canary in the same run. Neither does `set-weight 0`: an
//! operator taking the canary to 0 wants its users off it now, as with abort, and QA keeps
//! reaching it with the override; a drain would also leave them on it for as long as they
//! stay on one page. Any weight above 0 ends a drain.

use sticky_canary_filter::bucket::{percent_to_basis_points, BUCKETS};
use sticky_canary_filter::names::{check_version_name, is_dns_label, is_dns_name};
use sticky_canary_filter::VersionWeight;

use api::{Proxies, RoutingApi, StickyCanarySpec};

/// A change an operator asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// Add a canary at weight 0 (QA reaches it with the override header).
    Start {
        /// The canary's version name.
        canary: String,
    },
    /// Give the canary this share of clients, in percent.
    SetWeight(f64),
    /// Move the canary to the next step above its weight.
    Next,
    /// Make the canary the stable version while the old one drains; with `finish`, also
    /// remove the old one (at once when the switch is made in the same run).
    Promote {
        /// Remove the old version, ending its drain.
        finish: bool,
    },
    /// Send every client back to stable, then remove the canary.
    Abort,
    /// The analysis failed the canary: as [`Op::Abort`], or with `drain`, nobody new reaches
    /// the canary and its clients keep it until their next page.
    Rollback {
        /// Let the canary's clients finish their pages.
        drain: bool,
    },
}

/// A new spec and the history line that describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    /// The spec after the change.
    pub spec: StickyCanarySpec,
    /// What was done, e.g. `set-weight 10`; recorded in the status history.
    pub action: String,
}

/// Why a command was refused; nothing has been written when one is returned.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum OpError {
    /// The input itself is wrong (bad weight, bad version name, ...).
    #[error("invalid input: {0}")]
    Invalid(String),
    /// The input is fine but the rollout is not in a phase that allows it.
    #[error("{0}")]
    WrongPhase(String),
}

/// The spec of a new rollout of `service` with `stable` as its only version.
pub fn init(service: &str, stable: &str) -> Result<StickyCanarySpec, OpError> {
    let spec = StickyCanarySpec::new(service, stable);
    validate(&spec)?;
    Ok(spec)
}

/// Applies `op` to `spec`; `None` when the spec already is what `op` asks for.
pub fn apply(spec: &StickyCanarySpec, op: &Op) -> Result<Option<Change>, OpError> {
    validate(spec)?;
    let ends = matches!(op, Op::Promote { .. } | Op::Abort | Op::Rollback { .. });
    if !ends {
        removing(spec)?;
    }
    let stable = spec.versions[0].name.clone();
    let change = match op {
        Op::Start { canary } => {
            check_version_name(canary)
                .map_err(|m| OpError::Invalid(format!("canary version: {m}")))?;
            if *canary == stable {
                return Err(OpError::Invalid(format!(
                    "{canary:?} is already the stable version"
                )));
            }
            if spec.canary().is_some_and(|current| current.name == *canary) {
                return Ok(None);
            }
            running(spec)?;
            (
                with_versions(
                    spec,
                    vec![
                        VersionWeight::new(&stable, 100.0),
                        VersionWeight::new(canary, 0.0),
                    ],
                    None,
                ),
                format!("start {canary}"),
            )
        }
        Op::SetWeight(percent) => {
            let basis_points = percent_to_basis_points(*percent)
                .map_err(|m| OpError::Invalid(format!("weight {percent}: {m}")))?;
            set_canary(spec, basis_points, format!("set-weight {percent}"))?
        }
        Op::Next => {
            let canary = require_canary(spec)?;
            let current = percent_to_basis_points(canary.weight).map_err(OpError::Invalid)?;
            let next = spec
                .steps
                .iter()
                .filter_map(|&s| percent_to_basis_points(s).ok())
                .find(|&s| s > current)
                .ok_or_else(|| {
                    OpError::WrongPhase(format!(
                        "canary {:?} is at {}%, past the last step; run `promote`",
                        canary.name, canary.weight
                    ))
                })?;
            let action = format!("next {}", percent(next));
            set_canary(spec, next, action)?
        }
        Op::Promote { .. } | Op::Abort | Op::Rollback { .. } => {
            match (&spec.retiring, spec.canary()) {
                // A draining version stays until its pages are done: only `--finish` or `abort`
                // cut the drain short.
                (Some(_), _)
                    if *op == (Op::Promote { finish: false }) && spec.versions[1].drain =>
                {
                    return Ok(None)
                }
                (Some(retiring), _) => {
                    let keep = spec
                        .versions
                        .iter()
                        .filter(|v| v.name != *retiring)
                        .cloned()
                        .collect();
                    let verb = match op {
                        Op::Abort => "abort",
                        Op::Rollback { .. } => "rollback",
                        _ => "promote",
                    };
                    (
                        with_versions(spec, keep, None),
                        format!("{verb}: remove {retiring}"),
                    )
                }
                (None, None) => return Ok(None),
                // A canary nobody was sent to has shown nothing: promoting it would be a
                // switch at once in disguise, which `set-weight 100` says plainly.
                (None, Some(canary))
                    if canary.weight == 0.0 && matches!(op, Op::Promote { .. }) =>
                {
                    return Err(OpError::WrongPhase(format!(
                        "canary {:?} is at 0%: nothing has reached it yet; `next` starts the \
                         steps, `set-weight 100` switches everyone at once",
                        canary.name
                    )));
                }
                (None, Some(canary)) => {
                    let canary = canary.name.clone();
                    if let Op::Abort | Op::Rollback { .. } = op {
                        let drain = *op == (Op::Rollback { drain: true });
                        let gone = if drain {
                            draining(&canary)
                        } else {
                            VersionWeight::new(&canary, 0.0)
                        };
                        let versions = vec![VersionWeight::new(&stable, 100.0), gone];
                        let verb = if *op == Op::Abort {
                            "abort"
                        } else {
                            "rollback"
                        };
                        (
                            with_versions(spec, versions, Some(&canary)),
                            format!("{verb} {canary}"),
                        )
                    } else {
                        let versions = vec![VersionWeight::new(&canary, 100.0), draining(&stable)];
                        (
                            with_versions(spec, versions, Some(&stable)),
                            format!("promote {canary}"),
                        )
                    }
                }
            }
        }
    };
    let (new_spec, action) = change;
    validate(&new_spec)?;
    Ok((new_spec != *spec).then_some(Change {
        spec: new_spec,
        action,
    }))
}

/// Why no canary can be started now, whatever its name: a version being removed, or a
/// canary running (whose own name `start` takes as a no-op). The very checks [`apply`]
/// makes, so a front end offers `start` exactly when it would be taken.
pub(crate) fn start_refusal(spec: &StickyCanarySpec) -> Option<OpError> {
    removing(spec).and_then(|()| running(spec)).err()
}

/// Refuses while a version is being removed: only the commands that end a rollout go on.
fn removing(spec: &StickyCanarySpec) -> Result<(), OpError> {
    match &spec.retiring {
        Some(retiring) => Err(OpError::WrongPhase(format!(
            "version {retiring:?} is being removed; run `promote --finish` or `abort` to finish first"
        ))),
        None => Ok(()),
    }
}

/// Refuses while a canary runs: one canary at a time.
fn running(spec: &StickyCanarySpec) -> Result<(), OpError> {
    match spec.canary() {
        Some(current) => Err(OpError::WrongPhase(format!(
            "canary {:?} is already running; promote or abort it first",
            current.name
        ))),
        None => Ok(()),
    }
}

/// Checks a whole spec: every rule of the filter's config plus the rollout's own shape.
pub fn validate(spec: &StickyCanarySpec) -> Result<(), OpError> {
    check_host(&spec.service)?;
    spec.plugin_config()
        .validate()
        .map_err(|e| OpError::Invalid(format!("spec.{e}")))?;
    if spec.versions.len() > 2 {
        return Err(OpError::Invalid(format!(
            "spec.versions: at most a stable and a canary version, got {}",
            spec.versions.len()
        )));
    }
    if let Some(retiring) = &spec.retiring {
        let ok = spec
            .versions
            .get(1)
            .is_some_and(|v| v.name == *retiring && v.weight == 0.0);
        if !ok {
            return Err(OpError::Invalid(format!(
                "spec.retiring: {retiring:?} must be the second version, at weight 0"
            )));
        }
    }
    if spec.steps.is_empty() {
        return Err(OpError::Invalid("spec.steps: must not be empty".into()));
    }
    let mut previous = 0;
    for (i, &step) in spec.steps.iter().enumerate() {
        let bp = percent_to_basis_points(step)
            .map_err(|m| OpError::Invalid(format!("spec.steps[{i}]: {m}")))?;
        if bp <= previous {
            return Err(OpError::Invalid(format!(
                "spec.steps[{i}]: {step} must be above 0 and above the step before it"
            )));
        }
        previous = bp;
    }
    let label = spec.version_label();
    if label.is_empty() || !label.bytes().all(|b| b.is_ascii_graphic() && b != b'"') {
        return Err(OpError::Invalid(format!(
            "spec.routing.versionLabel: {label:?} is not a label key"
        )));
    }
    let groups = [
        (
            "gateways",
            spec.plugin.gateways.as_deref().unwrap_or_default(),
        ),
        ("sidecars", &spec.plugin.sidecars),
    ];
    for (field, groups) in groups {
        for (i, group) in groups.iter().enumerate() {
            check_proxies(&format!("spec.plugin.{field}[{i}]"), group)?;
        }
    }
    for (key, value) in &spec.plugin.selector {
        check_label(&format!("spec.plugin.selector.{key}"), key, value)?;
    }
    check_routing(spec)?;
    check_auto(spec)?;
    spec.analysis.validate().map_err(OpError::Invalid)
}

/// Automatic progression's settings: an interval to judge in, gates on steps, a webhook URL.
fn check_auto(spec: &StickyCanarySpec) -> Result<(), OpError> {
    let auto = &spec.auto;
    if auto.interval_seconds == 0 {
        return Err(OpError::Invalid(
            "spec.auto.intervalSeconds: must be at least 1".into(),
        ));
    }
    for (i, gate) in auto.gates.iter().enumerate() {
        if !spec.steps.contains(gate) {
            return Err(OpError::Invalid(format!(
                "spec.auto.gates[{i}]: {gate} is not one of spec.steps"
            )));
        }
    }
    // Its form only, parsed: where it may point is `notify::check_url`'s, applied where it is
    // set and at every send, so a stored URL that is refused stops its notices, not the rollout.
    if let Some(url) = &auto.webhook {
        let parsed = url::Url::parse(url);
        let ok = parsed.is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.has_host());
        if !ok || url.contains(char::is_whitespace) {
            return Err(OpError::Invalid(format!(
                "spec.auto.webhook: {url:?} is not an http(s) URL"
            )));
        }
    }
    Ok(())
}

/// A group of proxies names a namespace (a DNS label) and labels Kubernetes accepts.
fn check_proxies(field: &str, proxies: &Proxies) -> Result<(), OpError> {
    if let Some(namespace) = &proxies.namespace {
        if !is_dns_label(namespace) {
            return Err(OpError::Invalid(format!(
                "{field}.namespace: {namespace:?} is not a namespace name"
            )));
        }
    }
    for (key, value) in &proxies.selector {
        check_label(&format!("{field}.selector.{key}"), key, value)?;
    }
    if !proxies.selector.is_empty() && !proxies.target_refs.is_empty() {
        return Err(OpError::Invalid(format!(
            "{field}: selector and targetRefs both set: a plugin selects its proxies one way"
        )));
    }
    Ok(())
}

/// The HTTPRoute API's own settings: Service names per version, and what only it can do.
fn check_routing(spec: &StickyCanarySpec) -> Result<(), OpError> {
    for (version, service) in &spec.routing.version_services {
        let ok = is_dns_label(service)
            && service.len() <= 63
            && service.starts_with(|c: char| c.is_ascii_lowercase());
        if !ok {
            return Err(OpError::Invalid(format!(
                "spec.routing.versionServices.{version}: {service:?} is not a Service name (at most 63 lower-case letters, digits and '-', starting with a letter)"
            )));
        }
    }
    let virtual_service = spec.routing.api == Some(RoutingApi::VirtualService);
    let needs_http_route = [
        ("spec.plugin.waypoint", spec.plugin.waypoint),
        ("spec.routing.httpRoute", spec.routing.http_route.is_some()),
        (
            "spec.routing.versionServices",
            !spec.routing.version_services.is_empty(),
        ),
    ];
    if let Some((field, _)) = needs_http_route
        .iter()
        .find(|(_, set)| *set && virtual_service)
    {
        return Err(OpError::Invalid(format!(
            "{field}: only the HTTPRoute API has it, and spec.routing.api is VirtualService"
        )));
    }
    if let Some(i) = spec
        .plugin
        .sidecars
        .iter()
        .position(|s| !s.target_refs.is_empty())
    {
        return Err(OpError::Invalid(format!(
            "spec.plugin.sidecars[{i}].targetRefs: sidecars ignore targetRefs (Istio applies them to Gateway API gateways and waypoints only): use selector"
        )));
    }
    Ok(())
}

/// A label key (an optional DNS prefix and `/`, then a name) and value as Kubernetes takes them.
fn check_label(field: &str, key: &str, value: &str) -> Result<(), OpError> {
    let name_ok = |n: &str, max: usize| {
        n.len() <= max
            && (n.is_empty()
                || (n
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
                    && n.starts_with(|c: char| c.is_ascii_alphanumeric())
                    && n.ends_with(|c: char| c.is_ascii_alphanumeric())))
    };
    let (prefix, name) = key.rsplit_once('/').unwrap_or(("", key));
    let prefix_ok = prefix.is_empty() || check_host(prefix).is_ok();
    if name.is_empty() || !name_ok(name, 63) || !prefix_ok {
        return Err(OpError::Invalid(format!(
            "{field}: {key:?} is not a label key"
        )));
    }
    if !name_ok(value, 63) {
        return Err(OpError::Invalid(format!(
            "{field}: {value:?} is not a label value"
        )));
    }
    Ok(())
}

/// Index in `spec.steps` of the canary's weight, when it is exactly on a step.
pub fn step_index(spec: &StickyCanarySpec) -> Option<u32> {
    let weight = percent_to_basis_points(spec.canary()?.weight).ok()?;
    let index = spec
        .steps
        .iter()
        .position(|&s| percent_to_basis_points(s) == Ok(weight))?;
    u32::try_from(index).ok()
}

/// Basis points back to the percentage the spec stores (exact: at most two decimals).
fn percent(basis_points: u16) -> f64 {
    f64::from(basis_points) / 100.0
}

fn require_canary(spec: &StickyCanarySpec) -> Result<&VersionWeight, OpError> {
    spec.canary().ok_or_else(|| {
        OpError::WrongPhase(format!(
            "no canary is running (only {:?}); run `start --canary <version>` first",
            spec.versions[0].name
        ))
    })
}

fn set_canary(
    spec: &StickyCanarySpec,
    basis_points: u16,
    action: String,
) -> Result<(StickyCanarySpec, String), OpError> {
    let canary = require_canary(spec)?;
    let stable = &spec.versions[0].name;
    // At 100% the stable version is switched off but still configured: it drains, so its
    // clients finish the page they are on.
    let stable = if basis_points == BUCKETS {
        draining(stable)
    } else {
        VersionWeight::new(stable, percent(BUCKETS - basis_points))
    };
    let versions = vec![
        stable,
        VersionWeight::new(&canary.name, percent(basis_points)),
    ];
    Ok((with_versions(spec, versions, None), action))
}

/// A version at weight 0 whose clients keep it until their next navigation.
fn draining(name: &str) -> VersionWeight {
    VersionWeight {
        drain: true,
        ..VersionWeight::new(name, 0.0)
    }
}

fn with_versions(
    spec: &StickyCanarySpec,
    versions: Vec<VersionWeight>,
    retiring: Option<&str>,
) -> StickyCanarySpec {
    let mut next = spec.clone();
    next.versions = versions;
    next.retiring = retiring.map(str::to_owned);
    next
}

/// A service host: DNS labels of lower-case letters, digits and '-', dot separated.
fn check_host(host: &str) -> Result<(), OpError> {
    if is_dns_name(host) {
        Ok(())
    } else {
        Err(OpError::Invalid(format!(
            "spec.service: {host:?} is not a service host (lower-case DNS name such as reviews.shop.svc.cluster.local)"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placement_refusals_name_the_field() {
        let refused = |edit: &dyn Fn(&mut StickyCanarySpec)| {
            let mut spec = StickyCanarySpec::new("shop", "v1");
            edit(&mut spec);
            validate(&spec).unwrap_err().to_string()
        };
        let gateway = |namespace: &str, key: &str, value: &str| Proxies {
            namespace: Some(namespace.to_owned()),
            selector: [(key.to_owned(), value.to_owned())].into(),
            ..Default::default()
        };
        type Edit<'a> = &'a dyn Fn(&mut StickyCanarySpec);
        let cases: [(Edit, &str); 4] = [
            (
                &|s| s.plugin.gateways = Some(vec![gateway("Istio_System", "istio", "gw")]),
                "spec.plugin.gateways[0].namespace: \"Istio_System\" is not a namespace name",
            ),
            (
                &|s| s.plugin.sidecars = vec![gateway("prod", "app", "web app")],
                "spec.plugin.sidecars[0].selector.app: \"web app\" is not a label value",
            ),
            (
                &|s| s.plugin.sidecars = vec![gateway("prod", "bad key", "x")],
                "spec.plugin.sidecars[0].selector.bad key: \"bad key\" is not a label key",
            ),
            (
                &|s| {
                    s.plugin.selector.insert("-x".into(), "y".into());
                },
                "spec.plugin.selector.-x",
            ),
        ];
        for (edit, message) in cases {
            let err = refused(edit);
            assert!(err.contains(message), "{err}");
        }
        let mut fine = StickyCanarySpec::new("shop", "v1");
        fine.plugin.gateways = Some(vec![gateway(
            "istio-system",
            "app.kubernetes.io/name",
            "gw",
        )]);
        assert!(validate(&fine).is_ok());
    }

    fn spec(versions: &[(&str, f64)], retiring: Option<&str>) -> StickyCanarySpec {
        with_versions(
            &StickyCanarySpec::new("shop", versions[0].0),
            versions
                .iter()
                .map(|&(name, weight)| VersionWeight::new(name, weight))
                .collect(),
            retiring,
        )
    }

    /// `s` with version `name` draining.
    fn drained(mut s: StickyCanarySpec, name: &str) -> StickyCanarySpec {
        for v in s.versions.iter_mut().filter(|v| v.name == name) {
            v.drain = true;
        }
        s
    }

    fn weights(s: &StickyCanarySpec) -> Vec<(String, f64, bool)> {
        s.versions
            .iter()
            .map(|v| (v.name.clone(), v.weight, v.drain))
            .collect()
    }

    const PROMOTE: Op = Op::Promote { finish: false };
    const FINISH: Op = Op::Promote { finish: true };

    #[test]
    fn transitions() {
        let stable = spec(&[("v1", 100.0)], None);
        let canary = |w: f64| spec(&[("v1", 100.0 - w), ("v2", w)], None);
        let full = drained(canary(100.0), "v1");
        let promoting = drained(spec(&[("v2", 100.0), ("v1", 0.0)], Some("v1")), "v1");
        let cases: Vec<(&str, StickyCanarySpec, Op, StickyCanarySpec, &str)> = vec![
            (
                "start",
                stable.clone(),
                Op::Start {
                    canary: "v2".into(),
                },
                canary(0.0),
                "start v2",
            ),
            (
                "set",
                canary(0.0),
                Op::SetWeight(10.0),
                canary(10.0),
                "set-weight 10",
            ),
            (
                "decimals",
                canary(0.0),
                Op::SetWeight(33.33),
                spec(&[("v1", 66.67), ("v2", 33.33)], None),
                "set-weight 33.33",
            ),
            ("next from 0", canary(0.0), Op::Next, canary(1.0), "next 1"),
            (
                "next off-step",
                canary(7.0),
                Op::Next,
                canary(10.0),
                "next 10",
            ),
            (
                "next to 100 drains stable",
                canary(80.0),
                Op::Next,
                full.clone(),
                "next 100",
            ),
            (
                "set-weight 100 drains stable",
                canary(50.0),
                Op::SetWeight(100.0),
                full.clone(),
                "set-weight 100",
            ),
            (
                "leaving 100 ends the drain",
                full.clone(),
                Op::SetWeight(80.0),
                canary(80.0),
                "set-weight 80",
            ),
            (
                "set-weight 0 does not drain the canary",
                canary(50.0),
                Op::SetWeight(0.0),
                canary(0.0),
                "set-weight 0",
            ),
            (
                "promote drains the old stable",
                canary(20.0),
                PROMOTE,
                promoting.clone(),
                "promote v2",
            ),
            (
                "promote at 100",
                full.clone(),
                PROMOTE,
                promoting.clone(),
                "promote v2",
            ),
            (
                "promote --finish switches first",
                canary(20.0),
                FINISH,
                promoting.clone(),
                "promote v2",
            ),
            (
                "promote --finish removes the drained version",
                promoting.clone(),
                FINISH,
                spec(&[("v2", 100.0)], None),
                "promote: remove v1",
            ),
            (
                "promote removes a retiring version that does not drain",
                spec(&[("v1", 100.0), ("v2", 0.0)], Some("v2")),
                PROMOTE,
                stable.clone(),
                "promote: remove v2",
            ),
            (
                "abort cuts a drain short",
                promoting.clone(),
                Op::Abort,
                spec(&[("v2", 100.0)], None),
                "abort: remove v1",
            ),
            (
                "abort at 100 never drains",
                full.clone(),
                Op::Abort,
                spec(&[("v1", 100.0), ("v2", 0.0)], Some("v2")),
                "abort v2",
            ),
            (
                "abort",
                canary(50.0),
                Op::Abort,
                spec(&[("v1", 100.0), ("v2", 0.0)], Some("v2")),
                "abort v2",
            ),
            (
                "abort finish",
                spec(&[("v1", 100.0), ("v2", 0.0)], Some("v2")),
                Op::Abort,
                stable.clone(),
                "abort: remove v2",
            ),
        ];
        for (name, before, op, after, action) in cases {
            let change = apply(&before, &op).unwrap().expect(name);
            assert_eq!(weights(&change.spec), weights(&after), "{name}");
            assert_eq!(change.spec, after, "{name}");
            assert_eq!(change.action, action, "{name}");
        }
    }

    #[test]
    fn repeated_commands_change_nothing() {
        let stable = spec(&[("v1", 100.0)], None);
        let canary = spec(&[("v1", 90.0), ("v2", 10.0)], None);
        let cases = [
            (
                canary.clone(),
                Op::Start {
                    canary: "v2".into(),
                },
            ),
            (canary.clone(), Op::SetWeight(10.0)),
            (stable.clone(), PROMOTE),
            (stable.clone(), FINISH),
            (stable, Op::Abort),
            (
                drained(spec(&[("v1", 0.0), ("v2", 100.0)], None), "v1"),
                Op::SetWeight(100.0),
            ),
            (
                drained(spec(&[("v2", 100.0), ("v1", 0.0)], Some("v1")), "v1"),
                PROMOTE,
            ),
        ];
        for (before, op) in cases {
            assert_eq!(apply(&before, &op), Ok(None), "{op:?}");
        }
    }

    #[test]
    fn refusals_name_the_problem() {
        let stable = spec(&[("v1", 100.0)], None);
        let canary = spec(&[("v1", 90.0), ("v2", 10.0)], None);
        let retiring = spec(&[("v2", 100.0), ("v1", 0.0)], Some("v1"));
        let cases: Vec<(StickyCanarySpec, Op, &str)> = vec![
            (canary.clone(), Op::SetWeight(101.0), "weight 101"),
            (canary.clone(), Op::SetWeight(-1.0), "weight -1"),
            (canary.clone(), Op::SetWeight(10.001), "two decimals"),
            (canary.clone(), Op::SetWeight(f64::NAN), "weight NaN"),
            (stable.clone(), Op::SetWeight(10.0), "no canary is running"),
            (stable.clone(), Op::Next, "no canary is running"),
            (
                stable.clone(),
                Op::Start {
                    canary: "v 2".into(),
                },
                "not a valid version name",
            ),
            (
                stable.clone(),
                Op::Start { canary: "".into() },
                "must not be empty",
            ),
            (
                stable.clone(),
                Op::Start {
                    canary: "v1".into(),
                },
                "already the stable version",
            ),
            (
                canary.clone(),
                Op::Start {
                    canary: "v3".into(),
                },
                "canary \"v2\" is already running",
            ),
            (
                spec(&[("v1", 0.0), ("v2", 100.0)], None),
                Op::Next,
                "past the last step",
            ),
            (retiring.clone(), Op::SetWeight(5.0), "being removed"),
            (retiring.clone(), Op::Next, "promote --finish"),
            (
                retiring,
                Op::Start {
                    canary: "v3".into(),
                },
                "being removed",
            ),
        ];
        for (before, op, needle) in cases {
            let err = apply(&before, &op).expect_err(needle).to_string();
            assert!(err.contains(needle), "{op:?}: {err}");
        }
    }

    #[test]
    fn validation_of_whole_specs() {
        let mut bad_steps = spec(&[("v1", 100.0)], None);
        bad_steps.steps = vec![5.0, 1.0];
        let mut no_steps = bad_steps.clone();
        no_steps.steps.clear();
        let mut bad_label = spec(&[("v1", 100.0)], None);
        bad_label.routing.version_label = Some("a b".into());
        let mut three = spec(&[("v1", 98.0), ("v2", 1.0)], None);
        three.versions.push(VersionWeight::new("v3", 1.0));
        let live_drain = drained(spec(&[("v1", 90.0), ("v2", 10.0)], None), "v2");
        let mut bad_sum = spec(&[("v1", 90.0)], None);
        bad_sum.versions[0].weight = 90.0;
        let mut bad_retiring = spec(&[("v1", 90.0), ("v2", 10.0)], None);
        bad_retiring.retiring = Some("v2".into());
        let mut no_interval = spec(&[("v1", 100.0)], None);
        no_interval.auto.interval_seconds = 0;
        let mut bad_gate = spec(&[("v1", 100.0)], None);
        bad_gate.auto.gates = vec![20.0, 30.0];
        let mut bad_webhook = spec(&[("v1", 100.0)], None);
        bad_webhook.auto.webhook = Some("hooks.slack.com/x".into());
        let cases = [
            (no_interval, "spec.auto.intervalSeconds: must be at least 1"),
            (bad_gate, "spec.auto.gates[1]: 30 is not one of spec.steps"),
            (
                bad_webhook,
                "spec.auto.webhook: \"hooks.slack.com/x\" is not an http(s) URL",
            ),
            (bad_steps, "spec.steps[1]"),
            (no_steps, "spec.steps: must not be empty"),
            (bad_label, "versionLabel"),
            (three, "at most a stable and a canary"),
            (bad_sum, "sum to 90"),
            (bad_retiring, "spec.retiring"),
            (
                live_drain,
                "spec.versions[1].drain: only a version at weight 0",
            ),
        ];
        for (s, needle) in cases {
            let err = validate(&s).expect_err(needle).to_string();
            assert!(err.contains(needle), "{err}");
        }
        for host in ["Shop", "shop_1", "", "a..b", "-a"] {
            assert!(init(host, "v1").is_err(), "{host}");
        }
        assert!(init("reviews.shop.svc.cluster.local", "v1").is_ok());
        assert!(init("shop", "v 1").is_err());
    }

    #[test]
    fn steps() {
        let canary = spec(&[("v1", 90.0), ("v2", 10.0)], None);
        let single = spec(&[("v1", 100.0)], None);
        assert_eq!(step_index(&canary), Some(2));
        assert_eq!(step_index(&spec(&[("v1", 93.0), ("v2", 7.0)], None)), None);
        assert_eq!(step_index(&single), None);
    }
}
