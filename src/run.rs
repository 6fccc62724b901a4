//! The engine of `promptgate run`: load → render → sample (cache or provider) → grade →
//! aggregate. Each step takes the previous step's value; reports are made from the result.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::sync::Semaphore;

use crate::cache::{self, Cache};
use crate::case::{self, LoadedCase};
use crate::config::{self, Config, GraderConfig, ModelConfig, ProviderKind};
use crate::env::EnvVars;
use crate::error::Error;
use crate::excerpt::excerpt;
use crate::grader::judge::JudgeGrader;
use crate::grader::{Grade, Graders, Outcome};
use crate::lease;
use crate::prompt::{Prompt, RenderedPrompt};
use crate::provider::{FailureKind, Provider, ProviderError, Request, Response, SamplingParams};
use crate::run_record::{
    Calls, CaseResult, Latency, Miss, RunRecord, SuiteResult, Tokens, Verdict, RUN_RECORD_SCHEMA_VERSION,
};
use crate::secrets::Secrets;
use crate::stats::{self, CaseOutcome, IntervalMethod};

/// What to run and how.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub config_path: PathBuf,
    pub cache_path: PathBuf,
    /// Suites to run; empty means every suite.
    pub suites: Vec<String>,
    /// Models to run each suite on; empty means each suite's own list.
    pub models: Vec<String>,
    /// Prompt versions to run each suite with (`default`, a variant name or a prompt file);
    /// empty means the suite's own prompt.
    pub prompts: Vec<String>,
    /// Samples per case, overriding the suites' `samples`.
    pub samples: Option<u32>,
    pub concurrency: Option<usize>,
    /// Serve from the cache only; a miss makes the run inconclusive.
    pub offline: bool,
    pub max_error_rate: Option<f64>,
    pub interval: IntervalMethod,
    /// Show a progress bar on stderr.
    pub progress: bool,
    pub env: EnvVars,
}

/// A suite × model, ready to sample.
struct Selection {
    suite: String,
    prompt_name: String,
    model_name: String,
    model: ModelConfig,
    provider_name: String,
    prompt_sha256: String,
    samples: u32,
    grader: Graders,
    judge: Option<Arc<Judge>>,
    cases: Vec<LoadedCase>,
    /// Rendered request per case and sample, in case order.
    requests: Vec<Vec<Request>>,
}

/// The judge of a suite: the rubric and the model that reads it.
struct Judge {
    rubric: Prompt,
    model: ModelConfig,
    provider_name: String,
    provider_kind: ProviderKind,
}

impl Judge {
    /// The judge call for one answer of one case. The judge samples once, with its own seed:
    /// the same answer always gets the same (cached) verdict.
    fn request(&self, loaded: &LoadedCase, response: &Response) -> Result<Request, Error> {
        let mut judged = loaded.clone();
        judged.case.vars = JudgeGrader::rubric_vars(
            &loaded.case.vars,
            response.text.as_deref().unwrap_or_default(),
            &loaded.case.expect,
        );
        Ok(Request {
            provider: self.provider_kind,
            model: self.model.model.clone(),
            prompt: Arc::new(self.rubric.render(&judged)?),
            params: SamplingParams::for_sample(&self.model, None, 0),
            sample_index: 0,
        })
    }
}

/// The answer to one sample.
enum Answer {
    Cached(Response),
    Live { response: Response, attempts: u32 },
    Failed { error: ProviderError, attempts: u32 },
}

/// Run the selection and return its record. Provider failures do not make this an `Err`: they
/// are counted, and the record's verdict says whether the run can be trusted.
pub fn run(options: &RunOptions) -> Result<RunRecord, Error> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::internal(format!("failed to start the async runtime: {e}")))?;
    runtime.block_on(run_async(options))
}

