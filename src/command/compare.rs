//! `promptgate compare`: several models or prompt versions side by side on the same cases.

use std::path::PathBuf;

use super::{exit_code_for, Console};
use crate::compare;
use crate::error::Error;
use crate::report::compare_exporter as exporter;
pub use crate::report::CompareFormat;
use crate::run::{self, RunOptions};

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
    let outputs = output
        .out
        .iter()
        .map(|path| {
            crate::fs::check_output_path(path)?;
            let format = CompareFormat::from_extension(path).ok_or_else(|| {
                Error::usage(format!("cannot write a comparison to `{}`", path.display()))
                    .with_hint("use .json, .md or .html")
            })?;
            Ok((path, format))
        })
        .collect::<Result<Vec<_>, Error>>()?;
    let record = run::run(options)?;
    let comparison = compare::compare(&record, &options.models, &options.prompts);
    for (path, format) in outputs {
        console.write_file(path, &exporter(format).export(&comparison)?)?;
    }
    console.print(&exporter(output.format).export(&comparison)?)?;
    Ok(exit_code_for(&record, console))
}
