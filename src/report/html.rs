//! A self-contained HTML page for `promptgate compare`: the table, and per suite two SVG forest
//! plots (accuracy with its interval per row; the paired difference against the first row).
//!
//! Self-contained means one file that renders offline: inline CSS and SVG, the system's own
//! fonts, no script, no image, no link to anything.

use std::fmt::Write as _;

use super::compare::{cells, HEADER};
use super::escape;
use crate::compare::{CompareRecord, SuiteComparison};

/// Rows whose Holm-adjusted p-value is below this are coloured as a real difference.
const SIGNIFICANT: f64 = 0.05;

/// How a row is drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tone {
    Reference,
    Worse,
    Better,
    Neutral,
}

impl Tone {
    fn class(self) -> &'static str {
        match self {
            Tone::Reference => "reference",
            Tone::Worse => "worse",
            Tone::Better => "better",
            Tone::Neutral => "neutral",
        }
    }
}

/// One interval of a forest plot, in the plot's units.
#[derive(Debug, Clone)]
struct Mark {
    label: String,
    point: f64,
    lower: f64,
    upper: f64,
    tone: Tone,
    /// Tooltip text.
    title: String,
}

/// The horizontal axis: a range and the step between labelled ticks.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Axis {
    from: f64,
    to: f64,
    step: f64,
}

impl Axis {
    /// A symmetric axis around zero wide enough for every mark, with 2–4 ticks per side.
    fn symmetric(marks: &[Mark]) -> Axis {
        let widest = marks
            .iter()
            .flat_map(|m| [m.lower.abs(), m.upper.abs(), m.point.abs()])
            .filter(|v| v.is_finite())
            .fold(1.0_f64, f64::max);
        let step = [1.0, 2.0, 5.0, 10.0, 20.0, 25.0, 50.0]
            .into_iter()
            .find(|step| widest / step <= 4.0)
            .unwrap_or(100.0);
        let extent = (widest / step).ceil() * step;
        Axis {
            from: -extent,
            to: extent,
            step,
        }
    }

    fn ticks(self) -> impl Iterator<Item = f64> {
        let count = ((self.to - self.from) / self.step).round() as i64;
        (0..=count).map(move |i| self.from + i as f64 * self.step)
    }
}

const WIDTH: f64 = 720.0;
const LABEL_WIDTH: f64 = 190.0;
const RIGHT_MARGIN: f64 = 24.0;
const ROW_HEIGHT: f64 = 30.0;
const TOP: f64 = 12.0;
const AXIS_HEIGHT: f64 = 40.0;

/// An SVG forest plot: one row per mark, whiskers for the interval, a dashed line at `rule`
/// (a difference plot, whose positive ticks get a `+`).
fn forest_plot(caption: &str, marks: &[Mark], axis: Axis, rule: Option<f64>, unit: &str) -> String {
    let height = TOP + ROW_HEIGHT * marks.len() as f64 + AXIS_HEIGHT;
    let plot_width = WIDTH - LABEL_WIDTH - RIGHT_MARGIN;
    let x = |value: f64| {
        let clamped = value.clamp(axis.from, axis.to);
        LABEL_WIDTH + (clamped - axis.from) / (axis.to - axis.from) * plot_width
    };
    let bottom = TOP + ROW_HEIGHT * marks.len() as f64;
    let mut svg = String::new();
    let _ = write!(
        svg,
        "<svg class=\"forest\" viewBox=\"0 0 {WIDTH} {height}\" width=\"{WIDTH}\" height=\"{height}\" role=\"img\">\
         <title>{}</title>",
        escape(caption)
    );
    for tick in axis.ticks() {
        let at = x(tick);
        let _ = write!(
            svg,
            "<line class=\"grid\" x1=\"{at:.1}\" y1=\"{TOP}\" x2=\"{at:.1}\" y2=\"{bottom:.1}\"/>\
             <text class=\"tick\" x=\"{at:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}{unit}</text>",
            bottom + 18.0,
            format_tick(tick, rule.is_some())
        );
    }
    if let Some(rule) = rule {
        let at = x(rule);
        let _ = write!(
            svg,
            "<line class=\"rule\" x1=\"{at:.1}\" y1=\"{:.1}\" x2=\"{at:.1}\" y2=\"{bottom:.1}\"/>",
            TOP - 6.0
        );
    }
    for (index, mark) in marks.iter().enumerate() {
        let y = TOP + ROW_HEIGHT * (index as f64 + 0.5);
        let (lower, point, upper) = (x(mark.lower), x(mark.point), x(mark.upper));
        let _ = write!(
            svg,
            "<g class=\"row {}\"><title>{}</title>\
             <text class=\"label\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>\
             <line class=\"whisker\" x1=\"{lower:.1}\" y1=\"{y:.1}\" x2=\"{upper:.1}\" y2=\"{y:.1}\"/>\
             <line class=\"cap\" x1=\"{lower:.1}\" y1=\"{:.1}\" x2=\"{lower:.1}\" y2=\"{:.1}\"/>\
             <line class=\"cap\" x1=\"{upper:.1}\" y1=\"{:.1}\" x2=\"{upper:.1}\" y2=\"{:.1}\"/>\
             <rect class=\"point\" x=\"{:.1}\" y=\"{:.1}\" width=\"10\" height=\"10\"/></g>",
            mark.tone.class(),
            escape(&mark.title),
            LABEL_WIDTH - 12.0,
            y + 4.0,
            escape(&mark.label),
            y - 6.0,
            y + 6.0,
            y - 6.0,
            y + 6.0,
            point - 5.0,
            y - 5.0,
        );
    }
    svg.push_str("</svg>");
    svg
}

