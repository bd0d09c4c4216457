//! The command line: parse, pick the target, run one command, map errors to exit codes.
//!
//! Exit codes: 0 done (also "nothing to change"), 1 runtime failure (API or files unreachable,
//! retries exhausted), 2 invalid input or a refusal before any write (bad weight or version
//! name, wrong phase, shadowing route, missing rollout, usage errors).
//!
//! Every mutating command changes the rollout, then converges its objects in-process, so it
//! works with or without the controller running; `--dry-run` prints a unified diff of what it
//! would write and writes nothing. `delete` likewise does the controller's finalizer work itself.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};
use kube::api::ListParams;
use kube::{Api, ResourceExt};
use serde_json::{json, Value};
use sticky_canary_filter::config::{KeySource, OverrideConfig, TokenDigest};
use sticky_canary_filter::{decide, Config, Reason, RequestHeaders};

use api::{
    self, AutoSpec, OnInconclusive, Promotion, Proxies, RollbackMode, StickyCanary,
    StickyCanarySpec, TargetRef, ACTION_ANNOTATION,
};
use prometheus::Prometheus;
use render::exposure;
use render::istio::for_display;
use render::placement;
use rollout::status;
use rollout::Op;
use rollout::{self, describe, Command as RolloutCommand, Input};
use runtime::controller;
use runtime::error::{Error, EXIT_INVALID, EXIT_OK};
use runtime::metrics;
use runtime::notify;
use runtime::reconcile::{self, converge, objects, retry_on_conflict};
use runtime::target::envoy_dir::EnvoyDir;
use runtime::target::kube::{self as kube_target, KubeTarget};
use runtime::target::{Doc, Target};

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
    namespace: Option<String>,
    /// Name of the rollout (default: the service's first DNS label; or the only rollout).
    #[arg(long, global = true)]
    name: Option<String>,
    /// Drive a plain Envoy through this config directory instead of Kubernetes.
    #[arg(long, global = true, value_name = "DIR")]
    envoy_dir: Option<PathBuf>,
    /// Kubeconfig file (default: KUBECONFIG, ~/.kube/config, or in-cluster).
    #[arg(long, global = true, value_name = "FILE")]
    kubeconfig: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
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
struct ControllerArgs {
    /// Prometheus base URL the automatic steps read their metrics from.
    #[arg(long, env = "STICKY_PROMETHEUS", value_name = "URL")]
    prometheus: Option<String>,
    /// Also serve the dashboard (as `stickyctl dashboard`) on this address.
    #[arg(long, value_name = "ADDRESS:PORT")]
    dashboard: Option<std::net::SocketAddr>,
    /// The dashboard's token for actions (needed on a non-loopback address).
    #[arg(long, env = "STICKY_DASHBOARD_TOKEN", hide_env_values = true)]
    dashboard_token: Option<String>,
}

#[derive(Debug, Args)]
struct DashboardArgs {
    /// Address to serve on; anything but loopback needs --token.
    #[arg(long, default_value = "127.0.0.1:8080", value_name = "ADDRESS:PORT")]
    listen: std::net::SocketAddr,
    /// Token every action must send (`Authorization: Bearer`); the page asks for it.
    #[arg(long, env = "STICKY_DASHBOARD_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Prometheus base URL for the per-version charts (the analysis' queries).
    #[arg(long, env = "STICKY_PROMETHEUS", value_name = "URL")]
    prometheus: Option<String>,
}

/// Who may use the QA override.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum OverrideAccess {
    /// Nobody: the header is ignored (the default).
    Off,
    /// Whoever has the token.
    Token,
    /// Anyone who knows the header name.
    Public,
}

#[derive(Debug, Args)]
struct OverrideToken {
    /// Use this token (letters, digits and !#$%&'*+-.^_`|~) instead of creating one; only
    /// its digest is stored.
    #[arg(long = "token", env = "STICKY_OVERRIDE_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Switch {
    On,
    Off,
}

#[derive(Debug, Args)]
struct DryRun {
    /// Print a diff of what would be written, write nothing.
    #[arg(long)]
    dry_run: bool,
}

#[derive(Debug, Args)]
struct InitArgs {
    /// Service host, as in the VirtualService destinations.
    #[arg(long)]
    service: String,
    /// The version serving today.
    #[arg(long)]
    stable: String,
    /// VirtualService that gets the managed routes (default: the rollout's name).
    #[arg(long)]
    virtual_service: Option<String>,
    /// DestinationRule that gets the managed subsets (default: the rollout's name).
    #[arg(long)]
    destination_rule: Option<String>,
    /// Pod label holding the version name.
    #[arg(long)]
    version_label: Option<String>,
    /// URL of the filter module (oci://, https:// or file://).
    #[arg(long)]
    plugin_url: Option<String>,
    /// SHA-256 of the module (64 hex digits): for an oci:// URL, the image's digest.
    #[arg(long, value_name = "HEX")]
    plugin_sha256: Option<String>,
    /// Label `KEY=VALUE` of the gateway that runs the filter; repeatable (default: the
    /// usual ingress gateway, istio=ingressgateway).
    #[arg(long = "selector", value_name = "KEY=VALUE")]
    selectors: Vec<String>,
    /// Namespace of that gateway.
    #[arg(long, value_name = "NAMESPACE", default_value = placement::DEFAULT_GATEWAY_NAMESPACE)]
    gateway_namespace: String,
    /// Label `KEY=VALUE` of callers whose sidecars run the filter on their calls to the
    /// service; repeatable (one group of callers).
    #[arg(long = "sidecar", value_name = "KEY=VALUE")]
    sidecars: Vec<String>,
    /// Namespace of those callers (default: the rollout's).
    #[arg(long, value_name = "NAMESPACE")]
    sidecar_namespace: Option<String>,
    /// Keep an incoming version header, on the sidecars only (a gateway always decides
    /// afresh): for calls behind a gateway that decided.
    #[arg(long)]
    trust_incoming_header: bool,
    /// Who may force a version with the QA override header (see `stickyctl override`).
    #[arg(long = "override", value_enum, default_value_t = OverrideAccess::Off)]
    override_access: OverrideAccess,
    #[command(flatten)]
    override_token: OverrideToken,
    /// Gateway the filter attaches to, as `KIND/NAME` (Gateway API group); repeatable.
    #[arg(long = "target-ref", value_name = "KIND/NAME")]
    target_refs: Vec<String>,
    /// Header carrying a stable client key (such as x-user-id); repeatable, in order.
    #[arg(long = "key-header")]
    key_headers: Vec<String>,
    /// Cookie carrying a stable client key (such as a session id); repeatable, after headers.
    #[arg(long = "key-cookie")]
    key_cookies: Vec<String>,
    /// Domain of both cookies, such as shop.example, so that sibling hosts (a page on
    /// www.shop.example calling api.shop.example) share the pin (default: host-only).
    #[arg(long, value_name = "DOMAIN")]
    cookie_domain: Option<String>,
    /// Hash salt (default: the service).
    #[arg(long)]
    salt: Option<String>,
    /// Canary steps in percent, comma separated.
    #[arg(long, value_delimiter = ',')]
    steps: Option<Vec<f64>>,
    #[command(flatten)]
    auto: AutoArgs,
    #[command(flatten)]
    dry: DryRun,
}

