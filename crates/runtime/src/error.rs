//! Errors of the commands and the controller, and the exit codes scripts can rely on.

use render::EditError;
use rollout::OpError;

use crate::reconcile::MAX_ATTEMPTS;

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
    Conflict(Changed),
    /// Others kept writing the object through every attempt ([`MAX_ATTEMPTS`]).
    #[error("gave up after {MAX_ATTEMPTS} conflicts: {0} keeps changing")]
    GaveUp(Changed),
    /// The rollout changed since the requester saw it; nothing was done.
    #[error("the rollout changed meanwhile (generation {generation}, the page showed {seen}): {versions}; nothing was done")]
    Stale {
        /// The rollout's generation now.
        generation: i64,
        /// The generation the requester saw.
        seen: i64,
        /// Its versions and weights now ([`api::StickyCanarySpec::summary`]).
        versions: String,
    },
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

/// An object someone else wrote since it was read: which, and whether it is gone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Changed {
    /// The object as plans label it, e.g. `VirtualService prod/shop` or `stickycanary.json`.
    pub object: String,
    /// It was deleted, not changed: whoever renders it again must create it anew.
    pub deleted: bool,
}

impl Changed {
    /// `object`, changed since it was read.
    pub fn new(object: impl Into<String>) -> Self {
        Changed {
            object: object.into(),
            deleted: false,
        }
    }
}

impl std::fmt::Display for Changed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.object)?;
        if self.deleted {
            f.write_str(" (deleted since it was read)")?;
        }
        Ok(())
    }
}

impl Error {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Op(_)
            | Error::Edit(_)
            | Error::Invalid(_)
            | Error::Stale { .. }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Scripts and tests match these words and codes.
    #[test]
    fn typed_errors_say_what_they_said_as_text() {
        let wp = "WasmPlugin istio-system/sticky-canary-gateway";
        let deleted = Changed {
            object: wp.to_owned(),
            deleted: true,
        };
        let cases = [
            (
                Error::Conflict(Changed::new(wp)),
                format!("conflict: {wp} changed since it was read"),
                EXIT_RUNTIME,
            ),
            (
                Error::Conflict(deleted.clone()),
                format!("conflict: {wp} (deleted since it was read) changed since it was read"),
                EXIT_RUNTIME,
            ),
            (
                Error::GaveUp(deleted),
                format!("gave up after 40 conflicts: {wp} (deleted since it was read) keeps changing"),
                EXIT_RUNTIME,
            ),
            (
                Error::Stale {
                    generation: 5,
                    seen: 4,
                    versions: "v1=90 v2=10".to_owned(),
                },
                "the rollout changed meanwhile (generation 5, the page showed 4): v1=90 v2=10; nothing was done".to_owned(),
                EXIT_INVALID,
            ),
        ];
        for (error, text, code) in cases {
            assert_eq!(error.to_string(), text);
            assert_eq!(error.exit_code(), code, "{text}");
        }
    }
}
