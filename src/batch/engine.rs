//! A provider's batch engine: OpenAI's Batch API or Bedrock batch inference, behind the steps
//! the job driver takes (upload, create, find by token, look, read the answers).

use std::collections::HashMap;

use super::store::{Job, Line};
use crate::config::Config;
use crate::env::EnvVars;
use crate::error::Error;
use crate::provider::bedrock_batch::{self, BedrockBatches, OutputLine, Reading};
use crate::provider::openai::{parse_completion, OpenAiProvider};
use crate::provider::openai_batch::{self, Line as OpenAiLine, OpenAiBatches};
use crate::provider::{ApiConfig, FailureKind, ProviderError, Request, Response};

/// The batch engine of one provider.
#[derive(Debug)]
pub enum Engine {
    Openai(OpenAiBatches),
    Bedrock(BedrockBatches),
}

/// A batch as its engine describes it.
#[derive(Debug, Clone)]
pub struct Look {
    pub status: String,
    /// Whether it will not change any more.
    pub done: bool,
    pub completed: u64,
    pub failed: u64,
    pub total: u64,
    /// Files holding its answers (OpenAI; Bedrock's are found by the job's token).
    outputs: Vec<String>,
    /// Why it failed, when it says.
    pub errors: Option<String>,
}

/// What a batch said about one line.
#[derive(Debug)]
pub enum Outcome {
    Answered { key: String, response: Response },
    Failed { key: String, message: String },
}

/// Where a call goes in a batch: the group it shares a job with, and its line body.
pub struct Placed {
    /// Calls of one provider and group go in one job (Bedrock: one model and record format).
    pub group: String,
    pub body: String,
}

impl Engine {
    /// The engine of provider `name`, `Ok(None)` when it has none configured.
    pub async fn of(config: &Config, name: &str, env: &EnvVars) -> Result<Option<Engine>, Error> {
        Ok(match config.providers.get(name).map(|p| (&p.api, &p.calls)) {
            Some((ApiConfig::Openai(own), calls)) => Some(Engine::Openai(OpenAiBatches::new(name, own, calls, env)?)),
            Some((ApiConfig::Bedrock(own), calls)) => BedrockBatches::new(own, calls, env).await.map(Engine::Bedrock),
            None => None,
        })
    }

    /// Where `request` goes, or why it is made online instead.
    pub fn place(&self, config: &Config, provider: &str, request: &Request) -> Result<Placed, String> {
        match (self, config.providers.get(provider).map(|p| &p.api)) {
            (Engine::Openai(_), Some(ApiConfig::Openai(own))) => Ok(Placed {
                group: String::new(),
                body: OpenAiProvider::body_for(own, request).to_string(),
            }),
            (Engine::Bedrock(_), Some(ApiConfig::Bedrock(_))) => {
                let envelope = bedrock_batch::envelope(request)?;
                Ok(Placed {
                    group: format!("{} {}", request.model, envelope.invocation),
                    body: serde_json::to_string(&envelope).map_err(|e| e.to_string())?,
                })
            }
            _ => Err(format!("provider `{provider}` changed kind")),
        }
    }

    /// The fewest lines a job may have.
    pub fn min_lines(&self) -> usize {
        match self {
            Engine::Openai(_) => 1,
            Engine::Bedrock(bedrock) => bedrock.min_records,
        }
    }

    /// The most lines a job may have.
    pub fn max_lines(&self) -> usize {
        match self {
            Engine::Openai(openai) => openai.max_lines,
            Engine::Bedrock(bedrock) => bedrock.max_records,
        }
    }

    /// The largest input a job may upload, in bytes.
    pub fn max_bytes(&self) -> usize {
        match self {
            Engine::Openai(_) => openai_batch::MAX_INPUT_BYTES,
            Engine::Bedrock(_) => bedrock_batch::MAX_INPUT_BYTES,
        }
    }

    /// The line of an input file that asks for `body` under `key`, without its newline;
    /// `None` when the stored body is not JSON.
    pub fn line_text(&self, key: &str, body: String) -> Option<String> {
        match self {
            Engine::Openai(_) => OpenAiBatches::line(key, body),
            Engine::Bedrock(_) => bedrock_batch::record(key, &body),
        }
    }

    /// Whether reading a batch's answers needs its lines' bodies (Bedrock's: [`Engine::reading`]).
    pub fn reads_bodies(&self) -> bool {
        matches!(self, Engine::Bedrock(_))
    }

    /// How to read the answer to `line`, for an engine whose answers need it (Bedrock's).
    pub fn reading(&self, line: &Line) -> Option<Reading> {
        match self {
            Engine::Openai(_) => None,
            Engine::Bedrock(_) => reading_of(line),
        }
    }

    /// The first wait between looks at a batch, and the longest.
    pub fn poll(&self) -> (std::time::Duration, std::time::Duration) {
        match self {
            Engine::Openai(openai) => (openai.poll_first, openai.poll_max),
            Engine::Bedrock(bedrock) => (bedrock.poll_first, bedrock.poll_max),
        }
    }

