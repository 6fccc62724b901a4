//! `record --from-run`: the wrong answers of a saved run (a shadow suite of recent production
//! findings labelled with what the bot decided) proposed as new cases of another suite, each
//! confirmed by a person on the terminal or, for scripts, by `--yes --expect`.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, Write};
use std::path::PathBuf;

use serde_json::{json, Value};

use super::{input, Draft, RecordOutcome, Target, FINDING_VAR, RULE_VAR};
use crate::case::{self, Case, LoadedCase};
use crate::config::Config;
use crate::error::{self, Error};
use crate::excerpt::one_line;
use crate::fs::FsError;
use crate::grader::Outcome;
use crate::run_record::{Miss, RunRecord, RUN_RECORD_SCHEMA_VERSION};

/// Most wrong answers of one case a new case keeps (in its `source`): a run record is input,
/// and may list any number.
pub const MAX_MISSES_KEPT: usize = 20;

/// `--from-run`: which wrong answers to propose.
#[derive(Debug, Clone)]
pub struct FromRunOptions {
    pub config_path: PathBuf,
    pub run_path: PathBuf,
    /// The suite the new cases join.
    pub suite: String,
    /// Only samples graded wrong, not those whose output could not be read.
    pub wrong_only: bool,
    /// Only these case ids of the run (all when empty).
    pub cases: Vec<String>,
    pub redact: bool,
    pub force: bool,
}

/// A case of a run that a model got wrong, proposed as a new case of the target suite.
#[derive(Debug, Clone)]
pub struct Proposal {
    /// `suite` of the run result, and the case id there.
    pub source_suite: String,
    pub source_case: String,
    /// The models (and prompt versions) that got it wrong.
    pub models: Vec<String>,
    pub case: Case,
    pub misses: Vec<Miss>,
}

/// Read a run record and propose one case per case with a wrong answer.
pub fn propose(options: &FromRunOptions) -> Result<(Vec<Proposal>, Vec<String>), Error> {
    let text = crate::fs::read_to_string(&options.run_path, "run record")?;
    let run: RunRecord = serde_json::from_str(&text).map_err(|err| {
        Error::invalid(
            "run record",
            &options.run_path,
            crate::location::json_location(&err),
            crate::location::json_message(&err),
        )
        .with_hint("pass a JSON run record written by `promptgate run --out run.json`")
    })?;
    error::check_schema_version(
        "run record",
        &options.run_path,
        run.schema_version,
        RUN_RECORD_SCHEMA_VERSION,
    )?;
    let config = Config::load(&options.config_path)?;
    let target_dir = config.resolve(&crate::suite::find(&config, &options.suite)?.cases);

    let mut notes = Vec::new();
    let mut by_case: BTreeMap<(String, String), Proposal> = BTreeMap::new();
    // Each source suite's cases by id, loaded once: the misses of a run look their cases up.
    let mut sources: BTreeMap<String, HashMap<String, LoadedCase>> = BTreeMap::new();
    for result in &run.results {
        // A robustness family's misses are answers to generated variants, not production misses.
        if result.robustness.is_some() {
            continue;
        }
        let source_dir = match config.suites.get(&result.suite) {
            Some(source) => config.resolve(&source.cases),
            None => {
                notes.push(format!(
                    "suite `{}` of the run is not in the config: its misses are skipped",
                    result.suite
                ));
                continue;
            }
        };
        if source_dir == target_dir {
            notes.push(format!(
                "suite `{}` reads the same cases as `{}`: its misses are cases already",
                result.suite, options.suite
            ));
            continue;
        }
        if !sources.contains_key(&result.suite) {
            let loaded = case::load_cases(&source_dir, &config.root)?;
            let by_id = loaded.into_iter().map(|l| (l.case.id.clone(), l)).collect();
            sources.insert(result.suite.clone(), by_id);
        }
        let source_cases = &sources[&result.suite];
        for case_result in &result.per_case {
            if !options.cases.is_empty() && !options.cases.iter().any(|id| **id == *case_result.id) {
                continue;
            }
            let misses: Vec<Miss> = case_result
                .misses
                .iter()
                .filter(|m| !options.wrong_only || m.outcome == Outcome::Wrong)
                .take(MAX_MISSES_KEPT)
                .map(Miss::bounded)
                .collect();
            if misses.is_empty() {
                continue;
            }
            let Some(loaded) = source_cases.get(&*case_result.id) else {
                notes.push(format!(
                    "case `{}` of suite `{}` is no longer in its cases: skipped",
                    case_result.id, result.suite
                ));
                continue;
            };
            let key = (result.suite.clone(), case_result.id.to_string());
            let proposal = by_case.entry(key).or_insert_with(|| Proposal {
                source_suite: result.suite.clone(),
                source_case: case_result.id.to_string(),
                models: Vec::new(),
                case: loaded.case.clone(),
                misses: Vec::new(),
            });
            proposal.models.push(format!("{} on {}", result.label(), result.model));
            proposal.misses.extend(misses);
            proposal.misses.truncate(MAX_MISSES_KEPT);
        }
    }
    for id in &options.cases {
        if !by_case.keys().any(|(_, case)| case == id) {
            notes.push(format!(
                "case `{id}` has no {} answer in the run",
                if options.wrong_only {
                    "wrong"
                } else {
                    "wrong or unreadable"
                }
            ));
        }
    }
    Ok((by_case.into_values().collect(), notes))
}