/// [`run`] for callers that already have a tokio runtime.
pub async fn run_async(options: &RunOptions) -> Result<RunRecord, Error> {
    let started_at = jiff::Timestamp::now();
    let clock = Instant::now();
    let config = Config::load(&options.config_path)?;
    let selections = select(&config, options)?;
    let total: usize = selections
        .iter()
        .map(|s| s.requests.iter().map(Vec::len).sum::<usize>())
        .sum();
    if total == 0 {
        return Err(Error::NothingSelected {
            message: "the selected suites have no cases".into(),
            hint: Some("add case files under each suite's `cases` folder".into()),
        });
    }
    // `--offline` only reads: a cache in a read-only folder still answers.
    let cache = Arc::new(if options.offline && options.cache_path.is_file() {
        Cache::open_read_only(&options.cache_path)?
    } else {
        Cache::open(&options.cache_path)?
    });
    let mut cache_failure = None;

    let mut answers = unanswered(&selections);
    let items = selections.iter().enumerate().flat_map(|(s, selection)| {
        selection.requests.iter().enumerate().flat_map(move |(c, requests)| {
            requests
                .iter()
                .enumerate()
                .map(move |(j, request)| ((s, c, j), request, selection.provider_name.as_str()))
        })
    });
    let fetched = fetch(&config, options, &cache, items.collect()).await?;
    cache_failure = cache_failure.or(fetched.cache_failure);
    for ((s, c, j), answer) in fetched.answers {
        answers[s][c][j] = Some(answer);
    }
    // Judges read the answers every other grader passed; their calls are cached like any other.
    let mut judgments = unanswered(&selections);
    let judge_requests = judge_requests(&selections, &answers)?;
    let items = judge_requests
        .iter()
        .map(|(index, request, provider)| (*index, request, provider.as_str()))
        .collect();
    let fetched = fetch(&config, options, &cache, items).await?;
    cache_failure = cache_failure.or(fetched.cache_failure);
    for ((s, c, j), answer) in fetched.answers {
        judgments[s][c][j] = Some(answer);
    }

    let max_error_rate = options.max_error_rate.unwrap_or(config.defaults.max_error_rate);
    let mut calls = Calls::default();
    let mut results = Vec::with_capacity(selections.len());
    for ((selection, answers), judgments) in selections.iter().zip(answers).zip(judgments) {
        let result = aggregate(
            selection,
            answers,
            judgments,
            max_error_rate,
            config.defaults.confidence_level,
            options.interval,
        );
        calls.add(&result.calls);
        results.push(result);
    }
    let verdict = if results.iter().any(|r| r.verdict == Verdict::Inconclusive) {
        Verdict::Inconclusive
    } else {
        Verdict::Pass
    };
    Ok(RunRecord {
        schema_version: RUN_RECORD_SCHEMA_VERSION,
        promptgate_version: env!("CARGO_PKG_VERSION").to_string(),
        command: "run".into(),
        verdict,
        calls,
        results,
        started_at: started_at.to_string(),
        duration_ms: u64::try_from(clock.elapsed().as_millis()).unwrap_or(u64::MAX),
        cache_failure,
    })
}

/// The suite × model pairs `options` selects, checked as [`run`] checks them (config, cases,
/// prompts, graders), without a call: for what must be checked before anything is paid for.
pub fn selected_pairs(options: &RunOptions) -> Result<Vec<(String, String)>, Error> {
    let config = Config::load(&options.config_path)?;
    Ok(select(&config, options)?
        .into_iter()
        .map(|s| (s.suite, s.model_name))
        .collect())
}

