//! Redaction of a recorded case: identifying values become placeholders, the same value the
//! same placeholder everywhere in the case (finding, rule text, expectation, note), so a rule
//! that names an account or an address still matches the finding it was written for.
//!
//! Three passes: find every secret in every string (object keys too), in canonical key order so
//! that the numbering does not depend on the input's key order; give each one a placeholder that
//! occurs nowhere in the input; then replace every occurrence of every secret, wherever a rule
//! found it first (an account id seen in an ARN is also replaced inside a bucket name).

use std::collections::{BTreeMap, HashMap};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::LazyLock;

use aho_corasick::AhoCorasick;
use regex::Regex;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The built-in rules, in the order they are tried on each string.
pub const BUILTIN_RULES: [&str; 7] = [
    "access-key-id",
    "email",
    "arn-account",
    "account-id",
    "ec2-hostname",
    "ipv6",
    "ipv4",
];

/// The prefixes of AWS access key ids and IAM unique ids (users, roles, groups, …).
static KEY_ID: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?:AKIA|ASIA|AIDA|AROA|AGPA|AIPA|ANPA|ANVA|APKA|ABIA|ACCA)[A-Z0-9]{12,28}").unwrap());
/// Internationalized too (`müller@bücher.de`, `用户@例子.广告`, `xn--` top-level domains); where an
/// address touches Japanese or Chinese text without a space, `trim_email` cuts it off.
static EMAIL: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"[\p{L}\p{N}._%+-]+@[\p{L}\p{N}-]+(?:\.[\p{L}\p{N}-]+)*\.(?:xn--[A-Za-z0-9-]+|\p{L}{2,})").unwrap()
});
static ARN_ACCOUNT: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"arn:[A-Za-z0-9-]*:[A-Za-z0-9-]*:[A-Za-z0-9-]*:([0-9]{12}):").unwrap());
static DIGITS: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"[0-9]+").unwrap());
/// What people put between the groups of a written account id.
const ACCOUNT_SEPARATORS: &str = "-‐‑–－ 　";

/// An account id as people write it: the console's `2109-8765-4328`, spaced, or in full-width
/// digits (`２１０９８７６５４３２８`, common in Japanese text).
static ACCOUNT_FORM: LazyLock<Regex> = LazyLock::new(|| {
    let digit = "[0-9０-９]";
    let separator = format!("[{ACCOUNT_SEPARATORS}]?");
    Regex::new(&format!("{digit}{{4}}{separator}{digit}{{4}}{separator}{digit}{{4}}")).unwrap()
});
static EC2_HOSTNAME: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"ip-([0-9]{1,3})-([0-9]{1,3})-([0-9]{1,3})-([0-9]{1,3})").unwrap());
static DOTTED: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"[0-9]+(?:\.[0-9]+)+").unwrap());
static HEX_COLON: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"[0-9A-Fa-f:.]+").unwrap());

/// A configured extra pattern (`[[record.redact]]` in `promptgate.toml`).
#[derive(Debug, Clone)]
pub struct Pattern {
    /// The rule name recorded in the case.
    pub name: String,
    /// What to replace; when it has a capture group, only the first group is replaced.
    pub regex: Regex,
}

/// What a redaction did, written into the case's `source.redaction` (rule names and counts,
/// never the values).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RedactionReport {
    /// Every rule that was applied: the built-ins, then the configured patterns.
    pub rules: Vec<String>,
    /// Distinct values replaced, by the rule that found them.
    pub replaced: BTreeMap<String, usize>,
}

/// Which characters may not touch an occurrence, so that a secret is never replaced inside a
/// longer token (an account id inside a 13-digit number, an address inside a version string).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    Digits,
    Ipv4,
    Ipv6,
    Email,
    KeyId,
    Hostname,
    AccountForm,
    Verbatim,
}

