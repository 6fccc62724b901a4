//! Prompts: system and user templates (minijinja, strict undefined) plus an optional response
//! JSON schema, read from a TOML file. A prompt's version is the SHA-256 of its canonical content.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use minijinja::{Environment, UndefinedBehavior};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::case::LoadedCase;
use crate::digest;
use crate::error::{self, Error};
use crate::memory;

/// The prompt file format version this build reads.
///
/// Changelog: 1 — first version (system, user, response_schema, tools, tool_choice).
pub const PROMPT_SCHEMA_VERSION: u32 = 1;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PromptFile {
    #[serde(default = "default_version")]
    schema_version: u32,
    description: Option<String>,
    system: Option<String>,
    user: String,
    response_schema: Option<ResponseSchema>,
    #[serde(default)]
    tools: Vec<ToolDefinition>,
    tool_choice: Option<String>,
}

fn default_version() -> u32 {
    PROMPT_SCHEMA_VERSION
}

/// A JSON schema the answer must follow, sent natively where the provider supports it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ResponseSchema {
    pub name: String,
    #[serde(default)]
    pub strict: bool,
    pub schema: Value,
}

/// A function the model may call, defined once and sent as an OpenAI `function` tool or a
/// Bedrock `toolSpec`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ToolDefinition {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// JSON Schema of the arguments (an object schema).
    pub parameters: Value,
}

/// Whether and which tool the model must call.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ToolChoice {
    /// The model decides (OpenAI `auto`, Bedrock `auto`).
    Auto,
    /// The model must call some tool (OpenAI `required`, Bedrock `any`).
    Required,
    /// The model must call this tool (OpenAI `{"type": "function", …}`, Bedrock `tool`).
    Tool(String),
}

/// A loaded prompt with its templates compiled.
#[derive(Debug)]
pub struct Prompt {
    pub path: PathBuf,
    pub description: Option<String>,
    /// SHA-256 of the canonical content: the prompt's version.
    pub sha256: String,
    /// Shared by every rendering of the prompt: a schema can be kilobytes, and a suite renders
    /// thousands of cases.
    pub response_schema: Option<Arc<ResponseSchema>>,
    pub tools: Vec<ToolDefinition>,
    pub tool_choice: Option<ToolChoice>,
    environment: Environment<'static>,
    has_system: bool,
    /// What rendering `system` (0) and `user` (1) needs besides the case, worked out once.
    roles: [RoleTemplate; 2],
}

/// What every render of one role's template needs besides the case: worked out at its first
/// render rather than at each (a replay renders every case of a suite).
#[derive(Debug, Default)]
struct RoleTemplate {
    /// The variables the template reads that are not globals, sorted.
    reads: OnceLock<Vec<String>>,
    /// The message printed if a render passes its memory budget, before and after the case's
    /// name (see [`Prompt::over_budget`]).
    over_budget: OnceLock<(String, String)>,
    /// The message of a template that reads no variable: the same for every case (a system
    /// prompt, often), so rendered once.
    constant: OnceLock<Arc<String>>,
}

/// A case's template context: its variables and `case_id` (which wins over a variable of that
/// name), serialized without copying the variables.
struct Context<'a> {
    vars: &'a serde_json::Map<String, Value>,
    case_id: &'a str,
}

impl Context<'_> {
    fn contains_key(&self, name: &str) -> bool {
        name == "case_id" || self.vars.contains_key(name)
    }
}

impl Serialize for Context<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let own = self.vars.keys().filter(|k| *k != "case_id").count();
        let mut map = serializer.serialize_map(Some(own + 1))?;
        for (key, value) in self.vars.iter().filter(|(k, _)| *k != "case_id") {
            map.serialize_entry(key, value)?;
        }
        map.serialize_entry("case_id", self.case_id)?;
        map.end()
    }
}

