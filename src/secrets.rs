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
        for shape in SHAPES.iter() {
            if shape.is_match(&text) {
                text = Cow::Owned(shape.replace_all(&text, format!("${{1}}{MASK}")).into_owned());
            }
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
