//! Markdown for `$GITHUB_STEP_SUMMARY` and pull-request comments: one table, verdict first,
//! then the cases that regressed, by id.

use super::Exporter;
use crate::drift::DriftVerdict;
use crate::error::Error;
use crate::run_record::GateVerdict;
use crate::run_record::{RunRecord, SuiteResult, Verdict};

/// GitHub-flavoured Markdown.
pub struct MarkdownExporter;

fn percent(value: f64) -> String {
    format!("{:.1}%", value * 100.0)
}

fn points(value: f64) -> String {
    format!("{:+.1}", value * 100.0)
}

/// "-24.0 pts [-41.6, -6.4]".
fn interval_points(delta: &crate::stats::Estimate) -> String {
    format!(
        "{} pts [{}, {}]",
        points(delta.point),
        points(delta.lower),
        points(delta.upper)
    )
}

fn verdict_of(result: &SuiteResult) -> &'static str {
    if let Some(drift) = &result.drift {
        return match drift.verdict {
            DriftVerdict::Drifted => "⚠️ **Drifted**",
            DriftVerdict::NoSignificantChange => "✅ No significant change",
            DriftVerdict::Inconclusive => "⚠️ Inconclusive",
        };
    }
    match result.baseline.as_ref().map(|b| b.verdict) {
        Some(GateVerdict::Regressed) => "❌ **Regressed**",
        Some(GateVerdict::Improved) => "✅ Improved",
        Some(GateVerdict::NoSignificantChange) => "✅ No significant change",
        Some(GateVerdict::Inconclusive) => "⚠️ Inconclusive",
        None => match result.verdict {
            Verdict::Inconclusive => "⚠️ Inconclusive",
            _ => "✅ Pass",
        },
    }
}

/// The first ten ids, and how many more.
fn id_list(ids: &[String]) -> String {
    const SHOWN: usize = 10;
    let mut shown: Vec<String> = ids.iter().take(SHOWN).map(|id| super::markdown_id(id)).collect();
    if ids.len() > SHOWN {
        shown.push(format!("and {} more", ids.len() - SHOWN));
    }
    shown.join(", ")
}

impl Exporter for MarkdownExporter {
    fn export(&self, record: &RunRecord) -> Result<String, Error> {
        let headline = match record.verdict {
            Verdict::Pass => "✅ pass",
            Verdict::Regressed => "❌ significant regression",
            Verdict::Drifted => "⚠️ the model drifted",
            Verdict::Inconclusive => "⚠️ inconclusive",
        };
        let mut out = format!("## promptgate {}: {headline}\n\n", record.command);
        // Before anything else: a model change explains a verdict that the prompt does not.
        for result in &record.results {
            if let Some(change) = result.baseline.as_ref().and_then(|b| b.model_change.as_ref()) {
                out.push_str(&format!(
                    "> ⚠️ **{} / {}**: {}\n\n",
                    super::markdown_text(&result.label()),
                    super::markdown_text(&result.model),
                    super::markdown_text(&change.summary())
                ));
            }
        }
        out.push_str("| verdict | suite | model | accuracy [CI] | Δ vs baseline [CI] | p (Holm) | cases | k | invalid | errors |\n");
        out.push_str("|---|---|---|---|---|---|---|---|---|---|\n");
        for result in &record.results {
            let accuracy = result.accuracy.map_or_else(
                || "n/a".to_string(),
                |a| format!("{} [{}, {}]", percent(a.point), percent(a.lower), percent(a.upper)),
            );
            let (delta, p) = match &result.baseline {
                Some(b) if b.cases_compared == 0 => ("no paired case".to_string(), "—".to_string()),
                Some(b) => (interval_points(&b.delta), format!("{:.3}", b.adjusted_p_value)),
                None => match &result.drift {
                    Some(d) if d.cases_compared >= 2 => {
                        (interval_points(&d.delta), format!("{:.3}", d.adjusted_p_value))
                    }
                    _ => ("—".to_string(), "—".to_string()),
                },
            };
            out.push_str(&format!(
                "| {} | {} | {} | {accuracy} | {delta} | {p} | {} | {} | {} | {} |\n",
                verdict_of(result),
                super::markdown_text(&result.label()),
                super::markdown_text(&result.model),
                result.cases,
                result.samples_per_case,
                result.invalid_outputs,
                result.errors
            ));
        }
        for result in &record.results {
            let Some(b) = &result.baseline else { continue };
            let name = format!(
                "{} / {}",
                super::markdown_text(&result.label()),
                super::markdown_text(&result.model)
            );
            // Broken cases first: information even when the drop over all cases is not significant.
            if !b.transitions.is_empty() {
                let lists: Vec<String> = b
                    .transitions
                    .named()
                    .into_iter()
                    .map(|(name, ids)| format!("{name}: {}", id_list(ids)))
                    .collect();
                out.push_str(&format!(
                    "\n**{name}**: flakiness since the baseline: {} — {}\n",
                    b.transitions.counts(),
                    lists.join("; ")
                ));
            }
            if b.verdict == GateVerdict::Regressed || !b.regressed_cases.is_empty() {
                let ids: Vec<String> = b.regressed_cases.iter().map(|id| super::markdown_id(id)).collect();
                out.push_str(&format!(
                    "\n**{name}**: {} case(s) went down: {}\n",
                    b.regressed_cases.len(),
                    if ids.is_empty() {
                        "none".to_string()
                    } else {
                        ids.join(", ")
                    }
                ));
            }
            if !b.new_cases.is_empty() {
                let accuracy = b
                    .new_cases_accuracy
                    .map_or_else(|| "n/a".to_string(), |a| percent(a.point));
                // Named, so a case recorded from a production miss shows up in the PR summary.
                out.push_str(&format!(
                    "\n**{name}**: {} new case(s), not gated (accuracy {accuracy}): {}\n",
                    b.new_cases.len(),
                    id_list(&b.new_cases)
                ));
            }
            if !b.missing_cases.is_empty() {
                out.push_str(&format!(
                    "\n**{name}**: {} baseline case(s) no longer present\n",
                    b.missing_cases.len()
                ));
            }
            if let Some(note) = &b.note {
                out.push_str(&format!("\n**{name}**: {note}\n"));
            }
            if let Some(summary) = &result.sequential {
                out.push_str(&format!("\n**{name}**: {}\n", super::sequential_summary(summary)));
            }
            if let Some(mde) = b.minimum_detectable_drop {
                out.push_str(&format!(
                    "\n**{name}**: detects drops of {:.1} points or more (80% power)\n",
                    mde * 100.0
                ));
            }
        }
        for result in &record.results {
            if let Some(drift) = &result.drift {
                out.push_str(&format!(
                    "\n**{} / {}**: {}\n",
                    super::markdown_text(&result.label()),
                    super::markdown_text(&result.model),
                    super::markdown_text(&drift.summary())
                ));
            }
        }
        for result in &record.results {
            if let Some(flakiness) = &result.flakiness {
                out.push_str(&format!(
                    "\n**{} / {}**: {}\n",
                    super::markdown_text(&result.label()),
                    super::markdown_text(&result.model),
                    flakiness.summary(result.samples_per_case)
                ));
            }
        }
        let calls = &record.calls;
        out.push_str(&format!(
            "\n<sub>calls: {} made, {} cached, {} failed · one-sided α per run, Holm-adjusted · promptgate {}</sub>\n",
            calls.made, calls.cached, calls.failed, record.promptgate_version
        ));
        Ok(out)
    }
}
