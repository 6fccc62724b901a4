//! Graders turn a response into correct, wrong or invalid output, with a reason.
//!
//! Invalid output (unparseable JSON, no label) counts as a wrong sample in accuracy and is also
//! counted on its own, because malformed output is itself a regression users care about.

pub mod facts;
pub mod falco;
pub mod json;
pub mod judge;
pub mod label;
pub mod matcher;
pub mod mitre;
pub mod sections;
pub mod tool_call;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::case::LoadedCase;
use crate::config::{Config, GraderConfig};
use crate::error::Error;
use crate::prompt::Prompt;
use crate::provider::{Request, Response};

/// The verdict on one sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Correct,
    Wrong,
    /// The output could not be read as an answer at all.
    Invalid,
}

/// A graded sample.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Grade {
    pub outcome: Outcome,
    /// Why: what was found versus what was expected.
    pub reason: String,
}

/// The longest reason a grade keeps. A reason often quotes the answer (a label that is not one
/// of the allowed, a function's name, a rule's), and an answer is the provider's to make as
/// long as it likes: a run keeps every miss's reason and every report prints them.
pub const MAX_REASON_CHARS: usize = 400;

impl Grade {
    /// A grade whose reason is on one line (`excerpt::one_line`: it may quote the
    /// answer) and cut at [`MAX_REASON_CHARS`], with an ellipsis.
    pub fn new(outcome: Outcome, reason: impl Into<String>) -> Grade {
        Grade {
            outcome,
            // Cut first: a megabyte reason is not copied to be made printable. A short, plain
            // reason (nearly every one) is neither copied nor reallocated.
            reason: crate::excerpt::into_one_line(crate::excerpt::cut(reason.into(), MAX_REASON_CHARS)),
        }
    }
    pub fn correct(reason: impl Into<String>) -> Grade {
        Grade::new(Outcome::Correct, reason)
    }
    pub fn wrong(reason: impl Into<String>) -> Grade {
        Grade::new(Outcome::Wrong, reason)
    }
    pub fn invalid(reason: impl Into<String>) -> Grade {
        Grade::new(Outcome::Invalid, reason)
    }
}

/// A configured grader.
#[derive(Debug, Clone)]
pub enum Grader {
    Label(label::LabelGrader),
    ToolCall(tool_call::ToolCallGrader),
    Json(json::JsonGrader),
    Sections(sections::SectionsGrader),
    Facts(facts::FactsGrader),
    Falco(falco::FalcoGrader),
    /// Graded from the judge's response, a call it asks the engine for (see [`Assessment`]).
    Judge(judge::JudgeGrader),
}

impl Grader {
    /// Build the grader a suite's config describes, for the suite's prompt. Files the grader
    /// names (a JSON Schema, base rules) are read here, before any call.
    pub fn new(grader: &GraderConfig, prompt: &Prompt, config: &Config) -> Result<Grader, Error> {
        Ok(match grader {
            GraderConfig::Label { field, labels } => {
                Grader::Label(label::LabelGrader::new(field.clone(), labels.clone()))
            }
            GraderConfig::ToolCall => Grader::ToolCall(tool_call::ToolCallGrader::new(
                prompt.tools.iter().map(|tool| tool.name.clone()).collect(),
            )),
            GraderConfig::Json { schema } => {
                let (path, schema) = match schema {
                    Some(file) => {
                        let path = config.resolve(file);
                        let text = crate::fs::read_to_string(&path, "JSON Schema")?;
                        let value = serde_json::from_str(&text).map_err(|e| {
                            Error::invalid("JSON Schema", &path, crate::location::json_location(&e), e.to_string())
                        })?;
                        (path, Some(value))
                    }
                    None => (
                        prompt.path.clone(),
                        prompt.response_schema.as_ref().map(|s| s.schema.clone()),
                    ),
                };
                Grader::Json(json::JsonGrader::new(schema.as_ref()).map_err(|message| {
                    Error::invalid("JSON Schema", &path, String::new(), message)
                        .with_hint("the json grader validates answers against it; see json-schema.org")
                })?)
            }
            GraderConfig::Sections {
                headings,
                severity_heading,
                severities,
            } => Grader::Sections(sections::SectionsGrader::new(
                headings.clone(),
                severity_heading.clone(),
                severities.clone(),
            )),
            GraderConfig::Facts => Grader::Facts(facts::FactsGrader),
            GraderConfig::Falco { base_rules } => {
                let base = match base_rules {
                    Some(file) => {
                        let path = config.resolve(file);
                        let text = crate::fs::read_to_string(&path, "Falco base rules")?;
                        falco::Definitions::of_rules_file(&text).map_err(|message| {
                            Error::invalid("Falco base rules", &path, String::new(), message).with_hint(
                                "a Falco rules file is a YAML list of `- macro:`, `- list:` and `- rule:` items",
                            )
                        })?
                    }
                    None => falco::Definitions::default(),
                };
                Grader::Falco(falco::FalcoGrader::new(base))
            }
            GraderConfig::Judge { model, rubric } => Grader::Judge(judge::JudgeGrader::new(config, model, rubric)?),
        })
    }

