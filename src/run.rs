//! The engine of `promptgate run`: load → render → sample (cache or provider) → grade →
//! aggregate. Each step takes the previous step's value; reports are made from the result.
//!
//! Sampling streams: each selection's [`SamplingPolicy`] names the samples of a look, the
//! `Sampler` yields their answers as they arrive, and each answer is graded at once (a grader
//! that needs a call, the judge, gets it through the same sampler) into its case's tally. When
//! the look's answers are in, the policies are asked again; when none wants more, the tallies
//! are aggregated.

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use crate::aggregate::{self, Identity, Settings};
use crate::answers::CaseDetail;
use crate::baseline::Baseline;
use crate::cache::Cache;
use crate::case::{self, Cases, LoadedCase};
use crate::case_filter::{CaseFilter, Filtered, LeftOut};
use crate::config::{self, Config, ModelConfig};
use crate::env::EnvVars;
use crate::error::Error;
use crate::grader::{Assessment, Expectations, Graders, Question};
use crate::prompt::Prompt;
use crate::prompt_store::{self, HeldBudget, PromptStore, PromptStoreBuilder};
use crate::provider::{ProviderKind, Request, Response};
use crate::robustness::{Family, FieldPath, Robustness};
use crate::run_record::{GradedVariant, RunRecord, SuiteResult};
use crate::sampler::{Sampler, SamplerOptions};
use crate::sampling::{Fixed, Look, SamplingPolicy, Sequential};
use crate::sequential::Design;
use crate::shard::{Shard, ShardRecord};
use crate::stats::IntervalMethod;
use crate::suite;
use crate::tally::{Answer, CaseTally, Purpose, SharedTexts, Totals};

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
    /// Sample as a sequential gate against these baselines, stopping when the verdict is
    /// clear; `None` samples every case k times.
    pub sequential: Option<SequentialOptions>,
    /// A sampling epoch (`drift`): answers are cached under it, apart from every other run's.
    pub epoch: Option<String>,
    /// Keep what each case checks, its prompt and every sample's answer in the record (for a
    /// report that shows answers, and for baselines); otherwise only counts and misses.
    pub answers: bool,
    /// Run only this shard of every suite's cases; the record then carries what `merge`
    /// needs to rebuild the whole run.
    pub shard: Option<Shard>,
    /// Send every uncached call through the provider's batch engine first (see `batch`); the
    /// run is priced at batch prices when the batches answered every call.
    pub batch: bool,
    /// Only say what the run would ask ([`dry_run`]); a command branches on it before running.
    pub dry_run: bool,
    /// Refuse to start when more calls than this would go to the providers (counted as
    /// [`dry_run`] counts them, before the first call), and make no more than this many.
    pub max_calls: Option<u64>,
    /// Run only the cases this chooses (`--case`, `--tag`); `None` runs every case.
    pub case_filter: Option<CaseFilter>,
}

impl RunOptions {
    /// Every suite on its own models, prompts and k, online, with nothing else asked: what a
    /// caller then changes the fields of.
    pub fn new(config_path: PathBuf, cache_path: PathBuf, env: EnvVars) -> RunOptions {
        RunOptions {
            config_path,
            cache_path,
            suites: Vec::new(),
            models: Vec::new(),
            prompts: Vec::new(),
            samples: None,
            concurrency: None,
            offline: false,
            max_error_rate: None,
            interval: IntervalMethod::default(),
            progress: false,
            env,
            sequential: None,
            epoch: None,
            answers: false,
            shard: None,
            batch: false,
            dry_run: false,
            max_calls: None,
            case_filter: None,
        }
    }
}

/// What a sequential gate needs to decide between looks: the baselines and the test.
#[derive(Debug, Clone, PartialEq)]
pub struct SequentialOptions {
    pub baseline_dir: PathBuf,
    /// One-sided level of each pair's sequence of looks.
    pub alpha: f64,
    pub margin: f64,
    pub exact: bool,
}

/// A suite × model, ready to sample.
#[derive(Clone)]
struct Selection {
    suite: String,
    prompt_name: String,
    model_name: String,
    model: ModelConfig,
    provider_name: String,
    provider_kind: ProviderKind,
    prompt_sha256: String,
    samples: u32,
    /// The suite's `max_tokens`, over the model's.
    max_tokens: Option<u32>,
    grader: Graders,
    /// Shared by the selections of one suite (every model, every family): a suite's cases are
    /// loaded once and never copied.
    cases: Arc<Cases>,
    /// What each case expects of the graders, parsed once (shared by the models of a suite).
    expectations: Arc<Vec<Expectations>>,
    /// The rendered prompt of each case, in case order: its k samples share it.
    prompts: Arc<PromptStore>,
    /// A family's: every variant's rendered prompt (a shard's shares the suite's); empty for
    /// the suite itself.
    variant_prompts: Arc<PromptStore>,
    epoch: Option<Arc<str>>,
    /// A robustness family's selection (`suite~family`): its variants, one per sample of each
    /// case, and which payload or change each is.
    family: Option<Arc<FamilyVariants>>,
    /// In a shard, each case's place among the suite's cases (what `expectations` and a merged
    /// record are indexed by); `None` when every case is here.
    positions: Option<Vec<usize>>,
    /// Set when `--case` or `--tag` chose the cases: by what, among how many.
    filtered: Option<Filtered>,
}

/// The variants of a family, for the cases that have any.
struct FamilyVariants {
    family: Family,
    /// The suite the family varies.
    suite: String,
    /// Per case, per sample: the variant's payload or change, and where its rendered prompt
    /// is in the selection's `variant_prompts`.
    variants: Vec<Vec<(String, usize)>>,
    /// Cases with nothing to vary.
    cases_left_out: usize,
}

impl Selection {
    /// The case at `case` among all the suite's cases (it differs in a shard).
    fn position(&self, case: usize) -> usize {
        self.positions.as_ref().map_or(case, |positions| positions[case])
    }

    /// This selection with only the cases of `shard`.
    fn shard(self, shard: Shard) -> Selection {
        let keep: Vec<usize> = (0..self.cases.len())
            .filter(|&i| shard.contains(self.cases.id(i)))
            .collect();
        let family = self.family.as_ref().map(|family| {
            Arc::new(FamilyVariants {
                family: family.family,
                suite: family.suite.clone(),
                variants: keep.iter().map(|&i| family.variants[i].clone()).collect(),
                // The whole suite's, as the unsharded run reports it.
                cases_left_out: family.cases_left_out,
            })
        });
        Selection {
            cases: Arc::new(self.cases.subset(&keep)),
            prompts: Arc::new(self.prompts.subset(&keep)),
            family,
            positions: Some(keep),
            ..self
        }
    }

