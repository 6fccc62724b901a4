//! `run --batch` through the fake OpenAI Batch API and through the fake Bedrock control plane
//! over moto's S3 server (`PROMPTGATE_S3_URL`, as `ci/s3.sh url` prints; skipped without it):
//! 1,000 to 10,000 cases × k = 5 (5,000 to 50,000 batch lines). Each run is the release binary
//! in its own process; its peak RSS is GNU time's `%M` (Debian: `time`). Prints the wall time,
//! the fake's own time (answering the lines is its simulated processing; for Bedrock that
//! includes reading the input from S3 and writing the output), the wall time without it, the
//! peak RSS, and the peak RSS of an `--offline` replay of the same run (the engine's share).
//! Run with `cargo bench --bench batch`.

mod common;
#[path = "../tests/support/mod.rs"]
mod support;

use std::time::Instant;

use support::fake_batch::{FakeBatchServer, Faults};
use support::fake_bedrock_batch::FakeBedrockBatch;
use support::Project;

/// A running fake batch engine.
enum Fake {
    Openai(FakeBatchServer),
    Bedrock(FakeBedrockBatch),
}

impl Fake {
    fn billed(&self) -> usize {
        match self {
            Fake::Openai(server) => server.billed().len(),
            Fake::Bedrock(fake) => fake.billed().len(),
        }
    }

    fn busy(&self) -> f64 {
        match self {
            Fake::Openai(server) => server.busy().as_secs_f64(),
            Fake::Bedrock(fake) => fake.busy().as_secs_f64(),
        }
    }
}

/// The fake of `engine` and a project of `cases` cases on it.
fn setup(engine: &str, cases: usize, s3: Option<&str>) -> (Fake, Project) {
    const ANSWER: &str = r#"{"decision": "notify"}"#;
    match (engine, s3) {
        ("bedrock", Some(s3)) => {
            let bucket = format!("pg-bench-{}", rand_suffix());
            let fake = FakeBedrockBatch::start(s3, &bucket, 100, |_| ANSWER.to_string(), Default::default());
            let provider = format!(
                "kind = \"bedrock\"\nregion = \"us-east-1\"\nbatch_endpoint_url = \"{}\"\n\
                 s3_endpoint_url = \"{s3}\"\nbatch_s3_uri = \"s3://{bucket}/bench\"\n\
                 batch_role_arn = \"arn:aws:iam::111122223333:role/promptgate-batch\"",
                fake.endpoint
            );
            let project = Project::with_provider(
                &provider,
                "anthropic.claude-3-haiku-20240307-v1:0",
                &labels(cases),
                5,
                "batch_poll_ms = 1\nbatch_poll_max_ms = 10",
            );
            (Fake::Bedrock(fake), project)
        }
        _ => {
            let server = FakeBatchServer::start(|_| ANSWER.to_string(), Faults::default());
            let project = Project::new(
                &server.base_url,
                &labels(cases),
                5,
                "batch_poll_ms = 1\nbatch_poll_max_ms = 10",
            );
            (Fake::Openai(server), project)
        }
    }
}

/// A bucket name no earlier run of this process used (moto keeps buckets in memory).
fn rand_suffix() -> String {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    format!("{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))
}

fn labels(n: usize) -> Vec<&'static str> {
    (0..n).map(|i| if i % 3 == 0 { "suppress" } else { "notify" }).collect()
}

/// Wall time, the fake's time and peak RSS (KiB) of `run --batch` over `cases` cases, and the
/// peak RSS of an `--offline` replay of it.
fn measure(engine: &str, cases: usize, s3: Option<&str>) -> (f64, f64, i64, i64) {
    let (fake, project) = setup(engine, cases, s3);
    let started = Instant::now();
    let rss = peak_rss(&project, &["run", "--batch", "--format", "json"]);
    let wall = started.elapsed().as_secs_f64();
    assert_eq!(fake.billed(), cases * 5);
    let replay = peak_rss(&project, &["run", "--offline", "--format", "json"]);
    (wall, fake.busy(), rss, replay)
}

/// Run `promptgate ARGS…` to success under GNU time; its peak RSS in KiB.
fn peak_rss(project: &Project, args: &[&str]) -> i64 {
    let mut command = project.std_command();
    command.args(args).arg("--quiet");
    common::under_time(command, &project.file("time.txt")).1
}

fn main() {
    let s3 = std::env::var("PROMPTGATE_S3_URL").ok().filter(|url| !url.is_empty());
    for (engine, title) in [
        ("openai", "the fake Batch API"),
        ("bedrock", "the fake Bedrock control plane over moto's S3 server"),
    ] {
        if engine == "bedrock" && s3.is_none() {
            println!("run --batch through {title}: skipped (set PROMPTGATE_S3_URL: ci/s3.sh start; ci/s3.sh url)");
            continue;
        }
        println!("run --batch, k = 5, through {title} (medians of 3)");
        let mut previous: Option<(f64, i64)> = None;
        for cases in [1_000, 10_000] {
            let mut runs: Vec<(f64, f64, i64, i64)> = (0..3).map(|_| measure(engine, cases, s3.as_deref())).collect();
            runs.sort_by(|a, b| (a.0 - a.1).total_cmp(&(b.0 - b.1)));
            let (wall, server, _, _) = runs[1];
            let mut peaks: Vec<i64> = runs.iter().map(|r| r.2).collect();
            peaks.sort_unstable();
            let mut replays: Vec<i64> = runs.iter().map(|r| r.3).collect();
            replays.sort_unstable();
            let (rss, replay) = (peaks[1], replays[1]);
            let own = wall - server;
            print!(
                "{cases:>6} cases ({:>6} lines): wall {wall:.2} s, fake {server:.2} s, without it {own:.2} s, peak RSS {:.1} MiB (an --offline replay of it: {:.1} MiB)",
                cases * 5,
                rss as f64 / 1024.0,
                replay as f64 / 1024.0
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
}
