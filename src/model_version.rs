//! What answered: the model version a provider says it ran, kept per answer, and the set of
//! versions behind a result.
//!
//! Hosted model names are aliases (`gpt-4o-mini` moves to a new snapshot on the provider's
//! schedule), so a gate that compares a candidate with a baseline made months ago may compare
//! two models. Providers say what ran: an OpenAI-compatible completion carries the resolved
//! `model` and, from some servers, a `system_fingerprint` of the backend configuration; a
//! Bedrock Converse response names the model a prompt router picked in
//! `trace.promptRouter.invokedModelId` (a plain model id or inference profile is already a
//! fixed version, and Converse reports nothing more). Each answer keeps what its provider said;
//! results and baselines keep how many samples each version answered.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::provider::ProviderKind;

/// The longest model name or fingerprint kept; a provider's headers and bodies are input like
/// any other, and real ids are far shorter (an inference-profile ARN is about 100 characters).
pub const MAX_VERSION_CHARS: usize = 200;

/// Most distinct versions a result or baseline lists; the rest are counted under one entry.
/// A provider that changes its fingerprint on every answer would otherwise fill a baseline.
pub const MAX_VERSIONS: usize = 20;

/// The model name given to answers beyond [`MAX_VERSIONS`].
const OTHER: &str = "(other versions)";

/// One version, as a provider named it.
///
/// Its parts are shared: every answer names its version, every case's tally keeps the versions
/// that answered it, and nearly all of them are one version.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ModelVersion {
    /// The model the provider says it ran (OpenAI `model`, Bedrock `invokedModelId`).
    pub model: Arc<str>,
    /// The backend configuration (OpenAI `system_fingerprint`), when the provider sends one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<Arc<str>>,
}

impl ModelVersion {
    /// A version from what a provider sent: control characters dropped, each part at most
    /// [`MAX_VERSION_CHARS`]; `None` when there is no model name left.
    pub fn new(model: &str, fingerprint: Option<&str>) -> Option<ModelVersion> {
        let model = clean(model)?;
        Some(ModelVersion {
            model: model.into(),
            fingerprint: fingerprint.and_then(clean).map(Arc::from),
        })
    }

    /// For a version [`ModelVersion::new`] made, whether it is the one `new` makes of `model`
    /// and `fingerprint`: what lets a reader of many answers share one version. Parts equal
    /// to cleaned ones are clean already, and cleaning keeps what is clean as it is.
    pub fn is(&self, model: &str, fingerprint: Option<&str>) -> bool {
        *self.model == *model && self.fingerprint.as_deref() == fingerprint
    }

    /// What the body of an answer says about the version that produced it (used for answers
    /// cached before versions were kept, whose raw bodies are in the cache).
    pub fn from_body(provider: ProviderKind, raw_body: &str) -> Option<ModelVersion> {
        let body: Value = serde_json::from_str(raw_body).ok()?;
        match provider {
            ProviderKind::Openai => ModelVersion::new(body["model"].as_str()?, body["system_fingerprint"].as_str()),
            ProviderKind::Bedrock => ModelVersion::new(body["trace"]["promptRouter"]["invokedModelId"].as_str()?, None),
        }
    }
}

impl std::fmt::Display for ModelVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.fingerprint {
            Some(fingerprint) => write!(f, "{} ({fingerprint})", self.model),
            None => f.write_str(&self.model),
        }
    }
}

fn clean(text: &str) -> Option<String> {
    // What a provider sends: short, printable, trimmed. Kept as it is, in one allocation (a
    // replay cleans the version of every answer it reads).
    let as_sent = !text.is_empty()
        && text.len() <= MAX_VERSION_CHARS
        && text.trim().len() == text.len()
        && !text.chars().any(char::is_control);
    match as_sent {
        true => Some(text.to_string()),
        false => cleaned(text),
    }
}

/// `text` without control characters, cut to [`MAX_VERSION_CHARS`] and trimmed; `None` if
/// nothing is left.
fn cleaned(text: &str) -> Option<String> {
    let text: String = text
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_VERSION_CHARS)
        .collect();
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_string())
}

/// A version and the samples it answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VersionCount {
    pub model: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
    pub samples: u64,
}

impl VersionCount {
    pub fn version(&self) -> ModelVersion {
        ModelVersion {
            model: self.model.as_str().into(),
            fingerprint: self.fingerprint.as_deref().map(Arc::from),
        }
    }

    /// Whether a stored entry is one this build could have written (for baselines read back).
    pub fn is_clean(&self) -> bool {
        ModelVersion::new(&self.model, self.fingerprint.as_deref()).as_ref() == Some(&self.version())
    }
}

