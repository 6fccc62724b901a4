//! `--batch` on Bedrock end to end: a fake Bedrock control plane over a real S3-compatible
//! server (moto, started by ci/test.sh). A batch run fills the cache so that `--offline`
//! reproduces it, in both record formats (Converse for plain prompts, Anthropic's own for a
//! schema or tools); failed and expired records are retried and paid once; a run killed at
//! creation or while polling resumes without paying twice; a refused upload pays nothing;
//! groups under Bedrock's minimum records, and tool prompts to models whose own format
//! promptgate does not write, go online.

mod support;

use serde_json::Value;
use support::fake_bedrock_batch::{s3_url, FakeBedrockBatch, Faults};
use support::fake_server::{FakeServer, Reply};
use support::Project;

const CASES: usize = 40;
const K: usize = 3;
const CLAUDE: &str = "anthropic.claude-3-haiku-20240307-v1:0";

fn labels(cases: usize) -> Vec<&'static str> {
    (0..cases)
        .map(|i| if i % 2 == 0 { "suppress" } else { "notify" })
        .collect()
}

/// The user text of a model input, in either record format.
fn user_text(input: &Value) -> String {
    let message = input["messages"]
        .as_array()
        .and_then(|m| m.iter().find(|m| m["role"] == "user"))
        .expect("a user message");
    message["content"][0]["text"]
        .as_str()
        .expect("a text block")
        .to_string()
}

fn case_of(input: &Value) -> usize {
    user_text(input)
        .lines()
        .next()
        .and_then(|line| line.strip_prefix("case=c"))
        .and_then(|n| n.parse().ok())
        .expect("a case id")
}

/// Right except on the cases divisible by 10, in every sample.
fn answer(input: &Value) -> String {
    let case = case_of(input);
    let right = if case % 2 == 0 { "suppress" } else { "notify" };
    let wrong = if right == "suppress" { "notify" } else { "suppress" };
    let label = if case % 10 == 0 { wrong } else { right };
    format!("{{\"decision\": \"{label}\"}}")
}

/// 4 of 40 cases wrong in every sample.
const EXPECTED_ACCURACY: f64 = 36.0 / 40.0;

/// A project on Bedrock model `model` with batch inference through `fake` into `bucket` (and
/// the fake's minimum of records per job), online calls to `runtime`; `schema`: whether the
/// prompt asks for a response schema.
fn project(fake: &FakeBedrockBatch, runtime: &str, bucket: &str, model: &str, cases: usize, schema: bool) -> Project {
    let provider = format!(
        "kind = \"bedrock\"\nregion = \"us-east-1\"\nendpoint_url = \"{runtime}\"\n\
         batch_endpoint_url = \"{}\"\ns3_endpoint_url = \"{}\"\n\
         batch_s3_uri = \"s3://{bucket}/promptgate\"\n\
         batch_role_arn = \"arn:aws:iam::111122223333:role/promptgate-batch\"\n\
         batch_min_records = {}",
        fake.endpoint,
        s3_url().expect("checked by the test"),
        fake.min_records,
    );
    let project = Project::with_provider(
        &provider,
        model,
        &labels(cases),
        K as u32,
        "batch_poll_ms = 5\nbatch_poll_max_ms = 40",
    );
    if !schema {
        let prompt = std::fs::read_to_string(project.file("prompts/p.toml")).unwrap();
        let plain = prompt.split("[response_schema]").next().unwrap().to_string();
        project.write("prompts/p.toml", &plain);
    }
    let config = std::fs::read_to_string(project.file("promptgate.toml")).unwrap();
    project.write(
        "promptgate.toml",
        &config.replace(
            "seed = 100\n",
            "price_input_per_million = 0.25\nprice_output_per_million = 1.25\n\
             price_batch_input_per_million = 0.125\nprice_batch_output_per_million = 0.625\n",
        ),
    );
    project
}