    /// The grader's name in reasons when several grade one case.
    pub fn kind(&self) -> &'static str {
        match self {
            Grader::Label(_) => "label",
            Grader::ToolCall(_) => "tool_call",
            Grader::Json(_) => "json",
            Grader::Sections(_) => "sections",
            Grader::Facts(_) => "facts",
            Grader::Falco(_) => "falco",
            Grader::Judge(_) => "judge",
        }
    }

    /// A case's `expect` as this grader reads it, parsed and checked once, before any call;
    /// the error says what is wrong.
    fn expected(&self, expect: &Value) -> Result<Expected, String> {
        Ok(match self {
            Grader::Label(g) => Expected::Label(g.expected(expect)?),
            Grader::ToolCall(g) => Expected::ToolCall(g.expected(expect)?),
            Grader::Json(_) => Expected::Json(Box::new(json::JsonGrader::expected(expect)?)),
            Grader::Sections(g) => Expected::Sections(g.expected(expect)?),
            Grader::Facts(_) => Expected::Facts(Box::new(facts::FactsGrader::expected(expect)?)),
            Grader::Falco(_) => Expected::Falco(Box::new(falco::FalcoGrader::expected(expect)?)),
            Grader::Judge(_) => {
                judge::JudgeGrader::check_expect(expect)?;
                Expected::Judge
            }
        })
    }

    /// Grade one response against what the case expects of this grader; `None` for a grader
    /// that needs a call first (the judge).
    fn grade(&self, response: &Response, expected: &Expected) -> Option<Grade> {
        let text = || response.text.as_deref().unwrap_or_default();
        Some(match (self, expected) {
            (Grader::Judge(_), _) => return None,
            (Grader::Label(g), Expected::Label(label)) => g.grade_expected(response, label),
            (Grader::ToolCall(g), Expected::ToolCall(calls)) => g.grade_expected(response, calls),
            (Grader::Json(g), Expected::Json(fields)) => g.grade_expected(text(), fields),
            (Grader::Sections(g), Expected::Sections(severity)) => g.grade_expected(text(), severity.as_deref()),
            (Grader::Facts(g), Expected::Facts(facts)) => g.grade_expected(text(), facts),
            (Grader::Falco(g), Expected::Falco(rules)) => g.grade_expected(text(), rules),
            // Expectations are made by the same graders, in the same order.
            (grader, _) => Grade::invalid(format!("internal: no `{}` expectation for this case", grader.kind())),
        })
    }
}

/// What a case expects of one grader, parsed from its `expect` once.
#[derive(Debug)]
// The larger expectations are boxed: a run holds one per case and grader, and a label's
// would otherwise take the room of the largest (224 bytes).
enum Expected {
    Label(String),
    ToolCall(Vec<tool_call::ExpectedCall>),
    Json(Box<matcher::FieldMatchers>),
    Sections(Option<String>),
    Facts(Box<facts::Facts>),
    Falco(Box<falco::Expected>),
    /// The judge reads `expect.judge.criteria` into its rubric.
    Judge,
}

/// What a case expects of each grader of its suite, in grader order: made by
/// [`Graders::expectations`] once per case, read by [`Graders::assess`] for every sample.
#[derive(Debug)]
pub struct Expectations(Box<[Expected]>);

/// What the graders of a suite make of an answer.
#[derive(Debug)]
pub enum Assessment {
    Graded(Grade),
    /// Every grader that reads the answer itself passed it, and one asks a model about it (the
    /// judge): make the call, then give its response to [`Graders::answer`].
    Ask(Question),
}

/// A call a grader asks for, with what the graders found so far.
#[derive(Debug)]
pub struct Question {
    pub request: Request,
    /// The provider to ask.
    pub provider: String,
    /// The grades so far, by grader index.
    grades: Vec<(usize, Grade)>,
    /// The grader that asked.
    asker: usize,
}

/// The graders of a suite: a sample is correct only if every one of them says so.
#[derive(Debug, Clone)]
pub struct Graders(Vec<Grader>);

impl Graders {
    /// Build every grader of a suite.
    pub fn new(configs: &[GraderConfig], prompt: &Prompt, config: &Config) -> Result<Graders, Error> {
        configs
            .iter()
            .map(|g| Grader::new(g, prompt, config))
            .collect::<Result<Vec<_>, _>>()
            .map(Graders)
    }

