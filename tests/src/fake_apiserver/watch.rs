//! WATCH responses: newline-delimited JSON events, first the initial state or the retained
//! history after the requested resourceVersion, then live events, until `timeoutSeconds` or the
//! client hangs up. A resourceVersion older than the history gets the real server's answer: an
//! `ERROR` event carrying a 410 `Expired` Status, after which clients re-list.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use serde_json::{json, Value};
use tokio::sync::{broadcast, mpsc};

use super::request_path::api_version;

use super::api_error::ApiError;
use super::faults::{Fate, Faults};
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
        /// The store's resourceVersion at that moment (a stale snapshot's, see
        /// [`super::FakeApiServer::serve_stale_lists`]).
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

/// Streams the watch: `start` first, then events from `live` until timeout or hang-up, each
/// live event dropped or delayed as `faults` decide.
pub fn respond(
    scope: WatchScope,
    options: WatchOptions,
    start: Start,
    live: broadcast::Receiver<Arc<Event>>,
    faults: Arc<Mutex<Faults>>,
) -> Response {
    let (tx, rx) = mpsc::channel::<Bytes>(64);
    // Subscribed before the response goes out, so an expiry right after the client got its
    // stream is never missed.
    let expire = faults
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .expire
        .subscribe();
    tokio::spawn(stream_events(scope, options, start, live, tx, expire));
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
    mut expire: tokio::sync::watch::Receiver<u64>,
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
    // Delayed events, by due time then arrival: a later event due sooner overtakes them.
    let mut held: BinaryHeap<Reverse<(tokio::time::Instant, u64, Bytes)>> = BinaryHeap::new();
    let mut arrivals = 0u64;
    loop {
        let next_due = held.peek().map(|Reverse((due, _, _))| *due);
        tokio::select! {
            () = &mut deadline => {
                if options.bookmarks {
                    let _ = tx.send(scope.bookmark(last_seen, false)).await;
                }
                return;
            }
            () = tx.closed() => return,
            _ = expire.changed() => {
                let _ = tx.send(line("ERROR", &ApiError::expired(last_seen, last_seen + 1).status_body())).await;
                return;
            }
            () = sleep_until(next_due) => {
                if let Some(Reverse((_, _, chunk))) = held.pop() {
                    if tx.send(chunk).await.is_err() {
                        return;
                    }
                }
            }
            received = live.recv() => match received {
                Ok(event) => {
                    last_seen = event.resource_version;
                    if let Some((event_type, object)) = scope.visible(&event) {
                        let fate = event.fate;
                        let chunk = line(event_type.as_str(), &object);
                        match fate {
                            Fate::Drop => {}
                            Fate::Deliver if held.is_empty() => {
                                if tx.send(chunk).await.is_err() {
                                    return;
                                }
                            }
                            Fate::Deliver | Fate::Delay(_) => {
                                let delay = match fate {
                                    Fate::Delay(delay) => delay,
                                    _ => Duration::ZERO,
                                };
                                arrivals += 1;
                                let due = tokio::time::Instant::now() + delay;
                                held.push(Reverse((due, arrivals, chunk)));
                            }
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

/// Sleeps until `due`, or forever without one.
async fn sleep_until(due: Option<tokio::time::Instant>) {
    match due {
        Some(due) => tokio::time::sleep_until(due).await,
        None => std::future::pending().await,
    }
}
