//! The Envoys under test: one process per variant, so each is measured alone and its memory
//! can be compared with the others'.
//!
//! Every listener starts as the one `render::envoy` renders for the filter (the
//! listener users run), then loses the filter, swaps it for the Lua equivalent, or answers
//! itself instead of proxying. A multi-rollout variant runs a gateway of services instead
//! (`sticky_canary_e2e::gateway`, with Istio's cluster names), all in one filter
//! configuration. The upstream is an Envoy too (direct response): a fast local server whose
//! cost is the same for every variant. An Envoy may also run under callgrind,
//! which counts the instructions it executes (see [`crate::callgrind`]).

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use render::envoy::{render_bootstrap, render_cds, render_lds, EnvoyLayout, CDS_FILE, LDS_FILE};
use serde_json::{json, Value};
use sticky_canary_e2e::browser::Http;
use sticky_canary_e2e::envoy::free_port;
use sticky_canary_e2e::envoy_process::{write_json, EnvoyProcess};
use sticky_canary_e2e::gateway::{self, Service};

use crate::lua;
use crate::requests::{self, Shape};
use sticky_canary_filter::config::DEFAULT_COOKIE;

/// How long Envoy may take to start natively (it compiles the .wasm first).
const PATIENCE: Duration = Duration::from_secs(30);
/// How long Envoy may take to start under callgrind: about 30 s for all of them at once on
/// 2 idle CPUs (uncounted), much more when the CPUs are shared.
const CALLGRIND_PATIENCE: Duration = Duration::from_secs(300);
/// The body every direct response carries, about what a small API answer weighs.
const BODY: &str = "{\"ok\":true}\n";
/// How long a stopping Envoy under callgrind may take to write its last profile and exit.
const STOP_PATIENCE: Duration = Duration::from_secs(20);
/// Callgrind's output file in the Envoy's directory; dumps append `.1`, `.2`, ...
const CALLGRIND_OUT: &str = "callgrind.out";
/// Where the HTTP connection manager sits in a listener rendered by `render_lds`.
const MANAGER_POINTER: &str = "/resources/0/filter_chains/0/filters/0/typed_config";

/// The route seal of sealed variants: as long as the one `stickyctl` derives (32 characters).
const SEAL: &str = "0123456789abcdef0123456789abcdef";

/// The upstream of Envoys that answer every request themselves: their clusters are never used.
pub const NOWHERE: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 9));

/// What sits in front of the router.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filter {
    /// Nothing: the limit.
    None,
    /// The sticky-canary Wasm filter.
    Wasm,
    /// The Lua equivalent (see [`lua`]).
    Lua,
}

/// One Envoy configuration under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Variant {
    /// The filter.
    pub filter: Filter,
    /// Versions in the configuration (`v1..vN`, equal weights).
    pub versions: usize,
    /// Answer directly instead of proxying, so Envoy's share of the cost is smallest.
    pub direct: bool,
    /// Envoy worker threads (`--concurrency`); each runs its own Wasm VM.
    pub workers: u8,
    /// 0: one service behind the listener `stickyctl` renders, the single-rollout form. N: a
    /// gateway of N services, each in a rollout of its own in one multi-rollout configuration
    /// (see [`requests::rollouts_config`]), its requests spread evenly over them.
    pub rollouts: usize,
    /// The single-rollout configuration carries a route seal (as every rollout `stickyctl`
    /// renders does): the stamp is `<version>;<seal>` and the version routes match that.
    pub sealed: bool,
}

/// The upstream of proxying Envoys: an Envoy answering every request itself.
pub const UPSTREAM: Variant = Variant {
    filter: Filter::None,
    versions: 2,
    direct: true,
    workers: 1,
    rollouts: 0,
    sealed: false,
};

