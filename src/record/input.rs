//! What `record` reads: findings in the shapes AWS delivers them — a bare ASFF finding, a
//! `{"Findings": [...]}` batch (BatchImportFindings / GetFindings), an EventBridge "Security Hub
//! Findings - Imported" event (`detail.findings[]`), a native GuardDuty finding (camelCase as in
//! the API, or PascalCase as SDK dumps write it), a GuardDuty EventBridge event (`detail`), or a
//! JSON array of any of these findings.

use std::path::Path;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::error::Error;

/// The largest input `record` reads: a full GetFindings page (100 findings of at most 240 KB,
/// Security Hub's own limit) fits with room to spare.
pub const MAX_INPUT_BYTES: usize = 32 * 1024 * 1024;

/// Fields BatchImportFindings requires of every ASFF finding.
const ASFF_REQUIRED: [&str; 12] = [
    "SchemaVersion",
    "Id",
    "ProductArn",
    "GeneratorId",
    "AwsAccountId",
    "Types",
    "CreatedAt",
    "UpdatedAt",
    "Severity",
    "Title",
    "Description",
    "Resources",
];

/// Fields every native GuardDuty finding carries (matched case-insensitively).
const GUARDDUTY_REQUIRED: [&str; 6] = ["accountId", "id", "type", "severity", "title", "resource"];
/// A GuardDuty finding as AWS's sample events carry it, without `accountId`.
const GUARDDUTY_SAMPLE_REQUIRED: [&str; 5] = ["id", "type", "severity", "title", "resource"];

/// How the finding arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Envelope {
    /// The finding itself.
    Bare,
    /// `{"Findings": [...]}`.
    Batch,
    /// A JSON array of findings.
    Array,
    /// An EventBridge event from Security Hub (`detail.findings[]`).
    #[serde(rename = "securityhub-event")]
    SecurityHubEvent,
    /// An EventBridge event from GuardDuty (`detail`).
    #[serde(rename = "guardduty-event")]
    GuardDutyEvent,
}

/// The finding's own format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FindingFormat {
    /// AWS Security Finding Format.
    Asff,
    /// GuardDuty's native format.
    #[serde(rename = "guardduty")]
    GuardDuty,
}

/// One finding read from the input.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    pub value: Value,
    pub format: FindingFormat,
    pub envelope: Envelope,
}

impl Finding {
    /// The finding's title, for listings.
    pub fn title(&self) -> &str {
        let map = self.value.as_object();
        map.and_then(|m| get_ci(m, "title"))
            .and_then(Value::as_str)
            .unwrap_or("(no title)")
    }

    /// What the finding is about: the control id of a control finding, else the finding type
    /// (`EC2.19`, `UnauthorizedAccess:EC2/SSHBruteForce`). Used in case ids and tags.
    pub fn topic(&self) -> Option<String> {
        topic(&self.value, self.format)
    }
}

/// The topic of a finding that is already a JSON value (a case's `finding` variable), when it
/// is one.
pub fn topic_of(value: &Value) -> Option<String> {
    topic(value, classify(value).ok()??)
}

fn topic(value: &Value, format: FindingFormat) -> Option<String> {
    let map = value.as_object()?;
    let text = |path: &[&str]| -> Option<String> {
        let mut value = map.get(path[0])?;
        for key in &path[1..] {
            value = value.get(key)?;
        }
        value.as_str().filter(|s| !s.is_empty()).map(str::to_string)
    };
    match format {
        FindingFormat::Asff => text(&["Compliance", "SecurityControlId"])
            .or_else(|| text(&["ProductFields", "ControlId"]))
            .or_else(|| text(&["ProductFields", "RuleId"]))
            .or_else(|| {
                // GuardDuty in ASFF: "TTPs/Initial Access/UnauthorizedAccess:EC2-SSHBruteForce".
                let first = map.get("Types")?.as_array()?.first()?.as_str()?;
                first
                    .contains(':')
                    .then(|| first.rsplit('/').next().unwrap_or(first).to_string())
            })
            .or_else(|| text(&["GeneratorId"]).map(|g| g.rsplit('/').next().unwrap_or(&g).to_string())),
        FindingFormat::GuardDuty => get_ci(map, "type").and_then(Value::as_str).map(str::to_string),
    }
}

