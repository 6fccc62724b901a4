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
    let mut actions = 0;
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
                if let Some(uses) = step["uses"].as_str().filter(|u| u.starts_with(ACTION)) {
                    assert_eq!(uses, format!("{ACTION}@v0"), "{name}");
                    let command = step["with"]["command"].as_str().unwrap_or("gate");
                    if !command.is_empty() {
                        let args = step["with"]["args"].as_str().unwrap_or_default();
                        check_command_line(&format!("promptgate {command} {args}"), &name);
                        commands += 1;
                    }
                    actions += 1;
                }
                let Some(script) = step["run"].as_str() else { continue };
                for line in script.lines().map(str::trim).filter(|l| l.starts_with("promptgate ")) {
                    check_command_line(line.split('>').next().unwrap_or(line), &name);
                    commands += 1;
                }
            }
        }
    }
    assert_eq!(files, 4);
    assert!(commands >= 4, "found {commands} promptgate command lines");
    assert_eq!(actions, 5, "every template installs promptgate with the action");
}

/// How the templates name the action (README, "GitHub Action").
const ACTION: &str = "OWNER/promptgate";

/// A file of this repository, as text.
fn repo_file(relative: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)).expect(relative)
}

fn yaml(relative: &str) -> Value {
    serde_yaml_ng::from_str(&repo_file(relative)).expect(relative)
}

#[test]
fn the_action_is_a_composite_whose_scripts_and_outputs_exist() {
    let action = yaml("action.yml");
    assert!(action["name"].is_string() && action["description"].is_string());
    assert_eq!(action["runs"]["using"].as_str(), Some("composite"));
    let steps = action["runs"]["steps"].as_sequence().expect("steps");
    let ids: Vec<&str> = steps.iter().filter_map(|s| s["id"].as_str()).collect();
    assert_eq!(ids, ["install", "run"]);
    for step in steps {
        assert!(step.get("uses").is_some() != step.get("run").is_some());
        if let Some(script) = step["run"].as_str() {
            assert_eq!(
                step["shell"].as_str(),
                Some("bash"),
                "composite run steps name their shell"
            );
            // Inputs reach the scripts through env, never spliced into the script text.
            assert!(!script.contains("inputs."), "{script}");
            for word in script.split_whitespace() {
                if let Some(path) = word.trim_matches('"').strip_prefix("$GITHUB_ACTION_PATH/") {
                    if path.ends_with(".sh") {
                        assert!(Path::new(env!("CARGO_MANIFEST_DIR")).join(path).is_file(), "{path}");
                    }
                }
            }
        }
    }
    let inputs = action["inputs"].as_mapping().expect("inputs");
    for input in ["command", "args", "version", "config", "cache-path", "import", "token"] {
        assert!(inputs.contains_key(input), "no input {input}");
    }
    let outputs = action["outputs"].as_mapping().expect("outputs");
    for (name, output) in outputs {
        let name = name.as_str().expect("a name");
        assert_eq!(
            output["value"].as_str(),
            Some(format!("${{{{ steps.run.outputs.{name} }}}}").as_str())
        );
    }
    let run = repo_file("ci/action/run.sh");
    for name in outputs.keys().filter_map(Value::as_str) {
        assert!(run.contains(&format!("echo \"{name}=")), "run.sh never sets {name}");
    }
}

/// The release workflow publishes exactly what the action's install step downloads.
#[test]
fn the_release_workflow_publishes_what_the_action_installs() {
    let release = yaml(".github/workflows/release.yml");
    assert!(release["on"]["push"]["tags"].is_sequence());
    let job = &release["jobs"]["upload-assets"];
    let upload = job["steps"]
        .as_sequence()
        .expect("steps")
        .iter()
        .find(|s| {
            s["uses"]
                .as_str()
                .is_some_and(|u| u.starts_with("taiki-e/upload-rust-binary-action@"))
        })
        .expect("the upload step");
    assert_eq!(upload["with"]["bin"].as_str(), Some("promptgate"));
    assert_eq!(upload["with"]["archive"].as_str(), Some("$bin-$target"));
    assert_eq!(upload["with"]["checksum"].as_str(), Some("sha256"));
    let targets: Vec<&str> = job["strategy"]["matrix"]["include"]
        .as_sequence()
        .expect("a matrix")
        .iter()
        .map(|t| t["target"].as_str().expect("a target"))
        .collect();
    let install = repo_file("ci/action/install.sh");
    for target in &targets {
        assert!(
            install.contains(&format!("target={target}")),
            "install.sh never asks for {target}"
        );
    }
    let asked = install
        .lines()
        .filter(|line| line.contains(" target=") && !line.contains('$'))
        .count();
    assert_eq!(asked, targets.len(), "install.sh asks for a target no release has");
}

