//! Labelled cases: one input each, read from `.json` (one case or an array) and `.jsonl` files.
//!
//! A case's variables may point at a shared file with `{"$file": "findings/x.json"}` (resolved
//! against the case file's folder), so one finding can serve several rules without copies.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::Error;
use crate::fs::FsError;

/// One labelled input.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Case {
    pub id: String,
    /// Template variables; `$file` references are already replaced by the file's content.
    #[serde(default)]
    pub vars: Map<String, Value>,
    /// What the grader expects; its shape depends on the grader.
    pub expect: Value,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// Where the case came from: `{"kind": "synthetic" | "production-miss" | "public-sample", ...}`.
    // Boxed, as is `attacker_fields`: rarely there, and every case of a suite is held.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<Box<Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notes: Option<String>,
    /// Where an attacker writes in this case's finding, over the suite's `robustness.fields`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attacker_fields: Option<Box<AttackerFields>>,
}

/// A case's own attacker-writable fields: `only` replaces the suite's, `add` extends them
/// (paths as in `robustness.fields`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct AttackerFields {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub only: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub add: Vec<String>,
}

/// A case together with where it was read from, for error messages.
#[derive(Debug, Clone)]
pub struct LoadedCase {
    pub case: Case,
    pub file: PathBuf,
    /// 1-based line for `.jsonl` files.
    pub line: Option<usize>,
}

impl LoadedCase {
    /// "`cases/x.jsonl` line 4" or "`cases/x.json`".
    pub fn location(&self) -> String {
        location(&self.file, self.line)
    }
}

/// A suite's cases as a run keeps them once their prompts are rendered and their expectations
/// parsed: whole when a grader or a report reads them again, else only each one's outline (its
/// id and where it was read). A case's variables hold its whole finding, and even an empty
/// [`LoadedCase`] takes 272 bytes: a run holds every case for its whole length.
#[derive(Debug, Clone)]
pub enum Cases {
    Whole(Vec<LoadedCase>),
    Outlines(Vec<Outline>),
}

/// What a run keeps of a case nothing reads again: its id, which its result carries. (Where it
/// was read is named by the errors of loading and rendering, which come before; an outline
/// kept the file and line too, 32 of its 48 bytes, that nothing read afterwards.)
#[derive(Debug, Clone, PartialEq)]
pub struct Outline {
    pub id: Box<str>,
}

impl Cases {
    /// No cases yet: kept whole when `whole`, else as outlines.
    pub fn new(whole: bool) -> Cases {
        match whole {
            true => Cases::Whole(Vec::new()),
            false => Cases::Outlines(Vec::new()),
        }
    }

    /// Keep `loaded` (after the cases before it) as these cases are kept.
    pub fn push(&mut self, loaded: LoadedCase) {
        match self {
            Cases::Whole(cases) => cases.push(loaded),
            Cases::Outlines(_) => self.push_copy(&loaded),
        }
    }

    /// [`Cases::push`] a copy of `loaded`: of its outline only, unless the cases are kept whole.
    pub fn push_copy(&mut self, loaded: &LoadedCase) {
        match self {
            Cases::Whole(cases) => cases.push(loaded.clone()),
            Cases::Outlines(outlines) => outlines.push(Outline {
                id: loaded.case.id.as_str().into(),
            }),
        }
    }

    /// Give back the places pushing left unused: the cases are kept for the whole run, and a
    /// vector grown by doubling has up to half of its places empty.
    pub fn shrink_to_fit(&mut self) {
        match self {
            Cases::Whole(cases) => cases.shrink_to_fit(),
            Cases::Outlines(outlines) => outlines.shrink_to_fit(),
        }
    }

