//! Bad input ends with exit 2 (or 4 when nothing is selected), a message naming the file and
//! line or field, a hint, and never a panic.

mod support;

use predicates::prelude::*;
use support::fake_server::{FakeServer, Reply};
use support::Project;

fn project() -> (FakeServer, Project) {
    let server = FakeServer::start(|_| Reply::label("notify"));
    let project = Project::new(&server.base_url, &["notify", "suppress"], 1, "");
    (server, project)
}

fn fails_with(project: &Project, args: &[&str], code: i32, needles: &[&str]) {
    let output = project.command().args(args).output().expect("run");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(code), "stderr: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    for needle in needles {
        assert!(stderr.contains(needle), "missing `{needle}` in: {stderr}");
    }
    assert!(stderr.contains("hint:"), "no hint in: {stderr}");
    assert!(output.stdout.is_empty(), "nothing on stdout on error");
}

#[test]
fn malformed_toml_names_file_and_line() {
    let (server, project) = project();
    project.write(
        "promptgate.toml",
        "schema_version = 1\n[models.m]\nprovider = \"fake\"\nmodel = \n",
    );
    fails_with(&project, &["run"], 2, &["promptgate.toml", "line 4"]);
    assert_eq!(server.request_count(), 0);
}

#[test]
fn missing_config_says_how_to_point_at_one() {
    let (_server, project) = project();
    fails_with(
        &project,
        &["--config", "nope.toml", "run"],
        2,
        &["nope.toml", "--config"],
    );
}

#[test]
fn malformed_case_json_names_file_and_line() {
    let (_server, project) = project();
    project.write(
        "cases/s/more.jsonl",
        "{\"id\": \"x\", \"vars\": {\"rule\": \"r\", \"finding\": {}}, \"expect\": {\"label\": \"notify\"}}\n{\"id\": \"y\", \"expect\": \n",
    );
    fails_with(&project, &["run"], 2, &["cases/s/more.jsonl", "line 2"]);
}