/// One chat message.
///
/// Shared text: a run holds the rendered prompt of every case, and the role's name and a
/// template that reads no variable (a system prompt, often) are the same for all of them.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Message {
    pub role: std::borrow::Cow<'static, str>,
    pub content: Arc<String>,
}

/// A prompt rendered for one case: what goes on the wire, minus the model parameters.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RenderedPrompt {
    pub messages: Vec<Message>,
    pub response_schema: Option<Arc<ResponseSchema>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<ToolDefinition>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<ToolChoice>,
}

impl RenderedPrompt {
    /// The prompt as a person reads it: each message under its role, then the tools it offers.
    pub fn text(&self) -> String {
        let mut text = String::new();
        for message in &self.messages {
            text.push_str(&format!("[{}]\n{}\n\n", message.role, message.content));
        }
        if !self.tools.is_empty() {
            let names: Vec<&str> = self.tools.iter().map(|t| t.name.as_str()).collect();
            text.push_str(&format!("[tools] {}\n", names.join(", ")));
        }
        text.truncate(text.trim_end().len());
        text
    }
}

impl Prompt {
    /// Read, parse and compile a prompt file.
    pub fn load(path: &Path) -> Result<Prompt, Error> {
        let text = crate::fs::read_to_string(path, "prompt")?;
        Self::parse(path, &text)
    }

    /// Parse and compile prompt text; `path` names it in errors.
    pub fn parse(path: &Path, text: &str) -> Result<Prompt, Error> {
        let file: PromptFile = toml::from_str(text).map_err(|err| {
            let location = crate::location::toml_location(text, &err);
            Error::invalid("prompt", path, location, err.message().trim().to_string())
                .with_hint("a prompt file has `user` (and optionally `system`, `description`, `[response_schema]`)")
        })?;
        error::check_schema_version("prompt", path, file.schema_version, PROMPT_SCHEMA_VERSION)?;
        let tool_choice = check_tools(path, &file)?;
        let mut canonical = json!({
            "schema_version": file.schema_version,
            "system": file.system,
            "user": file.user,
            "response_schema": file.response_schema,
        });
        // Only present when used, so that adding tool support left existing versions unchanged.
        if !file.tools.is_empty() {
            canonical["tools"] = json!(file.tools);
            canonical["tool_choice"] = json!(tool_choice);
        }
        let sha256 = digest::sha256_of_json(&canonical);

        let mut environment = Environment::new();
        environment.set_undefined_behavior(UndefinedBehavior::Strict);
        // Prompts are not HTML: never escape.
        environment.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
        environment.set_keep_trailing_newline(true);
        bound(&mut environment);
        let has_system = file.system.is_some();
        if let Some(system) = file.system {
            add_template(&mut environment, path, "system", system)?;
        }
        add_template(&mut environment, path, "user", file.user)?;
        Ok(Prompt {
            path: path.to_path_buf(),
            description: file.description,
            sha256,
            response_schema: file.response_schema.map(Arc::new),
            tools: file.tools,
            tool_choice,
            environment,
            has_system,
            roles: Default::default(),
        })
    }

    /// The variables the templates read (besides `case_id`), sorted.
    pub fn variables(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .environment
            .templates()
            .flat_map(|(_, template)| template.undeclared_variables(false))
            .filter(|name| name != "case_id")
            .collect();
        names.sort();
        names.dedup();
        names
    }

