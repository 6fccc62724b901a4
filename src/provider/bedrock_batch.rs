//! Amazon Bedrock batch inference: the records of a job written as one JSON Lines object to S3
//! (`aws-sdk-s3`), a model invocation job created over it (`aws-sdk-bedrock`'s
//! `CreateModelInvocationJob`, marked with the job's token as its `clientRequestToken` and in its
//! name), polled with `GetModelInvocationJob`, and its `.jsonl.out` objects read back from the
//! output folder; their lines come in any order and are joined on `recordId`.
//!
//! Which record format: Bedrock takes a job's records in the Converse request shape
//! (`modelInvocationType` `Converse`) or in the model's own `InvokeModel` shape. Converse jobs
//! refuse records with a `toolConfig` (400, per the batch inference guide), and promptgate asks
//! Bedrock for a response schema with a forced tool; so a request with tools or a schema goes in
//! the model's own shape, which promptgate writes for Anthropic's models (the Messages API body
//! with `tools` and `tool_choice`). A request with tools or a schema to another model family is
//! made online, and the run says so.
//!
//! Bedrock refuses a job with fewer records than its quota (100 for most models): a smaller group
//! is made online rather than padded, since padding records would be paid for.

use std::time::Duration;

use aws_sdk_bedrock::config::http::HttpResponse;
use aws_sdk_bedrock::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_bedrock::types::{
    ModelInvocationJobInputDataConfig, ModelInvocationJobOutputDataConfig, ModelInvocationJobS3InputDataConfig,
    ModelInvocationJobS3OutputDataConfig, ModelInvocationJobStatus, ModelInvocationType, S3InputFormat,
};
use serde_json::{json, Value};
use tokio::io::AsyncReadExt;

use super::bedrock::{answer, converse_response, sdk_config, sorted, transport_failure, BedrockConfig};
use super::calls::CallConfig;
use super::retry::{self, RetryPolicy};
use super::{error_chain, FailureKind, ProviderError, Request, Response, ToolCall, Usage};
use crate::env::EnvVars;
use crate::excerpt::excerpt;
use crate::prompt::ToolChoice as PromptToolChoice;

/// The most records one job takes (Bedrock's quota for most models).
pub const MAX_RECORDS: usize = crate::limits::BATCH_LINES.1 as usize;
/// The largest input object written: under Bedrock's 1 GB per file.
pub const MAX_INPUT_BYTES: usize = 900 * 1000 * 1000;
/// The largest output object read.
pub const MAX_OUTPUT_BYTES: u64 = 1 << 30;
/// Bedrock's fewest records per job for most models, unless `batch_min_records` says otherwise.
pub const DEFAULT_MIN_RECORDS: u32 = 100;
/// The `anthropic_version` of Bedrock's Messages API bodies.
const ANTHROPIC_VERSION: &str = "bedrock-2023-05-31";
/// `max_tokens` is required by the Messages API; a prompt that sets none gets this.
const ANTHROPIC_DEFAULT_MAX_TOKENS: u32 = 4096;
/// Pages of `ListModelInvocationJobs` read when looking for a job by its token.
const MAX_LIST_PAGES: usize = 20;

/// An `s3://bucket/prefix` folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Folder {
    pub bucket: String,
    /// Without a leading or trailing `/`; may be empty.
    pub prefix: String,
}

impl S3Folder {
    pub fn parse(uri: &str) -> Result<S3Folder, String> {
        let rest = uri
            .strip_prefix("s3://")
            .ok_or_else(|| format!("`{}` is not an s3:// URI", excerpt(uri, 80)))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        // S3's bucket naming rules: 3 to 63 lowercase letters, digits, dots and hyphens.
        let valid_bucket = (3..=63).contains(&bucket.len())
            && bucket
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-');
        if !valid_bucket {
            return Err(format!("`{}` is not an S3 bucket name", excerpt(bucket, 80)));
        }
        let prefix = prefix.trim_matches('/');
        if prefix.len() > 512 || prefix.contains(|c: char| c.is_control()) {
            return Err("the S3 prefix is longer than 512 bytes or holds control characters".into());
        }
        Ok(S3Folder {
            bucket: bucket.to_string(),
            prefix: prefix.to_string(),
        })
    }

    /// The key of `name` under this folder.
    fn key(&self, name: &str) -> String {
        if self.prefix.is_empty() {
            name.to_string()
        } else {
            format!("{}/{name}", self.prefix)
        }
    }

    fn uri(&self, key: &str) -> String {
        format!("s3://{}/{key}", self.bucket)
    }
}

