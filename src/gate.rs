//! The gate: compare each suite × model of a run with its stored baseline, case by case, and
//! fail only on a statistically significant drop (Holm-adjusted across the pairs of one run).

use std::collections::HashMap;
use std::path::PathBuf;

use crate::baseline::Baseline;
use crate::error::Error;
use crate::flakiness::Transitions;
use crate::paired::{self, PairedTest, TestMethod};
use crate::plan::{self, PlanInputs};
pub use crate::run_record::{BaselineComparison, GateVerdict};
use crate::run_record::{RunRecord, SuiteResult, Verdict};
use crate::shard::{GateSettings, Shard};
use crate::stats::{self, CaseOutcome};

/// How to judge.
#[derive(Debug, Clone, PartialEq)]
pub struct GateOptions {
    pub baseline_dir: PathBuf,
    /// One-sided significance level, family-wise across the pairs of one run.
    pub alpha: f64,
    /// Non-inferiority margin: drops up to this size are tolerated.
    pub margin: f64,
    /// Use the exact sign-flip test instead of the paired t-test.
    pub exact: bool,
    /// How the candidate is sampled: k samples of every case, or looks that stop early.
    pub sampling: Sampling,
    /// A pair in which a case went from stable pass to stable fail regresses, whatever the test
    /// says.
    pub fail_on_broken: bool,
}

/// How `gate` samples the candidate.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Sampling {
    /// k samples of every case, one test.
    #[default]
    Fixed,
    /// Looks after 1, 2, 3, 5, … samples per case that stop when the verdict is clear
    /// (`sequential.rs`).
    Sequential,
}

impl GateOptions {
    /// What the engine needs to sample as this gate asks.
    pub fn sequential(&self) -> Option<crate::run::SequentialOptions> {
        (self.sampling == Sampling::Sequential).then(|| crate::run::SequentialOptions {
            baseline_dir: self.baseline_dir.clone(),
            alpha: self.alpha,
            margin: self.margin,
            exact: self.exact,
        })
    }
}

/// Power at which the minimum detectable drop is stated.
const REPORTED_POWER: f64 = 0.8;

/// Load (and so validate) the baseline of every suite × model pair before a run: a missing or
/// broken baseline is found before any call is paid for.
pub fn check_baselines(pairs: &[(String, String)], options: &GateOptions) -> Result<(), Error> {
    for (suite, model) in pairs {
        Baseline::load(&Baseline::path(&options.baseline_dir, suite, model), suite, model)?;
    }
    Ok(())
}

/// Load the baseline of every result, compare, adjust, and set the verdicts. A missing baseline
/// is an error naming the command that creates it.
pub fn gate(mut record: RunRecord, options: &GateOptions) -> Result<RunRecord, Error> {
    let mut baselines = record
        .results
        .iter()
        .map(|r| {
            Baseline::load(
                &Baseline::path(&options.baseline_dir, &r.suite, &r.model),
                &r.suite,
                &r.model,
            )
        })
        .collect::<Result<Vec<_>, _>>()?;
    if let Some(block) = &mut record.shard {
        // A shard is compared with its own part of each baseline (the rest is not missing, it
        // is another shard's), and says how `merge` judges the whole run.
        let shard = Shard::new(block.index, block.count).map_err(Error::usage)?;
        for baseline in &mut baselines {
            baseline.cases.retain(|c| shard.contains(&c.id));
        }
        block.command = "gate".into();
        block.gate = Some(GateSettings {
            baseline_dir: options.baseline_dir.clone(),
            alpha: options.alpha,
            margin: options.margin,
            exact: options.exact,
            fail_on_broken: options.fail_on_broken,
        });
    }
    Ok(judge(record, &baselines, options))
}

