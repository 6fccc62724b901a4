//! Hostile servers and inputs against the real binary: every failure is a clear message with
//! its own exit code, never a panic, never a leaked key, never a call paid for in vain.

mod support;

use std::io::Read;
use std::process::Stdio;

use serde_json::Value;
use support::fake_server::{FakeServer, Reply};
use support::Project;

/// Rewrite the project's config.
fn edit_config(project: &Project, from: &str, to: &str) {
    let text = std::fs::read_to_string(project.file("promptgate.toml")).expect("config");
    assert!(text.contains(from), "`{from}` not in the config");
    project.write("promptgate.toml", &text.replace(from, to));
}

/// Run and return (stdout, stderr, exit code); no run may panic.
fn output(project: &Project, args: &[&str]) -> (String, String, i32) {
    let output = project.command().args(args).output().expect("run");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_ne!(output.status.code(), Some(101), "{stderr}");
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr,
        output.status.code().expect("exit code"),
    )
}

/// Make every insert into `table` of the project's cache fail, as on a full disk, and run: the
/// run must exit 6 and still print its record. Returns (record, stderr).
fn run_with_a_full_table(project: &Project, table: &str) -> (Value, String) {
    rusqlite::Connection::open(project.file(".promptgate/cache.sqlite"))
        .unwrap()
        .execute_batch(&format!(
            "CREATE TRIGGER full BEFORE INSERT ON {table} BEGIN SELECT RAISE(FAIL, 'database or disk is full'); END;"
        ))
        .unwrap();
    let output = project
        .command()
        .args(["run", "--format", "json"])
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(6), "{stderr}");
    let record = serde_json::from_slice(&output.stdout).expect("the run is still reported");
    (record, stderr)
}

#[test]
fn hostile_retry_after_values_are_clamped_not_panics() {
    for (header, value) in [
        ("retry-after", "1e300"),
        ("retry-after", "99999999999999999999"),
        ("retry-after-ms", "1e300"),
        ("retry-after", "inf"),
    ] {
        let server = FakeServer::start(move |seen| {
            if seen.attempt == 0 {
                Reply::Raw {
                    status: 429,
                    body: "{}".into(),
                    headers: vec![(header.into(), value.into())],
                }
            } else {
                Reply::label("notify")
            }
        });
        let project = Project::new(&server.base_url, &["notify", "suppress"], 2, "");
        edit_config(&project, "retry_max_ms = 3000", "retry_max_ms = 20");
        let (record, code) = project.json(&["run"]);
        assert_eq!(code, 0, "{header}: {value}: {record:#}");
        assert_eq!(record["calls"]["made"], 4);
        assert_eq!(record["calls"]["attempts"], 8, "{record:#}");
    }
}

#[test]
fn oversized_and_endless_answers_are_failed_calls_never_cached() {
    let big = serde_json::json!({"x": "y".repeat(200_000)}).to_string();
    for reply in [
        Reply::Raw {
            status: 200,
            body: big.clone(),
            headers: vec![],
        },
        Reply::Endless,
    ] {
        let server = FakeServer::start(move |_| reply.clone());
        let project = Project::new(&server.base_url, &["notify"], 1, "max_response_bytes = 65536");
        edit_config(&project, "max_attempts = 4", "max_attempts = 2");
        let (record, code) = project.json(&["run"]);
        assert_eq!(code, 3, "{record:#}");
        let result = &record["results"][0];
        assert_eq!(result["errors_by_kind"]["bad_response"], 1, "{result:#}");
        assert!(
            result["first_error"].as_str().unwrap().contains("max_response_bytes"),
            "{result:#}"
        );
        assert_eq!(project.cached_rows(), 0);
    }
    // Bedrock reads through the SDK: bounded all the same.
    let server = FakeServer::start(move |_| Reply::Raw {
        status: 200,
        body: big.clone(),
        headers: vec![],
    });
    let project = Project::bedrock(
        &server.endpoint,
        "anthropic.claude-3-5-sonnet-20240620-v1:0",
        &["notify"],
        1,
    );
    edit_config(
        &project,
        "retry_max_ms = 3000",
        "retry_max_ms = 20\nmax_response_bytes = 65536",
    );
    let (record, code) = project.json(&["run"]);
    assert_eq!(code, 3, "{record:#}");
    assert_eq!(record["results"][0]["errors_by_kind"]["bad_response"], 1, "{record:#}");
    assert_eq!(project.cached_rows(), 0);
}

