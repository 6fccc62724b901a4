//! `promptgate init`: a starter project that runs as written, to edit into one's own.
//!
//! One suite (`triage`: does a natural-language suppression rule match a Security Hub
//! finding?), its prompt and four labelled cases, on OpenAI's gpt-4o-mini or on any
//! OpenAI-compatible server (`--base-url`, `--model`). Nothing that exists is overwritten: if any
//! of the files is there, none is written.

use std::path::{Path, PathBuf};

use super::Console;
use crate::error::Error;
use crate::exit_code;

/// The starter prompt and cases, as files in the source tree so that they read as what they are.
const PROMPT: &str = include_str!("init/triage.toml");
const CASES: &str = include_str!("init/cases.jsonl");

/// What `init` writes, and where.
#[derive(Debug, Clone, PartialEq)]
pub struct InitOptions {
    /// The project folder (created if missing).
    pub dir: PathBuf,
    /// An OpenAI-compatible server's base URL (vLLM, llama.cpp, Ollama); OpenAI's without.
    pub base_url: Option<String>,
    /// The model id the server knows; gpt-4o-mini without.
    pub model: Option<String>,
}

/// The project's files: (path under the folder, text).
fn files(options: &InitOptions) -> Result<Vec<(&'static str, String)>, Error> {
    Ok(vec![
        ("promptgate.toml", config(options)?),
        ("prompts/triage.toml", PROMPT.to_string()),
        ("cases/triage/cases.jsonl", CASES.to_string()),
    ])
}

/// A TOML basic string of `text`.
fn quoted(text: &str) -> String {
    toml::Value::String(text.to_string()).to_string()
}

fn config(options: &InitOptions) -> Result<String, Error> {
    let model_id = options.model.as_deref().unwrap_or("gpt-4o-mini");
    if model_id.is_empty() || model_id.chars().count() > 200 || model_id.chars().any(char::is_control) {
        return Err(
            Error::usage("--model takes the model id the server knows, 1 to 200 characters")
                .with_hint("e.g. --model llama3.2 for Ollama, or the name llama.cpp's server was started with"),
        );
    }
    let provider = match &options.base_url {
        None => "[providers.openai]\n\
                 kind = \"openai\"                 # OpenAI; set base_url for any OpenAI-compatible server\n\
                 api_key_env = \"OPENAI_API_KEY\"  # the variable that holds the key (never the key itself)\n"
            .to_string(),
        Some(url) => {
            // The config's own check of `base_url`, so that what init writes loads.
            crate::limits::check_url(url).map_err(|message| {
                Error::usage(format!("--base-url: {message}"))
                    .with_hint("e.g. --base-url http://127.0.0.1:11434/v1 (Ollama) or http://127.0.0.1:8080/v1")
            })?;
            format!(
                "[providers.openai]\n\
                 kind = \"openai\"                 # any OpenAI-compatible server\n\
                 base_url = {}\n\
                 api_key_env = \"OPENAI_API_KEY\"  # sent when set; a local server may need none\n",
                quoted(url)
            )
        }
    };
    // Prices only where they are known: OpenAI's list price for gpt-4o-mini.
    let prices = if options.base_url.is_none() && options.model.is_none() {
        "price_input_per_million = 0.15   # USD, for the cost in reports, `compare` and --dry-run\n\
         price_output_per_million = 0.60\n"
    } else {
        "# price_input_per_million = 0.15   # USD: the cost in reports, `compare` and --dry-run\n\
         # price_output_per_million = 0.60\n"
    };
    let name = if options.model.is_none() {
        "gpt-4o-mini"
    } else {
        "model"
    };
    Ok(format!(
        "# promptgate's configuration: providers, models and suites. Every key: the README's\n\
         # \"Configuration\" section. Paths are relative to this file.\n\
         schema_version = 1\n\
         \n\
         [defaults]\n\
         concurrency = 8           # calls in flight at once\n\
         \n\
         {provider}\
         \n\
         [models.{name}]\n\
         provider = \"openai\"\n\
         model = {model}\n\
         temperature = 1.0         # the samples of a case should differ: that is what k measures\n\
         max_tokens = 200\n\
         seed = 1                  # sample j is sent with seed + j\n\
         {prices}\
         \n\
         [suites.triage]\n\
         description = \"Does a natural-language suppression rule match a Security Hub finding?\"\n\
         prompt = \"prompts/triage.toml\"\n\
         cases = \"cases/triage\"   # .json / .jsonl files; add your own, and `promptgate record` production misses\n\
         models = [\"{name}\"]\n\
         samples = 3               # k: each case is asked 3 times\n\
         grader = {{ kind = \"label\", field = \"decision\", labels = [\"suppress\", \"notify\"] }}\n",
        model = quoted(model_id),
    ))
}

