//! A network lab in namespaces, for the tests that need real routing: a
//! host behind a home router doing NAT44, and an "Internet" holding a TCP
//! probe target and a STUN responder. Everything is driven by `ip` and `nft`
//! and lives on documentation addresses; nothing touches the root namespace
//! (veth pairs are created straight inside the lab's namespaces) and nothing
//! in the lab has a route out of it.
//!
//! ```text
//!                 LAN                          WAN
//!  host ─────────────────────── router ─────────────────── inet
//!  eth0  192.168.1.2/24       lan0 192.168.1.1/24     to-router 198.51.100.1/24
//!        2001:db8:1::2/64          2001:db8:1::1/64             2001:db8:ff::1/64
//!        (fd00:1::2/64 with        (fd00:1::1/64)     lo 203.0.113.10, 2001:db8:ffff::10
//!         ula_nptv6)          wan0 198.51.100.2/24       TCP 80 + 443 (probe target)
//!                                  2001:db8:ff::2/64  lo 203.0.113.20, 2001:db8:ffff::20
//!                                                        STUN on UDP 3478
//! ```
//!
//! Routing: the host's defaults go via the router (IPv6 via the router's
//! link-local address on `eth0`, as in real networks); the router's via inet.
//! The router masquerades 192.168.1.0/24 out of `wan0` (NAT44), so inet
//! knows only 198.51.100.0/24; IPv6 is plain routed (inet has a route to
//! 2001:db8:1::/64 via the router). inet has no default route: whatever
//! leaves the lab's prefixes dies there.
//!
//! Variants ([`Builder`]):
//! - [`Builder::ula_nptv6`]: the host has only the ULA fd00:1::2/64 and the
//!   router translates fd00:1::/64 ↔ 2001:db8:1::/64 (nftables prefix NAT,
//!   which keeps the interface identifier like NPTv6, RFC 6296).
//! - [`Builder::second_uplink`]: a second router (`router2`, IPv6 only,
//!   2001:db8:2::/64 on the LAN, WAN 2001:db8:fe::/64 to inet) on the same
//!   LAN, which becomes a bridge in a `lan` namespace. The host gets
//!   2001:db8:2::2/64 too and source-specific defaults:
//!   `default via ROUTER_LLA dev eth0` (for unbound sockets),
//!   `default from 2001:db8:1::/64 via ROUTER_LLA`,
//!   `default from 2001:db8:2::/64 via ROUTER2_LLA`. An unbound socket
//!   gets the kernel's RFC 6724 choice of source (the two prefixes tie up
//!   to rule 8; 2001:db8:2::2 was seen), and the route that matches it:
//!   bind to choose the uplink.
//! - [`Builder::without_ipv4`]: no IPv4 on the LAN (an IPv6-only host, for
//!   NAT64 labs; the router keeps its IPv4 WAN).
//! - [`Builder::nat64`]: tayga in the router translates 2001:db8:64::/96
//!   (a network-specific prefix, RFC 6052) to IPv4 from 192.168.255.0/24,
//!   masqueraded out of `wan0` like the LAN; [`nat64`] embeds an IPv4
//!   address. With `without_ipv4()` this is an IPv6-only host behind NAT64;
//!   the DNS64 is the test's business.
//! - [`Builder::without_services`]: no `tests/lab/services.py` in inet.
//!
//! Toggles: [`Lab::drop_ipv6_forwarding`] / [`Lab::drop_ipv4_forwarding`]
//! make the router silently drop (blackhole, no ICMP) forwarded packets of a
//! family; [`Lab::drop_forwarding`] does it on any router.
//!
//! Router advertisements: [`Lab::send_pref64_ras`] makes a router advertise
//! NAT64 prefixes (PREF64, RFC 8781) on the LAN every few seconds
//! (`tests/lab/ra.py`; Debian's radvd has no PREF64) until the returned
//! [`RaSender`] drops. Their router lifetime is 0, so the host adds no
//! default route from them and the lab's static routes stay as they are.
//! [`Lab::watch_nd_user_options`] shows what the host's kernel passes up
//! of them (RTM_NEWNDUSEROPT, `tests/lab/nduseropt.py`).
//!
//! Namespaces are named `getapr-PID-N-ROLE`, deleted (after killing what
//! still runs in them) when the [`Lab`] drops, which unwinding from a panic
//! does too; a lab left behind by a killed test process is removed by the
//! next [`Lab`] built on the machine. Servers for a lab must run as
//! processes inside it ([`Lab::spawn`]): an in-process server of the test
//! lives in the root namespace, which the lab cannot reach. To run Rust
//! code of the test inside the lab, re-run the test binary there, as
//! `tests/inventory_netns.rs` does:
//! `lab.command(Ns::Host, &[std::env::current_exe()?, "--exact", NAME])`
//! with an environment variable telling the child what to do.
//!
//! Needs root, `ip` (iproute2), `nft` (nftables), `sysctl` (procps),
//! `python3`, and `tayga` for NAT64; tests call [`root_or_skip`] first.

use std::collections::HashSet;
use std::ffi::OsStr;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Write as _};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, Once, OnceLock};
use std::time::{Duration, Instant};

/// The host on the LAN.
pub const HOST4: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 2);
pub const HOST6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 2);
/// The host's address with [`Builder::ula_nptv6`] (instead of [`HOST6`]).
pub const HOST_ULA: Ipv6Addr = Ipv6Addr::new(0xfd00, 1, 0, 0, 0, 0, 0, 2);
/// The host's address from the second uplink ([`Builder::second_uplink`]).
pub const HOST6_2: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 2, 0, 0, 0, 0, 2);
pub const LAN4: &str = "192.168.1.0/24";
pub const LAN6: &str = "2001:db8:1::/64";
pub const LAN_ULA: &str = "fd00:1::/64";
pub const LAN6_2: &str = "2001:db8:2::/64";

