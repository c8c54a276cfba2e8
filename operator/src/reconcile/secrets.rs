//! Secrets Manager secrets of a resource: created when missing, restored when scheduled for
//! deletion, rewritten only when the stored value differs. Reports carry names, ARNs and
//! version ids, never values.
//!
//! All references are resolved before the first write, so a missing Secret writes nothing. The
//! secrets of an owner that existed before are all observed and claimed before the first write,
//! so a secret owned by someone else leaves the whole set untouched. A new owner's secrets
//! ([`Expect::New`]) are created without a read first (a create needs none, and cold applies
//! spent half their calls on reads that found nothing); a name found taken is then read and
//! claimed, so someone else's secret is still never written, but the secrets created before it
//! stay (ours, tagged, removed with the owner).
//!
//! The in-cluster controller remembers which secrets it verified, with a hash of the value
//! ([`VerifiedSecrets`]): a resync whose desired value is unchanged skips their reads until the
//! recheck interval has passed, so a resync costs about one AWS call per Company instead of two
//! per secret. A changed value (a rotated Kubernetes Secret) is never skipped.
use super::{ChangeKind, Claim, Failure, Outcome, Reason, Reconciling};
use crate::aws::secrets::{ObservedSecret, WriteError, WrittenSecret};
use crate::crd::company::SecretStatus;
use crate::desired::secret::{DesiredSecret, SecretSpec, SecretValues, UnusableSecret};
use crate::desired::{Owner, OWNER_TAG};
use secrecy::ExposeSecret;
use sha2::Digest;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

pub const SECRETS_SYNCED: &str = "SecretsSynced";

/// Secrets this process found (or made) ours and holding the desired value, by name. Only a
/// SHA-256 of name, value and owner, keyed with a random key of this process (so a memory dump
/// cannot be checked against guessed values; review r3, L9), is kept, in memory. `recheck`
/// zero: nothing is remembered. An entry is about 250 bytes (the controller holds four per
/// Company): the name is kept as a hash, and a different secret whose name hashed alike would
/// still fail the digest. An entry past its recheck interval is never answered from, so it is
/// dropped at the next write after an interval has passed: a secret a resource stopped using
/// (a channel taken out of a Company, a resource deleted while another process led) leaves
/// nothing behind, and the memo holds at most the secrets verified within two intervals.
#[derive(Clone)]
pub struct VerifiedSecrets {
    recheck: Duration,
    verified: Arc<Mutex<Memo>>,
    key: Arc<[u8; 32]>,
}

#[derive(Default)]
struct Memo {
    entries: HashMap<u64, Verified>,
    /// When entries past their interval were last dropped (`None`: never).
    pruned_at: Option<Instant>,
}

impl Default for VerifiedSecrets {
    fn default() -> Self {
        let mut key = [0u8; 32];
        key[..16].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
        key[16..].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
        VerifiedSecrets { recheck: Duration::ZERO, verified: Arc::default(), key: Arc::new(key) }
    }
}

struct Verified {
    digest: [u8; 32],
    arn: Box<str>,
    version_id: Option<Box<str>>,
    at: Instant,
}

impl VerifiedSecrets {
    pub fn rechecked_every(recheck: Duration) -> Self {
        VerifiedSecrets { recheck, ..VerifiedSecrets::default() }
    }

    /// Where `secret` stands, if it was verified within the recheck interval with this value
    /// and owner.
    fn recall(&self, secret: &DesiredSecret, owner: &Owner) -> Option<WrittenSecret> {
        let verified = self.verified.lock().unwrap_or_else(PoisonError::into_inner);
        let entry = verified.entries.get(&key(&secret.name))?;
        let fresh = entry.at.elapsed() < self.recheck && entry.digest == digest(&self.key, secret, owner);
        fresh.then(|| WrittenSecret {
            arn: entry.arn.to_string(),
            version_id: entry.version_id.as_deref().map(str::to_owned),
        })
    }

    fn remember(&self, secret: &DesiredSecret, owner: &Owner, written: &WrittenSecret) {
        self.remember_at(secret, owner, written, Instant::now());
    }

    fn remember_at(&self, secret: &DesiredSecret, owner: &Owner, written: &WrittenSecret, now: Instant) {
        if self.recheck.is_zero() {
            return;
        }
        let entry = Verified {
            digest: digest(&self.key, secret, owner),
            arn: written.arn.as_str().into(),
            version_id: written.version_id.as_deref().map(Box::from),
            at: now,
        };
        let mut memo = self.verified.lock().unwrap_or_else(PoisonError::into_inner);
        if memo.pruned_at.is_none_or(|at| now.saturating_duration_since(at) >= self.recheck) {
            let recheck = self.recheck;
            memo.entries.retain(|_, kept| now.saturating_duration_since(kept.at) < recheck);
            memo.pruned_at = Some(now);
        }
        memo.entries.insert(key(&secret.name), entry);
    }

