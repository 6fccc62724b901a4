//! Mutation fuzzing of every parser of outside input, on stable Rust.
//!
//! Each target starts from real inputs (the repository's config, prompts, cases, baselines and
//! AWS's sample findings, and completion bodies) and feeds it mutated bytes: flipped, inserted
//! and deleted bytes, spliced tokens that parsers care about (`1e300`, `{{`, `$file`, deep
//! nesting, invalid UTF-8), and hand-made worst cases (a 20 MB answer, 100,000-deep JSON, runaway
//! templates). A target may return any error; it may not panic, hang or grow without bound.
//!
//! In CI every target runs a few hundred inputs (a smoke test of the harness). For a real
//! campaign: `PROMPTGATE_FUZZ_INPUTS=200000 cargo test --release --test fuzz -- --nocapture`
//! (inputs per target; `PROMPTGATE_FUZZ_SEED` picks the generator). An input that panics is
//! written to `target/fuzz-crashes/` and becomes a regression test in `tests/fuzz_regressions/`.

mod support;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use promptgate::baseline::Baseline;
use promptgate::config::Config;
use promptgate::model_version::{ModelVersion, MAX_VERSION_CHARS};
use promptgate::prompt::Prompt;
use promptgate::provider::openai::parse_completion;
use promptgate::provider::{parse_retry_after, parse_retry_after_ms, ProviderKind};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Tokens that parsers treat specially, spliced into inputs.
const DICTIONARY: &[&str] = &[
    "1e300",
    "-1",
    "NaN",
    "inf",
    "99999999999999999999",
    "4294967295",
    "18446744073709551616",
    "0",
    "\"\"",
    "{{",
    "}}",
    "{%",
    "%}",
    "{% for x in range(100000) %}",
    "{% endfor %}",
    "| tojson(indent=99999999)",
    "{\"$file\": \"/proc/self/environ\"}",
    "{\"$file\": \"../../../etc/passwd\"}",
    "[[",
    "]]",
    "\"\"\"",
    "\u{feff}",
    "\u{200b}",
    "\\u0000",
    "null",
    "true",
    "{}",
    "[]",
    "\"choices\": []",
    "\"tool_calls\"",
    "\"arguments\": \"{not json\"",
    "schema_version = 9",
    "samples = 0",
    "concurrency = 0",
];

