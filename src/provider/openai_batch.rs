//! OpenAI's Batch API, which other OpenAI-compatible servers speak too: upload the requests as
//! a JSON Lines file (`POST /files`, purpose `batch`), create a batch over it (`POST /batches`),
//! poll it (`GET /batches/{id}`), and read its output and error files
//! (`GET /files/{id}/content`), whose lines come in any order and are joined on `custom_id`.
//!
//! Each call goes through the same async-openai client as a chat completion (one attempt, the
//! body read up to a bound, failures classified) and the provider's retry policy. Bodies are
//! read as plain JSON and checked field by field: a server's answer is input like any other.

use std::time::Duration;

use async_openai::config::OpenAIConfig;
use async_openai::types::files::{CreateFileRequest, FileInput, FilePurpose};
use async_openai::Client;
use serde_json::{json, Value};

use super::calls::CallConfig;
use super::openai::{classify, client, OpenAiConfig, OpenAiProvider};
use super::retry::{self, RetryPolicy};
use super::{FailureKind, ProviderError};
use crate::env::EnvVars;
use crate::error::Error;
use crate::excerpt::excerpt;

/// The largest input file uploaded: under OpenAI's 200 MB, with room for the form around it.
pub const MAX_INPUT_BYTES: usize = 190 * 1000 * 1000;
/// The largest output or error file read: 50,000 answers of up to 20 KB each.
pub const MAX_OUTPUT_BYTES: u64 = 1 << 30;
/// Pages of `GET /batches` read when looking for a batch by its token (100 batches a page).
const MAX_LIST_PAGES: usize = 20;
/// The key of the batch metadata that names the job that created it.
pub const TOKEN_KEY: &str = "promptgate_job";

/// Where a batch stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Validating,
    InProgress,
    Finalizing,
    Completed,
    Failed,
    Expired,
    Cancelling,
    Cancelled,
}

impl Status {
    fn parse(text: &str) -> Option<Status> {
        Some(match text {
            "validating" => Status::Validating,
            "in_progress" => Status::InProgress,
            "finalizing" => Status::Finalizing,
            "completed" => Status::Completed,
            "failed" => Status::Failed,
            "expired" => Status::Expired,
            "cancelling" => Status::Cancelling,
            "cancelled" => Status::Cancelled,
            _ => return None,
        })
    }

    /// Whether the batch will not change any more: its files are what it will ever have.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            Status::Completed | Status::Failed | Status::Expired | Status::Cancelled
        )
    }

    pub fn name(self) -> &'static str {
        match self {
            Status::Validating => "validating",
            Status::InProgress => "in_progress",
            Status::Finalizing => "finalizing",
            Status::Completed => "completed",
            Status::Failed => "failed",
            Status::Expired => "expired",
            Status::Cancelling => "cancelling",
            Status::Cancelled => "cancelled",
        }
    }
}

/// A batch as the server describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    pub id: String,
    pub status: Status,
    pub output_file_id: Option<String>,
    pub error_file_id: Option<String>,
    /// Requests done and failed so far, of `total`.
    pub completed: u64,
    pub failed: u64,
    pub total: u64,
    /// Why the batch failed validation, when it did.
    pub errors: Option<String>,
}

/// One line of an output or error file.
#[derive(Debug, Clone, PartialEq)]
pub enum Line {
    /// A 200 answer: the chat completion body, as received.
    Answered { custom_id: String, body: String },
    /// A request the batch could not answer, and why.
    Failed { custom_id: String, message: String },
}

/// A client for the Batch API of one `[providers.NAME]` table of kind `openai`.
#[derive(Debug)]
pub struct OpenAiBatches {
    client: Client<OpenAIConfig>,
    policy: RetryPolicy,
    /// The first wait between looks at a batch, and the longest.
    pub poll_first: Duration,
    pub poll_max: Duration,
    /// Most lines in one batch (`batch_max_lines`).
    pub max_lines: usize,
}

impl OpenAiBatches {
    pub fn new(name: &str, config: &OpenAiConfig, calls: &CallConfig, env: &EnvVars) -> Result<OpenAiBatches, Error> {
        let base_url = OpenAiProvider::base_url_of(config, env);
        // Files are larger than answers, and uploads slower: a longer bound on both.
        let timeout = calls.timeout_secs.max(600.0);
        Ok(OpenAiBatches {
            client: client(name, config, &base_url, timeout, MAX_OUTPUT_BYTES, env)?,
            policy: calls.retry_policy(),
            poll_first: Duration::from_millis(calls.batch_poll_ms),
            poll_max: Duration::from_millis(calls.batch_poll_max_ms.max(calls.batch_poll_ms)),
            max_lines: calls.batch_max_lines as usize,
        })
    }

    /// One line of an input file: the request `body` (JSON text) for `/v1/chat/completions`,
    /// written as it is, not parsed and written again; `None` when it is not JSON.
    pub fn line(custom_id: &str, body: String) -> Option<String> {
        let body = serde_json::value::RawValue::from_string(body).ok()?;
        let line = json!({"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions"});
        let mut text = line.to_string();
        text.pop();
        text.push_str(",\"body\":");
        text.push_str(body.get());
        text.push('}');
        Some(text)
    }