/// Parse `bytes` read from `source` into its findings (at least one).
pub fn parse(bytes: &[u8], source: &Path) -> Result<Vec<Finding>, Error> {
    let invalid = |location: String, message: String| Error::invalid("finding input", source, location, message);
    if bytes.len() > MAX_INPUT_BYTES {
        return Err(invalid(
            String::new(),
            format!(
                "{} bytes is more than the {} MiB record reads",
                bytes.len(),
                MAX_INPUT_BYTES >> 20
            ),
        )
        .with_hint(
            "record takes one finding, one event or one GetFindings page; split larger exports (jq '.Findings[0]')",
        ));
    }
    // PowerShell and some editors start UTF-8 files with a byte order mark.
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let text = std::str::from_utf8(bytes).map_err(|err| {
        let valid = std::str::from_utf8(&bytes[..err.valid_up_to()]).unwrap_or_default();
        let (line, column) = crate::location::line_column(valid, valid.len());
        invalid(
            format!(" at line {line}, column {column}"),
            format!("not UTF-8 text (byte 0x{:02X})", bytes[err.valid_up_to()]),
        )
        .with_hint("record reads the JSON that Security Hub, GuardDuty or EventBridge deliver, which is UTF-8")
    })?;
    if text.trim().is_empty() {
        return Err(invalid(String::new(), "the input is empty".into())
            .with_hint("pass a finding file, or `-` and the finding on stdin"));
    }
    let value: Value = serde_json::from_str(text).map_err(|err| {
        invalid(
            crate::location::json_location(&err),
            format!("not JSON: {}", crate::location::json_message(&err)),
        )
        .with_hint("record reads one JSON document: a finding, a {\"Findings\": [...]} batch or an EventBridge event")
    })?;
    let findings = unwrap(value).map_err(|(path, message)| {
        let location = if path.is_empty() {
            String::new()
        } else {
            format!(" (at `{path}`)")
        };
        invalid(location, message).with_hint(
            "record reads an ASFF finding, a {\"Findings\": [...]} batch, a \"Security Hub Findings - Imported\" \
             EventBridge event, a GuardDuty finding, or a \"GuardDuty Finding\" event",
        )
    })?;
    if findings.is_empty() {
        return Err(invalid(String::new(), "the input holds no finding".into()));
    }
    Ok(findings)
}

/// Take the findings out of their envelope. Errors carry the JSON path of the problem.
fn unwrap(value: Value) -> Result<Vec<Finding>, (String, String)> {
    match value {
        Value::Array(items) => list(items, "", Envelope::Array),
        Value::Object(mut map) => {
            // AWS's own sample events (e.g. GuardDuty's EventBridge samples) may have no
            // `detail-type` or `source`: a `detail` that is recognisably a finding is enough.
            let finding_detail = map
                .get("detail")
                .and_then(Value::as_object)
                .is_some_and(guardduty_shaped);
            if map.contains_key("detail-type")
                || (map.contains_key("detail") && map.contains_key("source"))
                || finding_detail
            {
                let detail_type = map
                    .get("detail-type")
                    .and_then(Value::as_str)
                    .unwrap_or("(none)")
                    .to_string();
                match map.remove("detail") {
                    Some(Value::Object(mut detail)) => match detail.remove("findings") {
                        Some(Value::Array(items)) => list(items, "detail.findings", Envelope::SecurityHubEvent),
                        Some(_) => Err(("detail.findings".into(), "`findings` is not an array".into())),
                        None => {
                            let detail = Value::Object(detail);
                            match classify(&detail) {
                                Ok(Some(format)) => Ok(vec![finding(detail, format, Envelope::GuardDutyEvent)]),
                                Ok(None) => Err((
                                    "detail".into(),
                                    format!("this EventBridge event (detail-type `{detail_type}`) carries no finding"),
                                )),
                                Err(message) => Err(("detail".into(), message)),
                            }
                        }
                    },
                    _ => Err((
                        "detail".into(),
                        format!("this EventBridge event (detail-type `{detail_type}`) has no `detail` object"),
                    )),
                }
            } else if let Some(items) = map.get("Findings").and_then(Value::as_array).cloned() {
                list(items, "Findings", Envelope::Batch)
            } else {
                let value = Value::Object(map);
                match classify(&value) {
                    Ok(Some(format)) => Ok(vec![finding(value, format, Envelope::Bare)]),
                    Ok(None) => Err((
                        String::new(),
                        format!("this JSON is not a finding; {}", closest_shape(value.as_object())),
                    )),
                    Err(message) => Err((String::new(), message)),
                }
            }
        }
        _ => Err((String::new(), "a finding is a JSON object".into())),
    }
}

