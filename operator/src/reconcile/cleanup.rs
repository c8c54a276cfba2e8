//! Deleting what a resource owns, for `deletionPolicy: Delete`. Only objects that carry the
//! resource's ownership marker are touched. Secrets are deleted with a recovery window, so a
//! resource re-created within it gets its secrets restored rather than lost.
use super::channel::QUEUES_SYNCED;
use super::company::RECORD_SYNCED;
use super::secrets::SECRETS_SYNCED;
use super::{begin, ChangeKind, Context, Failure, Outcome, Reason, Report};
use crate::aws::dynamodb::WriteCondition;
use crate::crd::{Channel, Company};
use crate::desired::secret::SecretSpec;
use crate::desired::{self, Owner, OWNER_TAG};
use multicomms_wire::company::{record_key, MANAGED_BY, PARTITION_KEY};

/// Days a deleted secret can still be restored.
pub const SECRET_RECOVERY_DAYS: i64 = 7;

/// The record goes first: once it is gone the router refuses the company's requests, so no new
/// message needs the secrets. Were the secrets deleted first and the record's deletion then
/// failed, the router would keep accepting messages the processors can no longer send.
pub async fn delete_company(ctx: &Context, company: &Company) -> Report {
    ctx.validated.forget(company);
    let (mut report, owner, _) = begin(ctx, "Company", company);
    let record = delete_record(ctx, company, &owner, &mut report).await;
    let secrets = match &record {
        Ok(_) => delete_secrets(ctx, &desired::company::secrets(&company.spec, &ctx.naming), &owner, &mut report).await,
        Err(_) => Err(Failure::new(Reason::Blocked, format!("secrets kept until {RECORD_SYNCED} is deleted"))),
    };
    report.subsystems = vec![(RECORD_SYNCED, record), (SECRETS_SYNCED, secrets)];
    report
}

/// `users` are the Companies still using the channel: while there are any, its queues and its
/// shared OpenAI key stay (a key already scheduled for deletion is restored).
pub async fn delete_channel(ctx: &Context, channel: &Channel, users: &[String]) -> Report {
    ctx.validated.forget(channel);
    let (mut report, owner, _) = begin(ctx, "Channel", channel);
    let secrets = desired::channel::secrets(&channel.spec, &ctx.naming);
    report.subsystems = if users.is_empty() {
        let queues = delete_queues(ctx, channel, &owner, &mut report).await;
        vec![(QUEUES_SYNCED, queues), (SECRETS_SYNCED, delete_secrets(ctx, &secrets, &owner, &mut report).await)]
    } else {
        let in_use =
            |what: &str| Failure::new(Reason::InUse, format!("{what} kept while in use by {}", users.join(", ")));
        let secrets = match restore_secrets(ctx, &secrets, &owner, &mut report).await {
            Ok(_) => Err(in_use("shared key")),
            Err(failure) => Err(failure),
        };
        vec![(QUEUES_SYNCED, Err(in_use("queues"))), (SECRETS_SYNCED, secrets)]
    };
    report
}

async fn delete_record(ctx: &Context, company: &Company, owner: &Owner, report: &mut Report) -> Outcome {
    let table = ctx.naming.company_data_table();
    let (company_id, project_id) = (&company.spec.company_id, &company.spec.project_id);
    let key = record_key(company_id, project_id);
    let mine = WriteCondition::Owner {
        partition_key: PARTITION_KEY,
        attribute: MANAGED_BY,
        expected: Some(owner.to_string()),
    };
    // Read first, so `plan` says only what `apply` would do; the delete is conditional anyway.
    let stored = ctx.aws.dynamodb.get_item(&table, key.clone()).await?;
    let ours = stored.and_then(|item| item.get(MANAGED_BY).and_then(|v| v.as_s().ok()).cloned());
    if ours.as_deref() != Some(owner.to_string().as_str()) {
        return Ok("no record of ours to delete".into());
    }
    if ctx.apply(|w| ctx.aws.dynamodb.delete_item(w, &table, key, mine)).await?.unwrap_or(true) {
        report.change(ChangeKind::Delete, format!("item {table}[{company_id}/{project_id}]"), vec![]);
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
            ctx.verified_secrets.forget(&spec.name);
            ctx.apply(|w| ctx.aws.secrets.delete(w, &spec.name, SECRET_RECOVERY_DAYS)).await?;
            report.change(ChangeKind::Delete, format!("secret {}", spec.name), vec![]);
            deleted += 1;
        }
    }
    Ok(format!("{deleted} secrets scheduled for deletion ({SECRET_RECOVERY_DAYS}-day recovery window)"))
}

/// Cancels the pending deletion of those of `specs` that are ours and scheduled for deletion.
async fn restore_secrets(ctx: &Context, specs: &[SecretSpec], owner: &Owner, report: &mut Report) -> Outcome {
    for spec in specs {
        let Some(observed) = ctx.aws.secrets.describe(&spec.name).await? else {
            continue;
        };
        let ours = observed.tags.get(OWNER_TAG).is_some_and(|m| *m == owner.to_string());
        if ours && observed.scheduled_for_deletion {
            ctx.apply(|w| ctx.aws.secrets.restore(w, &spec.name)).await?;
            report.change(ChangeKind::Restore, format!("secret {}", spec.name), vec![]);
        }
    }
    Ok("secrets kept".into())
}

async fn delete_queues(ctx: &Context, channel: &Channel, owner: &Owner, report: &mut Report) -> Outcome {
    let queues = desired::channel::queues(&channel.spec, &ctx.naming);
    // Each main queue before its DLQ: it redrives into it.
    let (initial, replies) = (&queues.initial, &queues.replies);
    for name in [&initial.queue.name, &initial.dead_letter.name, &replies.queue.name, &replies.dead_letter.name] {
        let Some(observed) = ctx.aws.sqs.observe(name).await? else {
            continue;
        };
        if observed.tags.get(OWNER_TAG).is_some_and(|m| *m == owner.to_string()) {
            ctx.apply(|w| ctx.aws.sqs.delete(w, name, &observed.url)).await?;
            report.change(ChangeKind::Delete, format!("queue {name}"), vec![]);
        }
    }
    Ok("queues of ours deleted".into())
}
