//! Changes that must not change a case's answer: the invariance family. Each applies to every
//! finding in the case's finding variables, with its choices (an order, a tag value, a shift of
//! days) drawn from the family's seed.

use serde_json::{Map, Value};
use unicode_normalization::UnicodeNormalization;

use super::finding_pointers;

/// One change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Every object's keys in another order (rendered JSON changes, the finding does not).
    KeyOrder,
    /// A harmless tag on the first resource (`CostCenter`).
    BenignTag,
    /// Timestamps shifted by 1–30 days and the finding's own id renewed.
    IdsAndTimes,
    /// Every string and key NFKC-normalized (full-width digits and letters become ASCII), and a
    /// trailing newline on descriptions.
    UnicodeNfkc,
    /// An unrelated S3 bucket added to `Resources`.
    ExtraResource,
}

/// Every change, in report order.
pub const CHANGES: [Change; 5] = [
    Change::KeyOrder,
    Change::BenignTag,
    Change::IdsAndTimes,
    Change::UnicodeNfkc,
    Change::ExtraResource,
];

impl Change {
    pub fn name(self) -> &'static str {
        match self {
            Change::KeyOrder => "key-order",
            Change::BenignTag => "benign-tag",
            Change::IdsAndTimes => "ids-and-times",
            Change::UnicodeNfkc => "unicode-nfkc",
            Change::ExtraResource => "extra-resource",
        }
    }

    /// Whether the change does something to these variables.
    pub fn applies(self, vars: &Map<String, Value>, names: &[String]) -> bool {
        let mut trial = vars.clone();
        self.apply(&mut trial, names, &mut |_| 1);
        trial != *vars || (self == Change::KeyOrder && key_order_changes(vars, names))
    }

    /// Apply the change; `choice` draws a number for each named decision.
    pub fn apply(self, vars: &mut Map<String, Value>, names: &[String], choice: &mut dyn FnMut(&str) -> u64) {
        for name in names {
            let Some(value) = vars.get_mut(name) else { continue };
            if self == Change::KeyOrder {
                let rotate = choice("rotate");
                reorder(value, rotate);
                continue;
            }
            if self == Change::UnicodeNfkc {
                *value = nfkc(value);
            }
            for pointer in finding_pointers(value) {
                let Some(Value::Object(finding)) = value.pointer_mut(&pointer) else {
                    continue;
                };
                match self {
                    Change::BenignTag => benign_tag(finding, choice("tag")),
                    Change::IdsAndTimes => ids_and_times(finding, choice("days"), choice("id")),
                    Change::UnicodeNfkc => {
                        for key in ["Description", "description"] {
                            if let Some(Value::String(text)) = finding.get_mut(key) {
                                text.push('\n');
                            }
                        }
                    }
                    Change::ExtraResource => extra_resource(finding, choice("resource")),
                    Change::KeyOrder => {}
                }
            }
        }
    }
}

/// Whether reordering changes the serialized order (a map equal as a value may differ in
/// order, which is what the prompt sees).
fn key_order_changes(vars: &Map<String, Value>, names: &[String]) -> bool {
    names.iter().filter_map(|n| vars.get(n)).any(|value| {
        let mut reordered = value.clone();
        reorder(&mut reordered, 1);
        serde_json::to_string(&reordered).ok() != serde_json::to_string(value).ok()
    })
}

/// Every object's keys rotated by `rotate` (mod its length, at least 1) and, on an odd draw,
/// reversed.
fn reorder(value: &mut Value, rotate: u64) {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(String, Value)> = std::mem::take(map).into_iter().collect();
            for (_, child) in &mut entries {
                reorder(child, rotate);
            }
            if entries.len() > 1 {
                let by = 1 + (rotate as usize) % (entries.len() - 1);
                entries.rotate_left(by);
                if rotate % 2 == 1 {
                    entries.reverse();
                }
            }
            map.extend(entries);
        }
        Value::Array(items) => items.iter_mut().for_each(|item| reorder(item, rotate)),
        _ => {}
    }
}

