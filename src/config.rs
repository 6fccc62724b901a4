//! `promptgate.toml`: providers, models and suites.
//!
//! Paths inside the file are resolved relative to the folder that holds it, so a config works
//! the same from any working directory. Unknown keys are errors: a typo must not silently fall
//! back to a default.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{self, Error};
use crate::fs::FsError;
use crate::limits::{self, in_range};
use crate::provider::{ProviderConfig, SamplingParams};

/// The config format version this build reads.
///
/// Changelog: 1 — first version.
pub const CONFIG_SCHEMA_VERSION: u32 = 1;

/// A loaded, validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it was read from.
    pub path: PathBuf,
    /// The folder relative paths are resolved against.
    pub root: PathBuf,
    pub providers: BTreeMap<String, ProviderConfig>,
    pub models: BTreeMap<String, ModelConfig>,
    pub suites: BTreeMap<String, SuiteConfig>,
    pub defaults: Defaults,
    /// How `record` writes new cases.
    pub record: RecordConfig,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    #[serde(default = "default_schema_version")]
    schema_version: u32,
    #[serde(default)]
    defaults: Defaults,
    /// Read in a second step (see `provider::ProviderConfig::from_table`); the span gives
    /// messages a line.
    #[serde(default)]
    providers: BTreeMap<String, toml::Spanned<toml::Table>>,
    #[serde(default)]
    models: BTreeMap<String, ModelConfig>,
    #[serde(default)]
    suites: BTreeMap<String, SuiteConfig>,
    #[serde(default)]
    record: RecordConfig,
}

fn default_schema_version() -> u32 {
    CONFIG_SCHEMA_VERSION
}

/// Run-wide defaults that flags override.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Defaults {
    /// Share of calls that may fail before a run is inconclusive.
    #[serde(default = "default_max_error_rate")]
    pub max_error_rate: f64,
    /// Concurrent provider calls.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// Two-sided confidence level of the accuracy interval.
    #[serde(default = "default_confidence_level")]
    pub confidence_level: f64,
}

impl Default for Defaults {
    fn default() -> Self {
        Defaults {
            max_error_rate: default_max_error_rate(),
            concurrency: default_concurrency(),
            confidence_level: default_confidence_level(),
        }
    }
}

fn default_max_error_rate() -> f64 {
    0.05
}
fn default_concurrency() -> usize {
    8
}
fn default_confidence_level() -> f64 {
    0.95
}

/// The `[record]` table.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordConfig {
    /// Extra redaction patterns, applied after the built-in rules (`[[record.redact]]`).
    #[serde(default)]
    pub redact: Vec<RedactPatternConfig>,
}

/// One `[[record.redact]]` pattern.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedactPatternConfig {
    /// The rule name the recorded case lists (lowercase letters, digits and `-`).
    pub name: String,
    /// A regular expression (Rust `regex` syntax); with a capture group only the first group is
    /// replaced.
    pub pattern: String,
}

/// One `[models.NAME]` table: a provider, a model id and its sampling parameters.
#[derive(Debug, Clone, Deserialize, serde::Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    pub provider: String,
    /// The id the provider knows the model by.
    pub model: String,
    pub temperature: Option<f32>,
    pub max_tokens: Option<u32>,
    pub top_p: Option<f32>,
    /// Base seed; sample j is sent with `seed + j` so that the k samples of a case differ.
    pub seed: Option<i64>,
    /// USD per million input tokens, for cost in reports.
    pub price_input_per_million: Option<f64>,
    /// USD per million output tokens.
    pub price_output_per_million: Option<f64>,
    /// The same through the provider's batch engine (`run --batch`), usually half.
    pub price_batch_input_per_million: Option<f64>,
    pub price_batch_output_per_million: Option<f64>,
}

/// A model's prices in USD per million tokens.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Prices {
    pub input_per_million: f64,
    pub output_per_million: f64,
}