    /// Render the messages for one case. A variable the case does not define is an error naming
    /// the case, the template and the line.
    pub fn render(&self, loaded: &LoadedCase) -> Result<RenderedPrompt, Error> {
        let context = Context {
            vars: &loaded.case.vars,
            case_id: &loaded.case.id,
        };
        let mut values = None;
        let mut messages = Vec::with_capacity(2);
        let roles: &[&str] = if self.has_system {
            &["system", "user"]
        } else {
            &["user"]
        };
        for role in roles {
            let template = self
                .environment
                .get_template(role)
                .map_err(|err| self.template_error(role, &err, None, None))?;
            // Strict undefined still lets a filter such as `tojson` turn a missing variable into
            // `null`, so check every variable the template reads before rendering.
            let reads = self.role(role).reads.get_or_init(|| {
                let mut reads: Vec<String> = template
                    .undeclared_variables(false)
                    .into_iter()
                    .filter(|name| self.environment.globals().all(|(g, _)| g != name))
                    .collect();
                reads.sort();
                reads
            });
            if let Some(name) = reads.iter().find(|name| !context.contains_key(name)) {
                let err = minijinja::Error::new(
                    minijinja::ErrorKind::UndefinedError,
                    format!("variable `{name}` is not defined"),
                );
                let line = first_line_using(template.source(), name);
                return Err(self.template_error(role, &err, line, Some(loaded)));
            }
            let constant = &self.role(role).constant;
            if let Some(content) = constant.get() {
                messages.push(Message {
                    role: std::borrow::Cow::Borrowed(role),
                    content: Arc::clone(content),
                });
                continue;
            }
            // Converted before the budget opens: the case's own data is not the template's doing.
            let values = values.get_or_insert_with(|| minijinja::Value::from_serialize(&context));
            let budget = memory::Budget::open(memory::RENDER_BUDGET, self.over_budget(role, loaded));
            let content = template
                .render(&*values)
                .map_err(|err| self.template_error(role, &err, None, Some(loaded)));
            drop(budget);
            let content = content?;
            if content.len() > MAX_RENDERED_BYTES {
                let err = minijinja::Error::new(
                    minijinja::ErrorKind::InvalidOperation,
                    format!(
                        "the rendered message has {} bytes, more than the {MAX_RENDERED_BYTES} a prompt may have",
                        content.len()
                    ),
                );
                return Err(self.template_error(role, &err, None, Some(loaded)));
            }
            // Not `Arc<str>`: that copies the text, a whole finding (0.6 s in 80,000 renders).
            let content = Arc::new(content);
            if reads.is_empty() {
                let _ = constant.set(Arc::clone(&content));
            }
            messages.push(Message {
                role: std::borrow::Cow::Borrowed(role),
                content,
            });
        }
        Ok(RenderedPrompt {
            messages,
            response_schema: self.response_schema.clone(),
            tools: self.tools.clone(),
            tool_choice: self.tool_choice.clone(),
        })
    }

    /// What rendering `role` needs besides the case.
    fn role(&self, role: &str) -> &RoleTemplate {
        &self.roles[usize::from(role != "system")]
    }

    /// What the process prints if rendering `role` for `loaded` passes its memory budget. It
    /// must be ready before every render, so the parts that do not name the case are made
    /// (and masked) once per role: made whole for each case, they were a tenth of a replay.
    fn over_budget(&self, role: &str, loaded: &LoadedCase) -> String {
        let (head, tail) = self.role(role).over_budget.get_or_init(|| {
            let err = minijinja::Error::new(
                minijinja::ErrorKind::InvalidOperation,
                format!(
                    "the template held more than {} MiB of memory",
                    memory::RENDER_BUDGET >> 20
                ),
            );
            let text = self
                .template_error(role, &err, None, None)
                .with_hint(
                    "a string that doubles (`{% set s = s ~ s %}`) or a `replace` or list `+` inside a loop grows \
                     without bound; build the text in one pass, or render less of the finding",
                )
                .for_terminal(false);
            // The first line is the error, the rest its hint: the case goes at the error's end.
            let end = text.find('\n').unwrap_or(text.len());
            (text[..end].to_string(), text[end..].to_string())
        });
        let case = format!(" while rendering case `{}` from {}", loaded.case.id, loaded.location());
        format!("{head}{}{tail}", crate::secrets::process().mask(&case))
    }