/// Compare each result of `record` with its baseline (`baselines[i]` is the baseline of
/// `record.results[i]`), adjust the p-values across the pairs (Holm), and set the verdicts.
/// Pure: `options.baseline_dir` is not read.
pub fn judge(mut record: RunRecord, baselines: &[Baseline], options: &GateOptions) -> RunRecord {
    let mut comparisons: Vec<BaselineComparison> = record
        .results
        .iter()
        .zip(baselines)
        .map(|(result, baseline)| compare(result, baseline, options))
        .collect();
    // Holm across the pairs that were actually tested.
    let p_values: Vec<f64> = comparisons.iter().map(|c| c.p_value).collect();
    let tested: Vec<bool> = comparisons.iter().map(|c| c.method != TestMethod::None).collect();
    for (comparison, p) in comparisons.iter_mut().zip(paired::holm_among(&p_values, &tested)) {
        comparison.adjusted_p_value = p;
    }
    for ((result, mut comparison), baseline) in record.results.iter_mut().zip(comparisons).zip(baselines) {
        let past: HashMap<&str, &crate::baseline::BaselineCase> =
            baseline.cases.iter().map(|c| (c.id.as_str(), c)).collect();
        for case in &mut result.per_case {
            case.baseline = past.get(&*case.id).map(|c| Box::new(c.past()));
        }
        let broken = options.fail_on_broken && !comparison.transitions.broke.is_empty();
        comparison.verdict = if result.verdict == Verdict::Inconclusive || comparison.method == TestMethod::None {
            GateVerdict::Inconclusive
        } else if comparison.adjusted_p_value <= options.alpha {
            GateVerdict::Regressed
        } else if broken {
            let why = format!(
                "{} case(s) went from always right to always wrong, and --fail-on-broken fails on that alone",
                comparison.transitions.broke.len()
            );
            comparison.note = Some(match comparison.note.take() {
                Some(note) => format!("{note}; {why}"),
                None => why,
            });
            GateVerdict::Regressed
        } else if comparison.delta.lower > 0.0 {
            GateVerdict::Improved
        } else {
            GateVerdict::NoSignificantChange
        };
        result.verdict = match comparison.verdict {
            GateVerdict::Regressed => Verdict::Regressed,
            GateVerdict::Inconclusive => Verdict::Inconclusive,
            GateVerdict::Improved | GateVerdict::NoSignificantChange => Verdict::Pass,
        };
        result.baseline = Some(comparison);
    }
    record.command = "gate".into();
    record.verdict = Verdict::overall(&record.results);
    record
}

/// The smallest drop a comparison of `cases` paired cases detects with 80% power at one-sided
/// level `alpha`: `plan`'s formula with the baseline's accuracy and intra-case correlation,
/// difficulty correlation 0.5. `None` without a baseline accuracy or two cases.
pub(crate) fn detectable_drop(
    baseline: &Baseline,
    samples_candidate: u32,
    cases: usize,
    alpha: f64,
    margin: f64,
) -> Option<f64> {
    baseline.accuracy.filter(|_| cases >= 2).map(|accuracy| {
        let baseline_outcomes: Vec<CaseOutcome> = baseline
            .cases
            .iter()
            .map(|c| CaseOutcome {
                correct: c.correct,
                samples: c.samples,
            })
            .collect();
        let inputs = PlanInputs {
            shape: plan::DropShape::default(),
            baseline_accuracy: accuracy.point,
            // Unknown at k = 1 or at 0% / 100%: assume half the variance lies between cases.
            intra_case_correlation: stats::intra_case_correlation(&baseline_outcomes).unwrap_or(0.5),
            difficulty_correlation: 0.5,
            samples_baseline: baseline.samples_per_case.max(1),
            samples_candidate: samples_candidate.max(1),
            alpha,
            power: REPORTED_POWER,
            margin,
        };
        plan::minimum_detectable_drop(&inputs, cases as u64)
    })
}

