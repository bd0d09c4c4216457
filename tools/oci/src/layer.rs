//! A filesystem layer: a gzip-compressed tar, the same bytes for the same entries (every
//! timestamp zero, entries in the order given, no names or times in the gzip header).

use std::io::Write;

use anyhow::{Context, Result};
use flate2::write::GzEncoder;
use flate2::{Compression, GzBuilder};

use crate::blob::{digest, Blob, LAYER_TAR_GZIP};

/// One entry of a layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// A directory, `path` without a trailing slash.
    Dir { path: String, mode: u32 },
    /// A regular file.
    File {
        path: String,
        mode: u32,
        bytes: Vec<u8>,
    },
    /// A symbolic link to `target` (stored as it is: relative or absolute).
    Symlink { path: String, target: String },
}

impl Entry {
    /// The entry's path in the layer (no leading or trailing slash).
    pub fn path(&self) -> &str {
        match self {
            Entry::Dir { path, .. } | Entry::File { path, .. } | Entry::Symlink { path, .. } => {
                path
            }
        }
    }
}

/// Who owns an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owner {
    /// User id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
}

impl Owner {
    /// root:root.
    pub const ROOT: Owner = Owner { uid: 0, gid: 0 };
}

/// A layer: its compressed blob and the digest of the uncompressed tar (the image config's
/// `diff_ids`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layer {
    /// The `tar+gzip` blob.
    pub blob: Blob,
    /// `sha256:` of the tar before compression.
    pub diff_id: String,
}

/// The layer holding `entries`, owned by root.
pub fn build(entries: &[Entry]) -> Result<Layer> {
    let owned: Vec<(Entry, Owner)> = entries.iter().map(|e| (e.clone(), Owner::ROOT)).collect();
    build_owned(&owned)
}

/// The layer holding `entries`, each owned by its [`Owner`].
pub fn build_owned(entries: &[(Entry, Owner)]) -> Result<Layer> {
    let mut tar = tar::Builder::new(Vec::new());
    for (entry, owner) in entries {
        let mut header = tar::Header::new_ustar();
        header.set_uid(owner.uid.into());
        header.set_gid(owner.gid.into());
        header.set_mtime(0);
        match entry {
            Entry::Dir { path, mode } => {
                header.set_entry_type(tar::EntryType::Directory);
                header.set_mode(*mode);
                header.set_size(0);
                tar.append_data(&mut header, format!("{path}/"), std::io::empty())
                    .with_context(|| format!("adding directory {path}"))?;
            }
            Entry::File { path, mode, bytes } => {
                header.set_entry_type(tar::EntryType::Regular);
                header.set_mode(*mode);
                header.set_size(bytes.len() as u64);
                tar.append_data(&mut header, path, bytes.as_slice())
                    .with_context(|| format!("adding file {path}"))?;
            }
            Entry::Symlink { path, target } => {
                header.set_entry_type(tar::EntryType::Symlink);
                header.set_mode(0o777);
                header.set_size(0);
                tar.append_link(&mut header, path, target)
                    .with_context(|| format!("adding symlink {path} -> {target}"))?;
            }
        }
    }
    let tar = tar.into_inner().context("finishing the tar")?;
    let mut gzip: GzEncoder<Vec<u8>> = GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), Compression::best());
    gzip.write_all(&tar).context("compressing the layer")?;
    let compressed = gzip.finish().context("compressing the layer")?;
    Ok(Layer {
        blob: Blob::new(LAYER_TAR_GZIP, compressed),
        diff_id: digest(&tar),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn file(path: &str, bytes: &[u8]) -> Entry {
        Entry::File {
            path: path.into(),
            mode: 0o644,
            bytes: bytes.to_vec(),
        }
    }

    #[test]
    fn the_same_entries_make_the_same_bytes() {
        let entries = [file("plugin.wasm", b"\0asm")];
        assert_eq!(build(&entries).unwrap(), build(&entries).unwrap());
        assert_ne!(
            build(&entries).unwrap().blob.digest(),
            build(&[file("plugin.wasm", b"\0asm!")])
                .unwrap()
                .blob
                .digest()
        );
    }

    #[test]
    fn the_layer_unpacks_to_its_entries_and_the_diff_id_is_of_the_tar() {
        let layer = build(&[
            Entry::Dir {
                path: "etc".into(),
                mode: 0o755,
            },
            file("etc/passwd", b"root:x:0:0::/:/sbin/nologin\n"),
        ])
        .unwrap();
        let mut tar = Vec::new();
        flate2::read::GzDecoder::new(layer.blob.bytes.as_slice())
            .read_to_end(&mut tar)
            .unwrap();
        assert_eq!(layer.diff_id, digest(&tar));
        let mut archive = tar::Archive::new(tar.as_slice());
        let names: Vec<(String, u32, u64)> = archive
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let h = e.header();
                (
                    e.path().unwrap().display().to_string(),
                    h.mode().unwrap(),
                    h.mtime().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            names,
            [("etc/".into(), 0o755, 0), ("etc/passwd".into(), 0o644, 0)]
        );
    }

    #[test]
    fn symlinks_stay_symlinks_and_owners_are_kept() {
        let long = format!("usr/lib/{}/libx.so", "d".repeat(120));
        let layer = build_owned(&[
            (
                Entry::Symlink {
                    path: "usr/sbin/iptables".into(),
                    target: "xtables-nft-multi".into(),
                },
                Owner::ROOT,
            ),
            (
                Entry::Symlink {
                    path: "lib/libx.so".into(),
                    target: format!("/{long}"),
                },
                Owner::ROOT,
            ),
            (
                Entry::Dir {
                    path: "var/lib/istio".into(),
                    mode: 0o755,
                },
                Owner {
                    uid: 1337,
                    gid: 1337,
                },
            ),
        ])
        .unwrap();
        let mut tar = Vec::new();
        flate2::read::GzDecoder::new(layer.blob.bytes.as_slice())
            .read_to_end(&mut tar)
            .unwrap();
        let mut archive = tar::Archive::new(tar.as_slice());
        let found: Vec<(String, tar::EntryType, Option<String>, u64)> = archive
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (
                    e.path().unwrap().display().to_string(),
                    e.header().entry_type(),
                    e.link_name().unwrap().map(|l| l.display().to_string()),
                    e.header().uid().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            found,
            [
                (
                    "usr/sbin/iptables".into(),
                    tar::EntryType::Symlink,
                    Some("xtables-nft-multi".into()),
                    0
                ),
                (
                    "lib/libx.so".into(),
                    tar::EntryType::Symlink,
                    Some(format!("/{long}")),
                    0
                ),
                (
                    "var/lib/istio/".into(),
                    tar::EntryType::Directory,
                    None,
                    1337
                ),
            ]
        );
    }
}
