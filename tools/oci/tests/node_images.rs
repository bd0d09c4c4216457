//! The test node's images start: each layout `tools/node/images` wrote (`make node-images`) is
//! unpacked into a directory, and its programs run there under `chroot` (Envoy, iptables and
//! its extensions, pilot-agent, istiod, CoreDNS, the upstream; pause stops with 0 on SIGTERM).
//! Needs root (chroot) and the built images (`NODE_IMAGES_OUT`, default
//! `<repo>/target/oci/node`). When either is missing it says so loudly and, under `CI=true`,
//! fails: a silently skipped image test proves nothing.

use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Reports a missing input: panics under CI, else prints a loud `SKIPPED:` banner.
fn missing(what: &str) {
    let banner = format!(
        "\n==================== SKIPPED: {what} ====================\n\
         Build the images with `make node-images` and run the test as root.\n\
         With CI=true this is a failure, not a skip.\n"
    );
    assert!(!in_ci(), "{banner}");
    // Straight to the process's stderr: the test harness captures eprintln! of a passing test.
    let _ = std::io::stderr().write_all(banner.as_bytes());
}

fn images_dir() -> PathBuf {
    match std::env::var_os("NODE_IMAGES_OUT").filter(|d| !d.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/oci/node"),
    }
}

/// The image `name` unpacked into a fresh directory, and its config; `None` (after a loud
/// message) when it cannot be run here.
fn unpack(name: &str) -> Option<(tempfile::TempDir, Value)> {
    let is_root = std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0);
    if !is_root {
        missing("chroot needs root");
        return None;
    }
    let layout = images_dir().join(name);
    if !layout.join("index.json").exists() {
        missing(&format!("no image layout at {}", layout.display()));
        return None;
    }
    let read_json = |path: PathBuf| -> Value {
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    };
    let blob = |digest: &Value| {
        let digest = digest.as_str().expect("a digest");
        layout
            .join("blobs/sha256")
            .join(digest.trim_start_matches("sha256:"))
    };
    let index = read_json(layout.join("index.json"));
    let manifest = read_json(blob(&index["manifests"][0]["digest"]));
    let config = read_json(blob(&manifest["config"]["digest"]));
    let dir = tempfile::tempdir().expect("a temporary directory");
    for layer in manifest["layers"].as_array().expect("layers") {
        let file = std::fs::File::open(blob(&layer["digest"])).expect("the layer");
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
        archive.set_preserve_permissions(true);
        archive.set_preserve_ownerships(true);
        archive.unpack(dir.path()).expect("unpacking the layer");
    }
    Some((dir, config))
}

/// `chroot ROOT ARGS...`, which must succeed; its stdout and stderr together.
fn run(root: &Path, args: &[&str]) -> String {
    let out: Output = Command::new("chroot")
        .arg(root)
        .args(args)
        .output()
        .expect("running chroot");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "chroot {args:?}: {}\n{text}",
        out.status
    );
    text
}

#[test]
fn the_proxy_image_runs_envoy_pilot_agent_and_iptables_with_its_extensions() {
    let Some((root, config)) = unpack("proxyv2") else {
        return;
    };
    let root = root.path();
    assert_eq!(
        config["config"]["Entrypoint"][0],
        "/usr/local/bin/pilot-agent"
    );
    let envoy = run(root, &["/usr/local/bin/envoy", "--version"]);
    assert!(envoy.contains("/1.40."), "{envoy}");
    assert!(run(root, &["/usr/local/bin/pilot-agent", "--help"]).contains("pilot-agent"));
    for (binary, variant) in [
        ("iptables", "nf_tables"),
        ("iptables-save", "nf_tables"),
        ("ip6tables-restore", "nf_tables"),
        ("iptables-nft-restore", "nf_tables"),
        ("iptables-legacy", "legacy"),
        ("iptables-legacy-save", "legacy"),
        ("ip6tables-legacy-restore", "legacy"),
    ] {
        let version = run(root, &[&format!("/usr/sbin/{binary}"), "--version"]);
        assert!(version.contains(variant), "{binary}: {version}");
    }
    // The extensions istio-iptables uses, dlopened from /usr/lib/x86_64-linux-gnu/xtables.
    let redirect = run(root, &["/usr/sbin/iptables", "-j", "REDIRECT", "--help"]);
    assert!(redirect.contains("REDIRECT target options"), "{redirect}");
    let owner = run(
        root,
        &["/usr/sbin/iptables-legacy", "-m", "owner", "--help"],
    );
    assert!(owner.contains("owner match options"), "{owner}");
    for dir in [
        "etc/istio/proxy",
        "var/lib/istio/data",
        "var/lib/istio/envoy",
    ] {
        let meta = std::fs::metadata(root.join(dir)).expect(dir);
        assert_eq!((meta.uid(), meta.gid()), (1337, 1337), "{dir}");
    }
    assert_eq!(
        std::fs::metadata(root.join("tmp")).unwrap().mode() & 0o7777,
        0o1777
    );
    let passwd = std::fs::read_to_string(root.join("etc/passwd")).unwrap();
    assert!(passwd.contains("istio-proxy:x:1337:1337:"), "{passwd}");
    assert!(root
        .join("var/lib/istio/envoy/envoy_bootstrap_tmpl.json")
        .is_file());
}

#[test]
fn the_pilot_coredns_and_upstream_images_start() {
    for (name, args, expect) in [
        (
            "pilot",
            ["/usr/local/bin/pilot-discovery", "--help"],
            "Istio Pilot",
        ),
        ("coredns", ["/coredns", "-version"], "CoreDNS-"),
        (
            "upstream",
            ["/usr/local/bin/sticky-upstream", "--help"],
            "--version",
        ),
    ] {
        let Some((root, config)) = unpack(name) else {
            return;
        };
        assert_eq!(config["config"]["Entrypoint"][0], args[0], "{name}");
        let text = run(root.path(), &args);
        assert!(text.contains(expect), "{name}: {text}");
        if name == "pilot" {
            assert_eq!(config["config"]["User"], "1337:1337");
        }
    }
}

#[test]
fn the_pause_image_waits_and_stops_with_0_on_sigterm() {
    let Some((root, config)) = unpack("pause") else {
        return;
    };
    assert_eq!(config["config"]["Entrypoint"][0], "/pause");
    let mut pause = Command::new("chroot")
        .arg(root.path())
        .arg("/pause")
        .stdin(Stdio::null())
        .spawn()
        .expect("starting pause");
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        pause.try_wait().unwrap().is_none(),
        "pause exited on its own"
    );
    let kill = Command::new("kill")
        .args(["-TERM", &pause.id().to_string()])
        .status()
        .expect("running kill");
    assert!(kill.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = pause.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = pause.kill();
            panic!("pause did not stop on SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(0), "{status}");
}
