//! The tables of `promptgate compare`, in the terminal and in Markdown, and the cells of a row
//! that the HTML page (`html.rs`) shares. `report::compare_exporter` routes the formats.

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

/// "flip rate: m 50.0% [28.8%, 71.2%], m2 0.0% [0.0%, 16.1%]" for a robustness family's suite.
pub(crate) fn flip_rates(suite: &crate::compare::SuiteComparison) -> Option<String> {
    let rates: Vec<String> = suite
        .rows
        .iter()
        .filter_map(|row| {
            let r = row.flip_rate?;
            Some(format!(
                "{} {} [{}, {}]",
                row.name,
                percent(r.point),
                percent(r.lower),
                percent(r.upper)
            ))
        })
        .collect();
    (!rates.is_empty()).then(|| {
        format!(
            "flip rate (variants that changed the case's answer): {}",
            rates.join(", ")
        )
    })
}

/// The terminal table, one per suite.
pub fn terminal(record: &CompareRecord) -> String {
    let mut out = String::new();
    for suite in &record.suites {
        let mut table = super::terminal_table(&HEADER, [3, 4, 5, 7]);
        for row in &suite.rows {
            table.add_row(cells(row));
        }
        out.push_str(&format!(
            "suite {} (Δ against {})\n{table}\n",
            suite.suite, suite.reference
        ));
        if let Some(filtered) = &suite.filtered {
            out.push_str(&format!("{}\n", crate::excerpt::one_line(&filtered.summary())));
        }
        if let Some(rates) = flip_rates(suite) {
            out.push_str(&format!("{rates}\n"));
        }
        if suite.disagreements.is_empty() {
            out.push_str("the rows agree on every case\n\n");
        } else {
            out.push_str(&format!(
                "the rows disagree on {} case(s): {}\n\n",
                suite.disagreements.len(),
                super::first_ids(&suite.disagreements, |id| crate::excerpt::one_line(id).into_owned())
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
            "\n### {} (Δ against {})\n\n{}",
            super::markdown_text(&suite.suite),
            super::markdown_text(&suite.reference),
            super::markdown_table_header(&HEADER)
        ));
        for row in &suite.rows {
            out.push_str(&format!("| {} |\n", cells(row).join(" | ")));
        }
        if let Some(filtered) = &suite.filtered {
            out.push_str(&format!("\n{}\n", super::markdown_text(&filtered.summary())));
        }
        if let Some(rates) = flip_rates(suite) {
            out.push_str(&format!("\n{}\n", super::markdown_text(&rates)));
        }
        if !suite.disagreements.is_empty() {
            out.push_str(&format!(
                "\nDisagreements ({}): {}\n",
                suite.disagreements.len(),
                super::first_ids(&suite.disagreements, super::markdown_id)
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{compare_exporter as exporter, CompareFormat};
    use crate::testing::{record, result};

    #[test]
    fn every_comparison_format_comes_from_one_exporter_and_files_pick_theirs() {
        let run = record(vec![
            result("triage", &[5, 5, 4]),
            crate::run_record::SuiteResult {
                model: "other".into(),
                ..result("triage", &[5, 1, 4])
            },
        ]);
        let comparison = crate::compare::compare(&run, &["m".into(), "other".into()], &[]);
        let json = exporter(CompareFormat::Json).export(&comparison).unwrap();
        let back: CompareRecord = serde_json::from_str(&json).unwrap();
        assert_eq!(back, comparison);
        assert!(exporter(CompareFormat::Terminal)
            .export(&comparison)
            .unwrap()
            .contains("suite triage (Δ against m)"));
        assert!(exporter(CompareFormat::Markdown)
            .export(&comparison)
            .unwrap()
            .contains("| other |"));
        assert!(exporter(CompareFormat::Html)
            .export(&comparison)
            .unwrap()
            .starts_with("<!DOCTYPE html>"));
        // Past ten disagreements, the terminal and Markdown name the first ten and count the
        // rest; the JSON has every one.
        let many = record(vec![
            result("triage", &[5; 12]),
            crate::run_record::SuiteResult {
                model: "other".into(),
                ..result("triage", &[0; 12])
            },
        ]);
        let comparison = crate::compare::compare(&many, &["m".into(), "other".into()], &[]);
        let terminal = exporter(CompareFormat::Terminal).export(&comparison).unwrap();
        assert!(
            terminal.contains(
                "the rows disagree on 12 case(s): c00, c01, c02, c03, c04, c05, c06, c07, c08, c09, and 2 more\n"
            ),
            "{terminal}"
        );
        let markdown = exporter(CompareFormat::Markdown).export(&comparison).unwrap();
        assert!(
            markdown.contains("Disagreements (12): `c00`, `c01`, `c02`, `c03`, `c04`, `c05`, `c06`, `c07`, `c08`, `c09`, and 2 more\n"),
            "{markdown}"
        );
        assert!(exporter(CompareFormat::Json)
            .export(&comparison)
            .unwrap()
            .contains("\"c11\""));
        for (name, format) in [
            ("c.json", Some(CompareFormat::Json)),
            ("c.MD", Some(CompareFormat::Markdown)),
            ("c.htm", Some(CompareFormat::Html)),
            ("c.xml", None),
            ("c", None),
        ] {
            assert_eq!(
                CompareFormat::from_extension(std::path::Path::new(name)),
                format,
                "{name}"
            );
        }
    }
}
