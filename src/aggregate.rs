//! From the tallies of a suite's cases to its [`SuiteResult`]: accuracy and its interval, calls,
//! tokens, cost, latency and the verdict. Pure: plain data in, plain data out.
//!
//! Everything a result reports is either a sum over cases or computed from the per-case
//! results it keeps (correct and valid samples, latencies), so the results of disjoint sets of
//! cases [`merge`] into the result of their union: the same figures as one run over all of them.

use std::collections::HashMap;

use crate::config::Prices;
use crate::error::Error;
use crate::provider::FailureKind;
use crate::robustness::{CaseVariants, Family, Robustness};
use crate::run_record::{CaseResult, Latency, SuiteResult, Verdict};
use crate::stats::{self, CaseOutcome, IntervalMethod};
use crate::tally::Totals;

/// What a result is of: the suite, model and prompt version, and how it was sampled.
#[derive(Debug, Clone, PartialEq)]
pub struct Identity {
    pub suite: String,
    pub model: String,
    pub model_id: String,
    pub provider: String,
    pub prompt: String,
    pub prompt_sha256: String,
    pub samples_per_case: u32,
}

/// How figures become a verdict.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Settings {
    pub confidence_level: f64,
    pub interval: IntervalMethod,
    /// Above this share of failed calls the result is inconclusive.
    pub max_error_rate: f64,
}

/// The result of one suite × model × prompt from its cases' results and the messages of
/// their earliest failures ([`crate::tally::CaseTally::into_parts`]), in case order, and what
/// their calls added up to (`totals`, whose first error is the earliest case's).
pub fn aggregate(
    identity: Identity,
    cases: impl ExactSizeIterator<Item = (CaseResult, Option<String>)>,
    mut totals: Totals,
    prices: Option<Prices>,
    settings: &Settings,
) -> SuiteResult {
    let mut per_case = Vec::with_capacity(cases.len());
    for (result, first_error) in cases {
        if totals.first_error.is_none() {
            totals.first_error = first_error;
        }
        per_case.push(result);
    }
    let cost_usd = prices.map(|prices| prices.cost(totals.tokens.input, totals.tokens.output));
    finish(identity, per_case, totals, cost_usd, settings)
}

/// What a robustness family's variants did (`family_result`, a `suite~family` result) against
/// the same model's answers to the cases themselves (`plain`): a variant flips when its grade
/// differs from its case's majority grade. `cases_left_out` counts the suite's cases with
/// nothing to vary.
pub fn robustness(
    family: Family,
    cases_left_out: usize,
    family_result: &SuiteResult,
    plain: &SuiteResult,
    settings: &Settings,
) -> Robustness {
    let original: HashMap<&str, bool> = plain
        .per_case
        .iter()
        .filter(|c| c.samples > 0)
        .map(|c| (&*c.id, 2 * c.correct > c.samples))
        .collect();
    let cases: Vec<CaseVariants> = family_result
        .per_case
        .iter()
        .map(|case| CaseVariants {
            variants: case.variants.iter().map(|v| (v.variant.clone(), v.right)).collect(),
            original_right: original.get(&*case.id).copied(),
        })
        .collect();
    crate::robustness::summarize(
        family,
        family_result.samples_per_case,
        cases_left_out,
        &cases,
        settings.confidence_level,
        settings.interval,
    )
}

