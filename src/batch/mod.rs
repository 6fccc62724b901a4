//! `--batch`: every uncached call of a run sent through the provider's batch engine (a separate
//! quota at about half the price, answers within hours), collected into the cache as ordinary
//! answers; the run then replays them as it replays any cached answer.
//!
//! A job is recorded in the cache (its token and every line with its cache key) before anything
//! is uploaded, and each step (uploaded, creating, submitted, collected) is committed before
//! the next starts: a run killed at any point resumes from there. The one step that pays,
//! creating the batch, is preceded by a committed `creating`; a run that finds a job there asks
//! the server for a batch marked with the job's token before it creates one. Lines a batch could
//! not answer (failed, or left when it expired) go into the next round, up to [`ROUNDS`]; what
//! is left after that is made online by the run, as are calls to a provider without a Batch API.

pub mod store;

use std::collections::{BTreeMap, HashSet};
use std::io::{IsTerminal, Write};

use serde::{Deserialize, Serialize};

use crate::cache::{self, Cache, Entry};
use crate::config::Config;
use crate::env::EnvVars;
use crate::error::Error;
use crate::provider::openai::{parse_completion, OpenAiProvider};
use crate::provider::openai_batch::{self, Line as OutputLine, OpenAiBatches, MAX_INPUT_BYTES, MAX_LINES};
use crate::provider::{ApiConfig, FailureKind, ProviderError, ProviderKind, Request};
use store::{Job, Line, State};

/// Rounds of batches per run: the first, then resubmissions of what failed.
pub const ROUNDS: u32 = 3;

/// A call the run will make, if its answer is not cached.
#[derive(Debug, Clone)]
pub struct Call {
    /// The provider's name in the config.
    pub provider: String,
    pub request: Request,
}

/// Whether to show progress.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Print each look at a batch on stderr (a terminal's).
    pub progress: bool,
}

/// What `--batch` did, in the run record.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    /// Batches collected by this run (resumed ones included), by id.
    pub batches: Vec<String>,
    /// Lines sent in new batches by this run.
    pub submitted: u64,
    /// Answers collected into the cache.
    pub answered: u64,
    /// Lines a batch failed or left unanswered (retried in the next round).
    pub failed: u64,
    /// Calls left to the run to make online: after the last round, or for a provider without
    /// a Batch API.
    pub online: u64,
    /// Why some calls went online, when they did.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// Send every uncached call of `calls` through its provider's batch engine, resuming first any
/// job a killed run left, and collect the answers into `cache`.
pub async fn prefill(
    config: &Config,
    cache: &Cache,
    calls: &[Call],
    env: &EnvVars,
    options: Options,
) -> Result<Summary, Error> {
    let mut summary = Summary::default();
    let jobs = store::unfinished(cache)?;
    let names: std::collections::BTreeSet<String> = calls
        .iter()
        .map(|c| c.provider.clone())
        .chain(jobs.iter().map(|j| j.provider.clone()))
        .collect();
    let mut clients: BTreeMap<String, OpenAiBatches> = BTreeMap::new();
    for name in &names {
        let name = name.as_str();
        match config.providers.get(name).map(|p| (&p.api, &p.calls)) {
            Some((ApiConfig::Openai(own), settings)) => {
                clients.insert(name.to_string(), OpenAiBatches::new(name, own, settings, env)?);
            }
            Some((ApiConfig::Bedrock(_), _)) => summary.notes.push(format!(
                "provider `{name}` (Bedrock): batch inference is not supported yet; its calls are made online"
            )),
            // A job of a provider the config no longer has stays in the cache for a config
            // that has it again.
            None => {}
        }
    }
    // A killed run's jobs first: what they hold must not be sent again.
    for mut job in jobs {
        if let Some(batches) = clients.get(&job.provider) {
            drive(cache, batches, &mut job, options, &mut summary).await?;
            if job.state == State::Abandoned {
                clients.remove(&job.provider);
            }
        }
    }
    // Calls to a provider without batches: the run makes them online.
    let mut elsewhere = false;
    // Each key once: it canonicalizes the whole rendered prompt.
    let keys: Vec<String> = calls.iter().map(|call| cache::key(&call.request)).collect();
    for round in 1..=ROUNDS {
        let mut by_provider: BTreeMap<&str, Vec<Line>> = BTreeMap::new();
        let mut seen = HashSet::new();
        for (call, key) in calls.iter().zip(&keys) {
            if !seen.insert(key) || cache.has(key)? || store::in_flight(cache, key)? {
                continue;
            }
            let body = match config.providers.get(&call.provider).map(|p| &p.api) {
                Some(ApiConfig::Openai(own)) if clients.contains_key(&call.provider) => {
                    OpenAiProvider::body_for(own, &call.request).to_string()
                }
                _ => {
                    elsewhere = true;
                    continue;
                }
            };
            by_provider.entry(call.provider.as_str()).or_default().push(Line {
                key: key.clone(),
                provider_kind: call.request.provider.as_str().to_string(),
                model: call.request.model.clone(),
                sample_index: call.request.sample_index,
                body,
            });
        }
        if by_provider.is_empty() {
            break;
        }
        for (provider, lines) in by_provider {
            for chunk in chunks(lines) {
                let mut job = store::create(cache, provider, round, &chunk)?;
                let Some(batches) = clients.get(provider) else {
                    // Abandoned in this round: the rest goes online with it.
                    break;
                };
                drive(cache, batches, &mut job, options, &mut summary).await?;
                if job.state == State::Abandoned {
                    clients.remove(provider);
                } else {
                    summary.submitted += chunk.len() as u64;
                }
            }
        }
    }
    let mut left = HashSet::new();
    for key in &keys {
        if !cache.has(key)? {
            left.insert(key);
        }
    }
    summary.online = left.len() as u64;
    if summary.online > 0 && !elsewhere && summary.notes.is_empty() {
        summary.notes.push(format!(
            "{} call(s) had no answer after {ROUNDS} rounds of batches: the run makes them online",
            summary.online
        ));
    }
    Ok(summary)
}