/// Which placeholder sequence a secret draws from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Class {
    Account,
    Ipv4,
    Ipv6,
    Email,
    KeyId,
    /// `ip-a-b-c-d`: the dashed form of the placeholder of the address `a.b.c.d`.
    Hostname(String),
    /// An account id written with separators or full-width digits: its placeholder is the
    /// placeholder of the plain 12 digits, written the same way.
    AccountForm(String),
    Custom(String),
}

#[derive(Debug)]
struct Secret {
    text: String,
    rule: String,
    shape: Shape,
    class: Class,
    placeholder: String,
}

/// Replaces identifying values with placeholders.
#[derive(Debug, Clone, Default)]
pub struct Redactor {
    extra: Vec<Pattern>,
}

impl Redactor {
    /// The built-in rules plus `extra` patterns.
    pub fn new(extra: Vec<Pattern>) -> Redactor {
        Redactor { extra }
    }

    /// Redact every string of `values` (object keys too) with one mapping for all of them.
    pub fn redact(&self, values: &mut [&mut Value]) -> RedactionReport {
        let mut strings = Vec::new();
        for value in values.iter() {
            collect_strings(value, &mut strings);
        }
        let mut secrets: Vec<Secret> = Vec::new();
        let mut known: HashMap<String, usize> = HashMap::new();
        for text in &strings {
            self.find_secrets(text, &mut secrets, &mut known);
        }
        let haystack = strings.join("\u{0}");
        assign_placeholders(&mut secrets, &haystack);

        let mut report = RedactionReport {
            rules: BUILTIN_RULES
                .iter()
                .map(|r| r.to_string())
                .chain(self.extra.iter().map(|p| p.name.clone()))
                .collect(),
            replaced: BTreeMap::new(),
        };
        // A written form of an account is the same account: counted once, as its 12 digits.
        for secret in secrets.iter().filter(|s| !matches!(s.class, Class::AccountForm(_))) {
            *report.replaced.entry(secret.rule.clone()).or_default() += 1;
        }
        if !secrets.is_empty() {
            let replacer = Replacer::new(&secrets);
            for value in values.iter_mut() {
                replace_in(value, &replacer);
            }
        }
        report
    }

