//! The run record: what a run found, as a versioned JSON contract that scripts rely on.
//!
//! `--format json` prints it and `--out FILE` writes it. Fields are only ever added within a
//! schema version; a rename or removal bumps `schema_version`.
//!
//! Changelog: 1 — first version.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::grader::Outcome;
use crate::paired::TestMethod;
use crate::provider::FailureKind;
use crate::stats::{Estimate, IntervalMethod};

/// The JSON schema version of [`RunRecord`].
///
/// Changelog: 1 — first version. Additions that older readers may ignore and newer readers
/// default keep the version: `prompt` on each result (default `default`), `latencies_ms` on
/// each case (default empty), `sequential` on each result (absent for fixed sampling),
/// `model_versions` on each result (default empty) and `model_change` in its `baseline` block
/// (absent when none was seen), `flakiness` on each result (absent at k = 1) and `transitions`
/// in its `baseline` block (default empty), `drift` on each result and the verdict `drifted`
/// (`promptgate drift` only), `robustness` on the results of a robustness family,
/// `interval_warning` on each result (absent unless k ≥ 10 and n_eff > 3n), `interval_method`
/// on each result (absent in older records), `detail`
/// and `baseline` on each case (absent unless a report shows answers, and outside `gate`),
/// `variants` on the cases of a robustness family, `shard` on the record and `position` on
/// each case (a shard's record only), `batch` on the record (`--batch` only).
pub const RUN_RECORD_SCHEMA_VERSION: u32 = 1;

/// The overall verdict of a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Everything ran within the allowed failure rate (and, under the gate, nothing regressed).
    Pass,
    /// The gate found a significant drop against the baseline.
    Regressed,
    /// `drift`: accuracy moved significantly, either way, under an unchanged prompt.
    Drifted,
    /// Too many provider failures, or cache misses under `--offline`: no judgement possible.
    Inconclusive,
}

impl Verdict {
    /// A run's verdict from its results': a regression or drift first (a run judges one or
    /// the other, never both), then an inconclusive result, else a pass.
    pub fn overall(results: &[SuiteResult]) -> Verdict {
        let any = |verdict: Verdict| results.iter().any(|r| r.verdict == verdict);
        if any(Verdict::Regressed) {
            Verdict::Regressed
        } else if any(Verdict::Drifted) {
            Verdict::Drifted
        } else if any(Verdict::Inconclusive) {
            Verdict::Inconclusive
        } else {
            Verdict::Pass
        }
    }
}

/// Calls by where their answer came from; they add up to the samples of the run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Calls {
    /// Answered live by the provider (and now cached).
    pub made: u64,
    /// Served from the cache without a provider call.
    pub cached: u64,
    /// Failed after retries, or missing from the cache under `--offline`.
    pub failed: u64,
    /// HTTP attempts, retries included.
    pub attempts: u64,
}

impl Calls {
    /// Add another tally to this one.
    pub fn add(&mut self, other: &Calls) {
        self.made += other.made;
        self.cached += other.cached;
        self.failed += other.failed;
        self.attempts += other.attempts;
    }
}

/// Token totals over the samples of a result (cached ones included).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tokens {
    pub input: u64,
    pub output: u64,
}

/// Response latency over the samples of a result (cached samples keep their original latency).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Latency {
    pub p50_ms: u64,
    pub p95_ms: u64,
}

impl Latency {
    /// Nearest-rank percentiles of `values`; `None` when empty. Counted by distinct value, not
    /// sorted: latencies are whole milliseconds, so there are no more distinct ones than
    /// milliseconds in the slowest answer, and usually far fewer than samples (the scale
    /// benchmark's 250,000 have 19), where a sorted copy of every sample's took a
    /// megabyte while every case's result was held.
    pub fn of(values: impl IntoIterator<Item = u32>) -> Option<Latency> {
        let mut counts: std::collections::BTreeMap<u32, u64> = std::collections::BTreeMap::new();
        for value in values {
            *counts.entry(value).or_default() += 1;
        }
        let total: u64 = counts.values().sum();
        if total == 0 {
            return None;
        }
        // The value at 1-based rank ⌈q·n⌉ (at least 1) of the sorted values.
        let rank = |q: f64| {
            let rank = ((q * total as f64).ceil() as u64).clamp(1, total);
            let mut seen = 0;
            counts
                .iter()
                .find(|&(_, &count)| {
                    seen += count;
                    seen >= rank
                })
                .map_or(0, |(&value, _)| u64::from(value))
        };
        Some(Latency {
            p50_ms: rank(0.50),
            p95_ms: rank(0.95),
        })
    }
}

