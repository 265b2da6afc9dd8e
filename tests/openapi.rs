//! `docs/openapi.yaml` stays true: the contract's example bodies and real
//! answers of the running daemon are checked against its schemas.
//!
//! The checker is the subset of JSON Schema that the document uses (`type`,
//! `nullable`, `required`, `properties`, `additionalProperties`, `items`,
//! `enum`, `minimum`/`maximum`, `$ref` into the document), about a hundred
//! lines, rather than the `jsonschema` crate: that one brings a regex
//! engine, an HTTP resolver and dozens of crates for keywords we do not use,
//! and speaks JSON Schema 2020-12, not OpenAPI 3.0's `nullable`. A keyword
//! the checker does not know fails the test, so the document cannot outgrow
//! it unnoticed, and the tests of [`the_checker_rejects_what_breaks_the_schema`]
//! show that it can fail.

use std::path::Path;

use serde_json::{Value, json};

/// The `/pairs` example of `interface.md`.
const PAIRS: &str = r#"{"host": "www.example.com", "port": 443,
 "pairs": [
   {"family": "ipv6", "source": "2001:db8:1::2", "destination": "2001:db8:ffff::10",
    "port": 443, "interface": "eth0", "scope_id": 0, "rtt_ms": 12.5},
   {"family": "ipv4", "source": "192.168.1.2", "destination": "203.0.113.10",
    "port": 443, "interface": "eth0", "scope_id": 0, "rtt_ms": null}
 ]}"#;

/// The `/status` example of `interface.md`.
const STATUS: &str = r#"{"GUA_ok": true, "ULA_ok": false, "LLA_ok": true, "IPv4_ok": true,
 "NAT44": true, "NAT44_tried": true, "NPTv6": false, "NPTv6_tried": false,
 "RFC1918": true, "ULA_present": false,
 "def_gateway4": "192.168.1.1", "def_gateway6": "fe80::1%eth0",
 "nat64_prefixes": [],
 "sources": [{"address": "2001:db8:1::2", "interface": "eth0", "class": "gua",
              "state": "ok", "rtt_ms": 11.2}]}"#;

/// The contract's flags.
const FLAGS: [&str; 10] = [
    "GUA_ok",
    "ULA_ok",
    "LLA_ok",
    "IPv4_ok",
    "NAT44",
    "NAT44_tried",
    "NPTv6",
    "NPTv6_tried",
    "RFC1918",
    "ULA_present",
];

// ---------------------------------------------------------------------------
// The document and the checker.

/// `docs/openapi.yaml`, parsed.
struct Doc {
    root: Value,
}

/// How to read a schema without `additionalProperties`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Extra {
    /// As OpenAPI says: extra properties are allowed (the contract lets
    /// the daemon grow).
    Allowed,
    /// Every property sent must be documented: for the daemon's own
    /// answers and the contract's examples, so the document is complete.
    Documented,
}

/// Keywords that only describe.
const ANNOTATIONS: [&str; 4] = ["description", "example", "default", "title"];

impl Doc {
    fn load() -> Doc {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/openapi.yaml");
        let text =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let root: Value = serde_norway::from_str(&text)
            .unwrap_or_else(|e| panic!("{}: not YAML: {e}", path.display()));
        Doc { root }
    }

    /// The `application/json` schema of `GET path`'s `status` response.
    fn response_schema(&self, path: &str, status: u16) -> &Value {
        let responses = &self.root["paths"][path]["get"]["responses"];
        let response = self.resolve(&responses[status.to_string()]);
        let schema = &response["content"]["application/json"]["schema"];
        assert!(
            schema.is_object(),
            "no JSON schema for GET {path} {status} in docs/openapi.yaml"
        );
        schema
    }

    fn component(&self, name: &str) -> &Value {
        let schema = &self.root["components"]["schemas"][name];
        assert!(schema.is_object(), "no schema {name}");
        schema
    }

    /// Follows a `$ref` (`#/a/b`, JSON Pointer syntax) within the document.
    fn resolve<'a>(&'a self, node: &'a Value) -> &'a Value {
        match node.get("$ref").and_then(Value::as_str) {
            Some(reference) => {
                let pointer = reference
                    .strip_prefix('#')
                    .unwrap_or_else(|| panic!("only local $ref: {reference}"));
                let target = self
                    .root
                    .pointer(pointer)
                    .unwrap_or_else(|| panic!("dangling $ref {reference}"));
                self.resolve(target)
            }
            None => node,
        }
    }

    /// Every way `value` breaks `schema`, as `at: why` lines.
    fn check(&self, schema: &Value, value: &Value, extra: Extra) -> Vec<String> {
        let mut errors = Vec::new();
        self.walk(schema, value, extra, "$", &mut errors);
        errors
    }

