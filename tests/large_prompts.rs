//! A suite whose rendered prompts outgrow what a run holds in memory
//! (`prompt_store::HELD_BYTES`, 16 MiB): the rest wait in a temporary file, and every call
//! still carries its own case's text, and the same cache key.

mod support;

use serde_json::Value;
use support::fake_server::{FakeServer, Reply, Seen};
use support::Project;

const CASES: usize = 40;
/// 40 cases × 600 KB of rule text: about 24 MB of prompts, so the last third spill.
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

fn printed(project: &Project, args: &[&str]) -> (Value, i32) {
    let output = project.command().args(args).output().expect("run");
    let value = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "{args:?} printed no JSON ({e}): {}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    (value, output.status.code().expect("exit code"))
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
            "{{\"id\": \"c{case:02}\", \"vars\": {{\"rule\": \"{rule}\", \"finding\": {{\"n\": {case}}}}}, \"expect\": {{\"label\": \"{label}\"}}}}\n"
        ));
    }
    project.write("cases/s/cases.jsonl", &lines);

    let (record, code) = printed(&project, &["run", "--format", "json", "--quiet"]);
    assert_eq!(code, 0, "{record}");
    let result = &record["results"][0];
    assert_eq!(
        result["accuracy"]["point"], 1.0,
        "every call carried its own case: {result}"
    );
    assert_eq!(record["calls"]["made"], 2 * CASES);
    assert_eq!(server.request_count(), 2 * CASES);

    // The cache keys of the prompts read back are the keys they were stored under.
    let (again, code) = printed(&project, &["run", "--format", "json", "--quiet", "--offline"]);
    assert_eq!(code, 0, "{again}");
    assert_eq!(again["calls"]["cached"], 2 * CASES);
    assert_eq!(again["results"][0]["accuracy"]["point"], 1.0);

    // A shard keeps its cases' prompts, spilled or not, and digests the whole selection.
    for shard in ["1/2", "2/2"] {
        let (part, code) = printed(
            &project,
            &["run", "--format", "json", "--quiet", "--offline", "--shard", shard],
        );
        assert_eq!(code, 0, "shard {shard}: {part}");
        assert_eq!(part["results"][0]["accuracy"]["point"], 1.0, "shard {shard}");
    }
    assert_eq!(server.request_count(), 2 * CASES, "nothing was asked twice");
}
