//! `getapr pairs` and `getapr status` as a user runs them, against a fake
//! sidecar: a thread on `127.0.0.1:0` that answers every request with a
//! canned response (the contract's example bodies, sent with a
//! `Content-Length` or chunked as hyper may) and reports the request it got.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Output};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use common::bin::{assert_exit, stderr, stdout};

const BIN: &str = env!("CARGO_BIN_EXE_getapr");

/// The `/pairs` example of `docs/interface.md`.
const PAIRS: &str = include_str!("contract/pairs.json");

/// The `/status` example of `docs/interface.md`.
const STATUS: &str = include_str!("contract/status.json");

/// A fake sidecar. Every connection gets `response`; `requests` yields the
/// head of each request received.
struct Fake {
    port: u16,
    requests: mpsc::Receiver<String>,
}

impl Fake {
    fn new(response: Response) -> Fake {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let (tx, requests) = mpsc::channel();
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let head = read_head(&mut stream);
                if tx.send(head).is_err() {
                    return;
                }
                response.write(&mut stream);
            }
        });
        Fake { port, requests }
    }

    fn api(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The request the binary sent (it must have sent one by now).
    fn request(&self) -> String {
        self.requests
            .recv_timeout(Duration::from_secs(5))
            .expect("the fake sidecar got a request")
    }
}

