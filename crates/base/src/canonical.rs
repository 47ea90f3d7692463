//! Canonical JSON (Contract §1.2), implemented as RFC 8785 (JCS).
//!
//! JCS meets every rule of §1.2: keys sorted at every level, no whitespace,
//! numbers in their shortest round-trip form (`1.0` → `1`, `1.10` → `1.1`),
//! strings as raw UTF-8 with only the mandatory escapes. Where §1.2 is loose
//! JCS decides: keys sort by UTF-16 code units, numbers are formatted the
//! way ECMAScript's `Number.prototype.toString` does (`1e+21`, `1e-7`).
//!
//! One deliberate strictness beyond JCS: an integer outside ±(2^53 − 1) is an
//! error instead of being rounded to a double, because a rounded value would
//! let two different payloads share one signature (§1.1: "integers fit in
//! 53 bits").

use std::fmt::Write as _;

use serde_json::Value;

/// Largest integer a double represents exactly, and so the largest the
/// contract allows on the wire.
pub const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CanonicalError {
    #[error(
        "integer {value} at {path} does not fit in 53 bits; the contract carries such values as strings"
    )]
    IntegerOutOfRange { value: String, path: String },
    #[error("number at {path} is not finite")]
    NonFiniteNumber { path: String },
}

/// Serialise `value` into its canonical byte string.
pub fn to_canonical_bytes(value: &Value) -> Result<Vec<u8>, CanonicalError> {
    let mut out = Vec::with_capacity(128);
    write_value(value, &mut out, &mut String::from("$"))?;
    Ok(out)
}

fn write_value(value: &Value, out: &mut Vec<u8>, path: &mut String) -> Result<(), CanonicalError> {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => write_number(n, out, path)?,
        Value::String(s) => write_string(s, out),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                let len = path.len();
                let _ = write!(path, "[{i}]");
                write_value(item, out, path)?;
                path.truncate(len);
            }
            out.push(b']');
        }
        Value::Object(map) => {
            let mut members: Vec<(&str, Member<'_>)> = map
                .iter()
                .map(|(key, item)| (key.as_str(), Member::Json(item)))
                .collect();
            write_object(&mut members, out, path)?;
        }
    }
    Ok(())
}