/// Resolve suites and models, load prompts and cases, and render every request. All input
/// errors surface here, before any call is made.
fn select(config: &Config, options: &RunOptions) -> Result<Vec<Selection>, Error> {
    if config.suites.is_empty() {
        return Err(Error::NothingSelected {
            message: format!("`{}` defines no suites", config.path.display()),
            hint: Some("add a [suites.NAME] table; see the README".into()),
        });
    }
    for name in &options.suites {
        if !config.suites.contains_key(name) {
            return Err(Error::usage(format!("unknown suite `{name}`")).with_hint(format!(
                "suites in `{}`: {}",
                config.path.display(),
                config::names(config.suites.keys())
            )));
        }
    }
    for name in &options.models {
        if !config.models.contains_key(name) {
            return Err(Error::usage(format!("unknown model `{name}`")).with_hint(format!(
                "models in `{}`: {}",
                config.path.display(),
                config::names(config.models.keys())
            )));
        }
    }
    let mut selections = Vec::new();
    for (suite_name, suite) in &config.suites {
        if !options.suites.is_empty() && !options.suites.contains(suite_name) {
            continue;
        }
        let cases = case::load_cases(&config.resolve(&suite.cases), &config.root)?;
        let default_prompt = [config::DEFAULT_PROMPT.to_string()];
        let prompt_names = if options.prompts.is_empty() {
            &default_prompt[..]
        } else {
            &options.prompts[..]
        };
        for prompt_name in prompt_names {
            let path = suite.prompt_file(config, prompt_name).ok_or_else(|| {
                Error::usage(format!("suite `{suite_name}` has no prompt `{prompt_name}`")).with_hint(format!(
                    "use `{}`, a variant of the suite ({}), or a path to a prompt file",
                    config::DEFAULT_PROMPT,
                    config::names(suite.variants.keys())
                ))
            })?;
            let prompt = Prompt::load(&path)?;
            selections.extend(select_models(
                config,
                options,
                suite_name,
                suite,
                prompt_name,
                &prompt,
                &cases,
            )?);
        }
    }
    if selections.is_empty() {
        return Err(Error::NothingSelected {
            message: "no suite × model matches the selection".into(),
            hint: Some("check --suite and --model, and each suite's `models` list".into()),
        });
    }
    Ok(selections)
}

/// One suite with one prompt version on each selected model.
fn select_models(
    config: &Config,
    options: &RunOptions,
    suite_name: &str,
    suite: &config::SuiteConfig,
    prompt_name: &str,
    prompt: &Prompt,
    cases: &[LoadedCase],
) -> Result<Vec<Selection>, Error> {
    let grader = Graders::new(&suite.grader, prompt, config)?;
    let judge = suite
        .grader
        .iter()
        .find_map(|g| match g {
            GraderConfig::Judge { model, rubric } => Some((model, rubric)),
            _ => None,
        })
        .map(|(model_name, rubric)| -> Result<Arc<Judge>, Error> {
            let model = config.models[model_name].clone();
            let judge = Judge {
                rubric: Prompt::load(&config.resolve(rubric))?,
                provider_kind: config.providers[&model.provider].kind,
                provider_name: model.provider.clone(),
                model,
            };
            // A rubric that cannot render fails now, not after every answer was paid for.
            let empty = Response::from_text("");
            for loaded in cases {
                judge.request(loaded, &empty)?;
            }
            Ok(Arc::new(judge))
        })
        .transpose()?;
    for loaded in cases {
        grader.check_expect(&loaded.case.expect).map_err(|message| {
            Error::invalid(
                "case file",
                &loaded.file,
                loaded.line.map(|l| format!(" at line {l}")).unwrap_or_default(),
                format!("case `{}`: {message}", loaded.case.id),
            )
            .with_hint(format!(
                "suite `{suite_name}` grades with {}; the README's Graders section shows each one's `expect`",
                suite
                    .grader
                    .iter()
                    .map(GraderConfig::kind)
                    .collect::<Vec<_>>()
                    .join(" + ")
            ))
        })?;
    }
    let rendered = cases
        .iter()
        .map(|c| prompt.render(c).map(Arc::new))
        .collect::<Result<Vec<_>, _>>()?;
    let samples = options.samples.unwrap_or(suite.samples).max(1);
    let model_names = if options.models.is_empty() {
        &suite.models
    } else {
        &options.models
    };
    let mut selections = Vec::with_capacity(model_names.len());
    for model_name in model_names {
        let model = &config.models[model_name];
        let provider = &config.providers[&model.provider];
        let requests = rendered
            .iter()
            .map(|prompt| {
                (0..samples)
                    .map(|sample_index| Request {
                        provider: provider.kind,
                        model: model.model.clone(),
                        prompt: Arc::clone(prompt),
                        params: SamplingParams::for_sample(model, suite.max_tokens, sample_index),
                        sample_index,
                    })
                    .collect()
            })
            .collect();
        selections.push(Selection {
            suite: suite_name.to_string(),
            prompt_name: prompt_name.to_string(),
            model_name: model_name.clone(),
            model: model.clone(),
            provider_name: model.provider.clone(),
            prompt_sha256: prompt.sha256.clone(),
            samples,
            grader: grader.clone(),
            judge: judge.clone(),
            cases: cases.to_vec(),
            requests,
        });
    }
    Ok(selections)
}