#[test]
fn missing_shared_file_names_the_case() {
    let (_server, project) = project();
    project.write("cases/s/x.json", r#"{"id": "x", "vars": {"rule": "r", "finding": {"$file": "findings/gone.json"}}, "expect": {"label": "notify"}}"#);
    fails_with(&project, &["run"], 2, &["gone.json", "case `x`"]);
}

#[test]
fn unknown_template_variable_names_prompt_template_and_case() {
    let (server, project) = project();
    project.write(
        "prompts/p.toml",
        "user = \"\"\"Rule: {{ rule }}\n{{ ticket | tojson }}\"\"\"\n",
    );
    fails_with(
        &project,
        &["run"],
        2,
        &["prompts/p.toml", "template `user`, line 2", "`ticket`", "case `c00`"],
    );
    assert_eq!(server.request_count(), 0, "no call before all input is checked");
}

#[test]
fn label_outside_the_allowed_set_names_the_case() {
    let (_server, project) = project();
    project.write(
        "cases/s/x.json",
        r#"{"id": "x", "vars": {"rule": "r", "finding": {}}, "expect": {"label": "ignore"}}"#,
    );
    fails_with(&project, &["run"], 2, &["cases/s/x.json", "case `x`", "`ignore`"]);
}

#[test]
fn unknown_suite_and_model_list_the_known_ones() {
    let (_server, project) = project();
    fails_with(
        &project,
        &["run", "--suite", "nope"],
        2,
        &["unknown suite `nope`", "suites in", ": s"],
    );
    fails_with(
        &project,
        &["run", "--model", "nope"],
        2,
        &["unknown model `nope`", "models in", ": m"],
    );
}

#[test]
fn unknown_model_in_config_names_the_field() {
    let (_server, project) = project();
    let config = std::fs::read_to_string(project.file("promptgate.toml"))
        .unwrap()
        .replace("models = [\"m\"]", "models = [\"m2\"]");
    project.write("promptgate.toml", &config);
    fails_with(&project, &["run"], 2, &["suites.s.models", "unknown model `m2`"]);
}

#[test]
fn empty_selection_exits_4() {
    let (_server, project) = project();
    std::fs::remove_file(project.file("cases/s/cases.jsonl")).unwrap();
    fails_with(&project, &["run"], 4, &["nothing selected"]);
}

#[test]
fn a_cache_file_that_is_not_a_database_is_a_clear_error() {
    let (_server, project) = project();
    project.write(".promptgate/cache.sqlite", &"not a database ".repeat(100));
    fails_with(&project, &["run"], 2, &["cache.sqlite"]);
}

#[test]
fn help_teaches_and_lists_exit_codes() {
    let (_server, project) = project();
    project
        .command()
        .args(["run", "--help"])
        .assert()
        .success()
        .stdout(predicate::str::contains("Examples:").and(predicate::str::contains("--offline")));
    project
        .command()
        .arg("--help")
        .assert()
        .success()
        .stdout(predicate::str::contains("Exit codes:").and(predicate::str::contains("3  inconclusive")));
}

#[test]
fn plan_sizes_a_suite_and_asks_for_what_it_needs() {
    let (_server, project) = project();
    // 191 and 323: reference/statistics.md §e (p_b = 0.9, δ = 0.05, ρ = 0.5, c = 0.5 and 0,
    // k = 5), the concentrated shape.
    project
        .command()
        .args(["plan", "--accuracy", "0.9", "--samples", "5", "--drop", "0.05"])
        .args(["--drop-shape", "concentrated"])
        .assert()
        .success()
        .stdout(predicate::str::contains("5.0-point drop: 191 cases").and(predicate::str::contains("323 cases")));
    // The default, proportional drops: 171 and 277 (numpy, the closed form in `plan.rs`).
    project
        .command()
        .args(["plan", "--accuracy", "0.9", "--samples", "5", "--drop", "0.05"])
        .assert()
        .success()
        .stdout(predicate::str::contains("5.0-point drop: 171 cases").and(predicate::str::contains("277 cases")));
    project
        .command()
        .args(["plan", "--accuracy", "0.9", "--drop", "0.05", "--drop-shape", "even"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("possible values: proportional, concentrated"));
    fails_with(&project, &["plan", "--accuracy", "0.9"], 2, &["--drop", "--cases"]);
}

#[test]
fn significance_levels_that_decide_nothing_are_refused() {
    let (_server, project) = project();
    // At 0 a gate never fails; from 0.5 (one-sided) it fails on any drop at all.
    for (args, expected) in [
        (&["gate", "--alpha", "0"][..], "0 must be above 0 and below 0.5"),
        (&["gate", "--alpha", "0.5"][..], "0.5 must be above 0 and below 0.5"),
        (
            &["plan", "--accuracy", "0.9", "--drop", "0.05", "--alpha", "0.7"][..],
            "0.7 must be above 0 and below 0.5",
        ),
        (&["drift", "--alpha", "1"][..], "1 must be above 0 and below 1"),
        (&["drift", "--alpha", "0"][..], "0 must be above 0 and below 1"),
    ] {
        project
            .command()
            .args(args)
            .assert()
            .code(2)
            .stdout("")
            .stderr(predicate::str::contains(expected).and(predicate::str::contains("the usual")));
    }
    project
        .command()
        .args(["plan", "--accuracy", "0.9", "--drop", "0.05", "--alpha", "0.1"])
        .assert()
        .success();
}

/// Replace the suite's grader line of the test project's config.
fn with_grader(project: &Project, grader: &str) {
    let config = std::fs::read_to_string(project.file("promptgate.toml")).unwrap();
    let line = config
        .lines()
        .find(|l| l.starts_with("grader = "))
        .expect("a grader line")
        .to_string();
    project.write("promptgate.toml", &config.replace(&line, &format!("grader = {grader}")));
}

#[test]
fn grader_files_and_settings_are_checked_before_any_call() {
    let (server, project) = project();
    with_grader(&project, "{ kind = \"json\", schema = \"schemas/missing.json\" }");
    fails_with(&project, &["run"], 2, &["schemas/missing.json"]);

    project.write("schemas/bad.json", "{\"type\": 5}");
    with_grader(&project, "{ kind = \"json\", schema = \"schemas/bad.json\" }");
    fails_with(&project, &["run"], 2, &["schemas/bad.json", "not a usable JSON Schema"]);

    project.write("base.yaml", "- macro: [unclosed\n");
    with_grader(&project, "{ kind = \"falco\", base_rules = \"base.yaml\" }");
    fails_with(&project, &["run"], 2, &["base.yaml", "not YAML"]);

    with_grader(
        &project,
        "{ kind = \"sections\", headings = [\"概要\", \"影響\"], severity_heading = \"重要度\" }",
    );
    fails_with(
        &project,
        &["run"],
        2,
        &["promptgate.toml", "suites.s.grader", "severity_heading"],
    );

    with_grader(&project, "[]");
    fails_with(&project, &["run"], 2, &["suites.s.grader", "no grader"]);
    assert_eq!(server.request_count(), 0);
}

#[test]
fn an_expectation_a_grader_cannot_use_names_case_line_and_grader() {
    let (server, project) = project();
    with_grader(
        &project,
        "[{ kind = \"label\", field = \"decision\", labels = [\"suppress\", \"notify\"] }, { kind = \"facts\" }]",
    );
    // The label cases have no `facts`.
    fails_with(
        &project,
        &["run"],
        2,
        &[
            "cases/s/cases.jsonl",
            "at line 1",
            "case `c00`",
            "facts: the facts grader needs",
            "label + facts",
        ],
    );
    with_grader(&project, "{ kind = \"json\" }");
    project.write(
        "cases/s/cases.jsonl",
        "{\"id\": \"a\", \"vars\": {\"rule\": \"r\", \"finding\": {}}, \"expect\": {\"fields\": {\"decision\": {\"startswith\": \"s\"}}}}\n",
    );
    fails_with(
        &project,
        &["run"],
        2,
        &["cases/s/cases.jsonl", "unknown matcher `startswith`"],
    );
    assert_eq!(server.request_count(), 0);
}
