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
    /// Not called: the run had made the calls `--max-calls` allows.
    CallLimit,
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
            FailureKind::CallLimit => "call_limit",
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

/// The longest failure message a run keeps: a server's error body is quoted into it, and a
/// server may send a long one (an HTML page, a stack trace, a request echoed back).
pub const MAX_MESSAGE_CHARS: usize = 500;

impl ProviderError {
    /// Mask `secrets` in the message, cut it at `MAX_MESSAGE_CHARS` and put it on one line
    /// (`excerpt::one_line`: it quotes the server): masked first, so that a cut can
    /// never leave the start of a secret where the mask would not know it.
    pub fn mask(&mut self, secrets: &crate::secrets::Secrets) {
        let cut = crate::excerpt::cut(secrets.mask(&self.message).into_owned(), MAX_MESSAGE_CHARS);
        self.message = crate::excerpt::into_one_line(cut);
    }

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secrets::Secrets;

    #[test]
    fn a_message_is_masked_whole_then_cut() {
        let secret = "gw-secret-value-42";
        let secrets = Secrets::from_values([secret.to_string()]);
        // The secret astride every place the cut could fall.
        for before in MAX_MESSAGE_CHARS - secret.len()..=MAX_MESSAGE_CHARS {
            let mut error = ProviderError::new(
                FailureKind::Server,
                format!("{}{secret} and {}", "é".repeat(before), "x".repeat(10_000)),
            );
            error.mask(&secrets);
            assert!(!error.message.contains("gw-secret"), "{before}: {}", error.message);
            assert!(error.message.chars().count() <= MAX_MESSAGE_CHARS + 1);
            assert!(error.message.ends_with('…'));
        }
        let mut short = ProviderError::new(FailureKind::Client, format!("HTTP 401: bad key {secret}"));
        short.mask(&secrets);
        assert_eq!(short.message, "HTTP 401: bad key ***");
    }
}
