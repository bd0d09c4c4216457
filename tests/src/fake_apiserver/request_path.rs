//! Parses an API URL path into what it addresses. Pure, so the routing rules are table-tested.

/// What a request URL points at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourcePath {
    /// API group; empty for the core group (`/api/v1`).
    pub group: String,
    /// API version of the request, e.g. `v1`.
    pub version: String,
    /// `None` for a list across all namespaces.
    pub namespace: Option<String>,
    /// Plural resource name, e.g. `virtualservices`.
    pub plural: String,
    /// Object name for single-object requests.
    pub name: Option<String>,
    /// `Some("status")` for the status subresource.
    pub subresource: Option<String>,
}

impl ResourcePath {
    /// `group/version`, or just `version` for the core group.
    pub fn api_version(&self) -> String {
        api_version(&self.group, &self.version)
    }
}

/// An object's `apiVersion`: `group/version`, or just `version` for the core group.
pub fn api_version(group: &str, version: &str) -> String {
    if group.is_empty() {
        version.to_owned()
    } else {
        format!("{group}/{version}")
    }
}

/// Parses `/apis/{group}/{version}[/namespaces/{ns}]/{plural}[/{name}[/{sub}]]` and the core-group
/// form `/api/{version}/...`. Returns `None` for anything else (discovery, health, ...).
pub fn parse(path: &str) -> Option<ResourcePath> {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, rest) = match segments.as_slice() {
        ["apis", group, rest @ ..] => (group.to_string(), rest),
        ["api", rest @ ..] => (String::new(), rest),
        _ => return None,
    };
    let (version, rest) = rest.split_first()?;
    let (namespace, rest) = match rest {
        ["namespaces", ns, rest @ ..] if !rest.is_empty() => (Some(ns.to_string()), rest),
        _ => (None, rest),
    };
    let (plural, name, subresource) = match (namespace.is_some(), rest) {
        (_, [plural]) => (plural, None, None),
        (true, [plural, name]) => (plural, Some(name), None),
        (true, [plural, name, sub]) => (plural, Some(name), Some(sub)),
        _ => return None,
    };
    let owned = |s: &&str| s.to_string();
    Some(ResourcePath {
        group,
        version: version.to_string(),
        namespace,
        plural: plural.to_string(),
        name: name.map(owned),
        subresource: subresource.map(owned),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        let p = |g: &str, v: &str, ns: Option<&str>, pl: &str, n: Option<&str>, s: Option<&str>| {
            Some(ResourcePath {
                group: g.into(),
                version: v.into(),
                namespace: ns.map(Into::into),
                plural: pl.into(),
                name: n.map(Into::into),
                subresource: s.map(Into::into),
            })
        };
        let vs = "networking.istio.io";
        let cases = [
            (
                "/apis/networking.istio.io/v1/virtualservices",
                p(vs, "v1", None, "virtualservices", None, None),
            ),
            (
                "/apis/networking.istio.io/v1/namespaces/prod/virtualservices",
                p(vs, "v1", Some("prod"), "virtualservices", None, None),
            ),
            (
                "/apis/networking.istio.io/v1/namespaces/prod/virtualservices/web",
                p(vs, "v1", Some("prod"), "virtualservices", Some("web"), None),
            ),
            (
                "/apis/networking.istio.io/v1/namespaces/prod/virtualservices/web/status",
                p(
                    vs,
                    "v1",
                    Some("prod"),
                    "virtualservices",
                    Some("web"),
                    Some("status"),
                ),
            ),
            (
                "/api/v1/namespaces/prod/services/web",
                p("", "v1", Some("prod"), "services", Some("web"), None),
            ),
            ("/apis/networking.istio.io/v1", None),
            ("/apis", None),
            ("/version", None),
            ("/apis/g/v1/namespaces/prod/a/b/c/d", None),
        ];
        for (path, expected) in cases {
            assert_eq!(parse(path), expected, "{path}");
        }
    }
}
