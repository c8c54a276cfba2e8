//! The router and processor binaries as deployed: configured by flags and environment only,
//! against the emulator and the fake providers. A request to the router ends as one WhatsApp
//! message and a finished record; both stop cleanly on SIGTERM; no secret reaches their logs.
use http_body_util::{BodyExt, Full};
use multicomms_testkit::environment::{apply, binary, emulator_config, example_manifests, example_request, API_KEY};
use multicomms_testkit::eventually::{eventually_ok, within};
use multicomms_testkit::fakes::{Fakes, Service};
use multicomms_wire::conversation::{ConversationRecord, ConversationStatus};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

fn free_address() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("address").to_string()
}

fn spawn(name: &str, args: &[&str]) -> Child {
    Command::new(binary(name)).args(args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn")
}

/// SIGTERM, then the exit status and everything the process logged (it must exit within 20 s).
async fn terminate(child: Child) -> (std::process::ExitStatus, String) {
    let sent = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("kill");
    assert!(sent.success());
    let exited =
        tokio::time::timeout(Duration::from_secs(20), tokio::task::spawn_blocking(|| child.wait_with_output()));
    let out = exited.await.expect("exited within 20 s of SIGTERM").expect("waited").expect("its output");
    (out.status, format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

async fn get(
    client: &hyper_util::client::legacy::Client<hyper_util::client::legacy::connect::HttpConnector, Full<bytes::Bytes>>,
    url: &str,
) -> Option<(u16, String)> {
    let request = hyper::Request::get(url).body(Full::new(bytes::Bytes::new())).ok()?;
    let response = client.request(request).await.ok()?;
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.ok()?.to_bytes();
    Some((status, String::from_utf8_lossy(&body).into_owned()))
}

#[tokio::test]
async fn a_request_to_the_router_binary_ends_as_one_whatsapp_message_sent_by_the_processor_binary() {
    let config = emulator_config().await;
    let naming = apply(&config, &example_manifests()).await;
    let fakes = Fakes::start("127.0.0.1:0").await.expect("fakes");
    let (router_address, processor_address, router_metrics) = (free_address(), free_address(), free_address());
    let naming_args = ["--prefix", &naming.prefix, "--env", &naming.env];
    let router_args = ["--address", &router_address, "--metrics-address", &router_metrics];
    let router = spawn("multicomms-router", &[&naming_args[..], &router_args].concat());
    let openai = fakes.openai_url();
    let processor = spawn(
        "multicomms-processor",
        &[
            &naming_args[..],
            &["--channel", "whatsapp", "--address", &processor_address, "--openai-base-url", &openai],
            &["--twilio-base-url", &fakes.url, "--sendgrid-base-url", &fakes.url],
        ]
        .concat(),
    );

    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http();
    let ready = within(Duration::from_secs(10), || async {
        let router_ready = get(&client, &format!("http://{router_address}/readyz")).await.map(|r| r.0);
        let processor_ready = get(&client, &format!("http://{processor_address}/readyz")).await.map(|r| r.0);
        if router_ready == Some(200) && processor_ready == Some(200) {
            Ok(())
        } else {
            Err(())
        }
    });
    if ready.await.is_err() {
        let (_, router_logs) = terminate(router).await;
        let (_, processor_logs) = terminate(processor).await;
        panic!("router and processor did not become ready\nrouter:\n{router_logs}\nprocessor:\n{processor_logs}");
    }

    let request = hyper::Request::post(format!("http://{router_address}/initiate-conversation"))
        .header("x-api-key", API_KEY)
        .body(Full::new(bytes::Bytes::from(example_request().to_string())))
        .expect("request");
    let response = client.request(request).await.expect("router answers");
    assert_eq!(response.status(), 200);

    let dynamo = aws_sdk_dynamodb::Client::new(&config);
    let id = "ci-aaa-001#pi-aaa-001#550e8400-e29b-41d4-a716-446655440001#447588713814";
    eventually_ok("the record sent", Duration::from_secs(30), || async {
        let out = dynamo
            .get_item()
            .table_name(naming.conversations_table())
            .key("primary_channel", aws_sdk_dynamodb::types::AttributeValue::S("+447835065013".into()))
            .key("conversation_id", aws_sdk_dynamodb::types::AttributeValue::S(id.into()))
            .send()
            .await
            .expect("GetItem");
        match out.item.map(|i| ConversationRecord::from_item(i).expect("record")) {
            Some(record) if record.conversation_status == ConversationStatus::InitialMessageSent => Ok(record),
            other => Err(other),
        }
    })
    .await;
    assert_eq!(fakes.sent().len(), 1);
    assert_eq!(fakes.requests(Service::Twilio)[0].field("To"), Some("whatsapp:+447835065013"));
    // Counted once the message is settled on its queue, just after the record is written.
    eventually_ok("the processor counting the message as sent", Duration::from_secs(10), || async {
        let metrics = get(&client, &format!("http://{processor_address}/metrics")).await.expect("metrics").1;
        let counted = metrics.contains(r#"multicomms_processor_messages_total{channel="whatsapp",outcome="sent"} 1"#);
        if counted {
            Ok(())
        } else {
            Err(metrics)
        }
    })
    .await;

    for (name, child) in [("router", router), ("processor", processor)] {
        let (exit, logs) = terminate(child).await;
        assert!(exit.success(), "{name} exits cleanly on SIGTERM: {exit:?}\n{logs}");
        for secret in ["local-demo-twilio-token-not-a-secret", "sk-local-demo", "SG.local-demo", API_KEY] {
            assert!(!logs.contains(secret), "{name} logged a secret:\n{logs}");
        }
    }
}
