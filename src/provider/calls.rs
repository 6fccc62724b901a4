//! The keys every provider table shares: how many calls, how long, how often retried, how
//! large. Each provider's client is built from them; the table's own keys live in its file.

use serde::Deserialize;

use crate::limits::{self, in_range};

/// Settings every provider shares: how many calls, how long, how often retried, how large.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallConfig {
    /// Most calls in flight to this provider at once (e.g. 1 for a local server that answers
    /// one request at a time); `--concurrency` still bounds the total.
    pub concurrency: Option<usize>,
    /// Per-call timeout in seconds.
    #[serde(default = "default_timeout_secs")]
    pub timeout_secs: f64,
    /// Attempts per call, the first included.
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// First backoff delay; doubles per attempt, with full jitter.
    #[serde(default = "default_retry_base_ms")]
    pub retry_base_ms: u64,
    /// Longest wait between attempts, `Retry-After` included.
    #[serde(default = "default_retry_max_ms")]
    pub retry_max_ms: u64,
    /// Most bytes read of one response body. A larger (or endless) answer is a failed call,
    /// never cached: a model's answer is kilobytes, and memory must not follow a server's whim.
    #[serde(default = "default_max_response_bytes")]
    pub max_response_bytes: u64,
    /// `run --batch`: the first wait between looks at a batch, doubling up to
    /// `batch_poll_max_ms`.
    #[serde(default = "default_batch_poll_ms")]
    pub batch_poll_ms: u64,
    #[serde(default = "default_batch_poll_max_ms")]
    pub batch_poll_max_ms: u64,
    /// `run --batch`: most lines (requests, records) in one batch. The default is the OpenAI
    /// Batch API's limit and Bedrock's usual quota; a smaller one for a server or an account
    /// that takes fewer.
    #[serde(default = "default_batch_max_lines")]
    pub batch_max_lines: u32,
}

fn default_batch_max_lines() -> u32 {
    limits::BATCH_LINES.1 as u32
}

fn default_batch_poll_ms() -> u64 {
    5_000
}

fn default_batch_poll_max_ms() -> u64 {
    60_000
}

/// 16 MiB: hundreds of times the longest answer a model gives in a test, far below memory.
fn default_max_response_bytes() -> u64 {
    16 * 1024 * 1024
}
fn default_timeout_secs() -> f64 {
    60.0
}
fn default_max_attempts() -> u32 {
    5
}
fn default_retry_base_ms() -> u64 {
    500
}
fn default_retry_max_ms() -> u64 {
    60_000
}

impl CallConfig {
    pub(super) fn check(&self) -> Result<(), (&'static str, String)> {
        let check = |key, result: Result<(), String>| result.map_err(|message| (key, message));
        check("timeout_secs", in_range(self.timeout_secs, limits::TIMEOUT_SECS))?;
        check(
            "max_attempts",
            in_range(u64::from(self.max_attempts), limits::MAX_ATTEMPTS),
        )?;
        check("retry_base_ms", in_range(self.retry_base_ms, limits::RETRY_MS))?;
        check("retry_max_ms", in_range(self.retry_max_ms, limits::RETRY_MS))?;
        check(
            "max_response_bytes",
            in_range(self.max_response_bytes, limits::RESPONSE_BYTES),
        )?;
        check("batch_poll_ms", in_range(self.batch_poll_ms, limits::BATCH_POLL_MS))?;
        check(
            "batch_poll_max_ms",
            in_range(self.batch_poll_max_ms, limits::BATCH_POLL_MS),
        )?;
        check(
            "batch_max_lines",
            in_range(u64::from(self.batch_max_lines), limits::BATCH_LINES),
        )?;
        if let Some(c) = self.concurrency {
            check("concurrency", in_range(c as u64, limits::CONCURRENCY))?;
        }
        Ok(())
    }

    /// The retry policy these settings describe.
    pub fn retry_policy(&self) -> super::retry::RetryPolicy {
        super::retry::RetryPolicy {
            max_attempts: self.max_attempts,
            base_delay: std::time::Duration::from_millis(self.retry_base_ms),
            max_delay: std::time::Duration::from_millis(self.retry_max_ms),
        }
    }
}
