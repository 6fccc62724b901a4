//! Exporters: one per output format, behind one trait (hyperfine's `export/` is the model), for
//! run records ([`exporter`]) and comparisons ([`compare_exporter`]). Which format a file gets
//! is decided here too, from its extension.

pub mod compare;
pub mod html;
pub mod json;
pub mod junit;
pub mod markdown;
pub mod page;
pub mod redact;
pub mod terminal;

use crate::compare::CompareRecord;
use crate::error::Error;
use crate::run_record::RunRecord;

/// An output format for a run record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Terminal,
    Json,
    Markdown,
    Junit,
    /// A self-contained page with every case and every answer.
    Html,
}

/// Options that shape human-readable output.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Style {
    /// Use ANSI colours.
    pub color: bool,
    /// List every miss rather than the first few per result.
    pub verbose: bool,
    /// Where the full report of this run can be seen (a CI run's page with its artifacts): the
    /// Markdown comment points there when it leaves cases out.
    pub report_url: Option<String>,
}

/// Turns a record (a run's, or with `R = CompareRecord` a comparison's) into text.
pub trait Exporter<R = RunRecord> {
    fn export(&self, record: &R) -> Result<String, Error>;

    /// Write the report to `out`: the outer error is the report's, the inner one the
    /// writer's. A format whose text grows with the cases (JSON) writes as it goes rather
    /// than making the whole text first.
    fn write(&self, record: &R, out: &mut dyn std::io::Write) -> Result<std::io::Result<()>, Error> {
        let text = self.export(record)?;
        Ok(out.write_all(text.as_bytes()))
    }
}

/// The exporter for a format.
pub fn exporter(format: Format, style: &Style) -> Box<dyn Exporter> {
    match format {
        Format::Terminal => Box::new(terminal::TerminalExporter { style: style.clone() }),
        Format::Json => Box::new(json::JsonExporter),
        Format::Markdown => Box::new(markdown::MarkdownExporter {
            report_url: style.report_url.clone(),
        }),
        Format::Junit => Box::new(junit::JunitExporter),
        Format::Html => Box::new(page::PageExporter),
    }
}

impl Format {
    /// The format a file name asks for: `.json`, `.md`/`.markdown`, `.html`/`.htm`, `.xml`
    /// (JUnit), `.txt`.
    pub fn from_extension(path: &std::path::Path) -> Option<Format> {
        match path.extension()?.to_str()?.to_ascii_lowercase().as_str() {
            "json" => Some(Format::Json),
            "md" | "markdown" => Some(Format::Markdown),
            "html" | "htm" => Some(Format::Html),
            "xml" => Some(Format::Junit),
            "txt" => Some(Format::Terminal),
            _ => None,
        }
    }
}

/// An output format for a comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompareFormat {
    Terminal,
    Json,
    Markdown,
    /// A self-contained page with forest plots.
    Html,
}

impl CompareFormat {
    /// The format a file name asks for: `.json`, `.md`/`.markdown`, `.html`/`.htm`.
    pub fn from_extension(path: &std::path::Path) -> Option<CompareFormat> {
        match path.extension()?.to_str()?.to_ascii_lowercase().as_str() {
            "json" => Some(CompareFormat::Json),
            "md" | "markdown" => Some(CompareFormat::Markdown),
            "html" | "htm" => Some(CompareFormat::Html),
            _ => None,
        }
    }
}

/// One comparison format, as an exporter.
struct CompareExporter(CompareFormat);

impl Exporter<CompareRecord> for CompareExporter {
    fn export(&self, record: &CompareRecord) -> Result<String, Error> {
        Ok(match self.0 {
            CompareFormat::Terminal => compare::terminal(record),
            CompareFormat::Markdown => compare::markdown(record),
            CompareFormat::Html => html::compare_page(record),
            CompareFormat::Json => pretty_json(record, "the comparison")?,
        })
    }
}

