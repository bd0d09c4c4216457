//! One Envoy 1.40 process started from a bootstrap, whatever feeds it its configuration
//! (files in its directory, or istiod over xDS): start, wait, read its log, read its stats.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use runtime::fsutil::write_atomic;
use serde_json::Value;

use crate::browser::Http;
use crate::locate;
use crate::process::ChildGuard;
use crate::wait;

/// How long Envoy may take to start or to apply a configuration (it compiles the .wasm).
pub const PATIENCE: Duration = Duration::from_secs(30);
const BOOTSTRAP_FILE: &str = "bootstrap.json";
const ADMIN_ADDRESS_FILE: &str = "admin-address";
const LOG_FILE: &str = "envoy.log";

/// Writes `value` as JSON to `path`, atomically.
pub fn write_json(path: &Path, value: &Value) -> Result<()> {
    let text = serde_json::to_vec_pretty(value)?;
    write_atomic(path, &text).with_context(|| format!("writing {}", path.display()))
}

/// A running Envoy; killed when dropped, its directory removed with it.
pub struct EnvoyProcess {
    process: ChildGuard,
    dir: tempfile::TempDir,
    name: String,
    admin: Option<(SocketAddr, Http)>,
}

impl EnvoyProcess {
    /// Starts Envoy named `name` (in errors) with `bootstrap`, `concurrency` workers and the
    /// extra `args`, in `dir` (which holds its bootstrap, log and whatever else the caller put
    /// there), without waiting for it. The admin address is taken from the bootstrap as given;
    /// port 0 is usual, read back by [`EnvoyProcess::wait_ready`].
    pub fn spawn(
        name: &str,
        dir: tempfile::TempDir,
        bootstrap: &Value,
        concurrency: u8,
        args: &[&str],
    ) -> Result<EnvoyProcess> {
        EnvoyProcess::spawn_via(&[], name, dir, bootstrap, concurrency, args)
    }