/// Form and range checks of a Bedrock provider's batch keys: `(key, message)` of the first
/// problem.
pub fn check_config(config: &BedrockConfig) -> Result<(), (&'static str, String)> {
    if let Some(uri) = &config.batch_s3_uri {
        S3Folder::parse(uri).map_err(|message| ("batch_s3_uri", message))?;
    }
    if let Some(arn) = &config.batch_role_arn {
        check_role_arn(arn).map_err(|message| ("batch_role_arn", message))?;
    }
    if let Some(min) = config.batch_min_records {
        if !(1..=MAX_RECORDS as u32).contains(&min) {
            return Err((
                "batch_min_records",
                format!(
                    "{min} is out of range (1 to {}, Bedrock's most records per job)",
                    MAX_RECORDS
                ),
            ));
        }
    }
    if config.batch_s3_uri.is_some() != config.batch_role_arn.is_some() {
        return Err((
            if config.batch_s3_uri.is_some() {
                "batch_role_arn"
            } else {
                "batch_s3_uri"
            },
            "batch inference needs both batch_s3_uri and batch_role_arn".to_string(),
        ));
    }
    Ok(())
}

/// An IAM role ARN: `arn:PARTITION:iam::ACCOUNT:role/NAME`.
pub fn check_role_arn(arn: &str) -> Result<(), String> {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let valid = arn.len() <= 2048
        && parts.len() == 6
        && parts[0] == "arn"
        && parts[1].starts_with("aws")
        && parts[2] == "iam"
        && parts[3].is_empty()
        && parts[4].len() == 12
        && parts[4].chars().all(|c| c.is_ascii_digit())
        && parts[5].strip_prefix("role/").is_some_and(|name| !name.is_empty())
        && !arn.contains(|c: char| c.is_whitespace() || c.is_control());
    if valid {
        Ok(())
    } else {
        Err(format!(
            "`{}` is not an IAM role ARN (arn:aws:iam::123456789012:role/NAME)",
            excerpt(arn, 120)
        ))
    }
}

/// The record format of a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Invocation {
    Converse,
    /// The model's own body: Anthropic's Messages API.
    Anthropic,
}

impl Invocation {
    fn name(self) -> &'static str {
        match self {
            Invocation::Converse => "Converse",
            Invocation::Anthropic => "InvokeModel",
        }
    }
}

/// What promptgate keeps of a record before and while it is in a job: the model input, and how
/// to read its answer.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Envelope {
    pub invocation: String,
    /// The schema tool whose input is the answer text, when the prompt has a response schema.
    #[serde(default)]
    pub answer_tool: Option<String>,
    #[serde(rename = "modelInput")]
    pub model_input: Value,
}

/// The record of `request` for a job, or why it must be made online.
pub fn envelope(request: &Request) -> Result<Envelope, String> {
    let prompt = &request.prompt;
    let answer_tool = prompt.response_schema.as_ref().map(|schema| schema.name.clone());
    if answer_tool.is_none() && prompt.tools.is_empty() {
        return Ok(Envelope {
            invocation: Invocation::Converse.name().into(),
            answer_tool,
            model_input: converse_body(request),
        });
    }
    if is_anthropic(&request.model) {
        return Ok(Envelope {
            invocation: Invocation::Anthropic.name().into(),
            answer_tool,
            model_input: anthropic_body(request),
        });
    }
    Err(format!(
        "model `{}`: batch jobs in the Converse shape take no tools, and promptgate writes the model's own shape for Anthropic models only",
        request.model
    ))
}

/// Whether a model id or inference profile names an Anthropic model.
fn is_anthropic(model: &str) -> bool {
    model.split(['.', '/']).any(|part| part == "anthropic")
}

/// An f32 setting as the decimal it was written as (`0.7`, not `0.699999988`).
fn decimal(value: f32) -> Value {
    value
        .to_string()
        .parse::<f64>()
        .ok()
        .and_then(serde_json::Number::from_f64)
        .map_or(Value::Null, Value::Number)
}

/// A Converse request body (the model id is the job's), as `bedrock::BedrockProvider` sends it
/// online: system text blocks, alternating messages of text blocks, the inference settings.
pub fn converse_body(request: &Request) -> Value {
    let mut system = Vec::new();
    let mut messages = Vec::new();
    for message in &request.prompt.messages {
        match message.role.as_ref() {
            "system" => system.push(json!({"text": message.content})),
            role => messages.push(json!({
                "role": if role == "assistant" { "assistant" } else { "user" },
                "content": [{"text": message.content}],
            })),
        }
    }
    let mut inference = serde_json::Map::new();
    let params = &request.params;
    if let Some(max_tokens) = params.max_tokens {
        inference.insert("maxTokens".into(), json!(max_tokens.min(i32::MAX as u32)));
    }
    if let Some(t) = params.temperature {
        inference.insert("temperature".into(), decimal(t));
    }
    if let Some(p) = params.top_p {
        inference.insert("topP".into(), decimal(p));
    }
    let mut body = json!({"messages": messages, "inferenceConfig": inference});
    if !system.is_empty() {
        body["system"] = Value::Array(system);
    }
    body
}

