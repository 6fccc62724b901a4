//! `promptgate run`, `gate` and `baseline update`: sample the selection, then print and write
//! the run record, judge it against the baselines, or store it as the baselines.

use std::path::{Path, PathBuf};

use super::{exit_code_for, Console};
use crate::baseline::Baseline;
use crate::config;
use crate::drift::DriftOptions;
use crate::error::Error;
use crate::exit_code;
use crate::gate::{self, GateOptions};
use crate::record::redact::Redactor;
use crate::report::{self, Format, Style};
use crate::run::{self, RunOptions};
use crate::run_record::{RunRecord, Verdict};

/// What a command prints and writes about a run.
#[derive(Debug, Clone, PartialEq)]
pub struct Output {
    /// The format printed on the output.
    pub format: Format,
    pub style: Style,
    /// Report files, each in the format its extension names.
    pub out: Vec<PathBuf>,
    /// Keep every sample's answer in the record even when no report shows them (`--answers`).
    pub answers: bool,
    /// Mask identifying values in answers, prompts and reasons (`--redact`).
    pub redact: bool,
}

impl Output {
    /// Whether the run keeps answers: asked for, or shown by a Markdown or HTML report.
    fn keeps_answers(&self, files: &[(&PathBuf, Format)]) -> bool {
        let shows = |format: Format| matches!(format, Format::Markdown | Format::Html);
        self.answers || shows(self.format) || files.iter().any(|&(_, format)| shows(format))
    }

    /// The run options for this output: answers kept when a report shows them.
    fn options(&self, options: &RunOptions, files: &[(&PathBuf, Format)]) -> RunOptions {
        RunOptions {
            answers: options.answers || self.keeps_answers(files),
            ..options.clone()
        }
    }
}

/// The project's redactor when `redact` asks for one, built before any call so that a bad
/// `[[record.redact]]` pattern costs nothing.
pub(super) fn redactor(redact: bool, options: &RunOptions) -> Result<Option<Redactor>, Error> {
    if !redact {
        return Ok(None);
    }
    let config = config::Config::load(&options.config_path)?;
    Ok(Some(crate::record::redactor(&config)?))
}

/// `--dry-run`: print what the command would ask (JSON, Markdown, or the table for any other
/// format), found as [`run::dry_run`] finds it, instead of running it.
pub(super) fn dry_run(
    options: &RunOptions,
    precondition: run::Precondition,
    format: Format,
    console: &mut Console,
) -> Result<i32, Error> {
    let dry = run::dry_run(options, precondition)?;
    let text = match format {
        Format::Json => dry.json()?,
        Format::Markdown => dry.markdown(),
        _ => dry.terminal(),
    };
    console.print(&text)?;
    Ok(exit_code::SUCCESS)
}

/// A command that judges whole suites (a gate, the canary, a baseline) refuses a filter's
/// subset: its accuracy is not the suite's.
fn whole_suites(options: &RunOptions, command: &str) -> Result<(), Error> {
    match &options.case_filter {
        Some(filter) => Err(Error::usage(format!(
            "{command} judges whole suites, not the cases chosen by {}",
            filter.flags()
        ))
        .with_hint("run some cases with `promptgate run --case`; gate and baselines take every case")),
        None => Ok(()),
    }
}

/// `promptgate run --list`: the cases the run would ask about, as JSON or a line each.
pub fn list(options: &RunOptions, json: bool, console: &mut Console) -> Result<i32, Error> {
    let config = config::Config::load(&options.config_path)?;
    let list = crate::case_list::list(&config, &options.suites, options.case_filter.as_ref())?;
    console.print(&match json {
        true => list.json()?,
        false => list.terminal(),
    })?;
    Ok(exit_code::SUCCESS)
}

/// `promptgate run --show-prompts`: each chosen case's rendered prompt, as JSON or text.
pub fn show_prompts(options: &RunOptions, json: bool, console: &mut Console) -> Result<i32, Error> {
    let rendered = run::rendered(options)?;
    console.print(&match json {
        true => rendered.json()?,
        false => rendered.terminal(),
    })?;
    Ok(exit_code::SUCCESS)
}

/// `promptgate run`.
pub fn run(options: &RunOptions, output: &Output, console: &mut Console) -> Result<i32, Error> {
    if options.dry_run {
        return dry_run(options, &|_| Ok(()), output.format, console);
    }
    let files = report_files(&output.out)?;
    let redactor = redactor(output.redact, options)?;
    let record = run::run(&output.options(options, &files))?;
    emit(output, &files, record, redactor.as_ref(), console)
}

