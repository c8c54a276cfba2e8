//! Company → its secrets and its company-data record.
//!
//! Order matters: the record is read first, so a resource claiming ids another resource owns
//! changes nothing at all (and a Company without a record is new: its secrets are created
//! without reading them first); then the secrets are written; the record last, because it
//! points clients and processors at those secrets.
use super::secrets::{self, Expect, SECRETS_SYNCED};
use super::validate;
use super::{ChangeKind, Claim, Context, Failure, Outcome, Reason, Reconciling, Report};
use crate::aws::dynamodb::{GetError, PutError, WriteCondition};
use crate::crd::Company;
use crate::desired;
use crate::desired::secret::SecretValues;
use crate::diff;
use multicomms_wire::company::{record_key, CREATED_AT, MANAGED_BY, PARTITION_KEY, TIMESTAMPS, UPDATED_AT};
use multicomms_wire::{CompanyRecord, Item};
use secrecy::ExposeSecret;

pub const RECORD_SYNCED: &str = "RecordSynced";

pub async fn reconcile(ctx: &Context, company: &Company, values: &SecretValues) -> Report {
    let mut r = Reconciling::begin(ctx, "Company", company);
    let valid = ctx.validated.check(company, validate::company).and_then(|()| ctx.ai_endpoints.check(company));
    if let Err(invalid) = valid {
        return r.finish(vec![(SECRETS_SYNCED, Err(invalid.clone())), (RECORD_SYNCED, Err(invalid))]);
    }
    // The record keeps a hash of the router API key (a missing Secret is reported by the secrets).
    let api_key =
        company.spec.api_key.as_ref().and_then(|key| values.get("spec.apiKey", &key.secret_key_ref, &r.owner).ok());
    // A missing or short agent token holds the record back (below), named by its field.
    let agents = agent_tokens(company, values, &r.owner);
    let hashed = desired::company::Hashed {
        api_key: api_key.map(ExposeSecret::expose_secret),
        agents: agents.iter().flatten().map(|(name, token)| (*name, token.expose_secret())).collect(),
    };
    let desired = desired::company::record(&company.spec, &ctx.naming, &r.owner, &hashed);

    let write = match plan_record(&mut r, desired).await {
        Ok(write) => write,
        Err(failure) => {
            let blocked = Failure::new(Reason::Blocked, format!("waiting for {RECORD_SYNCED}"));
            return r.finish(vec![(SECRETS_SYNCED, Err(blocked)), (RECORD_SYNCED, Err(failure))]);
        }
    };
    let specs = desired::company::secrets(&company.spec, &ctx.naming);
    let new_company = write.as_ref().is_some_and(|w| matches!(w.condition, WriteCondition::Absent { .. }));
    let expect = if new_company { Expect::New } else { Expect::Unknown };
    let secrets = secrets::sync(&mut r, &specs, values, expect).await;
    let record = match (&secrets, write, agents) {
        (Err(_), Some(_), _) => Err(Failure::new(Reason::Blocked, format!("waiting for {SECRETS_SYNCED}"))),
        (_, _, Err(unusable)) => Err(unusable),
        (_, None, _) => Ok("record up to date".to_string()),
        (_, Some(write), _) => write_record(&mut r, write).await,
    };
    r.finish(vec![(SECRETS_SYNCED, secrets), (RECORD_SYNCED, record)])
}

/// The shortest agent token taken: a token is a password that is never typed twice, so it is
/// long and random.
pub const MIN_AGENT_TOKEN_CHARS: usize = 32;

/// Each agent's name and token, from Secrets bound to the Company; the first agent whose token
/// is missing, unbound or short fails the whole record (named by its field, never its value), so
/// a half-configured list never replaces a working one.
fn agent_tokens<'a>(
    company: &'a Company,
    values: &'a SecretValues,
    owner: &crate::desired::Owner,
) -> Result<Vec<(&'a str, &'a secrecy::SecretString)>, Failure> {
    let mut agents = Vec::new();
    for (i, agent) in company.spec.agents.iter().enumerate() {
        let field = format!("spec.agents[{i}].token");
        let token = values.get(&field, &agent.token.secret_key_ref, owner)?;
        if token.expose_secret().chars().count() < MIN_AGENT_TOKEN_CHARS {
            let why = format!("{field}: the token must be at least {MIN_AGENT_TOKEN_CHARS} characters");
            return Err(Failure::new(Reason::InvalidSpec, why));
        }
        agents.push((agent.name.as_str(), token));
    }
    Ok(agents)
}

