//! Markdown for `$GITHUB_STEP_SUMMARY` and pull-request comments: one table, verdict first,
//! then the cases that moved by id and, when the run kept answers, one collapsible block per
//! case that went down or up: what it checks, what it expects, what the baseline answered and
//! what this run answered, with the grader's reasons.
//!
//! A comment never exceeds GitHub's limit: blocks that do not fit are left out with a note
//! that points to the HTML report.

use std::collections::HashMap;

use super::Exporter;
use crate::answers::{groups, AnswerGroup};
use crate::drift::DriftVerdict;
use crate::error::Error;
use crate::excerpt::excerpt;
use crate::grader::Outcome;
use crate::run_record::GateVerdict;
use crate::run_record::{CaseResult, RunRecord, SuiteResult, Verdict};

/// GitHub's limit on the body of a pull-request comment, in characters.
pub const COMMENT_LIMIT: usize = 65_536;
/// What the Markdown stays within: the limit, less room for the marker line a workflow adds to
/// find its comment again.
pub const COMMENT_BUDGET: usize = COMMENT_LIMIT - 536;
/// The longest answer, reason or "what it checks" shown in a block.
const BLOCK_TEXT_CHARS: usize = 300;

/// GitHub-flavoured Markdown.
#[derive(Debug, Clone, Default)]
pub struct MarkdownExporter {
    /// Where the full report is (the CI run's page), named when blocks are left out.
    pub report_url: Option<String>,
}

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

/// A result's verdict: its emoji, its word, and whether it calls for attention (bold).
pub(super) fn verdict_of(result: &SuiteResult) -> (&'static str, &'static str, bool) {
    if let Some(drift) = &result.drift {
        return match drift.verdict {
            DriftVerdict::Drifted => ("⚠️", "Drifted", true),
            DriftVerdict::NoSignificantChange => ("✅", "No significant change", false),
            DriftVerdict::Inconclusive => ("⚠️", "Inconclusive", false),
        };
    }
    match result.baseline.as_ref().map(|b| b.verdict) {
        Some(GateVerdict::Regressed) => ("❌", "Regressed", true),
        Some(GateVerdict::Improved) => ("✅", "Improved", false),
        Some(GateVerdict::NoSignificantChange) => ("✅", "No significant change", false),
        Some(GateVerdict::Inconclusive) => ("⚠️", "Inconclusive", false),
        None => match result.verdict {
            Verdict::Inconclusive => ("⚠️", "Inconclusive", false),
            _ => ("✅", "Pass", false),
        },
    }
}

/// The columns of the summary table, after the verdict.
pub(super) const SUMMARY_HEADER: [&str; 10] = [
    "verdict",
    "suite",
    "model",
    "accuracy [CI]",
    "Δ vs baseline [CI]",
    "p (Holm)",
    "cases",
    "k",
    "invalid",
    "errors",
];

/// A result's row of the summary table after the verdict, as plain text.
pub(super) fn summary_cells(result: &SuiteResult) -> [String; 9] {
    let accuracy = result.accuracy.map_or_else(
        || "n/a".to_string(),
        |a| format!("{} [{}, {}]", percent(a.point), percent(a.lower), percent(a.upper)),
    );
    let (delta, p) = match &result.baseline {
        Some(b) if b.cases_compared == 0 => ("no paired case".to_string(), "—".to_string()),
        Some(b) => (interval_points(&b.delta), format!("{:.3}", b.adjusted_p_value)),
        None => match &result.drift {
            Some(d) if d.cases_compared >= 2 => (interval_points(&d.delta), format!("{:.3}", d.adjusted_p_value)),
            _ => ("—".to_string(), "—".to_string()),
        },
    };
    [
        result.label(),
        result.model.clone(),
        accuracy,
        delta,
        p,
        result.cases.to_string(),
        result.samples_per_case.to_string(),
        result.invalid_outputs.to_string(),
        result.errors.to_string(),
    ]
}