/// What a person (or `--yes`) says about one proposal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Record it with this `--expect` text (a label or a JSON object).
    Record(String),
    Skip,
    /// Record nothing more.
    Stop,
}

/// Write the proposals a person (or `--yes`) confirmed. `decide` is asked for each proposal, with
/// the target suite's labels when it has a label grader.
pub fn record_proposals(
    options: &FromRunOptions,
    proposals: Vec<Proposal>,
    mut decide: impl FnMut(&Proposal, Option<&[String]>) -> Result<Decision, Error>,
) -> Result<Vec<RecordOutcome>, Error> {
    let mut target = Target::open(&options.config_path, &options.suite)?;
    let mut outcomes = Vec::new();
    for proposal in proposals {
        let expect_text = match decide(&proposal, target.labels.as_deref())? {
            Decision::Record(text) => text,
            Decision::Skip => {
                outcomes.push(RecordOutcome::Skipped {
                    source_case: proposal.source_case.clone(),
                });
                continue;
            }
            Decision::Stop => break,
        };
        let expect = target.expect_from(&expect_text)?;
        let topic = proposal.case.vars.get(FINDING_VAR).and_then(input::topic_of);
        let answers = proposal
            .misses
            .iter()
            .map(|m| json!({"outcome": m.outcome, "reason": m.reason, "excerpt": m.excerpt}))
            .collect();
        let draft = Draft {
            vars: proposal.case.vars.clone(),
            expect,
            note: proposal.case.notes.clone(),
            topic,
            source: json!({
                "kind": "production-miss",
                "from_run": {
                    "run": options.run_path.file_name().map(|n| n.to_string_lossy().into_owned()),
                    "suite": proposal.source_suite,
                    "case": proposal.source_case,
                    "models": proposal.models,
                }
            }),
            answers,
        };
        outcomes.push(target.write(draft, None, options.redact, options.force)?);
    }
    Ok(outcomes)
}

