//! The connection race of RFC 8305 §5 ("Happy Eyeballs"): attempts start in
//! the order given, one [`CONNECTION_ATTEMPT_DELAY`] after the other, or at
//! once when an attempt fails (even while earlier ones still wait, as
//! asyncio's staggered race does); the first to connect wins and
//! every other one is dropped, which closes its socket (a pending connect is
//! aborted, a connection that completed too late is closed unused).
//!
//! [`race`] is generic over how an attempt connects, so its timing is tested
//! with scripted attempts on tokio's paused clock; [`tcp`] is the real one.

use std::fmt;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::{TcpSocket, TcpStream};
use tokio::task::JoinSet;
use tokio::time::Instant;

/// RFC 8305 §5's recommended Connection Attempt Delay.
pub const CONNECTION_ATTEMPT_DELAY: Duration = Duration::from_millis(250);

/// One (source, destination) pair to try.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    /// The address to bind before connecting (port 0, and for a link-local
    /// IPv6 source its scope id); `None` lets the kernel choose.
    pub source: Option<SocketAddr>,
    pub destination: SocketAddr,
    /// The interface of a link-local pair, to name it as `fe80::1%eth0`.
    pub interface: String,
}

/// Why an attempt did not connect.
#[derive(Debug)]
#[non_exhaustive]
pub enum Reason {
    /// The destination answered the SYN with a reset.
    Refused,
    /// No answer before the race's deadline (or the kernel gave up).
    TimedOut,
    /// No route, or an ICMP unreachable.
    Unreachable,
    /// The source could not be bound: it is no longer an address of this host.
    Bind(io::Error),
    /// Anything else the kernel said.
    Other(io::Error),
}

/// The outcome of an attempt that did not win.
#[derive(Debug)]
pub struct Failed {
    pub attempt: Attempt,
    pub reason: Reason,
}

/// Nothing connected: each attempt started, in order, with why it failed,
/// and how many were never started because the deadline came first.
#[derive(Debug)]
pub struct AllFailed {
    pub tried: Vec<Failed>,
    pub not_tried: usize,
}

/// Races `attempts` as RFC 8305 §5 says and returns the index of the winner
/// and its connection. With `timeout`, the whole race ends after it; the
/// attempts still pending then have [`Reason::TimedOut`].
///
/// `connect` turns an attempt into the future that makes the connection; it
/// runs as a task on the current runtime, so dropping the task (which the
/// race does to every loser before it returns) closes the socket.
pub async fn race<S, F, C>(
    attempts: &[Attempt],
    delay: Duration,
    timeout: Option<Duration>,
    mut connect: C,
) -> Result<(usize, S), AllFailed>
where
    C: FnMut(&Attempt) -> F,
    F: Future<Output = Result<S, Reason>> + Send + 'static,
    S: Send + 'static,
{
    let started_at = Instant::now();
    let deadline = timeout.map(|t| started_at + t);
    let mut outcomes: Vec<Option<Reason>> = attempts.iter().map(|_| None).collect();
    let mut running: JoinSet<(usize, Result<S, Reason>)> = JoinSet::new();
    let mut next = 0;
    let mut next_at = started_at;
    loop {
        let now = Instant::now();
        if next < attempts.len() && (running.is_empty() || now >= next_at) {
            tracing::debug!(
                "attempt {}: {} after {:?}",
                next + 1,
                attempts[next],
                now - started_at
            );
            let attempt = connect(&attempts[next]);
            let index = next;
            running.spawn(async move { (index, attempt.await) });
            next += 1;
            next_at = now + delay;
            continue;
        }
        if running.is_empty() {
            return Err(all_failed(attempts, outcomes, next));
        }
        let more = next < attempts.len();
        tokio::select! {
            biased;
            joined = running.join_next() => {
                let (index, result) = match joined {
                    Some(Ok(done)) => done,
                    Some(Err(e)) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                    // Not empty (checked above), and only `shutdown` aborts.
                    Some(Err(_)) | None => unreachable!("a race task vanished"),
                };
                match result {
                    Ok(stream) => {
                        tracing::debug!(
                            "attempt {}: connected after {:?}",
                            index + 1,
                            started_at.elapsed()
                        );
                        running.shutdown().await;
                        return Ok((index, stream));
                    }
                    Err(reason) => {
                        tracing::debug!(
                            "attempt {}: {reason} after {:?}",
                            index + 1,
                            started_at.elapsed()
                        );
                        outcomes[index] = Some(reason);
                        // A failure starts the next attempt at once, even
                        // while earlier ones still wait for an answer.
                        next_at = Instant::now();
                    }
                }
            }
            () = sleep_until(deadline) => {
                running.shutdown().await;
                for outcome in &mut outcomes[..next] {
                    outcome.get_or_insert(Reason::TimedOut);
                }
                return Err(all_failed(attempts, outcomes, next));
            }
            () = sleep_until(more.then_some(next_at)) => {}
        }
    }
}

