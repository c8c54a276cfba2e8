//! The sweep: no acknowledged message waits forever for a turn. A staged message normally has a
//! trigger on its way (the webhook's, a deferral's, or the one a turn sends for what arrived
//! meanwhile), but a reply processor killed on its trigger's last receive lets SQS dead-letter
//! that trigger, and a trigger's send can fail after the message was staged. Every reply
//! processor therefore looks, once per interval, for its channel's messages staged longer ago
//! than that interval and sends each such conversation a trigger. The trigger lock makes this
//! safe to run anywhere and often: a conversation whose trigger is on its way (its lock
//! unexpired) gets none, and a second trigger for one conversation finds the lease or nothing
//! left to answer, never a second send.
use super::turn::ReplyProcessor;
use multicomms_wire::conversation::ConversationKey;
use multicomms_wire::timestamp::epoch_seconds;
use std::collections::BTreeSet;
use std::time::Duration;

impl ReplyProcessor {
    /// One sweep: a trigger (no delay) for each of this channel's conversations with a message
    /// staged before `older_than` ago and no trigger on its way. Returns how many were sent.
    pub async fn sweep(&self, older_than: Duration) -> usize {
        let before_ms = (epoch_seconds().saturating_sub(older_than.as_secs())) * 1000;
        let stranded = match self.staging.staged_before(before_ms).await {
            Ok(stranded) => stranded,
            Err(e) => {
                tracing::warn!(error = %e, "the sweep could not read the stage table; trying again next interval");
                return 0;
            }
        };
        let mut conversations = BTreeSet::new();
        for fragment in stranded {
            if self.is_this_channels(&fragment.key(), fragment.channel).await {
                conversations.insert((fragment.primary_channel, fragment.conversation_id));
            }
        }
        let mut triggered = 0;
        for (primary_channel, conversation_id) in conversations {
            let key = ConversationKey { primary_channel, conversation_id };
            match self.staging.trigger_if_expired(self.channel, &key).await {
                Ok(true) => {
                    triggered += 1;
                    self.metrics.replies_swept.inc();
                    tracing::warn!(conversation_id = %key.conversation_id, "staged messages had no trigger; sent one");
                }
                Ok(false) => {}
                Err(e) => tracing::warn!(conversation_id = %key.conversation_id, error = %e, "sweep trigger not sent"),
            }
        }
        triggered
    }

    /// Whether a staged message is this processor's to trigger: its channel, or for a row staged
    /// before fragments named one, its conversation's.
    async fn is_this_channels(&self, key: &ConversationKey, channel: Option<multicomms_wire::ChannelKind>) -> bool {
        match channel {
            Some(channel) => channel == self.channel,
            None => self.store.record(key).await.ok().flatten().is_some_and(|r| r.channel_method == self.channel),
        }
    }
}

/// Sweeps every `interval` (for messages staged longer ago than that), for as long as the pod runs.
pub async fn run(processor: &ReplyProcessor, interval: Duration) {
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    loop {
        ticks.tick().await;
        processor.sweep(interval).await;
    }
}