impl Prices {
    /// Prices when both are given.
    fn both(input: Option<f64>, output: Option<f64>) -> Option<Prices> {
        input.zip(output).map(|(input_per_million, output_per_million)| Prices {
            input_per_million,
            output_per_million,
        })
    }

    /// What these tokens cost, in USD.
    pub fn cost(self, input_tokens: u64, output_tokens: u64) -> f64 {
        (input_tokens as f64 * self.input_per_million + output_tokens as f64 * self.output_per_million) / 1e6
    }
}

impl ModelConfig {
    /// The model's batch prices, when both are configured.
    pub fn batch_prices(&self) -> Option<Prices> {
        Prices::both(self.price_batch_input_per_million, self.price_batch_output_per_million)
    }

    /// The model's prices, when both are configured.
    pub fn prices(&self) -> Option<Prices> {
        Prices::both(self.price_input_per_million, self.price_output_per_million)
    }

    /// The parameters of sample `sample_index`; a suite's `max_tokens` wins over the model's.
    pub fn sampling_params(&self, max_tokens: Option<u32>, sample_index: u32) -> SamplingParams {
        SamplingParams {
            temperature: self.temperature,
            max_tokens: max_tokens.or(self.max_tokens),
            top_p: self.top_p,
            seed: self.seed.map(|seed| seed.wrapping_add(i64::from(sample_index))),
        }
    }
}

/// One `[suites.NAME]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SuiteConfig {
    pub description: Option<String>,
    /// The prompt file (TOML), relative to the config's folder: what `run`, `gate` and the
    /// baselines use.
    pub prompt: PathBuf,
    /// Other versions of the prompt by name, to run with `--prompt NAME` and compare with
    /// `compare --prompt`.
    #[serde(default)]
    pub variants: BTreeMap<String, PathBuf>,
    /// The case folder or file, relative to the config's folder.
    pub cases: PathBuf,
    /// One grader, or an array of graders that must all pass.
    #[serde(deserialize_with = "one_or_many")]
    pub grader: Vec<GraderConfig>,
    /// Models the suite runs on by default.
    pub models: Vec<String>,
    /// Samples per case (k).
    #[serde(default = "default_samples")]
    pub samples: u32,
    /// The answer length this task needs, overriding the model's `max_tokens`.
    pub max_tokens: Option<u32>,
    /// Invariance and injection variants of each case's finding (see `robustness`).
    pub robustness: Option<RobustnessConfig>,
}

/// `[suites.NAME.robustness]`: which variant families to run and how they are made.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RobustnessConfig {
    /// The families, each a result of its own (`suite~family`) with its own baseline.
    #[serde(default = "all_families")]
    pub families: Vec<crate::robustness::Family>,
    /// Variants per case and family [default: one per payload (injection), one per change
    /// (invariance)].
    pub variants: Option<u32>,
    /// The seed of every choice.
    #[serde(default = "default_robustness_seed")]
    pub seed: u64,
    /// The case variables that hold the finding [default: every object or array variable].
    #[serde(default)]
    pub vars: Vec<String>,
    /// Where an attacker writes, relative to each finding [default: the ASFF and GuardDuty
    /// fields of `robustness::fields::DEFAULT_FIELDS`].
    pub fields: Option<Vec<String>>,
    /// What an injection asks for [default: with a label grader, a label other than the
    /// case's; else `suppress`].
    pub target: Option<String>,
}

fn all_families() -> Vec<crate::robustness::Family> {
    crate::robustness::Family::ALL.to_vec()
}

fn default_robustness_seed() -> u64 {
    1
}

impl RobustnessConfig {
    /// The paths an attacker writes, parsed (checked when the config was loaded).
    pub fn field_paths(&self) -> Vec<crate::robustness::FieldPath> {
        match &self.fields {
            Some(paths) => paths
                .iter()
                .filter_map(|p| crate::robustness::FieldPath::parse(p).ok())
                .collect(),
            None => crate::robustness::fields::defaults(),
        }
    }
}

/// A suite or model name: it becomes a folder or file name.
fn valid_name(name: &str) -> bool {
    (1..=100).contains(&name.len())
        && !name.starts_with('.')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
}

