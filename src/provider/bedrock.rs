//! Amazon Bedrock through aws-sdk-bedrockruntime's Converse API.
//!
//! Credentials come from the AWS default chain; region from the config or `AWS_REGION`; the
//! endpoint from the config or `AWS_ENDPOINT_URL_BEDROCK_RUNTIME` / `AWS_ENDPOINT_URL` (the SDK
//! reads those itself). The SDK's own retries are switched off: promptgate's retry loop is the
//! only one, with the same policy as for OpenAI-compatible providers.
//!
//! A response JSON schema is honoured with a forced tool whose input schema is the response
//! schema; the tool's input then becomes the answer text, so graders see the same JSON on both
//! providers.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region};
use aws_sdk_bedrockruntime::config::http::HttpResponse;
use aws_sdk_bedrockruntime::config::interceptors::BeforeDeserializationInterceptorContextMut;
use aws_sdk_bedrockruntime::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_bedrockruntime::error::{BuildError, ProvideErrorMetadata, SdkError};
use aws_sdk_bedrockruntime::operation::converse::{ConverseError, ConverseOutput};
use aws_sdk_bedrockruntime::types::{
    AnyToolChoice, AutoToolChoice, ContentBlock, ConversationRole, ConverseOutput as Output, InferenceConfiguration,
    Message, SpecificToolChoice, SystemContentBlock, Tool, ToolChoice, ToolConfiguration, ToolInputSchema,
    ToolSpecification,
};
use aws_sdk_bedrockruntime::Client;
use aws_smithy_types::body::SdkBody;
use aws_smithy_types::{Document, Number};
use serde::Deserialize;
use serde_json::{json, Map, Value};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

use super::calls::CallConfig;
use super::retry::RetryPolicy;
use super::{error_chain, parse_retry_after_ms, FailureKind, ProviderError, Request, Response, ToolCall, Usage};
use crate::env::EnvVars;
use crate::limits;
use crate::prompt::{RenderedPrompt, ToolChoice as PromptToolChoice};

/// The settings of a `[providers.NAME]` table of kind `bedrock`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BedrockConfig {
    /// AWS region. Unset: `AWS_REGION`, then the AWS profile.
    pub region: Option<String>,
    /// Endpoint override. Unset: `AWS_ENDPOINT_URL_BEDROCK_RUNTIME`, `AWS_ENDPOINT_URL`.
    pub endpoint_url: Option<String>,
    /// `--batch`: the S3 folder (`s3://bucket/prefix`) that batch inference reads its input
    /// from and writes its output to. Unset: this provider's calls are made online.
    pub batch_s3_uri: Option<String>,
    /// `--batch`: the IAM role Bedrock assumes to read and write `batch_s3_uri`.
    pub batch_role_arn: Option<String>,
    /// `--batch`: the fewest records Bedrock takes in one job (its quota, 100 for most models;
    /// smaller groups are made online).
    pub batch_min_records: Option<u32>,
    /// Control-plane (`bedrock`, not `bedrock-runtime`) endpoint override. Unset:
    /// `AWS_ENDPOINT_URL_BEDROCK`, `AWS_ENDPOINT_URL`.
    pub batch_endpoint_url: Option<String>,
    /// S3 endpoint override (an S3-compatible server; path-style addressing). Unset:
    /// `AWS_ENDPOINT_URL_S3`, `AWS_ENDPOINT_URL`.
    pub s3_endpoint_url: Option<String>,
}

impl BedrockConfig {
    /// Form checks of these keys: `(key, message)` of the first problem.
    pub(super) fn check(&self) -> Result<(), (&'static str, String)> {
        for (key, url) in [
            ("endpoint_url", &self.endpoint_url),
            ("batch_endpoint_url", &self.batch_endpoint_url),
            ("s3_endpoint_url", &self.s3_endpoint_url),
        ] {
            if let Some(url) = url {
                limits::check_url(url).map_err(|message| (key, message))?;
            }
        }
        if let Some(region) = &self.region {
            let valid = !region.is_empty()
                && region.len() <= 64
                && region.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
            if !valid {
                return Err(("region", format!("`{region}` is not an AWS region name")));
            }
        }
        Ok(())
    }
}

