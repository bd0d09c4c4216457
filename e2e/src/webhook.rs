//! A webhook receiver on loopback: records the JSON body of every POST it gets and answers
//! 200, or 500 to the first `fail_first` requests (to prove notices are retried).

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::Value;

/// A running receiver; its thread ends with the test process.
#[derive(Debug, Clone)]
pub struct Webhook {
    address: SocketAddr,
    received: Arc<Mutex<Vec<Value>>>,
}

impl Webhook {
    /// Starts a receiver on a free loopback port.
    pub fn start(fail_first: usize) -> Result<Webhook> {
        let listener = TcpListener::bind("127.0.0.1:0").context("binding the webhook receiver")?;
        let address = listener.local_addr()?;
        let received = Arc::new(Mutex::new(Vec::new()));
        let store = Arc::clone(&received);
        std::thread::spawn(move || {
            let mut served = 0;
            for stream in listener.incoming().flatten() {
                served += 1;
                let status = if served <= fail_first { 500 } else { 200 };
                let mut reader = BufReader::new(&stream);
                if let Some(body) = read_post(&mut reader) {
                    if status == 200 {
                        if let Ok(mut r) = store.lock() {
                            r.push(body);
                        }
                    }
                }
                let reply = format!(
                    "HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                );
                let _ = (&stream).write_all(reply.as_bytes());
            }
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
        let deadline = Instant::now() + within;
        loop {
            if let Some(text) = self.texts().into_iter().find(|t| t.contains(needle)) {
                return Ok(text);
            }
            if Instant::now() > deadline {
                bail!(
                    "no notice with {needle:?} within {within:?}; got {:#?}",
                    self.texts()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// The JSON body of one HTTP/1.1 request with a content-length.
fn read_post(reader: &mut impl BufRead) -> Option<Value> {
    let mut length = 0;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().ok()?;
            }
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    serde_json::from_slice(&body).ok()
}
