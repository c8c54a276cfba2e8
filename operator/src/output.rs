//! What `apply` and `plan` print: a result table per resource, and the changes.
use crate::reconcile::{conditions::SYNCED, Action, Mode, Report};
use std::fmt::Write;

/// One line per resource: READY / REASON / CHANGES / MESSAGE, like `kubectl get`.
pub fn result_table(reports: &[Report], mode: Mode) -> String {
    let changes_header = if mode == Mode::Plan { "PLANNED" } else { "CHANGES" };
    let rows: Vec<[String; 5]> = reports
        .iter()
        .map(|r| {
            let resource = resource(r);
            let (ready, reason, message) = match r.failure() {
                None => ("True", SYNCED.to_string(), String::new()),
                Some(f) => ("False", f.reason.as_str().to_string(), f.message.clone()),
            };
            [resource, ready.into(), reason, r.changes.len().to_string(), message]
        })
        .collect();
    let header = [
        "RESOURCE".to_string(),
        "READY".into(),
        "REASON".into(),
        changes_header.into(),
        "MESSAGE".into(),
    ];
    let widths: Vec<usize> = (0..4)
        .map(|i| {
            rows.iter()
                .map(|r| r[i].len())
                .chain([header[i].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
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
    let (mut create, mut update, mut restore) = (0, 0, 0);
    for r in reports.iter().filter(|r| !r.changes.is_empty()) {
        let _ = writeln!(out, "{}:", resource(r));
        for change in &r.changes {
            match change.action {
                Action::Create => create += 1,
                Action::Update => update += 1,
                Action::Restore => restore += 1,
            }
            let _ = writeln!(out, "  {change}");
        }
    }
    let failed = reports.iter().filter(|r| !r.is_ready()).count();
    let counts = match mode {
        Mode::Plan => format!("Plan: {create} to create, {update} to update, {restore} to restore"),
        Mode::Apply => format!("Applied: {create} created, {update} updated, {restore} restored"),
    };
    let _ = writeln!(out, "{counts}; {failed} of {} resources not ready.", reports.len());
    out
}

fn resource(r: &Report) -> String {
    if r.namespace.is_empty() {
        format!("{} {}", r.kind, r.name)
    } else {
        format!("{} {}/{}", r.kind, r.namespace, r.name)
    }
}