/// Ask on `output`, read on `input`: the interactive `decide` of [`record_proposals`]. A label
/// suite takes a label (Enter keeps the run's expectation); any other suite takes y/s. `s`
/// skips; `q` or the end of input stops.
pub fn ask<R: BufRead + ?Sized, W: Write + ?Sized>(
    input: &mut R,
    output: &mut W,
    proposal: &Proposal,
    labels: Option<&[String]>,
) -> Result<Decision, Error> {
    let io = |source: std::io::Error| Error::from(FsError::read("ask on", "the terminal", source));
    let expected = proposal.case.expect.clone();
    let current_label = expected.get("label").and_then(Value::as_str).map(str::to_string);
    writeln!(
        output,
        "\ncase `{}` of suite `{}` ({})",
        one_line(&proposal.source_case),
        one_line(&proposal.source_suite),
        one_line(&proposal.models.join(", "))
    )
    .map_err(io)?;
    if let Some(rule) = proposal.case.vars.get(RULE_VAR).and_then(Value::as_str) {
        writeln!(output, "  rule:     {}", one_line(rule)).map_err(io)?;
    }
    if let Some(finding) = proposal.case.vars.get(FINDING_VAR) {
        let title = finding
            .as_object()
            .and_then(|m| m.iter().find(|(k, _)| k.eq_ignore_ascii_case("title")))
            .and_then(|(_, v)| v.as_str())
            .unwrap_or("(no title)");
        writeln!(output, "  finding:  {}", one_line(title)).map_err(io)?;
    }
    writeln!(output, "  expected: {}", crate::digest::canonical_json(&expected)).map_err(io)?;
    for miss in proposal.misses.iter().take(3) {
        writeln!(
            output,
            "  answered: {} ({})",
            one_line(&miss.excerpt),
            one_line(&miss.reason)
        )
        .map_err(io)?;
    }
    loop {
        match (labels, &current_label) {
            (Some(labels), Some(current)) => write!(
                output,
                "label for the new case [{}] (Enter: {current}, s: skip, q: quit): ",
                labels.join("/")
            ),
            _ => write!(output, "record it with this expectation? [y/s/q]: "),
        }
        .map_err(io)?;
        output.flush().map_err(io)?;
        let mut line = String::new();
        if input.read_line(&mut line).map_err(io)? == 0 {
            writeln!(output).map_err(io)?;
            return Ok(Decision::Stop);
        }
        match line.trim() {
            "q" | "quit" => return Ok(Decision::Stop),
            "s" | "skip" | "n" | "no" => return Ok(Decision::Skip),
            "" | "y" | "yes" => {
                return Ok(Decision::Record(match &current_label {
                    Some(label) if labels.is_some() => label.clone(),
                    _ => expected.to_string(),
                }))
            }
            other => match labels.and_then(|l| l.iter().find(|l| l.eq_ignore_ascii_case(other))) {
                Some(label) => return Ok(Decision::Record(label.clone())),
                None => writeln!(output, "  `{other}` is not an answer here").map_err(io)?,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Map;

    fn proposal(expect: Value) -> Proposal {
        let mut vars = Map::new();
        vars.insert(RULE_VAR.into(), json!("EC2.19 は dev なら抑制"));
        vars.insert(
            FINDING_VAR.into(),
            json!({"Title": "EC2.19 Security groups should not allow unrestricted access"}),
        );
        Proposal {
            source_suite: "shadow".into(),
            source_case: "p7".into(),
            models: vec!["shadow on gemma-local".into()],
            case: Case {
                id: "p7".into(),
                vars,
                expect,
                tags: vec![],
                source: None,
                notes: None,
                attacker_fields: None,
            },
            misses: vec![Miss {
                sample: 0,
                outcome: Outcome::Wrong,
                reason: "expected notify, got suppress".into(),
                excerpt: "{\"decision\": \"suppress\"}".into(),
            }],
        }
    }

    fn answer(typed: &str, expect: Value, labels: Option<&[String]>) -> (Decision, String) {
        let mut input = std::io::Cursor::new(typed.as_bytes().to_vec());
        let mut output = Vec::new();
        let decision = ask(&mut input, &mut output, &proposal(expect), labels).unwrap();
        (decision, String::from_utf8(output).unwrap())
    }

    #[test]
    fn a_person_confirms_changes_skips_or_stops() {
        let labels = ["suppress".to_string(), "notify".to_string()];
        let notify = json!({"label": "notify"});
        let (decision, shown) = answer("\n", notify.clone(), Some(&labels));
        assert_eq!(decision, Decision::Record("notify".into()));
        assert!(
            shown.contains("case `p7` of suite `shadow` (shadow on gemma-local)"),
            "{shown}"
        );
        assert!(shown.contains("rule:     EC2.19 は dev なら抑制"), "{shown}");
        assert!(
            shown.contains("answered: {\"decision\": \"suppress\"} (expected notify, got suppress)"),
            "{shown}"
        );
        assert!(
            shown.contains("[suppress/notify] (Enter: notify, s: skip, q: quit)"),
            "{shown}"
        );

        // A typo is asked again; a label is taken case-insensitively.
        let (decision, shown) = answer("maybe\nSUPPRESS\n", notify.clone(), Some(&labels));
        assert_eq!(decision, Decision::Record("suppress".into()));
        assert!(shown.contains("`maybe` is not an answer here"), "{shown}");

        assert_eq!(answer("s\n", notify.clone(), Some(&labels)).0, Decision::Skip);
        assert_eq!(answer("q\n", notify.clone(), Some(&labels)).0, Decision::Stop);
        assert_eq!(answer("", notify, Some(&labels)).0, Decision::Stop);

        // A suite graded by something else: yes keeps the run's whole expectation.
        let facts = json!({"facts": {"required": ["EC2.19"]}});
        let (decision, shown) = answer("y\n", facts.clone(), None);
        assert_eq!(decision, Decision::Record(facts.to_string()));
        assert!(shown.contains("record it with this expectation? [y/s/q]"), "{shown}");
    }
}
