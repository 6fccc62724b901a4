//! The pull-request comment (`gate --format markdown`): the cases that went down, each with what
//! the baseline answered and what the candidate answers now, within GitHub's comment limit.

mod support;

use serde_json::json;
use support::fake_server::{FakeServer, Reply, Seen};
use support::Project;

/// GitHub refuses a comment body over this many characters.
const GITHUB_COMMENT_LIMIT: usize = 65_536;

fn labels(n: usize) -> Vec<&'static str> {
    (0..n).map(|i| if i % 2 == 0 { "suppress" } else { "notify" }).collect()
}

fn case_of(seen: &Seen) -> usize {
    seen.case_id().trim_start_matches('c').parse().expect("case id")
}

/// Answers with a `why` that names the server and the case; wrong where `wrong` says.
fn server(wrong: fn(usize) -> bool, who: &'static str, why_chars: usize) -> FakeServer {
    FakeServer::start(move |seen| {
        let case = case_of(seen);
        let right = if case % 2 == 0 { "suppress" } else { "notify" };
        let flipped = if right == "suppress" { "notify" } else { "suppress" };
        let label = if wrong(case) { flipped } else { right };
        let why = format!("{who} reasoning for c{case:02} ").repeat(why_chars / 30 + 1);
        Reply::Content(json!({"decision": label, "why": why}).to_string())
    })
}

/// A project whose baseline comes from `before`, now answered by `after`, with the candidate's
/// answers in their own cache.
fn gated_project(cases: usize, samples: u32, before: &FakeServer, after: &FakeServer) -> Project {
    let project = Project::new(&before.base_url, &labels(cases), samples, "");
    project.command().args(["baseline", "update"]).assert().success();
    let config = std::fs::read_to_string(project.file("promptgate.toml")).unwrap();
    project.write("promptgate.toml", &config.replace(&before.base_url, &after.base_url));
    project
}

fn comment(project: &Project, extra: &[&str]) -> (String, i32) {
    let output = project
        .command()
        .args(["gate", "--cache", "candidate.sqlite", "--format", "markdown"])
        .args(extra)
        .output()
        .expect("gate");
    (
        String::from_utf8(output.stdout).expect("UTF-8"),
        output.status.code().expect("exit code"),
    )
}

#[test]
fn a_failed_gate_shows_each_regressed_case_with_the_baseline_and_the_new_answers() {
    let before = server(|_| false, "baseline", 40);
    let after = server(|case| [3, 7, 12].contains(&case), "candidate", 40);
    let project = gated_project(20, 3, &before, &after);
    let baseline = std::fs::read_to_string(project.file("baselines/s/m.json")).unwrap();
    assert!(baseline.contains("\"schema_version\": 3,"), "{baseline}");
    assert!(baseline.contains("baseline reasoning for c03"), "{baseline}");

    let (markdown, code) = comment(&project, &[]);
    assert_eq!(code, 1, "{markdown}");
    assert!(
        markdown.starts_with("## promptgate gate: ❌ significant regression"),
        "{markdown}"
    );
    assert!(markdown.chars().count() <= GITHUB_COMMENT_LIMIT);
    assert!(markdown.contains("### s / m: 3 case(s) went down"), "{markdown}");
    // One block per regressed case, each with both sides.
    assert_eq!(markdown.matches("<details>").count(), 3, "{markdown}");
    assert_eq!(markdown.matches("</details>").count(), 3, "{markdown}");
    for case in ["c03", "c07", "c12"] {
        let start = markdown
            .find(&format!(
                "<details><summary><code>{case}</code>: 3/3 → 0/3 right · **broke**"
            ))
            .unwrap_or_else(|| panic!("no block for {case}: {markdown}"));
        let block = &markdown[start..start + markdown[start..].find("</details>").unwrap()];
        let (right, wrong) = if case == "c12" {
            ("suppress", "notify")
        } else {
            ("notify", "suppress")
        };
        assert!(
            block.contains(&format!("**Checks**: rule {}", &case[1..].trim_start_matches('0'))),
            "{block}"
        );
        // Braces and backticks are escaped (GitHub shows them as they are).
        assert!(
            block.contains(&format!("**Expected**: \\{{\"label\":\"{right}\"\\}}")),
            "{block}"
        );
        assert!(
            block.contains(&format!("| baseline | 3 | ✅ answered \\`{right}\\` | \\{{\"decision\":\"{right}\",\"why\":\"baseline reasoning for {case}")),
            "{block}"
        );
        assert!(
            block.contains(&format!(
                "| this run | 3 | ❌ answered \\`{wrong}\\`, expected \\`{right}\\` | \\{{\"decision\":\"{wrong}\",\"why\":\"candidate reasoning for {case}"
            )),
            "{block}"
        );
    }
    // Nothing was left out, so there is no note.
    assert!(!markdown.contains("Truncated"), "{markdown}");
}

#[test]
fn a_comment_on_five_thousand_cases_with_long_answers_is_cut_under_the_limit_with_a_note() {
    let before = server(|_| false, "baseline", 3_000);
    let after = server(|case| case % 2 == 0, "candidate", 3_000);
    let project = gated_project(5_000, 1, &before, &after);
    let url = "https://github.com/acme/rules/actions/runs/42";
    let (markdown, code) = comment(&project, &["--report-url", url]);
    assert_eq!(code, 1);
    let chars = markdown.chars().count();
    assert!(chars <= GITHUB_COMMENT_LIMIT, "{chars} characters");
    assert!(chars > GITHUB_COMMENT_LIMIT / 2, "the room is used: {chars} characters");
    assert!(markdown.contains("### s / m: 2500 case(s) went down"), "{markdown}");
    let shown = markdown.matches("<details>").count();
    assert!(shown > 10 && shown < 2_500, "{shown} blocks");
    // Every block that is shown is whole, and the note says where the rest is.
    assert_eq!(shown, markdown.matches("</details>").count());
    assert!(
        markdown.contains(&format!(
            "> ✂️ **Truncated** to stay under GitHub's 65536-character limit for a comment: {} case(s) not shown. \
             Every case with every answer is in the HTML report (`--out report.html`) attached to [this run]({url}).",
            2_500 - shown
        )),
        "{}",
        &markdown[markdown.len() - 800..]
    );
    assert!(markdown.trim_end().ends_with("</sub>"), "the footer stays");
}
