//! `--dry-run`: what a command would ask of the providers, found without asking.
//!
//! Every prompt of the selection is rendered and every request's key looked up in the cache,
//! as a run does before its first call; nothing is called and nothing is written. What a
//! suite × model would cost is estimated only from what is known: the mean tokens per call of
//! its answers already in the cache, times the calls still to make, at the model's configured
//! prices. With no cached answer of that suite × model (a changed prompt changes every key),
//! there is nothing honest to estimate from, and the row says so.

use serde::Serialize;

use crate::config::Prices;
use crate::error::{Error, Failure};
use crate::excerpt::one_line;
use crate::provider::Usage;

/// Version of the JSON form. Changes:
/// - 1: first version.
pub const SCHEMA_VERSION: u32 = 1;

/// What a command would ask, suite × model by suite × model.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DryRun {
    pub schema_version: u32,
    /// Always "dry_run": what a script reading the output can tell it from a run record by.
    pub kind: &'static str,
    pub rows: Vec<PlannedCalls>,
    pub totals: Totals,
}

/// One suite × model (× prompt version, × robustness family) of the selection.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Selected {
    /// The suite, or `suite~family` for a robustness family.
    pub suite: String,
    pub model: String,
    pub prompt: String,
    pub cases: usize,
    /// Samples per case: a fixed run's k, a sequential gate's most.
    pub samples_per_case: u32,
    /// Whether a sequential gate may stop before `samples_per_case` (so `to_call` is a most).
    pub sequential: bool,
    /// Set when `--case` or `--tag` chose the cases, as in a run's record.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub filtered: Option<crate::case_filter::Filtered>,
}

/// A judge's calls, for a suite whose answers a judge model grades.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct JudgeCalls {
    /// Distinct judge requests for the cached answers the other graders pass.
    pub requests: u64,
    /// Of those, the ones the cache answers.
    pub cached: u64,
    /// Of those, the ones that would go to the judge's provider.
    pub to_call: u64,
    /// At most this many more, one for each answer still to come (only if the other graders
    /// pass it, and only if its judgment is not cached).
    pub at_most_for_new_answers: u64,
}

/// The requests of one selected suite × model.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlannedCalls {
    #[serde(flatten)]
    pub selected: Selected,
    pub requests: u64,
    /// Requests the cache answers.
    pub cached: u64,
    /// Requests that would go to the provider.
    pub to_call: u64,
    /// A judge's calls, when a judge grades the answers (not in `to_call`, nor in the cost).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub judge: Option<JudgeCalls>,
    /// Cached answers of this row that reported their tokens: what the estimate rests on.
    pub estimated_from: u64,
    /// Tokens of the calls to make, at the cached answers' mean per call.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub estimated_tokens: Option<EstimatedTokens>,
    /// Their cost at the model's prices (batch prices under `--batch`), when both are known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub estimated_cost_usd: Option<f64>,
}

/// Tokens the calls to make would take, estimated.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct EstimatedTokens {
    pub input: u64,
    pub output: u64,
}

/// The rows added up.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Totals {
    pub requests: u64,
    pub cached: u64,
    pub to_call: u64,
    /// The judges' calls known to be needed (for cached answers).
    pub judge_to_call: u64,
    /// And at most this many more, for the answers still to come.
    pub judge_at_most_for_new_answers: u64,
    /// The sum of the rows' estimated costs (rows with nothing to call cost 0).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub estimated_cost_usd: Option<f64>,
    /// Rows with calls to make whose cost could not be estimated (no cached answer to
    /// estimate from, or no prices): the total leaves them out.
    pub rows_not_estimated: usize,
}

/// The tokens of the cached answers of one row, summed as they are read.
#[derive(Debug, Clone, Copy, Default)]
pub struct CachedUsage {
    answers: u64,
    input: u64,
    output: u64,
}

impl CachedUsage {
    /// Count one cached answer's tokens, when it reported them.
    pub fn add(&mut self, usage: Option<Usage>) {
        if let Some(usage) = usage {
            self.answers += 1;
            self.input = self.input.saturating_add(usage.input_tokens);
            self.output = self.output.saturating_add(usage.output_tokens);
        }
    }

    /// `calls` more calls at the mean per call, rounded; `None` with nothing to average.
    fn estimate(self, calls: u64) -> Option<EstimatedTokens> {
        let per_call = |total: u64| (total as f64 / self.answers as f64 * calls as f64).round() as u64;
        (self.answers > 0).then(|| EstimatedTokens {
            input: per_call(self.input),
            output: per_call(self.output),
        })
    }
}