/// The verdict on one suite × model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum GateVerdict {
    Improved,
    Regressed,
    NoSignificantChange,
    /// Too many provider failures, or too few paired cases, to judge.
    Inconclusive,
}

/// A result compared with its baseline by `promptgate gate` (the `baseline` block).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BaselineComparison {
    /// The baseline's own accuracy.
    pub accuracy: Option<Estimate>,
    pub prompt_sha256: String,
    pub prompt_changed: bool,
    /// Candidate − baseline over the paired cases, with its two-sided interval.
    pub delta: Estimate,
    /// One-sided upper confidence bound of the difference at level 1 − α.
    pub upper_bound: f64,
    pub p_value: f64,
    /// Holm-adjusted across the pairs gated in this run.
    pub adjusted_p_value: f64,
    pub alpha: f64,
    pub margin: f64,
    pub method: TestMethod,
    pub verdict: GateVerdict,
    pub cases_compared: usize,
    pub changed_cases: usize,
    /// Ids of the cases whose per-case accuracy went down.
    pub regressed_cases: Vec<String>,
    pub improved_cases: Vec<String>,
    /// Cases without a baseline: reported, not gated.
    pub new_cases: Vec<String>,
    pub new_cases_accuracy: Option<Estimate>,
    /// Baseline cases the run no longer has.
    pub missing_cases: Vec<String>,
    /// The smallest drop this comparison detects with 80% power (`plan`'s formula, with the
    /// baseline's accuracy and intra-case correlation, difficulty correlation 0.5).
    pub minimum_detectable_drop: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// Cases whose flakiness class moved since the baseline (broke, fixed, became flaky or
    /// stable): information, not a verdict, unless `gate --fail-on-broken`.
    #[serde(default)]
    pub transitions: crate::flakiness::Transitions,
    /// Set when this run was answered by a model version the baseline never was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_change: Option<crate::model_version::ModelChange>,
}

/// A whole run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    pub schema_version: u32,
    pub promptgate_version: String,
    pub command: String,
    pub verdict: Verdict,
    pub calls: Calls,
    pub results: Vec<SuiteResult>,
    /// RFC 3339 time the run started.
    pub started_at: String,
    pub duration_ms: u64,
    /// Set when answers could not be committed to the cache: sampling stopped there, this
    /// record holds what was done, and the answers it names may need to be fetched again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_failure: Option<String>,
    /// Set on the record of one shard of a run (`--shard i/n`): which, and what `promptgate
    /// merge` needs to rebuild the whole run from all of them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<crate::shard::ShardRecord>,
    /// What `--batch` did: the batches collected, the lines sent, answered and failed, and the
    /// calls left to be made online.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch: Option<crate::batch::Summary>,
}

impl RunRecord {
    /// The record of `run` over `results`: its calls their sum, its verdict inconclusive when
    /// any result is (a command that judges sets its own later).
    pub fn of_results(results: Vec<SuiteResult>, started_at: String, duration_ms: u64) -> RunRecord {
        let mut calls = Calls::default();
        for result in &results {
            calls.add(&result.calls);
        }
        let verdict = if results.iter().any(|r| r.verdict == Verdict::Inconclusive) {
            Verdict::Inconclusive
        } else {
            Verdict::Pass
        };
        RunRecord {
            schema_version: RUN_RECORD_SCHEMA_VERSION,
            promptgate_version: env!("CARGO_PKG_VERSION").to_string(),
            command: "run".into(),
            verdict,
            calls,
            results,
            started_at,
            duration_ms,
            cache_failure: None,
            shard: None,
            batch: None,
        }
    }
}