/// A runtime endpoint that must not be called (every call a test expects in batch fails here).
fn no_runtime() -> FakeServer {
    FakeServer::start(|_| Reply::bedrock_error(400, "ValidationException", "this test expected no online call"))
}

fn accuracy(record: &Value) -> f64 {
    record["results"][0]["accuracy"]["point"].as_f64().expect("an accuracy")
}

fn each_paid_once(billed: &[String], expected: usize) {
    let distinct: std::collections::BTreeSet<&String> = billed.iter().collect();
    assert_eq!(
        (billed.len(), distinct.len()),
        (expected, expected),
        "each record paid once"
    );
}

#[test]
fn batch_runs_in_both_record_formats_fill_the_cache_and_offline_replays_them() {
    let Some(s3) = s3_url() else { return };
    for (bucket, schema, invocation) in [
        ("pg-anthropic", true, "InvokeModel"),
        ("pg-converse", false, "Converse"),
    ] {
        let fake = FakeBedrockBatch::start(
            &s3,
            bucket,
            100,
            answer,
            Faults {
                polls_before_done: 3,
                ..Faults::default()
            },
        );
        let runtime = no_runtime();
        let project = project(&fake, &runtime.endpoint, bucket, CLAUDE, CASES, schema);
        let record = support::run_all_in_batches(&project, 120, EXPECTED_ACCURACY);
        assert_eq!(fake.invocation_types(), [invocation]);
        assert_eq!((fake.records_read(), fake.billed().len()), (120, 120));
        assert_eq!(record["calls"]["made"], 0, "{invocation}: no online call");
        // 120 answers of 40 input and 7 output tokens, at the batch prices.
        let cost = record["results"][0]["cost_usd"].as_f64().unwrap();
        assert!((cost - (4800.0 * 0.125 + 840.0 * 0.625) / 1e6).abs() < 1e-15, "{cost}");

        let (offline, code) = project.json(&["run", "--offline"]);
        assert_eq!((code, accuracy(&offline)), (0, accuracy(&record)), "{invocation}");
        assert_eq!(offline["calls"]["cached"], 120);
        let (again, _) = project.json(&["run", "--batch"]);
        assert_eq!(again["batch"]["submitted"], 0);
        assert_eq!(fake.jobs_created(), 1);
    }
}

#[test]
fn a_run_larger_than_a_job_is_split_evenly_so_no_job_falls_below_the_minimum() {
    let Some(s3) = s3_url() else { return };
    let bucket = "pg-split";
    // 120 records, at most 100 a job, at least 30: filled to the limit, the second job would
    // hold 20 and Bedrock would refuse it; two of 60 are both taken.
    let fake = FakeBedrockBatch::start(&s3, bucket, 30, answer, Faults::default());
    let runtime = no_runtime();
    let project = project(&fake, &runtime.endpoint, bucket, CLAUDE, CASES, true);
    let config = std::fs::read_to_string(project.file("promptgate.toml")).unwrap();
    project.write(
        "promptgate.toml",
        &config.replace(
            "batch_poll_max_ms = 40",
            "batch_poll_max_ms = 40\nbatch_max_lines = 100",
        ),
    );
    support::run_all_in_batches(&project, 120, EXPECTED_ACCURACY);
    assert_eq!(fake.jobs_created(), 2);
    each_paid_once(&fake.billed(), 120);
}

