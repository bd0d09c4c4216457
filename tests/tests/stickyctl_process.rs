//! `stickyctl` run as a process, as an operator runs it: its output where it is not a
//! terminal's. A closed pipe (`stickyctl crd | head`) ends it quietly, and its warnings
//! carry colour only on a terminal, never with `NO_COLOR`.

use std::fs::File;
use std::io::Read;
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::Path;
use std::process::{Command, Output, Stdio};

use serde_json::json;
use sticky_canary_e2e::locate::stickyctl_bin;

/// ANSI escape sequences start with it.
const ESC: char = '\x1b';

fn stickyctl() -> Command {
    Command::new(stickyctl_bin().expect("stickyctl is built"))
}

/// `stickyctl crd | head -0`: standard output is a pipe nobody reads any more. The command
/// ends quietly, as Unix tools do, instead of panicking with "failed printing to stdout".
#[test]
fn a_closed_pipe_ends_the_command_quietly() {
    let (reader, writer) = std::io::pipe().expect("a pipe");
    drop(reader);
    let out = stickyctl()
        .arg("crd")
        .stdin(Stdio::null())
        .stdout(writer)
        .output()
        .expect("run stickyctl");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(stderr, "", "nothing to say about a reader that left");
}

/// An Envoy directory whose rollout's webhook cannot be reached (a port nobody listens on),
/// so that a change warns on stderr that its notice was dropped.
fn rollout_with_a_dead_webhook(dir: &Path) {
    let layout = json!({"listenPort": 10000, "wasmPath": "/x.wasm",
        "upstreams": {"v1": "127.0.0.1:1", "v2": "127.0.0.1:2"}});
    std::fs::write(dir.join(render::envoy::LAYOUT_FILE), layout.to_string()).expect("the layout");
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
    let webhook = format!(
        "http://127.0.0.1:{}/hook",
        closed.local_addr().unwrap().port()
    );
    drop(closed);
    let dir = dir.to_str().expect("a UTF-8 path");
    let init = stickyctl()
        .args([
            "--envoy-dir",
            dir,
            "init",
            "--service",
            "shop",
            "--stable",
            "v1",
        ])
        .args(["--webhook", &webhook, "--allow-http-webhook"])
        .output()
        .expect("init");
    assert!(init.status.success(), "{init:?}");
}

/// `stickyctl <change>` on `dir` (each change sends a notice, which is dropped with a
/// warning), with stderr to `stderr`.
fn change(dir: &Path, change: &[&str], no_color: Option<&str>, stderr: Stdio) -> Output {
    let mut command = stickyctl();
    command
        .args(["--envoy-dir", dir.to_str().expect("a UTF-8 path")])
        .args(change)
        .env_remove("NO_COLOR")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(stderr);
    if let Some(value) = no_color {
        command.env("NO_COLOR", value);
    }
    let out = command.output().expect("run stickyctl");
    assert!(out.status.success(), "{out:?}");
    out
}

/// A pseudo-terminal: its controller side (read what the program writes) and the side the
/// program gets as its stderr.
fn terminal() -> (File, OwnedFd) {
    let (mut controller, mut side) = (0, 0);
    // SAFETY: openpty writes two new descriptors into the two integers and reads nothing else
    // (no name, settings or window size are passed).
    let opened = unsafe {
        libc::openpty(
            &mut controller,
            &mut side,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    assert_eq!(opened, 0, "openpty: {}", std::io::Error::last_os_error());
    // SAFETY: both descriptors were just opened and are owned by nothing else.
    unsafe { (File::from_raw_fd(controller), OwnedFd::from_raw_fd(side)) }
}

/// What `change` writes to a terminal as its stderr.
fn stderr_on_a_terminal(dir: &Path, change_: &[&str], no_color: Option<&str>) -> String {
    let (mut controller, side) = terminal();
    change(dir, change_, no_color, Stdio::from(side));
    // The program's side is closed now (it exited, and the Command that held our copy is
    // gone): reading ends with EIO once everything it wrote is read.
    let mut written = Vec::new();
    let mut chunk = [0u8; 4096];
    while let Ok(n @ 1..) = controller.read(&mut chunk) {
        written.extend_from_slice(&chunk[..n]);
    }
    String::from_utf8_lossy(&written).into_owned()
}

#[test]
fn warnings_are_coloured_only_on_a_terminal_and_never_with_no_color() {
    let dir = tempfile::tempdir().expect("a directory");
    rollout_with_a_dead_webhook(dir.path());
    let dropped = "webhook: notice dropped after";

    // Off a terminal (a pipe, a log file): plain text.
    let start = ["start", "--canary", "v2"];
    let piped = change(dir.path(), &start, None, Stdio::piped());
    let stderr = String::from_utf8_lossy(&piped.stderr);
    assert!(stderr.contains(dropped), "{stderr}");
    assert!(!stderr.contains(ESC), "colour off a terminal: {stderr:?}");

    // On a terminal, colour (the control: this test can tell colour from none), also with
    // an empty NO_COLOR...
    let cases = [
        ("10", None, true),
        ("20", Some(""), true),
        ("30", Some("1"), false),
    ];
    for (weight, no_color, coloured) in cases {
        let stderr = stderr_on_a_terminal(dir.path(), &["set-weight", weight], no_color);
        assert!(stderr.contains(dropped), "{stderr}");
        // ... unless NO_COLOR is set to anything.
        assert_eq!(
            stderr.contains(ESC),
            coloured,
            "NO_COLOR={no_color:?}: {stderr:?}"
        );
    }
}
