//! Baselines: the per-case outcomes of an accepted run, in `baselines/<suite>/<model>.json`.
//!
//! Written for review: stable key order and one case per line, so that the git diff of a
//! baseline change shows which cases moved. Writes are atomic (temp file + rename).
//!
//! Changelog: 1 — first version. 2 — `model_versions`: the versions the provider said answered
//! the baseline's samples, with counts (see `model_version`); version 1 is still read, as a
//! baseline whose versions are unknown. 3 — `answers` on each case: its most common answers
//! (at most two groups of samples with the same grade and reason, each with a count, the
//! reason and the first answer, cut to 160 characters: at most 640 characters per case line),
//! so that a failed gate can show what the baseline answered; versions 1 and 2 are read,
//! without them.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::answers::{baseline_groups, AnswerGroup, PastCase, BASELINE_EXCERPT_CHARS, BASELINE_GROUPS};
use crate::error::{self, Error};
use crate::fs::write_atomic;
use crate::model_version::{VersionCount, MAX_VERSIONS};
use crate::run_record::SuiteResult;
use crate::stats::Estimate;

/// The baseline format version this build reads and writes.
pub const BASELINE_SCHEMA_VERSION: u32 = 3;

/// The oldest format still read: version 1 lacks only `model_versions`, version 2 `answers`.
const OLDEST_READ: u32 = 1;

/// A stored baseline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Baseline {
    pub schema_version: u32,
    pub suite: String,
    pub model: String,
    pub model_id: String,
    pub provider: String,
    pub prompt_sha256: String,
    pub samples_per_case: u32,
    pub accuracy: Option<Estimate>,
    /// Samples per model version the provider named; empty when it named none, or in a
    /// version-1 baseline.
    #[serde(default)]
    pub model_versions: Vec<VersionCount>,
    pub created_at: String,
    pub promptgate_version: String,
    pub cases: Vec<BaselineCase>,
}

/// One case of a baseline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BaselineCase {
    pub id: String,
    pub correct: u32,
    /// Valid samples.
    pub samples: u32,
    pub errors: u32,
    /// The most common answers (see [`crate::answers::baseline_groups`]); empty when the run
    /// kept none, or in a baseline older than version 3.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub answers: Vec<AnswerGroup>,
}

impl BaselineCase {
    /// What a gate shows of this case next to the run's.
    pub fn past(&self) -> PastCase {
        PastCase {
            correct: self.correct,
            samples: self.samples,
            answers: self.answers.clone(),
        }
    }
}

impl Baseline {
    /// The baseline of one suite × model result.
    pub fn from_result(result: &SuiteResult, created_at: &str) -> Baseline {
        Baseline {
            schema_version: BASELINE_SCHEMA_VERSION,
            suite: result.suite.clone(),
            model: result.model.clone(),
            model_id: result.model_id.clone(),
            provider: result.provider.clone(),
            prompt_sha256: result.prompt_sha256.clone(),
            samples_per_case: result.samples_per_case,
            accuracy: result.accuracy,
            model_versions: result.model_versions.clone(),
            created_at: created_at.to_string(),
            promptgate_version: env!("CARGO_PKG_VERSION").to_string(),
            cases: result
                .per_case
                .iter()
                .map(|c| BaselineCase {
                    id: c.id.to_string(),
                    correct: c.correct,
                    samples: c.samples,
                    errors: c.errors,
                    answers: c
                        .detail
                        .as_ref()
                        .map_or_else(Vec::new, |detail| baseline_groups(&detail.answers)),
                })
                .collect(),
        }
    }

    /// Where the baseline of `suite` × `model` lives under `dir`.
    pub fn path(dir: &Path, suite: &str, model: &str) -> PathBuf {
        dir.join(suite).join(format!("{model}.json"))
    }

    /// The review-friendly text: header fields in a fixed order, then one case per line.
    pub fn to_text(&self) -> Result<String, Error> {
        let mut out = String::from("{\n");
        let header: [(&str, String); 11] = [
            ("schema_version", compact(&self.schema_version)?),
            ("suite", compact(&self.suite)?),
            ("model", compact(&self.model)?),
            ("model_id", compact(&self.model_id)?),
            ("provider", compact(&self.provider)?),
            ("prompt_sha256", compact(&self.prompt_sha256)?),
            ("samples_per_case", compact(&self.samples_per_case)?),
            ("accuracy", compact(&self.accuracy)?),
            ("model_versions", compact(&self.model_versions)?),
            ("created_at", compact(&self.created_at)?),
            ("promptgate_version", compact(&self.promptgate_version)?),
        ];
        for (key, value) in header {
            out.push_str(&format!("  \"{key}\": {value},\n"));
        }
        out.push_str("  \"cases\": [\n");
        for (index, case) in self.cases.iter().enumerate() {
            let comma = if index + 1 < self.cases.len() { "," } else { "" };
            out.push_str(&format!("    {}{comma}\n", compact(case)?));
        }
        out.push_str("  ]\n}\n");
        Ok(out)
    }

