//! One prompt with tools, both wire formats: the tool definitions map to OpenAI functions and to
//! Bedrock toolSpecs, the calls come back as `tool_calls` or `toolUse`, and the `tool_call`
//! grader scores them the same way, from the server and from the cache.

mod support;

use serde_json::{json, Value};
use support::fake_server::{FakeServer, Reply, Seen};
use support::Project;

const PROMPT: &str = r#"
system = "You operate Security Hub for the team. Call exactly one tool, or none when nothing is asked."
user = """case={{ case_id }}
{{ message }}"""
tool_choice = "required"

[[tools]]
name = "updateFindingStatusToSuppressed"
description = "Suppress one Security Hub finding."
parameters = { type = "object", required = ["findingId", "productArn", "reason"], properties = { findingId = { type = "string" }, productArn = { type = "string" }, reason = { type = "string" } } }

[[tools]]
name = "listAutomaticSuppressionRules"
description = "List the automatic suppression rules."
parameters = { type = "object", properties = {} }
"#;

const FINDING: &str = "arn:aws:securityhub:ap-northeast-1:111122223333:subscription/aws-foundational-security-best-practices/v/1.0.0/EC2.19/finding/0d1c";

fn project(endpoint: &str, base_url: &str) -> Project {
    let project = Project {
        dir: tempfile::tempdir().expect("temp dir"),
    };
    project.write(
        "promptgate.toml",
        &format!(
            r#"schema_version = 1
[providers.openai]
kind = "openai"
base_url = "{base_url}"
max_attempts = 1
[providers.bedrock]
kind = "bedrock"
region = "us-east-1"
endpoint_url = "{endpoint}"
max_attempts = 1
[models.gpt]
provider = "openai"
model = "gpt-4o-mini"
[models.claude]
provider = "bedrock"
model = "anthropic.claude-3-5-sonnet-20240620-v1:0"
[suites.chatops]
prompt = "prompts/tools.toml"
cases = "cases/chatops.jsonl"
models = ["gpt", "claude"]
grader = {{ kind = "tool_call" }}
"#
        ),
    );
    project.write("prompts/tools.toml", PROMPT);
    let cases = [
        json!({"id": "suppress", "vars": {"message": format!("{FINDING} は検証環境なので抑制して")},
               "expect": {"calls": [{"name": "updateFindingStatusToSuppressed",
                   "arguments": {"findingId": FINDING, "reason": {"contains": "検証"}}}]}}),
        json!({"id": "list", "vars": {"message": "抑制ルールを一覧して"},
               "expect": {"calls": [{"name": "listAutomaticSuppressionRules"}]}}),
        json!({"id": "wrong-tool", "vars": {"message": "ルールを見せて"},
               "expect": {"calls": [{"name": "listAutomaticSuppressionRules"}]}}),
        json!({"id": "chatter", "vars": {"message": "ありがとう"}, "expect": {"calls": []}}),
    ];
    let lines: Vec<String> = cases.iter().map(Value::to_string).collect();
    project.write("cases/chatops.jsonl", &(lines.join("\n") + "\n"));
    project
}

/// The same answers on both wire formats: right for `suppress`, `list` and `chatter`, a wrong
/// tool for `wrong-tool`.
fn answer(seen: &Seen) -> Reply {
    match seen.case_id().as_str() {
        "suppress" => Reply::ToolCalls(vec![(
            "updateFindingStatusToSuppressed".into(),
            json!({"findingId": FINDING, "productArn": "arn:aws:securityhub:ap-northeast-1::product/aws/securityhub", "reason": "検証環境のため"}),
        )]),
        "list" => Reply::ToolCalls(vec![("listAutomaticSuppressionRules".into(), json!({}))]),
        "wrong-tool" => Reply::ToolCalls(vec![(
            "updateFindingStatusToSuppressed".into(),
            json!({"findingId": "x", "productArn": "y", "reason": "z"}),
        )]),
        _ => Reply::Content("どういたしまして".into()),
    }
}