/// The router's LAN side (the IPv6 default gateway is its link-local,
/// [`Lab::router_link_local`]).
pub const ROUTER_LAN4: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 1);
pub const ROUTER_LAN6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 1);
pub const ROUTER_ULA: Ipv6Addr = Ipv6Addr::new(0xfd00, 1, 0, 0, 0, 0, 0, 1);
pub const ROUTER2_LAN6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 2, 0, 0, 0, 0, 1);

/// The router's WAN side: what NAT44 maps the host to.
pub const ROUTER_WAN4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);
pub const ROUTER_WAN6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xff, 0, 0, 0, 0, 2);
pub const INET_WAN4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
pub const INET_WAN6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xff, 0, 0, 0, 0, 1);
pub const ROUTER2_WAN6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xfe, 0, 0, 0, 0, 2);
pub const INET_WAN2_6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xfe, 0, 0, 0, 0, 1);

/// The probe target in inet: TCP ports 80 and 443 accept and close.
pub const TARGET4: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);
pub const TARGET6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xffff, 0, 0, 0, 0, 0x10);
/// The STUN server in inet, on UDP [`STUN_PORT`].
pub const STUN4: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 20);
pub const STUN6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xffff, 0, 0, 0, 0, 0x20);
pub const STUN_PORT: u16 = 3478;

/// The NAT64 prefix of [`Builder::nat64`]: a network-specific prefix
/// (RFC 6052 §2.2) inside the documentation range.
pub const NAT64_PREFIX: &str = "2001:db8:64::/96";
/// Tayga's IPv4 pool in the router, masqueraded out of `wan0`.
pub const NAT64_POOL: &str = "192.168.255.0/24";

/// `v4` embedded in [`NAT64_PREFIX`] (RFC 6052 §2.2, a /96): what a DNS64
/// would synthesize for it.
pub fn nat64(v4: Ipv4Addr) -> Ipv6Addr {
    let [a, b, c, d] = v4.octets();
    Ipv6Addr::new(
        0x2001,
        0xdb8,
        0x64,
        0,
        0,
        0,
        u16::from_be_bytes([a, b]),
        u16::from_be_bytes([c, d]),
    )
}

/// A namespace of the lab.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Ns {
    Host,
    Router,
    Inet,
    /// Only with [`Builder::second_uplink`].
    Router2,
    /// The LAN bridge; only with [`Builder::second_uplink`].
    Lan,
}

impl Ns {
    fn role(self) -> &'static str {
        match self {
            Ns::Host => "host",
            Ns::Router => "router",
            Ns::Inet => "inet",
            Ns::Router2 => "router2",
            Ns::Lan => "lan",
        }
    }
}

/// An address family, for the forwarding toggles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    V4,
    V6,
}

/// What a TCP connect from inside the lab gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Connect {
    Connected,
    /// An RST: the destination is reachable.
    Refused,
    TimedOut,
    /// Anything else (unreachable, no route...), with Python's message.
    Failed(String),
}

/// True when running as root; otherwise prints a loud `SKIPPED` line
/// naming `test` and returns false, or panics when `GETAPR_NETNS_REQUIRED=1`
/// (as `tests/inventory_netns.rs` does). The lab tests start with
/// `if !lab::root_or_skip("...") { return; }`.
pub fn root_or_skip(test: &str) -> bool {
    static ROOT: OnceLock<bool> = OnceLock::new();
    let root = *ROOT.get_or_init(|| {
        Command::new("id")
            .arg("-u")
            .output()
            .map(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
            .unwrap_or(false)
    });
    if !root && std::env::var("GETAPR_NETNS_REQUIRED").is_ok_and(|v| v == "1") {
        panic!("{test} needs root (network namespaces) and GETAPR_NETNS_REQUIRED=1");
    }
    if !root {
        // Straight to the stderr handle, not `eprintln!`: libtest captures
        // the macro's output of a passing test, and a skip must be seen.
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED: {test} needs root (network namespaces)"
        );
    }
    root
}

/// The options of a lab; [`Lab::new`] is `Lab::builder().build()`.
#[derive(Debug, Clone)]
pub struct Builder {
    ipv4: bool,
    ula_nptv6: bool,
    second_uplink: bool,
    nat64: bool,
    services: bool,
}

impl Builder {
    /// The host has only the ULA [`HOST_ULA`] on IPv6, and the router does
    /// prefix translation fd00:1::/64 ↔ 2001:db8:1::/64.
    pub fn ula_nptv6(mut self) -> Self {
        self.ula_nptv6 = true;
        self
    }

    /// A second IPv6-only router on the same LAN with 2001:db8:2::/64 and
    /// source-specific default routes on the host.
    pub fn second_uplink(mut self) -> Self {
        self.second_uplink = true;
        self
    }

    /// No IPv4 on the LAN: an IPv6-only host.
    pub fn without_ipv4(mut self) -> Self {
        self.ipv4 = false;
        self
    }

    /// A NAT64 in the router: tayga translates [`NAT64_PREFIX`] to IPv4
    /// from [`NAT64_POOL`], which the router masquerades like the LAN.
    /// Usually with [`Builder::without_ipv4`]. Needs `tayga`.
    pub fn nat64(mut self) -> Self {
        self.nat64 = true;
        self
    }

