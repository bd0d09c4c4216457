//! The plan file: one release, every workload, the canary's share of each.
//!
//! ```yaml
//! - project: server
//!   type: STICKY          # percent of clients, at most two decimals
//!   weight: 10
//! - project: dispatcher
//!   type: DEPLOYMENT_REPLICAS
//!   weight: 1             # the canary Deployment's replicas
//!   namespace: workers    # optional, and so are the names (see `naming`)
//! ```
//!
//! Parsing is strict and whole: unknown fields, unknown types, weights out of range and names
//! that do not apply to the entry's type are refused with the entry's number, project and
//! field, and nothing is read from the cluster before the whole file is valid.

use serde::Deserialize;
use serde_json::Value;
use sticky_canary_filter::bucket::percent_to_basis_points;
use sticky_canary_filter::names::{is_dns_label, is_dns_name};

use runtime::error::Error;

/// The kind of workload an entry releases.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, serde::Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Kind {
    /// This project's sticky rollout (a `StickyCanary`): percent of clients.
    Sticky,
    /// The canary Ingress of the NGINX Ingress Controller: its `canary-weight`, in percent.
    IngressNginx,
    /// A plain Istio VirtualService weight split, no stickiness: percent of requests.
    IstioVsvc,
    /// Its Gateway API twin: a plain HTTPRoute weight split of the backendRefs to the stable
    /// and canary Services, no stickiness: percent of requests.
    #[serde(rename = "HTTPROUTE")]
    HttpRoute,
    /// The canary Deployment's replica count (queue workers share by replicas).
    DeploymentReplicas,
    /// Which one of stable (0) and canary (1) runs; never both.
    DeploymentSingleton,
}

impl Kind {
    /// The name the plan file uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Sticky => "STICKY",
            Kind::IngressNginx => "INGRESS_NGINX",
            Kind::IstioVsvc => "ISTIO_VSVC",
            Kind::HttpRoute => "HTTPROUTE",
            Kind::DeploymentReplicas => "DEPLOYMENT_REPLICAS",
            Kind::DeploymentSingleton => "DEPLOYMENT_SINGLETON",
        }
    }

    /// What `weight` means for this kind, for error messages.
    fn weight_rule(self) -> &'static str {
        match self {
            Kind::Sticky => "percent of clients from 0 to 100, at most two decimals",
            Kind::IngressNginx | Kind::IstioVsvc | Kind::HttpRoute => {
                "an integer percent from 0 to 100"
            }
            Kind::DeploymentReplicas => "the canary's replica count, an integer from 0",
            Kind::DeploymentSingleton => "0 (stable runs) or 1 (canary runs)",
        }
    }

    /// The optional name fields that apply to this kind (see `naming`).
    fn name_fields(self) -> &'static [&'static str] {
        match self {
            Kind::Sticky => &["rollout"],
            Kind::IstioVsvc => &["virtualService", "stable", "canary"],
            Kind::HttpRoute => &["httpRoute", "stable", "canary"],
            Kind::IngressNginx | Kind::DeploymentReplicas | Kind::DeploymentSingleton => {
                &["stable", "canary"]
            }
        }
    }

    /// The weight that puts this kind's entry back on stable.
    pub fn stable_weight(self) -> f64 {
        0.0
    }
}

/// Largest replica count Kubernetes takes (`replicas` is an int32).
const MAX_REPLICAS: f64 = i32::MAX as f64;

/// One entry of the plan, valid.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// Its position in the file, from 1.
    pub index: usize,
    /// The project: the Helm release of the stable version (see `naming`).
    pub project: String,
    /// What it releases.
    pub kind: Kind,
    /// The canary's share, as [`Kind`] says; a whole number for every kind but `STICKY`.
    pub weight: f64,
    /// Namespace, when the entry names one.
    pub namespace: Option<String>,
    /// Names overriding the convention: `rollout`, `virtualService`, `httpRoute`, `stable`,
    /// `canary`.
    pub overrides: Overrides,
}

/// The names an entry may set instead of the convention's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overrides {
    /// STICKY: the StickyCanary's name.
    pub rollout: Option<String>,
    /// ISTIO_VSVC: the VirtualService's name.
    pub virtual_service: Option<String>,
    /// HTTPROUTE: the HTTPRoute's name.
    pub http_route: Option<String>,
    /// The stable Ingress, Deployment or Service, or the stable destination host.
    pub stable: Option<String>,
    /// The canary Ingress, Deployment or Service, or the canary destination host.
    pub canary: Option<String>,
}

