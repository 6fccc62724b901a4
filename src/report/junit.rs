//! JUnit XML: one testcase per suite × model, a failure on a regression and an error when the
//! run was inconclusive, so CI systems that read JUnit show the gate like any test.

use super::{escape, Exporter};
use crate::error::Error;
use crate::run_record::{RunRecord, SuiteResult, Verdict};

/// JUnit XML in the common (Jenkins / GitHub / GitLab) dialect.
pub struct JunitExporter;

fn summary(result: &SuiteResult) -> String {
    let accuracy = result.accuracy.map_or_else(
        || "accuracy n/a".to_string(),
        |a| {
            format!(
                "accuracy {:.1}% [{:.1}%, {:.1}%]",
                a.point * 100.0,
                a.lower * 100.0,
                a.upper * 100.0
            )
        },
    );
    let mut text = match result.baseline.as_ref().and_then(|b| b.model_change.as_ref()) {
        Some(change) => format!("{}; ", change.summary()),
        None => String::new(),
    };
    text.push_str(&format!(
        "{accuracy}, {} cases x {} samples, {} invalid, {} errors",
        result.cases, result.samples_per_case, result.invalid_outputs, result.errors
    ));
    if let Some(filtered) = &result.filtered {
        text.push_str(&format!("; {}", filtered.summary()));
    }
    if let Some(b) = result.baseline.as_ref().filter(|b| b.cases_compared == 0) {
        text.push_str(&format!(
            "; vs baseline: no case could be paired, nothing was tested, {:?}",
            b.verdict
        ));
    } else if let Some(b) = &result.baseline {
        text.push_str(&format!(
            "; vs baseline: delta {:+.1} points [{:+.1}, {:+.1}], p = {:.4} (Holm {:.4}), {:?}",
            b.delta.point * 100.0,
            b.delta.lower * 100.0,
            b.delta.upper * 100.0,
            b.p_value,
            b.adjusted_p_value,
            b.verdict
        ));
        if !b.transitions.is_empty() {
            text.push_str(&format!("; flakiness since the baseline: {}", b.transitions.counts()));
        }
        if !b.regressed_cases.is_empty() {
            text.push_str(&format!("; went down: {}", b.regressed_cases.join(", ")));
        }
    }
    if let Some(flakiness) = &result.flakiness {
        text.push_str(&format!("; {}", flakiness.summary(result.samples_per_case)));
    }
    if let Some(summary) = &result.sequential {
        text.push_str(&format!("; {}", super::sequential_summary(summary)));
    }
    if let Some(drift) = &result.drift {
        text.push_str(&format!("; drift: {}", drift.summary()));
    }
    text
}

impl Exporter for JunitExporter {
    fn export(&self, record: &RunRecord) -> Result<String, Error> {
        let failures = record
            .results
            .iter()
            .filter(|r| matches!(r.verdict, Verdict::Regressed | Verdict::Drifted))
            .count();
        let errors = record
            .results
            .iter()
            .filter(|r| r.verdict == Verdict::Inconclusive)
            .count();
        let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
        out.push_str(&format!(
            "<testsuites name=\"promptgate {}\" tests=\"{}\" failures=\"{failures}\" errors=\"{errors}\" time=\"{:.3}\">\n",
            escape(&record.command),
            record.results.len(),
            record.duration_ms as f64 / 1000.0
        ));
        out.push_str(&format!(
            "  <testsuite name=\"promptgate\" tests=\"{}\" failures=\"{failures}\" errors=\"{errors}\" timestamp=\"{}\">\n",
            record.results.len(),
            escape(&record.started_at)
        ));
        for result in &record.results {
            let text = escape(&summary(result));
            out.push_str(&format!(
                "    <testcase classname=\"promptgate.{}\" name=\"{}\">\n",
                escape(&result.label()),
                escape(&result.model)
            ));
            match result.verdict {
                Verdict::Regressed => out.push_str(&format!(
                    "      <failure message=\"significant regression against the baseline\" type=\"Regressed\">{text}</failure>\n"
                )),
                Verdict::Drifted => out.push_str(&format!(
                    "      <failure message=\"accuracy moved since the baseline with the prompt unchanged\" type=\"Drifted\">{text}</failure>\n"
                )),
                Verdict::Inconclusive => out.push_str(&format!(
                    "      <error message=\"inconclusive: too many failed calls or cache misses\" type=\"Inconclusive\">{text}</error>\n"
                )),
                Verdict::Pass => {}
            }
            out.push_str(&format!("      <system-out>{text}</system-out>\n    </testcase>\n"));
        }
        out.push_str("  </testsuite>\n</testsuites>\n");
        Ok(out)
    }
}
