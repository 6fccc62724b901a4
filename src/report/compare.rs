//! Reports of `promptgate compare`: a terminal table and Markdown (JSON is the record itself;
//! the HTML page is `html.rs`).

use comfy_table::{presets, CellAlignment, ContentArrangement, Table};

use crate::compare::{CompareRecord, Row};

fn percent(value: f64) -> String {
    format!("{:.1}%", value * 100.0)
}

/// The cells of one row, shared by both formats.
pub(crate) fn cells(row: &Row) -> Vec<String> {
    let accuracy = row.accuracy.map_or_else(
        || "n/a".to_string(),
        |a| format!("{} [{}, {}]", percent(a.point), percent(a.lower), percent(a.upper)),
    );
    let (delta, p) = match &row.difference {
        Some(d) => (
            format!(
                "{:+.1} [{:+.1}, {:+.1}]",
                d.delta.point * 100.0,
                d.delta.lower * 100.0,
                d.delta.upper * 100.0
            ),
            format!("{:.3}", d.adjusted_p_value),
        ),
        None => ("reference".to_string(), "—".to_string()),
    };
    let latency = row
        .latency
        .map_or_else(|| "—".to_string(), |l| format!("{} / {} ms", l.p50_ms, l.p95_ms));
    let cost = row.cost_usd.map_or_else(|| "—".to_string(), |c| format!("${c:.4}"));
    vec![
        row.name.clone(),
        accuracy,
        delta,
        p,
        percent(row.invalid_output_rate),
        percent(row.error_rate),
        format!("{} / {}", row.tokens.input, row.tokens.output),
        cost,
        latency,
    ]
}

pub(crate) const HEADER: [&str; 9] = [
    "row",
    "accuracy [CI]",
    "Δ pts vs first [CI]",
    "p (Holm)",
    "invalid",
    "errors",
    "tokens in / out",
    "cost",
    "latency p50 / p95",
];

/// The terminal table, one per suite.
pub fn terminal(record: &CompareRecord) -> String {
    let mut out = String::new();
    for suite in &record.suites {
        let mut table = Table::new();
        table
            .load_preset(presets::UTF8_HORIZONTAL_ONLY)
            .set_content_arrangement(ContentArrangement::Disabled)
            .set_header(HEADER.to_vec());
        for row in &suite.rows {
            table.add_row(cells(row));
        }
        for index in [3, 4, 5, 7] {
            if let Some(column) = table.column_mut(index) {
                column.set_cell_alignment(CellAlignment::Right);
            }
        }
        out.push_str(&format!(
            "suite {} (Δ against {})\n{table}\n",
            suite.suite, suite.reference
        ));
        if suite.disagreements.is_empty() {
            out.push_str("the rows agree on every case\n\n");
        } else {
            out.push_str(&format!(
                "the rows disagree on {} case(s): {}\n\n",
                suite.disagreements.len(),
                suite.disagreements.join(", ")
            ));
        }
    }
    out.push_str(&format!(
        "calls: {} made, {} cached, {} failed; p two-sided, Holm-adjusted across rows\n",
        record.calls.made, record.calls.cached, record.calls.failed
    ));
    out
}

/// GitHub-flavoured Markdown.
pub fn markdown(record: &CompareRecord) -> String {
    let mut out = String::from("## promptgate compare\n");
    for suite in &record.suites {
        out.push_str(&format!(
            "\n### {} (Δ against {})\n\n| {} |\n|{}\n",
            super::markdown_text(&suite.suite),
            super::markdown_text(&suite.reference),
            HEADER.join(" | "),
            "---|".repeat(HEADER.len())
        ));
        for row in &suite.rows {
            out.push_str(&format!("| {} |\n", cells(row).join(" | ")));
        }
        if !suite.disagreements.is_empty() {
            let ids: Vec<String> = suite.disagreements.iter().map(|id| super::markdown_id(id)).collect();
            out.push_str(&format!("\nDisagreements ({}): {}\n", ids.len(), ids.join(", ")));
        }
    }
    out
}