impl Variant {
    /// The variant whose Envoy process serves this one: one process per distinct
    /// configuration, so the no-filter Envoy serves every no-filter row, whatever its versions.
    pub fn process(self) -> Variant {
        match self.filter {
            Filter::None => Variant {
                versions: 2,
                ..self
            },
            _ => self,
        }
    }

    /// The distinct processes these variants need ([`Variant::process`]), in first-use
    /// order: one Envoy is started for each.
    pub fn processes(variants: impl IntoIterator<Item = Variant>) -> Vec<Variant> {
        let mut processes: Vec<Variant> = Vec::new();
        for variant in variants {
            let process = variant.process();
            if !processes.contains(&process) {
                processes.push(process);
            }
        }
        processes
    }

    /// Short name for the table.
    pub fn label(self) -> String {
        let filter = match self.filter {
            Filter::None => "no filter",
            Filter::Wasm => "wasm filter",
            Filter::Lua => "lua filter",
        };
        let versions = match (self.filter, self.rollouts) {
            (Filter::None, 0) => String::new(),
            (Filter::None, n) => format!(", gateway of {n} services"),
            (_, 0) => format!(", {} versions", self.versions),
            (_, n) => format!(", {n} rollouts of {} versions", self.versions),
        };
        let direct = if self.direct { ", direct response" } else { "" };
        let sealed = if self.sealed { ", sealed" } else { "" };
        let workers = match self.workers {
            1 => String::new(),
            n => format!(", {n} workers"),
        };
        format!("{filter}{versions}{sealed}{direct}{workers}")
    }

    /// The requests of `shape` to this variant, to be sent in turn.
    pub fn requests(self, shape: Shape) -> Vec<Vec<(&'static str, String)>> {
        match self.rollouts {
            0 => vec![shape.headers(self.versions)],
            n => shape.gateway_requests(n, self.versions),
        }
    }

    /// The services of a gateway variant, every version of every one served by `upstream`.
    fn services(self, upstream: SocketAddr) -> Vec<Service> {
        (0..self.rollouts)
            .map(|index| Service {
                host: requests::service_host(index),
                versions: (1..=self.versions)
                    .map(|i| (format!("v{i}"), upstream))
                    .collect(),
                in_rollout: true,
            })
            .collect()
    }
}

/// The listener of `variant`, as Envoy reads it from `lds.json`.
fn listener(variant: Variant, layout: &EnvoyLayout, upstream: SocketAddr) -> Result<Value> {
    let config = requests::config(variant.versions);
    let mut plugin = config.plugin.clone();
    if variant.sealed {
        plugin.seal = Some(SEAL.to_owned());
    }
    let mut lds = match variant.rollouts {
        0 => render_lds(&plugin, layout)?,
        _ if variant.direct => bail!(
            "{}: a request finds its rollout from the cluster its route names, and a direct \
             response names none",
            variant.label()
        ),
        _ => {
            let plugin = requests::rollouts_config(variant.rollouts, variant.versions);
            let json = serde_json::to_string(&plugin)?;
            gateway::render_lds(&variant.services(upstream), &json, layout)
        }
    };
    let manager = lds.pointer_mut(MANAGER_POINTER).ok_or_else(|| {
        anyhow!("rendered listener has no connection manager at {MANAGER_POINTER}")
    })?;
    let filters = manager["http_filters"]
        .as_array_mut()
        .ok_or_else(|| anyhow!("rendered listener has no http_filters"))?;
    // The filter comes first, the router last.
    match variant.filter {
        Filter::Wasm => {}
        Filter::None => {
            filters.remove(0);
        }
        Filter::Lua if variant.rollouts > 0 => {
            bail!("{}: the Lua filter serves one rollout", variant.label())
        }
        Filter::Lua => filters[0] = lua::filter(&config),
    }
    if variant.direct {
        let routes = manager["route_config"]["virtual_hosts"][0]["routes"]
            .as_array_mut()
            .ok_or_else(|| anyhow!("rendered listener has no routes"))?;
        for route in routes {
            // Still one route per version, so a stamped request is matched again as when proxying.
            if let Some(route) = route.as_object_mut() {
                route.remove("route");
                route.insert(
                    "direct_response".into(),
                    json!({ "status": 200, "body": { "inline_string": BODY } }),
                );
            }
        }
    }
    Ok(lds)
}