    /// Do not start `tests/lab/services.py` in inet.
    pub fn without_services(mut self) -> Self {
        self.services = false;
        self
    }

    /// Builds the lab; panics with the failing command and its stderr.
    /// Whatever was built before a failure is torn down by the panic.
    pub fn build(self) -> Lab {
        remove_stale_labs();
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let mut lab = Lab {
            tag: format!("getapr-{}-{n}", std::process::id()),
            options: self,
            created: Vec::new(),
            link_locals: Vec::new(),
            resolv_dirs: Mutex::new(Vec::new()),
            drops: Mutex::new(HashSet::new()),
            services: None,
            tayga: None,
            service_log: Arc::new(Mutex::new(Vec::new())),
        };
        lab.create();
        lab
    }
}

/// A lab of network namespaces, torn down on drop. See the module doc.
#[derive(Debug)]
pub struct Lab {
    /// `getapr-PID-N`; a namespace is `TAG-ROLE`.
    tag: String,
    options: Builder,
    /// The namespaces created so far, in order.
    created: Vec<Ns>,
    /// The LAN link-local address of each router.
    link_locals: Vec<(Ns, Ipv6Addr)>,
    /// `/etc/netns/NAME` directories this lab created.
    resolv_dirs: Mutex<Vec<PathBuf>>,
    /// (router, family) pairs whose forwarding is dropped.
    drops: Mutex<HashSet<(Ns, Family)>>,
    services: Option<LabChild>,
    /// Tayga, and the directory with its config and data.
    tayga: Option<(LabChild, PathBuf)>,
    service_log: Arc<Mutex<Vec<String>>>,
}

impl Lab {
    /// The dual-stack lab with its services running.
    pub fn new() -> Lab {
        Lab::builder().build()
    }

    pub fn builder() -> Builder {
        Builder {
            ipv4: true,
            ula_nptv6: false,
            second_uplink: false,
            nat64: false,
            services: true,
        }
    }

    /// The namespace's name, for `ip netns exec NAME ...` and
    /// `/etc/netns/NAME`.
    pub fn ns_name(&self, ns: Ns) -> String {
        format!("{}-{}", self.tag, ns.role())
    }

    /// The names of every namespace this lab created.
    pub fn ns_names(&self) -> Vec<String> {
        self.created.iter().map(|&ns| self.ns_name(ns)).collect()
    }

    /// The host's IPv6 address on the first uplink: [`HOST6`], or
    /// [`HOST_ULA`] with [`Builder::ula_nptv6`].
    pub fn host6(&self) -> Ipv6Addr {
        if self.options.ula_nptv6 {
            HOST_ULA
        } else {
            HOST6
        }
    }

    /// The router's link-local address on the LAN: the host's IPv6 default
    /// gateway (on `eth0`).
    pub fn router_link_local(&self) -> Ipv6Addr {
        self.link_local(Ns::Router)
    }

    /// Router2's link-local address on the LAN ([`Builder::second_uplink`]).
    pub fn router2_link_local(&self) -> Ipv6Addr {
        self.link_local(Ns::Router2)
    }

    /// Runs `args` in `ns` (`ip netns exec NAME args...`) and returns what
    /// it gave, whatever its exit status.
    pub fn exec<S: AsRef<OsStr>>(&self, ns: Ns, args: &[S]) -> Output {
        let mut command = self.command(ns, args);
        command
            .output()
            .unwrap_or_else(|error| panic!("{}: {error}", command_line(&command)))
    }

    /// Like [`Lab::exec`], panicking with the command line and its stderr
    /// unless it succeeds; returns its stdout.
    pub fn run<S: AsRef<OsStr>>(&self, ns: Ns, args: &[S]) -> String {
        checked(&mut self.command(ns, args), None)
    }

    /// A command that runs `args` in `ns`, for the caller to configure
    /// (stdio, environment) and start with [`LabChild::spawn`] or run.
    pub fn command<S: AsRef<OsStr>>(&self, ns: Ns, args: &[S]) -> Command {
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec"])
            .arg(self.ns_name(ns))
            .args(args);
        command
    }

    /// Starts `args` in `ns` with stdin closed and stdout/stderr inherited;
    /// the process is killed when the returned guard drops (and anything
    /// still running in the lab is killed when the lab drops).
    pub fn spawn<S: AsRef<OsStr>>(&self, ns: Ns, args: &[S]) -> LabChild {
        LabChild::spawn(self.command(ns, args).stdin(Stdio::null()))
    }

    /// Applies an nft script (`nft -f -`) in `ns`.
    pub fn nft(&self, ns: Ns, script: &str) {
        checked(&mut self.command(ns, &["nft", "-f", "-"]), Some(script));
    }

    /// Writes `/etc/netns/NAME/resolv.conf`, which `ip netns exec` mounts
    /// over `/etc/resolv.conf` for the processes it starts in `ns`; it is
    /// removed when the lab drops.
    pub fn write_netns_resolv_conf(&self, ns: Ns, text: &str) {
        let dir = Path::new("/etc/netns").join(self.ns_name(ns));
        std::fs::create_dir_all(&dir)
            .unwrap_or_else(|error| panic!("create {}: {error}", dir.display()));
        let mut dirs = lock(&self.resolv_dirs);
        if !dirs.contains(&dir) {
            dirs.push(dir.clone());
        }
        drop(dirs);
        let mut text = text.to_owned();
        if !text.ends_with('\n') {
            text.push('\n');
        }
        let file = dir.join("resolv.conf");
        std::fs::write(&file, text)
            .unwrap_or_else(|error| panic!("write {}: {error}", file.display()));
    }

