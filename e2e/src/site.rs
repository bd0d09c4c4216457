//! The web application every upstream version serves: just enough of a real site to show
//! why per-request canary splits break pages.
//!
//! Each version's pages load a script that only that version has (`/assets/app-<version>.js`,
//! as a bundler's content-hashed file name would be), so a page from one version whose script
//! request lands on another gets a 404. Every response says which version served it and what
//! version header the upstream received, so tests can check the filter's decision. Pages say
//! their version in `data-version`, and the script sets `window.app` to its own, so a real
//! browser can check from the page that it did not mix versions. Every version answers CORS
//! alike, so pages of another host (`www.` calling `api.`) can call it with credentials. The
//! page's icon is inline, so a real browser does not ask for `/favicon.ico`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use sticky_canary_filter::config::{DEFAULT_HEADER, DEFAULT_OVERRIDE_HEADER};

/// Response header naming the version that served the request.
pub const SERVED_BY: &str = "x-served-by";
/// Response header echoing the version header the upstream received (absent when none).
pub const RECEIVED_VERSION: &str = "x-received-sticky-version";
/// Response header echoing the QA override header the upstream received (absent when none:
/// the filter removes it before the upstream).
pub const RECEIVED_OVERRIDE: &str = "x-received-sticky-override";
/// The site's pages; each links to the others.
pub const PAGES: [&str; 2] = ["/", "/about"];
/// The API every page calls from its script.
pub const WHOAMI: &str = "/api/whoami";
/// What a service that calls another serves: the callee's answer (see [`hop_router`]).
pub const HOP: &str = "/hop";
/// Response header naming the version of the callee that served a [`HOP`].
pub const CALLEE_SERVED_BY: &str = "x-callee-served-by";
/// A stylesheet every version has.
pub const COMMON_CSS: &str = "/assets/common.css";

/// The script only `version` has.
pub fn app_script(version: &str) -> String {
    format!("/assets/app-{version}.js")
}

/// What a version does wrong, for the tests of the canary analysis.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Faults {
    /// Share of requests answered 500, spread evenly and deterministically: request `n`
    /// (from 1) fails when `floor(n·rate)` steps up, so 0.05 fails every 20th request.
    pub error_rate: f64,
    /// Added to every response.
    pub delay: Duration,
}

impl Faults {
    /// The `sticky-upstream` arguments that inject these faults.
    pub fn args(&self) -> Vec<String> {
        vec![
            "--error-rate".to_owned(),
            self.error_rate.to_string(),
            "--delay-ms".to_owned(),
            self.delay.as_millis().to_string(),
        ]
    }

    /// Whether request `n` (counted from 1) fails.
    pub fn fails(&self, n: u64) -> bool {
        let failed = |n: u64| (n as f64 * self.error_rate).floor();
        failed(n) > failed(n - 1)
    }
}

/// The routes of the site as served by `version`, with [`HOP`] calling `calls` (the callee's
/// address and host) when given, and `faults` injected into every response.
pub fn router(
    version: &str,
    calls: Option<(std::net::SocketAddr, &str)>,
    faults: Faults,
) -> Result<Router, header::InvalidHeaderValue> {
    let served_by = HeaderValue::from_str(version)?;
    let version: Arc<str> = Arc::from(version);
    let mut site = Router::new()
        .route(PAGES[0], get(page))
        .route(PAGES[1], get(page))
        .route(COMMON_CSS, get(common_css))
        .route("/assets/{file}", get(asset))
        .route(WHOAMI, get(whoami))
        .with_state(version);
    if let Some((address, host)) = calls {
        site = site.merge(hop_router(address, host));
    }
    if faults != Faults::default() {
        let state = Arc::new((faults, AtomicU64::new(0)));
        site = site.layer(middleware::from_fn_with_state(state, inject));
    }
    Ok(site
        .layer(middleware::from_fn(cors))
        .layer(middleware::from_fn_with_state(served_by, stamp)))
}

/// Delays the response and fails the share of requests `faults` asks for.
async fn inject(
    State(state): State<Arc<(Faults, AtomicU64)>>,
    request: Request,
    next: Next,
) -> Response {
    let (faults, served) = &*state;
    let n = served.fetch_add(1, Ordering::Relaxed) + 1;
    if !faults.delay.is_zero() {
        tokio::time::sleep(faults.delay).await;
    }
    if faults.fails(n) {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    next.run(request).await
}

async fn page(State(version): State<Arc<str>>) -> impl IntoResponse {
    let links: String = PAGES
        .iter()
        .map(|page| format!(r#"<a href="{page}">{page}</a> "#))
        .collect();
    let html = format!(
        r#"<!doctype html>
<html><head><title>shop {version}</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="{COMMON_CSS}">
<script src="{script}"></script>
</head><body data-fetch="{WHOAMI}" data-version="{version}"><h1>shop {version}</h1><nav>{links}</nav></body></html>
"#,
        script = app_script(&version)
    );
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], html)
}

async fn common_css() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/css")], "body { margin: 0 }\n")
}

