//! The sockets: the UDP loop, TCP accept behind the ACL and the connection
//! slots, and RFC 7766 connections with their framing. Each message goes to
//! the pipeline ([`Shared::triage`]); what comes back is sent or framed.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::{AcquireError, OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

use super::batch::Batch;
use super::{Shared, Sink, Step};
use crate::dns::wire;
use crate::metrics::Limit;
use crate::slots::{Busy, Slot, Waiting};

/// RFC 7766 §6.2.3 asks servers to keep idle connections open "at least a
/// few seconds"; 10 s is what Unbound and dnsmasq use by default. It also
/// bounds the wait for a client to take each answer written to it.
pub(super) const TCP_IDLE: Duration = Duration::from_secs(10);
/// Queries of one TCP connection being resolved at once; reading pauses
/// beyond this, so one client cannot pile up unbounded work.
const TCP_PIPELINE: usize = 128;

/// Answers UDP queries on `socket` until `stop`, in batches (see
/// [`Batch`]): the answers given at once (errors, cache hits) go out together
/// after the batch, each to its own peer; a query that needs the upstreams
/// goes to [`Shared::submit`], whose flight answers it on its own.
///
/// After a full batch the task yields, so that a flood of datagrams cannot
/// keep the other tasks of its thread (flights, TCP, the sidecar) waiting;
/// after a batch that emptied the queue it waits for the socket anyway.
pub async fn serve_udp(shared: Arc<Shared>, socket: Arc<UdpSocket>, stop: CancellationToken) {
    let mut batch = Batch::new(&socket);
    loop {
        tokio::select! {
            biased;
            () = stop.cancelled() => return,
            r = socket.readable() => {
                if let Err(e) = r {
                    // Only when the runtime's I/O driver is gone.
                    tracing::debug!("udp readiness: {e}");
                    return;
                }
            }
        }
        let full = match batch.recv(&socket) {
            Ok(full) => full,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            // ICMP errors from earlier replies and the like surface here;
            // they concern one client, not the socket.
            Err(e) => {
                tracing::debug!("udp receive: {e}");
                continue;
            }
        };
        let mut moment = shared.moment();
        batch.answer_each(|packet, peer, out| {
            match shared.triage_at(&mut moment, packet, peer.ip(), true, out) {
                Step::Drop => false,
                Step::Reply => true,
                Step::Forward(key) => {
                    let pool = Arc::clone(&shared.settings.load().pool);
                    let to = Sink::Udp {
                        socket: Arc::clone(&socket),
                        peer,
                    };
                    shared.submit(&pool, key, peer.ip(), packet, to);
                    false
                }
            }
        });
        shared.settle(moment);
        let sent = batch.send(&socket);
        // What sendmmsg did not take (a full socket buffer, or an error for
        // one peer) goes one by one, waiting for room as a single reply
        // always did.
        for (out, peer) in batch.unsent(sent) {
            let _ = socket.send_to(out, peer).await;
        }
        if full {
            tokio::task::yield_now().await;
        }
    }
}

