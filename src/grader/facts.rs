//! The `facts` grader: an explanation or summary must state the facts a reader needs (the
//! finding type, the IP address, the resource id…) and must not state what is false.
//!
//! `expect.facts = {"required": [fact, …], "forbidden": [fact, …]}`, where a fact is a string
//! (found case-insensitively) or `{"regex": "…"}` (a regular expression, case-sensitive unless it
//! says `(?i)`).

use regex::Regex;
use serde_json::Value;

use super::Grade;

/// One fact to look for.
#[derive(Debug, Clone)]
enum Fact {
    Text(String),
    Pattern(Regex),
}

impl Fact {
    fn parse(spec: &Value) -> Result<Fact, String> {
        match spec {
            Value::String(text) if !text.trim().is_empty() => Ok(Fact::Text(text.clone())),
            Value::Object(map) => match map.get("regex").and_then(Value::as_str) {
                Some(pattern) if map.len() == 1 => Regex::new(pattern)
                    .map(Fact::Pattern)
                    .map_err(|e| format!("regex `{pattern}` does not compile: {e}")),
                _ => Err(format!("a fact is a string or {{\"regex\": \"…\"}}, not {spec}")),
            },
            other => Err(format!(
                "a fact is a non-empty string or {{\"regex\": \"…\"}}, not {other}"
            )),
        }
    }

    fn found_in(&self, text: &str, lowercase: &str) -> bool {
        match self {
            Fact::Text(fact) => lowercase.contains(&fact.to_lowercase()),
            Fact::Pattern(regex) => regex.is_match(text),
        }
    }

    fn describe(&self) -> String {
        match self {
            Fact::Text(text) => format!("`{text}`"),
            Fact::Pattern(regex) => format!("/{}/", regex.as_str()),
        }
    }
}

/// Grades required and forbidden facts.
#[derive(Debug, Clone, Default)]
pub struct FactsGrader;

#[derive(Debug)]
pub struct Facts {
    required: Vec<Fact>,
    forbidden: Vec<Fact>,
}

impl FactsGrader {
    /// The expected facts of a case's `expect`.
    pub fn expected(expect: &Value) -> Result<Facts, String> {
        let spec = expect
            .get("facts")
            .and_then(Value::as_object)
            .ok_or("the facts grader needs `expect: {\"facts\": {\"required\": […], \"forbidden\": […]}}`")?;
        if let Some(key) = spec.keys().find(|k| *k != "required" && *k != "forbidden") {
            return Err(format!("unknown key `facts.{key}` (use required, forbidden)"));
        }
        let list = |key: &str| -> Result<Vec<Fact>, String> {
            match spec.get(key) {
                None => Ok(Vec::new()),
                Some(Value::Array(items)) => items
                    .iter()
                    .enumerate()
                    .map(|(i, item)| Fact::parse(item).map_err(|e| format!("facts.{key}[{i}]: {e}")))
                    .collect(),
                Some(_) => Err(format!("facts.{key} must be an array")),
            }
        };
        let facts = Facts {
            required: list("required")?,
            forbidden: list("forbidden")?,
        };
        if facts.required.is_empty() && facts.forbidden.is_empty() {
            return Err("facts has neither `required` nor `forbidden` facts".into());
        }
        Ok(facts)
    }

    /// Grade one answer against a case's `expect`.
    pub fn grade(&self, text: &str, expect: &Value) -> Grade {
        match Self::expected(expect) {
            Ok(facts) => self.grade_expected(text, &facts),
            Err(reason) => Grade::invalid(reason),
        }
    }

    /// Grade one answer against the [`FactsGrader::expected`] facts.
    pub fn grade_expected(&self, text: &str, facts: &Facts) -> Grade {
        if text.trim().is_empty() {
            return Grade::invalid("empty answer");
        }
        let lowercase = text.to_lowercase();
        let missing: Vec<String> = facts
            .required
            .iter()
            .filter(|f| !f.found_in(text, &lowercase))
            .map(Fact::describe)
            .collect();
        let present: Vec<String> = facts
            .forbidden
            .iter()
            .filter(|f| f.found_in(text, &lowercase))
            .map(Fact::describe)
            .collect();
        match (missing.is_empty(), present.is_empty()) {
            (true, true) => Grade::correct(format!("all {} required facts, no forbidden one", facts.required.len())),
            (false, true) => Grade::wrong(format!("missing {}", missing.join(", "))),
            (true, false) => Grade::wrong(format!("states forbidden {}", present.join(", "))),
            (false, false) => Grade::wrong(format!(
                "missing {}; states forbidden {}",
                missing.join(", "),
                present.join(", ")
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grader::Outcome;
    use serde_json::json;

    fn expect() -> Value {
        json!({"facts": {
            "required": ["Recon:EC2/PortProbeUnprotectedPort", {"regex": "198\\.51\\.100\\.7\\b"}, "i-0a1b2c3d4e5f60718"],
            "forbidden": ["マルウェアに感染", {"regex": "(?i)root account"}]
        }})
    }

    #[test]
    fn every_required_fact_and_no_forbidden_one_is_correct() {
        let text = "検出タイプ recon:ec2/portprobeunprotectedport: インスタンス i-0a1b2c3d4e5f60718 のポートが 198.51.100.7 から探索されています。";
        let grade = FactsGrader.grade(text, &expect());
        assert_eq!(grade.outcome, Outcome::Correct, "{}", grade.reason);
    }

    #[test]
    fn missing_and_forbidden_facts_are_named() {
        let text = "198.51.100.70 から探索。Root Account が使われ、マルウェアに感染しています。";
        let grade = FactsGrader.grade(text, &expect());
        assert_eq!(grade.outcome, Outcome::Wrong);
        assert_eq!(
            grade.reason,
            "missing `Recon:EC2/PortProbeUnprotectedPort`, /198\\.51\\.100\\.7\\b/, `i-0a1b2c3d4e5f60718`; \
             states forbidden `マルウェアに感染`, /(?i)root account/"
        );
        assert_eq!(FactsGrader.grade("  ", &expect()).outcome, Outcome::Invalid);
    }

    #[test]
    fn bad_expectations_are_refused() {
        assert!(FactsGrader::expected(&json!({"label": "x"})).is_err());
        assert!(FactsGrader::expected(&json!({"facts": {"required": [{"regex": "("}]}}))
            .unwrap_err()
            .contains("facts.required[0]"));
        assert!(FactsGrader::expected(&json!({"facts": {"needed": ["x"]}}))
            .unwrap_err()
            .contains("unknown key `facts.needed`"));
        assert!(FactsGrader::expected(&json!({"facts": {}})).is_err());
    }
}