impl Exporter for MarkdownExporter {
    fn export(&self, record: &RunRecord) -> Result<String, Error> {
        let calls = &record.calls;
        let footer = format!(
            "\n<sub>calls: {} made, {} cached, {} failed · one-sided α per run, Holm-adjusted · promptgate {}</sub>\n",
            calls.made, calls.cached, calls.failed, record.promptgate_version
        );
        let mut body = Budget::new(COMMENT_BUDGET - footer.chars().count());
        body.push_lines(&summary(record));
        for result in &record.results {
            cases(result, &mut body);
        }
        let mut out = body.finish(self.report_url.as_deref());
        out.push_str(&footer);
        Ok(out)
    }
}

/// Text that stays within a number of characters: once a part does not fit, nothing more is
/// added (what is shown keeps its order: the worst cases first), and [`Budget::finish`] says
/// what was left out.
struct Budget {
    text: String,
    chars: usize,
    limit: usize,
    full: bool,
    lines_left_out: usize,
    cases_left_out: usize,
}

/// Room kept for the note that says what was left out.
const NOTE_CHARS: usize = 600;

impl Budget {
    fn new(limit: usize) -> Budget {
        Budget {
            text: String::new(),
            chars: 0,
            limit: limit.saturating_sub(NOTE_CHARS),
            full: false,
            lines_left_out: 0,
            cases_left_out: 0,
        }
    }

    /// Add `part` whole if it fits and nothing was left out before it.
    fn fits(&mut self, part: &str) -> bool {
        let chars = part.chars().count();
        if self.full || self.chars + chars > self.limit {
            self.full = true;
            return false;
        }
        self.text.push_str(part);
        self.chars += chars;
        true
    }

    /// Add `text` line by line, as far as it fits (a summary of thousands of pairs).
    fn push_lines(&mut self, text: &str) {
        for line in text.split_inclusive('\n') {
            if !self.fits(line) {
                self.lines_left_out += 1;
            }
        }
    }

    /// Add one case's block, or count it as left out.
    fn push_case(&mut self, block: &str) {
        if !self.fits(block) {
            self.cases_left_out += 1;
        }
    }

    fn finish(mut self, report_url: Option<&str>) -> String {
        let mut left_out = Vec::new();
        if self.cases_left_out > 0 {
            left_out.push(format!("{} case(s)", self.cases_left_out));
        }
        if self.lines_left_out > 0 {
            left_out.push(format!("{} line(s) of the summary", self.lines_left_out));
        }
        if !left_out.is_empty() {
            let see = match report_url {
                Some(url) => format!(
                    "the HTML report (`--out report.html`) attached to [this run]({})",
                    url_text(url)
                ),
                None => {
                    "the HTML report (`promptgate gate --out report.html`), kept as an artifact of this run".to_string()
                }
            };
            self.text.push_str(&format!(
                "\n> ✂️ **Truncated** to stay under GitHub's {COMMENT_LIMIT}-character limit for a comment: {} not shown. Every case with every answer is in {see}.\n",
                left_out.join(" and ")
            ));
        }
        self.text
    }
}

/// A URL as a Markdown link target: no space, parenthesis or angle bracket that could end it
/// early, no other scheme than http(s).
fn url_text(url: &str) -> String {
    let safe = url.starts_with("https://") || url.starts_with("http://");
    if !safe {
        return "#".to_string();
    }
    url.chars()
        .filter(|c| !c.is_whitespace() && !c.is_control() && !"()<>\"'`".contains(*c))
        .take(500)
        .collect()
}