/// One row's counts, as the engine found them.
pub struct Found {
    pub selected: Selected,
    pub requests: u64,
    pub cached: u64,
    /// With a judge: its distinct requests for the cached answers, and how many are cached.
    pub judge: Option<(u64, u64)>,
    pub usage: CachedUsage,
    pub prices: Option<Prices>,
}

/// The table's columns.
const HEADER: [&str; 10] = [
    "suite",
    "model",
    "prompt",
    "cases",
    "k",
    "requests",
    "cached",
    "to call",
    "est. tokens in/out",
    "est. cost",
];

/// Text as inert Markdown, dollar signs included: GitHub reads two on a line as math.
fn inert(text: &str) -> String {
    crate::report::markdown_text(text).replace('$', "\\$")
}

/// A row's cells, in [`HEADER`]'s order, as plain text.
fn cells(row: &PlannedCalls) -> [String; 10] {
    let selected = &row.selected;
    let k = match selected.sequential {
        true => format!("≤{}", selected.samples_per_case),
        false => selected.samples_per_case.to_string(),
    };
    let to_call = match row.judge {
        None => row.to_call.to_string(),
        Some(judge) if judge.at_most_for_new_answers == 0 => format!("{} + {} judge", row.to_call, judge.to_call),
        Some(judge) => format!(
            "{} + {}–{} judge",
            row.to_call,
            judge.to_call,
            judge.to_call + judge.at_most_for_new_answers
        ),
    };
    let tokens = match row.estimated_tokens {
        Some(t) => format!("{}/{}", t.input, t.output),
        None => "unknown".into(),
    };
    let cost = match (row.estimated_cost_usd, row.estimated_tokens) {
        (Some(cost), _) => format!("${cost:.4}"),
        (None, Some(_)) => "no prices".into(),
        (None, None) => "unknown".into(),
    };
    [
        selected.suite.clone(),
        selected.model.clone(),
        selected.prompt.clone(),
        selected.cases.to_string(),
        k,
        row.requests.to_string(),
        row.cached.to_string(),
        to_call,
        tokens,
        cost,
    ]
}

impl DryRun {
    /// The rows of what the engine found, with their estimates, and their totals.
    pub fn new(found: Vec<Found>) -> DryRun {
        let rows: Vec<PlannedCalls> = found
            .into_iter()
            .map(|f| {
                let to_call = f.requests - f.cached.min(f.requests);
                let estimated_tokens = if to_call == 0 {
                    Some(EstimatedTokens { input: 0, output: 0 })
                } else {
                    f.usage.estimate(to_call)
                };
                // Nothing to call costs nothing, whatever the prices.
                let estimated_cost_usd = match (estimated_tokens, f.prices) {
                    _ if to_call == 0 => Some(0.0),
                    (Some(tokens), Some(prices)) => Some(prices.cost(tokens.input, tokens.output)),
                    _ => None,
                };
                let judge = f.judge.map(|(requests, cached)| JudgeCalls {
                    requests,
                    cached,
                    to_call: requests - cached.min(requests),
                    at_most_for_new_answers: to_call,
                });
                PlannedCalls {
                    selected: f.selected,
                    requests: f.requests,
                    cached: f.cached,
                    to_call,
                    judge,
                    estimated_from: f.usage.answers,
                    estimated_tokens,
                    estimated_cost_usd,
                }
            })
            .collect();
        let sum = |field: fn(&PlannedCalls) -> u64| rows.iter().map(field).sum::<u64>();
        let not_estimated = rows.iter().filter(|r| r.estimated_cost_usd.is_none()).count();
        let known: Vec<f64> = rows.iter().filter_map(|r| r.estimated_cost_usd).collect();
        let totals = Totals {
            requests: sum(|r| r.requests),
            cached: sum(|r| r.cached),
            to_call: sum(|r| r.to_call),
            judge_to_call: sum(|r| r.judge.map_or(0, |j| j.to_call)),
            judge_at_most_for_new_answers: sum(|r| r.judge.map_or(0, |j| j.at_most_for_new_answers)),
            estimated_cost_usd: (!known.is_empty()).then(|| known.iter().sum()),
            rows_not_estimated: not_estimated,
        };
        DryRun {
            schema_version: SCHEMA_VERSION,
            kind: "dry_run",
            rows,
            totals,
        }
    }

    /// The JSON form, pretty-printed, with a final newline.
    pub fn json(&self) -> Result<String, Error> {
        crate::report::pretty_json(self, "the dry run")
    }

