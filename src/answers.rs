//! What each sample answered, and what a case is about, as reports show them: the pull-request
//! comment puts a regressed case's baseline and candidate answers side by side, the HTML report
//! lists every sample, and a baseline keeps its most common answers so that the past can be
//! shown after the cache that held it is gone.
//!
//! Everything here is cut to a stated size: answers, prompts and findings are input, and a
//! report of a large suite must stay a file a browser opens.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::case::Case;
use crate::excerpt::excerpt;
use crate::grader::Outcome;
use crate::prompt::RenderedPrompt;
use crate::provider::Response;

/// The longest answer kept per sample, in characters.
pub const ANSWER_CHARS: usize = 4_000;
/// The longest grader's reason kept per sample.
pub const REASON_CHARS: usize = 500;
/// The longest rendered prompt kept per case.
pub const PROMPT_CHARS: usize = 20_000;
/// The longest "what it checks" and "expected" texts.
pub const ABOUT_CHARS: usize = 300;
/// What a baseline keeps per case: its most common answers, each cut to this many characters,
/// with the grader's reason cut the same way. Two groups of two 160-character texts: at most
/// 640 characters of answers per case line (about 2 KB of Japanese text).
pub const BASELINE_GROUPS: usize = 2;
pub const BASELINE_EXCERPT_CHARS: usize = 160;

/// One graded sample: what the model answered and what the grader made of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SampleAnswer {
    pub sample: u32,
    pub outcome: Outcome,
    pub reason: String,
    /// The answer's text (tool calls as `name(arguments)`), whitespace kept, cut to
    /// [`ANSWER_CHARS`].
    pub text: String,
    /// The robustness variant this sample answered (its payload or change), in a family.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

impl SampleAnswer {
    /// The answer of `response`, graded `outcome` for `reason`.
    pub fn new(sample: u32, outcome: Outcome, reason: &str, response: &Response) -> SampleAnswer {
        SampleAnswer {
            sample,
            outcome,
            reason: cut(reason, REASON_CHARS),
            text: cut(&answer_text(response), ANSWER_CHARS),
            variant: None,
        }
    }
}

/// What a report needs to show a case: what it checks, what it expects, the prompt the model
/// saw, and every graded sample. Kept only when a report shows answers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaseDetail {
    /// Rule text, finding title, control id or finding type: whichever the case's input has.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub about: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notes: Option<String>,
    /// The case's `expect`, as compact JSON.
    #[serde(default)]
    pub expected: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// The rendered prompt, message by message.
    #[serde(default)]
    pub prompt: String,
    /// Every graded sample, in sample order.
    #[serde(default)]
    pub answers: Vec<SampleAnswer>,
}

impl CaseDetail {
    /// What reports show of `case` rendered as `prompt`; the answers come from the tally.
    pub fn of(case: &Case, prompt: &RenderedPrompt, answers: Vec<SampleAnswer>) -> CaseDetail {
        CaseDetail {
            about: about(case),
            notes: case.notes.as_deref().map(|n| excerpt(n, ABOUT_CHARS)),
            expected: excerpt(&case.expect.to_string(), ABOUT_CHARS),
            tags: case.tags.clone(),
            prompt: prompt_text(prompt),
            answers,
        }
    }
}

/// Samples that got the same grade for the same reason: "answered `notify`, expected
/// `suppress`" four times, with the first of those answers as the example.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnswerGroup {
    pub count: u32,
    pub outcome: Outcome,
    pub reason: String,
    /// The first answer of the group (lowest sample), one line.
    pub excerpt: String,
}

/// The answers grouped by outcome and reason, most samples first (ties: the group seen first),
/// each example cut to `chars` characters on one line.
pub fn groups(answers: &[SampleAnswer], chars: usize) -> Vec<AnswerGroup> {
    let mut sorted: Vec<&SampleAnswer> = answers.iter().collect();
    sorted.sort_by_key(|a| a.sample);
    let mut groups: Vec<AnswerGroup> = Vec::new();
    for answer in sorted {
        match groups
            .iter_mut()
            .find(|g| g.outcome == answer.outcome && g.reason == answer.reason)
        {
            Some(group) => group.count += 1,
            None => groups.push(AnswerGroup {
                count: 1,
                outcome: answer.outcome,
                reason: answer.reason.clone(),
                excerpt: excerpt(&answer.text, chars),
            }),
        }
    }
    // Stable: equal counts keep the order of their first sample.
    groups.sort_by_key(|group| std::cmp::Reverse(group.count));
    groups
}

