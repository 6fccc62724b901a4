//! A fake OpenAI Batch API on 127.0.0.1: `POST /v1/files` (multipart, purpose `batch`),
//! `POST /v1/batches`, `GET /v1/batches` (newest first, `limit` and `after`),
//! `GET /v1/batches/{id}` and `GET /v1/files/{id}/content`, in the documented formats, with
//! injectable faults: failed uploads, lines that fail, a batch that expires half-done, and a
//! pause after a request's effect and before its answer (for killing the client there). It
//! counts uploaded lines and billed requests (answered lines of created batches). It answers
//! nothing else: an online chat completion is a 404, so a test sees any call that bypassed
//! the batch. A fixture, never a product feature.

use std::collections::HashMap;
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

use super::fake_server::{completion, read_head};

/// Which lines of the first batch fail.
pub type LineFilter = Arc<dyn Fn(&Value) -> bool + Send + Sync>;

/// What the server does wrong, and when.
#[derive(Clone, Default)]
pub struct Faults {
    /// The first this many uploads answer 500.
    pub failed_uploads: usize,
    /// In the first batch, these custom ids fail (an error line, not billed).
    pub failing_lines: Option<LineFilter>,
    /// The first batch answers only this many lines, then expires.
    pub expire_first_after: Option<usize>,
    /// Looks at a batch before it is completed.
    pub polls_before_done: usize,
}

struct Batch {
    object: Value,
    polls: usize,
    /// Its final state, shown once `polls` reach `polls_before_done`.
    done: Value,
}

struct State {
    answer: Box<dyn Fn(&Value) -> String + Send + Sync>,
    faults: Mutex<Faults>,
    files: Mutex<HashMap<String, Vec<u8>>>,
    batches: Mutex<Vec<Batch>>,
    uploads: Mutex<usize>,
    /// Lines of each uploaded input file, in order.
    uploaded_lines: Mutex<Vec<usize>>,
    /// Every request's method and path, in the order they came.
    requests: Mutex<Vec<String>>,
    /// The custom ids of every billed request, in order.
    billed: Mutex<Vec<String>>,
    /// (method and path prefix, signal): the next matching request does its effect, signals,
    /// then waits before it answers.
    pause: Mutex<Option<(String, Sender<()>)>>,
    counter: Mutex<usize>,
    /// Time spent answering requests (what a benchmark takes out of the client's wall time).
    busy: Mutex<Duration>,
}

