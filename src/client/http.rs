//! Just enough HTTP/1.1 to GET a JSON body from the sidecar: one request per
//! connection (`Connection: close`), blocking `std::net`, no new dependency.
//!
//! The response parser ([`parse`]) is pure and total: it takes the bytes read
//! so far and says "need more", "here is the response" or what is wrong, so
//! it is tested with tables and arbitrary bytes, without sockets.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

/// How long one connection attempt may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long the daemon may stay silent while we wait for (more of) its answer.
pub const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// The sidecar's answers are a few KiB; anything far bigger is not it.
pub const MAX_RESPONSE: usize = 4 << 20;

/// A response with its body de-chunked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    /// Names lower-cased, in the order received.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// Why a GET failed.
#[derive(Debug)]
pub enum Failure {
    /// No connection could be made (refused, timed out, no address).
    Connect(io::Error),
    /// Connected, but the daemon did not answer within [`READ_TIMEOUT`].
    Silent,
    /// Connected, then the connection broke.
    Io(io::Error),
    /// The bytes are not an HTTP/1.x response.
    Malformed(Malformed),
}

/// What is wrong with a response's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Malformed {
    StatusLine,
    Header,
    ContentLength,
    Chunk,
    /// The connection closed before the announced body was complete.
    Truncated,
    /// More than [`MAX_RESPONSE`] bytes.
    TooLarge,
}

impl fmt::Display for Malformed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Malformed::StatusLine => "not an HTTP/1.x status line",
            Malformed::Header => "malformed header line",
            Malformed::ContentLength => "bad Content-Length",
            Malformed::Chunk => "bad chunked encoding",
            Malformed::Truncated => "the connection closed before the response was complete",
            Malformed::TooLarge => "the response is larger than 4 MiB",
        })
    }
}

/// Sends `GET target` to `host:port` (`host` a name or an IP literal, IPv6
/// without brackets) with `Host: host_header` and returns the response.
/// Tries each address `host` resolves to, as `curl` does, until one connects.
pub fn get(host: &str, port: u16, host_header: &str, target: &str) -> Result<Response, Failure> {
    let mut stream = connect(host, port)?;
    let request = format!(
        "GET {target} HTTP/1.1\r\nHost: {host_header}\r\nUser-Agent: getapr/{}\r\n\
         Accept: application/json\r\nConnection: close\r\n\r\n",
        env!("CARGO_PKG_VERSION")
    );
    stream
        .set_read_timeout(Some(READ_TIMEOUT))
        .and_then(|()| stream.set_write_timeout(Some(READ_TIMEOUT)))
        .and_then(|()| stream.write_all(request.as_bytes()))
        .map_err(io_failure)?;
    read_response(&mut stream)
}

fn connect(host: &str, port: u16) -> Result<TcpStream, Failure> {
    let addrs: Vec<SocketAddr> = (host, port)
        .to_socket_addrs()
        .map_err(Failure::Connect)?
        .collect();
    let mut last = io::Error::new(io::ErrorKind::NotFound, "the name has no address");
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT) {
            Ok(stream) => return Ok(stream),
            Err(e) => last = e,
        }
    }
    Err(Failure::Connect(last))
}

/// Reads until the response is complete (not necessarily until EOF: a
/// server may keep the connection open despite `Connection: close`).
fn read_response(stream: &mut impl Read) -> Result<Response, Failure> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        let n = match stream.read(&mut chunk) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io_failure(e)),
        };
        buf.extend_from_slice(&chunk[..n]);
        let eof = n == 0;
        match parse(&buf, eof).map_err(Failure::Malformed)? {
            Some(response) => return Ok(response),
            None if eof => return Err(Failure::Malformed(Malformed::Truncated)),
            None if buf.len() > MAX_RESPONSE => {
                return Err(Failure::Malformed(Malformed::TooLarge));
            }
            None => {}
        }
    }
}

fn io_failure(e: io::Error) -> Failure {
    match e.kind() {
        // A read timeout shows as WouldBlock on Unix, TimedOut on Windows.
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => Failure::Silent,
        _ => Failure::Io(e),
    }
}

/// Parses a response from the bytes received so far. `eof`: the peer has
/// closed, so a body without a length ends here. `Ok(None)`: need more bytes.
///
/// RFC 9112 §6.3 decides the body length: no body for 1xx (skipped: we
/// never send `Expect`, but a server may), 204 and 304; chunked when
/// `Transfer-Encoding` ends in `chunked`; else `Content-Length`; else up to
/// the close. §2.2: a bare LF ends a line as well as CRLF.
pub fn parse(buf: &[u8], eof: bool) -> Result<Option<Response>, Malformed> {
    let mut rest = buf;
    loop {
        let Some((head, body)) = split_head(rest) else {
            return Ok(None);
        };
        let (status, headers) = parse_head(head)?;
        if (100..200).contains(&status) {
            rest = body;
            continue;
        }
        let body = if status == 204 || status == 304 {
            Some(Vec::new())
        } else if is_chunked(&headers) {
            dechunk(body)?
        } else if let Some(len) = content_length(&headers)? {
            (body.len() >= len).then(|| body[..len].to_vec())
        } else if eof {
            Some(body.to_vec())
        } else {
            None
        };
        return Ok(body.map(|body| Response {
            status,
            headers,
            body,
        }));
    }
}