/// How an Envoy process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Launch {
    /// Natively, pinned to this CPU when given: for load, memory and as the upstream.
    Native(Option<usize>),
    /// Under callgrind, which counts every instruction Envoy executes in user space: exact
    /// where timing on a shared VM is not, and about 50 times slower.
    Callgrind,
}

/// A running Envoy; stopped when dropped.
pub struct Envoy {
    process: EnvoyProcess,
    /// Where clients connect.
    pub address: SocketAddr,
    launch: Launch,
    callgrind_out: PathBuf,
}

impl Envoy {
    /// Starts `variant` (see [`Envoy::spawn`]) and waits until it answers.
    pub fn start(
        variant: Variant,
        upstream: SocketAddr,
        launch: Launch,
        wasm: &Path,
    ) -> Result<Envoy> {
        let mut envoy = Envoy::spawn(variant, upstream, launch, wasm)?;
        envoy.wait_ready(variant)?;
        Ok(envoy)
    }

    /// Starts `variant` with every version's cluster pointing at `upstream`, without waiting
    /// for it, so that slow starts (under callgrind) overlap. Only Wasm variants load `wasm`.
    pub fn spawn(
        variant: Variant,
        upstream: SocketAddr,
        launch: Launch,
        wasm: &Path,
    ) -> Result<Envoy> {
        let layout = EnvoyLayout {
            listen_port: free_port()?,
            wasm_path: wasm.to_owned(),
            upstreams: (1..=variant.versions)
                .map(|i| (format!("v{i}"), upstream))
                .collect::<BTreeMap<_, _>>(),
        };
        let dir = tempfile::Builder::new()
            .prefix("sticky-bench-")
            .tempdir()
            .context("creating Envoy's config directory")?;
        let cds = match variant.rollouts {
            0 => render_cds(&layout),
            _ => gateway::render_cds(&variant.services(upstream)),
        };
        write_json(&dir.path().join(CDS_FILE), &cds)?;
        write_json(
            &dir.path().join(LDS_FILE),
            &listener(variant, &layout, upstream)?,
        )?;
        let mut bootstrap = render_bootstrap(dir.path(), 0);
        if launch == Launch::Callgrind {
            // Without sinks Envoy still walks every stat on its flush timer (every 5 s), work
            // that grows with the number of clusters and lands in whichever batch it falls
            // into: under callgrind, flush only when the admin interface asks (Envoy takes one
            // of the two settings, and the bootstrap flushes every second for the analysis).
            if let Some(bootstrap) = bootstrap.as_object_mut() {
                bootstrap.remove("stats_flush_interval");
            }
            bootstrap["stats_flush_on_admin"] = Value::Bool(true);
        }
        let launcher: Vec<String> = match launch {
            Launch::Native(Some(cpu)) => vec!["taskset".into(), "-c".into(), cpu.to_string()],
            Launch::Native(None) => Vec::new(),
            Launch::Callgrind => vec![
                "valgrind".into(),
                "--tool=callgrind".into(),
                // `.venv/bin/envoy` is a Python script that execs the real binary; the
                // exec keeps the process id that callgrind_control addresses.
                "--trace-children=yes".into(),
                // V8 writes and rewrites the machine code it runs.
                "--smc-check=all-non-file".into(),
                // Start-up is six times faster uncounted; counting starts with
                // `callgrind_control --instr=on` (see `crate::callgrind`).
                "--instr-atstart=no".into(),
                format!(
                    "--callgrind-out-file={}",
                    dir.path().join(CALLGRIND_OUT).display()
                ),
            ],
        };
        let callgrind_out = dir.path().join(CALLGRIND_OUT);
        let process = EnvoyProcess::spawn_via(
            &launcher,
            &format!("envoy ({})", variant.label()),
            dir,
            &bootstrap,
            variant.workers,
            &[],
        )?;
        Ok(Envoy {
            process,
            address: SocketAddr::from(([127, 0, 0, 1], layout.listen_port)),
            launch,
            callgrind_out,
        })
    }