fn nfkc(value: &Value) -> Value {
    match value {
        Value::String(text) => Value::String(text.nfkc().collect()),
        Value::Array(items) => Value::Array(items.iter().map(nfkc).collect()),
        Value::Object(map) => Value::Object(map.iter().map(|(k, v)| (k.nfkc().collect(), nfkc(v))).collect()),
        other => other.clone(),
    }
}

/// The value of `key` in `map`, ignoring ASCII case.
fn get_ci<'a>(map: &'a mut Map<String, Value>, key: &str) -> Option<&'a mut Value> {
    let found = map.keys().find(|k| k.eq_ignore_ascii_case(key))?.clone();
    map.get_mut(&found)
}

/// `CostCenter` on the first ASFF resource, or among a GuardDuty instance's tags.
fn benign_tag(finding: &mut Map<String, Value>, draw: u64) {
    let value = format!("cc-{:04}", draw % 10_000);
    if let Some(Value::Array(resources)) = get_ci(finding, "Resources") {
        if let Some(Value::Object(resource)) = resources.first_mut() {
            let tags = resource.entry("Tags").or_insert_with(|| Value::Object(Map::new()));
            if let Value::Object(tags) = tags {
                if !tags.contains_key("CostCenter") {
                    tags.insert("CostCenter".into(), Value::String(value));
                }
            }
        }
        return;
    }
    let tags = get_ci(finding, "Resource")
        .and_then(|r| r.as_object_mut())
        .and_then(|r| get_ci(r, "InstanceDetails"))
        .and_then(|d| d.as_object_mut())
        .and_then(|d| get_ci(d, "Tags"));
    if let Some(Value::Array(tags)) = tags {
        // The casing of the tags already there (`Key`/`Value` or `key`/`value`).
        let upper = tags
            .first()
            .and_then(Value::as_object)
            .is_some_and(|t| t.contains_key("Key"));
        let (k, v) = if upper { ("Key", "Value") } else { ("key", "value") };
        tags.push(serde_json::json!({k: "CostCenter", v: value}));
    }
}

/// Timestamps shifted by 1–30 days; the finding's own id given another last segment.
fn ids_and_times(finding: &mut Map<String, Value>, days: u64, id_draw: u64) {
    let shift = jiff::SignedDuration::from_hours(24 * (1 + (days % 30) as i64));
    shift_times(finding, shift);
    for key in ["Id", "id"] {
        if let Some(Value::String(id)) = finding.get_mut(key) {
            if let Some(at) = id.rfind('/') {
                let length = id.len() - at - 1;
                let fresh: String = format!("{id_draw:016x}{:016x}", id_draw.rotate_left(17))
                    .chars()
                    .cycle()
                    .take(length)
                    .collect();
                id.replace_range(at + 1.., &fresh);
            }
        }
    }
}

fn shift_times(map: &mut Map<String, Value>, shift: jiff::SignedDuration) {
    for value in map.values_mut() {
        match value {
            Value::String(text) => {
                if let Ok(time) = text.parse::<jiff::Timestamp>() {
                    if let Ok(later) = time.checked_add(shift) {
                        *text = later.to_string();
                    }
                }
            }
            Value::Object(child) => shift_times(child, shift),
            Value::Array(items) => {
                for item in items {
                    if let Value::Object(child) = item {
                        shift_times(child, shift);
                    }
                }
            }
            _ => {}
        }
    }
}

/// An unrelated bucket appended to an ASFF finding's `Resources`.
fn extra_resource(finding: &mut Map<String, Value>, draw: u64) {
    let Some(Value::Array(resources)) = get_ci(finding, "Resources") else {
        return;
    };
    let region = resources
        .first()
        .and_then(|r| r.get("Region"))
        .and_then(Value::as_str)
        .unwrap_or("us-east-1")
        .to_string();
    resources.push(serde_json::json!({
        "Type": "AwsS3Bucket",
        "Id": format!("arn:aws:s3:::promptgate-unrelated-{:08x}", draw as u32),
        "Partition": "aws",
        "Region": region,
    }));
}
