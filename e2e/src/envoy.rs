//! A real Envoy 1.40 running the built filter, configured through files in a temp directory
//! exactly as the controller's envoy-dir target configures one: bootstrap, `lds.json`,
//! `cds.json` and the layout, all rendered by `stickyctl::render::envoy`.

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use serde_json::Value;
use sticky_canary_filter::PluginConfig;
use stickyctl::fsutil::write_atomic;
use stickyctl::render::envoy::{
    render_bootstrap, render_cds, render_lds, EnvoyLayout, CDS_FILE, LAYOUT_FILE, LDS_FILE,
    LISTENER_NAME,
};

use crate::browser::Http;
use crate::locate;
use crate::process::ChildGuard;
use crate::site::WHOAMI;

/// How long Envoy may take to start or to apply a configuration (it compiles the .wasm).
const PATIENCE: Duration = Duration::from_secs(30);
/// Where, in a rendered listener, the filter's configuration string sits.
const PLUGIN_CONFIG_POINTER: &str = "/filter_chains/0/filters/0/typed_config/http_filters/0/typed_config/config/configuration/value";
const BOOTSTRAP_FILE: &str = "bootstrap.json";
const ADMIN_ADDRESS_FILE: &str = "admin-address";
const LOG_FILE: &str = "envoy.log";
/// What Envoy logs when its listener's port is taken.
const PORT_TAKEN: &str = "Address already in use";
/// Starts on a fresh port after losing the listener's port to another process.
const PORT_ATTEMPTS: u32 = 3;

/// A running Envoy; killed when dropped, its directory removed with it.
pub struct Envoy {
    process: ChildGuard,
    dir: tempfile::TempDir,
    layout: EnvoyLayout,
    admin: Http,
    listener: SocketAddr,
    probe_host: Option<String>,
}

/// Renders the listener and cluster discovery files (`lds.json`, `cds.json`) for a layout.
pub type Render<'a> = dyn Fn(&EnvoyLayout) -> Result<(Value, Value)> + 'a;

/// What an Envoy's listener serves, rendered once the listener's port is known.
pub struct Site<'a> {
    /// The layout's upstreams by version: a service's (see [`Envoy::start`]), or none for a
    /// listener whose clusters are its own (a gateway's, see [`crate::gateway`]).
    pub upstreams: BTreeMap<String, SocketAddr>,
    /// Renders `lds.json` and `cds.json` for the layout.
    pub render: Box<Render<'a>>,
    /// The `Host` of the readiness probe, for a listener that routes by host.
    pub probe_host: Option<String>,
}

/// Options for [`Envoy::start`].
#[derive(Debug, Clone, Copy)]
pub struct EnvoyOptions {
    /// Worker threads; each runs its own Wasm VM.
    pub concurrency: u8,
}

impl Default for EnvoyOptions {
    fn default() -> Self {
        // One worker keeps parallel tests light on a small machine.
        EnvoyOptions { concurrency: 1 }
    }
}

/// A port on 127.0.0.1 that was free a moment ago. Envoy's listener port must be known before
/// it starts (it is part of the layout); the admin port is not, so it binds port 0 instead.
pub fn free_port() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(listener.local_addr()?.port())
}

fn write_json(path: &Path, value: &Value) -> Result<()> {
    let text = serde_json::to_vec_pretty(value)?;
    write_atomic(path, &text).with_context(|| format!("writing {}", path.display()))
}

impl Envoy {
    /// Starts Envoy with the filter configured by `plugin`, one cluster per upstream in
    /// `upstreams`, and waits until a request through the listener reaches an upstream.
    ///
    /// The listener's port is picked free before Envoy starts, so another process can take it
    /// in between; Envoy then starts without its listener, and this tries again on a new port.
    pub fn start(
        plugin: &PluginConfig,
        upstreams: BTreeMap<String, SocketAddr>,
        options: EnvoyOptions,
    ) -> Result<Envoy> {
        Envoy::start_site(&service_site(plugin, upstreams), options)
    }