    /// Makes the router silently drop (no ICMP: a blackhole) every
    /// forwarded IPv6 packet, or stops doing so.
    pub fn drop_ipv6_forwarding(&self, drop: bool) {
        self.drop_forwarding(Ns::Router, Family::V6, drop);
    }

    /// Makes the router silently drop every forwarded IPv4 packet, or stops.
    pub fn drop_ipv4_forwarding(&self, drop: bool) {
        self.drop_forwarding(Ns::Router, Family::V4, drop);
    }

    /// Drops (or not) forwarded packets of `family` in `router`
    /// ([`Ns::Router`] or [`Ns::Router2`]). Rewrites the router's forward
    /// chain in one nft transaction.
    pub fn drop_forwarding(&self, router: Ns, family: Family, drop: bool) {
        assert!(
            matches!(router, Ns::Router | Ns::Router2) && self.created.contains(&router),
            "drop_forwarding: {router:?} is not a router of this lab"
        );
        let mut drops = lock(&self.drops);
        if drop {
            drops.insert((router, family));
        } else {
            drops.remove(&(router, family));
        }
        let mut script = String::from("flush chain inet lab forward\n");
        for (nfproto, family) in [("ipv4", Family::V4), ("ipv6", Family::V6)] {
            if drops.contains(&(router, family)) {
                writeln!(
                    script,
                    "add rule inet lab forward meta nfproto {nfproto} drop"
                )
                .expect("write to String");
            }
        }
        self.nft(router, &script);
    }

    /// TCP connect from `ns` to `dst`, bound to `src` first when given.
    pub fn tcp_connect(
        &self,
        ns: Ns,
        dst: SocketAddr,
        src: Option<IpAddr>,
        timeout: Duration,
    ) -> Connect {
        match self.client(ns, "connect", dst, src, timeout).as_str() {
            "connected" => Connect::Connected,
            "refused" => Connect::Refused,
            "timeout" => Connect::TimedOut,
            other => Connect::Failed(other.to_owned()),
        }
    }

    /// A STUN Binding request from `ns` to `server`, bound to `src` first
    /// when given: the XOR-MAPPED-ADDRESS, or why there is none.
    pub fn stun(
        &self,
        ns: Ns,
        server: SocketAddr,
        src: Option<IpAddr>,
        timeout: Duration,
    ) -> Result<SocketAddr, String> {
        let answer = self.client(ns, "stun", server, src, timeout);
        let mut words = answer.split(' ');
        match (words.next(), words.next(), words.next()) {
            (Some("mapped"), Some(ip), Some(port)) => {
                let ip: IpAddr = ip.parse().map_err(|_| answer.clone())?;
                let port: u16 = port.parse().map_err(|_| answer.clone())?;
                Ok(SocketAddr::new(ip, port))
            }
            _ => Err(answer),
        }
    }

    /// Every line the services printed so far: `tcp LOCAL PEER` for each
    /// accepted connection, `stun LOCAL PEER` for each Binding request.
    pub fn service_log(&self) -> Vec<String> {
        lock(&self.service_log).clone()
    }

    /// Waits up to `timeout` for a service line containing `needle`.
    pub fn wait_service_line(&self, needle: &str, timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(line) = lock(&self.service_log)
                .iter()
                .find(|line| line.contains(needle))
            {
                return Some(line.clone());
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.services = None;
        if let Some((tayga, dir)) = self.tayga.take() {
            drop(tayga);
            let _ = std::fs::remove_dir_all(dir);
        }
        for &ns in self.created.iter().rev() {
            remove_ns(&self.ns_name(ns));
        }
        for dir in lock(&self.resolv_dirs).drain(..) {
            remove_netns_etc(&dir);
        }
    }
}

// Building.
impl Lab {
    fn create(&mut self) {
        let options = self.options.clone();
        let mut namespaces = vec![Ns::Host, Ns::Router, Ns::Inet];
        if options.second_uplink {
            namespaces.extend([Ns::Lan, Ns::Router2]);
        }
        for ns in namespaces {
            checked(
                Command::new("ip").args(["netns", "add", &self.ns_name(ns)]),
                None,
            );
            self.created.push(ns);
            // Addresses are usable at once: no duplicate address detection,
            // for the link-locals too (they inherit `default`).
            self.run(
                ns,
                &[
                    "sysctl",
                    "-qw",
                    "net.ipv6.conf.all.accept_dad=0",
                    "net.ipv6.conf.default.accept_dad=0",
                ],
            );
            self.ip(ns, "link set lo up");
        }

        self.links();
        self.addresses();
        let mut veths = vec![
            (Ns::Host, "eth0"),
            (Ns::Router, "lan0"),
            (Ns::Router, "wan0"),
            (Ns::Inet, "to-router"),
        ];
        if options.second_uplink {
            veths.extend([
                (Ns::Router2, "lan0"),
                (Ns::Router2, "wan0"),
                (Ns::Inet, "to-router2"),
            ]);
        }
        for &(ns, dev) in &veths {
            self.ip(ns, &format!("link set {dev} up"));
        }
        // A packet sent before a link is ready is lost (its qdisc is still
        // noop, the peer has no IPv6 yet), and the first exchange through
        // it then waits out a 1 s neighbour discovery retransmission.
        for &(ns, dev) in &veths {
            let lla = self.wait_ready(ns, dev);
            if dev == "lan0" {
                self.link_locals.push((ns, lla));
            }
        }
        for router in [Ns::Router, Ns::Router2] {
            if self.created.contains(&router) {
                self.run(
                    router,
                    &[
                        "sysctl",
                        "-qw",
                        "net.ipv4.ip_forward=1",
                        "net.ipv6.conf.all.forwarding=1",
                    ],
                );
            }
        }
        self.routes();
        self.firewall();
        if options.nat64 {
            self.start_tayga();
        }
        if options.services {
            self.start_services();
        }
    }

