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

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{IsTerminal, Write};
use std::sync::Arc;

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

/// Answers stored in one transaction while a batch's output is read.
const STORE_PIECE: usize = 1_000;
/// Lines of a job rendered and recorded in one transaction: about 12 MB of lines of the batch
/// bench's size, below what collecting a batch holds. Pieces of 1,000 cost 0.5 s more at
/// 50,000 lines (SQLite's work per transaction).
const LINE_PIECE: usize = 10_000;

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

/// The calls a run will make, made one at a time when asked: a run's rendered prompts are
/// never all held at once.
pub trait Calls {
    /// How many calls there are.
    fn count(&self) -> usize;
    /// The providers the calls go to (each at least once), known without rendering a call.
    fn providers(&self) -> Vec<String>;
    /// Call number `index`, below [`Calls::count`].
    fn call(&self, index: usize) -> Result<Call, Error>;
}

/// Calls of one provider that go in one kind of job: each call's index and the bytes of its
/// line, and their sum.
#[derive(Default)]
struct Group {
    calls: Vec<(usize, usize)>,
    bytes: usize,
}

/// Send every uncached call of `calls` through its provider's batch engine, resuming first any
/// job a killed run left, and collect the answers into `cache`.
///
/// Each round looks at the calls twice: once to group them and size each group, once more to
/// write each group's lines into jobs of even size, one job at a time. Every job of a round is
/// submitted before any is waited on, so that batches run side by side.
pub async fn prefill(
    config: &Config,
    cache: &Cache,
    calls: &dyn Calls,
    env: &EnvVars,
    options: Options,
) -> Result<Summary, Error> {
    let mut summary = Summary::default();
    let jobs = store::unfinished(cache)?;
    let names: std::collections::BTreeSet<String> = jobs
        .iter()
        .map(|j| j.provider.clone())
        .chain(calls.providers())
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
    settle_jobs(cache, &mut engines, jobs, options, &mut summary).await?;
    // Each call's key, made in the first round: it canonicalizes the whole rendered prompt.
    // Shared, so that the sets below hold pointers, not copies.
    let mut keys: Vec<Arc<str>> = Vec::with_capacity(calls.count());
    let mut online_by_choice: HashSet<Arc<str>> = HashSet::new();
    for round in 1..=ROUNDS {
        let mut groups: BTreeMap<(String, String), Group> = BTreeMap::new();
        let mut seen = HashSet::new();
        let in_flight = store::in_flight(cache)?;
        for index in 0..calls.count() {
            // The first round renders every call; later ones only the calls they send again.
            let mut rendered = None;
            if round == 1 {
                let call = calls.call(index)?;
                keys.push(cache::key(&call.request).into());
                rendered = Some(call);
            }
            let key = &keys[index];
            if online_by_choice.contains(key)
                || in_flight.contains(key.as_ref())
                || seen.contains(key)
                || cache.has(key)?
            {
                continue;
            }
            seen.insert(key.clone());
            let call = match rendered {
                Some(call) => call,
                None => calls.call(index)?,
            };
            let Some(engine) = engines.get(&call.provider) else {
                online_by_choice.insert(key.clone());
                continue;
            };
            match engine.place(config, &call.provider, &call.request) {
                Ok(placed) => {
                    let group = groups.entry((call.provider, placed.group)).or_default();
                    let size = line_bytes(key, &placed.body);
                    group.calls.push((index, size));
                    group.bytes += size;
                }
                Err(why) => {
                    summary.note(format!(
                        "provider `{}`: {why}; those calls are made online",
                        call.provider
                    ));
                    online_by_choice.insert(key.clone());
                }
            }
        }
        if groups.is_empty() {
            break;
        }
        let mut jobs = Vec::new();
        for ((provider, name), group) in groups {
            let Some(engine) = engines.get(&provider) else {
                continue;
            };
            let target = even_size(group.calls.len(), group.bytes, engine.max_lines(), engine.max_bytes());
            for range in cut(&group.calls, target, engine.max_bytes()) {
                // A group smaller than a job takes, whole; past it, even jobs are below the
                // minimum only where the byte limit cut one short.
                if range.len() < engine.min_lines() {
                    summary.note(format!(
                        "provider `{provider}`: {} call(s) of `{name}` are fewer than the {} records a batch inference job takes (batch_min_records); they are made online",
                        range.len(),
                        engine.min_lines()
                    ));
                    online_by_choice.extend(group.calls[range].iter().map(|&(index, _)| keys[index].clone()));
                    continue;
                }
                let mut job: Option<Job> = None;
                for piece in group.calls[range].chunks(LINE_PIECE) {
                    let mut lines = Vec::with_capacity(piece.len());
                    for &(index, _) in piece {
                        let call = calls.call(index)?;
                        // Placed once already; a request places the same way every time.
                        let Ok(placed) = engine.place(config, &call.provider, &call.request) else {
                            online_by_choice.insert(keys[index].clone());
                            continue;
                        };
                        lines.push(Line {
                            key: keys[index].to_string(),
                            provider_kind: call.request.provider.as_str().to_string(),
                            model: call.request.model,
                            sample_index: call.request.sample_index,
                            body: placed.body,
                        });
                    }
                    match &mut job {
                        None => job = Some(store::create(cache, &provider, round, &lines)?),
                        Some(job) => store::add_lines(cache, job, &lines)?,
                    }
                }
                jobs.extend(job);
            }
        }
        let sent: u64 = jobs.iter().map(|job| job.lines).sum();
        let refused = settle_jobs(cache, &mut engines, jobs, options, &mut summary).await?;
        summary.submitted += sent - refused;
    }
    let mut left = HashSet::new();
    for key in &keys {
        if !cache.has(key)? {
            left.insert(key);
        }
    }
    summary.online = left.len() as u64;
    let by_choice = left.iter().filter(|key| online_by_choice.contains(**key)).count();
    if summary.online as usize > by_choice {
        summary.note(format!(
            "{} call(s) had no answer after {ROUNDS} rounds of batches: the run makes them online",
            summary.online as usize - by_choice
        ));
    }
    Ok(summary)
}

