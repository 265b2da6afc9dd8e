//! The JSON the sidecar writes: a few objects of strings, numbers, booleans
//! and arrays, so a writer of forty lines instead of `serde_json` (the
//! sidecar never parses JSON, and every byte of the binary counts on a home
//! router). RFC 8259 is the rule for what is written.

use std::fmt::Write as _;

/// An object being written into a `String`; `finish` closes it.
#[derive(Debug)]
pub struct Object<'a> {
    out: &'a mut String,
    first: bool,
}

impl<'a> Object<'a> {
    pub fn new(out: &'a mut String) -> Object<'a> {
        out.push('{');
        Object { out, first: true }
    }

    fn key(&mut self, key: &str) -> &mut String {
        if !self.first {
            self.out.push_str(", ");
        }
        self.first = false;
        string(self.out, key);
        self.out.push_str(": ");
        self.out
    }

    pub fn str(&mut self, key: &str, value: &str) -> &mut Self {
        let out = self.key(key);
        string(out, value);
        self
    }

    /// A string, or `null` for `None`.
    pub fn opt_str(&mut self, key: &str, value: Option<&str>) -> &mut Self {
        match value {
            Some(v) => self.str(key, v),
            None => self.raw(key, "null"),
        }
    }

    pub fn bool(&mut self, key: &str, value: bool) -> &mut Self {
        self.raw(key, if value { "true" } else { "false" })
    }

    pub fn uint(&mut self, key: &str, value: u64) -> &mut Self {
        let out = self.key(key);
        // Writing to a String cannot fail.
        let _ = write!(out, "{value}");
        self
    }

    /// Milliseconds with microsecond precision, or `null`.
    pub fn millis(&mut self, key: &str, value: Option<std::time::Duration>) -> &mut Self {
        let out = self.key(key);
        match value {
            // A u128 of microseconds printed as a decimal: never an exponent,
            // never NaN (RFC 8259 §6 has neither).
            Some(d) => {
                let micros = d.as_micros();
                let _ = write!(out, "{}.{:03}", micros / 1000, micros % 1000);
            }
            None => out.push_str("null"),
        }
        self
    }

    /// A value already written as JSON (a nested object or array).
    pub fn raw(&mut self, key: &str, json: &str) -> &mut Self {
        self.key(key).push_str(json);
        self
    }

    pub fn finish(&mut self) {
        self.out.push('}');
    }
}

/// `items` as a JSON array, each written by `item`.
pub fn array<T>(
    items: impl IntoIterator<Item = T>,
    mut item: impl FnMut(&mut String, T),
) -> String {
    let mut out = String::from("[");
    for (i, t) in items.into_iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        item(&mut out, t);
    }
    out.push(']');
    out
}

/// A JSON string (RFC 8259 §7): quotes, backslashes and control
/// characters escaped, everything else as UTF-8.
pub fn string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// `{"error": message}`.
pub fn error(message: &str) -> String {
    let mut out = String::new();
    Object::new(&mut out).str("error", message).finish();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn strings_are_escaped_per_rfc_8259() {
        let mut out = String::new();
        string(&mut out, "a\"b\\c\nd\u{1}é");
        assert_eq!(out, r#""a\"b\\c\nd\u0001é""#);
    }

    #[test]
    fn an_object_with_every_kind_of_value() {
        let mut out = String::new();
        Object::new(&mut out)
            .str("s", "x")
            .opt_str("n", None)
            .bool("b", true)
            .uint("u", 443)
            .millis("r", Some(Duration::from_micros(12_345)))
            .millis("z", Some(Duration::from_micros(7)))
            .raw("a", &array([1, 2], |o, i| o.push_str(&i.to_string())))
            .finish();
        assert_eq!(
            out,
            r#"{"s": "x", "n": null, "b": true, "u": 443, "r": 12.345, "z": 0.007, "a": [1, 2]}"#
        );
    }
}
