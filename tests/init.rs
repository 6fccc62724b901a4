//! `promptgate init`: the starter project runs as written, on the fake server standing in for
//! an OpenAI-compatible one, and nothing that exists is ever overwritten.

mod support;

use std::path::Path;

use support::fake_server::{FakeServer, Reply};
use support::Project;

/// An empty folder, as a project to run `promptgate` in.
fn empty() -> Project {
    Project {
        dir: tempfile::tempdir().expect("temp dir"),
    }
}

#[test]
fn the_starter_project_runs_baselines_and_gates_as_written() {
    // A model that gets the starter cases right: suppress exactly the two the rules exempt.
    let server = FakeServer::start(|seen| {
        let text = seen.user_message();
        Reply::label(if text.contains("dev-bastion") || text.contains("example-www") {
            "suppress"
        } else {
            "notify"
        })
    });
    let project = empty();
    let init = project
        .command()
        .args(["init", "--base-url", &server.base_url, "--model", "fake-model"])
        .assert()
        .success();
    let said = String::from_utf8_lossy(&init.get_output().stdout).into_owned();
    assert!(said.contains("promptgate run --dry-run"), "{said}");
    // The prompt of the case the next steps name, as printed there.
    assert!(
        said.contains("promptgate run --show-prompts --case sg-prod-web"),
        "{said}"
    );
    let shown = project
        .command()
        .args(["run", "--show-prompts", "--case", "sg-prod-web"])
        .assert()
        .success();
    let shown = String::from_utf8_lossy(&shown.get_output().stdout).into_owned();
    assert!(
        shown.starts_with("──── triage / sg-prod-web ────\n[system]\n"),
        "{shown}"
    );
    assert_eq!(server.request_count(), 0, "showing a prompt calls nothing");

    let (plan, code) = project.json(&["run", "--dry-run"]);
    assert_eq!(code, 0);
    assert_eq!(plan["totals"]["to_call"], 12, "{plan:#}");

    let (record, code) = project.json(&["run"]);
    assert_eq!(code, 0, "{record:#}");
    let result = &record["results"][0];
    assert_eq!(
        (result["suite"].as_str(), result["model"].as_str()),
        (Some("triage"), Some("model"))
    );
    assert_eq!(result["accuracy"]["point"], 1.0, "{result:#}");
    assert_eq!(server.request_count(), 12);
    assert!(server.seen().iter().all(|s| s.body["model"] == "fake-model"));

    project
        .command()
        .args(["baseline", "update", "--quiet"])
        .assert()
        .success();
    assert!(project.file("baselines/triage/model.json").is_file());
    project.command().args(["gate", "--quiet"]).assert().success();
    assert_eq!(
        server.request_count(),
        12,
        "the cache answers the baseline and the gate"
    );
}

#[test]
fn the_hosted_default_loads_and_says_what_it_would_call() {
    let project = empty();
    project.command().arg("init").assert().success();
    let config = std::fs::read_to_string(project.file("promptgate.toml")).expect("config");
    assert!(config.contains("model = \"gpt-4o-mini\""), "{config}");
    let (plan, code) = project.json(&["run", "--dry-run"]);
    assert_eq!(code, 0);
    assert_eq!(plan["rows"][0]["model"], "gpt-4o-mini");
    assert_eq!(plan["rows"][0]["to_call"], 12);

    // The suite takes production misses as they are recorded: a public GuardDuty sample.
    let finding =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/public/guardduty-asff-ssh-brute-force.json");
    project
        .command()
        .args([
            "record",
            "--suite",
            "triage",
            "--expect",
            "notify",
            "--rule",
            "Suppress EC2.19 for dev- groups.",
        ])
        .arg("--finding")
        .arg(&finding)
        .assert()
        .success();
    let (plan, code) = project.json(&["run", "--dry-run"]);
    assert_eq!(code, 0);
    assert_eq!(
        (plan["rows"][0]["cases"].as_u64(), plan["rows"][0]["to_call"].as_u64()),
        (Some(5), Some(15))
    );
}

#[test]
fn init_writes_into_a_new_folder_and_nothing_when_any_of_its_files_exists() {
    // A folder named on the command line is made, and the next steps start by entering it.
    let root = empty();
    let init = root.command().args(["init", "project"]).assert().success();
    let said = String::from_utf8_lossy(&init.get_output().stdout).into_owned();
    assert!(said.contains("cd project"), "{said}");
    assert!(root.file("project/promptgate.toml").is_file());
    assert!(root.file("project/cases/triage/cases.jsonl").is_file());

    let project = empty();
    project.write("promptgate.toml", "# mine\n");
    let refused = project.command().arg("init").assert().code(2);
    let stderr = String::from_utf8_lossy(&refused.get_output().stderr).into_owned();
    assert!(
        stderr.contains("promptgate.toml") && stderr.contains("already there"),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read_to_string(project.file("promptgate.toml")).expect("config"),
        "# mine\n"
    );
    assert!(!project.file("prompts").exists() && !project.file("cases").exists());

    // A bad flag is refused before anything is written too.
    let untouched = empty();
    untouched
        .command()
        .args(["init", "--base-url", "ftp://example.com"])
        .assert()
        .code(2);
    assert_eq!(std::fs::read_dir(untouched.path()).expect("list").count(), 0);
}
