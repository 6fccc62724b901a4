//! `--batch` end to end against a fake OpenAI Batch API: a batch run fills the cache so that
//! `--offline` reproduces it; failed uploads, failed lines and an expired batch are retried
//! without paying twice; a run killed at upload, creation, polling or collection resumes
//! without losing or duplicating a line; a server without a Batch API gets online calls.

mod support;

use serde_json::Value;
use support::fake_batch::{FakeBatchServer, Faults};
use support::fake_server::{FakeServer, Reply};
use support::Project;

const CASES: usize = 40;
const K: usize = 3;

fn labels() -> Vec<&'static str> {
    (0..CASES)
        .map(|i| if i % 2 == 0 { "suppress" } else { "notify" })
        .collect()
}

/// The case number the test prompt puts first in the user message.
fn case_of(body: &Value) -> usize {
    body["messages"]
        .as_array()
        .and_then(|m| m.iter().find(|m| m["role"] == "user"))
        .and_then(|m| m["content"].as_str())
        .and_then(|text| text.lines().next())
        .and_then(|line| line.strip_prefix("case=c"))
        .and_then(|n| n.parse().ok())
        .expect("a case id")
}

/// Right except on cases divisible by 5 with seed 101 (the second sample).
fn answer(body: &Value) -> String {
    let case = case_of(body);
    let right = if case % 2 == 0 { "suppress" } else { "notify" };
    let wrong = if right == "suppress" { "notify" } else { "suppress" };
    let label = if case % 5 == 0 && body["seed"] == 101 {
        wrong
    } else {
        right
    };
    format!("{{\"decision\": \"{label}\"}}")
}

/// A project on `base_url` that polls fast, with batch prices.
fn project(base_url: &str) -> Project {
    let project = Project::new(
        base_url,
        &labels(),
        K as u32,
        "batch_poll_ms = 5\nbatch_poll_max_ms = 40",
    );
    let config = std::fs::read_to_string(project.file("promptgate.toml")).unwrap();
    project.write(
        "promptgate.toml",
        &config.replace(
            "seed = 100\n",
            "seed = 100\nprice_input_per_million = 0.15\nprice_output_per_million = 0.6\n\
             price_batch_input_per_million = 0.075\nprice_batch_output_per_million = 0.3\n",
        ),
    );
    project
}

fn accuracy(record: &Value) -> f64 {
    record["results"][0]["accuracy"]["point"].as_f64().expect("an accuracy")
}

/// 8 cases × 1 wrong sample of 3: (120 − 8) / 120.
const EXPECTED_ACCURACY: f64 = 112.0 / 120.0;

/// A fake Batch API whose batches take three looks to finish.
fn slow_server() -> FakeBatchServer {
    FakeBatchServer::start(
        answer,
        Faults {
            polls_before_done: 3,
            ..Faults::default()
        },
    )
}

#[test]
fn a_batch_run_fills_the_cache_and_offline_replays_it() {
    let server = slow_server();
    let project = project(&server.base_url);
    let record = support::run_all_in_batches(&project, 120, EXPECTED_ACCURACY);
    assert_eq!(record["batch"]["batches"].as_array().unwrap().len(), 1);
    // The run itself made no call: every answer was in the cache when it sampled.
    assert_eq!(
        (record["calls"]["made"].as_u64(), record["calls"]["cached"].as_u64()),
        (Some(0), Some(120))
    );
    assert_eq!(
        (server.uploaded_lines(), server.billed().len(), server.batches_created()),
        (120, 120, 1)
    );
    // 120 calls of 40 input and 7 output tokens at the batch prices.
    let cost = record["results"][0]["cost_usd"].as_f64().unwrap();
    assert!((cost - (4800.0 * 0.075 + 840.0 * 0.3) / 1e6).abs() < 1e-15, "{cost}");
    // Batch answers have no latency of their own.
    assert_eq!(record["results"][0]["latency"]["p95_ms"], 0);

    let (offline, code) = project.json(&["run", "--offline"]);
    assert_eq!(code, 0, "{offline:#}");
    assert_eq!(accuracy(&offline), accuracy(&record));
    assert_eq!(offline["calls"]["cached"], 120);
    // A second batch run finds everything cached and sends nothing.
    let (again, _) = project.json(&["run", "--batch"]);
    assert_eq!(again["batch"]["submitted"], 0);
    assert_eq!(server.batches_created(), 1);
}

