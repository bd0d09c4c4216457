//! A simulated browser: a cookie jar and the `Sec-Fetch-*` headers real browsers send.
//!
//! The filter re-decides only at top-level navigations (`Sec-Fetch-Dest: document`) and keeps
//! the pin for everything a page loads, so the harness must label requests exactly the way a
//! browser does, or it would test a different policy than the one users meet.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::site::{CALLEE_SERVED_BY, RECEIVED_OVERRIDE, RECEIVED_VERSION, SERVED_BY};

/// An HTTP client for one Envoy listener, sharing kept-alive connections between browsers.
///
/// Envoy serves a kept-alive connection with the listener configuration it was accepted
/// under until it drains it, so after a configuration change take a [`Http::fresh`] client to
/// be sure to reach the new one.
#[derive(Clone)]
pub struct Http {
    agent: ureq::Agent,
    address: SocketAddr,
    base: String,
}

/// One response, reduced to what the tests look at.
#[derive(Debug, Clone)]
pub struct Response {
    /// HTTP status code.
    pub status: u16,
    /// The version that served it (`x-served-by`), absent when Envoy answered itself.
    pub served_by: Option<String>,
    /// The version header the upstream received, as the filter stamped it.
    pub received_version: Option<String>,
    /// The QA override header the upstream received (`None`: it never got there).
    pub received_override: Option<String>,
    /// For a call through the service to another one (`/hop`), the callee's version.
    pub callee_served_by: Option<String>,
    /// Every `Set-Cookie` header, verbatim.
    pub set_cookies: Vec<String>,
    /// The body as text.
    pub body: String,
}

impl Response {
    /// The full `Set-Cookie` header that sets cookie `name`, if any.
    pub fn set_cookie(&self, name: &str) -> Option<&str> {
        self.set_cookies
            .iter()
            .find(|c| cookie_pair(c).is_some_and(|(n, _)| n == name))
            .map(String::as_str)
    }

    /// The value the response sets cookie `name` to, if it sets it.
    pub fn cookie(&self, name: &str) -> Option<&str> {
        self.set_cookie(name).and_then(cookie_pair).map(|(_, v)| v)
    }
}

/// `name` and `value` of a `Set-Cookie` header (the part before the first `;`).
fn cookie_pair(set_cookie: &str) -> Option<(&str, &str)> {
    let pair = set_cookie.split(';').next()?;
    let (name, value) = pair.split_once('=')?;
    Some((name.trim(), value.trim()))
}

impl Http {
    /// A client for the listener at `address`.
    pub fn new(address: SocketAddr) -> Http {
        let config = ureq::Agent::config_builder()
            // 404s and 503s are results the tests count, not transport errors.
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(10)))
            .max_idle_connections_per_host(64)
            .build();
        Http {
            agent: config.into(),
            address,
            base: format!("http://{address}"),
        }
    }

    /// A client for the same listener that shares no connection with this one.
    pub fn fresh(&self) -> Http {
        let config = self.agent.config().clone();
        Http {
            agent: config.into(),
            address: self.address,
            base: self.base.clone(),
        }
    }

    /// The address it talks to.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// `GET path` with exactly these extra headers; values are bytes so tests can send
    /// malformed ones.
    pub fn get(&self, path: &str, headers: &[(&str, &[u8])]) -> Result<Response> {
        let url = format!("{}{path}", self.base);
        let mut request = self.agent.get(&url);
        for &(name, value) in headers {
            request = request.header(name, value);
        }
        let mut response = request.call().with_context(|| format!("GET {url}"))?;
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let served_by = header(SERVED_BY);
        let received_version = header(RECEIVED_VERSION);
        let received_override = header(RECEIVED_OVERRIDE);
        let callee_served_by = header(CALLEE_SERVED_BY);
        let set_cookies = response
            .headers()
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .map(str::to_owned)
            .collect();
        let status = response.status().as_u16();
        let body = response
            .body_mut()
            .read_to_string()
            .with_context(|| format!("reading the body of GET {url}"))?;
        Ok(Response {
            status,
            served_by,
            received_version,
            received_override,
            callee_served_by,
            set_cookies,
            body,
        })
    }
}

/// What a request is for, as browsers tell servers in `Sec-Fetch-Dest` and `Sec-Fetch-Mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dest {
    /// A top-level page load: the only point where the filter may move a client.
    Document,
    /// `<script src>`.
    Script,
    /// `<link rel="stylesheet">`.
    Style,
    /// `fetch()` from a script.
    Api,
}

impl Dest {
    /// The `Sec-Fetch-Dest` and `Sec-Fetch-Mode` values a browser sends.
    pub fn fetch_headers(self) -> [(&'static str, &'static [u8]); 2] {
        let (dest, mode): (&[u8], &[u8]) = match self {
            Dest::Document => (b"document", b"navigate"),
            Dest::Script => (b"script", b"no-cors"),
            Dest::Style => (b"style", b"no-cors"),
            Dest::Api => (b"empty", b"cors"),
        };
        [("sec-fetch-dest", dest), ("sec-fetch-mode", mode)]
    }
}

/// The sub-resources a page of the demo site loads, in document order.
pub fn subresources(html: &str) -> Vec<(Dest, String)> {
    let mut found: Vec<(usize, Dest, String)> = Vec::new();
    for (attribute, dest) in [
        (" src=\"", Dest::Script),
        (" href=\"", Dest::Style),
        (" data-fetch=\"", Dest::Api),
    ] {
        for (at, _) in html.match_indices(attribute) {
            let start = at + attribute.len();
            let Some(len) = html[start..].find('"') else {
                continue;
            };
            let url = &html[start..start + len];
            // Plain `href`s outside /assets/ are links to pages, followed only by navigating.
            if dest != Dest::Style || url.ends_with(".css") {
                found.push((at, dest, url.to_owned()));
            }
        }
    }
    found.sort_by_key(|&(at, _, _)| at);
    found
        .into_iter()
        .map(|(_, dest, url)| (dest, url))
        .collect()
}