/// A put that would bring the record up to date, and the change it makes.
struct RecordWrite {
    table: String,
    object: String,
    record: CompanyRecord,
    condition: WriteCondition,
    kind: ChangeKind,
    fields: Vec<String>,
}

/// Reads the record, checks ownership and diffs. `Ok(None)`: already up to date.
async fn plan_record(r: &mut Reconciling<'_>, mut record: CompanyRecord) -> Result<Option<RecordWrite>, Failure> {
    let table = r.ctx.naming.company_data_table();
    let object = format!("item {table}[{}/{}]", record.company_id, record.project_id);
    let key = record_key(&record.company_id, &record.project_id);
    let observed = match r.ctx.aws.dynamodb.get_item(&table, key).await {
        // No table yet (a `plan` before the first `apply`): no record either. (`apply` creates
        // the tables first; were one still missing, the write would say so.)
        Err(GetError::TableMissing(_)) => None,
        other => other?,
    };
    let text = |item: &Item, name: &str| item.get(name).and_then(|v| v.as_s().ok()).cloned();

    let Some(item) = observed else {
        let condition = WriteCondition::Absent { partition_key: PARTITION_KEY };
        let (kind, fields) = (ChangeKind::Create, vec![]);
        return Ok(Some(RecordWrite { table, object, record, condition, kind, fields }));
    };
    let claim = r.claim(text(&item, MANAGED_BY).as_deref(), &object)?;
    let desired_item = record.to_item().map_err(|e| Failure::new(Reason::InvalidSpec, format!("{object}: {e}")))?;
    let fields = diff::item_fields(&desired_item, &item, &TIMESTAMPS);
    if fields.is_empty() {
        let version = text(&item, UPDATED_AT).unwrap_or_default();
        r.outputs().record_version = Some(version);
        return Ok(None);
    }
    record.created_at = text(&item, CREATED_AT).unwrap_or_default();
    // Written only if nobody took the item over since it was read.
    let expected = (claim == Claim::Ours).then(|| r.owner.to_string());
    let condition = WriteCondition::Owner { partition_key: PARTITION_KEY, attribute: MANAGED_BY, expected };
    Ok(Some(RecordWrite { table, object, record, condition, kind: ChangeKind::Update, fields }))
}

async fn write_record(r: &mut Reconciling<'_>, write: RecordWrite) -> Outcome {
    let RecordWrite { table, object, mut record, condition, kind, fields } = write;
    let now = multicomms_wire::timestamp::now();
    if record.created_at.is_empty() {
        record.created_at = now.clone();
    }
    record.updated_at = now;
    let item = record.to_item().map_err(|e| Failure::new(Reason::InvalidSpec, format!("{object}: {e}")))?;
    let conflict = format!("{object} was created or taken over by another writer meanwhile; left untouched");
    let (ctx, written) = (r.ctx, &record);
    let put = |w| async move {
        match ctx.aws.dynamodb.put_item(w, &table, item, condition).await {
            Ok(()) => Ok(()),
            // An SDK retry of a put whose first answer was lost fails the condition on our own
            // write: the item then carries our marker and the very timestamp just written.
            Err(PutError::ConditionFailed) if is_our_write(ctx, &table, written).await? => Ok(()),
            Err(PutError::ConditionFailed) => Err(Failure::new(Reason::OwnershipConflict, conflict)),
            Err(PutError::Aws(e)) => Err(e.into()),
        }
    };
    match r.write(kind, object, fields, put).await? {
        None => Ok("record would be written".into()),
        Some(()) => {
            r.outputs().record_version = Some(record.updated_at);
            Ok("record written".into())
        }
    }
}

/// Whether the stored record is `written`, as this reconcile wrote it.
async fn is_our_write(ctx: &Context, table: &str, written: &CompanyRecord) -> Result<bool, Failure> {
    let stored = ctx.aws.dynamodb.get_item(table, record_key(&written.company_id, &written.project_id)).await?;
    let text = |item: &Item, name: &str| item.get(name).and_then(|v| v.as_s().ok()).cloned();
    Ok(stored.is_some_and(|item| {
        text(&item, MANAGED_BY) == written.managed_by && text(&item, UPDATED_AT).as_ref() == Some(&written.updated_at)
    }))
}
