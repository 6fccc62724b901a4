//! Exporters: one per output format, behind one trait (hyperfine's `export/` is the model).

pub mod compare;
pub mod html;
pub mod json;
pub mod junit;
pub mod markdown;
pub mod terminal;

use std::io::Write;

use crate::error::Error;
use crate::run_record::RunRecord;

/// An output format for a run record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Terminal,
    Json,
    Markdown,
    Junit,
}

/// Options that shape human-readable output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Style {
    /// Use ANSI colours.
    pub color: bool,
    /// List every miss rather than the first few per result.
    pub verbose: bool,
}

/// Turns a run record into text.
pub trait Exporter {
    fn export(&self, record: &RunRecord) -> Result<String, Error>;
}

/// The exporter for a format.
pub fn exporter(format: Format, style: Style) -> Box<dyn Exporter> {
    match format {
        Format::Terminal => Box::new(terminal::TerminalExporter { style }),
        Format::Json => Box::new(json::JsonExporter),
        Format::Markdown => Box::new(markdown::MarkdownExporter),
        Format::Junit => Box::new(junit::JunitExporter),
    }
}

impl Format {
    /// The format a file name asks for: `.json`, `.md`/`.markdown`, `.xml` (JUnit), `.txt`.
    pub fn from_extension(path: &std::path::Path) -> Option<Format> {
        match path.extension()?.to_str()?.to_ascii_lowercase().as_str() {
            "json" => Some(Format::Json),
            "md" | "markdown" => Some(Format::Markdown),
            "xml" => Some(Format::Junit),
            "txt" => Some(Format::Terminal),
            _ => None,
        }
    }
}

/// Escape text for XML and HTML, content and attribute values alike. Control characters other
/// than tab and newlines are dropped: XML 1.0 does not allow them.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if c.is_control() && c != '\t' && c != '\n' && c != '\r' => {}
            c => out.push(c),
        }
    }
    out
}

/// Text (a case id, a suite or model name) as inert Markdown: no code span it can close, no
/// HTML it can open, no table cell it can split. GitHub renders the result as the text itself.
pub(crate) fn markdown_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '\\' | '`' | '*' | '_' | '[' | ']' | '(' | ')' | '#' | '|' | '!' | '~' | '{' | '}' => {
                out.push('\\');
                out.push(c);
            }
            '\n' | '\r' => out.push(' '),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// A case id in Markdown: in a code span, unless it could break out of one.
pub(crate) fn markdown_id(id: &str) -> String {
    if id.chars().all(|c| c.is_alphanumeric() || "-_.:/@+".contains(c)) {
        format!("`{id}`")
    } else {
        markdown_text(id)
    }
}

/// Write `text` to `path` atomically: a temporary file in the same folder, then a rename, so a
/// reader never sees half a report.
pub fn write_atomic(path: &std::path::Path, text: &str) -> Result<(), Error> {
    write_atomic_with(path, |file| file.write_all(text.as_bytes()))
}

/// [`write_atomic`] for content that `write` streams into the file.
///
/// Only a new path or an existing regular file is written: a rename over a symlink, a FIFO or a
/// device node (`--out /dev/full` as root) would replace it, so those are refused.
pub fn write_atomic_with(
    path: &std::path::Path,
    write: impl FnOnce(&mut std::fs::File) -> std::io::Result<()>,
) -> Result<(), Error> {
    check_output_path(path)?;
    let folder = output_folder(path);
    std::fs::create_dir_all(folder).map_err(|source| Error::Output {
        path: folder.to_path_buf(),
        source,
        hint: Some("check that the folder of the output file can be created".into()),
    })?;
    let mut file = tempfile::NamedTempFile::new_in(folder).map_err(|e| Error::output(path, e))?;
    write(file.as_file_mut())
        .and_then(|_| file.as_file().sync_all())
        .map_err(|e| Error::output(path, e))?;
    file.persist(path).map_err(|e| Error::output(path, e.error))?;
    Ok(())
}

fn output_folder(path: &std::path::Path) -> &std::path::Path {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."))
}

/// Check, before any work, that `path` can take a report: a new path in a folder that exists
/// or can be made, or an existing regular file; never a symlink, FIFO, device or folder.
pub fn check_output_path(path: &std::path::Path) -> Result<(), Error> {
    let refuse = |what: &str| {
        Error::usage(format!(
            "refusing to write a report over `{}`: it is {what}",
            path.display()
        ))
        .with_hint("name a new file or an existing regular file")
    };
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_symlink() => return Err(refuse("a symbolic link")),
        Ok(meta) if meta.is_dir() => return Err(refuse("a folder")),
        Ok(meta) if !meta.is_file() => return Err(refuse("a device, FIFO or socket, not a regular file")),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::output(path, e)),
    }
    // The nearest existing ancestor must be a folder we can write into.
    let mut folder = output_folder(path);
    loop {
        match std::fs::metadata(folder) {
            Ok(meta) if meta.is_dir() => {
                if meta.permissions().readonly() {
                    return Err(Error::usage(format!(
                        "cannot write `{}`: its folder is read-only",
                        path.display()
                    )));
                }
                return Ok(());
            }
            Ok(_) => {
                return Err(Error::usage(format!(
                    "cannot write `{}`: `{}` is not a folder",
                    path.display(),
                    folder.display()
                )))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => match folder.parent() {
                Some(parent) if !parent.as_os_str().is_empty() => folder = parent,
                _ => return Ok(()),
            },
            Err(e) => return Err(Error::output(folder, e)),
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn refuses_to_replace_anything_but_a_regular_file() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("target.txt");
        std::fs::write(&target, "keep").unwrap();
        let link = dir.path().join("link.json");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let err = super::write_atomic(&link, "x").unwrap_err();
        assert!(err.to_string().contains("symbolic link"), "{err}");
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep");
        assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
        let err = super::write_atomic(std::path::Path::new("/dev/null"), "x").unwrap_err();
        assert!(err.to_string().contains("device"), "{err}");
        assert!(super::write_atomic(dir.path(), "x").is_err());
        // A new file under new folders and an existing regular file are fine.
        super::write_atomic(&dir.path().join("a/b/new.json"), "new").unwrap();
        super::write_atomic(&target, "replaced").unwrap();
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "replaced");
    }

    #[test]
    fn ids_cannot_inject_markdown_or_html() {
        assert_eq!(super::markdown_id("eks-rule-web-asg"), "`eks-rule-web-asg`");
        let hostile = super::markdown_id("x`<img src=x onerror=alert(1)>`|");
        assert!(!hostile.contains('<') && !hostile.contains("`<"), "{hostile}");
        assert_eq!(hostile, "x\\`&lt;img src=x onerror=alert\\(1\\)&gt;\\`\\|");
    }

    #[test]
    fn escapes_markup_and_control_characters() {
        assert_eq!(super::escape("a<b>&\"'\u{1}c"), "a&lt;b&gt;&amp;&quot;&apos;c");
    }
}