/// How the fake answers.
#[derive(Clone)]
enum Response {
    /// `status`, JSON `body` with a `Content-Length`.
    Sized(u16, &'static str),
    /// `status`, JSON `body` in 7-byte chunks, each written on its own.
    Chunked(u16, &'static str),
    /// Bytes that are not HTTP.
    Raw(&'static [u8]),
}

impl Response {
    fn write(&self, stream: &mut TcpStream) {
        let _ = match self {
            Response::Sized(status, body) => write!(
                stream,
                "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                body.len()
            ),
            Response::Chunked(status, body) => {
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n"
                );
                for chunk in body.as_bytes().chunks(7) {
                    let _ = write!(stream, "{:x}\r\n", chunk.len());
                    let _ = stream.write_all(chunk);
                    let _ = stream.write_all(b"\r\n");
                    let _ = stream.flush();
                    thread::sleep(Duration::from_millis(1));
                }
                stream.write_all(b"0\r\n\r\n")
            }
            Response::Raw(bytes) => stream.write_all(bytes),
        };
    }
}

/// Reads up to the end of the request head.
fn read_head(stream: &mut TcpStream) -> String {
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&head).into_owned()
}

fn getapr(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().unwrap()
}

/// The value of header `name` in a request head.
fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|line| {
        let (n, v) = line.split_once(':')?;
        n.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

#[test]
fn pairs_prints_a_table_best_first() {
    let fake = Fake::new(Response::Sized(200, PAIRS));
    let out = getapr(&["pairs", "example.com", "--api", &fake.api()]);
    assert_exit(&out, 0);
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    for column in ["FAMILY", "SOURCE", "DESTINATION", "PORT", "RTT"] {
        assert!(lines[0].contains(column), "{text}");
    }
    for cell in [
        "ipv6",
        "2001:db8:1::2",
        "2001:db8:ffff::10",
        "443",
        "12.5 ms",
    ] {
        assert!(lines[1].contains(cell), "{cell}: {text}");
    }
    for cell in ["ipv4", "192.168.1.2", "203.0.113.10", "443"] {
        assert!(lines[2].contains(cell), "{cell}: {text}");
    }
    assert!(lines[2].ends_with(" -"), "an RTT not measured: {text}");

    let request = fake.request();
    assert!(
        request.starts_with("GET /pairs?host=example.com HTTP/1.1\r\n"),
        "{request}"
    );
    // The Host guard of the sidecar accepts loopback literals with the port.
    assert_eq!(
        header(&request, "host"),
        Some(format!("127.0.0.1:{}", fake.port).as_str())
    );
    assert_eq!(header(&request, "connection"), Some("close"));
}

#[test]
fn pairs_reads_a_chunked_body_and_encodes_the_query() {
    let fake = Fake::new(Response::Chunked(200, PAIRS));
    let api = format!("127.0.0.1:{}", fake.port);
    let out = getapr(&["pairs", "2001:db8::1", "8443", "--api", &api]);
    assert_exit(&out, 0);
    assert!(
        stdout(&out).contains("2001:db8:ffff::10"),
        "{}",
        stdout(&out)
    );
    let request = fake.request();
    assert!(
        request.starts_with("GET /pairs?host=2001%3Adb8%3A%3A1&port=8443 HTTP/1.1\r\n"),
        "{request}"
    );

    let out = getapr(&["pairs", "a b&port=1", "--api", &api]);
    assert_exit(&out, 0);
    let request = fake.request();
    assert!(
        request.starts_with("GET /pairs?host=a%20b%26port%3D1 HTTP/1.1\r\n"),
        "{request}"
    );
}

#[test]
fn pairs_json_prints_the_body_as_received() {
    for response in [Response::Sized(200, PAIRS), Response::Chunked(200, PAIRS)] {
        let fake = Fake::new(response);
        let out = getapr(&["pairs", "example.com", "--api", &fake.api(), "--json"]);
        assert_exit(&out, 0);
        assert_eq!(stdout(&out), format!("{PAIRS}\n"));
    }
}

#[test]
fn pairs_says_when_no_pair_is_known() {
    let fake = Fake::new(Response::Sized(
        200,
        r#"{"host": "example.com", "port": 443, "pairs": []}"#,
    ));
    let out = getapr(&["pairs", "example.com", "--api", &fake.api()]);
    assert_exit(&out, 0);
    assert_eq!(stdout(&out), "no working pair known for example.com\n");
}

#[test]
fn status_prints_flags_gateways_and_sources() {
    let fake = Fake::new(Response::Chunked(200, STATUS));
    let out = getapr(&["status", "--api", &fake.api()]);
    assert_exit(&out, 0);
    let text = stdout(&out);
    let line = |label: &str| {
        text.lines()
            .find(|l| l.starts_with(label))
            .unwrap_or_else(|| panic!("no {label:?} line in\n{text}"))
            .split_whitespace()
            .collect::<Vec<_>>()
    };
    assert_eq!(
        line("flags true")[2..],
        [
            "GUA_ok",
            "LLA_ok",
            "IPv4_ok",
            "NAT44",
            "NAT44_tried",
            "RFC1918"
        ]
    );
    assert_eq!(
        line("flags false")[2..],
        ["ULA_ok", "NPTv6", "NPTv6_tried", "ULA_present"]
    );
    assert_eq!(line("gateway IPv4")[2..], ["192.168.1.1"]);
    assert_eq!(line("gateway IPv6")[2..], ["fe80::1%eth0"]);
    assert_eq!(line("NAT64 prefixes")[2..], ["none"]);
    assert_eq!(
        line("ADDRESS"),
        ["ADDRESS", "INTERFACE", "CLASS", "STATE", "RTT"]
    );
    assert_eq!(
        line("2001:db8:1::2"),
        ["2001:db8:1::2", "eth0", "gua", "ok", "11.2", "ms"]
    );
    assert!(fake.request().starts_with("GET /status HTTP/1.1\r\n"));

    let out = getapr(&["status", "--api", &fake.api(), "--json"]);
    assert_exit(&out, 0);
    assert_eq!(stdout(&out), format!("{STATUS}\n"));
}

#[test]
fn an_http_error_prints_the_daemons_message_and_exits_1() {
    for (status, body, message) in [
        (
            404,
            r#"{"error": "no such name: nope.example"}"#,
            "no such name: nope.example",
        ),
        (400, r#"{"error": "bad port \"0\""}"#, "bad port \"0\""),
        (502, r#"{"error": "upstreams failed"}"#, "upstreams failed"),
        (403, r#"{"error": "forbidden Host"}"#, "forbidden Host"),
    ] {
        for json in [false, true] {
            let fake = Fake::new(Response::Sized(status, body));
            let mut args = vec!["pairs", "nope.example"];
            let api = fake.api();
            args.extend(["--api", &api]);
            if json {
                args.push("--json");
            }
            let out = getapr(&args);
            assert_exit(&out, 1);
            assert_eq!(stdout(&out), "");
            let err = stderr(&out);
            assert!(err.contains(message), "{err}");
            assert!(err.contains(&format!("HTTP {status}")), "{err}");
        }
    }
}

#[test]
fn an_unreachable_daemon_gets_a_hint_and_exit_1() {
    // A port that was just free: nothing listens there.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    for command in [&["pairs", "example.com"][..], &["status"][..]] {
        let api = format!("http://127.0.0.1:{port}");
        let mut args = command.to_vec();
        args.extend(["--api", &api]);
        let out = getapr(&args);
        assert_exit(&out, 1);
        let err = stderr(&out);
        assert!(
            err.contains(&format!(
                "cannot reach the getapr daemon at http://127.0.0.1:{port} (connection refused)"
            )),
            "{err}"
        );
        assert!(err.contains("getapr serve"), "{err}");
    }
}

#[test]
fn a_bad_api_url_is_a_usage_error() {
    for api in [
        "localhost",
        "https://127.0.0.1",
        "http://127.0.0.1:99999",
        "http://127.0.0.1/status",
        "::1",
        "",
    ] {
        let out = getapr(&["status", "--api", api]);
        assert_exit(&out, 2);
        assert!(
            stderr(&out).contains("http://HOST[:PORT] or HOST:PORT"),
            "{}",
            stderr(&out)
        );
    }
    let out = getapr(&["pairs", "example.com", "0", "--api", "127.0.0.1:1"]);
    assert_exit(&out, 2);
}

#[test]
fn localhost_is_the_host_header_when_named() {
    let fake = Fake::new(Response::Sized(200, STATUS));
    let out = getapr(&["status", "--api", &format!("localhost:{}", fake.port)]);
    assert_exit(&out, 0);
    let request = fake.request();
    assert_eq!(
        header(&request, "host"),
        Some(format!("localhost:{}", fake.port).as_str())
    );
}

#[test]
fn an_answer_that_is_not_the_sidecar_is_an_error_not_a_panic() {
    // `--json` passes any JSON through; the table needs the contract's shape.
    for (response, modes) in [
        (
            Response::Raw(b"SSH-2.0-OpenSSH_9.6\r\n"),
            &[false, true][..],
        ),
        (
            Response::Raw(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{\"pairs\""),
            &[false, true],
        ),
        (Response::Sized(200, "not json"), &[false, true]),
        (Response::Sized(200, r#"{"unexpected": true}"#), &[false]),
    ] {
        let fake = Fake::new(response);
        for &json in modes {
            let api = fake.api();
            let mut args = vec!["pairs", "example.com", "--api", &api];
            if json {
                args.push("--json");
            }
            let out = getapr(&args);
            assert_exit(&out, 1);
            assert!(
                stderr(&out).starts_with(&format!("getapr: {api}: ")),
                "{}",
                stderr(&out)
            );
        }
    }
}
