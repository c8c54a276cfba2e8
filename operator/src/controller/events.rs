//! Events: one Normal Event per kind of change and a Warning for the deciding failure.
use crate::reconcile::{ChangeKind, Report};
use kube::runtime::events::{Event, EventType, Recorder};
use kube::Resource;

/// One Normal Event per kind of change (Created, Updated, …) listing its objects, and a Warning
/// for the deciding failure. (The recorder folds repeats of an Event into a series keyed by
/// reason, not note, so per-object Events would hide all but the first object.) Notes name
/// objects and fields, never values.
pub async fn publish<K>(recorder: &Recorder, resource: &K, report: &Report)
where
    K: Resource<DynamicType = ()>,
{
    let reference = resource.object_ref(&());
    let mut events = Vec::new();
    for (kind, reason) in [
        (ChangeKind::Create, "Created"),
        (ChangeKind::Update, "Updated"),
        (ChangeKind::Restore, "Restored"),
        (ChangeKind::Delete, "Deleted"),
    ] {
        let changes: Vec<String> = report.changes.iter().filter(|c| c.kind == kind).map(ToString::to_string).collect();
        if !changes.is_empty() {
            events.push(event(EventType::Normal, reason, changes.join("; ")));
        }
    }
    if let Some((subsystem, failure)) = report.failed_subsystem() {
        events.push(event(EventType::Warning, failure.reason.as_str(), format!("{subsystem}: {}", failure.message)));
    }
    for event in events {
        if let Err(error) = recorder.publish(&event, &reference).await {
            tracing::warn!(%error, reason = event.reason, "could not publish an Event");
        }
    }
}

pub fn event(type_: EventType, reason: &str, note: String) -> Event {
    Event { type_, reason: reason.into(), note: Some(truncate(note)), action: "Reconcile".into(), secondary: None }
}

/// Event notes are limited to 1 kB.
fn truncate(mut note: String) -> String {
    if note.len() > 1000 {
        let mut end = 1000;
        while !note.is_char_boundary(end) {
            end -= 1;
        }
        note.truncate(end);
        note.push('…');
    }
    note
}
