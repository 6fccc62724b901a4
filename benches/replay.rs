//! Warm-cache replay: 10,000 cases × 5 samples loaded, rendered, looked up in the cache,
//! graded, aggregated and reported (terminal and JSON), with no provider call.
//! Goal: under 2 s on the 2-core reference machine. Run with `cargo bench --bench replay`.

mod common;
#[path = "../tests/support/mod.rs"]
mod support;

use promptgate::report::{self, Format, Style};
use support::fake_server::{FakeServer, Reply};
use support::Project;

// As in the binary: the allocator that bounds what a template may take (`promptgate::memory`).
#[global_allocator]
static ALLOCATOR: promptgate::memory::Counting = promptgate::memory::Counting;

const CASES: usize = 10_000;
const SAMPLES: u32 = 5;
const REPEATS: usize = 5;

fn main() {
    let server = FakeServer::start(|seen| Reply::label(if seen.seed() % 2 == 0 { "notify" } else { "suppress" }));
    let labels = common::labels(CASES);
    let project = Project::new(&server.base_url, &labels, SAMPLES, "");
    let (fill, fill_time) = common::timed(&common::options(project.path(), SAMPLES, 64, false));
    assert_eq!(fill.calls.made, (CASES as u64) * u64::from(SAMPLES));
    eprintln!(
        "filled the cache with {} responses in {:.2?}",
        fill.calls.made, fill_time
    );

    let mut times = Vec::new();
    for _ in 0..REPEATS {
        let started = std::time::Instant::now();
        let (record, _) = common::timed(&common::options(project.path(), SAMPLES, 8, true));
        assert_eq!(record.calls.cached, (CASES as u64) * u64::from(SAMPLES));
        let terminal = report::exporter(Format::Terminal, &Style::default())
            .export(&record)
            .expect("terminal");
        let json = report::exporter(Format::Json, &Style::default())
            .export(&record)
            .expect("json");
        times.push(started.elapsed());
        std::hint::black_box((terminal, json));
    }
    let best = *times.iter().min().expect("times");
    println!(
        "replay {CASES} cases x {SAMPLES} samples from a warm cache (load, render, look up, grade, aggregate, report): \
         median {:.3} s, best {:.3} s over {REPEATS} runs (goal < 2 s)",
        common::median(times).as_secs_f64(),
        best.as_secs_f64()
    );
}