/// Lines in batches of at most [`MAX_LINES`] lines and [`MAX_INPUT_BYTES`] bytes.
fn chunks(lines: Vec<Line>) -> Vec<Vec<Line>> {
    let mut chunks: Vec<Vec<Line>> = Vec::new();
    let mut bytes = 0;
    for line in lines {
        let size = line.body.len() + line.key.len() + 96;
        match chunks.last_mut() {
            Some(last) if last.len() < MAX_LINES && bytes + size <= MAX_INPUT_BYTES => {
                bytes += size;
                last.push(line);
            }
            _ => {
                bytes = size;
                chunks.push(vec![line]);
            }
        }
    }
    chunks
}

/// Take `job` from where it stands to collected (or abandoned, when the server has no Batch
/// API and nothing was paid).
async fn drive(
    cache: &Cache,
    batches: &OpenAiBatches,
    job: &mut Job,
    options: Options,
    summary: &mut Summary,
) -> Result<(), Error> {
    loop {
        match job.state {
            State::Prepared => {
                // Nothing is paid yet: what was answered meanwhile (a resumed job) is left out.
                let mut lines = Vec::new();
                for line in store::lines(cache, job)? {
                    if !cache.has(&line.key)? {
                        lines.push(line);
                    }
                }
                if lines.is_empty() {
                    // Nothing left to send, nothing paid: done.
                    store::advance(cache, job, State::Collected, None)?;
                    return Ok(());
                }
                let mut file = Vec::new();
                for line in lines {
                    let text = OpenAiBatches::line(&line.key, line.body)
                        .ok_or_else(|| Error::internal("a batch line in the cache is not JSON"))?;
                    file.extend_from_slice(text.as_bytes());
                    file.push(b'\n');
                }
                match batches.upload(file).await {
                    Ok(id) => {
                        job.input_file_id = Some(id);
                        store::advance(cache, job, State::Uploaded, None)?;
                    }
                    Err(error) => return abandon(cache, job, error, summary),
                }
            }
            State::Uploaded => {
                store::advance(cache, job, State::Creating, None)?;
                let file = job.input_file_id.clone().unwrap_or_default();
                match batches.create(&file, &job.token).await {
                    Ok(batch) => {
                        job.batch_id = Some(batch.id);
                        store::advance(cache, job, State::Submitted, Some(batch.status.name()))?;
                    }
                    // Refused outright (no Batch API, a bad file): nothing was paid.
                    Err(error) if error.kind == FailureKind::Client => return abandon(cache, job, error, summary),
                    Err(error) => return Err(stalled(job, "create", &error)),
                }
            }
            State::Creating => match batches.find(&job.token).await {
                Ok(Some(batch)) => {
                    job.batch_id = Some(batch.id);
                    store::advance(cache, job, State::Submitted, Some(batch.status.name()))?;
                }
                Ok(None) => store::advance(cache, job, State::Uploaded, None)?,
                Err(error) => return Err(stalled(job, "find", &error)),
            },
            State::Submitted => return collect(cache, batches, job, options, summary).await,
            State::Collected | State::Abandoned => return Ok(()),
        }
    }
}

