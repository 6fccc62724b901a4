//! A suite whose rendered prompts outgrow what a run holds in memory
//! (`prompt_store::HELD_BYTES`, 1 MiB of packed text for the suite and its family together):
//! the rest wait in temporary files, and every call still carries its own case's text, and
//! the same cache key.

mod support;

use serde_json::Value;
use support::fake_server::{FakeServer, Reply, Seen};
use support::Project;

const CASES: usize = 40;
/// 40 cases × 600 KB of rule text: about 24 MB of the suite's prompts and more of its
/// injection family's, with 1 MiB held for both: most spill.
const RULE_BYTES: usize = 600_000;

fn label(case: usize) -> &'static str {
    if case % 2 == 0 {
        "suppress"
    } else {
        "notify"
    }
}

/// Right only when the user message is exactly case `cNN`'s: its id, its own rule number and
/// its whole rule.
fn server() -> FakeServer {
    FakeServer::start(|seen: &Seen| {
        let case: usize = seen.case_id().trim_start_matches('c').parse().expect("case id");
        let message = seen.user_message();
        let own = message.contains(&format!("Rule: rule {case} {}\n", "x".repeat(RULE_BYTES)));
        let flipped = if label(case) == "suppress" {
            "notify"
        } else {
            "suppress"
        };
        Reply::label(if own { label(case) } else { flipped })
    })
}

/// k = 2 samples of each case, and 2 variants of each in the injection family.
const CALLS: usize = 4 * CASES;

/// A record without what differs between two runs of it: when, how long, and what was called
/// rather than read from the cache.
fn timeless(mut record: Value) -> Value {
    for key in ["started_at", "duration_ms", "calls"] {
        record.as_object_mut().unwrap().remove(key);
    }
    for result in record["results"].as_array_mut().unwrap() {
        for key in ["calls", "latency_ms", "cost", "tokens"] {
            result.as_object_mut().unwrap().remove(key);
        }
    }
    record
}

#[test]
fn prompts_past_what_a_run_holds_are_sent_and_looked_up_as_rendered() {
    let server = server();
    let labels: Vec<&str> = (0..CASES).map(label).collect();
    let project = Project::new(&server.base_url, &labels, 2, "");
    let mut lines = String::new();
    for (case, label) in labels.iter().enumerate() {
        let rule = format!("rule {case} {}", "x".repeat(RULE_BYTES));
        lines.push_str(&format!(
            "{{\"id\": \"c{case:02}\", \"vars\": {{\"rule\": \"{rule}\", \"finding\": {{\"$file\": \"findings/f.json\"}}}}, \"expect\": {{\"label\": \"{label}\"}}}}\n"
        ));
    }
    project.write("cases/s/cases.jsonl", &lines);
    // An injection family: two variants a case, each as large, in a store of their own.
    project.write(
        "cases/s/findings/f.json",
        r#"{"Id": "x", "Resources": [{"Type": "AwsS3Bucket", "Id": "arn:aws:s3:::logs", "Tags": {"env": "dev"}}]}"#,
    );
    let config = std::fs::read_to_string(project.file("promptgate.toml")).unwrap();
    project.write(
        "promptgate.toml",
        &format!("{config}\n[suites.s.robustness]\nfamilies = [\"injection\"]\nvariants = 2\nseed = 1\n"),
    );

    let (record, code) = project.json(&["run", "--quiet"]);
    assert_eq!(code, 0, "{record}");
    assert_eq!(record["results"][1]["suite"], "s~injection");
    for result in record["results"].as_array().unwrap() {
        assert_eq!(
            result["accuracy"]["point"], 1.0,
            "every call carried its own case: {result}"
        );
    }
    assert_eq!(record["calls"]["made"], CALLS);
    assert_eq!(server.request_count(), CALLS);
    // Each variant carried its own payload: 40 cases' texts and 80 variants' texts, each
    // sent twice (k = 2) or once.
    let texts: std::collections::HashSet<String> = server.seen().iter().map(|seen| seen.user_message()).collect();
    assert_eq!(texts.len(), 3 * CASES);

    // The cache keys of the prompts read back are the keys they were stored under.
    let (again, code) = project.json(&["run", "--quiet", "--offline"]);
    assert_eq!(code, 0, "{again}");
    assert_eq!(again["calls"]["cached"], CALLS);
    assert_eq!(timeless(again), timeless(record));

    // A shard keeps its cases' prompts, spilled or not, and digests the whole selection.
    for shard in ["1/2", "2/2"] {
        let (part, code) = project.json(&["run", "--quiet", "--offline", "--shard", shard]);
        assert_eq!(code, 0, "shard {shard}: {part}");
        for result in part["results"].as_array().unwrap() {
            assert_eq!(result["accuracy"]["point"], 1.0, "shard {shard}: {result}");
        }
    }
    assert_eq!(server.request_count(), CALLS, "nothing was asked twice");
}
