//! `cache export | import | prune`: a cache shipped as JSON Lines answers an offline run in
//! another place with no provider call; a bad export imports nothing; prune deletes by model id
//! and age, and counts first with --dry-run.

mod support;

use serde_json::Value;
use support::fake_server::{FakeServer, Reply};
use support::Project;

fn filled_project() -> (FakeServer, Project) {
    let server = FakeServer::start(|_| Reply::label("notify"));
    let project = Project::new(&server.base_url, &["suppress", "notify", "notify"], 2, "");
    let (record, code) = project.json(&["run"]);
    assert_eq!((code, record["calls"]["made"].as_u64()), (0, Some(6)), "{record:#}");
    (server, project)
}

/// `cache export --out cache.jsonl`, and what it wrote.
fn export(project: &Project) -> String {
    project
        .command()
        .args(["cache", "export", "--out", "cache.jsonl"])
        .assert()
        .success();
    std::fs::read_to_string(project.file("cache.jsonl")).unwrap()
}

fn stdout_of(project: &Project, args: &[&str]) -> (String, String, i32) {
    let output = project.command().args(args).output().unwrap();
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
        output.status.code().unwrap(),
    )
}

#[test]
fn an_exported_cache_answers_an_offline_run_elsewhere() {
    let (server, project) = filled_project();
    let text = export(&project);
    let lines: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(
        lines[0],
        serde_json::json!({"format": "promptgate-cache", "schema_version": 1})
    );
    assert_eq!(lines.len(), 7);
    assert_eq!(lines[1]["model"], "fake-model");
    assert_eq!(lines[1]["text"], "{\"decision\":\"notify\"}");
    assert!(!text.contains("test-key"), "no secret in an export");

    // A fresh cache, as on a CI machine: import, then replay offline.
    let (out, _, code) = stdout_of(&project, &["--cache", "ci.sqlite", "cache", "import", "cache.jsonl"]);
    assert_eq!(code, 0);
    assert!(
        out.contains("6 added, 0 already present, 0 kept with a different local answer"),
        "{out}"
    );
    let requests = server.request_count();
    let (record, code) = project.json(&["--cache", "ci.sqlite", "run", "--offline"]);
    assert_eq!(code, 0, "{record:#}");
    assert_eq!(record["calls"]["cached"], 6);
    assert_eq!(server.request_count(), requests);

    // Importing again changes nothing; an answer that differs keeps the local one.
    let (out, _, _) = stdout_of(&project, &["--cache", "ci.sqlite", "cache", "import", "cache.jsonl"]);
    assert!(out.contains("0 added, 6 already present"), "{out}");
    let changed = text.replacen("notify", "suppress", 1);
    project.write("changed.jsonl", &changed);
    let (out, _, _) = stdout_of(&project, &["--cache", "ci.sqlite", "cache", "import", "changed.jsonl"]);
    assert!(
        out.contains("0 added, 5 already present, 1 kept with a different local answer"),
        "{out}"
    );

    // Stdout and a model filter.
    let (out, _, _) = stdout_of(&project, &["cache", "export", "--model", "no-such-model"]);
    assert_eq!(out.lines().count(), 1, "only the header: {out}");
}

#[test]
fn a_bad_export_imports_nothing_and_names_its_line() {
    let (_server, project) = filled_project();
    let text = export(&project);
    let mut lines: Vec<&str> = text.lines().collect();
    lines[4] = "{\"key\": \"nope\"";
    project.write("broken.jsonl", &(lines.join("\n") + "\n"));
    let (_, stderr, code) = stdout_of(&project, &["--cache", "ci.sqlite", "cache", "import", "broken.jsonl"]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("invalid cache export `broken.jsonl` at line 5"),
        "{stderr}"
    );
    let (out, _, _) = stdout_of(&project, &["--cache", "ci.sqlite", "cache", "stats", "--json"]);
    let stats: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(stats["entries"], 0, "the lines before the bad one were not kept either");

    let mut wrong_key = text.lines().map(str::to_string).collect::<Vec<_>>();
    let entry: Value = serde_json::from_str(&wrong_key[2]).unwrap();
    wrong_key[2] = wrong_key[2].replace(entry["key"].as_str().unwrap(), "ABC");
    project.write("key.jsonl", &(wrong_key.join("\n") + "\n"));
    let (_, stderr, code) = stdout_of(&project, &["--cache", "ci.sqlite", "cache", "import", "key.jsonl"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("at line 3: `ABC` is not a cache key"), "{stderr}");

    project.write("run.json", "{\"schema_version\": 1}\n");
    let (_, stderr, code) = stdout_of(&project, &["--cache", "ci.sqlite", "cache", "import", "run.json"]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("at line 1: the first line is not a promptgate cache export header"),
        "{stderr}"
    );
    project.write(
        "newer.jsonl",
        "{\"format\": \"promptgate-cache\", \"schema_version\": 9}\n",
    );
    let (_, stderr, code) = stdout_of(&project, &["--cache", "ci.sqlite", "cache", "import", "newer.jsonl"]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("schema_version 9 is not supported") && stderr.contains("upgrade promptgate"),
        "{stderr}"
    );
}

#[test]
fn prune_counts_first_and_deletes_by_model_and_age() {
    let (_server, project) = filled_project();
    let (out, _, code) = stdout_of(&project, &["cache", "prune", "--model", "fake-model", "--dry-run"]);
    assert_eq!(code, 0);
    assert!(out.contains("would delete 6 entries"), "{out}");
    let (out, _, _) = stdout_of(&project, &["cache", "prune", "--older-than", "30d"]);
    assert!(out.contains("deleted 0 entries"), "{out}");
    let (out, _, _) = stdout_of(&project, &["cache", "prune", "--model", "other-model"]);
    assert!(out.contains("deleted 0 entries"), "{out}");
    assert_eq!(project.cached_rows(), 6);
    let (out, _, _) = stdout_of(
        &project,
        &["cache", "prune", "--older-than", "0s", "--model", "fake-model"],
    );
    assert!(out.contains("deleted 6 entries"), "{out}");
    assert_eq!(project.cached_rows(), 0);

    let (_, stderr, code) = stdout_of(&project, &["cache", "prune"]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("prune needs --older-than AGE and/or --model MODEL_ID"),
        "{stderr}"
    );
    let (_, stderr, code) = stdout_of(&project, &["cache", "prune", "--older-than", "soon"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("`soon` is not an age such as 30d"), "{stderr}");
}
