//! A real browser: Debian's Chromium driven through Playwright (`e2e/chromium/driver.cjs`, run
//! by Node.js), for what a simulated browser cannot show: speculative prefetch and prerender,
//! several tabs sharing one cookie jar, the back/forward cache, CORS preflights.
//!
//! The driver takes one JSON command per line and answers each with one line; every answer is
//! awaited for at most [`PATIENCE`], so a hung browser fails the test instead of blocking it.

use std::io::{BufRead, BufReader, Write};
use std::process::{ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::locate;
use crate::process::ChildGuard;
use crate::wait;

/// How long one command may take (a navigation, a script).
pub const PATIENCE: Duration = Duration::from_secs(30);

/// A running Chromium with its driver; both stop when dropped.
pub struct Chromium {
    /// `None` once closed, which tells the driver to close the browser.
    stdin: Option<ChildStdin>,
    answers: Receiver<String>,
    process: ChildGuard,
}

/// A tab of the browser.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tab(usize);

/// A response a tab's frames received, as Playwright saw it.
#[derive(Debug, Clone, Deserialize)]
pub struct Seen {
    /// The URL requested.
    pub url: String,
    /// The status.
    pub status: u16,
    /// The version that served it (`x-served-by`), if it went through to an upstream.
    #[serde(rename = "servedBy")]
    pub served_by: Option<String>,
    /// The request method.
    pub method: String,
}

/// A cookie in the browser's jar.
#[derive(Debug, Clone, Deserialize)]
pub struct Cookie {
    /// Its name.
    pub name: String,
    /// Its value.
    pub value: String,
    /// Its domain: the host for a host-only cookie, `.shop.test` for `Domain=shop.test`.
    pub domain: String,
}

impl Chromium {
    /// Starts Chromium headless with these extra flags (such as `--host-resolver-rules`).
    pub fn launch(flags: &[&str]) -> Result<Chromium> {
        let node = locate::node_bin()?;
        let chromium = locate::chromium_bin()?;
        let playwright = locate::playwright_core()?;
        let driver = locate::workspace_root().join("e2e/chromium/driver.cjs");
        let mut command = Command::new(&node);
        command
            .arg(&driver)
            .arg(&playwright)
            .arg(&chromium)
            .args(flags)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped());
        let mut process = ChildGuard::spawn(command, "chromium driver")?;
        let child = process.child_mut();
        let stdin = child
            .stdin
            .take()
            .ok_or_else(|| anyhow!("chromium driver: no stdin pipe"))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| anyhow!("chromium driver: no stdout pipe"))?;
        let (sender, answers) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        let mut chromium = Chromium {
            stdin: Some(stdin),
            answers,
            process,
        };
        let ready: String = chromium
            .answer()
            .with_context(|| format!("starting {} with {}", chromium_name(), node.display()))?;
        if ready != "ready" {
            bail!("chromium driver said {ready:?} instead of ready");
        }
        Ok(chromium)
    }

    /// Opens a tab.
    pub fn tab(&mut self) -> Result<Tab> {
        self.call(json!({"op": "tab"})).map(Tab)
    }

    /// Navigates `tab` to `url` and waits for the page's `load` event; the document's status.
    pub fn goto(&mut self, tab: Tab, url: &str) -> Result<Option<u16>> {
        self.call(json!({"op": "goto", "tab": tab.0, "url": url}))
    }

    /// Evaluates the JavaScript expression `js` in `tab`, awaiting it if it is a promise.
    pub fn eval<T: DeserializeOwned>(&mut self, tab: Tab, js: &str) -> Result<T> {
        self.call(json!({"op": "eval", "tab": tab.0, "js": js}))
    }

    /// Waits until `tab` shows `url` and has loaded it (after a click).
    pub fn wait_for_url(&mut self, tab: Tab, url: &str) -> Result<String> {
        self.call(json!({"op": "waitForUrl", "tab": tab.0, "url": url}))
    }

    /// History back in `tab`, waiting for the page.
    pub fn back(&mut self, tab: Tab) -> Result<Option<u16>> {
        self.call(json!({"op": "back", "tab": tab.0}))
    }

    /// The responses `tab`'s frames received since the last call.
    pub fn responses(&mut self, tab: Tab) -> Result<Vec<Seen>> {
        self.call(json!({"op": "responses", "tab": tab.0}))
    }

    /// Every cookie in the browser.
    pub fn cookies(&mut self) -> Result<Vec<Cookie>> {
        self.call(json!({"op": "cookies"}))
    }

    /// Adds cookie `name=value`, as an earlier visit would have: host-only for the host of
    /// `scope` when it is a URL, else for the domain `scope` (such as `.shop.test`).
    pub fn add_cookie(&mut self, scope: &str, name: &str, value: &str) -> Result<()> {
        self.call::<Value>(json!({"op": "addCookie", "scope": scope, "name": name, "value": value}))
            .map(drop)
    }

    /// Clicks the element `selector` in `tab` as a person would (waits until it is visible
    /// and enabled).
    pub fn click(&mut self, tab: Tab, selector: &str) -> Result<()> {
        self.call::<Value>(json!({"op": "click", "tab": tab.0, "selector": selector}))
            .map(drop)
    }

    /// Types `value` into the input `selector` of `tab`.
    pub fn fill(&mut self, tab: Tab, selector: &str, value: &str) -> Result<()> {
        self.call::<Value>(
            json!({"op": "fill", "tab": tab.0, "selector": selector, "value": value}),
        )
        .map(drop)
    }

    /// Focuses `selector` in `tab` and presses `key` (such as `Enter`).
    pub fn press(&mut self, tab: Tab, selector: &str, key: &str) -> Result<()> {
        self.call::<Value>(json!({"op": "press", "tab": tab.0, "selector": selector, "key": key}))
            .map(drop)
    }

    /// Waits at most `timeout` until the JavaScript expression `js` is truthy in `tab`;
    /// returns its value.
    pub fn wait_for<T: DeserializeOwned>(
        &mut self,
        tab: Tab,
        js: &str,
        timeout: Duration,
    ) -> Result<T> {
        let millis = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
        self.call(json!({"op": "waitFor", "tab": tab.0, "js": js, "timeoutMs": millis}))
    }

    /// Saves a full-page screenshot of `tab` as a PNG at `path`.
    pub fn screenshot(&mut self, tab: Tab, path: &std::path::Path) -> Result<()> {
        self.call::<Value>(json!({"op": "screenshot", "tab": tab.0, "path": path}))
            .map(drop)
    }

    fn call<T: DeserializeOwned>(&mut self, command: Value) -> Result<T> {
        let op = command["op"].clone();
        let mut line = command.to_string();
        line.push('\n');
        let stdin = self
            .stdin
            .as_mut()
            .ok_or_else(|| anyhow!("the chromium driver is closed"))?;
        stdin
            .write_all(line.as_bytes())
            .and_then(|()| stdin.flush())
            .with_context(|| format!("sending {op} to the chromium driver"))?;
        self.answer()
            .with_context(|| format!("chromium: {command}"))
    }

    fn answer<T: DeserializeOwned>(&mut self) -> Result<T> {
        let line = match self.answers.recv_timeout(PATIENCE) {
            Ok(line) => line,
            Err(_) => {
                let exited = self.process.exited();
                bail!(
                    "no answer within {PATIENCE:?}{}",
                    exited
                        .map(|e| format!(" (the driver {e})"))
                        .unwrap_or_default()
                );
            }
        };
        let mut answer: Value =
            serde_json::from_str(&line).with_context(|| format!("driver printed {line:?}"))?;
        if let Some(error) = answer.get("error") {
            bail!("{}", error.as_str().unwrap_or_default());
        }
        serde_json::from_value(answer["ok"].take()).with_context(|| format!("answer {line}"))
    }
}

/// How long the driver may take to close the browser before it is killed.
const CLOSING: Duration = Duration::from_secs(5);

impl Drop for Chromium {
    /// Closing the driver's input makes it close the browser (and its helper processes); the
    /// guard kills the driver should it take longer.
    fn drop(&mut self) {
        self.stdin = None;
        let closed = || Ok(self.process.exited().map(drop));
        // Not closed in time is no error here: the guard kills it.
        let _ = wait::until(
            "Chromium to close",
            CLOSING,
            Duration::from_millis(50),
            closed,
        );
    }
}

fn chromium_name() -> String {
    locate::chromium_bin()
        .map(|path| path.display().to_string())
        .unwrap_or_else(|_| "chromium".to_owned())
}