fn inputs_per_target(default: usize) -> usize {
    std::env::var("PROMPTGATE_FUZZ_INPUTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn seed() -> u64 {
    std::env::var("PROMPTGATE_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20261202)
}

/// One mutation of `input`: half the time, when it is JSON, a change to its tree (so that the
/// input gets past the JSON parser into the checks behind it), else a change to its bytes.
fn mutate(rng: &mut StdRng, input: &[u8], seeds: &[Vec<u8>]) -> Vec<u8> {
    if rng.random_bool(0.5) {
        if let Ok(mut value) = serde_json::from_slice::<serde_json::Value>(input) {
            for _ in 0..rng.random_range(1..=4) {
                mutate_tree(rng, &mut value);
            }
            return value.to_string().into_bytes();
        }
    }
    mutate_bytes(rng, input, seeds)
}

/// Values that checks behind a parser care about.
fn hostile_value(rng: &mut StdRng) -> serde_json::Value {
    use serde_json::json;
    match rng.random_range(0..14) {
        0 => json!(-5),
        1 => json!(4294967295u64),
        2 => json!(u64::MAX),
        3 => json!(i64::MIN),
        4 => json!(1e300),
        5 => json!(-0.0),
        6 => json!(0.5),
        7 => json!(""),
        8 => json!("x".repeat(rng.random_range(1000..100_000))),
        9 => json!("../../../etc/passwd"),
        10 => json!(null),
        11 => json!([]),
        12 => json!({}),
        _ => json!("２１０９-8765-4328 ü@例え.jp {{ x }} \u{202e}"),
    }
}

/// Change one node of `value`: replace it, drop or duplicate an element, or go deeper.
fn mutate_tree(rng: &mut StdRng, value: &mut serde_json::Value) {
    use serde_json::Value;
    match value {
        Value::Object(map) if !map.is_empty() && rng.random_bool(0.8) => {
            let index = rng.random_range(0..map.len());
            let key = map.keys().nth(index).cloned().unwrap_or_default();
            match rng.random_range(0..6) {
                0 => {
                    map.remove(&key);
                }
                1 => {
                    let copy = map[&key].clone();
                    map.insert(format!("{key}_"), copy);
                }
                _ => mutate_tree(rng, map.get_mut(&key).expect("the key was just read")),
            }
        }
        Value::Array(items) if !items.is_empty() && rng.random_bool(0.8) => {
            let index = rng.random_range(0..items.len());
            match rng.random_range(0..6) {
                0 => {
                    items.remove(index);
                }
                1 => {
                    let copy = items[index].clone();
                    items.insert(index, copy);
                }
                _ => mutate_tree(rng, &mut items[index]),
            }
        }
        _ => *value = hostile_value(rng),
    }
}

/// One byte-level mutation of `input`.
fn mutate_bytes(rng: &mut StdRng, input: &[u8], seeds: &[Vec<u8>]) -> Vec<u8> {
    let mut out = input.to_vec();
    for _ in 0..rng.random_range(1..=8) {
        let at = if out.is_empty() {
            0
        } else {
            rng.random_range(0..=out.len())
        };
        match rng.random_range(0..8) {
            0 if !out.is_empty() => {
                let i = rng.random_range(0..out.len());
                out[i] ^= 1 << rng.random_range(0..8);
            }
            1 if !out.is_empty() => {
                let end = (at + rng.random_range(1..64)).min(out.len());
                out.drain(at.min(end)..end);
            }
            2 => {
                let token = DICTIONARY[rng.random_range(0..DICTIONARY.len())];
                out.splice(at..at, token.bytes());
            }
            3 => out.insert(at, rng.random()),
            4 if !out.is_empty() => {
                // Duplicate a slice: repeated keys, repeated tables.
                let start = rng.random_range(0..out.len());
                let end = (start + rng.random_range(1..128)).min(out.len());
                let slice = out[start..end].to_vec();
                out.splice(at..at, slice);
            }
            5 => {
                // Splice in part of another seed.
                let other = &seeds[rng.random_range(0..seeds.len())];
                if !other.is_empty() {
                    let start = rng.random_range(0..other.len());
                    let end = (start + rng.random_range(1..256)).min(other.len());
                    out.splice(at..at, other[start..end].iter().copied());
                }
            }
            6 => {
                out.splice(at..at, [0xff, 0xfe, 0xc3]);
            }
            _ => out.truncate(at),
        }
    }
    out
}

/// Run `target` on every seed, every extra case, and `count` mutations; panics are failures,
/// and the slowest input is reported.
fn campaign(name: &str, seeds: Vec<Vec<u8>>, extra: Vec<Vec<u8>>, count: usize, target: impl Fn(&[u8])) {
    let mut rng = StdRng::seed_from_u64(seed() ^ name.bytes().fold(0u64, |h, b| h.wrapping_mul(31) ^ u64::from(b)));
    let started = Instant::now();
    let mut slowest = (Duration::ZERO, 0usize);
    let mut ran = 0usize;
    let mut run_one = |input: &[u8]| {
        let clock = Instant::now();
        if catch_unwind(AssertUnwindSafe(|| target(input))).is_err() {
            let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/fuzz-crashes");
            std::fs::create_dir_all(&dir).ok();
            let file = dir.join(format!("{name}-{ran}.bin"));
            std::fs::write(&file, input).ok();
            panic!("{name}: input {ran} panicked; saved as {}", file.display());
        }
        let took = clock.elapsed();
        if took > slowest.0 {
            slowest = (took, input.len());
        }
        ran += 1;
    };
    for input in seeds.iter().chain(&extra) {
        run_one(input);
    }
    for _ in 0..count {
        let base = &seeds[rng.random_range(0..seeds.len())];
        let input = mutate(&mut rng, base, &seeds);
        run_one(&input);
    }
    let rss = peak_rss_kib();
    eprintln!(
        "fuzz {name}: {ran} inputs in {:.1} s, 0 panics, slowest {:.1} ms ({} bytes), peak RSS {rss} KiB",
        started.elapsed().as_secs_f64(),
        slowest.0.as_secs_f64() * 1000.0,
        slowest.1
    );
    // A hang shows as one input taking seconds: fuel and size limits must stop it sooner.
    assert!(
        slowest.0 < Duration::from_secs(10),
        "{name}: an input took {:?}",
        slowest.0
    );
}

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn repo(relative: &str) -> Vec<u8> {
    std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)).expect("seed file")
}

