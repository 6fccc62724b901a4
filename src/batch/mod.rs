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

mod engine;
pub mod store;

use std::collections::{BTreeMap, HashSet};
use std::io::{IsTerminal, Write};

use serde::{Deserialize, Serialize};

use crate::cache::{self, Cache, Entry};
use crate::config::Config;
use crate::env::EnvVars;
use crate::error::Error;
use crate::provider::{openai_batch, FailureKind, ProviderError, ProviderKind, Request};
use engine::{Engine, Outcome};
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
    /// Calls left to the run to make online: after the last round, for a provider without
    /// a batch engine, or for calls a provider's batches do not take.
    pub online: u64,
    /// Why some calls went online, when they did.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

impl Summary {
    fn note(&mut self, note: String) {
        if !self.notes.contains(&note) {
            self.notes.push(note);
        }
    }
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
    let mut engines: BTreeMap<String, Engine> = BTreeMap::new();
    for name in &names {
        match Engine::of(config, name, env).await? {
            Some(engine) => {
                engines.insert(name.clone(), engine);
            }
            // A job of a provider the config no longer has stays in the cache for a config
            // that has it again.
            None if config.providers.contains_key(name) => summary.note(format!(
                "provider `{name}`: no batch_s3_uri and batch_role_arn for Bedrock batch inference; its calls are made online"
            )),
            None => {}
        }
    }
    // A killed run's jobs first: what they hold must not be sent again.
    for mut job in jobs {
        if let Some(engine) = engines.get(&job.provider) {
            drive(cache, engine, &mut job, options, &mut summary).await?;
            if job.state == State::Abandoned {
                engines.remove(&job.provider);
            }
        }
    }
    // Each key once: it canonicalizes the whole rendered prompt.
    let keys: Vec<String> = calls.iter().map(|call| cache::key(&call.request)).collect();
    let mut online_by_choice = HashSet::new();
    for round in 1..=ROUNDS {
        let mut groups: BTreeMap<(&str, String), Vec<Line>> = BTreeMap::new();
        let mut seen = HashSet::new();
        for (call, key) in calls.iter().zip(&keys) {
            if online_by_choice.contains(key) || !seen.insert(key) || cache.has(key)? || store::in_flight(cache, key)? {
                continue;
            }
            let Some(engine) = engines.get(&call.provider) else {
                online_by_choice.insert(key.clone());
                continue;
            };
            let placed = match engine.place(config, &call.provider, &call.request) {
                Ok(placed) => placed,
                Err(why) => {
                    summary.note(format!(
                        "provider `{}`: {why}; those calls are made online",
                        call.provider
                    ));
                    online_by_choice.insert(key.clone());
                    continue;
                }
            };
            groups
                .entry((call.provider.as_str(), placed.group))
                .or_default()
                .push(Line {
                    key: key.clone(),
                    provider_kind: call.request.provider.as_str().to_string(),
                    model: call.request.model.clone(),
                    sample_index: call.request.sample_index,
                    body: placed.body,
                });
        }
        if groups.is_empty() {
            break;
        }
        for ((provider, group), lines) in groups {
            let Some(engine) = engines.get(provider) else {
                // Abandoned in this round: the rest goes online with it.
                continue;
            };
            if lines.len() < engine.min_lines() {
                summary.note(format!(
                    "provider `{provider}`: {} call(s) of `{group}` are fewer than the {} records a batch inference job takes (batch_min_records); they are made online",
                    lines.len(),
                    engine.min_lines()
                ));
                online_by_choice.extend(lines.into_iter().map(|line| line.key));
                continue;
            }
            for chunk in chunks(lines) {
                let mut job = store::create(cache, provider, round, &chunk)?;
                let Some(engine) = engines.get(provider) else {
                    break;
                };
                drive(cache, engine, &mut job, options, &mut summary).await?;
                if job.state == State::Abandoned {
                    engines.remove(provider);
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
    let by_choice = left
        .iter()
        .filter(|key| online_by_choice.contains(key.as_str()))
        .count();
    if summary.online as usize > by_choice {
        summary.note(format!(
            "{} call(s) had no answer after {ROUNDS} rounds of batches: the run makes them online",
            summary.online as usize - by_choice
        ));
    }
    Ok(summary)
}

/// Lines in batches of at most [`openai_batch::MAX_LINES`] lines and
/// [`openai_batch::MAX_INPUT_BYTES`] bytes: within both engines' limits.
fn chunks(lines: Vec<Line>) -> Vec<Vec<Line>> {
    let mut chunks: Vec<Vec<Line>> = Vec::new();
    let mut bytes = 0;
    for line in lines {
        let size = line.body.len() + line.key.len() + 96;
        match chunks.last_mut() {
            Some(last) if last.len() < openai_batch::MAX_LINES && bytes + size <= openai_batch::MAX_INPUT_BYTES => {
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

/// Take `job` from where it stands to collected (or abandoned, when the provider refuses the
/// batch outright and nothing was paid).
async fn drive(
    cache: &Cache,
    engine: &Engine,
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
                match engine.upload(job, lines).await {
                    Ok(id) => {
                        job.input_file_id = Some(id);
                        store::advance(cache, job, State::Uploaded, None)?;
                    }
                    Err(error) => return abandon(cache, job, error, summary),
                }
            }
            State::Uploaded => {
                store::advance(cache, job, State::Creating, None)?;
                let input = job.input_file_id.clone().unwrap_or_default();
                let first = store::first_line(cache, job)?;
                match engine.create(job, &input, first.as_ref()).await {
                    Ok((id, status)) => {
                        job.batch_id = Some(id);
                        store::advance(cache, job, State::Submitted, Some(&status))?;
                    }
                    // Refused outright (no batch API, a bad file, no access): nothing was paid.
                    Err(error) if error.kind == FailureKind::Client => return abandon(cache, job, error, summary),
                    Err(error) => return Err(stalled(job, "create", &error)),
                }
            }
            State::Creating => match engine.find(job).await {
                Ok(Some((id, status))) => {
                    job.batch_id = Some(id);
                    store::advance(cache, job, State::Submitted, Some(&status))?;
                }
                Ok(None) => store::advance(cache, job, State::Uploaded, None)?,
                Err(error) => return Err(stalled(job, "find", &error)),
            },
            State::Submitted => return collect(cache, engine, job, options, summary).await,
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
    engine: &Engine,
    job: &mut Job,
    options: Options,
    summary: &mut Summary,
) -> Result<(), Error> {
    let id = job.batch_id.clone().unwrap_or_default();
    let (first, max) = engine.poll();
    let mut looks = 0;
    let look = loop {
        let look = engine.look(&id).await.map_err(|error| stalled(job, "poll", &error))?;
        if options.progress && std::io::stderr().is_terminal() {
            let _ = writeln!(
                std::io::stderr(),
                "batch {id} ({}): {}, {} of {} done, {} failed",
                job.provider,
                look.status,
                look.completed,
                look.total,
                look.failed
            );
        }
        if look.done {
            break look;
        }
        tokio::time::sleep(openai_batch::poll_delay(first, max, looks)).await;
        looks += 1;
    };
    let mut lines = store::lines(cache, job)?;
    let outcomes = engine
        .answers(job, &look, &mut lines)
        .await
        .map_err(|error| stalled(job, "read the output of", &error))?;
    let wanted: BTreeMap<&str, &Line> = lines.iter().map(|l| (l.key.as_str(), l)).collect();
    let mut entries = Vec::new();
    let mut failed: Vec<(String, String)> = Vec::new();
    for outcome in outcomes {
        match outcome {
            Outcome::Answered { key, response } => {
                let Some(line) = wanted.get(key.as_str()) else {
                    continue;
                };
                entries.push(Entry {
                    provider: ProviderKind::parse(&line.provider_kind).unwrap_or(ProviderKind::Openai),
                    model: line.model.clone(),
                    sample_index: line.sample_index,
                    response,
                    key,
                });
            }
            Outcome::Failed { key, message } if wanted.contains_key(key.as_str()) => failed.push((key, message)),
            Outcome::Failed { .. } => {}
        }
    }
    let answered: HashSet<String> = entries.iter().map(|e| e.key.clone()).collect();
    let said: HashSet<String> = failed.iter().map(|(key, _)| key.clone()).collect();
    for line in &lines {
        // A line left out of the upload because it was answered meanwhile is not a failure.
        if !answered.contains(&line.key) && !said.contains(&line.key) && !cache.has(&line.key)? {
            failed.push((
                line.key.clone(),
                format!("no answer when the batch ended ({})", look.status),
            ));
        }
    }
    cache.put_many(&entries)?;
    let answered: Vec<String> = answered.into_iter().collect();
    store::settle(cache, job, &answered, &failed)?;
    summary.answered += answered.len() as u64;
    summary.failed += failed.len() as u64;
    summary.batches.push(id.clone());
    if let Some(errors) = &look.errors {
        summary.notes.push(format!("batch {id}: {errors}"));
    }
    store::advance(cache, job, State::Collected, Some(&look.status))?;
    Ok(())
}