    /// Upload an input file; its id.
    pub async fn upload(&self, path: std::path::PathBuf) -> Result<String, ProviderError> {
        // Each attempt streams the file again: it may be 190 MB, and is never held.
        let value: Value = self
            .retried(|| async {
                let request = CreateFileRequest {
                    file: FileInput::from(path.clone()),
                    purpose: FilePurpose::Batch,
                    expires_after: None,
                };
                self.client.files().create_byot(request).await.map_err(classify)
            })
            .await?;
        id_of(&value, "file")
    }

    /// Create a batch over an uploaded file, marked with `token` so that it can be found again
    /// by a run that was killed before it learned the batch's id.
    pub async fn create(&self, input_file_id: &str, token: &str) -> Result<Batch, ProviderError> {
        let body = json!({
            "input_file_id": input_file_id,
            "endpoint": "/v1/chat/completions",
            "completion_window": "24h",
            "metadata": {TOKEN_KEY: token},
        });
        let value: Value = self
            .retried(|| async { self.client.batches().create_byot(body.clone()).await.map_err(classify) })
            .await?;
        batch_of(&value)
    }

    /// The batch marked with `token`, if the server has one (newest batches first).
    pub async fn find(&self, token: &str) -> Result<Option<Batch>, ProviderError> {
        let mut after: Option<String> = None;
        for _ in 0..MAX_LIST_PAGES {
            let mut query = vec![("limit".to_string(), "100".to_string())];
            if let Some(after) = &after {
                query.push(("after".to_string(), after.clone()));
            }
            let page: Value = self
                .retried(|| async {
                    use async_openai::traits::RequestOptionsBuilder;
                    self.client
                        .batches()
                        .query(&query)
                        .map_err(classify)?
                        .list_byot()
                        .await
                        .map_err(classify)
                })
                .await?;
            let items = page["data"].as_array().map(Vec::as_slice).unwrap_or_default();
            for item in items {
                if item["metadata"][TOKEN_KEY].as_str() == Some(token) {
                    return batch_of(item).map(Some);
                }
            }
            match (page["has_more"].as_bool(), items.last()) {
                (Some(true), Some(last)) => after = Some(id_of(last, "batch")?),
                _ => return Ok(None),
            }
        }
        Ok(None)
    }

    /// The batch with this id, as it stands.
    pub async fn retrieve(&self, id: &str) -> Result<Batch, ProviderError> {
        let value: Value = self
            .retried(|| async { self.client.batches().retrieve_byot(id).await.map_err(classify) })
            .await?;
        batch_of(&value)
    }

    /// The lines of an output or error file, to `each` in order: the file is held (it is read
    /// whole, at most [`MAX_OUTPUT_BYTES`]), its lines are not.
    pub async fn lines(&self, file_id: &str, each: impl FnMut(Result<Line, String>)) -> Result<(), ProviderError> {
        let bytes = self
            .retried(|| async { self.client.files().content(file_id).await.map_err(classify) })
            .await?;
        parse_lines(&bytes).for_each(each);
        Ok(())
    }

    async fn retried<T, F, Fut>(&self, call: F) -> Result<T, ProviderError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, ProviderError>>,
    {
        retry::with_retries(self.policy, call).await.result
    }
}

/// The lines of an output or error file: each an answer or a failure, or why it could not be
/// read (a garbled line costs that line, not the file).
pub fn parse_lines(bytes: &[u8]) -> impl Iterator<Item = Result<Line, String>> + '_ {
    bytes
        .split(|&b| b == b'\n')
        .filter(|line| !line.iter().all(u8::is_ascii_whitespace))
        .map(|line| {
            let text = String::from_utf8_lossy(line);
            let value: Value = serde_json::from_str(&text)
                .map_err(|e| format!("an unreadable line ({e}): {}", excerpt(&text, 120)))?;
            let custom_id = value["custom_id"]
                .as_str()
                .filter(|id| !id.is_empty() && id.len() <= 256)
                .ok_or_else(|| format!("a line without a custom_id: {}", excerpt(&text, 120)))?
                .to_string();
            let response = &value["response"];
            let status = response["status_code"].as_u64();
            if status == Some(200) && response["body"].is_object() {
                return Ok(Line::Answered {
                    custom_id,
                    body: response["body"].to_string(),
                });
            }
            let message = value["error"]["message"]
                .as_str()
                .or_else(|| response["body"]["error"]["message"].as_str())
                .map_or_else(
                    || format!("HTTP {}", status.map_or_else(|| "?".to_string(), |s| s.to_string())),
                    |m| excerpt(m, 300),
                );
            Ok(Line::Failed { custom_id, message })
        })
}

fn bad(message: String) -> ProviderError {
    ProviderError::new(FailureKind::BadResponse, message)
}

/// The `id` of a file or batch object, checked.
fn id_of(value: &Value, what: &str) -> Result<String, ProviderError> {
    value["id"]
        .as_str()
        .filter(|id| {
            !id.is_empty() && id.len() <= 256 && !id.contains(['/', '?', '#']) && !id.contains(char::is_control)
        })
        .map(str::to_string)
        .ok_or_else(|| bad(format!("not a {what} object: {}", excerpt(&value.to_string(), 200))))
}

