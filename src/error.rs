//! The error type that crosses module boundaries, and its mapping to an exit code.
//!
//! Every variant names the file (and line or field where known) and, where a fix is known,
//! carries a hint that the command line prints on its own `hint:` line. A module whose
//! failures differ in kind has an enum of its own that implements [`Failure`] (its hints and
//! exit codes: `fs::FsError`, `cache::CacheError`) and converts into [`Error`] with `?`; this
//! module knows none of them, so it stays below every module that fails. Errors of file
//! content (config, cases, prompts, baselines, records) share one shape, [`Error::Invalid`]:
//! what, where, why.

use std::path::PathBuf;

use crate::exit_code;

/// A module's own error type: it knows its hint and its exit code.
pub trait Failure: std::error::Error + Send + Sync + 'static {
    /// What to do about it, when that is known.
    fn hint(&self) -> Option<String>;
    /// The process exit code it ends with (see [`crate::exit_code`]).
    fn exit_code(&self) -> i32;
}

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

/// `text` with `secrets` masked, then cut to [`MAX_ERROR_CHARS`]: in that order, because a cut
/// first could leave the start of a secret that the mask would no longer recognise.
fn masked_and_cut(text: &str, secrets: &crate::secrets::Secrets) -> String {
    // Shown, never acted on: a message quotes input (a file's text, a server's body).
    crate::excerpt::printable_lines(&bounded(&secrets.mask(text), MAX_ERROR_CHARS)).into_owned()
}

/// Any error that ends a promptgate command.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A failure of a module with an error type of its own (see [`Failure`]), with its hint
    /// and exit code; [`Error::downcast_ref`] gives the module's error back.
    #[error("{error}")]
    Module {
        error: Box<dyn std::error::Error + Send + Sync>,
        hint: Option<String>,
        code: i32,
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
            Error::Module { hint, .. }
            | Error::Invalid { hint, .. }
            | Error::Usage { hint, .. }
            | Error::NothingSelected { hint, .. }
            | Error::Internal { hint, .. }
            | Error::Unreachable { hint, .. } => *hint = text,
        }
        self
    }

    /// The hint, if one is known.
    pub fn hint(&self) -> Option<&str> {
        match self {
            Error::Module { hint, .. }
            | Error::Invalid { hint, .. }
            | Error::Usage { hint, .. }
            | Error::NothingSelected { hint, .. }
            | Error::Internal { hint, .. }
            | Error::Unreachable { hint, .. } => hint.as_deref(),
        }
    }

    /// The module's own error, when this is one of type `E`.
    pub fn downcast_ref<E: Failure>(&self) -> Option<&E> {
        match self {
            Error::Module { error, .. } => error.downcast_ref(),
            _ => None,
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
        let mut text = format!("{red}error{reset}: {}\n", masked_and_cut(&full, secrets));
        if let Some(hint) = self.hint() {
            text.push_str(&format!("{yellow}hint{reset}: {}\n", masked_and_cut(hint, secrets)));
        }
        text
    }

    /// The process exit code this error ends with.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Module { code, .. } => *code,
            Error::NothingSelected { .. } => exit_code::NOTHING_SELECTED,
            Error::Unreachable { .. } => exit_code::INCONCLUSIVE,
            Error::Internal { .. } => exit_code::INTERNAL,
            Error::Invalid { .. } | Error::Usage { .. } => exit_code::BAD_INPUT,
        }
    }

    /// An internal failure.
    pub fn internal(message: impl Into<String>) -> Self {
        Error::Internal {
            message: message.into(),
            hint: Some(exit_code::INTERNAL_HINT.into()),
        }
    }
}

impl<E: Failure> From<E> for Error {
    fn from(error: E) -> Self {
        Error::Module {
            hint: error.hint(),
            code: error.exit_code(),
            error: Box::new(error),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::CacheError;
    use crate::fs::FsError;

    #[test]
    fn a_message_is_masked_whole_before_it_is_cut() {
        let secret = "gw-secret-value-42";
        let secrets = crate::secrets::Secrets::from_values([secret.to_string()]);
        for before in MAX_ERROR_CHARS - secret.len()..=MAX_ERROR_CHARS {
            let text = format!("{}{secret}{}", "a".repeat(before), "b".repeat(5_000));
            let shown = masked_and_cut(&text, &secrets);
            assert!(!shown.contains("gw-secret"), "{before}");
            assert!(shown.contains("more characters)"), "{before}");
        }
    }

    #[test]
    fn module_errors_keep_their_code_and_hint_and_a_callers_hint_wins() {
        let cases: [(Error, i32, &str); 4] = [
            (
                FsError::write("report.md", std::io::Error::from_raw_os_error(28)).into(),
                exit_code::INTERNAL,
                "the disk is full",
            ),
            (
                FsError::TooLarge {
                    what: "baseline",
                    path: "b.json".into(),
                }
                .into(),
                exit_code::BAD_INPUT,
                "is this really a baseline?",
            ),
            (
                CacheError::Missing {
                    path: "c.sqlite".into(),
                    message: "no such file",
                }
                .into(),
                exit_code::BAD_INPUT,
                "a cache is created by the first `promptgate run`; pass --cache PATH to read another",
            ),
            (
                CacheError::Writer("thread panicked").into(),
                exit_code::INTERNAL,
                exit_code::INTERNAL_HINT,
            ),
        ];
        for (error, code, hint) in cases {
            assert_eq!(error.exit_code(), code, "{error}");
            assert_eq!(error.hint(), Some(hint), "{error}");
            let replaced = error.with_hint("look elsewhere");
            assert_eq!(replaced.hint(), Some("look elsewhere"));
            assert_eq!(replaced.exit_code(), code);
        }
        let error = Error::from(CacheError::Writer("is closed"));
        assert!(matches!(
            error.downcast_ref::<CacheError>(),
            Some(CacheError::Writer("is closed"))
        ));
        assert!(error.downcast_ref::<FsError>().is_none());
        assert_eq!(error.to_string(), "the cache writer is closed");
    }
}
