//! Notifications of a rollout's steps, holds, rollbacks and promotions, posted to a webhook as
//! Slack-compatible JSON (`{"text": "..."}`; Slack, Mattermost and Teams' incoming webhooks
//! take it).
//!
//! Sending never holds a rollout up, and never fails a change already applied: the notices of
//! one transition are posted in order, each retried at most [`ATTEMPTS`] times with backoff,
//! then dropped with a warning in the log. A [`Notifier`] is the one policy of how long the
//! one acting waits for them: a command waits (bounded), a server does not.
//!
//! The URL is written by whoever may edit the rollout, and the controller posts from inside
//! the cluster, so it is a way to make the controller send requests (SSRF). [`check_url`]
//! takes `https` only (plain `http` to loopback, or with `spec.auto.allowHttpWebhook`) and
//! never a link-local or cloud metadata address; `client` checks every address a name
//! resolves to again when it connects, follows no redirect and gives up soon.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use kube::ResourceExt;
use serde_json::{json, Value};
use url::{Host, Url};

use api::{AutoSpec, StickyCanary};

/// Attempts per notice before it is dropped.
pub const ATTEMPTS: u32 = 5;
/// How long a command waits for the webhook to take its notices: past it, the command says
/// so and exits (its change is applied).
pub const COMMAND_PATIENCE: Duration = Duration::from_secs(15);
/// How long one attempt may take.
const TIMEOUT: Duration = Duration::from_secs(5);
/// How long connecting may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// The field the refusals name.
const FIELD: &str = "spec.auto.webhook";

/// Names of cloud metadata services (compared lowercase, without a trailing dot).
const METADATA_NAMES: [&str; 4] = [
    "metadata.google.internal",
    "metadata.goog",
    "instance-data",
    "instance-data.ec2.internal",
];

/// Cloud metadata addresses outside the link-local ranges (which are refused whole):
/// AWS's IPv6 one, Alibaba's, Azure's wire server.
const METADATA_ADDRESSES: [IpAddr; 3] = [
    IpAddr::V6(Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254)),
    IpAddr::V4(Ipv4Addr::new(100, 100, 100, 200)),
    IpAddr::V4(Ipv4Addr::new(168, 63, 129, 16)),
];

/// The rollout's webhook, checked: `None` without one, else the URL to post to or why
/// nothing is posted (the words name the field).
pub fn webhook(auto: &AutoSpec) -> Option<Result<Url, String>> {
    let url = auto.webhook.as_deref()?;
    Some(check_url(url, auto.allow_http_webhook))
}

/// Whether notices may be posted to `url` (pure): an `https` URL, or `http` to a loopback
/// host or when `allow_http`; never a link-local or cloud metadata address or name. Checked
/// on the parsed URL (so `http://2852039166/` is 169.254.169.254, as a browser reads it).
/// The host's addresses are checked again when a notice is sent (`client`).
pub fn check_url(url: &str, allow_http: bool) -> Result<Url, String> {
    let parsed = Url::parse(url).map_err(|err| format!("{FIELD}: not a URL ({err})"))?;
    let host = match parsed.host() {
        Some(host) => host,
        None => return Err(format!("{FIELD}: not an http(s) URL with a host")),
    };
    let loopback = match &host {
        Host::Domain(name) => {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            if METADATA_NAMES.contains(&name.as_str()) {
                return Err(format!("{FIELD}: {name} is a cloud metadata service"));
            }
            name == "localhost" || name.ends_with(".localhost")
        }
        Host::Ipv4(ip) => {
            check_ip(IpAddr::V4(*ip)).map_err(|why| format!("{FIELD}: {why}"))?;
            ip.is_loopback()
        }
        Host::Ipv6(ip) => {
            check_ip(IpAddr::V6(*ip)).map_err(|why| format!("{FIELD}: {why}"))?;
            ip.is_loopback()
        }
    };
    match parsed.scheme() {
        "https" => Ok(parsed),
        "http" if loopback || allow_http => Ok(parsed),
        "http" => Err(format!(
            "{FIELD}: plain http is taken to a loopback host only; use https, or allow it \
             explicitly (--allow-http-webhook, spec.auto.allowHttpWebhook)"
        )),
        other => Err(format!("{FIELD}: {other}: is not an http(s) URL")),
    }
}

