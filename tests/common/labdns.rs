//! DNS for the network lab ([`super::lab`]): an authoritative server (Knot)
//! in inet with the lab's zones, optionally a DNS64 resolver (Unbound) in
//! front of it, TCP listeners on the addresses the zones hand out, getapr
//! itself running in the host namespace with a lab-only configuration, and
//! the clients the tests ask through (raw queries parsed with hickory-proto,
//! `kdig`, glibc).
//!
//! ```text
//!  inet: lo 203.0.113.53, 2001:db8:ffff::53   knotd (authoritative, port 53)
//!        lo 2001:db8:ffff::64                 unbound (DNS64 2001:db8:64::/96,
//!                                             everything forwarded to knotd)
//!        lo 203.0.113.80/.82/.91/.92,         services.py: TCP 80 + 443
//!           2001:db8:ffff::80/::81
//!        203.0.113.90                         silently dropped (nft): "dead"
//! ```
//!
//! Zones (Knot, files written to a directory of the lab):
//!
//! | name | records |
//! |---|---|
//! | `dual.lab.example` | A [`DUAL4`], AAAA [`DUAL6`] |
//! | `v6only.lab.example` | AAAA [`V6ONLY6`] |
//! | `v4only.lab.example` | A [`V4ONLY4`] |
//! | `multi.lab.example` | A [`MULTI_DEAD`] (sorts first), [`MULTI_LIVE`] |
//! | `*.wild.lab.example` | A [`DUAL4`], AAAA [`DUAL6`] (fresh names for cache misses) |
//! | `*.v4wild.lab.example` | A [`V4ONLY4`] (fresh IPv4-only names, for DNS64 misses) |
//! | `ipv4only.arpa` | A 192.0.0.170, 192.0.0.171 (RFC 7050) |
//! | `82.113.0.203.in-addr.arpa` | PTR `v4only.lab.example` ([`V4ONLY4`]'s reverse, zone [`REVERSE_ZONE`]) |
//! | `8.b.d.0.1.0.0.2.ip6.arpa` | empty ([`REVERSE6_ZONE`]): NXDOMAIN below it, as resolvers serve it locally (RFC 6303 §4.6), not REFUSED |
//! | `dual.signed.example` | A [`DUAL4`], AAAA [`DUAL6`]; the zone is signed by Knot (ECDSA P-256 CSK, NSEC) |
//! | `v4only.signed.example` | A [`V4ONLY4`], signed (DNS64 must not synthesize for DO, RFC 6147 §5.5) |
//!
//! The SOA minimum is 300 s, so a negative answer straight from Knot says
//! 300: a filtered answer whose SOA says at most 60 was synthesized.
//!
//! Everything here runs as processes in the lab's namespaces: the lab kills
//! them when it drops, and [`LabDns`] removes its directory (a lab left by
//! a killed test is swept by the next lab, like tayga's directory).
//!
//! Needs `knotd` and `kdig` (Debian `knot`, `knot-dnsutils`), `unbound`
//! for DNS64, `getent` (libc-bin), `curl` for the `/status` probe.

use std::ffi::OsStr;
use std::io::{BufRead, BufReader};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::rdata::opt::{EdnsCode, EdnsOption};
use hickory_proto::rr::{RData, Record, RecordType};

use super::client::{QueryBuilder, parse};
use super::lab::{self, Lab, LabChild, Ns};

/// The lab's zone of plain names, and the signed one.
pub const ZONE: &str = "lab.example";
pub const SIGNED_ZONE: &str = "signed.example";
/// The reverse zone of 203.0.113.0/24 (for DNS64's PTR mapping).
pub const REVERSE_ZONE: &str = "113.0.203.in-addr.arpa";
/// The reverse zone of 2001:db8::/32, empty (RFC 6303 §4.6).
pub const REVERSE6_ZONE: &str = "8.b.d.0.1.0.0.2.ip6.arpa";

/// Knot, authoritative for every lab zone, in inet.
pub const KNOT4: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 53);
pub const KNOT6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xffff, 0, 0, 0, 0, 0x53);
/// Unbound with DNS64 ([`LabDns::start_with_dns64`]), in inet.
pub const UNBOUND6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xffff, 0, 0, 0, 0, 0x64);

