//! The `json` grader: the answer is a JSON document (a Markdown ```json fence is tolerated and
//! said in the reason), it follows a JSON Schema, and `expect.fields` match.
//!
//! Output that is not JSON or breaks the schema is invalid output; valid output with a wrong
//! field is a wrong answer.

use std::sync::Arc;

use serde_json::Value;

use super::matcher::FieldMatchers;
use super::{strip_code_fence, Grade};
use crate::excerpt::excerpt;

/// Grades a JSON answer.
#[derive(Clone)]
pub struct JsonGrader {
    validator: Option<Arc<jsonschema::Validator>>,
}

impl std::fmt::Debug for JsonGrader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JsonGrader")
            .field("schema", &self.validator.is_some())
            .finish()
    }
}

impl JsonGrader {
    /// A grader validating against `schema`, if any. The error says why the schema is unusable.
    pub fn new(schema: Option<&Value>) -> Result<JsonGrader, String> {
        let validator = match schema {
            Some(schema) => Some(Arc::new(
                jsonschema::validator_for(schema).map_err(|e| format!("not a usable JSON Schema: {e}"))?,
            )),
            None => None,
        };
        Ok(JsonGrader { validator })
    }

    /// The expected fields of a case's `expect`.
    pub fn expected(expect: &Value) -> Result<FieldMatchers, String> {
        match expect.get("fields") {
            None => Ok(FieldMatchers::default()),
            Some(Value::Object(spec)) => FieldMatchers::parse(spec).map_err(|e| format!("fields: {e}")),
            Some(_) => Err("`expect.fields` must be an object of field matchers".into()),
        }
    }

    /// Grade one answer against a case's `expect`.
    pub fn grade(&self, text: &str, expect: &Value) -> Grade {
        match Self::expected(expect) {
            Ok(fields) => self.grade_expected(text, &fields),
            Err(reason) => Grade::invalid(reason),
        }
    }

    /// Grade one answer against the [`JsonGrader::expected`] fields.
    pub fn grade_expected(&self, text: &str, fields: &FieldMatchers) -> Grade {
        if text.trim().is_empty() {
            return Grade::invalid("empty answer");
        }
        let body = strip_code_fence(text);
        let fenced = body.len() != text.trim().len();
        let note = if fenced { " (inside a ``` fence)" } else { "" };
        let value: Value = match serde_json::from_str(body) {
            Ok(value) => value,
            Err(e) => return Grade::invalid(format!("not JSON{note} ({e}): {}", excerpt(text, 80))),
        };
        if let Some(validator) = &self.validator {
            if let Some(error) = validator.iter_errors(&value).next() {
                let at = error.instance_path().to_string();
                let at = if at.is_empty() { "/".to_string() } else { at };
                return Grade::invalid(format!("breaks the schema at {at}{note}: {error}"));
            }
        }
        match fields.check(&value) {
            Ok(()) => Grade::correct(format!("JSON{note} with every expected field")),
            Err(reason) => Grade::wrong(format!("{reason}{note}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grader::Outcome;
    use serde_json::json;

    fn grader() -> JsonGrader {
        JsonGrader::new(Some(&json!({
            "type": "object",
            "required": ["action", "args"],
            "additionalProperties": false,
            "properties": {
                "action": {"enum": ["suppress-finding", "add-suppression-rule", "delete-suppression-rule", "list-suppression-rules", "none"]},
                "args": {"type": "array", "items": {"type": "string"}}
            }
        })))
        .unwrap()
    }

    fn expect() -> Value {
        json!({"fields": {"action": "add-suppression-rule", "args": {"contains": "EC2.19"}}})
    }

    #[test]
    fn matching_json_is_correct_and_a_fence_is_reported() {
        let plain = grader().grade(
            r#"{"action": "add-suppression-rule", "args": ["EC2.19", "開発アカウント"]}"#,
            &expect(),
        );
        assert_eq!(plain.outcome, Outcome::Correct, "{}", plain.reason);
        assert_eq!(plain.reason, "JSON with every expected field");
        let fenced = grader().grade(
            "```json\n{\"action\": \"add-suppression-rule\", \"args\": [\"EC2.19\"]}\n```",
            &expect(),
        );
        assert_eq!(fenced.outcome, Outcome::Correct);
        assert!(fenced.reason.contains("inside a ``` fence"), "{}", fenced.reason);
    }

    #[test]
    fn wrong_fields_are_wrong_and_malformed_output_is_invalid() {
        let wrong = grader().grade(r#"{"action": "none", "args": []}"#, &expect());
        assert_eq!(wrong.outcome, Outcome::Wrong);
        assert_eq!(wrong.reason, "`action` \"none\" is not \"add-suppression-rule\"");

        let not_json = grader().grade("add-suppression-rule EC2.19", &expect());
        assert_eq!(not_json.outcome, Outcome::Invalid);
        assert!(not_json.reason.starts_with("not JSON"), "{}", not_json.reason);

        let schema = grader().grade(r#"{"action": "suppress", "args": []}"#, &expect());
        assert_eq!(schema.outcome, Outcome::Invalid);
        assert!(
            schema.reason.starts_with("breaks the schema at /action"),
            "{}",
            schema.reason
        );

        let extra = grader().grade(r#"{"action": "none", "args": [], "why": "x"}"#, &expect());
        assert!(extra.reason.starts_with("breaks the schema at /"), "{}", extra.reason);
    }

    #[test]
    fn without_a_schema_only_parsing_and_fields_count() {
        let grader = JsonGrader::new(None).unwrap();
        let grade = grader.grade(
            r#"{"action": "add-suppression-rule", "args": ["EC2.19"], "x": 1}"#,
            &expect(),
        );
        assert_eq!(grade.outcome, Outcome::Correct);
        assert!(JsonGrader::new(Some(&json!({"type": 5}))).is_err());
        assert!(JsonGrader::expected(&json!({"fields": []})).is_err());
    }
}
