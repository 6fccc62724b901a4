//! `--redact`: a run record's answers with identifying values masked the way `record` masks a
//! recorded case (account ids, ARNs, addresses, access key ids, e-mail addresses and the
//! config's `[[record.redact]]` patterns), because reports get attached to CI runs and pull
//! requests. Each case is one mapping: the same account is the same placeholder in its prompt,
//! its answers and its baseline's answers.
//!
//! Case ids, suite and model names are the project's own and stay as they are.

use serde_json::Value;

use crate::record::redact::Redactor;
use crate::run_record::{self, CaseResult, RunRecord};

/// Mask every answer, prompt, reason and expectation of `record`.
pub fn redact(record: &mut RunRecord, redactor: &Redactor) {
    for result in &mut record.results {
        for case in &mut result.per_case {
            redact_case(case, redactor);
        }
    }
}

/// A text of a case's result to mask: a miss's is shared with other misses.
enum Text<'a> {
    Own(&'a mut String),
    Shared(&'a mut run_record::Text),
}

impl Text<'_> {
    fn as_str(&self) -> &str {
        match self {
            Text::Own(text) => text,
            Text::Shared(text) => text,
        }
    }
}

fn redact_case(case: &mut CaseResult, redactor: &Redactor) {
    let mut texts: Vec<Text> = Vec::new();
    for miss in &mut case.misses {
        texts.push(Text::Shared(&mut miss.reason));
        texts.push(Text::Shared(&mut miss.excerpt));
    }
    if let Some(detail) = &mut case.detail {
        texts.push(Text::Own(&mut detail.about));
        if let Some(notes) = &mut detail.notes {
            texts.push(Text::Own(notes));
        }
        texts.push(Text::Own(&mut detail.expected));
        texts.push(Text::Own(&mut detail.prompt));
        for answer in &mut detail.answers {
            texts.push(Text::Own(&mut answer.reason));
            texts.push(Text::Own(&mut answer.text));
        }
    }
    if let Some(past) = &mut case.baseline {
        for group in &mut past.answers {
            texts.push(Text::Own(&mut group.reason));
            texts.push(Text::Own(&mut group.excerpt));
        }
    }
    let mut values: Vec<Value> = texts
        .iter()
        .map(|text| Value::String(text.as_str().to_string()))
        .collect();
    let mut refs: Vec<&mut Value> = values.iter_mut().collect();
    redactor.redact(&mut refs);
    for (text, value) in texts.into_iter().zip(values) {
        if let Value::String(masked) = value {
            match text {
                Text::Own(text) => *text = masked,
                // Masked, the text is this miss's own.
                Text::Shared(text) => *text = masked.into(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::answers::{AnswerGroup, CaseDetail, PastCase, SampleAnswer};
    use crate::grader::Outcome;

    #[test]
    fn one_account_is_one_placeholder_across_prompt_answers_misses_and_baseline() {
        let mut record = crate::testing::record(vec![crate::testing::result("triage", &[1])]);
        let case = &mut record.results[0].per_case[0];
        // Two misses sharing one text, as misses of a run do.
        let shared = run_record::Text::from("wrong about 210987654328");
        case.misses[0].excerpt = shared.clone();
        case.misses[1].excerpt = shared;
        case.detail = Some(Box::new(CaseDetail {
            prompt: "finding: arn:aws:iam::210987654328:user/alice from 203.0.113.9".into(),
            answers: vec![SampleAnswer {
                sample: 0,
                outcome: Outcome::Correct,
                reason: "answered `suppress`".into(),
                text: "account 210987654328 (alice@example.com) is a sandbox".into(),
                variant: None,
            }],
            ..CaseDetail::default()
        }));
        case.baseline = Some(Box::new(PastCase {
            correct: 1,
            samples: 1,
            answers: vec![AnswerGroup {
                count: 1,
                outcome: Outcome::Correct,
                reason: "answered `suppress`".into(),
                excerpt: "210987654328 is a sandbox".into(),
            }],
        }));
        redact(&mut record, &Redactor::default());
        let text = serde_json::to_string(&record.results[0].per_case[0]).unwrap();
        for secret in ["210987654328", "203.0.113.9", "alice@example.com"] {
            assert!(!text.contains(secret), "{secret} left in {text}");
        }
        let case = &record.results[0].per_case[0];
        let detail = case.detail.as_ref().unwrap();
        // The account's placeholder is the same everywhere in the case.
        let placeholder = detail.prompt["finding: arn:aws:iam::".len()..]
            .split(':')
            .next()
            .unwrap()
            .to_string();
        assert!(
            detail.answers[0].text.starts_with(&format!("account {placeholder} (")),
            "{text}"
        );
        assert!(case.baseline.as_ref().unwrap().answers[0]
            .excerpt
            .starts_with(&placeholder));
        assert_eq!(detail.answers[0].reason, "answered `suppress`");
        for miss in &case.misses[..2] {
            assert_eq!(&*miss.excerpt, format!("wrong about {placeholder}"));
        }
    }
}