#[test]
fn tools_map_to_both_wire_formats_and_calls_are_graded_alike() {
    let server = FakeServer::start(answer);
    let project = project(&server.endpoint, &server.base_url);
    let (record, code) = project.json(&["run"]);
    assert_eq!(code, 0, "{record:#}");

    // OpenAI: function tools, `required` as is.
    let seen = server.seen();
    let openai = seen.iter().find(|s| !s.is_bedrock()).expect("an OpenAI request");
    let tools = &openai.body["tools"];
    assert_eq!(tools.as_array().unwrap().len(), 2);
    assert_eq!(tools[0]["type"], "function");
    assert_eq!(tools[0]["function"]["name"], "updateFindingStatusToSuppressed");
    assert_eq!(
        tools[0]["function"]["description"],
        "Suppress one Security Hub finding."
    );
    assert_eq!(
        tools[0]["function"]["parameters"]["required"],
        json!(["findingId", "productArn", "reason"])
    );
    assert_eq!(
        tools[1]["function"]["parameters"],
        json!({"type": "object", "properties": {}})
    );
    assert_eq!(openai.body["tool_choice"], "required");
    assert!(openai.body.get("response_format").is_none());

    // Bedrock: the same definitions as toolSpecs, `required` as `any`.
    let bedrock = seen.iter().find(|s| s.is_bedrock()).expect("a Converse request");
    let specs = &bedrock.body["toolConfig"]["tools"];
    assert_eq!(specs.as_array().unwrap().len(), 2);
    for index in 0..2 {
        let spec = &specs[index]["toolSpec"];
        let function = &tools[index]["function"];
        assert_eq!(spec["name"], function["name"]);
        assert_eq!(spec["description"], function["description"]);
        assert_eq!(spec["inputSchema"]["json"], function["parameters"]);
    }
    assert_eq!(bedrock.body["toolConfig"]["toolChoice"], json!({"any": {}}));

    // Both models: three of four cases right, the same case wrong with the same reason.
    let results = record["results"].as_array().unwrap();
    assert_eq!(results.len(), 2);
    for result in results {
        assert_eq!(result["accuracy"]["point"], 0.75, "{result:#}");
        let misses: Vec<&Value> = result["per_case"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|case| case["correct"] == 0)
            .collect();
        assert_eq!(misses.len(), 1);
        assert_eq!(misses[0]["id"], "wrong-tool");
        assert_eq!(
            misses[0]["misses"][0]["reason"],
            "called `updateFindingStatusToSuppressed`, expected `listAutomaticSuppressionRules`"
        );
    }

    // From the cache the tool calls grade the same, with no request.
    let (again, _) = project.json(&["run"]);
    assert_eq!(server.request_count(), 8);
    assert_eq!(again["calls"]["cached"], 8);
    for (before, after) in results.iter().zip(again["results"].as_array().unwrap()) {
        assert_eq!(before["per_case"], after["per_case"]);
    }
}

#[test]
fn a_named_tool_choice_is_forced_on_both_providers() {
    let server = FakeServer::start(answer);
    let project = project(&server.endpoint, &server.base_url);
    project.write(
        "prompts/tools.toml",
        &PROMPT.replace(
            "tool_choice = \"required\"",
            "tool_choice = \"listAutomaticSuppressionRules\"",
        ),
    );
    let (_, code) = project.json(&["run", "--suite", "chatops"]);
    assert_eq!(code, 0);
    let seen = server.seen();
    let openai = seen.iter().find(|s| !s.is_bedrock()).unwrap();
    assert_eq!(
        openai.body["tool_choice"],
        json!({"type": "function", "function": {"name": "listAutomaticSuppressionRules"}})
    );
    let bedrock = seen.iter().find(|s| s.is_bedrock()).unwrap();
    assert_eq!(
        bedrock.body["toolConfig"]["toolChoice"],
        json!({"tool": {"name": "listAutomaticSuppressionRules"}})
    );
}

#[test]
fn an_expected_call_to_an_undefined_tool_is_refused_before_any_call() {
    let server = FakeServer::start(answer);
    let project = project(&server.endpoint, &server.base_url);
    project.write(
        "cases/chatops.jsonl",
        "{\"id\": \"typo\", \"vars\": {\"message\": \"x\"}, \"expect\": {\"calls\": [{\"name\": \"listSuppressionRules\"}]}}\n",
    );
    let output = project.command().arg("run").output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("chatops.jsonl"), "{stderr}");
    assert!(
        stderr.contains("`listSuppressionRules` is not a tool of the prompt"),
        "{stderr}"
    );
    assert_eq!(server.request_count(), 0);
}
