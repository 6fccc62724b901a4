//! Property tests of `record`'s redaction: whatever account ids, addresses, e-mail addresses and
//! access key ids a finding holds, and wherever they sit (a field of their own, inside an ARN,
//! in Japanese or English free text, in a tag key), none survives, each maps to one placeholder
//! everywhere, two different values never share one, and the case still renders in its prompt.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::Path;

use proptest::prelude::*;
use serde_json::{json, Value};

use promptgate::case::{Case, LoadedCase};
use promptgate::prompt::Prompt;
use promptgate::record::redact::Redactor;

/// A value of one kind the redaction must remove.
#[derive(Debug, Clone)]
enum Secret {
    Account(String),
    /// An account id as the console or a person writes it: dashed, spaced or full-width.
    WrittenAccount(String),
    Ipv4(Ipv4Addr),
    Ipv6(Ipv6Addr),
    Email(String),
    IdnEmail(String),
    KeyId(String),
}

impl Secret {
    fn text(&self) -> String {
        match self {
            Secret::Account(s)
            | Secret::WrittenAccount(s)
            | Secret::Email(s)
            | Secret::IdnEmail(s)
            | Secret::KeyId(s) => s.clone(),
            Secret::Ipv4(ip) => ip.to_string(),
            Secret::Ipv6(ip) => ip.to_string(),
        }
    }
}

fn account() -> impl Strategy<Value = Secret> {
    "[0-9]{12}".prop_map(Secret::Account)
}

fn written_account() -> impl Strategy<Value = Secret> {
    (
        "[0-9]{12}",
        prop::sample::select(vec!["-", " ", "－", "", "full-width"]),
    )
        .prop_map(|(digits, how)| {
            let text = match how {
                "full-width" => digits
                    .chars()
                    .map(|c| char::from_u32(c as u32 - '0' as u32 + '０' as u32).unwrap())
                    .collect(),
                separator => format!(
                    "{}{separator}{}{separator}{}",
                    &digits[..4],
                    &digits[4..8],
                    &digits[8..]
                ),
            };
            Secret::WrittenAccount(text)
        })
}

fn ipv4() -> impl Strategy<Value = Secret> {
    any::<[u8; 4]>()
        .prop_map(Ipv4Addr::from)
        // Unspecified, loopback, broadcast and netmask addresses are kept on purpose.
        .prop_filter("an address that identifies something", |ip| {
            let bits = u32::from(*ip);
            let netmask = ip.octets()[0] == 255 && bits.leading_ones() + bits.trailing_zeros() == 32;
            !(ip.is_unspecified() || ip.is_loopback() || ip.is_broadcast() || netmask)
        })
        .prop_map(Secret::Ipv4)
}

fn ipv6() -> impl Strategy<Value = Secret> {
    any::<[u16; 8]>()
        .prop_map(Ipv6Addr::from)
        .prop_filter("an address that identifies something", |ip| {
            !(ip.is_unspecified() || ip.is_loopback())
        })
        .prop_map(Secret::Ipv6)
}

fn email() -> impl Strategy<Value = Secret> {
    (
        "[a-z][a-z0-9._-]{0,10}[a-z0-9]",
        "[a-z][a-z0-9-]{0,8}[a-z0-9]",
        "(com|org|co\\.jp|example)",
    )
        .prop_map(|(local, domain, tld)| Secret::Email(format!("{local}@{domain}.{tld}")))
}

/// An internationalized address: a local part or domain with accents, a Japanese domain, or a
/// punycode top-level domain. (A Japanese local part or top-level domain has no boundary a reader
/// could find next to the Japanese separators used here; the unit tests cover those with one.)
fn idn_email() -> impl Strategy<Value = Secret> {
    (
        prop::sample::select(vec!["müller", "josé.ruiz", "ops-team", "zoë"]),
        prop::sample::select(vec![
            "bücher.de",
            "例え.jp",
            "テスト.co.jp",
            "example.xn--p1ai",
            "straße.example",
        ]),
    )
        .prop_map(|(local, domain)| Secret::IdnEmail(format!("{local}@{domain}")))
}

fn key_id() -> impl Strategy<Value = Secret> {
    ("(AKIA|ASIA|AIDA|AROA)", "[A-Z0-9]{16}").prop_map(|(prefix, rest)| Secret::KeyId(format!("{prefix}{rest}")))
}

fn secret() -> impl Strategy<Value = Secret> {
    prop_oneof![
        account(),
        written_account(),
        ipv4(),
        ipv6(),
        email(),
        idn_email(),
        key_id()
    ]
}

/// Text that may stand next to a secret without joining it.
fn separator() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        " ", ", ", "(", ")", "/", "=", "の", "は", " and ", "\n", "「", "」", "\"", "'",
    ])
}

