#![allow(dead_code)] // each bench binary uses part of this module
//! Shared set-up for the benchmark binaries: a project on the fake server and an in-process run.

use std::path::Path;
use std::time::{Duration, Instant};

use promptgate::env::EnvVars;
use promptgate::{RunOptions, RunRecord};

/// Run options for the project in `dir`, as the command line would build them.
pub fn options(dir: &Path, samples: u32, concurrency: usize, offline: bool) -> RunOptions {
    RunOptions {
        samples: Some(samples),
        concurrency: Some(concurrency),
        offline,
        ..RunOptions::new(
            dir.join("promptgate.toml"),
            dir.join(".promptgate/cache.sqlite"),
            EnvVars::from_pairs([("OPENAI_API_KEY", "bench")]),
        )
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

/// Run `command` to success under GNU time (Debian: `time`), its output discarded: its wall
/// time in seconds and peak RSS in KiB. Not from `wait4` on a child of this process: a child
/// forked from it (whose fake server may hold every request) counts this process's pages
/// until it execs.
pub fn under_time(command: std::process::Command, report: &Path) -> (f64, i64) {
    let mut timed = std::process::Command::new("/usr/bin/time");
    for (key, value) in command.get_envs() {
        match value {
            Some(value) => timed.env(key, value),
            None => timed.env_remove(key),
        };
    }
    if let Some(dir) = command.get_current_dir() {
        timed.current_dir(dir);
    }
    let started = Instant::now();
    let finished = timed
        .args(["-f", "%M", "-o"])
        .arg(report)
        .arg(command.get_program())
        .args(command.get_args())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .expect("GNU time (Debian: apt-get install time)");
    let wall = started.elapsed().as_secs_f64();
    assert!(
        finished.success(),
        "{:?} failed",
        command.get_args().collect::<Vec<_>>()
    );
    let text = std::fs::read_to_string(report).expect("time's report");
    let rss = text
        .lines()
        .filter_map(|line| line.trim().parse().ok())
        .next_back()
        .expect("a peak RSS in KiB");
    (wall, rss)
}