    /// The call for one sample of one case.
    fn request(&self, case: usize, sample_index: u32) -> Result<Request, Error> {
        // A family's sample j is its case's variant j.
        let prompt = match &self.family {
            Some(family) => self
                .variant_prompts
                .get(family.variants[case][sample_index as usize].1)?,
            None => self.prompts.get(case)?,
        };
        Ok(Request {
            provider: self.provider_kind,
            model: self.model.model.clone(),
            prompt,
            params: self.model.sampling_params(self.max_tokens, sample_index),
            sample_index,
            epoch: self.epoch.clone(),
        })
    }
}

/// A call the engine made: for which sample of which case of which selection, and for what.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Job {
    selection: usize,
    case: usize,
    sample: u32,
    purpose: Purpose,
}

/// What a command checks of the selected suite × model pairs once the selection is resolved
/// and before anything is paid for (that their baselines exist, or can be written).
pub type Precondition<'a> = &'a dyn Fn(&[(String, String)]) -> Result<(), Error>;

/// Run the selection and return its record. Provider failures do not make this an `Err`: they
/// are counted, and the record's verdict says whether the run can be trusted.
pub fn run(options: &RunOptions) -> Result<RunRecord, Error> {
    run_checked(options, &|_| Ok(()))
}

/// Threads for blocking work (a call's cache lease, a host name's lookup). Every call claims
/// its lease on one, and the leases wait for one SQLite connection in turn, so more threads
/// only wait: with tokio's default of 512, a run at C = 64 kept 64 threads, each with its
/// allocator's pages, 4 MiB more at its peak on 250,000 samples, and no faster.
const BLOCKING_THREADS: usize = 8;

/// [`run`], with `precondition` checked on the selected pairs before the first call.
pub fn run_checked(options: &RunOptions, precondition: Precondition) -> Result<RunRecord, Error> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .max_blocking_threads(BLOCKING_THREADS)
        .build()
        .map_err(|e| Error::internal(format!("failed to start the async runtime: {e}")))?;
    runtime.block_on(run_async_checked(options, precondition))
}

/// [`run`] for callers that already have a tokio runtime.
pub async fn run_async(options: &RunOptions) -> Result<RunRecord, Error> {
    run_async_checked(options, &|_| Ok(())).await
}

async fn run_async_checked(options: &RunOptions, precondition: Precondition<'_>) -> Result<RunRecord, Error> {
    if options.dry_run {
        // A command that forgot to branch must not pay for what was meant as a dry run.
        return Err(Error::internal("a dry run reached the sampling engine"));
    }
    let started_at = jiff::Timestamp::now();
    let clock = Instant::now();
    let config = Config::load(&options.config_path)?;
    let selections = select_checked(&config, options, precondition)?;
    if selections.iter().all(|s| s.cases.is_empty()) {
        return Err(Error::NothingSelected {
            message: "the selected suites have no cases".into(),
            hint: Some("add case files under each suite's `cases` folder".into()),
        });
    }
    let settings = Settings {
        confidence_level: config.defaults.confidence_level,
        interval: options.interval,
        max_error_rate: options.max_error_rate.unwrap_or(config.defaults.max_error_rate),
    };
    let shard = match options.shard {
        Some(shard) => {
            if options.sequential.is_some() {
                return Err(Error::usage("a sequential gate cannot be sharded").with_hint(
                    "its looks judge all of a pair's cases at once: shard with --sampling fixed, or run it whole",
                ));
            }
            if let Some(filter) = &options.case_filter {
                // `merge` rebuilds whole suites; a subset's shards would merge into one.
                return Err(
                    Error::usage(format!("the cases chosen by {} are not sharded", filter.flags()))
                        .with_hint("run the chosen cases whole, or shard every case"),
                );
            }
            Some(shard_record(shard, &selections, &settings)?)
        }
        None => None,
    };
    // Every case was loaded and rendered (a broken one fails every shard alike), and the
    // selection digest covers all of them; now keep this shard's.
    let selections: Vec<Selection> = match options.shard {
        Some(shard) => selections.into_iter().map(|s| s.shard(shard)).collect(),
        None => selections,
    };
    // `--offline` only reads: a cache in a read-only folder still answers, and a missing one
    // is not created.
    let cache = Arc::new(match (options.offline, options.cache_path.is_file()) {
        (true, true) => Cache::open_read_only(&options.cache_path)?,
        (true, false) => Cache::empty(&options.cache_path)?,
        (false, _) => Cache::open(&options.cache_path)?,
    });
    if let (Some(limit), false) = (options.max_calls, options.offline) {
        let totals = crate::dry_run::DryRun::new(requests(&selections, Some(&cache), options)?).totals;
        // What is known to be needed: the answers', and a judge's for the cached answers.
        let to_call = totals.to_call + totals.judge_to_call;
        if to_call > limit {
            return Err(crate::dry_run::OverBudget { to_call, limit }.into());
        }
    }
    let batch = if options.batch {
        Some(prefill(&config, &cache, &selections, options).await?)
    } else {
        None
    };
    let sampler = Sampler::new(
        &config,
        SamplerOptions {
            offline: options.offline,
            concurrency: options.concurrency.unwrap_or(config.defaults.concurrency),
            progress: options.progress,
            env: &options.env,
            max_calls: options.max_calls,
        },
        Arc::clone(&cache),
    );
    let mut policies = policies(&selections, options.sequential.as_ref())?;
    let Sampled {
        tallies,
        totals,
        texts,
        cache_failure,
    } = sample(&selections, &mut policies, &cache, sampler, options.answers).await?;
    // Closed before the results are made, which hold every case's at once: its connection
    // keeps SQLite's page cache.
    drop(cache);
    let selections = sampled(selections, options.answers);

    let mut results = Vec::with_capacity(selections.len());
    // Priced at batch prices when the batches answered every call (none fell back online).
    let batch_priced = batch.as_ref().is_some_and(|b| b.online == 0);
    let shard = shard.map(|block| ShardRecord {
        prices: prices(&selections, batch_priced),
        ..block
    });
    for (((selection, tallies), totals), policy) in selections.iter().zip(tallies).zip(totals).zip(&policies) {
        let mut result = result_of(selection, tallies, &texts, totals, &settings, batch_priced)?;
        result.sequential = policy.summary();
        results.push(result);
    }
    let robustness: Vec<Option<Robustness>> = (0..selections.len())
        .map(|index| robustness_of(&selections, &results, index, &settings))
        .collect();
    for (result, robustness) in results.iter_mut().zip(robustness) {
        result.robustness = robustness;
    }
    let duration_ms = u64::try_from(clock.elapsed().as_millis()).unwrap_or(u64::MAX);
    Ok(RunRecord {
        cache_failure,
        shard,
        batch,
        ..RunRecord::of_results(results, started_at.to_string(), duration_ms)
    })
}