    /// A case's `expect` parsed for every grader; the error says which grader refused it.
    pub fn expectations(&self, expect: &Value) -> Result<Expectations, String> {
        self.0
            .iter()
            .map(|grader| grader.expected(expect).map_err(|e| self.prefixed(grader, &e)))
            .collect::<Result<_, _>>()
            .map(Expectations)
    }

    /// Check a case's `expect` against every grader.
    pub fn check_expect(&self, expect: &Value) -> Result<(), String> {
        self.expectations(expect).map(drop)
    }

    /// Whether grading reads the case itself (a judge renders its rubric with the case's
    /// variables), beyond the expectations parsed from it.
    pub fn reads_cases(&self) -> bool {
        self.asks_a_judge()
    }

    /// Whether a judge model grades the answers (a call of its own per answer).
    pub fn asks_a_judge(&self) -> bool {
        self.0.iter().any(|grader| matches!(grader, Grader::Judge(_)))
    }

    /// Check before any call what grading `loaded` will need: a judge's rubric must render
    /// for it (with an empty answer), so that it fails now and not after every answer is paid.
    pub fn prepare(&self, loaded: &LoadedCase) -> Result<(), Error> {
        for grader in &self.0 {
            if let Grader::Judge(judge) = grader {
                judge.request(loaded, &Response::from_text(""))?;
            }
        }
        Ok(())
    }

    /// Grade an answer of `loaded` (whose [`Graders::expectations`] are `expected`) once by
    /// every grader that reads it; if all of them pass it and a judge is to be asked, the
    /// question for it. Only a judge reads the case: without one ([`Graders::reads_cases`]),
    /// a run need not keep it.
    pub fn assess(
        &self,
        response: &Response,
        expected: &Expectations,
        loaded: Option<&LoadedCase>,
    ) -> Result<Assessment, Error> {
        let grades = (0..)
            .zip(self.0.iter().zip(&expected.0))
            .filter_map(|(index, (grader, expected))| grader.grade(response, expected).map(|grade| (index, grade)))
            .collect();
        self.next(grades, response, loaded)
    }

    /// Continue an assessment with the response to its question.
    pub fn answer(
        &self,
        mut question: Question,
        judgment: &Response,
        response: &Response,
        loaded: Option<&LoadedCase>,
    ) -> Result<Assessment, Error> {
        question
            .grades
            .push((question.asker, judge::JudgeGrader::verdict(judgment)));
        self.next(question.grades, response, loaded)
    }

    /// Ask the next judge while every grade so far passes; otherwise the combined grade.
    fn next(
        &self,
        grades: Vec<(usize, Grade)>,
        response: &Response,
        loaded: Option<&LoadedCase>,
    ) -> Result<Assessment, Error> {
        if grades.iter().all(|(_, grade)| grade.outcome == Outcome::Correct) {
            let unasked = (0..).zip(&self.0).find_map(|(index, grader)| match grader {
                Grader::Judge(judge) if grades.iter().all(|(graded, _)| *graded != index) => Some((index, judge)),
                _ => None,
            });
            if let Some((asker, judge)) = unasked {
                let loaded = loaded.ok_or_else(|| Error::internal("a judge's case was not kept"))?;
                return Ok(Assessment::Ask(Question {
                    request: judge.request(loaded, response)?,
                    provider: judge.provider().to_string(),
                    grades,
                    asker,
                }));
            }
        }
        Ok(Assessment::Graded(self.combine(&grades)))
    }

    /// Invalid output from any grader makes the sample invalid; otherwise the first wrong
    /// verdict makes it wrong; a correct sample's reason joins every grader's (those that read
    /// the answer first, then the judges).
    fn combine(&self, grades: &[(usize, Grade)]) -> Grade {
        for outcome in [Outcome::Invalid, Outcome::Wrong] {
            if let Some((index, grade)) = grades.iter().find(|(_, grade)| grade.outcome == outcome) {
                return Grade::new(outcome, self.prefixed(&self.0[*index], &grade.reason));
            }
        }
        let reasons: Vec<String> = grades
            .iter()
            .map(|(index, grade)| self.prefixed(&self.0[*index], &grade.reason))
            .collect();
        Grade::correct(reasons.join("; "))
    }

    /// With several graders, a reason says which one gave it.
    fn prefixed(&self, grader: &Grader, reason: &str) -> String {
        if self.0.len() > 1 {
            format!("{}: {reason}", grader.kind())
        } else {
            reason.to_string()
        }
    }
}