/// Bytes a line takes in an input file, with room for the JSON around its body.
fn line_bytes(key: &str, body: &str) -> usize {
    body.len() + key.len() + 96
}

/// The jobs of a group whose lines have these `(call, bytes)`: ranges of `target` lines, cut
/// short where the next line would pass `max_bytes`.
fn cut(lines: &[(usize, usize)], target: usize, max_bytes: usize) -> Vec<std::ops::Range<usize>> {
    let mut ranges = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (at, &(_, size)) in lines.iter().enumerate() {
        if at > start && (at - start >= target || bytes + size > max_bytes) {
            ranges.push(start..at);
            (start, bytes) = (at, 0);
        }
        bytes += size;
    }
    if start < lines.len() {
        ranges.push(start..lines.len());
    }
    ranges
}

/// Lines per job for a group of `lines` lines and `bytes` bytes: as few jobs as the limits
/// allow, of sizes as even as they can be. Filling jobs to the limit would leave a last job of
/// a few lines, which Bedrock refuses below its minimum.
fn even_size(lines: usize, bytes: usize, max_lines: usize, max_bytes: usize) -> usize {
    let jobs = lines
        .div_ceil(max_lines.max(1))
        .max(bytes.div_ceil(max_bytes.max(1)))
        .max(1);
    lines.div_ceil(jobs)
}

/// Take each of `jobs` as far as it goes: first every one to submitted (or given up, when the
/// provider refuses batches outright), then each submitted one to collected. The lines of jobs
/// given up are returned in a count: they go online.
async fn settle_jobs(
    cache: &Cache,
    engines: &mut BTreeMap<String, Engine>,
    mut jobs: Vec<Job>,
    options: Options,
    summary: &mut Summary,
) -> Result<u64, Error> {
    let mut refused: HashSet<String> = HashSet::new();
    let mut given_up = 0;
    for job in &mut jobs {
        let Some(engine) = engines.get(&job.provider) else {
            continue;
        };
        if refused.contains(&job.provider) && matches!(job.state, State::Prepared | State::Uploaded) {
            // Its provider refused a batch of this run; nothing of this one is paid yet.
            store::advance(cache, job, State::Abandoned, None)?;
        } else {
            submit(cache, engine, job, summary).await?;
        }
        if job.state == State::Abandoned {
            refused.insert(job.provider.clone());
            given_up += job.lines;
        }
    }
    for job in &mut jobs {
        if let (State::Submitted, Some(engine)) = (job.state, engines.get(&job.provider)) {
            collect(cache, engine, job, options, summary).await?;
        }
    }
    for provider in refused {
        engines.remove(&provider);
    }
    Ok(given_up)
}

/// A job's input, written out for its upload.
enum Input {
    /// The file, in a folder of its own that goes with it.
    File(InputFile),
    /// A stored line is not JSON: the job cannot be sent.
    Unreadable,
}

/// An input file in a temporary folder of its own, under the name the upload gives it.
struct InputFile {
    folder: tempfile::TempDir,
}

impl InputFile {
    const NAME: &'static str = "promptgate-batch.jsonl";

    fn path(&self) -> std::path::PathBuf {
        self.folder.path().join(Self::NAME)
    }
}

/// Write the lines of `job` that have no answer yet to a temporary file, one row at a time:
/// an input may be hundreds of megabytes, and is never held. `None` when no line is left.
fn input_file(cache: &Cache, engine: &Engine, job: &Job) -> Result<Option<Input>, Error> {
    let failed = |action, source| Error::from(crate::fs::FsError::temporary(action, source));
    let folder = tempfile::tempdir().map_err(|e| failed("create a folder for a batch's input in", e))?;
    let input = InputFile { folder };
    let file = std::fs::File::create(input.path()).map_err(|e| failed("create a batch's input file in", e))?;
    let mut writer = std::io::BufWriter::new(file);
    let (mut lines, mut unreadable) = (0usize, false);
    let mut written = Ok(());
    store::each_unanswered(cache, job, |line| match engine.line_text(&line.key, line.body) {
        Some(text) if written.is_ok() => {
            lines += 1;
            written = writer.write_all(text.as_bytes()).and_then(|()| writer.write_all(b"\n"));
        }
        Some(_) => {}
        None => unreadable = true,
    })?;
    written
        .and_then(|()| writer.flush())
        .map_err(|e| failed("write a batch's input file in", e))?;
    Ok(if unreadable {
        Some(Input::Unreadable)
    } else if lines == 0 {
        None
    } else {
        Some(Input::File(input))
    })
}