fn files_under(relative: &str, extension: &str) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut stack = vec![Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("dir").flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == extension) {
                out.push(std::fs::read(path).expect("seed"));
            }
        }
    }
    out
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn deep(depth: usize) -> Vec<u8> {
    let mut s = "[".repeat(depth);
    s.push_str(&"]".repeat(depth));
    s.into_bytes()
}

#[test]
fn fuzz_config() {
    let seeds = vec![repo("promptgate.toml")];
    campaign(
        "config",
        seeds,
        vec![deep(100_000), b"[[[[[[[[".repeat(20_000)],
        inputs_per_target(300),
        |input| {
            let _ = Config::parse(Path::new("/fuzz/promptgate.toml"), &text(input));
        },
    );
}

#[test]
fn fuzz_prompts_parse_and_render() {
    let seeds = files_under("prompts", "toml");
    let case: promptgate::case::LoadedCase = promptgate::case::LoadedCase {
        case: serde_json::from_value(serde_json::json!({
            "id": "fuzz", "expect": {},
            "vars": {"rule": "EC2.19 は dev なら抑制", "finding": {"Id": "x", "Resources": [{"Tags": {"a": "b"}}]},
                     "message": "m", "request": "r", "answer": "a", "criteria": "c", "finding_type": "t"}
        }))
        .expect("case"),
        file: PathBuf::from("fuzz.json"),
        line: None,
    };
    let extra = vec![
        b"user = \"\"\"{% for a in range(100000) %}{% for b in range(100000) %}x{% endfor %}{% endfor %}\"\"\""
            .to_vec(),
        b"user = \"\"\"{{ rule | tojson(indent=100000000) }}\"\"\"".to_vec(),
        b"user = \"\"\"{% macro m(n) %}{{ m(n) }}{% endmacro %}{{ m(1) }}\"\"\"".to_vec(),
        format!(
            "user = \"\"\"{}x{}\"\"\"",
            "{% if true %}".repeat(5000),
            "{% endif %}".repeat(5000)
        )
        .into_bytes(),
    ];
    campaign("prompt", seeds, extra, inputs_per_target(300), |input| {
        if let Ok(prompt) = Prompt::parse(Path::new("/fuzz/p.toml"), &text(input)) {
            let _ = prompt.render(&case);
        }
    });
}

#[test]
fn fuzz_case_files() {
    let mut seeds = files_under("cases/triage", "json");
    seeds.extend(files_under("cases/chatops", "jsonl"));
    seeds.truncate(40);
    let dir = tempfile::tempdir().expect("dir");
    std::fs::create_dir_all(dir.path().join("cases/findings")).expect("dir");
    std::fs::write(dir.path().join("cases/findings/f.json"), b"{\"Id\": \"x\"}").expect("finding");
    campaign("case", seeds, vec![deep(100_000)], inputs_per_target(200), |input| {
        let jsonl = input.first() != Some(&b'[') && input.iter().filter(|b| **b == b'\n').count() > 1;
        let name = if jsonl { "c.jsonl" } else { "c.json" };
        let path = dir.path().join("cases").join(name);
        std::fs::write(&path, input).expect("write");
        let _ = promptgate::case::load_cases(&dir.path().join("cases"), dir.path());
        std::fs::remove_file(&path).ok();
    });
}

