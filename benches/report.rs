//! The report of a large gated suite: 2,000 cases × 5 samples, every answer about 400
//! characters and every prompt carrying a 3 KB finding, 10% of the cases regressed. Prints the
//! HTML page's size, the time to write it and the pull-request Markdown, and (when Chromium is
//! installed) how long a headless Chromium takes to load and lay the page out, over an empty
//! page's start-up. Run with `cargo bench --bench report`.

mod common;
#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use promptgate::baseline::Baseline;
use promptgate::gate::{judge, GateOptions, Sampling};
use promptgate::report::{self, Format, Style};
use support::fake_server::{FakeServer, Reply};
use support::Project;

const CASES: usize = 2_000;
const SAMPLES: u32 = 5;
const REPEATS: usize = 5;

fn server(regressed: bool) -> FakeServer {
    FakeServer::start(move |seen| {
        let case: usize = seen.case_id().trim_start_matches('c').parse().expect("case id");
        let right = if case % 3 == 0 { "suppress" } else { "notify" };
        let wrong = if right == "suppress" { "notify" } else { "suppress" };
        let label = if regressed && case % 10 == 0 { wrong } else { right };
        let why =
            format!("case {case}: the rule names the node group tag and the finding's resource carries it. ").repeat(5);
        Reply::Content(serde_json::json!({"decision": label, "why": why}).to_string())
    })
}

fn main() {
    let before = server(false);
    let project = Project::new(&before.base_url, &common::labels(CASES), SAMPLES, "");
    // A finding the size of a real Security Hub control finding.
    let finding = serde_json::json!({
        "SchemaVersion": "2018-10-08",
        "Id": "arn:aws:securityhub:ap-northeast-1:111122223333:subscription/aws-foundational-security-best-practices/v/1.0.0/AutoScaling.2/finding/0d1c9a2b",
        "Title": "Auto Scaling group should cover multiple Availability Zones",
        "Description": "This control checks whether an Auto Scaling group spans multiple Availability Zones. ".repeat(12),
        "Compliance": {"SecurityControlId": "AutoScaling.2", "Status": "FAILED"},
        "Resources": (0..8).map(|i| serde_json::json!({
            "Type": "AwsAutoScalingAutoScalingGroup",
            "Id": format!("arn:aws:autoscaling:ap-northeast-1:111122223333:autoScalingGroup:uuid:autoScalingGroupName/eks-node-{i}"),
            "Tags": {"eks:nodegroup-name": format!("ng-{i}"), "env": "prod"}
        })).collect::<Vec<_>>()
    });
    project.write("cases/s/findings/f.json", &finding.to_string());
    let mut options = common::options(project.path(), SAMPLES, 64, false);
    options.answers = true;
    let (baseline_run, _) = common::timed(&options);
    let baseline = Baseline::from_result(&baseline_run.results[0], "bench");

    let after = server(true);
    let config = std::fs::read_to_string(project.file("promptgate.toml")).expect("config");
    project.write("promptgate.toml", &config.replace(&before.base_url, &after.base_url));
    options.cache_path = project.file("candidate.sqlite");
    let (candidate, _) = common::timed(&options);
    let gate = GateOptions {
        baseline_dir: project.file("baselines"),
        alpha: 0.05,
        margin: 0.0,
        exact: false,
        sampling: Sampling::Fixed,
        fail_on_broken: false,
    };
    let record = judge(candidate, &[baseline], &gate);
    let regressed = record.results[0]
        .baseline
        .as_ref()
        .map_or(0, |b| b.regressed_cases.len());

    let time = |format: Format| {
        let mut times = Vec::new();
        let mut text = String::new();
        for _ in 0..REPEATS {
            let started = Instant::now();
            text = report::exporter(format, &Style::default())
                .export(&record)
                .expect("export");
            times.push(started.elapsed());
        }
        (text, common::median(times))
    };
    let (page, page_time) = time(Format::Html);
    let (comment, comment_time) = time(Format::Markdown);
    println!(
        "report of {CASES} cases x {SAMPLES} samples ({regressed} regressed): HTML page {:.1} MB written in {:.0} ms (median of {REPEATS}); \
         pull-request Markdown {} characters in {:.0} ms",
        page.len() as f64 / 1e6,
        page_time.as_secs_f64() * 1e3,
        comment.chars().count(),
        comment_time.as_secs_f64() * 1e3
    );

    let Some(chromium) = chromium() else {
        println!("no chromium: the page's load time is not measured");
        return;
    };
    // Kept to look at: target/tmp/report-2000.html.
    let page_path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("report-{CASES}.html"));
    std::fs::write(&page_path, &page).expect("write the page");
    let empty_path = project.file("empty.html");
    std::fs::write(&empty_path, "<!DOCTYPE html><title>empty</title>").expect("write");
    let profile = tempfile::tempdir().expect("profile");
    let load = |path: &std::path::Path| {
        let mut times = Vec::new();
        for _ in 0..3 {
            let started = Instant::now();
            let output = std::process::Command::new(&chromium)
                .args(["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
                .arg(format!("--user-data-dir={}", profile.path().display()))
                .arg("--dump-dom")
                .arg(format!("file://{}#status=regressed", path.display()))
                .output()
                .expect("chromium");
            assert!(output.status.success());
            times.push(started.elapsed());
        }
        common::median(times)
    };
    let empty = load(&empty_path);
    let full = load(&page_path);
    println!(
        "headless Chromium: load, filter and dump the page {:.2} s, an empty page {:.2} s: about {:.2} s for the page itself (median of 3)",
        full.as_secs_f64(),
        empty.as_secs_f64(),
        full.saturating_sub(empty).max(Duration::ZERO).as_secs_f64()
    );
}

fn chromium() -> Option<std::path::PathBuf> {
    std::env::var_os("PROMPTGATE_CHROMIUM").map(Into::into).or_else(|| {
        std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join("chromium"))
                .find(|candidate| candidate.is_file())
        })
    })
}
