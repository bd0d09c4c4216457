//! The command line's clap types: the verbs, their flags and their help texts, and nothing
//! else (what they do is [`super::dispatch`]'s).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// `stickyctl`: change a sticky canary rollout with one command.
#[derive(Debug, Parser)]
#[command(
    name = "stickyctl",
    version,
    about,
    long_about = None,
    after_help = "Exit codes: 0 done or nothing to change; 1 runtime failure (API or files unreachable, retries exhausted); 2 invalid input or refusal before any write.\nEvery mutating command takes --dry-run (prints a unified diff, writes nothing)."
)]
pub struct Cli {
    /// Namespace of the rollout (default: the kubeconfig's).
    #[arg(short, long, global = true)]
    pub namespace: Option<String>,
    /// Name of the rollout (default: the service's first DNS label; or the only rollout).
    #[arg(long, global = true)]
    pub name: Option<String>,
    /// Drive a plain Envoy through this config directory instead of Kubernetes.
    #[arg(long, global = true, value_name = "DIR")]
    pub envoy_dir: Option<PathBuf>,
    /// Kubeconfig file (default: KUBECONFIG, ~/.kube/config, or in-cluster).
    #[arg(long, global = true, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create the rollout of a service from its current stable version.
    Init(Box<InitArgs>),
    /// Add a canary at weight 0; QA reaches it with the override header.
    Start {
        /// The canary's version name (its pods' version label).
        #[arg(long)]
        canary: String,
        #[command(flatten)]
        dry: DryRun,
    },
    /// Give the canary this share of clients, in percent (0-100, at most two decimals).
    SetWeight {
        /// Percent of clients on the canary.
        percent: f64,
        #[command(flatten)]
        dry: DryRun,
    },
    /// Move the canary to the next step.
    Next {
        #[command(flatten)]
        dry: DryRun,
    },
    /// Make the canary stable; the old version drains (its clients keep it until their next
    /// page) until `promote --finish` removes its routes and subset.
    Promote {
        /// Remove the old version now (after the switch, in the same run if needed), ending
        /// its drain: pages of it still loading then get their assets from the new stable.
        #[arg(long)]
        finish: bool,
        #[command(flatten)]
        dry: DryRun,
    },
    /// Send every canary client back to stable at once and remove the canary.
    Abort {
        #[command(flatten)]
        dry: DryRun,
    },
    /// Switch automatic progression on or off: each step holds for `spec.auto.intervalSeconds`,
    /// is judged against stable, then goes on, holds or rolls back.
    Auto {
        /// `on` or `off`.
        state: Switch,
        /// Prometheus the controller reads: `auto on` first checks that it can judge the
        /// rollout (every query accepted and finding its metrics, the interval not shorter
        /// than the scrape interval), before anything is written.
        #[arg(long, env = "STICKY_PROMETHEUS", value_name = "URL")]
        prometheus: Option<String>,
        #[command(flatten)]
        dry: DryRun,
    },
    /// Hold automatic progression where it is (commands still work).
    Pause {
        #[command(flatten)]
        dry: DryRun,
    },
    /// Let automatic progression go on; the held step's interval starts over.
    Resume {
        #[command(flatten)]
        dry: DryRun,
    },
    /// Who may force a version with the QA override header: `token` (a new token, kept in
    /// the Secret sticky-canary-override-tokens, or --token; the proxies get only its
    /// digest), `public` (anyone: only for proxies the public cannot reach) or `off`.
    Override {
        /// `token`, `public` or `off`.
        access: OverrideAccess,
        #[command(flatten)]
        token: OverrideToken,
        #[command(flatten)]
        dry: DryRun,
    },
    /// Versions, weights, step, phase, the current verdict, and whether the live objects match.
    Status {
        /// Output format.
        #[arg(short, long, value_enum, default_value_t = Output::Table)]
        output: Output,
        /// Print a line per look until the rollout ends (stable, promoted, aborted, rolled back).
        #[arg(long, conflicts_with = "output")]
        watch: bool,
    },
    /// Which version a client gets now and why, decided by the filter's own code.
    Explain(ExplainArgs),
    /// Print the objects the rollout renders to, as YAML (for GitOps repositories).
    Render,
    /// Delete the rollout: its entry leaves the shared WasmPlugins (the last rollout to leave
    /// one deletes it), its managed routes and subsets leave the user's objects.
    Delete {
        #[command(flatten)]
        dry: DryRun,
    },
    /// Run the reconcile loop on every StickyCanary (of `--namespace`, or all), or on the
    /// rollout of `--envoy-dir`; rollouts with `auto` on are judged against Prometheus.
    Controller(ControllerArgs),
    /// Serve a web page to see and steer the rollouts (of `--namespace` or all, or of
    /// `--envoy-dir`) live, until Ctrl-C.
    Dashboard(DashboardArgs),
    /// Print the StickyCanary CRD.
    Crd,
    /// Print the bootstrap of the plain Envoy that `--envoy-dir` drives (JSON): admin on
    /// 127.0.0.1, listeners and clusters from the directory's files, the filter's stats tags.
    Bootstrap {
        /// Port of Envoy's admin interface on 127.0.0.1.
        #[arg(long, default_value_t = 9901)]
        admin_port: u16,
    },
    /// Print the stats settings Istio's proxies need for the filter's counters and the
    /// per-version cluster stats (a bootstrap addition, JSON; the chart ships it).
    ProxyStats,
    /// One plan file for every workload of a release: apply it, see where it stands, roll
    /// it back.
    #[command(subcommand)]
    Plan(plan::command::PlanCommand),
}

