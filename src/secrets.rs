//! Masking of secrets in everything promptgate prints or writes.
//!
//! Provider error bodies are quoted into messages, and a hostile or misconfigured server may echo
//! the request headers back (`Authorization: Bearer sk-…`). Every message, run record and report
//! passes through [`Secrets::mask`] before it leaves the process: the values of the environment
//! variables that hold credentials are replaced wherever they occur, and so are the shapes of
//! credentials whose value promptgate never saw (bearer tokens, OpenAI-style keys, AWS secret keys
//! and session tokens after their names).

use std::borrow::Cow;
use std::sync::{LazyLock, OnceLock};

use aho_corasick::AhoCorasick;
use regex::Regex;

use crate::env::EnvVars;

/// What a masked secret is replaced with.
pub const MASK: &str = "***";

/// Values shorter than this are not treated as secrets: masking `on` or `1` everywhere would
/// garble reports, and no real credential is that short.
const MIN_SECRET_LEN: usize = 8;

/// Credential shapes, masked whatever their value: (pattern, replacement keeping group 1).
static SHAPES: LazyLock<Vec<Regex>> = LazyLock::new(|| {
    [
        // `Authorization: Bearer <token>` and the like.
        r"(?i)(\bbearer\s+)[A-Za-z0-9._~+/=-]{8,}",
        // OpenAI-style keys (sk-…, sk-proj-…).
        r"(\bsk-)[A-Za-z0-9_-]{16,}",
        // A credential after its name, in headers, JSON, env dumps or INI files.
        r#"(?i)(\b(?:aws_secret_access_key|aws_session_token|secret_?access_?key|session_?token|x-amz-security-token|api[_-]?key|x-api-key|authorization|password|secret)\b["']?\s*[:=]\s*["']?)[^\s"',;}]{8,}"#,
    ]
    .iter()
    .map(|pattern| Regex::new(pattern).expect("the built-in secret patterns are valid"))
    .collect()
});

/// [`SHAPES`] as one set: whether any matches is one pass over a text, not one per shape (a
/// long report has none in nearly every run of lines it is masked in).
static ANY_SHAPE: LazyLock<regex::RegexSet> = LazyLock::new(|| {
    regex::RegexSet::new(SHAPES.iter().map(Regex::as_str)).expect("the built-in secret patterns are valid")
});

/// The secrets of this process, learnt once before anything is printed (see [`learn`]).
static PROCESS: OnceLock<Secrets> = OnceLock::new();

/// The secrets this process masks in everything it prints or writes: those given to [`learn`],
/// or only the credential shapes if nothing was learnt.
pub fn process() -> &'static Secrets {
    PROCESS.get_or_init(Secrets::default)
}

/// Make `secrets` the process's (the first call wins: what was printed was masked with it).
pub fn learn(secrets: Secrets) {
    let _ = PROCESS.set(secrets);
}

/// The secrets of one process: credential values from the environment, and credential shapes.
#[derive(Debug, Clone, Default)]
pub struct Secrets {
    values: Vec<String>,
    matcher: Option<AhoCorasick>,
}

/// Whether an environment variable's name says it holds a credential.
fn names_a_secret(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    ["KEY", "TOKEN", "SECRET", "PASSWORD", "CREDENTIAL", "AUTH"]
        .iter()
        .any(|word| upper.contains(word))
}

impl Secrets {
    /// The secrets in `env`: every variable whose name says credential (`*_API_KEY`,
    /// `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, …) and every variable named in `also`
    /// (each provider's `api_key_env`, whatever its name).
    pub fn from_env(env: &EnvVars, also: &[&str]) -> Secrets {
        let values = env
            .iter()
            .filter(|(name, _)| names_a_secret(name) || also.contains(name))
            .map(|(_, value)| value.to_string());
        Secrets::from_values(values)
    }

    /// Secrets with these values (short ones are ignored).
    pub fn from_values(values: impl IntoIterator<Item = String>) -> Secrets {
        let mut values: Vec<String> = values
            .into_iter()
            .filter(|v| v.trim().len() >= MIN_SECRET_LEN)
            .collect();
        // Longest first, so that a secret containing another is masked whole.
        values.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        values.dedup();
        let matcher = (!values.is_empty())
            .then(|| {
                aho_corasick::AhoCorasick::builder()
                    .match_kind(aho_corasick::MatchKind::LeftmostLongest)
                    .build(&values)
                    .ok()
            })
            .flatten();
        Secrets { values, matcher }
    }

    /// These secrets and `other`'s.
    pub fn merged(&self, other: &Secrets) -> Secrets {
        Secrets::from_values(self.values.iter().chain(&other.values).cloned())
    }

    /// `text` with every secret replaced by [`MASK`].
    pub fn mask<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let mut text = Cow::Borrowed(text);
        if let Some(matcher) = &self.matcher {
            if matcher.is_match(text.as_ref()) {
                text = Cow::Owned(matcher.replace_all(text.as_ref(), &vec![MASK; self.values.len()]));
            }
        }
        if !ANY_SHAPE.is_match(&text) {
            return text;
        }
        for shape in SHAPES.iter() {
            if shape.is_match(&text) {
                text = Cow::Owned(shape.replace_all(&text, format!("${{1}}{MASK}")).into_owned());
            }
        }
        text
    }
}

/// A writer that masks [`Secrets`] in what passes through it, a run of whole lines at a time:
/// a report that grows with its cases (the JSON record of 50,000 cases is 30 MB) is written
/// as it is made rather than held whole, masked as [`Secrets::mask`] masks a whole text.
///
/// A secret or credential shape is found only within one line. In JSON that is every one:
/// a string's line breaks are escaped, so the text's only line breaks are between values.
pub struct MaskingWriter<'s, W: std::io::Write> {
    secrets: &'s Secrets,
    inner: W,
    /// What was written since the last whole line masked.
    pending: Vec<u8>,
}

