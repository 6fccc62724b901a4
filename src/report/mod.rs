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

/// Write `text` to `path` atomically: a temporary file in the same folder, then a rename, so a
/// reader never sees half a report.
pub fn write_atomic(path: &std::path::Path, text: &str) -> Result<(), Error> {
    write_atomic_with(path, |file| file.write_all(text.as_bytes()))
}

/// [`write_atomic`] for content that `write` streams into the file.
pub fn write_atomic_with(
    path: &std::path::Path,
    write: impl FnOnce(&mut std::fs::File) -> std::io::Result<()>,
) -> Result<(), Error> {
    let folder = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    let io_error = |action: &'static str, source: std::io::Error| Error::Io {
        action,
        path: path.to_path_buf(),
        source,
        hint: None,
    };
    std::fs::create_dir_all(folder).map_err(|e| io_error("create the folder of", e))?;
    let mut file = tempfile::NamedTempFile::new_in(folder).map_err(|e| io_error("write", e))?;
    write(file.as_file_mut())
        .and_then(|_| file.as_file().sync_all())
        .map_err(|e| io_error("write", e))?;
    file.persist(path).map_err(|e| io_error("write", e.error))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn escapes_markup_and_control_characters() {
        assert_eq!(super::escape("a<b>&\"'\u{1}c"), "a&lt;b&gt;&amp;&quot;&apos;c");
    }
}