    /// The table a person reads, and what it rests on.
    pub fn terminal(&self) -> String {
        let mut table = crate::report::terminal_table(&HEADER, 3..HEADER.len());
        for row in &self.rows {
            let [suite, model, prompt, numbers @ ..] = cells(row);
            let names = [suite, model, prompt].map(|name| one_line(&name).into_owned());
            table.add_row(names.into_iter().chain(numbers).collect::<Vec<_>>());
        }
        format!("{table}\n\n{}\n", self.notes().join("\n"))
    }

    /// The same as Markdown, for a step summary or a pull request's comment: a headline, the
    /// table (names made inert) and the notes.
    pub fn markdown(&self) -> String {
        let totals = &self.totals;
        let mut text = format!(
            "## promptgate dry run: {} call(s) to make ({} of {} requests cached)\n\n{}",
            totals.to_call,
            totals.cached,
            totals.requests,
            crate::report::markdown_table_header(&HEADER)
        );
        for row in &self.rows {
            let cells = cells(row).map(|cell| inert(&cell));
            text.push_str(&format!("| {} |\n", cells.join(" | ")));
        }
        text.push('\n');
        for note in self.notes() {
            text.push_str(&inert(&note));
            text.push_str("\n\n");
        }
        text
    }

    /// What the totals come to, then what the table rests on, a line each.
    fn notes(&self) -> Vec<String> {
        let totals = &self.totals;
        let cost = match totals.estimated_cost_usd {
            Some(cost) if totals.rows_not_estimated == 0 => format!(", about ${cost:.4}."),
            Some(cost) => format!(
                ", about ${cost:.4} for the rows that could be estimated ({} could not).",
                totals.rows_not_estimated
            ),
            None => ".".into(),
        };
        let mut notes = vec![format!(
            "dry run: nothing was called. {} of {} requests are cached; {} would go to the providers{cost}",
            totals.cached, totals.requests, totals.to_call
        )];
        if totals.rows_not_estimated > 0 {
            notes.push("A cost is estimated from the tokens of the row's answers already in the cache, at the model's prices: \"unknown\" rows have no cached answer yet (a changed prompt changes every request), \"no prices\" rows' models have no price_input_per_million / price_output_per_million.".into());
        }
        if self.rows.iter().any(|r| r.judge.is_some()) {
            notes.push(format!(
                "\"+ N judge\": a judge model grades the answers; its calls for the cached answers are counted ({} to make), and each answer still to come may need one more (up to {}). They are not in the cost.",
                totals.judge_to_call, totals.judge_at_most_for_new_answers
            ));
        }
        let rows = self
            .rows
            .iter()
            .map(|r| (r.selected.suite.as_str(), r.selected.filtered.as_ref()));
        for (suite, summary) in crate::report::subsets_of(rows) {
            notes.push(format!("subset {suite}: {summary}"));
        }
        if self.rows.iter().any(|r| r.selected.sequential) {
            notes.push(
                "≤k: a sequential gate stops sampling as soon as its verdict is clear, so it calls at most this many."
                    .into(),
            );
        }
        notes
    }
}

/// `--max-calls`: the run would call the providers more often than allowed.
#[derive(Debug, thiserror::Error)]
#[error("this run would call the providers {to_call} times, more than --max-calls {limit}; nothing was called")]
pub struct OverBudget {
    pub to_call: u64,
    pub limit: u64,
}

impl Failure for OverBudget {
    fn hint(&self) -> Option<String> {
        Some("`--dry-run` shows which suite × model the calls are for; raise --max-calls (or PROMPTGATE_MAX_CALLS) if they are meant, or narrow the run with --suite, --model or --shard".into())
    }