/// `promptgate init`.
pub fn init(options: &InitOptions, console: &mut Console) -> Result<i32, Error> {
    let files = files(options)?;
    let there: Vec<String> = files
        .iter()
        .map(|(path, _)| options.dir.join(path))
        .filter(|path| path.exists())
        .map(|path| format!("`{}`", path.display()))
        .collect();
    if !there.is_empty() {
        return Err(Error::usage(format!(
            "init writes nothing over existing files, and {} already there",
            match there.len() {
                1 => format!("{} is", there[0]),
                _ => format!("{} are", there.join(", ")),
            }
        ))
        .with_hint("run it in an empty folder (promptgate init DIR), or move those files away"));
    }
    for (path, text) in &files {
        let path = options.dir.join(path);
        if !crate::fs::write_new(&path, text)? {
            return Err(Error::usage(format!(
                "`{}` appeared while init was writing; it was left as it is",
                path.display()
            )));
        }
    }
    console.print(&next_steps(&options.dir, options.base_url.is_some()))?;
    Ok(exit_code::SUCCESS)
}

/// What to do next, with the commands to type.
fn next_steps(dir: &Path, local: bool) -> String {
    let cd = if dir == Path::new(".") {
        String::new()
    } else {
        format!("  cd {}\n", dir.display())
    };
    let key = if local {
        ""
    } else {
        "  export OPENAI_API_KEY=...                         # the key stays in the environment, never in a file\n"
    };
    format!(
        "wrote promptgate.toml, prompts/triage.toml and cases/triage/cases.jsonl (4 labelled cases)\n\
         \n\
         next:\n\
         {cd}  promptgate run --show-prompts --case sg-prod-web  # what the model is asked in one case\n\
         {key}  promptgate run --dry-run                          # what the first run will call: 12 requests\n\
         \x20 promptgate run                                    # accuracy with its confidence interval\n\
         \x20 promptgate baseline update                        # keep this run as the baseline to gate against\n\
         \x20 promptgate gate                                   # after an edit: fails only on a significant drop\n\
         \n\
         Keep .promptgate/ (the response cache) out of version control; commit baselines/.\n\
         Four cases tell little: `promptgate plan --accuracy 0.9 --samples 3 --drop 0.1` says how many a\n\
         10-point drop needs.\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(base_url: Option<&str>, model: Option<&str>) -> InitOptions {
        InitOptions {
            dir: PathBuf::from("."),
            base_url: base_url.map(str::to_string),
            model: model.map(str::to_string),
        }
    }

    #[test]
    fn the_config_names_the_server_and_model_it_was_given() {
        let hosted = config(&options(None, None)).unwrap();
        assert!(hosted.contains("model = \"gpt-4o-mini\""), "{hosted}");
        assert!(hosted.contains("\nprice_input_per_million = 0.15"), "{hosted}");
        assert!(!hosted.contains("base_url ="), "{hosted}");
        let local = config(&options(Some("http://127.0.0.1:11434/v1"), Some("llama3.2"))).unwrap();
        assert!(local.contains("base_url = \"http://127.0.0.1:11434/v1\""), "{local}");
        assert!(local.contains("model = \"llama3.2\""), "{local}");
        assert!(local.contains("models = [\"model\"]"), "{local}");
        // A local model's price is not known: left for the user to fill in.
        assert!(local.contains("# price_input_per_million"), "{local}");
    }

    #[test]
    fn a_model_id_or_url_that_would_break_the_file_is_refused_or_quoted() {
        // Quoted as a TOML string: a quote in the id cannot end it.
        let odd = config(&options(None, Some("a\"b = 1"))).unwrap();
        let parsed: toml::Table = odd.parse().expect("still TOML");
        assert_eq!(parsed["models"]["model"]["model"].as_str(), Some("a\"b = 1"));
        assert!(config(&options(None, Some("a\nb"))).is_err());
        assert!(config(&options(None, Some(""))).is_err());
        assert!(config(&options(Some("not a url"), None)).is_err());
        assert!(config(&options(Some("file:///etc/passwd"), None)).is_err());
    }
}
