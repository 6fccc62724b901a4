//! The compare page (`--out compare.html`) in a real headless browser: Debian's Chromium parses
//! it offline (every host name resolves to nothing), its DOM holds the plots, and the screenshot
//! shows the forest plot's colours where they belong.
//!
//! Chromium comes from `ci/test.sh` (apt package `chromium`); without it the test is skipped
//! locally and fails under CI, like the real-model test.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use support::fake_server::{FakeServer, Reply, Seen};
use support::Project;

const CASES: usize = 20;

fn right(seen: &Seen) -> (usize, &'static str) {
    let case: usize = seen.case_id().trim_start_matches('c').parse().expect("case id");
    (case, if case % 2 == 0 { "suppress" } else { "notify" })
}

/// Model `m` misses c00–c01, `weak` misses c00–c09 (significantly worse), the Bedrock model
/// misses nothing (better, not significantly).
fn project(server: &FakeServer) -> Project {
    let labels: Vec<&str> = (0..CASES)
        .map(|i| if i % 2 == 0 { "suppress" } else { "notify" })
        .collect();
    let project = Project::new(&server.base_url, &labels, 1, "");
    let config = std::fs::read_to_string(project.file("promptgate.toml")).unwrap();
    project.write(
        "promptgate.toml",
        &format!(
            "{config}\n[models.weak]\nprovider = \"fake\"\nmodel = \"weak-model\"\n\n\
             [providers.aws]\nkind = \"bedrock\"\nregion = \"us-east-1\"\nendpoint_url = \"{}\"\n\n\
             [models.claude]\nprovider = \"aws\"\nmodel = \"anthropic.claude-3-haiku-20240307-v1:0\"\n",
            server.endpoint
        ),
    );
    project
}

fn answer(seen: &Seen) -> Reply {
    let (case, label) = right(seen);
    let misses = match seen.model_id().as_str() {
        "weak-model" => 10,
        "fake-model" => 2,
        _ => 0,
    };
    let flipped = if label == "suppress" { "notify" } else { "suppress" };
    Reply::label(if case < misses { flipped } else { label })
}

fn chromium() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("PROMPTGATE_CHROMIUM") {
        return Some(PathBuf::from(path));
    }
    ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find_map(|name| {
            std::env::var_os("PATH").and_then(|paths| {
                std::env::split_paths(&paths)
                    .map(|dir| dir.join(name))
                    .find(|candidate| candidate.is_file())
            })
        })
}

/// Chromium, or `None` (the browser check skipped) outside CI; under CI its absence fails.
fn chromium_or_skip() -> Option<PathBuf> {
    let found = chromium();
    if found.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must check the page in Chromium: install Debian's `chromium` (ci/test.sh does)"
        );
        eprintln!("skipped the browser check: no chromium (set PROMPTGATE_CHROMIUM or install `chromium`)");
    }
    found
}

/// Chromium headless, offline: no sandbox (containers), no GPU, no background traffic, and every
/// host name mapped to nothing so that a page which tried the network would show it.
fn browser(chromium: &Path, profile: &Path) -> Command {
    let mut command = Command::new(chromium);
    command.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-default-apps",
        "--disable-extensions",
        "--disable-sync",
        "--no-first-run",
        "--no-default-browser-check",
        "--hide-scrollbars",
        "--force-device-scale-factor=1",
        "--host-resolver-rules=MAP * ~NOTFOUND",
        "--window-size=1000,1500",
    ]);
    command.arg(format!("--user-data-dir={}", profile.display()));
    command
}

