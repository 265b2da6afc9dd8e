//! The validated configuration: what the rest of the crate reads, and its
//! defaults (the same as an empty file).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6};
use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;

use super::values::Zone;

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub dns: Dns,
    pub http: Http,
    pub probe: Probe,
    pub policy: Policy,
    pub dns64: Dns64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Dns {
    /// Non-empty, no duplicates. Port 0 is allowed (an ephemeral port, for tests).
    pub listen: Vec<SocketAddr>,
    /// Non-empty; never one of `listen` (a forwarding loop).
    pub upstreams: Vec<Upstream>,
    pub resolv_conf: PathBuf,
    /// Per upstream try.
    pub timeout: Duration,
    /// Entries; 0 = no cache.
    pub cache_size: usize,
    /// Normalised: host bits cleared.
    pub allow: Vec<IpNet>,
    /// Cap on the UDP reply size to EDNS clients.
    pub udp_max_size: u16,
    /// Cap on upstream queries in flight.
    pub max_inflight: usize,
    pub tcp_max_connections: usize,
    /// Threads answering queries, each with its own UDP socket per listen
    /// address (SO_REUSEPORT); read at start only.
    pub workers: usize,
    /// How long past its TTL an answer may still be served when every
    /// upstream fails (RFC 8767); zero = never.
    pub serve_stale: Duration,
    /// How long a name whose resolution failed is answered without asking
    /// the upstreams again (RFC 9520); zero = always ask.
    pub failure_cache: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Upstream {
    /// The nameservers of `dns.resolv_conf`, minus our own listen addresses.
    System,
    /// Port non-zero; a link-local IPv6 address has a zone.
    Addr(Nameserver),
}

/// One resolver: its address and, for an IPv6 address written with a zone
/// by interface name (`fe80::1%eth0`), that name.
///
/// A zone by index (`fe80::1%2`) is the address's scope id. A zone by name
/// stays a name: an interface's index changes when it is re-created
/// (reboots, hotplug, a VPN or Wi-Fi link coming back), its name does not.
/// The upstream pool looks the index up when it is built and again when a
/// send fails; an interface that does not exist makes that upstream fail
/// like an unreachable one. Shown (logs, metrics) as `[fe80::1%eth0]:53`,
/// as a zone by index is (`[fe80::1%2]:53`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Nameserver {
    /// Scope id 0 when `interface` names the zone.
    addr: SocketAddr,
    interface: Option<String>,
}

impl Nameserver {
    /// A zone by name: `addr`'s scope id is dropped for it.
    pub fn on_interface(addr: SocketAddrV6, interface: String) -> Nameserver {
        let addr = SocketAddrV6::new(*addr.ip(), addr.port(), addr.flowinfo(), 0);
        Nameserver {
            addr: SocketAddr::V6(addr),
            interface: Some(interface),
        }
    }

    /// `ip%zone` on `port`, the zone by index (all digits) or by interface
    /// name; the error says why `zone` is neither.
    pub fn zoned(ip: Ipv6Addr, port: u16, zone: &str) -> Result<Nameserver, String> {
        Ok(match super::values::zone_of(zone)? {
            Zone::Index(index) => SocketAddr::V6(SocketAddrV6::new(ip, port, 0, index)).into(),
            Zone::Name(name) => Nameserver::on_interface(SocketAddrV6::new(ip, port, 0, 0), name),
        })
    }

    /// The address; with a zone by name, its scope id is 0 (see
    /// [`Nameserver::with_index`]).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The interface name of a zone by name.
    pub fn interface(&self) -> Option<&str> {
        self.interface.as_deref()
    }

    /// The address to send to when the interface of a zone by name has
    /// `index`.
    pub fn with_index(&self, index: u32) -> SocketAddr {
        match self.addr {
            SocketAddr::V6(v6) if self.interface.is_some() => {
                SocketAddrV6::new(*v6.ip(), v6.port(), v6.flowinfo(), index).into()
            }
            addr => addr,
        }
    }
}

impl From<SocketAddr> for Nameserver {
    fn from(addr: SocketAddr) -> Nameserver {
        Nameserver {
            addr,
            interface: None,
        }
    }
}