    /// Write atomically.
    pub fn save(&self, path: &Path) -> Result<(), Error> {
        Ok(write_atomic(path, &self.to_text()?)?)
    }

    /// Read a baseline; a missing file says which command creates it.
    pub fn load(path: &Path, suite: &str, model: &str) -> Result<Baseline, Error> {
        if !path.exists() {
            return Err(Error::usage(format!(
                "no baseline for suite `{suite}` on model `{model}` at `{}`",
                path.display()
            ))
            .with_hint(format!(
                "create it with: promptgate baseline update --suite {} --model {model}",
                // A robustness family (`triage~injection`) is baselined with its suite.
                suite.split('~').next().unwrap_or(suite)
            )));
        }
        let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        if size > MAX_BASELINE_BYTES {
            return Err(Error::invalid(
                "baseline",
                path,
                "",
                format!("the file has {size} bytes; a baseline is at most {MAX_BASELINE_BYTES}"),
            )
            .with_hint("regenerate it with `promptgate baseline update`"));
        }
        let text = crate::fs::read_to_string(path, "baseline")?;
        Baseline::parse(path, &text, suite, model)
    }

    /// Parse and validate baseline text; `path` names it in messages.
    pub fn parse(path: &Path, text: &str, suite: &str, model: &str) -> Result<Baseline, Error> {
        let baseline: Baseline = serde_json::from_str(text).map_err(|e| {
            Error::invalid(
                "baseline",
                path,
                crate::location::json_location(&e),
                crate::location::json_message(&e),
            )
            .with_hint("regenerate it with `promptgate baseline update`")
        })?;
        let readable = (OLDEST_READ..=BASELINE_SCHEMA_VERSION).contains(&baseline.schema_version);
        if !readable {
            error::check_schema_version("baseline", path, baseline.schema_version, BASELINE_SCHEMA_VERSION)?;
        }
        baseline.validate(path, suite, model)?;
        Ok(baseline)
    }

    /// Check every field: a baseline is input like any other, and a wrong count would turn
    /// into a false regression (`correct > samples`) or an allocation of gigabytes.
    fn validate(&self, path: &Path, suite: &str, model: &str) -> Result<(), Error> {
        let fail = |field: String, message: String| {
            Error::invalid("baseline", path, format!(" (field `{field}`)"), message).with_hint(format!(
                "regenerate it with: promptgate baseline update --suite {suite} --model {model}"
            ))
        };
        if self.suite != suite {
            return Err(fail(
                "suite".into(),
                format!("this is the baseline of suite `{}`, not `{suite}`", self.suite),
            ));
        }
        if self.model != model {
            return Err(fail(
                "model".into(),
                format!("this is the baseline of model `{}`, not `{model}`", self.model),
            ));
        }
        let k = self.samples_per_case;
        if !(1..=MAX_SAMPLES).contains(&k) {
            return Err(fail(
                "samples_per_case".into(),
                format!("{k} is not between 1 and {MAX_SAMPLES}"),
            ));
        }
        if let Some(a) = &self.accuracy {
            let shares = [("point", a.point), ("lower", a.lower), ("upper", a.upper)];
            for (name, value) in shares {
                if !(0.0..=1.0).contains(&value) {
                    return Err(fail(
                        format!("accuracy.{name}"),
                        format!("{value} is not a share between 0 and 1"),
                    ));
                }
            }
            if !(a.lower <= a.point && a.point <= a.upper) {
                return Err(fail(
                    "accuracy".into(),
                    "the interval does not hold its point (lower ≤ point ≤ upper)".into(),
                ));
            }
            if !(a.confidence_level > 0.0 && a.confidence_level < 1.0) {
                return Err(fail(
                    "accuracy.confidence_level".into(),
                    format!("{} is not between 0 and 1", a.confidence_level),
                ));
            }
            if !(a.standard_error >= 0.0 && a.standard_error.is_finite()) {
                return Err(fail(
                    "accuracy.standard_error".into(),
                    format!("{} is not a standard error", a.standard_error),
                ));
            }
        }
        if self.model_versions.len() > MAX_VERSIONS {
            return Err(fail(
                "model_versions".into(),
                format!("{} versions; at most {MAX_VERSIONS}", self.model_versions.len()),
            ));
        }
        for (index, count) in self.model_versions.iter().enumerate() {
            if !count.is_clean() || count.samples == 0 {
                return Err(fail(
                    format!("model_versions[{index}]"),
                    format!(
                        "`{}` is not a version this promptgate writes (empty, control characters, over {} characters, or no samples)",
                        crate::excerpt::excerpt(&count.model, 80),
                        crate::model_version::MAX_VERSION_CHARS
                    ),
                ));
            }
        }
        if self.cases.len() > MAX_CASES {
            return Err(fail(
                "cases".into(),
                format!("{} cases; at most {MAX_CASES}", self.cases.len()),
            ));
        }
        let mut seen = std::collections::HashSet::with_capacity(self.cases.len());
        for (index, case) in self.cases.iter().enumerate() {
            let field = |name: &str| format!("cases[{index}].{name}");
            if case.id.is_empty() || !seen.insert(case.id.as_str()) {
                return Err(fail(
                    field("id"),
                    format!("case id `{}` is empty or appears twice", case.id),
                ));
            }
            if case.samples.saturating_add(case.errors) > k {
                return Err(fail(
                    field("samples"),
                    format!(
                        "{} valid samples and {} errors are more than samples_per_case = {k}",
                        case.samples, case.errors
                    ),
                ));
            }
            if case.correct > case.samples {
                return Err(fail(
                    field("correct"),
                    format!("{} correct of {} valid samples", case.correct, case.samples),
                ));
            }
            check_answers(&case.answers, case.samples).map_err(|message| fail(field("answers"), message))?;
        }
        Ok(())
    }
}

