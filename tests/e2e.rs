//! End-to-end tests: the real `promptgate` binary against a fake OpenAI-compatible server on
//! 127.0.0.1.

mod support;

use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use predicates::prelude::*;
use promptgate::stats::{self, CaseOutcome, IntervalMethod};
use serde_json::Value;
use support::fake_server::{FakeServer, Reply, Seen};
use support::Project;

const BASE_SEED: i64 = 100;

/// Expected labels of the ten scripted cases c00..c09.
const LABELS: [&str; 10] = [
    "suppress", "notify", "notify", "suppress", "notify", "suppress", "notify", "notify", "suppress", "notify",
];

fn opposite(label: &str) -> &'static str {
    if label == "suppress" {
        "notify"
    } else {
        "suppress"
    }
}

fn case_index(seen: &Seen) -> usize {
    seen.case_id().trim_start_matches('c').parse().expect("case id")
}

/// Whether the script answers sample `sample` of case `case` right: a fixed pattern in which
/// multiples of 4 are always wrong, other even cases right 2 times in 3, odd cases always right.
fn answers_right(case: usize, sample: usize) -> bool {
    (case * (sample + 1)) % 4 != 0
}

/// Accuracy the script implies for `cases` cases × `samples` samples: the mean of per-case means.
fn scripted_accuracy(cases: usize, samples: usize) -> f64 {
    let per_case = (0..cases).map(|c| (0..samples).filter(|&s| answers_right(c, s)).count() as f64 / samples as f64);
    per_case.sum::<f64>() / cases as f64
}

fn scripted(seen: &Seen) -> Reply {
    let case = case_index(seen);
    let sample = (seen.seed() - BASE_SEED) as usize;
    let right = LABELS[case % LABELS.len()];
    if !answers_right(case, sample) {
        Reply::label(opposite(right))
    } else {
        Reply::label(right)
    }
}

fn run_json(project: &Project, args: &[&str]) -> (Value, i32) {
    let mut all = vec!["run"];
    all.extend_from_slice(args);
    project.json(&all)
}

#[test]
fn exact_accuracy_then_zero_calls_from_cache() {
    let server = FakeServer::start(scripted);
    let project = Project::new(&server.base_url, &LABELS, 3, "");
    let (record, code) = run_json(&project, &[]);
    assert_eq!(code, 0);
    assert_eq!(server.request_count(), 30);

    // What the script implies, computed independently of the binary's output.
    let outcomes: Vec<CaseOutcome> = (0..10)
        .map(|case| CaseOutcome {
            correct: (0..3).filter(|&sample| answers_right(case, sample)).count() as u32,
            samples: 3,
        })
        .collect();
    let expected = stats::accuracy(&outcomes, 0.95, IntervalMethod::default()).unwrap();
    let result = &record["results"][0];
    assert_eq!(result["interval_method"], "wilson_moderated_t");
    assert_eq!(result["accuracy"]["point"].as_f64().unwrap(), expected.estimate.point);
    assert!((expected.estimate.point - 19.0 / 30.0).abs() < 1e-12);
    assert!(expected.estimate.standard_error > 0.1);
    assert_eq!(result["accuracy"]["lower"].as_f64().unwrap(), expected.estimate.lower);
    assert_eq!(result["accuracy"]["upper"].as_f64().unwrap(), expected.estimate.upper);
    assert_eq!(result["accuracy"]["confidence_level"], 0.95);
    assert_eq!(record["calls"]["made"], 30);
    assert_eq!(record["calls"]["cached"], 0);
    assert_eq!(record["verdict"], "pass");
    assert_eq!(result["per_case"][0]["correct"], 0, "c00 is always wrong");
    assert_eq!(result["per_case"][2]["correct"], 2, "c02 misses sample 1 only");
    assert_eq!(result["per_case"][2]["misses"][0]["sample"], 1);
    assert_eq!(result["per_case"][3]["correct"], 3);

    // Every sample carries its own seed, and the schema goes out in the native form.
    let seeds: std::collections::BTreeSet<i64> = server.seen().iter().map(Seen::seed).collect();
    assert_eq!(seeds.into_iter().collect::<Vec<_>>(), vec![100, 101, 102]);
    let first = &server.seen()[0];
    assert_eq!(first.body["response_format"]["type"], "json_schema");
    assert_eq!(first.body["response_format"]["json_schema"]["name"], "decision");
    assert_eq!(first.headers["authorization"], "Bearer test-key");

    let (again, code) = run_json(&project, &[]);
    assert_eq!(code, 0);
    assert_eq!(server.request_count(), 30, "the second run must make no call");
    assert_eq!(again["calls"]["made"], 0);
    assert_eq!(again["calls"]["cached"], 30);
    assert_eq!(again["results"][0]["accuracy"], record["results"][0]["accuracy"]);

    project
        .command()
        .args(["cache", "stats", "--json"])
        .assert()
        .success()
        .stdout(predicate::str::contains("\"entries\": 30"));
}