/// `--show-prompts`: the prompt of each case `options` selects, rendered as a run renders it,
/// once per suite and prompt version (a prompt does not depend on the model), without the
/// robustness families' variants. Nothing is called, and the cache is not opened.
pub fn rendered(options: &RunOptions) -> Result<crate::rendered::Rendered, Error> {
    let config = Config::load(&options.config_path)?;
    let mut shown: Vec<(&str, &str)> = Vec::new();
    let mut prompts = Vec::new();
    let selections = select(&config, options)?;
    for selection in &selections {
        let version = (selection.suite.as_str(), selection.prompt_name.as_str());
        if selection.family.is_some() || shown.contains(&version) {
            continue;
        }
        shown.push(version);
        for (index, id) in selection.cases.ids().enumerate() {
            prompts.push(crate::rendered::RenderedCase {
                suite: selection.suite.clone(),
                prompt: selection.prompt_name.clone(),
                case: id.to_string(),
                rendered: selection.prompts.get(index)?,
            });
        }
    }
    Ok(crate::rendered::Rendered::new(prompts))
}

/// `--dry-run`: what a run of `options` would ask, found without asking. Every prompt is
/// rendered and `precondition` checked as for a run; then every request of a fixed sampling
/// (a sequential gate's most) is looked up in the cache, opened read-only (none yet: nothing
/// is cached). Nothing is called and nothing is written.
pub fn dry_run(options: &RunOptions, precondition: Precondition) -> Result<crate::dry_run::DryRun, Error> {
    let config = Config::load(&options.config_path)?;
    let selections = select_checked(&config, options, precondition)?;
    let selections: Vec<Selection> = match options.shard {
        Some(shard) => selections.into_iter().map(|s| s.shard(shard)).collect(),
        None => selections,
    };
    let cache = match options.cache_path.is_file() {
        true => Some(Cache::open_read_only(&options.cache_path)?),
        false => None,
    };
    Ok(crate::dry_run::DryRun::new(requests(
        &selections,
        cache.as_ref(),
        options,
    )?))
}

/// Every request of a fixed sampling of `selections` (a sequential gate's most), looked up in
/// `cache`: per selection, how many there are, how many it answers and their tokens, and, where
/// a judge grades, its distinct requests for the cached answers and how many of those it answers.
fn requests(
    selections: &[Selection],
    cache: Option<&Cache>,
    options: &RunOptions,
) -> Result<Vec<crate::dry_run::Found>, Error> {
    use crate::dry_run::{CachedUsage, Found, Selected};
    let mut keys = crate::cache::Keys::default();
    let mut found = Vec::with_capacity(selections.len());
    for selection in selections {
        let (mut requests, mut cached, mut usage) = (0u64, 0u64, CachedUsage::default());
        let asks_a_judge = selection.grader.asks_a_judge();
        let mut judge = (0u64, 0u64);
        // In batches, as a run looks them up: the keys of a whole suite would grow with it.
        let mut jobs = (0..selection.cases.len())
            .flat_map(|case| (0..selection.samples).map(move |sample| (case, sample)))
            .peekable();
        while jobs.peek().is_some() {
            let batch: Vec<(usize, u32)> = jobs.by_ref().take(LOOK_UP_BATCH).collect();
            let mut digests = Vec::with_capacity(batch.len());
            for &(case, sample) in &batch {
                digests.push(keys.digest(&selection.request(case, sample)?));
            }
            requests += digests.len() as u64;
            let Some(cache) = cache else { continue };
            if !asks_a_judge {
                cache.tokens_ordered(&digests, |_, tokens| {
                    cached += 1;
                    usage.add(tokens);
                })?;
                continue;
            }
            // A judge's request depends on the answer: grade each cached answer as the run
            // would, and look up the judge requests of those the other graders pass.
            let mut questions = Vec::new();
            cache.get_ordered(&digests, |place, response| {
                cached += 1;
                usage.add(response.usage);
                let case = batch[place].0;
                let expected = &selection.expectations[selection.position(case)];
                let assessed = selection
                    .grader
                    .assess(&response, expected, selection.cases.whole(case))?;
                if let Assessment::Ask(question) = assessed {
                    questions.push(keys.digest(&question.request));
                }
                Ok::<(), Error>(())
            })?;
            // Samples that gave the same answer ask the same question: the run pays it once.
            questions.sort_unstable();
            questions.dedup();
            judge.0 += questions.len() as u64;
            cache.tokens_ordered(&questions, |_, _| judge.1 += 1)?;
        }
        found.push(Found {
            selected: Selected {
                suite: selection.suite.clone(),
                model: selection.model_name.clone(),
                prompt: selection.prompt_name.clone(),
                cases: selection.cases.len(),
                samples_per_case: selection.samples,
                sequential: options.sequential.is_some(),
                filtered: selection.filtered.clone(),
            },
            requests,
            cached,
            judge: asks_a_judge.then_some(judge),
            usage,
            prices: prices_of(&selection.model, options.batch),
        });
    }
    Ok(found)
}

/// `--batch`: every call of a fixed sampling of the selection, sent through the providers'
/// batch engines unless cached; the run that follows replays them.
async fn prefill(
    config: &Config,
    cache: &Cache,
    selections: &[Selection],
    options: &RunOptions,
) -> Result<crate::batch::Summary, Error> {
    if options.offline || options.sequential.is_some() {
        return Err(
            Error::usage("--batch cannot be combined with --offline or a sequential gate")
                .with_hint("--batch makes the calls a run needs ahead of it; --offline makes none"),
        );
    }
    let mut starts = vec![0];
    for selection in selections {
        let calls = selection.cases.len() * selection.samples as usize;
        starts.push(starts[starts.len() - 1] + calls);
    }
    let calls = BatchCalls { selections, starts };
    let batch_options = crate::batch::Options {
        progress: options.progress,
    };
    crate::batch::prefill(config, cache, &calls, &options.env, batch_options).await
}

/// `--batch`'s calls: every sample of every case of each selection, in order, rendered when
/// asked for.
struct BatchCalls<'a> {
    selections: &'a [Selection],
    /// Index of each selection's first call, then the number of calls.
    starts: Vec<usize>,
}

impl crate::batch::Calls for BatchCalls<'_> {
    fn count(&self) -> usize {
        self.starts[self.starts.len() - 1]
    }

    fn providers(&self) -> Vec<String> {
        self.selections
            .iter()
            .filter(|s| !s.cases.is_empty() && s.samples > 0)
            .map(|s| s.provider_name.clone())
            .collect()
    }

    fn call(&self, index: usize) -> Result<crate::batch::Call, Error> {
        // The last selection starting at or before `index`: an empty one is passed over.
        let at = self.starts.partition_point(|&start| start <= index) - 1;
        let selection = &self.selections[at];
        let within = index - self.starts[at];
        let k = selection.samples as usize;
        Ok(crate::batch::Call {
            provider: selection.provider_name.clone(),
            request: selection.request(within / k, (within % k) as u32)?,
        })
    }
}

