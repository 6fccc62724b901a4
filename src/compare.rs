//! `promptgate compare`: several models, or several versions of a prompt, side by side on the
//! same cases. Every row after the first is compared with the first, case by case (two-sided paired test, Holm-adjusted across
//! the rows of the run), beside its invalid-output and error rates, tokens, cost and latency, and
//! the cases where the models disagree.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::paired;
use crate::run_record::{Calls, Latency, RunRecord, SuiteResult, Tokens};
use crate::stats::Estimate;

/// The JSON schema version of [`CompareRecord`].
///
/// Changelog: 1 — first version; 2 — rows are model × prompt version: `name` and `prompt`
/// added, `reference` names a row.
pub const COMPARE_SCHEMA_VERSION: u32 = 2;

/// The result of `promptgate compare`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompareRecord {
    pub schema_version: u32,
    pub promptgate_version: String,
    pub calls: Calls,
    pub suites: Vec<SuiteComparison>,
    pub started_at: String,
    pub duration_ms: u64,
}

/// One suite, one row per model × prompt version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SuiteComparison {
    pub suite: String,
    /// The row every other row is compared with (the first `--model` / `--prompt`).
    pub reference: String,
    pub rows: Vec<Row>,
    /// Case ids whose per-case accuracy differs between any two models.
    pub disagreements: Vec<String>,
    /// Set when `--case` or `--tag` chose the cases compared.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filtered: Option<crate::case_filter::Filtered>,
}

/// One model with one prompt version on one suite.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Row {
    /// What the row is called: the model, the prompt version, or `model@prompt` when both vary.
    pub name: String,
    pub model: String,
    /// The prompt version (`default` is the suite's own prompt).
    pub prompt: String,
    pub model_id: String,
    pub provider: String,
    pub accuracy: Option<Estimate>,
    /// This row minus the reference row, over the cases both answered (none on the first row).
    pub difference: Option<Difference>,
    pub invalid_output_rate: f64,
    pub error_rate: f64,
    pub tokens: Tokens,
    pub cost_usd: Option<f64>,
    pub latency: Option<Latency>,
    /// A robustness family's share of variants that flipped the case's answer (`suite~family`
    /// rows only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flip_rate: Option<Estimate>,
}

/// A paired difference against the reference row.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Difference {
    pub delta: Estimate,
    pub p_value: f64,
    pub adjusted_p_value: f64,
    pub cases_compared: usize,
}

/// Build the comparison from a run over the compared models and prompt versions (suites in run
/// order, rows in `models` order, then `prompts` order).
pub fn compare(record: &RunRecord, models: &[String], prompts: &[String]) -> CompareRecord {
    let mut suites: Vec<SuiteComparison> = Vec::new();
    let mut suite_names: Vec<&str> = Vec::new();
    for result in &record.results {
        if !suite_names.contains(&result.suite.as_str()) {
            suite_names.push(&result.suite);
        }
    }
    for suite in suite_names {
        let mut results: Vec<&SuiteResult> = record.results.iter().filter(|r| r.suite == suite).collect();
        let position = |list: &[String], item: &String| list.iter().position(|x| x == item).unwrap_or(usize::MAX);
        // Stable: models the run chose itself (a suite's own list) keep the run's order.
        results.sort_by_key(|r| (position(models, &r.model), position(prompts, &r.prompt)));
        let many_models = results.iter().any(|r| r.model != results[0].model);
        let many_prompts = results.iter().any(|r| r.prompt != results[0].prompt);
        let name = |r: &SuiteResult| match (many_models, many_prompts) {
            (true, true) => format!("{}@{}", r.model, r.prompt),
            (false, true) => r.prompt.clone(),
            _ => r.model.clone(),
        };
        let reference = results[0];
        let rows = results
            .iter()
            .enumerate()
            .map(|(index, r)| row(name(r), r, (index > 0).then_some(reference)))
            .collect();
        suites.push(SuiteComparison {
            suite: suite.to_string(),
            reference: name(reference),
            rows,
            disagreements: disagreements(&results),
            filtered: reference.filtered.clone(),
        });
    }
    // Holm across every compared row of the run.
    let mut p_values = Vec::new();
    for suite in &suites {
        for row in &suite.rows {
            if let Some(d) = &row.difference {
                p_values.push(d.p_value);
            }
        }
    }
    let mut adjusted = paired::holm(&p_values).into_iter();
    for suite in &mut suites {
        for row in &mut suite.rows {
            if let Some(d) = &mut row.difference {
                d.adjusted_p_value = adjusted.next().unwrap_or(d.p_value);
            }
        }
    }
    CompareRecord {
        schema_version: COMPARE_SCHEMA_VERSION,
        promptgate_version: record.promptgate_version.clone(),
        calls: record.calls,
        suites,
        started_at: record.started_at.clone(),
        duration_ms: record.duration_ms,
    }
}