/// The automatic progression settings `init` can set (`spec.auto`).
#[derive(Debug, Args)]
struct AutoArgs {
    /// Let the steps run themselves (`stickyctl auto on` later does the same).
    #[arg(long)]
    auto: bool,
    /// Seconds each step holds its weight before it is judged.
    #[arg(long, value_name = "SECONDS")]
    interval: Option<u32>,
    /// A step weight the rollout waits at for `stickyctl next`; repeatable.
    #[arg(long = "gate", value_name = "PERCENT")]
    gates: Vec<f64>,
    /// After the last step: wait for `stickyctl promote` (gate) or promote by itself (auto).
    #[arg(long, value_enum)]
    promotion: Option<PromotionArg>,
    /// How an automatic rollback sends the canary's clients back.
    #[arg(long, value_enum)]
    rollback: Option<RollbackArg>,
    /// What a step without enough evidence does at its deadline.
    #[arg(long, value_enum)]
    on_inconclusive: Option<InconclusiveArg>,
    /// Seconds a step may stay inconclusive before `--on-inconclusive` applies.
    #[arg(long, value_name = "SECONDS")]
    inconclusive_deadline: Option<u32>,
    /// URL notified of every step, hold, rollback and promotion (Slack-compatible JSON):
    /// https, or http to a loopback host.
    #[arg(long, value_name = "URL")]
    webhook: Option<String>,
    /// Take a plain http --webhook to a host other than loopback (notices in clear).
    #[arg(long)]
    allow_http_webhook: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum PromotionArg {
    Gate,
    Auto,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum RollbackArg {
    Immediate,
    Drain,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum InconclusiveArg {
    Hold,
    Rollback,
}

impl AutoArgs {
    /// Sets what was given on `auto`.
    fn apply(&self, auto: &mut AutoSpec) {
        auto.enabled = self.auto;
        if let Some(interval) = self.interval {
            auto.interval_seconds = interval;
        }
        auto.gates.clone_from(&self.gates);
        if let Some(promotion) = self.promotion {
            auto.promotion = match promotion {
                PromotionArg::Gate => Promotion::Gate,
                PromotionArg::Auto => Promotion::Auto,
            };
        }
        if let Some(rollback) = self.rollback {
            auto.rollback = match rollback {
                RollbackArg::Immediate => RollbackMode::Immediate,
                RollbackArg::Drain => RollbackMode::Drain,
            };
        }
        if let Some(on) = self.on_inconclusive {
            auto.on_inconclusive = match on {
                InconclusiveArg::Hold => OnInconclusive::Hold,
                InconclusiveArg::Rollback => OnInconclusive::Rollback,
            };
        }
        if let Some(deadline) = self.inconclusive_deadline {
            auto.inconclusive_deadline_seconds = deadline;
        }
        auto.webhook.clone_from(&self.webhook);
        auto.allow_http_webhook = self.allow_http_webhook;
    }
}

#[derive(Debug, Args)]
struct ExplainArgs {
    /// The client key, as the first key source would carry it (or the minted id cookie).
    #[arg(long)]
    key: Option<String>,
    /// A cookie the client sends, `NAME=VALUE`; repeatable.
    #[arg(long = "cookie", value_name = "NAME=VALUE")]
    cookies: Vec<String>,
    /// The QA override header's value.
    #[arg(long = "override", value_name = "VALUE")]
    override_: Option<String>,
    /// The request is a top-level navigation (a page load), where pins are re-decided.
    #[arg(long)]
    navigate: bool,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = Output::Table)]
    output: Output,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Output {
    /// Readable text.
    Table,
    /// JSON for scripts.
    Json,
}

/// What a command printed and its exit code; `run` returns it so tests can call commands
/// in-process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Exit code (see the module docs).
    pub code: u8,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

/// The binaries' `main`: parse the process arguments, run, print, exit.
pub fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "warn,stickyctl=info".into()),
        )
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::from(runtime::error::EXIT_RUNTIME);
        }
    };
    let outcome = runtime.block_on(run(std::env::args_os()));
    print!("{}", outcome.stdout);
    eprint!("{}", outcome.stderr);
    ExitCode::from(outcome.code)
}

/// Runs one command line (including the program name) to completion.
pub async fn run<I, T>(args: I) -> Outcome
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(err) => {
            let code = if err.use_stderr() {
                EXIT_INVALID
            } else {
                EXIT_OK
            };
            let text = err.render().to_string();
            let (stdout, stderr) = if err.use_stderr() {
                (String::new(), text)
            } else {
                (text, String::new())
            };
            return Outcome {
                code,
                stdout,
                stderr,
            };
        }
    };
    let mut out = String::new();
    // On the heap: the commands' futures are large, and tests run them on 2 MiB threads.
    match Box::pin(execute(cli, &mut out)).await {
        Ok(()) => Outcome {
            code: EXIT_OK,
            stdout: out,
            stderr: String::new(),
        },
        Err(err) => Outcome {
            code: err.exit_code(),
            stdout: out,
            stderr: format!("error: {err}\n"),
        },
    }
}

