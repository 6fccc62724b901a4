//! A fake model server: real HTTP/1.1 on 127.0.0.1 speaking two real wire formats —
//! OpenAI Chat Completions on `POST /v1/chat/completions` and Bedrock Converse on
//! `POST /model/{modelId}/converse` (SigV4 accepted, not checked) — with scripted answers and
//! injectable faults (429 + Retry-After, 5xx, slow answers, garbled bodies, connection resets).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// What the server does with one request.
#[derive(Debug, Clone)]
pub enum Reply {
    /// 200 with a chat completion whose message content is this text.
    Content(String),
    /// 200 with these tool calls (name, arguments): OpenAI `tool_calls` or Bedrock `toolUse`.
    ToolCalls(Vec<(String, Value)>),
    /// Any status, body and extra headers.
    Raw {
        status: u16,
        body: String,
        headers: Vec<(String, String)>,
    },
    /// 200 with a body that is not JSON.
    Garbled,
    /// Close the connection with a TCP reset, no answer.
    Reset,
    /// Wait, then reply.
    Delay(Duration, Box<Reply>),
    /// 200 with a chunked body that never ends: 64 KiB chunks until the client hangs up, or
    /// (a bound for the test itself) 256 MiB or 30 seconds.
    Endless,
}

impl Reply {
    /// 200 with `{"decision": label}` as the content.
    pub fn label(label: &str) -> Reply {
        Reply::Content(json!({"decision": label}).to_string())
    }

    /// 429 with OpenAI's rate-limit body and a `Retry-After` header.
    pub fn rate_limited(retry_after_secs: u32) -> Reply {
        Reply::Raw {
            status: 429,
            body: json!({"error": {"message": "Rate limit reached for requests", "type": "requests", "param": null, "code": "rate_limit_exceeded"}}).to_string(),
            headers: vec![("retry-after".into(), retry_after_secs.to_string())],
        }
    }

    /// A Bedrock error as the service sends it: `x-amzn-errortype` header and a JSON message.
    pub fn bedrock_error(status: u16, error_type: &str, message: &str) -> Reply {
        Reply::Raw {
            status,
            body: json!({"message": message}).to_string(),
            headers: vec![(
                "x-amzn-errortype".into(),
                format!("{error_type}:http://internal.amazon.com/coral/com.amazon.bedrock/"),
            )],
        }
    }

    /// A 5xx with a non-JSON body, as gateways send.
    pub fn server_error(status: u16) -> Reply {
        Reply::Raw {
            status,
            body: "<html><body>upstream error</body></html>".into(),
            headers: vec![],
        }
    }
}

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub path: String,
    pub headers: HashMap<String, String>,
    pub body: Value,
    /// How many earlier requests had the same body (0 for the first attempt).
    pub attempt: usize,
    pub at: Instant,
}

impl Seen {
    /// The `case=...` id the test prompt puts first in the user message.
    pub fn case_id(&self) -> String {
        self.user_message()
            .lines()
            .next()
            .and_then(|line| line.strip_prefix("case="))
            .unwrap_or_default()
            .to_string()
    }

    /// The text of the first user message, in either wire format.
    pub fn user_message(&self) -> String {
        let message = self.body["messages"]
            .as_array()
            .and_then(|m| m.iter().find(|m| m["role"] == "user"));
        let Some(message) = message else { return String::new() };
        match &message["content"] {
            Value::String(text) => text.clone(),
            // Bedrock: a list of content blocks.
            Value::Array(blocks) => blocks
                .iter()
                .filter_map(|b| b["text"].as_str())
                .collect::<Vec<_>>()
                .join(""),
            _ => String::new(),
        }
    }

    /// Whether this is a Bedrock Converse request.
    pub fn is_bedrock(&self) -> bool {
        self.path.starts_with("/model/")
    }

    /// The model id: the body's `model` (OpenAI) or the percent-decoded path label (Bedrock).
    pub fn model_id(&self) -> String {
        if let Some(rest) = self.path.strip_prefix("/model/") {
            return percent_decode(rest.trim_end_matches("/converse"));
        }
        self.body["model"].as_str().unwrap_or_default().to_string()
    }

    /// The seed sent, which promptgate sets to base seed + sample index.
    pub fn seed(&self) -> i64 {
        self.body["seed"].as_i64().unwrap_or(-1)
    }
}

type Script = dyn Fn(&Seen) -> Reply + Send + Sync;

struct State {
    script: Box<Script>,
    seen: Mutex<Vec<Arc<Seen>>>,
    /// Requests seen per body (by hash), for `Seen::attempt` in constant time.
    attempts: Mutex<HashMap<u64, usize>>,
}