/// The answers of a case as this promptgate writes them: at most [`BASELINE_GROUPS`] groups,
/// each of at least one sample, no more samples than the case has, texts within their cap (a
/// character for the `…` of a cut).
fn check_answers(answers: &[AnswerGroup], samples: u32) -> Result<(), String> {
    if answers.len() > BASELINE_GROUPS {
        return Err(format!("{} answer groups; at most {BASELINE_GROUPS}", answers.len()));
    }
    let total: u64 = answers.iter().map(|a| u64::from(a.count)).sum();
    if answers.iter().any(|a| a.count == 0) || total > u64::from(samples) {
        return Err(format!(
            "answer groups count {total} samples (or an empty group) of {samples} valid samples"
        ));
    }
    let too_long = |text: &str| text.chars().count() > BASELINE_EXCERPT_CHARS + 1;
    if answers.iter().any(|a| too_long(&a.reason) || too_long(&a.excerpt)) {
        return Err(format!(
            "an answer or reason is longer than {BASELINE_EXCERPT_CHARS} characters"
        ));
    }
    Ok(())
}

/// The largest baseline file read: 100,000 cases take about 6 MB.
const MAX_BASELINE_BYTES: u64 = 64 * 1024 * 1024;
/// Most cases in a baseline.
const MAX_CASES: usize = 1_000_000;
/// Most samples per case, as `--samples` allows.
const MAX_SAMPLES: u32 = 1000;

