//! The GitHub Action's own shell steps (`ci/action/*.sh`), run as Actions would run them against
//! a locally built "release": an archive of the real binary and its SHA-256, served from a
//! folder, and a project answered by a fake OpenAI-compatible server.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use sha2::{Digest, Sha256};
use support::fake_server::{FakeServer, Reply};
use support::Project;

const VERSION: &str = "v0.1.0";

/// The runner's `RUNNER_ARCH` for this machine, and the target the release names.
fn runner() -> (&'static str, &'static str) {
    match std::env::consts::ARCH {
        "aarch64" => ("ARM64", "aarch64-unknown-linux-gnu"),
        _ => ("X64", "x86_64-unknown-linux-gnu"),
    }
}

/// A release folder laid out as GitHub serves one: `download/<tag>/promptgate-<target>.tar.gz`
/// and its `.sha256` (the shape the release workflow's upload action writes).
fn a_release(checksum: Option<&str>) -> tempfile::TempDir {
    let root = tempfile::tempdir().expect("temp dir");
    let (_, target) = runner();
    let folder = root.path().join("download").join(VERSION);
    std::fs::create_dir_all(&folder).expect("mkdir");
    let staging = tempfile::tempdir().expect("temp dir");
    std::fs::copy(env!("CARGO_BIN_EXE_promptgate"), staging.path().join("promptgate")).expect("copy");
    let archive = folder.join(format!("promptgate-{target}.tar.gz"));
    let status = Command::new("tar")
        .arg("-czf")
        .arg(&archive)
        .arg("-C")
        .arg(staging.path())
        .arg("promptgate")
        .status()
        .expect("tar");
    assert!(status.success());
    let digest = hex(&Sha256::digest(std::fs::read(&archive).expect("archive")));
    let line = format!("{}  promptgate-{target}.tar.gz\n", checksum.unwrap_or(&digest));
    std::fs::write(folder.join(format!("promptgate-{target}.sha256")), line).expect("checksum");
    root
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The files Actions gives a step: its outputs, the PATH additions and the step summary.
struct Step {
    dir: tempfile::TempDir,
}

impl Step {
    fn new() -> Step {
        let step = Step {
            dir: tempfile::tempdir().expect("temp dir"),
        };
        for file in ["output", "path", "summary"] {
            std::fs::write(step.file(file), "").expect("touch");
        }
        step
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.file(name)).expect("read")
    }

    /// The value of output `name`, as the runner would parse it.
    fn output(&self, name: &str) -> Option<String> {
        self.read("output")
            .lines()
            .rev()
            .filter_map(|line| line.split_once('='))
            .find(|(key, _)| *key == name)
            .map(|(_, value)| value.to_string())
    }

    fn script(&self, name: &str) -> Command {
        let mut command = Command::new("bash");
        command
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("ci/action").join(name))
            .env("GITHUB_OUTPUT", self.file("output"))
            .env("GITHUB_PATH", self.file("path"))
            .env("GITHUB_STEP_SUMMARY", self.file("summary"))
            .env("RUNNER_TEMP", self.dir.path())
            .env("RUNNER_OS", "Linux")
            .env("RUNNER_ARCH", runner().0)
            .env_remove("PROMPTGATE_CONFIG")
            .env_remove("PROMPTGATE_CACHE")
            .env_remove("PROMPTGATE_MAX_CALLS")
            .env_remove("GH_TOKEN");
        command
    }

    fn install(&self, release: &Path, version: &str) -> Output {
        self.script("install.sh")
            .env("PROMPTGATE_VERSION", version)
            .env("PROMPTGATE_RELEASE_URL", format!("file://{}", release.display()))
            .output()
            .expect("install.sh")
    }
}

