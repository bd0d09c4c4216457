//! Upstream processes: one `sticky-upstream` per version, each a separate real server.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{anyhow, Context, Result};

use crate::process::ChildGuard;

/// A running upstream serving one version; stopped when dropped.
#[derive(Debug)]
pub struct Upstream {
    /// The version it serves.
    pub version: String,
    /// Where it listens.
    pub address: SocketAddr,
    _process: ChildGuard,
}

impl Upstream {
    /// Starts `bin` (the `sticky-upstream` binary) for `version` on a free port.
    pub fn spawn(bin: &Path, version: &str) -> Result<Upstream> {
        Upstream::spawn_with(bin, version, &[])
    }

    /// [`Upstream::spawn`] with more arguments (such as `--call`).
    pub fn spawn_with(bin: &Path, version: &str, args: &[&str]) -> Result<Upstream> {
        Upstream::spawn_at(bin, version, SocketAddr::from(([127, 0, 0, 1], 0)), args)
    }

    /// [`Upstream::spawn_with`] listening on `address` (a loopback address; port 0 picks a
    /// free one), as a Pod of the mesh harness on its Pod IP and container port.
    pub fn spawn_at(
        bin: &Path,
        version: &str,
        address: SocketAddr,
        args: &[&str],
    ) -> Result<Upstream> {
        let mut command = Command::new(bin);
        command
            .args(["--version", version])
            .args(["--address", &address.ip().to_string()])
            .args(["--port", &address.port().to_string()])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped());
        let mut process = ChildGuard::spawn(command, &format!("upstream {version}"))?;
        let stdout = process
            .child_mut()
            .stdout
            .take()
            .ok_or_else(|| anyhow!("upstream {version}: no stdout pipe"))?;
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .with_context(|| format!("reading the address of upstream {version}"))?;
        let address = line
            .trim()
            .strip_prefix("listening on ")
            .ok_or_else(|| anyhow!("upstream {version} did not start: {line:?}"))?
            .parse()
            .with_context(|| format!("upstream {version} printed {line:?}"))?;
        Ok(Upstream {
            version: version.to_owned(),
            address,
            _process: process,
        })
    }
}
