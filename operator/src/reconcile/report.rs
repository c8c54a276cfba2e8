//! The result vocabulary of a reconcile: the [`Change`]s made or planned, one [`Outcome`] per
//! subsystem (a message, or a [`Failure`] with its [`Reason`]), and the [`Outputs`] (where things
//! are). Everything above the engine (conditions, Events, the CLI's tables) reads these.
use crate::aws::AwsError;
use std::fmt;

/// One change to AWS, made (apply) or proposed (plan).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub kind: ChangeKind,
    /// e.g. `item ai-multi-comms-company-data-dev[ci-aaa-001/pi-aaa-001]`.
    pub object: String,
    /// Changed fields; secret values appear only as `value`.
    pub fields: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    Create,
    Update,
    Restore,
    Delete,
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verb = match self.kind {
            ChangeKind::Create => "+ create",
            ChangeKind::Update => "~ update",
            ChangeKind::Restore => "^ restore",
            ChangeKind::Delete => "- delete",
        };
        write!(f, "{verb} {}", self.object)?;
        if !self.fields.is_empty() {
            write!(f, ": {}", self.fields.join(", "))?;
        }
        Ok(())
    }
}

/// Why a subsystem is not in sync. `reason` is the condition reason users see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub reason: Reason,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// The manifest breaks a rule; fix the YAML.
    InvalidSpec,
    /// A referenced Kubernetes Secret or key does not exist.
    SecretNotFound,
    /// A referenced Kubernetes Secret is not bound to the resource (the tenancy rule in
    /// [`crate::desired::secret`]).
    SecretNotAllowed,
    /// The AWS object belongs to another resource or to nobody we know.
    OwnershipConflict,
    /// The AWS object exists in a shape we cannot use (e.g. a table with other keys); it is
    /// left untouched.
    Incompatible,
    /// AWS refused or failed the call after retries.
    AwsError,
    /// Waits for another subsystem of the same resource.
    Blocked,
    /// Other resources still use what this one would delete.
    InUse,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::InvalidSpec => "InvalidSpec",
            Reason::SecretNotFound => "SecretNotFound",
            Reason::SecretNotAllowed => "SecretNotAllowed",
            Reason::OwnershipConflict => "OwnershipConflict",
            Reason::Incompatible => "Incompatible",
            Reason::AwsError => "AwsError",
            Reason::Blocked => "Blocked",
            Reason::InUse => "InUse",
        }
    }

    /// A user error: retrying will not help until the input changes.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            Reason::InvalidSpec
                | Reason::SecretNotFound
                | Reason::SecretNotAllowed
                | Reason::OwnershipConflict
                | Reason::Incompatible
        )
    }
}

impl Failure {
    pub fn new(reason: Reason, message: impl Into<String>) -> Self {
        Failure { reason, message: message.into() }
    }
}

impl From<AwsError> for Failure {
    fn from(e: AwsError) -> Self {
        let retry = if e.retryable { " (transient)" } else { "" };
        Failure::new(Reason::AwsError, format!("{e}{retry}"))
    }
}

impl From<crate::aws::dynamodb::GetError> for Failure {
    fn from(e: crate::aws::dynamodb::GetError) -> Self {
        match e {
            crate::aws::dynamodb::GetError::Aws(e) => e.into(),
            missing => Failure::new(Reason::AwsError, missing.to_string()),
        }
    }
}

/// Outcome of one subsystem: a message when in sync, a failure otherwise.
pub type Outcome = Result<String, Failure>;

/// Where a resource's AWS objects are: what `-o json` prints and the controller writes to status.
/// Never a secret value.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Outputs {
    /// `updated_at` of the company-data record.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub record_version: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<crate::crd::company::SecretStatus>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue: Option<QueueOutput>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dead_letter_queue: Option<QueueOutput>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replies_queue: Option<QueueOutput>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replies_dead_letter_queue: Option<QueueOutput>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tables: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct QueueOutput {
    pub url: String,
    pub arn: String,
}

/// The result of reconciling one resource.
#[derive(Debug, Clone)]
pub struct Report {
    pub kind: &'static str,
    pub namespace: String,
    pub name: String,
    pub generation: Option<i64>,
    pub changes: Vec<Change>,
    /// Condition type (e.g. `RecordSynced`) and outcome, in order.
    pub subsystems: Vec<(&'static str, Outcome)>,
    /// Where things are, as far as this run saw them.
    pub outputs: Outputs,
}

impl Report {
    pub fn new(kind: &'static str, namespace: &str, name: &str, generation: Option<i64>) -> Self {
        Report {
            kind,
            namespace: namespace.to_string(),
            name: name.to_string(),
            generation,
            changes: vec![],
            subsystems: vec![],
            outputs: Outputs::default(),
        }
    }

    pub fn change(&mut self, kind: ChangeKind, object: impl Into<String>, fields: Vec<String>) {
        self.changes.push(Change { kind, object: object.into(), fields });
    }

    /// The failure that decides `Ready`: the first that is a cause, not a `Blocked` consequence.
    pub fn failure(&self) -> Option<&Failure> {
        self.failed_subsystem().map(|(_, failure)| failure)
    }

    /// The subsystem behind [`Report::failure`] and its failure.
    pub fn failed_subsystem(&self) -> Option<(&'static str, &Failure)> {
        let failures = || self.subsystems.iter().filter_map(|(t, o)| o.as_ref().err().map(|f| (*t, f)));
        failures().find(|(_, f)| f.reason != Reason::Blocked).or_else(|| failures().next())
    }

    pub fn is_ready(&self) -> bool {
        self.failure().is_none()
    }
}
