//! `--case` and `--tag`: run some of a suite's cases, as `cargo test NAME` runs some tests.
//!
//! While a prompt is being fixed, its author re-asks the one case that went wrong, not the
//! suite. A case is kept when its id matches any `--case` pattern (an id, or a pattern where
//! `*` stands for any run of characters and `?` for one) and it carries any `--tag`; with
//! both flags, both must hold. Cases that are left out are never rendered, so a case still
//! being written elsewhere in the suite does not stop the run; every case file is still read
//! and checked.
//!
//! The result is a subset's accuracy, not the suite's: the record says which filter chose
//! it and how many cases the suite has, and a baseline or a gate never takes it.

use serde::{Deserialize, Serialize};

use crate::error::Error;

/// Patterns and tags a filter may hold, and a pattern's longest: far beyond any real use,
/// and what keeps a filter's cost per case small.
const MAX_ITEMS: usize = 256;
const MAX_CHARS: usize = 256;

/// Which cases a run keeps.
#[derive(Debug, Clone)]
pub struct CaseFilter {
    /// The `--case` values as given, and what each matches with.
    texts: Vec<String>,
    patterns: Vec<Pattern>,
    tags: Vec<String>,
}

#[derive(Debug, Clone)]
enum Pattern {
    Exact(String),
    /// `*` and `?` as regex, every other character literal; anchored at both ends. The regex
    /// crate matches in time linear in the id, whatever the pattern.
    Wildcard(regex::Regex),
}

impl Pattern {
    fn new(text: &str) -> Result<Pattern, Error> {
        if !text.contains(['*', '?']) {
            return Ok(Pattern::Exact(text.to_string()));
        }
        let mut expression = String::from("^(?s:");
        let mut literal = [0u8; 4];
        for c in text.chars() {
            match c {
                '*' => expression.push_str(".*"),
                '?' => expression.push('.'),
                c => expression.push_str(&regex::escape(c.encode_utf8(&mut literal))),
            }
        }
        expression.push_str(")$");
        regex::Regex::new(&expression)
            .map(Pattern::Wildcard)
            .map_err(|e| Error::usage(format!("--case `{text}` cannot be matched: {e}")))
    }

    fn matches(&self, id: &str) -> bool {
        match self {
            Pattern::Exact(exact) => exact == id,
            Pattern::Wildcard(regex) => regex.is_match(id),
        }
    }
}

/// What a record keeps of the filter that chose its cases.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Filtered {
    /// The `--case` patterns, as given.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub case: Vec<String>,
    /// The `--tag` tags.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tag: Vec<String>,
    /// How many cases the filter chose, of the `suite_cases` the suite has.
    pub chosen: usize,
    pub suite_cases: usize,
}

impl Filtered {
    /// "3 of 50 cases, chosen by --case 'p7': this subset's accuracy, not the suite's".
    pub fn summary(&self) -> String {
        format!(
            "{} of {} cases, chosen by {}: this subset's accuracy, not the suite's",
            self.chosen,
            self.suite_cases,
            self.flags()
        )
    }

    /// The flags as a shell would take them again: `--case 'p*' --tag 'ssh'`.
    pub fn flags(&self) -> String {
        flags(&self.case, &self.tag)
    }
}

/// `--case` and `--tag` values as a shell would take them again: `--case 'p*' --tag 'ssh'`.
fn flags(cases: &[String], tags: &[String]) -> String {
    let quoted = |flag: &str, value: &str| format!("{flag} '{}'", value.replace('\'', "'\\''"));
    let mut flags: Vec<String> = cases.iter().map(|p| quoted("--case", p)).collect();
    flags.extend(tags.iter().map(|t| quoted("--tag", t)));
    flags.join(" ")
}

impl CaseFilter {
    /// The flags that made this filter, as a shell would take them again.
    pub fn flags(&self) -> String {
        flags(&self.texts, &self.tags)
    }