/// A client for one `[providers.NAME]` table of kind `bedrock`.
#[derive(Debug)]
pub struct BedrockProvider {
    client: Client,
    policy: RetryPolicy,
    /// The endpoint or region, for messages.
    endpoint: String,
}

impl BedrockProvider {
    /// Build the client (this reads the AWS default credential chain).
    pub async fn new(config: &BedrockConfig, calls: &CallConfig, env: &EnvVars) -> BedrockProvider {
        let sdk = sdk_config(config, calls.timeout_secs, config.endpoint_url.as_deref(), env).await;
        let client_config = aws_sdk_bedrockruntime::config::Builder::from(&sdk)
            .interceptor(BodyLimit {
                limit: usize::try_from(calls.max_response_bytes).unwrap_or(usize::MAX),
            })
            .build();
        let endpoint = config
            .endpoint_url
            .clone()
            .or_else(|| env.get("AWS_ENDPOINT_URL_BEDROCK_RUNTIME").map(str::to_string))
            .or_else(|| env.get("AWS_ENDPOINT_URL").map(str::to_string))
            .or_else(|| {
                config
                    .region
                    .clone()
                    .or_else(|| env.get("AWS_REGION").map(str::to_string))
                    .map(|region| format!("Bedrock in {region}"))
            })
            .unwrap_or_else(|| "Bedrock (region of the AWS profile)".to_string());
        BedrockProvider {
            endpoint,
            client: Client::from_conf(client_config),
            policy: calls.retry_policy(),
        }
    }

    /// One attempt, no retries.
    pub async fn attempt(&self, request: &Request) -> Result<Response, ProviderError> {
        let invalid = |e: BuildError| ProviderError::new(FailureKind::Client, e.to_string());
        let mut call = self.client.converse().model_id(&request.model);
        for message in &request.prompt.messages {
            match message.role.as_ref() {
                "system" => call = call.system(SystemContentBlock::Text(message.content.to_string())),
                role => {
                    let role = if role == "assistant" {
                        ConversationRole::Assistant
                    } else {
                        ConversationRole::User
                    };
                    let message = Message::builder()
                        .role(role)
                        .content(ContentBlock::Text(message.content.to_string()))
                        .build()
                        .map_err(invalid)?;
                    call = call.messages(message);
                }
            }
        }
        let params = &request.params;
        let mut inference = InferenceConfiguration::builder();
        if let Some(max_tokens) = params.max_tokens {
            inference = inference.max_tokens(i32::try_from(max_tokens).unwrap_or(i32::MAX));
        }
        if let Some(t) = params.temperature {
            inference = inference.temperature(t);
        }
        if let Some(p) = params.top_p {
            inference = inference.top_p(p);
        }
        call = call.inference_config(inference.build());
        let forced_tool = request
            .prompt
            .response_schema
            .as_ref()
            .map(|schema| schema.name.clone());
        if let Some(tools) = tool_configuration(&request.prompt).map_err(invalid)? {
            call = call.tool_config(tools);
        }
        let started = Instant::now();
        let output = call.send().await.map_err(classify)?;
        let latency_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        response_of(&output, forced_tool.as_deref(), latency_ms)
    }
}

/// The AWS SDK settings of a provider: its region (else `AWS_REGION`, else the profile's), the
/// SDK's retries off (promptgate's loop is the only one), `timeout_secs` per attempt, and an
/// endpoint for every service when `endpoint` is set.
pub(super) async fn sdk_config(
    config: &BedrockConfig,
    timeout_secs: f64,
    endpoint: Option<&str>,
    env: &EnvVars,
) -> aws_config::SdkConfig {
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .retry_config(RetryConfig::disabled())
        .timeout_config(
            TimeoutConfig::builder()
                .operation_attempt_timeout(Duration::from_secs_f64(timeout_secs))
                .build(),
        );
    if let Some(region) = config
        .region
        .clone()
        .or_else(|| env.get("AWS_REGION").map(str::to_string))
    {
        loader = loader.region(Region::new(region));
    }
    if let Some(url) = endpoint {
        loader = loader.endpoint_url(url);
    }
    loader.load().await
}