/// Take `job` from where it stands to submitted (or collected, when nothing is left to send;
/// abandoned, when the provider refuses the batch outright and nothing was paid).
async fn submit(cache: &Cache, engine: &Engine, job: &mut Job, summary: &mut Summary) -> Result<(), Error> {
    loop {
        match job.state {
            State::Prepared => {
                // Nothing is paid yet: what was answered meanwhile (a resumed job) is left out.
                let Some(input) = input_file(cache, engine, job)? else {
                    // Nothing left to send, nothing paid: done.
                    store::advance(cache, job, State::Collected, None)?;
                    return Ok(());
                };
                let uploaded = match input {
                    Input::File(file) => engine.upload(job, file.path()).await,
                    Input::Unreadable => Err(ProviderError::new(
                        FailureKind::Client,
                        "a batch line in the cache is not JSON",
                    )),
                };
                match uploaded {
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
            State::Submitted | State::Collected | State::Abandoned => return Ok(()),
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
    let mut lines = Vec::new();
    let mut readings = HashMap::new();
    store::each_line(cache, job, engine.reads_bodies(), |mut line| {
        if let Some(reading) = engine.reading(&line) {
            readings.insert(line.key.clone(), reading);
        }
        line.body = String::new();
        lines.push(line);
    })?;
    let wanted: HashMap<&str, &Line> = lines.iter().map(|l| (l.key.as_str(), l)).collect();
    let mut entries = Vec::new();
    let mut answered: HashSet<String> = HashSet::new();
    let mut failed: Vec<(String, String)> = Vec::new();
    // Answers are stored as they are read, a piece at a time: a batch's answers are never
    // all held. Storing one twice (a collection resumed) changes nothing.
    let mut stored = Ok(());
    engine
        .answers(job, &look, &readings, |outcome| match outcome {
            Outcome::Answered { key, response } => {
                let Some(line) = wanted.get(key.as_str()) else {
                    return;
                };
                answered.insert(key.clone());
                entries.push(Entry {
                    provider: ProviderKind::parse(&line.provider_kind).unwrap_or(ProviderKind::Openai),
                    model: line.model.clone(),
                    sample_index: line.sample_index,
                    response,
                    key,
                });
                if entries.len() >= STORE_PIECE {
                    if stored.is_ok() {
                        stored = cache.put_many(&entries);
                    }
                    entries.clear();
                }
            }
            Outcome::Failed { key, message } if wanted.contains_key(key.as_str()) => failed.push((key, message)),
            Outcome::Failed { .. } => {}
        })
        .await
        .map_err(|error| stalled(job, "read the output of", &error))?;
    stored?;
    cache.put_many(&entries)?;
    drop((readings, entries));
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

#[cfg(test)]
mod tests {
    use super::{cut, even_size};

    #[test]
    fn jobs_are_as_few_as_the_limits_allow_and_even() {
        // (lines, bytes, max lines, max bytes) → lines per job
        let cases = [
            (120, 12_000, 50, 1_000_000, 40),
            (100, 10_000, 50, 1_000_000, 50),
            (50_001, 5_000_000, 50_000, 190_000_000, 25_001),
            (10, 1_000, 50_000, 190_000_000, 10),
            // Bytes decide: 3 jobs for 250 MB under 100 MB each.
            (9, 250_000_000, 50_000, 100_000_000, 3),
            (1, 10, 1, 1, 1),
        ];
        for (lines, bytes, max_lines, max_bytes, size) in cases {
            assert_eq!(
                even_size(lines, bytes, max_lines, max_bytes),
                size,
                "{lines} lines, {bytes} bytes"
            );
        }
        // A group just over the limit no longer leaves a last job of one line.
        let size = even_size(50_001, 0, 50_000, 190_000_000);
        assert!(50_001 - size >= 25_000);
    }

    #[test]
    fn jobs_are_cut_at_the_even_size_or_where_the_bytes_run_out() {
        let lines: Vec<(usize, usize)> = (0..7).map(|i| (i, 10)).collect();
        assert_eq!(cut(&lines, 3, 1_000), [0..3, 3..6, 6..7]);
        let whole = cut(&lines, 7, 1_000);
        assert_eq!((whole.len(), whole[0].clone()), (1, 0..7));
        // 25 bytes a job: two lines each, whatever the size says.
        assert_eq!(cut(&lines, 7, 25), [0..2, 2..4, 4..6, 6..7]);
        // A line larger than the limit still goes, alone.
        let large = [(0, 10), (1, 100), (2, 10)];
        assert_eq!(cut(&large, 3, 50), [0..1, 1..2, 2..3]);
        assert!(cut(&[], 3, 50).is_empty());
    }
}