/// One block per case that went down (those that broke first, then the largest drops), then
/// per case that went up, under a heading per result.
fn cases(result: &SuiteResult, body: &mut Budget) {
    let Some(b) = &result.baseline else { return };
    let by_id: HashMap<&str, &CaseResult> = result.per_case.iter().map(|c| (&*c.id, c)).collect();
    let name = format!(
        "{} / {}",
        super::markdown_text(&result.label()),
        super::markdown_text(&result.model)
    );
    let rate = |correct: u32, samples: u32| f64::from(correct) / f64::from(samples.max(1));
    let change = |case: &CaseResult| {
        case.baseline.as_ref().map_or(0.0, |past| {
            rate(case.correct, case.samples) - rate(past.correct, past.samples)
        })
    };
    let ordered = |ids: &[String], worst_first: bool| {
        let mut found: Vec<&CaseResult> = ids.iter().filter_map(|id| by_id.get(id.as_str()).copied()).collect();
        let broke = |case: &CaseResult| b.transitions.broke.iter().any(|id| **id == *case.id);
        found.sort_by(|x, y| {
            let key = |case: &CaseResult| if worst_first { change(case) } else { -change(case) };
            broke(y).cmp(&broke(x)).then(key(x).total_cmp(&key(y)))
        });
        found
    };
    for (title, ids, worst_first) in [
        ("went down", &b.regressed_cases, true),
        ("went up", &b.improved_cases, false),
    ] {
        if ids.is_empty() {
            continue;
        }
        if !body.fits(&format!("\n### {name}: {} case(s) {title}\n\n", ids.len())) {
            body.cases_left_out += ids.len();
            continue;
        }
        for case in ordered(ids, worst_first) {
            let broke = b.transitions.broke.iter().any(|id| **id == *case.id);
            body.push_case(&block(case, broke, result.samples_per_case));
        }
    }
}

/// A case's collapsible block: counts in the summary line; inside, what it checks, what it
/// expects, and a table of the baseline's and this run's answers grouped by grade and reason.
fn block(case: &CaseResult, broke: bool, k: u32) -> String {
    let past = case.baseline.as_ref();
    let counts = match past {
        Some(p) => format!("{}/{} → {}/{} right", p.correct, p.samples, case.correct, case.samples),
        None => format!("{}/{} right", case.correct, case.samples),
    };
    let flag = if broke {
        " · **broke**: always right before, always wrong now"
    } else {
        ""
    };
    let mut out = format!(
        "<details><summary><code>{}</code>: {counts}{flag}</summary>\n\n",
        super::escape(&case.id)
    );
    if let Some(detail) = &case.detail {
        if !detail.about.is_empty() {
            out.push_str(&format!("**Checks**: {}  \n", cell(&detail.about)));
        }
        out.push_str(&format!("**Expected**: {}\n\n", cell(&detail.expected)));
    }
    out.push_str("| | samples | grade and reason | answer |\n|---|---|---|---|\n");
    match past {
        Some(p) if !p.answers.is_empty() => rows(&mut out, "baseline", &p.answers),
        Some(_) => out.push_str("| baseline | | (answers not kept: a baseline written before promptgate kept them; refresh it with `promptgate baseline update`) | |\n"),
        None => {}
    }
    match &case.detail {
        Some(detail) => rows(&mut out, "this run", &groups(&detail.answers, BLOCK_TEXT_CHARS)),
        None => out.push_str("| this run | | (answers not kept by this run) | |\n"),
    }
    if case.errors > 0 {
        out.push_str(&format!(
            "| this run | {} of {k} | ⚠️ the call failed | |\n",
            case.errors
        ));
    }
    out.push_str("\n</details>\n\n");
    out
}

fn rows(out: &mut String, side: &str, groups: &[AnswerGroup]) {
    for group in groups {
        let mark = match group.outcome {
            Outcome::Correct => "✅",
            Outcome::Wrong => "❌",
            Outcome::Invalid => "⚠️ invalid:",
        };
        out.push_str(&format!(
            "| {side} | {} | {mark} {} | {} |\n",
            group.count,
            cell(&group.reason),
            cell(&group.excerpt)
        ));
    }
}

/// Text in a table cell: one line, cut, inert.
fn cell(text: &str) -> String {
    super::markdown_text(&excerpt(text, BLOCK_TEXT_CHARS))
}

/// One summary line a result may have.
type Summary = dyn Fn(&SuiteResult) -> Option<String>;

