//! The manifests in config/: the examples are valid, and every deliberately invalid one is
//! rejected (offline, by the same rules the API server applies, and the tenancy rule on the
//! Secrets it reads) with a message naming the field.

use crate::support::repo_path;
use kube::ResourceExt;
use multicomms_operator::cli::manifests;
use multicomms_operator::crd::Company;
use multicomms_operator::desired::Owner;
use multicomms_operator::reconcile::validate;
use multicomms_operator::reconcile::validate::AiEndpoints;
use multicomms_operator::reconcile::Reason;

#[test]
fn the_examples_are_valid() {
    let examples = crate::support::example_manifests();
    assert!(examples.invalid.is_empty(), "{:?}", examples.invalid);
    assert_eq!(examples.channels.len(), 3);
    assert_eq!(examples.companies.len(), 1);
    for channel in &examples.channels {
        validate::channel(channel).expect("valid channel");
    }
    validate::company(&examples.companies[0]).expect("valid company");
}

#[test]
fn every_invalid_example_is_rejected_naming_the_field() {
    let dir = repo_path("config/examples/invalid");
    let mut files: Vec<_> = std::fs::read_dir(&dir).expect("dir").map(|e| e.expect("entry").path()).collect();
    files.sort();
    assert!(files.len() >= 8, "expected the invalid examples, found {files:?}");
    for file in files {
        let text = std::fs::read_to_string(&file).expect("read");
        let expected = text
            .lines()
            .find_map(|l| l.strip_prefix("# Must be rejected with: "))
            .unwrap_or_else(|| panic!("{} has no '# Must be rejected with:' line", file.display()));
        let loaded = manifests::load(std::slice::from_ref(&file), "default").expect("load");
        let mut failures: Vec<String> = loaded
            .invalid
            .iter()
            .filter_map(|r| r.failure())
            .map(|f| {
                assert_eq!(f.reason, Reason::InvalidSpec);
                f.message.clone()
            })
            .collect();
        // The CRD's rules, then the operator's default policy on custom AI endpoints.
        let rules = |c: &Company| validate::company(c).and_then(|()| AiEndpoints::default().check(c));
        failures.extend(loaded.companies.iter().filter_map(|c| rules(c).err()).map(|f| f.message));
        // A valid Company may still name Secrets that are not its own (the tenancy rule).
        let naming = multicomms_wire::Naming::new("examples", "test");
        for company in loaded.companies.iter().filter(|c| rules(c).is_ok()) {
            let reader = Owner { kind: "Company", namespace: "default".into(), name: company.name_any() };
            let specs = multicomms_operator::desired::company::secrets(&company.spec, &naming);
            let values = loaded.secrets_in("default");
            failures.extend(specs.iter().filter_map(|s| s.resolve(values, &reader).err()).map(|e| e.to_string()));
        }
        failures.extend(loaded.channels.iter().filter_map(|c| validate::channel(c).err()).map(|f| f.message));
        assert_eq!(failures.len(), 1, "{}: {failures:?}", file.display());
        assert!(failures[0].contains(expected), "{}: {:?} does not contain {expected:?}", file.display(), failures[0]);
        assert!(!failures[0].contains("sk-this-must-never-be-in-git"), "a credential leaked into the message");
    }
}

#[test]
fn immutable_ids_and_channel_type_are_enforced_on_update() {
    let company = crate::support::example_company();
    let mut edited = company.clone();
    edited.spec.company_id = "ci-zzz-999".into();
    let errors = edited.validate_cel_update(&company).expect_err("companyId is immutable");
    assert!(errors.to_string().contains("spec.companyId: is immutable"), "{errors}");
    // The display names name the secrets conversations under way read (review r3, L7).
    for (field, edit) in [("companyName", 0), ("projectName", 1)] {
        let mut renamed = company.clone();
        if edit == 0 {
            renamed.spec.company_name = "Renamed Recruitment".into();
        } else {
            renamed.spec.project_name = "Renamed Project".into();
        }
        let errors = renamed.validate_cel_update(&company).expect_err("display names are immutable");
        assert!(errors.to_string().contains(&format!("spec.{field}: is immutable")), "{errors}");
    }

    let channel = crate::support::example_channel("sms");
    let mut edited = channel.clone();
    edited.spec.kind = multicomms_wire::ChannelKind::Whatsapp;
    let errors = edited.validate_cel_update(&channel).expect_err("type is immutable");
    assert!(errors.to_string().contains("spec.type: is immutable"), "{errors}");
}