/// The step of `job` named `name`.
fn step<'a>(workflow: &'a Value, job: &str, name: &str) -> &'a Value {
    workflow["jobs"][job]["steps"]
        .as_sequence()
        .expect("steps")
        .iter()
        .find(|s| s["name"].as_str() == Some(name))
        .unwrap_or_else(|| panic!("no step `{name}` in job `{job}`"))
}

#[test]
fn the_sharded_gate_runs_every_shard_then_merges_them() {
    let workflow = yaml("ci/github/promptgate-sharded.yml");
    let shards = workflow["jobs"]["shard"]["strategy"]["matrix"]["shard"]
        .as_sequence()
        .expect("a matrix of shards");
    let indices: Vec<u64> = shards.iter().map(|s| s.as_u64().expect("a shard index")).collect();
    let count = indices.len() as u64;
    assert_eq!(indices, (1..=count).collect::<Vec<_>>());
    let gate = step(&workflow, "shard", "Gate one shard")["with"]["args"]
        .as_str()
        .expect("the gate's arguments");
    assert!(
        gate.contains(&format!("--shard ${{{{ matrix.shard }}}}/{count} ")),
        "the matrix and the shard count differ: {gate}"
    );
    assert_eq!(
        workflow["jobs"]["shard"]["strategy"]["fail-fast"].as_bool(),
        Some(false)
    );
    assert_eq!(workflow["jobs"]["gate"]["needs"].as_str(), Some("shard"));
    let merge = step(&workflow, "gate", "Merge the shards and gate")["run"]
        .as_str()
        .expect("a script");
    assert!(merge.contains("promptgate merge promptgate-shard-*.json") && merge.contains("exit $status"));
    let collect = step(&workflow, "gate", "Collect the shards' answers")["run"]
        .as_str()
        .expect("a script");
    assert!(collect.contains("promptgate cache import"));
}

#[test]
fn the_drift_canary_runs_on_a_schedule_and_reports_through_one_issue() {
    let workflow = yaml("ci/github/promptgate-drift.yml");
    assert!(workflow["on"]["schedule"][0]["cron"].is_string());
    assert!(workflow["on"].get("workflow_dispatch").is_some());
    assert_eq!(workflow["permissions"]["issues"].as_str(), Some("write"));
    let script = |name: &str| step(&workflow, "drift", name)["run"].as_str().expect("a script");
    // Exit 7 (drift) goes to the issue; every other failure fails the job.
    let canary = step(&workflow, "drift", "Drift canary");
    assert_eq!(canary["with"]["command"].as_str(), Some("drift"));
    assert_eq!(canary["continue-on-error"].as_bool(), Some(true));
    assert!(script("Check the canary's exit code").contains("\"$STATUS\" != 7"));
    assert_eq!(
        step(&workflow, "drift", "Open or update the drift issue")["if"].as_str(),
        Some("steps.drift.outputs.exit-code == '7'")
    );
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

/// A stand-in for `gh api` over a folder of pull-request comments (`comment-<id>` files): a
/// GET lists them as the REST API does and applies the `--jq` filter with the real `jq`; a POST
/// adds one; a PATCH replaces one. Every call is logged in `calls`.
const FAKE_GH: &str = r#"#!/usr/bin/env bash
set -euo pipefail
store="$FAKE_GH_STORE"
[ "$1" = api ] || { echo "fake gh: unexpected command $*" >&2; exit 2; }
shift
method=GET; filter=""; body=""; path=""
while [ $# -gt 0 ]; do
  case "$1" in
    --method) method="$2"; shift 2 ;;
    --paginate) shift ;;
    --jq) filter="$2"; shift 2 ;;
    -F) body="${2#body=@}"; shift 2 ;;
    *) path="$1"; shift ;;
  esac