    /// After a deletion (or anything else that changes the secret behind our back).
    pub fn forget(&self, name: &str) {
        self.verified.lock().unwrap_or_else(PoisonError::into_inner).entries.remove(&key(name));
    }
}

fn key(name: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    name.hash(&mut hasher);
    hasher.finish()
}

fn digest(key: &[u8; 32], secret: &DesiredSecret, owner: &Owner) -> [u8; 32] {
    let mut hash = sha2::Sha256::new();
    hash.update(key);
    // Name and owner hold no NUL, so the parts cannot run into each other.
    for part in [secret.name.as_str(), &owner.to_string(), secret.value.expose_secret()] {
        hash.update(part.as_bytes());
        hash.update([0]);
    }
    hash.finalize().into()
}

/// What the caller knows of an owner's secrets before reading them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// Nothing: every secret is read and claimed before the first write.
    Unknown,
    /// The owner is new (its record does not exist yet), so its secrets most likely do not
    /// either: each is created without a read, and read only if its name is taken.
    New,
}

impl From<UnusableSecret> for Failure {
    /// The reason says which: missing, or not bound to the resource.
    fn from(unusable: UnusableSecret) -> Self {
        let reason = match unusable {
            UnusableSecret::NotAllowed { .. } => Reason::SecretNotAllowed,
            UnusableSecret::Secret { .. } | UnusableSecret::Key { .. } => Reason::SecretNotFound,
        };
        Failure::new(reason, unusable.to_string())
    }
}

pub async fn sync(r: &mut Reconciling<'_>, specs: &[SecretSpec], values: &SecretValues, expect: Expect) -> Outcome {
    let desired = specs.iter().map(|spec| spec.resolve(values, &r.owner)).collect::<Result<Vec<_>, _>>()?;
    let mut claimed = Vec::with_capacity(desired.len());
    for secret in &desired {
        if let Some(written) = r.ctx.verified_secrets.recall(secret, &r.owner) {
            record(r, &secret.name, written);
            continue;
        }
        // A `plan` writes nothing, so it cannot learn from a create that the name is free.
        if expect == Expect::New && !r.is_plan() {
            create(r, secret).await?;
            continue;
        }
        let (observed, claim) = observe_and_claim(r, secret).await?.unzip();
        claimed.push((secret, observed, claim));
    }
    for (secret, observed, claim) in claimed {
        match (observed, claim) {
            (Some(observed), Some(claim)) => update(r, secret, observed, claim).await?,
            _ => create(r, secret).await?,
        }
    }
    Ok(match desired.len() {
        0 => "no secrets referenced".to_string(),
        1 => "1 secret in sync".to_string(),
        n => format!("{n} secrets in sync"),
    })
}

fn owner_tags(owner: &Owner) -> BTreeMap<&'static str, String> {
    BTreeMap::from([(OWNER_TAG, owner.to_string())])
}

/// The secret, as DescribeSecret reports it, and whether the resource may manage it; `None`:
/// absent.
async fn observe_and_claim(
    r: &Reconciling<'_>,
    secret: &DesiredSecret,
) -> Result<Option<(ObservedSecret, Claim)>, Failure> {
    let Some(observed) = r.ctx.aws.secrets.describe(&secret.name).await? else { return Ok(None) };
    let marker = observed.tags.get(OWNER_TAG).map(String::as_str);
    let claim = r.claim(marker, &format!("secret {}", secret.name))?;
    Ok(Some((observed, claim)))
}

/// Creates the secret. If the name is taken (by someone else, by our own create whose answer
/// was lost, or by a secret scheduled for deletion), it is read and claimed first, then
/// brought in line like any existing secret.
async fn create(r: &mut Reconciling<'_>, secret: &DesiredSecret) -> Result<(), Failure> {
    let sm = &r.ctx.aws.secrets;
    let tags = owner_tags(&r.owner);
    let object = format!("secret {}", secret.name);
    let created =
        r.write(ChangeKind::Create, object, vec!["value".into()], |w| sm.create(w, &secret.name, &secret.value, &tags));
    match created.await {
        Ok(written) => {
            if let Some(written) = written {
                verified(r, secret, written);
            }
            Ok(())
        }
        Err(WriteError::AlreadyExists | WriteError::ScheduledForDeletion) => {
            let (observed, claim) = observe_and_claim(r, secret)
                .await?
                .ok_or_else(|| Failure::new(Reason::AwsError, format!("secret {} vanished", secret.name)))?;
            update(r, secret, observed, claim).await
        }
        Err(WriteError::Aws(e)) => Err(e.into()),
    }
}

