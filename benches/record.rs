//! Redaction and fingerprinting, the work `record` does per finding: on AWS's GuardDuty sample
//! finding (4.5 KB, the usual size) and on a 23 MB one (far past Security Hub's 240 KB limit per
//! finding, to show the cost grows linearly). Run with `cargo bench --bench record`.

use std::time::{Duration, Instant};

use promptgate::record::fingerprint::fingerprint;
use promptgate::record::redact::Redactor;
use serde_json::{json, Value};

fn sample() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/public/guardduty-asff-ssh-brute-force.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).expect("fixture")).expect("json")
}

/// Median time to redact and fingerprint `finding` with a rule, over `repeats` runs.
fn measure(finding: &Value, repeats: usize) -> Duration {
    let redactor = Redactor::default();
    let mut times = Vec::with_capacity(repeats);
    for _ in 0..repeats {
        let started = Instant::now();
        let mut vars = json!({"finding": finding.clone(), "rule": "アカウント 193043430472 の 172.31.43.6 は抑制する"});
        let report = redactor.redact(&mut [&mut vars]);
        let print = fingerprint(vars.as_object().expect("object"));
        times.push(started.elapsed());
        std::hint::black_box((report, print));
    }
    times.sort();
    times[times.len() / 2]
}

fn main() {
    let small = sample();
    let small_bytes = small.to_string().len();
    let median = measure(&small, 2_000);
    println!("sample finding ({small_bytes} bytes): median {median:.2?} per redaction + fingerprint");

    let mut large = sample();
    large["Description"] = json!("arn:aws:iam::123456789012:root was seen at 203.0.113.77. ".repeat(400_000));
    let large_bytes = large.to_string().len();
    let median = measure(&large, 5);
    let rate = large_bytes as f64 / median.as_secs_f64() / 1e6;
    println!(
        "large finding ({:.1} MB): median {median:.2?} ({rate:.0} MB/s)",
        large_bytes as f64 / 1e6
    );
}
