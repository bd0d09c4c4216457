//! `sticky-load`: browsers visiting a site through Envoy at a steady rate for a while, as a
//! separate process (the controller under test shares no CPU time slice with it), then a
//! JSON summary of what each version served on stdout.
//!
//! Returning visitors keep their cookies (their pinned version); every `--new-every`-th visit
//! is by a first-time visitor (none with 0: a fixed population that comes back).

use std::collections::BTreeMap;
use std::io::Write;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Parser;
use sticky_canary_e2e::browser::{Browser, Http};
use sticky_canary_e2e::site::PAGES;
use sticky_canary_e2e::traffic::{Served, Summary};

/// Visits a site at a steady rate, then prints a JSON summary.
#[derive(Parser)]
struct Args {
    /// The listener (127.0.0.1:PORT).
    #[arg(long)]
    target: SocketAddr,
    /// Page visits per second, over all threads (each visit is the page and its resources).
    #[arg(long, default_value_t = 10.0)]
    rate: f64,
    /// How long to run.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Every n-th visit is by a first-time visitor; 0: never (a fixed population).
    #[arg(long, default_value_t = 5)]
    new_every: u64,
    /// Threads sending visits.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Returning visitors per thread.
    #[arg(long, default_value_t = 50)]
    browsers: usize,
    /// The `host` every visit names (a mesh gateway routes by it); none: the listener's.
    #[arg(long)]
    host: Option<String>,
}

/// A first-time visitor of `args.host`.
fn new_browser(args: &Args) -> Browser {
    match &args.host {
        Some(host) => Browser::new().with_header("host", host),
        None => Browser::new(),
    }
}

fn run(args: &Args, http: &Http, thread: usize) -> Summary {
    let period = Duration::from_secs_f64(args.threads as f64 / args.rate.max(0.001));
    let end = Instant::now() + Duration::from_secs(args.seconds);
    let mut browsers = vec![new_browser(args); args.browsers.max(1)];
    let mut summary = Summary::default();
    let mut next = Instant::now() + period.mul_f64(thread as f64 / args.threads as f64);
    let mut visit = 0u64;
    while next < end {
        if let Some(wait) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        } else if Instant::now() - next > Duration::from_secs(1) {
            // Far behind (a slow upstream): skip rather than burst.
            next = Instant::now();
        }
        next += period;
        visit += 1;
        let slot = (visit as usize) % browsers.len();
        if args.new_every > 0 && visit.is_multiple_of(args.new_every) {
            browsers[slot] = new_browser(args);
        }
        let path = PAGES[(visit as usize) % PAGES.len()];
        match browsers[slot].visit(http, path) {
            Ok(v) => {
                for response in v.responses() {
                    let version = response.served_by.clone().unwrap_or_default();
                    let served = summary
                        .versions
                        .entry(version)
                        .or_insert_with(Served::default);
                    served.requests += 1;
                    if response.status >= 500 {
                        served.errors += 1;
                    }
                }
                let page = v.version().unwrap_or_default().to_owned();
                summary.versions.entry(page).or_default().pages += 1;
            }
            Err(_) => summary.transport_errors += 1,
        }
    }
    summary
}

fn main() -> Result<()> {
    let args = Args::parse();
    let http = Http::new(args.target);
    let summaries: Vec<Summary> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..args.threads.max(1))
            .map(|thread| {
                let http = http.fresh();
                let args = &args;
                scope.spawn(move || run(args, &http, thread))
            })
            .collect();
        workers.into_iter().filter_map(|w| w.join().ok()).collect()
    });
    let mut total = Summary {
        versions: BTreeMap::new(),
        transport_errors: 0,
    };
    for summary in summaries {
        total.add(&summary);
    }
    let mut stdout = std::io::stdout();
    serde_json::to_writer(&mut stdout, &total).context("writing the summary")?;
    writeln!(stdout)?;
    Ok(())
}
