//! One case's tally: every call made for it (cached, live or failed) and every grade, counted
//! in one place whatever the call was for; what only a sum reports (calls, tokens, model
//! versions) is counted straight into the [`Totals`] of the case's result.
//!
//! Tallies and totals only add, so those of disjoint sets of samples add up to those of their
//! union: that is what lets [`crate::aggregate::merge`] rebuild a whole run from its shards.

use std::collections::{BTreeMap, HashMap};

use crate::answers::{CaseDetail, SampleAnswer};
use crate::excerpt::excerpt;
use crate::grader::{Grade, Outcome};
use crate::model_version::Versions;
use crate::provider::{FailureKind, ProviderError, Response};
use crate::run_record::{Calls, CaseResult, Miss, Text, Tokens, MISS_EXCERPT_CHARS};

/// The texts of a run's misses, each distinct one kept once and named by its place: misses
/// repeat (a model wrong the same way in most cases gives the same reason and excerpt every
/// time), and a run holds every case's misses until its record is written.
#[derive(Debug, Default)]
pub struct SharedTexts {
    texts: Vec<Text>,
    places: HashMap<Text, usize>,
}

impl SharedTexts {
    /// Distinct texts looked up: past them (answers that all differ) a text is kept as it
    /// comes, so that the index never holds more than the misses themselves would.
    const REMEMBERED: usize = 4096;

    /// The place of `text`, the same as every earlier miss's that had it.
    pub fn share(&mut self, text: &str) -> usize {
        if let Some(&place) = self.places.get(text) {
            return place;
        }
        let shared = Text::from(text);
        let place = self.texts.len();
        if self.places.len() < Self::REMEMBERED {
            self.places.insert(shared.clone(), place);
        }
        self.texts.push(shared);
        place
    }

    /// The text at `place`; empty for a place [`SharedTexts::share`] never gave.
    pub fn get(&self, place: usize) -> Text {
        self.texts.get(place).cloned().unwrap_or_else(|| "".into())
    }
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
/// A run holds one tally per case for its whole length, so a tally keeps counts, and each
/// answered sample's latency and each miss as a few bytes of a [`Log`]; what every case has
/// but only a sum reports (calls, tokens, model versions) goes to its result's [`Totals`] as
/// it is counted, and the case's id is its suite's. 40 bytes a case and about 4 a sample,
/// where a tally with its id, a vector of latencies and one of misses took 88 bytes, 8 a
/// sample and 40 a miss. What few cases have (failures, kept answers, a family's grades) is
/// boxed.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CaseTally {
    correct: u32,
    samples: u32,
    invalid: u32,
    errors: u32,
    log: Log,
    rare: Option<Box<Rare>>,
}

/// What a tally holds for few cases, or only when asked.
#[derive(Debug, Clone, PartialEq, Default)]
struct Rare {
    /// The failure of the earliest sample: its number, and what the message says after the
    /// case's id.
    first_error: Option<(u32, String)>,
    /// Every graded answer, when a report shows them ([`CaseTally::keeping_answers`]).
    answers: Option<Vec<SampleAnswer>>,
    /// (sample, right?) of every graded sample, in the order graded, when kept
    /// ([`CaseTally::keeping_grades`]): what a robustness family needs to tell which variant
    /// flipped.
    graded: Option<Vec<(u32, bool)>>,
}

/// A case's latencies and misses in the order they came, as LEB128 numbers: an entry starts
/// with its sample number doubled, plus one for a miss; a latency's milliseconds follow, or a
/// miss's outcome (0 wrong, 1 invalid) and the places of its reason and excerpt among the
/// run's [`SharedTexts`]. Grown to its exact length: the log is kept for the whole run.
#[derive(Debug, Clone, PartialEq, Default)]
struct Log(Box<[u8]>);

/// One entry of a [`Log`].
#[derive(Debug, Clone, Copy, PartialEq)]
enum Entry {
    Latency {
        sample: u32,
        ms: u32,
    },
    Miss {
        sample: u32,
        invalid: bool,
        reason: usize,
        excerpt: usize,
    },
}

impl Log {
    /// The longest entry: three numbers of up to ten bytes, and an outcome.
    const ENTRY_BYTES: usize = 31;