/// One suite × model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SuiteResult {
    pub suite: String,
    /// The model's name in the config.
    pub model: String,
    /// The id the provider knows the model by.
    pub model_id: String,
    pub provider: String,
    /// The prompt version: `default` (the suite's own prompt), a variant name or a file.
    #[serde(default = "default_prompt")]
    pub prompt: String,
    pub prompt_sha256: String,
    /// Cases in the suite.
    pub cases: usize,
    pub samples_per_case: u32,
    /// `None` when no case got a valid sample.
    pub accuracy: Option<Estimate>,
    /// Cases with at least one valid sample (the n of the interval).
    pub cases_graded: usize,
    pub effective_sample_size: Option<f64>,
    /// How `accuracy`'s interval was computed (absent in records of earlier versions, which
    /// used `wilson_effective_t` or, under `--conservative-ci`, `wilson_cases_z`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval_method: Option<IntervalMethod>,
    /// Set when the interval rests on too little between-case information (k ≥ 10 and n_eff >
    /// 3n, `reference/statistics.md` §b2): what to do about it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval_warning: Option<String>,
    pub design_effect: Option<f64>,
    /// Samples whose output could not be read as an answer (counted as wrong in accuracy).
    pub invalid_outputs: u64,
    /// Samples with no answer because the call failed (not counted in accuracy).
    pub errors: u64,
    pub error_rate: f64,
    pub errors_by_kind: BTreeMap<FailureKind, u64>,
    /// The first failure message, to say what went wrong without a log.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_error: Option<String>,
    pub calls: Calls,
    pub tokens: Tokens,
    /// What these samples cost at the model's configured prices (USD), cached ones included.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_usd: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency: Option<Latency>,
    /// The model versions the provider said answered the samples, most samples first (empty
    /// when it named none). See `model_version`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub model_versions: Vec<crate::model_version::VersionCount>,
    /// Stable pass, stable fail and flaky cases, pass@k and pass^k (absent at k = 1, where no
    /// case can flip). See `flakiness`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flakiness: Option<crate::flakiness::Flakiness>,
    pub verdict: Verdict,
    /// The comparison with the stored baseline (`promptgate gate` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline: Option<BaselineComparison>,
    /// The drift canary's comparison with the baseline (`promptgate drift` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drift: Option<crate::drift::DriftComparison>,
    /// What a robustness family's variants did (results named `suite~family` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub robustness: Option<crate::robustness::Robustness>,
    /// How a sequential gate sampled this pair (`gate --sampling sequential` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sequential: Option<SequentialSummary>,
    /// Set when `--case` or `--tag` chose the cases (`run` and `compare` only): `cases` is a
    /// subset's, chosen by these flags among `suite_cases`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filtered: Option<crate::case_filter::Filtered>,
    pub per_case: Vec<CaseResult>,
}

/// The looks of a sequential gate on one suite × model, and why it stopped.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SequentialSummary {
    pub looks: Vec<crate::sequential::Look>,
    pub stop: crate::sequential::Stop,
    /// Looks the schedule had, and samples per case at the last (k).
    pub looks_planned: usize,
    pub samples_per_case_max: u32,
    /// Samples per case taken when sampling stopped.
    pub samples_taken_per_case: u32,
    /// Cases sampled when sampling stopped, of all the pair's cases: fewer only when a
    /// one-sample gate stopped at a look over a third or two thirds of them.
    #[serde(default)]
    pub cases_taken: usize,
    #[serde(default)]
    pub cases_planned: usize,
    /// Samples taken, against the fixed design's n·k.
    pub samples_taken: u64,
    pub samples_fixed: u64,
    /// One-sided p-value adjusted for the looks (stagewise ordering): what the gate judges,
    /// before Holm across pairs.
    pub p_value: f64,
}

