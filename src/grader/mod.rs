//! Graders turn a response into correct, wrong or invalid output, with a reason.
//!
//! Invalid output (unparseable JSON, no label) counts as a wrong sample in accuracy and is also
//! counted on its own, because malformed output is itself a regression users care about.

pub mod label;
pub mod matcher;
pub mod tool_call;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::config::GraderConfig;
use crate::prompt::Prompt;
use crate::provider::Response;

/// The verdict on one sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Correct,
    Wrong,
    /// The output could not be read as an answer at all.
    Invalid,
}

/// A graded sample.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Grade {
    pub outcome: Outcome,
    /// Why: what was found versus what was expected.
    pub reason: String,
}

impl Grade {
    pub fn correct(reason: impl Into<String>) -> Grade {
        Grade {
            outcome: Outcome::Correct,
            reason: reason.into(),
        }
    }
    pub fn wrong(reason: impl Into<String>) -> Grade {
        Grade {
            outcome: Outcome::Wrong,
            reason: reason.into(),
        }
    }
    pub fn invalid(reason: impl Into<String>) -> Grade {
        Grade {
            outcome: Outcome::Invalid,
            reason: reason.into(),
        }
    }
}

/// A configured grader.
#[derive(Debug, Clone)]
pub enum Grader {
    Label(label::LabelGrader),
    ToolCall(tool_call::ToolCallGrader),
}

impl Grader {
    /// Build the grader a suite's config describes, for the suite's prompt.
    pub fn new(config: &GraderConfig, prompt: &Prompt) -> Grader {
        match config {
            GraderConfig::Label { field, labels } => {
                Grader::Label(label::LabelGrader::new(field.clone(), labels.clone()))
            }
            GraderConfig::ToolCall => Grader::ToolCall(tool_call::ToolCallGrader::new(
                prompt.tools.iter().map(|tool| tool.name.clone()).collect(),
            )),
        }
    }

    /// Check a case's `expect` before any call is made; the error says what is wrong.
    pub fn check_expect(&self, expect: &Value) -> Result<(), String> {
        match self {
            Grader::Label(g) => g.check_expect(expect),
            Grader::ToolCall(g) => g.check_expect(expect),
        }
    }

    /// Grade one response against a case's `expect`.
    pub fn grade(&self, response: &Response, expect: &Value) -> Grade {
        match self {
            Grader::Label(g) => g.grade(response, expect),
            Grader::ToolCall(g) => g.grade(response, expect),
        }
    }
}

/// Strip a Markdown code fence (```json … ```) around a model's answer, if there is one.
pub fn strip_code_fence(text: &str) -> &str {
    let trimmed = text.trim();
    let Some(rest) = trimmed.strip_prefix("```") else {
        return trimmed;
    };
    let body = rest.split_once('\n').map_or("", |(_, body)| body);
    body.trim_end().strip_suffix("```").unwrap_or(body).trim()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fences_are_stripped() {
        assert_eq!(strip_code_fence("```json\n{\"a\": 1}\n```"), "{\"a\": 1}");
        assert_eq!(strip_code_fence("  {\"a\": 1} "), "{\"a\": 1}");
        assert_eq!(strip_code_fence("```\nx\n```\n"), "x");
        assert_eq!(strip_code_fence("```json\n{\"a\": 1}"), "{\"a\": 1}");
    }
}