    fn template_error(
        &self,
        role: &str,
        err: &minijinja::Error,
        line: Option<usize>,
        loaded: Option<&LoadedCase>,
    ) -> Error {
        let location = match line.or(err.line()) {
            Some(line) => format!(" (template `{role}`, line {line})"),
            None => format!(" (template `{role}`)"),
        };
        let mut message = err
            .detail()
            .map_or_else(|| err.kind().to_string(), |d| format!("{}: {d}", err.kind()));
        let mut hint = None;
        if let Some(loaded) = loaded {
            message.push_str(&format!(
                " while rendering case `{}` from {}",
                loaded.case.id,
                loaded.location()
            ));
            let mut names: Vec<String> = loaded.case.vars.keys().cloned().collect();
            names.push("case_id".into());
            hint = Some(format!(
                "the case defines: {}; add the missing variable to its `vars` or fix the template",
                names.join(", ")
            ));
        }
        let error = Error::invalid("prompt", &self.path, location, message);
        match hint {
            Some(hint) => error.with_hint(hint),
            None => error,
        }
    }
}

/// Template work per render: a prompt takes hundreds of instructions, a loop over a finding's
/// resources thousands; two nested `range(100000)` loops would take 10^10 and hang a run.
pub const TEMPLATE_FUEL: u64 = 5_000_000;

/// The longest rendered message: 16 MiB, past any context window.
pub const MAX_RENDERED_BYTES: usize = 16 * 1024 * 1024;

/// The widest indentation `tojson` and `indent` may produce: `tojson(indent=100000000)` asked
/// for gigabytes.
const MAX_INDENT: usize = 32;

/// Bound what one template may cost: fuel for its instructions, and the width arguments of the
/// filters that multiply their output by them.
fn bound(environment: &mut Environment<'static>) {
    use minijinja::value::{Kwargs, StringInput};
    environment.set_fuel(Some(TEMPLATE_FUEL));
    let too_wide = |width: usize| {
        minijinja::Error::new(
            minijinja::ErrorKind::InvalidOperation,
            format!("an indentation of {width} is more than the {MAX_INDENT} a prompt may use"),
        )
    };
    environment.add_filter(
        "tojson",
        move |value: &minijinja::Value, indent: Option<minijinja::Value>, kwargs: Kwargs| {
            let width = indent
                .clone()
                .or_else(|| kwargs.peek::<Option<minijinja::Value>>("indent").ok().flatten())
                .and_then(|v| usize::try_from(v).ok());
            if let Some(width) = width.filter(|w| *w > MAX_INDENT) {
                return Err(too_wide(width));
            }
            minijinja::filters::tojson(value, indent, kwargs)
        },
    );
    environment.add_filter(
        "indent",
        move |value: StringInput<'_>,
              width: Option<usize>,
              first: Option<bool>,
              blank: Option<bool>,
              kwargs: Kwargs| {
            let wide = width.or_else(|| kwargs.peek::<Option<usize>>("width").ok().flatten());
            if let Some(width) = wide.filter(|w| *w > MAX_INDENT) {
                return Err(too_wide(width));
            }
            minijinja::filters::indent(value, width, first, blank, kwargs)
        },
    );
}

