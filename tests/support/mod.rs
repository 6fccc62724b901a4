//! Test fixtures: an in-process fake OpenAI-compatible server on 127.0.0.1 and helpers that
//! lay out a project (config, prompt, cases) in a temporary folder.
//!
//! The fake speaks real HTTP/1.1 and the real Chat Completions wire format, so the product's
//! real client code (async-openai over reqwest) runs against it. It is a fixture, never a
//! product feature.

#![allow(dead_code)]

pub mod fake_batch;
pub mod fake_bedrock_batch;
pub mod fake_server;

use std::path::{Path, PathBuf};

/// A project folder with `promptgate.toml`, a prompt and cases.
pub struct Project {
    pub dir: tempfile::TempDir,
}

impl Project {
    /// A project whose single suite `s` has `cases` label cases (ids c00, c01, …) with the
    /// given expected labels, on model `m` served at `base_url`.
    pub fn new(base_url: &str, labels: &[&str], samples: u32, provider_extra: &str) -> Project {
        Project::with_provider(
            &format!("kind = \"openai\"\nbase_url = \"{base_url}\""),
            "fake-model",
            labels,
            samples,
            provider_extra,
        )
    }

    /// The same project on a Bedrock provider at `endpoint`, model id `model_id`.
    pub fn bedrock(endpoint: &str, model_id: &str, labels: &[&str], samples: u32) -> Project {
        let provider = format!("kind = \"bedrock\"\nregion = \"us-east-1\"\nendpoint_url = \"{endpoint}\"");
        Project::with_provider(&provider, model_id, labels, samples, "")
    }

    /// A project with the given `[providers.fake]` settings.
    pub fn with_provider(
        provider: &str,
        model_id: &str,
        labels: &[&str],
        samples: u32,
        provider_extra: &str,
    ) -> Project {
        let dir = tempfile::tempdir().expect("temp dir");
        let project = Project { dir };
        project.write(
            "promptgate.toml",
            &format!(
                r#"schema_version = 1
[defaults]
concurrency = 4

[providers.fake]
{provider}
max_attempts = 4
retry_base_ms = 10
retry_max_ms = 3000
timeout_secs = 5
{provider_extra}

[models.m]
provider = "fake"
model = "{model_id}"
temperature = 1.0
max_tokens = 50
seed = 100

[suites.s]
prompt = "prompts/p.toml"
cases = "cases/s"
models = ["m"]
samples = {samples}
grader = {{ kind = "label", field = "decision", labels = ["suppress", "notify"] }}
"#
            ),
        );
        project.write(
            "prompts/p.toml",
            r#"system = "Answer suppress or notify."
user = """case={{ case_id }}
Rule: {{ rule }}
Finding: {{ finding | tojson }}"""
[response_schema]
name = "decision"
strict = true
schema = { type = "object", properties = { decision = { type = "string", enum = ["suppress", "notify"] } }, required = ["decision"] }
"#,
        );
        project.write(
            "cases/s/findings/f.json",
            r#"{"Id": "arn:aws:securityhub:ap-northeast-1:111122223333:x", "Severity": {"Label": "LOW"}}"#,
        );
        let mut lines = String::new();
        for (index, label) in labels.iter().enumerate() {
            lines.push_str(&format!(
                "{{\"id\": \"c{index:02}\", \"vars\": {{\"rule\": \"rule {index}\", \"finding\": {{\"$file\": \"findings/f.json\"}}}}, \"expect\": {{\"label\": \"{label}\"}}}}\n"
            ));
        }
        project.write("cases/s/cases.jsonl", &lines);
        project
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn file(&self, relative: &str) -> PathBuf {
        self.dir.path().join(relative)
    }

    pub fn write(&self, relative: &str, text: &str) {
        let path = self.file(relative);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, text).expect("write");
    }

    /// `promptgate` run in this project folder, with a clean environment for the provider.
    pub fn command(&self) -> assert_cmd::Command {
        assert_cmd::Command::from_std(self.std_command())
    }

