//! A guide of `docs/` run as it is: its `sh` blocks, each starting with `# guide: <id>`, in
//! order, by bash from the repository's root, each block starting from the variables the
//! blocks before it left.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

use crate::locate::workspace_root;

/// The `sh` blocks of the guide: `(id, script)`, each block's first line `# guide: <id>`.
pub fn guide_blocks(markdown: &str) -> Result<Vec<(String, String)>> {
    let mut blocks = Vec::new();
    let mut lines = markdown.lines();
    while let Some(line) = lines.next() {
        if line.trim_end() != "```sh" {
            continue;
        }
        let body: Vec<&str> = lines
            .by_ref()
            .take_while(|l| l.trim_end() != "```")
            .collect();
        let id = body
            .first()
            .and_then(|l| l.strip_prefix("# guide: "))
            .with_context(|| {
                format!("a sh block of the guide without `# guide: <id>`: {body:?}")
            })?;
        blocks.push((id.trim().to_owned(), body[1..].join("\n")));
    }
    Ok(blocks)
}

/// A `PATH` that finds `programs` (each by its directory) before the harness's own `PATH`: what
/// the guide's reader has installed.
pub fn path_with(programs: &[&Path]) -> String {
    programs
        .iter()
        .filter_map(|program| program.parent())
        .map(|dir| dir.display().to_string())
        .chain(std::env::var("PATH").ok())
        .collect::<Vec<_>>()
        .join(":")
}

/// A shell session across blocks: each block runs in a fresh `bash -euo pipefail` that starts
/// from the variables the blocks before it left.
pub struct Shell {
    state: PathBuf,
    _dir: tempfile::TempDir,
}

impl Shell {
    pub fn new(vars: &[(&str, String)]) -> Result<Shell> {
        let dir = tempfile::Builder::new().prefix("sticky-guide-").tempdir()?;
        let state = dir.path().join("state.sh");
        let mut text = String::new();
        for (name, value) in vars {
            text.push_str(&format!("export {name}={}\n", quote(value)));
        }
        std::fs::write(&state, text)?;
        Ok(Shell { state, _dir: dir })
    }

    /// Runs `script` from the repository's root; its stdout, or why it failed.
    pub fn run(&self, id: &str, script: &str) -> Result<String> {
        let state = self.state.display();
        let wrapped =
            format!("set -euo pipefail\nset -a\nsource {state}\n{script}\nexport -p > {state}\n");
        let output = Command::new("bash")
            .arg("-c")
            .arg(&wrapped)
            .current_dir(workspace_root())
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("running the guide's block {id}"))?;
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        if !output.status.success() {
            bail!(
                "the guide's block {id} failed ({}):\n{script}\nstdout:\n{stdout}\nstderr:\n{}",
                output.status,
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(stdout)
    }

    /// The value of a variable the blocks set.
    pub fn var(&self, name: &str) -> Result<String> {
        let value = self.run("(read)", &format!("printf %s \"${{{name}}}\""))?;
        if value.is_empty() {
            bail!("the guide set no {name}");
        }
        Ok(value)
    }

    /// Sets a variable for the blocks after this.
    pub fn set(&self, name: &str, value: &str) -> Result<()> {
        self.run("(set)", &format!("{name}={}", quote(value)))
            .map(drop)
    }
}

fn quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', r"'\''"))
}