/// A running fake server; stops when dropped.
pub struct FakeServer {
    /// OpenAI base URL (`http://127.0.0.1:PORT/v1`).
    pub base_url: String,
    /// Bedrock endpoint URL (`http://127.0.0.1:PORT`).
    pub endpoint: String,
    state: Arc<State>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl FakeServer {
    /// Start a server that answers each request with `script(request)`.
    pub fn start(script: impl Fn(&Seen) -> Reply + Send + Sync + 'static) -> FakeServer {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let state = Arc::new(State {
            script: Box::new(script),
            seen: Mutex::new(Vec::new()),
            attempts: Mutex::new(HashMap::new()),
        });
        let listener = runtime.block_on(TcpListener::bind("127.0.0.1:0")).expect("bind");
        let address = listener.local_addr().expect("address");
        let accept_state = Arc::clone(&state);
        runtime.spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let _ = stream.set_nodelay(true);
                let state = Arc::clone(&accept_state);
                tokio::spawn(async move {
                    let _ = serve(stream, state).await;
                });
            }
        });
        FakeServer {
            base_url: format!("http://{address}/v1"),
            endpoint: format!("http://{address}"),
            state,
            runtime: Some(runtime),
        }
    }

    /// Every request seen so far, in arrival order.
    pub fn seen(&self) -> Vec<Seen> {
        self.state
            .seen
            .lock()
            .expect("lock")
            .iter()
            .map(|s| Seen::clone(s))
            .collect()
    }

    pub fn request_count(&self) -> usize {
        self.state.seen.lock().expect("lock").len()
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// A complete `chat.completion` body with one choice.
pub fn completion(content: &str, model: &str) -> Value {
    json!({
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": 1732350000,
        "model": model,
        "system_fingerprint": "fp_fake",
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": content, "refusal": null},
            "logprobs": null,
            "finish_reason": "stop"
        }],
        "usage": {"prompt_tokens": 40, "completion_tokens": 7, "total_tokens": 47}
    })
}

/// A `chat.completion` whose message calls tools (arguments travel as a string of JSON).
pub fn tool_completion(calls: &[(String, Value)], model: &str) -> Value {
    let calls: Vec<Value> = calls
        .iter()
        .enumerate()
        .map(|(index, (name, arguments))| {
            json!({"id": format!("call_{index}"), "type": "function",
                   "function": {"name": name, "arguments": arguments.to_string()}})
        })
        .collect();
    let mut body = completion("", model);
    body["choices"][0]["message"] = json!({"role": "assistant", "content": null, "refusal": null, "tool_calls": calls});
    body["choices"][0]["finish_reason"] = json!("tool_calls");
    body
}

/// A Converse response whose message holds `toolUse` blocks.
pub fn converse_tool_output(calls: &[(String, Value)]) -> Value {
    let blocks: Vec<Value> = calls
        .iter()
        .enumerate()
        .map(|(index, (name, input))| {
            json!({"toolUse": {"toolUseId": format!("tooluse_{index}"), "name": name, "input": input}})
        })
        .collect();
    json!({
        "output": {"message": {"role": "assistant", "content": blocks}},
        "stopReason": "tool_use",
        "usage": {"inputTokens": 40, "outputTokens": 7, "totalTokens": 47},
        "metrics": {"latencyMs": 5}
    })
}

/// A complete Converse response. When the request forces a tool (promptgate's way of asking for
/// a schema), the answer comes back as that tool's input, as a model that obeys would send it.
pub fn converse_output(content: &str, request: &Value) -> Value {
    let forced = request["toolConfig"]["toolChoice"]["tool"]["name"].as_str();
    let block = match (forced, serde_json::from_str::<Value>(content)) {
        (Some(name), Ok(input)) => json!({"toolUse": {"toolUseId": "tooluse_fake", "name": name, "input": input}}),
        _ => json!({"text": content}),
    };
    json!({
        "output": {"message": {"role": "assistant", "content": [block]}},
        "stopReason": if forced.is_some() { "tool_use" } else { "end_turn" },
        "usage": {"inputTokens": 40, "outputTokens": 7, "totalTokens": 47},
        "metrics": {"latencyMs": 5}
    })
}