async fn execute(cli: Cli, out: &mut String) -> Result<(), Error> {
    if let Command::Plan(plan) = &cli.command {
        let at = plan::command::Where {
            namespace: cli.namespace.as_deref(),
            kubeconfig: cli.kubeconfig.as_deref(),
            envoy_dir: cli.envoy_dir.as_deref(),
        };
        return Box::pin(plan::command::execute(plan, at, out)).await;
    }
    match cli.command {
        Command::Crd => {
            out.push_str(&api::crd_yaml());
            return Ok(());
        }
        Command::ProxyStats => {
            out.push_str(&render::proxy_stats::istio_bootstrap_override_json());
            return Ok(());
        }
        Command::Bootstrap { admin_port } => {
            return print_bootstrap(cli.envoy_dir.as_deref(), admin_port, out)
        }
        _ => {}
    }
    let metrics =
        |args: &ControllerArgs| args.prometheus.as_deref().map(Prometheus::new).transpose();
    let source = || async {
        Ok::<_, Error>(match &cli.envoy_dir {
            Some(dir) => dashboard::Source::EnvoyDir(dir.clone()),
            None => dashboard::Source::Kube {
                client: kube_target::client(cli.kubeconfig.as_deref()).await?.0,
                namespace: cli.namespace.clone(),
            },
        })
    };
    if let Command::Dashboard(args) = &cli.command {
        let prometheus = args
            .prometheus
            .as_deref()
            .map(Prometheus::new)
            .transpose()?;
        return dashboard::run(source().await?, args.listen, args.token.clone(), prometheus).await;
    }
    if let Command::Controller(ControllerArgs {
        dashboard: Some(listen),
        dashboard_token,
        prometheus,
    }) = &cli.command
    {
        // The controller and its dashboard in one process (in-cluster): whichever stops
        // first (an error, or a signal) stops both.
        let prometheus = prometheus.as_deref().map(Prometheus::new).transpose()?;
        let dashboard = dashboard::run(
            source().await?,
            *listen,
            dashboard_token.clone(),
            prometheus.clone(),
        );
        let controller = async {
            match &cli.envoy_dir {
                Some(dir) => controller::run_envoy_dir(dir, prometheus).await,
                None => {
                    let (client, _) = kube_target::client(cli.kubeconfig.as_deref()).await?;
                    controller::run(client, cli.namespace.as_deref(), prometheus).await;
                    Ok(())
                }
            }
        };
        return tokio::select! {
            done = dashboard => done,
            done = controller => done,
        };
    }
    if let Some(dir) = &cli.envoy_dir {
        if let Command::Controller(args) = &cli.command {
            return controller::run_envoy_dir(dir, metrics(args)?).await;
        }
        if let Command::Delete { .. } = cli.command {
            return Err(Error::Invalid(
                "delete removes a rollout from Kubernetes; a plain Envoy's directory is removed with the Envoy it configures".into(),
            ));
        }
        let target = EnvoyDir::open(dir).await?;
        return Box::pin(command(&target, &cli, out)).await;
    }
    let (client, default_namespace) = kube_target::client(cli.kubeconfig.as_deref()).await?;
    if let Command::Controller(args) = &cli.command {
        controller::run(client, cli.namespace.as_deref(), metrics(args)?).await;
        return Ok(());
    }
    let namespace = cli.namespace.clone().unwrap_or(default_namespace);
    let name = match (&cli.name, &cli.command) {
        (Some(name), _) => name.clone(),
        (None, Command::Init(init)) => default_name(&init.service),
        (None, _) => only_rollout(&Api::namespaced(client.clone(), &namespace), &namespace).await?,
    };
    let target = KubeTarget::new(client, &namespace, &name);
    if let Command::Delete { dry } = &cli.command {
        return delete(&target, dry.dry_run, out).await;
    }
    Box::pin(command(&target, &cli, out)).await
}

/// Deletes the rollout and does what the controller's finalizer would, so deleting works
/// without the controller: the rollout is marked for deletion first (a controller still
/// reconciling it can then only clean up, never re-apply), its routes and subsets are taken
/// out, and the finalizer, if the controller had put one on, is removed.
async fn delete(target: &KubeTarget, dry_run: bool, out: &mut String) -> Result<(), Error> {
    let canary = load(target).await?;
    if dry_run {
        let rollout = rollout_for_display(&canary);
        let mut docs = vec![(
            format!("StickyCanary {}", canary.name_any()),
            Some(rollout),
            None,
        )];
        docs.extend(
            target
                .teardown(&canary)
                .await?
                .into_iter()
                .map(|doc| (doc.label, doc.current, doc.desired)),
        );
        print_docs(&docs, out);
        return Ok(());
    }
    target.delete().await?;
    let written = reconcile::teardown(target, &canary).await?;
    retry_on_conflict(|| target.remove_finalizer()).await?;
    writeln!(
        out,
        "delete {}: applied ({}); it left the shared WasmPlugins",
        canary.name_any(),
        objects(written, "written")
    )
    .ok();
    Ok(())
}

/// A rollout's default name: the service's first DNS label (`shop` for `shop.prod.svc...`).
fn default_name(service: &str) -> String {
    service.split('.').next().unwrap_or(service).to_owned()
}

async fn only_rollout(api: &Api<StickyCanary>, namespace: &str) -> Result<String, Error> {
    let names: Vec<String> = api
        .list(&ListParams::default())
        .await?
        .items
        .iter()
        .map(|c| c.name_any())
        .collect();
    match names.as_slice() {
        [one] => Ok(one.clone()),
        [] => Err(Error::Invalid(format!(
            "no StickyCanary in namespace {namespace}; run `stickyctl init` first"
        ))),
        many => Err(Error::Invalid(format!(
            "several rollouts in namespace {namespace} ({}); pass --name",
            many.join(", ")
        ))),
    }
}

