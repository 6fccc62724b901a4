//! The drift canary end to end: fresh answers in an epoch of their own, a two-sided comparison
//! with the baseline, and the cache's earlier answers left as they were.

mod support;

use serde_json::{json, Value};
use support::fake_server::{completion, FakeServer, Reply, Seen};
use support::Project;

fn labels(n: usize) -> Vec<&'static str> {
    (0..n).map(|i| if i % 2 == 0 { "suppress" } else { "notify" }).collect()
}

fn case(seen: &Seen) -> usize {
    seen.case_id().trim_start_matches('c').parse().expect("case id")
}

/// A server answering as `model`, wrong on the cases `wrong` names.
fn server(model: &'static str, wrong: fn(usize) -> bool) -> FakeServer {
    FakeServer::start(move |seen| {
        let right = if case(seen) % 2 == 0 { "suppress" } else { "notify" };
        let answer = match (wrong(case(seen)), right) {
            (false, label) => label,
            (true, "suppress") => "notify",
            (true, _) => "suppress",
        };
        Reply::Raw {
            status: 200,
            body: completion(&json!({"decision": answer}).to_string(), model).to_string(),
            headers: vec![],
        }
    })
}

fn drift(project: &Project, args: &[&str]) -> (Value, i32) {
    let mut all = vec!["drift"];
    all.extend_from_slice(args);
    project.json(&all)
}

#[test]
fn the_canary_samples_afresh_detects_a_20_point_move_and_keeps_the_cache() {
    let before = server("gpt-4o-mini-2024-07-18", |case| case == 3);
    let project = Project::new(&before.base_url, &labels(30), 3, "");
    project.command().args(["baseline", "update"]).assert().success();
    assert_eq!(before.request_count(), 90);
    let rows = project.cached_rows();

    // Nothing moved: 90 fresh calls (none served from the baseline's answers), no drift.
    let (record, code) = drift(&project, &["--epoch", "day-1"]);
    assert_eq!(code, 0, "{record:#}");
    assert_eq!(
        (record["command"].as_str(), record["verdict"].as_str()),
        (Some("drift"), Some("pass"))
    );
    assert_eq!(
        (record["calls"]["made"].as_u64(), record["calls"]["cached"].as_u64()),
        (Some(90), Some(0))
    );
    let d = &record["results"][0]["drift"];
    assert_eq!(d["verdict"], "NoSignificantChange");
    assert_eq!(d["epoch"], "day-1");
    assert_eq!(d["p_value"], 1.0);
    assert_eq!(d["versions"], d["baseline_versions"]);
    assert!(
        d["minimum_detectable_difference"]
            .as_f64()
            .is_some_and(|m| m > 0.0 && m < 0.5),
        "{d:#}"
    );
    assert_eq!(
        project.cached_rows(),
        rows + 90,
        "the canary's answers are kept beside the baseline's"
    );

    // The same epoch again: served from the cache.
    let (again, code) = drift(&project, &["--epoch", "day-1"]);
    assert_eq!(code, 0);
    assert_eq!(again["calls"]["made"], 0);

    // The alias moved to a snapshot that gets six more cases wrong: 20 points down.
    let after = server("gpt-4o-mini-2025-04-14", |case| case < 7);
    let config = std::fs::read_to_string(project.file("promptgate.toml")).unwrap();
    project.write("promptgate.toml", &config.replace(&before.base_url, &after.base_url));
    let (record, code) = drift(&project, &["--epoch", "day-2"]);
    assert_eq!(code, 7, "{record:#}");
    assert_eq!(record["verdict"], "drifted");
    let d = &record["results"][0]["drift"];
    assert_eq!(d["verdict"], "Drifted");
    assert!((d["delta"]["point"].as_f64().unwrap() + 0.2).abs() < 1e-12, "{d:#}");
    assert!(d["adjusted_p_value"].as_f64().unwrap() < 0.05);
    assert_eq!(d["versions"][0]["model"], "gpt-4o-mini-2025-04-14");
    assert_eq!(d["baseline_versions"][0]["model"], "gpt-4o-mini-2024-07-18");
    for (format, said) in [
        ("terminal", "drift s/m: Drifted — Δ -20.0 pts"),
        ("markdown", "⚠️ **Drifted**"),
        ("junit", "type=\"Drifted\""),
    ] {
        let output = project
            .command()
            .args(["drift", "--epoch", "day-2", "--format", format])
            .output()
            .expect("drift");
        assert_eq!(output.status.code(), Some(7));
        let text = String::from_utf8_lossy(&output.stdout);
        assert!(text.contains(said), "{format}: {text}");
        assert!(text.contains("gpt-4o-mini-2025-04-14"), "{format}: {text}");
    }
    assert_eq!(after.request_count(), 90, "each epoch is paid for once");

    // The baseline's answers are intact: the gate replays them without a call.
    let config = std::fs::read_to_string(project.file("promptgate.toml")).unwrap();
    project.write(
        "promptgate.toml",
        &config.replace(&after.base_url, "http://127.0.0.1:9"),
    );
    let (gate, code) = project.json(&["gate", "--offline"]);
    assert_eq!(code, 0, "{gate:#}");
    assert_eq!(gate["calls"]["cached"], 90);
}

#[test]
fn a_canary_needs_its_baselines_and_a_plain_epoch_before_any_call() {
    let server = server("m", |_| false);
    let project = Project::new(&server.base_url, &labels(4), 2, "");
    let output = project.command().args(["drift"]).output().expect("drift");
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("promptgate baseline update"));
    project.command().args(["baseline", "update"]).assert().success();
    let calls = server.request_count();
    let output = project
        .command()
        .args(["drift", "--epoch", "a b"])
        .output()
        .expect("drift");
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("cannot name an epoch"));
    assert_eq!(server.request_count(), calls);
    // Today's epoch by default.
    let (record, code) = project.json(&["drift"]);
    assert_eq!(code, 0, "{record:#}");
    assert!(record["results"][0]["drift"]["epoch"]
        .as_str()
        .unwrap()
        .starts_with("drift-20"));
}
