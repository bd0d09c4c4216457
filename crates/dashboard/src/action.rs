//! What a button asks for, pure: the request the page posts, turned into the rollout command
//! the CLI would run, and who may ask.

use serde::Deserialize;
use subtle::ConstantTimeEq;
use url::Url;

use rollout::offer::Action;
use rollout::Command;

/// The body of `POST /api/actions`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ActionRequest {
    /// The rollout's id as the page shows it (`namespace/name`, or the name).
    pub rollout: String,
    /// An [`Action`]'s name: `start`, `next`, `pause`, `resume`, `auto-on`, `auto-off`,
    /// `set-weight`, `promote`, `promote-finish` or `abort`.
    pub action: String,
    /// The canary's percent, for `set-weight`.
    #[serde(default)]
    pub weight: Option<f64>,
    /// The canary's version name, for `start`.
    #[serde(default)]
    pub version: Option<String>,
    /// The rollout's generation the page showed.
    #[serde(default)]
    pub generation: Option<i64>,
}

/// The request and its command from the bytes of a `POST /api/actions` body, read as the
/// server reads it (JSON, then [`command`]); any bytes give one or the words of why not.
/// Pure, and public for the fuzz targets.
pub fn parse(body: &[u8]) -> Result<(ActionRequest, Command), String> {
    let request: ActionRequest =
        serde_json::from_slice(body).map_err(|err| format!("not an action: {err}"))?;
    let command = command(&request)?;
    Ok((request, command))
}

/// The command of `request`, or why there is none (naming the field).
pub fn command(request: &ActionRequest) -> Result<Command, String> {
    let Some(action) = Action::named(&request.action) else {
        let names: Vec<&str> = Action::ALL.iter().map(|a| a.name()).collect();
        return Err(format!(
            "unknown action {:?} ({})",
            request.action,
            names.join(", ")
        ));
    };
    action.command(request.version.as_deref(), request.weight)
}

/// The longest identity recorded from the identity header, in bytes.
pub const IDENTITY_MAX: usize = 256;

/// Who the history names for an action: the identity the reverse proxy in front passed in
/// the configured header (`value`, only read when a header is configured), as
/// `alice (dashboard)`, else `dashboard`. A value that is not one readable line (control
/// characters, more than [`IDENTITY_MAX`] bytes, not UTF-8) is refused rather than recorded.
pub fn requester(value: Option<&[u8]>) -> Result<String, String> {
    let Some(value) = value else {
        return Ok(ACTOR.to_owned());
    };
    let name = std::str::from_utf8(value)
        .ok()
        .map(str::trim)
        .filter(|name| name.len() <= IDENTITY_MAX && !name.chars().any(char::is_control))
        .ok_or("the identity header is not one readable line of at most 256 bytes")?;
    Ok(if name.is_empty() {
        ACTOR.to_owned()
    } else {
        format!("{name} ({ACTOR})")
    })
}

/// Who the history names for a dashboard action without an identity.
pub const ACTOR: &str = "dashboard";

/// Headers that carry secrets or what the dashboard checks itself: never an identity.
const NOT_IDENTITIES: [&str; 6] = [
    "authorization",
    "proxy-authorization",
    "cookie",
    "host",
    "origin",
    "content-type",
];

/// The configured identity header's name (`--identity-header`), lower-case, or why it
/// cannot be one: not a header name, or a header that carries a secret (which would then
/// be written into the history) or that the dashboard reads for itself.
pub fn identity_header(name: &str) -> Result<axum::http::HeaderName, String> {
    let header = axum::http::HeaderName::from_bytes(name.trim().as_bytes())
        .map_err(|_| format!("--identity-header {name:?}: not a header name"))?;
    if NOT_IDENTITIES.contains(&header.as_str()) {
        return Err(format!(
            "--identity-header {name:?}: a header the dashboard reads itself or that carries a secret, never an identity"
        ));
    }
    Ok(header)
}