/// `value` as indented JSON and a final line break: what a command prints for `--format json`.
pub(crate) fn pretty_json(value: &impl serde::Serialize, what: &str) -> Result<String, Error> {
    serde_json::to_string_pretty(value)
        .map(|text| text + "\n")
        .map_err(|e| Error::internal(format!("failed to write {what} as JSON: {e}")))
}

/// The exporter for a comparison format.
pub fn compare_exporter(format: CompareFormat) -> Box<dyn Exporter<CompareRecord>> {
    Box::new(CompareExporter(format))
}

/// How a sequential gate sampled a pair, in words every format shares: "stopped for futility
/// at look 2 of 4 (2 of 5 samples per case): used 400 of 1000 samples; p adjusted for the looks
/// 0.4123".
pub(crate) fn sequential_summary(summary: &crate::run_record::SequentialSummary) -> String {
    use crate::sequential::Stop;
    let reason = match summary.stop {
        Stop::Efficacy => "stopped for a regression",
        Stop::Futility => "stopped for futility (clearly no regression)",
        Stop::LastLook => "reached the last look",
    };
    let taken = if summary.cases_taken < summary.cases_planned {
        format!(
            "{} of {} cases, {} of {} samples each",
            summary.cases_taken, summary.cases_planned, summary.samples_taken_per_case, summary.samples_per_case_max
        )
    } else {
        format!(
            "{} of {} samples per case",
            summary.samples_taken_per_case, summary.samples_per_case_max
        )
    };
    format!(
        "sequential: {reason} at look {} of {} ({taken}): used {} of {} samples; p adjusted for the looks {:.4}",
        summary.looks.len(),
        summary.looks_planned,
        summary.samples_taken,
        summary.samples_fixed,
        summary.p_value
    )
}

/// Each suite a filter chose the cases of, once (its models, prompt versions and families
/// share the subset), with what chose them: `(suite, summary)` in run order.
pub(crate) fn subsets(record: &crate::run_record::RunRecord) -> Vec<(&str, String)> {
    subsets_of(record.results.iter().map(|r| (r.suite.as_str(), r.filtered.as_ref())))
}

/// [`subsets`] of rows named `suite` or, for a robustness family, `suite~family`.
pub(crate) fn subsets_of<'a>(
    rows: impl IntoIterator<Item = (&'a str, Option<&'a crate::case_filter::Filtered>)>,
) -> Vec<(&'a str, String)> {
    let mut subsets: Vec<(&str, String)> = Vec::new();
    for (name, filtered) in rows {
        let Some(filtered) = filtered else { continue };
        // A family's row is `suite~family`: its subset is its suite's.
        let suite = name.split('~').next().unwrap_or_default();
        if !subsets.iter().any(|(seen, _)| *seen == suite) {
            subsets.push((suite, filtered.summary()));
        }
    }
    subsets
}

/// Escape text for XML and HTML, content and attribute values alike. Control characters other
/// than tab and newlines are dropped: XML 1.0 does not allow them.
pub(crate) fn escape(text: &str) -> String {
    escape_with(text, true)
}

/// Escape text for HTML element content (never an attribute): only `&`, `<` and `>` need it,
/// which keeps a page of JSON answers a third smaller than [`escape`] would.
pub(crate) fn escape_text(text: &str) -> String {
    escape_with(text, false)
}

fn escape_with(text: &str, quotes: bool) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' if quotes => out.push_str("&quot;"),
            '\'' if quotes => out.push_str("&apos;"),
            c if c.is_control() && c != '\t' && c != '\n' && c != '\r' => {}
            c => out.push(c),
        }
    }
    out
}

/// A table as the terminal reports draw one: rules between rows only, never wrapped, and the
/// columns at `right` (numbers) aligned right.
pub(crate) fn terminal_table(header: &[&str], right: impl IntoIterator<Item = usize>) -> comfy_table::Table {
    use comfy_table::{presets, CellAlignment, ContentArrangement, Table};
    let mut table = Table::new();
    table
        .load_preset(presets::UTF8_HORIZONTAL_ONLY)
        .set_content_arrangement(ContentArrangement::Disabled)
        .set_header(header.to_vec());
    for index in right {
        if let Some(column) = table.column_mut(index) {
            column.set_cell_alignment(CellAlignment::Right);
        }
    }
    table
}