/// The result of the union of `parts`, results of disjoint cases of the same suite, model and
/// prompt, given in case order, or (a shard's) with each case's `position` in the suite, by
/// which they are put back in order, with no place left empty. Every figure equals that of one run over all the cases, cost
/// included when `prices` are given; without them `cost_usd` is the sum of the parts' costs
/// (equal up to rounding). Latency is left out when a part was recorded without per-case
/// latencies.
pub fn merge(parts: Vec<SuiteResult>, prices: Option<Prices>, settings: &Settings) -> Result<SuiteResult, Error> {
    let Some(first) = parts.first() else {
        return Err(Error::usage("nothing to merge"));
    };
    let identity = identity_of(first);
    let mut totals = Totals::default();
    let mut per_case: Vec<CaseResult> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut cost_usd = Some(0.0);
    let mut latency_known = true;
    // A result names its first failure in case order: with the cases of shards interleaved,
    // that is the failure of the part whose failed case comes first in the suite.
    let first_failure = |part: &SuiteResult| {
        part.per_case
            .iter()
            .filter(|c| c.errors > 0)
            .map(|c| c.position)
            .min()
            .flatten()
    };
    let first_error_of = parts
        .iter()
        .enumerate()
        .filter_map(|(index, part)| first_failure(part).map(|position| (position, index)))
        .min()
        .map(|(_, index)| index);
    for (index, part) in parts.into_iter().enumerate() {
        let theirs = identity_of(&part);
        if theirs != identity {
            return Err(Error::usage(format!(
                "cannot merge `{}` on `{}` ({}) with `{}` on `{}` ({})",
                identity.suite,
                identity.model,
                identity.prompt_sha256,
                theirs.suite,
                theirs.model,
                theirs.prompt_sha256
            ))
            .with_hint("merge the results of one suite, model and prompt version, sampled alike"));
        }
        if let Some(case) = part.per_case.iter().find(|c| !seen.insert(c.id.clone())) {
            return Err(Error::usage(format!("case `{}` is in more than one part", case.id))
                .with_hint("each part must hold other cases (disjoint shards of the suite)"));
        }
        // A part with answered samples but no latencies was recorded before they were kept.
        latency_known &= part.latency.is_none() || part.per_case.iter().any(|c| !c.latencies_ms.is_empty());
        totals.add(&Totals {
            calls: part.calls,
            tokens: part.tokens,
            errors_by_kind: part.errors_by_kind,
            first_error: part
                .first_error
                .filter(|_| first_error_of.is_none_or(|first| first == index)),
            versions: crate::model_version::Versions::from_counts(&part.model_versions),
        });
        cost_usd = cost_usd.zip(part.cost_usd).map(|(a, b)| a + b);
        per_case.extend(part.per_case);
    }
    let cost_usd = match prices {
        Some(prices) => Some(prices.cost(totals.tokens.input, totals.tokens.output)),
        None => cost_usd,
    };
    if per_case.iter().all(|c| c.position.is_some()) {
        in_suite_order(&mut per_case)?;
    }
    let mut result = finish(identity, per_case, totals, cost_usd, settings);
    if !latency_known {
        result.latency = None;
    }
    Ok(result)
}

/// The cases of shards (each with its place in the suite) back in suite order, which must
/// leave no place empty; their places are then dropped, as an unsharded run has none.
fn in_suite_order(per_case: &mut [CaseResult]) -> Result<(), Error> {
    per_case.sort_by_key(|c| c.position);
    for (expected, case) in per_case.iter_mut().enumerate() {
        if case.position != Some(expected) {
            return Err(Error::usage(format!(
                "the parts do not hold the whole suite: no case is at place {expected} (case `{}` is at {})",
                case.id,
                case.position.unwrap_or_default()
            ))
            .with_hint("merge the records of every shard, as the shards wrote them"));
        }
        case.position = None;
    }
    Ok(())
}

fn identity_of(result: &SuiteResult) -> Identity {
    Identity {
        suite: result.suite.clone(),
        model: result.model.clone(),
        model_id: result.model_id.clone(),
        provider: result.provider.clone(),
        prompt: result.prompt.clone(),
        prompt_sha256: result.prompt_sha256.clone(),
        samples_per_case: result.samples_per_case,
    }
}

