//! The triage and chatops-tools example suites against a real local model: llama.cpp's OpenAI-compatible server
//! with Gemma 3 270M, started by `ci/local-model.sh` (which `ci/test.sh` runs). Skipped unless
//! PROMPTGATE_REAL_MODEL_URL points at that server; under CI its absence is a failure. The
//! suites also list Qwen, which CI does not serve (its time limit): every command here names
//! Gemma.
//!
//! The 270M base model answers poorly; what is checked is the pipeline against a real server:
//! every call answered, schema-constrained output graded, accuracy inside its interval, and a
//! second run served wholly from the cache.

use std::path::Path;

use serde_json::Value;

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).expect("copy");
        }
    }
}

/// `config` without the TOML table headed `header` (up to the next table).
fn without_table(config: &str, header: &str) -> String {
    let Some(start) = config.find(header) else {
        return config.to_string();
    };
    let end = config[start + header.len()..]
        .find("\n[")
        .map_or(config.len(), |at| start + header.len() + at + 1);
    format!("{}{}", &config[..start], &config[end..])
}

/// `promptgate ARGS… --model gemma-local --format json` in `dir`: the JSON it printed and its
/// exit code.
fn promptgate(dir: &Path, args: &[&str]) -> (Value, i32) {
    let output = assert_cmd::Command::cargo_bin("promptgate")
        .expect("binary")
        .current_dir(dir)
        .args(args)
        .args(["--model", "gemma-local", "--format", "json"])
        .output()
        .expect("promptgate");
    let record = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}); stderr: {}", String::from_utf8_lossy(&output.stderr)));
    (record, output.status.code().expect("exit code"))
}

/// The triage suite, with `args`.
fn run(dir: &Path, args: &[&str]) -> (Value, i32) {
    promptgate(dir, &[&["run", "--suite", "triage"], args].concat())
}

#[test]
fn triage_suite_against_llama_cpp_server() {
    let Some(url) = std::env::var("PROMPTGATE_REAL_MODEL_URL")
        .ok()
        .filter(|u| !u.is_empty())
    else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must run this test: ci/test.sh starts the local model and sets PROMPTGATE_REAL_MODEL_URL"
        );
        eprintln!("skipped: set PROMPTGATE_REAL_MODEL_URL (ci/local-model.sh start; ci/local-model.sh url)");
        return;
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().expect("temp dir");
    copy_tree(&root.join("prompts"), &dir.path().join("prompts"));
    copy_tree(&root.join("cases/triage"), &dir.path().join("cases/triage"));
    copy_tree(&root.join("baselines/triage"), &dir.path().join("baselines/triage"));
    copy_tree(&root.join("cases/chatops"), &dir.path().join("cases/chatops"));
    copy_tree(
        &root.join("baselines/chatops-tools"),
        &dir.path().join("baselines/chatops-tools"),
    );
    let config = std::fs::read_to_string(root.join("promptgate.toml")).expect("config");
    assert!(
        config.contains("http://127.0.0.1:8089/v1"),
        "the example config names the local server"
    );
    // This test is about the suites themselves: without the triage suite's robustness families,
    // whose 176 variants would more than double its time on 2 cores (the main job,
    // `ci/examples.sh`, runs them).
    let config = without_table(&config, "[suites.triage.robustness]");
    std::fs::write(
        dir.path().join("promptgate.toml"),
        config.replace("http://127.0.0.1:8089/v1", &url),
    )
    .expect("write");

    let (record, code) = run(dir.path(), &["--samples", "3"]);
    assert_eq!(code, 0, "{record:#}");
    let result = &record["results"][0];
    let cases = result["cases"].as_u64().unwrap();
    assert!(cases >= 40);
    assert_eq!(result["model_id"], "gemma-3-270m");
    assert_eq!(result["samples_per_case"], 3);
    assert_eq!(record["calls"]["made"].as_u64().unwrap(), cases * 3);
    assert_eq!(record["calls"]["failed"], 0);
    assert!(
        result["tokens"]["input"].as_u64().unwrap() > 1000 * cases,
        "real prompts carry whole findings"
    );
    let accuracy = &result["accuracy"];
    let (point, lower, upper) = (
        accuracy["point"].as_f64().unwrap(),
        accuracy["lower"].as_f64().unwrap(),
        accuracy["upper"].as_f64().unwrap(),
    );
    assert!(
        0.0 <= lower && lower <= point && point <= upper && upper <= 1.0,
        "{accuracy}"
    );
    let graded: u64 = result["per_case"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["samples"].as_u64().unwrap())
        .sum();
    assert_eq!(graded, cases * 3, "every answer was graded (invalid ones as wrong)");
    eprintln!(
        "gemma-3-270m on triage: accuracy {point:.3} [{lower:.3}, {upper:.3}], {} invalid of {}",
        result["invalid_outputs"],
        cases * 3
    );

    let (again, code) = run(dir.path(), &["--samples", "3", "--offline"]);
    assert_eq!(code, 0);
    assert_eq!(again["calls"]["made"], 0);
    assert_eq!(again["calls"]["cached"].as_u64().unwrap(), cases * 3);
    assert_eq!(again["results"][0]["accuracy"], *accuracy);

    // The committed baseline came from this model on this suite: on a fresh clone the gate
    // passes against it (from the cache just filled, so no further call).
    let (gated, code) = promptgate(dir.path(), &["gate", "--suite", "triage", "--offline"]);
    assert_eq!(code, 0, "{gated:#}");
    let comparison = &gated["results"][0]["baseline"];
    assert_eq!(comparison["cases_compared"].as_u64().unwrap(), cases);
    assert_eq!(gated["calls"]["made"], 0);
    eprintln!(
        "gate against the committed baseline: {} (delta {:+.3}, p = {:.3})",
        comparison["verdict"],
        comparison["delta"]["point"].as_f64().unwrap(),
        comparison["p_value"].as_f64().unwrap()
    );

    // Tool definitions on a real OpenAI-compatible server: llama-cpp-python accepts them, answers
    // `tool_choice = auto` in text, and the gate passes against the committed baseline.
    let (gated, code) = promptgate(dir.path(), &["gate", "--suite", "chatops-tools"]);
    assert_eq!(code, 0, "{gated:#}");
    let result = &gated["results"][0];
    assert_eq!(gated["calls"]["failed"], 0);
    assert_eq!(
        result["baseline"]["cases_compared"].as_u64().unwrap(),
        result["cases"].as_u64().unwrap()
    );
    eprintln!(
        "chatops-tools gate: {} at accuracy {}",
        result["baseline"]["verdict"], result["accuracy"]["point"]
    );
}