/// What a shard's record carries for `merge`: computed over the whole selection, before it is
/// cut to the shard, so that every shard of one run computes the same.
fn shard_record(shard: Shard, selections: &[Selection], settings: &Settings) -> Result<ShardRecord, Error> {
    use sha2::{Digest, Sha256};
    let mut hash = Sha256::new();
    let mut part = |bytes: &[u8]| {
        hash.update((bytes.len() as u64).to_le_bytes());
        hash.update(bytes);
    };
    for selection in selections {
        for text in [
            &selection.suite,
            &selection.model_name,
            &selection.model.model,
            &selection.prompt_name,
            &selection.prompt_sha256,
        ] {
            part(text.as_bytes());
        }
        part(&selection.samples.to_le_bytes());
        for (index, id) in selection.cases.ids().enumerate() {
            part(id.as_bytes());
            // Serializing a rendered prompt (plain strings and JSON values) cannot fail.
            part(&serde_json::to_vec(selection.prompts.get(index)?.as_ref()).unwrap_or_default());
        }
        for variants in selection.family.iter().flat_map(|f| &f.variants) {
            for (id, _) in variants {
                part(id.as_bytes());
            }
        }
    }
    Ok(ShardRecord {
        index: shard.index(),
        count: shard.count(),
        command: "run".into(),
        selection_sha256: hex::encode(hash.finalize()),
        confidence_level: settings.confidence_level,
        interval: settings.interval,
        max_error_rate: settings.max_error_rate,
        // Set once the run knows whether batches answered every call.
        prices: std::collections::BTreeMap::new(),
        gate: None,
        compare: None,
        baseline_dir: None,
    })
}

/// Each selection's sampling policy: k samples of every case, or the sequential gate against
/// the selection's baseline.
fn policies(
    selections: &[Selection],
    sequential: Option<&SequentialOptions>,
) -> Result<Vec<Box<dyn SamplingPolicy>>, Error> {
    selections
        .iter()
        .map(|s| {
            let Some(options) = sequential else {
                return Ok(Box::new(Fixed::new(s.samples)) as Box<dyn SamplingPolicy>);
            };
            let path = Baseline::path(&options.baseline_dir, &s.suite, &s.model_name);
            let baseline = Baseline::load(&path, &s.suite, &s.model_name)?;
            let design = Design::new(options.alpha, options.margin, options.exact);
            let cases = baseline.cases.into_iter().map(|c| (c.id, c.correct, c.samples));
            Ok(Box::new(Sequential::new(design, s.samples, s.cases.ids(), cases)) as Box<dyn SamplingPolicy>)
        })
        .collect()
}

/// Samples of a look whose answers are looked up in the cache together, in the cache's order
/// (see `Cache::get_ordered`): enough that a replay reads each page of the cache's index about
/// once a batch (a 250,000-answer cache has about 5,000 index pages), few enough that their
/// jobs and keys stay a few megabytes.
const LOOK_UP_BATCH: usize = 1 << 15;

/// Sample every selection as its policy asks, grading each answer as it arrives; the tallies
/// of every case of every selection, what each selection's calls added up to, and why the
/// cache stopped taking answers, if it did.
///
/// Each batch of a look's samples is first looked up in the cache at once, and the answers
/// found are graded there; only the rest go to the sampler, which calls them (or, offline,
/// reports them missing) as it has room.
async fn sample(
    selections: &[Selection],
    policies: &mut [Box<dyn SamplingPolicy>],
    cache: &Cache,
    mut sampler: Sampler<'_, Job>,
    keep_answers: bool,
) -> Result<Sampled, Error> {
    let tally = if keep_answers {
        CaseTally::keeping_answers
    } else {
        CaseTally::new
    };
    let mut grading = Grading {
        selections,
        tallies: selections
            .iter()
            .map(|s| {
                let family = s.family.is_some();
                (0..s.cases.len())
                    .map(|_| match family {
                        // A family's record says which variant each graded sample answered.
                        true => tally().keeping_grades(),
                        false => tally(),
                    })
                    .collect()
            })
            .collect(),
        totals: vec![Totals::default(); selections.len()],
        asked: HashMap::new(),
        texts: SharedTexts::default(),
    };
    let mut keys = crate::cache::Keys::default();
    let mut look_up_first = true;
    loop {
        // The look's samples: a look of 250,000 samples is 250,000 small jobs here, not
        // 250,000 requests and tasks.
        let looks: Vec<(usize, Look)> = policies
            .iter_mut()
            .enumerate()
            .map(|(index, policy)| (index, policy.next_look(&grading.tallies[index])))
            .collect();
        if looks.iter().all(|(_, look)| look.is_empty()) {
            break;
        }
        let mut jobs = looks
            .into_iter()
            .flat_map(|(selection, look)| {
                look.into_iter().map(move |(case, sample)| Job {
                    selection,
                    case,
                    sample,
                    purpose: Purpose::Sample,
                })
            })
            .peekable();
        // Jobs the cache did not answer, submitted as the sampler has room.
        let mut look: VecDeque<Job> = VecDeque::new();
        loop {
            if look.is_empty() && jobs.peek().is_some() {
                if !look_up_first {
                    look.extend(jobs.by_ref().take(LOOK_UP_BATCH));
                } else {
                    let batch: Vec<Job> = jobs.by_ref().take(LOOK_UP_BATCH).collect();
                    let mut digests = Vec::with_capacity(batch.len());
                    for job in &batch {
                        digests.push(keys.digest(&selections[job.selection].request(job.case, job.sample)?));
                    }
                    let mut found = vec![false; batch.len()];
                    answer_from_cache(cache, &digests, |place, response| {
                        found[place] = true;
                        grading.take(&mut sampler, batch[place], Answer::Cached(response))
                    })?;
                    let asked = batch.len();
                    look.extend(
                        batch
                            .into_iter()
                            .zip(found)
                            .filter(|(_, found)| !found)
                            .map(|(job, _)| job),
                    );
                    // A batch the cache answered less than half of belongs to a run that makes
                    // its calls: the sampler looks each call up before making it anyway, so the
                    // next batches go straight to it (a cold run would otherwise look every key
                    // up twice).
                    look_up_first = 2 * (asked - look.len()) >= asked;
                }
            }
            let room = sampler.room().min(look.len());
            if room > 0 {
                let requests = look
                    .drain(..room)
                    .map(|job| {
                        let selection = &selections[job.selection];
                        let request = selection.request(job.case, job.sample)?;
                        Ok((job, request, selection.provider_name.as_str()))
                    })
                    .collect::<Result<_, Error>>()?;
                sampler.submit_many(requests);
            }
            let Some(answered) = sampler.next().await else {
                if look.is_empty() && jobs.peek().is_none() {
                    break;
                }
                continue;
            };
            let (job, answer) = answered?;
            grading.take(&mut sampler, job, answer)?;
        }
    }
    let cache_failure = sampler.finish()?;
    Ok(Sampled {
        tallies: grading.tallies,
        totals: grading.totals,
        texts: grading.texts,
        cache_failure,
    })
}