/// An entry as written, before its checks.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawEntry {
    project: String,
    #[serde(rename = "type")]
    kind: Kind,
    weight: Value,
    #[serde(default)]
    namespace: Option<String>,
    // Inline, not a flattened `Overrides`: serde cannot deny unknown fields through a flatten.
    #[serde(default)]
    rollout: Option<String>,
    #[serde(default)]
    virtual_service: Option<String>,
    #[serde(default)]
    http_route: Option<String>,
    #[serde(default)]
    stable: Option<String>,
    #[serde(default)]
    canary: Option<String>,
}

impl Entry {
    /// `entry 3 (dispatcher)`: how messages name the entry.
    pub fn what(&self) -> String {
        format!("entry {} ({})", self.index, self.project)
    }

    /// The weight as a whole number, for every kind but `STICKY` (checked when parsed).
    pub fn count(&self) -> i32 {
        self.weight as i32
    }

    /// This entry with the canary off: what `plan rollback` applies.
    pub fn on_stable(&self) -> Entry {
        Entry {
            weight: self.kind.stable_weight(),
            ..self.clone()
        }
    }
}

/// Parses and checks a whole plan file; `source` names it in messages.
pub fn parse(text: &str, source: &str) -> Result<Vec<Entry>, Error> {
    let invalid = |m: String| Error::Invalid(format!("{source}: {m}"));
    let document: Value = serde_saphyr::from_str(text).map_err(|e| {
        let message = e.to_string();
        invalid(format!(
            "not valid YAML: {}",
            message.strip_prefix("error: ").unwrap_or(&message)
        ))
    })?;
    let items = match document {
        Value::Array(items) => items,
        Value::Null => Vec::new(),
        _ => return Err(invalid("not a list of plan entries".into())),
    };
    if items.is_empty() {
        return Err(invalid("the plan has no entries".into()));
    }
    let mut entries: Vec<Entry> = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        let entry = entry(i + 1, item).map_err(invalid)?;
        let same_objects = entries.iter().find(|e| {
            e.project == entry.project && e.kind == entry.kind && e.namespace == entry.namespace
        });
        if let Some(earlier) = same_objects {
            return Err(invalid(format!(
                "{}: project {:?} of type {} is already {}",
                entry.what(),
                entry.project,
                entry.kind.as_str(),
                earlier.what()
            )));
        }
        entries.push(entry);
    }
    Ok(entries)
}

/// Checks entry number `index` (from 1).
fn entry(index: usize, item: Value) -> Result<Entry, String> {
    let project = item
        .get("project")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let what = match &project {
        Some(p) => format!("entry {index} ({p})"),
        None => format!("entry {index}"),
    };
    if !item.is_object() {
        return Err(format!(
            "{what}: expected a mapping with project, type and weight"
        ));
    }
    let raw: RawEntry = serde_json::from_value(item).map_err(|e| format!("{what}: {e}"))?;
    let overrides = Overrides {
        rollout: raw.rollout,
        virtual_service: raw.virtual_service,
        http_route: raw.http_route,
        stable: raw.stable,
        canary: raw.canary,
    };
    check_name(&raw.project).map_err(|m| format!("{what}: project: {m}"))?;
    if let Some(namespace) = &raw.namespace {
        check_name(namespace).map_err(|m| format!("{what}: namespace: {m}"))?;
    }
    let set = [
        ("rollout", &overrides.rollout),
        ("virtualService", &overrides.virtual_service),
        ("httpRoute", &overrides.http_route),
        ("stable", &overrides.stable),
        ("canary", &overrides.canary),
    ];
    for (field, value) in set {
        let Some(value) = value else { continue };
        if !raw.kind.name_fields().contains(&field) {
            return Err(format!(
                "{what}: {field}: does not apply to type {} (it takes {})",
                raw.kind.as_str(),
                raw.kind.name_fields().join(", ")
            ));
        }
        // Destination hosts may be fully qualified; object names (a backendRef's Service
        // too) are DNS labels.
        let checked = if raw.kind == Kind::IstioVsvc && field != "virtualService" {
            check_host(value)
        } else {
            check_name(value)
        };
        checked.map_err(|m| format!("{what}: {field}: {m}"))?;
    }
    if let (Some(stable), Some(canary)) = (&overrides.stable, &overrides.canary) {
        if stable == canary {
            return Err(format!(
                "{what}: canary: {canary:?} is the stable one too; they must differ"
            ));
        }
    }
    let weight = check_weight(raw.kind, &raw.weight)
        .map_err(|m| format!("{what}: weight {}: {m}", raw.weight))?;
    Ok(Entry {
        index,
        project: raw.project,
        kind: raw.kind,
        weight,
        namespace: raw.namespace,
        overrides,
    })
}

