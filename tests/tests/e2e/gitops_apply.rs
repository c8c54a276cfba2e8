//! The operator binary as docs/operations.md uses it: `apply` and `plan` over the manifests in config/,
//! against the local AWS emulator. Each test uses its own resource-name prefix.
use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_path_buf()
}

fn operator() -> PathBuf {
    multicomms_testkit::environment::binary("multicomms-operator")
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn run(prefix: &str, args: &[&str]) -> Run {
    let endpoint = std::env::var("AWS_ENDPOINT_URL").unwrap_or_default();
    assert!(
        endpoint.starts_with("http://127.0.0.1:"),
        "AWS_ENDPOINT_URL must point at the local emulator; use scripts/test.sh"
    );
    let out = Command::new(operator())
        .current_dir(repo())
        .args(["--prefix", prefix, "--env", "e2e"])
        .args(args)
        .output()
        .expect("operator runs");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn prefix() -> String {
    multicomms_testkit::environment::unique_naming('e').prefix
}

/// The demo's arguments (scripts/demo.sh).
fn examples() -> Vec<&'static str> {
    vec![
        "-f",
        "config/channels",
        "-f",
        "config/companies",
        "-f",
        "config/examples/local",
        "--namespace",
        "multicomms-dev",
    ]
}

/// The result-table row of a resource (the table follows its `RESOURCE ...` header line).
fn table_row<'a>(stdout: &'a str, resource: &str) -> &'a str {
    stdout
        .lines()
        .skip_while(|l| !l.starts_with("RESOURCE "))
        .find(|l| l.starts_with(&format!("{resource} ")))
        .unwrap_or_else(|| panic!("no row for {resource} in\n{stdout}"))
}

fn assert_no_secret_values(run: &Run) {
    for value in
        ["local-demo-twilio-token-not-a-secret", "local-demo-router-key-not-a-secret", "SG.local-demo", "sk-local-demo"]
    {
        assert!(!run.stdout.contains(value) && !run.stderr.contains(value), "output shows a secret value");
    }
}

#[test]
fn apply_creates_everything_and_a_second_apply_changes_nothing() {
    let prefix = prefix();
    let first = run(&prefix, &[&["apply"], examples().as_slice()].concat());
    assert_eq!(first.code, 0, "{}\n{}", first.stdout, first.stderr);
    assert!(
        first.stdout.contains("Applied: 28 created, 0 updated, 0 restored; 0 of 5 resources not ready."),
        "{}",
        first.stdout
    );
    let row = table_row(&first.stdout, "Company multicomms-dev/cucumber-recruitment-clarify-cv");
    assert!(row.contains(" True ") && row.contains("Synced"), "{row}");
    assert_no_secret_values(&first);

    let second = run(&prefix, &[&["apply"], examples().as_slice()].concat());
    assert_eq!(second.code, 0, "{}", second.stdout);
    assert!(
        second.stdout.contains("Applied: 0 created, 0 updated, 0 restored; 0 of 5 resources not ready."),
        "{}",
        second.stdout
    );
    assert!(second.stderr.contains("aws_writes=0"), "{}", second.stderr);
}

#[test]
fn plan_after_editing_a_company_lists_exactly_the_edited_fields() {
    let prefix = prefix();
    assert_eq!(run(&prefix, &[&["apply"], examples().as_slice()].concat()).code, 0);

    let edited_dir = std::env::temp_dir().join(format!("multicomms-{prefix}"));
    std::fs::create_dir_all(&edited_dir).expect("temp dir");
    let original =
        std::fs::read_to_string(repo().join("config/companies/cucumber-recruitment-clarify-cv.yaml")).expect("example");
    let edited = original
        .replace("requestsPerMinute: 60", "requestsPerMinute: 90")
        .replace("companyReps: [Carol]", "companyReps: [Carol, Dave]");
    assert_ne!(edited, original);
    std::fs::write(edited_dir.join("company.yaml"), edited).expect("write");
    let dir = edited_dir.to_string_lossy().into_owned();
    let args = [
        "plan",
        "--detailed-exitcode",
        "-f",
        "config/channels",
        "-f",
        &dir,
        "-f",
        "config/examples/local",
        "--namespace",
        "multicomms-dev",
    ];
    let plan = run(&prefix, &args);
    assert_eq!(plan.code, 2, "changes → exit 2 with --detailed-exitcode\n{}\n{}", plan.stdout, plan.stderr);
    assert!(
        plan.stdout.contains(&format!(
            "~ update item {prefix}-company-data-e2e[ci-aaa-001/pi-aaa-001]: company_rep.company_rep_2, rate_limits.requests_per_minute"
        )),
        "{}",
        plan.stdout
    );
    assert!(plan.stdout.contains("Plan: 0 to create, 1 to update, 0 to restore"), "{}", plan.stdout);
    assert!(plan.stderr.contains("aws_writes=0"), "{}", plan.stderr);
    std::fs::remove_dir_all(edited_dir).ok();
}

