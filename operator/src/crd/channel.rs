//! `Channel`: one messaging channel of an environment: its SQS queue + DLQ, its replies queue +
//! DLQ and, optionally, the
//! OpenAI key its companies share.
// clippy reads the repeated `type_ = "string"` of separate printcolumn(...) entries as one
// duplicated attribute.
#![allow(clippy::duplicated_attributes)]
use super::common::{Condition, DeletionPolicy, SecretValue};
use kube::{CustomResource, KubeSchema};
use multicomms_wire::ChannelKind;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(CustomResource, KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[kube(
    group = "multicomms.io",
    version = "v1alpha1",
    kind = "Channel",
    plural = "channels",
    shortname = "chan",
    category = "multicomms",
    namespaced,
    status = "ChannelStatus",
    cel,
    // Its processors' Deployments and KEDA objects are named <name>-replies-processor, which
    // KEDA's webhook limits to 54 characters and a label value to 63.
    validation = Rule::new("size(self.metadata.name) <= 36")
        .message("metadata.name: at most 36 characters (it names the Channel's processors)"),
    printcolumn(json_path = ".spec.type", name = "Type", type_ = "string"),
    printcolumn(json_path = ".status.conditions[?(@.type==\"Ready\")].status", name = "Ready", type_ = "string"),
    printcolumn(json_path = ".status.conditions[?(@.type==\"Ready\")].reason", name = "Reason", type_ = "string"),
    printcolumn(
        json_path = ".status.conditions[?(@.type==\"WorkersReady\")].status",
        name = "Workers",
        type_ = "string"
    ),
    printcolumn(json_path = ".metadata.creationTimestamp", name = "Age", type_ = "date")
)]
#[x_kube(validation = Rule::new("(self.type == 'email') == (self.provider == 'sendgrid')")
    .message("provider must be twilio for whatsapp and sms, sendgrid for email"))]
#[serde(rename_all = "camelCase")]
pub struct ChannelSpec {
    /// whatsapp, sms or email. Immutable: it names the queues.
    #[serde(rename = "type")]
    #[x_kube(validation = Rule::new("self == oldSelf").message("is immutable"))]
    pub kind: ChannelKind,
    pub provider: Provider,
    #[serde(default)]
    pub queue: QueueSettings,
    /// SQS settings of the channel's replies queue (the replies engine's reply triggers) and its
    /// dead-letter queue; the same defaults as `queue`.
    #[serde(default)]
    pub replies_queue: QueueSettings,
    /// The processor Deployments the operator runs for this channel (one per flow: first
    /// messages, and replies on whatsapp and sms).
    #[serde(default)]
    pub workers: Workers,
    /// OpenAI key shared by every company on this channel that brings none of its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ai_api_key: Option<SecretValue>,
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
}

/// How the channel's processors run: `replicas` pods per flow, or, with `maxReplicas` and KEDA
/// installed, between `minReplicas` and `maxReplicas` on the queue's depth.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.maxReplicas) || !has(self.minReplicas) || self.minReplicas <= self.maxReplicas")
    .message("minReplicas must not exceed maxReplicas"))]
pub struct Workers {
    /// Pods per flow (0 stops the flow's processing; messages wait on the queue). Without KEDA
    /// this is also what an autoscaled flow runs.
    #[serde(default = "default_replicas")]
    #[x_kube(validation = Rule::new("self <= 100").message("must be at most 100"))]
    pub replicas: u32,
    /// Autoscaling (KEDA): the fewest pods per flow (default 1; 0 scales to zero when idle).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self <= 100").message("must be at most 100"))]
    pub min_replicas: Option<u32>,
    /// Autoscaling (KEDA): the most pods per flow; setting it asks for autoscaling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 1 && self <= 100").message("must be between 1 and 100"))]
    pub max_replicas: Option<u32>,
    /// Autoscaling (KEDA): messages (visible + in flight) per pod the scaler aims at (default 5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 1").message("must be at least 1"))]
    pub target_queue_depth: Option<u32>,
    /// Messages each pod works on at once (default 16).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 1 && self <= 1024").message("must be between 1 and 1024"))]
    pub concurrency: Option<u32>,
    /// Container resources (default: requests 100m CPU and 64Mi, limit 512Mi).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<k8s_openapi::api::core::v1::ResourceRequirements>,
}

fn default_replicas() -> u32 {
    1
}

impl Default for Workers {
    fn default() -> Self {
        Workers {
            replicas: default_replicas(),
            min_replicas: None,
            max_replicas: None,
            target_queue_depth: None,
            concurrency: None,
            resources: None,
        }
    }
}

#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    Twilio,
    Sendgrid,
}

/// SQS settings of the channel queue and its dead-letter queue (spec §4.1 defaults).
///
/// A processor killed mid-send leaves a send claim that a redelivery must not take for a crash
/// until the claim's grace has passed (the provider timeout + 60 s = 180 s by default): the
/// message must still have receives left by then, or it would reach the DLQ while its
/// conversation says `sending`. (The processor also hands the conversation off on the last
/// receive whatever the settings; this rule keeps that a rare event.) 600 s stands for an unset
/// visibility timeout: the smallest of the channels' defaults.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[x_kube(validation = Rule::new(
    "(has(self.visibilityTimeoutSeconds) ? self.visibilityTimeoutSeconds : 600) * \
     ((has(self.maxReceiveCount) ? self.maxReceiveCount : 3) - 1) >= 180")
    .message("visibilityTimeoutSeconds × (maxReceiveCount − 1) must be at least 180: a message must still have \
              receives left when an interrupted send's claim (180 s) runs out, or it is dead-lettered unresolved"))]
#[serde(rename_all = "camelCase")]
pub struct QueueSettings {
    /// Default: 905 s for whatsapp (above the processor's 900 s budget), 600 s otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self <= 43200")
        .message("must be at most 43200 (12 hours)"))]
    pub visibility_timeout_seconds: Option<u32>,
    /// Default 345600 (4 days).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 60 && self <= 1209600")
        .message("must be between 60 and 1209600"))]
    pub message_retention_seconds: Option<u32>,
    /// Receives before a message moves to the DLQ. Default 3.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 1 && self <= 1000")
        .message("must be between 1 and 1000"))]
    pub max_receive_count: Option<u32>,
    /// Default 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self <= 900").message("must be at most 900"))]
    pub delay_seconds: Option<u32>,
    /// DLQ retention. Default 1209600 (14 days, the SQS maximum).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 60 && self <= 1209600")
        .message("must be between 60 and 1209600"))]
    pub dead_letter_retention_seconds: Option<u32>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChannelStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// One per type (API conventions): merged by type, so another writer's condition is kept.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_arn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead_letter_queue_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead_letter_queue_arn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replies_queue_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replies_queue_arn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replies_dead_letter_queue_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replies_dead_letter_queue_arn: Option<String>,
    /// When a reconcile last found AWS in sync: refreshed with any status change, else at most
    /// every half resync (a write on every reconcile would wake the controller forever).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_synced: Option<String>,
}
