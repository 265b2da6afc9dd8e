//! `getapr connect` as a user (or ssh, as its ProxyCommand) runs it, on
//! loopback only: a fake sidecar answers `/pairs` with pairs among
//! 127.0.0.0/8 (all local on Linux), and the destinations are
//!
//! - a server that reports the peer address it saw, then, once the client's
//!   stdin has ended (the half-close), echoes what it got: so each test sees
//!   which source the socket was bound to and that bytes pass both ways;
//! - a listener that never answers: backlog 0 and its accept queue filled,
//!   so Linux drops further SYNs and a connect hangs;
//! - an address where nothing listens: refused.
//!
//! Every destination of one test shares the port asked for (the pairs give
//! addresses; the port is the user's), on different 127.0.0.x addresses.

mod common;

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use socket2::{Domain, Socket, Type};

use common::bin::{assert_exit, stderr, stdout};

const BIN: &str = env!("CARGO_BIN_EXE_getapr");

/// How long a run of the binary may take before the test calls it hung.
const HANG: Duration = Duration::from_secs(20);

/// A fake sidecar: every connection gets `status` and `body`; `requests`
/// yields the head of each request and when it arrived.
struct Sidecar {
    port: u16,
    requests: mpsc::Receiver<(String, Instant)>,
}

impl Sidecar {
    fn new(status: u16, body: String) -> Sidecar {
        Sidecar::raw(format!(
            "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\n\
             content-length: {}\r\n\r\n{body}",
            body.len()
        ))
    }

    /// Answers with `bytes` as they are.
    fn raw(bytes: String) -> Sidecar {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let (tx, requests) = mpsc::channel();
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let head = read_head(&mut stream);
                if tx.send((head, Instant::now())).is_err() {
                    return;
                }
                let _ = stream.write_all(bytes.as_bytes());
            }
        });
        Sidecar { port, requests }
    }

    /// A sidecar whose `/pairs` lists `pairs` as (source, destination).
    fn pairs(pairs: &[(IpAddr, IpAddr)]) -> Sidecar {
        let pairs: Vec<String> = pairs
            .iter()
            .map(|(source, destination)| {
                let family = if source.is_ipv4() { "ipv4" } else { "ipv6" };
                format!(
                    r#"{{"family": "{family}", "source": "{source}", "destination": "{destination}",
                        "port": 443, "interface": "lo", "scope_id": 0, "rtt_ms": null}}"#
                )
            })
            .collect();
        Sidecar::new(
            200,
            format!(
                r#"{{"host": "example.test", "port": 443, "pairs": [{}]}}"#,
                pairs.join(", ")
            ),
        )
    }

    fn api(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The request the binary sent and when (it must have sent one by now).
    fn request(&self) -> (String, Instant) {
        self.requests
            .recv_timeout(Duration::from_secs(5))
            .expect("the fake sidecar got a request")
    }
}

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

/// What the server does with a connection.
#[derive(Clone, Copy)]
enum Serve {
    /// `peer=IP\n` at once, then, after the client's half-close, the bytes
    /// it sent, then close.
    ReportAndEcho,
    /// A reset (SO_LINGER 0) once the client half-closes: at once after
    /// the accept, the reset could reach the client before its connect
    /// had reported success, and the race would call the pair failed.
    Reset,
    /// Bytes until the connection breaks.
    Flood,
}

/// A destination server; `accepted` yields each peer and when it was accepted.
struct Server {
    addr: SocketAddr,
    accepted: mpsc::Receiver<(SocketAddr, Instant)>,
}