    fn exit_code(&self) -> i32 {
        crate::exit_code::INCONCLUSIVE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(requests: u64, cached: u64, usage: &[(u64, u64)], prices: Option<Prices>) -> Found {
        let mut total = CachedUsage::default();
        for &(input, output) in usage {
            total.add(Some(Usage {
                input_tokens: input,
                output_tokens: output,
            }));
        }
        total.add(None);
        Found {
            selected: Selected {
                suite: "triage".into(),
                model: "m".into(),
                prompt: "default".into(),
                cases: 4,
                samples_per_case: 3,
                sequential: false,
                filtered: None,
            },
            requests,
            cached,
            judge: None,
            usage: total,
            prices,
        }
    }

    const PRICES: Prices = Prices {
        input_per_million: 0.15,
        output_per_million: 0.60,
    };

    #[test]
    fn the_calls_to_make_are_priced_at_the_cached_answers_mean() {
        // Two cached answers of 100/10 and 300/30 tokens: 200/20 a call; 3 calls to make.
        let dry = DryRun::new(vec![found(12, 9, &[(100, 10), (300, 30)], Some(PRICES))]);
        let row = &dry.rows[0];
        assert_eq!((row.to_call, row.estimated_from), (3, 2));
        assert_eq!(row.estimated_tokens, Some(EstimatedTokens { input: 600, output: 60 }));
        // 600 × 0.15 / 1e6 + 60 × 0.60 / 1e6
        let cost = row.estimated_cost_usd.unwrap();
        assert!((cost - 0.000_126).abs() < 1e-15, "{cost}");
        assert_eq!(dry.totals.estimated_cost_usd, Some(cost));
        assert_eq!(dry.totals.rows_not_estimated, 0);
    }

    #[test]
    fn nothing_to_estimate_from_is_said_and_left_out_of_the_total() {
        let dry = DryRun::new(vec![
            found(12, 0, &[], Some(PRICES)),
            found(12, 12, &[(100, 10)], None),
            found(12, 6, &[(100, 10)], None),
        ]);
        assert_eq!(dry.rows[0].estimated_tokens, None);
        assert_eq!(dry.rows[0].estimated_cost_usd, None);
        // Nothing to call costs nothing, prices or not.
        assert_eq!(dry.rows[1].estimated_cost_usd, Some(0.0));
        // Tokens known, prices not.
        assert!(dry.rows[2].estimated_tokens.is_some());
        assert_eq!(dry.rows[2].estimated_cost_usd, None);
        assert_eq!(
            (dry.totals.requests, dry.totals.cached, dry.totals.to_call),
            (36, 18, 18)
        );
        assert_eq!(dry.totals.rows_not_estimated, 2);
        let text = dry.terminal();
        assert!(text.contains("unknown") && text.contains("no prices"), "{text}");
        assert!(text.contains("(2 could not)"), "{text}");
    }

    #[test]
    fn the_markdown_form_is_a_table_whose_names_and_prices_stay_text() {
        let mut odd = found(12, 9, &[(100, 10)], Some(PRICES));
        odd.selected.prompt = "prompts/a|b<i>.toml".into();
        let text = DryRun::new(vec![odd]).markdown();
        assert!(
            text.starts_with("## promptgate dry run: 3 call(s) to make (9 of 12 requests cached)\n"),
            "{text}"
        );
        // One row of ten cells: the `|` in the prompt's path does not split it.
        let row = text.lines().find(|l| l.starts_with("| triage")).expect("a row");
        assert_eq!(row.matches(" | ").count(), 9, "{row}");
        assert!(row.contains("prompts/a\\|b&lt;i&gt;.toml"), "{row}");
        // 300 / 30 tokens at 0.15 / 0.60 per million: 0.000063 USD.
        assert!(row.contains("\\$0.0001"), "{row}");
        assert!(!text.contains(" $"), "{text}");
    }

    #[test]
    fn a_judge_s_known_calls_are_counted_and_the_new_answers_bound_the_rest() {
        // 5 distinct judge requests for the cached answers, 3 of them cached; 3 answers to come.
        let dry = DryRun::new(vec![Found {
            judge: Some((5, 3)),
            ..found(12, 9, &[(100, 10)], None)
        }]);
        let judge = dry.rows[0].judge.expect("a judge");
        assert_eq!((judge.to_call, judge.at_most_for_new_answers), (2, 3), "{judge:?}");
        assert_eq!(
            (
                dry.totals.to_call,
                dry.totals.judge_to_call,
                dry.totals.judge_at_most_for_new_answers
            ),
            (3, 2, 3)
        );
        assert_eq!(cells(&dry.rows[0])[7], "3 + 2–5 judge");
        assert!(dry.terminal().contains("(2 to make)"));
    }

    #[test]
    fn the_json_form_names_itself() {
        let dry = DryRun::new(vec![found(3, 3, &[(1, 1)], None)]);
        let value: serde_json::Value = serde_json::from_str(&dry.json().unwrap()).unwrap();
        assert_eq!(value["kind"], "dry_run");
        assert_eq!(value["schema_version"], SCHEMA_VERSION);
        assert_eq!(value["rows"][0]["to_call"], 0);
        assert_eq!(value["totals"]["estimated_cost_usd"], 0.0);
    }
}