fn default_prompt() -> String {
    crate::config::DEFAULT_PROMPT.to_string()
}

impl SuiteResult {
    /// `suite` for the suite's own prompt, `suite@prompt` for another version.
    pub fn label(&self) -> String {
        if self.prompt == crate::config::DEFAULT_PROMPT {
            self.suite.clone()
        } else {
            format!("{}@{}", self.suite, self.prompt)
        }
    }
}

/// One case of a result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CaseResult {
    pub id: Box<str>,
    /// Correct samples.
    pub correct: u32,
    /// Valid samples (answered, whether correct, wrong or invalid).
    pub samples: u32,
    pub invalid: u32,
    /// Samples whose call failed.
    pub errors: u32,
    /// The samples that were not correct, with the grader's reason.
    #[serde(default, skip_serializing_if = "<[_]>::is_empty")]
    pub misses: Box<[Miss]>,
    /// The latency of each answered sample, in sample order: what the result's percentiles are
    /// computed from, so that results of disjoint cases merge exactly.
    #[serde(default, skip_serializing_if = "<[_]>::is_empty")]
    pub latencies_ms: Box<[u32]>,
    /// What the case checks, its prompt and every sample's answer: kept when a report shows
    /// answers (see `answers`), absent otherwise. Boxed: absent in most runs, it would
    /// otherwise take half of every case's result (and tally) in memory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<Box<crate::answers::CaseDetail>>,
    /// The baseline's outcome of this case (`gate` only, for cases the baseline has). Boxed:
    /// absent from every run's results, it would otherwise take 32 of every result's bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline: Option<Box<crate::answers::PastCase>>,
    /// A robustness family's graded samples in sample order: which variant each answered and
    /// whether it was right (`suite~family` results only).
    #[serde(default, skip_serializing_if = "<[_]>::is_empty")]
    pub variants: Box<[GradedVariant]>,
    /// The case's place among its suite's cases, counted from 0 (a shard's record only): what
    /// `merge` puts the cases of the shards back in order by.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub position: Option<usize>,
}

/// One graded sample of a robustness family: the variant it answered, and whether it was right.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GradedVariant {
    pub variant: String,
    pub right: bool,
}

/// The longest excerpt of a wrong answer kept in a record.
pub const MISS_EXCERPT_CHARS: usize = 120;

/// A text many results may share, behind one pointer: a miss has two, and a run holds every
/// case's misses until its record is written (an `Arc<str>` takes twice the room, 16 bytes).
/// Read and written as a JSON string.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Text(Arc<Box<str>>);

impl std::ops::Deref for Text {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl std::borrow::Borrow<str> for Text {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Text {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::fmt::Debug for Text {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&**self.0, f)
    }
}

impl Text {
    /// Whether both are the same shared text, not only equal ones.
    pub fn ptr_eq(a: &Text, b: &Text) -> bool {
        Arc::ptr_eq(&a.0, &b.0)
    }
}

impl From<&str> for Text {
    fn from(text: &str) -> Text {
        Text(Arc::new(text.into()))
    }
}

impl From<String> for Text {
    fn from(text: String) -> Text {
        Text(Arc::new(text.into_boxed_str()))
    }
}

/// A wrong or invalid sample.
///
/// Its texts are shared: a model that is wrong the same way in thousands of cases (answering
/// `notify` to every one) has thousands of misses with the same reason and excerpt, each kept
/// once in memory ([`crate::tally::SharedTexts`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Miss {
    pub sample: u32,
    pub outcome: Outcome,
    pub reason: Text,
    /// The start of the model's answer.
    pub excerpt: Text,
}

impl Miss {
    /// Whether its texts are no longer than a run makes them.
    pub fn is_bounded(&self) -> bool {
        // Each limit, plus the ellipsis of a cut text.
        self.reason.chars().nth(crate::grader::MAX_REASON_CHARS + 1).is_none()
            && self.excerpt.chars().nth(MISS_EXCERPT_CHARS + 1).is_none()
    }