/// One empty slot per sample of every selection, filled by (selection, case, sample).
fn unanswered(selections: &[Selection]) -> Vec<Vec<Vec<Option<Answer>>>> {
    selections
        .iter()
        .map(|s| s.requests.iter().map(|r| r.iter().map(|_| None).collect()).collect())
        .collect()
}

/// The answers of [`fetch`], and why the cache stopped taking them, if it did.
struct Fetched<I> {
    answers: Vec<(I, Answer)>,
    cache_failure: Option<String>,
}

/// The first and the longest wait before looking again at an answer another run is fetching.
const LEASE_POLL_FIRST: std::time::Duration = std::time::Duration::from_millis(25);
const LEASE_POLL_MAX: std::time::Duration = std::time::Duration::from_secs(1);

/// What a look at the cache before a call found.
enum Look {
    /// The lease is this run's: call the provider.
    Mine,
    /// Another run stored the answer.
    Answered(Response),
    /// Another run is fetching it.
    Wait,
}

/// Answer each request from the cache or, on a miss, from its provider (named beside it).
/// Cache look-ups come first, so that only misses need a provider; answers are committed to
/// the cache as they arrive. Sampling stops early when a provider is unreachable (an error:
/// nothing could be judged) or a commit fails (the answers so far are kept and reported).
async fn fetch<I: Copy + Send + 'static>(
    config: &Config,
    options: &RunOptions,
    cache: &Arc<Cache>,
    items: Vec<(I, &Request, &str)>,
) -> Result<Fetched<I>, Error> {
    let mut answers = Vec::with_capacity(items.len());
    let mut pending = Vec::new();
    // The k samples of a case share one rendered prompt, and so its share of the key.
    let mut prompt_keys: HashMap<*const RenderedPrompt, cache::PromptKey> = HashMap::new();
    for (index, request, provider) in items {
        let prompt_key = prompt_keys
            .entry(Arc::as_ptr(&request.prompt))
            .or_insert_with(|| cache::PromptKey::of(&request.prompt));
        let key = cache::key_with(request, prompt_key);
        match cache.get(&key)? {
            Some(response) => answers.push((index, Answer::Cached(response))),
            None if options.offline => answers.push((
                index,
                Answer::Failed {
                    error: ProviderError::new(FailureKind::OfflineMiss, "not in the cache (--offline)"),
                    attempts: 0,
                },
            )),
            None => pending.push((index, key, request, provider)),
        }
    }
    if pending.is_empty() {
        return Ok(Fetched {
            answers,
            cache_failure: None,
        });
    }
    let mut names: Vec<&str> = pending.iter().map(|(_, _, _, provider)| *provider).collect();
    names.sort_unstable();
    names.dedup();
    let providers = build_providers(config, &names, &options.env).await?;
    // Provider messages quote response bodies, which a server may fill with our own headers.
    let key_names: Vec<&str> = names
        .iter()
        .map(|name| config.providers[*name].api_key_env.as_str())
        .collect();
    let secrets = Arc::new(Secrets::from_env(&options.env, &key_names));
    let concurrency = options.concurrency.unwrap_or(config.defaults.concurrency).max(1);
    let progress = progress_bar(options.progress, pending.len());
    let semaphore = Arc::new(Semaphore::new(concurrency));
    let provider_limits: HashMap<&str, Arc<Semaphore>> = providers
        .keys()
        .map(|name| {
            let limit = config.providers[name].concurrency.unwrap_or(concurrency);
            (name.as_str(), Arc::new(Semaphore::new(limit)))
        })
        .collect();
    let writer = Arc::new(cache::Writer::start(Arc::clone(cache)));
    // Runs sharing this cache take a lease before paying for an answer (see `lease`).
    let holder = Arc::new(lease::Holder::new());
    let mut tasks = tokio::task::JoinSet::new();
    for (index, key, request, provider_name) in pending {
        let request = request.clone();
        let provider = Arc::clone(&providers[provider_name]);
        let provider_limit = Arc::clone(&provider_limits[provider_name]);
        let (semaphore, writer, progress) = (Arc::clone(&semaphore), Arc::clone(&writer), progress.clone());
        let (secrets, cache, holder) = (Arc::clone(&secrets), Arc::clone(cache), Arc::clone(&holder));
        let settings = &config.providers[provider_name];
        let lasting = lease::duration(
            std::time::Duration::from_secs_f64(settings.timeout_secs),
            settings.max_attempts,
            std::time::Duration::from_millis(settings.retry_max_ms),
        );
        tasks.spawn(async move {
            let mut wait = LEASE_POLL_FIRST;
            // Neither semaphore is ever closed, so acquiring cannot fail. Both are fair
            // (FIFO), so calls start in case order: the k samples of a case reach the server
            // back to back, which lets a local server reuse the prompt it just processed.
            let (_provider_permit, _permit) = loop {
                let provider_permit = Arc::clone(&provider_limit).acquire_owned().await.ok();
                let permit = Arc::clone(&semaphore).acquire_owned().await.ok();
                if writer.failed() {
                    progress.inc(1);
                    let error = ProviderError::new(
                        FailureKind::NotAttempted,
                        "not attempted: the cache could not be written, so sampling stopped",
                    );
                    return Ok::<_, Error>((index, Answer::Failed { error, attempts: 0 }));
                }
                let claimed = {
                    let (cache, key, holder) = (Arc::clone(&cache), key.clone(), Arc::clone(&holder));
                    tokio::task::spawn_blocking(move || match cache.claim(&key, &holder, lasting)? {
                        lease::Claim::Taken => Ok(Look::Mine),
                        lease::Claim::Answered => Ok(cache.get(&key)?.map_or(Look::Wait, Look::Answered)),
                        lease::Claim::Held => Ok(Look::Wait),
                    })
                    .await
                    .map_err(|e| Error::internal(format!("a cache task failed: {e}")))?
                };
                match claimed {
                    Ok(Look::Mine) => break (provider_permit, permit),
                    // Another run paid for this answer while this one waited.
                    Ok(Look::Answered(response)) => {
                        progress.inc(1);
                        return Ok((index, Answer::Cached(response)));
                    }
                    // Held by another run (or answered and pruned at once): wait, without
                    // keeping a slot that a call of this run could use, and look again.
                    Ok(Look::Wait) => {
                        drop((provider_permit, permit));
                        tokio::time::sleep(wait).await;
                        wait = (wait * 2).min(LEASE_POLL_MAX);
                    }
                    // A cache that cannot take a lease cannot keep an answer either.
                    Err(error) => {
                        writer.fail(error);
                    }
                }
            };
            let mut attempted = provider.complete(&request).await;
            if let Err(error) = &mut attempted.result {
                error.message = secrets.mask(&error.message).into_owned();
            }
            progress.inc(1);
            let answer = match attempted.result {
                Ok(response) => {
                    // Committed as it arrives, so a killed run keeps every answer it received;
                    // the commit ends the lease.
                    writer.send(cache::Entry::new(key, &request, response.clone()))?;
                    Answer::Live {
                        response,
                        attempts: attempted.attempts,
                    }
                }
                Err(error) => {
                    // Another run may try; a lease that cannot be ended expires.
                    let _ = tokio::task::spawn_blocking(move || cache.release(&key, &holder)).await;
                    Answer::Failed {
                        error,
                        attempts: attempted.attempts,
                    }
                }
            };
            Ok::<_, Error>((index, answer))
        });
    }
    while let Some(joined) = tasks.join_next().await {
        answers.push(joined.map_err(|e| Error::internal(format!("a sampling task failed: {e}")))??);
    }
    progress.finish_and_clear();
    // Leases of calls never made (sampling stopped early); a failure here only delays other
    // runs until the leases expire.
    let _ = cache.release_all(&holder);
    // Every task has ended, so this is the last reference.
    let cache_failure = match Arc::into_inner(writer).map(cache::Writer::finish) {
        Some(Err(error)) => {
            let lost = answers
                .iter()
                .filter(|(_, answer)| matches!(answer, Answer::Live { .. }))
                .count();
            Some(format!(
                "{error}; sampling stopped there. Up to {lost} answer(s) received in this run may not be stored and would be fetched again by the next run"
            ))
        }
        _ => None,
    };
    for (name, provider) in &providers {
        if let Some(first_error) = provider.reachability.unreachable() {
            return Err(Error::Unreachable {
                provider: name.clone(),
                endpoint: provider.endpoint.clone(),
                first_error: secrets.mask(&first_error).into_owned(),
                hint: Some(format!(
                    "{} connection attempts in a row failed and none succeeded, so sampling stopped. Is the server running? For the local model: ci/local-model.sh start",
                    crate::provider::UNREACHABLE_AFTER
                )),
            });
        }
    }
    Ok(Fetched { answers, cache_failure })
}

