//! The host's interfaces, addresses and default gateways.

use std::net::IpAddr;

pub mod class;
pub mod netlink;
pub mod procfs;

pub use class::{classify, classify_v4, classify_v6};

/// What an address is, by the IANA special-purpose registries (bit masks,
/// never string prefixes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Class {
    /// IPv6 global unicast (2000::/3 minus special blocks; 2001:db8::/32 counts as global).
    Gua,
    /// IPv6 unique local, fc00::/7.
    Ula,
    /// IPv6 link-local, fe80::/10.
    Lla,
    /// IPv4 private, RFC 1918.
    Rfc1918,
    /// IPv4 shared address space, 100.64.0.0/10 (RFC 6598).
    Cgnat,
    /// IPv4 global.
    Global4,
    /// IPv4 link-local, 169.254.0.0/16.
    LinkLocal4,
    Other,
}

impl Class {
    /// The name used in `/status` (`gua`, `ula`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Class::Gua => "gua",
            Class::Ula => "ula",
            Class::Lla => "lla",
            Class::Rfc1918 => "rfc1918",
            Class::Cgnat => "cgnat",
            Class::Global4 => "global4",
            Class::LinkLocal4 => "linklocal4",
            Class::Other => "other",
        }
    }
}

/// One usable source address of the host.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Address {
    pub addr: IpAddr,
    pub prefix_len: u8,
    pub interface: String,
    pub ifindex: u32,
    /// Non-zero only for link-local addresses (the interface index).
    pub scope_id: u32,
    pub class: Class,
    /// IPv6 flags; deprecated and temporary addresses are kept (flagged),
    /// tentative and DAD-failed ones are left out of the snapshot.
    pub deprecated: bool,
    pub temporary: bool,
}

/// A default route's next hop.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Gateway {
    pub addr: IpAddr,
    pub interface: String,
    pub ifindex: u32,
    /// Interface index for a link-local IPv6 gateway, else 0.
    pub scope_id: u32,
}

/// Everything the probe engine and the policy need to know about the host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub addresses: Vec<Address>,
    pub gateways4: Vec<Gateway>,
    pub gateways6: Vec<Gateway>,
}