/// Bounds the bytes the SDK reads of a response body (`max_response_bytes`): the SDK buffers
/// a Converse answer whole, however large, for as long as the server sends.
#[derive(Debug)]
struct BodyLimit {
    limit: usize,
}

/// The error a bounded body ends with; [`classify`] recognises it in the error chain.
const OVERSIZED: &str = "the response body is larger than max_response_bytes";

impl Intercept for BodyLimit {
    fn name(&self) -> &'static str {
        "promptgate::BodyLimit"
    }

    fn modify_before_deserialization(
        &self,
        context: &mut BeforeDeserializationInterceptorContextMut<'_>,
        _components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let response = context.response_mut();
        let declared = response
            .headers()
            .get("content-length")
            .and_then(|v| v.trim().parse::<u64>().ok());
        if declared.is_some_and(|length| length > self.limit as u64) {
            return Err(format!(
                "{OVERSIZED} = {} (declared {} bytes); it is not cached",
                self.limit,
                declared.unwrap_or(0)
            )
            .into());
        }
        let body = response.take_body();
        let limit = self.limit;
        let limited =
            http_body_util::BodyExt::map_err(http_body_util::Limited::new(body, limit), move |e| -> BoxError {
                if e.is::<http_body_util::LengthLimitError>() {
                    format!("{OVERSIZED} = {limit}; it is not cached").into()
                } else {
                    e
                }
            });
        *response.body_mut() = SdkBody::from_body_1_x(limited);
        Ok(())
    }
}

/// The `toolConfig` of a prompt: its tools as `toolSpec`s with the choice mapped (OpenAI
/// `required` is Bedrock `any`), or the response schema as one forced tool.
fn tool_configuration(prompt: &RenderedPrompt) -> Result<Option<ToolConfiguration>, BuildError> {
    let specific = |name: &str| -> Result<ToolChoice, BuildError> {
        Ok(ToolChoice::Tool(SpecificToolChoice::builder().name(name).build()?))
    };
    let (tools, choice) = if let Some(schema) = &prompt.response_schema {
        let spec = ToolSpecification::builder()
            .name(&schema.name)
            .description("Give your answer by calling this tool; its input is the answer.")
            .input_schema(ToolInputSchema::Json(to_document(&schema.schema)))
            .build()?;
        (vec![Tool::ToolSpec(spec)], specific(&schema.name)?)
    } else if !prompt.tools.is_empty() {
        let mut tools = Vec::with_capacity(prompt.tools.len());
        for tool in &prompt.tools {
            let spec = ToolSpecification::builder()
                .name(&tool.name)
                .set_description(tool.description.clone())
                .input_schema(ToolInputSchema::Json(to_document(&tool.parameters)))
                .build()?;
            tools.push(Tool::ToolSpec(spec));
        }
        let choice = match &prompt.tool_choice {
            None | Some(PromptToolChoice::Auto) => ToolChoice::Auto(AutoToolChoice::builder().build()),
            Some(PromptToolChoice::Required) => ToolChoice::Any(AnyToolChoice::builder().build()),
            Some(PromptToolChoice::Tool(name)) => specific(name)?,
        };
        (tools, choice)
    } else {
        return Ok(None);
    };
    Ok(Some(
        ToolConfiguration::builder()
            .set_tools(Some(tools))
            .tool_choice(choice)
            .build()?,
    ))
}

/// The [`Response`] of a Converse output from the SDK: written in the wire shape (the SDK does
/// not hand out the body it parsed), then read as a batch's Converse answer is read.
fn response_of(output: &ConverseOutput, forced_tool: Option<&str>, latency_ms: u64) -> Result<Response, ProviderError> {
    let mut content = Vec::new();
    if let Some(Output::Message(message)) = output.output() {
        for block in message.content() {
            match block {
                ContentBlock::Text(text) => content.push(json!({"text": text})),
                ContentBlock::ToolUse(tool_use) => content.push(json!({"toolUse": {
                    "toolUseId": tool_use.tool_use_id(),
                    "name": tool_use.name(),
                    "input": from_document(tool_use.input()),
                }})),
                _ => {}
            }
        }
    }
    let usage = output
        .usage()
        .map(|u| json!({"inputTokens": u.input_tokens(), "outputTokens": u.output_tokens()}));
    let mut body = json!({
        "output": {"message": {"role": "assistant", "content": content}},
        "stopReason": output.stop_reason().as_str(),
        "usage": usage,
        "metrics": output.metrics().map(|m| json!({"latencyMs": m.latency_ms()})),
    });
    // A prompt router names the model it picked; a model id or inference profile is the
    // version itself, and Converse says nothing more about it.
    if let Some(invoked) = output
        .trace()
        .and_then(|trace| trace.prompt_router())
        .and_then(|router| router.invoked_model_id())
    {
        body["trace"] = json!({"promptRouter": {"invokedModelId": invoked}});
    }
    converse_response(&body, forced_tool, latency_ms)
}