/// An Anthropic Messages API body for `InvokeModel`: the system text apart, the tools with
/// their input schemas, the response schema as one forced tool, the tool choice mapped
/// (`required` is `any`).
pub fn anthropic_body(request: &Request) -> Value {
    let prompt = &request.prompt;
    let mut system = Vec::new();
    let mut messages = Vec::new();
    for message in &prompt.messages {
        match message.role.as_ref() {
            "system" => system.push(message.content.as_str()),
            role => messages.push(json!({
                "role": if role == "assistant" { "assistant" } else { "user" },
                "content": [{"type": "text", "text": message.content}],
            })),
        }
    }
    let params = &request.params;
    let mut body = json!({
        "anthropic_version": ANTHROPIC_VERSION,
        "max_tokens": params.max_tokens.unwrap_or(ANTHROPIC_DEFAULT_MAX_TOKENS),
        "messages": messages,
    });
    if !system.is_empty() {
        body["system"] = json!(system.join("\n\n"));
    }
    if let Some(t) = params.temperature {
        body["temperature"] = decimal(t);
    }
    if let Some(p) = params.top_p {
        body["top_p"] = decimal(p);
    }
    if let Some(schema) = &prompt.response_schema {
        body["tools"] = json!([{
            "name": schema.name,
            "description": "Give your answer by calling this tool; its input is the answer.",
            "input_schema": schema.schema,
        }]);
        body["tool_choice"] = json!({"type": "tool", "name": schema.name});
    } else if !prompt.tools.is_empty() {
        let tools: Vec<Value> = prompt
            .tools
            .iter()
            .map(|tool| {
                let mut spec = json!({"name": tool.name, "input_schema": tool.parameters});
                if let Some(description) = &tool.description {
                    spec["description"] = json!(description);
                }
                spec
            })
            .collect();
        body["tools"] = Value::Array(tools);
        body["tool_choice"] = match &prompt.tool_choice {
            None | Some(PromptToolChoice::Auto) => json!({"type": "auto"}),
            Some(PromptToolChoice::Required) => json!({"type": "any"}),
            Some(PromptToolChoice::Tool(name)) => json!({"type": "tool", "name": name}),
        };
    }
    body
}

/// The [`Response`] of an Anthropic Messages API answer.
pub fn anthropic_response(body: &Value, answer_tool: Option<&str>) -> Result<Response, ProviderError> {
    let mut texts = Vec::new();
    let mut tool_calls = Vec::new();
    for block in body["content"].as_array().into_iter().flatten() {
        match block["type"].as_str() {
            Some("text") => texts.extend(block["text"].as_str().map(str::to_string)),
            Some("tool_use") => {
                if let Some(name) = block["name"].as_str() {
                    tool_calls.push(ToolCall {
                        name: name.to_string(),
                        arguments: sorted(&block["input"]),
                    });
                }
            }
            _ => {}
        }
    }
    let usage = body["usage"].as_object().map(|u| Usage {
        input_tokens: u.get("input_tokens").and_then(Value::as_u64).unwrap_or(0),
        output_tokens: u.get("output_tokens").and_then(Value::as_u64).unwrap_or(0),
    });
    let stop_reason = body["stop_reason"].as_str().unwrap_or("?");
    answer(texts, tool_calls, answer_tool, usage, stop_reason, body, 0)
}

/// How to read the answer of a stored [`Envelope`], read without its model input.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
pub struct Reading {
    pub invocation: String,
    #[serde(default)]
    pub answer_tool: Option<String>,
}

/// One line of an input object, `{"recordId", "modelInput"}`, from a stored [`Envelope`]'s
/// text: the model input copied as written, not parsed and written again. `None` when the
/// text is not an envelope.
pub fn record(record_id: &str, envelope: &str) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Input<'a> {
        #[serde(rename = "modelInput", borrow)]
        model_input: &'a serde_json::value::RawValue,
    }
    let input: Input = serde_json::from_str(envelope).ok()?;
    let id = Value::String(record_id.to_string()).to_string();
    Some(format!(
        "{{\"recordId\":{id},\"modelInput\":{}}}",
        input.model_input.get()
    ))
}

/// A job as Bedrock describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    pub arn: String,
    pub status: String,
    /// Whether the job will not change any more.
    pub done: bool,
    pub message: Option<String>,
    pub processed: u64,
    pub failed: u64,
    pub total: u64,
}

