//! Model providers: the request promptgate sends, the response it keeps, and how a failure is
//! classified. One file per wire protocol.

pub mod bedrock;
pub mod bedrock_batch;
mod calls;
mod config;
mod failure;
pub mod openai;
pub mod openai_batch;
pub mod retry;

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::env::EnvVars;
use crate::error::Error;
use crate::prompt::RenderedPrompt;
pub use calls::CallConfig;
pub use config::{ApiConfig, ProviderConfig, ProviderKind, TableError};
pub use failure::{FailureKind, ProviderError};
use retry::{Attempted, RetryPolicy};

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
    /// A sampling epoch: part of the cache key, never sent. Answers of another epoch (or of
    /// none) are not served, and stay in the cache (`promptgate drift`).
    pub epoch: Option<Arc<str>>,
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
    /// The response body as received (JSON), for the cache to keep; empty in an answer read
    /// from the cache, since nothing after the cache reads it.
    pub raw_body: String,
    pub usage: Option<Usage>,
    pub latency_ms: u64,
    /// The version the provider says answered (see [`crate::model_version`]).
    pub version: Option<crate::model_version::ModelVersion>,
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
            version: None,
        }
    }
}

/// Consecutive connection failures, with no answer ever received, after which a provider is
/// taken for unreachable: a closed port fails every attempt of every sample otherwise (1,500
/// attempts for 60 cases × 5 samples). Rate limits and 5xx are answers, and never count.
pub const UNREACHABLE_AFTER: u32 = 6;

/// Whether a provider has ever answered, and how many connection failures came in a row.
#[derive(Debug, Default)]
pub struct Reachability {
    answered: AtomicBool,
    failures_in_a_row: AtomicU32,
    first_error: Mutex<Option<String>>,
}

impl Reachability {
    fn observe<T>(&self, result: &Result<T, ProviderError>) {
        match result {
            Err(e) if matches!(e.kind, FailureKind::Connection) => {
                if let Ok(mut first) = self.first_error.lock() {
                    first.get_or_insert_with(|| e.message.clone());
                }
                self.failures_in_a_row.fetch_add(1, Ordering::SeqCst);
            }
            // Anything that came from the server shows it is there.
            _ => {
                self.answered.store(true, Ordering::SeqCst);
                self.failures_in_a_row.store(0, Ordering::SeqCst);
            }
        }
    }

    /// The first connection error, once the provider is taken for unreachable.
    pub fn unreachable(&self) -> Option<String> {
        if self.answered.load(Ordering::SeqCst) || self.failures_in_a_row.load(Ordering::SeqCst) < UNREACHABLE_AFTER {
            return None;
        }
        Some(
            self.first_error
                .lock()
                .ok()
                .and_then(|first| first.clone())
                .unwrap_or_default(),
        )
    }
}

/// A configured provider client.
#[derive(Debug)]
pub struct Provider {
    api: Box<dyn Api>,
    /// Where calls go, for messages: a base URL, or a Bedrock endpoint or region.
    pub endpoint: String,
    pub reachability: Reachability,
}

/// A future a provider returns, boxed so that providers can be trait objects.
pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// What a provider's wire protocol does: one attempt of a call, and the retry policy the
/// engine wraps around it. A provider implements this in its own file (`openai.rs`,
/// `bedrock.rs`); the engine knows nothing else of it.
pub trait Api: Send + Sync + std::fmt::Debug {
    /// Where calls go, for messages: a base URL, or a Bedrock endpoint or region.
    fn endpoint(&self) -> String;
    /// How failed attempts are retried.
    fn retry_policy(&self) -> RetryPolicy;
    /// One attempt, no retries; a failure is classified.
    fn complete_once<'a>(&'a self, request: &'a Request) -> BoxFuture<'a, Result<Response, ProviderError>>;
}