    fn find_secrets(&self, text: &str, secrets: &mut Vec<Secret>, known: &mut HashMap<String, usize>) {
        let mut add = |found: &str, rule: &str, shape: Shape, class: Class| {
            if !known.contains_key(found) {
                known.insert(found.to_string(), secrets.len());
                secrets.push(Secret {
                    text: found.to_string(),
                    rule: rule.to_string(),
                    shape,
                    class,
                    placeholder: String::new(),
                });
            }
        };
        for m in KEY_ID.find_iter(text) {
            if isolated(text, m.start(), m.end(), |c| c.is_ascii_alphanumeric()) {
                add(m.as_str(), "access-key-id", Shape::KeyId, Class::KeyId);
            }
        }
        // Not `find_iter`: a match can run on into the next address (`a@例え.jpのb@c.de`), so the
        // search goes on where the trimmed address ends, not where the match did.
        let mut from = 0;
        while let Some(m) = EMAIL.find_at(text, from) {
            match trim_email(m.as_str()) {
                Some((offset, email)) => {
                    add(email, "email", Shape::Email, Class::Email);
                    from = m.start() + offset + email.len();
                }
                None => from = m.end(),
            }
        }
        for captures in ARN_ACCOUNT.captures_iter(text) {
            if let Some(account) = captures.get(1) {
                add(account.as_str(), "arn-account", Shape::Digits, Class::Account);
            }
        }
        for m in DIGITS.find_iter(text) {
            if m.len() == 12 {
                add(m.as_str(), "account-id", Shape::Digits, Class::Account);
            }
        }
        for m in ACCOUNT_FORM.find_iter(text) {
            let canonical: String = m
                .as_str()
                .chars()
                .filter_map(digit_value)
                .map(|d| char::from(b'0' + d))
                .collect();
            if m.as_str() != canonical && account_form_isolated(text, m.start(), m.end()) {
                add(&canonical, "account-id", Shape::Digits, Class::Account);
                add(
                    m.as_str(),
                    "account-id",
                    Shape::AccountForm,
                    Class::AccountForm(canonical),
                );
            }
        }
        for captures in EC2_HOSTNAME.captures_iter(text) {
            let whole = captures.get(0).expect("group 0 always matches");
            let dotted = format!("{}.{}.{}.{}", &captures[1], &captures[2], &captures[3], &captures[4]);
            let boundary = isolated(text, whole.start(), whole.end(), |c| c.is_ascii_digit())
                && !text[..whole.start()].ends_with(|c: char| c.is_ascii_alphanumeric());
            if boundary && parse_ipv4(&dotted).is_some_and(|ip| !kept_ipv4(ip)) {
                add(&dotted, "ipv4", Shape::Ipv4, Class::Ipv4);
                add(whole.as_str(), "ec2-hostname", Shape::Hostname, Class::Hostname(dotted));
            }
        }
        for m in HEX_COLON.find_iter(text) {
            let candidate = m.as_str().trim_end_matches('.');
            let end = m.start() + candidate.len();
            let word = |c: char| c.is_ascii_alphanumeric() || c == '_';
            if candidate.matches(':').count() >= 2 && isolated(text, m.start(), end, word) {
                if let Ok(ip) = candidate.parse::<Ipv6Addr>() {
                    if !(ip.is_unspecified() || ip.is_loopback()) {
                        add(candidate, "ipv6", Shape::Ipv6, Class::Ipv6);
                    }
                }
            }
        }
        for m in DOTTED.find_iter(text) {
            if parse_ipv4(m.as_str()).is_some_and(|ip| !kept_ipv4(ip)) {
                add(m.as_str(), "ipv4", Shape::Ipv4, Class::Ipv4);
            }
        }
        for pattern in &self.extra {
            for captures in pattern.regex.captures_iter(text) {
                let found = captures.get(1).or_else(|| captures.get(0));
                if let Some(found) = found.filter(|f| !f.as_str().is_empty()) {
                    let class = Class::Custom(pattern.name.clone());
                    add(found.as_str(), &pattern.name, Shape::Verbatim, class);
                }
            }
        }
    }
}

/// Every string in `value`, keys included, objects in sorted key order.
fn collect_strings(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::String(text) => out.push(text.clone()),
        Value::Array(items) => items.iter().for_each(|item| collect_strings(item, out)),
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            for key in keys {
                out.push(key.clone());
                collect_strings(&map[key], out);
            }
        }
        _ => {}
    }
}

/// The value of an ASCII or full-width decimal digit.
fn digit_value(c: char) -> Option<u8> {
    match c {
        '0'..='9' => Some(c as u8 - b'0'),
        '０'..='９' => Some((c as u32 - '０' as u32) as u8),
        _ => None,
    }
}

/// A written account id stands alone: no digit next to it, and no group of four digits joined
/// to it by a separator (`1234-5678-9012-3456` is a card-like number, not an account; in
/// `2109 8765 4328 10.0.0.1` the address does not join it).
fn account_form_isolated(text: &str, start: usize, end: usize) -> bool {
    fn joined(mut near: impl Iterator<Item = char>) -> bool {
        match near.next() {
            Some(c) if digit_value(c).is_some() => true,
            Some(c) if ACCOUNT_SEPARATORS.contains(c) => near.take_while(|&c| digit_value(c).is_some()).count() == 4,
            _ => false,
        }
    }
    !joined(text[..start].chars().rev()) && !joined(text[end..].chars())
}

/// Japanese, Chinese and Korean script (and full-width forms): text in these scripts is written
/// without spaces, so an address can touch the words around it.
fn is_cjk(c: char) -> bool {
    matches!(c as u32,
        0x3000..=0x30FF | 0x31F0..=0x31FF | 0x3400..=0x4DBF | 0x4E00..=0x9FFF | 0xAC00..=0xD7AF
        | 0xF900..=0xFAFF | 0xFF00..=0xFFEF | 0x20000..=0x2FFFF)
}

