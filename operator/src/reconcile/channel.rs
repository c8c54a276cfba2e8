//! Channel → dead-letter queue, main queue (redriving to it), and the shared OpenAI key.
use super::secrets::{self, SECRETS_SYNCED};
use super::validate;
use super::{begin, claim, ChangeKind, Context, Failure, Outcome, QueueOutput, Report};
use crate::aws::sqs::ObservedQueue;
use crate::aws::AwsError;
use crate::crd::Channel;
use crate::desired::channel::{queues, redrive_policy, same_redrive_policy, QueuePair, QueueSpec, REDRIVE_POLICY};
use crate::desired::secret::SecretValues;
use crate::desired::{self, Owner, OWNER_TAG};
use std::collections::BTreeMap;

pub const QUEUES_SYNCED: &str = "QueuesSynced";

pub async fn reconcile(ctx: &Context, channel: &Channel, values: &SecretValues) -> Report {
    let (mut report, owner, adopt) = begin(ctx, "Channel", channel);
    if let Err(invalid) = ctx.validated.check(channel, validate::channel) {
        report.subsystems = vec![(QUEUES_SYNCED, Err(invalid.clone())), (SECRETS_SYNCED, Err(invalid))];
        return report;
    }

    let queues = sync_queues(ctx, channel, &owner, adopt, &mut report).await;
    report.subsystems.push((QUEUES_SYNCED, queues));
    let specs = desired::channel::secrets(&channel.spec, &ctx.naming);
    let secrets = secrets::sync(ctx, &specs, values, &owner, adopt, secrets::Expect::Unknown, &mut report).await;
    report.subsystems.push((SECRETS_SYNCED, secrets));
    report
}

async fn sync_queues(ctx: &Context, channel: &Channel, owner: &Owner, adopt: bool, report: &mut Report) -> Outcome {
    let desired = queues(&channel.spec, &ctx.naming);
    let (queue, dead_letter) = sync_pair(ctx, &desired.initial, owner, adopt, report).await?;
    (report.outputs.queue, report.outputs.dead_letter_queue) = (queue, dead_letter);
    let (queue, dead_letter) = sync_pair(ctx, &desired.replies, owner, adopt, report).await?;
    (report.outputs.replies_queue, report.outputs.replies_dead_letter_queue) = (queue, dead_letter);
    Ok("queues and dead-letter queues in sync".into())
}

/// The dead-letter queue, then the queue redriving into it; where each now is.
async fn sync_pair(
    ctx: &Context,
    pair: &QueuePair,
    owner: &Owner,
    adopt: bool,
    report: &mut Report,
) -> Result<(Option<QueueOutput>, Option<QueueOutput>), Failure> {
    let dead_letter = sync_queue(ctx, &pair.dead_letter, owner, adopt, report).await?;
    // A DLQ that `plan` has not created yet has no ARN; show where it will point.
    let dead_letter_arn = dead_letter.as_ref().and_then(|q| q.arn()).unwrap_or("<new dead-letter queue ARN>");
    let mut queue = pair.queue.clone();
    queue.attributes.insert(REDRIVE_POLICY, redrive_policy(dead_letter_arn, pair.max_receive_count));
    let main = sync_queue(ctx, &queue, owner, adopt, report).await?;
    let output = |q: &ObservedQueue| QueueOutput { url: q.url.clone(), arn: q.arn().unwrap_or_default().to_string() };
    Ok((main.as_ref().map(output), dead_letter.as_ref().map(output)))
}

/// Makes one queue match `spec`; returns it as it now stands (`None` if `plan` would create it).
pub(super) async fn sync_queue(
    ctx: &Context,
    spec: &QueueSpec,
    owner: &Owner,
    adopt: bool,
    report: &mut Report,
) -> Result<Option<ObservedQueue>, Failure> {
    let sqs = &ctx.aws.sqs;
    let object = format!("queue {}", spec.name);
    let tags = BTreeMap::from([(OWNER_TAG, owner.to_string())]);
    let Some(observed) = sqs.observe(&spec.name).await? else {
        report.change(ChangeKind::Create, &object, spec.attributes.keys().map(|k| k.to_string()).collect());
        let Some(created) = ctx.apply(|w| sqs.create(w, &spec.name, &spec.attributes, &tags)).await? else {
            return Ok(None);
        };
        // CreateQueue returns an existing queue with the same attributes: check it is ours.
        claim(owner, created.tags.get(OWNER_TAG).map(String::as_str), false, &object)?;
        return Ok(Some(created));
    };

    let adopting = claim(owner, observed.tags.get(OWNER_TAG).map(String::as_str), adopt, &object)?;
    let drifted: BTreeMap<&'static str, String> = spec
        .attributes
        .iter()
        .filter(|(name, want)| {
            let have = observed.attributes.get(**name).map(String::as_str).unwrap_or_default();
            if **name == REDRIVE_POLICY {
                !same_redrive_policy(want, have)
            } else {
                have != want.as_str()
            }
        })
        .map(|(name, want)| (*name, want.clone()))
        .collect();
    let mut fields: Vec<String> = drifted.keys().map(|k| k.to_string()).collect();
    if adopting {
        fields.push(format!("tag {OWNER_TAG} (adopted)"));
    }
    if fields.is_empty() {
        return Ok(Some(observed));
    }
    report.change(ChangeKind::Update, object, fields);
    let (drifted, tags, url) = (&drifted, &tags, &observed.url);
    ctx.apply(|w| async move {
        if !drifted.is_empty() {
            sqs.set_attributes(w, &spec.name, url, drifted).await?;
        }
        if adopting {
            sqs.tag(w, &spec.name, url, tags).await?;
        }
        Ok::<_, AwsError>(())
    })
    .await?;
    Ok(Some(observed))
}
