//! A generic linux/amd64 image from files of the host (`sticky-oci rootfs`): each `--add`ed
//! file, with, for a dynamically linked executable, its program interpreter and every shared
//! library `ldd` names, at the paths the loader asks for; directories as trees (symlinks kept as
//! symlinks); extra symlinks and directories; owners per subtree. One layer, deterministic: the
//! same host files give the same digest.
//!
//! What is not followed: libraries `dlopen`ed at run time (iptables' extensions, say) are not
//! in `ldd`'s answer: `--add` their directory too. Every dynamically linked ELF file added, one
//! by one or in a directory, brings the libraries it needs (the extensions theirs).

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use serde_json::json;

use crate::elf;
use crate::images::{annotations, Image};
use crate::layer::{self, Entry, Owner};

/// The `PATH` an image gets unless `env` sets one.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// What goes into the image. Image paths are absolute (`/usr/local/bin/envoy`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Spec {
    /// The program the image runs: a file or symlink the image holds.
    pub entrypoint: String,
    /// Its default arguments.
    pub cmd: Vec<String>,
    /// `K=V` each; `PATH` defaults to [`DEFAULT_PATH`].
    pub env: Vec<String>,
    /// `UID[:GID]` the image runs as (root when `None`).
    pub user: Option<String>,
    /// Host file or directory, and where it goes in the image.
    pub adds: Vec<(PathBuf, String)>,
    /// Symlink in the image, and its target.
    pub links: Vec<(String, String)>,
    /// Directory in the image, and its mode (`/tmp` 0o1777, say).
    pub dirs: Vec<(String, u32)>,
    /// A path of the image and everything under it owned by someone other than root.
    pub owners: Vec<(Owner, String)>,
}

/// An entry of the tree and whether it was asked for (a parent directory made on the way is
/// not, and gives way to one that is).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Node {
    entry: Entry,
    implicit: bool,
}

/// The image's tree, keyed by path without the leading slash: sorted, so a parent always
/// comes before what it holds.
#[derive(Debug, Default)]
struct Tree(BTreeMap<String, Node>);

/// `path` without its leading slash, refused when it is relative, the root itself, or climbs
/// (`..`).
fn image_path(path: &str) -> Result<String> {
    let Some(rest) = path.strip_prefix('/') else {
        bail!("image path {path:?} is not absolute");
    };
    let parts: Vec<&str> = rest
        .split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .collect();
    if parts.is_empty() {
        bail!("image path {path:?} is the root");
    }
    if parts.contains(&"..") {
        bail!("image path {path:?} climbs with ..");
    }
    Ok(parts.join("/"))
}

impl Tree {
    /// Inserts `entry` (its parents as directories 0755 where missing). The same entry twice
    /// is fine; two different ones at one path are an error, except that an asked-for
    /// directory replaces one made on the way.
    fn insert(&mut self, entry: Entry, implicit: bool) -> Result<()> {
        let path = entry.path().to_owned();
        let mut parent = String::new();
        for part in path
            .split('/')
            .collect::<Vec<_>>()
            .split_last()
            .map_or(&[][..], |(_, p)| p)
        {
            if !parent.is_empty() {
                parent.push('/');
            }
            parent.push_str(part);
            match self.0.get(&parent) {
                Some(Node {
                    entry: Entry::Dir { .. },
                    ..
                }) => {}
                Some(_) => bail!("/{parent} is not a directory, yet /{path} goes under it"),
                None => {
                    let dir = Entry::Dir {
                        path: parent.clone(),
                        mode: 0o755,
                    };
                    self.0.insert(
                        parent.clone(),
                        Node {
                            entry: dir,
                            implicit: true,
                        },
                    );
                }
            }
        }
        if let Some(old) = self.0.get(&path) {
            let dirs = matches!((&old.entry, &entry), (Entry::Dir { .. }, Entry::Dir { .. }));
            if old.entry == entry || (dirs && implicit) {
                // Keep what is there (an asked-for directory stays asked for).
                return Ok(());
            }
            if !(dirs && old.implicit) {
                bail!("/{path} is added twice, differently");
            }
        }
        self.0.insert(path, Node { entry, implicit });
        Ok(())
    }

    /// Adds the host's `host` at `path` (of the image, without leading slash).
    fn add(&mut self, host: &Path, path: &str) -> Result<()> {
        let meta =
            std::fs::metadata(host).with_context(|| format!("reading {}", host.display()))?;
        if meta.is_dir() {
            return self.add_tree(host, path);
        }
        if !meta.is_file() {
            bail!("{} is neither a file nor a directory", host.display());
        }
        let bytes = std::fs::read(host).with_context(|| format!("reading {}", host.display()))?;
        self.add_file(host, path, meta.permissions().mode() & 0o7777, bytes)
    }

