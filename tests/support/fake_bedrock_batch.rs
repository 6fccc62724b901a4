//! A fake Amazon Bedrock control plane for batch inference on 127.0.0.1, over a real
//! S3-compatible server (moto, started by ci/test.sh): `POST /model-invocation-job`
//! (idempotent on `clientRequestToken`), `GET /model-invocation-job/{jobIdentifier}` and
//! `GET /model-invocation-jobs` (`nameContains`, two jobs a page with `nextToken`), in the
//! documented JSON shapes, SigV4 accepted and not checked. A created job reads its input
//! object from S3 and writes `{output}{jobId}/input.jsonl.out` and `manifest.json.out` as
//! Bedrock does: Converse-shaped answers for `Converse` jobs (and a 400 error record for a
//! record with a `toolConfig`, which such jobs refuse), Anthropic Messages answers for
//! `InvokeModel` jobs. It refuses a job with fewer records than its minimum, and counts
//! billed records. Faults: records that fail, a job that expires part done, a pause after a
//! request's effect and before its answer. A fixture, never a product feature.

use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

use super::fake_server::{converse_output, percent_decode, read_head};

/// Which records of the first job fail.
pub type RecordFilter = Arc<dyn Fn(&Value) -> bool + Send + Sync>;

/// What the service does wrong, and when.
#[derive(Clone, Default)]
pub struct Faults {
    /// In the first job, these records fail (an error record, not billed).
    pub failing_records: Option<RecordFilter>,
    /// The first job answers only this many records, then expires.
    pub expire_first_after: Option<usize>,
    /// Looks at a job before it is done.
    pub polls_before_done: usize,
}

struct Job {
    summary: Value,
    polls: usize,
    /// Its final status (and message), shown once `polls` pass `polls_before_done`.
    done: (String, Option<String>),
    counts: (usize, usize, usize),
}

struct State {
    answer: Box<dyn Fn(&Value) -> String + Send + Sync>,
    faults: Faults,
    min_records: usize,
    s3: aws_sdk_s3::Client,
    jobs: Mutex<Vec<Job>>,
    billed: Mutex<Vec<String>>,
    records_read: Mutex<usize>,
    /// (method and path prefix, matching requests to let pass first, signal).
    pause: Mutex<Option<(String, usize, Sender<()>)>>,
    /// Time spent answering requests (taken out of a benchmark's wall time).
    busy: Mutex<Duration>,
}

/// A running fake control plane; stops when dropped.
pub struct FakeBedrockBatch {
    /// The control-plane endpoint (`http://127.0.0.1:PORT`).
    pub endpoint: String,
    /// The fewest records it takes in a job.
    pub min_records: usize,
    state: Arc<State>,
    runtime: Option<tokio::runtime::Runtime>,
}

/// The S3-compatible server the tests use: `PROMPTGATE_S3_URL`, set by ci/test.sh. Under CI its
/// absence is a failure; elsewhere the test is skipped with a hint.
pub fn s3_url() -> Option<String> {
    match std::env::var("PROMPTGATE_S3_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            assert!(
                std::env::var("CI").is_err(),
                "CI must run this test: ci/test.sh starts the S3-compatible server and sets PROMPTGATE_S3_URL"
            );
            eprintln!("skipped: set PROMPTGATE_S3_URL (ci/s3.sh start; ci/s3.sh url)");
            None
        }
    }
}

/// An S3 client for the test server, with the credentials the tests give promptgate.
pub fn s3_client(url: &str) -> aws_sdk_s3::Client {
    let credentials =
        aws_sdk_s3::config::Credentials::new("AKIDPROMPTGATETEST", "promptgate-test-secret", None, None, "test");
    let config = aws_sdk_s3::config::Builder::new()
        .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
        .region(aws_sdk_s3::config::Region::new("us-east-1"))
        .credentials_provider(credentials)
        .endpoint_url(url)
        .force_path_style(true)
        .build();
    aws_sdk_s3::Client::from_conf(config)
}