#[test]
fn an_answer_within_bounds_but_huge_makes_short_reasons_in_every_report() {
    // A megabyte label: an answer the provider may send (under `max_response_bytes`), which
    // the label grader's reason quotes.
    let huge = "x".repeat(1 << 20);
    let server = FakeServer::start(move |_| Reply::label(&huge));
    let project = Project::new(&server.base_url, &["notify"], 2, "");
    let (record, code) = project.json(&["run"]);
    assert_eq!(code, 0, "{record:#}");
    let misses = record["results"][0]["per_case"][0]["misses"].as_array().unwrap();
    assert_eq!(misses.len(), 2, "{record:#}");
    for miss in misses {
        let reason = miss["reason"].as_str().unwrap();
        assert!(
            reason.starts_with("`decision` is `xxx") && reason.ends_with('…'),
            "{reason}"
        );
        assert!(reason.chars().count() <= 401 && miss["excerpt"].as_str().unwrap().chars().count() <= 121);
    }
    let (terminal, _, code) = output(&project, &["run", "--offline"]);
    assert_eq!(code, 0);
    assert!(terminal.len() < 4_000, "{} bytes of terminal output", terminal.len());
}

/// `text` without the colour sequences (`ESC [ digits and ; m`) the reports paint with.
fn without_colours(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find("\u{1b}[") {
        out.push_str(&rest[..at]);
        let after = &rest[at + 2..];
        let end = after
            .find(|c: char| !c.is_ascii_digit() && c != ';')
            .unwrap_or(after.len());
        if after[end..].starts_with('m') {
            rest = &after[end + 1..];
        } else {
            out.push_str("\u{1b}[");
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

#[test]
fn terminal_control_sequences_in_answers_never_reach_the_terminal() {
    // A title change, a screen clear and a colour inside the label's value, and a bell.
    let hostile = "\u{1b}]0;pwned\u{7}\u{1b}[2J";
    // Case c00 answers JSON with the colour inside its label, the other case prose.
    let server = FakeServer::start(move |seen| match seen.body.to_string().contains("c00") {
        true => Reply::Content(format!("{hostile}{{\"decision\": \"\u{1b}[31mnotify\"}}")),
        false => Reply::Content(format!("{hostile} I would say notify{hostile}")),
    });
    let project = Project::new(&server.base_url, &["notify", "suppress"], 2, "");
    // A cache import file is input too: a model name with the same sequences.
    let line = serde_json::json!({
        "key": "ab".repeat(32), "provider": "openai", "model": format!("m{hostile}"), "sample_index": 0,
        "text": "x", "tool_calls": [], "raw_body": "{}", "latency_ms": 1, "created_at": "2026-12-05T00:00:00Z",
    });
    project.write(
        "import.jsonl",
        &format!("{{\"format\":\"promptgate-cache\",\"schema_version\":1}}\n{line}\n"),
    );
    let (_, stderr, code) = output(&project, &["cache", "import", "import.jsonl"]);
    assert_eq!(code, 0, "{stderr}");
    for args in [
        &["run", "--color", "never", "-v"][..],
        &["run", "--offline", "--color", "always", "-v", "--format", "markdown"][..],
        &["gate", "--offline", "--color", "never"][..],
        &["cache", "stats", "--color", "never"][..],
    ] {
        let (stdout, stderr, _) = output(&project, args);
        for (name, text) in [("stdout", &stdout), ("stderr", &stderr)] {
            // Shown (as `�]0;pwned`), never acted on: no escape but the report's own colours.
            let foreign = match args.contains(&"never") {
                true => text.to_string(),
                false => without_colours(text),
            };
            assert!(
                !foreign.contains('\u{1b}') && !foreign.contains('\u{7}'),
                "{args:?} {name}: {text:?}"
            );
        }
    }
}

#[test]
fn an_empty_bedrock_answer_is_retried_not_cached() {
    let server = FakeServer::start(|seen| {
        if seen.attempt == 0 {
            Reply::Raw {
                status: 200,
                body: "{}".into(),
                headers: vec![],
            }
        } else {
            Reply::label("notify")
        }
    });
    let project = Project::bedrock(
        &server.endpoint,
        "anthropic.claude-3-5-sonnet-20240620-v1:0",
        &["notify"],
        1,
    );
    let (record, code) = project.json(&["run"]);
    assert_eq!(code, 0, "{record:#}");
    assert_eq!(record["calls"]["attempts"], 2);
    assert_eq!(record["results"][0]["accuracy"]["point"], 1.0);
    assert_eq!(project.cached_rows(), 1);
}

#[test]
fn keys_echoed_by_a_server_never_reach_a_message_record_or_report() {
    const KEY: &str = "sk-hostile-0123456789abcdefABCDEF";
    const GATEWAY: &str = "gw-credential-0987654321";
    let server = FakeServer::start(|seen| {
        let echoed = format!(
            "Authorization: {} x-gw: {}",
            seen.headers.get("authorization").cloned().unwrap_or_default(),
            seen.headers.get("x-gw").cloned().unwrap_or_default()
        );
        match seen.attempt {
            0 => Reply::Raw {
                status: 500,
                body: format!("upstream failed; request was {echoed} {GATEWAY}"),
                headers: vec![],
            },
            1 => Reply::Raw {
                status: 200,
                body: format!("<html>{echoed} {GATEWAY}</html>"),
                headers: vec![],
            },
            _ => Reply::Raw {
                status: 401,
                body: serde_json::json!({"error": {"message": format!("bad key {echoed} {GATEWAY}"), "type": "auth"}})
                    .to_string(),
                headers: vec![],
            },
        }
    });
    let project = Project::new(&server.base_url, &["notify"], 1, "");
    // A key variable whose name does not say "key": masked because the config names it.
    edit_config(
        &project,
        "kind = \"openai\"",
        "kind = \"openai\"\napi_key_env = \"MY_GATEWAY_VAR\"",
    );
    edit_config(&project, "retry_max_ms = 3000", "retry_max_ms = 20");
    let output = project
        .command()
        .env("MY_GATEWAY_VAR", KEY)
        .env("OTHER_SECRET", GATEWAY)
        .args([
            "run", "--format", "json", "--out", "run.json", "--out", "run.txt", "--out", "run.md", "--out", "run.html",
        ])
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(3));
    let record: Value = serde_json::from_slice(&output.stdout).expect("JSON");
    assert!(
        record["results"][0]["first_error"].as_str().unwrap().contains("***"),
        "{record:#}"
    );
    let mut everything = String::from_utf8_lossy(&output.stdout).into_owned();
    everything.push_str(&String::from_utf8_lossy(&output.stderr));
    for file in ["run.json", "run.txt", "run.md", "run.html"] {
        everything.push_str(&std::fs::read_to_string(project.file(file)).expect("report"));
    }
    assert!(
        server.seen().iter().all(|s| s.headers["authorization"].contains(KEY)),
        "the key was sent"
    );
    assert!(!everything.contains(KEY), "the key leaked: {everything}");
    assert!(!everything.contains(GATEWAY), "a secret leaked: {everything}");
}

#[test]
fn a_long_error_message_is_masked_then_cut() {
    const GATEWAY: &str = "gw-credential-0987654321";
    // The secret where the cut falls (500 characters into the message, after "HTTP 401: ").
    let message = format!("{}{GATEWAY}{}", "e".repeat(480), "x".repeat(20_000));
    let server = FakeServer::start(move |_| Reply::Raw {
        status: 401,
        body: serde_json::json!({"error": {"message": message, "type": "auth"}}).to_string(),
        headers: vec![],
    });
    let project = Project::new(&server.base_url, &["notify"], 1, "");
    let output = project
        .command()
        .env("OTHER_SECRET", GATEWAY)
        .args(["run", "--format", "json"])
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(3));
    let record: Value = serde_json::from_slice(&output.stdout).expect("JSON");
    let first_error = record["results"][0]["first_error"].as_str().unwrap();
    assert!(
        first_error.contains("***") && !first_error.contains("gw-cred"),
        "{first_error}"
    );
    assert!(
        first_error.ends_with('…') && first_error.chars().count() < 600,
        "{first_error}"
    );
}

#[test]
fn a_dead_provider_stops_the_run_with_one_message() {
    let server = FakeServer::start(|_| Reply::Reset);
    let labels = ["notify"; 30];
    let project = Project::new(&server.base_url, &labels, 5, "");
    let (stdout, stderr, code) = output(&project, &["run", "--format", "json"]);
    assert_eq!(code, 3, "{stderr}");
    assert!(stdout.is_empty());
    assert!(
        stderr.contains("provider `fake`") && stderr.contains(&server.base_url) && stderr.contains("unreachable"),
        "{stderr}"
    );
    assert!(stderr.contains("ci/local-model.sh start"), "{stderr}");
    // 150 samples × 4 attempts would be 600 connections.
    assert!(server.request_count() <= 20, "{} requests", server.request_count());

    // A closed port, the usual case.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let project = Project::new(&format!("http://127.0.0.1:{port}/v1"), &labels, 5, "");
    let (_, stderr, code) = output(&project, &["run"]);
    assert_eq!(code, 3, "{stderr}");
    assert!(stderr.contains(&format!("127.0.0.1:{port}")), "{stderr}");

    // Rate limits are answers: the server is there, so they are retried as before.
    let server = FakeServer::start(|seen| {
        if seen.attempt < 2 {
            Reply::rate_limited(0)
        } else {
            Reply::label("notify")
        }
    });
    let project = Project::new(&server.base_url, &labels[..8], 1, "");
    let (record, code) = project.json(&["run"]);
    assert_eq!(code, 0, "{record:#}");
}

#[test]
fn a_closed_pipe_ends_output_quietly_and_a_full_disk_is_an_io_error() {
    let server = FakeServer::start(|_| Reply::label("notify"));
    let labels = ["notify"; 40];
    let project = Project::new(&server.base_url, &labels, 2, "");
    assert_eq!(project.json(&["run"]).1, 0);
    for args in [
        &["cache", "stats"][..],
        &["cache", "export"],
        &["run", "--offline", "--format", "json"],
        &["run", "--offline", "-v"],
    ] {
        for _ in 0..3 {
            let mut child = project
                .std_command()
                .args(args)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn");
            let mut stdout = child.stdout.take().expect("stdout");
            let mut first = [0u8; 1];
            stdout.read_exact(&mut first).expect("a first byte");
            drop(stdout);
            let output = child.wait_with_output().expect("wait");
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
            assert_ne!(output.status.code(), Some(101), "{args:?}: {stderr}");
        }
    }
    if std::path::Path::new("/dev/full").exists() {
        for args in [&["run", "--offline", "--format", "json"][..], &["cache", "export"]] {
            let full = std::fs::OpenOptions::new()
                .write(true)
                .open("/dev/full")
                .expect("/dev/full");
            let output = project.std_command().args(args).stdout(full).output().expect("run");
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert_eq!(output.status.code(), Some(6), "{args:?}: {stderr}");
            assert!(stderr.contains("<stdout>") || stderr.contains("<export>"), "{stderr}");
            assert!(!stderr.contains("panicked"), "{stderr}");
        }
        // A device is never replaced by a report.
        let (_, stderr, code) = output(&project, &["cache", "export", "--out", "/dev/full"]);
        assert_eq!(code, 2, "{stderr}");
        assert!(stderr.contains("device"), "{stderr}");
        assert!(std::fs::metadata("/dev/full")
            .unwrap()
            .file_type()
            .is_char_device_like());
    }
}

/// `is_char_device` without importing the Unix trait at every call.
trait CharDevice {
    fn is_char_device_like(&self) -> bool;
}

impl CharDevice for std::fs::FileType {
    fn is_char_device_like(&self) -> bool {
        use std::os::unix::fs::FileTypeExt;
        self.is_char_device()
    }
}

#[test]
fn preconditions_are_checked_before_the_first_call() {
    let server = FakeServer::start(|_| Reply::label("notify"));
    let project = Project::new(&server.base_url, &["notify", "suppress"], 3, "");
    let check = |args: &[&str], needle: &str| {
        let (_, stderr, code) = output(&project, args);
        assert_eq!(code, 2, "{args:?}: {stderr}");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
        assert!(stderr.contains("hint:"), "{stderr}");
    };
    check(&["gate"], "no baseline for suite `s` on model `m`");
    std::fs::create_dir_all(project.file("adir.json")).unwrap();
    check(&["run", "--out", "adir.json"], "folder");
    std::os::unix::fs::symlink(project.file("promptgate.toml"), project.file("link.json")).unwrap();
    check(&["run", "--out", "link.json"], "symbolic link");
    check(
        &["compare", "--model", "m", "--model", "m", "--out", "/dev/null"],
        "device",
    );
    // A broken baseline is found before any call too.
    project.write(
        "baselines/s/m.json",
        r#"{"schema_version": 1, "suite": "s", "model": "m", "model_id": "fake-model", "provider": "fake",
            "prompt_sha256": "x", "samples_per_case": 3, "accuracy": null, "created_at": "t",
            "promptgate_version": "0", "cases": [{"id": "c00", "correct": 4294967295, "samples": 3, "errors": 0}]}"#,
    );
    check(&["gate", "--exact"], "cases[0].correct");
    project.write(
        "baselines/s/m.json",
        r#"{"schema_version": 1, "suite": "other", "model": "m", "model_id": "fake-model", "provider": "fake",
            "prompt_sha256": "x", "samples_per_case": 3, "accuracy": null, "created_at": "t",
            "promptgate_version": "0", "cases": []}"#,
    );
    check(&["gate"], "suite `other`, not `s`");
    assert_eq!(server.request_count(), 0, "a call was paid for");
    // The gate's output before and after: with the baseline in place it runs.
    assert_eq!(output(&project, &["baseline", "update"]).2, 0);
    assert_eq!(project.json(&["gate"]).1, 0);
}

