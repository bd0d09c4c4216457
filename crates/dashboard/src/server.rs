//! The HTTP shell: the page and its assets (built into the binary), the rollouts as JSON, a
//! stream of them as server-sent events, and the actions. It decides nothing: views come
//! from [`super::view`], commands and who may send them from [`super::action`], changes
//! from [`runtime::act::act`].

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderName, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Serialize;
use serde_json::json;
use tokio::sync::watch;

use super::action::{self, ActionRequest};
use super::view::{self, RolloutView};
use rollout::Input;
use runtime::error::Error;
use runtime::notify::Notifier;
use runtime::reconcile::Requester;
use runtime::target::place::Place;

/// How often the rollouts are read for the live view.
pub const POLL: Duration = Duration::from_millis(500);

/// How often a page hears from the server when nothing changed (an `alive` event), so its
/// header's "updated" time says when it last heard, not when a rollout last changed.
pub const HEARTBEAT: Duration = Duration::from_secs(1);

/// What every page gets, pushed whenever it changes.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PageState {
    /// Every rollout.
    pub rollouts: Vec<RolloutView>,
    /// Why the rollouts could not be read at the last look, if they could not.
    pub error: Option<String>,
    /// Whether actions need the token.
    pub token_required: bool,
    /// Per-version charts by rollout id, when Prometheus is given.
    pub charts: serde_json::Value,
}

struct App {
    listen: SocketAddr,
    place: Place,
    /// The actions' notices: posted in the background (an answer never waits for a
    /// webhook), with one client for the server's life.
    notifier: Notifier,
    token: Option<String>,
    /// The header a reverse proxy names the person in (`--identity-header`), if configured.
    identity: Option<HeaderName>,
    live: watch::Receiver<Arc<String>>,
    looker: tokio::sync::Mutex<Looker>,
}

/// What a look at the rollouts needs between looks; behind a lock, so a look made right
/// after an action is never overtaken by an older one.
struct Looker {
    sender: watch::Sender<Arc<String>>,
    charts: Option<super::charts::Charts>,
    last: String,
}

/// Serves the dashboard on `listener` until Ctrl-C; `charts` fills [`PageState::charts`];
/// `identity` names the header whose value the history records as who acted
/// ([`action::requester`]).
pub async fn serve(
    listener: tokio::net::TcpListener,
    place: Place,
    token: Option<String>,
    identity: Option<HeaderName>,
    charts: Option<super::charts::Charts>,
) -> Result<(), Error> {
    let listen = listener
        .local_addr()
        .map_err(|e| Error::Runtime(format!("dashboard: {e}")))?;
    let (sender, live) = watch::channel(Arc::new(String::from("{}")));
    let app = Arc::new(App {
        listen,
        place,
        notifier: Notifier::server(),
        token,
        identity,
        live,
        looker: tokio::sync::Mutex::new(Looker {
            sender,
            charts,
            last: String::new(),
        }),
    });
    look(&app).await;
    tokio::spawn(poll(app.clone()));
    let router = router(app);
    let address = listen;
    tracing::info!("dashboard on http://{address}/");
    axum::serve(listener, router)
        .with_graceful_shutdown(async {
            tokio::signal::ctrl_c().await.ok();
        })
        .await
        .map_err(|e| Error::Runtime(format!("dashboard on {address}: {e}")))
}

/// The routes, behind the Host/Origin guard and, outermost, the security headers, so every
/// answer (the guard's refusals, a 404, a body axum could not parse) carries them.
fn router(app: Arc<App>) -> Router {
    Router::new()
        .route(
            "/",
            get(|| async { asset("text/html; charset=utf-8", INDEX) }),
        )
        .route(
            "/app.js",
            get(|| async { asset("text/javascript; charset=utf-8", APP_JS) }),
        )
        .route(
            "/style.css",
            get(|| async { asset("text/css; charset=utf-8", STYLE) }),
        )
        .route("/api/rollouts", get(rollouts))
        .route("/api/events", get(events))
        .route("/api/actions", post(act))
        .fallback(|| async { answer(StatusCode::NOT_FOUND, "error", "no such page") })
        .layer(axum::middleware::from_fn_with_state(
            app.clone(),
            guard_host,
        ))
        .layer(axum::middleware::map_response(secure))
        .with_state(app)
}

