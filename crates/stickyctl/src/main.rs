//! `stickyctl`: changes a sticky canary rollout with one command.

fn main() -> std::process::ExitCode {
    stickyctl::cli::main()
}