/// Strip a Markdown code fence (```json … ```) around a model's answer, if there is one.
pub fn strip_code_fence(text: &str) -> &str {
    let trimmed = text.trim();
    let Some(rest) = trimmed.strip_prefix("```") else {
        return trimmed;
    };
    let body = rest.split_once('\n').map_or("", |(_, body)| body);
    body.trim_end().strip_suffix("```").unwrap_or(body).trim()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The judge through the ordinary path: the label grader reads the answer once; a wrong
    /// answer is graded without asking; a right one becomes a question for the judge's model,
    /// whose verdict completes the grade.
    #[test]
    fn a_judge_is_asked_only_about_answers_the_other_graders_passed() {
        let dir = tempfile::tempdir().unwrap();
        let rubric = dir.path().join("judge.toml");
        std::fs::write(
            &rubric,
            "schema_version = 1\nuser = \"Judge {{ answer }} against {{ criteria }}\"\n",
        )
        .unwrap();
        let config = Config::parse(&dir.path().join("promptgate.toml"), crate::testing::CONFIG).unwrap();
        let prompt = Prompt::parse(std::path::Path::new("p.toml"), "schema_version = 1\nuser = \"x\"\n").unwrap();
        let configs = [
            GraderConfig::Judge {
                model: "m".into(),
                rubric: rubric.clone(),
            },
            GraderConfig::Label {
                field: None,
                labels: vec!["suppress".into(), "notify".into()],
            },
        ];
        let graders = Graders::new(&configs, &prompt, &config).unwrap();
        let loaded = crate::testing::loaded(
            "c1",
            serde_json::json!({"label": "notify", "judge": {"criteria": "names the port"}}),
        );
        let expected = graders.expectations(&loaded.case.expect).unwrap();
        let wrong = Response::from_text("suppress");
        match graders.assess(&wrong, &expected, Some(&loaded)).unwrap() {
            Assessment::Graded(grade) => assert_eq!(
                (grade.outcome, grade.reason.as_str()),
                (Outcome::Wrong, "label: answered `suppress`, expected `notify`")
            ),
            Assessment::Ask(question) => panic!("asked about a wrong answer: {question:?}"),
        }
        let right = Response::from_text("notify");
        let Assessment::Ask(question) = graders.assess(&right, &expected, Some(&loaded)).unwrap() else {
            panic!("a right answer must go to the judge");
        };
        assert_eq!(question.provider, "local");
        assert_eq!(
            &*question.request.prompt.messages[0].content,
            "Judge notify against names the port"
        );
        let verdict = Response::from_text(r#"{"verdict": "fail", "reason": "no port"}"#);
        match graders.answer(question, &verdict, &right, Some(&loaded)).unwrap() {
            Assessment::Graded(grade) => assert_eq!(
                (grade.outcome, grade.reason.as_str()),
                (Outcome::Wrong, "judge: no port")
            ),
            Assessment::Ask(question) => panic!("one judge, asked twice: {question:?}"),
        }
    }

    #[test]
    fn combined_graders_pass_only_together_and_say_which_failed() {
        let graders = Graders(vec![
            Grader::Json(json::JsonGrader::new(None).unwrap()),
            Grader::Facts(facts::FactsGrader),
        ]);
        let expect = serde_json::json!({"fields": {"action": "none"}, "facts": {"required": ["EC2.19"]}});
        let loaded = crate::testing::loaded("c1", expect);
        let expected = graders.expectations(&loaded.case.expect).unwrap();
        let grade = |text: &str| match graders
            .assess(&Response::from_text(text), &expected, Some(&loaded))
            .unwrap()
        {
            Assessment::Graded(grade) => grade,
            Assessment::Ask(question) => panic!("no judge to ask: {question:?}"),
        };
        let both = grade(r#"{"action": "none", "note": "EC2.19"}"#);
        assert_eq!(both.outcome, Outcome::Correct);
        assert_eq!(
            both.reason,
            "json: JSON with every expected field; facts: all 1 required facts, no forbidden one"
        );
        let one = grade(r#"{"action": "none", "note": "IAM.6"}"#);
        assert_eq!(
            (one.outcome, one.reason.as_str()),
            (Outcome::Wrong, "facts: missing `EC2.19`")
        );
        // Invalid output outranks a wrong verdict from another grader.
        let invalid = grade("none");
        assert_eq!(invalid.outcome, Outcome::Invalid);
        assert!(invalid.reason.starts_with("json: not JSON"), "{}", invalid.reason);
        let err = graders.check_expect(&serde_json::json!({"fields": {}})).unwrap_err();
        assert!(err.starts_with("facts: "), "{err}");
    }

    #[test]
    fn fences_are_stripped() {
        assert_eq!(strip_code_fence("```json\n{\"a\": 1}\n```"), "{\"a\": 1}");
        assert_eq!(strip_code_fence("  {\"a\": 1} "), "{\"a\": 1}");
        assert_eq!(strip_code_fence("```\nx\n```\n"), "x");
        assert_eq!(strip_code_fence("```json\n{\"a\": 1}"), "{\"a\": 1}");
    }
}