/// What sampling left: the tallies of every case of every selection, what each selection's
/// calls added up to, the texts of the misses the tallies name, and why the cache stopped
/// taking answers, if it did.
struct Sampled {
    tallies: Vec<Vec<CaseTally>>,
    totals: Vec<Totals>,
    texts: SharedTexts,
    cache_failure: Option<String>,
}

/// The answers the cache holds for `digests`, each handed to `take` with its place. The cache
/// is read on a thread of its own while this one grades, so that a replay takes two cores:
/// reading and grading were each about a quarter of its time.
fn answer_from_cache(
    cache: &Cache,
    digests: &[crate::cache::KeyDigest],
    mut take: impl FnMut(usize, Response) -> Result<(), Error>,
) -> Result<(), Error> {
    // Answers cross in chunks, so that a channel's cost is paid per chunk, not per answer;
    // a few chunks wait at most, so that a slow grader holds the reader back.
    const CHUNK: usize = 256;
    const CHUNKS_WAITING: usize = 16;
    std::thread::scope(|scope| {
        let (sender, receiver) = std::sync::mpsc::sync_channel::<Vec<(usize, Response)>>(CHUNKS_WAITING);
        let reader = scope.spawn(move || {
            let stopped = |_| Error::internal("grading stopped while the cache was read");
            let mut chunk = Vec::with_capacity(CHUNK);
            cache.get_ordered(digests, |place, response| {
                chunk.push((place, response));
                if chunk.len() == CHUNK {
                    sender
                        .send(std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK)))
                        .map_err(stopped)?;
                }
                Ok::<(), Error>(())
            })?;
            if !chunk.is_empty() {
                sender.send(chunk).map_err(stopped)?;
            }
            Ok(())
        });
        let mut taken = Ok(());
        'chunks: for chunk in &receiver {
            for (place, response) in chunk {
                taken = take(place, response);
                if taken.is_err() {
                    break 'chunks;
                }
            }
        }
        // A grading error ends the reader at its next chunk; that error is the one to report.
        drop(receiver);
        let read = reader
            .join()
            .unwrap_or_else(|_| Err(Error::internal("the thread reading the cache panicked")));
        taken.and(read)
    })
}

/// The tallies of a run's cases while it samples, and the answers waiting for a grader's call.
struct Grading<'s> {
    selections: &'s [Selection],
    tallies: Vec<Vec<CaseTally>>,
    /// What each selection's calls added up to.
    totals: Vec<Totals>,
    /// Answers waiting for a grader's call: the answer and the grader's question.
    asked: HashMap<Job, (Response, Question)>,
    /// The texts of every case's misses.
    texts: SharedTexts,
}

impl Grading<'_> {
    /// Count the answer to `job` and grade it; a grader's question goes to `sampler`.
    fn take(&mut self, sampler: &mut Sampler<'_, Job>, job: Job, answer: Answer) -> Result<(), Error> {
        let selection = &self.selections[job.selection];
        let loaded = selection.cases.whole(job.case);
        let tally = &mut self.tallies[job.selection][job.case];
        let totals = &mut self.totals[job.selection];
        let (response, assessment) = match job.purpose {
            Purpose::Sample => {
                let Some(response) = tally.call(job.sample, Purpose::Sample, answer, totals) else {
                    return Ok(());
                };
                let expected = &selection.expectations[selection.position(job.case)];
                let assessment = selection.grader.assess(&response, expected, loaded)?;
                (response, assessment)
            }
            Purpose::Grading => {
                let (response, question) = self
                    .asked
                    .remove(&job)
                    .ok_or_else(|| Error::internal("an answer to a question nobody asked"))?;
                let Some(judgment) = tally.call(job.sample, Purpose::Grading, answer, totals) else {
                    return Ok(());
                };
                let assessment = selection.grader.answer(question, &judgment, &response, loaded)?;
                (response, assessment)
            }
        };
        match assessment {
            Assessment::Graded(grade) => tally.grade(job.sample, grade, &response, &mut self.texts),
            Assessment::Ask(question) => {
                let job = Job {
                    purpose: Purpose::Grading,
                    ..job
                };
                sampler.submit(job, &question.request, &question.provider);
                self.asked.insert(job, (response, question));
            }
        }
        Ok(())
    }
}

/// The selections once sampling is over, without what only sampling read (each case's
/// expectations, a family's variants and, unless a report shows answers, each case's rendered
/// prompt): freed before the results are made, which hold every case's result at once.
fn sampled(mut selections: Vec<Selection>, answers: bool) -> Vec<Selection> {
    for selection in &mut selections {
        selection.expectations = Arc::new(Vec::new());
        selection.variant_prompts = Arc::default();
        if !answers {
            selection.prompts = Arc::default();
        }
    }
    selections
}

