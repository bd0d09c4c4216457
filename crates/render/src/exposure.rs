//! Who can choose a rollout's version, in words for `status`: the QA override's access and
//! the warnings a person must see (a public override on a gateway, a token kept in clear, a
//! trust setting that has no effect).

use sticky_canary_filter::config::OverrideConfig;

use crate::placement::{self, Side};
use api::StickyCanarySpec;

/// Who may use the QA override.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Access {
    /// Nobody: the header is ignored (and removed before the upstream).
    Off,
    /// Whoever knows the token.
    Token,
    /// Anyone who knows the header name.
    Public,
}

impl Access {
    /// The access as `status -o json` and the history name it.
    pub fn as_str(self) -> &'static str {
        match self {
            Access::Off => "off",
            Access::Token => "token",
            Access::Public => "public",
        }
    }
}

/// The override's access under `override_`.
pub fn access(override_: &OverrideConfig) -> Access {
    match (override_.public, &override_.token, &override_.token_digest) {
        (true, ..) => Access::Public,
        (false, None, None) => Access::Off,
        _ => Access::Token,
    }
}

/// How QA forces a version of rollout `spec`, for `status`.
pub fn override_line(spec: &StickyCanarySpec) -> String {
    let header = &spec.filter.override_.header;
    match access(&spec.filter.override_) {
        Access::Off => {
            format!("off ({header} is ignored; `stickyctl override token` creates a token)")
        }
        Access::Token => format!("token ({header}: <version>:<token>)"),
        Access::Public => format!("public ({header}: <version>, no token)"),
    }
}

/// How QA reaches the canary (`canary`, or `<version>` without one) of rollout `spec`, for
/// the dashboard: the header in the form the filter honours, never the token itself.
pub fn qa_line(spec: &StickyCanarySpec, canary: Option<&str>) -> String {
    let header = &spec.filter.override_.header;
    let version = canary.unwrap_or("<version>");
    match access(&spec.filter.override_) {
        Access::Off => "QA override off (`stickyctl override token` creates a token)".to_owned(),
        Access::Token => format!("QA: {header}: {version}:<token>"),
        Access::Public => format!("QA: {header}: {version} (public: anyone who sends it)"),
    }
}

/// What a person must know about who can choose a version of rollout `spec` of `namespace`.
pub fn warnings(namespace: &str, spec: &StickyCanarySpec) -> Vec<String> {
    let placements = placement::placements(namespace, spec);
    let on_gateway = placements.iter().any(|p| p.side != Side::Sidecar);
    let on_sidecars = placements.iter().any(|p| p.side == Side::Sidecar);
    let override_ = &spec.filter.override_;
    let mut out = Vec::new();
    if override_.public && on_gateway {
        out.push(format!(
            "the QA override is public on a gateway: anyone who sends {}: <version> reaches any version, a canary at 0% included (`stickyctl override token` guards it)",
            override_.header
        ));
    }
    if override_.token.is_some() {
        out.push(
            "spec.filter.override.token holds the token in clear, readable by whoever reads the rollout (the proxies get only its digest): `stickyctl override token --token ...` keeps only the digest".to_owned(),
        );
    }
    if spec.filter.trust_incoming_header && !on_sidecars {
        out.push(
            "spec.filter.trustIncomingHeader has no effect: only sidecars trust an incoming version header, and this rollout runs on gateways only".to_owned(),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use api::Proxies;
    use sticky_canary_filter::config::TokenDigest;

    fn spec() -> StickyCanarySpec {
        StickyCanarySpec::new("shop", "v1")
    }

    #[test]
    fn access_table() {
        let mut s = spec();
        assert_eq!(access(&s.filter.override_), Access::Off);
        s.filter.override_.token_digest = Some(TokenDigest::of("t", &[1; 16]));
        assert_eq!(access(&s.filter.override_), Access::Token);
        s.filter.override_.token_digest = None;
        s.filter.override_.token = Some("t".into());
        assert_eq!(access(&s.filter.override_), Access::Token);
        s.filter.override_.token = None;
        s.filter.override_.public = true;
        assert_eq!(access(&s.filter.override_), Access::Public);
        assert!(override_line(&s).starts_with("public"));
        for access in [Access::Off, Access::Token, Access::Public] {
            assert_eq!(serde_json::to_value(access).unwrap(), access.as_str());
        }
        assert_eq!(
            qa_line(&s, Some("v2")),
            "QA: x-sticky-override: v2 (public: anyone who sends it)"
        );
        s.filter.override_.public = false;
        s.filter.override_.token = Some("t".into());
        assert_eq!(qa_line(&s, Some("v2")), "QA: x-sticky-override: v2:<token>");
        assert!(!qa_line(&s, None).contains(":t"), "never the token");
    }

    #[test]
    fn warnings_table() {
        let none: Vec<String> = Vec::new();
        assert_eq!(warnings("prod", &spec()), none, "the defaults are safe");
        let mut public = spec();
        public.filter.override_.public = true;
        assert!(warnings("prod", &public)[0].contains("public on a gateway"));
        public.plugin.gateways = Some(Vec::new());
        public.plugin.sidecars = vec![Proxies::default()];
        assert_eq!(warnings("prod", &public), none, "sidecars only: the mesh's");
        let mut clear = spec();
        clear.filter.override_.token = Some("t".into());
        assert!(warnings("prod", &clear)[0].contains("in clear"));
        let mut trusting = spec();
        trusting.filter.trust_incoming_header = true;
        assert!(warnings("prod", &trusting)[0].contains("no effect"));
        trusting.plugin.sidecars = vec![Proxies::default()];
        assert_eq!(warnings("prod", &trusting), none);
    }
}