fn is_final(status: &ModelInvocationJobStatus) -> bool {
    matches!(
        status,
        ModelInvocationJobStatus::Completed
            | ModelInvocationJobStatus::PartiallyCompleted
            | ModelInvocationJobStatus::Failed
            | ModelInvocationJobStatus::Stopped
            | ModelInvocationJobStatus::Expired
    )
}

/// One line of an output object.
#[derive(Debug, Clone, PartialEq)]
pub enum OutputLine {
    Answered { record_id: String, output: Value },
    Failed { record_id: String, message: String },
}

/// The lines of an output object: each an answer or a failure, or why it could not be read.
pub fn parse_output(bytes: &[u8]) -> Vec<Result<OutputLine, String>> {
    bytes
        .split(|&b| b == b'\n')
        .filter(|line| !line.iter().all(u8::is_ascii_whitespace))
        .map(parse_line)
        .collect()
}

/// One line of an output object. The model input Bedrock echoes in each line is skipped, not
/// parsed: it is as large as the request.
pub fn parse_line(line: &[u8]) -> Result<OutputLine, String> {
    #[derive(serde::Deserialize)]
    struct Raw<'a> {
        #[serde(rename = "recordId")]
        record_id: Option<String>,
        #[serde(rename = "modelOutput", borrow)]
        model_output: Option<&'a serde_json::value::RawValue>,
        #[serde(default)]
        error: Option<Value>,
    }
    let text = String::from_utf8_lossy(line);
    let raw: Raw =
        serde_json::from_str(&text).map_err(|e| format!("an unreadable line ({e}): {}", excerpt(&text, 120)))?;
    let record_id = raw
        .record_id
        .filter(|id| !id.is_empty() && id.len() <= 256)
        .ok_or_else(|| format!("a line without a recordId: {}", excerpt(&text, 120)))?;
    let output = raw
        .model_output
        .and_then(|o| serde_json::from_str::<Value>(o.get()).ok());
    match (output, raw.error.filter(|e| !e.is_null())) {
        (Some(output), None) if output.is_object() => Ok(OutputLine::Answered { record_id, output }),
        (_, error) => {
            let error = error.unwrap_or(Value::Null);
            let message = match (error["errorCode"].as_u64(), error["errorMessage"].as_str()) {
                (Some(code), Some(message)) => format!("{code}: {}", excerpt(message, 300)),
                (None, Some(message)) => excerpt(message, 300),
                _ => "no model output".to_string(),
            };
            Ok(OutputLine::Failed { record_id, message })
        }
    }
}

/// The answer of an output line, read in its job's format.
pub fn response_of(reading: &Reading, output: &Value) -> Result<Response, ProviderError> {
    let answer_tool = reading.answer_tool.as_deref();
    if reading.invocation == Invocation::Anthropic.name() {
        anthropic_response(output, answer_tool)
    } else {
        // Batch answers have no latency of their own: 0, never a made-up figure.
        converse_response(output, answer_tool, 0)
    }
}

/// A client for the batch inference of one `[providers.NAME]` table of kind `bedrock`.
#[derive(Debug)]
pub struct BedrockBatches {
    control: aws_sdk_bedrock::Client,
    s3: aws_sdk_s3::Client,
    folder: S3Folder,
    role_arn: String,
    pub min_records: usize,
    /// Most records in one job (`batch_max_lines`).
    pub max_records: usize,
    policy: RetryPolicy,
    pub poll_first: Duration,
    pub poll_max: Duration,
}

impl BedrockBatches {
    /// The client, or `None` when the provider has no `batch_s3_uri` and `batch_role_arn`.
    pub async fn new(config: &BedrockConfig, calls: &CallConfig, env: &EnvVars) -> Option<BedrockBatches> {
        let (Some(uri), Some(role_arn)) = (&config.batch_s3_uri, &config.batch_role_arn) else {
            return None;
        };
        // Checked when the config was read.
        let folder = S3Folder::parse(uri).ok()?;
        // Files are larger than answers, and uploads slower: a longer bound.
        let sdk = sdk_config(config, calls.timeout_secs.max(600.0), None, env).await;
        let mut control = aws_sdk_bedrock::config::Builder::from(&sdk);
        if let Some(url) = &config.batch_endpoint_url {
            control = control.endpoint_url(url);
        }
        let mut s3 = aws_sdk_s3::config::Builder::from(&sdk);
        if let Some(url) = &config.s3_endpoint_url {
            s3 = s3.endpoint_url(url).force_path_style(true);
        }
        Some(BedrockBatches {
            control: aws_sdk_bedrock::Client::from_conf(control.build()),
            s3: aws_sdk_s3::Client::from_conf(s3.build()),
            folder,
            role_arn: role_arn.clone(),
            min_records: config.batch_min_records.unwrap_or(DEFAULT_MIN_RECORDS) as usize,
            max_records: calls.batch_max_lines as usize,
            policy: calls.retry_policy(),
            poll_first: Duration::from_millis(calls.batch_poll_ms),
            poll_max: Duration::from_millis(calls.batch_poll_max_ms.max(calls.batch_poll_ms)),
        })
    }

