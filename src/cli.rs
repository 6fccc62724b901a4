//! The command line: the only module that knows about clap. It turns flags and the process
//! environment into the plain option structs the engine takes, and outcomes into exit codes.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;

use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};

use crate::command::{self, Console};
use crate::config;
use crate::env::EnvVars;
use crate::error::Error;
use crate::exit_code;
use crate::gate::GateOptions;
use crate::limits;
use crate::report::{Format, Style};
use crate::run::RunOptions;
use crate::secrets::Secrets;

use crate::stats::IntervalMethod;

fn secrets() -> &'static Secrets {
    crate::secrets::process()
}

/// Learn the secrets before anything is printed: credential variables of the environment, and
/// the variables each provider of the config names as `api_key_env` (whatever their names).
fn init_secrets(global: &GlobalArgs) {
    let env = EnvVars::from_process();
    let named: Vec<String> = config::Config::load(&global.config)
        .map(|config| {
            config
                .providers
                .values()
                .filter_map(|p| p.api.api_key_env().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let named: Vec<&str> = named.iter().map(String::as_str).collect();
    crate::secrets::learn(Secrets::from_env(&env, &named));
}

const ABOUT: &str = "Regression-test LLM prompts the way `cargo test` tests code.";

const LONG_ABOUT: &str = "\
Regression-test LLM prompts the way `cargo test` tests code.

promptgate runs labelled cases against each prompt and model several times, caches every
response in SQLite (an unchanged request is never paid for twice), and reports accuracy with a
confidence interval that treats the samples of one case as correlated.";

const GATE_AFTER_HELP: &str = "\
Examples:
  promptgate gate                                each suite against baselines/<suite>/<model>.json
  promptgate gate --margin 0.02                  tolerate drops up to 2 points
  promptgate gate --sampling sequential          stop sampling as soon as the verdict is clear
  promptgate gate --format markdown >> \"$GITHUB_STEP_SUMMARY\"
  promptgate gate --format markdown --out report.html --redact
                                                 the pull-request comment (baseline and new answers
                                                 of each case that moved) and a page of every case

Pairs each case with its baseline outcome and tests one-sided H0: drop <= margin with the paired
t-test (or --exact), Holm-adjusted across the suite x model pairs of the run. Exit 1 only on a
significant drop; new cases are reported, not gated; create baselines with
`promptgate baseline update`.";

const MERGE_AFTER_HELP: &str = "\
Examples (a CI matrix of 3 jobs, then one job that merges; ci/github/promptgate-sharded.yml):
  promptgate gate --shard 1/3 --out shard-1.json      in job 1 (2/3 and 3/3 in the others)
  promptgate merge shard-*.json --format markdown    the gate's verdict over the whole run
  promptgate baseline update --shard 2/3 --out b-2.json, then: promptgate merge b-*.json

A case's shard is fixed by its id, so shards are disjoint and together the suite. A shard's exit
code is 0 once its record is written (2 or 6 on bad input or a failed write): its verdict covers
that shard alone. `merge` checks that every shard of one run is there once, from one commit with
the same flags, puts the cases back in order, and computes every figure over the whole run,
exactly as one unsharded run over the same answers: accuracy and intervals, latency percentiles,
tokens, cost, flakiness, robustness, and for `gate` the p-values and verdicts with Holm across
every pair. Then it does what the sharded command does with a whole run: print it (run), judge it
(gate: exit 1 on a significant drop), compare it (compare) or write the baselines (baseline
update). Ship the shards' answers with `cache export` and `cache import`.";

const DRIFT_AFTER_HELP: &str = "\
Examples:
  promptgate drift                               today's canary for every baselined suite x model
  promptgate drift --suite triage --format markdown --out drift.json
  promptgate drift --epoch weekly-2026-49        name the epoch yourself

Samples the suites again, live, with the prompts unchanged, and compares each suite x model with
its baseline: the gate's paired test, two-sided (the model may have got better or worse),
Holm-adjusted across pairs. The answers are cached under a sampling epoch (default: drift-<today,
UTC>), apart from the answers that made the baseline, which stay in the cache; a second canary in
the same epoch costs nothing. Exit 7 when any pair drifted, 3 when inconclusive, 0 otherwise.";

const COMPARE_AFTER_HELP: &str = "\
Examples:
  promptgate compare --model gemma-local --model gpt-4o-mini
  promptgate compare --suite triage --model gpt-4o-mini --model claude-3-5-sonnet --format markdown
  promptgate compare --suite triage --prompt default --prompt en         two versions of a prompt
  promptgate compare --model gpt-4o-mini --model claude-3-5-sonnet --out compare.html

Rows are every --model × --prompt (a prompt is `default`, a name from the suite's `variants`, or a
path to a prompt file). Every row after the first is compared with the first, case by case: the
difference in accuracy with its interval and a two-sided paired p-value, Holm-adjusted across
rows. Cost uses each model's price_input_per_million / price_output_per_million from the config.
--case and --tag compare some of the cases, as they run some of them in `promptgate run`.";

const PLAN_AFTER_HELP: &str = "\
Examples:
  promptgate plan --accuracy 0.9 --samples 5 --drop 0.05     cases needed to catch a 5-point drop
  promptgate plan --accuracy 0.9 --samples 3 --cases 44      smallest drop 44 cases can catch
  promptgate plan --flip-increase 0.1 --cases 44             variants per case to catch 10 more
                                                             points of injection flips

Repeats only shrink the within-case noise: beyond k = 5 they buy little; more cases always help.
Formula and sources: the README's statistics section.";

const RECORD_AFTER_HELP: &str = "\
Examples:
  promptgate record -s triage --finding f.json --expect notify --rule \"EC2.19 は dev なら抑制\"
  promptgate record -s triage --finding - --index 0 --expect notify --rule \"…\" < findings.json
  promptgate record -s triage --finding event.json --all --expect suppress --rule \"…\"
  promptgate record -s securityhub-interpret --finding f.json \\
      --expect '{\"severity\": \"MEDIUM\", \"facts\": {\"required\": [\"CloudTrail.2\"]}}'
  promptgate record -s triage --from-run shadow.json          confirm each miss on the terminal
  promptgate record -s triage --from-run shadow.json --case p7 --yes --expect notify

Reads a bare ASFF finding, a {\"Findings\": [...]} batch, a \"Security Hub Findings - Imported\"
EventBridge event, a GuardDuty finding or a \"GuardDuty Finding\" event, and writes one new case
file <id>.json into the suite's case folder (atomically; never over an existing file). The next
run includes it and the gate reports it as a new case.

Redaction (on unless --no-redact) replaces, consistently across finding, rule, note and expect:
account ids and ARN account fields, IPv4/IPv6 addresses (to documentation ranges), EC2 host names
(ip-10-0-0-1), e-mail addresses, access key and IAM unique ids, and the [[record.redact]] patterns
of the config. A finding equal to an existing case (ignoring timestamps, finding ids, counts and
workflow state) is not written again (exit 5) unless --force.

--from-run reads a run record (`promptgate run --out run.json`) of another suite, such as a shadow
suite of recent production findings labelled with what the bot did, and proposes each case a model
got wrong as a new case of --suite, for a person to confirm its label.";

const INIT_AFTER_HELP: &str = "\
Examples:
  promptgate init                                           here, on OpenAI's gpt-4o-mini
  promptgate init my-prompts                                in a new folder
  promptgate init --base-url http://127.0.0.1:11434/v1 --model llama3.2     on Ollama

Writes promptgate.toml, prompts/triage.toml and cases/triage/cases.jsonl: one suite asking whether
a natural-language suppression rule matches an AWS Security Hub finding, with four labelled
cases. Nothing that exists is overwritten: if any of the three files is there, none is written.";

const RUN_AFTER_HELP: &str = "\
Examples:
  promptgate run                                 every suite on its own models
  promptgate run --suite triage --samples 5      one suite, 5 samples per case
  promptgate run --model gpt-4o-mini             every suite on a hosted model (OPENAI_API_KEY)
  promptgate run --offline --format json         replay from the cache only; JSON on stdout
  promptgate run --dry-run                       what a run would call and cost; calls nothing
  promptgate run --out run.json                  also write the JSON run record to a file
  promptgate run --out report.html               a page with every case, its prompt and answers
  promptgate run --case p7 -k 10 -v              one case, 10 samples: is the fix right every time?
  promptgate run --tag guardduty --case 'sg-*'   the cases with that tag whose id starts with sg-
  promptgate run --case 'eks-*' --list           which cases that chooses; nothing is called
  promptgate run --case p7 --show-prompts        what the model is asked in case p7

A second run of the same selection makes no provider call: every answer comes from the cache.
Provider failures are retried (honouring Retry-After), counted, and never graded as wrong
answers; above --max-error-rate the run is inconclusive (exit 3).";

/// The parsed command line.
#[derive(Debug, Parser)]
#[command(name = "promptgate", version, about = ABOUT, long_about = LONG_ABOUT, after_help = exit_code::HELP_TABLE)]
pub struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Args)]
struct GlobalArgs {
    /// The configuration file.
    #[arg(
        long,
        global = true,
        env = "PROMPTGATE_CONFIG",
        default_value = "promptgate.toml",
        value_name = "PATH"
    )]
    config: PathBuf,
    /// The SQLite response cache.
    #[arg(
        long,
        global = true,
        env = "PROMPTGATE_CACHE",
        default_value = ".promptgate/cache.sqlite",
        value_name = "PATH"
    )]
    cache: PathBuf,
    /// When to colour output (NO_COLOR is honoured under `auto`).
    #[arg(long, global = true, value_enum, default_value_t = ColorChoice::Auto, value_name = "WHEN")]
    color: ColorChoice,
    /// No progress bar and no summary on stderr.
    #[arg(short, long, global = true)]
    quiet: bool,
    /// List every miss, not only the first few.
    #[arg(short, long, global = true)]
    verbose: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ColorChoice {
    Auto,
    Always,
    Never,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Write a starter project: a config, a prompt and labelled cases that run as written.
    #[command(after_help = INIT_AFTER_HELP)]
    Init(InitArgs),
    /// Run suites against models and report accuracy with confidence intervals.
    #[command(after_help = RUN_AFTER_HELP)]
    Run(RunArgs),
    /// Run, compare each suite × model with its baseline, and fail only on a significant drop.
    #[command(after_help = GATE_AFTER_HELP)]
    Gate(GateArgs),
    /// Re-sample the baselined prompts live and say whether the model moved since the baseline.
    #[command(after_help = DRIFT_AFTER_HELP)]
    Drift(DriftArgs),
    /// Several models side by side on the same cases: accuracy, paired differences, cost, latency.
    #[command(after_help = COMPARE_AFTER_HELP)]
    Compare(CompareArgs),
    /// Merge the records of every shard of a run (--shard I/N) and finish the sharded command.
    #[command(after_help = MERGE_AFTER_HELP)]
    Merge(MergeArgs),
    /// Turn a production miss (a finding and its right answer) into a new, redacted case.
    #[command(after_help = RECORD_AFTER_HELP)]
    Record(RecordArgs),
    /// Size a suite: cases needed to detect a drop, or the smallest drop N cases detect.
    #[command(after_help = PLAN_AFTER_HELP)]
    Plan(PlanArgs),
    /// Manage baselines.
    Baseline {
        #[command(subcommand)]
        command: BaselineCommand,
    },
    /// Inspect the response cache.
    Cache {
        #[command(subcommand)]
        command: CacheCommand,
    },
    /// Print a shell's completion script (commands, flags and their values) on stdout.
    #[command(after_help = COMPLETIONS_AFTER_HELP)]
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

const COMPLETIONS_AFTER_HELP: &str = "\
Examples:
  promptgate completions bash > ~/.local/share/bash-completion/completions/promptgate
  promptgate completions zsh > \"${fpath[1]}/_promptgate\"
  promptgate completions fish > ~/.config/fish/completions/promptgate.fish";

#[derive(Debug, Subcommand)]
enum BaselineCommand {
    /// Run the selection (mostly from cache) and write baselines/<suite>/<model>.json.
    Update {
        #[command(flatten)]
        selection: SelectionArgs,
        /// Folder of the baselines [default: `baselines` beside the config file].
        #[arg(long, value_name = "DIR")]
        baseline_dir: Option<PathBuf>,
        /// Mask identifying values in the answers the baseline keeps, as `record` does.
        #[arg(long)]
        redact: bool,
        /// With --shard: write this shard's record (JSON) here instead of baselines; `promptgate
        /// merge` of every shard's record writes them.
        #[arg(long, value_name = "FILE", requires = "shard")]
        out: Option<PathBuf>,
        #[command(flatten)]
        batch: BatchArgs,
    },
}

#[derive(Debug, Subcommand)]
enum CacheCommand {
    /// Entries, size and token totals per model.
    Stats {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Write the cache as JSON Lines, to ship it (e.g. to CI) or merge it into another.
    #[command(after_help = CACHE_EXPORT_AFTER_HELP)]
    Export {
        /// Write to FILE (atomically) instead of stdout.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        /// Only this model id (as `cache stats` lists it).
        #[arg(long, value_name = "MODEL_ID")]
        model: Option<String>,
    },
    /// Merge an export into the cache; entries it already has keep their local answer.
    Import {
        /// The export: a file, or `-` for stdin.
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
    /// Delete entries by age and/or model id.
    #[command(after_help = CACHE_PRUNE_AFTER_HELP)]
    Prune {
        /// Entries created longer ago than this: `30d`, `12h`, `2w`, `1 month`.
        #[arg(long, value_name = "AGE", value_parser = parse_age)]
        older_than: Option<jiff::Span>,
        /// Entries of this model id (as `cache stats` lists it).
        #[arg(long, value_name = "MODEL_ID")]
        model: Option<String>,
        /// Count what would be deleted, delete nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

const CACHE_EXPORT_AFTER_HELP: &str = "\
Examples:
  promptgate cache export --out cache.jsonl                   everything
  promptgate cache export --model gpt-4o-mini | gzip > gpt.jsonl.gz
  promptgate --cache ci-cache.sqlite cache import cache.jsonl   merge into another cache

The first line is a header ({\"format\":\"promptgate-cache\",\"schema_version\":1}); each further
line is one response with its key, model id, sample index, text, tool calls, token counts,
latency and time. No secret is in it: keys and endpoints are never cached.";

const CACHE_PRUNE_AFTER_HELP: &str = "\
Examples:
  promptgate cache prune --older-than 90d --dry-run           count first
  promptgate cache prune --model gemma-3-270m                 every answer of one model id

Freed pages are reused by later runs; the file does not shrink.";

fn parse_age(text: &str) -> Result<jiff::Span, String> {
    let span: jiff::Span = text
        .parse()
        .map_err(|e| format!("`{text}` is not an age such as 30d, 12h or 2w ({e})"))?;
    if span.is_negative() {
        return Err(format!("`{text}` is negative"));
    }
    Ok(span)
}

#[derive(Debug, Args)]
struct InitArgs {
    /// The project folder, created if missing.
    #[arg(value_name = "DIR", default_value = ".")]
    dir: PathBuf,
    /// An OpenAI-compatible server's base URL (vLLM, llama.cpp, Ollama) [default: OpenAI's].
    #[arg(long, value_name = "URL")]
    base_url: Option<String>,
    /// The model id that server knows [default: gpt-4o-mini].
    #[arg(long, value_name = "ID")]
    model: Option<String>,
}

#[derive(Debug, Args)]
struct RunArgs {
    #[command(flatten)]
    selection: SelectionArgs,
    #[command(flatten)]
    cases: CaseFilterArgs,
    /// List the cases the run would ask about (with --case and --tag: those they choose), one
    /// a line, and exit: nothing is rendered or called. --format json for a machine.
    #[arg(long, conflicts_with_all = ["dry_run", "shard", "batch", "out"])]
    list: bool,
    /// Print each chosen case's rendered prompt (its messages, response schema and tools, as
    /// the run would send them) and exit: nothing is called. Narrow it with --case, --tag,
    /// --suite and --prompt; --format json for a machine.
    #[arg(long, conflicts_with_all = ["dry_run", "shard", "batch", "out", "list"])]
    show_prompts: bool,
    #[command(flatten)]
    batch: BatchArgs,
    #[command(flatten)]
    output: OutputArgs,
}

#[derive(Debug, Args)]
struct GateArgs {
    #[command(flatten)]
    selection: SelectionArgs,
    /// Folder of the baselines [default: `baselines` beside the config file].
    #[arg(long, value_name = "DIR")]
    baseline_dir: Option<PathBuf>,
    /// One-sided significance level, family-wise (Holm) across the pairs gated in one run:
    /// above 0 and below 0.5.
    #[arg(long, default_value_t = 0.05, value_parser = parse_one_sided_alpha)]
    alpha: f64,
    /// Tolerated drop: fail only when accuracy fell by more than this (e.g. 0.02).
    #[arg(long, default_value_t = 0.0, value_parser = parse_share)]
    margin: f64,
    /// Exact sign-flip test (= exact McNemar at k = 1) instead of the paired t-test.
    #[arg(long)]
    exact: bool,
    /// `fixed`: k samples of every case. `sequential`: look after 1, 2, 3, 5, … samples per
    /// case (with k = 1: after a third and two thirds of the cases) and stop as soon as the
    /// verdict is clear (false alarms still at α; fewer calls for a little power, see the
    /// README).
    #[arg(long, value_enum, default_value_t = SamplingChoice::Fixed)]
    sampling: SamplingChoice,
    /// Also fail (exit 1) when any case went from right in every sample to wrong in every
    /// sample since the baseline, even when the drop over all cases is not significant.
    #[arg(long)]
    fail_on_broken: bool,
    #[command(flatten)]
    output: OutputArgs,
}

#[derive(Debug, Args)]
struct MergeArgs {
    /// The JSON records of every shard (`--shard I/N --out FILE`), in any order.
    #[arg(value_name = "SHARD.json", required = true)]
    files: Vec<PathBuf>,
    /// Where the baselines are (gate) or go (baseline update), when not where the shards had
    /// them.
    #[arg(long, value_name = "DIR")]
    baseline_dir: Option<PathBuf>,
    #[command(flatten)]
    output: OutputArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum SamplingChoice {
    Fixed,
    Sequential,
}

#[derive(Debug, Args)]
struct CompareArgs {
    #[command(flatten)]
    selection: SelectionArgs,
    #[command(flatten)]
    cases: CaseFilterArgs,
    /// What to print on stdout.
    #[arg(long, value_enum, default_value_t = CompareFormat::Terminal)]
    format: CompareFormat,
    /// Also write the comparison to FILE (atomically): .json, .md or .html (a self-contained
    /// page with forest plots). Repeatable.
    #[arg(long, value_name = "FILE")]
    out: Vec<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum CompareFormat {
    Terminal,
    Json,
    Markdown,
    Html,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("input").required(true).args(["finding", "from_run"])))]
struct RecordArgs {
    /// The suite the new case joins.
    #[arg(long, short = 's', value_name = "SUITE")]
    suite: String,
    /// The finding: a file, or `-` for stdin.
    #[arg(long, value_name = "FILE")]
    finding: Option<PathBuf>,
    /// The right answer: a label of the suite's label grader (e.g. notify), or the case's JSON
    /// `expect` object for other graders.
    #[arg(long, value_name = "LABEL")]
    expect: Option<String>,
    /// The rule the finding was judged by (stored as the case's `rule`).
    #[arg(long, value_name = "TEXT", conflicts_with = "from_run")]
    rule: Option<String>,
    /// A note for whoever reads the case later: what went wrong in production.
    #[arg(long, value_name = "TEXT", conflicts_with = "from_run")]
    note: Option<String>,
    /// The case id (also its file name) [default: miss-<control or type>-<hash>].
    #[arg(long, value_name = "ID", conflicts_with = "from_run")]
    id: Option<String>,
    /// Which finding of a multi-finding input to record (0-based).
    #[arg(long, value_name = "N", conflicts_with_all = ["all", "from_run"])]
    index: Option<usize>,
    /// Record every finding of a multi-finding input, all with the same --expect.
    #[arg(long, conflicts_with = "from_run")]
    all: bool,
    /// A JSON run record: propose each case a model got wrong as a new case of --suite.
    #[arg(long, value_name = "RUN.json")]
    from_run: Option<PathBuf>,
    /// With --from-run: only samples graded wrong, not unreadable outputs.
    #[arg(long, requires = "from_run")]
    wrong_only: bool,
    /// With --from-run: only this case of the run (repeatable).
    #[arg(long = "case", value_name = "ID", requires = "from_run")]
    cases: Vec<String>,
    /// With --from-run: record every proposal with --expect, without asking.
    #[arg(long, short = 'y', requires_all = ["from_run", "expect"])]
    yes: bool,
    /// Keep account ids, addresses, e-mails and keys as they are.
    #[arg(long)]
    no_redact: bool,
    /// Write even when an equal case exists.
    #[arg(long)]
    force: bool,
    /// Print the outcome as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct DriftArgs {
    #[command(flatten)]
    selection: SelectionArgs,
    /// Folder of the baselines [default: `baselines` beside the config file].
    #[arg(long, value_name = "DIR")]
    baseline_dir: Option<PathBuf>,
    /// Two-sided significance level, family-wise (Holm) across the pairs: above 0 and below 1.
    #[arg(long, default_value_t = 0.05, value_parser = parse_two_sided_alpha)]
    alpha: f64,
    /// The sampling epoch the fresh answers are cached under (letters, digits, `-_.:`, at most
    /// 64) [default: drift-<today, UTC>].
    #[arg(long, value_name = "NAME")]
    epoch: Option<String>,
    #[command(flatten)]
    batch: BatchArgs,
    #[command(flatten)]
    output: OutputArgs,
}

#[derive(Debug, Args)]
struct PlanArgs {
    /// Baseline accuracy.
    #[arg(long, value_parser = parse_share, value_name = "P", required_unless_present = "flip_increase")]
    accuracy: Option<f64>,
    /// A robustness family's flip-rate increase to detect: prints the variants per case that
    /// --cases cases need (with --flip-rate, the baseline's flip rate).
    #[arg(long, value_parser = parse_share, value_name = "D", requires = "cases", conflicts_with_all = ["accuracy", "drop"])]
    flip_increase: Option<f64>,
    /// The family's flip rate in the baseline, for --flip-increase.
    #[arg(long, value_parser = parse_share, value_name = "F", default_value_t = 0.0, requires = "flip_increase")]
    flip_rate: f64,
    /// Samples per case (k) in both runs.
    #[arg(long, short = 'k', default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=1000))]
    samples: u32,
    /// The drop to detect (e.g. 0.05 for 5 points).
    #[arg(long, value_parser = parse_share, value_name = "D")]
    drop: Option<f64>,
    /// Cases in the suite: prints the smallest detectable drop and the power for --drop.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(2..))]
    cases: Option<u64>,
    /// One-sided significance level: above 0 and below 0.5.
    #[arg(long, default_value_t = 0.05, value_parser = parse_one_sided_alpha)]
    alpha: f64,
    /// Wanted power.
    #[arg(long, default_value_t = 0.8, value_parser = parse_share)]
    power: f64,
    /// Share of per-sample variance that lies between cases (intra-case correlation).
    #[arg(long, default_value_t = 0.5, value_parser = parse_share)]
    icc: f64,
    /// Correlation of case difficulty between baseline and candidate (1: the change does not
    /// reshuffle which cases are hard; 0: it reshuffles them completely).
    #[arg(long, default_value_t = 0.5, value_parser = parse_share)]
    difficulty_correlation: f64,
    /// Tolerated drop, as in `gate --margin`.
    #[arg(long, default_value_t = 0.0, value_parser = parse_share)]
    margin: f64,
    /// How a drop falls on the cases: `proportional` (every case loses the same share, the model
    /// of the gate's simulation, whose power `plan` then matches) or `concentrated` (the
    /// candidate keeps the baseline's spread between cases, so some cases lose much more: the
    /// design notes' §e formula, which asks for more cases at high accuracy).
    #[arg(long, value_enum, default_value_t = DropShapeArg::Proportional)]
    drop_shape: DropShapeArg,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum DropShapeArg {
    Proportional,
    Concentrated,
}

#[derive(Debug, Args)]
struct OutputArgs {
    /// What to print on stdout.
    #[arg(long, value_enum, default_value_t = OutputFormat::Terminal)]
    format: OutputFormat,
    /// Also write a report to FILE (atomically), its format by extension: .json (the run
    /// record), .md (Markdown), .html (a page with every case and answer), .xml (JUnit), .txt
    /// (terminal table). Repeatable.
    #[arg(long, value_name = "FILE")]
    out: Vec<PathBuf>,
    /// Keep every sample's answer, each case's prompt and what it checks in the JSON record
    /// too (Markdown and HTML reports keep them anyway).
    #[arg(long)]
    answers: bool,
    /// Mask account ids, ARNs, IP and e-mail addresses, access key ids and the config's
    /// `[[record.redact]]` patterns in answers, prompts and reasons, as `record` does: for
    /// reports attached to CI runs.
    #[arg(long)]
    redact: bool,
    /// Where the full report of this run can be found (a CI run's page): the Markdown names it
    /// when it leaves cases out to stay under GitHub's comment limit.
    #[arg(long, value_name = "URL")]
    report_url: Option<String>,
}

/// `--batch`, for the commands whose answers can wait.
#[derive(Debug, Args)]
struct BatchArgs {
    /// Send every uncached call through the provider's batch engine (OpenAI-compatible Batch
    /// API: half the price, a separate quota, answers within 24 h), wait for it, then run from
    /// the cache; a killed run resumes its batches. Cost is at the batch prices when the
    /// batches answered every call.
    #[arg(long)]
    batch: bool,
}

#[derive(Debug, Default, Args)]
struct SelectionArgs {
    /// Run only this suite (repeatable). Default: every suite.
    #[arg(long = "suite", short = 's', value_name = "SUITE")]
    suites: Vec<String>,
    /// Run on this model instead of each suite's own list (repeatable).
    #[arg(long = "model", short = 'm', value_name = "MODEL")]
    models: Vec<String>,
    /// Run with this prompt version (repeatable): `default` (the suite's `prompt`), a name from
    /// the suite's `variants`, or a path to a prompt file.
    #[arg(long = "prompt", short = 'p', value_name = "PROMPT")]
    prompts: Vec<String>,
    /// Samples per case (k), overriding the suites' `samples`.
    #[arg(long, short = 'k', value_name = "K", value_parser = clap::value_parser!(u32).range(1..=1000))]
    samples: Option<u32>,
    /// Concurrent provider calls [default: config `defaults.concurrency`, else 8].
    #[arg(long, short = 'j', value_name = "N", value_parser = clap::value_parser!(u64).range(1..=4096))]
    concurrency: Option<u64>,
    /// Serve answers from the cache only; a miss makes the run inconclusive (exit 3).
    #[arg(long)]
    offline: bool,
    /// Share of failed calls above which the run is inconclusive [default: config, else 0.05].
    #[arg(long, value_name = "RATE", value_parser = parse_share)]
    max_error_rate: Option<f64>,
    /// Plain Wilson interval on the number of cases (wider; for many samples of few cases).
    #[arg(long)]
    conservative_ci: bool,
    /// Run only shard I of N of every suite's cases (e.g. 2/3: a CI matrix's job), and write
    /// what `promptgate merge` needs to rebuild the whole run. Not for drift or a sequential gate.
    #[arg(long, value_name = "I/N", value_parser = crate::shard::Shard::parse)]
    shard: Option<crate::shard::Shard>,
    /// Call nothing: render every prompt, look every request up in the cache, and print what
    /// would be called, with its cost estimated from the cached answers' tokens (exit 0).
    #[arg(long)]
    dry_run: bool,
    /// Refuse to start (exit 3) when more than N calls would go to the providers, counted
    /// before the first one as --dry-run counts them (cached answers are free), and never make
    /// more than N (a judge's calls included: past N they fail, and the run is inconclusive).
    /// A guard for CI against a change that re-asks a whole suite.
    #[arg(long, value_name = "N", env = "PROMPTGATE_MAX_CALLS")]
    max_calls: Option<u64>,
}

/// Which cases to run, as `cargo test NAME` chooses tests: for `run` and `compare` (a gate or
/// a baseline judges whole suites).
#[derive(Debug, Default, Args)]
struct CaseFilterArgs {
    /// Run only the case with this id (repeatable); `*` and `?` match any run of characters
    /// and any one (quote them: --case 'sg-*'). The report says it is a subset's accuracy.
    #[arg(long = "case", value_name = "ID", conflicts_with = "shard")]
    cases: Vec<String>,
    /// Run only the cases with this tag (repeatable: any of them); with --case, both must
    /// hold.
    #[arg(long = "tag", value_name = "TAG", conflicts_with = "shard")]
    tags: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum OutputFormat {
    Terminal,
    Json,
    Markdown,
    Junit,
    Html,
}

fn parse_share(text: &str) -> Result<f64, String> {
    let value: f64 = text.parse().map_err(|_| format!("`{text}` is not a number"))?;
    if (0.0..=1.0).contains(&value) {
        Ok(value)
    } else {
        Err(format!("{value} is not between 0 and 1"))
    }
}

/// A one-sided level ([`limits::ONE_SIDED_ALPHA`]).
fn parse_one_sided_alpha(text: &str) -> Result<f64, String> {
    let value = parse_share(text)?;
    limits::strictly_within(value, limits::ONE_SIDED_ALPHA)
        .map_err(|m| format!("{m} (the usual one-sided level is 0.05)"))?;
    Ok(value)
}

/// A two-sided level ([`limits::TWO_SIDED_ALPHA`]).
fn parse_two_sided_alpha(text: &str) -> Result<f64, String> {
    let value = parse_share(text)?;
    limits::strictly_within(value, limits::TWO_SIDED_ALPHA).map_err(|m| format!("{m} (the usual level is 0.05)"))?;
    Ok(value)
}

/// Parse the process's arguments, run the command, print what it found, and return the exit
/// code.
pub fn main() -> i32 {
    let cli = Cli::parse();
    init_secrets(&cli.global);
    let stderr_color = color_enabled(cli.global.color, std::io::stderr().is_terminal());
    match execute(&cli) {
        Ok(code) => code,
        Err(error) => {
            print_error(&error, stderr_color);
            error.exit_code()
        }
    }
}

fn color_enabled(choice: ColorChoice, is_terminal: bool) -> bool {
    match choice {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => is_terminal && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()),
    }
}

fn print_error(error: &Error, color: bool) {
    let _ = std::io::stderr().lock().write_all(error.for_terminal(color).as_bytes());
}

fn execute(cli: &Cli) -> Result<i32, Error> {
    match &cli.command {
        Command::Init(args) => with_console(|console| {
            let options = command::init::InitOptions {
                dir: args.dir.clone(),
                base_url: args.base_url.clone(),
                model: args.model.clone(),
            };
            command::init::init(&options, console)
        }),
        Command::Run(args) if args.list || args.show_prompts => with_console(|console| {
            let options = filtered_options(&cli.global, &args.selection, &args.cases)?;
            let json = args.output.format == OutputFormat::Json;
            match args.list {
                true => command::run::list(&options, json, console),
                false => command::run::show_prompts(&options, json, console),
            }
        }),
        Command::Run(args) => with_console(|console| {
            command::run::run(
                &RunOptions {
                    batch: args.batch.batch,
                    ..filtered_options(&cli.global, &args.selection, &args.cases)?
                },
                &output(&cli.global, &args.output),
                console,
            )
        }),
        Command::Gate(args) => {
            let options = GateOptions {
                baseline_dir: baseline_dir(&cli.global, args.baseline_dir.as_ref()),
                alpha: args.alpha,
                margin: args.margin,
                exact: args.exact,
                sampling: match args.sampling {
                    SamplingChoice::Fixed => crate::gate::Sampling::Fixed,
                    SamplingChoice::Sequential => crate::gate::Sampling::Sequential,
                },
                fail_on_broken: args.fail_on_broken,
            };
            let output = output(&cli.global, &args.output);
            with_console(|console| {
                command::run::gate(&run_options(&cli.global, &args.selection), &options, &output, console)
            })
        }
        Command::Drift(args) => {
            let epoch = args.epoch.clone().unwrap_or_else(|| {
                crate::drift::default_epoch(jiff::Timestamp::now().to_zoned(jiff::tz::TimeZone::UTC).date())
            });
            let options = crate::drift::DriftOptions {
                baseline_dir: baseline_dir(&cli.global, args.baseline_dir.as_ref()),
                alpha: args.alpha,
                epoch,
            };
            let output = output(&cli.global, &args.output);
            with_console(|console| {
                let options_run = RunOptions {
                    batch: args.batch.batch,
                    ..run_options(&cli.global, &args.selection)
                };
                command::run::drift(&options_run, &options, &output, console)
            })
        }
        Command::Plan(args) => with_console(|console| {
            // A family's accuracy is the share of variants that kept the right answer: with the
            // cases right on their own, 1 − flip rate.
            let options = command::plan::PlanOptions {
                accuracy: args.accuracy.unwrap_or(1.0 - args.flip_rate),
                samples: args.samples,
                drop: args.drop.or(args.flip_increase),
                variants: args.flip_increase.is_some(),
                cases: args.cases,
                alpha: args.alpha,
                power: args.power,
                icc: args.icc,
                difficulty_correlation: args.difficulty_correlation,
                margin: args.margin,
                shape: match args.drop_shape {
                    DropShapeArg::Proportional => crate::plan::DropShape::Proportional,
                    DropShapeArg::Concentrated => crate::plan::DropShape::Concentrated,
                },
            };
            command::plan::plan(&options, console)
        }),
        Command::Record(args) => {
            let command = command::record::RecordCommand {
                config_path: cli.global.config.clone(),
                suite: args.suite.clone(),
                finding: args.finding.clone(),
                from_run: args.from_run.clone(),
                expect: args.expect.clone(),
                rule: args.rule.clone(),
                note: args.note.clone(),
                id: args.id.clone(),
                index: args.index,
                all: args.all,
                wrong_only: args.wrong_only,
                cases: args.cases.clone(),
                yes: args.yes,
                no_redact: args.no_redact,
                force: args.force,
                json: args.json,
            };
            let stdin = std::io::stdin();
            let is_terminal = stdin.is_terminal();
            with_console(|console| command::record::record(&command, &mut stdin.lock(), is_terminal, console))
        }
        Command::Compare(args) => {
            use command::compare::{CompareFormat as Shown, CompareOutput};
            let output = CompareOutput {
                format: match args.format {
                    CompareFormat::Terminal => Shown::Terminal,
                    CompareFormat::Json => Shown::Json,
                    CompareFormat::Markdown => Shown::Markdown,
                    CompareFormat::Html => Shown::Html,
                },
                out: args.out.clone(),
            };
            with_console(|console| {
                let options = filtered_options(&cli.global, &args.selection, &args.cases)?;
                command::compare::compare(&options, &output, console)
            })
        }
        Command::Baseline {
            command:
                BaselineCommand::Update {
                    selection,
                    baseline_dir: dir,
                    redact,
                    out,
                    batch,
                },
        } => with_console(|console| {
            command::run::update_baselines(
                &RunOptions {
                    batch: batch.batch,
                    ..run_options(&cli.global, selection)
                },
                &baseline_dir(&cli.global, dir.as_ref()),
                *redact,
                out.as_deref(),
                console,
            )
        }),
        Command::Merge(args) => {
            use command::compare::{CompareFormat as Shown, CompareOutput};
            let output = output(&cli.global, &args.output);
            // A comparison has no JUnit form: `merge` refuses it for compare shards.
            let compare_output = match output.format {
                Format::Terminal => Some(Shown::Terminal),
                Format::Json => Some(Shown::Json),
                Format::Markdown => Some(Shown::Markdown),
                Format::Html => Some(Shown::Html),
                Format::Junit => None,
            }
            .map(|format| CompareOutput {
                format,
                out: args.output.out.clone(),
            });
            let merge = command::merge::MergeOptions {
                files: args.files.clone(),
                // Given, or the shards' own (`None`): `merge` falls back to what they recorded.
                baseline_dir: args.baseline_dir.clone(),
            };
            let options = run_options(&cli.global, &SelectionArgs::default());
            with_console(|console| command::merge::merge(&merge, &options, &output, compare_output.as_ref(), console))
        }
        Command::Completions { shell } => with_console(|console| {
            let mut script = Vec::new();
            clap_complete::generate(*shell, &mut Cli::command(), "promptgate", &mut script);
            console.print(&String::from_utf8_lossy(&script))?;
            Ok(crate::exit_code::SUCCESS)
        }),
        Command::Cache { command } => {
            use command::cache::{self, CacheOptions};
            let options = CacheOptions {
                path: cli.global.cache.clone(),
                quiet: cli.global.quiet,
            };
            with_console(|console| match command {
                CacheCommand::Stats { json } => cache::stats(&options, *json, console),
                CacheCommand::Export { out, model } => {
                    cache::export(&options, out.as_deref(), model.as_deref(), console)
                }
                CacheCommand::Import { file } => cache::import(&options, file, &mut std::io::stdin().lock(), console),
                CacheCommand::Prune {
                    older_than,
                    model,
                    dry_run,
                } => cache::prune(&options, *older_than, model.as_deref(), *dry_run, console),
            })
        }
    }
}

/// Run a command of `command::` with the process's stdout and stderr (not locked for the whole
/// command: a progress bar draws on stderr from another thread).
fn with_console(command: impl FnOnce(&mut Console) -> Result<i32, Error>) -> Result<i32, Error> {
    let (mut out, mut err) = (std::io::stdout(), std::io::stderr());
    command(&mut Console::new(&mut out, &mut err, secrets()))
}

fn run_options(global: &GlobalArgs, args: &SelectionArgs) -> RunOptions {
    RunOptions {
        suites: args.suites.clone(),
        models: args.models.clone(),
        prompts: args.prompts.clone(),
        samples: args.samples,
        concurrency: args.concurrency.map(|n| n as usize),
        offline: args.offline,
        max_error_rate: args.max_error_rate,
        interval: if args.conservative_ci {
            IntervalMethod::WilsonCasesZ
        } else {
            IntervalMethod::default()
        },
        progress: !global.quiet && std::io::stderr().is_terminal(),
        shard: args.shard,
        dry_run: args.dry_run,
        max_calls: args.max_calls,
        ..RunOptions::new(global.config.clone(), global.cache.clone(), EnvVars::from_process())
    }
}

/// [`run_options`] of the cases `cases` chooses (`run`, `compare`).
fn filtered_options(global: &GlobalArgs, args: &SelectionArgs, cases: &CaseFilterArgs) -> Result<RunOptions, Error> {
    Ok(RunOptions {
        case_filter: crate::case_filter::CaseFilter::new(&cases.cases, &cases.tags)?,
        ..run_options(global, args)
    })
}

/// What to print on stdout and which report files to write.
fn output(global: &GlobalArgs, args: &OutputArgs) -> command::run::Output {
    command::run::Output {
        format: match args.format {
            OutputFormat::Terminal => Format::Terminal,
            OutputFormat::Json => Format::Json,
            OutputFormat::Markdown => Format::Markdown,
            OutputFormat::Junit => Format::Junit,
            OutputFormat::Html => Format::Html,
        },
        style: Style {
            color: color_enabled(global.color, std::io::stdout().is_terminal()),
            verbose: global.verbose,
            report_url: args.report_url.clone(),
        },
        out: args.out.clone(),
        answers: args.answers,
        redact: args.redact,
    }
}

/// `--baseline-dir`, else `baselines` beside the config file.
fn baseline_dir(global: &GlobalArgs, flag: Option<&PathBuf>) -> PathBuf {
    match flag {
        Some(dir) => dir.clone(),
        None => global
            .config
            .parent()
            .map_or_else(|| PathBuf::from("baselines"), |p| p.join("baselines")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    /// clap wraps help at 100 columns when stdout is not a terminal: a longer line of an
    /// example or an exit code would break in mid-phrase, under the wrong column.
    #[test]
    fn hand_laid_help_fits_100_columns() {
        for (name, text) in [
            ("LONG_ABOUT", LONG_ABOUT),
            ("HELP_TABLE", exit_code::HELP_TABLE),
            ("INIT", INIT_AFTER_HELP),
            ("RUN", RUN_AFTER_HELP),
            ("GATE", GATE_AFTER_HELP),
            ("DRIFT", DRIFT_AFTER_HELP),
            ("COMPARE", COMPARE_AFTER_HELP),
            ("MERGE", MERGE_AFTER_HELP),
            ("RECORD", RECORD_AFTER_HELP),
            ("PLAN", PLAN_AFTER_HELP),
            ("CACHE_EXPORT", CACHE_EXPORT_AFTER_HELP),
            ("CACHE_PRUNE", CACHE_PRUNE_AFTER_HELP),
            ("COMPLETIONS", COMPLETIONS_AFTER_HELP),
        ] {
            for line in text.lines() {
                assert!(
                    line.chars().count() <= 100,
                    "{name}: {} columns: {line}",
                    line.chars().count()
                );
            }
        }
    }

    #[test]
    fn share_parser_rejects_out_of_range() {
        assert_eq!(parse_share("0.1"), Ok(0.1));
        assert!(parse_share("1.5").is_err());
        assert!(parse_share("x").is_err());
    }
}
