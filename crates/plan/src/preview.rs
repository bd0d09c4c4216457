//! What a person reads: the preview of every change of every entry before anything is
//! written, the progress while applying, and where each entry stands (`plan status`, also
//! as JSON for scripts).

use std::fmt;
use std::time::Duration;

use serde::Serialize;

use super::file::{Entry, Kind};
use super::singleton::{self, Side, Standing, Step};
use super::workload::Workload;
use super::Write;

/// The heading of an entry: `entry 2 (server-web) INGRESS_NGINX in prod`.
pub fn heading(entry: &Entry, namespace: &str) -> String {
    format!("{} {} in {namespace}", entry.what(), entry.kind.as_str())
}

/// One line per changed field: `    Ingress prod/web-canary: replicas 0 -> 1`.
pub fn writes(writes: &[Write], out: &mut impl fmt::Write) {
    for write in writes {
        for change in &write.changes {
            writeln!(
                out,
                "    {}: {} {} -> {}",
                write.object.label(),
                change.field,
                change.from,
                change.to
            )
            .ok();
        }
    }
}

/// The moves of a singleton's handover, one per line.
pub fn handover(steps: &[Step], stable: &Workload, canary: &Workload, out: &mut impl fmt::Write) {
    let pick = |side| if side == Side::Stable { stable } else { canary };
    for step in steps {
        let line = match *step {
            Step::ScaleDown(side) => format!(
                "{}: replicas {} -> 0",
                pick(side).label(),
                pick(side).replicas
            ),
            Step::AwaitGone(side) => format!("wait until {}'s pods are gone", pick(side).label()),
            Step::ScaleUp(side) => format!(
                "{}: replicas {} -> 1",
                pick(side).label(),
                pick(side).replicas
            ),
            Step::Done => continue,
        };
        writeln!(out, "    {line}").ok();
    }
}

/// A handover's wait as it stands, for the progress line: what it waits for, how long it
/// has, and until when (`deadline`, a clock time) it waits at most.
pub fn waiting(
    entry: &Entry,
    old: &Workload,
    waited: Duration,
    timeout: Duration,
    deadline: &str,
) -> String {
    format!(
        "{}: waiting for {}'s pods to be gone ({} left, {} counted by its controller): {}s of at most {}s, until {deadline}",
        entry.what(),
        old.label(),
        old.pods,
        old.status_replicas,
        waited.as_secs(),
        timeout.as_secs()
    )
}

/// `1-2, 4`: entry numbers as ranges.
pub fn ranges(indices: &[usize]) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut i = 0;
    while i < indices.len() {
        let start = indices[i];
        let mut end = start;
        while i + 1 < indices.len() && indices[i + 1] == end + 1 {
            i += 1;
            end = indices[i];
        }
        parts.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
        i += 1;
    }
    parts.join(", ")
}

/// `entries 1-2 (server, server-web)`, `entry 3 (map)`, `no entry`.
pub fn entries(list: &[&Entry]) -> String {
    let indices: Vec<usize> = list.iter().map(|e| e.index).collect();
    let projects: Vec<&str> = list.iter().map(|e| e.project.as_str()).collect();
    match list.len() {
        0 => "no entry".to_owned(),
        1 => format!("entry {} ({})", ranges(&indices), projects[0]),
        _ => format!("entries {} ({})", ranges(&indices), projects.join(", ")),
    }
}

/// Where one entry stands, against the plan file.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EntryStatus {
    /// Position in the file, from 1.
    pub entry: usize,
    /// The project.
    pub project: String,
    /// The entry's type.
    #[serde(rename = "type")]
    pub kind: Kind,
    /// Where its objects are.
    pub namespace: String,
    /// Its objects, `Kind namespace/name`.
    pub objects: Vec<String>,
    /// The weight in the file.
    pub weight: f64,
    /// The weight now, in the file's terms (`null` when it has none: a missing object, a
    /// singleton running neither or both, the routes of a VirtualService or HTTPRoute that
    /// disagree).
    pub current: Option<f64>,
    /// The canary's share now, in percent (for `DEPLOYMENT_REPLICAS` its part of all
    /// replicas; `null` when there is none to give).
    pub share: Option<f64>,
    /// Whether applying the file would write nothing for this entry.
    pub in_sync: bool,
    /// What stands, in words.
    pub detail: String,
    /// Why the entry cannot be applied as things are, if it cannot.
    pub problem: Option<String>,
    /// `DEPLOYMENT_SINGLETON`: which runs and each Deployment's counts (`null` for the other
    /// types, and when a Deployment is missing).
    pub singleton: Option<SingletonStatus>,
}