/// How much a [`MaskingWriter`] gathers before it masks the whole lines in it: large enough
/// that a mask's fixed cost (a search per credential shape) is paid rarely.
const MASKED_RUN: usize = 1 << 16;

impl<'s, W: std::io::Write> MaskingWriter<'s, W> {
    pub fn new(secrets: &'s Secrets, inner: W) -> MaskingWriter<'s, W> {
        MaskingWriter {
            secrets,
            inner,
            pending: Vec::with_capacity(MASKED_RUN),
        }
    }

    /// Mask and write what is pending: its whole lines, or all of it when `all`.
    fn drain(&mut self, all: bool) -> std::io::Result<()> {
        let end = match all {
            true => self.pending.len(),
            false => match self.pending.iter().rposition(|&byte| byte == b'\n') {
                Some(newline) => newline + 1,
                None => return Ok(()),
            },
        };
        // A line break is never part of a longer UTF-8 sequence, so whole lines of UTF-8 are
        // UTF-8; anything else is written as `from_utf8_lossy` makes it.
        let text = String::from_utf8_lossy(&self.pending[..end]);
        self.inner.write_all(self.secrets.mask(&text).as_bytes())?;
        self.pending.drain(..end);
        Ok(())
    }

    /// Mask and write the rest, flush, and give the writer back.
    pub fn finish(mut self) -> std::io::Result<W> {
        self.drain(true)?;
        self.inner.flush()?;
        Ok(self.inner)
    }
}

impl<W: std::io::Write> std::io::Write for MaskingWriter<'_, W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.pending.extend_from_slice(buf);
        if self.pending.len() >= MASKED_RUN {
            self.drain(false)?;
        }
        Ok(buf.len())
    }

    /// Writes only whole lines: a secret may yet continue on the rest ([`MaskingWriter::finish`]
    /// writes it).
    fn flush(&mut self) -> std::io::Result<()> {
        self.drain(false)?;
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_masking_writer_masks_as_the_whole_text_is_masked_wherever_the_writes_fall() {
        use std::io::Write;
        let secrets = Secrets::from_values(["gw-secret-value-42".to_string()]);
        // Secrets and credential shapes on many lines, past several masked runs, with a
        // multi-byte character astride every possible cut.
        let mut text = String::new();
        for line in 0..6_000 {
            text.push_str(&format!(
                "  \"line {line}\": \"gw-secret-value-42 é Bearer abcdefgh12345678 password=hunter2hunter2\",\n"
            ));
        }
        text.push_str("no final line break gw-secret-value-42");
        let whole = secrets.mask(&text).into_owned();
        assert!(!whole.contains("gw-secret") && !whole.contains("hunter2") && whole.contains(" é "));
        for step in [1, 7, 4096, 70_001, text.len()] {
            let mut writer = MaskingWriter::new(&secrets, Vec::new());
            for piece in text.as_bytes().chunks(step) {
                writer.write_all(piece).unwrap();
                writer.flush().unwrap();
            }
            let written = String::from_utf8(writer.finish().unwrap()).unwrap();
            assert!(written == whole, "writes of {step} bytes");
        }
    }

    #[test]
    fn masks_configured_values_and_credential_shapes() {
        let env = EnvVars::from_pairs([
            ("OPENAI_API_KEY", "sk-test-0123456789abcdefghij"),
            ("MY_GATEWAY", "gw-secret-value-42"),
            ("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"),
            ("AWS_SESSION_TOKEN", "FwoGZXIvYXdzEJr//////////wEaDOEXAMPLE"),
            ("HOME", "/root/home/dir"),
            ("SHORT_KEY", "abc"),
        ]);
        let secrets = Secrets::from_env(&env, &["MY_GATEWAY"]);
        let body = "HTTP 401: echo {\"Authorization\": \"Bearer sk-test-0123456789abcdefghij\", \
                    \"x-gw\": \"gw-secret-value-42\"} wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY \
                    FwoGZXIvYXdzEJr//////////wEaDOEXAMPLE home /root/home/dir abc";
        let masked = secrets.mask(body);
        for secret in [
            "sk-test-0123456789abcdefghij",
            "gw-secret-value-42",
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            "FwoGZXIvYXdzEJr",
        ] {
            assert!(!masked.contains(secret), "{secret} survived: {masked}");
        }
        // What is not a secret stays.
        assert!(masked.contains("/root/home/dir") && masked.contains(" abc"), "{masked}");
    }

    #[test]
    fn masks_shapes_whose_value_was_never_seen() {
        let secrets = Secrets::default();
        for (text, secret) in [
            ("authorization: Bearer abcdefghijklmnop1234", "abcdefghijklmnop1234"),
            (
                "key sk-proj-AAAAAAAAAAAAAAAAAAAAAAAA leaked",
                "AAAAAAAAAAAAAAAAAAAAAAAA",
            ),
            (
                "aws_secret_access_key = Zm9vYmFyYmF6cXV4Zm9vYmFy",
                "Zm9vYmFyYmF6cXV4Zm9vYmFy",
            ),
            (
                "{\"x-amz-security-token\": \"IQoJb3JpZ2luX2VjEExample\"}",
                "IQoJb3JpZ2luX2VjEExample",
            ),
            ("X-Api-Key: 0123456789abcdef", "0123456789abcdef"),
        ] {
            let masked = secrets.mask(text);
            assert!(!masked.contains(secret), "{text} → {masked}");
            assert!(masked.contains(MASK), "{masked}");
        }
        // Ordinary prose is left alone, borrowed.
        assert!(matches!(secrets.mask("the decision is notify"), Cow::Borrowed(_)));
    }
}
