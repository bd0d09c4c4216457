//! `kubectl sticky ...`: the same program as `stickyctl`, found by kubectl as a plugin.

fn main() -> std::process::ExitCode {
    stickyctl::cli::main()
}
