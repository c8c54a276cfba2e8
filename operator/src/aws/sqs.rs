//! SQS: the channel queues.
use super::{AwsError, Writes};
use aws_sdk_sqs::types::QueueAttributeName;
use std::collections::{BTreeMap, HashMap};

#[derive(Clone)]
pub struct Sqs {
    client: aws_sdk_sqs::Client,
}

/// A queue as SQS reports it.
#[derive(Debug, Clone, Default)]
pub struct ObservedQueue {
    pub url: String,
    pub attributes: HashMap<String, String>,
    pub tags: HashMap<String, String>,
}

impl ObservedQueue {
    pub fn arn(&self) -> Option<&str> {
        self.attributes.get("QueueArn").map(String::as_str)
    }
}

impl Sqs {
    pub fn new(client: aws_sdk_sqs::Client) -> Self {
        Sqs { client }
    }

    /// The queue's URL, attributes and tags; `None` if there is no such queue.
    pub async fn observe(&self, name: &str) -> Result<Option<ObservedQueue>, AwsError> {
        let url = match self.client.get_queue_url().queue_name(name).send().await {
            Ok(out) => out.queue_url.unwrap_or_default(),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_queue_does_not_exist()) => return Ok(None),
            Err(e) => return Err(AwsError::from_sdk("GetQueueUrl", name, e)),
        };
        let attributes = self
            .client
            .get_queue_attributes()
            .queue_url(&url)
            .attribute_names(QueueAttributeName::All)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("GetQueueAttributes", name, e))?
            .attributes
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k.as_str().to_string(), v))
            .collect();
        let tags = self
            .client
            .list_queue_tags()
            .queue_url(&url)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("ListQueueTags", name, e))?
            .tags
            .unwrap_or_default();
        Ok(Some(ObservedQueue { url, attributes, tags }))
    }

    /// Creates the queue with its attributes and tags, and returns it as observed afterwards.
    pub async fn create(
        &self,
        _: Writes,
        name: &str,
        attributes: &BTreeMap<&'static str, String>,
        tags: &BTreeMap<&'static str, String>,
    ) -> Result<ObservedQueue, AwsError> {
        let mut request = self.client.create_queue().queue_name(name);
        for (k, v) in attributes {
            request = request.attributes(QueueAttributeName::from(*k), v);
        }
        for (k, v) in tags {
            request = request.tags(*k, v);
        }
        request.send().await.map_err(|e| AwsError::from_sdk("CreateQueue", name, e))?;
        self.observe(name).await?.ok_or_else(|| {
            AwsError::local("GetQueueUrl", name, "QueueDoesNotExist", "created queue is not visible yet")
        })
    }

    pub async fn set_attributes(
        &self,
        _: Writes,
        name: &str,
        url: &str,
        attributes: &BTreeMap<&'static str, String>,
    ) -> Result<(), AwsError> {
        let mut request = self.client.set_queue_attributes().queue_url(url);
        for (k, v) in attributes {
            request = request.attributes(QueueAttributeName::from(*k), v);
        }
        request.send().await.map_err(|e| AwsError::from_sdk("SetQueueAttributes", name, e))?;
        Ok(())
    }

    pub async fn tag(
        &self,
        _: Writes,
        name: &str,
        url: &str,
        tags: &BTreeMap<&'static str, String>,
    ) -> Result<(), AwsError> {
        let mut request = self.client.tag_queue().queue_url(url);
        for (k, v) in tags {
            request = request.tags(*k, v);
        }
        request.send().await.map_err(|e| AwsError::from_sdk("TagQueue", name, e))?;
        Ok(())
    }

    /// Deletes the queue and its messages. A queue already gone counts as deleted.
    pub async fn delete(&self, _: Writes, name: &str, url: &str) -> Result<(), AwsError> {
        match self.client.delete_queue().queue_url(url).send().await {
            Ok(_) => Ok(()),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_queue_does_not_exist()) => Ok(()),
            Err(e) => Err(AwsError::from_sdk("DeleteQueue", name, e)),
        }
    }
}