    /// This miss with its texts no longer than a run makes them: for a miss read from a record
    /// (`record --from-run`), which is input like any other.
    pub fn bounded(&self) -> Miss {
        let cut = |text: &Text, limit: usize| -> Text {
            match text.chars().nth(limit) {
                Some(_) => crate::excerpt::cut(text.to_string(), limit).into(),
                None => text.clone(),
            }
        };
        Miss {
            sample: self.sample,
            outcome: self.outcome,
            reason: cut(&self.reason, crate::grader::MAX_REASON_CHARS),
            excerpt: cut(&self.excerpt, MISS_EXCERPT_CHARS),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_miss_is_bounded_as_a_run_cuts_it() {
        let miss = |reason: String, excerpt: String| Miss {
            sample: 0,
            outcome: Outcome::Wrong,
            reason: reason.into(),
            excerpt: excerpt.into(),
        };
        let limits = (crate::grader::MAX_REASON_CHARS, MISS_EXCERPT_CHARS);
        // What a run writes: a text cut to its limit, and its ellipsis.
        let written = crate::grader::Grade::wrong("é".repeat(5_000)).reason;
        assert_eq!(written.chars().count(), limits.0 + 1);
        assert!(miss(written, crate::excerpt::excerpt(&"a ".repeat(500), limits.1)).is_bounded());
        let long = miss("r".repeat(limits.0 + 2), "e".repeat(limits.1 + 2));
        assert!(!long.is_bounded() && long.bounded().is_bounded());
        assert!(!miss("r".into(), "e".repeat(limits.1 + 2)).is_bounded());
        let short = miss("r".into(), "e".into());
        assert!(short.is_bounded() && Text::ptr_eq(&short.bounded().reason, &short.reason));
    }

    #[test]
    fn a_case_result_takes_112_bytes_and_a_miss_24() {
        // A run holds every case's result while its record is written: what only some runs
        // have (answers, a baseline's outcome) is boxed, lists are boxed slices (no spare
        // capacity, 16 bytes) and a miss's texts are thin pointers.
        assert_eq!(std::mem::size_of::<CaseResult>(), 112);
        assert_eq!(std::mem::size_of::<Miss>(), 24);
    }

    #[test]
    fn a_latency_past_u32_is_refused_by_name() {
        // Kept as u32 in memory: 49 days, far past any call's timeout.
        let case = r#"{"id":"a","correct":0,"samples":1,"invalid":0,"errors":0,"latencies_ms":[4294967296]}"#;
        let error = serde_json::from_str::<CaseResult>(case).unwrap_err().to_string();
        assert!(error.contains("4294967296") && error.contains("u32"), "{error}");
        let case = case.replace("4294967296", "4294967295");
        assert_eq!(
            *serde_json::from_str::<CaseResult>(&case).unwrap().latencies_ms,
            [u32::MAX]
        );
    }

    #[test]
    fn nearest_rank_percentiles() {
        assert_eq!(Latency::of((1..=20).rev()), Some(Latency { p50_ms: 10, p95_ms: 19 }));
        assert_eq!(Latency::of([7]), Some(Latency { p50_ms: 7, p95_ms: 7 }));
        assert_eq!(Latency::of([]), None);
        // Repeated values count each time: a sorted copy of these is [1, 2, 2, 2, 2, 2, 2, 2,
        // 2, 2, 9, 9, 9, 9, 9, 9, 9, 9, 9, 30], whose ranks 10 and 19 are 2 and 9.
        let values = [9, 2, 30, 9, 2, 9, 2, 9, 1, 2, 9, 2, 9, 2, 9, 2, 9, 2, 9, 2];
        let mut sorted = values;
        sorted.sort_unstable();
        assert_eq!((sorted[9], sorted[18]), (2, 9));
        assert_eq!(Latency::of(values), Some(Latency { p50_ms: 2, p95_ms: 9 }));
        assert_eq!(
            Latency::of([u32::MAX, 0]),
            Some(Latency {
                p50_ms: 0,
                p95_ms: u64::from(u32::MAX)
            })
        );
    }
}