/// Why an action is not let through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No token came with it (HTTP 401).
    NoToken,
    /// A token came, not the right one (HTTP 403).
    WrongToken,
}

impl Refusal {
    /// What the page shows.
    pub fn message(self) -> &'static str {
        match self {
            Refusal::NoToken => "this dashboard needs its token for actions: enter it above",
            Refusal::WrongToken => "wrong token: nothing was done",
        }
    }
}

/// Whether an action with `presented` (the request's bearer token) may go through when the
/// dashboard was started with `token`: without one, every action may (it listens on loopback
/// only, see [`needs_token`]); with one, only the same token.
pub fn authorize(token: Option<&str>, presented: Option<&str>) -> Result<(), Refusal> {
    match (token, presented) {
        (None, _) => Ok(()),
        (Some(_), None | Some("")) => Err(Refusal::NoToken),
        // Compared without stopping at the first difference, so timing tells nothing of the token.
        (Some(token), Some(presented))
            if bool::from(token.as_bytes().ct_eq(presented.as_bytes())) =>
        {
            Ok(())
        }
        (Some(_), Some(_)) => Err(Refusal::WrongToken),
    }
}

/// Whether listening on `address` needs a token: anything but loopback does.
pub fn needs_token(address: &std::net::SocketAddr) -> bool {
    !address.ip().is_loopback()
}

/// Whether a request naming `host` (its `Host` header) may be served by a dashboard
/// listening on `listen`: on loopback only under a loopback name (`127.0.0.1`, `[::1]`,
/// `localhost`), so a web page whose own name was made to resolve to 127.0.0.1 (DNS
/// rebinding) cannot read or steer it; elsewhere any (the token guards the actions).
pub fn host_allowed(listen: &std::net::SocketAddr, host: Option<&str>) -> bool {
    if !listen.ip().is_loopback() {
        return true;
    }
    let Some(host) = host else {
        return false;
    };
    let name = match host.rsplit_once(':') {
        Some((name, port)) if !name.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    };
    matches!(name, "localhost" | "127.0.0.1" | "[::1]")
}

/// Whether an action from a page of `origin` (its `Origin` header) to `host` is from the
/// dashboard's own page: browsers send `Origin` with every POST, and a page elsewhere must
/// not steer a rollout with a person's token or from their machine. Both are compared as the
/// parsed origins they name (scheme, host, port), each required to be nothing more.
pub fn same_origin(origin: Option<&str>, host: Option<&str>) -> bool {
    let Some(origin) = origin else {
        return true;
    };
    let Some(origin) = Url::parse(origin)
        .ok()
        .filter(|url| matches!(url.scheme(), "http" | "https") && bare_origin(url))
    else {
        return false;
    };
    host.and_then(|host| Url::parse(&format!("{}://{host}", origin.scheme())).ok())
        .is_some_and(|served| bare_origin(&served) && served.origin() == origin.origin())
}

/// Whether `url` is an origin alone: no user, path, query or fragment.
fn bare_origin(url: &Url) -> bool {
    url.username().is_empty()
        && url.password().is_none()
        && url.path() == "/"
        && url.query().is_none()
        && url.fragment().is_none()
}

