//! Where the CRD schemas come from, and the loud-missing rule: Istio's CRDs live outside the repo
//! (`ISTIO_CRDS`, default `<repo>/../shared/istio/crds.gen.yaml`), and so do the Gateway API's
//! (`GATEWAY_API_CRDS`, a directory of CRD files or one file, default `config/crd/standard` of
//! the `sigs.k8s.io/gateway-api` module in Go's module cache). When they are missing a test
//! must say so loudly and, under `CI=true`, fail: a silently skipped schema test proves nothing.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use crate::crd::CrdSet;

/// Environment variable naming Istio's CRD file.
pub const ISTIO_CRDS_ENV: &str = "ISTIO_CRDS";

/// The workspace root (the parent of this crate).
pub fn repo_root() -> PathBuf {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest_dir.parent().unwrap_or(manifest_dir).to_path_buf()
}

/// The repo's `istio/` directory of manifests.
pub fn istio_manifest_dir() -> PathBuf {
    repo_root().join("istio")
}

/// Environment variable naming a directory of the Gateway API's CRDs, standard channel (one YAML
/// file each, as `config/crd/standard` of the `sigs.k8s.io/gateway-api` module has them), or
/// one file holding them (every document that is no CRD is skipped).
pub const GATEWAY_API_CRDS_ENV: &str = "GATEWAY_API_CRDS";

/// The Gateway API whose CRDs the tests install: the version the pinned Istio requires
/// (`istio.io/istio`'s go.mod; see docs/gateway-api.md).
pub const GATEWAY_API_VERSION: &str = "v1.6.0";

/// Path of Istio's CRD file: `$ISTIO_CRDS`, else `<repo>/../shared/istio/crds.gen.yaml`.
pub fn istio_crds_path() -> PathBuf {
    match std::env::var_os(ISTIO_CRDS_ENV) {
        Some(path) if !path.is_empty() => PathBuf::from(path),
        _ => repo_root().join("../shared/istio/crds.gen.yaml"),
    }
}

/// True when the `CI` environment variable is `true` (or `1`): missing inputs must then fail.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Reports a missing test input: panics under CI, otherwise prints a loud `SKIPPED:` banner to
/// stderr. Callers return early after it (outside CI).
pub fn missing_input(what: &str) {
    missing(
        what,
        &format!(
            "Set {ISTIO_CRDS_ENV} to Istio's crds.gen.yaml (expected at {}).",
            istio_crds_path().display()
        ),
    );
}

/// [`missing_input`] saying `how` to provide it.
fn missing(what: &str, how: &str) {
    let banner = format!(
        "\n==================== SKIPPED: {what} ====================\n\
         {how}\n\
         With CI=true this is a failure, not a skip.\n"
    );
    assert!(!in_ci(), "{banner}");
    eprintln!("{banner}");
}

/// The directory of the Gateway API's CRDs: `$GATEWAY_API_CRDS`, else
/// `config/crd/standard` of `sigs.k8s.io/gateway-api@`[`GATEWAY_API_VERSION`] in Go's module
/// cache (`go env GOMODCACHE`).
pub fn gateway_api_crds_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os(GATEWAY_API_CRDS_ENV).filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    go_mod_cache()
        .join(format!("sigs.k8s.io/gateway-api@{GATEWAY_API_VERSION}"))
        .join("config/crd/standard")
}

/// Go's module cache: `$GOMODCACHE`, else what `go env GOMODCACHE` says, else `~/go/pkg/mod`.
fn go_mod_cache() -> PathBuf {
    if let Some(dir) = std::env::var_os("GOMODCACHE").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    let from_go = std::process::Command::new("go")
        .args(["env", "GOMODCACHE"])
        .output()
        .ok()
        .filter(|out| out.status.success())
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .map(|text| text.trim().to_owned())
        .filter(|text| !text.is_empty());
    match from_go {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join("go/pkg/mod"),
    }
}

/// The Gateway API's HTTPRoute CRD (YAML), or `None` (after a loud message) when it is missing
/// outside CI. Panics when it is missing under `CI=true` or cannot be read.
pub fn httproute_crd() -> Option<String> {
    let dir = gateway_api_crds_dir();
    let path = match dir.is_file() {
        // One file of them all: the HTTPRoute CRD is among its documents.
        true => dir,
        false => dir.join("gateway.networking.k8s.io_httproutes.yaml"),
    };
    if !path.exists() {
        missing(
            &format!("Gateway API CRD file {} not found", path.display()),
            &format!(
                "Set {GATEWAY_API_CRDS_ENV} to a directory of the Gateway API's standard CRDs, or \
                 run `go mod download sigs.k8s.io/gateway-api@{GATEWAY_API_VERSION}`."
            ),
        );
        return None;
    }
    match std::fs::read_to_string(&path) {
        Ok(text) => Some(text),
        Err(e) => panic!("cannot read {}: {e}", path.display()),
    }
}

