//! Where an attacker writes in a finding: paths to the string fields whose text anyone who can
//! create, name or tag a resource, or make an API call, chooses — and the defaults for AWS
//! Security Hub (ASFF) and native GuardDuty findings, each with its source.
//!
//! A path is dot-separated keys, matched ignoring ASCII case (GuardDuty findings come in
//! camelCase from the console and PascalCase from some SDKs); `*` in a key matches any run of
//! characters (`*Name` matches `GroupName`), and `[]` after a key steps into every element of
//! an array: `Resources[].Tags.*`, `Resource.InstanceDetails.Tags[].Value`.

use serde_json::Value;

/// A default attacker-writable field and why it is one.
#[derive(Debug, Clone, Copy)]
pub struct DefaultField {
    pub path: &'static str,
    pub source: &'static str,
}

/// The defaults: ASFF fields (AWS Security Hub user guide, ASFF syntax) and native GuardDuty
/// fields (GuardDuty user guide and API reference), as summarised in the design notes'
/// `reference/asff.md`.
pub const DEFAULT_FIELDS: [DefaultField; 11] = [
    DefaultField {
        path: "Resources[].Tags.*",
        source: "ASFF Resources[].Tags: a map of the resource's tags; whoever may tag the resource writes them",
    },
    DefaultField {
        path: "Resources[].Id",
        source: "ASFF Resources[].Id: the resource's ARN, whose name part (bucket, user, function, group) its creator chose",
    },
    DefaultField {
        path: "Resources[].Details.*.*Name",
        source: "ASFF Resources[].Details.<Type>: names in the resource's details (GroupName, UserName, FunctionName, …), chosen by its creator",
    },
    DefaultField {
        path: "UserDefinedFields.*",
        source: "ASFF UserDefinedFields: set with BatchUpdateFindings by anyone allowed to update findings",
    },
    DefaultField {
        path: "Note.Text",
        source: "ASFF Note.Text: set with BatchUpdateFindings by anyone allowed to update findings",
    },
    DefaultField {
        path: "Resource.InstanceDetails.Tags[].Value",
        source: "GuardDuty resource.instanceDetails.tags[]: the instance's tags (a list of key/value pairs)",
    },
    DefaultField {
        path: "Resource.S3BucketDetails[].Name",
        source: "GuardDuty resource.s3BucketDetails[].name: bucket names are chosen by whoever creates the bucket",
    },
    DefaultField {
        path: "Resource.S3BucketDetails[].Tags[].Value",
        source: "GuardDuty resource.s3BucketDetails[].tags[]: the bucket's tags",
    },
    DefaultField {
        path: "Resource.AccessKeyDetails.UserName",
        source: "GuardDuty resource.accessKeyDetails.userName: the IAM user's name, chosen by whoever created the user",
    },
    DefaultField {
        path: "Service.Action.DnsRequestAction.Domain",
        source: "GuardDuty service.action.dnsRequestAction.domain: the domain queried, registered by whoever runs it",
    },
    DefaultField {
        path: "Service.Action.*.UserAgent",
        source: "GuardDuty API reference: AwsApiCallAction.userAgent and KubernetesApiCallAction.userAgent, sent by the caller",
    },
];

/// The longest path accepted, in characters, and the most segments.
const MAX_PATH_CHARS: usize = 300;
const MAX_SEGMENTS: usize = 16;

/// One segment: a key pattern, and whether it steps into an array's elements.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Segment {
    key: String,
    each: bool,
}

/// A parsed path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldPath {
    text: String,
    segments: Vec<Segment>,
}