/// A judge call: (selection, case, sample), the request, the judge's provider.
type JudgeCall = ((usize, usize, usize), Request, String);

/// The judge calls a run needs: one per answer that every other grader passed, for the
/// selections whose graders include a judge.
fn judge_requests(selections: &[Selection], answers: &[Vec<Vec<Option<Answer>>>]) -> Result<Vec<JudgeCall>, Error> {
    let mut requests = Vec::new();
    for (s, selection) in selections.iter().enumerate() {
        let Some(judge) = &selection.judge else { continue };
        for (c, samples) in answers[s].iter().enumerate() {
            let loaded = &selection.cases[c];
            for (j, answer) in samples.iter().enumerate() {
                let response = match answer {
                    Some(Answer::Cached(response) | Answer::Live { response, .. }) => response,
                    _ => continue,
                };
                if !selection.grader.needs_judgment(response, &loaded.case.expect) {
                    continue;
                }
                requests.push(((s, c, j), judge.request(loaded, response)?, judge.provider_name.clone()));
            }
        }
    }
    Ok(requests)
}

async fn build_providers(
    config: &Config,
    names: &[&str],
    env: &EnvVars,
) -> Result<HashMap<String, Arc<Provider>>, Error> {
    let mut providers = HashMap::new();
    for name in names {
        let provider = Provider::new(name, &config.providers[*name], env).await?;
        providers.insert((*name).to_string(), Arc::new(provider));
    }
    Ok(providers)
}

