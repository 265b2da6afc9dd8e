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

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use getapr::api::Limits;
use getapr::daemon::Handle;
use hickory_proto::op::ResponseCode;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use common::{AuthUpstream, FakeUpstream};

/// The `/pairs` example of `docs/interface.md`.
const PAIRS: &str = include_str!("contract/pairs.json");

/// The `/status` example of `docs/interface.md`.
const STATUS: &str = include_str!("contract/status.json");

use common::CONTRACT_FLAGS as FLAGS;

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
// The running daemon: in process, DNS and the sidecar on 127.0.0.1:0, a
// local upstream, no probe traffic.

/// Starts getapr forwarding to `upstream` (`common::http::sidecar`);
/// returns its handle and the sidecar's address.
async fn start_daemon(upstream: SocketAddr) -> (Handle, SocketAddr) {
    let s = common::http::sidecar(upstream, Limits::default()).await;
    (s.handle, s.http)
}

/// An answer of the sidecar.
#[derive(Debug)]
struct Answer {
    status: u16,
    content_type: String,
    body: Vec<u8>,
}

impl Answer {
    #[track_caller]
    fn json(&self) -> Value {
        assert!(
            self.content_type.starts_with("application/json"),
            "Content-Type {:?}",
            self.content_type
        );
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
}

/// Sends `METHOD target` with `Host: host` and reads the answer to the close.
async fn request(addr: SocketAddr, method: &str, target: &str, host: &str) -> Answer {
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let head =
            format!("{method} {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
        stream.write_all(head.as_bytes()).await.unwrap();
        let mut bytes = Vec::new();
        stream.read_to_end(&mut bytes).await.unwrap();
        bytes
    };
    let bytes = tokio::time::timeout(Duration::from_secs(10), exchange)
        .await
        .expect("the sidecar answers within 10 s");
    let split = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a complete head");
    let head = String::from_utf8_lossy(&bytes[..split]).into_owned();
    let mut body = bytes[split + 4..].to_vec();
    let mut lines = head.lines();
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let header = |name: &str| {
        head.lines().skip(1).find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
        })
    };
    if header("transfer-encoding").is_some_and(|te| te.contains("chunked")) {
        body = dechunk(&body);
    } else if let Some(len) = header("content-length") {
        body.truncate(len.parse().unwrap());
    }
    Answer {
        status,
        content_type: header("content-type").unwrap_or_default(),
        body,
    }
}

fn dechunk(mut bytes: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    loop {
        let nl = bytes.windows(2).position(|w| w == b"\r\n").unwrap();
        let size_text = std::str::from_utf8(&bytes[..nl]).unwrap();
        let size = usize::from_str_radix(size_text.split(';').next().unwrap().trim(), 16).unwrap();
        if size == 0 {
            return body;
        }
        body.extend_from_slice(&bytes[nl + 2..nl + 2 + size]);
        bytes = &bytes[nl + 2 + size + 2..];
    }
}

