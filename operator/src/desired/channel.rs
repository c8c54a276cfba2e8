//! Channel → SQS queue + dead-letter queue, and the channel's shared OpenAI key.
use super::secret::SecretSpec;
use crate::crd::channel::QueueSettings;
use crate::crd::ChannelSpec;
use multicomms_wire::{ChannelKind, Naming};
use std::collections::BTreeMap;

/// SQS attribute names, as the API spells them.
pub const VISIBILITY_TIMEOUT: &str = "VisibilityTimeout";
pub const MESSAGE_RETENTION_PERIOD: &str = "MessageRetentionPeriod";
pub const DELAY_SECONDS: &str = "DelaySeconds";
pub const REDRIVE_POLICY: &str = "RedrivePolicy";

/// A queue's name and the attributes we manage on it.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueSpec {
    pub name: String,
    pub attributes: BTreeMap<&'static str, String>,
}

/// A queue and the dead-letter queue it redrives into.
#[derive(Debug, Clone, PartialEq)]
pub struct QueuePair {
    pub dead_letter: QueueSpec,
    /// The main queue, without its `RedrivePolicy`: that needs the DLQ's ARN, see [`redrive_policy`].
    pub queue: QueueSpec,
    pub max_receive_count: u32,
}

/// The channel's queues: the initial messages' (the router's context objects) and the replies'
/// (the replies engine's triggers), each with its dead-letter queue.
#[derive(Debug, Clone, PartialEq)]
pub struct ChannelQueues {
    pub initial: QueuePair,
    pub replies: QueuePair,
}

pub fn queues(spec: &ChannelSpec, naming: &Naming) -> ChannelQueues {
    // Whatsapp's processor may work 900 s on one message; the queue must hide it longer (spec §4.1).
    let default_visibility = if spec.kind == ChannelKind::Whatsapp { 905 } else { 600 };
    ChannelQueues {
        initial: pair(&spec.queue, naming.channel_queue(spec.kind), naming.channel_dlq(spec.kind), default_visibility),
        // The original's replies queues hide a message 900 s, the replies Lambda's budget
        // (replies-engine §4); 905 keeps it hidden past that.
        replies: pair(&spec.replies_queue, naming.replies_queue(spec.kind), naming.replies_dlq(spec.kind), 905),
    }
}

fn pair(q: &QueueSettings, name: String, dead_letter: String, default_visibility: u32) -> QueuePair {
    QueuePair {
        dead_letter: QueueSpec {
            name: dead_letter,
            attributes: BTreeMap::from([(
                MESSAGE_RETENTION_PERIOD,
                q.dead_letter_retention_seconds.unwrap_or(1_209_600).to_string(),
            )]),
        },
        queue: QueueSpec {
            name,
            attributes: BTreeMap::from([
                (VISIBILITY_TIMEOUT, q.visibility_timeout_seconds.unwrap_or(default_visibility).to_string()),
                (MESSAGE_RETENTION_PERIOD, q.message_retention_seconds.unwrap_or(345_600).to_string()),
                (DELAY_SECONDS, q.delay_seconds.unwrap_or(0).to_string()),
            ]),
        },
        max_receive_count: q.max_receive_count.unwrap_or(3),
    }
}

/// The environment's human hand-off queue (replies-engine §4.2: visible after an hour, kept a
/// week, no DLQ: a person reads it).
pub fn handoff_queue(naming: &Naming) -> QueueSpec {
    QueueSpec {
        name: naming.handoff_queue(),
        attributes: BTreeMap::from([
            (VISIBILITY_TIMEOUT, "3600".to_string()),
            (MESSAGE_RETENTION_PERIOD, "604800".to_string()),
            (DELAY_SECONDS, "0".to_string()),
        ]),
    }
}

/// Delivery attempts of a client event before it is dead-lettered: with the worker's backoff
/// (doubling from 10 s, at most 15 min) about 25 minutes of a receiver being down.
pub const CLIENT_EVENT_ATTEMPTS: u32 = 8;

/// The environment's client-events queue and its DLQ (kept two weeks, for a replay).
pub fn client_events_queues(naming: &Naming) -> QueuePair {
    QueuePair {
        dead_letter: QueueSpec {
            name: naming.client_events_dlq(),
            attributes: BTreeMap::from([(MESSAGE_RETENTION_PERIOD, "1209600".to_string())]),
        },
        queue: QueueSpec {
            name: naming.client_events_queue(),
            attributes: BTreeMap::from([
                (VISIBILITY_TIMEOUT, "60".to_string()),
                (MESSAGE_RETENTION_PERIOD, "345600".to_string()),
                (DELAY_SECONDS, "0".to_string()),
            ]),
        },
        max_receive_count: CLIENT_EVENT_ATTEMPTS,
    }
}

