//! [`AuthUpstream`]: an authoritative server for `example.test.`
//! (hickory-server with an in-memory zone) on `127.0.0.1:<port>`, UDP and
//! TCP on the same port, counting the queries it receives per transport.
//!
//! hickory-server truncates UDP replies itself: it encodes records until the
//! client's EDNS payload size (512 without EDNS) is reached and sets TC
//! (`MessageResponse::encode`, hickory-server 0.26); `tests/harness.rs`
//! checks that this holds for [`BIG`].

use std::collections::BTreeMap;
use std::future::Future;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use hickory_proto::rr::rdata::{A, AAAA, CNAME, NS, SOA, TXT};
use hickory_proto::rr::{Name, RData, Record, RecordSet, RrKey};
use hickory_server::Server;
use hickory_server::net::runtime::Time;
use hickory_server::net::xfer::Protocol;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::store::in_memory::InMemoryZoneHandler;
use hickory_server::zone_handler::{AxfrPolicy, Catalog, ZoneType};
use tokio::net::{TcpListener, UdpSocket};

use super::fake::Transport;

pub const ZONE: &str = "example.test.";
/// SOA MINIMUM (RFC 2308 §4: the negative-caching TTL).
pub const SOA_MINIMUM: u32 = 60;
/// TTL of the SOA record itself.
pub const SOA_TTL: u32 = 3600;
/// TTL of every other record in the zone.
pub const TTL: u32 = 300;

/// 3 A + 3 AAAA.
pub const DUAL: &str = "dual.example.test.";
pub const DUAL_V4: [Ipv4Addr; 3] = [
    Ipv4Addr::new(192, 0, 2, 1),
    Ipv4Addr::new(192, 0, 2, 2),
    Ipv4Addr::new(192, 0, 2, 3),
];
pub const DUAL_V6: [Ipv6Addr; 3] = [
    Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1),
    Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2),
    Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 3),
];
/// CNAME → [`CHAIN`] → CNAME → [`DUAL`].
pub const ALIAS: &str = "alias.example.test.";
pub const CHAIN: &str = "chain.example.test.";
/// One AAAA, no A.
pub const V6ONLY: &str = "v6only.example.test.";
pub const V6ONLY_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 6);
/// Only a TXT record, so A and AAAA are NODATA.
pub const NODATA: &str = "nodata.example.test.";
/// Not in the zone: NXDOMAIN.
pub const MISSING: &str = "missing.example.test.";
/// TXT RRset of about 2.4 kB: TC over UDP (payload 1232), whole over TCP.
pub const BIG: &str = "big.example.test.";
pub const BIG_TXT_COUNT: usize = 32;
/// TXT RRset of about 700 bytes: fits 1232 bytes but not 512.
pub const MEDIUM: &str = "medium.example.test.";
pub const MEDIUM_TXT_COUNT: usize = 10;
/// The zone's name server (NS at the apex, with an A record).
pub const NS_NAME: &str = "ns.example.test.";

/// An authoritative upstream for [`ZONE`]; stops when dropped.
pub struct AuthUpstream {
    addr: SocketAddr,
    udp: Arc<AtomicUsize>,
    tcp: Arc<AtomicUsize>,
    _server: Server<Counting>,
}

impl std::fmt::Debug for AuthUpstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthUpstream")
            .field("addr", &self.addr)
            .field("udp", &self.udp)
            .field("tcp", &self.tcp)
            .finish()
    }
}

