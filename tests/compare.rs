//! `promptgate compare` end to end: one suite on an OpenAI-compatible model and a Bedrock model,
//! both served by the fake server, side by side.

mod support;

use support::fake_server::{FakeServer, Reply, Seen};
use support::Project;

fn labels(n: usize) -> Vec<&'static str> {
    (0..n).map(|i| if i % 2 == 0 { "suppress" } else { "notify" }).collect()
}

fn right(seen: &Seen) -> (usize, &'static str) {
    let case: usize = seen.case_id().trim_start_matches('c').parse().expect("case id");
    (case, if case % 2 == 0 { "suppress" } else { "notify" })
}

#[test]
fn two_providers_side_by_side() {
    // The OpenAI-compatible model misses c00..c03; the Bedrock model answers everything right.
    let server = FakeServer::start(|seen| {
        let (case, label) = right(seen);
        let wrong = !seen.is_bedrock() && case < 4;
        Reply::label(if wrong {
            if label == "suppress" {
                "notify"
            } else {
                "suppress"
            }
        } else {
            label
        })
    });
    let project = Project::new(&server.base_url, &labels(20), 1, "");
    let config = std::fs::read_to_string(project.file("promptgate.toml")).unwrap();
    project.write(
        "promptgate.toml",
        &format!(
            "{config}\n[providers.aws]\nkind = \"bedrock\"\nregion = \"us-east-1\"\nendpoint_url = \"{}\"\n\n\
             [models.b]\nprovider = \"aws\"\nmodel = \"anthropic.claude-3-haiku-20240307-v1:0\"\ntemperature = 1.0\n\
             max_tokens = 50\nprice_input_per_million = 0.25\nprice_output_per_million = 1.25\n",
            server.endpoint
        ),
    );
    let (record, code) = project.json(&["compare", "--model", "m", "--model", "b", "--out", "compare.md"]);
    assert_eq!(code, 0, "{record:#}");
    let suite = &record["suites"][0];
    assert_eq!(suite["reference"], "m");
    let rows = suite["rows"].as_array().unwrap();
    assert_eq!(rows[0]["model"], "m");
    assert!(rows[0]["difference"].is_null());
    assert_eq!(rows[0]["accuracy"]["point"], 0.8);
    assert_eq!(rows[1]["provider"], "aws");
    let difference = &rows[1]["difference"];
    assert!((difference["delta"]["point"].as_f64().unwrap() - 0.2).abs() < 1e-12);
    // scipy.stats.ttest_rel(ones(20), [0]*4 + [1]*16).pvalue (two-sided); one row, so Holm = raw.
    assert!((difference["p_value"].as_f64().unwrap() - 0.04208628671050175).abs() < 1e-9);
    assert_eq!(difference["adjusted_p_value"], difference["p_value"]);
    assert_eq!(suite["disagreements"], serde_json::json!(["c00", "c01", "c02", "c03"]));
    // 20 calls × (40 in, 7 out) tokens at $0.25 / $1.25 per million.
    assert!((rows[1]["cost_usd"].as_f64().unwrap() - (800.0 * 0.25 + 140.0 * 1.25) / 1e6).abs() < 1e-12);
    assert!(rows[0]["cost_usd"].is_null(), "no prices configured for m");
    assert!(rows[1]["latency"]["p95_ms"].as_u64().unwrap() >= rows[1]["latency"]["p50_ms"].as_u64().unwrap());
    assert_eq!(server.seen().iter().filter(|s| s.is_bedrock()).count(), 20);

    let markdown = std::fs::read_to_string(project.file("compare.md")).unwrap();
    assert!(markdown.contains("| b | 100.0% ["), "{markdown}");
    assert!(
        markdown.contains("Disagreements (4): `c00`, `c01`, `c02`, `c03`"),
        "{markdown}"
    );

    // A comparison needs two models.
    project.command().args(["compare", "--model", "m"]).assert().code(2);
}

