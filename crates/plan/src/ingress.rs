//! `INGRESS_NGINX`: the canary Ingress's `canary-weight`, read and checked the way the NGINX
//! Ingress Controller reads it; only the canary Ingress is written.
//!
//! ingress-nginx routes a share of an Ingress's traffic to a second Ingress for the same host
//! and path when that one is annotated `nginx.ingress.kubernetes.io/canary: "true"` (a Go
//! boolean: `true`, `1`, `t`, ...); the share is `canary-weight` out of `canary-weight-total`
//! (integers; the total defaults to 100). The plan's weight is a percent, so it is written as
//! `weight × total / 100`, which must be a whole number.

use serde_json::{json, Value};

use super::naming::Names;
use super::{FieldChange, Object, ObjectKind, Refusal, Write};

/// The annotation that makes an Ingress a canary.
pub const CANARY: &str = "nginx.ingress.kubernetes.io/canary";
/// The canary's share, out of [`WEIGHT_TOTAL`].
pub const WEIGHT: &str = "nginx.ingress.kubernetes.io/canary-weight";
/// What [`WEIGHT`] counts out of; 100 when absent.
pub const WEIGHT_TOTAL: &str = "nginx.ingress.kubernetes.io/canary-weight-total";

/// Where an entry's canary Ingress stands.
#[derive(Debug, Clone, PartialEq)]
pub struct Standing {
    /// `canary-weight` as written (`None` when absent), and its value as ingress-nginx reads it
    /// (0 when absent or not an integer).
    pub written: Option<String>,
    /// `canary-weight-total`.
    pub total: i64,
    /// The share of requests the canary gets, in percent.
    pub share: f64,
}

/// An annotation of an object.
fn annotation<'a>(object: &'a Value, key: &str) -> Option<&'a str> {
    object["metadata"]["annotations"][key].as_str()
}

