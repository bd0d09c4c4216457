//! `stickyctl dashboard`: a web page to see and steer every rollout of a cluster or of an
//! Envoy directory, live. Every action is the CLI's command, run through [`runtime::act::act`]
//! (its notices posted in the background) and recorded in the history as done by the
//! dashboard. A front end: it acts only through `runtime` and depends on no other front end.
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

/// Serves the dashboard of the rollouts at `place` on `listen` until Ctrl-C.
pub async fn run(
    place: Place,
    listen: SocketAddr,
    token: Option<String>,
    prometheus: Option<Prometheus>,
) -> Result<(), Error> {
    let token = token.filter(|t| !t.is_empty());
    if action::needs_token(&listen) && token.is_none() {
        return Err(Error::Invalid(format!(
            "{listen} is not a loopback address: the dashboard's actions need a token (--token, --dashboard-token of `controller`, or STICKY_DASHBOARD_TOKEN)"
        )));
    }
    let listener = server::bind(listen).await?;
    eprintln!(
        "dashboard on http://{}/ (actions {})",
        listener.local_addr().map_or(listen, |a| a),
        if token.is_some() {
            "need the token"
        } else {
            "open to this machine"
        }
    );
    server::serve(listener, place, token, prometheus.map(charts::Charts::new)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_non_loopback_address_needs_a_token() {
        let place = Place::EnvoyDir(std::env::temp_dir());
        for token in [None, Some(String::new())] {
            let refused = run(place.clone(), "0.0.0.0:0".parse().unwrap(), token, None)
                .await
                .unwrap_err();
            assert_eq!(refused.exit_code(), runtime::error::EXIT_INVALID);
            assert!(refused.to_string().contains("--token"), "{refused}");
        }
    }
}
