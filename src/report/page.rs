//! The report page of `run`, `gate` and `drift` (`--out report.html`): the summary table, then
//! one row per case with its status, what it checks, its prompt, every sample's answer with the
//! grader's reason, and the baseline's answers.
//!
//! Self-contained like the compare page: one file, inline CSS, nothing fetched. It reads
//! without script (every row shown, regressed rows marked); a small inline script adds filters
//! by status and tag, kept in the address (`#status=regressed&tag=2`) so that a filtered view
//! can be linked.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use super::markdown::{summary_cells, verdict_of, SUMMARY_HEADER};
use super::{escape_text as text, Exporter};
use crate::answers::{AnswerGroup, SampleAnswer};
use crate::error::Error;
use crate::excerpt::excerpt;
use crate::grader::Outcome;
use crate::run_record::{CaseResult, RunRecord, SuiteResult, Verdict};

/// The page of a run record.
pub struct PageExporter;

impl Exporter for PageExporter {
    fn export(&self, record: &RunRecord) -> Result<String, Error> {
        Ok(page(record))
    }
}

/// What a case did in this run, most telling first: a case that went down is shown as such
/// even when it is also flaky.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Status {
    Regressed,
    Improved,
    New,
    /// Every call failed: nothing was graded.
    Error,
    Invalid,
    Flaky,
    Failing,
    Passing,
}

impl Status {
    pub const ALL: [Status; 8] = [
        Status::Regressed,
        Status::Improved,
        Status::New,
        Status::Error,
        Status::Invalid,
        Status::Flaky,
        Status::Failing,
        Status::Passing,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Status::Regressed => "regressed",
            Status::Improved => "improved",
            Status::New => "new",
            Status::Error => "error",
            Status::Invalid => "invalid",
            Status::Flaky => "flaky",
            Status::Failing => "failing",
            Status::Passing => "passing",
        }
    }

    /// The status of `case` in `result`.
    pub fn of(result: &SuiteResult, case: &CaseResult) -> Status {
        let listed = |ids: &[String]| ids.iter().any(|id| **id == *case.id);
        if let Some(b) = &result.baseline {
            if listed(&b.regressed_cases) {
                return Status::Regressed;
            }
            if listed(&b.improved_cases) {
                return Status::Improved;
            }
            if listed(&b.new_cases) {
                return Status::New;
            }
        }
        if case.samples == 0 {
            Status::Error
        } else if case.invalid > 0 {
            Status::Invalid
        } else if case.correct == case.samples {
            Status::Passing
        } else if case.correct == 0 {
            Status::Failing
        } else {
            Status::Flaky
        }
    }
}

const STYLE: &str = "\
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:1.5rem auto;max-width:80rem;color:#1b2631;padding:0 1rem}\
h1{font-size:1.4rem}h2{font-size:1.1rem;margin-top:2rem}\
table{border-collapse:collapse;font-size:.85rem;margin:.8rem 0;width:100%}\
th,td{padding:.35rem .5rem;border-bottom:1px solid #d5d8dc;text-align:left;vertical-align:top}\
table.summary td,table.summary th{white-space:nowrap}\
.note{font-size:.85rem;color:#566573}code{font-size:.85rem}\
pre{white-space:pre-wrap;word-break:break-word;background:#f4f6f7;padding:.4rem;margin:.2rem 0;font-size:.8rem;max-height:24rem;overflow:auto}\
details>summary{cursor:pointer}\
.badge{display:inline-block;padding:.1rem .45rem;border-radius:.6rem;font-size:.75rem;font-weight:600;color:#fff;background:#566573}\
tr.regressed{background:#fdedec}tr.regressed td:first-child{border-left:6px solid #c0392b}.regressed .badge{background:#c0392b}\
tr.improved td:first-child{border-left:6px solid #1e8449}.improved .badge{background:#1e8449}\
.new .badge{background:#2e86c1}.error .badge,.invalid .badge{background:#b9770e}\
.flaky .badge{background:#7d3c98}.failing .badge{background:#6e2c00}.passing .badge{background:#7f8c8d}\
.correct{color:#1e8449}.wrong{color:#c0392b}.invalid-answer{color:#b9770e}\
.tag{display:inline-block;background:#eaecee;border-radius:.3rem;padding:0 .3rem;margin:.1rem .2rem 0 0;font-size:.75rem}\
.about{margin:.2rem 0}.verdict-bad{color:#c0392b}.verdict-good{color:#1e8449}.verdict-warn{color:#b9770e}\
form#filters{margin:1rem 0;font-size:.9rem}form#filters select{margin:0 1rem 0 .3rem}";