    pub fn len(&self) -> usize {
        match self {
            Cases::Whole(cases) => cases.len(),
            Cases::Outlines(outlines) => outlines.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The id of the case at `index`.
    pub fn id(&self, index: usize) -> &str {
        match self {
            Cases::Whole(cases) => &cases[index].case.id,
            Cases::Outlines(outlines) => &outlines[index].id,
        }
    }

    /// The ids, in case order.
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        (0..self.len()).map(|index| self.id(index))
    }

    /// The whole case at `index`, when the cases are kept whole.
    pub fn whole(&self, index: usize) -> Option<&LoadedCase> {
        match self {
            Cases::Whole(cases) => cases.get(index),
            Cases::Outlines(_) => None,
        }
    }

    /// The cases at `keep`, in that order.
    pub fn subset(&self, keep: &[usize]) -> Cases {
        match self {
            Cases::Whole(cases) => Cases::Whole(keep.iter().map(|&i| cases[i].clone()).collect()),
            Cases::Outlines(outlines) => Cases::Outlines(keep.iter().map(|&i| outlines[i].clone()).collect()),
        }
    }
}

/// "`cases/x.jsonl` line 4" or "`cases/x.json`".
fn location(file: &Path, line: Option<usize>) -> String {
    match line {
        Some(line) => format!("`{}` line {line}", file.display()),
        None => format!("`{}`", file.display()),
    }
}

/// Load every case under `path` (a case file, or a folder whose `.json`/`.jsonl` files are read
/// in name order; sub-folders such as `findings/` are not cases). `$file` references must stay
/// inside `root`, the project's folder (the config's), after `..` and symlinks are resolved.
pub fn load_cases(path: &Path, root: &Path) -> Result<Vec<LoadedCase>, Error> {
    let mut cases = Vec::new();
    for_each_case(path, root, |loaded| {
        cases.push(loaded);
        Ok(())
    })?;
    Ok(cases)
}

/// [`load_cases`], handing each case to `visit` as it is read, in the same order and with the
/// same checks (a repeated id fails at its second use): a caller that keeps only what it needs
/// of each case never holds every case's variables, its whole finding, at once.
pub fn for_each_case(
    path: &Path,
    root: &Path,
    mut visit: impl FnMut(LoadedCase) -> Result<(), Error>,
) -> Result<(), Error> {
    let files = case_files(path)?;
    let root =
        std::fs::canonicalize(root).map_err(|source| FsError::read("resolve the project folder", root, source))?;
    let root = root.as_path();
    let mut shared_files = SharedFiles::default();
    // Each id → the index of its file and its line: what names the first use if it repeats.
    let mut seen: HashMap<String, (usize, Option<usize>)> = HashMap::new();
    let mut take = |loaded: LoadedCase, file_index: usize, files: &[PathBuf]| {
        if let Some(&(first_file, first_line)) = seen.get(&loaded.case.id) {
            return Err(Error::invalid(
                "case file",
                &loaded.file,
                loaded.line.map(|l| format!(" at line {l}")).unwrap_or_default(),
                format!(
                    "case id `{}` is already used in {}",
                    loaded.case.id,
                    location(&files[first_file], first_line)
                ),
            )
            .with_hint("case ids pair runs with baselines: give each case its own id"));
        }
        seen.insert(loaded.case.id.clone(), (file_index, loaded.line));
        visit(loaded)
    };
    for (file_index, file) in files.iter().enumerate() {
        let is_jsonl = file.extension().is_some_and(|e| e == "jsonl");
        if is_jsonl {
            // Line by line: a suite of 50,000 cases is an 8 MB file, which held whole was the
            // largest thing a run of it held.
            crate::fs::for_each_line(file, "case file", |number, line| {
                if line.trim().is_empty() {
                    return Ok(());
                }
                let value: Value = serde_json::from_str(line).map_err(|err| {
                    Error::invalid(
                        "case file",
                        file,
                        format!(" at line {number}, column {}", err.column()),
                        crate::location::json_message(&err),
                    )
                    .with_hint("a .jsonl case file holds one JSON object per line")
                })?;
                let loaded = parse_case(value, file, Some(number), root, &mut shared_files)?;
                take(loaded, file_index, &files)
            })?;
        } else {
            let text = crate::fs::read_to_string(file, "case file")?;
            let value: Value = serde_json::from_str(&text).map_err(|err| {
                Error::invalid(
                    "case file",
                    file,
                    crate::location::json_location(&err),
                    crate::location::json_message(&err),
                )
            })?;
            let items = match value {
                Value::Array(items) => items,
                other => vec![other],
            };
            for item in items {
                let loaded = parse_case(item, file, None, root, &mut shared_files)?;
                take(loaded, file_index, &files)?;
            }
        }
    }
    Ok(())
}

fn case_files(path: &Path) -> Result<Vec<PathBuf>, Error> {
    let metadata = std::fs::metadata(path).map_err(|source| {
        Error::from(FsError::read("read cases", path, source))
            .with_hint("check the suite's `cases` path; it is resolved relative to the config file's folder")
    })?;
    if metadata.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    let entries = std::fs::read_dir(path).map_err(|source| FsError::read("list cases in", path, source))?;
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| FsError::read("list cases in", path, source))?;
        let file = entry.path();
        let is_case = file.is_file() && file.extension().is_some_and(|e| e == "json" || e == "jsonl");
        if is_case {
            files.push(file);
        }
    }
    files.sort();
    Ok(files)
}