async fn asset(State(version): State<Arc<str>>, Path(file): Path<String>) -> Response {
    if format!("/assets/{file}") == app_script(&version) {
        (
            [(header::CONTENT_TYPE, "text/javascript")],
            format!(
                "window.app = {:?}; fetch({WHOAMI:?}); // app {version}\n",
                &*version
            ),
        )
            .into_response()
    } else {
        StatusCode::NOT_FOUND.into_response()
    }
}

async fn whoami(State(version): State<Arc<str>>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        format!(r#"{{"version":{:?}}}"#, &*version),
    )
}

/// `/hop`: calls `GET /` of the service `host` through `address` (the caller's sidecar),
/// with the version header this request carried, and answers with the callee's version in
/// [`CALLEE_SERVED_BY`] (and 502 when the call fails).
fn hop_router(address: std::net::SocketAddr, host: &str) -> Router {
    let target: Arc<(String, String)> = Arc::new((format!("http://{address}/"), host.to_owned()));
    Router::new().route(
        HOP,
        get(move |request: Request| {
            let target = Arc::clone(&target);
            async move {
                let version = request
                    .headers()
                    .get(DEFAULT_HEADER)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                let called =
                    tokio::task::spawn_blocking(move || call(&target.0, &target.1, version))
                        .await
                        .ok()
                        .flatten();
                match called {
                    Some(served) => match HeaderValue::from_str(&served) {
                        Ok(served) => ([(CALLEE_SERVED_BY, served)], "called\n").into_response(),
                        Err(_) => StatusCode::BAD_GATEWAY.into_response(),
                    },
                    None => StatusCode::BAD_GATEWAY.into_response(),
                }
            }
        }),
    )
}

/// One call to the callee; the version that served it, `None` on any failure.
fn call(url: &str, host: &str, version: Option<String>) -> Option<String> {
    let mut request = ureq::get(url).header("host", host);
    if let Some(version) = &version {
        request = request.header(DEFAULT_HEADER, version);
    }
    let response = request.call().ok()?;
    response
        .headers()
        .get(SERVED_BY)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// CORS for pages of any origin, with credentials: an `OPTIONS` request with an `Origin` is a
/// preflight and answered at once (allowing what it asks for, cached by nobody, so every
/// call is preflighted again); other requests with an `Origin` get the allow headers.
async fn cors(request: Request, next: Next) -> Response {
    let headers = request.headers();
    let origin = headers.get(header::ORIGIN).cloned();
    let asked_headers = headers.get(header::ACCESS_CONTROL_REQUEST_HEADERS).cloned();
    let Some(origin) = origin else {
        return next.run(request).await;
    };
    let preflight = request.method() == Method::OPTIONS;
    let mut response = if preflight {
        StatusCode::NO_CONTENT.into_response()
    } else {
        next.run(request).await
    };
    let headers = response.headers_mut();
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
        HeaderValue::from_static("true"),
    );
    if preflight {
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("GET, POST"),
        );
        if let Some(asked) = asked_headers {
            headers.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, asked);
        }
        headers.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static("0"),
        );
    }
    response
}

/// Marks every response with the serving version and the version and override headers it
/// received.
async fn stamp(State(served_by): State<HeaderValue>, request: Request, next: Next) -> Response {
    let received = request.headers().get(DEFAULT_HEADER).cloned();
    let override_ = request.headers().get(DEFAULT_OVERRIDE_HEADER).cloned();
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(SERVED_BY, served_by);
    if let Some(received) = received {
        headers.insert(RECEIVED_VERSION, received);
    }
    if let Some(override_) = override_ {
        headers.insert(RECEIVED_OVERRIDE, override_);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_fail_the_share_asked_for_evenly() {
        let cases = [
            (0.0, 1000, 0),
            (0.05, 1000, 50),
            (0.001, 1000, 1),
            (1.0, 10, 10),
            (0.3, 10, 3),
        ];
        for (error_rate, requests, failed) in cases {
            let faults = Faults {
                error_rate,
                ..Faults::default()
            };
            let count = (1..=requests).filter(|&n| faults.fails(n)).count();
            assert_eq!(count, failed, "{error_rate}");
        }
        let every_20th = Faults {
            error_rate: 0.05,
            ..Faults::default()
        };
        let failing: Vec<u64> = (1..=60).filter(|&n| every_20th.fails(n)).collect();
        assert_eq!(failing, [20, 40, 60]);
    }
}