/// What a baseline keeps of a case's answers: its [`BASELINE_GROUPS`] largest groups, reasons
/// and examples cut to [`BASELINE_EXCERPT_CHARS`].
pub fn baseline_groups(answers: &[SampleAnswer]) -> Vec<AnswerGroup> {
    let mut kept = groups(answers, BASELINE_EXCERPT_CHARS);
    kept.truncate(BASELINE_GROUPS);
    for group in &mut kept {
        group.reason = excerpt(&group.reason, BASELINE_EXCERPT_CHARS);
    }
    kept
}

/// What the baseline had for one case, next to the run's (set by `gate`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PastCase {
    pub correct: u32,
    pub samples: u32,
    /// Its most common answers; empty for a baseline written before they were kept.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub answers: Vec<AnswerGroup>,
}

/// A response as a reader sees it: its text, then each tool call as `name(arguments)`.
pub fn answer_text(response: &Response) -> String {
    let mut text = response.text.clone().unwrap_or_default();
    for call in &response.tool_calls {
        if !text.is_empty() {
            text.push('\n');
        }
        text.push_str(&format!("{}({})", call.name, call.arguments));
    }
    text
}

/// The rendered prompt as text ([`RenderedPrompt::text`]), cut to [`PROMPT_CHARS`].
pub fn prompt_text(prompt: &RenderedPrompt) -> String {
    cut(&prompt.text(), PROMPT_CHARS)
}

/// What a case checks, from its variables in order: each text variable (a rule, a chat
/// message, a request), and of each finding-like object its control id, type and title. Cut to
/// [`ABOUT_CHARS`].
pub fn about(case: &Case) -> String {
    let mut parts: Vec<String> = Vec::new();
    for value in case.vars.values() {
        match value {
            Value::String(text) => parts.push(excerpt(text, ABOUT_CHARS)),
            Value::Object(_) | Value::Array(_) => {
                let finding = finding_summary(value);
                if !finding.is_empty() {
                    parts.push(finding);
                }
            }
            _ => {}
        }
        if parts.iter().map(String::len).sum::<usize>() > 4 * ABOUT_CHARS {
            break;
        }
    }
    excerpt(&parts.join(" — "), ABOUT_CHARS)
}

/// "EC2.19 · Software and Configuration Checks/… · Security groups should not allow …" for an
/// ASFF finding (or a `{"Findings": [...]}` batch: its first), "Recon:EC2/PortProbe… · title"
/// for a native GuardDuty finding (`Type`/`Title` as GetFindings returns them, `type`/`title` as
/// the console exports them), and the same keys in any object that has them.
fn finding_summary(value: &Value) -> String {
    let finding = match value.get("Findings").or_else(|| value.get("findings")) {
        Some(Value::Array(items)) => items.first().unwrap_or(value),
        _ => value,
    };
    let keys: [&[&str]; 3] = [
        &["SecurityControlId", "ControlId", "controlId"],
        &["Types", "Type", "type"],
        &["Title", "title"],
    ];
    let mut parts = Vec::new();
    for names in keys {
        if let Some(found) = find_key(finding, names, 2) {
            let text = match found {
                Value::String(text) => text.clone(),
                Value::Array(items) => items.first().and_then(Value::as_str).unwrap_or_default().to_string(),
                _ => String::new(),
            };
            if !text.is_empty() && !parts.contains(&text) {
                parts.push(text);
            }
        }
    }
    parts.join(" · ")
}

/// The value of the first of `names` found in `value`'s objects, breadth first, no deeper than
/// `depth` levels (a finding nests its control id under `Compliance` or `ProductFields`).
fn find_key<'a>(value: &'a Value, names: &[&str], depth: usize) -> Option<&'a Value> {
    let mut level: Vec<&Value> = vec![value];
    for _ in 0..=depth {
        for object in level.iter().filter_map(|v| v.as_object()) {
            if let Some(found) = names.iter().find_map(|name| object.get(*name)) {
                return Some(found);
            }
        }
        level = level
            .iter()
            .filter_map(|v| v.as_object())
            .flat_map(|o| o.values())
            .filter(|v| v.is_object())
            .collect();
    }
    None
}