    /// Waits for a `200`; with a filter, also for the cookies that prove it ran (on the first
    /// service of a gateway, and its rollout's cookie).
    pub fn wait_ready(&mut self, variant: Variant) -> Result<()> {
        let http = Http::new(self.address);
        let (host, cookie) = match variant.rollouts {
            0 => (None, DEFAULT_COOKIE.to_owned()),
            _ => (Some(requests::service_host(0)), requests::version_cookie(0)),
        };
        let probe: Vec<(&str, &[u8])> = host.iter().map(|h| ("host", h.as_bytes())).collect();
        let patience = match self.launch {
            Launch::Native(_) => PATIENCE,
            Launch::Callgrind => CALLGRIND_PATIENCE,
        };
        let label = variant.label();
        let ready =
            self.process
                .wait_for_within("a 200", patience, |_| match http.get("/", &probe) {
                    Ok(response) if response.status == 200 => {
                        let decided = response.cookie(&cookie).is_some();
                        if decided != (variant.filter != Filter::None) {
                            bail!(
                                "{label}: the response {} a {cookie} cookie",
                                if decided { "unexpectedly has" } else { "lacks" }
                            );
                        }
                        Ok(Some(()))
                    }
                    _ => Ok(None),
                });
        ready.map_err(|err| self.process.explain(err))
    }

    /// The process id: Envoy's own, also under callgrind (valgrind and the Python launcher
    /// exec in place rather than fork).
    pub fn pid(&mut self) -> u32 {
        self.process.pid()
    }

    /// Where callgrind writes its dumps (`<file>.<n>`), when this Envoy runs under it.
    pub fn callgrind_out(&self) -> Option<PathBuf> {
        (self.launch == Launch::Callgrind).then(|| self.callgrind_out.clone())
    }

    /// CPU time this Envoy has used so far, all threads, user and system: from the scheduler's
    /// own accounting (`/proc/<pid>/task/*/schedstat`, nanoseconds), so the filter's cost per
    /// request is measured, not inferred from throughput.
    pub fn cpu_time(&mut self) -> Result<Duration> {
        let pid = self.pid();
        let tasks = format!("/proc/{pid}/task");
        let mut total = 0u64;
        for task in std::fs::read_dir(&tasks).with_context(|| format!("reading {tasks}"))? {
            let path = task?.path().join("schedstat");
            // A thread may end between listing and reading; it no longer runs, skip it.
            let Ok(text) = std::fs::read_to_string(&path) else {
                continue;
            };
            total += text
                .split_whitespace()
                .next()
                .and_then(|ns| ns.parse::<u64>().ok())
                .ok_or_else(|| anyhow!("unexpected {}: {text:?}", path.display()))?;
        }
        Ok(Duration::from_nanos(total))
    }

    /// Resident memory, from `/proc/<pid>/status`.
    pub fn rss_kib(&mut self) -> Result<u64> {
        let pid = self.pid();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .with_context(|| format!("reading /proc/{pid}/status"))?;
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .ok_or_else(|| anyhow!("no VmRSS in /proc/{pid}/status"))
    }
}

impl Drop for Envoy {
    /// Under callgrind, stops Envoy gracefully before the guard kills it: a killed valgrind
    /// leaves its vgdb FIFOs behind in /tmp.
    fn drop(&mut self) {
        if self.launch != Launch::Callgrind {
            return;
        }
        let stopping = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .is_ok_and(|s| s.success());
        let deadline = Instant::now() + STOP_PATIENCE;
        while stopping && self.process.exited().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}
