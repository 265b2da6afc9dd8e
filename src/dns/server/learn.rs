//! Learning: the addresses of fresh answers handed to the probe engine,
//! marked by whether the name asked was a public one.

use std::net::IpAddr;

use super::Shared;
use crate::dns::cache::Key;
use crate::dns::wire::{self, Reply};
use crate::probe::driver::Input;

impl Shared {
    /// Hands the addresses of a fresh A/AAAA answer to the probe engine.
    /// Never waits: when the engine is behind, addresses are dropped (they
    /// come again with the next miss). Cache hits do not learn, so the hot
    /// path stays free of parsing.
    pub(super) fn learn(&self, key: &Key, reply: &Reply) {
        if key.qtype() != wire::rtype::A && key.qtype() != wire::rtype::AAAA {
            return;
        }
        let Some(tx) = self.probe_inputs.load_full() else {
            return;
        };
        let public_name = is_public_name(key.qname());
        for addr in reply.addresses() {
            if tx.try_send(Input::Learn { addr, public_name }).is_err() {
                return;
            }
        }
    }

    /// Hands the addresses `/pairs` resolved for `name` to the probe engine,
    /// as a client's answer would be: an application asked for them, so the
    /// RTTs of their paths are worth measuring, and worth measuring again
    /// while it keeps asking (at most once per probe interval). Otherwise a
    /// path measured once would rank `/pairs` with an RTT as old as the
    /// last client's cache miss.
    pub fn learn_resolved(&self, name: &str, addrs: &[IpAddr]) {
        let mut wire_name = Vec::with_capacity(name.len() + 2);
        if wire::write_name(&name.to_ascii_lowercase(), &mut wire_name).is_none() {
            return;
        }
        let Some(tx) = self.probe_inputs.load_full() else {
            return;
        };
        let public_name = is_public_name(&wire_name);
        for &addr in addrs {
            if tx.try_send(Input::Learn { addr, public_name }).is_err() {
                return;
            }
        }
    }
}

/// Whether a (wire-format, lower-cased) name is a public one: not a single
/// label and not under a name reserved for local use (RFC 6761 `local`,
/// `localhost`, `test`, `invalid`; RFC 8375 `home.arpa`; ICANN's
/// `internal`; the common `lan` and `localdomain`), nor a reverse name.
pub fn is_public_name(wire_name: &[u8]) -> bool {
    let mut labels = Vec::new();
    let mut rest = wire_name;
    while let Some((&len, tail)) = rest.split_first() {
        if len == 0 || usize::from(len) > tail.len() {
            break;
        }
        labels.push(&tail[..usize::from(len)]);
        rest = &tail[usize::from(len)..];
    }
    let tld = labels.last().copied().unwrap_or_default();
    let second = labels
        .len()
        .checked_sub(2)
        .map(|i| labels[i])
        .unwrap_or_default();
    labels.len() >= 2
        && !matches!(
            tld,
            b"local" | b"localhost" | b"test" | b"invalid" | b"internal" | b"lan" | b"localdomain"
        )
        && !(tld == b"arpa" && matches!(second, b"home" | b"in-addr" | b"ip6"))
}