/// The weight of a `kind` entry, or why it is out of range.
pub fn check_weight(kind: Kind, weight: &Value) -> Result<f64, String> {
    let rule = || format!("must be {}", kind.weight_rule());
    let number = weight.as_f64().ok_or_else(rule)?;
    let in_range = match kind {
        Kind::Sticky => {
            return percent_to_basis_points(number)
                .map(|_| number)
                .map_err(|_| rule())
        }
        Kind::IngressNginx | Kind::IstioVsvc | Kind::HttpRoute => (0.0..=100.0).contains(&number),
        Kind::DeploymentReplicas => (0.0..=MAX_REPLICAS).contains(&number),
        Kind::DeploymentSingleton => number == 0.0 || number == 1.0,
    };
    if in_range && number.fract() == 0.0 {
        Ok(number)
    } else {
        Err(rule())
    }
}

/// A Kubernetes object name as Helm releases make them: a DNS-1123 label.
fn check_name(name: &str) -> Result<(), String> {
    if is_dns_label(name) {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is not a Kubernetes name (at most 63 of a-z, 0-9 and '-', alphanumeric at both ends)"
        ))
    }
}

/// A destination host: dot-separated DNS labels (`server-map` or `server-map.prod.svc.cluster.local`).
fn check_host(host: &str) -> Result<(), String> {
    if is_dns_name(host) {
        Ok(())
    } else {
        Err(format!(
            "{host:?} is not a service host (dot-separated Kubernetes names)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ISSUE_PLAN: &str = "\
# canary.yaml: one release, every workload, the canary's share of each
- project: server
  type: STICKY                # this project's filter and routes (a StickyCanary)
  weight: 10                  # percent of clients
- project: server-web
  type: INGRESS_NGINX
  weight: 10
- project: server-map
  type: ISTIO_VSVC
  weight: 10
- project: dispatcher
  type: DEPLOYMENT_REPLICAS
  weight: 1
- project: server-internal
  type: DEPLOYMENT_SINGLETON
  weight: 0
";

    #[test]
    fn the_issues_plan_parses_in_order() {
        let plan = parse(ISSUE_PLAN, "canary.yaml").expect("valid");
        let got: Vec<(usize, &str, Kind, f64)> = plan
            .iter()
            .map(|e| (e.index, e.project.as_str(), e.kind, e.weight))
            .collect();
        assert_eq!(
            got,
            [
                (1, "server", Kind::Sticky, 10.0),
                (2, "server-web", Kind::IngressNginx, 10.0),
                (3, "server-map", Kind::IstioVsvc, 10.0),
                (4, "dispatcher", Kind::DeploymentReplicas, 1.0),
                (5, "server-internal", Kind::DeploymentSingleton, 0.0),
            ]
        );
        assert!(plan.iter().all(|e| e.overrides == Overrides::default()));
    }

    #[test]
    fn overrides_and_namespaces_are_read() {
        let plan = parse(
            "- {project: m, type: ISTIO_VSVC, weight: 5, namespace: mesh, virtualService: routes, stable: m-blue.mesh.svc.cluster.local, canary: m-green}\n",
            "p.yaml",
        )
        .expect("valid");
        assert_eq!(plan[0].namespace.as_deref(), Some("mesh"));
        assert_eq!(
            plan[0].overrides,
            Overrides {
                rollout: None,
                virtual_service: Some("routes".into()),
                http_route: None,
                stable: Some("m-blue.mesh.svc.cluster.local".into()),
                canary: Some("m-green".into()),
            }
        );
    }

    #[test]
    fn an_httproute_entry_and_its_names_are_read_beside_the_virtualservice_one() {
        let plan = parse(
            "- {project: shop, type: HTTPROUTE, weight: 10, namespace: mesh, httpRoute: routes, stable: shop-v1, canary: shop-v2}\n\
             - {project: shop, type: ISTIO_VSVC, weight: 10, namespace: mesh}\n",
            "p.yaml",
        )
        .expect("valid: one project may have both, each its own type");
        assert_eq!(
            (plan[0].kind, plan[0].kind.as_str(), plan[1].kind),
            (Kind::HttpRoute, "HTTPROUTE", Kind::IstioVsvc)
        );
        assert_eq!(
            plan[0].overrides,
            Overrides {
                rollout: None,
                virtual_service: None,
                http_route: Some("routes".into()),
                stable: Some("shop-v1".into()),
                canary: Some("shop-v2".into()),
            }
        );
        // The status JSON names the type as the file does.
        assert_eq!(
            serde_json::to_value(Kind::HttpRoute).expect("JSON"),
            "HTTPROUTE"
        );
    }

    #[test]
    fn every_weight_rule_per_kind() {
        use serde_json::json;
        let cases: &[(Kind, Value, Option<f64>)] = &[
            (Kind::Sticky, json!(0), Some(0.0)),
            (Kind::Sticky, json!(12.34), Some(12.34)),
            (Kind::Sticky, json!(100), Some(100.0)),
            (Kind::Sticky, json!(12.345), None),
            (Kind::Sticky, json!(101), None),
            (Kind::Sticky, json!(-1), None),
            (Kind::Sticky, json!("10"), None),
            (Kind::IngressNginx, json!(0), Some(0.0)),
            (Kind::IngressNginx, json!(100), Some(100.0)),
            (Kind::IngressNginx, json!(10.5), None),
            (Kind::IngressNginx, json!(101), None),
            (Kind::IstioVsvc, json!(55), Some(55.0)),
            (Kind::IstioVsvc, json!(-5), None),
            (Kind::IstioVsvc, json!(null), None),
            (Kind::HttpRoute, json!(0), Some(0.0)),
            (Kind::HttpRoute, json!(100), Some(100.0)),
            (Kind::HttpRoute, json!(33.5), None),
            (Kind::HttpRoute, json!(101), None),
            (Kind::DeploymentReplicas, json!(0), Some(0.0)),
            (Kind::DeploymentReplicas, json!(250), Some(250.0)),
            (
                Kind::DeploymentReplicas,
                json!(2147483647),
                Some(2147483647.0),
            ),
            (Kind::DeploymentReplicas, json!(2147483648u64), None),
            (Kind::DeploymentReplicas, json!(1.5), None),
            (Kind::DeploymentReplicas, json!(-1), None),
            (Kind::DeploymentSingleton, json!(0), Some(0.0)),
            (Kind::DeploymentSingleton, json!(1), Some(1.0)),
            (Kind::DeploymentSingleton, json!(2), None),
            (Kind::DeploymentSingleton, json!(0.5), None),
        ];
        for (kind, weight, expected) in cases {
            let got = check_weight(*kind, weight);
            match expected {
                Some(w) => assert_eq!(got, Ok(*w), "{kind:?} {weight}"),
                None => {
                    let message = got.expect_err(&format!("{kind:?} {weight} is refused"));
                    assert!(message.starts_with("must be "), "{message}");
                }
            }
        }
    }

    #[test]
    fn every_refusal_names_the_file_the_entry_and_the_field() {
        let ok = "- {project: server, type: STICKY, weight: 10}\n";
        let cases: &[(&str, &str)] = &[
            ("", "p.yaml: the plan has no entries"),
            ("[]", "p.yaml: the plan has no entries"),
            ("project: server\n", "p.yaml: not a list of plan entries"),
            ("- {project: [\n", "p.yaml: not valid YAML: line 1"),
            ("- [1, 2]\n", "p.yaml: entry 1: expected a mapping"),
            (
                "- {project: web, type: INGRESS_NGINX, weigth: 10}\n",
                "p.yaml: entry 1 (web): unknown field `weigth`",
            ),
            (
                "- {project: web, type: NGINX, weight: 10}\n",
                "p.yaml: entry 1 (web): unknown variant `NGINX`, expected one of `STICKY`",
            ),
            (
                "- {type: STICKY, weight: 10}\n",
                "p.yaml: entry 1: missing field `project`",
            ),
            (
                "- {project: web, type: INGRESS_NGINX}\n",
                "p.yaml: entry 1 (web): missing field `weight`",
            ),
            (
                "- {project: Web, type: INGRESS_NGINX, weight: 1}\n",
                "p.yaml: entry 1 (Web): project: \"Web\" is not a Kubernetes name",
            ),
            (
                "- {project: web, type: INGRESS_NGINX, weight: 1, namespace: -x}\n",
                "p.yaml: entry 1 (web): namespace: \"-x\" is not a Kubernetes name",
            ),
            (
                "- {project: web, type: INGRESS_NGINX, weight: 101}\n",
                "p.yaml: entry 1 (web): weight 101: must be an integer percent from 0 to 100",
            ),
            (
                "- {project: w, type: DEPLOYMENT_SINGLETON, weight: 2}\n",
                "p.yaml: entry 1 (w): weight 2: must be 0 (stable runs) or 1 (canary runs)",
            ),
            (
                "- {project: w, type: DEPLOYMENT_REPLICAS, weight: 1, virtualService: x}\n",
                "p.yaml: entry 1 (w): virtualService: does not apply to type DEPLOYMENT_REPLICAS (it takes stable, canary)",
            ),
            (
                "- {project: s, type: STICKY, weight: 1, canary: s2}\n",
                "p.yaml: entry 1 (s): canary: does not apply to type STICKY (it takes rollout)",
            ),
            (
                "- {project: w, type: DEPLOYMENT_REPLICAS, weight: 1, stable: a, canary: a}\n",
                "p.yaml: entry 1 (w): canary: \"a\" is the stable one too",
            ),
            (
                "- {project: m, type: ISTIO_VSVC, weight: 1, canary: m..x}\n",
                "p.yaml: entry 1 (m): canary: \"m..x\" is not a service host",
            ),
            (
                "- {project: m, type: ISTIO_VSVC, weight: 1, httpRoute: m}\n",
                "p.yaml: entry 1 (m): httpRoute: does not apply to type ISTIO_VSVC (it takes virtualService, stable, canary)",
            ),
            (
                "- {project: m, type: HTTPROUTE, weight: 1, virtualService: m}\n",
                "p.yaml: entry 1 (m): virtualService: does not apply to type HTTPROUTE (it takes httpRoute, stable, canary)",
            ),
            // A backendRef names a Service, never a host.
            (
                "- {project: m, type: HTTPROUTE, weight: 1, canary: m-v2.prod.svc.cluster.local}\n",
                "p.yaml: entry 1 (m): canary: \"m-v2.prod.svc.cluster.local\" is not a Kubernetes name",
            ),
            (
                "- {project: m, type: HTTPROUTE, weight: 1, httpRoute: Routes}\n",
                "p.yaml: entry 1 (m): httpRoute: \"Routes\" is not a Kubernetes name",
            ),
            (
                "- {project: m, type: HTTPROUTE, weight: 100.5}\n",
                "p.yaml: entry 1 (m): weight 100.5: must be an integer percent from 0 to 100",
            ),
            (
                "- {project: m, type: HTTP_ROUTE, weight: 1}\n",
                "p.yaml: entry 1 (m): unknown variant `HTTP_ROUTE`, expected one of `STICKY`, `INGRESS_NGINX`, `ISTIO_VSVC`, `HTTPROUTE`",
            ),
        ];
        for (text, expected) in cases {
            let message = parse(text, "p.yaml").expect_err(text).to_string();
            assert!(message.starts_with(expected), "{text:?}: {message}");
        }
        // The entry's number counts from 1 in file order, past valid entries.
        let second = format!("{ok}- {{project: web, type: ISTIO_VSVC, weight: 1000}}\n");
        let message = parse(&second, "p.yaml").expect_err("weight").to_string();
        assert!(
            message.starts_with("p.yaml: entry 2 (web): weight 1000: "),
            "{message}"
        );
        let twice = format!("{ok}{ok}");
        let message = parse(&twice, "p.yaml").expect_err("twice").to_string();
        assert_eq!(
            message,
            "p.yaml: entry 2 (server): project \"server\" of type STICKY is already entry 1 (server)"
        );
        assert_eq!(
            parse(&twice, "p.yaml").map(drop).unwrap_err().exit_code(),
            runtime::error::EXIT_INVALID
        );
    }
}