/// Splits at the empty line that ends the head: (head, what follows).
fn split_head(buf: &[u8]) -> Option<(&[u8], &[u8])> {
    let mut start = 0;
    while let Some(i) = buf[start..].iter().position(|&b| b == b'\n') {
        let end = start + i;
        let line = trim_cr(&buf[start..end]);
        if line.is_empty() && start > 0 {
            return Some((&buf[..start], &buf[end + 1..]));
        }
        start = end + 1;
    }
    None
}

fn trim_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

fn parse_head(head: &[u8]) -> Result<(u16, Vec<(String, String)>), Malformed> {
    let mut lines = head
        .split(|&b| b == b'\n')
        .map(trim_cr)
        .filter(|l| !l.is_empty());
    let status_line = lines.next().ok_or(Malformed::StatusLine)?;
    let status = parse_status_line(status_line).ok_or(Malformed::StatusLine)?;
    let mut headers = Vec::new();
    for line in lines {
        let text = std::str::from_utf8(line).map_err(|_| Malformed::Header)?;
        let (name, value) = text.split_once(':').ok_or(Malformed::Header)?;
        // RFC 9112 §5.1: no whitespace between the name and the colon.
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(Malformed::Header);
        }
        headers.push((name.to_ascii_lowercase(), value.trim().to_owned()));
    }
    Ok((status, headers))
}

/// `HTTP/1.x SSS reason` → SSS.
fn parse_status_line(line: &[u8]) -> Option<u16> {
    let rest = line.strip_prefix(b"HTTP/1.")?;
    let (&minor, rest) = rest.split_first()?;
    let rest = rest.strip_prefix(b" ")?;
    let code = rest.get(..3)?;
    if !minor.is_ascii_digit() || !code.iter().all(u8::is_ascii_digit) {
        return None;
    }
    if rest.len() > 3 && rest[3] != b' ' {
        return None;
    }
    let status = code.iter().fold(0u16, |n, d| n * 10 + u16::from(d - b'0'));
    (100..600).contains(&status).then_some(status)
}

fn is_chunked(headers: &[(String, String)]) -> bool {
    headers
        .iter()
        .filter(|(n, _)| n == "transfer-encoding")
        .flat_map(|(_, v)| v.split(','))
        .last()
        .is_some_and(|coding| coding.trim().eq_ignore_ascii_case("chunked"))
}

/// RFC 9110 §8.6: repeated equal values are one value; different ones are an error.
fn content_length(headers: &[(String, String)]) -> Result<Option<usize>, Malformed> {
    let mut found = None;
    for (_, value) in headers.iter().filter(|(n, _)| n == "content-length") {
        for part in value.split(',') {
            let part = part.trim();
            if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
                return Err(Malformed::ContentLength);
            }
            let len: usize = part.parse().map_err(|_| Malformed::ContentLength)?;
            if len > MAX_RESPONSE {
                return Err(Malformed::TooLarge);
            }
            if found.is_some_and(|f| f != len) {
                return Err(Malformed::ContentLength);
            }
            found = Some(len);
        }
    }
    Ok(found)
}