/// The filters: shown by the script, which hides the rows that do not match and keeps the
/// choice in the address. The page reads the same without it.
const SCRIPT: &str = "\
(function(){\
var form=document.getElementById('filters'),status=document.getElementById('status'),\
tag=document.getElementById('tag'),shown=document.getElementById('shown'),\
rows=document.querySelectorAll('tr.case');\
function apply(){var n=0;rows.forEach(function(row){\
var ok=(!status.value||row.dataset.status===status.value)&&\
(!tag.value||(' '+row.dataset.tags+' ').indexOf(' '+tag.value+' ')>=0);\
row.hidden=!ok;if(ok){n++;}});\
shown.textContent=n+' of '+rows.length+' cases shown';}\
function save(){var p=new URLSearchParams();if(status.value){p.set('status',status.value);}\
if(tag.value){p.set('tag',tag.value);}history.replaceState(null,'','#'+p.toString());apply();}\
var p=new URLSearchParams(location.hash.slice(1));\
status.value=p.get('status')||'';tag.value=p.get('tag')||'';\
if(status.selectedIndex<0){status.value='';}if(tag.selectedIndex<0){tag.value='';}\
status.onchange=save;tag.onchange=save;form.hidden=false;apply();\
})();";

fn page(record: &RunRecord) -> String {
    let mut page = String::with_capacity(64 * 1024);
    let headline = match record.verdict {
        Verdict::Pass => ("verdict-good", "pass"),
        Verdict::Regressed => ("verdict-bad", "significant regression"),
        Verdict::Drifted => ("verdict-warn", "the model drifted"),
        Verdict::Inconclusive => ("verdict-warn", "inconclusive"),
    };
    let _ = write!(
        page,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <title>promptgate {command}</title><style>{STYLE}</style></head><body>\
         <h1>promptgate {command}: <span class=\"{}\">{}</span></h1>\
         <p class=\"note\">promptgate {} · started {} · {} ms · calls: {} made, {} cached, {} failed. \
         Accuracy intervals treat the samples of a case as correlated; Δ is paired by case, \
         one-sided, Holm-adjusted across the pairs of the run.</p>",
        headline.0,
        headline.1,
        text(&record.promptgate_version),
        text(&record.started_at),
        record.duration_ms,
        record.calls.made,
        record.calls.cached,
        record.calls.failed,
        command = text(&record.command),
    );
    summary_table(&mut page, record);
    let tags = tags(record);
    filters(&mut page, record, &tags);
    let tag_numbers: BTreeMap<&str, usize> = tags.iter().enumerate().map(|(index, tag)| (*tag, index)).collect();
    for (index, result) in record.results.iter().enumerate() {
        section(&mut page, index, result, &tag_numbers);
    }
    let _ = writeln!(page, "<script>{SCRIPT}</script></body></html>");
    page
}

fn summary_table(page: &mut String, record: &RunRecord) {
    page.push_str("<table class=\"summary\"><thead><tr>");
    for header in SUMMARY_HEADER {
        let _ = write!(page, "<th>{}</th>", text(header));
    }
    page.push_str("</tr></thead><tbody>");
    for result in &record.results {
        // Words and colour, not emoji: a browser without an emoji font shows a box.
        let (emoji, word, _) = verdict_of(result);
        let class = match emoji {
            "✅" => "verdict-good",
            "❌" => "verdict-bad",
            _ => "verdict-warn",
        };
        let _ = write!(page, "<tr><td class=\"{class}\"><b>{word}</b></td>");
        for cell in summary_cells(result) {
            let _ = write!(page, "<td>{}</td>", text(&cell));
        }
        page.push_str("</tr>");
    }
    page.push_str("</tbody></table>");
    for result in &record.results {
        let name = format!("{} / {}", result.label(), result.model);
        let mut lines: Vec<String> = Vec::new();
        if let Some(b) = &result.baseline {
            if let Some(change) = &b.model_change {
                lines.push(change.summary());
            }
            if !b.transitions.is_empty() {
                lines.push(format!("flakiness since the baseline: {}", b.transitions.counts()));
            }
            if let Some(note) = &b.note {
                lines.push(note.clone());
            }
            if let Some(drop) = b.minimum_detectable_drop {
                lines.push(format!(
                    "detects drops of {:.1} points or more (80% power)",
                    drop * 100.0
                ));
            }
        }
        if let Some(drift) = &result.drift {
            lines.push(drift.summary());
        }
        if let Some(warning) = &result.interval_warning {
            lines.push(format!("warning: {warning}"));
        }
        if let Some(filtered) = &result.filtered {
            lines.push(filtered.summary());
        }
        if let Some(robustness) = &result.robustness {
            lines.push(robustness.summary());
        }
        if let Some(flakiness) = &result.flakiness {
            lines.push(flakiness.summary(result.samples_per_case));
        }
        if let Some(error) = &result.first_error {
            lines.push(format!("first failure: {error}"));
        }
        for line in lines {
            let _ = write!(page, "<p class=\"note\"><b>{}</b>: {}</p>", text(&name), text(&line));
        }
    }
}