/// Samples per version; counts of disjoint sets of samples add.
///
/// Every case's tally has one, and a case is nearly always answered by one version: a sorted
/// list sized to fit holds that in one small allocation, where a map's first node held room
/// for eleven (about 600 bytes a case).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Versions(Vec<(ModelVersion, u64)>);

impl Versions {
    pub fn count(&mut self, version: &ModelVersion, samples: u64) {
        match self.0.binary_search_by(|(known, _)| known.cmp(version)) {
            Ok(index) => self.0[index].1 += samples,
            Err(index) => {
                self.0.reserve_exact(1);
                self.0.insert(index, (version.clone(), samples));
            }
        }
    }

    pub fn add(&mut self, other: &Versions) {
        for (version, samples) in &other.0 {
            self.count(version, *samples);
        }
    }

    pub fn from_counts(counts: &[VersionCount]) -> Versions {
        let mut versions = Versions::default();
        for count in counts {
            versions.count(&count.version(), count.samples);
        }
        versions
    }

    /// The list a record or baseline keeps: most samples first (ties by name), at most
    /// [`MAX_VERSIONS`] entries, the rest summed into one.
    pub fn to_counts(&self) -> Vec<VersionCount> {
        let mut counts: Vec<VersionCount> = self
            .0
            .iter()
            .map(|(version, samples)| VersionCount {
                model: version.model.to_string(),
                fingerprint: version.fingerprint.as_deref().map(str::to_string),
                samples: *samples,
            })
            .collect();
        counts.sort_by(|a, b| {
            b.samples
                .cmp(&a.samples)
                .then_with(|| (&a.model, &a.fingerprint).cmp(&(&b.model, &b.fingerprint)))
        });
        if counts.len() > MAX_VERSIONS {
            let rest: u64 = counts[MAX_VERSIONS - 1..].iter().map(|c| c.samples).sum();
            counts.truncate(MAX_VERSIONS - 1);
            counts.push(VersionCount {
                model: OTHER.to_string(),
                fingerprint: None,
                samples: rest,
            });
        }
        counts
    }
}