fn list(items: Vec<Value>, path: &str, envelope: Envelope) -> Result<Vec<Finding>, (String, String)> {
    items
        .into_iter()
        .enumerate()
        .map(|(index, item)| {
            let here = format!("{path}[{index}]");
            match classify(&item) {
                Ok(Some(format)) => Ok(finding(item, format, envelope)),
                Ok(None) => Err((here, "this item is not a finding".into())),
                Err(message) => Err((here, message)),
            }
        })
        .collect()
}

fn finding(value: Value, format: FindingFormat, envelope: Envelope) -> Finding {
    Finding {
        value,
        format,
        envelope,
    }
}

/// Which format `value` is in: `Ok(None)` when it is no finding at all, `Err` when it claims to
/// be one but lacks a required field.
fn classify(value: &Value) -> Result<Option<FindingFormat>, String> {
    let Some(map) = value.as_object() else {
        return Ok(None);
    };
    let missing = |required: &[&str], found: &dyn Fn(&str) -> bool| -> Vec<String> {
        required
            .iter()
            .filter(|key| !found(key))
            .map(|key| format!("`{key}`"))
            .collect()
    };
    if map.contains_key("AwsAccountId") || map.get("SchemaVersion").and_then(Value::as_str) == Some("2018-10-08") {
        let absent = missing(&ASFF_REQUIRED, &|key| map.contains_key(key));
        return if absent.is_empty() {
            Ok(Some(FindingFormat::Asff))
        } else {
            Err(format!(
                "an ASFF finding needs the fields ASFF requires (missing: {})",
                absent.join(", ")
            ))
        };
    }
    let has_account = get_ci(map, "accountId").is_some();
    let required: &[&str] = if !has_account && guardduty_shaped(map) {
        // As in AWS's sample events: no account, but type, resource, service and severity.
        &GUARDDUTY_SAMPLE_REQUIRED
    } else if has_account && get_ci(map, "type").is_some()
        || get_ci(map, "schemaVersion").and_then(Value::as_str) == Some("2.0")
    {
        &GUARDDUTY_REQUIRED
    } else {
        return Ok(None);
    };
    let absent = missing(required, &|key| get_ci(map, key).is_some());
    if absent.is_empty() {
        Ok(Some(FindingFormat::GuardDuty))
    } else {
        Err(format!(
            "a GuardDuty finding needs {} (missing: {})",
            required.join(", "),
            absent.join(", ")
        ))
    }
}

/// Whether an object is recognisably a GuardDuty finding: type, resource, service, severity.
fn guardduty_shaped(map: &Map<String, Value>) -> bool {
    ["type", "resource", "service", "severity"]
        .iter()
        .all(|key| get_ci(map, key).is_some())
}

