//! The whole setup on one machine: an upstream process per version behind an Envoy with the
//! filter.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};
use sticky_canary_filter::{PluginConfig, VersionWeight};

use crate::browser::Http;
use crate::envoy::{Envoy, EnvoyOptions};
use crate::operator::Stickyctl;
use crate::site::Faults;
use crate::upstream::Upstream;

/// Upstreams and Envoy, all stopped when dropped.
pub struct Stack {
    /// The Envoy in front.
    pub envoy: Envoy,
    /// One upstream per configured version.
    pub upstreams: Vec<Upstream>,
    /// A client of the listener; renewed by [`Stack::set_plugin`].
    pub http: Http,
}

impl Stack {
    /// Starts an upstream (`upstream_bin`, the `sticky-upstream` binary) for every version in
    /// `plugin`, then Envoy with the filter configured by `plugin`.
    pub fn start(upstream_bin: &Path, plugin: &PluginConfig) -> Result<Stack> {
        Stack::start_with(upstream_bin, plugin, EnvoyOptions::default())
    }

    /// [`Stack::start`] with Envoy options.
    pub fn start_with(
        upstream_bin: &Path,
        plugin: &PluginConfig,
        options: EnvoyOptions,
    ) -> Result<Stack> {
        Stack::start_faulty(upstream_bin, plugin, options, &BTreeMap::new())
    }

    /// [`Stack::start_with`] with upstreams that inject `faults` (by version; the others
    /// serve well).
    pub fn start_faulty(
        upstream_bin: &Path,
        plugin: &PluginConfig,
        options: EnvoyOptions,
        faults: &BTreeMap<String, Faults>,
    ) -> Result<Stack> {
        let upstreams = plugin
            .versions
            .iter()
            .map(|v| {
                let args = faults.get(&v.name).map(Faults::args).unwrap_or_default();
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                Upstream::spawn_with(upstream_bin, &v.name, &args)
            })
            .collect::<Result<Vec<_>>>()?;
        let addresses: BTreeMap<String, _> = upstreams
            .iter()
            .map(|u| (u.version.clone(), u.address))
            .collect();
        let envoy = Envoy::start(plugin, addresses, options)?;
        let http = Http::new(envoy.listener());
        Ok(Stack {
            envoy,
            upstreams,
            http,
        })
    }

    /// Reconfigures the filter live and renews [`Stack::http`], so its requests meet the
    /// new configuration (kept-alive connections stay with the old one until drained).
    pub fn set_plugin(&mut self, plugin: &PluginConfig) -> Result<()> {
        self.envoy.set_plugin(plugin)?;
        self.http = self.http.fresh();
        Ok(())
    }

    /// Waits until Envoy serves the `lds.json` someone else (`stickyctl`) wrote into its
    /// directory and renews [`Stack::http`] as [`Stack::set_plugin`] does; returns the filter
    /// configuration now live.
    pub fn wait_for_lds_file(&mut self) -> Result<PluginConfig> {
        let plugin = self.envoy.wait_for_lds_file()?;
        self.http = self.http.fresh();
        Ok(plugin)
    }
}

/// A stack whose Envoy directory `stickyctl` owns: where the tests of the CLI, the controller
/// and the dashboard on a plain Envoy, and the demo, start from.
pub struct EnvoyRollout {
    /// Upstreams of the stable and the canary version, and Envoy.
    pub stack: Stack,
    /// `stickyctl --envoy-dir` on Envoy's directory.
    pub ctl: Stickyctl,
    /// The `init` command as typed (the demo shows it).
    pub init_command: String,
    /// What `init` printed.
    pub init_output: String,
    /// What Envoy serves once `init` took the directory over.
    pub serving: PluginConfig,
}

impl EnvoyRollout {
    /// The service the rollout applies to.
    pub const SERVICE: &str = "shop";

    /// Starts an upstream of `stable` and of `canary` (with `faults` per version) and an
    /// Envoy that sends every client to `stable` (Envoy needs a listener to start with), then
    /// runs `stickyctl init --service shop --stable <stable>` and the `init` flags, which takes
    /// the directory over; returns once Envoy serves what `init` wrote.
    pub fn start(
        upstream_bin: &Path,
        options: EnvoyOptions,
        faults: &BTreeMap<String, Faults>,
        (stable, canary): (&str, &str),
        init: &[&str],
    ) -> Result<EnvoyRollout> {
        let plugin = weights(&[(stable, 100.0), (canary, 0.0)]);
        let mut stack = Stack::start_faulty(upstream_bin, &plugin, options, faults)
            .context("starting upstreams and Envoy")?;
        let ctl = Stickyctl::new(stack.envoy.dir())?;
        let mut args = vec!["init", "--service", Self::SERVICE, "--stable", stable];
        args.extend(init);
        let init_output = ctl.ok(&args)?;
        let serving = stack.wait_for_lds_file()?;
        Ok(EnvoyRollout {
            init_command: ctl.command_line(&args),
            init_output,
            stack,
            ctl,
            serving,
        })
    }
}

/// A plugin configuration with these versions and weights, the rest at defaults.
pub fn weights(versions: &[(&str, f64)]) -> PluginConfig {
    PluginConfig::new(
        versions
            .iter()
            .map(|&(name, weight)| VersionWeight::new(name, weight))
            .collect(),
    )
}
