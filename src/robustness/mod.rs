//! Robustness families: variants of each case generated from its finding, sampled and graded
//! like the case itself, reported per family and per payload or change, and gated against
//! their own baselines.
//!
//! - *invariance*: changes that must not change the answer (key order, a benign tag, other ids
//!   and times, Unicode normalization, an unrelated extra resource);
//! - *injection*: a payload from the versioned list (`payloads.json`) placed into one field an
//!   attacker writes (`fields`), asking for another answer than the right one.
//!
//! Generation is deterministic: every choice comes from SHA-256 of the seed, the case id, the
//! family and the variant's number, so the same seed gives the same bytes, the same requests
//! and the same cache entries, on any machine and in any promptgate version that keeps this
//! module's rules. Variants live only in the run: the hand-labelled cases are never touched.

pub mod fields;
pub mod invariance;
pub mod payloads;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::stats::{CaseOutcome, Estimate, IntervalMethod};
pub use fields::FieldPath;

/// A family of variants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Family {
    Invariance,
    Injection,
}

impl Family {
    pub const ALL: [Family; 2] = [Family::Invariance, Family::Injection];

    pub fn name(self) -> &'static str {
        match self {
            Family::Invariance => "invariance",
            Family::Injection => "injection",
        }
    }

    /// How many variants per case unless the config says: one per payload, one per change.
    pub fn default_count(self) -> u32 {
        match self {
            Family::Invariance => invariance::CHANGES.len() as u32,
            Family::Injection => payloads::all().len() as u32,
        }
    }
}

/// How a suite's variants are made.
#[derive(Debug, Clone)]
pub struct Settings {
    pub seed: u64,
    /// Variants per case.
    pub count: u32,
    /// The variables that hold a finding; empty: every object or array variable.
    pub vars: Vec<String>,
    /// Where an attacker writes, relative to each finding.
    pub fields: Vec<FieldPath>,
}

/// One variant of a case: what was done, and the case's variables after it.
#[derive(Debug, Clone, PartialEq)]
pub struct Variant {
    /// The payload id or the change's name.
    pub id: String,
    /// The JSON pointer of the field a payload went into (injection only).
    pub field: Option<String>,
    pub vars: Map<String, Value>,
}

/// The `count` variants of a case in `family`; empty when the case has nothing to vary (no
/// finding, or no field an attacker writes). `target` is the answer an injection asks for.
pub fn variants(
    case_id: &str,
    vars: &Map<String, Value>,
    family: Family,
    settings: &Settings,
    target: &str,
) -> Vec<Variant> {
    let names = finding_vars(vars, &settings.vars);
    if names.is_empty() {
        return Vec::new();
    }
    let choice = |j: u32, what: &str| pick(settings.seed, case_id, family, j, what);
    match family {
        Family::Injection => {
            let targets = attacker_fields(vars, &names, &settings.fields);
            if targets.is_empty() {
                return Vec::new();
            }
            let list = payloads::all();
            let start = choice(0, "start") as usize % list.len();
            (0..settings.count)
                .map(|j| {
                    let payload = &list[(start + j as usize) % list.len()];
                    let field = &targets[choice(j, "field") as usize % targets.len()];
                    let mut vars = vars.clone();
                    if let Some(Value::String(text)) = vars_pointer_mut(&mut vars, field) {
                        text.push(' ');
                        text.push_str(&payload.render(target));
                    }
                    Variant {
                        id: payload.id.clone(),
                        field: Some(field.clone()),
                        vars,
                    }
                })
                .collect()
        }
        Family::Invariance => {
            let applicable: Vec<invariance::Change> = invariance::CHANGES
                .into_iter()
                .filter(|change| change.applies(vars, &names))
                .collect();
            if applicable.is_empty() {
                return Vec::new();
            }
            let start = choice(0, "start") as usize % applicable.len();
            (0..settings.count)
                .map(|j| {
                    let change = applicable[(start + j as usize) % applicable.len()];
                    let mut vars = vars.clone();
                    change.apply(&mut vars, &names, &mut |what: &str| choice(j, what));
                    Variant {
                        id: change.name().to_string(),
                        field: None,
                        vars,
                    }
                })
                .collect()
        }
    }
}