    /// [`EnvoyProcess::spawn`] with Envoy run by `launcher` (a program and its arguments, such
    /// as `taskset -c 1` or `valgrind --tool=callgrind`), which is given Envoy's command line.
    pub fn spawn_via(
        launcher: &[String],
        name: &str,
        dir: tempfile::TempDir,
        bootstrap: &Value,
        concurrency: u8,
        args: &[&str],
    ) -> Result<EnvoyProcess> {
        let envoy_bin = locate::envoy_bin()?;
        let bootstrap_path = dir.path().join(BOOTSTRAP_FILE);
        write_json(&bootstrap_path, bootstrap)?;
        let log = std::fs::File::create(dir.path().join(LOG_FILE))?;
        let mut command = match launcher.split_first() {
            Some((program, launcher_args)) => {
                let mut command = Command::new(program);
                command.args(launcher_args).arg(&envoy_bin);
                command
            }
            None => Command::new(&envoy_bin),
        };
        command
            .arg("--config-path")
            .arg(&bootstrap_path)
            .arg("--admin-address-path")
            .arg(dir.path().join(ADMIN_ADDRESS_FILE))
            .args(["--concurrency", &concurrency.to_string()])
            // Several Envoys run side by side: no shared memory for hot restarts.
            .arg("--disable-hot-restart")
            // A replaced listener closes its old connections at once instead of over 10 min.
            .args(["--drain-strategy", "immediate", "--drain-time-s", "1"])
            .args(["--log-level", "warning"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        let process = ChildGuard::spawn(command, name)?;
        Ok(EnvoyProcess {
            process,
            dir,
            name: name.to_owned(),
            admin: None,
        })
    }

    /// Waits for the admin address and for `/ready`.
    pub fn wait_ready(&mut self) -> Result<()> {
        let address_file = self.dir.path().join(ADMIN_ADDRESS_FILE);
        let admin: SocketAddr = self.wait_for("the admin address", |_| {
            Ok(std::fs::read_to_string(&address_file)
                .ok()
                .and_then(|text| text.trim().parse().ok()))
        })?;
        let http = Http::new(admin);
        self.admin = Some((admin, http.clone()));
        self.wait_for("/ready", |_| {
            Ok((http.get("/ready", &[])?.status == 200).then_some(()))
        })
    }

    /// The admin interface; an error before [`EnvoyProcess::wait_ready`] found it.
    pub fn admin(&self) -> Result<&Http> {
        self.admin
            .as_ref()
            .map(|(_, http)| http)
            .ok_or_else(|| anyhow!("{}: its admin address is not known yet", self.name))
    }

    /// Where the admin interface listens (what Prometheus scrapes `/stats/prometheus` from).
    pub fn admin_address(&self) -> Result<SocketAddr> {
        self.admin
            .as_ref()
            .map(|&(address, _)| address)
            .ok_or_else(|| anyhow!("{}: its admin address is not known yet", self.name))
    }

    /// Polls `probe` until it yields a value, Envoy dies, or `PATIENCE` runs out.
    pub fn wait_for<T>(
        &mut self,
        what: &str,
        probe: impl FnMut(&Self) -> Result<Option<T>>,
    ) -> Result<T> {
        self.wait_for_within(what, PATIENCE, probe)
    }

    /// [`EnvoyProcess::wait_for`] with another patience.
    pub fn wait_for_within<T>(
        &mut self,
        what: &str,
        patience: Duration,
        mut probe: impl FnMut(&Self) -> Result<Option<T>>,
    ) -> Result<T> {
        let waited_for = format!("{} to show {what}", self.name);
        wait::until(&waited_for, patience, Duration::from_millis(50), || {
            if let Some(value) = probe(self)? {
                return Ok(Some(value));
            }
            if let Some(exit) = self.process.exited() {
                bail!("{exit} while waiting for {what}");
            }
            Ok(None)
        })
    }

    /// Adds the end of Envoy's log to an error, since that is where Envoy says what went wrong.
    pub fn explain(&self, err: anyhow::Error) -> anyhow::Error {
        let log = self.log().unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(20).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        err.context(format!(
            "{} log ({}):\n{}",
            self.name,
            self.log_path().display(),
            tail.join("\n")
        ))
    }

    /// The process id (Envoy's own under a launcher that execs it, as taskset and valgrind do).
    pub fn pid(&mut self) -> u32 {
        self.process.child_mut().id()
    }

    /// `Some(description)` once the process has exited.
    pub fn exited(&mut self) -> Option<String> {
        self.process.exited()
    }

    /// The directory holding the bootstrap and the log.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join(LOG_FILE)
    }

    /// Everything Envoy logged so far.
    pub fn log(&self) -> Result<String> {
        let bytes = std::fs::read(self.log_path()).context("reading Envoy's log")?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    /// `/config_dump` with `query` (e.g. `resource=dynamic_listeners`), parsed.
    pub fn config_dump(&self, query: &str) -> Result<Value> {
        let body = self
            .admin()?
            .get(&format!("/config_dump?{query}"), &[])?
            .body;
        serde_json::from_str(&body).context("parsing /config_dump")
    }

    /// Every counter and gauge from `/stats`, by name.
    pub fn stats(&self) -> Result<BTreeMap<String, u64>> {
        let text = self.admin()?.get("/stats", &[])?.body;
        // Lines are `name: value`; histograms have non-numeric values and are skipped.
        Ok(text
            .lines()
            .filter_map(|line| {
                let (name, value) = line.rsplit_once(": ")?;
                Some((name.to_owned(), value.parse().ok()?))
            })
            .collect())
    }

    /// One counter or gauge from `/stats`; absent counts as an error, so typos fail loudly.
    pub fn stat(&self, name: &str) -> Result<u64> {
        self.stats()?
            .get(name)
            .copied()
            .ok_or_else(|| anyhow!("{} has no stat {name:?}", self.name))
    }

    /// The Prometheus exposition from `/stats/prometheus`.
    pub fn prometheus(&self) -> Result<String> {
        Ok(self.admin()?.get("/stats/prometheus", &[])?.body)
    }
}