/// `promptgate gate`: every baseline is loaded before the first call, so that a missing one
/// costs nothing.
pub fn gate(options: &RunOptions, gate: &GateOptions, output: &Output, console: &mut Console) -> Result<i32, Error> {
    whole_suites(options, "the gate")?;
    let files = report_files(&output.out)?;
    let redactor = redactor(output.redact, options)?;
    let options = RunOptions {
        sequential: gate.sequential(),
        ..output.options(options, &files)
    };
    let check = |pairs: &[(String, String)]| gate::check_baselines(pairs, gate);
    if options.dry_run {
        return dry_run(&options, &check, output.format, console);
    }
    let record = run::run_checked(&options, &check)?;
    let record = gate::gate(record, gate)?;
    emit(output, &files, record, redactor.as_ref(), console)
}

/// `promptgate drift`: the baselines are loaded before the first call, the answers are
/// cached under the canary's epoch, and each pair is compared two-sided with its baseline.
pub fn drift(options: &RunOptions, drift: &DriftOptions, output: &Output, console: &mut Console) -> Result<i32, Error> {
    whole_suites(options, "the drift canary")?;
    if let Some(shard) = options.shard {
        return Err(
            Error::usage(format!("the drift canary is not sharded (--shard {shard})"))
                .with_hint("it re-samples each baselined suite on a schedule; run it whole"),
        );
    }
    if !crate::drift::valid_epoch(&drift.epoch) {
        return Err(Error::usage(format!(
            "`{}` cannot name an epoch",
            crate::excerpt::excerpt(&drift.epoch, 80)
        ))
        .with_hint("use 1 to 64 letters, digits, `-`, `_`, `.` or `:`, e.g. --epoch weekly-2026-49"));
    }
    if let Some(other) = options.prompts.iter().find(|p| *p != config::DEFAULT_PROMPT) {
        return Err(Error::usage(format!(
            "the canary samples each suite's own prompt, which its baseline holds, not `--prompt {other}`"
        ))
        .with_hint("to test another prompt against the baseline, use `promptgate gate --prompt`"));
    }
    let files = report_files(&output.out)?;
    let redactor = redactor(output.redact, options)?;
    let options = RunOptions {
        epoch: Some(drift.epoch.clone()),
        sequential: None,
        ..output.options(options, &files)
    };
    let load =
        |suite: &str, model: &str| Baseline::load(&Baseline::path(&drift.baseline_dir, suite, model), suite, model);
    let check = |pairs: &[(String, String)]| {
        pairs
            .iter()
            .try_for_each(|(suite, model)| load(suite, model).map(|_| ()))
    };
    if options.dry_run {
        return dry_run(&options, &check, output.format, console);
    }
    let record = run::run_checked(&options, &check)?;
    let baselines = record
        .results
        .iter()
        .map(|r| load(&r.suite, &r.model))
        .collect::<Result<Vec<_>, _>>()?;
    let record = crate::drift::judge(record, &baselines, &drift.epoch, drift.alpha);
    emit(output, &files, record, redactor.as_ref(), console)
}

/// `promptgate baseline update`: store each result of a complete run as its pair's baseline,
/// with its most common answers (masked under `redact`). A shard writes its record to `out`
/// instead, and `merge` of every shard's record writes the baselines.
pub fn update_baselines(
    options: &RunOptions,
    dir: &Path,
    redact: bool,
    out: Option<&Path>,
    console: &mut Console,
) -> Result<i32, Error> {
    whole_suites(options, "a baseline")?;
    if let Some(other) = options.prompts.iter().find(|p| *p != config::DEFAULT_PROMPT) {
        return Err(Error::usage(format!(
            "a baseline is kept for each suite's own prompt, not for `--prompt {other}`"
        ))
        .with_hint("to adopt that prompt, make it the suite's `prompt` in the config, then update the baseline"));
    }
    let shard_out = match (options.shard, out) {
        (Some(_), Some(path)) => {
            if Format::from_extension(path) != Some(Format::Json) {
                return Err(Error::usage(format!(
                    "a shard's record is JSON: `{}` should end in .json",
                    path.display()
                ))
                .with_hint("e.g. --out shard-1.json"));
            }
            crate::fs::check_output_path(path)?;
            Some(path)
        }
        (Some(shard), None) => {
            return Err(Error::usage(format!(
                "a shard of `baseline update` writes no baseline, only its record: --out FILE is needed with --shard {shard}"
            ))
            .with_hint("e.g. --shard 1/3 --out shard-1.json, then promptgate merge shard-*.json writes the baselines"))
        }
        (None, Some(_)) => {
            return Err(Error::usage("`baseline update --out` writes a shard's record")
                .with_hint("use it with --shard I/N; without it, the baselines are the output"))
        }
        (None, None) => None,
    };
    // Before any call is paid for: a baseline that could not be written is found now.
    let writable = |pairs: &[(String, String)]| {
        if shard_out.is_some() {
            return Ok(());
        }
        pairs
            .iter()
            .try_for_each(|(suite, model)| crate::fs::check_output_path(&Baseline::path(dir, suite, model)))
            .map_err(Error::from)
    };
    if options.dry_run {
        return dry_run(options, &writable, Format::Terminal, console);
    }
    let redactor = redactor(redact, options)?;
    let options = RunOptions {
        answers: true,
        ..options.clone()
    };
    let mut record = run::run_checked(&options, &writable)?;
    if let Some(redactor) = &redactor {
        report::redact::redact(&mut record, redactor);
    }
    if let (Some(path), Some(block)) = (shard_out, &mut record.shard) {
        block.command = "baseline update".into();
        block.baseline_dir = Some(dir.to_path_buf());
        console.write_report(path, &*report::exporter(Format::Json, &Style::default()), &record)?;
        return Ok(exit_code_for(&record, console));
    }
    batch_notes(&record, console);
    write_baselines(&record, dir, console)
}