    fn push(&mut self, entry: Entry) {
        let mut bytes = [0u8; Self::ENTRY_BYTES];
        let mut length = 0;
        let mut put = |value: u64| length += leb128(value, &mut bytes[length..]);
        match entry {
            Entry::Latency { sample, ms } => {
                put(u64::from(sample) << 1);
                put(u64::from(ms));
            }
            Entry::Miss {
                sample,
                invalid,
                reason,
                excerpt,
            } => {
                put((u64::from(sample) << 1) | 1);
                put(u64::from(invalid));
                put(reason as u64);
                put(excerpt as u64);
            }
        }
        // Grown by reallocation, which the allocator does in place while the block has room.
        let mut grown = std::mem::take(&mut self.0).into_vec();
        grown.reserve_exact(length);
        grown.extend_from_slice(&bytes[..length]);
        self.0 = grown.into_boxed_slice();
    }

    /// Every entry, in the order pushed.
    fn entries(&self) -> impl Iterator<Item = Entry> + '_ {
        let mut rest: &[u8] = &self.0;
        std::iter::from_fn(move || {
            let head = read_leb128(&mut rest)?;
            let sample = u32::try_from(head >> 1).ok()?;
            if head & 1 == 0 {
                let ms = u32::try_from(read_leb128(&mut rest)?).ok()?;
                return Some(Entry::Latency { sample, ms });
            }
            let invalid = read_leb128(&mut rest)? == 1;
            let reason = usize::try_from(read_leb128(&mut rest)?).ok()?;
            let excerpt = usize::try_from(read_leb128(&mut rest)?).ok()?;
            Some(Entry::Miss {
                sample,
                invalid,
                reason,
                excerpt,
            })
        })
    }
}

/// `value` written to the start of `out` as unsigned LEB128; the bytes written (at most 10).
fn leb128(mut value: u64, out: &mut [u8]) -> usize {
    let mut written = 0;
    loop {
        let low = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out[written] = low;
            return written + 1;
        }
        out[written] = low | 0x80;
        written += 1;
    }
}

/// The unsigned LEB128 number at the start of `bytes`, which then start after it; `None` at
/// the end (or past 64 bits, which [`leb128`] never writes).
fn read_leb128(bytes: &mut &[u8]) -> Option<u64> {
    let mut value = 0u64;
    for (index, &byte) in bytes.iter().enumerate().take(10) {
        value |= u64::from(byte & 0x7f) << (7 * index);
        if byte & 0x80 == 0 {
            *bytes = &bytes[index + 1..];
            return Some(value);
        }
    }
    None
}

impl CaseTally {
    pub fn new() -> CaseTally {
        CaseTally::default()
    }