fn default_samples() -> u32 {
    1
}

/// The name `--prompt` and the reports give a suite's own `prompt`.
pub const DEFAULT_PROMPT: &str = "default";

impl SuiteConfig {
    /// The prompt file `--prompt VALUE` means for this suite, relative to the config's folder
    /// unless `VALUE` is a path: the suite's own prompt (`default`), a named variant, or a path
    /// to any prompt file (it contains `/` or ends in `.toml`), relative to the working folder.
    pub fn prompt_file(&self, config: &Config, value: &str) -> Option<PathBuf> {
        if value == DEFAULT_PROMPT {
            Some(config.resolve(&self.prompt))
        } else if let Some(path) = self.variants.get(value) {
            Some(config.resolve(path))
        } else if value.contains('/') || value.contains('\\') || value.ends_with(".toml") {
            Some(PathBuf::from(value))
        } else {
            None
        }
    }
}

/// How a suite's responses are graded.
#[derive(Debug, Clone, Deserialize, serde::Serialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum GraderConfig {
    /// A label taken from a JSON field, or the one allowed word the answer contains.
    Label {
        /// JSON field holding the label; unset means "find the one allowed word in the text".
        field: Option<String>,
        /// The allowed labels, e.g. `["suppress", "notify"]`.
        labels: Vec<String>,
    },
    /// The expected function calls with argument matchers (`expect.calls`).
    ToolCall,
    /// JSON output: parses (a fenced block is tolerated), follows a JSON Schema (the file
    /// `schema`, else the prompt's response schema), and `expect.fields` match.
    Json {
        /// A JSON Schema file, relative to the config's folder.
        schema: Option<PathBuf>,
    },
    /// Structured text: the `headings` in order, and the severity under `severity_heading` one
    /// of `severities` and equal to `expect.severity`.
    Sections {
        headings: Vec<String>,
        severity_heading: Option<String>,
        #[serde(default = "default_severities")]
        severities: Vec<String>,
    },
    /// `expect.facts.required` present and `expect.facts.forbidden` absent (strings or regexes).
    Facts,
    /// A Falco rules file: it parses, every rule is complete, every macro it uses is defined
    /// (in the output or `base_rules`), MITRE technique tags agree with their tactics, and
    /// `expect.falco.required_tags` are present.
    Falco {
        /// A rules file whose macros and lists the output may use, relative to the config.
        base_rules: Option<PathBuf>,
    },
    /// Another model reads the answer against a rubric (a prompt file) and says pass or fail.
    Judge {
        /// The judge: a model of `[models]`.
        model: String,
        /// The rubric prompt, relative to the config's folder.
        rubric: PathBuf,
    },
}

impl GraderConfig {
    /// The grader's `kind`.
    pub fn kind(&self) -> &'static str {
        match self {
            GraderConfig::Label { .. } => "label",
            GraderConfig::ToolCall => "tool_call",
            GraderConfig::Json { .. } => "json",
            GraderConfig::Sections { .. } => "sections",
            GraderConfig::Facts => "facts",
            GraderConfig::Falco { .. } => "falco",
            GraderConfig::Judge { .. } => "judge",
        }
    }
}

fn default_severities() -> Vec<String> {
    ["CRITICAL", "HIGH", "MEDIUM", "LOW", "INFORMATIONAL"]
        .map(String::from)
        .to_vec()
}

/// `grader = { … }` or `grader = [{ … }, { … }]`.
fn one_or_many<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Vec<GraderConfig>, D::Error> {
    struct OneOrMany;
    impl<'de> serde::de::Visitor<'de> for OneOrMany {
        type Value = Vec<GraderConfig>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a grader table or an array of grader tables")
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
            GraderConfig::deserialize(serde::de::value::MapAccessDeserializer::new(map)).map(|g| vec![g])
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
            Vec::deserialize(serde::de::value::SeqAccessDeserializer::new(seq))
        }
    }
    deserializer.deserialize_any(OneOrMany)
}