fn parse_case(
    value: Value,
    file: &Path,
    line: Option<usize>,
    root: &Path,
    shared_files: &mut SharedFiles,
) -> Result<LoadedCase, Error> {
    let location = line.map(|l| format!(" at line {l}")).unwrap_or_default();
    let mut case: Case = serde_json::from_value(value).map_err(|err| {
        Error::invalid("case file", file, location.clone(), crate::location::json_message(&err))
            .with_hint("a case is {\"id\": ..., \"vars\": {...}, \"expect\": {...}} with optional tags, source, notes")
    })?;
    if case.id.trim().is_empty() {
        return Err(Error::invalid("case file", file, location, "a case has an empty `id`"));
    }
    let folder = file.parent().unwrap_or(Path::new("."));
    for (name, var) in case.vars.iter_mut() {
        if let Some(reference) = file_reference(var) {
            let target = shared_files.resolve(folder.join(reference), root).map_err(|message| {
                Error::invalid(
                    "case file",
                    file,
                    location.clone(),
                    format!(
                        "case `{}` var `{name}`: {{\"$file\": \"{reference}\"}} {message}",
                        case.id
                    ),
                )
                .with_hint(format!(
                    "a $file must name a file inside the project folder `{}` (relative to the case file)",
                    root.display()
                ))
            })?;
            let content = match shared_files.content.get(&target) {
                Some(content) => content.clone(),
                None => {
                    let content = read_var_file(&target).map_err(|err| {
                        err.with_hint(format!(
                            "case `{}` var `{name}` refers to it with {{\"$file\": \"{reference}\"}}, resolved against `{}`",
                            case.id,
                            folder.display()
                        ))
                    })?;
                    shared_files.keep(target, content.clone());
                    content
                }
            };
            *var = content;
        }
    }
    Ok(LoadedCase {
        case,
        file: file.to_path_buf(),
        line,
    })
}

/// Files whose content a load keeps for the cases that name them again: the last ones read.
const SHARED_FILES_KEPT: usize = 256;

/// The `$file`s of one load: each reference resolved once (resolving is a system call per
/// path component), and the content of the last [`SHARED_FILES_KEPT`] files read kept, so a
/// finding that several cases share is read once. Not every file's: in a suite where each
/// case has its own finding, that would hold every finding at once, which streaming the
/// cases exists to avoid.
#[derive(Default)]
struct SharedFiles {
    /// A reference joined to its case file's folder → the file it resolves to.
    resolved: HashMap<PathBuf, PathBuf>,
    /// A resolved file → its content, for the files in `read`.
    content: HashMap<PathBuf, Value>,
    /// The files in `content`, oldest first.
    read: std::collections::VecDeque<PathBuf>,
}

impl SharedFiles {
    /// Keep `content` of `target`, forgetting the oldest file kept if there are too many.
    fn keep(&mut self, target: PathBuf, content: Value) {
        if self.read.len() == SHARED_FILES_KEPT {
            if let Some(oldest) = self.read.pop_front() {
                self.content.remove(&oldest);
            }
        }
        self.read.push_back(target.clone());
        self.content.insert(target, content);
    }

    /// [`inside_project`], once per joined path.
    fn resolve(&mut self, joined: PathBuf, root: &Path) -> Result<PathBuf, String> {
        if let Some(target) = self.resolved.get(&joined) {
            return Ok(target.clone());
        }
        let target = inside_project(&joined, root)?;
        self.resolved.insert(joined, target.clone());
        Ok(target)
    }
}

