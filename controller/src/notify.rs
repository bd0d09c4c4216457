//! Notifications of a rollout's steps, holds, rollbacks and promotions, posted to a webhook as
//! Slack-compatible JSON (`{"text": "..."}`; Slack, Mattermost and Teams' incoming webhooks
//! take it).
//!
//! Sending never holds a rollout up: the notices of one transition are posted in order from a
//! background task, each retried at most [`ATTEMPTS`] times with backoff, then dropped with a
//! warning in the log.

use std::time::Duration;

use kube::ResourceExt;
use serde_json::{json, Value};

use crate::model::StickyCanary;

/// Attempts per notice before it is dropped.
pub const ATTEMPTS: u32 = 5;
/// How long one attempt may take.
const TIMEOUT: Duration = Duration::from_secs(5);

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

/// Posts `notices` of `rollout` to `url` in the background, in order (the controller).
pub fn send(client: &reqwest::Client, url: &str, rollout: &str, notices: Vec<String>) {
    if notices.is_empty() {
        return;
    }
    let (client, url, rollout) = (client.clone(), url.to_owned(), rollout.to_owned());
    tokio::spawn(async move { deliver(&client, &url, &rollout, notices).await });
}

/// Posts `notices` of `rollout` to `url`, in order, each with its bounded retries (a command,
/// which has already applied its change and only waits for its notices before it exits).
pub async fn deliver(client: &reqwest::Client, url: &str, rollout: &str, notices: Vec<String>) {
    for notice in notices {
        post(client, url, &payload(rollout, &notice)).await;
    }
}

async fn post(client: &reqwest::Client, url: &str, body: &Value) {
    let mut last = String::new();
    for attempt in 0..ATTEMPTS {
        let sent = client.post(url).timeout(TIMEOUT).json(body).send().await;
        match sent.and_then(reqwest::Response::error_for_status) {
            Ok(_) => return,
            Err(error) => last = error.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(200 << attempt)).await;
    }
    tracing::warn!(%url, error = %last, "webhook: notice dropped after {ATTEMPTS} attempts");
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
}
