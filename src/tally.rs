//! One case's tally: every call made for it (cached, live or failed) and every grade, counted
//! in one place whatever the call was for.
//!
//! A tally only adds, so the tallies of disjoint sets of samples add up to the tally of their
//! union: that is what lets [`crate::aggregate::merge`] rebuild a whole run from its shards.

use std::collections::BTreeMap;

use crate::answers::{CaseDetail, SampleAnswer};
use crate::excerpt::excerpt;
use crate::grader::{Grade, Outcome};
use crate::model_version::Versions;
use crate::provider::{FailureKind, ProviderError, Response};
use crate::run_record::{Calls, CaseResult, Miss, Tokens};

/// The longest excerpt of a wrong answer kept in a record.
const MISS_EXCERPT_CHARS: usize = 120;

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

/// The calls and grades of one case. Answers may arrive in any order; what the tally reports
/// is in sample order.
#[derive(Debug, Clone, PartialEq)]
pub struct CaseTally {
    result: CaseResult,
    totals: Totals,
    /// (sample, latency) of each answered sample.
    latencies: Vec<(u32, u64)>,
    /// The failure of the earliest sample.
    first_error: Option<(u32, String)>,
    /// Every graded answer, when a report shows them ([`CaseTally::keeping_answers`]).
    answers: Option<Vec<SampleAnswer>>,
    /// (sample, right?) of every graded sample, in the order graded: what a robustness family
    /// needs to tell which variant flipped.
    graded: Vec<(u32, bool)>,
}

impl CaseTally {
    pub fn new(id: &str) -> CaseTally {
        CaseTally {
            result: CaseResult {
                id: id.to_string(),
                correct: 0,
                samples: 0,
                invalid: 0,
                errors: 0,
                misses: Vec::new(),
                latencies_ms: Vec::new(),
                detail: None,
                baseline: None,
                variants: Vec::new(),
                position: None,
            },
            totals: Totals::default(),
            latencies: Vec::new(),
            first_error: None,
            answers: None,
            graded: Vec::new(),
        }
    }

    /// (sample, right?) of every graded sample, in the order graded.
    pub fn graded(&self) -> &[(u32, bool)] {
        &self.graded
    }

    /// A tally that also keeps every graded answer: its result carries them in a
    /// [`CaseDetail`] for the caller to complete.
    pub fn keeping_answers(id: &str) -> CaseTally {
        CaseTally {
            answers: Some(Vec::new()),
            ..CaseTally::new(id)
        }
    }

    /// The counts so far (misses and latencies are filled in by [`CaseTally::into_parts`]).
    pub fn result(&self) -> &CaseResult {
        &self.result
    }

    /// The case's result, misses and latencies in sample order, and its totals.
    pub fn into_parts(mut self) -> (CaseResult, Totals) {
        self.result.misses.sort_by_key(|miss| miss.sample);
        self.latencies.sort_unstable();
        self.result.latencies_ms = self.latencies.into_iter().map(|(_, latency)| latency).collect();
        if let Some(mut answers) = self.answers {
            answers.sort_by_key(|answer| answer.sample);
            self.result.detail = Some(Box::new(CaseDetail {
                answers,
                ..CaseDetail::default()
            }));
        }
        self.totals.first_error = self.first_error.map(|(_, message)| message);
        (self.result, self.totals)
    }

