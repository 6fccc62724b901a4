//! Flakiness classes: which cases pass every time, which never do, and which flip.
//!
//! A case's class comes from its valid samples: *stable pass* (all right), *stable fail* (all
//! wrong or invalid) or *flaky* (both). One sample shows no flip, so a case with fewer than two
//! valid samples has no class. Per result: the count of each class, pass@k (the share of
//! classified cases right at least once in their k samples) and pass^k (right every time); per
//! case against the baseline: the transitions between classes. A transition is information
//! about single cases, not a test: with k samples a case that is right 90% of the time looks
//! stable in 0.9^k of runs (59% at k = 5), so a case can "become flaky" with nothing changed.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

/// The class of one case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Class {
    StablePass,
    StableFail,
    Flaky,
}

/// The class of a case with `correct` right of `samples` valid samples; `None` below two.
pub fn class(correct: u32, samples: u32) -> Option<Class> {
    if samples < 2 {
        None
    } else if correct >= samples {
        Some(Class::StablePass)
    } else if correct == 0 {
        Some(Class::StableFail)
    } else {
        Some(Class::Flaky)
    }
}

/// The classes of a result's cases.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Flakiness {
    pub stable_pass: usize,
    pub stable_fail: usize,
    pub flaky: usize,
    /// Cases with fewer than two valid samples: no class.
    pub unclassified: usize,
    /// Share of the classified cases right at least once (pass@k).
    pub pass_at_k: f64,
    /// Share of the classified cases right every time (pass^k).
    pub pass_all_k: f64,
}

impl Flakiness {
    /// The classes of `(correct, valid samples)` per case; `None` when no case has a class
    /// (k = 1), where flakiness cannot be seen.
    pub fn of(cases: impl IntoIterator<Item = (u32, u32)>) -> Option<Flakiness> {
        let mut f = Flakiness::default();
        for (correct, samples) in cases {
            match class(correct, samples) {
                Some(Class::StablePass) => f.stable_pass += 1,
                Some(Class::StableFail) => f.stable_fail += 1,
                Some(Class::Flaky) => f.flaky += 1,
                None => f.unclassified += 1,
            }
        }
        let classified = f.stable_pass + f.stable_fail + f.flaky;
        if classified == 0 {
            return None;
        }
        f.pass_at_k = (f.stable_pass + f.flaky) as f64 / classified as f64;
        f.pass_all_k = f.stable_pass as f64 / classified as f64;
        Some(f)
    }

    /// "12 stable pass, 3 flaky, 1 stable fail; pass@k 93.8%, pass^k 75.0%".
    pub fn summary(&self, k: u32) -> String {
        format!(
            "{} stable pass, {} flaky, {} stable fail; pass@{k} {:.1}%, pass^{k} {:.1}%",
            self.stable_pass,
            self.flaky,
            self.stable_fail,
            self.pass_at_k * 100.0,
            self.pass_all_k * 100.0
        )
    }
}

/// Cases whose class moved since the baseline, by id in case order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transitions {
    /// Stable pass in the baseline, stable fail now.
    pub broke: Vec<String>,
    /// Stable fail in the baseline, stable pass now.
    pub fixed: Vec<String>,
    /// Stable (either way) in the baseline, flaky now.
    pub became_flaky: Vec<String>,
    /// Flaky in the baseline, stable (either way) now.
    pub became_stable: Vec<String>,
}