/// The [`Response`] of a Converse response body; the answer to a forced schema tool becomes the
/// text. An output with no message, or a message with neither text nor a tool call, is a bad
/// response (retried, never cached), as it is from an OpenAI-compatible server.
pub fn converse_response(body: &Value, forced_tool: Option<&str>, latency_ms: u64) -> Result<Response, ProviderError> {
    let mut texts = Vec::new();
    let mut tool_calls = Vec::new();
    for block in body["output"]["message"]["content"].as_array().into_iter().flatten() {
        if let Some(text) = block["text"].as_str() {
            texts.push(text.to_string());
        } else if let Some(name) = block["toolUse"]["name"].as_str() {
            tool_calls.push(ToolCall {
                name: name.to_string(),
                arguments: sorted(&block["toolUse"]["input"]),
            });
        }
    }
    let usage = body["usage"].as_object().map(|u| Usage {
        input_tokens: u.get("inputTokens").and_then(Value::as_u64).unwrap_or(0),
        output_tokens: u.get("outputTokens").and_then(Value::as_u64).unwrap_or(0),
    });
    let invoked = body["trace"]["promptRouter"]["invokedModelId"].as_str();
    let stop_reason = body["stopReason"].as_str().unwrap_or("?");
    answer(texts, tool_calls, forced_tool, usage, stop_reason, body, latency_ms).map(|mut response| {
        response.version = invoked.and_then(|model| crate::model_version::ModelVersion::new(model, None));
        response
    })
}

/// The [`Response`] of an answer's text blocks and tool calls: the call of a forced schema tool
/// becomes the text; neither text nor calls is a bad response.
pub(super) fn answer(
    texts: Vec<String>,
    mut tool_calls: Vec<ToolCall>,
    forced_tool: Option<&str>,
    usage: Option<Usage>,
    stop_reason: &str,
    body: &Value,
    latency_ms: u64,
) -> Result<Response, ProviderError> {
    if texts.is_empty() && tool_calls.is_empty() {
        return Err(ProviderError::new(
            FailureKind::BadResponse,
            format!(
                "the answer has no text and no tool use (stop reason `{}`)",
                crate::excerpt::excerpt(stop_reason, 60)
            ),
        ));
    }
    let mut text = (!texts.is_empty()).then(|| texts.join(""));
    if let Some(name) = forced_tool {
        if let Some(position) = tool_calls.iter().position(|call| call.name == name) {
            text = Some(tool_calls.remove(position).arguments.to_string());
        }
    }
    Ok(Response {
        text,
        tool_calls,
        raw_body: body.to_string(),
        usage,
        latency_ms,
        version: None,
    })
}

/// A JSON value with every object's keys sorted: a tool's input reads the same however the
/// server ordered it.
pub(super) fn sorted(value: &Value) -> Value {
    match value {
        Value::Array(items) => Value::Array(items.iter().map(sorted).collect()),
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            Value::Object(keys.into_iter().map(|k| (k.clone(), sorted(&map[k]))).collect())
        }
        other => other.clone(),
    }
}