/// Accepts TCP connections on `listener` until `stop`. A client outside
/// `dns.allow` is closed at once, before it takes a slot or a task. At
/// `dns.tcp_max_connections` a new connection takes the slot of one that
/// stalled in the middle of a message, else of the one idle longest; it is
/// closed only when every connection is busy (see the crate's `slots`).
pub async fn serve_tcp(shared: Arc<Shared>, listener: TcpListener, stop: CancellationToken) {
    loop {
        let (stream, peer) = tokio::select! {
            biased;
            () = stop.cancelled() => return,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!("tcp accept: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Some(slot) = admit(&shared, peer.ip()) else {
            continue;
        };
        let shared2 = Arc::clone(&shared);
        let stop = stop.clone();
        let _ = stream.set_nodelay(true);
        let (rd, wr) = stream.into_split();
        shared.tracker.spawn(async move {
            connection(shared2, rd, wr, peer.ip(), slot, stop).await;
        });
        // The new connection reads its first message (most clients send it
        // with the connection) before the next one can take its slot: in a
        // burst of connections at the cap, it is busy, not evicted.
        tokio::task::yield_now().await;
    }
}

/// The ACL, then a slot for a TCP connection from `peer`, each limit that
/// bites counted; `None` closes the connection.
fn admit(shared: &Shared, peer: IpAddr) -> Option<Slot> {
    let cap = {
        let settings = shared.settings.load();
        if !crate::config::allows(&settings.allow, peer) {
            shared.metrics.limit_hit(Limit::TcpNotAllowed);
            return None;
        }
        settings.tcp_max_connections
    };
    let admission = shared.tcp_slots.admit(cap, Instant::now());
    match admission.evicted {
        Some(Waiting::Stalled) => shared.metrics.limit_hit(Limit::TcpSlowEvicted),
        Some(Waiting::Idle) => shared.metrics.limit_hit(Limit::TcpIdleEvicted),
        None => {}
    }
    if admission.slot.is_none() {
        tracing::debug!(%peer, "tcp connections at their cap and all busy; closing");
        shared.metrics.limit_hit(Limit::TcpRefused);
    }
    admission.slot
}

/// One TCP connection (RFC 7766): length-prefixed messages, several queries
/// in flight, each answered as soon as it is ready. It ends when the client
/// closes, `stop` fires, nothing arrives for [`TCP_IDLE`], an answer is not
/// taken within [`TCP_IDLE`], or a new connection takes its `slot`.
///
/// The slot is told what the connection does: part of a message in
/// ([`Slot::partial`], once per message, not per read), a whole message
/// (busy until it is dealt with), each query resolved or answer queued
/// (busy until written), so that it is evicted only while waiting.
///
/// Generic over the two halves of the stream so the fuzz target
/// `tcp_framing` ([`crate::fuzzing::tcp_framing`]) can drive it through an
/// in-memory pipe on a paused clock; the listener hands it a `TcpStream`'s
/// owned halves.
pub(crate) async fn connection<R, W>(
    shared: Arc<Shared>,
    mut rd: R,
    mut wr: W,
    peer: IpAddr,
    slot: Slot,
    stop: CancellationToken,
) where
    R: AsyncRead + Unpin + Send,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let slot = Arc::new(slot);
    let (answers, mut rx) = mpsc::channel::<Answer>(TCP_PIPELINE);
    let tx = Answers {
        tx: answers,
        slot: Arc::clone(&slot),
    };
    let writer = shared.tracker.spawn(async move {
        let mut framed = Vec::new();
        while let Some(answer) = rx.recv().await {
            frame(&answer.msg, &mut framed);
            // A client that does not read its answers keeps its slot busy:
            // it gets as long for each answer as for a query.
            match tokio::time::timeout(TCP_IDLE, wr.write_all(&framed)).await {
                Ok(Ok(())) => drop(answer),
                _ => return,
            }
        }
        let _ = wr.shutdown().await;
    });
    let pipeline = Arc::new(Pipeline {
        permits: Arc::new(Semaphore::new(TCP_PIPELINE)),
        slot: Arc::clone(&slot),
    });
    let mut out = Vec::new();
    loop {
        let read = async {
            // The first byte of a message starts its clock, whatever
            // trickles after it.
            let mut len = [0u8; 2];
            let n = rd.read(&mut len).await?;
            if n == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            slot.partial(Instant::now());
            if n == 1 {
                rd.read_exact(&mut len[1..]).await?;
            }
            let mut msg = vec![0u8; usize::from(u16::from_be_bytes(len))];
            rd.read_exact(&mut msg).await?;
            Ok::<_, std::io::Error>(msg)
        };
        let msg = tokio::select! {
            biased;
            () = stop.cancelled() => break,
            () = slot.evicted() => break,
            // The writer gave up on the client.
            () = tx.tx.closed() => break,
            r = tokio::time::timeout(TCP_IDLE, read) => match r {
                Ok(Ok(m)) => m,
                _ => break,
            },
        };
        // Evicted as the message came in: the connection is closing.
        let Some(busy) = slot.whole() else {
            break;
        };
        match shared.triage(&msg, peer, false, &mut out) {
            Step::Drop => {
                // Without a header there is no way to answer, and the
                // stream cannot be trusted to be in sync any more.
                if msg.len() < wire::HEADER_LEN {
                    break;
                }
            }
            Step::Reply => {
                if tx.send(std::mem::take(&mut out)).await.is_err() {
                    break;
                }
            }
            Step::Forward(key) => {
                let Ok(permit) = Arc::clone(&pipeline).acquire_owned().await else {
                    break;
                };
                let shared2 = Arc::clone(&shared);
                let tx = tx.clone();
                let pool = Arc::clone(&shared.settings.load().pool);
                shared.tracker.spawn(async move {
                    let reply = shared2.forward(&pool, key, &msg, peer, false).await;
                    if !reply.is_empty() {
                        let _ = tx.send(reply).await;
                    }
                    drop(permit);
                });
            }
        }
        drop(busy);
    }
    drop(tx);
    let _ = writer.await;
}

/// Where a TCP connection's answers go to be written: each keeps the
/// connection busy until it is written (or dropped).
#[derive(Debug, Clone)]
struct Answers {
    tx: mpsc::Sender<Answer>,
    slot: Arc<Slot>,
}

#[derive(Debug)]
struct Answer {
    msg: Vec<u8>,
    _busy: Option<Busy>,
}

impl Answers {
    /// Queues `msg`; the error when the writer is gone.
    async fn send(&self, msg: Vec<u8>) -> Result<(), mpsc::error::SendError<Answer>> {
        let answer = Answer {
            msg,
            _busy: self.slot.busy(),
        };
        self.tx.send(answer).await
    }
}

/// The [`TCP_PIPELINE`] queries of a connection being resolved at once;
/// each permit keeps the connection busy.
#[derive(Debug)]
struct Pipeline {
    permits: Arc<Semaphore>,
    slot: Arc<Slot>,
}

#[derive(Debug)]
struct Permit {
    _permit: OwnedSemaphorePermit,
    _busy: Option<Busy>,
}

impl Pipeline {
    async fn acquire_owned(self: Arc<Self>) -> Result<Permit, AcquireError> {
        let permit = Arc::clone(&self.permits).acquire_owned().await?;
        Ok(Permit {
            _permit: permit,
            _busy: self.slot.busy(),
        })
    }
}

/// `msg` with its length prefix (RFC 1035 §4.2.2) into `framed`. A message
/// over 65,535 bytes has no prefix: rendering never makes one (see
/// [`Reply::render`](wire::Reply::render)), but should one come, the client gets SERVFAIL for
/// its query rather than no answer at all.
pub(super) fn frame(msg: &[u8], framed: &mut Vec<u8>) {
    framed.clear();
    let servfail;
    let msg = if msg.len() > usize::from(u16::MAX) {
        tracing::warn!(
            len = msg.len(),
            "an answer too large for TCP; SERVFAIL instead"
        );
        let mut out = Vec::new();
        wire::servfail_for(msg, &mut out);
        servfail = out;
        &servfail[..]
    } else {
        msg
    };
    let len = u16::try_from(msg.len()).unwrap_or(u16::MAX);
    framed.extend_from_slice(&len.to_be_bytes());
    framed.extend_from_slice(msg);
}