/// The main queue's `RedrivePolicy` attribute value.
pub fn redrive_policy(dead_letter_arn: &str, max_receive_count: u32) -> String {
    serde_json::json!({"deadLetterTargetArn": dead_letter_arn, "maxReceiveCount": max_receive_count}).to_string()
}

/// Whether two `RedrivePolicy` values say the same (SQS may render the count as a string).
pub fn same_redrive_policy(a: &str, b: &str) -> bool {
    let parse = |s: &str| {
        let v: serde_json::Value = serde_json::from_str(s).ok()?;
        let arn = v.get("deadLetterTargetArn")?.as_str()?.to_string();
        let count = match v.get("maxReceiveCount")? {
            serde_json::Value::Number(n) => n.as_u64()?,
            serde_json::Value::String(s) => s.parse().ok()?,
            _ => return None,
        };
        Some((arn, count))
    };
    matches!((parse(a), parse(b)), (Some(x), Some(y)) if x == y)
}

pub fn secrets(spec: &ChannelSpec, naming: &Naming) -> Vec<SecretSpec> {
    spec.ai_api_key
        .iter()
        .map(|key| SecretSpec {
            name: naming.shared_ai_key_secret(spec.kind),
            keys: vec![(multicomms_wire::secret_keys::AI_API_KEY, SecretSpec::from_ref("spec.aiApiKey", key))],
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::Channel;

    fn channel(yaml: &str) -> Channel {
        serde_yaml::from_str(yaml).expect("channel parses")
    }

    #[test]
    fn example_channels_get_the_original_queue_settings() {
        let naming = Naming::new("ai-multi-comms", "dev");
        let queues = queues(&channel(include_str!("../../../config/channels/whatsapp.yaml")).spec, &naming);
        let whatsapp = queues.initial;
        assert_eq!(whatsapp.queue.name, "ai-multi-comms-whatsapp-queue-dev");
        assert_eq!(whatsapp.dead_letter.name, "ai-multi-comms-whatsapp-dlq-dev");
        assert_eq!(whatsapp.queue.attributes[VISIBILITY_TIMEOUT], "905");
        assert_eq!(whatsapp.queue.attributes[MESSAGE_RETENTION_PERIOD], "345600");
        assert_eq!(whatsapp.dead_letter.attributes[MESSAGE_RETENTION_PERIOD], "1209600");
        assert_eq!(whatsapp.max_receive_count, 3);
        // The replies engine's queues (replies-engine §4.1), with the main queue's defaults.
        let replies = queues.replies;
        assert_eq!(replies.queue.name, "ai-multi-comms-replies-whatsapp-queue-dev");
        assert_eq!(replies.dead_letter.name, "ai-multi-comms-replies-whatsapp-dlq-dev");
        assert_eq!(replies.queue.attributes[VISIBILITY_TIMEOUT], "905");
        assert_eq!(replies.dead_letter.attributes[MESSAGE_RETENTION_PERIOD], "1209600");
        assert_eq!(replies.max_receive_count, 3);
        let handoff = handoff_queue(&naming);
        assert_eq!(handoff.name, "ai-multi-comms-replies-human-handoff-queue-dev");
        assert_eq!(handoff.attributes[VISIBILITY_TIMEOUT], "3600");
        assert_eq!(handoff.attributes[MESSAGE_RETENTION_PERIOD], "604800");
    }

    #[test]
    fn defaults_depend_on_the_channel_type() {
        let naming = Naming::new("p", "prod");
        let sms = channel("apiVersion: multicomms.io/v1alpha1\nkind: Channel\nmetadata: {name: sms}\nspec: {type: sms, provider: twilio}");
        let q = queues(&sms.spec, &naming).initial;
        assert_eq!(q.queue.attributes[VISIBILITY_TIMEOUT], "600");
        assert_eq!(q.queue.attributes[DELAY_SECONDS], "0");
        assert!(secrets(&sms.spec, &naming).is_empty());
    }

    #[test]
    fn redrive_policies_compare_by_meaning() {
        let ours = redrive_policy("arn:aws:sqs:eu-north-1:1:dlq", 3);
        assert!(same_redrive_policy(
            &ours,
            r#"{"deadLetterTargetArn":"arn:aws:sqs:eu-north-1:1:dlq","maxReceiveCount":"3"}"#
        ));
        assert!(!same_redrive_policy(&ours, &redrive_policy("arn:aws:sqs:eu-north-1:1:dlq", 5)));
        assert!(!same_redrive_policy(&ours, "garbage"));
    }
}
