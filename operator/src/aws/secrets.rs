//! Secrets Manager: the secrets a resource writes. Values travel as `SecretString` and are
//! exposed only to the SDK call that sends them.
use super::{AwsError, Writes};
use aws_sdk_secretsmanager::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_secretsmanager::types::Tag;
use secrecy::{ExposeSecret, SecretString};
use std::collections::{BTreeMap, HashMap};

#[derive(Clone)]
pub struct SecretsManager {
    client: aws_sdk_secretsmanager::Client,
}

/// A secret as DescribeSecret reports it.
#[derive(Debug, Clone)]
pub struct ObservedSecret {
    pub arn: String,
    pub tags: HashMap<String, String>,
    /// Scheduled for deletion (it can be restored until the recovery window ends).
    pub scheduled_for_deletion: bool,
}

/// Where the secret was written: never its value.
#[derive(Debug, Clone, PartialEq)]
pub struct WrittenSecret {
    pub arn: String,
    pub version_id: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// AWS refuses writes to a secret scheduled for deletion until it is restored.
    #[error("secret is scheduled for deletion")]
    ScheduledForDeletion,
    /// CreateSecret found the name taken.
    #[error("secret already exists")]
    AlreadyExists,
    #[error(transparent)]
    Aws(#[from] AwsError),
}

/// Maps a failed write. AWS answers InvalidRequestException, worded about deletion, to writes to
/// (or creation over) a secret that is scheduled for deletion.
fn write_error<E, R>(operation: &'static str, name: &str, err: SdkError<E, R>) -> WriteError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug + 'static,
{
    let scheduled_for_deletion = err.code() == Some("InvalidRequestException")
        && err.message().is_some_and(|m| m.contains("deletion") || m.contains("deleted"));
    if scheduled_for_deletion {
        WriteError::ScheduledForDeletion
    } else if err.code() == Some("ResourceExistsException") {
        WriteError::AlreadyExists
    } else {
        AwsError::from_sdk(operation, name, err).into()
    }
}

fn aws_tags(tags: &BTreeMap<&'static str, String>) -> Vec<Tag> {
    tags.iter().map(|(k, v)| Tag::builder().key(*k).value(v).build()).collect()
}

impl SecretsManager {
    pub fn new(client: aws_sdk_secretsmanager::Client) -> Self {
        SecretsManager { client }
    }

    pub async fn describe(&self, name: &str) -> Result<Option<ObservedSecret>, AwsError> {
        match self.client.describe_secret().secret_id(name).send().await {
            Ok(out) => Ok(Some(ObservedSecret {
                arn: out.arn.unwrap_or_default(),
                tags: out
                    .tags
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(|t| Some((t.key?, t.value.unwrap_or_default())))
                    .collect(),
                scheduled_for_deletion: out.deleted_date.is_some(),
            })),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_resource_not_found_exception()) => Ok(None),
            Err(e) => Err(AwsError::from_sdk("DescribeSecret", name, e)),
        }
    }

    /// The current value and its version id.
    pub async fn current_value(&self, name: &str) -> Result<(Option<SecretString>, Option<String>), AwsError> {
        let out = self
            .client
            .get_secret_value()
            .secret_id(name)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("GetSecretValue", name, e))?;
        Ok((out.secret_string.map(SecretString::from), out.version_id))
    }

    pub async fn create(
        &self,
        _: Writes,
        name: &str,
        value: &SecretString,
        tags: &BTreeMap<&'static str, String>,
    ) -> Result<WrittenSecret, WriteError> {
        match self
            .client
            .create_secret()
            .name(name)
            .secret_string(value.expose_secret())
            .set_tags(Some(aws_tags(tags)))
            .send()
            .await
        {
            Ok(out) => Ok(WrittenSecret { arn: out.arn.unwrap_or_default(), version_id: out.version_id }),
            Err(e) => Err(write_error("CreateSecret", name, e)),
        }
    }

    pub async fn put_value(&self, _: Writes, name: &str, value: &SecretString) -> Result<WrittenSecret, WriteError> {
        match self.client.put_secret_value().secret_id(name).secret_string(value.expose_secret()).send().await {
            Ok(out) => Ok(WrittenSecret { arn: out.arn.unwrap_or_default(), version_id: out.version_id }),
            Err(e) => Err(write_error("PutSecretValue", name, e)),
        }
    }

    pub async fn restore(&self, _: Writes, name: &str) -> Result<(), AwsError> {
        self.client
            .restore_secret()
            .secret_id(name)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("RestoreSecret", name, e))?;
        Ok(())
    }

    pub async fn tag(&self, _: Writes, name: &str, tags: &BTreeMap<&'static str, String>) -> Result<(), AwsError> {
        self.client
            .tag_resource()
            .secret_id(name)
            .set_tags(Some(aws_tags(tags)))
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("TagResource", name, e))?;
        Ok(())
    }

    /// Schedules deletion with a recovery window: re-creating the resource within it restores
    /// the secret (see the reconcile's restore path). A secret already gone counts as deleted.
    pub async fn delete(&self, _: Writes, name: &str, recovery_window_days: i64) -> Result<(), AwsError> {
        match self.client.delete_secret().secret_id(name).recovery_window_in_days(recovery_window_days).send().await {
            Ok(_) => Ok(()),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_resource_not_found_exception()) => Ok(()),
            Err(e) => Err(AwsError::from_sdk("DeleteSecret", name, e)),
        }
    }
}
