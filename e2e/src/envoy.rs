//! A real Envoy 1.40 running the built filter, configured through files in a temp directory
//! exactly as the controller's envoy-dir target configures one: bootstrap, `lds.json`,
//! `cds.json` and the layout, all rendered by `render::envoy`.

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};
use render::envoy::{
    render_bootstrap, render_cds, render_lds, EnvoyLayout, CDS_FILE, LAYOUT_FILE, LDS_FILE,
    LISTENER_NAME,
};
use serde_json::Value;
use sticky_canary_filter::PluginConfig;

use crate::browser::Http;
use crate::envoy_process::{write_json, EnvoyProcess};
use crate::locate;
use crate::site::WHOAMI;

/// Where, in a rendered listener, the filter's configuration string sits.
const PLUGIN_CONFIG_POINTER: &str = "/filter_chains/0/filters/0/typed_config/http_filters/0/typed_config/config/configuration/value";
/// What Envoy logs when its listener's port is taken.
const PORT_TAKEN: &str = "Address already in use";
/// Starts on a fresh port after losing the listener's port to another process.
const PORT_ATTEMPTS: u32 = 3;

/// A running Envoy; killed when dropped, its directory removed with it.
pub struct Envoy {
    process: EnvoyProcess,
    layout: EnvoyLayout,
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
///
/// Picked at random below the kernel's ephemeral range: a port the kernel handed out (`bind`
/// to port 0) goes back into the pool every outgoing connection draws its source port from,
/// and with the tests' lanes side by side one of those took a listener's port before its Envoy
/// bound it. Below the range only another pick like this one can take it.
pub fn free_port() -> Result<u16> {
    let range = FIXED_PORTS_FROM..ephemeral_low().max(FIXED_PORTS_FROM + 1000);
    let span = u32::from(range.end - range.start);
    for _ in 0..FREE_PORT_TRIES {
        let draw = getrandom::u32().context("drawing a port")?;
        let port = range.start + (draw % span) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    bail!("no free port on 127.0.0.1 in {range:?} after {FREE_PORT_TRIES} tries")
}

/// Where [`free_port`] starts looking: above the well-known and most registered services.
const FIXED_PORTS_FROM: u16 = 10_000;
/// Bounds [`free_port`]'s search (a busy range fails loudly).
const FREE_PORT_TRIES: usize = 200;

/// The first port of the kernel's ephemeral range (`net.ipv4.ip_local_port_range`; Linux's
/// default 32768 when it cannot be read).
fn ephemeral_low() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|text| text.split_whitespace().next()?.parse().ok())
        .unwrap_or(32_768)
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
        let bootstrap = render_bootstrap(dir.path(), 0);
        let process = EnvoyProcess::spawn("envoy", dir, &bootstrap, options.concurrency, &[])?;
        Ok(Envoy {
            process,
            layout,
            listener: SocketAddr::from(([127, 0, 0, 1], listen_port)),
            probe_host: site.probe_host.clone(),
        })
    }

    /// Whether Envoy logged that another process held its listener's port.
    fn lost_its_port(&self) -> bool {
        self.log().is_ok_and(|log| log.contains(PORT_TAKEN))
    }

    fn wait_ready(&mut self) -> Result<()> {
        self.process.wait_ready()?;
        let listener = Http::new(self.listener);
        let port = self.listener.port();
        let probe_host = self.probe_host.clone();
        let probe: Vec<(&str, &[u8])> = probe_host
            .iter()
            .map(|host| ("host", host.as_bytes()))
            .collect();
        self.process
            .wait_for("the listener to reach an upstream", |envoy| {
                if envoy.log().is_ok_and(|log| log.contains(PORT_TAKEN)) {
                    bail!("another process took port {port}");
                }
                // The listener may not be bound yet: connection errors mean "not yet".
                Ok(listener
                    .get(WHOAMI, &probe)
                    .ok()
                    .filter(|r| r.status == 200)
                    .map(|_| ()))
            })
    }

    /// Adds the end of Envoy's log to an error, since that is where Envoy says what went wrong.
    fn explain(&self, err: anyhow::Error) -> anyhow::Error {
        self.process.explain(err)
    }

    /// The listener's address: where clients connect.
    pub fn listener(&self) -> SocketAddr {
        self.listener
    }

    /// The directory holding the bootstrap, `lds.json`, `cds.json` and the layout.
    pub fn dir(&self) -> &Path {
        self.process.dir()
    }

    /// The layout Envoy was started with (without upstreams for a listener whose clusters
    /// are its own).
    pub fn layout(&self) -> &EnvoyLayout {
        &self.layout
    }

    /// Everything Envoy logged so far.
    pub fn log(&self) -> Result<String> {
        self.process.log()
    }

    /// Replaces `lds.json` (atomically, as the controller does) without waiting for Envoy.
    pub fn write_lds(&self, lds: &Value) -> Result<()> {
        write_json(&self.dir().join(LDS_FILE), lds)
    }

    /// Reconfigures the running Envoy with `plugin` and waits until its listener serves it.
    pub fn set_plugin(&mut self, plugin: &PluginConfig) -> Result<()> {
        self.write_lds(&render_lds(plugin, &self.layout)?)?;
        self.wait_for_lds_file().map(drop)
    }

    /// Waits until the active listener runs the filter configuration of the `lds.json` now in
    /// the directory, whoever wrote it (the harness or `stickyctl`), and returns it.
    pub fn wait_for_lds_file(&mut self) -> Result<PluginConfig> {
        let path = self.dir().join(LDS_FILE);
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
        self.wait_for_drained_listeners()?;
        serde_json::from_str(&expected).context("parsing the filter configuration of lds.json")
    }

    /// Waits until no replaced listener is still draining: until then, connections opened
    /// before the change keep running the old filter configuration (slowly, on a busy machine).
    pub fn wait_for_drained_listeners(&mut self) -> Result<()> {
        let result = self
            .process
            .wait_for("the replaced listeners to drain", |envoy| {
                let draining = envoy.stat("listener_manager.total_listeners_draining")?;
                Ok((draining == 0).then_some(()))
            });
        result.map_err(|err| self.explain(err))
    }

    /// Waits until the active listener runs the filter with this `pluginConfig` JSON.
    pub fn wait_for_plugin_config(&mut self, json: &str) -> Result<()> {
        self.wait_for_listener("the new filter configuration", |listener| {
            plugin_config(listener) == Some(json)
        })
    }

    /// Waits until the active listener (warmed and serving new connections) satisfies `done`.
    pub fn wait_for_listener(&mut self, what: &str, done: impl Fn(&Value) -> bool) -> Result<()> {
        let result = self.process.wait_for(what, |process| {
            Ok(active_listener(process)?.filter(|l| done(l)).map(|_| ()))
        });
        result.map_err(|err| self.explain(err))
    }

    /// The filter configuration of the active listener.
    pub fn active_plugin_config(&self) -> Result<Option<String>> {
        Ok(self
            .active_listener()?
            .as_ref()
            .and_then(plugin_config)
            .map(str::to_owned))
    }

    fn active_listener(&self) -> Result<Option<Value>> {
        active_listener(&self.process)
    }

    /// Every counter and gauge from `/stats`, by name.
    pub fn stats(&self) -> Result<BTreeMap<String, u64>> {
        self.process.stats()
    }

    /// One counter or gauge from `/stats`; absent counts as an error, so typos fail loudly.
    pub fn stat(&self, name: &str) -> Result<u64> {
        self.process.stat(name)
    }

    /// Waits until `stat` differs from `before` and returns its new value.
    pub fn wait_for_stat_change(&mut self, stat: &str, before: u64) -> Result<u64> {
        self.process.wait_for(stat, |envoy| {
            let now = envoy.stat(stat)?;
            Ok((now != before).then_some(now))
        })
    }

    /// Where the admin interface listens: Prometheus scrapes `/stats/prometheus` there.
    pub fn admin_address(&self) -> Result<SocketAddr> {
        self.process.admin_address()
    }

    /// The Prometheus exposition from `/stats/prometheus`.
    pub fn prometheus(&self) -> Result<String> {
        self.process.prometheus()
    }
}

/// The active listener from `/config_dump`; `None` while a new version is warming.
fn active_listener(process: &EnvoyProcess) -> Result<Option<Value>> {
    let mut dump = process.config_dump("resource=dynamic_listeners")?;
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
    let path = dir.path().join("bootstrap.json");
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