impl FakeBedrockBatch {
    /// A service whose model answers each model input with `answer(modelInput)` as its text,
    /// writing to the S3 server at `s3_url`, in a fresh bucket `bucket`.
    pub fn start(
        s3_url: &str,
        bucket: &str,
        min_records: usize,
        answer: impl Fn(&Value) -> String + Send + Sync + 'static,
        faults: Faults,
    ) -> FakeBedrockBatch {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let s3 = s3_client(s3_url);
        runtime
            .block_on(s3.create_bucket().bucket(bucket).send())
            .expect("create the test bucket");
        let state = Arc::new(State {
            answer: Box::new(answer),
            faults,
            min_records,
            s3,
            jobs: Mutex::new(Vec::new()),
            billed: Mutex::new(Vec::new()),
            records_read: Mutex::new(0),
            pause: Mutex::new(None),
            busy: Mutex::new(Duration::ZERO),
        });
        let listener = runtime.block_on(TcpListener::bind("127.0.0.1:0")).expect("bind");
        let address = listener.local_addr().expect("address");
        let accept_state = Arc::clone(&state);
        runtime.spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let state = Arc::clone(&accept_state);
                tokio::spawn(async move {
                    let _ = serve(stream, state).await;
                });
            }
        });
        FakeBedrockBatch {
            endpoint: format!("http://{address}"),
            min_records,
            state,
            runtime: Some(runtime),
        }
    }

    /// The `nth` (from 1) request whose method and path start with `route` does what it does,
    /// then signals the receiver and waits 5 s before it answers.
    pub fn pause_at(&self, route: &str, nth: usize) -> Receiver<()> {
        let (sender, receiver) = channel();
        *self.state.pause.lock().unwrap() = Some((route.to_string(), nth.saturating_sub(1), sender));
        receiver
    }

    /// The record ids of every billed record.
    pub fn billed(&self) -> Vec<String> {
        self.state.billed.lock().unwrap().clone()
    }

    /// Records read from input objects by created jobs.
    pub fn records_read(&self) -> usize {
        *self.state.records_read.lock().unwrap()
    }

    /// Jobs created.
    pub fn jobs_created(&self) -> usize {
        self.state.jobs.lock().unwrap().len()
    }

    /// The model invocation types of the jobs created.
    pub fn invocation_types(&self) -> Vec<String> {
        let jobs = self.state.jobs.lock().unwrap();
        jobs.iter()
            .map(|job| job.summary["modelInvocationType"].as_str().unwrap_or("").to_string())
            .collect()
    }

    /// Time the service spent answering requests.
    pub fn busy(&self) -> Duration {
        *self.state.busy.lock().unwrap()
    }
}

