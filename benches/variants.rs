//! Generating robustness variants: 2,000 cases × 20 variants in each family (80,000 variants)
//! of AWS's public Security Hub sample finding with two tags, made and rendered with a triage
//! prompt and kept as `run` keeps them until the calls are made: in a prompt store per family,
//! the stores holding the first 1 MiB of packed text together and writing the rest to
//! temporary files. Prints the time (median of 5) and the peak memory held, counted by promptgate's
//! allocator. Run with `cargo bench --bench variants`.

use std::path::Path;
use std::time::Instant;

use promptgate::case::{Case, LoadedCase};
use promptgate::prompt::Prompt;
use promptgate::prompt_store::{HeldBudget, PromptStoreBuilder, HELD_BYTES};
use promptgate::robustness::{self, Family, Settings};

#[global_allocator]
static ALLOCATOR: promptgate::memory::Counting = promptgate::memory::Counting;

const CASES: usize = 2_000;
const VARIANTS: u32 = 20;
const REPEATS: usize = 5;

const PROMPT: &str = r#"schema_version = 1
system = "You triage AWS Security Hub findings against a suppression rule. Answer suppress or notify."
user = """Rule: {{ rule }}
Finding: {{ finding | tojson }}"""
"#;

fn main() {
    let sample = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/public/securityhub-fsbp.json"),
    )
    .expect("the public sample");
    let mut finding: serde_json::Value = serde_json::from_str(&sample).expect("JSON");
    finding["Resources"][0]["Tags"] = serde_json::json!({"env": "prod", "eks:nodegroup-name": "ng-1"});
    let cases: Vec<LoadedCase> = (0..CASES)
        .map(|i| LoadedCase {
            case: serde_json::from_value::<Case>(serde_json::json!({
                "id": format!("c{i:04}"),
                "vars": {"rule": format!("CloudTrail.2 は dev アカウント {i} なら抑制する"), "finding": finding},
                "expect": {"label": if i % 2 == 0 { "suppress" } else { "notify" }}
            }))
            .expect("a case"),
            file: "cases.jsonl".into(),
            line: Some(i + 1),
        })
        .collect();
    let prompt = Prompt::parse(Path::new("p.toml"), PROMPT).expect("prompt");
    let settings = Settings {
        seed: 1,
        count: VARIANTS,
        vars: Vec::new(),
        fields: robustness::fields::defaults(),
    };

    let mut times = Vec::new();
    let mut peak = 0;
    let mut bytes = 0;
    for _ in 0..REPEATS {
        let budget = promptgate::memory::Budget::open(usize::MAX, String::new());
        let started = Instant::now();
        let mut stores = Vec::new();
        bytes = 0;
        // One budget for every family's store, as a run has.
        let held = HeldBudget::new(HELD_BYTES);
        for family in Family::ALL {
            let mut store = PromptStoreBuilder::new(&held);
            for loaded in &cases {
                for variant in robustness::variants(&loaded.case.id, &loaded.case.vars, family, &settings, "suppress") {
                    let varied = LoadedCase {
                        case: Case {
                            vars: variant.vars,
                            ..loaded.case.clone()
                        },
                        ..loaded.clone()
                    };
                    let rendered = prompt.render(&varied).expect("render");
                    bytes += rendered.messages.iter().map(|m| m.content.len()).sum::<usize>();
                    store.push(rendered).expect("kept");
                }
            }
            stores.push(store.finish().expect("kept"));
        }
        times.push(started.elapsed());
        peak = budget.peak();
        assert_eq!(
            stores.iter().map(|s| s.len()).sum::<usize>(),
            CASES * 2 * VARIANTS as usize
        );
        drop(stores);
    }
    times.sort();
    println!(
        "variants of {CASES} cases x {VARIANTS} per family x 2 families ({} variants, {:.1} MB of rendered prompts): \
         generated, rendered and stored in {:.2} s (median of {REPEATS}); peak memory held {:.0} MB",
        CASES * 2 * VARIANTS as usize,
        bytes as f64 / 1e6,
        times[REPEATS / 2].as_secs_f64(),
        peak as f64 / 1e6
    );
}