#[test]
fn fuzz_baselines() {
    let mut seeds = files_under("baselines", "json");
    // Every schema the parser reads, derived from the committed triage baseline (schema 3):
    // without answers (2), without answers or model versions (1), and with hostile answers
    // (an escape sequence in an excerpt, the most a case may keep).
    let triage = Path::new(env!("CARGO_MANIFEST_DIR")).join("baselines/triage/gemma-local.json");
    let committed: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(triage).expect("the triage baseline")).expect("JSON");
    let with = |schema: u32, edit: &dyn Fn(&mut serde_json::Value)| {
        let mut baseline = committed.clone();
        baseline["schema_version"] = schema.into();
        edit(&mut baseline);
        serde_json::to_string_pretty(&baseline).expect("JSON")
    };
    let drop_answers = |b: &mut serde_json::Value| {
        for case in b["cases"].as_array_mut().expect("cases") {
            case.as_object_mut().expect("a case").remove("answers");
        }
    };
    let hostile: serde_json::Value = serde_json::from_str(
        r#"[{"count":2,"outcome":"wrong","reason":"answered `notify`, expected `suppress`","excerpt":"{\"decision\":\"notify\"}"},{"count":1,"outcome":"correct","reason":"answered `suppress`","excerpt":"抑制 \u001b[2J"}]"#,
    )
    .expect("answers");
    let one = with(1, &|b| {
        drop_answers(b);
        b.as_object_mut().expect("a baseline").remove("model_versions");
    });
    let two = with(2, &drop_answers);
    let three = with(3, &|b| b["cases"][0]["answers"] = hostile.clone());
    for (seed, answers) in [(&one, 0), (&two, 0), (&three, 2)] {
        let parsed = Baseline::parse(Path::new("/fuzz/b.json"), seed, "triage", "gemma-local");
        assert_eq!(
            parsed.map(|b| b.cases[0].answers.len()).ok(),
            Some(answers),
            "a seed is a valid baseline"
        );
    }
    seeds.push(one.into_bytes());
    seeds.push(two.into_bytes());
    seeds.push(three.into_bytes());
    campaign(
        "baseline",
        seeds,
        vec![deep(100_000)],
        inputs_per_target(300),
        |input| {
            if let Ok(b) = Baseline::parse(Path::new("/fuzz/b.json"), &text(input), "triage", "gemma-local") {
                // What passed validation must be usable by the gate's arithmetic.
                for case in &b.cases {
                    assert!(case.correct <= case.samples && case.samples + case.errors <= b.samples_per_case);
                    // Answers within their caps: a comment block stays small.
                    assert!(case.answers.len() <= 2);
                    assert!(case.answers.iter().map(|a| a.count).sum::<u32>() <= case.samples);
                    assert!(case.answers.iter().all(|a| a.excerpt.chars().count() <= 161));
                }
                // And printable in every report.
                for version in &b.model_versions {
                    assert!(version.model.chars().count() <= MAX_VERSION_CHARS);
                    assert!(!version.model.chars().any(char::is_control));
                }
            }
        },
    );
}

#[test]
fn fuzz_run_records() {
    let server = support::fake_server::FakeServer::start(|_| support::fake_server::Reply::label("notify"));
    let project = support::Project::new(&server.base_url, &["notify", "suppress", "notify"], 2, "");
    let (record, _) = project.json(&["run"]);
    let seeds = vec![serde_json::to_vec_pretty(&record).expect("record")];
    campaign(
        "run-record",
        seeds,
        vec![deep(100_000)],
        inputs_per_target(300),
        |input| {
            let _ = serde_json::from_str::<promptgate::RunRecord>(&text(input));
        },
    );
}

#[test]
fn fuzz_shard_merges() {
    let server = support::fake_server::FakeServer::start(|_| support::fake_server::Reply::label("notify"));
    let labels = ["notify", "suppress", "notify", "notify", "suppress", "notify"];
    let project = support::Project::new(&server.base_url, &labels, 2, "");
    for index in 1..=2 {
        let shard = format!("{index}/2");
        let out = format!("shard-{index}.json");
        let status = project
            .command()
            .args(["run", "--shard", &shard, "--out", &out, "--quiet"])
            .output()
            .expect("shard");
        assert_eq!(status.status.code(), Some(0));
    }
    let (first, second) = (project.file("shard-1.json"), project.file("shard-2.json"));
    let intact = promptgate::merge::read(&second).expect("a shard's record reads");
    let seeds = vec![std::fs::read(&first).expect("shard record")];
    let mutated = project.file("mutated.json");
    campaign(
        "shard-merge",
        seeds,
        vec![deep(100_000)],
        inputs_per_target(200),
        |input| {
            std::fs::write(&mutated, input).expect("write input");
            if let Ok(record) = promptgate::merge::read(&mutated) {
                let _ = promptgate::merge::merge(vec![(mutated.clone(), record), (second.clone(), intact.clone())]);
            }
        },
    );
}