    /// veth pairs, created inside the namespaces (never in the root one).
    fn links(&self) {
        if self.options.second_uplink {
            // Two routers on one LAN: a bridge, in a namespace of its own
            // so that no router's nftables sees the other's traffic.
            let lan = self.ns_name(Ns::Lan);
            self.ip(Ns::Lan, "link add br0 type bridge mcast_snooping 0");
            self.ip(Ns::Lan, "link set br0 up");
            for (ns, dev, port) in [
                (Ns::Host, "eth0", "host"),
                (Ns::Router, "lan0", "router"),
                (Ns::Router2, "lan0", "router2"),
            ] {
                self.ip(
                    ns,
                    &format!("link add {dev} type veth peer name {port} netns {lan}"),
                );
                self.ip(Ns::Lan, &format!("link set {port} master br0 up"));
            }
        } else {
            let router = self.ns_name(Ns::Router);
            self.ip(
                Ns::Host,
                &format!("link add eth0 type veth peer name lan0 netns {router}"),
            );
        }
        let inet = self.ns_name(Ns::Inet);
        self.ip(
            Ns::Router,
            &format!("link add wan0 type veth peer name to-router netns {inet}"),
        );
        if self.options.second_uplink {
            self.ip(
                Ns::Router2,
                &format!("link add wan0 type veth peer name to-router2 netns {inet}"),
            );
        }
    }

    fn addresses(&self) {
        let options = &self.options;
        let (host6, router6) = if options.ula_nptv6 {
            (HOST_ULA, ROUTER_ULA)
        } else {
            (HOST6, ROUTER_LAN6)
        };
        let mut plan: Vec<(Ns, &str, String)> = vec![
            (Ns::Host, "eth0", format!("{host6}/64")),
            (Ns::Router, "lan0", format!("{router6}/64")),
            (Ns::Router, "wan0", format!("{ROUTER_WAN4}/24")),
            (Ns::Router, "wan0", format!("{ROUTER_WAN6}/64")),
            (Ns::Inet, "to-router", format!("{INET_WAN4}/24")),
            (Ns::Inet, "to-router", format!("{INET_WAN6}/64")),
            (Ns::Inet, "lo", format!("{TARGET4}/32")),
            (Ns::Inet, "lo", format!("{TARGET6}/128")),
            (Ns::Inet, "lo", format!("{STUN4}/32")),
            (Ns::Inet, "lo", format!("{STUN6}/128")),
        ];
        if options.ipv4 {
            plan.push((Ns::Host, "eth0", format!("{HOST4}/24")));
            plan.push((Ns::Router, "lan0", format!("{ROUTER_LAN4}/24")));
        }
        if options.second_uplink {
            plan.push((Ns::Host, "eth0", format!("{HOST6_2}/64")));
            plan.push((Ns::Router2, "lan0", format!("{ROUTER2_LAN6}/64")));
            plan.push((Ns::Router2, "wan0", format!("{ROUTER2_WAN6}/64")));
            plan.push((Ns::Inet, "to-router2", format!("{INET_WAN2_6}/64")));
        }
        for (ns, dev, cidr) in &plan {
            let nodad = if cidr.contains(':') { " nodad" } else { "" };
            self.ip(*ns, &format!("addr add {cidr} dev {dev}{nodad}"));
        }
    }

    fn routes(&self) {
        let router_lla = self.router_link_local();
        if self.options.ipv4 {
            self.ip(Ns::Host, &format!("-4 route add default via {ROUTER_LAN4}"));
        }
        self.ip(
            Ns::Host,
            &format!("-6 route add default via {router_lla} dev eth0"),
        );
        self.ip(Ns::Router, &format!("-4 route add default via {INET_WAN4}"));
        self.ip(Ns::Router, &format!("-6 route add default via {INET_WAN6}"));
        // No NAT44 return route: inet knows only 198.51.100.0/24.
        self.ip(Ns::Inet, &format!("-6 route add {LAN6} via {ROUTER_WAN6}"));
        if self.options.second_uplink {
            let router2_lla = self.router2_link_local();
            let lan1 = if self.options.ula_nptv6 {
                LAN_ULA
            } else {
                LAN6
            };
            self.ip(
                Ns::Host,
                &format!("-6 route add default from {lan1} via {router_lla} dev eth0"),
            );
            self.ip(
                Ns::Host,
                &format!("-6 route add default from {LAN6_2} via {router2_lla} dev eth0"),
            );
            self.ip(
                Ns::Router2,
                &format!("-6 route add default via {INET_WAN2_6}"),
            );
            self.ip(
                Ns::Inet,
                &format!("-6 route add {LAN6_2} via {ROUTER2_WAN6}"),
            );
        }
    }

