//! `run --batch` through the fake Batch API: 1,000 to 10,000 cases × k = 5 (5,000 to 50,000
//! batch lines). Each run is the release binary in its own process, so its peak RSS is its own
//! (from `wait4`). Prints the wall time, the fake server's own time (answering 50,000 lines
//! is its simulated processing), the wall time without it, and the peak RSS.
//! Run with `cargo bench --bench batch`.

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::Instant;

use support::fake_batch::{FakeBatchServer, Faults};
use support::Project;

fn labels(n: usize) -> Vec<&'static str> {
    (0..n).map(|i| if i % 3 == 0 { "suppress" } else { "notify" }).collect()
}

/// Wall time, server time and peak RSS (KiB) of `run --batch` over `cases` cases.
fn measure(cases: usize) -> (f64, f64, i64) {
    let server = FakeBatchServer::start(|_| "{\"decision\": \"notify\"}".to_string(), Faults::default());
    let project = Project::new(
        &server.base_url,
        &labels(cases),
        5,
        "batch_poll_ms = 1\nbatch_poll_max_ms = 10",
    );
    let started = Instant::now();
    // Reaped by `wait4` below, which also gives its peak RSS.
    #[allow(clippy::zombie_processes)]
    let child = project
        .std_command()
        .args(["run", "--batch", "--quiet", "--format", "json"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: a zeroed rusage is a valid value for wait4 to fill; `pid` is our own child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let waited = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(waited, pid);
    let wall = started.elapsed().as_secs_f64();
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "the run failed"
    );
    assert_eq!(server.billed().len(), cases * 5);
    (wall, server.busy().as_secs_f64(), usage.ru_maxrss)
}

fn main() {
    println!("run --batch, k = 5, through the fake Batch API (medians of 3)");
    let mut previous: Option<(f64, i64)> = None;
    for cases in [1_000, 10_000] {
        let mut runs: Vec<(f64, f64, i64)> = (0..3).map(|_| measure(cases)).collect();
        runs.sort_by(|a, b| (a.0 - a.1).total_cmp(&(b.0 - b.1)));
        let (wall, server, rss) = runs[1];
        let own = wall - server;
        print!(
            "{cases:>6} cases ({:>6} lines): wall {wall:.2} s, fake server {server:.2} s, without it {own:.2} s, peak RSS {:.1} MiB",
            cases * 5,
            rss as f64 / 1024.0
        );
        if let Some((own_before, rss_before)) = previous {
            print!(
                "  (× {:.1} time, × {:.2} memory for × 10 cases)",
                own / own_before,
                rss as f64 / rss_before as f64
            );
        }
        println!();
        previous = Some((own, rss));
    }
}
