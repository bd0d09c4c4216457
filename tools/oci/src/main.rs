//! `sticky-oci filter|controller|rootfs`: writes one image as an OCI image layout and prints its
//! digest and where it is (`make oci` runs the first two, `make node-images` the third).

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use sticky_canary_oci::layer::Owner;
use sticky_canary_oci::rootfs::{self, Spec};
use sticky_canary_oci::{images, layout};

#[derive(Parser)]
#[command(about = "Writes sticky-canary's images as OCI image layouts")]
struct Cli {
    #[command(subcommand)]
    image: Which,
    /// The layout directory to write (replaced whole).
    #[arg(long, global = true, default_value = "target/oci/image")]
    out: PathBuf,
    /// The tag the layout's index gives the image.
    #[arg(long, global = true, default_value = env!("CARGO_PKG_VERSION"))]
    tag: String,
}

#[derive(Subcommand)]
enum Which {
    /// The filter as a Wasm image Istio pulls (a WasmPlugin `url` of `oci://`).
    Filter {
        /// The built module.
        #[arg(long)]
        wasm: PathBuf,
    },
    /// The controller: a static stickyctl, run as a non-root user.
    Controller {
        /// A static (musl) stickyctl.
        #[arg(long)]
        stickyctl: PathBuf,
    },
    /// A linux/amd64 image of host files: an added dynamic executable brings its program
    /// interpreter and the shared libraries `ldd` names, at their host paths; a directory is
    /// added as a tree, symlinks as symlinks.
    Rootfs {
        /// The program the image runs (a path in the image).
        #[arg(long)]
        entrypoint: String,
        /// A default argument (repeatable): the image's Cmd.
        #[arg(long, allow_hyphen_values = true)]
        cmd: Vec<String>,
        /// HOST_PATH:IMAGE_PATH, a file (followed if a symlink, mode kept) or directory.
        #[arg(long, value_parser = parse_add)]
        add: Vec<(PathBuf, String)>,
        /// IMAGE_PATH:TARGET, a symlink in the image.
        #[arg(long, value_parser = parse_link)]
        link: Vec<(String, String)>,
        /// IMAGE_PATH[:MODE], a directory (MODE octal, default 755; /tmp:1777).
        #[arg(long, value_parser = parse_dir)]
        dir: Vec<(String, u32)>,
        /// K=V, an environment variable (PATH defaults to the usual six directories).
        #[arg(long)]
        env: Vec<String>,
        /// UID[:GID] the image runs as.
        #[arg(long)]
        user: Option<String>,
        /// UID:GID:IMAGE_PATH, that path and everything under it owned by UID:GID.
        #[arg(long, value_parser = parse_owner)]
        owner: Vec<(Owner, String)>,
    },
}

fn parse_add(s: &str) -> Result<(PathBuf, String), String> {
    match s.rsplit_once(':') {
        Some((host, image)) if !host.is_empty() && image.starts_with('/') => {
            Ok((PathBuf::from(host), image.to_owned()))
        }
        _ => Err(format!("{s:?} is not HOST_PATH:/IMAGE_PATH")),
    }
}

fn parse_link(s: &str) -> Result<(String, String), String> {
    match s.split_once(':') {
        Some((path, target)) if path.starts_with('/') && !target.is_empty() => {
            Ok((path.to_owned(), target.to_owned()))
        }
        _ => Err(format!("{s:?} is not /IMAGE_PATH:TARGET")),
    }
}

fn parse_dir(s: &str) -> Result<(String, u32), String> {
    let (path, mode) = s.split_once(':').unwrap_or((s, "755"));
    match u32::from_str_radix(mode, 8) {
        Ok(mode) if mode <= 0o7777 && path.starts_with('/') => Ok((path.to_owned(), mode)),
        _ => Err(format!("{s:?} is not /IMAGE_PATH[:OCTAL_MODE]")),
    }
}

fn parse_owner(s: &str) -> Result<(Owner, String), String> {
    let mut parts = s.splitn(3, ':');
    let (uid, gid, path) = (parts.next(), parts.next(), parts.next());
    match (
        uid.and_then(|u| u.parse().ok()),
        gid.and_then(|g| g.parse().ok()),
        path,
    ) {
        (Some(uid), Some(gid), Some(path)) if path.starts_with('/') => {
            Ok((Owner { uid, gid }, path.to_owned()))
        }
        _ => Err(format!("{s:?} is not UID:GID:/IMAGE_PATH")),
    }
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let read =
        |path: &PathBuf| std::fs::read(path).with_context(|| format!("reading {}", path.display()));
    let image = match &cli.image {
        Which::Filter { wasm } => images::filter(&read(wasm)?, &cli.tag),
        Which::Controller { stickyctl } => images::controller(&read(stickyctl)?, &cli.tag),
        Which::Rootfs {
            entrypoint,
            cmd,
            add,
            link,
            dir,
            env,
            user,
            owner,
        } => {
            let spec = Spec {
                entrypoint: entrypoint.clone(),
                cmd: cmd.clone(),
                env: env.clone(),
                user: user.clone(),
                adds: add.clone(),
                links: link.clone(),
                dirs: dir.clone(),
                owners: owner.clone(),
            };
            let title = cli
                .out
                .file_name()
                .map_or("image".into(), |n| n.to_string_lossy().into_owned());
            rootfs::image(&spec, &title, &cli.tag)
        }
    }?;
    layout::write(&cli.out, &image, &cli.tag)?;
    println!("{} {}", image.digest(), cli.out.display());
    Ok(())
}