fn format_tick(value: f64, signed: bool) -> String {
    if signed && value > 0.0 {
        format!("+{value:.0}")
    } else {
        format!("{value:.0}")
    }
}

/// The two plots of one suite, in percentage points.
fn suite_plots(suite: &SuiteComparison) -> String {
    let accuracy: Vec<Mark> = suite
        .rows
        .iter()
        .filter_map(|row| {
            let a = row.accuracy?;
            Some(Mark {
                label: row.name.clone(),
                point: a.point * 100.0,
                lower: a.lower * 100.0,
                upper: a.upper * 100.0,
                tone: Tone::Neutral,
                title: format!(
                    "{}: {:.1}% [{:.1}%, {:.1}%] at {:.0}%",
                    row.name,
                    a.point * 100.0,
                    a.lower * 100.0,
                    a.upper * 100.0,
                    a.confidence_level * 100.0
                ),
            })
        })
        .collect();
    let difference: Vec<Mark> = suite
        .rows
        .iter()
        .map(|row| match &row.difference {
            None => Mark {
                label: row.name.clone(),
                point: 0.0,
                lower: 0.0,
                upper: 0.0,
                tone: Tone::Reference,
                title: format!("{}: the reference row", row.name),
            },
            Some(d) => {
                let tone = match (d.adjusted_p_value < SIGNIFICANT, d.delta.point < 0.0) {
                    (false, _) => Tone::Neutral,
                    (true, true) => Tone::Worse,
                    (true, false) => Tone::Better,
                };
                Mark {
                    label: row.name.clone(),
                    point: d.delta.point * 100.0,
                    lower: d.delta.lower * 100.0,
                    upper: d.delta.upper * 100.0,
                    tone,
                    title: format!(
                        "{}: {:+.1} points [{:+.1}, {:+.1}], p (Holm) = {:.3}, {} cases",
                        row.name,
                        d.delta.point * 100.0,
                        d.delta.lower * 100.0,
                        d.delta.upper * 100.0,
                        d.adjusted_p_value,
                        d.cases_compared
                    ),
                }
            }
        })
        .collect();
    let mut out = String::new();
    if !accuracy.is_empty() {
        out.push_str("<figure><figcaption>Accuracy with its interval</figcaption>");
        out.push_str(&forest_plot(
            &format!("Accuracy per row, suite {}", suite.suite),
            &accuracy,
            Axis {
                from: 0.0,
                to: 100.0,
                step: 20.0,
            },
            None,
            "%",
        ));
        out.push_str("</figure>");
    }
    if difference.len() > 1 {
        out.push_str(&format!(
            "<figure><figcaption>Difference against {} (percentage points, paired by case)</figcaption>",
            escape(&suite.reference)
        ));
        let axis = Axis::symmetric(&difference);
        out.push_str(&forest_plot(
            &format!("Paired difference against {}, suite {}", suite.reference, suite.suite),
            &difference,
            axis,
            Some(0.0),
            "",
        ));
        out.push_str("</figure>");
    }
    out
}

const STYLE: &str = "\
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:2rem auto;max-width:60rem;color:#1b2631;padding:0 1rem}\
h1{font-size:1.4rem}h2{font-size:1.15rem;margin-top:2.2rem}h2 code{font-size:inherit}\
table{border-collapse:collapse;font-size:.85rem;margin:1rem 0}\
th,td{padding:.3rem .6rem;border-bottom:1px solid #d5d8dc;text-align:right;white-space:nowrap}\
th:first-child,td:first-child{text-align:left}\
figure{margin:1rem 0}figcaption{font-size:.85rem;color:#566573;margin-bottom:.3rem}\
.forest text{font-size:12px;fill:#1b2631}.forest .tick{fill:#566573;font-size:11px}\
.forest .grid{stroke:#eaecee}.forest .rule{stroke:#1b2631;stroke-dasharray:4 3}\
.forest .whisker,.forest .cap{stroke-width:2}\
.reference .whisker,.reference .cap{stroke:#2e86c1}.reference .point{fill:#2e86c1}\
.neutral .whisker,.neutral .cap{stroke:#566573}.neutral .point{fill:#566573}\
.worse .whisker,.worse .cap{stroke:#c0392b}.worse .point{fill:#c0392b}\
.better .whisker,.better .cap{stroke:#1e8449}.better .point{fill:#1e8449}\
.note{font-size:.85rem;color:#566573}code{font-size:.85rem}";

