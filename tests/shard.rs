//! Shards end to end: a 101-case suite on two models, with a robustness family, split in 2, 3
//! and 7 shards by `--shard I/N`, and `merge` of their records compared field by field with one
//! unsharded run over the same answers, for `run`, `gate`, `compare` and `baseline update`.

mod support;

use std::collections::BTreeSet;

use serde_json::Value;
use support::fake_server::{FakeServer, Reply, Seen};
use support::Project;

const CASES: usize = 101;

fn labels() -> Vec<&'static str> {
    (0..CASES)
        .map(|i| if i % 2 == 0 { "suppress" } else { "notify" })
        .collect()
}

/// Right except where `wrong(case, seed, model)` says: different cases for each model.
fn server(wrong: fn(usize, i64, &str) -> bool) -> FakeServer {
    FakeServer::start(move |seen: &Seen| {
        let case: usize = seen.case_id().trim_start_matches('c').parse().expect("case id");
        let right = if case % 2 == 0 { "suppress" } else { "notify" };
        let flipped = if right == "suppress" { "notify" } else { "suppress" };
        Reply::label(if wrong(case, seen.seed(), &seen.model_id()) {
            flipped
        } else {
            right
        })
    })
}

fn baseline_answers(case: usize, seed: i64, model: &str) -> bool {
    let salt = if model == "fake-model" { 3 } else { 5 };
    (case * 7 + seed as usize * salt) % 9 == 0
}

/// Worse than the baseline on model `m` only: about one case in four fails more often.
fn candidate_answers(case: usize, seed: i64, model: &str) -> bool {
    baseline_answers(case, seed, model) || (model == "fake-model" && case % 4 == 1 && seed != 101)
}

/// Two models with prices (so cost is merged), and the injection family on the suite.
fn project(base_url: &str) -> Project {
    let project = Project::new(base_url, &labels(), 3, "");
    project.write(
        "cases/s/findings/f.json",
        r#"{"Id": "arn:aws:securityhub:ap-northeast-1:111122223333:x", "Title": "S3 bucket is public",
            "Severity": {"Label": "LOW"},
            "Resources": [{"Type": "AwsS3Bucket", "Id": "arn:aws:s3:::logs", "Tags": {"env": "dev"}}]}"#,
    );
    let config = std::fs::read_to_string(project.file("promptgate.toml")).unwrap();
    let config = config
        .replace(
            "seed = 100\n",
            "seed = 100\nprice_input_per_million = 0.15\nprice_output_per_million = 0.6\n",
        )
        .replace("models = [\"m\"]", "models = [\"m\", \"m2\"]");
    project.write(
        "promptgate.toml",
        &format!(
            "{config}\n[models.m2]\nprovider = \"fake\"\nmodel = \"fake-model-2\"\ntemperature = 1.0\n\
             max_tokens = 50\nseed = 100\nprice_input_per_million = 3.0\nprice_output_per_million = 15.0\n\n\
             [suites.s.robustness]\nfamilies = [\"injection\"]\nvariants = 2\nseed = 1\n"
        ),
    );
    project
}

/// Run `promptgate ARGS…` and return its exit code, with stderr on failure to start.
fn code(project: &Project, args: &[&str]) -> i32 {
    let output = project.command().args(args).output().expect("run");
    output.status.code().unwrap_or_else(|| {
        panic!("{args:?} was killed: {}", String::from_utf8_lossy(&output.stderr));
    })
}

/// The JSON a command printed, and its exit code.
fn printed(project: &Project, args: &[&str]) -> (Value, i32) {
    let output = project.command().args(args).output().expect("run");
    let value = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "{args:?} printed no JSON ({e}): {}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    });
    (value, output.status.code().expect("exit code"))
}

/// A record without what differs between any two runs: when it started and how long it took.
fn timeless(mut record: Value) -> Value {
    let object = record.as_object_mut().expect("a record is an object");
    assert!(object.remove("started_at").is_some() && object.remove("duration_ms").is_some());
    record
}

