//! The table a person reads after a run.

use super::{Exporter, Style};
use crate::error::Error;
use crate::excerpt::one_line;
use crate::grader::Outcome;
use crate::provider::FailureKind;
use crate::run_record::GateVerdict;
use crate::run_record::{RunRecord, SuiteResult, Verdict};

/// How many misses to list per suite × model unless verbose.
const MISSES_SHOWN: usize = 10;

/// Plain-text table with optional colour.
pub struct TerminalExporter {
    pub style: Style,
}

fn percent(value: f64) -> String {
    format!("{:.1}%", value * 100.0)
}

impl TerminalExporter {
    fn paint(&self, text: &str, code: &str) -> String {
        if self.style.color {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }

    fn verdict(&self, verdict: Verdict) -> String {
        match verdict {
            Verdict::Pass => self.paint("pass", "32"),
            Verdict::Regressed => self.paint("REGRESSED", "31;1"),
            Verdict::Drifted => self.paint("DRIFTED", "35;1"),
            Verdict::Inconclusive => self.paint("inconclusive", "33;1"),
        }
    }

    /// "drift triage/m": what a line is, painted, and which result it is about.
    fn about(&self, result: &SuiteResult, what: &str, colour: &str) -> String {
        format!("{} {}/{}", self.paint(what, colour), result.label(), result.model)
    }

    fn baseline(&self, result: &SuiteResult, out: &mut String) {
        let Some(b) = &result.baseline else { return };
        let verdict = match b.verdict {
            GateVerdict::Regressed => self.paint("Regressed", "31;1"),
            GateVerdict::Improved => self.paint("Improved", "32;1"),
            GateVerdict::NoSignificantChange => self.paint("NoSignificantChange", "32"),
            GateVerdict::Inconclusive => self.paint("Inconclusive", "33;1"),
        };
        let baseline = b.accuracy.map_or_else(|| "n/a".to_string(), |a| percent(a.point));
        if let Some(change) = &b.model_change {
            out.push_str(&format!(
                "\n{}: {}",
                self.about(result, "model changed", "33;1"),
                change.details()
            ));
        }
        if b.cases_compared == 0 {
            // No Δ, no p: a "+0.0 [+0.0, +0.0], p = 1" line would read like a measured zero.
            out.push_str(&format!(
                "\n{} {}/{}: {verdict} — no case could be paired with the baseline (baseline {baseline}), so nothing was tested{}\n",
                self.paint("gate", "1"),
                result.label(),
                result.model,
                if b.prompt_changed { ", prompt changed" } else { "" },
            ));
        } else {
            out.push_str(&format!(
            "\n{} {}/{}: {verdict} — Δ {:+.1} pts [{:+.1}, {:+.1}] vs baseline {baseline}, p = {:.4} (Holm {:.4}, α = {}, margin {}), {} cases paired, {} changed ({} down, {} up){}\n",
            self.paint("gate", "1"),
            result.label(),
            result.model,
            b.delta.point * 100.0,
            b.delta.lower * 100.0,
            b.delta.upper * 100.0,
            b.p_value,
            b.adjusted_p_value,
            b.alpha,
            b.margin,
            b.cases_compared,
            b.changed_cases,
            b.regressed_cases.len(),
            b.improved_cases.len(),
            if b.prompt_changed { ", prompt changed" } else { "" },
        ));
        }
        // Broken cases first: information even when the drop over all cases is not significant.
        if !b.transitions.is_empty() {
            out.push_str(&format!("  flakiness since the baseline: {}\n", b.transitions.counts()));
            for (name, ids) in b.transitions.named() {
                out.push_str(&format!("  {name}: {}\n", one_line(&ids.join(", "))));
            }
        }
        if !b.regressed_cases.is_empty() && b.verdict == GateVerdict::Regressed {
            out.push_str(&format!("  went down: {}\n", one_line(&b.regressed_cases.join(", "))));
        }
        if !b.new_cases.is_empty() {
            out.push_str(&format!(
                "  new cases (not gated): {}\n",
                one_line(&b.new_cases.join(", "))
            ));
        }
        if !b.missing_cases.is_empty() {
            out.push_str(&format!(
                "  no longer present: {}\n",
                one_line(&b.missing_cases.join(", "))
            ));
        }
        if let Some(summary) = &result.sequential {
            out.push_str(&format!("  {}\n", super::sequential_summary(summary)));
        }
        if let Some(mde) = b.minimum_detectable_drop {
            out.push_str(&format!(
                "  this comparison detects drops of {:.1} points or more (80% power)\n",
                mde * 100.0
            ));
        }
        if let Some(note) = &b.note {
            out.push_str(&format!("  note: {note}\n"));
        }
    }

    fn misses(&self, result: &SuiteResult, out: &mut String) {
        let missed: Vec<_> = result.per_case.iter().filter(|c| !c.misses.is_empty()).collect();
        if missed.is_empty() {
            return;
        }
        out.push_str(&format!(
            "\n{} {}/{}: {} of {} cases not always right{}\n",
            self.paint("misses", "1"),
            result.label(),
            result.model,
            missed.len(),
            result.cases,
            result
                .flakiness
                .map(|f| format!(" ({})", f.summary(result.samples_per_case)))
                .unwrap_or_default()
        ));
        let shown = if self.style.verbose {
            missed.len()
        } else {
            MISSES_SHOWN.min(missed.len())
        };
        for case in &missed[..shown] {
            let invalid = case.misses.iter().filter(|m| m.outcome == Outcome::Invalid).count();
            let first = &case.misses[0];
            let invalid_note = if invalid > 0 {
                format!(", {invalid} invalid")
            } else {
                String::new()
            };
            // A record read back (a shard's, for `merge`) is input: shown, never acted on.
            out.push_str(&format!(
                "  {:<28} {}/{} right{invalid_note}: {}\n",
                one_line(&case.id),
                case.correct,
                case.samples,
                one_line(&first.reason)
            ));
        }
        if shown < missed.len() {
            out.push_str(&format!(
                "  … and {} more (-v lists all; --format json has every sample)\n",
                missed.len() - shown
            ));
        }
    }
}

impl Exporter for TerminalExporter {
    fn export(&self, record: &RunRecord) -> Result<String, Error> {
        let header = [
            "suite", "model", "accuracy", "CI", "cases", "k", "invalid", "errors", "made", "cached", "failed",
            "verdict",
        ];
        let mut table = super::terminal_table(&header, [2, 4, 5, 6, 7, 8, 9, 10]);
        for result in &record.results {
            let (accuracy, interval) = match &result.accuracy {
                Some(e) => (
                    percent(e.point),
                    format!(
                        "[{}, {}] {:.0}%",
                        percent(e.lower),
                        percent(e.upper),
                        e.confidence_level * 100.0
                    ),
                ),
                None => ("n/a".to_string(), "no valid sample".to_string()),
            };
            table.add_row(vec![
                result.label(),
                result.model.clone(),
                accuracy,
                interval,
                result.cases.to_string(),
                result.samples_per_case.to_string(),
                result.invalid_outputs.to_string(),
                result.errors.to_string(),
                result.calls.made.to_string(),
                result.calls.cached.to_string(),
                result.calls.failed.to_string(),
                self.verdict(result.verdict),
            ]);
        }
        let mut out = table.to_string();
        out.push('\n');
        for (suite, summary) in super::subsets(record) {
            out.push_str(&format!(
                "\n{} {}: {}\n",
                self.paint("subset", "33"),
                one_line(suite),
                one_line(&summary)
            ));
        }
        for result in &record.results {
            if let Some(drift) = &result.drift {
                out.push_str(&format!(
                    "\n{}: {}\n",
                    self.about(result, "drift", "1"),
                    drift.summary()
                ));
                if let Some(note) = &drift.note {
                    out.push_str(&format!("  note: {note}\n"));
                }
            }
            if let Some(warning) = &result.interval_warning {
                out.push_str(&format!("\n{}: {warning}\n", self.about(result, "warning", "33;1")));
            }
            if let Some(robustness) = &result.robustness {
                out.push_str(&format!(
                    "\n{}: {}\n",
                    self.about(result, "robustness", "1"),
                    robustness.summary()
                ));
            }
            self.baseline(result, &mut out);
            self.misses(result, &mut out);
            if let Some(error) = &result.first_error {
                let kinds: Vec<String> = result
                    .errors_by_kind
                    .iter()
                    .map(|(k, n)| format!("{n} {}", k.as_str()))
                    .collect();
                out.push_str(&format!(
                    "\n{} {}/{}: {} failed calls ({}, {:.1}% of samples); first: {}\n",
                    self.paint("errors", "31;1"),
                    result.label(),
                    result.model,
                    result.errors,
                    kinds.join(", "),
                    result.error_rate * 100.0,
                    one_line(error)
                ));
            }
        }
        let calls = &record.calls;
        out.push_str(&format!(
            "\nverdict: {} — calls: {} made, {} cached, {} failed ({} HTTP attempts)\n",
            self.verdict(record.verdict),
            calls.made,
            calls.cached,
            calls.failed,
            calls.attempts
        ));
        if record.verdict == Verdict::Inconclusive {
            out.push_str(&inconclusive_hint(record));
        }
        Ok(out)
    }
}

/// What to do about an inconclusive run. When every failure is a request `--offline` found
/// no answer for (a fresh checkout, a changed prompt), the way out is not in the errors above.
fn inconclusive_hint(record: &RunRecord) -> String {
    let misses: u64 = record
        .results
        .iter()
        .filter_map(|result| result.errors_by_kind.get(&FailureKind::OfflineMiss))
        .sum();
    if misses > 0 && misses == record.calls.failed {
        format!(
            "hint: {misses} requests were not in the cache (--offline): `promptgate run --dry-run` counts them; `promptgate cache import FILE` loads answers exported elsewhere; without --offline they are called\n"
        )
    } else {
        "hint: too many failed calls (or cache misses under --offline) to judge; see the errors above\n".into()
    }
}