/// The token from an `Authorization: Bearer <token>` header value.
pub fn bearer(header: &str) -> Option<&str> {
    header.strip_prefix("Bearer ").map(str::trim)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rollout::Op;

    fn request(action: &str, weight: Option<f64>) -> ActionRequest {
        ActionRequest {
            rollout: "prod/shop".to_owned(),
            action: action.to_owned(),
            weight,
            version: None,
            generation: Some(3),
        }
    }

    #[test]
    fn every_button_is_a_cli_command() {
        let table: &[(&str, Option<f64>, Command)] = &[
            ("next", None, Command::Op(Op::Next)),
            ("pause", None, Command::Pause),
            ("resume", None, Command::Resume),
            ("auto-on", None, Command::Auto(true)),
            ("auto-off", None, Command::Auto(false)),
            ("promote", None, Command::Op(Op::Promote { finish: false })),
            (
                "promote-finish",
                None,
                Command::Op(Op::Promote { finish: true }),
            ),
            ("abort", None, Command::Op(Op::Abort)),
            ("set-weight", Some(12.5), Command::Op(Op::SetWeight(12.5))),
        ];
        for (action, weight, expected) in table {
            assert_eq!(
                command(&request(action, *weight)).as_ref(),
                Ok(expected),
                "{action}"
            );
        }
    }

    #[test]
    fn start_takes_the_version_name() {
        let start = ActionRequest {
            version: Some("v3".to_owned()),
            ..request("start", None)
        };
        assert_eq!(
            command(&start),
            Ok(Command::Op(Op::Start {
                canary: "v3".to_owned()
            }))
        );
        let missing = command(&request("start", None)).unwrap_err();
        assert!(missing.contains("`version`"), "{missing}");
    }

    #[test]
    fn the_history_names_the_proxys_person_else_the_dashboard() {
        let long = "a".repeat(IDENTITY_MAX + 1);
        // The header's bytes, and who the history names (`None`: refused).
        let table: [(Option<&[u8]>, Option<&str>); 7] = [
            (None, Some("dashboard")),
            (Some(b""), Some("dashboard")),
            (
                Some(b"  alice@example.com "),
                Some("alice@example.com (dashboard)"),
            ),
            (Some("Zoë".as_bytes()), Some("Zoë (dashboard)")),
            (Some(b"mallory\nreal: next 10"), None),
            (Some(b"\xff\xfe"), None),
            (Some(long.as_bytes()), None),
        ];
        for (value, expected) in table {
            assert_eq!(requester(value).ok().as_deref(), expected, "{value:?}");
        }
        assert!(requester(Some(b"eve\x07")).is_err());
        assert!(requester(Some("eve\u{85}x".as_bytes())).is_err());
    }

    #[test]
    fn an_identity_header_never_carries_a_secret() {
        assert_eq!(
            identity_header(" X-Forwarded-User ").map(|h| h.to_string()),
            Ok("x-forwarded-user".to_owned())
        );
        for refused in ["authorization", "Cookie", "proxy-authorization", "a b", ""] {
            assert!(identity_header(refused).is_err(), "{refused}");
        }
    }

    #[test]
    fn bad_requests_say_what_is_missing() {
        let missing = command(&request("set-weight", None)).unwrap_err();
        assert!(missing.contains("`weight`"), "{missing}");
        let unknown = command(&request("rollback", None)).unwrap_err();
        assert!(
            unknown.contains("\"rollback\"") && unknown.contains("next"),
            "{unknown}"
        );
    }

    #[test]
    fn the_token_guards_every_action_once_given() {
        let table = [
            (None, None, Ok(())),
            (None, Some("x"), Ok(())),
            (Some("s3cret"), None, Err(Refusal::NoToken)),
            (Some("s3cret"), Some(""), Err(Refusal::NoToken)),
            (Some("s3cret"), Some("s3cre"), Err(Refusal::WrongToken)),
            (Some("s3cret"), Some("s3creT"), Err(Refusal::WrongToken)),
            (Some("s3cret"), Some("s3cret"), Ok(())),
        ];
        for (token, presented, expected) in table {
            assert_eq!(
                authorize(token, presented),
                expected,
                "{token:?} {presented:?}"
            );
        }
    }

    #[test]
    fn only_loopback_goes_without_a_token() {
        for (address, needs) in [
            ("127.0.0.1:8080", false),
            ("[::1]:8080", false),
            ("0.0.0.0:8080", true),
            ("10.1.2.3:80", true),
            ("[::]:8080", true),
        ] {
            assert_eq!(needs_token(&address.parse().unwrap()), needs, "{address}");
        }
    }

    #[test]
    fn on_loopback_only_loopback_names_are_served() {
        let loopback: std::net::SocketAddr = "127.0.0.1:8080".parse().unwrap();
        let exposed: std::net::SocketAddr = "0.0.0.0:8080".parse().unwrap();
        for (host, allowed) in [
            (Some("127.0.0.1:8080"), true),
            (Some("localhost:8080"), true),
            (Some("localhost"), true),
            (Some("[::1]:8080"), true),
            (Some("evil.example:8080"), false),
            (Some("127.0.0.1.evil.example"), false),
            (None, false),
        ] {
            assert_eq!(host_allowed(&loopback, host), allowed, "{host:?}");
        }
        assert!(host_allowed(&exposed, Some("dash.example.com")));
    }

    #[test]
    fn actions_come_from_the_dashboards_own_page() {
        let host = Some("127.0.0.1:8080");
        assert!(same_origin(None, host));
        assert!(same_origin(Some("http://127.0.0.1:8080"), host));
        assert!(same_origin(Some("https://127.0.0.1:8080"), host));
        assert!(!same_origin(Some("http://evil.example"), host));
        assert!(!same_origin(Some("null"), host));
        assert!(!same_origin(Some("http://127.0.0.1:8080"), None));
    }

    #[test]
    fn bearer_tokens_are_read_from_the_header() {
        assert_eq!(bearer("Bearer abc"), Some("abc"));
        assert_eq!(bearer("Basic abc"), None);
    }

    /// Hostile bodies are refused with words or become a command the transition refuses
    /// or applies; none panics (the release build aborts on a panic).
    #[test]
    fn hostile_actions_never_panic() {
        use api::{StickyCanarySpec, StickyCanaryStatus};
        use sticky_canary_filter::VersionWeight;
        let long = "x".repeat(5000);
        let bodies = [
            String::new(),
            "{".to_owned(),
            "[".repeat(10_000),
            "null".to_owned(),
            r#"{"rollout":1,"action":"next"}"#.to_owned(),
            r#"{"rollout":"a","action":"set-weight","weight":1e308}"#.to_owned(),
            r#"{"rollout":"a","action":"set-weight","weight":-1e308}"#.to_owned(),
            r#"{"rollout":"a","action":"set-weight","weight":1e999}"#.to_owned(),
            r#"{"rollout":"a","action":"set-weight","weight":-0.0}"#.to_owned(),
            r#"{"rollout":"a","action":"set-weight","weight":5e-324}"#.to_owned(),
            r#"{"rollout":"a","action":"set-weight","weight":99.99999999}"#.to_owned(),
            r#"{"rollout":"a","action":"set-weight","weight":"10"}"#.to_owned(),
            r#"{"rollout":"a","action":"next","generation":9223372036854775808}"#.to_owned(),
            r#"{"rollout":"a","action":"next","generation":-9223372036854775808}"#.to_owned(),
            format!(
                r#"{{"rollout":"{long}\u202e</script>","action":"<img src=x onerror=alert(1)>"}}"#
            ),
            r#"{"rollout":"a","action":"abort","extra":{"deep":[[[[[]]]]]}}"#.to_owned(),
            r#"{"rollout":"a","action":"next\ud800"}"#.to_owned(),
        ];
        let mut spec = StickyCanarySpec::new("shop", "v1");
        spec.versions[0].weight = 90.0;
        spec.versions.push(VersionWeight::new("v2", 10.0));
        let now = jiff::Timestamp::from_second(1_800_000_000).unwrap();
        for body in &bodies {
            match parse(body.as_bytes()) {
                Err(why) => assert!(!why.is_empty(), "{body:.60}"),
                Ok((_, command)) => {
                    let input = rollout::Input::Command(command);
                    let _ = rollout::transition(&spec, &StickyCanaryStatus::default(), &input, now);
                }
            }
        }
        let (request, command) =
            parse(br#"{"rollout":"prod/shop","action":"set-weight","weight":20}"#).unwrap();
        assert_eq!(
            (request.rollout.as_str(), command),
            ("prod/shop", Command::Op(Op::SetWeight(20.0)))
        );
    }
}