#[test]
fn a_converse_record_is_the_body_the_online_call_sends() {
    let Some(s3) = s3_url() else { return };
    // The online call, as the SDK sends it, in one project; the batch in another.
    let online = FakeServer::start(|seen| Reply::Content(answer(&seen.body)));
    let fake = FakeBedrockBatch::start(&s3, "pg-same-body", 1, answer, Faults::default());
    let first = project(&fake, &online.endpoint, "pg-same-body", CLAUDE, 1, false);
    let (record, code) = first.json(&["run"]);
    assert_eq!((code, record["calls"]["made"].as_u64()), (0, Some(3)), "{record:#}");
    let sent = online.seen();
    let second = project(&fake, &online.endpoint, "pg-same-body", CLAUDE, 1, false);
    let (record, code) = second.json(&["run", "--batch"]);
    assert_eq!(
        (code, record["batch"]["submitted"].as_u64()),
        (0, Some(3)),
        "{record:#}"
    );
    let client = support::fake_bedrock_batch::s3_client(&s3);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let keys = runtime
        .block_on(
            client
                .list_objects_v2()
                .bucket("pg-same-body")
                .prefix("promptgate/")
                .send(),
        )
        .unwrap();
    let input = keys
        .contents()
        .iter()
        .filter_map(|o| o.key())
        .find(|k| k.ends_with("/input.jsonl"))
        .expect("an input object")
        .to_string();
    let body = runtime
        .block_on(async {
            let object = client.get_object().bucket("pg-same-body").key(&input).send().await?;
            Ok::<_, Box<dyn std::error::Error>>(object.body.collect().await?.into_bytes())
        })
        .unwrap();
    let records: Vec<Value> = body
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).unwrap())
        .collect();
    assert_eq!((sent.len(), records.len()), (3, 3));
    for seen in &sent {
        assert!(
            records.iter().any(|r| r["modelInput"] == seen.body),
            "the online body {} is no record's model input",
            seen.body
        );
    }
}

#[test]
fn failed_and_expired_records_are_retried_and_paid_once() {
    let Some(s3) = s3_url() else { return };
    let failing = Faults {
        failing_records: Some(std::sync::Arc::new(|input: &Value| case_of(input) % 7 == 3)),
        ..Faults::default()
    };
    let fake = FakeBedrockBatch::start(&s3, "pg-failing", 1, answer, failing);
    let runtime = no_runtime();
    let first = project(&fake, &runtime.endpoint, "pg-failing", CLAUDE, CASES, true);
    let (record, code) = first.json(&["run", "--batch"]);
    assert_eq!(code, 0, "{record:#}");
    assert!((accuracy(&record) - EXPECTED_ACCURACY).abs() < 1e-12);
    // Cases 3, 10, 17, 24, 31, 38 failed in the first job: 18 records, sent again in a second.
    let batch = &record["batch"];
    assert_eq!(
        (batch["failed"].as_u64(), batch["submitted"].as_u64()),
        (Some(18), Some(138))
    );
    assert_eq!(fake.jobs_created(), 2);
    each_paid_once(&fake.billed(), 120);

    let expiring = FakeBedrockBatch::start(
        &s3,
        "pg-expiring",
        1,
        answer,
        Faults {
            expire_first_after: Some(50),
            ..Faults::default()
        },
    );
    let second = project(&expiring, &runtime.endpoint, "pg-expiring", CLAUDE, CASES, true);
    let (record, code) = second.json(&["run", "--batch"]);
    assert_eq!(code, 0, "{record:#}");
    assert_eq!(record["batch"]["failed"], 70);
    let notes = record["batch"]["notes"].to_string();
    assert!(notes.contains("ran past its timeout"), "{notes}");
    each_paid_once(&expiring.billed(), 120);
    assert!((accuracy(&record) - EXPECTED_ACCURACY).abs() < 1e-12);
}

