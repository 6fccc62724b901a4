//! Plain data for unit tests: results and run records built the way the engine builds them,
//! from tallies, without a provider, a cache or a file.

use crate::aggregate::{self, Identity, Settings};
use crate::grader::Grade;
use crate::provider::Response;
use crate::run_record::{Calls, RunRecord, SuiteResult, Verdict, RUN_RECORD_SCHEMA_VERSION};
use crate::stats::IntervalMethod;
use crate::tally::{Answer, CaseTally, Purpose, SharedTexts, Totals};

/// A config of one OpenAI-compatible provider at a closed port, one model and one label suite
/// with an `en` variant (files under `/p` are never read).
pub const CONFIG: &str = r#"
[providers.local]
kind = "openai"
base_url = "http://127.0.0.1:1/v1"

[models.m]
provider = "local"
model = "gemma"

[suites.triage]
prompt = "prompts/triage.toml"
cases = "cases/triage"
models = ["m"]
grader = { kind = "label", field = "decision", labels = ["suppress", "notify"] }
variants = { en = "prompts/triage-en.toml" }
"#;

const SETTINGS: Settings = Settings {
    confidence_level: 0.95,
    interval: IntervalMethod::WilsonModeratedT,
    max_error_rate: 0.1,
};

/// A result of `suite` whose case i got `correct[i]` of 5 samples right.
pub fn result(suite: &str, correct: &[u32]) -> SuiteResult {
    let (mut totals, mut texts) = (Totals::default(), SharedTexts::default());
    let mut cases = Vec::with_capacity(correct.len());
    for (case, &right) in correct.iter().enumerate() {
        let mut tally = CaseTally::new();
        for sample in 0..5 {
            let response = Response::from_text("x");
            let response = tally
                .call(sample, Purpose::Sample, Answer::Cached(response), &mut totals)
                .unwrap();
            let grade = if sample < right {
                Grade::correct("ok")
            } else {
                Grade::wrong("no")
            };
            tally.grade(sample, grade, &response, &mut texts);
        }
        cases.push(tally.into_parts(&format!("c{case:02}"), &texts));
    }
    let identity = Identity {
        suite: suite.into(),
        model: "m".into(),
        model_id: "m-1".into(),
        provider: "p".into(),
        prompt: "default".into(),
        prompt_sha256: "0".repeat(64),
        samples_per_case: 5,
    };
    aggregate::aggregate(identity, cases.into_iter(), totals, None, &SETTINGS)
}

pub fn record(results: Vec<SuiteResult>) -> RunRecord {
    RunRecord {
        schema_version: RUN_RECORD_SCHEMA_VERSION,
        promptgate_version: "test".into(),
        command: "run".into(),
        verdict: Verdict::Pass,
        calls: Calls::default(),
        results,
        started_at: "2026-12-03T00:00:00Z".into(),
        duration_ms: 0,
        cache_failure: None,
        shard: None,
        batch: None,
    }
}

/// A gated run of three suites: `triage` regressed (six of twenty cases went from 5/5 to 1/5),
/// `chatops` unchanged, and `<explain>` inconclusive (too many failed calls); the ids of
/// `triage`'s cases carry markup, as a hostile case file's could. `chatops` was answered by
/// another model version than its baseline, whose name carries markup too.
pub fn gated() -> RunRecord {
    use crate::baseline::Baseline;
    use crate::gate::{judge, GateOptions};
    let before = [5; 20];
    let mut after = [5; 20];
    after[..6].fill(1);
    let hostile = |mut result: SuiteResult| {
        for case in &mut result.per_case {
            case.id = format!("{}<b>&\"", case.id).into();
        }
        result
    };
    let mut explain = result("<explain>", &before);
    explain.verdict = Verdict::Inconclusive;
    let answered_by = |model: &str, fingerprint: &str| {
        let mut result = result("chatops", &before);
        result.model_versions = vec![crate::model_version::VersionCount {
            model: model.into(),
            fingerprint: Some(fingerprint.into()),
            samples: 100,
        }];
        result
    };
    let baselines = [
        Baseline::from_result(&hostile(result("triage", &before)), "t"),
        Baseline::from_result(&answered_by("gpt-4o-mini-2024-07-18", "fp_a"), "t"),
        Baseline::from_result(&result("<explain>", &before), "t"),
    ];
    let options = GateOptions {
        baseline_dir: "/nonexistent".into(),
        alpha: 0.05,
        margin: 0.0,
        exact: false,
        sampling: crate::gate::Sampling::Fixed,
        fail_on_broken: false,
    };
    let candidates = vec![
        hostile(result("triage", &after)),
        answered_by("gpt-4o-mini-<b>2025", "fp_b"),
        explain,
    ];
    judge(record(candidates), &baselines, &options)
}

/// A case `id` of `cases/c.json` expecting `expect`, with no variables.
pub fn loaded(id: &str, expect: serde_json::Value) -> crate::case::LoadedCase {
    crate::case::LoadedCase {
        case: crate::case::Case {
            id: id.into(),
            vars: serde_json::Map::new(),
            expect,
            tags: vec![],
            source: None,
            notes: None,
            attacker_fields: None,
        },
        file: "cases/c.json".into(),
        line: None,
    }
}
