//! Builders the unit tests share: addresses and inventory snapshots, the
//! probe engine's verdicts, and DNS names, records and cache keys as bytes.
//!
//! Each builder fills what a test does not care about with one documented
//! default; a test that needs another value states it with struct update
//! syntax (`Address { ifindex: 1, ..address(s) }`).

use std::net::IpAddr;
use std::time::Duration;

use crate::dns::cache::Key;
use crate::dns::wire::{CLASS_IN, Header, rtype};
use crate::inventory::{Address, Gateway, Snapshot, classify};
use crate::probe::verdicts::{DestinationVerdict, PathVerdict, SourceVerdict, State, Verdicts};

// ---- addresses and the inventory ------------------------------------------

/// An IP address from text; panics on a typo in the test.
pub(crate) fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// The scope id the builders give `addr` on eth0: its index for an IPv6
/// link-local address, none for the rest.
fn eth0_scope(addr: IpAddr) -> u32 {
    match addr {
        IpAddr::V6(a) if a.is_unicast_link_local() => 2,
        _ => 0,
    }
}

/// A usable address as the inventory lists it: on eth0 (ifindex 2), /24 for
/// IPv4 and /64 for IPv6, scope id 2 when link-local, the class `classify`
/// gives, neither deprecated nor temporary.
pub(crate) fn address(s: &str) -> Address {
    let addr = ip(s);
    Address {
        addr,
        prefix_len: if addr.is_ipv4() { 24 } else { 64 },
        interface: "eth0".into(),
        ifindex: 2,
        scope_id: eth0_scope(addr),
        class: classify(addr),
        deprecated: false,
        temporary: false,
    }
}

/// A default gateway on eth0 (ifindex 2), scope id 2 when link-local.
pub(crate) fn gateway(s: &str) -> Gateway {
    let addr = ip(s);
    Gateway {
        addr,
        interface: "eth0".into(),
        ifindex: 2,
        scope_id: eth0_scope(addr),
    }
}

/// A host with these addresses and no default gateway.
pub(crate) fn host(addresses: Vec<Address>) -> Snapshot {
    Snapshot {
        addresses,
        ..Snapshot::default()
    }
}

// ---- verdicts -----------------------------------------------------------

/// The verdict on source `a`: its state and RTT, the link not judged, no
/// mapped address seen.
pub(crate) fn source_verdict(a: &Address, state: State, rtt_ms: Option<u64>) -> SourceVerdict {
    SourceVerdict {
        address: a.addr,
        scope_id: a.scope_id,
        interface: a.interface.clone(),
        class: a.class,
        state,
        link: State::Unknown,
        rtt: rtt_ms.map(Duration::from_millis),
        mapped: None,
    }
}

/// A path from `source` (scope id 0) in `state`, with its RTT.
pub(crate) fn path(source: &str, state: State, rtt_ms: Option<u64>) -> PathVerdict {
    PathVerdict {
        source: ip(source),
        scope_id: 0,
        state,
        rtt: rtt_ms.map(Duration::from_millis),
    }
}

/// The verdict on destination `d`: `learned` from answers (else a
/// configured target), its state and its paths.
pub(crate) fn destination_verdict(
    d: &str,
    learned: bool,
    state: State,
    paths: Vec<PathVerdict>,
) -> DestinationVerdict {
    DestinationVerdict {
        address: ip(d),
        learned,
        state,
        paths,
    }
}

/// Verdicts on these sources and destinations, sorted by key as the
/// lookups of [`Verdicts`] need; everything else at its default.
pub(crate) fn verdicts(
    mut sources: Vec<SourceVerdict>,
    mut destinations: Vec<DestinationVerdict>,
) -> Verdicts {
    sources.sort_by_key(|s| (s.address, s.scope_id));
    destinations.sort_by_key(|d| d.address);
    Verdicts {
        sources,
        destinations,
        ..Verdicts::default()
    }
}

// ---- DNS wire bytes -------------------------------------------------------

/// A name in wire form from dotted text: "www.example.com" is
/// `\x03www\x07example\x03com\x00`, "" is the root. Unchecked beyond the
/// label length, so a test can build names the parsers must refuse.
pub(crate) fn wire_name(dotted: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for label in dotted.split('.').filter(|l| !l.is_empty()) {
        out.push(u8::try_from(label.len()).unwrap());
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
    out
}

/// A message header: `counts` are QD, AN, NS and AR.
pub(crate) fn header(id: u16, flags: u16, counts: [u16; 4]) -> Vec<u8> {
    let mut out = Vec::new();
    Header {
        id,
        flags,
        qdcount: counts[0],
        ancount: counts[1],
        nscount: counts[2],
        arcount: counts[3],
    }
    .write(&mut out);
    out
}

/// A question for `qname`, `qtype`, class IN.
pub(crate) fn question(qname: &str, qtype: u16) -> Vec<u8> {
    let mut q = wire_name(qname);
    q.extend_from_slice(&qtype.to_be_bytes());
    q.extend_from_slice(&CLASS_IN.to_be_bytes());
    q
}

/// A resource record of class IN; `owner` is wire bytes, so it may be a
/// compression pointer.
pub(crate) fn rr(owner: &[u8], record_type: u16, ttl: u32, rdata: &[u8]) -> Vec<u8> {
    let mut out = owner.to_vec();
    out.extend_from_slice(&record_type.to_be_bytes());
    out.extend_from_slice(&CLASS_IN.to_be_bytes());
    out.extend_from_slice(&ttl.to_be_bytes());
    out.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
    out.extend_from_slice(rdata);
    out
}

/// The cache key of an A query in class IN for `name`, DO and CD clear.
pub(crate) fn cache_key(name: &str) -> Key {
    Key::new(&wire_name(name), rtype::A, CLASS_IN, false, false)
}
