//! The sampler: answers calls from the cache or, on a miss, from their provider, and yields the
//! answers as they arrive, so that the engine can grade each one (and ask for more calls, as a
//! judge does) while the others are on their way.
//!
//! Cache look-ups come first, so only misses reach a provider. A miss is a task that waits for
//! a slot under the run's concurrency and its provider's, takes the answer's lease (another run
//! sharing the cache may be fetching it: see `lease`), makes the call with its retries, and
//! commits the answer to the cache as it arrives. Sampling stops early when a provider is
//! unreachable (an error: nothing could be judged) or a commit fails (the calls not yet made
//! end `not_attempted`, and [`Sampler::finish`] says which answers may be lost).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::cache::{self, Cache};
use crate::config::Config;
use crate::env::EnvVars;
use crate::error::Error;
use crate::lease;
use crate::provider::{FailureKind, Provider, ProviderError, Request, Response};
use crate::secrets::Secrets;
use crate::tally::Answer;

/// The first and the longest wait before looking again at an answer another run is fetching.
const LEASE_POLL_FIRST: Duration = Duration::from_millis(25);
const LEASE_POLL_MAX: Duration = Duration::from_secs(1);

/// How to sample.
#[derive(Debug, Clone, Copy)]
pub struct SamplerOptions<'a> {
    /// Serve from the cache only: a miss is an `offline_miss` failure.
    pub offline: bool,
    /// Calls in flight at most, over all providers.
    pub concurrency: usize,
    /// Show a progress bar of the calls on stderr.
    pub progress: bool,
    pub env: &'a EnvVars,
    /// Calls to make at most (`--max-calls`), a judge's included: a call past them is a
    /// `call_limit` failure, never made.
    pub max_calls: Option<u64>,
}

/// What a look at the cache before a call found.
enum Look {
    /// The lease is this run's: call the provider.
    Mine,
    /// Another run stored the answer.
    Answered(Response),
    /// Another run is fetching it.
    Wait,
}

/// The run's connection to its providers, built at the first miss of each.
struct Live {
    provider: Arc<Provider>,
    limit: Arc<Semaphore>,
    /// How long a lease on one of its answers lasts.
    lease: Duration,
}

/// Calls in, answers out, each answer with the caller's `I`.
pub struct Sampler<'a, I> {
    config: &'a Config,
    options: SamplerOptions<'a>,
    cache: Arc<Cache>,
    live: HashMap<String, Live>,
    semaphore: Arc<Semaphore>,
    secrets: Arc<Secrets>,
    writer: Option<Arc<cache::Writer>>,
    holder: Arc<lease::Holder>,
    progress: Option<ProgressBar>,
    /// Calls submitted and not yet looked up in the cache, with their provider's place in
    /// `providers`: looked up together when the answers at hand run out (see
    /// [`Sampler::next`]), so that a replay reads its answers in batches, not one transaction
    /// per answer.
    pending: Vec<(I, Request, usize)>,
    /// The providers named in submissions, so that a pending call holds an index, not a name.
    providers: Vec<String>,
    /// Answers known at submission: cache hits and offline misses.
    ready: VecDeque<(I, Answer)>,
    /// Misses found by the last look-up, not yet called: (index, key, request, provider).
    misses: Vec<(I, String, Request, String)>,
    tasks: JoinSet<Result<(I, Answer), Error>>,
    /// Answers received live so far: what a failed commit may have lost.
    received: usize,
    /// Answers waiting, calls queued and calls under way at most, so that a run holds what is
    /// in flight rather than the whole suite (see [`Sampler::room`]).
    window: usize,
    /// Calls `max_calls` still allows, taken by each call as it starts.
    calls_left: Option<Arc<AtomicU64>>,
}

/// The window of a run at `concurrency`: enough queued behind the calls in flight that a slot
/// never waits for the run to submit, enough cache hits at hand to grade in a batch, and room
/// for the calls waiting out a `Retry-After` (they give their slot back, but stay in the
/// window): with 30% of calls told to wait a second at C = 64, about 400 wait at once, and a
/// window of 4 × C held the run back by a second per 2,000 calls. A call in the window is a
/// request and a task, a few kilobytes: 1,024 of them are a few megabytes.
pub fn window(concurrency: usize) -> usize {
    concurrency.max(1).saturating_mul(16).max(1024)
}

