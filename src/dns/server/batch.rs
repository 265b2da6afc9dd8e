//! UDP datagrams in batches: up to [`BATCH`] queries taken from a listening
//! socket with one `recvmmsg`, and the answers given at once sent with one
//! `sendmmsg`, each to its own peer.
//!
//! A cache hit costs little more than the kernel's receive and send, so a
//! system call per datagram each way is a large part of it; a batch shares
//! one of each, as the benchmark's no-logic floor and Knot do. `recvmmsg`
//! comes from `nix` and `sendmmsg` from `rustix`, both behind safe wrappers
//! (nix's own `sendmmsg` reads uninitialised address storage when its
//! results are counted; rustix has no `recvmmsg`).

use std::cell::RefCell;
use std::io::{self, IoSlice, IoSliceMut};
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd};

use nix::sys::socket::{MsgFlags, MultiHeaders, SockaddrStorage, recvmmsg};
use rustix::net::{MMsgHdr, SendAncillaryBuffer, SendFlags, SocketAddrAny, sendmmsg};
use tokio::io::Interest;
use tokio::net::UdpSocket;

/// Datagrams read (and answers sent) per system call, as in the floor.
pub(super) const BATCH: usize = 32;

/// Room for each datagram: the largest UDP payload (65,507 bytes over IPv4,
/// 65,527 over IPv6), so no query is ever cut. The slots are allocated
/// zeroed, which for a block this size is fresh pages from the kernel that
/// stay unmapped until a datagram is written into them: resident memory is
/// what the queries fill, about a page a slot.
const SLOT: usize = 65_536;

thread_local! {
    /// `recvmmsg`'s message headers, made once per thread and per address
    /// family: they hold pointers, so a task (which may move between
    /// threads) cannot keep them, and the kernel writes each sender's
    /// address length back into them, so an IPv4 and an IPv6 socket must
    /// not share one.
    static HEADERS: RefCell<[Option<MultiHeaders<SockaddrStorage>>; 2]> =
        const { RefCell::new([None, None]) };
}

/// A batch's buffers, reused from batch to batch.
#[derive(Debug)]
pub(super) struct Batch {
    /// [`BATCH`] slots of [`SLOT`] bytes.
    slots: Box<[u8]>,
    /// Each datagram received: its length and sender (`None`: not an IP
    /// address, so it cannot be answered).
    got: Vec<(usize, Option<SocketAddr>)>,
    /// The answers: `out[i]` goes to `peers[i]` (`to[i]` for `sendmmsg`),
    /// for `i` below `peers.len()`.
    out: Vec<Vec<u8>>,
    peers: Vec<SocketAddr>,
    to: Vec<SocketAddrAny>,
    /// Which of `HEADERS` this socket's family uses.
    family: usize,
}

impl Batch {
    pub(super) fn new(socket: &UdpSocket) -> Batch {
        let v6 = socket.local_addr().is_ok_and(|a| a.is_ipv6());
        Batch {
            slots: vec![0; BATCH * SLOT].into_boxed_slice(),
            got: Vec::with_capacity(BATCH),
            out: (0..BATCH).map(|_| Vec::new()).collect(),
            peers: Vec::with_capacity(BATCH),
            to: Vec::with_capacity(BATCH),
            family: usize::from(v6),
        }
    }