    /// Upload the file at `path`, the input of `job` (its lines, one per line); the input's id.
    /// The file is streamed, never read whole.
    pub async fn upload(&self, job: &Job, path: std::path::PathBuf) -> Result<String, ProviderError> {
        match self {
            Engine::Openai(openai) => openai.upload(path).await,
            Engine::Bedrock(bedrock) => bedrock.upload(&job.token, &path).await,
        }
    }

    /// Create the batch over `input`, marked with the job's token; its id and status. `first`
    /// is the job's first line: a Bedrock job's model and record format are its lines'.
    pub async fn create(
        &self,
        job: &Job,
        input: &str,
        first: Option<&Line>,
    ) -> Result<(String, String), ProviderError> {
        match self {
            Engine::Openai(openai) => {
                let batch = openai.create(input, &job.token).await?;
                Ok((batch.id, batch.status.name().to_string()))
            }
            Engine::Bedrock(bedrock) => {
                let first = first.ok_or_else(|| ProviderError::new(FailureKind::Client, "an empty job"))?;
                let reading = reading_of(first)
                    .ok_or_else(|| ProviderError::new(FailureKind::Client, "a batch line in the cache is not JSON"))?;
                let arn = bedrock
                    .create(input, &job.token, &first.model, &reading.invocation)
                    .await?;
                Ok((arn, "Submitted".to_string()))
            }
        }
    }

    /// The batch a killed run created for `job`, if there is one.
    pub async fn find(&self, job: &Job) -> Result<Option<(String, String)>, ProviderError> {
        match self {
            Engine::Openai(openai) => Ok(openai
                .find(&job.token)
                .await?
                .map(|batch| (batch.id, batch.status.name().to_string()))),
            Engine::Bedrock(bedrock) => Ok(bedrock.find(&job.token).await?.map(|arn| (arn, "Submitted".into()))),
        }
    }

    /// The batch `id`, as it stands.
    pub async fn look(&self, id: &str) -> Result<Look, ProviderError> {
        match self {
            Engine::Openai(openai) => {
                let batch: openai_batch::Batch = openai.retrieve(id).await?;
                Ok(Look {
                    status: batch.status.name().to_string(),
                    done: batch.status.is_final(),
                    completed: batch.completed,
                    failed: batch.failed,
                    total: batch.total,
                    outputs: [batch.output_file_id, batch.error_file_id]
                        .into_iter()
                        .flatten()
                        .collect(),
                    errors: batch.errors,
                })
            }
            Engine::Bedrock(bedrock) => {
                let job = bedrock.retrieve(id).await?;
                Ok(Look {
                    done: job.done,
                    completed: job.processed.saturating_sub(job.failed),
                    failed: job.failed,
                    total: job.total,
                    outputs: Vec::new(),
                    errors: job.message.filter(|_| job.status != "Completed"),
                    status: job.status,
                })
            }
        }
    }

    /// What a finished batch said about its lines, to `each` one line at a time; a line that
    /// cannot be read answers nothing. `readings` says how to read each line's answer, by key
    /// (Bedrock's; see [`Engine::reading`]).
    pub async fn answers(
        &self,
        job: &Job,
        look: &Look,
        readings: &HashMap<String, Reading>,
        mut each: impl FnMut(Outcome),
    ) -> Result<(), ProviderError> {
        match self {
            Engine::Openai(openai) => {
                for file in &look.outputs {
                    openai
                        .lines(file, |line| match line {
                            // Batch answers have no latency of their own: 0, never a made-up figure.
                            Ok(OpenAiLine::Answered { custom_id, body }) => {
                                each(outcome(custom_id, parse_completion(&body, 0)))
                            }
                            Ok(OpenAiLine::Failed { custom_id, message }) => each(Outcome::Failed {
                                key: custom_id,
                                message,
                            }),
                            // A garbled line answers nothing: its call stays unanswered.
                            Err(_) => {}
                        })
                        .await?;
                }
            }
            Engine::Bedrock(bedrock) => {
                bedrock
                    .outputs(&job.token, |line| match line {
                        Ok(OutputLine::Answered { record_id, output }) => {
                            if let Some(reading) = readings.get(&record_id) {
                                each(outcome(record_id, bedrock_batch::response_of(reading, &output)));
                            }
                        }
                        Ok(OutputLine::Failed { record_id, message }) => each(Outcome::Failed {
                            key: record_id,
                            message,
                        }),
                        // A garbled line answers nothing: its call stays unanswered.
                        Err(_) => {}
                    })
                    .await?;
            }
        }
        Ok(())
    }
}

fn outcome(key: String, response: Result<Response, ProviderError>) -> Outcome {
    match response {
        Ok(response) => Outcome::Answered { key, response },
        Err(error) => Outcome::Failed {
            key,
            message: error.message,
        },
    }
}

/// How to read the answer to a stored Bedrock line.
fn reading_of(line: &Line) -> Option<Reading> {
    serde_json::from_str::<Reading>(&line.body).ok()
}
