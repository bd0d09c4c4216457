//! Child processes that cannot outlive the harness.
//!
//! Tests start an Envoy and upstreams each; a leaked one would hold its ports and CPU until
//! someone notices. The guard kills on drop (also while a failing test unwinds) and, on Linux,
//! asks the kernel to kill the child should the harness itself die without unwinding.

use std::process::{Child, Command};

use anyhow::{Context, Result};

/// Runs `program` with `args` from the repository's root to its end: what it printed on
/// stdout, or an error naming the command with its exit status and stderr.
pub fn run(program: impl AsRef<std::ffi::OsStr>, args: &[&str]) -> Result<String> {
    let program = program.as_ref();
    let output = Command::new(program)
        .args(args)
        .current_dir(crate::locate::workspace_root())
        .output()
        .with_context(|| format!("running {}", program.to_string_lossy()))?;
    if !output.status.success() {
        anyhow::bail!(
            "{} {} failed ({}): {}",
            program.to_string_lossy(),
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// A running child process, killed and reaped when dropped.
#[derive(Debug)]
pub struct ChildGuard {
    child: Child,
    name: String,
}

impl ChildGuard {
    /// Spawns `command`; `name` appears in errors.
    pub fn spawn(mut command: Command, name: &str) -> Result<ChildGuard> {
        #[cfg(target_os = "linux")]
        {
            use std::os::unix::process::CommandExt;
            // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
            unsafe {
                command.pre_exec(|| {
                    // The signal comes when the spawning *thread* ends: keep guards on the
                    // thread that created them (tests and the demo do).
                    if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == -1 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let child = command
            .spawn()
            .with_context(|| format!("starting {name} ({command:?})"))?;
        Ok(ChildGuard {
            child,
            name: name.to_owned(),
        })
    }

    /// The process, for its pipes.
    pub fn child_mut(&mut self) -> &mut Child {
        &mut self.child
    }

    /// `Some(description)` once the process has exited: waiting for a dead process is futile.
    pub fn exited(&mut self) -> Option<String> {
        match self.child.try_wait() {
            Ok(Some(status)) => Some(format!("{} exited: {status}", self.name)),
            Ok(None) => None,
            Err(err) => Some(format!("{} cannot be polled: {err}", self.name)),
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        // Already exited is fine; nothing else useful can be done with an error here.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
