//! A webhook receiver on loopback: records the JSON body of every request it gets and answers
//! 200, or 500 to the first `fail_first` requests (to prove notices are retried).

use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Router;
use serde_json::Value;

use crate::wait;

/// A running receiver; its thread ends with the test process.
#[derive(Debug, Clone)]
pub struct Webhook {
    address: SocketAddr,
    received: Arc<Mutex<Vec<Value>>>,
}

/// What the receiver's handler shares.
struct Receiver {
    fail_first: usize,
    served: AtomicUsize,
    received: Arc<Mutex<Vec<Value>>>,
}

impl Webhook {
    /// Starts a receiver on a free loopback port.
    pub fn start(fail_first: usize) -> Result<Webhook> {
        let listener = TcpListener::bind("127.0.0.1:0").context("binding the webhook receiver")?;
        listener.set_nonblocking(true)?;
        let address = listener.local_addr()?;
        let received = Arc::new(Mutex::new(Vec::new()));
        let receiver = Arc::new(Receiver {
            fail_first,
            served: AtomicUsize::new(0),
            received: Arc::clone(&received),
        });
        // Every method and path: the receiver answers whatever the notifier sends.
        let app = Router::new().fallback(receive).with_state(receiver);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("the webhook receiver's runtime")?;
        std::thread::spawn(move || {
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener)?;
                axum::serve(listener, app).await
            })
        });
        Ok(Webhook { address, received })
    }

    /// Its URL.
    pub fn url(&self) -> String {
        format!("http://{}/hook", self.address)
    }

    /// The `text` of every notice received so far, in order.
    pub fn texts(&self) -> Vec<String> {
        let received = self.received.lock().map(|r| r.clone()).unwrap_or_default();
        received
            .iter()
            .map(|v| v["text"].as_str().unwrap_or_default().to_owned())
            .collect()
    }

    /// Waits up to `within` for a notice containing `needle`.
    pub fn wait_for(&self, needle: &str, within: Duration) -> Result<String> {
        let what = format!("a notice with {needle:?}");
        wait::until(&what, within, Duration::from_millis(100), || {
            Ok(self.texts().into_iter().find(|t| t.contains(needle)))
        })
        .map_err(|err| anyhow!("{err}; got {:#?}", self.texts()))
    }
}

/// One request: refused while `fail_first` lasts, else its JSON body recorded.
async fn receive(State(receiver): State<Arc<Receiver>>, body: Bytes) -> StatusCode {
    if receiver.served.fetch_add(1, Ordering::SeqCst) < receiver.fail_first {
        return StatusCode::INTERNAL_SERVER_ERROR;
    }
    if let Ok(body) = serde_json::from_slice(&body) {
        if let Ok(mut received) = receiver.received.lock() {
            received.push(body);
        }
    }
    StatusCode::OK
}