/// `text` cut to `limit` characters, whitespace kept, with how much was left out.
pub fn cut(text: &str, limit: usize) -> String {
    match text.char_indices().nth(limit) {
        Some((index, _)) => {
            let left = text[index..].chars().count();
            format!("{}… ({left} more characters)", &text[..index])
        }
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn answer(sample: u32, outcome: Outcome, reason: &str, text: &str) -> SampleAnswer {
        SampleAnswer {
            sample,
            outcome,
            reason: reason.into(),
            text: text.into(),
            variant: None,
        }
    }

    #[test]
    fn answers_group_by_grade_and_reason_most_samples_first() {
        let wrong = "answered `notify`, expected `suppress`";
        let answers = [
            answer(3, Outcome::Wrong, wrong, "{\"decision\": \"notify\",\n \"why\": \"b\"}"),
            answer(
                0,
                Outcome::Correct,
                "answered `suppress`",
                "{\"decision\": \"suppress\"}",
            ),
            answer(1, Outcome::Wrong, wrong, "{\"decision\": \"notify\",\n \"why\": \"a\"}"),
            answer(2, Outcome::Invalid, "not JSON", "oops"),
        ];
        let found = groups(&answers, 20);
        let summary: Vec<(u32, Outcome, &str)> =
            found.iter().map(|g| (g.count, g.outcome, g.excerpt.as_str())).collect();
        // The wrong group's example is its lowest sample (1), on one line, cut at 20 characters.
        assert_eq!(
            summary,
            [
                (2, Outcome::Wrong, "{\"decision\": \"notify…"),
                (1, Outcome::Correct, "{\"decision\": \"suppre…"),
                (1, Outcome::Invalid, "oops"),
            ]
        );
        // A baseline keeps two groups, reasons cut too.
        let long = "x".repeat(400);
        let kept = baseline_groups(&[
            answer(0, Outcome::Wrong, &long, &long),
            answers[1].clone(),
            answers[3].clone(),
        ]);
        assert_eq!(kept.len(), BASELINE_GROUPS);
        assert_eq!(kept[0].reason.chars().count(), BASELINE_EXCERPT_CHARS + 1);
        assert!(kept[0].reason.ends_with('…'));
    }

    #[test]
    fn a_case_says_what_it_checks_from_its_rule_and_finding() {
        let case: Case = serde_json::from_value(json!({
            "id": "c",
            "vars": {
                "rule": "AutoScaling.2 は EKS のノードグループなら抑制する",
                "finding": {"Findings": [{
                    "Title": "Auto Scaling group should cover multiple Availability Zones",
                    "Types": ["Software and Configuration Checks/Industry and Regulatory Standards"],
                    "Compliance": {"SecurityControlId": "AutoScaling.2", "Status": "FAILED"},
                    "Resources": [{"Tags": {"title": "attacker text"}}]
                }]},
                "count": 3
            },
            "expect": {"label": "suppress"}
        }))
        .unwrap();
        assert_eq!(
            about(&case),
            "AutoScaling.2 は EKS のノードグループなら抑制する — AutoScaling.2 · \
             Software and Configuration Checks/Industry and Regulatory Standards · \
             Auto Scaling group should cover multiple Availability Zones"
        );
        let api: Case = serde_json::from_value(json!({
            "id": "a",
            "vars": {"finding": {"Type": "UnauthorizedAccess:EC2/SSHBruteForce", "Title": "198.51.100.23 is performing SSH brute force attacks."}},
            "expect": {}
        }))
        .unwrap();
        assert_eq!(
            about(&api),
            "UnauthorizedAccess:EC2/SSHBruteForce · 198.51.100.23 is performing SSH brute force attacks."
        );
        let guardduty: Case = serde_json::from_value(json!({
            "id": "g",
            "vars": {"finding": {"type": "Recon:EC2/PortProbeUnprotectedPort", "title": "Unprotected port on EC2 instance i-1 is being probed."}},
            "expect": {}
        }))
        .unwrap();
        assert_eq!(
            about(&guardduty),
            "Recon:EC2/PortProbeUnprotectedPort · Unprotected port on EC2 instance i-1 is being probed."
        );
        let huge: Case =
            serde_json::from_value(json!({"id": "h", "vars": {"a": "y".repeat(10_000)}, "expect": {}})).unwrap();
        assert_eq!(about(&huge).chars().count(), ABOUT_CHARS + 1);
    }

    #[test]
    fn cuts_say_how_much_was_left_out() {
        assert_eq!(cut("抑制する\n通知", 4), "抑制する… (3 more characters)");
        assert_eq!(cut("a\n b", 10), "a\n b");
    }
}
