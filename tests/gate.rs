//! The gate end to end: baselines written by `baseline update`, compared by `gate`, exit 1 only
//! on a significant drop.

mod support;

use serde_json::{json, Value};
use support::fake_server::{completion, FakeServer, Reply, Seen};
use support::Project;

fn labels(n: usize) -> Vec<&'static str> {
    (0..n).map(|i| if i % 2 == 0 { "suppress" } else { "notify" }).collect()
}

fn expected(seen: &Seen) -> &'static str {
    let case: usize = seen.case_id().trim_start_matches('c').parse().expect("case id");
    if case % 2 == 0 {
        "suppress"
    } else {
        "notify"
    }
}

fn flip(label: &str) -> &'static str {
    if label == "suppress" {
        "notify"
    } else {
        "suppress"
    }
}

/// Right on every case except those `wrong` says, always.
fn server(wrong: fn(usize, i64) -> bool) -> FakeServer {
    FakeServer::start(move |seen| {
        let case: usize = seen.case_id().trim_start_matches('c').parse().expect("case id");
        let right = expected(seen);
        Reply::label(if wrong(case, seen.seed()) { flip(right) } else { right })
    })
}

/// What `gate --sampling sequential` prints in `format` with the answers in `cache`.
fn sequential_report(project: &Project, cache: &str, format: &str) -> String {
    let args = ["gate", "--sampling", "sequential", "--cache", cache, "--format", format];
    let output = project.command().args(args).output().expect("gate");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn gate_json(project: &Project, args: &[&str]) -> (Value, i32) {
    let mut all = vec!["gate"];
    all.extend_from_slice(args);
    project.json(&all)
}

#[test]
fn unchanged_run_passes_and_a_real_drop_fails_with_exit_1() {
    // Baseline: only c00 and c05 wrong, on one sample in three.
    let baseline_server = server(|case, seed| (case == 0 || case == 5) && seed == 100);
    let project = Project::new(&baseline_server.base_url, &labels(30), 3, "");
    project.command().args(["baseline", "update"]).assert().success();
    let text = std::fs::read_to_string(project.file("baselines/s/m.json")).unwrap();
    // One line per case, counts first, then the answers the baseline keeps.
    assert!(
        text.contains("\n    {\"id\":\"c00\",\"correct\":2,\"samples\":3,\"errors\":0,\"answers\":[{\"count\":2,\"outcome\":\"correct\",\"reason\":\"answered `suppress`\",\"excerpt\":\"{\\\"decision\\\":\\\"suppress\\\"}\"},{\"count\":1,\"outcome\":\"wrong\",\"reason\":\"answered `notify`, expected `suppress`\",\"excerpt\":\"{\\\"decision\\\":\\\"notify\\\"}\"}]},\n"),
        "{text}"
    );

    // Same answers (all from the cache): no significant change, exit 0.
    let (record, code) = gate_json(&project, &[]);
    assert_eq!(code, 0, "{record:#}");
    let b = &record["results"][0]["baseline"];
    assert_eq!(b["verdict"], "NoSignificantChange");
    assert_eq!(b["cases_compared"], 30);
    assert_eq!(b["changed_cases"], 0);
    assert_eq!(b["p_value"], 1.0);
    let mde = b["minimum_detectable_drop"].as_f64().unwrap();
    assert!(
        mde > 0.0 && mde < 0.3,
        "30 cases x 3 samples near 98% detect drops of {mde}"
    );
    assert_eq!(record["calls"]["made"], 0);
    assert_eq!(record["command"], "gate");

    // A candidate that got 12 cases wrong every time: a significant drop.
    let worse = server(|case, _| case % 5 == 1 || case % 5 == 3);
    let config = std::fs::read_to_string(project.file("promptgate.toml")).unwrap();
    project.write(
        "promptgate.toml",
        &config.replace(&baseline_server.base_url, &worse.base_url),
    );
    let (record, code) = gate_json(&project, &["--cache", "candidate.sqlite"]);
    assert_eq!(code, 1, "{record:#}");
    assert_eq!(record["verdict"], "regressed");
    let b = &record["results"][0]["baseline"];
    assert_eq!(b["verdict"], "Regressed");
    assert_eq!(b["regressed_cases"].as_array().unwrap().len(), 12);
    assert!(b["adjusted_p_value"].as_f64().unwrap() < 0.001);
    assert!(b["delta"]["point"].as_f64().unwrap() < -0.3);

    let markdown = project
        .command()
        .args(["gate", "--cache", "candidate.sqlite", "--format", "markdown"])
        .output()
        .unwrap();
    assert_eq!(markdown.status.code(), Some(1));
    let markdown = String::from_utf8_lossy(&markdown.stdout);
    assert!(
        markdown.starts_with("## promptgate gate: ❌ significant regression"),
        "{markdown}"
    );
    assert!(
        markdown.contains("❌ **Regressed**") && markdown.contains("`c01`"),
        "{markdown}"
    );
}

#[test]
fn a_tolerated_drop_passes_with_a_margin() {
    let baseline_server = server(|_, _| false);
    let project = Project::new(&baseline_server.base_url, &labels(40), 3, "");
    project.command().args(["baseline", "update"]).assert().success();
    // One sample in three wrong on 8 of 40 cases: a drop of 6.7 points.
    let worse = server(|case, seed| case % 5 == 0 && seed == 101);
    let config = std::fs::read_to_string(project.file("promptgate.toml")).unwrap();
    project.write(
        "promptgate.toml",
        &config.replace(&baseline_server.base_url, &worse.base_url),
    );
    let (strict, code) = gate_json(&project, &["--cache", "c.sqlite"]);
    assert_eq!(code, 1, "{strict:#}");
    let (tolerant, code) = gate_json(&project, &["--cache", "c.sqlite", "--margin", "0.1"]);
    assert_eq!(code, 0, "{tolerant:#}");
    assert_eq!(tolerant["results"][0]["baseline"]["margin"], 0.1);
}

#[test]
fn new_cases_are_reported_not_gated_and_a_missing_baseline_says_how_to_make_one() {
    let fake = server(|_, _| false);
    let project = Project::new(&fake.base_url, &labels(10), 1, "");
    project
        .command()
        .arg("gate")
        .assert()
        .code(2)
        .stderr(predicates::str::contains(
            "hint: create it with: promptgate baseline update --suite s --model m",
        ));
    project.command().args(["baseline", "update"]).assert().success();
    let cases = std::fs::read_to_string(project.file("cases/s/cases.jsonl")).unwrap();
    let added = cases
        + "{\"id\": \"c10\", \"vars\": {\"rule\": \"new\", \"finding\": {}}, \"expect\": {\"label\": \"suppress\"}}\n";
    let without_first: String = added.lines().skip(1).map(|l| format!("{l}\n")).collect();
    project.write("cases/s/cases.jsonl", &without_first);
    let (record, code) = gate_json(&project, &[]);
    assert_eq!(code, 0, "{record:#}");
    let b = &record["results"][0]["baseline"];
    assert_eq!(b["new_cases"], serde_json::json!(["c10"]));
    assert_eq!(b["missing_cases"], serde_json::json!(["c00"]));
    assert_eq!(b["cases_compared"], 9);
    assert_eq!(b["new_cases_accuracy"]["point"], 1.0);
}

#[test]
fn provider_failures_make_the_gate_inconclusive_not_green() {
    let fake = server(|_, _| false);
    let project = Project::new(&fake.base_url, &labels(10), 1, "");
    project.command().args(["baseline", "update"]).assert().success();
    let failing = FakeServer::start(|seen| {
        if seen.case_id() == "c03" {
            Reply::server_error(503)
        } else {
            Reply::label(expected(seen))
        }
    });
    let config = std::fs::read_to_string(project.file("promptgate.toml")).unwrap();
    project.write("promptgate.toml", &config.replace(&fake.base_url, &failing.base_url));
    let (record, code) = gate_json(&project, &["--cache", "other.sqlite"]);
    assert_eq!(code, 3, "{record:#}");
    assert_eq!(record["results"][0]["baseline"]["verdict"], "Inconclusive");
    // And a baseline is never written from an inconclusive run.
    let before = std::fs::read_to_string(project.file("baselines/s/m.json")).unwrap();
    project
        .command()
        .args(["--cache", "other.sqlite", "baseline", "update"])
        .assert()
        .code(3);
    assert_eq!(
        std::fs::read_to_string(project.file("baselines/s/m.json")).unwrap(),
        before
    );
}

#[test]
fn a_real_improvement_is_reported_as_improved_and_passes() {
    let worse = server(|case, _| case % 3 == 0);
    let project = Project::new(&worse.base_url, &labels(30), 2, "");
    project.command().args(["baseline", "update"]).assert().success();
    let better = server(|_, _| false);
    let config = std::fs::read_to_string(project.file("promptgate.toml")).unwrap();
    project.write("promptgate.toml", &config.replace(&worse.base_url, &better.base_url));
    let (record, code) = gate_json(&project, &["--cache", "better.sqlite"]);
    assert_eq!(code, 0, "{record:#}");
    let b = &record["results"][0]["baseline"];
    assert_eq!(b["verdict"], "Improved");
    assert_eq!(b["improved_cases"].as_array().unwrap().len(), 10);
    assert!(b["delta"]["lower"].as_f64().unwrap() > 0.0);
    assert!(
        b["p_value"].as_f64().unwrap() > 0.99,
        "an improvement is no evidence of a drop"
    );
}

/// The gate as a library call, without spawning the binary: a missing baseline is found before
/// the first call; with the baselines in place, a drop prints a Regressed record and returns
/// exit code 1.
#[test]
fn the_gate_command_runs_in_process_and_checks_its_baselines_first() {
    use promptgate::command::{run, Console};
    use promptgate::env::EnvVars;
    use promptgate::gate::GateOptions;
    use promptgate::report::{Format, Style};
    use promptgate::secrets::Secrets;

    let server = server(|case, _| case < 8);
    let project = Project::new(&server.base_url, &labels(24), 3, "");
    let options = promptgate::RunOptions {
        concurrency: Some(4),
        ..promptgate::RunOptions::new(
            project.file("promptgate.toml"),
            project.file(".promptgate/cache.sqlite"),
            EnvVars::from_pairs([("OPENAI_API_KEY", "sk-inprocess-0123456789abcdef")]),
        )
    };
    let gate = GateOptions {
        baseline_dir: project.file("baselines"),
        alpha: 0.05,
        margin: 0.0,
        exact: false,
        sampling: promptgate::gate::Sampling::Fixed,
        fail_on_broken: false,
    };
    let output = run::Output {
        format: Format::Json,
        style: Style::default(),
        out: vec![],
        answers: false,
        redact: false,
    };
    let secrets = Secrets::default();
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let missing = run::gate(
        &options,
        &gate,
        &output,
        &mut Console::new(&mut out, &mut err, &secrets),
    );
    assert!(missing.unwrap_err().to_string().contains("baselines"));
    assert_eq!(server.request_count(), 0);

    // Baselines from a run where every case is right, then the gate on the same wrong answers.
    let right = FakeServer::start(|seen| Reply::label(expected(seen)));
    let baseline_project = Project::new(&right.base_url, &labels(24), 3, "");
    // A baseline that could not be written is found before the first call.
    let blocked = baseline_project.file("not-a-folder");
    std::fs::write(&blocked, "").unwrap();
    let error = run::update_baselines(
        &promptgate::RunOptions {
            config_path: baseline_project.file("promptgate.toml"),
            cache_path: baseline_project.file(".promptgate/cache.sqlite"),
            ..options.clone()
        },
        &blocked.join("baselines"),
        false,
        None,
        &mut Console::new(&mut out, &mut err, &secrets),
    )
    .unwrap_err();
    assert!(error.to_string().contains("is not a folder"), "{error}");
    assert_eq!(right.request_count(), 0);
    let code = run::update_baselines(
        &promptgate::RunOptions {
            config_path: baseline_project.file("promptgate.toml"),
            cache_path: baseline_project.file(".promptgate/cache.sqlite"),
            ..options.clone()
        },
        &gate.baseline_dir,
        false,
        None,
        &mut Console::new(&mut out, &mut err, &secrets),
    )
    .unwrap();
    assert_eq!(code, 0, "{}", String::from_utf8_lossy(&err));
    out.clear();
    let code = run::gate(
        &options,
        &gate,
        &output,
        &mut Console::new(&mut out, &mut err, &secrets),
    )
    .unwrap();
    let record: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!((code, record["verdict"].as_str()), (1, Some("regressed")));
    assert_eq!(server.request_count(), 24 * 3);
}

/// 200 cases: every fifth always wrong, and on every tenth one wrong sample whose position
/// cycles through the five, so that each look sees as many early as late misses.
fn noisy(case: usize, seed: i64) -> bool {
    case % 5 == 1 || (case % 10 == 0 && seed - 100 == (case / 10 % 5) as i64)
}

#[test]
fn a_sequential_gate_stops_early_and_agrees_with_the_fixed_gate() {
    let baseline_server = server(noisy);
    let project = Project::new(&baseline_server.base_url, &labels(200), 5, "");
    project.command().args(["baseline", "update"]).assert().success();
    assert_eq!(baseline_server.seen().len(), 1000);
    let config = std::fs::read_to_string(project.file("promptgate.toml")).unwrap();
    let fixed_calls = 200 * 5;

    // Nothing changed: the same answers from a fresh server and a fresh cache.
    let same = server(noisy);
    project.write(
        "promptgate.toml",
        &config.replace(&baseline_server.base_url, &same.base_url),
    );
    let (record, code) = gate_json(&project, &["--sampling", "sequential", "--cache", "same.sqlite"]);
    assert_eq!(code, 0, "{record:#}");
    let calls = same.seen().len();
    assert!(calls < fixed_calls, "{calls} calls");
    let result = &record["results"][0];
    assert_eq!(result["sequential"]["stop"], "futility", "{result:#}");
    assert_eq!(result["sequential"]["samples_taken"], calls);
    assert_eq!(result["sequential"]["samples_fixed"], fixed_calls);
    assert_eq!(result["baseline"]["verdict"], "NoSignificantChange");
    // Warm: the same verdict, not one call.
    let (again, code) = gate_json(&project, &["--sampling", "sequential", "--cache", "same.sqlite"]);
    assert_eq!(code, 0);
    assert_eq!(same.seen().len(), calls);
    assert_eq!(again["results"][0]["sequential"], result["sequential"]);
    // The fixed gate on the same answers (the sequential ones reused from the cache).
    let (fixed, code) = gate_json(&project, &["--cache", "same.sqlite"]);
    assert_eq!(code, 0);
    assert_eq!(fixed["results"][0]["baseline"]["verdict"], "NoSignificantChange");
    assert_eq!(same.seen().len(), fixed_calls, "the fixed gate paid only for the rest");
    assert!(fixed["results"][0].get("sequential").is_none());

    // Ten cases that were right now always wrong.
    let collapsed = server(|case, seed| noisy(case, seed) || (case % 20 == 3));
    project.write(
        "promptgate.toml",
        &config.replace(&baseline_server.base_url, &collapsed.base_url),
    );
    let (record, code) = gate_json(&project, &["--sampling", "sequential", "--cache", "collapsed.sqlite"]);
    assert_eq!(code, 1, "{record:#}");
    let calls = collapsed.seen().len();
    assert!(calls < fixed_calls, "{calls} calls");
    let result = &record["results"][0];
    assert_eq!(result["sequential"]["stop"], "efficacy", "{result:#}");
    assert_eq!(result["baseline"]["verdict"], "Regressed");
    let p = result["baseline"]["p_value"].as_f64().unwrap();
    assert_eq!(p, result["sequential"]["p_value"].as_f64().unwrap());
    assert!(p <= 0.05, "{p}");
    let (fixed, code) = gate_json(&project, &["--cache", "collapsed.sqlite"]);
    assert_eq!(code, 1);
    assert_eq!(fixed["results"][0]["baseline"]["verdict"], "Regressed");

    // Every format says how the sequential gate sampled.
    for format in ["terminal", "markdown", "junit"] {
        let text = sequential_report(&project, "collapsed.sqlite", format);
        assert!(
            text.contains("sequential: stopped for a regression at look")
                && text.contains(&format!("used {calls} of {fixed_calls} samples")),
            "{format}: {text}"
        );
    }
}

/// With one sample per case the sequential gate looks at a third, two thirds and all of the
/// cases (in the order of their ids' digests), so a clear verdict still saves calls.
#[test]
fn a_one_sample_sequential_gate_looks_at_thirds_of_the_cases() {
    // Baseline: every fifth case wrong.
    let baseline_server = server(|case, _| case % 5 == 1);
    let project = Project::new(&baseline_server.base_url, &labels(200), 1, "");
    project.command().args(["baseline", "update"]).assert().success();
    let config = std::fs::read_to_string(project.file("promptgate.toml")).unwrap();
    let use_server = |server: &FakeServer| {
        project.write(
            "promptgate.toml",
            &config.replace(&baseline_server.base_url, &server.base_url),
        )
    };

    // A change that fixed ten cases and broke ten others: no drop on the whole.
    let even = server(|case, _| (case % 5 == 1 && case % 20 != 1) || case % 20 == 2);
    use_server(&even);
    let (record, code) = gate_json(&project, &["--sampling", "sequential", "--cache", "even.sqlite"]);
    assert_eq!(code, 0, "{record:#}");
    let calls = even.seen().len();
    let sequential = &record["results"][0]["sequential"];
    assert!(calls < 200, "{calls} calls");
    assert_eq!(sequential["stop"], "futility", "{sequential:#}");
    assert_eq!(sequential["samples_taken"], calls);
    assert_eq!(sequential["cases_taken"], calls);
    assert_eq!(
        (
            sequential["cases_planned"].as_u64(),
            sequential["looks_planned"].as_u64()
        ),
        (Some(200), Some(3))
    );
    assert!(
        [67, 134].contains(&calls),
        "{calls} is a third or two thirds of the cases"
    );
    let (fixed, code) = gate_json(&project, &["--cache", "even.sqlite"]);
    assert_eq!(code, 0);
    assert_eq!(fixed["results"][0]["baseline"]["verdict"], "NoSignificantChange");
    assert_eq!(
        even.seen().len(),
        200,
        "the fixed gate paid only for the cases not yet asked"
    );

    // Ten cases that were right are now wrong.
    let collapsed = server(|case, _| case % 5 == 1 || case % 20 == 3);
    use_server(&collapsed);
    let (record, code) = gate_json(&project, &["--sampling", "sequential", "--cache", "collapsed.sqlite"]);
    assert_eq!(code, 1, "{record:#}");
    let calls = collapsed.seen().len();
    assert!(calls < 200, "{calls} calls");
    assert_eq!(record["results"][0]["sequential"]["stop"], "efficacy");
    assert_eq!(record["results"][0]["baseline"]["verdict"], "Regressed");
    let (fixed, code) = gate_json(&project, &["--cache", "collapsed.sqlite"]);
    assert_eq!(code, 1);
    assert_eq!(fixed["results"][0]["baseline"]["verdict"], "Regressed");
    let text = sequential_report(&project, "collapsed.sqlite", "terminal");
    assert!(
        text.contains(&format!(
            "({calls} of 200 cases, 1 of 1 samples each): used {calls} of 200 samples"
        )),
        "{text}"
    );
}

/// Right on every case, as `model` with backend `fingerprint`.
fn answering_as(model: &'static str, fingerprint: &'static str) -> FakeServer {
    FakeServer::start(move |seen| {
        let mut body = completion(&json!({"decision": expected(seen)}).to_string(), model);
        body["system_fingerprint"] = json!(fingerprint);
        Reply::Raw {
            status: 200,
            body: body.to_string(),
            headers: vec![],
        }
    })
}

#[test]
fn a_new_model_version_behind_the_alias_is_said_first_in_every_format() {
    let before = answering_as("gpt-4o-mini-2024-07-18", "fp_0aa8d3e20b");
    let project = Project::new(&before.base_url, &labels(12), 2, "");
    project.command().args(["baseline", "update"]).assert().success();
    let text = std::fs::read_to_string(project.file("baselines/s/m.json")).unwrap();
    assert!(
        text.contains(
            r#""model_versions": [{"model":"gpt-4o-mini-2024-07-18","fingerprint":"fp_0aa8d3e20b","samples":24}],"#
        ),
        "{text}"
    );
    // The same answers, from the cache: nothing to say.
    let (record, code) = gate_json(&project, &[]);
    assert_eq!(code, 0, "{record:#}");
    assert!(
        record["results"][0]["baseline"].get("model_change").is_none(),
        "{record:#}"
    );
    assert_eq!(record["results"][0]["model_versions"][0]["samples"], 24);

    // The alias now resolves to another snapshot, and CI starts with an empty cache.
    let after = answering_as("gpt-4o-mini-2025-04-14", "fp_9f2c1e");
    let config = std::fs::read_to_string(project.file("promptgate.toml")).unwrap();
    project.write("promptgate.toml", &config.replace(&before.base_url, &after.base_url));
    let gate = |format: &str| {
        let output = project
            .command()
            .args(["gate", "--cache", "fresh.sqlite", "--format", format])
            .output()
            .expect("gate");
        assert_eq!(output.status.code(), Some(0), "same accuracy: the verdict stands");
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let record: Value = serde_json::from_str(&gate("json")).expect("JSON");
    let change = &record["results"][0]["baseline"]["model_change"];
    assert_eq!(
        change["new"],
        json!([{"model": "gpt-4o-mini-2025-04-14", "fingerprint": "fp_9f2c1e"}])
    );
    assert_eq!(change["baseline"][0]["model"], "gpt-4o-mini-2024-07-18");
    assert_eq!(change["candidate"][0]["samples"], 24);
    assert_eq!(record["results"][0]["baseline"]["verdict"], "NoSignificantChange");
    let said = "the baseline was answered by gpt-4o-mini-2024-07-18 (fp_0aa8d3e20b) ×24, \
                this run by gpt-4o-mini-2025-04-14 (fp_9f2c1e) ×24";
    let terminal = gate("terminal");
    let first = terminal.find(&format!("model changed s/m: {said}")).expect(&terminal);
    assert!(first < terminal.find("gate s/m:").expect(&terminal), "{terminal}");
    let markdown = gate("markdown");
    let escaped = said.replace('(', "\\(").replace(')', "\\)").replace('_', "\\_");
    let first = markdown.find(&format!("model changed: {escaped}")).expect(&markdown);
    assert!(first < markdown.find("| verdict |").expect(&markdown), "{markdown}");
    let junit = gate("junit");
    assert!(junit.contains(&format!("<system-out>model changed: {said}")), "{junit}");
    // Only the first of the four gates paid for answers.
    assert_eq!(after.request_count(), 24);
}

#[test]
fn a_case_that_broke_is_listed_and_fails_the_gate_only_with_fail_on_broken() {
    let before = server(|_, _| false);
    let project = Project::new(&before.base_url, &labels(30), 3, "");
    project.command().args(["baseline", "update"]).assert().success();
    // Now c07 is always wrong and c08 right once in three: one case of thirty is no
    // significant drop.
    let after = server(|case, seed| case == 7 || (case == 8 && seed != 100));
    let config = std::fs::read_to_string(project.file("promptgate.toml")).unwrap();
    project.write("promptgate.toml", &config.replace(&before.base_url, &after.base_url));
    let (record, code) = gate_json(&project, &["--cache", "after.sqlite"]);
    assert_eq!(code, 0, "{record:#}");
    let b = &record["results"][0]["baseline"];
    assert_eq!(b["verdict"], "NoSignificantChange");
    assert_eq!(b["transitions"]["broke"], json!(["c07"]));
    assert_eq!(b["transitions"]["became_flaky"], json!(["c08"]));
    let flakiness = &record["results"][0]["flakiness"];
    assert_eq!(
        (
            flakiness["stable_pass"].as_u64(),
            flakiness["flaky"].as_u64(),
            flakiness["stable_fail"].as_u64()
        ),
        (Some(28), Some(1), Some(1))
    );
    let (record, code) = gate_json(&project, &["--cache", "after.sqlite", "--fail-on-broken"]);
    assert_eq!(code, 1, "{record:#}");
    let b = &record["results"][0]["baseline"];
    assert_eq!(b["verdict"], "Regressed");
    assert!(b["note"].as_str().unwrap().contains("--fail-on-broken"), "{b:#}");
    assert_eq!(record["calls"]["made"], 0, "the second gate is served from the cache");
}
