//! The GitHub Actions templates in `ci/github/` parse as YAML, have the shape Actions needs,
//! and every `promptgate` command line in them names a subcommand and flags that exist.

use std::path::Path;

use clap::CommandFactory;
use promptgate::cli::Cli;
use serde_yaml_ng::Value;

/// Check `promptgate ARGS…` against the real command-line definition.
fn check_command_line(line: &str, file: &str) {
    let words: Vec<&str> = line.split_whitespace().collect();
    let mut command = Cli::command();
    let mut index = 1;
    // Descend through subcommands (e.g. `baseline update`).
    while let Some(word) = words.get(index) {
        match command.find_subcommand(word) {
            Some(sub) => {
                command = sub.clone();
                index += 1;
            }
            None => break,
        }
    }
    assert!(index > 1, "{file}: `{line}` names no promptgate subcommand");
    let global = Cli::command();
    for word in &words[index..] {
        if let Some(flag) = word.strip_prefix("--") {
            let flag = flag.split('=').next().unwrap_or_default();
            let known = command
                .get_arguments()
                .chain(global.get_arguments())
                .any(|a| a.get_long() == Some(flag));
            assert!(known, "{file}: `--{flag}` is not a flag of `{}`", command.get_name());
        }
    }
}

#[test]
fn workflow_templates_parse_and_name_real_commands() {
    let folder = Path::new(env!("CARGO_MANIFEST_DIR")).join("ci/github");
    let mut commands = 0;
    let mut files = 0;
    for entry in std::fs::read_dir(&folder).expect("ci/github") {
        let path = entry.expect("entry").path();
        let name = path.display().to_string();
        let workflow: Value = serde_yaml_ng::from_str(&std::fs::read_to_string(&path).expect("read")).expect(&name);
        files += 1;
        assert!(workflow["name"].is_string(), "{name}: no name");
        assert!(workflow.get("on").is_some(), "{name}: no trigger");
        let jobs = workflow["jobs"].as_mapping().expect("jobs");
        for (_, job) in jobs {
            assert!(job["runs-on"].is_string(), "{name}: a job without runs-on");
            for step in job["steps"].as_sequence().expect("steps") {
                assert!(
                    step.get("uses").is_some() != step.get("run").is_some(),
                    "{name}: a step needs uses or run"
                );
                let Some(script) = step["run"].as_str() else { continue };
                for line in script.lines().map(str::trim).filter(|l| l.starts_with("promptgate ")) {
                    check_command_line(line.split('>').next().unwrap_or(line), &name);
                    commands += 1;
                }
            }
        }
    }
    assert_eq!(files, 3);
    assert!(commands >= 4, "found {commands} promptgate command lines");
}

#[test]
fn the_drift_canary_runs_on_a_schedule_and_reports_through_one_issue() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("ci/github/promptgate-drift.yml");
    let text = std::fs::read_to_string(&path).expect("the drift template");
    let workflow: Value = serde_yaml_ng::from_str(&text).expect("YAML");
    assert!(workflow["on"]["schedule"][0]["cron"].is_string());
    assert!(workflow["on"].get("workflow_dispatch").is_some());
    assert_eq!(workflow["permissions"]["issues"].as_str(), Some("write"));
    let steps = workflow["jobs"]["drift"]["steps"].as_sequence().expect("steps");
    let script = |name: &str| {
        steps
            .iter()
            .find(|s| s["name"].as_str() == Some(name))
            .and_then(|s| s["run"].as_str())
            .unwrap_or_else(|| panic!("no step `{name}`"))
    };
    // Exit 7 (drift) goes to the issue; every other failure fails the job.
    assert!(script("Drift canary").contains("\"$status\" -ne 7"));
    assert_eq!(
        promptgate::exit_code::DRIFTED,
        7,
        "the template's exit code is the canary's"
    );
    let issue = script("Open or update the drift issue");
    assert!(issue.contains("gh issue comment") && issue.contains("gh issue create"));
}

#[test]
fn the_checker_rejects_unknown_flags() {
    let result = std::panic::catch_unwind(|| check_command_line("promptgate gate --no-such-flag", "x.yml"));
    assert!(result.is_err());
    let result = std::panic::catch_unwind(|| check_command_line("promptgate frobnicate", "x.yml"));
    assert!(result.is_err());
}