    /// The filter of `--case patterns` and `--tag tags`; `None` when neither is given.
    pub fn new(patterns: &[String], tags: &[String]) -> Result<Option<CaseFilter>, Error> {
        if patterns.is_empty() && tags.is_empty() {
            return Ok(None);
        }
        if patterns.len() + tags.len() > MAX_ITEMS {
            return Err(Error::usage(format!(
                "{} --case and --tag values given; at most {MAX_ITEMS} are taken",
                patterns.len() + tags.len()
            ))
            .with_hint("choose the cases with a pattern (`--case 'sg-*'`) or a tag the cases share"));
        }
        for (flag, text) in patterns
            .iter()
            .map(|p| ("--case", p))
            .chain(tags.iter().map(|t| ("--tag", t)))
        {
            if text.is_empty() || text.chars().count() > MAX_CHARS || text.chars().any(char::is_control) {
                return Err(Error::usage(format!(
                    "{flag} `{}` is empty, longer than {MAX_CHARS} characters or holds a control character",
                    crate::excerpt::excerpt(&text.escape_debug().to_string(), 80)
                ))
                .with_hint("give a case id (or a pattern with `*` and `?`) or a tag as it is in the case files"));
            }
        }
        Ok(Some(CaseFilter {
            texts: patterns.to_vec(),
            patterns: patterns.iter().map(|p| Pattern::new(p)).collect::<Result<_, _>>()?,
            tags: tags.to_vec(),
        }))
    }

    /// Whether the run keeps the case of `id` with `tags`.
    pub fn matches(&self, id: &str, tags: &[String]) -> bool {
        let by_id = self.patterns.is_empty() || self.patterns.iter().any(|p| p.matches(id));
        let by_tag = self.tags.is_empty() || tags.iter().any(|t| self.tags.contains(t));
        by_id && by_tag
    }

    /// What a result of the `chosen` cases this filter chose among `suite_cases` records.
    pub fn filtered(&self, chosen: usize, suite_cases: usize) -> Filtered {
        Filtered {
            case: self.texts.clone(),
            tag: self.tags.clone(),
            chosen,
            suite_cases,
        }
    }
}

/// Some of the ids a filter left out, per suite: what the error says when it chose nothing,
/// so that a mistyped id meets the ids there are.
#[derive(Debug, Default)]
pub struct LeftOut {
    /// Per suite, in config order: its first few ids, and how many it has.
    suites: Vec<(String, Vec<String>, usize)>,
}

impl LeftOut {
    /// Ids named per suite when nothing matched.
    const NAMED: usize = 3;

    /// `id`, a case of `suite`, was left out.
    pub fn note(&mut self, suite: &str, id: &str) {
        if self.suites.last().is_none_or(|(name, _, _)| name != suite) {
            self.suites.push((suite.to_string(), Vec::new(), 0));
        }
        if let Some((_, ids, count)) = self.suites.last_mut() {
            if ids.len() < Self::NAMED {
                ids.push(crate::excerpt::excerpt(id, 64));
            }
            *count += 1;
        }
    }

