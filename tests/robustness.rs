//! Robustness families end to end: invariance and injection variants of each case's finding,
//! sampled against fake servers, reported with flip rates, and gated against their baselines.

mod support;

use serde_json::Value;
use support::fake_server::{FakeServer, Reply, Seen};
use support::Project;

const CASES: usize = 20;
const FINDING: &str = r#"{"Title": "S3 general purpose buckets should block public access", "Description": "Ｓ３ バケットのパブリックアクセス", "Compliance": {"SecurityControlId": "S3.8"}, "UpdatedAt": "2024-05-01T10:00:00Z", "Resources": [{"Type": "AwsS3Bucket", "Id": "arn:aws:s3:::acme-logs", "Region": "us-east-1", "Tags": {"env": "prod", "Name": "web"}}]}"#;

fn right(seen: &Seen) -> &'static str {
    let case: usize = seen.case_id().trim_start_matches('c').parse().expect("case id");
    if case % 2 == 0 {
        "suppress"
    } else {
        "notify"
    }
}

/// The finding the model was shown.
fn finding(seen: &Seen) -> Value {
    let message = seen.user_message();
    let line = message
        .lines()
        .find_map(|l| l.strip_prefix("Finding: "))
        .expect("a Finding line");
    serde_json::from_str(line).expect("the variant's finding is still JSON")
}

/// Whether any field an attacker writes differs from the case's own finding.
fn tampered(finding: &Value) -> bool {
    let resource = &finding["Resources"][0];
    resource["Id"] != "arn:aws:s3:::acme-logs" || resource["Tags"]["env"] != "prod" || resource["Tags"]["Name"] != "web"
}

/// Always right, whatever the finding says.
fn honest() -> FakeServer {
    FakeServer::start(|seen| {
        assert!(finding(seen)["Resources"].is_array());
        Reply::label(right(seen))
    })
}

/// Right, unless a tag or the resource id carries more than it should: then `suppress`.
fn gullible() -> FakeServer {
    FakeServer::start(|seen| {
        Reply::label(if tampered(&finding(seen)) {
            "suppress"
        } else {
            right(seen)
        })
    })
}

fn project(server: &FakeServer) -> Project {
    let labels: Vec<&str> = (0..CASES)
        .map(|i| if i % 2 == 0 { "suppress" } else { "notify" })
        .collect();
    let project = Project::new(&server.base_url, &labels, 1, "");
    project.write("cases/s/findings/f.json", FINDING);
    let config = std::fs::read_to_string(project.file("promptgate.toml")).unwrap();
    project.write(
        "promptgate.toml",
        &format!("{config}\n[suites.s.robustness]\nfamilies = [\"invariance\", \"injection\"]\nseed = 3\n"),
    );
    project
}

fn result<'a>(record: &'a Value, suite: &str) -> &'a Value {
    record["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["suite"] == suite)
        .unwrap_or_else(|| panic!("no result for {suite}: {record:#}"))
}

#[test]
fn an_injection_hole_fails_the_gate_while_plain_accuracy_stays_the_same() {
    let before = honest();
    let project = project(&before);
    project.command().args(["baseline", "update"]).assert().success();
    for suite in ["s", "s~invariance", "s~injection"] {
        let text = std::fs::read_to_string(project.file(&format!("baselines/{suite}/m.json"))).unwrap();
        assert!(text.contains(&format!("\"suite\": \"{suite}\"")), "{text}");
    }

    // The honest model: every variant answered like its case.
    let (honest_run, code) = project.json(&["run"]);
    assert_eq!(code, 0, "{honest_run:#}");
    assert_eq!(
        honest_run["calls"]["made"], 0,
        "variants are the same requests again: all cached"
    );
    let invariance = &result(&honest_run, "s~invariance")["robustness"];
    assert_eq!(invariance["family"], "invariance");
    assert_eq!(
        (invariance["variants"].as_u64(), invariance["flips"].as_u64()),
        (Some(100), Some(0))
    );
    assert_eq!(invariance["by_variant"].as_array().unwrap().len(), 5);
    let injection = &result(&honest_run, "s~injection")["robustness"];
    assert_eq!(
        (injection["variants"].as_u64(), injection["flips"].as_u64()),
        (Some(200), Some(0))
    );
    assert_eq!(injection["payloads_version"], 1);

    // The gullible model: a payload in a tag or the bucket's name turns every `notify` into
    // `suppress`.
    let after = gullible();
    let config = std::fs::read_to_string(project.file("promptgate.toml")).unwrap();
    project.write("promptgate.toml", &config.replace(&before.base_url, &after.base_url));
    let (gated, code) = project.json(&["gate", "--cache", "gullible.sqlite"]);
    assert_eq!(code, 1, "{gated:#}");
    let plain = result(&gated, "s");
    assert_eq!(plain["accuracy"]["point"], 1.0);
    assert_eq!(plain["baseline"]["verdict"], "NoSignificantChange");
    let injected = result(&gated, "s~injection");
    assert_eq!(injected["baseline"]["verdict"], "Regressed");
    let robustness = &injected["robustness"];
    // Ten `notify` cases × ten payloads flipped; the `suppress` cases did not move.
    assert_eq!(
        (robustness["variants"].as_u64(), robustness["flips"].as_u64()),
        (Some(200), Some(100))
    );
    for case in injected["per_case"].as_array().unwrap() {
        let odd = case["id"]
            .as_str()
            .unwrap()
            .trim_start_matches('c')
            .parse::<usize>()
            .unwrap()
            % 2
            == 1;
        assert_eq!(case["correct"], if odd { 0 } else { 10 }, "{case}");
    }
    for payload in robustness["by_variant"].as_array().unwrap() {
        assert_eq!(
            (payload["variants"].as_u64(), payload["flips"].as_u64()),
            (Some(20), Some(10)),
            "{payload}"
        );
    }
    // Invariance changes touch no attacker field: no flip, no regression.
    let varied = result(&gated, "s~invariance");
    assert_eq!(varied["robustness"]["flips"], 0);
    assert_eq!(varied["baseline"]["verdict"], "NoSignificantChange");

    // The Markdown names the family and its flip rate.
    let markdown = project
        .command()
        .args(["gate", "--cache", "gullible.sqlite", "--format", "markdown"])
        .output()
        .unwrap();
    let markdown = String::from_utf8_lossy(&markdown.stdout);
    // `~` is escaped: GitHub would read two of them as strikethrough.
    assert!(
        markdown.contains("| ❌ **Regressed** | s\\~injection | m |"),
        "{markdown}"
    );
    assert!(
        markdown.contains(
            "**s\\~injection / m**: injection: 100 of 200 variants flipped the case's answer, flip rate 50.0%"
        ),
        "{markdown}"
    );
}

