//! The `judge` grader end to end: a second model on the fake server reads each answer that the
//! suite's other graders passed, through the cache like any other call.

mod support;

use serde_json::{json, Value};
use support::fake_server::{FakeServer, Reply, Seen};
use support::Project;

fn project(base_url: &str) -> Project {
    let project = Project {
        dir: tempfile::tempdir().expect("temp dir"),
    };
    project.write(
        "promptgate.toml",
        &format!(
            r#"schema_version = 1
[providers.fake]
kind = "openai"
base_url = "{base_url}"
max_attempts = 1
[models.writer]
provider = "fake"
model = "writer-model"
[models.judge]
provider = "fake"
model = "judge-model"
temperature = 0.0
seed = 7
[suites.explain]
prompt = "prompts/explain.toml"
cases = "cases/explain.jsonl"
models = ["writer"]
samples = 2
grader = [{{ kind = "facts" }}, {{ kind = "judge", model = "judge", rubric = "prompts/rubric.toml" }}]
"#
        ),
    );
    project.write(
        "prompts/explain.toml",
        "user = \"\"\"case={{ case_id }}\nExplain {{ finding_type }} to a non-expert.\"\"\"\n",
    );
    project.write(
        "prompts/rubric.toml",
        r#"system = "You grade explanations of GuardDuty findings for non-experts."
user = """Finding type: {{ finding_type }}
What a good answer does: {{ criteria }}
Answer:
{{ answer }}
Reply {"verdict": "pass" or "fail", "reason": "..."}."""
[response_schema]
name = "verdict"
schema = { type = "object", required = ["verdict", "reason"], properties = { verdict = { enum = ["pass", "fail"] }, reason = { type = "string" } } }
"#,
    );
    let cases = [
        ("plain", "Recon:EC2/PortProbeUnprotectedPort", "勧める: ポートを閉じる"),
        ("jargon", "UnauthorizedAccess:EC2/SSHBruteForce", "専門用語を説明する"),
        ("no-fact", "CryptoCurrency:EC2/BitcoinTool.B!DNS", "マイニングの説明"),
        ("judge-down", "Backdoor:EC2/C&CActivity.B", "通信先を遮断する"),
    ];
    let lines: Vec<String> = cases
        .iter()
        .map(|(id, finding_type, criteria)| {
            json!({"id": id, "vars": {"finding_type": finding_type},
                   "expect": {"facts": {"required": [finding_type]}, "judge": {"criteria": criteria}}})
            .to_string()
        })
        .collect();
    project.write("cases/explain.jsonl", &(lines.join("\n") + "\n"));
    project
}

/// The writer names the finding type except on `no-fact`; the judge passes plain answers, fails
/// jargon, and is down (HTTP 500) for `judge-down`.
fn script(seen: &Seen) -> Reply {
    if seen.model_id() == "judge-model" {
        let text = seen.user_message();
        if text.contains("Backdoor") {
            return Reply::server_error(500);
        }
        let verdict = if text.contains("jargon") { "fail" } else { "pass" };
        return Reply::Content(
            json!({"verdict": verdict, "reason": format!("{verdict} because of the wording")}).to_string(),
        );
    }
    let answer = match seen.case_id().as_str() {
        "plain" => "Recon:EC2/PortProbeUnprotectedPort: 誰かが開いているポートを探しています。ポートを閉じましょう。",
        "jargon" => "UnauthorizedAccess:EC2/SSHBruteForce: jargon jargon",
        "no-fact" => "マイニングのようです。",
        _ => "Backdoor:EC2/C&CActivity.B: 不審な通信先です。",
    };
    Reply::Content(answer.into())
}