#[test]
fn the_compare_page_is_self_contained_and_renders_its_forest_plots() {
    let server = FakeServer::start(answer);
    let project = project(&server);
    let (record, code) = project.json(&[
        "compare",
        "--model",
        "m",
        "--model",
        "weak",
        "--model",
        "claude",
        "--out",
        "compare.html",
    ]);
    assert_eq!(code, 0, "{record:#}");
    let rows = record["suites"][0]["rows"].as_array().unwrap();
    assert!(
        rows[1]["difference"]["adjusted_p_value"].as_f64().unwrap() < 0.05,
        "weak is significantly worse"
    );
    assert!(
        rows[2]["difference"]["adjusted_p_value"].as_f64().unwrap() > 0.05,
        "claude is not significantly better"
    );

    let page_path = project.file("compare.html");
    let page = std::fs::read_to_string(&page_path).unwrap();
    // Self-contained: nothing to fetch, nothing to run.
    for forbidden in [
        "<script", "<link", "<img", "src=", "href=", "url(", "@import", "http:", "https:",
    ] {
        assert!(!page.contains(forbidden), "the page contains `{forbidden}`");
    }
    assert_eq!(page.matches("<svg class=\"forest\"").count(), 2);
    assert!(
        page.contains("<g class=\"row worse\"><title>weak: -40.0 points"),
        "{page}"
    );
    assert!(
        page.contains("<g class=\"row neutral\"><title>claude: +10.0 points"),
        "{page}"
    );

    let Some(chromium) = chromium_or_skip() else {
        return;
    };
    let profile = tempfile::tempdir().unwrap();
    let url = format!("file://{}", page_path.display());

    // The DOM the browser built holds both plots and every row.
    let dom = browser(&chromium, profile.path())
        .arg("--dump-dom")
        .arg(&url)
        .output()
        .expect("run chromium");
    assert!(dom.status.success(), "{}", String::from_utf8_lossy(&dom.stderr));
    let dom = String::from_utf8_lossy(&dom.stdout);
    assert_eq!(dom.matches("<svg class=\"forest\"").count(), 2, "{dom}");
    assert_eq!(dom.matches("<g class=\"row ").count(), 6, "{dom}");
    assert!(dom.contains("<title>promptgate compare</title>"));

    // The screenshot: the significantly worse row is drawn red, and the plot is not blank.
    let screenshot = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("compare-page.png");
    let shot = browser(&chromium, profile.path())
        .arg(format!("--screenshot={}", screenshot.display()))
        .arg(&url)
        .output()
        .expect("run chromium");
    assert!(shot.status.success(), "{}", String::from_utf8_lossy(&shot.stderr));
    eprintln!("screenshot: {}", screenshot.display());
    let (width, height, pixels) = decode_rgb(&screenshot);
    assert_eq!((width, height), (1000, 1500));
    let count = |target: [u8; 3]| {
        pixels
            .chunks_exact(3)
            .filter(|p| p.iter().zip(target).all(|(a, b)| a.abs_diff(b) <= 6))
            .count()
    };
    let red = count([0xc0, 0x39, 0x2b]);
    let blue = count([0x2e, 0x86, 0xc1]);
    let grey = count([0x56, 0x65, 0x73]);
    // A 10 × 10 square and a whisker at least: a hundred pixels or more of each colour.
    assert!(red >= 100, "the worse row's red: {red} pixels");
    assert!(blue >= 100, "the reference row's blue: {blue} pixels");
    assert!(grey >= 100, "the neutral rows' grey: {grey} pixels");
    // The red is in the lower (difference) plot: below the first plot's rows.
    let first_red_row = pixels
        .chunks_exact(3 * width as usize)
        .position(|line| {
            line.chunks_exact(3)
                .any(|p| p.iter().zip([0xc0, 0x39, 0x2b]).all(|(a, b)| a.abs_diff(b) <= 6))
        })
        .expect("a red row");
    let first_blue_row = pixels
        .chunks_exact(3 * width as usize)
        .position(|line| {
            line.chunks_exact(3)
                .any(|p| p.iter().zip([0x2e, 0x86, 0xc1]).all(|(a, b)| a.abs_diff(b) <= 6))
        })
        .expect("a blue row");
    assert!(first_blue_row < first_red_row, "reference row above the worse row");
}

/// Decode a PNG into 8-bit RGB.
fn decode_rgb(path: &Path) -> (u32, u32, Vec<u8>) {
    let decoder = png::Decoder::new(std::fs::File::open(path).expect("open screenshot"));
    let mut reader = decoder.read_info().expect("a PNG");
    let mut buffer = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buffer).expect("a frame");
    let bytes = &buffer[..info.buffer_size()];
    let rgb = match info.color_type {
        png::ColorType::Rgb => bytes.to_vec(),
        png::ColorType::Rgba => bytes.chunks_exact(4).flat_map(|p| [p[0], p[1], p[2]]).collect(),
        other => panic!("unexpected colour type {other:?}"),
    };
    (info.width, info.height, rgb)
}

/// Right on every case, except c03, c07 and c12 once `regress` is set; every case tagged
/// `even` or `odd`, and its answer carrying an account id to mask.
fn report_project(before: &FakeServer) -> Project {
    let labels: Vec<&str> = (0..CASES)
        .map(|i| if i % 2 == 0 { "suppress" } else { "notify" })
        .collect();
    let project = Project::new(&before.base_url, &labels, 3, "");
    let cases = std::fs::read_to_string(project.file("cases/s/cases.jsonl")).unwrap();
    let tagged: Vec<String> = cases
        .lines()
        .enumerate()
        .map(|(index, line)| {
            let tag = if index % 2 == 0 { "even" } else { "odd" };
            let open = line.trim_end().strip_suffix('}').expect("a JSON object");
            format!("{open}, \"tags\": [\"{tag}\"]}}")
        })
        .collect();
    project.write("cases/s/cases.jsonl", &(tagged.join("\n") + "\n"));
    project
}

