//! A real Prometheus (Debian's `/usr/bin/prometheus`, or `PROMETHEUS_BIN`) on loopback,
//! scraping Envoy admin endpoints every second, and its query API.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use serde_json::Value;

use crate::envoy::free_port;
use crate::process::ChildGuard;

/// How long Prometheus may take to come up.
const PATIENCE: Duration = Duration::from_secs(60);

/// A running Prometheus; stopped when dropped.
pub struct Prometheus {
    address: SocketAddr,
    agent: ureq::Agent,
    _process: ChildGuard,
    dir: tempfile::TempDir,
}

fn prometheus_bin() -> Result<PathBuf> {
    let path = PathBuf::from(
        std::env::var("PROMETHEUS_BIN").unwrap_or_else(|_| "/usr/bin/prometheus".into()),
    );
    if !path.is_file() {
        bail!(
            "Prometheus not found at {} (make setup installs Debian's; PROMETHEUS_BIN moves it)",
            path.display()
        );
    }
    Ok(path)
}

impl Prometheus {
    /// Starts Prometheus scraping `/stats/prometheus` of each Envoy admin in `targets` every
    /// second, job `envoy`.
    pub fn scraping_envoys(targets: &[SocketAddr]) -> Result<Prometheus> {
        let dir = tempfile::Builder::new()
            .prefix("sticky-prometheus-")
            .tempdir()?;
        let targets: Vec<String> = targets.iter().map(|t| format!("\"{t}\"")).collect();
        let config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: envoy\n    metrics_path: /stats/prometheus\n    static_configs:\n      - targets: [{}]\n",
            targets.join(", ")
        );
        let config_path = dir.path().join("prometheus.yml");
        std::fs::write(&config_path, config)?;
        let address = SocketAddr::from(([127, 0, 0, 1], free_port()?));
        let log = std::fs::File::create(dir.path().join("prometheus.log"))?;
        let mut command = Command::new(prometheus_bin()?);
        command
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={address}"))
            .arg("--log.level=warn")
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        let mut process = ChildGuard::spawn(command, "prometheus")?;
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(10)))
            .build()
            .into();
        let deadline = Instant::now() + PATIENCE;
        loop {
            let ready = agent
                .get(format!("http://{address}/-/ready"))
                .call()
                .is_ok_and(|r| r.status() == 200);
            if ready {
                break;
            }
            if let Some(exit) = process.exited() {
                let log =
                    std::fs::read_to_string(dir.path().join("prometheus.log")).unwrap_or_default();
                bail!("Prometheus {exit} before it was ready:\n{log}");
            }
            if Instant::now() > deadline {
                bail!("Prometheus not ready within {PATIENCE:?}");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        Ok(Prometheus {
            address,
            agent,
            _process: process,
            dir,
        })
    }

    /// The result of the instant query `expr` (`data.result`), or the error Prometheus gives.
    pub fn query(&self, expr: &str) -> Result<Vec<Value>> {
        let mut response = self
            .agent
            .get(format!("http://{}/api/v1/query", self.address))
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

    /// Whether every target's last scrape succeeded.
    pub fn targets_up(&self) -> Result<bool> {
        let up = self.query("up")?;
        Ok(!up.is_empty() && up.iter().all(|s| s["value"][1] == "1"))
    }

    /// The end of Prometheus's log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default()
    }
}