#[derive(Debug, Args)]
pub struct ControllerArgs {
    /// Prometheus base URL the automatic steps read their metrics from.
    #[arg(long, env = "STICKY_PROMETHEUS", value_name = "URL")]
    pub prometheus: Option<String>,
    /// Also serve the dashboard (as `stickyctl dashboard`) on this address.
    #[arg(long, value_name = "ADDRESS:PORT")]
    pub dashboard: Option<std::net::SocketAddr>,
    /// The dashboard's token for actions (needed on a non-loopback address).
    #[arg(long, env = "STICKY_DASHBOARD_TOKEN", hide_env_values = true)]
    pub dashboard_token: Option<String>,
    /// The dashboard's --identity-header: the header an authenticating reverse proxy names
    /// the person in (off by default).
    #[arg(long, value_name = "HEADER")]
    pub dashboard_identity_header: Option<String>,
}

#[derive(Debug, Args)]
pub struct DashboardArgs {
    /// Address to serve on; anything but loopback needs --token.
    #[arg(long, default_value = "127.0.0.1:8080", value_name = "ADDRESS:PORT")]
    pub listen: std::net::SocketAddr,
    /// Token every action must send (`Authorization: Bearer`); the page asks for it.
    #[arg(long, env = "STICKY_DASHBOARD_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Prometheus base URL for the per-version charts (the analysis' queries).
    #[arg(long, env = "STICKY_PROMETHEUS", value_name = "URL")]
    pub prometheus: Option<String>,
    /// Record in the history as who acted the value of this request header, set by an
    /// authenticating reverse proxy in front (e.g. x-forwarded-user); off by default. Only
    /// with a proxy that sets it on every request and removes what clients send.
    #[arg(long, value_name = "HEADER")]
    pub identity_header: Option<String>,
}

/// Who may use the QA override.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OverrideAccess {
    /// Nobody: the header is ignored (the default).
    Off,
    /// Whoever has the token.
    Token,
    /// Anyone who knows the header name.
    Public,
}

#[derive(Debug, Args)]
pub struct OverrideToken {
    /// Use this token (letters, digits and !#$%&'*+-.^_`|~) instead of creating one; only
    /// its digest is stored.
    #[arg(long = "token", env = "STICKY_OVERRIDE_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

/// `--routing`: the spec's `routing.api`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RoutingArg {
    #[value(name = "VirtualService", alias = "virtualservice")]
    VirtualService,
    #[value(name = "HTTPRoute", alias = "httproute")]
    HttpRoute,
}