/// Check tool definitions (names both wire formats accept, object schemas, no duplicates) and
/// resolve `tool_choice`.
fn check_tools(path: &Path, file: &PromptFile) -> Result<Option<ToolChoice>, Error> {
    let invalid = |field: String, message: String, hint: &str| {
        Error::invalid("prompt", path, format!(" (field `{field}`)"), message).with_hint(hint.to_string())
    };
    if file.tools.is_empty() {
        return match &file.tool_choice {
            Some(_) => Err(invalid(
                "tool_choice".into(),
                "`tool_choice` without any `[[tools]]`".into(),
                "define the tools with [[tools]] name, description, parameters",
            )),
            None => Ok(None),
        };
    }
    if file.response_schema.is_some() {
        return Err(invalid(
            "response_schema".into(),
            "a prompt cannot have both `[[tools]]` and `[response_schema]`".into(),
            "on Bedrock the response schema is itself sent as a forced tool; answer through a tool instead",
        ));
    }
    for (index, tool) in file.tools.iter().enumerate() {
        let field = |name: &str| format!("tools[{index}].{name}");
        // OpenAI and Bedrock both accept exactly this alphabet, up to 64 characters.
        let valid_name = !tool.name.is_empty()
            && tool.name.len() <= 64
            && tool
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !valid_name {
            return Err(invalid(
                field("name"),
                format!("tool name `{}` is not 1–64 of a-z, A-Z, 0-9, _ and -", tool.name),
                "OpenAI functions and Bedrock toolSpecs share this naming rule",
            ));
        }
        if file.tools[..index].iter().any(|other| other.name == tool.name) {
            return Err(invalid(
                field("name"),
                format!("tool `{}` is defined twice", tool.name),
                "give each tool a distinct name",
            ));
        }
        if tool.parameters.get("type").and_then(Value::as_str) != Some("object") {
            return Err(invalid(
                field("parameters"),
                format!("the parameters of tool `{}` are not an object schema", tool.name),
                "write parameters = { type = \"object\", properties = { … } } (also for no arguments)",
            ));
        }
    }
    let choice = match file.tool_choice.as_deref() {
        None | Some("auto") => ToolChoice::Auto,
        Some("required") => ToolChoice::Required,
        Some(name) if file.tools.iter().any(|tool| tool.name == name) => ToolChoice::Tool(name.to_string()),
        Some(other) => {
            return Err(invalid(
                "tool_choice".into(),
                format!("`tool_choice = \"{other}\"` is neither auto, required nor a defined tool"),
                "use \"auto\" (the default), \"required\" or the name of one of the [[tools]]",
            ))
        }
    };
    Ok(Some(choice))
}

/// The 1-based line of the first `{{ … }}` or `{% … %}` that mentions `name`.
fn first_line_using(source: &str, name: &str) -> Option<usize> {
    source
        .lines()
        .position(|line| {
            line.match_indices(name).any(|(index, _)| {
                let before = line[..index].chars().next_back();
                let after = line[index + name.len()..].chars().next();
                let is_word = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_');
                !is_word(before) && !is_word(after) && (line.contains("{{") || line.contains("{%"))
            })
        })
        .map(|index| index + 1)
}