#[test]
fn hostile_project_files_are_refused_before_any_call() {
    let server = FakeServer::start(|_| Reply::label("notify"));
    let project = Project::new(&server.base_url, &["notify"], 1, "");
    let check = |needle: &str| {
        let (_, stderr, code) = output(&project, &["run"]);
        assert_eq!(code, 2, "{stderr}");
        assert!(stderr.contains(needle), "{stderr}");
    };
    // $file outside the project.
    let cases = std::fs::read_to_string(project.file("cases/s/cases.jsonl")).unwrap();
    project.write(
        "cases/s/cases.jsonl",
        &cases.replace("findings/f.json", "/proc/self/environ"),
    );
    check("outside the project folder");
    project.write("cases/s/cases.jsonl", &cases);
    // Runaway templates.
    let prompt = std::fs::read_to_string(project.file("prompts/p.toml")).unwrap();
    project.write(
        "prompts/p.toml",
        &prompt.replace(
            "case={{ case_id }}",
            "{% for a in range(100000) %}{% for b in range(100000) %}x{% endfor %}{% endfor %}",
        ),
    );
    check("fuel");
    project.write("prompts/p.toml", &prompt.replace("tojson", "tojson(indent=100000000)"));
    check("indentation");
    project.write("prompts/p.toml", &prompt);
    // Config numbers.
    for (from, to, key) in [
        ("samples = 1", "samples = 4294967295", "suites.s.samples"),
        (
            "timeout_secs = 5",
            "timeout_secs = 1e300",
            "providers.fake.timeout_secs",
        ),
        (
            "concurrency = 4",
            "concurrency = 9223372036854775807",
            "defaults.concurrency",
        ),
    ] {
        let config = std::fs::read_to_string(project.file("promptgate.toml")).unwrap();
        edit_config(&project, from, to);
        check(key);
        project.write("promptgate.toml", &config);
    }
    // Another application's SQLite file as the cache: refused and left as it was.
    let other = project.file("app.sqlite");
    rusqlite::Connection::open(&other)
        .unwrap()
        .execute_batch("CREATE TABLE users (id INTEGER);")
        .unwrap();
    let before = std::fs::read(&other).unwrap();
    let (_, stderr, code) = output(&project, &["--cache", "app.sqlite", "run"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("another application"), "{stderr}");
    assert_eq!(std::fs::read(&other).unwrap(), before);
    // A mistyped huge value is cut in the message, not echoed whole.
    let long = "x".repeat(100_000);
    let (_, stderr, code) = output(&project, &["run", "--suite", &long]);
    assert_eq!(code, 2);
    assert!(stderr.len() < 10_000, "{} bytes of stderr", stderr.len());
    assert_eq!(server.request_count(), 0);
}

#[test]
fn templates_that_grow_without_bound_end_with_a_message_not_the_machine() {
    let server = FakeServer::start(|_| Reply::label("notify"));
    let project = Project::new(&server.base_url, &["notify"], 1, "");
    let prompt = std::fs::read_to_string(project.file("prompts/p.toml")).unwrap();
    let doubled = format!(
        "{{% set s = 'xxxxxxxx' %}}{}{{{{ s | length }}}}",
        "{% set s = s ~ s %}".repeat(40)
    );
    // Each takes a few hundred instructions, far inside the fuel, and would ask for terabytes.
    for template in [
        "{% set ns = namespace(s='x') %}{% for i in range(64) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s | length }}",
        doubled.as_str(),
        "{% set ns = namespace(s='x') %}{% for i in range(64) %}{% set ns.s = ns.s | replace('x', 'x' * 1024) %}{% endfor %}",
        "{% set ns = namespace(l=[1]) %}{% for i in range(64) %}{% set ns.l = ns.l + ns.l %}{% endfor %}{{ ns.l | length }}",
    ] {
        project.write("prompts/p.toml", &prompt.replace("case={{ case_id }}", template));
        let (stdout, stderr, code) = output(&project, &["run"]);
        assert_eq!(code, 2, "{template}: {stderr}");
        assert!(
            stderr.starts_with("error: invalid prompt `./prompts/p.toml` (template `user`): ")
                && stderr.contains("more than 256 MiB of memory while rendering case `c00`")
                && stderr.contains("\nhint: a string that doubles"),
            "{template}: {stderr}"
        );
        assert!(stdout.is_empty(), "{stdout}");
    }
    // The largest child this test process waited for (the runs above and any other test's).
    // SAFETY: getrusage fills the struct it is given.
    let peak_kib = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        assert_eq!(libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage), 0);
        usage.ru_maxrss
    };
    assert!(peak_kib < 1024 * 1024, "a run held {peak_kib} KiB");
    assert_eq!(server.request_count(), 0);
    // An ordinary prompt still runs.
    project.write("prompts/p.toml", &prompt);
    let (_, stderr, code) = output(&project, &["run"]);
    assert_eq!(code, 0, "{stderr}");
}

