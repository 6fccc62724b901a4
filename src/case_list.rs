//! `run --list`: the cases a run would ask about, found without rendering a prompt or calling
//! anything, as `cargo test -- --list` lists tests: what `--case` and `--tag` choose, before
//! paying for it.

use std::fmt::Write as _;

use serde::Serialize;

use crate::case::{self, Case};
use crate::case_filter::{CaseFilter, LeftOut};
use crate::config::Config;
use crate::error::Error;
use crate::excerpt::one_line;

/// The shape of `run --list --format json`; a rename or removal bumps it.
pub const CASE_LIST_SCHEMA_VERSION: u32 = 1;

/// The cases of the selected suites that a run would ask about.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CaseList {
    pub schema_version: u32,
    /// `case_list`: what this JSON is, beside run records and dry runs.
    pub kind: &'static str,
    pub suites: Vec<ListedSuite>,
}

/// One suite's listed cases, in the order a run takes them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ListedSuite {
    pub suite: String,
    /// Every case of the suite; `cases` are those the filter chose (all without one).
    pub suite_cases: usize,
    pub cases: Vec<ListedCase>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ListedCase {
    pub id: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// The case file, relative to the config's folder when it is inside it.
    pub file: String,
    /// The line of a `.jsonl` file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
}

/// The cases of `suites` (every suite when empty) that `filter` chooses (every case without
/// one). Every case file is read and checked, as a run reads it; a filter that chooses no case
/// is the run's error, naming the ids there are.
pub fn list(config: &Config, suites: &[String], filter: Option<&CaseFilter>) -> Result<CaseList, Error> {
    for name in suites {
        crate::suite::find(config, name)?;
    }
    let mut listed = Vec::new();
    let mut left_out = LeftOut::default();
    for (name, suite) in &config.suites {
        if !suites.is_empty() && !suites.contains(name) {
            continue;
        }
        let mut cases = Vec::new();
        let mut suite_cases = 0;
        case::for_each_case(&config.resolve(&suite.cases), &config.root, |loaded| {
            suite_cases += 1;
            let Case { id, tags, .. } = loaded.case;
            if filter.is_some_and(|f| !f.matches(&id, &tags)) {
                left_out.note(name, &id);
                return Ok(());
            }
            let file = loaded.file.strip_prefix(&config.root).unwrap_or(&loaded.file);
            cases.push(ListedCase {
                id,
                tags,
                file: file.display().to_string(),
                line: loaded.line,
            });
            Ok(())
        })?;
        if filter.is_some() && cases.is_empty() {
            continue;
        }
        listed.push(ListedSuite {
            suite: name.clone(),
            suite_cases,
            cases,
        });
    }
    if let (Some(filter), true) = (filter, listed.is_empty()) {
        return Err(left_out.nothing_matched(filter));
    }
    Ok(CaseList {
        schema_version: CASE_LIST_SCHEMA_VERSION,
        kind: "case_list",
        suites: listed,
    })
}

impl CaseList {
    pub fn json(&self) -> Result<String, Error> {
        crate::report::pretty_json(self, "the case list")
    }

    /// One line a case, `suite/id  tags  file:line`, ready for `grep` and `cut`; then the
    /// count. Ids and tags come from case files: shown on one line each, never acted on.
    pub fn terminal(&self) -> String {
        let rows: Vec<(String, String, String)> = self
            .suites
            .iter()
            .flat_map(|suite| {
                suite.cases.iter().map(move |case| {
                    let place = match case.line {
                        Some(line) => format!("{}:{line}", case.file),
                        None => case.file.clone(),
                    };
                    (
                        one_line(&format!("{}/{}", suite.suite, case.id)).into_owned(),
                        one_line(&case.tags.join(",")).into_owned(),
                        one_line(&place).into_owned(),
                    )
                })
            })
            .collect();
        // Aligned up to a width; a longer name or tag list pushes its own line only.
        let width = |column: fn(&(String, String, String)) -> &String| {
            rows.iter()
                .map(|row| column(row).chars().count())
                .max()
                .unwrap_or(0)
                .min(48)
        };
        let (name_width, tags_width) = (width(|row| &row.0), width(|row| &row.1));
        let mut out = String::new();
        for (name, tags, place) in &rows {
            let _ = writeln!(out, "{name:<name_width$}  {tags:<tags_width$}  {place}");
        }
        let listed: usize = self.suites.iter().map(|s| s.cases.len()).sum();
        let total: usize = self.suites.iter().map(|s| s.suite_cases).sum();
        let suites = self.suites.len();
        let plural = if suites == 1 { "" } else { "s" };
        let _ = match listed == total {
            true => writeln!(out, "\n{listed} cases in {suites} suite{plural}"),
            false => writeln!(out, "\n{listed} of {total} cases in {suites} suite{plural}"),
        };
        out
    }
}