    /// Takes the datagrams waiting on `socket`, up to [`BATCH`], without
    /// waiting: whether the batch came full (more may wait), or
    /// `WouldBlock` when there was none.
    ///
    /// A batch that did not come full emptied the queue: the kernel stops
    /// early only when no datagram is left (or on an error it keeps for
    /// the next call). The socket's readiness is then cleared at once,
    /// rather than by one more call that finds nothing; a datagram arriving
    /// after that is a new edge for the runtime's epoll, so none is missed.
    pub(super) fn recv(&mut self, socket: &UdpSocket) -> io::Result<bool> {
        self.got.clear();
        self.peers.clear();
        self.to.clear();
        let fd = socket.as_raw_fd();
        let got = socket.try_io(Interest::READABLE, || {
            let n = self.recv_from(fd)?;
            if n < BATCH {
                Err(io::ErrorKind::WouldBlock.into())
            } else {
                Ok(())
            }
        });
        match got {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && !self.got.is_empty() => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn recv_from(&mut self, fd: std::os::fd::RawFd) -> io::Result<usize> {
        let family = self.family;
        let Batch { slots, got, .. } = self;
        HEADERS.with_borrow_mut(|headers| {
            let headers =
                headers[family].get_or_insert_with(|| MultiHeaders::preallocate(BATCH, None));
            // Built for each call (they borrow the slots); a loop, not an
            // array built element by element, which compiles to 32 copies.
            let mut iovs: Vec<[IoSliceMut<'_>; 1]> = slots
                .chunks_exact_mut(SLOT)
                .map(|slot| [IoSliceMut::new(slot)])
                .collect();
            let received = recvmmsg(fd, headers, iovs.iter_mut(), MsgFlags::empty(), None)?;
            let mut n = 0;
            for msg in received {
                n += 1;
                got.push((msg.bytes, msg.address.as_ref().and_then(socket_addr)));
            }
            Ok(n)
        })
    }

    /// Calls `answer` on each datagram received, in order, with its sender
    /// and the buffer to write its answer into (reused: the writer clears
    /// it first, as the renderers do); `answer` says whether to send it.
    pub(super) fn answer_each(
        &mut self,
        mut answer: impl FnMut(&[u8], SocketAddr, &mut Vec<u8>) -> bool,
    ) {
        let Batch {
            slots,
            got,
            out,
            peers,
            to,
            ..
        } = self;
        for (&(len, peer), slot) in got.iter().zip(slots.chunks_exact(SLOT)) {
            let Some(peer) = peer else {
                continue;
            };
            let packet = slot.get(..len).unwrap_or(&[]);
            let Some(buf) = out.get_mut(peers.len()) else {
                break;
            };
            if answer(packet, peer, buf) {
                peers.push(peer);
                to.push(SocketAddrAny::from(peer));
            }
        }
    }

    /// Sends the answers with one `sendmmsg`; the index of the first answer
    /// that did not go (all of them when the socket's buffer is full), for
    /// [`Self::unsent`].
    pub(super) fn send(&mut self, socket: &UdpSocket) -> usize {
        if self.to.is_empty() {
            return 0;
        }
        let sent = socket.try_io(Interest::WRITABLE, || {
            let n = self.to.len();
            let mut controls: Vec<SendAncillaryBuffer<'_, '_, '_>> =
                (0..n).map(|_| SendAncillaryBuffer::default()).collect();
            let iovs: Vec<[IoSlice<'_>; 1]> = self
                .out
                .iter()
                .take(n)
                .map(|out| [IoSlice::new(out)])
                .collect();
            let mut msgs: Vec<MMsgHdr<'_>> = self
                .to
                .iter()
                .zip(iovs.iter())
                .zip(controls.iter_mut())
                .map(|((to, iov), control)| MMsgHdr::new_with_addr(to, iov, control))
                .collect();
            Ok(sendmmsg(socket.as_fd(), &mut msgs, SendFlags::empty())?)
        });
        match sent {
            Ok(n) => n,
            Err(e) => {
                if e.kind() != io::ErrorKind::WouldBlock {
                    tracing::debug!("udp send: {e}");
                }
                0
            }
        }
    }

    /// The answers from `from` on, each with its peer: those `sendmmsg`
    /// did not take, to be sent one by one.
    pub(super) fn unsent(&self, from: usize) -> impl Iterator<Item = (&[u8], SocketAddr)> {
        self.out
            .iter()
            .zip(self.peers.iter().copied())
            .skip(from)
            .map(|(out, peer)| (&out[..], peer))
    }
}

/// A sender's address as std has it; `None` for a family other than IP.
fn socket_addr(addr: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = addr.as_sockaddr_in() {
        return Some(SocketAddr::V4((*v4).into()));
    }
    addr.as_sockaddr_in6()
        .map(|v6| SocketAddr::V6((*v6).into()))
}