/// A Markdown table's header and rule lines, each ending in a newline.
pub(crate) fn markdown_table_header(header: &[&str]) -> String {
    format!("| {} |\n|{}\n", header.join(" | "), "---|".repeat(header.len()))
}

/// Text (a case id, a suite or model name) as inert Markdown: no code span it can close, no
/// HTML it can open, no table cell it can split. GitHub renders the result as the text itself.
pub(crate) fn markdown_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '\\' | '`' | '*' | '_' | '[' | ']' | '(' | ')' | '#' | '|' | '!' | '~' | '{' | '}' => {
                out.push('\\');
                out.push(c);
            }
            '\n' | '\r' => out.push(' '),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// The first ten of `ids`, each as `show` writes it, and how many more: a list read at a
/// glance, where a suite of thousands of cases could otherwise fill a screen or outgrow a pull
/// request comment (the JSON and HTML reports have every id).
pub(crate) fn first_ids(ids: &[String], show: impl Fn(&str) -> String) -> String {
    const SHOWN: usize = 10;
    let mut shown: Vec<String> = ids.iter().take(SHOWN).map(|id| show(id)).collect();
    if ids.len() > SHOWN {
        shown.push(format!("and {} more", ids.len() - SHOWN));
    }
    shown.join(", ")
}

/// A case id in Markdown: in a code span, unless it could break out of one.
pub(crate) fn markdown_id(id: &str) -> String {
    if id.chars().all(|c| c.is_alphanumeric() || "-_.:/@+".contains(c)) {
        format!("`{id}`")
    } else {
        markdown_text(id)
    }
}