/// Sleeps until `at`, or forever without it.
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

fn all_failed(attempts: &[Attempt], outcomes: Vec<Option<Reason>>, started: usize) -> AllFailed {
    let tried = attempts
        .iter()
        .zip(outcomes)
        .take(started)
        .map(|(attempt, reason)| Failed {
            attempt: attempt.clone(),
            reason: reason.unwrap_or(Reason::TimedOut),
        })
        .collect();
    AllFailed {
        tried,
        not_tried: attempts.len() - started,
    }
}

/// The real attempt: a TCP socket of the destination's family, bound to the
/// source when there is one, connecting. `TCP_NODELAY` is set on the
/// connection because it relays what the user's program wrote as it wrote
/// it: the program (ssh, say) has already chosen its packets.
pub fn tcp(
    attempt: &Attempt,
) -> impl Future<Output = Result<TcpStream, Reason>> + Send + 'static + use<> {
    let attempt = attempt.clone();
    async move {
        let socket = match attempt.destination {
            SocketAddr::V4(_) => TcpSocket::new_v4(),
            SocketAddr::V6(_) => TcpSocket::new_v6(),
        }
        .map_err(Reason::Other)?;
        if let Some(source) = attempt.source {
            socket.bind(source).map_err(Reason::Bind)?;
        }
        let stream = socket
            .connect(attempt.destination)
            .await
            .map_err(Reason::from_connect)?;
        // Only latency is at stake, never the connection.
        let _ = stream.set_nodelay(true);
        Ok(stream)
    }
}

impl Reason {
    /// Classifies the error of a `connect`.
    pub fn from_connect(e: io::Error) -> Reason {
        match e.kind() {
            io::ErrorKind::ConnectionRefused => Reason::Refused,
            io::ErrorKind::TimedOut => Reason::TimedOut,
            io::ErrorKind::NetworkUnreachable | io::ErrorKind::HostUnreachable => {
                Reason::Unreachable
            }
            _ => Reason::Other(e),
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Refused => f.write_str("refused"),
            Reason::TimedOut => f.write_str("timed out"),
            Reason::Unreachable => f.write_str("unreachable"),
            Reason::Bind(e) => write!(f, "cannot bind the source ({e})"),
            Reason::Other(e) => write!(f, "failed ({e})"),
        }
    }
}

impl fmt::Display for Attempt {
    /// `DESTINATION from SOURCE`, or the destination alone when the kernel
    /// chooses the source; link-local addresses with their interface.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write_ip(f, self.destination)?;
        if let Some(source) = self.source {
            f.write_str(" from ")?;
            self.write_ip(f, source)?;
        }
        Ok(())
    }
}

impl Attempt {
    fn write_ip(&self, f: &mut fmt::Formatter<'_>, addr: SocketAddr) -> fmt::Result {
        match addr {
            SocketAddr::V6(v6) if v6.scope_id() != 0 => {
                if self.interface.is_empty() {
                    write!(f, "{}%{}", v6.ip(), v6.scope_id())
                } else {
                    write!(f, "{}%{}", v6.ip(), self.interface)
                }
            }
            _ => write!(f, "{}", addr.ip()),
        }
    }
}