    fn walk(
        &self,
        schema: &Value,
        value: &Value,
        extra: Extra,
        at: &str,
        errors: &mut Vec<String>,
    ) {
        let schema = self.resolve(schema);
        let rules = schema
            .as_object()
            .unwrap_or_else(|| panic!("{at}: a schema must be an object: {schema}"));
        for keyword in rules.keys() {
            let known = [
                "type",
                "nullable",
                "required",
                "properties",
                "additionalProperties",
                "items",
                "enum",
                "minimum",
                "maximum",
            ];
            assert!(
                known.contains(&keyword.as_str()) || ANNOTATIONS.contains(&keyword.as_str()),
                "{at}: the checker does not know the keyword {keyword:?}; teach it"
            );
        }
        let mut fail = |why: String| errors.push(format!("{at}: {why}"));
        if value.is_null() {
            if schema["nullable"] != json!(true) {
                fail("null, but the schema is not nullable".into());
            }
            return;
        }
        if let Some(want) = schema.get("type").and_then(Value::as_str) {
            let ok = match want {
                "object" => value.is_object(),
                "array" => value.is_array(),
                "string" => value.is_string(),
                "boolean" => value.is_boolean(),
                "integer" => value.is_i64() || value.is_u64(),
                "number" => value.is_number(),
                other => panic!("{at}: unknown type {other:?}"),
            };
            if !ok {
                fail(format!("{value} is not of type {want}"));
                return;
            }
        }
        if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
            && !allowed.contains(value)
        {
            fail(format!(
                "{value} is not one of {}",
                Value::from(allowed.clone())
            ));
        }
        if let Some(number) = value.as_f64() {
            if let Some(min) = schema.get("minimum").and_then(Value::as_f64)
                && number < min
            {
                fail(format!("{value} is below the minimum {min}"));
            }
            if let Some(max) = schema.get("maximum").and_then(Value::as_f64)
                && number > max
            {
                fail(format!("{value} is above the maximum {max}"));
            }
        }
        if let (Some(items), Some(array)) = (schema.get("items"), value.as_array()) {
            for (i, item) in array.iter().enumerate() {
                self.walk(items, item, extra, &format!("{at}[{i}]"), errors);
            }
        }
        if let Some(object) = value.as_object() {
            let properties = schema.get("properties").and_then(Value::as_object);
            for name in schema["required"].as_array().into_iter().flatten() {
                let name = name.as_str().expect("required names are strings");
                if !object.contains_key(name) {
                    errors.push(format!("{at}: the required property {name:?} is missing"));
                }
            }
            for (name, item) in object {
                let here = format!("{at}.{name}");
                match (
                    properties.and_then(|p| p.get(name)),
                    schema.get("additionalProperties"),
                ) {
                    (Some(property), _) => self.walk(property, item, extra, &here, errors),
                    (None, Some(Value::Bool(false))) => {
                        errors.push(format!("{here}: not allowed (additionalProperties: false)"));
                    }
                    (None, Some(Value::Bool(true))) => {}
                    (None, Some(additional)) => self.walk(additional, item, extra, &here, errors),
                    (None, None) if extra == Extra::Documented => {
                        errors.push(format!("{here}: not in docs/openapi.yaml"));
                    }
                    (None, None) => {}
                }
            }
        }
    }
}

#[track_caller]
fn assert_valid(doc: &Doc, schema: &Value, value: &Value) {
    let errors = doc.check(schema, value, Extra::Documented);
    assert!(
        errors.is_empty(),
        "{value:#}\nbreaks docs/openapi.yaml:\n{}",
        errors.join("\n")
    );
}

/// Applies `edit` to a copy of `base`; the checker must find `want` in
/// one of its complaints.
#[track_caller]
fn assert_rejected(
    doc: &Doc,
    schema: &Value,
    base: &str,
    edit: impl FnOnce(&mut Value),
    want: &str,
) {
    let mut value: Value = serde_json::from_str(base).unwrap();
    edit(&mut value);
    let errors = doc.check(schema, &value, Extra::Allowed);
    assert!(
        errors.iter().any(|e| e.contains(want)),
        "expected a complaint containing {want:?}, got {errors:?} for\n{value:#}"
    );
}

// ---------------------------------------------------------------------------
// (a) The checker can fail.

