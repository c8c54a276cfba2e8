//! Secrets Manager secrets of a resource: created when missing, restored when scheduled for
//! deletion, rewritten only when the stored value differs. Reports carry names, ARNs and
//! version ids, never values.
//!
//! All references are resolved and all secrets observed and claimed before the first write, so
//! a missing Secret or a secret owned by someone else leaves the whole set untouched.
use super::{claim, ChangeKind, Context, Failure, Outcome, Reason, Report};
use crate::aws::secrets::{ObservedSecret, WriteError, WrittenSecret};
use crate::crd::company::SecretStatus;
use crate::desired::secret::{DesiredSecret, SecretSpec, SecretValues};
use crate::desired::{Owner, OWNER_TAG};
use secrecy::ExposeSecret;
use std::collections::BTreeMap;

pub const SECRETS_SYNCED: &str = "SecretsSynced";

pub async fn sync(
    ctx: &Context,
    specs: &[SecretSpec],
    values: &SecretValues,
    owner: &Owner,
    adopt: bool,
    report: &mut Report,
) -> Outcome {
    let desired = specs
        .iter()
        .map(|spec| spec.resolve(values))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|missing| Failure::new(Reason::SecretNotFound, missing.to_string()))?;
    let mut claimed = Vec::with_capacity(desired.len());
    for secret in &desired {
        let observed = ctx.aws.secrets.describe(&secret.name).await?;
        let marker = observed.as_ref().and_then(|o| o.tags.get(OWNER_TAG)).map(String::as_str);
        let adopting = match &observed {
            Some(_) => claim(owner, marker, adopt, &format!("secret {}", secret.name))?,
            None => false,
        };
        claimed.push((secret, observed, adopting));
    }
    for (secret, observed, adopting) in claimed {
        match observed {
            None => create(ctx, secret, owner, adopt, report).await?,
            Some(observed) => update(ctx, secret, observed, owner, adopting, report).await?,
        }
    }
    Ok(match desired.len() {
        0 => "no secrets referenced".to_string(),
        1 => "1 secret in sync".to_string(),
        n => format!("{n} secrets in sync"),
    })
}

fn owner_tags(owner: &Owner) -> BTreeMap<&'static str, String> {
    BTreeMap::from([(OWNER_TAG, owner.to_string())])
}

async fn create(
    ctx: &Context,
    secret: &DesiredSecret,
    owner: &Owner,
    adopt: bool,
    report: &mut Report,
) -> Result<(), Failure> {
    let object = format!("secret {}", secret.name);
    report.change(ChangeKind::Create, &object, vec!["value".into()]);
    let sm = &ctx.aws.secrets;
    let tags = owner_tags(owner);
    let written = match ctx.apply(|w| sm.create(w, &secret.name, &secret.value, &tags)).await {
        Ok(None) => return Ok(()),
        Ok(Some(written)) => written,
        // A secret of that name was deleted with a recovery window after our read: bring it
        // back, and treat it like any existing secret (it may not be ours).
        Err(WriteError::ScheduledForDeletion) => {
            report.change(ChangeKind::Restore, &object, vec![]);
            ctx.apply(|w| sm.restore(w, &secret.name)).await?;
            let observed = sm
                .describe(&secret.name)
                .await?
                .ok_or_else(|| Failure::new(Reason::AwsError, format!("{object} vanished while being restored")))?;
            let marker = observed.tags.get(OWNER_TAG).map(String::as_str);
            let adopting = claim(owner, marker, adopt, &object)?;
            return update(ctx, secret, observed, owner, adopting, report).await;
        }
        Err(WriteError::AlreadyExists) => {
            return Err(Failure::new(
                Reason::OwnershipConflict,
                format!("{object} was created by another writer meanwhile; left untouched"),
            ))
        }
        Err(WriteError::Aws(e)) => return Err(e.into()),
    };
    record(report, &secret.name, written);
    Ok(())
}

/// Brings an existing, claimed secret in line: restore, value, ownership tag.
async fn update(
    ctx: &Context,
    secret: &DesiredSecret,
    observed: ObservedSecret,
    owner: &Owner,
    adopting: bool,
    report: &mut Report,
) -> Result<(), Failure> {
    let sm = &ctx.aws.secrets;
    let object = format!("secret {}", secret.name);
    // AWS refuses every other write (tags included) until a pending deletion is cancelled, and a
    // secret still scheduled for deletion cannot be read (in a `plan`, it stays so).
    let readable = if observed.scheduled_for_deletion {
        report.change(ChangeKind::Restore, &object, vec![]);
        ctx.apply(|w| sm.restore(w, &secret.name)).await?.is_some()
    } else {
        true
    };
    if adopting {
        report.change(ChangeKind::Update, &object, vec![format!("tag {OWNER_TAG} (adopted)")]);
        let tags = owner_tags(owner);
        ctx.apply(|w| sm.tag(w, &secret.name, &tags)).await?;
    }
    let (stored, version_id) = if readable { sm.current_value(&secret.name).await? } else { (None, None) };
    if stored.as_ref().is_some_and(|s| secret.matches(s.expose_secret())) {
        record(report, &secret.name, WrittenSecret { arn: observed.arn, version_id });
        return Ok(());
    }
    report.change(ChangeKind::Update, &object, vec!["value".into()]);
    let written = match ctx.apply(|w| sm.put_value(w, &secret.name, &secret.value)).await {
        Ok(None) => return Ok(()),
        // Deleted between our read and this write (AWS refuses; moto does not).
        Err(WriteError::ScheduledForDeletion) => {
            report.change(ChangeKind::Restore, &object, vec![]);
            let restore_and_put = |w| async move {
                sm.restore(w, &secret.name).await?;
                sm.put_value(w, &secret.name, &secret.value).await
            };
            ctx.apply(restore_and_put).await
        }
        other => other,
    }
    .map_err(|e| match e {
        WriteError::Aws(e) => e.into(),
        WriteError::ScheduledForDeletion | WriteError::AlreadyExists => {
            Failure::new(Reason::AwsError, format!("{object} is scheduled for deletion and could not be restored"))
        }
    })?;
    if let Some(written) = written {
        record(report, &secret.name, written);
    }
    Ok(())
}

fn record(report: &mut Report, name: &str, written: WrittenSecret) {
    report.outputs.secrets.push(SecretStatus {
        name: name.to_string(),
        arn: written.arn,
        version_id: written.version_id,
    });
}