fn finish(
    identity: Identity,
    per_case: Vec<CaseResult>,
    totals: Totals,
    cost_usd: Option<f64>,
    settings: &Settings,
) -> SuiteResult {
    let outcomes: Vec<CaseOutcome> = per_case
        .iter()
        .map(|case| CaseOutcome {
            correct: case.correct,
            samples: case.samples,
        })
        .collect();
    let accuracy = stats::accuracy(&outcomes, settings.confidence_level, settings.interval);
    let calls = totals.calls;
    let total = calls.made + calls.cached + calls.failed;
    let error_rate = if total == 0 {
        0.0
    } else {
        calls.failed as f64 / total as f64
    };
    // A call not made (offline, or past --max-calls) leaves the run incomplete, whatever the rate.
    let not_called = [FailureKind::OfflineMiss, FailureKind::CallLimit]
        .iter()
        .any(|kind| totals.errors_by_kind.contains_key(kind));
    let verdict = if not_called || error_rate > settings.max_error_rate || accuracy.is_none() {
        Verdict::Inconclusive
    } else {
        Verdict::Pass
    };
    SuiteResult {
        suite: identity.suite,
        model: identity.model,
        model_id: identity.model_id,
        provider: identity.provider,
        prompt: identity.prompt,
        prompt_sha256: identity.prompt_sha256,
        cases: per_case.len(),
        samples_per_case: identity.samples_per_case,
        accuracy: accuracy.map(|a| a.estimate),
        cases_graded: accuracy.map_or(0, |a| a.cases),
        effective_sample_size: accuracy.map(|a| a.effective_sample_size),
        interval_method: accuracy.map(|_| settings.interval),
        interval_warning: accuracy
            .and_then(|a| stats::few_cases_warning(&a, identity.samples_per_case, settings.interval)),
        design_effect: accuracy.map(|a| a.design_effect),
        invalid_outputs: per_case.iter().map(|c| u64::from(c.invalid)).sum(),
        errors: calls.failed,
        error_rate,
        errors_by_kind: totals.errors_by_kind,
        first_error: totals.first_error,
        calls,
        tokens: totals.tokens,
        cost_usd,
        latency: Latency::of(per_case.iter().flat_map(|c| c.latencies_ms.iter().copied())),
        model_versions: totals.versions.to_counts(),
        flakiness: crate::flakiness::Flakiness::of(per_case.iter().map(|c| (c.correct, c.samples))),
        verdict,
        baseline: None,
        drift: None,
        robustness: None,
        sequential: None,
        filtered: None,
        per_case,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grader::Grade;
    use crate::provider::{ProviderError, Response, Usage};
    use crate::run_record::Tokens;
    use crate::tally::{Answer, CaseTally, Purpose, SharedTexts};

    fn identity() -> Identity {
        Identity {
            suite: "triage".into(),
            model: "small".into(),
            model_id: "gemma".into(),
            provider: "local".into(),
            prompt: "default".into(),
            prompt_sha256: "ab".repeat(32),
            samples_per_case: 5,
        }
    }

    const SETTINGS: Settings = Settings {
        confidence_level: 0.95,
        interval: IntervalMethod::WilsonModeratedT,
        max_error_rate: 0.1,
    };

    /// The texts of every miss of [`case`], in the places it gives them.
    fn texts() -> SharedTexts {
        let mut texts = SharedTexts::default();
        for text in ["expected notify", "suppress"] {
            texts.share(text);
        }
        texts
    }

    /// A case with `correct` of `samples` right, every answer cached with the given latency,
    /// and what its calls added up to.
    fn case(id: &str, correct: u32, samples: u32, latency_ms: u64) -> (String, CaseTally, Totals) {
        let mut tally = CaseTally::new();
        let mut totals = Totals::default();
        for sample in 0..samples {
            let response = Response {
                usage: Some(Usage {
                    input_tokens: 100,
                    output_tokens: 3,
                }),
                latency_ms: latency_ms + u64::from(sample),
                // Two backends, as a load-balanced provider has: the merge test sums their counts.
                version: crate::model_version::ModelVersion::new("m-2025", Some(["fp_a", "fp_b"][sample as usize % 2])),
                ..Response::from_text(if sample < correct { "notify" } else { "suppress" })
            };
            let answer = tally
                .call(sample, Purpose::Sample, Answer::Cached(response), &mut totals)
                .unwrap();
            let grade = if sample < correct {
                Grade::correct("notify")
            } else {
                Grade::wrong("expected notify")
            };
            tally.grade(sample, grade, &answer, &mut texts());
        }
        (id.into(), tally, totals)
    }

    /// The example of `reference/statistics.md` §a: per-case means 1, 0.8, 0.6, 0.4, 1 at k = 5.
    fn cases() -> Vec<(String, CaseTally, Totals)> {
        [5, 4, 3, 2, 5]
            .iter()
            .enumerate()
            .map(|(i, &correct)| case(&format!("c{i}"), correct, 5, 100 * (i as u64 + 1)))
            .collect()
    }

    /// The result of `cases`, their totals added up as a run adds them.
    fn of(cases: &[(String, CaseTally, Totals)], prices: Option<Prices>, settings: &Settings) -> SuiteResult {
        let mut totals = Totals::default();
        for (_, _, case_totals) in cases {
            totals.add(case_totals);
        }
        let texts = texts();
        let results = cases.iter().map(|(id, tally, _)| tally.clone().into_parts(id, &texts));
        aggregate(identity(), results, totals, prices, settings)
    }

    #[test]
    fn a_result_from_plain_tallies() {
        let prices = Prices {
            input_per_million: 0.15,
            output_per_million: 0.6,
        };
        let result = of(&cases(), Some(prices), &SETTINGS);
        let accuracy = result.accuracy.unwrap();
        // p̂ = mean(1, .8, .6, .4, 1) = 0.76; SE = sd/√5 with sd = 0.26077 (n − 1):
        // Python: statistics.stdev([1, .8, .6, .4, 1]) / math.sqrt(5) = 0.11661903789690599.
        assert!((accuracy.point - 0.76).abs() < 1e-12);
        assert!((accuracy.standard_error - 0.116_619_037_896_905_99).abs() < 1e-12);
        assert_eq!((result.cases, result.cases_graded), (5, 5));
        assert_eq!(result.calls.cached, 25);
        let versions: Vec<(Option<String>, u64)> = result
            .model_versions
            .iter()
            .map(|c| (c.fingerprint.clone(), c.samples))
            .collect();
        assert_eq!(versions, [(Some("fp_a".into()), 15), (Some("fp_b".into()), 10)]);
        assert_eq!(
            result.tokens,
            Tokens {
                input: 2500,
                output: 75
            }
        );
        // 2500 × 0.15 / 1e6 + 75 × 0.6 / 1e6.
        assert!((result.cost_usd.unwrap() - 0.000_42).abs() < 1e-15);
        // 25 latencies: 100–104, 200–204, …, 500–504; nearest rank 13 and 24.
        let latency = result.latency.unwrap();
        assert_eq!((latency.p50_ms, latency.p95_ms), (302, 503));
        assert_eq!(result.per_case[3].misses.len(), 3);
        assert_eq!(result.verdict, Verdict::Pass);
    }

    #[test]
    fn failures_and_offline_misses_make_a_result_inconclusive() {
        let mut cases = cases();
        let failed = Answer::Failed {
            error: ProviderError::new(FailureKind::Server, "502"),
            attempts: 3,
        };
        let (_, tally, totals) = &mut cases[0];
        assert!(tally.call(5, Purpose::Sample, failed, totals).is_none());
        // 1 failure in 26 calls: under the 10% allowed.
        let result = of(&cases, None, &SETTINGS);
        assert_eq!(
            result.first_error.as_deref(),
            Some("case `c0` sample 5: server error: 502")
        );
        assert_eq!((result.errors, result.verdict), (1, Verdict::Pass));
        assert!((result.error_rate - 1.0 / 26.0).abs() < 1e-15);
        let strict = Settings {
            max_error_rate: 0.01,
            ..SETTINGS
        };
        assert_eq!(of(&cases, None, &strict).verdict, Verdict::Inconclusive);
        let miss = Answer::Failed {
            error: ProviderError::new(FailureKind::OfflineMiss, "not cached"),
            attempts: 0,
        };
        let (_, tally, totals) = &mut cases[1];
        let _ = tally.call(5, Purpose::Sample, miss, totals);
        assert_eq!(of(&cases, None, &SETTINGS).verdict, Verdict::Inconclusive);
        // No valid sample at all: nothing to judge.
        let (mut empty, mut totals) = (CaseTally::new(), Totals::default());
        let failed = Answer::Failed {
            error: ProviderError::new(FailureKind::Connection, "refused"),
            attempts: 1,
        };
        assert!(empty.call(0, Purpose::Sample, failed, &mut totals).is_none());
        let result = of(&[("c0".into(), empty, totals)], None, &SETTINGS);
        assert_eq!((result.accuracy, result.verdict), (None, Verdict::Inconclusive));
    }

    #[test]
    fn merging_the_results_of_disjoint_cases_gives_the_whole_result() {
        let prices = Some(Prices {
            input_per_million: 3.0,
            output_per_million: 15.0,
        });
        let mut all = cases();
        let failed = Answer::Failed {
            error: ProviderError::new(FailureKind::Timeout, "slow"),
            attempts: 2,
        };
        let (_, tally, totals) = &mut all[3];
        let _ = tally.call(5, Purpose::Sample, failed, totals);
        for settings in [
            SETTINGS,
            Settings {
                interval: IntervalMethod::WilsonCasesZ,
                confidence_level: 0.9,
                ..SETTINGS
            },
        ] {
            let whole = of(&all, prices, &settings);
            for split in 1..all.len() {
                let (a, b) = all.split_at(split);
                let parts = vec![of(a, prices, &settings), of(b, prices, &settings)];
                let mut merged = merge(parts, None, &settings).unwrap();
                // Equal up to rounding, the one figure that is not exact.
                let (cost, whole_cost) = (merged.cost_usd.take().unwrap(), whole.cost_usd.unwrap());
                assert!((cost - whole_cost).abs() < 1e-12 * whole_cost, "{cost} vs {whole_cost}");
                assert_eq!(
                    SuiteResult {
                        cost_usd: whole.cost_usd,
                        ..merged
                    },
                    whole,
                    "split at {split}"
                );
            }
        }
    }

    #[test]
    fn only_disjoint_parts_of_one_result_merge() {
        let a = of(&cases()[..2], None, &SETTINGS);
        let err = merge(vec![a.clone(), a.clone()], None, &SETTINGS).unwrap_err();
        assert!(err.to_string().contains("case `c0` is in more than one part"), "{err}");
        let other = SuiteResult {
            model: "large".into(),
            ..of(&cases()[2..], None, &SETTINGS)
        };
        let err = merge(vec![a, other], None, &SETTINGS).unwrap_err();
        assert!(err.to_string().contains("cannot merge `triage` on `small`"), "{err}");
        assert!(merge(Vec::new(), None, &SETTINGS).is_err());
    }
}