/// A finding holding every secret twice: alone in a field, and inside a sentence, an ARN (for
/// account ids) or a tag key; the rule names each secret too.
fn case_with(secrets: &[Secret], separators: &[(&str, &str)]) -> Case {
    let mut finding = json!({
        "SchemaVersion": "2018-10-08",
        "Title": "S3.1 S3 Block Public Access setting should be enabled",
        "Resources": [{"Type": "AwsAccount", "Tags": {}}],
    });
    let mut rule = String::from("次の値を含む検出結果は抑制する:");
    for (index, (secret, (before, after))) in secrets.iter().zip(separators).enumerate() {
        let text = secret.text();
        finding[format!("alone{index}")] = json!(text);
        let embedded = match secret {
            Secret::Account(_) => format!("arn:aws:iam::{text}:role/r{index}"),
            _ => format!("seen{before}{text}{after}here"),
        };
        finding[format!("embedded{index}")] = json!(embedded);
        finding["Resources"][0]["Tags"][format!("owner{before}{text}")] = json!("yes");
        rule.push_str(&format!("{before}{text}{after}"));
    }
    let mut vars = serde_json::Map::new();
    vars.insert("finding".into(), finding);
    vars.insert("rule".into(), json!(rule));
    Case {
        id: "c".into(),
        vars,
        expect: json!({"label": "notify"}),
        tags: vec![],
        source: None,
        notes: None,
        attacker_fields: None,
    }
}

/// Every token of `text` that reads as a secret of any kind, found independently of the
/// product's own rules: maximal digit runs, dotted quads, e-mail-shaped and key-id-shaped words,
/// and anything that parses as an IPv6 address.
fn tokens(text: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let patterns = [
        r"[0-9]+",
        r"[0-9]+(?:\.[0-9]+)+",
        r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+",
        r"[A-Z0-9]{20}",
        r"[0-9A-Fa-f:.]+",
    ];
    for pattern in patterns {
        let regex = regex::Regex::new(pattern).unwrap();
        for m in regex.find_iter(text) {
            let token = m.as_str().trim_end_matches('.');
            found.insert(token.to_string());
            if let Ok(ip) = token.parse::<Ipv6Addr>() {
                found.insert(ip.to_string());
            }
        }
    }
    found
}

fn triage_prompt() -> Prompt {
    Prompt::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("prompts/triage.toml")).expect("the triage prompt loads")
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn no_secret_survives_and_each_has_one_placeholder(
        (secrets, separators) in prop::collection::vec(secret(), 1..12).prop_flat_map(|secrets| {
            let n = secrets.len();
            (Just(secrets), prop::collection::vec((separator(), separator()), n))
        })
    ) {
        let case = case_with(&secrets, &separators);
        let mut vars = Value::Object(case.vars.clone());
        let mut expect = case.expect.clone();
        Redactor::default().redact(&mut [&mut vars, &mut expect]);
        let output = vars.to_string();
        let finding = &vars["finding"];

        // Nothing of the input survives as a token of the output.
        let left = tokens(&output);
        for secret in &secrets {
            let text = secret.text();
            if let Secret::WrittenAccount(_) | Secret::IdnEmail(_) = secret {
                prop_assert!(!output.contains(&text), "`{}` survived in {}", text, output);
                continue;
            }
            prop_assert!(!left.contains(&text), "`{}` survived in {}", text, output);
            if let Secret::Ipv6(ip) = secret {
                prop_assert!(!left.contains(&ip.to_string()), "`{}` survived in {}", ip, output);
            }
        }

        // One placeholder per value, the same in every place the value stood.
        let mut placeholders: BTreeMap<String, String> = BTreeMap::new();
        for (index, (secret, (before, after))) in secrets.iter().zip(&separators).enumerate() {
            let placeholder = finding[format!("alone{index}")].as_str().unwrap().to_string();
            prop_assert_ne!(&placeholder, &secret.text());
            let embedded = finding[format!("embedded{index}")].as_str().unwrap();
            let expected = match secret {
                Secret::Account(_) => format!("arn:aws:iam::{placeholder}:role/r{index}"),
                _ => format!("seen{before}{placeholder}{after}here"),
            };
            prop_assert_eq!(embedded, expected.as_str());
            let tag = format!("owner{before}{placeholder}");
            prop_assert!(finding["Resources"][0]["Tags"].get(&tag).is_some(), "tag key `{}` missing in {}", tag, output);
            let in_rule = format!("{before}{placeholder}{after}");
            prop_assert!(vars["rule"].as_str().unwrap().contains(&in_rule), "rule lacks `{}`", in_rule);
            if let Some(other) = placeholders.insert(placeholder.clone(), secret.text()) {
                prop_assert_eq!(other, secret.text(), "two values share the placeholder {}", placeholder);
            }
        }

        // The redacted case still renders in the triage prompt, and the prompt leaks nothing.
        let mut redacted = case.clone();
        redacted.vars = vars.as_object().unwrap().clone();
        let loaded = LoadedCase { case: redacted, file: "c.json".into(), line: None };
        let rendered = triage_prompt().render(&loaded).expect("renders");
        let text: String = rendered.messages.iter().map(|m| m.content.as_str()).collect();
        let rendered_tokens = tokens(&text);
        for secret in &secrets {
            prop_assert!(!rendered_tokens.contains(&secret.text()), "`{}` reached the prompt", secret.text());
        }
    }
}
