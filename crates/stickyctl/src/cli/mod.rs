//! The command line: parse, pick the target, run one command, map errors to exit codes.
//!
//! Exit codes: 0 done (also "nothing to change"), 1 runtime failure (API or files unreachable,
//! retries exhausted), 2 invalid input or a refusal before any write (bad weight or version
//! name, wrong phase, shadowing route, missing rollout, usage errors).
//!
//! Every mutating command changes the rollout, then converges its objects in-process, so it
//! works with or without the controller running; `--dry-run` prints a unified diff of what it
//! would write and writes nothing. `delete` likewise does the controller's finalizer work itself.
//!
//! `args` holds the clap types, `dispatch` runs a parsed command line (the runtime does the
//! work: [`runtime::target::place::Place`] finds the rollout, [`runtime::act::act`] changes
//! it and sends its notices), `print` turns what was read or done into text (pure, tested on
//! its own), and `spec` turns `init`'s and `override`'s flags into the spec.

mod args;
mod dispatch;
mod print;
mod spec;

use std::ffi::OsStr;
use std::io::{IsTerminal, Write as _};
use std::process::ExitCode;

use clap::Parser;

use args::Cli;
use runtime::console::Console;
use runtime::error::{EXIT_INVALID, EXIT_OK};
use runtime::interrupt::Interrupt;

/// What a command printed and its exit code; `run` returns it so tests can call commands
/// in-process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Exit code (see the module docs).
    pub code: u8,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

/// The binaries' `main`: parse the process arguments, run, print as it goes, exit.
pub fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(colour(
            std::io::stderr().is_terminal(),
            std::env::var_os("NO_COLOR").as_deref(),
        ))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "warn,stickyctl=info".into()),
        )
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(err) => {
            // A closed standard error leaves nothing to tell.
            writeln!(
                std::io::stderr(),
                "error: cannot start the async runtime: {err}"
            )
            .ok();
            return ExitCode::from(runtime::error::EXIT_RUNTIME);
        }
    };
    let mut out = Console::stdout();
    let (code, stderr) =
        runtime.block_on(run_on(std::env::args_os(), &mut out, Interrupt::ctrl_c()));
    // A closed standard error leaves nothing to tell.
    std::io::stderr().write_all(stderr.as_bytes()).ok();
    ExitCode::from(code)
}

/// Whether warnings are coloured: only on a terminal, and not when `NO_COLOR` is set to
/// anything but the empty string (<https://no-color.org>).
fn colour(terminal: bool, no_color: Option<&OsStr>) -> bool {
    terminal && no_color.is_none_or(OsStr::is_empty)
}

/// Runs one command line (including the program name) to completion, in-process: what it
/// prints is kept in the [`Outcome`], and Ctrl-C stays the host's.
pub async fn run<I, T>(args: I) -> Outcome
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let mut out = Console::memory();
    let (code, stderr) = run_on(args, &mut out, Interrupt::none()).await;
    Outcome {
        code,
        stdout: out.into_text(),
        stderr,
    }
}