    /// A tally that also keeps every graded answer: its result carries them in a
    /// [`CaseDetail`] for the caller to complete.
    pub fn keeping_answers() -> CaseTally {
        let mut tally = CaseTally::new();
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

    /// Correct samples so far.
    pub fn correct(&self) -> u32 {
        self.correct
    }

    /// Graded samples so far (answered, whether correct, wrong or invalid).
    pub fn samples(&self) -> u32 {
        self.samples
    }

    /// The result of case `id`, misses and latencies in sample order with the misses' texts
    /// from `texts` (those [`CaseTally::grade`] was given), and the message of its earliest
    /// failed sample.
    pub fn into_parts(self, id: &str, texts: &SharedTexts) -> (CaseResult, Option<String>) {
        // Sized exactly (every graded sample not right is a miss): the results of every case
        // are held until the run's record is written.
        let mut misses = Vec::with_capacity(self.samples.saturating_sub(self.correct) as usize);
        let mut latencies = Vec::with_capacity(self.samples as usize);
        for entry in self.log.entries() {
            match entry {
                Entry::Latency { sample, ms } => latencies.push((sample, ms)),
                Entry::Miss {
                    sample,
                    invalid,
                    reason,
                    excerpt,
                } => misses.push(Miss {
                    sample,
                    outcome: if invalid { Outcome::Invalid } else { Outcome::Wrong },
                    reason: texts.get(reason),
                    excerpt: texts.get(excerpt),
                }),
            }
        }
        misses.sort_by_key(|miss| miss.sample);
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
            id: id.into(),
            correct: self.correct,
            samples: self.samples,
            invalid: self.invalid,
            errors: self.errors,
            // Its capacity is its length (above): boxing it copies nothing.
            misses: misses.into_boxed_slice(),
            latencies_ms: latencies.into_iter().map(|(_, latency)| latency).collect(),
            detail,
            baseline: None,
            variants: Box::default(),
            position: None,
        };
        let first_error = rare
            .first_error
            .map(|(sample, message)| format!("case `{id}` sample {sample}{message}"));
        (result, first_error)
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
                let rare = self.rare_mut();
                let role = match purpose {
                    Purpose::Sample => "",
                    Purpose::Grading => " (judge)",
                };
                if rare.first_error.as_ref().is_none_or(|(first, _)| sample < *first) {
                    rare.first_error = Some((sample, format!("{role}: {error}")));
                }
                return None;
            }
        };
        if purpose == Purpose::Sample {
            // A latency past 49 days is a broken clock: kept as the longest there is.
            let ms = u32::try_from(response.latency_ms).unwrap_or(u32::MAX);
            self.log.push(Entry::Latency { sample, ms });
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
                let invalid = grade.outcome == Outcome::Invalid;
                if invalid {
                    self.invalid += 1;
                }
                let excerpt = excerpt(response.text.as_deref().unwrap_or_default(), MISS_EXCERPT_CHARS);
                self.log.push(Entry::Miss {
                    sample,
                    invalid,
                    reason: texts.share(&grade.reason),
                    excerpt: texts.share(&excerpt),
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
        let mut tally = CaseTally::new();
        let (mut totals, mut texts) = (Totals::default(), SharedTexts::default());
        let cached = tally.call(
            0,
            Purpose::Sample,
            Answer::Cached(answered("notify", 40, (10, 2))),
            &mut totals,
        );
        tally.grade(0, Grade::correct("ok"), &cached.unwrap(), &mut texts);
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
        tally.grade(1, Grade::wrong("expected notify"), &live, &mut texts);
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

        let (result, first_error) = tally.into_parts("c1", &texts);
        assert_eq!(
            (result.correct, result.samples, result.invalid, result.errors),
            (1, 2, 0, 2)
        );
        assert_eq!(*result.latencies_ms, [40, 90]);
        assert_eq!(result.misses.len(), 1);
        let miss = &result.misses[0];
        assert_eq!(
            (miss.sample, miss.outcome, &*miss.reason, &*miss.excerpt),
            (1, Outcome::Wrong, "expected notify", "suppress")
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
        assert!(first_error.unwrap().starts_with("case `c1` sample 2: "));
        // The tally itself: its counts, its log and a box for its failure, no call counts.
        assert_eq!(std::mem::size_of::<CaseTally>(), 40);
    }

    #[test]
    fn answers_in_any_order_are_reported_in_sample_order() {
        let mut tally = CaseTally::new();
        let (mut totals, mut texts) = (Totals::default(), SharedTexts::default());
        for sample in [2, 0, 1] {
            let response = answered("suppress", 10 * u64::from(sample), (1, 1));
            let response = tally
                .call(sample, Purpose::Sample, Answer::Cached(response), &mut totals)
                .unwrap();
            let grade = match sample {
                1 => Grade::new(Outcome::Invalid, "not a label"),
                _ => Grade::wrong("expected notify"),
            };
            tally.grade(sample, grade, &response, &mut texts);
        }
        for sample in [4, 3] {
            let failed = Answer::Failed {
                error: ProviderError::new(FailureKind::Server, format!("call {sample}")),
                attempts: 1,
            };
            assert!(tally.call(sample, Purpose::Sample, failed, &mut totals).is_none());
        }
        assert_eq!(tally.samples(), 3);
        let (result, first_error) = tally.into_parts("c1", &texts);
        let misses: Vec<(u32, Outcome, &str)> = result
            .misses
            .iter()
            .map(|m| (m.sample, m.outcome, &*m.reason))
            .collect();
        assert_eq!(
            misses,
            [
                (0, Outcome::Wrong, "expected notify"),
                (1, Outcome::Invalid, "not a label"),
                (2, Outcome::Wrong, "expected notify")
            ]
        );
        assert_eq!((result.invalid, &*result.latencies_ms), (1, &[0, 10, 20][..]));
        assert!(first_error.unwrap().starts_with("case `c1` sample 3: "));
        assert_eq!(totals.calls.failed, 2);
    }

    #[test]
    fn misses_of_many_cases_share_their_texts_and_take_a_few_bytes_each() {
        let mut texts = SharedTexts::default();
        let mut totals = Totals::default();
        let results: Vec<CaseResult> = (0..3)
            .map(|case| {
                let mut tally = CaseTally::new();
                for sample in 0..5 {
                    let response = answered("  suppress\n", 7, (1, 1));
                    let response = tally
                        .call(sample, Purpose::Sample, Answer::Cached(response), &mut totals)
                        .unwrap();
                    tally.grade(sample, Grade::wrong("expected notify"), &response, &mut texts);
                }
                // Each sample: its latency in 2 bytes, its miss in 4, and no spare place.
                assert_eq!(tally.log.0.len(), 5 * 6);
                tally.into_parts(&format!("c{case}"), &texts).0
            })
            .collect();
        assert!(results.iter().all(|r| r.misses.len() == 5));
        let first = &results[0].misses[0];
        assert_eq!((&*first.reason, &*first.excerpt), ("expected notify", "suppress"));
        for miss in results.iter().flat_map(|r| &r.misses) {
            assert!(Text::ptr_eq(&miss.reason, &first.reason) && Text::ptr_eq(&miss.excerpt, &first.excerpt));
        }
        assert_eq!(texts.texts.len(), 2);
        // Past the texts it remembers, a text is still right, only not shared.
        let mut full = SharedTexts::default();
        for n in 0..SharedTexts::REMEMBERED {
            full.share(&n.to_string());
        }
        let (a, b) = (full.share("late"), full.share("late"));
        assert_ne!(a, b);
        assert_eq!((&*full.get(a), &*full.get(b)), ("late", "late"));
        assert_eq!(full.share("7"), full.share("7"));
        assert_eq!(&*full.get(usize::MAX), "");
    }

    #[test]
    fn a_log_gives_back_every_entry_in_the_order_pushed_whatever_its_numbers() {
        let entries = [
            Entry::Latency { sample: 0, ms: 0 },
            Entry::Miss {
                sample: u32::MAX,
                invalid: true,
                reason: usize::MAX,
                excerpt: 127,
            },
            Entry::Latency {
                sample: u32::MAX,
                ms: u32::MAX,
            },
            Entry::Miss {
                sample: 128,
                invalid: false,
                reason: 0,
                excerpt: 16_384,
            },
        ];
        let mut log = Log::default();
        for entry in entries {
            log.push(entry);
        }
        assert_eq!(log.entries().collect::<Vec<_>>(), entries);
        // 1 + 1, 5 + 1 + 10 + 1, 5 + 5, 2 + 1 + 1 + 3 bytes: no spare place.
        assert_eq!(log.0.len(), 2 + 17 + 10 + 7);
        // A number cut short ends the entries; it does not wrap around.
        let mut cut = [0x80u8; 11];
        cut[10] = 0;
        assert_eq!(read_leb128(&mut &cut[..]), None);
        assert_eq!(read_leb128(&mut &[0x80u8, 0x80][..]), None);
    }

    #[test]
    fn a_tally_keeping_answers_has_every_graded_one_in_sample_order() {
        let mut plain = CaseTally::new();
        let mut keeping = CaseTally::keeping_answers();
        let (mut totals, mut texts) = (Totals::default(), SharedTexts::default());
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
                tally.grade(sample, grade, &response, &mut texts);
            }
            let failed = Answer::Failed {
                error: ProviderError::new(FailureKind::Server, "500"),
                attempts: 1,
            };
            assert!(tally.call(2, Purpose::Sample, failed, &mut totals).is_none());
        }
        assert_eq!(plain.into_parts("c1", &texts).0.detail, None);
        let detail = keeping.into_parts("c1", &texts).0.detail.expect("answers kept");
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