impl Config {
    fn check_ranges(&self) -> Result<(), Error> {
        let check = |field: String, result: Result<(), String>| {
            result.map_err(|message| {
                self.field_error(field, message)
                    .with_hint("the README's configuration section gives each key's range")
            })
        };
        check(
            "defaults.concurrency".into(),
            in_range(self.defaults.concurrency as u64, limits::CONCURRENCY),
        )?;
        for (name, m) in &self.models {
            let key = |k: &str| format!("models.{name}.{k}");
            if let Some(t) = m.temperature {
                check(key("temperature"), in_range(f64::from(t), limits::TEMPERATURE))?;
            }
            if let Some(p) = m.top_p {
                check(key("top_p"), in_range(f64::from(p), (0.0, 1.0)))?;
            }
            if let Some(t) = m.max_tokens {
                check(key("max_tokens"), in_range(u64::from(t), limits::MAX_TOKENS))?;
            }
            for (k, price) in [
                ("price_input_per_million", m.price_input_per_million),
                ("price_output_per_million", m.price_output_per_million),
                ("price_batch_input_per_million", m.price_batch_input_per_million),
                ("price_batch_output_per_million", m.price_batch_output_per_million),
            ] {
                if let Some(price) = price {
                    check(key(k), in_range(price, limits::PRICE))?;
                }
            }
        }
        for (name, suite) in &self.suites {
            check(
                format!("suites.{name}.samples"),
                in_range(u64::from(suite.samples), limits::SAMPLES),
            )?;
            if let Some(t) = suite.max_tokens {
                check(
                    format!("suites.{name}.max_tokens"),
                    in_range(u64::from(t), limits::MAX_TOKENS),
                )?;
            }
            if let Some(robustness) = &suite.robustness {
                let key = |k: &str| format!("suites.{name}.robustness.{k}");
                if let Some(count) = robustness.variants {
                    check(key("variants"), in_range(u64::from(count), limits::VARIANTS))?;
                }
                for (index, path) in robustness.fields.iter().flatten().enumerate() {
                    check(
                        format!("{}[{index}]", key("fields")),
                        crate::robustness::FieldPath::parse(path).map(|_| ()),
                    )?;
                }
                if robustness.families.is_empty() {
                    check(
                        key("families"),
                        Err("name at least one: \"invariance\", \"injection\"".into()),
                    )?;
                }
                if robustness
                    .target
                    .as_ref()
                    .is_some_and(|t| t.is_empty() || t.chars().count() > 200)
                {
                    check(key("target"), Err("1 to 200 characters".into()))?;
                }
            }
        }
        Ok(())
    }

    /// Read and validate a config file.
    pub fn load(path: &Path) -> Result<Config, Error> {
        let text = crate::fs::read_to_string(path, "config").map_err(|err| match err {
            FsError::Read { source, .. } if source.kind() == std::io::ErrorKind::NotFound => FsError::Read {
                action: "read config",
                path: path.to_path_buf(),
                source,
                hint: Some(
                    "run from the folder that holds promptgate.toml, or pass --config PATH (env PROMPTGATE_CONFIG)"
                        .to_string(),
                ),
            },
            other => other,
        })?;
        Self::parse(path, &text)
    }

