//! The client side of a test: UDP and TCP exchanges that never hang (every
//! wait has a deadline) and a builder for the queries a stub resolver sees.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use hickory_proto::op::{Edns, Message, MessageType, OpCode};
use hickory_proto::rr::rdata::opt::EdnsOption;
use hickory_proto::rr::{DNSClass, Name, RData, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream, UdpSocket};
use tokio::time::timeout;

/// How long a client waits for an answer that must come.
pub const TIMEOUT: Duration = Duration::from_secs(3);

/// Sends `query` from a fresh socket on `127.0.0.1:0` and returns the first
/// datagram that comes back; panics when none comes within [`TIMEOUT`] or
/// the port is closed.
pub async fn udp_exchange(server: SocketAddr, query: &[u8]) -> Vec<u8> {
    udp_exchange_within(server, query, TIMEOUT)
        .await
        .unwrap_or_else(|| panic!("no UDP reply from {server} within {TIMEOUT:?} (or port closed)"))
}

/// Like [`udp_exchange`], but `None` when nothing comes within `wait` or
/// the port is closed.
pub async fn udp_exchange_within(
    server: SocketAddr,
    query: &[u8],
    wait: Duration,
) -> Option<Vec<u8>> {
    let socket = UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("bind client socket");
    // Connected, so the kernel drops datagrams from any other address.
    socket.connect(server).await.expect("connect client socket");
    socket.send(query).await.expect("send query");
    let mut buf = vec![0; 65_535];
    match timeout(wait, socket.recv(&mut buf)).await {
        Ok(Ok(n)) => {
            buf.truncate(n);
            Some(buf)
        }
        // Nothing listens there (ICMP port unreachable): no reply either.
        Ok(Err(error)) if error.kind() == std::io::ErrorKind::ConnectionRefused => None,
        Ok(Err(error)) => panic!("UDP receive from {server}: {error}"),
        Err(_elapsed) => None,
    }
}

/// Asserts that `server` sends nothing back to `query` within `wait`.
pub async fn udp_silence(server: SocketAddr, query: &[u8], wait: Duration) {
    if let Some(reply) = udp_exchange_within(server, query, wait).await {
        panic!(
            "expected no reply from {server} within {wait:?}, got {} bytes: {:?}",
            reply.len(),
            Message::from_vec(&reply)
        );
    }
}

/// One query over a fresh TCP connection (RFC 1035 §4.2.2 framing).
pub async fn tcp_exchange(server: SocketAddr, query: &[u8]) -> Vec<u8> {
    let mut client = TcpClient::connect(server).await;
    client.send(query).await;
    client.recv().await
}

/// A TCP connection carrying length-prefixed DNS messages, for pipelining.
#[derive(Debug)]
pub struct TcpClient {
    server: SocketAddr,
    stream: TcpStream,
}

impl TcpClient {
    pub async fn connect(server: SocketAddr) -> Self {
        let stream = timeout(TIMEOUT, TcpStream::connect(server))
            .await
            .unwrap_or_else(|_| panic!("TCP connect to {server} timed out"))
            .unwrap_or_else(|error| panic!("TCP connect to {server}: {error}"));
        Self { server, stream }
    }

    /// Like [`TcpClient::connect`], from `source`: any address of
    /// 127.0.0.0/8 is local on Linux, so a test can be two clients.
    pub async fn connect_from(source: IpAddr, server: SocketAddr) -> Self {
        let connect = async {
            let socket = match source {
                IpAddr::V4(_) => TcpSocket::new_v4()?,
                IpAddr::V6(_) => TcpSocket::new_v6()?,
            };
            socket.bind(SocketAddr::new(source, 0))?;
            socket.connect(server).await
        };
        let stream = timeout(TIMEOUT, connect)
            .await
            .unwrap_or_else(|_| panic!("TCP connect to {server} timed out"))
            .unwrap_or_else(|error| panic!("TCP connect from {source} to {server}: {error}"));
        Self { server, stream }
    }

    pub async fn send(&mut self, message: &[u8]) {
        self.try_send(message).await.expect("TCP send");
    }

    /// Sends one length-prefixed message; the error when the peer is gone.
    pub async fn try_send(&mut self, message: &[u8]) -> std::io::Result<()> {
        let len = u16::try_from(message.len()).expect("a DNS message fits in 65535 bytes");
        let mut framed = Vec::with_capacity(2 + message.len());
        framed.extend_from_slice(&len.to_be_bytes());
        framed.extend_from_slice(message);
        self.stream.write_all(&framed).await
    }

    /// Writes `bytes` as they are, no length prefix: for framing abuse.
    pub async fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("TCP send");
    }

    /// Closes our direction (FIN); replies can still be read.
    pub async fn shutdown(&mut self) {
        self.stream.shutdown().await.expect("TCP shutdown");
    }

    /// The next message; panics on timeout or a closed connection.
    pub async fn recv(&mut self) -> Vec<u8> {
        match self.recv_within(TIMEOUT).await {
            TcpRecv::Message(message) => message,
            other => panic!("TCP reply from {}: {other:?}", self.server),
        }
    }

    /// The next message, or why there is none within `wait`.
    pub async fn recv_within(&mut self, wait: Duration) -> TcpRecv {
        let read = async {
            let mut len = [0u8; 2];
            self.stream.read_exact(&mut len).await?;
            let mut message = vec![0; usize::from(u16::from_be_bytes(len))];
            self.stream.read_exact(&mut message).await?;
            Ok::<_, std::io::Error>(message)
        };
        match timeout(wait, read).await {
            Ok(Ok(message)) => TcpRecv::Message(message),
            Ok(Err(error)) if error.kind() == std::io::ErrorKind::UnexpectedEof => TcpRecv::Closed,
            Ok(Err(error)) => TcpRecv::Error(error.to_string()),
            Err(_elapsed) => TcpRecv::Timeout,
        }
    }
}