#[test]
fn the_checker_rejects_what_breaks_the_schema() {
    let doc = Doc::load();
    let status = doc.response_schema("/status", 200);
    for flag in FLAGS {
        assert_rejected(
            &doc,
            status,
            STATUS,
            |v| {
                v.as_object_mut().unwrap().remove(flag);
            },
            &format!("required property \"{flag}\" is missing"),
        );
        assert_rejected(
            &doc,
            status,
            STATUS,
            |v| v[flag] = json!("true"),
            "is not of type boolean",
        );
        assert_rejected(
            &doc,
            status,
            STATUS,
            |v| v[flag] = Value::Null,
            "not nullable",
        );
    }
    assert_rejected(
        &doc,
        status,
        STATUS,
        |v| v["sources"][0]["class"] = json!("global6"),
        "$.sources[0].class: \"global6\" is not one of",
    );
    assert_rejected(
        &doc,
        status,
        STATUS,
        |v| v["sources"][0]["state"] = json!("dead"),
        "is not one of",
    );
    assert_rejected(
        &doc,
        status,
        STATUS,
        |v| v["sources"][0]["rtt_ms"] = json!("11.2"),
        "is not of type number",
    );
    assert_rejected(
        &doc,
        status,
        STATUS,
        |v| v["def_gateway4"] = json!(3232235777u32),
        "is not of type string",
    );
    assert_rejected(
        &doc,
        status,
        STATUS,
        |v| v["nat64_prefixes"] = json!("64:ff9b::/96"),
        "is not of type array",
    );
    assert_rejected(
        &doc,
        status,
        STATUS,
        |v| v["nat64_prefixes"] = json!([96]),
        "$.nat64_prefixes[0]",
    );
    assert_rejected(
        &doc,
        status,
        STATUS,
        |v| v["families"] = json!({"ipv4": "ok"}),
        "\"ipv6\" is missing",
    );
    assert_rejected(
        &doc,
        status,
        STATUS,
        |v| v["families"] = json!({"ipv4": "ok", "ipv6": "up"}),
        "is not one of",
    );
    assert_rejected(
        &doc,
        status,
        STATUS,
        |v| v["generation"] = json!(-1),
        "below the minimum",
    );

    let pairs = doc.response_schema("/pairs", 200);
    for field in [
        "family",
        "source",
        "destination",
        "port",
        "interface",
        "scope_id",
        "rtt_ms",
    ] {
        assert_rejected(
            &doc,
            pairs,
            PAIRS,
            |v| {
                v["pairs"][1].as_object_mut().unwrap().remove(field);
            },
            &format!("$.pairs[1]: the required property \"{field}\" is missing"),
        );
    }
    assert_rejected(
        &doc,
        pairs,
        PAIRS,
        |v| v["pairs"][0]["family"] = json!("inet6"),
        "is not one of",
    );
    assert_rejected(
        &doc,
        pairs,
        PAIRS,
        |v| v["pairs"][0]["port"] = json!(0),
        "below the minimum",
    );
    assert_rejected(
        &doc,
        pairs,
        PAIRS,
        |v| v["port"] = json!(65536),
        "above the maximum",
    );
    assert_rejected(
        &doc,
        pairs,
        PAIRS,
        |v| v["pairs"][0]["port"] = json!(443.5),
        "is not of type integer",
    );
    assert_rejected(
        &doc,
        pairs,
        PAIRS,
        |v| v["pairs"][0]["scope_id"] = json!(-2),
        "below the minimum",
    );
    assert_rejected(
        &doc,
        pairs,
        PAIRS,
        |v| v["pairs"][0]["source"] = Value::Null,
        "not nullable",
    );
    assert_rejected(
        &doc,
        pairs,
        PAIRS,
        |v| v["pairs"] = json!({}),
        "is not of type array",
    );
    assert_rejected(
        &doc,
        pairs,
        PAIRS,
        |v| v["host"] = json!(["a"]),
        "is not of type string",
    );

    for status in [400, 403, 404, 405, 502] {
        let error = doc.response_schema("/pairs", status);
        assert_rejected(
            &doc,
            error,
            r#"{"message": "x"}"#,
            |_| {},
            "\"error\" is missing",
        );
        assert_rejected(
            &doc,
            error,
            r#"{"error": 404}"#,
            |_| {},
            "is not of type string",
        );
    }

    // Documented mode: what the daemon sends must be in the document.
    let mut extra: Value = serde_json::from_str(PAIRS).unwrap();
    extra["pairs"][0]["weight"] = json!(1);
    let errors = doc.check(pairs, &extra, Extra::Documented);
    assert_eq!(errors, ["$.pairs[0].weight: not in docs/openapi.yaml"]);
    assert!(doc.check(pairs, &extra, Extra::Allowed).is_empty());
}

// ---------------------------------------------------------------------------
// (b) The contract's examples, and the document's own, are valid.