    /// Write a job's input object; its `s3://` URI.
    pub async fn upload(&self, token: &str, path: &std::path::Path) -> Result<String, ProviderError> {
        let key = self.folder.key(&format!("{token}/input.jsonl"));
        self.retried(|| async {
            // Streamed from the file on each attempt: an input may be 900 MB, and is never held.
            // 1 MiB reads: the SDK's default of 4 KiB made the upload of 50,000 lines 0.3 s slower.
            let body = aws_sdk_s3::primitives::ByteStream::read_from()
                .path(path)
                .buffer_size(1 << 20)
                .build()
                .await
                .map_err(|e| ProviderError::new(FailureKind::Client, format!("read the batch's input file: {e}")))?;
            self.s3
                .put_object()
                .bucket(&self.folder.bucket)
                .key(&key)
                .content_type("application/jsonl")
                .body(body)
                .send()
                .await
                .map_err(|e| classify(e, "write the input to S3"))
        })
        .await?;
        Ok(self.folder.uri(&key))
    }

    /// Create the job over an input object, idempotent on `token`.
    pub async fn create(
        &self,
        input_uri: &str,
        token: &str,
        model: &str,
        invocation: &str,
    ) -> Result<String, ProviderError> {
        let invocation = ModelInvocationType::from(invocation);
        let client = |e: aws_sdk_bedrock::error::BuildError| ProviderError::new(FailureKind::Client, e.to_string());
        let input = ModelInvocationJobS3InputDataConfig::builder()
            .s3_uri(input_uri)
            .s3_input_format(S3InputFormat::Jsonl)
            .build()
            .map_err(client)?;
        let output = ModelInvocationJobS3OutputDataConfig::builder()
            .s3_uri(self.output_uri(token))
            .build()
            .map_err(client)?;
        let created = self
            .retried(|| async {
                self.control
                    .create_model_invocation_job()
                    .job_name(token)
                    .client_request_token(token)
                    .role_arn(&self.role_arn)
                    .model_id(model)
                    .model_invocation_type(invocation.clone())
                    .input_data_config(ModelInvocationJobInputDataConfig::S3InputDataConfig(input.clone()))
                    .output_data_config(ModelInvocationJobOutputDataConfig::S3OutputDataConfig(output.clone()))
                    .send()
                    .await
                    .map_err(|e| classify(e, "create the batch inference job"))
            })
            .await?;
        checked_arn(created.job_arn())
    }

    /// The job named with `token`, if Bedrock has one.
    pub async fn find(&self, token: &str) -> Result<Option<String>, ProviderError> {
        let mut next: Option<String> = None;
        for _ in 0..MAX_LIST_PAGES {
            let page = self
                .retried(|| async {
                    self.control
                        .list_model_invocation_jobs()
                        .name_contains(token)
                        .max_results(100)
                        .set_next_token(next.clone())
                        .send()
                        .await
                        .map_err(|e| classify(e, "list the batch inference jobs"))
                })
                .await?;
            if let Some(job) = page
                .invocation_job_summaries()
                .iter()
                .find(|job| job.job_name() == token)
            {
                return checked_arn(job.job_arn()).map(Some);
            }
            match page.next_token() {
                Some(token) if !token.is_empty() => next = Some(token.to_string()),
                _ => return Ok(None),
            }
        }
        Ok(None)
    }

    /// The job with this ARN, as it stands.
    pub async fn retrieve(&self, arn: &str) -> Result<Job, ProviderError> {
        let job = self
            .retried(|| async {
                self.control
                    .get_model_invocation_job()
                    .job_identifier(arn)
                    .send()
                    .await
                    .map_err(|e| classify(e, "look at the batch inference job"))
            })
            .await?;
        let status = job
            .status()
            .ok_or_else(|| ProviderError::new(FailureKind::BadResponse, format!("job `{arn}` has no status")))?;
        let count = |n: Option<i64>| n.and_then(|n| u64::try_from(n).ok()).unwrap_or(0);
        Ok(Job {
            arn: checked_arn(job.job_arn())?,
            status: excerpt(status.as_str(), 40),
            done: is_final(status),
            message: job.message().map(|m| excerpt(m, 300)),
            processed: count(job.processed_record_count()),
            failed: count(job.error_record_count()),
            total: count(job.total_record_count()),
        })
    }

