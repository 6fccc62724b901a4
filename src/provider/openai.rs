//! OpenAI Chat Completions through async-openai, for any compatible server (OpenAI, vLLM,
//! llama.cpp's server, Ollama).
//!
//! async-openai 0.43 retries 429 and 5xx by itself and drops response headers on errors. We
//! replace its HTTP service with `FailureCapture`, which performs the request once and turns
//! every non-2xx answer into an error that keeps the status, `Retry-After` and body, so that
//! promptgate's own retry loop (`retry.rs`) is the only one and can honour the server.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use async_openai::config::OpenAIConfig;
use async_openai::error::OpenAIError;
use async_openai::middleware::HttpRequestFactory;
use async_openai::types::chat::CreateChatCompletionResponse;
use async_openai::Client;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{json, Map, Value};

use super::calls::CallConfig;
use super::retry::RetryPolicy;
use super::{
    error_chain, parse_retry_after, parse_retry_after_ms, FailureKind, ProviderError, Request, Response, ToolCall,
    Usage,
};
use crate::env::EnvVars;
use crate::error::Error;
use crate::excerpt::excerpt;
use crate::limits;
use crate::model_version::ModelVersion;
use crate::prompt::ToolChoice;

/// The public OpenAI endpoint, used when neither the config nor `OPENAI_BASE_URL` names one.
pub const DEFAULT_BASE_URL: &str = "https://api.openai.com/v1";

/// The settings of a `[providers.NAME]` table of kind `openai`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpenAiConfig {
    /// Base URL including `/v1`. Unset: `OPENAI_BASE_URL`, then the OpenAI API.
    pub base_url: Option<String>,
    /// The environment variable that holds the API key (never the key itself).
    #[serde(default = "default_api_key_env")]
    pub api_key_env: String,
    /// How a response JSON schema is sent.
    #[serde(default = "default_response_format")]
    pub response_format: ResponseFormatMode,
    /// The body field that carries the model's `max_tokens`.
    #[serde(default)]
    pub token_limit: TokenLimitField,
}

fn default_api_key_env() -> String {
    "OPENAI_API_KEY".to_string()
}
fn default_response_format() -> ResponseFormatMode {
    ResponseFormatMode::JsonSchema
}

impl OpenAiConfig {
    /// Form checks of these keys: `(key, message)` of the first problem.
    pub(super) fn check(&self) -> Result<(), (&'static str, String)> {
        if let Some(url) = &self.base_url {
            limits::check_url(url).map_err(|message| ("base_url", message))?;
        }
        let name = &self.api_key_env;
        let variable =
            !name.is_empty() && name.len() <= 256 && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !variable {
            return Err((
                "api_key_env",
                "must name an environment variable (letters, digits and `_`), not hold a key".into(),
            ));
        }
        Ok(())
    }
}

/// How a response JSON schema is sent to an OpenAI-compatible server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ResponseFormatMode {
    /// `{"type": "json_schema", "json_schema": {...}}`: OpenAI, vLLM, Ollama.
    JsonSchema,
    /// `{"type": "json_object", "schema": {...}}`: llama-cpp-python's server, which rejects
    /// `json_schema` with HTTP 500 but constrains decoding with this form.
    JsonObjectSchema,
    /// Do not send the schema; the prompt alone asks for the format.
    None,
}

/// Which field of an OpenAI-compatible request limits the answer's length.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenLimitField {
    /// `max_tokens`: what every compatible server (vLLM, llama.cpp, Ollama) reads.
    #[default]
    MaxTokens,
    /// `max_completion_tokens`: what OpenAI's reasoning models (o-series, GPT-5) require; they
    /// reject `max_tokens`.
    MaxCompletionTokens,
}

/// A client for one `[providers.NAME]` table of kind `openai`.
#[derive(Debug)]
pub struct OpenAiProvider {
    client: Client<OpenAIConfig>,
    base_url: String,
    response_format: ResponseFormatMode,
    token_limit: TokenLimitField,
    policy: RetryPolicy,
}