    /// The routers' nftables: an empty forward chain for the drop toggles,
    /// NAT44, and the NPTv6 prefix translation when asked for.
    fn firewall(&self) {
        let nptv6 = if self.options.ula_nptv6 {
            (
                format!("oifname \"wan0\" ip6 saddr {LAN_ULA} snat ip6 prefix to {LAN6}"),
                format!("iifname \"wan0\" ip6 daddr {LAN6} dnat ip6 prefix to {LAN_ULA}"),
            )
        } else {
            Default::default()
        };
        self.nft(
            Ns::Router,
            &format!(
                "table inet lab {{
                    chain forward {{
                        type filter hook forward priority filter; policy accept;
                    }}
                    chain postrouting {{
                        type nat hook postrouting priority srcnat; policy accept;
                        oifname \"wan0\" ip saddr {LAN4} masquerade
                        oifname \"wan0\" ip saddr {NAT64_POOL} masquerade
                        {}
                    }}
                    chain prerouting {{
                        type nat hook prerouting priority dstnat; policy accept;
                        {}
                    }}
                }}\n",
                nptv6.0, nptv6.1
            ),
        );
        if self.options.second_uplink {
            self.nft(
                Ns::Router2,
                "table inet lab {
                    chain forward {
                        type filter hook forward priority filter; policy accept;
                    }
                }\n",
            );
        }
    }

    /// Starts tayga in the router on a tun device of its own (not
    /// `--mktun`: that device would outlive tayga, and could be moved to
    /// the root namespace when the router's is deleted), then routes the
    /// prefix and the pool to it.
    fn start_tayga(&mut self) {
        let dir = std::env::temp_dir().join(format!("{}-tayga", self.tag));
        std::fs::create_dir_all(&dir)
            .unwrap_or_else(|error| panic!("create {}: {error}", dir.display()));
        let conf = dir.join("tayga.conf");
        let tayga4 = NAT64_POOL.replace(".0/24", ".1");
        std::fs::write(
            &conf,
            format!(
                "tun-device nat64\nipv4-addr {tayga4}\nprefix {NAT64_PREFIX}\n\
                 dynamic-pool {NAT64_POOL}\ndata-dir {}\n",
                dir.display()
            ),
        )
        .unwrap_or_else(|error| panic!("write {}: {error}", conf.display()));
        let child = self.spawn(
            Ns::Router,
            &[
                OsStr::new("tayga"),
                OsStr::new("--nodetach"),
                OsStr::new("--config"),
                conf.as_os_str(),
            ],
        );
        self.tayga = Some((child, dir));
        let deadline = Instant::now() + Duration::from_secs(5);
        while !self
            .exec(Ns::Router, &["ip", "link", "show", "dev", "nat64"])
            .status
            .success()
        {
            let tayga = &mut self.tayga.as_mut().expect("just set").0.0;
            if let Ok(Some(status)) = tayga.try_wait() {
                panic!("tayga exited ({status}; is it installed? see its stderr above)");
            }
            assert!(Instant::now() < deadline, "tayga made no nat64 device");
            std::thread::sleep(Duration::from_millis(10));
        }
        self.ip(Ns::Router, "link set nat64 up");
        self.ip(Ns::Router, &format!("route add {NAT64_POOL} dev nat64"));
        self.ip(Ns::Router, &format!("route add {NAT64_PREFIX} dev nat64"));
    }

    /// Starts `tests/lab/services.py` in inet and waits for its "ready".
    fn start_services(&mut self) {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/lab/services.py");
        let mut command = self.command(
            Ns::Inet,
            &[
                python(),
                OsStr::new("-S"),
                script.as_os_str(),
                OsStr::new(&TARGET4.to_string()),
                OsStr::new(&TARGET6.to_string()),
                OsStr::new("--"),
                OsStr::new(&STUN4.to_string()),
                OsStr::new(&STUN6.to_string()),
            ],
        );
        // The child's stdin stays open in `LabChild` and closes with the
        // test process: services.py exits then, even after a SIGKILL.
        command.stdin(Stdio::piped()).stdout(Stdio::piped());
        let mut child = LabChild::spawn(&mut command);
        let stdout = child.0.stdout.take().expect("stdout is piped");
        let log = Arc::clone(&self.service_log);
        let (ready_tx, ready_rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if line == "ready" {
                    let _ = ready_tx.send(());
                } else {
                    lock(&log).push(line);
                }
            }
        });
        self.services = Some(child);
        if ready_rx.recv_timeout(Duration::from_secs(10)).is_err() {
            panic!(
                "{} did not print \"ready\" (see its stderr above)",
                command_line(&command)
            );
        }
    }

    /// `ip -n NAME ARGS` (ARGS split on spaces), checked.
    fn ip(&self, ns: Ns, args: &str) {
        checked(
            Command::new("ip")
                .args(["-n", &self.ns_name(ns)])
                .args(args.split_whitespace()),
            None,
        );
    }

    fn link_local(&self, router: Ns) -> Ipv6Addr {
        self.link_locals
            .iter()
            .find(|(ns, _)| *ns == router)
            .map(|(_, lla)| *lla)
            .unwrap_or_else(|| panic!("{router:?} is not in this lab"))
    }

    /// Waits until `dev` is operationally up and has its link-local
    /// address, which the kernel adds once the link is ready; returns it.
    fn wait_ready(&self, ns: Ns, dev: &str) -> Ipv6Addr {
        let name = self.ns_name(ns);
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let link = checked(
                Command::new("ip").args(["-n", &name, "-o", "link", "show", "dev", dev]),
                None,
            );
            let addrs = checked(
                Command::new("ip").args([
                    "-n", &name, "-6", "-o", "addr", "show", "dev", dev, "scope", "link",
                ]),
                None,
            );
            // "3: lan0    inet6 fe80::.../64 scope link ..."
            let lla = addrs
                .split_whitespace()
                .skip_while(|word| *word != "inet6")
                .nth(1)
                .and_then(|cidr| cidr.split('/').next())
                .and_then(|addr| addr.parse().ok());
            match lla {
                Some(lla) if link.contains(" state UP ") => return lla,
                _ => {}
            }
            assert!(
                Instant::now() < deadline,
                "{dev} in {name} is not ready after 5 s:\n{link}{addrs}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn client(
        &self,
        ns: Ns,
        what: &str,
        dst: SocketAddr,
        src: Option<IpAddr>,
        timeout: Duration,
    ) -> String {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/lab/client.py");
        let src = src.map_or_else(|| "-".to_owned(), |ip| ip.to_string());
        let out = self.run(
            ns,
            &[
                python(),
                OsStr::new("-S"),
                script.as_os_str(),
                OsStr::new(what),
                OsStr::new(&dst.ip().to_string()),
                OsStr::new(&dst.port().to_string()),
                OsStr::new(&src),
                OsStr::new(&timeout.as_secs_f64().to_string()),
            ],
        );
        out.trim().to_owned()
    }
}

