//! The `stickyctl plan` subcommands and their flags.

use std::path::PathBuf;
use std::time::Duration;

use clap::Subcommand;

use super::file::{self, Entry};
use super::run::{self, Goal};
use runtime::console::Console;
use runtime::error::Error;
use runtime::target::place::Place;

pub use super::run::Context;

/// `stickyctl plan ...`.
#[derive(Debug, Subcommand)]
pub enum PlanCommand {
    /// Preview every change of every entry, have the API server check them all, then apply
    /// them in file order.
    Apply {
        /// The plan file (YAML: a list of entries with project, type and weight).
        file: PathBuf,
        /// Preview and check only; write nothing.
        #[arg(long)]
        dry_run: bool,
        /// Longest a singleton's handover waits for the old version's pods to be gone.
        #[arg(long, value_name = "SECONDS", default_value_t = 300)]
        timeout: u64,
    },
    /// Where each entry stands, and which differ from the file.
    Status {
        /// The plan file.
        file: PathBuf,
        /// `json` for scripts.
        #[arg(short, long, value_enum, default_value_t = Format::Table)]
        output: Format,
    },
    /// Put every entry back on stable (weight 0; a singleton handed back, never both running).
    Rollback {
        /// The plan file.
        file: PathBuf,
        /// Preview and check only; write nothing.
        #[arg(long)]
        dry_run: bool,
        /// Longest a singleton's handover waits for the old version's pods to be gone.
        #[arg(long, value_name = "SECONDS", default_value_t = 300)]
        timeout: u64,
    },
}

/// Output format of `plan status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Readable text.
    Table,
    /// JSON for scripts.
    Json,
}

/// The plan file of a subcommand, read and checked whole: before anything is read from the
/// cluster, so a bad file is refused without one.
pub struct PlanFile {
    entries: Vec<Entry>,
    /// The file's path, as the messages name it.
    source: String,
}

/// Reads and checks the plan file `command` names.
pub fn read(command: &PlanCommand) -> Result<PlanFile, Error> {
    let path = match command {
        PlanCommand::Apply { file, .. }
        | PlanCommand::Status { file, .. }
        | PlanCommand::Rollback { file, .. } => file,
    };
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let source = path.display().to_string();
    let entries = file::parse(&text, &source)?;
    Ok(PlanFile { entries, source })
}

/// Runs one `plan` subcommand on `file` ([`read`]) at `place`, as `context` says (notices,
/// who asks, what interrupts), writing to `out` as it goes.
pub async fn execute(
    command: &PlanCommand,
    file: &PlanFile,
    place: &Place,
    context: &Context,
    out: &mut Console,
) -> Result<(), Error> {
    let (goal, dry_run, timeout) = match command {
        PlanCommand::Apply {
            dry_run, timeout, ..
        } => (Goal::File, dry_run, timeout),
        PlanCommand::Rollback {
            dry_run, timeout, ..
        } => (Goal::Stable, dry_run, timeout),
        PlanCommand::Status { output, .. } => {
            let json = *output == Format::Json;
            return run::status(place, &file.entries, &file.source, json, out).await;
        }
    };
    let timeout = Duration::from_secs(*timeout);
    run::apply(place, &file.entries, goal, *dry_run, timeout, context, out).await
}