impl OpenAiProvider {
    /// Build the client; the key comes from the environment variable the config names.
    pub fn new(name: &str, config: &OpenAiConfig, calls: &CallConfig, env: &EnvVars) -> Result<OpenAiProvider, Error> {
        let base_url = OpenAiProvider::base_url_of(config, env);
        let client = client(
            name,
            config,
            &base_url,
            calls.timeout_secs,
            calls.max_response_bytes,
            env,
        )?;
        Ok(OpenAiProvider {
            client,
            base_url,
            response_format: config.response_format,
            token_limit: config.token_limit,
            policy: calls.retry_policy(),
        })
    }

    /// The base URL a provider table names: its own, else `OPENAI_BASE_URL`, else OpenAI's.
    pub fn base_url_of(config: &OpenAiConfig, env: &EnvVars) -> String {
        config
            .base_url
            .clone()
            .or_else(|| env.get("OPENAI_BASE_URL").map(str::to_string))
            .unwrap_or_else(|| DEFAULT_BASE_URL.to_string())
            .trim_end_matches('/')
            .to_string()
    }

    /// The base URL requests go to.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// The JSON body of a chat completion request.
    pub fn request_body(&self, request: &Request) -> Value {
        body(self.response_format, self.token_limit, request)
    }

    /// The JSON body of a chat completion request to a provider with these settings (what a
    /// batch line carries).
    pub fn body_for(config: &OpenAiConfig, request: &Request) -> Value {
        body(config.response_format, config.token_limit, request)
    }

    /// One attempt, no retries.
    pub async fn attempt(&self, request: &Request) -> Result<Response, ProviderError> {
        let body = self.request_body(request);
        let started = Instant::now();
        // The body is kept as received (RawValue): it is stored verbatim and parsed once.
        let raw: Box<RawValue> = self.client.chat().create_byot(body).await.map_err(classify)?;
        let latency_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        parse_completion(raw.get(), latency_ms)
    }
}

/// The JSON body of a chat completion request.
fn body(response_format: ResponseFormatMode, token_limit: TokenLimitField, request: &Request) -> Value {
    {
        let mut body = Map::new();
        body.insert("model".into(), json!(request.model));
        body.insert("messages".into(), json!(request.prompt.messages));
        let params = &request.params;
        if let Some(t) = params.temperature {
            body.insert("temperature".into(), json!(t));
        }
        if let Some(p) = params.top_p {
            body.insert("top_p".into(), json!(p));
        }
        // `max_tokens` unless the provider says otherwise: every compatible server reads it, but
        // OpenAI's reasoning models accept only `max_completion_tokens`.
        if let Some(m) = params.max_tokens {
            let field = match token_limit {
                TokenLimitField::MaxTokens => "max_tokens",
                TokenLimitField::MaxCompletionTokens => "max_completion_tokens",
            };
            body.insert(field.into(), json!(m));
        }
        if let Some(s) = params.seed {
            body.insert("seed".into(), json!(s));
        }
        if let Some(schema) = &request.prompt.response_schema {
            let format = match response_format {
                ResponseFormatMode::JsonSchema => Some(json!({
                    "type": "json_schema",
                    "json_schema": {"name": schema.name, "schema": schema.schema, "strict": schema.strict},
                })),
                ResponseFormatMode::JsonObjectSchema => Some(json!({"type": "json_object", "schema": schema.schema})),
                ResponseFormatMode::None => None,
            };
            if let Some(format) = format {
                body.insert("response_format".into(), format);
            }
        }
        if !request.prompt.tools.is_empty() {
            let tools: Vec<Value> = request
                .prompt
                .tools
                .iter()
                .map(|tool| {
                    let mut function = json!({"name": tool.name, "parameters": tool.parameters});
                    if let Some(description) = &tool.description {
                        function["description"] = json!(description);
                    }
                    json!({"type": "function", "function": function})
                })
                .collect();
            body.insert("tools".into(), Value::Array(tools));
            let choice = match &request.prompt.tool_choice {
                None | Some(ToolChoice::Auto) => json!("auto"),
                Some(ToolChoice::Required) => json!("required"),
                Some(ToolChoice::Tool(name)) => json!({"type": "function", "function": {"name": name}}),
            };
            body.insert("tool_choice".into(), choice);
        }
        body.insert("stream".into(), json!(false));
        Value::Object(body)
    }
}