/// An e-mail match without the Japanese or Chinese words it touches: `連絡先はuser@example.comです`
/// holds `user@example.com`. Such text has no spaces, so the local part is taken to be the
/// longest run next to `@` in one script class (CJK or not), and the domain ends in the first
/// label after a dot that changes script class, where it changes (`用户@例子.广告` stays whole).
/// Returns the address and its offset in `found`; None when nothing address-like is left.
fn trim_email(found: &str) -> Option<(usize, &str)> {
    let at = found.find('@')?;
    let local = &found[..at];
    let last = local.chars().next_back()?;
    let local_start = local
        .char_indices()
        .rev()
        .take_while(|&(_, c)| is_cjk(c) == is_cjk(last))
        .last()
        .map_or(at, |(index, _)| index);
    let mut end = found.len();
    let mut label_start = at + 1;
    for (index, label) in found[at + 1..].split('.').enumerate() {
        let first = label.chars().next();
        let cut = label.find(|c: char| first.is_some_and(|first| is_cjk(c) != is_cjk(first)));
        // The first label cannot end the domain: an address needs a dot after `@`.
        if let (Some(cut), true) = (cut, index > 0) {
            end = label_start + cut;
            break;
        }
        label_start += label.len() + 1;
    }
    let email = &found[local_start..end];
    let tld = email.rsplit('.').next()?;
    (email[at - local_start..].contains('.') && tld.chars().count() >= 2).then_some((local_start, email))
}

/// Four dot-separated numbers of at most 255 each (leading zeros allowed: `010.0.0.1` is an
/// address to a human reader, so it is one here too).
fn parse_ipv4(text: &str) -> Option<Ipv4Addr> {
    let parts: Vec<&str> = text.split('.').collect();
    if parts.len() != 4 {
        return None;
    }
    let mut octets = [0u8; 4];
    for (octet, part) in octets.iter_mut().zip(&parts) {
        if part.is_empty() || part.len() > 3 {
            return None;
        }
        *octet = part.parse().ok()?;
    }
    Some(Ipv4Addr::from(octets))
}

/// Addresses that identify nobody and often carry a finding's meaning (`0.0.0.0/0` is "open to
/// the world"): unspecified, loopback, broadcast, and netmasks.
fn kept_ipv4(ip: Ipv4Addr) -> bool {
    let bits = u32::from(ip);
    let netmask = ip.octets()[0] == 255 && bits.leading_ones() + bits.trailing_zeros() == 32;
    ip.is_unspecified() || ip.is_loopback() || ip.is_broadcast() || netmask
}

/// Neither the character before `start` nor the one after `end` satisfies `joins`.
fn isolated(text: &str, start: usize, end: usize, joins: impl Fn(char) -> bool) -> bool {
    let before = text[..start].chars().next_back();
    let after = text[end..].chars().next();
    !before.is_some_and(&joins) && !after.is_some_and(&joins)
}