    /// The host's regular file `host` (`bytes`, `mode`) at `path`, with, when it is an ELF
    /// linked dynamically, its program interpreter and the libraries `ldd` names.
    fn add_file(&mut self, host: &Path, path: &str, mode: u32, bytes: Vec<u8>) -> Result<()> {
        let linking = match elf::is_elf(&bytes) {
            true => elf::linking(&bytes).with_context(|| format!("{}", host.display()))?,
            false => elf::Linking::default(),
        };
        self.insert(
            Entry::File {
                path: path.to_owned(),
                mode,
                bytes,
            },
            false,
        )?;
        let libraries = match linking.dynamic {
            true => libraries(host)?,
            false => Vec::new(),
        };
        for library in linking.interpreter.into_iter().chain(libraries) {
            self.add_resolved(&library)
                .with_context(|| format!("a library of {}", host.display()))?;
        }
        Ok(())
    }

    /// The file at the host's absolute `path`, symlinks followed, stored at that same path.
    fn add_resolved(&mut self, path: &str) -> Result<()> {
        let host = Path::new(path);
        let meta =
            std::fs::metadata(host).with_context(|| format!("reading {}", host.display()))?;
        let bytes = std::fs::read(host).with_context(|| format!("reading {}", host.display()))?;
        self.insert(
            Entry::File {
                path: image_path(path)?,
                mode: meta.permissions().mode() & 0o7777,
                bytes,
            },
            true,
        )
    }

    /// The directory `host` and everything in it, at `path`; symlinks stay symlinks.
    fn add_tree(&mut self, host: &Path, path: &str) -> Result<()> {
        let meta = std::fs::symlink_metadata(host)
            .with_context(|| format!("reading {}", host.display()))?;
        self.insert(
            Entry::Dir {
                path: path.to_owned(),
                mode: meta.permissions().mode() & 0o7777,
            },
            false,
        )?;
        let mut children: Vec<PathBuf> = std::fs::read_dir(host)
            .with_context(|| format!("listing {}", host.display()))?
            .map(|e| e.map(|e| e.path()))
            .collect::<std::io::Result<_>>()
            .with_context(|| format!("listing {}", host.display()))?;
        children.sort();
        for child in children {
            let Some(name) = child.file_name().and_then(|n| n.to_str()) else {
                bail!("{} is not a UTF-8 name", child.display());
            };
            let inner = format!("{path}/{name}");
            let meta = std::fs::symlink_metadata(&child)
                .with_context(|| format!("reading {}", child.display()))?;
            if meta.file_type().is_symlink() {
                let target = std::fs::read_link(&child)
                    .with_context(|| format!("reading the link {}", child.display()))?;
                let Some(target) = target.to_str() else {
                    bail!("the target of {} is not UTF-8", child.display());
                };
                self.insert(
                    Entry::Symlink {
                        path: inner,
                        target: target.to_owned(),
                    },
                    false,
                )?;
            } else if meta.is_dir() {
                self.add_tree(&child, &inner)?;
            } else if meta.is_file() {
                let bytes = std::fs::read(&child)
                    .with_context(|| format!("reading {}", child.display()))?;
                self.add_file(&child, &inner, meta.permissions().mode() & 0o7777, bytes)?;
            } else {
                bail!(
                    "{} is neither a file, a directory nor a symlink",
                    child.display()
                );
            }
        }
        Ok(())
    }
}

/// The shared libraries the host's loader resolves for `binary` (absolute paths, as `ldd`
/// prints them), the vDSO left out. A library `ldd` cannot find is an error naming it.
fn libraries(binary: &Path) -> Result<Vec<String>> {
    let out = Command::new("ldd")
        .arg(binary)
        .output()
        .context("running ldd (Debian's libc-bin)")?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!(
            "ldd {} failed: {}{}",
            binary.display(),
            text.trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    parse_ldd(&text).with_context(|| format!("ldd {}", binary.display()))
}

/// The paths of `ldd`'s lines: `name => /path (0x…)` and `/path (0x…)` (the loader);
/// `linux-vdso.so.1 (0x…)` is in the kernel, not a file.
fn parse_ldd(text: &str) -> Result<Vec<String>> {
    let mut paths = Vec::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let path = match line.split_once("=>") {
            Some((name, rest)) => {
                let rest = rest.trim();
                if rest.starts_with("not found") {
                    bail!("shared library {} not found", name.trim());
                }
                rest.split_whitespace().next().unwrap_or_default()
            }
            None => line.split_whitespace().next().unwrap_or_default(),
        };
        if line == "statically linked" {
            continue;
        }
        if path.starts_with('/') {
            paths.push(path.to_owned());
        } else if !line.starts_with("linux-vdso") && !line.starts_with("linux-gate") {
            bail!("unexpected line {line:?}");
        }
    }
    Ok(paths)
}