/// Which accepted shape `map` comes closest to, and what it lacks, for a refusal.
fn closest_shape(map: Option<&Map<String, Value>>) -> String {
    let Some(map) = map else {
        return "record reads JSON objects".into();
    };
    let shapes: [(&str, &[&str]); 4] = [
        ("an ASFF finding", &ASFF_REQUIRED),
        ("a GuardDuty finding", &GUARDDUTY_REQUIRED),
        ("an EventBridge event", &["detail-type", "source", "detail"]),
        ("a GetFindings page", &["Findings"]),
    ];
    let (name, required, present) = shapes
        .iter()
        .map(|(name, required)| {
            let present = required.iter().filter(|key| get_ci(map, key).is_some()).count();
            (name, required, present)
        })
        .max_by_key(|(_, required, present)| (*present * 1000) / required.len())
        .unwrap_or((&"an ASFF finding", &shapes[0].1, 0));
    let lacking: Vec<String> = required
        .iter()
        .filter(|key| get_ci(map, key).is_none())
        .map(|key| format!("`{key}`"))
        .collect();
    if present == 0 {
        let keys: Vec<String> = map
            .keys()
            .take(8)
            .map(|k| format!("`{}`", crate::excerpt::excerpt(k, 40)))
            .collect();
        format!(
            "it has none of the fields of any shape record reads (its keys: {})",
            keys.join(", ")
        )
    } else {
        format!("closest to {name}, which lacks {}", lacking.join(", "))
    }
}