async fn command<T: Target>(target: &T, cli: &Cli, out: &mut String) -> Result<(), Error> {
    let op = |op: Op| RolloutCommand::Op(op);
    let (command, dry) = match &cli.command {
        Command::Init(init) => return init_rollout(target, cli, init, out).await,
        Command::Status { output, watch } => {
            return match watch {
                true => watch_status(target, out).await,
                false => show_status(target, *output, out).await,
            }
        }
        Command::Explain(args) => return explain(target, args, out).await,
        Command::Render => return render(target, out).await,
        Command::Controller(_)
        | Command::Dashboard(_)
        | Command::Crd
        | Command::ProxyStats
        | Command::Bootstrap { .. }
        | Command::Delete { .. }
        | Command::Plan(_) => {
            unreachable!("handled before a target is opened")
        }
        Command::Start { canary, dry } => (
            op(Op::Start {
                canary: canary.clone(),
            }),
            dry,
        ),
        Command::SetWeight { percent, dry } => (op(Op::SetWeight(*percent)), dry),
        Command::Next { dry } => (op(Op::Next), dry),
        Command::Promote { finish, dry } => (op(Op::Promote { finish: *finish }), dry),
        Command::Abort { dry } => (op(Op::Abort), dry),
        Command::Auto {
            state,
            prometheus,
            dry,
        } => {
            if let (Switch::On, Some(url)) = (state, prometheus) {
                let mut canary = load(target).await?;
                canary.spec.auto.enabled = true;
                metrics::check(&Prometheus::new(url)?, &canary).await?;
            }
            (RolloutCommand::Auto(*state == Switch::On), dry)
        }
        Command::Pause { dry } => (RolloutCommand::Pause, dry),
        Command::Resume { dry } => (RolloutCommand::Resume, dry),
        Command::Override { access, token, dry } => {
            let (access, token) = override_access(*access, token)?;
            if let (Some(token), false) = (&token, dry.dry_run) {
                keep_token(target, &load(target).await?, token, out).await?;
            }
            (RolloutCommand::Override(access), dry)
        }
    };
    let input = Input::Command(command);
    if dry.dry_run {
        let current = load(target).await?;
        let next = reconcile::planned(
            &current,
            &input,
            &reconcile::Requester::default(),
            jiff::Timestamp::now(),
        )?;
        return print_diff(target, Some(&current), &next, out).await;
    }
    let done = reconcile::advance(target, &input).await?;
    let current = load(target).await?;
    let webhook = match notify::webhook(&current.spec.auto) {
        Some(Ok(url)) if !done.notices.is_empty() => match notify::client() {
            Ok(client) => Some((client, url)),
            Err(why) => {
                writeln!(out, "warning: {why}: notices not sent").ok();
                None
            }
        },
        Some(Err(why)) if !done.notices.is_empty() => {
            writeln!(out, "warning: {why}: notices not sent").ok();
            None
        }
        _ => None,
    };
    if let Some((client, url)) = webhook {
        let label = notify::label(&current);
        let delivered = notify::deliver(&client, &url, &label, done.notices.clone());
        // The change is applied; its notices get a bounded wait, never an error.
        if tokio::time::timeout(NOTICE_PATIENCE, delivered)
            .await
            .is_err()
        {
            writeln!(
                out,
                "warning: the webhook did not take every notice within {}s",
                NOTICE_PATIENCE.as_secs()
            )
            .ok();
        }
    }
    for line in done.lines() {
        writeln!(out, "{line}").ok();
    }
    if let Some(note) = drain_note(&current.spec) {
        writeln!(out, "{note}").ok();
    }
    Ok(())
}

/// How long a command waits for the webhook to take its notices.
const NOTICE_PATIENCE: std::time::Duration = std::time::Duration::from_secs(15);

/// What a person needs to know about a draining version: when its clients leave and how
/// it goes away.
fn drain_note(spec: &StickyCanarySpec) -> Option<String> {
    let drained = spec.versions.iter().find(|v| v.drain)?;
    let mut note = format!(
        "{} drains: its clients keep it until their next page load (or for at most {}s without one)",
        drained.name, spec.filter.cookie.max_age
    );
    if spec.retiring.as_deref() == Some(drained.name.as_str()) {
        note.push_str("; `stickyctl promote --finish` then removes it");
    }
    Some(note)
}

async fn load<T: Target>(target: &T) -> Result<StickyCanary, Error> {
    target.load().await?.ok_or_else(|| {
        Error::Invalid("the rollout does not exist; run `stickyctl init` first".into())
    })
}

fn annotate(canary: &mut StickyCanary, action: &str) {
    canary
        .annotations_mut()
        .insert(ACTION_ANNOTATION.to_owned(), action.to_owned());
}

async fn init_rollout<T: Target>(
    target: &T,
    cli: &Cli,
    args: &InitArgs,
    out: &mut String,
) -> Result<(), Error> {
    let mut spec = init_spec(args)?;
    let (access, token) = override_access(args.override_access, &args.override_token)?;
    spec.filter.override_ = OverrideConfig {
        header: spec.filter.override_.header,
        ..access
    };
    let name = cli
        .name
        .clone()
        .unwrap_or_else(|| default_name(&args.service));
    let mut fresh = StickyCanary::new(&name, spec);
    fresh.metadata.namespace = cli.namespace.clone();
    annotate(&mut fresh, &format!("init {}", args.stable));
    if args.dry.dry_run {
        return match target.load().await? {
            Some(existing) => Err(already_exists(&existing)),
            None => print_diff(target, None, &fresh, out).await,
        };
    }
    let created = retry_on_conflict(|| async {
        match target.load().await? {
            Some(existing) if existing.spec.service == fresh.spec.service => Ok(false),
            Some(existing) => Err(already_exists(&existing)),
            None => {
                let plan = target.plan(&fresh).await?;
                target.check(&plan).await?;
                target.save(&fresh).await.map(|_| true)
            }
        }
    })
    .await?;
    if let (Some(token), true) = (&token, created) {
        keep_token(target, &load(target).await?, token, out).await?;
    }
    let written = converge(target).await?;
    if created {
        writeln!(
            out,
            "init {}: applied ({})",
            args.stable,
            objects(written, "written")
        )
        .ok();
    } else {
        writeln!(
            out,
            "already initialized ({})",
            objects(written, "re-applied")
        )
        .ok();
    }
    Ok(())
}