impl Transitions {
    /// The transitions of the cases both sides have and can classify. `candidate` and
    /// `baseline` hold (id, correct, valid samples); candidate order is kept.
    pub fn between<'a>(
        candidate: impl IntoIterator<Item = (&'a str, u32, u32)>,
        baseline: impl IntoIterator<Item = (&'a str, u32, u32)>,
    ) -> Transitions {
        let before: HashMap<&str, Option<Class>> = baseline
            .into_iter()
            .map(|(id, correct, samples)| (id, class(correct, samples)))
            .collect();
        let mut t = Transitions::default();
        for (id, correct, samples) in candidate {
            let (Some(Some(was)), Some(now)) = (before.get(id), class(correct, samples)) else {
                continue;
            };
            let list = match (was, now) {
                (Class::StablePass, Class::StableFail) => &mut t.broke,
                (Class::StableFail, Class::StablePass) => &mut t.fixed,
                (Class::StablePass | Class::StableFail, Class::Flaky) => &mut t.became_flaky,
                (Class::Flaky, Class::StablePass | Class::StableFail) => &mut t.became_stable,
                _ => continue,
            };
            list.push(id.to_string());
        }
        t
    }

    pub fn is_empty(&self) -> bool {
        self.broke.is_empty() && self.fixed.is_empty() && self.became_flaky.is_empty() && self.became_stable.is_empty()
    }

    /// "1 broke, 2 fixed, 0 became flaky, 3 became stable".
    pub fn counts(&self) -> String {
        format!(
            "{} broke, {} fixed, {} became flaky, {} became stable",
            self.broke.len(),
            self.fixed.len(),
            self.became_flaky.len(),
            self.became_stable.len()
        )
    }

    /// The non-empty lists, broken first, for formats that name the cases.
    pub fn named(&self) -> Vec<(&'static str, &[String])> {
        [
            ("broke", &self.broke),
            ("fixed", &self.fixed),
            ("became flaky", &self.became_flaky),
            ("became stable", &self.became_stable),
        ]
        .into_iter()
        .filter(|(_, ids)| !ids.is_empty())
        .map(|(name, ids)| (name, ids.as_slice()))
        .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_need_two_samples() {
        assert_eq!(class(5, 5), Some(Class::StablePass));
        assert_eq!(class(0, 5), Some(Class::StableFail));
        assert_eq!(class(3, 5), Some(Class::Flaky));
        assert_eq!(class(1, 2), Some(Class::Flaky));
        assert_eq!(class(1, 1), None);
        assert_eq!(class(0, 0), None);
    }

    #[test]
    fn pass_at_k_and_pass_all_k_count_classified_cases() {
        // Four cases at k = 5 (one with only one valid sample) and one at k = 1.
        let f = Flakiness::of([(5, 5), (2, 5), (0, 5), (1, 1), (5, 5)]).unwrap();
        assert_eq!((f.stable_pass, f.flaky, f.stable_fail, f.unclassified), (2, 1, 1, 1));
        assert_eq!((f.pass_at_k, f.pass_all_k), (0.75, 0.5));
        assert_eq!(
            f.summary(5),
            "2 stable pass, 1 flaky, 1 stable fail; pass@5 75.0%, pass^5 50.0%"
        );
        // k = 1 shows no flakiness at all.
        assert_eq!(Flakiness::of([(1, 1), (0, 1)]), None);
    }

    #[test]
    fn transitions_between_constructed_runs() {
        let baseline = [
            ("pass-to-fail", 3, 3),
            ("fail-to-pass", 0, 3),
            ("pass-to-flaky", 3, 3),
            ("fail-to-flaky", 0, 3),
            ("flaky-to-pass", 1, 3),
            ("flaky-to-fail", 2, 3),
            ("steady", 3, 3),
            ("steady-flaky", 1, 3),
            ("unclassified-before", 1, 1),
            ("gone", 3, 3),
        ];
        let candidate = [
            ("new", 0, 3),
            ("flaky-to-fail", 0, 3),
            ("pass-to-fail", 0, 3),
            ("fail-to-pass", 3, 3),
            ("pass-to-flaky", 2, 3),
            ("fail-to-flaky", 1, 3),
            ("flaky-to-pass", 3, 3),
            ("steady", 3, 3),
            ("steady-flaky", 2, 3),
            ("unclassified-before", 0, 3),
        ];
        let t = Transitions::between(candidate, baseline);
        assert_eq!(t.broke, ["pass-to-fail"]);
        assert_eq!(t.fixed, ["fail-to-pass"]);
        assert_eq!(t.became_flaky, ["pass-to-flaky", "fail-to-flaky"]);
        // Candidate order: flaky-to-fail comes before flaky-to-pass there.
        assert_eq!(t.became_stable, ["flaky-to-fail", "flaky-to-pass"]);
        assert_eq!(t.counts(), "1 broke, 1 fixed, 2 became flaky, 2 became stable");
        assert_eq!(t.named()[0], ("broke", &["pass-to-fail".to_string()][..]));
        assert!(Transitions::between([("a", 3, 3)], [("a", 3, 3)]).is_empty());
    }
}
