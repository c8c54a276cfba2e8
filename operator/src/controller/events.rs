//! Events: one Normal Event per kind of change and a Warning for the deciding failure.
use crate::reconcile::{ChangeKind, Report};
use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::Resource;

/// Publishes the controller's Events. A Warning comes back on every retry of a failing resource,
/// so kube's recorder folds its repeats into one Event with a count, keeping each one it published
/// for six minutes to do so. A Normal Event says a change once: it skips that memory, which a cold
/// start of 10,000 Companies would otherwise fill with 10,000 Events (about 1.9 KB each), and a
/// second change of the same kind keeps its own note instead of being folded into the first.
pub struct Events {
    client: kube::Client,
    reporter: Reporter,
    warnings: Recorder,
}

impl Events {
    pub fn new(client: kube::Client, reporter: Reporter) -> Self {
        Events { warnings: Recorder::new(client.clone(), reporter.clone()), client, reporter }
    }

    pub async fn publish(&self, event: &Event, regarding: &ObjectReference) {
        let published = match event.type_ {
            EventType::Warning => self.warnings.publish(event, regarding).await,
            EventType::Normal => {
                Recorder::new(self.client.clone(), self.reporter.clone()).publish(event, regarding).await
            }
        };
        if let Err(error) = published {
            tracing::warn!(%error, reason = event.reason, "could not publish an Event");
        }
    }
}

/// One Normal Event per kind of change (Created, Updated, …) listing its objects, and a Warning
/// for the deciding failure, so `kubectl describe` shows a reconcile in a few lines. Notes name
/// objects and fields, never values.
pub async fn publish<K>(events: &Events, resource: &K, report: &Report)
where
    K: Resource<DynamicType = ()>,
{
    publish_about(events, &resource.object_ref(&()), report).await
}

/// [`publish`] about the object `reference` names.
pub async fn publish_about(events: &Events, reference: &ObjectReference, report: &Report) {
    let mut published = Vec::new();
    for (kind, reason) in [
        (ChangeKind::Create, "Created"),
        (ChangeKind::Update, "Updated"),
        (ChangeKind::Restore, "Restored"),
        (ChangeKind::Delete, "Deleted"),
    ] {
        let changes: Vec<String> = report.changes.iter().filter(|c| c.kind == kind).map(ToString::to_string).collect();
        if !changes.is_empty() {
            published.push(event(EventType::Normal, reason, changes.join("; ")));
        }
    }
    if let Some((subsystem, failure)) = report.failed_subsystem() {
        published.push(event(EventType::Warning, failure.reason.as_str(), format!("{subsystem}: {}", failure.message)));
    }
    for event in published {
        events.publish(&event, reference).await;
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