impl AuthUpstream {
    pub async fn start() -> Self {
        let (udp_socket, tcp_listener) = bind_pair().await;
        let addr = udp_socket.local_addr().expect("local addr");

        let mut catalog = Catalog::new();
        catalog.upsert(name(ZONE).into(), vec![Arc::new(zone())]);
        let udp = Arc::new(AtomicUsize::new(0));
        let tcp = Arc::new(AtomicUsize::new(0));
        let mut server = Server::new(Counting {
            catalog,
            udp: udp.clone(),
            tcp: tcp.clone(),
        });
        server.register_socket(udp_socket);
        server.register_listener(tcp_listener, Duration::from_secs(10), 64);
        Self {
            addr,
            udp,
            tcp,
            _server: server,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Queries received so far over `transport`.
    pub fn queries(&self, transport: Transport) -> usize {
        match transport {
            Transport::Udp => self.udp.load(Ordering::SeqCst),
            Transport::Tcp => self.tcp.load(Ordering::SeqCst),
        }
    }

    /// Queries received so far over UDP and TCP.
    pub fn total_queries(&self) -> usize {
        self.queries(Transport::Udp) + self.queries(Transport::Tcp)
    }
}

/// A UDP socket and a TCP listener on the same free port of 127.0.0.1.
pub async fn bind_pair() -> (UdpSocket, TcpListener) {
    for _ in 0..50 {
        let udp = UdpSocket::bind("127.0.0.1:0").await.expect("bind UDP");
        let addr = udp.local_addr().expect("local addr");
        if let Ok(tcp) = TcpListener::bind(addr).await {
            return (udp, tcp);
        }
    }
    panic!("no port of 127.0.0.1 free for both UDP and TCP after 50 tries");
}

pub fn name(text: &str) -> Name {
    Name::from_ascii(text).unwrap_or_else(|error| panic!("bad name {text}: {error}"))
}

/// The `i`-th TXT string of [`BIG`] (and [`MEDIUM`]): 60 characters.
pub fn big_txt(i: usize) -> String {
    format!("{i:02}-{}", "x".repeat(57))
}

fn zone() -> InMemoryZoneHandler {
    let soa = SOA::new(
        name(NS_NAME),
        name("hostmaster.example.test."),
        2_024_010_101,
        3600,
        600,
        86_400,
        SOA_MINIMUM,
    );
    let mut records: Vec<Record> = vec![
        Record::from_rdata(name(ZONE), SOA_TTL, RData::SOA(soa)),
        Record::from_rdata(name(ZONE), TTL, RData::NS(NS(name(NS_NAME)))),
        Record::from_rdata(name(NS_NAME), TTL, RData::A(A::new(192, 0, 2, 53))),
        Record::from_rdata(name(ALIAS), TTL, RData::CNAME(CNAME(name(CHAIN)))),
        Record::from_rdata(name(CHAIN), TTL, RData::CNAME(CNAME(name(DUAL)))),
        Record::from_rdata(name(V6ONLY), TTL, RData::AAAA(AAAA(V6ONLY_V6))),
        Record::from_rdata(
            name(NODATA),
            TTL,
            RData::TXT(TXT::new(vec!["only text here".into()])),
        ),
    ];
    records.extend(
        DUAL_V4
            .iter()
            .map(|ip| Record::from_rdata(name(DUAL), TTL, RData::A(A(*ip)))),
    );
    records.extend(
        DUAL_V6
            .iter()
            .map(|ip| Record::from_rdata(name(DUAL), TTL, RData::AAAA(AAAA(*ip)))),
    );
    records.extend(
        (0..BIG_TXT_COUNT)
            .map(|i| Record::from_rdata(name(BIG), TTL, RData::TXT(TXT::new(vec![big_txt(i)])))),
    );
    records
        .extend((0..MEDIUM_TXT_COUNT).map(|i| {
            Record::from_rdata(name(MEDIUM), TTL, RData::TXT(TXT::new(vec![big_txt(i)])))
        }));

    let mut sets: BTreeMap<RrKey, RecordSet> = BTreeMap::new();
    for record in records {
        let key = RrKey::new(record.name.clone().into(), record.record_type());
        sets.entry(key)
            .or_insert_with(|| RecordSet::new(record.name.clone(), record.record_type(), 1))
            .insert(record, 1);
    }
    InMemoryZoneHandler::new(name(ZONE), sets, ZoneType::Primary, AxfrPolicy::Deny)
        .expect("a valid zone")
}

/// The catalog, counting what it is asked per transport.
struct Counting {
    catalog: Catalog,
    udp: Arc<AtomicUsize>,
    tcp: Arc<AtomicUsize>,
}

// `RequestHandler` is declared with `#[async_trait]`; this is the signature
// that macro expands to, written out so the tests need no `async-trait`.
impl RequestHandler for Counting {
    fn handle_request<'life0, 'life1, 'async_trait, R, T>(
        &'life0 self,
        request: &'life1 Request,
        response_handle: R,
    ) -> Pin<Box<dyn Future<Output = ResponseInfo> + Send + 'async_trait>>
    where
        R: ResponseHandler + 'async_trait,
        T: Time + 'async_trait,
        'life0: 'async_trait,
        'life1: 'async_trait,
        Self: 'async_trait,
    {
        match request.protocol() {
            Protocol::Udp => self.udp.fetch_add(1, Ordering::SeqCst),
            _ => self.tcp.fetch_add(1, Ordering::SeqCst),
        };
        self.catalog
            .handle_request::<R, T>(request, response_handle)
    }
}