fn progress_bar(enabled: bool, total: usize) -> ProgressBar {
    if !enabled {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(total as u64), ProgressDrawTarget::stderr());
    if let Ok(style) =
        ProgressStyle::with_template("{spinner} calling models {pos}/{len} [{elapsed_precise}] {wide_bar} eta {eta}")
    {
        bar.set_style(style);
    }
    bar
}

/// The cost of `tokens` at the model's prices, when both prices are configured.
fn cost(model: &ModelConfig, tokens: &Tokens) -> Option<f64> {
    let (input, output) = (model.price_input_per_million?, model.price_output_per_million?);
    Some((tokens.input as f64 * input + tokens.output as f64 * output) / 1e6)
}

/// Grade every answer of one suite × model and compute its accuracy.
fn aggregate(
    selection: &Selection,
    answers: Vec<Vec<Option<Answer>>>,
    judgments: Vec<Vec<Option<Answer>>>,
    max_error_rate: f64,
    confidence_level: f64,
    interval: IntervalMethod,
) -> SuiteResult {
    let mut calls = Calls::default();
    let mut tokens = Tokens::default();
    let mut errors_by_kind = BTreeMap::new();
    let mut first_error = None;
    let mut invalid_outputs = 0;
    let mut latencies = Vec::new();
    let mut per_case = Vec::with_capacity(selection.cases.len());
    let mut outcomes = Vec::with_capacity(selection.cases.len());
    for ((loaded, samples), judged) in selection.cases.iter().zip(answers).zip(judgments) {
        let mut case_result = CaseResult {
            id: loaded.case.id.clone(),
            correct: 0,
            samples: 0,
            invalid: 0,
            errors: 0,
            misses: Vec::new(),
        };
        for ((sample_index, answer), judgment) in samples.into_iter().enumerate().zip(judged) {
            let response = match answer {
                Some(Answer::Cached(response)) => {
                    calls.cached += 1;
                    response
                }
                Some(Answer::Live { response, attempts }) => {
                    calls.made += 1;
                    calls.attempts += u64::from(attempts);
                    response
                }
                Some(Answer::Failed { error, attempts }) => {
                    calls.failed += 1;
                    calls.attempts += u64::from(attempts);
                    case_result.errors += 1;
                    *errors_by_kind.entry(error.kind).or_insert(0) += 1;
                    first_error
                        .get_or_insert_with(|| format!("case `{}` sample {sample_index}: {error}", loaded.case.id));
                    continue;
                }
                // Every pending sample is answered before aggregation; count a gap as a failure.
                None => {
                    calls.failed += 1;
                    case_result.errors += 1;
                    continue;
                }
            };
            latencies.push(response.latency_ms);
            if let Some(usage) = response.usage {
                tokens.input += usage.input_tokens;
                tokens.output += usage.output_tokens;
            }
            // A judge's call counts like any other: its tokens are spent, and when it failed the
            // sample cannot be graded, so it is an error, not a wrong answer.
            let judgment = match judgment {
                Some(Answer::Cached(judgment)) => {
                    calls.cached += 1;
                    Some(judgment)
                }
                Some(Answer::Live { response, attempts }) => {
                    calls.made += 1;
                    calls.attempts += u64::from(attempts);
                    Some(response)
                }
                Some(Answer::Failed { error, attempts }) => {
                    calls.failed += 1;
                    calls.attempts += u64::from(attempts);
                    case_result.errors += 1;
                    *errors_by_kind.entry(error.kind).or_insert(0) += 1;
                    first_error.get_or_insert_with(|| {
                        format!("case `{}` sample {sample_index} (judge): {error}", loaded.case.id)
                    });
                    continue;
                }
                None => None,
            };
            if let Some(usage) = judgment.as_ref().and_then(|j| j.usage) {
                tokens.input += usage.input_tokens;
                tokens.output += usage.output_tokens;
            }
            let Grade { outcome, reason } = selection
                .grader
                .grade(&response, &loaded.case.expect, judgment.as_ref());
            case_result.samples += 1;
            match outcome {
                Outcome::Correct => case_result.correct += 1,
                Outcome::Wrong | Outcome::Invalid => {
                    if outcome == Outcome::Invalid {
                        case_result.invalid += 1;
                        invalid_outputs += 1;
                    }
                    case_result.misses.push(Miss {
                        sample: sample_index as u32,
                        outcome,
                        reason,
                        excerpt: excerpt(response.text.as_deref().unwrap_or_default(), 120),
                    });
                }
            }
        }
        outcomes.push(CaseOutcome {
            correct: case_result.correct,
            samples: case_result.samples,
        });
        per_case.push(case_result);
    }
    let accuracy = stats::accuracy(&outcomes, confidence_level, interval);
    let total = calls.made + calls.cached + calls.failed;
    let error_rate = if total == 0 {
        0.0
    } else {
        calls.failed as f64 / total as f64
    };
    let offline_miss = errors_by_kind.contains_key(&FailureKind::OfflineMiss);
    let verdict = if offline_miss || error_rate > max_error_rate || accuracy.is_none() {
        Verdict::Inconclusive
    } else {
        Verdict::Pass
    };
    SuiteResult {
        suite: selection.suite.clone(),
        model: selection.model_name.clone(),
        model_id: selection.model.model.clone(),
        provider: selection.provider_name.clone(),
        prompt: selection.prompt_name.clone(),
        prompt_sha256: selection.prompt_sha256.clone(),
        cases: selection.cases.len(),
        samples_per_case: selection.samples,
        accuracy: accuracy.map(|a| a.estimate),
        cases_graded: accuracy.map_or(0, |a| a.cases),
        effective_sample_size: accuracy.map(|a| a.effective_sample_size),
        design_effect: accuracy.map(|a| a.design_effect),
        invalid_outputs,
        errors: calls.failed,
        error_rate,
        errors_by_kind,
        first_error,
        calls,
        tokens,
        cost_usd: cost(&selection.model, &tokens),
        latency: Latency::of(&mut latencies),
        verdict,
        baseline: None,
        per_case,
    }
}
