//! `--case` and `--tag` run some of a suite's cases, `--list` names them and `--show-prompts`
//! shows what they ask, against the fake server, which counts and names every request it is
//! sent (each prompt carries `case=ID`).

mod support;

use std::collections::BTreeSet;

use support::fake_server::{FakeServer, Reply};
use support::Project;

/// A project of twelve cases, `c00` to `c11`, × 2 samples; `c03` and `c07` are tagged `ssh`,
/// `c07` also `ec2`.
fn project(server: &FakeServer) -> Project {
    let project = Project::new(&server.base_url, &["notify"; 12], 2, "");
    let path = project.file("cases/s/cases.jsonl");
    let lines = std::fs::read_to_string(&path).expect("cases");
    let tagged: String = lines
        .lines()
        .map(|line| {
            let tags = match line {
                _ if line.contains("\"c03\"") => r#", "tags": ["ssh"]}"#,
                _ if line.contains("\"c07\"") => r#", "tags": ["ssh", "ec2"]}"#,
                _ => "}",
            };
            format!("{}{tags}\n", line.strip_suffix('}').expect("a JSON object"))
        })
        .collect();
    std::fs::write(&path, tagged).expect("write cases");
    project
}

/// The case ids the server was asked about.
fn asked(server: &FakeServer) -> BTreeSet<String> {
    server.seen().iter().map(|seen| seen.case_id()).collect()
}

#[test]
fn only_the_chosen_cases_are_asked_and_the_record_says_it_is_a_subset() {
    let server = FakeServer::start(|_| Reply::label("notify"));
    let project = project(&server);
    let (record, code) = project.json(&["run", "--case", "c01", "--case", "c1?"]);
    assert_eq!(code, 0, "{record}");
    assert_eq!(
        asked(&server),
        BTreeSet::from(["c01".into(), "c10".into(), "c11".into()])
    );
    assert_eq!(server.request_count(), 6, "3 cases × 2 samples");
    let result = &record["results"][0];
    assert_eq!(result["cases"], 3);
    assert_eq!(
        result["filtered"],
        serde_json::json!({"case": ["c01", "c1?"], "chosen": 3, "suite_cases": 12})
    );

    // The terminal says so once per suite, and the answers serve the whole run later.
    let output = project
        .command()
        .args(["run", "--offline", "--case", "c01", "--case", "c1?"])
        .output()
        .expect("run");
    let text = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        text.matches("subset s: 3 of 12 cases, chosen by --case 'c01' --case 'c1?'")
            .count(),
        1,
        "{text}"
    );
    // A dry run of the subset counts its requests and says it is a subset.
    let (plan, code) = project.json(&["run", "--dry-run", "--case", "c01", "--case", "c1?", "--case", "c02"]);
    assert_eq!(code, 0);
    assert_eq!(
        (
            plan["rows"][0]["requests"].as_u64(),
            plan["rows"][0]["to_call"].as_u64()
        ),
        (Some(8), Some(2)),
        "{plan}"
    );
    assert_eq!(plan["rows"][0]["filtered"]["chosen"], 4);
    let dry = project
        .command()
        .args(["run", "--dry-run", "--case", "c01"])
        .output()
        .expect("dry run");
    assert!(String::from_utf8_lossy(&dry.stdout).contains("subset s: 1 of 12 cases, chosen by --case 'c01'"));
    let (whole, code) = project.json(&["run"]);
    assert_eq!(code, 0);
    assert!(whole["results"][0].get("filtered").is_none(), "{whole}");
    assert_eq!(whole["results"][0]["calls"]["cached"], 6);
    assert_eq!(
        server.request_count(),
        24,
        "the other 9 cases × 2 were asked, and only they"
    );
}

#[test]
fn tags_choose_cases_and_with_ids_both_must_hold() {
    let server = FakeServer::start(|_| Reply::label("notify"));
    let project = project(&server);
    let (record, code) = project.json(&["run", "--tag", "ssh"]);
    assert_eq!(code, 0, "{record}");
    assert_eq!(asked(&server), BTreeSet::from(["c03".into(), "c07".into()]));
    assert_eq!(record["results"][0]["filtered"]["tag"], serde_json::json!(["ssh"]));

    let (record, code) = project.json(&["run", "--offline", "--tag", "ec2", "--tag", "nope", "--case", "c0*"]);
    assert_eq!(code, 0, "{record}");
    assert_eq!(record["results"][0]["cases"], 1, "c07 alone has ec2 and an id c0*");
    assert_eq!(record["results"][0]["per_case"][0]["id"], "c07");
}