/// The override setting for `access`, and the token to keep when one was created (a token
/// given with --token is the person's own, and only its digest is stored).
fn override_access(
    access: OverrideAccess,
    given: &OverrideToken,
) -> Result<(OverrideConfig, Option<String>), Error> {
    let mut config = OverrideConfig::default();
    if access != OverrideAccess::Token && given.token.is_some() {
        return Err(Error::Invalid(
            "--token: a token only guards the override with `token` access".into(),
        ));
    }
    let created = match access {
        OverrideAccess::Off => return Ok((config, None)),
        OverrideAccess::Public => {
            config.public = true;
            return Ok((config, None));
        }
        OverrideAccess::Token => given.token.is_none(),
    };
    let token = match &given.token {
        Some(token) => {
            sticky_canary_filter::names::check_token(token)
                .map_err(|m| Error::Invalid(format!("--token: {m}")))?;
            token.clone()
        }
        None => sticky_canary_filter::guard::to_hex(&random::<32>()?),
    };
    config.token_digest = Some(TokenDigest::of(&token, &random::<16>()?));
    Ok((config, created.then_some(token)))
}

/// `N` random bytes from the operating system.
fn random<const N: usize>() -> Result<[u8; N], Error> {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).map_err(|e| Error::Runtime(format!("no randomness: {e}")))?;
    Ok(bytes)
}

/// Keeps a created override token of `canary` on the target and says how QA gets it.
async fn keep_token<T: Target>(
    target: &T,
    canary: &StickyCanary,
    token: &str,
    out: &mut String,
) -> Result<(), Error> {
    let read = target.keep_override_token(canary, token).await?;
    writeln!(
        out,
        "QA override: send `{}: <version>:<token>`; the token: {read}",
        canary.spec.filter.override_.header
    )
    .ok();
    Ok(())
}

/// The bootstrap of the Envoy reading `dir`'s files, which it names by absolute path.
fn print_bootstrap(dir: Option<&Path>, admin_port: u16, out: &mut String) -> Result<(), Error> {
    let dir = dir.ok_or_else(|| {
        Error::Invalid("bootstrap renders a plain Envoy's bootstrap: pass --envoy-dir DIR".into())
    })?;
    if !dir.is_dir() {
        return Err(Error::Invalid(format!(
            "{}: no such directory",
            dir.display()
        )));
    }
    let absolute = std::fs::canonicalize(dir).map_err(|e| Error::io(dir, e))?;
    let bootstrap = render::envoy::render_bootstrap(&absolute, admin_port);
    // Plain data; serializing it cannot fail.
    let text = serde_json::to_string_pretty(&bootstrap).expect("the bootstrap serializes");
    writeln!(out, "{text}").ok();
    Ok(())
}

fn already_exists(existing: &StickyCanary) -> Error {
    Error::Invalid(format!(
        "rollout {} already exists for service {} ({}); pass another --name",
        existing.name_any(),
        existing.spec.service,
        existing.spec.summary()
    ))
}

fn init_spec(args: &InitArgs) -> Result<StickyCanarySpec, Error> {
    let mut spec = rollout::init(&args.service, &args.stable)?;
    spec.routing.virtual_service = args.virtual_service.clone();
    spec.routing.destination_rule = args.destination_rule.clone();
    spec.routing.version_label = args.version_label.clone();
    spec.plugin.url = args.plugin_url.clone();
    if let Some(sha256) = &args.plugin_sha256 {
        let hex = sha256.len() == 64
            && sha256
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        if !hex {
            return Err(Error::Invalid(format!(
                "--plugin-sha256 {sha256:?}: expected 64 lowercase hex digits (an image digest without its sha256: prefix)"
            )));
        }
    }
    spec.plugin.sha256 = args.plugin_sha256.clone();
    let labels = |flag: &str, pairs: &[String]| -> Result<BTreeMap<String, String>, Error> {
        pairs
            .iter()
            .map(|pair| {
                pair.split_once('=')
                    .map(|(k, v)| (k.to_owned(), v.to_owned()))
                    .ok_or_else(|| Error::Invalid(format!("{flag} {pair:?}: expected KEY=VALUE")))
            })
            .collect()
    };
    if !args.selectors.is_empty() || args.gateway_namespace != placement::DEFAULT_GATEWAY_NAMESPACE
    {
        let mut selector = labels("--selector", &args.selectors)?;
        if selector.is_empty() {
            let (key, value) = placement::DEFAULT_GATEWAY_SELECTOR;
            selector.insert(key.to_owned(), value.to_owned());
        }
        spec.plugin.gateways = Some(vec![Proxies {
            namespace: Some(args.gateway_namespace.clone()),
            selector,
        }]);
    }
    if !args.sidecars.is_empty() || args.sidecar_namespace.is_some() {
        spec.plugin.sidecars = vec![Proxies {
            namespace: args.sidecar_namespace.clone(),
            selector: labels("--sidecar", &args.sidecars)?,
        }];
    }
    spec.filter.trust_incoming_header = args.trust_incoming_header;
    for target in &args.target_refs {
        let (kind, name) = target.split_once('/').ok_or_else(|| {
            Error::Invalid(format!("--target-ref {target:?}: expected KIND/NAME"))
        })?;
        spec.plugin.target_refs.push(TargetRef {
            group: "gateway.networking.k8s.io".to_owned(),
            kind: kind.to_owned(),
            name: name.to_owned(),
        });
    }
    spec.filter.key_sources = args
        .key_headers
        .iter()
        .cloned()
        .map(KeySource::Header)
        .chain(args.key_cookies.iter().cloned().map(KeySource::Cookie))
        .collect();
    spec.filter.cookie.domain = args.cookie_domain.clone();
    if let Some(salt) = &args.salt {
        spec.filter.salt = salt.clone();
    }
    if let Some(steps) = &args.steps {
        spec.steps = steps.clone();
    }
    args.auto.apply(&mut spec.auto);
    rollout::validate(&spec)?;
    // Refused before anything is written; a URL already stored is only not posted to.
    if let Some(Err(why)) = notify::webhook(&spec.auto) {
        return Err(rollout::OpError::Invalid(why).into());
    }
    Ok(spec)
}

