//! Secrets Manager secrets of a resource: created when missing, restored when scheduled for
//! deletion, rewritten only when the stored value differs. Reports carry names, ARNs and
//! version ids, never values.
use super::{claim, Action, Context, Failure, Mode, Outcome, Reason, Report};
use crate::aws::secrets::{WriteError, WrittenSecret};
use crate::desired::secret::{DesiredSecret, SecretSpec, SecretValues};
use crate::desired::{Owner, OWNER_TAG};
use std::collections::BTreeMap;

pub async fn sync(
    ctx: &Context,
    specs: &[SecretSpec],
    values: &SecretValues,
    owner: &Owner,
    adopt: bool,
    report: &mut Report,
) -> Outcome {
    // Every reference must resolve before anything is written: no half-written set.
    let desired = specs
        .iter()
        .map(|spec| spec.resolve(values))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|missing| Failure::new(Reason::SecretNotFound, missing.to_string()))?;
    for secret in &desired {
        sync_one(ctx, secret, owner, adopt, report).await?;
    }
    Ok(match desired.len() {
        0 => "no secrets referenced".to_string(),
        1 => "1 secret in sync".to_string(),
        n => format!("{n} secrets in sync"),
    })
}

async fn sync_one(
    ctx: &Context,
    secret: &DesiredSecret,
    owner: &Owner,
    adopt: bool,
    report: &mut Report,
) -> Result<(), Failure> {
    let sm = &ctx.aws.secrets;
    let name = secret.name.as_str();
    let object = format!("secret {name}");
    let tags = BTreeMap::from([(OWNER_TAG, owner.to_string())]);

    let Some(observed) = sm.describe(name).await? else {
        report.change(Action::Create, object, vec!["value".into()]);
        if ctx.mode == Mode::Apply {
            let written = match sm.create(name, &secret.value, &tags).await {
                Err(WriteError::ScheduledForDeletion) => restore_and_put(ctx, secret, report).await?,
                other => other.map_err(write_failure)?,
            };
            record(report, name, written);
        }
        return Ok(());
    };

    if claim(owner, observed.tags.get(OWNER_TAG).map(String::as_str), adopt, &object)? {
        report.change(
            Action::Update,
            object.clone(),
            vec![format!("tag {OWNER_TAG} (adopted)")],
        );
        if ctx.mode == Mode::Apply {
            sm.tag(name, &tags).await?;
        }
    }

    if observed.scheduled_for_deletion {
        report.change(Action::Restore, object.clone(), vec![]);
        if ctx.mode == Mode::Plan {
            // Its value cannot be read until it is restored; `apply` restores and rewrites it.
            report.change(Action::Update, object, vec!["value".into()]);
            return Ok(());
        }
        sm.restore(name).await?;
    }

    let (stored, version_id) = sm.current_value(name).await?;
    let in_sync = stored
        .as_ref()
        .is_some_and(|s| secret.matches(secrecy::ExposeSecret::expose_secret(s)));
    if in_sync {
        record(
            report,
            name,
            WrittenSecret {
                arn: observed.arn,
                version_id,
            },
        );
        return Ok(());
    }
    report.change(Action::Update, object, vec!["value".into()]);
    if ctx.mode == Mode::Apply {
        let written = match sm.put_value(name, &secret.value).await {
            Err(WriteError::ScheduledForDeletion) => restore_and_put(ctx, secret, report).await?,
            other => other.map_err(write_failure)?,
        };
        record(report, name, written);
    }
    Ok(())
}

/// AWS refused a write because the secret is scheduled for deletion (deleted between our read
/// and the write): bring it back, then write.
async fn restore_and_put(ctx: &Context, secret: &DesiredSecret, report: &mut Report) -> Result<WrittenSecret, Failure> {
    report.change(Action::Restore, format!("secret {}", secret.name), vec![]);
    ctx.aws.secrets.restore(&secret.name).await?;
    ctx.aws
        .secrets
        .put_value(&secret.name, &secret.value)
        .await
        .map_err(write_failure)
}

fn write_failure(e: WriteError) -> Failure {
    match e {
        WriteError::Aws(e) => e.into(),
        WriteError::ScheduledForDeletion => Failure::new(
            Reason::AwsError,
            "secret is scheduled for deletion and could not be restored",
        ),
    }
}

fn record(report: &mut Report, name: &str, written: WrittenSecret) {
    let version = written.version_id.unwrap_or_else(|| "-".into());
    report.output(format!("secret {name}"), format!("{} (version {version})", written.arn));
}
