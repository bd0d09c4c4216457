//! Label and field selectors of LIST and WATCH requests (`?labelSelector=app=web,tier!=db`).
//! Pure parsing and matching, table-tested.

use serde_json::Value;

use super::api_error::ApiError;

/// One requirement of a label selector.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Requirement {
    Equals(String, String),
    NotEquals(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
}

/// A parsed label selector plus field selector; the empty selector matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selector {
    labels: Vec<Requirement>,
    /// `(field path, value, equal?)`, only `metadata.name` and `metadata.namespace` as for CRs.
    fields: Vec<(String, String, bool)>,
}

/// Splits on commas that are not inside `in (a,b)` parentheses.
fn split_top_level(text: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts
        .into_iter()
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect()
}

fn parse_set(text: &str) -> Option<Vec<String>> {
    let inner = text.trim().strip_prefix('(')?.strip_suffix(')')?;
    Some(inner.split(',').map(|v| v.trim().to_owned()).collect())
}

fn parse_requirement(part: &str) -> Option<Requirement> {
    if let Some(key) = part.strip_prefix('!') {
        return Some(Requirement::NotExists(key.trim().to_owned()));
    }
    if let Some((key, value)) = part.split_once("!=") {
        return Some(Requirement::NotEquals(
            key.trim().to_owned(),
            value.trim().to_owned(),
        ));
    }
    if let Some((key, value)) = part.split_once("==").or_else(|| part.split_once('=')) {
        return Some(Requirement::Equals(
            key.trim().to_owned(),
            value.trim().to_owned(),
        ));
    }
    if let Some((key, set)) = part.split_once(" notin ") {
        return Some(Requirement::NotIn(key.trim().to_owned(), parse_set(set)?));
    }
    if let Some((key, set)) = part.split_once(" in ") {
        return Some(Requirement::In(key.trim().to_owned(), parse_set(set)?));
    }
    (!part.contains(char::is_whitespace)).then(|| Requirement::Exists(part.to_owned()))
}

impl Selector {
    /// Parses the `labelSelector` and `fieldSelector` query values; 400 on syntax errors.
    pub fn parse(
        label_selector: Option<&str>,
        field_selector: Option<&str>,
    ) -> Result<Self, ApiError> {
        let mut selector = Self::default();
        for part in split_top_level(label_selector.unwrap_or_default()) {
            let requirement = parse_requirement(part).ok_or_else(|| {
                ApiError::bad_request(format!(
                    "unable to parse labelSelector requirement {part:?}"
                ))
            })?;
            selector.labels.push(requirement);
        }
        for part in split_top_level(field_selector.unwrap_or_default()) {
            let (field, value, equal) = match part.split_once("!=") {
                Some((f, v)) => (f, v, false),
                None => match part.split_once("==").or_else(|| part.split_once('=')) {
                    Some((f, v)) => (f, v, true),
                    None => {
                        return Err(ApiError::bad_request(format!(
                            "invalid fieldSelector {part:?}"
                        )))
                    }
                },
            };
            if !matches!(field, "metadata.name" | "metadata.namespace") {
                return Err(ApiError::bad_request(format!(
                    "field label not supported: {field} (custom resources support metadata.name and metadata.namespace)"
                )));
            }
            selector
                .fields
                .push((field.to_owned(), value.to_owned(), equal));
        }
        Ok(selector)
    }

    /// True when `object` satisfies every requirement.
    pub fn matches(&self, object: &Value) -> bool {
        let meta = &object["metadata"];
        let label = |key: &str| meta["labels"].get(key).and_then(Value::as_str);
        let labels_ok = self.labels.iter().all(|r| match r {
            Requirement::Equals(k, v) => label(k) == Some(v.as_str()),
            Requirement::NotEquals(k, v) => label(k) != Some(v.as_str()),
            Requirement::In(k, set) => label(k).is_some_and(|l| set.iter().any(|v| v == l)),
            Requirement::NotIn(k, set) => !label(k).is_some_and(|l| set.iter().any(|v| v == l)),
            Requirement::Exists(k) => label(k).is_some(),
            Requirement::NotExists(k) => label(k).is_none(),
        });
        let fields_ok = self.fields.iter().all(|(field, value, equal)| {
            let key = field.trim_start_matches("metadata.");
            let actual = meta.get(key).and_then(Value::as_str).unwrap_or_default();
            (actual == value) == *equal
        });
        labels_ok && fields_ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn selector_table() {
        let object = json!({"metadata": {"name": "web", "namespace": "prod", "labels": {"app": "web", "tier": "front"}}});
        let cases = [
            (None, None, true),
            (Some("app=web"), None, true),
            (Some("app==web,tier=front"), None, true),
            (Some("app=api"), None, false),
            (Some("app!=api"), None, true),
            (Some("tier in (front, back)"), None, true),
            (Some("tier notin (front)"), None, false),
            (Some("app"), None, true),
            (Some("!app"), None, false),
            (Some("missing"), None, false),
            (None, Some("metadata.name=web"), true),
            (None, Some("metadata.name!=web"), false),
            (Some("app=web"), Some("metadata.namespace=dev"), false),
        ];
        for (labels, fields, expected) in cases {
            let selector = Selector::parse(labels, fields).unwrap();
            assert_eq!(selector.matches(&object), expected, "{labels:?} {fields:?}");
        }
        assert!(Selector::parse(None, Some("spec.hosts=a")).is_err());
        assert!(Selector::parse(Some("tier in front"), None).is_err());
    }
}