/// Give each secret a placeholder that is no value of the input, so that no placeholder can be
/// mistaken for, or turn into, a real value. Every standalone account id, address, e-mail, key id
/// and host name of the input is itself a secret, so checking the secrets is enough for the
/// built-in shapes (and keeps this linear in the number of secrets); a configured pattern's
/// placeholder is checked against the whole input text.
fn assign_placeholders(secrets: &mut [Secret], haystack: &str) {
    let originals: std::collections::HashSet<String> = secrets.iter().map(|s| s.text.clone()).collect();
    let taken = |candidate: &str, class: &Class| {
        originals.contains(candidate) || (matches!(class, Class::Custom(_)) && haystack.contains(candidate))
    };
    let mut counters: HashMap<Class, u64> = HashMap::new();
    let mut ipv4_placeholders: HashMap<String, String> = HashMap::new();
    let mut account_placeholders: HashMap<String, String> = HashMap::new();
    // Addresses and accounts first: a hostname's placeholder is derived from its address's, a
    // written account's from its digits'.
    let mut order: Vec<usize> = (0..secrets.len()).collect();
    order.sort_by_key(|&i| matches!(secrets[i].class, Class::Hostname(_) | Class::AccountForm(_)));
    for index in order {
        let secret = &secrets[index];
        let placeholder = match &secret.class {
            Class::Hostname(dotted) => {
                let ip = ipv4_placeholders
                    .get(dotted)
                    .cloned()
                    .unwrap_or_else(|| "192.0.2.0".into());
                format!("ip-{}", ip.replace('.', "-"))
            }
            Class::AccountForm(digits) => {
                let plain = account_placeholders
                    .get(digits)
                    .cloned()
                    .unwrap_or_else(|| "000000000000".into());
                write_like(&secret.text, &plain)
            }
            class => loop {
                let counter = counters.entry(class.clone()).or_insert(0);
                *counter += 1;
                let candidate = candidate(class, *counter, &secret.text);
                let hostname_clash =
                    *class == Class::Ipv4 && originals.contains(&format!("ip-{}", candidate.replace('.', "-")));
                if !taken(&candidate, class) && !hostname_clash {
                    break candidate;
                }
            },
        };
        match secret.class {
            Class::Ipv4 => {
                ipv4_placeholders.insert(secret.text.clone(), placeholder.clone());
            }
            Class::Account => {
                account_placeholders.insert(secret.text.clone(), placeholder.clone());
            }
            _ => {}
        }
        secrets[index].placeholder = placeholder;
    }
}

/// `digits` written the way `form` is: its separators kept, each digit full-width where the
/// form's is.
fn write_like(form: &str, digits: &str) -> String {
    let mut digits = digits.chars();
    form.chars()
        .map(|c| match (c, digit_value(c)) {
            (_, None) => c,
            ('0'..='9', Some(_)) => digits.next().unwrap_or('0'),
            (_, Some(_)) => {
                let d = digits.next().and_then(|d| d.to_digit(10)).unwrap_or(0);
                char::from_u32('０' as u32 + d).unwrap_or('０')
            }
        })
        .collect()
}

/// The `n`-th placeholder of a class (1-based). Addresses go to the documentation ranges
/// (RFC 5737 TEST-NET-1..3, then RFC 3849 for IPv6); account ids stay 12 digits and key ids keep
/// their prefix and length, so the redacted finding still reads as a finding.
fn candidate(class: &Class, n: u64, original: &str) -> String {
    match class {
        Class::Account => format!("{n:012}"),
        Class::Ipv4 => {
            const RANGES: [&str; 3] = ["192.0.2", "198.51.100", "203.0.113"];
            let (range, host) = ((n - 1) / 254, (n - 1) % 254 + 1);
            match RANGES.get(range as usize) {
                Some(prefix) => format!("{prefix}.{host}"),
                // Past 762 distinct addresses in one case: stop pretending to be an address.
                None => format!("redacted-ipv4-{n}"),
            }
        }
        Class::Ipv6 => format!("2001:db8::{n:x}"),
        Class::Email => format!("user{n}@example.com"),
        Class::KeyId => {
            let prefix = &original[..4];
            let width = original.len().saturating_sub(12).max(1);
            format!("{prefix}REDACTED{n:0width$}")
        }
        Class::Custom(name) => format!("redacted-{name}-{n}"),
        Class::Hostname(_) | Class::AccountForm(_) => unreachable!("derived placeholders are written elsewhere"),
    }
}

/// Finds every occurrence of every known secret in one pass (Aho-Corasick), keeping those that
/// stand alone for their shape, leftmost first and the longest at each position.
struct Replacer<'a> {
    secrets: &'a [Secret],
    automaton: AhoCorasick,
}

