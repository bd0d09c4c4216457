//! `stickyctl dashboard`: a web page to see and steer every rollout of a cluster or of an
//! Envoy directory, live. Every action is the CLI's command, run through [`runtime::act::act`]
//! (its notices posted in the background) and recorded in the history as done by the
//! dashboard (and by whom, when a proxy in front names the person in a configured header).
//! It offers only the actions the transition would take now ([`rollout::offer`]). A front
//! end: it acts only through `runtime` and depends on no other front end.
//!
//! Safe by default: it listens on loopback; anywhere else it refuses to start without a
//! token, and once a token is given every action needs it. Neither the token nor a
//! rollout's override token or webhook URL is ever sent to a page.

#![deny(missing_docs)]

use std::net::SocketAddr;

use prometheus::Prometheus;
use runtime::error::Error;
use runtime::target::place::Place;

pub mod action;
pub mod charts;
pub mod server;
pub mod view;

/// How a dashboard is served.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The address to listen on.
    pub listen: SocketAddr,
    /// The token every action needs (required off loopback).
    pub token: Option<String>,
    /// Where the charts' numbers come from.
    pub prometheus: Option<Prometheus>,
    /// The header an authenticating reverse proxy names the person in, recorded in the
    /// history as who acted (`--identity-header`); off by default, as a client could send
    /// it itself: the proxy must set it on every request, removing what a client sent.
    pub identity_header: Option<String>,
}

/// Serves the dashboard of the rollouts at `place` as `settings` say until Ctrl-C.
pub async fn run(place: Place, settings: Settings) -> Result<(), Error> {
    let Settings {
        listen,
        token,
        prometheus,
        identity_header,
    } = settings;
    let identity = identity_header
        .filter(|name| !name.is_empty())
        .map(|name| action::identity_header(&name))
        .transpose()
        .map_err(Error::Invalid)?;
    let token = token.filter(|t| !t.is_empty());
    if action::needs_token(&listen) && token.is_none() {
        return Err(Error::Invalid(format!(
            "{listen} is not a loopback address: the dashboard's actions need a token (--token, --dashboard-token of `controller`, or STICKY_DASHBOARD_TOKEN)"
        )));
    }
    let listener = server::bind(listen).await?;
    eprintln!(
        "dashboard on http://{}/ (actions {}{})",
        listener.local_addr().map_or(listen, |a| a),
        if token.is_some() {
            "need the token"
        } else {
            "open to this machine"
        },
        identity.as_ref().map_or(String::new(), |name| format!(
            "; who acted from the proxy's {name} header"
        )),
    );
    let charts = prometheus.map(charts::Charts::new);
    server::serve(listener, place, token, identity, charts).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(listen: &str, token: Option<String>) -> Settings {
        Settings {
            listen: listen.parse().unwrap(),
            token,
            prometheus: None,
            identity_header: None,
        }
    }

    #[tokio::test]
    async fn a_non_loopback_address_needs_a_token() {
        let place = Place::EnvoyDir(std::env::temp_dir());
        for token in [None, Some(String::new())] {
            let refused = run(place.clone(), settings("0.0.0.0:0", token))
                .await
                .unwrap_err();
            assert_eq!(refused.exit_code(), runtime::error::EXIT_INVALID);
            assert!(refused.to_string().contains("--token"), "{refused}");
        }
    }

    #[tokio::test]
    async fn an_identity_header_that_would_record_a_secret_is_refused() {
        let place = Place::EnvoyDir(std::env::temp_dir());
        for header in ["Authorization", "cookie", "not a header"] {
            let mut settings = settings("127.0.0.1:0", None);
            settings.identity_header = Some(header.to_owned());
            let refused = run(place.clone(), settings).await.unwrap_err();
            assert_eq!(refused.exit_code(), runtime::error::EXIT_INVALID);
            assert!(
                refused.to_string().contains("--identity-header"),
                "{refused}"
            );
        }
    }
}
