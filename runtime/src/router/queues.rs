//! The channel queues, found by the names the operator created them under.
use super::error::RouterError;
use crate::wire::{ChannelKind, Naming};
use aws_sdk_sqs::types::MessageAttributeValue;
use std::collections::HashMap;

pub struct Queues {
    client: aws_sdk_sqs::Client,
    urls: HashMap<ChannelKind, String>,
}

impl Queues {
    /// Looks up each channel's queue URL once. A channel whose queue does not exist stays
    /// unconfigured (its requests get CONFIGURATION_ERROR), as in the original.
    pub async fn resolve(client: aws_sdk_sqs::Client, naming: &Naming) -> Self {
        let mut urls = HashMap::new();
        for channel in [ChannelKind::Whatsapp, ChannelKind::Sms, ChannelKind::Email] {
            let name = naming.channel_queue(channel);
            match client.get_queue_url().queue_name(&name).send().await {
                Ok(out) => {
                    urls.insert(channel, out.queue_url.unwrap_or_default());
                }
                Err(e) => {
                    tracing::warn!(queue = %name, error = %aws_sdk_sqs::error::DisplayErrorContext(&e), "queue not found; channel unavailable")
                }
            }
        }
        Queues { client, urls }
    }

    pub fn is_configured(&self, channel: ChannelKind) -> bool {
        self.urls.contains_key(&channel)
    }

    pub async fn send(
        &self,
        channel: ChannelKind,
        body: String,
        attributes: &[(&str, String)],
    ) -> Result<(), RouterError> {
        let url = self.urls.get(&channel).ok_or_else(|| RouterError::queue_not_configured(channel.as_str()))?;
        let mut request = self.client.send_message().queue_url(url).message_body(body);
        for (name, value) in attributes {
            let attribute = MessageAttributeValue::builder()
                .data_type("String")
                .string_value(value)
                .build()
                .map_err(|_| RouterError::queue_error())?;
            request = request.message_attributes(*name, attribute);
        }
        request.send().await.map_err(|e| {
            tracing::error!(error = %aws_sdk_sqs::error::DisplayErrorContext(&e), %channel, "SendMessage failed");
            RouterError::queue_error()
        })?;
        Ok(())
    }
}