fn report_server(regress: bool) -> FakeServer {
    FakeServer::start(move |seen| {
        let (case, label) = right(seen);
        let flipped = if label == "suppress" { "notify" } else { "suppress" };
        let wrong = regress && [3, 7, 12].contains(&case);
        let answer = if wrong { flipped } else { label };
        Reply::Content(
            serde_json::json!({"decision": answer, "why": format!("account 210987654328 <b>case {case}</b>")})
                .to_string(),
        )
    })
}

#[test]
fn the_gate_report_page_lists_every_case_and_filters_the_regressed_ones() {
    let before = report_server(false);
    let project = report_project(&before);
    project
        .command()
        .args(["baseline", "update", "--redact"])
        .assert()
        .success();
    let after = report_server(true);
    let config = std::fs::read_to_string(project.file("promptgate.toml")).unwrap();
    project.write("promptgate.toml", &config.replace(&before.base_url, &after.base_url));
    let output = project
        .command()
        .args([
            "gate",
            "--cache",
            "candidate.sqlite",
            "--out",
            "report.html",
            "--redact",
        ])
        .output()
        .unwrap();
    assert_eq!(
        output.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );

    let page_path = project.file("report.html");
    let page = std::fs::read_to_string(&page_path).unwrap();
    // Self-contained: one inline script (the filters), nothing fetched.
    for forbidden in ["<link", "<img", "src=", "href=", "url(", "@import", "http:", "https:"] {
        assert!(!page.contains(forbidden), "the page contains `{forbidden}`");
    }
    assert_eq!(page.matches("<script").count(), 1);
    assert_eq!(page.matches("<tr class=\"case ").count(), CASES);
    assert_eq!(page.matches("<tr class=\"case regressed\"").count(), 3);
    // Answers are escaped, and masked under --redact (the baseline's too).
    assert!(!page.contains("<b>case") && page.contains("&lt;b&gt;case 3&lt;/b&gt;"));
    assert!(!page.contains("210987654328") && !page.contains("111122223333"));
    // The prompt the model saw, collapsed.
    assert!(page.contains("<details><summary>prompt</summary><pre>[system]\nAnswer suppress or notify."));

    let Some(chromium) = chromium_or_skip() else {
        return;
    };
    let profile = tempfile::tempdir().unwrap();
    let url = format!("file://{}", page_path.display());
    let dom = |fragment: &str| {
        let output = browser(&chromium, profile.path())
            .arg("--virtual-time-budget=5000")
            .arg("--dump-dom")
            .arg(format!("{url}{fragment}"))
            .output()
            .expect("run chromium");
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    // The rows the browser shows (`hidden` is set by the filter script).
    let shown = |dom: &str| -> Vec<String> {
        dom.split("<tr class=\"case ")
            .skip(1)
            .filter(|row| !row[..row.find('>').unwrap()].contains("hidden"))
            .map(|row| row[row.find("<code>").unwrap() + 6..row.find("</code>").unwrap()].to_string())
            .collect()
    };
    let all = dom("");
    assert_eq!(all.matches("<tr class=\"case ").count(), CASES, "one row per case");
    assert_eq!(shown(&all).len(), CASES);
    assert!(all.contains("20 of 20 cases shown"), "the script ran: {all}");
    let regressed = dom("#status=regressed");
    assert_eq!(shown(&regressed), ["c03", "c07", "c12"]);
    assert!(regressed.contains("3 of 20 cases shown"));
    // Tags are numbered in sorted order: even 0, odd 1.
    let odd_regressed = dom("#status=regressed&tag=1");
    assert_eq!(shown(&odd_regressed), ["c03", "c07"]);

    // The screenshot: the regressed rows are marked red, at the top of the case table.
    let screenshot = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("gate-report.png");
    let shot = browser(&chromium, profile.path())
        .arg("--virtual-time-budget=5000")
        .arg(format!("--screenshot={}", screenshot.display()))
        .arg(format!("{url}#status=regressed"))
        .output()
        .expect("run chromium");
    assert!(shot.status.success(), "{}", String::from_utf8_lossy(&shot.stderr));
    eprintln!("screenshot: {}", screenshot.display());
    let (width, _, pixels) = decode_rgb(&screenshot);
    let marked_lines = |colour: [u8; 3]| {
        pixels
            .chunks_exact(3 * width as usize)
            .filter(|line| {
                line.chunks_exact(3)
                    .filter(|p| p.iter().zip(colour).all(|(a, b)| a.abs_diff(b) <= 6))
                    .count()
                    >= 6
            })
            .count()
    };
    // Three rows with a 6-pixel red border and a pale red background, each a few lines high.
    let border = marked_lines([0xc0, 0x39, 0x2b]);
    let background = marked_lines([0xfd, 0xed, 0xec]);
    assert!(border >= 3 * 20, "red border on {border} lines");
    assert!(background >= 3 * 20, "pale red background on {background} lines");
}
