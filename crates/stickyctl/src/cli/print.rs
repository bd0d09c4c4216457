//! What the commands print, as pure functions from what they read to text: no I/O, so each
//! output (the status table and its JSON fields above all, which scripts read) is tested
//! here on its own.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use jiff::Timestamp;
use kube::ResourceExt;
use serde_json::{json, Value};
use sticky_canary_filter::config::KeySource;
use sticky_canary_filter::{decide, Config, Reason, RequestHeaders};

use super::args::{ExplainArgs, Output};
use api::{StickyCanary, StickyCanarySpec};
use render::exposure;
use render::istio::for_display;
use rollout::{describe, status};
use runtime::act::Acted;
use runtime::notify;
use runtime::reconcile::objects;
use runtime::target::{Doc, Plan};

/// A changing command's report: why its notices were not all sent (first, as it was
/// learned first), a line per change made, and what a draining version's clients do.
pub fn acted(acted: &Acted) -> String {
    let mut out = String::new();
    if let Some(why) = &acted.warning {
        writeln!(out, "warning: {why}").ok();
    }
    for line in acted.done.lines() {
        writeln!(out, "{line}").ok();
    }
    if let Some(note) = drain_note(&acted.rollout.spec) {
        writeln!(out, "{note}").ok();
    }
    out
}

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

/// `init`'s report: created, or there already (with what converging re-applied).
pub fn initialized(stable: &str, created: bool, written: usize) -> String {
    if created {
        format!("init {stable}: applied ({})\n", objects(written, "written"))
    } else {
        format!("already initialized ({})\n", objects(written, "re-applied"))
    }
}

/// `delete`'s report: what it wrote, and for the rollout's Istio objects which were deleted
/// (stickyctl created them, nothing of the user's left) and which kept (the user's).
pub fn deleted(name: &str, written: &[Doc]) -> String {
    let mut out = format!(
        "delete {name}: applied ({}); it left the shared WasmPlugins\n",
        objects(written.len(), "written")
    );
    for doc in written {
        let what = match doc.label.split_once(' ').map(|(kind, _)| kind) {
            Some("DestinationRule") if doc.desired.is_none() => {
                "deleted: stickyctl created it and nothing of yours is in it"
            }
            Some("DestinationRule") => "kept: its managed subsets are out, yours stay",
            Some("VirtualService") => "kept: its managed routes are out, yours stay",
            _ => continue,
        };
        writeln!(out, "{}: {what}", doc.label).ok();
    }
    out
}

/// How QA uses a created override token, kept where `read` says.
pub fn qa_token(canary: &StickyCanary, read: &str) -> String {
    format!(
        "QA override: send `{}: <version>:<token>`; the token: {read}\n",
        canary.spec.filter.override_.header
    )
}

/// `--dry-run`: the unified diff from `current` (absent for `init`) to `next`, and between
/// the live objects and what `next` renders to (`plan`).
pub fn diff(current: Option<&StickyCanary>, next: &StickyCanary, plan: Plan) -> String {
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
    docs_diff(&docs)
}

/// `delete --dry-run`: the rollout going away, and the `writes` that take it out of the
/// user's objects.
pub fn teardown_diff(canary: &StickyCanary, writes: Vec<Doc>) -> String {
    let mut docs = vec![(
        format!("StickyCanary {}", canary.name_any()),
        Some(rollout_for_display(canary)),
        None,
    )];
    docs.extend(
        writes
            .into_iter()
            .map(|doc| (doc.label, doc.current, doc.desired)),
    );
    docs_diff(&docs)
}