#[test]
fn offline_without_a_cache_creates_none_and_says_how_to_get_answers() {
    let server = FakeServer::start(scripted);
    let project = Project::new(&server.base_url, &LABELS, 2, "");
    let output = project.command().args(["run", "--offline"]).output().unwrap();
    assert_eq!(output.status.code(), Some(3));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("hint: 20 requests were not in the cache (--offline): `promptgate run --dry-run` counts them;"),
        "{stdout}"
    );
    assert!(stdout.contains("`promptgate cache import FILE`"), "{stdout}");
    // A run that only reads writes nothing: no cache file, not even its folder.
    assert!(!project.file(".promptgate").exists());
    assert_eq!(server.request_count(), 0);

    // A failure that is not a miss keeps the general hint.
    let server = FakeServer::start(|_| Reply::Garbled);
    let project = Project::new(&server.base_url, &LABELS, 1, "");
    let output = project.command().arg("run").output().unwrap();
    assert_eq!(output.status.code(), Some(3));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("hint: too many failed calls"), "{stdout}");
}

#[test]
fn offline_serves_from_cache_and_exits_3_on_a_miss() {
    let server = FakeServer::start(scripted);
    let project = Project::new(&server.base_url, &LABELS, 2, "");
    let (record, code) = run_json(&project, &["--offline"]);
    assert_eq!(code, 3);
    assert_eq!(record["verdict"], "inconclusive");
    assert_eq!(record["calls"]["failed"], 20);
    assert_eq!(record["results"][0]["errors_by_kind"]["offline_miss"], 20);
    assert_eq!(server.request_count(), 0);

    project.command().arg("run").assert().success();
    let (record, code) = run_json(&project, &["--offline"]);
    assert_eq!(code, 0);
    assert_eq!(record["calls"]["cached"], 20);
    assert_eq!(server.request_count(), 20);
}

#[test]
fn transient_faults_are_retried_and_rate_limits_honour_retry_after() {
    // Each case's first attempt fails in a different way; the next attempt succeeds.
    let server = FakeServer::start(|seen| {
        if seen.attempt > 0 {
            return scripted(seen);
        }
        match case_index(seen) {
            0 => Reply::rate_limited(1),
            1 => Reply::server_error(500),
            2 => Reply::server_error(503),
            3 => Reply::Garbled,
            4 => Reply::Reset,
            _ => scripted(seen),
        }
    });
    let project = Project::new(&server.base_url, &LABELS, 1, "");
    let (record, code) = run_json(&project, &[]);
    assert_eq!(code, 0, "{record}");
    assert_eq!(record["calls"]["made"], 10);
    assert_eq!(record["calls"]["failed"], 0);
    assert_eq!(record["calls"]["attempts"], 15);
    let seen = server.seen();
    let rate_limited: Vec<&Seen> = seen.iter().filter(|s| s.case_id() == "c00").collect();
    assert_eq!(rate_limited.len(), 2);
    let waited = rate_limited[1].at.duration_since(rate_limited[0].at);
    assert!(
        waited >= Duration::from_millis(990),
        "Retry-After: 1 was not honoured: {waited:?}"
    );
}