impl Server {
    fn new(addr: SocketAddr, serve: Serve) -> Server {
        let listener = TcpListener::bind(addr).unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, accepted) = mpsc::channel();
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let peer = stream.peer_addr().unwrap();
                let _ = tx.send((peer, Instant::now()));
                thread::spawn(move || match serve {
                    Serve::ReportAndEcho => {
                        let _ = writeln!(stream, "peer={}", peer.ip());
                        stream
                            .set_read_timeout(Some(Duration::from_secs(10)))
                            .unwrap();
                        let mut got = Vec::new();
                        if stream.read_to_end(&mut got).is_ok() {
                            let _ = stream.write_all(&got);
                        }
                    }
                    Serve::Reset => {
                        stream
                            .set_read_timeout(Some(Duration::from_secs(10)))
                            .unwrap();
                        let _ = stream.read_to_end(&mut Vec::new());
                        socket2::SockRef::from(&stream)
                            .set_linger(Some(Duration::ZERO))
                            .unwrap();
                    }
                    Serve::Flood => while stream.write_all(&[b'x'; 65536]).is_ok() {},
                });
            }
        });
        Server { addr, accepted }
    }

    fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The peer of the next connection and when it was accepted.
    fn accepted(&self) -> (SocketAddr, Instant) {
        self.accepted
            .recv_timeout(Duration::from_secs(5))
            .expect("the server accepted a connection")
    }

    /// No connection came (waiting a little for an accept still under way).
    fn accepted_none(&self) {
        let late = self.accepted.recv_timeout(Duration::from_millis(200));
        assert!(late.is_err(), "a connection came: {late:?}");
    }
}

/// A listener at `addr` that never answers: backlog 0, its accept queue
/// filled by one connection never accepted, so the kernel drops new SYNs.
/// Keep it (and the filler) alive for as long as it must stay silent.
fn silent(addr: SocketAddr) -> (Socket, TcpStream) {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None).unwrap();
    socket.bind(&addr.into()).unwrap();
    socket.listen(0).unwrap();
    let filler = TcpStream::connect(socket.local_addr().unwrap().as_socket().unwrap()).unwrap();
    (socket, filler)
}

fn ip(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, last))
}

/// Runs the binary with `stdin` as its input (then EOF); panics when it has
/// not exited within [`HANG`]. Also returns how long it ran.
fn getapr(args: &[&str], stdin: &[u8]) -> (Output, Duration) {
    let start = Instant::now();
    let mut child = Command::new(BIN)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    let stdin = stdin.to_vec();
    thread::spawn(move || {
        // The binary may exit before reading it all (a failed connect).
        let _ = input.write_all(&stdin);
    });
    let pid = child.id();
    let (done_tx, done) = mpsc::channel();
    thread::spawn(move || {
        if done.recv_timeout(HANG).is_err() {
            let _ = Command::new("kill").arg(pid.to_string()).status();
        }
    });
    let output = child.wait_with_output().unwrap();
    let _ = done_tx.send(());
    assert!(
        start.elapsed() < HANG,
        "getapr {args:?} hung; stderr:\n{}",
        stderr(&output)
    );
    (output, start.elapsed())
}

/// Bytes a text protocol would mangle: NUL, 0xff, CR without LF, no final newline.
fn binary_request() -> Vec<u8> {
    let mut bytes: Vec<u8> = (0..=255u8).collect();
    bytes.extend_from_slice(b"\r\0\xffend");
    bytes.repeat(300)
}

#[test]
fn each_socket_is_bound_to_its_pairs_source_and_bytes_pass_both_ways() {
    let server = Server::new(SocketAddr::new(ip(10), 0), Serve::ReportAndEcho);
    let port = server.port().to_string();
    let request = binary_request();
    for source in [ip(2), ip(3)] {
        let sidecar = Sidecar::pairs(&[(source, ip(10))]);
        let (out, elapsed) = getapr(
            &["connect", "example.test", &port, "--api", &sidecar.api()],
            &request,
        );
        assert_exit(&out, 0);
        let (peer, _) = server.accepted();
        assert_eq!(peer.ip(), source);
        // The echo comes only after the server read to the end: stdin's EOF
        // reached it as a half-close, and the answer still came through.
        let mut want = format!("peer={source}\n").into_bytes();
        want.extend_from_slice(&request);
        assert!(out.stdout == want, "stdout:\n{}", stdout(&out));
        assert_eq!(stderr(&out), "", "nothing on stderr when all is well");
        let (head, _) = sidecar.request();
        assert!(
            head.starts_with(&format!(
                "GET /pairs?host=example.test&port={port} HTTP/1.1\r\n"
            )),
            "{head}"
        );
        assert!(
            head.contains(&format!("\r\nHost: 127.0.0.1:{}\r\n", sidecar.port)),
            "{head}"
        );
        println!(
            "from {source}: {} bytes each way in {elapsed:?}",
            request.len()
        );
    }
}