/// Prints the unified diff between the live objects and what `next` renders to.
async fn print_diff<T: Target>(
    target: &T,
    current: Option<&StickyCanary>,
    next: &StickyCanary,
    out: &mut String,
) -> Result<(), Error> {
    let plan = target.plan(next).await?;
    let mut docs = vec![(
        format!("StickyCanary {}", next.name_any()),
        current.map(rollout_for_display),
        Some(rollout_for_display(next)),
    )];
    // Every final object, and what the rollout leaves (shared plugins it is no longer on).
    let leaving: Vec<Doc> = plan
        .writes
        .into_iter()
        .filter(|w| !plan.objects.iter().any(|o| o.label == w.label))
        .collect();
    docs.extend(
        plan.objects
            .into_iter()
            .chain(leaving)
            .map(|doc| (doc.label, doc.current, doc.desired)),
    );
    print_docs(&docs, out);
    Ok(())
}

/// Prints a unified diff per object that changes, `(label, before, after)`, `None` meaning
/// absent; or "nothing to change".
fn print_docs(docs: &[(String, Option<Value>, Option<Value>)], out: &mut String) {
    let text = |object: &Option<Value>| {
        object
            .as_ref()
            .map(|o| yaml(&for_display(o)))
            .unwrap_or_default()
    };
    let mut any = false;
    for (label, current, desired) in docs {
        let (before, after) = (text(current), text(desired));
        if before != after {
            any = true;
            let diff = similar::TextDiff::from_lines(&before, &after);
            let header = (format!("a/{label}"), format!("b/{label}"));
            write!(
                out,
                "{}",
                diff.unified_diff()
                    .context_radius(3)
                    .header(&header.0, &header.1)
            )
            .ok();
        }
    }
    if !any {
        writeln!(out, "nothing to change").ok();
    }
}

fn rollout_for_display(canary: &StickyCanary) -> Value {
    let mut value = serde_json::to_value(canary).unwrap_or(Value::Null);
    if let Some(object) = value.as_object_mut() {
        object.remove("status");
    }
    value
}

fn yaml(value: &Value) -> String {
    serde_norway::to_string(value).unwrap_or_else(|e| format!("# cannot render as YAML: {e}\n"))
}

async fn render<T: Target>(target: &T, out: &mut String) -> Result<(), Error> {
    let canary = load(target).await?;
    let plan = target.plan(&canary).await?;
    for doc in &plan.objects {
        writeln!(out, "---\n# {}", doc.label).ok();
        if let Some(desired) = &doc.desired {
            out.push_str(&yaml(&for_display(desired)));
        }
    }
    Ok(())
}

async fn show_status<T: Target>(target: &T, output: Output, out: &mut String) -> Result<(), Error> {
    let canary = load(target).await?;
    let plan = target.plan(&canary).await?;
    let spec = &canary.spec;
    let action = status::last_action(&canary);
    let role = |i: usize, name: &str| match (i, spec.retiring.as_deref()) {
        (0, _) => "stable",
        (_, Some(r)) if r == name => "retiring",
        _ => "canary",
    };
    let versions: Vec<Value> = spec
        .versions
        .iter()
        .enumerate()
        .map(|(i, v)| json!({"name": v.name, "weight": v.weight, "drain": v.drain, "role": role(i, &v.name)}))
        .collect();
    let objects: Vec<Value> = plan
        .objects
        .iter()
        .map(|d| json!({"object": d.label, "inSync": d.in_sync()}))
        .collect();
    let in_sync = plan.objects.iter().all(Doc::in_sync);
    let state = canary.status.clone().unwrap_or_default();
    let phase = rollout::phase_for(spec, state.phase);
    let namespace = canary.namespace().unwrap_or_default();
    let warnings = exposure::warnings(&namespace, spec);
    // A URL stored by hand that the notices refuse: said here, since nothing else is posted.
    let webhook_refused = notify::webhook(&spec.auto).and_then(Result::err);
    let report = json!({
        "name": canary.name_any(),
        "namespace": canary.namespace(),
        "service": spec.service,
        "phase": phase,
        "auto": spec.auto.enabled,
        "paused": spec.paused,
        "step": state.step,
        "verdicts": state.verdicts,
        "message": state.message,
        "versions": versions,
        "steps": spec.steps,
        "stepIndex": rollout::step_index(spec),
        "objects": objects,
        "inSync": in_sync,
        "lastAction": action,
        "lastApplied": canary.status.as_ref().and_then(|s| s.last_applied.clone()),
        "override": exposure::access(&spec.filter.override_),
        "warnings": warnings,
        "webhookRefused": webhook_refused,
    });
    if output == Output::Json {
        writeln!(out, "{report:#}").ok();
        return Ok(());
    }
    let step = match rollout::step_index(spec) {
        Some(i) => format!("{}/{}", i + 1, spec.steps.len()),
        None => "off-step".to_owned(),
    };
    let steps: Vec<String> = spec.steps.iter().map(f64::to_string).collect();
    writeln!(out, "rollout  {}", canary.name_any()).ok();
    writeln!(out, "service  {}", spec.service).ok();
    writeln!(out, "phase    {phase:?}").ok();
    writeln!(out, "step     {step} (steps {})", steps.join(" ")).ok();
    let now = jiff::Timestamp::now();
    writeln!(out, "auto     {}", describe::progression(spec, &state, now)).ok();
    writeln!(out, "override {}", exposure::override_line(spec)).ok();
    for warning in &warnings {
        writeln!(out, "warning  {warning}").ok();
    }
    if let Some(verdict) = state.step.as_ref().and_then(|s| s.verdict.as_ref()) {
        writeln!(out, "verdict  {:?}: {}", verdict.outcome, verdict.reason).ok();
    }
    if let Some(message) = &state.message {
        writeln!(out, "message  {message}").ok();
    }
    if let Some(why) = &webhook_refused {
        writeln!(out, "webhook  refused, notices are not sent: {why}").ok();
    }
    if !state.verdicts.is_empty() {
        writeln!(
            out,
            "\n{:<7} {:<12} {:<20} VERDICT",
            "STEP", "OUTCOME", "JUDGED"
        )
        .ok();
        for judged in &state.verdicts {
            let verdict = &judged.verdict;
            writeln!(
                out,
                "{:<7} {:<12} {:<20} {}",
                format!("{}%", judged.weight),
                format!("{:?}", verdict.outcome),
                judged.judged.strftime("%Y-%m-%dT%H:%M:%S").to_string(),
                verdict.line()
            )
            .ok();
        }
    }
    writeln!(out, "\n{:<24} {:<9} {:>7}", "VERSION", "ROLE", "WEIGHT").ok();
    for (i, v) in spec.versions.iter().enumerate() {
        writeln!(
            out,
            "{:<24} {:<9} {:>7}{}",
            v.name,
            role(i, &v.name),
            v.weight,
            if v.drain { "  draining" } else { "" }
        )
        .ok();
    }
    if let Some(note) = drain_note(spec) {
        writeln!(out, "{note}").ok();
    }
    let width = plan
        .objects
        .iter()
        .map(|d| d.label.len())
        .max()
        .unwrap_or(0)
        .max(6);
    writeln!(out, "\n{:<width$} STATE", "OBJECT").ok();
    for doc in &plan.objects {
        let state = if doc.in_sync() { "in sync" } else { "drifted" };
        writeln!(out, "{:<width$} {state}", doc.label).ok();
    }
    Ok(())
}

