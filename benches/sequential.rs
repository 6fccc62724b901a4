//! The sequential gate against the fixed one: a 2,000-case × k = 5 gate on the fake server at
//! 50 ms per answer and 64 calls in flight, wall time and calls of each, for an unchanged
//! candidate and for one where 100 cases collapsed. Every gate starts from an empty cache.
//! Run with `cargo bench --bench sequential`.

mod common;
#[path = "../tests/support/mod.rs"]
mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use promptgate::baseline::Baseline;
use promptgate::gate::{GateOptions, Sampling};
use support::fake_server::{FakeServer, Reply, Seen};
use support::Project;

const CASES: usize = 2_000;
const SAMPLES: u32 = 5;
const CONCURRENCY: usize = 64;

/// The label case `case` expects (`common::labels` writes every third case `suppress`).
fn expected(case: usize) -> &'static str {
    if case % 3 == 0 {
        "suppress"
    } else {
        "notify"
    }
}

fn case_of(seen: &Seen) -> usize {
    seen.case_id().trim_start_matches('c').parse().expect("case id")
}

/// Every fifth case always wrong; every tenth wrong on one sample whose position cycles.
fn noisy(case: usize, sample: i64) -> bool {
    case % 5 == 1 || (case % 10 == 0 && sample == (case / 10 % 5) as i64)
}

/// Whether the answer to sample `sample` of case `case` is wrong.
type Wrong = fn(usize, i64) -> bool;

fn server(latency: Duration, wrong: Wrong) -> FakeServer {
    FakeServer::start(move |seen| {
        let case = case_of(seen);
        let right = expected(case);
        let label = if wrong(case, seen.seed() - 100) {
            if right == "suppress" {
                "notify"
            } else {
                "suppress"
            }
        } else {
            right
        };
        Reply::Delay(latency, Box::new(Reply::label(label)))
    })
}

fn gate(project: &Project, cache: &str, sampling: Sampling) -> (promptgate::RunRecord, Duration) {
    let gate = GateOptions {
        baseline_dir: project.file("baselines"),
        alpha: 0.05,
        margin: 0.0,
        exact: false,
        sampling,
        fail_on_broken: false,
    };
    let mut options = common::options(project.path(), SAMPLES, CONCURRENCY, false);
    options.cache_path = project.file(cache);
    options.sequential = gate.sequential();
    let started = Instant::now();
    let record = promptgate::run::run_checked(&options, &|_| Ok(())).expect("run");
    let record = promptgate::gate::gate(record, &gate).expect("gate");
    (record, started.elapsed())
}

fn main() {
    let baseline_server = server(Duration::ZERO, noisy);
    let project = Project::new(&baseline_server.base_url, &common::labels(CASES), SAMPLES, "");
    let (record, _) = common::timed(&common::options(project.path(), SAMPLES, CONCURRENCY, false));
    let path = Baseline::path(&project.file("baselines"), "s", "m");
    Baseline::from_result(&record.results[0], &record.started_at)
        .save(Path::new(&path))
        .expect("baseline");
    let config = std::fs::read_to_string(project.file("promptgate.toml")).expect("config");
    let candidates: [(&str, Wrong); 2] = [
        ("unchanged", noisy),
        ("100 cases collapsed", |case, sample| {
            noisy(case, sample) || case % 20 == 3
        }),
    ];
    for (name, wrong) in candidates {
        for sampling in [Sampling::Fixed, Sampling::Sequential] {
            let candidate = server(Duration::from_millis(50), wrong);
            project.write(
                "promptgate.toml",
                &config.replace(&baseline_server.base_url, &candidate.base_url),
            );
            let cache = format!("{name}-{sampling:?}.sqlite").replace(' ', "-");
            let (record, elapsed) = gate(&project, &cache, sampling);
            let result = &record.results[0];
            let verdict = result.baseline.as_ref().map(|b| b.verdict);
            let stop = result.sequential.as_ref().map_or_else(String::new, |s| {
                format!(", stop {:?} at look {}", s.stop, s.looks.len())
            });
            println!(
                "{name:<20} {sampling:<10?}: {:>6} calls, {:>6.2} s, {verdict:?}{stop}",
                candidate.request_count(),
                elapsed.as_secs_f64()
            );
        }
    }
}