/// Run `command` as `count` shards (each writing `prefix-I.json`), check that the shards are
/// disjoint and cover the suite, and return what `merge` printed and its exit code.
fn sharded(project: &Project, command: &[&str], count: u32, prefix: &str, merge_args: &[&str]) -> (String, i32) {
    let mut files = Vec::new();
    let mut seen_cases: Vec<String> = Vec::new();
    for index in 1..=count {
        let file = format!("{prefix}-{index}.json");
        let shard = format!("{index}/{count}");
        let mut args: Vec<&str> = command.to_vec();
        args.extend(["--shard", &shard, "--out", &file, "--quiet"]);
        assert_eq!(
            code(project, &args),
            0,
            "{args:?}: a shard exits 0 once its record is written"
        );
        let record: Value = serde_json::from_str(&std::fs::read_to_string(project.file(&file)).unwrap()).unwrap();
        assert_eq!(record["shard"]["index"], index);
        assert_eq!(record["shard"]["count"], count);
        // The plain suite on the first model: its cases in this shard.
        let first = &record["results"][0];
        assert_eq!(
            (first["suite"].as_str(), first["model"].as_str()),
            (Some("s"), Some("m"))
        );
        seen_cases.extend(
            first["per_case"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c["id"].as_str().unwrap().to_string()),
        );
        files.push(file);
    }
    // Disjoint, and together the suite.
    let distinct: BTreeSet<&String> = seen_cases.iter().collect();
    assert_eq!((seen_cases.len(), distinct.len()), (CASES, CASES), "{count} shards");
    let mut args = vec!["merge"];
    args.extend(files.iter().rev().map(String::as_str));
    args.extend(merge_args);
    let output = project.command().args(&args).output().expect("merge");
    let code = output.status.code().expect("exit code");
    assert!(
        code <= 1,
        "{args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    (String::from_utf8(output.stdout).unwrap(), code)
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

#[test]
fn shards_merge_to_exactly_the_unsharded_run_gate_comparison_and_baselines() {
    let baseline_server = server(baseline_answers);
    let project = project(&baseline_server.base_url);
    // Answer everything once; every later run replays the same answers from the cache.
    let (live, live_code) = printed(&project, &["run", "--format", "json"]);
    assert_eq!(live_code, 0, "{live:#}");
    let calls = baseline_server.request_count();
    // 101 cases × 3 samples on each model, and 2 injection variants of each case on each model.
    assert_eq!(calls, 2 * (CASES * 3 + CASES * 2));
    let (whole, whole_code) = printed(&project, &["run", "--format", "json"]);
    assert_eq!(whole["calls"]["cached"], calls);
    let labels: Vec<&str> = whole["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["suite"].as_str().unwrap())
        .collect();
    assert_eq!(labels, ["s", "s~injection", "s", "s~injection"]);
    assert!(
        whole["results"][1]["robustness"]["flips"].as_u64().unwrap() > 0,
        "{whole:#}"
    );
    for count in [2, 3, 7] {
        let (merged, merged_code) = sharded(&project, &["run"], count, &format!("run{count}"), &["--format", "json"]);
        assert_eq!(merged_code, whole_code);
        assert_eq!(timeless(json(&merged)), timeless(whole.clone()), "{count} shards");
    }
    assert_eq!(
        baseline_server.request_count(),
        calls,
        "shards are answered from the cache"
    );

    // Baselines: written by one run, and by the merge of three shards into another folder.
    assert_eq!(code(&project, &["baseline", "update"]), 0);
    let (written, merged_code) = sharded(
        &project,
        &["baseline", "update", "--baseline-dir", "merged-baselines"],
        3,
        "baseline",
        &[],
    );
    assert_eq!(merged_code, 0);
    assert!(
        written.contains("wrote merged-baselines/s/m.json (101 cases, k = 3"),
        "{written}"
    );
    for model in ["m", "m2"] {
        let without_time = |path: String| -> Value {
            let mut baseline: Value =
                serde_json::from_str(&std::fs::read_to_string(project.file(&path)).unwrap()).unwrap();
            baseline.as_object_mut().unwrap().remove("created_at");
            baseline
        };
        assert_eq!(
            without_time(format!("merged-baselines/s/{model}.json")),
            without_time(format!("baselines/s/{model}.json")),
            "{model}"
        );
    }

    // The gate: a candidate that is worse on `m`, answered once into its own cache.
    let candidate_server = server(candidate_answers);
    let config = std::fs::read_to_string(project.file("promptgate.toml")).unwrap();
    project.write(
        "promptgate.toml",
        &config.replace(&baseline_server.base_url, &candidate_server.base_url),
    );
    let gate = ["--cache", "candidate.sqlite", "gate"];
    let _ = printed(&project, &[&gate[..], &["--format", "json"]].concat());
    let (whole_gate, whole_code) = printed(&project, &[&gate[..], &["--format", "json"]].concat());
    assert_eq!(whole_code, 1, "{whole_gate:#}");
    let verdicts: Vec<&str> = whole_gate["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["baseline"]["verdict"].as_str().unwrap())
        .collect();
    assert_eq!(verdicts[0], "Regressed");
    assert_ne!(verdicts[2], "Regressed", "m2 answers as before");
    for count in [2, 3, 7] {
        let (merged, merged_code) = sharded(&project, &gate, count, &format!("gate{count}"), &["--format", "json"]);
        assert_eq!(merged_code, 1);
        assert_eq!(timeless(json(&merged)), timeless(whole_gate.clone()), "{count} shards");
    }

    // The comparison of the two models.
    let compare = [
        "--cache",
        "candidate.sqlite",
        "compare",
        "--model",
        "m",
        "--model",
        "m2",
    ];
    let (whole_comparison, _) = printed(&project, &[&compare[..], &["--format", "json"]].concat());
    assert_eq!(whole_comparison["suites"][0]["rows"].as_array().unwrap().len(), 2);
    let (merged, _) = sharded(&project, &compare, 3, "compare", &["--format", "json"]);
    assert_eq!(timeless(json(&merged)), timeless(whole_comparison));
}

#[test]
fn merge_refuses_anything_but_every_shard_of_one_run_once() {
    let fake = server(|_, _, _| false);
    let project = Project::new(&fake.base_url, &labels()[..12], 1, "");
    for index in 1..=3 {
        let shard = format!("{index}/3");
        let out = format!("s{index}.json");
        assert_eq!(code(&project, &["run", "--shard", &shard, "--out", &out, "-q"]), 0);
    }
    assert_eq!(
        code(&project, &["run", "--shard", "1/2", "--out", "half.json", "-q"]),
        0
    );
    assert_eq!(code(&project, &["run", "--out", "whole.json", "-q"]), 0);
    let refused = |args: &[&str], expected: &str| {
        let output = project.command().arg("merge").args(args).output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
        assert!(stderr.contains("hint: "), "{args:?}: {stderr}");
        assert!(output.stdout.is_empty(), "nothing is printed of a refused merge");
    };
    refused(&["s1.json", "s3.json"], "1 of 3 shards missing: 2/3");
    refused(
        &["s1.json", "s2.json", "s2.json", "s3.json"],
        "shard 2/3 is given twice",
    );
    refused(&["s1.json", "half.json"], "one was split in 3, the other in 2");
    refused(
        &["whole.json"],
        "invalid run record `whole.json` (field `shard`): this is the record of a whole run",
    );
    project.write("garbage.json", "{\"schema_version\": 1,\n  \"results\": [}");
    refused(
        &["garbage.json", "s2.json"],
        "invalid run record `garbage.json` at line 2, column",
    );

    // A shard whose cases changed (another commit): its selection differs.
    let cases = std::fs::read_to_string(project.file("cases/s/cases.jsonl")).unwrap();
    project.write("cases/s/cases.jsonl", &cases.replace("rule 3", "rule three"));
    assert_eq!(
        code(&project, &["run", "--shard", "2/3", "--out", "s2-other.json", "-q"]),
        0
    );
    refused(
        &["s1.json", "s2-other.json", "s3.json"],
        "are not shards of one run: their suites, models, prompts, samples or cases differ",
    );
    project.write("cases/s/cases.jsonl", &cases);

    // Edited records: a case moved to another shard, a count above the samples.
    let text = std::fs::read_to_string(project.file("s1.json")).unwrap();
    let mut record: Value = serde_json::from_str(&text).unwrap();
    let first_case = record["results"][0]["per_case"][0]["id"].as_str().unwrap().to_string();
    let mut moved = record.clone();
    moved["shard"]["index"] = Value::from(2);
    project.write("moved.json", &moved.to_string());
    refused(
        &["moved.json", "s3.json", "s1.json"],
        &format!("case `{first_case}` does not belong to shard 2/3"),
    );
    record["results"][0]["per_case"][0]["correct"] = Value::from(4_000_000_000u64);
    project.write("inflated.json", &record.to_string());
    refused(
        &["inflated.json", "s2.json", "s3.json"],
        &format!("case `{first_case}` counts more correct, invalid or valid samples than it has"),
    );

    // Misses a run would not write: more than the samples, or texts longer than its cuts.
    let pristine: Value = serde_json::from_str(&std::fs::read_to_string(project.file("s1.json")).unwrap()).unwrap();
    let samples = pristine["results"][0]["per_case"][0]["samples"].as_u64().unwrap();
    for (misses, why) in [
        (
            (0..=samples)
                .map(|sample| serde_json::json!({"sample": sample, "outcome": "wrong", "reason": "r", "excerpt": "e"}))
                .collect::<Vec<_>>(),
            "has more misses than samples",
        ),
        (
            vec![serde_json::json!({"sample": 0, "outcome": "wrong", "reason": "r".repeat(402), "excerpt": "e"})],
            "has a miss with a reason or excerpt longer than a run writes",
        ),
    ] {
        let mut edited = pristine.clone();
        edited["results"][0]["per_case"][0]["misses"] = Value::from(misses);
        project.write("edited.json", &edited.to_string());
        refused(
            &["edited.json", "s2.json", "s3.json"],
            &format!("case `{first_case}` {why}"),
        );
    }

    let mut wild = serde_json::from_str::<Value>(&std::fs::read_to_string(project.file("s1.json")).unwrap()).unwrap();
    wild["shard"]["confidence_level"] = Value::from(1.5);
    project.write("wild.json", &wild.to_string());
    refused(
        &["wild.json", "s2.json", "s3.json"],
        "invalid run record `wild.json` (field `shard.confidence_level`): 1.5 is not strictly between 0 and 1",
    );

    // What cannot be sharded says so before any call.
    let before = fake.request_count();
    let usage = |args: &[&str], expected: &str| {
        let output = project.command().args(args).output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    };
    usage(
        &["baseline", "update", "--shard", "1/3"],
        "--out FILE is needed with --shard 1/3",
    );
    usage(
        &["baseline", "update", "--shard", "1/3", "--out", "b.md"],
        "a shard's record is JSON: `b.md` should end in .json",
    );
    assert_eq!(code(&project, &["baseline", "update"]), 0);
    let calls = fake.request_count();
    usage(
        &["gate", "--sampling", "sequential", "--shard", "1/3"],
        "a sequential gate cannot be sharded",
    );
    usage(&["drift", "--shard", "1/3"], "the drift canary is not sharded");
    usage(&["run", "--shard", "4/3"], "the index must be between 1 and 3");
    usage(&["run", "--shard", "three"], "is not a shard such as 2/3");
    assert_eq!(fake.request_count(), calls);
    assert_eq!(calls, before, "baseline update replayed the shards' answers");

    // A comparison has no JUnit form.
    for index in 1..=3 {
        let shard = format!("{index}/3");
        let out = format!("c{index}.json");
        let args = [
            "compare",
            "--model",
            "m",
            "--prompt",
            "default",
            "--prompt",
            "prompts/p.toml",
        ];
        assert_eq!(
            code(
                &project,
                &[&args[..], &["--shard", &shard, "--out", &out, "-q"]].concat()
            ),
            0
        );
    }
    refused(
        &["c1.json", "c2.json", "c3.json", "--format", "junit"],
        "a comparison has no JUnit form",
    );
}
