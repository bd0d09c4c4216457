//! A real Prometheus (Debian's) on loopback, scraping Envoys' `/stats/prometheus` every
//! second, for the tests of the canary analysis: what the controller reads in production,
//! scraped from the same Envoy stats.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime};

use anyhow::{anyhow, bail, Context, Result};
use serde_json::Value;

use crate::envoy::free_port;
use crate::process::ChildGuard;
use crate::wait;

/// Seconds between scrapes.
pub const SCRAPE_INTERVAL_SECONDS: u64 = 1;
/// How long Prometheus may take to start and to scrape every target once.
const PATIENCE: Duration = Duration::from_secs(30);
/// Starts on a fresh port after losing the one picked to another process.
const PORT_ATTEMPTS: u32 = 3;

/// A running Prometheus; killed when dropped, its data directory removed with it.
pub struct Prometheus {
    process: ChildGuard,
    address: SocketAddr,
    dir: tempfile::TempDir,
    agent: ureq::Agent,
    targets: usize,
}

/// The Prometheus binary: `$PROMETHEUS_BIN`, else `prometheus` on the `PATH` (`make setup`
/// installs Debian's).
pub fn prometheus_bin() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os("PROMETHEUS_BIN") {
        return Ok(PathBuf::from(path));
    }
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .map(|dir| dir.join("prometheus"))
        .find(|path| path.is_file())
        .ok_or_else(|| {
            anyhow!("prometheus is not installed: run `make setup` (apt-get install prometheus) or set PROMETHEUS_BIN")
        })
}

impl Prometheus {
    /// Starts Prometheus scraping the Envoy admin interfaces at `targets`, and waits until it
    /// is ready and has scraped each of them successfully.
    pub fn start(targets: &[SocketAddr]) -> Result<Prometheus> {
        let mut attempt = 1;
        loop {
            let mut prometheus = Prometheus::spawn(targets, free_port()?)?;
            match prometheus.wait_ready() {
                Ok(()) => return Ok(prometheus),
                Err(_) if prometheus.lost_its_port() && attempt < PORT_ATTEMPTS => attempt += 1,
                Err(err) => return Err(prometheus.explain(err)),
            }
        }
    }

    fn spawn(targets: &[SocketAddr], port: u16) -> Result<Prometheus> {
        let dir = tempfile::Builder::new()
            .prefix("sticky-prometheus-")
            .tempdir()
            .context("creating Prometheus's directory")?;
        let quoted: Vec<String> = targets.iter().map(|t| format!("\"{t}\"")).collect();
        let config = format!(
            "global:\n  scrape_interval: {SCRAPE_INTERVAL_SECONDS}s\n  scrape_timeout: {SCRAPE_INTERVAL_SECONDS}s\n\
             scrape_configs:\n  - job_name: envoy\n    metrics_path: /stats/prometheus\n    \
             static_configs:\n      - targets: [{}]\n",
            quoted.join(", ")
        );
        let config_path = dir.path().join("prometheus.yml");
        std::fs::write(&config_path, config).context("writing prometheus.yml")?;
        let log = std::fs::File::create(dir.path().join("prometheus.log"))?;
        let address = SocketAddr::from(([127, 0, 0, 1], port));
        let mut command = Command::new(prometheus_bin()?);
        command
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={address}"))
            .arg("--log.level=info")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        let process = ChildGuard::spawn(command, "prometheus")?;
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(5)))
            .build()
            .into();
        Ok(Prometheus {
            process,
            address,
            dir,
            agent,
            targets: targets.len(),
        })
    }

    /// The base URL of its HTTP API, as `stickyctl controller --prometheus` takes it.
    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// The result of the instant query `expr` (`data.result`), or the error Prometheus gives.
    pub fn query(&self, expr: &str) -> Result<Vec<Value>> {
        let mut response = self
            .agent
            .get(format!("{}/api/v1/query", self.url()))
            .query("query", expr)
            .call()
            .with_context(|| format!("querying Prometheus for {expr}"))?;
        let text = response
            .body_mut()
            .read_to_string()
            .context("Prometheus's answer")?;
        let body: Value =
            serde_json::from_str(&text).with_context(|| format!("Prometheus answered {text}"))?;
        if body["status"] != "success" {
            bail!("{}: {}", body["errorType"], body["error"]);
        }
        body.pointer("/data/result")
            .and_then(Value::as_array)
            .cloned()
            .ok_or_else(|| anyhow!("no data.result in {body}"))
    }

    /// Everything it logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default()
    }

    fn lost_its_port(&self) -> bool {
        self.log().contains("address already in use")
    }

    fn explain(&self, err: anyhow::Error) -> anyhow::Error {
        let log = self.log();
        let tail: Vec<&str> = log
            .lines()
            .rev()
            .take(20)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        err.context(format!("Prometheus's log ends with:\n{}", tail.join("\n")))
    }

    fn get(&self, path: &str) -> Result<(u16, String)> {
        let mut response = self.agent.get(format!("{}{path}", self.url())).call()?;
        let status = response.status().as_u16();
        Ok((status, response.body_mut().read_to_string()?))
    }

    fn wait_for<T>(
        &mut self,
        what: &str,
        mut probe: impl FnMut(&Self) -> Result<Option<T>>,
    ) -> Result<T> {
        wait::until(
            &format!("Prometheus to show {what}"),
            PATIENCE,
            Duration::from_millis(100),
            || {
                if let Some(value) = probe(self)? {
                    return Ok(Some(value));
                }
                if let Some(exit) = self.process.exited() {
                    bail!("{exit} while waiting for {what}");
                }
                Ok(None)
            },
        )
    }

    fn wait_ready(&mut self) -> Result<()> {
        self.wait_for("/-/ready", |p| {
            // Connection refused means "not listening yet".
            Ok(p.get("/-/ready")
                .ok()
                .filter(|(status, _)| *status == 200)
                .map(drop))
        })?;
        self.wait_for_scrapes_after(SystemTime::UNIX_EPOCH)
    }

    /// The targets' last successful scrapes, once every one has one.
    fn last_scrapes(&self) -> Result<Option<Vec<SystemTime>>> {
        let (_, body) = self.get("/api/v1/targets?state=active")?;
        let json: Value = serde_json::from_str(&body).context("parsing /api/v1/targets")?;
        let active = json["data"]["activeTargets"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if active.len() < self.targets {
            return Ok(None);
        }
        let mut scrapes = Vec::new();
        for target in &active {
            if target["health"] != "up" {
                return Ok(None);
            }
            let last = target["lastScrape"].as_str().unwrap_or_default();
            let Ok(at) = last.parse::<jiff::Timestamp>() else {
                return Ok(None);
            };
            scrapes.push(SystemTime::from(at));
        }
        Ok(Some(scrapes))
    }

    /// Waits until every target was scraped successfully after `after`, so what happened
    /// before it is in Prometheus.
    pub fn wait_for_scrapes_after(&mut self, after: SystemTime) -> Result<()> {
        self.wait_for("a scrape of every target", |p| {
            Ok(p.last_scrapes()?
                .filter(|scrapes| scrapes.iter().all(|&at| at > after))
                .map(drop))
        })
    }
}
