//! `promptgate record`: production misses become labelled cases.

use std::io::{BufRead, Read};
use std::path::{Path, PathBuf};

use super::Console;
use crate::error::Error;
use crate::exit_code;
use crate::fs::FsError;
use crate::record::from_run::{self, Decision, FromRunOptions};
use crate::record::{self, RecordOptions, RecordOutcome};

/// What `record` is asked (the command line's flags; see `promptgate record --help`).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RecordCommand {
    pub config_path: PathBuf,
    pub suite: String,
    /// A finding's file, or `-` for stdin.
    pub finding: Option<PathBuf>,
    /// A run record whose misses are proposed as cases.
    pub from_run: Option<PathBuf>,
    pub expect: Option<String>,
    pub rule: Option<String>,
    pub note: Option<String>,
    pub id: Option<String>,
    pub index: Option<usize>,
    pub all: bool,
    pub wrong_only: bool,
    pub cases: Vec<String>,
    /// Record every proposal with `expect`, without asking.
    pub yes: bool,
    pub no_redact: bool,
    pub force: bool,
    /// Print the outcome as JSON.
    pub json: bool,
}

/// `promptgate record`: a finding (or the misses of a run) becomes a labelled case of a suite.
/// `stdin` is read for `--finding -` and, on a terminal, for the labels a person confirms.
pub fn record(
    args: &RecordCommand,
    stdin: &mut dyn BufRead,
    stdin_is_terminal: bool,
    console: &mut Console,
) -> Result<i32, Error> {
    let outcomes = match (&args.finding, &args.from_run) {
        (Some(finding), _) => {
            let expect = args.expect.clone().ok_or_else(|| {
                Error::usage("--finding needs --expect: the answer the model should have given")
                    .with_hint("e.g. --expect notify (a label of the suite), or the case's JSON `expect` object")
            })?;
            let options = RecordOptions {
                config_path: args.config_path.clone(),
                suite: args.suite.clone(),
                expect,
                rule: args.rule.clone(),
                note: args.note.clone(),
                id: args.id.clone(),
                index: args.index,
                all: args.all,
                redact: !args.no_redact,
                force: args.force,
            };
            let (bytes, source) = read_finding(finding, stdin, stdin_is_terminal, console)?;
            record::record(&options, &bytes, &source)?
        }
        (None, Some(run_path)) => {
            if args.expect.is_some() && !args.yes {
                return Err(
                    Error::usage("with --from-run, --expect applies only together with --yes")
                        .with_hint("without --yes each proposal's label is asked for on the terminal"),
                );
            }
            let options = FromRunOptions {
                config_path: args.config_path.clone(),
                run_path: run_path.clone(),
                suite: args.suite.clone(),
                wrong_only: args.wrong_only,
                cases: args.cases.clone(),
                redact: !args.no_redact,
                force: args.force,
            };
            let (proposals, notes) = from_run::propose(&options)?;
            for note in &notes {
                console.note(&format!("note: {note}"));
            }
            if proposals.is_empty() {
                console.note(&format!(
                    "nothing to propose: no case of the run has a {} answer",
                    if args.wrong_only {
                        "wrong"
                    } else {
                        "wrong or unreadable"
                    }
                ));
                return Ok(exit_code::SUCCESS);
            }
            if args.yes {
                let expect = args.expect.clone().unwrap_or_default();
                from_run::record_proposals(&options, proposals, |_, _| Ok(Decision::Record(expect.clone())))?
            } else if stdin_is_terminal {
                from_run::record_proposals(&options, proposals, |proposal, labels| {
                    from_run::ask(stdin, console.notes(), proposal, labels)
                })?
            } else {
                return Err(Error::usage(format!(
                    "{} proposal(s) need a person to confirm their label, and stdin is not a terminal",
                    proposals.len()
                ))
                .with_hint("run it in a terminal, or pass --yes --expect LABEL (with --case ID to pick cases)"));
            }
        }
        (None, None) => {
            return Err(Error::usage("record needs --finding FILE or --from-run RUN.json")
                .with_hint("e.g. promptgate record --suite triage --finding finding.json --expect notify"))
        }
    };
    print_outcomes(args, &outcomes, console)
}

/// `--finding FILE|-`: at most one byte more than `record` accepts, so that a too-large input is
/// refused without reading all of it.
fn read_finding(
    path: &Path,
    stdin: &mut dyn BufRead,
    stdin_is_terminal: bool,
    console: &mut Console,
) -> Result<(Vec<u8>, PathBuf), Error> {
    let limit = record::input::MAX_INPUT_BYTES as u64 + 1;
    let mut bytes = Vec::new();
    if path.as_os_str() == "-" {
        let source = PathBuf::from("<stdin>");
        if stdin_is_terminal {
            console.note("reading the finding from the terminal: paste it, then press Ctrl-D");
        }
        stdin
            .take(limit)
            .read_to_end(&mut bytes)
            .map_err(|e| FsError::read("read", &source, e))?;
        return Ok((bytes, source));
    }
    let file = std::fs::File::open(path).map_err(|source| FsError::Read {
        action: "read",
        path: path.to_path_buf(),
        hint: (source.kind() == std::io::ErrorKind::NotFound)
            .then(|| "pass the finding's file, or `-` to read it from stdin".to_string()),
        source,
    })?;
    file.take(limit)
        .read_to_end(&mut bytes)
        .map_err(|source| FsError::read("read", path, source))?;
    Ok((bytes, path.to_path_buf()))
}

fn print_outcomes(args: &RecordCommand, outcomes: &[RecordOutcome], console: &mut Console) -> Result<i32, Error> {
    let refused = outcomes
        .iter()
        .any(|o| matches!(o, RecordOutcome::Duplicate { .. } | RecordOutcome::Conflict { .. }));
    if args.json {
        let value = serde_json::json!({"schema_version": record::RECORD_OUTPUT_SCHEMA_VERSION, "outcomes": outcomes});
        console.line(&serde_json::to_string_pretty(&value).map_err(|e| Error::internal(e.to_string()))?)?;
    } else {
        for outcome in outcomes {
            match outcome {
                RecordOutcome::Recorded { id, path, redaction, .. } => {
                    let how = match redaction {
                        Some(report) if report.replaced.is_empty() => "redacted: nothing to replace".to_string(),
                        Some(report) => format!(
                            "redacted: {}",
                            report
                                .replaced
                                .iter()
                                .map(|(rule, count)| format!("{count} {rule}"))
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                        None => "not redacted".to_string(),
                    };
                    console.line(&format!("recorded case `{id}` in {} ({how})", path.display()))
                }
                RecordOutcome::Duplicate { existing_id, existing } => console.line(&format!(
                    "not recorded: the same content with the same expectation is already case `{existing_id}` in {existing}"
                )),
                RecordOutcome::Conflict {
                    existing_id,
                    existing,
                    existing_expect,
                    expect,
                } => console.line(&format!(
                    "not recorded: case `{existing_id}` in {existing} has the same content but expects {existing_expect}, not {expect}"
                )),
                RecordOutcome::Skipped { source_case } => console.line(&format!("skipped case `{source_case}`")),
            }?;
        }
        if outcomes.iter().any(RecordOutcome::is_recorded) {
            console.note(&format!(
                "next: promptgate run --suite {}   (the new case runs with the suite; the gate reports it as new)",
                args.suite
            ));
        }
        if refused {
            console.note("hint: --force writes it anyway; if the existing case's expectation is wrong, correct that case instead");
        }
    }
    Ok(if refused {
        exit_code::DUPLICATE
    } else {
        exit_code::SUCCESS
    })
}