impl<'a, I: Send + 'static> Sampler<'a, I> {
    pub fn new(config: &'a Config, options: SamplerOptions<'a>, cache: Arc<Cache>) -> Sampler<'a, I> {
        // Provider messages quote response bodies, which a server may fill with our own headers.
        let key_names: Vec<&str> = config.providers.values().filter_map(|p| p.api.api_key_env()).collect();
        Sampler {
            config,
            options,
            cache,
            live: HashMap::new(),
            semaphore: Arc::new(Semaphore::new(options.concurrency.max(1))),
            secrets: Arc::new(Secrets::from_env(options.env, &key_names)),
            writer: None,
            holder: Arc::new(lease::Holder::new()),
            progress: None,
            pending: Vec::new(),
            providers: Vec::new(),
            ready: VecDeque::new(),
            misses: Vec::new(),
            tasks: JoinSet::new(),
            received: 0,
            window: window(options.concurrency),
            calls_left: options.max_calls.map(|limit| Arc::new(AtomicU64::new(limit))),
        }
    }

    /// Ask for the answer to `request` on the provider named `provider`. It is looked up in
    /// the cache when [`Sampler::next`] has no answer at hand, with every other call submitted
    /// by then; a miss then becomes a call. Calls start in the order they were submitted.
    pub fn submit(&mut self, index: I, request: &Request, provider: &str) {
        self.submit_many(vec![(index, request.clone(), provider)]);
    }

    /// [`Sampler::submit`] for several requests.
    pub fn submit_many(&mut self, requests: Vec<(I, Request, &str)>) {
        self.pending.reserve(requests.len());
        for (index, request, provider) in requests {
            let place = match self.providers.iter().position(|known| known == provider) {
                Some(place) => place,
                None => {
                    self.providers.push(provider.to_string());
                    self.providers.len() - 1
                }
            };
            self.pending.push((index, request, place));
        }
    }

    /// Look up every pending call in the cache, in one read transaction: a hit is ready, a
    /// miss waits to be called (or, offline, fails).
    fn look_up_pending(&mut self) -> Result<(), Error> {
        let requests = std::mem::take(&mut self.pending);
        let mut keys = Vec::with_capacity(requests.len());
        for (_, request, _) in &requests {
            keys.push(cache::key(request));
        }
        let answers = self.cache.get_many(&keys)?;
        for (((index, request, place), key), answer) in requests.into_iter().zip(keys).zip(answers) {
            if let Some(response) = answer {
                self.ready.push_back((index, Answer::Cached(response)));
            } else if self.options.offline {
                let error = ProviderError::new(FailureKind::OfflineMiss, "not in the cache (--offline)");
                self.ready.push_back((index, Answer::Failed { error, attempts: 0 }));
            } else {
                self.misses.push((index, key, request, self.providers[place].clone()));
            }
        }
        Ok(())
    }

    /// How many more the caller may submit now: what the sampler holds (calls not yet looked
    /// up, answers waiting, calls queued and under way) stays within its window. A caller that
    /// submits only that many keeps a run's memory bounded by its concurrency, whatever the
    /// suite's size.
    pub fn room(&self) -> usize {
        self.window
            .saturating_sub(self.pending.len() + self.ready.len() + self.misses.len() + self.tasks.len())
    }

    /// The next answer, in the order they arrive; `None` when every submitted call is answered.
    pub async fn next(&mut self) -> Option<Result<(I, Answer), Error>> {
        // The answers at hand first: by the time they run out, a caller that refills as room
        // opens has submitted about a window's worth, looked up together.
        if self.ready.is_empty() && !self.pending.is_empty() {
            if let Err(error) = self.look_up_pending() {
                return Some(Err(error));
            }
        }
        // Calls first, so that they run while the answers at hand are graded.
        for (index, key, request, provider) in std::mem::take(&mut self.misses) {
            if let Err(error) = self.call(index, key, request, &provider).await {
                return Some(Err(error));
            }
        }
        if let Some(ready) = self.ready.pop_front() {
            return Some(Ok(ready));
        }
        let joined = self.tasks.join_next().await?;
        let answer = joined
            .map_err(|e| Error::internal(format!("a sampling task failed: {e}")))
            .and_then(|answer| answer);
        if let Ok((_, Answer::Live { .. })) = &answer {
            self.received += 1;
        }
        Some(answer)
    }

    /// End sampling, once every answer was taken: why the cache stopped taking answers, if it
    /// did; an error if a provider was found unreachable.
    pub fn finish(mut self) -> Result<Option<String>, Error> {
        if let Some(progress) = self.progress.take() {
            progress.finish_and_clear();
        }
        // Leases of calls never made (sampling stopped early); a failure here only delays
        // other runs until the leases expire.
        let _ = self.cache.release_all(&self.holder);
        // Every task has ended, so this is the last reference.
        let cache_failure = match self.writer.take().and_then(Arc::into_inner).map(cache::Writer::finish) {
            Some(Err(error)) => Some(format!(
                "{error}; sampling stopped there. Up to {} answer(s) received in this run may not be stored and would be fetched again by the next run",
                self.received
            )),
            _ => None,
        };
        let mut names: Vec<&String> = self.live.keys().collect();
        names.sort();
        for name in names {
            let provider = &self.live[name].provider;
            if let Some(first_error) = provider.reachability.unreachable() {
                return Err(Error::Unreachable {
                    provider: name.clone(),
                    endpoint: provider.endpoint.clone(),
                    first_error: self.secrets.mask(&first_error).into_owned(),
                    hint: Some(format!(
                        "{} connection attempts in a row failed and none succeeded, so sampling stopped. Is the server running? For the local model: ci/local-model.sh start",
                        crate::provider::UNREACHABLE_AFTER
                    )),
                });
            }
        }
        Ok(cache_failure)
    }

    /// The provider `name`, connected at its first call.
    async fn connect(&mut self, name: &str) -> Result<&Live, Error> {
        if !self.live.contains_key(name) {
            let settings = &self.config.providers[name];
            let provider = Provider::new(name, settings, self.options.env).await?;
            let limit = settings.calls.concurrency.unwrap_or(self.options.concurrency).max(1);
            let lease = lease::duration(
                Duration::from_secs_f64(settings.calls.timeout_secs),
                settings.calls.max_attempts,
                Duration::from_millis(settings.calls.retry_max_ms),
            );
            let live = Live {
                provider: Arc::new(provider),
                limit: Arc::new(Semaphore::new(limit)),
                lease,
            };
            self.live.insert(name.to_string(), live);
        }
        Ok(&self.live[name])
    }

    /// Start the call for a miss.
    async fn call(&mut self, index: I, key: String, request: Request, provider_name: &str) -> Result<(), Error> {
        let live = self.connect(provider_name).await?;
        let (provider, provider_limit, lasting) = (Arc::clone(&live.provider), Arc::clone(&live.limit), live.lease);
        let writer = Arc::clone(
            self.writer
                .get_or_insert_with(|| Arc::new(cache::Writer::start(Arc::clone(&self.cache)))),
        );
        let enabled = self.options.progress;
        let progress = self.progress.get_or_insert_with(|| progress_bar(enabled)).clone();
        progress.inc_length(1);
        let semaphore = Arc::clone(&self.semaphore);
        let (secrets, cache, holder) = (
            Arc::clone(&self.secrets),
            Arc::clone(&self.cache),
            Arc::clone(&self.holder),
        );
        let (calls_left, max_calls) = (self.calls_left.clone(), self.options.max_calls);
        self.tasks.spawn(async move {
            let mut wait = LEASE_POLL_FIRST;
            // Neither semaphore is ever closed, so acquiring cannot fail. Both are fair
            // (FIFO), so calls start in the order they were submitted: the k samples of a case
            // reach the server back to back, which lets a local server reuse the prompt it
            // just processed.
            let permits = loop {
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
                    // Counted here, where a call is certain to be made: a request another run
                    // or an earlier sample answered costs nothing.
                    Ok(Look::Mine) => {
                        if take_one(calls_left.as_deref()) {
                            break (provider_permit, permit);
                        }
                        progress.inc(1);
                        let _ = tokio::task::spawn_blocking(move || cache.release(&key, &holder)).await;
                        let error = ProviderError::new(
                            FailureKind::CallLimit,
                            format!(
                                "not called: the run made the {} call(s) --max-calls allows",
                                max_calls.unwrap_or_default()
                            ),
                        );
                        return Ok((index, Answer::Failed { error, attempts: 0 }));
                    }
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
            // A retry waits out its backoff without the slots, and takes them again to call.
            let acquire = || async {
                let provider_permit = Arc::clone(&provider_limit).acquire_owned().await.ok();
                let permit = Arc::clone(&semaphore).acquire_owned().await.ok();
                (provider_permit, permit)
            };
            // Boxed, so that a task waiting for its slots is small: a call's future (the HTTP
            // client's state) is kilobytes, and a window of tasks mostly waits.
            let mut attempted = Box::pin(provider.complete_releasing(&request, permits, acquire)).await;
            if let Err(error) = &mut attempted.result {
                error.mask(&secrets);
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
        Ok(())
    }
}

/// Take one call from `left`, if any is left (always, without a limit).
fn take_one(left: Option<&AtomicU64>) -> bool {
    left.is_none_or(|left| {
        left.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
            .is_ok()
    })
}

/// A bar of the calls made so far, its length growing as calls are submitted; hidden unless
/// `enabled` (stderr is a terminal and the user did not turn it off).
fn progress_bar(enabled: bool) -> ProgressBar {
    if !enabled {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
    if let Ok(style) =
        ProgressStyle::with_template("{spinner} calling models {pos}/{len} [{elapsed_precise}] {wide_bar} eta {eta}")
    {
        bar.set_style(style);
    }
    bar
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prompt::{Message, RenderedPrompt};
    use crate::provider::ProviderKind;
    use crate::provider::SamplingParams;

    fn request(sample_index: u32, prompt: &Arc<RenderedPrompt>) -> Request {
        Request {
            provider: ProviderKind::Openai,
            model: "gemma".into(),
            prompt: Arc::clone(prompt),
            params: SamplingParams {
                temperature: Some(0.0),
                max_tokens: Some(16),
                top_p: None,
                seed: Some(i64::from(sample_index)),
            },
            sample_index,
            epoch: None,
        }
    }

    /// A config, an empty cache in a temporary folder (kept alive by the returned folder), and
    /// a one-message prompt.
    fn fixture() -> (tempfile::TempDir, Config, Arc<Cache>, Arc<RenderedPrompt>) {
        let dir = tempfile::tempdir().unwrap();
        let config = Config::parse(&dir.path().join("promptgate.toml"), crate::testing::CONFIG).unwrap();
        let cache = Arc::new(Cache::open(&dir.path().join("cache.sqlite")).unwrap());
        let prompt = Arc::new(RenderedPrompt {
            messages: vec![Message {
                role: "user".into(),
                content: std::sync::Arc::new("triage this".into()),
            }],
            response_schema: None,
            tools: vec![],
            tool_choice: None,
        });
        (dir, config, cache, prompt)
    }

    /// Offline, nothing reaches a provider: a cached answer comes back as cached, a miss as an
    /// `offline_miss` failure, each with the index it was submitted with, and nothing is left
    /// to report at the end.
    #[tokio::test]
    async fn offline_sampling_answers_from_the_cache_and_names_every_miss() {
        let (_dir, config, cache, prompt) = fixture();
        let cached = request(0, &prompt);
        let key = cache::key_with(&cached, &cache::PromptKey::of(&prompt));
        cache
            .put_many(&[cache::Entry::new(key, &cached, Response::from_text("notify"))])
            .unwrap();
        let env = EnvVars::from_pairs([("OPENAI_API_KEY", "unused")]);
        let options = SamplerOptions {
            offline: true,
            concurrency: 4,
            progress: false,
            env: &env,
            max_calls: None,
        };
        let mut sampler = Sampler::new(&config, options, Arc::clone(&cache));
        for index in 0..3u32 {
            sampler.submit(index, &request(index, &prompt), "local");
        }
        let mut answers = Vec::new();
        while let Some(answer) = sampler.next().await {
            answers.push(answer.unwrap());
        }
        assert_eq!(answers.len(), 3);
        for (index, answer) in &answers {
            match (index, answer) {
                (0, Answer::Cached(response)) => assert_eq!(response.text.as_deref(), Some("notify")),
                (1 | 2, Answer::Failed { error, attempts: 0 }) => assert_eq!(error.kind, FailureKind::OfflineMiss),
                other => panic!("unexpected answer {other:?}"),
            }
        }
        assert_eq!(sampler.finish().unwrap(), None);
    }

    /// A caller that submits only as much as the sampler has room for never has more than the
    /// window waiting in it, however many it has to submit.
    #[tokio::test]
    async fn what_waits_in_the_sampler_stays_within_its_window() {
        let (_dir, config, cache, prompt) = fixture();
        let env = EnvVars::from_pairs([("OPENAI_API_KEY", "unused")]);
        let options = SamplerOptions {
            offline: true,
            concurrency: 2,
            progress: false,
            env: &env,
            max_calls: None,
        };
        assert_eq!((window(2), window(64), window(0)), (1024, 1024, 1024));
        assert_eq!(window(100), 1600);
        let mut sampler = Sampler::new(&config, options, cache);
        let total = 2_000u32;
        let (mut submitted, mut answered, mut most) = (0, 0, 0);
        loop {
            let room = sampler.room().min((total - submitted) as usize) as u32;
            let batch = (submitted..submitted + room)
                .map(|i| (i, request(i, &prompt), "local"))
                .collect();
            sampler.submit_many(batch);
            submitted += room;
            most = most.max(submitted - answered);
            match sampler.next().await {
                Some(answer) => {
                    answer.unwrap();
                    answered += 1;
                }
                None if submitted == total => break,
                None => {}
            }
        }
        assert_eq!((submitted, answered), (total, total));
        assert_eq!(most, 1024);
    }
}
