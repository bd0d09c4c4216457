//! The CNCF distribution registry (`registry serve`), storing in a temporary directory: where
//! the install guide pushes the images and the node's containerd and istio-agent pull them.

use std::net::Ipv4Addr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Result};

use crate::envoy::free_port;
use crate::process::ChildGuard;

/// A running registry, stopped when dropped.
pub struct Registry {
    /// `host:port`, as image references name it.
    pub address: String,
    _process: ChildGuard,
    _dir: tempfile::TempDir,
}

impl Registry {
    /// Starts `bin` on a free port of `ip` (loopback, or a node's address inside its own
    /// network namespace) and waits until it answers `/v2/`.
    pub fn start(bin: &Path, ip: Ipv4Addr) -> Result<Registry> {
        let dir = tempfile::Builder::new()
            .prefix("sticky-registry-")
            .tempdir()?;
        let address = format!("{ip}:{}", free_port()?);
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {address}\n",
                dir.path().join("data").display()
            ),
        )?;
        let log = std::fs::File::create(dir.path().join("registry.log"))?;
        let mut command = Command::new(bin);
        command
            .arg("serve")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        let mut process = ChildGuard::spawn(command, "registry")?;
        let http = crate::browser::Http::new(address.parse()?);
        let deadline = Instant::now() + Duration::from_secs(30);
        while !http.get("/v2/", &[]).is_ok_and(|r| r.status == 200) {
            if let Some(exit) = process.exited() {
                bail!("the registry {exit}");
            }
            if Instant::now() > deadline {
                bail!("the registry did not answer /v2/ within 30 s");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(Registry {
            address,
            _process: process,
            _dir: dir,
        })
    }
}