/// The entries of the image `spec` describes, in order, each with its owner.
pub fn entries(spec: &Spec) -> Result<Vec<(Entry, Owner)>> {
    let mut tree = Tree::default();
    for (host, path) in &spec.adds {
        let path = image_path(path)?;
        tree.add(host, &path)
            .with_context(|| format!("adding {} as /{path}", host.display()))?;
    }
    for (path, target) in &spec.links {
        if target.is_empty() {
            bail!("the link {path} has no target");
        }
        let entry = Entry::Symlink {
            path: image_path(path)?,
            target: target.clone(),
        };
        tree.insert(entry, false)
            .with_context(|| format!("linking {path} -> {target}"))?;
    }
    for (path, mode) in &spec.dirs {
        let entry = Entry::Dir {
            path: image_path(path)?,
            mode: *mode,
        };
        tree.insert(entry, false)
            .with_context(|| format!("making the directory {path}"))?;
    }
    let entrypoint = image_path(&spec.entrypoint)?;
    match tree.0.get(&entrypoint).map(|n| &n.entry) {
        Some(Entry::File { .. } | Entry::Symlink { .. }) => {}
        _ => bail!("the entrypoint {} is no file of the image", spec.entrypoint),
    }
    let mut owned: Vec<(Entry, Owner)> = tree
        .0
        .into_values()
        .map(|n| (n.entry, Owner::ROOT))
        .collect();
    for (owner, path) in &spec.owners {
        let path = image_path(path)?;
        let under = format!("{path}/");
        let mut found = false;
        for (entry, o) in owned.iter_mut() {
            if entry.path() == path || entry.path().starts_with(&under) {
                *o = *owner;
                found = true;
            }
        }
        if !found {
            bail!(
                "/{path} is not in the image, so it cannot be owned by {}",
                owner.uid
            );
        }
    }
    Ok(owned)
}