/// An async-openai client for `base_url` that makes one attempt per call and reads at most
/// `max_body_bytes` of a body (see `FailureCapture`).
pub(super) fn client(
    name: &str,
    config: &OpenAiConfig,
    base_url: &str,
    timeout_secs: f64,
    max_body_bytes: u64,
    env: &EnvVars,
) -> Result<Client<OpenAIConfig>, Error> {
    // A local server needs no key; a hosted one answers 401, reported with a hint.
    let api_key = env.get(&config.api_key_env).unwrap_or_default().to_string();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs_f64(timeout_secs))
        .build()
        .map_err(|e| Error::usage(format!("provider `{name}`: failed to build the HTTP client: {e}")))?;
    let openai_config = OpenAIConfig::new().with_api_base(base_url).with_api_key(api_key);
    Ok(Client::with_config(openai_config).with_http_service(FailureCapture {
        http,
        max_body_bytes: usize::try_from(max_body_bytes).unwrap_or(usize::MAX),
    }))
}

/// Turn a completion body into a [`Response`], checking it against async-openai's types.
pub fn parse_completion(raw_body: &str, latency_ms: u64) -> Result<Response, ProviderError> {
    let not_a_completion = |e: serde_json::Error| {
        ProviderError::new(
            FailureKind::BadResponse,
            format!("not a chat completion: {e}: {}", excerpt(raw_body, 200)),
        )
    };
    let typed: CreateChatCompletionResponse = serde_json::from_str(raw_body).map_err(not_a_completion)?;
    let Some(choice) = typed.choices.first() else {
        return Err(ProviderError::new(
            FailureKind::BadResponse,
            "the completion has no choices",
        ));
    };
    let text = choice.message.content.clone();
    // Tool calls are read from the JSON itself (arguments arrive as a string of JSON); most
    // answers have none, so the second parse is only paid when there are some.
    let raw: Value = if choice.message.tool_calls.is_some() {
        serde_json::from_str(raw_body).map_err(not_a_completion)?
    } else {
        Value::Null
    };
    let tool_calls = raw["choices"][0]["message"]["tool_calls"]
        .as_array()
        .map(|calls| {
            calls
                .iter()
                .filter_map(|call| {
                    let function = call.get("function")?;
                    let name = function.get("name")?.as_str()?.to_string();
                    let arguments = match function.get("arguments") {
                        Some(Value::String(text)) => {
                            serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.clone()))
                        }
                        Some(other) => other.clone(),
                        None => Value::Null,
                    };
                    Some(ToolCall { name, arguments })
                })
                .collect()
        })
        .unwrap_or_default();
    let usage = typed.usage.as_ref().map(|u| Usage {
        input_tokens: u64::from(u.prompt_tokens),
        output_tokens: u64::from(u.completion_tokens),
    });
    Ok(Response {
        text,
        tool_calls,
        raw_body: raw_body.to_string(),
        usage,
        latency_ms,
        version: resolved_version(&typed),
    })
}

/// The resolved model and backend fingerprint of a completion. async-openai marks
/// `system_fingerprint` deprecated because OpenAI no longer documents it, but OpenAI and other
/// servers still send it, and it is the one sign of a backend change behind the same snapshot.
#[allow(deprecated)]
fn resolved_version(completion: &CreateChatCompletionResponse) -> Option<ModelVersion> {
    ModelVersion::new(&completion.model, completion.system_fingerprint.as_deref())
}

/// A non-2xx HTTP answer, with what the retry loop needs from it.
#[derive(Debug, thiserror::Error)]
#[error("HTTP {status}: {body}")]
struct HttpFailure {
    status: u16,
    retry_after: Option<Duration>,
    body: String,
}

/// A response body over the provider's `max_response_bytes`: read no further.
#[derive(Debug, thiserror::Error)]
#[error("the response body is larger than max_response_bytes = {limit} (read {read} bytes); it is not cached")]
struct Oversized {
    limit: usize,
    read: usize,
}

/// Most bytes of an error body kept for its message (the message shows an excerpt anyway).
const MAX_ERROR_BODY_BYTES: usize = 64 * 1024;

