//! Load from wrk, a separate process, and what it reports.

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};

/// One wrk run.
#[derive(Debug, Clone, Copy)]
pub struct Load {
    /// Open connections (wrk keeps them alive).
    pub connections: u32,
    /// How long to measure; wrk counts in whole seconds.
    pub duration: Duration,
    /// CPU to pin wrk to, away from the Envoy under test.
    pub cpu: Option<usize>,
}

/// What one run measured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// Requests per second.
    pub throughput: f64,
    /// Median latency, microseconds.
    pub p50_us: f64,
    /// 99th percentile latency, microseconds.
    pub p99_us: f64,
    /// Requests completed.
    pub requests: u64,
}

/// Runs wrk against `address` with these request headers. Any error or non-2xx response
/// fails the run: a benchmark of failures says nothing about the filter.
pub fn run(address: SocketAddr, headers: &[(&str, String)], load: Load) -> Result<Sample> {
    let mut command = match load.cpu {
        Some(cpu) => {
            let mut taskset = Command::new("taskset");
            taskset.args(["-c", &cpu.to_string(), "wrk"]);
            taskset
        }
        None => Command::new("wrk"),
    };
    command.args([
        "--threads",
        "1",
        "--connections",
        &load.connections.to_string(),
        "--duration",
        &format!("{}s", load.duration.as_secs().max(1)),
        "--latency",
    ]);
    for (name, value) in headers {
        command.args(["--header", &format!("{name}: {value}")]);
    }
    command.arg(format!("http://{address}/"));
    let output = command
        .output()
        .context("running wrk (Debian package `wrk`; `make setup` installs it)")?;
    let text = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        bail!(
            "wrk failed ({}): {text}{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    parse(&text)
}

/// Reads throughput and latency percentiles from wrk's `--latency` report.
fn parse(report: &str) -> Result<Sample> {
    if let Some(line) = report
        .lines()
        .find(|l| l.contains("Non-2xx") || l.contains("Socket errors"))
    {
        bail!("wrk saw failures ({}):\n{report}", line.trim());
    }
    let field = |prefix: &str| -> Result<&str> {
        report
            .lines()
            .map(str::trim)
            .find_map(|l| l.strip_prefix(prefix))
            .map(str::trim)
            .with_context(|| format!("no `{prefix}` in wrk's report:\n{report}"))
    };
    let throughput = field("Requests/sec:")?
        .parse()
        .with_context(|| format!("wrk's Requests/sec in:\n{report}"))?;
    let requests = report
        .lines()
        .find_map(|l| l.trim().split_once(" requests in "))
        .and_then(|(n, _)| n.parse().ok())
        .with_context(|| format!("no request count in wrk's report:\n{report}"))?;
    Ok(Sample {
        throughput,
        requests,
        p50_us: micros(field("50%")?)?,
        p99_us: micros(field("99%")?)?,
    })
}

/// wrk's durations: `812.00us`, `1.23ms`, `2.00s`.
fn micros(text: &str) -> Result<f64> {
    let (number, scale) = if let Some(n) = text.strip_suffix("us") {
        (n, 1.0)
    } else if let Some(n) = text.strip_suffix("ms") {
        (n, 1e3)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1e6)
    } else {
        bail!("unknown duration {text:?} from wrk");
    };
    let number: f64 = number
        .parse()
        .with_context(|| format!("duration {text:?} from wrk"))?;
    Ok(number * scale)
}

#[cfg(test)]
mod tests {
    use super::*;

    const REPORT: &str = "Running 2s test @ http://127.0.0.1:1234/
  1 threads and 16 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   812.34us  100.00us   5.00ms   90.00%
    Req/Sec    19.50k     1.00k   21.00k    80.00%
  Latency Distribution
     50%  790.00us
     75%  850.00us
     90%    0.93ms
     99%    1.52ms
  39000 requests in 2.00s, 5.00MB read
Requests/sec:  19500.12
Transfer/sec:      2.50MB
";

    #[test]
    fn reads_the_report() {
        let sample = parse(REPORT).unwrap();
        assert_eq!(sample.throughput, 19500.12);
        assert_eq!(sample.p50_us, 790.0);
        assert_eq!(sample.p99_us, 1520.0);
        assert_eq!(sample.requests, 39000);
    }

    #[test]
    fn failures_fail() {
        let report = REPORT.replace(
            "Requests/sec",
            "  Non-2xx or 3xx responses: 12\nRequests/sec",
        );
        assert!(parse(&report).is_err());
    }

    #[test]
    fn units() {
        assert_eq!(micros("2.00s").unwrap(), 2e6);
        assert!(micros("3 fortnights").is_err());
    }
}
