//! The two images. Both are single-layer OCI images for linux or wasm, built from one file.

use anyhow::{Context, Result};
use serde_json::{json, Value};

use crate::blob::{Blob, CONFIG, MANIFEST};
use crate::elf;
use crate::layer::{self, Entry, Layer};

/// Where Istio's agent looks for the module in the layer of a *compat* Wasm image.
pub const PLUGIN_FILE: &str = "plugin.wasm";
/// Where the controller image keeps `stickyctl`.
pub const STICKYCTL_PATH: &str = "/usr/local/bin/stickyctl";
/// The user and group the controller runs as (the `nonroot` of distroless images).
pub const NONROOT: u32 = 65532;

/// An image: its config, its layers and the manifest tying them together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    /// The manifest, whose digest is the image's.
    pub manifest: Blob,
    /// The image config.
    pub config: Blob,
    /// The layers, bottom first.
    pub layers: Vec<Blob>,
}

impl Image {
    /// The image of `config` (its `rootfs` filled in from `layers`) and `layers`, with
    /// `annotations` on the manifest.
    pub(crate) fn new(mut config: Value, layers: Vec<Layer>, annotations: Value) -> Image {
        let diff_ids: Vec<&str> = layers.iter().map(|l| l.diff_id.as_str()).collect();
        config["rootfs"] = json!({"type": "layers", "diff_ids": diff_ids});
        let config = Blob::json(CONFIG, &config);
        let layers: Vec<Blob> = layers.into_iter().map(|l| l.blob).collect();
        let manifest = Blob::json(
            MANIFEST,
            &json!({
                "schemaVersion": 2,
                "mediaType": MANIFEST,
                "config": config.descriptor(),
                "layers": layers.iter().map(Blob::descriptor).collect::<Vec<_>>(),
                "annotations": annotations,
            }),
        );
        Image {
            manifest,
            config,
            layers,
        }
    }

    /// The image's digest (its manifest's), `sha256:<hex>`.
    pub fn digest(&self) -> String {
        self.manifest.digest()
    }
}

pub(crate) fn annotations(title: &str, version: &str) -> Value {
    json!({
        "org.opencontainers.image.title": title,
        "org.opencontainers.image.version": version,
        "org.opencontainers.image.licenses": "Apache-2.0",
    })
}

/// The filter as a Wasm image of the *compat* variant with OCI media types, the first form
/// Istio's agent tries (`extractOCIStandardImage` in `pkg/wasm/imagefetcher.go`): one
/// `tar+gzip` layer holding `plugin.wasm`.
pub fn filter(wasm: &[u8], version: &str) -> Result<Image> {
    if !wasm.starts_with(b"\0asm") {
        anyhow::bail!("not a Wasm module (no \\0asm magic)");
    }
    let layer = layer::build(&[Entry::File {
        path: PLUGIN_FILE.into(),
        mode: 0o444,
        bytes: wasm.to_vec(),
    }])?;
    let config = json!({"architecture": "wasm", "os": "wasip1", "config": {}});
    Ok(Image::new(
        config,
        vec![layer],
        annotations("sticky-canary-filter", version),
    ))
}

/// The controller: a static `stickyctl` and the `/etc/passwd` and `/etc/group` naming its
/// non-root user, nothing else (no shell, no libc), started as `stickyctl controller`.
pub fn controller(stickyctl: &[u8], version: &str) -> Result<Image> {
    elf::check_static(stickyctl).context("stickyctl")?;
    let dir = |path: &str| Entry::Dir {
        path: path.into(),
        mode: 0o755,
    };
    let file = |path: &str, mode: u32, bytes: Vec<u8>| Entry::File {
        path: path.into(),
        mode,
        bytes,
    };
    let layer = layer::build(&[
        dir("etc"),
        file(
            "etc/passwd",
            0o644,
            format!("root:x:0:0:root:/:/sbin/nologin\nnonroot:x:{NONROOT}:{NONROOT}:nonroot:/:/sbin/nologin\n").into_bytes(),
        ),
        file(
            "etc/group",
            0o644,
            format!("root:x:0:\nnonroot:x:{NONROOT}:\n").into_bytes(),
        ),
        dir("usr"),
        dir("usr/local"),
        dir("usr/local/bin"),
        file(
            STICKYCTL_PATH.trim_start_matches('/'),
            0o755,
            stickyctl.to_vec(),
        ),
    ])?;
    let config = json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {
            "User": format!("{NONROOT}:{NONROOT}"),
            "Entrypoint": [STICKYCTL_PATH],
            "Cmd": ["controller"],
            "Env": ["PATH=/usr/local/bin"],
            "WorkingDir": "/",
        },
    });
    Ok(Image::new(
        config,
        vec![layer],
        annotations("stickyctl", version),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn manifest(image: &Image) -> Value {
        serde_json::from_slice(&image.manifest.bytes).unwrap()
    }

    #[test]
    fn the_filter_image_is_the_compat_variant_istio_reads() {
        let wasm = b"\0asm\x01\0\0\0".to_vec();
        let image = filter(&wasm, "1.2.3").unwrap();
        let m = manifest(&image);
        assert_eq!(m["mediaType"], MANIFEST);
        assert_eq!(m["config"], image.config.descriptor());
        assert_eq!(m["layers"].as_array().unwrap().len(), 1);
        assert_eq!(
            m["layers"][0]["mediaType"],
            "application/vnd.oci.image.layer.v1.tar+gzip"
        );
        let mut tar = Vec::new();
        flate2::read::GzDecoder::new(image.layers[0].bytes.as_slice())
            .read_to_end(&mut tar)
            .unwrap();
        let mut archive = tar::Archive::new(tar.as_slice());
        let mut entry = archive.entries().unwrap().next().unwrap().unwrap();
        assert_eq!(entry.path().unwrap().to_str(), Some(PLUGIN_FILE));
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes).unwrap();
        assert_eq!(bytes, wasm);
        let config: Value = serde_json::from_slice(&image.config.bytes).unwrap();
        assert_eq!(
            config["rootfs"]["diff_ids"][0],
            crate::blob::digest(&tar),
            "diff_ids name the uncompressed layer"
        );
        assert_eq!(
            m["annotations"]["org.opencontainers.image.version"],
            "1.2.3"
        );
        assert_eq!(filter(&wasm, "1.2.3").unwrap().digest(), image.digest());
        assert_ne!(filter(&wasm, "1.2.4").unwrap().digest(), image.digest());
    }

    #[test]
    fn a_file_that_is_not_wasm_is_refused() {
        assert!(filter(b"<html>", "1").is_err());
    }

    #[test]
    fn the_controller_image_runs_stickyctl_as_nonroot_and_refuses_a_dynamic_binary() {
        let own = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        if cfg!(target_env = "gnu") {
            let err = format!("{:#}", controller(&own, "1").unwrap_err());
            assert!(err.contains("stickyctl: dynamically linked"), "{err}");
        }
    }
}
