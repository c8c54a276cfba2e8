//! What `apply` and `plan` print: a result table per resource, and the changes.
use crate::crd::Condition;
use crate::reconcile::conditions::conditions;
use crate::reconcile::{ChangeKind, Mode, Outputs, Report};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde::Serialize;
use std::fmt::Write;

/// One line per resource: READY / REASON / CHANGES / MESSAGE, like `kubectl get`.
pub fn result_table(reports: &[Report], mode: Mode) -> String {
    let changes_header = if mode == Mode::Plan { "PLANNED" } else { "CHANGES" };
    let rows: Vec<[String; 5]> = reports
        .iter()
        .map(|r| {
            let ready = ready_condition(r);
            let resource = resource(r);
            [resource, ready.status, ready.reason, r.changes.len().to_string(), ready.message]
        })
        .collect();
    let header = ["RESOURCE".to_string(), "READY".into(), "REASON".into(), changes_header.into(), "MESSAGE".into()];
    let widths: Vec<usize> =
        (0..4).map(|i| rows.iter().map(|r| r[i].len()).chain([header[i].len()]).max().unwrap_or(0)).collect();
    let mut out = String::new();
    for row in std::iter::once(&header).chain(&rows) {
        let line = format!(
            "{:w0$}  {:w1$}  {:w2$}  {:>w3$}  {}",
            row[0],
            row[1],
            row[2],
            row[3],
            row[4],
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2],
            w3 = widths[3]
        );
        let _ = writeln!(out, "{}", line.trim_end());
    }
    out
}

/// Every change, grouped by resource, and a one-line summary.
pub fn changes(reports: &[Report], mode: Mode) -> String {
    let mut out = String::new();
    let (mut create, mut update, mut restore, mut delete) = (0, 0, 0, 0);
    for r in reports.iter().filter(|r| !r.changes.is_empty()) {
        let _ = writeln!(out, "{}:", resource(r));
        for change in &r.changes {
            match change.kind {
                ChangeKind::Create => create += 1,
                ChangeKind::Update => update += 1,
                ChangeKind::Restore => restore += 1,
                ChangeKind::Delete => delete += 1,
            }
            let _ = writeln!(out, "  {change}");
        }
    }
    let failed = reports.iter().filter(|r| !r.is_ready()).count();
    let counts = match mode {
        Mode::Plan => format!("Plan: {create} to create, {update} to update, {restore} to restore"),
        Mode::Apply => format!("Applied: {create} created, {update} updated, {restore} restored"),
    };
    let counts = match delete {
        0 => counts,
        n => format!("{counts}, {n} deleted"),
    };
    let _ = writeln!(out, "{counts}; {failed} of {} resources not ready.", reports.len());
    out
}

/// The `Ready` condition, as `status` would carry it.
fn ready_condition(r: &Report) -> Condition {
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    conditions(r, &[], &now).swap_remove(0)
}

fn resource(r: &Report) -> String {
    if r.namespace.is_empty() {
        format!("{} {}", r.kind, r.name)
    } else {
        format!("{} {}/{}", r.kind, r.namespace, r.name)
    }
}

/// One resource's result for machines (`--output json`): the conditions as the controller
/// writes them to `status`, the changes, and where things are (URLs, ARNs, versions).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct JsonReport<'a> {
    kind: &'a str,
    namespace: &'a str,
    name: &'a str,
    ready: bool,
    conditions: Vec<Condition>,
    changes: Vec<String>,
    outputs: &'a Outputs,
}

pub fn json(reports: &[Report]) -> Result<String, serde_json::Error> {
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let out: Vec<JsonReport> = reports
        .iter()
        .map(|r| JsonReport {
            kind: r.kind,
            namespace: &r.namespace,
            name: &r.name,
            ready: r.is_ready(),
            conditions: conditions(r, &[], &now),
            changes: r.changes.iter().map(ToString::to_string).collect(),
            outputs: &r.outputs,
        })
        .collect();
    serde_json::to_string_pretty(&out)
}
