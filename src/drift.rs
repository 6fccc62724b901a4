//! The drift canary: has the model moved under an unchanged prompt?
//!
//! `promptgate drift` samples the baselined prompts again, live, in a sampling *epoch* (see
//! [`default_epoch`]): the epoch is part of every cache key, so the canary never replays the
//! answers that made the baseline, and those answers stay in the cache for every other command.
//! A second canary in the same epoch is served from the cache (a killed canary resumes). Each
//! suite × model is then compared with its baseline by the same paired test as the gate, but
//! two-sided (a model can get better or worse), with Holm across the pairs:
//! `Drifted` when the adjusted p-value is at most α, `NoSignificantChange` otherwise,
//! `Inconclusive` when calls failed or fewer than two cases could be paired.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::baseline::Baseline;
use crate::model_version::{describe, VersionCount};
use crate::paired::{self, Differences};
use crate::run_record::{RunRecord, SuiteResult, Verdict};
use crate::stats::Estimate;

/// How to run the canary.
#[derive(Debug, Clone, PartialEq)]
pub struct DriftOptions {
    pub baseline_dir: std::path::PathBuf,
    /// Two-sided level, family-wise across the pairs.
    pub alpha: f64,
    pub epoch: String,
}

/// The canary's verdict on one suite × model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DriftVerdict {
    Drifted,
    NoSignificantChange,
    Inconclusive,
}

/// One suite × model against its baseline (the `drift` block of a result).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DriftComparison {
    /// The sampling epoch the answers were cached under.
    pub epoch: String,
    pub verdict: DriftVerdict,
    /// The baseline's own accuracy.
    pub baseline_accuracy: Option<Estimate>,
    /// Now − baseline over the paired cases, with its two-sided interval.
    pub delta: Estimate,
    /// Two-sided p-value of H0: no change.
    pub p_value: f64,
    /// Holm-adjusted across the pairs of the canary.
    pub adjusted_p_value: f64,
    pub alpha: f64,
    pub cases_compared: usize,
    /// The prompt is not the one the baseline was made with: the canary would compare two
    /// prompts, not one model at two times, so it judges nothing.
    #[serde(default)]
    pub prompt_changed: bool,
    /// The smallest change, either way, this comparison detects with 80% power.
    pub minimum_detectable_difference: Option<f64>,
    /// The versions the provider named, then and now.
    pub baseline_versions: Vec<VersionCount>,
    pub versions: Vec<VersionCount>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl DriftComparison {
    /// One line for every format.
    pub fn summary(&self) -> String {
        let baseline = self
            .baseline_accuracy
            .map_or_else(|| "n/a".to_string(), |a| format!("{:.1}%", a.point * 100.0));
        let detects = self
            .minimum_detectable_difference
            .map(|d| format!("; detects changes of {:.1} points or more (80% power)", d * 100.0))
            .unwrap_or_default();
        format!(
            "{:?} — Δ {:+.1} pts [{:+.1}, {:+.1}] vs baseline {baseline}, two-sided p = {:.4} (Holm {:.4}, α = {}), {} cases paired, epoch `{}`; versions then: {}; now: {}{detects}",
            self.verdict,
            self.delta.point * 100.0,
            self.delta.lower * 100.0,
            self.delta.upper * 100.0,
            self.p_value,
            self.adjusted_p_value,
            self.alpha,
            self.cases_compared,
            self.epoch,
            describe(&self.baseline_versions),
            describe(&self.versions),
        )
    }
}

/// The epoch of a canary run today: one epoch per UTC day, so a daily schedule samples afresh
/// each day and a re-run on the same day costs nothing.
pub fn default_epoch(today: jiff::civil::Date) -> String {
    format!("drift-{today}")
}

/// The longest epoch name: it is part of every key and printed in every report.
pub const MAX_EPOCH_CHARS: usize = 64;