/// RFC 9112 §7.1: `SIZE[;ext]` CRLF data CRLF … `0` CRLF trailers CRLF.
/// `Ok(None)` while incomplete.
fn dechunk(mut buf: &[u8]) -> Result<Option<Vec<u8>>, Malformed> {
    let mut body = Vec::new();
    loop {
        let Some(nl) = buf.iter().position(|&b| b == b'\n') else {
            return Ok(None);
        };
        let line = trim_cr(&buf[..nl]);
        let size_text = line.split(|&b| b == b';').next().unwrap_or(line);
        let size_text = std::str::from_utf8(size_text).map_err(|_| Malformed::Chunk)?;
        let size_text = size_text.trim_matches([' ', '\t']);
        if size_text.is_empty() || size_text.len() > 8 {
            return Err(Malformed::Chunk);
        }
        let size = usize::from_str_radix(size_text, 16).map_err(|_| Malformed::Chunk)?;
        buf = &buf[nl + 1..];
        if size == 0 {
            // Trailer fields until an empty line; we have no use for them.
            loop {
                let Some(nl) = buf.iter().position(|&b| b == b'\n') else {
                    return Ok(None);
                };
                if trim_cr(&buf[..nl]).is_empty() {
                    return Ok(Some(body));
                }
                buf = &buf[nl + 1..];
            }
        }
        if body.len().saturating_add(size) > MAX_RESPONSE {
            return Err(Malformed::TooLarge);
        }
        if buf.len() < size {
            return Ok(None);
        }
        body.extend_from_slice(&buf[..size]);
        buf = &buf[size..];
        match buf {
            [] | [b'\r'] => return Ok(None),
            [b'\r', b'\n', rest @ ..] | [b'\n', rest @ ..] => buf = rest,
            _ => return Err(Malformed::Chunk),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn complete(bytes: &str) -> Response {
        parse(bytes.as_bytes(), false)
            .expect("well-formed")
            .expect("complete")
    }

    #[test]
    fn content_length_body_is_cut_at_the_length() {
        let r = complete("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-A: b\r\n\r\n{}garbage");
        assert_eq!(r.status, 200);
        assert_eq!(r.body, b"{}");
        assert_eq!(r.headers[1], ("x-a".to_owned(), "b".to_owned()));
    }

    #[test]
    fn chunked_body_is_joined_with_extensions_and_trailers() {
        let r = complete(
            "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n\
             4;name=x\r\n{\"a\"\r\n9\r\n: [1, 2]}\r\n0\r\nX-Trailer: 1\r\n\r\n",
        );
        assert_eq!(r.body, br#"{"a": [1, 2]}"#);
    }

    #[test]
    fn without_a_length_the_body_ends_at_the_close() {
        let bytes = b"HTTP/1.0 200 OK\nContent-Type: text/plain\n\nok\n";
        assert_eq!(parse(bytes, false), Ok(None));
        assert_eq!(parse(bytes, true).unwrap().unwrap().body, b"ok\n");
    }

    #[test]
    fn informational_responses_are_skipped() {
        let r = complete(
            "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n",
        );
        assert_eq!(r.status, 404);
        assert!(r.body.is_empty());
    }

    #[test]
    fn no_content_has_no_body() {
        assert!(complete("HTTP/1.1 204 No Content\r\n\r\n").body.is_empty());
    }

    #[test]
    fn every_prefix_of_a_response_is_incomplete_not_an_error() {
        for full in [
            &b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"[..],
            &b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"[..],
        ] {
            for end in 0..full.len() {
                assert_eq!(parse(&full[..end], false), Ok(None), "{end}");
            }
            assert_eq!(parse(full, false).unwrap().unwrap().body, b"hello");
        }
    }

    #[test]
    fn malformed_responses_say_what_is_wrong() {
        for (bytes, want) in [
            ("SSH-2.0-OpenSSH\r\n\r\n", Malformed::StatusLine),
            ("HTTP/2 200\r\n\r\n", Malformed::StatusLine),
            ("HTTP/1.1 20 OK\r\n\r\n", Malformed::StatusLine),
            ("HTTP/1.1 999 What\r\n\r\n", Malformed::StatusLine),
            ("HTTP/1.1 200OK\r\n\r\n", Malformed::StatusLine),
            ("HTTP/1.1 200 OK\r\nno colon\r\n\r\n", Malformed::Header),
            ("HTTP/1.1 200 OK\r\nName : v\r\n\r\n", Malformed::Header),
            (
                "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
                Malformed::ContentLength,
            ),
            (
                "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
                Malformed::ContentLength,
            ),
            (
                "HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n",
                Malformed::ContentLength,
            ),
            (
                "HTTP/1.1 200 OK\r\nContent-Length: 99999999\r\n\r\n",
                Malformed::TooLarge,
            ),
            (
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
                Malformed::Chunk,
            ),
            (
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n",
                Malformed::Chunk,
            ),
            (
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nfffffffff\r\n",
                Malformed::Chunk,
            ),
        ] {
            assert_eq!(parse(bytes.as_bytes(), false), Err(want), "{bytes:?}");
        }
    }

    #[test]
    fn a_short_body_at_the_close_is_truncated() {
        let mut short = &b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"[..];
        assert!(matches!(
            read_response(&mut short),
            Err(Failure::Malformed(Malformed::Truncated))
        ));
        let mut chunked = &b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n"[..];
        assert!(matches!(
            read_response(&mut chunked),
            Err(Failure::Malformed(Malformed::Truncated))
        ));
    }

    #[test]
    fn a_complete_response_is_returned_without_waiting_for_the_close() {
        // A reader that fails after the response: reaching it would be a bug.
        let response = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}";
        let mut reader = (&response[..]).chain(FailingReader);
        assert_eq!(read_response(&mut reader).unwrap().body, b"{}");
    }

    #[derive(Debug)]
    struct FailingReader;

    impl Read for FailingReader {
        fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
            Err(io::Error::other("read past the response"))
        }
    }

    proptest::proptest! {
        /// Total: any bytes give a response, "need more" or an error, never a panic.
        #[test]
        fn parse_is_total(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512), eof: bool) {
            let _ = parse(&bytes, eof);
        }

        /// Structured noise reaches deeper than random bytes.
        #[test]
        fn parse_is_total_on_near_http(
            head in "HTTP/1\\.[01] [0-9]{3}( [A-Za-z]*)?\r?\n((Content-Length|Transfer-Encoding|X): ?[0-9a-z ,-]{0,12}\r?\n){0,4}\r?\n",
            body in "([0-9a-fA-F]{1,3}(;x)?\r?\n[a-z]{0,8}\r?\n){0,4}",
            eof: bool,
        ) {
            let bytes = format!("{head}{body}");
            let _ = parse(bytes.as_bytes(), eof);
        }
    }
}
