//! The `falco` grader (seed 004): the answer is a Falco rules file — YAML, possibly inside a
//! ```` ``` ```` fence among prose — whose rules are complete (rule, desc, condition, output,
//! priority), whose conditions use only macros defined in the answer or in the suite's base
//! rules file, whose MITRE technique tags agree with its tactic tags, and which carries the tags
//! the case requires (`expect.falco.required_tags`) and mentions what it must detect
//! (`expect.falco.condition_mentions`, found in a condition, or in a macro or list the answer
//! defines).
//!
//! Lists are referenced inside `in (…)`, where Falco reads an unknown bare word as a literal
//! value; an undefined item with an underscore (`crypto_miners`) is taken for a missing list.

use std::collections::BTreeSet;

use serde_json::Value;
use serde_yaml_ng::Value as Yaml;

use super::mitre;
use super::Grade;
use crate::excerpt::excerpt;

/// Falco's rule priorities.
const PRIORITIES: &[&str] = &[
    "EMERGENCY",
    "ALERT",
    "CRITICAL",
    "ERROR",
    "WARNING",
    "NOTICE",
    "INFORMATIONAL",
    "INFO",
    "DEBUG",
];

/// Words of the condition language that are neither fields nor macros.
const KEYWORDS: &[&str] = &[
    "and",
    "or",
    "not",
    "in",
    "intersects",
    "pmatch",
    "exists",
    "true",
    "false",
];

/// Operators after which the next token is a value.
const COMPARISONS: &[&str] = &[
    "=",
    "==",
    "!=",
    "<",
    "<=",
    ">",
    ">=",
    "contains",
    "icontains",
    "bcontains",
    "startswith",
    "bstartswith",
    "endswith",
    "glob",
    "iglob",
    "regex",
];

/// Macros and lists a rules file defines.
#[derive(Debug, Clone, Default)]
pub struct Definitions {
    macros: BTreeSet<String>,
    lists: BTreeSet<String>,
}

impl Definitions {
    /// The macros and lists of a rules file (the base rules).
    pub fn of_rules_file(text: &str) -> Result<Definitions, String> {
        let items = parse_items(text)?;
        let mut definitions = Definitions::default();
        for item in &items {
            definitions.add(item);
        }
        Ok(definitions)
    }

    fn add(&mut self, item: &Yaml) {
        if let Some(name) = item.get("macro").and_then(Yaml::as_str) {
            self.macros.insert(name.to_string());
        }
        if let Some(name) = item.get("list").and_then(Yaml::as_str) {
            self.lists.insert(name.to_string());
        }
    }
}

/// Grades a Falco rules answer.
#[derive(Debug, Clone)]
pub struct FalcoGrader {
    base: Definitions,
}

#[derive(Debug)]
pub struct Expected {
    required_tags: Vec<String>,
    mentions: Vec<String>,
}

impl FalcoGrader {
    pub fn new(base: Definitions) -> FalcoGrader {
        FalcoGrader { base }
    }

    /// What a case's `expect.falco` asks of the rules.
    pub fn expected(expect: &Value) -> Result<Expected, String> {
        let Some(spec) = expect.get("falco") else {
            return Ok(Expected {
                required_tags: Vec::new(),
                mentions: Vec::new(),
            });
        };
        let spec = spec.as_object().ok_or("`expect.falco` must be an object")?;
        if let Some(key) = spec
            .keys()
            .find(|k| *k != "required_tags" && *k != "condition_mentions")
        {
            return Err(format!(
                "unknown key `falco.{key}` (use required_tags, condition_mentions)"
            ));
        }
        let strings = |key: &str| -> Result<Vec<String>, String> {
            match spec.get(key) {
                None => Ok(Vec::new()),
                Some(Value::Array(items)) => items
                    .iter()
                    .map(|item| {
                        item.as_str()
                            .map(str::to_string)
                            .ok_or_else(|| format!("falco.{key} must hold strings"))
                    })
                    .collect(),
                Some(_) => Err(format!("falco.{key} must be an array of strings")),
            }
        };
        Ok(Expected {
            required_tags: strings("required_tags")?,
            mentions: strings("condition_mentions")?,
        })
    }