    /// Parse and validate config text; `path` is used for messages and to resolve relative paths.
    pub fn parse(path: &Path, text: &str) -> Result<Config, Error> {
        let file: ConfigFile = toml::from_str(text).map_err(|err| {
            let location = crate::location::toml_location(text, &err);
            Error::invalid("config", path, location, err.message().trim().to_string())
                .with_hint("see the configuration section of the README for every key")
        })?;
        error::check_schema_version("config", path, file.schema_version, CONFIG_SCHEMA_VERSION)?;
        let root = path
            .parent()
            .map(Path::to_path_buf)
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or_else(|| PathBuf::from("."));
        let mut providers = BTreeMap::new();
        for (name, table) in file.providers {
            let (line, _) = crate::location::line_column(text, table.span().start);
            let provider = ProviderConfig::from_table(table.get_ref()).map_err(|problem| {
                let field = match &problem.key {
                    Some(key) => format!("providers.{name}.{key}"),
                    None => format!("providers.{name}"),
                };
                let error = Error::invalid(
                    "config",
                    path,
                    format!(" at line {line} (field `{field}`)"),
                    problem.message,
                );
                match problem.hint {
                    Some(hint) => error.with_hint(hint),
                    None => error.with_hint("see the configuration section of the README for every key"),
                }
            })?;
            providers.insert(name, provider);
        }
        let config = Config {
            path: path.to_path_buf(),
            root,
            providers,
            models: file.models,
            suites: file.suites,
            defaults: file.defaults,
            record: file.record,
        };
        config.validate()?;
        Ok(config)
    }

    /// An error naming a field of this config file.
    pub fn field_error(&self, field: String, message: String) -> Error {
        Error::invalid("config", &self.path, format!(" (field `{field}`)"), message)
    }

    fn validate(&self) -> Result<(), Error> {
        self.check_ranges()?;
        let d = &self.defaults;
        if !(0.0..=1.0).contains(&d.max_error_rate) {
            return Err(self.field_error(
                "defaults.max_error_rate".into(),
                format!("{} is not a share between 0 and 1", d.max_error_rate),
            ));
        }
        if d.concurrency == 0 {
            return Err(self.field_error("defaults.concurrency".into(), "must be at least 1".into()));
        }
        if !(d.confidence_level > 0.0 && d.confidence_level < 1.0) {
            return Err(self.field_error(
                "defaults.confidence_level".into(),
                format!("{} is not between 0 and 1", d.confidence_level),
            ));
        }
        // Suite and model names become folder and file names (`baselines/<suite>/<model>.json`),
        // and `~` joins a suite to its robustness family (`triage~injection`).
        for (table, names) in [
            ("suites", self.suites.keys().collect::<Vec<_>>()),
            ("models", self.models.keys().collect()),
        ] {
            if let Some(name) = names.into_iter().find(|name| !valid_name(name)) {
                return Err(self
                    .field_error(
                        format!("{table}.{name}"),
                        format!("`{name}` cannot name a suite or model"),
                    )
                    .with_hint("use 1 to 100 ASCII letters, digits, `-`, `_` and `.`, not starting with `.`"));
            }
        }
        for (name, model) in &self.models {
            if !self.providers.contains_key(&model.provider) {
                return Err(self
                    .field_error(
                        format!("models.{name}.provider"),
                        format!("unknown provider `{}`", model.provider),
                    )
                    .with_hint(format!("known providers: {}", names(self.providers.keys()))));
            }
        }
        for (name, suite) in &self.suites {
            for model in &suite.models {
                if !self.models.contains_key(model) {
                    return Err(self
                        .field_error(format!("suites.{name}.models"), format!("unknown model `{model}`"))
                        .with_hint(format!("known models: {}", names(self.models.keys()))));
                }
            }
            if suite.variants.contains_key(DEFAULT_PROMPT) {
                return Err(self
                    .field_error(
                        format!("suites.{name}.variants.{DEFAULT_PROMPT}"),
                        format!("`{DEFAULT_PROMPT}` names the suite's own `prompt`"),
                    )
                    .with_hint("give the variant another name"));
            }
            if suite.samples == 0 {
                return Err(self.field_error(format!("suites.{name}.samples"), "must be at least 1".into()));
            }
            if suite.grader.is_empty() {
                return Err(self
                    .field_error(format!("suites.{name}.grader"), "no grader".into())
                    .with_hint(
                        "e.g. grader = { kind = \"label\", field = \"decision\", labels = [\"suppress\", \"notify\"] }",
                    ));
            }
            for grader in &suite.grader {
                let problem = match grader {
                    GraderConfig::Label { labels, .. } if labels.is_empty() => {
                        Some("a label grader needs at least one label")
                    }
                    GraderConfig::Sections { headings, .. } if headings.is_empty() => {
                        Some("a sections grader needs `headings`")
                    }
                    GraderConfig::Sections {
                        severity_heading: Some(heading),
                        headings,
                        ..
                    } if !headings.contains(heading) => Some("`severity_heading` must be one of `headings`"),
                    GraderConfig::Judge { model, .. } if !self.models.contains_key(model) => {
                        Some("the judge's `model` is not one of `[models]`")
                    }
                    _ => None,
                };
                if let Some(problem) = problem {
                    return Err(self
                        .field_error(format!("suites.{name}.grader"), problem.into())
                        .with_hint("the README's Graders section lists each grader's settings"));
                }
            }
        }
        for (index, pattern) in self.record.redact.iter().enumerate() {
            let field = format!("record.redact[{index}]");
            let slug = !pattern.name.is_empty()
                && pattern
                    .name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
            if !slug {
                return Err(self.field_error(
                    format!("{field}.name"),
                    format!(
                        "`{}` is not a rule name (lowercase letters, digits and `-`)",
                        pattern.name
                    ),
                ));
            }
            if let Err(err) = regex::Regex::new(&pattern.pattern) {
                return Err(self
                    .field_error(format!("{field}.pattern"), err.to_string())
                    .with_hint("patterns use Rust regex syntax (docs.rs/regex); write them in '...' TOML strings"));
            }
        }
        Ok(())
    }