#[test]
fn plan_rejects_each_invalid_example_naming_the_field() {
    let plan = run(&prefix(), &["plan", "-f", "config/examples/invalid"]);
    assert_eq!(plan.code, 1, "{}", plan.stdout);
    let dir = repo().join("config/examples/invalid");
    for entry in std::fs::read_dir(dir).expect("dir") {
        let text = std::fs::read_to_string(entry.expect("entry").path()).expect("read");
        let expected =
            text.lines().find_map(|l| l.strip_prefix("# Must be rejected with: ")).expect("expectation line");
        assert!(plan.stdout.contains(expected), "missing {expected:?} in\n{}", plan.stdout);
    }
    assert!(!plan.stdout.contains("sk-this-must-never-be-in-git"));
}

#[test]
fn apply_without_the_referenced_secrets_fails_and_says_which_field() {
    let apply = run(&prefix(), &["apply", "-f", "config/companies", "--namespace", "multicomms-dev"]);
    assert_eq!(apply.code, 1, "{}", apply.stdout);
    let row = table_row(&apply.stdout, "Company multicomms-dev/cucumber-recruitment-clarify-cv");
    assert!(row.contains("SecretNotFound") && row.contains("spec.apiKey"), "{row}");
}

#[test]
fn json_output_carries_conditions_and_where_things_are() {
    let prefix = prefix();
    let apply = run(&prefix, &[&["apply", "-o", "json"], examples().as_slice()].concat());
    assert_eq!(apply.code, 0, "{}", apply.stderr);
    let reports: serde_json::Value = serde_json::from_str(&apply.stdout).expect("JSON on stdout");
    let find = |kind: &str, name: &str| {
        reports
            .as_array()
            .and_then(|all| all.iter().find(|r| r["kind"] == kind && r["name"] == name))
            .unwrap_or_else(|| panic!("no {kind} {name} in {reports}"))
            .clone()
    };
    let whatsapp = find("Channel", "whatsapp");
    let url = whatsapp["outputs"]["queue"]["url"].as_str().expect("queue URL");
    assert!(url.ends_with(&format!("/{prefix}-whatsapp-queue-e2e")), "{url}");
    let dlq_arn = whatsapp["outputs"]["deadLetterQueue"]["arn"].as_str().expect("DLQ ARN");
    assert!(dlq_arn.starts_with("arn:aws:sqs:"), "{dlq_arn}");

    let company = find("Company", "cucumber-recruitment-clarify-cv");
    assert_eq!(company["ready"], true);
    let conditions: Vec<&str> =
        company["conditions"].as_array().expect("conditions").iter().filter_map(|c| c["type"].as_str()).collect();
    assert_eq!(conditions, ["Ready", "SecretsSynced", "RecordSynced"]);
    let name = format!("{prefix}/whatsapp-credentials/cucumber-recruitment/clarify-cv/twilio-e2e");
    let secrets = company["outputs"]["secrets"].as_array().expect("secrets");
    let secret = secrets.iter().find(|s| s["name"] == name.as_str()).expect("whatsapp credentials");
    assert!(secret["arn"].as_str().is_some_and(|a| a.starts_with("arn:aws:secretsmanager:")), "{secret}");
    assert!(secret["versionId"].is_string(), "{secret}");
    assert!(company["outputs"]["recordVersion"].is_string());
    assert_no_secret_values(&apply);
}