    /// The error of a filter that chose no case of the selected suites.
    pub fn nothing_matched(&self, filter: &CaseFilter) -> Error {
        let message = format!("no case of the selected suites is chosen by {}", filter.flags());
        let mut hint: Vec<String> = self
            .suites
            .iter()
            .map(|(suite, ids, count)| {
                let more = count - ids.len();
                let ids = ids.iter().map(|id| format!("`{id}`")).collect::<Vec<_>>().join(", ");
                match more {
                    0 => format!("`{suite}` has {ids}"),
                    more => format!("`{suite}` has {ids} and {more} more"),
                }
            })
            .collect();
        hint.push("--case takes an id, or a pattern with `*` and `?` (quote it: --case 'sg-*'); --tag a tag of the case files".into());
        Error::NothingSelected {
            message,
            hint: Some(hint.join("; ")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether `f` keeps the case `id` with `tags`.
    fn hit(f: &CaseFilter, id: &str, tags: &[&str]) -> bool {
        let tags: Vec<String> = tags.iter().map(|t| t.to_string()).collect();
        f.matches(id, &tags)
    }

    fn filter(patterns: &[&str], tags: &[&str]) -> CaseFilter {
        let owned = |items: &[&str]| items.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        CaseFilter::new(&owned(patterns), &owned(tags))
            .expect("a valid filter")
            .expect("a filter")
    }

    #[test]
    fn an_id_without_wildcards_matches_itself_only() {
        let f = filter(&["p1"], &[]);
        assert!(hit(&f, "p1", &[]));
        // Not a substring match: `p1` is not `p10`.
        assert!(!hit(&f, "p10", &[]));
        assert!(!hit(&f, "xp1", &[]));
    }

    #[test]
    fn wildcards_stand_for_runs_and_single_characters_and_nothing_else_is_special() {
        let f = filter(&["sg-*", "p?"], &[]);
        assert!(hit(&f, "sg-", &[]));
        assert!(hit(&f, "sg-open-22\nnext", &[]), "`*` crosses any character");
        assert!(hit(&f, "p7", &[]));
        assert!(!hit(&f, "p77", &[]));
        assert!(!hit(&f, "xsg-1", &[]), "anchored at the start");
        // Regex syntax in an id is literal.
        let dotted = filter(&["a.b*"], &[]);
        assert!(hit(&dotted, "a.b-1", &[]));
        assert!(!hit(&dotted, "axb-1", &[]));
        let brackets = filter(&["[x]+?"], &[]);
        assert!(hit(&brackets, "[x]+1", &[]));
        assert!(!hit(&brackets, "x1", &[]));
        // Multi-byte characters are one `?`.
        assert!(hit(&filter(&["検?"], &[]), "検知", &[]));
    }

    #[test]
    fn patterns_are_alternatives_and_tags_must_also_hold() {
        let f = filter(&["a*", "b"], &["ssh"]);
        assert!(hit(&f, "a1", &["ssh", "ec2"]));
        assert!(hit(&f, "b", &["ssh"]));
        assert!(!hit(&f, "a1", &["ec2"]), "the tag is missing");
        assert!(!hit(&f, "c", &["ssh"]), "the id matches no pattern");
        let tags_only = filter(&[], &["s3", "iam"]);
        assert!(hit(&tags_only, "x", &["iam"]));
        assert!(!hit(&tags_only, "x", &[]));
    }

    #[test]
    fn no_flag_is_no_filter_and_bad_values_name_the_flag() {
        assert!(CaseFilter::new(&[], &[]).expect("valid").is_none());
        for (patterns, tags, flag) in [
            (vec![String::new()], vec![], "--case"),
            (vec![], vec!["a\u{7}".to_string()], "--tag"),
            (vec!["x".repeat(MAX_CHARS + 1)], vec![], "--case"),
        ] {
            let error = CaseFilter::new(&patterns, &tags).expect_err("refused");
            assert!(error.to_string().contains(flag), "{error}");
            assert!(error.hint().is_some());
        }
        let many: Vec<String> = (0..=MAX_ITEMS).map(|i| i.to_string()).collect();
        assert!(CaseFilter::new(&many, &[]).is_err());
    }

    #[test]
    fn a_hostile_pattern_matches_in_linear_time() {
        // `*a*a*…b` against a long run of `a` is exponential for a backtracking matcher.
        let pattern = format!("{}b", "*a".repeat(100));
        let f = filter(&[&pattern], &[]);
        assert!(!hit(&f, &"a".repeat(10_000), &[]));
    }

    #[test]
    fn the_record_keeps_the_flags_as_given_and_says_it_is_a_subset() {
        let filtered = filter(&["p*"], &["ssh"]).filtered(3, 50);
        assert_eq!(filtered.case, ["p*"]);
        assert_eq!(filtered.tag, ["ssh"]);
        assert_eq!(
            filtered.summary(),
            "3 of 50 cases, chosen by --case 'p*' --tag 'ssh': this subset's accuracy, not the suite's"
        );
        let json = serde_json::to_value(&filtered).expect("serializes");
        assert_eq!(
            json,
            serde_json::json!({"case": ["p*"], "tag": ["ssh"], "chosen": 3, "suite_cases": 50})
        );
    }
}
