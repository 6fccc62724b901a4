//! `promptgate record`: a production miss becomes a labelled case of a suite, so the same
//! mistake can never ship again.
//!
//! A finding (or a wrong answer of a saved run) is redacted, checked against the suite (its
//! expectation grades, it renders in every prompt version, it is not already a case) and written
//! as one new `<id>.json` in the suite's case folder: a temporary file in that folder, then a link
//! that fails rather than replace an existing file, so a reader or a concurrent `record` never
//! sees half a case and never loses one.

pub mod fingerprint;
pub mod from_run;
pub mod input;
pub mod redact;

use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::{json, Map, Value};

use crate::case::{self, Case, LoadedCase};
use crate::config::{Config, GraderConfig};
use crate::error::Error;
use crate::grader::Graders;
use crate::prompt::Prompt;
use input::Finding;
use redact::{RedactionReport, Redactor};

/// The variable a recorded finding is stored in, and the one a `--rule` text is stored in.
pub const FINDING_VAR: &str = "finding";
pub const RULE_VAR: &str = "rule";

/// The version of `record --json` output.
///
/// Changelog: 1 — first version (`outcomes`: recorded, duplicate, conflict, skipped).
pub const RECORD_OUTPUT_SCHEMA_VERSION: u32 = 1;

/// What `record` was asked to write.
#[derive(Debug, Clone)]
pub struct RecordOptions {
    pub config_path: PathBuf,
    /// The suite the new case joins.
    pub suite: String,
    /// `--expect`: a label, or a JSON object for suites graded by something else.
    pub expect: String,
    pub rule: Option<String>,
    pub note: Option<String>,
    /// The case id; derived from the finding's topic and fingerprint when unset.
    pub id: Option<String>,
    /// Which finding of a multi-finding input (0-based).
    pub index: Option<usize>,
    /// One case per finding of a multi-finding input.
    pub all: bool,
    /// `false` with `--no-redact`.
    pub redact: bool,
    /// Write even when an equal case exists.
    pub force: bool,
}

/// What happened to one proposed case.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum RecordOutcome {
    /// Written.
    Recorded {
        id: String,
        path: PathBuf,
        fingerprint: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        redaction: Option<RedactionReport>,
    },
    /// An equal case with the same expectation exists.
    Duplicate { existing_id: String, existing: String },
    /// An equal case exists with another expectation.
    Conflict {
        existing_id: String,
        existing: String,
        existing_expect: Value,
        expect: Value,
    },
    /// A person declined the proposal (`--from-run`).
    Skipped { source_case: String },
}

impl RecordOutcome {
    /// Whether a case was written.
    pub fn is_recorded(&self) -> bool {
        matches!(self, RecordOutcome::Recorded { .. })
    }
}

/// Record the findings in `bytes` (read from `source`, `-` for stdin) as new cases.
pub fn record(options: &RecordOptions, bytes: &[u8], source: &Path) -> Result<Vec<RecordOutcome>, Error> {
    let mut target = Target::open(&options.config_path, &options.suite)?;
    let findings = input::parse(bytes, source)?;
    let chosen = choose(findings, options)?;
    target.check_variables(options.rule.is_some())?;
    let expect = target.expect_from(&options.expect)?;
    let mut outcomes = Vec::new();
    for finding in chosen {
        let mut vars = Map::new();
        vars.insert(FINDING_VAR.into(), finding.value.clone());
        if let Some(rule) = &options.rule {
            vars.insert(RULE_VAR.into(), Value::String(rule.clone()));
        }
        let draft = Draft {
            vars,
            expect: expect.clone(),
            note: options.note.clone(),
            topic: finding.topic(),
            source: json!({"kind": "production-miss", "input": {"envelope": finding.envelope, "format": finding.format}}),
            answers: Vec::new(),
        };
        outcomes.push(target.write(draft, options.id.as_deref(), options.redact, options.force)?);
    }
    Ok(outcomes)
}

/// One finding, or all with `--all`, or the one `--index` names.
fn choose(findings: Vec<Finding>, options: &RecordOptions) -> Result<Vec<Finding>, Error> {
    if let Some(index) = options.index {
        let count = findings.len();
        return findings.into_iter().nth(index).map(|f| vec![f]).ok_or_else(|| {
            Error::usage(format!(
                "--index {index} is out of range: the input holds {count} finding(s)"
            ))
            .with_hint(format!("indexes start at 0; the last is {}", count - 1))
        });
    }
    if findings.len() > 1 && !options.all {
        let listing: Vec<String> = findings
            .iter()
            .enumerate()
            .map(|(i, f)| format!("  [{i}] {} ({})", f.title(), f.topic().unwrap_or_else(|| "?".into())))
            .collect();
        return Err(Error::usage(format!(
            "the input holds {} findings; say which to record:\n{}",
            findings.len(),
            listing.join("\n")
        ))
        .with_hint("pass --index N for one of them, or --all for one case per finding (all with the same --expect)"));
    }
    if findings.len() > 1 && options.id.is_some() {
        return Err(Error::usage("--id names one case, but --all records several")
            .with_hint("drop --id: each case gets an id from its finding"));
    }
    Ok(findings)
}