/// What a TCP read produced.
#[derive(Debug)]
pub enum TcpRecv {
    Message(Vec<u8>),
    Closed,
    Timeout,
    Error(String),
}

/// Decodes a reply, with the bytes in the panic message when it is malformed.
pub fn parse(bytes: &[u8]) -> Message {
    Message::from_vec(bytes)
        .unwrap_or_else(|error| panic!("undecodable DNS message ({error}): {bytes:02x?}"))
}

/// The wire bytes of the first question (name as sent, type, class), so a
/// test can check that case is echoed exactly; hickory's `Name` compares
/// case-insensitively. Panics if the message has no question or the name
/// is compressed (a question name never needs to be).
pub fn question_bytes(message: &[u8]) -> &[u8] {
    assert!(message.len() >= 12, "message shorter than a header");
    assert!(
        u16::from_be_bytes([message[4], message[5]]) >= 1,
        "message has no question"
    );
    let mut at = 12;
    loop {
        let len = usize::from(*message.get(at).expect("question name runs past the end"));
        assert!(len & 0xC0 == 0, "compressed question name at offset {at}");
        at += 1 + len;
        if len == 0 {
            break;
        }
    }
    message
        .get(12..at + 4)
        .expect("question type/class run past the end")
}

/// Starts a query for `name` (absolute or not; case is kept) and `qtype`:
/// random ID, RD=1, EDNS version 0 with a 1232-byte payload and DO=0.
pub fn query(name: &str, qtype: RecordType) -> QueryBuilder {
    let fqdn = if name.ends_with('.') {
        name.to_owned()
    } else {
        format!("{name}.")
    };
    let mut edns = Edns::new();
    edns.set_max_payload(1232);
    QueryBuilder {
        id: rand_id(),
        name: Name::from_ascii(&fqdn).unwrap_or_else(|error| panic!("bad name {fqdn}: {error}")),
        qtype,
        op_code: OpCode::Query,
        recursion_desired: true,
        checking_disabled: false,
        edns: Some(edns),
    }
}

/// A query under construction; see [`query`].
#[derive(Debug, Clone)]
pub struct QueryBuilder {
    id: u16,
    name: Name,
    qtype: RecordType,
    op_code: OpCode,
    recursion_desired: bool,
    checking_disabled: bool,
    edns: Option<Edns>,
}

impl QueryBuilder {
    pub fn id(mut self, id: u16) -> Self {
        self.id = id;
        self
    }

    /// A pre-EDNS client (RFC 1035: replies of at most 512 bytes over UDP).
    pub fn no_edns(mut self) -> Self {
        self.edns = None;
        self
    }

    /// Advertised UDP payload size (adds EDNS if it was removed).
    pub fn payload(mut self, size: u16) -> Self {
        self.edns
            .get_or_insert_with(Edns::new)
            .set_max_payload(size);
        self
    }

    /// Sets the DNSSEC OK bit (RFC 3225; adds EDNS if it was removed).
    pub fn dnssec_ok(mut self) -> Self {
        self.edns.get_or_insert_with(Edns::new).set_dnssec_ok(true);
        self
    }

    /// Adds an EDNS option such as a COOKIE or Client Subnet.
    pub fn edns_option(mut self, option: EdnsOption) -> Self {
        self.edns
            .get_or_insert_with(Edns::new)
            .options_mut()
            .insert(option);
        self
    }

    pub fn checking_disabled(mut self) -> Self {
        self.checking_disabled = true;
        self
    }

    pub fn op_code(mut self, op_code: OpCode) -> Self {
        self.op_code = op_code;
        self
    }

    pub fn message(&self) -> Message {
        let mut message = Message::new(self.id, MessageType::Query, self.op_code);
        message.metadata.recursion_desired = self.recursion_desired;
        message.metadata.checking_disabled = self.checking_disabled;
        let mut question = hickory_proto::op::Query::query(self.name.clone(), self.qtype);
        question.set_query_class(DNSClass::IN);
        message.add_query(question);
        if let Some(edns) = &self.edns {
            message.set_edns(edns.clone());
        }
        message
    }

    pub fn bytes(&self) -> Vec<u8> {
        self.message().to_vec().expect("encode query")
    }
}

/// A random query ID.
pub fn rand_id() -> u16 {
    rand::random()
}

/// The addresses of the A records in the answer section, in order.
pub fn a_addrs(message: &Message) -> Vec<Ipv4Addr> {
    message
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(a.0),
            _ => None,
        })
        .collect()
}

/// `192.0.2.last` (RFC 5737 documentation space), for scripted answers.
pub fn ip(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(192, 0, 2, last)
}