#[test]
fn fuzz_batch_output_files() {
    let answer = support::fake_server::completion("{\"decision\": \"notify\"}", "gpt-4o-mini");
    let lines = [
        serde_json::json!({"id": "batch_req_1", "custom_id": "k1", "response": {"status_code": 200, "request_id": "r", "body": answer}, "error": null}),
        serde_json::json!({"id": "batch_req_2", "custom_id": "k2", "response": null, "error": {"code": "server_error", "message": "overloaded"}}),
    ];
    let file: String = lines.iter().map(|l| format!("{l}\n")).collect();
    campaign(
        "batch-output",
        vec![file.into_bytes()],
        vec![deep(100_000), vec![b'\n'; 1 << 20]],
        inputs_per_target(300),
        |input| {
            for line in promptgate::provider::openai_batch::parse_lines(input) {
                if let Ok(promptgate::provider::openai_batch::Line::Answered { body, .. }) = line {
                    let _ = parse_completion(&body, 0);
                }
            }
        },
    );
}

#[test]
fn fuzz_bedrock_batch_output_files() {
    use promptgate::provider::bedrock_batch::{self, OutputLine, Reading};
    let converse = support::fake_server::converse_output("{\"decision\": \"notify\"}", &serde_json::json!({}));
    let lines = [
        serde_json::json!({"recordId": "k1", "modelInput": {}, "modelOutput": converse}),
        serde_json::json!({"recordId": "k2", "modelInput": {}, "modelOutput": {"content": [{"type": "tool_use", "name": "decision", "input": {"decision": "notify"}}], "usage": {"input_tokens": 3, "output_tokens": 1}}}),
        serde_json::json!({"recordId": "k3", "modelInput": {}, "error": {"errorCode": 400, "errorMessage": "bad request"}}),
    ];
    let file: String = lines.iter().map(|l| format!("{l}\n")).collect();
    let readings = ["Converse", "InvokeModel"].map(|invocation| Reading {
        invocation: invocation.into(),
        answer_tool: Some("decision".into()),
    });
    campaign(
        "bedrock-batch-output",
        vec![file.into_bytes()],
        vec![deep(100_000), vec![b'\n'; 1 << 20]],
        inputs_per_target(300),
        |input| {
            for line in bedrock_batch::parse_output(input) {
                if let Ok(OutputLine::Answered { output, .. }) = line {
                    for reading in &readings {
                        let _ = bedrock_batch::response_of(reading, &output);
                    }
                }
            }
        },
    );
}

#[test]
fn fuzz_findings() {
    let mut seeds = files_under("tests/fixtures/public", "json");
    seeds.extend(files_under("cases/triage/findings", "json").into_iter().take(20));
    let extra = vec![
        deep(100_000),
        vec![0xEF, 0xBB, 0xBF],
        b"{\"detail\": {\"type\": 1, \"resource\": 1, \"service\": 1, \"severity\": 1}}".to_vec(),
    ];
    campaign("finding", seeds, extra, inputs_per_target(300), |input| {
        if let Ok(findings) = promptgate::record::input::parse(input, Path::new("/fuzz/f.json")) {
            for finding in &findings {
                let _ = finding.title();
                let _ = finding.topic();
            }
        }
    });
}

/// Robustness variants of mutated findings: never a panic, an injection only ever writes into a
/// string its paths reach, and a mutated path either parses or says why.
#[test]
fn fuzz_variants_and_field_paths() {
    use promptgate::robustness::{self, fields, Family, FieldPath, Settings};
    let mut seeds = files_under("tests/fixtures/public", "json");
    seeds.extend(
        files_under("cases/guardduty-explain/findings", "json")
            .into_iter()
            .take(10),
    );
    let settings = Settings {
        seed: 1,
        count: 3,
        vars: Vec::new(),
        fields: fields::defaults(),
    };
    campaign("variants", seeds, vec![deep(10_000)], inputs_per_target(200), |input| {
        let Ok(finding) = serde_json::from_slice::<serde_json::Value>(input) else {
            return;
        };
        let vars = serde_json::Map::from_iter([("finding".to_string(), finding)]);
        let allowed = robustness::attacker_fields(&vars, &["finding".to_string()], &settings.fields);
        for family in Family::ALL {
            for variant in robustness::variants("c", &vars, family, &settings, "suppress") {
                if let Some(field) = &variant.field {
                    assert!(allowed.contains(field), "{field} is not attacker-writable");
                }
            }
        }
    });
    let paths: Vec<Vec<u8>> = fields::DEFAULT_FIELDS
        .iter()
        .map(|f| f.path.as_bytes().to_vec())
        .collect();
    let sample = serde_json::json!({"Resources": [{"Tags": {"a": "b"}, "Id": "x"}], "Resource": {"S3BucketDetails": [{"Name": "n"}]}});
    campaign(
        "field-path",
        paths,
        vec![b"a[][][]".to_vec()],
        inputs_per_target(300),
        |input| {
            if let Ok(path) = FieldPath::parse(&text(input)) {
                for pointer in path.strings(&sample) {
                    assert!(
                        sample.pointer(&pointer).is_some_and(serde_json::Value::is_string),
                        "{pointer}"
                    );
                }
            }
        },
    );
}

