//! What the demos share: how a run ends.

use std::process::ExitCode;

use anyhow::Result;

/// The demo `name`'s exit: `ok` when no invariant in `outcome` broke, each broken one on
/// stderr otherwise, or the error that stopped it.
pub fn exit(name: &str, ok: &str, outcome: Result<Vec<String>>) -> ExitCode {
    match outcome {
        Ok(broken) if broken.is_empty() => {
            println!("\nOK: {ok}");
            ExitCode::SUCCESS
        }
        Ok(broken) => {
            for invariant in broken {
                eprintln!("BROKEN: {invariant}");
            }
            ExitCode::FAILURE
        }
        Err(err) => {
            eprintln!("{name} failed: {err:?}");
            ExitCode::FAILURE
        }
    }
}