#[test]
fn a_case_that_does_not_render_stops_the_whole_run_but_not_a_run_of_other_cases() {
    let server = FakeServer::start(|_| Reply::label("notify"));
    let project = project(&server);
    // `rule` is missing: the strict template cannot render this case.
    let path = project.file("cases/s/cases.jsonl");
    let mut lines = std::fs::read_to_string(&path).expect("cases");
    lines.push_str("{\"id\": \"draft\", \"vars\": {\"finding\": {}}, \"expect\": {\"label\": \"notify\"}}\n");
    std::fs::write(&path, lines).expect("write");

    let whole = project.command().args(["run"]).output().expect("run");
    assert_eq!(whole.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&whole.stderr).contains("draft"));
    assert_eq!(server.request_count(), 0);

    let (record, code) = project.json(&["run", "--case", "c00"]);
    assert_eq!(code, 0, "{record}");
    assert_eq!(record["results"][0]["filtered"]["suite_cases"], 13);
    assert_eq!(asked(&server), BTreeSet::from(["c00".into()]));
}

#[test]
fn a_filter_that_chooses_nothing_names_the_ids_there_are_and_asks_nothing() {
    let server = FakeServer::start(|_| Reply::label("notify"));
    let project = project(&server);
    let output = project.command().args(["run", "--case", "c99"]).output().expect("run");
    assert_eq!(output.status.code(), Some(4), "nothing selected");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("no case of the selected suites is chosen by --case 'c99'"),
        "{stderr}"
    );
    assert!(stderr.contains("`s` has `c00`, `c01`, `c02` and 9 more"), "{stderr}");
    assert_eq!(server.request_count(), 0);
    assert!(!project.file(".promptgate/cache.sqlite").exists());
}

#[test]
fn gates_baselines_and_shards_take_whole_suites() {
    let server = FakeServer::start(|_| Reply::label("notify"));
    let project = project(&server);
    for args in [
        &["gate", "--case", "c00"][..],
        &["baseline", "update", "--case", "c00"],
        &["drift", "--tag", "ssh"],
        &["run", "--case", "c00", "--shard", "1/2"],
        &["run", "--case", ""],
    ] {
        let output = project.command().args(args).output().expect("run");
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        assert!(!output.stderr.is_empty(), "{args:?} says why");
    }
    assert_eq!(server.request_count(), 0);
}

#[test]
fn compare_says_which_cases_it_compared() {
    let server = FakeServer::start(|_| Reply::label("notify"));
    let project = project(&server);
    let config = std::fs::read_to_string(project.file("promptgate.toml")).expect("config");
    let config = config.replace(
        "[suites.s]",
        "[models.m2]\nprovider = \"fake\"\nmodel = \"other\"\nmax_tokens = 50\n\n[suites.s]",
    );
    project.write("promptgate.toml", &config);
    let (comparison, code) = project.json(&["compare", "-m", "m", "-m", "m2", "--tag", "ssh"]);
    assert_eq!(code, 0, "{comparison}");
    assert_eq!(comparison["suites"][0]["filtered"]["chosen"], 2);
    assert_eq!(server.request_count(), 8, "2 cases × 2 samples × 2 models");
    let output = project
        .command()
        .args([
            "compare",
            "-m",
            "m",
            "-m",
            "m2",
            "--tag",
            "ssh",
            "--offline",
            "--format",
            "markdown",
        ])
        .output()
        .expect("compare");
    assert!(String::from_utf8_lossy(&output.stdout).contains("2 of 12 cases, chosen by --tag 'ssh'"));
}

