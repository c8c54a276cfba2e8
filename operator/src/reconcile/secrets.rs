//! Secrets Manager secrets of a resource: created when missing, restored when scheduled for
//! deletion, rewritten only when the stored value differs. Reports carry names, ARNs and
//! version ids, never values.
//!
//! All references are resolved and all secrets observed and claimed before the first write, so
//! a missing Secret or a secret owned by someone else leaves the whole set untouched.
use super::{claim, Action, Context, Failure, Mode, Outcome, Reason, Report};
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
    report.change(Action::Create, &object, vec!["value".into()]);
    if ctx.mode == Mode::Plan {
        return Ok(());
    }
    let sm = &ctx.aws.secrets;
    let written = match sm.create(&secret.name, &secret.value, &owner_tags(owner)).await {
        Ok(written) => written,
        // A secret of that name was deleted with a recovery window after our read: bring it
        // back, and treat it like any existing secret (it may not be ours).
        Err(WriteError::ScheduledForDeletion) => {
            report.change(Action::Restore, &object, vec![]);
            sm.restore(&secret.name).await?;
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
    let apply = ctx.mode == Mode::Apply;
    // AWS refuses every other write (tags included) until a pending deletion is cancelled.
    if observed.scheduled_for_deletion {
        report.change(Action::Restore, &object, vec![]);
        if apply {
            sm.restore(&secret.name).await?;
        }
    }
    if adopting {
        report.change(Action::Update, &object, vec![format!("tag {OWNER_TAG} (adopted)")]);
        if apply {
            sm.tag(&secret.name, &owner_tags(owner)).await?;
        }
    }
    // A secret still scheduled for deletion (plan) cannot be read: `apply` restores and rewrites it.
    let (stored, version_id) =
        if observed.scheduled_for_deletion && !apply { (None, None) } else { sm.current_value(&secret.name).await? };
    if stored.as_ref().is_some_and(|s| secret.matches(s.expose_secret())) {
        record(report, &secret.name, WrittenSecret { arn: observed.arn, version_id });
        return Ok(());
    }
    report.change(Action::Update, &object, vec!["value".into()]);
    if !apply {
        return Ok(());
    }
    let written = match sm.put_value(&secret.name, &secret.value).await {
        // Deleted between our read and this write (AWS refuses; moto does not).
        Err(WriteError::ScheduledForDeletion) => {
            report.change(Action::Restore, &object, vec![]);
            sm.restore(&secret.name).await?;
            sm.put_value(&secret.name, &secret.value).await
        }
        other => other,
    }
    .map_err(|e| match e {
        WriteError::Aws(e) => e.into(),
        WriteError::ScheduledForDeletion | WriteError::AlreadyExists => {
            Failure::new(Reason::AwsError, format!("{object} is scheduled for deletion and could not be restored"))
        }
    })?;
    record(report, &secret.name, written);
    Ok(())
}

fn record(report: &mut Report, name: &str, written: WrittenSecret) {
    report.outputs.secrets.push(SecretStatus {
        name: name.to_string(),
        arn: written.arn,
        version_id: written.version_id,
    });
}
