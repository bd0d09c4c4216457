//! An OCI image layout directory (`oci-layout`, `index.json`, `blobs/sha256/`), which crane,
//! oras and skopeo push as it is.

use std::path::Path;

use anyhow::{Context, Result};
use serde_json::json;

use crate::blob::{Blob, INDEX};
use crate::images::Image;

/// `index.json` of a layout holding `image`, tagged `tag`.
pub fn index(image: &Image, tag: &str) -> Blob {
    let mut descriptor = image.manifest.descriptor();
    descriptor["annotations"] = json!({"org.opencontainers.image.ref.name": tag});
    Blob::json(
        INDEX,
        &json!({"schemaVersion": 2, "mediaType": INDEX, "manifests": [descriptor]}),
    )
}

/// Writes `image` as the layout `dir` (replacing it whole: the new one is written beside it
/// and renamed into place, so a reader never sees half a layout).
pub fn write(dir: &Path, image: &Image, tag: &str) -> Result<()> {
    let staging = dir.with_extension("tmp");
    if staging.exists() {
        std::fs::remove_dir_all(&staging)
            .with_context(|| format!("removing {}", staging.display()))?;
    }
    let blobs = staging.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).with_context(|| format!("creating {}", blobs.display()))?;
    let write = |path: &Path, bytes: &[u8]| {
        std::fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))
    };
    for blob in [&image.manifest, &image.config]
        .into_iter()
        .chain(&image.layers)
    {
        let digest = blob.digest();
        let hex = digest.trim_start_matches("sha256:");
        write(&blobs.join(hex), &blob.bytes)?;
    }
    write(
        &staging.join("oci-layout"),
        json!({"imageLayoutVersion": "1.0.0"})
            .to_string()
            .as_bytes(),
    )?;
    write(&staging.join("index.json"), &index(image, tag).bytes)?;
    if dir.exists() {
        std::fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    std::fs::rename(&staging, dir)
        .with_context(|| format!("moving the layout to {}", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::images;
    use serde_json::Value;

    #[test]
    fn the_layout_holds_every_blob_under_its_digest_and_the_index_names_the_tag() {
        let image = images::filter(b"\0asm\x01\0\0\0", "0.1.0").unwrap();
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("filter");
        write(&dir, &image, "0.1.0").unwrap();
        write(&dir, &image, "0.1.0").unwrap();
        let index: Value =
            serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
        assert_eq!(index["manifests"][0]["digest"], image.digest());
        assert_eq!(
            index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"],
            "0.1.0"
        );
        let stored: Vec<String> = std::fs::read_dir(dir.join("blobs/sha256"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(stored.len(), 3, "manifest, config, layer: {stored:?}");
        for name in stored {
            let bytes = std::fs::read(dir.join("blobs/sha256").join(&name)).unwrap();
            assert_eq!(crate::blob::digest(&bytes), format!("sha256:{name}"));
        }
        assert!(!root.path().join("filter.tmp").exists());
    }
}
