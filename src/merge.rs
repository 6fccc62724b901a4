//! The records of a run's shards back into the record of the whole run.
//!
//! Every figure of a result is a sum over its cases or computed from the per-case outcomes the
//! record keeps (see `aggregate`), so the merged record is the record one unsharded run over the
//! same answers would have written: cases back in suite order, accuracy and intervals, latency
//! percentiles, tokens, cost, flakiness and robustness computed once over all of them. What
//! the command does next (the gate's judgement with Holm across every pair, the comparison,
//! the baselines) is the command's, on the merged record.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::aggregate::{self, Settings};
use crate::error::Error;
use crate::run_record::{Miss, RunRecord, SuiteResult, RUN_RECORD_SCHEMA_VERSION};
use crate::shard::{Shard, ShardRecord};

/// A whole run rebuilt from its shards, and what the shards say about finishing it.
#[derive(Debug, Clone, PartialEq)]
pub struct Merged {
    pub record: RunRecord,
    /// The shards' common block (its `index` is the first shard's).
    pub shard: ShardRecord,
}

/// Read and parse one shard's record, naming the file in every error.
pub fn read(path: &Path) -> Result<RunRecord, Error> {
    let text = crate::fs::read_to_string(path, "run record")?;
    let record: RunRecord = serde_json::from_str(&text).map_err(|e| {
        Error::invalid(
            "run record",
            path,
            format!(" at line {}, column {}", e.line(), e.column()),
            crate::excerpt::excerpt(&e.to_string(), 300),
        )
        .with_hint("give the JSON a shard wrote: promptgate run --shard I/N --out shard.json")
    })?;
    if record.schema_version > RUN_RECORD_SCHEMA_VERSION {
        return Err(Error::invalid(
            "run record",
            path,
            " (field `schema_version`)",
            format!(
                "schema version {} is newer than this promptgate reads ({RUN_RECORD_SCHEMA_VERSION})",
                record.schema_version
            ),
        )
        .with_hint("merge with the promptgate version that ran the shards"));
    }
    let Some(block) = &record.shard else {
        return Err(Error::invalid(
            "run record",
            path,
            " (field `shard`)",
            "this is the record of a whole run, not of a shard",
        )
        .with_hint("merge the records of `--shard 1/N` … `--shard N/N` runs of one command"));
    };
    check_settings(block).map_err(|(field, message)| {
        Error::invalid("run record", path, format!(" (field `shard.{field}`)"), message)
            .with_hint("give the records the shards wrote, unedited")
    })?;
    Ok(record)
}

/// The numbers a shard's record sets for the merge, within the ranges the command line allows.
fn check_settings(block: &ShardRecord) -> Result<(), (String, String)> {
    use crate::limits::{in_range, PRICE};
    let share = |field: &str, value: f64| in_range(value, (0.0, 1.0)).map_err(|m| (field.to_string(), m));
    // As the config allows it: strictly between 0 and 1 (NaN fails too).
    if !(block.confidence_level > 0.0 && block.confidence_level < 1.0) {
        return Err((
            "confidence_level".to_string(),
            format!("{} is not strictly between 0 and 1", block.confidence_level),
        ));
    }
    share("max_error_rate", block.max_error_rate)?;
    if let Some(gate) = &block.gate {
        // As `gate --alpha` allows it.
        crate::limits::strictly_within(gate.alpha, crate::limits::ONE_SIDED_ALPHA)
            .map_err(|m| ("gate.alpha".to_string(), m))?;
        share("gate.margin", gate.margin)?;
    }
    for (model, prices) in &block.prices {
        for value in [prices.input_per_million, prices.output_per_million] {
            in_range(value, PRICE).map_err(|m| (format!("prices.{}", crate::excerpt::excerpt(model, 40)), m))?;
        }
    }
    Ok(())
}