/// A field by name ignoring ASCII case: GuardDuty's API writes `accountId`, SDK dumps `AccountId`.
fn get_ci<'a>(map: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    map.get(key)
        .or_else(|| map.iter().find(|(k, _)| k.eq_ignore_ascii_case(key)).map(|(_, v)| v))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn asff(id: &str) -> Value {
        let mut finding = json!({});
        for key in ASFF_REQUIRED {
            finding[key] = json!("x");
        }
        finding["Id"] = json!(id);
        finding["Compliance"] = json!({"SecurityControlId": "EC2.19"});
        finding
    }

    fn parse_value(value: Value) -> Result<Vec<Finding>, Error> {
        parse(value.to_string().as_bytes(), Path::new("in.json"))
    }

    #[test]
    fn every_envelope_yields_its_findings() {
        let one = parse_value(asff("a")).unwrap();
        assert_eq!(
            (one.len(), one[0].envelope, one[0].format),
            (1, Envelope::Bare, FindingFormat::Asff)
        );
        assert_eq!(one[0].topic().as_deref(), Some("EC2.19"));

        let batch = parse_value(json!({"Findings": [asff("a"), asff("b")], "NextToken": null})).unwrap();
        assert_eq!(
            batch.iter().map(|f| f.value["Id"].clone()).collect::<Vec<_>>(),
            [json!("a"), json!("b")]
        );
        assert_eq!(batch[1].envelope, Envelope::Batch);

        let event = json!({"version": "0", "detail-type": "Security Hub Findings - Imported", "source": "aws.securityhub",
                           "detail": {"findings": [asff("e")]}});
        assert_eq!(parse_value(event).unwrap()[0].envelope, Envelope::SecurityHubEvent);

        let guardduty = json!({"schemaVersion": "2.0", "accountId": "1", "id": "f", "type": "Recon:EC2/PortProbeUnprotectedPort",
                               "severity": 5, "title": "t", "resource": {}});
        let bare = parse_value(guardduty.clone()).unwrap();
        assert_eq!(
            (bare[0].format, bare[0].topic().as_deref()),
            (FindingFormat::GuardDuty, Some("Recon:EC2/PortProbeUnprotectedPort"))
        );
        let event = json!({"detail-type": "GuardDuty Finding", "source": "aws.guardduty", "detail": guardduty});
        assert_eq!(parse_value(event).unwrap()[0].envelope, Envelope::GuardDutyEvent);

        let pascal = json!({"SchemaVersion": "2.0", "AccountId": "1", "Id": "f", "Type": "X:Y/Z", "Severity": 2,
                            "Title": "t", "Resource": {}});
        assert_eq!(
            parse_value(json!([pascal]).clone()).unwrap()[0].format,
            FindingFormat::GuardDuty
        );
    }

    #[test]
    fn what_is_not_a_finding_says_where_and_why() {
        let mut partial = asff("a");
        partial.as_object_mut().unwrap().remove("Resources");
        let err = parse_value(json!({"Findings": [asff("ok"), partial]}))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("`in.json` (at `Findings[1]`)") && err.contains("missing: `Resources`"),
            "{err}"
        );

        let err = parse_value(
            json!({"detail-type": "Security Hub Insight Results", "source": "aws.securityhub",
                                     "detail": {"insightArn": "x"}}),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("detail-type `Security Hub Insight Results`) carries no finding"),
            "{err}"
        );

        let err = parse_value(json!({"hello": "world"})).unwrap_err().to_string();
        assert!(
            err.contains("this JSON is not a finding") && err.contains("`hello`"),
            "{err}"
        );
        let err = parse_value(
            json!({"Id": "x", "Title": "t", "Types": [], "Severity": {}, "ProductArn": "p",
                                     "GeneratorId": "g", "CreatedAt": "c", "UpdatedAt": "u"}),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("closest to an ASFF finding, which lacks `SchemaVersion`"),
            "{err}"
        );
        let err = parse_value(json!({"detail-type": "x", "detail": {"a": 1}}))
            .unwrap_err()
            .to_string();
        assert!(err.contains("carries no finding"), "{err}");
        let err = parse_value(json!({"Findings": []})).unwrap_err().to_string();
        assert!(err.contains("holds no finding"), "{err}");
    }

    #[test]
    fn bytes_that_are_not_json_text_are_refused_with_a_location() {
        let err = parse(b"{\"a\":\n \"\xFF\"}", Path::new("in.json"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("at line 2, column 3: not UTF-8 text (byte 0xFF)"), "{err}");
        let err = parse(b"{\"a\": 1,\n", Path::new("in.json")).unwrap_err().to_string();
        assert!(err.contains("at line 2") && err.contains("not JSON"), "{err}");
        let err = parse(b"  \n", Path::new("in.json")).unwrap_err().to_string();
        assert!(err.contains("empty"), "{err}");
        let big = vec![b' '; MAX_INPUT_BYTES + 1];
        let err = parse(&big, Path::new("in.json")).unwrap_err().to_string();
        assert!(err.contains("more than the 32 MiB"), "{err}");
        let with_bom = [b"\xEF\xBB\xBF".as_slice(), asff("a").to_string().as_bytes()].concat();
        assert_eq!(parse(&with_bom, Path::new("in.json")).unwrap().len(), 1);
    }

    #[test]
    fn a_guardduty_sample_event_without_detail_type_is_a_finding() {
        // The shape of AWS's GuardDuty sample EventBridge events: no detail-type, source,
        // accountId or schemaVersion.
        let event = json!({"region": "us-east-1", "detail": {
            "id": "sample-1", "type": "UnauthorizedAccess:EC2/SSHBruteForce",
            "resource": {"resourceType": "Instance"}, "service": {"serviceName": "guardduty"},
            "severity": 2, "createdAt": "2026-01-01T00:00:00Z", "updatedAt": "2026-01-01T00:00:00Z",
            "title": "SSH brute force", "description": "d"}});
        let findings = parse_value(event.clone()).unwrap();
        assert_eq!(findings.len(), 1);
        assert_eq!(findings[0].format, FindingFormat::GuardDuty);
        assert_eq!(findings[0].envelope, Envelope::GuardDutyEvent);
        assert_eq!(findings[0].title(), "SSH brute force");
        // Recognisable but incomplete: named, with what it lacks.
        let mut partial = event;
        partial["detail"].as_object_mut().unwrap().remove("title");
        let err = parse_value(partial).unwrap_err().to_string();
        assert!(err.contains("missing: `title`"), "{err}");
    }
}