impl From<RoutingArg> for api::RoutingApi {
    fn from(arg: RoutingArg) -> Self {
        match arg {
            RoutingArg::VirtualService => api::RoutingApi::VirtualService,
            RoutingArg::HttpRoute => api::RoutingApi::HttpRoute,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Switch {
    On,
    Off,
}

#[derive(Debug, Args)]
pub struct DryRun {
    /// Print a diff of what would be written, write nothing.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// Service host, as in the VirtualService destinations.
    #[arg(long)]
    pub service: String,
    /// The version serving today.
    #[arg(long)]
    pub stable: String,
    /// VirtualService that gets the managed routes (default: the rollout's name).
    #[arg(long)]
    pub virtual_service: Option<String>,
    /// DestinationRule that gets the managed subsets (default: the rollout's name).
    #[arg(long)]
    pub destination_rule: Option<String>,
    /// Pod label holding the version name.
    #[arg(long)]
    pub version_label: Option<String>,
    /// The API that carries the routes (default: what routes the service today).
    #[arg(long, value_enum, value_name = "API")]
    pub routing: Option<RoutingArg>,
    /// HTTPRoute that gets the managed rules (default: the rollout's name, else the one
    /// HTTPRoute of the namespace routing to the service).
    #[arg(long)]
    pub http_route: Option<String>,
    /// `VERSION=SERVICE`: the user's own Service of a version (HTTPRoute API; default
    /// `<service>-<version>`, written by stickyctl); repeatable.
    #[arg(long = "version-service", value_name = "VERSION=SERVICE")]
    pub version_services: Vec<String>,
    /// The service's ambient waypoint runs the filter (HTTPRoute API).
    #[arg(long)]
    pub waypoint: bool,
    /// URL of the filter module (oci://, https:// or file://).
    #[arg(long)]
    pub plugin_url: Option<String>,
    /// SHA-256 of the module (64 hex digits): for an oci:// URL, the image's digest.
    #[arg(long, value_name = "HEX")]
    pub plugin_sha256: Option<String>,
    /// Label `KEY=VALUE` of the gateway that runs the filter; repeatable (default: the
    /// usual ingress gateway, istio=ingressgateway).
    #[arg(long = "selector", value_name = "KEY=VALUE")]
    pub selectors: Vec<String>,
    /// Namespace of that gateway (default: istio-system), or of the Gateway API gateways
    /// `--target-ref` names (default: the rollout's).
    #[arg(long, value_name = "NAMESPACE")]
    pub gateway_namespace: Option<String>,
    /// Label `KEY=VALUE` of callers whose sidecars run the filter on their calls to the
    /// service; repeatable (one group of callers).
    #[arg(long = "sidecar", value_name = "KEY=VALUE")]
    pub sidecars: Vec<String>,
    /// Namespace of those callers (default: the rollout's).
    #[arg(long, value_name = "NAMESPACE")]
    pub sidecar_namespace: Option<String>,
    /// Keep an incoming version header, on the sidecars only (a gateway always decides
    /// afresh): for calls behind a gateway that decided.
    #[arg(long)]
    pub trust_incoming_header: bool,
    /// Who may force a version with the QA override header (see `stickyctl override`).
    #[arg(long = "override", value_enum, default_value_t = OverrideAccess::Off)]
    pub override_access: OverrideAccess,
    #[command(flatten)]
    pub override_token: OverrideToken,
    /// Gateway the filter attaches to, as `KIND/NAME` (Gateway API group); repeatable.
    #[arg(long = "target-ref", value_name = "KIND/NAME")]
    pub target_refs: Vec<String>,
    /// Header carrying a stable client key (such as x-user-id); repeatable, in order.
    #[arg(long = "key-header")]
    pub key_headers: Vec<String>,
    /// Cookie carrying a stable client key (such as a session id); repeatable, after headers.
    #[arg(long = "key-cookie")]
    pub key_cookies: Vec<String>,
    /// Domain of both cookies, such as shop.example, so that sibling hosts (a page on
    /// www.shop.example calling api.shop.example) share the pin (default: host-only).
    #[arg(long, value_name = "DOMAIN")]
    pub cookie_domain: Option<String>,
    /// Hash salt (default: the service).
    #[arg(long)]
    pub salt: Option<String>,
    /// Canary steps in percent, comma separated.
    #[arg(long, value_delimiter = ',')]
    pub steps: Option<Vec<f64>>,
    #[command(flatten)]
    pub auto: AutoArgs,
    #[command(flatten)]
    pub dry: DryRun,
}

/// The automatic progression settings `init` can set (`spec.auto`).
#[derive(Debug, Args)]
pub struct AutoArgs {
    /// Let the steps run themselves (`stickyctl auto on` later does the same).
    #[arg(long)]
    pub auto: bool,
    /// Seconds each step holds its weight before it is judged.
    #[arg(long, value_name = "SECONDS")]
    pub interval: Option<u32>,
    /// A step weight the rollout waits at for `stickyctl next`; repeatable.
    #[arg(long = "gate", value_name = "PERCENT")]
    pub gates: Vec<f64>,
    /// After the last step: wait for `stickyctl promote` (gate) or promote by itself (auto).
    #[arg(long, value_enum)]
    pub promotion: Option<PromotionArg>,
    /// How an automatic rollback sends the canary's clients back.
    #[arg(long, value_enum)]
    pub rollback: Option<RollbackArg>,
    /// What a step without enough evidence does at its deadline.
    #[arg(long, value_enum)]
    pub on_inconclusive: Option<InconclusiveArg>,
    /// Seconds a step may stay inconclusive before `--on-inconclusive` applies.
    #[arg(long, value_name = "SECONDS")]
    pub inconclusive_deadline: Option<u32>,
    /// URL notified of every step, hold, rollback and promotion (Slack-compatible JSON):
    /// https, or http to a loopback host.
    #[arg(long, value_name = "URL")]
    pub webhook: Option<String>,
    /// Take a plain http --webhook to a host other than loopback (notices in clear).
    #[arg(long)]
    pub allow_http_webhook: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PromotionArg {
    Gate,
    Auto,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RollbackArg {
    Immediate,
    Drain,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum InconclusiveArg {
    Hold,
    Rollback,
}

#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// The client key, as the first key source would carry it (or the minted id cookie).
    #[arg(long)]
    pub key: Option<String>,
    /// A cookie the client sends, `NAME=VALUE`; repeatable.
    #[arg(long = "cookie", value_name = "NAME=VALUE")]
    pub cookies: Vec<String>,
    /// The QA override header's value.
    #[arg(long = "override", value_name = "VALUE")]
    pub override_: Option<String>,
    /// The request is a top-level navigation (a page load), where pins are re-decided.
    #[arg(long)]
    pub navigate: bool,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = Output::Table)]
    pub output: Output,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// Readable text.
    Table,
    /// JSON for scripts.
    Json,
}