/// The policy every answer carries: no framing (clickjacking), scripts, styles and
/// connections from the dashboard's own origin only (no inline script or handler, so text
/// that slipped into markup still runs nothing), no plugins, no `<base>`, forms only to itself.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
    style-src 'self'; img-src 'self'; connect-src 'self'; base-uri 'none'; \
    form-action 'self'; frame-ancestors 'none'; object-src 'none'";

/// The security headers of every answer: [`CONTENT_SECURITY_POLICY`], `X-Frame-Options`
/// for browsers without `frame-ancestors`, no MIME sniffing (a JSON answer never runs as a
/// script or renders as a page), and no referrer (a rollout's URL names it).
pub const SECURITY_HEADERS: [(&str, &str); 4] = [
    ("content-security-policy", CONTENT_SECURITY_POLICY),
    ("x-frame-options", "DENY"),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "no-referrer"),
];

async fn secure(mut response: Response) -> Response {
    let headers = response.headers_mut();
    for (name, value) in SECURITY_HEADERS {
        headers.insert(name, axum::http::HeaderValue::from_static(value));
    }
    response
}

/// Binds `address`.
pub async fn bind(address: SocketAddr) -> Result<tokio::net::TcpListener, Error> {
    tokio::net::TcpListener::bind(address)
        .await
        .map_err(|e| Error::Runtime(format!("--listen {address}: {e}")))
}

const INDEX: &str = include_str!("assets/index.html");
const APP_JS: &str = include_str!("assets/app.js");
const STYLE: &str = include_str!("assets/style.css");

fn asset(kind: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, kind),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

/// Looks at the rollouts every [`POLL`], until the server stops.
async fn poll(app: Arc<App>) {
    loop {
        tokio::time::sleep(POLL).await;
        look(&app).await;
    }
}

/// Reads the rollouts and publishes them to every page if they changed.
async fn look(app: &App) {
    let mut looker = app.looker.lock().await;
    let now = jiff::Timestamp::now();
    let (rollouts, error) = match app.place.list().await {
        Ok(rollouts) => (rollouts, None),
        Err(err) => (Vec::new(), Some(err.to_string())),
    };
    let charts = match &mut looker.charts {
        Some(charts) => charts.update(&rollouts, now).await,
        None => serde_json::Value::Null,
    };
    let state = PageState {
        rollouts: view::list(&rollouts, now),
        error,
        token_required: app.token.is_some(),
        charts,
    };
    let text = serde_json::to_string(&state).unwrap_or_default();
    if text != looker.last {
        looker.sender.send_replace(Arc::new(text.clone()));
        looker.last = text;
    }
}

/// Refuses requests under a name that is not the dashboard's ([`action::host_allowed`]) and
/// actions from another site's page ([`action::same_origin`]).
async fn guard_host(
    State(app): State<Arc<App>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let headers = request.headers();
    let header = |name| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let (host, origin) = (header(header::HOST), header(header::ORIGIN));
    if !action::host_allowed(&app.listen, host.as_deref()) {
        return answer(
            StatusCode::FORBIDDEN,
            "error",
            "this dashboard answers on its loopback address only",
        );
    }
    let post = request.method() == axum::http::Method::POST;
    if post && !action::same_origin(origin.as_deref(), host.as_deref()) {
        return answer(
            StatusCode::FORBIDDEN,
            "error",
            "actions come from the dashboard's own page only",
        );
    }
    next.run(request).await
}