/// `dual`: both families, both listening on TCP 80 and 443.
pub const DUAL4: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 80);
pub const DUAL6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xffff, 0, 0, 0, 0, 0x80);
/// `v6only`: AAAA only.
pub const V6ONLY6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xffff, 0, 0, 0, 0, 0x81);
/// `v4only`: A only.
pub const V4ONLY4: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 82);
/// `multi`: an address nothing answers (inet drops packets to it without a
/// word, so connects time out) and sorts first in Knot's answer...
pub const MULTI_DEAD: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 90);
/// ...and two that listen.
pub const MULTI_LIVE: [Ipv4Addr; 2] = [
    Ipv4Addr::new(203, 0, 113, 91),
    Ipv4Addr::new(203, 0, 113, 92),
];

/// The SOA minimum (and TTL) of the zones.
pub const SOA_MINIMUM: u32 = 300;

/// `LABEL.lab.example.`
pub fn name(label: &str) -> String {
    format!("{label}.{ZONE}.")
}

/// `LABEL.signed.example.`
pub fn signed_name(label: &str) -> String {
    format!("{label}.{SIGNED_ZONE}.")
}

/// Port 53 of an address.
pub fn dns(ip: impl Into<IpAddr>) -> SocketAddr {
    SocketAddr::new(ip.into(), 53)
}

/// Knot (and Unbound) and the TCP listeners of the zones' addresses,
/// running in a lab's inet. Dropping it stops them and removes their
/// directory; the lab's drop kills them anyway.
#[derive(Debug)]
pub struct LabDns {
    dir: PathBuf,
    knot: Option<LabChild>,
    unbound: Option<LabChild>,
    services: Option<LabChild>,
    service_log: Arc<Mutex<Vec<String>>>,
}

