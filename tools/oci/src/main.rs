//! `sticky-oci filter|controller`: writes one image as an OCI image layout and prints its
//! digest and where it is (`make oci` runs both).

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
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
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let read =
        |path: &PathBuf| std::fs::read(path).with_context(|| format!("reading {}", path.display()));
    let image = match &cli.image {
        Which::Filter { wasm } => images::filter(&read(wasm)?, &cli.tag),
        Which::Controller { stickyctl } => images::controller(&read(stickyctl)?, &cli.tag),
    }?;
    layout::write(&cli.out, &image, &cli.tag)?;
    println!("{} {}", image.digest(), cli.out.display());
    Ok(())
}