/// Runs one command line, its words written to `out` as they come; its exit code and
/// standard error. `interrupt` is what a plan stops on.
async fn run_on<I, T>(args: I, out: &mut Console, interrupt: Interrupt) -> (u8, String)
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(err) => {
            let text = err.render().to_string();
            if err.use_stderr() {
                return (EXIT_INVALID, text);
            }
            // `--help`, `--version`.
            out.push_str(&text);
            return (EXIT_OK, String::new());
        }
    };
    // On the heap: the commands' futures are large, and tests run them on 2 MiB threads.
    match Box::pin(dispatch::execute(cli, out, &interrupt)).await {
        Ok(()) => (EXIT_OK, String::new()),
        Err(err) => (err.exit_code(), format!("error: {err}\n")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    /// Colour only on a terminal, and never with `NO_COLOR` set to anything.
    #[test]
    fn colour_needs_a_terminal_and_no_no_color() {
        let set = Some(OsStr::new("1"));
        let empty = Some(OsStr::new(""));
        assert!(colour(true, None));
        assert!(colour(true, empty), "an empty NO_COLOR is unset");
        assert!(!colour(true, set));
        assert!(!colour(false, None));
        assert!(!colour(false, set));
    }

    /// The command line of `stickyctl --envoy-dir <dir> <args>`.
    fn in_dir(dir: &str, args: &[&str]) -> Vec<String> {
        ["stickyctl", "--envoy-dir", dir]
            .iter()
            .chain(args)
            .map(|arg| (*arg).to_owned())
            .collect()
    }

    /// `init --webhook` refuses a URL notices may not go to, naming the field, with exit code 2
    /// and nothing written; `--allow-http-webhook` takes plain http and is kept in the spec.
    #[tokio::test]
    async fn init_refuses_a_webhook_before_any_write() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_str().unwrap().to_owned();
        let init = |webhook: &str, extra: &[&str]| {
            let mut args = vec!["init", "--service", "shop", "--stable", "v1", "--webhook"];
            args.push(webhook);
            args.extend(extra);
            in_dir(&path, &args)
        };
        let refused = [
            ("http://hooks.example/x", "plain http"),
            ("https://169.254.169.254/latest", "cloud metadata"),
            ("https://[fe80::1]/x", "link-local"),
            ("https://metadata.google.internal/", "cloud metadata"),
            ("gopher://hooks.example/", "not an http(s) URL"),
        ];
        for (url, words) in refused {
            for extra in [&[][..], &["--allow-http-webhook"], &["--dry-run"]] {
                let outcome = run(init(url, extra)).await;
                if url.starts_with("http://") && extra == ["--allow-http-webhook"] {
                    continue;
                }
                assert_eq!(outcome.code, EXIT_INVALID, "{url} {extra:?}: {outcome:?}");
                assert!(
                    outcome
                        .stderr
                        .starts_with("error: invalid input: spec.auto.webhook: "),
                    "{url}: {}",
                    outcome.stderr
                );
                assert!(outcome.stderr.contains(words), "{url}: {}", outcome.stderr);
                let written: Vec<_> = std::fs::read_dir(dir.path())
                    .unwrap()
                    .flatten()
                    .map(|e| e.file_name())
                    .filter(|name| name != runtime::target::envoy_dir::LOCK_FILE)
                    .collect();
                assert!(written.is_empty(), "{url}: wrote {written:?}");
            }
        }
        let layout =
            json!({"listenPort": 10000, "wasmPath": "/x.wasm", "upstreams": {"v1": "127.0.0.1:1"}});
        let layout_file = dir.path().join(render::envoy::LAYOUT_FILE);
        std::fs::write(layout_file, layout.to_string()).unwrap();
        let taken = run(init(
            "http://hooks.monitoring:8080/x",
            &["--allow-http-webhook", "--dry-run"],
        ))
        .await;
        assert!(taken.stdout.contains("allowHttpWebhook: true"), "{taken:?}");
    }

    /// A webhook written into the rollout by hand that notices may not go to (here plain
    /// http to an address that is loopback only in disguise) is not posted to: a command says
    /// so and still does its work, and `status` shows why.
    #[tokio::test]
    async fn a_refused_stored_webhook_is_not_posted_to() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let heard = std::sync::Arc::new(AtomicUsize::new(0));
        let count = heard.clone();
        tokio::spawn(async move {
            while listener.accept().await.is_ok() {
                count.fetch_add(1, Ordering::SeqCst);
            }
        });
        let dir = tempfile::tempdir().unwrap();
        let layout = json!({"listenPort": 10000, "wasmPath": "/x.wasm",
            "upstreams": {"v1": "127.0.0.1:1", "v2": "127.0.0.1:2"}});
        let layout_file = dir.path().join(render::envoy::LAYOUT_FILE);
        std::fs::write(layout_file, layout.to_string()).unwrap();
        let path = dir.path().to_str().unwrap().to_owned();
        let stickyctl = |args: &[&str]| run(in_dir(&path, args));
        let init = stickyctl(&["init", "--service", "shop", "--stable", "v1"]).await;
        assert_eq!(init.code, EXIT_OK, "{init:?}");
        assert_eq!(stickyctl(&["start", "--canary", "v2"]).await.code, EXIT_OK);
        let file = dir.path().join(runtime::target::envoy_dir::ROLLOUT_FILE);
        let mut stored: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
        stored["spec"]["auto"]["webhook"] = json!(format!("http://[::ffff:127.0.0.1]:{port}/hook"));
        std::fs::write(&file, stored.to_string()).unwrap();
        let next = stickyctl(&["next"]).await;
        assert_eq!(next.code, EXIT_OK, "{next:?}");
        assert!(
            next.stdout.contains(
                "warning: spec.auto.webhook: plain http is taken to a loopback host only"
            ),
            "{}",
            next.stdout
        );
        assert!(next.stdout.contains("notices not sent"), "{}", next.stdout);
        let status = stickyctl(&["status"]).await;
        assert!(
            status
                .stdout
                .contains("webhook  refused, notices are not sent: spec.auto.webhook: "),
            "{}",
            status.stdout
        );
        let json_status = stickyctl(&["status", "-o", "json"]).await;
        let report: Value = serde_json::from_str(&json_status.stdout).unwrap();
        assert!(report["webhookRefused"]
            .as_str()
            .is_some_and(|w| w.starts_with("spec.auto.webhook: ")));
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        assert_eq!(
            heard.load(Ordering::SeqCst),
            0,
            "the refused webhook was called"
        );
    }

    /// A plan file's STICKY entry changes the rollout the way `set-weight` does, notices
    /// included: the webhook hears of it before the command returns.
    #[tokio::test]
    async fn a_plan_sticky_entry_sends_its_notices() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let heard = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
        let bodies = heard.clone();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let mut request = Vec::new();
                let mut chunk = [0u8; 4096];
                // One request per connection (`connection: close`): read until its JSON ends.
                while !request.ends_with(b"}") {
                    match stream.read(&mut chunk).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => request.extend_from_slice(&chunk[..n]),
                    }
                }
                let text = String::from_utf8_lossy(&request);
                let body = text.split("\r\n\r\n").nth(1).unwrap_or_default().to_owned();
                bodies.lock().unwrap().push(body);
                let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";
                stream.write_all(answer).await.ok();
            }
        });
        let dir = tempfile::tempdir().unwrap();
        let layout = json!({"listenPort": 10000, "wasmPath": "/x.wasm",
            "upstreams": {"v1": "127.0.0.1:1", "v2": "127.0.0.1:2"}});
        std::fs::write(
            dir.path().join(render::envoy::LAYOUT_FILE),
            layout.to_string(),
        )
        .unwrap();
        let plan_file = dir.path().join("plan.yaml");
        std::fs::write(&plan_file, "- {project: shop, type: STICKY, weight: 25}\n").unwrap();
        let path = dir.path().to_str().unwrap().to_owned();
        let stickyctl = |args: &[&str]| run(in_dir(&path, args));
        let webhook = format!("http://127.0.0.1:{port}/hook");
        let init = stickyctl(&[
            "init",
            "--service",
            "shop",
            "--stable",
            "v1",
            "--webhook",
            &webhook,
        ]);
        assert_eq!(init.await.code, EXIT_OK);
        assert_eq!(stickyctl(&["start", "--canary", "v2"]).await.code, EXIT_OK);
        let before = heard.lock().unwrap().len();
        let applied = stickyctl(&["plan", "apply", plan_file.to_str().unwrap()]).await;
        assert_eq!(applied.code, EXIT_OK, "{applied:?}");
        assert!(!applied.stdout.contains("warning"), "{}", applied.stdout);
        let notices = heard.lock().unwrap()[before..].to_vec();
        assert!(
            notices
                .iter()
                .any(|n| n.contains("shop: set-weight 25: v1=75 v2=25")),
            "{notices:?}"
        );
    }
}