async fn rollouts(State(app): State<Arc<App>>) -> Response {
    let body = app.live.borrow().as_str().to_owned();
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

async fn events(
    State(app): State<Arc<App>>,
) -> Sse<impl futures::Stream<Item = Result<Event, Infallible>>> {
    let stream =
        futures::stream::unfold((app.live.clone(), true), |(mut live, first)| async move {
            if !first {
                tokio::select! {
                    changed = live.changed() => changed.ok()?,
                    () = tokio::time::sleep(HEARTBEAT) => {
                        let now = jiff::Timestamp::now().to_string();
                        return Some((Ok(Event::default().event("alive").data(now)), (live, false)));
                    }
                }
            }
            let data = live.borrow_and_update().as_str().to_owned();
            Some((
                Ok(Event::default().event("state").data(data)),
                (live, false),
            ))
        });
    Sse::new(stream).keep_alive(KeepAlive::default())
}

/// An action: the token first (nothing from a sender without it is read further), then
/// a JSON body read by [`action::parse`], the very function the fuzz targets call.
async fn act(State(app): State<Arc<App>>, headers: HeaderMap, body: axum::body::Bytes) -> Response {
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(action::bearer);
    if let Err(refusal) = action::authorize(app.token.as_deref(), presented) {
        let status = match refusal {
            action::Refusal::NoToken => StatusCode::UNAUTHORIZED,
            action::Refusal::WrongToken => StatusCode::FORBIDDEN,
        };
        return answer(status, "error", refusal.message());
    }
    // A cross-site form cannot send this type without a preflight.
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.trim_start()
                .to_ascii_lowercase()
                .starts_with("application/json")
        });
    if !json {
        let why = "an action is JSON (Content-Type: application/json)";
        return answer(StatusCode::UNSUPPORTED_MEDIA_TYPE, "error", why);
    }
    let (request, command): (ActionRequest, _) = match action::parse(&body) {
        Ok(parsed) => parsed,
        Err(why) => return answer(StatusCode::BAD_REQUEST, "error", &why),
    };
    // Only a configured header is read: a client's own never names anyone.
    let identity = app.identity.as_ref().and_then(|name| headers.get(name));
    let by = match action::requester(identity.map(|value| value.as_bytes())) {
        Ok(by) => by,
        Err(why) => return answer(StatusCode::BAD_REQUEST, "error", &why),
    };
    let requester = Requester {
        by: Some(by),
        seen_generation: request.generation,
    };
    // The target (an Envoy directory's lock) is let go before the look below reads again.
    let acted = async {
        let target = app.place.open_label(&request.rollout).await?;
        runtime::act::act(&target, &Input::Command(command), &requester, &app.notifier).await
    }
    .await;
    // Every page (this one's refresh included) sees the outcome before the answer.
    look(&app).await;
    match acted {
        Ok(acted) => {
            if let Some(why) = &acted.warning {
                tracing::warn!(rollout = %request.rollout, "{why}");
            }
            answer(StatusCode::OK, "message", &acted.done.lines().join("; "))
        }
        Err(err) => {
            let status = match &err {
                Error::Stale { .. } => StatusCode::CONFLICT,
                Error::Op(_) | Error::Edit(_) | Error::Invalid(_) => {
                    StatusCode::UNPROCESSABLE_ENTITY
                }
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            };
            answer(status, "error", &err.to_string())
        }
    }
}