/// Whether the controller may connect to `ip`: not link-local (169.254.0.0/16, fe80::/10),
/// not a cloud metadata address, a unicast address. IPv4 written as IPv6 (`::ffff:a.b.c.d`,
/// NAT64's `64:ff9b::a.b.c.d`) is judged as the IPv4 address it reaches.
pub fn check_ip(ip: IpAddr) -> Result<(), String> {
    let ip = match ip {
        IpAddr::V6(v6) => match (v6.to_ipv4_mapped(), v6.segments()) {
            (Some(v4), _) => IpAddr::V4(v4),
            (None, [0x64, 0xff9b, 0, 0, 0, 0, high, low]) => {
                let ([a, b], [c, d]) = (high.to_be_bytes(), low.to_be_bytes());
                IpAddr::V4(Ipv4Addr::new(a, b, c, d))
            }
            _ => ip,
        },
        IpAddr::V4(_) => ip,
    };
    if ip == IpAddr::V4(Ipv4Addr::new(169, 254, 169, 254)) || METADATA_ADDRESSES.contains(&ip) {
        return Err(format!("{ip} is a cloud metadata address"));
    }
    let (link_local, unicast) = match ip {
        IpAddr::V4(v4) => (
            v4.is_link_local(),
            !(v4.is_unspecified() || v4.is_multicast() || v4.is_broadcast()),
        ),
        IpAddr::V6(v6) => (
            v6.is_unicast_link_local(),
            !(v6.is_unspecified() || v6.is_multicast()),
        ),
    };
    if link_local {
        return Err(format!("{ip} is a link-local address"));
    }
    if !unicast {
        return Err(format!("{ip} is not a unicast address"));
    }
    Ok(())
}

/// Resolves names as the system does, then refuses the lot if any address is one
/// [`check_ip`] refuses: a name an attacker controls cannot lead to the metadata service.
#[derive(Debug, Clone, Copy)]
struct Guarded;

impl reqwest::dns::Resolve for Guarded {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addresses: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            for address in &addresses {
                check_ip(address.ip()).map_err(|why| format!("{host}: {why}"))?;
            }
            let addresses: reqwest::dns::Addrs = Box::new(addresses.into_iter());
            Ok(addresses)
        })
    }
}

/// The HTTP client of notices: addresses checked at resolution ([`check_ip`]; an IP in the
/// URL itself was checked by [`check_url`]), no redirect followed (a 3xx is a failed
/// attempt), short timeouts.
fn client() -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .dns_resolver(Arc::new(Guarded))
        .redirect(reqwest::redirect::Policy::none())
        .timeout(TIMEOUT)
        .connect_timeout(CONNECT_TIMEOUT)
        .build()
        .map_err(|err| format!("webhook: HTTP client: {err}"))
}

/// The JSON body posted for `notice` of rollout `rollout` (`namespace/name`).
pub fn payload(rollout: &str, notice: &str) -> Value {
    json!({ "text": format!("{rollout}: {notice}") })
}

/// How a rollout is named in its notices: `namespace/name`, or the name alone where there
/// is no namespace (a plain Envoy's directory).
pub fn label(canary: &StickyCanary) -> String {
    match canary.namespace() {
        Some(namespace) => format!("{namespace}/{}", canary.name_any()),
        None => canary.name_any(),
    }
}

/// How the one acting on a rollout sends the notices of its changes: the policy a front end
/// picks once, so every way of acting sends them the same way.
pub struct Notifier {
    /// The webhook client (`client`), built at the first notice and then reused (the
    /// system's root certificates are read once), or why there is none.
    client: OnceLock<Result<reqwest::Client, String>>,
    /// `Some(bound)`: wait for the notices, up to `bound` (a command, whose process must not
    /// exit before they are sent, nor hang on a slow webhook); `None`: post them from a
    /// background task (a server, whose answers never wait for a webhook).
    wait: Option<Duration>,
}

impl Notifier {
    /// A command's: waits for its notices, up to [`COMMAND_PATIENCE`].
    pub fn command() -> Self {
        Notifier {
            client: OnceLock::new(),
            wait: Some(COMMAND_PATIENCE),
        }
    }

    /// A server's (the controller, the dashboard): posts in the background.
    pub fn server() -> Self {
        Notifier {
            client: OnceLock::new(),
            wait: None,
        }
    }