/// A unified diff per object that changes, `(label, before, after)`, `None` meaning absent;
/// or "nothing to change".
fn docs_diff(docs: &[(String, Option<Value>, Option<Value>)]) -> String {
    let text = |object: &Option<Value>| {
        object
            .as_ref()
            .map(|o| yaml(&for_display(o)))
            .unwrap_or_default()
    };
    let mut out = String::new();
    for (label, current, desired) in docs {
        let (before, after) = (text(current), text(desired));
        if before != after {
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
    if out.is_empty() {
        writeln!(out, "nothing to change").ok();
    }
    out
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

/// `render`: every object the rollout renders to, as YAML documents.
pub fn render(objects: &[Doc]) -> String {
    let mut out = String::new();
    for doc in objects {
        writeln!(out, "---\n# {}", doc.label).ok();
        if let Some(desired) = &doc.desired {
            out.push_str(&yaml(&for_display(desired)));
        }
    }
    out
}

/// `bootstrap`: the bootstrap of the Envoy reading the files of `dir` (absolute).
pub fn bootstrap(dir: &Path, admin_port: u16) -> String {
    let bootstrap = render::envoy::render_bootstrap(dir, admin_port);
    // Plain data; serializing it cannot fail.
    let text = serde_json::to_string_pretty(&bootstrap).expect("the bootstrap serializes");
    format!("{text}\n")
}

/// `watch`: the line of one look at `now`.
pub fn watch_line(line: &str, now: Timestamp) -> String {
    format!("{} {line}\n", now.strftime("%H:%M:%S"))
}

/// `status --watch` on a terminal, while the rollout stands as it is: for how long.
pub fn watch_unchanged(since: Timestamp, now: Timestamp) -> String {
    let seconds = now.duration_since(since).as_secs();
    format!(
        "         unchanged since {} ({seconds}s); looking every second, Ctrl-C to stop",
        since.strftime("%H:%M:%S")
    )
}

/// `status`: the rollout, its live `objects` and whether each is in sync, as a table or as
/// JSON for scripts (`-o json`; its fields are an interface).
pub fn status(canary: &StickyCanary, objects: &[Doc], now: Timestamp, output: Output) -> String {
    let spec = &canary.spec;
    let action = status::last_action(canary);
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
    let object_states: Vec<Value> = objects
        .iter()
        .map(|d| json!({"object": d.label, "inSync": d.in_sync()}))
        .collect();
    let in_sync = objects.iter().all(Doc::in_sync);
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
        "objects": object_states,
        "inSync": in_sync,
        "lastAction": action,
        "lastApplied": canary.status.as_ref().and_then(|s| s.last_applied.clone()),
        "override": exposure::access(&spec.filter.override_),
        "warnings": warnings,
        "webhookRefused": webhook_refused,
    });
    let mut out = String::new();
    if output == Output::Json {
        writeln!(out, "{report:#}").ok();
        return out;
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
    writeln!(out, "auto     {}", describe::progression(spec, &state, now)).ok();
    writeln!(out, "override {}", exposure::override_line(spec)).ok();
    for warning in &warnings {
        writeln!(out, "warning  {warning}").ok();
    }
    if let Some(verdict) = state.step.as_ref().and_then(|s| s.verdict.as_ref()) {
        writeln!(out, "verdict  {:?}: {}", verdict.outcome, verdict.reason).ok();
        if let Some(score) = verdict.score {
            writeln!(
                out,
                "score    {score:.0} (of 100: the share of judged comparisons that pass)"
            )
            .ok();
        }
        for metric in &verdict.metrics {
            writeln!(
                out,
                "metric   {} {:?}: {}",
                metric.name, metric.outcome, metric.reason
            )
            .ok();
        }
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
    let width = objects
        .iter()
        .map(|d| d.label.len())
        .max()
        .unwrap_or(0)
        .max(6);
    writeln!(out, "\n{:<width$} STATE", "OBJECT").ok();
    for doc in objects {
        let state = if doc.in_sync() { "in sync" } else { "drifted" };
        writeln!(out, "{:<width$} {state}", doc.label).ok();
    }
    out
}

/// A synthetic request for `explain`.
struct SyntheticRequest(BTreeMap<String, Vec<u8>>);

impl RequestHeaders for SyntheticRequest {
    fn header(&self, name: &str) -> Option<Vec<u8>> {
        self.0.get(name).cloned()
    }
}

/// `explain`: which version the request `args` describes gets from the filter running
/// `config` for `canary`, and why, decided by the filter's own code.
pub fn explain(canary: &StickyCanary, config: &Config, args: &ExplainArgs) -> String {
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
    let decision = decide(config, &SyntheticRequest(headers), || "(new id)".to_owned());
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
        (Reason::Repin, Some(bucket), _) => format!(
            "a page load re-hashed the pinned client: its key is in bucket {bucket} of 10000, \
             {version}'s range, so it moves there"
        ),
        (Reason::Repin, None, _) => "a page load re-hashed the pinned client: it moves".to_owned(),
        (Reason::Preflight, ..) => {
            "a CORS preflight carries no cookies: it goes to the first live version".to_owned()
        }
    };
    let mut out = String::new();
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
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use api::StickyCanarySpec;
    use runtime::reconcile::Advanced;
    use sticky_canary_filter::VersionWeight;

    /// Rollout `shop` of `prod` with v2 at 10% of clients.
    fn canary() -> StickyCanary {
        let mut spec = StickyCanarySpec::new("shop.prod.svc.cluster.local", "v1");
        spec.versions = vec![
            VersionWeight::new("v1", 90.0),
            VersionWeight::new("v2", 10.0),
        ];
        let mut canary = StickyCanary::new("shop", spec);
        canary.metadata.namespace = Some("prod".to_owned());
        canary
    }

    fn doc(label: &str, in_sync: bool) -> Doc {
        let desired = json!({"kind": "VirtualService", "weight": 10});
        let current = if in_sync {
            desired.clone()
        } else {
            json!({"kind": "VirtualService", "weight": 0})
        };
        Doc {
            label: label.to_owned(),
            current: Some(current),
            desired: Some(desired.clone()),
            owned: desired,
        }
    }

    #[test]
    fn status_json_has_the_fields_scripts_read() {
        let objects = [
            doc("VirtualService prod/shop", true),
            doc("DestinationRule prod/shop", false),
        ];
        let text = status(&canary(), &objects, Timestamp::UNIX_EPOCH, Output::Json);
        let report: Value = serde_json::from_str(&text).expect("JSON");
        let mut fields: Vec<&str> = report
            .as_object()
            .expect("an object")
            .keys()
            .map(String::as_str)
            .collect();
        fields.sort_unstable();
        assert_eq!(
            fields,
            [
                "auto",
                "inSync",
                "lastAction",
                "lastApplied",
                "message",
                "name",
                "namespace",
                "objects",
                "override",
                "paused",
                "phase",
                "service",
                "step",
                "stepIndex",
                "steps",
                "verdicts",
                "versions",
                "warnings",
                "webhookRefused"
            ]
        );
        assert_eq!(report["name"], "shop");
        assert_eq!(report["namespace"], "prod");
        assert_eq!(report["service"], "shop.prod.svc.cluster.local");
        assert_eq!(
            report["versions"],
            json!([
                {"name": "v1", "weight": 90.0, "drain": false, "role": "stable"},
                {"name": "v2", "weight": 10.0, "drain": false, "role": "canary"},
            ])
        );
        assert_eq!(
            report["objects"],
            json!([
                {"object": "VirtualService prod/shop", "inSync": true},
                {"object": "DestinationRule prod/shop", "inSync": false},
            ])
        );
        assert_eq!(report["inSync"], false);
        assert_eq!(report["webhookRefused"], Value::Null);
        assert!(text.ends_with("}\n"), "{text}");
    }

    #[test]
    fn status_table_says_versions_objects_and_a_refused_webhook() {
        let mut canary = canary();
        canary.spec.auto.webhook = Some("http://hooks.example/x".to_owned());
        let objects = [
            doc("VirtualService prod/shop", true),
            doc("DestinationRule prod/shop", false),
        ];
        let text = status(&canary, &objects, Timestamp::UNIX_EPOCH, Output::Table);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[..2],
            ["rollout  shop", "service  shop.prod.svc.cluster.local"]
        );
        assert!(lines[2].starts_with("phase    "), "{text}");
        assert!(lines[3].starts_with("step     "), "{text}");
        assert!(
            text.contains("webhook  refused, notices are not sent: spec.auto.webhook: plain http"),
            "{text}"
        );
        let table = text.split("\n\n").skip(1).collect::<Vec<_>>().join("\n\n");
        assert_eq!(
            table,
            "VERSION                  ROLE       WEIGHT\n\
             v1                       stable         90\n\
             v2                       canary         10\n\
             \n\
             OBJECT                    STATE\n\
             VirtualService prod/shop  in sync\n\
             DestinationRule prod/shop drifted\n"
        );
    }

    #[test]
    fn a_change_reports_its_warning_first_then_its_lines() {
        let mut rollout = canary();
        rollout.spec.versions[1].drain = true;
        let done = Advanced {
            actions: vec![("abort".to_owned(), 2)],
            notices: vec!["aborted".to_owned()],
            written: 2,
        };
        let report = acted(&Acted {
            done,
            rollout,
            warning: Some("the webhook did not take every notice within 15s".to_owned()),
        });
        let lines: Vec<&str> = report.lines().collect();
        assert_eq!(
            lines[..2],
            [
                "warning: the webhook did not take every notice within 15s",
                "abort: applied (2 objects written)"
            ]
        );
        assert!(
            lines[2].starts_with("v2 drains: its clients keep it"),
            "{report}"
        );
        assert_eq!(lines.len(), 3, "{report}");
    }
}