/// The whole page.
pub fn compare_page(record: &CompareRecord) -> String {
    let mut page = String::new();
    let _ = write!(
        page,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <title>promptgate compare</title><style>{STYLE}</style></head><body>\
         <h1>promptgate compare</h1>\
         <p class=\"note\">promptgate {} · started {} · calls: {} made, {} cached, {} failed. \
         Δ is each row minus the first, paired by case; p is two-sided and Holm-adjusted across rows; \
         red and green mark differences with adjusted p &lt; {SIGNIFICANT}.</p>",
        escape(&record.promptgate_version),
        escape(&record.started_at),
        record.calls.made,
        record.calls.cached,
        record.calls.failed,
    );
    for suite in &record.suites {
        let _ = write!(
            page,
            "<section><h2>Suite <code>{}</code> (Δ against {})</h2><table><thead><tr>",
            escape(&suite.suite),
            escape(&suite.reference)
        );
        for header in HEADER {
            let _ = write!(page, "<th>{}</th>", escape(header));
        }
        page.push_str("</tr></thead><tbody>");
        for row in &suite.rows {
            page.push_str("<tr>");
            for cell in cells(row) {
                let _ = write!(page, "<td>{}</td>", escape(&cell));
            }
            page.push_str("</tr>");
        }
        page.push_str("</tbody></table>");
        page.push_str(&suite_plots(suite));
        if let Some(filtered) = &suite.filtered {
            let _ = write!(page, "<p class=\"note\">{}</p>", escape(&filtered.summary()));
        }
        if let Some(rates) = super::compare::flip_rates(suite) {
            let _ = write!(page, "<p class=\"note\">{}</p>", escape(&rates));
        }
        if suite.disagreements.is_empty() {
            page.push_str("<p class=\"note\">The rows agree on every case.</p>");
        } else {
            let ids: Vec<String> = suite
                .disagreements
                .iter()
                .map(|id| format!("<code>{}</code>", escape(id)))
                .collect();
            let _ = write!(
                page,
                "<p class=\"note\">The rows disagree on {} case(s): {}</p>",
                ids.len(),
                ids.join(", ")
            );
        }
        page.push_str("</section>");
    }
    page.push_str("</body></html>\n");
    page
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mark(point: f64, lower: f64, upper: f64) -> Mark {
        Mark {
            label: "<m>".into(),
            point,
            lower,
            upper,
            tone: Tone::Worse,
            title: "t & t".into(),
        }
    }

    #[test]
    fn the_difference_axis_is_symmetric_and_covers_every_interval() {
        let axis = Axis::symmetric(&[mark(-12.0, -21.5, -2.5), mark(3.0, -1.0, 7.0)]);
        // Widest bound 21.5 points: steps of 10, out to 30 on both sides.
        assert_eq!(
            axis,
            Axis {
                from: -30.0,
                to: 30.0,
                step: 10.0
            }
        );
        let small = Axis::symmetric(&[mark(0.2, -0.4, 0.8)]);
        assert_eq!(
            small,
            Axis {
                from: -1.0,
                to: 1.0,
                step: 1.0
            }
        );
        let ticks: Vec<f64> = small.ticks().collect();
        assert_eq!(ticks, vec![-1.0, 0.0, 1.0]);
    }

    #[test]
    fn marks_are_placed_on_the_axis_and_text_is_escaped() {
        let svg = forest_plot(
            "cap",
            &[mark(50.0, 25.0, 75.0)],
            Axis {
                from: 0.0,
                to: 100.0,
                step: 50.0,
            },
            None,
            "%",
        );
        // Plot area 190..696: 25% at 316.5, 75% at 569.5, the point's square centred on 443.
        assert!(svg.contains("x1=\"316.5\" y1=\"27.0\" x2=\"569.5\""), "{svg}");
        assert!(svg.contains("<rect class=\"point\" x=\"438.0\""), "{svg}");
        assert!(svg.contains("&lt;m&gt;") && svg.contains("t &amp; t"), "{svg}");
        assert!(svg.contains(">50%</text>") && !svg.contains("+50"), "{svg}");
        assert!(!svg.contains("<m>"));
    }
}