/// One member of an object given to [`object_to_canonical_bytes`].
pub enum Member<'a> {
    Text(&'a str),
    Json(&'a Value),
}

/// The canonical bytes of the object made of `members`, exactly as
/// [`to_canonical_bytes`] gives them for the equivalent `Value`, without
/// building that value (signed envelopes would otherwise copy their body).
/// Keys must be distinct.
pub fn object_to_canonical_bytes(
    members: &mut [(&str, Member<'_>)],
) -> Result<Vec<u8>, CanonicalError> {
    debug_assert!(
        members
            .iter()
            .enumerate()
            .all(|(i, (key, _))| members[..i].iter().all(|(other, _)| other != key)),
        "object members must have distinct keys"
    );
    let mut out = Vec::with_capacity(256);
    write_object(members, &mut out, &mut String::from("$"))?;
    Ok(out)
}

fn write_object(
    members: &mut [(&str, Member<'_>)],
    out: &mut Vec<u8>,
    path: &mut String,
) -> Result<(), CanonicalError> {
    members.sort_by(|a, b| a.0.encode_utf16().cmp(b.0.encode_utf16()));
    out.push(b'{');
    for (i, (key, member)) in members.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_string(key, out);
        out.push(b':');
        match member {
            Member::Text(text) => write_string(text, out),
            Member::Json(item) => {
                let len = path.len();
                path.push('.');
                path.push_str(key);
                write_value(item, out, path)?;
                path.truncate(len);
            }
        }
    }
    out.push(b'}');
    Ok(())
}

fn write_number(
    n: &serde_json::Number,
    out: &mut Vec<u8>,
    path: &str,
) -> Result<(), CanonicalError> {
    if let Some(i) = n.as_i64() {
        if i.unsigned_abs() > MAX_SAFE_INTEGER {
            return Err(out_of_range(n, path));
        }
        out.extend_from_slice(i.to_string().as_bytes());
        return Ok(());
    }
    if n.as_u64().is_some() {
        // Every u64 that is not also an i64 is above 2^63, far out of range.
        return Err(out_of_range(n, path));
    }
    let f = n.as_f64().ok_or_else(|| CanonicalError::NonFiniteNumber {
        path: path.to_owned(),
    })?;
    if !f.is_finite() {
        return Err(CanonicalError::NonFiniteNumber {
            path: path.to_owned(),
        });
    }
    let mut buf = ryu_js::Buffer::new();
    out.extend_from_slice(buf.format_finite(f).as_bytes());
    Ok(())
}

fn out_of_range(n: &serde_json::Number, path: &str) -> CanonicalError {
    CanonicalError::IntegerOutOfRange {
        value: n.to_string(),
        path: path.to_owned(),
    }
}

fn write_string(s: &str, out: &mut Vec<u8>) {
    out.push(b'"');
    // Copy runs that need no escape in one go; only `"`, `\` and control
    // characters are escaped, and those are all single bytes in UTF-8.
    let bytes = s.as_bytes();
    let mut run = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let short: Option<&[u8]> = match b {
            b'"' => Some(b"\\\""),
            b'\\' => Some(b"\\\\"),
            0x08 => Some(b"\\b"),
            0x09 => Some(b"\\t"),
            0x0a => Some(b"\\n"),
            0x0c => Some(b"\\f"),
            0x0d => Some(b"\\r"),
            0x00..=0x1f => None,
            _ => continue,
        };
        out.extend_from_slice(&bytes[run..i]);
        match short {
            Some(escape) => out.extend_from_slice(escape),
            None => out.extend_from_slice(format!("\\u{b:04x}").as_bytes()),
        }
        run = i + 1;
    }
    out.extend_from_slice(&bytes[run..]);
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn canon(v: &Value) -> String {
        String::from_utf8(to_canonical_bytes(v).unwrap()).unwrap()
    }

    fn canon_text(text: &str) -> String {
        canon(&serde_json::from_str(text).unwrap())
    }

    #[test]
    fn keys_sorted_at_every_level_without_whitespace() {
        let v = json!({"b": 1, "a": {"z": [3, {"y": 1, "x": 2}], "c": null}});
        assert_eq!(canon(&v), r#"{"a":{"c":null,"z":[3,{"x":2,"y":1}]},"b":1}"#);
    }

    #[test]
    fn numbers_lose_trailing_zeros() {
        assert_eq!(
            canon_text("[1.0, 1.00, 1, 1.10, -0.0, 0.5]"),
            "[1,1,1,1.1,0,0.5]"
        );
    }

    #[test]
    fn numbers_follow_ecmascript_formatting() {
        assert_eq!(
            canon_text("[1e21, 1e-7, 0.000001, 123456789.125, 5e-324, 1.7976931348623157e308]"),
            "[1e+21,1e-7,0.000001,123456789.125,5e-324,1.7976931348623157e+308]"
        );
        assert_eq!(canon_text("[0.1, 0.7, 3.14159]"), "[0.1,0.7,3.14159]");
    }

    #[test]
    fn integers_beyond_53_bits_are_refused_with_their_path() {
        let err = to_canonical_bytes(&json!({"a": [1, 9007199254740993u64]})).unwrap_err();
        assert_eq!(
            err,
            CanonicalError::IntegerOutOfRange {
                value: "9007199254740993".into(),
                path: "$.a[1]".into()
            }
        );
        assert_eq!(canon(&json!(9007199254740991u64)), "9007199254740991");
        assert_eq!(canon(&json!(-9007199254740991i64)), "-9007199254740991");
    }

    #[test]
    fn strings_keep_non_ascii_and_escape_only_controls() {
        let v = json!({"name": "Grüße 🔥 \"q\" \\ \u{1f}\n\t/"});
        assert_eq!(
            canon(&v),
            "{\"name\":\"Grüße 🔥 \\\"q\\\" \\\\ \\u001f\\n\\t/\"}"
        );
    }

    #[test]
    fn every_short_escape_and_escapes_at_either_end() {
        let v = json!(["\"a\u{8}\u{c}\r\u{7f}\u{0}", "\\", "\n"]);
        assert_eq!(
            canon(&v),
            "[\"\\\"a\\b\\f\\r\u{7f}\\u0000\",\"\\\\\",\"\\n\"]"
        );
    }

    #[test]
    fn keys_sort_by_utf16_code_units() {
        // U+FF61 sorts after U+1F600 in UTF-8 byte order but before it in
        // UTF-16 order (the surrogate 0xD83D < 0xFF61).
        let v = json!({"\u{ff61}": 1, "\u{1f600}": 2, "a": 3});
        assert_eq!(canon(&v), "{\"a\":3,\"\u{1f600}\":2,\"\u{ff61}\":1}");
    }

    #[test]
    fn rfc8785_appendix_example() {
        let text = r#"{
          "numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],
          "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
          "literals": [null, true, false]
        }"#;
        assert_eq!(
            canon_text(text),
            "{\"literals\":[null,true,false],\"numbers\":[333333333.3333333,1e+30,4.5,0.002,1e-27],\
             \"string\":\"€$\\u000f\\nA'B\\\"\\\\\\\\\\\"/\"}"
        );
    }
}