#[test]
fn a_run_larger_than_a_batch_goes_in_even_batches_all_submitted_before_any_is_awaited() {
    let server = slow_server();
    let project = project(&server.base_url);
    // 120 calls, at most 50 a batch: three batches of 40, not 50, 50 and 20.
    let config = std::fs::read_to_string(project.file("promptgate.toml")).unwrap();
    project.write(
        "promptgate.toml",
        &config.replace("batch_poll_max_ms = 40", "batch_poll_max_ms = 40\nbatch_max_lines = 50"),
    );
    let record = support::run_all_in_batches(&project, 120, EXPECTED_ACCURACY);
    assert_eq!(server.uploads(), [40, 40, 40]);
    assert_eq!(record["batch"]["batches"].as_array().unwrap().len(), 3);
    assert_eq!(server.billed().len(), 120);
    // Batches take hours: the second is not created only once the first is done.
    let requests = server.requests();
    let created: Vec<usize> = (0..requests.len())
        .filter(|&i| requests[i] == "POST /v1/batches")
        .collect();
    let first_read = requests
        .iter()
        .position(|r| r.starts_with("GET /v1/files/"))
        .expect("an output read");
    assert_eq!(created.len(), 3, "{requests:#?}");
    assert!(created.iter().all(|&i| i < first_read), "{requests:#?}");

    let (offline, code) = project.json(&["run", "--offline"]);
    assert_eq!((code, accuracy(&offline)), (0, accuracy(&record)));
}

#[test]
fn failed_uploads_lines_and_an_expired_batch_are_retried_and_paid_once() {
    let failing = Faults {
        failed_uploads: 1,
        failing_lines: Some(std::sync::Arc::new(|line: &Value| case_of(&line["body"]) % 7 == 3)),
        ..Faults::default()
    };
    let server = FakeBatchServer::start(answer, failing);
    let first = project(&server.base_url);
    let (record, code) = first.json(&["run", "--batch"]);
    assert_eq!(code, 0, "{record:#}");
    assert!((accuracy(&record) - EXPECTED_ACCURACY).abs() < 1e-12);
    // Cases 3, 10, 17, 24, 31, 38 failed in the first batch: 18 lines, sent again in a second.
    let batch = &record["batch"];
    assert_eq!(
        (batch["failed"].as_u64(), batch["submitted"].as_u64()),
        (Some(18), Some(138))
    );
    assert_eq!(batch["batches"].as_array().unwrap().len(), 2);
    let billed = server.billed();
    let distinct: std::collections::BTreeSet<&String> = billed.iter().collect();
    assert_eq!((billed.len(), distinct.len()), (120, 120), "each request paid once");

    let expiring = FakeBatchServer::start(
        answer,
        Faults {
            expire_first_after: Some(50),
            ..Faults::default()
        },
    );
    let second = project(&expiring.base_url);
    let (record, code) = second.json(&["run", "--batch"]);
    assert_eq!(code, 0, "{record:#}");
    assert_eq!(record["batch"]["failed"], 70);
    assert_eq!(expiring.billed().len(), 120);
    assert!((accuracy(&record) - EXPECTED_ACCURACY).abs() < 1e-12);
}

#[test]
fn a_killed_batch_run_resumes_without_paying_twice_or_losing_an_answer() {
    for route in [
        "POST /v1/files",
        "POST /v1/batches",
        "GET /v1/batches/",
        "GET /v1/files/file-out",
    ] {
        let server = FakeBatchServer::start(
            answer,
            Faults {
                polls_before_done: 2,
                ..Faults::default()
            },
        );
        let project = project(&server.base_url);
        let paused = server.pause_at(route);
        project.kill_when(&["run", "--batch", "--quiet"], &paused, route);

        let (record, code) = project.json(&["run", "--batch"]);
        assert_eq!(code, 0, "{route}: {record:#}");
        assert!((accuracy(&record) - EXPECTED_ACCURACY).abs() < 1e-12, "{route}");
        let billed = server.billed();
        let distinct: std::collections::BTreeSet<&String> = billed.iter().collect();
        assert_eq!(
            (billed.len(), distinct.len()),
            (120, 120),
            "{route}: each request paid once"
        );
        assert_eq!(
            server.batches_created(),
            1,
            "{route}: the batch was found again, not created twice"
        );
        let (offline, code) = project.json(&["run", "--offline"]);
        assert_eq!((code, accuracy(&offline)), (0, accuracy(&record)), "{route}");
    }
}

#[test]
fn a_server_without_a_batch_api_is_called_online() {
    let server = FakeServer::start(|seen| {
        let body = seen.body.clone();
        Reply::Content(answer(&body))
    });
    let project = project(&server.base_url);
    let (record, code) = project.json(&["run", "--batch"]);
    assert_eq!(code, 0, "{record:#}");
    assert_eq!(record["calls"]["made"], 120);
    assert_eq!(record["batch"]["online"], 120);
    let notes = record["batch"]["notes"].to_string();
    assert!(notes.contains("the batch could not be submitted (HTTP 404"), "{notes}");
    // Calls made online are priced as such.
    let cost = record["results"][0]["cost_usd"].as_f64().unwrap();
    assert!((cost - (4800.0 * 0.15 + 840.0 * 0.6) / 1e6).abs() < 1e-15, "{cost}");
    assert!((accuracy(&record) - EXPECTED_ACCURACY).abs() < 1e-12);
}