/// The filter form: a status list with counts, and the tags of every case. Hidden until the
/// script shows it.
fn filters(page: &mut String, record: &RunRecord, tags: &[&str]) {
    let mut counts: BTreeMap<Status, usize> = BTreeMap::new();
    for result in &record.results {
        for case in &result.per_case {
            *counts.entry(Status::of(result, case)).or_default() += 1;
        }
    }
    page.push_str("<form id=\"filters\" hidden><label>status<select id=\"status\"><option value=\"\">all</option>");
    for status in Status::ALL {
        if let Some(count) = counts.get(&status) {
            let _ = write!(page, "<option value=\"{0}\">{0} ({count})</option>", status.name());
        }
    }
    page.push_str("</select></label><label>tag<select id=\"tag\"><option value=\"\">all</option>");
    for (index, tag) in tags.iter().enumerate() {
        let _ = write!(page, "<option value=\"{index}\">{}</option>", text(tag));
    }
    page.push_str("</select></label><output id=\"shown\"></output></form>");
}

/// Every tag of the record, sorted: a row names its tags by their index here, so that no tag
/// text has to survive an attribute or a selector.
fn tags(record: &RunRecord) -> Vec<&str> {
    let all: BTreeSet<&str> = record
        .results
        .iter()
        .flat_map(|r| r.per_case.iter())
        .filter_map(|c| c.detail.as_ref())
        .flat_map(|d| d.tags.iter().map(String::as_str))
        .collect();
    all.into_iter().collect()
}

fn section(page: &mut String, index: usize, result: &SuiteResult, tag_numbers: &BTreeMap<&str, usize>) {
    let _ = write!(
        page,
        "<section id=\"result-{index}\"><h2>{} / {}</h2>",
        text(&result.label()),
        text(&result.model)
    );
    page.push_str("<table class=\"cases\"><thead><tr><th>status</th><th>case</th><th>this run</th>");
    if result.baseline.is_some() {
        page.push_str("<th>baseline</th>");
    }
    page.push_str("</tr></thead><tbody>");
    for case in &result.per_case {
        row(page, result, case, tag_numbers);
    }
    page.push_str("</tbody></table></section>");
}

/// One case's row.
fn row(page: &mut String, result: &SuiteResult, case: &CaseResult, tag_numbers: &BTreeMap<&str, usize>) {
    let status = Status::of(result, case).name();
    let numbers: Vec<String> = case
        .detail
        .iter()
        .flat_map(|d| d.tags.iter())
        .filter_map(|tag| tag_numbers.get(tag.as_str()))
        .map(ToString::to_string)
        .collect();
    let _ = write!(
        page,
        "<tr class=\"case {status}\" data-status=\"{status}\" data-tags=\"{}\"><td><span class=\"badge\">{status}</span></td><td><code>{}</code>",
        numbers.join(" "),
        text(&case.id)
    );
    if let Some(detail) = &case.detail {
        if !detail.about.is_empty() {
            let _ = write!(page, "<div class=\"about\">{}</div>", text(&detail.about));
        }
        if let Some(notes) = &detail.notes {
            let _ = write!(page, "<div class=\"note\">{}</div>", text(notes));
        }
        let _ = write!(
            page,
            "<div class=\"note\">expected: <code>{}</code></div>",
            text(&detail.expected)
        );
        for tag in &detail.tags {
            let _ = write!(page, "<span class=\"tag\">{}</span>", text(tag));
        }
        let _ = write!(
            page,
            "<details><summary>prompt</summary><pre>{}</pre></details>",
            text(&detail.prompt)
        );
    }
    let _ = write!(page, "</td><td>{}/{} right", case.correct, case.samples);
    if case.errors > 0 {
        let _ = write!(page, ", {} failed call(s)", case.errors);
    }
    match &case.detail {
        Some(detail) => answers(page, &detail.answers),
        None => page.push_str("<div class=\"note\">answers not kept by this run</div>"),
    }
    page.push_str("</td>");
    if result.baseline.is_some() {
        page.push_str("<td>");
        match &case.baseline {
            Some(past) => {
                let _ = write!(page, "{}/{} right", past.correct, past.samples);
                if past.answers.is_empty() {
                    page.push_str("<div class=\"note\">answers not kept by this baseline</div>");
                }
                groups_list(page, &past.answers);
            }
            None => page.push_str("<span class=\"note\">not in the baseline</span>"),
        }
        page.push_str("</td>");
    }
    page.push_str("</tr>");
}

fn outcome_mark(outcome: Outcome) -> (&'static str, &'static str) {
    match outcome {
        Outcome::Correct => ("correct", "✓"),
        Outcome::Wrong => ("wrong", "✗"),
        Outcome::Invalid => ("invalid-answer", "⚠ invalid"),
    }
}