impl FieldPath {
    /// Parse `Resources[].Tags.*`; the error says what is wrong.
    pub fn parse(text: &str) -> Result<FieldPath, String> {
        if text.is_empty() || text.chars().count() > MAX_PATH_CHARS {
            return Err(format!("a field path has 1 to {MAX_PATH_CHARS} characters"));
        }
        let mut segments = Vec::new();
        for part in text.split('.') {
            let (key, each) = match part.strip_suffix("[]") {
                Some(key) => (key, true),
                None => (part, false),
            };
            if key.is_empty() || key.contains(['[', ']']) || key.chars().any(char::is_whitespace) {
                return Err(format!(
                    "`{part}` in `{text}` is not a key (letters, digits, `*`; `[]` after it for each element)"
                ));
            }
            segments.push(Segment {
                key: key.to_string(),
                each,
            });
        }
        if segments.len() > MAX_SEGMENTS {
            return Err(format!("`{text}` has more than {MAX_SEGMENTS} segments"));
        }
        Ok(FieldPath {
            text: text.to_string(),
            segments,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The JSON pointers of every string this path reaches in `value`, in document order.
    pub fn strings(&self, value: &Value) -> Vec<String> {
        let mut found = Vec::new();
        walk(value, &self.segments, String::new(), &mut found);
        found
    }
}

fn walk(value: &Value, segments: &[Segment], pointer: String, found: &mut Vec<String>) {
    let Some((segment, rest)) = segments.split_first() else {
        if value.is_string() {
            found.push(pointer);
        }
        return;
    };
    let Value::Object(map) = value else { return };
    for (key, child) in map {
        if !key_matches(&segment.key, key) {
            continue;
        }
        let pointer = format!("{pointer}/{}", escape_pointer(key));
        match (segment.each, child) {
            (true, Value::Array(items)) => {
                for (index, item) in items.iter().enumerate() {
                    walk(item, rest, format!("{pointer}/{index}"), found);
                }
            }
            (true, _) => {}
            (false, child) => walk(child, rest, pointer, found),
        }
    }
}

/// A key pattern with `*` wildcards against a key, ignoring ASCII case.
fn key_matches(pattern: &str, key: &str) -> bool {
    let pattern = pattern.to_ascii_lowercase();
    let key = key.to_ascii_lowercase();
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == key;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !key.starts_with(first) || !key[first.len()..].ends_with(last) || key.len() < first.len() + last.len() {
        return false;
    }
    let mut rest = &key[first.len()..key.len() - last.len()];
    for middle in &parts[1..parts.len() - 1] {
        match rest.find(middle) {
            Some(at) => rest = &rest[at + middle.len()..],
            None => return false,
        }
    }
    true
}

/// A key as a JSON pointer token (RFC 6901).
pub(crate) fn escape_pointer(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

/// The default paths, parsed.
pub fn defaults() -> Vec<FieldPath> {
    DEFAULT_FIELDS
        .iter()
        .map(|field| FieldPath::parse(field.path).expect("a default path parses"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn paths_reach_strings_in_asff_and_guardduty_findings_in_any_case() {
        let asff = json!({
            "Resources": [
                {"Id": "arn:aws:s3:::logs", "Tags": {"env": "prod", "n": 3},
                 "Details": {"AwsEc2SecurityGroup": {"GroupName": "web", "GroupId": "sg-1"}}},
                {"Id": "arn:aws:iam::1:user/bob"}
            ],
            "Title": "not attacker-written"
        });
        let strings = |path: &str, value: &Value| FieldPath::parse(path).unwrap().strings(value);
        assert_eq!(strings("Resources[].Tags.*", &asff), ["/Resources/0/Tags/env"]);
        assert_eq!(strings("resources[].id", &asff), ["/Resources/0/Id", "/Resources/1/Id"]);
        assert_eq!(
            strings("Resources[].Details.*.*Name", &asff),
            ["/Resources/0/Details/AwsEc2SecurityGroup/GroupName"]
        );
        let guardduty = json!({"service": {"action": {"awsApiCallAction": {"userAgent": "aws-cli/2", "api": "GetObject"}}},
                               "Resource": {"InstanceDetails": {"Tags": [{"Key": "Name", "Value": "web"}]}}});
        assert_eq!(
            strings("Service.Action.*.UserAgent", &guardduty),
            ["/service/action/awsApiCallAction/userAgent"]
        );
        assert_eq!(
            strings("Resource.InstanceDetails.Tags[].Value", &guardduty),
            ["/Resource/InstanceDetails/Tags/0/Value"]
        );
        // A path that expects an array finds nothing in an object, and the reverse.
        assert!(strings("Resources.Id", &asff).is_empty());
        let odd = json!({"a/b~c": {"d": "x"}});
        assert_eq!(strings("a/b~c.d", &odd), ["/a~1b~0c/d"]);
        assert_eq!(odd.pointer("/a~1b~0c/d"), Some(&json!("x")));
    }

    #[test]
    fn wildcards_match_any_run_of_characters() {
        assert!(key_matches("*Name", "GroupName"));
        assert!(key_matches("*name", "NAME"));
        assert!(!key_matches("*Name", "GroupId"));
        assert!(key_matches("a*b*c", "axxbyyc"));
        assert!(!key_matches("ab*ba", "aba"));
        assert!(key_matches("*", "anything"));
    }

    #[test]
    fn bad_paths_say_why() {
        for bad in ["", "a..b", "a[0].b", "a b", "[]"] {
            assert!(FieldPath::parse(bad).is_err(), "{bad}");
        }
        assert!(FieldPath::parse(&"a.".repeat(200)).is_err());
        assert_eq!(defaults().len(), DEFAULT_FIELDS.len());
    }
}
