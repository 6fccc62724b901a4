//! The example suites' shipped answers (`promptgate-cache.jsonl`, the real local model's answers
//! behind the committed baselines) replay every committed baseline offline: a fresh clone gets
//! the gate's verdicts without a model server, and the export and the baselines cannot drift
//! apart unnoticed.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn promptgate(cache: &Path) -> Command {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut command = Command::new(env!("CARGO_BIN_EXE_promptgate"));
    command
        .current_dir(root)
        .arg("--config")
        .arg(root.join("promptgate.toml"))
        .arg("--cache")
        .arg(cache)
        .env_remove("PROMPTGATE_CONFIG")
        .env_remove("PROMPTGATE_CACHE")
        .env("NO_COLOR", "1");
    command
}

/// A cache holding the shipped answers and nothing else, in a folder removed with the guard.
fn shipped_answers() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let cache = dir.path().join("cache.sqlite");
    let import = promptgate(&cache)
        .args(["cache", "import", "--quiet"])
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("promptgate-cache.jsonl"))
        .output()
        .expect("import");
    assert!(import.status.success(), "{}", String::from_utf8_lossy(&import.stderr));
    (dir, cache)
}

#[test]
fn the_shipped_answers_replay_every_committed_baseline_offline() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let (_dir, cache) = shipped_answers();

    let gate = promptgate(&cache)
        .args(["gate", "--offline", "--quiet", "--format", "json"])
        .output()
        .expect("gate");
    let record: Value = serde_json::from_slice(&gate.stdout).unwrap_or_else(|e| {
        panic!("{e}: {}", String::from_utf8_lossy(&gate.stderr));
    });
    assert_eq!(gate.status.code(), Some(0), "{}", String::from_utf8_lossy(&gate.stderr));
    assert_eq!(record["verdict"], "pass");
    assert_eq!(record["calls"]["made"], 0, "offline: nothing asked of a model");
    let results = record["results"].as_array().expect("results");
    let baselines = std::fs::read_dir(root.join("baselines"))
        .expect("baselines")
        .map(|suite| std::fs::read_dir(suite.expect("suite").path()).expect("suite").count())
        .sum::<usize>();
    assert_eq!(results.len(), baselines, "one result per committed baseline");
    for result in results {
        let name = format!("{} / {}", result["suite"], result["model"]);
        let delta = &result["baseline"]["delta"];
        // The same answers as the baseline's: every case's accuracy is the baseline's.
        assert_eq!(delta["point"].as_f64(), Some(0.0), "{name}: {delta}");
        assert_eq!(result["baseline"]["changed_cases"].as_u64(), Some(0), "{name}");
    }
}

/// The README's page of the two local models side by side is what `compare` makes of the
/// shipped answers (but for when it was made).
#[test]
fn the_committed_comparison_page_is_what_compare_makes_of_the_shipped_answers() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let (_dir, cache) = shipped_answers();
    let compare = promptgate(&cache)
        .args(["compare", "--offline", "--quiet", "--format", "html"])
        .args(["--model", "gemma-local", "--model", "qwen-local"])
        .output()
        .expect("compare");
    assert_eq!(
        compare.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&compare.stderr)
    );
    let timeless = |page: &str| {
        regex::Regex::new(r"\d{4}-\d{2}-\d{2}T[0-9:.]+Z")
            .expect("pattern")
            .replace_all(page, "<when>")
            .into_owned()
    };
    let made = String::from_utf8(compare.stdout).expect("UTF-8");
    let committed = std::fs::read_to_string(root.join("docs/compare-local-models.html")).expect("the page");
    assert!(
        made.contains("suite triage~injection"),
        "every suite and family is on the page"
    );
    assert!(
        timeless(&made) == timeless(&committed),
        "docs/compare-local-models.html is stale: write it again with `promptgate compare --offline \
         --model gemma-local --model qwen-local --out docs/compare-local-models.html`"
    );
}