/// The action's run step in `project`, with the installed binary first on PATH and the
/// `import` input set to `import`.
fn run_step(step: &Step, project: &Project, command: &str, args: &str, import: &str) -> Output {
    let installed = step.read("path");
    let bin = installed.lines().next().expect("an installed folder");
    let path = format!("{bin}:{}", std::env::var("PATH").unwrap_or_default());
    step.script("run.sh")
        .current_dir(project.path())
        .env("PATH", path)
        .env("PROMPTGATE_COMMAND", command)
        .env("PROMPTGATE_ARGS", args)
        .env("PROMPTGATE_IMPORT", import)
        .env("PROMPTGATE_CONFIG", project.file("promptgate.toml"))
        .env("PROMPTGATE_CACHE", project.file(".promptgate/cache.sqlite"))
        .env("OPENAI_API_KEY", "test-key")
        .output()
        .expect("run.sh")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn the_action_installs_a_checked_release_and_reports_each_verdict() {
    let release = a_release(None);
    let step = Step::new();
    let installed = step.install(release.path(), VERSION);
    assert!(installed.status.success(), "{}", text(&installed.stderr));
    assert_eq!(step.output("installed").as_deref(), Some("true"));
    let bin = PathBuf::from(step.read("path").trim()).join("promptgate");
    let version = Command::new(&bin).arg("--version").output().expect("run");
    assert!(text(&version.stdout).contains(env!("CARGO_PKG_VERSION")));

    // The model answers right until `wrong` is set.
    let wrong = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&wrong);
    let server = FakeServer::start(move |_| {
        Reply::label(if flag.load(Ordering::SeqCst) {
            "notify"
        } else {
            "suppress"
        })
    });
    let project = Project::new(&server.base_url, &["suppress"; 12], 3, "");

    let run = run_step(&step, &project, "run", "--suite s", "");
    assert_eq!(run.status.code(), Some(0), "{}", text(&run.stderr));
    assert_eq!(step.output("verdict").as_deref(), Some("pass"));
    assert_eq!(step.output("exit-code").as_deref(), Some("0"));
    let record = step.output("report-json").expect("a JSON record");
    let record: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(record).expect("record")).expect("JSON");
    assert_eq!(record["verdict"], "pass");
    assert!(std::fs::read_to_string(step.output("report-html").expect("a page"))
        .expect("page")
        .contains("<html"));
    assert!(step.read("summary").contains("| s | m |"), "{}", step.read("summary"));

    // No baseline yet: an error, named as one.
    let gate = run_step(&step, &project, "gate", "", "");
    assert_eq!(gate.status.code(), Some(2));
    assert_eq!(step.output("verdict").as_deref(), Some("error"));
    // It ended before any report: the summary (and so the pull request's comment) says why.
    let summary = step.read("summary");
    assert!(summary.contains("## promptgate gate: error (exit 2)"), "{summary}");
    assert!(summary.contains("baseline"), "{summary}");
    // A message quotes input: in the summary it is text, never Markdown or HTML.
    let bad = run_step(&step, &project, "run", "--suite <img/src=x>", "");
    assert_eq!(bad.status.code(), Some(2));
    let summary = step.read("summary");
    assert!(summary.contains("&lt;img/src=x&gt;"), "{summary}");
    assert!(!summary.contains("<img"), "{summary}");

    let update = run_step(&step, &project, "baseline update", "--quiet", "");
    assert_eq!(update.status.code(), Some(0), "{}", text(&update.stderr));
    assert!(project.file("baselines/s/m.json").is_file());
    let calls = server.request_count();
    let gate = run_step(&step, &project, "gate", "", "");
    assert_eq!(gate.status.code(), Some(0), "{}", text(&gate.stderr));
    assert_eq!(step.output("verdict").as_deref(), Some("pass"));
    assert_eq!(
        server.request_count(),
        calls,
        "the restored cache answers an unchanged gate"
    );

    // A fresh runner with no cache but a committed export: the `import` input answers it.
    let export = project
        .command()
        .args(["cache", "export", "--quiet", "--out", "promptgate-cache.jsonl"])
        .output()
        .expect("export");
    assert!(export.status.success(), "{}", text(&export.stderr));
    std::fs::remove_file(project.file(".promptgate/cache.sqlite")).expect("remove the cache");
    let gate = run_step(&step, &project, "gate", "", "promptgate-cache.jsonl");
    assert_eq!(gate.status.code(), Some(0), "{}", text(&gate.stderr));
    assert_eq!(step.output("verdict").as_deref(), Some("pass"));
    assert_eq!(server.request_count(), calls, "the imported export answers the gate");

    // A new epoch asks the model afresh, which now answers wrong: a significant drop.
    wrong.store(true, Ordering::SeqCst);
    project.write(
        "prompts/p.toml",
        &std::fs::read_to_string(project.file("prompts/p.toml"))
            .expect("prompt")
            .replace("Answer suppress or notify.", "Answer suppress or notify, carefully."),
    );
    // The edit changes all 36 requests: over a call limit, nothing is called and the summary
    // says so.
    let before = server.request_count();
    let refused = run_step(&step, &project, "gate", "--max-calls 5", "");
    assert_eq!(refused.status.code(), Some(3), "{}", text(&refused.stderr));
    assert_eq!(step.output("verdict").as_deref(), Some("inconclusive"));
    assert_eq!(server.request_count(), before);
    let summary = step.read("summary");
    assert!(
        summary.contains("would call the providers 36 times, more than --max-calls 5"),
        "{summary}"
    );
    let gate = run_step(&step, &project, "gate", "", "");
    assert_eq!(gate.status.code(), Some(1), "{}", text(&gate.stdout));
    assert_eq!(step.output("verdict").as_deref(), Some("regressed"));
    assert!(
        step.read("summary").contains("significant regression"),
        "{}",
        step.read("summary")
    );
}

#[test]
fn a_release_that_does_not_match_its_checksum_is_refused() {
    let release = a_release(Some(&"0".repeat(64)));
    let step = Step::new();
    let installed = step.install(release.path(), VERSION);
    assert!(!installed.status.success());
    let stderr = text(&installed.stderr);
    assert!(stderr.contains("refusing to install it"), "{stderr}");
    assert_eq!(step.output("installed"), None);
    assert_eq!(step.read("path"), "", "nothing goes on PATH");

    let garbage = a_release(Some("not a checksum"));
    let installed = step.install(garbage.path(), VERSION);
    assert!(!installed.status.success());
    assert!(text(&installed.stderr).contains("does not hold a SHA-256"));
}

#[test]
fn no_release_for_the_version_or_the_platform_falls_back_to_a_build() {
    let release = a_release(None);
    let step = Step::new();
    let missing = step.install(release.path(), "v9.9.9");
    assert!(missing.status.success(), "{}", text(&missing.stderr));
    assert_eq!(step.output("installed").as_deref(), Some("false"));
    assert!(text(&missing.stderr).contains("building from source"));

    let step = Step::new();
    let windows = step
        .script("install.sh")
        .env("RUNNER_OS", "Windows")
        .env("RUNNER_ARCH", "X64")
        .env("PROMPTGATE_VERSION", VERSION)
        .env("PROMPTGATE_RELEASE_URL", format!("file://{}", release.path().display()))
        .output()
        .expect("install.sh");
    assert!(windows.status.success());
    assert_eq!(step.output("installed").as_deref(), Some("false"));

    let step = Step::new();
    let bad = step.install(release.path(), "main; rm -rf /");
    assert!(!bad.status.success());
    assert!(text(&bad.stderr).contains("neither `latest` nor a tag"));
}
