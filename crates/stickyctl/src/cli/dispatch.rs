//! Runs a parsed command line: one match on the command, each verb wired to the runtime
//! (where its rollout lives: [`Place`]; changing it: [`act`]) and its text to
//! [`super::print`].

use std::path::Path;

use kube::ResourceExt;
use sticky_canary_filter::config::OverrideConfig;
use sticky_canary_filter::Config;

use super::args::{
    Cli, Command, ControllerArgs, DashboardArgs, DryRun, ExplainArgs, InitArgs, Output, Switch,
};
use super::print;
use super::spec::{already_exists, default_name, init_spec, override_access};
use api::{RoutingApi, StickyCanary};
use prometheus::Prometheus;
use rollout::{Command as RolloutCommand, Input, Op};
use runtime::act::act;
use runtime::console::Console;
use runtime::controller;
use runtime::error::Error;
use runtime::identity;
use runtime::interrupt::Interrupt;
use runtime::metrics;
use runtime::notify::Notifier;
use runtime::reconcile::{self, annotate, converge, load, retry_on_conflict, Requester};
use runtime::target::place::{Opened, Place};
use runtime::target::{Plan, Target};

/// Runs `cli`'s command, writing what it prints to `out` as it goes; a plan stops at
/// `interrupt`.
pub async fn execute(cli: Cli, out: &mut Console, interrupt: &Interrupt) -> Result<(), Error> {
    let op = |op: Op| RolloutCommand::Op(op);
    // The large futures (every command that opens a target, and the plan) are boxed: tests
    // run commands on 2 MiB threads.
    match &cli.command {
        Command::Crd => {
            out.push_str(&api::crd_yaml());
            Ok(())
        }
        Command::ProxyStats => {
            out.push_str(&render::proxy_stats::istio_bootstrap_override_json());
            Ok(())
        }
        Command::Bootstrap { admin_port } => bootstrap(cli.envoy_dir.as_deref(), *admin_port, out),
        Command::Plan(command) => {
            // The file first: a bad one is refused without a cluster.
            let file = plan::command::read(command)?;
            let place = cli.place().await?;
            let context = plan::command::Context {
                notifier: Notifier::command(),
                user: cli.user(&place).await,
                interrupt: interrupt.clone(),
            };
            Box::pin(plan::command::execute(
                command, &file, &place, &context, out,
            ))
            .await
        }
        Command::Dashboard(args) => dashboard(&cli, args).await,
        Command::Controller(args) => run_controller(&cli, args).await,
        Command::Delete { dry } => Box::pin(delete(&cli, dry.dry_run, out)).await,
        Command::Init(args) => {
            let place = cli.place().await?;
            let target = cli.open(&place, Some(default_name(&args.service))).await?;
            let by = cli.requester(&place).await;
            Box::pin(init_rollout(&target, &cli, args, &by, out)).await
        }
        Command::Status { output, watch } => {
            let target = cli.target(None).await?;
            match watch {
                true => Box::pin(watch_status(&target, out)).await,
                false => Box::pin(show_status(&target, *output, out)).await,
            }
        }
        Command::Explain(args) => Box::pin(explain(&cli.target(None).await?, args, out)).await,
        Command::Render => Box::pin(render(&cli.target(None).await?, out)).await,
        Command::Start { canary, dry } => {
            let start = op(Op::Start {
                canary: canary.clone(),
            });
            Box::pin(change(&cli, start, dry, out)).await
        }
        Command::SetWeight { percent, dry } => {
            Box::pin(change(&cli, op(Op::SetWeight(*percent)), dry, out)).await
        }
        Command::Next { dry } => Box::pin(change(&cli, op(Op::Next), dry, out)).await,
        Command::Promote { finish, dry } => {
            let promote = op(Op::Promote { finish: *finish });
            Box::pin(change(&cli, promote, dry, out)).await
        }
        Command::Abort { dry } => Box::pin(change(&cli, op(Op::Abort), dry, out)).await,
        Command::Pause { dry } => Box::pin(change(&cli, RolloutCommand::Pause, dry, out)).await,
        Command::Resume { dry } => Box::pin(change(&cli, RolloutCommand::Resume, dry, out)).await,
        Command::Auto {
            state,
            prometheus,
            dry,
        } => {
            let (target, by) = cli.acting().await?;
            // `auto on` first checks that the rollout can be judged, before anything is written.
            if let (Switch::On, Some(url)) = (state, prometheus) {
                let mut canary = load(&target).await?;
                canary.spec.auto.enabled = true;
                metrics::check(&Prometheus::new(url)?, &canary).await?;
            }
            let auto = RolloutCommand::Auto(*state == Switch::On);
            Box::pin(change_on(&target, auto, dry, &by, out)).await
        }
        Command::Override { access, token, dry } => {
            let (target, by) = cli.acting().await?;
            let (access, token) = override_access(*access, token)?;
            if let (Some(token), false) = (&token, dry.dry_run) {
                keep_token(&target, &load(&target).await?, token, out).await?;
            }
            let command = RolloutCommand::Override(access);
            Box::pin(change_on(&target, command, dry, &by, out)).await
        }
    }
}