#[test]
fn an_ipv6_pair_connects_over_ipv6() {
    let localhost6: IpAddr = "::1".parse().unwrap();
    let server = Server::new(SocketAddr::new(localhost6, 0), Serve::ReportAndEcho);
    let sidecar = Sidecar::pairs(&[(localhost6, localhost6)]);
    let port = server.port().to_string();
    let (out, _) = getapr(
        &["connect", "example.test", &port, "--api", &sidecar.api()],
        b"v6",
    );
    assert_exit(&out, 0);
    assert_eq!(stdout(&out), "peer=::1\nv6");
    assert_eq!(server.accepted().0.ip(), localhost6);
}

#[test]
fn a_first_pair_that_never_answers_loses_to_the_second_after_250_ms() {
    let server = Server::new(SocketAddr::new(ip(10), 0), Serve::ReportAndEcho);
    let _silent = silent(SocketAddr::new(ip(11), server.port()));
    let sidecar = Sidecar::pairs(&[(ip(2), ip(11)), (ip(3), ip(10))]);
    let port = server.port().to_string();
    let (out, elapsed) = getapr(
        &["connect", "example.test", &port, "--api", &sidecar.api()],
        b"",
    );
    assert_exit(&out, 0);
    assert_eq!(stdout(&out), "peer=127.0.0.3\n");
    let (_, asked) = sidecar.request();
    let (peer, accepted) = server.accepted();
    assert_eq!(peer.ip(), ip(3));
    let after = accepted - asked;
    println!("the second pair connected {after:?} after the /pairs request (run: {elapsed:?})");
    assert!(
        (Duration::from_millis(200)..Duration::from_millis(1000)).contains(&after),
        "{after:?}"
    );
}

#[test]
fn a_refused_first_pair_falls_through_at_once() {
    let server = Server::new(SocketAddr::new(ip(10), 0), Serve::ReportAndEcho);
    // Nothing listens on 127.0.0.12 at that port.
    let sidecar = Sidecar::pairs(&[(ip(2), ip(12)), (ip(3), ip(10))]);
    let port = server.port().to_string();
    let (out, _) = getapr(
        &["connect", "example.test", &port, "--api", &sidecar.api()],
        b"",
    );
    assert_exit(&out, 0);
    assert_eq!(stdout(&out), "peer=127.0.0.3\n");
    let (_, asked) = sidecar.request();
    let (_, accepted) = server.accepted();
    let after = accepted - asked;
    println!("the second pair connected {after:?} after the /pairs request");
    assert!(after < Duration::from_millis(200), "{after:?}");
}

#[test]
fn when_nothing_connects_one_line_names_every_pair_tried() {
    // The port of a listener that stays silent on 127.0.0.11; refused on .12.
    let (silent_socket, _filler) = silent(SocketAddr::new(ip(11), 0));
    let port = silent_socket
        .local_addr()
        .unwrap()
        .as_socket()
        .unwrap()
        .port();
    let sidecar = Sidecar::pairs(&[(ip(2), ip(12)), (ip(3), ip(11))]);
    let (out, elapsed) = getapr(
        &[
            "connect",
            "example.test",
            &port.to_string(),
            "--api",
            &sidecar.api(),
            "--timeout",
            "0.5",
        ],
        b"never sent",
    );
    assert_exit(&out, 1);
    assert_eq!(stdout(&out), "");
    assert_eq!(
        stderr(&out),
        format!(
            "getapr: cannot connect to example.test port {port}: \
             127.0.0.12 from 127.0.0.2 refused; 127.0.0.11 from 127.0.0.3 timed out\n"
        )
    );
    println!("gave up after {elapsed:?} with --timeout 0.5");
    assert!(
        (Duration::from_millis(450)..Duration::from_secs(5)).contains(&elapsed),
        "{elapsed:?}"
    );
}