    /// [`Envoy::start`] for any listener.
    pub fn start_site(site: &Site, options: EnvoyOptions) -> Result<Envoy> {
        let mut attempt = 1;
        loop {
            let mut envoy = Envoy::spawn(site, options, free_port()?)?;
            match envoy.wait_ready() {
                Ok(()) => return Ok(envoy),
                Err(_) if envoy.lost_its_port() && attempt < PORT_ATTEMPTS => attempt += 1,
                Err(err) => return Err(envoy.explain(err)),
            }
        }
    }

    /// Starts Envoy with its listener on `listen_port`, without waiting for it.
    fn spawn(site: &Site, options: EnvoyOptions, listen_port: u16) -> Result<Envoy> {
        let envoy_bin = locate::envoy_bin()?;
        let layout = EnvoyLayout {
            listen_port,
            wasm_path: locate::filter_wasm()?,
            upstreams: site.upstreams.clone(),
        };
        let (lds, cds) = (site.render)(&layout)?;
        let dir = tempfile::Builder::new()
            .prefix("sticky-envoy-")
            .tempdir()
            .context("creating Envoy's config directory")?;
        write_json(
            &dir.path().join(LAYOUT_FILE),
            &serde_json::to_value(&layout)?,
        )?;
        write_json(&dir.path().join(CDS_FILE), &cds)?;
        write_json(&dir.path().join(LDS_FILE), &lds)?;
        write_json(
            &dir.path().join(BOOTSTRAP_FILE),
            &render_bootstrap(dir.path(), 0),
        )?;
        let log = std::fs::File::create(dir.path().join(LOG_FILE))?;
        let mut command = Command::new(&envoy_bin);
        command
            .arg("--config-path")
            .arg(dir.path().join(BOOTSTRAP_FILE))
            .arg("--admin-address-path")
            .arg(dir.path().join(ADMIN_ADDRESS_FILE))
            .args(["--concurrency", &options.concurrency.to_string()])
            // Several Envoys run side by side: no shared memory for hot restarts.
            .arg("--disable-hot-restart")
            // A replaced listener closes its old connections at once instead of over 10 min.
            .args(["--drain-strategy", "immediate", "--drain-time-s", "1"])
            .args(["--log-level", "warning"])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        let process = ChildGuard::spawn(command, "envoy")?;
        let listener = SocketAddr::from(([127, 0, 0, 1], layout.listen_port));
        Ok(Envoy {
            process,
            dir,
            layout,
            // Replaced once Envoy wrote its admin address.
            admin: Http::new(listener),
            listener,
            probe_host: site.probe_host.clone(),
        })
    }

    /// Whether Envoy logged that another process held its listener's port.
    fn lost_its_port(&self) -> bool {
        self.log().is_ok_and(|log| log.contains(PORT_TAKEN))
    }

    fn wait_ready(&mut self) -> Result<()> {
        let address_file = self.dir.path().join(ADMIN_ADDRESS_FILE);
        let admin: SocketAddr = self.wait_for("the admin address", |_| {
            Ok(std::fs::read_to_string(&address_file)
                .ok()
                .and_then(|text| text.trim().parse().ok()))
        })?;
        self.admin = Http::new(admin);
        let admin = self.admin.clone();
        self.wait_for("/ready", |_| {
            Ok((admin.get("/ready", &[])?.status == 200).then_some(()))
        })?;
        let listener = Http::new(self.listener);
        let probe_host = self.probe_host.clone();
        let probe: Vec<(&str, &[u8])> = probe_host
            .iter()
            .map(|host| ("host", host.as_bytes()))
            .collect();
        self.wait_for("the listener to reach an upstream", |envoy| {
            if envoy.lost_its_port() {
                bail!("another process took port {}", envoy.listener.port());
            }
            // The listener may not be bound yet: connection errors mean "not yet".
            Ok(listener
                .get(WHOAMI, &probe)
                .ok()
                .filter(|r| r.status == 200)
                .map(|_| ()))
        })
    }

