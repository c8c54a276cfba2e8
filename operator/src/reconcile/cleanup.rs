//! Deleting what a resource owns, for `deletionPolicy: Delete`. Only objects that carry the
//! resource's ownership marker are touched. Secrets are deleted with a recovery window, so a
//! resource re-created within it gets its secrets restored rather than lost.
use super::channel::QUEUES_SYNCED;
use super::company::RECORD_SYNCED;
use super::secrets::SECRETS_SYNCED;
use super::{begin, Action, Context, Failure, Outcome, Reason, Report};
use crate::aws::dynamodb::WriteCondition;
use crate::crd::{Channel, Company};
use crate::desired::secret::SecretSpec;
use crate::desired::{self, Owner, OWNER_TAG};
use aws_sdk_dynamodb::types::AttributeValue;
use multicomms_runtime::wire::company::{MANAGED_BY, PARTITION_KEY, SORT_KEY};
use multicomms_runtime::wire::Item;

/// Days a deleted secret can still be restored.
pub const SECRET_RECOVERY_DAYS: i64 = 7;

pub async fn delete_company(ctx: &Context, company: &Company) -> Report {
    let (mut report, owner, _) = begin("Company", company);
    let secrets =
        delete_secrets(ctx, &desired::company::secrets(&company.spec, &ctx.naming), &owner, &mut report).await;
    let record = delete_record(ctx, company, &owner, &mut report).await;
    report.subsystems = vec![(SECRETS_SYNCED, secrets), (RECORD_SYNCED, record)];
    report
}

/// `users` are the Companies still using the channel: while there are any, the queues stay.
pub async fn delete_channel(ctx: &Context, channel: &Channel, users: &[String]) -> Report {
    let (mut report, owner, _) = begin("Channel", channel);
    let queues = if users.is_empty() {
        delete_queues(ctx, channel, &owner, &mut report).await
    } else {
        Err(Failure::new(Reason::InUse, format!("queues kept while in use by {}", users.join(", "))))
    };
    let secrets =
        delete_secrets(ctx, &desired::channel::secrets(&channel.spec, &ctx.naming), &owner, &mut report).await;
    report.subsystems = vec![(QUEUES_SYNCED, queues), (SECRETS_SYNCED, secrets)];
    report
}

async fn delete_record(ctx: &Context, company: &Company, owner: &Owner, report: &mut Report) -> Outcome {
    let table = ctx.naming.company_data_table();
    let (company_id, project_id) = (&company.spec.company_id, &company.spec.project_id);
    let key: Item = [
        (PARTITION_KEY.to_string(), AttributeValue::S(company_id.clone())),
        (SORT_KEY.to_string(), AttributeValue::S(project_id.clone())),
    ]
    .into();
    let mine = WriteCondition::Owner {
        partition_key: PARTITION_KEY,
        attribute: MANAGED_BY,
        expected: Some(owner.to_string()),
    };
    if ctx.aws.dynamodb.delete_item(&table, key, mine).await? {
        report.change(Action::Delete, format!("item {table}[{company_id}/{project_id}]"), vec![]);
        Ok("record deleted".into())
    } else {
        Ok("no record of ours to delete".into())
    }
}

async fn delete_secrets(ctx: &Context, specs: &[SecretSpec], owner: &Owner, report: &mut Report) -> Outcome {
    let mut deleted = 0;
    for spec in specs {
        let Some(observed) = ctx.aws.secrets.describe(&spec.name).await? else {
            continue;
        };
        let ours = observed.tags.get(OWNER_TAG).is_some_and(|m| *m == owner.to_string());
        if ours && !observed.scheduled_for_deletion {
            ctx.aws.secrets.delete(&spec.name, SECRET_RECOVERY_DAYS).await?;
            report.change(Action::Delete, format!("secret {}", spec.name), vec![]);
            deleted += 1;
        }
    }
    Ok(format!("{deleted} secrets scheduled for deletion ({SECRET_RECOVERY_DAYS}-day recovery window)"))
}

async fn delete_queues(ctx: &Context, channel: &Channel, owner: &Owner, report: &mut Report) -> Outcome {
    let queues = desired::channel::queues(&channel.spec, &ctx.naming);
    // The main queue first: it redrives into the DLQ.
    for name in [&queues.queue.name, &queues.dead_letter.name] {
        let Some(observed) = ctx.aws.sqs.observe(name).await? else {
            continue;
        };
        if observed.tags.get(OWNER_TAG).is_some_and(|m| *m == owner.to_string()) {
            ctx.aws.sqs.delete(name, &observed.url).await?;
            report.change(Action::Delete, format!("queue {name}"), vec![]);
        }
    }
    Ok("queues of ours deleted".into())
}
