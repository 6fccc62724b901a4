//! The `label` grader: the answer is one word from an allowed set (e.g. suppress / notify),
//! either in a JSON field or as the only allowed word in free text. Case-insensitive.

use serde_json::Value;

use super::{strip_code_fence, Grade};
use crate::excerpt::excerpt;
use crate::provider::Response;

/// Grades a label answer against `expect = {"label": "..."}`.
#[derive(Debug, Clone)]
pub struct LabelGrader {
    field: Option<String>,
    labels: Vec<String>,
}

impl LabelGrader {
    /// A grader reading `field` (or free text when `None`) against the allowed `labels`.
    pub fn new(field: Option<String>, labels: Vec<String>) -> LabelGrader {
        LabelGrader { field, labels }
    }

    fn allowed(&self, word: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|label| label.eq_ignore_ascii_case(word.trim()))
            .map(String::as_str)
    }

    /// The expected label: `expect` must be `{"label": L}` with L among the allowed labels.
    pub fn expected(&self, expect: &Value) -> Result<String, String> {
        let label = expect
            .get("label")
            .and_then(Value::as_str)
            .ok_or_else(|| "the label grader needs `expect: {\"label\": ...}`".to_string())?;
        match self.allowed(label) {
            Some(_) => Ok(label.to_string()),
            None => Err(format!(
                "expected label `{label}` is not one of: {}",
                self.labels.join(", ")
            )),
        }
    }

    /// Grade one response against a case's `expect`.
    pub fn grade(&self, response: &Response, expect: &Value) -> Grade {
        match self.expected(expect) {
            Ok(expected) => self.grade_expected(response, &expected),
            Err(reason) => Grade::invalid(reason),
        }
    }

    /// Grade one response against the [`LabelGrader::expected`] label.
    pub fn grade_expected(&self, response: &Response, expected: &str) -> Grade {
        let Some(text) = response.text.as_deref().filter(|t| !t.trim().is_empty()) else {
            return Grade::invalid("empty answer");
        };
        let found = match &self.field {
            Some(field) => self.label_in_field(text, field),
            None => self.label_in_words(text),
        };
        match found {
            Ok(label) if label.eq_ignore_ascii_case(expected) => Grade::correct(format!("answered `{label}`")),
            Ok(label) => Grade::wrong(format!("answered `{label}`, expected `{expected}`")),
            Err(reason) => Grade::invalid(reason),
        }
    }

    fn label_in_field<'a>(&'a self, text: &str, field: &str) -> Result<&'a str, String> {
        let json: Value = serde_json::from_str(strip_code_fence(text))
            .map_err(|e| format!("not JSON ({e}): {}", excerpt(text, 80)))?;
        let value = json
            .get(field)
            .ok_or_else(|| format!("no `{field}` field in {}", excerpt(text, 80)))?;
        let word = value
            .as_str()
            .ok_or_else(|| format!("`{field}` is {value}, not a string"))?;
        self.allowed(word)
            .ok_or_else(|| format!("`{field}` is `{word}`, not one of: {}", self.labels.join(", ")))
    }

    fn label_in_words(&self, text: &str) -> Result<&str, String> {
        let mut found: Vec<&str> = Vec::new();
        for word in text.split(|c: char| !c.is_alphanumeric() && c != '_' && c != '-') {
            if let Some(label) = self.allowed(word) {
                if !found.contains(&label) {
                    found.push(label);
                }
            }
        }
        match found.as_slice() {
            [one] => Ok(one),
            [] => Err(format!("none of {} in: {}", self.labels.join(", "), excerpt(text, 80))),
            several => Err(format!("ambiguous: mentions {}", several.join(" and "))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grader::Outcome;
    use serde_json::json;

    fn field_grader() -> LabelGrader {
        LabelGrader::new(Some("decision".into()), vec!["suppress".into(), "notify".into()])
    }

    #[test]
    fn a_huge_answer_makes_a_short_reason() {
        let g = field_grader();
        let expect = json!({"label": "suppress"});
        let huge = "x".repeat(1 << 20);
        for text in [
            format!(r#"{{"decision": "{huge}"}}"#),
            format!(r#"{{"decision": ["{huge}"]}}"#),
        ] {
            let grade = g.grade(&Response::from_text(&text), &expect);
            assert_eq!(grade.outcome, Outcome::Invalid);
            assert!(
                grade.reason.chars().count() <= crate::grader::MAX_REASON_CHARS + 1,
                "{}",
                grade.reason.len()
            );
            assert!(
                grade.reason.starts_with("`decision` is ") && grade.reason.ends_with('…'),
                "{}",
                &grade.reason[..40]
            );
        }
    }

    #[test]
    fn json_field_labels() {
        let g = field_grader();
        let expect = json!({"label": "suppress"});
        assert_eq!(
            g.grade(
                &Response::from_text(r#"{"decision": "suppress", "reason": "x"}"#),
                &expect
            )
            .outcome,
            Outcome::Correct
        );
        assert_eq!(
            g.grade(&Response::from_text(r#"{"decision": "SUPPRESS"}"#), &expect)
                .outcome,
            Outcome::Correct
        );
        assert_eq!(
            g.grade(
                &Response::from_text("```json\n{\"decision\": \"notify\"}\n```"),
                &expect
            )
            .outcome,
            Outcome::Wrong
        );
        let invalid = g.grade(&Response::from_text(r#"{"decision": "maybe"}"#), &expect);
        assert_eq!(invalid.outcome, Outcome::Invalid);
        assert!(invalid.reason.contains("`maybe`"), "{}", invalid.reason);
        assert_eq!(
            g.grade(&Response::from_text("suppress"), &expect).outcome,
            Outcome::Invalid
        );
        assert_eq!(
            g.grade(&Response::from_text(r#"{"verdict": "suppress"}"#), &expect)
                .outcome,
            Outcome::Invalid
        );
        assert_eq!(
            g.grade(&Response::from_text(r#"{"decision": 1}"#), &expect).outcome,
            Outcome::Invalid
        );
        assert_eq!(g.grade(&Response::from_text("  "), &expect).outcome, Outcome::Invalid);
    }

    #[test]
    fn free_text_labels() {
        let g = LabelGrader::new(None, vec!["suppress".into(), "notify".into()]);
        let expect = json!({"label": "notify"});
        assert_eq!(
            g.grade(&Response::from_text("Notify."), &expect).outcome,
            Outcome::Correct
        );
        assert_eq!(
            g.grade(&Response::from_text("I would suppress this."), &expect).outcome,
            Outcome::Wrong
        );
        let ambiguous = g.grade(&Response::from_text("suppress or notify?"), &expect);
        assert_eq!(ambiguous.outcome, Outcome::Invalid);
        assert!(ambiguous.reason.contains("ambiguous"));
        // "notifying" is not the word "notify".
        assert_eq!(
            g.grade(&Response::from_text("notifying"), &expect).outcome,
            Outcome::Invalid
        );
    }

    #[test]
    fn expect_is_checked() {
        let g = field_grader();
        assert!(g.expected(&json!({"label": "notify"})).is_ok());
        assert!(g
            .expected(&json!({"label": "ignore"}))
            .unwrap_err()
            .contains("not one of"));
        assert!(g.expected(&json!({})).is_err());
    }
}
