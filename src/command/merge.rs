//! `promptgate merge`: the records of every shard of a run back into one run, then what the
//! sharded command does with a whole run: print it (`run`), judge it against the baselines with
//! Holm across every pair (`gate`), set its rows side by side (`compare`) or store it as the
//! baselines (`baseline update`).

use std::path::PathBuf;

use super::compare::CompareOutput;
use super::run::{emit, redactor, report_files, write_baselines, Output};
use super::Console;
use crate::error::Error;
use crate::gate::{self, GateOptions, Sampling};
use crate::merge;
use crate::run::RunOptions;

/// What to merge, and where the shards' baselines are when they moved.
#[derive(Debug, Clone, PartialEq)]
pub struct MergeOptions {
    /// The shards' JSON records.
    pub files: Vec<PathBuf>,
    /// Overrides the baseline folder the shards were given (`gate`, `baseline update`).
    pub baseline_dir: Option<PathBuf>,
}

/// `promptgate merge`. `options` gives the config (for `--redact`'s patterns).
pub fn merge(
    merge_options: &MergeOptions,
    options: &RunOptions,
    output: &Output,
    compare_output: Option<&CompareOutput>,
    console: &mut Console,
) -> Result<i32, Error> {
    let files = report_files(&output.out)?;
    let shards = merge_options
        .files
        .iter()
        .map(|path| Ok((path.clone(), merge::read(path)?)))
        .collect::<Result<Vec<_>, Error>>()?;
    let merge::Merged { record, shard } = merge::merge(shards)?;
    let missing = |what: &str| {
        Error::usage(format!("the shards of `{}` do not say {what}", shard.command))
            .with_hint("merge the records the shards wrote, unedited")
    };
    match shard.command.as_str() {
        "run" => emit(
            output,
            &files,
            record,
            redactor(output.redact, options)?.as_ref(),
            console,
        ),
        "gate" => {
            let settings = shard.gate.as_ref().ok_or_else(|| missing("how to gate"))?;
            let gate = GateOptions {
                baseline_dir: merge_options
                    .baseline_dir
                    .clone()
                    .unwrap_or_else(|| settings.baseline_dir.clone()),
                alpha: settings.alpha,
                margin: settings.margin,
                exact: settings.exact,
                sampling: Sampling::Fixed,
                fail_on_broken: settings.fail_on_broken,
            };
            let record = gate::gate(record, &gate)?;
            emit(
                output,
                &files,
                record,
                redactor(output.redact, options)?.as_ref(),
                console,
            )
        }
        "compare" => {
            let settings = shard.compare.as_ref().ok_or_else(|| missing("which rows to compare"))?;
            let output = compare_output.ok_or_else(|| {
                Error::usage("a comparison has no JUnit form")
                    .with_hint("use --format terminal, json, markdown or html")
            })?;
            super::compare::finish(&record, settings, output, console)
        }
        "baseline update" => {
            let dir = merge_options
                .baseline_dir
                .clone()
                .or_else(|| shard.baseline_dir.clone())
                .ok_or_else(|| missing("where the baselines go"))?;
            write_baselines(&record, &dir, console)
        }
        other => Err(Error::usage(format!(
            "cannot merge shards of `{}`",
            crate::excerpt::excerpt(other, 40)
        ))
        .with_hint("shards of run, gate, compare and baseline update merge")),
    }
}