#[test]
fn a_company_may_name_its_own_ai_endpoint_only_with_its_own_key_over_https_or_loopback() {
    use multicomms_operator::crd::common::{SecretKeyRef, SecretValue};
    let with_endpoint = |url: &str, own_key: bool| {
        let mut company = crate::support::example_company();
        let ai = company.spec.channels.whatsapp.as_mut().and_then(|w| w.ai.as_mut()).expect("ai settings");
        ai.base_url = Some(url.into());
        ai.api_key = own_key
            .then(|| SecretValue { secret_key_ref: SecretKeyRef { name: "own-openai".into(), key: "apiKey".into() } });
        validate::company(&company).map_err(|f| f.message)
    };
    for allowed in
        ["https://llm.example.net/v1", "http://127.0.0.1:8080/v1", "http://localhost/v1", "http://[::1]:9/v1"]
    {
        assert_eq!(with_endpoint(allowed, true), Ok(()), "{allowed}");
    }
    let shared = with_endpoint("https://llm.example.net/v1", false).expect_err("the shared key would leave");
    assert!(shared.contains("baseUrl needs the company's own apiKey"), "{shared}");
    for refused in [
        "http://10.0.0.5/v1",
        "http://localhost.attacker.example/v1",
        "http://127.0.0.1.nip.io/v1",
        "https://api.openai.com@attacker.example/v1",
        "ftp://llm.example.net",
    ] {
        let error = with_endpoint(refused, true).expect_err(refused);
        assert!(error.contains("must be an https:// URL"), "{refused}: {error}");
    }
}

#[test]
fn custom_ai_endpoints_are_the_platforms_choice_and_loopback_is_for_development() {
    use multicomms_operator::crd::common::{SecretKeyRef, SecretValue};
    let with_endpoint = |url: &str| {
        let mut company = crate::support::example_company();
        let ai = company.spec.channels.whatsapp.as_mut().and_then(|w| w.ai.as_mut()).expect("ai settings");
        ai.base_url = Some(url.into());
        ai.api_key = Some(SecretValue { secret_key_ref: SecretKeyRef { name: "own".into(), key: "apiKey".into() } });
        company
    };
    let field = "spec.channels.whatsapp.ai.baseUrl";
    let none = AiEndpoints::default();
    let refused = none.check(&with_endpoint("https://collector.invalid/v1")).expect_err("no host allowed by default");
    assert_eq!(refused.reason, Reason::InvalidSpec);
    assert!(refused.message.starts_with(&format!("{field}: host \"collector.invalid\" is not one the platform")));
    assert!(refused.message.ends_with("(--ai-endpoint-hosts: none)"), "{}", refused.message);
    assert!(none.check(&crate::support::example_company()).is_ok(), "the default endpoint needs no permission");

    let platform = AiEndpoints::new(["LLM.example.net"], false);
    assert!(platform.check(&with_endpoint("https://llm.example.net:8443/v1")).is_ok());
    assert!(platform.check(&with_endpoint("https://llm.example.net.attacker.example/v1")).is_err());
    for local in ["http://localhost:15020/quitquitquit?x=", "http://127.0.0.1:9/v1", "http://[::1]:9/v1"] {
        let refused = platform.check(&with_endpoint(local)).expect_err(local);
        assert!(refused.message.contains("--allow-loopback-ai-endpoints"), "{local}: {}", refused.message);
        assert!(AiEndpoints::new(Vec::<String>::new(), true).check(&with_endpoint(local)).is_ok(), "{local}");
    }
}