/// Whether `epoch` can name an epoch: 1 to 64 letters, digits, `-`, `_`, `.` or `:`.
pub fn valid_epoch(epoch: &str) -> bool {
    (1..=MAX_EPOCH_CHARS).contains(&epoch.len())
        && epoch.chars().all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c))
}

/// Compare each result with its baseline (`baselines[i]` is the baseline of
/// `record.results[i]`), adjust across the pairs (Holm), and set the verdicts.
pub fn judge(mut record: RunRecord, baselines: &[Baseline], epoch: &str, alpha: f64) -> RunRecord {
    let mut comparisons: Vec<DriftComparison> = record
        .results
        .iter()
        .zip(baselines)
        .map(|(result, baseline)| compare(result, baseline, epoch, alpha))
        .collect();
    let p_values: Vec<f64> = comparisons.iter().map(|c| c.p_value).collect();
    let tested: Vec<bool> = comparisons.iter().map(|c| c.cases_compared >= 2).collect();
    for (comparison, p) in comparisons.iter_mut().zip(paired::holm_among(&p_values, &tested)) {
        comparison.adjusted_p_value = p;
    }
    for (result, mut comparison) in record.results.iter_mut().zip(comparisons) {
        comparison.verdict =
            if result.verdict == Verdict::Inconclusive || comparison.cases_compared < 2 || comparison.prompt_changed {
                DriftVerdict::Inconclusive
            } else if comparison.adjusted_p_value <= alpha {
                DriftVerdict::Drifted
            } else {
                DriftVerdict::NoSignificantChange
            };
        result.verdict = match comparison.verdict {
            DriftVerdict::Drifted => Verdict::Drifted,
            DriftVerdict::Inconclusive => Verdict::Inconclusive,
            DriftVerdict::NoSignificantChange => Verdict::Pass,
        };
        result.drift = Some(comparison);
    }
    record.command = "drift".into();
    record.verdict = Verdict::overall(&record.results);
    record
}

