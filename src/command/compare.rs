//! `promptgate compare`: several models or prompt versions side by side on the same cases.

use std::path::PathBuf;

use super::{exit_code_for, Console};
use crate::compare;
use crate::error::Error;
use crate::report::compare_exporter as exporter;
pub use crate::report::CompareFormat;
use crate::run::{self, RunOptions};
use crate::run_record::RunRecord;

/// What `compare` prints and writes.
#[derive(Debug, Clone, PartialEq)]
pub struct CompareOutput {
    pub format: CompareFormat,
    /// Files (.json, .md or .html) to write the comparison to.
    pub out: Vec<PathBuf>,
}

/// `promptgate compare`: run the selection and set its rows side by side.
pub fn compare(options: &RunOptions, output: &CompareOutput, console: &mut Console) -> Result<i32, Error> {
    if options.models.len() < 2 && options.prompts.len() < 2 {
        return Err(
            Error::usage("compare needs at least two models or two prompt versions").with_hint(
                "e.g. promptgate compare --model gemma-local --model gpt-4o-mini, or --suite triage --prompt default --prompt en",
            ),
        );
    }
    if options.dry_run {
        let format = match output.format {
            CompareFormat::Json => crate::report::Format::Json,
            CompareFormat::Markdown => crate::report::Format::Markdown,
            CompareFormat::Terminal | CompareFormat::Html => crate::report::Format::Terminal,
        };
        return super::run::dry_run(options, &|_| Ok(()), format, console);
    }
    if options.shard.is_some() {
        return shard(options, output, console);
    }
    let files = comparison_files(&output.out)?;
    let record = run::run(options)?;
    emit(&record, &options.models, &options.prompts, output, &files, console)
}

/// A shard of `compare`: its run record, for `merge` to compare the whole run. Files and the
/// output take the run's formats (`.json` is the record `merge` reads).
fn shard(options: &RunOptions, output: &CompareOutput, console: &mut Console) -> Result<i32, Error> {
    use crate::report::{self, Format, Style};
    let files = super::run::report_files(&output.out)?;
    let mut record = run::run(options)?;
    if let Some(block) = &mut record.shard {
        block.command = "compare".into();
        block.compare = Some(crate::shard::CompareSettings {
            models: options.models.clone(),
            prompts: options.prompts.clone(),
        });
    }
    let format = match output.format {
        CompareFormat::Terminal => Format::Terminal,
        CompareFormat::Json => Format::Json,
        CompareFormat::Markdown => Format::Markdown,
        CompareFormat::Html => Format::Html,
    };
    for &(path, format) in &files {
        console.write_file(path, &report::exporter(format, &Style::default()).export(&record)?)?;
    }
    console.print(&report::exporter(format, &Style::default()).export(&record)?)?;
    Ok(exit_code_for(&record, console))
}

/// Print and write the comparison of a whole run (`merge` of `compare` shards).
pub(super) fn finish(
    record: &RunRecord,
    settings: &crate::shard::CompareSettings,
    output: &CompareOutput,
    console: &mut Console,
) -> Result<i32, Error> {
    let files = comparison_files(&output.out)?;
    emit(record, &settings.models, &settings.prompts, output, &files, console)
}

/// The format of each comparison file, checked before anything runs.
fn comparison_files(out: &[PathBuf]) -> Result<Vec<(&PathBuf, CompareFormat)>, Error> {
    out.iter()
        .map(|path| {
            crate::fs::check_output_path(path)?;
            let format = CompareFormat::from_extension(path).ok_or_else(|| {
                Error::usage(format!("cannot write a comparison to `{}`", path.display()))
                    .with_hint("use .json, .md or .html")
            })?;
            Ok((path, format))
        })
        .collect()
}

/// Set the rows of `record` side by side, write the files, print, and return the exit code.
fn emit(
    record: &RunRecord,
    models: &[String],
    prompts: &[String],
    output: &CompareOutput,
    files: &[(&PathBuf, CompareFormat)],
    console: &mut Console,
) -> Result<i32, Error> {
    let comparison = compare::compare(record, models, prompts);
    for &(path, format) in files {
        console.write_file(path, &exporter(format).export(&comparison)?)?;
    }
    console.print(&exporter(output.format).export(&comparison)?)?;
    Ok(exit_code_for(record, console))
}
