//! Copies stdin to the connection and the connection to stdout, as `nc`
//! does, with two blocking threads rather than tokio's `io-std` (which would
//! add its own threads and code to the binary for the same thing).
//!
//! Stdin and stdout are used through duplicates of their descriptors, not
//! `std::io::stdout()`: that one buffers by line, and a relay must pass on
//! every byte as soon as it has it (ssh's packets are not lines).

use std::fmt;
use std::fs::File;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::fd::AsFd;
use std::thread;

/// How much one read takes at most.
const BUFFER: usize = 64 * 1024;

/// Why the relay ended badly.
#[derive(Debug)]
pub enum RelayError {
    /// Reading from the connection failed (a reset, mostly).
    Peer(io::Error),
    /// Writing to stdout failed (the reader went away).
    Stdout(io::Error),
}

/// Relays until the peer closes its side: `Ok` once everything it sent is
/// written to stdout. When stdin ends first, the connection is half-closed
/// (the peer sees the end of the request) and its answer still relayed.
pub fn relay(stream: TcpStream) -> Result<(), RelayError> {
    let mut stdout = File::from(
        io::stdout()
            .as_fd()
            .try_clone_to_owned()
            .map_err(RelayError::Stdout)?,
    );
    let upload = stream.try_clone().map_err(RelayError::Peer)?;
    // A missing stdin is an empty one: the request ends at once.
    let stdin = io::stdin().as_fd().try_clone_to_owned().map(File::from);
    // Not joined: when the peer closes first, the process ends while this
    // thread may still wait for input that will never matter.
    thread::spawn(move || match stdin {
        Ok(stdin) => send(stdin, upload),
        Err(_) => {
            let _ = upload.shutdown(Shutdown::Write);
        }
    });
    receive(stream, &mut stdout)
}

/// Stdin to the connection, then a half-close. A failed write ends it
/// quietly: the peer reset or closed the connection, which the receiving
/// side reports.
fn send(mut from: impl Read, mut to: TcpStream) {
    let mut buf = vec![0u8; BUFFER];
    loop {
        match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                if let Err(e) = to.write_all(&buf[..n]) {
                    tracing::debug!("sending to the peer failed: {e}");
                    return;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                tracing::debug!("reading stdin failed, ending the request: {e}");
                break;
            }
        }
    }
    if let Err(e) = to.shutdown(Shutdown::Write) {
        tracing::debug!("half-closing the connection failed: {e}");
    }
}

/// The connection to `to` until the peer closes.
fn receive(mut from: impl Read, to: &mut impl Write) -> Result<(), RelayError> {
    let mut buf = vec![0u8; BUFFER];
    loop {
        match from.read(&mut buf) {
            Ok(0) => return to.flush().map_err(RelayError::Stdout),
            Ok(n) => to.write_all(&buf[..n]).map_err(RelayError::Stdout)?,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(RelayError::Peer(e)),
        }
    }
}

impl fmt::Display for RelayError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RelayError::Peer(e) if e.kind() == io::ErrorKind::ConnectionReset => {
                f.write_str("the peer reset the connection")
            }
            RelayError::Peer(e) => write!(f, "the connection broke: {e}"),
            RelayError::Stdout(e) => write!(f, "cannot write to stdout: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// A connected loopback pair: (ours, the peer's).
    fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let ours = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (theirs, _) = listener.accept().unwrap();
        (ours, theirs)
    }

    #[test]
    fn stdin_is_sent_then_half_closed_and_the_answer_still_received() {
        let (ours, mut theirs) = pair();
        let request: Vec<u8> = (0..=255u8).cycle().take(200_000).collect();
        let sender = {
            let ours = ours.try_clone().unwrap();
            let request = request.clone();
            thread::spawn(move || send(&request[..], ours))
        };
        // The peer reads to the end (the half-close), then answers.
        let mut got = Vec::new();
        theirs.read_to_end(&mut got).unwrap();
        assert_eq!(got, request);
        sender.join().unwrap();
        theirs
            .write_all(b"answer after the request ended\0\xff")
            .unwrap();
        drop(theirs);
        let mut stdout = Vec::new();
        receive(ours, &mut stdout).unwrap();
        assert_eq!(stdout, b"answer after the request ended\0\xff");
    }

    #[test]
    fn a_reset_is_an_error() {
        let (ours, theirs) = pair();
        socket2::SockRef::from(&theirs)
            .set_linger(Some(std::time::Duration::ZERO))
            .unwrap();
        drop(theirs);
        let error = receive(ours, &mut Vec::new()).unwrap_err();
        assert!(matches!(error, RelayError::Peer(_)), "{error}");
        assert_eq!(error.to_string(), "the peer reset the connection");
    }

    #[test]
    fn a_stdout_that_fails_is_an_error() {
        struct Closed;
        impl Write for Closed {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::ErrorKind::BrokenPipe.into())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let (ours, mut theirs) = pair();
        theirs.write_all(b"x").unwrap();
        let error = receive(ours, &mut Closed).unwrap_err();
        assert!(matches!(error, RelayError::Stdout(_)), "{error}");
    }
}
