//! The `sections` grader: structured text such as the Security Hub interpretation of seed 002
//! (検出内容の要約 / 重要度 / 影響 / 推奨される対応) has every heading, in order, and the severity
//! under its heading is one allowed value equal to `expect.severity`.
//!
//! A heading is a line that starts with the heading's text once Markdown and list decoration
//! are stripped (`## 重要度`, `- 重要度: HIGH`, `**重要度**`, `1. 重要度`, `【重要度】`), followed by
//! the end of the line, a colon or a closing mark.

use serde_json::Value;

use super::Grade;

/// Grades headings and severity.
#[derive(Debug, Clone)]
pub struct SectionsGrader {
    headings: Vec<String>,
    severity_heading: Option<String>,
    severities: Vec<String>,
}

impl SectionsGrader {
    pub fn new(headings: Vec<String>, severity_heading: Option<String>, severities: Vec<String>) -> SectionsGrader {
        SectionsGrader {
            headings,
            severity_heading,
            severities,
        }
    }

    /// The expected severity of a case's `expect`, if it names one.
    pub fn expected(&self, expect: &Value) -> Result<Option<String>, String> {
        match (expect.get("severity"), &self.severity_heading) {
            (None, _) => Ok(None),
            (Some(_), None) => Err("`expect.severity` needs the grader's `severity_heading`".into()),
            (Some(Value::String(s)), Some(_)) if self.allowed(s).is_some() => Ok(Some(s.clone())),
            (Some(other), Some(_)) => Err(format!(
                "`expect.severity` {other} is not one of {}",
                self.severities.join(", ")
            )),
        }
    }

    fn allowed(&self, word: &str) -> Option<&str> {
        self.severities
            .iter()
            .find(|s| s.eq_ignore_ascii_case(word))
            .map(String::as_str)
    }

    /// Grade one answer against a case's `expect`.
    pub fn grade(&self, text: &str, expect: &Value) -> Grade {
        match self.expected(expect) {
            Ok(severity) => self.grade_expected(text, severity.as_deref()),
            Err(reason) => Grade::invalid(reason),
        }
    }

    /// Grade one answer against the [`SectionsGrader::expected`] severity.
    pub fn grade_expected(&self, text: &str, expected_severity: Option<&str>) -> Grade {
        if text.trim().is_empty() {
            return Grade::invalid("empty answer");
        }
        let lines: Vec<&str> = text.lines().collect();
        // The line of each heading: the first match after the previous heading's line.
        let mut found: Vec<(usize, usize)> = Vec::with_capacity(self.headings.len()); // (line, column after)
        let mut from = 0;
        for heading in &self.headings {
            let hit = lines[from..]
                .iter()
                .enumerate()
                .find_map(|(offset, line)| heading_end(line, heading).map(|end| (from + offset, end)));
            match hit {
                Some((line, end)) => {
                    found.push((line, end));
                    from = line + 1;
                }
                None => {
                    let anywhere = lines.iter().any(|line| heading_end(line, heading).is_some());
                    return Grade::wrong(if anywhere {
                        format!(
                            "heading `{heading}` is out of order (expected: {})",
                            self.headings.join(" / ")
                        )
                    } else {
                        format!("no heading `{heading}`")
                    });
                }
            }
        }
        let Some(severity_heading) = &self.severity_heading else {
            return Grade::correct(format!("all {} headings in order", self.headings.len()));
        };
        let index = self.headings.iter().position(|h| h == severity_heading).unwrap_or(0);
        let (line, column) = found[index];
        let end = found.get(index + 1).map_or(lines.len(), |(next, _)| *next);
        let mut section = lines[line][column..].to_string();
        for extra in &lines[line + 1..end] {
            section.push('\n');
            section.push_str(extra);
        }
        let mut named: Vec<&str> = Vec::new();
        for word in section.split(|c: char| !c.is_ascii_alphanumeric()) {
            if let Some(severity) = self.allowed(word) {
                if !named.contains(&severity) {
                    named.push(severity);
                }
            }
        }
        let severity = match named.as_slice() {
            [one] => *one,
            [] => {
                return Grade::wrong(format!(
                    "no severity ({}) under `{severity_heading}`",
                    self.severities.join("/")
                ))
            }
            many => {
                return Grade::wrong(format!(
                    "several severities under `{severity_heading}`: {}",
                    many.join(", ")
                ))
            }
        };
        match expected_severity {
            Some(expected) if !expected.eq_ignore_ascii_case(severity) => {
                Grade::wrong(format!("severity {severity}, expected {expected}"))
            }
            _ => Grade::correct(format!(
                "all {} headings in order, severity {severity}",
                self.headings.len()
            )),
        }
    }
}