/// GETs `target` from the sidecar as a local client would.
async fn get(addr: SocketAddr, target: &str) -> Answer {
    request(addr, "GET", target, &addr.to_string()).await
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
        |v| v["path_mtu"] = json!({"ipv4": "ok", "ipv6": "failed"}),
        "is not one of",
    );
    assert_rejected(
        &doc,
        status,
        STATUS,
        |v| v["generation"] = json!(-1),
        "below the minimum",
    );

    assert_rejected(
        &doc,
        status,
        STATUS,
        |v| v["ipv4_literals"] = json!("maybe"),
        "is not one of",
    );
    assert_rejected(
        &doc,
        status,
        STATUS,
        |v| {
            v["nat64"] = json!([{"prefix": "64:ff9b::/96", "source": "dhcp",
                                 "interface": null, "router": null, "expires_in_s": null}])
        },
        "$.nat64[0].source",
    );
    assert_rejected(
        &doc,
        status,
        STATUS,
        |v| v["nat64"] = json!([{"prefix": "64:ff9b::/96", "source": "ra"}]),
        "\"expires_in_s\" is missing",
    );
    assert_rejected(
        &doc,
        status,
        STATUS,
        |v| v["dns64"] = json!({"synthesize": "yes", "active": true}),
        "is not one of",
    );
    assert_rejected(
        &doc,
        status,
        STATUS,
        |v| v["CLAT"] = Value::Null,
        "not nullable",
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
    status["path_mtu"] = json!({"ipv4": "ok", "ipv6": "blackhole"});
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

/// The examples above are copies of the contract's (`docs/interface.md`):
/// they must stay the same.
#[test]
fn the_copies_match_interface_md() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/interface.md");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
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

// ---------------------------------------------------------------------------
// (c) Real answers of the running daemon are valid, and every field they
// carry is in the document.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_pairs_answers_are_valid() {
    let doc = Doc::load();
    let auth = AuthUpstream::start().await;
    let (handle, http) = start_daemon(auth.addr()).await;

    // A dual-stack name served by the upstream: its pairs (if this host has
    // sources for them) go to its addresses.
    let answer = get(http, "/pairs?host=dual.example.test").await;
    assert_eq!(answer.status, 200, "{answer:?}");
    let body = answer.json();
    assert_valid(&doc, doc.response_schema("/pairs", 200), &body);
    assert_eq!(body["port"], 443);
    let names: Vec<String> = common::auth::DUAL_V4
        .iter()
        .map(ToString::to_string)
        .chain(common::auth::DUAL_V6.iter().map(ToString::to_string))
        .collect();
    for pair in body["pairs"].as_array().unwrap() {
        let destination = pair["destination"].as_str().unwrap();
        assert!(names.iter().any(|n| n == destination), "{destination}");
    }

    // IP literals skip DNS; a port given is the port answered.
    for (target, port) in [
        ("/pairs?host=192.0.2.7&port=8443", 8443),
        ("/pairs?host=2001%3Adb8%3A%3A7", 443),
        ("/pairs?host=127.0.0.1&port=1", 1),
        ("/pairs?host=%3A%3A1&port=65535", 65535),
    ] {
        let answer = get(http, target).await;
        assert_eq!(answer.status, 200, "{target}: {answer:?}");
        let body = answer.json();
        assert_valid(&doc, doc.response_schema("/pairs", 200), &body);
        assert_eq!(body["port"], port, "{target}");
    }

    // The errors are the documented Error object.
    let errors = [
        ("/pairs?host=missing.example.test", 404),
        ("/pairs?host=dual.example.test&port=0", 400),
        ("/pairs?host=dual.example.test&port=65536", 400),
        ("/pairs?host=dual.example.test&port=x", 400),
        ("/pairs", 400),
        ("/pairs?host=", 400),
        ("/pairs?host=-bad-.example..test", 400),
    ];
    for (target, status) in errors {
        let answer = get(http, target).await;
        assert_eq!(answer.status, status, "{target}: {answer:?}");
        assert_valid(&doc, doc.response_schema("/pairs", status), &answer.json());
    }
    let answer = request(http, "GET", "/pairs?host=127.0.0.1", "evil.example").await;
    assert_eq!(answer.status, 403, "{answer:?}");
    assert_valid(&doc, doc.response_schema("/pairs", 403), &answer.json());
    let answer = request(http, "POST", "/pairs?host=127.0.0.1", "localhost").await;
    assert_eq!(answer.status, 405, "{answer:?}");
    assert_valid(&doc, doc.response_schema("/pairs", 405), &answer.json());
    handle.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_upstreams_are_a_valid_502() {
    let doc = Doc::load();
    let upstream = FakeUpstream::rcode(ResponseCode::ServFail).await;
    let (handle, http) = start_daemon(upstream.addr()).await;
    let answer = get(http, "/pairs?host=www.example.test").await;
    assert_eq!(answer.status, 502, "{answer:?}");
    assert_valid(&doc, doc.response_schema("/pairs", 502), &answer.json());
    handle.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_status_metrics_and_healthz_answers_are_valid() {
    let doc = Doc::load();
    let auth = AuthUpstream::start().await;
    let (handle, http) = start_daemon(auth.addr()).await;

    let answer = get(http, "/status").await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_valid(&doc, doc.response_schema("/status", 200), &answer.json());
    let answer = request(http, "GET", "/status", "evil.example").await;
    assert_eq!(answer.status, 403, "{answer:?}");
    assert_valid(&doc, doc.response_schema("/status", 403), &answer.json());

    let answer = get(http, "/healthz").await;
    assert_eq!((answer.status, answer.body.trim_ascii()), (200, &b"ok"[..]));
    assert!(answer.content_type.starts_with("text/plain"), "{answer:?}");
    let answer = get(http, "/metrics").await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert!(
        answer.content_type.starts_with("text/plain")
            || answer
                .content_type
                .starts_with("application/openmetrics-text"),
        "{answer:?}"
    );
    handle.shutdown();
}

/// On a NAT64 network (no IPv4, IPv6 working, prefixes from a router and
/// the config): `/status` lists the prefixes with their sources, DNS64,
/// CLAT and IPv4 literals, `/pairs` of an IPv4 literal is the NAT64 pair,
/// and both are valid.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nat64_status_and_pairs_are_valid() {
    use std::sync::Arc;
    use std::time::Instant;

    use getapr::inventory::{Address, Snapshot, classify};
    use getapr::probe::known64::{Nat64Prefix, Source};
    use getapr::probe::verdicts::{Families, SourceVerdict, State, Verdicts};

    let doc = Doc::load();
    let auth = AuthUpstream::start().await;
    let (handle, http) = start_daemon(auth.addr()).await;
    // Answered: the daemon runs, and stores no verdicts of its own.
    assert_eq!(get(http, "/status").await.status, 200);
    let gua: std::net::IpAddr = "2001:db8:1::2".parse().unwrap();
    let address = Address {
        addr: gua,
        prefix_len: 64,
        interface: "eth0".into(),
        ifindex: 2,
        scope_id: 0,
        class: classify(gua),
        deprecated: false,
        temporary: false,
    };
    let nat64 = vec![
        Nat64Prefix {
            source: Source::Ra,
            prefix: "2001:db8:64::/96".parse().unwrap(),
            interface: Some("eth0".into()),
            router: Some("fe80::1".parse().unwrap()),
            expires: Some(Instant::now() + Duration::from_secs(1800)),
        },
        Nat64Prefix {
            source: Source::Config,
            prefix: "64:ff9b::/96".parse().unwrap(),
            interface: None,
            router: None,
            expires: None,
        },
    ];
    let published = Verdicts {
        generation: 3,
        sources: vec![SourceVerdict {
            address: gua,
            scope_id: 0,
            interface: "eth0".into(),
            class: address.class,
            state: State::Ok,
            link: State::Ok,
            rtt: None,
            mapped: None,
        }],
        families: Families {
            ipv4: State::Failed,
            ipv6: State::Ok,
        },
        nat64_prefixes: vec![
            "64:ff9b::/96".parse().unwrap(),
            "2001:db8:64::/96".parse().unwrap(),
        ],
        nat64,
        host: Arc::new(Snapshot {
            addresses: vec![address],
            ..Snapshot::default()
        }),
        ..Verdicts::default()
    };
    handle.verdicts().store(Arc::new(published));

    let status = get(http, "/status").await.json();
    assert_valid(&doc, doc.response_schema("/status", 200), &status);
    let ra = &status["nat64"][0];
    assert_eq!(
        (
            &ra["prefix"],
            &ra["source"],
            &ra["interface"],
            &ra["router"]
        ),
        (
            &json!("2001:db8:64::/96"),
            &json!("ra"),
            &json!("eth0"),
            &json!("fe80::1")
        )
    );
    let left = ra["expires_in_s"].as_u64().unwrap();
    assert!((1790..=1800).contains(&left), "{left}");
    assert_eq!(
        status["nat64"][1],
        json!({"prefix": "64:ff9b::/96", "source": "config", "interface": null,
               "router": null, "expires_in_s": null})
    );
    assert_eq!(
        status["nat64_prefixes"],
        json!(["64:ff9b::/96", "2001:db8:64::/96"])
    );
    // The test config leaves dns64.synthesize at its default.
    assert_eq!(
        status["dns64"],
        json!({"synthesize": "auto", "active": true})
    );
    assert_eq!(status["CLAT"], false);
    assert_eq!(status["ipv4_literals"], "nat64_pairs");

    let pairs = get(http, "/pairs?host=203.0.113.20").await.json();
    assert_valid(&doc, doc.response_schema("/pairs", 200), &pairs);
    assert_eq!(
        pairs["pairs"],
        json!([{"family": "ipv6", "source": "2001:db8:1::2",
                "destination": "2001:db8:64::cb00:7114", "port": 443,
                "interface": "eth0", "scope_id": 0, "rtt_ms": null,
                "nat64": "203.0.113.20"}])
    );
    // A native IPv6 literal is no NAT64 pair: no `nat64` key.
    let pairs = get(http, "/pairs?host=2001%3Adb8%3A9%3A%3A1").await.json();
    assert_eq!(pairs["pairs"][0]["destination"], "2001:db8:9::1", "{pairs}");
    assert!(pairs["pairs"][0].get("nat64").is_none(), "{pairs}");
    handle.shutdown();
}

/// `dns64.prefixes` and `dns64.synthesize` reach `/status` with probing
/// off, and follow a reload.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_nat64_prefixes_follow_a_reload() {
    let doc = Doc::load();
    let auth = AuthUpstream::start().await;
    let dns64 = |mode: &str, prefix: &str| {
        format!("\n[dns64]\nsynthesize = \"{mode}\"\nprefixes = [\"{prefix}\"]\n")
    };
    let s = common::http::sidecar_with(
        auth.addr(),
        Limits::default(),
        &dns64("on", "2001:db8:64::/96"),
    )
    .await;
    let status = get(s.http, "/status").await.json();
    assert_valid(&doc, doc.response_schema("/status", 200), &status);
    assert_eq!(status["nat64_prefixes"], json!(["2001:db8:64::/96"]));
    assert_eq!(
        status["nat64"],
        json!([{"prefix": "2001:db8:64::/96", "source": "config", "interface": null,
                "router": null, "expires_in_s": null}])
    );
    assert_eq!(status["dns64"], json!({"synthesize": "on", "active": true}));
    // Probing is off: nothing is known of the families.
    assert_eq!(status["ipv4_literals"], "unknown");

    let config = common::http::config_with(
        auth.addr(),
        "\"127.0.0.1:0\"",
        &dns64("off", "64:ff9b::/96"),
    );
    s.handle.reload(config).await.expect("reload");
    let status = get(s.http, "/status").await.json();
    assert_eq!(status["nat64_prefixes"], json!(["64:ff9b::/96"]));
    assert_eq!(status["nat64"][0]["source"], "config");
    assert_eq!(
        status["dns64"],
        json!({"synthesize": "off", "active": false})
    );
    s.handle.shutdown();
}

