//! One case's tally: every call made for it (cached, live or failed) and every grade, counted
//! in one place whatever the call was for; what only a sum reports (calls, tokens, model
//! versions) is counted straight into the [`Totals`] of the case's result.
//!
//! Tallies and totals only add, so those of disjoint sets of samples add up to those of their
//! union: that is what lets [`crate::aggregate::merge`] rebuild a whole run from its shards.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use crate::answers::{CaseDetail, SampleAnswer};
use crate::excerpt::excerpt;
use crate::grader::{Grade, Outcome};
use crate::model_version::Versions;
use crate::provider::{FailureKind, ProviderError, Response};
use crate::run_record::{Calls, CaseResult, Miss, Tokens, MISS_EXCERPT_CHARS};

/// The texts of misses, each kept once for a run: misses repeat (a model wrong the same way
/// in most cases gives the same reason and excerpt every time), and a run holds every case's
/// misses until its record is written.
#[derive(Debug, Default)]
pub struct SharedTexts(HashSet<Arc<str>>);

impl SharedTexts {
    /// Distinct texts remembered: past them (answers that all differ) a text is kept as it
    /// comes, so that the set never holds more than the misses themselves would.
    const REMEMBERED: usize = 4096;

    /// `text`, shared with every earlier miss that had it.
    pub fn share(&mut self, text: &str) -> Arc<str> {
        if let Some(shared) = self.0.get(text) {
            return Arc::clone(shared);
        }
        let shared: Arc<str> = text.into();
        if self.0.len() < Self::REMEMBERED {
            self.0.insert(Arc::clone(&shared));
        }
        shared
    }
}

/// `item` pushed onto `items` growing it by one place, not by doubling: a tally holds its
/// vectors for the whole run, and a case's k samples would otherwise leave up to k places
/// unused in each.
fn push_exact<T>(items: &mut Vec<T>, item: T) {
    items.reserve_exact(1);
    items.push(item);
}

/// The answer to one call.
#[derive(Debug, Clone)]
pub enum Answer {
    Cached(Response),
    Live { response: Response, attempts: u32 },
    Failed { error: ProviderError, attempts: u32 },
}

/// What a call was for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Purpose {
    /// A sample of the case: its latency is the model's.
    Sample,
    /// A grader's call about a sample (the judge): its tokens are spent like any other, and when
    /// it fails the sample cannot be graded.
    Grading,
}

/// What the calls of some samples added up to; sums of disjoint sets add.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Totals {
    pub calls: Calls,
    pub tokens: Tokens,
    pub errors_by_kind: BTreeMap<FailureKind, u64>,
    /// The first failure, in case order, to say what went wrong without a log.
    pub first_error: Option<String>,
    /// Samples per model version the provider named (grading calls are not counted).
    pub versions: Versions,
}

impl Totals {
    /// Add `later`, whose samples come after these.
    pub fn add(&mut self, later: &Totals) {
        self.calls.add(&later.calls);
        self.tokens.input += later.tokens.input;
        self.tokens.output += later.tokens.output;
        for (kind, count) in &later.errors_by_kind {
            *self.errors_by_kind.entry(*kind).or_insert(0) += count;
        }
        if self.first_error.is_none() {
            self.first_error.clone_from(&later.first_error);
        }
        self.versions.add(&later.versions);
    }
}

/// The grades of one case. Answers may arrive in any order; what the tally reports is in
/// sample order.
///
/// A run holds one tally per case for its whole length, so a tally keeps counts, not a
/// [`CaseResult`] of its own (392 bytes a case, once), and what every case has but only a
/// sum reports (calls, tokens, model versions) goes to its result's [`Totals`] as it is
/// counted: 88 bytes a case. What few cases have (failures, kept answers, a family's grades)
/// is boxed.
#[derive(Debug, Clone, PartialEq)]
pub struct CaseTally {
    id: Box<str>,
    correct: u32,
    samples: u32,
    invalid: u32,
    errors: u32,
    /// (sample, latency in ms) of each answered sample.
    latencies: Vec<(u32, u32)>,
    misses: Vec<Miss>,
    rare: Option<Box<Rare>>,
}

/// What a tally holds for few cases, or only when asked.
#[derive(Debug, Clone, PartialEq, Default)]
struct Rare {
    /// The failure of the earliest sample.
    first_error: Option<(u32, String)>,
    /// Every graded answer, when a report shows them ([`CaseTally::keeping_answers`]).
    answers: Option<Vec<SampleAnswer>>,
    /// (sample, right?) of every graded sample, in the order graded, when kept
    /// ([`CaseTally::keeping_grades`]): what a robustness family needs to tell which variant
    /// flipped.
    graded: Option<Vec<(u32, bool)>>,
}