/// Redaction reads every string of a finding, character by character at its edges: mutated
/// findings and free text with account ids, addresses and e-mails in every written form.
#[test]
fn fuzz_redaction() {
    let mut seeds = files_under("tests/fixtures/public", "json");
    seeds.extend(
        [
            "アカウント2109-8765-4328の検出結果は抑制。連絡先はalice@corp.example.orgです",
            "全角２１０９８７６５４３２８ spaced 2109 8765 4328 card 1234-5678-9012-3456",
            "müller@bücher.de 太郎@例え.jp bob@example.xn--p1ai ip-10-1-2-3.ec2.internal 10.1.2.3",
            "arn:aws:iam::210987654328:role/x AKIAIOSFODNN7EXAMPLE 2600:1f18:abcd::17 fe80::1%eth0",
        ]
        .map(|text| text.as_bytes().to_vec()),
    );
    let redactor = promptgate::record::redact::Redactor::default();
    campaign("redaction", seeds, vec![], inputs_per_target(300), |input| {
        let mut value = serde_json::from_slice(input).unwrap_or_else(|_| serde_json::json!({"text": text(input)}));
        let mut rule = serde_json::json!(text(input));
        redactor.redact(&mut [&mut value, &mut rule]);
    });
}

#[test]
fn fuzz_completion_bodies() {
    let completion = |content: &str| support::fake_server::completion(content, "m").to_string().into_bytes();
    let seeds = vec![
        completion("{\"decision\": \"notify\"}"),
        support::fake_server::tool_completion(&[("f".into(), serde_json::json!({"a": 1}))], "m")
            .to_string()
            .into_bytes(),
    ];
    let extra = vec![
        completion(&"x".repeat(20 * 1024 * 1024)),
        deep(100_000),
        b"<html><body>502 Bad Gateway</body></html>".to_vec(),
        br#"{"id":"x","object":"chat.completion","created":1,"model":"m","choices":[]}"#.to_vec(),
        br#"{"id":"x","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"finish_reason":"tool_calls","message":{"role":"assistant","content":null,"tool_calls":[{"id":"c","type":"function","function":{"name":"f","arguments":"{not json"}}]}}]}"#.to_vec(),
        vec![0xff, 0xfe, b'{'],
    ];
    campaign("openai-body", seeds, extra, inputs_per_target(300), |input| {
        let body = text(input);
        let parsed = parse_completion(&body, 1).ok().and_then(|response| response.version);
        // The version kept with an answer is the one a cache upgrade reads from its raw body.
        let stored = ModelVersion::from_body(ProviderKind::Openai, &body);
        if let Some(version) = &parsed {
            assert_eq!(Some(version), stored.as_ref());
        }
        for version in parsed.iter().chain(stored.iter()) {
            let parts = std::iter::once(&version.model).chain(version.fingerprint.iter());
            for part in parts {
                assert!(!part.is_empty() && part.chars().count() <= MAX_VERSION_CHARS);
                assert!(!part.chars().any(char::is_control));
            }
        }
    });
}

#[test]
fn fuzz_retry_after_headers() {
    let seeds: Vec<Vec<u8>> = ["2", "0.5", "Wed, 21 Oct 2015 07:28:00 GMT", "1e300", "250"]
        .iter()
        .map(|s| s.as_bytes().to_vec())
        .collect();
    campaign("retry-after", seeds, vec![], inputs_per_target(1000), |input| {
        let value = text(input);
        for parsed in [parse_retry_after(&value), parse_retry_after_ms(&value)]
            .into_iter()
            .flatten()
        {
            assert!(parsed <= promptgate::provider::MAX_RETRY_AFTER);
        }
    });
}

