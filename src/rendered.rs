//! `run --show-prompts`: each chosen case's prompt as the run would render it, found without
//! calling anything. What the model is asked is the first thing to read when it answers
//! wrong, and a template's output (a `tojson` of a finding, a loop over resources) is hard
//! to picture from the template.

use std::fmt::Write as _;
use std::sync::Arc;

use serde::Serialize;

use crate::error::Error;
use crate::excerpt::{one_line, printable_lines};
use crate::prompt::RenderedPrompt;

/// The shape of `run --show-prompts --format json`; a rename or removal bumps it.
pub const RENDERED_SCHEMA_VERSION: u32 = 1;

/// The rendered prompts of a selection, suite by suite, prompt version by version, in case
/// order. A prompt does not depend on the model it goes to, so each is shown once.
#[derive(Debug, Clone, Serialize)]
pub struct Rendered {
    pub schema_version: u32,
    /// `rendered_prompts`: what this JSON is, beside run records and dry runs.
    pub kind: &'static str,
    pub prompts: Vec<RenderedCase>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RenderedCase {
    pub suite: String,
    /// The prompt version: `default` (the suite's own), a variant's name or a file.
    pub prompt: String,
    pub case: String,
    /// The messages, response schema, tools and tool choice, as the providers' requests carry
    /// them (each provider in its own wire format).
    pub rendered: Arc<RenderedPrompt>,
}

impl Rendered {
    pub fn new(prompts: Vec<RenderedCase>) -> Rendered {
        Rendered {
            schema_version: RENDERED_SCHEMA_VERSION,
            kind: "rendered_prompts",
            prompts,
        }
    }

    pub fn json(&self) -> Result<String, Error> {
        crate::report::pretty_json(self, "the rendered prompts")
    }

    /// Each prompt under a rule naming its suite, version and case: its messages whole, under
    /// their roles, then the response schema and the tools by name.
    pub fn terminal(&self) -> String {
        let mut out = String::new();
        for shown in &self.prompts {
            let version = match shown.prompt.as_str() {
                crate::config::DEFAULT_PROMPT => String::new(),
                other => format!("@{}", one_line(other)),
            };
            let _ = writeln!(
                out,
                "──── {}{version} / {} ────",
                one_line(&shown.suite),
                one_line(&shown.case)
            );
            // A finding is input: its escape sequences are shown, never acted on.
            out.push_str(&printable_lines(&shown.rendered.text()));
            if let Some(schema) = &shown.rendered.response_schema {
                let _ = writeln!(out, "\n[response schema] {}", one_line(&schema.name));
            }
            out.push('\n');
        }
        out
    }
}
