//! Errors of the commands and the controller, and the exit codes scripts can rely on.

use render::EditError;
use rollout::OpError;

/// Exit code of a command that did what it was asked (or found nothing to do).
pub const EXIT_OK: u8 = 0;
/// Exit code of a runtime failure: API unreachable, file unreadable, retries exhausted.
pub const EXIT_RUNTIME: u8 = 1;
/// Exit code of bad input refused before anything was written: usage, weights, names,
/// shadowing routes, a missing rollout.
pub const EXIT_INVALID: u8 = 2;

/// Everything that can stop a command.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The command does not fit the rollout or its input is bad.
    #[error(transparent)]
    Op(#[from] OpError),
    /// The user's Istio objects cannot take the managed routes.
    #[error(transparent)]
    Edit(#[from] EditError),
    /// Prometheus refused the rollout's queries or could not be asked.
    #[error(transparent)]
    Prometheus(#[from] prometheus::Error),
    /// Bad input that is neither (missing rollout, bad layout file, ...).
    #[error("{0}")]
    Invalid(String),
    /// Someone else wrote the object since it was read; the caller re-reads and retries.
    #[error("conflict: {0} changed since it was read")]
    Conflict(String),
    /// The rollout changed since the requester saw it; nothing was done.
    #[error("{0}")]
    Stale(String),
    /// The Kubernetes API failed.
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// What went wrong.
        source: std::io::Error,
    },
    /// Anything else at run time.
    #[error("{0}")]
    Runtime(String),
}

impl Error {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Op(_)
            | Error::Edit(_)
            | Error::Invalid(_)
            | Error::Stale(_)
            | Error::Prometheus(prometheus::Error::Invalid(_)) => EXIT_INVALID,
            _ => EXIT_RUNTIME,
        }
    }

    /// An I/O error on `path`.
    pub fn io(path: &std::path::Path, source: std::io::Error) -> Self {
        Error::Io {
            path: path.display().to_string(),
            source,
        }
    }
}