/// What the variants of a family selection did against the same model's answers to the cases
/// themselves (the plain selection of the same suite, prompt and model).
fn robustness_of(
    selections: &[Selection],
    results: &[SuiteResult],
    index: usize,
    settings: &Settings,
) -> Option<Robustness> {
    let selection = &selections[index];
    let family = selection.family.as_ref()?;
    let plain = selections.iter().position(|s| {
        s.family.is_none()
            && s.suite == family.suite
            && s.prompt_name == selection.prompt_name
            && s.model_name == selection.model_name
    })?;
    Some(aggregate::robustness(
        family.family,
        family.cases_left_out,
        &results[index],
        &results[plain],
        settings,
    ))
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
        suite::find(config, name)?;
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
    let mut left_out = LeftOut::default();
    // One budget of prompt text held in memory for the whole run.
    let budget = HeldBudget::new(prompt_store::HELD_BYTES);
    for (suite_name, suite) in &config.suites {
        if !options.suites.is_empty() && !options.suites.contains(suite_name) {
            continue;
        }
        let default_prompt = [config::DEFAULT_PROMPT.to_string()];
        let prompt_names = if options.prompts.is_empty() {
            &default_prompt[..]
        } else {
            &options.prompts[..]
        };
        let context = SuiteContext::new(suite_name, suite);
        let mut versions = prompt_names
            .iter()
            .map(|name| {
                let prompt = Prompt::load(&suite::prompt_file(config, suite_name, suite, name)?)?;
                PromptVersion::new(name, prompt, &context, config, options.answers, &budget)
            })
            .collect::<Result<Vec<_>, Error>>()?;
        // Once every prompt is rendered and every expectation parsed, a case is read again
        // only by a judge or a report that shows it; otherwise only its outline is kept.
        let mut cases = Cases::new(versions.iter().any(|v| v.whole_cases));
        let mut suite_cases = 0;
        case::for_each_case(&config.resolve(&suite.cases), &config.root, |loaded| {
            suite_cases += 1;
            if !options
                .case_filter
                .as_ref()
                .is_none_or(|f| f.matches(&loaded.case.id, &loaded.case.tags))
            {
                // Left out before rendering: a case being written elsewhere does not stop
                // the run of the one being fixed.
                left_out.note(suite_name, &loaded.case.id);
                return Ok(());
            }
            for version in &mut versions {
                version.add(&loaded, &context)?;
            }
            cases.push(loaded);
            Ok(())
        })?;
        if options.case_filter.is_some() && cases.is_empty() {
            // Another selected suite may have the cases the filter asks for.
            continue;
        }
        // What a run holds for each case for its whole length, without room to grow.
        cases.shrink_to_fit();
        let cases = Arc::new(cases);
        let filtered = options
            .case_filter
            .as_ref()
            .map(|f| f.filtered(cases.len(), suite_cases));
        for version in versions {
            let chosen = version.selections(config, options, &context, &cases)?;
            selections.extend(chosen.into_iter().map(|s| Selection {
                filtered: filtered.clone(),
                ..s
            }));
        }
    }
    if let (Some(filter), true) = (&options.case_filter, selections.is_empty()) {
        return Err(left_out.nothing_matched(filter));
    }
    if selections.is_empty() {
        return Err(Error::NothingSelected {
            message: "no suite × model matches the selection".into(),
            hint: Some("check --suite and --model, and each suite's `models` list".into()),
        });
    }
    Ok(selections)
}

/// [`select`], then `precondition` checked on the selected suite × model pairs.
fn select_checked(config: &Config, options: &RunOptions, precondition: Precondition) -> Result<Vec<Selection>, Error> {
    let selections = select(config, options)?;
    let pairs: Vec<(String, String)> = selections
        .iter()
        .map(|s| (s.suite.clone(), s.model_name.clone()))
        .collect();
    precondition(&pairs)?;
    Ok(selections)
}

/// What every case of a suite is read with.
struct SuiteContext<'a> {
    name: &'a str,
    suite: &'a config::SuiteConfig,
    /// The attacker-writable fields of the suite's robustness families.
    fields: Vec<FieldPath>,
    /// The labels of the suite's label grader (what an injection asks for).
    labels: Option<Vec<String>>,
}

impl<'a> SuiteContext<'a> {
    fn new(name: &'a str, suite: &'a config::SuiteConfig) -> SuiteContext<'a> {
        SuiteContext {
            name,
            suite,
            fields: suite.robustness.as_ref().map(|r| r.field_paths()).unwrap_or_default(),
            labels: suite.grader.iter().find_map(|g| match g {
                config::GraderConfig::Label { labels, .. } => Some(labels.clone()),
                _ => None,
            }),
        }
    }
}

/// One prompt version of a suite, filled case by case as the suite's cases are read: what
/// each case expects, its rendered prompt, and its variants in each robustness family.
struct PromptVersion {
    name: String,
    prompt: Prompt,
    grader: Graders,
    expectations: Vec<Expectations>,
    prompts: PromptStoreBuilder,
    families: Vec<FamilyBuilder>,
    /// Whether its selections read a case again after it is rendered (a judge, or a report
    /// that shows answers), so keep it whole.
    whole_cases: bool,
}

/// A family's selection, before it is given a model.
struct FamilySelection {
    variants: Arc<FamilyVariants>,
    prompts: Arc<PromptStore>,
    /// The cases that have variants.
    cases: Arc<Cases>,
    expectations: Arc<Vec<Expectations>>,
    count: u32,
}

/// A robustness family of one prompt version, filled case by case.
struct FamilyBuilder {
    family: Family,
    count: u32,
    /// The cases that have variants, their expectations and, per case, per sample, the
    /// variant's payload or change and where its rendered prompt is in `prompts`.
    cases: Cases,
    expectations: Vec<Expectations>,
    variants: Vec<Vec<(String, usize)>>,
    prompts: PromptStoreBuilder,
    /// Cases with nothing to vary.
    left_out: usize,
}

impl PromptVersion {
    /// `answers`: a report shows every answer, and with it its case.
    fn new(
        name: &str,
        prompt: Prompt,
        context: &SuiteContext,
        config: &Config,
        answers: bool,
        budget: &HeldBudget,
    ) -> Result<PromptVersion, Error> {
        let grader = Graders::new(&context.suite.grader, &prompt, config)?;
        let whole_cases = answers || grader.reads_cases();
        let families = context
            .suite
            .robustness
            .iter()
            .flat_map(|robustness| {
                robustness.families.iter().map(|&family| FamilyBuilder {
                    family,
                    count: robustness.variants.unwrap_or_else(|| family.default_count()),
                    cases: Cases::new(whole_cases),
                    expectations: Vec::new(),
                    variants: Vec::new(),
                    prompts: PromptStoreBuilder::new(budget),
                    left_out: 0,
                })
            })
            .collect();
        Ok(PromptVersion {
            name: name.to_string(),
            prompt,
            grader,
            expectations: Vec::new(),
            prompts: PromptStoreBuilder::new(budget),
            families,
            whole_cases,
        })
    }

    /// Read one case: its expectations, the judge's rubric (which must render now, not after
    /// every answer was paid for), its prompt and its variants.
    fn add(&mut self, loaded: &LoadedCase, context: &SuiteContext) -> Result<(), Error> {
        self.expectations
            .push(suite::expectation(context.name, context.suite, &self.grader, loaded)?);
        self.grader.prepare(loaded)?;
        self.prompts.push(self.prompt.render(loaded)?)?;
        let Some(robustness) = &context.suite.robustness else {
            return Ok(());
        };
        for builder in &mut self.families {
            let settings = crate::robustness::Settings {
                seed: robustness.seed,
                count: builder.count,
                vars: robustness.vars.clone(),
                fields: case_fields(loaded, &context.fields)?,
            };
            let target = injection_target(
                robustness.target.as_deref(),
                context.labels.as_deref(),
                &loaded.case.expect,
            );
            let made =
                crate::robustness::variants(&loaded.case.id, &loaded.case.vars, builder.family, &settings, &target);
            if made.is_empty() {
                builder.left_out += 1;
                continue;
            }
            let mut rendered = Vec::with_capacity(made.len());
            for variant in made {
                let varied = LoadedCase {
                    case: crate::case::Case {
                        vars: variant.vars,
                        ..loaded.case.clone()
                    },
                    ..loaded.clone()
                };
                rendered.push((variant.id, builder.prompts.len()));
                builder.prompts.push(self.prompt.render(&varied)?)?;
            }
            builder
                .expectations
                .push(suite::expectation(context.name, context.suite, &self.grader, loaded)?);
            builder.cases.push_copy(loaded);
            builder.variants.push(rendered);
        }
        Ok(())
    }

