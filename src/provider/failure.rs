//! How a call failed: the classification every provider maps its errors to, which the retry
//! loop, the tallies and the reports read.

use std::time::Duration;

use serde::{Deserialize, Serialize};

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
    /// Not attempted: the provider was found unreachable, or the run was stopped (a cache that
    /// cannot be written), before this call's turn.
    NotAttempted,
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
            FailureKind::NotAttempted => "not_attempted",
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
