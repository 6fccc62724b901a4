#![allow(dead_code)] // each bench binary uses part of this module
//! Shared set-up for the benchmark binaries: a project on the fake server and an in-process run.

use std::path::Path;
use std::time::{Duration, Instant};

use promptgate::env::EnvVars;
use promptgate::stats::IntervalMethod;
use promptgate::{RunOptions, RunRecord};

/// Run options for the project in `dir`, as the command line would build them.
pub fn options(dir: &Path, samples: u32, concurrency: usize, offline: bool) -> RunOptions {
    RunOptions {
        config_path: dir.join("promptgate.toml"),
        cache_path: dir.join(".promptgate/cache.sqlite"),
        suites: vec![],
        prompts: Vec::new(),
        models: vec![],
        samples: Some(samples),
        concurrency: Some(concurrency),
        offline,
        max_error_rate: None,
        interval: IntervalMethod::WilsonEffectiveT,
        progress: false,
        env: EnvVars::from_pairs([("OPENAI_API_KEY", "bench")]),
        sequential: None,
        epoch: None,
        answers: false,
        shard: None,
        batch: false,
    }
}

/// Time `run` once.
pub fn timed(options: &RunOptions) -> (RunRecord, Duration) {
    let started = Instant::now();
    let record = promptgate::run(options).expect("run");
    (record, started.elapsed())
}

/// Labels for `n` cases.
pub fn labels(n: usize) -> Vec<&'static str> {
    (0..n).map(|i| if i % 3 == 0 { "suppress" } else { "notify" }).collect()
}

pub fn median(mut values: Vec<Duration>) -> Duration {
    values.sort();
    values[values.len() / 2]
}