/// A case before redaction and its id.
#[derive(Debug, Clone)]
struct Draft {
    vars: Map<String, Value>,
    expect: Value,
    note: Option<String>,
    /// The control id or finding type, for the id and the tags.
    topic: Option<String>,
    /// `source` without the fields `write` adds.
    source: Value,
    /// The model's wrong answers (`--from-run`), kept in `source` after redaction.
    answers: Vec<Value>,
}

/// The suite a case is written to, loaded once.
struct Target {
    suite_name: String,
    cases_dir: PathBuf,
    /// The project's folder (the config's): `$file` references stay inside it.
    root: PathBuf,
    /// The suite's cases with their fingerprints, and each case written since.
    existing: Vec<(LoadedCase, String)>,
    /// The suite's own prompt first, then its variants.
    prompts: Vec<Prompt>,
    graders: Graders,
    labels: Option<Vec<String>>,
    redactor: Redactor,
}

impl Target {
    fn open(config_path: &Path, suite_name: &str) -> Result<Target, Error> {
        let config = Config::load(config_path)?;
        let suite = crate::suite::find(&config, suite_name)?;
        let cases_dir = config.resolve(&suite.cases);
        // `./cases/x` reads worse than `cases/x` in every message and in the `path` printed.
        let cases_dir = cases_dir.strip_prefix(".").map(Path::to_path_buf).unwrap_or(cases_dir);
        if cases_dir.is_file() {
            return Err(Error::invalid(
                "config",
                &config.path,
                format!(" (field `suites.{suite_name}.cases`)"),
                format!(
                    "`{}` is a file; record writes one file per case into a folder",
                    cases_dir.display()
                ),
            )
            .with_hint("point `cases` at a folder and move the file into it: every .json/.jsonl file there is read"));
        }
        let existing = if cases_dir.exists() {
            case::load_cases(&cases_dir, &config.root)?
        } else {
            Vec::new()
        };
        let existing = with_fingerprints(existing);
        let mut prompts = vec![Prompt::load(&config.resolve(&suite.prompt))?];
        for path in suite.variants.values() {
            prompts.push(Prompt::load(&config.resolve(path))?);
        }
        let graders = Graders::new(&suite.grader, &prompts[0], &config)?;
        let labels = suite.grader.iter().find_map(|g| match g {
            GraderConfig::Label { labels, .. } => Some(labels.clone()),
            _ => None,
        });
        Ok(Target {
            suite_name: suite_name.to_string(),
            cases_dir,
            root: config.root.clone(),
            existing,
            prompts,
            graders,
            labels,
            redactor: redactor(&config)?,
        })
    }