#[test]
fn list_names_the_chosen_cases_without_rendering_or_calling_anything() {
    let server = FakeServer::start(|_| Reply::label("notify"));
    let project = project(&server);
    // A case the template cannot render is still listed: nothing is rendered.
    let path = project.file("cases/s/cases.jsonl");
    let mut lines = std::fs::read_to_string(&path).expect("cases");
    lines.push_str("{\"id\": \"draft\", \"vars\": {}, \"expect\": {\"label\": \"notify\"}, \"tags\": [\"ssh\"]}\n");
    std::fs::write(&path, lines).expect("write");

    let output = project
        .command()
        .args(["run", "--list", "--tag", "ssh"])
        .output()
        .expect("list");
    assert_eq!(output.status.code(), Some(0));
    let text = String::from_utf8_lossy(&output.stdout);
    let listed: Vec<Vec<&str>> = text
        .lines()
        .take_while(|line| !line.is_empty())
        .map(|line| line.split_whitespace().collect())
        .collect();
    assert_eq!(
        listed,
        [
            ["s/c03", "ssh", "cases/s/cases.jsonl:4"],
            ["s/c07", "ssh,ec2", "cases/s/cases.jsonl:8"],
            ["s/draft", "ssh", "cases/s/cases.jsonl:13"],
        ],
        "{text}"
    );
    assert!(text.ends_with("\n3 of 13 cases in 1 suite\n"), "{text}");

    let (list, code) = project.json(&["run", "--list", "--case", "c1*"]);
    assert_eq!(code, 0);
    assert_eq!(list["kind"], "case_list");
    assert_eq!(list["suites"][0]["suite_cases"], 13);
    let ids: Vec<&str> = list["suites"][0]["cases"]
        .as_array()
        .expect("cases")
        .iter()
        .map(|case| case["id"].as_str().expect("id"))
        .collect();
    assert_eq!(ids, ["c10", "c11"]);
    assert_eq!(list["suites"][0]["cases"][0]["line"], 11);

    let none = project
        .command()
        .args(["run", "--list", "--case", "zz"])
        .output()
        .expect("list");
    assert_eq!(none.status.code(), Some(4));
    assert_eq!(server.request_count(), 0);
    assert!(!project.file(".promptgate/cache.sqlite").exists());
}

#[test]
fn show_prompts_prints_what_each_chosen_case_asks_once_whatever_the_models() {
    let server = FakeServer::start(|_| Reply::label("notify"));
    let project = project(&server);
    let config = std::fs::read_to_string(project.file("promptgate.toml")).expect("config");
    let config = config
        .replace(
            "[suites.s]",
            "[models.m2]\nprovider = \"fake\"\nmodel = \"other\"\nmax_tokens = 50\n\n[suites.s]",
        )
        .replace("models = [\"m\"]", "models = [\"m\", \"m2\"]");
    project.write("promptgate.toml", &config);
    // A finding is input: an escape sequence in it must not reach the terminal.
    let path = project.file("cases/s/cases.jsonl");
    let mut lines = std::fs::read_to_string(&path).expect("cases");
    lines.push_str("{\"id\": \"esc\", \"vars\": {\"rule\": \"clear\\u001b[2J\", \"finding\": {}}, \"expect\": {\"label\": \"notify\"}}\n");
    std::fs::write(&path, lines).expect("write");

    let output = project
        .command()
        .args(["run", "--show-prompts", "--case", "c01", "--case", "esc"])
        .output()
        .expect("show");
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        text.matches("──── s / c01 ────").count(),
        1,
        "once for two models: {text}"
    );
    assert!(
        text.contains("[system]\nAnswer suppress or notify.\n\n[user]\ncase=c01\nRule: rule 1\nFinding: {"),
        "{text}"
    );
    assert!(text.contains("[response schema] decision"), "{text}");
    assert!(text.contains("Rule: clear\u{fffd}[2J"), "{text}");
    assert!(!text.contains('\u{1b}'), "an escape reached the terminal");

    let (shown, code) = project.json(&["run", "--show-prompts", "--case", "c01"]);
    assert_eq!(code, 0);
    assert_eq!(shown["kind"], "rendered_prompts");
    assert_eq!(shown["prompts"].as_array().map(Vec::len), Some(1));
    assert_eq!(shown["prompts"][0]["case"], "c01");
    assert_eq!(shown["prompts"][0]["rendered"]["messages"][1]["role"], "user");
    assert!(shown["prompts"][0]["rendered"]["messages"][1]["content"]
        .as_str()
        .is_some_and(|content| content.starts_with("case=c01\n")));
    assert_eq!(shown["prompts"][0]["rendered"]["response_schema"]["name"], "decision");
    assert_eq!(server.request_count(), 0);
    assert!(!project.file(".promptgate/cache.sqlite").exists());
}