    /// Count one call made for `sample`; the response when there is one to grade. A failed
    /// call makes the sample an error (never a wrong answer).
    pub fn call(&mut self, sample: u32, purpose: Purpose, answer: Answer) -> Option<Response> {
        let calls = &mut self.totals.calls;
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
                self.result.errors += 1;
                *self.totals.errors_by_kind.entry(error.kind).or_insert(0) += 1;
                let role = match purpose {
                    Purpose::Sample => "",
                    Purpose::Grading => " (judge)",
                };
                if self.first_error.as_ref().is_none_or(|(first, _)| sample < *first) {
                    let message = format!("case `{}` sample {sample}{role}: {error}", self.result.id);
                    self.first_error = Some((sample, message));
                }
                return None;
            }
        };
        if purpose == Purpose::Sample {
            self.latencies.push((sample, response.latency_ms));
            if let Some(version) = &response.version {
                self.totals.versions.count(version, 1);
            }
        }
        if let Some(usage) = response.usage {
            self.totals.tokens.input += usage.input_tokens;
            self.totals.tokens.output += usage.output_tokens;
        }
        Some(response)
    }

    /// Count the grade of an answered sample.
    pub fn grade(&mut self, sample: u32, grade: Grade, response: &Response) {
        if let Some(answers) = &mut self.answers {
            answers.push(SampleAnswer::new(sample, grade.outcome, &grade.reason, response));
        }
        self.graded.push((sample, grade.outcome == Outcome::Correct));
        let result = &mut self.result;
        result.samples += 1;
        match grade.outcome {
            Outcome::Correct => result.correct += 1,
            Outcome::Wrong | Outcome::Invalid => {
                if grade.outcome == Outcome::Invalid {
                    result.invalid += 1;
                }
                result.misses.push(Miss {
                    sample,
                    outcome: grade.outcome,
                    reason: grade.reason,
                    excerpt: excerpt(response.text.as_deref().unwrap_or_default(), MISS_EXCERPT_CHARS),
                });
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
        let cached = tally.call(0, Purpose::Sample, Answer::Cached(answered("notify", 40, (10, 2))));
        tally.grade(0, Grade::correct("ok"), &cached.unwrap());
        let live = Answer::Live {
            response: answered("suppress", 90, (10, 3)),
            attempts: 2,
        };
        let live = tally.call(1, Purpose::Sample, live).unwrap();
        // The judge's call: tokens and a call, no latency.
        let judged = tally.call(1, Purpose::Grading, Answer::Cached(answered("no", 500, (100, 1))));
        assert!(judged.is_some());
        tally.grade(1, Grade::wrong("expected notify"), &live);
        let failed = Answer::Failed {
            error: ProviderError::new(FailureKind::RateLimit, "429"),
            attempts: 3,
        };
        assert!(tally.call(2, Purpose::Sample, failed).is_none());
        let judge_failed = Answer::Failed {
            error: ProviderError::new(FailureKind::Timeout, "slow"),
            attempts: 1,
        };
        assert!(tally.call(3, Purpose::Grading, judge_failed).is_none());

        let (result, totals) = tally.into_parts();
        assert_eq!(
            (result.correct, result.samples, result.invalid, result.errors),
            (1, 2, 0, 2)
        );
        assert_eq!(result.latencies_ms, [40, 90]);
        assert_eq!(result.misses.len(), 1);
        assert_eq!(
            (result.misses[0].sample, result.misses[0].excerpt.as_str()),
            (1, "suppress")
        );
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
        assert!(totals
            .first_error
            .as_deref()
            .unwrap()
            .starts_with("case `c1` sample 2: "));
    }

    #[test]
    fn answers_in_any_order_are_reported_in_sample_order() {
        let mut tally = CaseTally::new("c1");
        for sample in [2, 0, 1] {
            let response = answered("suppress", 10 * u64::from(sample), (1, 1));
            let response = tally.call(sample, Purpose::Sample, Answer::Cached(response)).unwrap();
            tally.grade(sample, Grade::wrong("expected notify"), &response);
        }
        for sample in [4, 3] {
            let failed = Answer::Failed {
                error: ProviderError::new(FailureKind::Server, format!("call {sample}")),
                attempts: 1,
            };
            assert!(tally.call(sample, Purpose::Sample, failed).is_none());
        }
        assert_eq!(tally.result().samples, 3);
        let (result, totals) = tally.into_parts();
        let order: Vec<u32> = result.misses.iter().map(|m| m.sample).collect();
        assert_eq!((order, result.latencies_ms), (vec![0, 1, 2], vec![0, 10, 20]));
        assert!(totals.first_error.unwrap().starts_with("case `c1` sample 3: "));
    }

    #[test]
    fn a_tally_keeping_answers_has_every_graded_one_in_sample_order() {
        let mut plain = CaseTally::new("c1");
        let mut keeping = CaseTally::keeping_answers("c1");
        for tally in [&mut plain, &mut keeping] {
            for (sample, text) in [(1, "notify"), (0, "suppress")] {
                let response = tally
                    .call(sample, Purpose::Sample, Answer::Cached(answered(text, 5, (1, 1))))
                    .unwrap();
                let grade = if text == "suppress" {
                    Grade::correct("answered `suppress`")
                } else {
                    Grade::wrong("answered `notify`")
                };
                tally.grade(sample, grade, &response);
            }
            let failed = Answer::Failed {
                error: ProviderError::new(FailureKind::Server, "500"),
                attempts: 1,
            };
            assert!(tally.call(2, Purpose::Sample, failed).is_none());
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
