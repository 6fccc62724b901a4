//! Matchers for expected values, shared by the `json` and `tool_call` graders.
//!
//! In a case's `expect`, a field's matcher is either a plain JSON value (equal to it) or an
//! object with exactly one of these keys:
//!
//! - `{"equals": V}` — equal to V (numbers compare by value: 1 equals 1.0);
//! - `{"one_of": [V, …]}` — equal to one of them;
//! - `{"regex": "…"}` — a string the regular expression finds a match in (unanchored);
//! - `{"contains": V}` — a string containing the string V, or an array with an element equal to V;
//! - `{"subset": [V, …]}` — an array holding every one of the values (order and extras free);
//! - `{"absent": true}` — the field is missing (or null).

use std::fmt;

use regex::Regex;
use serde_json::{Map, Value};

use crate::excerpt::excerpt;

/// One expected-value check.
#[derive(Debug, Clone)]
pub enum Matcher {
    Equals(Value),
    OneOf(Vec<Value>),
    Regex(Regex),
    Contains(Value),
    Subset(Vec<Value>),
    Absent,
}

/// The matcher keys, for error messages.
const KEYS: &str = "equals, one_of, regex, contains, subset, absent";

impl Matcher {
    /// Read a matcher from its JSON form; the error says what is wrong with it.
    pub fn parse(spec: &Value) -> Result<Matcher, String> {
        let Value::Object(map) = spec else {
            return Ok(Matcher::Equals(spec.clone()));
        };
        let mut entries = map.iter();
        let (Some((key, value)), None) = (entries.next(), entries.next()) else {
            return Err(format!(
                "a matcher object has exactly one key ({KEYS}); to expect an object write {{\"equals\": {{…}}}}"
            ));
        };
        match (key.as_str(), value) {
            ("equals", value) => Ok(Matcher::Equals(value.clone())),
            ("one_of", Value::Array(values)) if !values.is_empty() => Ok(Matcher::OneOf(values.clone())),
            ("one_of", _) => Err("`one_of` takes a non-empty array".into()),
            ("regex", Value::String(pattern)) => Regex::new(pattern)
                .map(Matcher::Regex)
                .map_err(|e| format!("`regex` does not compile: {e}")),
            ("regex", _) => Err("`regex` takes a string".into()),
            ("contains", value) => Ok(Matcher::Contains(value.clone())),
            ("subset", Value::Array(values)) => Ok(Matcher::Subset(values.clone())),
            ("subset", _) => Err("`subset` takes an array".into()),
            ("absent", Value::Bool(true)) => Ok(Matcher::Absent),
            ("absent", _) => Err("`absent` takes `true`".into()),
            (other, _) => Err(format!("unknown matcher `{other}` (known: {KEYS})")),
        }
    }

    /// Check an actual value (`None` when the field is missing). `Err` says what was found.
    pub fn check(&self, actual: Option<&Value>) -> Result<(), String> {
        let actual = actual.filter(|v| !v.is_null());
        let Some(actual) = actual else {
            return match self {
                Matcher::Absent => Ok(()),
                Matcher::Equals(_) | Matcher::OneOf(_) => Err(format!("missing, expected {self}")),
                _ => Err(format!("missing, expected a value {self}")),
            };
        };
        let found = || excerpt(&actual.to_string(), 80);
        let ok = match self {
            Matcher::Equals(expected) => same(actual, expected),
            Matcher::OneOf(values) => values.iter().any(|v| same(actual, v)),
            Matcher::Regex(regex) => match actual.as_str() {
                Some(text) => regex.is_match(text),
                None => return Err(format!("{} is not a string, expected {self}", found())),
            },
            Matcher::Contains(expected) => match (actual, expected) {
                (Value::String(text), Value::String(part)) => text.contains(part.as_str()),
                (Value::Array(items), expected) => items.iter().any(|item| same(item, expected)),
                _ => return Err(format!("{} cannot contain {}", found(), expected)),
            },
            Matcher::Subset(expected) => match actual {
                Value::Array(items) => expected.iter().all(|e| items.iter().any(|item| same(item, e))),
                _ => return Err(format!("{} is not an array, expected {self}", found())),
            },
            Matcher::Absent => false,
        };
        if ok {
            Ok(())
        } else {
            Err(format!("{} {}", found(), self.failure()))
        }
    }