/// Store each result of a complete run as its pair's baseline.
pub(super) fn write_baselines(record: &RunRecord, dir: &Path, console: &mut Console) -> Result<i32, Error> {
    let mut written = 0;
    for result in &record.results {
        if result.verdict == Verdict::Inconclusive {
            console.note(&format!(
                "not updated: {}/{} is inconclusive ({} failed calls); a baseline must come from a complete run",
                result.suite, result.model, result.errors
            ));
            continue;
        }
        let path = Baseline::path(dir, &result.suite, &result.model);
        Baseline::from_result(result, &record.started_at).save(&path)?;
        written += 1;
        let accuracy = result
            .accuracy
            .map_or_else(|| "n/a".to_string(), |a| format!("{:.1}%", a.point * 100.0));
        console.line(&format!(
            "wrote {} ({} cases, k = {}, accuracy {accuracy})",
            path.display(),
            result.cases,
            result.samples_per_case
        ))?;
    }
    if written < record.results.len() {
        return Ok(exit_code::INCONCLUSIVE);
    }
    Ok(exit_code::SUCCESS)
}

/// The format of each report file, checked before anything runs: a report that cannot be
/// written is found before any call is paid for.
pub(super) fn report_files(out: &[PathBuf]) -> Result<Vec<(&PathBuf, Format)>, Error> {
    out.iter()
        .map(|path| {
            let format = Format::from_extension(path).ok_or_else(|| {
                Error::usage(format!(
                    "cannot tell the report format of `{}` from its extension",
                    path.display()
                ))
                .with_hint("use .json (run record), .md (Markdown), .html (report page), .xml (JUnit) or .txt (terminal table)")
            })?;
            crate::fs::check_output_path(path)?;
            Ok((path, format))
        })
        .collect()
}

/// Write the [`report_files`], print the record, and return the exit code.
pub(super) fn emit(
    output: &Output,
    files: &[(&PathBuf, Format)],
    mut record: RunRecord,
    redactor: Option<&Redactor>,
    console: &mut Console,
) -> Result<i32, Error> {
    if let Some(redactor) = redactor {
        report::redact::redact(&mut record, redactor);
    }
    // Files never get colour, whatever the terminal has.
    let plain = Style {
        color: false,
        ..output.style.clone()
    };
    for &(path, format) in files {
        console.write_report(path, &*report::exporter(format, &plain), &record)?;
    }
    console.print_report(&*report::exporter(output.format, &output.style), &record)?;
    batch_notes(&record, console);
    Ok(exit_code_for(&record, console))
}

/// What `--batch` did, on stderr.
fn batch_notes(record: &RunRecord, console: &mut Console) {
    let Some(batch) = &record.batch else { return };
    console.note(&format!(
        "batch: {} line(s) sent, {} answer(s) collected from {} batch(es), {} failed line(s); {} call(s) left to make online",
        batch.submitted,
        batch.answered,
        batch.batches.len(),
        batch.failed,
        batch.online
    ));
    for note in &batch.notes {
        console.note(&format!("batch: {note}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `gate`, `drift` and `update_baselines` call this first: the command line never gives
    /// them a filter, a library caller might.
    #[test]
    fn commands_that_judge_whole_suites_refuse_a_subset() {
        let filter = crate::case_filter::CaseFilter::new(&["p7".into()], &["ssh".into()]).unwrap();
        let error = whole_suites(
            &RunOptions {
                case_filter: filter,
                ..testing_options()
            },
            "the gate",
        )
        .unwrap_err();
        assert_eq!(
            error.to_string(),
            "the gate judges whole suites, not the cases chosen by --case 'p7' --tag 'ssh'"
        );
        assert!(error.hint().is_some());
        assert!(whole_suites(&testing_options(), "the gate").is_ok());
    }

    fn testing_options() -> RunOptions {
        RunOptions::new(
            "promptgate.toml".into(),
            "cache.sqlite".into(),
            crate::env::EnvVars::from_pairs([("OPENAI_API_KEY", "unused")]),
        )
    }
}