impl CaseTally {
    pub fn new(id: &str) -> CaseTally {
        CaseTally {
            id: id.into(),
            correct: 0,
            samples: 0,
            invalid: 0,
            errors: 0,
            latencies: Vec::new(),
            misses: Vec::new(),
            rare: None,
        }
    }

    /// A tally that also keeps every graded answer: its result carries them in a
    /// [`CaseDetail`] for the caller to complete.
    pub fn keeping_answers(id: &str) -> CaseTally {
        let mut tally = CaseTally::new(id);
        tally.rare_mut().answers = Some(Vec::new());
        tally
    }

    /// This tally, also keeping (sample, right?) of every graded sample ([`CaseTally::graded`]).
    pub fn keeping_grades(mut self) -> CaseTally {
        self.rare_mut().graded = Some(Vec::new());
        self
    }

    fn rare_mut(&mut self) -> &mut Rare {
        self.rare.get_or_insert_with(Box::default)
    }

    /// (sample, right?) of every graded sample, in the order graded; empty unless kept
    /// ([`CaseTally::keeping_grades`]).
    pub fn graded(&self) -> &[(u32, bool)] {
        self.rare
            .as_ref()
            .and_then(|rare| rare.graded.as_deref())
            .unwrap_or_default()
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// Correct samples so far.
    pub fn correct(&self) -> u32 {
        self.correct
    }

    /// Graded samples so far (answered, whether correct, wrong or invalid).
    pub fn samples(&self) -> u32 {
        self.samples
    }

    /// The case's result, misses and latencies in sample order, and the message of its
    /// earliest failed sample.
    pub fn into_parts(self) -> (CaseResult, Option<String>) {
        let mut misses = self.misses;
        misses.sort_by_key(|miss| miss.sample);
        let mut latencies = self.latencies;
        latencies.sort_unstable();
        let rare = self.rare.map(|rare| *rare).unwrap_or_default();
        let detail = rare.answers.map(|mut answers| {
            answers.sort_by_key(|answer| answer.sample);
            Box::new(CaseDetail {
                answers,
                ..CaseDetail::default()
            })
        });
        let result = CaseResult {
            id: self.id.into(),
            correct: self.correct,
            samples: self.samples,
            invalid: self.invalid,
            errors: self.errors,
            misses,
            latencies_ms: latencies.into_iter().map(|(_, latency)| u64::from(latency)).collect(),
            detail,
            baseline: None,
            variants: Vec::new(),
            position: None,
        };
        (result, rare.first_error.map(|(_, message)| message))
    }

    /// Count one call made for `sample`, in this tally and in `totals` (its result's); the
    /// response when there is one to grade. A failed call makes the sample an error (never a
    /// wrong answer).
    pub fn call(&mut self, sample: u32, purpose: Purpose, answer: Answer, totals: &mut Totals) -> Option<Response> {
        let calls = &mut totals.calls;
        let response = match answer {
            Answer::Cached(response) => {
                calls.cached += 1;
                response
            }
            Answer::Live { response, attempts } => {
                calls.made += 1;
                calls.attempts += u64::from(attempts);
                response
            }
            Answer::Failed { error, attempts } => {
                calls.failed += 1;
                calls.attempts += u64::from(attempts);
                self.errors += 1;
                *totals.errors_by_kind.entry(error.kind).or_insert(0) += 1;
                let id = &self.id;
                let rare = self.rare.get_or_insert_with(Box::default);
                let role = match purpose {
                    Purpose::Sample => "",
                    Purpose::Grading => " (judge)",
                };
                if rare.first_error.as_ref().is_none_or(|(first, _)| sample < *first) {
                    let message = format!("case `{id}` sample {sample}{role}: {error}");
                    rare.first_error = Some((sample, message));
                }
                return None;
            }
        };
        if purpose == Purpose::Sample {
            // A latency past 49 days is a broken clock: kept as the longest there is.
            let latency = u32::try_from(response.latency_ms).unwrap_or(u32::MAX);
            push_exact(&mut self.latencies, (sample, latency));
            if let Some(version) = &response.version {
                totals.versions.count(version, 1);
            }
        }
        if let Some(usage) = response.usage {
            totals.tokens.input += usage.input_tokens;
            totals.tokens.output += usage.output_tokens;
        }
        Some(response)
    }

    /// Count the grade of an answered sample; a miss's texts are shared through `texts`.
    pub fn grade(&mut self, sample: u32, grade: Grade, response: &Response, texts: &mut SharedTexts) {
        if let Some(rare) = &mut self.rare {
            if let Some(answers) = &mut rare.answers {
                answers.push(SampleAnswer::new(sample, grade.outcome, &grade.reason, response));
            }
            if let Some(graded) = &mut rare.graded {
                graded.push((sample, grade.outcome == Outcome::Correct));
            }
        }
        self.samples += 1;
        match grade.outcome {
            Outcome::Correct => self.correct += 1,
            Outcome::Wrong | Outcome::Invalid => {
                if grade.outcome == Outcome::Invalid {
                    self.invalid += 1;
                }
                let excerpt = excerpt(response.text.as_deref().unwrap_or_default(), MISS_EXCERPT_CHARS);
                let miss = Miss {
                    sample,
                    outcome: grade.outcome,
                    reason: texts.share(&grade.reason),
                    excerpt: texts.share(&excerpt),
                };
                push_exact(&mut self.misses, miss);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model_version::ModelVersion;
    use crate::provider::Usage;

    fn answered(text: &str, latency_ms: u64, tokens: (u64, u64)) -> Response {
        Response {
            usage: Some(Usage {
                input_tokens: tokens.0,
                output_tokens: tokens.1,
            }),
            latency_ms,
            version: ModelVersion::new("candidate-2025", Some(&format!("fp_{latency_ms}"))),
            ..Response::from_text(text)
        }
    }

    #[test]
    fn every_kind_of_call_is_counted_once_and_only_samples_have_latency() {
        let mut tally = CaseTally::new("c1");
        let mut totals = Totals::default();
        let cached = tally.call(
            0,
            Purpose::Sample,
            Answer::Cached(answered("notify", 40, (10, 2))),
            &mut totals,
        );
        tally.grade(0, Grade::correct("ok"), &cached.unwrap(), &mut SharedTexts::default());
        let live = Answer::Live {
            response: answered("suppress", 90, (10, 3)),
            attempts: 2,
        };
        let live = tally.call(1, Purpose::Sample, live, &mut totals).unwrap();
        // The judge's call: tokens and a call, no latency.
        let judged = tally.call(
            1,
            Purpose::Grading,
            Answer::Cached(answered("no", 500, (100, 1))),
            &mut totals,
        );
        assert!(judged.is_some());
        tally.grade(1, Grade::wrong("expected notify"), &live, &mut SharedTexts::default());
        let failed = Answer::Failed {
            error: ProviderError::new(FailureKind::RateLimit, "429"),
            attempts: 3,
        };
        assert!(tally.call(2, Purpose::Sample, failed, &mut totals).is_none());
        let judge_failed = Answer::Failed {
            error: ProviderError::new(FailureKind::Timeout, "slow"),
            attempts: 1,
        };
        assert!(tally.call(3, Purpose::Grading, judge_failed, &mut totals).is_none());

        let (result, first_error) = tally.into_parts();
        assert_eq!(
            (result.correct, result.samples, result.invalid, result.errors),
            (1, 2, 0, 2)
        );
        assert_eq!(result.latencies_ms, [40, 90]);
        assert_eq!(result.misses.len(), 1);
        assert_eq!((result.misses[0].sample, &*result.misses[0].excerpt), (1, "suppress"));
        assert_eq!(
            totals.calls,
            Calls {
                made: 1,
                cached: 2,
                failed: 2,
                attempts: 6
            }
        );
        assert_eq!(totals.tokens, Tokens { input: 120, output: 6 });
        // The versions of the two samples; the judge's answer (fp_500) is not the candidate's.
        let fingerprints: Vec<Option<String>> =
            totals.versions.to_counts().into_iter().map(|c| c.fingerprint).collect();
        assert_eq!(fingerprints, [Some("fp_40".to_string()), Some("fp_90".to_string())]);
        assert_eq!(totals.errors_by_kind.values().sum::<u64>(), 2);
        assert!(first_error.unwrap().starts_with("case `c1` sample 2: "));
        // The tally itself: its grades and a box for its failure, no call counts.
        assert_eq!(std::mem::size_of::<CaseTally>(), 88);
    }

    #[test]
    fn answers_in_any_order_are_reported_in_sample_order() {
        let mut tally = CaseTally::new("c1");
        let mut totals = Totals::default();
        for sample in [2, 0, 1] {
            let response = answered("suppress", 10 * u64::from(sample), (1, 1));
            let response = tally
                .call(sample, Purpose::Sample, Answer::Cached(response), &mut totals)
                .unwrap();
            tally.grade(
                sample,
                Grade::wrong("expected notify"),
                &response,
                &mut SharedTexts::default(),
            );
        }
        for sample in [4, 3] {
            let failed = Answer::Failed {
                error: ProviderError::new(FailureKind::Server, format!("call {sample}")),
                attempts: 1,
            };
            assert!(tally.call(sample, Purpose::Sample, failed, &mut totals).is_none());
        }
        assert_eq!(tally.samples(), 3);
        let (result, first_error) = tally.into_parts();
        let order: Vec<u32> = result.misses.iter().map(|m| m.sample).collect();
        assert_eq!((order, result.latencies_ms), (vec![0, 1, 2], vec![0, 10, 20]));
        assert!(first_error.unwrap().starts_with("case `c1` sample 3: "));
        assert_eq!(totals.calls.failed, 2);
    }

    #[test]
    fn misses_of_many_cases_share_their_texts_and_hold_no_spare_places() {
        let mut texts = SharedTexts::default();
        let mut totals = Totals::default();
        let results: Vec<CaseResult> = (0..3)
            .map(|case| {
                let mut tally = CaseTally::new(&format!("c{case}"));
                for sample in 0..5 {
                    let response = answered("  suppress\n", 7, (1, 1));
                    let response = tally
                        .call(sample, Purpose::Sample, Answer::Cached(response), &mut totals)
                        .unwrap();
                    tally.grade(sample, Grade::wrong("expected notify"), &response, &mut texts);
                }
                assert_eq!((tally.latencies.capacity(), tally.misses.capacity()), (5, 5));
                tally.into_parts().0
            })
            .collect();
        let first = &results[0].misses[0];
        assert_eq!((&*first.reason, &*first.excerpt), ("expected notify", "suppress"));
        for miss in results.iter().flat_map(|r| &r.misses) {
            assert!(Arc::ptr_eq(&miss.reason, &first.reason) && Arc::ptr_eq(&miss.excerpt, &first.excerpt));
        }
        // Past the texts it remembers, a text is still right, only not shared.
        let mut full = SharedTexts::default();
        for n in 0..SharedTexts::REMEMBERED {
            full.share(&n.to_string());
        }
        let (a, b) = (full.share("late"), full.share("late"));
        assert_eq!((&*a, &*b), ("late", "late"));
        assert!(!Arc::ptr_eq(&a, &b));
        assert!(Arc::ptr_eq(&full.share("7"), &full.share("7")));
    }

    #[test]
    fn a_tally_keeping_answers_has_every_graded_one_in_sample_order() {
        let mut plain = CaseTally::new("c1");
        let mut keeping = CaseTally::keeping_answers("c1");
        let mut totals = Totals::default();
        for tally in [&mut plain, &mut keeping] {
            for (sample, text) in [(1, "notify"), (0, "suppress")] {
                let response = tally
                    .call(
                        sample,
                        Purpose::Sample,
                        Answer::Cached(answered(text, 5, (1, 1))),
                        &mut totals,
                    )
                    .unwrap();
                let grade = if text == "suppress" {
                    Grade::correct("answered `suppress`")
                } else {
                    Grade::wrong("answered `notify`")
                };
                tally.grade(sample, grade, &response, &mut SharedTexts::default());
            }
            let failed = Answer::Failed {
                error: ProviderError::new(FailureKind::Server, "500"),
                attempts: 1,
            };
            assert!(tally.call(2, Purpose::Sample, failed, &mut totals).is_none());
        }
        assert_eq!(plain.into_parts().0.detail, None);
        let detail = keeping.into_parts().0.detail.expect("answers kept");
        let kept: Vec<(u32, Outcome, &str)> = detail
            .answers
            .iter()
            .map(|a| (a.sample, a.outcome, a.text.as_str()))
            .collect();
        assert_eq!(kept, [(0, Outcome::Correct, "suppress"), (1, Outcome::Wrong, "notify")]);
    }

    #[test]
    fn totals_add_and_keep_the_earlier_first_error() {
        let error = |text: &str| Totals {
            calls: Calls {
                failed: 1,
                ..Calls::default()
            },
            errors_by_kind: BTreeMap::from([(FailureKind::Server, 1)]),
            first_error: Some(text.into()),
            ..Totals::default()
        };
        let mut sum = Totals::default();
        sum.add(&error("first"));
        sum.add(&error("second"));
        assert_eq!(sum.first_error.as_deref(), Some("first"));
        assert_eq!(sum.calls.failed, 2);
        assert_eq!(sum.errors_by_kind[&FailureKind::Server], 2);
    }
}
