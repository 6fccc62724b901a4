//! The Bedrock provider end to end: the real binary, aws-sdk-bedrockruntime's Converse client,
//! and the fake server speaking Converse on 127.0.0.1 (SigV4 accepted, not checked).

mod support;

use std::time::Duration;

use support::fake_server::{FakeServer, Reply, Seen};
use support::Project;

const MODEL: &str = "anthropic.claude-3-5-sonnet-20240620-v1:0";
const LABELS: [&str; 6] = ["suppress", "notify", "notify", "suppress", "notify", "suppress"];

fn case_index(seen: &Seen) -> usize {
    seen.case_id().trim_start_matches('c').parse().expect("case id")
}

#[test]
fn converse_requests_have_the_real_shape_and_answers_are_graded() {
    // Case c02 is answered wrong; the rest right.
    let server = FakeServer::start(|seen| {
        let case = case_index(seen);
        let label = if case == 2 { "suppress" } else { LABELS[case] };
        Reply::label(label)
    });
    let project = Project::bedrock(&server.endpoint, MODEL, &LABELS, 1);
    let (record, code) = project.json(&["run"]);
    assert_eq!(code, 0, "{record:#}");
    let result = &record["results"][0];
    assert!((result["accuracy"]["point"].as_f64().unwrap() - 5.0 / 6.0).abs() < 1e-12);
    assert_eq!(result["provider"], "fake");
    assert_eq!(result["model_id"], MODEL);
    assert_eq!(record["calls"]["made"], 6);
    assert_eq!(result["tokens"]["input"], 240);

    let seen = server.seen();
    let first = &seen[0];
    assert_eq!(
        first.path,
        "/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse"
    );
    assert_eq!(first.model_id(), MODEL);
    assert!(first.headers["authorization"].starts_with("AWS4-HMAC-SHA256 Credential=AKIDPROMPTGATETEST/"));
    assert!(first.headers["authorization"].contains("/us-east-1/bedrock/aws4_request"));
    let body = &first.body;
    assert!(body.get("modelId").is_none(), "the model id travels in the path only");
    assert_eq!(body["system"][0]["text"], "Answer suppress or notify.");
    assert_eq!(body["messages"][0]["role"], "user");
    assert!(body["messages"][0]["content"][0]["text"]
        .as_str()
        .unwrap()
        .starts_with("case=c0"));
    assert_eq!(body["inferenceConfig"]["maxTokens"], 50);
    assert!((body["inferenceConfig"]["temperature"].as_f64().unwrap() - 1.0).abs() < 1e-6);
    // The response schema is a forced tool whose input schema is the schema.
    let tool = &body["toolConfig"]["tools"][0]["toolSpec"];
    assert_eq!(tool["name"], "decision");
    assert_eq!(
        tool["inputSchema"]["json"]["properties"]["decision"]["enum"][1],
        "notify"
    );
    assert_eq!(body["toolConfig"]["toolChoice"]["tool"]["name"], "decision");

    // Second run: all from the cache.
    let (again, _) = project.json(&["run"]);
    assert_eq!(again["calls"]["cached"], 6);
    assert_eq!(server.request_count(), 6);
}

#[test]
fn throttling_model_timeouts_and_unavailability_are_retried_once_by_promptgate() {
    let server = FakeServer::start(|seen| {
        if seen.attempt > 0 {
            return Reply::label(LABELS[case_index(seen)]);
        }
        match case_index(seen) {
            0 => Reply::bedrock_error(
                429,
                "ThrottlingException",
                "Too many requests, please wait before trying again.",
            ),
            1 => Reply::bedrock_error(
                408,
                "ModelTimeoutException",
                "Model has timed out in processing the request.",
            ),
            2 => Reply::bedrock_error(503, "ServiceUnavailableException", "Service is unavailable."),
            3 => Reply::bedrock_error(500, "InternalServerException", "Internal failure."),
            4 => Reply::Garbled,
            _ => Reply::label(LABELS[case_index(seen)]),
        }
    });
    let project = Project::bedrock(&server.endpoint, MODEL, &LABELS, 1);
    let (record, code) = project.json(&["run"]);
    assert_eq!(code, 0, "{record:#}");
    assert_eq!(record["calls"]["made"], 6);
    assert_eq!(record["calls"]["attempts"], 11);
    // The SDK's own retries are off: each failing case reached the server exactly twice.
    for case in ["c00", "c01", "c02", "c03", "c04"] {
        assert_eq!(
            server.seen().iter().filter(|s| s.case_id() == case).count(),
            2,
            "{case}"
        );
    }
}