fn answer(status: StatusCode, key: &str, text: &str) -> Response {
    (status, Json(json!({ key: text }))).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A dashboard on an empty Envoy directory, with a token; its base URL.
    async fn start() -> (String, tempfile::TempDir) {
        start_with(None).await
    }

    /// [`start`], reading who acted from the `identity` header.
    async fn start_with(identity: Option<&'static str>) -> (String, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let listener = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let place = Place::EnvoyDir(dir.path().to_owned());
        let identity = identity.map(HeaderName::from_static);
        tokio::spawn(serve(
            listener,
            place,
            Some("t0k3n".to_owned()),
            identity,
            None,
        ));
        (base, dir)
    }

    /// The identity header is read only when configured: an unreadable value is refused
    /// then, and means nothing otherwise (the action goes on, to a rollout that is not there).
    #[tokio::test]
    async fn only_a_configured_identity_header_is_read() {
        for (identity, status) in [(Some("x-forwarded-user"), 400), (None, 422)] {
            let (base, _dir) = start_with(identity).await;
            let answer = reqwest::Client::new()
                .post(format!("{base}/api/actions"))
                .bearer_auth("t0k3n")
                .header("content-type", "application/json")
                .header("x-forwarded-user", vec![b'a'; action::IDENTITY_MAX + 1])
                .body(r#"{"rollout":"shop","action":"next"}"#)
                .send()
                .await
                .unwrap();
            assert_eq!(answer.status().as_u16(), status, "{identity:?}");
        }
    }

    /// A page hears from the server every [`HEARTBEAT`] while nothing changes.
    #[tokio::test]
    async fn the_live_stream_says_it_is_alive_when_nothing_changes() {
        let (base, _dir) = start().await;
        let mut response = reqwest::get(format!("{base}/api/events")).await.unwrap();
        let mut text = String::new();
        let until = tokio::time::Instant::now() + HEARTBEAT * 3;
        while text.matches("event: alive").count() < 2 {
            let chunk = tokio::time::timeout_at(until, response.chunk())
                .await
                .unwrap_or_else(|_| panic!("no two alive events within 3 heartbeats: {text}"));
            text.push_str(&String::from_utf8_lossy(&chunk.unwrap().unwrap()));
        }
        assert_eq!(text.matches("event: state").count(), 1, "{text}");
    }

    #[tokio::test]
    async fn every_answer_carries_the_security_headers() {
        let (base, _dir) = start().await;
        let client = reqwest::Client::new();
        let get = |path: &str| client.get(format!("{base}{path}"));
        let post = |body: &'static str, token: Option<&str>| {
            let request = client
                .post(format!("{base}/api/actions"))
                .header("content-type", "application/json")
                .body(body);
            match token {
                Some(token) => request.bearer_auth(token),
                None => request,
            }
        };
        let cases = [
            ("the page", get("/"), 200),
            ("its script", get("/app.js"), 200),
            ("its styles", get("/style.css"), 200),
            ("the state", get("/api/rollouts"), 200),
            ("the live stream", get("/api/events"), 200),
            ("no such page", get("/nope"), 404),
            ("another name", get("/").header("host", "evil.example"), 403),
            ("an action without the token", post("{}", None), 401),
            ("not JSON", post("{", Some("t0k3n")), 400),
            (
                "a body of the wrong shape",
                post(r#"{"rollout": 1}"#, Some("t0k3n")),
                400,
            ),
            (
                "not said to be JSON",
                client
                    .post(format!("{base}/api/actions"))
                    .bearer_auth("t0k3n")
                    .header("content-type", "text/plain")
                    .body(r#"{"rollout":"x","action":"next"}"#),
                415,
            ),
            (
                "an unknown action",
                post(r#"{"rollout": "x", "action": "x"}"#, Some("t0k3n")),
                400,
            ),
        ];
        for (what, request, status) in cases {
            let response = request.send().await.unwrap();
            assert_eq!(response.status().as_u16(), status, "{what}");
            let headers = response.headers();
            for (name, value) in SECURITY_HEADERS {
                assert_eq!(
                    headers.get(name).and_then(|v| v.to_str().ok()),
                    Some(value),
                    "{what}: {name}"
                );
            }
        }
        let policy = CONTENT_SECURITY_POLICY;
        for directive in [
            "frame-ancestors 'none'",
            "script-src 'self';",
            "default-src 'none'",
        ] {
            assert!(policy.contains(directive), "{policy}");
        }
        assert!(!policy.contains("unsafe"), "{policy}");
    }

    /// What the policy forbids is not in the page: no inline script, style or handler.
    #[test]
    fn the_page_runs_under_its_policy() {
        let inline_script = INDEX
            .match_indices("<script")
            .all(|(at, _)| INDEX[at..].starts_with("<script src=\"/app.js\"></script>"));
        assert!(inline_script, "only <script src=\"/app.js\"> in index.html");
        let page = INDEX.to_lowercase();
        for forbidden in ["style=", "<style", "javascript:"] {
            assert!(!page.contains(forbidden), "index.html has {forbidden:?}");
        }
        // An event handler attribute: ` on<letters>=`.
        let handler = page.match_indices(" on").any(|(at, _)| {
            let name = page[at + 3..].trim_start_matches(|c: char| c.is_ascii_alphabetic());
            name.len() < page.len() - at - 3 && name.starts_with('=')
        });
        assert!(!handler, "index.html has an inline event handler");
        for forbidden in [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
            "eval(",
            "new Function",
            ".style",
        ] {
            assert!(!APP_JS.contains(forbidden), "app.js uses {forbidden}");
        }
    }
}