/// Merge the records of all the shards of one run, given with their files (in any order).
pub fn merge(shards: Vec<(PathBuf, RunRecord)>) -> Result<Merged, Error> {
    let Some((first_path, first)) = shards.first() else {
        return Err(Error::usage("nothing to merge").with_hint("give the JSON records of every shard"));
    };
    let Some(common) = first.shard.clone() else {
        return Err(not_a_shard(first_path));
    };
    let mut by_index: BTreeMap<u32, &Path> = BTreeMap::new();
    for (path, record) in &shards {
        let Some(block) = &record.shard else {
            return Err(not_a_shard(path));
        };
        if let Some(what) = difference(&common, block, first, record) {
            return Err(Error::usage(format!(
                "`{}` and `{}` are not shards of one run: {what}",
                first_path.display(),
                path.display()
            ))
            .with_hint("merge the shards of one command, run from one commit with the same flags and shard count"));
        }
        Shard::new(block.index, block.count).map_err(|message| {
            Error::invalid("run record", path, " (field `shard`)", message)
                .with_hint("give the records the shards wrote, unedited")
        })?;
        if let Some(other) = by_index.insert(block.index, path) {
            return Err(Error::usage(format!(
                "shard {}/{} is given twice: `{}` and `{}`",
                block.index,
                block.count,
                other.display(),
                path.display()
            ))
            .with_hint("give each shard's record once"));
        }
        check_partition(
            path,
            record,
            Shard::new(block.index, block.count).map_err(Error::usage)?,
        )?;
    }
    let missing: Vec<String> = (1..=common.count)
        .filter(|i| !by_index.contains_key(i))
        .map(|i| format!("{i}/{}", common.count))
        .collect();
    if !missing.is_empty() {
        return Err(Error::usage(format!(
            "{} of {} shards missing: {}",
            missing.len(),
            common.count,
            crate::excerpt::excerpt(&missing.join(", "), 200)
        ))
        .with_hint("a merged run needs every shard: wait for all the matrix's jobs, or run the missing ones"));
    }
    let settings = Settings {
        confidence_level: common.confidence_level,
        interval: common.interval,
        max_error_rate: common.max_error_rate,
    };
    let record = whole(shards, &common, &settings)?;
    Ok(Merged { record, shard: common })
}

fn not_a_shard(path: &Path) -> Error {
    Error::invalid("run record", path, " (field `shard`)", "this is not a shard's record")
        .with_hint("merge the records of `--shard 1/N` … `--shard N/N` runs of one command")
}

/// What makes two records not shards of one run, if anything.
fn difference(a: &ShardRecord, b: &ShardRecord, record_a: &RunRecord, record_b: &RunRecord) -> Option<String> {
    if a.count != b.count {
        return Some(format!("one was split in {}, the other in {}", a.count, b.count));
    }
    if a.command != b.command {
        return Some(format!("one ran `{}`, the other `{}`", a.command, b.command));
    }
    if record_a.promptgate_version != record_b.promptgate_version {
        return Some(format!(
            "promptgate {} and {} ran them",
            record_a.promptgate_version, record_b.promptgate_version
        ));
    }
    if a.selection_sha256 != b.selection_sha256 {
        return Some("their suites, models, prompts, samples or cases differ".into());
    }
    let same_settings = ShardRecord {
        index: b.index,
        ..a.clone()
    } == *b;
    (!same_settings).then(|| "they were run with different settings (confidence level, interval, error rate, prices or the command's flags)".into())
}

/// Each case of a shard's record belongs to that shard, with its place in the suite and counts
/// that add up: a record that was edited or mislabelled is refused, not merged into a run with
/// a case twice, a case missing or an accuracy above 100%.
fn check_partition(path: &Path, record: &RunRecord, shard: Shard) -> Result<(), Error> {
    for result in &record.results {
        if let Some(case) = result.per_case.iter().find(|c| !shard.contains(&c.id)) {
            return Err(Error::invalid(
                "run record",
                path,
                where_in(result),
                format!(
                    "case `{}` does not belong to shard {shard}",
                    crate::excerpt::excerpt(&case.id, 80)
                ),
            )
            .with_hint("give the records the shards wrote, unedited"));
        }
        let k = result.samples_per_case;
        let broken = result.per_case.iter().find_map(|c| {
            let why = if c.position.is_none() {
                "has no `position`"
            } else if c.samples > k || c.correct > c.samples || c.invalid > c.samples {
                "counts more correct, invalid or valid samples than it has"
            } else if c.latencies_ms.len() > k as usize {
                "has more latencies than samples"
            } else if c.misses.len() > c.samples as usize {
                "has more misses than samples"
            } else if !c.misses.iter().all(Miss::is_bounded) {
                "has a miss with a reason or excerpt longer than a run writes"
            } else {
                return None;
            };
            Some(format!("case `{}` {why}", crate::excerpt::excerpt(&c.id, 80)))
        });
        if let Some(message) = broken {
            return Err(Error::invalid("run record", path, where_in(result), message)
                .with_hint("give the records the shards wrote, unedited"));
        }
    }
    Ok(())
}