/// The image `spec` describes: one layer, linux/amd64, titled `title` at `version`.
pub fn image(spec: &Spec, title: &str, version: &str) -> Result<Image> {
    let layer = layer::build_owned(&entries(spec)?)?;
    let mut env = spec.env.clone();
    for kv in &env {
        if !kv.contains('=') {
            bail!("environment {kv:?} is not K=V");
        }
    }
    if !env.iter().any(|kv| kv.starts_with("PATH=")) {
        env.insert(0, format!("PATH={DEFAULT_PATH}"));
    }
    let mut config = json!({
        "Entrypoint": [spec.entrypoint],
        "Env": env,
        "WorkingDir": "/",
    });
    if !spec.cmd.is_empty() {
        config["Cmd"] = json!(spec.cmd);
    }
    if let Some(user) = &spec.user {
        config["User"] = json!(user);
    }
    Ok(Image::new(
        json!({"architecture": "amd64", "os": "linux", "config": config}),
        vec![layer],
        annotations(title, version),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn spec(adds: &[(&Path, &str)], entrypoint: &str) -> Spec {
        Spec {
            entrypoint: entrypoint.into(),
            adds: adds
                .iter()
                .map(|(h, p)| (h.to_path_buf(), p.to_string()))
                .collect(),
            ..Spec::default()
        }
    }

    fn paths(entries: &[(Entry, Owner)]) -> Vec<&str> {
        entries.iter().map(|(e, _)| e.path()).collect()
    }

    /// (path, type, link target) of every entry of the image's one layer.
    fn unpack(image: &Image) -> Vec<(String, tar::EntryType, Option<String>)> {
        let mut tar = Vec::new();
        flate2::read::GzDecoder::new(image.layers[0].bytes.as_slice())
            .read_to_end(&mut tar)
            .unwrap();
        tar::Archive::new(tar.as_slice())
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let link = e.link_name().unwrap().map(|l| l.display().to_string());
                (
                    e.path().unwrap().display().to_string(),
                    e.header().entry_type(),
                    link,
                )
            })
            .collect()
    }

    #[test]
    fn a_dynamic_binary_brings_its_interpreter_and_libraries() {
        let own = std::env::current_exe().unwrap();
        let bytes = std::fs::read(&own).unwrap();
        let interp = elf::interpreter(&bytes)
            .unwrap()
            .expect("test binaries are dynamic on glibc");
        let spec = spec(&[(own.as_path(), "/usr/local/bin/t")], "/usr/local/bin/t");
        let entries = entries(&spec).unwrap();
        let found = paths(&entries);
        assert!(found.contains(&"usr/local/bin/t"), "{found:?}");
        assert!(
            found.contains(&interp.trim_start_matches('/')),
            "{interp} in {found:?}"
        );
        let libc = found.iter().find(|p| p.contains("libc.so")).expect("libc");
        // The loader's path, holding the file itself even where the host has a symlink.
        let (Entry::File { bytes, .. }, _) =
            &entries[found.iter().position(|p| p == libc).unwrap()]
        else {
            panic!("{libc} is no file");
        };
        assert_eq!(bytes, &std::fs::read(format!("/{libc}")).unwrap());
        for (entry, owner) in &entries {
            assert_eq!(*owner, Owner::ROOT);
            if let Entry::File { path, .. } = entry {
                let parent = path.rsplit_once('/').map(|(p, _)| p);
                assert!(
                    parent.is_none_or(|p| found.contains(&p)),
                    "no parent for {path}"
                );
            }
        }
    }

    #[test]
    fn a_dynamic_elf_inside_an_added_directory_brings_its_libraries_too() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::copy(std::env::current_exe().unwrap(), dir.path().join("t")).unwrap();
        let entries = entries(&spec(&[(dir.path(), "/opt")], "/opt/t")).unwrap();
        let found = paths(&entries);
        assert!(found.iter().any(|p| p.contains("libc.so")), "{found:?}");
        assert!(found.iter().any(|p| p.contains("ld-linux")), "{found:?}");
    }

    #[test]
    fn a_static_binary_brings_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let fake = dir.path().join("static");
        std::fs::write(&fake, crate::elf::tests::elf_with(&[1, 1], "")).unwrap();
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
        let entries = entries(&spec(&[(fake.as_path(), "/pause")], "/pause")).unwrap();
        assert_eq!(entries.len(), 1, "{:?}", paths(&entries));
        let (Entry::File { mode, .. }, _) = &entries[0] else {
            panic!("not a file");
        };
        assert_eq!(*mode, 0o755, "the mode is kept");
    }

    #[test]
    fn a_directory_keeps_its_symlinks_and_links_and_dirs_are_added() {
        let dir = tempfile::tempdir().unwrap();
        let tree = dir.path().join("xtables");
        std::fs::create_dir_all(tree.join("sub")).unwrap();
        std::fs::write(tree.join("libxt_mark.so"), b"not elf").unwrap();
        std::fs::write(tree.join("sub/x"), b"x").unwrap();
        std::os::unix::fs::symlink("libxt_mark.so", tree.join("libxt_MARK.so")).unwrap();
        let mut spec = spec(
            &[(tree.as_path(), "/usr/lib/xtables")],
            "/usr/sbin/iptables",
        );
        spec.links = vec![("/usr/sbin/iptables".into(), "xtables-nft-multi".into())];
        spec.dirs = vec![("/tmp".into(), 0o1777)];
        spec.owners = vec![(
            Owner {
                uid: 1337,
                gid: 1337,
            },
            "/usr/lib/xtables/sub".into(),
        )];
        let image = image(&spec, "t", "1").unwrap();
        let found = unpack(&image);
        use tar::EntryType::{Directory, Regular, Symlink};
        let expected: Vec<(String, tar::EntryType, Option<String>)> = vec![
            ("tmp/".into(), Directory, None),
            ("usr/".into(), Directory, None),
            ("usr/lib/".into(), Directory, None),
            ("usr/lib/xtables/".into(), Directory, None),
            (
                "usr/lib/xtables/libxt_MARK.so".into(),
                Symlink,
                Some("libxt_mark.so".into()),
            ),
            ("usr/lib/xtables/libxt_mark.so".into(), Regular, None),
            ("usr/lib/xtables/sub/".into(), Directory, None),
            ("usr/lib/xtables/sub/x".into(), Regular, None),
            ("usr/sbin/".into(), Directory, None),
            (
                "usr/sbin/iptables".into(),
                Symlink,
                Some("xtables-nft-multi".into()),
            ),
        ];
        assert_eq!(found, expected);
        let entries = entries(&spec).unwrap();
        let tmp = entries.iter().find(|(e, _)| e.path() == "tmp").unwrap();
        assert_eq!(
            tmp.0,
            Entry::Dir {
                path: "tmp".into(),
                mode: 0o1777
            }
        );
        let owned: Vec<&str> = entries
            .iter()
            .filter(|(_, o)| o.uid == 1337)
            .map(|(e, _)| e.path())
            .collect();
        assert_eq!(owned, ["usr/lib/xtables/sub", "usr/lib/xtables/sub/x"]);
        let config: serde_json::Value = serde_json::from_slice(&image.config.bytes).unwrap();
        assert_eq!(
            config["config"]["Entrypoint"],
            json!(["/usr/sbin/iptables"])
        );
        assert_eq!(
            config["config"]["Env"],
            json!([format!("PATH={DEFAULT_PATH}")])
        );
        assert_eq!(config["architecture"], "amd64");
        assert_eq!(config["os"], "linux");
    }

    #[test]
    fn the_same_input_gives_the_same_digest() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a"), b"a").unwrap();
        let mut spec = spec(&[(dir.path(), "/data")], "/data/a");
        spec.env = vec!["K=V".into()];
        spec.user = Some("1337:1337".into());
        spec.cmd = vec!["--x".into()];
        let first = image(&spec, "t", "1").unwrap();
        assert_eq!(image(&spec, "t", "1").unwrap(), first);
        std::fs::write(dir.path().join("a"), b"b").unwrap();
        assert_ne!(image(&spec, "t", "1").unwrap().digest(), first.digest());
        let config: serde_json::Value = serde_json::from_slice(&first.config.bytes).unwrap();
        assert_eq!(config["config"]["User"], "1337:1337");
        assert_eq!(config["config"]["Cmd"], json!(["--x"]));
        assert_eq!(config["config"]["Env"][1], "K=V");
    }

    #[test]
    fn mistakes_are_errors_that_name_the_culprit() {
        let missing = Path::new("/nonexistent/sticky-oci-test");
        let err = format!(
            "{:#}",
            entries(&spec(&[(missing, "/x")], "/x")).unwrap_err()
        );
        assert!(err.contains("/nonexistent/sticky-oci-test"), "{err}");
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, b"f").unwrap();
        let err = format!("{:#}", entries(&spec(&[(&file, "/f")], "/g")).unwrap_err());
        assert!(err.contains("entrypoint /g"), "{err}");
        let err = format!("{:#}", entries(&spec(&[(&file, "f")], "/f")).unwrap_err());
        assert!(err.contains("not absolute"), "{err}");
        let err = format!(
            "{:#}",
            entries(&spec(&[(&file, "/../f")], "/f")).unwrap_err()
        );
        assert!(err.contains(".."), "{err}");
        let err = format!(
            "{:#}",
            entries(&spec(&[(&file, "/f"), (&file, "/f/g")], "/f")).unwrap_err()
        );
        assert!(err.contains("/f is not a directory"), "{err}");
        let mut twice = spec(&[(&file, "/f")], "/f");
        twice.links = vec![("/f".into(), "g".into())];
        let err = format!("{:#}", entries(&twice).unwrap_err());
        assert!(err.contains("added twice"), "{err}");
        let mut unowned = spec(&[(&file, "/f")], "/f");
        unowned.owners = vec![(Owner { uid: 1, gid: 1 }, "/etc".into())];
        assert!(format!("{:#}", entries(&unowned).unwrap_err()).contains("/etc is not in"));
        assert!(image(
            &Spec {
                env: vec!["K".into()],
                ..spec(&[(&file, "/f")], "/f")
            },
            "t",
            "1"
        )
        .is_err());
    }

    #[test]
    fn ldd_output_is_parsed_and_a_missing_library_is_named() {
        let text = "\tlinux-vdso.so.1 (0x00007ffd)\n\
                    \tlibm.so.6 => /lib/x86_64-linux-gnu/libm.so.6 (0x00007f)\n\
                    \t/lib64/ld-linux-x86-64.so.2 (0x00007f)\n";
        assert_eq!(
            parse_ldd(text).unwrap(),
            [
                "/lib/x86_64-linux-gnu/libm.so.6",
                "/lib64/ld-linux-x86-64.so.2"
            ]
        );
        assert!(parse_ldd("\tstatically linked\n").unwrap().is_empty());
        let err = parse_ldd("\tlibgone.so.1 => not found\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("libgone.so.1"), "{err}");
    }
}
