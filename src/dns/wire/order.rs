//! The in-place orderings of a [`Reply`]: A/AAAA records within their
//! RRset, and the addresses within each SVCB/HTTPS hint.

use std::net::IpAddr;
use std::ops::Range;

use super::name::name_lower;
use super::reply::address;
use super::svcb::{hint_addresses, svcb_hints};
use super::{CLASS_IN, Record, Reply, Section, rtype};

impl Reply {
    /// Stable-sorts the A and AAAA records of each answer RRset in place by
    /// `rank(address, position in the upstream's order)`, swapping TTL+RDATA
    /// slots: these records carry no names, so no compression pointer moves.
    /// Returns whether the order changed.
    pub fn reorder_addresses<K: Ord>(&mut self, mut rank: impl FnMut(IpAddr, usize) -> K) -> bool {
        let groups = self.address_groups();
        let mut changed = false;
        for group in groups {
            let mut keyed: Vec<(K, usize)> = group
                .iter()
                .enumerate()
                .filter_map(|(i, r)| Some((rank(address(self.bytes(), r)?, i), i)))
                .collect();
            if keyed.len() != group.len() {
                continue;
            }
            keyed.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(&b.1)));
            if keyed.iter().enumerate().all(|(pos, (_, i))| pos == *i) {
                continue;
            }
            let slots: Vec<Vec<u8>> = group
                .iter()
                .map(|r| {
                    self.bytes()
                        .get(r.ttl_at..r.rdata.end)
                        .unwrap_or(&[])
                        .to_vec()
                })
                .collect();
            for (pos, (_, from)) in keyed.iter().enumerate() {
                let dst = &group[pos];
                if let Some(d) = self.body_mut().get_mut(dst.ttl_at..dst.rdata.end)
                    && d.len() == slots[*from].len()
                {
                    d.copy_from_slice(&slots[*from]);
                    changed = true;
                }
            }
        }
        changed
    }

    /// Stable-sorts the addresses inside every `ipv4hint` and `ipv6hint` of
    /// the answer's SVCB/HTTPS records by `rank(address, position)`, in
    /// place (a hint is a list of fixed-size addresses). Returns whether
    /// anything moved.
    pub fn reorder_hints<K: Ord>(&mut self, mut rank: impl FnMut(IpAddr, usize) -> K) -> bool {
        let hints: Vec<(u16, Range<usize>)> = self
            .message()
            .records
            .iter()
            .filter(|r| r.section == Section::Answer)
            .flat_map(|r| svcb_hints(self.bytes(), r))
            .collect();
        let mut changed = false;
        for (key, range) in hints {
            let Some(value) = self.body_mut().get_mut(range) else {
                continue;
            };
            let addrs = hint_addresses(key, value);
            let mut keyed: Vec<(K, usize)> = (addrs.iter().enumerate())
                .map(|(i, &a)| (rank(a, i), i))
                .collect();
            keyed.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(&b.1)));
            if keyed.iter().enumerate().all(|(pos, (_, i))| pos == *i) {
                continue;
            }
            let size = value.len() / addrs.len().max(1);
            let old = value.to_vec();
            for (pos, (_, from)) in keyed.iter().enumerate() {
                value[pos * size..(pos + 1) * size]
                    .copy_from_slice(&old[from * size..(from + 1) * size]);
            }
            changed = true;
        }
        changed
    }

    /// Answer-section A records grouped by owner name, then AAAA likewise.
    fn address_groups(&self) -> Vec<Vec<Record>> {
        let msg = self.message();
        let mut groups: Vec<(Vec<u8>, u16, Vec<Record>)> = Vec::new();
        for r in msg.records.iter().filter(|r| {
            r.section == Section::Answer
                && r.class == CLASS_IN
                && (r.rtype == rtype::A || r.rtype == rtype::AAAA)
        }) {
            let Some(owner) = name_lower(self.bytes(), r.name) else {
                continue;
            };
            match groups
                .iter_mut()
                .find(|(o, t, _)| *t == r.rtype && *o == owner)
            {
                Some((_, _, g)) => g.push(r.clone()),
                None => groups.push((owner, r.rtype, vec![r.clone()])),
            }
        }
        groups
            .into_iter()
            .map(|(_, _, g)| g)
            .filter(|g| g.len() > 1)
            .collect()
    }
}