#[test]
fn fuzz_case_filters() {
    use promptgate::case_filter::CaseFilter;
    let seeds: Vec<Vec<u8>> = ["eks-*", "p?", "c01", "a.b[c]+?*", "検知-*", "*a*a*a*a*a*a*b"]
        .iter()
        .map(|s| s.as_bytes().to_vec())
        .collect();
    let ids = [
        "eks-nodegroup-prod",
        "p7",
        "c01",
        "a.b[c]+x",
        "検知-1",
        &"a".repeat(5000),
    ];
    campaign("case-filter", seeds, vec![], inputs_per_target(1000), |input| {
        let pattern = text(input);
        let Ok(Some(filter)) = CaseFilter::new(std::slice::from_ref(&pattern), &[]) else {
            return;
        };
        for id in ids {
            let hit = filter.matches(id, &[]);
            // Without a wildcard a pattern is the id itself; `*` alone is every id.
            if !pattern.contains(['*', '?']) {
                assert_eq!(hit, pattern == id, "{pattern:?} on {id:?}");
            }
            if pattern.chars().all(|c| c == '*') {
                assert!(hit, "{pattern:?} on {id:?}");
            }
        }
    });
}

#[test]
fn fuzz_cache_imports() {
    let dir = tempfile::tempdir().expect("dir");
    let cache = promptgate::cache::Cache::open(&dir.path().join("c.sqlite")).expect("cache");
    let header = "{\"format\":\"promptgate-cache\",\"schema_version\":1}\n";
    let line = format!(
        "{header}{{\"key\":\"{}\",\"provider\":\"openai\",\"model\":\"m\",\"sample_index\":0,\"text\":\"t\",\"tool_calls\":[],\"raw_body\":\"{{}}\",\"input_tokens\":1,\"output_tokens\":1,\"latency_ms\":1,\"created_at\":\"2026-01-01T00:00:00Z\"}}\n",
        "a".repeat(64)
    );
    campaign(
        "cache-import",
        vec![line.into_bytes()],
        vec![deep(100_000)],
        inputs_per_target(100),
        |input| {
            let _ = cache.import(&mut std::io::Cursor::new(input), Path::new("/fuzz/import.jsonl"));
        },
    );
}

/// Bedrock bodies go through the AWS SDK's deserializer, so they are fuzzed over real HTTP
/// against the fake server: fewer inputs, the whole client path.
#[test]
fn fuzz_converse_bodies() {
    use support::fake_server::{FakeServer, Reply};
    let count = inputs_per_target(100).min(5_000);
    let bodies: std::sync::Arc<std::sync::Mutex<Vec<String>>> = Default::default();
    let mut rng = StdRng::seed_from_u64(seed());
    let seed_body = support::fake_server::converse_output("{\"decision\": \"notify\"}", &serde_json::json!({}))
        .to_string()
        .into_bytes();
    let mut list: Vec<String> = vec![
        "{}".into(),
        "{\"output\": {}}".into(),
        text(&deep(100_000)),
        format!("{{\"output\":{{\"message\":{{\"role\":\"assistant\",\"content\":[{{\"text\":\"{}\"}}]}}}},\"stopReason\":\"end_turn\"}}", "x".repeat(5_000_000)),
    ];
    for _ in 0..count {
        list.push(text(&mutate(&mut rng, &seed_body, std::slice::from_ref(&seed_body))));
    }
    let total = list.len();
    *bodies.lock().unwrap() = list;
    let served = std::sync::Arc::clone(&bodies);
    let server = FakeServer::start(move |_| Reply::Raw {
        status: 200,
        body: served.lock().unwrap().pop().unwrap_or_else(|| "{}".into()),
        headers: vec![],
    });
    let labels = vec!["notify"; total];
    let project = support::Project::bedrock(
        &server.endpoint,
        "anthropic.claude-3-5-sonnet-20240620-v1:0",
        &labels,
        1,
    );
    let text = std::fs::read_to_string(project.file("promptgate.toml")).unwrap();
    project.write("promptgate.toml", &text.replace("max_attempts = 4", "max_attempts = 1"));
    let started = Instant::now();
    let output = project
        .command()
        .args(["run", "--format", "json"])
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(matches!(output.status.code(), Some(0 | 3)), "{stderr}");
    eprintln!(
        "fuzz converse-body: {total} inputs over HTTP in {:.1} s, 0 panics",
        started.elapsed().as_secs_f64()
    );
}

