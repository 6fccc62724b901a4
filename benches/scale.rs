//! Suites of any size on one machine: for 10,000, 50,000 and 250,000 samples (k = 5), the
//! release binary in its own process against the fake server (50 ms per answer, C = 64):
//! the live run's wall time and peak RSS, the warm replay's (`--offline`) and the dry run's
//! (`--dry-run`, the count `--max-calls` makes first) wall time and peak RSS, and the live wall time against `curl --parallel --parallel-max 64` sending the same
//! number of requests with one of the run's own bodies to the same server. Peak RSS is GNU
//! time's `%M` (Debian: `time`).
//!
//! `PROMPTGATE_TEST_BINARY` runs another build (e.g. an older one, for before-and-after
//! figures); `PROMPTGATE_SCALE` limits the sizes (e.g. `10000,50000`);
//! `PROMPTGATE_SCALE_LATENCY_MS` sets the fake's latency (e.g. 5, to see a live run's memory
//! in seconds rather than minutes);
//! `PROMPTGATE_SCALE_FINDING_BYTES` pads the finding every case's prompt carries to about that
//! many bytes (e.g. 3000, a real Security Hub finding's size; default: the fixture's 90 bytes);
//! `PROMPTGATE_SCALE_KEEP=1` keeps each project folder, its warm cache in it, and prints where
//! (to profile a replay again without paying for the live run).
//! Run with `cargo bench --bench scale`.

mod common;
#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use support::fake_server::{FakeServer, Reply};
use support::Project;

const K: usize = 5;
const CONCURRENCY: usize = 64;
const LATENCY_MS: u64 = 50;

fn labels(n: usize) -> Vec<&'static str> {
    (0..n).map(|i| if i % 3 == 0 { "suppress" } else { "notify" }).collect()
}

/// `curl --parallel` over `count` POSTs of `body` to `url`; its wall time.
fn curl(project: &Project, url: &str, body: &[u8], count: usize) -> f64 {
    let body_path = project.file("curl-body.json");
    std::fs::write(&body_path, body).expect("write the body");
    let mut config = String::with_capacity(count * (url.len() + 10));
    for _ in 0..count {
        config.push_str("url = \"");
        config.push_str(url);
        config.push_str("\"\n");
    }
    let config_path = project.file("curl-urls.txt");
    std::fs::write(&config_path, config).expect("write curl's config");
    let started = Instant::now();
    let status = std::process::Command::new("curl")
        .args([
            "--silent",
            "--no-progress-meter",
            "--fail",
            "--parallel",
            "--parallel-max",
        ])
        .arg(CONCURRENCY.to_string())
        .args([
            "-H",
            "content-type: application/json",
            "-H",
            "authorization: Bearer test-key",
        ])
        .arg("--data-binary")
        .arg(format!("@{}", body_path.display()))
        .args(["-o", "/dev/null", "-K"])
        .arg(&config_path)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .expect("curl");
    let wall = started.elapsed().as_secs_f64();
    assert!(status.success(), "curl failed");
    wall
}

fn main() {
    let latency = Duration::from_millis(
        std::env::var("PROMPTGATE_SCALE_LATENCY_MS")
            .ok()
            .and_then(|ms| ms.parse().ok())
            .unwrap_or(LATENCY_MS),
    );
    let sizes: Vec<usize> = std::env::var("PROMPTGATE_SCALE")
        .ok()
        .map(|text| text.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![10_000, 50_000, 250_000]);
    let finding_bytes: Option<usize> = std::env::var("PROMPTGATE_SCALE_FINDING_BYTES")
        .ok()
        .and_then(|bytes| bytes.parse().ok());
    println!(
        "k = {K}, C = {CONCURRENCY}, {} ms per answer, findings of {} bytes; {}",
        latency.as_millis(),
        finding_bytes.unwrap_or(90),
        support::binary().display()
    );
    for samples in sizes {
        let cases = samples / K;
        let server = FakeServer::start(move |_| Reply::Delay(latency, Box::new(Reply::label("notify"))));
        let project = Project::new(&server.base_url, &labels(cases), K as u32, "");
        if let Some(bytes) = finding_bytes {
            let padding = "x".repeat(bytes.saturating_sub(90));
            project.write(
                "cases/s/findings/f.json",
                &format!(r#"{{"Id": "arn:aws:securityhub:ap-northeast-1:111122223333:x", "Severity": {{"Label": "LOW"}}, "Description": "{padding}"}}"#),
            );
        }
        let report = project.file("time.txt");
        let run = |offline: bool| {
            let mut command = project.std_command();
            command.args(["run", "--quiet", "--format", "json", "--concurrency"]);
            command.arg(CONCURRENCY.to_string());
            if offline {
                command.arg("--offline");
            }
            common::under_time(command, &report)
        };
        let (live, live_rss) = run(false);
        assert_eq!(server.request_count(), samples, "every sample called once");
        let (replay, replay_rss) = run(true);
        assert_eq!(server.request_count(), samples, "the replay called nothing");
        let mut dry = project.std_command();
        dry.args(["run", "--quiet", "--dry-run", "--format", "json"]);
        let (dry_wall, dry_rss) = common::under_time(dry, &report);
        assert_eq!(server.request_count(), samples, "the dry run called nothing");
        let body = server.seen().first().expect("a request").body.to_string();
        let url = format!("{}/chat/completions", server.base_url);
        let curl_wall = curl(&project, &url, body.as_bytes(), samples);
        assert_eq!(server.request_count(), 2 * samples, "curl sent every request");
        let ideal = samples as f64 * latency.as_secs_f64() / CONCURRENCY as f64;
        if std::env::var_os("PROMPTGATE_SCALE_KEEP").is_some() {
            let kept = project.dir.keep();
            println!("{samples:>7} samples: project kept in {}", kept.display());
        }
        println!(
            "{samples:>7} samples: live {live:.2} s (ideal {ideal:.2} s; curl --parallel {curl_wall:.2} s, ratio {:.3}), peak RSS {:.1} MiB; warm replay {replay:.2} s, peak RSS {:.1} MiB; dry run {dry_wall:.2} s, peak RSS {:.1} MiB",
            live / curl_wall,
            live_rss as f64 / 1024.0,
            replay_rss as f64 / 1024.0,
            dry_rss as f64 / 1024.0
        );
    }
}
