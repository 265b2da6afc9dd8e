//! The daemon's own lookups (STUN server names, NAT64 discovery, the
//! sidecar's `/pairs`): through the same cache, flights and upstreams as a
//! client's query, never rewritten.

use crate::sync::lock;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::oneshot;

use super::{Shared, Sink};
use crate::dns::cache::Key;
use crate::dns::wire::{self, Header, Query, Reply};

/// Whom the daemon's own lookups (the sidecar, STUN server names, NAT64
/// discovery) count against in the flight table: no client has it.
pub(super) const DAEMON: IpAddr = IpAddr::V4(Ipv4Addr::UNSPECIFIED);

impl Shared {
    /// The daemon's own lookups (STUN server names, NAT64 discovery, the
    /// sidecar): the same cache and upstreams as a client's query, no second
    /// resolver.
    pub async fn lookup(
        self: &Arc<Self>,
        name: &str,
        qtype: u16,
    ) -> Result<Arc<Reply>, LookupError> {
        let mut qname = Vec::with_capacity(64);
        wire::write_name(name, &mut qname).ok_or(LookupError::BadName)?;
        self.lookup_wire(&qname, qtype, wire::CLASS_IN).await
    }

    /// [`Shared::lookup`] of a name in wire format: upstream's reply as it
    /// came (never rewritten), from the cache when it is there.
    pub(super) async fn lookup_wire(
        self: &Arc<Self>,
        qname: &[u8],
        qtype: u16,
        qclass: u16,
    ) -> Result<Arc<Reply>, LookupError> {
        self.lookup_wire_with(qname, qtype, qclass, false, false)
            .await
    }

    /// [`Shared::lookup_wire`] as a client with these DO and CD bits asks
    /// (an OPT record with DO when `do_bit`): DNS64 asks for the A answer
    /// its AAAA answer is made of the way the client asked for the AAAA,
    /// so it joins the flight and cache entry of a client's identical A
    /// query, and sees the RRSIGs a DO client would.
    pub(super) async fn lookup_wire_with(
        self: &Arc<Self>,
        qname: &[u8],
        qtype: u16,
        qclass: u16,
        do_bit: bool,
        cd: bool,
    ) -> Result<Arc<Reply>, LookupError> {
        let mut packet = Vec::with_capacity(HEADER_LEN_HINT + OPT_LEN + qname.len());
        let flags = wire::flag::RD | if cd { wire::flag::CD } else { 0 };
        Header {
            id: rand::random(),
            flags,
            qdcount: 1,
            ancount: 0,
            nscount: 0,
            arcount: u16::from(do_bit),
        }
        .write(&mut packet);
        packet.extend_from_slice(qname);
        packet.extend_from_slice(&qtype.to_be_bytes());
        packet.extend_from_slice(&qclass.to_be_bytes());
        if do_bit {
            // RFC 6891 §6.1.2: root owner, OPT, our payload size, extended
            // rcode and version 0, the DO flag, no options.
            packet.push(0);
            packet.extend_from_slice(&wire::rtype::OPT.to_be_bytes());
            packet.extend_from_slice(&1232u16.to_be_bytes());
            packet.extend_from_slice(&[0, 0, 0x80, 0, 0, 0]);
        }
        let query = Query::parse(&packet).map_err(|_| LookupError::BadName)?;
        let (qname, _, qclass) = query.parts();
        let key = Key::new(qname, qtype, qclass, query.do_bit(), cd);
        if let Some((entry, _)) = lock(&self.cache).get(&key, Instant::now()) {
            return Ok(Arc::clone(&entry.reply));
        }
        let pool = Arc::clone(&self.settings.load().pool);
        let (tx, rx) = oneshot::channel();
        self.submit(&pool, key, DAEMON, &packet, Sink::Lookup(tx));
        match rx.await {
            Ok(Ok(reply)) => Ok(reply),
            _ => Err(LookupError::Upstreams),
        }
    }
}

/// Header plus type and class.
const HEADER_LEN_HINT: usize = wire::HEADER_LEN + 4;
/// An OPT record without options.
const OPT_LEN: usize = 11;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LookupError {
    #[error("not a valid domain name")]
    BadName,
    #[error("the upstreams failed")]
    Upstreams,
}