fn compare(result: &SuiteResult, baseline: &Baseline, epoch: &str, alpha: f64) -> DriftComparison {
    let base: HashMap<&str, _> = baseline.cases.iter().map(|c| (c.id.as_str(), c)).collect();
    let mut differences = Differences::default();
    for case in &result.per_case {
        if let Some(b) = base.get(&*case.id) {
            differences.pair((case.correct, case.samples), (b.correct, b.samples));
        }
    }
    let confidence_level = result.accuracy.map_or(0.95, |a| a.confidence_level);
    // The interval of the gate's paired test; the p-value is two-sided here.
    let test = paired::compare(
        &differences.values,
        differences.scale,
        0.0,
        alpha,
        confidence_level,
        false,
    );
    let p_value = paired::two_sided_p_value(&differences.values, differences.scale);
    // Two-sided: a change either way at level α is a one-sided test at α/2.
    let minimum_detectable_difference =
        crate::gate::detectable_drop(baseline, result.samples_per_case, test.cases, alpha / 2.0, 0.0);
    let prompt_changed = baseline.prompt_sha256 != result.prompt_sha256;
    let note = if prompt_changed {
        Some(
            "the prompt is not the baseline's: update the baseline (or run `gate`) before the canary can tell a model change"
                .to_string(),
        )
    } else {
        (test.cases < 2).then(|| format!("only {} paired case(s): no test is possible", test.cases))
    };
    DriftComparison {
        epoch: epoch.to_string(),
        verdict: DriftVerdict::Inconclusive,
        baseline_accuracy: baseline.accuracy,
        delta: test.delta,
        p_value,
        adjusted_p_value: p_value,
        alpha,
        cases_compared: test.cases,
        prompt_changed,
        minimum_detectable_difference,
        baseline_versions: baseline.model_versions.clone(),
        versions: result.model_versions.clone(),
        note,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{record, result};

    #[test]
    fn a_move_either_way_drifts_and_no_move_does_not() {
        let before = [5; 20];
        let mut worse = [5; 20];
        worse[..6].fill(1);
        let mut better_base = [5; 20];
        better_base[..6].fill(1);
        let baselines = [
            Baseline::from_result(&result("triage", &before), "t"),
            Baseline::from_result(&result("chatops", &better_base), "t"),
            Baseline::from_result(&result("explain", &before), "t"),
        ];
        let judged = judge(
            record(vec![
                result("triage", &worse),
                result("chatops", &before),
                result("explain", &before),
            ]),
            &baselines,
            "drift-2026-12-04",
            0.05,
        );
        let drift = |i: usize| judged.results[i].drift.clone().expect("a drift block");
        // scipy.stats.ttest_1samp([-0.8] * 6 + [0] * 14, 0).pvalue = 0.010162572120690608
        // (two-sided, scipy 1.17.1). Holm over three pairs with two equal smallest p-values:
        // 3p for the first, max(3p, 2p) for the second.
        let (down, up, still) = (drift(0), drift(1), drift(2));
        assert!(
            (down.p_value - 0.010_162_572_120_690_608).abs() < 1e-9,
            "{}",
            down.p_value
        );
        assert!((up.p_value - down.p_value).abs() < 1e-12, "the same move upwards");
        assert!((down.adjusted_p_value - 3.0 * down.p_value).abs() < 1e-12);
        assert!((up.adjusted_p_value - 3.0 * up.p_value).abs() < 1e-12);
        assert_eq!(
            (down.verdict, up.verdict, still.verdict),
            (
                DriftVerdict::Drifted,
                DriftVerdict::Drifted,
                DriftVerdict::NoSignificantChange
            )
        );
        assert!((down.delta.point + 0.24).abs() < 1e-12 && (up.delta.point - 0.24).abs() < 1e-12);
        assert_eq!((judged.command.as_str(), judged.verdict), ("drift", Verdict::Drifted));
        assert_eq!(judged.results[2].verdict, Verdict::Pass);
        assert!(
            down.summary().starts_with("Drifted — Δ -24.0 pts"),
            "{}",
            down.summary()
        );
        assert!(down.summary().contains("epoch `drift-2026-12-04`"));
    }

    #[test]
    fn too_few_pairs_or_failed_calls_are_inconclusive() {
        let baselines = [Baseline::from_result(&result("triage", &[5]), "t")];
        let judged = judge(record(vec![result("triage", &[0])]), &baselines, "e", 0.05);
        let drift = judged.results[0].drift.clone().unwrap();
        assert_eq!(
            (drift.verdict, judged.verdict),
            (DriftVerdict::Inconclusive, Verdict::Inconclusive)
        );
        assert!(drift.note.unwrap().contains("only 1 paired case"));
    }

    #[test]
    fn a_changed_prompt_is_not_a_drift() {
        let baselines = [Baseline::from_result(&result("triage", &[5; 20]), "t")];
        let mut now = result("triage", &[1; 20]);
        now.prompt_sha256 = "1".repeat(64);
        let judged = judge(record(vec![now]), &baselines, "e", 0.05);
        let drift = judged.results[0].drift.clone().unwrap();
        assert!(drift.prompt_changed && drift.p_value < 0.05);
        assert_eq!(
            (drift.verdict, judged.verdict),
            (DriftVerdict::Inconclusive, Verdict::Inconclusive)
        );
        assert!(drift.note.unwrap().contains("the prompt is not the baseline's"));
    }

    #[test]
    fn epochs_are_named_plainly() {
        let today = jiff::civil::date(2026, 12, 4);
        assert_eq!(default_epoch(today), "drift-2026-12-04");
        assert!(valid_epoch(&default_epoch(today)));
        for bad in ["", "a b", "x".repeat(65).as_str(), "drift\n", "é"] {
            assert!(!valid_epoch(bad), "{bad:?}");
        }
    }
}