/// Compact JSON of any serde value.
fn compact<T: Serialize>(value: &T) -> Result<String, Error> {
    serde_json::to_string(value).map_err(|e| Error::internal(format!("failed to serialize a baseline: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Baseline {
        Baseline {
            schema_version: BASELINE_SCHEMA_VERSION,
            suite: "triage".into(),
            model: "m".into(),
            model_id: "gemma".into(),
            provider: "local".into(),
            prompt_sha256: "ab".into(),
            samples_per_case: 3,
            accuracy: None,
            model_versions: vec![VersionCount {
                model: "gemma-3-270m".into(),
                fingerprint: Some("b6110-7b5ba1a".into()),
                samples: 5,
            }],
            created_at: "2026-11-23T00:00:00Z".into(),
            promptgate_version: "0.1.0".into(),
            cases: vec![
                BaselineCase {
                    id: "a".into(),
                    correct: 2,
                    samples: 3,
                    errors: 0,
                    answers: vec![AnswerGroup {
                        count: 2,
                        outcome: crate::grader::Outcome::Correct,
                        reason: "answered `suppress`".into(),
                        excerpt: "{\"decision\": \"suppress\"}".into(),
                    }],
                },
                BaselineCase {
                    id: "b".into(),
                    correct: 0,
                    samples: 2,
                    errors: 1,
                    answers: Vec::new(),
                },
            ],
        }
    }

    #[test]
    fn one_case_per_line_and_round_trips() {
        let text = sample().to_text().unwrap();
        assert!(
            text.contains(
                "\n    {\"id\":\"a\",\"correct\":2,\"samples\":3,\"errors\":0,\"answers\":[{\"count\":2,\"outcome\":\"correct\",\"reason\":\"answered `suppress`\",\"excerpt\":\"{\\\"decision\\\": \\\"suppress\\\"}\"}]},\n"
            ),
            "{text}"
        );
        // A case without answers has none written: its line is the same as in version 2.
        assert!(
            text.contains("\n    {\"id\":\"b\",\"correct\":0,\"samples\":2,\"errors\":1}\n"),
            "{text}"
        );
        assert!(text.find("\"schema_version\"").unwrap() < text.find("\"suite\"").unwrap());
        let dir = tempfile::tempdir().unwrap();
        let path = Baseline::path(dir.path(), "triage", "m");
        sample().save(&path).unwrap();
        assert_eq!(Baseline::load(&path, "triage", "m").unwrap(), sample());
    }

    #[test]
    fn baselines_of_versions_1_and_2_are_read_without_what_they_lack() {
        let text = r#"{
  "schema_version": 1,
  "suite": "triage",
  "model": "m",
  "model_id": "gemma",
  "provider": "local",
  "prompt_sha256": "ab",
  "samples_per_case": 3,
  "accuracy": null,
  "created_at": "2026-11-23T00:00:00Z",
  "promptgate_version": "0.1.0",
  "cases": [
    {"id":"a","correct":2,"samples":3,"errors":0}
  ]
}
"#;
        let baseline = Baseline::parse(Path::new("b.json"), text, "triage", "m").unwrap();
        assert_eq!(baseline.schema_version, 1);
        assert!(baseline.model_versions.is_empty());
        // Version 2: versions, no answers.
        let two = text.replace("\"schema_version\": 1", "\"schema_version\": 2");
        let baseline = Baseline::parse(Path::new("b.json"), &two, "triage", "m").unwrap();
        assert!(baseline.cases[0].answers.is_empty());
        for version in [0, BASELINE_SCHEMA_VERSION + 1] {
            let text = text.replace("\"schema_version\": 1", &format!("\"schema_version\": {version}"));
            let err = Baseline::parse(Path::new("b.json"), &text, "triage", "m").unwrap_err();
            assert!(err.to_string().contains("schema_version"), "{err}");
        }
    }

    #[test]
    fn missing_baseline_names_the_command_that_creates_it() {
        let err = Baseline::load(Path::new("/nowhere/x.json"), "triage", "m").unwrap_err();
        assert_eq!(
            err.hint(),
            Some("create it with: promptgate baseline update --suite triage --model m")
        );
    }

    #[test]
    fn every_field_is_validated_and_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = Baseline::path(dir.path(), "triage", "m");
        let check = |edit: &dyn Fn(&mut Baseline), field: &str| {
            let mut b = sample();
            edit(&mut b);
            b.save(&path).unwrap();
            let err = Baseline::load(&path, "triage", "m").unwrap_err();
            assert!(
                err.to_string().contains(&format!("(field `{field}`)")),
                "{field}: {err}"
            );
            assert_eq!(err.exit_code(), crate::exit_code::BAD_INPUT);
        };
        check(&|b| b.cases[0].correct = 4_294_967_295, "cases[0].correct");
        check(&|b| b.cases[0].samples = 4_294_967_295, "cases[0].samples");
        check(&|b| b.cases[1].correct = 3, "cases[1].correct");
        check(&|b| b.cases[1].errors = 9, "cases[1].samples");
        check(&|b| b.cases[1].id = "a".into(), "cases[1].id");
        check(&|b| b.suite = "other".into(), "suite");
        check(&|b| b.model = "other".into(), "model");
        check(&|b| b.samples_per_case = 0, "samples_per_case");
        check(&|b| b.cases[0].answers[0].count = 4, "cases[0].answers");
        check(&|b| b.cases[0].answers[0].count = 0, "cases[0].answers");
        check(
            &|b| b.cases[0].answers[0].excerpt = "x".repeat(BASELINE_EXCERPT_CHARS + 2),
            "cases[0].answers",
        );
        check(
            &|b| {
                let mut group = b.cases[0].answers[0].clone();
                group.count = 1;
                b.cases[0].answers = vec![group; BASELINE_GROUPS + 1];
                b.cases[0].samples = 3;
            },
            "cases[0].answers",
        );
        check(
            &|b| b.model_versions[0].model = "a\u{1b}[2Jb".into(),
            "model_versions[0]",
        );
        check(&|b| b.model_versions[0].model = "m".repeat(201), "model_versions[0]");
        check(&|b| b.model_versions[0].samples = 0, "model_versions[0]");
        check(
            &|b| b.model_versions = vec![b.model_versions[0].clone(); MAX_VERSIONS + 1],
            "model_versions",
        );
        let estimate = |point: f64| Estimate {
            point,
            lower: 0.0,
            upper: 1.0,
            confidence_level: 0.95,
            standard_error: 0.1,
        };
        check(&|b| b.accuracy = Some(estimate(-5.0)), "accuracy.point");
        check(
            &|b| {
                b.accuracy = Some(Estimate {
                    lower: 0.9,
                    ..estimate(0.5)
                })
            },
            "accuracy",
        );
        check(
            &|b| {
                b.accuracy = Some(Estimate {
                    standard_error: -1.0,
                    ..estimate(0.5)
                })
            },
            "accuracy.standard_error",
        );
    }
}
