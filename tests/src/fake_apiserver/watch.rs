//! WATCH responses: newline-delimited JSON events, first the initial state or the retained
//! history after the requested resourceVersion, then live events, until `timeoutSeconds` or the
//! client hangs up. A resourceVersion older than the history gets the real server's answer: an
//! `ERROR` event carrying a 410 `Expired` Status, after which clients re-list.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use serde_json::{json, Value};
use tokio::sync::{broadcast, mpsc};

use super::request_path::api_version;

use super::api_error::ApiError;
use super::selectors::Selector;
use super::store::{Event, EventType};

/// What one watch sees and how it presents objects.
#[derive(Debug, Clone)]
pub struct WatchScope {
    /// API group watched.
    pub group: String,
    /// Version objects are presented in.
    pub version: String,
    /// Plural watched.
    pub plural: String,
    /// Kind, for bookmark objects.
    pub kind: String,
    /// Namespace, `None` for all.
    pub namespace: Option<String>,
    /// Label and field selector.
    pub selector: Selector,
}

/// How the watch starts and ends.
#[derive(Debug, Clone)]
pub struct WatchOptions {
    /// Send a BOOKMARK with the latest resourceVersion before closing on timeout, and the
    /// initial-events-end bookmark after `sendInitialEvents`.
    pub bookmarks: bool,
    /// `sendInitialEvents=true`: the stream starts with the current state and a bookmark
    /// annotated `k8s.io/initial-events-end`.
    pub send_initial_events: bool,
    /// The stream ends after this long (`timeoutSeconds`).
    pub timeout: Duration,
}

impl WatchScope {
    fn present(&self, object: &Value) -> Value {
        let mut object = object.clone();
        object["apiVersion"] = json!(api_version(&self.group, &self.version));
        object
    }

    /// The event this watch reports for a stored change, if any. With a selector, an object that
    /// starts matching is ADDED and one that stops matching is DELETED, like the real server.
    pub fn visible(&self, event: &Event) -> Option<(EventType, Value)> {
        let key = &event.key;
        let in_scope = key.group == self.group
            && key.plural == self.plural
            && self
                .namespace
                .as_ref()
                .is_none_or(|ns| &key.namespace == ns);
        if !in_scope {
            return None;
        }
        let now = self.selector.matches(&event.object);
        let before = event
            .previous
            .as_ref()
            .is_some_and(|p| self.selector.matches(p));
        let event_type = match (event.event_type, before, now) {
            (EventType::Modified, true, true) => EventType::Modified,
            (EventType::Modified, false, true) | (EventType::Added, _, true) => EventType::Added,
            (EventType::Modified, true, false) | (EventType::Deleted, _, true) => {
                EventType::Deleted
            }
            _ => return None,
        };
        Some((event_type, self.present(&event.object)))
    }

    fn bookmark(&self, resource_version: u64, initial_events_end: bool) -> Bytes {
        let mut metadata = json!({"resourceVersion": resource_version.to_string()});
        if initial_events_end {
            metadata["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        line(
            "BOOKMARK",
            &json!({"apiVersion": api_version(&self.group, &self.version), "kind": self.kind, "metadata": metadata}),
        )
    }
}

/// One event line.
pub fn line(event_type: &str, object: &Value) -> Bytes {
    let mut text = json!({"type": event_type, "object": object}).to_string();
    text.push('\n');
    Bytes::from(text)
}

/// Where the watch starts, computed under the store lock.
pub enum Start {
    /// ADDED events for the current objects, then live events.
    CurrentState {
        /// The current objects, already filtered and presented.
        objects: Vec<Value>,
        /// The store's resourceVersion at that moment.
        resource_version: u64,
    },
    /// Retained history after a resourceVersion, then live events.
    History {
        /// Events after the requested resourceVersion.
        events: Vec<Arc<Event>>,
        /// The requested resourceVersion.
        from: u64,
    },
    /// The requested resourceVersion is too old.
    Expired(ApiError),
}

/// Streams the watch: `start` first, then events from `live` until timeout or hang-up.
pub fn respond(
    scope: WatchScope,
    options: WatchOptions,
    start: Start,
    live: broadcast::Receiver<Arc<Event>>,
) -> Response {
    let (tx, rx) = mpsc::channel::<Bytes>(64);
    tokio::spawn(stream_events(scope, options, start, live, tx));
    let body = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|chunk| (Ok::<_, Infallible>(chunk), rx))
    });
    Response::builder()
        .header("content-type", "application/json")
        .body(Body::from_stream(body))
        .unwrap_or_else(|_| Response::new(Body::empty()))
}

async fn stream_events(
    scope: WatchScope,
    options: WatchOptions,
    start: Start,
    mut live: broadcast::Receiver<Arc<Event>>,
    tx: mpsc::Sender<Bytes>,
) {
    let mut first_lines = Vec::new();
    let mut last_seen = match start {
        Start::Expired(error) => {
            // A closed client is the only possible send error; the watch is over either way.
            let _ = tx.send(line("ERROR", &error.status_body())).await;
            return;
        }
        Start::CurrentState {
            objects,
            resource_version,
        } => {
            first_lines.extend(objects.iter().map(|o| line(EventType::Added.as_str(), o)));
            if options.send_initial_events && options.bookmarks {
                first_lines.push(scope.bookmark(resource_version, true));
            }
            resource_version
        }
        Start::History { events, from } => {
            let mut last = from;
            for event in &events {
                last = event.resource_version;
                if let Some((event_type, object)) = scope.visible(event) {
                    first_lines.push(line(event_type.as_str(), &object));
                }
            }
            last
        }
    };
    for chunk in first_lines {
        if tx.send(chunk).await.is_err() {
            return;
        }
    }
    let deadline = tokio::time::sleep(options.timeout);
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            () = &mut deadline => {
                if options.bookmarks {
                    let _ = tx.send(scope.bookmark(last_seen, false)).await;
                }
                return;
            }
            () = tx.closed() => return,
            received = live.recv() => match received {
                Ok(event) => {
                    last_seen = event.resource_version;
                    if let Some((event_type, object)) = scope.visible(&event) {
                        if tx.send(line(event_type.as_str(), &object)).await.is_err() {
                            return;
                        }
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    let _ = tx.send(line("ERROR", &ApiError::expired(last_seen, last_seen).status_body())).await;
                    return;
                }
                Err(broadcast::error::RecvError::Closed) => return,
            },
        }
    }
}