/// How a router advertises NAT64 prefixes ([`Lab::send_pref64_ras`]).
#[derive(Debug, Clone)]
pub struct Pref64Ras {
    /// The prefixes, one PREF64 option each (lengths 32, 40, 48, 56, 64,
    /// 96).
    pub prefixes: Vec<String>,
    /// The option's lifetime, in seconds (rounded up to 8 s units; 0
    /// withdraws the prefixes).
    pub lifetime_s: u32,
    /// Between two RAs.
    pub interval: Duration,
}

impl Pref64Ras {
    /// `prefix` with `lifetime_s`, an RA every `interval`.
    pub fn new(prefix: &str, lifetime_s: u32, interval: Duration) -> Pref64Ras {
        Pref64Ras {
            prefixes: vec![prefix.to_owned()],
            lifetime_s,
            interval,
        }
    }
}

/// `tests/lab/ra.py` sending RAs from a router; stopping it (or dropping
/// it) stops the RAs.
#[derive(Debug)]
pub struct RaSender {
    child: Option<LabChild>,
    /// When each RA went out (as this process read ra.py's line about it).
    sent: Arc<Mutex<Vec<Instant>>>,
    pub options: Pref64Ras,
}

impl RaSender {
    /// When each RA so far went out.
    pub fn sent(&self) -> Vec<Instant> {
        lock(&self.sent).clone()
    }

    /// When the first RA went out.
    pub fn first_sent(&self) -> Instant {
        *lock(&self.sent)
            .first()
            .expect("send_pref64_ras waits for the first RA")
    }

    /// When the last RA so far went out.
    pub fn last_sent(&self) -> Instant {
        *lock(&self.sent)
            .last()
            .expect("send_pref64_ras waits for the first RA")
    }

    /// Stops the RAs (kills ra.py and waits for it); returns when the last
    /// one went out.
    pub fn stop(&mut self) -> Instant {
        self.child = None;
        self.last_sent()
    }
}

impl Lab {
    /// Starts RAs with PREF64 options from `router`'s LAN interface to
    /// ff02::1 (see `tests/lab/ra.py`), after making sure the host accepts
    /// RAs on `eth0` (accept_ra=1; the host does not forward), and waits
    /// for the first one to go out.
    pub fn send_pref64_ras(&self, router: Ns, options: Pref64Ras) -> RaSender {
        assert!(
            matches!(router, Ns::Router | Ns::Router2) && self.created.contains(&router),
            "send_pref64_ras: {router:?} is not a router of this lab"
        );
        self.run(
            Ns::Host,
            &[
                "sysctl",
                "-qw",
                "net.ipv6.conf.all.forwarding=0",
                "net.ipv6.conf.eth0.accept_ra=1",
            ],
        );
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/lab/ra.py");
        let mut args: Vec<String> = vec![
            python().to_string_lossy().into_owned(),
            "-S".into(),
            script.display().to_string(),
            "--interface".into(),
            "lan0".into(),
            "--lifetime".into(),
            options.lifetime_s.to_string(),
            "--interval".into(),
            options.interval.as_secs_f64().to_string(),
        ];
        for prefix in &options.prefixes {
            args.extend(["--prefix".into(), prefix.clone()]);
        }
        let mut command = self.command(router, &args);
        // ra.py exits when its stdin closes: with this process.
        command.stdin(Stdio::piped()).stdout(Stdio::piped());
        let mut child = LabChild::spawn(&mut command);
        let stdout = child.0.stdout.take().expect("stdout is piped");
        let sent = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&sent);
        let (first_tx, first_rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.starts_with("sent ") {
                    lock(&sink).push(Instant::now());
                    let _ = first_tx.send(());
                }
            }
        });
        if first_rx.recv_timeout(Duration::from_secs(10)).is_err() {
            panic!(
                "{} sent no RA within 10 s (see its stderr above)",
                command_line(&command)
            );
        }
        RaSender {
            child: Some(child),
            sent,
            options,
        }
    }

    /// Watches the ND user options `ns`'s kernel passes up (rtnetlink
    /// RTM_NEWNDUSEROPT) for up to `within`, calling `during` once the
    /// watch is subscribed; returns the lines of `tests/lab/nduseropt.py`:
    /// `pref64 IFINDEX ROUTER PREFIX/LEN LIFETIME_S` for each PREF64
    /// option, `other IFINDEX TYPE` for other options. It stops after the
    /// first message with a PREF64 option.
    pub fn watch_nd_user_options(
        &self,
        ns: Ns,
        within: Duration,
        during: impl FnOnce(),
    ) -> Vec<String> {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/lab/nduseropt.py");
        let mut command = self.command(
            ns,
            &[
                python(),
                OsStr::new("-S"),
                script.as_os_str(),
                OsStr::new(&within.as_secs_f64().to_string()),
            ],
        );
        command.stdin(Stdio::null()).stdout(Stdio::piped());
        let mut child = LabChild::spawn(&mut command);
        let mut stdout = BufReader::new(child.0.stdout.take().expect("stdout is piped"));
        let mut line = String::new();
        let _ = stdout.read_line(&mut line);
        assert_eq!(
            line.trim(),
            "ready",
            "{} did not subscribe (see its stderr above)",
            command_line(&command)
        );
        during();
        let lines: Vec<String> = stdout.lines().map_while(Result::ok).collect();
        let _ = child.0.wait();
        lines
    }
}

