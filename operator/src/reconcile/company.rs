//! Company → its secrets, then its company-data record.
use super::{claim, secrets, Action, Context, Failure, Mode, Outcome, Reason, Report, ADOPT_ANNOTATION};
use crate::aws::dynamodb::{PutCondition, PutError};
use crate::crd::Company;
use crate::desired::secret::SecretValues;
use crate::desired::{self, Owner};
use crate::diff;
use crate::validate;
use aws_sdk_dynamodb::types::AttributeValue;
use kube::ResourceExt;
use multicomms_runtime::wire::company::{MANAGED_BY, PARTITION_KEY, SORT_KEY, TIMESTAMPS};
use multicomms_runtime::wire::{CompanyRecord, Item};

pub const SECRETS_SYNCED: &str = "SecretsSynced";
pub const RECORD_SYNCED: &str = "RecordSynced";

pub async fn reconcile(ctx: &Context, company: &Company, values: &SecretValues) -> Report {
    let namespace = company.namespace().unwrap_or_default();
    let mut report = Report::new("Company", &namespace, &company.name_any(), company.metadata.generation);
    if let Err(invalid) = validate::company(company) {
        report.subsystems = vec![(SECRETS_SYNCED, Err(invalid.clone())), (RECORD_SYNCED, Err(invalid))];
        return report;
    }
    let owner = Owner { kind: "Company", namespace, name: company.name_any() };
    let adopt = company.annotations().get(ADOPT_ANNOTATION).is_some_and(|v| v == "true");

    let specs = desired::company::secrets(&company.spec, &ctx.naming);
    let secrets = secrets::sync(ctx, &specs, values, &owner, adopt, &mut report).await;
    // The record points clients and processors at the secrets: write it only once they exist.
    let record = match &secrets {
        Err(_) if ctx.mode == Mode::Apply => Err(Failure::new(Reason::Blocked, format!("waiting for {SECRETS_SYNCED}"))),
        _ => {
            let desired = desired::company::record(&company.spec, &ctx.naming, &owner);
            sync_record(ctx, desired, &owner, adopt, &mut report).await
        }
    };
    report.subsystems.push((SECRETS_SYNCED, secrets));
    report.subsystems.push((RECORD_SYNCED, record));
    report
}

async fn sync_record(
    ctx: &Context,
    mut desired: CompanyRecord,
    owner: &Owner,
    adopt: bool,
    report: &mut Report,
) -> Outcome {
    let table = ctx.naming.company_data_table();
    let object = format!("item {table}[{}/{}]", desired.company_id, desired.project_id);
    let key: Item = [
        (PARTITION_KEY.to_string(), AttributeValue::S(desired.company_id.clone())),
        (SORT_KEY.to_string(), AttributeValue::S(desired.project_id.clone())),
    ]
    .into();
    let observed = ctx.aws.dynamodb.get_item(&table, key).await?;
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, false);

    let condition = match &observed {
        None => {
            report.change(Action::Create, &object, vec![]);
            desired.created_at = now.clone();
            PutCondition::Absent { partition_key: PARTITION_KEY }
        }
        Some(item) => {
            let marker = item.get(MANAGED_BY).and_then(|v| v.as_s().ok()).map(String::as_str);
            let adopting = claim(owner, marker, adopt, &object)?;
            let item_error = |e: multicomms_runtime::wire::company::ItemError| {
                Failure::new(Reason::AwsError, format!("{object}: {e}"))
            };
            let fields = diff::item_fields(&desired.to_item().map_err(item_error)?, item, &TIMESTAMPS);
            let stored_version = item.get("updated_at").and_then(|v| v.as_s().ok()).cloned().unwrap_or_default();
            if fields.is_empty() {
                report.output("record", format!("{object} (version {stored_version})"));
                return Ok("record up to date".into());
            }
            report.change(Action::Update, &object, fields);
            desired.created_at = item.get("created_at").and_then(|v| v.as_s().ok()).cloned().unwrap_or(now.clone());
            // Written only if nobody took the item over since we read it.
            PutCondition::Owner {
                partition_key: PARTITION_KEY,
                attribute: MANAGED_BY,
                expected: if adopting { None } else { Some(owner.to_string()) },
            }
        }
    };
    if ctx.mode == Mode::Plan {
        return Ok("record differs (plan)".into());
    }
    desired.updated_at = now;
    let item = desired.to_item().map_err(|e| Failure::new(Reason::AwsError, format!("{object}: {e}")))?;
    match ctx.aws.dynamodb.put_item(&table, item, condition).await {
        Ok(()) => {
            report.output("record", format!("{object} (version {})", desired.updated_at));
            Ok("record written".into())
        }
        Err(PutError::ConditionFailed) => Err(Failure::new(
            Reason::OwnershipConflict,
            format!("{object} was created or taken over by another writer meanwhile; left untouched"),
        )),
        Err(PutError::Aws(e)) => Err(e.into()),
    }
}
