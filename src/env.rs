//! A snapshot of the environment variables the engine may consult.
//!
//! Only `cli.rs` reads the process environment; the engine receives this snapshot, so tests can
//! hand it any environment without touching the process's.

use std::collections::BTreeMap;

/// Environment variables by name.
#[derive(Debug, Clone, Default)]
pub struct EnvVars(BTreeMap<String, String>);

impl EnvVars {
    /// Capture the process environment (non-UTF-8 values are skipped).
    pub fn from_process() -> EnvVars {
        EnvVars(
            std::env::vars_os()
                .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
                .collect(),
        )
    }

    /// A snapshot holding exactly these pairs.
    pub fn from_pairs<I, K, V>(pairs: I) -> EnvVars
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        EnvVars(pairs.into_iter().map(|(k, v)| (k.into(), v.into())).collect())
    }

    /// Every variable, by name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// The value of `name`, if set and non-empty.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str).filter(|v| !v.is_empty())
    }
}
