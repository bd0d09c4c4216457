//! What the demos share: how a run ends.

use std::process::ExitCode;

use anyhow::{Context, Result};

use crate::browser::{Http, Visit};
use crate::crowd::{Crowd, Tally};

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

/// Every browser of `crowd` loads `<service>.example.com`'s home page and its assets through
/// `http`; prints the tally and adds to `broken` what broke an invariant (404s, pages mixing
/// versions, other errors).
pub fn visit(
    http: &Http,
    crowd: &mut Crowd,
    service: &str,
    broken: &mut Vec<String>,
) -> Result<Vec<Visit>> {
    let visits = crowd
        .visit(&http.fresh(), "/")
        .with_context(|| format!("visiting {service}"))?;
    let tally = Tally::of(&visits);
    println!("{service}.example.com:\n{tally}");
    if tally.not_found + tally.mixed + tally.other_errors > 0 {
        broken.push(format!(
            "{service}: {} 404s, {} mixed pages, {} errors",
            tally.not_found, tally.mixed, tally.other_errors
        ));
    }
    Ok(visits)
}