impl Drop for FakeBedrockBatch {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// `s3://bucket/key` → (bucket, key).
fn split_uri(uri: &str) -> (String, String) {
    let rest = uri.trim_start_matches("s3://");
    let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
    (bucket.to_string(), key.to_string())
}

/// An Anthropic Messages answer: the forced tool's input when the request forces one and the
/// content is JSON, else text.
fn anthropic_output(content: &str, request: &Value) -> Value {
    let forced = (request["tool_choice"]["type"] == "tool")
        .then(|| request["tool_choice"]["name"].as_str())
        .flatten();
    let block = match (forced, serde_json::from_str::<Value>(content)) {
        (Some(name), Ok(input)) => json!({"type": "tool_use", "id": "toolu_fake", "name": name, "input": input}),
        _ => json!({"type": "text", "text": content}),
    };
    json!({
        "id": "msg_fake", "type": "message", "role": "assistant", "model": "claude-fake",
        "content": [block], "stop_reason": if forced.is_some() { "tool_use" } else { "end_turn" },
        "stop_sequence": null, "usage": {"input_tokens": 40, "output_tokens": 7}
    })
}

/// Create a job: read its input, answer it, write its output.
async fn create(state: &State, request: Value) -> (u16, Value) {
    let token = request["clientRequestToken"].as_str().unwrap_or_default().to_string();
    {
        let jobs = state.jobs.lock().unwrap();
        if let Some(job) = jobs
            .iter()
            .find(|j| !token.is_empty() && j.summary["clientRequestToken"] == token)
        {
            return (200, json!({"jobArn": job.summary["jobArn"]}));
        }
    }
    let required = ["jobName", "roleArn", "modelId"];
    if required
        .iter()
        .any(|key| request[key].as_str().is_none_or(str::is_empty))
    {
        return (400, json!({"message": "jobName, roleArn and modelId are required"}));
    }
    let invocation = request["modelInvocationType"]
        .as_str()
        .unwrap_or("InvokeModel")
        .to_string();
    let input_uri = request["inputDataConfig"]["s3InputDataConfig"]["s3Uri"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let output_uri = request["outputDataConfig"]["s3OutputDataConfig"]["s3Uri"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let (bucket, key) = split_uri(&input_uri);
    let Ok(object) = state.s3.get_object().bucket(&bucket).key(&key).send().await else {
        return (400, json!({"message": format!("cannot read {input_uri}")}));
    };
    let Ok(bytes) = object.body.collect().await.map(|b| b.into_bytes()) else {
        return (400, json!({"message": "cannot read the input"}));
    };
    let records: Vec<Value> = bytes
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).unwrap_or(Value::Null))
        .collect();
    let first = state.jobs.lock().unwrap().is_empty();
    let number = state.jobs.lock().unwrap().len() + 1;
    let job_id = format!("fakejob{number:05}");
    let arn = format!("arn:aws:bedrock:us-east-1:111122223333:model-invocation-job/{job_id}");
    let mut done = ("Completed".to_string(), None);
    let (mut succeeded, mut failed) = (0, 0);
    if records.len() < state.min_records {
        done = (
            "Failed".to_string(),
            Some(format!(
                "the job has {} records, fewer than the minimum of {}",
                records.len(),
                state.min_records
            )),
        );
    } else {
        *state.records_read.lock().unwrap() += records.len();
        let mut output = String::new();
        for record in &records {
            let record_id = record["recordId"].as_str().unwrap_or_default().to_string();
            let input = &record["modelInput"];
            if first && state.faults.expire_first_after.is_some_and(|n| succeeded >= n) {
                done = ("Expired".to_string(), Some("the job ran past its timeout".to_string()));
                break;
            }
            let error = if invocation == "Converse" && input.get("toolConfig").is_some() {
                Some((
                    400,
                    "toolConfig is not supported in batch inference with the Converse invocation type",
                ))
            } else if first && state.faults.failing_records.as_ref().is_some_and(|f| f(input)) {
                Some((500, "the model is overloaded"))
            } else {
                None
            };
            let line = match error {
                Some((code, message)) => {
                    failed += 1;
                    json!({"recordId": record_id, "modelInput": input, "error": {"errorCode": code, "errorMessage": message}})
                }
                None => {
                    let content = (state.answer)(input);
                    let output = if invocation == "Converse" {
                        converse_output(&content, input)
                    } else {
                        anthropic_output(&content, input)
                    };
                    state.billed.lock().unwrap().push(record_id.clone());
                    succeeded += 1;
                    json!({"recordId": record_id, "modelInput": input, "modelOutput": output})
                }
            };
            output.push_str(&line.to_string());
            output.push('\n');
        }
        let (out_bucket, out_prefix) = split_uri(&output_uri);
        let name = key.rsplit('/').next().unwrap_or("input.jsonl");
        let manifest = json!({
            "totalRecordCount": records.len(), "processedRecordCount": succeeded + failed,
            "successRecordCount": succeeded, "errorRecordCount": failed,
            "inputTokenCount": succeeded * 40, "outputTokenCount": succeeded * 7
        });
        for (object, body) in [
            (format!("{name}.out"), output.into_bytes()),
            ("manifest.json.out".to_string(), manifest.to_string().into_bytes()),
        ] {
            let key = format!("{out_prefix}{job_id}/{object}");
            state
                .s3
                .put_object()
                .bucket(&out_bucket)
                .key(key)
                .body(body.into())
                .send()
                .await
                .expect("write the job's output");
        }
    }
    let summary = json!({
        "jobArn": arn, "jobName": request["jobName"], "modelId": request["modelId"],
        "clientRequestToken": token, "roleArn": request["roleArn"], "status": "Submitted",
        "submitTime": "2026-12-04T20:00:00Z", "lastModifiedTime": "2026-12-04T20:00:00Z",
        "inputDataConfig": request["inputDataConfig"], "outputDataConfig": request["outputDataConfig"],
        "modelInvocationType": invocation, "timeoutDurationInHours": 24,
    });
    state.jobs.lock().unwrap().push(Job {
        summary,
        polls: 0,
        done,
        counts: (records.len(), succeeded + failed, failed),
    });
    (200, json!({"jobArn": arn}))
}

async fn route(state: &State, method: &str, path: &str, body: &[u8]) -> (u16, Value) {
    let (path, query) = path.split_once('?').unwrap_or((path, ""));
    let param = |name: &str| {
        query
            .split('&')
            .find_map(|p| p.strip_prefix(&format!("{name}=")))
            .map(percent_decode)
    };
    match (method, path) {
        ("POST", "/model-invocation-job") => {
            let request: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
            create(state, request).await
        }
        ("GET", "/model-invocation-jobs") => {
            let contains = param("nameContains").unwrap_or_default();
            let start: usize = param("nextToken").and_then(|t| t.parse().ok()).unwrap_or(0);
            let jobs = state.jobs.lock().unwrap();
            let matching: Vec<Value> = jobs
                .iter()
                .rev()
                .filter(|job| job.summary["jobName"].as_str().unwrap_or_default().contains(&contains))
                .map(|job| job.summary.clone())
                .collect();
            // Two a page, whatever maxResults says: pagination is exercised with few jobs.
            let page: Vec<Value> = matching.iter().skip(start).take(2).cloned().collect();
            let mut reply = json!({"invocationJobSummaries": page});
            if start + 2 < matching.len() {
                reply["nextToken"] = json!((start + 2).to_string());
            }
            (200, reply)
        }
        ("GET", path) if path.starts_with("/model-invocation-job/") => {
            let id = percent_decode(path.trim_start_matches("/model-invocation-job/"));
            let polls_needed = state.faults.polls_before_done;
            let mut jobs = state.jobs.lock().unwrap();
            let Some(job) = jobs
                .iter_mut()
                .find(|j| j.summary["jobArn"] == id.as_str() || j.summary["jobName"] == id.as_str())
            else {
                return (404, json!({"message": "no such job"}));
            };
            job.polls += 1;
            let mut reply = job.summary.clone();
            if job.polls > polls_needed {
                reply["status"] = json!(job.done.0);
                if let Some(message) = &job.done.1 {
                    reply["message"] = json!(message);
                }
                reply["totalRecordCount"] = json!(job.counts.0);
                reply["processedRecordCount"] = json!(job.counts.1);
                reply["errorRecordCount"] = json!(job.counts.2);
                reply["successRecordCount"] = json!(job.counts.1 - job.counts.2);
            } else {
                reply["status"] = json!("InProgress");
            }
            (200, reply)
        }
        _ => (404, json!({"message": "not found"})),
    }
}

async fn serve(stream: TcpStream, state: Arc<State>) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream);
    loop {
        let Some((method, path, headers)) = read_head(&mut reader).await? else {
            return Ok(());
        };
        let length: usize = headers.get("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
        let mut body = vec![0; length];
        reader.read_exact(&mut body).await?;
        let started = std::time::Instant::now();
        let (status, reply) = route(&state, &method, &path, &body).await;
        *state.busy.lock().unwrap() += started.elapsed();
        let paused = {
            let mut pause = state.pause.lock().unwrap();
            match pause.as_mut() {
                Some((route, 0, _)) if format!("{method} {path}").starts_with(route.as_str()) => pause.take(),
                Some((route, pass, _)) if format!("{method} {path}").starts_with(route.as_str()) => {
                    *pass -= 1;
                    None
                }
                _ => None,
            }
        };
        if let Some((_, _, signal)) = paused {
            let _ = signal.send(());
            tokio::time::sleep(Duration::from_secs(5)).await;
        }
        let reply = reply.to_string();
        let error_type = match status {
            200 => String::new(),
            404 => "x-amzn-errortype: ResourceNotFoundException\r\n".to_string(),
            _ => "x-amzn-errortype: ValidationException\r\n".to_string(),
        };
        let head = format!(
            "HTTP/1.1 {status} {}\r\ncontent-type: application/json\r\n{error_type}content-length: {}\r\n\r\n{reply}",
            if status == 200 { "OK" } else { "Error" },
            reply.len()
        );
        let stream = reader.get_mut();
        stream.write_all(head.as_bytes()).await?;
        stream.flush().await?;
    }
}