impl Cli {
    /// Where the global flags say the rollouts live.
    async fn place(&self) -> Result<Place, Error> {
        Place::connect(
            self.envoy_dir.as_deref(),
            self.kubeconfig.as_deref(),
            self.namespace.as_deref(),
        )
        .await
    }

    /// The target of the rollout `--name` names, else named `default`, else the only one.
    async fn target(&self, default: Option<String>) -> Result<Opened, Error> {
        self.open(&self.place().await?, default).await
    }

    /// [`Cli::target`] at `place`.
    async fn open(&self, place: &Place, default: Option<String>) -> Result<Opened, Error> {
        // A directory holds one rollout, whatever its name: only a name given with `--name`
        // must be its name.
        let name = match place {
            Place::EnvoyDir(_) => self.name.clone(),
            Place::Kube { .. } => self.name.clone().or(default),
        };
        place.open(None, name.as_deref()).await
    }

    /// Who the history names for this command's changes: the Kubernetes user
    /// ([`identity::user`]); nobody in a plain Envoy's directory.
    async fn user(&self, place: &Place) -> Option<String> {
        match place {
            Place::Kube { client, .. } => identity::user(client, self.kubeconfig.as_deref()).await,
            Place::EnvoyDir(_) => None,
        }
    }

    /// [`Cli::user`] as the requester of a change.
    async fn requester(&self, place: &Place) -> Requester {
        Requester {
            by: self.user(place).await,
            seen_generation: None,
        }
    }

    /// The target of the rollout the flags name, and who acts on it.
    async fn acting(&self) -> Result<(Opened, Requester), Error> {
        let place = self.place().await?;
        let target = self.open(&place, None).await?;
        Ok((target, self.requester(&place).await))
    }
}

/// `command` on the rollout the flags name ([`change_on`]).
async fn change(
    cli: &Cli,
    command: RolloutCommand,
    dry: &DryRun,
    out: &mut Console,
) -> Result<(), Error> {
    let (target, by) = cli.acting().await?;
    change_on(&target, command, dry, &by, out).await
}

/// `command` on the rollout of `target` for `by`, through the runtime (its notices waited
/// for, up to a bound, before the process exits); with `--dry-run`, the diff of what it
/// would write.
async fn change_on(
    target: &Opened,
    command: RolloutCommand,
    dry: &DryRun,
    by: &Requester,
    out: &mut Console,
) -> Result<(), Error> {
    let input = Input::Command(command);
    if dry.dry_run {
        let current = load(target).await?;
        let next = reconcile::planned(&current, &input, by, jiff::Timestamp::now())?;
        let plan = target.plan(&next).await?;
        out.push_str(&print::diff(Some(&current), &next, plan));
        return Ok(());
    }
    let acted = act(target, &input, by, &Notifier::command()).await?;
    out.push_str(&print::acted(&acted));
    Ok(())
}

/// Prometheus of `--prometheus`, when given.
fn prometheus(url: Option<&str>) -> Result<Option<Prometheus>, Error> {
    Ok(url.map(Prometheus::new).transpose()?)
}

/// `dashboard`: serves the rollouts of the flags' place until Ctrl-C.
async fn dashboard(cli: &Cli, args: &DashboardArgs) -> Result<(), Error> {
    let prometheus = prometheus(args.prometheus.as_deref())?;
    let place = cli.place().await?;
    let settings = dashboard::Settings {
        listen: args.listen,
        token: args.token.clone(),
        prometheus,
        identity_header: args.identity_header.clone(),
    };
    dashboard::run(place, settings).await
}

/// `controller`: the reconcile loop on the flags' place until a signal; with `--dashboard`,
/// the dashboard too, in one process (in-cluster): whichever stops first (an error, or a
/// signal) stops both.
async fn run_controller(cli: &Cli, args: &ControllerArgs) -> Result<(), Error> {
    let prometheus = prometheus(args.prometheus.as_deref())?;
    let place = cli.place().await?;
    let Some(listen) = args.dashboard else {
        return controller::serve(&place, prometheus).await;
    };
    let settings = dashboard::Settings {
        listen,
        token: args.dashboard_token.clone(),
        prometheus: prometheus.clone(),
        identity_header: args.dashboard_identity_header.clone(),
    };
    let dashboard = dashboard::run(place.clone(), settings);
    tokio::select! {
        done = dashboard => done,
        done = controller::serve(&place, prometheus) => done,
    }
}

/// Deletes the rollout and does what the controller's finalizer would, so deleting works
/// without the controller: the rollout is marked for deletion first (a controller still
/// reconciling it can then only clean up, never re-apply), its routes and subsets are taken
/// out, and the finalizer, if the controller had put one on, is removed.
async fn delete(cli: &Cli, dry_run: bool, out: &mut Console) -> Result<(), Error> {
    let target = match cli.target(None).await? {
        Opened::Kube(target) => target,
        Opened::EnvoyDir(_) => return Err(Error::Invalid(
            "delete removes a rollout from Kubernetes; a plain Envoy's directory is removed with the Envoy it configures".into(),
        )),
    };
    let canary = load(&target).await?;
    if dry_run {
        out.push_str(&print::teardown_diff(
            &canary,
            target.teardown(&canary).await?,
        ));
        return Ok(());
    }
    target.delete().await?;
    let written = reconcile::teardown(&target, &canary).await?;
    retry_on_conflict(|| target.remove_finalizer()).await?;
    out.push_str(&print::deleted(&canary.name_any(), &written));
    Ok(())
}