/// Prints a line per look at the rollout, until it ends (stable, promoted, aborted or rolled
/// back, with nothing left to remove). Lines go out as they come, not at the end.
async fn watch_status<T: Target>(target: &T, out: &mut String) -> Result<(), Error> {
    use std::io::Write as _;
    let mut last = String::new();
    loop {
        let canary = load(target).await?;
        let state = canary.status.clone().unwrap_or_default();
        let now = jiff::Timestamp::now();
        let line = describe::line(&canary.spec, &state, now);
        if line != last {
            let mut stdout = std::io::stdout().lock();
            writeln!(stdout, "{} {line}", now.strftime("%H:%M:%S")).ok();
            stdout.flush().ok();
            last = line;
        }
        if describe::ended(&canary.spec, &state) {
            writeln!(out, "{}", describe::line(&canary.spec, &state, now)).ok();
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
}

/// A synthetic request for `explain`.
struct SyntheticRequest(BTreeMap<String, Vec<u8>>);

impl RequestHeaders for SyntheticRequest {
    fn header(&self, name: &str) -> Option<Vec<u8>> {
        self.0.get(name).cloned()
    }
}

async fn explain<T: Target>(target: &T, args: &ExplainArgs, out: &mut String) -> Result<(), Error> {
    let canary = load(target).await?;
    let config = Config::compile(target.plugin_config(&canary))
        .map_err(|e| Error::Invalid(format!("spec: {e}")))?;
    let mut headers = BTreeMap::new();
    let mut cookies = args.cookies.clone();
    if let Some(key) = &args.key {
        match config.plugin.key_sources.first() {
            Some(KeySource::Header(name)) => {
                headers.insert(name.to_ascii_lowercase(), key.clone().into_bytes());
            }
            Some(KeySource::Cookie(name)) => cookies.push(format!("{name}={key}")),
            None => cookies.push(format!("{}={key}", config.plugin.cookie.id_name)),
        }
    }
    if !cookies.is_empty() {
        headers.insert("cookie".to_owned(), cookies.join("; ").into_bytes());
    }
    if let Some(value) = &args.override_ {
        headers.insert(config.override_header.clone(), value.clone().into_bytes());
    }
    if args.navigate {
        headers.insert("sec-fetch-mode".to_owned(), b"navigate".to_vec());
    }
    let decision = decide(&config, &SyntheticRequest(headers), || {
        "(new id)".to_owned()
    });
    let version = &config.names[decision.version];
    let bucket = decision.hashed.as_ref().map(|(_, bucket)| *bucket);
    let why = match (decision.reason, bucket, decision.minted_id.is_some()) {
        (Reason::Override, ..) => "the override header names it".to_owned(),
        (Reason::Trusted, ..) => "a trusted hop already carried the version header".to_owned(),
        (Reason::Cookie, ..) if config.is_draining(decision.version) => {
            "the pinning cookie names it and it drains: the client leaves it at its next page load"
                .to_owned()
        }
        (Reason::Cookie, ..) => "the pinning cookie names it and it is live".to_owned(),
        (Reason::Hash, _, true) => "no client key: a new id would be minted and hashed".to_owned(),
        (Reason::Hash, Some(bucket), false) => {
            format!("the key hashes to bucket {bucket} of 10000, which is {version}'s range")
        }
        (Reason::Hash, None, false) => "the hash decided".to_owned(),
        (Reason::Preflight, ..) => {
            "a CORS preflight carries no cookies: it goes to the first live version".to_owned()
        }
    };
    if args.output == Output::Json {
        let report = json!({
            "version": version,
            "reason": decision.reason.as_str(),
            "bucket": bucket,
            "setsCookie": decision.set_version_cookie,
            "cookie": config.plugin.cookie.name,
            "cookieDomain": config.plugin.cookie.domain,
            "weights": canary.spec.versions.iter().map(|v| json!({"name": v.name, "weight": v.weight})).collect::<Vec<_>>(),
        });
        writeln!(out, "{report:#}").ok();
    } else {
        writeln!(out, "version  {version}").ok();
        writeln!(out, "reason   {} ({why})", decision.reason.as_str()).ok();
        writeln!(out, "weights  {}", canary.spec.summary()).ok();
        let scope = match &config.plugin.cookie.domain {
            Some(domain) => format!("domain {domain}"),
            None => "host-only".to_owned(),
        };
        writeln!(out, "cookie   {} ({scope})", config.plugin.cookie.name).ok();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `init --webhook` refuses a URL notices may not go to, naming the field, with exit code 2
    /// and nothing written; `--allow-http-webhook` takes plain http and is kept in the spec.
    #[tokio::test]
    async fn init_refuses_a_webhook_before_any_write() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_str().unwrap().to_owned();
        let init = |webhook: &str, extra: &[&str]| {
            let mut args = vec![
                "stickyctl",
                "--envoy-dir",
                &path,
                "init",
                "--service",
                "shop",
                "--stable",
                "v1",
                "--webhook",
            ];
            args.push(webhook);
            args.extend(extra);
            args.into_iter().map(str::to_owned).collect::<Vec<_>>()
        };
        let refused = [
            ("http://hooks.example/x", "plain http"),
            ("https://169.254.169.254/latest", "cloud metadata"),
            ("https://[fe80::1]/x", "link-local"),
            ("https://metadata.google.internal/", "cloud metadata"),
            ("gopher://hooks.example/", "not an http(s) URL"),
        ];
        for (url, words) in refused {
            for extra in [&[][..], &["--allow-http-webhook"], &["--dry-run"]] {
                let outcome = run(init(url, extra)).await;
                if url.starts_with("http://") && extra == ["--allow-http-webhook"] {
                    continue;
                }
                assert_eq!(outcome.code, EXIT_INVALID, "{url} {extra:?}: {outcome:?}");
                assert!(
                    outcome
                        .stderr
                        .starts_with("error: invalid input: spec.auto.webhook: "),
                    "{url}: {}",
                    outcome.stderr
                );
                assert!(outcome.stderr.contains(words), "{url}: {}", outcome.stderr);
                let written: Vec<_> = std::fs::read_dir(dir.path())
                    .unwrap()
                    .flatten()
                    .map(|e| e.file_name())
                    .filter(|name| name != runtime::target::envoy_dir::LOCK_FILE)
                    .collect();
                assert!(written.is_empty(), "{url}: wrote {written:?}");
            }
        }
        let layout =
            json!({"listenPort": 10000, "wasmPath": "/x.wasm", "upstreams": {"v1": "127.0.0.1:1"}});
        let layout_file = dir.path().join(render::envoy::LAYOUT_FILE);
        std::fs::write(layout_file, layout.to_string()).unwrap();
        let taken = run(init(
            "http://hooks.monitoring:8080/x",
            &["--allow-http-webhook", "--dry-run"],
        ))
        .await;
        assert!(taken.stdout.contains("allowHttpWebhook: true"), "{taken:?}");
    }

    /// A webhook written into the rollout by hand that notices may not go to (here plain
    /// http to an address that is loopback only in disguise) is not posted to: a command says
    /// so and still does its work, and `status` shows why.
    #[tokio::test]
    async fn a_refused_stored_webhook_is_not_posted_to() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let heard = std::sync::Arc::new(AtomicUsize::new(0));
        let count = heard.clone();
        tokio::spawn(async move {
            while listener.accept().await.is_ok() {
                count.fetch_add(1, Ordering::SeqCst);
            }
        });
        let dir = tempfile::tempdir().unwrap();
        let layout = json!({"listenPort": 10000, "wasmPath": "/x.wasm",
            "upstreams": {"v1": "127.0.0.1:1", "v2": "127.0.0.1:2"}});
        let layout_file = dir.path().join(render::envoy::LAYOUT_FILE);
        std::fs::write(layout_file, layout.to_string()).unwrap();
        let path = dir.path().to_str().unwrap().to_owned();
        let stickyctl = |args: &[&str]| {
            let mut line = vec!["stickyctl", "--envoy-dir", &path];
            line.extend(args);
            run(line.into_iter().map(str::to_owned).collect::<Vec<_>>())
        };
        let init = stickyctl(&["init", "--service", "shop", "--stable", "v1"]).await;
        assert_eq!(init.code, EXIT_OK, "{init:?}");
        assert_eq!(stickyctl(&["start", "--canary", "v2"]).await.code, EXIT_OK);
        let file = dir.path().join(runtime::target::envoy_dir::ROLLOUT_FILE);
        let mut stored: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
        stored["spec"]["auto"]["webhook"] = json!(format!("http://[::ffff:127.0.0.1]:{port}/hook"));
        std::fs::write(&file, stored.to_string()).unwrap();
        let next = stickyctl(&["next"]).await;
        assert_eq!(next.code, EXIT_OK, "{next:?}");
        assert!(
            next.stdout.contains(
                "warning: spec.auto.webhook: plain http is taken to a loopback host only"
            ),
            "{}",
            next.stdout
        );
        assert!(next.stdout.contains("notices not sent"), "{}", next.stdout);
        let status = stickyctl(&["status"]).await;
        assert!(
            status
                .stdout
                .contains("webhook  refused, notices are not sent: spec.auto.webhook: "),
            "{}",
            status.stdout
        );
        let json_status = stickyctl(&["status", "-o", "json"]).await;
        let report: Value = serde_json::from_str(&json_status.stdout).unwrap();
        assert!(report["webhookRefused"]
            .as_str()
            .is_some_and(|w| w.starts_with("spec.auto.webhook: ")));
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        assert_eq!(
            heard.load(Ordering::SeqCst),
            0,
            "the refused webhook was called"
        );
    }
}