    /// Resolve a path from the config against the config's folder.
    pub fn resolve(&self, path: &Path) -> PathBuf {
        if path.is_absolute() {
            path.to_path_buf()
        } else {
            self.root.join(path)
        }
    }
}

/// A comma-separated list of names for hints.
pub fn names<'a>(items: impl Iterator<Item = &'a String>) -> String {
    let list: Vec<&str> = items.map(String::as_str).collect();
    if list.is_empty() {
        "(none)".to_string()
    } else {
        list.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::ProviderKind;

    #[test]
    fn provider_kinds_parse_from_their_own_names() {
        for kind in [ProviderKind::Openai, ProviderKind::Bedrock] {
            assert_eq!(ProviderKind::parse(kind.as_str()), Some(kind));
        }
        assert_eq!(ProviderKind::parse("anthropic"), None);
    }

    const GOOD: &str = r#"
[providers.local]
kind = "openai"
base_url = "http://127.0.0.1:1/v1"

[models.m]
provider = "local"
model = "gemma"
seed = 7

[suites.s]
prompt = "prompts/s.toml"
cases = "cases/s"
models = ["m"]
samples = 3
grader = { kind = "label", field = "decision", labels = ["suppress", "notify"] }
"#;

    #[test]
    fn parses_and_resolves_relative_paths() {
        let config = Config::parse(Path::new("/x/promptgate.toml"), GOOD).unwrap();
        let suite = &config.suites["s"];
        assert_eq!(suite.samples, 3);
        assert_eq!(config.resolve(&suite.prompt), PathBuf::from("/x/prompts/s.toml"));
        assert_eq!(config.providers["local"].api.api_key_env(), Some("OPENAI_API_KEY"));
        assert_eq!(config.defaults.max_error_rate, 0.05);
    }

    #[test]
    fn syntax_error_names_line() {
        let err = Config::parse(Path::new("p.toml"), "[models.m]\nprovider = \n").unwrap_err();
        let text = err.to_string();
        assert!(text.contains("p.toml"), "{text}");
        assert!(text.contains("line 2"), "{text}");
        assert!(err.hint().is_some());
    }

    #[test]
    fn unknown_model_names_field_and_lists_known() {
        let bad = GOOD.replace(r#"models = ["m"]"#, r#"models = ["nope"]"#);
        let err = Config::parse(Path::new("p.toml"), &bad).unwrap_err();
        assert!(err.to_string().contains("suites.s.models"), "{err}");
        assert!(err.to_string().contains("unknown model `nope`"), "{err}");
        assert_eq!(err.hint(), Some("known models: m"));
    }

    #[test]
    fn a_newer_schema_version_asks_for_an_upgrade() {
        let err = Config::parse(Path::new("p.toml"), &format!("schema_version = 9\n{GOOD}")).unwrap_err();
        assert!(err.to_string().contains("schema_version 9 is not supported"), "{err}");
        assert_eq!(err.hint(), Some("upgrade promptgate to read this file"));
    }

    #[test]
    fn provider_keys_must_fit_the_kind() {
        let bad = GOOD.replace("kind = \"openai\"", "kind = \"bedrock\"");
        let err = Config::parse(Path::new("p.toml"), &bad).unwrap_err();
        assert!(err.to_string().contains("providers.local.base_url"), "{err}");
        assert!(
            err.to_string().contains("does not apply to provider kind `bedrock`"),
            "{err}"
        );
        let good = bad.replace("base_url = \"http://127.0.0.1:1/v1\"", "region = \"us-east-1\"");
        assert_eq!(
            Config::parse(Path::new("p.toml"), &good).unwrap().providers["local"].kind(),
            ProviderKind::Bedrock
        );
    }

    #[test]
    fn robustness_settings_are_checked_and_named() {
        let with = |table: &str| format!("{GOOD}\n[suites.s.robustness]\n{table}\n");
        let config = Config::parse(Path::new("p.toml"), &with("variants = 3")).unwrap();
        let robustness = config.suites["s"].robustness.as_ref().unwrap();
        assert_eq!(robustness.families, crate::robustness::Family::ALL);
        assert_eq!((robustness.variants, robustness.seed), (Some(3), 1));
        assert_eq!(
            robustness.field_paths().len(),
            crate::robustness::fields::DEFAULT_FIELDS.len()
        );
        for (table, key) in [
            ("variants = 0", "suites.s.robustness.variants"),
            ("variants = 101", "suites.s.robustness.variants"),
            ("fields = [\"Tags[0]\"]", "suites.s.robustness.fields[0]"),
            ("families = []", "suites.s.robustness.families"),
            ("target = \"\"", "suites.s.robustness.target"),
        ] {
            let err = Config::parse(Path::new("p.toml"), &with(table)).unwrap_err();
            assert!(err.to_string().contains(key), "{table}: {err}");
        }
        let err = Config::parse(Path::new("p.toml"), &with("families = [\"jailbreak\"]")).unwrap_err();
        assert!(err.to_string().contains("unknown variant `jailbreak`"), "{err}");
    }

    #[test]
    fn suite_and_model_names_are_safe_file_names() {
        for bad in ["\"../x\"", "\"a~b\"", "\".hidden\"", "\"a b\""] {
            let text = GOOD.replace("[suites.s]", &format!("[suites.{bad}]"));
            let err = Config::parse(Path::new("p.toml"), &text).unwrap_err();
            assert!(err.to_string().contains("cannot name a suite or model"), "{bad}: {err}");
        }
        let text = GOOD
            .replace("[models.m]", "[models.\"m/../x\"]")
            .replace("models = [\"m\"]", "models = [\"m/../x\"]");
        let err = Config::parse(Path::new("p.toml"), &text).unwrap_err();
        assert!(err.to_string().contains("models.m/../x"), "{err}");
    }

    #[test]
    fn unknown_key_is_an_error() {
        let bad = GOOD.replace("seed = 7", "sed = 7");
        let err = Config::parse(Path::new("p.toml"), &bad).unwrap_err();
        assert!(err.to_string().contains("unknown field `sed`"), "{err}");
        assert!(err.to_string().contains("line 9"), "{err}");
    }

    #[test]
    fn numbers_out_of_range_name_their_key() {
        let cases = [
            ("samples = 3", "samples = 4294967295", "suites.s.samples"),
            ("samples = 3", "samples = 0", "suites.s.samples"),
            ("seed = 7", "seed = 7\nmax_tokens = 4294967295", "models.m.max_tokens"),
            ("seed = 7", "seed = 7\ntemperature = nan", "models.m.temperature"),
            ("seed = 7", "seed = 7\ntop_p = 1.5", "models.m.top_p"),
            (
                "seed = 7",
                "seed = 7\nprice_input_per_million = -1",
                "models.m.price_input_per_million",
            ),
            (
                "kind = \"openai\"",
                "kind = \"openai\"\ntimeout_secs = 1e300",
                "providers.local.timeout_secs",
            ),
            (
                "kind = \"openai\"",
                "kind = \"openai\"\ntimeout_secs = inf",
                "providers.local.timeout_secs",
            ),
            (
                "kind = \"openai\"",
                "kind = \"openai\"\nconcurrency = 9223372036854775807",
                "providers.local.concurrency",
            ),
            (
                "kind = \"openai\"",
                "kind = \"openai\"\nmax_attempts = 4294967295",
                "providers.local.max_attempts",
            ),
            (
                "kind = \"openai\"",
                "kind = \"openai\"\nretry_max_ms = 9223372036854775807",
                "providers.local.retry_max_ms",
            ),
            (
                "kind = \"openai\"",
                "kind = \"openai\"\nmax_response_bytes = 10",
                "providers.local.max_response_bytes",
            ),
            (
                "base_url = \"http://127.0.0.1:1/v1\"",
                "base_url = \"\"",
                "providers.local.base_url",
            ),
            (
                "base_url = \"http://127.0.0.1:1/v1\"",
                "base_url = \"ftp://x\"",
                "providers.local.base_url",
            ),
        ];
        for (from, to, key) in cases {
            let bad = GOOD.replace(from, to);
            assert_ne!(bad, GOOD, "{to}");
            let err = Config::parse(Path::new("p.toml"), &bad).unwrap_err();
            assert!(err.to_string().contains(&format!("`{key}`")), "{to}: {err}");
            assert_eq!(err.exit_code(), crate::exit_code::BAD_INPUT);
        }
        let bedrock = GOOD
            .replace("kind = \"openai\"", "kind = \"bedrock\"")
            .replace("base_url = \"http://127.0.0.1:1/v1\"", "endpoint_url = \"\"");
        let err = Config::parse(Path::new("p.toml"), &bedrock).unwrap_err();
        assert!(err.to_string().contains("providers.local.endpoint_url"), "{err}");
        // A number beyond TOML's own integers is refused by the parser, at its line and column.
        let huge = GOOD.replace(
            "kind = \"openai\"",
            "kind = \"openai\"\nretry_max_ms = 18446744073709551615",
        );
        let err = Config::parse(Path::new("p.toml"), &huge).unwrap_err();
        assert!(err.to_string().contains("at line 4, column 16"), "{err}");
        assert_eq!(err.exit_code(), crate::exit_code::BAD_INPUT);
        let defaults = format!("[defaults]\nconcurrency = 9223372036854775807\n{GOOD}");
        let err = Config::parse(Path::new("p.toml"), &defaults).unwrap_err();
        assert!(err.to_string().contains("defaults.concurrency"), "{err}");
    }

    #[test]
    fn each_sample_gets_its_own_seed() {
        let model = ModelConfig {
            provider: "p".into(),
            model: "m".into(),
            temperature: Some(1.0),
            max_tokens: Some(96),
            top_p: None,
            seed: Some(40),
            price_input_per_million: None,
            price_output_per_million: None,
            price_batch_input_per_million: None,
            price_batch_output_per_million: None,
        };
        assert_eq!(model.sampling_params(None, 2).seed, Some(42));
        let unseeded = ModelConfig {
            seed: None,
            ..model.clone()
        };
        assert_eq!(unseeded.sampling_params(None, 2).seed, None);
        // A suite's answer length wins over the model's.
        assert_eq!(model.sampling_params(None, 0).max_tokens, Some(96));
        assert_eq!(model.sampling_params(Some(320), 0).max_tokens, Some(320));
    }
}
