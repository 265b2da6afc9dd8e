//! [`FakeUpstream`]: a scriptable DNS server on `127.0.0.1:<port>`, UDP and
//! TCP on the same port, for what a real server will not do on demand:
//! stay silent, answer late, answer from the wrong port or address or with
//! the wrong ID, send raw bytes, SERVFAIL, carry synthetic DNSSEC records.
//!
//! A script is a closure called once per received query with the parsed
//! query and the transport; it returns the [`Action`]s to run, in order,
//! for that query. Each query's actions run in their own task, so a delay
//! holds up only its own query (over TCP too: replies on one connection
//! can go out of order). Undecodable packets are logged but not scripted.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hickory_proto::op::{Edns, Message, MessageType, ResponseCode};
use hickory_proto::rr::rdata::{A, NULL};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::task::JoinHandle;

use super::auth::bind_pair;

/// How a query reached an upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    Udp,
    Tcp,
}

/// One step of a scripted answer.
#[derive(Debug, Clone)]
pub enum Action {
    /// Send this message, encoded as it is (ID included; see [`reply_to`]).
    Reply(Message),
    /// Send these bytes as they are (TCP adds the length prefix).
    Raw(Vec<u8>),
    /// UDP: send this message from a fresh socket, so from another source
    /// port of 127.0.0.1 (an off-path spoof). TCP: sends nothing.
    ReplyFromOtherPort(Message),
    /// UDP: send this message from a fresh socket on this address (another
    /// loopback address such as 127.0.0.2: all of 127.0.0.0/8 is local on
    /// Linux, nothing needs adding), so from an address the query was not
    /// sent to. TCP: sends nothing.
    ReplyFromAddress(IpAddr, Message),
    /// Send this message with its ID changed (bit-flipped), so it matches
    /// no query in flight.
    ReplyWithWrongId(Message),
    /// Wait before the next action.
    Delay(Duration),
    /// Never answer this query (TCP: the connection stays open).
    Drop,
    /// TCP: close the connection after what was sent. UDP: like `Drop`.
    Close,
}

/// What the fake received.
#[derive(Debug, Clone)]
pub struct Received {
    pub transport: Transport,
    pub from: SocketAddr,
    pub bytes: Vec<u8>,
    pub at: Instant,
}

type Script = dyn Fn(&Message, Transport) -> Vec<Action> + Send + Sync;

/// A scripted upstream; stops when dropped.
pub struct FakeUpstream {
    addr: SocketAddr,
    log: Arc<Mutex<Vec<Received>>>,
    tasks: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for FakeUpstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeUpstream")
            .field("addr", &self.addr)
            .field("received", &self.log.lock().expect("log").len())
            .finish()
    }
}

impl Drop for FakeUpstream {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl FakeUpstream {
    pub async fn start(
        script: impl Fn(&Message, Transport) -> Vec<Action> + Send + Sync + 'static,
    ) -> Self {
        let (udp, tcp) = bind_pair().await;
        let addr = udp.local_addr().expect("local addr");
        let script: Arc<Script> = Arc::new(script);
        let log = Arc::new(Mutex::new(Vec::new()));
        let tasks = vec![
            tokio::spawn(serve_udp(Arc::new(udp), script.clone(), log.clone())),
            tokio::spawn(serve_tcp(tcp, script, log.clone())),
        ];
        Self { addr, log, tasks }
    }

    /// An upstream that never answers anything.
    pub async fn silent() -> Self {
        Self::start(|_, _| vec![Action::Drop]).await
    }