    /// The version's selections: on each selected model, the suite itself and each family
    /// that has any variant.
    fn selections(
        self,
        config: &Config,
        options: &RunOptions,
        context: &SuiteContext,
        cases: &Arc<Cases>,
    ) -> Result<Vec<Selection>, Error> {
        let suite = context.suite;
        let samples = options.samples.unwrap_or(suite.samples).max(1);
        let model_names = if options.models.is_empty() {
            &suite.models
        } else {
            &options.models
        };
        let mut expectations = self.expectations;
        expectations.shrink_to_fit();
        let expectations = Arc::new(expectations);
        let prompts = Arc::new(self.prompts.finish()?);
        let families: Vec<FamilySelection> = self
            .families
            .into_iter()
            .filter(|builder| !builder.cases.is_empty())
            .map(|builder| {
                Ok(FamilySelection {
                    variants: Arc::new(FamilyVariants {
                        family: builder.family,
                        suite: context.name.to_string(),
                        variants: builder.variants,
                        cases_left_out: builder.left_out,
                    }),
                    prompts: Arc::new(builder.prompts.finish()?),
                    cases: Arc::new(builder.cases),
                    expectations: Arc::new(builder.expectations),
                    count: builder.count,
                })
            })
            .collect::<Result<_, Error>>()?;
        let mut selections = Vec::with_capacity(model_names.len() * (1 + families.len()));
        for model_name in model_names {
            let model = &config.models[model_name];
            let plain = Selection {
                suite: context.name.to_string(),
                prompt_name: self.name.clone(),
                model_name: model_name.clone(),
                model: model.clone(),
                provider_name: model.provider.clone(),
                provider_kind: config.providers[&model.provider].kind(),
                prompt_sha256: self.prompt.sha256.clone(),
                samples,
                max_tokens: suite.max_tokens,
                grader: self.grader.clone(),
                cases: Arc::clone(cases),
                expectations: Arc::clone(&expectations),
                prompts: Arc::clone(&prompts),
                variant_prompts: Arc::default(),
                epoch: options.epoch.as_deref().map(Arc::from),
                family: None,
                positions: None,
                filtered: None,
            };
            let varied: Vec<Selection> = families
                .iter()
                .map(|family| Selection {
                    suite: format!("{}~{}", context.name, family.variants.family.name()),
                    samples: family.count,
                    cases: Arc::clone(&family.cases),
                    expectations: Arc::clone(&family.expectations),
                    // What a report shows as the case's prompt: its first variant's.
                    prompts: Arc::new(
                        family
                            .prompts
                            .subset(&family.variants.variants.iter().map(|v| v[0].1).collect::<Vec<_>>()),
                    ),
                    variant_prompts: Arc::clone(&family.prompts),
                    family: Some(Arc::clone(&family.variants)),
                    ..plain.clone()
                })
                .collect();
            selections.push(plain);
            selections.extend(varied);
        }
        Ok(selections)
    }
}

/// The fields an attacker writes in a case: the suite's, narrowed or extended by the case's
/// own `attacker_fields`; a bad path names the case.
fn case_fields(loaded: &LoadedCase, suite_fields: &[FieldPath]) -> Result<Vec<FieldPath>, Error> {
    let Some(own) = &loaded.case.attacker_fields else {
        return Ok(suite_fields.to_vec());
    };
    let parse = |paths: &[String]| {
        paths
            .iter()
            .map(|p| FieldPath::parse(p))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|message| {
                Error::invalid(
                    "case file",
                    &loaded.file,
                    loaded.line.map(|l| format!(" at line {l}")).unwrap_or_default(),
                    format!("case `{}`, attacker_fields: {message}", loaded.case.id),
                )
                .with_hint("a path is dot-separated keys, `*` for any key, `[]` after a key for each element: Resources[].Tags.*")
            })
    };
    let mut fields = match &own.only {
        Some(only) => parse(only)?,
        None => suite_fields.to_vec(),
    };
    fields.extend(parse(&own.add)?);
    Ok(fields)
}

/// What an injection asks for: the config's `target`, else with a label grader the first label
/// that is not the case's, else `suppress` (what an attacker wants of a triage bot).
fn injection_target(configured: Option<&str>, labels: Option<&[String]>, expect: &serde_json::Value) -> String {
    if let Some(target) = configured {
        return target.to_string();
    }
    let expected = expect.get("label").and_then(serde_json::Value::as_str);
    labels
        .and_then(|labels| {
            labels
                .iter()
                .find(|l| expected.is_none_or(|e| !l.eq_ignore_ascii_case(e)))
        })
        .cloned()
        .unwrap_or_else(|| "suppress".to_string())
}

/// The prices of each selected model, by name.
fn prices(selections: &[Selection], batch: bool) -> std::collections::BTreeMap<String, crate::config::Prices> {
    selections
        .iter()
        .filter_map(|s| Some((s.model_name.clone(), prices_of(&s.model, batch)?)))
        .collect()
}

/// The prices a run's cost is computed at: under `--batch` the batch prices when configured,
/// else the model's own (an upper bound).
fn prices_of(model: &ModelConfig, batch: bool) -> Option<crate::config::Prices> {
    batch.then(|| model.batch_prices()).flatten().or_else(|| model.prices())
}