/// "gpt-4o-mini-2024-07-18 (fp_a) ×90, … ×10" for every format; "not named" when empty.
pub fn describe(counts: &[VersionCount]) -> String {
    if counts.is_empty() {
        return "not named".to_string();
    }
    counts
        .iter()
        .map(|c| format!("{} ×{}", c.version(), c.samples))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The candidate was answered by versions the baseline never saw.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelChange {
    pub baseline: Vec<VersionCount>,
    pub candidate: Vec<VersionCount>,
    /// The candidate's versions that no baseline answer came from.
    pub new: Vec<ModelVersion>,
}

impl ModelChange {
    /// One line for formats without a heading of their own: "model changed: " and the details.
    pub fn summary(&self) -> String {
        format!("model changed: {}", self.details())
    }

    /// What changed, and what it means for the verdict.
    pub fn details(&self) -> String {
        format!(
            "the baseline was answered by {}, this run by {}; a difference may \
             be the model's, not the prompt's (this alone does not change the verdict)",
            describe(&self.baseline),
            describe(&self.candidate)
        )
    }
}

/// A change when the candidate has answers from a version the baseline never had. Nothing is
/// said when either side does not know its versions (a baseline written before they were
/// kept, a provider that names none), or when the candidate only lacks some of the baseline's
/// versions (a load-balanced backend that the fewer samples of a sequential gate missed).
pub fn change(baseline: &[VersionCount], candidate: &[VersionCount]) -> Option<ModelChange> {
    if baseline.is_empty() || candidate.is_empty() {
        return None;
    }
    let known: std::collections::BTreeSet<ModelVersion> = baseline.iter().map(VersionCount::version).collect();
    let new: Vec<ModelVersion> = candidate
        .iter()
        .map(VersionCount::version)
        .filter(|version| !known.contains(version))
        .collect();
    (!new.is_empty()).then(|| ModelChange {
        baseline: baseline.to_vec(),
        candidate: candidate.to_vec(),
        new,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_version_as_sent_is_kept_as_cleaning_would_keep_it() {
        let long = "m".repeat(MAX_VERSION_CHARS);
        let longer = "é".repeat(MAX_VERSION_CHARS);
        for text in [
            "gpt-4o-2024-08-06",
            "",
            " padded ",
            "\u{3000}wide space",
            "bell\u{7}",
            "\u{1b}[31mred",
            long.as_str(),
            &format!("{long}x"),
            longer.as_str(),
            "\n",
        ] {
            assert_eq!(clean(text), cleaned(text), "{text:?}");
            // A version matches what was sent only when cleaning kept it as it was.
            let made = ModelVersion::new("m", Some(text)).unwrap();
            assert_eq!(
                made.is("m", Some(text)),
                cleaned(text).as_deref() == Some(text),
                "{text:?}"
            );
        }
    }

    fn version(model: &str, fingerprint: Option<&str>) -> ModelVersion {
        ModelVersion::new(model, fingerprint).expect("a model name")
    }

    fn counts(entries: &[(&str, Option<&str>, u64)]) -> Vec<VersionCount> {
        let mut versions = Versions::default();
        for (model, fingerprint, samples) in entries {
            versions.count(&version(model, *fingerprint), *samples);
        }
        versions.to_counts()
    }

    #[test]
    fn reads_what_each_provider_says() {
        let openai = r#"{"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_50cad350e4","choices":[]}"#;
        assert_eq!(
            ModelVersion::from_body(ProviderKind::Openai, openai),
            Some(version("gpt-4o-2024-08-06", Some("fp_50cad350e4")))
        );
        let routed = r#"{"trace":{"promptRouter":{"invokedModelId":"arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-3-haiku-20240307-v1:0"}}}"#;
        assert_eq!(
            ModelVersion::from_body(ProviderKind::Bedrock, routed).map(|v| v.model),
            Some(
                "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-3-haiku-20240307-v1:0"
                    .into()
            )
        );
        // A plain Converse answer, a body that is not JSON, a model that is not a string.
        assert_eq!(
            ModelVersion::from_body(ProviderKind::Bedrock, r#"{"stopReason":"end_turn"}"#),
            None
        );
        assert_eq!(ModelVersion::from_body(ProviderKind::Openai, "not json"), None);
        assert_eq!(ModelVersion::from_body(ProviderKind::Openai, r#"{"model":7}"#), None);
    }

    #[test]
    fn hostile_names_are_bounded_and_printable() {
        let long = "m".repeat(10_000);
        let v = version(&format!("\u{1b}[31m{long}\n"), Some("fp\u{0}\r\n"));
        assert_eq!(v.model.chars().count(), MAX_VERSION_CHARS);
        assert!(!v.model.contains('\u{1b}'));
        assert_eq!(v.fingerprint.as_deref(), Some("fp"));
        assert_eq!(ModelVersion::new(" \n\t", Some("fp")), None);
        assert_eq!(version("m", Some("\n")).fingerprint, None);
    }

    #[test]
    fn counts_add_and_list_most_samples_first() {
        let mut a = Versions::default();
        a.count(&version("m", Some("fp_1")), 3);
        let mut b = Versions::default();
        b.count(&version("m", Some("fp_2")), 5);
        b.count(&version("m", Some("fp_1")), 1);
        a.add(&b);
        let listed = a.to_counts();
        assert_eq!(listed, counts(&[("m", Some("fp_2"), 5), ("m", Some("fp_1"), 4)]));
        assert_eq!(Versions::from_counts(&listed), a);
    }

    #[test]
    fn a_fingerprint_per_answer_is_capped() {
        let mut versions = Versions::default();
        for i in 0..100u64 {
            versions.count(&version("m", Some(&format!("fp_{i:03}"))), 1 + i % 2);
        }
        let listed = versions.to_counts();
        assert_eq!(listed.len(), MAX_VERSIONS);
        assert_eq!(listed.iter().map(|c| c.samples).sum::<u64>(), 150);
        assert_eq!(listed.last().map(|c| c.model.as_str()), Some(OTHER));
        assert!(listed.iter().all(VersionCount::is_clean));
    }

    #[test]
    fn a_change_is_a_version_the_baseline_never_saw() {
        let baseline = counts(&[
            ("gpt-4o-2024-05-13", Some("fp_a"), 90),
            ("gpt-4o-2024-05-13", Some("fp_b"), 10),
        ]);
        // The same versions, or fewer of them: no change.
        assert_eq!(
            change(&baseline, &counts(&[("gpt-4o-2024-05-13", Some("fp_a"), 100)])),
            None
        );
        assert_eq!(change(&baseline, &baseline), None);
        // Unknown on either side: nothing to say.
        assert_eq!(change(&[], &baseline), None);
        assert_eq!(change(&baseline, &[]), None);
        // A new snapshot behind the alias.
        let candidate = counts(&[
            ("gpt-4o-2024-08-06", Some("fp_c"), 60),
            ("gpt-4o-2024-05-13", Some("fp_a"), 40),
        ]);
        let found = change(&baseline, &candidate).expect("a change");
        assert_eq!(found.new, vec![version("gpt-4o-2024-08-06", Some("fp_c"))]);
        let line = found.summary();
        assert!(line.contains("gpt-4o-2024-05-13 (fp_a) ×90"), "{line}");
        assert!(line.contains("gpt-4o-2024-08-06 (fp_c) ×60"), "{line}");
        assert!(line.contains("not the prompt's"), "{line}");
    }
}