#[test]
fn a_source_that_is_gone_is_named_and_the_next_pair_used() {
    let server = Server::new(SocketAddr::new(ip(10), 0), Serve::ReportAndEcho);
    // 192.0.2.200 (TEST-NET-1) is no address of this host: the bind fails
    // and sends nothing.
    let gone: IpAddr = "192.0.2.200".parse().unwrap();
    let sidecar = Sidecar::pairs(&[(gone, ip(10)), (ip(3), ip(10))]);
    let port = server.port().to_string();
    let (out, _) = getapr(
        &["connect", "example.test", &port, "--api", &sidecar.api()],
        b"",
    );
    assert_exit(&out, 0);
    assert_eq!(server.accepted().0.ip(), ip(3));

    let sidecar = Sidecar::pairs(&[(gone, ip(10))]);
    let (out, _) = getapr(
        &["connect", "example.test", &port, "--api", &sidecar.api()],
        b"",
    );
    assert_exit(&out, 1);
    let err = stderr(&out);
    assert!(
        err.starts_with(&format!(
            "getapr: cannot connect to example.test port {port}: \
             127.0.0.10 from 192.0.2.200 cannot bind the source ("
        )),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
}

#[test]
fn without_the_daemon_it_connects_like_nc_and_warns_once() {
    let server = Server::new(SocketAddr::new(ip(1), 0), Serve::ReportAndEcho);
    let port = server.port().to_string();
    // A port that was just free: the daemon is not running.
    let down = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let down = format!("http://{down}");
    let not_json = Sidecar::raw("SSH-2.0-OpenSSH_9.6\r\n".to_owned());
    let busy = Sidecar::new(503, r#"{"error": "too many requests"}"#.to_owned());
    for (api, reason) in [
        (down.as_str(), "(connection refused)"),
        (&not_json.api(), "not an HTTP answer from getapr"),
        (&busy.api(), "(too many requests (HTTP 503))"),
    ] {
        for host in ["127.0.0.1", "localhost"] {
            let (out, _) = getapr(&["connect", host, &port, "--api", api], b"hi");
            assert_exit(&out, 0);
            assert_eq!(stdout(&out), "peer=127.0.0.1\nhi");
            let err = stderr(&out);
            assert_eq!(err.lines().count(), 1, "one warning: {err}");
            assert!(
                err.starts_with(&format!(
                    "getapr: warning: no pairs from the getapr daemon at {api}"
                )),
                "{err}"
            );
            assert!(err.contains(reason), "{reason}: {err}");
            assert!(
                err.contains(&format!("system resolver's addresses for {host}")),
                "{err}"
            );
            server.accepted();
        }
    }
}

#[test]
fn an_empty_pair_list_tries_the_resolvers_addresses_without_a_warning() {
    let server = Server::new(SocketAddr::new(ip(1), 0), Serve::ReportAndEcho);
    let sidecar = Sidecar::pairs(&[]);
    let port = server.port().to_string();
    let (out, _) = getapr(
        &["connect", "localhost", &port, "--api", &sidecar.api()],
        b"",
    );
    assert_exit(&out, 0);
    assert_eq!(stdout(&out), "peer=127.0.0.1\n");
    assert_eq!(stderr(&out), "");
    sidecar.request();
}

/// The daemon asks DNS only: a name it does not find (404) or does not
/// take (400) goes to the system resolver without a warning, which knows
/// `/etc/hosts` (`localhost`) and fails on `a..b` without asking anyone.
#[test]
fn names_the_daemon_declines_go_to_the_system_resolver_quietly() {
    let server = Server::new(SocketAddr::new(ip(1), 0), Serve::ReportAndEcho);
    let port = server.port().to_string();
    let not_found = Sidecar::new(
        404,
        r#"{"error": "localhost: no such name (NXDOMAIN)"}"#.to_owned(),
    );
    let (out, _) = getapr(
        &["connect", "localhost", &port, "--api", &not_found.api()],
        b"",
    );
    assert_exit(&out, 0);
    assert_eq!(stdout(&out), "peer=127.0.0.1\n");
    assert_eq!(stderr(&out), "", "no warning: the daemon answered");
    server.accepted();
    not_found.request();

    let bad = Sidecar::new(400, r#"{"error": "not a valid domain name"}"#.to_owned());
    let (out, _) = getapr(&["connect", "a..b", &port, "--api", &bad.api()], b"");
    assert_exit(&out, 1);
    assert_eq!(stdout(&out), "");
    let err = stderr(&out);
    assert!(
        err.starts_with(&format!(
            "getapr: cannot connect to a..b port {port}: \
             the getapr daemon has no pairs (not a valid domain name) \
             and the system resolver failed ("
        )),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    server.accepted_none();
}

/// A daemon that will not serve this client (403: outside `http.allow`)
/// is one that cannot help: the fallback, with its warning.
#[test]
fn a_forbidden_client_falls_back_with_a_warning() {
    let server = Server::new(SocketAddr::new(ip(1), 0), Serve::ReportAndEcho);
    let port = server.port().to_string();
    let forbidden = Sidecar::new(403, r#"{"error": "forbidden"}"#.to_owned());
    let (out, _) = getapr(
        &["connect", "127.0.0.1", &port, "--api", &forbidden.api()],
        b"",
    );
    assert_exit(&out, 0);
    assert_eq!(stdout(&out), "peer=127.0.0.1\n");
    let err = stderr(&out);
    assert!(
        err.starts_with("getapr: warning: no pairs from the getapr daemon")
            && err.contains("(forbidden (HTTP 403))"),
        "{err}"
    );
    server.accepted();
}

#[test]
fn a_reset_by_the_peer_exits_1() {
    let server = Server::new(SocketAddr::new(ip(10), 0), Serve::Reset);
    let sidecar = Sidecar::pairs(&[(ip(2), ip(10))]);
    let port = server.port().to_string();
    let (out, _) = getapr(
        &["connect", "example.test", &port, "--api", &sidecar.api()],
        b"",
    );
    assert_exit(&out, 1);
    assert_eq!(
        stderr(&out),
        format!("getapr: example.test port {port}: the peer reset the connection\n")
    );
    server.accepted();
}

#[test]
fn usage_errors_exit_2() {
    for args in [
        &["connect", "example.test"][..],
        &["connect", "example.test", "0"],
        &["connect", "example.test", "65536"],
        &["connect", "example.test", "ssh"],
        &["connect", "example.test", "22", "--timeout", "0"],
        &["connect", "example.test", "22", "--timeout", "-1"],
        &["connect", "example.test", "22", "--timeout", "NaN"],
        &["connect", "example.test", "22", "--timeout", "soon"],
        &["connect", "example.test", "22", "--api", "localhost"],
    ] {
        let (out, _) = getapr(args, b"");
        assert_exit(&out, 2);
        assert_eq!(stdout(&out), "", "{args:?}");
        assert!(stderr(&out).starts_with("error: "), "{}", stderr(&out));
    }
}

#[test]
fn a_reader_that_goes_away_ends_it_with_1_and_no_message() {
    let server = Server::new(SocketAddr::new(ip(10), 0), Serve::Flood);
    let sidecar = Sidecar::pairs(&[(ip(2), ip(10))]);
    let port = server.port().to_string();
    // As `getapr connect ... | head -c 1` does: stdout closed early.
    let mut child = Command::new(BIN)
        .args(["connect", "example.test", &port, "--api", &sidecar.api()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = [0u8; 1];
    child.stdout.take().unwrap().read_exact(&mut first).unwrap();
    assert_eq!(first, *b"x");
    let start = Instant::now();
    let output = child.wait_with_output().unwrap();
    assert!(start.elapsed() < HANG);
    assert_exit(&output, 1);
    assert_eq!(stderr(&output), "");
    server.accepted();
}