#[test]
fn failures_are_errors_not_wrong_answers() {
    // Case c01 always fails with 500; c02 always gets a 400 (not retried).
    let server = FakeServer::start(|seen| {
        match case_index(seen) {
        1 => Reply::server_error(500),
        2 => Reply::Raw {
            status: 400,
            body: r#"{"error": {"message": "Invalid 'messages'", "type": "invalid_request_error", "param": "messages", "code": "invalid_value"}}"#.into(),
            headers: vec![],
        },
        i => Reply::label(LABELS[i]),
    }
    });
    let project = Project::new(&server.base_url, &LABELS, 1, "");
    let (record, code) = run_json(&project, &[]);
    assert_eq!(code, 3, "20% failed calls is over the default 5%");
    let result = &record["results"][0];
    assert_eq!(
        result["accuracy"]["point"], 1.0,
        "failed cases are left out, not graded wrong"
    );
    assert_eq!(result["cases_graded"], 8);
    assert_eq!(result["errors"], 2);
    assert_eq!(result["errors_by_kind"]["server"], 1);
    assert_eq!(result["errors_by_kind"]["client"], 1);
    assert_eq!(result["verdict"], "inconclusive");
    let attempts = |case: &str| server.seen().iter().filter(|s| s.case_id() == case).count();
    assert_eq!(attempts("c01"), 4, "max_attempts = 4");
    assert_eq!(attempts("c02"), 1, "a 400 is not retried");
    assert!(result["first_error"].as_str().unwrap().contains("HTTP"));

    // Nothing failed was cached: a rerun asks again for exactly the two failed calls.
    let before = server.request_count();
    let (_, code) = run_json(&project, &["--max-error-rate", "0.5"]);
    assert_eq!(code, 0);
    assert_eq!(server.request_count() - before, 4 + 1);
}

#[test]
fn slow_answers_time_out_and_are_classified() {
    let server = FakeServer::start(|seen| match case_index(seen) {
        0 => Reply::Delay(Duration::from_secs(3), Box::new(Reply::label("suppress"))),
        i => Reply::label(LABELS[i]),
    });
    let project = Project::new(&server.base_url, &LABELS, 1, "");
    let config = project.file("promptgate.toml");
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("timeout_secs = 5", "timeout_secs = 0.5")
        .replace("max_attempts = 4", "max_attempts = 2");
    std::fs::write(&config, text).unwrap();
    let (record, code) = run_json(&project, &[]);
    assert_eq!(code, 3);
    assert_eq!(record["results"][0]["errors_by_kind"]["timeout"], 1);
    assert_eq!(record["calls"]["attempts"], 11);
}

#[test]
fn llama_cpp_schema_form_is_sent_when_configured() {
    let server = FakeServer::start(scripted);
    let project = Project::new(
        &server.base_url,
        &LABELS[..1],
        1,
        "response_format = \"json_object_schema\"",
    );
    project.command().arg("run").assert().success();
    let body = &server.seen()[0].body;
    assert_eq!(body["response_format"]["type"], "json_object");
    assert_eq!(
        body["response_format"]["schema"]["properties"]["decision"]["enum"][0],
        "suppress"
    );
    assert_eq!(body["max_tokens"], 50);
    assert_eq!(body["stream"], false);
}

#[test]
fn reasoning_models_get_max_completion_tokens_when_configured() {
    let server = FakeServer::start(scripted);
    let project = Project::new(
        &server.base_url,
        &LABELS[..1],
        1,
        "token_limit = \"max_completion_tokens\"",
    );
    project.command().arg("run").assert().success();
    let body = &server.seen()[0].body;
    assert_eq!(body["max_completion_tokens"], 50);
    assert!(body.get("max_tokens").is_none(), "{body}");

    // A Bedrock provider has no such field: the config says so.
    let config = std::fs::read_to_string(project.file("promptgate.toml")).unwrap();
    project.write(
        "promptgate.toml",
        &config
            .replace("kind = \"openai\"", "kind = \"bedrock\"\nregion = \"us-east-1\"")
            .replace(&format!("base_url = \"{}\"", server.base_url), ""),
    );
    let output = project.command().arg("run").output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("(field `providers.fake.token_limit`)"), "{stderr}");
}

