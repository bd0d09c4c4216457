//! The `stickyctl plan` subcommands and their flags.

use std::path::PathBuf;
use std::time::Duration;

use clap::Subcommand;

use super::cluster::Cluster;
use super::file;
use super::run::{self, Goal, Place};
use runtime::error::Error;
use runtime::target::envoy_dir::EnvoyDir;
use runtime::target::kube as kube_target;

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

/// Where the global flags point.
pub struct Where<'a> {
    /// `--namespace`.
    pub namespace: Option<&'a str>,
    /// `--kubeconfig`.
    pub kubeconfig: Option<&'a std::path::Path>,
    /// `--envoy-dir`.
    pub envoy_dir: Option<&'a std::path::Path>,
}

/// Runs one `plan` subcommand.
pub async fn execute(command: &PlanCommand, at: Where<'_>, out: &mut String) -> Result<(), Error> {
    let path = match command {
        PlanCommand::Apply { file, .. }
        | PlanCommand::Status { file, .. }
        | PlanCommand::Rollback { file, .. } => file,
    };
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let source = path.display().to_string();
    // The whole file is checked before anything is read from the cluster.
    let entries = file::parse(&text, &source)?;
    let place = match at.envoy_dir {
        Some(dir) => Place::EnvoyDir(EnvoyDir::open(dir).await?),
        None => {
            let (client, default_namespace) = kube_target::client(at.kubeconfig).await?;
            Place::Kube {
                cluster: Cluster::new(client),
                namespace: at.namespace.map_or(default_namespace, str::to_owned),
            }
        }
    };
    match command {
        PlanCommand::Apply {
            dry_run, timeout, ..
        } => {
            run::apply(
                &place,
                &entries,
                Goal::File,
                *dry_run,
                Duration::from_secs(*timeout),
                out,
            )
            .await
        }
        PlanCommand::Rollback {
            dry_run, timeout, ..
        } => {
            run::apply(
                &place,
                &entries,
                Goal::Stable,
                *dry_run,
                Duration::from_secs(*timeout),
                out,
            )
            .await
        }
        PlanCommand::Status { output, .. } => {
            run::status(&place, &entries, &source, *output == Format::Json, out).await
        }
    }
}
