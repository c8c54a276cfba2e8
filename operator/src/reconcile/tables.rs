//! What every environment needs whatever its resources: the tables (created if missing, adopted
//! if present with the expected keys and indexes, TTL switched on where the replies engine needs
//! it, never modified otherwise), the human hand-off queue and the client-events queue with its
//! DLQ. Never deleted.
use super::{ChangeKind, Context, Failure, Outcome, Reason, Reconciling, Report};
use crate::aws::AwsError;
use crate::desired::tables::{tables, Key, KeyType, TableSpec};

pub const TABLES_SYNCED: &str = "TablesSynced";
pub const HANDOFF_QUEUE_SYNCED: &str = "HandOffQueueSynced";
pub const CLIENT_EVENTS_QUEUE_SYNCED: &str = "ClientEventsQueueSynced";

pub async fn reconcile(ctx: &Context) -> Report {
    let mut r = Reconciling::environment(ctx);
    // Every table is looked at even when one fails, so one report names all problems.
    let mut problems = Vec::new();
    for spec in tables(&ctx.naming) {
        if let Err(failure) = sync_table(&mut r, &spec).await {
            problems.push(failure);
        }
    }
    let outcome: Outcome = match problems.first() {
        None => Ok("tables present with the expected keys".into()),
        Some(first) => {
            let messages: Vec<&str> = problems.iter().map(|p| p.message.as_str()).collect();
            Err(Failure::new(first.reason, messages.join("; ")))
        }
    };
    let handoff = sync_handoff_queue(&mut r).await;
    let events = sync_client_events_queues(&mut r).await;
    r.finish(vec![(TABLES_SYNCED, outcome), (HANDOFF_QUEUE_SYNCED, handoff), (CLIENT_EVENTS_QUEUE_SYNCED, events)])
}

/// The queue companies' events wait on for delivery, and its DLQ.
async fn sync_client_events_queues(r: &mut Reconciling<'_>) -> Outcome {
    let pair = crate::desired::channel::client_events_queues(&r.ctx.naming);
    super::channel::sync_pair(r, &pair).await?;
    Ok("client-events queue and dead-letter queue in sync".into())
}

/// The hand-off queue belongs to the environment: marked as such, and adopted when an earlier
/// deployment (the original's SAM stack) made it.
async fn sync_handoff_queue(r: &mut Reconciling<'_>) -> Outcome {
    let spec = crate::desired::channel::handoff_queue(&r.ctx.naming);
    super::channel::sync_queue(r, &spec).await?;
    Ok("hand-off queue in sync".into())
}

async fn sync_table(r: &mut Reconciling<'_>, spec: &TableSpec) -> Result<(), Failure> {
    let ctx = r.ctx;
    let ddb = &ctx.aws.dynamodb;
    let object = format!("table {}", spec.name);
    let keys = describe_keys(&spec.partition, spec.sort.as_ref());
    let Some(observed) = ddb.describe_table(&spec.name).await? else {
        let mut fields = vec![format!("keys {keys}")];
        fields.extend(spec.global_indexes.iter().chain(&spec.local_indexes).map(|i| format!("index {}", i.name)));
        fields.extend(spec.ttl_attribute.map(|a| format!("ttl {a}")));
        r.write(ChangeKind::Create, object, fields, |w| async move {
            ddb.create_table(w, spec).await?;
            if let Some(attribute) = spec.ttl_attribute {
                ddb.enable_ttl(w, &spec.name, attribute).await?;
            }
            Ok::<_, AwsError>(())
        })
        .await?;
        r.outputs().tables.push(spec.name.clone());
        return Ok(());
    };

    let incompatible =
        |why: String| Err(Failure::new(Reason::Incompatible, format!("{object} {why}; it is left untouched")));
    let wanted = (spec.partition.name.to_string(), Some(spec.partition.kind));
    let wanted_sort = spec.sort.as_ref().map(|k| (k.name.to_string(), Some(k.kind)));
    if observed.partition != wanted || observed.sort != wanted_sort {
        return incompatible(format!("exists with other keys than {keys}"));
    }
    let missing: Vec<&str> = spec
        .global_indexes
        .iter()
        .chain(&spec.local_indexes)
        .map(|i| i.name)
        .filter(|name| !observed.indexes.iter().any(|have| have == name))
        .collect();
    if !missing.is_empty() {
        return incompatible(format!("lacks the indexes {}", missing.join(", ")));
    }
    if let Some(attribute) = spec.ttl_attribute {
        match ddb.ttl_attribute(&spec.name).await? {
            Some(enabled) if enabled == attribute => {}
            Some(other) => return incompatible(format!("expires items by {other:?}, not {attribute:?}")),
            None => {
                let enable = |w| ddb.enable_ttl(w, &spec.name, attribute);
                r.write(ChangeKind::Update, object, vec![format!("ttl {attribute}")], enable).await?;
            }
        }
    }
    r.outputs().tables.push(spec.name.clone());
    Ok(())
}

fn describe_keys(partition: &Key, sort: Option<&Key>) -> String {
    let one = |k: &Key| format!("{} ({})", k.name, if k.kind == KeyType::Number { "N" } else { "S" });
    match sort {
        Some(sort) => format!("{} / {}", one(partition), one(sort)),
        None => one(partition),
    }
}