/// Read a body, at most `limit` bytes: `Err(Some(n))` once more than `limit` arrive (or the
/// declared length says they would), `Err(None)` when the connection fails.
async fn read_bounded(response: &mut reqwest::Response, limit: usize) -> Result<Vec<u8>, ReadFailure> {
    if let Some(length) = response.content_length() {
        if length > limit as u64 {
            return Err(ReadFailure::TooLarge(usize::try_from(length).unwrap_or(usize::MAX)));
        }
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(ReadFailure::Http)? {
        if body.len() + chunk.len() > limit {
            return Err(ReadFailure::TooLarge(body.len() + chunk.len()));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

enum ReadFailure {
    TooLarge(usize),
    Http(reqwest::Error),
}

/// The tower service async-openai sends requests through: one attempt, failures kept whole,
/// bodies read up to a bound.
#[derive(Clone, Debug)]
struct FailureCapture {
    http: reqwest::Client,
    max_body_bytes: usize,
}

impl tower::Service<HttpRequestFactory> for FailureCapture {
    type Response = reqwest::Response;
    type Error = OpenAIError;
    type Future = Pin<Box<dyn Future<Output = Result<reqwest::Response, OpenAIError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), OpenAIError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, factory: HttpRequestFactory) -> Self::Future {
        let http = self.http.clone();
        let limit = self.max_body_bytes;
        Box::pin(async move {
            let request = factory.build().await?;
            let mut response = http.execute(request).await.map_err(OpenAIError::Reqwest)?;
            if response.status().is_success() {
                // Read here, bounded, and hand async-openai a response over the bytes read: it
                // would otherwise buffer whatever the server sends, for as long as it sends.
                let body = match read_bounded(&mut response, limit).await {
                    Ok(body) => body,
                    Err(ReadFailure::TooLarge(read)) => {
                        return Err(OpenAIError::Boxed(Box::new(Oversized { limit, read })))
                    }
                    Err(ReadFailure::Http(e)) => return Err(OpenAIError::Reqwest(e)),
                };
                let mut rebuilt = http::Response::builder()
                    .status(response.status())
                    .version(response.version());
                if let Some(headers) = rebuilt.headers_mut() {
                    *headers = response.headers().clone();
                }
                let rebuilt = rebuilt.body(body).map_err(|e| OpenAIError::Boxed(Box::new(e)))?;
                return Ok(reqwest::Response::from(rebuilt));
            }
            let status = response.status().as_u16();
            let headers = response.headers();
            // `retry-after-ms` (sent by some OpenAI-compatible gateways) is more precise.
            let retry_after = headers
                .get("retry-after-ms")
                .and_then(|v| v.to_str().ok())
                .and_then(parse_retry_after_ms)
                .or_else(|| {
                    headers
                        .get("retry-after")
                        .and_then(|v| v.to_str().ok())
                        .and_then(parse_retry_after)
                });
            let body = match read_bounded(&mut response, MAX_ERROR_BODY_BYTES).await {
                Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
                Err(ReadFailure::TooLarge(read)) => format!("(an error body of {read} bytes or more, not read)"),
                Err(ReadFailure::Http(e)) => format!("(the error body could not be read: {e})"),
            };
            Err(OpenAIError::Boxed(Box::new(HttpFailure {
                status,
                retry_after,
                body,
            })))
        })
    }
}

/// Classify an async-openai error.
pub(super) fn classify(error: OpenAIError) -> ProviderError {
    match error {
        OpenAIError::Boxed(boxed) => match boxed.downcast::<HttpFailure>() {
            Ok(failure) => classify_status(failure.status, failure.retry_after, &failure.body),
            Err(other) => match other.downcast::<Oversized>() {
                Ok(oversized) => ProviderError::new(FailureKind::BadResponse, oversized.to_string()),
                Err(other) => ProviderError::new(FailureKind::Connection, other.to_string()),
            },
        },
        OpenAIError::ApiError(api) => classify_status(api.status_code.as_u16(), None, &api.api_error.message),
        OpenAIError::Reqwest(e) => {
            let kind = if e.is_timeout() {
                FailureKind::Timeout
            } else if e.is_decode() {
                FailureKind::BadResponse
            } else {
                FailureKind::Connection
            };
            ProviderError::new(kind, error_chain(&e))
        }
        OpenAIError::JSONDeserialize(e, body) => ProviderError::new(
            FailureKind::BadResponse,
            format!("unreadable body ({e}): {}", excerpt(&body, 200)),
        ),
        other => ProviderError::new(FailureKind::BadResponse, other.to_string()),
    }
}

fn classify_status(status: u16, retry_after: Option<Duration>, body: &str) -> ProviderError {
    let (message, error_type, code) = match serde_json::from_str::<Value>(body) {
        Ok(value) => (
            value["error"]["message"]
                .as_str()
                .map_or_else(|| excerpt(body, 200), str::to_string),
            value["error"]["type"].as_str().map(str::to_string),
            value["error"]["code"].as_str().map(str::to_string),
        ),
        Err(_) => (excerpt(body, 200), None, None),
    };
    let quota = error_type.as_deref() == Some("insufficient_quota") || code.as_deref() == Some("insufficient_quota");
    let kind = match status {
        429 if quota => FailureKind::Client,
        429 => FailureKind::RateLimit,
        408 | 500..=599 => FailureKind::Server,
        _ => FailureKind::Client,
    };
    let mut message = format!("HTTP {status}: {message}");
    if status == 401 {
        message.push_str(" (set the API key in the environment variable named by the provider's `api_key_env`)");
    }
    ProviderError {
        kind,
        message,
        status: Some(status),
        retry_after,
    }
}

impl super::Api for OpenAiProvider {
    fn endpoint(&self) -> String {
        self.base_url.clone()
    }

    fn retry_policy(&self) -> RetryPolicy {
        self.policy
    }

    fn complete_once<'a>(&'a self, request: &'a Request) -> super::BoxFuture<'a, Result<Response, ProviderError>> {
        Box::pin(self.attempt(request))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_classified() {
        let rate = classify_status(
            429,
            Some(Duration::from_secs(1)),
            r#"{"error":{"message":"slow down","type":"requests","param":null,"code":"rate_limit_exceeded"}}"#,
        );
        assert_eq!(rate.kind, FailureKind::RateLimit);
        assert_eq!(rate.retry_after, Some(Duration::from_secs(1)));
        assert!(rate.message.contains("slow down"));
        let quota = classify_status(
            429,
            None,
            r#"{"error":{"message":"You exceeded your current quota","type":"insufficient_quota","param":null,"code":"insufficient_quota"}}"#,
        );
        assert_eq!(quota.kind, FailureKind::Client);
        assert_eq!(
            classify_status(503, None, "<html>busy</html>").kind,
            FailureKind::Server
        );
        assert_eq!(classify_status(400, None, "{}").kind, FailureKind::Client);
        assert!(classify_status(401, None, "{}").message.contains("api_key_env"));
    }

    #[test]
    fn parses_content_and_tool_calls() {
        let body = json!({
            "id": "chatcmpl-1", "object": "chat.completion", "created": 1732350000, "model": "m",
            "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
                "role": "assistant", "content": null,
                "tool_calls": [{"id": "call_1", "type": "function",
                    "function": {"name": "listAutomaticSuppressionRules", "arguments": "{}"}}]}}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12}
        });
        let response = parse_completion(&body.to_string(), 5).unwrap();
        assert_eq!(response.text, None);
        assert_eq!(response.tool_calls[0].name, "listAutomaticSuppressionRules");
        assert_eq!(response.tool_calls[0].arguments, json!({}));
        assert_eq!(response.usage.unwrap().output_tokens, 2);
    }

    #[test]
    fn wrong_shapes_are_bad_responses() {
        let err = parse_completion(r#"{"hello": "world"}"#, 1).unwrap_err();
        assert_eq!(err.kind, FailureKind::BadResponse);
        let err = parse_completion(
            &json!({"id": "x", "object": "chat.completion", "created": 1, "model": "m", "choices": []}).to_string(),
            1,
        )
        .unwrap_err();
        assert_eq!(err.kind, FailureKind::BadResponse);
    }
}
