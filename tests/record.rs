//! `promptgate record` end to end: AWS's own sample findings in every envelope become redacted
//! cases; duplicates are refused; bad input writes nothing; concurrent and killed `record`
//! processes never leave a half case or overwrite one; a recorded case runs at once and the gate
//! calls it new; `--from-run` turns a run's wrong answers into cases.

mod support;

use std::path::{Path, PathBuf};
use std::process::Stdio;

use serde_json::{json, Value};
use support::fake_server::{FakeServer, Reply};
use support::Project;

const PUBLIC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/public");
const RULE: &str = "アカウント 193043430472 の 172.31.43.6 への SSH ブルートフォースは抑制する";

fn public(name: &str) -> PathBuf {
    Path::new(PUBLIC).join(name)
}

fn public_json(name: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(public(name)).unwrap()).unwrap()
}

/// A project whose suite `s` (label grader, prompt reading `rule` and `finding`) has two cases;
/// its provider is never called by `record`.
fn project() -> Project {
    Project::new("http://127.0.0.1:9/v1", &["suppress", "notify"], 1, "")
}

/// The `.json` case files `record` wrote into `cases/s` (the project's own file is `.jsonl`).
fn recorded(project: &Project) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(project.file("cases/s"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    files
}

fn read_case(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// `record --suite s ARGS… --json`: the outcomes and the exit code.
fn record(project: &Project, args: &[&str]) -> (Value, i32, String) {
    let output = project
        .command()
        .args(["record", "--suite", "s", "--json"])
        .args(args)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let value = serde_json::from_slice(&output.stdout).unwrap_or(Value::Null);
    (value, output.status.code().unwrap(), stderr)
}

/// The `outcome` of each entry of `record --json`'s output.
fn outcomes(out: &Value) -> Vec<&str> {
    out["outcomes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["outcome"].as_str().unwrap())
        .collect()
}

/// `record --suite s --finding FINDING --expect EXPECT --rule RULE EXTRA… --json`.
fn record_finding(project: &Project, finding: &str, expect: &str, rule: &str, extra: &[&str]) -> (Value, i32, String) {
    let mut args = vec!["--finding", finding, "--expect", expect, "--rule", rule];
    args.extend_from_slice(extra);
    record(project, &args)
}

#[test]
fn public_samples_in_every_envelope_become_redacted_cases() {
    let project = project();
    let samples = [
        "securityhub-fsbp.json",
        "securityhub-cis-1.2.json",
        "securityhub-cis-1.4.json",
        "securityhub-nist.json",
        "securityhub-pcidss.json",
        "securityhub-service-managed-aws-control-tower.json",
        "securityhub-consolidation.json",
        "guardduty-asff-ssh-brute-force.json",
    ];
    for sample in samples {
        let path = public(sample);
        let (out, code, stderr) = record_finding(&project, path.to_str().unwrap(), "notify", RULE, &[]);
        assert_eq!(code, 0, "{sample}: {stderr}");
        assert_eq!(out["outcomes"][0]["outcome"], "recorded", "{sample}: {out:#}");
    }
    // The GuardDuty sample again, inside its EventBridge envelope: the same finding and rule.
    let event = public("eventbridge-securityhub-imported.json");
    let (out, code, _) = record_finding(&project, event.to_str().unwrap(), "notify", RULE, &[]);
    assert_eq!(
        (code, out["outcomes"][0]["outcome"].as_str()),
        (5, Some("duplicate")),
        "{out:#}"
    );

    let files = recorded(&project);
    assert_eq!(files.len(), samples.len());
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        for original in [
            "123456789012",
            "193043430472",
            "199.241.229.197",
            "172.31.43.6",
            "18.234.130.16",
        ] {
            assert!(!text.contains(original), "{original} survived in {}", file.display());
        }
    }
    // Each control sample's id says what it is about; the account is the same placeholder in the
    // finding and the rule.
    let ids: Vec<String> = files
        .iter()
        .map(|f| f.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        ids.iter().filter(|id| id.starts_with("miss-cloudtrail-2-")).count(),
        7,
        "{ids:?}"
    );
    let guardduty = files
        .iter()
        .find(|f| f.to_string_lossy().contains("sshbruteforce"))
        .expect("the GuardDuty case");
    let case = read_case(guardduty);
    assert_eq!(case["vars"]["finding"]["AwsAccountId"], "000000000001");
    assert_eq!(
        case["vars"]["rule"],
        "アカウント 000000000001 の 192.0.2.2 への SSH ブルートフォースは抑制する"
    );
    assert_eq!(
        case["vars"]["finding"]["Resources"][0]["Details"]["AwsEc2Instance"]["IpV4Addresses"],
        json!(["192.0.2.3", "192.0.2.2"])
    );
    assert_eq!(case["expect"], json!({"label": "notify"}));
    assert_eq!(case["source"]["kind"], "production-miss");
    assert_eq!(case["source"]["input"], json!({"envelope": "bare", "format": "asff"}));
    assert_eq!(
        case["source"]["redaction"]["replaced"],
        json!({"account-id": 1, "ipv4": 3})
    );
    assert!(case["source"]["redaction"]["rules"]
        .as_array()
        .unwrap()
        .contains(&json!("access-key-id")));
}

#[test]
fn several_findings_need_an_index_or_all() {
    let project = project();
    let batch =
        json!({"Findings": [public_json("securityhub-fsbp.json"), public_json("guardduty-asff-ssh-brute-force.json")]});
    project.write("batch.json", &batch.to_string());

    let (_, code, stderr) = record_finding(&project, "batch.json", "notify", RULE, &[]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("the input holds 2 findings"), "{stderr}");
    assert!(
        stderr.contains("[1] 199.241.229.197 is performing SSH brute force attacks"),
        "{stderr}"
    );
    assert!(stderr.contains("--index N") && stderr.contains("--all"), "{stderr}");
    assert!(recorded(&project).is_empty());

    let (out, code, stderr) = record(
        &project,
        &[
            "--finding",
            "batch.json",
            "--index",
            "1",
            "--expect",
            "notify",
            "--rule",
            RULE,
        ],
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(out["outcomes"][0]["id"]
        .as_str()
        .unwrap()
        .starts_with("miss-unauthorizedaccess-ec2-sshbruteforce-"));
    assert_eq!(recorded(&project).len(), 1);

    let (_, code, stderr) = record(
        &project,
        &[
            "--finding",
            "batch.json",
            "--index",
            "2",
            "--expect",
            "notify",
            "--rule",
            RULE,
        ],
    );
    assert_eq!(code, 2);
    assert!(
        stderr.contains("--index 2 is out of range: the input holds 2 finding(s)"),
        "{stderr}"
    );

    // --all: the first is new, the second was just recorded.
    let (out, code, _) = record(
        &project,
        &["--finding", "batch.json", "--all", "--expect", "notify", "--rule", RULE],
    );
    assert_eq!(code, 5, "{out:#}");
    assert_eq!(outcomes(&out), ["recorded", "duplicate"]);
    assert_eq!(recorded(&project).len(), 2);
}

#[test]
fn guardduty_findings_and_their_events_are_read_from_stdin() {
    let project = project();
    let finding = json!({
        "schemaVersion": "2.0", "accountId": "210987654321", "region": "ap-northeast-1", "partition": "aws",
        "id": "5ec2f3a9c1d8e7b6a5f4e3d2c1b0a9f8",
        "arn": "arn:aws:guardduty:ap-northeast-1:210987654321:detector/12abc34d567e8fa901bc2d34e56789f0/finding/5ec2f3a9c1d8e7b6a5f4e3d2c1b0a9f8",
        "type": "UnauthorizedAccess:IAMUser/MaliciousIPCaller.Custom", "severity": 5, "title": "API called from a listed IP",
        "resource": {"resourceType": "AccessKey", "accessKeyDetails": {"accessKeyId": "ASIAQWERTYUIOPASDFGH", "userName": "ops@corp.example.net"}},
        "service": {"count": 3, "eventLastSeen": "2026-11-20T01:02:03Z",
                    "action": {"awsApiCallAction": {"remoteIpDetails": {"ipAddressV6": "2406:da14:abc:1::10"}}}},
        "createdAt": "2026-11-20T01:02:03.000Z", "updatedAt": "2026-11-20T01:02:03.000Z",
    });
    let event = json!({"version": "0", "detail-type": "GuardDuty Finding", "source": "aws.guardduty", "account": "210987654321", "detail": finding});
    let mut child = project
        .std_command()
        .args([
            "record",
            "--suite",
            "s",
            "--finding",
            "-",
            "--expect",
            "notify",
            "--json",
            "--rule",
            "listed IPs from 210987654321 are suppressed",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), event.to_string().as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(0));
    let out: Value = serde_json::from_slice(&output.stdout).unwrap();
    let case = read_case(
        Path::new(project.path())
            .join(out["outcomes"][0]["path"].as_str().unwrap())
            .as_path(),
    );
    let text = case.to_string();
    for original in [
        "210987654321",
        "ASIAQWERTYUIOPASDFGH",
        "ops@corp.example.net",
        "2406:da14:abc:1::10",
    ] {
        assert!(!text.contains(original), "{original} survived: {text}");
    }
    assert_eq!(case["vars"]["rule"], "listed IPs from 000000000001 are suppressed");
    assert_eq!(
        case["vars"]["finding"]["resource"]["accessKeyDetails"]["accessKeyId"],
        "ASIAREDACTED00000001"
    );
    assert_eq!(
        case["source"]["input"],
        json!({"envelope": "guardduty-event", "format": "guardduty"})
    );
    assert!(case["id"]
        .as_str()
        .unwrap()
        .starts_with("miss-unauthorizedaccess-iamuser-maliciousipcaller-custom-"));

    // The bare finding later, with another count and time: the same case.
    let mut again = finding.clone();
    again["service"]["count"] = json!(9);
    again["updatedAt"] = json!("2026-11-22T00:00:00.000Z");
    project.write("gd.json", &again.to_string());
    let (out, code, _) = record_finding(
        &project,
        "gd.json",
        "notify",
        "listed IPs from 210987654321 are suppressed",
        &[],
    );
    assert_eq!((code, out["outcomes"][0]["outcome"].as_str()), (5, Some("duplicate")));
}

#[test]
fn duplicates_and_conflicts_are_refused_unless_forced() {
    let project = project();
    let sample = public("securityhub-fsbp.json");
    let sample = sample.to_str().unwrap();
    let (first, code, _) = record_finding(&project, sample, "suppress", "r", &["--note", "bot notified"]);
    assert_eq!(code, 0);
    let path = first["outcomes"][0]["path"].as_str().unwrap().to_string();

    let output = project
        .command()
        .args([
            "record",
            "-s",
            "s",
            "--finding",
            sample,
            "--expect",
            "suppress",
            "--rule",
            "r",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(5));
    assert!(
        stdout.contains("already case `miss-cloudtrail-2-") && stdout.contains(&path),
        "{stdout}"
    );
    assert!(String::from_utf8_lossy(&output.stderr).contains("--force"));

    let (out, code, _) = record_finding(&project, sample, "notify", "r", &[]);
    assert_eq!(code, 5);
    assert_eq!(out["outcomes"][0]["outcome"], "conflict");
    assert_eq!(out["outcomes"][0]["existing_expect"], json!({"label": "suppress"}));
    assert_eq!(out["outcomes"][0]["expect"], json!({"label": "notify"}));

    // Another rule is another case; --force writes a second copy under a new id.
    let (out, code, _) = record_finding(&project, sample, "suppress", "another rule", &[]);
    assert_eq!((code, out["outcomes"][0]["outcome"].as_str()), (0, Some("recorded")));
    let (out, code, _) = record_finding(&project, sample, "suppress", "r", &["--force"]);
    assert_eq!(code, 0);
    assert!(out["outcomes"][0]["id"].as_str().unwrap().ends_with("-2"), "{out:#}");
    assert_eq!(recorded(&project).len(), 3);

    // A chosen id that is taken is refused; so is one that cannot be a file name.
    let (_, code, stderr) = record_finding(&project, sample, "suppress", "x", &["--id", "c00"]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("case id `c00` is already used in `cases/s/cases.jsonl` line 1"),
        "{stderr}"
    );
    let (_, code, stderr) = record_finding(&project, sample, "suppress", "x", &["--id", "../escape"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("`../escape` cannot be a case id"), "{stderr}");
}

#[test]
fn bad_input_is_refused_with_exit_2_and_writes_nothing() {
    let project = project();
    let not_a_finding = json!({"Findings": [{"SchemaVersion": "2018-10-08", "Id": "x", "Title": "half"}]});
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "docs.json",
            std::fs::read(public("securityhub-consolidation.as-published.txt")).unwrap(),
            "at line 38, column 3: not JSON: expected `,` or `}`",
        ),
        (
            "latin1.json",
            b"{\"Title\": \"caf\xE9\"}".to_vec(),
            "at line 1, column 15: not UTF-8 text (byte 0xE9)",
        ),
        (
            "half.json",
            not_a_finding.to_string().into_bytes(),
            "(at `Findings[0]`): an ASFF finding needs the fields ASFF requires (missing: `ProductArn`",
        ),
        ("other.json", b"{\"hello\": 1}".to_vec(), "this JSON is not a finding"),
        ("empty.json", Vec::new(), "the input is empty"),
        (
            "huge.json",
            vec![b' '; 32 * 1024 * 1024 + 10],
            "more than the 32 MiB record reads",
        ),
    ];
    for (name, bytes, message) in cases {
        std::fs::write(project.file(name), bytes).unwrap();
        let (_, code, stderr) = record_finding(&project, name, "notify", "r", &[]);
        assert_eq!(code, 2, "{name}: {stderr}");
        assert!(
            stderr.contains(&format!("`{name}`")) && stderr.contains(message),
            "{name}: {stderr}"
        );
        assert!(
            stderr.contains("hint:") || name == "other.json" || name == "half.json" || name == "empty.json",
            "{name}: {stderr}"
        );
    }
    let (_, code, stderr) = record_finding(&project, "missing.json", "notify", "r", &[]);
    assert_eq!(code, 2);
    assert!(stderr.contains("failed to read `missing.json`"), "{stderr}");
    let sample = public("securityhub-fsbp.json");
    let (_, code, stderr) = record_finding(&project, sample.to_str().unwrap(), "maybe", "r", &[]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("`maybe` is not a label of suite `s`") && stderr.contains("suppress, notify"),
        "{stderr}"
    );
    let (_, code, stderr) = record(&project, &["--finding", sample.to_str().unwrap(), "--expect", "notify"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("pass --rule"), "{stderr}");
    let entries: Vec<_> = std::fs::read_dir(project.file("cases/s"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        entries.len(),
        2,
        "only the project's own cases.jsonl and findings/: {entries:?}"
    );
}

#[test]
fn concurrent_records_never_overwrite_each_other() {
    let project = project();
    let samples = [
        "securityhub-fsbp.json",
        "securityhub-cis-1.2.json",
        "securityhub-pcidss.json",
    ];
    // Three different findings, and the GuardDuty sample four times at once.
    let mut children = Vec::new();
    for sample in samples
        .iter()
        .chain(std::iter::repeat_n(&"guardduty-asff-ssh-brute-force.json", 4))
    {
        let child = project
            .std_command()
            .args(["record", "-s", "s", "--expect", "notify", "--rule", RULE, "--finding"])
            .arg(public(sample))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        children.push((sample, child));
    }
    let mut codes = Vec::new();
    for (sample, mut child) in children {
        codes.push((sample, child.wait().unwrap().code().unwrap()));
    }
    let files = recorded(&project);
    assert_eq!(files.len(), 4, "{files:?}");
    let guardduty: Vec<i32> = codes
        .iter()
        .filter(|(s, _)| s.starts_with("guardduty"))
        .map(|(_, c)| *c)
        .collect();
    assert_eq!(guardduty.iter().filter(|c| **c == 0).count(), 1, "{codes:?}");
    assert_eq!(guardduty.iter().filter(|c| **c == 5).count(), 3, "{codes:?}");
    for file in files {
        assert_eq!(read_case(&file)["expect"], json!({"label": "notify"}));
    }
}

#[test]
fn a_killed_record_leaves_no_case_or_a_whole_one() {
    let project = project();
    // A finding of ~2 MB (a long description), so that redaction and the write take a while.
    let mut finding = public_json("securityhub-fsbp.json");
    finding["Description"] = json!("arn:aws:iam::123456789012:root was seen at 203.0.113.77. ".repeat(40_000));
    project.write("big.json", &finding.to_string());
    let command = |id: &str| {
        let mut command = project.std_command();
        command
            .args([
                "record",
                "-s",
                "s",
                "--finding",
                "big.json",
                "--expect",
                "notify",
                "--force",
                "--id",
                id,
            ])
            .arg("--rule")
            .arg(format!("rule {id}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        command
    };
    // How long an uninterrupted record takes here, so the kills can aim at its end (the write).
    let started = std::time::Instant::now();
    assert!(command("big-full").status().unwrap().success());
    let full = started.elapsed();
    std::fs::remove_file(project.file("cases/s/big-full.json")).unwrap();

    let (mut whole, mut none) = (0, 0);
    for attempt in 0..8u32 {
        let id = format!("big-{attempt}");
        let mut child = command(&id).spawn().unwrap();
        // From half the full time to a little past it.
        std::thread::sleep(full / 2 + full * attempt / 12);
        let _ = child.kill();
        child.wait().unwrap();
        let path = project.file(&format!("cases/s/{id}.json"));
        if path.exists() {
            let case = read_case(&path);
            assert_eq!(case["id"], id);
            assert!(case["vars"]["finding"]["Description"]
                .as_str()
                .unwrap()
                .ends_with("192.0.2.1. "));
            std::fs::remove_file(&path).unwrap();
            whole += 1;
        } else {
            none += 1;
        }
        // Whatever was interrupted, the suite still loads: no half case is ever read.
        promptgate::case::load_cases(&project.file("cases/s"), &project.file("")).expect("every case file is whole");
    }
    eprintln!("killed record: {whole} whole case(s), {none} without a file");
    assert_eq!(whole + none, 8);
}

#[test]
fn a_recorded_case_runs_at_once_and_the_gate_calls_it_new() {
    let server = FakeServer::start(|seen| {
        let id = seen.case_id();
        Reply::label(if id == "c00" { "suppress" } else { "notify" })
    });
    let project = Project::new(&server.base_url, &["suppress", "notify"], 1, "");
    project.command().args(["baseline", "update"]).assert().success();

    let sample = public("securityhub-fsbp.json");
    let (out, code, _) = record_finding(
        &project,
        sample.to_str().unwrap(),
        "notify",
        "r",
        &["--id", "prod-miss-1"],
    );
    assert_eq!(code, 0, "{out:#}");

    let (run, code) = project.json(&["gate"]);
    assert_eq!(code, 0, "{run:#}");
    let ids: Vec<&str> = run["results"][0]["per_case"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["c00", "c01", "prod-miss-1"]);
    assert_eq!(run["results"][0]["baseline"]["new_cases"], json!(["prod-miss-1"]));
    let summary = project
        .command()
        .args(["gate", "--format", "markdown"])
        .output()
        .unwrap();
    let summary = String::from_utf8_lossy(&summary.stdout);
    assert!(
        summary.contains("**s / m**: 1 new case(s), not gated (accuracy 100.0%): `prod-miss-1`"),
        "{summary}"
    );
    // The model saw the redacted finding.
    let seen = server.seen();
    let prompt = seen
        .iter()
        .find(|s| s.case_id() == "prod-miss-1")
        .expect("the new case was sent")
        .user_message();
    assert!(
        prompt.contains("000000000001") && !prompt.contains("123456789012"),
        "{prompt}"
    );
}

#[test]
fn configured_patterns_are_redacted_and_a_bad_one_names_its_field() {
    let project = project();
    let config = std::fs::read_to_string(project.file("promptgate.toml")).unwrap();
    project.write(
        "promptgate.toml",
        &format!("{config}\n[[record.redact]]\nname = \"trail-name\"\npattern = 'trail/([A-Za-z-]+)'\n"),
    );
    let sample = public("securityhub-fsbp.json");
    let (out, code, stderr) = record_finding(
        &project,
        sample.to_str().unwrap(),
        "notify",
        "trail AWSMacieTrail-DO-NOT-EDIT",
        &[],
    );
    assert_eq!(code, 0, "{stderr}");
    let case = read_case(&project.path().join(out["outcomes"][0]["path"].as_str().unwrap()));
    assert_eq!(
        case["vars"]["finding"]["Resources"][0]["Id"],
        "arn:aws:cloudtrail:us-east-2:000000000001:trail/redacted-trail-name-1"
    );
    assert_eq!(case["vars"]["rule"], "trail redacted-trail-name-1");
    assert_eq!(case["source"]["redaction"]["replaced"]["trail-name"], 1);

    project.write(
        "promptgate.toml",
        &format!("{config}\n[[record.redact]]\nname = \"broken\"\npattern = 'a(b'\n"),
    );
    let (_, code, stderr) = record_finding(&project, sample.to_str().unwrap(), "notify", "r", &[]);
    assert_eq!(code, 2);
    assert!(stderr.contains("(field `record.redact[0].pattern`)"), "{stderr}");
    project.write(
        "promptgate.toml",
        &format!("{config}\n[[record.redact]]\nname = \"email\"\npattern = 'x'\n"),
    );
    let (_, code, stderr) = record_finding(&project, sample.to_str().unwrap(), "notify", "r", &[]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("(field `record.redact[0].name`): `email` is a built-in rule"),
        "{stderr}"
    );
}

/// A project with a second suite, `shadow`, of production findings labelled with what the bot
/// did, and `run.json`: a run of it in which the model answered suppress to everything.
fn shadow_run() -> (FakeServer, Project) {
    // The shadow suite holds recent production findings labelled with what the bot did.
    let server = FakeServer::start(|_| Reply::label("suppress"));
    let project = Project::new(&server.base_url, &["suppress", "notify"], 1, "");
    let config = std::fs::read_to_string(project.file("promptgate.toml")).unwrap();
    project.write(
        "promptgate.toml",
        &format!(
            "{config}\n[suites.shadow]\nprompt = \"prompts/p.toml\"\ncases = \"cases/shadow\"\nmodels = [\"m\"]\n\
             grader = {{ kind = \"label\", field = \"decision\", labels = [\"suppress\", \"notify\"] }}\n"
        ),
    );
    let fsbp = public_json("securityhub-fsbp.json");
    let guardduty = public_json("guardduty-asff-ssh-brute-force.json");
    let shadow = [
        json!({"id": "p1", "vars": {"rule": "r1", "finding": fsbp}, "expect": {"label": "notify"}}),
        json!({"id": "p2", "vars": {"rule": "r2", "finding": guardduty}, "expect": {"label": "notify"}}),
        json!({"id": "p3", "vars": {"rule": "r3", "finding": fsbp}, "expect": {"label": "suppress"}}),
    ];
    project.write(
        "cases/shadow/cases.jsonl",
        &shadow.iter().map(|c| c.to_string() + "\n").collect::<String>(),
    );
    let (_, code) = project.json(&["run", "--suite", "shadow", "--out", "run.json"]);
    assert_eq!(code, 0);

    (server, project)
}

#[test]
fn from_run_turns_wrong_answers_of_a_shadow_suite_into_cases() {
    let (_server, project) = shadow_run();
    // No terminal and no --yes: nothing is guessed.
    let output = project
        .command()
        .args(["record", "-s", "s", "--from-run", "run.json"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("2 proposal(s) need a person to confirm") && stderr.contains("--yes --expect"),
        "{stderr}"
    );

    let (out, code, stderr) = record(
        &project,
        &["--from-run", "run.json", "--case", "p2", "--yes", "--expect", "notify"],
    );
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(out["outcomes"].as_array().unwrap().len(), 1, "{out:#}");
    let case = read_case(&project.path().join(out["outcomes"][0]["path"].as_str().unwrap()));
    assert_eq!(
        case["source"]["from_run"],
        json!({"run": "run.json", "suite": "shadow", "case": "p2", "models": ["shadow on m"]})
    );
    assert_eq!(case["source"]["answers"][0]["outcome"], "wrong");
    assert!(case["id"]
        .as_str()
        .unwrap()
        .starts_with("miss-unauthorizedaccess-ec2-sshbruteforce-"));
    assert!(!case.to_string().contains("193043430472"));

    // The rest: p1 is new; p2 is a case now; p3 was answered right.
    let (out, code, _) = record(&project, &["--from-run", "run.json", "--yes", "--expect", "notify"]);
    assert_eq!(code, 5);
    assert_eq!(outcomes(&out), ["recorded", "duplicate"]);

    // A run of the target suite itself proposes nothing: its misses are cases already.
    let (_, code) = project.json(&["run", "--suite", "s", "--out", "own.json"]);
    assert_eq!(code, 0);
    let output = project
        .command()
        .args([
            "record",
            "-s",
            "s",
            "--from-run",
            "own.json",
            "--yes",
            "--expect",
            "notify",
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&output.stderr).contains("its misses are cases already"));
}

#[test]
fn from_run_keeps_a_few_short_answers_of_a_record_with_many_long_ones() {
    let (_server, project) = shadow_run();
    // An edited record (input like any other): p2 with 50 misses of 200 KB each.
    let mut run: Value = serde_json::from_str(&std::fs::read_to_string(project.file("run.json")).unwrap()).unwrap();
    let cases = run["results"][0]["per_case"].as_array_mut().unwrap();
    let p2 = cases.iter_mut().find(|c| c["id"] == "p2").unwrap();
    let long = "y".repeat(200_000);
    p2["misses"] = (0..50)
        .map(|sample| json!({"sample": sample, "outcome": "wrong", "reason": long, "excerpt": long}))
        .collect();
    project.write("long.json", &run.to_string());
    let (out, code, stderr) = record(
        &project,
        &["--from-run", "long.json", "--case", "p2", "--yes", "--expect", "notify"],
    );
    assert_eq!(code, 0, "{stderr}");
    let path = project.path().join(out["outcomes"][0]["path"].as_str().unwrap());
    assert!(std::fs::metadata(&path).unwrap().len() < 100_000);
    let answers = read_case(&path)["source"]["answers"].as_array().unwrap().clone();
    assert_eq!(answers.len(), 20);
    for answer in &answers {
        let (reason, excerpt) = (answer["reason"].as_str().unwrap(), answer["excerpt"].as_str().unwrap());
        assert_eq!((reason.chars().count(), excerpt.chars().count()), (401, 121));
        assert!(reason.ends_with('…') && excerpt.ends_with('…'));
    }
}

#[test]
fn from_run_asks_a_person_on_a_terminal() {
    let (_server, project) = shadow_run();
    let binary = assert_cmd::cargo::cargo_bin("promptgate");
    // util-linux `script` runs the command on a pseudo-terminal and types our stdin into it.
    let output = std::process::Command::new("script")
        .args(["-q", "-e", "-c"])
        .arg(format!("'{}' record -s s --from-run run.json", binary.display()))
        .arg("/dev/null")
        .current_dir(project.path())
        .env("NO_COLOR", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            // p1: correct the label to suppress; p2: skip.
            std::io::Write::write_all(&mut child.stdin.take().unwrap(), b"suppress\ns\n")?;
            child.wait_with_output()
        })
        .expect("util-linux `script` runs");
    let shown = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{shown}");
    assert!(shown.contains("case `p1` of suite `shadow` (shadow on m)"), "{shown}");
    assert!(
        shown.contains("label for the new case [suppress/notify] (Enter: notify, s: skip, q: quit)"),
        "{shown}"
    );
    assert!(shown.contains("skipped case `p2`"), "{shown}");
    let files = recorded(&project);
    assert_eq!(files.len(), 1, "{shown}");
    let case = read_case(&files[0]);
    assert_eq!(case["expect"], json!({"label": "suppress"}));
    assert_eq!(case["source"]["from_run"]["case"], "p1");
}
