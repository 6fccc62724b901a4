//! The error type that crosses module boundaries, and its mapping to an exit code.
//!
//! Every variant names the file (and line or field where known) and, where a fix is known,
//! carries a hint that the command line prints on its own `hint:` line.

use std::path::PathBuf;

use crate::exit_code;

/// The longest error message printed whole: a mistyped 10 MB value is cut, not echoed.
pub const MAX_ERROR_CHARS: usize = 4000;

/// `text` cut to `limit` characters, saying how much was left out (line breaks kept: some
/// messages are lists).
fn bounded(text: &str, limit: usize) -> std::borrow::Cow<'_, str> {
    match text.char_indices().nth(limit) {
        Some((index, _)) => format!(
            "{}… ({} more characters)",
            &text[..index],
            text[index..].chars().count()
        )
        .into(),
        None => text.into(),
    }
}

/// Any error that ends a promptgate command.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read or written.
    #[error("failed to {action} `{path}`: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
        hint: Option<String>,
    },
    /// A file was read but its content is wrong.
    #[error("invalid {what} `{path}`{location}: {message}")]
    Invalid {
        what: &'static str,
        path: PathBuf,
        /// Pre-formatted location, e.g. " at line 4, column 7" or " (field `suites.triage.models`)".
        location: String,
        message: String,
        hint: Option<String>,
    },
    /// The command line asked for something that does not exist or cannot be combined.
    #[error("{message}")]
    Usage { message: String, hint: Option<String> },
    /// Nothing matched the selection.
    #[error("nothing selected to run: {message}")]
    NothingSelected { message: String, hint: Option<String> },
    /// The response cache is not a usable promptgate cache (`io: false`: bad input), or reading
    /// or writing it failed (`io: true`: an I/O failure, not the user's input).
    #[error("cache `{path}`: {message}")]
    Cache {
        path: PathBuf,
        message: String,
        io: bool,
        hint: Option<String>,
    },
    /// A report, stdout or another output could not be written.
    #[error("failed to write `{path}`: {source}")]
    Output {
        path: PathBuf,
        #[source]
        source: std::io::Error,
        hint: Option<String>,
    },
    /// promptgate itself failed (a panicked task, a serialization bug): not the input's fault.
    #[error("internal error: {message}")]
    Internal { message: String, hint: Option<String> },
    /// A provider answered no connection at all, so sampling it was stopped early.
    #[error("provider `{provider}` at {endpoint} is unreachable: {first_error}")]
    Unreachable {
        provider: String,
        endpoint: String,
        first_error: String,
        hint: Option<String>,
    },
}

impl Error {
    /// A file-content error with a location and an optional hint.
    pub fn invalid(
        what: &'static str,
        path: impl Into<PathBuf>,
        location: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Error::Invalid {
            what,
            path: path.into(),
            location: location.into(),
            message: message.into(),
            hint: None,
        }
    }

    /// A usage error.
    pub fn usage(message: impl Into<String>) -> Self {
        Error::Usage {
            message: message.into(),
            hint: None,
        }
    }

    /// Attach (or replace) the hint.
    pub fn with_hint(mut self, text: impl Into<String>) -> Self {
        let text = Some(text.into());
        match &mut self {
            Error::Io { hint, .. }
            | Error::Invalid { hint, .. }
            | Error::Usage { hint, .. }
            | Error::NothingSelected { hint, .. }
            | Error::Cache { hint, .. }
            | Error::Output { hint, .. }
            | Error::Internal { hint, .. }
            | Error::Unreachable { hint, .. } => *hint = text,
        }
        self
    }

    /// The hint, if one is known.
    pub fn hint(&self) -> Option<&str> {
        match self {
            Error::Io { hint, .. }
            | Error::Invalid { hint, .. }
            | Error::Usage { hint, .. }
            | Error::NothingSelected { hint, .. }
            | Error::Cache { hint, .. }
            | Error::Output { hint, .. }
            | Error::Internal { hint, .. }
            | Error::Unreachable { hint, .. } => hint.as_deref(),
        }
    }

    /// The lines the command line prints for this error: `error: …` and `hint: …`, bounded to
    /// [`MAX_ERROR_CHARS`] and with the process's secrets masked.
    pub fn for_terminal(&self, color: bool) -> String {
        let (red, yellow, reset) = if color {
            ("\x1b[31;1m", "\x1b[33;1m", "\x1b[0m")
        } else {
            ("", "", "")
        };
        let secrets = crate::secrets::process();
        let full = self.to_string();
        let mut text = format!(
            "{red}error{reset}: {}\n",
            secrets.mask(&bounded(&full, MAX_ERROR_CHARS))
        );
        if let Some(hint) = self.hint() {
            text.push_str(&format!("{yellow}hint{reset}: {}\n", secrets.mask(hint)));
        }
        text
    }

    /// The process exit code this error ends with.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::NothingSelected { .. } => exit_code::NOTHING_SELECTED,
            Error::Unreachable { .. } => exit_code::INCONCLUSIVE,
            Error::Output { .. } | Error::Internal { .. } | Error::Cache { io: true, .. } => exit_code::INTERNAL,
            Error::Io { .. } | Error::Invalid { .. } | Error::Usage { .. } | Error::Cache { io: false, .. } => {
                exit_code::BAD_INPUT
            }
        }
    }

    /// An internal failure.
    pub fn internal(message: impl Into<String>) -> Self {
        Error::Internal {
            message: message.into(),
            hint: Some("this is a promptgate bug or a failing machine, not your input; please report it".into()),
        }
    }

    /// A failed write to `path` (stdout is `<stdout>`).
    pub fn output(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        let hint = match source.raw_os_error() {
            Some(28) => Some("the disk is full".to_string()),
            _ if source.kind() == std::io::ErrorKind::PermissionDenied => {
                Some("check the permissions of the file and its folder".to_string())
            }
            _ => None,
        };
        Error::Output {
            path: path.into(),
            source,
            hint,
        }
    }
}

/// Check an on-disk format's `schema_version` against the one this build reads.
pub fn check_schema_version(
    what: &'static str,
    path: &std::path::Path,
    found: u32,
    supported: u32,
) -> Result<(), Error> {
    if found == supported {
        return Ok(());
    }
    Err(Error::invalid(
        what,
        path,
        " (field `schema_version`)",
        format!("schema_version {found} is not supported (this promptgate reads {supported})"),
    )
    .with_hint(if found > supported {
        "upgrade promptgate to read this file"
    } else {
        "rewrite the file in the current format (see the README)"
    }))
}

/// Format a 1-based line and column for a byte offset into `text`.
pub fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |s| s.chars().count()) + 1;
    (line, column)
}

/// The location string for a TOML error (" at line L, column C"), from its span in `text`.
pub fn toml_location(text: &str, err: &toml::de::Error) -> String {
    err.span()
        .map(|span| {
            let (line, column) = line_column(text, span.start);
            format!(" at line {line}, column {column}")
        })
        .unwrap_or_default()
}

/// The location string for a serde_json error (which already knows line and column).
pub fn json_location(err: &serde_json::Error) -> String {
    if err.line() == 0 {
        String::new()
    } else {
        format!(" at line {}, column {}", err.line(), err.column())
    }
}

/// The message of a serde_json error without its trailing " at line L column C".
pub fn json_message(err: &serde_json::Error) -> String {
    let text = err.to_string();
    match text.rfind(" at line ") {
        Some(index) => text[..index].to_string(),
        None => text,
    }
}