impl<'a> Replacer<'a> {
    fn new(secrets: &'a [Secret]) -> Replacer<'a> {
        let automaton = AhoCorasick::new(secrets.iter().map(|s| s.text.as_str())).expect("secrets are short literals");
        Replacer { secrets, automaton }
    }

    fn replace(&self, text: &str) -> String {
        // Overlapping matches, so that a secret that does not fit (an address inside a version
        // string) does not hide one that does.
        let mut found: Vec<(usize, usize, &Secret)> = self
            .automaton
            .find_overlapping_iter(text)
            .map(|m| (m.start(), m.end(), &self.secrets[m.pattern().as_usize()]))
            .filter(|(start, _, secret)| fits(text, *start, secret))
            .collect();
        if found.is_empty() {
            return text.to_string();
        }
        found.sort_by_key(|&(start, end, _)| (start, std::cmp::Reverse(end)));
        let mut out = String::with_capacity(text.len());
        let mut copied = 0;
        for (start, end, secret) in found {
            if start < copied {
                continue;
            }
            out.push_str(&text[copied..start]);
            out.push_str(&secret.placeholder);
            copied = end;
        }
        out.push_str(&text[copied..]);
        out
    }
}

/// Whether the occurrence of `secret` at `start` stands alone for its shape.
fn fits(text: &str, start: usize, secret: &Secret) -> bool {
    let end = start + secret.text.len();
    let before = text[..start].chars().next_back();
    let before_two = text[..start].chars().rev().nth(1);
    let after = text[end..].chars().next();
    let after_two = text[end..].chars().nth(1);
    let digit = |c: Option<char>| c.is_some_and(|c| c.is_ascii_digit());
    let alnum = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    // Letters of another script than the address's edge do not join it (see `trim_email`).
    let same_script = |c: char, edge: Option<char>| edge.is_some_and(|edge| is_cjk(c) == is_cjk(edge));
    let first = secret.text.chars().next();
    let last = secret.text.chars().next_back();
    match secret.shape {
        Shape::Digits => !digit(before) && !digit(after),
        Shape::Ipv4 => {
            let joined = digit(before)
                || digit(after)
                || (before == Some('.') && digit(before_two))
                || (after == Some('.') && digit(after_two));
            !joined
        }
        Shape::Ipv6 => {
            let joins = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric() || c == ':' || c == '_');
            !joins(before) && !joins(after)
        }
        Shape::Email => {
            let letter = |c: Option<char>, edge| c.is_some_and(|c| c.is_alphanumeric() && same_script(c, edge));
            let local = |c: Option<char>| letter(c, first) || c.is_some_and(|c| "._%+-".contains(c));
            let joined = local(before)
                || letter(after, last)
                || after == Some('-')
                || (after == Some('.') && letter(after_two, last));
            !joined
        }
        Shape::KeyId => !alnum(before) && !alnum(after),
        Shape::Hostname => !alnum(before) && !digit(after),
        Shape::AccountForm => account_form_isolated(text, start, end),
        Shape::Verbatim => true,
    }
}