/// Give a job up before anything was paid; its lines are left to the run's online calls.
fn abandon(cache: &Cache, job: &mut Job, error: ProviderError, summary: &mut Summary) -> Result<(), Error> {
    summary.notes.push(format!(
        "provider `{}`: the batch could not be submitted ({}); its calls are made online",
        job.provider, error.message
    ));
    store::advance(cache, job, State::Abandoned, None)?;
    Ok(())
}

/// A job that cannot go on now and must not be given up (it may be paid for): the run stops,
/// and the next run resumes it.
fn stalled(job: &Job, step: &str, error: &ProviderError) -> Error {
    Error::Unreachable {
        provider: job.provider.clone(),
        endpoint: job
            .batch_id
            .clone()
            .unwrap_or_else(|| format!("batch job {}", job.token)),
        first_error: format!("could not {step} the batch: {}", error.message),
        hint: Some(
            "run the same command again: it resumes this batch where it stopped, without paying for it twice".into(),
        ),
    }
}

/// Poll a submitted batch until it is final, then store its answers.
async fn collect(
    cache: &Cache,
    batches: &OpenAiBatches,
    job: &mut Job,
    options: Options,
    summary: &mut Summary,
) -> Result<(), Error> {
    let id = job.batch_id.clone().unwrap_or_default();
    let mut looks = 0;
    let batch = loop {
        let batch = batches
            .retrieve(&id)
            .await
            .map_err(|error| stalled(job, "poll", &error))?;
        if options.progress && std::io::stderr().is_terminal() {
            let _ = writeln!(
                std::io::stderr(),
                "batch {id} ({}): {}, {} of {} done, {} failed",
                job.provider,
                batch.status.name(),
                batch.completed,
                batch.total,
                batch.failed
            );
        }
        if batch.status.is_final() {
            break batch;
        }
        tokio::time::sleep(openai_batch::poll_delay(batches.poll_first, batches.poll_max, looks)).await;
        looks += 1;
    };
    let lines = store::lines(cache, job)?;
    let wanted: BTreeMap<&str, &Line> = lines.iter().map(|l| (l.key.as_str(), l)).collect();
    let mut entries = Vec::new();
    let mut failed: Vec<(String, String)> = Vec::new();
    for file in [&batch.output_file_id, &batch.error_file_id].into_iter().flatten() {
        let read = batches
            .lines(file)
            .await
            .map_err(|error| stalled(job, "read the output of", &error))?;
        for line in read {
            match line {
                Ok(OutputLine::Answered { custom_id, body }) => {
                    let Some(line) = wanted.get(custom_id.as_str()) else {
                        continue;
                    };
                    // Batch answers have no latency of their own: 0, never a made-up figure.
                    match parse_completion(&body, 0) {
                        Ok(response) => entries.push(Entry {
                            key: custom_id,
                            provider: ProviderKind::parse(&line.provider_kind).unwrap_or(ProviderKind::Openai),
                            model: line.model.clone(),
                            sample_index: line.sample_index,
                            response,
                        }),
                        Err(error) => failed.push((custom_id, error.message)),
                    }
                }
                Ok(OutputLine::Failed { custom_id, message }) => failed.push((custom_id, message)),
                // A garbled line answers nothing: its call stays unanswered for the next round.
                Err(_) => {}
            }
        }
    }
    let answered: HashSet<String> = entries.iter().map(|e| e.key.clone()).collect();
    let said: HashSet<String> = failed.iter().map(|(key, _)| key.clone()).collect();
    for line in &lines {
        // A line left out of the upload because it was answered meanwhile is not a failure.
        if !answered.contains(&line.key) && !said.contains(&line.key) && !cache.has(&line.key)? {
            failed.push((
                line.key.clone(),
                format!("no answer when the batch ended ({})", batch.status.name()),
            ));
        }
    }
    cache.put_many(&entries)?;
    let answered: Vec<String> = answered.into_iter().collect();
    store::settle(cache, job, &answered, &failed)?;
    summary.answered += answered.len() as u64;
    summary.failed += failed.len() as u64;
    summary.batches.push(id);
    if let Some(errors) = &batch.errors {
        summary.notes.push(format!(
            "batch {}: {errors}",
            summary.batches.last().map_or("", String::as_str)
        ));
    }
    store::advance(cache, job, State::Collected, Some(batch.status.name()))?;
    Ok(())
}
