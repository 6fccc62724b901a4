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
        return Err(Error::usage("compare needs at least two models or two prompt versions")
            .with_hint(what_to_compare(&options.config_path)));
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

/// How to name what to compare, with the config's own names: a first `compare` is typed
/// without knowing the flags. A config that does not load keeps its error for the run.
fn what_to_compare(config_path: &std::path::Path) -> String {
    let versions = "two prompt versions of a suite: promptgate compare --suite S --prompt default --prompt P";
    let models: Vec<String> = match crate::config::Config::load(config_path) {
        Ok(config) => config.models.into_keys().collect(),
        Err(_) => Vec::new(),
    };
    match &models[..] {
        [] => format!("e.g. promptgate compare --model A --model B, or {versions}"),
        [only] => format!(
            "`{}` defines one model ({only}): add another under [models.NAME], or compare {versions}",
            config_path.display()
        ),
        [first, second, ..] => format!(
            "e.g. promptgate compare --model {first} --model {second} (models in `{}`: {}), or {versions}",
            config_path.display(),
            crate::config::names(models.iter())
        ),
    }
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
