//! Deleting what a resource owns, for `deletionPolicy: Delete`. Only objects that carry the
//! resource's ownership marker are touched. Secrets are deleted with a recovery window, so a
//! resource re-created within it gets its secrets restored rather than lost.
use super::channel::QUEUES_SYNCED;
use super::company::RECORD_SYNCED;
use super::secrets::SECRETS_SYNCED;
use super::{ChangeKind, Context, Failure, Outcome, Reason, Reconciling, Report};
use crate::aws::dynamodb::WriteCondition;
use crate::aws::AwsError;
use crate::crd::{Channel, Company};
use crate::desired::secret::SecretSpec;
use crate::desired::{self, OWNER_TAG};
use multicomms_wire::company::{record_key, MANAGED_BY, PARTITION_KEY};

/// Days a deleted secret can still be restored.
pub const SECRET_RECOVERY_DAYS: i64 = 7;

/// The record goes first: once it is gone the router refuses the company's requests, so no new
/// message needs the secrets. Were the secrets deleted first and the record's deletion then
/// failed, the router would keep accepting messages the processors can no longer send.
pub async fn delete_company(ctx: &Context, company: &Company) -> Report {
    ctx.validated.forget(company);
    let mut r = Reconciling::begin(ctx, "Company", company);
    let record = delete_record(&mut r, company).await;
    let secrets = match &record {
        Ok(_) => delete_secrets(&mut r, &desired::company::secrets(&company.spec, &ctx.naming)).await,
        Err(_) => Err(Failure::new(Reason::Blocked, format!("secrets kept until {RECORD_SYNCED} is deleted"))),
    };
    r.finish(vec![(RECORD_SYNCED, record), (SECRETS_SYNCED, secrets)])
}

/// `users` are the Companies still using the channel: while there are any, its queues and its
/// shared OpenAI key stay (a key already scheduled for deletion is restored).
pub async fn delete_channel(ctx: &Context, channel: &Channel, users: &[String]) -> Report {
    ctx.validated.forget(channel);
    let mut r = Reconciling::begin(ctx, "Channel", channel);
    let secrets = desired::channel::secrets(&channel.spec, &ctx.naming);
    let subsystems = if users.is_empty() {
        let queues = delete_queues(&mut r, channel).await;
        vec![(QUEUES_SYNCED, queues), (SECRETS_SYNCED, delete_secrets(&mut r, &secrets).await)]
    } else {
        let in_use =
            |what: &str| Failure::new(Reason::InUse, format!("{what} kept while in use by {}", users.join(", ")));
        let secrets = match restore_secrets(&mut r, &secrets).await {
            Ok(_) => Err(in_use("shared key")),
            Err(failure) => Err(failure),
        };
        vec![(QUEUES_SYNCED, Err(in_use("queues"))), (SECRETS_SYNCED, secrets)]
    };
    r.finish(subsystems)
}

/// Why a record was not deleted.
enum NotDeleted {
    /// It is ours no longer (gone, or taken over since it was read).
    NotOurs,
    Failed(AwsError),
}

async fn delete_record(r: &mut Reconciling<'_>, company: &Company) -> Outcome {
    let ctx = r.ctx;
    let table = ctx.naming.company_data_table();
    let (company_id, project_id) = (&company.spec.company_id, &company.spec.project_id);
    let key = record_key(company_id, project_id);
    let mine = WriteCondition::Owner {
        partition_key: PARTITION_KEY,
        attribute: MANAGED_BY,
        expected: Some(r.owner.to_string()),
    };
    // Read first, so `plan` says only what `apply` would do; the delete is conditional anyway.
    let stored = ctx.aws.dynamodb.get_item(&table, key.clone()).await?;
    let marker = stored.and_then(|item| item.get(MANAGED_BY).and_then(|v| v.as_s().ok()).cloned());
    if !r.owns(marker.as_deref()) {
        return Ok("no record of ours to delete".into());
    }
    let object = format!("item {table}[{company_id}/{project_id}]");
    let delete = |w| async move {
        match ctx.aws.dynamodb.delete_item(w, &table, key, mine).await {
            Ok(true) => Ok(()),
            Ok(false) => Err(NotDeleted::NotOurs),
            Err(e) => Err(NotDeleted::Failed(e)),
        }
    };
    match r.write(ChangeKind::Delete, object, vec![], delete).await {
        Ok(_) => Ok("record deleted".into()),
        Err(NotDeleted::NotOurs) => Ok("no record of ours to delete".into()),
        Err(NotDeleted::Failed(e)) => Err(e.into()),
    }
}

async fn delete_secrets(r: &mut Reconciling<'_>, specs: &[SecretSpec]) -> Outcome {
    let ctx = r.ctx;
    let mut deleted = 0;
    for spec in specs {
        let Some(observed) = ctx.aws.secrets.describe(&spec.name).await? else {
            continue;
        };
        if r.owns(observed.tags.get(OWNER_TAG).map(String::as_str)) && !observed.scheduled_for_deletion {
            ctx.verified_secrets.forget(&spec.name);
            let delete = |w| ctx.aws.secrets.delete(w, &spec.name, SECRET_RECOVERY_DAYS);
            r.write(ChangeKind::Delete, format!("secret {}", spec.name), vec![], delete).await?;
            deleted += 1;
        }
    }
    Ok(format!("{deleted} secrets scheduled for deletion ({SECRET_RECOVERY_DAYS}-day recovery window)"))
}

/// Cancels the pending deletion of those of `specs` that are ours and scheduled for deletion.
async fn restore_secrets(r: &mut Reconciling<'_>, specs: &[SecretSpec]) -> Outcome {
    let ctx = r.ctx;
    for spec in specs {
        let Some(observed) = ctx.aws.secrets.describe(&spec.name).await? else {
            continue;
        };
        if r.owns(observed.tags.get(OWNER_TAG).map(String::as_str)) && observed.scheduled_for_deletion {
            let restore = |w| ctx.aws.secrets.restore(w, &spec.name);
            r.write(ChangeKind::Restore, format!("secret {}", spec.name), vec![], restore).await?;
        }
    }
    Ok("secrets kept".into())
}

async fn delete_queues(r: &mut Reconciling<'_>, channel: &Channel) -> Outcome {
    let ctx = r.ctx;
    let queues = desired::channel::queues(&channel.spec, &ctx.naming);
    // Each main queue before its DLQ: it redrives into it.
    let (initial, replies) = (&queues.initial, &queues.replies);
    for name in [&initial.queue.name, &initial.dead_letter.name, &replies.queue.name, &replies.dead_letter.name] {
        let Some(observed) = ctx.aws.sqs.observe(name).await? else {
            continue;
        };
        if r.owns(observed.tags.get(OWNER_TAG).map(String::as_str)) {
            let delete = |w| ctx.aws.sqs.delete(w, name, &observed.url);
            r.write(ChangeKind::Delete, format!("queue {name}"), vec![], delete).await?;
        }
    }
    Ok("queues of ours deleted".into())
}