    /// Posts `notices` of `canary` to its webhook, in order, each with its bounded retries.
    /// Never an error (the change is applied): a warning when they are not all sent, because
    /// the URL is refused ([`webhook`]), there is no client, or the bound ran out.
    pub async fn send(&self, canary: &StickyCanary, notices: Vec<String>) -> Option<String> {
        if notices.is_empty() {
            return None;
        }
        let url = match webhook(&canary.spec.auto)? {
            Ok(url) => url,
            Err(why) => return Some(format!("{why}: notices not sent")),
        };
        let client = match self.client.get_or_init(client) {
            Ok(client) => client.clone(),
            Err(why) => return Some(format!("{why}: notices not sent")),
        };
        let rollout = label(canary);
        let Some(bound) = self.wait else {
            tokio::spawn(async move { deliver(&client, &url, &rollout, notices).await });
            return None;
        };
        let delivered = deliver(&client, &url, &rollout, notices);
        tokio::time::timeout(bound, delivered).await.err().map(|_| {
            format!(
                "the webhook did not take every notice within {}s",
                bound.as_secs()
            )
        })
    }
}

/// Posts `notices` of `rollout` to `url`, in order, each with its bounded retries.
async fn deliver(client: &reqwest::Client, url: &Url, rollout: &str, notices: Vec<String>) {
    for notice in notices {
        post(client, url, &payload(rollout, &notice)).await;
    }
}

/// Posts `body`, retried with backoff (200 ms, doubling) up to [`ATTEMPTS`] attempts in all,
/// then dropped with a warning.
async fn post(client: &reqwest::Client, url: &Url, body: &Value) {
    let retries = ExponentialBuilder::new()
        .with_min_delay(Duration::from_millis(200))
        .with_max_times(ATTEMPTS as usize - 1);
    if let Err(last) = (|| attempt(client, url, body)).retry(retries).await {
        // The host only: the path of a webhook URL is its secret.
        let host = url.host_str().unwrap_or_default();
        tracing::warn!(%host, error = %last, "webhook: notice dropped after {ATTEMPTS} attempts");
    }
}