    /// The prompt must read the finding, and the rule exactly when one is given.
    fn check_variables(&self, has_rule: bool) -> Result<(), Error> {
        let variables = self.prompts[0].variables();
        let prompt = &self.prompts[0].path;
        let reads = |name: &str| variables.iter().any(|v| v == name);
        let invalid = |message: String| Error::invalid("prompt", prompt, String::new(), message);
        if !reads(FINDING_VAR) {
            return Err(invalid(format!(
                "suite `{}`'s prompt reads {}, not `{FINDING_VAR}`",
                self.suite_name,
                variables
                    .iter()
                    .map(|v| format!("`{v}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
            .with_hint(
                "record stores the finding in the variable `finding`: record into a suite whose prompt reads it",
            ));
        }
        if reads(RULE_VAR) && !has_rule {
            return Err(Error::usage(format!(
                "suite `{}`'s prompt reads `{RULE_VAR}`: the case needs the rule the finding was judged by",
                self.suite_name
            ))
            .with_hint("pass --rule \"…\" with the suppression rule's text"));
        }
        if has_rule && !reads(RULE_VAR) {
            return Err(Error::usage(format!(
                "suite `{}`'s prompt does not read `{RULE_VAR}`: --rule would be stored but never shown to the model",
                self.suite_name
            ))
            .with_hint("drop --rule, or record into a suite whose prompt reads {{ rule }}"));
        }
        Ok(())
    }

    /// `--expect`: a JSON object as is, else a label of the suite's label grader.
    fn expect_from(&self, text: &str) -> Result<Value, Error> {
        let expect = if text.trim_start().starts_with('{') {
            serde_json::from_str::<Value>(text).map_err(|err| {
                Error::usage(format!(
                    "--expect is not a JSON object: {}",
                    crate::location::json_message(&err)
                ))
            })?
        } else {
            match &self.labels {
                Some(labels) => match labels.iter().find(|l| l.eq_ignore_ascii_case(text.trim())) {
                    Some(label) => json!({ "label": label }),
                    None => {
                        return Err(Error::usage(format!(
                            "`{text}` is not a label of suite `{}`",
                            self.suite_name
                        ))
                        .with_hint(format!("its labels: {}", labels.join(", "))))
                    }
                },
                None => {
                    return Err(Error::usage(format!(
                        "suite `{}` has no label grader, so --expect must be the case's JSON `expect` object",
                        self.suite_name
                    ))
                    .with_hint("e.g. --expect '{\"facts\": {\"required\": [\"EC2.19\"]}}'; the README's Graders section shows each one's `expect`"))
                }
            }
        };
        self.graders
            .check_expect(&expect)
            .map_err(|message| Error::usage(format!("--expect does not fit suite `{}`: {message}", self.suite_name)))?;
        Ok(expect)
    }

    /// Redact, de-duplicate, name, check and write one case.
    fn write(&mut self, draft: Draft, id: Option<&str>, redact: bool, force: bool) -> Result<RecordOutcome, Error> {
        let Draft {
            mut vars,
            mut expect,
            mut note,
            topic,
            mut source,
            mut answers,
        } = draft;
        let redaction = if redact {
            let mut vars_value = Value::Object(std::mem::take(&mut vars));
            let mut note_value = note.take().map(Value::String).unwrap_or(Value::Null);
            let mut answers_value = Value::Array(std::mem::take(&mut answers));
            let report = self
                .redactor
                .redact(&mut [&mut vars_value, &mut expect, &mut note_value, &mut answers_value]);
            vars = match vars_value {
                Value::Object(map) => map,
                _ => unreachable!("redaction keeps the shape"),
            };
            note = note_value.as_str().map(str::to_string);
            answers = match answers_value {
                Value::Array(items) => items,
                _ => unreachable!("redaction keeps the shape"),
            };
            Some(report)
        } else {
            None
        };

        let fingerprint = fingerprint::fingerprint(&vars);
        if let Some(outcome) = equal_in(&self.existing, &fingerprint, &expect, force) {
            return Ok(outcome);
        }

        source["recorded_at"] = json!(jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string());
        source["promptgate_version"] = json!(env!("CARGO_PKG_VERSION"));
        source["fingerprint"] = json!(fingerprint);
        source["redaction"] = match &redaction {
            Some(report) => json!(report),
            None => json!("off"),
        };
        if !answers.is_empty() {
            source["answers"] = Value::Array(answers);
        }
        let mut tags = vec!["production-miss".to_string()];
        tags.extend(topic.clone());
        let mut case = Case {
            id: String::new(),
            vars,
            expect,
            tags,
            source: Some(Box::new(source)),
            notes: note,
            attacker_fields: None,
        };

        let base_id = match id {
            Some(id) => {
                check_id(id)?;
                if let Some((other, _)) = self.existing.iter().find(|(l, _)| l.case.id == id) {
                    return Err(
                        Error::usage(format!("case id `{id}` is already used in {}", other.location()))
                            .with_hint("choose another --id, or leave it out to derive one from the finding"),
                    );
                }
                id.to_string()
            }
            None => derived_id(topic.as_deref(), &fingerprint),
        };
        case.id = base_id.clone();
        self.check_renders(&case)?;
        let mut attempt = 1;
        loop {
            let taken = self.existing.iter().any(|(l, _)| l.case.id == case.id);
            if !taken {
                let path = self.cases_dir.join(format!("{}.json", case.id));
                let text = serde_json::to_string_pretty(&case).map_err(|e| Error::internal(e.to_string()))? + "\n";
                if crate::fs::write_new(&path, &text)? {
                    let outcome = RecordOutcome::Recorded {
                        id: case.id.clone(),
                        path: path.clone(),
                        fingerprint: fingerprint.clone(),
                        redaction,
                    };
                    // A later finding of the same input is checked against this one too.
                    let loaded = LoadedCase {
                        case,
                        file: path,
                        line: None,
                    };
                    self.existing.push((loaded, fingerprint));
                    return Ok(outcome);
                }
                // Another `record` wrote this name first: the same case, or a name clash.
                let other = with_fingerprints(case::load_cases(&path, &self.root)?);
                if let Some(outcome) = equal_in(&other, &fingerprint, &case.expect, force) {
                    return Ok(outcome);
                }
                if id.is_some() {
                    return Err(
                        Error::usage(format!("`{}` was just written by another process", path.display()))
                            .with_hint("choose another --id"),
                    );
                }
            }
            attempt += 1;
            case.id = format!("{base_id}-{attempt}");
        }
    }

    /// The case renders in the suite's prompt and every variant.
    fn check_renders(&self, case: &Case) -> Result<(), Error> {
        let loaded = LoadedCase {
            case: case.clone(),
            file: self.cases_dir.join(format!("{}.json", case.id)),
            line: None,
        };
        for prompt in &self.prompts {
            prompt.render(&loaded)?;
        }
        Ok(())
    }
}

/// Each case with the fingerprint duplicates are found by.
fn with_fingerprints(cases: Vec<LoadedCase>) -> Vec<(LoadedCase, String)> {
    cases
        .into_iter()
        .map(|loaded| {
            let fingerprint = fingerprint::fingerprint(&loaded.case.vars);
            (loaded, fingerprint)
        })
        .collect()
}

/// The existing case with the same fingerprint, as a refusal (unless `force`).
fn equal_in(
    existing: &[(LoadedCase, String)],
    fingerprint: &str,
    expect: &Value,
    force: bool,
) -> Option<RecordOutcome> {
    if force {
        return None;
    }
    let (other, _) = existing.iter().find(|(_, f)| f == fingerprint)?;
    let existing_id = other.case.id.clone();
    let location = other.location();
    Some(if &other.case.expect == expect {
        RecordOutcome::Duplicate {
            existing_id,
            existing: location,
        }
    } else {
        RecordOutcome::Conflict {
            existing_id,
            existing: location,
            existing_expect: other.case.expect.clone(),
            expect: expect.clone(),
        }
    })
}

/// The redactor of a project: the built-in rules and the config's `[[record.redact]]`
/// patterns, as `record` applies them (and reports do under `--redact`).
pub fn redactor(config: &Config) -> Result<Redactor, Error> {
    Ok(Redactor::new(redact_patterns(config)?))
}

/// The config's extra redaction patterns (`[[record.redact]]`), compiled; a name of a
/// built-in rule is refused (names and regexes were checked when the config was loaded).
fn redact_patterns(config: &Config) -> Result<Vec<redact::Pattern>, Error> {
    (0..)
        .zip(&config.record.redact)
        .map(|(index, pattern): (usize, _)| {
            let field = |part: &str| format!("record.redact[{index}].{part}");
            if redact::BUILTIN_RULES.contains(&pattern.name.as_str()) {
                return Err(config
                    .field_error(field("name"), format!("`{}` is a built-in rule", pattern.name))
                    .with_hint("built-in rules always apply; give the extra pattern its own name"));
            }
            let regex =
                regex::Regex::new(&pattern.pattern).map_err(|e| config.field_error(field("pattern"), e.to_string()))?;
            Ok(redact::Pattern {
                name: pattern.name.clone(),
                regex,
            })
        })
        .collect()
}

/// A case id is also a file name: letters, digits, `.`, `_`, `-`, not starting with `.`.
fn check_id(id: &str) -> Result<(), Error> {
    let ok = !id.is_empty()
        && !id.starts_with('.')
        && id.len() <= 120
        && id.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
    if ok {
        Ok(())
    } else {
        Err(Error::usage(format!("`{id}` cannot be a case id"))
            .with_hint("use ASCII letters, digits, `.`, `_` and `-` (the id is also the file name)"))
    }
}

/// `miss-<topic>-<8 hex of the fingerprint>`, e.g. `miss-ec2-19-3f9a1c2b`.
fn derived_id(topic: Option<&str>, fingerprint: &str) -> String {
    let hash = fingerprint.trim_start_matches("sha256:");
    let short = &hash[..8.min(hash.len())];
    let mut slug = String::new();
    for c in topic.unwrap_or("").chars() {
        if c.is_ascii_alphanumeric() {
            slug.push(c.to_ascii_lowercase());
        } else if !slug.ends_with('-') && !slug.is_empty() {
            slug.push('-');
        }
    }
    let slug: String = slug.trim_end_matches('-').chars().take(64).collect();
    let slug = slug.trim_end_matches('-');
    if slug.is_empty() {
        format!("miss-{short}")
    } else {
        format!("miss-{slug}-{short}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_ids_name_the_topic_and_the_content() {
        let fingerprint = "sha256:3f9a1c2b00000000";
        assert_eq!(derived_id(Some("EC2.19"), fingerprint), "miss-ec2-19-3f9a1c2b");
        assert_eq!(
            derived_id(Some("UnauthorizedAccess:EC2/SSHBruteForce"), fingerprint),
            "miss-unauthorizedaccess-ec2-sshbruteforce-3f9a1c2b"
        );
        assert_eq!(derived_id(Some("::"), fingerprint), "miss-3f9a1c2b");
        assert_eq!(derived_id(None, fingerprint), "miss-3f9a1c2b");
        assert!(check_id("miss-ec2-19-3f9a1c2b").is_ok());
        for bad in ["", ".hidden", "a/b", "../x", "日本"] {
            assert!(check_id(bad).is_err(), "{bad}");
        }
    }
}