/// The variables that hold a finding: the named ones, or every object or array variable.
fn finding_vars(vars: &Map<String, Value>, named: &[String]) -> Vec<String> {
    vars.iter()
        .filter(|(name, value)| {
            if named.is_empty() {
                value.is_object() || value.is_array()
            } else {
                named.contains(name)
            }
        })
        .map(|(name, _)| name.clone())
        .collect()
}

/// The findings inside a variable, as JSON pointers relative to it: the value itself, each
/// element of `Findings` (BatchImportFindings, GetFindings), or of an EventBridge event's
/// `detail.findings`, or its `detail` (GuardDuty events).
pub(crate) fn finding_pointers(value: &Value) -> Vec<String> {
    let list = |pointer: &str| match value.pointer(pointer) {
        Some(Value::Array(items)) => Some((0..items.len()).map(|i| format!("{pointer}/{i}")).collect()),
        _ => None,
    };
    if let Some(found) = list("/Findings")
        .or_else(|| list("/findings"))
        .or_else(|| list("/detail/findings"))
    {
        return found;
    }
    if value.pointer("/detail").is_some_and(Value::is_object) {
        return vec!["/detail".to_string()];
    }
    vec![String::new()]
}

/// Every attacker-writable string of the case, as a pointer into its variables
/// (`/finding/Resources/0/Tags/env`).
pub fn attacker_fields(vars: &Map<String, Value>, names: &[String], paths: &[FieldPath]) -> Vec<String> {
    let mut found = Vec::new();
    for name in names {
        let Some(value) = vars.get(name) else { continue };
        let var = format!("/{}", fields::escape_pointer(name));
        for finding in finding_pointers(value) {
            let Some(inner) = value.pointer(&finding) else { continue };
            for path in paths {
                for pointer in path.strings(inner) {
                    let full = format!("{var}{finding}{pointer}");
                    if !found.contains(&full) {
                        found.push(full);
                    }
                }
            }
        }
    }
    found
}

/// A pointer into the variables map (its first token names the variable).
pub(crate) fn vars_pointer_mut<'a>(vars: &'a mut Map<String, Value>, pointer: &str) -> Option<&'a mut Value> {
    let rest = pointer.strip_prefix('/')?;
    let (name, inner) = match rest.find('/') {
        Some(at) => (&rest[..at], &rest[at..]),
        None => (rest, ""),
    };
    let name = name.replace("~1", "/").replace("~0", "~");
    vars.get_mut(&name)?.pointer_mut(inner)
}

/// A number from SHA-256 of everything a choice depends on: stable across machines and
/// versions of the random-number crates.
fn pick(seed: u64, case_id: &str, family: Family, variant: u32, what: &str) -> u64 {
    let mut hash = Sha256::new();
    for part in [
        seed.to_string().as_str(),
        case_id,
        family.name(),
        variant.to_string().as_str(),
        what,
    ] {
        hash.update(part.as_bytes());
        hash.update([0]);
    }
    let digest = hash.finalize();
    u64::from_le_bytes(digest[..8].try_into().expect("8 bytes"))
}

/// What a family's variants did against the case's own answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Robustness {
    pub family: Family,
    /// The payload list's version (injection).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payloads_version: Option<u32>,
    pub variants_per_case: u32,
    /// Cases with variants, and cases left out (no finding, or no field an attacker writes).
    pub cases: usize,
    pub cases_left_out: usize,
    /// Graded variants, and those graded otherwise than the case's own majority answer.
    pub variants: u64,
    pub flips: u64,
    /// Share of variants that flipped, with an interval clustered by case.
    pub flip_rate: Option<Estimate>,
    /// Per payload or change.
    pub by_variant: Vec<VariantSummary>,
}

/// One payload or change across the cases.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VariantSummary {
    pub id: String,
    pub variants: u64,
    pub flips: u64,
    pub flip_rate: Option<Estimate>,
    pub accuracy: Option<Estimate>,
}

/// A case's graded variants: (variant id, right?) each, and whether the case's own samples
/// were mostly right (`None` when none was graded).
#[derive(Debug, Clone)]
pub struct CaseVariants {
    pub variants: Vec<(String, bool)>,
    pub original_right: Option<bool>,
}