    /// Each line of every output object of the job marked with `token`, handed to `each` as it
    /// is read: an output object is never held whole.
    pub async fn outputs(
        &self,
        token: &str,
        mut each: impl FnMut(Result<OutputLine, String>),
    ) -> Result<(), ProviderError> {
        let prefix = self.folder.key(&format!("{token}/output/"));
        let mut keys = Vec::new();
        let mut next: Option<String> = None;
        for _ in 0..MAX_LIST_PAGES {
            let page = self
                .retried(|| async {
                    self.s3
                        .list_objects_v2()
                        .bucket(&self.folder.bucket)
                        .prefix(&prefix)
                        .set_continuation_token(next.clone())
                        .send()
                        .await
                        .map_err(|e| classify(e, "list the batch output in S3"))
                })
                .await?;
            for object in page.contents() {
                if let Some(key) = object.key().filter(|key| key.ends_with(".jsonl.out")) {
                    let size = object.size().and_then(|s| u64::try_from(s).ok()).unwrap_or(0);
                    if size > MAX_OUTPUT_BYTES {
                        return Err(ProviderError::new(
                            FailureKind::BadResponse,
                            format!("the batch output `{key}` is {size} bytes (at most {MAX_OUTPUT_BYTES})"),
                        ));
                    }
                    keys.push(key.to_string());
                }
            }
            match page.next_continuation_token() {
                Some(token) if page.is_truncated() == Some(true) => next = Some(token.to_string()),
                _ => break,
            }
        }
        for key in keys {
            let object = self
                .retried(|| async {
                    self.s3
                        .get_object()
                        .bucket(&self.folder.bucket)
                        .key(&key)
                        .send()
                        .await
                        .map_err(|e| classify(e, "read the batch output from S3"))
                })
                .await?;
            let broken =
                |e: std::io::Error| ProviderError::new(FailureKind::Connection, format!("reading `{key}`: {e}"));
            use tokio::io::AsyncBufReadExt;
            let mut reader = tokio::io::BufReader::new(object.body.into_async_read());
            let (mut line, mut read) = (Vec::new(), 0u64);
            loop {
                line.clear();
                let n = (&mut reader)
                    .take(MAX_OUTPUT_BYTES + 1 - read)
                    .read_until(b'\n', &mut line)
                    .await
                    .map_err(broken)?;
                if n == 0 {
                    break;
                }
                read += n as u64;
                if read > MAX_OUTPUT_BYTES {
                    return Err(ProviderError::new(
                        FailureKind::BadResponse,
                        format!("the batch output `{key}` is larger than {MAX_OUTPUT_BYTES} bytes"),
                    ));
                }
                if !line.iter().all(u8::is_ascii_whitespace) {
                    each(parse_line(&line));
                }
            }
        }
        Ok(())
    }

    fn output_uri(&self, token: &str) -> String {
        self.folder.uri(&self.folder.key(&format!("{token}/output/")))
    }

    async fn retried<T, F, Fut>(&self, call: F) -> Result<T, ProviderError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, ProviderError>>,
    {
        retry::with_retries(self.policy, call).await.result
    }
}

/// A job ARN as Bedrock returned it, checked before it goes into a URL path.
fn checked_arn(arn: &str) -> Result<String, ProviderError> {
    if arn.starts_with("arn:") && arn.len() <= 1011 && !arn.contains(|c: char| c.is_whitespace() || c.is_control()) {
        Ok(arn.to_string())
    } else {
        Err(ProviderError::new(
            FailureKind::BadResponse,
            format!("not a job ARN: `{}`", excerpt(arn, 120)),
        ))
    }
}