fn compare(result: &SuiteResult, baseline: &Baseline, options: &GateOptions) -> BaselineComparison {
    let base: HashMap<&str, _> = baseline.cases.iter().map(|c| (c.id.as_str(), c)).collect();
    let mut differences = paired::Differences::default();
    let (mut regressed_cases, mut improved_cases, mut new_cases) = (Vec::new(), Vec::new(), Vec::new());
    let mut new_outcomes = Vec::new();
    for case in &result.per_case {
        let Some(b) = base.get(&*case.id) else {
            new_cases.push(case.id.to_string());
            new_outcomes.push(CaseOutcome {
                correct: case.correct,
                samples: case.samples,
            });
            continue;
        };
        match differences.pair((case.correct, case.samples), (b.correct, b.samples)) {
            Some(d) if d < -1e-12 => regressed_cases.push(case.id.to_string()),
            Some(d) if d > 1e-12 => improved_cases.push(case.id.to_string()),
            _ => {}
        }
    }
    let present: std::collections::HashSet<&str> = result.per_case.iter().map(|c| &*c.id).collect();
    let missing_cases: Vec<String> = baseline
        .cases
        .iter()
        .filter(|c| !present.contains(c.id.as_str()))
        .map(|c| c.id.clone())
        .collect();
    let confidence_level = result.accuracy.map_or(0.95, |a| a.confidence_level);
    let test: PairedTest = paired::compare(
        &differences.values,
        differences.scale,
        options.margin,
        options.alpha,
        confidence_level,
        options.exact,
    );
    // A sequential gate is judged by its p-value adjusted for the looks it took.
    let p_value = result.sequential.as_ref().map_or(test.p_value, |s| s.p_value);
    let note = if test.method == TestMethod::None {
        Some(format!("only {} paired case(s): no test is possible", test.cases))
    } else if options.exact && paired::smallest_exact_p_value(test.changed_cases) > options.alpha {
        Some(format!(
            "only {} case(s) changed: the exact test cannot reach p ≤ {} with so few, so a drop cannot be detected",
            test.changed_cases, options.alpha
        ))
    } else if test.changed_cases == 0 {
        Some("no case changed".to_string())
    } else {
        None
    };
    let minimum_detectable_drop = detectable_drop(
        baseline,
        result.samples_per_case,
        test.cases,
        options.alpha,
        options.margin,
    );
    BaselineComparison {
        minimum_detectable_drop,
        accuracy: baseline.accuracy,
        prompt_sha256: baseline.prompt_sha256.clone(),
        prompt_changed: baseline.prompt_sha256 != result.prompt_sha256,
        delta: test.delta,
        upper_bound: test.upper_bound,
        p_value,
        adjusted_p_value: p_value,
        alpha: options.alpha,
        margin: options.margin,
        method: test.method,
        verdict: GateVerdict::Inconclusive,
        cases_compared: test.cases,
        changed_cases: test.changed_cases,
        regressed_cases,
        improved_cases,
        new_cases,
        // The run's own interval: under --conservative-ci the new cases get the wider one too.
        new_cases_accuracy: stats::accuracy(
            &new_outcomes,
            confidence_level,
            result.interval_method.unwrap_or_default(),
        )
        .map(|a| a.estimate),
        missing_cases,
        note,
        model_change: crate::model_version::change(&baseline.model_versions, &result.model_versions),
        transitions: Transitions::between(
            result.per_case.iter().map(|c| (&*c.id, c.correct, c.samples)),
            baseline.cases.iter().map(|c| (c.id.as_str(), c.correct, c.samples)),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::IntervalMethod;
    use crate::testing::{record, result};

    fn options() -> GateOptions {
        GateOptions {
            baseline_dir: PathBuf::from("/nonexistent"),
            alpha: 0.05,
            margin: 0.0,
            exact: false,
            sampling: crate::gate::Sampling::Fixed,
            fail_on_broken: false,
        }
    }

    #[test]
    fn a_significant_drop_regresses_and_holm_adjusts_across_the_pairs() {
        let before = [5; 20];
        // Six of twenty cases drop from 5/5 to 1/5 on `triage`; `chatops` does not move.
        let mut after = [5; 20];
        after[..6].fill(1);
        let baselines = [
            Baseline::from_result(&result("triage", &before), "t"),
            Baseline::from_result(&result("chatops", &before), "t"),
        ];
        let gated = judge(
            record(vec![result("triage", &after), result("chatops", &before)]),
            &baselines,
            &options(),
        );
        let triage = gated.results[0].baseline.as_ref().unwrap();
        // scipy.stats.ttest_1samp([-0.8] * 6 + [0] * 14, 0, alternative="less").pvalue
        //   = 0.005081286060345304 (scipy 1.17.1)
        assert_eq!(triage.method, TestMethod::PairedT);
        assert!(
            (triage.p_value - 0.005_081_286_060_345_304).abs() < 1e-9,
            "{}",
            triage.p_value
        );
        assert!((triage.delta.point + 0.24).abs() < 1e-12);
        // Holm over two tested pairs: the smaller p-value doubled.
        assert!((triage.adjusted_p_value - 2.0 * triage.p_value).abs() < 1e-12);
        assert_eq!(triage.verdict, GateVerdict::Regressed);
        assert_eq!(triage.regressed_cases, ["c00", "c01", "c02", "c03", "c04", "c05"]);
        let chatops = gated.results[1].baseline.as_ref().unwrap();
        assert_eq!(chatops.verdict, GateVerdict::NoSignificantChange);
        assert_eq!(chatops.note.as_deref(), Some("no case changed"));
        assert_eq!(
            (gated.command.as_str(), gated.verdict, gated.results[1].verdict),
            ("gate", Verdict::Regressed, Verdict::Pass)
        );
    }

    #[test]
    fn a_broken_case_is_listed_and_fails_the_gate_only_when_asked() {
        // c00 goes from 5/5 to 0/5, c01 from 0/5 to 5/5, c02 from 5/5 to 3/5 and c03 from 2/5
        // to 5/5; the rest stay at 5/5.
        let mut before = [5; 20];
        before[1] = 0;
        before[3] = 2;
        let mut after = [5; 20];
        after[0] = 0;
        after[2] = 3;
        let baselines = [Baseline::from_result(&result("triage", &before), "t")];
        let judged = |fail_on_broken| {
            let options = GateOptions {
                fail_on_broken,
                ..options()
            };
            judge(record(vec![result("triage", &after)]), &baselines, &options)
        };
        let quiet = judged(false);
        let b = quiet.results[0].baseline.as_ref().unwrap();
        assert_eq!(b.transitions.broke, ["c00"]);
        assert_eq!(b.transitions.fixed, ["c01"]);
        assert_eq!(b.transitions.became_flaky, ["c02"]);
        assert_eq!(b.transitions.became_stable, ["c03"]);
        // Differences −1, +1, −0.4, +0.6 and sixteen 0: no significant drop.
        assert_eq!(
            (b.verdict, quiet.verdict),
            (GateVerdict::NoSignificantChange, Verdict::Pass)
        );
        let strict = judged(true);
        let b = strict.results[0].baseline.as_ref().unwrap();
        assert_eq!(
            (b.verdict, strict.verdict),
            (GateVerdict::Regressed, Verdict::Regressed)
        );
        assert!(b
            .note
            .as_deref()
            .unwrap_or_default()
            .contains("1 case(s) went from always right to always wrong"));
        assert!(
            b.adjusted_p_value > 0.05,
            "the test itself found no drop: {}",
            b.adjusted_p_value
        );
    }

    #[test]
    fn one_broken_case_of_twenty_is_not_a_significant_drop() {
        let before = [5; 20];
        let mut after = [5; 20];
        after[0] = 0;
        let baselines = [Baseline::from_result(&result("triage", &before), "t")];
        let gated = judge(record(vec![result("triage", &after)]), &baselines, &options());
        let b = gated.results[0].baseline.as_ref().unwrap();
        // scipy.stats.ttest_1samp([-1.0] + [0.0] * 19, 0, alternative="less").pvalue
        //   = 0.16493840046056246 (scipy 1.17.1)
        assert!((b.p_value - 0.164_938_400_460_562_46).abs() < 1e-9, "{}", b.p_value);
        assert_eq!(b.verdict, GateVerdict::NoSignificantChange);
        assert_eq!(b.transitions.broke, ["c00"]);
    }

    #[test]
    fn new_cases_are_estimated_with_the_runs_own_interval() {
        let baseline = Baseline::from_result(&result("triage", &[5, 5]), "t");
        // c02..c05 are new: 5, 4, 2 and 0 of 5 right, p̂ = 0.55 over 4 cases.
        let mut candidate = result("triage", &[5, 5, 5, 4, 2, 0]);
        candidate.interval_method = Some(IntervalMethod::WilsonCasesZ);
        let gated = judge(record(vec![candidate]), std::slice::from_ref(&baseline), &options());
        let new = gated.results[0].baseline.as_ref().unwrap().new_cases_accuracy.unwrap();
        // statsmodels 0.15.0: proportion_confint(2.2, 4, alpha=0.05, method="wilson")
        //   = (0.1764381801324521, 0.8745727362220881)
        assert!((new.point - 0.55).abs() < 1e-12, "{new:?}");
        assert!((new.lower - 0.176_438_180_132_452_1).abs() < 1e-9, "{new:?}");
        assert!((new.upper - 0.874_572_736_222_088_1).abs() < 1e-9, "{new:?}");
        // Under the default interval (t with 3 degrees of freedom) the same cases get a wider one.
        let gated = judge(
            record(vec![result("triage", &[5, 5, 5, 4, 2, 0])]),
            &[baseline],
            &options(),
        );
        let default = gated.results[0].baseline.as_ref().unwrap().new_cases_accuracy.unwrap();
        assert!(
            default.lower < new.lower && default.upper > new.upper,
            "{default:?} vs {new:?}"
        );
    }

    #[test]
    fn too_few_pairs_or_an_inconclusive_run_are_inconclusive_not_a_pass() {
        // One shared case: nothing to test; new and missing cases are listed, not gated.
        let baseline = Baseline::from_result(&result("triage", &[5, 5]), "t");
        let mut candidate = result("triage", &[0]);
        candidate.per_case[0].id = "c01".into();
        let mut extra = result("triage", &[0, 0, 3]);
        candidate.per_case.push(extra.per_case.remove(2));
        let gated = judge(record(vec![candidate]), std::slice::from_ref(&baseline), &options());
        let comparison = gated.results[0].baseline.as_ref().unwrap();
        assert_eq!(
            (comparison.method, comparison.verdict),
            (TestMethod::None, GateVerdict::Inconclusive)
        );
        assert_eq!(
            (comparison.new_cases.as_slice(), comparison.missing_cases.as_slice()),
            (&["c02".to_string()][..], &["c00".to_string()][..])
        );
        assert_eq!(gated.verdict, Verdict::Inconclusive);
        // A run that was itself inconclusive (too many failed calls) cannot pass the gate.
        let mut failed = result("triage", &[5, 5]);
        failed.verdict = Verdict::Inconclusive;
        let gated = judge(record(vec![failed]), &[baseline], &options());
        assert_eq!(
            gated.results[0].baseline.as_ref().unwrap().verdict,
            GateVerdict::Inconclusive
        );
    }
}
