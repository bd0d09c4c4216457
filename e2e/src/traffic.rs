//! Load from a client process: `sticky-load` (see its source) run for a while against a
//! listener, and what it saw each version serve.

use std::collections::BTreeMap;
use std::io::Read;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::process::ChildGuard;

/// What one version served to the load.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Served {
    /// Page visits whose document it served.
    pub pages: u64,
    /// Requests it served (documents and sub-resources).
    pub requests: u64,
    /// Those answered 5xx.
    pub errors: u64,
}

/// What the load saw, by the version that served (`x-served-by`; `""` when absent).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    /// Per version.
    pub versions: BTreeMap<String, Served>,
    /// Visits cut short by a transport error.
    pub transport_errors: u64,
}

impl Summary {
    /// Adds another summary's counts.
    pub fn add(&mut self, other: &Summary) {
        for (version, served) in &other.versions {
            let mine = self.versions.entry(version.clone()).or_default();
            mine.pages += served.pages;
            mine.requests += served.requests;
            mine.errors += served.errors;
        }
        self.transport_errors += other.transport_errors;
    }

    /// What `version` served (zeros if nothing).
    pub fn of(&self, version: &str) -> Served {
        self.versions.get(version).copied().unwrap_or_default()
    }
}

/// Threads of a `sticky-load` process.
const THREADS: usize = 2;

/// How much load, for how long.
#[derive(Debug, Clone, Copy)]
pub struct TrafficOptions {
    /// Page visits per second (a visit is about 4 requests).
    pub visits_per_second: f64,
    /// How long the load runs, then stops by itself.
    pub seconds: u64,
    /// Every n-th visit is by a first-time visitor; 0: never, the same browsers come back.
    pub new_every: u64,
    /// Returning browsers (cookies kept), over all threads.
    pub returning: usize,
}

/// A running `sticky-load` process; killed when dropped.
pub struct Traffic {
    process: ChildGuard,
}

impl Traffic {
    /// Starts `bin` (the `sticky-load` binary) against `listener`.
    pub fn start(bin: &Path, listener: SocketAddr, options: TrafficOptions) -> Result<Traffic> {
        Traffic::start_on(bin, listener, None, options)
    }

    /// [`Traffic::start`] with every visit naming `host`, as a gateway that serves several
    /// services by host needs.
    pub fn start_on(
        bin: &Path,
        listener: SocketAddr,
        host: Option<&str>,
        options: TrafficOptions,
    ) -> Result<Traffic> {
        let mut command = Command::new(bin);
        if let Some(host) = host {
            command.arg(format!("--host={host}"));
        }
        command
            .arg(format!("--target={listener}"))
            .arg(format!("--rate={}", options.visits_per_second))
            .arg(format!("--seconds={}", options.seconds))
            .arg(format!("--new-every={}", options.new_every))
            .arg(format!("--threads={THREADS}"))
            .arg(format!(
                "--browsers={}",
                options.returning.div_ceil(THREADS)
            ))
            .stdin(Stdio::null())
            .stdout(Stdio::piped());
        Ok(Traffic {
            process: ChildGuard::spawn(command, "sticky-load")?,
        })
    }

    /// Waits until the load has run its time, and returns what it saw.
    pub fn finish(mut self) -> Result<Summary> {
        let child = self.process.child_mut();
        let mut out = String::new();
        child
            .stdout
            .take()
            .ok_or_else(|| anyhow!("sticky-load: no stdout pipe"))?
            .read_to_string(&mut out)
            .context("reading sticky-load's summary")?;
        let status = child.wait().context("waiting for sticky-load")?;
        if !status.success() {
            bail!("sticky-load exited: {status}");
        }
        serde_json::from_str(out.trim()).with_context(|| format!("sticky-load printed {out:?}"))
    }
}
