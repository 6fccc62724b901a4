//! `promptgate init`: the starter project runs as written, on the fake server standing in for
//! an OpenAI-compatible one, and nothing that exists is ever overwritten.

mod support;

use std::path::Path;

use support::fake_server::{FakeServer, Reply};

fn promptgate(dir: &Path) -> assert_cmd::Command {
    let mut command = assert_cmd::Command::new(support::binary());
    command
        .current_dir(dir)
        .env_remove("PROMPTGATE_CONFIG")
        .env_remove("PROMPTGATE_CACHE")
        .env_remove("PROMPTGATE_MAX_CALLS")
        .env("OPENAI_API_KEY", "sk-init-test-0123456789");
    command
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
    let root = tempfile::tempdir().expect("temp dir");
    let init = promptgate(root.path())
        .args([
            "init",
            "project",
            "--base-url",
            &server.base_url,
            "--model",
            "fake-model",
        ])
        .assert()
        .success();
    let said = String::from_utf8_lossy(&init.get_output().stdout).into_owned();
    assert!(
        said.contains("cd project") && said.contains("promptgate run --dry-run"),
        "{said}"
    );
    let project = root.path().join("project");

    let plan = promptgate(&project)
        .args(["run", "--dry-run", "--format", "json"])
        .assert()
        .success();
    let plan: serde_json::Value = serde_json::from_slice(&plan.get_output().stdout).expect("JSON");
    assert_eq!(plan["totals"]["to_call"], 12, "{plan:#}");

    let run = promptgate(&project)
        .args(["run", "--format", "json"])
        .assert()
        .success();
    let record: serde_json::Value = serde_json::from_slice(&run.get_output().stdout).expect("JSON");
    let result = &record["results"][0];
    assert_eq!(
        (result["suite"].as_str(), result["model"].as_str()),
        (Some("triage"), Some("model"))
    );
    assert_eq!(result["accuracy"]["point"], 1.0, "{result:#}");
    assert_eq!(server.request_count(), 12);
    assert!(server.seen().iter().all(|s| s.body["model"] == "fake-model"));

    promptgate(&project)
        .args(["baseline", "update", "--quiet"])
        .assert()
        .success();
    assert!(project.join("baselines/triage/model.json").is_file());
    promptgate(&project).args(["gate", "--quiet"]).assert().success();
    assert_eq!(
        server.request_count(),
        12,
        "the cache answers the baseline and the gate"
    );
}

#[test]
fn the_hosted_default_loads_and_says_what_it_would_call() {
    let root = tempfile::tempdir().expect("temp dir");
    promptgate(root.path()).arg("init").assert().success();
    let config = std::fs::read_to_string(root.path().join("promptgate.toml")).expect("config");
    assert!(config.contains("model = \"gpt-4o-mini\""), "{config}");
    let plan = promptgate(root.path())
        .args(["run", "--dry-run", "--format", "json"])
        .assert()
        .success();
    let plan: serde_json::Value = serde_json::from_slice(&plan.get_output().stdout).expect("JSON");
    assert_eq!(plan["rows"][0]["model"], "gpt-4o-mini");
    assert_eq!(plan["rows"][0]["to_call"], 12);

    // The suite takes production misses as they are recorded: a public GuardDuty sample.
    let finding =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/public/guardduty-asff-ssh-brute-force.json");
    promptgate(root.path())
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
    let plan = promptgate(root.path())
        .args(["run", "--dry-run", "--format", "json"])
        .assert()
        .success();
    let plan: serde_json::Value = serde_json::from_slice(&plan.get_output().stdout).expect("JSON");
    assert_eq!(
        (plan["rows"][0]["cases"].as_u64(), plan["rows"][0]["to_call"].as_u64()),
        (Some(5), Some(15))
    );
}

#[test]
fn init_writes_nothing_when_any_of_its_files_exists() {
    let root = tempfile::tempdir().expect("temp dir");
    std::fs::write(root.path().join("promptgate.toml"), "# mine\n").expect("write");
    let refused = promptgate(root.path()).arg("init").assert().code(2);
    let stderr = String::from_utf8_lossy(&refused.get_output().stderr).into_owned();
    assert!(
        stderr.contains("promptgate.toml") && stderr.contains("already there"),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read_to_string(root.path().join("promptgate.toml")).expect("config"),
        "# mine\n"
    );
    assert!(!root.path().join("prompts").exists() && !root.path().join("cases").exists());

    // A bad flag is refused before anything is written too.
    let empty = tempfile::tempdir().expect("temp dir");
    promptgate(empty.path())
        .args(["init", "--base-url", "ftp://example.com"])
        .assert()
        .code(2);
    assert_eq!(std::fs::read_dir(empty.path()).expect("list").count(), 0);
}