#[cfg(test)]
mod tests {
    /// Every format on one gated run (see `testing::gated`). Independent figures (scipy 1.17.1,
    /// differences [-0.8] * 6 + [0] * 14): mean ± t(0.975, 19)·sd/√20 = -24.0 [-41.6, -6.4]
    /// points; ttest_1samp(alternative="less") p = 0.00508, Holm over three pairs 0.01524.
    #[test]
    fn every_format_reports_a_gated_run_with_its_verdicts_and_inert_names() {
        use super::Format;
        let record = crate::testing::gated();
        let export = |format| {
            super::exporter(format, &super::Style::default())
                .export(&record)
                .unwrap()
        };
        let back: crate::run_record::RunRecord = serde_json::from_str(&export(Format::Json)).unwrap();
        assert_eq!(back, record);

        let junit = export(Format::Junit);
        assert!(
            junit.contains(r#"<testsuites name="promptgate gate" tests="3" failures="1" errors="1""#),
            "{junit}"
        );
        assert_eq!(
            (
                junit.matches("<testcase ").count(),
                junit.matches("<failure ").count(),
                junit.matches("<error ").count()
            ),
            (3, 1, 1)
        );
        assert!(junit.contains("delta -24.0 points [-41.6, -6.4], p = 0.0051 (Holm 0.0152), Regressed"));
        assert!(junit.contains(r#"classname="promptgate.&lt;explain&gt;""#), "{junit}");
        // The model change comes first, with both versions, in every format.
        let change = "model changed: the baseline was answered by gpt-4o-mini-2024-07-18 (fp_a) ×100, \
                      this run by gpt-4o-mini-<b>2025 (fp_b) ×100";
        assert!(
            junit.contains(&format!("<system-out>{}", super::escape(change))),
            "{junit}"
        );
        let gated = &back.results[1];
        let found = gated
            .baseline
            .as_ref()
            .and_then(|b| b.model_change.as_ref())
            .expect("a model change");
        assert_eq!(&*found.new[0].model, "gpt-4o-mini-<b>2025");
        assert!(back.results[0]
            .baseline
            .as_ref()
            .is_some_and(|b| b.model_change.is_none()));

        let markdown = export(Format::Markdown);
        assert!(
            markdown.starts_with("## promptgate gate: ❌ significant regression"),
            "{markdown}"
        );
        assert!(
            markdown
                .contains("| ❌ **Regressed** | triage | m | 76.0% [55.4%, 89.0%] | -24.0 pts [-41.6, -6.4] | 0.015 |"),
            "{markdown}"
        );
        assert!(
            markdown.contains("| ⚠️ Inconclusive | &lt;explain&gt; | m |"),
            "{markdown}"
        );
        assert!(
            markdown.contains("**&lt;explain&gt; / m**: no case changed"),
            "{markdown}"
        );

        let table = markdown.find("| verdict |").unwrap_or(0);
        let warning = markdown
            .find("> ⚠️ **chatops / m**: model changed: the baseline was answered by")
            .expect(&markdown);
        assert!(warning < table, "{markdown}");
        assert!(
            markdown.contains("gpt-4o-mini-&lt;b&gt;2025 \\(fp\\_b\\) ×100"),
            "{markdown}"
        );

        // Flakiness: six cases went from 5/5 to 1/5, listed before the cases that went down.
        let moved = "flakiness since the baseline: 0 broke, 0 fixed, 6 became flaky, 0 became stable";
        let flaky = markdown
            .find(&format!("**triage / m**: {moved} — became flaky: c00&lt;b&gt;"))
            .expect(&markdown);
        assert!(
            flaky < markdown.find("6 case(s) went down").expect(&markdown),
            "{markdown}"
        );
        assert!(
            markdown.contains("**triage / m**: 14 stable pass, 6 flaky, 0 stable fail; pass@5 100.0%, pass^5 70.0%")
        );
        assert!(junit.contains(&format!("Regressed; {moved}; went down")), "{junit}");
        assert!(junit.contains("; 14 stable pass, 6 flaky, 0 stable fail; pass@5 100.0%, pass^5 70.0%"));

        let terminal = export(Format::Terminal);
        let flaky = terminal
            .find(&format!("  {moved}\n  became flaky: c00<b>&\""))
            .expect(&terminal);
        assert!(flaky < terminal.find("  went down:").expect(&terminal), "{terminal}");
        assert!(
            terminal.contains("6 of 20 cases not always right (14 stable pass, 6 flaky"),
            "{terminal}"
        );
        let warning = terminal
            .find("model changed chatops/m: the baseline was answered by gpt-4o-mini-2024-07-18")
            .expect(&terminal);
        assert!(warning < terminal.find("gate chatops/m:").unwrap_or(0), "{terminal}");
        assert!(
            terminal.contains(
                "gate triage/m: Regressed — Δ -24.0 pts [-41.6, -6.4] vs baseline 100.0%, p = 0.0051 (Holm 0.0152"
            ),
            "{terminal}"
        );
        assert!(terminal.contains("\nverdict: REGRESSED"), "{terminal}");
        // A case id or suite name never becomes markup in a format that renders it.
        for text in [&junit, &markdown] {
            assert!(!text.contains("<b>") && !text.contains("<explain>"), "{text}");
        }
    }

    #[test]
    fn ids_cannot_inject_markdown_or_html() {
        assert_eq!(super::markdown_id("eks-rule-web-asg"), "`eks-rule-web-asg`");
        let hostile = super::markdown_id("x`<img src=x onerror=alert(1)>`|");
        assert!(!hostile.contains('<') && !hostile.contains("`<"), "{hostile}");
        assert_eq!(hostile, "x\\`&lt;img src=x onerror=alert\\(1\\)&gt;\\`\\|");
    }

    #[test]
    fn escapes_markup_and_control_characters() {
        assert_eq!(super::escape("a<b>&\"'\u{1}c"), "a&lt;b&gt;&amp;&quot;&apos;c");
        assert_eq!(super::escape_text("a<b>&\"'\u{1}c"), "a&lt;b&gt;&amp;\"'c");
    }
}
