//! The real `stickyctl` program driving an Envoy's config directory, run the way an operator
//! types it, so the tests and the demo prove the shipped binary (argument parsing, exit codes,
//! file lock, atomic writes) and not only the library under it.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use api::StickyCanary;
use runtime::target::envoy_dir::ROLLOUT_FILE;
use serde_json::Value;

use crate::locate;
use crate::process::ChildGuard;
use crate::wait;

/// How long one command may take: it waits for other operators' lock and retries conflicts,
/// but never for Envoy, so anything longer is a hang.
const PATIENCE: Duration = Duration::from_secs(30);

/// `stickyctl` driving one target: `--envoy-dir <dir>`, or `--kubeconfig <file> -n <ns>`.
#[derive(Debug, Clone)]
pub struct Stickyctl {
    bin: PathBuf,
    target: Vec<String>,
    /// The config directory of an `--envoy-dir` target.
    dir: Option<PathBuf>,
}

/// How one command ended and what it printed.
#[derive(Debug, Clone)]
pub struct Run {
    /// Exit code; `None` when a signal ended it.
    pub code: Option<i32>,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl Stickyctl {
    /// The binary `make build` builds, driving the Envoy that reads `dir`.
    pub fn new(dir: &Path) -> Result<Stickyctl> {
        Ok(Stickyctl {
            bin: locate::stickyctl_bin()?,
            target: vec!["--envoy-dir".to_owned(), dir.display().to_string()],
            dir: Some(dir.to_owned()),
        })
    }

    /// The binary driving the cluster of `kubeconfig`, in `namespace`.
    pub fn kube(kubeconfig: &Path, namespace: &str) -> Result<Stickyctl> {
        Ok(Stickyctl {
            bin: locate::stickyctl_bin()?,
            target: vec![
                "--kubeconfig".to_owned(),
                kubeconfig.display().to_string(),
                "-n".to_owned(),
                namespace.to_owned(),
            ],
            dir: None,
        })
    }

    /// The command as an operator would type it.
    pub fn command_line(&self, args: &[&str]) -> String {
        format!("stickyctl {} {}", self.target.join(" "), args.join(" "))
    }

    /// Runs `stickyctl <target> args...` to completion, whatever its exit code.
    pub fn run(&self, args: &[&str]) -> Result<Run> {
        let mut command = Command::new(&self.bin);
        command
            .args(&self.target)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut process = ChildGuard::spawn(command, "stickyctl")?;
        let stdout = drain(process.child_mut().stdout.take());
        let stderr = drain(process.child_mut().stderr.take());
        // On a timeout, dropping the guard kills it, which also ends the pipe readers.
        let status = wait::until(
            &format!("`{}` to finish", self.command_line(args)),
            PATIENCE,
            Duration::from_millis(10),
            || Ok(process.child_mut().try_wait()?),
        )?;
        Ok(Run {
            code: status.code(),
            stdout: collect(stdout)?,
            stderr: collect(stderr)?,
        })
    }

    /// Starts a long-running command (`controller`), its output appended to `log`; stopped
    /// when the guard drops (or killed by the test, as a crash).
    pub fn spawn(&self, args: &[&str], log: &Path) -> Result<ChildGuard> {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("opening {}", log.display()))?;
        let mut command = Command::new(&self.bin);
        command
            .args(&self.target)
            .args(args)
            .env("RUST_LOG", "warn,stickyctl=debug")
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out);
        ChildGuard::spawn(command, &self.command_line(args))
    }

    /// Runs a command that must succeed; returns its standard output.
    pub fn ok(&self, args: &[&str]) -> Result<String> {
        let run = self.run(args)?;
        if run.code != Some(0) {
            bail!(
                "`{}` exited with {:?}:\n{}{}",
                self.command_line(args),
                run.code,
                run.stdout,
                run.stderr
            );
        }
        Ok(run.stdout)
    }

    /// `stickyctl status -o json`, parsed.
    pub fn status(&self) -> Result<Value> {
        let stdout = self.ok(&["status", "-o", "json"])?;
        serde_json::from_str(&stdout).with_context(|| format!("parsing status: {stdout}"))
    }

    /// The rollout as stored in the directory (`stickycanary.json`) of an `--envoy-dir` target.
    pub fn rollout(&self) -> Result<StickyCanary> {
        let dir = self
            .dir
            .as_ref()
            .ok_or_else(|| anyhow!("the rollout lives in the cluster, not in a directory"))?;
        let path = dir.join(ROLLOUT_FILE);
        let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        serde_json::from_slice(&bytes).with_context(|| format!("parsing {}", path.display()))
    }
}

/// Reads a pipe to its end on its own thread, so a chatty child never blocks on a full pipe.
fn drain(pipe: Option<impl Read + Send + 'static>) -> JoinHandle<std::io::Result<String>> {
    std::thread::spawn(move || {
        let mut text = String::new();
        if let Some(mut pipe) = pipe {
            pipe.read_to_string(&mut text)?;
        }
        Ok(text)
    })
}

fn collect(reader: JoinHandle<std::io::Result<String>>) -> Result<String> {
    reader
        .join()
        .map_err(|_| anyhow!("a pipe reader panicked"))?
        .context("reading stickyctl's output")
}
