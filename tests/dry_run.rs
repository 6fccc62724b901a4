//! `--dry-run`: what a command would call, found without calling, against the fake server
//! (which counts every request it is sent).

mod support;

use support::fake_server::{FakeServer, Reply};
use support::Project;

/// A project of `cases` cases × 2 samples on a model with prices (USD 0.50 / 2.00 per million
/// input / output tokens); the fake answers every request right, reporting 40 / 7 tokens.
fn project(server: &FakeServer, cases: usize) -> Project {
    let labels = vec!["notify"; cases];
    let project = Project::new(&server.base_url, &labels, 2, "");
    let config = std::fs::read_to_string(project.file("promptgate.toml")).expect("config");
    let priced = config.replace(
        "seed = 100\n",
        "seed = 100\nprice_input_per_million = 0.5\nprice_output_per_million = 2.0\n",
    );
    assert_ne!(
        config, priced,
        "the fixture's model has a seed line to add prices after"
    );
    project.write("promptgate.toml", &priced);
    project
}

fn add_cases(project: &Project, ids: &[&str]) {
    let path = project.file("cases/s/cases.jsonl");
    let mut lines = std::fs::read_to_string(&path).expect("cases");
    for id in ids {
        lines.push_str(&format!(
            "{{\"id\": \"{id}\", \"vars\": {{\"rule\": \"new rule {id}\", \"finding\": {{}}}}, \"expect\": {{\"label\": \"notify\"}}}}\n"
        ));
    }
    std::fs::write(path, lines).expect("write cases");
}

#[test]
fn a_dry_run_on_an_empty_cache_calls_nothing_and_creates_nothing() {
    let server = FakeServer::start(|_| Reply::label("notify"));
    let project = project(&server, 6);
    let (plan, code) = project.json(&["run", "--dry-run"]);
    assert_eq!(code, 0);
    assert_eq!(plan["kind"], "dry_run");
    let row = &plan["rows"][0];
    assert_eq!((row["suite"].as_str(), row["model"].as_str()), (Some("s"), Some("m")));
    assert_eq!(
        (row["cases"].as_u64(), row["samples_per_case"].as_u64()),
        (Some(6), Some(2))
    );
    assert_eq!(
        (
            row["requests"].as_u64(),
            row["cached"].as_u64(),
            row["to_call"].as_u64()
        ),
        (Some(12), Some(0), Some(12))
    );
    // Nothing cached: nothing to estimate the tokens from, so no figure is made up.
    assert!(
        row.get("estimated_tokens").is_none() && row.get("estimated_cost_usd").is_none(),
        "{row}"
    );
    assert_eq!(plan["totals"]["rows_not_estimated"], 1);
    assert_eq!(server.request_count(), 0);
    assert!(
        !project.file(".promptgate/cache.sqlite").exists(),
        "a dry run made a cache"
    );
}

#[test]
fn a_dry_run_says_what_the_next_run_calls_and_estimates_its_cost_from_the_cached_tokens() {
    let server = FakeServer::start(|_| Reply::label("notify"));
    let project = project(&server, 6);
    project.command().args(["run", "--quiet"]).assert().success();
    assert_eq!(server.request_count(), 12);

    add_cases(&project, &["n1", "n2"]);
    let (plan, code) = project.json(&["run", "--dry-run"]);
    assert_eq!(code, 0);
    let row = &plan["rows"][0];
    assert_eq!(
        (
            row["requests"].as_u64(),
            row["cached"].as_u64(),
            row["to_call"].as_u64()
        ),
        (Some(16), Some(12), Some(4))
    );
    // Every cached answer reported 40 / 7 tokens: 4 calls ≈ 160 / 28 tokens,
    // 160 × 0.50 / 10⁶ + 28 × 2.00 / 10⁶ = 0.000136 USD.
    assert_eq!(row["estimated_from"], 12);
    assert_eq!(row["estimated_tokens"]["input"], 160);
    assert_eq!(row["estimated_tokens"]["output"], 28);
    let cost = row["estimated_cost_usd"].as_f64().expect("a cost");
    assert!((cost - 0.000_136).abs() < 1e-12, "{cost}");
    assert_eq!(plan["totals"]["to_call"], 4);
    assert_eq!(plan["totals"]["rows_not_estimated"], 0);
    assert_eq!(server.request_count(), 12, "the dry run called the provider");

    let table = project.command().args(["run", "--dry-run"]).assert().success();
    let text = String::from_utf8_lossy(&table.get_output().stdout).into_owned();
    assert!(
        text.contains("12 of 16 requests are cached; 4 would go to the providers, about $0.0001."),
        "{text}"
    );

    // What it said is what the run does.
    project.command().args(["run", "--quiet"]).assert().success();
    assert_eq!(server.request_count(), 16);
}

#[test]
fn a_dry_run_keeps_each_command_s_checks_and_writes_nothing() {
    let server = FakeServer::start(|_| Reply::label("notify"));
    let project = project(&server, 4);
    // The gate's check that every baseline exists still comes first.
    let missing = project.command().args(["gate", "--dry-run"]).assert().code(2);
    let stderr = String::from_utf8_lossy(&missing.get_output().stderr).into_owned();
    assert!(stderr.contains("baseline"), "{stderr}");

    project
        .command()
        .args(["baseline", "update", "--dry-run"])
        .assert()
        .success();
    assert!(!project.file("baselines").exists(), "a dry run wrote a baseline");
    assert_eq!(server.request_count(), 0);

    project
        .command()
        .args(["baseline", "update", "--quiet"])
        .assert()
        .success();
    let (plan, code) = project.json(&["gate", "--dry-run", "--sampling", "sequential"]);
    assert_eq!(code, 0);
    let row = &plan["rows"][0];
    assert_eq!(row["sequential"], true);
    assert_eq!((row["cached"].as_u64(), row["to_call"].as_u64()), (Some(8), Some(0)));
    assert_eq!(row["estimated_cost_usd"], 0.0);
    assert_eq!(server.request_count(), 8);
}

#[test]
fn max_calls_refuses_a_run_that_would_call_more_before_the_first_call() {
    let server = FakeServer::start(|_| Reply::label("notify"));
    let project = project(&server, 6);
    let refused = project.command().args(["run", "--max-calls", "11"]).assert().code(3);
    let stderr = String::from_utf8_lossy(&refused.get_output().stderr).into_owned();
    assert!(
        stderr.contains("would call the providers 12 times, more than --max-calls 11; nothing was called"),
        "{stderr}"
    );
    assert!(stderr.contains("hint: `--dry-run`"), "{stderr}");
    assert_eq!(server.request_count(), 0);

    project
        .command()
        .args(["run", "--quiet", "--max-calls", "12"])
        .assert()
        .success();
    assert_eq!(server.request_count(), 12);
    project
        .command()
        .args(["baseline", "update", "--quiet"])
        .assert()
        .success();

    // Only what is not cached counts: the two new cases' 4 calls, through the environment.
    add_cases(&project, &["n1", "n2"]);
    project
        .command()
        .args(["gate", "--quiet"])
        .env("PROMPTGATE_MAX_CALLS", "3")
        .assert()
        .code(3);
    assert_eq!(server.request_count(), 12);
    project
        .command()
        .args(["run", "--quiet"])
        .env("PROMPTGATE_MAX_CALLS", "4")
        .assert()
        .success();
    assert_eq!(server.request_count(), 16);
    // Everything cached: nothing to call is within any limit.
    project
        .command()
        .args(["run", "--quiet", "--max-calls", "0"])
        .assert()
        .success();
    assert_eq!(server.request_count(), 16);
}