#[test]
fn prompt_versions_side_by_side() {
    // The variant `terse` loses c00..c05; the suite's own prompt answers everything right.
    let server = FakeServer::start(|seen| {
        let (case, label) = right(seen);
        let terse = seen.body["messages"][0]["content"] == "Terse.";
        let flipped = if label == "suppress" { "notify" } else { "suppress" };
        Reply::label(if terse && case < 6 { flipped } else { label })
    });
    let project = Project::new(&server.base_url, &labels(20), 1, "");
    let config = std::fs::read_to_string(project.file("promptgate.toml")).unwrap();
    project.write(
        "promptgate.toml",
        &config.replace(
            "prompt = \"prompts/p.toml\"",
            "prompt = \"prompts/p.toml\"\nvariants = { terse = \"prompts/terse.toml\" }",
        ),
    );
    let prompt = std::fs::read_to_string(project.file("prompts/p.toml")).unwrap();
    project.write(
        "prompts/terse.toml",
        &prompt.replace("Answer suppress or notify.", "Terse."),
    );

    let (record, code) = project.json(&["compare", "--prompt", "default", "--prompt", "terse"]);
    assert_eq!(code, 0, "{record:#}");
    let suite = &record["suites"][0];
    assert_eq!(suite["reference"], "default");
    let rows = suite["rows"].as_array().unwrap();
    assert_eq!(
        (rows[0]["name"].as_str(), rows[1]["name"].as_str()),
        (Some("default"), Some("terse"))
    );
    assert_eq!(rows[1]["prompt"], "terse");
    assert_eq!(rows[1]["model"], "m");
    assert!((rows[1]["difference"]["delta"]["point"].as_f64().unwrap() + 0.3).abs() < 1e-12);
    // scipy.stats.ttest_rel([0]*6 + [1]*14, ones(20)).pvalue
    assert!((rows[1]["difference"]["p_value"].as_f64().unwrap() - 0.010162572120690608).abs() < 1e-9);
    assert_eq!(suite["disagreements"].as_array().unwrap().len(), 6);
    assert_eq!(server.request_count(), 40);

    // A prompt file by path works the same way; it is the same request, so it comes from the cache.
    let (by_path, _) = project.json(&["run", "--prompt", "prompts/terse.toml"]);
    assert_eq!(by_path["results"][0]["prompt"], "prompts/terse.toml");
    assert_eq!(by_path["calls"]["cached"], 20);
    let output = project.command().args(["run", "--prompt", "terse"]).output().unwrap();
    let table = String::from_utf8_lossy(&output.stdout);
    assert!(table.contains(" s@terse "), "{table}");

    // A variant is gated against the suite's baseline, but never becomes it.
    project.command().args(["baseline", "update"]).assert().code(0);
    let (gated, code) = project.json(&["gate", "--prompt", "terse"]);
    assert_eq!(code, 1, "{gated:#}");
    assert_eq!(gated["results"][0]["baseline"]["verdict"], "Regressed");
    let refused = project
        .command()
        .args(["baseline", "update", "--prompt", "terse"])
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("make it the suite's `prompt`"));

    let unknown = project.command().args(["run", "--prompt", "verbose"]).output().unwrap();
    assert_eq!(unknown.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&unknown.stderr);
    assert!(
        stderr.contains("suite `s` has no prompt `verbose`") && stderr.contains("terse"),
        "{stderr}"
    );
}

#[test]
fn compare_of_one_model_names_the_configs_models_in_its_hint() {
    let server = FakeServer::start(|_| Reply::label("notify"));
    let project = Project::new(&server.base_url, &labels(2), 1, "");
    let hint = |args: &[&str]| {
        let output = project.command().args(args).output().unwrap();
        assert_eq!(output.status.code(), Some(2));
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        assert!(
            stderr.contains("error: compare needs at least two models or two prompt versions"),
            "{stderr}"
        );
        stderr
    };
    let one = hint(&["compare"]);
    assert!(
        one.contains("defines one model (m): add another under [models.NAME]"),
        "{one}"
    );

    let config = std::fs::read_to_string(project.file("promptgate.toml")).unwrap();
    project.write(
        "promptgate.toml",
        &format!("{config}\n[models.m2]\nprovider = \"fake\"\nmodel = \"other\"\n"),
    );
    let two = hint(&["compare", "--model", "m"]);
    assert!(
        two.contains("e.g. promptgate compare --model m --model m2 (models in"),
        "{two}"
    );
    assert_eq!(server.request_count(), 0);
}