/// Classify a control-plane or S3 error as the Converse ones are: throttling and 5xx are
/// retried, validation and access errors are not.
fn classify<E>(error: SdkError<E, HttpResponse>, doing: &str) -> ProviderError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let status = error.raw_response().map(|r| r.status().as_u16());
    let code = error.code().unwrap_or_default().to_string();
    let message = error.message().map_or_else(|| error_chain(&error), str::to_string);
    let kind = match transport_failure(&error) {
        Some(kind) => kind,
        None => match code.as_str() {
            "ThrottlingException" | "SlowDown" | "TooManyRequestsException" => FailureKind::RateLimit,
            "ServiceUnavailableException" | "InternalServerException" | "InternalError" => FailureKind::Server,
            _ if status.is_some_and(|s| s == 429) => FailureKind::RateLimit,
            _ if status.is_some_and(|s| s >= 500) => FailureKind::Server,
            _ => FailureKind::Client,
        },
    };
    let code = if code.is_empty() {
        String::new()
    } else {
        format!(" {code}")
    };
    let status = status.map_or_else(String::new, |s| format!(" (HTTP {s}{code})"));
    ProviderError::new(kind, format!("could not {doing}{status}: {}", excerpt(&message, 300)))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::prompt::{Message, RenderedPrompt, ResponseSchema, ToolDefinition};
    use crate::provider::{ProviderKind, SamplingParams};

    fn request(model: &str, schema: bool, tools: bool) -> Request {
        Request {
            provider: ProviderKind::Bedrock,
            model: model.into(),
            prompt: Arc::new(RenderedPrompt {
                messages: vec![
                    Message {
                        role: "system".into(),
                        content: std::sync::Arc::new("Answer.".into()),
                    },
                    Message {
                        role: "user".into(),
                        content: std::sync::Arc::new("Suppress this?".into()),
                    },
                ],
                response_schema: schema.then(|| {
                    Arc::new(ResponseSchema {
                        name: "decision".into(),
                        strict: true,
                        schema: json!({"type": "object"}),
                    })
                }),
                tools: if tools {
                    vec![ToolDefinition {
                        name: "suppress".into(),
                        description: Some("Suppress the finding.".into()),
                        parameters: json!({"type": "object"}),
                    }]
                } else {
                    vec![]
                },
                tool_choice: tools.then_some(PromptToolChoice::Required),
            }),
            params: SamplingParams {
                temperature: Some(0.7),
                max_tokens: None,
                top_p: None,
                seed: Some(1),
            },
            sample_index: 0,
            epoch: None,
        }
    }

    #[test]
    fn plain_prompts_go_in_converse_records_and_schemas_or_tools_in_anthropics_own() {
        let plain = envelope(&request("amazon.nova-lite-v1:0", false, false)).unwrap();
        assert_eq!((plain.invocation.as_str(), plain.answer_tool), ("Converse", None));
        assert_eq!(
            plain.model_input,
            json!({
                "messages": [{"role": "user", "content": [{"text": "Suppress this?"}]}],
                "inferenceConfig": {"temperature": 0.7},
                "system": [{"text": "Answer."}],
            })
        );
        let schema = envelope(&request("us.anthropic.claude-3-5-haiku-20241022-v1:0", true, false)).unwrap();
        assert_eq!(
            (schema.invocation.as_str(), schema.answer_tool.as_deref()),
            ("InvokeModel", Some("decision"))
        );
        let input = &schema.model_input;
        assert_eq!(input["anthropic_version"], "bedrock-2023-05-31");
        assert_eq!(input["max_tokens"], 4096);
        assert_eq!(input["system"], "Answer.");
        assert_eq!(input["tool_choice"], json!({"type": "tool", "name": "decision"}));
        assert_eq!(
            input["messages"][0]["content"][0],
            json!({"type": "text", "text": "Suppress this?"})
        );
        let tools = envelope(&request("anthropic.claude-3-haiku-20240307-v1:0", false, true)).unwrap();
        assert_eq!(tools.model_input["tool_choice"], json!({"type": "any"}));
        assert_eq!(tools.model_input["tools"][0]["description"], "Suppress the finding.");
        let refused = envelope(&request("amazon.nova-lite-v1:0", true, false)).unwrap_err();
        assert!(refused.contains("take no tools"), "{refused}");
        // An ARN naming an Anthropic model is one; a model merely called so is not.
        assert!(is_anthropic(
            "arn:aws:bedrock:us-east-1::foundation-model/anthropic.claude-3-haiku-20240307-v1:0"
        ));
        assert!(!is_anthropic("meta.anthropical-v1:0"));
    }

    #[test]
    fn anthropic_answers_read_like_converse_ones() {
        let forced = json!({
            "content": [{"type": "tool_use", "id": "t", "name": "decision", "input": {"z": 1, "decision": "notify"}}],
            "stop_reason": "tool_use", "usage": {"input_tokens": 12, "output_tokens": 3}
        });
        let response = anthropic_response(&forced, Some("decision")).unwrap();
        assert_eq!(response.text.as_deref(), Some(r#"{"decision":"notify","z":1}"#));
        assert!(response.tool_calls.is_empty());
        assert_eq!(
            response.usage,
            Some(Usage {
                input_tokens: 12,
                output_tokens: 3
            })
        );
        let converse = json!({
            "output": {"message": {"role": "assistant", "content": [{"toolUse": {"toolUseId": "t", "name": "decision", "input": {"decision": "notify", "z": 1}}}]}},
            "stopReason": "tool_use", "usage": {"inputTokens": 12, "outputTokens": 3}
        });
        let same = converse_response(&converse, Some("decision"), 0).unwrap();
        assert_eq!((same.text, same.usage), (response.text, response.usage));
        let called = anthropic_response(
            &json!({"content": [{"type": "text", "text": "ok"}, {"type": "tool_use", "name": "suppress", "input": {}}]}),
            None,
        )
        .unwrap();
        assert_eq!(called.text.as_deref(), Some("ok"));
        assert_eq!(called.tool_calls[0].name, "suppress");
        let empty = anthropic_response(&json!({"content": [], "stop_reason": "max_tokens"}), None).unwrap_err();
        assert_eq!(empty.kind, FailureKind::BadResponse);
        assert!(empty.message.contains("max_tokens"), "{}", empty.message);
    }

    #[test]
    fn output_lines_are_answers_failures_or_named_as_unreadable() {
        let file = concat!(
            r#"{"recordId":"k1","modelInput":{},"modelOutput":{"content":[]}}"#,
            "\n",
            r#"{"recordId":"k2","modelInput":{},"error":{"errorCode":400,"errorMessage":"bad request"}}"#,
            "\n\n{\"recordId\": \n",
            r#"{"modelOutput":{}}"#,
            "\n",
            r#"{"recordId":"k3","modelInput":{}}"#,
        );
        let lines = parse_output(file.as_bytes());
        assert_eq!(lines.len(), 5);
        assert_eq!(
            lines[0],
            Ok(OutputLine::Answered {
                record_id: "k1".into(),
                output: json!({"content": []})
            })
        );
        assert_eq!(
            lines[1],
            Ok(OutputLine::Failed {
                record_id: "k2".into(),
                message: "400: bad request".into()
            })
        );
        assert!(lines[2].as_ref().unwrap_err().starts_with("an unreadable line"));
        assert!(lines[3].as_ref().unwrap_err().starts_with("a line without a recordId"));
        assert_eq!(
            lines[4],
            Ok(OutputLine::Failed {
                record_id: "k3".into(),
                message: "no model output".into()
            })
        );
    }

    #[test]
    fn s3_folders_and_role_arns_are_checked() {
        let folder = S3Folder::parse("s3://my-bucket/batch/in/").unwrap();
        assert_eq!(
            (folder.bucket.as_str(), folder.prefix.as_str()),
            ("my-bucket", "batch/in")
        );
        assert_eq!(
            folder.uri(&folder.key("t/input.jsonl")),
            "s3://my-bucket/batch/in/t/input.jsonl"
        );
        let root = S3Folder::parse("s3://my-bucket").unwrap();
        assert_eq!(root.key("t/input.jsonl"), "t/input.jsonl");
        for bad in [
            "https://my-bucket/x",
            "s3://ab/x",
            "s3://My_Bucket/x",
            "s3://",
            "s3://b\u{0}cket/x",
        ] {
            assert!(S3Folder::parse(bad).is_err(), "{bad:?}");
        }
        assert!(S3Folder::parse(&format!("s3://my-bucket/{}", "p/".repeat(300))).is_err());
        check_role_arn("arn:aws:iam::111122223333:role/service-role/promptgate").unwrap();
        check_role_arn("arn:aws-cn:iam::111122223333:role/r").unwrap();
        for bad in [
            "arn:aws:iam::1111:role/r",
            "arn:aws:s3:::bucket",
            "arn:aws:iam::111122223333:user/r",
            "arn:aws:iam::111122223333:role/",
            "arn:aws:iam::111122223333:role/a b",
            "role/r",
        ] {
            assert!(check_role_arn(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn records_copy_the_stored_model_input_as_written() {
        let envelope = envelope(&request("amazon.nova-lite-v1:0", false, false)).unwrap();
        let stored = serde_json::to_string(&envelope).unwrap();
        let line = record("k\"1", &stored).unwrap();
        let parsed: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(parsed, json!({"recordId": "k\"1", "modelInput": envelope.model_input}));
        let reading: Reading = serde_json::from_str(&stored).unwrap();
        assert_eq!((reading.invocation.as_str(), reading.answer_tool), ("Converse", None));
        assert!(record("k", "{not json").is_none());
        assert!(record("k", r#"{"invocation": "Converse"}"#).is_none());
    }

    #[test]
    fn settings_are_written_as_the_decimals_they_were() {
        assert_eq!(decimal(0.7).to_string(), "0.7");
        assert_eq!(decimal(1.0).to_string(), "1.0");
        assert_eq!(decimal(f32::NAN), Value::Null);
    }
}