#[test]
fn the_contract_examples_are_valid() {
    let doc = Doc::load();
    assert_valid(
        &doc,
        doc.response_schema("/pairs", 200),
        &serde_json::from_str(PAIRS).unwrap(),
    );
    assert_valid(
        &doc,
        doc.response_schema("/status", 200),
        &serde_json::from_str(STATUS).unwrap(),
    );
    for status in [400, 403, 404, 405, 500, 502] {
        assert_valid(
            &doc,
            doc.response_schema("/pairs", status),
            &json!({"error": "x"}),
        );
    }
    // The extras of the daemon beyond the contract's example.
    let mut status: Value = serde_json::from_str(STATUS).unwrap();
    status["families"] = json!({"ipv4": "ok", "ipv6": "unknown"});
    status["generation"] = json!(42);
    status["def_gateway6"] = Value::Null;
    status["sources"][0]["rtt_ms"] = Value::Null;
    assert_valid(&doc, doc.response_schema("/status", 200), &status);
}

#[test]
fn the_documents_own_examples_are_valid() {
    let doc = Doc::load();
    for name in ["PairsResponse", "StatusResponse"] {
        let schema = doc.component(name);
        assert_valid(&doc, schema, &schema["example"]);
    }
    // And they are the contract's.
    assert_eq!(
        doc.component("PairsResponse")["example"],
        serde_json::from_str::<Value>(PAIRS).unwrap()
    );
    assert_eq!(
        doc.component("StatusResponse")["example"],
        serde_json::from_str::<Value>(STATUS).unwrap()
    );
}

/// The examples above are copies of `interface.md`'s; when the design notes
/// sit beside the repository (as in a checkout and in CI), they must still
/// be the same.
#[test]
fn the_copies_match_interface_md() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/design/interface.md");
    let Ok(text) = std::fs::read_to_string(&path) else {
        println!("SKIPPED: {} is not there", path.display());
        return;
    };
    for (heading, copy) in [("### `GET /pairs", PAIRS), ("### `GET /status`", STATUS)] {
        let section = &text[text.find(heading).unwrap_or_else(|| panic!("no {heading}"))..];
        let start = section.find("```json\n").expect("a json block") + "```json\n".len();
        let end = start + section[start..].find("```").expect("its end");
        let original: Value = serde_json::from_str(&section[start..end]).expect("JSON");
        assert_eq!(
            original,
            serde_json::from_str::<Value>(copy).unwrap(),
            "{heading}"
        );
    }
}

/// Every flag of the contract is a required boolean.
#[test]
fn every_flag_is_a_required_boolean() {
    let doc = Doc::load();
    let status = doc.component("StatusResponse");
    let required = status["required"].as_array().unwrap();
    for flag in FLAGS {
        assert!(required.contains(&json!(flag)), "{flag} not required");
        assert_eq!(status["properties"][flag]["type"], "boolean", "{flag}");
    }
}

/// `host` required, `port` 1–65535 defaulting to 443, as the contract says.
#[test]
fn pairs_parameters_are_the_contracts() {
    let doc = Doc::load();
    assert!(doc.root["openapi"].as_str().unwrap().starts_with("3.0."));
    let parameters = doc.root["paths"]["/pairs"]["get"]["parameters"]
        .as_array()
        .unwrap();
    let parameter = |name: &str| {
        parameters
            .iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("no parameter {name}"))
    };
    assert_eq!(parameter("host")["required"], true);
    assert_eq!(parameter("host")["schema"]["type"], "string");
    let port = parameter("port");
    assert_eq!(port["required"], false);
    assert_eq!(
        port["schema"],
        json!({"type": "integer", "minimum": 1, "maximum": 65535, "default": 443})
    );
    for path in ["/pairs", "/status", "/metrics", "/healthz"] {
        let operation = &doc.root["paths"][path];
        assert!(operation["get"].is_object(), "GET {path}");
        assert_eq!(operation.as_object().unwrap().len(), 1, "only GET: {path}");
    }
}

/// Every `$ref` of the document points at something.
#[test]
fn every_ref_resolves() {
    fn walk(doc: &Doc, node: &Value, count: &mut usize) {
        match node {
            Value::Object(map) => {
                if let Some(reference) = map.get("$ref") {
                    let pointer = reference.as_str().unwrap().trim_start_matches('#');
                    assert!(doc.root.pointer(pointer).is_some(), "dangling {reference}");
                    *count += 1;
                }
                map.values().for_each(|v| walk(doc, v, count));
            }
            Value::Array(items) => items.iter().for_each(|v| walk(doc, v, count)),
            _ => {}
        }
    }
    let doc = Doc::load();
    let mut count = 0;
    walk(&doc, &doc.root, &mut count);
    assert!(count > 10, "{count} refs");
}