/// Model answers are input: every grader, on the example models' real answers and mutations
/// of them, never panics, and gives a reason that is short and printable (one line, no control
/// character a terminal would act on).
#[test]
fn fuzz_graders() {
    use promptgate::config::GraderConfig;
    use promptgate::grader::facts::FactsGrader;
    use promptgate::grader::falco::{Definitions, FalcoGrader};
    use promptgate::grader::json::JsonGrader;
    use promptgate::grader::label::LabelGrader;
    use promptgate::grader::sections::SectionsGrader;
    use promptgate::grader::tool_call::ToolCallGrader;
    use promptgate::grader::{Grade, MAX_REASON_CHARS};
    use promptgate::provider::{Response, ToolCall};
    use serde_json::json;

    // The shipped answers of both local models, every suite.
    let mut seeds: Vec<Vec<u8>> = text(&repo("promptgate-cache.jsonl"))
        .lines()
        .skip(1)
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter_map(|entry| entry["text"].as_str().map(|t| t.as_bytes().to_vec()))
        .take(300)
        .collect();
    seeds.push(b"```yaml\n- rule: r\n  desc: d\n  condition: evt.type = shutdown\n  output: o\n  priority: WARNING\n  tags: [mitre_impact, T1529]\n```".to_vec());
    seeds.push(
        "## 検出内容の要約\nx\n## 重要度\nHIGH\n## 影響\ny\n## 推奨される対応\nz"
            .as_bytes()
            .to_vec(),
    );
    let extra = vec![
        deep(100_000),
        // Megabytes of nesting: bounded before the YAML parser, which would take seconds.
        deep(1 << 20),
        format!("{{\"decision\": \"{}\"}}", "\u{1b}]0;t\u{7}".repeat(50_000)).into_bytes(),
        "a ".repeat(1 << 20).into_bytes(),
    ];
    let base = Definitions::of_rules_file(&text(&repo("cases/falco-rules/base_rules.yaml"))).expect("base rules");
    let falco = FalcoGrader::new(base);
    let json_grader = JsonGrader::new(Some(&json!({"type": "object", "required": ["action"]}))).expect("schema");
    let label = LabelGrader::new(Some("decision".into()), vec!["suppress".into(), "notify".into()]);
    // The sections grader the example suite configures (its headings, the severities by default).
    let config = Config::load(&PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("promptgate.toml")).expect("config");
    let sections = config.suites["securityhub-interpret"]
        .grader
        .iter()
        .find_map(|grader| match grader {
            GraderConfig::Sections {
                headings,
                severity_heading,
                severities,
            } => Some(SectionsGrader::new(
                headings.clone(),
                severity_heading.clone(),
                severities.clone(),
            )),
            _ => None,
        })
        .expect("the example suite's sections grader");
    let tools = ToolCallGrader::new(vec!["updateFindingStatusToSuppressed".into()]);
    let call =
        json!({"calls": [{"name": "updateFindingStatusToSuppressed", "arguments": {"reason": {"contains": "検証"}}}]});
    let check = |grade: Grade| {
        assert!(
            grade.reason.chars().count() <= MAX_REASON_CHARS + 1,
            "{} characters",
            grade.reason.len()
        );
        assert!(!grade.reason.chars().any(char::is_control), "{:?}", grade.reason);
    };
    campaign("grader", seeds, extra, inputs_per_target(300), |input| {
        let answer = String::from_utf8_lossy(input);
        let response = Response::from_text(&answer);
        check(label.grade(&response, &json!({"label": "notify"})));
        check(json_grader.grade(
            &answer,
            &json!({"fields": {"action": "suppress", "args": {"contains": "EC2"}}}),
        ));
        check(sections.grade(&answer, &json!({"severity": "HIGH"})));
        check(FactsGrader.grade(
            &answer,
            &json!({"facts": {"required": ["EC2", {"regex": "i-[0-9a-f]+"}], "forbidden": ["root"]}}),
        ));
        check(falco.grade(
            &answer,
            &json!({"falco": {"required_tags": ["T1529"], "condition_mentions": ["shutdown"]}}),
        ));
        // The answer as a tool call's arguments (parsed when it is JSON), and as its name.
        let arguments = serde_json::from_str(&answer).unwrap_or_else(|_| json!(answer));
        let called = Response {
            tool_calls: vec![
                ToolCall {
                    name: "updateFindingStatusToSuppressed".into(),
                    arguments,
                },
                ToolCall {
                    name: answer.chars().take(100_000).collect(),
                    arguments: json!({}),
                },
            ],
            ..Response::from_text("")
        };
        check(tools.grade(&called, &call));
    });
}
