//! Model providers: the request promptgate sends, the response it keeps, and how a failure is
//! classified. One file per wire protocol.

pub mod bedrock;
pub mod openai;

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::config::{ModelConfig, ProviderConfig, ProviderKind};
use crate::env::EnvVars;
use crate::error::Error;
use crate::prompt::RenderedPrompt;
use crate::retry::{self, Attempted, RetryPolicy};

/// Sampling parameters sent with a request (and part of its cache key).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct SamplingParams {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f32>,
    /// The seed of this sample (the model's base seed + sample index).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seed: Option<i64>,
}

impl SamplingParams {
    /// The parameters of sample `sample_index` of `model`; a suite's `max_tokens` wins over the
    /// model's.
    pub fn for_sample(model: &ModelConfig, max_tokens: Option<u32>, sample_index: u32) -> SamplingParams {
        SamplingParams {
            temperature: model.temperature,
            max_tokens: max_tokens.or(model.max_tokens),
            top_p: model.top_p,
            seed: model.seed.map(|seed| seed.wrapping_add(i64::from(sample_index))),
        }
    }
}

/// One call to a model: a rendered prompt for one case and one sample index.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub provider: ProviderKind,
    /// The provider's model id.
    pub model: String,
    /// Shared by the k samples of a case.
    pub prompt: Arc<RenderedPrompt>,
    pub params: SamplingParams,
    pub sample_index: u32,
}

/// A tool (function) call in a response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolCall {
    pub name: String,
    /// Parsed arguments; a string when the model sent arguments that are not JSON.
    pub arguments: Value,
}

/// Token counts reported by the provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub input_tokens: u64,
    pub output_tokens: u64,
}

/// A successful model response, as cached.
#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    pub text: Option<String>,
    pub tool_calls: Vec<ToolCall>,
    /// The response body as received (JSON).
    pub raw_body: String,
    pub usage: Option<Usage>,
    pub latency_ms: u64,
}

impl Response {
    /// A plain text answer with nothing else known (for checks and tests).
    pub fn from_text(text: &str) -> Response {
        Response {
            text: Some(text.to_string()),
            tool_calls: Vec::new(),
            raw_body: String::new(),
            usage: None,
            latency_ms: 0,
        }
    }
}

/// Why a call failed. A failure is never graded as a wrong answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// HTTP 429 or a throttling error.
    RateLimit,
    /// HTTP 5xx or 408.
    Server,
    /// No complete answer within the per-call timeout.
    Timeout,
    /// The connection could not be made or broke.
    Connection,
    /// A 2xx answer that is not a well-formed completion.
    BadResponse,
    /// A 4xx the request itself caused (bad key, bad parameter, no quota): not retried.
    Client,
    /// `--offline` and the response is not in the cache.
    OfflineMiss,
}

impl FailureKind {
    /// The snake_case name used in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::RateLimit => "rate_limit",
            FailureKind::Server => "server",
            FailureKind::Timeout => "timeout",
            FailureKind::Connection => "connection",
            FailureKind::BadResponse => "bad_response",
            FailureKind::Client => "client",
            FailureKind::OfflineMiss => "offline_miss",
        }
    }
}

/// A failed call, classified.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{} error: {message}", kind.as_str())]
pub struct ProviderError {
    pub kind: FailureKind,
    pub message: String,
    pub status: Option<u16>,
    /// What the server asked us to wait before the next attempt.
    pub retry_after: Option<Duration>,
}

impl ProviderError {
    /// A failure with no HTTP status and no retry hint.
    pub fn new(kind: FailureKind, message: impl Into<String>) -> ProviderError {
        ProviderError {
            kind,
            message: message.into(),
            status: None,
            retry_after: None,
        }
    }
}

/// A configured provider client.
#[derive(Debug)]
pub enum Provider {
    // Boxed: the OpenAI client is large, and providers are built once per run.
    Openai(Box<openai::OpenAiProvider>),
    Bedrock(bedrock::BedrockProvider),
}

impl Provider {
    /// Build the client for a `[providers.NAME]` table.
    pub async fn new(name: &str, config: &ProviderConfig, env: &EnvVars) -> Result<Provider, Error> {
        match config.kind {
            ProviderKind::Openai => Ok(Provider::Openai(Box::new(openai::OpenAiProvider::new(
                name, config, env,
            )?))),
            ProviderKind::Bedrock => Ok(Provider::Bedrock(bedrock::BedrockProvider::new(config, env).await)),
        }
    }

    /// The retry policy of this provider.
    pub fn retry_policy(&self) -> RetryPolicy {
        match self {
            Provider::Openai(p) => p.retry_policy(),
            Provider::Bedrock(p) => p.retry_policy(),
        }
    }

    /// One call with retries.
    pub async fn complete(&self, request: &Request) -> Attempted<Response> {
        let policy = self.retry_policy();
        match self {
            Provider::Openai(p) => retry::with_retries(policy, || p.complete_once(request)).await,
            Provider::Bedrock(p) => retry::with_retries(policy, || p.complete_once(request)).await,
        }
    }
}

/// An error and its sources on one line ("error sending request: connection reset").
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(inner) = source {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    text
}

/// Parse a `Retry-After` value: delta-seconds (possibly fractional) or an HTTP date.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<f64>() {
        return (seconds.is_finite() && seconds >= 0.0).then(|| Duration::from_secs_f64(seconds));
    }
    let date = jiff::fmt::rfc2822::parse(value).ok()?;
    let now = jiff::Timestamp::now();
    let wait = date.timestamp().duration_since(now);
    Some(Duration::try_from(wait).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_forms() {
        assert_eq!(parse_retry_after("2"), Some(Duration::from_secs(2)));
        assert_eq!(parse_retry_after(" 0.5 "), Some(Duration::from_millis(500)));
        assert_eq!(parse_retry_after("-1"), None);
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon"), None);
    }

    #[test]
    fn each_sample_gets_its_own_seed() {
        let model = ModelConfig {
            provider: "p".into(),
            model: "m".into(),
            temperature: Some(1.0),
            max_tokens: Some(96),
            top_p: None,
            seed: Some(40),
            price_input_per_million: None,
            price_output_per_million: None,
        };
        assert_eq!(SamplingParams::for_sample(&model, None, 2).seed, Some(42));
        let unseeded = ModelConfig {
            seed: None,
            ..model.clone()
        };
        assert_eq!(SamplingParams::for_sample(&unseeded, None, 2).seed, None);
        // A suite's answer length wins over the model's.
        assert_eq!(SamplingParams::for_sample(&model, None, 0).max_tokens, Some(96));
        assert_eq!(SamplingParams::for_sample(&model, Some(320), 0).max_tokens, Some(320));
    }
}