    /// Grade one answer against a case's `expect`.
    pub fn grade(&self, text: &str, expect: &Value) -> Grade {
        match Self::expected(expect) {
            Ok(expected) => self.grade_expected(text, &expected),
            Err(reason) => Grade::invalid(reason),
        }
    }

    /// Grade one answer against the [`FalcoGrader::expected`] requirements.
    pub fn grade_expected(&self, text: &str, expected: &Expected) -> Grade {
        let rules = fenced_block(text);
        if rules.len() > MAX_ANSWER_BYTES {
            return Grade::invalid(format!(
                "{} KiB of rules: more than an answer can hold ({} KiB at most)",
                rules.len() >> 10,
                MAX_ANSWER_BYTES >> 10
            ));
        }
        let items = match parse_items(rules) {
            Ok(items) => items,
            Err(reason) => return Grade::invalid(reason),
        };
        let mut defined = self.base.clone();
        for item in &items {
            defined.add(item);
        }
        let rules: Vec<&Yaml> = items
            .iter()
            .filter(|item| item.get("rule").is_some() && !is_append(item))
            .collect();
        if rules.is_empty() {
            return Grade::wrong("no rule in the answer");
        }
        let mut conditions = Vec::new();
        let mut all_tags = BTreeSet::new();
        for rule in &rules {
            let name = rule.get("rule").and_then(Yaml::as_str).unwrap_or("?");
            for key in ["desc", "condition", "output", "priority"] {
                let present = rule
                    .get(key)
                    .is_some_and(|v| v.as_str().is_some_and(|s| !s.trim().is_empty()));
                if !present {
                    return Grade::wrong(format!("rule `{name}` has no `{key}`"));
                }
            }
            let priority = rule.get("priority").and_then(Yaml::as_str).unwrap_or_default();
            if !PRIORITIES.iter().any(|p| p.eq_ignore_ascii_case(priority)) {
                return Grade::wrong(format!("rule `{name}`: priority `{priority}` is not a Falco priority"));
            }
            let tags = tags_of(rule);
            if let Err(reason) = check_mitre(&tags) {
                return Grade::wrong(format!("rule `{name}`: {reason}"));
            }
            all_tags.extend(tags);
            conditions.push((
                format!("rule `{name}`"),
                rule.get("condition").and_then(Yaml::as_str).unwrap_or_default(),
            ));
        }
        for item in &items {
            if let (Some(name), Some(condition)) = (
                item.get("macro").and_then(Yaml::as_str),
                item.get("condition").and_then(Yaml::as_str),
            ) {
                conditions.push((format!("macro `{name}`"), condition));
            }
        }
        for (owner, condition) in &conditions {
            if let Err(reason) = check_references(condition, &defined) {
                return Grade::wrong(format!("{owner}: {reason}"));
            }
        }
        let missing: Vec<&String> = expected
            .required_tags
            .iter()
            .filter(|tag| !all_tags.contains(&normalize_tag(tag)))
            .collect();
        if !missing.is_empty() {
            let missing: Vec<String> = missing.iter().map(|t| format!("`{t}`")).collect();
            return Grade::wrong(format!("missing tag {}", missing.join(", ")));
        }
        let mut haystack = conditions
            .iter()
            .map(|(_, c)| c.to_lowercase())
            .collect::<Vec<_>>()
            .join("\n");
        for items in items
            .iter()
            .filter_map(|item| item.get("items").and_then(Yaml::as_sequence))
        {
            for item in items.iter().filter_map(Yaml::as_str) {
                haystack.push('\n');
                haystack.push_str(&item.to_lowercase());
            }
        }
        if let Some(absent) = expected.mentions.iter().find(|m| !haystack.contains(&m.to_lowercase())) {
            return Grade::wrong(format!("no condition mentions `{absent}`"));
        }
        Grade::correct(format!("{} complete rule(s), tags agree", rules.len()))
    }
}

fn is_append(item: &Yaml) -> bool {
    item.get("append").and_then(Yaml::as_bool) == Some(true) || item.get("override").is_some()
}