impl fmt::Display for AllFailed {
    /// `A from S refused; B from T timed out; 2 more not tried`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.tried.is_empty() && self.not_tried == 0 {
            return f.write_str("no address to try");
        }
        let mut separator = "";
        for failed in &self.tried {
            write!(f, "{separator}{} {}", failed.attempt, failed.reason)?;
            separator = "; ";
        }
        match self.not_tried {
            0 => Ok(()),
            1 => write!(f, "{separator}1 more not tried"),
            n => write!(f, "{separator}{n} more not tried"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{IpAddr, Ipv4Addr, SocketAddrV6, TcpListener};
    use std::sync::{Arc, Mutex};

    /// What a scripted attempt does, after how long.
    #[derive(Debug, Clone, Copy)]
    enum Script {
        Connect(u64),
        Refuse(u64),
        Hang,
    }

    /// Which attempt started when, and which futures were dropped unfinished.
    #[derive(Debug, Default)]
    struct Log {
        started: Vec<(usize, Duration)>,
        dropped: Vec<usize>,
    }

    /// Marks its attempt as dropped unless it finished.
    struct DropGuard {
        index: usize,
        log: Arc<Mutex<Log>>,
        finished: bool,
    }

    impl Drop for DropGuard {
        fn drop(&mut self) {
            if !self.finished {
                self.log.lock().unwrap().dropped.push(self.index);
            }
        }
    }

    fn attempts(n: usize) -> Vec<Attempt> {
        (0..n)
            .map(|i| Attempt {
                source: Some(SocketAddr::from(([127, 0, 0, 2 + i as u8], 0))),
                destination: SocketAddr::from(([127, 0, 0, 1], 1000 + i as u16)),
                interface: String::new(),
            })
            .collect()
    }

    /// Runs a race of scripted attempts on the paused clock; the winner's
    /// "stream" is its index.
    async fn scripted(
        scripts: &[Script],
        timeout: Option<Duration>,
    ) -> (Result<(usize, usize), AllFailed>, Log) {
        let log = Arc::new(Mutex::new(Log::default()));
        let start = Instant::now();
        let pairs = attempts(scripts.len());
        let result = race(&pairs, CONNECTION_ATTEMPT_DELAY, timeout, |attempt| {
            let index = pairs.iter().position(|a| a == attempt).unwrap();
            let script = scripts[index];
            let log = Arc::clone(&log);
            log.lock().unwrap().started.push((index, start.elapsed()));
            async move {
                let mut guard = DropGuard {
                    index,
                    log,
                    finished: false,
                };
                let outcome = match script {
                    Script::Connect(ms) => {
                        tokio::time::sleep(Duration::from_millis(ms)).await;
                        Ok(index)
                    }
                    Script::Refuse(ms) => {
                        tokio::time::sleep(Duration::from_millis(ms)).await;
                        Err(Reason::Refused)
                    }
                    Script::Hang => std::future::pending().await,
                };
                guard.finished = true;
                outcome
            }
        })
        .await;
        let log = std::mem::take(&mut *log.lock().unwrap());
        (result, log)
    }

    fn ms(ms: u64) -> Duration {
        Duration::from_millis(ms)
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_first_pair_loses_to_the_second_250_ms_later() {
        let (result, log) = scripted(&[Script::Hang, Script::Connect(10)], None).await;
        assert_eq!(result.unwrap(), (1, 1));
        assert_eq!(log.started, [(0, ms(0)), (1, ms(250))]);
        assert_eq!(
            log.dropped,
            [0],
            "the loser was dropped (its socket closed)"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_refused_pair_starts_the_next_at_once() {
        let (result, log) = scripted(
            &[Script::Refuse(0), Script::Refuse(40), Script::Connect(5)],
            None,
        )
        .await;
        assert_eq!(result.unwrap(), (2, 2));
        assert_eq!(log.started, [(0, ms(0)), (1, ms(0)), (2, ms(40))]);
        assert!(log.dropped.is_empty(), "{:?}", log.dropped);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failure_while_another_runs_starts_the_next_at_once() {
        // At 300 ms the second fails while the first still runs: the third
        // starts then, not 250 ms after the second.
        let (result, log) = scripted(
            &[Script::Hang, Script::Refuse(50), Script::Connect(0)],
            None,
        )
        .await;
        assert_eq!(result.unwrap(), (2, 2));
        assert_eq!(log.started, [(0, ms(0)), (1, ms(250)), (2, ms(300))]);
        assert_eq!(log.dropped, [0]);
    }

    #[tokio::test(start_paused = true)]
    async fn an_earlier_pair_that_connects_first_wins_and_later_ones_are_closed() {
        let (result, log) = scripted(
            &[Script::Connect(400), Script::Connect(300), Script::Hang],
            None,
        )
        .await;
        // The first connects at 400 ms, the second would at 550 ms.
        assert_eq!(result.unwrap(), (0, 0));
        assert_eq!(log.started, [(0, ms(0)), (1, ms(250))]);
        assert_eq!(log.dropped, [1]);
    }

    #[tokio::test(start_paused = true)]
    async fn when_all_fail_each_is_named_with_its_reason() {
        let (result, log) = scripted(&[Script::Refuse(0), Script::Refuse(0)], None).await;
        let error = result.unwrap_err();
        assert_eq!(log.started, [(0, ms(0)), (1, ms(0))]);
        assert_eq!(
            error.to_string(),
            "127.0.0.1 from 127.0.0.2 refused; 127.0.0.1 from 127.0.0.3 refused"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_deadline_ends_the_race_and_counts_what_was_not_tried() {
        let start = Instant::now();
        let (result, log) = scripted(
            &[
                Script::Hang,
                Script::Refuse(100),
                Script::Hang,
                Script::Hang,
            ],
            Some(ms(600)),
        )
        .await;
        assert_eq!(start.elapsed(), ms(600));
        let error = result.unwrap_err();
        // The second's failure at 350 ms starts the third; the fourth's
        // turn (600 ms) is the deadline's.
        assert_eq!(log.started, [(0, ms(0)), (1, ms(250)), (2, ms(350))]);
        let mut dropped = log.dropped;
        dropped.sort_unstable();
        assert_eq!(dropped, [0, 2]);
        assert_eq!(
            error.to_string(),
            "127.0.0.1 from 127.0.0.2 timed out; 127.0.0.1 from 127.0.0.3 refused; \
             127.0.0.1 from 127.0.0.4 timed out; 1 more not tried"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn nothing_to_try_is_its_own_failure() {
        let (result, _) = scripted(&[], Some(ms(100))).await;
        assert_eq!(result.unwrap_err().to_string(), "no address to try");
    }

    #[test]
    fn attempts_are_named_with_their_interface_when_link_local() {
        let attempt = Attempt {
            source: Some(SocketAddrV6::new("fe80::2".parse().unwrap(), 0, 0, 3).into()),
            destination: SocketAddrV6::new("fe80::1".parse().unwrap(), 22, 0, 3).into(),
            interface: "eth0".to_owned(),
        };
        assert_eq!(attempt.to_string(), "fe80::1%eth0 from fe80::2%eth0");
        let unnamed = Attempt {
            interface: String::new(),
            ..attempt
        };
        assert_eq!(unnamed.to_string(), "fe80::1%3 from fe80::2%3");
        let unbound = Attempt {
            source: None,
            destination: SocketAddr::from((Ipv4Addr::LOCALHOST, 80)),
            interface: String::new(),
        };
        assert_eq!(unbound.to_string(), "127.0.0.1");
    }

    /// A loopback listener and the source address each accepted connection
    /// came from.
    fn listener() -> (TcpListener, SocketAddr) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        (listener, addr)
    }

    fn real_race(pairs: &[Attempt], timeout: Duration) -> Result<(usize, TcpStream), AllFailed> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(race(pairs, CONNECTION_ATTEMPT_DELAY, Some(timeout), tcp))
    }

    #[test]
    fn a_real_attempt_binds_its_source() {
        let (server, addr) = listener();
        // Refused: a port that was just free.
        let refused = listener().1;
        let pairs = [
            Attempt {
                source: Some(SocketAddr::from(([127, 0, 0, 2], 0))),
                destination: refused,
                interface: String::new(),
            },
            Attempt {
                source: Some(SocketAddr::from(([127, 0, 0, 3], 0))),
                destination: addr,
                interface: String::new(),
            },
        ];
        let (index, stream) = real_race(&pairs, Duration::from_secs(5)).unwrap();
        assert_eq!(index, 1);
        let (_, peer) = server.accept().unwrap();
        assert_eq!(peer.ip(), IpAddr::from([127, 0, 0, 3]));
        assert_eq!(stream.local_addr().unwrap(), peer);
    }

    #[test]
    fn a_source_that_is_not_ours_fails_to_bind_and_refused_is_refused() {
        let refused = listener().1;
        let pairs = [
            Attempt {
                // TEST-NET-1: never an address of this host; bind sends nothing.
                source: Some(SocketAddr::from(([192, 0, 2, 200], 0))),
                destination: refused,
                interface: String::new(),
            },
            Attempt {
                source: None,
                destination: refused,
                interface: String::new(),
            },
        ];
        let error = real_race(&pairs, Duration::from_secs(5)).unwrap_err();
        assert!(matches!(error.tried[0].reason, Reason::Bind(_)), "{error}");
        assert!(matches!(error.tried[1].reason, Reason::Refused), "{error}");
        assert!(
            error
                .to_string()
                .starts_with("127.0.0.1 from 192.0.2.200 cannot bind the source ("),
            "{error}"
        );
    }
}