#[test]
fn a_killed_run_resumes_with_only_the_missing_calls() {
    let served = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&served);
    let server = FakeServer::start(move |seen| {
        counter.fetch_add(1, Ordering::SeqCst);
        Reply::Delay(Duration::from_millis(100), Box::new(scripted(seen)))
    });
    let labels: Vec<&str> = (0..40).map(|i| LABELS[i % 10]).collect();
    let project = Project::new(&server.base_url, &labels, 2, "");
    let mut child = project
        .std_command()
        .args(["run", "-j", "2", "-q"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while served.load(Ordering::SeqCst) < 20 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().expect("SIGKILL");
    child.wait().expect("wait");
    let cached = project.cached_rows();
    assert!(cached > 0 && cached < 80, "killed mid-way: {cached} of 80 cached");

    let before = server.request_count();
    let (record, code) = run_json(&project, &[]);
    assert_eq!(code, 0);
    let made = server.request_count() - before;
    assert_eq!(made as i64, 80 - cached, "only the missing calls are made");
    assert_eq!(record["calls"]["cached"].as_i64().unwrap(), cached);
    assert_eq!(project.cached_rows(), 80);
}

#[test]
fn two_concurrent_runs_share_one_cache() {
    let server = FakeServer::start(|seen| Reply::Delay(Duration::from_millis(5), Box::new(scripted(seen))));
    let labels: Vec<&str> = (0..30).map(|i| LABELS[i % 10]).collect();
    let project = Project::new(&server.base_url, &labels, 3, "");
    let spawn = || {
        let mut command = project.std_command();
        command.args(["run", "--format", "json", "-j", "8"]);
        command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn")
    };
    let (first, second) = (spawn(), spawn());
    for child in [first, second] {
        let output = child.wait_with_output().expect("wait");
        assert_eq!(
            output.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let record: Value = serde_json::from_slice(&output.stdout).expect("json");
        let point = record["results"][0]["accuracy"]["point"].as_f64().unwrap();
        assert!((point - scripted_accuracy(30, 3)).abs() < 1e-12, "{point}");
    }
    assert_eq!(project.cached_rows(), 90);
    let (record, _) = run_json(&project, &[]);
    assert_eq!(record["calls"]["cached"], 90);
}

#[test]
fn out_writes_the_json_record_and_terminal_goes_to_stdout() {
    let server = FakeServer::start(scripted);
    let project = Project::new(&server.base_url, &LABELS, 3, "");
    let output = project
        .command()
        .args(["run", "--out", "reports/run.json"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let record: Value =
        serde_json::from_str(&std::fs::read_to_string(project.file("reports/run.json")).unwrap()).unwrap();
    assert_eq!(record["schema_version"], 1);
    assert_eq!(record["results"][0]["suite"], "s");

    let settings = snapshot_settings();
    settings.bind(|| {
        insta::assert_snapshot!("terminal_report", stdout);
        insta::assert_json_snapshot!("json_report", record, {
            ".started_at" => "[started_at]",
            ".duration_ms" => "[duration_ms]",
            ".promptgate_version" => "[version]",
            ".results[].prompt_sha256" => "[sha256]",
            ".results[].latency" => "[latency]",
            ".results[].per_case[].latencies_ms" => "[latencies]",
        });
    });
}

fn snapshot_settings() -> insta::Settings {
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path("snapshots");
    settings.set_prepend_module_to_snapshot(false);
    settings
}

/// Twenty samples of ten cases that all sit between 90% and 100%: from the moderated spread
/// n_eff = 61.54 (numpy: m = [20,19,18,20,19,18,20,19,18,20]/20, SS = Σ(m − p̂)² + 0.05·p̂²,
/// n_eff = p̂(1−p̂)·n(n−1)/SS), above 3n = 30, and every report says to add cases instead
/// (§b2 of the design notes).
#[test]
fn many_samples_of_few_cases_warn_in_every_report() {
    let server = FakeServer::start(|seen: &Seen| {
        let case: i64 = seen.case_id().trim_start_matches('c').parse().expect("case id");
        // Sample j is sent with seed 100 + j: case i misses its first i % 3 samples.
        let wrong = seen.seed() - 100 < case % 3;
        Reply::label(if wrong { "notify" } else { "suppress" })
    });
    let project = Project::new(&server.base_url, &["suppress"; 10], 20, "");
    let (record, code) = project.json(&["run", "--out", "run.md"]);
    assert_eq!(code, 0, "{record:#}");
    let result = &record["results"][0];
    let n_eff = result["effective_sample_size"].as_f64().expect("n_eff");
    assert!((n_eff - 61.538155565720864).abs() < 1e-9, "{n_eff}");
    let warning = result["interval_warning"].as_str().expect("a warning");
    assert!(
        warning.starts_with("the interval counts 10 cases × 20 samples as "),
        "{warning}"
    );
    let markdown = std::fs::read_to_string(project.file("run.md")).unwrap();
    assert!(
        markdown.contains("**s / m**: ⚠️ the interval counts 10 cases"),
        "{markdown}"
    );
    project
        .command()
        .arg("run")
        .assert()
        .success()
        .stdout(predicate::str::contains("warning s/m: the interval counts 10 cases"));
    // --conservative-ci counts each case once: nothing to warn about.
    let (conservative, _) = project.json(&["run", "--conservative-ci"]);
    assert!(conservative["results"][0].get("interval_warning").is_none());
    assert_eq!(conservative["results"][0]["interval_method"], "wilson_cases_z");
}