/// A running fake Batch API; stops when dropped.
pub struct FakeBatchServer {
    /// OpenAI base URL (`http://127.0.0.1:PORT/v1`).
    pub base_url: String,
    state: Arc<State>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl FakeBatchServer {
    /// A server whose model answers each request body with `answer(body)` as its content.
    pub fn start(answer: impl Fn(&Value) -> String + Send + Sync + 'static, faults: Faults) -> FakeBatchServer {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let state = Arc::new(State {
            answer: Box::new(answer),
            faults: Mutex::new(faults),
            files: Mutex::new(HashMap::new()),
            batches: Mutex::new(Vec::new()),
            uploads: Mutex::new(0),
            uploaded_lines: Mutex::new(Vec::new()),
            requests: Mutex::new(Vec::new()),
            billed: Mutex::new(Vec::new()),
            pause: Mutex::new(None),
            counter: Mutex::new(0),
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
        FakeBatchServer {
            base_url: format!("http://{address}/v1"),
            state,
            runtime: Some(runtime),
        }
    }

    /// The next request whose method and path start with `route` (`"POST /v1/batches"`) does
    /// what it does, then signals the receiver and waits 5 s before it answers.
    pub fn pause_at(&self, route: &str) -> Receiver<()> {
        let (sender, receiver) = channel();
        *self.state.pause.lock().unwrap() = Some((route.to_string(), sender));
        receiver
    }

    /// Lines uploaded in input files, over all uploads.
    pub fn uploaded_lines(&self) -> usize {
        self.state.uploaded_lines.lock().unwrap().iter().sum()
    }

    /// Lines of each uploaded input file, in order.
    pub fn uploads(&self) -> Vec<usize> {
        self.state.uploaded_lines.lock().unwrap().clone()
    }

    /// Every request's method and path (without its query), in the order they came.
    pub fn requests(&self) -> Vec<String> {
        self.state.requests.lock().unwrap().clone()
    }

    /// The custom ids of every billed request.
    pub fn billed(&self) -> Vec<String> {
        self.state.billed.lock().unwrap().clone()
    }

    /// Time the server spent answering requests.
    pub fn busy(&self) -> Duration {
        *self.state.busy.lock().unwrap()
    }

    /// Batches created.
    pub fn batches_created(&self) -> usize {
        self.state.batches.lock().unwrap().len()
    }
}

impl Drop for FakeBatchServer {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

fn next_id(state: &State, prefix: &str) -> String {
    let mut counter = state.counter.lock().unwrap();
    *counter += 1;
    format!("{prefix}{:04}", *counter)
}

/// The file part of a multipart form.
fn file_part(content_type: &str, body: &[u8]) -> Option<Vec<u8>> {
    let boundary = content_type.split("boundary=").nth(1)?.trim_matches('"');
    let delimiter = format!("--{boundary}");
    let text = body;
    let mut parts = Vec::new();
    let mut start = 0;
    while let Some(found) = find(&text[start..], delimiter.as_bytes()) {
        parts.push(&text[start..start + found]);
        start += found + delimiter.len();
    }
    for part in parts {
        let Some(header_end) = find(part, b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&part[..header_end]);
        if head.contains("name=\"file\"") {
            let content = &part[header_end + 4..];
            return Some(content.strip_suffix(b"\r\n").unwrap_or(content).to_vec());
        }
    }
    None
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Answer one request: (status, content type, body).
fn route(
    state: &State,
    method: &str,
    path: &str,
    headers: &HashMap<String, String>,
    body: &[u8],
) -> (u16, &'static str, Vec<u8>) {
    let json_reply = |status: u16, value: Value| (status, "application/json", value.to_string().into_bytes());
    let (path, query) = path.split_once('?').unwrap_or((path, ""));
    state.requests.lock().unwrap().push(format!("{method} {path}"));
    match (method, path) {
        ("POST", "/v1/files") => {
            let mut uploads = state.uploads.lock().unwrap();
            *uploads += 1;
            if *uploads <= state.faults.lock().unwrap().failed_uploads {
                return json_reply(
                    500,
                    json!({"error": {"message": "upload failed", "type": "server_error", "param": null, "code": null}}),
                );
            }
            let content_type = headers.get("content-type").cloned().unwrap_or_default();
            let Some(file) = file_part(&content_type, body) else {
                return json_reply(
                    400,
                    json!({"error": {"message": "no file part", "type": "invalid_request_error", "param": null, "code": null}}),
                );
            };
            let lines = file.split(|&b| b == b'\n').filter(|l| !l.is_empty()).count();
            state.uploaded_lines.lock().unwrap().push(lines);
            let id = next_id(state, "file-in");
            let bytes = file.len();
            state.files.lock().unwrap().insert(id.clone(), file);
            json_reply(
                200,
                json!({"id": id, "object": "file", "bytes": bytes, "created_at": 1_764_800_000, "filename": "promptgate-batch.jsonl", "purpose": "batch"}),
            )
        }
        ("POST", "/v1/batches") => {
            let request: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
            let input = request["input_file_id"].as_str().unwrap_or_default().to_string();
            let Some(file) = state.files.lock().unwrap().get(&input).cloned() else {
                return json_reply(
                    400,
                    json!({"error": {"message": "no such file", "type": "invalid_request_error", "param": null, "code": null}}),
                );
            };
            let first = state.batches.lock().unwrap().is_empty();
            let faults = state.faults.lock().unwrap().clone();
            let (mut output, mut errors) = (String::new(), String::new());
            let (mut completed, mut failed) = (0, 0);
            let mut answered = 0;
            let lines: Vec<Value> = file
                .split(|&b| b == b'\n')
                .filter(|l| !l.is_empty())
                .map(|l| serde_json::from_slice(l).unwrap_or(Value::Null))
                .collect();
            let total = lines.len();
            let mut expired = false;
            for line in &lines {
                let custom_id = line["custom_id"].as_str().unwrap_or_default().to_string();
                if first && faults.expire_first_after.is_some_and(|n| answered >= n) {
                    expired = true;
                    continue;
                }
                if first && faults.failing_lines.as_ref().is_some_and(|f| f(line)) {
                    failed += 1;
                    errors.push_str(&json!({"id": format!("batch_req_{custom_id}"), "custom_id": custom_id, "response": null, "error": {"code": "server_error", "message": "the model is overloaded"}}).to_string());
                    errors.push('\n');
                    continue;
                }
                let content = (state.answer)(&line["body"]);
                let model = line["body"]["model"].as_str().unwrap_or_default();
                output.push_str(&json!({"id": format!("batch_req_{custom_id}"), "custom_id": custom_id, "response": {"status_code": 200, "request_id": "req_fake", "body": completion(&content, model)}, "error": null}).to_string());
                output.push('\n');
                state.billed.lock().unwrap().push(custom_id);
                answered += 1;
                completed += 1;
            }
            let id = next_id(state, "batch_");
            let output_id = next_id(state, "file-out");
            state
                .files
                .lock()
                .unwrap()
                .insert(output_id.clone(), output.into_bytes());
            let error_id = (failed > 0).then(|| next_id(state, "file-err"));
            if let Some(error_id) = &error_id {
                state
                    .files
                    .lock()
                    .unwrap()
                    .insert(error_id.clone(), errors.into_bytes());
            }
            let object = |status: &str, completed: usize, failed: usize, output: Option<&str>, error: Option<&str>| {
                json!({
                    "id": id, "object": "batch", "endpoint": "/v1/chat/completions", "errors": null,
                    "input_file_id": input, "completion_window": "24h", "status": status,
                    "output_file_id": output, "error_file_id": error, "created_at": 1_764_800_000,
                    "in_progress_at": null, "expires_at": 1_764_886_400, "finalizing_at": null,
                    "completed_at": null, "failed_at": null, "expired_at": null, "cancelling_at": null,
                    "cancelled_at": null,
                    "request_counts": {"total": total, "completed": completed, "failed": failed},
                    "metadata": request["metadata"],
                })
            };
            let started = object("validating", 0, 0, None, None);
            let done = object(
                if expired { "expired" } else { "completed" },
                completed,
                failed,
                Some(&output_id),
                error_id.as_deref(),
            );
            state.batches.lock().unwrap().push(Batch {
                object: started.clone(),
                polls: 0,
                done,
            });
            json_reply(200, started)
        }
        ("GET", "/v1/batches") => {
            let after = query.split('&').find_map(|p| p.strip_prefix("after="));
            let batches = state.batches.lock().unwrap();
            let newest_first: Vec<&Value> = batches.iter().rev().map(|b| &b.object).collect();
            let start = after
                .and_then(|a| newest_first.iter().position(|b| b["id"] == a).map(|i| i + 1))
                .unwrap_or(0);
            // Two a page, whatever `limit` says: pagination is exercised with few batches.
            let page: Vec<Value> = newest_first.iter().skip(start).take(2).map(|b| (*b).clone()).collect();
            let has_more = start + page.len() < newest_first.len();
            json_reply(
                200,
                json!({"object": "list", "data": page, "first_id": null, "last_id": null, "has_more": has_more}),
            )
        }
        ("GET", path) if path.starts_with("/v1/batches/") => {
            let id = path.trim_start_matches("/v1/batches/");
            let polls_needed = state.faults.lock().unwrap().polls_before_done;
            let mut batches = state.batches.lock().unwrap();
            let Some(batch) = batches.iter_mut().find(|b| b.object["id"] == id) else {
                return json_reply(
                    404,
                    json!({"error": {"message": "no such batch", "type": "invalid_request_error", "param": null, "code": null}}),
                );
            };
            batch.polls += 1;
            if batch.polls > polls_needed {
                batch.object = batch.done.clone();
            } else {
                batch.object["status"] = json!("in_progress");
            }
            json_reply(200, batch.object.clone())
        }
        ("GET", path) if path.starts_with("/v1/files/") && path.ends_with("/content") => {
            let id = path.trim_start_matches("/v1/files/").trim_end_matches("/content");
            match state.files.lock().unwrap().get(id) {
                Some(bytes) => (200, "application/octet-stream", bytes.clone()),
                None => json_reply(
                    404,
                    json!({"error": {"message": "no such file", "type": "invalid_request_error", "param": null, "code": null}}),
                ),
            }
        }
        _ => json_reply(
            404,
            json!({"error": {"message": "not found", "type": "invalid_request_error", "param": null, "code": null}}),
        ),
    }
}

async fn serve(stream: TcpStream, state: Arc<State>) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream);
    loop {
        let Some((method, path, headers)) = read_head(&mut reader).await? else {
            return Ok(());
        };
        let mut body = Vec::new();
        if headers.get("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
            loop {
                let mut size = String::new();
                reader.read_line(&mut size).await?;
                let size = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
                let mut chunk = vec![0; size + 2];
                reader.read_exact(&mut chunk).await?;
                if size == 0 {
                    break;
                }
                body.extend_from_slice(&chunk[..size]);
            }
        } else {
            let length: usize = headers.get("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
            body.resize(length, 0);
            reader.read_exact(&mut body).await?;
        }
        let started = std::time::Instant::now();
        let (status, content_type, reply) = route(&state, &method, &path, &headers, &body);
        *state.busy.lock().unwrap() += started.elapsed();
        let paused = {
            let mut pause = state.pause.lock().unwrap();
            match pause.as_ref() {
                Some((route, _)) if format!("{method} {path}").starts_with(route.as_str()) => pause.take(),
                _ => None,
            }
        };
        if let Some((_, signal)) = paused {
            let _ = signal.send(());
            tokio::time::sleep(Duration::from_secs(5)).await;
        }
        let mut head = format!(
            "HTTP/1.1 {status} {}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\n\r\n",
            if status == 200 { "OK" } else { "Error" },
            reply.len()
        )
        .into_bytes();
        head.extend_from_slice(&reply);
        let stream = reader.get_mut();
        stream.write_all(&head).await?;
        stream.flush().await?;
    }
}