    /// What a value that fails this matcher does, after the value: "is not 3", "does not
    /// contain \"S3.8\"".
    fn failure(&self) -> String {
        match self {
            Matcher::Equals(_) | Matcher::OneOf(_) => format!("is not {self}"),
            Matcher::Regex(regex) => format!("does not match /{}/", regex.as_str()),
            Matcher::Contains(value) => format!("does not contain {value}"),
            Matcher::Subset(values) => format!("does not hold all of [{}]", list(values)),
            Matcher::Absent => "is present, expected absent".to_string(),
        }
    }
}

impl fmt::Display for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Matcher::Equals(value) => write!(f, "{value}"),
            Matcher::OneOf(values) => write!(f, "one of {}", list(values)),
            Matcher::Regex(regex) => write!(f, "matching /{}/", regex.as_str()),
            Matcher::Contains(value) => write!(f, "containing {value}"),
            Matcher::Subset(values) => write!(f, "holding all of [{}]", list(values)),
            Matcher::Absent => write!(f, "absent"),
        }
    }
}

/// Values as a matcher lists them: `"a", 2`.
fn list(values: &[Value]) -> String {
    values.iter().map(Value::to_string).collect::<Vec<_>>().join(", ")
}

/// JSON equality where numbers compare by value (1 == 1.0) at any depth.
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x == y || x.as_f64().is_some_and(|x| y.as_f64() == Some(x)),
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same(a, b)),
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}

/// Matchers for named fields of a JSON object, e.g. a tool call's arguments.
#[derive(Debug, Clone, Default)]
pub struct FieldMatchers {
    fields: Vec<(String, Matcher)>,
}

impl FieldMatchers {
    /// Read `{"field": matcher, …}`; a field may be a dotted path (`resource.id`).
    pub fn parse(spec: &Map<String, Value>) -> Result<FieldMatchers, String> {
        let mut fields = Vec::with_capacity(spec.len());
        for (field, matcher) in spec {
            let matcher = Matcher::parse(matcher).map_err(|e| format!("field `{field}`: {e}"))?;
            fields.push((field.clone(), matcher));
        }
        Ok(FieldMatchers { fields })
    }

    /// Check every field of `actual`; the first failure names the field.
    pub fn check(&self, actual: &Value) -> Result<(), String> {
        for (field, matcher) in &self.fields {
            matcher
                .check(lookup(actual, field))
                .map_err(|e| format!("`{field}` {e}"))?;
        }
        Ok(())
    }
}