done
echo "$method $path" >> "$store/calls"
case "$method" in
  GET)
    list=$(for file in "$store"/comment-*; do
      [ -e "$file" ] || continue
      jq -n --arg id "${file##*-}" --rawfile body "$file" '{id: ($id | tonumber), body: $body}'
    done | jq -s .)
    if [ -n "$filter" ]; then jq -r "$filter" <<< "$list"; else echo "$list"; fi ;;
  POST) cp "$body" "$store/comment-$(( $(ls "$store" | grep -c '^comment-') + 1 ))" ;;
  PATCH) cp "$body" "$store/comment-${path##*/}" ;;
  *) echo "fake gh: method $method" >&2; exit 2 ;;
esac
"#;

#[test]
fn the_gate_comment_is_posted_once_then_updated_on_every_push() {
    let Some(jq) = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("jq"))
            .find(|candidate| candidate.is_file())
    }) else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must run the comment step: install `jq`"
        );
        eprintln!("skipped: no jq");
        return;
    };
    let workflow = yaml("ci/github/promptgate-gate.yml");
    assert_eq!(workflow["permissions"]["pull-requests"].as_str(), Some("write"));
    let step = |name: &str| step(&workflow, "gate", name);
    // The action writes the comment's body (its `summary` output, also in the step summary)
    // and the HTML report the body links to.
    let gate = step("Gate");
    assert_eq!(gate["id"].as_str(), Some("gate"));
    assert_eq!(gate["with"]["command"].as_str(), Some("gate"));
    assert!(gate["with"]["args"].as_str().expect("args").contains("--report-url "));
    // The bill's guard, with a default the repository can raise.
    let limit = gate["env"]["PROMPTGATE_MAX_CALLS"].as_str().expect("a call limit");
    assert!(limit.contains("vars.PROMPTGATE_MAX_CALLS"), "{limit}");
    let comment = step("Comment on the pull request");
    assert!(comment["if"].as_str().expect("if").contains("always()"));
    let script = comment["run"].as_str().expect("script");

    let dir = tempfile::tempdir().expect("temp dir");
    let bin = dir.path().join("bin");
    let store = dir.path().join("store");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::create_dir_all(&store).unwrap();
    std::fs::write(bin.join("gh"), FAKE_GH).unwrap();
    let mut permissions = std::fs::metadata(bin.join("gh")).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut permissions, 0o755);
    std::fs::set_permissions(bin.join("gh"), permissions).unwrap();
    // Someone else's comment is there first; it must be left alone.
    std::fs::write(store.join("comment-1"), "LGTM\n").unwrap();
    let run_step = |summary: &str| {
        std::fs::write(dir.path().join("promptgate-summary.md"), summary).unwrap();
        let output = std::process::Command::new("bash")
            .args(["-e", "-c", script])
            .current_dir(dir.path())
            .env("PATH", format!("{}:{}", bin.display(), jq.parent().unwrap().display()))
            .env("FAKE_GH_STORE", &store)
            .env("GH_TOKEN", "ghs_test")
            .env("REPO", "acme/rules")
            .env("PR", "7")
            .env("SUMMARY", dir.path().join("promptgate-summary.md"))
            .output()
            .expect("bash");
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    };
    run_step("## promptgate gate: ❌ significant regression\nfirst push\n");
    run_step("## promptgate gate: ✅ pass\nsecond push\n");
    let read = |name: &str| std::fs::read_to_string(store.join(name)).unwrap();
    assert_eq!(read("comment-1"), "LGTM\n");
    assert_eq!(
        read("comment-2"),
        "<!-- promptgate gate -->\n## promptgate gate: ✅ pass\nsecond push\n"
    );
    assert!(!store.join("comment-3").exists(), "one comment, updated");
    assert_eq!(
        read("calls"),
        "GET repos/acme/rules/issues/7/comments\nPOST repos/acme/rules/issues/7/comments\n\
         GET repos/acme/rules/issues/7/comments\nPATCH repos/acme/rules/issues/comments/2\n"
    );
    // No summary (the gate failed before writing one): nothing is posted.
    let before = read("calls");
    run_step("");
    assert_eq!(read("calls"), before);
}