/// `init`: creates the rollout from the flags (or finds it there already, for the same
/// service) and converges its objects.
async fn init_rollout(
    target: &Opened,
    cli: &Cli,
    args: &InitArgs,
    by: &Requester,
    out: &mut Console,
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
    annotate(&mut fresh, &by.action(&format!("init {}", args.stable)));
    if args.dry.dry_run {
        return match target.load().await? {
            Some(existing) => Err(already_exists(&existing)),
            None => {
                let plan = target.plan(&fresh).await?;
                out.push_str(&print::diff(None, &fresh, plan));
                Ok(())
            }
        };
    }
    let created = retry_on_conflict(|| async {
        match target.load().await? {
            Some(existing) if existing.spec.service == fresh.spec.service => Ok(false),
            Some(existing) => Err(already_exists(&existing)),
            None => {
                let plan = target.plan(&fresh).await?;
                target.check(&plan).await?;
                let mut fresh = fresh.clone();
                record_routing(&mut fresh, &plan);
                target.save(&fresh).await.map(|_| true)
            }
        }
    })
    .await?;
    if let (Some(token), true) = (&token, created) {
        keep_token(target, &load(target).await?, token, out).await?;
    }
    let written = converge(target).await?;
    out.push_str(&print::initialized(&args.stable, created, written));
    Ok(())
}

/// Records in a new rollout's spec the API that carries its routes and its HTTPRoute, as the
/// plan found them, so that what routes the service cannot change under the rollout.
fn record_routing(canary: &mut StickyCanary, plan: &Plan) {
    if let Some((api, route)) = &plan.routing {
        let routing = &mut canary.spec.routing;
        routing.api = Some(*api);
        if *api == RoutingApi::HttpRoute {
            routing.http_route = routing.http_route.take().or_else(|| route.clone());
        }
    }
}

/// Keeps a created override token of `canary` on the target and says how QA gets it.
async fn keep_token(
    target: &Opened,
    canary: &StickyCanary,
    token: &str,
    out: &mut Console,
) -> Result<(), Error> {
    let read = target.keep_override_token(canary, token).await?;
    out.push_str(&print::qa_token(canary, &read));
    Ok(())
}

/// `status`: the rollout and whether its objects are in sync.
async fn show_status(target: &Opened, output: Output, out: &mut Console) -> Result<(), Error> {
    let canary = load(target).await?;
    let plan = target.plan(&canary).await?;
    let now = jiff::Timestamp::now();
    out.push_str(&print::status(&canary, &plan.objects, now, output));
    Ok(())
}

/// `explain`: the filter's decision for a described request, with the rollout's settings.
async fn explain(target: &Opened, args: &ExplainArgs, out: &mut Console) -> Result<(), Error> {
    let canary = load(target).await?;
    let config = Config::compile(target.plugin_config(&canary))
        .map_err(|e| Error::Invalid(format!("spec: {e}")))?;
    out.push_str(&print::explain(&canary, &config, args));
    Ok(())
}

/// `render`: the objects the rollout renders to.
async fn render(target: &Opened, out: &mut Console) -> Result<(), Error> {
    let canary = load(target).await?;
    let plan = target.plan(&canary).await?;
    out.push_str(&print::render(&plan.objects));
    Ok(())
}

/// Prints a line per change of the rollout, until it ends (stable, promoted, aborted or rolled
/// back, with nothing left to remove) or the output is closed; on a terminal, a progress line
/// says how long it has stood as it is.
async fn watch_status(target: &Opened, out: &mut Console) -> Result<(), Error> {
    let mut last = String::new();
    let mut since = jiff::Timestamp::now();
    loop {
        let canary = load(target).await?;
        let state = canary.status.clone().unwrap_or_default();
        let now = jiff::Timestamp::now();
        let line = rollout::describe::line(&canary.spec, &state, now);
        if line != last {
            out.push_str(&print::watch_line(&line, now));
            (last, since) = (line, now);
        } else if out.is_terminal() {
            out.progress(&last, &print::watch_unchanged(since, now));
        }
        if rollout::describe::ended(&canary.spec, &state) {
            out.push_str(&rollout::describe::line(&canary.spec, &state, now));
            out.push_str("\n");
            return Ok(());
        }
        if out.is_closed() {
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
}

/// `bootstrap`: the bootstrap of the Envoy reading `dir`'s files, which it names by absolute
/// path.
fn bootstrap(dir: Option<&Path>, admin_port: u16, out: &mut Console) -> Result<(), Error> {
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
    out.push_str(&print::bootstrap(&absolute, admin_port));
    Ok(())
}