#[test]
fn the_judge_reads_only_answers_the_other_graders_passed() {
    let server = FakeServer::start(script);
    let project = project(&server.base_url);
    let (record, code) = project.json(&["run"]);
    // One case of four has only failed judge calls: a 50% error rate is inconclusive.
    assert_eq!(code, 3, "{record:#}");
    let result = &record["results"][0];
    let case = |id: &str| -> Value {
        result["per_case"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["id"] == id)
            .cloned()
            .unwrap()
    };
    assert_eq!(
        (case("plain")["correct"].as_u64(), case("plain")["samples"].as_u64()),
        (Some(2), Some(2))
    );
    assert_eq!(case("jargon")["correct"], 0);
    assert_eq!(
        case("jargon")["misses"][0]["reason"],
        "judge: fail because of the wording"
    );
    assert_eq!(
        case("no-fact")["misses"][0]["reason"],
        "facts: missing `CryptoCurrency:EC2/BitcoinTool.B!DNS`"
    );
    // A failed judge call is an error, never a wrong answer.
    assert_eq!(
        (
            case("judge-down")["errors"].as_u64(),
            case("judge-down")["samples"].as_u64()
        ),
        (Some(2), Some(0))
    );

    let seen = server.seen();
    let judged: Vec<&Seen> = seen.iter().filter(|s| s.model_id() == "judge-model").collect();
    // 8 answers; the two of `no-fact` fail the facts grader, so 6 judgments. The two samples
    // of a case here give the same answer, so their judge requests are the same and paid once;
    // the failed call of `judge-down` is tried again for its second answer.
    assert_eq!(seen.len() - judged.len(), 8);
    assert_eq!(judged.len(), 4);
    assert!(
        judged.iter().all(|s| !s.user_message().contains("マイニング")),
        "no-fact is never judged"
    );
    let rubric = judged
        .iter()
        .find(|s| s.user_message().contains("PortProbe"))
        .expect("plain judged")
        .user_message();
    assert!(
        rubric.contains("What a good answer does: 勧める: ポートを閉じる"),
        "{rubric}"
    );
    assert!(
        rubric.contains("Answer:\nRecon:EC2/PortProbeUnprotectedPort: 誰かが"),
        "{rubric}"
    );
    assert_eq!(judged[0].body["seed"], 7);
    assert_eq!(judged[0].body["response_format"]["json_schema"]["name"], "verdict");

    // A dry run grades the cached answers to find the judge's requests: plain, jargon and
    // judge-down are judged (no-fact never is); the failed judgment of judge-down is not
    // cached, so that one call is still to make. Nothing is called.
    let before = server.request_count();
    let (plan, code) = project.json(&["run", "--dry-run"]);
    assert_eq!(code, 0);
    assert_eq!(plan["rows"][0]["to_call"], 0);
    assert_eq!(
        plan["rows"][0]["judge"],
        json!({"requests": 3, "cached": 2, "to_call": 1, "at_most_for_new_answers": 0})
    );
    assert_eq!(plan["totals"]["judge_to_call"], 1);
    assert_eq!(server.request_count(), before);

    // Second run: answers and verdicts come from the cache; only the failed judge calls repeat.
    let (again, _) = project.json(&["run"]);
    let repeated: Vec<Seen> = server.seen()[before..].to_vec();
    assert!(repeated
        .iter()
        .all(|s| s.model_id() == "judge-model" && s.user_message().contains("Backdoor")));
    assert_eq!(again["results"][0]["per_case"][0], result["per_case"][0]);
}

/// `--max-calls` bounds every call of a run, the judge's too: the 8 answers fit under 10 (so
/// the run starts), and of the 4 judge calls after them only 2 are made; the rest are
/// `call_limit` failures, never sent, and the run is inconclusive.
#[test]
fn max_calls_bounds_the_judge_s_calls_too() {
    let server = FakeServer::start(script);
    let project = project(&server.base_url);
    let (record, code) = project.json(&["run", "--max-calls", "10"]);
    assert_eq!(code, 3, "{record:#}");
    assert_eq!(server.request_count(), 10);
    let result = &record["results"][0];
    assert_eq!(result["verdict"], "inconclusive");
    assert!(
        result["errors_by_kind"]["call_limit"].as_u64().is_some_and(|n| n >= 1),
        "{:#}",
        result["errors_by_kind"]
    );
    // Which judge calls were left out depends on which answers came first; every sample is
    // still accounted for, graded or an error.
    for case in result["per_case"].as_array().expect("cases") {
        assert_eq!(
            case["samples"].as_u64().unwrap() + case["errors"].as_u64().unwrap(),
            2,
            "{case:#}"
        );
    }
}
