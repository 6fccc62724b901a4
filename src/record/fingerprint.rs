//! The content fingerprint that makes a recorded case a duplicate of another.
//!
//! The same finding recorded twice differs in what changes while it lives: its timestamps, the
//! random part of its id, GuardDuty's occurrence count, its workflow and archive state. The
//! fingerprint is the SHA-256 of the case's variables (after redaction) with those parts set
//! aside, so a re-export of the same finding with the same rule is recognised, and a different
//! rule or a different resource is not.

use std::sync::LazyLock;

use regex::Regex;
use serde_json::{Map, Value};

use crate::digest;

/// Field names (the last `/` segment, any case) that change while a finding lives.
const VOLATILE_FIELDS: [&str; 10] = [
    "createdat",
    "updatedat",
    "firstobservedat",
    "lastobservedat",
    "processedat",
    "eventfirstseen",
    "eventlastseen",
    "workflow",
    "workflowstate",
    "recordstate",
];

/// Fields that are volatile inside GuardDuty's `service` object (and its ASFF `ProductFields`
/// keys `aws/guardduty/service/count`, …).
const VOLATILE_SERVICE_FIELDS: [&str; 2] = ["count", "archived"];

static TIMESTAMP: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]+)?)?(Z|[+-][0-9]{2}:?[0-9]{2})?$")
        .unwrap()
});
static FINDING_ID: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"/finding/[A-Za-z0-9-]+").unwrap());
static RANDOM_ID: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^(?:[0-9a-fA-F]{16,}|[0-9a-fA-F]{8}-[0-9a-zA-Z]{4}-[0-9a-zA-Z]{4}-[0-9a-zA-Z]{4}-[0-9a-zA-Z]{12})$")
        .unwrap()
});

/// `sha256:<hex>` of the normalized variables.
pub fn fingerprint(vars: &Map<String, Value>) -> String {
    let normalized = normalize(&Value::Object(vars.clone()), "");
    format!("sha256:{}", digest::sha256_of_json(&normalized))
}

fn normalize(value: &Value, parent: &str) -> Value {
    match value {
        Value::Object(map) => {
            let mut out = Map::new();
            let in_service = parent.eq_ignore_ascii_case("service");
            for (key, item) in map {
                let last = key.rsplit('/').next().unwrap_or(key).to_ascii_lowercase();
                let service_field = in_service || key.to_ascii_lowercase().contains("/service/");
                if VOLATILE_FIELDS.contains(&last.as_str())
                    || (service_field && VOLATILE_SERVICE_FIELDS.contains(&last.as_str()))
                {
                    continue;
                }
                let item = match item {
                    Value::String(id) if key.eq_ignore_ascii_case("id") && RANDOM_ID.is_match(id) => "*".into(),
                    other => normalize(other, key),
                };
                out.insert(key.clone(), item);
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(items.iter().map(|item| normalize(item, parent)).collect()),
        Value::String(text) if TIMESTAMP.is_match(text) => Value::String("<time>".into()),
        Value::String(text) => Value::String(FINDING_ID.replace_all(text, "/finding/*").into_owned()),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn vars(value: Value) -> Map<String, Value> {
        value.as_object().cloned().unwrap()
    }

    #[test]
    fn the_same_finding_exported_twice_has_one_fingerprint() {
        let first = vars(json!({
            "rule": "EC2.19 は dev なら抑制",
            "finding": {
                "Id": "arn:aws:securityhub:us-east-1:000000000001:security-control/EC2.19/finding/a1b2c3d4-5678-90ab-cdef-EXAMPLE11111",
                "CreatedAt": "2024-01-01T00:00:00Z", "UpdatedAt": "2024-01-02T00:00:00.123Z",
                "Workflow": {"Status": "NEW"}, "RecordState": "ACTIVE",
                "ProductFields": {"aws/guardduty/service/count": "3", "aws/securityhub/FindingId": "arn:x/finding/1111"},
                "Resources": [{"Id": "sg-1", "Details": {"LaunchedAt": "2023-05-01T10:00:00Z"}}],
            }
        }));
        let second = vars(json!({
            "finding": {
                "Resources": [{"Details": {"LaunchedAt": "2023-05-01T10:00:00Z"}, "Id": "sg-1"}],
                "Id": "arn:aws:securityhub:us-east-1:000000000001:security-control/EC2.19/finding/ffffffff-5678-90ab-cdef-EXAMPLE22222",
                "CreatedAt": "2024-03-01T00:00:00Z", "UpdatedAt": "2024-03-05T00:00:00Z",
                "Workflow": {"Status": "NOTIFIED"}, "RecordState": "ARCHIVED",
                "ProductFields": {"aws/guardduty/service/count": "74", "aws/securityhub/FindingId": "arn:x/finding/2222"},
            },
            "rule": "EC2.19 は dev なら抑制",
        }));
        assert_eq!(fingerprint(&first), fingerprint(&second));
        assert!(fingerprint(&first).starts_with("sha256:") && fingerprint(&first).len() == 71);
    }

    #[test]
    fn guardduty_ids_counts_and_times_are_volatile_but_the_resource_is_not() {
        let finding = |id: &str, count: u64, instance: &str| {
            vars(
                json!({"finding": {"schemaVersion": "2.0", "id": id, "type": "Recon:EC2/PortProbeUnprotectedPort",
                "arn": format!("arn:aws:guardduty:us-east-1:000000000001:detector/d4b0/finding/{id}"),
                "resource": {"instanceDetails": {"instanceId": instance}},
                "service": {"count": count, "archived": false, "eventLastSeen": "2020-09-30T11:56:49Z", "resourceRole": "TARGET"}}}),
            )
        };
        let a = fingerprint(&finding("46ba0ac2845071e23ccdeb2ae03bfdea", 1, "i-0c10c2c7863d1a356"));
        let b = fingerprint(&finding("0f0f0ac2845071e23ccdeb2ae03bf000", 74, "i-0c10c2c7863d1a356"));
        let other_instance = fingerprint(&finding("46ba0ac2845071e23ccdeb2ae03bfdea", 1, "i-0aaaaaaaaaaaaaaaa"));
        assert_eq!(a, b);
        assert_ne!(a, other_instance);
    }

    #[test]
    fn another_rule_is_another_case() {
        let a = vars(json!({"rule": "suppress A", "finding": {"Id": "x"}}));
        let b = vars(json!({"rule": "suppress B", "finding": {"Id": "x"}}));
        assert_ne!(fingerprint(&a), fingerprint(&b));
    }
}