/// The result of one selection from its cases' tallies.
fn result_of(
    selection: &Selection,
    tallies: Vec<CaseTally>,
    texts: &SharedTexts,
    totals: Totals,
    settings: &Settings,
    batch: bool,
) -> Result<SuiteResult, Error> {
    let model = &selection.model;
    let identity = Identity {
        suite: selection.suite.clone(),
        model: selection.model_name.clone(),
        model_id: model.model.clone(),
        provider: selection.provider_name.clone(),
        prompt: selection.prompt_name.clone(),
        prompt_sha256: selection.prompt_sha256.clone(),
        samples_per_case: selection.samples,
    };
    // In a family, each graded sample answered a variant: the record says which, so that the
    // family's figures can be computed again from the record (`merge`).
    let graded: Vec<Vec<(u32, bool)>> = match &selection.family {
        Some(_) => tallies.iter().map(|t| t.graded().to_vec()).collect(),
        None => Vec::new(),
    };
    let cases =
        (tallies.into_iter().enumerate()).map(|(index, tally)| tally.into_parts(selection.cases.id(index), texts));
    let mut result = aggregate::aggregate(identity, cases, totals, prices_of(model, batch), settings);
    result.filtered = selection.filtered.clone();
    for (index, case) in result.per_case.iter_mut().enumerate() {
        case.position = selection.positions.as_ref().map(|p| p[index]);
        if let Some(family) = &selection.family {
            let mut grades = graded[index].clone();
            grades.sort_unstable();
            case.variants = grades
                .into_iter()
                .filter_map(|(sample, right)| {
                    let (variant, _) = family.variants[index].get(sample as usize)?;
                    Some(GradedVariant {
                        variant: variant.clone(),
                        right,
                    })
                })
                .collect();
        }
        // Answers were kept: say what each case checks and what its prompt was.
        // (Prompts and whole cases are kept after sampling when answers are.)
        let kept = (case.detail.take())
            .zip(selection.cases.whole(index))
            .filter(|_| index < selection.prompts.len());
        if let Some((mut detail, loaded)) = kept {
            let prompt = selection.prompts.get(index)?;
            // In a family, each sample answered a variant: say which.
            if let Some(family) = &selection.family {
                for answer in &mut detail.answers {
                    answer.variant = family.variants[index].get(answer.sample as usize).map(|v| v.0.clone());
                }
            }
            case.detail = Some(Box::new(CaseDetail::of(&loaded.case, &prompt, detail.answers)));
        }
    }
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A project with the testing config's `triage` suite: two prompt versions and two cases
    /// that share one finding file.
    fn project() -> (tempfile::TempDir, Config) {
        let dir = tempfile::tempdir().unwrap();
        let write = |relative: &str, text: &str| {
            let path = dir.path().join(relative);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        };
        write("promptgate.toml", crate::testing::CONFIG);
        let prompt = "schema_version = 1\nuser = \"{{ rule }}: {{ finding | tojson }}\"\n";
        write("prompts/triage.toml", prompt);
        write("prompts/triage-en.toml", prompt);
        write(
            "cases/triage/findings/f.json",
            r#"{"Id": "f-1", "Severity": {"Label": "LOW"}}"#,
        );
        write(
            "cases/triage/cases.jsonl",
            "{\"id\": \"a\", \"vars\": {\"rule\": \"r1\", \"finding\": {\"$file\": \"findings/f.json\"}}, \"expect\": {\"label\": \"notify\"}}\n\
             {\"id\": \"b\", \"vars\": {\"rule\": \"r2\", \"finding\": {\"$file\": \"findings/f.json\"}}, \"expect\": {\"label\": \"suppress\"}}\n",
        );
        let config = Config::load(&dir.path().join("promptgate.toml")).unwrap();
        (dir, config)
    }

    fn options(config: &Config, answers: bool) -> RunOptions {
        RunOptions {
            prompts: vec!["default".into(), "en".into()],
            samples: Some(2),
            offline: true,
            answers,
            ..RunOptions::new(
                config.path.clone(),
                config.root.join("cache.sqlite"),
                EnvVars::from_pairs([("OPENAI_API_KEY", "unused")]),
            )
        }
    }

    /// Once rendered, a case that no grader and no report reads again is kept as its outline:
    /// its id and place, not its finding. Both prompt versions were rendered from the whole
    /// case, and share one list of outlines. A run that keeps answers keeps the whole case.
    #[test]
    fn a_selected_case_keeps_only_what_the_run_reads_again() {
        let (_dir, config) = project();
        let selections = select(&config, &options(&config, false)).unwrap();
        assert_eq!(selections.len(), 2);
        for selection in &selections {
            let ids: Vec<&str> = selection.cases.ids().collect();
            assert_eq!(ids, ["a", "b"]);
            let Cases::Outlines(outlines) = selection.cases.as_ref() else {
                panic!("whole cases kept: {:?}", selection.cases);
            };
            assert_eq!(outlines[1], crate::case::Outline { id: "b".into() });
            assert_eq!(std::mem::size_of::<crate::case::Outline>(), 16);
            assert!(selection.cases.whole(0).is_none());
            assert_eq!(
                &*selection.prompts.get(0).unwrap().messages[0].content,
                r#"r1: {"Id":"f-1","Severity":{"Label":"LOW"}}"#
            );
            assert_eq!(selection.expectations.len(), 2);
        }
        assert!(Arc::ptr_eq(&selections[0].cases, &selections[1].cases));

        let kept = select(&config, &options(&config, true)).unwrap();
        assert_eq!(kept[0].cases.whole(0).unwrap().case.vars["rule"], "r1");
        assert_eq!(kept[0].cases.whole(1).unwrap().case.expect["label"], "suppress");
    }

    /// The command line never combines the two; the library refuses it before any call, as
    /// `merge` would rebuild a subset's shards as whole suites.
    #[test]
    fn a_filtered_run_is_not_sharded() {
        let (_dir, config) = project();
        let filtered = RunOptions {
            case_filter: CaseFilter::new(&["a".into()], &[]).unwrap(),
            shard: Some(Shard::new(1, 2).unwrap()),
            ..options(&config, false)
        };
        let error = run(&filtered).unwrap_err();
        assert!(error.to_string().contains("--case 'a' are not sharded"), "{error}");
        assert!(
            !config.root.join("cache.sqlite").exists(),
            "refused before the cache opened"
        );
    }

    #[test]
    fn answers_read_on_another_thread_each_arrive_once_and_a_grading_error_stops_the_reading() {
        use crate::cache::{Entry, KeyDigest};
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(&dir.path().join("cache.sqlite")).unwrap();
        // More answers than a few chunks, every other one stored.
        let digests: Vec<KeyDigest> = (0..2_000u32)
            .map(|i| {
                let mut bytes = [0u8; 32];
                bytes[..4].copy_from_slice(&i.wrapping_mul(2_654_435_761).to_be_bytes());
                KeyDigest(bytes)
            })
            .collect();
        let entries: Vec<Entry> = (0..2_000)
            .step_by(2)
            .map(|i| Entry::test(&hex::encode(digests[i].0), Response::from_text(&i.to_string())))
            .collect();
        cache.put_many(&entries).unwrap();
        let mut seen = vec![0u32; digests.len()];
        answer_from_cache(&cache, &digests, |place, response| {
            assert_eq!(response.text, Some(place.to_string()));
            seen[place] += 1;
            Ok(())
        })
        .unwrap();
        assert!(seen
            .iter()
            .enumerate()
            .all(|(place, &times)| times == u32::from(place % 2 == 0)));

        let mut taken = 0;
        let stopped = answer_from_cache(&cache, &digests, |_, _| {
            taken += 1;
            match taken {
                300 => Err(Error::internal("a grader failed")),
                _ => Ok(()),
            }
        });
        let message = stopped.unwrap_err().to_string();
        assert!(message.contains("a grader failed"), "{message}");
        assert_eq!(taken, 300, "nothing is graded after the error");
    }
}
