//! The snapshot readers load: sources, families, prefixes, destinations and
//! flags, built from the bookkeeping and published under the generation rule.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;

use super::Engine;
use super::addresses::routable;
use crate::inventory::class::is_global;
use crate::inventory::{Class, Gateway};
use crate::probe::verdicts::{
    DestinationVerdict, Families, Flags, PathVerdict, PrefixVerdict, SourceVerdict, State,
    Verdicts, prefix_of,
};

impl Engine {
    /// A new snapshot when something a reader cares about changed since the
    /// last one (the `engine` module doc,
    /// "Generation rule"); `None` otherwise.
    pub fn publish(&mut self) -> Option<Arc<Verdicts>> {
        if !std::mem::take(&mut self.dirty) {
            return None;
        }
        let old = &self.published;
        let mut v = self.build();
        v.generation = old.generation;
        v.keep_close_rtts(old);
        if v == **old {
            return None;
        }
        // A refreshed or counted-down NAT64 lifetime is published (for
        // `/status`) under the same generation: no reader decides
        // differently.
        if !v.same_but_expiries(old) {
            v.generation += 1;
        }
        self.published = Arc::new(v);
        Some(self.published.clone())
    }

    /// The last published snapshot.
    pub fn verdicts(&self) -> Arc<Verdicts> {
        self.published.clone()
    }

    fn build(&self) -> Verdicts {
        let sources: Vec<SourceVerdict> = (self.sources.iter())
            .map(|(k, s)| {
                let link_scoped = !routable(s.address.class);
                SourceVerdict {
                    address: k.addr,
                    scope_id: k.scope_id,
                    interface: s.address.interface.clone(),
                    class: s.address.class,
                    state: s.health.state,
                    link: if link_scoped {
                        s.health.state
                    } else {
                        s.link.state
                    },
                    rtt: s.rtt,
                    mapped: s.mapped,
                }
            })
            .collect();

        let family = |v4: bool| {
            let states: Vec<State> = (sources.iter())
                .filter(|s| s.address.is_ipv4() == v4 && routable(s.class))
                .map(|s| s.state)
                .collect();
            match states.is_empty() {
                _ if !self.inventory_known => State::Unknown,
                true => State::Failed,
                false => State::any_ok(states),
            }
        };
        let families = Families {
            ipv4: family(true),
            ipv6: family(false),
        };

        let mut by_dest: BTreeMap<IpAddr, Vec<PathVerdict>> = BTreeMap::new();
        for ((k, d), p) in self.paths.iter().filter(|(_, p)| !p.gateway) {
            let pv = PathVerdict {
                source: k.addr,
                scope_id: k.scope_id,
                state: p.health.state,
                rtt: p.rtt,
            };
            by_dest.entry(*d).or_default().push(pv);
        }
        let destinations: Vec<DestinationVerdict> = (by_dest.into_iter())
            .map(|(address, mut paths)| {
                paths.sort_by_key(|p| (p.source, p.scope_id));
                let state = State::any_ok(paths.iter().map(|p| p.state));
                DestinationVerdict {
                    address,
                    learned: self.learned.contains(address),
                    state,
                    paths,
                }
            })
            .collect();

        let mut by_prefix: BTreeMap<IpNet, Vec<State>> = BTreeMap::new();
        // An address inside a NAT64 prefix is an IPv4 destination behind
        // the translator: its /64 is the translator's, shared by all of
        // them, so one dead IPv4 site must not condemn the rest.
        let translated = |a: &IpAddr| crate::probe::nat64::behind(&self.nat64, *a).is_some();
        for d in destinations.iter().filter(|d| !translated(&d.address)) {
            by_prefix
                .entry(prefix_of(d.address))
                .or_default()
                .push(d.state);
        }
        let prefixes = (by_prefix.into_iter())
            .map(|(prefix, states)| PrefixVerdict {
                prefix,
                state: State::any_ok(states),
            })
            .collect();

        let flags = self.flags(&sources);
        let path_mtu = self.path_mtu(&sources);
        Verdicts {
            generation: 0,
            sources,
            families,
            path_mtu,
            prefixes,
            destinations,
            flags,
            nat64_prefixes: self.nat64.clone(),
            nat64: self.known64.list(),
            host: Arc::clone(&self.host),
        }
    }

    fn flags(&self, sources: &[SourceVerdict]) -> Flags {
        let ok = |class: Class| {
            sources
                .iter()
                .any(|s| s.class == class && s.state == State::Ok)
        };
        let exists = |class: Class| sources.iter().any(|s| s.class == class);
        let private4 = |c: Class| matches!(c, Class::Rfc1918 | Class::Cgnat);
        // Some source of a class has an ok path to a global destination.
        let reaches_global = |pick: &dyn Fn(Class) -> bool| {
            (self.paths.iter()).any(|((k, d), p)| {
                p.health.state == State::Ok
                    && is_global(*d)
                    && self.sources.get(k).is_some_and(|s| pick(s.address.class))
            })
        };
        let translated = |v4: bool| {
            sources
                .iter()
                .any(|s| s.address.is_ipv4() == v4 && s.mapped.is_some_and(|m| m.ip() != s.address))
        };
        let tried = |v4: bool, pick: &dyn Fn(Class) -> bool| {
            (self.sources.iter()).any(|(k, s)| {
                k.addr.is_ipv4() == v4
                    && (s.stun_answered || (pick(s.address.class) && s.rounds_done > 0))
            })
        };
        Flags {
            gua_ok: ok(Class::Gua),
            ula_ok: ok(Class::Ula),
            lla_ok: ok(Class::Lla),
            ipv4_ok: sources
                .iter()
                .any(|s| s.address.is_ipv4() && routable(s.class) && s.state == State::Ok),
            nat44: reaches_global(&private4) || translated(true),
            nat44_tried: tried(true, &private4),
            nptv6: reaches_global(&|c| c == Class::Ula) || translated(false),
            nptv6_tried: tried(false, &|c| c == Class::Ula),
            rfc1918: exists(Class::Rfc1918),
            ula_present: exists(Class::Ula),
            def_gateway4: self.gateways4.first().map(gateway_name),
            def_gateway6: self.gateways6.first().map(gateway_name),
        }
    }
}

/// `192.168.1.1`, `2001:db8::1`, or `fe80::1%eth0` (RFC 4007 §11 zone
/// syntax) for a link-local gateway.
fn gateway_name(g: &Gateway) -> String {
    match g.addr {
        IpAddr::V6(a) if a.is_unicast_link_local() || g.scope_id != 0 => {
            format!("{a}%{}", g.interface)
        }
        a => a.to_string(),
    }
}