impl Provider {
    /// Build the client for a `[providers.NAME]` table.
    pub async fn new(name: &str, config: &ProviderConfig, env: &EnvVars) -> Result<Provider, Error> {
        let api: Box<dyn Api> = match &config.api {
            ApiConfig::Openai(own) => Box::new(openai::OpenAiProvider::new(name, own, &config.calls, env)?),
            ApiConfig::Bedrock(own) => Box::new(bedrock::BedrockProvider::new(own, &config.calls, env).await),
        };
        Ok(Provider {
            endpoint: api.endpoint(),
            api,
            reachability: Reachability::default(),
        })
    }

    /// The retry policy of this provider.
    pub fn retry_policy(&self) -> RetryPolicy {
        self.api.retry_policy()
    }

    /// One call with retries; none once the provider is known to be unreachable.
    pub async fn complete(&self, request: &Request) -> Attempted<Response> {
        self.complete_releasing(request, (), || async {}).await
    }

    /// [`Provider::complete`], holding a concurrency slot only while an attempt is in flight:
    /// the first attempt runs on `first`, and each retry waits without a slot and then takes
    /// one from `acquire` (see `retry::with_retries_releasing`).
    pub async fn complete_releasing<S, A, AFut>(&self, request: &Request, first: S, acquire: A) -> Attempted<Response>
    where
        A: FnMut() -> AFut,
        AFut: std::future::Future<Output = S>,
    {
        let policy = self.retry_policy();
        let unreachable = || {
            ProviderError::new(
                FailureKind::NotAttempted,
                format!("not attempted: {} is unreachable", self.endpoint),
            )
        };
        retry::with_retries_releasing(policy, first, acquire, || async {
            if self.reachability.unreachable().is_some() {
                return Err(unreachable());
            }
            let result = self.api.complete_once(request).await;
            self.reachability.observe(&result);
            result
        })
        .await
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

/// The longest wait a server can ask for; the retry policy's `retry_max_ms` caps it further.
/// A day is beyond any real rate limit, and far from where `Duration` arithmetic overflows.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(86_400);

/// Parse a `Retry-After` value: delta-seconds (possibly fractional) or an HTTP date. Any number
/// a hostile server sends (`1e300`, `99999999999999999999`, `inf`) is clamped, never a panic.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if value.len() > 64 {
        return None;
    }
    if let Ok(seconds) = value.parse::<f64>() {
        return seconds_to_wait(seconds);
    }
    let date = jiff::fmt::rfc2822::parse(value).ok()?;
    let now = jiff::Timestamp::now();
    let wait = date.timestamp().duration_since(now);
    Some(Duration::try_from(wait).unwrap_or(Duration::ZERO).min(MAX_RETRY_AFTER))
}

/// Parse a `retry-after-ms` value (sent by some OpenAI-compatible gateways, and Bedrock's
/// `x-amz-retry-after`): milliseconds, clamped like [`parse_retry_after`].
pub fn parse_retry_after_ms(value: &str) -> Option<Duration> {
    let value = value.trim();
    if value.len() > 64 {
        return None;
    }
    seconds_to_wait(value.parse::<f64>().ok()? / 1000.0)
}

fn seconds_to_wait(seconds: f64) -> Option<Duration> {
    if seconds.is_nan() || seconds < 0.0 {
        return None;
    }
    Some(Duration::try_from_secs_f64(seconds).map_or(MAX_RETRY_AFTER, |d| d.min(MAX_RETRY_AFTER)))
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
    fn hostile_retry_after_values_are_clamped_not_panics() {
        for value in ["1e300", "99999999999999999999", "inf", "1.8e19", "18446744073709551616"] {
            assert_eq!(parse_retry_after(value), Some(MAX_RETRY_AFTER), "{value}");
            assert_eq!(parse_retry_after_ms(value), Some(MAX_RETRY_AFTER), "{value}");
        }
        for value in ["NaN", "-inf", "-0.5", "", "1 2", &"9".repeat(100)] {
            assert_eq!(parse_retry_after(value), None, "{value}");
            assert_eq!(parse_retry_after_ms(value), None, "{value}");
        }
        assert_eq!(parse_retry_after_ms("250"), Some(Duration::from_millis(250)));
        assert_eq!(
            parse_retry_after("Thu, 01 Jan 2099 00:00:00 GMT"),
            Some(MAX_RETRY_AFTER)
        );
    }
}
