//! Live throughput against the fake server with a fixed latency L per answer and C concurrent
//! calls. The ideal is C / L requests per second; goal ≥ 90 % of it for C = 64, L = 50 ms.
//! Run with `cargo bench --bench throughput`.

mod common;
#[path = "../tests/support/mod.rs"]
mod support;

use std::time::Duration;

use support::fake_server::{FakeServer, Reply};
use support::Project;

fn measure(concurrency: usize, latency: Duration, calls_per_slot: usize) {
    let server = FakeServer::start(move |_| Reply::Delay(latency, Box::new(Reply::label("notify"))));
    let cases = concurrency * calls_per_slot;
    let project = Project::new(&server.base_url, &common::labels(cases), 1, "");
    let (record, elapsed) = common::timed(&common::options(project.path(), 1, concurrency, false));
    assert_eq!(record.calls.made, cases as u64);
    assert_eq!(server.request_count(), cases);
    let achieved = cases as f64 / elapsed.as_secs_f64();
    let ideal = concurrency as f64 / latency.as_secs_f64();
    println!(
        "C = {concurrency:>3}, L = {:>3} ms, {cases} calls: {:.2} s, {achieved:.0} req/s of ideal {ideal:.0} ({:.1} %)",
        latency.as_millis(),
        elapsed.as_secs_f64(),
        100.0 * achieved / ideal
    );
}

/// Issue 5's figure: `compare` over 40 cases × k = 5 × 3 models (two OpenAI-compatible, one
/// Bedrock, all on the fake server) at latency L, against the ideal calls / C × L.
fn measure_compare(concurrency: usize, latency: Duration) {
    let server = FakeServer::start(move |_| Reply::Delay(latency, Box::new(Reply::label("notify"))));
    let project = Project::new(&server.base_url, &common::labels(40), 5, "");
    let config = std::fs::read_to_string(project.file("promptgate.toml")).expect("config");
    project.write(
        "promptgate.toml",
        &format!(
            "{config}\n[models.m2]\nprovider = \"fake\"\nmodel = \"other-model\"\nmax_tokens = 50\n\n\
             [providers.aws]\nkind = \"bedrock\"\nregion = \"us-east-1\"\nendpoint_url = \"{}\"\n\n\
             [models.b]\nprovider = \"aws\"\nmodel = \"anthropic.claude-3-haiku-20240307-v1:0\"\nmax_tokens = 50\n",
            server.endpoint
        ),
    );
    let mut options = common::options(project.path(), 5, concurrency, false);
    options.models = vec!["m".into(), "m2".into(), "b".into()];
    // The AWS default chain reads the process environment for credentials.
    std::env::set_var("AWS_ACCESS_KEY_ID", "AKIDPROMPTGATEBENCH");
    std::env::set_var("AWS_SECRET_ACCESS_KEY", "bench");
    std::env::set_var("AWS_EC2_METADATA_DISABLED", "true");
    let (record, elapsed) = common::timed(&options);
    let comparison = promptgate::compare::compare(&record, &options.models, &options.prompts);
    assert_eq!(comparison.suites[0].rows.len(), 3);
    let calls = record.calls.made as f64;
    let ideal = calls / concurrency as f64 * latency.as_secs_f64();
    println!(
        "compare 40 cases x k = 5 x 3 models ({calls} calls), C = {concurrency}, L = {} ms: {:.2} s, ideal {ideal:.2} s ({:.1} % of ideal)",
        latency.as_millis(),
        elapsed.as_secs_f64(),
        100.0 * ideal / elapsed.as_secs_f64()
    );
}

/// Issue 19's figure: 2,000 calls at C = 64 and L = 50 ms, with 30% of first attempts answered
/// 429 + `Retry-After: 1`, against the same calls without faults (medians of 3). A call that
/// waits out its Retry-After holds no slot, so the waits overlap the other calls.
fn measure_rate_limited() {
    let latency = Duration::from_millis(50);
    let run = |faults: bool| {
        let server = FakeServer::start(move |seen| {
            let case: usize = seen.case_id().trim_start_matches('c').parse().unwrap_or(0);
            if faults && seen.attempt == 0 && case % 10 < 3 {
                Reply::rate_limited(1)
            } else {
                Reply::Delay(latency, Box::new(Reply::label("notify")))
            }
        });
        let project = Project::new(&server.base_url, &common::labels(2000), 1, "");
        let (record, elapsed) = common::timed(&common::options(project.path(), 1, 64, false));
        assert_eq!(record.calls.made, 2000);
        (elapsed, record.calls.attempts)
    };
    let median_of = |faults: bool| {
        let mut runs: Vec<(Duration, u64)> = (0..3).map(|_| run(faults)).collect();
        runs.sort();
        runs[1]
    };
    let (clean, clean_attempts) = median_of(false);
    let (limited, limited_attempts) = median_of(true);
    println!(
        "2000 calls, C = 64, L = 50 ms: {:.2} s without faults ({clean_attempts} attempts), {:.2} s with 30% first-attempt 429 + Retry-After 1 s ({limited_attempts} attempts): +{:.2} s",
        clean.as_secs_f64(),
        limited.as_secs_f64(),
        limited.as_secs_f64() - clean.as_secs_f64()
    );
}

fn main() {
    measure_rate_limited();
    measure(64, Duration::from_millis(0), 40);
    measure(8, Duration::from_millis(50), 40);
    measure(64, Duration::from_millis(50), 40);
    measure_compare(16, Duration::from_millis(50));
    measure_compare(64, Duration::from_millis(50));
}
