//! `sticky-upstream`: one version of the demo site, as its own process.
//!
//! Prints `listening on <address>` once it accepts connections, so a harness that asked for
//! port 0 learns the port without racing anyone for it.

use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr};

use anyhow::{Context, Result};
use clap::Parser;
use sticky_canary_e2e::site;
use sticky_canary_filter::names::check_version_name;

/// Serves the demo site as one version, on loopback.
#[derive(Parser)]
struct Args {
    /// Version name this process serves (a valid version name, e.g. v2).
    #[arg(long = "version", value_parser = parse_version)]
    version_name: String,
    /// Port on `--address`; 0 picks a free one.
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Loopback address to listen on (127.0.0.0/8): a Pod's IP when the mesh harness plays
    /// Pods; or 0.0.0.0 in a real Pod, whose network namespace is its own.
    #[arg(long, default_value_t = Ipv4Addr::LOCALHOST, value_parser = parse_loopback)]
    address: Ipv4Addr,
    /// Serve `/hop` by calling another service at this address (the caller's sidecar), as
    /// `HOST` (the service's name), carrying the version header it received, as applications
    /// propagate it.
    #[arg(long, value_names = ["ADDRESS", "HOST"], num_args = 2)]
    call: Option<Vec<String>>,
    /// Share of requests answered 500, spread evenly (0.05: every 20th).
    #[arg(long, default_value_t = 0.0, value_parser = parse_share)]
    error_rate: f64,
    /// Milliseconds added to every response.
    #[arg(long, default_value_t = 0)]
    delay_ms: u64,
}

fn parse_share(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(share) if (0.0..=1.0).contains(&share) => Ok(share),
        _ => Err(format!("{text:?} is not a share between 0 and 1")),
    }
}

fn parse_loopback(text: &str) -> Result<Ipv4Addr, String> {
    match text.parse::<Ipv4Addr>() {
        Ok(address) if address.is_loopback() || address.is_unspecified() => Ok(address),
        _ => Err(format!(
            "{text:?} is not an address of 127.0.0.0/8 nor 0.0.0.0"
        )),
    }
}

fn parse_version(name: &str) -> Result<String, String> {
    check_version_name(name).map(|()| name.to_owned())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let args = Args::parse();
    let calls = match args.call.as_deref() {
        Some([address, host]) => Some((
            address.parse::<SocketAddr>().context("--call ADDRESS")?,
            host.as_str(),
        )),
        _ => None,
    };
    let faults = site::Faults {
        error_rate: args.error_rate,
        delay: std::time::Duration::from_millis(args.delay_ms),
    };
    let app =
        site::router(&args.version_name, calls, faults).context("version name as header value")?;
    let listener = tokio::net::TcpListener::bind(SocketAddr::from((args.address, args.port)))
        .await
        .with_context(|| format!("binding {}:{}", args.address, args.port))?;
    let address = listener.local_addr()?;
    let mut stdout = std::io::stdout();
    writeln!(stdout, "listening on {address}")?;
    stdout.flush()?;
    axum::serve(listener, app).await.context("serving")
}