/// Every sample: its grade and reason, its answer collapsed under it. Samples that answered
/// the same and were graded the same share one entry ("#0 #2 #4"): the page of a large suite
/// stays a size a browser opens quickly.
fn answers(page: &mut String, answers: &[SampleAnswer]) {
    let mut shown: Vec<(Vec<u32>, &SampleAnswer)> = Vec::new();
    for answer in answers {
        let same = shown.iter_mut().find(|(_, other)| {
            other.outcome == answer.outcome
                && other.reason == answer.reason
                && other.text == answer.text
                && other.variant == answer.variant
        });
        match same {
            Some((samples, _)) => samples.push(answer.sample),
            None => shown.push((vec![answer.sample], answer)),
        }
    }
    for (samples, answer) in shown {
        let (class, mark) = outcome_mark(answer.outcome);
        let mut numbers: Vec<String> = samples.iter().map(|s| format!("#{s}")).collect();
        if let Some(variant) = &answer.variant {
            numbers.push(format!("[{}]", text(variant)));
        }
        let _ = write!(
            page,
            "<details><summary><span class=\"{class}\">{} {mark}</span> {} — <span class=\"note\">{}</span></summary><pre>{}</pre></details>",
            numbers.join(" "),
            text(&answer.reason),
            text(&excerpt(&answer.text, 80)),
            text(&answer.text)
        );
    }
}

/// A baseline's answers: grouped, with counts.
fn groups_list(page: &mut String, groups: &[AnswerGroup]) {
    for group in groups {
        let (class, mark) = outcome_mark(group.outcome);
        let _ = write!(
            page,
            "<div><span class=\"{class}\">{mark} ×{}</span> {}<pre>{}</pre></div>",
            group.count,
            text(&group.reason),
            text(&group.excerpt)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::answers::{CaseDetail, PastCase};
    use crate::testing::{gated, record, result};

    #[test]
    fn each_case_gets_the_most_telling_status() {
        let gated = gated();
        let triage = &gated.results[0];
        let statuses: Vec<Status> = triage.per_case.iter().map(|c| Status::of(triage, c)).collect();
        // Six went from 5/5 to 1/5: regressed, although they are flaky too.
        assert_eq!(statuses[..6], [Status::Regressed; 6]);
        assert_eq!(statuses[6..], [Status::Passing; 14]);

        let run = result("s", &[5, 0, 3]);
        let mut run = record(vec![run]);
        let cases = &mut run.results[0].per_case;
        cases[2].invalid = 1;
        cases.push(CaseResult {
            id: "no-answer".into(),
            errors: 5,
            ..cases[0].clone()
        });
        cases[3].samples = 0;
        cases[3].correct = 0;
        let result = &run.results[0];
        let statuses: Vec<&str> = result.per_case.iter().map(|c| Status::of(result, c).name()).collect();
        assert_eq!(statuses, ["passing", "failing", "invalid", "error"]);
    }

    #[test]
    fn a_run_page_has_no_baseline_column_and_a_gate_page_shows_the_baselines_answers() {
        let mut run = record(vec![result("s", &[5, 2])]);
        run.results[0].per_case[1].detail = Some(Box::new(CaseDetail {
            about: "rule <i>".into(),
            tags: vec!["b\"tag".into(), "a".into()],
            ..CaseDetail::default()
        }));
        let page = page(&run);
        assert_eq!(page.matches("<tr class=\"case ").count(), 2);
        assert!(!page.contains("<th>baseline</th>"));
        assert!(
            page.contains("<tr class=\"case flaky\" data-status=\"flaky\" data-tags=\"1 0\">"),
            "{page}"
        );
        assert!(page.contains("<option value=\"0\">a</option><option value=\"1\">b\"tag</option>"));
        assert!(page.contains("<div class=\"about\">rule &lt;i&gt;</div>"));
        assert!(page.contains("<option value=\"passing\">passing (1)</option>"));

        let mut gate = gated();
        gate.results[0].per_case[0].baseline = Some(Box::new(PastCase {
            correct: 5,
            samples: 5,
            answers: vec![AnswerGroup {
                count: 5,
                outcome: Outcome::Correct,
                reason: "answered `suppress`".into(),
                excerpt: "{\"decision\":\"suppress\"}".into(),
            }],
        }));
        let page = super::page(&gate);
        assert!(page.contains("<th>baseline</th>"));
        assert!(page.contains("5/5 right<div><span class=\"correct\">✓ ×5</span> answered `suppress`<pre>{\"decision\":\"suppress\"}</pre></div>"), "{page}");
        assert!(page.contains("<option value=\"regressed\">regressed (6)</option>"));
    }
}