/// The YAML of the answer: the first fenced block if there is one, else the whole text.
fn fenced_block(text: &str) -> &str {
    let Some(start) = text.find("```") else {
        return text;
    };
    let after = &text[start + 3..];
    let body = after.split_once('\n').map_or("", |(_, body)| body);
    match body.find("```") {
        Some(end) => &body[..end],
        None => body,
    }
}

/// The longest rules an answer may give. Real answers are a few KB; the YAML parser takes about
/// a microsecond a byte on deeply nested input, so an answer of megabytes of brackets (within
/// `max_response_bytes`) would hold a grader for seconds per sample.
const MAX_ANSWER_BYTES: usize = 256 << 10;

/// A rules file is a YAML sequence of maps.
fn parse_items(text: &str) -> Result<Vec<Yaml>, String> {
    let value: Yaml = serde_yaml_ng::from_str(text).map_err(|e| format!("not YAML ({e}): {}", excerpt(text, 80)))?;
    match value {
        Yaml::Sequence(items) if items.iter().all(Yaml::is_mapping) => Ok(items),
        Yaml::Mapping(_) => Ok(vec![value]),
        _ => Err(format!("not a Falco rules list: {}", excerpt(text, 80))),
    }
}

/// A rule's tags, normalized: lowercase; `tactic=impact` → `mitre_impact`;
/// `technique=T1529` / `technique_id=T1529` → `t1529`.
fn tags_of(rule: &Yaml) -> BTreeSet<String> {
    rule.get("tags")
        .and_then(Yaml::as_sequence)
        .map(|tags| tags.iter().filter_map(Yaml::as_str).map(normalize_tag).collect())
        .unwrap_or_default()
}

fn normalize_tag(tag: &str) -> String {
    let tag = tag.trim().to_lowercase();
    if let Some((key, value)) = tag.split_once('=') {
        let value = value.trim().replace([' ', '-'], "_");
        return match key.trim() {
            "tactic" => format!("mitre_{value}"),
            "technique" | "technique_id" => value,
            _ => tag.clone(),
        };
    }
    tag
}

fn is_technique(tag: &str) -> bool {
    let Some(digits) = tag.strip_prefix('t') else {
        return false;
    };
    let (id, sub) = digits.split_once('.').unwrap_or((digits, "000"));
    id.len() == 4 && id.bytes().all(|b| b.is_ascii_digit()) && sub.len() == 3 && sub.bytes().all(|b| b.is_ascii_digit())
}

/// Every technique tag must share a tactic with the rule's tactic tags.
fn check_mitre(tags: &BTreeSet<String>) -> Result<(), String> {
    let tactics: Vec<&str> = tags
        .iter()
        .filter_map(|t| t.strip_prefix("mitre_"))
        .filter(|t| mitre::TACTICS.contains(t))
        .collect();
    for tag in tags.iter().filter(|t| is_technique(t)) {
        let id = tag.to_uppercase();
        let Some((name, belongs)) = mitre::technique(&id) else {
            return Err(format!("{id} is not an ATT&CK Enterprise technique promptgate knows"));
        };
        if !tactics.is_empty() && !belongs.iter().any(|t| tactics.contains(t)) {
            let wanted: Vec<String> = belongs.iter().map(|t| format!("mitre_{t}")).collect();
            let given: Vec<String> = tactics.iter().map(|t| format!("mitre_{t}")).collect();
            return Err(format!(
                "{id} ({name}) belongs with {}, not {}",
                wanted.join(" or "),
                given.join(", ")
            ));
        }
    }
    Ok(())
}

/// A condition's tokens: quoted strings dropped, operators and parentheses separated.
fn tokens(condition: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut chars = condition.chars().peekable();
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut Vec<String>| {
        if !word.is_empty() {
            out.push(std::mem::take(word));
        }
    };
    while let Some(c) = chars.next() {
        match c {
            '"' | '\'' => {
                flush(&mut word, &mut out);
                for inner in chars.by_ref() {
                    if inner == c {
                        break;
                    }
                }
                out.push("\"\"".into());
            }
            '(' | ')' | ',' => {
                flush(&mut word, &mut out);
                out.push(c.to_string());
            }
            '=' | '!' | '<' | '>' => {
                flush(&mut word, &mut out);
                let mut op = c.to_string();
                if chars.peek() == Some(&'=') {
                    op.push('=');
                    chars.next();
                }
                out.push(op);
            }
            c if c.is_whitespace() => flush(&mut word, &mut out),
            c => word.push(c),
        }
    }
    flush(&mut word, &mut out);
    out
}