fn replace_in(value: &mut Value, replacer: &Replacer) {
    match value {
        Value::String(text) => *text = replacer.replace(text),
        Value::Array(items) => items.iter_mut().for_each(|item| replace_in(item, replacer)),
        Value::Object(map) => {
            let old = std::mem::take(map);
            let mut new = Map::with_capacity(old.len());
            for (key, mut item) in old {
                replace_in(&mut item, replacer);
                new.insert(replacer.replace(&key), item);
            }
            *map = new;
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn redact(value: Value) -> (Value, RedactionReport) {
        let mut value = value;
        let report = Redactor::default().redact(&mut [&mut value]);
        (value, report)
    }

    #[test]
    fn same_value_same_placeholder_in_arns_fields_and_free_text() {
        let (out, report) = redact(json!({
            "AwsAccountId": "193043430472",
            "Id": "arn:aws:ec2:us-east-1:193043430472:instance/i-0c10c2c7863d1a356",
            "Bucket": "logs-193043430472-us-east-1",
            "rule": "アカウント193043430472の検出結果は抑制する",
            "Other": "arn:aws:iam::444455556666:role/x",
        }));
        assert_eq!(out["AwsAccountId"], "000000000001");
        assert_eq!(
            out["Id"],
            "arn:aws:ec2:us-east-1:000000000001:instance/i-0c10c2c7863d1a356"
        );
        assert_eq!(out["Bucket"], "logs-000000000001-us-east-1");
        assert_eq!(out["rule"], "アカウント000000000001の検出結果は抑制する");
        assert_eq!(out["Other"], "arn:aws:iam::000000000002:role/x");
        assert_eq!(report.replaced["account-id"], 1);
        assert_eq!(report.replaced["arn-account"], 1);
    }

    #[test]
    fn addresses_go_to_documentation_ranges_and_keep_their_meaningful_neighbours() {
        let (out, report) = redact(json!({
            "Title": "199.241.229.197 is performing SSH brute force attacks against i-0c10c2c7863d1a356.",
            "IpV4Addresses": ["18.234.130.16", "172.31.43.6"],
            "privateDnsName": "ip-172-31-43-6.ec2.internal",
            "Cidr": "0.0.0.0/0",
            "Mask": "255.255.255.0",
            "Version": "1.2.3.4.5",
            "V6": "2600:1f18:abcd::17 and fe80::1%eth0 and ::1",
            "Arn": "arn:aws:iam::aws:policy/ReadOnlyAccess",
        }));
        // Sorted key order: Arn, Cidr, IpV4Addresses, Mask, Title, V6, Version, privateDnsName.
        assert_eq!(out["IpV4Addresses"], json!(["192.0.2.1", "192.0.2.2"]));
        assert_eq!(
            out["Title"],
            "192.0.2.3 is performing SSH brute force attacks against i-0c10c2c7863d1a356."
        );
        assert_eq!(out["privateDnsName"], "ip-192-0-2-2.ec2.internal");
        assert_eq!(out["Cidr"], "0.0.0.0/0");
        assert_eq!(out["Mask"], "255.255.255.0");
        assert_eq!(out["Version"], "1.2.3.4.5");
        assert_eq!(out["V6"], "2001:db8::1 and 2001:db8::2%eth0 and ::1");
        assert_eq!(out["Arn"], "arn:aws:iam::aws:policy/ReadOnlyAccess");
        assert_eq!(report.replaced["ipv4"], 3);
        assert_eq!(report.replaced["ipv6"], 2);
        assert_eq!(report.replaced["ec2-hostname"], 1);
    }

    #[test]
    fn a_dashed_hostname_alone_is_redacted_with_its_address() {
        let (out, report) = redact(json!({"dns": "ip-10-1-2-3.ap-northeast-1.compute.internal", "note": "10.1.2.3"}));
        assert_eq!(out["dns"], "ip-192-0-2-1.ap-northeast-1.compute.internal");
        assert_eq!(out["note"], "192.0.2.1");
        assert_eq!(report.replaced["ec2-hostname"], 1);
    }

    #[test]
    fn emails_and_key_ids_keep_their_shape() {
        let (out, _) = redact(json!({
            "userName": "alice@corp.example.org",
            "accessKeyId": "AKIAIOSFODNN7EXAMPLE",
            "principalId": "AROAJQABLZS4A3QDU576Q:alice@corp.example.org",
            "mention": "key AKIAIOSFODNN7EXAMPLE was used",
        }));
        assert_eq!(out["accessKeyId"], "AKIAREDACTED00000001");
        assert_eq!(out["mention"], "key AKIAREDACTED00000001 was used");
        assert_eq!(out["principalId"], "AROAREDACTED000000002:user1@example.com");
        assert_eq!(out["userName"], "user1@example.com");
    }

    #[test]
    fn placeholders_never_collide_with_values_of_the_input() {
        // The input already holds the first placeholders of both sequences as ordinary text.
        let (out, _) = redact(json!({"a": "000000000001 192.0.2.1", "b": "111122223333 10.0.0.9"}));
        // 000000000001 and 192.0.2.1 are themselves secrets of the input and get new values.
        let text = out.to_string();
        for original in ["000000000001", "111122223333", "192.0.2.1 ", "10.0.0.9"] {
            assert!(!text.contains(original), "{original} survived in {text}");
        }
    }

    #[test]
    fn object_keys_are_redacted_and_numbering_ignores_key_order() {
        let one = json!({"Tags": {"owner-111122223333": "x"}, "b": "10.0.0.1", "a": "10.0.0.2"});
        let two = json!({"a": "10.0.0.2", "b": "10.0.0.1", "Tags": {"owner-111122223333": "x"}});
        let (one, _) = redact(one);
        let (two, _) = redact(two);
        assert_eq!(one["Tags"], json!({"owner-000000000001": "x"}));
        assert_eq!(one["a"], "192.0.2.1");
        assert_eq!(crate::digest::canonical_json(&one), crate::digest::canonical_json(&two));
    }

    #[test]
    fn configured_patterns_replace_their_first_group() {
        let redactor = Redactor::new(vec![Pattern {
            name: "employee".into(),
            regex: Regex::new(r"Owner=(E[0-9]{5})").unwrap(),
        }]);
        let mut value = json!({"Tags": "Owner=E12345", "rule": "E12345 の資産は抑制"});
        let report = redactor.redact(&mut [&mut value]);
        assert_eq!(
            value,
            json!({"Tags": "Owner=redacted-employee-1", "rule": "redacted-employee-1 の資産は抑制"})
        );
        assert_eq!(report.replaced["employee"], 1);
        assert_eq!(report.rules.last().map(String::as_str), Some("employee"));
    }

    #[test]
    fn an_account_written_with_separators_or_full_width_digits_is_the_same_account() {
        let (out, report) = redact(json!({
            "a": "arn:aws:iam::210987654328:role/x",
            "b": "コンソールでは2109-8765-4328と表示",
            "c": "spaced 2109 8765 4328.",
            "d": "全角２１０９８７６５４３２８のアカウント",
            "e": "card 1234-5678-9012-3456 and date 2026-12-03",
            "f": "only written: 1111－2222－3333",
        }));
        assert_eq!(out["a"], "arn:aws:iam::000000000001:role/x");
        assert_eq!(out["b"], "コンソールでは0000-0000-0001と表示");
        assert_eq!(out["c"], "spaced 0000 0000 0001.");
        assert_eq!(out["d"], "全角０００００００００００１のアカウント");
        assert_eq!(out["e"], "card 1234-5678-9012-3456 and date 2026-12-03");
        assert_eq!(out["f"], "only written: 0000－0000－0002");
        // One account per distinct 12 digits, however often and however written.
        assert_eq!(report.replaced["arn-account"], 1);
        assert_eq!(report.replaced["account-id"], 1);
    }

    #[test]
    fn internationalized_emails_and_emails_inside_japanese_text() {
        let (out, report) = redact(json!({
            "a": "連絡先はalice@corp.example.orgです",
            "b": "müller@bücher.de",
            "c": "用户@例子.广告",
            "d": "担当：太郎@例え.jp まで",
            "e": "punycode bob@example.xn--p1ai",
            "f": "alice@corp.example.org",
            "g": "ops@例え.jpのjosé.ruiz@bücher.de",
        }));
        // A match that ran on into the next address is cut, and the search goes on from there.
        assert_eq!(out["g"], "user6@example.comのuser7@example.com");
        assert_eq!(out["a"], "連絡先はuser1@example.comです");
        assert_eq!(out["f"], "user1@example.com");
        assert_eq!(out["b"], "user2@example.com");
        assert_eq!(out["c"], "user3@example.com");
        assert_eq!(out["d"], "担当：user4@example.com まで");
        assert_eq!(out["e"], "punycode user5@example.com");
        assert_eq!(report.replaced["email"], 7);
    }

    #[test]
    fn numbers_of_other_lengths_are_left_alone() {
        let (out, report) =
            redact(json!({"ms": "1700000000000", "count": "74", "id": "46ba0ac2845071e23ccdeb2ae03bfdea"}));
        assert_eq!(
            out,
            json!({"ms": "1700000000000", "count": "74", "id": "46ba0ac2845071e23ccdeb2ae03bfdea"})
        );
        assert!(report.replaced.is_empty());
    }
}
