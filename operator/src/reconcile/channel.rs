//! Channel → dead-letter queue, main queue (redriving to it), and the shared OpenAI key.
use super::secrets::{self, SECRETS_SYNCED};
use super::validate;
use super::{ChangeKind, Claim, Context, Failure, Outcome, QueueOutput, Reconciling, Report};
use crate::aws::sqs::ObservedQueue;
use crate::aws::AwsError;
use crate::crd::Channel;
use crate::desired::channel::{queues, redrive_policy, same_redrive_policy, QueuePair, QueueSpec, REDRIVE_POLICY};
use crate::desired::secret::SecretValues;
use crate::desired::{self, OWNER_TAG};
use std::collections::BTreeMap;

pub const QUEUES_SYNCED: &str = "QueuesSynced";

pub async fn reconcile(ctx: &Context, channel: &Channel, values: &SecretValues) -> Report {
    let mut r = Reconciling::begin(ctx, "Channel", channel);
    if let Err(invalid) = ctx.validated.check(channel, validate::channel) {
        return r.finish(vec![(QUEUES_SYNCED, Err(invalid.clone())), (SECRETS_SYNCED, Err(invalid))]);
    }
    let queues = sync_queues(&mut r, channel).await;
    let specs = desired::channel::secrets(&channel.spec, &ctx.naming);
    let secrets = secrets::sync(&mut r, &specs, values, secrets::Expect::Unknown).await;
    r.finish(vec![(QUEUES_SYNCED, queues), (SECRETS_SYNCED, secrets)])
}

async fn sync_queues(r: &mut Reconciling<'_>, channel: &Channel) -> Outcome {
    let desired = queues(&channel.spec, &r.ctx.naming);
    let (queue, dead_letter) = sync_pair(r, &desired.initial).await?;
    (r.outputs().queue, r.outputs().dead_letter_queue) = (queue, dead_letter);
    let (queue, dead_letter) = sync_pair(r, &desired.replies).await?;
    (r.outputs().replies_queue, r.outputs().replies_dead_letter_queue) = (queue, dead_letter);
    Ok("queues and dead-letter queues in sync".into())
}

/// The dead-letter queue, then the queue redriving into it; where each now is.
pub(super) async fn sync_pair(
    r: &mut Reconciling<'_>,
    pair: &QueuePair,
) -> Result<(Option<QueueOutput>, Option<QueueOutput>), Failure> {
    let dead_letter = sync_queue(r, &pair.dead_letter).await?;
    // A DLQ that `plan` has not created yet has no ARN; show where it will point.
    let dead_letter_arn = dead_letter.as_ref().and_then(|q| q.arn()).unwrap_or("<new dead-letter queue ARN>");
    let mut queue = pair.queue.clone();
    queue.attributes.insert(REDRIVE_POLICY, redrive_policy(dead_letter_arn, pair.max_receive_count));
    let main = sync_queue(r, &queue).await?;
    let output = |q: &ObservedQueue| QueueOutput { url: q.url.clone(), arn: q.arn().unwrap_or_default().to_string() };
    Ok((main.as_ref().map(output), dead_letter.as_ref().map(output)))
}

/// Makes one queue match `spec`; returns it as it now stands (`None` if `plan` would create it).
pub(super) async fn sync_queue(r: &mut Reconciling<'_>, spec: &QueueSpec) -> Result<Option<ObservedQueue>, Failure> {
    let ctx = r.ctx;
    let sqs = &ctx.aws.sqs;
    let object = format!("queue {}", spec.name);
    let tags = BTreeMap::from([(OWNER_TAG, r.owner.to_string())]);
    let Some(observed) = sqs.observe(&spec.name).await? else {
        let fields = spec.attributes.keys().map(|k| k.to_string()).collect();
        let create = |w| sqs.create(w, &spec.name, &spec.attributes, &tags);
        let Some(created) = r.write(ChangeKind::Create, &object, fields, create).await? else {
            return Ok(None);
        };
        // CreateQueue returns an existing queue with the same attributes: check it is ours.
        r.require_ours(created.tags.get(OWNER_TAG).map(String::as_str), &object)?;
        return Ok(Some(created));
    };

    let adopting = r.claim(observed.tags.get(OWNER_TAG).map(String::as_str), &object)? == Claim::Adopting;
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
    let (drifted, tags, url) = (&drifted, &tags, &observed.url);
    r.write(ChangeKind::Update, object, fields, |w| async move {
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