/// Brings an existing, claimed secret in line: restore, value, ownership tag.
async fn update(
    r: &mut Reconciling<'_>,
    secret: &DesiredSecret,
    observed: ObservedSecret,
    claim: Claim,
) -> Result<(), Failure> {
    let ctx = r.ctx;
    let sm = &ctx.aws.secrets;
    let object = format!("secret {}", secret.name);
    // AWS refuses every other write (tags included) until a pending deletion is cancelled, and a
    // secret still scheduled for deletion cannot be read (in a `plan`, it stays so).
    let readable = if observed.scheduled_for_deletion {
        r.write(ChangeKind::Restore, &object, vec![], |w| sm.restore(w, &secret.name)).await?.is_some()
    } else {
        true
    };
    if claim == Claim::Adopting {
        let tags = owner_tags(&r.owner);
        let fields = vec![format!("tag {OWNER_TAG} (adopted)")];
        r.write(ChangeKind::Update, &object, fields, |w| sm.tag(w, &secret.name, &tags)).await?;
    }
    let (stored, version_id) = if readable { sm.current_value(&secret.name).await? } else { (None, None) };
    if stored.as_ref().is_some_and(|s| secret.matches(s.expose_secret())) {
        verified(r, secret, WrittenSecret { arn: observed.arn, version_id });
        return Ok(());
    }
    let put = |w| sm.put_value(w, &secret.name, &secret.value);
    let written = match r.write(ChangeKind::Update, &object, vec!["value".into()], put).await {
        // Deleted between our read and this write (AWS refuses; moto does not).
        Err(WriteError::ScheduledForDeletion) => {
            r.write(ChangeKind::Restore, &object, vec![], |w| sm.restore(w, &secret.name)).await?;
            let put = |w| sm.put_value(w, &secret.name, &secret.value);
            r.write(ChangeKind::Update, &object, vec!["value".into()], put).await
        }
        other => other,
    }
    .map_err(|e| match e {
        WriteError::Aws(e) => e.into(),
        WriteError::ScheduledForDeletion | WriteError::AlreadyExists => {
            Failure::new(Reason::AwsError, format!("{object} is scheduled for deletion and could not be restored"))
        }
    })?;
    if let Some(written) = written {
        verified(r, secret, written);
    }
    Ok(())
}

/// A secret in sync: reported, and remembered as verified (only when `apply` made it so; a
/// `plan` may have left a pending deletion or an adoption undone).
fn verified(r: &mut Reconciling<'_>, secret: &DesiredSecret, written: WrittenSecret) {
    if !r.is_plan() {
        r.ctx.verified_secrets.remember(secret, &r.owner, &written);
    }
    record(r, &secret.name, written);
}

fn record(r: &mut Reconciling<'_>, name: &str, written: WrittenSecret) {
    r.outputs().secrets.push(SecretStatus { name: name.to_string(), arn: written.arn, version_id: written.version_id });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_memo_keeps_a_digest_keyed_by_this_process_not_a_plain_hash_of_the_value() {
        let secret = DesiredSecret { name: "p/router-api-key/c/p-dev".into(), value: "sk-value".to_string().into() };
        let owner = Owner { kind: "Company", namespace: "ns".into(), name: "c".into() };
        let (one, other) = (VerifiedSecrets::default(), VerifiedSecrets::default());
        assert_eq!(digest(&one.key, &secret, &owner), digest(&one.key, &secret, &owner));
        assert_ne!(digest(&one.key, &secret, &owner), digest(&other.key, &secret, &owner), "another process's key");
        let mut plain = sha2::Sha256::new();
        for part in [secret.name.as_str(), &owner.to_string(), "sk-value"] {
            plain.update(part.as_bytes());
            plain.update([0]);
        }
        assert_ne!(<[u8; 32]>::from(plain.finalize()), digest(&one.key, &secret, &owner), "not guessable offline");
    }

    #[test]
    fn the_memo_drops_secrets_no_longer_verified_within_the_recheck_interval() {
        let recheck = Duration::from_secs(600);
        let memo = VerifiedSecrets::rechecked_every(recheck);
        let owner = Owner { kind: "Company", namespace: "ns".into(), name: "c".into() };
        let written = WrittenSecret { arn: "arn:aws:secretsmanager:eu-west-2:1:secret:x".into(), version_id: None };
        let secret = |name: &str| DesiredSecret { name: name.into(), value: "v".to_string().into() };
        let start = Instant::now();
        // A channel's secret, verified once; then the Company stops using the channel.
        memo.remember_at(&secret("dropped"), &owner, &written, start);
        memo.remember_at(&secret("kept"), &owner, &written, start + recheck / 2);
        let held = || memo.verified.lock().unwrap_or_else(PoisonError::into_inner).entries.len();
        assert_eq!(held(), 2);
        for resync in 1..=3u32 {
            memo.remember_at(&secret("kept"), &owner, &written, start + recheck * resync + recheck / 2);
        }
        assert_eq!(held(), 1, "only the secret still verified is remembered");
        assert!(memo.verified.lock().unwrap_or_else(PoisonError::into_inner).entries.contains_key(&key("kept")));
    }
}