/// The CLI against the real sidecar: `--json` passes a valid body through,
/// the tables render, an unknown name exits 1 with the daemon's message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_reads_the_real_sidecar() {
    let doc = Doc::load();
    let auth = AuthUpstream::start().await;
    let (handle, http) = start_daemon(auth.addr()).await;
    let api = format!("http://{http}");
    let run = |args: Vec<String>| {
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_getapr"))
                .args(args)
                .output()
                .unwrap()
        })
    };
    let args = |list: &[&str]| -> Vec<String> {
        list.iter()
            .map(ToString::to_string)
            .chain(["--api".to_owned(), api.clone()])
            .collect()
    };

    let out = run(args(&["pairs", "dual.example.test", "--json"]))
        .await
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let body: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_valid(&doc, doc.response_schema("/pairs", 200), &body);

    let out = run(args(&["pairs", "dual.example.test", "8443"]))
        .await
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with("FAMILY") || text == "no working pair known for dual.example.test\n",
        "{text}"
    );

    let out = run(args(&["status", "--json"])).await.unwrap();
    assert!(out.status.success(), "{out:?}");
    let body: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_valid(&doc, doc.response_schema("/status", 200), &body);
    let out = run(args(&["status"])).await.unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("flags false"),
        "{out:?}"
    );

    let out = run(args(&["pairs", "missing.example.test"])).await.unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("missing.example.test") && err.contains("HTTP 404"),
        "{err}"
    );
    handle.shutdown();
}