#[test]
fn a_cache_that_cannot_be_written_stops_sampling_and_still_reports() {
    let server = FakeServer::start(|_| Reply::label("notify"));
    let labels = ["notify"; 30];
    let project = Project::new(&server.base_url, &labels, 2, "");
    edit_config(&project, "concurrency = 4", "concurrency = 1");
    // The cache exists, then every insert fails, as on a full disk.
    assert_eq!(project.json(&["run", "--samples", "1", "--suite", "s"]).1, 0);
    let before = server.request_count();
    let (record, stderr) = run_with_a_full_table(&project, "responses");
    assert!(
        stderr.contains("disk is full") && stderr.contains("fetched again"),
        "{stderr}"
    );
    assert!(record["cache_failure"].as_str().unwrap().contains("disk is full"));
    let paid = server.request_count() - before;
    assert!(paid < 30, "{paid} calls paid after the cache failed");
    assert!(
        record["results"][0]["errors_by_kind"]["not_attempted"]
            .as_u64()
            .unwrap()
            > 0
    );
}

#[test]
fn impossible_plans_and_endless_imports_are_refused() {
    let server = FakeServer::start(|_| Reply::label("notify"));
    let project = Project::new(&server.base_url, &["notify"], 1, "");
    for (args, needle) in [
        (&["plan", "--accuracy", "0.1", "--drop", "0.9"][..], "impossible"),
        (
            &["plan", "--accuracy", "0.9", "--drop", "0.05", "--alpha", "0"],
            "--alpha",
        ),
        (
            &["plan", "--accuracy", "0.9", "--drop", "0.05", "--power", "1"],
            "--power",
        ),
    ] {
        let (stdout, stderr, code) = output(&project, args);
        assert_eq!(code, 2, "{args:?}: {stdout}{stderr}");
        assert!(stderr.contains(needle), "{stderr}");
    }
    // One endless line: read up to the bound, then refused, nothing imported.
    let (_, stderr, code) = output(&project, &["cache", "import", "/dev/zero"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("line 1"), "{stderr}");
}

#[test]
fn runs_sharing_a_cache_pay_for_each_answer_once() {
    // Slow enough answers that three runs started together overlap on every call.
    let server =
        FakeServer::start(|_| Reply::Delay(std::time::Duration::from_millis(150), Box::new(Reply::label("notify"))));
    let labels = ["notify"; 12];
    let project = Project::new(&server.base_url, &labels, 2, "");
    let children: Vec<_> = (0..3)
        .map(|_| {
            project
                .std_command()
                .args(["run", "--format", "json"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("start a run")
        })
        .collect();
    let mut answers = 0;
    for child in children {
        let output = child.wait_with_output().expect("run");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(0), "{stderr}");
        let record: Value = serde_json::from_slice(&output.stdout).expect("a run record");
        assert_eq!(record["results"][0]["accuracy"]["point"], 1.0, "{record:#}");
        answers += record["calls"]["made"].as_u64().unwrap() + record["calls"]["cached"].as_u64().unwrap();
    }
    // Every run has all 24 answers; the server was paid for each once.
    assert_eq!(answers, 3 * 24);
    assert_eq!(server.request_count(), 24);
    assert_eq!(project.cached_rows(), 24);
    assert_eq!(project.rows("leases"), 0, "no lease outlives its run");
}

#[test]
fn a_lease_that_cannot_be_taken_stops_sampling_before_any_call() {
    let server = FakeServer::start(|_| Reply::label("notify"));
    let project = Project::new(&server.base_url, &["notify"; 5], 2, "");
    assert_eq!(project.json(&["run", "--samples", "1"]).1, 0);
    // Leases are written before any call: on a full disk the first one fails.
    let before = server.request_count();
    let (record, stderr) = run_with_a_full_table(&project, "leases");
    assert!(
        stderr.contains("failed to take a lease") && stderr.contains("disk is full"),
        "{stderr}"
    );
    assert_eq!(record["results"][0]["errors_by_kind"]["not_attempted"], 5, "{record:#}");
    assert_eq!(
        server.request_count(),
        before,
        "nothing is paid for that could not be kept"
    );
}
