//! The `judge` grader: another model reads the answer against a rubric and says pass or fail,
//! with its reason. The rubric is a prompt file whose templates see the case's variables, the
//! `answer` being judged and the case's `expect.judge.criteria` (as `criteria`, "" if none); the
//! judge answers `{"verdict": "pass" | "fail", "reason": "…"}` (give the rubric that response
//! schema to constrain it).
//!
//! The judge is a grader that asks for a call (see [`super::Assessment`]): the engine makes it
//! through the cache like any other call, so an unchanged answer is never judged twice, and
//! only for answers every other grader of the case passed (a wrong answer needs no second
//! opinion).

use std::sync::Arc;

use serde_json::{Map, Value};

use super::{strip_code_fence, Grade};
use crate::case::LoadedCase;
use crate::config::{Config, ModelConfig};
use crate::error::Error;
use crate::excerpt::excerpt;
use crate::prompt::Prompt;
use crate::provider::{ProviderKind, Request, Response};

/// The judge of a suite: the rubric and the model that reads it.
#[derive(Debug, Clone)]
pub struct JudgeGrader {
    rubric: Arc<Prompt>,
    model: ModelConfig,
    provider_name: String,
    provider_kind: ProviderKind,
}

impl JudgeGrader {
    /// The judge `model` of `config` reading the rubric at `rubric` (a path of the config).
    pub fn new(config: &Config, model: &str, rubric: &std::path::Path) -> Result<JudgeGrader, Error> {
        let model = config.models[model].clone();
        Ok(JudgeGrader {
            rubric: Arc::new(Prompt::load(&config.resolve(rubric))?),
            provider_kind: config.providers[&model.provider].kind(),
            provider_name: model.provider.clone(),
            model,
        })
    }

    /// The provider the judge's calls go to.
    pub fn provider(&self) -> &str {
        &self.provider_name
    }

    /// The judge call for one answer of one case. The judge samples once, with its own seed:
    /// the same answer always gets the same (cached) verdict.
    pub fn request(&self, loaded: &LoadedCase, answer: &Response) -> Result<Request, Error> {
        let mut judged = loaded.clone();
        judged.case.vars = JudgeGrader::rubric_vars(
            &loaded.case.vars,
            answer.text.as_deref().unwrap_or_default(),
            &loaded.case.expect,
        );
        Ok(Request {
            provider: self.provider_kind,
            model: self.model.model.clone(),
            prompt: Arc::new(self.rubric.render(&judged)?),
            params: self.model.sampling_params(None, 0),
            sample_index: 0,
            // The same answer gets the same verdict in any epoch.
            epoch: None,
        })
    }

    /// `expect.judge`, when present, is `{"criteria": "…"}`.
    pub fn check_expect(expect: &Value) -> Result<(), String> {
        match expect.get("judge") {
            None => Ok(()),
            Some(Value::Object(map)) if map.keys().all(|k| k == "criteria") => match map.get("criteria") {
                None | Some(Value::String(_)) => Ok(()),
                Some(_) => Err("`judge.criteria` must be a string".into()),
            },
            Some(_) => Err("`expect.judge` is {\"criteria\": \"what a good answer says\"}".into()),
        }
    }

    /// The variables the rubric is rendered with: the case's, plus `answer` and `criteria`.
    pub fn rubric_vars(case_vars: &Map<String, Value>, answer: &str, expect: &Value) -> Map<String, Value> {
        let mut vars = case_vars.clone();
        vars.insert("answer".into(), Value::String(answer.to_string()));
        let criteria = expect["judge"]["criteria"].as_str().unwrap_or_default();
        vars.insert("criteria".into(), Value::String(criteria.to_string()));
        vars
    }

    /// Grade from the judge's response.
    pub fn verdict(judgment: &Response) -> Grade {
        let text = judgment.text.as_deref().unwrap_or_default();
        let parsed: Result<Value, _> = serde_json::from_str(strip_code_fence(text));
        let Ok(value) = parsed else {
            return Grade::invalid(format!("the judge's verdict is not JSON: {}", excerpt(text, 80)));
        };
        let reason = value["reason"].as_str().unwrap_or("no reason given");
        match value["verdict"].as_str().map(str::to_ascii_lowercase).as_deref() {
            Some("pass") => Grade::correct(excerpt(reason, 120)),
            Some("fail") => Grade::wrong(excerpt(reason, 120)),
            _ => Grade::invalid(format!("the judge gave no pass/fail verdict: {}", excerpt(text, 80))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grader::Outcome;
    use serde_json::json;

    #[test]
    fn verdicts_become_grades_with_the_judges_reason() {
        let pass = JudgeGrader::verdict(&Response::from_text(r#"{"verdict": "pass", "reason": "平易で正確"}"#));
        assert_eq!((pass.outcome, pass.reason.as_str()), (Outcome::Correct, "平易で正確"));
        let fail = JudgeGrader::verdict(&Response::from_text(
            "```json\n{\"verdict\": \"FAIL\", \"reason\": \"専門用語だらけ\"}\n```",
        ));
        assert_eq!((fail.outcome, fail.reason.as_str()), (Outcome::Wrong, "専門用語だらけ"));
        assert_eq!(
            JudgeGrader::verdict(&Response::from_text("pass")).outcome,
            Outcome::Invalid
        );
        assert_eq!(
            JudgeGrader::verdict(&Response::from_text(r#"{"verdict": "maybe"}"#)).outcome,
            Outcome::Invalid
        );
    }

    #[test]
    fn the_rubric_sees_the_answer_and_the_criteria() {
        let vars = json!({"finding": {"Type": "Recon:EC2/PortProbeUnprotectedPort"}});
        let expect = json!({"judge": {"criteria": "ポートを閉じるよう勧める"}});
        let rendered = JudgeGrader::rubric_vars(vars.as_object().unwrap(), "説明文", &expect);
        assert_eq!(rendered["answer"], "説明文");
        assert_eq!(rendered["criteria"], "ポートを閉じるよう勧める");
        assert_eq!(rendered["finding"]["Type"], "Recon:EC2/PortProbeUnprotectedPort");
        assert!(JudgeGrader::check_expect(&json!({"judge": {"criteria": 5}})).is_err());
        assert!(JudgeGrader::check_expect(&json!({"judge": {"rubric": "x"}})).is_err());
        assert!(JudgeGrader::check_expect(&json!({})).is_ok());
    }
}