/// Every macro a condition uses is defined; so is every list-like item of an `in (…)`.
fn check_references(condition: &str, defined: &Definitions) -> Result<(), String> {
    let tokens = tokens(condition);
    let mut depth_of_values: Option<usize> = None;
    let mut depth = 0usize;
    for (index, token) in tokens.iter().enumerate() {
        let previous = index.checked_sub(1).map(|i| tokens[i].to_lowercase());
        match token.as_str() {
            "(" => {
                if depth_of_values.is_none()
                    && previous
                        .as_deref()
                        .is_some_and(|p| matches!(p, "in" | "intersects" | "pmatch"))
                {
                    depth_of_values = Some(depth);
                }
                depth += 1;
                continue;
            }
            ")" => {
                depth = depth.saturating_sub(1);
                if depth_of_values == Some(depth) {
                    depth_of_values = None;
                }
                continue;
            }
            "," | "\"\"" => continue,
            _ => {}
        }
        let lower = token.to_lowercase();
        if depth_of_values.is_some() {
            let list_like = token.contains('_') && !token.contains('/') && !token.contains('.');
            if list_like && !defined.lists.contains(token.as_str()) && !defined.macros.contains(token.as_str()) {
                return Err(format!(
                    "uses list `{token}`, defined neither in the answer nor in the base rules"
                ));
            }
            continue;
        }
        let is_value = previous.as_deref().is_some_and(|p| COMPARISONS.contains(&p));
        let is_field = token.contains('.') || token.contains('[');
        let is_literal = token.starts_with(|c: char| c.is_ascii_digit() || c == '-' || c == '/' || c == '%');
        if is_value
            || is_field
            || is_literal
            || KEYWORDS.contains(&lower.as_str())
            || COMPARISONS.contains(&lower.as_str())
        {
            continue;
        }
        if !defined.macros.contains(token.as_str()) {
            let hint = if defined.lists.contains(token.as_str()) {
                " (a list, used outside `in (…)`)"
            } else {
                ""
            };
            return Err(format!(
                "uses macro `{token}`{hint}, defined neither in the answer nor in the base rules"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grader::Outcome;
    use serde_json::json;

    const BASE: &str = "
- macro: spawned_process
  condition: (evt.type in (execve, execveat) and evt.dir=<)
- macro: container
  condition: (container.id != host)
- list: shell_binaries
  items: [ash, bash, csh, ksh, sh, tcsh, zsh, dash]
";

    fn grader() -> FalcoGrader {
        FalcoGrader::new(Definitions::of_rules_file(BASE).unwrap())
    }

    fn expect() -> Value {
        json!({"falco": {"required_tags": ["mitre_impact", "T1529"], "condition_mentions": ["shutdown", "reboot"]}})
    }

    const GOOD: &str = r#"Here is the rule:

```yaml
- list: shutdown_binaries
  items: [shutdown, reboot, halt, poweroff]
- rule: Shutdown or reboot in container
  desc: A shutdown or reboot command ran in a container.
  condition: >
    spawned_process and container
    and proc.name in (shutdown_binaries)
    and not proc.args contains "--help"
  output: "System shutdown/reboot in a container (command=%proc.cmdline container=%container.id)"
  priority: WARNING
  tags: [container, mitre_impact, T1529]
```

It detects shutdown and reboot."#;

    #[test]
    fn a_complete_rule_with_agreeing_tags_passes() {
        let grade = grader().grade(GOOD, &expect());
        assert_eq!(grade.outcome, Outcome::Correct, "{}", grade.reason);
    }

    #[test]
    fn the_seed_004_mistake_is_caught() {
        // ChatGPT's answer in seed 004 tagged the shutdown rule with Cloud Service Dashboard.
        let bad = GOOD.replace("T1529]", "T1538]");
        let grade = grader().grade(&bad, &expect());
        assert_eq!(grade.outcome, Outcome::Wrong);
        assert_eq!(
            grade.reason,
            "rule `Shutdown or reboot in container`: T1538 (Cloud Service Dashboard) belongs with mitre_discovery, not mitre_impact"
        );
        // The seed's corrected answer uses key=value tags.
        let tagged = GOOD.replace(
            "[container, mitre_impact, T1529]",
            "[tactic=impact, technique=T1529, technique_id=T1529]",
        );
        assert_eq!(grader().grade(&tagged, &expect()).outcome, Outcome::Correct);
    }

    #[test]
    fn incomplete_rules_and_undefined_macros_and_lists_are_wrong() {
        let no_output = GOOD.replace(
            "  output: \"System shutdown/reboot in a container (command=%proc.cmdline container=%container.id)\"\n",
            "",
        );
        assert_eq!(
            grader().grade(&no_output, &expect()).reason,
            "rule `Shutdown or reboot in container` has no `output`"
        );
        let priority = GOOD.replace("priority: WARNING", "priority: URGENT");
        assert!(grader()
            .grade(&priority, &expect())
            .reason
            .contains("priority `URGENT`"));
        let macro_missing = GOOD.replace("spawned_process and container", "spawned_process and container_started");
        assert_eq!(
            grader().grade(&macro_missing, &expect()).reason,
            "rule `Shutdown or reboot in container`: uses macro `container_started`, defined neither in the answer nor in the base rules"
        );
        let list_missing = GOOD.replace("in (shutdown_binaries)", "in (halt_binaries)");
        assert!(grader()
            .grade(&list_missing, &expect())
            .reason
            .contains("uses list `halt_binaries`"));
        let missing_tag = GOOD.replace("T1529]", "]");
        assert_eq!(grader().grade(&missing_tag, &expect()).reason, "missing tag `T1529`");
        let unknown = GOOD.replace("T1529]", "T1529, T9999]");
        assert!(grader()
            .grade(&unknown, &expect())
            .reason
            .contains("T9999 is not an ATT&CK"));
    }

    #[test]
    fn values_literals_and_fields_are_not_macros() {
        let defined = Definitions::of_rules_file(BASE).unwrap();
        for condition in [
            "evt.type = execve and proc.name = shutdown",
            "evt.type in (execve, execveat) and evt.argv[1] contains \"reboot now\"",
            "spawned_process and proc.name in (shell_binaries) and fd.sport >= 1024",
            "(evt.time > \"2022-12-31T02:00:00.000Z\") and evt.argc=3",
            "proc.pname exists and not proc.pname in (systemd, init)",
        ] {
            assert!(
                check_references(condition, &defined).is_ok(),
                "{condition}: {:?}",
                check_references(condition, &defined)
            );
        }
        let err = check_references("shell_binaries and spawned_process", &defined).unwrap_err();
        assert!(err.contains("a list, used outside"), "{err}");
    }

    #[test]
    fn unreadable_answers_are_invalid() {
        assert_eq!(grader().grade("rule: [unclosed", &expect()).outcome, Outcome::Invalid);
        let nested = format!("{}{}", "[".repeat(MAX_ANSWER_BYTES), "]".repeat(MAX_ANSWER_BYTES));
        let too_long = grader().grade(&nested, &expect());
        assert_eq!(
            (too_long.outcome, too_long.reason.as_str()),
            (
                Outcome::Invalid,
                "512 KiB of rules: more than an answer can hold (256 KiB at most)"
            )
        );
        assert_eq!(
            grader().grade("just prose, no rule", &expect()).outcome,
            Outcome::Invalid
        );
        assert_eq!(
            grader()
                .grade("```yaml\n- list: x\n  items: [a]\n```", &expect())
                .reason,
            "no rule in the answer"
        );
        assert!(FalcoGrader::expected(&json!({"falco": {"tags": []}})).is_err());
    }
}