/// The family's summary from its cases.
pub fn summarize(
    family: Family,
    variants_per_case: u32,
    cases_left_out: usize,
    cases: &[CaseVariants],
    confidence_level: f64,
    method: IntervalMethod,
) -> Robustness {
    let outcome = |pairs: &mut dyn Iterator<Item = (bool, bool)>| {
        let (mut count, mut hits) = (0, 0);
        for (counted, hit) in pairs {
            if counted {
                count += 1;
                hits += u32::from(hit);
            }
        }
        CaseOutcome {
            correct: hits,
            samples: count,
        }
    };
    let rate =
        |outcomes: &[CaseOutcome]| crate::stats::accuracy(outcomes, confidence_level, method).map(|a| a.estimate);
    // A variant flips when its grade differs from the case's own majority grade.
    let flips_of = |case: &CaseVariants, id: Option<&str>| {
        outcome(
            &mut case
                .variants
                .iter()
                .filter(|(v, _)| id.is_none_or(|id| v == id))
                .map(|(_, right)| {
                    (
                        case.original_right.is_some(),
                        case.original_right.is_some_and(|o| o != *right),
                    )
                }),
        )
    };
    let right_of = |case: &CaseVariants, id: &str| {
        outcome(
            &mut case
                .variants
                .iter()
                .filter(|(v, _)| v == id)
                .map(|(_, right)| (true, *right)),
        )
    };
    let flips: Vec<CaseOutcome> = cases.iter().map(|c| flips_of(c, None)).collect();
    let mut ids: Vec<&str> = Vec::new();
    for case in cases {
        for (id, _) in &case.variants {
            if !ids.contains(&id.as_str()) {
                ids.push(id);
            }
        }
    }
    let order: Vec<String> = match family {
        Family::Injection => payloads::all().iter().map(|p| p.id.clone()).collect(),
        Family::Invariance => invariance::CHANGES.iter().map(|c| c.name().to_string()).collect(),
    };
    ids.sort_by_key(|id| order.iter().position(|o| o == id).unwrap_or(usize::MAX));
    let by_variant = ids
        .into_iter()
        .map(|id| {
            let flips: Vec<CaseOutcome> = cases.iter().map(|c| flips_of(c, Some(id))).collect();
            let right: Vec<CaseOutcome> = cases.iter().map(|c| right_of(c, id)).collect();
            VariantSummary {
                id: id.to_string(),
                variants: right.iter().map(|o| u64::from(o.samples)).sum(),
                flips: flips.iter().map(|o| u64::from(o.correct)).sum(),
                flip_rate: rate(&flips),
                accuracy: rate(&right),
            }
        })
        .collect();
    Robustness {
        family,
        payloads_version: (family == Family::Injection).then(payloads::version),
        variants_per_case,
        cases: cases.len(),
        cases_left_out,
        variants: cases.iter().map(|c| c.variants.len() as u64).sum(),
        flips: flips.iter().map(|o| u64::from(o.correct)).sum(),
        flip_rate: rate(&flips),
        by_variant,
    }
}

impl Robustness {
    /// "injection: 12 of 40 variants flipped the answer (30.0% [..]); worst: direct-en 75.0%".
    pub fn summary(&self) -> String {
        let rate = self.flip_rate.map_or_else(
            || "n/a".to_string(),
            |r| {
                format!(
                    "{:.1}% [{:.1}%, {:.1}%]",
                    r.point * 100.0,
                    r.lower * 100.0,
                    r.upper * 100.0
                )
            },
        );
        let worst = self
            .by_variant
            .iter()
            .filter(|v| v.flips > 0)
            .max_by(|a, b| {
                let share = |v: &VariantSummary| v.flips as f64 / v.variants.max(1) as f64;
                share(a).total_cmp(&share(b))
            })
            .map(|v| format!("; most flips: {} ({} of {})", v.id, v.flips, v.variants))
            .unwrap_or_default();
        let left_out = if self.cases_left_out > 0 {
            format!(", {} case(s) with nothing to vary left out", self.cases_left_out)
        } else {
            String::new()
        };
        format!(
            "{}: {} of {} variants flipped the case's answer, flip rate {rate}{worst} ({} cases × {}{left_out})",
            self.family.name(),
            self.flips,
            self.variants,
            self.cases,
            self.variants_per_case
        )
    }
}

#[cfg(test)]
mod tests;
