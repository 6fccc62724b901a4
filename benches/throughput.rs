//! Live throughput against the fake server with a fixed latency L per answer and C concurrent
//! calls. The ideal is C / L requests per second; goal ≥ 90 % of it for C = 64, L = 50 ms.
//! Run with `cargo bench --bench throughput`.

mod common;
#[path = "../tests/support/mod.rs"]
mod support;

use std::time::Duration;

use support::fake_server::{FakeServer, Reply};
use support::Project;

fn measure(concurrency: usize, latency: Duration, calls_per_slot: usize) {
    let server = FakeServer::start(move |_| Reply::Delay(latency, Box::new(Reply::label("notify"))));
    let cases = concurrency * calls_per_slot;
    let project = Project::new(&server.base_url, &common::labels(cases), 1, "");
    let (record, elapsed) = common::timed(&common::options(project.path(), 1, concurrency, false));
    assert_eq!(record.calls.made, cases as u64);
    assert_eq!(server.request_count(), cases);
    let achieved = cases as f64 / elapsed.as_secs_f64();
    let ideal = concurrency as f64 / latency.as_secs_f64();
    println!(
        "C = {concurrency:>3}, L = {:>3} ms, {cases} calls: {:.2} s, {achieved:.0} req/s of ideal {ideal:.0} ({:.1} %)",
        latency.as_millis(),
        elapsed.as_secs_f64(),
        100.0 * achieved / ideal
    );
}

fn main() {
    measure(64, Duration::from_millis(0), 40);
    measure(8, Duration::from_millis(50), 40);
    measure(64, Duration::from_millis(50), 40);
}