/// What a singleton's two Deployments run, for scripts.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SingletonStatus {
    /// `stable` or `canary` (that one alone), `handingOver` (neither runs yet: both at 0,
    /// the old one's pods still going), `neither`, or `both`.
    pub runs: &'static str,
    /// While handing over, the side whose pods are still going.
    pub terminating: Option<&'static str>,
    /// The stable Deployment's counts.
    pub stable: Pods,
    /// The canary Deployment's counts.
    pub canary: Pods,
}

/// One Deployment's counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Pods {
    /// `spec.replicas`.
    pub replicas: i32,
    /// `status.replicas`: the pods its controller counts.
    pub counted: i32,
    /// Pods its selector matches, terminating ones too.
    pub pods: usize,
}

impl SingletonStatus {
    /// Where the singleton of `stable` and `canary` stands.
    pub fn of(stable: &Workload, canary: &Workload) -> Self {
        let (runs, terminating) = match singleton::standing(stable, canary) {
            Standing::Alone(side) => (side.as_str(), None),
            Standing::HandingOver(side) => ("handingOver", Some(side.as_str())),
            Standing::Neither => ("neither", None),
            Standing::Both => ("both", None),
        };
        let pods = |w: &Workload| Pods {
            replicas: w.replicas,
            counted: w.status_replicas,
            pods: w.pods,
        };
        SingletonStatus {
            runs,
            terminating,
            stable: pods(stable),
            canary: pods(canary),
        }
    }
}

fn number(value: Option<f64>) -> String {
    match value {
        Some(v) if v.fract() == 0.0 => format!("{v}"),
        Some(v) => format!("{v:.2}"),
        None => "-".to_owned(),
    }
}

/// The status table, and which entries differ from the file.
pub fn status_table(entries: &[EntryStatus], out: &mut impl fmt::Write) {
    let project_width = entries
        .iter()
        .map(|e| e.project.len())
        .max()
        .unwrap_or(0)
        .max(7);
    writeln!(
        out,
        "{:<5} {:<project_width$} {:<20} {:>6} {:>6} {:>7}  {:<8} DETAIL",
        "ENTRY", "PROJECT", "TYPE", "FILE", "NOW", "SHARE", "STATE"
    )
    .ok();
    for e in entries {
        let share = e
            .share
            .map(|s| format!("{}%", number(Some(s))))
            .unwrap_or_else(|| "-".into());
        let state = if e.in_sync { "in sync" } else { "differs" };
        let detail = match &e.problem {
            Some(problem) => format!("{}; {problem}", e.detail),
            None => e.detail.clone(),
        };
        writeln!(
            out,
            "{:<5} {:<project_width$} {:<20} {:>6} {:>6} {:>7}  {:<8} {detail}",
            e.entry,
            e.project,
            e.kind.as_str(),
            number(Some(e.weight)),
            number(e.current),
            share,
            state
        )
        .ok();
    }
    let differ: Vec<usize> = entries
        .iter()
        .filter(|e| !e.in_sync)
        .map(|e| e.entry)
        .collect();
    match differ.len() {
        0 => writeln!(out, "\nevery entry is as the file says").ok(),
        1 => writeln!(out, "\nentry {} differs from the file", ranges(&differ)).ok(),
        _ => writeln!(out, "\nentries {} differ from the file", ranges(&differ)).ok(),
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_numbers_read_as_ranges() {
        let cases: &[(&[usize], &str)] = &[
            (&[], ""),
            (&[3], "3"),
            (&[1, 2], "1-2"),
            (&[1, 2, 3, 5], "1-3, 5"),
            (&[2, 4, 6], "2, 4, 6"),
            (&[3, 4, 5], "3-5"),
        ];
        for (indices, expected) in cases {
            assert_eq!(ranges(indices), *expected, "{indices:?}");
        }
    }

    #[test]
    fn the_status_table_says_which_entries_differ() {
        let entry = |n: usize, in_sync: bool| EntryStatus {
            entry: n,
            project: format!("p{n}"),
            kind: Kind::DeploymentReplicas,
            namespace: "prod".into(),
            objects: vec![],
            weight: 1.0,
            current: Some(1.0),
            share: Some(20.0),
            in_sync,
            detail: "1 canary beside 4 stable replicas".into(),
            problem: None,
            singleton: None,
        };
        let mut out = String::new();
        status_table(
            &[
                entry(1, true),
                entry(2, true),
                entry(3, false),
                entry(4, false),
            ],
            &mut out,
        );
        assert!(
            out.ends_with("\nentries 3-4 differ from the file\n"),
            "{out}"
        );
        assert!(out.contains("20%"), "{out}");
        let mut out = String::new();
        status_table(&[entry(1, true)], &mut out);
        assert!(
            out.ends_with("\nevery entry is as the file says\n"),
            "{out}"
        );
    }
}