/// The value at a dotted path; an array index is a number segment (`args.0`).
fn lookup<'a>(value: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(value, |value, segment| match value {
        Value::Object(map) => map.get(segment),
        Value::Array(items) => segment.parse::<usize>().ok().and_then(|i| items.get(i)),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(spec: Value, actual: Value) -> Result<(), String> {
        Matcher::parse(&spec).unwrap().check(Some(&actual))
    }

    #[test]
    fn each_matcher_accepts_and_rejects() {
        assert!(check(json!("suppress"), json!("suppress")).is_ok());
        assert!(check(json!("suppress"), json!("Suppress")).is_err());
        assert!(check(json!(1), json!(1.0)).is_ok());
        assert!(check(json!({"equals": {"a": [1]}}), json!({"a": [1.0]})).is_ok());
        assert!(check(json!({"one_of": ["a", "b"]}), json!("b")).is_ok());
        assert!(check(json!({"one_of": ["a", "b"]}), json!("c")).is_err());
        assert!(check(json!({"regex": "^CIS\\.?1\\.\\d+$"}), json!("CIS.1.14")).is_ok());
        assert!(check(json!({"regex": "^EC2\\.19$"}), json!("EC2.2")).is_err());
        assert!(check(json!({"contains": "securityhub"}), json!("arn:aws:securityhub:x")).is_ok());
        assert!(check(json!({"contains": "x"}), json!(["x", "y"])).is_ok());
        assert!(check(json!({"contains": "z"}), json!(["x", "y"])).is_err());
        assert!(check(json!({"subset": ["a", "c"]}), json!(["c", "b", "a"])).is_ok());
        assert!(check(json!({"subset": ["a", "d"]}), json!(["c", "b", "a"])).is_err());
        assert!(check(json!({"subset": []}), json!([])).is_ok());
    }

    #[test]
    fn type_mismatches_and_missing_fields_say_what_was_found() {
        let err = check(json!({"regex": "x"}), json!(5)).unwrap_err();
        assert!(err.contains("not a string"), "{err}");
        let err = check(json!({"subset": ["a"]}), json!("a")).unwrap_err();
        assert!(err.contains("not an array"), "{err}");
        let err = Matcher::parse(&json!("a")).unwrap().check(None).unwrap_err();
        assert_eq!(err, "missing, expected \"a\"");
        assert!(Matcher::parse(&json!({"absent": true})).unwrap().check(None).is_ok());
        assert!(Matcher::parse(&json!({"absent": true}))
            .unwrap()
            .check(Some(&json!(null)))
            .is_ok());
        assert!(Matcher::parse(&json!({"absent": true}))
            .unwrap()
            .check(Some(&json!("x")))
            .is_err());
    }

    #[test]
    fn a_failure_reads_as_a_sentence_about_the_value() {
        let failures = [
            (
                json!({"one_of": ["a", "b"]}),
                json!("c"),
                "\"c\" is not one of \"a\", \"b\"",
            ),
            (
                json!({"regex": "^EC2\\.19$"}),
                json!("EC2.2"),
                "\"EC2.2\" does not match /^EC2\\.19$/",
            ),
            (
                json!({"contains": "S3.8"}),
                json!(["S3.9"]),
                "[\"S3.9\"] does not contain \"S3.8\"",
            ),
            (
                json!({"subset": ["a", "d"]}),
                json!(["a"]),
                "[\"a\"] does not hold all of [\"a\", \"d\"]",
            ),
            (json!({"absent": true}), json!("x"), "\"x\" is present, expected absent"),
        ];
        for (spec, actual, reason) in failures {
            assert_eq!(check(spec, actual).unwrap_err(), reason);
        }
        let missing = |spec: Value| Matcher::parse(&spec).unwrap().check(None).unwrap_err();
        assert_eq!(
            missing(json!({"contains": "x"})),
            "missing, expected a value containing \"x\""
        );
        assert_eq!(missing(json!({"one_of": [1, 2]})), "missing, expected one of 1, 2");
    }

    #[test]
    fn bad_matchers_are_rejected_with_a_reason() {
        let err = Matcher::parse(&json!({"a": 1, "b": 2})).unwrap_err();
        assert!(err.contains("exactly one key"), "{err}");
        assert!(Matcher::parse(&json!({"regex": "("}))
            .unwrap_err()
            .contains("does not compile"));
        assert!(Matcher::parse(&json!({"one_of": []})).is_err());
        assert!(Matcher::parse(&json!({"startswith": "x"}))
            .unwrap_err()
            .contains("unknown matcher `startswith`"));
    }

    #[test]
    fn fields_follow_dotted_paths() {
        let spec = json!({"controlId": "EC2.19", "condition.tags.0": {"regex": "env"}, "note": {"absent": true}});
        let matchers = FieldMatchers::parse(spec.as_object().unwrap()).unwrap();
        assert!(matchers
            .check(&json!({"controlId": "EC2.19", "condition": {"tags": ["env=dev"]}}))
            .is_ok());
        let err = matchers
            .check(&json!({"controlId": "EC2.2", "condition": {"tags": ["env=dev"]}}))
            .unwrap_err();
        assert_eq!(err, "`controlId` \"EC2.2\" is not \"EC2.19\"");
    }
}