/// The record of the whole run from the records of all its shards.
fn whole(shards: Vec<(PathBuf, RunRecord)>, common: &ShardRecord, settings: &Settings) -> Result<RunRecord, Error> {
    let (first_path, first) = &shards[0];
    let keys: Vec<(String, String, String)> = first.results.iter().map(key).collect();
    let started_at = shards
        .iter()
        .map(|(_, r)| r.started_at.clone())
        .min()
        .unwrap_or_default();
    let duration_ms = shards.iter().map(|(_, r)| r.duration_ms).max().unwrap_or(0);
    let cache_failure: Vec<String> = shards
        .iter()
        .filter_map(|(_, r)| {
            let shard = r.shard.as_ref()?;
            r.cache_failure
                .as_ref()
                .map(|failure| format!("shard {}/{}: {failure}", shard.index, shard.count))
        })
        .collect();
    let promptgate_version = first.promptgate_version.clone();
    let mut parts: Vec<Vec<SuiteResult>> = keys.iter().map(|_| Vec::with_capacity(shards.len())).collect();
    for (path, record) in shards.iter().skip(1) {
        let theirs: Vec<_> = record.results.iter().map(key).collect();
        if theirs != keys {
            return Err(Error::usage(format!(
                "`{}` and `{}` have different results",
                first_path.display(),
                path.display()
            ))
            .with_hint("give the records the shards wrote, unedited"));
        }
    }
    for (_, record) in shards {
        for (index, mut result) in record.results.into_iter().enumerate() {
            // What the command judged of one shard is judged again over the whole run.
            result.baseline = None;
            result.drift = None;
            for case in &mut result.per_case {
                case.baseline = None;
            }
            parts[index].push(result);
        }
    }
    let mut results = Vec::with_capacity(parts.len());
    // Which family each robustness result is of, and how many of the suite's cases it left out:
    // the same in every shard, which all computed it over the whole suite.
    let mut families = Vec::with_capacity(parts.len());
    for part in parts {
        families.push(part[0].robustness.as_ref().map(|r| (r.family, r.cases_left_out)));
        let prices = common.prices.get(&part[0].model).copied();
        results.push(aggregate::merge(part, prices, settings)?);
    }
    for index in 0..results.len() {
        let Some((family, cases_left_out)) = families[index] else {
            continue;
        };
        let target = &results[index];
        let suite = target.suite.split('~').next().unwrap_or_default();
        let plain = results
            .iter()
            .find(|r| r.suite == suite && r.model == target.model && r.prompt == target.prompt);
        let robustness = plain.map(|plain| aggregate::robustness(family, cases_left_out, target, plain, settings));
        results[index].robustness = robustness;
    }
    Ok(RunRecord {
        promptgate_version,
        cache_failure: (!cache_failure.is_empty()).then(|| cache_failure.join("; ")),
        ..RunRecord::of_results(results, started_at, duration_ms)
    })
}

/// " (result `s` on `m`)", cut: the names come from the file.
fn where_in(result: &SuiteResult) -> String {
    format!(
        " (result `{}` on `{}`)",
        crate::excerpt::excerpt(&result.suite, 80),
        crate::excerpt::excerpt(&result.model, 80)
    )
}

fn key(result: &SuiteResult) -> (String, String, String) {
    (result.suite.clone(), result.model.clone(), result.prompt.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shard::GateSettings;

    #[test]
    fn a_shards_gate_settings_are_held_to_what_the_command_line_allows() {
        let with_gate = |alpha: f64, margin: f64| ShardRecord {
            index: 1,
            count: 2,
            command: "gate".into(),
            selection_sha256: String::new(),
            confidence_level: 0.95,
            interval: crate::stats::IntervalMethod::default(),
            max_error_rate: 0.05,
            prices: BTreeMap::new(),
            gate: Some(GateSettings {
                baseline_dir: PathBuf::from("baselines"),
                alpha,
                margin,
                exact: false,
                fail_on_broken: false,
            }),
            compare: None,
            baseline_dir: None,
        };
        assert_eq!(check_settings(&with_gate(0.05, 0.0)), Ok(()));
        assert_eq!(check_settings(&with_gate(0.499, 1.0)), Ok(()));
        for alpha in [0.0, 0.5, 1.0, -0.1, f64::NAN] {
            let (field, _) = check_settings(&with_gate(alpha, 0.0)).unwrap_err();
            assert_eq!(field, "gate.alpha", "{alpha}");
        }
        let (field, _) = check_settings(&with_gate(0.05, 1.5)).unwrap_err();
        assert_eq!(field, "gate.margin");
    }
}