fn share(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

fn row(name: String, result: &SuiteResult, reference: Option<&SuiteResult>) -> Row {
    let samples = result.calls.made + result.calls.cached + result.calls.failed;
    let answered = samples - result.calls.failed;
    Row {
        name,
        model: result.model.clone(),
        prompt: result.prompt.clone(),
        model_id: result.model_id.clone(),
        provider: result.provider.clone(),
        accuracy: result.accuracy,
        difference: reference.and_then(|reference| difference(result, reference)),
        invalid_output_rate: share(result.invalid_outputs, answered),
        error_rate: result.error_rate,
        tokens: result.tokens,
        cost_usd: result.cost_usd,
        latency: result.latency,
        flip_rate: result.robustness.as_ref().and_then(|r| r.flip_rate),
    }
}

fn difference(result: &SuiteResult, reference: &SuiteResult) -> Option<Difference> {
    let base: HashMap<&str, _> = reference.per_case.iter().map(|c| (&*c.id, c)).collect();
    let mut differences = Vec::new();
    let mut scale = 1u32;
    for case in &result.per_case {
        let Some(b) = base.get(&*case.id) else { continue };
        if case.samples == 0 || b.samples == 0 {
            continue;
        }
        differences
            .push(f64::from(case.correct) / f64::from(case.samples) - f64::from(b.correct) / f64::from(b.samples));
        scale = paired::extend_scale(paired::extend_scale(scale, case.samples), b.samples);
    }
    let n = differences.len();
    if n < 2 {
        return None;
    }
    let confidence_level = result.accuracy.map_or(0.95, |a| a.confidence_level);
    // The interval is the paired test's two-sided one; only the p-value differs (two-sided here).
    let delta = paired::compare(&differences, scale, 0.0, 0.05, confidence_level, false).delta;
    let p_value = paired::two_sided_p_value(&differences, scale);
    Some(Difference {
        delta,
        p_value,
        adjusted_p_value: p_value,
        cases_compared: n,
    })
}

/// Cases whose per-case accuracy is not the same in every row.
fn disagreements(results: &[&SuiteResult]) -> Vec<String> {
    let Some(first) = results.first() else {
        return Vec::new();
    };
    // Each row's graded cases by id, made once: a search of a row for every case took time
    // quadratic in the suite (minutes at 50,000 cases).
    let means: Vec<HashMap<&str, f64>> = results
        .iter()
        .map(|result| {
            result
                .per_case
                .iter()
                .filter(|case| case.samples > 0)
                .map(|case| (&*case.id, f64::from(case.correct) / f64::from(case.samples)))
                .collect()
        })
        .collect();
    first
        .per_case
        .iter()
        .filter(|case| {
            let mut graded = means.iter().filter_map(|row| row.get(&*case.id));
            let Some(reference) = graded.next() else {
                return false;
            };
            graded.any(|mean| (mean - reference).abs() > 1e-12)
        })
        .map(|case| case.id.to_string())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{record, result};

    /// Independent figures, scipy 1.17.1 `ttest_1samp(d, 0)` (two-sided):
    /// d = [-0.8] * 6 + [0] * 14 → p = 0.010162572120690608;
    /// d = [-0.8] * 6 + [0] * 13 + [0.4] → p = 0.02350368749035823; Holm over the two:
    /// 2 × 0.0101626 = 0.0203251 and max(0.0203251, 0.0235037) = 0.0235037.
    #[test]
    fn rows_are_compared_with_the_first_case_by_case_and_holm_adjusted() {
        let mut reference = [5; 20];
        reference[19] = 3;
        let mut worse = reference;
        worse[..6].fill(1);
        let mut mixed = worse;
        mixed[19] = 5;
        let named = |model: &str, correct: &[u32]| SuiteResult {
            model: model.into(),
            ..result("triage", correct)
        };
        // Run order differs from the order asked for: rows follow `models`.
        let run = record(vec![named("m3", &mixed), named("m", &reference), named("m2", &worse)]);
        let models = ["m".to_string(), "m2".into(), "m3".into()];
        let comparison = compare(&run, &models, &[]);
        let suite = &comparison.suites[0];
        let names: Vec<&str> = suite.rows.iter().map(|r| r.name.as_str()).collect();
        assert_eq!((names, suite.reference.as_str()), (vec!["m", "m2", "m3"], "m"));
        assert!(suite.rows[0].difference.is_none());
        let (m2, m3) = (suite.rows[1].difference.unwrap(), suite.rows[2].difference.unwrap());
        assert!((m2.delta.point + 0.24).abs() < 1e-12 && (m3.delta.point + 0.22).abs() < 1e-12);
        assert!((m2.p_value - 0.010_162_572_120_690_608).abs() < 1e-9, "{}", m2.p_value);
        assert!((m3.p_value - 0.023_503_687_490_358_23).abs() < 1e-9, "{}", m3.p_value);
        assert!((m2.adjusted_p_value - 2.0 * m2.p_value).abs() < 1e-12);
        assert!((m3.adjusted_p_value - m3.p_value).abs() < 1e-12);
        assert_eq!(m2.cases_compared, 20);
        assert_eq!(suite.disagreements, ["c00", "c01", "c02", "c03", "c04", "c05", "c19"]);
    }
}
