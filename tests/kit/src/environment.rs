//! A fresh environment on the emulator: the example Channels and Company from config/ applied
//! by the operator's own reconcile under a unique prefix, so tests run side by side.
//! Tests fail rather than skip when the emulator is missing.
use multicomms_operator::cli::manifests::{self, Manifests};
use multicomms_operator::reconcile::{Context, Mode};
use multicomms_runtime::router::app::{AppState, RouterSettings};
use multicomms_wire::Naming;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The router API key of the example company (config/examples/local/secrets.yaml).
pub const API_KEY: &str = "local-demo-router-key-not-a-secret";
/// The example company's agent carol's token (config/examples/local).
pub const AGENT_TOKEN: &str = "local-demo-agent-carol-token-not-a-secret";
/// The key the example company's events are signed with when it names a webhook.
pub const EVENTS_SIGNING_SECRET: &str = "local-demo-events-signing-secret-not-a-secret";

/// The SDK configuration the binaries use (standard AWS environment), after checking that it
/// points at the local emulator: tests must never reach a real account, and must fail rather
/// than skip when the emulator is missing.
pub async fn emulator_config() -> aws_config::SdkConfig {
    let endpoint = std::env::var("AWS_ENDPOINT_URL").unwrap_or_default();
    assert!(
        endpoint.starts_with("http://127.0.0.1:") || endpoint.starts_with("http://localhost:"),
        "AWS_ENDPOINT_URL must point at the local moto emulator (got {endpoint:?}); \
         run the tests with scripts/test.sh, which starts it"
    );
    multicomms_operator::aws::load_config().await
}

/// `config` with its AWS endpoint moved to `endpoint` (a fault proxy in front of the emulator).
/// Marked as set in code: an endpoint from the environment (`AWS_ENDPOINT_URL`) would otherwise
/// win over one changed on a loaded configuration.
pub fn with_endpoint(config: &aws_config::SdkConfig, endpoint: &str) -> aws_config::SdkConfig {
    let mut builder = config.to_builder();
    builder.set_endpoint_url(Some(endpoint.to_string()));
    builder.insert_origin("endpoint_url", aws_types::origin::Origin::shared_config());
    builder.build()
}

/// A naming no other test uses (`letter` + 10 random hex digits as the prefix, environment
/// `test`), so tests run side by side on one emulator.
pub fn unique_naming(letter: char) -> Naming {
    Naming::new(format!("{letter}{}", &uuid::Uuid::new_v4().simple().to_string()[..10]), "test")
}

pub fn repo_root() -> PathBuf {
    let kit = Path::new(env!("CARGO_MANIFEST_DIR"));
    kit.parent().and_then(Path::parent).expect("the workspace root (tests/kit is two levels down)").to_path_buf()
}

/// A workspace binary next to the running test executable (target/<profile>/).
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable");
    let profile_dir = exe.parent().and_then(Path::parent).expect("target/<profile>");
    let binary = profile_dir.join(name);
    assert!(binary.exists(), "{} is missing: run the tests with scripts/test.sh, which builds it", binary.display());
    binary
}

/// The example manifests (channels, companies, local Secrets).
pub fn example_manifests() -> Manifests {
    let paths = ["config/channels", "config/companies", "config/examples/local"].map(|p| repo_root().join(p));
    manifests::load(&paths, "multicomms-dev").expect("the examples load")
}

/// The example Company's YAML as the Company `name`, naming Secrets of its own (`<name>-router`,
/// `<name>-twilio`, `<name>-sendgrid`); with [`example_company_secrets_yaml`], what a generated
/// Company of a benchmark needs. Its ids and display names are still the example's.
pub fn example_company_yaml(name: &str) -> String {
    let path = repo_root().join("config/companies/cucumber-recruitment-clarify-cv.yaml");
    let template = std::fs::read_to_string(path).expect("the example Company");
    template
        .replace("name: cucumber-recruitment-clarify-cv", &format!("name: {name}"))
        .replace("{name: cucumber-recruitment-", &format!("{{name: {name}-"))
}

/// The example Company's local Secrets (config/examples/local) as the Secrets of Company `name`,
/// bound to it: the YAML documents [`example_company_yaml`]'s Company reads.
pub fn example_company_secrets_yaml(name: &str) -> String {
    let text = std::fs::read_to_string(repo_root().join("config/examples/local/secrets.yaml")).expect("Secrets");
    let documents =
        text.split("\n---\n").filter(|d| d.contains("multicomms.io/company: cucumber-recruitment-clarify-cv"));
    let renamed = documents.map(|d| {
        d.replace("multicomms.io/company: cucumber-recruitment-clarify-cv", &format!("multicomms.io/company: {name}"))
            .replace("name: cucumber-recruitment-", &format!("name: {name}-"))
    });
    renamed.collect::<Vec<_>>().join("\n---\n")
}