#[test]
fn a_killed_batch_run_resumes_without_paying_twice() {
    let Some(s3) = s3_url() else { return };
    // At the job's creation, at the first look, and at the look that finds it done (the run
    // then reads the output: killed there, it has not stored an answer yet).
    for (index, (route, nth)) in [
        ("POST /model-invocation-job", 1),
        ("GET /model-invocation-job/", 1),
        ("GET /model-invocation-job/", 3),
    ]
    .into_iter()
    .enumerate()
    {
        let bucket = format!("pg-killed-{index}");
        let fake = FakeBedrockBatch::start(
            &s3,
            &bucket,
            100,
            answer,
            Faults {
                polls_before_done: 2,
                ..Faults::default()
            },
        );
        let runtime = no_runtime();
        let project = project(&fake, &runtime.endpoint, &bucket, CLAUDE, CASES, true);
        let paused = fake.pause_at(route, nth);
        project.kill_when(&["run", "--batch", "--quiet"], &paused, &format!("{route} #{nth}"));

        let (record, code) = project.json(&["run", "--batch"]);
        assert_eq!(code, 0, "{route}: {record:#}");
        assert!((accuracy(&record) - EXPECTED_ACCURACY).abs() < 1e-12, "{route}");
        each_paid_once(&fake.billed(), 120);
        assert_eq!(
            fake.jobs_created(),
            1,
            "{route}: the job was found again, not created twice"
        );
        let (offline, code) = project.json(&["run", "--offline"]);
        assert_eq!((code, accuracy(&offline)), (0, accuracy(&record)), "{route}");
    }
}

#[test]
fn small_groups_and_tools_bedrock_cannot_batch_go_online_and_say_why() {
    let Some(s3) = s3_url() else { return };
    let online = FakeServer::start(|seen| Reply::Content(answer(&seen.body)));
    // 10 cases × 3 = 30 records, under the minimum of 100.
    let fake = FakeBedrockBatch::start(&s3, "pg-small", 100, answer, Faults::default());
    let small = project(&fake, &online.endpoint, "pg-small", CLAUDE, 10, true);
    let (record, code) = small.json(&["run", "--batch"]);
    assert_eq!(code, 0, "{record:#}");
    assert_eq!(
        (record["batch"]["online"].as_u64(), record["calls"]["made"].as_u64()),
        (Some(30), Some(30))
    );
    let notes = record["batch"]["notes"].to_string();
    assert!(notes.contains("fewer than the 100 records"), "{notes}");
    assert_eq!(fake.jobs_created(), 0);
    // Online calls are priced as such: 30 × (40, 7) tokens.
    let cost = record["results"][0]["cost_usd"].as_f64().unwrap();
    assert!((cost - (1200.0 * 0.25 + 210.0 * 1.25) / 1e6).abs() < 1e-15, "{cost}");

    // A schema prompt to a model whose own format promptgate does not write.
    let nova = project(
        &fake,
        &online.endpoint,
        "pg-small",
        "amazon.nova-lite-v1:0",
        CASES,
        true,
    );
    let (record, code) = nova.json(&["run", "--batch"]);
    assert_eq!(code, 0, "{record:#}");
    assert_eq!(record["batch"]["online"], 120);
    let notes = record["batch"]["notes"].to_string();
    assert!(notes.contains("take no tools"), "{notes}");
    assert_eq!(fake.jobs_created(), 0);
}

#[test]
fn a_failed_upload_pays_nothing_and_the_calls_go_online() {
    let Some(s3) = s3_url() else { return };
    let online = FakeServer::start(|seen| Reply::Content(answer(&seen.body)));
    let fake = FakeBedrockBatch::start(&s3, "pg-upload", 1, answer, Faults::default());
    // A bucket that does not exist: S3 refuses the input object (NoSuchBucket).
    let project = project(&fake, &online.endpoint, "pg-no-such-bucket", CLAUDE, CASES, true);
    let (record, code) = project.json(&["run", "--batch"]);
    assert_eq!(code, 0, "{record:#}");
    assert_eq!(
        (record["batch"]["online"].as_u64(), record["calls"]["made"].as_u64()),
        (Some(120), Some(120))
    );
    let notes = record["batch"]["notes"].to_string();
    assert!(
        notes.contains("could not be submitted (could not write the input to S3"),
        "{notes}"
    );
    assert_eq!((fake.jobs_created(), fake.billed().len()), (0, 0));
    assert!((accuracy(&record) - EXPECTED_ACCURACY).abs() < 1e-12);
}