#[test]
fn validation_errors_are_reported_not_retried() {
    let server = FakeServer::start(|seen| match case_index(seen) {
        0 => Reply::bedrock_error(400, "ValidationException", "The provided model identifier is invalid."),
        1 => Reply::bedrock_error(
            403,
            "AccessDeniedException",
            "You don't have access to the model with the specified model ID.",
        ),
        i => Reply::label(LABELS[i]),
    });
    let project = Project::bedrock(&server.endpoint, MODEL, &LABELS, 1);
    let (record, code) = project.json(&["run"]);
    assert_eq!(code, 3, "2 of 6 failed is over the 5% limit: {record:#}");
    let result = &record["results"][0];
    assert_eq!(result["errors_by_kind"]["client"], 2);
    assert!(
        result["first_error"].as_str().unwrap().contains("ValidationException"),
        "{}",
        result["first_error"]
    );
    assert_eq!(server.seen().iter().filter(|s| s.case_id() == "c00").count(), 1);
    assert_eq!(result["accuracy"]["point"], 1.0);
}

#[test]
fn a_slow_model_times_out_per_call() {
    let server = FakeServer::start(|seen| match case_index(seen) {
        0 => Reply::Delay(Duration::from_secs(3), Box::new(Reply::label("suppress"))),
        i => Reply::label(LABELS[i]),
    });
    let project = Project::bedrock(&server.endpoint, MODEL, &LABELS, 1);
    let config = std::fs::read_to_string(project.file("promptgate.toml")).unwrap();
    project.write(
        "promptgate.toml",
        &config
            .replace("timeout_secs = 5", "timeout_secs = 0.5")
            .replace("max_attempts = 4", "max_attempts = 2"),
    );
    let (record, code) = project.json(&["run"]);
    assert_eq!(code, 3);
    assert_eq!(record["results"][0]["errors_by_kind"]["timeout"], 1);
}

#[test]
fn inference_profiles_travel_by_id_and_by_arn() {
    for model in [
        "us.anthropic.claude-3-5-sonnet-20241022-v2:0",
        "arn:aws:bedrock:us-east-1:111122223333:inference-profile/us.anthropic.claude-3-5-sonnet-20241022-v2:0",
    ] {
        let server = FakeServer::start(|seen| Reply::label(LABELS[case_index(seen)]));
        let project = Project::bedrock(&server.endpoint, model, &LABELS, 1);
        let (record, code) = project.json(&["run"]);
        assert_eq!(code, 0, "{record:#}");
        assert_eq!(record["results"][0]["accuracy"]["point"], 1.0);
        let seen = server.seen();
        // One path segment: the ARN's `/` and `:` are percent-encoded, and decode to the id.
        assert_eq!(seen[0].path.matches('/').count(), 3, "{}", seen[0].path);
        assert_eq!(seen[0].model_id(), model);
    }
}

#[test]
fn a_prompt_router_names_the_model_it_invoked_and_a_plain_model_names_none() {
    const ROUTER: &str = "arn:aws:bedrock:us-east-1:123456789012:default-prompt-router/anthropic.claude:1";
    const INVOKED: &str =
        "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-3-haiku-20240307-v1:0";
    let server = FakeServer::start(|seen| {
        let mut body = support::fake_server::converse_output(
            &serde_json::json!({"decision": LABELS[case_index(seen)]}).to_string(),
            &seen.body,
        );
        if seen.model_id().contains("prompt-router") {
            body["trace"] = serde_json::json!({"promptRouter": {"invokedModelId": INVOKED}});
        }
        Reply::Raw {
            status: 200,
            body: body.to_string(),
            headers: vec![("x-amzn-requestid".into(), "fake-request".into())],
        }
    });
    let routed = Project::bedrock(&server.endpoint, ROUTER, &LABELS, 2);
    let (record, code) = routed.json(&["run"]);
    assert_eq!(code, 0, "{record:#}");
    let versions = &record["results"][0]["model_versions"];
    assert_eq!(versions, &serde_json::json!([{"model": INVOKED, "samples": 12}]));
    // Stored with the answer: the cached replay reports the same.
    let (replay, _) = routed.json(&["run", "--offline"]);
    assert_eq!(replay["calls"]["cached"], 12);
    assert_eq!(&replay["results"][0]["model_versions"], versions);

    let plain = Project::bedrock(&server.endpoint, MODEL, &LABELS, 1);
    let (record, code) = plain.json(&["run"]);
    assert_eq!(code, 0, "{record:#}");
    assert!(record["results"][0].get("model_versions").is_none(), "{record:#}");
}
