//! Canonical JSON and SHA-256: the basis of prompt versions and cache keys.
//!
//! Canonical means object keys sorted at every depth and no insignificant whitespace, so the
//! same content always hashes the same whatever order a file or a struct wrote it in.

use serde_json::Value;
use sha2::{Digest, Sha256};

/// Serialize `value` with object keys sorted recursively and no extra whitespace.
pub fn canonical_json(value: &Value) -> String {
    let mut out = Vec::new();
    write_canonical(value, &mut out);
    utf8(out)
}

/// JSON text written by serde_json is UTF-8; nothing is lost if that ever changed.
pub(crate) fn utf8(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// Append the canonical JSON of `value` to `out`, allocating nothing but the key lists: a
/// replay canonicalizes every case's messages and every sample's parameters.
pub(crate) fn write_canonical(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push(b'{');
            for (index, key) in keys.into_iter().enumerate() {
                if index > 0 {
                    out.push(b',');
                }
                write_scalar(key, out);
                out.push(b':');
                write_canonical(&map[key], out);
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    out.push(b',');
                }
                write_canonical(item, out);
            }
            out.push(b']');
        }
        scalar => write_scalar(scalar, out),
    }
}

/// Append a string, number, boolean or null as serde_json writes it (compact, which is
/// canonical for a scalar).
pub(crate) fn write_scalar<T: serde::Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) {
    // Writing to a Vec cannot fail, and these values have no map keys that could.
    let _ = serde_json::to_writer(out, value);
}

/// Lower-case hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// SHA-256 of the canonical JSON of `value`.
pub fn sha256_of_json(value: &Value) -> String {
    sha256_hex(canonical_json(value).as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn key_order_does_not_matter() {
        let a: Value = serde_json::from_str(r#"{"b": 1, "a": {"y": [1, {"d": 2, "c": 3}], "x": "é"}}"#).unwrap();
        let b: Value = serde_json::from_str(r#"{"a": {"x": "é", "y": [1, {"c": 3, "d": 2}]}, "b": 1}"#).unwrap();
        assert_eq!(canonical_json(&a), r#"{"a":{"x":"é","y":[1,{"c":3,"d":2}]},"b":1}"#);
        assert_eq!(sha256_of_json(&a), sha256_of_json(&b));
    }

    #[test]
    fn sha256_matches_known_vector() {
        // FIPS 180-2 test vector for "abc".
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_ne!(sha256_of_json(&json!({"a": 1})), sha256_of_json(&json!({"a": 2})));
    }
}