/// A process started in a lab, killed (and reaped) when this drops.
#[derive(Debug)]
pub struct LabChild(pub Child);

impl LabChild {
    /// Spawns `command` (e.g. from [`Lab::command`]); panics with its
    /// command line when it cannot start.
    pub fn spawn(command: &mut Command) -> LabChild {
        let child = command
            .spawn()
            .unwrap_or_else(|error| panic!("{}: {error}", command_line(command)));
        LabChild(child)
    }
}

impl std::ops::Deref for LabChild {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for LabChild {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for LabChild {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs `command` (with `stdin` fed to it when given) and returns its
/// stdout; panics with the command line and its stderr when it fails.
fn checked(command: &mut Command, stdin: Option<&str>) -> String {
    command
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command
        .spawn()
        .unwrap_or_else(|error| panic!("{}: {error}", command_line(command)));
    if let Some(text) = stdin {
        let mut pipe = child.stdin.take().expect("stdin is piped");
        pipe.write_all(text.as_bytes())
            .unwrap_or_else(|error| panic!("{}: stdin: {error}", command_line(command)));
    }
    let out = child
        .wait_with_output()
        .unwrap_or_else(|error| panic!("{}: {error}", command_line(command)));
    if !out.status.success() {
        panic!(
            "`{}` failed ({}):\n{}{}",
            command_line(command),
            out.status,
            String::from_utf8_lossy(&out.stderr),
            stdin.map_or_else(String::new, |text| format!("stdin was:\n{text}")),
        );
    }
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The Python 3 interpreter itself, not a wrapper around it (pyenv's shim
/// costs 100 ms a start): `sys.executable`, found once.
pub fn python() -> &'static OsStr {
    static PYTHON: OnceLock<String> = OnceLock::new();
    OsStr::new(PYTHON.get_or_init(|| {
        Command::new("python3")
            .args(["-c", "import sys; print(sys.executable)"])
            .output()
            .ok()
            .filter(|out| out.status.success())
            .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_owned())
            .filter(|path| !path.is_empty())
            .unwrap_or_else(|| "python3".to_owned())
    }))
}

fn command_line(command: &Command) -> String {
    let mut line = command.get_program().to_string_lossy().into_owned();
    for arg in command.get_args() {
        line.push(' ');
        line.push_str(&arg.to_string_lossy());
    }
    line
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A test that panicked while holding the lock must not stop teardown.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Kills what still runs in namespace `name` and deletes it. Reports
/// failures on stderr: this runs in `Drop`, maybe while unwinding.
fn remove_ns(name: &str) {
    if let Ok(out) = Command::new("ip").args(["netns", "pids", name]).output() {
        for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            let _ = Command::new("kill").args(["-KILL", pid]).output();
        }
    }
    match Command::new("ip").args(["netns", "delete", name]).output() {
        Ok(out) if out.status.success() => {}
        Ok(out) => eprintln!(
            "lab: ip netns delete {name}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ),
        Err(error) => eprintln!("lab: ip netns delete {name}: {error}"),
    }
}

fn remove_netns_etc(dir: &Path) {
    let _ = std::fs::remove_file(dir.join("resolv.conf"));
    if let Err(error) = std::fs::remove_dir(dir) {
        eprintln!("lab: remove {}: {error}", dir.display());
    }
}

/// Removes the namespaces, `/etc/netns` entries and tayga (and labdns)
/// directories of labs whose test process is gone (killed before its
/// `Drop` ran), once per process.
fn remove_stale_labs() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if let Ok(out) = Command::new("ip").args(["netns", "list"]).output() {
            for line in String::from_utf8_lossy(&out.stdout).lines() {
                let Some(name) = line.split_whitespace().next() else {
                    continue;
                };
                let Some(pid) = stale(name, &["host", "router", "inet", "router2", "lan"]) else {
                    continue;
                };
                eprintln!("lab: removing {name}, left by process {pid}");
                remove_ns(name);
                let etc = Path::new("/etc/netns").join(name);
                if etc.exists() {
                    remove_netns_etc(&etc);
                }
            }
        }
        let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            // `labdns`: the servers' directories of `common::labdns`.
            if stale(&name.to_string_lossy(), &["tayga", "labdns"]).is_some() {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    });
}

/// The pid in `name` when it is `getapr-PID-N-ROLE` with one of `roles`
/// and that process no longer exists.
fn stale(name: &str, roles: &[&str]) -> Option<u32> {
    let parts: Vec<&str> = name.split('-').collect();
    let [prefix, pid, n, role] = parts[..] else {
        return None;
    };
    let pid: u32 = pid.parse().ok()?;
    let alive = Path::new("/proc").join(pid.to_string()).exists();
    (prefix == "getapr" && n.parse::<u32>().is_ok() && roles.contains(&role) && !alive)
        .then_some(pid)
}
