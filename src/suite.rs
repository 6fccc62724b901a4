//! Resolving a suite of the config: its name, its prompt versions and the check of its cases
//! against its graders. `run` (and every command over it) and `record` resolve suites alike, so
//! a mistake reads the same whichever command finds it.

use std::path::PathBuf;

use crate::case::LoadedCase;
use crate::config::{self, Config, GraderConfig, SuiteConfig};
use crate::error::Error;
use crate::grader::{Expectations, Graders};

/// The suite named `name`; an unknown name lists the known ones.
pub fn find<'a>(config: &'a Config, name: &str) -> Result<&'a SuiteConfig, Error> {
    config.suites.get(name).ok_or_else(|| {
        Error::usage(format!("unknown suite `{name}`")).with_hint(format!(
            "suites in `{}`: {}",
            config.path.display(),
            config::names(config.suites.keys())
        ))
    })
}

/// The prompt file of a version of the suite: `default` (its own prompt), a variant's name, or
/// a path to a prompt file.
pub fn prompt_file(config: &Config, name: &str, suite: &SuiteConfig, version: &str) -> Result<PathBuf, Error> {
    suite.prompt_file(config, version).ok_or_else(|| {
        Error::usage(format!("suite `{name}` has no prompt `{version}`")).with_hint(format!(
            "use `{}`, a variant of the suite ({}), or a path to a prompt file",
            config::DEFAULT_PROMPT,
            config::names(suite.variants.keys())
        ))
    })
}

/// A case's `expect` read by the suite's graders, before anything is paid for; the error
/// names the case's file and line and the graders the suite uses.
pub fn expectation(
    name: &str,
    suite: &SuiteConfig,
    graders: &Graders,
    loaded: &LoadedCase,
) -> Result<Expectations, Error> {
    graders.expectations(&loaded.case.expect).map_err(|message| {
        Error::invalid(
            "case file",
            &loaded.file,
            loaded.line.map(|l| format!(" at line {l}")).unwrap_or_default(),
            format!("case `{}`: {message}", loaded.case.id),
        )
        .with_hint(format!(
            "suite `{name}` grades with {}; the README's Graders section shows each one's `expect`",
            suite
                .grader
                .iter()
                .map(GraderConfig::kind)
                .collect::<Vec<_>>()
                .join(" + ")
        ))
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::case::Case;

    #[test]
    fn names_versions_and_cases_are_checked_with_what_would_fix_them() {
        let config = Config::parse(Path::new("/p/promptgate.toml"), crate::testing::CONFIG).unwrap();
        let error = find(&config, "triag").unwrap_err();
        assert_eq!(error.to_string(), "unknown suite `triag`");
        assert_eq!(error.hint(), Some("suites in `/p/promptgate.toml`: triage"));
        let suite = find(&config, "triage").unwrap();
        assert_eq!(
            prompt_file(&config, "triage", suite, "en").unwrap(),
            Path::new("/p/prompts/triage-en.toml")
        );
        let error = prompt_file(&config, "triage", suite, "ja").unwrap_err();
        assert!(error.hint().unwrap().contains("(en)"), "{:?}", error.hint());

        let prompt = crate::prompt::Prompt::parse(Path::new("p.toml"), "schema_version = 1\nuser = \"x\"\n").unwrap();
        let graders = Graders::new(&suite.grader, &prompt, &config).unwrap();
        let case = |expect: serde_json::Value| LoadedCase {
            case: Case {
                id: "c7".into(),
                vars: serde_json::Map::new(),
                expect,
                tags: vec![],
                source: None,
                notes: None,
                attacker_fields: None,
            },
            file: "cases/triage/c.jsonl".into(),
            line: Some(7),
        };
        expectation("triage", suite, &graders, &case(serde_json::json!({"label": "notify"}))).unwrap();
        let error = expectation("triage", suite, &graders, &case(serde_json::json!({"label": "maybe"}))).unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("invalid case file `cases/triage/c.jsonl` at line 7: case `c7`: "),
            "{error}"
        );
        assert!(error.hint().unwrap().starts_with("suite `triage` grades with label;"));
    }
}
