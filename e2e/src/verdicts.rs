//! Reading a judged step of `stickyctl status -o json` (`status.verdicts[]`, `status.step`).

use serde_json::Value;

/// The names of the checks a judged step's verdict failed.
pub fn failed_checks(judged: &Value) -> Vec<&str> {
    checks(judged)
        .filter(|c| c["outcome"] == "Fail")
        .filter_map(|c| c["name"].as_str())
        .collect()
}

/// The check `name` of a judged step's verdict.
pub fn check<'a>(judged: &'a Value, name: &str) -> &'a Value {
    checks(judged)
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no {name} check: {judged:#}"))
}

fn checks(judged: &Value) -> impl Iterator<Item = &Value> {
    judged["verdict"]["checks"].as_array().into_iter().flatten()
}