    /// An upstream that answers every query with `rcode` and no records.
    pub async fn rcode(rcode: ResponseCode) -> Self {
        Self::start(move |query, _| {
            let mut reply = reply_to(query);
            reply.metadata.response_code = rcode;
            vec![Action::Reply(reply)]
        })
        .await
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Queries received so far over `transport` (undecodable ones included).
    pub fn queries(&self, transport: Transport) -> usize {
        self.received()
            .iter()
            .filter(|r| r.transport == transport)
            .count()
    }

    pub fn total_queries(&self) -> usize {
        self.received().len()
    }

    /// Everything received so far, in order of arrival.
    pub fn received(&self) -> Vec<Received> {
        self.log.lock().expect("log").clone()
    }

    /// The decodable queries received so far.
    pub fn received_messages(&self) -> Vec<Message> {
        self.received()
            .iter()
            .filter_map(|r| Message::from_vec(&r.bytes).ok())
            .collect()
    }
}

async fn serve_udp(socket: Arc<UdpSocket>, script: Arc<Script>, log: Arc<Mutex<Vec<Received>>>) {
    let mut buf = vec![0; 65_535];
    loop {
        let Ok((n, from)) = socket.recv_from(&mut buf).await else {
            continue;
        };
        let bytes = buf[..n].to_vec();
        log.lock().expect("log").push(Received {
            transport: Transport::Udp,
            from,
            bytes: bytes.clone(),
            at: Instant::now(),
        });
        let Ok(query) = Message::from_vec(&bytes) else {
            continue;
        };
        let actions = script(&query, Transport::Udp);
        let socket = socket.clone();
        tokio::spawn(async move {
            for action in actions {
                match action {
                    Action::Reply(message) => {
                        let _ = socket.send_to(&encode(&message), from).await;
                    }
                    Action::Raw(bytes) => {
                        let _ = socket.send_to(&bytes, from).await;
                    }
                    Action::ReplyWithWrongId(message) => {
                        let _ = socket.send_to(&encode(&wrong_id(message)), from).await;
                    }
                    Action::ReplyFromOtherPort(message) => {
                        send_from(Ipv4Addr::LOCALHOST.into(), &message, from).await;
                    }
                    Action::ReplyFromAddress(ip, message) => send_from(ip, &message, from).await,
                    Action::Delay(wait) => tokio::time::sleep(wait).await,
                    Action::Drop | Action::Close => return,
                }
            }
        });
    }
}

async fn serve_tcp(listener: TcpListener, script: Arc<Script>, log: Arc<Mutex<Vec<Received>>>) {
    loop {
        let Ok((stream, from)) = listener.accept().await else {
            continue;
        };
        tokio::spawn(serve_connection(stream, from, script.clone(), log.clone()));
    }
}

async fn serve_connection(
    stream: TcpStream,
    from: SocketAddr,
    script: Arc<Script>,
    log: Arc<Mutex<Vec<Received>>>,
) {
    let (mut reader, writer) = stream.into_split();
    let writer = Arc::new(tokio::sync::Mutex::new(Some(writer)));
    loop {
        let mut len = [0u8; 2];
        if reader.read_exact(&mut len).await.is_err() {
            return;
        }
        let mut bytes = vec![0; usize::from(u16::from_be_bytes(len))];
        if reader.read_exact(&mut bytes).await.is_err() {
            return;
        }
        log.lock().expect("log").push(Received {
            transport: Transport::Tcp,
            from,
            bytes: bytes.clone(),
            at: Instant::now(),
        });
        let Ok(query) = Message::from_vec(&bytes) else {
            continue;
        };
        let actions = script(&query, Transport::Tcp);
        let writer = writer.clone();
        tokio::spawn(async move {
            for action in actions {
                let bytes = match action {
                    Action::Reply(message) => encode(&message),
                    Action::Raw(bytes) => bytes,
                    Action::ReplyWithWrongId(message) => encode(&wrong_id(message)),
                    Action::ReplyFromOtherPort(_) | Action::ReplyFromAddress(..) => continue,
                    Action::Delay(wait) => {
                        tokio::time::sleep(wait).await;
                        continue;
                    }
                    Action::Drop => return,
                    Action::Close => {
                        if let Some(mut w) = writer.lock().await.take() {
                            let _ = w.shutdown().await;
                        }
                        return;
                    }
                };
                let mut guard = writer.lock().await;
                if let Some(w) = guard.as_mut() {
                    let _ = write_framed(w, &bytes).await;
                }
            }
        });
    }
}

/// Sends `message` to `to` from a fresh UDP socket on `ip`, port 0.
async fn send_from(ip: IpAddr, message: &Message, to: SocketAddr) {
    let other = UdpSocket::bind(SocketAddr::new(ip, 0))
        .await
        .unwrap_or_else(|error| panic!("bind spoofer on {ip}: {error}"));
    let _ = other.send_to(&encode(message), to).await;
}

async fn write_framed(w: &mut OwnedWriteHalf, bytes: &[u8]) -> std::io::Result<()> {
    let len = u16::try_from(bytes.len()).expect("a DNS message fits in 65535 bytes");
    let mut framed = Vec::with_capacity(2 + bytes.len());
    framed.extend_from_slice(&len.to_be_bytes());
    framed.extend_from_slice(bytes);
    w.write_all(&framed).await
}

fn encode(message: &Message) -> Vec<u8> {
    message.to_vec().expect("encode scripted reply")
}

fn wrong_id(mut message: Message) -> Message {
    message.metadata.id = !message.metadata.id;
    message
}

/// The start of a recursive resolver's answer to `query`: same ID, opcode,
/// question, RD and CD; QR=1, RA=1, NOERROR; an OPT record (payload 1232,
/// DO copied) when the query had one.
pub fn reply_to(query: &Message) -> Message {
    let mut reply = Message::new(
        query.metadata.id,
        MessageType::Response,
        query.metadata.op_code,
    );
    reply.metadata.recursion_desired = query.metadata.recursion_desired;
    reply.metadata.checking_disabled = query.metadata.checking_disabled;
    reply.metadata.recursion_available = true;
    reply.add_queries(query.queries.iter().cloned());
    if let Some(query_edns) = &query.edns {
        let mut edns = Edns::new();
        edns.set_max_payload(1232);
        edns.set_dnssec_ok(query_edns.flags().dnssec_ok);
        reply.set_edns(edns);
    }
    reply
}

/// [`reply_to`] with A records for the query's name.
pub fn a_reply(query: &Message, ttl: u32, addrs: &[Ipv4Addr]) -> Message {
    let mut reply = reply_to(query);
    let owner = query.queries[0].name().clone();
    for addr in addrs {
        reply.add_answer(Record::from_rdata(owner.clone(), ttl, RData::A(A(*addr))));
    }
    reply
}

/// An RRSIG record with well-formed but meaningless RDATA (RFC 4034 §3.1:
/// type covered, algorithm 13, labels, original TTL, expiration, inception,
/// key tag, signer's name, a 64-byte signature). Decodes whether or not
/// hickory-proto's DNSSEC support is compiled in.
pub fn rrsig(owner: &Name, covered: RecordType, ttl: u32, signer: &Name) -> Record {
    let mut rdata = Vec::new();
    rdata.extend_from_slice(&u16::from(covered).to_be_bytes());
    rdata.push(13); // ECDSAP256SHA256
    rdata.push(owner.num_labels());
    rdata.extend_from_slice(&ttl.to_be_bytes());
    rdata.extend_from_slice(&2_000_000_000u32.to_be_bytes()); // expiration (2033)
    rdata.extend_from_slice(&1_700_000_000u32.to_be_bytes()); // inception (2023)
    rdata.extend_from_slice(&12_345u16.to_be_bytes()); // key tag
    for label in signer.iter() {
        rdata.push(u8::try_from(label.len()).expect("label length"));
        rdata.extend_from_slice(&label.to_ascii_lowercase());
    }
    rdata.push(0);
    rdata.extend((0..64u8).map(|i| i.wrapping_mul(37)));
    Record::from_rdata(
        owner.clone(),
        ttl,
        RData::Unknown {
            code: RecordType::RRSIG,
            rdata: NULL::with(rdata),
        },
    )
}
