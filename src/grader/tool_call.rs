//! The `tool_call` grader: the model called exactly the expected functions, in order, with
//! arguments matching the case's matchers. It reads OpenAI `tool_calls` and Bedrock `toolUse`
//! alike (both arrive as [`ToolCall`](crate::provider::ToolCall)s).
//!
//! `expect = {"calls": [{"name": "...", "arguments": {"field": matcher, …}}, …]}`; an empty
//! `calls` means the model must not call any tool (e.g. a chat message that asks for nothing).
//! Arguments the matchers do not name are not checked.

use serde_json::Value;

use super::matcher::FieldMatchers;
use super::Grade;
use crate::excerpt::excerpt;
use crate::provider::Response;

/// Grades tool calls against `expect.calls`.
#[derive(Debug, Clone)]
pub struct ToolCallGrader {
    /// The tools the prompt defines, to catch a misspelt expected name before any call.
    known_tools: Vec<String>,
}

/// One expected call, read from a case.
#[derive(Debug)]
pub struct ExpectedCall {
    name: String,
    arguments: FieldMatchers,
}

impl ToolCallGrader {
    pub fn new(known_tools: Vec<String>) -> ToolCallGrader {
        ToolCallGrader { known_tools }
    }

    /// The expected calls of a case's `expect`.
    pub fn expected(&self, expect: &Value) -> Result<Vec<ExpectedCall>, String> {
        let calls = expect
            .get("calls")
            .and_then(Value::as_array)
            .ok_or("the tool_call grader needs `expect: {\"calls\": [{\"name\": …, \"arguments\": {…}}]}`")?;
        calls
            .iter()
            .enumerate()
            .map(|(index, call)| {
                let name = call
                    .get("name")
                    .and_then(Value::as_str)
                    .ok_or_else(|| format!("calls[{index}] has no `name`"))?;
                if !self.known_tools.is_empty() && !self.known_tools.iter().any(|t| t == name) {
                    return Err(format!(
                        "calls[{index}]: `{name}` is not a tool of the prompt (tools: {})",
                        self.known_tools.join(", ")
                    ));
                }
                let arguments = match call.get("arguments") {
                    None => FieldMatchers::default(),
                    Some(Value::Object(spec)) => {
                        FieldMatchers::parse(spec).map_err(|e| format!("calls[{index}].arguments: {e}"))?
                    }
                    Some(_) => return Err(format!("calls[{index}].arguments must be an object of matchers")),
                };
                Ok(ExpectedCall {
                    name: name.to_string(),
                    arguments,
                })
            })
            .collect()
    }

    /// Grade one response against a case's `expect`.
    pub fn grade(&self, response: &Response, expect: &Value) -> Grade {
        match self.expected(expect) {
            Ok(expected) => self.grade_expected(response, &expected),
            Err(reason) => Grade::invalid(reason),
        }
    }