/// Decode %XX escapes (smithy percent-encodes the model id label: `:` arrives as `%3A`).
pub fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        if bytes[index] == b'%' && index + 2 < bytes.len() {
            if let Ok(byte) = u8::from_str_radix(&text[index + 1..index + 3], 16) {
                out.push(byte);
                index += 3;
                continue;
            }
        }
        out.push(bytes[index]);
        index += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The request line and headers of the next request on a connection: (method, path, headers
/// by lower-case name); `None` when the client closed it.
pub async fn read_head(
    reader: &mut BufReader<TcpStream>,
) -> std::io::Result<Option<(String, String, HashMap<String, String>)>> {
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).await? == 0 {
        return Ok(None);
    }
    let mut words = request_line.split_whitespace();
    let method = words.next().unwrap_or_default().to_string();
    let path = words.next().unwrap_or_default().to_string();
    let mut headers = HashMap::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).await?;
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_string());
        }
    }
    Ok(Some((method, path, headers)))
}

async fn serve(stream: TcpStream, state: Arc<State>) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream);
    loop {
        let Some((_, path, headers)) = read_head(&mut reader).await? else {
            return Ok(());
        };
        let length: usize = headers.get("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
        let mut body = vec![0; length];
        reader.read_exact(&mut body).await?;
        let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let attempt = {
            let mut attempts = state.attempts.lock().expect("lock");
            let mut hasher = std::collections::hash_map::DefaultHasher::new();
            // Canonical form: the AWS SDK writes JSON object keys in a different order each
            // time (its documents are hash maps), so raw bytes would not match across retries.
            std::hash::Hash::hash(&promptgate::digest::canonical_json(&body), &mut hasher);
            let count = attempts.entry(std::hash::Hasher::finish(&hasher)).or_insert(0);
            *count += 1;
            *count - 1
        };
        let seen = {
            let mut log = state.seen.lock().expect("lock");
            let seen = Arc::new(Seen {
                path,
                headers,
                body,
                attempt,
                at: Instant::now(),
            });
            log.push(Arc::clone(&seen));
            seen
        };
        let mut reply = if seen.path.ends_with("/chat/completions")
            || seen.is_bedrock() && seen.path.ends_with("/converse")
        {
            (state.script)(&seen)
        } else {
            Reply::Raw {
                status: 404,
                body: json!({"error": {"message": "not found", "type": "invalid_request_error", "param": null, "code": null}}).to_string(),
                headers: vec![],
            }
        };
        while let Reply::Delay(wait, inner) = reply {
            tokio::time::sleep(wait).await;
            reply = *inner;
        }
        let model = seen.model_id();
        let (status, body, extra) = match reply {
            Reply::Content(text) if seen.is_bedrock() => (
                200,
                converse_output(&text, &seen.body).to_string(),
                vec![("x-amzn-requestid".to_string(), "fake-request".to_string())],
            ),
            Reply::Content(text) => (200, completion(&text, &model).to_string(), vec![]),
            Reply::ToolCalls(calls) if seen.is_bedrock() => (200, converse_tool_output(&calls).to_string(), vec![]),
            Reply::ToolCalls(calls) => (200, tool_completion(&calls, &model).to_string(), vec![]),
            Reply::Raw { status, body, headers } => (status, body, headers),
            Reply::Garbled => (
                200,
                "{\"id\": \"chatcmpl-x\", \"choices\": [{\"mess".to_string(),
                vec![],
            ),
            Reply::Reset => {
                let stream = reader.into_inner();
                // Linger 0 makes close send RST at once; with a zero timeout it cannot block.
                #[allow(deprecated)]
                stream.set_linger(Some(Duration::ZERO))?;
                drop(stream);
                return Ok(());
            }
            Reply::Delay(..) => unreachable!("delays are unwrapped above"),
            Reply::Endless => {
                let stream = reader.get_mut();
                stream
                    .write_all(
                        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n",
                    )
                    .await?;
                let chunk = format!("{:x}\r\n{}\r\n", 65536, " ".repeat(65536));
                let started = Instant::now();
                for _ in 0..4096 {
                    if started.elapsed() > Duration::from_secs(30) {
                        break;
                    }
                    stream.write_all(chunk.as_bytes()).await?;
                }
                return Ok(());
            }
        };
        let mut head = format!(
            "HTTP/1.1 {status} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nx-request-id: req_fake\r\n",
            reason(status),
            body.len()
        );
        for (name, value) in extra {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        // One write: head and body in separate segments would meet the client's delayed ACK
        // (Nagle), adding ~40 ms to every answer.
        head.push_str(&body);
        let stream = reader.get_mut();
        stream.write_all(head.as_bytes()).await?;
        stream.flush().await?;
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        408 => "Request Timeout",
        424 => "Failed Dependency",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Status",
    }
}