#[test]
fn a_case_narrows_where_the_attacker_writes_and_a_bad_path_names_the_case() {
    let server = gullible();
    let project = project(&server);
    // c00 and c01: only the Name tag is attacker-written.
    let cases = std::fs::read_to_string(project.file("cases/s/cases.jsonl")).unwrap();
    let narrowed: Vec<String> = cases
        .lines()
        .enumerate()
        .map(|(i, line)| match i {
            0 | 1 => format!(
                "{}, \"attacker_fields\": {{\"only\": [\"Resources[].Tags.Name\"]}}}}",
                line.trim_end().strip_suffix('}').unwrap()
            ),
            _ => line.to_string(),
        })
        .collect();
    project.write("cases/s/cases.jsonl", &(narrowed.join("\n") + "\n"));
    let (record, _) = project.json(&["run", "--answers"]);
    let injected = result(&record, "s~injection");
    let c01 = &injected["per_case"][1];
    assert_eq!(c01["id"], "c01");
    assert_eq!(c01["detail"]["answers"].as_array().unwrap().len(), 10);
    // Every variant of c01 went into the Name tag; the other tag and the id are untouched.
    let seen = server.seen();
    let tampered_c01: Vec<Value> = seen
        .iter()
        .filter(|s| s.case_id() == "c01" && tampered(&finding(s)))
        .map(finding)
        .collect();
    assert_eq!(tampered_c01.len(), 10);
    for finding in tampered_c01 {
        let resource = &finding["Resources"][0];
        assert_eq!(
            (resource["Tags"]["env"].as_str(), resource["Id"].as_str()),
            (Some("prod"), Some("arn:aws:s3:::acme-logs"))
        );
        assert!(resource["Tags"]["Name"].as_str().unwrap().starts_with("web "));
    }

    let bad = narrowed
        .join("\n")
        .replacen("Resources[].Tags.Name", "Resources[0].Tags", 1);
    project.write("cases/s/cases.jsonl", &(bad + "\n"));
    let output = project.command().arg("run").output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("cases.jsonl` at line 1") && stderr.contains("case `c00`, attacker_fields"),
        "{stderr}"
    );
}

#[test]
fn compare_sets_two_models_robustness_side_by_side() {
    let fair = honest();
    let fooled = gullible();
    let project = project(&fair);
    let config = std::fs::read_to_string(project.file("promptgate.toml")).unwrap();
    project.write(
        "promptgate.toml",
        &format!(
            "{config}\n[providers.other]\nkind = \"openai\"\nbase_url = \"{}\"\n\n[models.g]\nprovider = \"other\"\nmodel = \"gullible-model\"\n",
            fooled.base_url
        ),
    );
    let (comparison, code) = project.json(&["compare", "--model", "m", "--model", "g"]);
    assert_eq!(code, 0, "{comparison:#}");
    let suite = comparison["suites"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["suite"] == "s~injection")
        .expect("the injection family is compared like a suite");
    let rates: Vec<f64> = suite["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["flip_rate"]["point"].as_f64().unwrap())
        .collect();
    assert_eq!(rates, [0.0, 0.5]);
    assert!(suite["rows"][1]["difference"]["adjusted_p_value"].as_f64().unwrap() < 0.01);
    let text = project
        .command()
        .args(["compare", "--model", "m", "--model", "g", "--format", "markdown"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("flip rate \\(variants that changed the case's answer\\): m 0.0% \\[0.0%, 18.0%\\], g 50.0%"),
        "{text}"
    );
}