/// If `line` is `heading` (decorated), the byte offset just after the heading and its closing
/// marks.
fn heading_end(line: &str, heading: &str) -> Option<usize> {
    let trimmed = line.trim_start_matches(|c: char| {
        c.is_whitespace()
            || matches!(c, '#' | '-' | '*' | '•' | '・' | '>' | '【' | '[' | '■' | '●' | '_')
            || c.is_ascii_digit()
            || c == '.'
            || c == ')'
    });
    let rest = trimmed.strip_prefix(heading)?;
    let after = rest.trim_start_matches(['*', '】', ']', '_', ' ', '\u{3000}']);
    let closes = after.is_empty() || after.starts_with(':') || after.starts_with('：') || rest.len() != after.len();
    if !closes {
        return None;
    }
    let after = after.trim_start_matches([':', '：']);
    Some(line.len() - after.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grader::Outcome;
    use serde_json::json;

    fn grader() -> SectionsGrader {
        SectionsGrader::new(
            ["検出内容の要約", "重要度", "影響", "推奨される対応"]
                .map(String::from)
                .to_vec(),
            Some("重要度".into()),
            ["CRITICAL", "HIGH", "MEDIUM", "LOW", "INFORMATIONAL"]
                .map(String::from)
                .to_vec(),
        )
    }

    // The answer shape of seed 002's Slack message.
    const ANSWER: &str = "検出内容の要約: 未認証のSSH接続試行が検出されました\n重要度: HIGH\n影響: サーバーへの不正アクセスのリスクが高まっています\n推奨される対応:\n1. セキュリティグループで 22 番ポートを制限する\n";

    #[test]
    fn the_seed_answer_passes_in_several_decorations() {
        let expect = json!({"severity": "HIGH"});
        assert_eq!(grader().grade(ANSWER, &expect).outcome, Outcome::Correct);
        let markdown = "## 検出内容の要約\nSSH の総当たり\n## 重要度\n**high**\n## 影響\n不正アクセス\n## 推奨される対応\n- 制限する";
        let grade = grader().grade(markdown, &expect);
        assert_eq!(grade.outcome, Outcome::Correct, "{}", grade.reason);
        let bracketed = "【検出内容の要約】x\n【重要度】HIGH\n【影響】y\n【推奨される対応】z";
        assert_eq!(grader().grade(bracketed, &expect).outcome, Outcome::Correct);
        let bold_list = "- **検出内容の要約**: x\n- **重要度**: HIGH\n- **影響**: y\n- **推奨される対応**: z";
        assert_eq!(grader().grade(bold_list, &expect).outcome, Outcome::Correct);
    }

    #[test]
    fn missing_disordered_and_wrong_severity_are_wrong() {
        let expect = json!({"severity": "CRITICAL"});
        assert_eq!(
            grader().grade(ANSWER, &expect).reason,
            "severity HIGH, expected CRITICAL"
        );
        let missing = ANSWER.replace("影響: ", "リスク: ");
        assert_eq!(grader().grade(&missing, &expect).reason, "no heading `影響`");
        let swapped = "重要度: HIGH\n検出内容の要約: x\n影響: y\n推奨される対応: z";
        assert!(grader().grade(swapped, &expect).reason.contains("out of order"));
        let none = ANSWER.replace("重要度: HIGH", "重要度: 高い");
        assert!(grader().grade(&none, &expect).reason.starts_with("no severity"));
        let two = ANSWER.replace("重要度: HIGH", "重要度: HIGH または CRITICAL");
        assert_eq!(
            grader().grade(&two, &expect).reason,
            "several severities under `重要度`: HIGH, CRITICAL"
        );
        // A heading word inside a sentence is not a heading.
        assert_eq!(heading_end("この影響は大きい", "影響"), None);
        assert_eq!(heading_end("影響は大きい", "影響"), None);
    }

    #[test]
    fn expectations_are_checked() {
        assert!(grader().expected(&json!({"severity": "SEVERE"})).is_err());
        assert!(grader().expected(&json!({"severity": "high"})).is_ok());
        assert!(grader().expected(&json!({})).is_ok());
    }
}