impl LabDns {
    /// Knot with every zone, and the listeners; waits until Knot answers
    /// for each zone (the signed one with its signatures).
    pub fn start(lab: &Lab) -> LabDns {
        let tag = lab
            .ns_name(Ns::Inet)
            .strip_suffix("-inet")
            .expect("inet's name ends in -inet")
            .to_owned();
        let dir = std::env::temp_dir().join(format!("{tag}-labdns"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)
            .unwrap_or_else(|error| panic!("create {}: {error}", dir.display()));
        let mut dns = LabDns {
            dir,
            knot: None,
            unbound: None,
            services: None,
            service_log: Arc::new(Mutex::new(Vec::new())),
        };
        let mut addresses: Vec<String> = vec![
            format!("{KNOT4}/32"),
            format!("{KNOT6}/128"),
            format!("{UNBOUND6}/128"),
            format!("{DUAL4}/32"),
            format!("{DUAL6}/128"),
            format!("{V6ONLY6}/128"),
            format!("{V4ONLY4}/32"),
        ];
        addresses.extend(MULTI_LIVE.iter().map(|ip| format!("{ip}/32")));
        for cidr in &addresses {
            let mut args = vec!["ip", "addr", "add", cidr.as_str(), "dev", "lo"];
            if cidr.contains(':') {
                args.push("nodad");
            }
            lab.run(Ns::Inet, &args);
        }
        // The dead one: not an address of inet, and dropped before routing
        // could answer with an ICMP error.
        lab.nft(
            Ns::Inet,
            &format!(
                "table inet labdns {{
                    chain prerouting {{
                        type filter hook prerouting priority raw; policy accept;
                        ip daddr {MULTI_DEAD} tcp dport 443 counter drop
                        ip daddr {MULTI_DEAD} tcp dport 80 counter drop
                        ip daddr {MULTI_DEAD} counter drop
                    }}
                }}\n"
            ),
        );
        dns.start_services(lab);
        dns.start_knot(lab);
        dns
    }

    /// [`LabDns::start`], plus Unbound on [`UNBOUND6`] doing DNS64 with the
    /// lab's NAT64 prefix ([`lab::NAT64_PREFIX`]) and forwarding every
    /// query to Knot (no root hints: it never looks past the lab).
    pub fn start_with_dns64(lab: &Lab) -> LabDns {
        let mut dns = LabDns::start(lab);
        dns.start_unbound(lab);
        dns
    }

    /// Lines `tcp LOCAL PEER` of the zones' listeners so far.
    pub fn service_log(&self) -> Vec<String> {
        self.service_log
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// How many TCP packets to [`MULTI_DEAD`] inet dropped so far, to port
    /// 443 and to port 80: the probes (and connects) that tried it.
    pub fn dead_packets(&self, lab: &Lab) -> (u64, u64) {
        let table = lab.run(Ns::Inet, &["nft", "list", "table", "inet", "labdns"]);
        let count = |port: u16| {
            table
                .lines()
                .find(|l| l.contains(&format!("tcp dport {port} counter packets ")))
                .and_then(|l| l.split("packets ").nth(1))
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("no counter for port {port} in:\n{table}"))
        };
        (count(443), count(80))
    }

    /// The directory holding the servers' configuration, zones and logs.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Knot's and Unbound's logs, for a failure message.
    pub fn server_logs(&self) -> String {
        let mut out = String::new();
        for file in ["knotd.log", "unbound.log"] {
            if let Ok(text) = std::fs::read_to_string(self.dir.join(file)) {
                out.push_str(&format!("--- {file} ---\n{text}"));
            }
        }
        out
    }

    fn start_services(&mut self, lab: &Lab) {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/lab/services.py");
        let mut args: Vec<String> = vec![
            lab::python().to_string_lossy().into_owned(),
            "-S".into(),
            script.display().to_string(),
        ];
        args.extend(
            [
                IpAddr::from(DUAL4),
                DUAL6.into(),
                V6ONLY6.into(),
                V4ONLY4.into(),
            ]
            .into_iter()
            .chain(MULTI_LIVE.iter().map(|&ip| IpAddr::from(ip)))
            .map(|ip| ip.to_string()),
        );
        args.push("--".into());
        let mut command = lab.command(Ns::Inet, &args);
        // services.py exits when its stdin closes: with this process.
        command.stdin(Stdio::piped()).stdout(Stdio::piped());
        let mut child = LabChild::spawn(&mut command);
        let stdout = child.stdout.take().expect("stdout is piped");
        let log = Arc::clone(&self.service_log);
        let (ready_tx, ready_rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line == "ready" {
                    let _ = ready_tx.send(());
                } else {
                    log.lock().unwrap_or_else(|p| p.into_inner()).push(line);
                }
            }
        });
        self.services = Some(child);
        assert!(
            ready_rx.recv_timeout(Duration::from_secs(10)).is_ok(),
            "the zones' TCP listeners (services.py) did not print \"ready\"; see stderr"
        );
    }

    fn write(&self, file: &str, text: &str) -> PathBuf {
        let path = self.dir.join(file);
        std::fs::write(&path, text)
            .unwrap_or_else(|error| panic!("write {}: {error}", path.display()));
        path
    }

    fn start_knot(&mut self, lab: &Lab) {
        let dir = self.dir.display().to_string();
        let soa = format!(
            "@ SOA ns.{ZONE}. hostmaster.{ZONE}. 1 3600 600 86400 {SOA_MINIMUM}\n\
             @ NS ns.{ZONE}.\n"
        );
        let [live1, live2] = MULTI_LIVE;
        self.write(
            "lab.example.zone",
            &format!(
                "$ORIGIN {ZONE}.\n$TTL {SOA_MINIMUM}\n{soa}\
                 ns A {KNOT4}\nns AAAA {KNOT6}\n\
                 dual A {DUAL4}\ndual AAAA {DUAL6}\n\
                 v6only AAAA {V6ONLY6}\n\
                 v4only A {V4ONLY4}\n\
                 multi A {MULTI_DEAD}\nmulti A {live1}\nmulti A {live2}\n\
                 *.wild A {DUAL4}\n*.wild AAAA {DUAL6}\n\
                 *.v4wild A {V4ONLY4}\n"
            ),
        );
        self.write(
            "ipv4only.arpa.zone",
            &format!(
                "$ORIGIN ipv4only.arpa.\n$TTL {SOA_MINIMUM}\n{soa}\
                 @ A 192.0.0.170\n@ A 192.0.0.171\n"
            ),
        );
        self.write(
            "reverse.zone",
            &format!(
                "$ORIGIN {REVERSE_ZONE}.\n$TTL {SOA_MINIMUM}\n{soa}\
                 {} PTR v4only.{ZONE}.\n",
                V4ONLY4.octets()[3]
            ),
        );
        self.write(
            "reverse6.zone",
            &format!("$ORIGIN {REVERSE6_ZONE}.\n$TTL {SOA_MINIMUM}\n{soa}"),
        );
        self.write(
            "signed.example.zone",
            &format!(
                "$ORIGIN {SIGNED_ZONE}.\n$TTL {SOA_MINIMUM}\n{soa}\
                 dual A {DUAL4}\ndual AAAA {DUAL6}\n\
                 v4only A {V4ONLY4}\n"
            ),
        );
        // knot.conf(5) of Knot 3.2: keys are made by Knot itself when it
        // loads the signed zone (automatic key management, one CSK).
        let conf = self.write(
            "knot.conf",
            &format!(
                "server:\n    rundir: \"{dir}\"\n    listen: [ {KNOT4}@53, {KNOT6}@53 ]\n\
                 \x20   identity: \"\"\n    version: \"\"\n    nsid: \"\"\n\
                 database:\n    storage: \"{dir}\"\n\
                 log:\n  - target: \"{dir}/knotd.log\"\n    any: info\n\
                 policy:\n  - id: lab\n    algorithm: ecdsap256sha256\n\
                 \x20   single-type-signing: on\n    nsec3: off\n\
                 template:\n  - id: default\n    storage: \"{dir}\"\n\
                 \x20   zonefile-sync: -1\n    journal-content: none\n\
                 zone:\n  - domain: {ZONE}\n    file: lab.example.zone\n\
                 \x20 - domain: ipv4only.arpa\n    file: ipv4only.arpa.zone\n\
                 \x20 - domain: {REVERSE_ZONE}\n    file: reverse.zone\n\
                 \x20 - domain: {REVERSE6_ZONE}\n    file: reverse6.zone\n\
                 \x20 - domain: {SIGNED_ZONE}\n    file: signed.example.zone\n\
                 \x20   dnssec-signing: on\n    dnssec-policy: lab\n\
                 \x20   journal-content: changes\n"
            ),
        );
        let conf = conf.display().to_string();
        self.knot = Some(lab.spawn(Ns::Inet, &["knotd", "-c", conf.as_str()]));
        let server = IpAddr::from(KNOT4);
        for (zone, dnssec) in [
            (ZONE, false),
            ("ipv4only.arpa", false),
            (REVERSE_ZONE, false),
            (REVERSE6_ZONE, false),
            (SIGNED_ZONE, true),
        ] {
            self.wait_answer(lab, "knotd", server, &["SOA", zone], |out| {
                out.contains("status: NOERROR")
                    && out.contains("\tSOA\t")
                    && (!dnssec || out.contains("\tRRSIG\tSOA "))
            });
        }
    }

    fn start_unbound(&mut self, lab: &Lab) {
        let dir = self.dir.display().to_string();
        // unbound.conf(5): no chroot, no user switch, no trust anchor, no
        // validator; "." forwarded to Knot, so the root servers are never
        // asked (not even for priming).
        let conf = self.write(
            "unbound.conf",
            &format!(
                "server:\n    username: \"\"\n    chroot: \"\"\n    directory: \"{dir}\"\n\
                 \x20   pidfile: \"{dir}/unbound.pid\"\n    use-syslog: no\n\
                 \x20   logfile: \"{dir}/unbound.log\"\n    verbosity: 1\n\
                 \x20   num-threads: 1\n    interface: {UNBOUND6}\n    port: 53\n\
                 \x20   do-ip4: yes\n    do-ip6: yes\n\
                 \x20   access-control: ::/0 allow\n    access-control: 0.0.0.0/0 allow\n\
                 \x20   module-config: \"dns64 iterator\"\n\
                 \x20   dns64-prefix: {}\n\
                 \x20   do-not-query-localhost: no\n    qname-minimisation: no\n\
                 \x20   prefetch: no\n\
                 remote-control:\n    control-enable: no\n\
                 forward-zone:\n    name: \".\"\n    forward-addr: {KNOT4}\n",
                lab::NAT64_PREFIX
            ),
        );
        let conf = conf.display().to_string();
        self.unbound = Some(lab.spawn(Ns::Inet, &["unbound", "-d", "-c", conf.as_str()]));
        let synthesized = lab::nat64(Ipv4Addr::new(192, 0, 0, 170)).to_string();
        self.wait_answer(
            lab,
            "unbound",
            IpAddr::from(UNBOUND6),
            &["AAAA", "ipv4only.arpa"],
            |out| out.contains(&synthesized),
        );
    }

    /// Polls `kdig @server ARGS` in inet until `done` likes the output, for
    /// up to 10 s; panics with the last output and the servers' logs.
    fn wait_answer(
        &mut self,
        lab: &Lab,
        what: &str,
        server: IpAddr,
        args: &[&str],
        done: impl Fn(&str) -> bool,
    ) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let out = kdig(lab, Ns::Inet, server, &[&["+dnssec"], args].concat());
            if done(&out) {
                return;
            }
            let exited = [&mut self.knot, &mut self.unbound]
                .into_iter()
                .flatten()
                .any(|child| matches!(child.try_wait(), Ok(Some(_))));
            if exited || Instant::now() > deadline {
                panic!(
                    "{what} at {server} does not answer {args:?} as expected{}:\n{out}\n{}",
                    if exited {
                        " (a server exited: is it installed? Debian packages knot, unbound)"
                    } else {
                        " within 10 s"
                    },
                    self.server_logs()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for LabDns {
    fn drop(&mut self) {
        self.unbound = None;
        self.knot = None;
        self.services = None;
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `kdig @server +timeout=2 +retry=0 ARGS...` in `ns`: its output (stdout
/// and stderr), whatever its status.
pub fn kdig(lab: &Lab, ns: Ns, server: IpAddr, args: &[&str]) -> String {
    let mut all = vec![
        "kdig".to_owned(),
        format!("@{server}"),
        "+timeout=2".into(),
        "+retry=0".into(),
    ];
    all.extend(args.iter().map(|a| (*a).to_owned()));
    let out = lab.exec(ns, &all);
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Sends `queries` in turn from `ns` to `server` (tests/lab/dnsquery.py):
/// for each, the reply and the time it took (as Python measured it around
/// the exchange), or `None` when none came within 3 s.
pub fn exchange(
    lab: &Lab,
    ns: Ns,
    server: SocketAddr,
    queries: &[QueryBuilder],
) -> Vec<Option<(Duration, Message)>> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/lab/dnsquery.py");
    let mut args: Vec<String> = vec![
        lab::python().to_string_lossy().into_owned(),
        "-S".into(),
        script.display().to_string(),
        server.ip().to_string(),
        server.port().to_string(),
        "3".into(),
    ];
    args.extend(queries.iter().map(|q| hex(&q.bytes())));
    let out = lab.run(ns, &args);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines.len(),
        queries.len(),
        "dnsquery.py printed {} lines for {} queries:\n{out}",
        lines.len(),
        queries.len()
    );
    lines
        .iter()
        .map(|line| {
            let (micros, reply) = line.split_once(' ')?;
            let micros: u64 = micros.parse().expect("dnsquery.py prints microseconds");
            Some((Duration::from_micros(micros), parse(&unhex(reply))))
        })
        .collect()
}

/// One query from `ns` to `server`; panics when no reply comes.
pub fn ask(lab: &Lab, ns: Ns, server: SocketAddr, query: &QueryBuilder) -> Message {
    exchange(lab, ns, server, std::slice::from_ref(query))
        .pop()
        .flatten()
        .map(|(_, reply)| reply)
        .unwrap_or_else(|| panic!("no reply from {server} to {:?} within 3 s", query.message()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("dnsquery.py prints hex"))
        .collect()
}

/// The A and AAAA addresses of a section, in order.
pub fn addresses(records: &[Record]) -> Vec<IpAddr> {
    records
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(IpAddr::V4(a.0)),
            RData::AAAA(a) => Some(IpAddr::V6(a.0)),
            _ => None,
        })
        .collect()
}

/// The records of `rtype` in a section.
pub fn of_type(records: &[Record], rtype: RecordType) -> Vec<&Record> {
    records
        .iter()
        .filter(|r| r.record_type() == rtype)
        .collect()
}

/// The types the RRSIGs of a section cover (hickory-proto is built
/// without DNSSEC here: an RRSIG is unknown RDATA whose first two bytes are
/// the type covered, RFC 4034 §3.1).
pub fn rrsigs_cover(records: &[Record]) -> Vec<RecordType> {
    records
        .iter()
        .filter_map(|r| match &r.data {
            RData::Unknown { code, rdata } if *code == RecordType::RRSIG => rdata
                .anything
                .get(..2)
                .map(|b| RecordType::from(u16::from_be_bytes([b[0], b[1]]))),
            _ => None,
        })
        .collect()
}

/// The Extended DNS Errors of a reply (RFC 8914): (INFO-CODE, EXTRA-TEXT).
pub fn extended_errors(reply: &Message) -> Vec<(u16, String)> {
    let Some(edns) = &reply.edns else {
        return Vec::new();
    };
    edns.options()
        .get_all(EdnsCode::Unknown(15))
        .into_iter()
        .filter_map(|option| match option {
            EdnsOption::Unknown(15, data) if data.len() >= 2 => Some((
                u16::from_be_bytes([data[0], data[1]]),
                String::from_utf8_lossy(&data[2..]).into_owned(),
            )),
            _ => None,
        })
        .collect()
}

/// What is wrong with `reply` as a filtered answer (NOERROR, no answer
/// record, an SOA with a TTL of at most 60 in the authority section, EDE 17
/// with an EXTRA-TEXT); empty when nothing is.
pub fn filtered_problems(reply: &Message) -> Vec<String> {
    let mut problems = Vec::new();
    if reply.metadata.response_code != ResponseCode::NoError {
        problems.push(format!(
            "rcode is {:?}, expected NOERROR",
            reply.metadata.response_code
        ));
    }
    if !reply.answers.is_empty() {
        problems.push(format!(
            "answer section has {} records ({}), expected none (NODATA)",
            reply.answers.len(),
            reply
                .answers
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ")
        ));
    }
    let soas = of_type(&reply.authorities, RecordType::SOA);
    match soas.first() {
        None => problems.push("no SOA in the authority section (negative caching needs one)".into()),
        Some(soa) if soa.ttl > 60 => problems.push(format!(
            "the SOA's TTL is {} (the zone's own negative answer says {SOA_MINIMUM}), expected a synthesized one of at most 60",
            soa.ttl
        )),
        Some(_) => {}
    }
    let ede = extended_errors(reply);
    match ede.iter().find(|(code, _)| *code == 17) {
        None => problems.push(format!(
            "no Extended DNS Error 17 (Filtered); EDEs: {ede:?}, EDNS: {}",
            if reply.edns.is_some() {
                "present"
            } else {
                "absent"
            }
        )),
        Some((_, text)) if text.trim().is_empty() => {
            problems.push("EDE 17 has no EXTRA-TEXT saying why".into());
        }
        Some(_) => {}
    }
    problems
}

/// A compact one-line view of a reply for logs and messages.
pub fn summary(reply: &Message) -> String {
    let section = |records: &[Record]| {
        records
            .iter()
            .map(|r| format!("{} {} {}", r.name, r.record_type(), r.data))
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!(
        "{:?}; answer [{}]; authority [{}]; EDE {:?}",
        reply.metadata.response_code,
        section(&reply.answers),
        section(&reply.authorities),
        extended_errors(reply)
    )
}

/// What getapr runs with in the lab: lab addresses only, never the
/// embedded default (whose targets and STUN servers are on the Internet).
#[derive(Debug, Clone)]
pub struct GetaprConfig {
    /// `dns.upstreams`: Knot's or Unbound's address.
    pub upstream: IpAddr,
    pub destinations: bool,
    pub break_dnssec: bool,
    /// `http.listen = ["127.0.0.1:PORT"]` when given, else `[]`.
    pub http_port: Option<u16>,
    /// TOML appended to the config as it is (tables of its own, e.g.
    /// `[dns64]`); empty by default.
    pub extra: String,
}

/// Between probe rounds, and per probe.
pub const PROBE_INTERVAL: Duration = Duration::from_millis(1000);
pub const PROBE_TIMEOUT: Duration = Duration::from_millis(500);

impl GetaprConfig {
    pub fn new(upstream: impl Into<IpAddr>) -> GetaprConfig {
        GetaprConfig {
            upstream: upstream.into(),
            destinations: false,
            break_dnssec: false,
            http_port: None,
            extra: String::new(),
        }
    }

    pub fn toml(&self) -> String {
        let http = self
            .http_port
            .map_or_else(String::new, |port| format!("\"127.0.0.1:{port}\""));
        format!(
            "[dns]\nlisten = [\"127.0.0.53:53\"]\nupstreams = [\"{}\"]\ntimeout_ms = 1000\n\
             [http]\nlisten = [{http}]\n\
             [probe]\ninterval_ms = {}\ntimeout_ms = {}\n\
             targets = [\"{}:443\", \"[{}]:443\"]\nstun = []\ndestinations = {}\n\
             [policy]\nfilter = \"auto\"\nbreak_dnssec = {}\n{}",
            self.upstream,
            PROBE_INTERVAL.as_millis(),
            PROBE_TIMEOUT.as_millis(),
            lab::TARGET4,
            lab::TARGET6,
            self.destinations,
            self.break_dnssec,
            self.extra,
        )
    }
}

/// getapr serving in the lab's host namespace, its log lines collected with
/// the instant each arrived.
#[derive(Debug)]
pub struct LabGetapr {
    child: Option<LabChild>,
    lines: Arc<Mutex<Vec<(Instant, String)>>>,
    /// The sidecar's port, when known (for `nat64_prefix_reported`).
    http_port: Option<u16>,
    /// The config file this struct wrote, removed on drop.
    written: Option<PathBuf>,
    started: Instant,
}

impl LabGetapr {
    /// Starts getapr in the host namespace with `config` (its file in the
    /// lab's DNS directory) and waits for it to listen.
    pub fn start(lab: &Lab, dns: &LabDns, config: GetaprConfig) -> LabGetapr {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static N: AtomicUsize = AtomicUsize::new(0);
        let name = format!("getapr-{}", N.fetch_add(1, Ordering::Relaxed));
        let mut daemon = LabGetapr::start_toml(lab, dns, &name, &config.toml());
        daemon.http_port = config.http_port;
        daemon
    }

    /// Starts getapr in the host namespace with the config text `toml`
    /// (written to `NAME.toml` in the lab's DNS directory, removed on drop)
    /// and waits for it to listen.
    pub fn start_toml(lab: &Lab, dns: &LabDns, name: &str, toml: &str) -> LabGetapr {
        let path = dns.dir().join(format!("{name}.toml"));
        std::fs::write(&path, toml)
            .unwrap_or_else(|error| panic!("write {}: {error}", path.display()));
        let mut daemon =
            LabGetapr::start_file(lab, OsStr::new(env!("CARGO_BIN_EXE_getapr")), &path);
        daemon.written = Some(path);
        daemon
    }

    /// Starts `BIN serve -c CONFIG` in the host namespace (any getapr
    /// binary, e.g. an older build to compare with) and waits up to 10 s
    /// for it to listen.
    pub fn start_file(lab: &Lab, bin: &OsStr, config: &Path) -> LabGetapr {
        let mut command = lab.command(Ns::Host, &[bin, OsStr::new("serve"), OsStr::new("-c")]);
        command
            .arg(config)
            .stdin(Stdio::null())
            .stderr(Stdio::piped());
        let started = Instant::now();
        let mut child = LabChild::spawn(&mut command);
        let stderr = child.stderr.take().expect("stderr is piped");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&lines);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push((Instant::now(), line));
            }
        });
        let daemon = LabGetapr {
            child: Some(child),
            lines,
            http_port: None,
            written: None,
            started,
        };
        daemon.wait(started, &["listening", "on"], Duration::from_secs(10));
        daemon
    }

    /// When the process was started.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// Every log line so far.
    pub fn log(&self) -> String {
        self.lines
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(_, l)| l.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The first line after `since` holding every word of `words` (a
    /// trailing `*` matches a word's start), waiting up to `within`; panics
    /// with the log otherwise. Returns when it came, after `since`.
    pub fn wait(&self, since: Instant, words: &[&str], within: Duration) -> (Duration, String) {
        self.try_wait(since, words, within).unwrap_or_else(|| {
            panic!(
                "getapr logged no line with {words:?} within {within:?}; log:\n{}",
                self.log()
            )
        })
    }

    /// As `wait`, but `None` when no such line came within `within`.
    pub fn try_wait(
        &self,
        since: Instant,
        words: &[&str],
        within: Duration,
    ) -> Option<(Duration, String)> {
        let deadline = Instant::now() + within;
        loop {
            let found = self
                .lines
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .find(|(at, line)| *at >= since && words.iter().all(|w| has_word(line, w)))
                .map(|(at, line)| (at.saturating_duration_since(since), line.clone()));
            if found.is_some() || Instant::now() > deadline {
                return found;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The log lines after `since` holding any of `needles`, each with its
    /// time after `since`.
    pub fn lines_since(&self, since: Instant, needles: &[&str]) -> Vec<String> {
        (self.lines.lock().unwrap_or_else(|p| p.into_inner()).iter())
            .filter(|(at, l)| *at >= since && needles.iter().any(|n| l.contains(n)))
            .map(|(at, l)| {
                format!(
                    "+{:.2}s {l}",
                    at.saturating_duration_since(since).as_secs_f64()
                )
            })
            .collect()
    }

    /// Waits until the NAT64 prefix `prefix` is reported, up to `within`:
    /// through `GET /status` (`nat64_prefixes`) when `http.listen` is
    /// configured and the sidecar serves that route, else through the log
    /// line `NAT64 prefixes (RFC 7050): [...]`. Returns which was used and
    /// what it said.
    pub fn nat64_prefix_reported(
        &self,
        lab: &Lab,
        prefix: &str,
        within: Duration,
    ) -> (&'static str, String) {
        let deadline = Instant::now() + within;
        let mut last_status = String::from("no http.listen configured");
        loop {
            if let Some(port) = self.http_port {
                let url = format!("http://127.0.0.1:{port}/status");
                let out = lab.exec(
                    Ns::Host,
                    &[
                        "curl",
                        "-s",
                        "-m",
                        "1",
                        "-w",
                        "\n%{http_code}",
                        url.as_str(),
                    ],
                );
                let text = String::from_utf8_lossy(&out.stdout).into_owned();
                let (body, code) = text.rsplit_once('\n').unwrap_or(("", text.as_str()));
                last_status = format!("GET {url}: HTTP {code}: {body}");
                if code.trim() == "200" {
                    // The sidecar serves /status: it is the evidence now.
                    if let Some(list) = json_array(body, "nat64_prefixes")
                        && list.contains(&format!("\"{prefix}\""))
                    {
                        return ("GET /status", format!("\"nat64_prefixes\": {list}"));
                    }
                    assert!(
                        Instant::now() < deadline,
                        "GET /status never listed {prefix} in nat64_prefixes within {within:?}: {body}\nlog:\n{}",
                        self.log()
                    );
                    std::thread::sleep(Duration::from_millis(100));
                    continue;
                }
                // 000 (nothing listens) or 404 (no such route yet): the log.
            }
            let words = ["NAT64", "prefixes", "(RFC", "7050):"];
            if let Some((_, line)) = self.try_wait(self.started, &words, Duration::ZERO)
                && line.contains(prefix)
            {
                return ("log line (no /status served)", line);
            }
            assert!(
                Instant::now() < deadline,
                "NAT64 prefix {prefix} not reported within {within:?} ({last_status}); log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stops getapr and waits for it to exit, so its port is free.
    pub fn stop(mut self) {
        self.child = None;
    }
}

impl Drop for LabGetapr {
    fn drop(&mut self) {
        self.child = None;
        if let Some(path) = &self.written {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// `"key": [ ... ]` in a JSON text, as the bracketed text (no nesting
/// needed: a list of strings).
fn json_array(body: &str, key: &str) -> Option<String> {
    let at = body.find(&format!("\"{key}\""))?;
    let rest = &body[at..];
    let open = rest.find('[')?;
    let close = rest[open..].find(']')? + open;
    Some(rest[open..=close].to_owned())
}

/// `word` appears as a whole word (so `NAT44` does not match
/// `NAT44_tried`); a trailing `*` matches any word starting with the rest.
pub fn has_word(line: &str, word: &str) -> bool {
    let mut words = line.split(char::is_whitespace);
    match word.strip_suffix('*') {
        Some(prefix) => words.any(|w| w.starts_with(prefix)),
        None => words.any(|w| w == word),
    }
}

/// Fails the test with a clear message unless glibc in the lab resolves
/// through `/etc/resolv.conf` (hosts: files dns): an NSS module such as
/// `resolve` would ask the root namespace's resolver instead.
pub fn assert_glibc_uses_resolv_conf() {
    let nss = std::fs::read_to_string("/etc/nsswitch.conf").unwrap_or_default();
    let hosts = nss
        .lines()
        .find(|l| l.trim_start().starts_with("hosts:"))
        .unwrap_or("hosts: files dns");
    let services: Vec<&str> = hosts
        .split_whitespace()
        .skip(1)
        .filter(|w| !w.starts_with('['))
        .collect();
    assert!(
        services.contains(&"dns")
            && services
                .iter()
                .all(|s| matches!(*s, "files" | "dns" | "myhostname")),
        "the glibc lab tests need `hosts: files dns` in /etc/nsswitch.conf, found `{hosts}`"
    );
}

/// The distinct addresses `getent ahosts NAME` lists in the host
/// namespace, in its order (glibc's getaddrinfo after RFC 6724 sorting).
pub fn getent_ahosts(lab: &Lab, name: &str) -> Vec<IpAddr> {
    let out = lab.exec(Ns::Host, &["getent", "ahosts", name]);
    let mut seen = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        if let Some(ip) = line.split_whitespace().next().and_then(|w| w.parse().ok())
            && !seen.contains(&ip)
        {
            seen.push(ip);
        }
    }
    seen
}

/// What `socket.create_connection((NAME, PORT), timeout=5)` did in the host
/// namespace (name resolution through glibc included in the time).
#[derive(Debug)]
pub struct PyConnect {
    pub connected: bool,
    pub seconds: f64,
    /// The peer connected to, or the error.
    pub detail: String,
}

pub fn python_connect(lab: &Lab, name: &str, port: u16) -> PyConnect {
    let script = "import socket, sys, time\n\
                  t = time.perf_counter()\n\
                  try:\n\
                  \x20   s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5)\n\
                  \x20   print('connected', time.perf_counter() - t, s.getpeername()[0])\n\
                  except Exception as e:\n\
                  \x20   print('error', time.perf_counter() - t, repr(e))\n";
    let port = port.to_string();
    let out = lab.run(
        Ns::Host,
        &[
            lab::python(),
            OsStr::new("-S"),
            OsStr::new("-c"),
            OsStr::new(script),
            OsStr::new(name),
            OsStr::new(&port),
        ],
    );
    let mut words = out.trim().splitn(3, ' ');
    let status = words.next().unwrap_or_default();
    let seconds = words
        .next()
        .and_then(|w| w.parse().ok())
        .unwrap_or(f64::NAN);
    PyConnect {
        connected: status == "connected",
        seconds,
        detail: words.next().unwrap_or_default().to_owned(),
    }
}