/// A copy of the example Company named `name`, reading its own copies of the example Company's
/// Secrets (`<name>-router`, `<name>-twilio`, `<name>-sendgrid`, `<name>-agents`, same values), which are added
/// to `manifests` bound to it as a platform's secret tooling binds them: a Company reads only
/// Secrets bound to it. The copy is returned, not added.
pub fn company_copy(manifests: &mut Manifests, name: &str) -> multicomms_operator::crd::Company {
    use multicomms_operator::crd::SecretKeyRef;
    use multicomms_operator::desired::secret::{Binding, COMPANY_LABEL};
    let mut example = example_manifests().companies.remove(0);
    let namespace = example.metadata.namespace.clone().unwrap_or_else(|| "multicomms-dev".into());
    let reader = multicomms_operator::desired::Owner {
        kind: "Company",
        namespace: namespace.clone(),
        name: example.metadata.name.clone().unwrap_or_default(),
    };
    let values = manifests.secrets.entry(namespace).or_default();
    let mut json = serde_json::to_string(&example).expect("a Company serialises");
    for (suffix, keys) in [
        ("router", &["apiKey"][..]),
        ("twilio", &["accountSid", "authToken"]),
        ("sendgrid", &["apiKey"]),
        ("agents", &["carol"]),
    ] {
        let (from, to) = (format!("cucumber-recruitment-{suffix}"), format!("{name}-{suffix}"));
        values.bind(&to, Binding::from_labels([(COMPANY_LABEL, name)]));
        for key in keys {
            let reference = SecretKeyRef { name: from.clone(), key: key.to_string() };
            let value = values.get("", &reference, &reader).expect("the example Company's Secret").clone();
            values.insert(&to, key, value);
        }
        json = json.replace(&format!("\"{from}\""), &format!("\"{to}\""));
    }
    example = serde_json::from_str(&json).expect("a Company deserialises");
    example.metadata.name = Some(name.into());
    example
}

/// The conversation record under `key`, read consistently, as the wire type reads it.
pub async fn conversation_record(
    dynamodb: &aws_sdk_dynamodb::Client,
    naming: &Naming,
    key: &multicomms_wire::conversation::ConversationKey,
) -> Option<multicomms_wire::conversation::ConversationRecord> {
    let out = dynamodb
        .get_item()
        .table_name(naming.conversations_table())
        .set_key(Some(key.to_item()))
        .consistent_read(true)
        .send()
        .await
        .expect("GetItem");
    out.item.map(|item| {
        multicomms_wire::conversation::ConversationRecord::from_item(item).expect("the wire type reads the record")
    })
}

/// Takes one message off the queue named `queue` within `seconds` (one-second long polls),
/// deleting it; its body.
pub async fn take(sqs: &aws_sdk_sqs::Client, queue: &str, seconds: u32) -> Option<String> {
    let url = sqs.get_queue_url().queue_name(queue).send().await.expect("queue").queue_url.expect("url");
    for _ in 0..seconds {
        let out = sqs.receive_message().queue_url(&url).wait_time_seconds(1).send().await.expect("receive");
        if let Some(message) = out.messages.unwrap_or_default().into_iter().next() {
            let receipt = message.receipt_handle.expect("receipt");
            sqs.delete_message().queue_url(&url).receipt_handle(receipt).send().await.expect("delete");
            return message.body;
        }
    }
    None
}

/// Applies `manifests` under a new prefix; every resource must end Ready.
pub async fn apply(config: &aws_config::SdkConfig, manifests: &Manifests) -> Naming {
    let naming = unique_naming('r');
    let ctx = Context::new(multicomms_operator::aws::Aws::new(config), naming.clone(), Mode::Apply);
    let reports = multicomms_operator::cli::batch::reconcile_manifests(&ctx, manifests.clone(), 4).await;
    assert!(reports.iter().all(|r| r.is_ready()), "{:?}", reports.iter().find(|r| !r.is_ready()));
    naming
}

/// The router's settings in the tests: version `router-test-1`, 16 KiB bodies, a 10 s timeout,
/// the inbound webhooks on behind [`PUBLIC_BASE_URL`], the binary's other defaults.
pub fn router_settings() -> RouterSettings {
    RouterSettings {
        version: "router-test-1".into(),
        max_body_bytes: 16 * 1024,
        body_budget_bytes: 16 * 1024 * 1024,
        request_timeout: Duration::from_secs(10),
        company_cache: Duration::from_secs(30),
        batch_linger: Duration::from_millis(5),
        idempotency_window: Duration::from_secs(600),
        public_base_url: Some(PUBLIC_BASE_URL.into()),
        secrets_cache: Duration::from_secs(300),
        unverified_per_minute: 60,
        client_address_header: Some(axum::http::HeaderName::from_static("x-forwarded-for")),
        twilio_base_url: multicomms_runtime::shared::senders::TWILIO_BASE_URL.into(),
        session_key: None,
    }
}

/// The public URL prefix the test router's inbound webhooks are signed for.
pub const PUBLIC_BASE_URL: &str = "https://hooks.multicomms.test";

/// The router as its binary builds it, with [`router_settings`], on the tables and queues named
/// by `naming`.
pub async fn router_for(config: &aws_config::SdkConfig, naming: &Naming) -> AppState {
    AppState::build(config, naming, router_settings()).await
}

/// The spec's example request (§1.7).
pub fn example_request() -> Value {
    json!({
        "company_data": {"company_id": "ci-aaa-001", "project_id": "pi-aaa-001"},
        "recipient_data": {"recipient_first_name": "Lee", "recipient_last_name": "Hayton",
                           "recipient_tel": "+447835065013", "recipient_email": "lee@example.com", "comms_consent": true},
        "project_data": {"analysisEngineID": "analysis_1234567890_abc123def", "jobID": "9999", "jobRole": "Healthcare Assistant",
                         "clarificationPoints": [{"point": "The CV does not mention a driving licence.", "pointConfirmed": "false"}]},
        "request_data": {"request_id": "550e8400-e29b-41d4-a716-446655440001", "channel_method": "whatsapp",
                         "initial_request_timestamp": "2023-09-15T11:45:32.789Z"}
    })
}