/// The verdict line, the table, and what moved per result, by id.
fn summary(record: &RunRecord) -> String {
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
    out.push_str(&super::markdown_table_header(&SUMMARY_HEADER));
    for result in &record.results {
        let (emoji, word, strong) = verdict_of(result);
        let verdict = if strong {
            format!("{emoji} **{word}**")
        } else {
            format!("{emoji} {word}")
        };
        // Names come from the config; figures are promptgate's own.
        let mut cells = summary_cells(result);
        for name in &mut cells[..2] {
            *name = super::markdown_text(name);
        }
        out.push_str(&format!("| {verdict} | {} |\n", cells.join(" | ")));
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
                .map(|(name, ids)| format!("{name}: {}", super::first_ids(ids, super::markdown_id)))
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
                super::first_ids(&b.new_cases, super::markdown_id)
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
    for (suite, summary) in super::subsets(record) {
        out.push_str(&format!(
            "\n**{}**: {}\n",
            super::markdown_text(suite),
            super::markdown_text(&summary)
        ));
    }
    // One line per result for each summary it has: interval warnings, drifts, robustness,
    // flakiness.
    let summaries: [&Summary; 4] = [
        &|r| {
            r.interval_warning
                .as_ref()
                .map(|w| format!("⚠️ {}", super::markdown_text(w)))
        },
        &|r| r.drift.as_ref().map(|d| super::markdown_text(&d.summary())),
        &|r| r.robustness.as_ref().map(|b| super::markdown_text(&b.summary())),
        &|r| r.flakiness.as_ref().map(|f| f.summary(r.samples_per_case)),
    ];
    for summary in summaries {
        for result in &record.results {
            if let Some(text) = summary(result) {
                out.push_str(&format!(
                    "\n**{} / {}**: {text}\n",
                    super::markdown_text(&result.label()),
                    super::markdown_text(&result.model)
                ));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{gated, record, result};

    #[test]
    fn a_summary_of_thousands_of_pairs_is_cut_at_a_line_with_the_note() {
        let results: Vec<SuiteResult> = (0..3_000)
            .map(|i| result(&format!("suite-with-a-long-name-{i:05}"), &[5, 5, 4]))
            .collect();
        let text = MarkdownExporter {
            report_url: Some("javascript:alert(1)".into()),
        }
        .export(&record(results))
        .unwrap();
        let chars = text.chars().count();
        assert!(
            chars <= COMMENT_BUDGET && chars > COMMENT_BUDGET - 2 * NOTE_CHARS,
            "{chars}"
        );
        // Whole lines only: every table row that is shown ends its line.
        let rows = text.lines().filter(|l| l.starts_with("| ✅ Pass | suite-with")).count();
        assert!(rows > 100 && rows < 3_000, "{rows} rows");
        assert!(text.lines().filter(|l| l.starts_with("| ")).all(|l| l.ends_with(" |")));
        // A link that is not http(s) is not made one.
        assert!(
            text.contains("attached to [this run](#)."),
            "{}",
            &text[text.len() - 700..]
        );
        // The rows left out, and the lines after the table (a flakiness line per pair).
        let note = "**Truncated** to stay under GitHub's 65536-character limit for a comment: ";
        let at = text.find(note).expect("the note") + note.len();
        let (count, rest) = text[at..].split_once(' ').unwrap();
        assert!(count.parse::<usize>().unwrap() >= 3_000 - rows, "{count}");
        assert!(rest.starts_with("line(s) of the summary not shown."), "{rest}");
    }

    #[test]
    fn a_gated_run_without_kept_answers_still_gets_a_block_per_case_with_its_counts() {
        let text = MarkdownExporter::default().export(&gated()).unwrap();
        // Six cases of `triage` went from 5/5 to 1/5; the fixture kept no answers.
        assert_eq!(text.matches("<details>").count(), 6, "{text}");
        assert!(
            text.contains("<summary><code>c00&lt;b&gt;&amp;&quot;</code>: 5/5 → 1/5 right</summary>"),
            "{text}"
        );
        assert!(
            text.contains("| this run | | (answers not kept by this run) | |"),
            "{text}"
        );
        assert!(
            text.contains("(answers not kept: a baseline written before promptgate kept them"),
            "{text}"
        );
        assert!(!text.contains("Truncated"));
    }

    #[test]
    fn links_are_http_only_and_cannot_end_early() {
        assert_eq!(url_text("https://x/runs/1) [a](y"), "https://x/runs/1[a]y");
        assert_eq!(url_text("file:///etc/passwd"), "#");
    }
}
