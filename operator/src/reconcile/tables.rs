//! The environment's tables: created if missing, adopted if present with the expected keys,
//! TTL switched on where the replies engine needs it. Never modified otherwise, never deleted.
use super::{Action, Context, Failure, Mode, Outcome, Reason, Report};
use crate::desired::tables::{tables, Key, KeyType, TableSpec};

pub const TABLES_SYNCED: &str = "TablesSynced";

pub async fn reconcile(ctx: &Context) -> Report {
    let mut report = Report::new(
        "Tables",
        "",
        &format!("{}-*-{}", ctx.naming.prefix, ctx.naming.env),
        None,
    );
    let mut outcome: Outcome = Ok("tables present with the expected keys".into());
    for spec in tables(&ctx.naming) {
        if let Err(failure) = sync_table(ctx, &spec, &mut report).await {
            outcome = Err(failure);
            break;
        }
    }
    report.subsystems.push((TABLES_SYNCED, outcome));
    report
}

async fn sync_table(ctx: &Context, spec: &TableSpec, report: &mut Report) -> Result<(), Failure> {
    let ddb = &ctx.aws.dynamodb;
    let object = format!("table {}", spec.name);
    match ddb.describe_table(&spec.name).await? {
        None => {
            let mut fields = vec![format!("keys {}", describe_keys(&spec.partition, spec.sort.as_ref()))];
            fields.extend(
                spec.global_indexes
                    .iter()
                    .chain(&spec.local_indexes)
                    .map(|i| format!("index {}", i.name)),
            );
            fields.extend(spec.ttl_attribute.map(|a| format!("ttl {a}")));
            report.change(Action::Create, object, fields);
            if ctx.mode == Mode::Apply {
                ddb.create_table(spec).await?;
                if let Some(attribute) = spec.ttl_attribute {
                    ddb.enable_ttl(&spec.name, attribute).await?;
                }
            }
        }
        Some(observed) => {
            let wanted = (spec.partition.name.to_string(), Some(spec.partition.kind));
            let wanted_sort = spec.sort.as_ref().map(|k| (k.name.to_string(), Some(k.kind)));
            if observed.partition != wanted || observed.sort != wanted_sort {
                return Err(Failure::new(
                    Reason::OwnershipConflict,
                    format!(
                        "{object} exists with other keys than {}; it is left untouched",
                        describe_keys(&spec.partition, spec.sort.as_ref())
                    ),
                ));
            }
            let missing: Vec<&str> = spec
                .global_indexes
                .iter()
                .map(|i| i.name)
                .filter(|name| !observed.global_indexes.iter().any(|g| g == name))
                .collect();
            if !missing.is_empty() {
                return Err(Failure::new(
                    Reason::OwnershipConflict,
                    format!(
                        "{object} lacks global indexes {}; add them or recreate the table",
                        missing.join(", ")
                    ),
                ));
            }
            if let Some(attribute) = spec.ttl_attribute {
                if !ddb.ttl_enabled(&spec.name).await? {
                    report.change(Action::Update, object, vec![format!("ttl {attribute}")]);
                    if ctx.mode == Mode::Apply {
                        ddb.enable_ttl(&spec.name, attribute).await?;
                    }
                }
            }
        }
    }
    report.output(format!("table {}", spec.name), "present");
    Ok(())
}

fn describe_keys(partition: &Key, sort: Option<&Key>) -> String {
    let one = |k: &Key| format!("{} ({})", k.name, if k.kind == KeyType::Number { "N" } else { "S" });
    match sort {
        Some(sort) => format!("{} / {}", one(partition), one(sort)),
        None => one(partition),
    }
}
