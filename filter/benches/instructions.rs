//! Instructions per decision, counted by callgrind: `instructions <group>/<param> <n>` decides
//! that case `n` times. `make bench` runs it under valgrind with two values of `n` and divides
//! the difference, so start-up and set-up cancel out. Deterministic where timings are not.
//!
//! Run plainly (as `cargo bench` does) it only lists the cases.

mod fixtures;

use std::hint::black_box;
use std::process::ExitCode;
use sticky_canary_filter::decide;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let cases = fixtures::cases();
    let (Some(id), Some(Ok(n))) = (args.first(), args.get(1).map(|n| n.parse::<u64>())) else {
        println!(
            "usage: instructions <case> <iterations>, under valgrind --tool=callgrind; cases:"
        );
        for case in &cases {
            println!("  {}/{}", case.group, case.param);
        }
        return ExitCode::SUCCESS;
    };
    let Some(case) = cases
        .iter()
        .find(|c| format!("{}/{}", c.group, c.param) == *id)
    else {
        eprintln!("unknown case {id:?}");
        return ExitCode::FAILURE;
    };
    for _ in 0..n {
        black_box(decide(
            black_box(&case.config),
            black_box(&case.request),
            fixtures::mint,
        ));
    }
    ExitCode::SUCCESS
}