/// The kind of an AWS SDK error that never reached the service's answer (a timeout, a failed
/// connection, an unreadable response, a request that could not be built); `None` for an
/// error the service sent, which its code classifies.
pub(super) fn transport_failure<E, R>(error: &SdkError<E, R>) -> Option<FailureKind> {
    Some(match error {
        SdkError::TimeoutError(_) => FailureKind::Timeout,
        SdkError::DispatchFailure(failure) if failure.is_timeout() => FailureKind::Timeout,
        SdkError::DispatchFailure(_) => FailureKind::Connection,
        SdkError::ResponseError(_) => FailureKind::BadResponse,
        SdkError::ConstructionFailure(_) => FailureKind::Client,
        _ => return None,
    })
}

/// Classify a Converse error. Throttling, model timeouts and unavailability are retried;
/// validation and access errors are reported, not retried.
fn classify(error: SdkError<ConverseError, HttpResponse>) -> ProviderError {
    let status = error.raw_response().map(|r| r.status().as_u16());
    let retry_after = error
        .raw_response()
        .and_then(|r| r.headers().get("x-amz-retry-after"))
        .and_then(parse_retry_after_ms);
    let code = error.code().unwrap_or_default().to_string();
    let message = match error.message() {
        Some(message) => message.to_string(),
        None => error_chain(&error),
    };
    let oversized = error_chain(&error).contains(OVERSIZED);
    let kind = match transport_failure(&error) {
        _ if oversized => FailureKind::BadResponse,
        Some(kind) => kind,
        None => match code.as_str() {
            "ThrottlingException" | "ServiceQuotaExceededException" => FailureKind::RateLimit,
            "ModelTimeoutException" => FailureKind::Timeout,
            "ServiceUnavailableException" | "InternalServerException" | "ModelNotReadyException" => FailureKind::Server,
            // A 2xx the SDK could not read as a Converse output.
            _ if status.is_some_and(|s| (200..300).contains(&s)) => FailureKind::BadResponse,
            _ if status.is_some_and(|s| s == 429) => FailureKind::RateLimit,
            _ if status.is_some_and(|s| s >= 500) => FailureKind::Server,
            _ => FailureKind::Client,
        },
    };
    let message = match (status, code.is_empty()) {
        (Some(status), false) => format!("HTTP {status} {code}: {message}"),
        (Some(status), true) => format!("HTTP {status}: {message}"),
        (None, _) => message,
    };
    ProviderError {
        kind,
        message,
        status,
        retry_after,
    }
}

/// serde_json → smithy Document (tool input schemas).
pub fn to_document(value: &Value) -> Document {
    match value {
        Value::Null => Document::Null,
        Value::Bool(b) => Document::Bool(*b),
        Value::Number(n) => Document::Number(if let Some(u) = n.as_u64() {
            Number::PosInt(u)
        } else if let Some(i) = n.as_i64() {
            Number::NegInt(i)
        } else {
            Number::Float(n.as_f64().unwrap_or(f64::NAN))
        }),
        Value::String(s) => Document::String(s.clone()),
        Value::Array(items) => Document::Array(items.iter().map(to_document).collect()),
        Value::Object(map) => Document::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), to_document(v)))
                .collect::<HashMap<_, _>>(),
        ),
    }
}

/// smithy Document → serde_json (tool-use inputs), keys sorted for a stable answer text.
pub fn from_document(document: &Document) -> Value {
    match document {
        Document::Null => Value::Null,
        Document::Bool(b) => Value::Bool(*b),
        Document::Number(Number::PosInt(u)) => json!(u),
        Document::Number(Number::NegInt(i)) => json!(i),
        Document::Number(Number::Float(f)) => json!(f),
        Document::String(s) => Value::String(s.clone()),
        Document::Array(items) => Value::Array(items.iter().map(from_document).collect()),
        Document::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            Value::Object(
                keys.into_iter()
                    .map(|k| (k.clone(), from_document(&map[k])))
                    .collect::<Map<_, _>>(),
            )
        }
    }
}

impl super::Api for BedrockProvider {
    fn endpoint(&self) -> String {
        self.endpoint.clone()
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
    fn documents_round_trip() {
        let value = json!({"b": [1, -2, 0.5, "x", null, true], "a": {"c": {}}});
        let back = from_document(&to_document(&value));
        assert_eq!(back, value);
        assert_eq!(back.to_string(), r#"{"a":{"c":{}},"b":[1,-2,0.5,"x",null,true]}"#);
    }
}
