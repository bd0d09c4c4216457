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

use std::sync::Arc;

use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use sticky_canary_filter::config::DEFAULT_HEADER;

/// Response header naming the version that served the request.
pub const SERVED_BY: &str = "x-served-by";
/// Response header echoing the version header the upstream received (absent when none).
pub const RECEIVED_VERSION: &str = "x-received-sticky-version";
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

/// The routes of the site as served by `version`, with [`HOP`] calling `calls` (the callee's
/// address and host) when given.
pub fn router(
    version: &str,
    calls: Option<(std::net::SocketAddr, &str)>,
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
    Ok(site
        .layer(middleware::from_fn(cors))
        .layer(middleware::from_fn_with_state(served_by, stamp)))
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

/// Marks every response with the serving version and the version header it received.
async fn stamp(State(served_by): State<HeaderValue>, request: Request, next: Next) -> Response {
    let received = request.headers().get(DEFAULT_HEADER).cloned();
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(SERVED_BY, served_by);
    if let Some(received) = received {
        headers.insert(RECEIVED_VERSION, received);
    }
    response
}
