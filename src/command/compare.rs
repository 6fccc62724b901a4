//! `promptgate compare`: several models or prompt versions side by side on the same cases.

use std::path::PathBuf;

use super::{exit_code_for, Console};
use crate::compare;
use crate::error::Error;
use crate::report::{self, Format};
use crate::run::{self, RunOptions};

/// What a comparison is printed as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompareFormat {
    Terminal,
    Json,
    Markdown,
    /// A self-contained page with forest plots.
    Html,
}

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
    let render = |format: CompareFormat, record: &compare::CompareRecord| -> Result<String, Error> {
        Ok(match format {
            CompareFormat::Terminal => report::compare::terminal(record),
            CompareFormat::Markdown => report::compare::markdown(record),
            CompareFormat::Html => report::html::compare_page(record),
            CompareFormat::Json => {
                serde_json::to_string_pretty(record).map_err(|e| Error::internal(e.to_string()))? + "\n"
            }
        })
    };
    let outputs = output
        .out
        .iter()
        .map(|path| {
            let html = path
                .extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| e.eq_ignore_ascii_case("html") || e.eq_ignore_ascii_case("htm"));
            crate::fs::check_output_path(path)?;
            match Format::from_extension(path) {
                _ if html => Ok((path, CompareFormat::Html)),
                Some(Format::Json) => Ok((path, CompareFormat::Json)),
                Some(Format::Markdown) => Ok((path, CompareFormat::Markdown)),
                _ => Err(
                    Error::usage(format!("cannot write a comparison to `{}`", path.display()))
                        .with_hint("use .json, .md or .html"),
                ),
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    let record = run::run(options)?;
    let comparison = compare::compare(&record, &options.models, &options.prompts);
    for (path, format) in outputs {
        console.write_file(path, &render(format, &comparison)?)?;
    }
    console.print(&render(output.format, &comparison)?)?;
    Ok(exit_code_for(&record, console))
}