fn add_template(
    environment: &mut Environment<'static>,
    path: &Path,
    name: &'static str,
    source: String,
) -> Result<(), Error> {
    environment.add_template_owned(name, source).map_err(|err| {
        let location = match err.line() {
            Some(line) => format!(" (template `{name}`, line {line})"),
            None => format!(" (template `{name}`)"),
        };
        Error::invalid(
            "prompt",
            path,
            location,
            err.detail().unwrap_or("template syntax error").to_string(),
        )
        .with_hint("templates use minijinja (Jinja2) syntax: {{ var }}, {{ finding | tojson(indent=2) }}")
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::case::Case;

    fn loaded(vars: Value) -> LoadedCase {
        LoadedCase {
            case: Case {
                id: "c1".into(),
                vars: vars.as_object().unwrap().clone(),
                expect: json!({}),
                tags: vec![],
                source: None,
                notes: None,
                attacker_fields: None,
            },
            file: PathBuf::from("cases/x.json"),
            line: None,
        }
    }

    const PROMPT: &str = r#"
system = "Answer suppress or notify."
user = """Rule: {{ rule }}
Finding: {{ finding | tojson }}"""
[response_schema]
name = "decision"
schema = { type = "object", properties = { decision = { type = "string", enum = ["suppress", "notify"] } } }
"#;

    /// A template that reads no variable is rendered once; one that reads the case's id or a
    /// variable, for each case.
    #[test]
    fn only_a_template_that_reads_nothing_is_rendered_once() {
        let text = "system = \"Static {{ 1 + 1 }}\"\nuser = \"{{ case_id }}: {{ rule }}\"\n";
        let prompt = Prompt::parse(Path::new("p.toml"), text).unwrap();
        let case_id = "system = \"About {{ case_id }}\"\nuser = \"{{ rule }}\"\n";
        let by_id = Prompt::parse(Path::new("q.toml"), case_id).unwrap();
        for (id, rule) in [("c1", "r1"), ("c2", "r2"), ("c3", "r3")] {
            let mut case = loaded(json!({ "rule": rule }));
            case.case.id = id.into();
            let rendered = prompt.render(&case).unwrap();
            let contents: Vec<&str> = rendered.messages.iter().map(|m| m.content.as_str()).collect();
            assert_eq!(contents, ["Static 2", &format!("{id}: {rule}")]);
            assert_eq!(*by_id.render(&case).unwrap().messages[0].content, format!("About {id}"));
        }
        assert_eq!(prompt.roles[0].constant.get().map(|c| c.as_str()), Some("Static 2"));
        // Every case's prompt holds the one text, not a copy.
        let first = prompt.render(&loaded(json!({"rule": "a"}))).unwrap();
        let second = prompt.render(&loaded(json!({"rule": "b"}))).unwrap();
        assert!(Arc::ptr_eq(&first.messages[0].content, &second.messages[0].content));
        assert!(prompt.roles[1].constant.get().is_none() && by_id.roles[0].constant.get().is_none());
    }

    #[test]
    fn renders_system_and_user_in_order() {
        let prompt = Prompt::parse(Path::new("p.toml"), PROMPT).unwrap();
        let rendered = prompt
            .render(&loaded(json!({"rule": "ignore dev", "finding": {"b": 1, "a": "<x>"}})))
            .unwrap();
        assert_eq!(rendered.messages[0].role, "system");
        assert_eq!(
            &*rendered.messages[1].content,
            "Rule: ignore dev\nFinding: {\"b\":1,\"a\":\"\\u003cx\\u003e\"}"
        );
        assert_eq!(rendered.response_schema.unwrap().name, "decision");
    }

    #[test]
    fn undefined_variable_names_case_template_and_vars() {
        let prompt = Prompt::parse(Path::new("p.toml"), PROMPT).unwrap();
        let err = prompt.render(&loaded(json!({"rule": "r"}))).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("p.toml"), "{text}");
        assert!(text.contains("template `user`, line 2"), "{text}");
        assert!(text.contains("case `c1`"), "{text}");
        assert!(err.hint().unwrap().contains("rule, case_id"), "{:?}", err.hint());
    }

    #[test]
    fn version_changes_with_content_only() {
        let a = Prompt::parse(Path::new("a.toml"), PROMPT).unwrap();
        let b = Prompt::parse(Path::new("b.toml"), &format!("# a comment\n{PROMPT}")).unwrap();
        let c = Prompt::parse(Path::new("c.toml"), &PROMPT.replace("Answer", "Reply")).unwrap();
        assert_eq!(a.sha256, b.sha256);
        assert_ne!(a.sha256, c.sha256);
    }

    #[test]
    fn template_syntax_error_names_line() {
        let err = Prompt::parse(Path::new("p.toml"), "user = \"\"\"ok\n{{ broken \"\"\"").unwrap_err();
        assert!(err.to_string().contains("template `user`, line 2"), "{err}");
    }

    const TOOLS: &str = r#"
user = "{{ message }}"
tool_choice = "required"
[[tools]]
name = "listAutomaticSuppressionRules"
description = "List the automatic suppression rules."
parameters = { type = "object", properties = {} }
[[tools]]
name = "deleteAutomaticSuppressionRule"
parameters = { type = "object", properties = { controlId = { type = "string" } }, required = ["controlId"] }
"#;

    #[test]
    fn tools_render_with_their_choice() {
        let prompt = Prompt::parse(Path::new("p.toml"), TOOLS).unwrap();
        let rendered = prompt.render(&loaded(json!({"message": "一覧"}))).unwrap();
        assert_eq!(rendered.tools.len(), 2);
        assert_eq!(rendered.tools[1].parameters["required"], json!(["controlId"]));
        assert_eq!(rendered.tool_choice, Some(ToolChoice::Required));
        let named = Prompt::parse(
            Path::new("p.toml"),
            &TOOLS.replace("\"required\"", "\"listAutomaticSuppressionRules\""),
        )
        .unwrap();
        assert_eq!(
            named.tool_choice,
            Some(ToolChoice::Tool("listAutomaticSuppressionRules".into()))
        );
        // Tools are part of the version.
        let other = Prompt::parse(Path::new("p.toml"), &TOOLS.replace("List the", "Show the")).unwrap();
        assert_ne!(prompt.sha256, other.sha256);
    }

    #[test]
    fn bad_tool_definitions_name_the_field() {
        let cases = [
            (
                TOOLS.replace("\"required\"", "\"suppress\""),
                "field `tool_choice`",
                "neither auto",
            ),
            (
                TOOLS.replace("name = \"deleteAutomaticSuppressionRule\"", "name = \"delete rule\""),
                "field `tools[1].name`",
                "not 1–64",
            ),
            (
                TOOLS.replace(
                    "\"deleteAutomaticSuppressionRule\"",
                    "\"listAutomaticSuppressionRules\"",
                ),
                "field `tools[1].name`",
                "defined twice",
            ),
            (
                TOOLS.replace("type = \"object\", properties = {}", "type = \"string\""),
                "field `tools[0].parameters`",
                "not an object schema",
            ),
            (
                format!("{TOOLS}\n[response_schema]\nname = \"x\"\nschema = {{}}\n"),
                "field `response_schema`",
                "both",
            ),
            (
                "user = \"x\"\ntool_choice = \"auto\"\n".to_string(),
                "field `tool_choice`",
                "without any",
            ),
        ];
        for (text, location, message) in cases {
            let err = Prompt::parse(Path::new("p.toml"), &text).unwrap_err();
            let shown = err.to_string();
            assert!(shown.contains("p.toml") && shown.contains(location), "{shown}");
            assert!(shown.contains(message), "{shown}");
            assert!(err.hint().is_some(), "{shown}");
        }
    }

    #[test]
    fn runaway_templates_hit_a_limit() {
        for (template, expected) in [
            (
                "{% for a in range(100000) %}{% for b in range(100000) %}x{% endfor %}{% endfor %}",
                "fuel",
            ),
            ("{{ rule | tojson(indent=100000000) }}", "indentation"),
            (
                "{{ rule | tojson(indent=true) }}{{ rule | indent(width=99999999999) }}",
                "indentation",
            ),
            ("{{ 'x' * 100000000000 }}", "too large"),
        ] {
            let text = format!("schema_version = 1\nuser = \"\"\"{template}\"\"\"\n");
            let prompt = Prompt::parse(Path::new("p.toml"), &text).unwrap();
            let err = prompt.render(&loaded(json!({"rule": "r"}))).unwrap_err().to_string();
            assert!(err.contains("p.toml") && err.contains(expected), "{template}: {err}");
        }
        // Ordinary use is untouched: the same bytes as minijinja's own filters.
        let text = "schema_version = 1\nuser = \"\"\"{{ f | tojson }}|{{ f | tojson(indent=2) }}|{{ 'a\\nb' | indent(2) }}\"\"\"\n";
        let prompt = Prompt::parse(Path::new("p.toml"), text).unwrap();
        let rendered = prompt.render(&loaded(json!({"f": {"b": "<x>", "a": 1}}))).unwrap();
        assert_eq!(
            &*rendered.messages[0].content,
            "{\"b\":\"\\u003cx\\u003e\",\"a\":1}|{\n  \"b\": \"\\u003cx\\u003e\",\n  \"a\": 1\n}|a\n  b"
        );
    }
}