impl std::fmt::Display for Nameserver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (&self.interface, self.addr) {
            (Some(name), SocketAddr::V6(v6)) => write!(f, "[{}%{name}]:{}", v6.ip(), v6.port()),
            (_, addr) => addr.fmt(f),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Http {
    /// Empty = sidecar off.
    pub listen: Vec<SocketAddr>,
    /// Clients the sidecar answers at all; others get 403. Host bits
    /// cleared, as in `dns.allow`; empty = nobody.
    pub allow: Vec<IpNet>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Probe {
    pub interval: Duration,
    /// Per probe; less than `interval`.
    pub timeout: Duration,
    pub targets: Vec<SocketAddr>,
    pub stun: Vec<HostPort>,
    pub destinations: bool,
    /// Interfaces whose addresses are probed and used as sources; empty =
    /// all. A trailing `*` matches by prefix (`wan*`).
    pub interfaces: Vec<String>,
    /// Interfaces left out (wins over `interfaces`), e.g. VPN or container
    /// bridges.
    pub exclude_interfaces: Vec<String>,
}

/// A STUN server. `host` is a DNS name or an IP literal (IPv6 without
/// brackets), so `host.parse::<IpAddr>()` tells which; `port` is non-zero.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPort {
    pub host: String,
    pub port: u16,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub filter: Filter,
    pub break_dnssec: bool,
    /// The RFC 6724 policy table `/pairs` sorts with.
    pub table: crate::policy::Table,
    /// RFC 8305 §4 "First Address Family Count" of `/pairs` (1..=16).
    pub first_family_count: usize,
    /// How much slower (RTT) than the other family's pair a pair of
    /// `/pairs` must be to go after it despite RFC 6724 precedence.
    pub rtt_margin: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filter {
    Off,
    Auto,
}

/// DNS64 in the stub (RFC 6147) and the NAT64 prefixes it may use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dns64 {
    pub synthesize: Synthesize,
    /// NAT64 prefixes known without discovery, for networks that announce
    /// none (RA PREF64, RFC 7050). Each of an RFC 6052 length (32, 40, 48,
    /// 56, 64, 96), host bits clear, bits 64–71 zero; no duplicates.
    pub prefixes: Vec<ipnet::Ipv6Net>,
}

/// When the stub synthesizes AAAA records from A records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Synthesize {
    /// Only when the host has no working IPv4 and a NAT64 prefix is known
    /// and its IPv6 works.
    Auto,
    /// Whenever a NAT64 prefix is known.
    On,
    Off,
}

impl Default for Config {
    /// The same as an empty file, and as `config/getapr.toml`.
    fn default() -> Config {
        let v4 = |a, b, c, d, port| SocketAddr::from((Ipv4Addr::new(a, b, c, d), port));
        Config {
            dns: Dns {
                listen: vec![v4(127, 0, 0, 53, 53)],
                upstreams: vec![Upstream::System],
                resolv_conf: PathBuf::from("/etc/resolv.conf"),
                timeout: Duration::from_millis(2000),
                cache_size: 10_000,
                allow: vec![
                    IpNet::new_assert(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 0)), 8),
                    IpNet::new_assert(IpAddr::V6(Ipv6Addr::LOCALHOST), 128),
                ],
                udp_max_size: 1232,
                max_inflight: 1024,
                tcp_max_connections: 256,
                workers: 1,
                serve_stale: Duration::from_secs(86_400),
                failure_cache: Duration::from_secs(5),
            },
            http: Http {
                listen: vec![
                    v4(127, 0, 0, 1, 80),
                    SocketAddr::from((Ipv6Addr::LOCALHOST, 80)),
                ],
                // Like `dns.allow`: this host's own clients only.
                allow: vec![
                    IpNet::new_assert(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 0)), 8),
                    IpNet::new_assert(IpAddr::V6(Ipv6Addr::LOCALHOST), 128),
                ],
            },
            probe: Probe {
                interval: Duration::from_millis(15_000),
                timeout: Duration::from_millis(1000),
                targets: vec![
                    v4(1, 1, 1, 1, 443),
                    SocketAddr::from((
                        Ipv6Addr::new(0x2606, 0x4700, 0x4700, 0, 0, 0, 0, 0x1111),
                        443,
                    )),
                ],
                stun: vec![HostPort {
                    host: "stun.l.google.com".to_owned(),
                    port: 19302,
                }],
                destinations: true,
                interfaces: Vec::new(),
                exclude_interfaces: Vec::new(),
            },
            policy: Policy {
                filter: Filter::Auto,
                break_dnssec: false,
                table: crate::policy::Table::Rfc6724,
                first_family_count: 1,
                rtt_margin: crate::policy::DEFAULT_RTT_MARGIN,
            },
            dns64: Dns64 {
                synthesize: Synthesize::Auto,
                prefixes: Vec::new(),
            },
        }
    }
}