/// `path` resolved (`..`, symlinks) if it is a regular file inside `root`; why not otherwise.
/// Without this a case could read `/proc/self/environ` or `../../secret.txt` into a prompt,
/// and through an echoing model into the run record.
fn inside_project(path: &Path, root: &Path) -> Result<PathBuf, String> {
    let resolved = std::fs::canonicalize(path).map_err(|e| format!("cannot be read: {e}"))?;
    if !resolved.starts_with(root) {
        return Err(format!(
            "resolves to `{}`, outside the project folder",
            resolved.display()
        ));
    }
    if !resolved.is_file() {
        return Err(format!(
            "resolves to `{}`, which is not a regular file",
            resolved.display()
        ));
    }
    Ok(resolved)
}

/// `{"$file": "path"}` and nothing else.
fn file_reference(value: &Value) -> Option<&str> {
    let object = value.as_object()?;
    if object.len() != 1 {
        return None;
    }
    object.get("$file")?.as_str()
}

/// A `.json` file becomes its JSON value; anything else becomes a string.
fn read_var_file(path: &Path) -> Result<Value, Error> {
    let text = crate::fs::read_to_string(path, "var file")?;
    if path.extension().is_some_and(|e| e == "json") {
        serde_json::from_str(&text).map_err(|err| {
            Error::invalid(
                "var file",
                path,
                crate::location::json_location(&err),
                crate::location::json_message(&err),
            )
        })
    } else {
        Ok(Value::String(text))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) {
        let path = dir.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    #[test]
    fn loads_json_jsonl_and_shared_files() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "findings/f.json",
            r#"{"Id": "x", "Severity": {"Label": "LOW"}}"#,
        );
        write(
            dir.path(),
            "a.json",
            r#"{"id": "a", "vars": {"finding": {"$file": "findings/f.json"}, "rule": "r"}, "expect": {"label": "notify"}}"#,
        );
        write(
            dir.path(),
            "b.jsonl",
            "{\"id\": \"b1\", \"vars\": {}, \"expect\": {\"label\": \"suppress\"}}\n\n{\"id\": \"b2\", \"expect\": {\"label\": \"notify\"}}\n",
        );
        let cases = load_cases(dir.path(), dir.path()).unwrap();
        let ids: Vec<&str> = cases.iter().map(|c| c.case.id.as_str()).collect();
        assert_eq!(ids, ["a", "b1", "b2"]);
        assert_eq!(cases[0].case.vars["finding"]["Severity"]["Label"], "LOW");
        assert_eq!(cases[2].line, Some(3));
    }

    /// A load keeps the content of the last files it read, not of every file: one finding
    /// per case, past the bound, still gives each case its own finding, and a finding shared
    /// by the first and the last case is read again rather than held all along.
    #[test]
    fn a_load_keeps_only_the_last_files_it_read() {
        let dir = tempfile::tempdir().unwrap();
        let count = SHARED_FILES_KEPT + 10;
        write(dir.path(), "findings/shared.json", r#"{"Id": "shared"}"#);
        let mut lines = String::from(
            "{\"id\": \"first\", \"vars\": {\"f\": {\"$file\": \"findings/shared.json\"}}, \"expect\": {}}\n",
        );
        for index in 0..count {
            write(
                dir.path(),
                &format!("findings/{index}.json"),
                &format!(r#"{{"Id": "f{index}"}}"#),
            );
            lines.push_str(&format!(
                "{{\"id\": \"c{index}\", \"vars\": {{\"f\": {{\"$file\": \"findings/{index}.json\"}}}}, \"expect\": {{}}}}\n"
            ));
        }
        lines
            .push_str("{\"id\": \"last\", \"vars\": {\"f\": {\"$file\": \"findings/shared.json\"}}, \"expect\": {}}\n");
        write(dir.path(), "cases.jsonl", &lines);

        let mut shared = SharedFiles::default();
        let root = std::fs::canonicalize(dir.path()).unwrap();
        let mut seen = Vec::new();
        let text = std::fs::read_to_string(dir.path().join("cases.jsonl")).unwrap();
        for (index, line) in text.lines().enumerate() {
            let value: Value = serde_json::from_str(line).unwrap();
            let loaded = parse_case(
                value,
                &dir.path().join("cases.jsonl"),
                Some(index + 1),
                &root,
                &mut shared,
            )
            .unwrap();
            seen.push(loaded.case.vars["f"]["Id"].as_str().unwrap().to_string());
            assert!(shared.content.len() <= SHARED_FILES_KEPT && shared.read.len() == shared.content.len());
        }
        assert_eq!(seen.len(), count + 2);
        assert_eq!((seen[0].as_str(), seen[count + 1].as_str()), ("shared", "shared"));
        assert!(seen[1..=count].iter().enumerate().all(|(i, id)| *id == format!("f{i}")));
        assert_eq!(shared.content.len(), SHARED_FILES_KEPT);
        // Every reference was resolved once, the shared one included.
        assert_eq!(shared.resolved.len(), count + 1);
    }

    #[test]
    fn bad_jsonl_line_names_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "c.jsonl",
            "{\"id\": \"ok\", \"expect\": {}}\n{\"id\": \"broken\",\n",
        );
        let err = load_cases(dir.path(), dir.path()).unwrap_err().to_string();
        assert!(err.contains("c.jsonl"), "{err}");
        assert!(err.contains("line 2"), "{err}");
    }

    #[test]
    fn missing_shared_file_names_case_and_var() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "a.json",
            r#"{"id": "a", "vars": {"finding": {"$file": "nope.json"}}, "expect": {}}"#,
        );
        let err = load_cases(dir.path(), dir.path()).unwrap_err();
        assert!(err.to_string().contains("nope.json"), "{err}");
        assert!(err.to_string().contains("case `a` var `finding`"), "{err}");
    }

    #[test]
    fn a_file_reference_cannot_leave_the_project() {
        let outside = tempfile::tempdir().unwrap();
        write(outside.path(), "secret.txt", "sk-do-not-read");
        let project = tempfile::tempdir().unwrap();
        let cases = project.path().join("cases");
        std::fs::create_dir_all(&cases).unwrap();
        std::os::unix::fs::symlink(outside.path().join("secret.txt"), cases.join("link.txt")).unwrap();
        let escape = format!("{}/secret.txt", outside.path().display());
        for reference in [
            "/proc/self/environ",
            "../../../../../../etc/passwd",
            escape.as_str(),
            "link.txt",
            ".",
        ] {
            write(
                &cases,
                "a.json",
                &format!(r#"{{"id": "a", "vars": {{"finding": {{"$file": "{reference}"}}}}, "expect": {{}}}}"#),
            );
            let err = load_cases(&cases, project.path()).unwrap_err();
            let text = err.to_string();
            assert!(
                text.contains("outside the project") || text.contains("not a regular file"),
                "{reference}: {text}"
            );
            assert!(!text.contains("sk-do-not-read"));
        }
        // Inside the project, `..` is fine.
        write(project.path(), "shared/f.txt", "ok");
        write(
            &cases,
            "a.json",
            r#"{"id": "a", "vars": {"f": {"$file": "../shared/f.txt"}}, "expect": {}}"#,
        );
        let loaded = load_cases(&cases, project.path()).unwrap();
        assert_eq!(loaded[0].case.vars["f"], "ok");
    }

    #[test]
    fn a_file_that_is_not_utf8_names_line_and_column() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("a.jsonl"),
            b"{\"id\": \"a\", \"expect\": {}}\n{\"id\": \"b\xff\"}\n",
        )
        .unwrap();
        let err = load_cases(dir.path(), dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("line 2, column 10") && err.contains("not valid UTF-8"),
            "{err}"
        );
    }

    #[test]
    fn duplicate_ids_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "a.jsonl",
            "{\"id\": \"x\", \"expect\": {}}\n{\"id\": \"x\", \"expect\": {}}\n",
        );
        let err = load_cases(dir.path(), dir.path()).unwrap_err().to_string();
        assert!(err.contains("case id `x` is already used"), "{err}");
    }

    #[test]
    fn unknown_case_field_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "a.json", r#"{"id": "a", "expect": {}, "expected": {}}"#);
        let err = load_cases(dir.path(), dir.path()).unwrap_err().to_string();
        assert!(err.contains("unknown field `expected`"), "{err}");
    }
}