    /// Polls `probe` until it yields a value, Envoy dies, or patience runs out.
    fn wait_for<T>(
        &mut self,
        what: &str,
        mut probe: impl FnMut(&Self) -> Result<Option<T>>,
    ) -> Result<T> {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(value) = probe(self)? {
                return Ok(value);
            }
            if let Some(exit) = self.process.exited() {
                bail!("{exit} while waiting for {what}");
            }
            if Instant::now() > deadline {
                bail!("Envoy did not show {what} within {PATIENCE:?}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Adds the end of Envoy's log to an error, since that is where Envoy says what went wrong.
    fn explain(&self, err: anyhow::Error) -> anyhow::Error {
        let log = self.log().unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(20).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        err.context(format!(
            "Envoy log ({}):\n{}",
            self.log_path().display(),
            tail.join("\n")
        ))
    }

    /// The listener's address: where clients connect.
    pub fn listener(&self) -> SocketAddr {
        self.listener
    }

    /// The directory holding the bootstrap, `lds.json`, `cds.json` and the layout.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The layout Envoy was started with (without upstreams for a listener whose clusters
    /// are its own).
    pub fn layout(&self) -> &EnvoyLayout {
        &self.layout
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join(LOG_FILE)
    }

    /// Everything Envoy logged so far.
    pub fn log(&self) -> Result<String> {
        let bytes = std::fs::read(self.log_path()).context("reading Envoy's log")?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    /// Replaces `lds.json` (atomically, as the controller does) without waiting for Envoy.
    pub fn write_lds(&self, lds: &Value) -> Result<()> {
        write_json(&self.dir.path().join(LDS_FILE), lds)
    }

    /// Reconfigures the running Envoy with `plugin` and waits until its listener serves it.
    pub fn set_plugin(&mut self, plugin: &PluginConfig) -> Result<()> {
        self.write_lds(&render_lds(plugin, &self.layout)?)?;
        self.wait_for_lds_file().map(drop)
    }

    /// Waits until the active listener runs the filter configuration of the `lds.json` now in
    /// the directory, whoever wrote it (the harness or `stickyctl`), and returns it.
    pub fn wait_for_lds_file(&mut self) -> Result<PluginConfig> {
        let path = self.dir.path().join(LDS_FILE);
        let text = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        let lds: Value =
            serde_json::from_slice(&text).with_context(|| format!("parsing {}", path.display()))?;
        let expected = lds
            .pointer("/resources/0")
            .and_then(plugin_config)
            .with_context(|| format!("{} holds no filter configuration", path.display()))?
            .to_owned();
        self.wait_for_listener("the filter configuration of lds.json", |listener| {
            plugin_config(listener) == Some(expected.as_str())
        })?;
        serde_json::from_str(&expected).context("parsing the filter configuration of lds.json")
    }

    /// Waits until the active listener runs the filter with this `pluginConfig` JSON.
    pub fn wait_for_plugin_config(&mut self, json: &str) -> Result<()> {
        self.wait_for_listener("the new filter configuration", |listener| {
            plugin_config(listener) == Some(json)
        })
    }

    /// Waits until the active listener (warmed and serving new connections) satisfies `done`.
    pub fn wait_for_listener(&mut self, what: &str, done: impl Fn(&Value) -> bool) -> Result<()> {
        self.wait_for(what, |envoy| {
            Ok(envoy.active_listener()?.filter(|l| done(l)).map(|_| ()))
        })
        .map_err(|err| self.explain(err))
    }

    /// The filter configuration of the active listener.
    pub fn active_plugin_config(&self) -> Result<Option<String>> {
        Ok(self
            .active_listener()?
            .as_ref()
            .and_then(plugin_config)
            .map(str::to_owned))
    }

    /// The active listener from `/config_dump`; `None` while a new version is warming.
    fn active_listener(&self) -> Result<Option<Value>> {
        let dump = self
            .admin
            .get("/config_dump?resource=dynamic_listeners", &[])?
            .body;
        let mut dump: Value = serde_json::from_str(&dump).context("parsing /config_dump")?;
        let Some(listener) = dump["configs"]
            .as_array_mut()
            .into_iter()
            .flatten()
            .find(|l| l["name"] == LISTENER_NAME)
        else {
            return Ok(None);
        };
        if listener.get("warming_state").is_some() {
            return Ok(None);
        }
        Ok(Some(listener["active_state"]["listener"].take()))
    }

    /// Every counter and gauge from `/stats`, by name.
    pub fn stats(&self) -> Result<BTreeMap<String, u64>> {
        let text = self.admin.get("/stats", &[])?.body;
        // Lines are `name: value`; histograms have non-numeric values and are skipped.
        Ok(text
            .lines()
            .filter_map(|line| {
                let (name, value) = line.rsplit_once(": ")?;
                Some((name.to_owned(), value.parse().ok()?))
            })
            .collect())
    }

    /// One counter or gauge from `/stats`; absent counts as an error, so typos fail loudly.
    pub fn stat(&self, name: &str) -> Result<u64> {
        self.stats()?
            .get(name)
            .copied()
            .ok_or_else(|| anyhow!("Envoy has no stat {name:?}"))
    }

    /// Waits until `stat` differs from `before` and returns its new value.
    pub fn wait_for_stat_change(&mut self, stat: &str, before: u64) -> Result<u64> {
        self.wait_for(stat, |envoy| {
            let now = envoy.stat(stat)?;
            Ok((now != before).then_some(now))
        })
    }

    /// The Prometheus exposition from `/stats/prometheus`.
    pub fn prometheus(&self) -> Result<String> {
        Ok(self.admin.get("/stats/prometheus", &[])?.body)
    }
}

/// The site of one service: the listener `render_lds` renders for `plugin`, one cluster per
/// upstream.
fn service_site(plugin: &PluginConfig, upstreams: BTreeMap<String, SocketAddr>) -> Site<'_> {
    Site {
        upstreams,
        render: Box::new(|layout: &EnvoyLayout| {
            Ok((render_lds(plugin, layout)?, render_cds(layout)))
        }),
        probe_host: None,
    }
}

/// The filter configuration inside a listener as `render_listener` renders it.
fn plugin_config(listener: &Value) -> Option<&str> {
    listener.pointer(PLUGIN_CONFIG_POINTER)?.as_str()
}

/// The outcome of `envoy --mode validate`.
#[derive(Debug)]
pub struct Validation {
    /// Whether Envoy accepted the configuration.
    pub ok: bool,
    /// What Envoy printed.
    pub output: String,
}

/// Runs `envoy --mode validate` on a bootstrap that holds the listener and clusters of `lds`
/// and `cds` statically: validate mode does not read `path_config_source` files, but it does
/// load the Wasm filter of static listeners and runs its `on_configure`.
pub fn validate(lds: &Value, cds: &Value) -> Result<Validation> {
    let envoy_bin = locate::envoy_bin()?;
    let dir = tempfile::tempdir()?;
    let strip_type = |resources: &Value| -> Vec<Value> {
        resources["resources"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|resource| {
                let mut resource = resource.clone();
                if let Some(fields) = resource.as_object_mut() {
                    fields.remove("@type");
                }
                resource
            })
            .collect()
    };
    let mut bootstrap = render_bootstrap(dir.path(), 0);
    if let Some(fields) = bootstrap.as_object_mut() {
        fields.remove("dynamic_resources");
        fields.insert(
            "static_resources".to_owned(),
            serde_json::json!({ "listeners": strip_type(lds), "clusters": strip_type(cds) }),
        );
    }
    let path = dir.path().join(BOOTSTRAP_FILE);
    write_json(&path, &bootstrap)?;
    let output = Command::new(&envoy_bin)
        .args([
            "--mode",
            "validate",
            "--disable-hot-restart",
            "--config-path",
        ])
        .arg(&path)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {} --mode validate", envoy_bin.display()))?;
    Ok(Validation {
        ok: output.status.success(),
        output: format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stack::weights;

    /// What `Envoy::start` retries on: Envoy started on a port another process holds says so in
    /// its log, and waiting for it fails at once, naming the port, instead of after `PATIENCE`.
    #[test]
    fn an_envoy_whose_port_is_taken_says_so() {
        let holder = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = holder.local_addr().unwrap().port();
        let nowhere = SocketAddr::from(([127, 0, 0, 1], 9));
        let plugin = weights(&[("v1", 100.0)]);
        let site = service_site(&plugin, BTreeMap::from([("v1".to_owned(), nowhere)]));
        let mut envoy = Envoy::spawn(&site, EnvoyOptions::default(), port).unwrap();
        let err = envoy.wait_ready().unwrap_err();
        assert!(envoy.lost_its_port(), "{:#}", envoy.explain(err));
        assert_eq!(err.to_string(), format!("another process took port {port}"));
    }
}