/// Istio's CRDs, or `None` (after a loud message) when the file is missing outside CI.
/// Panics when the file is missing under `CI=true` or exists but cannot be parsed.
pub fn istio_crds() -> Option<CrdSet> {
    let path = istio_crds_path();
    if !path.exists() {
        missing_input(&format!("Istio CRD file {} not found", path.display()));
        return None;
    }
    match CrdSet::from_file(&path) {
        Ok(set) => Some(set),
        Err(e) => panic!(
            "cannot load Istio CRDs from {} ({ISTIO_CRDS_ENV}): {e}",
            path.display()
        ),
    }
}

/// The YAML files of the repo's `istio/` directory, sorted (empty when there are none).
pub fn istio_manifest_files() -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(istio_manifest_dir()) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.extension()
                .is_some_and(|ext| ext == "yaml" || ext == "yml")
        })
        .collect();
    files.sort();
    files
}

/// CRDs the project ships in `istio/` (the StickyCanary kind). Panics on a file that does not
/// parse: a broken shipped manifest is a bug, not a reason to skip.
pub fn project_crds() -> CrdSet {
    let mut set = CrdSet::default();
    for file in istio_manifest_files() {
        match CrdSet::from_file(&file) {
            Ok(found) => set.merge(found),
            Err(e) => panic!("project CRD file {}: {e}", file.display()),
        }
    }
    set
}

/// The CRD files at `path`: the file itself, or the `*.yaml` files of the directory, sorted.
fn crd_files(path: &Path) -> std::io::Result<Vec<PathBuf>> {
    if !path.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(path)?
        .map(|entry| entry.map(|e| e.path()))
        .collect::<std::io::Result<_>>()?;
    files.retain(|p| {
        p.extension()
            .is_some_and(|ext| ext == "yaml" || ext == "yml")
    });
    files.sort();
    Ok(files)
}

/// The Gateway API's CRDs (HTTPRoute among them) at [`gateway_api_crds_dir`], a directory or
/// one file, or `None` (after a loud message) when missing outside CI. Panics when missing
/// under `CI=true`, when a file cannot be parsed, or when what was found defines no
/// HTTPRoute: a wrong path must not pass as an empty set. Read once per process and path
/// (the files are large, and every fake API server loads them).
pub fn gateway_api_crds() -> Option<CrdSet> {
    static LOADED: OnceLock<Mutex<Vec<(PathBuf, CrdSet)>>> = OnceLock::new();
    let path = gateway_api_crds_dir();
    if !path.exists() {
        missing(
            &format!("Gateway API CRDs {} not found", path.display()),
            &format!(
                "Set {GATEWAY_API_CRDS_ENV} to a directory of the Gateway API's standard CRDs \
                 (or one file of them), or run \
                 `go mod download sigs.k8s.io/gateway-api@{GATEWAY_API_VERSION}`."
            ),
        );
        return None;
    }
    let mut cache = LOADED
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    if let Some((_, set)) = cache.iter().find(|(p, _)| *p == path) {
        return Some(set.clone());
    }
    let files = crd_files(&path).unwrap_or_else(|e| {
        panic!(
            "cannot read the Gateway API's CRDs at {} ({GATEWAY_API_CRDS_ENV}): {e}",
            path.display()
        )
    });
    let mut set = CrdSet::default();
    for file in &files {
        match CrdSet::from_file(file) {
            Ok(found) => set.merge(found),
            Err(e) => panic!("cannot load the Gateway API's CRDs ({GATEWAY_API_CRDS_ENV}): {e}"),
        }
    }
    assert!(
        set.defines("gateway.networking.k8s.io/v1", "HTTPRoute"),
        "{} ({GATEWAY_API_CRDS_ENV}) defines no gateway.networking.k8s.io/v1 HTTPRoute: \
         point it at the Gateway API's CRDs (config/crd/standard of sigs.k8s.io/gateway-api)",
        path.display()
    );
    cache.push((path, set.clone()));
    Some(set)
}

/// Istio's CRDs, the Gateway API's and the project's: what the fake API server needs. `None`
/// (after a loud message) when Istio's or the Gateway API's are missing outside CI.
pub fn all_crds() -> Option<CrdSet> {
    let mut set = istio_crds()?;
    set.merge(gateway_api_crds()?);
    set.merge(project_crds());
    Some(set)
}
