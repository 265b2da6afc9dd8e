//! Who waits on a flight and where each one's answer goes: a UDP client,
//! a caller awaiting the rendered answer, or the daemon's own lookup.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use tokio::net::UdpSocket;
use tokio::sync::oneshot;

use crate::dns::flight;
use crate::dns::upstream::Failure;
use crate::dns::wire::Reply;

/// A client (or the daemon itself) waiting on a flight.
#[derive(Debug)]
pub struct Waiter {
    /// The client's query, for fitting the answer to it; the flight it
    /// leads, if it does, forwards the same bytes.
    pub(super) packet: Arc<[u8]>,
    /// When it arrived: with a stale answer at hand, a client waits the
    /// client response timer (RFC 8767 §5) at most.
    pub(super) since: Instant,
    pub(super) to: Sink,
}

impl Waiter {
    /// A client (not the daemon's own lookup): it gets a rendered answer.
    pub(super) fn is_client(&self) -> bool {
        !matches!(self.to, Sink::Lookup(_))
    }

    /// Whether its answer goes over UDP (and so is fitted to the UDP size).
    pub(super) fn udp(&self) -> bool {
        matches!(self.to, Sink::Udp { .. } | Sink::Reply { udp: true, .. })
    }
}

/// Where a waiter's answer goes.
#[derive(Debug)]
pub enum Sink {
    /// A UDP client: sent from the listening socket it came in on.
    Udp {
        socket: Arc<UdpSocket>,
        peer: SocketAddr,
    },
    /// A caller awaiting the rendered answer ([`Shared::forward`](super::Shared::forward)); `udp`
    /// picks the size it is fitted to.
    Reply {
        tx: oneshot::Sender<Vec<u8>>,
        udp: bool,
    },
    /// The daemon's own lookup: the upstream's reply as it came.
    Lookup(oneshot::Sender<Resolution>),
}

impl Sink {
    /// Sends a client its answer (the daemon's own lookups get theirs
    /// from their flight directly).
    pub(super) async fn send(self, answer: Vec<u8>) {
        match self {
            Sink::Udp { socket, peer } => {
                let _ = socket.send_to(&answer, peer).await;
            }
            Sink::Reply { tx, .. } => {
                let _ = tx.send(answer);
            }
            Sink::Lookup(_) => {}
        }
    }
}

/// A lookup's end, shared by every waiter of its flight.
pub type Resolution = Result<Arc<Reply>, Arc<Failure>>;

/// The flight table of [`Shared`](super::Shared); a flight's task is stopped by sending
/// it the waiters it is to answer.
pub(super) type Flights = flight::Table<Waiter, oneshot::Sender<Vec<Waiter>>>;