/// Go's `strconv.ParseBool`, which ingress-nginx reads boolean annotations with.
fn go_bool(text: &str) -> Option<bool> {
    match text {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// Go's `strconv.Atoi` (an optional sign, then decimal digits), which ingress-nginx reads
/// integer annotations with.
fn go_int(text: &str) -> Option<i64> {
    let digits = text.strip_prefix(['+', '-']).unwrap_or(text);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// The canary Ingress's weight total, or why ingress-nginx could not use it.
fn weight_total(canary: &Value, label: &str) -> Result<i64, Refusal> {
    match annotation(canary, WEIGHT_TOTAL) {
        None => Ok(100),
        Some(text) => match go_int(text) {
            Some(total) if total > 0 => Ok(total),
            _ => Err(Refusal::new(
                "canary",
                format!("{label}: annotation {WEIGHT_TOTAL} {text:?} is not a positive integer"),
            )),
        },
    }
}

/// Checks that `canary` (the object named `names.canary`, if it exists) is a canary Ingress
/// beside an existing, non-canary `stable` one; its weight total.
fn check(
    names: &Names,
    stable: Option<&Value>,
    canary: Option<&Value>,
) -> Result<(Value, i64), Refusal> {
    let stable_label = Object::new(ObjectKind::Ingress, &names.namespace, &names.stable).label();
    let canary_label = Object::new(ObjectKind::Ingress, &names.namespace, &names.canary).label();
    let stable = stable.ok_or_else(|| {
        Refusal::new(
            "stable",
            format!("{stable_label} does not exist: ingress-nginx sends a canary's share only beside the stable Ingress of the same host and path"),
        )
    })?;
    if annotation(stable, CANARY).and_then(go_bool) == Some(true) {
        return Err(Refusal::new(
            "stable",
            format!(
                "{stable_label} is a canary Ingress itself ({CANARY} is {:?})",
                annotation(stable, CANARY).unwrap_or_default()
            ),
        ));
    }
    let canary = canary.ok_or_else(|| {
        Refusal::new(
            "canary",
            format!("{canary_label} does not exist: deploy the canary release's Ingress (annotated {CANARY}: \"true\") first"),
        )
    })?;
    match annotation(canary, CANARY) {
        Some(text) if go_bool(text) == Some(true) => {}
        Some(text) => {
            return Err(Refusal::new(
                "canary",
                format!("{canary_label} is not a canary Ingress: {CANARY} is {text:?}, not true"),
            ))
        }
        None => {
            return Err(Refusal::new(
                "canary",
                format!("{canary_label} is not a canary Ingress: it has no annotation {CANARY}"),
            ))
        }
    }
    let total = weight_total(canary, &canary_label)?;
    Ok((canary.clone(), total))
}

/// Where the canary stands (for `plan status`), or why it is not a canary beside its stable.
pub fn standing(
    names: &Names,
    stable: Option<&Value>,
    canary: Option<&Value>,
) -> Result<Standing, Refusal> {
    let (canary, total) = check(names, stable, canary)?;
    let written = annotation(&canary, WEIGHT).map(str::to_owned);
    let read = written.as_deref().and_then(go_int).unwrap_or(0);
    let share = (read.clamp(0, total) as f64) * 100.0 / total as f64;
    Ok(Standing {
        written,
        total,
        share,
    })
}

/// The write that gives the canary `percent` of the requests; `None` when it has them.
pub fn edit(
    names: &Names,
    stable: Option<&Value>,
    canary: Option<&Value>,
    percent: i64,
) -> Result<Option<Write>, Refusal> {
    let (mut canary, total) = check(names, stable, canary)?;
    let scaled = percent * total;
    if scaled % 100 != 0 {
        return Err(Refusal::new(
            "weight",
            format!(
                "{percent}% of {WEIGHT_TOTAL} {total} is not a whole number; use a weight that is"
            ),
        ));
    }
    let wanted = scaled / 100;
    let written = annotation(&canary, WEIGHT).map(str::to_owned);
    // The same number as ingress-nginx reads it ("010" is 10) needs no write.
    if written.as_deref().and_then(go_int) == Some(wanted) {
        return Ok(None);
    }
    let wanted = wanted.to_string();
    canary["metadata"]["annotations"][WEIGHT] = json!(wanted);
    if let Some(map) = canary["metadata"].as_object_mut() {
        map.remove("managedFields");
    }
    Ok(Some(Write {
        object: Object::new(ObjectKind::Ingress, &names.namespace, &names.canary),
        desired: canary,
        changes: vec![FieldChange::new(
            format!("annotations[{WEIGHT}]"),
            written.unwrap_or_else(|| "-".into()),
            wanted,
        )],
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> Names {
        Names {
            namespace: "prod".into(),
            rollout: "web".into(),
            virtual_service: "web".into(),
            http_route: "web".into(),
            stable: "web".into(),
            canary: "web-canary".into(),
        }
    }

    fn ingress(name: &str, annotations: Value) -> Value {
        json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
               "metadata": {"name": name, "namespace": "prod", "resourceVersion": "7",
                            "annotations": annotations},
               "spec": {"rules": [{"host": "web.example.com"}]}})
    }

    #[test]
    fn the_canary_weight_is_written_scaled_to_the_total_and_only_when_it_differs() {
        let stable = ingress("web", json!({}));
        // (annotations of the canary, percent, the canary-weight written or None for no write)
        let cases: &[(Value, i64, Option<&str>)] = &[
            (json!({CANARY: "true"}), 10, Some("10")),
            (json!({CANARY: "true", WEIGHT: "0"}), 10, Some("10")),
            (json!({CANARY: "true", WEIGHT: "10"}), 10, None),
            (json!({CANARY: "true", WEIGHT: "10"}), 0, Some("0")),
            (json!({CANARY: "true", WEIGHT: "0"}), 0, None),
            (json!({CANARY: "true", WEIGHT: "100"}), 100, None),
            (json!({CANARY: "1", WEIGHT: "5"}), 20, Some("20")),
            (json!({CANARY: "True"}), 30, Some("30")),
            (
                json!({CANARY: "true", WEIGHT_TOTAL: "1000"}),
                10,
                Some("100"),
            ),
            (
                json!({CANARY: "true", WEIGHT_TOTAL: "1000", WEIGHT: "100"}),
                10,
                None,
            ),
            (json!({CANARY: "true", WEIGHT_TOTAL: "50"}), 10, Some("5")),
            // "010" is 10 to ingress-nginx: nothing to write.
            (json!({CANARY: "true", WEIGHT: "010"}), 10, None),
            (json!({CANARY: "true", WEIGHT: "ten"}), 10, Some("10")),
        ];
        for (annotations, percent, expected) in cases {
            let canary = ingress("web-canary", annotations.clone());
            let write = edit(&names(), Some(&stable), Some(&canary), *percent)
                .unwrap_or_else(|r| panic!("{annotations} {percent}: {r}"));
            match (write, expected) {
                (None, None) => {}
                (Some(write), Some(weight)) => {
                    assert_eq!(write.object.label(), "Ingress prod/web-canary");
                    let got = &write.desired["metadata"]["annotations"];
                    assert_eq!(got[WEIGHT], *weight, "{annotations} {percent}");
                    // Nothing else of the Ingress changes, and the read's resourceVersion stays.
                    let mut rest = write.desired.clone();
                    rest["metadata"]["annotations"]
                        .as_object_mut()
                        .unwrap()
                        .remove(WEIGHT);
                    let mut before = canary.clone();
                    before["metadata"]["annotations"]
                        .as_object_mut()
                        .unwrap()
                        .remove(WEIGHT);
                    assert_eq!(rest, before);
                    assert_eq!(write.changes.len(), 1);
                    assert_eq!(write.changes[0].to, *weight);
                }
                (got, expected) => {
                    panic!("{annotations} {percent}: {got:?}, expected {expected:?}")
                }
            }
        }
    }

    #[test]
    fn what_is_not_a_canary_beside_its_stable_is_refused_by_name() {
        let plain = ingress("web", json!({}));
        let canary = ingress("web-canary", json!({CANARY: "true"}));
        // (stable, canary, percent, the refused field, the message's start)
        type Case = (
            Option<Value>,
            Option<Value>,
            i64,
            &'static str,
            &'static str,
        );
        let cases: &[Case] = &[
            (None, Some(canary.clone()), 10, "stable", "Ingress prod/web does not exist"),
            (
                Some(ingress("web", json!({CANARY: "t"}))),
                Some(canary.clone()),
                10,
                "stable",
                "Ingress prod/web is a canary Ingress itself",
            ),
            (Some(plain.clone()), None, 10, "canary", "Ingress prod/web-canary does not exist"),
            (
                Some(plain.clone()),
                Some(ingress("web-canary", json!({}))),
                10,
                "canary",
                "Ingress prod/web-canary is not a canary Ingress: it has no annotation nginx.ingress.kubernetes.io/canary",
            ),
            (
                Some(plain.clone()),
                Some(ingress("web-canary", json!({CANARY: "false"}))),
                10,
                "canary",
                "Ingress prod/web-canary is not a canary Ingress: nginx.ingress.kubernetes.io/canary is \"false\"",
            ),
            (
                Some(plain.clone()),
                Some(ingress("web-canary", json!({CANARY: "yes"}))),
                10,
                "canary",
                "Ingress prod/web-canary is not a canary Ingress: nginx.ingress.kubernetes.io/canary is \"yes\"",
            ),
            (
                Some(plain.clone()),
                Some(ingress("web-canary", json!({CANARY: "true", WEIGHT_TOTAL: "0"}))),
                10,
                "canary",
                "Ingress prod/web-canary: annotation nginx.ingress.kubernetes.io/canary-weight-total \"0\" is not a positive integer",
            ),
            (
                Some(plain.clone()),
                Some(ingress("web-canary", json!({CANARY: "true", WEIGHT_TOTAL: "1e3"}))),
                10,
                "canary",
                "Ingress prod/web-canary: annotation nginx.ingress.kubernetes.io/canary-weight-total \"1e3\"",
            ),
            (
                Some(plain.clone()),
                Some(ingress("web-canary", json!({CANARY: "true", WEIGHT_TOTAL: "30"}))),
                25,
                "weight",
                "25% of nginx.ingress.kubernetes.io/canary-weight-total 30 is not a whole number",
            ),
        ];
        for (stable, canary, percent, field, message) in cases {
            let refusal =
                edit(&names(), stable.as_ref(), canary.as_ref(), *percent).expect_err(message);
            assert_eq!(refusal.field, *field, "{refusal}");
            assert!(refusal.message.starts_with(message), "{refusal}");
            if *field != "weight" {
                assert_eq!(
                    standing(&names(), stable.as_ref(), canary.as_ref()).unwrap_err(),
                    refusal
                );
            }
        }
    }

    #[test]
    fn the_standing_is_the_share_ingress_nginx_routes() {
        let stable = ingress("web", json!({}));
        let cases: &[(Value, Option<&str>, i64, f64)] = &[
            (json!({CANARY: "true"}), None, 100, 0.0),
            (json!({CANARY: "true", WEIGHT: "25"}), Some("25"), 100, 25.0),
            (
                json!({CANARY: "true", WEIGHT: "25", WEIGHT_TOTAL: "50"}),
                Some("25"),
                50,
                50.0,
            ),
            (json!({CANARY: "true", WEIGHT: "x"}), Some("x"), 100, 0.0),
            (
                json!({CANARY: "true", WEIGHT: "250"}),
                Some("250"),
                100,
                100.0,
            ),
        ];
        for (annotations, written, total, share) in cases {
            let canary = ingress("web-canary", annotations.clone());
            let got = standing(&names(), Some(&stable), Some(&canary)).expect("a canary");
            assert_eq!(
                got,
                Standing {
                    written: written.map(str::to_owned),
                    total: *total,
                    share: *share
                },
                "{annotations}"
            );
        }
    }

    #[test]
    fn go_parsers_accept_what_go_accepts() {
        for (text, value) in [
            ("1", Some(true)),
            ("TRUE", Some(true)),
            ("F", Some(false)),
            ("yes", None),
            ("", None),
        ] {
            assert_eq!(go_bool(text), value, "{text:?}");
        }
        for (text, value) in [
            ("10", Some(10)),
            ("+7", Some(7)),
            ("-3", Some(-3)),
            ("007", Some(7)),
            (" 1", None),
            ("1.0", None),
            ("", None),
            ("+", None),
        ] {
            assert_eq!(go_int(text), value, "{text:?}");
        }
    }
}