    /// The same as [`Project::command`], as a plain `std::process::Command` (to spawn).
    pub fn std_command(&self) -> std::process::Command {
        let mut command = std::process::Command::new(binary());
        command
            .current_dir(self.path())
            .env_remove("PROMPTGATE_CONFIG")
            .env_remove("PROMPTGATE_CACHE")
            // A call limit set around the tests would refuse their runs.
            .env_remove("PROMPTGATE_MAX_CALLS")
            .env_remove("OPENAI_BASE_URL")
            .env("OPENAI_API_KEY", "test-key")
            // Static AWS credentials and no profile or instance metadata: the default chain
            // resolves at once and never leaves the machine.
            .env("AWS_ACCESS_KEY_ID", "AKIDPROMPTGATETEST")
            .env("AWS_SECRET_ACCESS_KEY", "promptgate-test-secret")
            .env("AWS_CONFIG_FILE", "/nonexistent/promptgate-test")
            .env("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/promptgate-test")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env_remove("AWS_PROFILE")
            .env_remove("AWS_ENDPOINT_URL")
            .env_remove("AWS_ENDPOINT_URL_BEDROCK_RUNTIME")
            .env_remove("AWS_ENDPOINT_URL_BEDROCK")
            .env_remove("AWS_ENDPOINT_URL_S3")
            .env("NO_COLOR", "1");
        command
    }

    /// Start `promptgate ARGS…` and kill it (SIGKILL) once `paused` signals that a fake server
    /// stopped where the test wants the run killed; `place` names that point in the failure.
    pub fn kill_when(&self, args: &[&str], paused: &std::sync::mpsc::Receiver<()>, place: &str) {
        let mut child = self
            .std_command()
            .args(args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn");
        paused
            .recv_timeout(std::time::Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("{place}: the run never got there"));
        child.kill().expect("kill -9");
        child.wait().expect("reaped");
    }

    /// Run `promptgate ARGS… --format json` and return the record and the exit code.
    pub fn json(&self, args: &[&str]) -> (serde_json::Value, i32) {
        let output = self
            .command()
            .args(args)
            .args(["--format", "json"])
            .output()
            .expect("run");
        let record = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}): {}\nstderr: {}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            )
        });
        (record, output.status.code().expect("exit code"))
    }

    /// Rows in the project's cache.
    pub fn cached_rows(&self) -> i64 {
        self.rows("responses")
    }

    /// The number of rows of `table` in the project's cache.
    pub fn rows(&self, table: &str) -> i64 {
        let connection = rusqlite::Connection::open(self.file(".promptgate/cache.sqlite")).expect("open cache");
        connection
            .query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |row| row.get(0))
            .expect("count")
    }
}

/// The binary the black-box tests run: this build's, or the one `PROMPTGATE_TEST_BINARY` names
/// (a release build, or an earlier version to show that a test fails without its fix).
pub fn binary() -> PathBuf {
    match std::env::var_os("PROMPTGATE_TEST_BINARY") {
        Some(path) => PathBuf::from(path),
        None => assert_cmd::cargo::cargo_bin("promptgate"),
    }
}

/// `run --batch` on `project`, checked to succeed at `accuracy` and to send and answer all
/// `calls` calls in batches (none failed, none left to make online); its record.
pub fn run_all_in_batches(project: &Project, calls: u64, accuracy: f64) -> serde_json::Value {
    let (record, code) = project.json(&["run", "--batch"]);
    assert_eq!(code, 0, "{record:#}");
    let point = record["results"][0]["accuracy"]["point"].as_f64().expect("an accuracy");
    assert!((point - accuracy).abs() < 1e-12, "{point}");
    let batch = &record["batch"];
    let counts = ["submitted", "answered", "failed", "online"].map(|field| batch[field].as_u64());
    assert_eq!(counts, [Some(calls), Some(calls), Some(0), Some(0)], "{batch:#}");
    record
}