/// One post; anything but a 2xx is a failure (a redirect is not followed: a webhook that
/// moved is fixed in the spec, and a redirect must not lead the controller elsewhere).
async fn attempt(client: &reqwest::Client, url: &Url, body: &Value) -> Result<(), String> {
    let answer = client
        .post(url.clone())
        .json(body)
        .send()
        .await
        .map_err(|err| format!("{err:#}"))?;
    if answer.status().is_success() {
        Ok(())
    } else {
        Err(format!("answered {}", answer.status()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_is_slack_text() {
        assert_eq!(
            payload("prod/shop", "next 10: v1=90 v2=10"),
            json!({"text": "prod/shop: next 10: v1=90 v2=10"})
        );
    }

    #[test]
    fn webhook_urls_are_checked_on_what_they_parse_to() {
        let refused = |url: &str, allow_http: bool, words: &str| {
            let why = check_url(url, allow_http).expect_err(url);
            assert!(why.starts_with("spec.auto.webhook: "), "{url}: {why}");
            assert!(why.contains(words), "{url}: {why}");
        };
        let taken = [
            ("https://hooks.slack.com/services/T0/B0/x", false),
            ("https://10.0.0.7:8443/hook", false),
            ("http://127.0.0.1:9000/hook", false),
            ("http://127.9.9.9/hook", false),
            ("http://[::1]:9000/hook", false),
            ("http://localhost:9000/hook", false),
            ("http://LOCALHOST./hook", false),
            ("http://hooks.monitoring.svc:8080/x", true),
            ("http://10.0.0.7/x", true),
        ];
        for (url, allow_http) in taken {
            assert!(
                check_url(url, allow_http).is_ok(),
                "{url}: {:?}",
                check_url(url, allow_http)
            );
        }
        let cases = [
            ("http://hooks.example/x", false, "plain http"),
            ("http://10.0.0.7/x", false, "--allow-http-webhook"),
            ("http://127.0.0.1.nip.io/x", false, "plain http"),
            ("http://localhost@evil.example/x", false, "plain http"),
            ("ftp://hooks.example/x", true, "not an http(s) URL"),
            ("file:///etc/passwd", true, "not an http(s) URL"),
            ("hooks.slack.com/x", true, "not a URL"),
            ("https://", true, "not a URL"),
            // Link-local and metadata, however written, even where http is allowed.
            (
                "https://169.254.169.254/latest/meta-data/",
                true,
                "metadata",
            ),
            ("http://169.254.169.254/", true, "metadata"),
            ("https://169.254.10.1/", true, "link-local"),
            ("https://2852039166/", true, "169.254.169.254"),
            ("https://0xa9.0xfe.0xa9.0xfe/", true, "169.254.169.254"),
            ("https://0251.0376.0251.0376/", true, "169.254.169.254"),
            ("https://169.254.43518/", true, "169.254.169.254"),
            ("https://[fe80::1]/", true, "link-local"),
            ("https://[febf::1]/", true, "link-local"),
            ("https://[fd00:ec2::254]/", true, "metadata"),
            ("https://[::ffff:169.254.169.254]/", true, "metadata"),
            ("https://[::ffff:a9fe:a9fe]/", true, "metadata"),
            ("https://[64:ff9b::169.254.169.254]/", true, "metadata"),
            (
                "https://metadata.google.internal/computeMetadata/v1/",
                true,
                "metadata",
            ),
            ("https://METADATA.google.internal./", true, "metadata"),
            ("https://100.100.100.200/", true, "metadata"),
            ("https://0.0.0.0/", true, "not a unicast"),
            ("https://[::]/", true, "not a unicast"),
            ("https://224.0.0.1/", true, "not a unicast"),
            ("https://255.255.255.255/", true, "not a unicast"),
        ];
        for (url, allow_http, words) in cases {
            refused(url, allow_http, words);
        }
    }

    #[test]
    fn the_spec_names_the_webhook_and_its_permission() {
        let mut auto = AutoSpec::default();
        assert!(webhook(&auto).is_none());
        auto.webhook = Some("http://hooks.monitoring:8080/x".into());
        assert!(webhook(&auto).is_some_and(|w| w.is_err()));
        auto.allow_http_webhook = true;
        assert!(webhook(&auto).is_some_and(|w| w.is_ok()));
        auto.webhook = Some("http://169.254.169.254/".into());
        assert!(webhook(&auto).is_some_and(|w| w.is_err()));
    }

    #[tokio::test]
    async fn names_resolving_to_refused_addresses_are_not_connected_to() {
        use reqwest::dns::Resolve;
        use std::str::FromStr;
        let resolve = |name: &str| Guarded.resolve(reqwest::dns::Name::from_str(name).unwrap());
        assert!(resolve("localhost").await.is_ok());
        for name in ["169.254.169.254", "fe80::1", "fd00:ec2::254", "0.0.0.0"] {
            let why = match resolve(name).await {
                Ok(_) => panic!("{name} resolved"),
                Err(why) => why.to_string(),
            };
            assert!(why.starts_with(&format!("{name}: ")), "{why}");
        }
    }

    /// A redirect is a failed attempt, and where it points is never asked.
    #[tokio::test]
    async fn redirects_are_not_followed() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let followed = Arc::new(AtomicUsize::new(0));
        let seen = followed.clone();
        let app = axum::Router::new()
            .route(
                "/hook",
                axum::routing::post(|| async { axum::response::Redirect::temporary("/elsewhere") }),
            )
            .route(
                "/elsewhere",
                axum::routing::any(move || async move {
                    seen.fetch_add(1, Ordering::SeqCst);
                    "ok"
                }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        let url = check_url(&format!("http://{address}/hook"), false).unwrap();
        let why = attempt(&client().unwrap(), &url, &payload("prod/shop", "x"))
            .await
            .unwrap_err();
        assert!(why.contains("307"), "{why}");
        assert_eq!(followed.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn a_refused_webhook_is_said_and_not_posted_to() {
        let mut spec = api::StickyCanarySpec::new("shop", "v1");
        spec.auto.webhook = Some("http://169.254.169.254/latest".into());
        let canary = StickyCanary::new("shop", spec);
        // No client at all: nothing could be posted, and the refusal is what is said.
        let notifier = Notifier {
            client: OnceLock::from(Err("no client".to_owned())),
            wait: None,
        };
        let why = notifier
            .send(&canary, vec!["next 10".into()])
            .await
            .expect("a warning");
        assert!(
            why.starts_with("spec.auto.webhook: 169.254.169.254 is a cloud metadata address"),
            "{why}"
        );
        assert!(notifier.send(&canary, Vec::new()).await.is_none());
    }
}