/// A page load: the document and everything it made the browser fetch.
#[derive(Debug, Clone)]
pub struct Visit {
    /// The document.
    pub page: Response,
    /// Its sub-resources, in document order.
    pub resources: Vec<Response>,
}

impl Visit {
    /// The version that served the page.
    pub fn version(&self) -> Option<&str> {
        self.page.served_by.as_deref()
    }

    /// The page and its sub-resources.
    pub fn responses(&self) -> impl Iterator<Item = &Response> {
        std::iter::once(&self.page).chain(&self.resources)
    }

    /// How many of its requests got a 404: the breakage sticky routing exists to prevent.
    pub fn not_found(&self) -> usize {
        self.responses().filter(|r| r.status == 404).count()
    }

    /// Whether some request was served by another version than the page.
    pub fn mixed(&self) -> bool {
        self.resources
            .iter()
            .any(|r| r.served_by != self.page.served_by)
    }

    /// Whether the page load is whole: 200s only, every sub-resource from the page's version.
    pub fn whole(&self) -> bool {
        self.responses().all(|r| r.status == 200) && !self.mixed()
    }
}

/// One simulated user: a cookie jar, optional extra headers (a user id, a QA override) and the
/// sub-resources of the page it is on.
#[derive(Debug, Clone, Default)]
pub struct Browser {
    jar: BTreeMap<String, String>,
    extra_headers: Vec<(String, Vec<u8>)>,
    current_page: Vec<(Dest, String)>,
}

impl Browser {
    /// A first-time visitor: no cookies.
    pub fn new() -> Browser {
        Browser::default()
    }

    /// A browser that already holds cookie `name=value`, as a returning visitor does.
    pub fn with_cookie(mut self, name: &str, value: &str) -> Browser {
        self.jar.insert(name.to_owned(), value.to_owned());
        self
    }

    /// Sends `name: value` on every request from now on.
    pub fn with_header(mut self, name: &str, value: &str) -> Browser {
        self.extra_headers
            .push((name.to_owned(), value.as_bytes().to_vec()));
        self
    }

    /// Sends `name: value` on every request from now on, instead of any value set before: a
    /// browser moving to another site of a gateway changes its `Host`, keeping its cookies.
    pub fn set_header(&mut self, name: &str, value: &str) {
        self.extra_headers
            .retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        self.extra_headers
            .push((name.to_owned(), value.as_bytes().to_vec()));
    }

    /// The value of a cookie in the jar.
    pub fn cookie(&self, name: &str) -> Option<&str> {
        self.jar.get(name).map(String::as_str)
    }

    /// One request labelled as `dest`, with the jar's cookies; keeps the cookies it sets.
    pub fn fetch(&mut self, http: &Http, path: &str, dest: Dest) -> Result<Response> {
        let cookie_header = self
            .jar
            .iter()
            .map(|(name, value)| format!("{name}={value}"))
            .collect::<Vec<_>>()
            .join("; ");
        let mut headers: Vec<(&str, &[u8])> = dest.fetch_headers().to_vec();
        if !cookie_header.is_empty() {
            headers.push(("cookie", cookie_header.as_bytes()));
        }
        headers.extend(
            self.extra_headers
                .iter()
                .map(|(name, value)| (name.as_str(), value.as_slice())),
        );
        let response = http.get(path, &headers)?;
        for set_cookie in &response.set_cookies {
            if let Some((name, value)) = cookie_pair(set_cookie) {
                self.jar.insert(name.to_owned(), value.to_owned());
            }
        }
        Ok(response)
    }

    /// Navigates to `path` and loads what the page links to, like a browser would.
    pub fn visit(&mut self, http: &Http, path: &str) -> Result<Visit> {
        let page = self.fetch(http, path, Dest::Document)?;
        self.current_page = if page.status == 200 {
            subresources(&page.body)
        } else {
            Vec::new()
        };
        let resources = self.reload_subresources(http)?;
        Ok(Visit { page, resources })
    }

    /// Fetches the current page's sub-resources again without navigating, as a long-lived
    /// page does when its scripts call the API or load more code.
    pub fn reload_subresources(&mut self, http: &Http) -> Result<Vec<Response>> {
        let current = self.current_page.clone();
        current
            .iter()
            .map(|(dest, url)| self.fetch(http, url, *dest))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_scripts_styles_and_fetches_but_not_page_links() {
        let html = r#"<link rel="stylesheet" href="/assets/common.css">
<script src="/assets/app-v2.js"></script><body data-fetch="/api/whoami">
<a href="/about">about</a>"#;
        assert_eq!(
            subresources(html),
            [
                (Dest::Style, "/assets/common.css".to_owned()),
                (Dest::Script, "/assets/app-v2.js".to_owned()),
                (Dest::Api, "/api/whoami".to_owned()),
            ]
        );
    }

    #[test]
    fn reads_set_cookie_pairs() {
        assert_eq!(
            cookie_pair("sticky-version=v2; Path=/; HttpOnly"),
            Some(("sticky-version", "v2"))
        );
        assert_eq!(cookie_pair("garbage"), None);
    }
}