    /// Grade one response against the [`ToolCallGrader::expected`] calls.
    pub fn grade_expected(&self, response: &Response, expected: &[ExpectedCall]) -> Grade {
        let actual = &response.tool_calls;
        if let Some(call) = actual.iter().find(|call| !call.arguments.is_object()) {
            return Grade::invalid(format!(
                "the arguments of `{}` are not a JSON object: {}",
                call.name,
                excerpt(&call.arguments.to_string(), 80)
            ));
        }
        let names = |count: usize| {
            actual
                .iter()
                .take(count)
                .map(|c| format!("`{}`", c.name))
                .collect::<Vec<_>>()
                .join(", ")
        };
        if actual.is_empty() && !expected.is_empty() {
            let text = response.text.as_deref().unwrap_or_default();
            return Grade::wrong(format!(
                "no tool call, expected `{}` (answered: {})",
                expected[0].name,
                excerpt(text, 60)
            ));
        }
        if expected.is_empty() {
            return match actual.is_empty() {
                true => Grade::correct("no tool call, as expected"),
                false => Grade::wrong(format!("called {}, expected no call", names(actual.len()))),
            };
        }
        for (index, want) in expected.iter().enumerate() {
            let Some(call) = actual.get(index) else {
                return Grade::wrong(format!(
                    "called {}, expected `{}` as call {} too",
                    names(actual.len()),
                    want.name,
                    index + 1
                ));
            };
            if call.name != want.name {
                return Grade::wrong(format!("called `{}`, expected `{}`", call.name, want.name));
            }
            if let Err(reason) = want.arguments.check(&call.arguments) {
                return Grade::wrong(format!("`{}`: {reason}", call.name));
            }
        }
        if actual.len() > expected.len() {
            return Grade::wrong(format!(
                "extra call {} after the expected {}",
                actual[expected.len()..]
                    .iter()
                    .map(|c| format!("`{}`", c.name))
                    .collect::<Vec<_>>()
                    .join(", "),
                names(expected.len())
            ));
        }
        Grade::correct(format!("called {}", names(actual.len())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grader::Outcome;
    use crate::provider::ToolCall;
    use serde_json::json;

    fn response(calls: &[(&str, Value)]) -> Response {
        Response {
            text: None,
            tool_calls: calls
                .iter()
                .map(|(name, arguments)| ToolCall {
                    name: (*name).to_string(),
                    arguments: arguments.clone(),
                })
                .collect(),
            raw_body: String::new(),
            usage: None,
            latency_ms: 0,
            version: None,
        }
    }

    fn grader() -> ToolCallGrader {
        ToolCallGrader::new(vec![
            "updateFindingStatusToSuppressed".into(),
            "listAutomaticSuppressionRules".into(),
            "deleteAutomaticSuppressionRule".into(),
        ])
    }

    fn suppress() -> Value {
        json!({"calls": [{"name": "updateFindingStatusToSuppressed",
            "arguments": {"findingId": {"regex": "^arn:aws:securityhub:"}, "reason": {"contains": "検証"}}}]})
    }

    #[test]
    fn the_expected_call_with_matching_arguments_is_correct() {
        let grade = grader().grade(
            &response(&[(
                "updateFindingStatusToSuppressed",
                json!({"findingId": "arn:aws:securityhub:ap-northeast-1:111122223333:subscription/x", "productArn": "p", "reason": "検証環境のため"}),
            )]),
            &suppress(),
        );
        assert_eq!(grade.outcome, Outcome::Correct, "{}", grade.reason);
        assert_eq!(grade.reason, "called `updateFindingStatusToSuppressed`");
    }

    #[test]
    fn no_call_wrong_function_extra_call_and_bad_arguments_are_wrong() {
        let g = grader();
        let none = g.grade(
            &Response {
                text: Some("了解しました".into()),
                ..response(&[])
            },
            &suppress(),
        );
        assert_eq!(none.outcome, Outcome::Wrong);
        assert!(none
            .reason
            .starts_with("no tool call, expected `updateFindingStatusToSuppressed`"));

        let wrong = g.grade(&response(&[("listAutomaticSuppressionRules", json!({}))]), &suppress());
        assert_eq!(
            wrong.reason,
            "called `listAutomaticSuppressionRules`, expected `updateFindingStatusToSuppressed`"
        );

        let args = json!({"findingId": "arn:aws:securityhub:x", "reason": "検証"});
        let extra = g.grade(
            &response(&[
                ("updateFindingStatusToSuppressed", args.clone()),
                ("listAutomaticSuppressionRules", json!({})),
            ]),
            &suppress(),
        );
        assert_eq!(extra.outcome, Outcome::Wrong);
        assert!(
            extra.reason.starts_with("extra call `listAutomaticSuppressionRules`"),
            "{}",
            extra.reason
        );

        let bad = g.grade(
            &response(&[(
                "updateFindingStatusToSuppressed",
                json!({"findingId": "f-1", "reason": "検証"}),
            )]),
            &suppress(),
        );
        assert_eq!(bad.outcome, Outcome::Wrong);
        assert!(
            bad.reason.contains("`findingId` \"f-1\" does not match"),
            "{}",
            bad.reason
        );
    }

    #[test]
    fn an_expected_silence_is_graded_both_ways() {
        let expect = json!({"calls": []});
        assert_eq!(grader().grade(&response(&[]), &expect).outcome, Outcome::Correct);
        let called = grader().grade(&response(&[("listAutomaticSuppressionRules", json!({}))]), &expect);
        assert_eq!(called.outcome, Outcome::Wrong);
        assert_eq!(
            called.reason,
            "called `listAutomaticSuppressionRules`, expected no call"
        );
    }

    #[test]
    fn arguments_that_are_not_json_are_invalid_output() {
        let grade = grader().grade(
            &response(&[("updateFindingStatusToSuppressed", json!("{findingId: oops"))]),
            &suppress(),
        );
        assert_eq!(grade.outcome, Outcome::Invalid);
        assert!(grade.reason.contains("not a JSON object"));
    }

    #[test]
    fn expectations_are_checked_against_the_prompt_tools() {
        let err = grader()
            .expected(&json!({"calls": [{"name": "suppressFinding"}]}))
            .unwrap_err();
        assert!(err.contains("`suppressFinding` is not a tool of the prompt"), "{err}");
        assert!(grader().expected(&json!({"label": "x"})).is_err());
        let err = grader()
            .expected(
                &json!({"calls": [{"name": "listAutomaticSuppressionRules", "arguments": {"x": {"regex": "("}}}]}),
            )
            .unwrap_err();
        assert!(err.contains("calls[0].arguments: field `x`"), "{err}");
    }
}