/// A batch object, checked.
fn batch_of(value: &Value) -> Result<Batch, ProviderError> {
    let id = id_of(value, "batch")?;
    let status = value["status"].as_str().and_then(Status::parse).ok_or_else(|| {
        bad(format!(
            "batch `{id}` has no known status: {}",
            excerpt(&value["status"].to_string(), 60)
        ))
    })?;
    let file = |key: &str| {
        value[key]
            .as_str()
            .map(|file| id_of(&json!({"id": file}), "file"))
            .transpose()
    };
    let count = |key: &str| value["request_counts"][key].as_u64().unwrap_or(0);
    let errors = value["errors"]["data"]
        .as_array()
        .filter(|e| !e.is_empty())
        .map(|errors| {
            errors
                .iter()
                .take(3)
                .map(|e| excerpt(e["message"].as_str().unwrap_or("?"), 200))
                .collect::<Vec<_>>()
                .join("; ")
        });
    Ok(Batch {
        status,
        output_file_id: file("output_file_id")?,
        error_file_id: file("error_file_id")?,
        completed: count("completed"),
        failed: count("failed"),
        total: count("total"),
        errors,
        id,
    })
}

/// How long to wait before the next look at a batch: `first`, doubling to `max`.
pub fn poll_delay(first: Duration, max: Duration, looks: u32) -> Duration {
    first.saturating_mul(2u32.saturating_pow(looks.min(16))).min(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_lines_are_answers_failures_or_named_as_unreadable() {
        let file = concat!(
            r#"{"id":"batch_req_1","custom_id":"k1","response":{"status_code":200,"request_id":"r","body":{"id":"chatcmpl-1","choices":[]}},"error":null}"#,
            "\n",
            r#"{"id":"batch_req_2","custom_id":"k2","response":null,"error":{"code":"server_error","message":"overloaded"}}"#,
            "\n\n",
            r#"{"id":"batch_req_3","custom_id":"k3","response":{"status_code":400,"request_id":"r","body":{"error":{"message":"bad schema"}}},"error":null}"#,
            "\n{\"custom_id\": \n",
            r#"{"response":{"status_code":200,"body":{}}}"#,
        );
        let lines: Vec<_> = parse_lines(file.as_bytes()).collect();
        assert_eq!(lines.len(), 5);
        assert_eq!(
            lines[0],
            Ok(Line::Answered {
                custom_id: "k1".into(),
                body: r#"{"id":"chatcmpl-1","choices":[]}"#.into()
            })
        );
        assert_eq!(
            lines[1],
            Ok(Line::Failed {
                custom_id: "k2".into(),
                message: "overloaded".into()
            })
        );
        assert_eq!(
            lines[2],
            Ok(Line::Failed {
                custom_id: "k3".into(),
                message: "bad schema".into()
            })
        );
        assert!(lines[3].as_ref().unwrap_err().starts_with("an unreadable line"));
        assert!(lines[4].as_ref().unwrap_err().starts_with("a line without a custom_id"));
    }

    #[test]
    fn batch_objects_are_checked_field_by_field() {
        let batch = batch_of(&json!({
            "id": "batch_abc", "object": "batch", "status": "completed", "output_file_id": "file-out",
            "error_file_id": null, "request_counts": {"total": 3, "completed": 2, "failed": 1}
        }))
        .unwrap();
        assert_eq!(
            (batch.status, batch.completed, batch.failed, batch.total),
            (Status::Completed, 2, 1, 3)
        );
        assert_eq!(batch.output_file_id.as_deref(), Some("file-out"));
        assert!(batch.status.is_final() && !Status::Finalizing.is_final());
        for hostile in [
            json!({"id": "batch_x", "status": "sleeping"}),
            json!({"id": "../../etc", "status": "completed"}),
            json!({"id": "batch_x", "status": "completed", "output_file_id": "a/b"}),
            json!({"status": "completed"}),
            json!([1, 2]),
        ] {
            assert!(batch_of(&hostile).is_err(), "{hostile}");
        }
    }

    #[test]
    fn input_lines_carry_the_body_as_written() {
        let line = OpenAiBatches::line("k1", r#"{"model":"m","messages":[]}"#.into()).unwrap();
        assert_eq!(
            line,
            r#"{"custom_id":"k1","method":"POST","url":"/v1/chat/completions","body":{"model":"m","messages":[]}}"#
        );
        let parsed: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(parsed["body"]["model"], "m");
        assert!(OpenAiBatches::line("k2", "{not json".into()).is_none());
    }

    #[test]
    fn polls_back_off_to_the_ceiling() {
        let (first, max) = (Duration::from_millis(500), Duration::from_secs(30));
        let delays: Vec<u128> = (0..9).map(|n| poll_delay(first, max, n).as_millis()).collect();
        assert_eq!(delays, [500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]);
        assert_eq!(poll_delay(first, max, u32::MAX), max);
    }
}
